//! The official Python client (PyPI `kubernetes`, the release for Kubernetes 1.33) against
//! `podvisor up`: `tests/python/test_client.py`, run with pytest in a virtualenv that this
//! test makes once under the target directory (pinned versions, reused by later runs).
//!
//! The PyPI package does not ship the client repository's `kubernetes/e2e_test` suite, so
//! `test_client.py` covers the same areas with the same client calls (core objects, pods
//! with exec and logs, apps, batch, RBAC, API registration, CRDs and custom objects,
//! `create_from_yaml`, the dynamic client, server-side apply, watch, discovery, OpenAPI and
//! metrics). No case is excluded today; one that needs something out of scope goes in
//! [`EXCLUDED`] with its reason.

#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The client release for Kubernetes 1.33, and the runner.
const PACKAGES: &[&str] = &["kubernetes==33.1.0", "pytest==8.3.5"];

/// Cases not run, each with the reason (`pytest -k "not <name>"`).
const EXCLUDED: &[(&str, &str)] = &[];

/// The whole pytest run is bounded (the cases wait at most 60 s each).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The virtualenv with [`PACKAGES`], made on first use.
fn venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-kubernetes-33.1.0");
    let python = dir.join("bin/python");
    let ready = dir.join(".installed");
    if ready.exists() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&dir),
        "python3 -m venv (install python3-venv)",
    );
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(PACKAGES),
        "pip install",
    );
    std::fs::write(&ready, PACKAGES.join("\n")).expect("marker");
    python
}

#[test]
fn official_python_client_suite() {
    let _g = serial();
    let python = venv();
    let c = Cluster::up();
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_client.py");
    let mut args: Vec<String> = vec![
        "-m".into(),
        "pytest".into(),
        "-q".into(),
        "-p".into(),
        "no:cacheprovider".into(),
        "-rfE".into(),
        suite.display().to_string(),
    ];
    if !EXCLUDED.is_empty() {
        let names: Vec<String> = EXCLUDED.iter().map(|(n, _)| format!("not {n}")).collect();
        args.extend(["-k".into(), names.join(" and ")]);
    }
    let log = c.dir.path().join("pytest.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut child = Command::new(&python)
        .args(&args)
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("pytest");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "python client suite failed ({status:?}):\n{text}\nup log tail:\n{}",
        tail(&c.up.log_text(), 60)
    );
    assert!(text.contains(" passed"), "{text}");
    assert!(
        !text.contains(" skipped"),
        "no case may be skipped:\n{text}"
    );
}
