//! The pod wing: everything the agent does for one pod UID, from the first sight of the
//! object bound to this node to the delete with grace 0 that removes it.
//!
//! One [`PodWorker`] per pod UID, on a task the agent owns. The agent never touches a pod's
//! containers itself: it hands the worker the newest pod object (latest wins), runtime notes
//! (exits, "resync") and, on shutdown with drain, a grace; the worker does the rest.
//!
//! # A pod's timeline
//!
//! ```text
//!  first sight            deletionTimestamp / completed /        every container     final status,
//!  (or re-adoption)       drain / activeDeadlineSeconds /        stopped             sandbox removed,
//!      │                  object gone                              │                 object deleted
//!      ▼                        │                                  ▼                       │
//!   Syncing ────────────────────┴──────────────▶ Terminating { deadline } ──▶ Terminated ──┴──▶ Finished
//!   create sandbox; init containers in order;    preStop, stop signal,                         this UID never
//!   app containers; restarts with back-off;      SIGKILL at max(deadline,                      runs again
//!   probes; postStart; status writes             signal + 2 s); the deadline
//!                                                only moves earlier
//! ```
//!
//! A re-adopting agent (restart, crash) rebuilds the worker from the runtime's view of the
//! sandbox (nothing is restarted) and, if a termination deadline was persisted, resumes
//! `Terminating` with that deadline.
//!
//! A sandbox that dies while `Syncing` (its supervisor killed) is re-created with the same
//! ID (`sandbox.rs`): `SandboxChanged`, init containers again, app containers restarted per
//! the policy with their restart counts going on; the pod's timeline does not move.
//!
//! # Which query is true when
//!
//! | query ([`state::PodWorkerState`])      | Syncing | Terminating | Terminated | Finished |
//! |----------------------------------------|---------|-------------|------------|----------|
//! | `may_start_containers()`               | yes     | no          | no         | no       |
//! | `could_have_running_containers()`      | yes     | yes         | no         | no       |
//! | `deadline()` is `Some`                 | no      | yes         | no         | no       |
//! | `is_finished()`                        | no      | no          | no         | yes      |
//! | `object_gone()`                        | no      | if gone     | if gone    | —        |
//!
//! [`WorkerInput::stop_requested`] is the one "stop requested" predicate on the input: the
//! object is gone, being deleted, or the agent drains. It pre-empts a sync or a container
//! kill in flight; the loop then feeds the input to [`state::transition`].
//!
//! # Who may call what
//!
//! * The agent (`agent.rs`): [`PodWorker::new`] + [`PodWorker::run`] on an owned task, then
//!   only the [`WorkerHandle`]: `input` (latest-wins pod object, drain), `notes` (runtime
//!   exits), `state` (the state's name, for observers). Cancelling the agent's shutdown token
//!   ends the worker and leaves the pod running for re-adoption.
//! * The worker's loop (`worker.rs`) is the only place that changes the state, and only
//!   through [`state::transition`]; it performs the returned effects.
//! * `sync.rs` runs only in `Syncing` (dropped when a stop is requested or the pod's kill
//!   token fires); it asks [`restart::decide`] whether a container's next instance starts.
//! * `stop.rs` is the only code that signals a container: pod termination (a future beside
//!   the loop, following the deadline) and the kill of one container for a restart.
//! * `status.rs` is pure: the worker hands it every fact and the time.
//!
//! # Files
//!
//! [`worker`] (the loop: inputs, transition, effects, status write), [`state`] (the state
//! machine), [`sync`] (create/start, init and sidecar order,
//! postStart, probe kills; what a container needs before it is created, its environment,
//! image and mounts, in `prepare`),
//! [`security`] (the effective securityContext, runAsNonRoot), [`restart`] (container lifecycle, the restart decision and its back-off), [`sandbox`]
//! (the sandbox made, its death noticed, re-created with `SandboxChanged`), [`stop`] (the
//! one stop path), [`spec`] (sandbox and container configs, labels, hash, stop signal),
//! [`status`] (the API status), [`deadlines`] (persisted termination deadlines), [`env`](mod@env)
//! (container environment), [`volumes`] (the pod's volumes; the files of
//! API-data volumes in `volume_payload`), [`tokens`] (their
//! service-account tokens), [`etc_files`] (its
//! `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`).

pub mod claims;
pub mod deadlines;
pub mod env;
pub mod etc_files;
mod prepare;
pub mod resize;
pub mod restart;
pub mod restart_all;
pub mod restart_rules;
pub mod sandbox;
pub mod security;
pub mod service_env;
pub mod spec;
pub mod state;
pub mod status;
pub mod stop;
pub mod sync;
pub mod tokens;
pub mod unsupported;
mod volume_payload;
pub mod volumes;
pub mod worker;

pub use spec::{
    ANNOTATION_HASH, ANNOTATION_RESTART_COUNT, LABEL_CONTAINER_NAME, LABEL_POD_NAME,
    LABEL_POD_NAMESPACE, LABEL_POD_UID, container_config, container_hash, sandbox_config,
    sandbox_pod_uid, spec_container_name,
};
pub use state::WorkerInput;
pub use worker::{PodWorker, RuntimeNote, WorkerCtx, WorkerHandle};

#[cfg(test)]
mod worker_ephemeral_tests;
#[cfg(test)]
mod worker_recent_tests;
#[cfg(test)]
mod worker_sandbox_tests;
#[cfg(test)]
mod worker_tests;
