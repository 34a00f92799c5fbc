//! Acceptance tests for the pods API and kubelet basics (spec k8s-pod-lifecycle.md §1, §2,
//! §7, catalogue §8 groups E, F and N), driven only through the real `kubectl` against
//! `podvisor up`, with real processes. Cases already covered by e2e_seed.rs and
//! e2e_kubectl.rs (N8 force delete, second-delete shortening, logs, apply, …) are not
//! repeated here.
//!
//! Every test runs its own cluster with paths under its own temporary directory, so tests
//! may run in parallel.

#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

const START: Duration = Duration::from_secs(60);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ts(s: &str) -> i64 {
    s.parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
        .as_second()
}

/// Writes `body` under the cluster dir and returns the path.
fn file(c: &Cluster, name: &str, body: &str) -> String {
    let p = c.dir.path().join(name);
    std::fs::write(&p, body).expect("write");
    p.display().to_string()
}

fn get_json(c: &Cluster, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&c.kubectl_ok(&a)).expect("json")
}

/// A pod running `sh -c SCRIPT MARKER` (so its processes can be found from the host).
fn shell_pod(name: &str, labels: &str, grace: i64, policy: &str, script: &str, m: &str) -> String {
    common::pods::shell_pod(name, script, m)
        .labels(labels)
        .grace(grace)
        .policy(policy)
        .yaml()
}

