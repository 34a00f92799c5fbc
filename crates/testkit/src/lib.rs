//! The podvisor test kit: one set of object builders ([`pod`], [`container`], [`node`]),
//! helpers for tests against the API ([`api_status`], [`eventually`], [`mark_ready`]) and
//! for commands ([`run_ok`]), and the runner of `harness = false` suites ([`runner`]).
//!
//! A dev-dependency only. It depends on no podvisor crate, so every crate's tests (the
//! apiserver's included) can use it without a second copy of the crate under test.

mod builders;
pub mod json;
mod kube_helpers;
mod process;
pub mod runner;

pub use builders::{
    Builder, ContainerBuilder, NodeBuilder, PodBuilder, config_map, container, node, pod,
    quantities, secret,
};
pub use kube_helpers::{
    api_status, bind_pod, delete_now, eventually, mark_ready, node_ready, object_names, scale,
    set_label, wait_some, wait_until,
};
pub use process::{LIVENESS_PY, assert_success, run_ok};
