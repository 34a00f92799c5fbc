//! Pod Security admission: upstream's `PodSecurity` plugin (`k8s.io/pod-security-admission`,
//! as in Kubernetes 1.32 with its default configuration: no exemptions, every mode
//! `privileged:latest` unless a namespace says otherwise).
//!
//! ## The policy of a namespace
//! Six namespace labels set it: `pod-security.kubernetes.io/{enforce,audit,warn}` name a level
//! (`privileged` < `baseline` < `restricted`) and `...-version` a policy version (`latest` or
//! `v1.N`; [`checks`] knows the checks of each version up to v1.32, newer ones evaluate as
//! v1.32). A missing label keeps the default (`privileged`, `latest`). A label that does not
//! parse makes the namespace create or update invalid (422, `metadata.labels[...]: Invalid
//! value`), unless an update leaves the same error in place; pods in a namespace whose labels
//! are broken are checked with `restricted` for a bad enforce level (fail closed) and
//! `privileged` for a bad audit or warn level (fail open), as upstream.
//!
//! ## Who is checked, and what happens
//! | request | enforce | audit | warn |
//! |---|---|---|---|
//! | pod create | 403 `pods "x" is forbidden: violates PodSecurity "L:V": ...` | annotation | `Warning` header |
//! | pod update that changes an image, a container count or a seccomp annotation | as create | as create | as create |
//! | pod update of anything else, any subresource | - | - | - |
//! | create/update of a pod template (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController, PodTemplate) | - | annotation | `Warning` header |
//! | namespace update that tightens `enforce` | warnings naming the existing pods that would now be refused | | |
//!
//! A request that is refused carries no warnings of its own (upstream skips them). Audit
//! annotations (`pod-security.kubernetes.io/enforce-policy`, `.../audit-violations`) are
//! computed by [`decide`] and go to the request's audit event, the warnings to the response,
//! both through [`crate::warning`].
//!
//! ## Who calls what
//! `ops::Core::create` calls [`Core::admit_pod_security`] after the mutating admission steps
//! (service account, priority, runtime class), so the object checked is the one stored;
//! `ops::Core::update` calls it for updates (not of status) with the old object and the
//! subresource written through (`kubectl scale` of a Deployment is not checked). The
//! checks themselves are pure functions of the pod's metadata and spec ([`checks::evaluate`]).

pub mod checks;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use podvisor_api::validation::FieldError;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::objects;
use crate::ops::Core;
use crate::registry::{
    CRONJOBS, DAEMONSETS, DEPLOYMENTS, JOBS, NAMESPACES, PODS, PODTEMPLATES, REPLICASETS,
    REPLICATIONCONTROLLERS, ResourceKind, STATEFULSETS, Subresource,
};

/// The label prefix of the policy labels (and of the audit annotations).
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
/// The enforce level label.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// The enforce version label.
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
/// The audit level label.
pub const AUDIT_LABEL: &str = "pod-security.kubernetes.io/audit";
/// The audit version label.
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
/// The warn level label.
pub const WARN_LABEL: &str = "pod-security.kubernetes.io/warn";
/// The warn version label.
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// Upstream's bound on the pods checked when a namespace's enforce level tightens.
const NAMESPACE_MAX_PODS_TO_CHECK: usize = 3000;
/// Upstream's time bound for that check.
const NAMESPACE_POD_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A Pod Security Standards level, least strict first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// No restrictions.
    Privileged,
    /// Known privilege escalations are refused.
    Baseline,
    /// Hardening best practice.
    Restricted,
}

impl Level {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    fn parse(s: &str) -> Result<Level, &'static str> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err("must be one of privileged, baseline, restricted"),
        }
    }
}

/// A policy version: `latest` or `v1.N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version(Option<u32>);

impl Version {
    /// `latest`.
    pub const LATEST: Version = Version(None);

    /// `v1.minor`.
    pub fn v1(minor: u32) -> Version {
        Version(Some(minor))
    }

    /// The minor version (`None` for `latest`).
    pub fn minor(self) -> Option<u32> {
        self.0
    }