/// Records every watch event of pods (raw API watch through kubectl) until dropped.
struct Recorder {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Recorder {
    /// Watches the default namespace's pods matching `query` (e.g. `labelSelector=a%3Db`).
    fn start(c: &Cluster, query: &str) -> Recorder {
        let url = format!("/api/v1/namespaces/default/pods?watch=1&{query}");
        let mut child = c.kubectl_spawn(&["get", "--raw", &url]);
        let out = child.stdout.take().expect("stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(v);
                }
            }
        });
        // Let the watch open before anything happens.
        std::thread::sleep(Duration::from_millis(800));
        Recorder { child, events }
    }

    fn events(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Events of one pod, in order, as (type, object).
    fn of(&self, pod: &str) -> Vec<(String, Value)> {
        self.events()
            .into_iter()
            .filter(|e| e["object"]["metadata"]["name"] == pod)
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_string(),
                    e["object"].clone(),
                )
            })
            .collect()
    }

    fn wait_deleted(&self, c: &Cluster, pod: &str, timeout: Duration) {
        c.wait_for(&format!("watch DELETED {pod}"), timeout, || {
            self.of(pod).iter().any(|(t, _)| t == "DELETED")
        });
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Group E: pods API and kubelet basics (common/node/pods.go)
// ---------------------------------------------------------------------------------------

/// E1 [C] should get a host IP.
#[test]
fn e1_pod_gets_a_host_ip() {
    let c = Cluster::up();
    let m = marker("e1");
    c.apply(&shell_pod(
        "pod-hostip",
        "app: e1",
        2,
        "Always",
        "sleep 1000 & wait",
        &m,
    ));
    c.wait_for("hostIP", Duration::from_secs(120), || {
        !c.pod_field("pod-hostip", "{.status.hostIP}")
            .unwrap_or_default()
            .is_empty()
    });
    let node_ip = c.kubectl_ok(&[
        "get",
        "node",
        &c.node,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    assert_eq!(
        c.pod_field("pod-hostip", "{.status.hostIP} {.status.hostIPs[0].ip}")
            .as_deref(),
        Some(format!("{node_ip} {node_ip}").as_str())
    );
}

/// E2 [C] should be submitted and removed: list by a unique label (0), watch, create,
/// list (1), ADDED, Running, DELETE with grace 30 → DELETED whose object carries a
/// deletionTimestamp and a non-zero terminationGracePeriodSeconds; list (0).
#[test]
fn e2_pod_is_submitted_and_removed() {
    let c = Cluster::up();
    let sel = "time=e2-submit-remove";
    assert_eq!(c.kubectl_ok(&["get", "pods", "-l", sel, "-o", "name"]), "");
    let w = Recorder::start(&c, "labelSelector=time%3De2-submit-remove");
    let m = marker("e2");
    c.apply(&shell_pod(
        "pod-submit-remove",
        "time: e2-submit-remove",
        30,
        "Always",
        "sleep 1000 & wait",
        &m,
    ));
    assert_eq!(
        c.kubectl_ok(&["get", "pods", "-l", sel, "-o", "name"])
            .trim(),
        "pod/pod-submit-remove"
    );
    c.wait_for("watch ADDED", START, || {
        w.of("pod-submit-remove").iter().any(|(t, _)| t == "ADDED")
    });
    c.wait_pod_phase("pod-submit-remove", "Running", START);
    c.kubectl_ok(&[
        "delete",
        "pod",
        "pod-submit-remove",
        "--grace-period=30",
        "--wait=false",
    ]);
    w.wait_deleted(&c, "pod-submit-remove", Duration::from_secs(90));
    let evs = w.of("pod-submit-remove");
    let (_, last) = evs.last().expect("events");
    assert!(last["metadata"]["deletionTimestamp"].is_string(), "{last}");
    assert!(
        last["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .is_some_and(|g| g > 0),
        "{last}"
    );
    assert_eq!(c.kubectl_ok(&["get", "pods", "-l", sel, "-o", "name"]), "");
    c.wait_for("processes gone", START, || find_pids(&m).is_empty());
}

/// E3 [C] should be updated: a label changed with an update (PUT) selects the pod, which
/// keeps running.
#[test]
fn e3_pod_is_updated() {
    let c = Cluster::up();
    let m = marker("e3");
    c.apply(&shell_pod(
        "pod-update",
        "time: e3-before",
        2,
        "Always",
        "sleep 1000 & wait",
        &m,
    ));
    c.wait_pod_ready("pod-update", START);
    let pid = wait_one_pid(&m, START);
    // Read-modify-write, retried on conflicts as the e2e test's client does.
    let deadline = Instant::now() + START;
    loop {
        let mut pod = get_json(&c, &["pod", "pod-update"]);
        pod["metadata"]["labels"]["time"] = json!("e3-after");
        let p = file(&c, "e3.json", &pod.to_string());
        let out = c.kubectl(&["replace", "-f", &p]);
        if out.status.success() {
            assert_eq!(text(&out.stdout).trim(), "pod/pod-update replaced");
            break;
        }
        assert!(
            text(&out.stderr).contains("Conflict") && Instant::now() < deadline,
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(
        c.kubectl_ok(&["get", "pods", "-l", "time=e3-after", "-o", "name"])
            .trim(),
        "pod/pod-update"
    );
    assert_eq!(
        c.kubectl_ok(&["get", "pods", "-l", "time=e3-before", "-o", "name"]),
        ""
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.pod_field("pod-update", "{.status.phase}").as_deref(),
        Some("Running")
    );
    assert!(alive(pid), "a label update restarted the container");
}

fn conditions(c: &Cluster, pod: &str) -> BTreeMap<String, (String, String, String)> {
    let v = get_json(c, &["pod", pod]);
    v["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("type"), (s("status"), s("reason"), s("message")))
        })
        .collect()
}

/// E7 should support pod readiness gates: Running but not Ready until both gate
/// conditions (patched through pods/status by a client) are True.
#[test]
fn e7_readiness_gates_control_ready() {
    let c = Cluster::up();
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: pod-ready}
spec:
  terminationGracePeriodSeconds: 2
  readinessGates:
  - conditionType: k8s.io/test-condition1
  - conditionType: k8s.io/test-condition2
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "sleep 10000 & wait"]
"#,
    );
    c.wait_pod_phase("pod-ready", "Running", START);
    c.wait_for("ContainersReady", START, || {
        conditions(&c, "pod-ready")
            .get("ContainersReady")
            .is_some_and(|s| s.0 == "True")
    });
    let conds = conditions(&c, "pod-ready");
    assert_eq!(
        conds["Ready"],
        (
            "False".into(),
            "ReadinessGatesNotReady".into(),
            "corresponding condition of pod readiness gate \"k8s.io/test-condition1\" does not exist., corresponding condition of pod readiness gate \"k8s.io/test-condition2\" does not exist.".into()
        )
    );
    let wide = c.kubectl_ok(&["get", "pod", "pod-ready", "-o", "wide", "--no-headers"]);
    assert!(wide.trim_end().ends_with("0/2"), "{wide}");

    let set = |t: &str, s: &str| {
        let p = format!(r#"{{"status":{{"conditions":[{{"type":"{t}","status":"{s}"}}]}}}}"#);
        c.kubectl_ok(&[
            "patch",
            "pod",
            "pod-ready",
            "--subresource=status",
            "-p",
            &p,
        ]);
    };
    set("k8s.io/test-condition1", "True");
    std::thread::sleep(Duration::from_secs(10));
    let conds = conditions(&c, "pod-ready");
    assert_eq!(conds["Ready"].0, "False", "{conds:?}");
    assert_eq!(
        conds["Ready"].2,
        "corresponding condition of pod readiness gate \"k8s.io/test-condition2\" does not exist."
    );
    assert_eq!(conds["k8s.io/test-condition1"].0, "True");

    set("k8s.io/test-condition2", "True");
    c.wait_pod_ready("pod-ready", START);
    let wide = c.kubectl_ok(&["get", "pod", "pod-ready", "-o", "wide", "--no-headers"]);
    assert!(wide.trim_end().ends_with("2/2"), "{wide}");

    set("k8s.io/test-condition1", "False");
    c.wait_for("not Ready", START, || {
        conditions(&c, "pod-ready")
            .get("Ready")
            .is_some_and(|s| s.0 == "False")
    });
    let conds = conditions(&c, "pod-ready");
    assert_eq!(
        conds["Ready"].2,
        "the status of pod readiness gate \"k8s.io/test-condition1\" is not \"True\", but False"
    );
    assert_eq!(conds["ContainersReady"].0, "True", "{conds:?}");
}

/// E8 [C] should delete a collection of pods: DELETE on the collection with a label
/// selector and grace 1 removes all three.
#[test]
fn e8_delete_a_collection_of_pods() {
    let c = Cluster::up();
    let m = marker("e8");
    for n in ["test-pod-1", "test-pod-2", "test-pod-3"] {
        c.apply(&shell_pod(
            n,
            "type: Testing",
            1,
            "Never",
            "sleep 1000 & wait",
            &m,
        ));
    }
    c.apply(&shell_pod(
        "bystander",
        "type: Other",
        1,
        "Never",
        "sleep 1000 & wait",
        &m,
    ));
    for n in ["test-pod-1", "test-pod-2", "test-pod-3", "bystander"] {
        c.wait_pod_ready(n, START);
    }
    let opts = file(
        &c,
        "opts.json",
        r#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":1}"#,
    );
    let out = c.kubectl_ok(&[
        "delete",
        "--raw",
        "/api/v1/namespaces/default/pods?labelSelector=type%3DTesting",
        "-f",
        &opts,
    ]);
    let list: Value = serde_json::from_str(&out).expect("PodList");
    assert_eq!(list["kind"], "PodList", "{out}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3), "{out}");
    c.wait_for("collection gone", Duration::from_secs(90), || {
        c.kubectl_ok(&["get", "pods", "-l", "type=Testing", "-o", "name"])
            .is_empty()
    });
    assert!(c.pod_exists("bystander"));
    assert_eq!(find_pids(&m).len(), 1, "only the bystander's shell is left");
}

/// E9 [C] should run through the lifecycle of Pods and PodStatus: strategic-merge patch
/// of a label and the image, PUT pods/status with Ready and ContainersReady False, delete
/// collection (grace 1), DELETED, GET 404.
#[test]
fn e9_lifecycle_of_pods_and_pod_status() {
    let c = Cluster::up();
    let w = Recorder::start(&c, "labelSelector=test-pod-static%3Dtrue");
    let m = marker("e9");
    c.apply(&shell_pod(
        "pod-test",
        "test-pod-static: \"true\"",
        1,
        "Always",
        "sleep 1000 & wait",
        &m,
    ));
    c.wait_pod_phase("pod-test", "Running", START);
    c.wait_pod_ready("pod-test", START);
    let out = c.kubectl_ok(&[
        "patch",
        "pod",
        "pod-test",
        "--type=strategic",
        "-p",
        r#"{"metadata":{"labels":{"test-pod":"patched"}},"spec":{"containers":[{"name":"main","image":"busybox:1.36"}]}}"#,
    ]);
    assert_eq!(out.trim(), "pod/pod-test patched");
    assert_eq!(
        c.pod_field(
            "pod-test",
            "{.metadata.labels.test-pod} {.spec.containers[0].image}"
        )
        .as_deref(),
        Some("patched busybox:1.36")
    );
    // PUT pods/status with Ready and ContainersReady set to False.
    let deadline = Instant::now() + START;
    let replaced = loop {
        let mut pod = get_json(&c, &["pod", "pod-test"]);
        for cond in pod["status"]["conditions"]
            .as_array_mut()
            .expect("conditions")
        {
            if cond["type"] == "Ready" || cond["type"] == "ContainersReady" {
                cond["status"] = json!("False");
            }
        }
        let p = file(&c, "e9-status.json", &pod.to_string());
        let out = c.kubectl(&["replace", "--subresource=status", "-f", &p, "-o", "json"]);
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).expect("pod");
        }
        assert!(
            text(&out.stderr).contains("Conflict") && Instant::now() < deadline,
            "{}",
            text(&out.stderr)
        );
    };
    let status_of = |t: &str| {
        replaced["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .map(|c| c["status"].clone())
    };
    assert_eq!(status_of("Ready"), Some(json!("False")));
    assert_eq!(status_of("ContainersReady"), Some(json!("False")));

    let opts = file(
        &c,
        "opts.json",
        r#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":1}"#,
    );
    c.kubectl_ok(&[
        "delete",
        "--raw",
        "/api/v1/namespaces/default/pods?labelSelector=test-pod-static%3Dtrue",
        "-f",
        &opts,
    ]);
    w.wait_deleted(&c, "pod-test", START);
    let out = c.kubectl(&["get", "pod", "pod-test"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("(NotFound)")
            && text(&out.stderr).contains("pods \"pod-test\" not found"),
        "{}",
        text(&out.stderr)
    );
    c.wait_for("processes gone", START, || find_pids(&m).is_empty());
}

// ---------------------------------------------------------------------------------------
// Group F: pods extended (node/pods.go)
// ---------------------------------------------------------------------------------------

/// F1 Delete Grace Period: a raw DELETE with `gracePeriodSeconds=30` answers HTTP 200 with
/// the Pod (deletionTimestamp set); the pod and its processes are gone within 90 s.
#[test]
fn f1_delete_grace_period_returns_the_pod_and_removes_it() {
    let c = Cluster::up();
    let m = marker("f1");
    c.apply(&shell_pod(
        "pod-submit-remove",
        "app: f1",
        30,
        "Always",
        "trap 'exit 0' TERM; sleep 1000 & wait",
        &m,
    ));
    c.wait_pod_ready("pod-submit-remove", START);
    let out = c.kubectl(&[
        "delete",
        "--raw",
        "/api/v1/namespaces/default/pods/pod-submit-remove?gracePeriodSeconds=30",
        "-v=6",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // kubectl's `-v=6` response line (1.33's structured form: `url="…" status="200 OK"`).
    assert!(
        text(&out.stderr).lines().any(|l| {
            l.contains("pods/pod-submit-remove?gracePeriodSeconds=30") && l.contains("200 OK")
        }),
        "{}",
        text(&out.stderr)
    );
    let pod: Value = serde_json::from_slice(&out.stdout).expect("body");
    assert_eq!(pod["kind"], "Pod");
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
    c.wait_for("pod gone", Duration::from_secs(90), || {
        !c.pod_exists("pod-submit-remove")
    });
    assert!(find_pids(&m).is_empty(), "processes left behind");
}

/// F2 [C] Pods Set QOS Class: set by the API server at create.
#[test]
fn f2_qos_class_is_set_at_create() {
    let c = Cluster::up();
    let res = |r: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: qos-{r}}}
spec:
  nodeSelector: {{never: scheduled}}
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sleep", "1"]
    resources: {res}
"#,
            res = match r {
                "guaranteed" =>
                    "{requests: {cpu: 100m, memory: 100Mi}, limits: {cpu: 100m, memory: 100Mi}}",
                "burstable" => "{requests: {cpu: 100m}}",
                _ => "{}",
            }
        )
    };
    for (r, want) in [
        ("guaranteed", "Guaranteed"),
        ("burstable", "Burstable"),
        ("besteffort", "BestEffort"),
    ] {
        let p = file(&c, &format!("{r}.yaml"), &res(r));
        let out = c.kubectl_ok(&["create", "-f", &p, "-o", "jsonpath={.status.qosClass}"]);
        assert_eq!(out, want, "{r}");
    }
}

/// The F3/F4/F5 invariants over one pod's watch events (node/pods.go "Pod Container
/// Status"): a terminated container reports exit 1 (its own), or 137 with Error or
/// ContainerStatusUnknown, or 128 StartError; once terminated it never returns to waiting
/// or running; finishedAt implies startedAt; a terminal phase never reverts; before
/// DELETED the pod is terminal or has no running container.
fn check_container_status_invariants(pod: &str, evs: &[(String, Value)]) {
    let mut terminated = false;
    let mut terminal_phase: Option<String> = None;
    let mut last_obj: Option<&Value> = None;
    for (ty, obj) in evs {
        if ty == "DELETED" {
            let prev = last_obj.unwrap_or(obj);
            let phase = prev["status"]["phase"].as_str().unwrap_or_default();
            let running = prev["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["state"]["running"].is_object()));
            assert!(
                phase == "Succeeded" || phase == "Failed" || !running,
                "{pod}: deleted while {phase} with a running container: {prev}"
            );
            continue;
        }
        last_obj = Some(obj);
        let phase = obj["status"]["phase"].as_str().unwrap_or_default();
        if let Some(t) = &terminal_phase {
            assert_eq!(phase, t, "{pod}: terminal phase reverted: {obj}");
        } else if phase == "Succeeded" || phase == "Failed" {
            terminal_phase = Some(phase.to_string());
        }
        for cs in obj["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let st = &cs["state"];
            if let Some(t) = st["terminated"].as_object() {
                terminated = true;
                let code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(-1);
                let reason = t.get("reason").and_then(Value::as_str).unwrap_or_default();
                let ok = code == 1
                    || (code == 137 && (reason == "Error" || reason == "ContainerStatusUnknown"))
                    || (code == 128 && reason == "StartError");
                assert!(ok, "{pod}: bad terminated state {t:?}");
                if t.get("finishedAt").is_some_and(|f| !f.is_null()) {
                    assert!(
                        t.get("startedAt").is_some_and(|s| s.is_string()),
                        "{pod}: finishedAt without startedAt: {t:?}"
                    );
                }
                assert_ne!(code, 0, "{pod}: a failing container reported success");
            } else if terminated {
                panic!("{pod}: container left the terminated state: {st}");
            }
        }
    }
}

/// F3 Pod Container Status: should never report success for a pending container (15
/// `/bin/false` pods, Never, TGPS 1; wait non-Pending; DELETE; check every watch event).
#[test]
fn f3_never_report_success_for_a_pending_container() {
    let c = Cluster::up();
    let w = Recorder::start(&c, "labelSelector=test%3Df3");
    let names: Vec<String> = (0..15).map(|i| format!("pod-f3-{i}")).collect();
    for n in &names {
        let body = format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {n}, labels: {{test: f3}}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  runtimeClassName: host
  containers:
  - {{name: fail, image: busybox, command: ["/bin/false"]}}
"#
        );
        c.apply(&body);
    }
    for n in &names {
        c.wait_for(
            &format!("{n} not Pending"),
            Duration::from_secs(120),
            || {
                c.pod_field(n, "{.status.phase}")
                    .is_some_and(|p| !p.is_empty() && p != "Pending")
            },
        );
        c.kubectl_ok(&["delete", "pod", n, "--wait=false"]);
    }
    for n in &names {
        w.wait_deleted(&c, n, Duration::from_secs(120));
        let evs = w.of(n);
        check_container_status_invariants(n, &evs);
        let before_delete = &evs[evs.len() - 2].1;
        assert_eq!(
            before_delete["status"]["phase"], "Failed",
            "{n}: {before_delete}"
        );
    }
}

/// F5 should report StartError for pod removal: as F3, but each pod is deleted after a
/// random 0–2 s without waiting for it to start.
#[test]
fn f5_deleting_pods_at_random_times_keeps_statuses_consistent() {
    let c = Cluster::up();
    let w = Recorder::start(&c, "labelSelector=test%3Df5");
    let names: Vec<String> = (0..10).map(|i| format!("pod-f5-{i}")).collect();
    // A cheap deterministic spread of delays over 0–2 s.
    let mut seed: u64 = u64::from(std::process::id());
    for n in &names {
        let body = format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {n}, labels: {{test: f5}}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  runtimeClassName: host
  containers:
  - {{name: fail, image: busybox, command: ["/bin/false"]}}
"#
        );
        c.apply(&body);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((seed >> 33) % 2000));
        c.kubectl_ok(&["delete", "pod", n, "--wait=false"]);
    }
    for n in &names {
        w.wait_deleted(&c, n, Duration::from_secs(120));
        check_container_status_invariants(n, &w.of(n));
    }
}

