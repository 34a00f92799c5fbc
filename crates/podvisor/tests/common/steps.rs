//! Steps shared by the suites that run a server and separate agents.

use std::path::Path;

use super::{Cluster, NetNs, Process, binary, kubectl, sh};

/// `podvisor token create node NAME` in the server's data dir `server_dir`: the node's
/// token and its Service proxy's (the two lines it prints).
pub fn node_tokens(server_dir: &Path, name: &str) -> (String, String) {
    let out = podvisor_testkit::run_ok(
        std::process::Command::new(binary())
            .args(["token", "create", "node", name, "--data-dir"])
            .arg(server_dir),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().map(str::trim);
    let node = lines.next().unwrap_or_default().to_string();
    let proxy = lines.next().unwrap_or_default().to_string();
    assert!(
        !node.is_empty() && !proxy.is_empty(),
        "token create printed {text:?}"
    );
    (node, proxy)
}

/// Creates a node token `name` in the server's data dir `server_dir`, writes it to
/// `dir/<name>.token` and starts agent `name` on the server at 127.0.0.1:`port`: node IP
/// 127.0.0.`n`, data dir `dir/<name>`, `--drain`, its log in `dir`.
pub fn start_agent(name: &str, n: u8, port: u16, server_dir: &Path, dir: &Path) -> Process {
    let server = format!("https://127.0.0.1:{port}");
    start_agent_at(
        None,
        name,
        &server,
        &format!("127.0.0.{n}"),
        server_dir,
        dir,
        &[],
    )
}

/// The same for the server at `server` (a URL), node IP `node_ip`, in the test's network
/// namespace `ns` (pod network on) or the machine's own (`None`, pod network off), with
/// `extra` flags after the standard ones.
pub fn start_agent_at(
    ns: Option<&NetNs>,
    name: &str,
    server: &str,
    node_ip: &str,
    server_dir: &Path,
    dir: &Path,
    extra: &[&str],
) -> Process {
    let token = podvisor_testkit::run_ok(
        std::process::Command::new(binary())
            .args(["token", "create", "node", name, "--data-dir"])
            .arg(server_dir),
    );
    let token_file = dir.join(format!("{name}.token"));
    std::fs::write(&token_file, &token.stdout).expect("write token");
    let mut args: Vec<String> = vec![
        "agent".into(),
        "--server".into(),
        server.into(),
        "--ca-file".into(),
        server_dir.join("ca.crt").display().to_string(),
        "--token-file".into(),
        token_file.display().to_string(),
        "--node-name".into(),
        name.to_string(),
        "--node-ip".into(),
        node_ip.into(),
        "--data-dir".into(),
        dir.join(name).display().to_string(),
        "--drain".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    match ns {
        Some(ns) => Process::start_in(ns, name, &args, dir),
        None => Process::start(name, &args, dir),
    }
}

/// Starts `podvisor server` on 127.0.0.1:`port` with its data in `dir/server`, `extra` flags
/// after the standard ones and its log in `dir`.
pub fn start_server(dir: &Path, port: u16, extra: &[String]) -> Process {
    let mut args = vec![
        "server".to_string(),
        "--data-dir".into(),
        dir.join("server").display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    args.extend_from_slice(extra);
    Process::start("server", &args, dir)
}

/// A ReplicaSet `name` of `replicas` pods labelled `app: <name>` with a grace period of 2 s,
/// each running `sleep 1000` tagged with `marker`; `extra` is more lines of the pod spec
/// (indented by six spaces).
pub fn sleeper_replica_set(name: &str, replicas: u32, extra: &str, marker: &str) -> String {
    let command = format!(r#"["sh", "-c", "sleep 1000 & wait", "{marker}"]"#);
    apps_manifest("ReplicaSet", name, replicas, 2, extra, &command)
}

/// An apps/v1 `kind` (ReplicaSet, StatefulSet, ...) `name` of `replicas` host-command pods
/// labelled `app: <name>` with grace period `grace`, running `command` (a YAML list) in
/// busybox; `extra` is more lines of the pod spec (indented by six spaces).
pub fn apps_manifest(
    kind: &str,
    name: &str,
    replicas: u32,
    grace: u32,
    extra: &str,
    command: &str,
) -> String {
    let service = if kind == "StatefulSet" {
        format!("  serviceName: {name}\n")
    } else {
        String::new()
    };
    format!(
        r#"apiVersion: apps/v1
kind: {kind}
metadata:
  name: {name}
spec:
{service}  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: {grace}
      runtimeClassName: host
{extra}      containers:
      - name: main
        image: busybox
        command: {command}
"#
    )
}

/// `kubectl delete <kinds> --all --force --grace-period=0 --wait=false <extra>`, its outcome
/// ignored: the first step of taking a test's cluster down.
pub fn force_delete_all(kubeconfig: &Path, kinds: &str, extra: &[&str]) {
    let mut args = vec![
        "delete",
        kinds,
        "--all",
        "--force",
        "--grace-period=0",
        "--wait=false",
    ];
    args.extend_from_slice(extra);
    let _ = kubectl(kubeconfig, &args);
}

/// The name of `<tag>b`'s end of the veth pair [`two_node_netns`] made (a partition is
/// `ip -n <ns> link set <it> down`).
pub fn veth_b(tag: &str) -> String {
    format!("pvb{tag}{}", std::process::id() % 100_000)
}

/// Two network namespaces `<tag>a` and `<tag>b` joined by a veth pair (one L2 segment):
/// `ip_a`/24 in the first, `ip_b`/24 in the second, each with a default route through its end
/// (traffic to cluster IPs needs a route before the Service proxy translates it).
pub fn two_node_netns(tag: &str, ip_a: &str, ip_b: &str) -> (NetNs, NetNs) {
    let a = NetNs::new(&format!("{tag}a"));
    let b = NetNs::new(&format!("{tag}b"));
    let n = std::process::id() % 100_000;
    let (dev_a, dev_b) = (format!("pva{tag}{n}"), veth_b(tag));
    sh(&format!(
        "ip link add {dev_a} netns {} type veth peer name {dev_b} netns {}",
        a.name, b.name
    ));
    for (ns, dev, ip) in [(&a, &dev_a, ip_a), (&b, &dev_b, ip_b)] {
        sh(&format!(
            "ip -n {0} addr add {ip}/24 dev {dev} && ip -n {0} link set {dev} up && ip -n {0} route add default dev {dev}",
            ns.name
        ));
    }
    (a, b)
}

/// An agent that stops with its pods (SIGINT: it was started with `--drain`) when dropped,
/// also when the test fails: nothing of it outlives the test.
pub struct JoinedAgent(pub Process);

impl Drop for JoinedAgent {
    fn drop(&mut self) {
        if self.0.child.is_none() {
            return;
        }
        self.0.signal(2);
        if self
            .0
            .wait_exit(std::time::Duration::from_secs(30))
            .is_none()
        {
            self.0.kill9();
        }
    }
}

/// Starts agent `name` at `node_ip` in `ns`, joining cluster `c` (its API server on
/// `c.listen_ip`:6443), and waits until its node is Ready with a podCIDR.
pub fn join_agent(c: &Cluster, ns: &NetNs, name: &str, node_ip: &str) -> JoinedAgent {
    join_agent_with(c, ns, name, node_ip, &[])
}

/// [`join_agent`] with `extra` agent flags.
pub fn join_agent_with(
    c: &Cluster,
    ns: &NetNs,
    name: &str,
    node_ip: &str,
    extra: &[&str],
) -> JoinedAgent {
    let agent = JoinedAgent(start_agent_at(
        Some(ns),
        name,
        &format!("https://{}:6443", c.listen_ip),
        node_ip,
        &c.dir.path().join("data"),
        c.dir.path(),
        extra,
    ));
    c.wait_for(
        &format!("{name} Ready with a podCIDR"),
        std::time::Duration::from_secs(60),
        || {
            let out = c.kubectl(&[
                "get",
                "node",
                name,
                "-o",
                "jsonpath={.spec.podCIDR}|{.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.ends_with("|True") && !text.starts_with('|')
        },
    );
    agent
}
