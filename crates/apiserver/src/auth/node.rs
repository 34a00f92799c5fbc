//! The node authorizer (upstream's `Node` authorization mode with
//! `AuthorizeNodeWithSelectors`, 1.32): what a node identity (`system:node:<name>` in
//! `system:nodes`) may do.
//!
//! The graph: every pod bound to a node (`spec.nodeName`) links the node to the pod, to its
//! service account, and to the Secrets, ConfigMaps and PersistentVolumeClaims it references
//! (volumes, projected sources, env, envFrom, image pull secrets, ephemeral volumes); a
//! bound claim links on to its PersistentVolume. A node may:
//! - get, list and watch (by name) only the Secrets and ConfigMaps reachable from it; get
//!   only reachable pods, claims and volumes; update claim status of reachable claims;
//!   create tokens only for reachable service accounts;
//! - list and watch pods only with its own `spec.nodeName=<node>` field selector;
//! - read only its own Node; create, update and patch Nodes and their status (the
//!   NodeRestriction admission then limits it to its own, and forbids taint changes and
//!   restricted labels); never delete a Node;
//! - use only its own Lease in `kube-node-lease`;
//! - everything else: upstream's static node rules ([`super::rbac::bootstrap::node_rules`]),
//!   plus one podvisor exception: `patch` of its own pods, limited by admission to the
//!   `probes.podvisor.io/` annotations ([`node_pod_patch_allowed`],
//!   docs/design/0002-probe-results.md).
//!
//! The graph follows the store through two [`Mirror`]s (pods, claims); lookups are hash
//! probes under a read lock, cheap at 10,000 pods.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use serde_json::Value;

use super::authz::{Authorizer, Decision, RequestAttributes};
use super::mirror::{Change, Follower, Mirror};
use super::rbac::Rule;
use super::user::UserInfo;
use crate::error::ApiError;
use crate::ops::Core;
use crate::registry::{PERSISTENTVOLUMECLAIMS, PODS, ResourceKind};

/// A kind of vertex in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vertex {
    /// A pod.
    Pod,
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
    /// A PersistentVolumeClaim.
    Pvc,
    /// A PersistentVolume (cluster-scoped).
    Pv,
    /// A ServiceAccount.
    ServiceAccount,
}

type Key = (Vertex, String, String);

/// What one pod contributes to the graph.
#[derive(Debug, Clone, Default)]
struct PodEntry {
    node: String,
    uid: String,
    refs: Vec<Key>,
}

/// Pods whose removal the graph remembers (their node may still append to their timeline).
const REMEMBERED_REMOVED_PODS: usize = 4_096;

/// The node graph.
#[derive(Debug, Default)]
pub struct Graph {
    pods: HashMap<String, PodEntry>,
    edges: HashMap<Key, HashMap<String, u32>>,
    /// Claim (namespace, name) → the PersistentVolume it is bound to.
    claim_volume: HashMap<(String, String), String>,
    /// PersistentVolume → the claims bound to it.
    volume_claims: HashMap<String, HashSet<(String, String)>>,
    /// Pod UID → its node, for the bound pods and the last [`REMEMBERED_REMOVED_PODS`]
    /// removed ones (a node's last timeline entries of a pod may arrive after its removal).
    uid_node: HashMap<String, String>,
    /// The removed pods in `uid_node`, oldest first.
    removed: std::collections::VecDeque<String>,
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn array<'a>(v: &'a Value, p: &str) -> impl Iterator<Item = &'a Value> + 'a {
    v.pointer(p).and_then(Value::as_array).into_iter().flatten()
}

