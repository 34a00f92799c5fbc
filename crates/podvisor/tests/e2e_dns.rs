//! Cluster DNS and service links end to end, with kubectl against `podvisor up` entirely
//! inside a network namespace the test makes: names resolve from a pod (busybox nslookup)
//! against the node's DNS server and through the kube-dns Service's cluster IP, pods' resolv.conf is the kubelet's, and the service-link
//! variables are in the containers' environment.

mod common;

use std::time::Duration;

use common::*;

const NODE_IP: &str = "10.250.2.1";
/// The node's DNS server: the gateway of its podCIDR (10.244.0.0/24).
const NODE_DNS: &str = "10.244.0.1";
const START: Duration = Duration::from_secs(60);

const OBJECTS: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: 10.96.100.100
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
  - name: metrics
    port: 9090
    protocol: UDP
---
apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  ports:
  - name: pg
    port: 5432
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-manual
  labels:
    kubernetes.io/service-name: db
addressType: IPv4
ports:
- name: pg
  port: 5432
  protocol: TCP
endpoints:
- addresses: [10.244.0.200]
  hostname: db-0
  conditions:
    ready: true
- addresses: [10.244.0.201]
  conditions:
    ready: false
---
apiVersion: v1
kind: Service
metadata:
  name: ext
spec:
  type: ExternalName
  externalName: example.com
";

fn client_pod(name: &str, links: bool) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 0
  enableServiceLinks: {links}
  containers:
  - name: c
    image: busybox
    command: [busybox, sleep, '100000']
    env:
    - name: WEB_URL
      value: http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)
"
    )
}

/// What `busybox nslookup <args>` prints in pod `pod` (success or not).
fn nslookup(c: &Cluster, pod: &str, args: &[&str]) -> String {
    let mut cmd = vec!["exec", pod, "--", "busybox", "nslookup"];
    cmd.extend_from_slice(args);
    let out = c.kubectl(&cmd);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: &std::process::Output) -> String {
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        String::new()
    }
}

