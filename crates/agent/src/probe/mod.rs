//! Container probes (liveness, readiness, startup).
//!
//! # Pieces
//!
//! * The handlers (exec, tcpSocket, httpGet, grpc) are shared with the lifecycle hooks and
//!   live in `crate::handlers`; a probe runs them through `handlers::run_probe_action`.
//! * [`worker`]: one worker per container × probe type, with the kubelet's algorithm
//!   (spec §3.2) as a pure state struct.
//! * [`task`]: the worker's async loop on tokio time, and what every worker task holds
//!   (running the handler with retries, publishing results, asking for kills).
//! * [`shared`]: the state the workers share with the manager, and the updates they send.
//! * [`manager`]: the [`ProbeManager`] a pod worker owns. It owns the workers (a `JoinSet`,
//!   aborted on drop), takes the container states the pod worker observes, answers
//!   `started`/`ready` for status computation, and sends [`ProbeUpdate`]s: status changed,
//!   kill this container (liveness/startup failure), record this event.
//! * [`history`]: the last results of each probe (time, outcome, latency, output excerpt),
//!   rendered as the `probes.podvisor.io/<container>` annotation
//!   (docs/design/0002-probe-results.md).
//! * [`glue`]: what the agent's pod worker uses (`PodProbes`, the annotation patch).
//!
//! # Who calls what
//!
//! ```text
//! pod worker ──add_pod(spec)──────────────▶ ProbeManager ──spawns──▶ task × (container, type)
//!            ──set_container(name, state)─▶      │                      │ reads shared state at
//!            ──stop_liveness_and_startup()▶      │                      │ every tick, runs the
//!            ◀──ProbeUpdate (Status/Kill/Event)──┘◀──publish result─────┘ handler, publishes
//!            ──started()/ready()──────────▶ (status computation; ready() triggers readiness)
//! ```
//!
//! Imports go one way: manager → task → worker → shared → history; none of them imports
//! the manager.
//!
//! Results are keyed by container ID, as in the kubelet: a result published for an old
//! instance never applies to a new one, and a new instance starts from the initial value
//! (readiness Failure, liveness Success, startup Unknown).

pub mod glue;
pub mod history;
pub mod manager;
pub mod shared;
pub mod task;
pub mod worker;

pub use history::{ProbeHistory, ProbeRecord};
pub use manager::{ProbeDeps, ProbeManager};
pub use shared::{ContainerTarget, KillRequest, ProbePod, ProbeUpdate, ProbeUpdates};

use std::time::Duration;

use crate::handlers::{Action, ActionError};

/// How often an internal probe error is retried before the run is discarded
/// (`maxProbeRetries`).
pub const MAX_PROBE_RETRIES: usize = 3;

/// The three probe types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeType {
    /// Restarts the container when it fails.
    Liveness,
    /// Gates the container's `ready`.
    Readiness,
    /// Gates the other two, and the container's `started`.
    Startup,
}

impl ProbeType {
    /// The capitalised name used in event messages ("Liveness probe failed: ...").
    pub fn label(self) -> &'static str {
        match self {
            ProbeType::Liveness => "Liveness",
            ProbeType::Readiness => "Readiness",
            ProbeType::Startup => "Startup",
        }
    }

    /// The lower-case name (annotation keys, logs).
    pub fn key(self) -> &'static str {
        match self {
            ProbeType::Liveness => "liveness",
            ProbeType::Readiness => "readiness",
            ProbeType::Startup => "startup",
        }
    }

    /// The result a new container instance starts with.
    pub fn initial_result(self) -> ProbeResult {
        match self {
            ProbeType::Liveness => ProbeResult::Success,
            ProbeType::Readiness => ProbeResult::Failure,
            ProbeType::Startup => ProbeResult::Unknown,
        }
    }

    /// All three, in a fixed order.
    pub const ALL: [ProbeType; 3] = [
        ProbeType::Startup,
        ProbeType::Liveness,
        ProbeType::Readiness,
    ];
}

/// A published probe result (the kubelet's `results.Result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// Not known yet (startup before its first verdict).
    Unknown,
    /// Healthy.
    Success,
    /// Unhealthy.
    Failure,
}

impl ProbeResult {
    /// "Success", "Failure" or "Unknown".
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Unknown => "Unknown",
            ProbeResult::Success => "Success",
            ProbeResult::Failure => "Failure",
        }
    }
}

/// The probe fields with the API defaults applied (spec §0, §3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Seconds after the container's start before the first probe.
    pub initial_delay_seconds: i32,
    /// Seconds between probes (default 10, at least 1).
    pub period_seconds: i32,
    /// Seconds before one probe run times out (default 1, at least 1).
    pub timeout_seconds: i32,
    /// Consecutive successes to publish Success (default 1).
    pub success_threshold: i32,
    /// Consecutive failures to publish Failure (default 3).
    pub failure_threshold: i32,
    /// Grace period for a kill caused by this probe (liveness/startup only).
    pub termination_grace_period_seconds: Option<i64>,
    /// What to run.
    pub action: Action,
}

impl ProbeSpec {
    /// Applies the defaults to an API probe and resolves its handler.
    pub fn from_api(probe: &k8s_openapi::api::core::v1::Probe) -> Result<ProbeSpec, ActionError> {
        fn positive(v: Option<i32>, default: i32) -> i32 {
            match v {
                Some(v) if v >= 1 => v,
                _ => default,
            }
        }
        Ok(ProbeSpec {
            initial_delay_seconds: probe.initial_delay_seconds.unwrap_or(0).max(0),
            period_seconds: positive(probe.period_seconds, 10),
            timeout_seconds: positive(probe.timeout_seconds, 1),
            success_threshold: positive(probe.success_threshold, 1),
            failure_threshold: positive(probe.failure_threshold, 3),
            termination_grace_period_seconds: probe.termination_grace_period_seconds,
            action: Action::from_probe(probe)?,
        })
    }

    /// The period as a duration.
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.period_seconds.max(1) as u64)
    }

    /// The timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.max(1) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_defaults_are_applied() {
        let p = k8s_openapi::api::core::v1::Probe {
            exec: Some(k8s_openapi::api::core::v1::ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        };
        let s = ProbeSpec::from_api(&p).unwrap();
        assert_eq!(
            (s.initial_delay_seconds, s.period_seconds, s.timeout_seconds),
            (0, 10, 1)
        );
        assert_eq!((s.success_threshold, s.failure_threshold), (1, 3));
    }

    #[test]
    fn initial_results_follow_the_kubelet() {
        assert_eq!(ProbeType::Readiness.initial_result(), ProbeResult::Failure);
        assert_eq!(ProbeType::Liveness.initial_result(), ProbeResult::Success);
        assert_eq!(ProbeType::Startup.initial_result(), ProbeResult::Unknown);
    }
}
