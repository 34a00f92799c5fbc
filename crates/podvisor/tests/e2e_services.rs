//! Services end to end, through kubectl against `podvisor up` with its pod network and
//! Service proxy, entirely inside a network namespace the test makes: ClusterIP and
//! NodePort reach the right pods from a pod and from the node, named target ports,
//! headless and ExternalName Services, ClientIP affinity, terminating endpoints, the
//! `kubernetes` Service (one cluster for these cases); and the drain barrier's guarantee on
//! two nodes, each in a namespace of its own (docs/design/0006-drain-barrier.md).

#![allow(clippy::disallowed_methods)] // the load generator paces and times real requests

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// An echo server as apps are written: a listen backlog of 1,024 (busybox `nc` has 2: under
/// load it drops SYNs, and a SYN retransmitted a second later still goes where conntrack sent
/// the first one), one accept loop, the argument as the answer, the default SIGTERM
/// disposition (it is not its sandbox's PID 1: it exits at once).
const ECHO_SERVER: &str = "import socket,sys;s=socket.socket();s.setsockopt(1,2,1);s.bind((\"\",8080));s.listen(1024);n=sys.argv[1].encode()+b\"\\n\";[(c.sendall(n),c.close()) for c,_ in iter(s.accept,None)]";

/// A Deployment of `replicas` echo pods ([`ECHO_SERVER`]) behind Service `name`, rolling one
/// pod at a time (a new pod first); the app exits at once on SIGTERM and has no preStop.
/// `annotations` go on its pods.
fn echo_deployment(name: &str, replicas: usize, annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations: {{{annotations}}}
    spec:
      runtimeClassName: host
      terminationGracePeriodSeconds: 30
      containers:
      - name: c
        image: busybox
        command: [python3, -c, '{ECHO_SERVER}', {name}]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: http}}]
"
    )
}

/// What a load generator saw.
#[derive(Debug, Default)]
struct LoadReport {
    requests: u64,
    failed: u64,
    /// Failures by kind.
    errors: BTreeMap<String, u64>,
    /// The first failures: seconds since the start, kind.
    first_failures: Vec<(f64, String)>,
    elapsed: Duration,
}

