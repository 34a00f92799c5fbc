//! Cell computation per kind, transcribing upstream's `print<Kind>` functions.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::duration::human_duration_nanos;
use super::{Cell, Printer};

pub(super) fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

pub(super) fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or_default()
}

pub(super) fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(super) fn parse_time(t: &str) -> Option<jiff::Timestamp> {
    if t.is_empty() {
        return None;
    }
    t.parse::<jiff::Timestamp>().ok()
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when unset.
pub(super) fn since(now: jiff::Timestamp, t: &str) -> String {
    match parse_time(t) {
        Some(ts) => human_duration_nanos(now.as_nanosecond() - ts.as_nanosecond()),
        None => "<unknown>".to_string(),
    }
}

/// The READY column of Deployments and StatefulSets: `readyReplicas/replicas`.
fn ready_of_replicas(o: &Value) -> Value {
    Value::from(format!(
        "{}/{}",
        int(o, "/status/readyReplicas"),
        int(o, "/spec/replicas")
    ))
}

pub(super) fn name(o: &Value) -> Value {
    Value::from(s(o, "/metadata/name"))
}

pub(super) fn age(o: &Value, now: jiff::Timestamp) -> Value {
    Value::from(since(now, s(o, "/metadata/creationTimestamp")))
}

pub(super) fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".to_string()
    } else {
        v.to_string()
    }
}

/// The cells (and row conditions) of one object.
pub(super) fn cells(p: Printer, o: &Value, now: jiff::Timestamp) -> (Vec<Value>, Option<Value>) {
    let cells = match p {
        Printer::Pod => return pod(o, now),
        Printer::Node => node(o, now),
        Printer::Event => event(o, now, false),
        Printer::EventV1 => event(o, now, true),
        Printer::Namespace => vec![name(o), Value::from(s(o, "/status/phase")), age(o, now)],
        Printer::Service => service(o, now),
        Printer::Endpoints => vec![name(o), Value::from(format_endpoints(o)), age(o, now)],
        Printer::ReplicaSet => {
            let (names, images) = containers(o);
            vec![
                name(o),
                Value::from(int(o, "/spec/replicas")),
                Value::from(int(o, "/status/replicas")),
                Value::from(int(o, "/status/readyReplicas")),
                age(o, now),
                Value::from(names),
                Value::from(images),
                Value::from(format_label_selector(o.pointer("/spec/selector"))),
            ]
        }
        Printer::Deployment => {
            let (names, images) = containers(o);
            let selector = match selector_string(o.pointer("/spec/selector")) {
                Some(s) => s,
                None => "<invalid>".to_string(),
            };
            vec![
                name(o),
                ready_of_replicas(o),
                Value::from(int(o, "/status/updatedReplicas")),
                Value::from(int(o, "/status/availableReplicas")),
                age(o, now),
                Value::from(names),
                Value::from(images),
                Value::from(selector),
            ]
        }
        Printer::StatefulSet => {
            let (names, images) = containers(o);
            vec![
                name(o),
                ready_of_replicas(o),
                age(o, now),
                Value::from(names),
                Value::from(images),
            ]
        }
        Printer::Lease => vec![
            name(o),
            Value::from(s(o, "/spec/holderIdentity")),
            age(o, now),
        ],
        Printer::ConfigMap => {
            let n = len_of(o, "/data") + len_of(o, "/binaryData");
            vec![name(o), Value::from(n), age(o, now)]
        }
        Printer::Secret => vec![
            name(o),
            Value::from(s(o, "/type")),
            Value::from(len_of(o, "/data")),
            age(o, now),
        ],
        Printer::EndpointSlice => vec![
            name(o),
            Value::from(s(o, "/addressType")),
            Value::from(format_discovery_ports(arr(o, "/ports"))),
            Value::from(format_discovery_endpoints(arr(o, "/endpoints"))),
            age(o, now),
        ],
        Printer::Default | Printer::Custom => vec![name(o), age(o, now)],
        Printer::Columns(cols) => cols.iter().map(|c| cell(c.cell, o, now)).collect(),
    };
    (cells, None)
}

