//! The default roles and bindings upstream's API server bootstraps (`bootstrappolicy`), and
//! their reconciliation at every start: a missing object is created; an existing one with
//! the annotation `rbac.authorization.kubernetes.io/autoupdate: "true"` (or none) gets the
//! rules, aggregation selectors, subjects, labels and annotations it lacks (nothing is
//! removed, as upstream's non-destructive reconcile); `"false"` leaves it alone.

use serde_json::{Value, json};

use super::rules::{Rule, covers};
use crate::auth::{AUTHENTICATED_GROUP, MASTERS_GROUP, UNAUTHENTICATED_GROUP};

/// The annotation that lets reconciliation update a default object.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
    Rule {
        verbs: v(verbs),
        api_groups: v(groups),
        resources: v(resources),
        ..Rule::default()
    }
}

fn named(mut r: Rule, names: &[&str]) -> Rule {
    r.resource_names = v(names);
    r
}

fn urls(verbs: &[&str], urls: &[&str]) -> Rule {
    Rule {
        verbs: v(verbs),
        non_resource_urls: v(urls),
        ..Rule::default()
    }
}

fn events_rule() -> Rule {
    rule(
        &["create", "update", "patch"],
        &["", "events.k8s.io"],
        &["events"],
    )
}

/// The static rules of the node authorizer (upstream's `NodeRules`), also the rules of the
/// `system:node` ClusterRole.
pub fn node_rules() -> Vec<Rule> {
    vec![
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        rule(READ, &[""], &["services"]),
        rule(&["create", "get", "list", "watch"], &[""], &["nodes"]),
        rule(&["update", "patch"], &[""], &["nodes/status"]),
        rule(&["update", "patch"], &[""], &["nodes"]),
        rule(&["create", "update", "patch"], &[""], &["events"]),
        rule(READ, &[""], &["pods"]),
        rule(&["create", "delete"], &[""], &["pods"]),
        rule(&["update", "patch"], &[""], &["pods/status"]),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(READ, &[""], &["secrets", "configmaps"]),
        rule(
            &["get"],
            &[""],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["get"], &[""], &["endpoints"]),
        rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
        rule(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            &["get", "update", "patch"],
            &[""],
            &["persistentvolumeclaims/status"],
        ),
        rule(
            &["get", "watch", "list"],
            &["storage.k8s.io"],
            &["csidrivers"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &["storage.k8s.io"],
            &["csinodes"],
        ),
        rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
    ]
}

fn aggregate_to_view() -> Vec<Rule> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
        ),
        rule(
            READ,
            &[""],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
        ),
        rule(READ, &[""], &["namespaces"]),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        // podvisor: pod timelines are read by whoever reads pods (view, edit, admin)
        rule(READ, &[podvisor_kit::timeline::GROUP], &["timelines"]),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/status",
                "statefulsets/scale",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &["batch"],
            &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
        ),
        rule(
            READ,
            &["extensions"],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &["networking.k8s.io"],
            &["networkpolicies", "ingresses", "ingresses/status"],
        ),
    ]
}

fn aggregate_to_edit() -> Vec<Rule> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
                "secrets",
                "services/proxy",
            ],
        ),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            WRITE,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
            ],
        ),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            WRITE,
            &[""],
            &[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            WRITE,
            &["apps"],
            &[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ],
        ),
        rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(WRITE, &["batch"], &["jobs", "cronjobs"]),
        rule(
            WRITE,
            &["extensions"],
            &[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "ingresses",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
        rule(
            WRITE,
            &["networking.k8s.io"],
            &["networkpolicies", "ingresses"],
        ),
    ]
}

fn aggregate_to_admin() -> Vec<Rule> {
    vec![
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
        rule(
            READ_WRITE,
            &["rbac.authorization.k8s.io"],
            &["roles", "rolebindings"],
        ),
    ]
}

