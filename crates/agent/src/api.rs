//! The agent's narrow doors to the API server (STYLE.md §6): [`PodApi`] for status writes,
//! the probe-history annotations and the final delete, [`EventSink`] for events. The kube-rs implementations are
//! [`KubePodApi`] and the shared [`EventRecorder`] ([`kubelet_events`]); recording fakes live in [`crate::testing`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use podvisor_kit::events::{EventRecord, EventRecorder, EventWriter, RecorderConfig, Reporter};

use crate::clock::WallClock;
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

pub use podvisor_kit::events::EventType;

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

    /// Records an event about the Node `node` (default: dropped).
    fn emit_node(&self, node: &str, type_: EventType, reason: &str, message: String) {
        let _ = (node, type_, reason, message);
    }
}

/// The node's event recorder and its writer (run the writer on an owned task): the shared
/// bounded recorder of [`podvisor_kit::events`], reporting as the kubelet of `node` and
/// aggregating repeats (count, lastTimestamp) as the kubelet's recorder does.
pub fn kubelet_events(
    client: Client,
    node: &str,
    clock: WallClock,
) -> (EventRecorder, EventWriter) {
    EventRecorder::new(
        client,
        Reporter {
            component: "kubelet".into(),
            instance: node.to_string(),
            host: Some(node.to_string()),
        },
        clock,
        RecorderConfig::default(),
    )
}

impl EventSink for EventRecorder {
    fn emit(&self, event: PodEvent) {
        self.record(EventRecord {
            object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(event.pod.name),
                namespace: Some(event.pod.namespace),
                uid: Some(event.pod.uid),
                field_path: event.field_path,
                ..Default::default()
            },
            type_: event.type_,
            reason: event.reason,
            message: event.message,
            action: None,
        });
    }

    /// As the kubelet's node reference: kind Node, the UID is the node's name.
    fn emit_node(&self, node: &str, type_: EventType, reason: &str, message: String) {
        self.record(EventRecord {
            object: ObjectReference {
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                uid: Some(node.to_string()),
                ..Default::default()
            },
            type_,
            reason: reason.to_string(),
            message,
            action: None,
        });
    }
}
