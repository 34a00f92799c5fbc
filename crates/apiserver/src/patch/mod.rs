//! PATCH bodies and field ownership: json-patch (RFC 6902), merge-patch (RFC 7386),
//! strategic merge patch and server-side apply, plus the `metadata.managedFields`
//! bookkeeping every write records.
//!
//! Who calls what:
//! - the REST layer decodes the `Content-Type` with [`PatchType::from_content_type`]
//!   (`None` → 415 via [`PatchError::unsupported_media_type`]), reads the live object
//!   (missing → 404, except for apply, which creates) and calls [`apply_patch`]; the result
//!   is then defaulted, validated and stored like an update;
//! - for every create, update and non-apply patch the REST layer calls [`record_update`]
//!   with the old and new object and the field manager (`fieldManager` query parameter, or
//!   one derived from the user agent), so `metadata.managedFields` stays as upstream keeps
//!   it. Apply records its own ownership; do not call [`record_update`] after an apply.
//!
//! Errors are [`PatchError`]s; [`PatchError::code`] and [`PatchError::reason`] give the HTTP
//! status and the `metav1.Status` reason, [`PatchError::causes`] the `details.causes`.

mod apply;
mod fields;
mod schema;
mod strategic;

use serde_json::Value;

use crate::registry::{ResourceKind, Subresource};

/// Most operations a JSON patch may hold (upstream `maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Most bytes the `copy` operations of one JSON patch may add together (upstream's
/// `JSONPatchMaxCopyBytes`: twice etcd's 1.5 MiB request limit). Without it, each `copy` of a
/// document into itself doubles it: a 2.6 KB patch could build a gigabyte object.
pub const JSON_PATCH_MAX_COPY_BYTES: usize = 3 * 1024 * 1024;

/// The largest object a patch may produce, in its JSON encoding (upstream's
/// `MaxRequestBodyBytes`: no write may store more than a request could send). Checked while
/// the patch is applied, before the object is encoded or stored.
pub const MAX_PATCHED_OBJECT_BYTES: usize = 3 * 1024 * 1024;

/// The kind of a PATCH body, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply; the body may be JSON or YAML).
    Apply,
}

impl PatchType {
    /// Every supported content type, in upstream's order (for 415 messages).
    pub const CONTENT_TYPES: [&'static str; 4] = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];

    /// Parses a `Content-Type` header value (parameters such as `charset` are ignored).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    /// The canonical content type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => Self::CONTENT_TYPES[0],
            PatchType::Merge => Self::CONTENT_TYPES[1],
            PatchType::StrategicMerge => Self::CONTENT_TYPES[2],
            PatchType::Apply => Self::CONTENT_TYPES[3],
        }
    }
}

/// One field a server-side apply conflicts on (`details.causes[]` of the 409).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictCause {
    /// The field path, e.g. `.spec.replicas`.
    pub field: String,
    /// `conflict with "manager" using v1`.
    pub message: String,
}

/// Why a patch could not be applied. Each variant maps to one `metav1.Status`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// Malformed patch body or directive (400 BadRequest).
    #[error("{message}")]
    BadRequest {
        /// Status message.
        message: String,
    },
    /// Server-side apply changes fields other managers own (409 Conflict).
    #[error("{message}")]
    Conflict {
        /// Status message (upstream's "Apply failed with N conflict(s): …").
        message: String,
        /// One cause per conflicting field (`reason: FieldManagerConflict`).
        causes: Vec<ConflictCause>,
    },
    /// The patch is well-formed but cannot apply to this object (422 Invalid).
    #[error("{message}")]
    Invalid {
        /// Status message.
        message: String,
    },
    /// The `Content-Type` is not a patch type (415 UnsupportedMediaType).
    #[error("{message}")]
    UnsupportedMediaType {
        /// Status message listing the accepted types.
        message: String,
    },
    /// Too many JSON patch operations (413 RequestEntityTooLarge).
    #[error("{message}")]
    TooLarge {
        /// Status message.
        message: String,
    },
}