    fn parse(s: &str) -> Result<Version, &'static str> {
        const ERR: &str = "must be \"latest\" or \"v1.x\"";
        if s == "latest" {
            return Ok(Version::LATEST);
        }
        let digits = s.strip_prefix("v1.").ok_or(ERR)?;
        let canonical = digits == "0" || (!digits.starts_with('0') && !digits.is_empty());
        if !canonical || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ERR);
        }
        // Go's Atoi: a number too large for an int is an error too.
        digits
            .parse::<u32>()
            .ok()
            .filter(|n| i32::try_from(*n).is_ok())
            .map(Version::v1)
            .ok_or(ERR)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("latest"),
            Some(m) => write!(f, "v1.{m}"),
        }
    }
}

/// A level at a version (`restricted:latest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    /// The level.
    pub level: Level,
    /// The version.
    pub version: Version,
}

impl LevelVersion {
    /// `privileged:latest`, the default of every mode.
    pub const PRIVILEGED: LevelVersion = LevelVersion {
        level: Level::Privileged,
        version: Version::LATEST,
    };
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// The policy of a namespace, one level-version per mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Violations are refused.
    pub enforce: LevelVersion,
    /// Violations are recorded in the audit log.
    pub audit: LevelVersion,
    /// Violations are returned as warnings.
    pub warn: LevelVersion,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enforce: LevelVersion::PRIVILEGED,
            audit: LevelVersion::PRIVILEGED,
            warn: LevelVersion::PRIVILEGED,
        }
    }
}

impl Policy {
    /// The policy a namespace's labels set, with the errors of labels that do not parse
    /// (a usable policy is returned either way, as upstream's `PolicyToEvaluate`).
    pub fn from_labels(labels: &Map<String, Value>) -> (Policy, Vec<FieldError>) {
        let mut p = Policy::default();
        let mut errs = Vec::new();
        let label = |key: &str| labels.get(key).map(|v| v.as_str().unwrap_or(""));
        let mut fail = |key: &str, value: &str, why: &str| {
            errs.push(FieldError::invalid(
                format!("metadata.labels[{key}]"),
                value,
                why,
            ));
        };
        // (level label, version label, the level a bad value falls back to)
        let modes = [
            (ENFORCE_LABEL, ENFORCE_VERSION_LABEL, Level::Restricted),
            (AUDIT_LABEL, AUDIT_VERSION_LABEL, Level::Privileged),
            (WARN_LABEL, WARN_VERSION_LABEL, Level::Privileged),
        ];
        for (i, (level_key, version_key, fallback)) in modes.into_iter().enumerate() {
            let mode = match i {
                0 => &mut p.enforce,
                1 => &mut p.audit,
                _ => &mut p.warn,
            };
            if let Some(v) = label(level_key) {
                mode.level = Level::parse(v).unwrap_or_else(|e| {
                    fail(level_key, v, e);
                    fallback
                });
            }
            if let Some(v) = label(version_key) {
                mode.version = Version::parse(v).unwrap_or_else(|e| {
                    fail(version_key, v, e);
                    Version::LATEST
                });
            }
        }
        (p, errs)
    }

    fn of_namespace(ns: &Value) -> (Policy, Vec<FieldError>) {
        match ns.pointer("/metadata/labels").and_then(Value::as_object) {
            Some(labels) => Policy::from_labels(labels),
            None => (Policy::default(), Vec::new()),
        }
    }
}

/// What Pod Security admission decides for one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The refusal (`violates PodSecurity "L:V": ...`), when enforced and violated.
    pub denied: Option<String>,
    /// Warnings for the response.
    pub warnings: Vec<String>,
    /// Audit annotations (keys without the `pod-security.kubernetes.io/` prefix).
    pub audit: BTreeMap<String, String>,
}

/// Upstream's `EvaluatePod`: the enforce level is checked only when `enforce` (pods, not
/// pod templates); warnings are left out of a refused request.
pub fn decide(
    policy: &Policy,
    policy_errors: &[FieldError],
    meta: &Value,
    spec: &Value,
    enforce: bool,
) -> Decision {
    let mut d = Decision::default();
    if !policy_errors.is_empty() {
        d.audit.insert(
            "error".into(),
            format!(
                "Failed to parse policy: {}",
                podvisor_api::validation::aggregate_message(policy_errors)
            ),
        );
    }
    let mut cache: HashMap<LevelVersion, Vec<checks::Forbidden>> = HashMap::new();
    let mut eval = |lv: LevelVersion| {
        cache
            .entry(lv)
            .or_insert_with(|| checks::evaluate(lv, meta, spec))
            .clone()
    };
    if enforce {
        d.audit
            .insert("enforce-policy".into(), policy.enforce.to_string());
        let r = eval(policy.enforce);
        if !r.is_empty() {
            d.denied = Some(format!(
                "violates PodSecurity {:?}: {}",
                policy.enforce.to_string(),
                checks::forbidden_detail(&r)
            ));
        }
    }
    let r = eval(policy.audit);
    if !r.is_empty() {
        d.audit.insert(
            "audit-violations".into(),
            format!(
                "would violate PodSecurity {:?}: {}",
                policy.audit.to_string(),
                checks::forbidden_detail(&r)
            ),
        );
    }
    if d.denied.is_none() {
        let r = eval(policy.warn);
        if !r.is_empty() {
            d.warnings.push(format!(
                "would violate PodSecurity {:?}: {}",
                policy.warn.to_string(),
                checks::forbidden_detail(&r)
            ));
        }
    }
    d
}

