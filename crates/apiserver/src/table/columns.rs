//! The column sets of the kinds printed from a [`Column`] list (upstream's printers in
//! `pkg/printers/internalversion/printers.go` and the aggregator's APIService printer),
//! each cell computed by a [`Cell`].

use serde_json::Value;

use super::printers::{
    arr, containers_at, format_label_selector, has_condition, int, or_none, s, since,
};
use super::{AGE, Cell, Column, NAME, col, wide};

const fn with(c: Column, cell: Cell) -> Column {
    Column { cell, ..c }
}

const fn str_col(name: &'static str, ptr: &'static str, description: &'static str) -> Column {
    with(col(name, "string", description), Cell::Str(ptr))
}

const fn int_col(name: &'static str, ptr: &'static str, description: &'static str) -> Column {
    with(col(name, "integer", description), Cell::Int(ptr))
}

const fn fn_col(
    name: &'static str,
    ty: &'static str,
    description: &'static str,
    f: fn(&Value, jiff::Timestamp) -> Value,
) -> Column {
    with(col(name, ty, description), Cell::Fn(f))
}

const fn wide_fn(
    name: &'static str,
    description: &'static str,
    f: fn(&Value, jiff::Timestamp) -> Value,
) -> Column {
    with(wide(name, "string", description), Cell::Fn(f))
}

const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

/// `labels.FormatLabels`: sorted `k=v` pairs, `<none>` when empty.
fn format_labels(m: Option<&Value>) -> String {
    let Some(m) = m.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

fn template_containers(o: &Value, _: jiff::Timestamp) -> Value {
    Value::from(containers_at(o, "/spec/template/spec/containers").0)
}

fn template_images(o: &Value, _: jiff::Timestamp) -> Value {
    Value::from(containers_at(o, "/spec/template/spec/containers").1)
}

fn selector(o: &Value, _: jiff::Timestamp) -> Value {
    Value::from(format_label_selector(o.pointer("/spec/selector")))
}

const TEMPLATE_CONTAINERS: Column = wide_fn("Containers", CONTAINERS_DOC, template_containers);
const TEMPLATE_IMAGES: Column = wide_fn("Images", IMAGES_DOC, template_images);
const CREATED_AT_CELL: Column = with(
    col("Created At", "date", super::AGE_DOC),
    Cell::Str("/metadata/creationTimestamp"),
);

/// Name and creation time (LimitRange, Role, ClusterRole).
pub const CREATED_AT: &[Column] = &[NAME, CREATED_AT_CELL];

/// core/v1 ServiceAccount.
pub const SERVICE_ACCOUNT: &[Column] = &[
    NAME,
    fn_col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        |o, _| Value::from(arr(o, "/secrets").len()),
    ),
    AGE,
];

/// core/v1 ReplicationController.
pub const REPLICATION_CONTROLLER: &[Column] = &[
    NAME,
    int_col(
        "Desired",
        "/spec/replicas",
        "Replicas is the number of desired replicas.",
    ),
    int_col(
        "Current",
        "/status/replicas",
        "Replicas is the most recently observed number of replicas.",
    ),
    int_col(
        "Ready",
        "/status/readyReplicas",
        "The number of ready replicas for this replication controller.",
    ),
    AGE,
    TEMPLATE_CONTAINERS,
    TEMPLATE_IMAGES,
    wide_fn(
        "Selector",
        "Selector is a label query over pods that should match the Replicas count.",
        |o, _| Value::from(format_labels(o.pointer("/spec/selector"))),
    ),
];

/// `printResourceQuota`: `name: used/hard` for the requests (`limits.*` excluded) or for
/// the `limits.*` resources, sorted by name.
fn quota_column(o: &Value, limits: bool) -> Value {
    let mut names: Vec<&String> = o
        .pointer("/status/hard")
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    names.sort();
    let out: Vec<String> = names
        .into_iter()
        .filter(|r| r.split_once('.').is_some_and(|(p, _)| p == "limits") == limits)
        .map(|r| {
            let get = |p: &str| {
                o.pointer(p)
                    .and_then(|m| m.get(r.as_str()))
                    .and_then(Value::as_str)
                    .unwrap_or("0")
                    .to_string()
            };
            format!("{r}: {}/{}", get("/status/used"), get("/status/hard"))
        })
        .collect();
    Value::from(out.join(", "))
}

