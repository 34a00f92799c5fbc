//! `podvisor bench` in CI: Ctrl-C in the middle of a part must end every process the bench
//! started and say so.
//!
//! Each run gets a TMPDIR of its own, so the processes of that run (the `up`, its pod
//! supervisors, `etcd`) are the ones whose command line names that directory.

#![allow(clippy::disallowed_methods)] // bounded waits on a child process

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Processes whose command line mentions `dir` (the run's TMPDIR).
fn processes_under(dir: &Path) -> Vec<String> {
    let marker = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        if cmd.contains(&marker) && !zombie {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

/// Waits up to 10 s for the processes under `dir` to be gone (a pid namespace's members die
/// just after its init).
fn assert_none_left(dir: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_under(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: processes left running:\n{}",
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `child` to exit; kills it and fails after `limit`.
fn wait_exit(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_ends_every_process_the_bench_started() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(common::binary())
        .args(["bench", "--quick", "--only", "startup", "--peer", "none"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start podvisor bench");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // Interrupt during the burst, when `up` runs with pods.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("phase `burst`") => break,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the bench never reached its burst phase");
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !processes_under(tmp.path()).is_empty(),
        "no `up` running before the interrupt"
    );
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let status = wait_exit(
        &mut child,
        Duration::from_secs(120),
        "the bench after Ctrl-C",
    );
    let err = reader.join().unwrap();
    assert!(!status.success(), "an interrupted bench must fail:\n{err}");
    assert!(err.contains("interrupted (Ctrl-C)"), "{err}");
    assert!(err.contains("podvisor up (pid"), "{err}");
    assert!(
        err.contains("every process the bench started has ended"),
        "{err}"
    );
    assert_none_left(tmp.path(), "after Ctrl-C");
}

/// `podvisor bench --quick`, every part, runs to its end in CI (the figures are not
/// asserted: the debug binary on a shared machine). It runs in a network namespace of the
/// test's own, so its `network` and `services` parts make their bridges, pod addresses and
/// rules there, not in the machine's namespace.
#[test]
fn bench_quick_runs_to_the_end() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let json = tmp.path().join("bench.json");
    let ns = common::NetNs::new("bench");
    let started = Instant::now();
    let mut child = ns
        .command(common::binary().to_str().expect("utf-8 path"))
        .args(["bench", "--quick", "--json"])
        .arg(&json)
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start podvisor bench");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let read = |r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(r).read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    // Each part has its own time limit; this bounds the whole run if one of them hangs.
    let status = wait_exit(
        &mut child,
        Duration::from_secs(40 * 60),
        "podvisor bench --quick",
    );
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    eprintln!(
        "bench --quick took {:.0} s\n{out}\n{err}",
        started.elapsed().as_secs_f64()
    );
    assert!(status.success(), "bench --quick failed:\n{out}\n{err}");
    for section in [
        "## physical floor",
        "## authorization",
        "## pod startup, 20 pods one after another",
        "## pod startup, burst of 100 on one node",
        "## deletion",
        "## API",
        "## pod network",
        "## services",
        "## hostile input and slow clients",
        "## store backends",
        "## scale: 20 simulated nodes",
        "## jobs: Job of 100 completions",
    ] {
        assert!(out.contains(section), "no `{section}` in:\n{out}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    for part in [
        "floor",
        "startup_sequential",
        "startup_burst",
        "delete",
        "api",
        "network",
        "services",
        "hostile",
        "scale",
        "jobs",
    ] {
        assert!(report.get(part).is_some(), "no `{part}` in the JSON report");
    }
    assert_none_left(tmp.path(), "after bench --quick");
}
