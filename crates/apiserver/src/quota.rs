//! ResourceQuota admission (upstream's `ResourceQuota` validating admission plugin).
//!
//! After an object is validated and before it is stored, every ResourceQuota of its
//! namespace whose `status.hard` names something the object's kind is charged for (see
//! `podvisor_api::quota`) is checked, in this order, each failure a 403 `Forbidden`:
//!
//! 1. `failed quota: <quota>: must specify …` — the quota tracks cpu or memory and a
//!    container does not state it;
//! 2. `status unknown for quota: <quota>, resources: …` — the controller has not yet
//!    written `status.used` for a tracked resource;
//! 3. `exceeded quota: <quota>, requested: …, used: …, limited: …` — `used` plus what the
//!    object adds would pass `hard`.
//!
//! When every quota admits, each one's `status.used` is raised by the object's usage with a
//! compare-and-swap write (a conflict re-reads the quotas and checks again), so concurrent
//! creates cannot both take the last unit. The quota controller later recomputes `used`
//! from the objects themselves, which also returns what a failed create had reserved.
//!
//! Pods are charged on create, Services and PersistentVolumeClaims on create and update
//! (by the difference), other kinds on create only; a dry run checks without charging.

use podvisor_api::quota::{self, Usage};
use serde_json::Value;

use crate::error::ApiError;
use crate::objects;
use crate::ops::Core;
use crate::registry::{PERSISTENTVOLUMECLAIMS, RESOURCEQUOTAS, ResourceKind, SERVICES};

/// Attempts before a create gives up on quotas that keep changing under it.
const ATTEMPTS: usize = 16;

/// A quota that admits the object, with its new usage.
struct Charge {
    name: String,
    quota: Value,
    used: Usage,
}

