//! Admission that depends on who writes (run on the object as it will be stored):
//!
//! - NodeRestriction (upstream's plugin, 1.32): a node may create only mirror pods bound to
//!   itself, update the status of and delete only pods bound to itself, write only its own
//!   Node (no taint changes on update; no `node-restriction.kubernetes.io/` labels and no
//!   `kubernetes.io`/`k8s.io` labels outside the kubelet's set, such as
//!   `node-role.kubernetes.io/*`), and only its own Lease. podvisor's one exception: a node
//!   may patch the `probes.podvisor.io/` annotations of its own pods
//!   ([`super::node_pod_patch_allowed`], docs/design/0002-probe-results.md).
//! - RBAC escalation: Roles, ClusterRoles and bindings are checked by
//!   [`super::rbac::RbacAuthorizer::check_escalation`].

use serde_json::Value;

use super::user::UserInfo;
use crate::error::ApiError;
use crate::registry::{ResourceKind, Strategy, Subresource};
use crate::server::ApiServer;

/// The annotation of mirror pods.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

fn forbidden(kind: &ResourceKind, name: &str, why: impl std::fmt::Display) -> ApiError {
    let what = if name.is_empty() {
        kind.qualified_resource()
    } else {
        format!("{} {name:?}", kind.qualified_resource())
    };
    ApiError::forbidden(
        kind.plural,
        kind.group,
        name,
        format!("{what} is forbidden: {why}"),
    )
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn node_of(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Admission of a create (`old` is `None`) or update of `new` by `user`.
pub(crate) fn admit_write(
    srv: &ApiServer,
    user: &UserInfo,
    kind: &ResourceKind,
    sub: Option<Subresource>,
    namespace: &str,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    if let Some(node) = user.node_name() {
        node_restriction(node, kind, sub, old, new)?;
    }
    if kind.group == "rbac.authorization.k8s.io" && sub.is_none() && kind.custom.is_none() {
        let authorize = |a: &super::RequestAttributes| srv.authorize(user, a).allowed();
        srv.rbac()
            .check_escalation(&authorize, user, kind.plural, namespace, new)
            .map_err(|why| forbidden(kind, name_of(new), why))?;
    }
    Ok(())
}

/// Admission of the delete of `current` by `user`.
pub(crate) fn admit_delete(
    user: &UserInfo,
    kind: &ResourceKind,
    current: &Value,
) -> Result<(), ApiError> {
    if let Some(node) = user.node_name()
        && kind.strategy == Strategy::Pod
        && node_of(current) != node
    {
        return Err(forbidden(
            kind,
            name_of(current),
            format!("node {node:?} can only delete pods with spec.nodeName set to itself"),
        ));
    }
    Ok(())
}

fn labels(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    v.and_then(|v| v.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The labels added, changed or removed from `old` to `new`.
fn modified_labels(new: Option<&Value>, old: Option<&Value>) -> Vec<String> {
    let (n, o) = (labels(new), labels(old));
    let mut out: Vec<String> = n
        .iter()
        .filter(|(k, v)| o.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(o.keys().filter(|k| !n.contains_key(*k)).cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The labels of kubelets (upstream's `kubeletapis.IsKubeletLabel`).
fn is_kubelet_label(key: &str) -> bool {
    const LABELS: &[&str] = &[
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    ];
    if LABELS.contains(&key) {
        return true;
    }
    let ns = label_namespace(key);
    ["kubelet.kubernetes.io", "node.kubernetes.io"]
        .iter()
        .any(|k| ns == *k || ns.ends_with(&format!(".{k}")))
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map(|(ns, _)| ns).unwrap_or("")
}

/// The labels a node may not set (upstream's `getForbiddenLabels`).
pub fn forbidden_node_labels(modified: &[String]) -> Vec<String> {
    let under = |ns: &str, domain: &str| ns == domain || ns.ends_with(&format!(".{domain}"));
    modified
        .iter()
        .filter(|k| {
            let ns = label_namespace(k);
            under(ns, "node-restriction.kubernetes.io")
                || ((under(ns, "kubernetes.io") || under(ns, "k8s.io")) && !is_kubelet_label(k))
        })
        .cloned()
        .collect()
}

fn node_restriction(
    node: &str,
    kind: &ResourceKind,
    sub: Option<Subresource>,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    let name = name_of(new);
    match (kind.group, kind.plural) {
        ("", "pods") => match (sub, old) {
            (None, None) => {
                let mirror = new
                    .pointer("/metadata/annotations")
                    .and_then(Value::as_object)
                    .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
                if !mirror {
                    return Err(forbidden(
                        kind,
                        name,
                        format!(
                            "pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
                        ),
                    ));
                }
                if node_of(new) != node {
                    return Err(forbidden(
                        kind,
                        name,
                        format!(
                            "node {node:?} can only create pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                Ok(())
            }
            (Some(Subresource::Status), Some(old)) => {
                if node_of(old) != node {
                    return Err(forbidden(
                        kind,
                        name,
                        format!(
                            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                Ok(())
            }
            (None, Some(old)) => {
                if node_of(old) != node {
                    return Err(forbidden(
                        kind,
                        name,
                        format!(
                            "node {node:?} can only patch pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                super::node_pod_patch_allowed(old, new).map_err(|why| forbidden(kind, name, why))
            }
            _ => Ok(()),
        },
        ("", "nodes") => {
            if name != node {
                return Err(forbidden(
                    kind,
                    name,
                    format!("node {node:?} is not allowed to modify node {name:?}"),
                ));
            }
            match old {
                None => {
                    let bad = forbidden_node_labels(&modified_labels(Some(new), None));
                    if !bad.is_empty() {
                        return Err(forbidden(
                            kind,
                            name,
                            format!(
                                "node {node:?} is not allowed to set the following labels: {}",
                                bad.join(", ")
                            ),
                        ));
                    }
                }
                Some(old) => {
                    let taints = |v: &Value| {
                        v.pointer("/spec/taints")
                            .filter(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
                            .cloned()
                    };
                    // A status write cannot change the spec (the status strategy keeps it).
                    if sub != Some(Subresource::Status) && taints(new) != taints(old) {
                        return Err(forbidden(
                            kind,
                            name,
                            format!("node {node:?} is not allowed to modify taints"),
                        ));
                    }
                    let bad = forbidden_node_labels(&modified_labels(Some(new), Some(old)));
                    if !bad.is_empty() {
                        return Err(forbidden(
                            kind,
                            name,
                            format!("is not allowed to modify labels: {}", bad.join(", ")),
                        ));
                    }
                }
            }
            Ok(())
        }
        ("coordination.k8s.io", "leases") => {
            if name != node {
                return Err(forbidden(
                    kind,
                    name,
                    "can only access node lease with the same name as the requesting node",
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{LEASES, NODES, PODS};
    use serde_json::json;

    fn msg(r: Result<(), ApiError>) -> String {
        r.err().map(|e| e.message).unwrap_or_default()
    }

    #[test]
    fn node_restriction_like_upstream() {
        let node = |labels: Value, taints: Value| json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}});
        let base = node(
            json!({"kubernetes.io/hostname": "n1"}),
            json!([{"key": "k", "effect": "NoSchedule"}]),
        );
        assert_eq!(msg(node_restriction("n1", &NODES, None, None, &base)), "");
        let other = json!({"metadata": {"name": "n2"}});
        assert_eq!(
            msg(node_restriction("n1", &NODES, None, None, &other)),
            r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#
        );
        let role = node(
            json!({"kubernetes.io/hostname": "n1", "node-role.kubernetes.io/control-plane": "",
                   "node-restriction.kubernetes.io/x": "y", "example.com/ok": "1",
                   "node.kubernetes.io/exclude-from-external-load-balancers": "true"}),
            json!([]),
        );
        assert_eq!(
            msg(node_restriction("n1", &NODES, None, None, &role)),
            r#"nodes "n1" is forbidden: node "n1" is not allowed to set the following labels: node-restriction.kubernetes.io/x, node-role.kubernetes.io/control-plane"#
        );
        let untainted = node(json!({"kubernetes.io/hostname": "n1"}), json!([]));
        assert_eq!(
            msg(node_restriction(
                "n1",
                &NODES,
                None,
                Some(&base),
                &untainted
            )),
            r#"nodes "n1" is forbidden: node "n1" is not allowed to modify taints"#
        );
        assert_eq!(
            msg(node_restriction(
                "n1",
                &NODES,
                None,
                Some(&untainted),
                &role
            )),
            r#"nodes "n1" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/x, node-role.kubernetes.io/control-plane"#
        );
        let pod =
            |n: &str| json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": n}});
        assert_eq!(
            msg(node_restriction("n1", &PODS, None, None, &pod("n1"))),
            r#"pods "p" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods"#
        );
        assert_eq!(
            msg(node_restriction(
                "n1",
                &PODS,
                Some(Subresource::Status),
                Some(&pod("n2")),
                &pod("n2")
            )),
            r#"pods "p" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#
        );
        assert_eq!(
            msg(node_restriction(
                "n1",
                &PODS,
                Some(Subresource::Status),
                Some(&pod("n1")),
                &pod("n1")
            )),
            ""
        );
        assert_eq!(
            msg(admit_delete(
                &UserInfo::new("system:node:n1", "", vec!["system:nodes".into()]),
                &PODS,
                &pod("n2")
            )),
            r#"pods "p" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself"#
        );
        let lease = json!({"metadata": {"name": "n2", "namespace": "kube-node-lease"}});
        assert_eq!(
            msg(node_restriction("n1", &LEASES, None, None, &lease)),
            r#"leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same name as the requesting node"#
        );
    }
}