/// F6 should not return an error when any health probe fails: a failing startup probe
/// restarts the container (which ignores SIGTERM like a container's PID 1, §9); after the
/// delete the final state is exit 137, reason Error, with a deletionTimestamp, and the
/// phase is terminal before DELETED.
#[test]
fn f6_failed_startup_probe_then_delete_ends_with_137_and_a_terminal_phase() {
    let c = Cluster::up();
    let w = Recorder::start(&c, "fieldSelector=metadata.name%3Dpod-f6");
    let m = marker("f6");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: pod-f6}}
spec:
  terminationGracePeriodSeconds: 1
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "trap '' TERM; sleep 1800", "{m}"]
    startupProbe:
      exec: {{command: ["/bin/false"]}}
      failureThreshold: 1
      periodSeconds: 1
      terminationGracePeriodSeconds: 1
"#
    ));
    c.wait_for("restartCount 1", Duration::from_secs(120), || {
        c.pod_field("pod-f6", "{.status.containerStatuses[0].restartCount}")
            .as_deref()
            == Some("1")
    });
    c.kubectl_ok(&["delete", "pod", "pod-f6", "--wait=false"]);
    w.wait_deleted(&c, "pod-f6", Duration::from_secs(120));
    let evs = w.of("pod-f6");
    let (_, last) = evs.last().expect("events");
    let t = &last["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 137, "{last}");
    assert_eq!(t["reason"], "Error", "{last}");
    assert!(last["metadata"]["deletionTimestamp"].is_string());
    let before = &evs[evs.len() - 2].1;
    assert_eq!(before["status"]["phase"], "Failed", "{before}");
    assert!(find_pids(&m).is_empty(), "processes left behind");
}

