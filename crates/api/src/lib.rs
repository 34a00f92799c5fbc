//! podvisor api: pure helpers on `k8s-openapi` types — defaulting, validation with field
//! paths, label and field selectors. No I/O.

pub mod defaults;
pub mod disruption;
pub mod dns;
pub mod expand;
pub mod fencing;
pub mod limitrange;
pub mod nodeaffinity;
pub mod quantity;
pub mod quota;
pub mod resource_metrics;
pub mod selectors;
pub mod service;
pub mod status;
pub mod taints;
pub mod validation;
pub mod volumes;

/// The Node annotation where a node agent publishes its log/exec server's certificate
/// (`sha256:<hex>` of its DER); the API server accepts no other certificate from that node.
pub const ANNOTATION_SERVING_CERT_HASH: &str = "node.podvisor.io/serving-cert-sha256";

pub use selectors::{FieldSelector, LabelSelector, SelectorError};
pub use validation::{FieldError, FieldErrorType};
