//! A parsed API request: the [`Ctx`] handed to every handler (server, user, query, headers,
//! body, warnings, upgrade), the [`Target`] a resource path names, the [`Query`] parameters,
//! the negotiated [`Output`] and how answers are encoded, plus the list/watch parameters
//! ([`Selectors`], [`list_prefix`], [`parse_resource_version`]) shared by the handlers.
//!
//! [`crate::rest`] builds these and dispatches to the handlers (`rest`, [`crate::watch`],
//! [`crate::logs`], [`crate::exec`], [`crate::eviction`]); the handlers depend on this module,
//! never on `rest`.

use std::collections::HashMap;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use podvisor_api::{FieldSelector, LabelSelector};
use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::objects;
use crate::registry::{self, ResourceKind, Subresource};
use crate::server::ApiServer;
use crate::strategy;

/// The largest request body accepted (upstream's 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Parsed query parameters (last value wins; empty pairs tolerated; `+` is a space).
#[derive(Debug, Default, Clone)]
pub struct Query {
    map: HashMap<String, String>,
    raw: String,
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Query {
        let mut map = HashMap::new();
        if let Some(raw) = raw {
            for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
                if !k.is_empty() {
                    map.insert(k.into_owned(), v.into_owned());
                }
            }
        }
        Query {
            map,
            raw: raw.unwrap_or("").to_string(),
        }
    }

    /// Every value of a repeated parameter, in order.
    pub fn all(&self, k: &str) -> Vec<String> {
        form_urlencoded::parse(self.raw.as_bytes())
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    /// A parameter.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    /// A parameter as text, empty when absent.
    pub fn text(&self, k: &str) -> String {
        self.get(k).unwrap_or("").to_string()
    }

    /// A boolean parameter ("true"/"1" or "false"/"0"; anything else is a 400).
    pub fn bool(&self, k: &str) -> Result<bool, ApiError> {
        match self.get(k) {
            None | Some("") | Some("false") | Some("0") | Some("False") => Ok(false),
            Some("true") | Some("1") | Some("True") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value {other:?} for boolean parameter {k}"
            ))),
        }
    }

    /// An integer parameter (400 if it does not parse).
    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(s) => s.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value {s:?} for integer parameter {k}"))
            }),
        }
    }
}

/// How an answer is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Plain JSON.
    Json,
    /// YAML.
    Yaml,
    /// `meta.k8s.io/v1 Table`.
    Table,
    /// `meta.k8s.io/v1 PartialObjectMetadata(List)`.
    Metadata,
}

/// Negotiates the output from `Accept`.
pub fn negotiate(accept: Option<&str>) -> Result<Output, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::Json);
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let get = |k: &str| {
            params
                .iter()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| v.as_str())
        };
        let json_like = matches!(media.as_str(), "application/json" | "*/*" | "application/*");
        if json_like {
            match get("as") {
                Some("Table") if get("g") == Some("meta.k8s.io") => return Ok(Output::Table),
                Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                    if get("g") == Some("meta.k8s.io") =>
                {
                    return Ok(Output::Metadata);
                }
                None => return Ok(Output::Json),
                _ => continue,
            }
        }
        if media == crate::protobuf::PROTOBUF {
            match get("as") {
                None => return Ok(Output::Json),
                _ => continue,
            }
        }
        if matches!(
            media.as_str(),
            "application/yaml" | "application/x-yaml" | "text/yaml"
        ) {
            return Ok(Output::Yaml);
        }
    }
    Err(ApiError::not_acceptable(accept))
}

/// What a resource path names.
#[derive(Debug, Clone)]
pub struct Target {
    /// The kind.
    pub kind: &'static ResourceKind,
    /// The namespace (namespaced kinds, from the path).
    pub namespace: Option<String>,
    /// The object name.
    pub name: Option<String>,
    /// The subresource.
    pub sub: Option<Subresource>,
}

