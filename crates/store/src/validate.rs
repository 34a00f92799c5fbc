//! Checks of caller input shared by every backend.

use crate::{MAX_KEY_BYTES, MAX_VALUE_BYTES, StoreError};

/// A key must be non-empty and at most [`MAX_KEY_BYTES`] long.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument {
            message: "empty key".to_string(),
        });
    }
    check_len("key", "longer", key.len(), MAX_KEY_BYTES)
}

/// A value must be at most [`MAX_VALUE_BYTES`] long.
pub(crate) fn check_value(value: &[u8]) -> Result<(), StoreError> {
    check_len("value", "larger", value.len(), MAX_VALUE_BYTES)
}

/// `<what> of N bytes is <longer|larger> than the limit of L bytes` when `len` is over `limit`.
fn check_len(what: &str, comparison: &str, len: usize, limit: usize) -> Result<(), StoreError> {
    if len > limit {
        return Err(StoreError::InvalidArgument {
            message: format!(
                "{what} of {len} bytes is {comparison} than the limit of {limit} bytes"
            ),
        });
    }
    Ok(())
}

/// A continue key must lie under the listed prefix.
pub(crate) fn check_continue(prefix: &str, continue_after: Option<&str>) -> Result<(), StoreError> {
    if let Some(after) = continue_after
        && !after.starts_with(prefix)
    {
        return Err(StoreError::InvalidArgument {
            message: format!("continue key {after:?} is not under the prefix {prefix:?}"),
        });
    }
    Ok(())
}
