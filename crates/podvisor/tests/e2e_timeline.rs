//! The pod flight recorder through the real kubectl (issue 19, docs/design/0008-timeline.md):
//! `kubectl get timeline <pod>` shows every step of a pod with a readiness probe, a restart
//! and a graceful delete of a SIGTERM-ignoring process, in order, with SIGKILL at the
//! deadline; the timeline is still served after the pod object is gone, and pruned once the
//! retention (`--timeline-retention`) has passed.

#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::pods::shell_pod;
use common::*;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

const START: Duration = Duration::from_secs(60);
/// The retention the cluster runs with: short, so that pruning is seen within the test.
const RETENTION_SECS: u64 = 20;

fn micros(t: &str) -> i64 {
    t.parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("time {t:?}: {e}"))
        .as_microsecond()
}

/// The entries of the timeline of pod `name`, fetched by the pod's name.
fn timeline(c: &Cluster, name: &str) -> Value {
    let out = c.kubectl_ok(&["get", "timeline", name, "-o", "json"]);
    serde_json::from_str(&out).expect("timeline json")
}

fn entries(t: &Value) -> Vec<Value> {
    t["entries"].as_array().cloned().unwrap_or_default()
}

/// The index of the first entry at or after `from` with `step` (and, when given, this
/// detail value), or a panic that shows the whole timeline.
fn find(es: &[Value], from: usize, step: &str, detail: Option<(&str, &str)>) -> usize {
    es.iter()
        .enumerate()
        .skip(from)
        .find(|(_, e)| {
            e["step"] == step && detail.is_none_or(|(k, v)| e["details"][k].as_str() == Some(v))
        })
        .map(|(i, _)| i)
        .unwrap_or_else(|| {
            let lines: Vec<String> = es
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {} {}",
                        e["time"], e["component"], e["step"], e["details"]
                    )
                })
                .collect();
            panic!(
                "no {step} {detail:?} at or after entry {from} in:\n{}",
                lines.join("\n")
            )
        })
}

