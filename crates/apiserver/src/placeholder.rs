//! Temporary stand-ins for `crate::patch` and `crate::table` with the agreed signatures,
//! used until those modules land. Deleted then.

use serde_json::{Value, json};

use crate::registry::ResourceKind;

/// The patch content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// application/json-patch+json
    Json,
    /// application/merge-patch+json
    Merge,
    /// application/strategic-merge-patch+json
    StrategicMerge,
    /// application/apply-patch+yaml
    Apply,
}

impl PatchType {
    /// Parses a `Content-Type`.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// A patch that could not be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchError {
    code: u16,
    message: String,
}

impl PatchError {
    /// 415.
    pub fn unsupported_media_type(ct: &str) -> PatchError {
        PatchError {
            code: 415,
            message: format!("unsupported patch type {ct:?}"),
        }
    }
    /// HTTP code.
    pub fn code(&self) -> u16 {
        self.code
    }
    /// Reason.
    pub fn reason(&self) -> &'static str {
        match self.code {
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            _ => "BadRequest",
        }
    }
    /// Message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Causes.
    pub fn causes(&self) -> Vec<Value> {
        Vec::new()
    }
}

/// Applies a patch (placeholder: merge semantics for every type but json-patch).
pub fn apply_patch(
    _kind: &ResourceKind,
    patch_type: PatchType,
    original: Option<&Value>,
    patch: &[u8],
    _manager: &str,
    _force: bool,
    _now: &str,
) -> Result<Value, PatchError> {
    let bad = |e: String| PatchError {
        code: 400,
        message: e,
    };
    let mut doc = original.cloned().unwrap_or_else(|| json!({}));
    match patch_type {
        PatchType::Json => {
            let p: json_patch::Patch =
                serde_json::from_slice(patch).map_err(|e| bad(e.to_string()))?;
            json_patch::patch(&mut doc, &p).map_err(|e| PatchError {
                code: 422,
                message: e.to_string(),
            })?;
        }
        PatchType::Apply => {
            let p: Value = serde_yaml::from_slice(patch).map_err(|e| bad(e.to_string()))?;
            json_patch::merge(&mut doc, &p);
        }
        _ => {
            let p: Value = serde_json::from_slice(patch).map_err(|e| bad(e.to_string()))?;
            json_patch::merge(&mut doc, &p);
        }
    }
    Ok(doc)
}

/// Records managed fields (placeholder: nothing).
pub fn record_update(
    _kind: &ResourceKind,
    _old: Option<&Value>,
    _new: &mut Value,
    _manager: &str,
    _now: &str,
) {
}

/// A NAME / Created At table (placeholder).
pub fn table_for(
    _kind: &ResourceKind,
    objects: &[Value],
    _wide: bool,
    _now: jiff::Timestamp,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({"cells": [o["metadata"]["name"], o["metadata"]["creationTimestamp"]],
                   "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
            {"name": "Created At", "type": "date", "format": "", "description": "", "priority": 0}],
        "rows": rows})
}