/// The objects a pod references (upstream's `VisitPodSecretNames`,
/// `VisitPodConfigmapNames`, claims, and the service account).
pub fn pod_references(pod: &Value) -> Vec<Key> {
    let ns = str_at(pod, "/metadata/namespace").to_string();
    let pod_name = str_at(pod, "/metadata/name");
    let mut out: Vec<Key> = Vec::new();
    let mut add = |v: Vertex, name: &str| {
        if !name.is_empty() {
            let k = (v, ns.clone(), name.to_string());
            if !out.contains(&k) {
                out.push(k);
            }
        }
    };
    add(
        Vertex::ServiceAccount,
        str_at(pod, "/spec/serviceAccountName"),
    );
    for s in array(pod, "/spec/imagePullSecrets") {
        add(Vertex::Secret, str_at(s, "/name"));
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in array(pod, &format!("/spec/{list}")) {
            for e in array(c, "/env") {
                add(Vertex::Secret, str_at(e, "/valueFrom/secretKeyRef/name"));
                add(
                    Vertex::ConfigMap,
                    str_at(e, "/valueFrom/configMapKeyRef/name"),
                );
            }
            for e in array(c, "/envFrom") {
                add(Vertex::Secret, str_at(e, "/secretRef/name"));
                add(Vertex::ConfigMap, str_at(e, "/configMapRef/name"));
            }
        }
    }
    for vol in array(pod, "/spec/volumes") {
        add(Vertex::Secret, str_at(vol, "/secret/secretName"));
        add(Vertex::ConfigMap, str_at(vol, "/configMap/name"));
        for src in array(vol, "/projected/sources") {
            add(Vertex::Secret, str_at(src, "/secret/name"));
            add(Vertex::ConfigMap, str_at(src, "/configMap/name"));
        }
        add(Vertex::Pvc, str_at(vol, "/persistentVolumeClaim/claimName"));
        if vol.get("ephemeral").is_some_and(|e| !e.is_null()) {
            add(Vertex::Pvc, &format!("{pod_name}-{}", str_at(vol, "/name")));
        }
        add(
            Vertex::Secret,
            str_at(vol, "/csi/nodePublishSecretRef/name"),
        );
        for plugin in [
            "azureFile/secretName",
            "cephfs/secretRef/name",
            "cinder/secretRef/name",
            "flexVolume/secretRef/name",
            "iscsi/secretRef/name",
            "rbd/secretRef/name",
            "scaleIO/secretRef/name",
            "storageos/secretRef/name",
        ] {
            add(Vertex::Secret, str_at(vol, &format!("/{plugin}")));
        }
    }
    out
}

impl Graph {
    fn remove_pod(&mut self, key: &str) {
        let Some(old) = self.pods.remove(key) else {
            return;
        };
        self.uid_node.remove(&old.uid);
        for r in old.refs {
            if let Some(nodes) = self.edges.get_mut(&r) {
                if let Some(n) = nodes.get_mut(&old.node) {
                    *n -= 1;
                    if *n == 0 {
                        nodes.remove(&old.node);
                    }
                }
                if nodes.is_empty() {
                    self.edges.remove(&r);
                }
            }
        }
    }

    /// The pod stored under `key` was removed: its node is remembered for a while.
    fn pod_removed(&mut self, key: &str) {
        let Some((uid, node)) = self.pods.get(key).map(|p| (p.uid.clone(), p.node.clone())) else {
            return;
        };
        self.remove_pod(key);
        if uid.is_empty() {
            return;
        }
        self.uid_node.insert(uid.clone(), node);
        self.removed.push_back(uid);
        if self.removed.len() > REMEMBERED_REMOVED_PODS
            && let Some(gone) = self.removed.pop_front()
        {
            self.uid_node.remove(&gone);
        }
    }

    /// Adds or replaces the pod stored under `key`.
    pub fn put_pod(&mut self, key: &str, pod: &Value) {
        self.remove_pod(key);
        let node = str_at(pod, "/spec/nodeName");
        if node.is_empty() {
            return;
        }
        let mut refs = pod_references(pod);
        refs.push((
            Vertex::Pod,
            str_at(pod, "/metadata/namespace").to_string(),
            str_at(pod, "/metadata/name").to_string(),
        ));
        for r in &refs {
            *self
                .edges
                .entry(r.clone())
                .or_default()
                .entry(node.to_string())
                .or_default() += 1;
        }
        let uid = str_at(pod, "/metadata/uid").to_string();
        if !uid.is_empty() {
            self.uid_node.insert(uid.clone(), node.to_string());
        }
        self.pods.insert(
            key.to_string(),
            PodEntry {
                node: node.to_string(),
                uid,
                refs,
            },
        );
    }

    fn remove_claim(&mut self, claim: &(String, String)) {
        if let Some(pv) = self.claim_volume.remove(claim)
            && let Some(set) = self.volume_claims.get_mut(&pv)
        {
            set.remove(claim);
            if set.is_empty() {
                self.volume_claims.remove(&pv);
            }
        }
    }