/// F9 Pod TerminationGracePeriodSeconds is negative: stored as 1 on create and update.
#[test]
fn f9_negative_termination_grace_period_is_stored_as_1() {
    let c = Cluster::up();
    let m = marker("f9");
    let p = file(
        &c,
        "f9.yaml",
        &shell_pod(
            "pod-negative-grace",
            "app: f9",
            -1,
            "Always",
            "sleep 1000 & wait",
            &m,
        ),
    );
    let out = c.kubectl_ok(&[
        "create",
        "-f",
        &p,
        "-o",
        "jsonpath={.spec.terminationGracePeriodSeconds}",
    ]);
    assert_eq!(out, "1");
    c.wait_pod_ready("pod-negative-grace", START);
    let deadline = Instant::now() + START;
    loop {
        let mut pod = get_json(&c, &["pod", "pod-negative-grace"]);
        pod["spec"]["terminationGracePeriodSeconds"] = json!(-1);
        let f = file(&c, "f9u.json", &pod.to_string());
        let out = c.kubectl(&[
            "replace",
            "-f",
            &f,
            "-o",
            "jsonpath={.spec.terminationGracePeriodSeconds}",
        ]);
        if out.status.success() {
            assert_eq!(text(&out.stdout), "1");
            break;
        }
        assert!(
            text(&out.stderr).contains("Conflict") && Instant::now() < deadline,
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(
        c.pod_field(
            "pod-negative-grace",
            "{.spec.terminationGracePeriodSeconds}"
        )
        .as_deref(),
        Some("1")
    );
}

/// F10 Pod Generation: 1 after create, 2 after a graceful delete (grace 60).
#[test]
fn f10_generation_starts_at_1_and_a_graceful_delete_bumps_it() {
    let c = Cluster::up();
    let m = marker("f10");
    let p = file(
        &c,
        "f10.yaml",
        &shell_pod(
            "pod-generation",
            "app: f10",
            60,
            "Always",
            "trap '' TERM; while true; do sleep 0.2; done",
            &m,
        ),
    );
    let out = c.kubectl_ok(&["create", "-f", &p, "-o", "jsonpath={.metadata.generation}"]);
    assert_eq!(out, "1");
    c.wait_pod_ready("pod-generation", START);
    let out = c.kubectl(&[
        "delete",
        "--raw",
        "/api/v1/namespaces/default/pods/pod-generation?gracePeriodSeconds=60",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pod: Value = serde_json::from_slice(&out.stdout).expect("pod");
    assert_eq!(pod["metadata"]["generation"], 2, "{pod}");
    assert_eq!(
        c.pod_field("pod-generation", "{.metadata.generation}")
            .as_deref(),
        Some("2")
    );
}

// ---------------------------------------------------------------------------------------
// Group N: derived scenarios (§1, §7)
// ---------------------------------------------------------------------------------------

/// N1: a pod that was never scheduled is deleted at once (MODIFIED with a
/// deletionTimestamp, then DELETED), even with the default grace period.
#[test]
fn n1_unscheduled_pod_is_deleted_at_once() {
    let c = Cluster::up();
    let w = Recorder::start(&c, "fieldSelector=metadata.name%3Dunschedulable");
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: unschedulable}
spec:
  nodeSelector: {disk: none-such}
  runtimeClassName: host
  containers: [{name: main, image: busybox, command: ["sleep", "100"]}]
"#,
    );
    c.wait_for("PodScheduled=False", START, || {
        c.pod_field(
            "unschedulable",
            "{.status.conditions[?(@.type==\"PodScheduled\")].reason}",
        )
        .as_deref()
            == Some("Unschedulable")
    });
    let t0 = Instant::now();
    c.kubectl_ok(&["delete", "pod", "unschedulable"]);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert!(!c.pod_exists("unschedulable"));
    w.wait_deleted(&c, "unschedulable", Duration::from_secs(10));
    let evs = w.of("unschedulable");
    let n = evs.len();
    assert!(n >= 2, "{evs:?}");
    assert_eq!(evs[n - 2].0, "MODIFIED");
    assert!(evs[n - 2].1["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(evs[n - 2].1["metadata"]["deletionGracePeriodSeconds"], 0);
}

/// N2: a Succeeded pod is deleted at once.
#[test]
fn n2_succeeded_pod_is_deleted_at_once() {
    let c = Cluster::up();
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: done}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 300
  runtimeClassName: host
  containers: [{name: main, image: busybox, command: ["/bin/true"]}]
"#,
    );
    c.wait_pod_phase("done", "Succeeded", START);
    let out = c.kubectl(&["delete", "--raw", "/api/v1/namespaces/default/pods/done"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pod: Value = serde_json::from_slice(&out.stdout).expect("pod");
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 0, "{pod}");
    assert!(!c.pod_exists("done"), "a terminal pod must go at once");
}

/// N3: DELETE grace 60, then 100 (no change), then 10: the grace drops to 10 and the
/// deadline is the first request's time + 10 s.
#[test]
fn n3_repeated_deletes_only_shorten_and_count_from_the_first_request() {
    let c = Cluster::up();
    let m = marker("n3");
    c.apply(&shell_pod(
        "shorten",
        "app: n3",
        300,
        "Always",
        "trap '' TERM; while true; do sleep 0.2; done",
        &m,
    ));
    c.wait_pod_ready("shorten", START);
    let dt = "{.metadata.deletionTimestamp} {.metadata.deletionGracePeriodSeconds}";
    let del = |g: &str| {
        c.kubectl_ok(&[
            "delete",
            "pod",
            "shorten",
            &format!("--grace-period={g}"),
            "--wait=false",
        ]);
        c.pod_field("shorten", dt).unwrap_or_default()
    };
    let first = del("60");
    let (t60, g) = first.split_once(' ').expect("fields");
    assert_eq!(g, "60");
    std::thread::sleep(Duration::from_millis(1500));
    let second = del("100");
    assert_eq!(second, first, "a longer grace must not change anything");
    let third = del("10");
    let (t10, g) = third.split_once(' ').expect("fields");
    assert_eq!(g, "10");
    assert_eq!(
        ts(t60) - ts(t10),
        50,
        "deadline = first request + 10 s: {first} / {third}"
    );
    c.wait_for("pod gone", Duration::from_secs(40), || {
        !c.pod_exists("shorten")
    });
    assert!(find_pids(&m).is_empty());
}

/// N4: a pod with a finalizer, DELETE with grace 0: the object stays with its
/// deletionTimestamp and deletionGracePeriodSeconds 0 (its processes are killed) until
/// the finalizer is removed.
#[test]
fn n4_finalizer_keeps_a_force_deleted_pod_until_removed() {
    let c = Cluster::up();
    let m = marker("n4");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: held, finalizers: [example.com/hold]}}
spec:
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "sleep 1000 & wait", "{m}"]
"#
    ));
    c.wait_pod_ready("held", START);
    c.kubectl_ok(&[
        "delete",
        "pod",
        "held",
        "--grace-period=0",
        "--force",
        "--wait=false",
    ]);
    c.wait_for("processes killed", Duration::from_secs(10), || {
        find_pids(&m).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let v = c
        .pod_field(
            "held",
            "{.metadata.deletionGracePeriodSeconds} {.metadata.finalizers[0]}",
        )
        .expect("object kept by its finalizer");
    assert_eq!(v, "0 example.com/hold");
    assert!(
        !c.pod_field("held", "{.metadata.deletionTimestamp}")
            .unwrap_or_default()
            .is_empty()
    );
    c.kubectl_ok(&[
        "patch",
        "pod",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    c.wait_for("pod gone", Duration::from_secs(10), || {
        !c.pod_exists("held")
    });
}

/// N5: a SIGTERM-honouring app (`trap "exit 0" TERM`) deleted with grace 30 exits 0 at
/// once, and phase Succeeded is written before DELETED.
#[test]
fn n5_term_honouring_app_ends_succeeded_before_deleted() {
    let c = Cluster::up();
    let w = Recorder::start(&c, "fieldSelector=metadata.name%3Dgraceful");
    let m = marker("n5");
    c.apply(&shell_pod(
        "graceful",
        "app: n5",
        30,
        "Always",
        "trap 'exit 0' TERM; sleep 600 & wait",
        &m,
    ));
    c.wait_pod_ready("graceful", START);
    let t0 = Instant::now();
    c.kubectl_ok(&["delete", "pod", "graceful", "--grace-period=30"]);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    w.wait_deleted(&c, "graceful", Duration::from_secs(10));
    let evs = w.of("graceful");
    let before = &evs[evs.len() - 2].1;
    assert_eq!(before["status"]["phase"], "Succeeded", "{before}");
    let t = &before["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 0, "{before}");
    assert_eq!(t["reason"], "Completed", "{before}");
    let ready = before["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "PodCompleted");
    assert!(find_pids(&m).is_empty());
}

/// N6: an app that ignores SIGTERM, deleted with grace 5: killed about 5 s after the
/// delete, exit 137, phase Failed before DELETED.
#[test]
fn n6_term_ignoring_app_is_killed_at_the_deadline_and_ends_failed() {
    let c = Cluster::up();
    let w = Recorder::start(&c, "fieldSelector=metadata.name%3Dstubborn");
    let m = marker("n6");
    c.apply(&shell_pod(
        "stubborn",
        "app: n6",
        30,
        "Always",
        "trap '' TERM; sleep 600",
        &m,
    ));
    c.wait_pod_ready("stubborn", START);
    let pid = wait_one_pid(&m, START);
    let t0 = Instant::now();
    c.kubectl_ok(&[
        "delete",
        "pod",
        "stubborn",
        "--grace-period=5",
        "--wait=false",
    ]);
    let died = wait_dead(pid, Duration::from_secs(20)).duration_since(t0);
    assert!(
        died >= Duration::from_millis(4500) && died < Duration::from_secs(9),
        "killed {died:?} after the delete, expected about 5 s"
    );
    w.wait_deleted(&c, "stubborn", Duration::from_secs(20));
    let evs = w.of("stubborn");
    let before = &evs[evs.len() - 2].1;
    assert_eq!(before["status"]["phase"], "Failed", "{before}");
    let t = &before["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 137, "{before}");
    assert_eq!(t["reason"], "Error", "{before}");
    let ready = before["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["reason"], "PodFailed");
}

/// N7: preStop `sleep 1000` with TGPS 10: SIGTERM at about 10 s (the hook used the whole
/// grace period), SIGKILL at about 12 s (the 2 s floor).
#[test]
fn n7_endless_prestop_gets_the_grace_then_term_then_kill_two_seconds_later() {
    let c = Cluster::up();
    let m = marker("n7");
    let trace = c.dir.path().join("n7.trace");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 10
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "trap 'echo TERM >> {t}' TERM; while true; do sleep 0.1; done", "{m}"]
    lifecycle:
      preStop:
        exec:
          command: ["sleep", "1000"]
"#,
        t = trace.display()
    ));
    c.wait_pod_ready("hooked", START);
    let pid = wait_one_pid(&m, START);
    let t0 = Instant::now();
    c.kubectl_ok(&["delete", "pod", "hooked", "--wait=false"]);
    c.wait_for("SIGTERM", Duration::from_secs(30), || trace.exists());
    let term = t0.elapsed();
    let died = wait_dead(pid, Duration::from_secs(30)).duration_since(t0);
    assert!(
        term >= Duration::from_millis(9500) && term < Duration::from_secs(14),
        "SIGTERM {term:?} after the delete, expected about 10 s"
    );
    let gap = died.saturating_sub(term);
    assert!(
        gap >= Duration::from_millis(1500) && gap < Duration::from_secs(5),
        "SIGKILL {gap:?} after SIGTERM, expected about 2 s"
    );
    c.wait_for("pod gone", Duration::from_secs(20), || {
        !c.pod_exists("hooked")
    });
}

/// N12 (one node): a pod requesting more CPU than the node has stays Pending with
/// PodScheduled=False/Unschedulable, the FitError message and a FailedScheduling event.
#[test]
fn n12_pod_requesting_too_much_cpu_is_unschedulable() {
    let c = Cluster::up();
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sleep", "100"]
    resources: {requests: {cpu: "100000"}}
"#,
    );
    let path = "{.status.conditions[?(@.type==\"PodScheduled\")].status} {.status.conditions[?(@.type==\"PodScheduled\")].reason}";
    c.wait_for("Unschedulable", START, || {
        c.pod_field("huge", path).as_deref() == Some("False Unschedulable")
    });
    let msg = c
        .pod_field(
            "huge",
            "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        )
        .unwrap_or_default();
    assert!(
        msg.starts_with("0/1 nodes are available: 1 Insufficient cpu."),
        "{msg}"
    );
    c.wait_for("FailedScheduling event", START, || {
        c.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=huge,reason=FailedScheduling",
            "-o",
            "jsonpath={.items[*].type}",
        ])
        .contains("Warning")
    });
    let row = c.kubectl_ok(&["get", "pod", "huge", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["0/1", "Pending"], "{row}");
    assert_eq!(c.pod_field("huge", "{.spec.nodeName}").as_deref(), Some(""));
}

// ---------------------------------------------------------------------------------------
// Everyday kubectl around these cases
// ---------------------------------------------------------------------------------------

/// port-forward to a missing pod answers a clear Status (no hang, no bare 404); `run -i
/// --rm` prints the output and deletes the pod; a sleep hook longer than the grace period
/// is rejected as upstream validation does. (`kubectl top` is served: e2e_autoscaling.rs.)
#[test]
fn kubectl_streaming_commands_fail_clearly_and_sleep_hooks_are_validated() {
    let c = Cluster::up();
    let m = marker("stream");
    c.apply(&shell_pod(
        "web",
        "app: web",
        2,
        "Always",
        "sleep 1000 & wait",
        &m,
    ));
    c.wait_pod_ready("web", START);
    let fails = |args: &[&str], want: &str| {
        let t0 = Instant::now();
        let out = c.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} succeeded");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "kubectl {args:?} hung"
        );
        let err = text(&out.stderr);
        assert!(err.contains(want), "kubectl {args:?}: {err}");
    };
    // exec and attach work (e2e_exec.rs), port-forward too (e2e_network.rs); to a pod
    // that does not exist it fails at once.
    fails(
        &["port-forward", "pod/nope", &format!("{}:80", free_port())],
        "Error from server (NotFound): pods \"nope\" not found",
    );
    fails(
        &["exec", "nope", "--", "true"],
        "Error from server (NotFound): pods \"nope\" not found",
    );
    // No logs before the container runs (here: its postStart hook still runs).
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  terminationGracePeriodSeconds: 1
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo started; sleep 1000"]
    lifecycle:
      postStart:
        exec: {command: ["sleep", "1000"]}
"#,
    );
    c.wait_for("slow waiting", START, || {
        c.pod_field(
            "slow",
            "{.status.containerStatuses[0].state.waiting.reason}",
        )
        .as_deref()
            == Some("ContainerCreating")
    });
    fails(
        &["logs", "slow"],
        "Error from server (BadRequest): container \"main\" in pod \"slow\" is waiting to start: ContainerCreating",
    );
    let out = c.kubectl(&[
        "run",
        "once",
        "--rm",
        "-i",
        "--restart=Never",
        "--image=busybox",
        "--overrides",
        r#"{"apiVersion":"v1","spec":{"runtimeClassName":"host"}}"#,
        "--command",
        "--",
        "echo",
        "hi-there",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("hi-there\n"),
        "{}",
        text(&out.stdout)
    );
    assert!(!c.pod_exists("once"));

    let p = file(
        &c,
        "toolong.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: toolong}
spec:
  terminationGracePeriodSeconds: 10
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sleep", "100"]
    lifecycle:
      preStop:
        sleep: {seconds: 1000}
"#,
    );
    fails(
        &["apply", "-f", &p],
        "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 1000: must be non-negative and less than terminationGracePeriodSeconds (10)",
    );
}
