//! LimitRange: upstream's defaulting of the object and its `LimitRanger` admission plugin
//! (plugin/pkg/admission/limitranger), on JSON objects.
//!
//! * [`default_limit_range`]: a `Container` item without a default limit takes its max;
//!   without a default request, its default limit, else its min (`SetDefaults_LimitRangeItem`).
//! * [`default_pod`]: every container (and init container) without a request or limit of a
//!   resource gets the `Container` items' `defaultRequest` / `default`, and the pod is
//!   annotated `kubernetes.io/limit-ranger: LimitRanger plugin set: cpu request for container
//!   app; …` (`PodMutateLimitFunc`).
//! * [`check_pod`] / [`check_claim`]: `min`, `max` and `maxLimitRequestRatio` of the
//!   `Container`, `Pod` and `PersistentVolumeClaim` items with upstream's messages
//!   (`PodValidateLimitFunc`, `PersistentVolumeClaimValidateLimitFunc`).
//!
//! Upstream walks Go maps, so the order of several errors is random there; here resources
//! go in name order.

use serde_json::{Map, Value};

use crate::quota::{Amount, Usage, from_list, pod_resources};

/// The annotation naming what the plugin set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

fn items(range: &Value) -> impl Iterator<Item = &Value> {
    range
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn item_type(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Upstream's `SetDefaults_LimitRangeItem` over every item of `range`.
pub fn default_limit_range(range: &mut Value) {
    let Some(limits) = range
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in limits.iter_mut().filter(|i| item_type(i) == "Container") {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        let list = |item: &Map<String, Value>, key: &str| {
            item.get(key)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (max, min) = (list(item, "max"), list(item, "min"));
        let mut default = list(item, "default");
        let mut request = list(item, "defaultRequest");
        for (k, v) in &max {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in default.iter().chain(&min) {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        item.insert("default".into(), Value::Object(default));
        item.insert("defaultRequest".into(), Value::Object(request));
    }
}

/// Upstream's `PodMutateLimitFunc` for every range in the namespace, in order: sets missing
/// requests and limits from the `Container` items and records what it set in the pod's
/// [`ANNOTATION`]. A limit without a request counts as that request, as API defaulting
/// makes it one.
pub fn default_pod(pod: &mut Value, ranges: &[Value]) {
    let mut requests = Map::new();
    let mut limits = Map::new();
    for item in ranges
        .iter()
        .flat_map(items)
        .filter(|i| item_type(i) == "Container")
    {
        for (key, into) in [("defaultRequest", &mut requests), ("default", &mut limits)] {
            if let Some(m) = item.get(key).and_then(Value::as_object) {
                into.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes: Vec<String> = Vec::new();
    for (list, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(cs) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in cs {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let Some(res) = c.as_object_mut().and_then(|c| object_at(c, "resources")) else {
                continue;
            };
            let have_limits = res
                .get("limits")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut set_limits = Vec::new();
            let mut set_requests = Vec::new();
            if let Some(lim) = object_at(res, "limits") {
                for (k, v) in &limits {
                    if !lim.contains_key(k) {
                        lim.insert(k.clone(), v.clone());
                        set_limits.push(k.clone());
                    }
                }
            }
            let Some(req) = object_at(res, "requests") else {
                continue;
            };
            for (k, v) in &have_limits {
                req.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in &requests {
                if !req.contains_key(k) {
                    req.insert(k.clone(), v.clone());
                    set_requests.push(k.clone());
                }
            }
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {what} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    if let Some(annotations) = pod
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| object_at(m, "annotations"))
    {
        annotations.insert(
            ANNOTATION.into(),
            Value::from(format!("LimitRanger plugin set: {}", notes.join("; "))),
        );
    }
}

/// The object at `key` of `m`, made an empty object when missing or null.
fn object_at<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let v = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
}

fn shown(a: Amount) -> String {
    a.to_quantity()
}

/// Upstream's `minConstraint`.
fn min_constraint(
    kind: &str,
    res: &str,
    enforced: Amount,
    req: &Usage,
    lim: &Usage,
) -> Option<String> {
    let e = shown(enforced);
    let Some(r) = req.get(res) else {
        return Some(format!(
            "minimum {res} usage per {kind} is {e}.  No request is specified"
        ));
    };
    if r.nanos < enforced.nanos {
        return Some(format!(
            "minimum {res} usage per {kind} is {e}, but request is {}",
            shown(*r)
        ));
    }
    match lim.get(res) {
        Some(l) if l.nanos < enforced.nanos => Some(format!(
            "minimum {res} usage per {kind} is {e}, but limit is {}",
            shown(*l)
        )),
        _ => None,
    }
}

/// Upstream's `maxConstraint`.
fn max_constraint(
    kind: &str,
    res: &str,
    enforced: Amount,
    req: &Usage,
    lim: &Usage,
) -> Option<String> {
    let e = shown(enforced);
    let Some(l) = lim.get(res) else {
        return Some(format!(
            "maximum {res} usage per {kind} is {e}.  No limit is specified"
        ));
    };
    if l.nanos > enforced.nanos {
        return Some(format!(
            "maximum {res} usage per {kind} is {e}, but limit is {}",
            shown(*l)
        ));
    }
    match req.get(res) {
        Some(r) if r.nanos > enforced.nanos => Some(format!(
            "maximum {res} usage per {kind} is {e}, but request is {}",
            shown(*r)
        )),
        _ => None,
    }
}

/// Upstream's `maxRequestConstraint` (a claim's max is checked against its request).
fn max_request_constraint(kind: &str, res: &str, enforced: Amount, req: &Usage) -> Option<String> {
    let e = shown(enforced);
    match req.get(res) {
        None => Some(format!(
            "maximum {res} usage per {kind} is {e}.  No request is specified"
        )),
        Some(r) if r.nanos > enforced.nanos => Some(format!(
            "maximum {res} usage per {kind} is {e}, but request is {}",
            shown(*r)
        )),
        _ => None,
    }
}

/// Upstream's `limitRequestRatioConstraint`.
fn ratio_constraint(
    kind: &str,
    res: &str,
    enforced: Amount,
    req: &Usage,
    lim: &Usage,
) -> Option<String> {
    let e = shown(enforced);
    let r = req.get(res).map_or(0, |a| a.nanos);
    let l = lim.get(res).map_or(0, |a| a.nanos);
    if r == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {e}, but no request is specified or request is 0"
        ));
    }
    if l == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {e}, but no limit is specified or limit is 0"
        ));
    }
    let ratio = l as f64 / r as f64;
    // Compared in thousandths, as upstream compares milli-values.
    let max = enforced.nanos as f64 / 1e9;
    ((ratio * 1000.0).round() > (max * 1000.0).round()).then(|| {
        format!(
            "{res} max limit to request ratio per {kind} is {e}, but provided ratio is {ratio:.6}"
        )
    })
}

/// The `min`, `max` and `maxLimitRequestRatio` constraints of `item` against one set of
/// requests and limits (`max` against the request only for claims).
fn constraints(kind: &str, item: &Value, req: &Usage, lim: &Usage, out: &mut Vec<String>) {
    for (res, enforced) in from_list(item.get("min")) {
        out.extend(min_constraint(kind, &res, enforced, req, lim));
    }
    for (res, enforced) in from_list(item.get("max")) {
        out.extend(if kind == "PersistentVolumeClaim" {
            max_request_constraint(kind, &res, enforced, req)
        } else {
            max_constraint(kind, &res, enforced, req, lim)
        });
    }
    if kind != "PersistentVolumeClaim" {
        for (res, enforced) in from_list(item.get("maxLimitRequestRatio")) {
            out.extend(ratio_constraint(kind, &res, enforced, req, lim));
        }
    }
}

/// Upstream's `PodValidateLimitFunc` for one range: the errors, empty when the pod fits.
pub fn check_pod(pod: &Value, range: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for item in items(range) {
        match item_type(item) {
            "Container" => {
                for list in ["containers", "initContainers"] {
                    for c in pod
                        .pointer(&format!("/spec/{list}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let req = from_list(c.pointer("/resources/requests"));
                        let lim = from_list(c.pointer("/resources/limits"));
                        constraints("Container", item, &req, &lim, &mut out);
                    }
                }
            }
            "Pod" => {
                // Overhead is not the workload's: LimitRange ignores it.
                let overhead = from_list(pod.pointer("/spec/overhead"));
                let without = |mut u: Usage| {
                    for (k, o) in &overhead {
                        if let Some(a) = u.get_mut(k) {
                            a.nanos = a.nanos.saturating_sub(o.nanos);
                        }
                    }
                    u
                };
                let req = without(pod_resources(pod, "requests"));
                let lim = without(pod_resources(pod, "limits"));
                constraints("Pod", item, &req, &lim, &mut out);
            }
            _ => {}
        }
    }
    out
}

/// Upstream's `PersistentVolumeClaimValidateLimitFunc` for one range.
pub fn check_claim(claim: &Value, range: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let req = from_list(claim.pointer("/spec/resources/requests"));
    for item in items(range).filter(|i| item_type(i) == "PersistentVolumeClaim") {
        constraints("PersistentVolumeClaim", item, &req, &Usage::new(), &mut out);
    }
    out
}

/// Upstream's aggregate of several errors: one alone, else `[a, b]`.
pub fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn range(limits: Value) -> Value {
        let mut r = json!({"metadata": {"name": "lr"}, "spec": {"limits": limits}});
        default_limit_range(&mut r);
        r
    }

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "image": "i", "resources": resources}]}})
    }

    #[test]
    fn a_container_item_defaults_from_max_and_min_as_upstream() {
        let r = range(
            json!([{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"},
            "default": {"memory": "256Mi"}}]),
        );
        let item = &r["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "2", "memory": "256Mi"}));
        assert_eq!(
            item["defaultRequest"],
            json!({"cpu": "2", "memory": "256Mi"})
        );
        let r = range(json!([{"type": "Container", "min": {"cpu": "100m"}}]));
        assert_eq!(
            r["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "100m"})
        );
        let r = range(json!([{"type": "Pod", "max": {"cpu": "2"}}]));
        assert!(r["spec"]["limits"][0].get("default").is_none());
    }

    #[test]
    fn missing_requests_and_limits_are_set_and_annotated() {
        let r = range(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
            "defaultRequest": {"cpu": "100m"}}]),
        );
        let mut p = json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [{"name": "app", "image": "i", "resources": {"limits": {"memory": "1Gi"}}}]}});
        default_pod(&mut p, &[r]);
        let app = &p["spec"]["containers"][0]["resources"];
        assert_eq!(app["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
        // The memory limit the user gave is its request, as API defaulting makes it.
        assert_eq!(app["requests"], json!({"cpu": "100m", "memory": "1Gi"}));
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu request for container app; cpu limit for container app; cpu, memory request for init container init; cpu, memory limit for init container init"
        );
        // A pod that sets everything is left alone.
        let mut full = pod(json!({"requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": "1", "memory": "1Gi"}}));
        let before = full.clone();
        default_pod(
            &mut full,
            &[range(
                json!([{"type": "Container", "default": {"cpu": "2"}}]),
            )],
        );
        assert_eq!(full, before);
    }

    #[test]
    fn container_pod_and_claim_bounds_use_upstreams_messages() {
        let r = range(json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"}}]));
        assert!(
            check_pod(
                &pod(json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "1"}})),
                &r
            )
            .is_empty()
        );
        assert_eq!(
            check_pod(
                &pod(json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "2"}})),
                &r
            ),
            ["maximum cpu usage per Container is 1, but limit is 2"]
        );
        assert_eq!(
            check_pod(
                &pod(json!({"requests": {"cpu": "50m"}, "limits": {"cpu": "1"}})),
                &r
            ),
            ["minimum cpu usage per Container is 100m, but request is 50m"]
        );
        assert_eq!(
            check_pod(&pod(json!({})), &r),
            [
                "minimum cpu usage per Container is 100m.  No request is specified",
                "maximum cpu usage per Container is 1.  No limit is specified"
            ]
        );
        let ratio = range(json!([{"type": "Container", "maxLimitRequestRatio": {"memory": "2"}}]));
        assert_eq!(
            check_pod(
                &pod(json!({"requests": {"memory": "100Mi"}, "limits": {"memory": "300Mi"}})),
                &ratio
            ),
            [
                "memory max limit to request ratio per Container is 2, but provided ratio is 3.000000"
            ]
        );
        let per_pod = range(json!([{"type": "Pod", "max": {"memory": "1Gi"}}]));
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "i", "resources": {"limits": {"memory": "768Mi"}, "requests": {"memory": "768Mi"}}},
            {"name": "b", "image": "i", "resources": {"limits": {"memory": "512Mi"}, "requests": {"memory": "512Mi"}}}]}});
        assert_eq!(
            check_pod(&two, &per_pod),
            ["maximum memory usage per Pod is 1Gi, but limit is 1280Mi"]
        );
        let storage = range(
            json!([{"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}, "min": {"storage": "1Gi"}}]),
        );
        let claim = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        assert!(check_claim(&claim("1Gi"), &storage).is_empty());
        assert_eq!(
            check_claim(&claim("5Gi"), &storage),
            ["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"]
        );
        assert_eq!(
            aggregate(&check_pod(&pod(json!({})), &r)),
            "[minimum cpu usage per Container is 100m.  No request is specified, maximum cpu usage per Container is 1.  No limit is specified]"
        );
    }
}
