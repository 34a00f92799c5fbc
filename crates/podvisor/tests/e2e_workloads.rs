//! Acceptance tests of the workload controllers (issue 25), driven only through the real
//! `kubectl` against `podvisor up` with real processes: Jobs (`kubectl create job`, `kubectl
//! wait --for=condition=complete`, `kubectl logs job/x`, Indexed completion, the backoff
//! limit), CronJobs (a scheduled run within its minute, `kubectl create job --from`) and
//! cascading deletion (`kubectl delete --cascade=orphan|foreground`), a DaemonSet on two
//! agents (`kubectl rollout status|history|undo ds/x`), `kubectl scale rc` and `kubectl
//! drain` blocked and then allowed by a PodDisruptionBudget, and a ResourceQuota (`kubectl
//! create quota`, refusals with upstream's messages, `kubectl describe quota`, usage given
//! back when a pod goes). One cluster serves every case
//! (the second agent joins it for the DaemonSet case only).

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

/// `kubectl get <kind> <name> -o jsonpath=<path>`.
fn field(c: &Cluster, kind: &str, name: &str, path: &str) -> String {
    c.kubectl_ok(&["get", kind, name, "-o", &format!("jsonpath={path}")])
}

/// The columns of `kubectl get <kind> <name> --no-headers`.
fn columns(c: &Cluster, kind: &str, name: &str) -> Vec<String> {
    c.kubectl_ok(&["get", kind, name, "--no-headers"])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn job_field(c: &Cluster, name: &str, path: &str) -> String {
    field(c, "job", name, path)
}

#[test]
fn workloads_through_kubectl() {
    let _g = serial();
    let c = Cluster::up();
    // The CronJob's first minute passes while the other cases run.
    create_cronjob(&c);
    jobs_complete_fail_and_index_their_pods(&c);
    delete_cascades_orphan_and_foreground(&c);
    daemonset_on_two_agents(&c);
    replication_controller_scales(&c);
    cronjob_fires_within_its_minute(&c);
    drain_waits_for_the_disruption_budget(&c);
    resource_quota_admits_counts_and_replenishes(&c);
}

const WAIT: Duration = Duration::from_secs(60);

/// Running pods with label `sel`, as `name node` lines.
fn running_pods(c: &Cluster, sel: &str) -> Vec<String> {
    c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        sel,
        "--field-selector=status.phase=Running",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// A DaemonSet on `podvisor up`'s node and a second agent: one pod on each, a template
/// change rolled out node by node, the history and an undo through kubectl.
fn daemonset_on_two_agents(c: &Cluster) {
    let data = c.dir.path().join("data");
    let mut agent = common::steps::start_agent("worker-2", 2, c.port, &data, c.dir.path());
    c.wait_for("worker-2 Ready", WAIT, || {
        c.kubectl(&[
            "get",
            "node",
            "worker-2",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])
        .stdout
            == b"True"
    });
    let m = marker("daemon");
    // The apps manifest of the test kit, without the replicas a DaemonSet does not have.
    let command = format!(r#"["sh", "-c", "sleep 1000 & wait", "{m}"]"#);
    c.apply(
        &common::steps::apps_manifest("DaemonSet", "beacon", 0, 1, "", &command)
            .replace("  replicas: 0\n", ""),
    );
    let out = c.kubectl_ok(&["rollout", "status", "ds/beacon", "--timeout=60s"]);
    assert!(
        out.ends_with("daemon set \"beacon\" successfully rolled out\n"),
        "{out}"
    );
    let mut nodes: Vec<String> = running_pods(c, "app=beacon")
        .iter()
        .filter_map(|l| l.split_once(' ').map(|(_, n)| n.to_string()))
        .collect();
    nodes.sort();
    let mut want = vec![c.node.clone(), "worker-2".to_string()];
    want.sort();
    assert_eq!(nodes, want, "one pod per node");
    let cols = columns(c, "ds", "beacon");
    assert_eq!(
        &cols[..7],
        ["beacon", "2", "2", "2", "2", "2", "<none>"],
        "{cols:?}"
    );

    // A new template rolls out node by node; history and undo as kubectl shows them.
    c.kubectl_ok(&["set", "env", "ds/beacon", "ROUND=2"]);
    let out = c.kubectl_ok(&["rollout", "status", "ds/beacon", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let hist = c.kubectl_ok(&["rollout", "history", "ds/beacon"]);
    let lines: Vec<Vec<&str>> = hist
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["daemonset.apps/beacon"],
            vec!["REVISION", "CHANGE-CAUSE"],
            vec!["1", "<none>"],
            vec!["2", "<none>"],
        ],
        "{hist}"
    );
    // The `ROUND` value of each daemon pod ("" before the change).
    let rounds = || {
        c.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=beacon",
            "-o",
            "jsonpath={range .items[*]}[{.spec.containers[0].env[0].value}]{end}",
        ])
    };
    assert_eq!(rounds(), "[2][2]");
    let out = c.kubectl_ok(&["rollout", "undo", "ds/beacon"]);
    assert_eq!(out.trim(), "daemonset.apps/beacon rolled back");
    c.kubectl_ok(&["rollout", "status", "ds/beacon", "--timeout=60s"]);
    let hist = c.kubectl_ok(&["rollout", "history", "ds/beacon"]);
    let revs: Vec<&str> = hist
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["2", "3"], "{hist}");
    c.wait_for("pods back on the first template", WAIT, || {
        rounds() == "[][]" && running_pods(c, "app=beacon").len() == 2
    });

    // Deleting the DaemonSet takes its pods; then the second node leaves.
    c.kubectl_ok(&["delete", "ds", "beacon", "--cascade=foreground"]);
    assert!(running_pods(c, "app=beacon").is_empty());
    c.wait_for("the daemon pods' processes to end", WAIT, || {
        find_pids(&m).is_empty()
    });
    agent.signal(15);
    if agent.wait_exit(Duration::from_secs(30)).is_none() {
        agent.kill9();
    }
    c.kubectl_ok(&["delete", "node", "worker-2"]);
}

