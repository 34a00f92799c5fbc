//! Acceptance tests for init containers and native sidecars through the real `kubectl`
//! (issue 6; spec k8s-pod-lifecycle.md §2.1–2.3, §8 group D): the STATUS column while a pod
//! initializes (`Init:N/M`, `Init:CrashLoopBackOff`/`Init:Error`), the Initialized
//! condition's reason and message, READY counting sidecars, and a deletion that stops the app
//! before its sidecar.

#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(40);

/// Writes a manifest into the cluster's temp dir and returns its path.
fn manifest(c: &Cluster, name: &str, body: &str) -> String {
    let p = c.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&p, body).expect("write manifest");
    p.display().to_string()
}

/// `kubectl get pod NAME --no-headers` split in columns (NAME READY STATUS RESTARTS AGE).
fn row(c: &Cluster, pod: &str) -> Option<Vec<String>> {
    let out = c.kubectl(&["get", "pod", pod, "--no-headers"]);
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let cols: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    (cols.len() >= 5).then_some(cols)
}

/// Polls the STATUS column until `done` holds for a row; returns every STATUS seen.
fn watch_status(
    c: &Cluster,
    pod: &str,
    timeout: Duration,
    done: impl Fn(&[String]) -> bool,
) -> (BTreeSet<String>, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut seen = BTreeSet::new();
    loop {
        if let Some(cols) = row(c, pod) {
            seen.insert(cols[2].clone());
            if done(&cols) {
                return (seen, cols);
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on pod {pod}; STATUS seen: {seen:?}; up log tail:\n{}",
            tail(&c.up.log_text(), 40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn initialized(c: &Cluster, pod: &str, field: &str) -> String {
    c.pod_field(
        pod,
        &format!("{{.status.conditions[?(@.type==\"Initialized\")].{field}}}"),
    )
    .unwrap_or_default()
}

#[test]
fn d1_init_containers_show_init_n_of_m_then_completed() {
    let _g = serial();
    let c = Cluster::up();
    let t0 = Instant::now();
    let m = marker("d1");
    let body = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: d1
spec:
  restartPolicy: Never
  initContainers:
  - name: init1
    image: busybox
    command: ["sh", "-c", "sleep 2", "{m}"]
  - name: init2
    image: busybox
    command: ["sh", "-c", "sleep 2", "{m}"]
  runtimeClassName: host
  containers:
  - name: run1
    image: busybox
    command: ["sh", "-c", "sleep 1", "{m}"]
"#
    );
    c.kubectl_ok(&["apply", "-f", &manifest(&c, "d1", &body)]);
    let (seen, last) = watch_status(&c, "d1", LONG, |cols| cols[2] == "Completed");
    assert!(seen.contains("Init:0/2"), "STATUS seen: {seen:?}");
    assert!(seen.contains("Init:1/2"), "STATUS seen: {seen:?}");
    assert_eq!(last[1], "0/1", "READY of a completed pod");
    assert_eq!(
        c.pod_field("d1", "{.status.phase}").as_deref(),
        Some("Succeeded")
    );
    assert_eq!(initialized(&c, "d1", "status"), "True");
    assert_eq!(
        c.pod_field("d1", "{.status.initContainerStatuses[*].ready}")
            .as_deref(),
        Some("true true")
    );
    assert_eq!(
        c.pod_field(
            "d1",
            "{.status.initContainerStatuses[*].state.terminated.reason}"
        )
        .as_deref(),
        Some("Completed Completed")
    );
    assert_eq!(
        c.pod_field(
            "d1",
            "{.status.initContainerStatuses[*].state.terminated.exitCode}"
        )
        .as_deref(),
        Some("0 0")
    );
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=d1,reason=Started",
        "-o",
        "jsonpath={.items[*].involvedObject.fieldPath}",
    ]);
    for f in [
        "spec.initContainers{init1}",
        "spec.initContainers{init2}",
        "spec.containers{run1}",
    ] {
        assert!(events.contains(f), "Started event for {f}: {events}");
    }
    assert!(find_pids(&m).is_empty());
    println!("d1 took {:?}", t0.elapsed());
}

#[test]
fn d3_failing_init_container_shows_init_crash_loop_and_the_initialized_message() {
    let _g = serial();
    let c = Cluster::up();
    let t0 = Instant::now();
    let m = marker("d3");
    let body = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: d3
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: init1
    image: busybox
    command: ["sh", "-c", "exit 1", "{m}"]
  - name: init2
    image: busybox
    command: ["sh", "-c", "true", "{m}"]
  runtimeClassName: host
  containers:
  - name: run1
    image: busybox
    command: ["sh", "-c", "sleep 600", "{m}"]
"#
    );
    c.kubectl_ok(&["apply", "-f", &manifest(&c, "d3", &body)]);
    let (seen, last) = watch_status(&c, "d3", LONG, |cols| {
        cols[2] == "Init:CrashLoopBackOff" && cols[3] != "0"
    });
    assert!(
        seen.iter()
            .all(|s| s.starts_with("Init:") || s == "Pending"),
        "only init STATUS values while init fails: {seen:?}"
    );
    assert_eq!(last[1], "0/1");
    assert_eq!(
        c.pod_field("d3", "{.status.phase}").as_deref(),
        Some("Pending")
    );
    assert_eq!(initialized(&c, "d3", "status"), "False");
    assert_eq!(initialized(&c, "d3", "reason"), "ContainersNotInitialized");
    assert_eq!(
        initialized(&c, "d3", "message"),
        "containers with incomplete status: [init1 init2]"
    );
    assert_eq!(
        c.pod_field("d3", "{.status.containerStatuses[0].state.waiting.reason}")
            .as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        c.pod_field(
            "d3",
            "{.status.initContainerStatuses[1].state.waiting.reason}"
        )
        .as_deref(),
        Some("PodInitializing")
    );
    let describe = c.kubectl_ok(&["describe", "pod", "d3"]);
    assert!(
        describe.contains("Back-off restarting failed container init1"),
        "{describe}"
    );
    c.kubectl_ok(&["delete", "pod", "d3", "--timeout=30s"]);
    assert!(find_pids(&m).is_empty());
    println!("d3 took {:?}", t0.elapsed());
}

#[test]
fn sidecar_pod_is_running_with_the_sidecar_in_ready_and_stops_after_the_app() {
    let _g = serial();
    let c = Cluster::up();
    let t0 = Instant::now();
    let m = marker("side");
    let order = c.dir.path().join("order");
    let o = order.display();
    let body = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: side
spec:
  terminationGracePeriodSeconds: 10
  initContainers:
  - name: logger
    image: busybox
    restartPolicy: Always
    command: ["sh", "-c", "trap 'echo logger-term >> {o}; exit 0' TERM; while :; do sleep 0.1; done", "{m}"]
  runtimeClassName: host
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "trap 'echo app-term >> {o}; sleep 1; echo app-exit >> {o}; exit 0' TERM; while :; do sleep 0.1; done", "{m}"]
"#
    );
    c.kubectl_ok(&["apply", "-f", &manifest(&c, "side", &body)]);
    let (_, last) = watch_status(&c, "side", LONG, |cols| {
        cols[2] == "Running" && cols[1] == "2/2"
    });
    assert_eq!(last[1], "2/2", "READY counts the sidecar");
    assert_eq!(
        c.pod_field("side", "{.status.initContainerStatuses[0].started}")
            .as_deref(),
        Some("true")
    );
    assert_eq!(initialized(&c, "side", "status"), "True");
    c.kubectl_ok(&["delete", "pod", "side", "--timeout=40s"]);
    let lines: Vec<String> = std::fs::read_to_string(&order)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines, ["app-term", "app-exit", "logger-term"]);
    assert!(find_pids(&m).is_empty());
    println!("sidecar took {:?}", t0.elapsed());
}
