//! The processes `podvisor bench` starts, and how every one of them ends.
//!
//! # Rules
//!
//! * Every child (`podvisor up`, `podvisor server`, `etcd`, each `podman` command) is started
//!   in a process group of its own, so a Ctrl-C typed at the terminal reaches only the bench,
//!   which then decides how its children end.
//! * A child is held by a [`Guarded`] value: dropping it ends the process by its PID — SIGINT
//!   first (`up` then stops its pods gracefully, `etcd` and `server` exit), SIGKILL after the
//!   grace — and says so on stderr. The bench's parts own their children as values, so a part
//!   that fails, times out or is cancelled by Ctrl-C ends them on the way out.
//! * The pods of an `up` are its supervisors (`podvisor supervise`, the PID 1 of each pod's
//!   pid namespace): after `up` has ended, any supervisor still running under its data dir is
//!   killed by PID, which ends the pod's processes with it, and counted in the line.
//! * Blocking parts (the floor, the authorizer, the podman peer) run on blocking threads; they
//!   look at [`interrupted`] between steps and stop, cleaning up what they made.

#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether the bench was interrupted (Ctrl-C) or failed: blocking parts stop at their next step.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Tells the blocking parts to stop.
pub(crate) fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// A `Command` in a process group of its own (a terminal's Ctrl-C does not reach it).
pub(crate) fn own_group(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0)
}

/// A child process that ends when this value is dropped.
pub(crate) struct Guarded {
    child: Child,
    what: String,
    grace: Duration,
    ended: bool,
}

impl Guarded {
    /// Starts `cmd` (in a process group of its own); `what` names it in the end line; after
    /// SIGINT it has `grace` to exit before SIGKILL.
    pub(crate) fn spawn(
        cmd: &mut Command,
        what: impl Into<String>,
        grace: Duration,
    ) -> anyhow::Result<Guarded> {
        let what = what.into();
        let child = own_group(cmd)
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        Ok(Guarded {
            child,
            what,
            grace,
            ended: false,
        })
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Whether the process has exited (and been reaped).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))] // etcd's start-up check
    pub(crate) fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Ends the process: SIGINT, then SIGKILL after the grace; prints what happened.
    pub(crate) fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let pid = self.child.id();
        if let Ok(Some(status)) = self.child.try_wait() {
            eprintln!(
                "bench: {} (pid {pid}) had already exited ({status})",
                self.what
            );
            return;
        }
        let t = Instant::now();
        signal(pid as i32, rustix::process::Signal::INT);
        while t.elapsed() < self.grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                eprintln!(
                    "bench: stopped {} (pid {pid}) in {:.1} s",
                    self.what,
                    t.elapsed().as_secs_f64()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!(
            "bench: killed {} (pid {pid}): it did not stop within {:?} of SIGINT",
            self.what, self.grace
        );
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.end();
    }
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// A `podvisor up` or `podvisor server` child on a temporary data dir and a free port, with
/// an admin client over TLS.
pub(crate) struct UpProcess {
    proc: Guarded,
    dir: tempfile::TempDir,
    pub(crate) client: kube::Client,
}

/// How a bench cluster is started.
pub(crate) struct UpOptions<'a> {
    /// `up` (a single-node cluster) or `server` (the control plane alone).
    pub(crate) subcommand: &'a str,
    /// The node's name (`up` only).
    pub(crate) node: &'a str,
    /// The pod network on (only where the bench has a network namespace of its own).
    pub(crate) pod_network: bool,
    /// Further flags.
    pub(crate) args: Vec<OsString>,
}

impl<'a> UpOptions<'a> {
    /// `podvisor up` with the pod network off and upstream's default pod capacity.
    pub(crate) fn up(node: &'a str) -> UpOptions<'a> {
        UpOptions {
            subcommand: "up",
            node,
            pod_network: false,
            args: Vec::new(),
        }
    }
}

impl UpProcess {
    pub(crate) async fn start(node: &str) -> anyhow::Result<(UpProcess, Duration)> {
        Self::launch(UpOptions::up(node)).await
    }

    /// `up` with the pod network on or off (on only where the bench has a network namespace
    /// of its own: `bench_network`).
    pub(crate) async fn start_with(
        node: &str,
        pod_network: bool,
    ) -> anyhow::Result<(UpProcess, Duration)> {
        Self::launch(UpOptions {
            pod_network,
            ..UpOptions::up(node)
        })
        .await
    }

