//! End-to-end harness: the real `podvisor` binary, real processes, real kubectl.
//!
//! Every test takes the global lock (timing assertions need the two cores to themselves),
//! starts its own cluster on a temporary data dir and a free port, and stops it on drop,
//! killing every process it started.

#![allow(dead_code, clippy::disallowed_methods)]

pub mod pods;
pub mod steps;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the global e2e lock (poison-tolerant).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The podvisor binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_podvisor"))
}

/// A free TCP port on 127.0.0.1.
/// A fresh temporary directory named `prefix…`, removed when dropped.
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One podvisor process (`up`, `server` or `agent`) with its data dir.
pub struct Process {
    pub child: Option<Child>,
    pub name: String,
    pub log: PathBuf,
}

impl Process {
    /// Starts podvisor with `args` in the machine's own network namespace, where pods must
    /// not get networks of their own (no bridges, pod addresses or NAT rules here): the pod
    /// network is off.
    pub fn start(name: &str, args: &[String], log_dir: &Path) -> Process {
        let mut cmd = Command::new(binary());
        cmd.env("PODVISOR_POD_NETWORK", "false");
        Self::spawn(cmd, name, args, log_dir)
    }

    /// Starts podvisor with `args` inside the test's network namespace `ns`, pod network on.
    pub fn start_in(ns: &NetNs, name: &str, args: &[String], log_dir: &Path) -> Process {
        let mut cmd = ns.command(binary().to_str().expect("utf8"));
        cmd.env("PODVISOR_POD_NETWORK", "true");
        Self::spawn(cmd, name, args, log_dir)
    }

