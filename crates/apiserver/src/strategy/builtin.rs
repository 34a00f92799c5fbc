//! Defaulting and validation of the built-in kinds served without hand-written typed
//! code (Job, CronJob, DaemonSet, ReplicationController, volumes, PriorityClass, ...),
//! transcribing upstream's `SetDefaults_<Kind>` and the checks of `Validate<Kind>` that
//! clients meet most. Everything here is pure.

use podvisor_api::defaults;
use podvisor_api::validation::{self as v, FieldError};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::ResourceKind;

/// JSON pointers of the pod templates of a kind (`/spec/template` for workloads).
fn pod_templates(kind: &ResourceKind) -> &'static [&'static str] {
    match (kind.group, kind.kind) {
        ("batch", "Job") | ("apps", "DaemonSet") | ("", "ReplicationController") => {
            &["/spec/template"]
        }
        ("batch", "CronJob") => &["/spec/jobTemplate/spec/template"],
        ("", "PodTemplate") => &["/template"],
        _ => &[],
    }
}

/// Whether [`default_object`] has defaults for `kind`.
pub(super) fn has_defaults(kind: &ResourceKind) -> bool {
    !pod_templates(kind).is_empty()
        || matches!(
            (kind.group, kind.kind),
            (
                "",
                "PersistentVolume" | "PersistentVolumeClaim" | "LimitRange"
            ) | ("autoscaling", "HorizontalPodAutoscaler")
                | ("networking.k8s.io", "NetworkPolicy")
                | ("scheduling.k8s.io", "PriorityClass")
                | ("storage.k8s.io", "StorageClass" | "CSIDriver")
        )
}

/// Sets `obj[ptr]` to `value` when missing or null (parents are created as objects).
fn set_default(obj: &mut Value, ptr: &str, value: Value) {
    let mut cur = obj;
    let mut parts = ptr.split('/').skip(1).peekable();
    while let Some(p) = parts.next() {
        let p = p.replace("~1", "/").replace("~0", "~");
        let p = p.as_str();
        let Some(m) = cur.as_object_mut() else { return };
        if parts.peek().is_none() {
            if m.get(p).is_none_or(Value::is_null) {
                m.insert(p.to_string(), value);
            }
            return;
        }
        let next = m.entry(p.to_string()).or_insert_with(|| json!({}));
        if next.is_null() {
            *next = json!({});
        }
        cur = next;
    }
}

fn default_pod_template(obj: &mut Value, ptr: &str) {
    let Some(spec) = obj.pointer_mut(&format!("{ptr}/spec")) else {
        return;
    };
    if let Ok(mut ps) = serde_json::from_value::<k8s_openapi::api::core::v1::PodSpec>(spec.clone())
    {
        defaults::default_pod_spec(&mut ps);
        if let Ok(v) = serde_json::to_value(&ps) {
            *spec = v;
        }
    }
}

