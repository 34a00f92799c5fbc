//! The resource registry: one [`ResourceKind`] per served kind.
//!
//! A kind is served by registering one static descriptor here; the generic machinery in
//! [`crate::rest`] does storage, CRUD, list, watch, patch, Tables and subresources from it.
//! Per-kind behaviour (defaulting, validation, status handling) is chosen by
//! [`ResourceKind::strategy`].
//!
//! Storage layout: `/registry/<group or "core">/<plural>/<namespace>/<name>` for namespaced
//! kinds and `/registry/<group or "core">/<plural>/<name>` for cluster-scoped ones.

use serde_json::Value;

/// A subresource a kind serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subresource {
    /// `status`: get/update/patch of `.status` only.
    Status,
    /// `scale`: an `autoscaling/v1 Scale` view of `.spec.replicas`.
    Scale,
    /// `binding`: pods only, assigns a node (create).
    Binding,
    /// `log`: pods only, proxied to the node agent (get).
    Log,
    /// `exec`: pods only, a WebSocket upgrade proxied to the node agent.
    Exec,
    /// `attach`: pods only, a WebSocket upgrade proxied to the node agent.
    Attach,
    /// `portforward`: pods only, refused (no SPDY tunnelling).
    PortForward,
    /// `eviction`: pods only, a `policy/v1 Eviction` (graceful delete).
    Eviction,
}

impl Subresource {
    /// The path segment of the subresource.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Eviction => "eviction",
        }
    }

    /// Parses a path segment.
    pub fn parse(s: &str) -> Option<Subresource> {
        match s {
            "status" => Some(Subresource::Status),
            "scale" => Some(Subresource::Scale),
            "binding" => Some(Subresource::Binding),
            "log" => Some(Subresource::Log),
            "exec" => Some(Subresource::Exec),
            "attach" => Some(Subresource::Attach),
            "portforward" => Some(Subresource::PortForward),
            "eviction" => Some(Subresource::Eviction),
            _ => None,
        }
    }
}

/// Which per-kind behaviour applies (defaulting, validation, field selectors, deletion).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Kind-independent behaviour only.
    Generic,
    /// core/v1 Pod: defaulting, validation, graceful deletion, binding, log.
    Pod,
    /// core/v1 Namespace: Terminating phase, content deletion.
    Namespace,
    /// core/v1 Node.
    Node,
    /// core/v1 Event and events.k8s.io/v1 Event (involvedObject field selectors).
    Event,
    /// apps/v1 kinds with `spec.replicas` (scale subresource).
    Workload,
}

/// Descriptor of one served kind. `'static` data; cheap to copy around by reference.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ResourceKind {
    /// API group ("" for core).
    pub group: &'static str,
    /// API version ("v1").
    pub version: &'static str,
    /// Kind ("Pod").
    pub kind: &'static str,
    /// Plural resource name ("pods").
    pub plural: &'static str,
    /// Singular resource name ("pod").
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names for kubectl ("po").
    pub short_names: &'static [&'static str],
    /// Categories ("all").
    pub categories: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [Subresource],
    /// Per-kind behaviour.
    pub strategy: Strategy,
}

impl ResourceKind {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The list kind ("PodList").
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether a DELETE answers with the deleted object instead of a `Status` (upstream's
    /// `ReturnDeletedObject`: pods and services among the kinds served here).
    pub fn returns_deleted_object(&self) -> bool {
        self.group.is_empty() && matches!(self.plural, "pods" | "services")
    }

    /// Whether the kind serves `sub`.
    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The group as used in storage keys ("core" for the core group).
    pub fn storage_group(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }

    /// The storage key prefix of all objects of this kind, ending in `/`.
    pub fn prefix(&self) -> String {
        format!("/registry/{}/{}/", self.storage_group(), self.plural)
    }

    /// The storage key prefix for objects in one namespace (or all, if `None`), ending in `/`.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/", self.prefix(), ns),
            _ => self.prefix(),
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/{}", self.prefix(), ns, name),
            _ => format!("{}{}", self.prefix(), name),
        }
    }

    /// The resource name with its group for messages ("replicasets.apps", "pods").
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The `apiVersion`/`kind` pair of objects of this kind as JSON values.
    pub fn type_meta(&self) -> (Value, Value) {
        (Value::from(self.api_version()), Value::from(self.kind))
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const STATUS: &[Subresource] = &[Subresource::Status];
const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];

/// core/v1 Pod.
pub static PODS: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
    singular: "pod",
    namespaced: true,
    short_names: &["po"],
    categories: ALL,
    subresources: &[
        Subresource::Attach,
        Subresource::Binding,
        Subresource::Eviction,
        Subresource::Exec,
        Subresource::Log,
        Subresource::PortForward,
        Subresource::Status,
    ],
    strategy: Strategy::Pod,
};

/// core/v1 Namespace.
pub static NAMESPACES: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: NONE,
    subresources: STATUS,
    strategy: Strategy::Namespace,
};

/// core/v1 Node.
pub static NODES: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "Node",
    plural: "nodes",
    singular: "node",
    namespaced: false,
    short_names: &["no"],
    categories: NONE,
    subresources: STATUS,
    strategy: Strategy::Node,
};

/// core/v1 Event.
pub static EVENTS: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    namespaced: true,
    short_names: &["ev"],
    categories: NONE,
    subresources: &[],
    strategy: Strategy::Event,
};

/// core/v1 Service.
pub static SERVICES: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "Service",
    plural: "services",
    singular: "service",
    namespaced: true,
    short_names: &["svc"],
    categories: ALL,
    subresources: STATUS,
    strategy: Strategy::Generic,
};

