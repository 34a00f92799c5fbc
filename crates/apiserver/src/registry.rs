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

pub use crate::table::{Cell, Column, Printer};
pub use kinds::*;

mod kinds;

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
    /// `token`: service accounts only, an `authentication.k8s.io/v1 TokenRequest` (create).
    Token,
    /// `ephemeralcontainers`: pods only, get/update/patch of `.spec.ephemeralContainers`.
    EphemeralContainers,
    /// `resize`: pods only, get/update/patch of the containers' cpu and memory resources
    /// (in-place pod resize, KEP-1287).
    Resize,
    /// `entries`: timelines only, appends entries (create; `crate::timeline`).
    Entries,
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
            Subresource::Token => "token",
            Subresource::EphemeralContainers => "ephemeralcontainers",
            Subresource::Resize => "resize",
            Subresource::Entries => "entries",
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
            "token" => Some(Subresource::Token),
            "ephemeralcontainers" => Some(Subresource::EphemeralContainers),
            "resize" => Some(Subresource::Resize),
            "entries" => Some(Subresource::Entries),
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
    /// apps/v1 kinds with `spec.selector` and a pod template (DaemonSet, and with
    /// `spec.replicas` and the scale subresource, ReplicaSet, Deployment, StatefulSet).
    Workload,
    /// Kinds whose `status` is written by a controller only: reset on create, kept on
    /// updates of the main resource (Job, CronJob, PersistentVolumeClaim, ...).
    WithStatus,
}

/// A typed round trip of an object through its `k8s-openapi` type: type errors surface,
/// unknown fields are dropped, everything else keeps its value.
pub type RoundTrip = fn(Value) -> Result<Value, serde_json::Error>;

/// The round trip of kind `T` (a [`RoundTrip`]).
pub fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
    v: Value,
) -> Result<Value, serde_json::Error> {
    let t: T = serde_json::from_value(v)?;
    serde_json::to_value(t)
}

/// Descriptor of one served kind. `'static` data; cheap to copy around by reference.
///
/// Two descriptors are the same kind when group, version and plural agree.
#[derive(Debug)]
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
    /// The typed round trip (`None`: objects are kept as sent).
    pub round_trip: Option<RoundTrip>,
    /// How `kubectl get` prints the kind (the columns of its Table).
    pub printer: Printer,
    /// Whether the kind (and its list) has a protobuf form.
    pub protobuf: bool,
    /// What a CustomResourceDefinition says of the kind (custom kinds only).
    pub custom: Option<&'static crate::crd::CustomKind>,
    /// Written only by the server (through a subresource): no create, update or patch.
    pub read_only: bool,
}

impl PartialEq for ResourceKind {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Eq for ResourceKind {}

impl std::hash::Hash for ResourceKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.group, self.version, self.plural).hash(state);
    }
}

impl ResourceKind {
    /// A kind with no short names, categories or subresources, the generic strategy, no
    /// typed round trip, `Name`/`Age` columns and no protobuf form; the `with_*` methods
    /// below fill in the rest.
    pub const fn new(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
        singular: &'static str,
        namespaced: bool,
    ) -> ResourceKind {
        ResourceKind {
            group,
            version,
            kind,
            plural,
            singular,
            namespaced,
            short_names: &[],
            categories: &[],
            subresources: &[],
            strategy: Strategy::Generic,
            round_trip: None,
            printer: Printer::Default,
            protobuf: false,
            custom: None,
            read_only: false,
        }
    }

    /// Marks the kind as written only by the server.
    pub const fn read_only(mut self) -> ResourceKind {
        self.read_only = true;
        self
    }

