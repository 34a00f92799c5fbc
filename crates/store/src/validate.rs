//! Checks of caller input shared by every backend.

use crate::{MAX_KEY_BYTES, MAX_VALUE_BYTES, StoreError};

/// A key must be non-empty and at most [`MAX_KEY_BYTES`] long.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument {
            message: "empty key".to_string(),
        });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidArgument {
            message: format!(
                "key of {} bytes is longer than the limit of {MAX_KEY_BYTES} bytes",
                key.len()
            ),
        });
    }
    Ok(())
}

/// A value must be at most [`MAX_VALUE_BYTES`] long.
pub(crate) fn check_value(value: &[u8]) -> Result<(), StoreError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::InvalidArgument {
            message: format!(
                "value of {} bytes is larger than the limit of {MAX_VALUE_BYTES} bytes",
                value.len()
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