/// Applies upstream's defaults for `kind` (and on create, Job's generated selector).
pub(super) fn default_object(kind: &ResourceKind, o: &mut Value, create: bool) {
    for t in pod_templates(kind) {
        default_pod_template(o, t);
    }
    match (kind.group, kind.kind) {
        ("batch", "Job") => default_job(o, create),
        ("batch", "CronJob") => {
            set_default(o, "/spec/concurrencyPolicy", json!("Allow"));
            set_default(o, "/spec/suspend", json!(false));
            set_default(o, "/spec/successfulJobsHistoryLimit", json!(3));
            set_default(o, "/spec/failedJobsHistoryLimit", json!(1));
        }
        ("apps", "DaemonSet") => {
            set_default(o, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if o.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
                set_default(
                    o,
                    "/spec/updateStrategy/rollingUpdate/maxUnavailable",
                    json!(1),
                );
                set_default(o, "/spec/updateStrategy/rollingUpdate/maxSurge", json!(0));
            }
            set_default(o, "/spec/revisionHistoryLimit", json!(10));
        }
        ("", "ReplicationController") => {
            let labels = o.pointer("/spec/template/metadata/labels").cloned();
            if let Some(l) = labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
                let empty =
                    |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(|m| m.is_empty());
                if empty(o.pointer("/spec/selector")) {
                    o["spec"]["selector"] = l.clone();
                }
                if empty(o.pointer("/metadata/labels")) {
                    crate::objects::set_meta(o, "labels", l);
                }
            }
            set_default(o, "/spec/replicas", json!(1));
        }
        ("", "PersistentVolume") => {
            set_default(o, "/spec/persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(o, "/spec/volumeMode", json!("Filesystem"));
        }
        ("", "PersistentVolumeClaim") => set_default(o, "/spec/volumeMode", json!("Filesystem")),
        ("", "LimitRange") => podvisor_api::limitrange::default_limit_range(o),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            set_default(o, "/spec/minReplicas", json!(1));
            if o.pointer("/spec/metrics")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                o["spec"]["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}}]);
            }
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            if o.pointer("/spec/policyTypes")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
                && o.get("spec").is_some_and(Value::is_object)
            {
                let mut types = vec![json!("Ingress")];
                if o.pointer("/spec/egress")
                    .and_then(Value::as_array)
                    .is_some_and(|e| !e.is_empty())
                {
                    types.push(json!("Egress"));
                }
                o["spec"]["policyTypes"] = Value::from(types);
            }
            for dir in ["ingress", "egress"] {
                let rules = o
                    .pointer_mut(&format!("/spec/{dir}"))
                    .and_then(Value::as_array_mut);
                for rule in rules.into_iter().flatten() {
                    let ports = rule.get_mut("ports").and_then(Value::as_array_mut);
                    for p in ports.into_iter().flatten() {
                        set_default(p, "/protocol", json!("TCP"));
                    }
                }
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set_default(o, "/preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("storage.k8s.io", "StorageClass") => {
            set_default(o, "/reclaimPolicy", json!("Delete"));
            set_default(o, "/volumeBindingMode", json!("Immediate"));
        }
        ("storage.k8s.io", "CSIDriver") => {
            for (ptr, v) in [
                ("/spec/attachRequired", json!(true)),
                ("/spec/podInfoOnMount", json!(false)),
                ("/spec/storageCapacity", json!(false)),
                ("/spec/fsGroupPolicy", json!("ReadWriteOnceWithFSType")),
                ("/spec/requiresRepublish", json!(false)),
                ("/spec/seLinuxMount", json!(false)),
                ("/spec/volumeLifecycleModes", json!(["Persistent"])),
            ] {
                set_default(o, ptr, v);
            }
        }
        _ => {}
    }
}

/// `SetDefaults_Job`, and on create the selector upstream generates from the Job's uid
/// unless `spec.manualSelector` is true.
fn default_job(o: &mut Value, create: bool) {
    let spec_has = |o: &Value, f: &str| {
        o.pointer(&format!("/spec/{f}"))
            .is_some_and(|v| !v.is_null())
    };
    if !spec_has(o, "completions") && !spec_has(o, "parallelism") {
        set_default(o, "/spec/completions", json!(1));
    }
    set_default(o, "/spec/parallelism", json!(1));
    let backoff = if spec_has(o, "backoffLimitPerIndex") {
        i64::from(i32::MAX)
    } else {
        6
    };
    set_default(o, "/spec/backoffLimit", json!(backoff));
    set_default(o, "/spec/completionMode", json!("NonIndexed"));
    set_default(o, "/spec/suspend", json!(false));
    let replacement = if spec_has(o, "podFailurePolicy") {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_default(o, "/spec/podReplacementPolicy", json!(replacement));
    let template_labels = o.pointer("/spec/template/metadata/labels").cloned();
    if let Some(l) = template_labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        && o.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
    {
        crate::objects::set_meta(o, "labels", l);
    }
    let manual = o.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
    if !create || manual {
        return;
    }
    let uid = crate::objects::meta_str(o, "uid").unwrap_or("").to_string();
    let name = crate::objects::name_of(o).to_string();
    if uid.is_empty() {
        return;
    }
    if o.pointer("/spec/selector").is_none_or(Value::is_null) {
        o["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
    for (k, val) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        set_default(
            o,
            &format!("/spec/template/metadata/labels/{}", k.replace('/', "~1")),
            json!(val),
        );
    }
}

fn typed_spec(
    kind: &ResourceKind,
    v: &Value,
) -> Result<k8s_openapi::api::core::v1::PodSpec, ApiError> {
    serde_json::from_value(v.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            kind.kind, kind.version, kind.kind
        ))
    })
}

