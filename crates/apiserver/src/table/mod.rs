//! Server-side printing: `meta.k8s.io/v1` Tables with upstream's column sets
//! (`pkg/printers/internalversion/printers.go`).
//!
//! The server always produces every column, wide ones included, with their `priority`;
//! kubectl hides priority-1 columns unless `-o wide`. Each row carries the object's
//! metadata as a `PartialObjectMetadata` (kubectl reads namespace and labels from it).
//! Kinds without a printer get `Name` and `Age`.
//!
//! The caller fills `metadata.resourceVersion` / `continue` / `remainingItemCount` of the
//! returned Table, and replaces `rows[].object` when `includeObject` asks for `Object` or
//! `None`.

pub mod columns;
mod duration;
mod printers;

use serde_json::{Map, Value, json};

use crate::registry::ResourceKind;

pub use duration::{human_duration_nanos, human_duration_secs};

/// One column definition and how its cell is computed.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// The column name ("Name").
    pub name: &'static str,
    /// The OpenAPI type of the cells ("string", "integer", "boolean", "date").
    pub ty: &'static str,
    /// The OpenAPI format ("name" for the name column).
    pub format: &'static str,
    /// The description (upstream's field documentation).
    pub description: &'static str,
    /// 0 for the default columns, 1 for the `-o wide` ones.
    pub priority: u8,
    /// How the cell is computed (used by [`Printer::Columns`]).
    pub cell: Cell,
}

/// How one cell of a [`Printer::Columns`] table is computed from an object.
#[derive(Clone, Copy, Debug)]
pub enum Cell {
    /// Computed by the kind's own printer function (the hand-written printers).
    Printer,
    /// `metadata.name`.
    Name,
    /// The age of the object (since `metadata.creationTimestamp`).
    Age,
    /// The string at a JSON pointer, `<none>` when missing.
    Str(&'static str),
    /// The integer at a JSON pointer, 0 when missing.
    Int(&'static str),
    /// The boolean at a JSON pointer, false when missing.
    Bool(&'static str),
    /// Computed from the object and the reference time.
    Fn(fn(&Value, jiff::Timestamp) -> Value),
}

const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority: 0,
        cell: Cell::Printer,
    }
}

const fn wide(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority: 1,
        cell: Cell::Printer,
    }
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
    cell: Cell::Name,
};
const AGE: Column = Column {
    cell: Cell::Age,
    ..col("Age", "string", AGE_DOC)
};

const POD: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName.",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\"",
    ),
];

const NODE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "External-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

const EVENT: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    Column {
        name: "Name",
        ty: "string",
        format: "name",
        description: NAME_DOC,
        priority: 1,
        cell: Cell::Name,
    },
];

const NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

const SERVICE: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed.",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

const ENDPOINTS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

const REPLICASET: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired pods.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of non-terminating pods.",
    ),
    col(
        "Ready",
        "integer",
        "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count.",
    ),
];

const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminating pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    ),
];

const STATEFULSET: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
];

const LEASE: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

const CONFIGMAP: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];

const SECRET: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];

const ENDPOINTSLICE: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

const DEFAULT: &[Column] = &[NAME, AGE];

/// How a kind is printed: one of upstream's hand-written printers, or a list of columns
/// each computing its own cell.
#[derive(Clone, Copy, Debug)]
pub enum Printer {
    /// Pods.
    Pod,
    /// Nodes.
    Node,
    /// core/v1 Events.
    Event,
    /// events.k8s.io/v1 Events.
    EventV1,
    /// Namespaces.
    Namespace,
    /// Services.
    Service,
    /// Endpoints.
    Endpoints,
    /// ReplicaSets.
    ReplicaSet,
    /// Deployments.
    Deployment,
    /// StatefulSets.
    StatefulSet,
    /// Leases.
    Lease,
    /// ConfigMaps.
    ConfigMap,
    /// Secrets.
    Secret,
    /// EndpointSlices.
    EndpointSlice,
    /// `Name` and `Age`.
    Default,
    /// These columns.
    Columns(&'static [Column]),
    /// A custom kind's `additionalPrinterColumns` ([`crate::crd::cells`]).
    Custom,
}

fn columns(p: Printer) -> &'static [Column] {
    match p {
        Printer::Pod => POD,
        Printer::Node => NODE,
        Printer::Event | Printer::EventV1 => EVENT,
        Printer::Namespace => NAMESPACE,
        Printer::Service => SERVICE,
        Printer::Endpoints => ENDPOINTS,
        Printer::ReplicaSet => REPLICASET,
        Printer::Deployment => DEPLOYMENT,
        Printer::StatefulSet => STATEFULSET,
        Printer::Lease => LEASE,
        Printer::ConfigMap => CONFIGMAP,
        Printer::Secret => SECRET,
        Printer::EndpointSlice => ENDPOINTSLICE,
        Printer::Default => DEFAULT,
        Printer::Columns(c) => c,
        Printer::Custom => DEFAULT,
    }
}

/// The `columnDefinitions` of `kind`'s Table (all columns, wide ones with priority 1).
pub fn column_definitions(kind: &ResourceKind) -> Value {
    if let Some(c) = kind.custom {
        return crate::crd::column_definitions(c);
    }
    Value::Array(
        columns(kind.printer)
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.ty,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// One Table row for `object`: `cells`, `object` (PartialObjectMetadata) and, for
/// finished pods, `conditions`.
pub fn row_for(kind: &ResourceKind, object: &Value, now: jiff::Timestamp) -> Value {
    let (cells, conditions) = match kind.custom {
        Some(c) => (crate::crd::cells(c, object, now), None),
        None => printers::cells(kind.printer, object, now),
    };
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    if let Some(c) = conditions {
        row.insert("conditions".into(), c);
    }
    row.insert("object".into(), partial_object_metadata(object));
    Value::Object(row)
}

/// The `PartialObjectMetadata` of an object (its metadata without managed fields).
pub fn partial_object_metadata(object: &Value) -> Value {
    let metadata: Map<String, Value> = object
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "managedFields")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

/// A `meta.k8s.io/v1` Table of `objects` with upstream's columns for `kind`.
///
/// All columns are always included (kubectl hides priority-1 columns unless `-o wide`),
/// so `wide` does not change the result. `now` is the reference time for ages.
pub fn table_for(
    kind: &ResourceKind,
    objects: &[Value],
    wide: bool,
    now: jiff::Timestamp,
) -> Value {
    let _ = wide;
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions(kind),
        "rows": objects.iter().map(|o| row_for(kind, o, now)).collect::<Vec<_>>(),
    })
}
