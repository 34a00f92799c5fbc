//! The scheduler cache: nodes and the pods assigned to them, with per-node usage.
//!
//! # States of a pod in the cache
//!
//! ```text
//!            assume(pod, node)              watch: pod bound to node
//!  (absent) ─────────────────▶ Assumed ──────────────────────────▶ Bound
//!     ▲                          │ forget (bind failed)              │ watch: pod deleted
//!     └──────────────────────────┴───────────────────────────────────┘ or terminal
//! ```
//!
//! * `assume` is called by the scheduling loop the moment it picks a node, before the bind
//!   request is sent, so the next pod already sees the node's resources as taken (throughput
//!   is not limited by watch latency).
//! * `forget` undoes an assumption when the bind fails. It never touches a `Bound` pod.
//! * A pod seen through the watch with `spec.nodeName` set and a non-terminal phase is
//!   `Bound` (an assumption for the same pod is confirmed, or moved if the API says another
//!   node). A terminal (`Succeeded`/`Failed`) or deleted pod leaves the cache: it no longer
//!   uses the node's resources. Pods being deleted keep their resources until they are gone.
//!
//! Usage is kept per node *name*, so pods bound to a node that the cache has not seen yet
//! (watch ordering) are counted as soon as the node appears.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::filters::{HostPort, effective_taints, pod_host_ports};
use crate::resources::{Resources, node_allocatable, pod_requests};

/// Everything the scheduler needs about a pod, computed once per pod version.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod object.
    pub pod: Arc<Pod>,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// Effective request (filters).
    pub requests: Resources,
    /// Request with the scoring defaults for containers without one.
    pub non_zero: Resources,
    /// Host ports claimed.
    pub host_ports: Vec<HostPort>,
    /// UID of the controlling owner (`ownerReferences[].controller == true`).
    pub owner: Option<String>,
    /// Quantities that could not be parsed (counted as zero).
    pub invalid_quantities: Vec<String>,
}

impl PodInfo {
    /// Precomputes the scheduling view of a pod.
    pub fn new(pod: Arc<Pod>) -> Self {
        let mut invalid = Vec::new();
        let requests = pod_requests(&pod, false, &mut invalid);
        let non_zero = pod_requests(&pod, true, &mut Vec::new());
        let host_ports = pod_host_ports(&pod);
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            requests,
            non_zero,
            host_ports,
            owner,
            invalid_quantities: invalid,
            pod,
        }
    }
}

/// What the scheduler needs about a node, computed once per node version.
#[derive(Debug, Clone)]
pub struct NodeData {
    /// The node object.
    pub node: Arc<Node>,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// `spec.taints` plus condition-derived `NoSchedule` taints.
    pub taints: Vec<Taint>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
}

impl NodeData {
    /// Precomputes the scheduling view of a node.
    pub fn new(node: Arc<Node>) -> Self {
        let allocatable = node_allocatable(&node, &mut Vec::new());
        NodeData {
            allocatable,
            taints: effective_taints(&node),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            node,
        }
    }

    /// Whether a change from `self` to `other` can make a pod fit that did not before (or
    /// the reverse); heartbeats and other status noise are not relevant.
    pub fn scheduling_relevant_change(&self, other: &NodeData) -> bool {
        self.allocatable != other.allocatable
            || self.taints != other.taints
            || self.labels != other.labels
            || self.unschedulable != other.unschedulable
    }
}

/// The resources used on one node by assigned and assumed pods.
#[derive(Debug, Clone, Default)]
pub struct NodeUsage {
    /// Sum of pod requests.
    pub requested: Resources,
    /// Sum of non-zero (scoring) requests.
    pub non_zero_requested: Resources,
    /// Number of pods.
    pub pod_count: i64,
    /// Host ports in use, with multiplicity.
    pub used_ports: HashMap<HostPort, u32>,
    /// Pods per controlling owner UID.
    pub owner_counts: HashMap<String, u32>,
}

