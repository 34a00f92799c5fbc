//! Pod networking end to end: every cluster here runs entirely inside a network namespace
//! the test makes (`ip netns add`), with kubectl and every client; nothing is created in
//! or sent from the machine's own namespace.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const NODE_IP: &str = "10.250.1.1";
const START: Duration = Duration::from_secs(60);

/// A pod that answers every TCP connection on :8080 with its own name.
fn echo_pod(name: &str, extra_spec: &str, ports: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 0
{extra_spec}  containers:
  - name: c
    image: busybox
    command: [busybox, nc, -ll, -p, '8080', -e, busybox, echo, {name}]
{ports}"
    )
}

fn pod_ip(c: &Cluster, pod: &str) -> String {
    c.pod_field(pod, "{.status.podIP}").unwrap_or_default()
}

/// What a TCP connection to `addr` `port` from the node's namespace reads.
fn fetch(ns: &NetNs, addr: &str, port: u16) -> String {
    let out = ns.sh(&format!("busybox nc -w 3 {addr} {port} </dev/null"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Lines of a command run in the node's namespace (counting interfaces and the like).
fn count(ns: &NetNs, cmd: &str) -> usize {
    let out = ns.sh(cmd);
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Veth interfaces on the node, IP leases and cached CNI results.
fn leftovers(c: &Cluster) -> (usize, usize, usize) {
    let ns = c.netns.as_ref().expect("netns");
    let data = c.dir.path().join("data").join("cni");
    let files = |d: std::path::PathBuf, f: fn(&str) -> bool| {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| f(&e.file_name().to_string_lossy()))
                    .count()
            })
            .unwrap_or(0)
    };
    (
        count(ns, "ip -o link show type veth"),
        files(data.join("networks").join("podvisor"), |n| {
            n.parse::<std::net::IpAddr>().is_ok()
        }),
        files(data.join("cache").join("results"), |_| true),
    )
}

#[test]
fn pods_get_networks_of_their_own() {
    let _g = serial();
    let c = Cluster::up_in_netns(NetNs::new("net").with_lo_addr(NODE_IP), NODE_IP, &[]);
    let ns = c.netns.as_ref().expect("netns");
    c.wait_for("the node's podCIDR", START, || {
        c.kubectl_ok(&["get", "node", &c.node, "-o", "jsonpath={.spec.podCIDR}"]) == "10.244.0.0/24"
    });
    let conditions = c.kubectl_ok(&[
        "get",
        "node",
        &c.node,
        "-o",
        "jsonpath={.status.conditions[*].type}",
    ]);
    assert!(!conditions.contains("NetworkUnavailable"), "{conditions}");

    c.apply(&echo_pod("a", "", ""));
    c.apply(&echo_pod("b", "", ""));
    c.apply(&echo_pod("h", "  hostNetwork: true\n", ""));
    c.apply(&echo_pod(
        "d",
        "",
        "    ports:\n    - containerPort: 8080\n      hostPort: 30080\n",
    ));
    for p in ["a", "b", "h", "d"] {
        c.wait_pod_ready(p, START);
    }
    assert_eq!(
        c.pod_field(
            "a",
            "{.status.conditions[?(@.type==\"PodReadyToStartContainers\")].status}"
        )
        .as_deref(),
        Some("True")
    );
    let (a, b, d) = (pod_ip(&c, "a"), pod_ip(&c, "b"), pod_ip(&c, "d"));
    for ip in [&a, &b, &d] {
        assert!(ip.starts_with("10.244.0."), "pod IP {ip}");
    }
    assert_eq!(BTreeSet::from([&a, &b, &d]).len(), 3, "{a} {b} {d}");
    assert_eq!(
        c.pod_field("a", "{.status.podIPs[*].ip}").as_deref(),
        Some(a.as_str())
    );
    assert_eq!(
        c.pod_field("a", "{.status.hostIP}").as_deref(),
        Some(NODE_IP)
    );
    // hostNetwork keeps the node's network and address (and its :8080 is the node's)
    assert_eq!(pod_ip(&c, "h"), NODE_IP);
    assert_eq!(fetch(ns, NODE_IP, 8080), "h");
    // two pods listen on :8080 each, reached by their IPs from the node
    assert_eq!(fetch(ns, &a, 8080), "a");
    assert_eq!(fetch(ns, &b, 8080), "b");
    // pod to pod
    let out = c.kubectl_ok(&["exec", "a", "--", "busybox", "nc", "-w", "3", &b, "8080"]);
    assert_eq!(out.trim(), "b");
    // hostPort through portmap, on the node's address
    assert_eq!(fetch(ns, NODE_IP, 30080), "d");
    assert_eq!(leftovers(&c), (3, 3, 3));

    // deleted: its interface, lease, cache entry and namespace go; re-made: a new address
    let a_holder = holder(&c, "a");
    assert!(alive(a_holder));
    c.kubectl_ok(&["delete", "pod", "a", "--wait=true", "--timeout=60s"]);
    c.wait_for("a's network released", START, || leftovers(&c) == (2, 2, 2));
    // The supervisor ends after the agent has released the network, not before.
    c.wait_for("the supervisor holding a's namespace to end", START, || {
        !alive(a_holder)
    });
    c.apply(&echo_pod("a", "", ""));
    c.wait_pod_ready("a", START);
    let a2 = pod_ip(&c, "a");
    assert!(a2.starts_with("10.244.0.") && a2 != a, "{a} then {a2}");
    assert_eq!(fetch(ns, &a2, 8080), "a");

    // the agent dies; while it is away the sandbox of x dies too; it comes back: pods keep
    // their addresses and connectivity, x gets a new sandbox and address, and the old
    // sandbox's lease and cache entry are released (its interface went with its namespace)
    c.apply(&echo_pod("x", "", ""));
    c.wait_pod_ready("x", START);
    let x = pod_ip(&c, "x");
    let x_holder = holder(&c, "x");
    let mut c = c;
    c.up.kill9();
    sh(&format!("kill -9 {x_holder}"));
    c.restart();
    let ns = c.netns.as_ref().expect("netns");
    assert_eq!(pod_ip(&c, "a"), a2);
    assert_eq!(pod_ip(&c, "b"), b);
    assert_eq!(fetch(ns, &a2, 8080), "a");
    assert_eq!(fetch(ns, &b, 8080), "b");
    assert_eq!(fetch(ns, NODE_IP, 30080), "d");
    c.wait_for("x in a new sandbox", START, || {
        let now = pod_ip(&c, "x");
        !now.is_empty() && now != x && fetch(ns, &now, 8080) == "x"
    });
    c.wait_for("the dead sandbox's network released", START, || {
        leftovers(&c) == (4, 4, 4)
    });
    c.kubectl_ok(&["delete", "pod", "x", "--wait=true", "--timeout=60s"]);
    c.wait_for("x's network released", START, || leftovers(&c) == (3, 3, 3));

    port_forward(&c);

    stateful_pod_gets_a_new_address(&c);

    // many pods: distinct addresses; all deleted: no interface, lease, cache entry or
    // namespace left
    c.apply(&common::steps::apps_manifest(
        "ReplicaSet",
        "many",
        MANY as u32,
        0,
        "",
        "[busybox, sleep, '100000']",
    ));
    c.wait_for(
        "the ReplicaSet's pods ready",
        Duration::from_secs(180),
        || {
            c.kubectl_ok(&[
                "get",
                "rs",
                "many",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ]) == MANY.to_string()
        },
    );
    let listed = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=many",
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ]);
    let mut ips: BTreeSet<String> = listed.split_whitespace().map(String::from).collect();
    assert_eq!(ips.len(), MANY, "{listed}");
    c.wait_for("a namespace per pod", START, || {
        pod_namespaces(&c) == MANY + 5 + SPARE
    });
    ips.extend([pod_ip(&c, "a"), b.clone(), d.clone(), pod_ip(&c, "pf")]);
    ips.insert(pod_ip(&c, "web-0"));
    assert_eq!(ips.len(), MANY + 5, "{ips:?}");
    c.kubectl_ok(&["delete", "rs", "many", "--wait=true", "--timeout=120s"]);
    c.kubectl_ok(&[
        "delete",
        "statefulset",
        "web",
        "--wait=true",
        "--timeout=60s",
    ]);
    c.kubectl_ok(&["delete", "pods", "--all", "--wait=true", "--timeout=180s"]);
    c.wait_for(
        "every pod network released",
        Duration::from_secs(120),
        || leftovers(&c) == (0, 0, 0) && pod_namespaces(&c) == SPARE,
    );
}

