//! The agent's narrow doors to the API server (STYLE.md §6): [`PodApi`] for status writes,
//! the probe-history annotations and the final delete, [`EventSink`] for events. The kube-rs implementations are
//! [`KubePodApi`] and [`KubeEventRecorder`]; recording fakes live in [`crate::testing`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{WallClock, to_time};
use crate::error::AgentError;

/// Pod writes the agent makes.
#[async_trait::async_trait]
pub trait PodApi: Send + Sync + 'static {
    /// Writes `status` to `pods/status` of `pod`. Returns the updated object.
    async fn update_status(&self, pod: &Pod, status: &PodStatus) -> Result<Pod, AgentError>;

    /// Merges `annotations` into the pod's `metadata.annotations` with a JSON merge patch of
    /// the pod itself (not a status write); `None` removes the key. The node authorizer lets
    /// a node change only `probes.podvisor.io/` annotations of its own pods. Returns the
    /// updated object.
    async fn patch_annotations(
        &self,
        pod: &Pod,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> Result<Pod, AgentError>;

    /// Deletes the pod with grace 0 and a UID precondition. A pod that is already gone, or
    /// whose UID differs (a new pod with the same name), counts as deleted.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), AgentError>;
}

/// [`PodApi`] over kube-rs.
#[derive(Clone)]
pub struct KubePodApi {
    client: Client,
}

impl KubePodApi {
    /// Wraps a client.
    pub fn new(client: Client) -> KubePodApi {
        KubePodApi { client }
    }
}

#[async_trait::async_trait]
impl PodApi for KubePodApi {
    async fn update_status(&self, pod: &Pod, status: &PodStatus) -> Result<Pod, AgentError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| AgentError::api(format!("update status of pod {ns}/{name}"), e))
    }

    async fn patch_annotations(
        &self,
        pod: &Pod,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> Result<Pod, AgentError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        // the UID precondition keeps the patch off a new pod with the same name
        let patch = serde_json::json!({
            "metadata": { "uid": pod.metadata.uid, "annotations": annotations }
        });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| AgentError::api(format!("patch annotations of pod {ns}/{name}"), e))
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), AgentError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = AgentError::api(format!("delete pod {namespace}/{name}"), e);
                if err.is_not_found() || err.is_conflict() {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}

/// The type of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

impl EventType {
    /// As on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The pod an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// One event about a pod (or one of its containers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEvent {
    /// The pod.
    pub pod: PodRef,
    /// `spec.containers{name}` when about a container.
    pub field_path: Option<String>,
    /// Normal or Warning.
    pub type_: EventType,
    /// E.g. `Started`.
    pub reason: String,
    /// E.g. `Started container app`.
    pub message: String,
}

/// Where events go. Never blocks and never fails (events are best effort).
pub trait EventSink: Send + Sync + 'static {
    /// Records an event.
    fn emit(&self, event: PodEvent);
}

/// Records core/v1 Events through kube-rs, aggregating repeats (count, lastTimestamp) as the
/// kubelet's recorder does. Writes happen on a background task ([`KubeEventRecorder::run`]).
pub struct KubeEventRecorder {
    tx: mpsc::UnboundedSender<PodEvent>,
}

/// The background half of [`KubeEventRecorder`].
pub struct EventWriter {
    rx: mpsc::UnboundedReceiver<PodEvent>,
    client: Client,
    node: String,
    clock: WallClock,
}

impl KubeEventRecorder {
    /// A recorder and its writer (run the writer on an owned task).
    pub fn new(
        client: Client,
        node: String,
        clock: WallClock,
    ) -> (Arc<KubeEventRecorder>, EventWriter) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(KubeEventRecorder { tx }),
            EventWriter {
                rx,
                client,
                node,
                clock,
            },
        )
    }
}

impl EventSink for KubeEventRecorder {
    fn emit(&self, event: PodEvent) {
        let _ = self.tx.send(event);
    }
}

type AggKey = (String, Option<String>, EventType, String, String);

impl EventWriter {
    /// Writes events until `shutdown` (then drains what is queued, best effort).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut seen: HashMap<AggKey, (String, i32, SystemTime)> = HashMap::new();
        let mut seq: u64 = 0;
        loop {
            let ev = tokio::select! {
                ev = self.rx.recv() => match ev { Some(ev) => ev, None => return },
                _ = shutdown.cancelled() => return,
            };
            let now = self.clock.now();
            let key: AggKey = (
                ev.pod.uid.clone(),
                ev.field_path.clone(),
                ev.type_,
                ev.reason.clone(),
                ev.message.clone(),
            );
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ev.pod.namespace);
            if let Some((name, count, _first)) = seen.get_mut(&key) {
                *count += 1;
                let patch = serde_json::json!({ "count": *count, "lastTimestamp": to_time(now) });
                match api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => continue,
                    Err(e) => tracing::debug!(error = %e, "event patch failed; creating anew"),
                }
            }
            if seen.len() > 4096 {
                seen.clear();
            }
            seq += 1;
            let nanos = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let name = format!("{}.{:x}", ev.pod.name, nanos + u128::from(seq));
            let event = Event {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ev.pod.namespace.clone()),
                    ..Default::default()
                },
                involved_object: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(ev.pod.name.clone()),
                    namespace: Some(ev.pod.namespace.clone()),
                    uid: Some(ev.pod.uid.clone()),
                    field_path: ev.field_path.clone(),
                    ..Default::default()
                },
                reason: Some(ev.reason.clone()),
                message: Some(ev.message.clone()),
                type_: Some(ev.type_.as_str().to_string()),
                source: Some(EventSource {
                    component: Some("kubelet".into()),
                    host: Some(self.node.clone()),
                }),
                reporting_component: Some("kubelet".into()),
                reporting_instance: Some(self.node.clone()),
                first_timestamp: Some(to_time(now)),
                last_timestamp: Some(to_time(now)),
                count: Some(1),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &event).await {
                Ok(_) => {
                    seen.insert(key, (name, 1, now));
                }
                Err(e) => tracing::debug!(error = %e, reason = %ev.reason, "event create failed"),
            }
        }
    }
}
