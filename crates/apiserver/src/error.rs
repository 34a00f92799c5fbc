//! API errors as `metav1.Status` responses.
//!
//! Every failure the API server answers is an [`ApiError`], rendered as a Status with the
//! HTTP code equal to `code` and the `reason`, `message` and `details` apimachinery's
//! `errors.New*` constructors would produce (`details.kind` is the resource for NotFound,
//! AlreadyExists, Conflict and Forbidden, and the Kind for Invalid).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use podvisor_api::FieldError;
use podvisor_store::StoreError;
use serde_json::{Map, Value, json};

use crate::registry::ResourceKind;

/// A failed API request, rendered as a `metav1.Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code and `Status.code`.
    pub code: u16,
    /// `Status.reason` ("NotFound").
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, if any.
    pub details: Option<Value>,
    /// A `Retry-After` header value in seconds.
    pub retry_after: Option<u64>,
}

fn details(kind: &ResourceKind, name: &str) -> Value {
    let mut m = Map::new();
    if !name.is_empty() {
        m.insert("name".into(), name.into());
    }
    if !kind.group.is_empty() {
        m.insert("group".into(), kind.group.into());
    }
    m.insert("kind".into(), kind.plural.into());
    Value::Object(m)
}

impl ApiError {
    /// A plain error.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// Attaches details.
    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// 404 for an object.
    pub fn not_found(kind: &ResourceKind, name: &str) -> ApiError {
        ApiError::about(404, "NotFound", kind, name, "not found")
    }

    /// `<code> <reason>` about the object `name` of `kind`: "<resource> "<name>" <what>",
    /// with the object's details.
    fn about(
        code: u16,
        reason: &'static str,
        kind: &ResourceKind,
        name: &str,
        what: &str,
    ) -> ApiError {
        ApiError::new(
            code,
            reason,
            format!("{} {name:?} {what}", kind.qualified_resource()),
        )
        .with_details(details(kind, name))
    }

    /// 404 for a path the server does not serve.
    pub fn path_not_found() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource").with_details(
            json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}),
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(kind: &ResourceKind, name: &str) -> ApiError {
        ApiError::about(409, "AlreadyExists", kind, name, "already exists")
    }

    /// 409 Conflict with a custom explanation.
    pub fn conflict(kind: &ResourceKind, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                kind.qualified_resource()
            ),
        )
        .with_details(details(kind, name))
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn stale(kind: &ResourceKind, name: &str) -> ApiError {
        ApiError::conflict(
            kind,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with field causes.
    pub fn invalid(kind: &ResourceKind, name: &str, errs: &[FieldError]) -> ApiError {
        let causes: Vec<Value> = errs
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
            .collect();
        let mut d = Map::new();
        d.insert("name".into(), name.into());
        if !kind.group.is_empty() {
            d.insert("group".into(), kind.group.into());
        }
        d.insert("kind".into(), kind.kind.into());
        d.insert("causes".into(), causes.into());
        ApiError::new(
            422,
            "Invalid",
            format!(
                "{} {name:?} is invalid: {}",
                kind.kind,
                podvisor_api::validation::aggregate_message(errs)
            ),
        )
        .with_details(Value::Object(d))
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden.
    pub fn forbidden(
        kind_plural: &str,
        group: &str,
        name: &str,
        message: impl Into<String>,
    ) -> ApiError {
        let mut m = Map::new();
        if !name.is_empty() {
            m.insert("name".into(), name.into());
        }
        if !group.is_empty() {
            m.insert("group".into(), group.into());
        }
        m.insert("kind".into(), kind_plural.into());
        ApiError::new(403, "Forbidden", message).with_details(Value::Object(m))
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(accept: &str) -> ApiError {
        ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json, application/yaml (got {accept})"
            ),
        )
    }

    /// 410 Expired (too old resourceVersion or continue token).
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
            ),
        )
    }

    /// 429 TooManyRequests.
    pub fn too_many_requests() -> ApiError {
        let mut e = ApiError::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        )
        .with_details(json!({"retryAfterSeconds": 1}));
        e.retry_after = Some(1);
        e
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
        .with_details(json!({"causes": [{"message": message}]}))
    }

    /// 504 Timeout.
    pub fn timeout(message: impl Into<String>) -> ApiError {
        let mut e =
            ApiError::new(504, "Timeout", message).with_details(json!({"retryAfterSeconds": 1}));
        e.retry_after = Some(1);
        e
    }

    /// Maps a store error about one object of `kind`.
    pub fn from_store(err: StoreError, kind: &ResourceKind, name: &str) -> ApiError {
        match err {
            StoreError::NotFound { .. } => ApiError::not_found(kind, name),
            StoreError::AlreadyExists { .. } => ApiError::already_exists(kind, name),
            StoreError::Conflict { .. } => ApiError::stale(kind, name),
            other => ApiError::from_store_generic(other),
        }
    }

    /// Maps a store error not tied to one object.
    pub fn from_store_generic(err: StoreError) -> ApiError {
        match err {
            StoreError::Compacted {
                requested,
                compacted,
            } => ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::FutureRevision { requested, current } => ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            StoreError::InvalidArgument { message } if message.contains("large") => ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("etcdserver: request is too large: {message}"),
            ),
            StoreError::InvalidArgument { message } => ApiError::bad_request(message),
            other => ApiError::internal(other.to_string()),
        }
    }

    /// The Status object.
    pub fn status(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), "Status".into());
        m.insert("apiVersion".into(), "v1".into());
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), "Failure".into());
        m.insert("message".into(), self.message.clone().into());
        m.insert("reason".into(), self.reason.into());
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), self.code.into());
        Value::Object(m)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = status_bytes(&self.status());
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// A successful `Status` (DELETE of non-pod kinds, binding).
pub fn success_status(details: Option<Value>, code: Option<u16>) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), "Status".into());
    m.insert("apiVersion".into(), "v1".into());
    m.insert("metadata".into(), json!({}));
    m.insert("status".into(), "Success".into());
    if let Some(d) = details {
        m.insert("details".into(), d);
    }
    if let Some(c) = code {
        m.insert("code".into(), c.into());
    }
    Value::Object(m)
}

