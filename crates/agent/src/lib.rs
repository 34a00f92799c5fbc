//! podvisor agent: the node agent. It registers its Node, renews its Lease, runs the pods
//! bound to its node through a [`ContainerRuntime`](podvisor_runtime::ContainerRuntime) with
//! Kubernetes' exact status, restart and termination semantics (spec §1, §2, §4), and serves
//! container logs.
//!
//! Entry point: [`Agent::new`] + [`Agent::run`]. Module map (docs/design/0003-agent-layout.md):
//! [`agent`] (wiring: one pod worker per pod UID), [`pod`] (the pod wing: [`pod::worker`] the
//! loop, [`pod::state`] the state machine, [`pod::sync`] create/start and init order,
//! [`pod::restart`] the restart decision and back-off, [`pod::stop`] the one stop path,
//! [`pod::spec`] runtime configs, [`pod::status`] the API status, [`pod::deadlines`]
//! persisted deadlines, [`pod::env`] and [`pod::volumes`]), [`image`] (the image service:
//! pull, store, pull policy and back-off), [`hooks`] (lifecycle hooks: the production
//! [`hooks::HookRunner`], postStart and preStop), [`handlers`] (exec, tcpSocket, httpGet,
//! grpc, sleep, shared by probes and hooks), [`probe`] (liveness, readiness, startup),
//! [`network`] (the pod network: CNI, per-pod namespaces, host-gw routes), [`node`] (Node,
//! Lease), [`fence`] (self-fencing), [`server`] (the log, exec and port-forward server), [`api`] (the narrow API
//! doors), [`objects`] (ConfigMaps and Secrets), [`clock`], [`testing`] (the test kit:
//! recording fakes, the worker harness, builders).

pub mod agent;
pub mod api;
pub mod clock;
pub mod config;
pub mod dns;
pub mod drain;
pub mod error;
pub mod fence;
pub mod handlers;
pub mod hooks;
pub mod image;
pub mod network;
pub mod node;
pub mod objects;
pub mod pod;
pub mod probe;
pub mod proxy;
pub mod server;
pub mod testing;

pub use agent::Agent;
pub use clock::WallClock;
pub use config::AgentConfig;
pub use error::AgentError;
