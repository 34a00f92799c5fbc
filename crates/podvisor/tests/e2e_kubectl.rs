//! Acceptance tests: the user-visible behaviour of `podvisor up`, driven only through the real
//! `kubectl` (issues 3, 4, 5, 6, 8, 10; spec k8s-pod-lifecycle.md §1, §2, §4, §8, §10 and
//! kubectl-wire.md). Each test starts its own cluster and asserts exit codes and output as a
//! user would read them.

#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(30);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs kubectl expecting failure; returns stderr.
fn kubectl_err(c: &Cluster, args: &[&str]) -> String {
    let out: Output = c.kubectl(args);
    assert!(
        !out.status.success(),
        "kubectl {args:?} unexpectedly succeeded: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// Writes a manifest into the cluster's temp dir and returns its path.
fn manifest(c: &Cluster, name: &str, body: &str) -> String {
    let p = c.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&p, body).expect("write manifest");
    p.display().to_string()
}

/// `kubectl run` overrides that run the pod's commands on the host filesystem.
const HOST_MODE: &str = r#"{"apiVersion":"v1","spec":{"runtimeClassName":"host"}}"#;

/// `kubectl run <name> --image=x <flags> --command -- sh -c <script>`; it must succeed.
fn run_sh(c: &Cluster, name: &str, flags: &[&str], script: &str) {
    let mut args = vec!["run", name, "--image=x", "--overrides", HOST_MODE];
    args.extend_from_slice(flags);
    args.extend(["--command", "--", "sh", "-c", script]);
    c.kubectl_ok(&args);
}

fn sleeper(name: &str, labels: &str, marker: &str) -> String {
    pods::shell_pod(name, "sleep 1000 & wait", marker)
        .labels(labels)
        .grace(5)
        .yaml()
}

#[test]
fn version_api_resources_node_and_events_columns() {
    let _g = serial();
    let c = Cluster::up();
    let v = c.kubectl_ok(&["version"]);
    // kubectl follows the server's minor version: the server reports 1.33.
    assert!(v.contains("Client Version: v1.33"), "{v}");
    assert!(v.contains("Server Version: v1.33.1-podvisor"), "{v}");
    let r = c.kubectl_ok(&["api-resources"]);
    assert!(r.lines().next().unwrap_or("").contains("SHORTNAMES"), "{r}");
    assert!(
        r.lines().any(
            |l| l.split_whitespace().collect::<Vec<_>>() == ["pods", "po", "v1", "true", "Pod"]
        ),
        "{r}"
    );
    let n = c.kubectl_ok(&["get", "nodes", "-o", "wide"]);
    let head: Vec<&str> = n.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        &head[..6],
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    );
    let row = n
        .lines()
        .find(|l| l.starts_with(&c.node))
        .expect("node row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "Ready", "{n}");
    assert_eq!(cols[2], "<none>", "{n}");

    let m = marker("ev");
    c.apply(&sleeper("ev", "app: ev", &m));
    c.wait_pod_ready("ev", LONG);
    c.wait_for("Started event", LONG, || {
        c.kubectl_ok(&["get", "events"]).contains("Started")
    });
    let e = c.kubectl_ok(&["get", "events"]);
    let head: Vec<&str> = e.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        head,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{e}"
    );
    assert!(e.contains("Scheduled") && e.contains("pod/ev"), "{e}");
    assert!(e.contains("Successfully assigned default/ev to"), "{e}");
}

