//! One scheduling decision: pre-filter, filter every node, score the feasible ones, pick the
//! best. Pure over a [`Cache`] snapshot; the loop in [`crate::scheduler`] owns the effects.
//!
//! Scoring (weights as upstream's default profile): NodeResourcesLeastAllocated (weight 1,
//! cpu and memory equally, on non-zero requests) plus spreading of pods that share a
//! controlling owner (weight 2, upstream's default pod topology spread over hostnames
//! reduced to its effect: fewer same-owner pods → higher score). Ties are broken
//! deterministically: fewer pods on the node, then the node name.

use crate::cache::{Cache, NodeData, NodeUsage, PodInfo};
use crate::filters::{
    self, FilterResult, REASON_PREFILTER_NODE_AFFINITY, Rejection, check_node_affinity,
    check_ports, check_resources, check_taints, check_unschedulable,
};
use crate::fit_error::Diagnosis;

/// Upstream `MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;
/// Weight of the least-allocated score.
pub const LEAST_ALLOCATED_WEIGHT: i64 = 1;
/// Weight of the owner-spreading score.
pub const SPREAD_WEIGHT: i64 = 2;

/// Why a pod could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleFailure {
    /// The cluster has no nodes.
    NoNodes,
    /// Nodes exist but none fits.
    Unschedulable(Diagnosis),
}

impl ScheduleFailure {
    /// The condition/event message.
    pub fn message(&self) -> String {
        match self {
            ScheduleFailure::NoNodes => crate::fit_error::NO_NODES_AVAILABLE.to_owned(),
            ScheduleFailure::Unschedulable(d) => d.message(),
        }
    }
}

/// Runs every filter, in upstream order, for one node.
pub fn filter_node(pod: &PodInfo, name: &str, node: &NodeData, usage: &NodeUsage) -> FilterResult {
    let tolerations = filters::tolerations_of(&pod.pod);
    check_unschedulable(tolerations, node.unschedulable)?;
    check_taints(tolerations, &node.taints)?;
    check_node_affinity(&pod.pod, &node.labels, name)?;
    check_ports(&pod.host_ports, usage.used_ports.keys())?;
    check_resources(
        &pod.requests,
        &usage.requested,
        usage.pod_count,
        &node.allocatable,
    )
}

/// Upstream LeastAllocated for cpu and memory (equal weights), on non-zero requests.
pub fn least_allocated_score(pod: &PodInfo, node: &NodeData, usage: &NodeUsage) -> i64 {
    fn one(alloc: i64, requested: i64) -> i64 {
        if alloc <= 0 || requested > alloc {
            return 0;
        }
        (alloc - requested) * MAX_NODE_SCORE / alloc
    }
    let (used, asked) = (&usage.non_zero_requested, &pod.non_zero);
    let cpu = one(
        node.allocatable.milli_cpu,
        used.milli_cpu.saturating_add(asked.milli_cpu),
    );
    let mem = one(
        node.allocatable.memory,
        used.memory.saturating_add(asked.memory),
    );
    (cpu + mem) / 2
}

/// Spreading score: `100 * (max - count) / max` over the feasible nodes, where `count` is
/// the number of pods with the same controlling owner on the node.
pub fn spread_score(count: u32, max: u32) -> i64 {
    if max == 0 {
        return MAX_NODE_SCORE;
    }
    MAX_NODE_SCORE * i64::from(max - count) / i64::from(max)
}

/// Picks a node for the pod, or explains why none fits.
pub fn schedule(cache: &Cache, pod: &PodInfo) -> Result<String, ScheduleFailure> {
    schedule_with(cache, pod, |_, _| Ok(()))
}