/// The PID of the supervisor holding the first sandbox of `pod` (named by its UID).
fn holder(c: &Cluster, pod: &str) -> i32 {
    let uid = c.kubectl_ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]);
    let record = c.dir.path().join(format!(
        "data/runtime/sandboxes/{}/supervisor.json",
        uid.trim()
    ));
    let text = std::fs::read_to_string(&record).expect("supervisor record");
    text.split("\"host_pid\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|p| p.trim().parse().ok())
        .expect("the supervisor's pid")
}

/// How many pods the leak check makes (each ADD and DEL runs iptables under its lock: on
/// 2 shared cores about a second a pod).
const MANY: usize = 50;
/// The spare sandbox (with a network namespace) the runtime keeps ready.
const SPARE: usize = 1;

/// Network namespaces held by the node's supervisors other than the node's own: one per pod
/// with a network, plus the spare's.
fn pod_namespaces(c: &Cluster) -> usize {
    let link = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let node = link(c.up.pid());
    let sandboxes = c.dir.path().join("data/runtime/sandboxes");
    find_pids(&sandboxes.display().to_string())
        .into_iter()
        .filter_map(link)
        .filter(|ns| Some(ns) != node.as_ref())
        .collect::<BTreeSet<_>>()
        .len()
}

/// A StatefulSet's pod deleted comes back under the same name with a new address.
fn stateful_pod_gets_a_new_address(c: &Cluster) {
    c.apply(&common::steps::apps_manifest(
        "StatefulSet",
        "web",
        1,
        0,
        "",
        "[busybox, nc, -ll, -p, '8080', -e, busybox, echo, web-0]",
    ));
    c.wait_for("web-0 exists", START, || c.pod_exists("web-0"));
    c.wait_pod_ready("web-0", START);
    let uid = c.pod_field("web-0", "{.metadata.uid}").unwrap_or_default();
    let first = pod_ip(c, "web-0");
    c.kubectl_ok(&["delete", "pod", "web-0", "--wait=true", "--timeout=60s"]);
    c.wait_for("web-0 re-made", START, || {
        c.pod_field("web-0", "{.metadata.uid}")
            .is_some_and(|u| !u.is_empty() && u != uid)
    });
    c.wait_pod_ready("web-0", START);
    let second = pod_ip(c, "web-0");
    assert!(
        second.starts_with("10.244.0.") && second != first,
        "{first} then {second}"
    );
    let ns = c.netns.as_ref().expect("netns");
    c.wait_for("web-0 answers at its new address", START, || {
        fetch(ns, &second, 8080) == "web-0"
    });
}

