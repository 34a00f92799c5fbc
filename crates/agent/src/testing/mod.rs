//! The agent's test kit: recording fakes of the API doors ([`PodApi`], [`EventSink`]) with a
//! harness-friendly view of what was written, one pod-worker harness on the production hooks
//! ([`WorkerHarness`]) and, for the unit tests, the pods and containers they use on the
//! project's builders (`builders`, on `podvisor_testkit`). Every record
//! carries the tokio instant it happened at, so tests under paused time can assert timing
//! and order.

#[cfg(test)]
pub mod builders;
pub mod worker;

pub use worker::{RunningWorker, ScratchDir, WorkerHarness, advance, s, settle};

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::time::Instant;

use crate::api::{EventSink, PodApi, PodEvent};
use crate::error::AgentError;

/// One call to [`FakePodApi`].
#[derive(Clone, Debug, PartialEq)]
pub enum PodApiCall {
    /// A status write.
    UpdateStatus {
        /// Pod name.
        name: String,
        /// The status written.
        status: Box<PodStatus>,
    },
    /// A merge patch of `metadata.annotations` (`None` removes the key).
    PatchAnnotations {
        /// Pod name.
        name: String,
        /// The annotations patched.
        annotations: BTreeMap<String, Option<String>>,
    },
    /// A delete (grace 0, UID precondition).
    Delete {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The UID precondition.
        uid: String,
    },
}

/// A [`PodApi`] that records calls and answers like a server that accepts everything.
#[derive(Default)]
pub struct FakePodApi {
    calls: Mutex<Vec<(Instant, PodApiCall)>>,
    fail_status_writes: Mutex<u32>,
}

impl FakePodApi {
    /// A fresh fake.
    pub fn new() -> FakePodApi {
        FakePodApi::default()
    }

    /// Every call with its time.
    pub fn calls(&self) -> Vec<(Instant, PodApiCall)> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The statuses written, oldest first.
    pub fn statuses(&self) -> Vec<PodStatus> {
        self.calls()
            .into_iter()
            .filter_map(|(_, c)| match c {
                PodApiCall::UpdateStatus { status, .. } => Some(*status),
                _ => None,
            })
            .collect()
    }

    /// The last status written.
    pub fn last_status(&self) -> Option<PodStatus> {
        self.statuses().pop()
    }

    /// The annotation patches, with their times, oldest first.
    pub fn annotation_patches(&self) -> Vec<(Instant, BTreeMap<String, Option<String>>)> {
        self.calls()
            .into_iter()
            .filter_map(|(at, c)| match c {
                PodApiCall::PatchAnnotations { annotations, .. } => Some((at, annotations)),
                _ => None,
            })
            .collect()
    }

    /// The annotations as the patches left them (starting from none).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (_, patch) in self.annotation_patches() {
            merge_annotations(&mut out, &patch);
        }
        out
    }

    /// The deletes, with their times.
    pub fn deletes(&self) -> Vec<(Instant, PodApiCall)> {
        self.calls()
            .into_iter()
            .filter(|(_, c)| matches!(c, PodApiCall::Delete { .. }))
            .collect()
    }

    /// Makes the next `n` status writes fail with a 500.
    pub fn fail_status_writes(&self, n: u32) {
        *self
            .fail_status_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = n;
    }
}

#[async_trait::async_trait]
impl PodApi for FakePodApi {
    async fn update_status(&self, pod: &Pod, status: &PodStatus) -> Result<Pod, AgentError> {
        {
            let mut f = self
                .fail_status_writes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if *f > 0 {
                *f -= 1;
                return Err(AgentError::Api {
                    operation: "update status".into(),
                    code: Some(500),
                    message: "injected".into(),
                });
            }
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push((
            Instant::now(),
            PodApiCall::UpdateStatus {
                name,
                status: Box::new(status.clone()),
            },
        ));
        let mut out = pod.clone();
        out.status = Some(status.clone());
        Ok(out)
    }

    async fn patch_annotations(
        &self,
        pod: &Pod,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> Result<Pod, AgentError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push((
            Instant::now(),
            PodApiCall::PatchAnnotations {
                name,
                annotations: annotations.clone(),
            },
        ));
        let mut out = pod.clone();
        let mut current = out.metadata.annotations.take().unwrap_or_default();
        merge_annotations(&mut current, annotations);
        out.metadata.annotations = (!current.is_empty()).then_some(current);
        Ok(out)
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), AgentError> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push((
            Instant::now(),
            PodApiCall::Delete {
                namespace: namespace.into(),
                name: name.into(),
                uid: uid.into(),
            },
        ));
        Ok(())
    }
}

fn merge_annotations(
    into: &mut BTreeMap<String, String>,
    patch: &BTreeMap<String, Option<String>>,
) {
    for (k, v) in patch {
        match v {
            Some(v) => {
                into.insert(k.clone(), v.clone());
            }
            None => {
                into.remove(k);
            }
        }
    }
}

/// An [`EventSink`] that keeps every event.
#[derive(Default)]
pub struct RecordingEvents {
    events: Mutex<Vec<(Instant, PodEvent)>>,
}

impl RecordingEvents {
    /// A fresh recorder.
    pub fn new() -> RecordingEvents {
        RecordingEvents::default()
    }

    /// Every event with its time.
    pub fn events(&self) -> Vec<(Instant, PodEvent)> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `(reason, message)` of every event, in order.
    pub fn reasons(&self) -> Vec<(String, String)> {
        self.events()
            .into_iter()
            .map(|(_, e)| (e.reason, e.message))
            .collect()
    }
}

impl EventSink for RecordingEvents {
    fn emit(&self, event: PodEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Instant::now(), event));
    }
}
