//! podvisor apiserver: the Kubernetes REST API over a revisioned [`podvisor_store::Store`].

pub mod protobuf;
pub mod registry;

pub use registry::{ResourceKind, Strategy, Subresource};
