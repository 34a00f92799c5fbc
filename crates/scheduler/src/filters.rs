//! Filters: pure functions that decide whether one pod may run on one node, with the exact
//! per-node reason strings of the upstream plugins (`K8S: pkg/scheduler/framework/plugins`).
//!
//! The filters run in upstream's default order and the first one that fails decides the
//! node's status: NodeUnschedulable, TaintToleration, NodeAffinity (with `nodeSelector`),
//! NodePorts, NodeResourcesFit. (NodeName never fires: only pods without `spec.nodeName` are
//! scheduled.) Each failure is either *unresolvable* (removing pods from the node cannot help:
//! unschedulable, taints, affinity) or *resolvable* (ports, resources), which decides the
//! preemption part of the failure message (see [`crate::fit_error`]).
//!
//! Node readiness: like upstream, there is no readiness filter. A node whose `Ready`
//! condition is not `True` is treated as carrying the `NoSchedule` taint the node lifecycle
//! controller's TaintNodesByCondition would add (`node.kubernetes.io/not-ready` when `False`
//! or missing, `node.kubernetes.io/unreachable` when `Unknown`), as are the pressure and
//! network conditions. So the message is upstream's ("untolerated taint
//! {node.kubernetes.io/not-ready: }") and pods that tolerate it (DaemonSets) still fit.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Node, NodeSelectorTerm, Pod, Taint, Toleration};

use podvisor_api::defaults::{TAINT_NOT_READY, TAINT_UNREACHABLE};
use podvisor_api::nodeaffinity;
pub use podvisor_api::nodeaffinity::{requirement_matches, term_matches};
use podvisor_api::taints::{TAINT_UNSCHEDULABLE, tolerates};

use crate::resources::Resources;

/// Reason of the NodeUnschedulable filter.
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// Reason of the NodeAffinity filter (nodeSelector and required node affinity).
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// Reason for nodes excluded by the NodeAffinity pre-filter (`matchFields` on the node name).
pub const REASON_PREFILTER_NODE_AFFINITY: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";
/// Pre-filter message when every node-name term of the pod conflicts.
pub const REASON_AFFINITY_CONFLICT: &str = "pod affinity terms conflict";
/// Reason of the NodePorts filter.
pub const REASON_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
/// Reason of the NodeResourcesFit filter when the pod count is exhausted.
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

/// Why a node cannot take the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// One or more upstream reason strings (resources may report several).
    pub reasons: Vec<String>,
    /// True when removing pods from the node cannot help (upstream
    /// `UnschedulableAndUnresolvable`).
    pub unresolvable: bool,
}

impl Rejection {
    fn unresolvable(reason: impl Into<String>) -> Self {
        Rejection {
            reasons: vec![reason.into()],
            unresolvable: true,
        }
    }
}

/// The outcome of one filter.
pub type FilterResult = Result<(), Rejection>;

// ---------------------------------------------------------------------------------------
// Taints and tolerations
// ---------------------------------------------------------------------------------------

/// Whether any toleration tolerates the taint.
pub fn tolerations_tolerate(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// The taints the scheduler sees on a node: `spec.taints` plus the `NoSchedule` taints that
/// TaintNodesByCondition derives from the node's conditions (unless already present).
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let status_of = |ty: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == ty)
            .map(|c| c.status.as_str())
    };
    let mut derived: Vec<&str> = Vec::new();
    match status_of("Ready") {
        Some("True") => {}
        Some("Unknown") => derived.push(TAINT_UNREACHABLE),
        _ => derived.push(TAINT_NOT_READY),
    }
    for (ty, key) in [
        ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "node.kubernetes.io/disk-pressure"),
        ("PIDPressure", "node.kubernetes.io/pid-pressure"),
        (
            "NetworkUnavailable",
            "node.kubernetes.io/network-unavailable",
        ),
    ] {
        if status_of(ty) == Some("True") {
            derived.push(key);
        }
    }
    for key in derived {
        if !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
        {
            taints.push(Taint {
                key: key.to_owned(),
                effect: "NoSchedule".to_owned(),
                value: None,
                time_added: None,
            });
        }
    }
    taints
}

