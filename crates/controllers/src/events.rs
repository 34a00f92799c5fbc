//! core/v1 Events from the controllers (`NodeNotReady`, `TaintManagerEviction`, ...), written
//! off the reconcile path.
//!
//! [`EventRecorder::record`] never blocks: the event goes into a bounded channel and a sink
//! task owned by the manager writes it as `<object>.<hex nanos>` in the object's namespace
//! (`default` for cluster-scoped objects such as Nodes, as upstream). When the channel is
//! full the event is dropped (upstream's broadcaster drops under pressure too).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::manager::Clock;

/// Capacity of the event channel.
const CAPACITY: usize = 4_096;

/// One event to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ControllerEvent {
    /// The object it is about.
    pub(crate) object: ObjectReference,
    /// `Normal` or `Warning`.
    pub(crate) type_: &'static str,
    /// The reason (`NodeNotReady`, ...).
    pub(crate) reason: &'static str,
    /// The message.
    pub(crate) message: String,
    /// The reporting component (`node-controller`, `taint-eviction-controller`, ...).
    pub(crate) component: &'static str,
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub(crate) struct EventRecorder {
    tx: mpsc::Sender<ControllerEvent>,
}

impl EventRecorder {
    /// A recorder and the receiving end for [`run_sink`].
    pub(crate) fn new() -> (Self, mpsc::Receiver<ControllerEvent>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Self { tx }, rx)
    }

    /// Queues an event; drops it if the queue is full.
    pub(crate) fn record(&self, event: ControllerEvent) {
        if self.tx.try_send(event).is_err() {
            debug!("event queue full or closed; event dropped");
        }
    }
}

/// A reference to a pod.
pub(crate) fn pod_ref(pod: &k8s_openapi::api::core::v1::Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// A reference to a node.
pub(crate) fn node_ref(node: &k8s_openapi::api::core::v1::Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Writes queued events until `shutdown`.
pub(crate) async fn run_sink(
    client: kube::Client,
    clock: Clock,
    mut rx: mpsc::Receiver<ControllerEvent>,
    shutdown: CancellationToken,
) {
    // Added to the timestamp in names, so two events of one object at the same instant
    // do not collide.
    let mut seq: u128 = 0;
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => return,
            },
        };
        let now = clock();
        let namespace = ev
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let object_name = ev.object.name.clone().unwrap_or_default();
        seq = seq.wrapping_add(1);
        let name = format!(
            "{object_name}.{:x}",
            now.as_nanosecond().unsigned_abs().wrapping_add(seq)
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ev.object,
            type_: Some(ev.type_.into()),
            reason: Some(ev.reason.into()),
            message: Some(ev.message),
            source: Some(EventSource {
                component: Some(ev.component.into()),
                host: None,
            }),
            reporting_component: Some(ev.component.into()),
            reporting_instance: Some(ev.component.into()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            debug!(error = %e, "writing event failed");
        }
    }
}
