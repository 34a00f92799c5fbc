//! Acceptance tests of resource metrics (issue 25), driven only through the real `kubectl`
//! against `podvisor up` with real processes: `metrics.k8s.io/v1beta1` from the agent's
//! cgroup readings, `kubectl top node` and `kubectl top pod`, and a HorizontalPodAutoscaler
//! (autoscaling/v2) scaling a CPU-burning Deployment up and back down. One cluster serves
//! every case.

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
    hpa_scales_a_busy_deployment_up_and_back_down(&c);
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

/// An HPA on CPU utilization: a Deployment whose pods keep a CPU busy while a host file
/// exists is scaled up to its maximum (ScalingLimited/TooManyReplicas), and back to its
/// minimum once they idle (a 5 s scale-down stabilization window keeps the test short).
fn hpa_scales_a_busy_deployment_up_and_back_down(c: &Cluster) {
    let flag = c.dir.path().join("burn");
    std::fs::write(&flag, "").expect("flag");
    let flag = flag.display().to_string();
    c.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: burner
spec:
  replicas: 1
  selector:
    matchLabels: {{app: burner}}
  template:
    metadata:
      labels: {{app: burner}}
    spec:
      runtimeClassName: host
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "while [ -e {flag} ]; do :; done; exec sleep 600"]
        resources:
          requests: {{cpu: 100m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: burner
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: burner}}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {{type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 5
"#
    ));
    let replicas = || {
        c.kubectl_ok(&[
            "get",
            "deployment",
            "burner",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
    };
    let condition = |ty: &str| {
        c.kubectl_ok(&[
            "get",
            "hpa",
            "burner",
            "-o",
            &format!("jsonpath={{.status.conditions[?(@.type==\"{ty}\")].reason}}"),
        ])
    };
    c.wait_for("the HPA scales up to 2", Duration::from_secs(90), || {
        replicas() == "2"
    });
    c.wait_for(
        "ScalingLimited TooManyReplicas",
        Duration::from_secs(60),
        || condition("ScalingLimited") == "TooManyReplicas",
    );
    assert_eq!(condition("ScalingActive"), "ValidMetricFound");
    let events = c.kubectl_ok(&["get", "events", "-o", "jsonpath={.items[*].message}"]);
    assert!(
        events.contains(
            "New size: 2; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{events}"
    );
    std::fs::remove_file(&flag).expect("stop burning");
    c.wait_for(
        "the HPA scales back down to 1",
        Duration::from_secs(90),
        || replicas() == "1",
    );
    let events = c.kubectl_ok(&["get", "events", "-o", "jsonpath={.items[*].message}"]);
    assert!(
        events.contains("New size: 1; reason: All metrics below target"),
        "{events}"
    );
    c.kubectl_ok(&["delete", "hpa", "burner"]);
    c.kubectl_ok(&["delete", "deployment", "burner", "--wait=false"]);
}
