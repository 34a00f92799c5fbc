//! podvisor api.
