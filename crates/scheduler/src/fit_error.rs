//! The `FailedScheduling` message, byte for byte as upstream's `FitError.Error()` plus the
//! DefaultPreemption post-filter text (Kubernetes 1.32/1.33):
//!
//! ```text
//! 0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.
//! ```
//!
//! Each histogram entry is `"<count> <reason>"`; the entries are sorted *as strings* (so
//! `"10 …"` sorts before `"2 …"`, as upstream). A node rejected by a resolvable filter (ports,
//! resources) would be a preemption candidate; podvisor does not preempt, which is what
//! upstream reports when no lower-priority victims exist: "No preemption victims found for
//! incoming pod". Unresolvable rejections get "Preemption is not helpful for scheduling".

use std::collections::BTreeMap;

use crate::filters::Rejection;

/// Message when the cluster has no nodes at all (upstream `ErrNoNodesAvailable`).
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";
/// Post-filter reason for unresolvable nodes.
pub const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Post-filter reason for resolvable nodes when nothing can be preempted.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Why a pod fits on no node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// Number of nodes in the scheduler's snapshot.
    pub num_all_nodes: usize,
    /// A pre-filter failure that applies to every node (then `rejections` is ignored).
    pub prefilter_msg: Option<String>,
    /// One entry per rejected node.
    pub rejections: Vec<Rejection>,
    /// The pod has `preemptionPolicy: Never`.
    pub preemption_never: bool,
}

fn histogram<'a>(items: impl Iterator<Item = (&'a str, usize)>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (reason, n) in items {
        *counts.entry(reason).or_insert(0) += n;
    }
    let mut entries: Vec<String> = counts
        .into_iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    entries.sort();
    entries.join(", ")
}

impl Diagnosis {
    /// The post-filter (preemption) part, without the leading space.
    pub fn preemption_message(&self) -> String {
        if self.preemption_never {
            return "preemption: not eligible due to preemptionPolicy=Never.".to_owned();
        }
        let n = self.num_all_nodes;
        let hist = if self.prefilter_msg.is_some() {
            histogram(std::iter::once((PREEMPTION_NOT_HELPFUL, n)))
        } else {
            histogram(self.rejections.iter().map(|r| {
                (
                    if r.unresolvable {
                        PREEMPTION_NOT_HELPFUL
                    } else {
                        NO_VICTIMS
                    },
                    1,
                )
            }))
        };
        format!("preemption: 0/{n} nodes are available: {hist}.")
    }

    /// The full condition/event message.
    pub fn message(&self) -> String {
        let n = self.num_all_nodes;
        let mut msg = format!("0/{n} nodes are available:");
        if let Some(pre) = &self.prefilter_msg {
            msg.push_str(&format!(" {pre}."));
        } else {
            let hist = histogram(
                self.rejections
                    .iter()
                    .flat_map(|r| r.reasons.iter().map(|s| (s.as_str(), 1))),
            );
            if !hist.is_empty() {
                msg.push_str(&format!(" {hist}."));
            }
        }
        msg.push(' ');
        msg.push_str(&self.preemption_message());
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rej(reasons: &[&str], unresolvable: bool) -> Rejection {
        Rejection {
            reasons: reasons.iter().map(|s| s.to_string()).collect(),
            unresolvable,
        }
    }

    #[test]
    fn upstream_example_affinity_and_cpu() {
        let d = Diagnosis {
            num_all_nodes: 3,
            rejections: vec![
                rej(&["node(s) didn't match Pod's node affinity/selector"], true),
                rej(&["Insufficient cpu"], false),
                rej(&["Insufficient cpu"], false),
            ],
            ..Default::default()
        };
        assert_eq!(
            d.message(),
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu. \
             preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn upstream_example_taints_only() {
        let d = Diagnosis {
            num_all_nodes: 2,
            rejections: vec![
                rej(
                    &["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"],
                    true,
                ),
                rej(
                    &["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"],
                    true,
                ),
            ],
            ..Default::default()
        };
        assert_eq!(
            d.message(),
            "0/2 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
             1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn every_reason_of_a_node_is_counted_and_sorted_as_strings() {
        let mut rejections = vec![rej(&["Insufficient cpu", "Insufficient memory"], false); 10];
        rejections.push(rej(&["node(s) were unschedulable"], true));
        rejections.push(rej(&["node(s) were unschedulable"], true));
        let d = Diagnosis {
            num_all_nodes: 12,
            rejections,
            ..Default::default()
        };
        // "10 …" sorts before "2 …" as a string, as upstream's sort.Strings does.
        assert_eq!(
            d.message(),
            "0/12 nodes are available: 10 Insufficient cpu, 10 Insufficient memory, 2 node(s) were unschedulable. \
             preemption: 0/12 nodes are available: 10 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn prefilter_failure() {
        let d = Diagnosis {
            num_all_nodes: 3,
            prefilter_msg: Some("pod affinity terms conflict".into()),
            ..Default::default()
        };
        assert_eq!(
            d.message(),
            "0/3 nodes are available: pod affinity terms conflict. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn preemption_policy_never() {
        let d = Diagnosis {
            num_all_nodes: 1,
            rejections: vec![rej(&["Too many pods"], false)],
            preemption_never: true,
            ..Default::default()
        };
        assert_eq!(
            d.message(),
            "0/1 nodes are available: 1 Too many pods. preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