/// Runs a load generator from inside network namespace `netns`: `rate` requests a second
/// to `addr`, each on a new connection that must read a non-empty answer, over `threads`
/// threads, until `stop` (at most `limit`).
fn load(
    netns: &str,
    addr: SocketAddr,
    rate: u32,
    threads: u32,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<LoadReport> {
    let netns = format!("/var/run/netns/{netns}");
    std::thread::spawn(move || {
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let started = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (netns, stop, report) = (netns.clone(), stop.clone(), report.clone());
                std::thread::spawn(move || {
                    // The namespace of this thread only.
                    let f = std::fs::File::open(&netns).expect("netns");
                    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                    let every = Duration::from_secs_f64(f64::from(threads) / f64::from(rate));
                    let mut next = started + every.mul_f64(f64::from(t) / f64::from(threads));
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        next += every;
                        let outcome = request(addr);
                        let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                        r.requests += 1;
                        if let Err(e) = outcome {
                            r.failed += 1;
                            if r.first_failures.len() < 20 {
                                r.first_failures
                                    .push((started.elapsed().as_secs_f64(), e.clone()));
                            }
                            *r.errors.entry(e).or_default() += 1;
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("load worker");
        }
        let mut r = std::mem::take(&mut *report.lock().unwrap_or_else(|e| e.into_inner()));
        r.elapsed = started.elapsed();
        r
    })
}

/// One request: connect, read the answer to the end.
fn request(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("socket: {:?}", e.kind()))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read: {:?}", e.kind()))?;
    if answer.trim().is_empty() {
        return Err("empty answer".into());
    }
    Ok(())
}

/// Every pod of Deployment `name` ready and current, none left over (terminating pods
/// count: their drain is part of the run).
fn settled(c: &Cluster, name: &str, replicas: usize) -> bool {
    let d = c.kubectl_ok(&[
        "get",
        "deployment",
        name,
        "-o",
        "jsonpath={.metadata.generation} {.status.observedGeneration} {.status.updatedReplicas} {.status.availableReplicas}",
    ]);
    let pods = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        &format!("app={name}"),
        "-o",
        "jsonpath={range .items[*]}{.metadata.deletionTimestamp}|{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ]);
    let f: Vec<&str> = d.split_whitespace().collect();
    f.len() == 4
        && f[0] == f[1]
        && f[2] == replicas.to_string()
        && f[3] == replicas.to_string()
        && pods.lines().count() == replicas
        && pods.lines().all(|l| l == "|True")
}

/// The guarantee (issue: "a pod leaves the load balancer before it gets SIGTERM"): load on
/// two ClusterIP Services from both nodes while their Deployments are rolled 5 times and
/// their pods deleted one by one. With the drain barrier no request fails; the same run
/// opted out shows the failures Kubernetes users see. Both counts are printed.
#[test]
fn drain_barrier_loses_no_request_on_two_nodes() {
    let _g = serial();
    let (ip_a, ip_b) = ("10.250.4.1", "10.250.4.2");
    let (a, b) = common::steps::two_node_netns("drain", ip_a, ip_b);
    let c = Cluster::up_in_netns_at(a, ip_a, ip_a, &[]);
    let agent = common::steps::join_agent(&c, &b, "node-b", ip_b);
    let replicas = 2;
    c.apply(&echo_deployment("guarded", replicas, ""));
    c.apply(&echo_deployment(
        "unguarded",
        replicas,
        "podvisor.io/drain-before-stop: 'false'",
    ));
    // Both nodes' proxies acknowledge what they programmed.
    c.wait_for("both nodes' proxies acknowledging", START, || {
        let acks = c.kubectl_ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.annotations.proxy\\.podvisor\\.io/endpointslices-applied}{\"\\n\"}{end}",
        ]);
        acks.lines().count() == 2 && acks.lines().all(|l| !l.ends_with('='))
    });
    for d in ["guarded", "unguarded"] {
        c.wait_for(&format!("{d} ready"), START, || settled(&c, d, replicas));
    }
    let ns_a = c.netns.as_ref().expect("netns");
    let target = |svc: &str| -> SocketAddr {
        let ip = svc_ip(&c, svc);
        c.wait_for(&format!("{svc} answering from both nodes"), START, || {
            fetch(ns_a, &ip, 80) == svc
                && String::from_utf8_lossy(
                    &b.sh(&format!("busybox nc -w 3 {ip} 80 </dev/null")).stdout,
                )
                .trim()
                    == svc
        });
        format!("{ip}:80").parse().expect("address")
    };
    let (guarded, unguarded) = (target("guarded"), target("unguarded"));

    // 220 requests a second on each Service, half from each node.
    let stop = Arc::new(AtomicBool::new(false));
    let limit = Duration::from_secs(60);
    let generators: Vec<_> = [ns_a.name.clone(), b.name.clone()]
        .iter()
        .flat_map(|ns| {
            [
                ("guarded", load(ns, guarded, 110, 3, stop.clone(), limit)),
                (
                    "unguarded",
                    load(ns, unguarded, 110, 3, stop.clone(), limit),
                ),
            ]
        })
        .collect();
    let began = Instant::now();
    let load_start = String::from_utf8_lossy(
        &std::process::Command::new("date")
            .arg("+%T.%N")
            .output()
            .expect("date")
            .stdout,
    )
    .trim()
    .to_string();
    let steps = START.min(limit);
    for round in 0..5 {
        c.kubectl_ok(&[
            "rollout",
            "restart",
            "deployment/guarded",
            "deployment/unguarded",
        ]);
        for d in ["guarded", "unguarded"] {
            c.wait_for(&format!("rollout {round} of {d}"), steps, || {
                settled(&c, d, replicas)
            });
        }
    }
    for d in ["guarded", "unguarded"] {
        let pods = c.kubectl_ok(&["get", "pods", "-l", &format!("app={d}"), "-o", "name"]);
        for pod in pods.lines() {
            c.kubectl_ok(&["delete", pod, "--wait=false"]);
            c.wait_for(&format!("{d} after deleting {pod}"), steps, || {
                settled(&c, d, replicas)
            });
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut totals: BTreeMap<&str, LoadReport> = BTreeMap::new();
    for (svc, g) in generators {
        let r = g.join().expect("load generator");
        let t = totals.entry(svc).or_default();
        t.requests += r.requests;
        t.failed += r.failed;
        t.elapsed = t.elapsed.max(r.elapsed);
        for (k, v) in r.errors {
            *t.errors.entry(k).or_default() += v;
        }
        t.first_failures.extend(r.first_failures);
    }
    let took = began.elapsed();
    let (g, u) = (&totals["guarded"], &totals["unguarded"]);
    println!(
        "drain barrier: {} requests, {} failed; opted out: {} requests, {} failed {:?} ({:.1}s, 5 rollouts and {} deletions of {} replicas on 2 nodes)",
        g.requests,
        g.failed,
        u.requests,
        u.failed,
        u.errors,
        took.as_secs_f64(),
        2 * replicas,
        replicas
    );
    for (svc, r) in &totals {
        let rate = r.requests as f64 / r.elapsed.as_secs_f64();
        assert!(rate >= 200.0, "{svc}: {rate:.0} requests/s");
    }
    if g.failed > 0 {
        // What the cluster did meanwhile, to tell why.
        let timeline = c.kubectl_ok(&[
            "get",
            "events",
            "-o",
            "jsonpath={range .items[*]}{.lastTimestamp} {.involvedObject.name} {.reason} {.message}{\"\\n\"}{end}",
        ]);
        panic!(
            "with the drain barrier: {:?} at {:?} s after {load_start}\nevents:\n{timeline}\nup log:\n{}\nnode-b log:\n{}",
            g.errors,
            g.first_failures,
            tail(&c.up.log_text(), 150),
            tail(&agent.0.log_text(), 100)
        );
    }
    // The barrier waited for both nodes, within its bound, every time.
    let events = |reason: &str| {
        c.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("reason={reason}"),
            "-o",
            "jsonpath={range .items[*]}{.involvedObject.name} {.message}{\"\\n\"}{end}",
        ])
    };
    // 5 rollouts and the deletions: every pod of `guarded` drained once.
    let want = 6 * replicas;
    c.wait_for(
        "an EndpointsDrained event for every guarded pod",
        START,
        || {
            events("EndpointsDrained")
                .lines()
                .filter(|l| l.starts_with("guarded-"))
                .count()
                >= want
        },
    );
    let drained = events("EndpointsDrained");
    assert!(
        !drained.lines().any(|l| l.starts_with("unguarded-")),
        "opted out: {drained}"
    );
    let not_drained = events("EndpointsNotDrained");
    assert!(not_drained.is_empty(), "{not_drained}");
    // How long the drains took (the agents' own measure: termination start → both nodes'
    // proxies acknowledged).
    let mut took: Vec<u64> = drained
        .lines()
        .filter_map(|l| l.split(" in ").nth(1)?.split("ms").next()?.parse().ok())
        .collect();
    took.sort_unstable();
    assert!(!took.is_empty(), "{drained}");
    let pct = |p: usize| took[(took.len() - 1) * p / 100];
    println!(
        "drains on 2 nodes: {} pods, p50 {} ms, p99 {} ms, max {} ms",
        took.len(),
        pct(50),
        pct(99),
        pct(100)
    );

    c.kubectl_ok(&["delete", "deployment", "guarded", "unguarded"]);
    drop(agent);
}