/// core/v1 Endpoints.
pub static ENDPOINTS: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "Endpoints",
    plural: "endpoints",
    singular: "endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: NONE,
    subresources: &[],
    strategy: Strategy::Generic,
};

/// core/v1 ConfigMap.
pub static CONFIGMAPS: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    singular: "configmap",
    namespaced: true,
    short_names: &["cm"],
    categories: NONE,
    subresources: &[],
    strategy: Strategy::Generic,
};

/// core/v1 Secret.
pub static SECRETS: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    namespaced: true,
    short_names: NONE,
    categories: NONE,
    subresources: &[],
    strategy: Strategy::Generic,
};

/// coordination.k8s.io/v1 Lease.
pub static LEASES: ResourceKind = ResourceKind {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    singular: "lease",
    namespaced: true,
    short_names: NONE,
    categories: NONE,
    subresources: &[],
    strategy: Strategy::Generic,
};

/// apps/v1 ReplicaSet.
pub static REPLICASETS: ResourceKind = ResourceKind {
    group: "apps",
    version: "v1",
    kind: "ReplicaSet",
    plural: "replicasets",
    singular: "replicaset",
    namespaced: true,
    short_names: &["rs"],
    categories: ALL,
    subresources: STATUS_SCALE,
    strategy: Strategy::Workload,
};

/// apps/v1 Deployment.
pub static DEPLOYMENTS: ResourceKind = ResourceKind {
    group: "apps",
    version: "v1",
    kind: "Deployment",
    plural: "deployments",
    singular: "deployment",
    namespaced: true,
    short_names: &["deploy"],
    categories: ALL,
    subresources: STATUS_SCALE,
    strategy: Strategy::Workload,
};

/// apps/v1 StatefulSet.
pub static STATEFULSETS: ResourceKind = ResourceKind {
    group: "apps",
    version: "v1",
    kind: "StatefulSet",
    plural: "statefulsets",
    singular: "statefulset",
    namespaced: true,
    short_names: &["sts"],
    categories: ALL,
    subresources: STATUS_SCALE,
    strategy: Strategy::Workload,
};

/// discovery.k8s.io/v1 EndpointSlice.
pub static ENDPOINTSLICES: ResourceKind = ResourceKind {
    group: "discovery.k8s.io",
    version: "v1",
    kind: "EndpointSlice",
    plural: "endpointslices",
    singular: "endpointslice",
    namespaced: true,
    short_names: NONE,
    categories: NONE,
    subresources: &[],
    strategy: Strategy::Generic,
};

/// events.k8s.io/v1 Event.
pub static EVENTS_V1: ResourceKind = ResourceKind {
    group: "events.k8s.io",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    namespaced: true,
    short_names: &["ev"],
    categories: NONE,
    subresources: &[],
    strategy: Strategy::Event,
};

/// autoscaling/v1 Scale: not stored, the view served by `*/scale` subresources.
pub static SCALE: ResourceKind = ResourceKind {
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    plural: "scale",
    singular: "scale",
    namespaced: true,
    short_names: NONE,
    categories: NONE,
    subresources: &[],
    strategy: Strategy::Generic,
};

/// core/v1 Binding: not stored, the body of `pods/binding`.
pub static BINDING: ResourceKind = ResourceKind {
    group: "",
    version: "v1",
    kind: "Binding",
    plural: "bindings",
    singular: "binding",
    namespaced: true,
    short_names: NONE,
    categories: NONE,
    subresources: &[],
    strategy: Strategy::Generic,
};

/// Every served kind, in discovery order.
pub static KINDS: &[&ResourceKind] = &[
    &PODS,
    &NAMESPACES,
    &NODES,
    &EVENTS,
    &SERVICES,
    &ENDPOINTS,
    &CONFIGMAPS,
    &SECRETS,
    &LEASES,
    &REPLICASETS,
    &DEPLOYMENTS,
    &STATEFULSETS,
    &ENDPOINTSLICES,
    &EVENTS_V1,
];

/// Looks a kind up by group, version and plural.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceKind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// Looks a kind up by `apiVersion` and `kind`.
pub fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceKind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.api_version() == api_version && k.kind == kind)
}

/// The served API groups (not core), each with its versions, in discovery order.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for k in KINDS.iter().filter(|k| !k.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == k.group) {
            Some((_, versions)) => {
                if !versions.contains(&k.version) {
                    versions.push(k.version);
                }
            }
            None => out.push((k.group, vec![k.version])),
        }
    }
    out
}

/// The kinds served in one group-version.
pub fn kinds_in(group: &str, version: &str) -> Vec<&'static ResourceKind> {
    KINDS
        .iter()
        .copied()
        .filter(|k| k.group == group && k.version == version)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout() {
        assert_eq!(
            PODS.key(Some("default"), "web"),
            "/registry/core/pods/default/web"
        );
        assert_eq!(NODES.key(None, "n1"), "/registry/core/nodes/n1");
        assert_eq!(
            LEASES.list_prefix(Some("kube-node-lease")),
            "/registry/coordination.k8s.io/leases/kube-node-lease/"
        );
        assert_eq!(REPLICASETS.qualified_resource(), "replicasets.apps");
    }

    #[test]
    fn lookup_finds_every_kind_and_groups_are_unique() {
        for k in KINDS {
            assert_eq!(lookup(k.group, k.version, k.plural), Some(*k));
            assert_eq!(lookup_kind(&k.api_version(), k.kind), Some(*k));
        }
        let g = groups();
        assert_eq!(g.len(), 4);
        assert!(lookup("", "v1", "nope").is_none());
    }
}
