//! Authorization through real tokens and kubectl: the node authorizer and NodeRestriction
//! (a node reads only what its pods use, lists pods only with its own field selector, may
//! not delete its Node, untaint itself or give itself restricted labels), RBAC (a user
//! bound to `view` in one namespace reads there and nowhere else, no Secrets, cannot
//! escalate), `kubectl auth can-i [--list]` and `kubectl auth whoami`.
//!
//! One cluster for every case (cases run in order inside one test).

#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;

/// The outcome of kubectl with a token: stdout on success, stderr on failure.
fn run(c: &Cluster, token: &str, args: &[&str]) -> Result<String, String> {
    let mut all: Vec<&str> = args.to_vec();
    let flag = format!("--token={token}");
    all.push(&flag);
    let out: Output = c.kubectl(&all);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Asserts kubectl with `token` fails with exactly upstream's Forbidden message.
fn forbidden(c: &Cluster, token: &str, args: &[&str], message: &str) {
    refused(
        c,
        token,
        args,
        &format!("Error from server (Forbidden): {message}"),
    );
}

/// Asserts kubectl with `token` fails and prints exactly `stderr`.
fn refused(c: &Cluster, token: &str, args: &[&str], stderr: &str) {
    match run(c, token, args) {
        Ok(out) => panic!("kubectl {args:?} succeeded: {out}"),
        Err(err) => assert_eq!(err, stderr, "kubectl {args:?}"),
    }
}

/// `kubectl auth can-i ARGS` with `token`: its output (it exits 1 for "no").
fn can_i(c: &Cluster, token: &str, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let flag = format!("--token={token}");
    all.push(&flag);
    String::from_utf8_lossy(&c.kubectl(&all).stdout).into_owned()
}

fn allowed(c: &Cluster, token: &str, args: &[&str]) -> String {
    run(c, token, args).unwrap_or_else(|e| panic!("kubectl {args:?} refused: {e}"))
}

/// Appends a user to the static token file (read again at the next request).
fn add_user(c: &Cluster, token: &str, user: &str, groups: &str) {
    use std::io::Write as _;
    let path = c.dir.path().join("data").join("tokens.csv");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("token file");
    writeln!(f, "{token},{user},uid-{user},\"{groups}\"").expect("append token");
}

const NODE_USER: &str = "system:node:e2e-node";

#[test]
fn the_403_matrix() {
    let _g = serial();
    let c = Cluster::up();
    let data = c.dir.path().join("data");
    let (node, proxy) = steps::node_tokens(&data, "e2e-node");
    add_user(&c, "alice-token-0123456789", "alice", "");
    add_user(&c, "bob-token-0123456789", "bob", "");
    add_user(&c, "carol-token-0123456789", "carol", "");
    let (alice, bob, carol) = (
        "alice-token-0123456789",
        "bob-token-0123456789",
        "carol-token-0123456789",
    );
    c.apply(
        r#"apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
---
apiVersion: v1
kind: Secret
metadata: {name: used, namespace: a}
stringData: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: unused, namespace: a}
stringData: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unused, namespace: a}
data: {k: v}
---
apiVersion: v1
kind: Node
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata: {name: mine, namespace: a}
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "cat /s/k; sleep 1000"]
    volumeMounts: [{name: s, mountPath: /s}]
  volumes:
  - name: s
    secret: {secretName: used}
