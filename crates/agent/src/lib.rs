//! podvisor agent: the node agent. It registers its Node, renews its Lease, runs the pods
//! bound to its node through a [`ContainerRuntime`](podvisor_runtime::ContainerRuntime) with
//! Kubernetes' exact status, restart and termination semantics (spec §1, §2, §4), and serves
//! container logs.
//!
//! Entry point: [`Agent::new`] + [`Agent::run`]. Module map: [`state`] (the pod worker state
//! machine), [`worker`] (pod workers: sync, restarts, termination), [`podstatus`] (status
//! computation), [`backoff`] (CrashLoopBackOff), [`deadlines`] (persisted deadlines),
//! [`hooks`] (lifecycle handlers), [`node`] (Node, Lease), [`logs`] (log server), [`api`]
//! (the narrow API doors), [`testing`] (recording fakes).

pub mod agent;
pub mod api;
pub mod clock;
pub mod config;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod logs;
pub mod node;
pub mod objects;
pub mod pod;
pub mod probe;
pub mod testing;

pub use agent::Agent;
pub use clock::WallClock;
pub use config::AgentConfig;
pub use error::AgentError;