pub(crate) fn parse_target(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let find = |plural: &str| {
        registry::lookup(group, version, plural).ok_or_else(ApiError::path_not_found)
    };
    let sub = |s: &str, kind: &ResourceKind| -> Result<Subresource, ApiError> {
        match Subresource::parse(s) {
            Some(sr) if kind.has_subresource(sr) => Ok(sr),
            _ => Err(ApiError::path_not_found()),
        }
    };
    let valid = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains('%');
    if rest.iter().any(|s| !valid(s)) {
        return Err(ApiError::path_not_found());
    }
    // namespaces/{ns}/{plural}[/{name}[/{sub}]]
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(kind) = registry::lookup(group, version, rest[2]).filter(|k| k.namespaced)
    {
        let ns = Some(rest[1].to_string());
        return match rest.len() {
            3 => Ok(Target {
                kind,
                namespace: ns,
                name: None,
                sub: None,
            }),
            4 => Ok(Target {
                kind,
                namespace: ns,
                name: Some(rest[3].to_string()),
                sub: None,
            }),
            5 => Ok(Target {
                kind,
                namespace: ns,
                name: Some(rest[3].to_string()),
                sub: Some(sub(rest[4], kind)?),
            }),
            _ => Err(ApiError::path_not_found()),
        };
    }
    let kind = find(rest[0])?;
    match rest.len() {
        1 => Ok(Target {
            kind,
            namespace: None,
            name: None,
            sub: None,
        }),
        2 if !kind.namespaced => Ok(Target {
            kind,
            namespace: None,
            name: Some(rest[1].to_string()),
            sub: None,
        }),
        3 if !kind.namespaced => Ok(Target {
            kind,
            namespace: None,
            name: Some(rest[1].to_string()),
            sub: Some(sub(rest[2], kind)?),
        }),
        _ => Err(ApiError::path_not_found()),
    }
}

/// The request context handed to handlers.
pub struct Ctx {
    /// The server.
    pub srv: ApiServer,
    /// The authenticated user.
    pub user: UserInfo,
    /// The query.
    pub query: Query,
    /// Request headers.
    pub headers: HeaderMap,
    /// The body (read lazily; in a mutex so that `&Ctx` is `Send`).
    pub body: std::sync::Mutex<Option<Body>>,
    /// Warnings to send back.
    pub warnings: Vec<String>,
    /// The connection upgrade of an upgrade request (exec, attach), taken by its handler.
    pub upgrade: std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>,
    /// What the request addresses, for the metrics (set once the target is known).
    pub metric: Option<crate::metrics::RequestMetric>,
}

impl Ctx {
    pub(crate) async fn body_bytes(&mut self) -> Result<bytes::Bytes, ApiError> {
        let taken = self.body.lock().ok().and_then(|mut b| b.take());
        let Some(body) = taken else {
            return Ok(bytes::Bytes::new());
        };
        let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
        // A slow body holds a request slot: it must arrive within the limit.
        let within = self.srv.config().connections.body_read_timeout;
        let Ok(collected) = tokio::time::timeout(within, limited.collect()).await else {
            return Err(ApiError::new(
                408,
                "Timeout",
                format!(
                    "the request body was not received within {}s",
                    within.as_secs()
                ),
            ));
        };
        match collected {
            Ok(c) => Ok(c.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(ApiError::too_large(MAX_BODY_BYTES))
            }
            Err(e) => Err(ApiError::bad_request(format!(
                "error reading the request body: {e}"
            ))),
        }
    }

