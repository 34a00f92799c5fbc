//! podvisor apiserver.
