//! One probe worker: a container × probe type, for the life of the pod (spec §3.2).
//!
//! # Algorithm (the kubelet's `worker.go`, paraphrased)
//!
//! ```text
//! start: if the agent started less than one period ago, sleep a random part of a period
//!        (spreads the probes of re-adopted pods); then probe at once and on every period
//!        tick (missed ticks are skipped), or at once when triggered.
//! each run:
//!   pod terminal                          → exit
//!   no container instance yet             → skip
//!   new container ID                      → publish the initial result; clear onHold
//!   onHold                                → skip (until a new container ID)
//!   container not running                 → publish Failure; exit if it ended under Never
//!   running for < initialDelaySeconds     → skip (whole seconds since startedAt)
//!   startup probe and container started   → skip
//!   other probe and container not started → skip
//!   run the handler (internal errors retried 3 times, then the run is discarded)
//!   count identical consecutive results; publish Failure at failureThreshold, Success at
//!   successThreshold; after publishing a liveness/startup Failure: onHold, run := 0
//! ```
//!
//! [`Worker::before_probe`] and [`Worker::after_probe`] are the pure part, on the shared
//! state under its lock; the loop on tokio time is [`super::task::run`].

use std::time::SystemTime;

use podvisor_runtime::ContainerId;

use super::shared::{ContainerTarget, Shared};
use super::{ProbeResult, ProbeSpec, ProbeType};

/// What a worker does at a tick.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing this time.
    Skip,
    /// Stop for good.
    Exit,
    /// Run the handler against this container instance.
    Probe(ContainerId),
}

/// A published change, for the manager to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The instance it applies to.
    pub container_id: ContainerId,
    /// The new result.
    pub result: ProbeResult,
}

/// The state of one worker.
#[derive(Debug)]
pub struct Worker {
    /// The container name.
    pub container: String,
    /// The probe type.
    pub probe_type: ProbeType,
    /// The probe.
    pub spec: ProbeSpec,
    /// Whether an ended container stays ended (restartPolicy Never).
    pub restart_never: bool,
    container_id: Option<ContainerId>,
    last_result: Option<ProbeResult>,
    result_run: u32,
    on_hold: bool,
}

impl Worker {
    /// A new worker.
    pub fn new(
        container: String,
        probe_type: ProbeType,
        spec: ProbeSpec,
        restart_never: bool,
    ) -> Worker {
        Worker {
            container,
            probe_type,
            spec,
            restart_never,
            container_id: None,
            last_result: None,
            result_run: 0,
            on_hold: false,
        }
    }

    /// The current run of identical results.
    pub fn run(&self) -> Option<(ProbeResult, u32)> {
        self.last_result.map(|r| (r, self.result_run))
    }

    /// The checks before a run. May publish (the initial value for a new instance, Failure
    /// for a container that is not running); returns what was published and the step.
    pub fn before_probe(&mut self, shared: &mut Shared, now: SystemTime) -> (Vec<Published>, Step) {
        let mut published = Vec::new();
        if shared.terminal {
            return (published, Step::Exit);
        }
        let Some(target) = shared.containers.get(&self.container).cloned() else {
            return (published, Step::Skip);
        };
        let id = target.id().clone();
        if self.container_id.as_ref() != Some(&id) {
            if self.container_id.is_some() {
                shared.remove_result(&self.container, self.probe_type);
            }
            self.container_id = Some(id.clone());
            let initial = self.probe_type.initial_result();
            if shared.set_result(&self.container, self.probe_type, &id, initial) {
                published.push(Published {
                    container_id: id.clone(),
                    result: initial,
                });
            }
            self.on_hold = false;
        }
        if self.on_hold {
            return (published, Step::Skip);
        }
        let started_at = match target {
            ContainerTarget::Running { started_at, .. } => started_at,
            ContainerTarget::Waiting { .. } | ContainerTarget::Exited { .. } => {
                if shared.set_result(&self.container, self.probe_type, &id, ProbeResult::Failure) {
                    published.push(Published {
                        container_id: id.clone(),
                        result: ProbeResult::Failure,
                    });
                }
                let exited = matches!(target, ContainerTarget::Exited { .. });
                let step = if exited && self.restart_never {
                    Step::Exit
                } else {
                    Step::Skip
                };
                return (published, step);
            }
        };
        let running_for = now
            .duration_since(started_at)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if running_for < self.spec.initial_delay_seconds as u64 {
            return (published, Step::Skip);
        }
        let started = shared.is_started(&self.container, &id);
        match (self.probe_type, started) {
            (ProbeType::Startup, true) => return (published, Step::Skip),
            (ProbeType::Liveness | ProbeType::Readiness, false) => return (published, Step::Skip),
            _ => {}
        }
        (published, Step::Probe(id))
    }

    /// Counts a run's result and publishes at the thresholds.
    pub fn after_probe(
        &mut self,
        shared: &mut Shared,
        id: &ContainerId,
        result: ProbeResult,
    ) -> Option<Published> {
        if self.last_result == Some(result) {
            self.result_run = self.result_run.saturating_add(1);
        } else {
            self.last_result = Some(result);
            self.result_run = 1;
        }
        let below = match result {
            ProbeResult::Failure => {
                (self.result_run as i64) < i64::from(self.spec.failure_threshold)
            }
            ProbeResult::Success => {
                (self.result_run as i64) < i64::from(self.spec.success_threshold)
            }
            ProbeResult::Unknown => false,
        };
        if below {
            return None;
        }
        let changed = shared.set_result(&self.container, self.probe_type, id, result);
        if matches!(self.probe_type, ProbeType::Liveness | ProbeType::Startup)
            && result == ProbeResult::Failure
        {
            self.on_hold = true;
            self.result_run = 0;
        }
        changed.then(|| Published {
            container_id: id.clone(),
            result,
        })
    }
}