    /// Sets the short names.
    pub const fn with_short_names(mut self, names: &'static [&'static str]) -> ResourceKind {
        self.short_names = names;
        self
    }

    /// Puts the kind in the `all` category.
    pub const fn in_all(mut self) -> ResourceKind {
        self.categories = ALL;
        self
    }

    /// Sets the categories.
    pub const fn with_categories(mut self, categories: &'static [&'static str]) -> ResourceKind {
        self.categories = categories;
        self
    }

    /// Sets the subresources.
    pub const fn with_subresources(mut self, subs: &'static [Subresource]) -> ResourceKind {
        self.subresources = subs;
        self
    }

    /// Sets the strategy.
    pub const fn with_strategy(mut self, strategy: Strategy) -> ResourceKind {
        self.strategy = strategy;
        self
    }

    /// Sets the typed round trip.
    pub const fn with_round_trip(mut self, rt: RoundTrip) -> ResourceKind {
        self.round_trip = Some(rt);
        self
    }

    /// Sets the printer.
    pub const fn with_printer(mut self, printer: Printer) -> ResourceKind {
        self.printer = printer;
        self
    }

    /// Prints the kind with these columns.
    pub const fn with_columns(mut self, columns: &'static [Column]) -> ResourceKind {
        self.printer = Printer::Columns(columns);
        self
    }

    /// Marks the kind as having a protobuf form.
    pub const fn with_protobuf(mut self) -> ResourceKind {
        self.protobuf = true;
        self
    }

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

/// The `all` category.
pub const ALL: &[&str] = &["all"];
/// The status subresource only.
pub const STATUS: &[Subresource] = &[Subresource::Status];
/// The status and scale subresources.
pub const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];

/// The kinds CustomResourceDefinitions add, and a counter bumped on every change.
static CUSTOM: std::sync::RwLock<Vec<&'static ResourceKind>> = std::sync::RwLock::new(Vec::new());
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Every served kind: the built-in ones in discovery order, then the custom ones.
pub fn kinds() -> Vec<&'static ResourceKind> {
    let mut out: Vec<&'static ResourceKind> = KINDS.to_vec();
    out.extend(custom_kinds());
    out
}

/// The kinds added by CustomResourceDefinitions.
pub fn custom_kinds() -> Vec<&'static ResourceKind> {
    CUSTOM.read().map(|c| c.clone()).unwrap_or_default()
}

/// Replaces the kinds one CustomResourceDefinition (`crd`, by name) serves.
pub fn set_custom_kinds(crd: &str, kinds: Vec<&'static ResourceKind>) {
    if let Ok(mut c) = CUSTOM.write() {
        c.retain(|k| k.custom.is_none_or(|ck| ck.crd != crd));
        c.extend(kinds);
        c.sort_by_key(|k| (k.group, k.custom.map(|ck| ck.version_priority), k.plural));
    }
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Changes whenever the set of served kinds changes (for caches of derived documents).
pub fn generation() -> u64 {
    GENERATION.load(std::sync::atomic::Ordering::SeqCst)
}

/// Looks a kind up by group, version and plural.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceKind> {
    KINDS
        .iter()
        .copied()
        .chain(custom_kinds())
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// Looks a kind up by `apiVersion` and `kind`.
pub fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceKind> {
    KINDS
        .iter()
        .copied()
        .chain(custom_kinds())
        .find(|k| k.api_version() == api_version && k.kind == kind)
}

/// The served API groups (not core), each with its versions, in discovery order.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for k in kinds().into_iter().filter(|k| !k.group.is_empty()) {
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

/// Every served group-version, the core group ("") first.
pub fn all_group_versions() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out = vec![("", vec!["v1"])];
    out.extend(groups());
    out
}

/// The `groupPriorityMinimum` and `versionPriority` of a local APIService (upstream's
/// `apiVersionPriorities` in kube-apiserver's aggregator setup).
pub fn group_priority(group: &str, version: &str) -> (i64, i64) {
    let g = match group {
        "" | "apiregistration.k8s.io" => 18000,
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "autoscaling" => 17500,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "networking.k8s.io" => 17200,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "storage.k8s.io" => 16800,
        "admissionregistration.k8s.io" | "apiextensions.k8s.io" => 16700,
        "scheduling.k8s.io" => 16600,
        "coordination.k8s.io" => 16500,
        "node.k8s.io" => 16300,
        "discovery.k8s.io" => 16200,
        "flowcontrol.apiserver.k8s.io" => 16100,
        _ => 1000,
    };
    let v = match (group, version) {
        ("", _) => 1,
        ("autoscaling", "v2") => 30,
        ("flowcontrol.apiserver.k8s.io", _) => 21,
        _ => 15,
    };
    (g, v)
}

/// The kinds served in one group-version.
pub fn kinds_in(group: &str, version: &str) -> Vec<&'static ResourceKind> {
    kinds()
        .into_iter()
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
        assert_eq!(g.len(), 16);
        assert!(lookup("", "v1", "nope").is_none());
    }
}