impl PatchError {
    pub(crate) fn bad_request(message: impl Into<String>) -> PatchError {
        PatchError::BadRequest {
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> PatchError {
        PatchError::Invalid {
            message: message.into(),
        }
    }

    /// The 415 error for a `Content-Type` that is not a patch type.
    pub fn unsupported_media_type(content_type: &str) -> PatchError {
        let _ = content_type;
        PatchError::UnsupportedMediaType {
            message: format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                PatchType::CONTENT_TYPES.join(", ")
            ),
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadRequest { .. } => 400,
            PatchError::Conflict { .. } => 409,
            PatchError::Invalid { .. } => 422,
            PatchError::UnsupportedMediaType { .. } => 415,
            PatchError::TooLarge { .. } => 413,
        }
    }

    /// The `metav1.Status` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest { .. } => "BadRequest",
            PatchError::Conflict { .. } => "Conflict",
            PatchError::Invalid { .. } => "Invalid",
            PatchError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            PatchError::TooLarge { .. } => "RequestEntityTooLarge",
        }
    }

    /// The status message.
    pub fn message(&self) -> &str {
        match self {
            PatchError::BadRequest { message }
            | PatchError::Conflict { message, .. }
            | PatchError::Invalid { message }
            | PatchError::UnsupportedMediaType { message }
            | PatchError::TooLarge { message } => message,
        }
    }

    /// `details.causes` for the Status: `[{reason, message, field}]` (empty unless Conflict).
    pub fn causes(&self) -> Vec<Value> {
        match self {
            PatchError::Conflict { causes, .. } => causes
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "reason": "FieldManagerConflict",
                        "message": c.message,
                        "field": c.field,
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Applies a PATCH body to `original` and returns the patched object.
///
/// `original` is `None` only when the object does not exist; server-side apply then
/// creates it (the caller adds name, namespace, uid, … as for a create); other patch types
/// patch an empty object, but callers answer 404 before getting here. `manager`, `force`
/// and `now` (RFC 3339, for `managedFields[].time`) are used by apply only.
pub fn apply_patch(
    kind: &ResourceKind,
    patch_type: PatchType,
    original: Option<&Value>,
    patch: &[u8],
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, PatchError> {
    apply_patch_subresource(kind, None, patch_type, original, patch, manager, force, now)
}

/// [`apply_patch`] through a subresource: a server-side apply to `status` applies only the
/// configuration's status and records the entry with `subresource: status`; one to the main
/// resource ignores status for kinds with a status subresource. Other patch types behave
/// the same for every subresource.
#[allow(clippy::too_many_arguments)]
pub fn apply_patch_subresource(
    kind: &ResourceKind,
    subresource: Option<Subresource>,
    patch_type: PatchType,
    original: Option<&Value>,
    patch: &[u8],
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, PatchError> {
    let base = || {
        original
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()))
    };
    let patched = match patch_type {
        PatchType::Json => {
            let ops: Value = decode_json(patch)?;
            let n = ops.as_array().map(Vec::len).unwrap_or_default();
            if n > MAX_JSON_PATCH_OPERATIONS {
                return Err(PatchError::TooLarge {
                    message: format!(
                        "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {n}"
                    ),
                });
            }
            let ops: json_patch::Patch = serde_json::from_value(ops)
                .map_err(|e| PatchError::bad_request(format!("error decoding patch: {e}")))?;
            let mut doc = base();
            apply_json_patch(&mut doc, &ops)?;
            doc
        }
        PatchType::Merge => {
            let p: Value = decode_json(patch)?;
            if !p.is_object() {
                return Err(PatchError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            let mut doc = base();
            json_patch::merge(&mut doc, &p);
            doc
        }
        PatchType::StrategicMerge => {
            let p: Value = decode_json(patch)?;
            strategic::apply(kind.kind, base(), p)?
        }
        PatchType::Apply => {
            let config = decode_yaml(patch)?;
            return apply::server_side_apply(
                kind,
                subresource,
                original,
                config,
                manager,
                force,
                now,
            );
        }
    };
    if !patched.is_object() {
        return Err(PatchError::invalid(
            "the patched object is not a JSON object",
        ));
    }
    if encoded_len_over(&patched, MAX_PATCHED_OBJECT_BYTES) {
        return Err(PatchError::TooLarge {
            message: format!(
                "the patched object is larger than the limit of {MAX_PATCHED_OBJECT_BYTES} bytes"
            ),
        });
    }
    Ok(patched)
}

/// Applies a JSON patch (RFC 6902) to `doc`, which the caller discards on error, with
/// upstream's bound on `copy`: the bytes the copies add together may not pass
/// [`JSON_PATCH_MAX_COPY_BYTES`]. Each copied value is measured before it is cloned, so a
/// refused patch never builds the oversized document.
fn apply_json_patch(doc: &mut Value, ops: &json_patch::Patch) -> Result<(), PatchError> {
    let mut copied = 0usize;
    for (i, op) in ops.0.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(copy) = op
            && let Some(source) = doc.pointer(copy.from.as_str())
        {
            let left = JSON_PATCH_MAX_COPY_BYTES.saturating_sub(copied);
            match encoded_len_up_to(source, left) {
                Some(n) => copied += n,
                None => {
                    // The document is bounded (earlier copies were), so measuring it all is cheap.
                    let n = encoded_len_up_to(source, usize::MAX).unwrap_or(usize::MAX);
                    return Err(PatchError::invalid(format!(
                        "Unable to complete the copy, the accumulated size increase of copy \
                         is {}, exceeding the limit {JSON_PATCH_MAX_COPY_BYTES}",
                        copied.saturating_add(n)
                    )));
                }
            }
        }
        json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = i;
            PatchError::invalid(e.to_string())
        })?;
    }
    Ok(())
}

/// The length of `value`'s compact JSON encoding if it is at most `limit`, else `None`;
/// stops counting once the limit is passed (nothing is allocated).
fn encoded_len_up_to(value: &Value, limit: usize) -> Option<usize> {
    struct Counter {
        n: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n += buf.len();
            if self.n > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { n: 0, limit };
    serde_json::to_writer(&mut counter, value).ok()?;
    Some(counter.n)
}

/// Whether `value`'s compact JSON encoding is longer than `limit` bytes.
fn encoded_len_over(value: &Value, limit: usize) -> bool {
    encoded_len_up_to(value, limit).is_none()
}

/// Decodes a JSON patch body within [`crate::decode`]'s limits.
fn decode_json(body: &[u8]) -> Result<Value, PatchError> {
    crate::decode::json(body)
        .map_err(|e| PatchError::bad_request(format!("error decoding patch: {e}")))
}

/// Decodes an apply body: YAML (of which JSON is a subset), one document, an object, within
/// [`crate::decode`]'s limits.
fn decode_yaml(body: &[u8]) -> Result<Value, PatchError> {
    // JSON first: it is what kubectl and kube-rs send, and serde_json is stricter and faster.
    let v = crate::decode::json_or_yaml(body)
        .map_err(|e| PatchError::bad_request(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(PatchError::bad_request(
            "error decoding YAML: the applied configuration must be an object",
        ));
    }
    Ok(v)
}

/// Records a create (`old` = `None`), update or non-apply patch by `manager` in
/// `new.metadata.managedFields`: the manager's Update entry gains the fields it added or
/// changed, other managers lose them, removed fields leave every entry. Managed fields
/// sent in `new` replace the live ones (a single empty entry `[{}]` clears them), as
/// upstream allows. `now` is RFC 3339 (`2026-11-25T09:00:00Z`).
pub fn record_update(
    kind: &ResourceKind,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    now: &str,
) {
    apply::record_update(kind, None, old, new, manager, now);
}

/// [`record_update`] for a write through a subresource (`status`, `scale`): the entry
/// carries `subresource`, and managed fields sent in `new` are ignored, as upstream does.
pub use apply::record_update as record_update_subresource;
