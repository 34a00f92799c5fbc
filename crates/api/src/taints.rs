//! Taints and tolerations as upstream's `v1helper` and the taint eviction controller read
//! them: which toleration tolerates which taint, the tolerations that match a set of
//! `NoExecute` taints, and how long a pod may stay on a node carrying them.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Taint effect: new pods are not scheduled.
pub const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
/// Taint effect: running pods are evicted unless they tolerate the taint.
pub const EFFECT_NO_EXECUTE: &str = "NoExecute";
/// Taint key of a node the admin has declared out of service (PodGC force-deletes its
/// terminating pods while it is not ready).
pub const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// Taint key of a cordoned node (`spec.unschedulable`).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Upstream `Toleration.ToleratesTaint`: the effect (if set) and key (if set) match, and the
/// value matches (`Equal`, the default) or the operator is `Exists`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = t.key.as_deref()
        && !key.is_empty()
        && key != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether two taints are the same for the node lifecycle controller (key and effect,
/// upstream `Taint.MatchTaint`).
pub fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// The `NoExecute` taints of a node's `spec.taints`.
pub fn no_execute(taints: &[Taint]) -> Vec<Taint> {
    taints
        .iter()
        .filter(|t| t.effect == EFFECT_NO_EXECUTE)
        .cloned()
        .collect()
}

/// Upstream `GetMatchingTolerations`: `None` if some taint is tolerated by no toleration;
/// otherwise, for each taint, the first toleration that tolerates it.
pub fn matching_tolerations<'a>(
    taints: &[Taint],
    tolerations: &'a [Toleration],
) -> Option<Vec<&'a Toleration>> {
    let mut used = Vec::with_capacity(taints.len());
    for taint in taints {
        used.push(tolerations.iter().find(|t| tolerates(t, taint))?);
    }
    Some(used)
}

/// How long a pod may stay on a node whose taints it tolerates with `used` (upstream
/// `getMinTolerationTime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TolerationTime {
    /// Evict now: no tolerations were used, or one has `tolerationSeconds ≤ 0`.
    Now,
    /// Evict after the smallest `tolerationSeconds` of the used tolerations.
    After(Duration),
    /// Every used toleration is unbounded: never evict.
    Forever,
}

/// The minimum `tolerationSeconds` over the used tolerations (see [`TolerationTime`]).
pub fn min_toleration_time(used: &[&Toleration]) -> TolerationTime {
    if used.is_empty() {
        return TolerationTime::Now;
    }
    let mut min: Option<i64> = None;
    for t in used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return TolerationTime::Now;
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    match min {
        Some(s) => TolerationTime::After(Duration::from_secs(s.unsigned_abs())),
        None => TolerationTime::Forever,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(String::from),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(
        key: Option<&str>,
        op: &str,
        value: Option<&str>,
        effect: Option<&str>,
        secs: Option<i64>,
    ) -> Toleration {
        Toleration {
            key: key.map(String::from),
            operator: Some(op.into()),
            value: value.map(String::from),
            effect: effect.map(String::from),
            toleration_seconds: secs,
        }
    }

    #[test]
    fn toleration_matching_follows_key_value_effect_and_operator() {
        let t = taint("k", Some("v"), EFFECT_NO_EXECUTE);
        assert!(tolerates(
            &tol(Some("k"), "Equal", Some("v"), Some("NoExecute"), None),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("k"), "Equal", Some("w"), Some("NoExecute"), None),
            &t
        ));
        assert!(tolerates(&tol(Some("k"), "Exists", None, None, None), &t));
        assert!(!tolerates(
            &tol(Some("k"), "Exists", None, Some("NoSchedule"), None),
            &t
        ));
        assert!(tolerates(&tol(None, "Exists", None, None, None), &t));
        assert!(!tolerates(
            &tol(Some("other"), "Exists", None, None, None),
            &t
        ));
    }

    #[test]
    fn toleration_operators_and_empty_fields() {
        let t = taint("k", Some("v"), EFFECT_NO_SCHEDULE);
        let tol = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: (!op.is_empty()).then(|| op.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: None,
        };
        assert!(tolerates(&tol("k", "Equal", "v", ""), &t));
        assert!(
            tolerates(&tol("k", "", "v", "NoSchedule"), &t),
            "empty operator is Equal"
        );
        assert!(!tolerates(&tol("k", "Equal", "w", ""), &t));
        assert!(tolerates(&tol("k", "Exists", "", ""), &t));
        assert!(!tolerates(&tol("other", "Exists", "", ""), &t));
        assert!(
            tolerates(&tol("", "Exists", "", ""), &t),
            "empty key + Exists tolerates all"
        );
        assert!(!tolerates(&tol("k", "Bogus", "v", ""), &t));
    }

    #[test]
    fn matching_tolerations_needs_every_taint_tolerated() {
        let taints = [
            taint("a", None, EFFECT_NO_EXECUTE),
            taint("b", None, EFFECT_NO_EXECUTE),
        ];
        let only_a = [tol(Some("a"), "Exists", None, None, Some(5))];
        assert!(matching_tolerations(&taints, &only_a).is_none());
        let both = [
            tol(Some("a"), "Exists", None, None, Some(5)),
            tol(Some("b"), "Exists", None, None, Some(25)),
        ];
        assert_eq!(
            matching_tolerations(&taints, &both).map(|v| v.len()),
            Some(2)
        );
        assert_eq!(matching_tolerations(&[], &[]).map(|v| v.len()), Some(0));
    }

    #[test]
    fn min_toleration_time_is_now_minimum_or_forever() {
        let five = tol(None, "Exists", None, None, Some(5));
        let twenty_five = tol(None, "Exists", None, None, Some(25));
        let forever = tol(None, "Exists", None, None, None);
        let zero = tol(None, "Exists", None, None, Some(0));
        assert_eq!(min_toleration_time(&[]), TolerationTime::Now);
        assert_eq!(
            min_toleration_time(&[&twenty_five, &five, &forever]),
            TolerationTime::After(Duration::from_secs(5))
        );
        assert_eq!(min_toleration_time(&[&forever]), TolerationTime::Forever);
        assert_eq!(min_toleration_time(&[&forever, &zero]), TolerationTime::Now);
        let negative = tol(None, "Exists", None, None, Some(-3));
        assert_eq!(min_toleration_time(&[&negative]), TolerationTime::Now);
    }
}