/// `kubectl scale rc`: the legacy controller, selector defaulted from the template.
fn replication_controller_scales(c: &Cluster) {
    // The legacy twin: v1, no selector (defaulted from the template labels).
    let rs = common::steps::apps_manifest(
        "ReplicationController",
        "legacy",
        1,
        1,
        "",
        r#"["sleep", "1000"]"#,
    );
    c.apply(
        &rs.replace("apiVersion: apps/v1", "apiVersion: v1")
            .replace("  selector:\n    matchLabels: {app: legacy}\n", ""),
    );
    let out = c.kubectl_ok(&["scale", "rc", "legacy", "--replicas=2"]);
    assert_eq!(out.trim(), "replicationcontroller/legacy scaled");
    c.wait_for("2 legacy pods ready", WAIT, || {
        field(c, "rc", "legacy", "{.status.readyReplicas}") == "2"
    });
    let cols = columns(c, "rc", "legacy");
    assert_eq!(&cols[..4], ["legacy", "2", "2", "2"], "{cols:?}");
    c.kubectl_ok(&["delete", "rc", "legacy", "--cascade=foreground"]);
}

/// `kubectl drain` retries an eviction the budget forbids and succeeds once it allows it.
fn drain_waits_for_the_disruption_budget(c: &Cluster) {
    // A budget that is not an integer or a percent is refused as upstream refuses it.
    let (ok, err) = create_stdin_in(
        c,
        "default",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: bad}\nspec:\n  minAvailable: \"50\"\n  selector: {matchLabels: {app: guarded}}\n",
    );
    assert!(!ok);
    assert!(
        err.contains(r#"The PodDisruptionBudget "bad" is invalid: spec.minAvailable: Invalid value: "50": a valid percent string must be a numeric string followed by an ending '%'"#),
        "{err}"
    );
    let m = marker("guarded");
    c.apply(&sleeper_replica_set("guarded", 1, "", &m));
    c.apply(
        r#"apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: guarded
spec:
  minAvailable: 1
  selector:
    matchLabels: {app: guarded}
"#,
    );
    c.wait_for("the budget allows nothing", WAIT, || {
        field(
            c,
            "pdb",
            "guarded",
            "{.status.currentHealthy}/{.status.disruptionsAllowed}",
        ) == "1/0"
    });
    let cols = columns(c, "pdb", "guarded");
    assert_eq!(&cols[..4], ["guarded", "1", "N/A", "0"], "{cols:?}");
    let drain = [
        "drain",
        c.node.as_str(),
        "--pod-selector=app=guarded",
        "--grace-period=1",
    ];
    let blocked = c.kubectl(&[&drain[..], &["--timeout=7s"]].concat());
    assert!(!blocked.status.success());
    let err = String::from_utf8_lossy(&blocked.stderr);
    assert!(
        err.contains("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{err}"
    );
    assert_eq!(running_pods(c, "app=guarded").len(), 1);
    // While a second drain retries, the budget is relaxed: the eviction goes through.
    let child = c
        .kubectl_command(&[&drain[..], &["--timeout=60s"]].concat())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("drain");
    std::thread::sleep(Duration::from_secs(2));
    c.kubectl_ok(&[
        "patch",
        "pdb",
        "guarded",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":0}}"#,
    ]);
    let out = child.wait_with_output().expect("drain output");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("disruption budget"), "blocked first: {all}");
    assert!(all.contains(&format!("node/{} drained", c.node)), "{all}");
    c.kubectl_ok(&["uncordon", &c.node]);
    c.kubectl_ok(&["delete", "rs", "guarded"]);
    c.kubectl_ok(&["delete", "pdb", "guarded"]);
}