#[test]
fn get_output_formats_and_selectors() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("fmt");
    c.apply(&sleeper("fmt-a", "app: a, tier: web", &m));
    c.apply(&sleeper("fmt-b", "app: b", &m));
    c.wait_pod_ready("fmt-a", LONG);
    c.wait_pod_ready("fmt-b", LONG);

    let w = c.kubectl_ok(&["get", "pods", "-o", "wide"]);
    let head: Vec<&str> = w.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        head,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{w}"
    );
    let row = w.lines().find(|l| l.starts_with("fmt-a")).expect("row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["1/1", "Running", "0"], "{w}");
    assert_eq!(cols[6], c.node, "{w}");

    let y = c.kubectl_ok(&["get", "pod", "fmt-a", "-o", "yaml"]);
    assert!(
        y.contains("kind: Pod") && y.contains("phase: Running"),
        "{y}"
    );
    let j = c.kubectl_ok(&["get", "pod", "fmt-a", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&j).expect("json");
    assert_eq!(v["metadata"]["labels"]["tier"], "web");
    assert_eq!(v["spec"]["nodeName"], c.node.as_str());
    assert_eq!(v["spec"]["restartPolicy"], "Always");

    let names = c.kubectl_ok(&["get", "pods", "-o", "name"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["pod/fmt-a", "pod/fmt-b"]
    );
    let l = c.kubectl_ok(&["get", "pods", "--show-labels"]);
    assert!(l.lines().next().unwrap_or("").ends_with("LABELS"), "{l}");
    assert!(l.contains("app=a,tier=web"), "{l}");
    let a = c.kubectl_ok(&["get", "pods", "-A"]);
    assert!(a.starts_with("NAMESPACE"), "{a}");
    assert!(
        a.lines()
            .any(|l| l.starts_with("default") && l.contains("fmt-b")),
        "{a}"
    );
    assert_eq!(
        c.kubectl_ok(&["get", "pods", "-l", "app=a", "-o", "name"])
            .trim(),
        "pod/fmt-a"
    );
    assert_eq!(
        c.kubectl_ok(&["get", "pods", "-l", "app!=a", "-o", "name"])
            .trim(),
        "pod/fmt-b"
    );
    assert_eq!(
        c.kubectl_ok(&["get", "pods", "-l", "app in (a,b),tier", "-o", "name"])
            .trim(),
        "pod/fmt-a"
    );
    let out = c.kubectl(&["get", "pods", "-l", "app=zzz"]);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("No resources found in default namespace."));
    assert_eq!(
        c.kubectl_ok(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name"
        ])
        .lines()
        .count(),
        2
    );
    assert_eq!(
        c.kubectl_ok(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Succeeded",
            "-o",
            "name"
        ])
        .trim(),
        ""
    );
}

#[test]
fn apply_create_and_server_side_apply() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("ap");
    let p = manifest(&c, "ap", &sleeper("ap", "app: one", &m));
    assert_eq!(c.kubectl_ok(&["apply", "-f", &p]).trim(), "pod/ap created");
    assert_eq!(
        c.kubectl_ok(&["apply", "-f", &p]).trim(),
        "pod/ap unchanged"
    );
    let p2 = manifest(&c, "ap2", &sleeper("ap", "app: two", &m));
    assert_eq!(
        c.kubectl_ok(&["apply", "-f", &p2]).trim(),
        "pod/ap configured"
    );
    assert_eq!(
        c.pod_field("ap", "{.metadata.labels.app}").as_deref(),
        Some("two")
    );
    // create -f of an existing object: AlreadyExists.
    let e = kubectl_err(&c, &["create", "-f", &p]);
    assert!(
        e.contains("(AlreadyExists)") && e.contains("pods \"ap\" already exists"),
        "{e}"
    );

    // Server-side apply after client-side apply (kubectl migrates the managed fields).
    let out = c.kubectl(&["apply", "--server-side", "-f", &p2]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "pod/ap serverside-applied");
    assert!(
        !text(&out.stderr).contains("failed to re-apply"),
        "SSA migration warning: {}",
        text(&out.stderr)
    );
    let out = c.kubectl(&["apply", "--server-side", "-f", &p2]);
    assert!(out.status.success(), "second SSA: {}", text(&out.stderr));
    let p3 = manifest(&c, "ap3", &sleeper("ap", "app: three", &m));
    assert_eq!(
        c.kubectl_ok(&["apply", "--server-side", "-f", &p3]).trim(),
        "pod/ap serverside-applied"
    );
    assert_eq!(
        c.pod_field("ap", "{.metadata.labels.app}").as_deref(),
        Some("three")
    );
    // Server-side apply creating a pod.
    let p4 = manifest(&c, "ssa", &sleeper("ssa", "app: s", &m));
    assert_eq!(
        c.kubectl_ok(&["apply", "--server-side", "-f", &p4]).trim(),
        "pod/ssa serverside-applied"
    );
    c.wait_pod_ready("ssa", LONG);
    c.wait_pod_ready("ap", LONG);
}