/// core/v1 ResourceQuota.
pub const RESOURCE_QUOTA: &[Column] = &[
    NAME,
    AGE,
    fn_col(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
        |o, _| quota_column(o, false),
    ),
    fn_col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        |o, _| quota_column(o, true),
    ),
];

/// `helper.GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, once each.
fn access_modes(o: &Value, ptr: &str) -> String {
    let modes: Vec<&str> = arr(o, ptr).iter().filter_map(Value::as_str).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| modes.contains(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn volume_phase(o: &Value) -> Value {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        Value::from("Terminating")
    } else {
        Value::from(s(o, "/status/phase"))
    }
}

fn storage_class(o: &Value) -> Value {
    let beta = o
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str);
    Value::from(beta.unwrap_or_else(|| s(o, "/spec/storageClassName")))
}

fn unset(o: &Value, ptr: &str) -> Value {
    Value::from(o.pointer(ptr).and_then(Value::as_str).unwrap_or("<unset>"))
}

const VOLUME_MODE: Column = wide_fn(
    "VolumeMode",
    "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
    |o, _| unset(o, "/spec/volumeMode"),
);
const VOLUME_ATTRIBUTES_CLASS: Column = fn_col(
    "VolumeAttributesClass",
    "string",
    "Name of VolumeAttributesClass to which this persistent volume belongs.",
    |o, _| unset(o, "/spec/volumeAttributesClassName"),
);

/// core/v1 PersistentVolume.
pub const PERSISTENT_VOLUME: &[Column] = &[
    NAME,
    fn_col(
        "Capacity",
        "string",
        "capacity is the description of the persistent volume's resources and capacity.",
        |o, _| {
            Value::from(
                o.pointer("/spec/capacity/storage")
                    .and_then(Value::as_str)
                    .unwrap_or("0"),
            )
        },
    ),
    fn_col(
        "Access Modes",
        "string",
        "accessModes contains all ways the volume can be mounted.",
        |o, _| Value::from(access_modes(o, "/spec/accessModes")),
    ),
    fn_col(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
        |o, _| Value::from(s(o, "/spec/persistentVolumeReclaimPolicy")),
    ),
    fn_col(
        "Status",
        "string",
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
        |o, _| volume_phase(o),
    ),
    fn_col(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
        |o, _| match o.pointer("/spec/claimRef") {
            Some(r) if r.is_object() => {
                Value::from(format!("{}/{}", s(r, "/namespace"), s(r, "/name")))
            }
            _ => Value::from(""),
        },
    ),
    fn_col(
        "StorageClass",
        "string",
        "storageClassName is the name of StorageClass to which this persistent volume belongs.",
        |o, _| storage_class(o),
    ),
    VOLUME_ATTRIBUTES_CLASS,
    fn_col(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
        |o, _| Value::from(s(o, "/status/reason")),
    ),
    AGE,
    VOLUME_MODE,
];

/// core/v1 PersistentVolumeClaim.
pub const PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    NAME,
    fn_col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
        |o, _| volume_phase(o),
    ),
    fn_col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
        |o, _| Value::from(s(o, "/spec/volumeName")),
    ),
    fn_col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
        |o, _| {
            if s(o, "/spec/volumeName").is_empty() {
                return Value::from("");
            }
            Value::from(
                o.pointer("/status/capacity/storage")
                    .and_then(Value::as_str)
                    .unwrap_or("0"),
            )
        },
    ),
    fn_col(
        "Access Modes",
        "string",
        "accessModes contains the desired access modes the volume should have.",
        |o, _| {
            if s(o, "/spec/volumeName").is_empty() {
                return Value::from("");
            }
            Value::from(access_modes(o, "/status/accessModes"))
        },
    ),
    fn_col(
        "StorageClass",
        "string",
        "storageClassName is the name of the StorageClass required by the claim.",
        |o, _| storage_class(o),
    ),
    VOLUME_ATTRIBUTES_CLASS,
    AGE,
    VOLUME_MODE,
];