#[test]
fn timeline_shows_every_step_in_order_and_outlives_the_pod() {
    let _serial = serial();
    let dir = scratch_dir("podvisor-e2e");
    let c = Cluster::up_with(
        dir,
        &[
            "--timeline-retention".into(),
            format!("{RETENTION_SECS}s"),
            "--max-container-restart-period".into(),
            "1s".into(),
        ],
    );
    let m = marker("timeline");
    let state = c.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let state = state.display().to_string();
    // first run: exit 3 (one restart); second: ignore SIGTERM (PID 1 of its pid namespace)
    let script = format!(
        "if [ ! -f {state}/ran ]; then touch {state}/ran; exit 3; fi; \
         touch {state}/ready; trap '' TERM; while true; do sleep 0.2; done"
    );
    let pod = shell_pod("web", &script, &m).grace(3).container_yaml(&format!(
        "    readinessProbe:\n      exec: {{command: [\"test\", \"-f\", \"{state}/ready\"]}}\n      \
         periodSeconds: 1\n    lifecycle:\n      preStop:\n        exec: {{command: [\"sleep\", \"1\"]}}\n"
    ));
    c.apply(&pod.yaml());
    c.wait_pod_ready("web", START);
    let uid = c.pod_field("web", "{.metadata.uid}").expect("uid");

    // the table: one row per step, times relative to the first (the agent's batch of the
    // start is written within a second)
    let mut table = String::new();
    c.wait_for("the start in the timeline", Duration::from_secs(10), || {
        // not found until the first batch is written
        let out = c.kubectl(&["get", "timeline", "web"]);
        table = String::from_utf8_lossy(&out.stdout).into_owned();
        table.contains("ready=True")
    });
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "TIME",
        "COMPONENT",
        "STEP",
        "CONTAINER",
        "DETAILS",
        "MESSAGE",
    ] {
        assert!(header.contains(col), "{table}");
    }
    assert!(table.contains("+0.000000s"), "{table}");
    assert!(table.contains("ContainerStarted"), "{table}");
    // by UID too, and in the list
    let by_uid = timeline(&c, &uid);
    assert_eq!(by_uid["metadata"]["name"], uid.as_str());
    let list = c.kubectl_ok(&["get", "timelines"]);
    assert!(list.contains("web") && list.contains(&uid), "{list}");

    let t0 = Instant::now();
    c.kubectl_ok(&["delete", "pod", "web", "--grace-period=3", "--wait=false"]);
    c.wait_for("pod web gone", Duration::from_secs(30), || {
        !c.pod_exists("web")
    });
    let gone = Instant::now();
    eprintln!("deleted in {:?}", gone - t0);

    // still served by the pod's name after the object is gone; wait for the last batch
    let mut t = timeline(&c, "web");
    c.wait_for("the Removed step", Duration::from_secs(10), || {
        t = timeline(&c, "web");
        entries(&t).iter().any(|e| e["step"] == "Removed")
    });
    let yaml = c.kubectl_ok(&["get", "timeline", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Timeline") && yaml.contains("apiVersion: timelines.podvisor.io/v1"),
        "{yaml}"
    );
    let es = entries(&t);
    // times are microseconds, in order
    let times: Vec<i64> = es
        .iter()
        .map(|e| micros(e["time"].as_str().unwrap_or_default()))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {times:?}"
    );
    assert!(
        es.iter()
            .all(|e| e["time"].as_str().is_some_and(|s| s.len() == 27)),
        "microsecond times expected: {es:?}"
    );

    // every step, in order
    let created = find(&es, 0, "Created", None);
    assert_eq!(es[created]["component"], "kube-apiserver");
    assert!(es[created]["details"]["user"].is_string());
    let bound = find(&es, created, "Bound", Some(("node", "e2e-node")));
    let scheduled = find(&es, created, "Scheduled", None);
    assert_eq!(es[scheduled]["component"], "default-scheduler");
    let created1 = find(&es, bound, "ContainerCreated", None);
    let started1 = find(&es, created1, "ContainerStarted", None);
    assert_eq!(es[started1]["component"], "kubelet");
    assert_eq!(es[started1]["container"], "main");
    let exited1 = find(&es, started1, "ContainerExited", Some(("exitCode", "3")));
    let started2 = find(&es, exited1 + 1, "ContainerStarted", None);
    let probe = find(&es, started2, "ProbeResult", Some(("result", "Success")));
    assert_eq!(es[probe]["details"]["probe"], "readiness");
    let ready = find(&es, probe, "ReadyChanged", Some(("ready", "True")));
    let delete = find(&es, ready, "DeleteRequested", Some(("grace", "3")));
    let killing = find(&es, delete, "Killing", None);
    let pre_start = find(&es, killing, "PreStopStarted", None);
    let pre_end = find(
        &es,
        pre_start,
        "PreStopFinished",
        Some(("outcome", "completed")),
    );
    let signal = find(&es, pre_end, "StopSignal", Some(("signal", "SIGTERM")));
    assert!(es[signal]["details"]["handled"].is_string());
    let killed = find(&es, signal, "Killed", None);
    let exited2 = find(&es, killed, "ContainerExited", Some(("exitCode", "137")));
    let removed = find(&es, exited2, "Removed", None);
    assert_eq!(es[removed]["component"], "kube-apiserver");
    // a status write was recorded
    find(&es, 0, "StatusWritten", None);

    // SIGKILL at the deadline: 3 s after the delete request, not early, at most 1 s late
    let late_ms: i64 = es[killed]["details"]["lateMs"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("lateMs");
    assert!(
        (0..1000).contains(&late_ms),
        "SIGKILL {late_ms} ms after the deadline"
    );
    let after_delete = times[killed] - times[delete];
    assert!(
        (2_900_000..4_500_000).contains(&after_delete),
        "SIGKILL {after_delete} µs after the delete request, expected about 3 s"
    );
    // the preStop took about its 1 s, and the signal came after it
    let pre_stop = times[pre_end] - times[pre_start];
    assert!(
        (900_000..2_000_000).contains(&pre_stop),
        "preStop took {pre_stop} µs"
    );

    // batched appends: far fewer store writes than entries
    let writes = t["writes"].as_u64().expect("writes");
    eprintln!(
        "timeline of one pod lifecycle: {} entries, {writes} store writes (debug build)",
        es.len()
    );
    assert!(
        writes < es.len() as u64,
        "{writes} writes for {} entries",
        es.len()
    );
    let list = c.kubectl_ok(&["get", "timelines"]);
    assert!(list.contains("web (removed)"), "{list}");

    // kept a while after the pod is gone, then pruned within the retention plus one period
    std::thread::sleep(Duration::from_secs(RETENTION_SECS / 2).saturating_sub(gone.elapsed()));
    assert!(c.kubectl(&["get", "timeline", "web"]).status.success());
    c.wait_for(
        "the timeline pruned",
        Duration::from_secs(RETENTION_SECS * 3),
        || {
            !c.kubectl(&["get", "timeline", uid.as_str()])
                .status
                .success()
        },
    );
    assert!(
        gone.elapsed() >= Duration::from_secs(RETENTION_SECS - 1),
        "pruned after {:?}, before the retention",
        gone.elapsed()
    );
}