#[test]
fn restart_policies_phases_statuses_and_backoff() {
    let _g = serial();
    let c = Cluster::up();
    run_sh(&c, "ok", &["--restart=Never"], "echo done");
    run_sh(&c, "bad", &["--restart=Never"], "exit 3");
    run_sh(&c, "onf", &["--restart=OnFailure"], "exit 0");
    let starts = c.dir.path().join("starts");
    let script = format!("date +%s.%N >> {}; echo attempt; exit 1", starts.display());
    run_sh(&c, "crash", &[], &script);
    c.wait_pod_phase("ok", "Succeeded", LONG);
    c.wait_pod_phase("bad", "Failed", LONG);
    c.wait_pod_phase("onf", "Succeeded", LONG);
    assert_eq!(
        c.pod_field(
            "bad",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        )
        .as_deref(),
        Some("3")
    );
    let g = c.kubectl_ok(&["get", "pods"]);
    let status = |name: &str| -> Vec<String> {
        g.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    assert_eq!(status("ok")[1..4], ["0/1", "Completed", "0"], "{g}");
    assert_eq!(status("bad")[1..4], ["0/1", "Error", "0"], "{g}");
    assert_eq!(status("onf")[2], "Completed", "{g}");
    assert_eq!(c.kubectl_ok(&["logs", "ok"]), "done\n");

    // CrashLoopBackOff: immediate first restart, then 10 s, then 20 s.
    c.wait_for("three starts", Duration::from_secs(60), || {
        std::fs::read_to_string(&starts)
            .map(|s| s.lines().count() >= 4)
            .unwrap_or(false)
    });
    let times: Vec<f64> = std::fs::read_to_string(&starts)
        .expect("starts")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] < 5.0, "first restart is immediate: {gaps:?}");
    assert!(
        (8.0..16.0).contains(&gaps[1]),
        "second restart after ~10 s: {gaps:?}"
    );
    assert!(
        (18.0..28.0).contains(&gaps[2]),
        "third restart after ~20 s: {gaps:?}"
    );
    c.wait_for("CrashLoopBackOff", LONG, || {
        c.pod_field(
            "crash",
            "{.status.containerStatuses[0].state.waiting.reason}",
        )
        .as_deref()
            == Some("CrashLoopBackOff")
    });
    let g = c.kubectl_ok(&["get", "pod", "crash"]);
    assert!(g.contains("CrashLoopBackOff"), "{g}");
    let row: Vec<&str> = g.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert!(
        row[3].parse::<u32>().map(|n| n >= 3).unwrap_or(false),
        "{g}"
    );
    assert!(g.contains("ago)"), "RESTARTS shows the last restart: {g}");
    let d = c.kubectl_ok(&["describe", "pod", "crash"]);
    assert!(d.contains("Reason:       CrashLoopBackOff"), "{d}");
    assert!(d.contains("Last State:     Terminated"), "{d}");
    assert!(d.contains("Exit Code:    1"), "{d}");
    assert!(
        d.contains("Back-off restarting failed container crash in pod crash_default("),
        "{d}"
    );
    assert_eq!(c.kubectl_ok(&["logs", "crash", "--previous"]), "attempt\n");
    let e = kubectl_err(&c, &["logs", "ok", "--previous"]);
    assert!(e.contains("previous terminated container"), "{e}");
}

#[test]
fn logs_variants() {
    let _g = serial();
    let c = Cluster::up();
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: mc}
spec:
  terminationGracePeriodSeconds: 3
  runtimeClassName: host
  containers:
  - {name: one, image: x, command: ["sh","-c","echo from-one; echo l2; echo l3; sleep 1000"]}
  - {name: two, image: x, command: ["sh","-c","echo from-two; while true; do echo tick; sleep 0.3; done"]}