/// [`schedule`] with one more filter after the built-in ones (the volume binding filter,
/// [`crate::volumebinding::filter`], for a pod with claims).
pub fn schedule_with(
    cache: &Cache,
    pod: &PodInfo,
    extra: impl Fn(&str, &NodeData) -> FilterResult,
) -> Result<String, ScheduleFailure> {
    let num_all_nodes = cache.node_count();
    if num_all_nodes == 0 {
        return Err(ScheduleFailure::NoNodes);
    }
    let preemption_never = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never");
    let allowed = match filters::prefilter_node_names(&pod.pod) {
        Ok(a) => a,
        Err(msg) => {
            return Err(ScheduleFailure::Unschedulable(Diagnosis {
                num_all_nodes,
                prefilter_msg: Some(msg.to_owned()),
                rejections: Vec::new(),
                preemption_never,
            }));
        }
    };

    let mut rejections = Vec::new();
    let mut feasible: Vec<(&String, &NodeData, &NodeUsage)> = Vec::new();
    for (name, data, usage) in cache.nodes() {
        if let Some(allowed) = &allowed
            && !allowed.contains(name)
        {
            rejections.push(Rejection {
                reasons: vec![REASON_PREFILTER_NODE_AFFINITY.to_owned()],
                unresolvable: true,
            });
            continue;
        }
        match filter_node(pod, name, data, usage).and_then(|()| extra(name, data)) {
            Ok(()) => feasible.push((name, data, usage)),
            Err(r) => rejections.push(r),
        }
    }
    if feasible.is_empty() {
        return Err(ScheduleFailure::Unschedulable(Diagnosis {
            num_all_nodes,
            prefilter_msg: None,
            rejections,
            preemption_never,
        }));
    }
    if feasible.len() == 1 {
        return Ok(feasible[0].0.clone());
    }

    let owner_count = |usage: &NodeUsage| -> u32 {
        pod.owner
            .as_ref()
            .and_then(|o| usage.owner_counts.get(o).copied())
            .unwrap_or(0)
    };
    let max_owner = feasible
        .iter()
        .map(|(_, _, u)| owner_count(u))
        .max()
        .unwrap_or(0);
    let mut best: Option<(i64, i64, &String)> = None;
    for (name, data, usage) in &feasible {
        let score = least_allocated_score(pod, data, usage) * LEAST_ALLOCATED_WEIGHT
            + spread_score(owner_count(usage), max_owner) * SPREAD_WEIGHT;
        let better = match best {
            None => true,
            Some((bs, bp, bn)) => {
                score > bs
                    || (score == bs
                        && (usage.pod_count < bp || (usage.pod_count == bp && *name < bn)))
            }
        };
        if better {
            best = Some((score, usage.pod_count, name));
        }
    }
    // `feasible` is non-empty, so `best` is set.
    best.map(|(_, _, n)| n.clone())
        .ok_or(ScheduleFailure::NoNodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{node, pod};
    use k8s_openapi::api::core::v1::{Pod, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::sync::Arc;

    fn info(p: Pod) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    fn owned(name: &str, owner: &str) -> Pod {
        let mut p = pod(name, Some("100m"), None);
        p.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: owner.into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        p
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let mut c = Cache::new();
        c.upsert_node(Arc::new(node("a", "4", "8Gi", "110")));
        c.upsert_node(Arc::new(node("b", "4", "8Gi", "110")));
        c.apply_pod(Arc::new(pod("busy", Some("2"), Some("a"))));
        assert_eq!(schedule(&c, &info(pod("p", Some("1"), None))).unwrap(), "b");
    }

    #[test]
    fn least_allocated_score_values() {
        let mut c = Cache::new();
        c.upsert_node(Arc::new(node("a", "1", "1000Mi", "110")));
        let (_, d, u) = c.nodes().next().unwrap();
        // 500m of 1000m cpu free → 50; memory: default 200Mi of 1000Mi → 80. Average 65.
        assert_eq!(
            least_allocated_score(&info(pod("p", Some("500m"), None)), d, u),
            65
        );
        assert_eq!(spread_score(0, 0), 100);
        assert_eq!(spread_score(1, 2), 50);
        assert_eq!(spread_score(2, 2), 0);
    }

    #[test]
    fn same_owner_pods_spread_across_nodes() {
        let mut c = Cache::new();
        for n in ["a", "b", "c"] {
            c.upsert_node(Arc::new(node(n, "64", "256Gi", "110")));
        }
        let mut placed = Vec::new();
        for i in 0..6 {
            let pi = info(owned(&format!("p{i}"), "rs-1"));
            let n = schedule(&c, &pi).unwrap();
            c.assume(pi, &n);
            placed.push(n);
        }
        placed.sort();
        assert_eq!(placed, vec!["a", "a", "b", "b", "c", "c"]);
    }

    #[test]
    fn spreading_beats_a_small_resource_difference() {
        let mut c = Cache::new();
        c.upsert_node(Arc::new(node("a", "64", "256Gi", "110")));
        c.upsert_node(Arc::new(node("b", "64", "256Gi", "110")));
        c.apply_pod(Arc::new(pod("other", Some("1"), Some("b"))));
        let mut first = owned("p0", "rs-1");
        first.spec.as_mut().unwrap().node_name = Some("a".into());
        c.apply_pod(Arc::new(first));
        assert_eq!(schedule(&c, &info(owned("p1", "rs-1"))).unwrap(), "b");
    }

    #[test]
    fn deterministic_tie_break_by_name() {
        let mut c = Cache::new();
        c.upsert_node(Arc::new(node("z", "4", "8Gi", "110")));
        c.upsert_node(Arc::new(node("m", "4", "8Gi", "110")));
        assert_eq!(schedule(&c, &info(pod("p", Some("1"), None))).unwrap(), "m");
    }

    #[test]
    fn unschedulable_diagnosis_counts_every_node() {
        let mut c = Cache::new();
        c.upsert_node(Arc::new(node("small-1", "1", "8Gi", "110")));
        c.upsert_node(Arc::new(node("small-2", "1", "8Gi", "110")));
        let mut tainted = node("tainted", "64", "8Gi", "110");
        tainted.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "dedicated".into(),
            value: Some("infra".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }]);
        c.upsert_node(Arc::new(tainted));
        let err = schedule(&c, &info(pod("p", Some("2"), None))).unwrap_err();
        assert_eq!(
            err.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 2 Insufficient cpu. \
             preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn no_nodes() {
        let c = Cache::new();
        assert_eq!(
            schedule(&c, &info(pod("p", None, None))).unwrap_err(),
            ScheduleFailure::NoNodes
        );
    }

    #[test]
    fn assumed_pods_fill_nodes_until_too_many_pods() {
        let mut c = Cache::new();
        c.upsert_node(Arc::new(node("n", "64", "256Gi", "2")));
        for i in 0..2 {
            let pi = info(pod(&format!("p{i}"), None, None));
            let n = schedule(&c, &pi).unwrap();
            c.assume(pi, &n);
        }
        let err = schedule(&c, &info(pod("p3", None, None))).unwrap_err();
        assert_eq!(
            err.message(),
            "0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }
}