/// The field order of `metav1.Status` and its parts in upstream's Go structs, which its JSON
/// encoding follows (clients that compare bodies byte for byte depend on it).
fn field_order(path: &[&str]) -> &'static [&'static str] {
    match path {
        [] => &[
            "kind",
            "apiVersion",
            "metadata",
            "status",
            "message",
            "reason",
            "details",
            "code",
        ],
        ["metadata"] => &[
            "selfLink",
            "resourceVersion",
            "continue",
            "remainingItemCount",
        ],
        ["details"] => &[
            "name",
            "group",
            "kind",
            "uid",
            "causes",
            "retryAfterSeconds",
        ],
        ["details", "causes"] => &["reason", "message", "field"],
        _ => &[],
    }
}

fn write_ordered(out: &mut Vec<u8>, v: &Value, path: &mut Vec<&'static str>) {
    match v {
        Value::Object(m) => {
            out.push(b'{');
            let order = field_order(path);
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by_key(|k| {
                (
                    order.iter().position(|o| o == k).unwrap_or(order.len()),
                    k.as_str(),
                )
            });
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                let child = order.iter().find(|o| **o == k.as_str()).copied();
                match child {
                    Some(name) => {
                        path.push(name);
                        write_ordered(out, &m[k.as_str()], path);
                        path.pop();
                    }
                    None => {
                        let _ = serde_json::to_writer(&mut *out, &m[k.as_str()]);
                    }
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_ordered(out, item, path);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// Encodes a `Status` object as upstream's API server does: fields in the Go structs' order,
/// `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026` (Go's `json.Encoder`), and a
/// trailing newline.
pub fn status_bytes(status: &Value) -> Vec<u8> {
    let mut raw = Vec::new();
    write_ordered(&mut raw, status, &mut Vec::new());
    let mut out = Vec::with_capacity(raw.len() + 16);
    for &b in &raw {
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            _ => out.push(b),
        }
    }
    // U+2028 and U+2029, which Go escapes too (they end lines in JavaScript).
    let mut text = String::from_utf8(out).unwrap_or_default();
    if text.contains('\u{2028}') || text.contains('\u{2029}') {
        text = text
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
    }
    let mut out = text.into_bytes();
    out.push(b'\n');
    out
}