"#,
    );
    c.wait_pod_ready("mc", LONG);
    c.wait_for("logs", LONG, || {
        c.kubectl(&["logs", "mc"]).stdout.ends_with(b"l3\n")
    });
    let out = c.kubectl(&["logs", "mc"]);
    assert_eq!(text(&out.stdout), "from-one\nl2\nl3\n");
    assert!(text(&out.stderr).contains("Defaulted container \"one\" out of: one, two"));
    assert_eq!(
        c.kubectl_ok(&["logs", "mc", "-c", "one", "--tail=1"]),
        "l3\n"
    );
    let ts = c.kubectl_ok(&["logs", "mc", "-c", "one", "--timestamps"]);
    let first = ts.lines().next().unwrap_or("");
    let (stamp, line) = first.split_once(' ').expect("timestamp");
    assert_eq!(line, "from-one");
    assert!(
        stamp.ends_with('Z') && stamp.contains('T') && stamp.len() >= 20,
        "{ts}"
    );
    assert!(
        c.kubectl_ok(&["logs", "mc", "-c", "two"])
            .starts_with("from-two\n")
    );
    let e = kubectl_err(&c, &["logs", "mc", "-c", "nope"]);
    assert!(e.contains("nope"), "{e}");
    // -f streams new lines.
    let mut f = c.kubectl_spawn(&["logs", "-f", "mc", "-c", "two", "--tail=1"]);
    let mut lines = BufReader::new(f.stdout.take().expect("stdout")).lines();
    let mut ticks = 0;
    let started = Instant::now();
    while ticks < 4 && started.elapsed() < LONG {
        match lines.next() {
            Some(Ok(l)) if l == "tick" => ticks += 1,
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    let _ = f.kill();
    let _ = f.wait();
    assert_eq!(ticks, 4, "logs -f follows");
}

#[test]
fn env_args_working_dir_label_and_annotate() {
    let _g = serial();
    let c = Cluster::up();
    let wd = c.dir.path().display().to_string();
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: env}}
spec:
  restartPolicy: Never
  runtimeClassName: host
  containers:
  - name: main
    image: x
    command: ["sh", "-c"]
    args: ["echo $FOO $BAR; pwd; echo $0", "argzero"]
    workingDir: {wd}
    env: [{{name: FOO, value: foo}}, {{name: BAR, value: "$(FOO)-bar"}}]
"#
    ));
    c.wait_pod_phase("env", "Succeeded", LONG);
    assert_eq!(
        c.kubectl_ok(&["logs", "env"]),
        format!("foo foo-bar\n{wd}\nargzero\n")
    );

    assert_eq!(
        c.kubectl_ok(&["label", "pod", "env", "tier=x"]).trim(),
        "pod/env labeled"
    );
    let e = kubectl_err(&c, &["label", "pod", "env", "tier=y"]);
    assert!(
        e.contains("'tier' already has a value (x), and --overwrite is false"),
        "{e}"
    );
    c.kubectl_ok(&["label", "pod", "env", "tier=y", "--overwrite"]);
    assert_eq!(
        c.pod_field("env", "{.metadata.labels.tier}").as_deref(),
        Some("y")
    );
    assert_eq!(
        c.kubectl_ok(&["label", "pod", "env", "tier-"]).trim(),
        "pod/env unlabeled"
    );
    assert!(
        !c.pod_field("env", "{.metadata.labels}")
            .unwrap_or_default()
            .contains("tier")
    );
    assert_eq!(
        c.kubectl_ok(&["annotate", "pod", "env", "note=hello"])
            .trim(),
        "pod/env annotated"
    );
    assert_eq!(
        c.pod_field("env", "{.metadata.annotations.note}")
            .as_deref(),
        Some("hello")
    );
    kubectl_err(&c, &["annotate", "pod", "env", "note=again"]);
    c.kubectl_ok(&["annotate", "pod", "env", "note=again", "--overwrite"]);
    assert_eq!(
        c.pod_field("env", "{.metadata.annotations.note}")
            .as_deref(),
        Some("again")
    );
    c.kubectl_ok(&["annotate", "pod", "env", "note-"]);
    assert_eq!(
        c.pod_field("env", "{.metadata.annotations.note}")
            .as_deref(),
        Some("")
    );
}

