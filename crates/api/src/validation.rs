//! Validation with field paths, in apimachinery's `field.ErrorList` shape.
//!
//! Every function returns a list of [`FieldError`]s; an empty list means valid. The API
//! server turns a non-empty list into a 422 `Invalid` Status whose causes carry
//! [`FieldError::field`] and [`FieldError::body`].

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, Lifecycle, LifecycleHandler, Pod, PodSpec, Probe,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// The type of a field error (apimachinery `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    /// `Required value`.
    Required,
    /// `Invalid value`.
    Invalid,
    /// `Forbidden`.
    Forbidden,
    /// `Duplicate value`.
    Duplicate,
    /// `Unsupported value`.
    NotSupported,
    /// `Too long`.
    TooLong,
    /// `Too many`.
    TooMany,
    /// `Not found`.
    NotFound,
}

impl FieldErrorType {
    /// The Status cause reason ("FieldValueInvalid").
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::TooMany => "FieldValueTooMany",
            FieldErrorType::NotFound => "FieldValueNotFound",
        }
    }
}

/// One validation error on one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The error type.
    pub kind: FieldErrorType,
    /// The field path ("spec.containers[0].image").
    pub field: String,
    /// The offending value, if it is shown.
    pub value: Option<Value>,
    /// Extra detail.
    pub detail: String,
}

impl FieldError {
    /// A `Required value` error.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            kind: FieldErrorType::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }
    /// An `Invalid value` error.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> FieldError {
        FieldError {
            kind: FieldErrorType::Invalid,
            field: field.into(),
            value: Some(value.into()),
            detail: detail.into(),
        }
    }
    /// A `Forbidden` error.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            kind: FieldErrorType::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }
    /// A `Duplicate value` error.
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> FieldError {
        FieldError {
            kind: FieldErrorType::Duplicate,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }
    /// An `Unsupported value` error listing the supported values.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> FieldError {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            kind: FieldErrorType::NotSupported,
            field: field.into(),
            value: Some(value.into()),
            detail: format!("supported values: {}", list.join(", ")),
        }
    }
    /// A `Too long` error (upstream's `field.TooLong`: the value is not shown).
    pub fn too_long(field: impl Into<String>, max: usize) -> FieldError {
        FieldError {
            kind: FieldErrorType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }
    /// A `Too many` error: `Too many: <actual>: must have at most <max> items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> FieldError {
        FieldError {
            kind: FieldErrorType::TooMany,
            field: field.into(),
            value: Some(actual.into()),
            detail: format!("must have at most {max} items"),
        }
    }
    /// A `Not found` error.
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> FieldError {
        FieldError {
            kind: FieldErrorType::NotFound,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    /// The message without the field ("Invalid value: \"x\": detail").
    pub fn body(&self) -> String {
        let head = match self.kind {
            FieldErrorType::Required => "Required value",
            FieldErrorType::Invalid => "Invalid value",
            FieldErrorType::Forbidden => "Forbidden",
            FieldErrorType::Duplicate => "Duplicate value",
            FieldErrorType::NotSupported => "Unsupported value",
            FieldErrorType::TooLong => "Too long",
            FieldErrorType::TooMany => "Too many",
            FieldErrorType::NotFound => "Not found",
        };
        let mut s = head.to_string();
        if let Some(v) = &self.value {
            let shown = match v {
                Value::String(s) => format!("{s:?}"),
                // Go's `%#v` of a `[]string`, as upstream shows such values.
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    let shown: Vec<String> = items
                        .iter()
                        .map(|i| format!("{:?}", i.as_str().unwrap_or_default()))
                        .collect();
                    format!("[]string{{{}}}", shown.join(", "))
                }
                Value::Null => "null".to_string(),
                other => other.to_string(),
            };
            s = format!("{s}: {shown}");
        }
        if !self.detail.is_empty() {
            s = format!("{s}: {}", self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Formats an error list as upstream's aggregate ("a: x" or "[a: x, b: y]").
pub fn aggregate_message(errs: &[FieldError]) -> String {
    match errs {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Problems with `s` as an RFC 1123 label (empty list = valid).
pub fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !is_label_chars(s) {
        out.push(DNS1123_LABEL_MSG.to_string());
    }
    out
}

/// Problems with `s` as an RFC 1123 subdomain (empty list = valid).
pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if s.is_empty() || !s.split('.').all(is_label_chars) {
        out.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    out
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with `s` as a qualified name (label or annotation key: `[prefix/]name`).
pub fn qualified_name_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else {
            for e in dns1123_subdomain_errors(p) {
                out.push(format!("prefix part {e}"));
            }
        }
    }
    if name.contains('/') || !is_qualified_name_part(name) {
        out.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string());
    }
    out
}

/// Problems with `s` as a label value (may be empty).
pub fn label_value_errors(s: &str) -> Vec<String> {
    if s.is_empty() || is_qualified_name_part(s) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    out.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string());
    out
}

/// How an object's name must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds, pods included).
    Subdomain,
    /// RFC 1123 label (namespaces, services).
    Label,
    /// Anything without `/` and not `.` or `..` (events, nodes use subdomain in fact).
    Path,
}

fn name_errors(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => dns1123_subdomain_errors(name),
        NameRule::Label => dns1123_label_errors(name),
        NameRule::Path => {
            if name == "." || name == ".." {
                vec![format!("may not be '{name}'")]
            } else if name.contains('/') || name.contains('%') {
                vec!["may not contain '/' or '%'".to_string()]
            } else {
                Vec::new()
            }
        }
    }
}

/// Validates object metadata: name (or generateName), namespace presence, labels, annotations.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    rule: NameRule,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match meta.name.as_deref() {
        None | Some("") => {
            if meta.generate_name.as_deref().unwrap_or("").is_empty() {
                errs.push(FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                ));
            }
        }
        Some(name) => {
            for e in name_errors(rule, name) {
                errs.push(FieldError::invalid("metadata.name", name, e));
            }
        }
    }
    if namespaced {
        if meta.namespace.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        }
    } else if meta.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    errs.extend(validate_labels(meta.labels.as_ref(), "metadata.labels"));
    if let Some(ann) = &meta.annotations {
        let mut total = 0usize;
        for (k, v) in ann {
            total += k.len() + v.len();
            for e in qualified_name_errors(&k.to_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", k.as_str(), e));
            }
        }
        if total > 256 * 1024 {
            errs.push(FieldError {
                kind: FieldErrorType::TooLong,
                field: "metadata.annotations".to_string(),
                value: None,
                detail: "may not be more than 262144 bytes".to_string(),
            });
        }
    }
    errs
}

/// Validates a label map.
pub fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        for e in qualified_name_errors(k) {
            errs.push(FieldError::invalid(path, k.as_str(), e));
        }
        for e in label_value_errors(v) {
            errs.push(FieldError::invalid(path, v.as_str(), e));
        }
    }
    errs
}

/// An IANA service name: a label of at most 15 characters with a letter and no `--`.
pub(crate) fn is_iana_svc_name(s: &str) -> bool {
    s.len() <= 15
        && is_label_chars(s)
        && s.bytes().any(|c| c.is_ascii_lowercase())
        && !s.contains("--")
}

pub(crate) fn port_range(errs: &mut Vec<FieldError>, path: &str, port: i32, allow_zero: bool) {
    if (allow_zero && port == 0) || (1..=65535).contains(&port) {
        return;
    }
    errs.push(FieldError::invalid(
        path,
        port,
        "must be between 1 and 65535, inclusive",
    ));
}

