//! What the pod worker (`crate::pod::worker`) uses of the probes, in its own vocabulary.
//!
//! * [`PodProbes`]: a pod's [`ProbeManager`] plus its update channel. The worker creates it
//!   once the sandbox exists ([`PodProbes::for_pod`]: None when no container has a probe),
//!   tells it every container instance's state before computing the status
//!   ([`PodProbes::observe`]), asks it `ready`/`started` for each container view, and waits on
//!   [`PodProbes::next`] in its select loop.
//!
//! A kill request of a failed liveness or startup probe goes through the pod wing's one stop
//! path (`crate::pod::stop`); the restart that follows is `crate::pod::restart`'s decision.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_runtime::{ContainerId, ContainerRuntime, ContainerState};

use super::history::ANNOTATION_PREFIX;
use super::manager::{ProbeDeps, ProbeManager};
use super::shared::{ContainerTarget, ProbePod, ProbeUpdate, ProbeUpdates};
use crate::clock::WallClock;

/// A pod's probes, as its worker holds them.
#[derive(Debug)]
pub struct PodProbes {
    manager: ProbeManager,
    updates: ProbeUpdates,
}

fn has_probes(c: &Container) -> bool {
    c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some()
}

impl PodProbes {
    /// The probes of `pod`, or None if none of its containers (or sidecars) has one. Must be
    /// called inside the tokio runtime (it starts the workers).
    pub fn for_pod(
        pod: &Pod,
        runtime: Arc<dyn ContainerRuntime>,
        clock: &WallClock,
        pod_ip: &str,
        steps: Arc<dyn crate::api::EventSink>,
    ) -> Option<PodProbes> {
        let spec = pod.spec.as_ref()?;
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        if !spec.containers.iter().chain(sidecars).any(has_probes) {
            return None;
        }
        let meta = &pod.metadata;
        let (mut manager, updates) = ProbeManager::new(
            ProbePod {
                name: meta.name.clone().unwrap_or_default(),
                namespace: meta.namespace.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
                pod_ip: pod_ip.to_string(),
                restart_policy: spec
                    .restart_policy
                    .clone()
                    .unwrap_or_else(|| "Always".into()),
            },
            ProbeDeps {
                runtime,
                clock: clock.clone(),
                agent_started: None,
                steps: Some(steps),
            },
        );
        manager.add_pod(spec);
        Some(PodProbes { manager, updates })
    }

    /// The manager (for `annotations()`, `history()`).
    pub fn manager(&self) -> &ProbeManager {
        &self.manager
    }

    fn target(id: &ContainerId, state: &ContainerState) -> ContainerTarget {
        match state {
            ContainerState::Created => ContainerTarget::Waiting { id: id.clone() },
            ContainerState::Running { started_at, .. } => ContainerTarget::Running {
                id: id.clone(),
                started_at: *started_at,
            },
            ContainerState::Exited(_) => ContainerTarget::Exited { id: id.clone() },
        }
    }

    /// Records a container's newest instance (None: not created yet). `reported_running`
    /// is false while its postStart hook runs (it is then probed as waiting).
    pub fn observe(
        &self,
        name: &str,
        current: Option<(&ContainerId, &ContainerState)>,
        reported_running: bool,
    ) {
        let target = current.map(|(id, st)| match st {
            ContainerState::Running { .. } if !reported_running => {
                ContainerTarget::Waiting { id: id.clone() }
            }
            _ => Self::target(id, st),
        });
        self.manager.set_container(name, target);
    }

    /// `(ready, started)` for a container's newest instance, as the kubelet's
    /// `UpdatePodStatus` (true, true without probes).
    pub fn ready_started(
        &self,
        name: &str,
        id: &ContainerId,
        state: &ContainerState,
    ) -> (bool, bool) {
        let t = Self::target(id, state);
        (self.manager.ready(name, &t), self.manager.started(name, &t))
    }

    /// The next update (pending forever once the manager is gone).
    pub async fn next(&mut self) -> Option<ProbeUpdate> {
        self.updates.recv().await
    }

    /// Termination started: liveness and startup stop; readiness keeps running.
    pub fn terminating(&mut self) {
        self.manager.stop_liveness_and_startup();
    }

    /// The containers have stopped: every worker stops.
    pub fn stop(&mut self) {
        self.manager.remove_pod();
    }
}

/// The merge patch of `metadata.annotations` that makes `pod` carry its current probe
/// histories (docs/design/0002-probe-results.md): `probes.podvisor.io/<container>` for each
/// container of the spec with a history, the value where it differs from the object's, and
/// `None` (removal) for such annotations of containers without one. None when nothing differs.
pub fn annotation_patch(
    probes: Option<&PodProbes>,
    pod: &Pod,
) -> Option<BTreeMap<String, Option<String>>> {
    let spec = pod.spec.as_ref();
    let names: Vec<&str> = spec
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .map(|c| c.name.as_str())
        .collect();
    let desired: BTreeMap<String, String> = probes
        .map(|p| p.manager.annotations())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            k.strip_prefix(ANNOTATION_PREFIX)
                .is_some_and(|c| names.contains(&c))
        })
        .collect();
    let empty = BTreeMap::new();
    let current = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let mut patch: BTreeMap<String, Option<String>> = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    for k in current.keys() {
        if k.starts_with(ANNOTATION_PREFIX) && !desired.contains_key(k) {
            patch.insert(k.clone(), None);
        }
    }
    (!patch.is_empty()).then_some(patch)
}

/// Waits for the next probe update of an optional [`PodProbes`] (pending if there is none).
pub async fn next_update(p: &mut Option<PodProbes>) -> Option<ProbeUpdate> {
    match p {
        Some(p) => p.next().await,
        None => std::future::pending().await,
    }
}
