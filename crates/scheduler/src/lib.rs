//! podvisor scheduler: binds pending pods to nodes with Kubernetes' filters, scoring and
//! failure messages. It is an API client built on kube-rs only (DESIGN.md decision 2).
//!
//! ```text
//!  watch pods ─┐                        ┌─ POST pods/{name}/binding ─▶ Scheduled event
//!              ├─▶ cache + queue ─▶ decide (filters → scores) ─▶ assume
//!  watch nodes ┘        ▲                └─ no fit ─▶ PodScheduled=False + FailedScheduling
//!                       └──── cluster change / back-off expiry ───────────┘
//! ```
//!
//! Modules, from pure to effectful: [`resources`], [`filters`],
//! [`fit_error`], [`algorithm`], [`cache`], [`queue`] (pure, unit-tested); [`events`]
//! (the pod events it reports), [`volumebinding`] (claims and volumes: filter and
//! pre-bind), [`scheduler`] (the loop). Leader election, the wall clock
//! and the event recorder come from `podvisor-kit`.
//!
//! Entry point: [`Scheduler::new`] with a [`SchedulerConfig`], then [`Scheduler::run`].

pub mod algorithm;
pub mod cache;
pub mod events;
pub mod filters;
pub mod fit_error;
pub mod queue;
pub mod resources;
pub mod scheduler;
pub mod volumebinding;

pub use scheduler::{
    DEFAULT_LEASE_NAME, DEFAULT_SCHEDULER_NAME, Scheduler, SchedulerConfig, SchedulerError,
    SchedulerStats,
};
