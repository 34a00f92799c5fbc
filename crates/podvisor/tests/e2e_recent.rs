//! Acceptance tests for the pod features of Kubernetes 1.33–1.37 (issue 20,
//! docs/design/recent-pod-features.md), through the real `kubectl` against `podvisor up` with
//! real processes: pod generation and observedGeneration, in-place resize through
//! `pods/resize` (the cgroup limit really changes, the process keeps its PID), container
//! restart rules and the phase, the restart of all containers in place (RestartAllContainers),
//! pod-level resources on the pod cgroup and their in-place resize,
//! preStop sleep 0, stop signals and the early
//! `StopSignalNotHandled` warning, the refusal of `hostUsers: false`, and the node's
//! `--max-container-restart-period`.
//!
//! One cluster serves every case: the pods are created together and checked in turn.

#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(30);

/// kubectl 1.33, the first with `--subresource=resize` generally available.
const KUBECTL_133: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

fn kubectl_133(c: &Cluster, args: &[&str]) -> std::process::Output {
    let bin = if std::path::Path::new(KUBECTL_133).exists() {
        KUBECTL_133
    } else {
        "kubectl"
    };
    Command::new(bin)
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .output()
        .expect("run kubectl")
}

fn field(c: &Cluster, pod: &str, path: &str) -> String {
    c.pod_field(pod, path).unwrap_or_default()
}

fn wait_field(c: &Cluster, pod: &str, path: &str, want: &str) {
    c.wait_for(&format!("{pod} {path} = {want:?}"), WAIT, || {
        field(c, pod, path) == want
    });
}

/// The events of `pod`, one `reason=message` line each.
fn event_reasons(c: &Cluster, pod: &str) -> String {
    let json = c.kubectl_ok(&["get", "events", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&json).expect("event list");
    let mut out = String::new();
    for e in list["items"].as_array().into_iter().flatten() {
        if e["involvedObject"]["name"] == pod {
            out += &format!(
                "{}={}\n",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
        }
    }
    out
}

/// Writes `yaml` to `NAME.yaml` in the cluster's directory and applies it with kubectl 1.33.
fn apply_133(c: &Cluster, name: &str, yaml: &str) -> std::process::Output {
    let manifest = c.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&manifest, yaml).expect("write manifest");
    kubectl_133(c, &["apply", "-f", manifest.to_str().expect("utf8")])
}

/// [`apply_133`], refused with `message`.
fn refused_133(c: &Cluster, name: &str, yaml: &str, message: &str) {
    let out = apply_133(c, name, yaml);
    assert!(!out.status.success(), "{name} was accepted");
    assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
}

/// `kubectl patch pod NAME --subresource=resize` with kubectl 1.33.
fn resize(c: &Cluster, pod: &str, patch: &str) -> std::process::Output {
    kubectl_133(
        c,
        &[
            "patch",
            "pod",
            pod,
            "--subresource=resize",
            "--patch",
            patch,
        ],
    )
}

/// The memory limit of the cgroup process `pid` is in (`levels_up` 0), or of its pod
/// cgroup (1: the parent of the container's cgroup); cgroup v1 memory controller or the
/// unified hierarchy.
fn memory_limit_of(pid: i32, levels_up: usize) -> u64 {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctl, path) = (parts.next(), parts.next(), parts.next());
        let (Some(ctl), Some(path)) = (ctl, path) else {
            continue;
        };
        let path = std::path::Path::new(path)
            .ancestors()
            .nth(levels_up)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let file = if ctl.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else if ctl.is_empty() {
            format!("/sys/fs/cgroup/unified{path}/memory.max")
        } else {
            continue;
        };
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(v) = text.trim().parse()
        {
            return v;
        }
    }
    panic!("no memory limit {levels_up} level(s) up found for pid {pid}:\n{cgroups}")
}

