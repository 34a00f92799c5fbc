//! The agent's narrow doors to the API server (STYLE.md §6): [`PodApi`] for status writes,
//! the probe-history annotations and the final delete, [`EventSink`] for events. The kube-rs implementations are
//! [`KubePodApi`] and the shared [`EventRecorder`] ([`kubelet_events`]); recording fakes live in [`crate::testing`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use podvisor_kit::events::{EventRecord, EventRecorder, EventWriter, RecorderConfig, Reporter};
pub use podvisor_kit::timeline::Step;
use podvisor_kit::timeline::{PodKey, TimelineRecorder};

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
    timeline: Option<TimelineRecorder>,
}

impl KubePodApi {
    /// Wraps a client.
    pub fn new(client: Client) -> KubePodApi {
        KubePodApi {
            client,
            timeline: None,
        }
    }

    /// Also records every status write, and what it changed, in the pod's timeline.
    pub fn with_timeline(mut self, timeline: Option<TimelineRecorder>) -> KubePodApi {
        self.timeline = timeline.filter(TimelineRecorder::enabled);
        self
    }
}

/// Records a container instance's exit in the pod's timeline (exit code, signal, and the
/// reason the status will give it: `OOMKilled`, `Completed` or `Error`).
pub fn exit_step(
    events: &dyn EventSink,
    pod: &PodRef,
    container: &str,
    status: &podvisor_runtime::ExitStatus,
) {
    let reason = if status.oom_killed {
        "OOMKilled"
    } else if status.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let mut details = vec![
        ("exitCode", status.exit_code.to_string()),
        ("reason", reason.to_string()),
    ];
    if let Some(sig) = status.signal {
        details.push(("signal", sig.name()));
    }
    events.step(
        pod,
        Step::ContainerExited,
        Some(container),
        format!("exited with code {} ({reason})", status.exit_code),
        &details,
    );
}

/// The pod of a pod object, for its timeline.
pub fn pod_key(pod: &Pod) -> PodKey {
    PodKey {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

/// Records a status write of `pod` (from `old` to `new`) in its timeline: the write itself,
/// and the changes it carries that no event names: the pod IP (the sandbox and its network
/// are ready) and the Ready condition.
pub fn record_status_write(
    t: &TimelineRecorder,
    pod: &Pod,
    old: Option<&PodStatus>,
    new: &PodStatus,
) {
    let key = pod_key(pod);
    let old_ip = old.and_then(|s| s.pod_ip.as_deref()).unwrap_or("");
    if let Some(ip) = new
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != old_ip)
    {
        t.record(
            &key,
            Step::SandboxReady,
            None,
            format!("sandbox and network ready, IP {ip}"),
            &[("ip", ip.to_string())],
        );
    }
    let ready = |s: Option<&PodStatus>| {
        s.and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
    };
    if let Some(now) = ready(Some(new)).filter(|r| Some(r) != ready(old).as_ref()) {
        t.record(
            &key,
            Step::ReadyChanged,
            None,
            format!("Ready={now}"),
            &[("ready", now)],
        );
    }
    let phase = new.phase.clone().unwrap_or_default();
    t.record(
        &key,
        Step::StatusWritten,
        None,
        format!("phase {phase}"),
        &[("phase", phase)],
    );
}

#[async_trait::async_trait]
impl PodApi for KubePodApi {
    async fn update_status(&self, pod: &Pod, status: &PodStatus) -> Result<Pod, AgentError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = serde_json::json!({ "status": status });
        let written = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| AgentError::api(format!("update status of pod {ns}/{name}"), e))?;
        if let Some(t) = &self.timeline {
            record_status_write(t, pod, pod.status.as_ref(), status);
        }
        Ok(written)
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

    /// Records a step of the pod's timeline that is no event (the stop signal, SIGKILL,
    /// preStop, probe results; `podvisor_kit::timeline`). Default: nothing.
    fn step(
        &self,
        pod: &PodRef,
        step: Step,
        container: Option<&str>,
        message: String,
        details: &[(&str, String)],
    ) {
        let _ = (pod, step, container, message, details);
    }

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
    fn step(
        &self,
        pod: &PodRef,
        step: Step,
        container: Option<&str>,
        message: String,
        details: &[(&str, String)],
    ) {
        if let Some(t) = self.timeline() {
            let key = PodKey {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: pod.uid.clone(),
            };
            t.record(&key, step, container, message, details);
        }
    }

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
