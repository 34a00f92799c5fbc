//! Two agents joining one control plane (`podvisor server` + two `podvisor agent`s on
//! 127.0.0.2 and 127.0.0.3): pods spread over both nodes and run there.

#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::*;

struct MultiNode {
    dir: tempfile::TempDir,
    server: Process,
    agents: Vec<Process>,
}

impl MultiNode {
    fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("server").join("kubeconfig")
    }
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = kubectl(&self.kubeconfig(), args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.server.log_text(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        steps::force_delete_all(&self.kubeconfig(), "pods", &[]);
        // Agents drain on SIGTERM only with --drain; these were started with it.
        for a in &mut self.agents {
            a.signal(15);
        }
        for a in &mut self.agents {
            if a.wait_exit(Duration::from_secs(20)).is_none() {
                a.kill9();
            }
        }
        self.server.signal(15);
        if self.server.wait_exit(Duration::from_secs(10)).is_none() {
            self.server.kill9();
        }
    }
}

fn start() -> MultiNode {
    let dir = tempfile::Builder::new()
        .prefix("podvisor-e2e-multi")
        .tempdir()
        .expect("tempdir");
    let port = free_port();
    let server_dir = dir.path().join("server");
    let server = steps::start_server(dir.path(), port, &[]);
    let mut m = MultiNode {
        dir,
        server,
        agents: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !m.kubeconfig().exists() {
        assert!(
            Instant::now() < deadline,
            "server did not start:\n{}",
            m.server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in [2, 3] {
        let name = format!("worker-{n}");
        let agent = steps::start_agent(&name, n, port, &server_dir, m.dir.path());
        m.agents.push(agent);
    }
    m
}

#[test]
fn pods_spread_over_two_agents_and_run() {
    let _g = serial();
    let m = start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = kubectl(&m.kubeconfig(), &["get", "nodes", "--no-headers"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ready = text
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        if ready == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes not Ready: {text}\n{}\n{}",
            m.agents[0].log_text(),
            m.agents[1].log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mk = marker("spread");
    // A ReplicaSet of 6: the scheduler spreads the pods of one owner over the nodes.
    let manifest = steps::sleeper_replica_set("spread", 6, "", &mk);
    let path = m.dir.path().join("spread.yaml");
    std::fs::write(&path, manifest).expect("write");
    m.kubectl_ok(&["apply", "-f", path.to_str().expect("utf8")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = m.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=spread",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName} {.status.phase} {.status.hostIP}{\"\\n\"}{end}",
        ]);
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let running = rows.iter().filter(|r| r.get(1) == Some(&"Running")).count();
        if running == 6 {
            let on2 = rows.iter().filter(|r| r[0] == "worker-2").count();
            let on3 = rows.iter().filter(|r| r[0] == "worker-3").count();
            assert_eq!((on2, on3), (3, 3), "pods not spread evenly: {out}");
            for r in &rows {
                let expected_ip = if r[0] == "worker-2" {
                    "127.0.0.2"
                } else {
                    "127.0.0.3"
                };
                assert_eq!(r.get(2), Some(&expected_ip), "hostIP: {out}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "pods not all Running: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(find_pids(&mk).len(), 6, "expected one process per pod");
}