fn non_negative(errs: &mut Vec<FieldError>, path: String, v: Option<i32>) {
    if let Some(v) = v
        && v < 0
    {
        errs.push(FieldError::invalid(
            path,
            v,
            "must be greater than or equal to 0",
        ));
    }
}

/// Reports `value` at `field` as NotSupported when it is set and not one of `supported`.
pub(crate) fn check_supported(
    errs: &mut Vec<FieldError>,
    field: String,
    value: Option<&String>,
    supported: &[&str],
) {
    if let Some(v) = value
        && !supported.contains(&v.as_str())
    {
        errs.push(FieldError::not_supported(field, v.as_str(), supported));
    }
}

pub(crate) fn validate_int_or_string_port(
    errs: &mut Vec<FieldError>,
    path: String,
    p: &IntOrString,
) {
    match p {
        IntOrString::Int(n) => port_range(errs, &path, *n, false),
        IntOrString::String(s) => {
            if !is_iana_svc_name(s) {
                errs.push(FieldError::invalid(
                    path,
                    s.as_str(),
                    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                ));
            }
        }
    }
}

/// The port and scheme of an httpGet action (of a probe or a lifecycle handler).
fn validate_http_get(errs: &mut Vec<FieldError>, path: &str, g: &HTTPGetAction) {
    validate_int_or_string_port(errs, format!("{path}.httpGet.port"), &g.port);
    check_supported(
        errs,
        format!("{path}.httpGet.scheme"),
        g.scheme.as_ref(),
        &["HTTP", "HTTPS"],
    );
}

fn validate_probe(errs: &mut Vec<FieldError>, path: &str, p: &Probe, must_be_one: bool) {
    let mut handlers = 0;
    if p.exec.is_some() {
        handlers += 1;
    }
    if let Some(h) = &p.http_get {
        handlers += 1;
        validate_http_get(errs, path, h);
    }
    if let Some(t) = &p.tcp_socket {
        handlers += 1;
        validate_int_or_string_port(errs, format!("{path}.tcpSocket.port"), &t.port);
    }
    if let Some(g) = &p.grpc {
        handlers += 1;
        port_range(errs, &format!("{path}.grpc.port"), g.port, false);
    }
    if handlers == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    } else if handlers > 1 {
        errs.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        ));
    }
    non_negative(
        errs,
        format!("{path}.initialDelaySeconds"),
        p.initial_delay_seconds,
    );
    non_negative(errs, format!("{path}.timeoutSeconds"), p.timeout_seconds);
    non_negative(errs, format!("{path}.periodSeconds"), p.period_seconds);
    non_negative(
        errs,
        format!("{path}.successThreshold"),
        p.success_threshold,
    );
    non_negative(
        errs,
        format!("{path}.failureThreshold"),
        p.failure_threshold,
    );
    if must_be_one && p.success_threshold.is_some_and(|s| s != 1) {
        errs.push(FieldError::invalid(
            format!("{path}.successThreshold"),
            p.success_threshold.unwrap_or(0),
            "must be 1",
        ));
    }
    if let Some(t) = p.termination_grace_period_seconds
        && t <= 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            t,
            "must be greater than 0",
        ));
    }
}

/// A lifecycle handler (`validateHandler`): exactly one action; exec needs a command;
/// httpGet a valid port and scheme; sleep lies within the pod's grace period (zero allowed,
/// as with the PodLifecycleSleepActionAllowZero gate on).
fn validate_lifecycle_handler(
    errs: &mut Vec<FieldError>,
    path: &str,
    h: &LifecycleHandler,
    grace: Option<i64>,
) {
    let mut handlers = 0;
    let mut one = |errs: &mut Vec<FieldError>, field: &str| {
        handlers += 1;
        if handlers > 1 {
            errs.push(FieldError::forbidden(
                format!("{path}.{field}"),
                "may not specify more than 1 handler type",
            ));
            false
        } else {
            true
        }
    };
    if let Some(e) = &h.exec
        && one(errs, "exec")
        && e.command.as_ref().is_none_or(|c| c.is_empty())
    {
        errs.push(FieldError::required(format!("{path}.exec.command"), ""));
    }
    if let Some(g) = &h.http_get
        && one(errs, "httpGet")
    {
        if g.path.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required(format!("{path}.httpGet.path"), ""));
        }
        validate_http_get(errs, path, g);
    }
    if let Some(t) = &h.tcp_socket
        && one(errs, "tcpSocket")
    {
        validate_int_or_string_port(errs, format!("{path}.tcpSocket.port"), &t.port);
    }
    if let Some(sl) = &h.sleep
        && one(errs, "sleep")
        && let Some(g) = grace
        && (sl.seconds < 0 || sl.seconds > g)
    {
        errs.push(FieldError::invalid(
            format!("{path}.sleep"),
            sl.seconds,
            format!("must be non-negative and less than terminationGracePeriodSeconds ({g})"),
        ));
    }
    if handlers == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
}

fn validate_lifecycle(errs: &mut Vec<FieldError>, path: &str, l: &Lifecycle, grace: Option<i64>) {
    if let Some(h) = &l.post_start {
        validate_lifecycle_handler(errs, &format!("{path}.postStart"), h, grace);
    }
    if let Some(h) = &l.pre_stop {
        validate_lifecycle_handler(errs, &format!("{path}.preStop"), h, grace);
    }
}

