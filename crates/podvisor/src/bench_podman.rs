//! The podman peer (`podvisor bench --peer podman`): the same measures as podvisor's, in the
//! same run, on the same machine.
//!
//! * **start**: `podman run -d` of a container whose PID 1 ignores SIGTERM, from command start
//!   to the command's return (the container is running then);
//! * **stop overshoot**: `podman stop -t 2`, from the command's start to the death of the
//!   container's PID 1 (polled in /proc, as podvisor's SIGKILL precision is), minus 2 s;
//! * **per-container memory**: the RSS of the container's `conmon`.
//!
//! The image is a busybox-static rootfs (`--rootfs`), the network `none`, so neither a
//! registry nor networking is involved. Where the default OCI runtime (crun) cannot run here
//! (no CAP_SYS_RESOURCE for its default rlimits, cgroups in hybrid mode), the part tries the
//! next configuration: explicit `--ulimit`s, then `--runtime runc`, then `--cgroups=disabled`,
//! and prints the one it used. Absent podman is one line, not a failure.
//!
//! Every container the part creates is tracked; on Ctrl-C or a failure
//! [`remove_leftovers`] removes them (`podman rm -f -t 0`), and the part itself stops at its
//! next step ([`crate::bench_proc::interrupted`]).
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::bench::{Samples, round};
use crate::bench_proc::{Memory, alive, interrupted, own_group, processes_matching};

/// Containers created and not yet removed; `None` once [`remove_leftovers`] has run.
static CONTAINERS: Mutex<Option<BTreeSet<String>>> = Mutex::new(Some(BTreeSet::new()));

const COMMAND: &[&str] = &["/bin/sh", "-c", "trap '' TERM; sleep 100000 & wait"];

/// What is added, in turn, to the configuration tried: the first that runs a container is
/// used (each step keeps the ones before it).
const STEPS: &[&[&str]] = &[
    &[],
    &[
        "--ulimit",
        "nofile=1024:20000",
        "--ulimit",
        "nproc=4096:4096",
    ],
    &["--runtime", "runc"],
    &["--cgroups=disabled"],
];

