//! The seed's scenario, step by step, through kubectl against `podvisor up`
//! (../shared/seed/pod-lifecycle.zh.md; issue 8).

#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(30);

fn pod(name: &str, grace: i64, script: &str, marker: &str) -> String {
    pods::shell_pod(name, script, marker).grace(grace).yaml()
}

#[test]
fn create_goes_pending_then_running_then_ready() {
    let _g = serial();
    let c = Cluster::up();
    let mut watch = c.kubectl_spawn(&[
        "get",
        "pods",
        "-w",
        "-o",
        "jsonpath={.metadata.name} {.status.phase} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let m = marker("ready");
    c.apply(&pod("ready", 30, "sleep 1000 & wait", &m));
    let stdout = watch.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let done = line.trim() == "ready Running True";
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let phases: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        lines.last().map(|s| s.trim()),
        Some("ready Running True"),
        "watch ended without Ready: {lines:?}"
    );
    let first_running = phases.iter().position(|p| *p == "Running");
    let first_pending = phases.iter().position(|p| *p == "Pending");
    assert!(
        first_pending.is_some() && first_pending < first_running,
        "Pending must come before Running: {lines:?}"
    );
    assert!(
        phases.iter().all(|p| *p == "Pending" || *p == "Running"),
        "unexpected phase: {lines:?}"
    );
    let pid = wait_one_pid(&m, LONG);
    assert!(alive(pid));
}

#[test]
fn delete_of_a_term_honouring_app_is_quick() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("quick");
    c.apply(&pod("quick", 30, "sleep 1000 & wait", &m));
    c.wait_pod_ready("quick", LONG);
    let pid = wait_one_pid(&m, LONG);
    let t0 = Instant::now();
    c.kubectl_ok(&["delete", "pod", "quick"]);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "delete of a TERM-honouring pod took {took:?} (grace is 30 s)"
    );
    assert!(!alive(pid), "process still alive after the pod is gone");
    assert!(!c.pod_exists("quick"));
}

#[test]
fn term_ignoring_app_is_terminating_then_killed_at_the_deadline() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("stubborn");
    c.apply(&pod(
        "stubborn",
        30,
        "trap '' TERM; while true; do sleep 0.2; done",
        &m,
    ));
    c.wait_pod_ready("stubborn", LONG);
    let pid = wait_one_pid(&m, LONG);
    let t0 = Instant::now();
    c.kubectl_ok(&[
        "delete",
        "pod",
        "stubborn",
        "--grace-period=3",
        "--wait=false",
    ]);
    // Meanwhile kubectl shows Terminating.
    let table = c.kubectl_ok(&["get", "pod", "stubborn", "--no-headers"]);
    assert!(
        table.contains("Terminating"),
        "STATUS is not Terminating: {table}"
    );
    assert!(alive(pid), "killed before the deadline");
    let died = wait_dead(pid, Duration::from_secs(10));
    let at = died.duration_since(t0);
    assert!(
        at >= Duration::from_millis(2700) && at <= Duration::from_millis(4000),
        "SIGKILL at {at:?} after the delete, expected 3 s"
    );
    c.wait_for("pod object removed", Duration::from_secs(3), || {
        !c.pod_exists("stubborn")
    });
    let removed = t0.elapsed();
    assert!(
        removed <= Duration::from_secs(5),
        "object removed only after {removed:?}"
    );
}

#[test]
fn prestop_runs_before_the_stop_signal() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("prestop");
    let trace = c.dir.path().join("trace");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  terminationGracePeriodSeconds: 20
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "trap 'echo term >> {t}; exit 0' TERM; while true; do sleep 0.1; done", "{m}"]
    lifecycle:
      preStop:
        exec:
          command: ["sh", "-c", "echo prestop >> {t}; sleep 1"]
"#,
        t = trace.display()
    );
    c.apply(&manifest);
    c.wait_pod_ready("hooked", LONG);
    let pid = wait_one_pid(&m, LONG);
    c.kubectl_ok(&["delete", "pod", "hooked"]);
    assert!(!alive(pid));
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    assert_eq!(
        text, "prestop\nterm\n",
        "preStop must finish before SIGTERM"
    );
}

#[test]
fn force_delete_removes_the_object_at_once_and_kills_the_processes() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("forced");
    c.apply(&pod(
        "forced",
        30,
        "trap '' TERM; while true; do sleep 0.2; done",
        &m,
    ));
    c.wait_pod_ready("forced", LONG);
    let pid = wait_one_pid(&m, LONG);
    let t0 = Instant::now();
    let out = c.kubectl_ok(&["delete", "pod", "forced", "--force", "--grace-period=0"]);
    assert!(out.contains("force deleted"), "{out}");
    assert!(
        !c.pod_exists("forced"),
        "object still there after a force delete"
    );
    wait_dead(pid, Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(6));
}

#[test]
fn a_second_delete_shortens_the_grace_period() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("shorten");
    c.apply(&pod(
        "shorten",
        60,
        "trap '' TERM; while true; do sleep 0.2; done",
        &m,
    ));
    c.wait_pod_ready("shorten", LONG);
    let pid = wait_one_pid(&m, LONG);
    let t0 = Instant::now();
    c.kubectl_ok(&["delete", "pod", "shorten", "--wait=false"]);
    std::thread::sleep(Duration::from_millis(300));
    let grace = c
        .pod_field("shorten", "{.metadata.deletionGracePeriodSeconds}")
        .unwrap_or_default();
    assert_eq!(grace, "60");
    // The shorter grace counts from the original request (spec §1.1): the processes die
    // 3 s after the first delete, not 3 s after the second.
    c.kubectl_ok(&[
        "delete",
        "pod",
        "shorten",
        "--grace-period=3",
        "--wait=false",
    ]);
    let grace = c
        .pod_field("shorten", "{.metadata.deletionGracePeriodSeconds}")
        .unwrap_or_default();
    assert_eq!(grace, "3");
    // A longer grace afterwards is ignored.
    c.kubectl_ok(&[
        "delete",
        "pod",
        "shorten",
        "--grace-period=20",
        "--wait=false",
    ]);
    let died = wait_dead(pid, Duration::from_secs(10)).duration_since(t0);
    assert!(
        died >= Duration::from_millis(2700) && died <= Duration::from_millis(4200),
        "killed {died:?} after the first delete, expected 3 s"
    );
    c.wait_for("pod removed", Duration::from_secs(3), || {
        !c.pod_exists("shorten")
    });
}