    fn put_claim(&mut self, pvc: &Value) {
        let claim = (
            str_at(pvc, "/metadata/namespace").to_string(),
            str_at(pvc, "/metadata/name").to_string(),
        );
        self.remove_claim(&claim);
        let pv = str_at(pvc, "/spec/volumeName");
        if !pv.is_empty() {
            self.volume_claims
                .entry(pv.to_string())
                .or_default()
                .insert(claim.clone());
            self.claim_volume.insert(claim, pv.to_string());
        }
    }

    /// Whether the object is reachable from `node`.
    pub fn has_path(&self, node: &str, v: Vertex, namespace: &str, name: &str) -> bool {
        let linked = |v: Vertex, ns: &str, n: &str| {
            self.edges
                .get(&(v, ns.to_string(), n.to_string()))
                .is_some_and(|nodes| nodes.contains_key(node))
        };
        match v {
            Vertex::Pv => self
                .volume_claims
                .get(name)
                .is_some_and(|claims| claims.iter().any(|(ns, n)| linked(Vertex::Pvc, ns, n))),
            v => linked(v, namespace, name),
        }
    }

    /// Whether the pod with `uid` is (or, recently removed, was) bound to `node`.
    pub fn pod_uid_on(&self, node: &str, uid: &str) -> bool {
        self.uid_node.get(uid).is_some_and(|n| n == node)
    }

    /// How many pods the graph holds.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }
}

/// The graph, fed by the store.
#[derive(Debug, Default)]
pub struct NodeGraph {
    graph: RwLock<Graph>,
    mirrors: OnceLock<Vec<Arc<Mirror>>>,
}

static POD_KINDS: [&ResourceKind; 1] = [&PODS];
static CLAIM_KINDS: [&ResourceKind; 1] = [&PERSISTENTVOLUMECLAIMS];
const POD_PREFIX: &str = "/registry/core/pods/";
const CLAIM_PREFIX: &str = "/registry/core/persistentvolumeclaims/";

#[async_trait::async_trait]
impl Follower for NodeGraph {
    async fn apply(&self, _: &Core, changes: Vec<Change>) {
        let Ok(mut g) = self.graph.write() else {
            return;
        };
        for c in changes {
            match c {
                Change::Reset { prefix, objects } if prefix == POD_PREFIX => {
                    g.pods.clear();
                    g.edges.clear();
                    g.uid_node.clear();
                    g.removed.clear();
                    for (k, v) in objects {
                        g.put_pod(&k, &v);
                    }
                }
                Change::Reset { objects, .. } => {
                    g.claim_volume.clear();
                    g.volume_claims.clear();
                    for (_, v) in objects {
                        g.put_claim(&v);
                    }
                }
                Change::Put(k, v) if k.starts_with(POD_PREFIX) => g.put_pod(&k, &v),
                Change::Put(_, v) => g.put_claim(&v),
                Change::Delete(k) if k.starts_with(POD_PREFIX) => g.pod_removed(&k),
                Change::Delete(k) => {
                    if let Some((ns, name)) =
                        k.strip_prefix(CLAIM_PREFIX).and_then(|r| r.split_once('/'))
                    {
                        g.remove_claim(&(ns.to_string(), name.to_string()));
                    }
                }
            }
        }
    }
}

impl NodeGraph {
    /// Loads the graph and follows the store from then on.
    pub async fn start(self: &Arc<Self>, core: &Core) -> Result<(), ApiError> {
        let pods = Mirror::start(core, POD_PREFIX, &POD_KINDS, self.clone()).await?;
        let claims = Mirror::start(core, CLAIM_PREFIX, &CLAIM_KINDS, self.clone()).await?;
        let _ = self.mirrors.set(vec![pods, claims]);
        Ok(())
    }

    /// Waits (at most `timeout`) until the graph reflects every pod and claim write made
    /// through this server; whether it does.
    pub async fn caught_up(&self, core: &Core, timeout: Duration) -> bool {
        let Some(mirrors) = self.mirrors.get() else {
            return true;
        };
        for (m, kind) in mirrors.iter().zip([&PODS, &PERSISTENTVOLUMECLAIMS]) {
            let last = core.storage.marks.last(kind);
            if m.applied() < last && !m.caught_up(last, timeout).await {
                return false;
            }
        }
        true
    }

