//! The pod's sandbox: made on the first sync, watched for its death, re-created after it, as
//! the kubelet does when a sandbox changes (`computePodActions`, `SyncPod` steps 2 and 4).
//!
//! # A sandbox's life, seen from the worker
//!
//! ```text
//!            create_sandbox                       supervisor killed / gone
//!   none ───────────────────▶ ready ──────────────────────────────────────▶ dead
//!    ▲                                                                        │
//!    │  remove_sandbox (kill what is left)   restartPolicy not Never and      │
//!    └────────────────────────────────────── the pod not done: SandboxChanged ┤
//!                                                                             │
//!                               restartPolicy Never (containers already ran), │
//!                               or nothing left to start: kept as it is ◀─────┘
//!                               (the containers' exits decide the phase)
//! ```
//!
//! # Rules
//!
//! * A dead sandbox is noticed when a container's newest instance has exited (the runtime
//!   records every container of a dead sandbox as killed, 137) and when an agent re-adopts a
//!   sandbox that is `NotReady`; the worker then asks the runtime for the sandbox's state.
//! * Re-creating it: a `Normal` event `SandboxChanged` ("Pod sandbox changed, it will be
//!   killed and re-created."), the exits the runtime recorded are read, what is left is
//!   killed and removed, and a new sandbox with the same ID is created.
//! * What belongs to the pod stays: each container's instances (the restart count goes on,
//!   the killed instance is the `lastState`), its back-off, the pod's `startTime` (so
//!   `activeDeadlineSeconds` still counts from the first start) and its volumes.
//! * Init containers run again from the first, each to completion, before any app container
//!   (the kubelet purges them with the old sandbox); the app containers then restart per the
//!   restart policy (under `OnFailure` one that succeeded stays as it ended).
//! * A sandbox that is gone altogether (removed behind the worker's back) is simply made
//!   again, without the event, as the kubelet does for a pod with no sandbox.

use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;
use podvisor_runtime::SandboxState;
use tokio::time::Instant;

use super::restart::RestartPolicy;
use super::worker::{PodWorker, RuntimeNote};
use crate::api::EventType;

/// The kubelet's `SandboxChanged` event message.
pub const SANDBOX_CHANGED_MESSAGE: &str = "Pod sandbox changed, it will be killed and re-created.";

impl PodWorker {
    /// Makes sure the pod has a live sandbox before containers are created or started.
    /// Returns false when none can run now (the sandbox could not be made, or it died and the
    /// pod's containers are not restarted).
    pub(super) async fn ensure_sandbox(&mut self, spec: &PodSpec, policy: RestartPolicy) -> bool {
        if self.sandbox_ready && self.an_instance_exited() {
            self.check_sandbox().await;
        }
        if self.sandbox_dead {
            // the exits the runtime recorded for what the dead sandbox ran
            self.apply_note(RuntimeNote::Resync).await;
            let ran = self.containers.values().any(|r| !r.instances.is_empty());
            // a Never pod runs once, unless one of its containers restarts by its own
            // policy or rules (upstream `runOnce` with `IsContainerRestartable`)
            let run_once = policy == RestartPolicy::Never
                && !spec
                    .containers
                    .iter()
                    .any(|c| podvisor_api::status::is_container_restartable(spec, c));
            if (run_once && ran) || self.completed(spec) {
                return false;
            }
            self.event(
                None,
                EventType::Normal,
                "SandboxChanged",
                SANDBOX_CHANGED_MESSAGE.into(),
            );
            if let Err(e) = self.release_sandbox().await {
                tracing::warn!(error = %e, "cannot remove the dead sandbox; retrying");
                self.wake_at(Instant::now() + Duration::from_secs(1));
                return false;
            }
            // whatever had no exit recorded is gone with the sandbox
            self.apply_note(RuntimeNote::Resync).await;
            self.sandbox_dead = false;
            self.reinitializing = true;
            for c in spec.init_containers.iter().flatten() {
                self.containers
                    .entry(c.name.clone())
                    .or_default()
                    .history
                    .new_sandbox = true;
            }
        }
        if !self.sandbox_ready {
            match self.create_sandbox().await {
                Ok(()) => self.sandbox_ready = true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the sandbox");
                    self.event(
                        None,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    self.wake_at(Instant::now() + Duration::from_secs(1));
                    return false;
                }
            }
        }
        true
    }