impl NodeUsage {
    fn add(&mut self, p: &PodInfo) {
        self.requested.add(&p.requests);
        self.non_zero_requested.add(&p.non_zero);
        self.pod_count += 1;
        for hp in &p.host_ports {
            *self.used_ports.entry(hp.clone()).or_insert(0) += 1;
        }
        if let Some(o) = &p.owner {
            *self.owner_counts.entry(o.clone()).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, p: &PodInfo) {
        self.requested.sub(&p.requests);
        self.non_zero_requested.sub(&p.non_zero);
        self.pod_count -= 1;
        for hp in &p.host_ports {
            if let Some(n) = self.used_ports.get_mut(hp) {
                *n -= 1;
                if *n == 0 {
                    self.used_ports.remove(hp);
                }
            }
        }
        if let Some(o) = &p.owner
            && let Some(n) = self.owner_counts.get_mut(o)
        {
            *n -= 1;
            if *n == 0 {
                self.owner_counts.remove(o);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.pod_count == 0
    }
}

/// One node slot: the node (once seen) and its usage.
#[derive(Debug, Clone, Default)]
pub struct NodeEntry {
    /// The node, `None` while only pods referring to it are known.
    pub data: Option<NodeData>,
    /// Resources used on it.
    pub usage: NodeUsage,
}

#[derive(Debug, Clone)]
struct CachedPod {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

/// What a pod event did to the cache, so the caller can decide whether to wake
/// unschedulable pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodChange {
    /// Nothing changed in usage.
    None,
    /// Usage went up (pod added or grew).
    Added,
    /// Usage went down somewhere (pod removed, moved or shrank): unschedulable pods may fit.
    Freed,
}

/// The cache. See the module docs for the pod states.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: BTreeMap<String, NodeEntry>,
    pods: HashMap<String, CachedPod>,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nodes that exist, in name order.
    pub fn nodes(&self) -> impl Iterator<Item = (&String, &NodeData, &NodeUsage)> {
        self.nodes
            .iter()
            .filter_map(|(n, e)| e.data.as_ref().map(|d| (n, d, &e.usage)))
    }

    /// Number of nodes that exist.
    pub fn node_count(&self) -> usize {
        self.nodes.values().filter(|e| e.data.is_some()).count()
    }

    /// A node's entry.
    pub fn node(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.get(name)
    }

    /// Adds or replaces a node. Returns true if the change is relevant for pending pods.
    pub fn upsert_node(&mut self, node: Arc<Node>) -> bool {
        let Some(name) = node.metadata.name.clone() else {
            return false;
        };
        let data = NodeData::new(node);
        let entry = self.nodes.entry(name).or_default();
        let relevant = match &entry.data {
            None => true,
            Some(old) => old.scheduling_relevant_change(&data),
        };
        entry.data = Some(data);
        relevant
    }

    /// Removes a node (its pods stay counted under its name until they go away).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(e) = self.nodes.get_mut(name) {
            e.data = None;
            if e.usage.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    /// Whether the pod is in the cache (assumed or bound).
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Whether the pod is assumed (bind in flight or not yet confirmed by the watch).
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    fn add_usage(&mut self, node: &str, info: &PodInfo) {
        self.nodes
            .entry(node.to_owned())
            .or_default()
            .usage
            .add(info);
    }

    fn remove_usage(&mut self, node: &str, info: &PodInfo) {
        if let Some(e) = self.nodes.get_mut(node) {
            e.usage.remove(info);
            if e.data.is_none() && e.usage.is_empty() {
                self.nodes.remove(node);
            }
        }
    }

    /// Reserves `node` for the pod at once.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        if let Some(old) = self.pods.remove(&info.uid) {
            self.remove_usage(&old.node, &old.info);
        }
        self.add_usage(node, &info);
        self.pods.insert(
            info.uid.clone(),
            CachedPod {
                info,
                node: node.to_owned(),
                assumed: true,
            },
        );
    }

