//! Node failure with real processes (spec §5, N9): `podvisor server` with a short
//! `--node-monitor-grace-period` and two `podvisor agent`s on 127.0.0.2 and 127.0.0.3. A
//! ReplicaSet pod runs on worker-3; its agent is SIGKILLed (the pod's processes keep running
//! under their supervisor, as after a real node loss the control plane cannot reach them).
//! The node goes `Unknown`, gets the `unreachable` taints, the pod (tolerationSeconds 3) is
//! evicted and replaced under a new name on worker-2, and the old pod stays Terminating.
//!
//! Also H1/H5 of the taint eviction group with a live agent (`podvisor up`).

#![allow(clippy::disallowed_methods)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const GRACE_SECS: u64 = 20;

struct Failover {
    dir: tempfile::TempDir,
    port: u16,
    server: Process,
    agents: Vec<(String, Process)>,
    marker: String,
}

impl Failover {
    fn server_dir(&self) -> PathBuf {
        self.dir.path().join("server")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.server_dir().join("kubeconfig")
    }
    fn agent_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn logs(&self) -> String {
        let mut s = format!("server log:\n{}\n", tail(&self.server.log_text(), 40));
        for (name, a) in &self.agents {
            s += &format!("{name} log:\n{}\n", tail(&a.log_text(), 20));
        }
        s
    }

    fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let out = kubectl(&self.kubeconfig(), &full);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn wait_for<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start_agent(&mut self, n: u8) {
        let name = format!("worker-{n}");
        let agent = steps::start_agent(&name, n, self.port, &self.server_dir(), self.dir.path());
        self.agents.push((name, agent));
    }

    fn wait_node_ready(&self, name: &str) {
        self.wait_for(&format!("{name} Ready"), Duration::from_secs(60), || {
            (node_condition(&self.get_json(&["node", name])?, "Ready")?.0 == "True").then_some(())
        });
    }
}

impl Drop for Failover {
    fn drop(&mut self) {
        steps::force_delete_all(
            &self.kubeconfig(),
            "replicaset,pods",
            &["--request-timeout=5s"],
        );
        // Live agents drain their pods on SIGTERM (--drain); a frozen one is woken first.
        for (_, a) in &mut self.agents {
            a.signal(18);
            a.signal(15);
        }
        for (_, a) in &mut self.agents {
            if a.child.is_some() && a.wait_exit(Duration::from_secs(20)).is_none() {
                a.kill9();
            }
        }
        // What the killed agent left behind: its supervisors (their command line names
        // the agent's data dir) and the pod's processes (the test's marker).
        for (name, _) in &self.agents {
            for pid in find_pids(&self.agent_dir(name).display().to_string()) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
        for pid in find_pids(&self.marker) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        self.server.signal(15);
        if self.server.wait_exit(Duration::from_secs(10)).is_none() {
            self.server.kill9();
        }
    }
}

/// `(status, reason, message)` of a condition of a Node or Pod JSON object.
fn node_condition(obj: &Value, ty: &str) -> Option<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (s("status"), s("reason"), s("message"))
        })
}

fn taints(node: &Value, effect: &str) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["effect"] == effect)
        .filter_map(|t| t["key"].as_str().map(String::from))
        .collect()
}

