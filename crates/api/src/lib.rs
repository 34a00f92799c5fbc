//! podvisor api: pure helpers on `k8s-openapi` types — defaulting, validation with field
//! paths, label and field selectors. No I/O.

pub mod defaults;
pub mod expand;
pub mod quantity;
pub mod selectors;
pub mod status;
pub mod taints;
pub mod validation;

pub use selectors::{FieldSelector, LabelSelector, SelectorError};
pub use validation::{FieldError, FieldErrorType};