/// core/v1 PodTemplate.
pub const POD_TEMPLATE: &[Column] = &[
    NAME,
    fn_col("Containers", "string", CONTAINERS_DOC, |o, _| {
        Value::from(containers_at(o, "/template/spec/containers").0)
    }),
    fn_col("Images", "string", IMAGES_DOC, |o, _| {
        Value::from(containers_at(o, "/template/spec/containers").1)
    }),
    fn_col(
        "Pod Labels",
        "string",
        "Map of string keys and values that can be used to organize and categorize (scope and select) objects.",
        |o, _| Value::from(format_labels(o.pointer("/template/metadata/labels"))),
    ),
];

/// apps/v1 DaemonSet.
pub const DAEMON_SET: &[Column] = &[
    NAME,
    int_col(
        "Desired",
        "/status/desiredNumberScheduled",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
    ),
    int_col(
        "Current",
        "/status/currentNumberScheduled",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    int_col(
        "Ready",
        "/status/numberReady",
        "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
    ),
    int_col(
        "Up-to-date",
        "/status/updatedNumberScheduled",
        "The total number of nodes that are running updated daemon pod",
    ),
    int_col(
        "Available",
        "/status/numberAvailable",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    fn_col(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
        |o, _| Value::from(format_labels(o.pointer("/spec/template/spec/nodeSelector"))),
    ),
    AGE,
    TEMPLATE_CONTAINERS,
    TEMPLATE_IMAGES,
    wide_fn(
        "Selector",
        "A label query over pods that are managed by the daemon set.",
        selector,
    ),
];

/// apps/v1 ControllerRevision.
pub const CONTROLLER_REVISION: &[Column] = &[
    NAME,
    fn_col(
        "Controller",
        "string",
        "Controller of the object",
        |o, _| {
            let owner = arr(o, "/metadata/ownerReferences")
                .iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true));
            let Some(r) = owner else {
                return Value::from("<none>");
            };
            let group = s(r, "/apiVersion").rsplit_once('/').map(|(g, _)| g);
            let kind = match group {
                Some(g) => format!("{}.{g}", s(r, "/kind")),
                None => s(r, "/kind").to_string(),
            };
            Value::from(format!("{}/{}", kind.to_lowercase(), s(r, "/name")))
        },
    ),
    int_col(
        "Revision",
        "/revision",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

fn job_status(o: &Value) -> &'static str {
    if has_condition(o, "Complete") {
        "Complete"
    } else if has_condition(o, "Failed") {
        "Failed"
    } else if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_condition(o, "Suspended") {
        "Suspended"
    } else if has_condition(o, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(o, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn job_completions(o: &Value) -> String {
    let succeeded = int(o, "/status/succeeded");
    if let Some(c) = o.pointer("/spec/completions").and_then(Value::as_i64) {
        return format!("{succeeded}/{c}");
    }
    match int(o, "/spec/parallelism") {
        p if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

fn job_duration(o: &Value, now: jiff::Timestamp) -> String {
    let start = s(o, "/status/startTime");
    if start.is_empty() {
        return String::new();
    }
    match super::printers::parse_time(s(o, "/status/completionTime")) {
        Some(done) => since(done, start),
        None => since(now, start),
    }
}

/// batch/v1 Job.
pub const JOB: &[Column] = &[
    NAME,
    fn_col("Status", "string", "Status of the job.", |o, _| {
        Value::from(job_status(o))
    }),
    fn_col(
        "Completions",
        "string",
        "The desired number of successfully finished pods the job should be run with.",
        |o, _| Value::from(job_completions(o)),
    ),
    fn_col(
        "Duration",
        "string",
        "Time required to complete the job.",
        |o, now| Value::from(job_duration(o, now)),
    ),
    AGE,
    TEMPLATE_CONTAINERS,
    TEMPLATE_IMAGES,
    wide_fn(
        "Selector",
        "A label query over pods that should match the pod count.",
        selector,
    ),
];

const JOB_TEMPLATE_CONTAINERS: &str = "/spec/jobTemplate/spec/template/spec/containers";

/// batch/v1 CronJob.
pub const CRON_JOB: &[Column] = &[
    NAME,
    fn_col(
        "Schedule",
        "string",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
        |o, _| Value::from(s(o, "/spec/schedule")),
    ),
    str_col(
        "Timezone",
        "/spec/timeZone",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    fn_col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions.",
        |o, _| match o.pointer("/spec/suspend").and_then(Value::as_bool) {
            Some(true) => Value::from("True"),
            Some(false) => Value::from("False"),
            None => Value::from("<unset>"),
        },
    ),
    fn_col(
        "Active",
        "integer",
        "A list of pointers to currently running jobs.",
        |o, _| Value::from(arr(o, "/status/active").len()),
    ),
    fn_col(
        "Last Schedule",
        "date",
        "Information when was the last time the job was successfully scheduled.",
        |o, now| match o
            .pointer("/status/lastScheduleTime")
            .and_then(Value::as_str)
        {
            Some(t) => Value::from(since(now, t)),
            None => Value::from("<none>"),
        },
    ),
    AGE,
    wide_fn("Containers", CONTAINERS_DOC, |o, _| {
        Value::from(containers_at(o, JOB_TEMPLATE_CONTAINERS).0)
    }),
    wide_fn("Images", IMAGES_DOC, |o, _| {
        Value::from(containers_at(o, JOB_TEMPLATE_CONTAINERS).1)
    }),
    wide_fn(
        "Selector",
        "A label query over pods that should match the pod count.",
        |o, _| {
            Value::from(format_label_selector(
                o.pointer("/spec/jobTemplate/spec/selector"),
            ))
        },
    ),
];

fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `formatHPAMetrics`: `cpu: 10%/80%, ...`, two at most.
fn hpa_metrics(o: &Value) -> String {
    let specs = arr(o, "/spec/metrics");
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let statuses = arr(o, "/status/currentMetrics");
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let ty = s(spec, "/type");
        let item = match ty {
            "Resource" | "ContainerResource" => {
                let key = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let src = &spec[key];
                let cur = status.map(|st| &st[key]).filter(|c| c.is_object());
                let name = s(src, "/name");
                if let Some(avg) = src.pointer("/target/averageValue") {
                    let current = cur
                        .and_then(|c| c.pointer("/current/averageValue"))
                        .map(|v| quantity(Some(v)))
                        .unwrap_or_else(|| "<unknown>".into());
                    format!("{name}: {current}/{}", quantity(Some(avg)))
                } else {
                    let current = cur
                        .and_then(|c| c.pointer("/current/averageUtilization"))
                        .and_then(Value::as_i64)
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<unknown>".into());
                    let target = src
                        .pointer("/target/averageUtilization")
                        .and_then(Value::as_i64)
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<auto>".into());
                    format!("{name}: {current}/{target}")
                }
            }
            "Pods" => {
                let current = status
                    .and_then(|st| st.pointer("/pods/current/averageValue"))
                    .map(|v| quantity(Some(v)))
                    .unwrap_or_else(|| "<unknown>".into());
                format!(
                    "{current}/{}",
                    quantity(spec.pointer("/pods/target/averageValue"))
                )
            }
            "Object" | "External" => {
                let key = if ty == "Object" { "object" } else { "external" };
                if let Some(avg) = spec.pointer(&format!("/{key}/target/averageValue")) {
                    let current = status
                        .and_then(|st| st.pointer(&format!("/{key}/current/averageValue")))
                        .map(|v| quantity(Some(v)))
                        .unwrap_or_else(|| "<unknown>".into());
                    format!("{current}/{} (avg)", quantity(Some(avg)))
                } else {
                    let current = status
                        .and_then(|st| st.pointer(&format!("/{key}/current/value")))
                        .map(|v| quantity(Some(v)))
                        .unwrap_or_else(|| "<unknown>".into());
                    format!(
                        "{current}/{}",
                        quantity(spec.pointer(&format!("/{key}/target/value")))
                    )
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(item);
    }
    let count = list.len();
    if count > 2 {
        list.truncate(2);
        return format!("{} + {} more...", list.join(", "), count - 2);
    }
    list.join(", ")
}

/// autoscaling HorizontalPodAutoscaler.
pub const HORIZONTAL_POD_AUTOSCALER: &[Column] = &[
    NAME,
    fn_col(
        "Reference",
        "string",
        "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
        |o, _| {
            Value::from(format!(
                "{}/{}",
                s(o, "/spec/scaleTargetRef/kind"),
                s(o, "/spec/scaleTargetRef/name")
            ))
        },
    ),
    fn_col(
        "Targets",
        "string",
        "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).",
        |o, _| Value::from(hpa_metrics(o)),
    ),
    fn_col(
        "MinPods",
        "string",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
        |o, _| match o.pointer("/spec/minReplicas").and_then(Value::as_i64) {
            Some(n) => Value::from(n.to_string()),
            None => Value::from("<unset>"),
        },
    ),
    int_col(
        "MaxPods",
        "/spec/maxReplicas",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
    ),
    int_col(
        "Replicas",
        "/status/currentReplicas",
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
    ),
    AGE,
];

fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".to_string(),
    }
}

/// policy/v1 PodDisruptionBudget.
pub const POD_DISRUPTION_BUDGET: &[Column] = &[
    NAME,
    fn_col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
        |o, _| Value::from(int_or_string(o.pointer("/spec/minAvailable"))),
    ),
    fn_col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
        |o, _| Value::from(int_or_string(o.pointer("/spec/maxUnavailable"))),
    ),
    int_col(
        "Allowed Disruptions",
        "/status/disruptionsAllowed",
        "Number of pod disruptions that are currently allowed.",
    ),
    AGE,
];

/// networking.k8s.io/v1 Ingress.
pub const INGRESS: &[Column] = &[
    NAME,
    str_col(
        "Class",
        "/spec/ingressClassName",
        "The name of the IngressClass resource.",
    ),
    fn_col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
        |o, _| {
            let rules = arr(o, "/spec/rules");
            let mut list = Vec::new();
            let mut more = false;
            for r in rules {
                if list.len() == 3 {
                    more = true;
                }
                let host = s(r, "/host");
                if !more && !host.is_empty() {
                    list.push(host);
                }
            }
            if list.is_empty() {
                return Value::from("*");
            }
            let ret = list.join(",");
            if more {
                return Value::from(format!("{ret} + {} more...", rules.len() - 3));
            }
            Value::from(ret)
        },
    ),
    fn_col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
        |o, _| {
            let addrs: Vec<&str> = arr(o, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    [s(i, "/ip"), s(i, "/hostname")]
                        .into_iter()
                        .find(|a| !a.is_empty())
                })
                .collect();
            Value::from(addrs.join(","))
        },
    ),
    fn_col(
        "Ports",
        "string",
        "Ports of TLS configurations that open",
        |o, _| {
            Value::from(if arr(o, "/spec/tls").is_empty() {
                "80"
            } else {
                "80, 443"
            })
        },
    ),
    AGE,
];

/// networking.k8s.io/v1 IngressClass.
pub const INGRESS_CLASS: &[Column] = &[
    NAME,
    fn_col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
        |o, _| Value::from(s(o, "/spec/controller")),
    ),
    fn_col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
        |o, _| {
            let Some(p) = o.pointer("/spec/parameters").filter(|p| p.is_object()) else {
                return Value::from("<none>");
            };
            let mut out = s(p, "/kind").to_string();
            if let Some(g) = p.get("apiGroup").and_then(Value::as_str) {
                out = format!("{out}.{g}");
            }
            Value::from(format!("{out}/{}", s(p, "/name")))
        },
    ),
    AGE,
];