/// `kubectl create cronjob tick --schedule='* * * * *' -- sh -c 'echo tick'` (host mode).
fn create_cronjob(c: &Cluster) {
    let out = c.kubectl_ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=x",
        "--schedule=* * * * *",
        "--dry-run=client",
        "-o",
        "json",
        "--",
        "sh",
        "-c",
        "echo tick",
    ]);
    let mut cj: serde_json::Value = serde_json::from_str(&out).expect("cronjob json");
    cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["runtimeClassName"] = "host".into();
    let path = c.dir.path().join("cronjob-tick.json");
    std::fs::write(&path, cj.to_string()).expect("write cronjob");
    c.kubectl_ok(&["create", "-f", path.to_str().expect("utf8")]);
}

fn cronjob_fires_within_its_minute(c: &Cluster) {
    let row = c.kubectl_ok(&["get", "cronjob", "tick", "--no-headers"]);
    assert!(
        row.starts_with("tick") && row.contains("* * * * *"),
        "{row}"
    );
    // A manual run from the template.
    c.kubectl_ok(&["create", "job", "tick-manual", "--from=cronjob/tick"]);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/tick-manual",
        "--timeout=60s",
    ]);
    assert_eq!(c.kubectl_ok(&["logs", "job/tick-manual"]).trim(), "tick");
    // The scheduled run, named after its minute, within a minute of creation.
    c.wait_for("a scheduled job", Duration::from_secs(75), || {
        !job_field_all(c, "{.status.lastScheduleTime}").is_empty()
    });
    let names = c.kubectl_ok(&["get", "jobs", "-o", "name"]);
    let scheduled = names
        .lines()
        .find(|l| l.starts_with("job.batch/tick-") && !l.ends_with("tick-manual"))
        .expect("scheduled job")
        .to_string();
    c.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        &scheduled,
        "--timeout=60s",
    ]);
    assert_eq!(c.kubectl_ok(&["logs", &scheduled]).trim(), "tick");
    c.kubectl_ok(&[
        "patch",
        "cronjob",
        "tick",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
}

fn job_field_all(c: &Cluster, path: &str) -> String {
    c.kubectl_ok(&["get", "cronjob", "tick", "-o", &format!("jsonpath={path}")])
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

/// A pod whose container `main` sleeps, its cpu request and limit `cpu` (none when empty).
fn quota_pod(name: &str, cpu: &str) -> String {
    let pod = common::pods::shell_pod(name, "sleep 3600", &marker("quota")).grace(1);
    if cpu.is_empty() {
        return pod.yaml();
    }
    pod.container_yaml(&format!(
        "    resources: {{requests: {{cpu: {cpu}}}, limits: {{cpu: {cpu}}}}}\n"
    ))
    .yaml()
}

/// `kubectl create -n NS -f -` of `manifest`: whether it succeeded, and stderr.
fn create_stdin_in(c: &Cluster, ns: &str, manifest: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = c
        .kubectl_command(&["create", "-n", ns, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("write manifest");
    let out = child.wait_with_output().expect("kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn create_stdin(c: &Cluster, manifest: &str) -> (bool, String) {
    create_stdin_in(c, "quota", manifest)
}

fn quota_used(c: &Cluster, resource: &str) -> String {
    c.kubectl_ok(&[
        "get",
        "quota",
        "compute",
        "-n",
        "quota",
        "-o",
        &format!("jsonpath={{.status.used.{}}}", resource.replace('.', "\\.")),
    ])
}

/// A ResourceQuota through kubectl: the controller fills its status, creates over it are
/// refused with upstream's messages, and a deleted pod's share comes back.
fn resource_quota_admits_counts_and_replenishes(c: &Cluster) {
    c.kubectl_ok(&["create", "namespace", "quota"]);
    c.kubectl_ok(&[
        "create",
        "quota",
        "compute",
        "-n",
        "quota",
        "--hard=pods=2,requests.cpu=1,count/configmaps=2",
    ]);
    c.wait_for("the quota's status", WAIT, || {
        quota_used(c, "requests.cpu") == "0"
    });
    let (ok, err) = create_stdin(c, &quota_pod("first", "500m"));
    assert!(ok, "{err}");
    assert_eq!(quota_used(c, "requests.cpu"), "500m");
    assert_eq!(quota_used(c, "pods"), "1");
    let (ok, err) = create_stdin(c, &quota_pod("second", "600m"));
    assert!(!ok);
    assert!(
        err.contains(r#"Error from server (Forbidden): error when creating "STDIN": pods "second" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"#),
        "{err}"
    );
    let (ok, err) = create_stdin(c, &quota_pod("bare", ""));
    assert!(!ok);
    assert!(
        err.contains(r#"pods "bare" is forbidden: failed quota: compute: must specify requests.cpu for: main"#),
        "{err}"
    );
    let describe = c.kubectl_ok(&["describe", "quota", "compute", "-n", "quota"]);
    let row = |name: &str| {
        describe
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(
        row("requests.cpu"),
        ["requests.cpu", "500m", "1"],
        "{describe}"
    );
    assert_eq!(row("pods"), ["pods", "1", "2"], "{describe}");
    // Object counts: the namespace's `kube-root-ca.crt` is the first ConfigMap.
    c.kubectl_ok(&["create", "configmap", "one", "-n", "quota"]);
    let out = c.kubectl(&["create", "configmap", "two", "-n", "quota"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"configmaps "two" is forbidden: exceeded quota: compute, requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2"#),
        "{err}"
    );
    // The pod's share comes back once it is gone, and the next pod fits.
    c.kubectl_ok(&["delete", "pod", "first", "-n", "quota", "--wait=true"]);
    c.wait_for("the quota given back", WAIT, || {
        quota_used(c, "requests.cpu") == "0" && quota_used(c, "pods") == "0"
    });
    let (ok, err) = create_stdin(c, &quota_pod("second", "600m"));
    assert!(ok, "{err}");
    c.kubectl_ok(&["delete", "namespace", "quota", "--wait=false"]);
}
