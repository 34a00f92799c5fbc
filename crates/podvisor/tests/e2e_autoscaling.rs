//! Acceptance tests of resource metrics (issue 25), driven only through the real `kubectl`
//! against `podvisor up` with real processes: `metrics.k8s.io/v1beta1` from the agent's
//! cgroup readings, `kubectl top node` and `kubectl top pod`. One cluster serves every case.

#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn metrics_through_kubectl() {
    let _g = serial();
    let c = Cluster::up();
    top_shows_nodes_and_a_busy_pod(&c);
}

/// Parses a CPU column of `kubectl top` (`250m`, `1`) into millicores.
fn millis(s: &str) -> u64 {
    match s.strip_suffix('m') {
        Some(m) => m.parse().expect("millicores"),
        None => s.parse::<u64>().expect("cores") * 1000,
    }
}

/// `kubectl top node` and `kubectl top pod`: upstream's columns; a pod that keeps one CPU
/// busy shows most of a core, an idle one next to nothing.
fn top_shows_nodes_and_a_busy_pod(c: &Cluster) {
    c.apply(
        &pods::shell_pod("burn", "while :; do :; done", &marker("burn"))
            .labels("app: burn")
            .yaml(),
    );
    c.apply(&pods::shell_pod("idle", "exec sleep 600", &marker("idle")).yaml());
    c.wait_pod_ready("burn", WAIT);
    c.wait_pod_ready("idle", WAIT);

    let out = c.kubectl_ok(&["top", "node"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
        "{out}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], c.node, "{out}");
    assert!(
        millis(row[1]) >= 500,
        "the busy pod's CPU is the node's: {out}"
    );
    assert!(
        row[2].ends_with('%') && row[3].ends_with("Mi") && row[4].ends_with('%'),
        "{out}"
    );

    let out = c.kubectl_ok(&["top", "pod"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{out}"
    );
    let row = |name: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let burn = row("burn");
    assert!(millis(&burn[1]) >= 500, "{out}");
    assert!(burn[2].ends_with("Mi"), "{out}");
    assert!(millis(&row("idle")[1]) < 100, "{out}");

    // A label selector and a container breakdown.
    let out = c.kubectl_ok(&["top", "pod", "-l", "app=burn", "--containers"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[1].split_whitespace().take(2).collect::<Vec<_>>(),
        ["burn", "main"],
        "{out}"
    );
    // metrics.k8s.io as a client reads it.
    let raw = c.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/idle",
    ]);
    let v: serde_json::Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(v["kind"], "PodMetrics", "{raw}");
    assert_eq!(v["containers"][0]["name"], "main");
    let out = c.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("podmetrics.metrics.k8s.io \"nope\" not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.kubectl_ok(&["delete", "pod", "burn", "idle", "--wait=false"]);
}