---
apiVersion: v1
kind: Pod
metadata: {name: foreign, namespace: a}
spec:
  nodeName: other
  containers:
  - name: c
    image: busybox
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-view, namespace: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: carol-admin, namespace: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}
subjects: [{kind: User, name: carol, apiGroup: rbac.authorization.k8s.io}]
"#,
    );
    // The agent reads the Secret of its pod through the node authorizer: the pod runs.
    c.wait_for("pod mine running", Duration::from_secs(60), || {
        c.kubectl(&[
            "get",
            "pod",
            "mine",
            "-n",
            "a",
            "-o",
            "jsonpath={.status.phase}",
        ])
        .stdout
            == b"Running"
    });

    // --- the node ---
    let nu = NODE_USER;
    allowed(&c, &node, &["get", "secret", "used", "-n", "a"]);
    forbidden(
        &c,
        &node,
        &["get", "secret", "unused", "-n", "a"],
        &format!(
            r#"secrets "unused" is forbidden: User "{nu}" cannot get resource "secrets" in API group "" in the namespace "a": no relationship found between node 'e2e-node' and this object"#
        ),
    );
    forbidden(
        &c,
        &node,
        &["get", "configmap", "unused", "-n", "a"],
        &format!(
            r#"configmaps "unused" is forbidden: User "{nu}" cannot get resource "configmaps" in API group "" in the namespace "a": no relationship found between node 'e2e-node' and this object"#
        ),
    );
    forbidden(
        &c,
        &node,
        &["get", "secrets", "-A"],
        &format!(
            r#"secrets is forbidden: User "{nu}" cannot list resource "secrets" in API group "" at the cluster scope: can only read namespaced object of this type"#
        ),
    );
    let watch = run(&c, &node, &["get", "--raw", "/api/v1/secrets?watch=1"]);
    assert!(
        watch.as_ref().is_err_and(|e| e.contains("Forbidden")),
        "{watch:?}"
    );
    forbidden(
        &c,
        &node,
        &["get", "pod", "foreign", "-n", "a"],
        &format!(
            r#"pods "foreign" is forbidden: User "{nu}" cannot get resource "pods" in API group "" in the namespace "a": no relationship found between node 'e2e-node' and this object"#
        ),
    );
    allowed(&c, &node, &["get", "pod", "mine", "-n", "a"]);
    forbidden(
        &c,
        &node,
        &["logs", "foreign", "-n", "a"],
        &format!(
            r#"pods "foreign" is forbidden: User "{nu}" cannot get resource "pods" in API group "" in the namespace "a": no relationship found between node 'e2e-node' and this object"#
        ),
    );
    forbidden(
        &c,
        &node,
        &["get", "pods", "-A"],
        &format!(
            r#"pods is forbidden: User "{nu}" cannot list resource "pods" in API group "" at the cluster scope: can only list/watch pods with spec.nodeName field selector"#
        ),
    );
    let mine = allowed(
        &c,
        &node,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector=spec.nodeName=e2e-node",
            "-o",
            "name",
        ],
    );
    assert_eq!(mine.trim(), "pod/mine");
    forbidden(
        &c,
        &node,
        &["get", "deployments", "-A"],
        &format!(
            r#"deployments.apps is forbidden: User "{nu}" cannot list resource "deployments" in API group "apps" at the cluster scope"#
        ),
    );
    forbidden(
        &c,
        &node,
        &["delete", "node", "e2e-node", "--wait=false"],
        &format!(
            r#"nodes "e2e-node" is forbidden: User "{nu}" cannot delete resource "nodes" in API group "" at the cluster scope"#
        ),
    );
    forbidden(
        &c,
        &node,
        &[
            "label",
            "node",
            "e2e-node",
            "node-restriction.kubernetes.io/pool=x",
        ],
        r#"nodes "e2e-node" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pool"#,
    );
    forbidden(
        &c,
        &node,
        &[
            "label",
            "node",
            "e2e-node",
            "node-role.kubernetes.io/control-plane=",
        ],
        r#"nodes "e2e-node" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/control-plane"#,
    );
    // Another Node: not even read (AuthorizeNodeWithSelectors), so kubectl's label and
    // patch stop at their read (NodeRestriction's refusal of the write is in admission.rs).
    forbidden(
        &c,
        &node,
        &["label", "node", "other", "x=y"],
        &format!(
            r#"nodes "other" is forbidden: User "{nu}" cannot get resource "nodes" in API group "" at the cluster scope: node 'e2e-node' cannot read 'other', only its own Node object"#
        ),
    );
    assert_eq!(
        can_i(&c, &node, &["list", "pods", "-A"]),
        "no - can only list/watch pods with spec.nodeName field selector\n"
    );
    // The node reads Services (the kubelet's service links), not EndpointSlices or
    // Namespaces: those its Service proxy reads under its own identity, system:kube-proxy.
    allowed(&c, &node, &["get", "services", "-A"]);
    forbidden(
        &c,
        &node,
        &["get", "endpointslices", "-A"],
        &format!(
            r#"endpointslices.discovery.k8s.io is forbidden: User "{nu}" cannot list resource "endpointslices" in API group "discovery.k8s.io" at the cluster scope"#
        ),
    );
    forbidden(
        &c,
        &node,
        &["get", "namespaces"],
        &format!(
            r#"namespaces is forbidden: User "{nu}" cannot list resource "namespaces" in API group "" at the cluster scope"#
        ),
    );
    allowed(&c, &proxy, &["get", "endpointslices", "-A"]);
    allowed(&c, &proxy, &["get", "services,nodes,namespaces"]);
    forbidden(
        &c,
        &proxy,
        &["get", "secrets", "-A"],
        r#"secrets is forbidden: User "system:kube-proxy" cannot list resource "secrets" in API group "" at the cluster scope"#,
    );
    assert_eq!(
        allowed(
            &c,
            &proxy,
            &["auth", "whoami", "-o", "jsonpath={.status.userInfo.uid}"]
        ),
        "kube-proxy/e2e-node"
    );
    // The admin checks what the node may do with kubectl --as (impersonation).
    let as_node = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend(["--as=system:node:e2e-node", "--as-group=system:nodes"]);
        let out = c.kubectl(&all);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert_eq!(as_node(&["list", "services", "-A"]), "yes\n");
    assert_eq!(as_node(&["list", "endpointslices", "-A"]), "no\n");
    assert_eq!(as_node(&["get", "secret/used", "-n", "a"]), "yes\n");
    assert_eq!(
        as_node(&["get", "secret/unused", "-n", "a"]),
        "no - no relationship found between node 'e2e-node' and this object\n"
    );
    forbidden(
        &c,
        alice,
        &["get", "pods", "-n", "a", "--as=system:node:e2e-node"],
        r#"users "system:node:e2e-node" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#,
    );

    // --- a user with no group beyond system:authenticated ---
    forbidden(
        &c,
        alice,
        &["get", "secrets", "-n", "a"],
        r#"secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "a""#,
    );
    forbidden(
        &c,
        alice,
        &["get", "secret", "used", "-n", "a"],
        r#"secrets "used" is forbidden: User "alice" cannot get resource "secrets" in API group "" in the namespace "a""#,
    );
    assert_eq!(
        allowed(&c, alice, &["auth", "whoami"]),
        "ATTRIBUTE   VALUE\nUsername    alice\nUID         uid-alice\nGroups      [system:authenticated]\n"
    );
    assert_eq!(can_i(&c, alice, &["get", "secrets", "-n", "a"]), "no\n");

    // --- RBAC: bob may view namespace a ---
    allowed(&c, bob, &["get", "pods", "-n", "a"]);
    allowed(&c, bob, &["get", "configmap", "unused", "-n", "a"]);
    assert_eq!(can_i(&c, bob, &["list", "pods", "-n", "a"]), "yes\n");
    assert_eq!(can_i(&c, bob, &["list", "pods", "-n", "b"]), "no\n");
    forbidden(
        &c,
        bob,
        &["get", "pods", "-n", "b"],
        r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "b""#,
    );
    forbidden(
        &c,
        bob,
        &["get", "pods", "-A"],
        r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" at the cluster scope"#,
    );
    forbidden(
        &c,
        bob,
        &["get", "secret", "used", "-n", "a"],
        r#"secrets "used" is forbidden: User "bob" cannot get resource "secrets" in API group "" in the namespace "a""#,
    );
    forbidden(
        &c,
        bob,
        &["delete", "pod", "mine", "-n", "a", "--wait=false"],
        r#"pods "mine" is forbidden: User "bob" cannot delete resource "pods" in API group "" in the namespace "a""#,
    );
    refused(
        &c,
        bob,
        &[
            "create",
            "clusterrolebinding",
            "bob-root",
            "--clusterrole=cluster-admin",
            "--user=bob",
        ],
        r#"error: failed to create clusterrolebinding: clusterrolebindings.rbac.authorization.k8s.io is forbidden: User "bob" cannot create resource "clusterrolebindings" in API group "rbac.authorization.k8s.io" at the cluster scope"#,
    );
    let list = allowed(&c, bob, &["auth", "can-i", "--list", "-n", "a"]);
    let header = list.lines().next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "Resources",
            "Non-Resource",
            "URLs",
            "Resource",
            "Names",
            "Verbs"
        ],
        "{list}"
    );
    for (resource, verbs) in [
        ("pods", "[get list watch]"),
        ("pods/log", "[get list watch]"),
        ("deployments.apps", "[get list watch]"),
        ("selfsubjectaccessreviews.authorization.k8s.io", "[create]"),
    ] {
        assert!(
            list.lines().any(|l| {
                l.split_whitespace().next() == Some(resource)
                    && l.ends_with(&format!("[]                  []               {verbs}"))
            }),
            "{resource} {verbs} missing from:\n{list}"
        );
    }
    assert!(
        !list.lines().any(|l| l.starts_with("secrets ")),
        "view lists secrets:\n{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains("[/api/*]") && l.ends_with("[get]")),
        "{list}"
    );

    // --- RBAC: carol administers namespace a but cannot escalate ---
    allowed(&c, carol, &["get", "secret", "used", "-n", "a"]);
    refused(
        &c,
        carol,
        &[
            "create",
            "rolebinding",
            "carol-root",
            "-n",
            "a",
            "--clusterrole=cluster-admin",
            "--user=carol",
        ],
        "error: failed to create rolebinding: rolebindings.rbac.authorization.k8s.io \"carol-root\" is forbidden: user \"carol\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}\n{NonResourceURLs:[\"*\"], Verbs:[\"*\"]}",
    );
    allowed(
        &c,
        carol,
        &[
            "create",
            "rolebinding",
            "dave-view",
            "-n",
            "a",
            "--clusterrole=view",
            "--user=dave",
        ],
    );
    forbidden(
        &c,
        carol,
        &[
            "create",
            "role",
            "nodes-reader",
            "-n",
            "a",
            "--verb=get",
            "--resource=nodes",
        ],
        "roles.rbac.authorization.k8s.io \"nodes-reader\" is forbidden: user \"carol\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\"]}",
    );

    // --- the node may not untaint itself (last: the taint stays) ---
    c.kubectl_ok(&["taint", "node", "e2e-node", "e2e=1:NoSchedule"]);
    forbidden(
        &c,
        &node,
        &["taint", "node", "e2e-node", "e2e=1:NoSchedule-"],
        r#"nodes "e2e-node" is forbidden: node "e2e-node" is not allowed to modify taints"#,
    );
    c.kubectl_ok(&["taint", "node", "e2e-node", "e2e=1:NoSchedule-"]);
}