fn validate_container(
    errs: &mut Vec<FieldError>,
    path: &str,
    c: &Container,
    names: &mut HashSet<String>,
    volumes: &HashSet<String>,
    init: bool,
    grace: Option<i64>,
) {
    if c.name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        for e in dns1123_label_errors(&c.name) {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                c.name.as_str(),
                e,
            ));
        }
        if !names.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(
                format!("{path}.name"),
                c.name.as_str(),
            ));
        }
    }
    if c.image.as_deref().unwrap_or("").trim().is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    }
    check_supported(
        errs,
        format!("{path}.imagePullPolicy"),
        c.image_pull_policy.as_ref(),
        &["Always", "IfNotPresent", "Never"],
    );
    check_supported(
        errs,
        format!("{path}.terminationMessagePolicy"),
        c.termination_message_policy.as_ref(),
        &["File", "FallbackToLogsOnError"],
    );
    let mut port_names = HashSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        port_range(
            errs,
            &format!("{pp}.containerPort"),
            p.container_port,
            false,
        );
        if let Some(h) = p.host_port {
            port_range(errs, &format!("{pp}.hostPort"), h, true);
        }
        check_supported(
            errs,
            format!("{pp}.protocol"),
            p.protocol.as_ref(),
            &["SCTP", "TCP", "UDP"],
        );
        if let Some(n) = &p.name {
            if !is_iana_svc_name(n) {
                errs.push(FieldError::invalid(format!("{pp}.name"), n.as_str(), "must be no more than 15 characters, contain only lowercase alphanumeric characters and '-', contain at least one letter, and not start or end with '-'"));
            } else if !port_names.insert(n.clone()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), n.as_str()));
            }
        }
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        if e.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.env[{i}].name"), ""));
        }
    }
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(
                format!("{path}.volumeMounts[{i}].name"),
                m.name.as_str(),
            ));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.volumeMounts[{i}].mountPath"),
                "",
            ));
        }
    }
    let sidecar = init && c.restart_policy.as_deref() == Some("Always");
    let has_rules = c
        .restart_policy_rules
        .as_ref()
        .is_some_and(|r| !r.is_empty());
    if init && !has_rules {
        if let Some(rp) = c.restart_policy.as_ref().filter(|rp| *rp != "Always") {
            errs.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                rp.as_str(),
                &["Always"],
            ));
        }
    } else {
        validate_container_restart_rules(errs, path, c, init);
    }
    if let Some(l) = &c.lifecycle {
        if init && !sidecar {
            errs.push(FieldError::forbidden(
                format!("{path}.lifecycle"),
                "may not be set for init containers without restartPolicy=Always",
            ));
        } else {
            validate_lifecycle(errs, &format!("{path}.lifecycle"), l, grace);
        }
    }
    if init && !sidecar {
        for (field, p) in [
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
            ("startupProbe", &c.startup_probe),
        ] {
            if p.is_some() {
                errs.push(FieldError::forbidden(
                    format!("{path}.{field}"),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            }
        }
    } else {
        if let Some(p) = &c.liveness_probe {
            validate_probe(errs, &format!("{path}.livenessProbe"), p, true);
        }
        if let Some(p) = &c.readiness_probe {
            validate_probe(errs, &format!("{path}.readinessProbe"), p, false);
        }
        if let Some(p) = &c.startup_probe {
            validate_probe(errs, &format!("{path}.startupProbe"), p, true);
        }
    }
}

/// The most `restartPolicyRules` a container may have, and exit codes a rule may list.
const MAX_RESTART_RULES: usize = 20;
const MAX_RESTART_RULE_EXIT_CODES: usize = 255;

/// A container's own `restartPolicy` and `restartPolicyRules` (KEP-5307 with KEP-5532's
/// `RestartAllContainers`, both on): the policy is Always, OnFailure or Never; rules need it
/// set ("must specify restartPolicy when restart rules are used"); each rule's action is
/// `Restart` or `RestartAllContainers` (only the latter on an init container, sidecar or
/// not) and its `exitCodes` requirement has the operator `In` or `NotIn` over at most 255
/// distinct codes. An unknown or empty action or operator is `Unsupported value` (upstream
/// switches over the supported values, as a 1.36 API server answers).
fn validate_container_restart_rules(
    errs: &mut Vec<FieldError>,
    path: &str,
    c: &Container,
    init: bool,
) {
    check_supported(
        errs,
        format!("{path}.restartPolicy"),
        c.restart_policy.as_ref(),
        &["Always", "Never", "OnFailure"],
    );
    let rules = c.restart_policy_rules.as_deref().unwrap_or_default();
    if rules.is_empty() {
        return;
    }
    if c.restart_policy.is_none() {
        errs.push(FieldError::required(
            format!("{path}.restartPolicy"),
            "must specify restartPolicy when restart rules are used",
        ));
    }
    if rules.len() > MAX_RESTART_RULES {
        errs.push(FieldError::too_many(
            format!("{path}.restartPolicyRules"),
            rules.len(),
            MAX_RESTART_RULES,
        ));
    }
    let actions: &[&str] = if init {
        &[crate::status::RESTART_RULE_ACTION_RESTART_ALL_CONTAINERS]
    } else {
        &[
            crate::status::RESTART_RULE_ACTION_RESTART,
            crate::status::RESTART_RULE_ACTION_RESTART_ALL_CONTAINERS,
        ]
    };
    for (i, r) in rules.iter().enumerate() {
        let rp = format!("{path}.restartPolicyRules[{i}]");
        if !actions.contains(&r.action.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{rp}.action"),
                r.action.as_str(),
                actions,
            ));
        }
        let Some(e) = &r.exit_codes else {
            errs.push(FieldError::required(
                format!("{rp}.exitCodes"),
                "must be specified",
            ));
            continue;
        };
        if !matches!(e.operator.as_str(), "In" | "NotIn") {
            errs.push(FieldError::not_supported(
                format!("{rp}.exitCodes.operator"),
                e.operator.as_str(),
                &["In", "NotIn"],
            ));
        }
        let values = e.values.as_deref().unwrap_or_default();
        if values.len() > MAX_RESTART_RULE_EXIT_CODES {
            errs.push(FieldError::too_many(
                format!("{rp}.exitCodes.values"),
                values.len(),
                MAX_RESTART_RULE_EXIT_CODES,
            ));
        }
        let mut seen = HashSet::new();
        for (j, v) in values.iter().enumerate() {
            if !seen.insert(*v) {
                errs.push(FieldError::duplicate(
                    format!("{rp}.exitCodes.values[{j}]"),
                    *v,
                ));
            }
        }
    }
}

