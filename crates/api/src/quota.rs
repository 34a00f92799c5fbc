//! Resource quota accounting, shared by the ResourceQuota admission step in the API server
//! and the quota controller (upstream `pkg/quota/v1`, its evaluators and
//! `plugin/pkg/admission/resourcequota`).
//!
//! A quota's `status.hard` names what it tracks; every object kind has an evaluator that
//! says which of those names it charges ([`matching_resources`]) and how much one object
//! uses of each ([`usage`]):
//!
//! - **pods**: `pods` (only pods that are not terminal and not past their deletion grace,
//!   as upstream's `QuotaV1Pod`), `count/pods` (every stored pod), `cpu`/`requests.cpu`,
//!   `memory`/`requests.memory`, `ephemeral-storage`/`requests.ephemeral-storage` from the
//!   pod's effective requests, `limits.*` from its effective limits, `hugepages-*` and
//!   extended resources as `requests.<name>`;
//! - **services**: `services`, `count/services`, `services.nodeports` (a NodePort or
//!   LoadBalancer service's ports), `services.loadbalancers`;
//! - **persistentvolumeclaims**: `persistentvolumeclaims`, `requests.storage`, and both per
//!   storage class (`<class>.storageclass.storage.k8s.io/…`);
//! - **everything else**: `count/<resource>.<group>` (and the legacy names `configmaps`,
//!   `secrets`, `replicationcontrollers`, `resourcequotas`).
//!
//! Scopes (`spec.scopes`, `spec.scopeSelector`) narrow a quota to some pods (`Terminating`,
//! `NotTerminating`, `BestEffort`, `NotBestEffort`, `PriorityClass`,
//! `CrossNamespacePodAffinity`); a scoped quota charges no other kind.
//!
//! Amounts are kept in nano-units with the format of the quantity they came from, and are
//! written back in upstream's canonical form ([`Amount::to_quantity`]), so `used` reads
//! `1536Mi` or `1500m` as `kubectl describe quota` shows upstream.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::quantity::parse_nanos;

const NANO: i128 = 1_000_000_000;

/// One amount of a resource, in nano-units, with the notation it is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    /// The value in nano-units (`"100m"` is 100,000,000).
    pub nanos: i128,
    /// Written with binary suffixes (`Ki`, `Mi`, …) when whole.
    pub binary: bool,
}

impl Amount {
    /// A whole count in decimal notation.
    pub fn count(n: i128) -> Amount {
        Amount {
            nanos: n.saturating_mul(NANO),
            binary: false,
        }
    }

    /// Parses a quantity string; None when it is not one.
    pub fn parse(text: &str) -> Option<Amount> {
        let nanos = parse_nanos(text).ok()?;
        let t = text.trim();
        let binary = t.ends_with('i');
        Some(Amount { nanos, binary })
    }

    /// Upstream's `Quantity.Add`: a zero receiver takes the other's notation.
    fn add(self, other: Amount) -> Amount {
        Amount {
            nanos: self.nanos.saturating_add(other.nanos),
            binary: if self.nanos == 0 {
                other.binary
            } else {
                self.binary
            },
        }
    }

    /// The canonical quantity string (apimachinery's `Quantity.String()`).
    pub fn to_quantity(self) -> String {
        let (sign, n) = if self.nanos < 0 {
            ("-", -self.nanos)
        } else {
            ("", self.nanos)
        };
        if n == 0 {
            return "0".into();
        }
        if self.binary && n % NANO == 0 {
            let whole = n / NANO;
            const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut chosen = None;
            for (i, s) in SUFFIXES.iter().enumerate() {
                let unit = 1i128 << (10 * (i + 1));
                if whole % unit == 0 {
                    chosen = Some((whole / unit, *s));
                }
            }
            return match chosen {
                Some((v, s)) => format!("{sign}{v}{s}"),
                None => format!("{sign}{whole}"),
            };
        }
        const DECIMAL: [(i32, &str); 10] = [
            (18, "E"),
            (15, "P"),
            (12, "T"),
            (9, "G"),
            (6, "M"),
            (3, "k"),
            (0, ""),
            (-3, "m"),
            (-6, "u"),
            (-9, "n"),
        ];
        for (exp, suffix) in DECIMAL {
            let unit = 10i128.pow((exp + 9) as u32);
            if n % unit == 0 {
                return format!("{sign}{}{suffix}", n / unit);
            }
        }
        format!("{sign}{n}n")
    }
}

