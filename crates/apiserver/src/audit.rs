//! The audit log: one `audit.k8s.io/v1` `Event` per request, as JSON lines, after
//! upstream's policy (`--audit-policy-file`, levels `None`, `Metadata`, `Request`,
//! `RequestResponse` treated as `Request`) and its log backend's rotation
//! (`--audit-log-maxsize` megabytes, `--audit-log-maxbackup` files, named
//! `<name>-<UTC time>.<ext>` as upstream's lumberjack names them).
//!
//! Lifecycle of one request's event: the handler answers; then [`AuditLog::record`] decides
//! the level from the policy's first matching rule (no rule: `None`), and writes one line
//! with stage `ResponseComplete` (`ResponseStarted` for watches and followed logs, whose
//! bodies are still streaming). A write that would take the file past its size limit first
//! rotates it. Writing never fails the request: an I/O error is logged, once per error kind.
//!
//! `podvisor up` logs writes (create, update, patch, delete, deletecollection) at
//! `Metadata` to `DATA_DIR/audit.log` unless told otherwise.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use crate::auth::rbac::rules::strings;
use crate::auth::{RequestAttributes, UserInfo};

/// How much of a request an event holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Not logged.
    None,
    /// Who, what, when, the response code.
    Metadata,
    /// Metadata and the request body.
    Request,
}

impl Level {
    fn parse(s: &str) -> Result<Level, String> {
        match s {
            "None" => Ok(Level::None),
            "Metadata" => Ok(Level::Metadata),
            "Request" | "RequestResponse" => Ok(Level::Request),
            other => Err(format!("unknown audit level {other:?}")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
        }
    }
}

/// One rule of an audit policy (upstream's `PolicyRule`; empty lists match everything).
#[derive(Debug, Clone)]
struct Rule {
    level: Level,
    users: Vec<String>,
    user_groups: Vec<String>,
    verbs: Vec<String>,
    resources: Vec<(String, Vec<String>, Vec<String>)>,
    namespaces: Vec<String>,
    non_resource_urls: Vec<String>,
}

impl Rule {
    fn matches(&self, user: &UserInfo, a: &RequestAttributes) -> bool {
        if !self.users.is_empty() && !self.users.contains(&user.name) {
            return false;
        }
        if !self.user_groups.is_empty() && !user.groups.iter().any(|g| self.user_groups.contains(g))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&a.verb) {
            return false;
        }
        if !a.resource_request {
            if !self.resources.is_empty() || !self.namespaces.is_empty() {
                return false;
            }
            return self.non_resource_urls.is_empty()
                || self.non_resource_urls.iter().any(|u| {
                    u == &a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
                });
        }
        if !self.non_resource_urls.is_empty() {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.contains(&a.namespace) {
            return false;
        }
        self.resources.is_empty()
            || self.resources.iter().any(|(group, resources, names)| {
                let combined = a.combined_resource();
                group == &a.group
                    && (resources.is_empty()
                        || resources.iter().any(|r| {
                            r == &combined
                                || r == "*"
                                || (r == &format!("{}/*", a.resource) && !a.subresource.is_empty())
                                || (r.starts_with("*/") && r[2..] == a.subresource)
                        }))
                    && (names.is_empty() || names.contains(&a.name))
            })
    }
}

/// An audit policy (upstream's `audit.k8s.io/v1` `Policy`).
#[derive(Debug, Clone)]
pub struct AuditPolicy {
    rules: Vec<Rule>,
}

impl AuditPolicy {
    /// Writes at `Metadata`, nothing else (the policy of `podvisor up`).
    pub fn writes_at_metadata() -> AuditPolicy {
        AuditPolicy {
            rules: vec![Rule {
                level: Level::Metadata,
                users: Vec::new(),
                user_groups: Vec::new(),
                verbs: ["create", "update", "patch", "delete", "deletecollection"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                resources: Vec::new(),
                namespaces: Vec::new(),
                non_resource_urls: Vec::new(),
            }],
        }
    }

    /// Parses a policy file (YAML or JSON, `kind: Policy`).
    pub fn parse(text: &str) -> Result<AuditPolicy, String> {
        let v = crate::decode::json_or_yaml(text.as_bytes()).map_err(|e| e.to_string())?;
        if v.get("kind").and_then(Value::as_str) != Some("Policy") {
            return Err("an audit policy must be of kind Policy".into());
        }
        let mut rules = Vec::new();
        for r in v
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let level = Level::parse(r.get("level").and_then(Value::as_str).unwrap_or(""))?;
            let resources = r
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|g| {
                    (
                        g.get("group")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        strings(g.get("resources")),
                        strings(g.get("resourceNames")),
                    )
                })
                .collect();
            rules.push(Rule {
                level,
                users: strings(r.get("users")),
                user_groups: strings(r.get("userGroups")),
                verbs: strings(r.get("verbs")),
                resources,
                namespaces: strings(r.get("namespaces")),
                non_resource_urls: strings(r.get("nonResourceURLs")),
            });
        }
        Ok(AuditPolicy { rules })
    }

