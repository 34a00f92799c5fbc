//! The state a pod's probe workers share with its [`ProbeManager`](super::ProbeManager)
//! (under one lock, never held across an await), and the updates sent to the pod worker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Container;
use podvisor_runtime::ContainerId;
use tokio::sync::{Notify, mpsc};

use super::history::ProbeHistory;
use super::{ProbeResult, ProbeType};
use crate::handlers::HandlerEvent;

/// The pod, as the probes need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePod {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
    /// The pod IP (the default host of httpGet, tcpSocket and grpc).
    pub pod_ip: String,
    /// `spec.restartPolicy` (`Always`, `OnFailure`, `Never`).
    pub restart_policy: String,
}

/// A container instance as the pod worker observes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerTarget {
    /// Created (or being started: a postStart hook is running), not running yet.
    Waiting {
        /// Its ID.
        id: ContainerId,
    },
    /// Running since `started_at`.
    Running {
        /// Its ID.
        id: ContainerId,
        /// `state.running.startedAt`.
        started_at: SystemTime,
    },
    /// Ended (maybe to be restarted as a new instance).
    Exited {
        /// Its ID.
        id: ContainerId,
    },
}

impl ContainerTarget {
    /// The instance's ID.
    pub fn id(&self) -> &ContainerId {
        match self {
            ContainerTarget::Waiting { id }
            | ContainerTarget::Running { id, .. }
            | ContainerTarget::Exited { id } => id,
        }
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        matches!(self, ContainerTarget::Running { .. })
    }
}

/// A request to kill a container that failed its liveness or startup probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillRequest {
    /// The container name.
    pub container: String,
    /// The instance to kill (ignore the request if it is no longer current).
    pub container_id: ContainerId,
    /// Liveness or Startup.
    pub probe_type: ProbeType,
    /// The `Killing` event message: `Container <c> failed liveness probe, will be
    /// restarted` (no suffix under restartPolicy Never).
    pub message: String,
    /// The probe's `terminationGracePeriodSeconds`, which overrides the pod's for this kill
    /// (unless the pod is being deleted: then `deletionGracePeriodSeconds` wins).
    pub grace_period_seconds: Option<i64>,
}

/// What the manager tells the pod worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeUpdate {
    /// A published result changed: recompute `started`/`ready` and the pod conditions.
    Changed {
        /// The container name.
        container: String,
        /// The probe type.
        probe_type: ProbeType,
        /// The instance.
        container_id: ContainerId,
        /// The new result.
        result: ProbeResult,
    },
    /// Kill and restart (per restartPolicy) this container.
    Kill(KillRequest),
    /// Record this event.
    Event(HandlerEvent),
}

/// The receiving end of a manager's updates.
pub type ProbeUpdates = mpsc::UnboundedReceiver<ProbeUpdate>;

/// The state the workers share with the manager (under one lock, never held across an
/// await).
pub struct Shared {
    pub(crate) pod: ProbePod,
    pub(crate) terminal: bool,
    pub(crate) deleting: bool,
    pub(crate) containers: HashMap<String, ContainerTarget>,
    pub(crate) specs: HashMap<String, Container>,
    pub(crate) results: HashMap<(String, ProbeType), (ContainerId, ProbeResult)>,
    pub(crate) workers: HashSet<(String, ProbeType)>,
    pub(crate) triggers: HashMap<(String, ProbeType), Arc<Notify>>,
    /// The instance `ready()` last triggered a readiness run for (once per instance, so a
    /// status computation caused by the run's own event cannot loop).
    pub(crate) status_triggered: HashMap<String, ContainerId>,
    pub(crate) histories: HashMap<String, BTreeMap<ProbeType, ProbeHistory>>,
}

impl Shared {
    /// The state of a pod without containers, results or workers yet.
    pub(crate) fn new(pod: ProbePod) -> Shared {
        Shared {
            pod,
            terminal: false,
            deleting: false,
            containers: HashMap::new(),
            specs: HashMap::new(),
            results: HashMap::new(),
            workers: HashSet::new(),
            triggers: HashMap::new(),
            status_triggered: HashMap::new(),
            histories: HashMap::new(),
        }
    }

    /// Publishes a result; true if it changed.
    pub(crate) fn set_result(
        &mut self,
        container: &str,
        probe_type: ProbeType,
        id: &ContainerId,
        result: ProbeResult,
    ) -> bool {
        let key = (container.to_string(), probe_type);
        let changed = match self.results.get(&key) {
            Some((rid, r)) => rid != id || *r != result,
            None => true,
        };
        if changed {
            self.results.insert(key, (id.clone(), result));
            if let Some(h) = self
                .histories
                .get_mut(container)
                .and_then(|m| m.get_mut(&probe_type))
            {
                h.state = result.as_str();
            }
        }
        changed
    }

    pub(crate) fn remove_result(&mut self, container: &str, probe_type: ProbeType) {
        self.results.remove(&(container.to_string(), probe_type));
    }

    pub(crate) fn result_for(
        &self,
        container: &str,
        probe_type: ProbeType,
        id: &ContainerId,
    ) -> Option<ProbeResult> {
        self.results
            .get(&(container.to_string(), probe_type))
            .filter(|(rid, _)| rid == id)
            .map(|(_, r)| *r)
    }

    pub(crate) fn has_worker(&self, container: &str, probe_type: ProbeType) -> bool {
        self.workers.contains(&(container.to_string(), probe_type))
    }

    /// The kubelet's `started`: startup Success for this instance, or no startup worker.
    pub(crate) fn is_started(&self, container: &str, id: &ContainerId) -> bool {
        match self.result_for(container, ProbeType::Startup, id) {
            Some(r) => r == ProbeResult::Success,
            None => !self.has_worker(container, ProbeType::Startup),
        }
    }

    pub(crate) fn trigger(&self, container: &str, probe_type: ProbeType) {
        if let Some(t) = self.triggers.get(&(container.to_string(), probe_type)) {
            t.notify_one();
        }
    }
}

/// Locks the shared state (a poisoned lock is taken over: the state stays consistent
/// between statements).
pub(crate) fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