#[test]
fn timelines_are_read_as_pods_are_and_nodes_write_only_their_pods() {
    let _serial = serial();
    let c = Cluster::up();
    c.apply(&shell_pod("a", "sleep 600", &marker("tl-rbac")).yaml());
    c.wait_pod_ready("a", START);
    c.wait_for("the timeline of a", Duration::from_secs(10), || {
        c.kubectl(&["get", "timeline", "a"]).status.success()
    });
    // discovery names the kind, read-only
    let resources = c.kubectl_ok(&[
        "api-resources",
        "--api-group=timelines.podvisor.io",
        "-o",
        "wide",
    ]);
    assert!(
        resources.contains("timelines") && resources.contains("Timeline"),
        "{resources}"
    );
    assert!(!resources.contains("create"), "{resources}");
    // RBAC: view may read timelines, not write them; a user without a role may not read
    let data = c.dir.path().join("data");
    let mut tokens = std::fs::read_to_string(data.join("tokens.csv")).expect("token file");
    tokens.push_str(
        "tl-viewer-token,viewer,uid-viewer,\"\"\ntl-nobody-token,nobody,uid-nobody,\"\"\n",
    );
    std::fs::write(data.join("tokens.csv"), tokens).expect("token file");
    c.kubectl_ok(&[
        "create",
        "rolebinding",
        "v",
        "--clusterrole=view",
        "--user=viewer",
    ]);
    let can = |verb: &str, token: &str| {
        c.kubectl(&[
            "auth",
            "can-i",
            verb,
            "timelines.timelines.podvisor.io",
            &format!("--token={token}"),
        ])
        .status
        .success()
    };
    assert!(can("list", "tl-viewer-token"));
    assert!(can("get", "tl-viewer-token"));
    assert!(can("watch", "tl-viewer-token"));
    assert!(!can("create", "tl-viewer-token"));
    assert!(!can("list", "tl-nobody-token"));
    // only the pod's own node may append to its timeline
    let uid = c.pod_field("a", "{.metadata.uid}").expect("uid");
    let node_token = |node: &str| steps::node_tokens(&data, node).0;
    let body = c.dir.path().join("entries.json");
    std::fs::write(
        &body,
        format!(
            r#"{{"apiVersion":"timelines.podvisor.io/v1","kind":"TimelineEntries",
            "pod":{{"namespace":"default","name":"a","uid":"{uid}"}},
            "entries":[{{"time":"2026-01-01T00:00:00.000000Z","component":"kubelet","step":"Event","details":{{"reason":"Test"}}}}]}}"#
        ),
    )
    .expect("write");
    let append = |token: &str| {
        c.kubectl(&[
            "create",
            "--raw",
            &format!("/apis/timelines.podvisor.io/v1/namespaces/default/timelines/{uid}/entries"),
            "-f",
            body.to_str().expect("utf8"),
            &format!("--token={token}"),
        ])
    };
    let other = append(&node_token("other-node"));
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    let own = append(&node_token("e2e-node"));
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    c.wait_for("the appended entry", Duration::from_secs(10), || {
        c.kubectl_ok(&["get", "timeline", "a", "-o", "json"])
            .contains("\"Test\"")
    });
    // users cannot create timelines through the collection
    let manifest = c.dir.path().join("tl.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: timelines.podvisor.io/v1\nkind: Timeline\nmetadata: {name: x}\n",
    )
    .expect("write");
    let out = c.kubectl(&["create", "-f", manifest.to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MethodNotAllowed")
            || String::from_utf8_lossy(&out.stderr).contains("not allow"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