    fn spawn(mut cmd: Command, name: &str, args: &[String], log_dir: &Path) -> Process {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("clone");
        let child = cmd
            .args(args)
            .env("PODVISOR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn podvisor");
        Process {
            child: Some(child),
            name: name.to_string(),
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY-free: plain syscall through the kill command keeps tests free of unsafe.
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit code if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A network namespace made for one test (`ip netns add`, `lo` up), deleted on drop. Whatever
/// runs in it (a cluster with pod networking, kubectl, clients) can neither see nor touch the
/// machine's own interfaces, routes or NAT rules.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// A fresh namespace `podvisor-test-<tag>-<pid>` with `lo` up.
    pub fn new(tag: &str) -> NetNs {
        let name = format!("podvisor-test-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&format!("ip netns add {name}"));
        sh(&format!("ip -n {name} link set lo up"));
        NetNs { name }
    }

    /// Adds `ip`/32 on `lo` (a node address that is not loopback, without any driver).
    pub fn with_lo_addr(self, ip: &str) -> NetNs {
        sh(&format!("ip -n {} addr add {ip}/32 dev lo", self.name));
        self
    }

    /// `program` to run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a shell command line inside the namespace; its output (success or not).
    pub fn sh(&self, cmd: &str) -> Output {
        self.command("sh")
            .args(["-c", cmd])
            .stdin(Stdio::null())
            .output()
            .expect("sh in netns")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs a shell command line and asserts it succeeded.
pub fn sh(cmd: &str) {
    podvisor_testkit::run_ok(Command::new("sh").args(["-c", cmd]));
}

/// A single-node cluster from `podvisor up`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub up: Process,
    pub node: String,
    /// The test's network namespace the whole cluster (and kubectl) runs in, for clusters
    /// with pod networking.
    pub netns: Option<NetNs>,
    /// Extra flags of `up`.
    pub extra: Vec<String>,
    /// The address the API server listens on (with `port`).
    pub listen_ip: String,
}

impl Cluster {
    /// Starts `podvisor up` and waits for the node to be Ready.
    pub fn up() -> Cluster {
        let dir = scratch_dir("podvisor-e2e");
        Self::up_in(dir, free_port())
    }

    /// Starts `podvisor up` with `extra` flags and waits for the node to be Ready.
    pub fn up_with(dir: tempfile::TempDir, extra: &[String]) -> Cluster {
        Self::up_in_with(dir, free_port(), extra.to_vec())
    }

    pub fn up_in(dir: tempfile::TempDir, port: u16) -> Cluster {
        Self::up_in_with(dir, port, Vec::new())
    }

    fn up_in_with(dir: tempfile::TempDir, port: u16, extra: Vec<String>) -> Cluster {
        Self::start(dir, port, None, extra)
    }

    /// A cluster with pod networking, entirely inside the network namespace `ns` (made by
    /// the test), its node at `node_ip`, with `extra` flags for `up`.
    pub fn up_in_netns(ns: NetNs, node_ip: &str, extra: &[&str]) -> Cluster {
        Self::up_in_netns_at(ns, "127.0.0.1", node_ip, extra)
    }

    /// The same with the API server listening on `listen_ip`:6443.
    pub fn up_in_netns_at(ns: NetNs, listen_ip: &str, node_ip: &str, extra: &[&str]) -> Cluster {
        let dir = scratch_dir("podvisor-e2e");
        let mut flags = vec!["--node-ip".to_string(), node_ip.to_string()];
        flags.extend(extra.iter().map(|s| s.to_string()));
        Self::start_at(dir, listen_ip, 6443, Some(ns), flags)
    }

    fn start(
        dir: tempfile::TempDir,
        port: u16,
        netns: Option<NetNs>,
        extra: Vec<String>,
    ) -> Cluster {
        Self::start_at(dir, "127.0.0.1", port, netns, extra)
    }

    fn start_at(
        dir: tempfile::TempDir,
        listen_ip: &str,
        port: u16,
        netns: Option<NetNs>,
        extra: Vec<String>,
    ) -> Cluster {
        let node = "e2e-node".to_string();
        let listen = format!("{listen_ip}:{port}");
        let up = Self::start_up(dir.path(), &listen, &node, netns.as_ref(), &extra);
        let cluster = Cluster {
            dir,
            port,
            up,
            node,
            netns,
            extra,
            listen_ip: listen_ip.to_string(),
        };
        cluster.wait_ready(Duration::from_secs(60));
        cluster
    }

    fn start_up(
        dir: &Path,
        listen: &str,
        node: &str,
        netns: Option<&NetNs>,
        extra: &[String],
    ) -> Process {
        let mut args: Vec<String> = vec![
            "up".into(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--listen".into(),
            listen.to_string(),
            "--node-name".into(),
            node.into(),
        ];
        args.extend(extra.iter().cloned());
        match netns {
            Some(ns) => Process::start_in(ns, "up", &args, dir),
            None => Process::start("up", &args, dir),
        }
    }

    /// Restarts `up` on the same data dir (after it exited or was killed).
    pub fn restart(&mut self) {
        self.up.kill9();
        self.up = Self::start_up(
            self.dir.path(),
            &format!("{}:{}", self.listen_ip, self.port),
            &self.node,
            self.netns.as_ref(),
            &self.extra,
        );
        self.wait_ready(Duration::from_secs(60));
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data").join("kubeconfig")
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.kubeconfig().exists() {
                let out = self.kubectl(&[
                    "get",
                    "node",
                    &self.node,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ]);
                if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "True" {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "cluster not ready after {timeout:?}; up log:\n{}",
                    self.up.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        match &self.netns {
            Some(ns) => ns
                .command("kubectl")
                .args(args)
                .env("KUBECONFIG", self.kubeconfig())
                .stdin(Stdio::null())
                .output()
                .expect("run kubectl"),
            None => kubectl(&self.kubeconfig(), args),
        }
    }

    /// `kubectl ARGS` against this cluster, not yet started.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args).env("KUBECONFIG", self.kubeconfig());
        cmd
    }

    /// `kubectl ARGS` started with stdin closed, stdout piped and stderr discarded: a watch
    /// or a follow that the test reads line by line.
    pub fn kubectl_spawn(&self, args: &[&str]) -> Child {
        self.kubectl_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}\nup log tail:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.up.log_text(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies a manifest given as text.
    pub fn apply(&self, manifest: &str) {
        let path = self.dir.path().join(format!(
            "m-{}.yaml",
            manifest.len() ^ manifest.as_ptr() as usize
        ));
        std::fs::write(&path, manifest).expect("write manifest");
        self.kubectl_ok(&["apply", "-f", path.to_str().expect("utf8")]);
    }

    /// `kubectl get pod NAME -o jsonpath=PATH`, or None if the pod does not exist.
    pub fn pod_field(&self, pod: &str, path: &str) -> Option<String> {
        let out = self.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={path}")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn pod_exists(&self, pod: &str) -> bool {
        self.pod_field(pod, "{.metadata.name}").is_some()
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !f() {
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; up log tail:\n{}",
                    tail(&self.up.log_text(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_pod_ready(&self, pod: &str, timeout: Duration) {
        self.wait_for(&format!("pod {pod} Ready"), timeout, || {
            self.pod_field(pod, "{.status.conditions[?(@.type==\"Ready\")].status}")
                .as_deref()
                == Some("True")
        });
    }

    pub fn wait_pod_phase(&self, pod: &str, phase: &str, timeout: Duration) {
        self.wait_for(&format!("pod {pod} phase {phase}"), timeout, || {
            self.pod_field(pod, "{.status.phase}").as_deref() == Some(phase)
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.up.child.is_none() {
            return;
        }
        // Force-delete everything so Ctrl-C has nothing to wait for, then stop `up`.
        let _ = self.kubectl(&[
            "delete",
            "pods",
            "--all",
            "--force",
            "--grace-period=0",
            "--wait=false",
            "--request-timeout=5s",
        ]);
        self.up.signal(2);
        if self.up.wait_exit(Duration::from_secs(30)).is_none() {
            self.up.signal(2);
            if self.up.wait_exit(Duration::from_secs(5)).is_none() {
                self.up.kill9();
            }
        }
    }
}

pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl")
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether a process with this PID exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state is the field after the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Reads a PID a container wrote to a file, waiting for it.
pub fn read_pid(path: &Path, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a PID to die; returns when it died (or panics after `timeout`).
pub fn wait_dead(pid: i32, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} still alive after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Instant::now()
}

/// Host PIDs of live processes whose command line contains `marker`.
pub fn find_pids(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) && alive(pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Waits until exactly one process carries `marker` and returns its PID.
pub fn wait_one_pid(marker: &str, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = find_pids(marker);
        if pids.len() == 1 {
            return pids[0];
        }
        assert!(
            Instant::now() < deadline,
            "expected one process with {marker:?}, found {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A marker unique to this test run, for finding a container's processes from the host.
pub fn marker(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("pv-e2e-{name}-{}-{n}", std::process::id())
}

/// The lines a child writes to its piped stdout, read by a thread of their own (so a test
/// can wait for one with a timeout). The thread reads to the end even when nobody listens
/// any more: the child must never write to a closed pipe.
pub fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// A child's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits for a child with a bound; kills it (and fails) if it hangs.
pub fn wait_output(mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the child did not finish within {within:?}\nstdout: {}\nstderr: {}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    /// Runs kubectl with `input` on its stdin (then closed), for at most a minute.
    pub fn kubectl_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
        drop(stdin);
        wait_output(child, Duration::from_secs(60))
    }
}
