//! Restarting all of a pod's containers in place (KEP-5532, `RestartAllContainersOnContainerExits`,
//! beta and on since 1.36): a container (init, sidecar or regular) whose first matching
//! `restartPolicyRules` entry has the action `RestartAllContainers` restarts the whole pod
//! without leaving its node.
//!
//! # The restart, step by step
//!
//! ```text
//!   trigger exits ─▶ AllContainersRestarting=True ─▶ every running container ─▶ AllContainersRestarting=False
//!   (code matches      (RestartAllContainersStarted,     SIGKILLed at once (no        init containers run again
//!    the rule)          "container exited with            preStop, grace ignored),    from the first, then the
//!                       restart policy rule")             ephemeral ones too           sidecars and app containers
//! ```
//!
//! # Rules (upstream `ShouldAllContainersRestart`, `GenerateAllContainersRestartingCondition`,
//! the KEP's "Restart Phases")
//!
//! * The trigger is the exit of a container's newest instance whose code matches a rule with
//!   the action `RestartAllContainers`; each such instance triggers once.
//! * Kept: the sandbox (supervisor, cgroups, pod IP), the pod UID, its volumes (an `emptyDir`
//!   keeps its files) and each container's history: the killed instance becomes its
//!   `lastState`, its `restartCount` grows by one, its back-off goes on (a pod that keeps
//!   triggering backs off like a crash-looping container).
//! * Every container of the spec runs again whatever its restart policy (a `Never` container
//!   too); ephemeral containers are killed and stay as they ended.
//! * Until its init containers ran again each container waits with reason `PodInitializing`;
//!   the phase never turns terminal because of the trigger (`podvisor_api::status::get_phase`
//!   counts it as restarting).
//! * The condition `AllContainersRestarting` is reported only by a pod that has such a rule:
//!   True from the trigger until every container is stopped, False otherwise (reason
//!   `PodCompleted`/`PodFailed` once the pod is terminal).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use podvisor_api::status as rules;
use podvisor_runtime::ContainerId;

use super::restart::ContainerLifecycle;
use super::status::Waiting;
use super::worker::PodWorker;

/// What the worker remembers of restarts of all containers.
#[derive(Debug, Default)]
pub struct RestartAll {
    /// The trigger instances already acted on (pruned to the newest instances).
    handled: HashSet<ContainerId>,
}

impl PodWorker {
    /// The containers of `spec` (init first) whose newest instance exited with a code that
    /// restarts all containers and was not acted on yet.
    pub(super) fn restart_all_triggers(&self, spec: &PodSpec) -> Vec<(String, ContainerId)> {
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .filter_map(|c| {
                let i = self.containers.get(&c.name)?.current()?;
                let e = i.exit()?;
                (rules::restarts_all_containers(c, e.exit_code)
                    && !self.restart_all.handled.contains(&i.id))
                .then(|| (c.name.clone(), i.id.clone()))
            })
            .collect()
    }

    /// `AllContainersRestarting` for the status: None for a pod without a
    /// `RestartAllContainers` rule, else whether a restart of all containers is under way.
    pub(super) fn all_containers_restarting(&self, spec: &PodSpec) -> Option<bool> {
        rules::all_containers_could_restart(spec)
            .then(|| !self.restart_all_triggers(spec).is_empty())
    }

    /// Restarts every container if one exited with a code that asks for it (module
    /// documentation). Returns whether it did.
    pub(super) async fn restart_all_if_triggered(&mut self, spec: &PodSpec) -> bool {
        let triggers = self.restart_all_triggers(spec);
        if triggers.is_empty() {
            return false;
        }
        tracing::info!(triggers = ?triggers, "a container exited with a RestartAllContainers rule: restarting all containers");
        // AllContainersRestarting=True before anything is killed
        self.write_status().await;
        let ephemeral = super::spec::ephemeral_containers(&self.pod);
        let all: Vec<Container> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .chain(&ephemeral)
            .cloned()
            .collect();
        let running: Vec<(Container, ContainerId)> = all
            .iter()
            .filter_map(|c| {
                let i = self.containers.get(&c.name)?.current()?;
                i.is_running().then(|| (c.clone(), i.id.clone()))
            })
            .collect();
        self.kill_now(running, |name| {
            format!("Container {name} will be restarted: all containers of the pod restart")
        })
        .await;
        // each container runs again, the init containers first
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            let Some(rec) = self.containers.get_mut(&c.name) else {
                continue;
            };
            if rec.current().is_none_or(|i| i.exit().is_none()) {
                continue;
            }
            rec.history.new_sandbox = true;
            rec.lifecycle = ContainerLifecycle::Waiting(Waiting {
                reason: rules::POD_INITIALIZING.into(),
                message: None,
            });
        }
        self.reinitializing = true;
        let current: HashSet<ContainerId> = self
            .containers
            .values()
            .filter_map(|r| r.current().map(|i| i.id.clone()))
            .collect();
        self.restart_all.handled.retain(|id| current.contains(id));
        self.restart_all
            .handled
            .extend(triggers.into_iter().map(|(_, id)| id));
        true
    }
}