    pub(crate) fn header(&self, h: header::HeaderName) -> Option<&str> {
        self.headers.get(h).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn dry_run(&self) -> Result<bool, ApiError> {
        match self.query.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(o) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {o:?}; supported values: \"All\""
            ))),
        }
    }

    pub(crate) fn manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        let ua = self.header(header::USER_AGENT).unwrap_or("unknown");
        ua.split('/').next().unwrap_or("unknown").to_string()
    }

    pub(crate) fn respond(&self, code: StatusCode, v: &Value, out: Output) -> Response {
        let accept = self.header(header::ACCEPT);
        let pb = out == Output::Json
            && crate::protobuf::negotiate(accept) == crate::protobuf::ResponseFormat::Protobuf
            && v.get("kind").and_then(Value::as_str) != Some("Status")
            && crate::protobuf::is_supported(
                v.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                v.get("kind").and_then(Value::as_str).unwrap_or(""),
            );
        let encoded = if pb {
            match crate::protobuf::encode(v) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "protobuf encoding failed; answering JSON");
                    None
                }
            }
        } else {
            None
        };
        let (bytes, ct) = match (encoded, out) {
            (Some(b), _) => (b, crate::protobuf::PROTOBUF),
            (None, out) => match out {
                Output::Yaml => (
                    serde_yaml::to_string(v).unwrap_or_default().into_bytes(),
                    "application/yaml",
                ),
                _ => (
                    serde_json::to_vec(v).unwrap_or_default(),
                    "application/json",
                ),
            },
        };
        let mut r = (code, bytes).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        crate::warning::append_headers(r.headers_mut(), &self.warnings);
        r
    }
}

/// Label and field selectors of a list or watch, validated for the kind.
pub struct Selectors {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Selectors {
    /// Parses and checks the selectors in `q`.
    pub fn parse(kind: &ResourceKind, q: &Query) -> Result<Selectors, ApiError> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or("")).map_err(|e| {
            ApiError::bad_request(format!("unable to parse requirement: {}", e.message))
        })?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.message))?;
        strategy::check_field_selector(kind, &fields)?;
        Ok(Selectors { labels, fields })
    }

    /// Whether an object matches.
    pub fn matches(&self, kind: &ResourceKind, obj: &Value) -> bool {
        (self.labels.is_empty() || self.labels.matches(&objects::labels(obj)))
            && (self.fields.is_empty()
                || self.fields.matches(|f| strategy::field_value(kind, obj, f)))
    }

    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

/// The storage prefix of a list or watch, narrowed by a `metadata.namespace` field selector.
pub fn list_prefix(t: &Target, sel: &Selectors) -> String {
    let ns = t.namespace.as_deref().or_else(|| {
        if t.kind.namespaced {
            sel.fields.exact("metadata.namespace")
        } else {
            None
        }
    });
    t.kind.list_prefix(ns)
}

/// PartialObjectMetadata of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// Parses a `resourceVersion` parameter: empty is `None`; otherwise a non-negative integer.
pub fn parse_resource_version(rv: &str) -> Result<Option<i64>, ApiError> {
    if rv.is_empty() {
        return Ok(None);
    }
    match rv.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(ApiError::bad_request(format!(
            "invalid resource version {rv:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(None).unwrap(), Output::Json);
        assert_eq!(negotiate(Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")).unwrap(), Output::Table);
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf,application/json")).unwrap(),
            Output::Json
        );
        assert_eq!(
            negotiate(Some(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            ))
            .unwrap(),
            Output::Metadata
        );
        assert_eq!(negotiate(Some("application/yaml")).unwrap(), Output::Yaml);
        assert_eq!(negotiate(Some("text/html")).unwrap_err().code, 406);
    }

    #[test]
    fn paths_parse_to_targets() {
        let t = parse_target("", "v1", &["namespaces", "default", "pods", "x", "status"]).unwrap();
        assert_eq!(
            (
                t.kind.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub
            ),
            (
                "pods",
                Some("default"),
                Some("x"),
                Some(Subresource::Status)
            )
        );
        let t = parse_target("", "v1", &["namespaces", "default"]).unwrap();
        assert_eq!(
            (t.kind.plural, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = parse_target("", "v1", &["namespaces", "x", "status"]).unwrap();
        assert_eq!(t.sub, Some(Subresource::Status));
        assert!(parse_target("", "v1", &["pods", "x"]).is_err());
        assert!(parse_target("", "v1", &["nodes", "x", "log"]).is_err());
        assert!(
            parse_target(
                "apps",
                "v1",
                &["namespaces", "d", "replicasets", "r", "scale"]
            )
            .is_ok()
        );
        let q = Query::parse(Some("&watch=true&&labelSelector=run+in+%28x%2Cy%29&"));
        assert_eq!(q.get("labelSelector"), Some("run in (x,y)"));
        assert!(q.bool("watch").unwrap());
    }
}