    /// The level of a request: its first matching rule's, else `None`.
    pub fn level(&self, user: &UserInfo, a: &RequestAttributes) -> Level {
        self.rules
            .iter()
            .find(|r| r.matches(user, a))
            .map(|r| r.level)
            .unwrap_or(Level::None)
    }
}

/// Where and how the audit log is written.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The log file.
    pub path: PathBuf,
    /// The policy.
    pub policy: AuditPolicy,
    /// Rotate past this many bytes (0: never).
    pub max_bytes: u64,
    /// Keep this many rotated files (0: all).
    pub max_backups: usize,
}

/// One request, as the audit log sees it.
#[derive(Debug)]
pub struct AuditRequest<'a> {
    /// Who made it (the policy matches this user).
    pub user: &'a UserInfo,
    /// Whom it acted as (`Impersonate-User`), if anyone.
    pub impersonated: Option<&'a UserInfo>,
    /// What it asked.
    pub attrs: &'a RequestAttributes,
    /// The path and query.
    pub uri: &'a str,
    /// The client's `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// The response code.
    pub code: u16,
    /// When it arrived and when it was answered (RFC 3339, microseconds).
    pub received: String,
    /// When the event is written.
    pub stage_time: String,
    /// Whether the body is still streaming (watch, followed log).
    pub streaming: bool,
    /// The request body, for the `Request` level.
    pub body: Option<&'a [u8]>,
    /// Audit annotations added while the request was handled (Pod Security's).
    pub annotations: std::collections::BTreeMap<String, String>,
}

struct Open {
    file: std::fs::File,
    size: u64,
}

/// The audit log backend.
pub struct AuditLog {
    config: AuditConfig,
    file: Mutex<Option<Open>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.config.path)
            .finish()
    }
}

fn open(path: &Path) -> std::io::Result<Open> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let size = file.metadata()?.len();
    Ok(Open { file, size })
}

impl AuditLog {
    /// Opens (or creates) the log file.
    pub fn open(config: AuditConfig) -> std::io::Result<AuditLog> {
        let f = open(&config.path)?;
        Ok(AuditLog {
            config,
            file: Mutex::new(Some(f)),
        })
    }

    /// Whether some rule logs request bodies.
    pub fn wants_bodies(&self) -> bool {
        self.config
            .policy
            .rules
            .iter()
            .any(|r| r.level >= Level::Request)
    }

    /// The level the policy gives a request.
    pub fn level(&self, user: &UserInfo, a: &RequestAttributes) -> Level {
        self.config.policy.level(user, a)
    }

    /// Writes the event of a request, if the policy logs it.
    pub fn record(&self, r: &AuditRequest<'_>) {
        let level = self.level(r.user, r.attrs);
        if level == Level::None {
            return;
        }
        let line = event(level, r);
        if let Err(e) = self.write(line.as_bytes()) {
            tracing::warn!(path = %self.config.path.display(), error = %e, "audit log write failed");
        }
    }

    fn write(&self, line: &[u8]) -> std::io::Result<()> {
        let mut guard = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))?;
        let max = self.config.max_bytes;
        if let Some(o) = guard.as_ref()
            && max > 0
            && o.size > 0
            && o.size + line.len() as u64 > max
        {
            *guard = None;
            self.rotate()?;
        }
        if guard.is_none() {
            *guard = Some(open(&self.config.path)?);
        }
        let Some(o) = guard.as_mut() else {
            return Ok(());
        };
        o.file.write_all(line)?;
        o.size += line.len() as u64;
        Ok(())
    }

    /// Renames the log to `<stem>-<UTC time>.<ext>` and drops the oldest backups past the
    /// limit.
    fn rotate(&self) -> std::io::Result<()> {
        let path = &self.config.path;
        let (dir, stem, ext) = parts(path);
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H-%M-%S%.3f")
            .to_string();
        let backup = dir.join(format!("{stem}-{now}{ext}"));
        std::fs::rename(path, &backup)?;
        if self.config.max_backups > 0 {
            let mut backups: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{stem}-")) && n.ends_with(&ext))
                })
                .collect();
            backups.sort();
            let excess = backups.len().saturating_sub(self.config.max_backups);
            for old in &backups[..excess] {
                std::fs::remove_file(old)?;
            }
        }
        Ok(())
    }
}