/// networking.k8s.io/v1 NetworkPolicy.
pub const NETWORK_POLICY: &[Column] = &[
    NAME,
    fn_col(
        "Pod-Selector",
        "string",
        "Selects the pods to which this NetworkPolicy object applies. The array of ingress rules is applied to any pods selected by this field.",
        |o, _| Value::from(format_label_selector(o.pointer("/spec/podSelector"))),
    ),
    AGE,
];

/// node.k8s.io/v1 RuntimeClass.
pub const RUNTIME_CLASS: &[Column] = &[
    NAME,
    fn_col(
        "Handler",
        "string",
        "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
        |o, _| Value::from(s(o, "/handler")),
    ),
    AGE,
];

/// scheduling.k8s.io/v1 PriorityClass.
pub const PRIORITY_CLASS: &[Column] = &[
    NAME,
    int_col(
        "Value",
        "/value",
        "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
    ),
    with(
        col(
            "Global-Default",
            "boolean",
            "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
        ),
        Cell::Bool("/globalDefault"),
    ),
    AGE,
    fn_col(
        "PreemptionPolicy",
        "string",
        "preemptionPolicy is the Policy for preempting pods with lower priority.",
        |o, _| unset(o, "/preemptionPolicy"),
    ),
];

fn is_default_class(o: &Value) -> bool {
    [
        "storageclass.kubernetes.io~1is-default-class",
        "storageclass.beta.kubernetes.io~1is-default-class",
    ]
    .iter()
    .any(|a| {
        o.pointer(&format!("/metadata/annotations/{a}"))
            .and_then(Value::as_str)
            == Some("true")
    })
}