    /// Whether a container's newest instance has exited (only then can the sandbox have died
    /// unseen: the runtime records its containers as killed).
    fn an_instance_exited(&self) -> bool {
        self.containers
            .values()
            .any(|r| r.current().is_some_and(|i| i.exit().is_some()))
    }

    /// Asks the runtime whether the sandbox is still alive.
    async fn check_sandbox(&mut self) {
        match self.ctx.runtime.sandbox_status(&self.uid).await {
            Ok(s) if s.state == SandboxState::Ready => {}
            Ok(_) => {
                tracing::warn!("the pod's sandbox died");
                self.sandbox_ready = false;
                self.sandbox_dead = true;
            }
            Err(e) if e.is_not_found() => self.sandbox_ready = false,
            Err(e) => tracing::warn!(error = %e, "cannot read the sandbox's state"),
        }
    }
}

impl PodWorker {
    /// Creates the sandbox (or finds it made) and, unless the pod uses the host's network,
    /// sets up its network before any container exists; a failed network setup removes the
    /// sandbox again.
    pub(super) async fn create_sandbox(&mut self) -> Result<(), String> {
        let mut config = super::spec::sandbox_config(&self.pod);
        if let Some(r) = self.resize.pod_allocated() {
            // the pod cgroup gets what the node allocated (`resize.rs`)
            config.resources = super::spec::runtime_resources(Some(r));
        }
        let net = self.ctx.network.clone();
        config.network_namespace = net.as_ref().is_some_and(|n| n.wants_namespace(&self.pod));
        let sb = match self.ctx.runtime.create_sandbox(config).await {
            Ok(sb) => sb,
            Err(podvisor_runtime::RuntimeError::AlreadyExists { .. }) => {
                if let Some(net) = &net {
                    self.pod_ips = net.cached_ips(&self.uid).unwrap_or_default();
                }
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        let (Some(net), Some(netns)) = (net, sb.netns) else {
            self.pod_ips.clear();
            return Ok(());
        };
        match net.setup(&self.pod, &self.uid, &netns).await {
            Ok(ips) => {
                self.pod_ips = ips;
                Ok(())
            }
            Err(e) => {
                if let Err(r) = self.ctx.runtime.remove_sandbox(&self.uid).await {
                    tracing::warn!(error = %r, "cannot remove the sandbox after a network failure");
                }
                Err(e)
            }
        }
    }

    /// Removes the sandbox, its network first (DEL while the namespace still exists: the
    /// IP is released only now that no container is left).
    pub(super) async fn release_sandbox(&mut self) -> Result<(), podvisor_runtime::RuntimeError> {
        if let Some(net) = &self.ctx.network {
            let netns = (self.ctx.runtime.sandbox_status(&self.uid).await)
                .ok()
                .and_then(|s| s.netns);
            net.teardown(&self.uid, netns.as_deref())
                .await
                .map_err(|message| podvisor_runtime::RuntimeError::Os {
                    operation: "tear down the pod network".into(),
                    message,
                })?;
        }
        self.ctx.runtime.remove_sandbox(&self.uid).await?;
        self.pod_ips.clear();
        Ok(())
    }

    pub(super) async fn remove_sandbox(&mut self) {
        match self.release_sandbox().await {
            Ok(()) => {
                self.sandbox_ready = false;
                self.remove_volumes();
            }
            Err(e) => tracing::warn!(error = %e, "cannot remove the sandbox"),
        }
    }
}
