//! The injected wall clock (STYLE.md §7): timestamps come from here, durations from
//! `tokio::time`. The clock and its Kubernetes time conversions are the shared ones of
//! [`podvisor_kit::clock`]; under paused tokio time, [`WallClock::tokio`] advances with
//! tokio's clock so that lifecycle tests are deterministic.

pub use podvisor_kit::clock::{WallClock, from_time, to_micro_time, to_time};