/// storage.k8s.io/v1 StorageClass.
pub const STORAGE_CLASS: &[Column] = &[
    with(
        NAME,
        Cell::Fn(|o, _| {
            let name = s(o, "/metadata/name");
            Value::from(if is_default_class(o) {
                format!("{name} (default)")
            } else {
                name.to_string()
            })
        }),
    ),
    fn_col(
        "Provisioner",
        "string",
        "provisioner indicates the type of the provisioner.",
        |o, _| Value::from(s(o, "/provisioner")),
    ),
    fn_col(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
        |o, _| {
            Value::from(
                o.get("reclaimPolicy")
                    .and_then(Value::as_str)
                    .unwrap_or("Delete"),
            )
        },
    ),
    fn_col(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
        |o, _| {
            Value::from(
                o.get("volumeBindingMode")
                    .and_then(Value::as_str)
                    .unwrap_or("Immediate"),
            )
        },
    ),
    with(
        col(
            "AllowVolumeExpansion",
            "string",
            "allowVolumeExpansion shows whether the storage class allow volume expand.",
        ),
        Cell::Bool("/allowVolumeExpansion"),
    ),
    AGE,
];

/// storage.k8s.io/v1 CSIDriver.
pub const CSI_DRIVER: &[Column] = &[
    NAME,
    fn_col(
        "AttachRequired",
        "boolean",
        "attachRequired indicates this CSI volume driver requires an attach operation.",
        |o, _| {
            Value::from(
                o.pointer("/spec/attachRequired")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            )
        },
    ),
    with(
        col(
            "PodInfoOnMount",
            "boolean",
            "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations.",
        ),
        Cell::Bool("/spec/podInfoOnMount"),
    ),
    with(
        col(
            "StorageCapacity",
            "boolean",
            "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report.",
        ),
        Cell::Bool("/spec/storageCapacity"),
    ),
    fn_col(
        "TokenRequests",
        "string",
        "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication.",
        |o, _| {
            let a: Vec<&str> = arr(o, "/spec/tokenRequests")
                .iter()
                .map(|t| s(t, "/audience"))
                .collect();
            Value::from(if a.is_empty() {
                "<unset>".to_string()
            } else {
                a.join(",")
            })
        },
    ),
    with(
        col(
            "RequiresRepublish",
            "boolean",
            "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume.",
        ),
        Cell::Bool("/spec/requiresRepublish"),
    ),
    fn_col(
        "Modes",
        "string",
        "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports.",
        |o, _| {
            let m: Vec<&str> = arr(o, "/spec/volumeLifecycleModes")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            Value::from(or_none(&m.join(",")))
        },
    ),
    AGE,
];

