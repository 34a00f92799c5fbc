//! PodDisruptionBudget arithmetic and conditions, shared by the disruption controller (which
//! writes the status) and the eviction subresource (which reads and decrements it), as
//! upstream's `pkg/controller/disruption` and `pkg/apis/policy/v1` helpers define them.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

/// The condition type of a budget's status.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// `DisruptionAllowed=True`: more healthy pods than needed.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// `DisruptionAllowed=False`: no disruption allowed.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// `DisruptionAllowed=False`: the controller could not compute the status.
pub const SYNC_FAILED: &str = "SyncFailed";
/// The eviction subresource's answer when a budget forbids an eviction.
pub const EVICTION_DENIED: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";
/// The `StatusCause` type naming the budget.
pub const CAUSE: &str = "DisruptionBudget";
/// How long an eviction's entry in `disruptedPods` waits for the pod's deletion.
pub const DELETION_TIMEOUT_SECONDS: i64 = 120;
/// Most entries `disruptedPods` may hold before evictions are refused.
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// Upstream's `GetScaledValueFromIntOrPercent(v, total, roundUp=true)`; `None` for a
/// malformed percentage.
pub fn scaled_value(v: &IntOrString, total: i32) -> Option<i32> {
    match v {
        IntOrString::Int(i) => Some(*i),
        IntOrString::String(s) => {
            let p: i64 = s.strip_suffix('%')?.parse().ok()?;
            let v = (p * i64::from(total) + 99).div_euclid(100);
            i32::try_from(v).ok()
        }
    }
}

