//! `podvisor bench --only authz`: the cost of authorization per request, in process, with
//! the server's own authorizer chain (system:masters, Node, RBAC) over a large policy:
//! 1,000 RoleBindings and ClusterRoleBindings spread over 100 namespaces, and a node graph
//! of 10,000 pods on 100 nodes, each pod with a Secret, a ConfigMap and a claim.

use std::sync::Arc;
use std::time::Instant;

use podvisor_apiserver::auth::rbac::{Policy, RbacAuthorizer, bootstrap};
use podvisor_apiserver::auth::{
    Authorizer, NodeGraph, RequestAttributes, UserInfo, default_authorizer,
};
use serde_json::{Value, json};

use crate::bench::Samples;

/// The policy: the default roles and bindings, then `n` bindings of users `u<i>` to `view`,
/// `edit` or a Role of their namespace, and some to groups.
fn policy(n: usize) -> Policy {
    let roles = bootstrap::cluster_roles();
    let mut view = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "view")
        .cloned()
        .unwrap_or_default();
    // `view` as the aggregation controller leaves it.
    view["rules"] = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "system:aggregate-to-view")
        .map(|r| r["rules"].clone())
        .unwrap_or_default();
    let mut cluster_roles = roles;
    cluster_roles.push(view);
    let mut ns_roles = Vec::new();
    let mut bindings = Vec::new();
    for i in 0..n {
        let ns = format!("ns{}", i % 100);
        if i % 100 < 10 {
            ns_roles.push(json!({"metadata": {"name": format!("r{i}"), "namespace": ns},
                "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]}]}));
        }
        let role = match i % 3 {
            0 => json!({"kind": "ClusterRole", "name": "view"}),
            1 => json!({"kind": "ClusterRole", "name": "edit"}),
            _ => json!({"kind": "Role", "name": format!("r{}", i - i % 100 + (i % 10))}),
        };
        let subject = if i % 10 == 0 {
            json!({"kind": "Group", "name": format!("g{}", i % 50)})
        } else {
            json!({"kind": "User", "name": format!("u{i}")})
        };
        bindings.push(
            json!({"metadata": {"name": format!("b{i}"), "namespace": ns},
            "roleRef": role, "subjects": [subject]}),
        );
    }
    let crbs = bootstrap::cluster_role_bindings();
    Policy::build(
        cluster_roles.iter(),
        ns_roles.iter(),
        crbs.iter(),
        bindings.iter(),
    )
}

fn pods(n: usize, nodes: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"metadata": {"name": format!("p{i}"), "namespace": format!("ns{}", i % 100)},
                "spec": {"nodeName": format!("n{}", i % nodes), "serviceAccountName": "default",
                    "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": format!("cm{i}")}}]}],
                    "volumes": [{"name": "s", "secret": {"secretName": format!("s{i}")}},
                                {"name": "d", "persistentVolumeClaim": {"claimName": format!("c{i}")}}]}})
        })
        .collect()
}

/// A deterministic stream of requests: users (with and without bindings, in groups),
/// nodes reading their own and others' objects.
fn request(i: usize) -> (UserInfo, RequestAttributes) {
    let mix = i.wrapping_mul(2_654_435_761) % 1_000_003;
    let ns = format!("ns{}", mix % 100);
    if mix.is_multiple_of(2) {
        let user = UserInfo::new(
            format!("u{}", mix % 1_200),
            "",
            vec![format!("g{}", mix % 60), "system:authenticated".into()],
        );
        let (verb, group, res, sub) = match mix % 7 {
            0 => ("list", "", "pods", ""),
            1 => ("get", "", "pods", "log"),
            2 => ("create", "apps", "deployments", ""),
            3 => ("get", "", "secrets", ""),
            4 => ("delete", "", "configmaps", ""),
            5 => ("watch", "batch", "jobs", ""),
            _ => ("update", "rbac.authorization.k8s.io", "rolebindings", ""),
        };
        (
            user,
            RequestAttributes::resource(verb, group, res, sub, &ns, "x"),
        )
    } else {
        let pod = mix % 10_000;
        let node = if mix % 4 == 1 {
            pod % 100
        } else {
            (pod + 1) % 100
        };
        let user = UserInfo::new(
            format!("system:node:n{node}"),
            "",
            vec!["system:nodes".into(), "system:authenticated".into()],
        );
        let ns = format!("ns{}", pod % 100);
        let a = match mix % 3 {
            0 => RequestAttributes::resource("get", "", "secrets", "", &ns, &format!("s{pod}")),
            1 => RequestAttributes::resource("get", "", "configmaps", "", &ns, &format!("cm{pod}")),
            _ => RequestAttributes::resource("get", "", "pods", "", &ns, &format!("p{pod}")),
        };
        (user, a)
    }
}

/// Runs the section; prints and returns its figures.
// A benchmark measures real elapsed time.
#[allow(clippy::disallowed_methods)]
pub(crate) fn run(quick: bool) -> Value {
    let (bindings, pod_n, n) = (1_000, 10_000, if quick { 20_000 } else { 200_000 });
    let built = Instant::now();
    let rbac = Arc::new(RbacAuthorizer::with_policy(policy(bindings)));
    let graph = Arc::new(NodeGraph::from_pods(pods(pod_n, 100).iter()));
    let chain = default_authorizer(graph, rbac.clone());
    let build_ms = built.elapsed().as_secs_f64() * 1000.0;
    let requests: Vec<_> = (0..n).map(request).collect();
    let mut samples = Samples::default();
    let mut allowed = 0usize;
    let all = Instant::now();
    for (user, a) in &requests {
        let t = Instant::now();
        let d = chain.authorize(user, a);
        samples.push(t.elapsed());
        allowed += usize::from(d.allowed());
    }
    let per_sec = n as f64 / all.elapsed().as_secs_f64();
    println!("## authorization (Node + RBAC, in process)");
    println!(
        "policy: {} bindings indexed, node graph {pod_n} pods on 100 nodes (built in {build_ms:.1} ms)",
        rbac.policy().binding_count()
    );
    println!(
        "{n} decisions ({allowed} allowed): p50 {:.2} µs, p99 {:.2} µs, max {:.2} µs; {:.0} decisions/s\n",
        samples.pct(50.0) * 1000.0,
        samples.pct(99.0) * 1000.0,
        samples.pct(100.0) * 1000.0,
        per_sec
    );
    json!({"bindings": bindings, "pods": pod_n, "decisions": n, "allowed": allowed,
        "p50_us": samples.pct(50.0) * 1000.0, "p99_us": samples.pct(99.0) * 1000.0,
        "max_us": samples.pct(100.0) * 1000.0, "build_ms": build_ms})
}
