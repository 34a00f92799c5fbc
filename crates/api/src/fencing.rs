//! Node fencing (docs/design/0007-node-fencing.md): the names shared by the agent, the API
//! server and the node lifecycle controller, and the rules on `--fence-after`.
//!
//! * A node's **epoch** is its Lease's `spec.leaseTransitions` (absent: 0). The node
//!   lifecycle controller bumps it (and clears `holderIdentity`) when it declares the node
//!   dead (Ready `Unknown`); only then.
//! * Every request of a node agent carries its epoch in [`EPOCH_HEADER`] (absent: 0). The
//!   API server refuses a write by a node whose epoch is older than its Lease's with 409
//!   Conflict, so a node that comes back after being declared dead overwrites nothing.
//! * The agent **fences itself**: when it has not renewed its Lease for `--fence-after` it
//!   SIGKILLs its pods. `--fence-after` is shorter than the control plane's
//!   `--node-monitor-grace-period` (published on every node Lease in
//!   [`ANN_NODE_MONITOR_GRACE_PERIOD`]), so the pods are dead before the node can be
//!   declared dead, let alone before its pods are evicted.

use std::time::Duration;

/// The request header that carries a node agent's lease epoch.
pub const EPOCH_HEADER: &str = "x-podvisor-node-epoch";

/// The node Lease annotation where the node lifecycle controller publishes its
/// `--node-monitor-grace-period` (seconds, e.g. `50s`), read by the agent to bound its
/// `--fence-after`.
pub const ANN_NODE_MONITOR_GRACE_PERIOD: &str = "node.podvisor.io/node-monitor-grace-period";

/// How often a node renews its Lease: a quarter of `leaseDurationSeconds` (the kubelet's
/// `NodeLeaseRenewIntervalFraction`, 0.25: 10 s for the default 40 s).
pub fn renew_interval(lease_duration: Duration) -> Duration {
    lease_duration / 4
}

/// The epoch of a node Lease: `spec.leaseTransitions` (negative or absent: 0).
pub fn lease_epoch(lease: &k8s_openapi::api::coordination::v1::Lease) -> u64 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .map_or(0, |t| u64::try_from(t).unwrap_or(0))
}

/// Renders a duration as the flags take it (`40s`, `1.5s`).
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Parses [`ANN_NODE_MONITOR_GRACE_PERIOD`]'s value (`50s`, `1.5s`).
pub fn parse_grace(value: &str) -> Option<Duration> {
    let secs: f64 = value.strip_suffix('s')?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// The default `--fence-after`: the lease duration (the node stops running pods once its
/// Lease has expired), lowered to three quarters of the control plane's grace period
/// `grace` when that is shorter.
pub fn default_fence_after(lease_duration: Duration, grace: Option<Duration>) -> Duration {
    match grace {
        Some(g) => lease_duration.min(g * 3 / 4),
        None => lease_duration,
    }
}

/// Checks `fence_after` against the renew interval of `lease_duration` (a node must not
/// fence itself between two renewals) and the control plane's grace period `grace` (it must
/// fence itself before the control plane declares it dead). The error names the flags.
pub fn check_fence_after(
    fence_after: Duration,
    lease_duration: Duration,
    grace: Option<Duration>,
) -> Result<(), String> {
    let renew = renew_interval(lease_duration);
    if fence_after <= renew {
        return Err(format!(
            "--fence-after {} must be longer than the node's lease renew interval {} (a quarter \
             of --node-lease-duration-seconds {}): the node would kill its pods between two \
             renewals",
            format_duration(fence_after),
            format_duration(renew),
            lease_duration.as_secs()
        ));
    }
    if let Some(grace) = grace
        && fence_after >= grace
    {
        return Err(format!(
            "--fence-after {} must be shorter than the control plane's \
             --node-monitor-grace-period {}: the control plane could declare this node dead and \
             replace its pods while they still run here",
            format_duration(fence_after),
            format_duration(grace)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn default_is_the_lease_duration_within_the_grace_period() {
        assert_eq!(default_fence_after(S(40), None), S(40));
        assert_eq!(
            default_fence_after(S(40), Some(S(50))),
            S(37) + Duration::from_millis(500)
        );
        assert_eq!(default_fence_after(S(40), Some(S(20))), S(15));
        assert_eq!(default_fence_after(S(40), Some(S(100))), S(40));
        for grace in [S(20), S(50), S(100)] {
            let d = default_fence_after(S(40), Some(grace));
            assert_eq!(check_fence_after(d, S(40), Some(grace)), Ok(()));
        }
    }

    #[test]
    fn fence_after_must_be_between_the_renew_interval_and_the_grace_period() {
        assert_eq!(renew_interval(S(40)), S(10));
        assert_eq!(check_fence_after(S(11), S(40), Some(S(50))), Ok(()));
        let e = check_fence_after(S(10), S(40), Some(S(50))).unwrap_err();
        assert!(
            e.starts_with(
                "--fence-after 10s must be longer than the node's lease renew interval 10s"
            ),
            "{e}"
        );
        let e = check_fence_after(S(50), S(40), Some(S(50))).unwrap_err();
        assert_eq!(
            e,
            "--fence-after 50s must be shorter than the control plane's --node-monitor-grace-period \
             50s: the control plane could declare this node dead and replace its pods while they \
             still run here"
        );
        assert_eq!(check_fence_after(S(60), S(40), None), Ok(()));
    }

    #[test]
    fn grace_annotation_round_trips() {
        for d in [S(50), Duration::from_millis(1500)] {
            assert_eq!(parse_grace(&format_duration(d)), Some(d));
        }
        assert_eq!(parse_grace("50"), None);
        assert_eq!(parse_grace("-1s"), None);
        assert_eq!(parse_grace("xs"), None);
    }
}