/// The metadata and spec Pod Security looks at in an object of `kind`: a pod's own, or its
/// template's; `None` for other kinds and for a template-less object.
pub fn pod_spec_of<'a>(kind: &ResourceKind, obj: &'a Value) -> Option<(&'a Value, &'a Value)> {
    static EMPTY: Value = Value::Null;
    let template = if kind == &PODS {
        Some(obj)
    } else if kind == &PODTEMPLATES {
        obj.get("template")
    } else if kind == &CRONJOBS {
        obj.pointer("/spec/jobTemplate/spec/template")
    } else if [
        &REPLICATIONCONTROLLERS,
        &REPLICASETS,
        &DEPLOYMENTS,
        &STATEFULSETS,
        &DAEMONSETS,
        &JOBS,
    ]
    .contains(&kind)
    {
        obj.pointer("/spec/template")
    } else {
        return None;
    };
    let t = template.filter(|t| !t.is_null())?;
    Some((
        t.get("metadata").unwrap_or(&EMPTY),
        t.get("spec").unwrap_or(&EMPTY),
    ))
}

fn container_name(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

/// Upstream's `isSignificantPodUpdate`: only a changed image, container count or seccomp
/// annotation (the pod fields that may change and that checks look at) is checked again.
pub fn significant_pod_update(new: &Value, old: &Value) -> bool {
    let ann = |p: &Value, k: &str| {
        p.pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let list = |p: &Value, k: &str| -> Vec<Value> {
        p.get("spec")
            .and_then(|s| s.get(k))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let container_changed = |c: &Value, o: &Value| {
        let key = format!(
            "container.seccomp.security.alpha.kubernetes.io/{}",
            container_name(c)
        );
        c.get("image") != o.get("image") || ann(new, &key) != ann(old, &key)
    };
    if ann(new, "seccomp.security.alpha.kubernetes.io/pod")
        != ann(old, "seccomp.security.alpha.kubernetes.io/pod")
    {
        return true;
    }
    for k in ["containers", "initContainers"] {
        let (n, o) = (list(new, k), list(old, k));
        if n.len() != o.len() || n.iter().zip(&o).any(|(c, oc)| container_changed(c, oc)) {
            return true;
        }
    }
    let old_eph = list(old, "ephemeralContainers");
    list(new, "ephemeralContainers").iter().any(|c| {
        match old_eph
            .iter()
            .find(|o| container_name(o) == container_name(c))
        {
            None => true,
            Some(o) => container_changed(c, o),
        }
    })
}

/// Upstream's namespace check: the warnings for the pods of `namespace` that `enforce`
/// would refuse, grouped by reason, at most [`NAMESPACE_MAX_PODS_TO_CHECK`] pods.
pub fn existing_pod_warnings(
    namespace: &str,
    enforce: LevelVersion,
    pods: &[Value],
    total: usize,
) -> Vec<String> {
    let mut warnings = Vec::new();
    // reason → (lexically first pod name, count), in first-seen order
    let mut order: Vec<String> = Vec::new();
    let mut counts: HashMap<String, (String, usize)> = HashMap::new();
    let checked = pods.len();
    for pod in pods {
        let (meta, spec) = (
            pod.get("metadata").unwrap_or(&Value::Null),
            pod.get("spec").unwrap_or(&Value::Null),
        );
        let r = checks::evaluate(enforce, meta, spec);
        if r.is_empty() {
            continue;
        }
        let reason = checks::forbidden_reason(&r);
        let name = objects::name_of(pod).to_string();
        match counts.get_mut(&reason) {
            Some((first, n)) => {
                if name < *first {
                    *first = name;
                }
                *n += 1;
            }
            None => {
                order.push(reason.clone());
                counts.insert(reason, (name, 1));
            }
        }
    }
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !order.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {namespace:?} violate the new PodSecurity enforce level {:?}",
            enforce.to_string()
        ));
    }
    let mut decorated: Vec<String> = order
        .iter()
        .map(|reason| {
            let (first, n) = &counts[reason];
            match n {
                1 => format!("{first}: {reason}"),
                2 => format!("{first} (and 1 other pod): {reason}"),
                n => format!("{first} (and {} other pods): {reason}", n - 1),
            }
        })
        .collect();
    decorated.sort();
    warnings.extend(decorated);
    warnings
}