    /// Drops an assumption after a failed bind. Bound pods are left alone.
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|p| p.assumed)
            && let Some(old) = self.pods.remove(uid)
        {
            self.remove_usage(&old.node, &old.info);
        }
    }

    /// Applies a pod seen through the watch: bound and non-terminal pods are counted on
    /// their node; anything else is removed.
    pub fn apply_pod(&mut self, pod: Arc<Pod>) -> PodChange {
        let Some(uid) = pod.metadata.uid.clone() else {
            return PodChange::None;
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        );
        match node {
            Some(node) if !terminal => {
                let info = Arc::new(PodInfo::new(pod));
                let change = match self.pods.remove(&uid) {
                    None => PodChange::Added,
                    Some(old) => {
                        let shrank = old.node != node
                            || old.info.requests != info.requests
                            || old.info.host_ports != info.host_ports;
                        self.remove_usage(&old.node, &old.info);
                        if shrank {
                            PodChange::Freed
                        } else {
                            PodChange::None
                        }
                    }
                };
                self.add_usage(&node, &info);
                self.pods.insert(
                    uid,
                    CachedPod {
                        info,
                        node,
                        assumed: false,
                    },
                );
                change
            }
            _ => {
                // Unassigned pods are only removed if they were bound; an assumed pod whose
                // binding has not shown up in the watch yet stays reserved.
                match self.pods.get(&uid) {
                    Some(p) if !p.assumed || terminal => self.remove_pod(&uid),
                    _ => PodChange::None,
                }
            }
        }
    }

    /// Removes a pod (deleted).
    pub fn remove_pod(&mut self, uid: &str) -> PodChange {
        match self.pods.remove(uid) {
            Some(old) => {
                self.remove_usage(&old.node, &old.info);
                PodChange::Freed
            }
            None => PodChange::None,
        }
    }

    /// UIDs of all cached pods (for re-list reconciliation).
    pub fn pod_uids(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    /// Node names known (with or without a Node object).
    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, e)| e.data.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The node a cached pod is on.
    pub fn pod_node(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|p| p.node.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resources::tests::container;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) fn node(name: &str, cpu: &str, mem: &str, pods: &str) -> Node {
        podvisor_testkit::node(name)
            .allocatable(&[("cpu", cpu), ("memory", mem), ("pods", pods)])
            .condition("Ready", "True")
            .with(|n| n.spec = Some(NodeSpec::default()))
            .build()
    }

    pub(crate) fn pod(name: &str, cpu: Option<&str>, node: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("default".to_owned()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container("c", cpu, None)],
                node_name: node.map(str::to_owned),
                ..Default::default()
            }),
            status: Some(PodStatus::default()),
        }
    }

    fn usage<'a>(c: &'a Cache, n: &str) -> &'a NodeUsage {
        &c.node(n).unwrap().usage
    }

    #[test]
    fn assume_reserves_and_forget_releases() {
        let mut c = Cache::new();
        c.upsert_node(Arc::new(node("n1", "2", "4Gi", "110")));
        let info = Arc::new(PodInfo::new(Arc::new(pod("p", Some("500m"), None))));
        c.assume(info, "n1");
        assert_eq!(usage(&c, "n1").requested.milli_cpu, 500);
        assert_eq!(usage(&c, "n1").pod_count, 1);
        assert!(c.is_assumed("uid-p"));
        c.forget("uid-p");
        assert_eq!(usage(&c, "n1").requested.milli_cpu, 0);
        assert!(!c.contains_pod("uid-p"));
    }

    /// A cache with node `n1` (2 cpu) and pod `p` requesting `cpu` assumed on it.
    fn assumed_on_n1(cpu: &str) -> Cache {
        let mut c = Cache::new();
        c.upsert_node(Arc::new(node("n1", "2", "4Gi", "110")));
        c.assume(
            Arc::new(PodInfo::new(Arc::new(pod("p", Some(cpu), None)))),
            "n1",
        );
        c
    }

    #[test]
    fn watch_confirms_assumption_without_double_counting() {
        let mut c = assumed_on_n1("500m");
        c.apply_pod(Arc::new(pod("p", Some("500m"), Some("n1"))));
        assert_eq!(usage(&c, "n1").requested.milli_cpu, 500);
        assert!(!c.is_assumed("uid-p"));
        // forget after confirmation is a no-op.
        c.forget("uid-p");
        assert_eq!(usage(&c, "n1").pod_count, 1);
    }

    #[test]
    fn stale_pending_version_does_not_drop_an_assumption() {
        let mut c = assumed_on_n1("1");
        assert_eq!(
            c.apply_pod(Arc::new(pod("p", Some("1"), None))),
            PodChange::None
        );
        assert!(c.is_assumed("uid-p"));
    }

    #[test]
    fn terminal_and_deleted_pods_free_resources() {
        let mut c = Cache::new();
        c.upsert_node(Arc::new(node("n1", "2", "4Gi", "110")));
        c.apply_pod(Arc::new(pod("a", Some("1"), Some("n1"))));
        c.apply_pod(Arc::new(pod("b", Some("1"), Some("n1"))));
        assert_eq!(usage(&c, "n1").requested.milli_cpu, 2000);
        let mut done = pod("a", Some("1"), Some("n1"));
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(c.apply_pod(Arc::new(done)), PodChange::Freed);
        assert_eq!(c.remove_pod("uid-b"), PodChange::Freed);
        assert_eq!(usage(&c, "n1").requested.milli_cpu, 0);
    }

    #[test]
    fn pods_on_unknown_nodes_count_when_the_node_appears() {
        let mut c = Cache::new();
        c.apply_pod(Arc::new(pod("a", Some("1"), Some("late"))));
        assert_eq!(c.node_count(), 0);
        c.upsert_node(Arc::new(node("late", "2", "4Gi", "110")));
        assert_eq!(c.node_count(), 1);
        assert_eq!(usage(&c, "late").requested.milli_cpu, 1000);
        c.remove_node("late");
        assert_eq!(c.node_count(), 0);
        c.remove_pod("uid-a");
        assert!(c.node("late").is_none());
    }

    #[test]
    fn heartbeat_only_node_updates_are_not_relevant() {
        let mut c = Cache::new();
        assert!(c.upsert_node(Arc::new(node("n1", "2", "4Gi", "110"))));
        assert!(!c.upsert_node(Arc::new(node("n1", "2", "4Gi", "110"))));
        assert!(c.upsert_node(Arc::new(node("n1", "4", "4Gi", "110"))));
    }
}
