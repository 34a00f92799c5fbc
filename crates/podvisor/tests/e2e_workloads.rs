//! Acceptance tests of the workload controllers (issue 25), driven only through the real
//! `kubectl` against `podvisor up` with real processes: Jobs (`kubectl create job`, `kubectl
//! wait --for=condition=complete`, `kubectl logs job/x`, Indexed completion, the backoff
//! limit) and cascading deletion (`kubectl delete --cascade=orphan|foreground`). One cluster
//! serves every case.

#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::steps::sleeper_replica_set;
use common::*;

/// `kubectl create job <name> --image=x -- <cmd>` as kubectl builds it, with
/// `runtimeClassName: host` added so the command runs on the host filesystem.
fn create_job(c: &Cluster, name: &str, flags: &[&str], cmd: &[&str]) {
    let mut args = vec![
        "create",
        "job",
        name,
        "--image=x",
        "--dry-run=client",
        "-o",
        "json",
    ];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(cmd);
    let out = c.kubectl_ok(&args);
    let mut job: serde_json::Value = serde_json::from_str(&out).expect("job json");
    job["spec"]["template"]["spec"]["runtimeClassName"] = "host".into();
    let path = c.dir.path().join(format!("job-{name}.json"));
    std::fs::write(&path, job.to_string()).expect("write job");
    c.kubectl_ok(&["create", "-f", path.to_str().expect("utf8")]);
}

fn job_field(c: &Cluster, name: &str, path: &str) -> String {
    c.kubectl_ok(&["get", "job", name, "-o", &format!("jsonpath={path}")])
}

#[test]
fn workloads_through_kubectl() {
    let _g = serial();
    let c = Cluster::up();
    jobs_complete_fail_and_index_their_pods(&c);
    delete_cascades_orphan_and_foreground(&c);
}

fn delete_cascades_orphan_and_foreground(c: &Cluster) {
    let m = marker("cascade");
    c.apply(&sleeper_replica_set("orphans", 2, "", &m));
    c.apply(&sleeper_replica_set("fore", 2, "", &m));
    let running = |app: &str| {
        c.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "--field-selector=status.phase=Running",
            "-o",
            "name",
        ])
        .lines()
        .count()
    };
    c.wait_for("orphans running", Duration::from_secs(60), || {
        running("orphans") == 2
    });
    c.wait_for("fore running", Duration::from_secs(60), || {
        running("fore") == 2
    });

    // Orphan: the ReplicaSet goes, its pods keep running without an owner.
    let out = c.kubectl_ok(&["delete", "rs", "orphans", "--cascade=orphan"]);
    assert_eq!(out.trim(), "replicaset.apps \"orphans\" deleted");
    assert!(!c.kubectl(&["get", "rs", "orphans"]).status.success());
    assert_eq!(running("orphans"), 2);
    let owners = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=orphans",
        "-o",
        "jsonpath={.items[*].metadata.ownerReferences}",
    ]);
    assert_eq!(owners.trim(), "", "{owners}");

    // Foreground: kubectl waits until the pods are gone, then the ReplicaSet.
    let out = c.kubectl_ok(&["delete", "rs", "fore", "--cascade=foreground"]);
    assert_eq!(out.trim(), "replicaset.apps \"fore\" deleted");
    let left = c.kubectl_ok(&["get", "pods", "-l", "app=fore", "-o", "name"]);
    assert_eq!(
        left.trim(),
        "",
        "pods of a foreground deletion are gone first"
    );
    c.kubectl_ok(&["delete", "pods", "-l", "app=orphans", "--grace-period=1"]);
}

fn jobs_complete_fail_and_index_their_pods(c: &Cluster) {
    // A one-pod Job from `kubectl create job`.
    create_job(c, "hello", &[], &["sh", "-c", "echo hello from a job"]);
    let waited = c.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/hello",
        "--timeout=60s",
    ]);
    assert_eq!(waited.trim(), "job.batch/hello condition met");
    assert_eq!(
        c.kubectl_ok(&["logs", "job/hello"]).trim(),
        "hello from a job"
    );
    let row = c.kubectl_ok(&["get", "job", "hello", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..3], ["hello", "Complete", "1/1"], "{row}");
    assert_eq!(job_field(c, "hello", "{.status.succeeded}"), "1");
    assert_eq!(
        job_field(c, "hello", "{.status.conditions[*].type}"),
        "SuccessCriteriaMet Complete"
    );
    let pod_finalizers = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "job-name=hello",
        "-o",
        "jsonpath={.items[*].metadata.finalizers}",
    ]);
    assert_eq!(
        pod_finalizers.trim(),
        "",
        "the tracking finalizer is removed"
    );

    // An Indexed Job: every pod sees its index.
    c.apply(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: indexed
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      runtimeClassName: host
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX"]
"#,
    );
    c.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "--timeout=60s",
    ]);
    assert_eq!(job_field(c, "indexed", "{.status.completedIndexes}"), "0-2");
    let mut seen = Vec::new();
    for ix in 0..3 {
        let pods = c.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            &format!("batch.kubernetes.io/job-completion-index={ix},job-name=indexed"),
            "-o",
            "name",
        ]);
        let pod = pods.trim().to_string();
        assert!(pod.starts_with(&format!("pod/indexed-{ix}-")), "{pod}");
        seen.push(c.kubectl_ok(&["logs", &pod]).trim().to_string());
    }
    assert_eq!(seen, ["index=0", "index=1", "index=2"]);

    // A Job that always fails stops at its backoff limit.
    c.apply(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: giveup
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      runtimeClassName: host
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "exit 3"]
"#,
    );
    c.kubectl_ok(&[
        "wait",
        "--for=condition=failed",
        "job/giveup",
        "--timeout=60s",
    ]);
    assert_eq!(
        job_field(
            c,
            "giveup",
            "{.status.conditions[?(@.type==\"Failed\")].reason}"
        ),
        "BackoffLimitExceeded"
    );
    assert_eq!(
        job_field(
            c,
            "giveup",
            "{.status.conditions[?(@.type==\"Failed\")].message}"
        ),
        "Job has reached the specified backoff limit"
    );
    assert_eq!(job_field(c, "giveup", "{.status.failed}"), "1");
    let row = c.kubectl_ok(&["get", "job", "giveup", "--no-headers"]);
    assert!(row.split_whitespace().nth(1) == Some("Failed"), "{row}");
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=giveup",
    ]);
    assert!(events.contains("BackoffLimitExceeded"), "{events}");
    assert!(events.contains("SuccessfulCreate"), "{events}");
}