#[test]
fn lost_node_pod_is_replaced_on_the_other_node() {
    let _g = serial();
    let dir = tempfile::Builder::new()
        .prefix("podvisor-e2e-failover")
        .tempdir()
        .expect("tempdir");
    let port = free_port();
    let server = steps::start_server(
        dir.path(),
        port,
        &[
            "--node-monitor-period".into(),
            "1s".into(),
            "--node-monitor-grace-period".into(),
            format!("{GRACE_SECS}s"),
        ],
    );
    let mut f = Failover {
        dir,
        port,
        server,
        agents: Vec::new(),
        marker: marker("failover"),
    };
    let test_start = Instant::now();
    f.wait_for("server", Duration::from_secs(30), || {
        f.kubeconfig().exists().then_some(())
    });

    // Only worker-3 at first, so the pod lands there.
    f.start_agent(3);
    f.wait_node_ready("worker-3");
    let manifest = steps::sleeper_replica_set(
        "failover",
        1,
        "      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 3}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 3}
",
        &f.marker,
    );
    let path = f.dir.path().join("rs.yaml");
    std::fs::write(&path, manifest).expect("write");
    let out = kubectl(
        &f.kubeconfig(),
        &["apply", "-f", path.to_str().expect("utf8")],
    );
    podvisor_testkit::assert_success(&out, "kubectl apply");
    let old = f.wait_for("pod Running on worker-3", Duration::from_secs(60), || {
        let list = f.get_json(&["pods", "-l", "app=failover"])?;
        let p = list["items"].as_array()?.first()?.clone();
        (p["spec"]["nodeName"] == "worker-3"
            && p["status"]["phase"] == "Running"
            && node_condition(&p, "Ready")?.0 == "True")
            .then(|| p["metadata"]["name"].as_str().map(String::from))
            .flatten()
    });
    f.start_agent(2);
    f.wait_node_ready("worker-2");

    // The node dies: SIGKILL its agent (the pod keeps running, unreachable).
    let killed = Instant::now();
    f.agents[0].1.signal(9);
    assert!(
        f.agents[0].1.wait_exit(Duration::from_secs(10)).is_some(),
        "agent did not die"
    );

    let unknown_after = f.wait_for("worker-3 Unknown", Duration::from_secs(60), || {
        let cond = node_condition(&f.get_json(&["node", "worker-3"])?, "Ready")?;
        (cond.0 == "Unknown").then(|| {
            assert_eq!(cond.1, "NodeStatusUnknown");
            assert_eq!(cond.2, "Kubelet stopped posting node status.");
            killed.elapsed()
        })
    });
    // At most one lease interval (10 s) since the last renewal, then the grace period.
    assert!(
        unknown_after <= Duration::from_secs(GRACE_SECS + 10 + 15),
        "Unknown after {unknown_after:?}"
    );
    let tainted_after = f.wait_for("unreachable taints", Duration::from_secs(15), || {
        let n = f.get_json(&["node", "worker-3"])?;
        (taints(&n, "NoSchedule").contains(&"node.kubernetes.io/unreachable".to_string())
            && taints(&n, "NoExecute") == ["node.kubernetes.io/unreachable"])
        .then(|| killed.elapsed())
    });

    // Evicted after its 3 s toleration: DisruptionTarget, deletionTimestamp, Ready=False.
    let evicted_after = f.wait_for("old pod evicted", Duration::from_secs(30), || {
        let p = f.get_json(&["pod", &old])?;
        p["metadata"]["deletionTimestamp"]
            .is_string()
            .then(|| killed.elapsed())
    });
    let replaced_after = f.wait_for(
        "replacement Running on worker-2",
        Duration::from_secs(60),
        || {
            let list = f.get_json(&["pods", "-l", "app=failover"])?;
            list["items"]
                .as_array()?
                .iter()
                .any(|p| {
                    p["metadata"]["name"] != old.as_str()
                        && p["spec"]["nodeName"] == "worker-2"
                        && p["status"]["phase"] == "Running"
                        && p["metadata"]["deletionTimestamp"].is_null()
                })
                .then(|| killed.elapsed())
        },
    );
    let p = f
        .get_json(&["pod", &old])
        .expect("old pod stays Terminating");
    assert_eq!(
        node_condition(&p, "DisruptionTarget").map(|c| (c.0, c.1, c.2)),
        Some((
            "True".to_string(),
            "DeletionByTaintManager".to_string(),
            "Taint manager: deleting due to NoExecute taint".to_string()
        ))
    );
    assert_eq!(
        node_condition(&p, "Ready").map(|c| c.0).as_deref(),
        Some("False")
    );
    assert_eq!(p["status"]["phase"], "Running", "phase unchanged");
    assert_eq!(p["spec"]["nodeName"], "worker-3");
    // Detection + eviction (the 3 s toleration) ± 2 s.
    let expected = unknown_after + Duration::from_secs(3);
    eprintln!(
        "failover: Unknown {unknown_after:?}, tainted {tainted_after:?}, evicted \
         {evicted_after:?}, replacement Running {replaced_after:?} after the kill \
         (grace {GRACE_SECS} s, toleration 3 s): detection + eviction {expected:?}, off by \
         {:?}; whole test {:?}",
        replaced_after.abs_diff(expected),
        test_start.elapsed()
    );
    assert!(
        replaced_after.abs_diff(expected) <= Duration::from_secs(2),
        "replacement Running {replaced_after:?}, detection + eviction {expected:?}"
    );
}

