//! core/v1 Events, written off the caller's path: one bounded recorder for every component
//! (scheduler `Scheduled`/`FailedScheduling`, controllers `NodeNotReady`/
//! `TaintManagerEviction`, the node agent's container events).
//!
//! # Flow
//!
//! ```text
//!  caller ──record()──▶ bounded queue ──▶ EventWriter ──create / merge-patch──▶ API server
//!          (never blocks;  (capacity)      (up to `concurrency` writes at once)
//!           full: dropped
//!           and counted)
//! ```
//!
//! # Rules
//!
//! * [`EventRecorder::record`] never blocks and never fails: when the queue is full or the
//!   writer is gone the event is dropped and counted in [`EventStats::dropped`] (upstream's
//!   broadcaster drops under pressure too).
//! * An event is written as `<object>.<hex nanos + sequence>` in the object's namespace
//!   (`default` for cluster-scoped objects such as Nodes, as upstream).
//! * With aggregation on, repeats of the same `(object uid, fieldPath, type, reason,
//!   message)` are folded like client-go's legacy recorder: the first creates the event,
//!   later ones merge-patch `count` and `lastTimestamp`. A failed patch creates a new
//!   event, which later repeats then patch; a failed first create is forgotten.
//! * Who reports is a [`Reporter`] (component, instance, host) carried by the recorder;
//!   [`EventRecorder::with_reporter`] makes a recorder for another component on the same
//!   queue.
//! * The writer ([`EventWriter::run`]) ends when every recorder is dropped and the queue is
//!   drained; [`EventWriter::run_until`] ends at once when its token is cancelled.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::WallClock;

/// Aggregation keys remembered (the map is cleared when it grows past this).
const AGGREGATION_CAPACITY: usize = 8_192;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

impl EventType {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event to write.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// The object it is about (`fieldPath` names a container).
    pub object: ObjectReference,
    /// Normal or Warning.
    pub type_: EventType,
    /// E.g. `Scheduled`.
    pub reason: String,
    /// E.g. `Successfully assigned default/web to node-1`.
    pub message: String,
    /// E.g. `Binding` (optional).
    pub action: Option<String>,
}

impl EventRecord {
    /// An event without an action.
    pub fn new(
        object: ObjectReference,
        type_: EventType,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> EventRecord {
        EventRecord {
            object,
            type_,
            reason: reason.into(),
            message: message.into(),
            action: None,
        }
    }
}

/// A reference to a namespaced or cluster-scoped object (`apiVersion`, `kind`, namespace,
/// name, uid; no resourceVersion).
pub fn object_ref<K>(obj: &K) -> ObjectReference
where
    K: kube::Resource<DynamicType = ()>,
{
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        ..Default::default()
    }
}

/// Who reports an event (`source` and `reporting*` fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reporter {
    /// `source.component` and `reportingComponent` (`default-scheduler`, `kubelet`, ...).
    pub component: String,
    /// `reportingInstance`.
    pub instance: String,
    /// `source.host` (the node, for the agent).
    pub host: Option<String>,
}

impl Reporter {
    /// A reporter whose instance is its component and that names no host.
    pub fn component(component: impl Into<String>) -> Reporter {
        let component = component.into();
        Reporter {
            instance: component.clone(),
            component,
            host: None,
        }
    }
}

/// Queue and writer settings.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// Events queued at most; beyond it they are dropped.
    pub capacity: usize,
    /// Events written at the same time.
    pub concurrency: usize,
    /// Fold repeats into one event (count, lastTimestamp).
    pub aggregate: bool,
    /// Counters, shared with whoever reports them.
    pub stats: Arc<EventStats>,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            capacity: 4_096,
            concurrency: 1,
            aggregate: true,
            stats: Arc::default(),
        }
    }
}

/// Counters of a recorder and its writer.
#[derive(Debug, Default)]
pub struct EventStats {
    /// Events created.
    pub created: AtomicU64,
    /// Repeats aggregated into an existing event.
    pub aggregated: AtomicU64,
    /// Events dropped (queue full or closed, or the API refused them).
    pub dropped: AtomicU64,
}

type Queued = (Arc<Reporter>, EventRecord);

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventRecorder {
    tx: mpsc::Sender<Queued>,
    reporter: Arc<Reporter>,
    stats: Arc<EventStats>,
    /// Events about pods also go to the pods' timelines (`crate::timeline`).
    timeline: Option<crate::timeline::TimelineRecorder>,
}