impl Core {
    /// Checks `obj` (with `old` on an update) against its namespace's quotas and charges
    /// them.
    pub(crate) async fn admit_quota(
        &self,
        kind: &ResourceKind,
        obj: &Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        if !kind.namespaced
            || (old.is_some() && kind != &SERVICES && kind != &PERSISTENTVOLUMECLAIMS)
        {
            return Ok(());
        }
        let Some(ns) = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            return Ok(());
        };
        let now = self.now().as_second();
        for _ in 0..ATTEMPTS {
            let quotas = self
                .storage
                .list(
                    &RESOURCEQUOTAS.list_prefix(Some(ns)),
                    0,
                    None,
                    None,
                    &|_| true,
                )
                .await?
                .items;
            if quotas.is_empty() {
                return Ok(());
            }
            let charges = check(kind, obj, old, &quotas, now)?;
            if dry_run || charges.is_empty() {
                return Ok(());
            }
            if self.charge(ns, charges).await? {
                return Ok(());
            }
        }
        Err(ApiError::conflict(
            &RESOURCEQUOTAS,
            "",
            "too many concurrent updates to the namespace's resource quotas; please try again",
        ))
    }

    /// Writes each charge; false when a quota changed meanwhile (the caller checks again).
    async fn charge(&self, ns: &str, charges: Vec<Charge>) -> Result<bool, ApiError> {
        for c in charges {
            let rev = c
                .quota
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let mut q = c.quota;
            if let Some(status) = q.get_mut("status").and_then(Value::as_object_mut) {
                status.insert("used".into(), quota::to_list(&c.used));
            }
            if self
                .storage
                .update(&RESOURCEQUOTAS, Some(ns), &c.name, &q, rev)
                .await?
                .is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn forbidden(kind: &ResourceKind, obj: &Value, msg: String) -> ApiError {
    let name = objects::name_of(obj);
    ApiError::forbidden(
        kind.plural,
        kind.group,
        name,
        format!("{} {name:?} is forbidden: {msg}", kind.qualified_resource()),
    )
}

/// Upstream's `checkRequest`: the quotas `obj` must be charged to, with their new usage, or
/// the refusal.
fn check(
    kind: &ResourceKind,
    obj: &Value,
    old: Option<&Value>,
    quotas: &[Value],
    now: i64,
) -> Result<Vec<Charge>, ApiError> {
    let (plural, group) = (kind.plural, kind.group);
    let mut matched = Vec::new();
    for q in quotas {
        if !quota::quota_matches(q, plural, group, obj) {
            continue;
        }
        let name = objects::name_of(q).to_string();
        let hard = quota::hard_of(q);
        let restricted = quota::matching_resources(plural, group, hard.keys());
        if (plural, group) == ("pods", "")
            && let Some(msg) = quota::pod_constraints(&restricted, obj)
        {
            return Err(forbidden(kind, obj, format!("failed quota: {name}: {msg}")));
        }
        let used = quota::from_list(q.pointer("/status/used"));
        if restricted.iter().any(|r| !used.contains_key(r)) {
            let mut names = restricted.clone();
            names.sort();
            return Err(forbidden(
                kind,
                obj,
                format!(
                    "status unknown for quota: {name}, resources: {}",
                    names.join(",")
                ),
            ));
        }
        matched.push((name, q, hard, used));
    }
    if matched.is_empty() {
        return Ok(Vec::new());
    }
    let mut delta = quota::usage(plural, group, obj, now);
    if let Some(old) = old {
        let before = quota::usage(plural, group, old, now);
        delta = quota::subtract(&delta, &before);
        for v in delta.values_mut() {
            v.nanos = v.nanos.max(0);
        }
    }
    if quota::is_zero(&delta) {
        return Ok(Vec::new());
    }
    let mut charges = Vec::new();
    for (name, q, hard, used) in matched {
        let requested = quota::mask(&delta, hard.keys());
        let new_used = quota::add(&used, &requested);
        let exceeded: Vec<String> = requested
            .keys()
            .filter(|r| {
                let (Some(n), Some(h)) = (new_used.get(*r), hard.get(*r)) else {
                    return false;
                };
                n.nanos > h.nanos
            })
            .cloned()
            .collect();
        if !exceeded.is_empty() {
            return Err(forbidden(
                kind,
                obj,
                format!(
                    "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                    quota::pretty(&quota::mask(&requested, &exceeded)),
                    quota::pretty(&quota::mask(&used, &exceeded)),
                    quota::pretty(&quota::mask(&hard, &exceeded)),
                ),
            ));
        }
        charges.push(Charge {
            name,
            quota: q.clone(),
            used: new_used,
        });
    }
    Ok(charges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{CONFIGMAPS, PODS};
    use serde_json::json;

    fn quota_obj(hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": "q", "namespace": "ns", "resourceVersion": "7"},
               "spec": {"hard": hard.clone()}, "status": {"hard": hard, "used": used}})
    }

    fn pod(cpu: &str) -> Value {
        json!({"metadata": {"name": "web", "namespace": "ns"},
               "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}}]}})
    }

    #[test]
    fn exceeding_names_only_the_resources_over_the_limit() {
        let q = quota_obj(
            json!({"pods": "10", "requests.cpu": "1"}),
            json!({"pods": "1", "requests.cpu": "800m"}),
        );
        let err = check(&PODS, &pod("500m"), None, &[q], 0).err().unwrap();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"web\" is forbidden: exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=800m, limited: requests.cpu=1"
        );
    }

    #[test]
    fn an_admitted_pod_raises_used() {
        let q = quota_obj(
            json!({"pods": "2", "limits.cpu": "2"}),
            json!({"pods": "1", "limits.cpu": "500m"}),
        );
        let charges = check(&PODS, &pod("500m"), None, &[q], 0).unwrap();
        assert_eq!(charges.len(), 1);
        assert_eq!(quota::pretty(&charges[0].used), "limits.cpu=1,pods=2");
    }

    #[test]
    fn missing_usage_and_missing_requests_are_refused() {
        let q = quota_obj(json!({"pods": "2", "requests.memory": "1Gi"}), json!({}));
        let err = check(&PODS, &pod("1"), None, &[q], 0).err().unwrap();
        assert_eq!(
            err.message,
            "pods \"web\" is forbidden: failed quota: q: must specify requests.memory for: c"
        );
        let q = quota_obj(
            json!({"pods": "2", "requests.cpu": "2"}),
            json!({"pods": "0"}),
        );
        let err = check(&PODS, &pod("1"), None, &[q], 0).err().unwrap();
        assert_eq!(
            err.message,
            "pods \"web\" is forbidden: status unknown for quota: q, resources: pods,requests.cpu"
        );
    }

    #[test]
    fn object_counts_and_unrelated_quotas() {
        let q = quota_obj(
            json!({"count/configmaps": "1"}),
            json!({"count/configmaps": "1"}),
        );
        let cm = json!({"metadata": {"name": "c", "namespace": "ns"}});
        let err = check(&CONFIGMAPS, &cm, None, std::slice::from_ref(&q), 0)
            .err()
            .unwrap();
        assert_eq!(
            err.message,
            "configmaps \"c\" is forbidden: exceeded quota: q, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1"
        );
        // A pod is not charged to a quota of configmaps.
        assert!(check(&PODS, &pod("1"), None, &[q], 0).unwrap().is_empty());
    }
}