/// TaintToleration: every `NoSchedule`/`NoExecute` taint must be tolerated; reports the
/// first untolerated one (`PreferNoSchedule` is ignored).
pub fn check_taints(tolerations: &[Toleration], taints: &[Taint]) -> FilterResult {
    let untolerated = taints.iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && !tolerations_tolerate(tolerations, t)
    });
    match untolerated {
        None => Ok(()),
        Some(t) => Err(Rejection::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or("")
        ))),
    }
}

/// NodeUnschedulable: a cordoned node only takes pods that tolerate
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn check_unschedulable(tolerations: &[Toleration], unschedulable: bool) -> FilterResult {
    if !unschedulable {
        return Ok(());
    }
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.to_owned(),
        effect: "NoSchedule".to_owned(),
        value: None,
        time_added: None,
    };
    if tolerations_tolerate(tolerations, &taint) {
        Ok(())
    } else {
        Err(Rejection::unresolvable(REASON_UNSCHEDULABLE))
    }
}

// ---------------------------------------------------------------------------------------
// Node affinity and nodeSelector
// ---------------------------------------------------------------------------------------

/// NodeAffinity: every `nodeSelector` pair equals a node label, and (if present) at least one
/// required node affinity term matches.
pub fn check_node_affinity(
    pod: &Pod,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> FilterResult {
    let fits = pod
        .spec
        .as_ref()
        .is_none_or(|s| nodeaffinity::required_matches(s, labels, node_name));
    if fits {
        Ok(())
    } else {
        Err(Rejection::unresolvable(REASON_NODE_AFFINITY))
    }
}

fn required_terms(pod: &Pod) -> Option<&[NodeSelectorTerm]> {
    pod.spec.as_ref().and_then(nodeaffinity::required_terms)
}

/// The NodeAffinity pre-filter: when every required term names nodes through
/// `matchFields metadata.name In`, only those nodes are candidates. `Ok(None)`: all nodes;
/// `Err(msg)`: the terms conflict and no node can match.
pub fn prefilter_node_names(pod: &Pod) -> Result<Option<HashSet<String>>, &'static str> {
    let Some(terms) = required_terms(pod) else {
        return Ok(None);
    };
    if terms.is_empty() {
        return Ok(None);
    }
    let mut names: Option<HashSet<String>> = None;
    for t in terms {
        let mut term_names: Option<HashSet<String>> = None;
        for r in t.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let s: HashSet<String> = r.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    None => s,
                    Some(prev) => prev.intersection(&s).cloned().collect(),
                });
            }
        }
        let Some(tn) = term_names else {
            // A term without a node-name field admits every node (terms are ORed).
            return Ok(None);
        };
        names.get_or_insert_with(HashSet::new).extend(tn);
    }
    match names {
        Some(n) if n.is_empty() => Err(REASON_AFFINITY_CONFLICT),
        other => Ok(other),
    }
}

// ---------------------------------------------------------------------------------------
// Host ports
// ---------------------------------------------------------------------------------------

/// One requested host port: `hostIP` (empty means `0.0.0.0`), protocol (default TCP), port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// Host IP, `0.0.0.0` for all addresses.
    pub ip: String,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The host port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two host port claims collide (same protocol and port, and the same IP or
    /// either one the wildcard).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// The host ports a pod claims (app containers and sidecars).
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            let ip = match p.host_ip.as_deref() {
                None | Some("") => "0.0.0.0".to_owned(),
                Some(ip) => ip.to_owned(),
            };
            Some(HostPort {
                ip,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                port,
            })
        })
        .collect()
}

