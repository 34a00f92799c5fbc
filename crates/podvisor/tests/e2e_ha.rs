//! HA control plane (issue 21, docs/design/0010-ha-control-plane.md): three etcd members on
//! 127.0.0.1 ports, two `podvisor server`s on them (the second with a copy of the first's CA,
//! service-account key and token file), one agent given both server URLs.
//!
//! The first server takes the scheduler's and the controller manager's leases; a watch
//! through the second sees a write through the first. Under a load of ConfigMap creates
//! through both servers the one leading the controller manager (the agent's first URL) is
//! SIGKILLed: every create that kubectl reported as done is still
//! there, kubectl goes on working through the other server, its scheduler and controller
//! manager take over within the lease time (a Deployment scaled just after the kill gets its
//! pod), and the agent fails over: it renews its node Lease through the other server, its
//! node stays Ready and its pod keeps running (no fencing, no restart). Prints the figures.

#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// `--leader-elect-lease-duration` of the servers (renew deadline 6 s, retry period 1 s).
const LEASE_SECS: u64 = 8;
/// The leases the servers' schedulers and controller managers hold.
const LEASES: [&str; 2] = ["kube-scheduler", "kube-controller-manager"];

/// A three-member etcd cluster on free 127.0.0.1 ports, killed (by PID) on drop.
struct Etcd {
    members: Vec<Child>,
    endpoints: Vec<String>,
    logs: Vec<PathBuf>,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members: Vec::new(),
            endpoints: Vec::new(),
            logs: Vec::new(),
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let endpoint = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = dir.join(format!("etcd-{i}.log"));
            let child = Command::new("etcd")
                .arg(format!("--name=e{i}"))
                .arg(format!(
                    "--data-dir={}",
                    dir.join(format!("etcd-{i}")).display()
                ))
                .arg(format!("--listen-client-urls={endpoint}"))
                .arg(format!("--advertise-client-urls={endpoint}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={cluster}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=podvisor-e2e-ha")
                .arg("--logger=zap")
                .arg("--log-outputs=stderr")
                .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("etcd log"))
                .spawn()
                .expect("start etcd (apt-get install etcd-server)");
            etcd.members.push(child);
            etcd.endpoints.push(endpoint);
            etcd.logs.push(log);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !etcd.endpoints.iter().all(|e| healthy(e)) {
            assert!(
                Instant::now() < deadline,
                "etcd not healthy within 60 s:\n{}",
                tail(
                    &std::fs::read_to_string(&etcd.logs[0]).unwrap_or_default(),
                    20
                )
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }
}

/// Whether the etcd member at `endpoint` says it is healthy (it has a leader).
fn healthy(endpoint: &str) -> bool {
    Command::new("curl")
        .args(["-s", "-m", "2", &format!("{endpoint}/health")])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"health\":\"true\""))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

/// One `podvisor server`: its name, port, data dir and process.
struct Server {
    name: String,
    port: u16,
    dir: PathBuf,
    process: Process,
}

