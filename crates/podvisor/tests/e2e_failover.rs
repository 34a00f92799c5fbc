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
        // Live agents drain their pods on SIGTERM (--drain).
        for (_, a) in &mut self.agents {
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
    eprintln!(
        "failover: Unknown {unknown_after:?}, tainted {tainted_after:?}, evicted \
         {evicted_after:?}, replacement Running {replaced_after:?} after the kill \
         (grace {GRACE_SECS} s, toleration 3 s); whole test {:?}",
        test_start.elapsed()
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