#[test]
fn delete_variants_wait_and_watch_terminating() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("del");
    for (n, l) in [
        ("d1", "grp: gx"),
        ("d2", "grp: gx"),
        ("d3", "grp: gy"),
        ("d4", "grp: gz"),
        ("d5", "grp: gz"),
    ] {
        c.apply(&sleeper(n, l, &m));
    }
    for n in ["d1", "d2", "d3", "d4", "d5"] {
        c.wait_pod_ready(n, LONG);
    }
    assert_eq!(find_pids(&m).len(), 5, "one marked shell per pod");
    c.kubectl_ok(&["wait", "--for=condition=Ready", "pod/d1", "--timeout=10s"]);
    c.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Running",
        "pod/d1",
        "--timeout=10s",
    ]);

    let mut watch = c.kubectl_spawn(&["get", "pods", "d1", "-w", "--output-watch-events"]);
    std::thread::sleep(Duration::from_millis(700));
    let out = c.kubectl_ok(&["delete", "pod", "d1", "--grace-period=3"]);
    assert_eq!(out.trim(), "pod \"d1\" deleted");
    assert!(!c.pod_exists("d1"), "delete waits for the pod to be gone");
    let mut seen = Vec::new();
    for line in BufReader::new(watch.stdout.take().expect("stdout")).lines() {
        let Ok(line) = line else { break };
        let done = line.starts_with("DELETED");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("MODIFIED") && l.contains("Terminating")),
        "{seen:?}"
    );
    assert!(
        seen.last().is_some_and(|l| l.starts_with("DELETED")),
        "{seen:?}"
    );

    let out = c.kubectl(&["delete", "pod", "d2", "--force", "--grace-period=0"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("pod \"d2\" force deleted"));
    assert!(text(&out.stderr).contains("Immediate deletion does not wait"));
    assert!(!c.pod_exists("d2"));

    assert_eq!(
        c.kubectl_ok(&["delete", "pod", "nosuch", "--ignore-not-found"])
            .trim(),
        ""
    );
    let e = kubectl_err(&c, &["delete", "pod", "nosuch"]);
    assert!(
        e.contains("(NotFound)") && e.contains("pods \"nosuch\" not found"),
        "{e}"
    );

    let out = c.kubectl_ok(&["delete", "pods", "-l", "grp=gy", "--wait"]);
    assert_eq!(out.trim(), "pod \"d3\" deleted");
    let mut w = c.kubectl_spawn(&["wait", "--for=delete", "pod/d4", "--timeout=30s"]);
    std::thread::sleep(Duration::from_millis(500));
    let out = c.kubectl_ok(&["delete", "pods", "--all"]);
    assert!(
        out.contains("pod \"d4\" deleted") && out.contains("pod \"d5\" deleted"),
        "{out}"
    );
    let status = w.wait().expect("wait");
    assert!(status.success(), "kubectl wait --for=delete");
    assert_eq!(c.kubectl_ok(&["get", "pods", "-o", "name"]).trim(), "");
    c.wait_for("all container processes gone", LONG, || {
        find_pids(&m).is_empty()
    });
}

