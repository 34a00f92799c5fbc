//! Shared infrastructure of the podvisor components, below all of them (like Neon's
//! `libs/*`): the injected wall [`clock`], the bounded Kubernetes `events` recorder and
//! Lease-based `leader` election (these two, and the clock's Kubernetes time conversions,
//! with the default feature `kube`), the watch-and-cache loop `reflect`, and the process-wide
//! Prometheus [`metrics`].
//!
//! The scheduler, the controllers, the node agent and the API server depend on this crate;
//! it depends on no podvisor crate, so no arrow of the crate graph points upward (see
//! `docs/design/0004-shared-infra.md`).

pub mod clock;
#[cfg(feature = "kube")]
pub mod events;
#[cfg(feature = "kube")]
pub mod leader;
pub mod metrics;
#[cfg(feature = "kube")]
pub mod reflect;
#[cfg(feature = "kube")]
pub mod timeline;

pub use clock::WallClock;
#[cfg(feature = "kube")]
pub use events::{EventRecord, EventRecorder, EventStats, EventType, Reporter};
#[cfg(feature = "kube")]
pub use leader::{LeaderElectionConfig, LeaderElector, LeaderError};
