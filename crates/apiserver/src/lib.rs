//! podvisor apiserver: the Kubernetes REST API over a revisioned [`podvisor_store::Store`].

pub mod protobuf;
pub mod patch;
pub mod registry;
pub mod table;

pub use registry::{ResourceKind, Strategy, Subresource};