fn cell(c: Cell, o: &Value, now: jiff::Timestamp) -> Value {
    match c {
        Cell::Printer => Value::Null,
        Cell::Name => name(o),
        Cell::Age => age(o, now),
        Cell::Str(p) => Value::from(or_none(s(o, p))),
        Cell::Int(p) => Value::from(int(o, p)),
        Cell::Bool(p) => Value::from(o.pointer(p).and_then(Value::as_bool).unwrap_or(false)),
        Cell::Fn(f) => f(o, now),
    }
}

pub(super) fn len_of(o: &Value, ptr: &str) -> i64 {
    o.pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| m.len() as i64)
        .unwrap_or_default()
}

/// `layoutContainerCells` of the pod template.
fn containers(o: &Value) -> (String, String) {
    containers_at(o, "/spec/template/spec/containers")
}

/// The names and images of the containers listed at `ptr`, comma-joined.
pub(super) fn containers_at(o: &Value, ptr: &str) -> (String, String) {
    let cs = arr(o, ptr);
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn is_restartable_init(spec_init: &[Value], name: &str) -> bool {
    spec_init
        .iter()
        .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == "Always")
}

pub(super) fn has_condition(o: &Value, ty: &str) -> bool {
    arr(o, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == ty)
        .is_some_and(|c| s(c, "/status") == "True")
}