impl Core {
    /// Pod Security admission of a create (`old` is `None`) or an update of `obj` (after
    /// the mutating admission steps) through subresource `sub`, if any: only pods are
    /// checked through a subresource (their status is never checked: callers leave status
    /// updates out), as upstream.
    pub(crate) async fn admit_pod_security(
        &self,
        kind: &ResourceKind,
        obj: &Value,
        old: Option<&Value>,
        sub: Option<Subresource>,
    ) -> Result<(), ApiError> {
        if sub.is_some() && kind != &PODS {
            return Ok(());
        }
        if kind == &NAMESPACES {
            return self.admit_namespace_policy(obj, old).await;
        }
        let Some((meta, spec)) = pod_spec_of(kind, obj) else {
            return Ok(());
        };
        let is_pod = kind == &PODS;
        if is_pod && old.is_some_and(|old| !significant_pod_update(obj, old)) {
            return Ok(());
        }
        let ns = objects::meta_str(obj, "namespace").unwrap_or("");
        let Some((namespace, _)) = self.storage.get(&NAMESPACES, None, ns).await? else {
            return Ok(());
        };
        let (policy, errs) = Policy::of_namespace(&namespace);
        let quiet = policy.warn.level == Level::Privileged
            && policy.audit.level == Level::Privileged
            && (!is_pod || policy.enforce.level == Level::Privileged);
        if errs.is_empty() && quiet {
            return Ok(());
        }
        let d = decide(&policy, &errs, meta, spec, is_pod);
        for (k, v) in d.audit {
            crate::warning::annotate(format!("{LABEL_PREFIX}{k}"), v);
        }
        for w in d.warnings {
            crate::warning::add(w);
        }
        match d.denied {
            Some(msg) => Err(crate::admission::pod_forbidden(objects::name_of(obj), msg)),
            None => Ok(()),
        }
    }

    /// A namespace's policy labels must parse; tightening `enforce` warns about the pods
    /// already there that the new level would refuse.
    async fn admit_namespace_policy(
        &self,
        ns: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let name = objects::name_of(ns);
        let (policy, errs) = Policy::of_namespace(ns);
        let Some(old) = old else {
            if errs.is_empty() {
                return Ok(());
            }
            return Err(ApiError::invalid(&NAMESPACES, name, &errs));
        };
        let (old_policy, old_errs) = Policy::of_namespace(old);
        let render = |e: &[FieldError]| e.iter().map(ToString::to_string).collect::<Vec<_>>();
        if !errs.is_empty() && render(&errs) != render(&old_errs) {
            return Err(ApiError::invalid(&NAMESPACES, name, &errs));
        }
        let (new, prev) = (policy.enforce, old_policy.enforce);
        if new == prev
            || new.level == Level::Privileged
            || (new.version == prev.version && new.level <= prev.level)
        {
            return Ok(());
        }
        let evaluate = async {
            let page = self
                .storage
                .list(
                    &PODS.list_prefix(Some(name)),
                    NAMESPACE_MAX_PODS_TO_CHECK,
                    None,
                    None,
                    &|_| true,
                )
                .await;
            let warnings = match page {
                Ok(page) => {
                    let total = page.items.len()
                        + usize::try_from(page.remaining.unwrap_or(0)).unwrap_or(0);
                    existing_pod_warnings(name, new, &page.items, total)
                }
                Err(_) => vec![
                    "failed to list pods while checking new PodSecurity enforce level".to_string(),
                ],
            };
            for w in warnings {
                crate::warning::add(w);
            }
        };
        if tokio::time::timeout(NAMESPACE_POD_CHECK_TIMEOUT, evaluate)
            .await
            .is_err()
        {
            crate::warning::add(
                "failed to list pods while checking new PodSecurity enforce level".to_string(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
