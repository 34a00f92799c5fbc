//! podvisor agent: the node agent. It registers its Node, renews its Lease, runs the pods
//! bound to its node through a [`ContainerRuntime`](podvisor_runtime::ContainerRuntime) with
//! Kubernetes' exact status, restart and termination semantics (spec §1, §2, §4), and serves
//! container logs.
//!
//! Entry point: [`Agent::new`] + [`Agent::run`]. Module map: [`state`] (the pod worker state
//! machine), [`worker`] (pod workers: sync, restarts, termination), [`podstatus`] (status
//! computation), [`backoff`] (CrashLoopBackOff), [`deadlines`] (persisted deadlines),
//! [`hooks`] (lifecycle hooks: the production [`hooks::HookRunner`], postStart and preStop),
//! [`handlers`] (exec, tcpSocket, httpGet, grpc, sleep, shared by probes and hooks),
//! [`probe`] (liveness, readiness, startup), [`node`] (Node, Lease), [`server`] (the log and
//! exec server), [`api`] (the narrow API doors), [`testing`] (recording fakes).

pub mod agent;
pub mod api;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod deadlines;
pub mod env;
pub mod error;
pub mod handlers;
pub mod hooks;
pub mod node;
pub mod objects;
pub mod podstatus;
pub mod probe;
pub mod server;
pub mod state;
pub mod testing;
pub mod volumes;
pub mod worker;

pub use agent::Agent;
pub use clock::WallClock;
pub use config::AgentConfig;
pub use error::AgentError;

#[cfg(test)]
mod worker_tests;