fn podman(args: &[&str]) -> anyhow::Result<String> {
    if interrupted() {
        bail!("interrupted");
    }
    let out = own_group(Command::new("podman").args(args)).output()?;
    if !out.status.success() {
        bail!(
            "podman {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn track(name: &str) -> anyhow::Result<()> {
    let mut set = CONTAINERS.lock().unwrap_or_else(|p| p.into_inner());
    match set.as_mut() {
        Some(s) => {
            s.insert(name.to_string());
            Ok(())
        }
        None => bail!("interrupted"),
    }
}

fn remove(name: &str) {
    let _ = own_group(Command::new("podman").args(["rm", "-f", "-t", "0", name])).output();
    if let Some(s) = CONTAINERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
    {
        s.remove(name);
    }
}

/// Removes every container the part made and has not removed; no more are made after this.
pub(crate) fn remove_leftovers() {
    let left = CONTAINERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or_default();
    for name in &left {
        let _ = own_group(Command::new("podman").args(["rm", "-f", "-t", "0", name])).output();
    }
    if !left.is_empty() {
        eprintln!("bench: removed {} podman container(s)", left.len());
    }
}

/// Runs `podman run -d` of the test container with `config`; returns how long it took.
fn run_one(name: &str, config: &[&str], rootfs: &str) -> anyhow::Result<Duration> {
    track(name)?;
    let mut args = vec!["run", "-d", "--name", name, "--network=none"];
    args.extend_from_slice(config);
    args.extend_from_slice(&["--rootfs", rootfs]);
    args.extend_from_slice(COMMAND);
    let t = Instant::now();
    podman(&args)?;
    Ok(t.elapsed())
}

/// Measures `n` containers; Err when podman is missing or cannot run a container here.
pub(crate) fn run(n: usize) -> anyhow::Result<Value> {
    if podman(&["--version"]).is_err() {
        bail!("podman is not installed (apt-get install podman runc)");
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!("busybox-static is not installed (apt-get install busybox-static)");
    }
    let root = tempfile::Builder::new()
        .prefix("podvisor-bench-podman")
        .tempdir()?;
    let rootfs = root.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
    for tool in ["sh", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool))?;
    }
    let rootfs = rootfs.display().to_string();
    let tag = format!("pvbench-{}", std::process::id());

    // The first configuration that runs here (its run is a warm-up, not counted).
    let mut failures = Vec::new();
    let mut config = None;
    let mut tried: Vec<&str> = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        tried.extend_from_slice(step);
        let name = format!("{tag}-probe-{i}");
        let r = run_one(&name, &tried, &rootfs);
        remove(&name);
        match r {
            Ok(_) => {
                config = Some(tried);
                break;
            }
            Err(e) => {
                let e = format!("{e:#}");
                failures.push(e.lines().last().unwrap_or_default().to_string());
            }
        }
    }
    let Some(config) = config else {
        bail!(
            "podman cannot run a container here: {}",
            failures.join("; ")
        );
    };

    let mut start = Samples::default();
    let mut overshoot = Samples::default();
    let mut stop_cmd = Samples::default();
    let mut conmon = Vec::new();
    for i in 0..n {
        let name = format!("{tag}-{i}");
        start.push(run_one(&name, &config, &rootfs)?);
        let pids = processes_matching(|c| c.starts_with("/usr/bin/conmon") && c.contains(&name));
        if !pids.is_empty() {
            conmon.push(Memory::of(&pids));
        }
        let pid: i32 = podman(&["inspect", "-f", "{{.State.Pid}}", &name])?
            .parse()
            .unwrap_or(0);
        if pid <= 0 {
            bail!("podman inspect gave no PID for {name}");
        }
        let t = Instant::now();
        let watcher = std::thread::spawn(move || {
            let limit = Instant::now() + Duration::from_secs(30);
            while alive(pid) && Instant::now() < limit {
                std::thread::sleep(Duration::from_micros(500));
            }
            Instant::now()
        });
        podman(&["stop", "-t", "2", &name])?;
        stop_cmd.push(t.elapsed());
        let died = watcher.join().unwrap_or_else(|_| Instant::now());
        let deadline = t + Duration::from_secs(2);
        if died < deadline {
            overshoot.push_ms(-((deadline - died).as_secs_f64() * 1000.0));
        } else {
            overshoot.push(died - deadline);
        }
        remove(&name);
    }
    let mean = |f: fn(&Memory) -> f64| {
        if conmon.is_empty() {
            f64::NAN
        } else {
            conmon.iter().map(f).sum::<f64>() / conmon.len() as f64
        }
    };
    let (conmon_mb, conmon_pss_mb) = (mean(|m| m.rss_mb), mean(|m| m.pss_mb));
    let config_line = if config.is_empty() {
        "(defaults)".to_string()
    } else {
        config.join(" ")
    };
    println!("## podman (same machine, same run)");
    println!("configuration: podman run -d --network=none {config_line} --rootfs DIR");
    for f in &failures {
        println!("  (a simpler configuration failed: {f})");
    }
    println!(
        "run -d -> running  p50 {:.1} ms  p99 {:.1} ms",
        start.pct(50.0),
        start.pct(99.0)
    );
    println!(
        "stop -t 2 of a SIGTERM-ignoring container: death minus deadline  p50 {:.1} ms  p99 {:.1} ms (command returned after p50 {:.0} ms)",
        overshoot.pct(50.0),
        overshoot.pct(99.0),
        stop_cmd.pct(50.0)
    );
    println!("conmon per container: RSS {conmon_mb:.2} MB, PSS {conmon_pss_mb:.2} MB\n");
    Ok(json!({
        "config": config_line, "run_d": start.summary(), "stop_overshoot": overshoot.summary(),
        "stop_command": stop_cmd.summary(), "conmon_rss_mb": round(conmon_mb),
        "conmon_pss_mb": round(conmon_pss_mb),
    }))
}