/// H1 + H5 with a live agent (`podvisor up`): tainting the node `NoExecute` evicts the pod
/// without a toleration all the way (the agent terminates it and the object goes away)
/// and leaves the tolerating pod running.
#[test]
fn h1_h5_no_execute_taint_evicts_only_untolerating_pods_through_the_agent() {
    let _g = serial();
    let c = Cluster::up();
    let mk = marker("h5");
    let pod = |name: &str, toleration: &str| {
        pods::shell_pod(name, "sleep 1000 & wait", &mk)
            .tolerations(toleration)
            .yaml()
    };
    c.apply(&pod("evicted", ""));
    c.apply(&pod(
        "kept",
        "{key: kubernetes.io/e2e-evict-taint-key, operator: Equal, value: evictTaintVal, effect: NoExecute}",
    ));
    c.wait_pod_ready("evicted", Duration::from_secs(60));
    c.wait_pod_ready("kept", Duration::from_secs(60));
    let tainted = Instant::now();
    c.kubectl_ok(&[
        "taint",
        "node",
        &c.node,
        "kubernetes.io/e2e-evict-taint-key=evictTaintVal:NoExecute",
    ]);
    c.wait_for("evicted pod gone", Duration::from_secs(65), || {
        !c.pod_exists("evicted")
    });
    let gone_after = tainted.elapsed();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert_eq!(
            c.pod_field("kept", "{.status.phase}").as_deref(),
            Some("Running"),
            "tolerating pod disturbed"
        );
        assert!(
            c.pod_field("kept", "{.metadata.deletionTimestamp}")
                .is_some_and(|t| t.is_empty()),
            "tolerating pod evicted"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    c.kubectl_ok(&[
        "taint",
        "node",
        &c.node,
        "kubernetes.io/e2e-evict-taint-key:NoExecute-",
    ]);
    eprintln!("taint eviction: untolerating pod gone {gone_after:?} after the taint");
}

/// The parent of `pid`, from `/proc/<pid>/stat` (the field after the parenthesised name).
fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Counts live copies of a pod (its `sh` carries `marker`) every 100 ms until stopped:
/// `(samples, samples with two or more copies)`.
fn sampler(
    marker: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let (mut samples, mut double) = (0, 0);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // A copy is a container's `sh` whose parent is not itself a marked process: the
            // shell forks for `sleep 1000 &`, and that child is briefly a second marked `sh`
            // of the same copy until it execs `sleep`.
            let marked = find_pids(&marker);
            let live = marked
                .iter()
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "sh")
                        && parent_pid(**pid).is_none_or(|ppid| !marked.contains(&ppid))
                })
                .count();
            samples += 1;
            if live >= 2 {
                double += 1;
                let tree: Vec<_> = marked.iter().map(|p| (*p, parent_pid(*p))).collect();
                eprintln!("sampler: {live} live copies of db-0 (pid, parent): {tree:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (samples, double)
    })
}

