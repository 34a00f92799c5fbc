//! core/v1 Events for pods (`Scheduled`, `FailedScheduling`), written off the scheduling
//! path.
//!
//! The scheduling loop calls [`EventRecorder::record`], which never blocks: the event goes
//! into a bounded channel, and a sink task writes it. When the channel is full the event is
//! dropped and counted (upstream's broadcaster drops under pressure too). Repeats of the same
//! `(pod uid, reason, message)` are aggregated like client-go's legacy recorder: the first
//! creates `<pod>.<hex nanos>`, later ones patch `count` and `lastTimestamp`.
//!
//! The sink ends when every recorder handle is dropped and the queue is drained.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

use crate::leader::WallClock;

/// Capacity of the event queue.
pub const EVENT_QUEUE_CAPACITY: usize = 16_384;
/// Events written at the same time (few: events must not compete with binds for the API;
/// upstream's broadcaster writes them one at a time).
pub const EVENT_CONCURRENCY: usize = 4;
/// Aggregation keys remembered (the map is cleared when it grows past this).
const AGGREGATION_CAPACITY: usize = 8_192;

/// One event about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// Pod resourceVersion when the event happened.
    pub resource_version: Option<String>,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// `Scheduled`, `FailedScheduling`.
    pub reason: &'static str,
    /// `Binding`, `Scheduling`.
    pub action: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// Counters of the event sink.
#[derive(Debug, Default)]
pub struct EventStats {
    /// Events created.
    pub created: AtomicU64,
    /// Repeats aggregated into an existing event.
    pub aggregated: AtomicU64,
    /// Events dropped (queue full or API error).
    pub dropped: AtomicU64,
}

/// Handle to queue events.
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<PodEvent>,
    stats: Arc<EventStats>,
}

impl EventRecorder {
    /// Queues an event; never blocks.
    pub fn record(&self, event: PodEvent) {
        if self.tx.try_send(event).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Creates a recorder and the sink future that writes its events.
pub fn event_sink(
    client: kube::Client,
    component: String,
    instance: String,
    clock: Arc<dyn WallClock>,
    stats: Arc<EventStats>,
) -> (EventRecorder, impl Future<Output = ()> + Send) {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE_CAPACITY);
    let recorder = EventRecorder {
        tx,
        stats: stats.clone(),
    };
    let sink = run_sink(client, component, instance, clock, stats, rx);
    (recorder, sink)
}

#[derive(Debug, Clone)]
struct Aggregate {
    name: String,
    count: i32,
}

async fn run_sink(
    client: kube::Client,
    component: String,
    instance: String,
    clock: Arc<dyn WallClock>,
    stats: Arc<EventStats>,
    mut rx: mpsc::Receiver<PodEvent>,
) {
    let mut seen: HashMap<(String, &'static str, String), Aggregate> = HashMap::new();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            ev = rx.recv(), if in_flight.len() < EVENT_CONCURRENCY => {
                let Some(ev) = ev else { break };
                let now = clock.now();
                let key = (ev.uid.clone(), ev.reason, ev.message.clone());
                if seen.len() > AGGREGATION_CAPACITY {
                    seen.clear();
                }
                let prior = seen.get_mut(&key).map(|a| {
                    a.count += 1;
                    a.clone()
                });
                if prior.is_none() {
                    let name = format!("{}.{:x}", ev.name, now.as_nanosecond());
                    seen.insert(key, Aggregate { name: name.clone(), count: 1 });
                }
                let client = client.clone();
                let component = component.clone();
                let instance = instance.clone();
                let stats = stats.clone();
                in_flight.push(async move {
                    write_event(client, &component, &instance, ev, prior, now, &stats).await;
                });
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.next().await.is_some() {}
}

async fn write_event(
    client: kube::Client,
    component: &str,
    instance: &str,
    ev: PodEvent,
    prior: Option<Aggregate>,
    now: jiff::Timestamp,
    stats: &EventStats,
) {
    let api: Api<Event> = Api::namespaced(client, &ev.namespace);
    if let Some(agg) = &prior {
        let patch = serde_json::json!({
            "count": agg.count,
            "lastTimestamp": Time(now),
        });
        match api
            .patch(&agg.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                stats.aggregated.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, event = %agg.name, "aggregating event failed, creating a new one");
            }
        }
    }
    let name = format!("{}.{:x}", ev.name, now.as_nanosecond());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ev.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(ev.name.clone()),
            namespace: Some(ev.namespace.clone()),
            uid: Some(ev.uid.clone()),
            resource_version: ev.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(ev.reason.to_owned()),
        message: Some(ev.message.clone()),
        type_: Some(ev.type_.to_owned()),
        action: Some(ev.action.to_owned()),
        count: Some(prior.as_ref().map_or(1, |a| a.count)),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        source: Some(EventSource {
            component: Some(component.to_owned()),
            host: None,
        }),
        reporting_component: Some(component.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => {
            stats.created.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, pod = %ev.name, ns = %ev.namespace, reason = ev.reason, "writing event failed");
        }
    }
}