#[test]
fn cluster_dns_resolv_conf_and_service_links() {
    let _g = serial();
    let c = Cluster::up_in_netns(NetNs::new("dns").with_lo_addr(NODE_IP), NODE_IP, &[]);
    c.wait_for("the kube-dns Service and this node's slice", START, || {
        let svc = ok(&c.kubectl(&[
            "get",
            "service",
            "-n",
            "kube-system",
            "kube-dns",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.internalTrafficPolicy} {.spec.ports[*].name}",
        ]));
        let slice = ok(&c.kubectl(&[
            "get",
            "endpointslice",
            "-n",
            "kube-system",
            &format!("kube-dns-{}", c.node),
            "-o",
            "jsonpath={.endpoints[0].addresses[0]} {.endpoints[0].nodeName} {.metadata.labels.kubernetes\\.io/service-name}",
        ]));
        svc == "10.96.0.10 Local dns dns-tcp"
            && slice == format!("{NODE_DNS} {} kube-dns", c.node)
    });

    c.apply(OBJECTS);
    c.apply(&client_pod("client", true));
    c.apply(&client_pod("nolinks", false));
    c.wait_pod_ready("client", START);
    c.wait_pod_ready("nolinks", START);

    // resolv.conf as the kubelet writes it for ClusterFirst.
    let resolv = c.kubectl_ok(&["exec", "client", "--", "busybox", "cat", "/etc/resolv.conf"]);
    let lines: Vec<&str> = resolv.lines().collect();
    assert!(
        lines[0].starts_with("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(lines.contains(&"nameserver 10.96.0.10"), "{resolv}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("nameserver")).count(),
        1,
        "{resolv}"
    );
    assert!(lines.contains(&"options ndots:5"), "{resolv}");

    // Service links: the namespace's Services with a cluster IP; `$(VAR)` can name them.
    let env = c.kubectl_ok(&["exec", "client", "--", "busybox", "env"]);
    for want in [
        "WEB_SERVICE_HOST=10.96.100.100",
        "WEB_SERVICE_PORT=80",
        "WEB_SERVICE_PORT_HTTP=80",
        "WEB_SERVICE_PORT_METRICS=9090",
        "WEB_PORT=tcp://10.96.100.100:80",
        "WEB_PORT_80_TCP=tcp://10.96.100.100:80",
        "WEB_PORT_80_TCP_PROTO=tcp",
        "WEB_PORT_80_TCP_PORT=80",
        "WEB_PORT_80_TCP_ADDR=10.96.100.100",
        "WEB_PORT_9090_UDP=udp://10.96.100.100:9090",
        "WEB_URL=http://10.96.100.100:80",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in\n{env}");
    }
    assert!(
        !env.contains("DB_SERVICE_HOST"),
        "headless: no links\n{env}"
    );
    assert!(
        !env.contains("EXT_SERVICE_HOST"),
        "ExternalName: no links\n{env}"
    );
    let env = c.kubectl_ok(&["exec", "nolinks", "--", "busybox", "env"]);
    assert!(
        !env.lines()
            .any(|l| l.starts_with("WEB_") && !l.starts_with("WEB_URL=")),
        "{env}"
    );
    assert!(
        env.contains("WEB_URL=http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)"),
        "{env}"
    );
    // `kubernetes` of `default` even without service links.
    for want in [
        "KUBERNETES_SERVICE_HOST=10.96.0.1",
        "KUBERNETES_SERVICE_PORT=443",
        "KUBERNETES_SERVICE_PORT_HTTPS=443",
        "KUBERNETES_PORT=tcp://10.96.0.1:443",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in\n{env}");
    }

    // Names, from a pod, asked of the node's DNS server.
    let out = nslookup(&c, "client", &["web.default.svc.cluster.local", NODE_DNS]);
    assert!(out.contains("Address: 10.96.100.100"), "{out}");
    let out = nslookup(&c, "client", &["db.default.svc.cluster.local", NODE_DNS]);
    assert!(out.contains("Address: 10.244.0.200"), "{out}");
    assert!(!out.contains("10.244.0.201"), "not ready: {out}");
    let out = nslookup(
        &c,
        "client",
        &["db-0.db.default.svc.cluster.local", NODE_DNS],
    );
    assert!(out.contains("Address: 10.244.0.200"), "{out}");
    let out = nslookup(
        &c,
        "client",
        &[
            "-type=srv",
            "_http._tcp.web.default.svc.cluster.local",
            NODE_DNS,
        ],
    );
    assert!(out.contains("web.default.svc.cluster.local"), "{out}");
    assert!(out.contains(" 80 "), "{out}");
    let out = nslookup(
        &c,
        "client",
        &["-type=ptr", "100.100.96.10.in-addr.arpa", NODE_DNS],
    );
    assert!(out.contains("web.default.svc.cluster.local"), "{out}");
    let out = nslookup(
        &c,
        "client",
        &["-type=ptr", "200.0.244.10.in-addr.arpa", NODE_DNS],
    );
    assert!(out.contains("db-0.db.default.svc.cluster.local"), "{out}");
    let out = nslookup(
        &c,
        "client",
        &["-type=cname", "ext.default.svc.cluster.local", NODE_DNS],
    );
    assert!(out.contains("example.com"), "{out}");
    let out = nslookup(&c, "client", &["nope.default.svc.cluster.local", NODE_DNS]);
    assert!(out.contains("NXDOMAIN"), "{out}");

    // The same through the kube-dns Service, as the pod's resolv.conf says: this node's
    // proxy sends 10.96.0.10 to this node's server (internalTrafficPolicy Local), UDP and TCP.
    c.wait_for("a name through 10.96.0.10", START, || {
        nslookup(&c, "client", &["web.default.svc.cluster.local"])
            .contains("Address: 10.96.100.100")
    });
    let out = nslookup(&c, "client", &["web.default.svc.cluster.local"]);
    assert!(out.contains("10.96.0.10"), "{out}");
    let tcp = c.kubectl(&[
        "exec",
        "client",
        "--",
        "busybox",
        "nc",
        "-w",
        "3",
        "10.96.0.10",
        "53",
    ]);
    assert!(tcp.status.success(), "10.96.0.10:53/TCP: {tcp:?}");

    // A change of the objects shows within moments.
    c.kubectl_ok(&["delete", "service", "web"]);
    c.wait_for("web gone from DNS", Duration::from_secs(10), || {
        nslookup(&c, "client", &["web.default.svc.cluster.local", NODE_DNS]).contains("NXDOMAIN")
    });
}