fn scheduler_rules() -> Vec<Rule> {
    vec![
        events_rule(),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            rule(&["get", "update"], &["coordination.k8s.io"], &["leases"]),
            &["kube-scheduler"],
        ),
        rule(&["create"], &[""], &["endpoints"]),
        named(
            rule(&["get", "update"], &[""], &["endpoints"]),
            &["kube-scheduler"],
        ),
        rule(READ, &[""], &["nodes"]),
        rule(&["get", "list", "watch", "delete"], &[""], &["pods"]),
        rule(&["create"], &[""], &["pods/binding", "bindings"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(READ, &[""], &["replicationcontrollers", "services"]),
        rule(READ, &["apps", "extensions"], &["replicasets"]),
        rule(READ, &["apps"], &["statefulsets"]),
        rule(READ, &["policy"], &["poddisruptionbudgets"]),
        rule(
            READ,
            &[""],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        rule(
            READ,
            &["storage.k8s.io"],
            &[
                "csinodes",
                "csidrivers",
                "csistoragecapacities",
                "storageclasses",
            ],
        ),
        rule(READ, &[""], &["namespaces"]),
        rule(
            READ,
            &["resource.k8s.io"],
            &["resourceclaims", "deviceclasses"],
        ),
    ]
}

fn controller_manager_rules() -> Vec<Rule> {
    vec![
        events_rule(),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            rule(&["get", "update"], &["coordination.k8s.io"], &["leases"]),
            &["kube-controller-manager"],
        ),
        rule(&["create"], &[""], &["secrets", "serviceaccounts"]),
        rule(&["delete"], &[""], &["secrets"]),
        rule(
            &["get"],
            &[""],
            &["namespaces", "secrets", "serviceaccounts", "configmaps"],
        ),
        rule(&["update"], &[""], &["secrets", "serviceaccounts"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        rule(&["list", "watch"], &["*"], &["*"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
    ]
}

fn aggregation(label: &str) -> Value {
    json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]})
}

fn cluster_role(name: &str, labels: &[&str], rules: Vec<Rule>, agg: Option<Value>) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("kubernetes.io/bootstrapping".into(), "rbac-defaults".into());
    for k in labels {
        l.insert(k.to_string(), "true".into());
    }
    let mut role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": l, "annotations": {AUTOUPDATE: "true"}},
    });
    if let Some(a) = agg {
        role["aggregationRule"] = a;
    } else {
        role["rules"] = rules.iter().map(Rule::to_json).collect::<Vec<_>>().into();
    }
    role
}