/// A required string field: missing or empty is `Required value`.
fn require(o: &Value, ptr: &str, field: &str, errs: &mut Vec<FieldError>) {
    if o.pointer(ptr)
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        errs.push(FieldError::required(field, ""));
    }
}

fn non_negative(o: &Value, ptr: &str, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = o.pointer(ptr).and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            field,
            n,
            "must be greater than or equal to 0",
        ));
    }
}

/// Checks a pod template at `ptr` (field path `path`): its spec, and the restart
/// policies the kind allows.
fn validate_template(
    kind: &ResourceKind,
    o: &Value,
    ptr: &str,
    path: &str,
    restart: &[&str],
    errs: &mut Vec<FieldError>,
) -> Result<(), ApiError> {
    let Some(spec) = o.pointer(&format!("{ptr}/spec")) else {
        errs.push(FieldError::required(format!("{path}.spec.containers"), ""));
        return Ok(());
    };
    let ps = typed_spec(kind, spec)?;
    errs.extend(v::validate_pod_spec(&ps, &format!("{path}.spec")));
    let rp = ps.restart_policy.as_deref().unwrap_or("");
    if !restart.contains(&rp) {
        errs.push(FieldError::not_supported(
            format!("{path}.spec.restartPolicy"),
            rp,
            restart,
        ));
    }
    Ok(())
}

