//! Acceptance tests for probes (spec k8s-pod-lifecycle.md §3, catalogue §8 group A, host
//! adaptations §9), driven only through the real `kubectl` against `podvisor up`, with real
//! processes. Each test id names the upstream case (container_probe.go); delays are shortened
//! (the semantics, not the upstream numbers, are under test), per-pod files live under the
//! test's own temporary directory, and HTTP servers listen on their own 127.0.0.1 ports.
//! Several pods share one cluster per test to keep the run short.

#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::jiff::Timestamp;

const START: Duration = Duration::from_secs(60);

fn restarts(c: &Cluster, pod: &str) -> i64 {
    c.pod_field(pod, "{.status.containerStatuses[0].restartCount}")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn ready(c: &Cluster, pod: &str) -> bool {
    c.pod_field(pod, "{.status.conditions[?(@.type==\"Ready\")].status}")
        .as_deref()
        == Some("True")
}

fn started(c: &Cluster, pod: &str) -> bool {
    c.pod_field(pod, "{.status.containerStatuses[0].started}")
        .as_deref()
        == Some("true")
}

fn running(c: &Cluster, pod: &str) -> bool {
    c.pod_field(
        pod,
        "{.status.containerStatuses[0].state.running.startedAt}",
    )
    .is_some_and(|s| !s.is_empty())
}

/// A pod with one container running `script` (a marker argument lets the test find its
/// processes), plus the given probe/grace YAML lines under the container.
fn pod(name: &str, script: &str, container_extra: &str, grace: u32) -> String {
    let m = marker(name);
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: {grace}
  runtimeClassName: host
  containers:
  - name: {name}
    image: busybox
    command: ["sh", "-c", {script:?}, "{m}"]
{container_extra}"#
    )
}

/// An exec probe block (indented for a container).
fn exec_probe(kind: &str, cmd: &[&str], extra: &str) -> String {
    let cmd: Vec<String> = cmd.iter().map(|c| format!("{c:?}")).collect();
    format!(
        "    {kind}:\n      exec:\n        command: [{}]\n{extra}",
        cmd.join(", ")
    )
}

/// An exec startup probe followed by an exec liveness probe, each with its own timing lines.
fn startup_and_liveness(
    startup: &[&str],
    startup_timing: &str,
    liveness: &[&str],
    liveness_timing: &str,
) -> String {
    format!(
        "{}{}",
        exec_probe("startupProbe", startup, startup_timing),
        exec_probe("livenessProbe", liveness, liveness_timing)
    )
}

/// Observes `pods` for `window`: the restart count never goes down (RunLivenessTest).
/// Returns the final counts.
fn observe(c: &Cluster, pods: &[&str], window: Duration) -> Vec<i64> {
    let mut last = vec![0; pods.len()];
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        for (i, p) in pods.iter().enumerate() {
            let n = restarts(c, p);
            assert!(
                n >= last[i],
                "{p}: restartCount went down {} → {n}",
                last[i]
            );
            last[i] = n;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    last
}

/// A3, A4, A9, A10, A11: exec liveness/readiness probes, their timeouts, and a probe that
/// exits non-zero while a child it left behind still runs.
#[test]
fn a3_a4_a9_a10_a11_exec_probes_restart_only_on_failure() {
    let c = Cluster::up();
    let d = c.dir.path().display().to_string();
    let liveness_cat = |f: &str| {
        exec_probe(
            "livenessProbe",
            &["cat", &format!("{d}/{f}")],
            "      initialDelaySeconds: 1\n      periodSeconds: 1\n      timeoutSeconds: 5\n      failureThreshold: 1\n",
        )
    };
    // A3: the health file disappears after 3 s → restarted
    c.apply(&pod(
        "a3",
        &format!("echo ok > {d}/a3-health; sleep 3; rm -f {d}/a3-health; sleep 600"),
        &liveness_cat("a3-health"),
        2,
    ));
    // A4: the health file stays → never restarted
    c.apply(&pod(
        "a4",
        &format!("echo ok > {d}/a4-health; sleep 600"),
        &liveness_cat("a4-health"),
        2,
    ));
    let timeout_probe = |kind: &str, cmd: &[&str]| {
        exec_probe(
            kind,
            cmd,
            "      initialDelaySeconds: 1\n      periodSeconds: 2\n      timeoutSeconds: 1\n      failureThreshold: 1\n",
        )
    };
    // A9: a liveness probe over its timeout is a failure → restarted
    c.apply(&pod(
        "a9",
        "sleep 600",
        &timeout_probe("livenessProbe", &["sh", "-c", "sleep 10"]),
        2,
    ));
    // A10: a readiness probe over its timeout → never ready, never restarted
    c.apply(&pod(
        "a10",
        "sleep 600",
        &timeout_probe("readinessProbe", &["sh", "-c", "sleep 10"]),
        2,
    ));
    // A11: exits 1 at once while its background child lives on → restarted
    c.apply(&pod(
        "a11",
        "sleep 600",
        &timeout_probe("livenessProbe", &["sh", "-c", "sleep 10 & exit 1"]),
        2,
    ));
    for p in ["a3", "a4", "a9", "a10", "a11"] {
        c.wait_for(&format!("{p} running"), START, || running(&c, p));
    }
    let mut a10_ever_ready = false;
    c.wait_for("a3, a9 and a11 restarted", START, || {
        a10_ever_ready |= ready(&c, "a10");
        ["a3", "a9", "a11"].iter().all(|p| restarts(&c, p) >= 1)
    });
    let counts = observe(
        &c,
        &["a3", "a4", "a9", "a10", "a11"],
        Duration::from_secs(8),
    );
    assert_eq!(counts[1], 0, "A4: a healthy container is never restarted");
    assert_eq!(counts[3], 0, "A10: readiness never restarts");
    assert!(!a10_ever_ready && !ready(&c, "a10"), "A10: never ready");
    assert!(ready(&c, "a4"), "A4: no readiness probe → ready");
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=a9",
    ]);
    assert!(
        events.contains("Liveness probe failed") && events.contains("timed out"),
        "A9: the Unhealthy event says the probe timed out:\n{events}"
    );
    assert!(
        events.contains("failed liveness probe, will be restarted"),
        "A9: Killing event:\n{events}"
    );
}