fn parts(path: &Path) -> (PathBuf, String, String) {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("audit")
        .to_string();
    let ext = path
        .extension()
        .and_then(|s| s.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    (dir, stem, ext)
}

/// A timestamp as audit events carry them (RFC 3339 in UTC, microseconds).
pub fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The event line (with its newline).
fn event(level: Level, r: &AuditRequest<'_>) -> String {
    let a = r.attrs;
    let user_json = |u: &UserInfo| {
        let mut user = json!({"username": u.name, "groups": u.groups});
        if !u.uid.is_empty() {
            user["uid"] = u.uid.clone().into();
        }
        if !u.extra.is_empty() {
            user["extra"] = json!(u.extra);
        }
        user
    };
    let user = user_json(r.user);
    let mut e = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level.name(),
        "auditID": uuid::Uuid::new_v4().to_string(),
        "stage": if r.streaming { "ResponseStarted" } else { "ResponseComplete" },
        "requestURI": r.uri,
        "verb": a.verb,
        "user": user,
        "responseStatus": {"metadata": {}, "code": r.code},
        "requestReceivedTimestamp": r.received,
        "stageTimestamp": r.stage_time,
    });
    if let Some(acting) = r.impersonated {
        e["impersonatedUser"] = user_json(acting);
    }
    if let Some(ua) = r.user_agent {
        e["userAgent"] = ua.into();
    }
    if a.resource_request {
        let mut o = Map::new();
        o.insert("resource".into(), a.resource.clone().into());
        for (k, v) in [
            ("namespace", &a.namespace),
            ("name", &a.name),
            ("apiGroup", &a.group),
            ("apiVersion", &a.version),
            ("subresource", &a.subresource),
        ] {
            if !v.is_empty() {
                o.insert(k.into(), v.clone().into());
            }
        }
        e["objectRef"] = Value::Object(o);
    }
    if !r.annotations.is_empty() {
        e["annotations"] = json!(r.annotations);
    }
    if level >= Level::Request
        && let Some(body) = r.body
        && let Ok(v) = serde_json::from_slice::<Value>(body)
    {
        e["requestObject"] = v;
    }
    let mut line = e.to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(user: &'a UserInfo, attrs: &'a RequestAttributes) -> AuditRequest<'a> {
        AuditRequest {
            user,
            impersonated: None,
            attrs,
            uri: "/api/v1/namespaces/d/pods",
            user_agent: Some("kubectl/v1.32.0"),
            code: 201,
            received: "2026-12-07T15:00:00.000001Z".into(),
            stage_time: "2026-12-07T15:00:00.000002Z".into(),
            streaming: false,
            body: Some(br#"{"kind":"Pod"}"#),
            annotations: Default::default(),
        }
    }

    #[test]
    fn the_policy_picks_the_first_matching_rule() {
        let p = AuditPolicy::parse(
            r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  users: ["system:kube-proxy"]
- level: Request
  resources: [{group: "", resources: ["pods", "pods/log"]}]
  namespaces: [d]
- level: Metadata
  verbs: [create, delete]
"#,
        )
        .unwrap();
        let alice = UserInfo::new("alice", "", vec![]);
        let proxy = UserInfo::new("system:kube-proxy", "", vec![]);
        let pods = RequestAttributes::resource("create", "", "pods", "", "d", "");
        assert_eq!(p.level(&alice, &pods), Level::Request);
        assert_eq!(p.level(&proxy, &pods), Level::None);
        let cm = RequestAttributes::resource("create", "", "configmaps", "", "d", "x");
        assert_eq!(p.level(&alice, &cm), Level::Metadata);
        let get = RequestAttributes::resource("get", "", "configmaps", "", "d", "x");
        assert_eq!(p.level(&alice, &get), Level::None);
        assert!(AuditPolicy::parse("kind: Policy\nrules: [{level: Loud}]").is_err());
    }

    #[test]
    fn events_are_json_lines_and_the_file_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(AuditConfig {
            path: path.clone(),
            policy: AuditPolicy::writes_at_metadata(),
            max_bytes: 2_000,
            max_backups: 2,
        })
        .unwrap();
        let alice = UserInfo::new("alice", "u1", vec!["system:authenticated".into()]);
        let create = RequestAttributes {
            version: "v1".into(),
            ..RequestAttributes::resource("create", "", "pods", "", "d", "p")
        };
        let get = RequestAttributes::resource("get", "", "pods", "", "d", "p");
        log.record(&req(&alice, &get));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "",
            "reads are not logged"
        );
        log.record(&req(&alice, &create));
        let line = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(v["kind"], "Event");
        assert_eq!(v["level"], "Metadata");
        assert_eq!(v["stage"], "ResponseComplete");
        assert_eq!(v["verb"], "create");
        assert_eq!(
            v["user"],
            json!({"username": "alice", "uid": "u1", "groups": ["system:authenticated"]})
        );
        assert_eq!(
            v["objectRef"],
            json!({"resource": "pods", "namespace": "d", "name": "p", "apiVersion": "v1"})
        );
        assert_eq!(v["responseStatus"]["code"], 201);
        assert!(v.get("requestObject").is_none(), "Metadata has no body");
        for _ in 0..40 {
            log.record(&req(&alice, &create));
        }
        let backups: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("audit-"))
            .collect();
        assert_eq!(backups.len(), 2, "backups kept");
        assert!(std::fs::metadata(&path).unwrap().len() <= 2_000);
    }
}