    /// Starts the child and waits (at most 60 s) until it prints its kubeconfig line; returns
    /// the time that took.
    pub(crate) async fn launch(opts: UpOptions<'_>) -> anyhow::Result<(UpProcess, Duration)> {
        let dir = tempfile::Builder::new()
            .prefix("podvisor-bench")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let exe = std::env::current_exe()?;
        let log = std::fs::File::create(dir.path().join("up.log"))?;
        let mut cmd = Command::new(exe);
        cmd.arg(opts.subcommand)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path().join("data"));
        if opts.subcommand == "up" {
            cmd.args(["--node-name", opts.node]);
            // Unless the bench runs in a network namespace of its own, no bridges, pod
            // addresses or NAT rules are made: pods share the host's network.
            cmd.env("PODVISOR_POD_NETWORK", opts.pod_network.to_string());
        }
        cmd.args(&opts.args)
            .env("PODVISOR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let t0 = Instant::now();
        // `up` stops its pods gracefully on SIGINT (a second signal stops at once).
        let what = format!("podvisor {}", opts.subcommand);
        let mut proc = Guarded::spawn(&mut cmd, what.clone(), Duration::from_secs(60))?;
        let stdout = proc.child_mut().stdout.take().context("stdout")?;
        let mut up = UpProcess {
            proc,
            dir,
            client: kube::Client::try_from(kube::Config::new("https://127.0.0.1:1".parse()?))?,
        };
        // The child prints the export line once it is ready (`up`: once its node is Ready).
        // The reader goes on draining stdout after that line, so that the child never
        // writes into a closed pipe.
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut ready_tx = Some(ready_tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("export KUBECONFIG=")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(Instant::now());
                }
            }
        });
        let log_tail = |up: &UpProcess| {
            let text = std::fs::read_to_string(up.dir.path().join("up.log")).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(5)..].join("\n  ")
        };
        let ready_at = match tokio::time::timeout(Duration::from_secs(60), ready).await {
            Ok(Ok(at)) => at,
            Ok(Err(_)) => {
                anyhow::bail!("`{what}` exited before it was ready:\n  {}", log_tail(&up))
            }
            Err(_) => anyhow::bail!(
                "`{what}` did not become ready within 60 s:\n  {}",
                log_tail(&up)
            ),
        };
        let startup = ready_at - t0;
        let kubeconfig =
            kube::config::Kubeconfig::read_from(up.dir.path().join("data/kubeconfig"))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        up.client = kube::Client::try_from(config)?;
        Ok((up, startup))
    }

    pub(crate) fn pid(&self) -> i32 {
        self.proc.id() as i32
    }

    pub(crate) fn rss_kb(&self) -> u64 {
        rss_kb(self.pid())
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// PIDs of this cluster's pod supervisors.
    fn supervisors(&self) -> Vec<i32> {
        let marker = self.data_dir().display().to_string();
        processes_matching(|cmd| cmd.contains(" supervise") && cmd.contains(&marker))
    }

    /// Memory of this cluster's pod supervisors.
    pub(crate) fn supervisor_memory(&self) -> Memory {
        Memory::of(&self.supervisors())
    }

    /// Ends the child (its pods stopped gracefully), then any supervisor left behind.
    pub(crate) fn stop(self) {
        drop(self);
    }
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        self.proc.end();
        let left = self.supervisors();
        if left.is_empty() {
            return;
        }
        for &pid in &left {
            signal(pid, rustix::process::Signal::KILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while left.iter().any(|&p| alive(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let still = left.iter().filter(|&&p| alive(p)).count();
        eprintln!(
            "bench: killed {} pod supervisor(s) left behind by {} (and the pods' processes with them){}",
            left.len(),
            self.proc.what,
            if still > 0 {
                format!("; {still} still alive after 10 s")
            } else {
                String::new()
            }
        );
    }
}

pub(crate) fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// PSS of a process in KiB (0 if unknown): its private pages plus its share of the pages
/// it shares (the binary's code, which every supervisor maps), the honest per-process figure.
pub(crate) fn pss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Mean RSS and PSS of some processes (say, one per pod).
#[derive(Clone, Copy, Default)]
pub(crate) struct Memory {
    pub(crate) processes: usize,
    pub(crate) rss_mb: f64,
    pub(crate) pss_mb: f64,
}

impl Memory {
    pub(crate) fn of(pids: &[i32]) -> Memory {
        if pids.is_empty() {
            return Memory::default();
        }
        let n = pids.len() as f64;
        let sum = |f: fn(i32) -> u64| pids.iter().map(|&p| f(p)).sum::<u64>() as f64;
        Memory {
            processes: pids.len(),
            rss_mb: sum(rss_kb) / n / 1024.0,
            pss_mb: sum(pss_kb) / n / 1024.0,
        }
    }
}

pub(crate) fn processes_matching(pred: impl Fn(&str) -> bool) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok())
                && let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
            {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if pred(&cmd) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}