/// A14, A15, A16, A17: the startup probe gates liveness and readiness.
#[test]
fn a14_a15_a16_a17_startup_probe_gates_the_others() {
    let c = Cluster::up();
    let d = c.dir.path().display().to_string();
    // A14: startup fails (ft 3) → restarted although liveness would pass
    c.apply(&pod(
        "a14",
        "sleep 600",
        &startup_and_liveness(
            &["/bin/false"],
            "      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 3\n",
            &["/bin/true"],
            "      initialDelaySeconds: 1\n      failureThreshold: 1\n",
        ),
        2,
    ));
    // A15: liveness would fail at once, but startup (ft 60 × 10 s) gates it → no restart
    c.apply(&pod(
        "a15",
        "sleep 600",
        &startup_and_liveness(
            &["/bin/false"],
            "      initialDelaySeconds: 1\n      periodSeconds: 10\n      failureThreshold: 60\n",
            &["/bin/false"],
            "      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 1\n",
        ),
        2,
    ));
    // A16: startup succeeds after 3 s, then the failing liveness restarts it
    c.apply(&pod(
        "a16",
        &format!("sleep 3; echo ok > {d}/a16-startup; sleep 600"),
        &startup_and_liveness(
            &["cat", &format!("{d}/a16-startup")],
            "      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 60\n",
            &["/bin/false"],
            "      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 1\n",
        ),
        2,
    ));
    // A17: readiness with a 30 s period runs at once when startup succeeds
    c.apply(&pod(
        "a17",
        &format!("echo ok > {d}/a17-health; sleep 6; echo ok > {d}/a17-startup; sleep 600"),
        &format!(
            "{}{}",
            exec_probe(
                "readinessProbe",
                &["cat", &format!("{d}/a17-health")],
                "      periodSeconds: 30\n"
            ),
            exec_probe(
                "startupProbe",
                &["cat", &format!("{d}/a17-startup")],
                "      periodSeconds: 1\n      failureThreshold: 120\n"
            )
        ),
        2,
    ));
    // A17: never Ready before Started; Ready soon after Started
    let mut started_at = None;
    c.wait_for("a17 ready", START, || {
        // one read, so that both come from the same version of the pod
        let both = c
            .pod_field(
                "a17",
                "{.status.containerStatuses[0].started} {.status.conditions[?(@.type==\"Ready\")].status}",
            )
            .unwrap_or_default();
        let (s, r) = (both.starts_with("true "), both.ends_with(" True"));
        assert!(!r || s, "A17: Ready before Started");
        if s && started_at.is_none() {
            started_at = Some(Instant::now());
        }
        r
    });
    let after = started_at.expect("started seen").elapsed();
    assert!(
        after < Duration::from_secs(20),
        "A17: Ready {after:?} after Started (the 30 s period must not delay it)"
    );
    c.wait_for("a14 and a16 restarted", START, || {
        restarts(&c, "a14") >= 1 && restarts(&c, "a16") >= 1
    });
    let counts = observe(&c, &["a14", "a15", "a16"], Duration::from_secs(5));
    assert_eq!(counts[1], 0, "A15: liveness is gated by the startup probe");
    assert!(!started(&c, "a15"), "A15: not started while startup fails");
}