/// Amounts by resource name.
pub type Usage = BTreeMap<String, Amount>;

/// `quota.Add`: the sum of two usages, per resource.
pub fn add(a: &Usage, b: &Usage) -> Usage {
    let mut out = a.clone();
    for (k, v) in b {
        let e = out.entry(k.clone()).or_insert(Amount {
            nanos: 0,
            binary: v.binary,
        });
        *e = e.add(*v);
    }
    out
}

/// `quota.Subtract`: `a - b` per resource (resources only in `b` go negative).
pub fn subtract(a: &Usage, b: &Usage) -> Usage {
    let neg: Usage = b
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Amount {
                    nanos: -v.nanos,
                    binary: v.binary,
                },
            )
        })
        .collect();
    add(a, &neg)
}

/// `quota.Mask`: only the named resources.
pub fn mask<'a>(u: &Usage, names: impl IntoIterator<Item = &'a String>) -> Usage {
    names
        .into_iter()
        .filter_map(|n| u.get(n).map(|v| (n.clone(), *v)))
        .collect()
}

/// True when every amount is zero.
pub fn is_zero(u: &Usage) -> bool {
    u.values().all(|v| v.nanos == 0)
}

/// Reads a `ResourceList` (`{"cpu": "1", …}`); entries that are not quantities are skipped
/// (validation refuses them before they are stored).
pub fn from_list(list: Option<&Value>) -> Usage {
    list.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    // A quantity may arrive as a JSON number (`cpu: 1` in YAML).
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((k.clone(), Amount::parse(&text)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes a usage as a `ResourceList`.
pub fn to_list(u: &Usage) -> Value {
    Value::Object(
        u.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.to_quantity())))
            .collect::<Map<_, _>>(),
    )
}

/// Upstream's `prettyPrint`: `name=value` pairs sorted by name, comma-separated.
pub fn pretty(u: &Usage) -> String {
    u.iter()
        .map(|(k, v)| format!("{k}={}", v.to_quantity()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `count/<resource>` for the core group, `count/<resource>.<group>` otherwise.
pub fn count_name(plural: &str, group: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The resource and group a `count/…` name charges.
pub fn parse_count_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("count/")?;
    Some(rest.split_once('.').unwrap_or((rest, "")))
}

/// The legacy object-count names of the core group.
fn legacy_count(plural: &str, group: &str) -> Option<&'static str> {
    if !group.is_empty() {
        return None;
    }
    match plural {
        "configmaps" => Some("configmaps"),
        "secrets" => Some("secrets"),
        "replicationcontrollers" => Some("replicationcontrollers"),
        "resourcequotas" => Some("resourcequotas"),
        "services" => Some("services"),
        "persistentvolumeclaims" => Some("persistentvolumeclaims"),
        "pods" => Some("pods"),
        _ => None,
    }
}

/// The kind (resource, group) whose evaluator charges `name`; None for names no evaluator
/// knows.
pub fn kind_of(name: &str) -> Option<(String, String)> {
    if let Some((r, g)) = parse_count_name(name) {
        return Some((r.to_string(), g.to_string()));
    }
    let core = |r: &str| Some((r.to_string(), String::new()));
    if is_pod_resource(name) {
        return core("pods");
    }
    if matches!(
        name,
        "services" | "services.nodeports" | "services.loadbalancers"
    ) {
        return core("services");
    }
    if is_pvc_resource(name) {
        return core("persistentvolumeclaims");
    }
    match name {
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => core(name),
        _ => None,
    }
}

const POD_RESOURCES: [&str; 11] = [
    "pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "count/pods",
];

/// Upstream's `IsExtendedResourceName`: a qualified name outside `kubernetes.io/` that is
/// not a `requests.` name itself.
fn is_extended(name: &str) -> bool {
    name.contains('/')
        && !name.contains("kubernetes.io/")
        && !name.starts_with("requests.")
        && !name.starts_with("count/")
}

fn is_pod_resource(name: &str) -> bool {
    POD_RESOURCES.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
        || name.strip_prefix("requests.").is_some_and(is_extended)
}

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

fn is_pvc_resource(name: &str) -> bool {
    matches!(
        name,
        "persistentvolumeclaims" | "requests.storage" | "count/persistentvolumeclaims"
    ) || name
        .split_once(STORAGE_CLASS_SUFFIX)
        .is_some_and(|(_, r)| r == "persistentvolumeclaims" || r == "requests.storage")
}

/// The names among `hard` that the evaluator of (`plural`, `group`) charges.
pub fn matching_resources<'a>(
    plural: &str,
    group: &str,
    hard: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let own_count = count_name(plural, group);
    hard.into_iter()
        .filter(|n| {
            **n == own_count
                || legacy_count(plural, group) == Some(n.as_str())
                || match (plural, group) {
                    ("pods", "") => is_pod_resource(n),
                    ("services", "") => kind_of(n).is_some_and(|(r, _)| r == "services"),
                    ("persistentvolumeclaims", "") => is_pvc_resource(n),
                    _ => false,
                }
        })
        .cloned()
        .collect()
}

/// What one object of (`plural`, `group`) uses, at `now_unix` seconds (for pods past their
/// deletion grace).
pub fn usage(plural: &str, group: &str, obj: &Value, now_unix: i64) -> Usage {
    match (plural, group) {
        ("pods", "") => pod_usage(obj, now_unix),
        ("services", "") => service_usage(obj),
        ("persistentvolumeclaims", "") => pvc_usage(obj),
        _ => {
            let mut u = Usage::new();
            u.insert(count_name(plural, group), Amount::count(1));
            if let Some(l) = legacy_count(plural, group) {
                u.insert(l.to_string(), Amount::count(1));
            }
            u
        }
    }
}

/// Upstream's `QuotaV1Pod`: terminal pods, and pods past their deletion time plus grace,
/// are not charged for compute resources.
pub fn pod_is_charged(pod: &Value, now_unix: i64) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let deleted = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    if let (Some(t), Some(g)) = (deleted, grace)
        && now_unix > t.as_second().saturating_add(g)
    {
        return false;
    }
    true
}

