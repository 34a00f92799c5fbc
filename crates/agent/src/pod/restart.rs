//! Container restarts (spec §4): where a container stands between its instances, and the one
//! decision whether, and when, its next instance starts.
//!
//! # A container's lifecycle
//!
//! ```text
//!                 create fails           config unresolved (retry in 10–15 s)
//!        ┌──────────────────────┐      ┌──────────────────────────────────┐
//!        ▼                      │      ▼                                  │
//!   Waiting(CreateContainerError)   ConfigError(CreateContainerConfigError)
//!        │                                 │
//!        └───────────────┬─────────────────┘
//!                        ▼ decide() = Start
//!   Current ──create, start──▶ PostStarting (hook runs; reported waiting) ──▶ Current (running)
//!      ▲                              │ hook fails: killed
//!      │                              ▼
//!      │                      Waiting(PostStartHookError)
//!      │   exit ──▶ decide(): Finished  → Current (the status shows how it ended)
//!      │                      BackOff   → Waiting(CrashLoopBackOff) until the back-off ends
//!      └──────────────────────Start     → the next instance
//! ```
//!
//! [`ContainerLifecycle`] is that state; [`RestartHistory`] what the decision remembers
//! across instances (back-off per spec hash, the last create failure, a kill for a spec
//! change, the back-off already announced); [`decide`] the one pure function from policy,
//! the newest instance's exit, the history and the time to a [`RestartDecision`]. The worker
//! (`sync.rs`) performs the decision and records a start with [`RestartHistory::started`].
//!
//! # Back-off (upstream's `flowcontrol.Backoff`, keyed by container name and spec hash)
//!
//! * counted from the exit (or from a failed create, whichever is later);
//! * a restart that goes ahead sets the entry: none or expired → `initial`, else double,
//!   capped at `max`; its `last_update` becomes the start time;
//! * expiry: `finished_at − last_update > 2 × max` (the instance ran more than ten minutes
//!   with the defaults), so a container that ran that long restarts at once;
//! * a changed spec (a new image) has a fresh key.
//!
//! The delays between an exit and the next start are 0, 10, 20, 40, 80, 160, 300, 300 …
//! seconds: the first restart is immediate because the entry does not exist yet.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use podvisor_runtime::{ContainerId, ExitStatus};
use tokio::time::Instant;

use super::status::{Instance, Waiting};

/// A pod's `restartPolicy` (a sidecar's is always `Always`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart whatever the exit code.
    Always,
    /// Restart after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// The policy named in a spec (`Always` when unset or unknown, as the API defaults it).
    pub fn from_spec(policy: Option<&str>) -> RestartPolicy {
        match policy {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether an instance that exited with `exit_code` is restarted.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// The node's crash back-off limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffLimits {
    /// The first back-off.
    pub initial: Duration,
    /// The cap.
    pub max: Duration,
}

/// The restart policy in force for one container with the node's back-off limits: the first
/// argument of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The restart policy.
    pub restart: RestartPolicy,
    /// The back-off limits.
    pub backoff: BackoffLimits,
}

/// Where a container stands beside its newest instance: what the status shows while it
/// waits, and what holds its next instance back. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ContainerLifecycle {
    /// The newest instance, if any, speaks for itself.
    #[default]
    Current,
    /// Its postStart hook runs: the instance is reported as `reported` (created, so
    /// waiting), never running, and probed as waiting.
    PostStarting {
        /// The running instance as it is reported.
        reported: Instance,
    },
    /// It waits for its next instance: `CrashLoopBackOff`, `CreateContainerError`,
    /// `PostStartHookError`.
    Waiting(Waiting),
    /// Its configuration (environment, volumes) could not be resolved
    /// (`CreateContainerConfigError`): no new attempt before `retry_at` (the kubelet's pod
    /// worker back-off, 10 s plus up to 50 % jitter). Also its image could not be had
    /// (`ErrImagePull`, `ImagePullBackOff`, … from `crate::image`): no attempt before the
    /// image manager's `retry_at`.
    ConfigError {
        /// The status's waiting reason and message.
        waiting: Waiting,
        /// The next attempt.
        retry_at: Instant,
    },
}

impl ContainerLifecycle {
    /// The waiting reason the status shows, if any.
    pub fn waiting(&self) -> Option<&Waiting> {
        match self {
            ContainerLifecycle::Waiting(w) | ContainerLifecycle::ConfigError { waiting: w, .. } => {
                Some(w)
            }
            _ => None,
        }
    }

    /// The instance as reported while its postStart hook runs.
    pub fn post_start_reported(&self) -> Option<&Instance> {
        match self {
            ContainerLifecycle::PostStarting { reported } => Some(reported),
            _ => None,
        }
    }

    /// No new attempt before this instant (after a `CreateContainerConfigError`).
    pub fn retry_at(&self) -> Option<Instant> {
        match self {
            ContainerLifecycle::ConfigError { retry_at, .. } => Some(*retry_at),
            _ => None,
        }
    }