/// storage.k8s.io/v1 CSINode.
pub const CSI_NODE: &[Column] = &[
    NAME,
    fn_col(
        "Drivers",
        "integer",
        "Drivers indicates the number of CSI drivers registered on the node",
        |o, _| Value::from(arr(o, "/spec/drivers").len()),
    ),
    AGE,
];

/// storage.k8s.io/v1 VolumeAttachment.
pub const VOLUME_ATTACHMENT: &[Column] = &[
    NAME,
    fn_col(
        "Attacher",
        "string",
        "attacher indicates the name of the volume driver that MUST handle this request.",
        |o, _| Value::from(s(o, "/spec/attacher")),
    ),
    fn_col(
        "PV",
        "string",
        "persistentVolumeName represents the name of the persistent volume to attach.",
        |o, _| Value::from(s(o, "/spec/source/persistentVolumeName")),
    ),
    fn_col(
        "Node",
        "string",
        "nodeName represents the node that the volume should be attached to.",
        |o, _| Value::from(s(o, "/spec/nodeName")),
    ),
    with(
        col(
            "Attached",
            "boolean",
            "attached indicates the volume is successfully attached.",
        ),
        Cell::Bool("/status/attached"),
    ),
    AGE,
];

/// storage.k8s.io/v1 CSIStorageCapacity.
pub const CSI_STORAGE_CAPACITY: &[Column] = &[
    NAME,
    fn_col(
        "StorageClassName",
        "string",
        "storageClassName represents the name of the StorageClass that the reported capacity applies to.",
        |o, _| Value::from(s(o, "/storageClassName")),
    ),
    fn_col(
        "Capacity",
        "string",
        "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields.",
        |o, _| unset(o, "/capacity"),
    ),
];