/// NodePorts: none of the pod's host ports may collide with one in use on the node.
pub fn check_ports<'a>(
    wanted: &[HostPort],
    used: impl Iterator<Item = &'a HostPort> + Clone,
) -> FilterResult {
    if wanted.is_empty() {
        return Ok(());
    }
    for u in used {
        if wanted.iter().any(|w| w.conflicts(u)) {
            return Err(Rejection {
                reasons: vec![REASON_NODE_PORTS.to_owned()],
                unresolvable: false,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------

/// NodeResourcesFit: the pod's request plus what is already requested on the node must fit
/// in allocatable, per resource, and the pod count must stay within `allocatable.pods`.
/// Reports every insufficient resource, in upstream's order.
pub fn check_resources(
    request: &Resources,
    requested: &Resources,
    pod_count: i64,
    allocatable: &Resources,
) -> FilterResult {
    let mut reasons = Vec::new();
    if pod_count + 1 > allocatable.pods {
        reasons.push(REASON_TOO_MANY_PODS.to_owned());
    }
    if !request.is_zero() {
        if allocatable.milli_cpu < request.milli_cpu.saturating_add(requested.milli_cpu) {
            reasons.push("Insufficient cpu".to_owned());
        }
        if allocatable.memory < request.memory.saturating_add(requested.memory) {
            reasons.push("Insufficient memory".to_owned());
        }
        if allocatable.ephemeral_storage
            < request
                .ephemeral_storage
                .saturating_add(requested.ephemeral_storage)
        {
            reasons.push("Insufficient ephemeral-storage".to_owned());
        }
        for (name, want) in &request.scalar {
            if *want == 0 {
                continue;
            }
            let have = allocatable.scalar.get(name).copied().unwrap_or(0);
            let used = requested.scalar.get(name).copied().unwrap_or(0);
            if have < want.saturating_add(used) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            reasons,
            unresolvable: false,
        })
    }
}

/// Tolerations of a pod (empty slice when none).
pub fn tolerations_of(pod: &Pod) -> &[Toleration] {
    pod_tolerations(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorRequirement;
    use k8s_openapi::api::core::v1::{
        Affinity, Container, ContainerPort, NodeAffinity, NodeCondition, NodeSelector, NodeSpec,
        NodeStatus, PodSpec,
    };

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: (!op.is_empty()).then(|| op.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: None,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn pod_with_terms(terms: Vec<NodeSelectorTerm>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                affinity: Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                            node_selector_terms: terms,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn taint_untolerated_reports_key_and_value() {
        let taints = vec![taint("dedicated", "gpu", "NoSchedule")];
        let r = check_taints(&[], &taints).unwrap_err();
        assert_eq!(
            r.reasons,
            vec!["node(s) had untolerated taint {dedicated: gpu}"]
        );
        assert!(r.unresolvable);
        let empty_value = vec![taint(
            "node-role.kubernetes.io/control-plane",
            "",
            "NoSchedule",
        )];
        assert_eq!(
            check_taints(&[], &empty_value).unwrap_err().reasons,
            vec!["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]
        );
    }

    #[test]
    fn prefer_no_schedule_is_ignored_by_the_filter() {
        assert!(check_taints(&[], &[taint("a", "b", "PreferNoSchedule")]).is_ok());
    }

    #[test]
    fn no_execute_taints_must_be_tolerated_too() {
        let taints = [taint("k", "v", "NoExecute")];
        assert!(check_taints(&[], &taints).is_err());
        assert!(check_taints(&[tol("k", "Equal", "v", "NoExecute")], &taints).is_ok());
        assert!(check_taints(&[tol("k", "Equal", "v", "NoSchedule")], &taints).is_err());
    }

    #[test]
    fn first_untolerated_taint_is_reported() {
        let taints = [taint("a", "1", "NoSchedule"), taint("b", "2", "NoSchedule")];
        let r = check_taints(&[tol("a", "Exists", "", "")], &taints).unwrap_err();
        assert_eq!(r.reasons, vec!["node(s) had untolerated taint {b: 2}"]);
    }

    #[test]
    fn unschedulable_node_rejects_unless_tolerated() {
        assert!(check_unschedulable(&[], false).is_ok());
        let r = check_unschedulable(&[], true).unwrap_err();
        assert_eq!(r.reasons, vec![REASON_UNSCHEDULABLE]);
        assert!(
            check_unschedulable(
                &[tol(TAINT_UNSCHEDULABLE, "Exists", "", "NoSchedule")],
                true
            )
            .is_ok()
        );
        assert!(check_unschedulable(&[tol("", "Exists", "", "")], true).is_ok());
    }

    fn node_with_ready(status: Option<&str>) -> Node {
        Node {
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: status.map(|s| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn not_ready_nodes_carry_derived_no_schedule_taints() {
        assert!(effective_taints(&node_with_ready(Some("True"))).is_empty());
        let t = effective_taints(&node_with_ready(Some("False")));
        assert_eq!(t, vec![taint(TAINT_NOT_READY, "", "NoSchedule")]);
        let t = effective_taints(&node_with_ready(Some("Unknown")));
        assert_eq!(t, vec![taint(TAINT_UNREACHABLE, "", "NoSchedule")]);
        let t = effective_taints(&node_with_ready(None));
        assert_eq!(t, vec![taint(TAINT_NOT_READY, "", "NoSchedule")]);
        // Not duplicated when the controller already added it.
        let mut n = node_with_ready(Some("False"));
        n.spec.as_mut().unwrap().taints = Some(vec![taint(TAINT_NOT_READY, "", "NoSchedule")]);
        assert_eq!(effective_taints(&n).len(), 1);
        let r = check_taints(&[], &effective_taints(&node_with_ready(Some("False")))).unwrap_err();
        assert_eq!(
            r.reasons,
            vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
        );
    }

    #[test]
    fn node_selector_must_match_every_pair() {
        let p = Pod {
            spec: Some(PodSpec {
                node_selector: Some(labels(&[("disk", "ssd"), ("zone", "a")])),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            check_node_affinity(
                &p,
                &labels(&[("disk", "ssd"), ("zone", "a"), ("x", "y")]),
                "n"
            )
            .is_ok()
        );
        let r = check_node_affinity(&p, &labels(&[("disk", "ssd")]), "n").unwrap_err();
        assert_eq!(r.reasons, vec![REASON_NODE_AFFINITY]);
        assert!(r.unresolvable);
    }

    #[test]
    fn affinity_operators() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let get = |k: &str| l.get(k).cloned();
        assert!(requirement_matches(&req("zone", "In", &["a", "b"]), get));
        assert!(!requirement_matches(&req("zone", "In", &["b"]), get));
        assert!(!requirement_matches(&req("missing", "In", &["a"]), get));
        assert!(requirement_matches(&req("zone", "NotIn", &["b"]), get));
        assert!(requirement_matches(&req("missing", "NotIn", &["b"]), get));
        assert!(!requirement_matches(&req("zone", "NotIn", &["a"]), get));
        assert!(requirement_matches(&req("zone", "Exists", &[]), get));
        assert!(!requirement_matches(&req("missing", "Exists", &[]), get));
        assert!(requirement_matches(
            &req("missing", "DoesNotExist", &[]),
            get
        ));
        assert!(!requirement_matches(&req("zone", "DoesNotExist", &[]), get));
        assert!(requirement_matches(&req("cores", "Gt", &["4"]), get));
        assert!(!requirement_matches(&req("cores", "Gt", &["8"]), get));
        assert!(requirement_matches(&req("cores", "Lt", &["16"]), get));
        assert!(
            !requirement_matches(&req("zone", "Lt", &["16"]), get),
            "non-integer label"
        );
        assert!(!requirement_matches(&req("missing", "Gt", &["1"]), get));
        assert!(
            !requirement_matches(&req("cores", "Gt", &["x"]), get),
            "invalid value"
        );
        assert!(
            !requirement_matches(&req("zone", "In", &[]), get),
            "In needs values"
        );
        assert!(
            !requirement_matches(&req("zone", "Exists", &["a"]), get),
            "Exists takes none"
        );
    }

    #[test]
    fn terms_are_ored_expressions_anded() {
        let l = labels(&[("zone", "a"), ("disk", "ssd")]);
        let t_both = NodeSelectorTerm {
            match_expressions: Some(vec![req("zone", "In", &["a"]), req("disk", "In", &["hdd"])]),
            match_fields: None,
        };
        let t_zone = NodeSelectorTerm {
            match_expressions: Some(vec![req("zone", "In", &["a"])]),
            match_fields: None,
        };
        assert!(check_node_affinity(&pod_with_terms(vec![t_both.clone()]), &l, "n").is_err());
        assert!(check_node_affinity(&pod_with_terms(vec![t_both, t_zone]), &l, "n").is_ok());
        let empty = NodeSelectorTerm::default();
        assert!(
            check_node_affinity(&pod_with_terms(vec![empty]), &l, "n").is_err(),
            "empty term matches nothing"
        );
    }

    #[test]
    fn match_fields_on_node_name() {
        let t = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
        };
        let p = pod_with_terms(vec![t]);
        assert!(check_node_affinity(&p, &BTreeMap::new(), "n1").is_ok());
        assert!(check_node_affinity(&p, &BTreeMap::new(), "n2").is_err());
        let names = prefilter_node_names(&p).unwrap().unwrap();
        assert_eq!(names, HashSet::from(["n1".to_owned()]));
    }

    #[test]
    fn prefilter_conflict_and_passthrough() {
        let t1 = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![
                req("metadata.name", "In", &["n1"]),
                req("metadata.name", "In", &["n2"]),
            ]),
        };
        assert_eq!(
            prefilter_node_names(&pod_with_terms(vec![t1.clone()])),
            Err(REASON_AFFINITY_CONFLICT)
        );
        let labels_term = NodeSelectorTerm {
            match_expressions: Some(vec![req("zone", "Exists", &[])]),
            match_fields: None,
        };
        assert_eq!(
            prefilter_node_names(&pod_with_terms(vec![t1, labels_term])),
            Ok(None)
        );
        assert_eq!(prefilter_node_names(&Pod::default()), Ok(None));
    }

    fn port(ip: &str, proto: &str, p: i32) -> HostPort {
        HostPort {
            ip: ip.into(),
            protocol: proto.into(),
            port: p,
        }
    }

    #[test]
    fn host_port_conflicts() {
        let used = [port("0.0.0.0", "TCP", 80)];
        assert!(check_ports(&[port("10.0.0.1", "TCP", 80)], used.iter()).is_err());
        assert!(check_ports(&[port("10.0.0.1", "UDP", 80)], used.iter()).is_ok());
        assert!(check_ports(&[port("0.0.0.0", "TCP", 81)], used.iter()).is_ok());
        let used = [port("10.0.0.1", "TCP", 80)];
        assert!(check_ports(&[port("10.0.0.2", "TCP", 80)], used.iter()).is_ok());
        let r = check_ports(&[port("0.0.0.0", "TCP", 80)], used.iter()).unwrap_err();
        assert_eq!(r.reasons, vec![REASON_NODE_PORTS]);
        assert!(!r.unresolvable);
    }

    #[test]
    fn pod_host_ports_default_ip_and_protocol() {
        let p = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![
                        ContainerPort {
                            container_port: 8080,
                            host_port: Some(80),
                            ..Default::default()
                        },
                        ContainerPort {
                            container_port: 9090,
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(pod_host_ports(&p), vec![port("0.0.0.0", "TCP", 80)]);
    }

    fn res(cpu: i64, mem: i64, pods: i64) -> Resources {
        Resources {
            milli_cpu: cpu,
            memory: mem,
            pods,
            ..Default::default()
        }
    }

    #[test]
    fn resources_fit_and_insufficient() {
        let alloc = res(2000, 4096, 110);
        assert!(check_resources(&res(500, 1024, 0), &res(1500, 3072, 0), 3, &alloc).is_ok());
        let r = check_resources(&res(501, 1025, 0), &res(1500, 3072, 0), 3, &alloc).unwrap_err();
        assert_eq!(r.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        assert!(!r.unresolvable);
    }

    #[test]
    fn too_many_pods_even_for_zero_requests() {
        let alloc = res(2000, 4096, 2);
        assert!(check_resources(&res(0, 0, 0), &res(0, 0, 0), 1, &alloc).is_ok());
        let r = check_resources(&res(0, 0, 0), &res(0, 0, 0), 2, &alloc).unwrap_err();
        assert_eq!(r.reasons, vec![REASON_TOO_MANY_PODS]);
    }

    #[test]
    fn extended_resources_are_checked() {
        let mut want = res(0, 0, 0);
        want.scalar.insert("example.com/gpu".into(), 1);
        let alloc = res(1000, 1000, 10);
        let r = check_resources(&want, &res(0, 0, 0), 0, &alloc).unwrap_err();
        assert_eq!(r.reasons, vec!["Insufficient example.com/gpu"]);
        let mut alloc2 = alloc.clone();
        alloc2.scalar.insert("example.com/gpu".into(), 1);
        assert!(check_resources(&want, &res(0, 0, 0), 0, &alloc2).is_ok());
    }
}