impl Server {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

struct Ha {
    // Killed once the servers are (they are in `drop`), before the directory goes.
    etcd: Etcd,
    dir: tempfile::TempDir,
    servers: Vec<Server>,
    agent: Option<Process>,
    marker: String,
}

impl Ha {
    fn start_server(&mut self, name: &str) {
        let dir = self.dir.path().join(name);
        let port = free_port();
        let args: Vec<String> = [
            "server",
            "--data-dir",
            dir.to_str().expect("utf8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            &format!("etcd:{}", self.etcd.endpoints.join(",")),
            "--leader-elect-lease-duration",
            &format!("{LEASE_SECS}s"),
            "--leader-elect-renew-deadline",
            "6s",
            "--leader-elect-retry-period",
            "1s",
            "--node-monitor-period",
            "1s",
            "--node-monitor-grace-period",
            "30s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let process = Process::start(name, &args, self.dir.path());
        let server = Server {
            name: name.into(),
            port,
            dir,
            process,
        };
        self.servers.push(server);
        let s = self.servers.last().expect("server");
        self.wait_for(&format!("{name} serving"), Duration::from_secs(60), || {
            (s.kubeconfig().exists()
                && kubectl(&s.kubeconfig(), &["get", "namespace", "default"])
                    .status
                    .success())
            .then_some(())
        });
    }

    fn server(&self, name: &str) -> &Server {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .expect("server")
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for srv in &self.servers {
            s += &format!("{} log:\n{}\n", srv.name, tail(&srv.process.log_text(), 30));
        }
        if let Some(a) = &self.agent {
            s += &format!("agent log:\n{}\n", tail(&a.log_text(), 30));
        }
        s
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
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kubectl ARGS` through server `via`; stdout when it succeeded.
    fn kubectl(&self, via: &str, args: &[&str]) -> Option<String> {
        let out = kubectl(&self.server(via).kubeconfig(), args);
        out.status.success().then(|| text(&out.stdout))
    }

    /// The holder of lease `kube-system/<name>`, read through `via`.
    fn holder(&self, via: &str, name: &str) -> Option<String> {
        self.kubectl(
            via,
            &[
                "get",
                "lease",
                "-n",
                "kube-system",
                name,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        )
    }

    /// The `renewTime` of node n1's Lease, read through `via`.
    fn node_lease_renewed(&self, via: &str) -> Option<String> {
        self.kubectl(
            via,
            &[
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                "n1",
                "-o",
                "jsonpath={.spec.renewTime}",
            ],
        )
    }

    /// Whether `server` holds lease `name` (identities are `<host>-<pid>`).
    fn holds(&self, via: &str, name: &str, server: &str) -> bool {
        let pid = self.server(server).process.pid();
        self.holder(via, name)
            .is_some_and(|h| h.ends_with(&format!("-{pid}")))
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        // The agent drains its pods (--drain) through whichever server is left.
        if let Some(a) = &mut self.agent {
            a.signal(15);
            if a.wait_exit(Duration::from_secs(20)).is_none() {
                a.kill9();
            }
        }
        for pid in find_pids(&self.dir.path().join("n1").display().to_string())
            .into_iter()
            .chain(find_pids(&self.marker))
        {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        for s in &mut self.servers {
            s.process.signal(15);
        }
        for s in &mut self.servers {
            if s.process.child.is_some() && s.process.wait_exit(Duration::from_secs(10)).is_none() {
                s.process.kill9();
            }
        }
    }
}

/// The names in `kubectl create` output lines `configmap/<name> created`.
fn created(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("configmap/")?.strip_suffix(" created"))
        .map(str::to_string)
        .collect()
}

#[test]
fn leading_server_killed_mid_load_loses_no_write_and_the_other_takes_over() {
    let _g = serial();
    let test_start = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("podvisor-e2e-ha")
        .tempdir()
        .expect("tempdir");
    let etcd = Etcd::start(dir.path());
    let mut ha = Ha {
        dir,
        servers: Vec::new(),
        agent: None,
        marker: marker("ha"),
        etcd,
    };

    // Server a first: it takes both leases before b exists.
    ha.start_server("a");
    ha.wait_for("a leads", Duration::from_secs(60), || {
        LEASES.iter().all(|l| ha.holds("a", l, "a")).then_some(())
    });
    // b shares a's CA, service-account key and tokens (with the node's token in).
    let token = podvisor_testkit::run_ok(
        Command::new(binary())
            .args(["token", "create", "node", "n1", "--data-dir"])
            .arg(ha.server("a").dir.as_path()),
    );
    assert!(!token.stdout.is_empty());
    let b_dir = ha.dir.path().join("b");
    std::fs::create_dir_all(&b_dir).expect("mkdir b");
    for f in ["ca.crt", "ca.key", "sa.key", "tokens.csv"] {
        std::fs::copy(ha.server("a").dir.join(f), b_dir.join(f))
            .unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    ha.start_server("b");

    // A watch through b sees a write through a.
    let mut watch = Command::new("kubectl")
        .args(["get", "configmaps", "--watch-only", "-o", "name"])
        .env("KUBECONFIG", ha.server("b").kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl watch");
    let lines = stdout_lines(&mut watch);
    // The watch is open once it has seen a write made through b itself.
    let mut probes = 0;
    ha.wait_for("the watch through b", Duration::from_secs(30), || {
        probes += 1;
        let _ = ha.kubectl("b", &["create", "configmap", &format!("probe-{probes}")]);
        lines
            .recv_timeout(Duration::from_millis(500))
            .ok()
            .filter(|l| l.starts_with("configmap/probe-"))
    });
    ha.kubectl("a", &["create", "configmap", "through-a"])
        .expect("create through a");
    ha.wait_for("a's write in b's watch", Duration::from_secs(30), || {
        lines
            .recv_timeout(Duration::from_millis(200))
            .ok()
            .filter(|l| l == "configmap/through-a")
    });
    let _ = watch.kill();
    let _ = watch.wait();

    // The server that leads the controller manager (a, unless a load stall cost it its
    // lease) is the one killed; the agent is given it first, so it talks to it.
    let lead = ha.wait_for(
        "a controller manager leader",
        Duration::from_secs(30),
        || {
            ["a", "b"]
                .into_iter()
                .find(|s| ha.holds("b", "kube-controller-manager", s))
        },
    );
    let other = if lead == "a" { "b" } else { "a" };
    let servers = format!("{},{}", ha.server(lead).url(), ha.server(other).url());
    ha.agent = Some(steps::start_agent_at(
        None,
        "n1",
        &servers,
        "127.0.0.2",
        &ha.server("a").dir,
        ha.dir.path(),
        &[
            "--node-lease-duration-seconds",
            "10",
            "--fence-after",
            "20s",
        ],
    ));
    ha.wait_for("n1 Ready", Duration::from_secs(60), || {
        (ha.kubectl(
            other,
            &[
                "get",
                "node",
                "n1",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )? == "True")
            .then_some(())
    });
    let command = format!(r#"["sh", "-c", "sleep 1000 & wait", "{}"]"#, ha.marker);
    let manifest = steps::apps_manifest("Deployment", "web", 1, 2, "", &command);
    let path = ha.dir.path().join("web.yaml");
    std::fs::write(&path, manifest).expect("write");
    ha.kubectl(lead, &["apply", "-f", path.to_str().expect("utf8")])
        .expect("apply the Deployment");
    let (pod, uid) = ha.wait_for("web's pod Running", Duration::from_secs(60), || {
        let out = ha.kubectl(
            other,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.phase}{\"\\n\"}{end}",
            ],
        )?;
        let lines: Vec<&str> = out.lines().collect();
        let [line] = lines.as_slice() else {
            return None;
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() == 3 && f[2] == "Running").then(|| (f[0].to_string(), f[1].to_string()))
    });
    let pod_pid = wait_one_pid(&ha.marker, Duration::from_secs(30));

    // Load: one kubectl creating many ConfigMaps through the leader, a loop of single
    // creates through the other.
    let mut batch = String::new();
    for i in 0..600 {
        batch += &format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: lead-{i}}}\n");
    }
    let batch_path = ha.dir.path().join("batch.yaml");
    std::fs::write(&batch_path, batch).expect("write");
    let mut lead_writer = Command::new("kubectl")
        .args(["create", "-f", batch_path.to_str().expect("utf8")])
        .env("KUBECONFIG", ha.server(lead).kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl create");
    let lead_lines = stdout_lines(&mut lead_writer);
    let stop_other = Arc::new(AtomicBool::new(false));
    let other_writer = {
        let stop = stop_other.clone();
        let kubeconfig = ha.server(other).kubeconfig();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut failed = 0;
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("other-{i}");
                i += 1;
                let out = kubectl(&kubeconfig, &["create", "configmap", &name]);
                if out.status.success() {
                    acked.push((name, Instant::now()));
                } else {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (acked, failed)
        })
    };
    let mut lead_out = Vec::new();
    ha.wait_for(
        "40 creates through the leader",
        Duration::from_secs(60),
        || {
            lead_out.extend(lead_lines.try_iter());
            (created(&lead_out).len() >= 40).then_some(())
        },
    );
    let renewed_before = ha.node_lease_renewed(other).expect("n1's lease");

    // Kill the leading server.
    let lead_pid = ha.server(lead).process.pid();
    let killed = Instant::now();
    ha.servers
        .iter_mut()
        .find(|s| s.name == lead)
        .expect("leader")
        .process
        .kill9();
    assert!(!alive(lead_pid));

    // kubectl works through the other server at once; the Deployment is scaled right away.
    ha.kubectl(other, &["scale", "deployment", "web", "--replicas=2"])
        .expect("kubectl scale through the other server right after the kill");
    let kubectl_ok = killed.elapsed();
    // The node Lease as of now: anything newer was renewed through the other server.
    let renewed_at_kill = ha.node_lease_renewed(other).expect("n1's lease");
    let agent_renewed = ha.wait_for(
        "n1's lease renewed through the other server",
        Duration::from_secs(40),
        || {
            let now = ha.node_lease_renewed(other)?;
            (now != renewed_at_kill && now != renewed_before).then(|| killed.elapsed())
        },
    );
    let mut takeover = Vec::new();
    for l in LEASES {
        ha.wait_for(
            &format!("{other} leads {l}"),
            Duration::from_secs(LEASE_SECS + 40),
            || ha.holds(other, l, other).then_some(()),
        );
        takeover.push((l, killed.elapsed()));
    }
    ha.wait_for("web at 2 ready replicas", Duration::from_secs(90), || {
        (ha.kubectl(
            other,
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        )? == "2")
            .then_some(())
    });
    let scaled = killed.elapsed();

    // The load ends; every acknowledged create is there.
    stop_other.store(true, Ordering::SeqCst);
    let (other_writes, other_failed) = other_writer.join().expect("writer");
    assert!(
        other_writes.iter().any(|(_, at)| *at > killed),
        "creates through the other server go on after the kill"
    );
    let other_acked: BTreeSet<String> = other_writes.into_iter().map(|(n, _)| n).collect();
    // What kubectl printed as created through the leader is acknowledged; the rest of its
    // batch fails (slowly, one connection refused after the other): it is stopped.
    let _ = lead_writer.kill();
    let _ = lead_writer.wait();
    while let Ok(line) = lead_lines.recv_timeout(Duration::from_secs(10)) {
        lead_out.push(line);
    }
    let lead_acked = created(&lead_out);
    assert!(
        lead_acked.len() < 600,
        "the kill came in the middle of the load"
    );
    let stored: BTreeSet<String> = ha
        .kubectl(other, &["get", "configmaps", "-o", "name"])
        .expect("list through the other server")
        .lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .map(str::to_string)
        .collect();
    let lost: Vec<&String> = lead_acked
        .iter()
        .chain(&other_acked)
        .filter(|n| !stored.contains(*n))
        .collect();
    assert!(lost.is_empty(), "acknowledged creates lost: {lost:?}");

    // The agent kept its node and its pod: same pod, same process, never restarted.
    let node_ready = ha
        .kubectl(
            other,
            &[
                "get",
                "node",
                "n1",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
        .expect("node through the other server");
    assert_eq!(node_ready, "True", "n1 stays Ready\n{}", ha.logs());
    let same = ha
        .kubectl(
            other,
            &[
                "get",
                "pod",
                &pod,
                "-o",
                "jsonpath={.metadata.uid} {.status.phase} {.status.containerStatuses[0].restartCount}",
            ],
        )
        .expect("the first pod");
    assert_eq!(same, format!("{uid} Running 0"), "the first pod runs on");
    assert!(alive(pod_pid), "the first pod's process runs on");
    let pods = ha
        .kubectl(other, &["get", "pods", "-l", "app=web", "-o", "name"])
        .expect("pods");
    assert_eq!(pods.lines().count(), 2, "exactly the 2 replicas: {pods}");
    let agent_log = ha.agent.as_ref().map(Process::log_text).unwrap_or_default();
    assert!(
        agent_log.contains("failing over"),
        "the agent says it failed over\n{}",
        tail(&agent_log, 30)
    );

    println!(
        "HA fail-over (server {lead} SIGKILLed; lease {LEASE_SECS}s, renew deadline 6s, retry \
         1s): kubectl through {other} ok after {:.2}s; agent renewed its Lease through {other} \
         after {:.2}s; {} led by {other} after {:.2}s, {} after {:.2}s; Deployment scaled to 2 \
         ready after {:.2}s; creates acknowledged: {} through {lead}, {} through {other} ({} \
         refused), all {} readable; test {:.1}s",
        kubectl_ok.as_secs_f64(),
        agent_renewed.as_secs_f64(),
        takeover[0].0,
        takeover[0].1.as_secs_f64(),
        takeover[1].0,
        takeover[1].1.as_secs_f64(),
        scaled.as_secs_f64(),
        lead_acked.len(),
        other_acked.len(),
        other_failed,
        lead_acked.len() + other_acked.len(),
        test_start.elapsed().as_secs_f64()
    );
}