#[test]
fn errors_immutability_conflict_and_generate_name() {
    let _g = serial();
    let c = Cluster::up();
    let bad = manifest(
        &c,
        "bad",
        r#"apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  runtimeClassName: host
  containers:
  - {name: Bad_Name, image: ""}
"#,
    );
    let e = kubectl_err(&c, &["apply", "-f", &bad]);
    assert!(e.contains("The Pod \"bad\" is invalid"), "{e}");
    assert!(
        e.contains("spec.containers[0].name: Invalid value: \"Bad_Name\""),
        "{e}"
    );
    assert!(
        e.contains("spec.containers[0].image: Required value"),
        "{e}"
    );
    let e = kubectl_err(&c, &["run", "x", "-n", "nosuch", "--image=x"]);
    assert!(
        e.contains("(NotFound)") && e.contains("namespaces \"nosuch\" not found"),
        "{e}"
    );

    let m = marker("imm");
    c.apply(&sleeper("imm", "app: i", &m));
    c.wait_pod_ready("imm", LONG);
    let e = kubectl_err(
        &c,
        &[
            "patch",
            "pod",
            "imm",
            "-p",
            r#"{"spec":{"containers":[{"name":"main","command":["true"]}]}}"#,
        ],
    );
    assert!(
        e.contains("pod updates may not change fields other than"),
        "{e}"
    );
    // image may change
    c.kubectl_ok(&[
        "patch",
        "pod",
        "imm",
        "-p",
        r#"{"spec":{"containers":[{"name":"main","image":"busybox:2"}]}}"#,
    ]);

    // A stale resourceVersion: replace conflicts.
    let stale = c.kubectl_ok(&["get", "pod", "imm", "-o", "yaml"]);
    let stale = manifest(&c, "stale", &stale);
    c.kubectl_ok(&["label", "pod", "imm", "z=1"]);
    let e = kubectl_err(&c, &["replace", "-f", &stale]);
    assert!(
        e.contains("(Conflict)") && e.contains("the object has been modified"),
        "{e}"
    );

    let gen_path = manifest(
        &c,
        "gen",
        r#"apiVersion: v1
kind: Pod
metadata: {generateName: gen-}
spec:
  restartPolicy: Never
  runtimeClassName: host
  containers: [{name: m, image: x, command: ["true"]}]
"#,
    );
    let a = c.kubectl_ok(&["create", "-f", &gen_path]);
    let b = c.kubectl_ok(&["create", "-f", &gen_path]);
    for out in [&a, &b] {
        assert!(
            out.starts_with("pod/gen-") && out.trim().ends_with(" created"),
            "{out}"
        );
        assert_eq!(out.trim().len(), "pod/gen-xxxxx created".len(), "{out}");
    }
    assert_ne!(a, b);
}

#[test]
fn other_kinds_and_namespace_deletion_ends_pods() {
    let _g = serial();
    let c = Cluster::up();
    assert_eq!(
        c.kubectl_ok(&["create", "namespace", "ns1"]).trim(),
        "namespace/ns1 created"
    );
    assert_eq!(
        c.kubectl_ok(&["create", "configmap", "cm1", "--from-literal=a=b"])
            .trim(),
        "configmap/cm1 created"
    );
    assert_eq!(
        c.kubectl_ok(&["create", "secret", "generic", "s1", "--from-literal=a=b"])
            .trim(),
        "secret/s1 created"
    );
    assert_eq!(
        c.kubectl_ok(&["get", "secret", "s1", "-o", "jsonpath={.data.a}"]),
        "Yg=="
    );
    assert_eq!(
        c.kubectl_ok(&[
            "create",
            "deployment",
            "dep",
            "--image=x",
            "--",
            "sleep",
            "1000"
        ])
        .trim(),
        "deployment.apps/dep created"
    );
    assert_eq!(
        c.kubectl_ok(&["expose", "deployment", "dep", "--port=80"])
            .trim(),
        "service/dep exposed"
    );
    let s = c.kubectl_ok(&[
        "get",
        "svc",
        "dep",
        "-o",
        "jsonpath={.spec.selector.app} {.spec.ports[0].port}",
    ]);
    assert_eq!(s, "dep 80");

    let m = marker("ns");
    let script = format!("sleep 1000 & wait # {m}");
    run_sh(&c, "p", &["-n", "ns1"], &script);
    c.wait_for("pod running in ns1", LONG, || {
        c.kubectl_ok(&[
            "get",
            "pod",
            "p",
            "-n",
            "ns1",
            "-o",
            "jsonpath={.status.phase}",
        ]) == "Running"
    });
    assert!(!find_pids(&m).is_empty());
    let out = c.kubectl_ok(&["delete", "namespace", "ns1", "--timeout=60s"]);
    assert_eq!(out.trim(), "namespace \"ns1\" deleted");
    let e = kubectl_err(&c, &["get", "namespace", "ns1"]);
    assert!(e.contains("(NotFound)"), "{e}");
    c.wait_for("ns1 pod processes gone", LONG, || find_pids(&m).is_empty());
}