#[test]
fn double_forked_daemon_dies_with_its_pod() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("daemon");
    let daemon = format!("{m}-child");
    // The daemon's marker is built at run time so that the parent's command line (which
    // holds the script text) does not contain it.
    let script = "d=\"$0-child\"; setsid sh -c 'trap \"\" TERM HUP; while true; do sleep 0.2; done' \"$d\" & sleep 1000 & wait";
    c.apply(&pod("daemon", 2, script, &m));
    c.wait_pod_ready("daemon", LONG);
    let child = wait_one_pid(&daemon, LONG);
    c.kubectl_ok(&["delete", "pod", "daemon"]);
    wait_dead(child, Duration::from_secs(5));
    assert!(find_pids(&m).is_empty(), "leaked: {:?}", find_pids(&m));
}

#[test]
fn logs_follow_and_previous() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("logs");
    let count = c.dir.path().join("count");
    let script = format!(
        "n=$(cat {f} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {f}; echo run $n; echo err $n >&2; \
         if [ $n -lt 2 ]; then exit 1; fi; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done",
        f = count.display()
    );
    c.apply(&pod("logs", 2, &script, &m));
    c.wait_for("second run", LONG, || {
        c.pod_field("logs", "{.status.containerStatuses[0].restartCount}")
            .as_deref()
            == Some("1")
            && c.kubectl(&["logs", "logs"]).status.success()
    });
    let current = c.kubectl_ok(&["logs", "logs"]);
    assert!(current.contains("run 2"), "{current}");
    assert!(current.contains("err 2"), "{current}");
    let previous = c.kubectl_ok(&["logs", "logs", "--previous"]);
    assert!(
        previous.contains("run 1") && !previous.contains("run 2"),
        "{previous}"
    );
    let tail = c.kubectl_ok(&["logs", "logs", "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");

    let mut follow = c.kubectl_spawn(&["logs", "-f", "logs"]);
    let stdout = follow.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut seen = Vec::new();
    let t0 = Instant::now();
    // Follow must deliver lines written after it started.
    let start_ticks = current.matches("tick").count();
    while seen.iter().filter(|l: &&String| l.contains("tick")).count() < start_ticks + 3 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        seen.push(line);
        assert!(t0.elapsed() < LONG, "logs -f stalled: {seen:?}");
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        seen.iter().filter(|l| l.contains("tick")).count() >= start_ticks + 3,
        "logs -f delivered {seen:?}"
    );
}

#[test]
fn describe_shows_events() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("describe");
    c.apply(&pod("described", 2, "sleep 1000 & wait", &m));
    c.wait_pod_ready("described", LONG);
    c.wait_for("Started event", LONG, || {
        let d = c.kubectl_ok(&["describe", "pod", "described"]);
        d.contains("Scheduled") && d.contains("Started")
    });
    let d = c.kubectl_ok(&["describe", "pod", "described"]);
    assert!(d.contains("Status:") && d.contains("Running"), "{d}");
    assert!(
        d.contains(&format!(
            "Successfully assigned default/described to {}",
            c.node
        )),
        "{d}"
    );
}

#[test]
fn up_killed_mid_grace_kills_at_the_original_deadline_and_spares_the_rest() {
    let _g = serial();
    let mut c = Cluster::up();
    let m_victim = marker("victim");
    let m_other = marker("bystander");
    c.apply(&pod(
        "victim",
        30,
        "trap '' TERM; while true; do sleep 0.2; done",
        &m_victim,
    ));
    c.apply(&pod("bystander", 30, "sleep 1000 & wait", &m_other));
    c.wait_pod_ready("victim", LONG);
    c.wait_pod_ready("bystander", LONG);
    let victim = wait_one_pid(&m_victim, LONG);
    let bystander = wait_one_pid(&m_other, LONG);
    let t0 = Instant::now();
    c.kubectl_ok(&[
        "delete",
        "pod",
        "victim",
        "--grace-period=6",
        "--wait=false",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    c.up.kill9();
    assert!(alive(victim), "the pod died with `up`");
    assert!(alive(bystander), "the pod died with `up`");
    c.restart();
    let died = wait_dead(victim, Duration::from_secs(15)).duration_since(t0);
    assert!(
        died >= Duration::from_millis(5700) && died <= Duration::from_millis(7500),
        "victim killed {died:?} after the delete, expected the original deadline (6 s)"
    );
    c.wait_for("victim removed", Duration::from_secs(5), || {
        !c.pod_exists("victim")
    });
    assert!(alive(bystander), "the bystander was restarted or killed");
    assert_eq!(
        wait_one_pid(&m_other, LONG),
        bystander,
        "bystander restarted"
    );
    assert_eq!(
        c.pod_field("bystander", "{.status.containerStatuses[0].restartCount}")
            .as_deref(),
        Some("0")
    );
    c.wait_pod_ready("bystander", LONG);
}