fn pod_usage(pod: &Value, now_unix: i64) -> Usage {
    let mut u = Usage::new();
    u.insert("count/pods".into(), Amount::count(1));
    if !pod_is_charged(pod, now_unix) {
        return u;
    }
    let requests = pod_resources(pod, "requests");
    let limits = pod_resources(pod, "limits");
    u.extend(compute_usage(&requests, &limits));
    u
}

/// Upstream's `podComputeUsageHelper`.
fn compute_usage(requests: &Usage, limits: &Usage) -> Usage {
    let mut u = Usage::new();
    u.insert("pods".into(), Amount::count(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(v) = requests.get(r) {
            u.insert(r.into(), *v);
            u.insert(format!("requests.{r}"), *v);
        }
        if let Some(v) = limits.get(r) {
            u.insert(format!("limits.{r}"), *v);
        }
    }
    for (r, v) in requests {
        if r.starts_with("hugepages-") {
            u.insert(r.clone(), *v);
            u.insert(format!("requests.{r}"), *v);
        }
        if is_extended(r) {
            u.insert(format!("requests.{r}"), *v);
        }
    }
    u
}

fn max_into(into: &mut Usage, other: &Usage) {
    for (k, v) in other {
        match into.get(k) {
            Some(cur) if cur.nanos >= v.nanos => {}
            _ => {
                into.insert(k.clone(), *v);
            }
        }
    }
}

fn container_resources(c: &Value, which: &str) -> Usage {
    from_list(c.pointer(&format!("/resources/{which}")))
}

/// Upstream's `PodRequests` / `PodLimits`: the containers' aggregate
/// ([`aggregate_container_resources`]), the pod-level resources where set, and the overhead
/// (for limits only where a limit exists).
pub fn pod_resources(pod: &Value, which: &str) -> Usage {
    let Some(spec) = pod.get("spec") else {
        return Usage::new();
    };
    let mut total = aggregate_container_resources(spec, which);
    for (k, v) in from_list(spec.pointer(&format!("/resources/{which}"))) {
        if k == "cpu" || k == "memory" {
            total.insert(k, v);
        }
    }
    for (k, v) in from_list(spec.get("overhead")) {
        if which == "requests" || total.contains_key(&k) {
            let cur = total.get(&k).copied().unwrap_or(Amount {
                nanos: 0,
                binary: v.binary,
            });
            total.insert(k, cur.add(v));
        }
    }
    total
}

/// Upstream's `AggregateContainerRequests` / `AggregateContainerLimits` of a pod spec: app
/// containers and restartable init containers summed, then the largest init container step
/// (with the sidecars started before it).
pub fn aggregate_container_resources(spec: &Value, which: &str) -> Usage {
    let list = |key: &str| {
        spec.get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let mut total = Usage::new();
    for c in list("containers") {
        total = add(&total, &container_resources(c, which));
    }
    let mut restartable = Usage::new();
    let mut init_max = Usage::new();
    for c in list("initContainers") {
        let own = container_resources(c, which);
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            total = add(&total, &own);
            restartable = add(&restartable, &own);
            max_into(&mut init_max, &restartable);
        } else {
            max_into(&mut init_max, &add(&own, &restartable));
        }
    }
    max_into(&mut total, &init_max);
    total
}

fn service_usage(svc: &Value) -> Usage {
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len) as i128;
    let mut u = Usage::new();
    u.insert("count/services".into(), Amount::count(1));
    u.insert("services".into(), Amount::count(1));
    u.insert("services.loadbalancers".into(), Amount::count(0));
    u.insert("services.nodeports".into(), Amount::count(0));
    match svc.pointer("/spec/type").and_then(Value::as_str) {
        Some("NodePort") => {
            u.insert("services.nodeports".into(), Amount::count(ports));
        }
        Some("LoadBalancer") => {
            let allocate = svc
                .pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if allocate {
                u.insert("services.nodeports".into(), Amount::count(ports));
            }
            u.insert("services.loadbalancers".into(), Amount::count(1));
        }
        _ => {}
    }
    u
}

