//! The node authorizer: what a node identity (`system:node:<name>` in `system:nodes`) may
//! do. A node may write only its own Node, its own Lease, the status of the pods bound to
//! it, their `probes.podvisor.io/` annotations ([`node_pod_patch_allowed`]), and events.

use super::authz::{Authorizer, Decision, RequestAttributes};
use super::user::UserInfo;

/// The node authorizer (upstream's `Node` authorization mode).
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeAuthorizer;

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, user: &UserInfo, a: &RequestAttributes) -> Decision {
        let Some(node) = user.node_name() else {
            return Decision::no_opinion();
        };
        if a.is_read() {
            return Decision::Allow;
        }
        let own_pod = a.pod_node.as_deref() == Some(node);
        let allowed = match (
            a.group.as_str(),
            a.resource.as_str(),
            a.subresource.as_str(),
        ) {
            // A create is authorized twice: without a name (the body is not read yet), then
            // with the name from its body, so a node may register itself and nothing else.
            ("", "nodes", "" | "status") if a.verb == "create" && a.name.is_empty() => true,
            ("", "nodes", "" | "status") => a.name == node && a.verb != "deletecollection",
            ("coordination.k8s.io", "leases", "") => {
                a.namespace == "kube-node-lease"
                    && (a.name == node || (a.verb == "create" && a.name.is_empty()))
            }
            ("", "pods", "status") => own_pod && matches!(a.verb.as_str(), "update" | "patch"),
            // Tokens of its pods' service accounts: the TokenRequest handler checks that the
            // token is bound to a pod on this node (NodeRestriction).
            ("", "serviceaccounts", "token") => a.verb == "create",
            // A patch of the pod itself is checked once more on its result:
            // [`node_pod_patch_allowed`] lets only `probes.podvisor.io/` annotations change.
            ("", "pods", "") => own_pod && matches!(a.verb.as_str(), "delete" | "patch"),
            ("", "events", "") | ("events.k8s.io", "events", "") => {
                matches!(a.verb.as_str(), "create" | "update" | "patch")
            }
            _ => false,
        };
        if allowed {
            Decision::Allow
        } else {
            Decision::no_opinion()
        }
    }
}

/// Authenticated users may read everything (the policy before RBAC).
#[derive(Debug, Default, Clone, Copy)]
pub struct AuthenticatedReaders;

impl Authorizer for AuthenticatedReaders {
    fn authorize(&self, _: &UserInfo, a: &RequestAttributes) -> Decision {
        if a.is_read() {
            Decision::Allow
        } else {
            Decision::no_opinion()
        }
    }
}

/// The prefix of the pod annotations a node may write on its own pods
/// (docs/design/0002-probe-results.md).
pub const NODE_POD_ANNOTATION_PREFIX: &str = "probes.podvisor.io/";