/// A1, A2, A13, A18, A22: HTTP probes against python3 servers, a non-local redirect, the
/// probe-level grace period, and readiness while terminating.
#[test]
fn a1_a2_a13_a18_a22_http_probes_grace_and_termination() {
    let c = Cluster::up();
    let d = c.dir.path().display().to_string();
    // A1: ready only after the initial delay, never restarted
    let p1 = free_port();
    c.apply(&pod(
        "a1",
        &format!("exec python3 -m http.server {p1} --bind 127.0.0.1"),
        &format!(
            "    readinessProbe:\n      httpGet: {{path: /, port: {p1}}}\n      initialDelaySeconds: 5\n      periodSeconds: 1\n"
        ),
        2,
    ));
    // A2: readiness against a closed port → never ready, never restarted
    let closed = free_port();
    c.apply(&pod(
        "a2",
        "sleep 600",
        &format!(
            "    readinessProbe:\n      httpGet: {{path: /, port: {closed}}}\n      periodSeconds: 1\n"
        ),
        2,
    ));
    // A13: a redirect to another host is a warning that counts as success
    let p13 = free_port();
    let script = format!("{d}/liveness.py");
    std::fs::write(&script, podvisor_testkit::LIVENESS_PY).expect("write liveness.py");
    c.apply(&pod(
        "a13",
        &format!("exec python3 {script} 10 {p13}"),
        &format!(
            "    livenessProbe:\n      httpGet: {{path: \"/redirect?loc=http%3A%2F%2F0.0.0.0%2F\", port: {p13}}}\n      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 1\n"
        ),
        2,
    ));
    // A18: the probe's terminationGracePeriodSeconds (2) overrides the pod's (500) for the
    // liveness kill of a process that ignores SIGTERM (PID-1 emulation, §9)
    c.apply(&pod(
        "a18",
        "trap '' TERM; sleep 1000",
        &format!(
            "    livenessProbe:\n      httpGet: {{path: /healthz, port: {closed}}}\n      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 1\n      terminationGracePeriodSeconds: 2\n"
        ),
        500,
    ));
    // A22: readiness keeps running while terminating, so Ready turns False before DELETED
    c.apply(&pod(
        "a22",
        &format!(
            "trap 'rm -f {d}/a22-ready; sleep 30; exit 0' TERM; while true; do touch {d}/a22-ready; sleep 0.5; done"
        ),
        &exec_probe(
            "readinessProbe",
            &["cat", &format!("{d}/a22-ready")],
            "      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 1\n",
        ),
        30,
    ));

    c.wait_pod_ready("a1", START);
    let started_at = c
        .pod_field(
            "a1",
            "{.status.containerStatuses[0].state.running.startedAt}",
        )
        .expect("a1");
    let ready_at = c
        .pod_field(
            "a1",
            "{.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
        )
        .expect("a1");
    let s: Timestamp = started_at.parse().expect("startedAt");
    let r: Timestamp = ready_at.parse().expect("lastTransitionTime");
    assert!(
        r.as_second() - s.as_second() >= 5,
        "A1: ready at {ready_at}, started at {started_at}: before the initial delay"
    );

    c.wait_for("a18 restarted", START, || restarts(&c, "a18") >= 1);
    let killed = c
        .pod_field(
            "a18",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}",
        )
        .unwrap_or_default();
    assert_eq!(killed, "137", "A18: SIGKILLed after the probe's grace");
    let started = c
        .pod_field(
            "a18",
            "{.status.containerStatuses[0].lastState.terminated.startedAt}",
        )
        .unwrap_or_default();
    let finished = c
        .pod_field(
            "a18",
            "{.status.containerStatuses[0].lastState.terminated.finishedAt}",
        )
        .unwrap_or_default();
    let lived = finished
        .parse::<Timestamp>()
        .expect("finishedAt")
        .as_second()
        - started.parse::<Timestamp>().expect("startedAt").as_second();
    assert!(
        lived < 30,
        "A18: the kill used the probe's 2 s, not the pod's 500 s (lived {lived} s)"
    );

    c.wait_for("a13 ProbeWarning", START, || {
        let ev = c.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=a13,reason=ProbeWarning",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        String::from_utf8_lossy(&ev.stdout).contains(
            "Probe terminated redirects, Response body: <a href=\"http://0.0.0.0/\">Found</a>.",
        )
    });

    let counts = observe(&c, &["a1", "a2", "a13"], Duration::from_secs(5));
    assert_eq!(counts, vec![0, 0, 0], "A1/A2/A13: never restarted");
    assert!(!ready(&c, "a2"), "A2: never ready");

    c.wait_pod_ready("a22", START);
    c.kubectl_ok(&["delete", "pod", "a22", "--wait=false"]);
    c.wait_for("A22: Ready False while the pod still exists", START, || {
        assert!(
            c.pod_exists("a22"),
            "A22: the pod went before Ready turned False"
        );
        !ready(&c, "a22")
    });
}