/// `printPod`.
fn pod(o: &Value, now: jiff::Timestamp) -> (Vec<Value>, Option<Value>) {
    let spec_containers = arr(o, "/spec/containers");
    let spec_init = arr(o, "/spec/initContainers");
    let mut restarts: i64 = 0;
    let mut restartable_init_restarts: i64 = 0;
    let mut total = spec_containers.len();
    let mut ready = 0usize;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut last_restartable_init_restart: Option<jiff::Timestamp> = None;
    let later = |cur: Option<jiff::Timestamp>, t: &str| match (cur, parse_time(t)) {
        (Some(c), Some(t)) if c < t => Some(t),
        (None, Some(t)) => Some(t),
        (c, _) => c,
    };

    let phase = s(o, "/status/phase");
    let mut reason = phase.to_string();
    let status_reason = s(o, "/status/reason");
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }
    for c in arr(o, "/status/conditions") {
        if s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }
    let conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };
    total += spec_init
        .iter()
        .filter(|c| s(c, "/restartPolicy") == "Always")
        .count();

    let mut initializing = false;
    for (i, c) in arr(o, "/status/initContainerStatuses").iter().enumerate() {
        restarts += int(c, "/restartCount");
        let last_finished = s(c, "/lastState/terminated/finishedAt");
        if c.pointer("/lastState/terminated").is_some() {
            last_restart = later(last_restart, last_finished);
        }
        let restartable = is_restartable_init(spec_init, s(c, "/name"));
        if restartable {
            restartable_init_restarts += int(c, "/restartCount");
            if c.pointer("/lastState/terminated").is_some() {
                last_restartable_init_restart = later(last_restartable_init_restart, last_finished);
            }
        }
        let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting_reason = s(c, "/state/waiting/reason");
        if let Some(t) = terminated
            && int(t, "/exitCode") == 0
        {
            continue;
        }
        if restartable && c.pointer("/started").and_then(Value::as_bool) == Some(true) {
            if c.pointer("/ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let r = s(t, "/reason");
            reason = if r.is_empty() {
                if int(t, "/signal") != 0 {
                    format!("Init:Signal:{}", int(t, "/signal"))
                } else {
                    format!("Init:ExitCode:{}", int(t, "/exitCode"))
                }
            } else {
                format!("Init:{r}")
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", spec_init.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(o, "Initialized") {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        for c in arr(o, "/status/containerStatuses").iter().rev() {
            restarts += int(c, "/restartCount");
            if c.pointer("/lastState/terminated").is_some() {
                last_restart = later(last_restart, s(c, "/lastState/terminated/finishedAt"));
            }
            let waiting_reason = s(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                let r = s(t, "/reason");
                reason = if !r.is_empty() {
                    r.to_string()
                } else if int(t, "/signal") != 0 {
                    format!("Signal:{}", int(t, "/signal"))
                } else {
                    format!("ExitCode:{}", int(t, "/exitCode"))
                };
            } else if c.pointer("/ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(o, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = !s(o, "/metadata/deletionTimestamp").is_empty();
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration_nanos(now.as_nanosecond() - t.as_nanosecond())
        ),
        _ => restarts.to_string(),
    };

    let pod_ip = arr(o, "/status/podIPs")
        .first()
        .map(|ip| s(ip, "/ip"))
        .unwrap_or_default();
    let gates = arr(o, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let statuses = arr(o, "/status/conditions");
        let true_count = gates
            .iter()
            .filter(|g| {
                let ty = s(g, "/conditionType");
                statuses
                    .iter()
                    .find(|c| s(c, "/type") == ty)
                    .is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    let cells = vec![
        name(o),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts_cell),
        age(o, now),
        Value::from(or_none(pod_ip)),
        Value::from(or_none(s(o, "/spec/nodeName"))),
        Value::from(or_none(s(o, "/status/nominatedNodeName"))),
        Value::from(readiness_gates),
    ];
    (cells, conditions)
}

/// `printNode`.
fn node(o: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = arr(o, "/status/conditions")
        .iter()
        .rev()
        .find(|c| s(c, "/type") == "Ready")
    {
        if s(c, "/status") == "True" {
            status.push("Ready".to_string());
        } else {
            status.push("NotReady".to_string());
        }
    }
    if status.is_empty() {
        status.push("Unknown".to_string());
    }
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".to_string());
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = o.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str()
                && !v.is_empty()
            {
                roles.insert(v.to_string());
            }
        }
    }
    let roles = or_none(&roles.into_iter().collect::<Vec<_>>().join(","));
    let address = |ty: &str| {
        arr(o, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == ty)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".to_string())
    };
    let unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name(o),
        Value::from(status.join(",")),
        Value::from(roles),
        age(o, now),
        Value::from(s(o, "/status/nodeInfo/kubeletVersion")),
        Value::from(address("InternalIP")),
        Value::from(address("ExternalIP")),
        Value::from(unknown(s(o, "/status/nodeInfo/osImage"))),
        Value::from(unknown(s(o, "/status/nodeInfo/kernelVersion"))),
        Value::from(unknown(s(o, "/status/nodeInfo/containerRuntimeVersion"))),
    ]
}

/// `printEvent`, for core/v1 events and (`v1` = true) events.k8s.io/v1 events, whose
/// fields upstream maps onto the core ones.
fn event(o: &Value, now: jiff::Timestamp, v1: bool) -> Vec<Value> {
    let (involved, message, source, first, last, count_ptr) = if v1 {
        (
            "/regarding",
            "/note",
            "/deprecatedSource",
            "/deprecatedFirstTimestamp",
            "/deprecatedLastTimestamp",
            "/deprecatedCount",
        )
    } else {
        (
            "/involvedObject",
            "/message",
            "/source",
            "/firstTimestamp",
            "/lastTimestamp",
            "/count",
        )
    };
    let first_ts = s(o, first);
    let first_seen = if parse_time(first_ts).is_none() {
        since(now, s(o, "/eventTime"))
    } else {
        since(now, first_ts)
    };
    let last_ts = s(o, last);
    let mut last_seen = if parse_time(last_ts).is_none() {
        first_seen.clone()
    } else {
        since(now, last_ts)
    };
    let mut count = int(o, count_ptr);
    if let Some(series) = o.get("series").filter(|v| v.is_object()) {
        last_seen = since(now, s(series, "/lastObservedTime"));
        count = int(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = s(o, &format!("{involved}/kind")).to_lowercase();
    let obj_name = s(o, &format!("{involved}/name"));
    let target = if obj_name.is_empty() {
        kind
    } else {
        format!("{kind}/{obj_name}")
    };
    let component = match s(o, &format!("{source}/component")) {
        "" => s(o, "/reportingController"),
        c => c,
    };
    let host = match s(o, &format!("{source}/host")) {
        "" => s(o, "/reportingInstance"),
        h => h,
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        Value::from(last_seen),
        Value::from(s(o, "/type")),
        Value::from(s(o, "/reason")),
        Value::from(target),
        Value::from(s(o, &format!("{involved}/fieldPath"))),
        Value::from(source),
        Value::from(s(o, message).trim()),
        Value::from(first_seen),
        Value::from(count),
        name(o),
    ]
}

/// `printService`.
fn service(o: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let ty = s(o, "/spec/type");
    let cluster_ip = arr(o, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| "<none>".to_string());
    let external_ips: Vec<&str> = arr(o, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut lb: Vec<&str> = Vec::new();
            for ing in arr(o, "/status/loadBalancer/ingress") {
                let v = match (s(ing, "/ip"), s(ing, "/hostname")) {
                    ("", "") => continue,
                    ("", h) => h,
                    (ip, _) => ip,
                };
                if !lb.contains(&v) {
                    lb.push(v);
                }
            }
            let mut all: Vec<&str> = lb;
            all.extend(external_ips.iter().copied());
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(o, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(o, "/spec/ports")
        .iter()
        .map(|p| {
            let node_port = int(p, "/nodePort");
            if node_port > 0 {
                format!("{}:{}/{}", int(p, "/port"), node_port, s(p, "/protocol"))
            } else {
                format!("{}/{}", int(p, "/port"), s(p, "/protocol"))
            }
        })
        .collect();
    let selector = o
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    vec![
        name(o),
        Value::from(ty),
        Value::from(cluster_ip),
        Value::from(external),
        Value::from(or_none(&ports.join(","))),
        age(o, now),
        Value::from(or_none(&selector)),
    ]
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `formatEndpoints` with all ports.
fn format_endpoints(o: &Value) -> String {
    let subsets = arr(o, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(s(a, "/ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(s(a, "/ip"), int(p, "/port")));
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - MAX)
    } else {
        ret
    }
}

pub(super) fn list_with_more(list: Vec<String>, more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() {
        "<unset>".to_string()
    } else {
        ret
    }
}

fn format_discovery_ports(ports: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut more = false;
    for p in ports {
        if list.len() < MAX {
            let n = match p.get("port").and_then(Value::as_i64) {
                Some(n) => n.to_string(),
                None => match p.get("name").and_then(Value::as_str) {
                    Some(name) => name.to_string(),
                    None => "*".to_string(),
                },
            };
            list.push(n);
        } else if list.len() == MAX {
            more = true;
        }
    }
    list_with_more(list, more, ports.len(), MAX)
}

fn format_discovery_endpoints(endpoints: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut more = false;
    let mut count = 0;
    for e in endpoints {
        for a in arr(e, "/addresses") {
            if list.len() < MAX {
                list.push(a.as_str().unwrap_or_default().to_string());
            } else if list.len() == MAX {
                more = true;
            }
            count += 1;
        }
    }
    list_with_more(list, more, count, MAX)
}

/// A `metav1.LabelSelector` as a selector string (`LabelSelectorAsSelector().String()`);
/// `None` when an operator is invalid.
pub(super) fn selector_string(sel: Option<&Value>) -> Option<String> {
    let Some(sel) = sel.filter(|v| v.is_object()) else {
        return Some(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for e in arr(sel, "/matchExpressions") {
        let key = s(e, "/key");
        let mut values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        values.sort_unstable();
        values.dedup();
        let r = match s(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), r));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(
        reqs.into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// `metav1.FormatLabelSelector`: `<none>` for an empty selector, `<error>` for an invalid one.
pub(super) fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        None => "<error>".to_string(),
        Some(s) if s.is_empty() => "<none>".to_string(),
        Some(s) => s,
    }
}