/// The init containers, then the app containers of `spec`, each with its field path.
fn init_and_app_containers<'a>(
    spec: &'a PodSpec,
    path: &'a str,
) -> impl Iterator<Item = (String, &'a Container)> + 'a {
    spec.init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(move |(i, c)| (format!("{path}.initContainers[{i}]"), c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(move |(i, c)| (format!("{path}.containers[{i}]"), c)),
        )
}

/// The stop signals a Linux container may name in `lifecycle.stopSignal` (upstream's
/// `supportedStopSignalsLinux`).
pub const LINUX_STOP_SIGNALS: &[&str] = &[
    "SIGABRT",
    "SIGALRM",
    "SIGBUS",
    "SIGCHLD",
    "SIGCLD",
    "SIGCONT",
    "SIGFPE",
    "SIGHUP",
    "SIGILL",
    "SIGINT",
    "SIGIO",
    "SIGIOT",
    "SIGKILL",
    "SIGPIPE",
    "SIGPOLL",
    "SIGPROF",
    "SIGPWR",
    "SIGQUIT",
    "SIGRTMAX",
    "SIGRTMAX-1",
    "SIGRTMAX-10",
    "SIGRTMAX-11",
    "SIGRTMAX-12",
    "SIGRTMAX-13",
    "SIGRTMAX-14",
    "SIGRTMAX-2",
    "SIGRTMAX-3",
    "SIGRTMAX-4",
    "SIGRTMAX-5",
    "SIGRTMAX-6",
    "SIGRTMAX-7",
    "SIGRTMAX-8",
    "SIGRTMAX-9",
    "SIGRTMIN",
    "SIGRTMIN+1",
    "SIGRTMIN+10",
    "SIGRTMIN+11",
    "SIGRTMIN+12",
    "SIGRTMIN+13",
    "SIGRTMIN+14",
    "SIGRTMIN+15",
    "SIGRTMIN+2",
    "SIGRTMIN+3",
    "SIGRTMIN+4",
    "SIGRTMIN+5",
    "SIGRTMIN+6",
    "SIGRTMIN+7",
    "SIGRTMIN+8",
    "SIGRTMIN+9",
    "SIGSEGV",
    "SIGSTKFLT",
    "SIGSTOP",
    "SIGSYS",
    "SIGTERM",
    "SIGTRAP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGUSR1",
    "SIGUSR2",
    "SIGVTALRM",
    "SIGWINCH",
    "SIGXCPU",
    "SIGXFSZ",
];

/// `lifecycle.stopSignal` (KEP-4960): only with `spec.os.name` set, and for `linux` one of
/// [`LINUX_STOP_SIGNALS`].
fn validate_stop_signals(errs: &mut Vec<FieldError>, spec: &PodSpec, path: &str) {
    let os = spec.os.as_ref().map(|o| o.name.as_str());
    for (cp, c) in init_and_app_containers(spec, path) {
        let Some(sig) = c.lifecycle.as_ref().and_then(|l| l.stop_signal.as_ref()) else {
            continue;
        };
        let fp = format!("{cp}.lifecycle.stopSignal");
        match os {
            None | Some("") => errs.push(FieldError::forbidden(
                fp,
                "may not be set for containers with empty `spec.os.name`",
            )),
            Some("linux") if !LINUX_STOP_SIGNALS.contains(&sig.as_str()) => {
                errs.push(FieldError::not_supported(
                    fp,
                    sig.as_str(),
                    LINUX_STOP_SIGNALS,
                ));
            }
            _ => {}
        }
    }
}

/// The fields an ephemeral container may not set (upstream's allow list, inverted).
const EPHEMERAL_FORBIDDEN: &[&str] = &[
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resources",
    "resizePolicy",
    "restartPolicy",
];

/// The container an ephemeral container describes (the same fields, without
/// `targetContainerName`).
pub fn ephemeral_as_container(ec: &k8s_openapi::api::core::v1::EphemeralContainer) -> Container {
    let mut v = serde_json::to_value(ec).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.remove("targetContainerName");
    }
    serde_json::from_value(v).unwrap_or_default()
}

/// Validates `spec.ephemeralContainers` (upstream's `validateEphemeralContainers`): each is a
/// valid container whose name is unique in the pod, that sets none of
/// [`EPHEMERAL_FORBIDDEN`] nor a volume mount's `subPath`, and whose `targetContainerName`
/// (if any) names a container or init container.
fn validate_ephemeral_containers(
    errs: &mut Vec<FieldError>,
    spec: &PodSpec,
    path: &str,
    names: &mut HashSet<String>,
    volumes: &HashSet<String>,
) {
    let others: HashSet<String> = names.clone();
    for (i, ec) in spec.ephemeral_containers.iter().flatten().enumerate() {
        let ip = format!("{path}.ephemeralContainers[{i}]");
        let json = serde_json::to_value(ec).unwrap_or(Value::Null);
        for f in EPHEMERAL_FORBIDDEN {
            // Set means not the zero value (upstream compares with it).
            let set = json.get(*f).is_some_and(|v| match v {
                Value::Null => false,
                Value::Object(o) => !o.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            });
            if set {
                errs.push(FieldError::forbidden(
                    format!("{ip}.{f}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, m) in ec.volume_mounts.iter().flatten().enumerate() {
            if m.sub_path.as_deref().is_some_and(|p| !p.is_empty()) {
                errs.push(FieldError::forbidden(
                    format!("{ip}.volumeMounts[{j}].subPath"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        let mut c = ephemeral_as_container(ec);
        c.liveness_probe = None;
        c.readiness_probe = None;
        c.startup_probe = None;
        c.lifecycle = None;
        c.restart_policy = None;
        validate_container(errs, &ip, &c, names, volumes, false, None);
        if let Some(t) = ec
            .target_container_name
            .as_deref()
            .filter(|t| !t.is_empty())
            && !others.contains(t)
        {
            errs.push(FieldError::not_found(
                format!("{ip}.targetContainerName"),
                t,
            ));
        }
    }
}

/// Validates an update through the `ephemeralcontainers` subresource (upstream's
/// `ValidatePodEphemeralContainersUpdate`): the new pod is valid, and every existing
/// ephemeral container is still there, unchanged (they may only be added).
pub fn validate_pod_ephemeral_containers_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = validate_pod(new);
    let empty = Vec::new();
    let news = new
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .unwrap_or(&empty);
    let olds = old
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .unwrap_or(&empty);
    for o in olds {
        match news.iter().find(|n| n.name == o.name) {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!(
                    "existing ephemeral containers {:?} may not be removed\n",
                    o.name
                ),
            )),
            Some(n) if n != o => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!(
                    "existing ephemeral containers {:?} may not be changed\n",
                    o.name
                ),
            )),
            Some(_) => {}
        }
    }
    errs
}

/// Validates a write through `pods/resize` (upstream `ValidatePodResize`, in-place resize
/// GA): the new pod is valid; a terminal pod is not resized; only the cpu and memory
/// requests and limits of containers change, none is added or removed; the QoS class stays.
pub fn validate_pod_resize(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = validate_pod(new);
    let (Some(ns), Some(os)) = (&new.spec, &old.spec) else {
        return errs;
    };
    let phase = old.status.as_ref().and_then(|s| s.phase.as_deref());
    if crate::status::is_terminal_phase(phase) {
        errs.push(FieldError::forbidden(
            "spec",
            "pod resizes may not be applied to terminal pods",
        ));
    }
    let cpu_memory = |r: Option<&ResourceRequirements>, which: &str| -> BTreeMap<String, String> {
        let list = r.and_then(|r| match which {
            "requests" => r.requests.as_ref(),
            _ => r.limits.as_ref(),
        });
        list.into_iter()
            .flatten()
            .filter(|(k, _)| *k == "cpu" || *k == "memory")
            .map(|(k, q)| (k.clone(), q.0.clone()))
            .collect()
    };
    // Everything but the containers' cpu and memory must be as it was.
    let mut masked = ns.clone();
    let strip = |c: &mut Container| {
        if let Some(r) = c.resources.as_mut() {
            for list in [r.requests.as_mut(), r.limits.as_mut()]
                .into_iter()
                .flatten()
            {
                list.remove("cpu");
                list.remove("memory");
            }
        }
        c.resize_policy = None;
    };
    let mut old_masked = os.clone();
    for spec in [&mut masked, &mut old_masked] {
        if let Some(r) = spec.resources.as_mut() {
            for list in [r.requests.as_mut(), r.limits.as_mut()]
                .into_iter()
                .flatten()
            {
                list.remove("cpu");
                list.remove("memory");
            }
        }
    }
    for c in masked
        .containers
        .iter_mut()
        .chain(masked.init_containers.iter_mut().flatten())
    {
        strip(c);
    }
    for c in old_masked
        .containers
        .iter_mut()
        .chain(old_masked.init_containers.iter_mut().flatten())
    {
        strip(c);
    }
    if masked != old_masked {
        errs.push(FieldError::forbidden(
            "spec",
            "only cpu and memory resources are mutable",
        ));
    }
    // pod-level resources (KEP-5419) follow the containers' rule: changed, never added or
    // removed
    let pod_level = |s: &PodSpec| Container {
        resources: s.resources.clone(),
        ..Container::default()
    };
    let (new_pod_level, old_pod_level) = (pod_level(ns), pod_level(os));
    let pairs = std::iter::once(("spec".to_string(), &new_pod_level))
        .chain(
            ns.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("spec.containers[{i}]"), c)),
        )
        .chain(
            ns.init_containers
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, c)| (format!("spec.initContainers[{i}]"), c)),
        );
    for (path, n) in pairs {
        let o = if path == "spec" {
            Some(&old_pod_level)
        } else {
            os.containers
                .iter()
                .chain(os.init_containers.iter().flatten())
                .find(|o| o.name == n.name)
        };
        let Some(o) = o else {
            continue;
        };
        for which in ["requests", "limits"] {
            let (nv, ov) = (
                cpu_memory(n.resources.as_ref(), which),
                cpu_memory(o.resources.as_ref(), which),
            );
            if ov.keys().any(|k| !nv.contains_key(k)) {
                errs.push(FieldError::forbidden(
                    format!("{path}.resources.{which}"),
                    format!("resource {which} cannot be removed"),
                ));
            }
            if nv.keys().any(|k| !ov.contains_key(k)) {
                errs.push(FieldError::forbidden(
                    format!("{path}.resources.{which}"),
                    format!("resource {which} cannot be added"),
                ));
            }
        }
    }
    let old_qos = old
        .status
        .as_ref()
        .and_then(|s| s.qos_class.clone())
        .unwrap_or_else(|| crate::status::qos_class(os).to_string());
    if crate::status::qos_class(ns) != old_qos {
        errs.push(FieldError::invalid(
            "spec",
            old_qos.as_str(),
            "Pod QOS Class may not change as a result of resizing",
        ));
    }
    errs
}

/// Validates a pod spec at `path` ("spec" or "spec.template.spec").
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut volumes = HashSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let vp = format!("{path}.volumes[{i}].name");
        if v.name.is_empty() {
            errs.push(FieldError::required(vp, ""));
            continue;
        }
        for e in dns1123_label_errors(&v.name) {
            errs.push(FieldError::invalid(vp.clone(), v.name.as_str(), e));
        }
        if !volumes.insert(v.name.clone()) {
            errs.push(FieldError::duplicate(vp, v.name.as_str()));
        }
    }
    let mut names = HashSet::new();
    if spec.containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        validate_container(
            &mut errs,
            &format!("{path}.initContainers[{i}]"),
            c,
            &mut names,
            &volumes,
            true,
            spec.termination_grace_period_seconds,
        );
    }
    for (i, c) in spec.containers.iter().enumerate() {
        validate_container(
            &mut errs,
            &format!("{path}.containers[{i}]"),
            c,
            &mut names,
            &volumes,
            false,
            spec.termination_grace_period_seconds,
        );
    }
    validate_ephemeral_containers(&mut errs, spec, path, &mut names, &volumes);
    validate_pod_resources(&mut errs, spec, path);
    validate_stop_signals(&mut errs, spec, path);
    validate_security(&mut errs, spec, path);
    check_supported(
        &mut errs,
        format!("{path}.restartPolicy"),
        spec.restart_policy.as_ref(),
        &["Always", "OnFailure", "Never"],
    );
    check_supported(
        &mut errs,
        format!("{path}.dnsPolicy"),
        spec.dns_policy.as_ref(),
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
    );
    if let Some(a) = spec.active_deadline_seconds
        && a <= 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            a,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(n) = &spec.node_name
        && !n.is_empty()
    {
        for e in dns1123_subdomain_errors(n) {
            errs.push(FieldError::invalid(
                format!("{path}.nodeName"),
                n.as_str(),
                e,
            ));
        }
    }
    errs.extend(validate_labels(
        spec.node_selector.as_ref(),
        &format!("{path}.nodeSelector"),
    ));
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        let tp = format!("{path}.tolerations[{i}]");
        check_supported(
            &mut errs,
            format!("{tp}.operator"),
            t.operator.as_ref(),
            &["Equal", "Exists"],
        );
        check_supported(
            &mut errs,
            format!("{tp}.effect"),
            t.effect.as_ref().filter(|e| !e.is_empty()),
            &["NoExecute", "NoSchedule", "PreferNoSchedule"],
        );
        if t.toleration_seconds.is_some() && t.effect.as_deref() != Some("NoExecute") {
            errs.push(FieldError::invalid(
                format!("{tp}.effect"),
                t.effect.clone().unwrap_or_default(),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        if t.operator.as_deref() == Some("Exists")
            && t.value.as_deref().is_some_and(|v| !v.is_empty())
        {
            errs.push(FieldError::invalid(
                format!("{tp}.operator"),
                t.value.clone().unwrap_or_default(),
                "value must be empty when `operator` is 'Exists'",
            ));
        }
    }
    errs
}

/// Pod-level resources (KEP-2837, upstream `validatePodResources`,
/// `validateResourceRequirements` for a pod and `validatePodResourceConsistency`): not on a
/// windows pod; only cpu, memory and hugepages; a request no more than its limit; each
/// pod-level request at least what the containers ask for together (sidecars and the largest
/// init step counted as the scheduler counts them); no container limit above the pod's.
fn validate_pod_resources(errs: &mut Vec<FieldError>, spec: &PodSpec, path: &str) {
    use crate::quota::Amount;
    let Some(r) = spec.resources.as_ref() else {
        return;
    };
    let rp = format!("{path}.resources");
    let empty = BTreeMap::new();
    let requests = r.requests.as_ref().unwrap_or(&empty);
    let limits = r.limits.as_ref().unwrap_or(&empty);
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    if spec.os.as_ref().is_some_and(|o| o.name == "windows") {
        errs.push(FieldError::forbidden(
            rp,
            "may not be set for a windows pod",
        ));
        return;
    }
    let canonical = |q: &Quantity| Amount::parse(&q.0).map(Amount::to_quantity);
    for (which, list) in [("limits", limits), ("requests", requests)] {
        for name in list.keys() {
            if !(name == "cpu" || name == "memory" || name.starts_with("hugepages-")) {
                errs.push(FieldError::not_supported(
                    format!("{rp}.{which}[{name}]"),
                    name.as_str(),
                    &["cpu", "hugepages-", "memory"],
                ));
            }
        }
    }
    for (name, q) in requests {
        let (Some(req), Some(lim)) = (
            Amount::parse(&q.0),
            limits.get(name).and_then(|l| Amount::parse(&l.0)),
        ) else {
            continue;
        };
        if req.nanos > lim.nanos {
            errs.push(FieldError::invalid(
                format!("{rp}.requests"),
                req.to_quantity(),
                format!(
                    "must be less than or equal to {name} limit of {}",
                    lim.to_quantity()
                ),
            ));
        }
    }
    let Ok(spec_value) = serde_json::to_value(spec) else {
        return;
    };
    let aggregate = crate::quota::aggregate_container_resources(&spec_value, "requests");
    for (name, agg) in &aggregate {
        let Some(req) = requests.get(name).and_then(|q| Amount::parse(&q.0)) else {
            continue;
        };
        if agg.nanos > req.nanos {
            errs.push(FieldError::invalid(
                format!("{rp}.requests[{name}]"),
                req.to_quantity(),
                format!(
                    "must be greater than or equal to aggregate container requests of {}",
                    agg.to_quantity()
                ),
            ));
        }
    }
    for (i, c) in spec.containers.iter().enumerate() {
        let lims = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        for (name, q) in lims.into_iter().flatten() {
            let (Some(lim), Some(pod_lim)) = (
                Amount::parse(&q.0),
                limits.get(name).and_then(|l| Amount::parse(&l.0)),
            ) else {
                continue;
            };
            if lim.nanos > pod_lim.nanos {
                // upstream builds this path from the pod-level resources path
                errs.push(FieldError::invalid(
                    format!("{rp}.containers[{i}][{name}].limits"),
                    canonical(q).unwrap_or_default(),
                    format!(
                        "must be less than or equal to pod limits of {}",
                        pod_lim.to_quantity()
                    ),
                ));
            }
        }
    }
}

/// The kubelet's safe sysctls (1.32, on a kernel that namespaces all of them): a node admits
/// pods setting these, and no others unless told to.
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// The sysctl name pattern upstream validates against.
const SYSCTL_PATTERN: &str =
    r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";

/// Whether `name` is a valid sysctl name (at most 253 characters, segments of
/// `[a-z0-9]([-_a-z0-9]*[a-z0-9])?` separated by `.` or `/`).
pub fn valid_sysctl_name(name: &str) -> bool {
    name.len() <= 253
        && name.split(['.', '/']).all(|seg| {
            let b = seg.as_bytes();
            let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            !b.is_empty()
                && b.first().is_some_and(edge)
                && b.last().is_some_and(edge)
                && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'_')
        })
}