fn pvc_usage(pvc: &Value) -> Usage {
    let mut u = Usage::new();
    u.insert("count/persistentvolumeclaims".into(), Amount::count(1));
    u.insert("persistentvolumeclaims".into(), Amount::count(1));
    let class = pvc
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty());
    if let Some(c) = class {
        u.insert(
            format!("{c}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            Amount::count(1),
        );
    }
    // The larger of the request and what the volume was given (a resize in progress).
    let requested = from_list(pvc.pointer("/spec/resources/requests"));
    let mut storage = requested.get("storage").copied();
    let allocated = from_list(pvc.pointer("/status/allocatedResources"));
    if let Some(a) = allocated.get("storage")
        && storage.is_none_or(|s| a.nanos > s.nanos)
    {
        storage = Some(*a);
    }
    if let Some(s) = storage {
        u.insert("requests.storage".into(), s);
        if let Some(c) = class {
            u.insert(format!("{c}{STORAGE_CLASS_SUFFIX}requests.storage"), s);
        }
    }
    u
}

/// A quota's scope selectors: `spec.scopes` as `Exists` requirements, then
/// `spec.scopeSelector.matchExpressions`.
fn scope_selectors(quota: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    if let Some(scopes) = quota.pointer("/spec/scopes").and_then(Value::as_array) {
        for s in scopes.iter().filter_map(Value::as_str) {
            out.push((s.to_string(), "Exists".to_string(), Vec::new()));
        }
    }
    if let Some(exprs) = quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
    {
        for e in exprs {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            out.push((s("scopeName"), s("operator"), values));
        }
    }
    out
}

fn pod_is_terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|d| d >= 0)
}

/// Upstream's `qos.GetPodQOS(pod) == BestEffort`: no cpu or memory request or limit on any
/// container, nor on the pod.
pub fn pod_is_best_effort(pod: &Value) -> bool {
    let Some(spec) = pod.get("spec") else {
        return true;
    };
    let sets_compute = |r: Option<&Value>| {
        ["requests", "limits"].iter().any(|w| {
            let l = from_list(r.and_then(|r| r.get(*w)));
            l.get("cpu").is_some_and(|a| a.nanos != 0)
                || l.get("memory").is_some_and(|a| a.nanos != 0)
        })
    };
    if sets_compute(spec.get("resources")) {
        return false;
    }
    ["containers", "initContainers"].iter().all(|k| {
        spec.get(*k)
            .and_then(Value::as_array)
            .is_none_or(|cs| cs.iter().all(|c| !sets_compute(c.get("resources"))))
    })
}