#[test]
fn without_plugins_pods_use_the_host_network() {
    let _g = serial();
    let empty = tempfile::tempdir().expect("tempdir");
    let bin = empty.path().display().to_string();
    let c = Cluster::up_in_netns(
        NetNs::new("noplug").with_lo_addr(NODE_IP),
        NODE_IP,
        &["--cni-bin-dir", &bin],
    );
    let log = c.up.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("containernetworking-plugins"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("bridge, host-local, portmap, loopback"),
        "{log}"
    );
    let message = c.kubectl_ok(&[
        "get",
        "node",
        &c.node,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"NetworkUnavailable\")].message}",
    ]);
    assert!(
        message.contains("install containernetworking-plugins"),
        "{message}"
    );
    c.apply(&echo_pod("p", "", ""));
    c.wait_pod_ready("p", START);
    assert_eq!(pod_ip(&c, "p"), NODE_IP);
    assert_eq!(fetch(c.netns.as_ref().expect("netns"), NODE_IP, 8080), "p");
    assert_eq!(leftovers(&c), (0, 0, 0));
}

/// `kubectl port-forward` of two ports of a pod and one nobody listens on, inside the test's
/// namespace: 20 parallel connections through it, and the refused port's message.
fn port_forward(c: &Cluster) {
    use std::io::Read;
    let ns = c.netns.as_ref().expect("netns");
    c.apply(
        "apiVersion: v1
kind: Pod
metadata:
  name: pf
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 0
  containers:
  - name: a
    image: busybox
    command: [busybox, nc, -ll, -p, '8080', -e, busybox, echo, port-8080]
  - name: b
    image: busybox
    command: [busybox, nc, -ll, -p, '9090', -e, busybox, echo, port-9090]
",
    );
    c.wait_pod_ready("pf", START);
    // Ready as soon as both started: wait until both listen
    let ip = pod_ip(c, "pf");
    c.wait_for("pf listening on :8080 and :9090", START, || {
        fetch(ns, &ip, 8080) == "port-8080" && fetch(ns, &ip, 9090) == "port-9090"
    });
    // kubectl 1.31+ tunnels SPDY in WebSocket; without it (or refused) it upgrades to SPDY
    let l0 = free_port();
    let mut spdy = start_port_forward(c, &[&format!("{l0}:8080")], false);
    forwarded(c, &mut spdy, l0, "port-8080");
    forwarded(c, &mut spdy, l0, "port-8080");
    stop_port_forward(&mut spdy);
    let (l1, l2, l3) = (free_port(), free_port(), free_port());
    let mut child = start_port_forward(
        c,
        &[
            &format!("{l1}:8080"),
            &format!("{l2}:9090"),
            &format!("{l3}:7777"),
        ],
        true,
    );
    forwarded(c, &mut child, l1, "port-8080");
    forwarded(c, &mut child, l2, "port-9090");
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let port = if i % 2 == 0 { l1 } else { l2 };
                s.spawn(move || fetch(ns, "127.0.0.1", port))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    for (i, a) in answers.iter().enumerate() {
        let want = if i % 2 == 0 { "port-8080" } else { "port-9090" };
        assert_eq!(a, want, "connection {i}");
    }
    assert_eq!(fetch(ns, "127.0.0.1", l3), "");
    stop_port_forward(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    let uid = c.kubectl_ok(&["get", "pod", "pf", "-o", "jsonpath={.metadata.uid}"]);
    assert!(
        err.contains(&format!(
            "error forwarding port 7777 to pod {}, uid : failed to execute portforward in network namespace",
            uid.trim()
        )) && err.contains("dial tcp4 127.0.0.1:7777: connect: connection refused"),
        "{err}"
    );
}

/// Asserts that a connection to the local `port` of the port-forward `child` reads `want`;
/// if not, the failure shows what kubectl and the node said.
fn forwarded(c: &Cluster, child: &mut std::process::Child, port: u16, want: &str) {
    use std::io::Read;
    let got = fetch(c.netns.as_ref().expect("netns"), "127.0.0.1", port);
    if got != want {
        stop_port_forward(child);
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        panic!(
            "port {port}: {got:?}, not {want:?}\nkubectl: {err}\nup: {}",
            c.up.log_text()
        );
    }
}

/// Stops a `kubectl port-forward` with SIGINT (so it writes out what it logged) and waits.
fn stop_port_forward(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// `kubectl port-forward pod/pf PORTS` in the test's namespace, once it says it forwards
/// every port; `websocket` false makes it use the SPDY upgrade.
fn start_port_forward(c: &Cluster, ports: &[&str], websocket: bool) -> std::process::Child {
    let ns = c.netns.as_ref().expect("netns");
    let mut child = ns
        .command("kubectl")
        .arg("port-forward")
        .arg("pod/pf")
        .args(ports)
        .env("KUBECONFIG", c.kubeconfig())
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websocket.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let rx = stdout_lines(&mut child);
    let mut forwarding = 0;
    while forwarding < ports.len() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("kubectl port-forward is ready");
        if line.starts_with("Forwarding from 127.0.0.1:") {
            forwarding += 1;
        }
    }
    child
}

/// Two nodes, each in a namespace of its own, joined by a veth pair the test makes (one L2
/// segment): each agent routes the other node's podCIDR via its InternalIP (host-gw), so
/// a pod on one node reaches a pod on the other by its IP.
#[test]
fn pods_on_two_nodes_reach_each_other() {
    let _g = serial();
    let (ip_a, ip_b) = ("10.250.3.1", "10.250.3.2");
    let (a, b) = common::steps::two_node_netns("two", ip_a, ip_b);
    let c = Cluster::up_in_netns_at(a, ip_a, ip_a, &[]);
    let agent = common::steps::join_agent(&c, &b, "node-b", ip_b);
    assert_eq!(
        c.kubectl_ok(&["get", "node", "node-b", "-o", "jsonpath={.spec.podCIDR}"]),
        "10.244.1.0/24"
    );
    c.apply(&echo_pod("pa", &format!("  nodeName: {}\n", c.node), ""));
    c.apply(&echo_pod("pb", "  nodeName: node-b\n", ""));
    c.wait_pod_ready("pa", START);
    c.wait_pod_ready("pb", START);
    let (pa, pb) = (pod_ip(&c, "pa"), pod_ip(&c, "pb"));
    assert!(
        pa.starts_with("10.244.0.") && pb.starts_with("10.244.1."),
        "{pa} {pb}"
    );
    let ns = c.netns.as_ref().expect("netns");
    c.wait_for("a route from node a to node b's pods", START, || {
        fetch(ns, &pb, 8080) == "pb"
    });
    let out = c.kubectl_ok(&["exec", "pa", "--", "busybox", "nc", "-w", "3", &pb, "8080"]);
    assert_eq!(out.trim(), "pb");
    c.wait_for("a route from node b to node a's pods", START, || {
        c.kubectl(&["exec", "pb", "--", "busybox", "nc", "-w", "3", &pa, "8080"])
            .stdout
            .starts_with(b"pa")
    });
    c.kubectl_ok(&["delete", "pod", "pb", "--wait=true", "--timeout=60s"]);
    drop(agent);
}