/// A sysctl name with `.` as separator (a name whose first separator is `/` has the two
/// swapped, as upstream's `NormalizeName`).
pub fn normalize_sysctl_name(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// The Linux namespace a sysctl belongs to, as upstream knows it: `ipc` (System V IPC and
/// POSIX message queues), `net`, or `None` (node-wide).
pub fn sysctl_namespace(name: &str) -> Option<&'static str> {
    let n = normalize_sysctl_name(name);
    if [
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
    ]
    .contains(&n.as_str())
        || ["kernel.shm", "kernel.msg", "fs.mqueue."]
            .iter()
            .any(|p| n.starts_with(p))
    {
        Some("ipc")
    } else if n.starts_with("net.") {
        Some("net")
    } else {
        None
    }
}

/// The pod's sysctls (valid, unique names; none of a namespace the pod shares with the
/// host) and each container's `procMount` (`Default`, or `Unmasked` with `hostUsers: false`).
fn validate_security(errs: &mut Vec<FieldError>, spec: &PodSpec, path: &str) {
    let psc = spec.security_context.as_ref();
    let mut seen = HashSet::new();
    for (i, s) in psc
        .and_then(|p| p.sysctls.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = format!("{path}.securityContext.sysctls[{i}].name");
        if s.name.is_empty() {
            errs.push(FieldError::required(f.clone(), ""));
        } else if !valid_sysctl_name(&s.name) {
            errs.push(FieldError::invalid(
                f.clone(),
                s.name.as_str(),
                format!("must have at most 253 characters and match regex {SYSCTL_PATTERN}"),
            ));
        } else if seen.contains(&s.name) {
            errs.push(FieldError::duplicate(f.clone(), s.name.as_str()));
        }
        match sysctl_namespace(&s.name) {
            Some("net") if spec.host_network == Some(true) => errs.push(FieldError::invalid(
                f,
                s.name.as_str(),
                "may not be specified when 'hostNetwork' is true",
            )),
            Some("ipc") if spec.host_ipc == Some(true) => errs.push(FieldError::invalid(
                f,
                s.name.as_str(),
                "may not be specified when 'hostIPC' is true",
            )),
            _ => {}
        }
        seen.insert(s.name.clone());
    }
    let host_users = spec.host_users != Some(false);
    for (cp, c) in init_and_app_containers(spec, path) {
        let Some(pm) = c
            .security_context
            .as_ref()
            .and_then(|s| s.proc_mount.as_ref())
        else {
            continue;
        };
        let f = format!("{cp}.securityContext.procMount");
        if !["Default", "Unmasked"].contains(&pm.as_str()) {
            errs.push(FieldError::not_supported(
                f,
                pm.as_str(),
                &["Default", "Unmasked"],
            ));
        } else if host_users && pm == "Unmasked" {
            errs.push(FieldError::invalid(
                f,
                pm.as_str(),
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
}

/// Validates a whole pod for create.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&pod.metadata, true, NameRule::Subdomain);
    match &pod.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec")),
        None => errs.push(FieldError::required("spec.containers", "")),
    }
    errs
}

/// The message upstream gives when an update changes an immutable part of a pod spec.
pub const POD_SPEC_IMMUTABLE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Validates a pod update: the new pod must be valid and its spec may differ from the old
/// one only in the fields upstream allows (container images, activeDeadlineSeconds,
/// additional tolerations, removed scheduling gates).
pub fn validate_pod_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = validate_pod(new);
    let (Some(ns), Some(os)) = (&new.spec, &old.spec) else {
        return errs;
    };
    let mut masked = ns.clone();
    for (m, o) in masked.containers.iter_mut().zip(&os.containers) {
        m.image = o.image.clone();
    }
    if let (Some(mi), Some(oi)) = (masked.init_containers.as_mut(), os.init_containers.as_ref()) {
        for (m, o) in mi.iter_mut().zip(oi) {
            m.image = o.image.clone();
        }
    }
    if let Some(new_ads) = ns.active_deadline_seconds {
        match os.active_deadline_seconds {
            Some(old_ads) if new_ads > old_ads => errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                new_ads,
                "must be less than or equal to previous value",
            )),
            _ => {}
        }
        masked.active_deadline_seconds = os.active_deadline_seconds;
    } else if os.active_deadline_seconds.is_some() {
        errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            Value::Null,
            "must not update activeDeadlineSeconds to nil",
        ));
        masked.active_deadline_seconds = os.active_deadline_seconds;
    }
    let old_tol = os.tolerations.clone().unwrap_or_default();
    let new_tol = ns.tolerations.clone().unwrap_or_default();
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        masked.tolerations = os.tolerations.clone();
    }
    // Scheduling gates may only be removed.
    let old_g = os.scheduling_gates.clone().unwrap_or_default();
    let new_g = ns.scheduling_gates.clone().unwrap_or_default();
    if new_g.iter().all(|g| old_g.contains(g)) {
        masked.scheduling_gates = os.scheduling_gates.clone();
    }
    if os.termination_grace_period_seconds.is_some_and(|t| t < 0)
        && ns.termination_grace_period_seconds == Some(1)
    {
        masked.termination_grace_period_seconds = os.termination_grace_period_seconds;
    }
    if &masked != os {
        errs.push(FieldError::forbidden("spec", POD_SPEC_IMMUTABLE));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.field.clone()).collect()
    }

    #[test]
    fn restart_rules_and_container_policies_are_checked() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"restartPolicy": "Never",
            "containers": [{"name": "a", "image": "x", "restartPolicy": "Never",
                "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]}]}}),
        );
        assert!(validate_pod(&p).is_empty(), "{:?}", validate_pod(&p));
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "containers": [{"name": "a", "image": "x",
                "restartPolicyRules": [{"action": "Explode", "exitCodes": {"operator": "Maybe", "values": [1, 1]}}]}]}}),
        );
        assert_eq!(
            fields(&validate_pod(&p)),
            [
                "spec.containers[0].restartPolicy",
                "spec.containers[0].restartPolicyRules[0].action",
                "spec.containers[0].restartPolicyRules[0].exitCodes.operator",
                "spec.containers[0].restartPolicyRules[0].exitCodes.values[1]",
            ]
        );
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "containers": [{"name": "a", "image": "x", "restartPolicy": "Sometimes"}]}}),
        );
        assert_eq!(
            fields(&validate_pod(&p)),
            ["spec.containers[0].restartPolicy"]
        );
    }

    #[test]
    fn restart_all_containers_rules_are_accepted_on_every_kind_of_container_as_upstream() {
        // what a 1.36 API server accepts: the action on a regular container, a sidecar and
        // a regular init container that states its own policy
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {"name": "i", "image": "x", "restartPolicy": "Never", "restartPolicyRules": [
                    {"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [42]}}]},
                {"name": "s", "image": "x", "restartPolicy": "Always", "restartPolicyRules": [
                    {"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [88]}}]}],
            "containers": [{"name": "a", "image": "x", "restartPolicy": "Never", "restartPolicyRules": [
                {"action": "RestartAllContainers", "exitCodes": {"operator": "NotIn", "values": [0]}}]}]}}),
        );
        assert!(validate_pod(&p).is_empty(), "{:?}", validate_pod(&p));
        // and its answers, word for word
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "initContainers": [{"name": "i", "image": "x", "restartPolicyRules": [
                {"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [1]}}]}],
            "containers": [{"name": "a", "image": "x", "restartPolicy": "Never", "restartPolicyRules": [
                {"action": "DoNotRestart", "exitCodes": {"operator": "", "values": [3]}}]}]}}),
        );
        let msgs: Vec<String> = validate_pod(&p).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "spec.initContainers[0].restartPolicy: Required value: must specify restartPolicy when restart rules are used",
                "spec.containers[0].restartPolicyRules[0].action: Unsupported value: \"DoNotRestart\": supported values: \"Restart\", \"RestartAllContainers\"",
                "spec.containers[0].restartPolicyRules[0].exitCodes.operator: Unsupported value: \"\": supported values: \"In\", \"NotIn\"",
            ]
        );
    }

    #[test]
    fn pod_level_resources_are_checked_as_upstream() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "resources": {"requests": {"cpu": "1", "memory": "576Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
            "containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "500m"}}}]}}),
        );
        assert!(validate_pod(&p).is_empty(), "{:?}", validate_pod(&p));
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "resources": {"requests": {"cpu": "1", "memory": "576Mi", "ephemeral-storage": "1Gi"},
                          "limits": {"cpu": "500m", "memory": "1Gi"}},
            "containers": [
                {"name": "a", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "2Gi"}}},
                {"name": "b", "image": "x", "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}}}]}}),
        );
        let msgs: Vec<String> = validate_pod(&p).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "spec.resources.requests[ephemeral-storage]: Unsupported value: \"ephemeral-storage\": supported values: \"cpu\", \"hugepages-\", \"memory\"",
                "spec.resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m",
                "spec.resources.requests[cpu]: Invalid value: \"1\": must be greater than or equal to aggregate container requests of 1500m",
                "spec.resources.requests[memory]: Invalid value: \"576Mi\": must be greater than or equal to aggregate container requests of 6Gi",
                "spec.resources.containers[0][memory].limits: Invalid value: \"2Gi\": must be less than or equal to pod limits of 1Gi",
            ]
        );
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "os": {"name": "windows"}, "resources": {"limits": {"cpu": "1"}},
            "containers": [{"name": "a", "image": "x"}]}}),
        );
        assert_eq!(
            validate_pod(&p)
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>(),
            ["spec.resources: Forbidden: may not be set for a windows pod"]
        );
    }

    #[test]
    fn a_stop_signal_needs_the_pods_os() {
        let mut v = serde_json::json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "containers": [{"name": "a", "image": "x", "lifecycle": {"stopSignal": "SIGUSR1"}}]}});
        let errs = validate_pod(&pod(v.clone()));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.containers[0].lifecycle.stopSignal");
        assert_eq!(
            errs[0].detail,
            "may not be set for containers with empty `spec.os.name`"
        );
        v["spec"]["os"] = serde_json::json!({"name": "linux"});
        assert!(validate_pod(&pod(v.clone())).is_empty());
        v["spec"]["containers"][0]["lifecycle"]["stopSignal"] = "SIGNOPE".into();
        assert_eq!(
            fields(&validate_pod(&pod(v))),
            ["spec.containers[0].lifecycle.stopSignal"]
        );
    }

    #[test]
    fn a_resize_may_change_only_cpu_and_memory_and_keeps_the_qos_class() {
        let with = |req: Value, lim: Value, image: &str| {
            pod(
                serde_json::json!({"metadata": {"name": "p", "namespace": "d"},
                "spec": {"containers": [{"name": "a", "image": image,
                    "resources": {"requests": req, "limits": lim}}]},
                "status": {"qosClass": "Burstable"}}),
            )
        };
        let old = with(
            serde_json::json!({"cpu": "100m", "memory": "32Mi"}),
            serde_json::json!({"cpu": "200m", "memory": "64Mi"}),
            "x",
        );
        let ok = with(
            serde_json::json!({"cpu": "150m", "memory": "48Mi"}),
            serde_json::json!({"cpu": "300m", "memory": "96Mi"}),
            "x",
        );
        assert!(validate_pod_resize(&ok, &old).is_empty());
        let image = with(
            serde_json::json!({"cpu": "150m", "memory": "48Mi"}),
            serde_json::json!({"cpu": "300m", "memory": "96Mi"}),
            "y",
        );
        let errs = validate_pod_resize(&image, &old);
        assert_eq!(errs[0].detail, "only cpu and memory resources are mutable");
        let guaranteed = with(
            serde_json::json!({"cpu": "300m", "memory": "96Mi"}),
            serde_json::json!({"cpu": "300m", "memory": "96Mi"}),
            "x",
        );
        let errs = validate_pod_resize(&guaranteed, &old);
        assert_eq!(
            errs[0].detail,
            "Pod QOS Class may not change as a result of resizing"
        );
        let removed = with(
            serde_json::json!({"cpu": "100m"}),
            serde_json::json!({"cpu": "200m", "memory": "64Mi"}),
            "x",
        );
        assert_eq!(
            fields(&validate_pod_resize(&removed, &old)),
            ["spec.containers[0].resources.requests"]
        );
    }

    #[test]
    fn ephemeral_containers_are_checked_and_may_only_be_added() {
        let base = serde_json::json!({
            "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "app", "image": "x"}]}
        });
        let with = |ecs: Value| {
            let mut v = base.clone();
            v["spec"]["ephemeralContainers"] = ecs;
            pod(v)
        };
        let old = with(serde_json::json!([{"name": "dbg", "image": "busybox"}]));
        assert!(validate_pod_ephemeral_containers_update(&old, &pod(base.clone())).is_empty());
        let bad = with(serde_json::json!([
            {"name": "dbg", "image": "busybox"},
            {"name": "app", "image": "busybox"},
            {"name": "web", "image": "busybox", "ports": [{"containerPort": 80}],
             "resources": {"limits": {"cpu": "1"}}, "targetContainerName": "nope"},
            {"name": "ok", "image": "busybox", "resources": {}, "targetContainerName": "app"}
        ]));
        let msgs: Vec<String> = validate_pod_ephemeral_containers_update(&bad, &old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            msgs,
            [
                "spec.ephemeralContainers[1].name: Duplicate value: \"app\"",
                "spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].resources: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].targetContainerName: Not found: \"nope\"",
            ]
        );
        let removed = pod(base.clone());
        let changed = with(serde_json::json!([{"name": "dbg", "image": "alpine"}]));
        for (new, what) in [(removed, "removed"), (changed, "changed")] {
            let errs = validate_pod_ephemeral_containers_update(&new, &old);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(
                errs[0].to_string(),
                format!(
                    "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be {what}\n"
                )
            );
        }
        // The main resource may not add them.
        let errs = validate_pod_update(&old, &pod(base));
        assert!(errs.iter().any(|e| e.field == "spec"), "{errs:?}");
    }

    #[test]
    fn names_follow_rfc1123() {
        assert!(dns1123_label_errors("web-1").is_empty());
        assert!(!dns1123_label_errors("Bad_Name").is_empty());
        assert!(!dns1123_label_errors("-a").is_empty());
        assert!(!dns1123_label_errors(&"a".repeat(64)).is_empty());
        assert!(dns1123_subdomain_errors("a.b-c.d").is_empty());
        assert!(!dns1123_subdomain_errors("a..b").is_empty());
        assert!(qualified_name_errors("app.kubernetes.io/name").is_empty());
        assert!(!qualified_name_errors("/x").is_empty());
        assert!(label_value_errors("").is_empty());
        assert!(!label_value_errors("a b").is_empty());
    }

    #[test]
    fn invalid_pod_reports_field_paths() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "Bad_Name", "namespace": "default"},
            "spec": {"containers": [
                {"name": "a", "image": "x", "ports": [{"containerPort": 70000}]},
                {"name": "a"},
                {"name": "b", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2, "periodSeconds": -1}}
            ]}
        }));
        let errs = validate_pod(&p);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"metadata.name"), "{fields:?}");
        assert!(fields.contains(&"spec.containers[0].ports[0].containerPort"));
        assert!(fields.contains(&"spec.containers[1].name"));
        assert!(fields.contains(&"spec.containers[1].image"));
        assert!(fields.contains(&"spec.containers[2].livenessProbe.successThreshold"));
        assert!(fields.contains(&"spec.containers[2].livenessProbe.periodSeconds"));
        let img = errs
            .iter()
            .find(|e| e.field == "spec.containers[1].image")
            .unwrap();
        assert_eq!(img.to_string(), "spec.containers[1].image: Required value");
        assert_eq!(img.kind.reason(), "FieldValueRequired");
    }

    #[test]
    fn values_outside_the_supported_sets_are_reported() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "x", "namespace": "d"},
            "spec": {
                "dnsPolicy": "Other",
                "tolerations": [
                    {"key": "k", "operator": "Maybe", "effect": ""},
                    {"operator": "Exists", "effect": "Bad"}
                ],
                "containers": [{
                    "name": "a", "image": "x", "imagePullPolicy": "Sometimes",
                    "terminationMessagePolicy": "File",
                    "ports": [{"containerPort": 80, "protocol": "XTP", "name": "web--1"}],
                    "livenessProbe": {"httpGet": {"port": 80, "scheme": "FTP"}},
                    "lifecycle": {
                        "preStop": {"httpGet": {"path": "/", "port": 80, "scheme": "gopher"}},
                        "postStart": {"httpGet": {"path": "/", "port": 80, "scheme": "HTTPS"}}
                    }
                }]
            }
        }));
        let errs = validate_pod(&p);
        let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        for want in [
            r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#,
            r#"spec.containers[0].ports[0].protocol: Unsupported value: "XTP": supported values: "SCTP", "TCP", "UDP""#,
            r#"spec.containers[0].livenessProbe.httpGet.scheme: Unsupported value: "FTP": supported values: "HTTP", "HTTPS""#,
            r#"spec.containers[0].lifecycle.preStop.httpGet.scheme: Unsupported value: "gopher": supported values: "HTTP", "HTTPS""#,
            r#"spec.dnsPolicy: Unsupported value: "Other": supported values: "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None""#,
            r#"spec.tolerations[0].operator: Unsupported value: "Maybe": supported values: "Equal", "Exists""#,
            r#"spec.tolerations[1].effect: Unsupported value: "Bad": supported values: "NoExecute", "NoSchedule", "PreferNoSchedule""#,
        ] {
            assert!(got.iter().any(|g| g == want), "{want}\nnot in {got:#?}");
        }
        let unsupported = errs
            .iter()
            .filter(|e| e.kind == FieldErrorType::NotSupported)
            .count();
        assert_eq!(
            unsupported, 7,
            "an empty effect and HTTPS are accepted: {got:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.field == "spec.containers[0].ports[0].name"),
            "a port name with -- is not an IANA service name: {got:#?}"
        );
    }

    #[test]
    fn lifecycle_hooks_are_validated_against_the_grace_period() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "x", "namespace": "d"},
            "spec": {
                "terminationGracePeriodSeconds": 10,
                "initContainers": [
                    {"name": "i", "image": "x", "lifecycle": {"preStop": {"sleep": {"seconds": 1}}}}
                ],
                "containers": [
                    {"name": "a", "image": "x", "lifecycle": {"preStop": {"sleep": {"seconds": 1000}}}},
                    {"name": "b", "image": "x", "lifecycle": {"preStop": {"sleep": {"seconds": 10}}, "postStart": {"sleep": {"seconds": 0}}}},
                    {"name": "c", "image": "x", "lifecycle": {"postStart": {"exec": {"command": []}}}},
                    {"name": "d", "image": "x", "lifecycle": {"preStop": {}}},
                    {"name": "e", "image": "x", "lifecycle": {"preStop": {"exec": {"command": ["true"]}, "sleep": {"seconds": 1}}}},
                    {"name": "f", "image": "x", "lifecycle": {"postStart": {"sleep": {"seconds": -1}}}}
                ]
            }
        }));
        let got: Vec<String> = validate_pod(&p).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            [
                "spec.initContainers[0].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always",
                "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 1000: must be non-negative and less than terminationGracePeriodSeconds (10)",
                "spec.containers[2].lifecycle.postStart.exec.command: Required value",
                "spec.containers[3].lifecycle.preStop: Required value: must specify a handler type",
                "spec.containers[4].lifecycle.preStop.sleep: Forbidden: may not specify more than 1 handler type",
                "spec.containers[5].lifecycle.postStart.sleep: Invalid value: -1: must be non-negative and less than terminationGracePeriodSeconds (10)",
            ]
        );
    }

    #[test]
    fn pod_without_containers_is_invalid() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "x", "namespace": "d"}, "spec": {"containers": []}}),
        );
        let errs = validate_pod(&p);
        assert_eq!(aggregate_message(&errs), "spec.containers: Required value");
    }

    #[test]
    fn pod_update_allows_image_only() {
        let old = pod(
            serde_json::json!({"metadata": {"name": "x", "namespace": "d"}, "spec": {"containers": [{"name": "a", "image": "i:1"}]}}),
        );
        let mut new = old.clone();
        new.spec.as_mut().unwrap().containers[0].image = Some("i:2".into());
        assert!(validate_pod_update(&new, &old).is_empty());
        new.spec.as_mut().unwrap().containers[0].args = Some(vec!["x".into()]);
        let errs = validate_pod_update(&new, &old);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec");
        assert_eq!(errs[0].kind, FieldErrorType::Forbidden);
    }

    #[test]
    fn sysctls_and_proc_mount_are_validated_as_upstream() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "hostNetwork": true,
                "securityContext": {"sysctls": [
                    {"name": "kernel.shm_rmid_forced", "value": "1"},
                    {"name": "Bad..name", "value": "1"},
                    {"name": "kernel.shm_rmid_forced", "value": "0"},
                    {"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"},
                ]},
                "containers": [
                    {"name": "a", "image": "x", "securityContext": {"procMount": "Unmasked"}},
                    {"name": "b", "image": "x", "securityContext": {"procMount": "Other"}},
                ],
            },
        }));
        let msgs: Vec<String> = validate_pod(&p).iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                format!("spec.securityContext.sysctls[1].name: Invalid value: \"Bad..name\": must have at most 253 characters and match regex {SYSCTL_PATTERN}"),
                "spec.securityContext.sysctls[2].name: Duplicate value: \"kernel.shm_rmid_forced\"".to_string(),
                "spec.securityContext.sysctls[3].name: Invalid value: \"net.ipv4.ip_local_port_range\": may not be specified when 'hostNetwork' is true".to_string(),
                "spec.containers[0].securityContext.procMount: Invalid value: \"Unmasked\": `hostUsers` must be false to use `Unmasked`".to_string(),
                "spec.containers[1].securityContext.procMount: Unsupported value: \"Other\": supported values: \"Default\", \"Unmasked\"".to_string(),
            ]
        );
        assert!(valid_sysctl_name("net.ipv4.conf.eth0/1.forwarding"));
        assert_eq!(
            normalize_sysctl_name("net/ipv4/conf/eth0.1/forwarding"),
            "net.ipv4.conf.eth0/1.forwarding"
        );
        assert_eq!(sysctl_namespace("kernel/shm_rmid_forced"), Some("ipc"));
        assert_eq!(sysctl_namespace("fs.mqueue.msg_max"), Some("ipc"));
        assert_eq!(sysctl_namespace("vm.swappiness"), None);
    }
}