/// Whether the change of a pod from `old` to `new`, made by a node through a patch of the pod
/// itself, is allowed: only annotations under [`NODE_POD_ANNOTATION_PREFIX`] may be added,
/// changed or removed. Upstream's NodeRestriction forbids nodes any change of pod metadata;
/// this one exception carries the probe history.
pub fn node_pod_patch_allowed(
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Result<(), String> {
    fn strip(v: &serde_json::Value) -> serde_json::Value {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("managedFields");
            meta.remove("resourceVersion");
            let empty = match meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
                Some(a) => {
                    a.retain(|k, _| !k.starts_with(NODE_POD_ANNOTATION_PREFIX));
                    a.is_empty()
                }
                None => false,
            };
            if empty || meta.get("annotations").is_some_and(|a| a.is_null()) {
                meta.remove("annotations");
            }
        }
        v
    }
    if strip(old) == strip(new) {
        Ok(())
    } else {
        Err(format!(
            "a node may change only annotations with the prefix {NODE_POD_ANNOTATION_PREFIX:?} of its pods"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::authz::{AuthorizerChain, PrivilegedGroups};

    fn attrs(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
        pod_node: Option<&str>,
    ) -> RequestAttributes {
        RequestAttributes {
            pod_node: pod_node.map(String::from),
            ..RequestAttributes::resource(verb, group, resource, sub, ns, name)
        }
    }

    #[test]
    fn node_rules() {
        let z = AuthorizerChain::new(vec![
            Arc::new(PrivilegedGroups),
            Arc::new(NodeAuthorizer),
            Arc::new(AuthenticatedReaders),
        ]);
        let node = UserInfo::new("system:node:n1", "u", vec!["system:nodes".into()]);
        let ok = |a: RequestAttributes| z.authorize(&node, &a).allowed();
        const COORD: &str = "coordination.k8s.io";
        let n1 = Some("n1");
        // (allowed, verb, group, resource, subresource, namespace, name, the pod's node)
        for (want, verb, group, resource, sub, ns, name, pod_node) in [
            (true, "list", "", "pods", "", "", "", None),
            (true, "update", "", "nodes", "status", "", "n1", None),
            (false, "update", "", "nodes", "status", "", "n2", None),
            (
                true,
                "update",
                COORD,
                "leases",
                "",
                "kube-node-lease",
                "n1",
                None,
            ),
            (false, "update", COORD, "leases", "", "default", "n1", None),
            (true, "patch", "", "pods", "status", "d", "p", n1),
            (false, "patch", "", "pods", "status", "d", "p", Some("n2")),
            (true, "patch", "", "pods", "", "d", "p", n1),
            (false, "patch", "", "pods", "", "d", "p", Some("n2")),
            (false, "update", "", "pods", "", "d", "p", n1),
            (true, "delete", "", "pods", "", "d", "p", n1),
            (true, "create", "", "events", "", "d", "", None),
            (false, "create", "", "pods", "", "d", "", None),
        ] {
            let a = attrs(verb, group, resource, sub, ns, name, pod_node);
            assert_eq!(ok(a), want, "{verb} {group}/{resource}/{sub} {ns}/{name}");
        }
        let admin = UserInfo::new("admin", "u", vec!["system:masters".into()]);
        assert!(
            z.authorize(&admin, &attrs("delete", "", "nodes", "", "", "x", None))
                .allowed()
        );
    }

    #[test]
    fn node_pod_patches_may_touch_only_probe_annotations() {
        let old = serde_json::json!({
            "metadata": {"name": "p", "resourceVersion": "5",
                         "annotations": {"a": "1", "probes.podvisor.io/web": "{}"}},
            "spec": {"nodeName": "n1"}
        });
        let mut new = old.clone();
        new["metadata"]["resourceVersion"] = "6".into();
        new["metadata"]["annotations"]["probes.podvisor.io/web"] = "{\"x\":1}".into();
        new["metadata"]["annotations"]["probes.podvisor.io/db"] = "{}".into();
        assert!(node_pod_patch_allowed(&old, &new).is_ok());
        // removing every probe annotation, even the whole map
        let bare = serde_json::json!({"metadata": {"name": "p",
            "annotations": {"probes.podvisor.io/web": "{}"}}, "spec": {"nodeName": "n1"}});
        let none = serde_json::json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        assert!(node_pod_patch_allowed(&bare, &none).is_ok());
        assert!(node_pod_patch_allowed(&none, &bare).is_ok());
        // anything else is refused
        let mut other = old.clone();
        other["metadata"]["annotations"]["a"] = "2".into();
        assert!(node_pod_patch_allowed(&old, &other).is_err());
        let mut label = old.clone();
        label["metadata"]["labels"] = serde_json::json!({"x": "y"});
        assert!(node_pod_patch_allowed(&old, &label).is_err());
        let mut spec = old.clone();
        spec["spec"]["nodeName"] = "n2".into();
        assert!(node_pod_patch_allowed(&old, &spec).is_err());
        let mut lookalike = old.clone();
        lookalike["metadata"]["annotations"]["probes.podvisor.io.evil/x"] = "1".into();
        assert!(node_pod_patch_allowed(&old, &lookalike).is_err());
    }
}
