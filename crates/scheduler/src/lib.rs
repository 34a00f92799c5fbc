//! podvisor scheduler.
