//! podvisor controllers.