    /// Runs `f` on the graph.
    pub fn with<T>(&self, f: impl FnOnce(&Graph) -> T) -> T {
        match self.graph.read() {
            Ok(g) => f(&g),
            Err(g) => f(&g.into_inner()),
        }
    }

    /// A graph built from `pods` at once (tests, benchmarks).
    pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a Value>) -> NodeGraph {
        let mut g = Graph::default();
        for p in pods {
            let key = PODS.key(
                Some(str_at(p, "/metadata/namespace")),
                str_at(p, "/metadata/name"),
            );
            g.put_pod(&key, p);
        }
        NodeGraph {
            graph: RwLock::new(g),
            mirrors: OnceLock::new(),
        }
    }
}

/// The node authorizer.
#[derive(Debug)]
pub struct NodeAuthorizer {
    graph: Arc<NodeGraph>,
    rules: Vec<Rule>,
}

fn no(reason: impl Into<String>) -> Decision {
    Decision::NoOpinion(reason.into())
}

impl NodeAuthorizer {
    /// A node authorizer over `graph`.
    pub fn new(graph: Arc<NodeGraph>) -> NodeAuthorizer {
        NodeAuthorizer {
            graph,
            rules: super::rbac::bootstrap::node_rules(),
        }
    }

    fn static_rules(&self, a: &RequestAttributes) -> Decision {
        if self.rules.iter().any(|r| r.allows(a)) {
            Decision::Allow
        } else {
            Decision::no_opinion()
        }
    }