fn subjects(o: &Value, kind: &str) -> Value {
    let names: Vec<String> = arr(o, "/subjects")
        .iter()
        .filter(|x| s(x, "/kind") == kind)
        .map(|x| match kind {
            "ServiceAccount" => format!("{}/{}", s(x, "/namespace"), s(x, "/name")),
            _ => s(x, "/name").to_string(),
        })
        .collect();
    Value::from(names.join(", "))
}

/// rbac.authorization.k8s.io/v1 RoleBinding and ClusterRoleBinding.
pub const ROLE_BINDING: &[Column] = &[
    NAME,
    fn_col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
        |o, _| {
            Value::from(format!(
                "{}/{}",
                s(o, "/roleRef/kind"),
                s(o, "/roleRef/name")
            ))
        },
    ),
    AGE,
    wide_fn("Users", "Users in the binding", |o, _| subjects(o, "User")),
    wide_fn("Groups", "Groups in the binding", |o, _| {
        subjects(o, "Group")
    }),
    wide_fn(
        "ServiceAccounts",
        "ServiceAccounts in the binding",
        |o, _| subjects(o, "ServiceAccount"),
    ),
];

/// admissionregistration.k8s.io/v1 Mutating- and ValidatingWebhookConfiguration.
pub const WEBHOOK_CONFIGURATION: &[Column] = &[
    NAME,
    fn_col(
        "Webhooks",
        "integer",
        "Webhooks indicates the number of webhooks configured in the object",
        |o, _| Value::from(arr(o, "/webhooks").len()),
    ),
    AGE,
];

/// admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy.
pub const VALIDATING_ADMISSION_POLICY: &[Column] = &[
    NAME,
    fn_col(
        "Validations",
        "integer",
        "Validations indicates the number of validation rules defined in this configuration",
        |o, _| Value::from(arr(o, "/spec/validations").len()),
    ),
    fn_col(
        "ParamKind",
        "string",
        "ParamKind specifies the kind of resources used to parameterize this policy",
        |o, _| match o.pointer("/spec/paramKind").filter(|p| p.is_object()) {
            Some(p) => Value::from(format!("{}/{}", s(p, "/apiVersion"), s(p, "/kind"))),
            None => Value::from("<unset>"),
        },
    ),
    AGE,
];

/// admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding.
pub const VALIDATING_ADMISSION_POLICY_BINDING: &[Column] = &[
    NAME,
    fn_col(
        "PolicyName",
        "string",
        "PolicyName indicates the name of the ValidatingAdmissionPolicy this binding references",
        |o, _| Value::from(s(o, "/spec/policyName")),
    ),
    fn_col(
        "ParamRef",
        "string",
        "ParamRef indicates the param resource this binding references",
        |o, _| {
            let Some(p) = o.pointer("/spec/paramRef").filter(|p| p.is_object()) else {
                return Value::from("<unset>");
            };
            let name = s(p, "/name");
            if name.is_empty() {
                return Value::from(format_label_selector(p.get("selector")));
            }
            match s(p, "/namespace") {
                "" => Value::from(format!("*/{name}")),
                ns => Value::from(format!("{ns}/{name}")),
            }
        },
    ),
    AGE,
];

/// apiregistration.k8s.io/v1 APIService.
pub const API_SERVICE: &[Column] = &[
    NAME,
    fn_col(
        "Service",
        "string",
        "The reference to the service that hosts this API endpoint.",
        |o, _| match o.pointer("/spec/service").filter(|v| v.is_object()) {
            Some(svc) => Value::from(format!("{}/{}", s(svc, "/namespace"), s(svc, "/name"))),
            None => Value::from("Local"),
        },
    ),
    fn_col(
        "Available",
        "string",
        "Whether this service is available.",
        |o, _| {
            let c = arr(o, "/status/conditions")
                .iter()
                .find(|c| s(c, "/type") == "Available");
            Value::from(match c {
                None => "Unknown".to_string(),
                Some(c) if s(c, "/status") == "True" => "True".to_string(),
                Some(c) if !s(c, "/reason").is_empty() => {
                    format!("{} ({})", s(c, "/status"), s(c, "/reason"))
                }
                Some(c) => s(c, "/status").to_string(),
            })
        },
    ),
    AGE,
];

/// timelines.podvisor.io/v1 Timeline (a list; a single timeline prints its steps,
/// `crate::timeline::steps_table`).
pub const TIMELINE: &[Column] = &[
    fn_col(
        "Pod",
        "string",
        "The pod's name, with (removed) once the pod is gone.",
        crate::timeline::pod_cell,
    ),
    with(
        col("UID", "string", "The pod's UID (the timeline's name)."),
        Cell::Name,
    ),
    str_col("Node", "/pod/nodeName", "The node the pod was bound to."),
    fn_col(
        "Steps",
        "integer",
        "Entries kept.",
        crate::timeline::steps_cell,
    ),
    fn_col(
        "Last Step",
        "string",
        "The newest entry's step.",
        crate::timeline::last_step_cell,
    ),
    fn_col(
        "Duration",
        "string",
        "From the first to the newest step.",
        crate::timeline::duration_cell,
    ),
    AGE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_splits_requests_and_limits() {
        let q = serde_json::json!({"status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"},
            "used": {"pods": "3"}}});
        assert_eq!(quota_column(&q, false), "pods: 3/10, requests.cpu: 0/1");
        assert_eq!(quota_column(&q, true), "limits.cpu: 0/2");
    }

    #[test]
    fn job_completions_and_status_like_upstream() {
        let j = serde_json::json!({"spec": {"completions": 3, "parallelism": 2}, "status": {"succeeded": 1}});
        assert_eq!(job_completions(&j), "1/3");
        let j = serde_json::json!({"spec": {"parallelism": 4}, "status": {}});
        assert_eq!(job_completions(&j), "0/1 of 4");
        let j =
            serde_json::json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(job_status(&j), "Complete");
    }

    #[test]
    fn hpa_targets_name_the_resource() {
        let h = serde_json::json!({"spec": {"metrics": [{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}]}});
        assert_eq!(hpa_metrics(&h), "cpu: <unknown>/80%");
    }
}
