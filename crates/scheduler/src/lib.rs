//! podvisor scheduler.

pub mod algorithm;
pub mod cache;
pub mod filters;
pub mod fit_error;
pub mod quantity;
pub mod queue;
pub mod resources;