#[test]
fn recent_pod_features_through_kubectl() {
    let _serial = serial();
    let dir = scratch_dir("podvisor-e2e");
    let c = Cluster::up_with(dir, &["--max-container-restart-period".into(), "2s".into()]);
    let started = Instant::now();
    let scratch = c.dir.path().join("rules");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let resize_marker = marker("resize");
    let sigcgt_marker = marker("sigcgt");
    let pod_level_marker = marker("pod-level");
    // kubectl 1.33 against the server that reports 1.33
    let v = kubectl_133(&c, &["version"]);
    assert!(
        text(&v.stdout).contains("Server Version: v1.33.1-podvisor"),
        "{}",
        text(&v.stdout)
    );
    assert!(!text(&v.stderr).contains("WARNING"), "{}", text(&v.stderr));
    let out = apply_133(
        &c,
        "recent",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: resize
spec:
  terminationGracePeriodSeconds: 2
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done", "{resize_marker}"]
    resources:
      requests: {{cpu: 100m, memory: 32Mi}}
      limits: {{cpu: 200m, memory: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata:
  name: restart-rules
spec:
  restartPolicy: Never
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "if [ -e {dir}/ran ]; then exit 1; fi; touch {dir}/ran; exit 42"]
    restartPolicy: Never
    restartPolicyRules:
    - action: Restart
      exitCodes: {{operator: In, values: [42]}}
---
apiVersion: v1
kind: Pod
metadata:
  name: restart-all
spec:
  restartPolicy: Never
  runtimeClassName: host
  initContainers:
  - name: init
    image: busybox
    command: ["sh", "-c", "echo init >> /work/inits"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "if [ $(wc -l < /work/inits) -lt 2 ]; then sleep 1; exit 42; fi; while true; do sleep 0.2; done"]
    restartPolicy: Never
    restartPolicyRules:
    - action: RestartAllContainers
      exitCodes: {{operator: In, values: [42]}}
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: other
    image: busybox
    command: ["sh", "-c", "while true; do sleep 0.2; done"]
  volumes:
  - name: work
    emptyDir: {{}}
---
apiVersion: v1
kind: Pod
metadata:
  name: pod-level
spec:
  terminationGracePeriodSeconds: 2
  runtimeClassName: host
  resources:
    limits: {{cpu: 500m, memory: 96Mi}}
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done", "{pod_level_marker}"]
---
apiVersion: v1
kind: Pod
metadata:
  name: crashloop
spec:
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "exit 1"]
---
apiVersion: v1
kind: Pod
metadata:
  name: sigcgt
spec:
  terminationGracePeriodSeconds: 1
  os: {{name: linux}}
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "trap '' USR1; while true; do sleep 0.2; done", "{sigcgt_marker}"]
    lifecycle:
      stopSignal: SIGUSR1
      preStop:
        sleep: {{seconds: 0}}
---
apiVersion: v1
kind: Pod
metadata:
  name: userns
spec:
  hostUsers: false
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sleep", "1000"]
"#,
            dir = scratch.display()
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // ---- pod generation (KEP-5067): 1 at create, echoed by the status and its conditions
    c.wait_pod_ready("resize", WAIT);
    assert_eq!(field(&c, "resize", "{.metadata.generation}"), "1");
    wait_field(&c, "resize", "{.status.observedGeneration}", "1");
    let observed = field(&c, "resize", "{.status.conditions[*].observedGeneration}");
    assert_eq!(observed, "1 1 1 1 1", "every condition carries it");
    assert_eq!(
        field(
            &c,
            "resize",
            "{.status.conditions[?(@.type==\"PodReadyToStartContainers\")].status}"
        ),
        "True"
    );
    assert_eq!(
        field(
            &c,
            "resize",
            "{.status.containerStatuses[0].allocatedResources.memory}"
        ),
        "32Mi"
    );

    let out = kubectl_133(&c, &["exec", "resize", "--", "echo", "exec-ok"]);
    assert_eq!(text(&out.stdout).trim(), "exec-ok", "{}", text(&out.stderr));

    // ---- in-place resize (KEP-1287): live cgroup change, same PID, generation bumped
    let allocated_cpu = || {
        field(
            &c,
            "resize",
            "{.status.containerStatuses[0].allocatedResources.cpu}",
        )
    };
    let pid = wait_one_pid(&resize_marker, WAIT);
    assert_eq!(memory_limit_of(pid, 0), 64 << 20);
    let out = resize(
        &c,
        "resize",
        r#"{"spec":{"containers":[{"name":"main","resources":{"requests":{"cpu":"150m","memory":"48Mi"},"limits":{"cpu":"300m","memory":"96Mi"}}}]}}"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(field(&c, "resize", "{.metadata.generation}"), "2");
    wait_field(
        &c,
        "resize",
        "{.status.containerStatuses[0].resources.limits.memory}",
        "96Mi",
    );
    assert_eq!(
        memory_limit_of(pid, 0),
        96 << 20,
        "the cgroup limit changed live"
    );
    assert_eq!(wait_one_pid(&resize_marker, WAIT), pid, "same process");
    assert_eq!(
        field(&c, "resize", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    assert_eq!(allocated_cpu(), "150m");
    wait_field(&c, "resize", "{.status.observedGeneration}", "2");
    assert_eq!(field(&c, "resize", "{.status.qosClass}"), "Burstable");
    // a resize no node could hold is Infeasible, and nothing changes
    let out = resize(
        &c,
        "resize",
        r#"{"spec":{"containers":[{"name":"main","resources":{"requests":{"cpu":"1000"},"limits":{"cpu":"1000"}}}]}}"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_field(
        &c,
        "resize",
        "{.status.conditions[?(@.type==\"PodResizePending\")].reason}",
        "Infeasible",
    );
    let msg = field(
        &c,
        "resize",
        "{.status.conditions[?(@.type==\"PodResizePending\")].message}",
    );
    assert!(
        msg.starts_with("Node didn't have enough capacity: cpu, requested: 1000000, capacity: "),
        "{msg}"
    );
    assert_eq!(allocated_cpu(), "150m");
    // the QoS class may not change, and only resources may be written through resize
    let out = resize(
        &c,
        "resize",
        r#"{"spec":{"containers":[{"name":"main","resources":{"requests":{"cpu":"1000","memory":"96Mi"}}}]}}"#,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Pod QOS Class may not change as a result of resizing"),
        "{}",
        text(&out.stderr)
    );

    // ---- restart rules (KEP-5307): exit 42 restarts a Never container, exit 1 fails the pod
    c.wait_pod_phase("restart-rules", "Failed", WAIT);
    assert_eq!(
        field(
            &c,
            "restart-rules",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "1"
    );
    assert_eq!(
        field(
            &c,
            "restart-rules",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "1"
    );
    assert_eq!(
        field(
            &c,
            "restart-rules",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "42"
    );

    // ---- RestartAllContainers (KEP-5532): main's exit 42 restarts every container in
    // place; the init container runs again into the same emptyDir
    let uid = field(&c, "restart-all", "{.metadata.uid}");
    c.wait_for("restart-all restarted in place", WAIT, || {
        field(
            &c,
            "restart-all",
            "{.status.containerStatuses[*].restartCount}",
        ) == "1 1"
            && field(
                &c,
                "restart-all",
                "{.status.containerStatuses[*].state.running.startedAt}",
            )
            .split(' ')
            .filter(|s| !s.is_empty())
            .count()
                == 2
    });
    assert_eq!(field(&c, "restart-all", "{.status.phase}"), "Running");
    assert_eq!(field(&c, "restart-all", "{.metadata.uid}"), uid);
    assert_eq!(
        field(
            &c,
            "restart-all",
            "{.status.initContainerStatuses[0].restartCount}"
        ),
        "1"
    );
    assert_eq!(
        field(
            &c,
            "restart-all",
            "{.status.containerStatuses[*].lastState.terminated.exitCode}"
        ),
        "42 137",
        "main exited 42, other was killed"
    );
    assert_eq!(
        field(
            &c,
            "restart-all",
            "{.status.conditions[?(@.type==\"AllContainersRestarting\")].status}"
        ),
        "False"
    );
    assert_eq!(
        field(
            &c,
            "restart-all",
            "{.status.conditions[?(@.type==\"PodReadyToStartContainers\")].status}"
        ),
        "True"
    );
    let out = kubectl_133(
        &c,
        &[
            "exec",
            "restart-all",
            "-c",
            "main",
            "--",
            "cat",
            "/work/inits",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        "init\ninit\n",
        "the emptyDir is kept: {}",
        text(&out.stderr)
    );
    assert!(
        !field(&c, "resize", "{.status.conditions[*].type}").contains("AllContainersRestarting"),
        "only a pod with the rule reports the condition"
    );

    // ---- pod-level resources (KEP-2837): the pod cgroup gets spec.resources, the QoS class
    // comes from them, and a pod-level resize (KEP-5419) changes the pod cgroup live
    c.wait_pod_ready("pod-level", WAIT);
    assert_eq!(field(&c, "pod-level", "{.status.qosClass}"), "Guaranteed");
    assert_eq!(
        field(&c, "pod-level", "{.status.resources.limits.memory}"),
        "96Mi"
    );
    let pid = wait_one_pid(&pod_level_marker, WAIT);
    assert_eq!(memory_limit_of(pid, 1), 96 << 20, "the pod cgroup's limit");
    let out = resize(
        &c,
        "pod-level",
        r#"{"spec":{"resources":{"limits":{"cpu":"500m","memory":"128Mi"}}}}"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_field(
        &c,
        "pod-level",
        "{.status.resources.limits.memory}",
        "128Mi",
    );
    assert_eq!(memory_limit_of(pid, 1), 128 << 20, "changed live");
    assert_eq!(wait_one_pid(&pod_level_marker, WAIT), pid, "same process");
    assert_eq!(
        field(&c, "pod-level", "{.status.allocatedResources.memory}"),
        "128Mi"
    );
    c.wait_for("the ResizeCompleted event", WAIT, || {
        event_reasons(&c, "pod-level").contains("ResizeCompleted=Pod resize completed: ")
    });
    // pod-level requests below what the containers ask for are refused as upstream does
    refused_133(
        &c,
        "pod-level-bad",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: pod-level-bad}\nspec:\n  resources: {requests: {cpu: 500m}}\n  containers:\n  - name: main\n    image: busybox\n    resources: {requests: {cpu: '1'}}\n",
        "spec.resources.requests[cpu]: Invalid value: \"500m\": must be greater than or equal to aggregate container requests of 1",
    );

    // ---- stop signals (KEP-4960) and the early warning
    assert_eq!(
        field(&c, "sigcgt", "{.status.containerStatuses[0].stopSignal}"),
        "SIGUSR1"
    );
    c.wait_for("the early StopSignalNotHandled warning", WAIT, || {
        event_reasons(&c, "sigcgt").contains(
            "StopSignalNotHandled=PID 1 does not handle SIGUSR1: it will be killed after the grace period",
        )
    });
    assert!(c.pod_exists("sigcgt"), "warned while the pod runs");
    refused_133(
        &c,
        "no-os",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: no-os}\nspec:\n  containers:\n  - name: main\n    image: busybox\n    lifecycle: {stopSignal: SIGUSR1}\n",
        "lifecycle.stopSignal: Forbidden: may not be set for containers with empty `spec.os.name`",
    );

    // ---- hostUsers: false is refused visibly
    wait_field(
        &c,
        "userns",
        "{.status.containerStatuses[0].state.waiting.reason}",
        "CreateContainerConfigError",
    );
    assert!(
        event_reasons(&c, "userns").contains(
            "Failed=Error: user namespaces are not supported on this node: spec.hostUsers: false cannot be honoured"
        )
    );

    // ---- maxContainerRestartPeriod 2s: a crash loop restarts every ~2 s, not 10, 20, 40 s
    c.wait_for("crashloop restarted 4 times", WAIT, || {
        field(
            &c,
            "crashloop",
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse::<u32>()
        .is_ok_and(|n| n >= 4)
    });

    // ---- preStop sleep 0 (KEP-4818): the delete is not held up by the hook
    let t = Instant::now();
    c.kubectl_ok(&["delete", "pod", "sigcgt", "--wait=true", "--timeout=20s"]);
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "deleted in {:?}",
        t.elapsed()
    );
    eprintln!("e2e_recent cases took {:?}", started.elapsed());
}