/// Whether the budget's counts need the owners' scale (`maxUnavailable`, or a percentage
/// `minAvailable`) rather than the number of matching pods.
pub fn needs_scale(spec: &PodDisruptionBudgetSpec) -> bool {
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// Upstream's `getExpectedPodCount`: `(expectedPods, desiredHealthy)` from the matching pod
/// count and (when [`needs_scale`]) the summed scale of their controllers.
pub fn expected_and_desired(
    spec: &PodDisruptionBudgetSpec,
    matching_pods: i32,
    scale: i32,
) -> Result<(i32, i32), String> {
    let bad = |v: &IntOrString| format!("invalid value for IntOrString: invalid value {v:?}");
    if let Some(mu) = &spec.max_unavailable {
        let max_unavailable = scaled_value(mu, scale).ok_or_else(|| bad(mu))?;
        return Ok((scale, (scale - max_unavailable).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(i)) => Ok((matching_pods, *i)),
        Some(v @ IntOrString::String(_)) => {
            Ok((scale, scaled_value(v, scale).ok_or_else(|| bad(v))?))
        }
        None => Ok((0, 0)),
    }
}

/// `disruptionsAllowed`: healthy pods beyond the desired ones, 0 while no pod is expected.
pub fn disruptions_allowed(current_healthy: i32, desired_healthy: i32, expected: i32) -> i32 {
    let allowed = current_healthy - desired_healthy;
    if expected <= 0 || allowed <= 0 {
        0
    } else {
        allowed
    }
}

/// The Ready condition is True (`IsPodReady`).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Upstream's `meta.SetStatusCondition`: adds or updates the condition of that type; the
/// transition time changes only with the status.
pub fn set_status_condition(conditions: &mut Vec<Condition>, mut c: Condition, now: Timestamp) {
    match conditions.iter_mut().find(|o| o.type_ == c.type_) {
        Some(old) => {
            if old.status != c.status {
                old.status = c.status;
                old.last_transition_time = Time(now);
            }
            old.reason = c.reason;
            old.message = c.message;
            old.observed_generation = c.observed_generation;
        }
        None => {
            c.last_transition_time = Time(now);
            conditions.push(c);
        }
    }
}

/// Upstream's `UpdateDisruptionAllowedCondition`: True/SufficientPods when disruptions are
/// allowed, False/InsufficientPods otherwise.
pub fn update_disruption_allowed_condition(pdb: &mut PodDisruptionBudget, now: Timestamp) {
    let status = pdb.status.get_or_insert_with(Default::default);
    let (s, reason) = if status.disruptions_allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    let c = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: s.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(now),
    };
    set_status_condition(status.conditions.get_or_insert_with(Vec::new), c, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudgetSpec {
        PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            ..Default::default()
        }
    }

    #[test]
    fn percentages_round_up() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(&p("50%"), 3), Some(2));
        assert_eq!(scaled_value(&p("10%"), 1), Some(1));
        assert_eq!(scaled_value(&p("0%"), 7), Some(0));
        assert_eq!(scaled_value(&p("100%"), 4), Some(4));
        assert_eq!(scaled_value(&IntOrString::Int(2), 10), Some(2));
        assert_eq!(scaled_value(&p("half"), 4), None);
    }

    #[test]
    fn budgets_count_as_upstream() {
        let int = IntOrString::Int;
        let pct = |s: &str| IntOrString::String(s.into());
        // minAvailable int: expected = matching pods, the owners' scale does not matter.
        assert_eq!(
            expected_and_desired(&spec(Some(int(2)), None), 3, 10),
            Ok((3, 2))
        );
        // minAvailable percent: of the scale, rounded up.
        assert_eq!(
            expected_and_desired(&spec(Some(pct("50%")), None), 2, 3),
            Ok((3, 2))
        );
        // maxUnavailable: desired = scale - maxUnavailable (rounded up), never negative.
        assert_eq!(
            expected_and_desired(&spec(None, Some(int(1))), 3, 3),
            Ok((3, 2))
        );
        assert_eq!(
            expected_and_desired(&spec(None, Some(pct("30%"))), 3, 3),
            Ok((3, 2))
        );
        assert_eq!(
            expected_and_desired(&spec(None, Some(int(5))), 3, 3),
            Ok((3, 0))
        );
        assert!(expected_and_desired(&spec(None, Some(pct("x"))), 3, 3).is_err());
        assert!(!needs_scale(&spec(Some(int(1)), None)));
        assert!(needs_scale(&spec(Some(pct("1%")), None)));
        assert!(needs_scale(&spec(None, Some(int(1)))));
    }

    #[test]
    fn disruptions_need_expected_pods_and_spare_health() {
        assert_eq!(disruptions_allowed(3, 2, 3), 1);
        assert_eq!(disruptions_allowed(2, 2, 3), 0);
        assert_eq!(disruptions_allowed(1, 2, 3), 0);
        // No expected pods: safe state.
        assert_eq!(disruptions_allowed(3, 0, 0), 0);
    }

    #[test]
    fn the_condition_follows_disruptions_allowed() {
        let t0 = Timestamp::from_second(100).unwrap_or(Timestamp::UNIX_EPOCH);
        let t1 = Timestamp::from_second(200).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut pdb = PodDisruptionBudget::default();
        pdb.status
            .get_or_insert_with(Default::default)
            .disruptions_allowed = 1;
        update_disruption_allowed_condition(&mut pdb, t0);
        let c = |p: &PodDisruptionBudget| {
            p.status
                .clone()
                .unwrap_or_default()
                .conditions
                .unwrap_or_default()
        };
        assert_eq!(c(&pdb).len(), 1);
        assert_eq!(
            (c(&pdb)[0].status.as_str(), c(&pdb)[0].reason.as_str()),
            ("True", SUFFICIENT_PODS)
        );
        // Same status later: the transition time stays.
        update_disruption_allowed_condition(&mut pdb, t1);
        assert_eq!(c(&pdb)[0].last_transition_time, Time(t0));
        pdb.status
            .get_or_insert_with(Default::default)
            .disruptions_allowed = 0;
        update_disruption_allowed_condition(&mut pdb, t1);
        assert_eq!(
            (
                c(&pdb)[0].status.as_str(),
                c(&pdb)[0].reason.as_str(),
                &c(&pdb)[0].last_transition_time
            ),
            ("False", INSUFFICIENT_PODS, &Time(t1))
        );
    }
}