    fn related(&self, node: &str, v: Vertex, a: &RequestAttributes) -> Decision {
        if a.name.is_empty() {
            return no("No Object name found");
        }
        if self
            .graph
            .with(|g| g.has_path(node, v, &a.namespace, &a.name))
        {
            Decision::Allow
        } else {
            no(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }

    fn get(&self, node: &str, v: Vertex, a: &RequestAttributes) -> Decision {
        if a.verb != "get" {
            return no("can only get individual resources of this type");
        }
        if !a.subresource.is_empty() {
            return no("cannot get subresource");
        }
        self.related(node, v, a)
    }

    fn read_namespaced(&self, node: &str, v: Vertex, a: &RequestAttributes) -> Decision {
        if !a.is_read() {
            return no("can only read resources of this type");
        }
        if !a.subresource.is_empty() {
            return no("cannot read subresource");
        }
        if a.namespace.is_empty() {
            return no("can only read namespaced object of this type");
        }
        self.related(node, v, a)
    }

    fn lease(node: &str, a: &RequestAttributes) -> Decision {
        if !matches!(
            a.verb.as_str(),
            "get" | "create" | "update" | "patch" | "delete"
        ) {
            return no("can only get, create, update, patch, or delete a node lease");
        }
        if a.namespace != "kube-node-lease" {
            return no("can only access leases in the \"kube-node-lease\" system namespace");
        }
        if a.verb != "create" && a.name != node {
            return no("can only access node lease with the same name as the requesting node");
        }
        Decision::Allow
    }

    fn node(node: &str, a: &RequestAttributes) -> Decision {
        match (a.subresource.as_str(), a.verb.as_str()) {
            ("", "create" | "update" | "patch") | ("status", "update" | "patch") => Decision::Allow,
            ("", "get" | "list" | "watch") if a.name == node => Decision::Allow,
            ("", "get" | "list" | "watch") if a.name.is_empty() => no(format!(
                "node '{node}' cannot read all nodes, only its own Node object"
            )),
            ("", "get" | "list" | "watch") => no(format!(
                "node '{node}' cannot read '{}', only its own Node object",
                a.name
            )),
            _ => Decision::no_opinion(),
        }
    }

    fn pod(&self, node: &str, a: &RequestAttributes) -> Decision {
        match (a.subresource.as_str(), a.verb.as_str()) {
            ("", "get") => self.get(node, Vertex::Pod, a),
            ("", "list" | "watch") => {
                let own = a
                    .field_selector
                    .as_deref()
                    .and_then(|s| podvisor_api::FieldSelector::parse(s).ok())
                    .is_some_and(|s| {
                        s.requirements
                            .iter()
                            .any(|r| r.field == "spec.nodeName" && !r.negate && r.value == node)
                    });
                if own {
                    Decision::Allow
                } else if !a.name.is_empty() {
                    self.related(node, Vertex::Pod, a)
                } else {
                    no("can only list/watch pods with spec.nodeName field selector")
                }
            }
            // podvisor: `patch` carries the probe annotations (admission limits it).
            ("", "create" | "delete" | "patch")
            | ("status", "update" | "patch")
            | ("eviction", "create") => Decision::Allow,
            _ => Decision::no_opinion(),
        }
    }
}

impl NodeAuthorizer {
    /// podvisor: a node appends entries to the timelines of the pods bound to it (also
    /// shortly after their removal); it reads none.
    fn timeline(&self, node: &str, a: &RequestAttributes) -> Decision {
        if (a.subresource.as_str(), a.verb.as_str()) != ("entries", "create") {
            return no("can only append entries to timelines");
        }
        if self.graph.with(|g| g.pod_uid_on(node, &a.name)) {
            Decision::Allow
        } else {
            no(format!(
                "no relationship found between node '{node}' and the pod with UID {:?}",
                a.name
            ))
        }
    }
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, user: &UserInfo, a: &RequestAttributes) -> Decision {
        let Some(node) = user.node_name() else {
            return Decision::no_opinion();
        };
        if node.is_empty() {
            return no(format!("unknown node for user {:?}", user.name));
        }
        if !a.resource_request {
            return self.static_rules(a);
        }
        match (a.group.as_str(), a.resource.as_str()) {
            ("", "secrets") => self.read_namespaced(node, Vertex::Secret, a),
            ("", "configmaps") => self.read_namespaced(node, Vertex::ConfigMap, a),
            ("", "persistentvolumeclaims") if a.subresource == "status" => {
                if !matches!(a.verb.as_str(), "update" | "patch") {
                    return no("can only get/update/patch this type");
                }
                self.related(node, Vertex::Pvc, a)
            }
            ("", "persistentvolumeclaims") => self.get(node, Vertex::Pvc, a),
            ("", "persistentvolumes") => self.get(node, Vertex::Pv, a),
            ("", "serviceaccounts") => {
                if a.verb != "create" || a.name.is_empty() {
                    return no("can only create tokens for individual service accounts");
                }
                if a.subresource != "token" {
                    return no("can only create token subresource of serviceaccount");
                }
                self.related(node, Vertex::ServiceAccount, a)
            }
            ("coordination.k8s.io", "leases") => Self::lease(node, a),
            ("", "nodes") => Self::node(node, a),
            ("", "pods") => self.pod(node, a),
            (podvisor_kit::timeline::GROUP, "timelines") => self.timeline(node, a),
            _ => self.static_rules(a),
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
    use super::*;

    #[test]
    fn a_node_appends_only_to_timelines_of_its_pods_also_just_after_removal() {
        let pod = serde_json::json!({"metadata": {"namespace": "default", "name": "web",
            "uid": "u1"}, "spec": {"nodeName": "n1"}});
        let graph = Arc::new(NodeGraph::from_pods([&pod]));
        let authz = NodeAuthorizer::new(graph.clone());
        let user =
            |n: &str| UserInfo::new(format!("system:node:{n}"), "", vec!["system:nodes".into()]);
        let append = |uid: &str| {
            let mut a = RequestAttributes::resource(
                "create",
                podvisor_kit::timeline::GROUP,
                "timelines",
                "entries",
                "default",
                uid,
            );
            a.version = "v1".into();
            a
        };
        assert_eq!(authz.authorize(&user("n1"), &append("u1")), Decision::Allow);
        assert_ne!(authz.authorize(&user("n2"), &append("u1")), Decision::Allow);
        assert_ne!(authz.authorize(&user("n1"), &append("u2")), Decision::Allow);
        let read = RequestAttributes::resource(
            "get",
            podvisor_kit::timeline::GROUP,
            "timelines",
            "",
            "default",
            "u1",
        );
        assert_ne!(authz.authorize(&user("n1"), &read), Decision::Allow);
        // removed: still allowed for a while
        if let Ok(mut g) = graph.graph.write() {
            g.pod_removed("/registry/core/pods/default/web");
        }
        assert_eq!(authz.authorize(&user("n1"), &append("u1")), Decision::Allow);
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
