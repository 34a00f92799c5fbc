//! podvisor agent.
