//! Services end to end, through kubectl against `podvisor up` with its pod network and
//! Service proxy, entirely inside a network namespace the test makes: ClusterIP and
//! NodePort reach the right pods from a pod and from the node, named target ports,
//! headless and ExternalName Services, ClientIP affinity, terminating endpoints, the
//! `kubernetes` Service. One cluster for every case.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const NODE_IP: &str = "10.250.2.1";
const START: Duration = Duration::from_secs(60);

/// A pod labelled `app` that answers every TCP connection on :8080 ("http") with its name.
fn echo_pod(name: &str, app: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 30
{extra_spec}  containers:
  - name: c
    image: busybox
    command: [busybox, nc, -ll, -p, '8080', -e, busybox, echo, {name}]
    ports: [{{name: http, containerPort: 8080}}]
"
    )
}

const SERVICES: &str = "apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-np}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: echo}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: echo}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: example.com
---
apiVersion: v1
kind: Service
metadata: {name: draining}
spec:
  selector: {app: draining}
  ports: [{port: 80, targetPort: http}]
";

/// What one TCP connection to `addr`:`port` from the node's namespace reads.
fn fetch(ns: &NetNs, addr: &str, port: u16) -> String {
    let out = ns.sh(&format!("busybox nc -w 3 {addr} {port} </dev/null"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn svc_ip(c: &Cluster, name: &str) -> String {
    c.kubectl_ok(&["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"])
}

/// The names `n` connections to `addr`:`port` from the node answer with.
fn answers(ns: &NetNs, addr: &str, port: u16, n: usize) -> BTreeSet<String> {
    (0..n).map(|_| fetch(ns, addr, port)).collect()
}

#[test]
fn services_reach_their_pods() {
    let _g = serial();
    let ns = NetNs::new("svc").with_lo_addr(NODE_IP);
    // The node has a default route (traffic to cluster IPs leaves through it before it is
    // translated).
    let out = ns.sh(
        "ip link add uplink type veth peer name uplink-peer && ip link set uplink-peer up && ip link set uplink up && ip route add default dev uplink",
    );
    assert!(out.status.success(), "{out:?}");
    let c = Cluster::up_in_netns(ns, NODE_IP, &[]);
    let ns = c.netns.as_ref().expect("netns");
    c.apply(SERVICES);
    c.apply(&echo_pod("a", "echo", ""));
    c.apply(&echo_pod("b", "echo", ""));
    c.apply(&echo_pod("client", "client", ""));
    // A pod that keeps serving for 20 s after it starts terminating.
    c.apply(&echo_pod(
        "d",
        "draining",
        "",
    ).replace(
        "    ports: [{name: http, containerPort: 8080}]\n",
        "    ports: [{name: http, containerPort: 8080}]\n    lifecycle: {preStop: {exec: {command: [busybox, sleep, '20']}}}\n",
    ));
    for p in ["a", "b", "client", "d"] {
        c.wait_pod_ready(p, START);
    }

    // Objects as kubectl shows them.
    let svcs = c.kubectl_ok(&["get", "svc", "-o", "wide"]);
    let line = |name: &str| {
        svcs.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in\n{svcs}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        &line("kubernetes")[1..5],
        ["ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    );
    assert_eq!(&line("echo-np")[1..2], ["NodePort"]);
    assert_eq!(&line("echo-np")[4..5], ["80:30080/TCP"]);
    assert_eq!(&line("headless")[1..3], ["ClusterIP", "None"]);
    assert_eq!(
        &line("ext")[1..4],
        ["ExternalName", "<none>", "example.com"]
    );
    let echo = svc_ip(&c, "echo");
    assert!(echo.starts_with("10."), "{echo}");
    let a = c.pod_field("a", "{.status.podIP}").unwrap_or_default();
    let b = c.pod_field("b", "{.status.podIP}").unwrap_or_default();
    c.wait_for("the endpoints of echo", START, || {
        let eps = c.kubectl_ok(&[
            "get",
            "endpoints",
            "echo",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip} {.subsets[*].ports[*].port}",
        ]);
        let mut want = [a.as_str(), b.as_str()];
        want.sort();
        eps == format!("{} {} 8080", want[0], want[1])
    });
    let slices = c.kubectl_ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=headless", "-o", "jsonpath={.items[*].metadata.labels.service\\.kubernetes\\.io/headless}|{.items[*].endpoints[*].addresses[0]}"]);
    assert!(
        slices.starts_with('|') && slices.contains(&a) && slices.contains(&b),
        "{slices}"
    );

    // ClusterIP from the node reaches both pods (random), through the named target port.
    c.wait_for("echo through its cluster IP from the node", START, || {
        answers(ns, &echo, 80, 12) == BTreeSet::from(["a".to_string(), "b".to_string()])
    });
    // ... and from a pod.
    let from_pod = c.kubectl_ok(&[
        "exec", "client", "--", "busybox", "nc", "-w", "3", &echo, "80",
    ]);
    assert!(matches!(from_pod.trim(), "a" | "b"), "{from_pod}");
    // NodePort on the node's address.
    c.wait_for("echo through its node port", START, || {
        answers(ns, NODE_IP, 30080, 12) == BTreeSet::from(["a".to_string(), "b".to_string()])
    });
    // ClientIP affinity: one client, one pod.
    let sticky = svc_ip(&c, "sticky");
    c.wait_for("the sticky service answers", START, || {
        !fetch(ns, &sticky, 80).is_empty()
    });
    assert_eq!(
        answers(ns, &sticky, 80, 10).len(),
        1,
        "affinity keeps one pod"
    );
    // The kubernetes Service reaches the API server from a pod (its gateway listener).
    let k = c.kubectl(&[
        "exec",
        "client",
        "--",
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "--no-check-certificate",
        "https://10.96.0.1/livez",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&k.stdout).trim(),
        "ok",
        "10.96.0.1:443 from a pod: {k:?}"
    );
    let ep = c.kubectl_ok(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
    ]);
    assert_eq!(ep, "10.244.0.1:6443", "the API server's address for pods");

    // A terminating pod that still serves gets the traffic when no endpoint is ready.
    let draining = svc_ip(&c, "draining");
    c.wait_for("draining answers", START, || {
        fetch(ns, &draining, 80) == "d"
    });
    c.kubectl_ok(&["delete", "pod", "d", "--wait=false"]);
    c.wait_for("d terminating but serving in its slice", START, || {
        c.kubectl_ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=draining", "-o",
            "jsonpath={.items[0].endpoints[0].conditions.ready}/{.items[0].endpoints[0].conditions.serving}/{.items[0].endpoints[0].conditions.terminating}"]) == "false/true/true"
    });
    assert_eq!(
        fetch(ns, &draining, 80),
        "d",
        "terminating endpoints are used when none is ready"
    );
    c.kubectl_ok(&["delete", "pod", "d", "--grace-period=0", "--force"]);
    // No endpoint at all: rejected at once, not timed out.
    c.wait_for("draining has no endpoint", START, || {
        c.kubectl_ok(&["get", "endpoints", "draining", "-o", "jsonpath={.subsets}"])
            .is_empty()
    });
    c.wait_for("draining rejects", START, || {
        let out = ns.sh(&format!("busybox nc -w 3 {draining} 80 </dev/null"));
        String::from_utf8_lossy(&out.stderr).contains("refused")
    });

    // The table is the proxy's, and goes with a clean stop.
    let tables = String::from_utf8_lossy(&ns.sh("nft list tables").stdout).to_string();
    assert!(tables.contains("table ip podvisor"), "{tables}");
}