const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let get = &["get"];
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
            None,
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![urls(
                get,
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
            None,
        ),
        cluster_role(
            "system:monitoring",
            &[],
            vec![urls(
                get,
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                ],
            )],
            None,
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
            None,
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![urls(
                get,
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
            None,
        ),
        cluster_role("admin", &[], vec![], Some(aggregation(TO_ADMIN))),
        cluster_role("edit", &[TO_ADMIN], vec![], Some(aggregation(TO_EDIT))),
        cluster_role("view", &[TO_EDIT], vec![], Some(aggregation(TO_VIEW))),
        cluster_role(
            "system:aggregate-to-admin",
            &[TO_ADMIN],
            aggregate_to_admin(),
            None,
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[TO_EDIT],
            aggregate_to_edit(),
            None,
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[TO_VIEW],
            aggregate_to_view(),
            None,
        ),
        cluster_role("system:node", &[], node_rules(), None),
        cluster_role(
            "system:node-proxier",
            &[],
            vec![
                rule(&["list", "watch"], &[""], &["services", "endpoints"]),
                rule(READ, &[""], &["nodes"]),
                events_rule(),
                rule(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ],
            None,
        ),
        cluster_role(
            "system:auth-delegator",
            &[],
            vec![
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
            None,
        ),
        cluster_role(
            "system:kube-controller-manager",
            &[],
            controller_manager_rules(),
            None,
        ),
        cluster_role("system:kube-scheduler", &[], scheduler_rules(), None),
        // podvisor: the cluster DNS each agent's Service proxy serves also follows
        // Namespaces (CoreDNS's `system:coredns` role, shipped by the addon upstream, reads
        // them too).
        cluster_role(
            "system:podvisor:cluster-dns",
            &[],
            vec![rule(&["list", "watch"], &[""], &["namespaces"])],
            None,
        ),
        cluster_role(
            "system:kube-dns",
            &[],
            vec![rule(&["list", "watch"], &[""], &["endpoints", "services"])],
            None,
        ),
    ]
}

fn subject(kind: &str, name: &str) -> Value {
    json!({"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": name})
}

fn cluster_binding(name: &str, subjects: Vec<Value>) -> Value {
    binding_to(name, name, subjects)
}

fn binding_to(name: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {AUTOUPDATE: "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    let group = |n| subject("Group", n);
    let user = |n| subject("User", n);
    vec![
        cluster_binding("cluster-admin", vec![group(MASTERS_GROUP)]),
        cluster_binding("system:discovery", vec![group(AUTHENTICATED_GROUP)]),
        cluster_binding("system:basic-user", vec![group(AUTHENTICATED_GROUP)]),
        cluster_binding(
            "system:public-info-viewer",
            vec![group(AUTHENTICATED_GROUP), group(UNAUTHENTICATED_GROUP)],
        ),
        cluster_binding("system:monitoring", vec![group("system:monitoring")]),
        cluster_binding("system:node-proxier", vec![user("system:kube-proxy")]),
        cluster_binding(
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager")],
        ),
        cluster_binding("system:kube-scheduler", vec![user("system:kube-scheduler")]),
        cluster_binding(
            "system:kube-dns",
            vec![json!({"kind": "ServiceAccount", "name": "kube-dns", "namespace": "kube-system"})],
        ),
        // Kept with no subjects, as upstream: the node authorizer grants what nodes need.
        cluster_binding("system:node", vec![]),
        // podvisor: each agent's Service proxy also serves the cluster DNS, under the
        // proxy's own identity (`system:kube-proxy`, bound to `system:node-proxier` above;
        // docs/design/0011-proxy-identity.md), which therefore also follows Namespaces.
        cluster_binding(
            "system:podvisor:cluster-dns",
            vec![user(crate::auth::PROXY_USER)],
        ),
    ]
}

/// Default ClusterRoleBindings of earlier versions that reconciliation deletes: nodes were
/// bound to `system:node-proxier` while the agent's Service proxy used the node's identity.
pub const RETIRED_CLUSTER_ROLE_BINDINGS: &[&str] = &["system:podvisor:node-proxier"];

/// Subjects of earlier versions that reconciliation removes from a default binding: the
/// cluster DNS read Namespaces as the node (binding, subject kind, subject name).
pub const RETIRED_SUBJECTS: &[(&str, &str, &str)] = &[(
    "system:podvisor:cluster-dns",
    "Group",
    crate::auth::NODES_GROUP,
)];

/// Whether reconciliation may change `existing` (autoupdate is not `"false"`).
pub fn may_update(existing: &Value) -> bool {
    existing
        .pointer(&format!(
            "/metadata/annotations/{}",
            AUTOUPDATE.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        != Some("false")
}

fn merge_string_map(existing: &mut Value, expected: &Value, key: &str) -> bool {
    let Some(want) = expected
        .pointer(&format!("/metadata/{key}"))
        .and_then(Value::as_object)
    else {
        return false;
    };
    let meta = &mut existing["metadata"];
    if !meta.get(key).is_some_and(Value::is_object) {
        meta[key] = json!({});
    }
    let mut changed = false;
    if let Some(have) = meta.get_mut(key).and_then(Value::as_object_mut) {
        for (k, v) in want {
            if !have.contains_key(k) {
                have.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    changed
}

/// The reconciled ClusterRole, or `None` when `existing` needs no change (upstream's
/// `computeReconciledRole` without removal).
pub fn reconcile_role(existing: &Value, expected: &Value) -> Option<Value> {
    let mut out = existing.clone();
    let mut changed = merge_string_map(&mut out, expected, "labels");
    changed |= merge_string_map(&mut out, expected, "annotations");
    if let Some(want) = expected
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    {
        let have = out
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut merged = have.clone();
        for s in want {
            if !merged.contains(s) {
                merged.push(s.clone());
            }
        }
        if merged != have {
            out["aggregationRule"] = json!({"clusterRoleSelectors": merged});
            changed = true;
        }
    } else {
        let have = Rule::all_from(existing);
        let (ok, missing) = covers(&have, &Rule::all_from(expected));
        if !ok {
            let mut rules = out
                .get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            rules.extend(missing.iter().map(Rule::to_json));
            out["rules"] = rules.into();
            changed = true;
        }
    }
    changed.then_some(out)
}

/// What reconciling a binding asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingChange {
    /// Nothing to do.
    Unchanged,
    /// Write this (missing subjects, labels, annotations added).
    Update(Value),
    /// The roleRef differs and cannot be updated: delete and create again.
    Recreate,
}

/// The reconciliation of a ClusterRoleBinding (upstream's non-destructive reconcile; only
/// the [`RETIRED_SUBJECTS`] of podvisor's own bindings are removed).
pub fn reconcile_binding(existing: &Value, expected: &Value) -> BindingChange {
    if existing.get("roleRef") != expected.get("roleRef") {
        return BindingChange::Recreate;
    }
    let mut out = existing.clone();
    let mut changed = merge_string_map(&mut out, expected, "labels");
    changed |= merge_string_map(&mut out, expected, "annotations");
    let mut subjects = out
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let name = existing.pointer("/metadata/name").and_then(Value::as_str);
    let before = subjects.len();
    subjects.retain(|s| {
        !RETIRED_SUBJECTS.iter().any(|(binding, kind, subject)| {
            name == Some(*binding)
                && s.get("kind").and_then(Value::as_str) == Some(*kind)
                && s.get("name").and_then(Value::as_str) == Some(*subject)
        })
    });
    changed |= subjects.len() != before;
    let same = |a: &Value, b: &Value| {
        ["kind", "name", "namespace"].iter().all(|k| {
            a.get(*k).and_then(Value::as_str).unwrap_or("")
                == b.get(*k).and_then(Value::as_str).unwrap_or("")
        })
    };
    for s in expected
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !subjects.iter().any(|h| same(h, s)) {
            subjects.push(s.clone());
            changed = true;
        }
    }
    if !changed {
        return BindingChange::Unchanged;
    }
    out["subjects"] = subjects.into();
    BindingChange::Update(out)
}