/// Kind-specific checks beyond object metadata.
pub(super) fn validate(kind: &ResourceKind, o: &Value) -> Result<Vec<FieldError>, ApiError> {
    let mut errs = Vec::new();
    match (kind.group, kind.kind) {
        ("batch", "Job") => {
            for f in ["parallelism", "completions", "backoffLimit"] {
                non_negative(o, &format!("/spec/{f}"), &format!("spec.{f}"), &mut errs);
            }
            validate_selector_matches(o, "/spec", "spec", &mut errs);
            validate_template(
                kind,
                o,
                "/spec/template",
                "spec.template",
                &["OnFailure", "Never"],
                &mut errs,
            )?;
        }
        ("batch", "CronJob") => {
            require(o, "/spec/schedule", "spec.schedule", &mut errs);
            validate_template(
                kind,
                o,
                "/spec/jobTemplate/spec/template",
                "spec.jobTemplate.spec.template",
                &["OnFailure", "Never"],
                &mut errs,
            )?;
        }
        ("apps", "Deployment") => validate_deployment_strategy(o, &mut errs),
        ("policy", "PodDisruptionBudget") => validate_pdb(o, &mut errs),
        ("apps", "DaemonSet") => {
            validate_daemonset_rolling_update(o, &mut errs);
            let rp = o
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(Value::as_str);
            if let Some(rp) = rp.filter(|rp| *rp != "Always") {
                errs.push(FieldError::not_supported(
                    "spec.template.spec.restartPolicy",
                    rp,
                    &["Always"],
                ));
            }
        }
        ("", "ReplicationController") => {
            non_negative(o, "/spec/replicas", "spec.replicas", &mut errs);
            let sel = o.pointer("/spec/selector").and_then(Value::as_object);
            match sel.filter(|m| !m.is_empty()) {
                None => errs.push(FieldError::required("spec.selector", "")),
                Some(sel) => {
                    let labels =
                        crate::objects::labels(o.pointer("/spec/template").unwrap_or(&Value::Null));
                    let matches = sel
                        .iter()
                        .all(|(k, val)| labels.get(k).map(String::as_str) == val.as_str());
                    if !matches {
                        errs.push(FieldError::invalid(
                            "spec.template.metadata.labels",
                            serde_json::to_value(&labels).unwrap_or_default(),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            }
            validate_template(
                kind,
                o,
                "/spec/template",
                "spec.template",
                &["Always"],
                &mut errs,
            )?;
        }
        ("", "PodTemplate") => {
            let Some(spec) = o.pointer("/template/spec") else {
                errs.push(FieldError::required("template.spec.containers", ""));
                return Ok(errs);
            };
            let ps = typed_spec(kind, spec)?;
            errs.extend(v::validate_pod_spec(&ps, "template.spec"));
        }
        ("", "PersistentVolume") => {
            if o.pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                errs.push(FieldError::required("spec.accessModes", ""));
            }
            if o.pointer("/spec/capacity/storage").is_none() {
                errs.push(FieldError::required("spec.capacity", ""));
            }
        }
        ("", "PersistentVolumeClaim") => {
            if o.pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                errs.push(FieldError::required(
                    "spec.accessModes",
                    "at least 1 access mode is required",
                ));
            }
            if o.pointer("/spec/resources/requests/storage").is_none() {
                errs.push(FieldError::required("spec.resources[storage]", ""));
            }
        }
        ("node.k8s.io", "RuntimeClass") => {
            let h = o.get("handler").and_then(Value::as_str).unwrap_or("");
            if h.is_empty() {
                errs.push(FieldError::required("handler", ""));
            } else {
                for m in v::dns1123_label_errors(h) {
                    errs.push(FieldError::invalid("handler", h, m));
                }
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => validate_priority_class(o, &mut errs),
        ("", "ResourceQuota") => errs.extend(podvisor_api::quota::validate(o)),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            errs.extend(crate::crd::validate_crd(o))
        }
        ("networking.k8s.io", "IngressClass") => {
            require(o, "/spec/controller", "spec.controller", &mut errs)
        }
        ("networking.k8s.io", "Ingress") => {
            let rules = o.pointer("/spec/rules").and_then(Value::as_array);
            for (i, r) in rules.into_iter().flatten().enumerate() {
                let paths = r.pointer("/http/paths").and_then(Value::as_array);
                for (j, p) in paths.into_iter().flatten().enumerate() {
                    if p.get("pathType").and_then(Value::as_str).is_none() {
                        errs.push(FieldError::required(
                            format!("spec.rules[{i}].http.paths[{j}].pathType"),
                            "pathType must be specified",
                        ));
                    }
                }
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            require(o, "/roleRef/name", "roleRef.name", &mut errs)
        }
        _ => {}
    }
    Ok(errs)
}

fn validate_selector_matches(o: &Value, spec: &str, path: &str, errs: &mut Vec<FieldError>) {
    let Some(sel) = o
        .pointer(&format!("{spec}/selector"))
        .filter(|s| !s.is_null())
    else {
        return;
    };
    let parsed = serde_json::from_value(sel.clone())
        .map_err(|e| e.to_string())
        .and_then(|m| podvisor_api::LabelSelector::from_meta(&m).map_err(|e| e.to_string()));
    match parsed {
        Ok(s) => {
            let labels = crate::objects::labels(
                o.pointer(&format!("{spec}/template"))
                    .unwrap_or(&Value::Null),
            );
            if !s.matches(&labels) {
                errs.push(FieldError::invalid(
                    format!("{path}.template.metadata.labels"),
                    serde_json::to_value(&labels).unwrap_or_default(),
                    "`selector` does not match template `labels`",
                ));
            }
        }
        Err(e) => errs.push(FieldError::invalid(
            format!("{path}.selector"),
            sel.clone(),
            e,
        )),
    }
}

/// upstream's `IsValidPercent` message.
const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// An int-or-percent field at `ptr`, checked as upstream's `ValidatePositiveIntOrPercent`
/// and, with `at_most_100`, `IsNotMoreThan100Percent`. Returns its value (a percent counts
/// as its number) when it is set and valid.
fn int_or_percent(
    o: &Value,
    ptr: &str,
    field: &str,
    at_most_100: bool,
    errs: &mut Vec<FieldError>,
) -> Option<i64> {
    let v = o.pointer(ptr).filter(|v| !v.is_null())?;
    let (n, percent) = match v {
        Value::Number(n) => match n.as_i64() {
            Some(n) if n >= 0 => (n, false),
            _ => {
                errs.push(FieldError::invalid(
                    field,
                    v.clone(),
                    "must be greater than or equal to 0",
                ));
                return None;
            }
        },
        Value::String(s) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match digits.and_then(|d| d.parse::<i64>().ok()) {
                Some(n) => (n, true),
                None => {
                    errs.push(FieldError::invalid(field, v.clone(), PERCENT_MSG));
                    return None;
                }
            }
        }
        _ => {
            errs.push(FieldError::invalid(
                field,
                v.clone(),
                "must be an integer or percentage (e.g '5%')",
            ));
            return None;
        }
    };
    if at_most_100 && percent && n > 100 {
        errs.push(FieldError::invalid(
            field,
            v.clone(),
            "must not be greater than 100%",
        ));
    }
    Some(n)
}

/// `maxUnavailable` (at most 100%) and `maxSurge` (at most 100% with `surge_capped`) of the
/// rolling-update block at `ptr` (field path `field`).
fn rolling_bounds(
    o: &Value,
    ptr: &str,
    field: &str,
    surge_capped: bool,
    errs: &mut Vec<FieldError>,
) -> (Option<i64>, Option<i64>) {
    let mut one = |name: &str, capped: bool| {
        int_or_percent(
            o,
            &format!("{ptr}/{name}"),
            &format!("{field}.{name}"),
            capped,
            errs,
        )
    };
    let unavailable = one("maxUnavailable", true);
    (unavailable, one("maxSurge", surge_capped))
}

/// upstream's `ValidateDeploymentStrategy` and `ValidateRollingUpdateDeployment`.
fn validate_deployment_strategy(o: &Value, errs: &mut Vec<FieldError>) {
    const RU: &str = "/spec/strategy/rollingUpdate";
    const F: &str = "spec.strategy.rollingUpdate";
    let rolling = o.pointer(RU).filter(|v| !v.is_null());
    if o.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate") {
        if rolling.is_some() {
            errs.push(FieldError::forbidden(
                F,
                "may not be specified when strategy `type` is 'Recreate'",
            ));
        }
        return;
    }
    if rolling.is_none() {
        return;
    }
    let (unavailable, surge) = rolling_bounds(o, RU, F, false, errs);
    if unavailable.unwrap_or(0) == 0 && surge.unwrap_or(0) == 0 && unavailable.is_some() {
        errs.push(FieldError::invalid(
            format!("{F}.maxUnavailable"),
            o.pointer(&format!("{RU}/maxUnavailable"))
                .cloned()
                .unwrap_or(Value::Null),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

/// upstream's `ValidateRollingUpdateDaemonSet`.
fn validate_daemonset_rolling_update(o: &Value, errs: &mut Vec<FieldError>) {
    const RU: &str = "/spec/updateStrategy/rollingUpdate";
    const F: &str = "spec.updateStrategy.rollingUpdate";
    if o.pointer(RU).is_none_or(Value::is_null)
        || o.pointer("/spec/updateStrategy/type")
            .and_then(Value::as_str)
            == Some("OnDelete")
    {
        return;
    }
    let (unavailable, surge) = rolling_bounds(o, RU, F, true, errs);
    match (unavailable.unwrap_or(0) != 0, surge.unwrap_or(0) != 0) {
        (true, true) => errs.push(FieldError::invalid(
            format!("{F}.maxSurge"),
            o.pointer(&format!("{RU}/maxSurge"))
                .cloned()
                .unwrap_or(Value::Null),
            "may not be set when maxUnavailable is non-zero",
        )),
        (false, false) => errs.push(FieldError::required(
            format!("{F}.maxUnavailable"),
            "cannot be 0 when maxSurge is 0",
        )),
        _ => {}
    }
}

/// upstream's `ValidatePodDisruptionBudgetSpec`.
fn validate_pdb(o: &Value, errs: &mut Vec<FieldError>) {
    let spec = o.get("spec").cloned().unwrap_or(Value::Null);
    let set = |f: &str| spec.get(f).is_some_and(|v| !v.is_null());
    if set("minAvailable") && set("maxUnavailable") {
        errs.push(FieldError::invalid(
            "spec",
            spec.clone(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    int_or_percent(o, "/spec/minAvailable", "spec.minAvailable", true, errs);
    int_or_percent(o, "/spec/maxUnavailable", "spec.maxUnavailable", true, errs);
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
        let parsed = serde_json::from_value(sel.clone())
            .map_err(|e| e.to_string())
            .and_then(|m| podvisor_api::LabelSelector::from_meta(&m).map_err(|e| e.to_string()));
        if let Err(e) = parsed {
            errs.push(FieldError::invalid("spec.selector", sel.clone(), e));
        }
    }
    if let Some(p) = spec
        .get("unhealthyPodEvictionPolicy")
        .filter(|p| !p.is_null())
    {
        const POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];
        if !p.as_str().is_some_and(|p| POLICIES.contains(&p)) {
            errs.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                p.clone(),
                POLICIES,
            ));
        }
    }
}

/// Upstream's system priority classes: (name, value).
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// The highest priority a user-defined class may have.
const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

fn validate_priority_class(o: &Value, errs: &mut Vec<FieldError>) {
    let name = crate::objects::name_of(o);
    let value = o.get("value").and_then(Value::as_i64).unwrap_or(0);
    let global = o
        .get("globalDefault")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if name.starts_with("system-") {
        let known = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name);
        let err = match known {
            None => Some(format!("{name:?} is not a known system priority class")),
            Some((_, v)) if *v != value => {
                Some(format!("value of {name:?} PriorityClass must be {v}"))
            }
            Some(_) if global => Some(format!(
                "globalDefault of {name:?} PriorityClass must be false"
            )),
            Some(_) => None,
        };
        if let Some(e) = err {
            errs.push(FieldError::forbidden(
                "metadata.name",
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {e}"),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(FieldError::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ));
    }
}

/// Kind-specific immutability checks of an update.
pub(super) fn validate_update(kind: &ResourceKind, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let immutable = |ptr: &str, field: &str, detail: &str, errs: &mut Vec<FieldError>| {
        let n = new.pointer(ptr);
        if n != old.pointer(ptr) {
            errs.push(FieldError::invalid(
                field,
                n.cloned().unwrap_or(Value::Null),
                detail,
            ));
        }
    };
    match (kind.group, kind.kind) {
        ("batch", "Job") => {
            immutable(
                "/spec/selector",
                "spec.selector",
                "field is immutable",
                &mut errs,
            );
            immutable(
                "/spec/completions",
                "spec.completions",
                "field is immutable",
                &mut errs,
            );
        }
        ("node.k8s.io", "RuntimeClass") => {
            immutable("/handler", "handler", "field is immutable", &mut errs);
        }
        ("networking.k8s.io", "IngressClass") => {
            immutable(
                "/spec/controller",
                "spec.controller",
                "field is immutable",
                &mut errs,
            );
        }
        ("scheduling.k8s.io", "PriorityClass") if new.get("value") != old.get("value") => {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            immutable("/roleRef", "roleRef", "cannot change roleRef", &mut errs);
        }
        ("", "PersistentVolumeClaim") if !claim_spec_update_allowed(new, old) => {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        _ => {}
    }
    errs
}

/// Upstream's `ValidatePersistentVolumeClaimUpdate`: the spec may change only in
/// `resources.requests` and `volumeAttributesClassName`, and `volumeName` may be set once
/// (the PV controller binds that way).
fn claim_spec_update_allowed(new: &Value, old: &Value) -> bool {
    let strip = |o: &Value, keep_volume_name: bool| {
        let mut spec = o.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = spec.as_object_mut() {
            m.remove("volumeAttributesClassName");
            if let Some(r) = m.get_mut("resources").and_then(Value::as_object_mut) {
                r.remove("requests");
            }
            if !keep_volume_name {
                m.remove("volumeName");
            }
        }
        spec
    };
    let old_name = old
        .pointer("/spec/volumeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let set_once = old_name.is_empty();
    strip(new, !set_once) == strip(old, !set_once)
}