    /// The configuration resolved: the next attempt is no longer held back (the waiting
    /// reason stays until an instance starts).
    pub fn config_resolved(&mut self) {
        if let ContainerLifecycle::ConfigError { waiting, .. } = self {
            *self = ContainerLifecycle::Waiting(waiting.clone());
        }
    }
}

/// One back-off entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffEntry {
    /// The current back-off.
    pub backoff: Duration,
    /// When it was last set (the start it delayed).
    pub last_update: SystemTime,
}

/// What [`decide`] remembers of one container across its instances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartHistory {
    /// The hash of the spec the next instance is created from (see [`for_spec`](Self::for_spec)).
    spec_hash: u64,
    /// Back-off per spec hash.
    entries: HashMap<u64, BackoffEntry>,
    /// When creating the next instance last failed (the back-off counts from there).
    pub create_failed_at: Option<SystemTime>,
    /// The running instance was killed because its spec changed: the new spec starts
    /// whatever the restart policy says (kubelet `computePodActions`).
    pub spec_changed: bool,
    /// The pod's sandbox was re-created and this init container runs again from the start
    /// whatever its last exit (kubelet `computePodActions` after `SandboxChanged`).
    pub new_sandbox: bool,
    /// The instance and back-off already announced with a `BackOff` event.
    announced: Option<(Option<ContainerId>, Duration)>,
}

impl RestartHistory {
    /// Sets the spec the next instance is created from (a changed hash has its own back-off).
    pub fn for_spec(&mut self, hash: u64) {
        self.spec_hash = hash;
    }

    /// The back-off entry of the current spec.
    pub fn entry(&self) -> Option<&BackoffEntry> {
        self.entries.get(&self.spec_hash)
    }

    /// A start decided by [`decide`] goes ahead: its back-off entry is recorded.
    pub fn started(&mut self, entry: Option<BackoffEntry>) {
        if let Some(e) = entry {
            self.entries.insert(self.spec_hash, e);
        }
    }

    /// A new instance was created: a create failure, a spec change or a new sandbox no
    /// longer counts.
    pub fn created(&mut self) {
        self.create_failed_at = None;
        self.spec_changed = false;
        self.new_sandbox = false;
    }

    /// Whether the back-off of `instance` (the newest instance, if any) is new and must be
    /// announced with a `BackOff` event; remembers it.
    pub fn announce(&mut self, instance: Option<ContainerId>, backoff: Duration) -> bool {
        let key = (instance, backoff);
        let new = self.announced.as_ref() != Some(&key);
        self.announced = Some(key);
        new
    }
}

/// What to do about a container that has no running instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// It stays as it ended: the restart policy does not restart it.
    Finished,
    /// It waits out its back-off (CrashLoopBackOff): no start before `until`.
    BackOff {
        /// The back-off in force.
        backoff: Duration,
        /// When it may start.
        until: SystemTime,
    },
    /// Start the next instance now; `entry` is the back-off this start records
    /// ([`RestartHistory::started`]), none for a first create.
    Start {
        /// The back-off entry to record.
        entry: Option<BackoffEntry>,
    },
}

fn expired(e: &BackoffEntry, event_time: SystemTime, limits: BackoffLimits) -> bool {
    event_time
        .duration_since(e.last_update)
        .unwrap_or(Duration::ZERO)
        > limits.max.max(limits.initial) * 2
}

/// The one restart decision (pure). `exit`: how the newest instance ended, None when the
/// container has none yet (then only a failed create holds it back).
pub fn decide(
    policy: Policy,
    exit: Option<&ExitStatus>,
    history: &RestartHistory,
    now: SystemTime,
) -> RestartDecision {
    let limits = policy.backoff;
    let max = limits.max.max(limits.initial);
    let event_time = match exit {
        None => history.create_failed_at,
        Some(e) => {
            if !policy.restart.restarts(e.exit_code)
                && !history.spec_changed
                && !history.new_sandbox
            {
                return RestartDecision::Finished;
            }
            Some(
                history
                    .create_failed_at
                    .map_or(e.finished_at, |f| f.max(e.finished_at)),
            )
        }
    };
    let Some(t) = event_time else {
        return RestartDecision::Start { entry: None };
    };
    let live = history.entry().filter(|e| !expired(e, t, limits));
    if let Some(e) = live {
        let since = now.duration_since(t).unwrap_or(Duration::ZERO);
        if since < e.backoff {
            return RestartDecision::BackOff {
                backoff: e.backoff,
                until: t + e.backoff,
            };
        }
    }
    let backoff = match live {
        Some(e) => (e.backoff * 2).min(max),
        None => limits.initial,
    };
    RestartDecision::Start {
        entry: Some(BackoffEntry {
            backoff,
            last_update: now,
        }),
    }
}

#[cfg(test)]
#[path = "restart_tests.rs"]
mod tests;