impl EventRecorder {
    /// A recorder for `reporter` and its writer (run the writer on an owned task).
    pub fn new(
        client: kube::Client,
        reporter: Reporter,
        clock: WallClock,
        config: RecorderConfig,
    ) -> (EventRecorder, EventWriter) {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let recorder = EventRecorder {
            tx,
            reporter: Arc::new(reporter),
            stats: config.stats.clone(),
            timeline: None,
        };
        let writer = EventWriter {
            rx,
            client,
            clock,
            config,
        };
        (recorder, writer)
    }

    /// Queues an event; never blocks (a full queue drops it).
    pub fn record(&self, event: EventRecord) {
        if let Some(t) = &self.timeline
            && event.object.kind.as_deref() == Some("Pod")
        {
            let container = event
                .object
                .field_path
                .as_deref()
                .and_then(|f| f.split_once('{'))
                .map(|(_, rest)| rest.trim_end_matches('}'));
            let pod = crate::timeline::PodKey {
                namespace: event.object.namespace.clone().unwrap_or_default(),
                name: event.object.name.clone().unwrap_or_default(),
                uid: event.object.uid.clone().unwrap_or_default(),
            };
            t.record_event(&pod, container, &event.reason, &event.message);
        }
        if self.tx.try_send((self.reporter.clone(), event)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("event queue full or closed; event dropped");
        }
    }

    /// A recorder on the same queue that reports as `reporter`.
    pub fn with_reporter(&self, reporter: Reporter) -> EventRecorder {
        EventRecorder {
            tx: self.tx.clone(),
            reporter: Arc::new(reporter),
            stats: self.stats.clone(),
            timeline: self.timeline.clone(),
        }
    }

    /// This recorder, also recording the events about pods in their timelines (the
    /// timeline's component is the reporter's).
    pub fn with_timeline(mut self, timeline: crate::timeline::TimelineRecorder) -> EventRecorder {
        self.timeline =
            Some(timeline.for_component(&self.reporter.component)).filter(|t| t.enabled());
        self
    }

    /// The timeline recorder events about pods also go to.
    pub fn timeline(&self) -> Option<&crate::timeline::TimelineRecorder> {
        self.timeline.as_ref()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<EventStats> {
        &self.stats
    }
}

/// The writing half of an [`EventRecorder`].
pub struct EventWriter {
    rx: mpsc::Receiver<Queued>,
    client: kube::Client,
    clock: WallClock,
    config: RecorderConfig,
}

type AggregationKey = (String, Option<String>, EventType, String, String);

#[derive(Debug, Clone)]
struct Aggregate {
    name: String,
    count: i32,
}

/// What one write did, for the aggregation table.
struct Written {
    key: Option<AggregationKey>,
    /// The event that now holds the repeats (`None`: none was created).
    holder: Option<String>,
    /// This write created a new event (first occurrence or after a failed patch).
    created: bool,
}

impl EventWriter {
    /// Writes events until every recorder is dropped and the queue is drained.
    pub async fn run(self) {
        self.write_loop(None).await
    }

    /// Writes events until `shutdown` (what is still queued is dropped) or until every
    /// recorder is dropped and the queue is drained.
    pub async fn run_until(self, shutdown: CancellationToken) {
        self.write_loop(Some(shutdown)).await
    }

    async fn write_loop(mut self, shutdown: Option<CancellationToken>) {
        let stop = shutdown.unwrap_or_default();
        let concurrency = self.config.concurrency.max(1);
        let mut seen: HashMap<AggregationKey, Aggregate> = HashMap::new();
        let mut in_flight = FuturesUnordered::new();
        // Added to the timestamp in names, so two events of one object at the same instant
        // do not collide.
        let mut seq: u128 = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                queued = self.rx.recv(), if in_flight.len() < concurrency => {
                    let Some((reporter, ev)) = queued else { break };
                    let now = self.clock.timestamp();
                    seq = seq.wrapping_add(1);
                    let name = format!(
                        "{}.{:x}",
                        ev.object.name.as_deref().unwrap_or_default(),
                        now.as_nanosecond().unsigned_abs().wrapping_add(seq)
                    );
                    let key = self.config.aggregate.then(|| aggregation_key(&ev));
                    let prior = key.as_ref().and_then(|k| seen.get_mut(k)).map(|a| {
                        a.count = a.count.saturating_add(1);
                        a.clone()
                    });
                    if prior.is_none() && let Some(k) = &key {
                        if seen.len() >= AGGREGATION_CAPACITY {
                            seen.clear();
                        }
                        seen.insert(k.clone(), Aggregate { name: name.clone(), count: 1 });
                    }
                    in_flight.push(write_event(
                        self.client.clone(),
                        reporter,
                        ev,
                        key,
                        name,
                        prior,
                        now,
                        self.config.stats.clone(),
                    ));
                }
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    note_written(&mut seen, done);
                }
            }
        }
        while let Some(done) = in_flight.next().await {
            note_written(&mut seen, done);
        }
    }
}