/// Issue 21, fail-over: `up` (node `e2e-node`) and an agent (`node-b`) in two network
/// namespaces of the test joined by a veth; StatefulSet pod `db-0` runs on node-b. The
/// veth goes down (a partition): node-b kills `db-0` itself at `--fence-after` (4 s: the
/// lease is 4 s, the control plane's grace 8 s); the control plane marks node-b Unknown
/// and declares it dead (lease epoch 0 → 1); `db-0` is evicted after its toleration and
/// stays Terminating (node-b is unreachable) until the admin's
/// `node.kubernetes.io/out-of-service` taint lets PodGC force-delete it; the StatefulSet
/// makes `db-0` again on e2e-node. A write with node-b's old epoch is refused (409). The
/// partition heals: node-b takes its lease again under epoch 1, says `Fenced` on itself and
/// on the old `db-0`, and runs nothing of it. A sampler every 100 ms over both nodes'
/// processes never sees two live `db-0`.
#[test]
fn partitioned_node_fences_itself_and_db_0_never_runs_twice() {
    let _g = serial();
    let (ip_a, ip_b) = ("10.250.21.1", "10.250.21.2");
    let (a, b) = steps::two_node_netns("fence", ip_a, ip_b);
    let c = Cluster::up_in_netns_at(
        a,
        ip_a,
        ip_a,
        &[
            "--node-monitor-period",
            "1s",
            "--node-monitor-grace-period",
            "8s",
            "--node-lease-duration-seconds",
            "4",
        ],
    );
    let agent = steps::join_agent_with(
        &c,
        &b,
        "node-b",
        ip_b,
        &["--node-lease-duration-seconds", "4"],
    );
    let logs = || {
        format!(
            "up log:\n{}\nnode-b log:\n{}",
            tail(&c.up.log_text(), 60),
            tail(&agent.0.log_text(), 60)
        )
    };
    let mk = marker("fence-db");
    let manifest = steps::apps_manifest(
        "StatefulSet",
        "db",
        1,
        2,
        "      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
",
        &format!(r#"["sh", "-c", "sleep 1000 & wait", "{mk}"]"#),
    );
    c.kubectl_ok(&["cordon", "e2e-node"]);
    c.apply(&manifest);
    let pod = |field: &str| c.pod_field("db-0", field).unwrap_or_default();
    c.wait_for("db-0 Running on node-b", Duration::from_secs(60), || {
        pod("{.spec.nodeName}|{.status.phase}") == "node-b|Running"
    });
    let old_uid = pod("{.metadata.uid}");
    c.kubectl_ok(&["uncordon", "e2e-node"]);
    let lease = |path: &str| {
        c.kubectl_ok(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "node-b",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    let epoch = || lease("{.spec.leaseTransitions}|{.spec.holderIdentity}");
    // The grace period is published on the Lease (the agent's default fence follows it).
    c.wait_for(
        "the grace period on node-b's Lease",
        Duration::from_secs(30),
        || lease("{.metadata.annotations.node\\.podvisor\\.io/node-monitor-grace-period}") == "8s",
    );
    assert_eq!(epoch(), "0|node-b");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampling = sampler(mk.clone(), stop.clone());
    let ready = || {
        c.kubectl_ok(&[
            "get",
            "node",
            "node-b",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])
    };

    // The partition.
    let veth = steps::veth_b("fence");
    let cut = Instant::now();
    podvisor_testkit::assert_success(&b.sh(&format!("ip link set {veth} down")), "partition");
    let deadline = cut + Duration::from_secs(20);
    while !find_pids(&mk).is_empty() {
        assert!(Instant::now() < deadline, "db-0 not fenced\n{}", logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let fenced_after = cut.elapsed();
    c.wait_for("node-b Unknown", Duration::from_secs(60), || {
        ready() == "Unknown"
    });
    let detected = cut.elapsed();
    c.wait_for(
        "node-b declared dead (epoch 1)",
        Duration::from_secs(30),
        || epoch() == "1|",
    );
    assert!(
        fenced_after < detected,
        "fenced {fenced_after:?}, detected {detected:?}"
    );
    c.wait_for("db-0 evicted", Duration::from_secs(30), || {
        !pod("{.metadata.deletionTimestamp}").is_empty()
    });
    // The StatefulSet waits: the old db-0 is not gone.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pod("{.metadata.uid}"),
        old_uid,
        "replaced before confirmed dead"
    );

    // The admin declares node-b out of service: PodGC force-deletes db-0, it is made anew.
    let tainted = cut.elapsed();
    c.kubectl_ok(&[
        "taint",
        "node",
        "node-b",
        "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute",
    ]);
    c.wait_for("db-0 Running on e2e-node", Duration::from_secs(60), || {
        let now = pod("{.metadata.uid}|{.spec.nodeName}|{.status.phase}");
        !now.starts_with(&old_uid) && now.ends_with("|e2e-node|Running")
    });
    let replaced = cut.elapsed();
    let new_uid = pod("{.metadata.uid}");

    // node-b's old epoch writes nothing: its token without the new epoch is refused.
    // (the join file's first line; the second is the node's Service proxy's)
    let token = std::fs::read_to_string(c.dir.path().join("node-b.token")).expect("token");
    let out = c.kubectl(&[
        "--token",
        token.lines().next().unwrap_or_default().trim(),
        "annotate",
        "node",
        "node-b",
        "e2e/stale=yes",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(
                "Operation cannot be fulfilled on nodes \"node-b\": node \"node-b\" writes with \
                 lease epoch 0, but its Lease is at epoch 1"
            ),
        "stale write: {err}"
    );

    // The partition heals: node-b rejoins under epoch 1, says so, runs nothing of db-0.
    podvisor_testkit::assert_success(&b.sh(&format!("ip link set {veth} up")), "heal");
    let healed = Instant::now();
    c.wait_for("node-b Ready again", Duration::from_secs(60), || {
        ready() == "True"
    });
    let rejoined = healed.elapsed();
    assert_eq!(epoch(), "1|node-b");
    // `<kind>|<uid>|<component>|<type>|<message>` of the events with `reason`.
    let events = |reason: &str| {
        c.kubectl_ok(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("reason={reason}"),
            "-o",
            "jsonpath={range .items[*]}{.involvedObject.kind}|{.involvedObject.uid}|{.source.component}|{.type}|{.message}{\"\\n\"}{end}",
        ])
    };
    c.wait_for("Fenced events", Duration::from_secs(30), || {
        let fenced = events("Fenced");
        fenced.contains(
            "Node|node-b|kubelet|Warning|Node node-b could not renew its lease for 4s \
             (--fence-after): it killed its 1 pod(s) with SIGKILL; it holds its lease again \
             (epoch 1)",
        ) && fenced.contains(&format!(
            "Pod|{old_uid}|kubelet|Warning|Killed (SIGKILL): node node-b could not renew its \
             lease for 4s (--fence-after)"
        ))
    });
    let declared = events("NodeFenced");
    assert!(
        declared.contains(
            "|node-controller|Warning|Node node-b did not renew its lease for 8s: declared \
             dead, lease epoch 0 -> 1; writes of the old epoch are refused"
        ),
        "{declared}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pod("{.metadata.uid}|{.spec.nodeName}|{.status.phase}"),
        format!("{new_uid}|e2e-node|Running"),
        "the healed node changed db-0"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (samples, double) = sampling.join().expect("sampler");
    eprintln!(
        "fail-over (tight: lease 4 s, fence-after 4 s, grace 8 s, toleration 2 s): db-0 \
         fenced {fenced_after:?} after the partition, node Unknown {detected:?}, \
         out-of-service taint at {tainted:?}, replacement Running {replaced:?} (detection -> \
         replacement {:?}, taint -> replacement {:?}); Ready again {rejoined:?} after the \
         heal; sampler: {samples} samples, {double} with two live db-0",
        replaced - detected,
        replaced - tainted,
    );
    assert_eq!(double, 0, "two live copies of db-0 seen");
    assert!(samples > 100, "{samples} samples");
    c.kubectl_ok(&["delete", "statefulset", "db", "--wait=false"]);
}

/// Issue 21, an agent frozen with SIGSTOP (a paused VM, a stuck process): its pod runs on
/// under its supervisor while the control plane marks the node Unknown and declares it dead
/// (epoch 0 → 1); the StatefulSet does not replace `db-0` meanwhile (its object is not gone).
/// On SIGCONT the agent sees it has not renewed its lease for longer than `--fence-after`
/// and kills its pod before anything else, takes its lease again under epoch 1, says
/// `Fenced`, and runs `db-0` afresh. A sampler every 100 ms never sees two live `db-0`.
#[test]
fn frozen_agent_fences_its_pods_on_waking_and_rejoins() {
    let _g = serial();
    let dir = tempfile::Builder::new()
        .prefix("podvisor-e2e-frozen")
        .tempdir()
        .expect("tempdir");
    let port = free_port();
    let server = steps::start_server(
        dir.path(),
        port,
        &[
            "--node-monitor-period".into(),
            "1s".into(),
            "--node-monitor-grace-period".into(),
            "8s".into(),
        ],
    );
    let mut f = Failover {
        dir,
        port,
        server,
        agents: Vec::new(),
        marker: marker("frozen-db"),
    };
    f.wait_for("server", Duration::from_secs(30), || {
        f.kubeconfig().exists().then_some(())
    });
    let name = "worker-4";
    let agent = steps::start_agent_at(
        None,
        name,
        &format!("https://127.0.0.1:{port}"),
        "127.0.0.4",
        &f.server_dir(),
        f.dir.path(),
        &["--node-lease-duration-seconds", "4", "--fence-after", "4s"],
    );
    f.agents.push((name.to_string(), agent));
    f.wait_node_ready(name);
    let manifest = steps::apps_manifest(
        "StatefulSet",
        "db",
        1,
        2,
        "",
        &format!(r#"["sh", "-c", "sleep 1000 & wait", "{}"]"#, f.marker),
    );
    let path = f.dir.path().join("db.yaml");
    std::fs::write(&path, manifest).expect("write");
    podvisor_testkit::assert_success(
        &kubectl(
            &f.kubeconfig(),
            &["apply", "-f", path.to_str().expect("utf8")],
        ),
        "kubectl apply",
    );
    let pod = |field: &str| {
        let out = kubectl(
            &f.kubeconfig(),
            &["get", "pod", "db-0", "-o", &format!("jsonpath={field}")],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    f.wait_for("db-0 Running", Duration::from_secs(60), || {
        (pod("{.status.phase}") == "Running").then_some(())
    });
    let uid = pod("{.metadata.uid}");
    let old_pid = wait_one_pid(&f.marker, Duration::from_secs(30));
    let lease = || {
        let out = kubectl(
            &f.kubeconfig(),
            &[
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                name,
                "-o",
                "jsonpath={.spec.leaseTransitions}|{.spec.holderIdentity}",
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ready = || {
        f.get_json(&["node", name])
            .and_then(|n| node_condition(&n, "Ready"))
            .map(|c| c.0)
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampling = sampler(f.marker.clone(), stop.clone());

    // Freeze the agent.
    let frozen = Instant::now();
    f.agents[0].1.signal(19);
    f.wait_for("the node Unknown", Duration::from_secs(60), || {
        (ready()? == "Unknown").then_some(())
    });
    let unknown = frozen.elapsed();
    f.wait_for(
        "the node declared dead (epoch 1)",
        Duration::from_secs(30),
        || (lease() == "1|").then_some(()),
    );
    let declared = frozen.elapsed();
    // Nothing on the node can act while its agent is frozen: the pod runs on, and the
    // StatefulSet keeps its db-0 (the object is not gone).
    assert!(alive(old_pid), "db-0 runs on under its supervisor");
    assert_eq!(
        pod("{.metadata.uid}"),
        uid,
        "db-0 replaced while its node is frozen"
    );

    // Wake it: it fences first, then rejoins under epoch 1.
    let woken = Instant::now();
    f.agents[0].1.signal(18);
    let killed = wait_dead(old_pid, Duration::from_secs(20)) - woken;
    f.wait_for("the node Ready again", Duration::from_secs(60), || {
        (ready()? == "True").then_some(())
    });
    let rejoined = woken.elapsed();
    assert_eq!(lease(), format!("1|{name}"));
    f.wait_for("the Fenced event", Duration::from_secs(30), || {
        let out = kubectl(
            &f.kubeconfig(),
            &[
                "get",
                "events",
                "--field-selector",
                "reason=Fenced,involvedObject.kind=Pod",
                "-o",
                "jsonpath={.items[*].involvedObject.uid}",
            ],
        );
        String::from_utf8_lossy(&out.stdout)
            .contains(&uid)
            .then_some(())
    });
    // db-0 runs again here, afresh: a new process (of the same object, or of a new one if
    // the taint manager evicted the old one meanwhile).
    let new_pid = f.wait_for("db-0 running again", Duration::from_secs(60), || {
        let pids = find_pids(&f.marker);
        (pod("{.status.phase}") == "Running" && pids.len() == 1 && pids[0] != old_pid)
            .then(|| pids[0])
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (samples, double) = sampling.join().expect("sampler");
    eprintln!(
        "frozen agent (lease 4 s, fence-after 4 s, grace 8 s): node Unknown {unknown:?} and \
         declared dead {declared:?} after SIGSTOP; on SIGCONT db-0 killed after {killed:?}, \
         Ready again after {rejoined:?}, db-0 restarted (pid {old_pid} -> {new_pid}); \
         sampler: {samples} samples, {double} with two live db-0"
    );
    assert!(
        killed < Duration::from_secs(10),
        "db-0 killed {killed:?} after waking"
    );
    assert_eq!(double, 0, "two live copies of db-0 seen");
    podvisor_testkit::assert_success(
        &kubectl(
            &f.kubeconfig(),
            &["delete", "statefulset", "db", "--wait=false"],
        ),
        "delete the StatefulSet",
    );
}