fn uses_cross_namespace_affinity(pod: &Value) -> bool {
    let terms = |path: &str, weighted: bool| -> bool {
        pod.pointer(path)
            .and_then(Value::as_array)
            .is_some_and(|ts| {
                ts.iter().any(|t| {
                    let t = if weighted {
                        t.get("podAffinityTerm").unwrap_or(&Value::Null)
                    } else {
                        t
                    };
                    t.get("namespaceSelector").is_some_and(|s| !s.is_null())
                        || t.get("namespaces")
                            .and_then(Value::as_array)
                            .is_some_and(|n| !n.is_empty())
                })
            })
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|a| {
        terms(
            &format!("/spec/affinity/{a}/requiredDuringSchedulingIgnoredDuringExecution"),
            false,
        ) || terms(
            &format!("/spec/affinity/{a}/preferredDuringSchedulingIgnoredDuringExecution"),
            true,
        )
    })
}

fn pod_matches_scope(pod: &Value, scope: &str, op: &str, values: &[String]) -> bool {
    match scope {
        "Terminating" => pod_is_terminating(pod),
        "NotTerminating" => !pod_is_terminating(pod),
        "BestEffort" => pod_is_best_effort(pod),
        "NotBestEffort" => !pod_is_best_effort(pod),
        "PriorityClass" => {
            let class = pod
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or("");
            // A label selector over `{PriorityClass: <class>}`, the key absent without a class.
            match op {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                "In" => !class.is_empty() && values.iter().any(|v| v == class),
                "NotIn" => class.is_empty() || !values.iter().any(|v| v == class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    }
}

/// The names a quota tracks, from its `status.hard` (a quota whose status the controller
/// has not written yet tracks nothing).
pub fn hard_of(quota: &Value) -> Usage {
    from_list(quota.pointer("/status/hard"))
}

/// Upstream's `Matches`: the quota tracks at least one resource the object's evaluator
/// charges, and the object is in every scope of the quota (only pods are ever in a scope).
pub fn quota_matches(quota: &Value, plural: &str, group: &str, obj: &Value) -> bool {
    let hard = hard_of(quota);
    if matching_resources(plural, group, hard.keys()).is_empty() {
        return false;
    }
    scope_selectors(quota).iter().all(|(scope, op, values)| {
        (plural, group) == ("pods", "") && pod_matches_scope(obj, scope, op, values)
    })
}

/// Upstream's pod `Constraints`: when a quota tracks cpu or memory, every container must
/// state that request or limit. Returns the `must specify …` message naming, per missing
/// resource, the containers without it.
pub fn pod_constraints(required: &[String], pod: &Value) -> Option<String> {
    const VALIDATED: [&str; 6] = [
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let required: Vec<&String> = required
        .iter()
        .filter(|r| VALIDATED.contains(&r.as_str()))
        .collect();
    if required.is_empty() {
        return None;
    }
    let mut missing: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for key in ["containers", "initContainers"] {
        for c in pod
            .pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let have = compute_usage(
                &container_resources(c, "requests"),
                &container_resources(c, "limits"),
            );
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            for r in &required {
                if !have.contains_key(r.as_str()) {
                    missing.entry(r.as_str()).or_default().insert(name);
                }
            }
        }
    }
    (!missing.is_empty()).then(|| {
        let parts: Vec<String> = missing
            .iter()
            .map(|(r, names)| {
                format!(
                    "{r} for: {}",
                    names.iter().copied().collect::<Vec<_>>().join(",")
                )
            })
            .collect();
        format!("must specify {}", parts.join("; "))
    })
}

/// The resource names upstream's `IsStandardQuotaResourceName` accepts (besides hugepages).
const STANDARD_QUOTA_RESOURCES: [&str; 19] = [
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "cpu",
    "memory",
    "ephemeral-storage",
];

/// Names whose amount must be whole (upstream's `IsIntegerResourceName`: the object counts
/// and extended resources).
fn is_integer_resource(name: &str) -> bool {
    STANDARD_QUOTA_RESOURCES[..9].contains(&name)
        || name.starts_with("count/")
        || is_extended(name)
        || name.strip_prefix("requests.").is_some_and(is_extended)
}

const SCOPES: [&str; 6] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

/// Upstream's `ValidateResourceQuotaSpec` (names, amounts, scopes), as field errors.
pub fn validate(quota: &Value) -> Vec<crate::validation::FieldError> {
    use crate::validation::FieldError;
    let mut errs = Vec::new();
    let hard = quota
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in &hard {
        let path = format!("spec.hard[{k}]");
        if !k.contains('/')
            && !STANDARD_QUOTA_RESOURCES.contains(&k.as_str())
            && !k.starts_with("hugepages-")
            && !k.starts_with("requests.hugepages-")
        {
            errs.push(FieldError::invalid(
                path.clone(),
                k.as_str(),
                "must be a standard resource for quota",
            ));
        }
        let text = v.as_str().unwrap_or("");
        match Amount::parse(text) {
            None => errs.push(FieldError::invalid(path, text, "must be a valid quantity")),
            Some(a) if a.nanos < 0 => errs.push(FieldError::invalid(
                path,
                text,
                "must be greater than or equal to 0",
            )),
            Some(a) if is_integer_resource(k) && a.nanos % NANO != 0 => {
                errs.push(FieldError::invalid(path, text, "must be an integer"))
            }
            Some(_) => {}
        }
    }
    let scopes: Vec<&str> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let listed = Value::from(scopes.clone());
    for scope in &scopes {
        if !SCOPES.contains(scope) {
            errs.push(FieldError::invalid(
                "spec.scopes",
                listed.clone(),
                "unsupported scope",
            ));
            continue;
        }
        let fits = |r: &str| match *scope {
            "BestEffort" => r == "pods",
            _ => r == "pods" || is_pod_resource(r) && r != "count/pods",
        };
        if hard.keys().any(|k| {
            (STANDARD_QUOTA_RESOURCES.contains(&k.as_str()) || k.contains("hugepages-")) && !fits(k)
        }) {
            errs.push(FieldError::invalid(
                "spec.scopes",
                listed.clone(),
                "unsupported scope applied to resource",
            ));
        }
    }
    for (a, b) in [
        ("BestEffort", "NotBestEffort"),
        ("Terminating", "NotTerminating"),
    ] {
        if scopes.contains(&a) && scopes.contains(&b) {
            errs.push(FieldError::invalid(
                "spec.scopes",
                listed.clone(),
                "conflicting scopes",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> String {
        Amount::parse(s).unwrap().to_quantity()
    }

    #[test]
    fn canonical_quantities_as_apimachinery_writes_them() {
        assert_eq!(q("1000m"), "1");
        assert_eq!(q("1500m"), "1500m");
        assert_eq!(q("0.5"), "500m");
        assert_eq!(q("2000"), "2k");
        assert_eq!(q("1Gi"), "1Gi");
        assert_eq!(q("1024Mi"), "1Gi");
        assert_eq!(q("1.5Ki"), "1536");
        assert_eq!(q("512"), "512");
        assert_eq!(q("0"), "0");
        let sum = Amount::parse("1Gi")
            .unwrap()
            .add(Amount::parse("512Mi").unwrap());
        assert_eq!(sum.to_quantity(), "1536Mi");
        // A zero receiver takes the other's notation.
        assert_eq!(
            Amount::count(0)
                .add(Amount::parse("64Mi").unwrap())
                .to_quantity(),
            "64Mi"
        );
    }

    fn pod(containers: Value, init: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers, "initContainers": init}})
    }

    fn res(cpu: &str, mem: &str) -> Value {
        json!({"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu, "memory": mem}}})
    }

    #[test]
    fn pod_usage_sums_containers_and_takes_the_largest_init_step() {
        let p = pod(
            json!([res("250m", "64Mi"), res("250m", "64Mi")]),
            json!([res("1", "32Mi")]),
        );
        let u = usage("pods", "", &p, 0);
        assert_eq!(
            pretty(&u),
            "count/pods=1,cpu=1,limits.cpu=1,limits.memory=128Mi,memory=128Mi,pods=1,requests.cpu=1,requests.memory=128Mi"
        );
    }

    #[test]
    fn terminal_and_overdue_pods_only_count_as_objects() {
        let mut p = pod(json!([res("1", "1Gi")]), json!([]));
        p["status"] = json!({"phase": "Succeeded"});
        assert_eq!(pretty(&usage("pods", "", &p, 0)), "count/pods=1");
        p["status"] = json!({"phase": "Running"});
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        let t: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(pod_is_charged(&p, t.as_second() + 30));
        assert!(!pod_is_charged(&p, t.as_second() + 31));
    }

    #[test]
    fn services_charge_node_ports_and_load_balancers() {
        let s = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            pretty(&usage("services", "", &s, 0)),
            "count/services=1,services=1,services.loadbalancers=0,services.nodeports=2"
        );
        let lb = json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}});
        assert_eq!(
            pretty(&usage("services", "", &lb, 0)),
            "count/services=1,services=1,services.loadbalancers=1,services.nodeports=0"
        );
    }

    #[test]
    fn pvcs_charge_storage_per_class() {
        let c = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(
            pretty(&usage("persistentvolumeclaims", "", &c, 0)),
            "count/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/requests.storage=1Gi,persistentvolumeclaims=1,requests.storage=1Gi"
        );
    }

    #[test]
    fn generic_kinds_count_objects() {
        let u = usage("configmaps", "", &json!({}), 0);
        assert_eq!(pretty(&u), "configmaps=1,count/configmaps=1");
        let u = usage("deployments", "apps", &json!({}), 0);
        assert_eq!(pretty(&u), "count/deployments.apps=1");
        assert_eq!(
            kind_of("count/deployments.apps"),
            Some(("deployments".into(), "apps".into()))
        );
        assert_eq!(kind_of("requests.cpu"), Some(("pods".into(), "".into())));
        assert_eq!(kind_of("no-such-thing"), None);
    }

    #[test]
    fn matching_needs_status_hard_and_scopes_hold_only_pods() {
        let quota = json!({"spec": {"scopes": ["BestEffort"]}, "status": {"hard": {"pods": "2", "count/configmaps": "1"}}});
        let be = pod(json!([{"name": "c"}]), json!([]));
        let burstable = pod(json!([res("1", "1Gi")]), json!([]));
        assert!(quota_matches(&quota, "pods", "", &be));
        assert!(!quota_matches(&quota, "pods", "", &burstable));
        assert!(!quota_matches(&quota, "configmaps", "", &json!({})));
        let unscoped = json!({"status": {"hard": {"count/configmaps": "1"}}});
        assert!(quota_matches(&unscoped, "configmaps", "", &json!({})));
        assert!(!quota_matches(
            &json!({"spec": {"hard": {"pods": "1"}}}),
            "pods",
            "",
            &be
        ));
        let prio = json!({"spec": {"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}, "status": {"hard": {"pods": "1"}}});
        let mut high = be.clone();
        high["spec"]["priorityClassName"] = json!("high");
        assert!(quota_matches(&prio, "pods", "", &high));
        assert!(!quota_matches(&prio, "pods", "", &be));
    }

    #[test]
    fn cpu_quotas_require_every_container_to_state_it() {
        let p = pod(json!([res("1", "1Gi"), {"name": "bare"}]), json!([]));
        let required = vec!["limits.cpu".to_string(), "pods".to_string()];
        let two = pod(json!([{"name": "a"}, {"name": "b"}]), json!([]));
        let both = vec!["limits.cpu".to_string(), "requests.memory".to_string()];
        assert_eq!(
            pod_constraints(&both, &two).as_deref(),
            Some("must specify limits.cpu for: a,b; requests.memory for: a,b")
        );
        assert_eq!(
            pod_constraints(&required, &p).as_deref(),
            Some("must specify limits.cpu for: bare")
        );
        let ok = pod(json!([res("1", "1Gi")]), json!([]));
        assert_eq!(pod_constraints(&required, &ok), None);
    }

    #[test]
    fn validation_follows_upstream() {
        let errs = |spec: Value| {
            validate(&json!({"spec": spec}))
                .into_iter()
                .map(|e| format!("{}: {}", e.field, e.detail))
                .collect::<Vec<_>>()
        };
        assert!(errs(json!({"hard": {"pods": "2", "requests.cpu": "500m", "count/deployments.apps": "1", "requests.nvidia.com/gpu": "1"}})).is_empty());
        assert_eq!(
            errs(json!({"hard": {"bogus": "1", "pods": "1.5", "memory": "-1"}})),
            [
                "spec.hard[bogus]: must be a standard resource for quota",
                "spec.hard[memory]: must be greater than or equal to 0",
                "spec.hard[pods]: must be an integer",
            ]
        );
        assert_eq!(
            errs(
                json!({"hard": {"services": "1"}, "scopes": ["BestEffort", "NotBestEffort", "Sometimes"]})
            ),
            [
                "spec.scopes: unsupported scope applied to resource",
                "spec.scopes: unsupported scope applied to resource",
                "spec.scopes: unsupported scope",
                "spec.scopes: conflicting scopes",
            ]
        );
    }
}
