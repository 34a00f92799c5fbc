//! Container restart rules (KEP-5307, `ContainerRestartRules`, beta and on since 1.35): a
//! regular container may carry its own `restartPolicy` (Always, OnFailure, Never) and
//! `restartPolicyRules`, each `action: Restart` with an `exitCodes` requirement (`In` or
//! `NotIn` a list of codes).
//!
//! # The rule, evaluated at every exit
//!
//! ```text
//!   exit code ──▶ first rule whose requirement holds? ──yes (Restart)──▶ restart
//!                         │ no
//!                         ▼
//!               container's restartPolicy set? ──yes──▶ Always: restart; OnFailure: code ≠ 0;
//!                         │ no                           Never: stays as it ended
//!                         ▼
//!               the pod's restartPolicy (same three values)
//! ```
//!
//! (upstream `podutil.ContainerShouldRestart`, shared with the phase computation in
//! `podvisor_api::status::container_should_restart`). A container that restarts goes
//! through the ordinary back-off and its restartCount grows, even in a pod whose own policy
//! is Never. While it runs (no exit code yet) only its own policy counts, as upstream's
//! `computePodActions` reads it.
//!
//! # Effect on the phase
//!
//! A pod whose containers all stopped is Running while one of them will restart, Succeeded
//! when none will and all exited 0, Failed otherwise (`podvisor_api::status::get_phase`).
//!
//! [`effective_policy`] turns the rule into the [`RestartPolicy`] that `restart::decide` is
//! given for the newest instance, so that the back-off and the waiting reasons stay one code
//! path.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use podvisor_api::status as rules;

use super::restart::RestartPolicy;

/// The restart policy in force for regular container `c` of `spec`, given how its newest
/// instance ended (`exit_code`, None while it has none or it runs).
pub fn effective_policy(c: &Container, spec: &PodSpec, exit_code: Option<i32>) -> RestartPolicy {
    match exit_code {
        Some(code) => {
            if rules::container_should_restart(c, spec, code) {
                RestartPolicy::Always
            } else {
                RestartPolicy::Never
            }
        }
        None => RestartPolicy::from_spec(
            c.restart_policy
                .as_deref()
                .or(spec.restart_policy.as_deref()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pod_policy: &str, container: serde_json::Value) -> (PodSpec, Container) {
        let c: Container = serde_json::from_value(container).unwrap();
        let spec = PodSpec {
            restart_policy: Some(pod_policy.into()),
            containers: vec![c.clone()],
            ..PodSpec::default()
        };
        (spec, c)
    }

    #[test]
    fn a_matching_in_rule_restarts_a_never_container() {
        let (s, c) = spec(
            "Never",
            serde_json::json!({"name": "a", "restartPolicy": "Never", "restartPolicyRules": [
                {"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]}),
        );
        assert_eq!(effective_policy(&c, &s, Some(42)), RestartPolicy::Always);
        assert_eq!(effective_policy(&c, &s, Some(1)), RestartPolicy::Never);
        assert_eq!(effective_policy(&c, &s, Some(0)), RestartPolicy::Never);
        assert_eq!(effective_policy(&c, &s, None), RestartPolicy::Never);
    }

    #[test]
    fn a_not_in_rule_restarts_every_code_but_the_listed_ones() {
        let (s, c) = spec(
            "Never",
            serde_json::json!({"name": "a", "restartPolicy": "Never", "restartPolicyRules": [
                {"action": "Restart", "exitCodes": {"operator": "NotIn", "values": [0, 3]}}]}),
        );
        assert_eq!(effective_policy(&c, &s, Some(1)), RestartPolicy::Always);
        assert_eq!(effective_policy(&c, &s, Some(0)), RestartPolicy::Never);
        assert_eq!(effective_policy(&c, &s, Some(3)), RestartPolicy::Never);
    }

    #[test]
    fn the_containers_policy_overrides_the_pods_and_falls_back_to_it() {
        let (s, c) = spec(
            "Always",
            serde_json::json!({"name": "a", "restartPolicy": "OnFailure"}),
        );
        assert_eq!(effective_policy(&c, &s, Some(0)), RestartPolicy::Never);
        assert_eq!(effective_policy(&c, &s, Some(2)), RestartPolicy::Always);
        assert_eq!(effective_policy(&c, &s, None), RestartPolicy::OnFailure);
        let (s, c) = spec("OnFailure", serde_json::json!({"name": "a"}));
        assert_eq!(effective_policy(&c, &s, Some(0)), RestartPolicy::Never);
        assert_eq!(effective_policy(&c, &s, Some(9)), RestartPolicy::Always);
        assert_eq!(effective_policy(&c, &s, None), RestartPolicy::OnFailure);
    }

    #[test]
    fn rules_are_evaluated_in_order_and_unmatched_rules_fall_to_the_policy() {
        let (s, c) = spec(
            "Never",
            serde_json::json!({"name": "a", "restartPolicy": "Always", "restartPolicyRules": [
                {"action": "Restart", "exitCodes": {"operator": "In", "values": [7]}}]}),
        );
        // no rule matches 1: the container's own Always restarts it
        assert_eq!(effective_policy(&c, &s, Some(1)), RestartPolicy::Always);
    }
}