fn aggregation_key(ev: &EventRecord) -> AggregationKey {
    (
        ev.object.uid.clone().unwrap_or_default(),
        ev.object.field_path.clone(),
        ev.type_,
        ev.reason.clone(),
        ev.message.clone(),
    )
}

/// Keeps the aggregation table pointing at an event that exists.
fn note_written(seen: &mut HashMap<AggregationKey, Aggregate>, done: Written) {
    let Some(key) = done.key else {
        return;
    };
    match (done.holder, done.created) {
        (Some(name), true) => {
            if let Some(a) = seen.get_mut(&key)
                && a.name != name
            {
                *a = Aggregate { name, count: 1 };
            }
        }
        (None, true) => {
            seen.remove(&key);
        }
        _ => {}
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_event(
    client: kube::Client,
    reporter: Arc<Reporter>,
    ev: EventRecord,
    key: Option<AggregationKey>,
    name: String,
    prior: Option<Aggregate>,
    now: Timestamp,
    stats: Arc<EventStats>,
) -> Written {
    let namespace = ev
        .object
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let api: Api<Event> = Api::namespaced(client, &namespace);
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
                return Written {
                    key,
                    holder: Some(agg.name.clone()),
                    created: false,
                };
            }
            Err(e) => {
                tracing::debug!(error = %e, event = %agg.name, "aggregating event failed, creating a new one");
            }
        }
    }
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: ev.object,
        reason: Some(ev.reason),
        message: Some(ev.message),
        type_: Some(ev.type_.as_str().to_owned()),
        action: ev.action,
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        source: Some(EventSource {
            component: Some(reporter.component.clone()),
            host: reporter.host.clone(),
        }),
        reporting_component: Some(reporter.component.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => {
            stats.created.fetch_add(1, Ordering::Relaxed);
            Written {
                key,
                holder: Some(name),
                created: true,
            }
        }
        Err(e) => {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, event = %name, "writing event failed");
            Written {
                key,
                holder: None,
                created: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use serde_json::{Value, json};

    /// Requests the fake API server saw: method, path, body.
    type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

    /// A `kube::Client` over a fake API server that answers creates and patches, failing the
    /// first `fail_creates` creates with 500.
    fn fake_client(fail_creates: usize) -> (kube::Client, Seen) {
        let seen: Seen = Arc::default();
        let failures = Arc::new(Mutex::new(fail_creates));
        let log = seen.clone();
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let log = log.clone();
            let failures = failures.clone();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let body = req.into_body().collect().await?.to_bytes();
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push((method.clone(), path, v.clone()));
                let fail = method == "POST" && {
                    let mut f = failures.lock().unwrap();
                    let fail = *f > 0;
                    *f = f.saturating_sub(1);
                    fail
                };
                let (code, out) = if fail {
                    (
                        500,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "reason": "InternalError", "message": "boom"}),
                    )
                } else {
                    (
                        200,
                        json!({"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e"}, "involvedObject": {}}),
                    )
                };
                let resp = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(out.to_string())))
                    .unwrap();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(resp)
            }
        });
        (kube::Client::new(svc, "default"), seen)
    }

    fn pod(uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some("ns".into()),
            name: Some("web".into()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }

    fn clock() -> WallClock {
        WallClock::fixed(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    /// A recorder reporting as `component` with `config`, over `client`.
    fn recorder(
        client: kube::Client,
        component: &str,
        config: RecorderConfig,
    ) -> (EventRecorder, EventWriter) {
        EventRecorder::new(client, Reporter::component(component), clock(), config)
    }

    fn started(uid: &str) -> EventRecord {
        EventRecord::new(
            pod(uid),
            EventType::Normal,
            "Started",
            "Started container app",
        )
    }

    #[tokio::test]
    async fn repeats_are_aggregated_into_one_event() {
        let (client, seen) = fake_client(0);
        let (rec, writer) = recorder(client, "kubelet", RecorderConfig::default());
        for _ in 0..3 {
            rec.record(started("u1"));
        }
        let stats = rec.stats().clone();
        drop(rec);
        writer.run().await;
        let seen = seen.lock().unwrap().clone();
        let methods: Vec<&str> = seen.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(methods, ["POST", "PATCH", "PATCH"]);
        assert_eq!(seen[0].1, "/api/v1/namespaces/ns/events");
        let created = &seen[0].2;
        let name = created["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web."), "{name}");
        assert_eq!(created["count"], 1);
        assert_eq!(created["type"], "Normal");
        assert_eq!(created["source"]["component"], "kubelet");
        assert_eq!(created["reportingInstance"], "kubelet");
        assert_eq!(created["firstTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(seen[1].1, format!("/api/v1/namespaces/ns/events/{name}"));
        assert_eq!(seen[1].2["count"], 2);
        assert_eq!(seen[2].2["count"], 3);
        assert_eq!(stats.created.load(Ordering::Relaxed), 1);
        assert_eq!(stats.aggregated.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn without_aggregation_every_event_is_created_under_its_own_name() {
        let (client, seen) = fake_client(0);
        let config = RecorderConfig {
            aggregate: false,
            ..Default::default()
        };
        let (rec, writer) = recorder(client, "node-controller", config);
        let node = ObjectReference {
            kind: Some("Node".into()),
            name: Some("n1".into()),
            ..Default::default()
        };
        let taints = rec.with_reporter(Reporter::component("taint-eviction-controller"));
        rec.record(EventRecord::new(
            node.clone(),
            EventType::Normal,
            "NodeNotReady",
            "m",
        ));
        taints.record(EventRecord::new(
            node,
            EventType::Normal,
            "NodeNotReady",
            "m",
        ));
        drop((rec, taints));
        writer.run().await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert!(
            seen.iter()
                .all(|(m, p, _)| m == "POST" && p == "/api/v1/namespaces/default/events")
        );
        assert_ne!(seen[0].2["metadata"]["name"], seen[1].2["metadata"]["name"]);
        assert_eq!(seen[0].2["source"]["component"], "node-controller");
        assert_eq!(
            seen[1].2["source"]["component"],
            "taint-eviction-controller"
        );
    }

    #[tokio::test]
    async fn a_failed_first_create_is_forgotten() {
        let (client, seen) = fake_client(1);
        let (rec, writer) = recorder(client, "kubelet", RecorderConfig::default());
        let stats = rec.stats().clone();
        let task = tokio::spawn(writer.run());
        rec.record(started("u1"));
        // Let the first write fail before the repeat is queued.
        while stats.dropped.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        rec.record(started("u1"));
        drop(rec);
        task.await.unwrap();
        let methods: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _, _)| m.clone())
            .collect();
        assert_eq!(methods, ["POST", "POST"]);
        assert_eq!(stats.created.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let (client, seen) = fake_client(0);
        let config = RecorderConfig {
            capacity: 2,
            ..Default::default()
        };
        let (rec, writer) = recorder(client, "x", config);
        for i in 0..5 {
            rec.record(started(&format!("u{i}")));
        }
        assert_eq!(rec.stats().dropped.load(Ordering::Relaxed), 3);
        drop(rec);
        writer.run().await;
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn run_until_stops_at_shutdown_with_recorders_alive() {
        let (client, _seen) = fake_client(0);
        let (rec, writer) = recorder(client, "x", RecorderConfig::default());
        let stop = CancellationToken::new();
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), writer.run_until(stop))
            .await
            .expect("the writer stops at shutdown");
        drop(rec);
    }

    #[test]
    fn object_ref_names_kind_and_version() {
        let mut p = k8s_openapi::api::core::v1::Pod::default();
        p.metadata.name = Some("web".into());
        p.metadata.namespace = Some("ns".into());
        p.metadata.uid = Some("u".into());
        p.metadata.resource_version = Some("7".into());
        let r = object_ref(&p);
        assert_eq!(r.api_version.as_deref(), Some("v1"));
        assert_eq!(r.kind.as_deref(), Some("Pod"));
        assert_eq!(r.uid.as_deref(), Some("u"));
        assert_eq!(r.resource_version, None);
        let n = k8s_openapi::api::core::v1::Node::default();
        assert_eq!(object_ref(&n).kind.as_deref(), Some("Node"));
    }
}
