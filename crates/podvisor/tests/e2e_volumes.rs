//! Acceptance tests for what a container sees on disk, through the real `kubectl` (spec
//! k8s-pod-lifecycle.md §1.8, §8 group C, §9 items 3–4): an emptyDir that outlives container
//! restarts (C1), termination messages at the default `/dev/termination-log` with both
//! policies (C2, C4, C5, C6), configMap and secret volumes read by the container (a missing
//! ConfigMap keeps it waiting with CreateContainerConfigError until it appears), and hostPath
//! volumes with their type checks and read-only mounts.
//!
//! Each container runs in its own mount namespace, so the three C1 pods all mount their own
//! emptyDir at `/restart-count` and every container has its own `/dev/termination-log`.

#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(60);

fn field(c: &Cluster, pod: &str, path: &str) -> String {
    c.pod_field(pod, path).unwrap_or_default()
}

fn terminated_message(c: &Cluster, pod: &str) -> String {
    field(
        c,
        pod,
        "{.status.containerStatuses[0].state.terminated.message}",
    )
}

/// C1 [Conformance] "should run with the expected status": the script counts its runs in a
/// memory emptyDir: 1st run exits 1, 2nd exits 0, later runs loop.
#[test]
fn c1_empty_dir_restart_count_and_phases() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("c1");
    let script = format!(
        "f=/restart-count/restartCount; count=$(echo 'hello' >> $f ; wc -l < $f); \
         if [ $count -eq 1 ]; then exit 1; fi; if [ $count -eq 2 ]; then exit 0; fi; \
         while true; do sleep 1; done # {m}"
    );
    for (name, policy) in [
        ("terminate-cmd-rpa", "Always"),
        ("terminate-cmd-rpof", "OnFailure"),
        ("terminate-cmd-rpn", "Never"),
    ] {
        c.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {policy}
  runtimeClassName: host
  containers:
  - name: terminate-cmd
    image: busybox
    command: ["/bin/sh", "-c", {script:?}]
    volumeMounts:
    - name: restart-count
      mountPath: /restart-count
  volumes:
  - name: restart-count
    emptyDir:
      medium: Memory
"#
        ));
    }
    let restarts = |pod: &str| field(&c, pod, "{.status.containerStatuses[0].restartCount}");
    c.wait_pod_phase("terminate-cmd-rpn", "Failed", LONG);
    assert_eq!(restarts("terminate-cmd-rpn"), "0");
    c.wait_pod_phase("terminate-cmd-rpof", "Succeeded", LONG);
    assert_eq!(restarts("terminate-cmd-rpof"), "1");
    // The third run of the Always pod comes after a 10 s crash back-off.
    c.wait_for("restartCount 2 of the Always pod", LONG, || {
        restarts("terminate-cmd-rpa") == "2"
    });
    c.wait_pod_ready("terminate-cmd-rpa", LONG);
    assert_eq!(field(&c, "terminate-cmd-rpa", "{.status.phase}"), "Running");
    assert!(
        !field(
            &c,
            "terminate-cmd-rpa",
            "{.status.containerStatuses[0].state.running.startedAt}"
        )
        .is_empty()
    );
    for pod in ["terminate-cmd-rpof", "terminate-cmd-rpn"] {
        assert_eq!(
            field(&c, pod, "{.status.containerStatuses[0].ready}"),
            "false"
        );
        assert!(
            !field(
                &c,
                pod,
                "{.status.containerStatuses[0].state.terminated.reason}"
            )
            .is_empty()
        );
    }
    // The count lives in the pod's emptyDir, not on the host.
    assert!(
        !std::path::Path::new("/restart-count/restartCount").exists(),
        "the emptyDir is not visible at the host's /restart-count"
    );
    // Each pod can then be deleted and disappears, taking its volume along.
    let pods_dir = c.dir.path().join("data");
    for pod in [
        "terminate-cmd-rpa",
        "terminate-cmd-rpof",
        "terminate-cmd-rpn",
    ] {
        let uid = field(&c, pod, "{.metadata.uid}");
        c.kubectl_ok(&["delete", "pod", pod, "--wait=false"]);
        c.wait_for(&format!("pod {pod} gone"), LONG, || !c.pod_exists(pod));
        // A terminal pod's object goes at once (grace 0, as upstream's CheckGracefulDelete),
        // so the agent removes its directory just after, not before.
        c.wait_for(&format!("the directory of pod {pod} removed"), LONG, || {
            find_named(&pods_dir, &uid).is_empty()
        });
    }
    assert!(find_pids(&m).is_empty(), "no container process remains");
}

/// Directories named `name` below `root`.
fn find_named(root: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                if e.file_name().to_string_lossy() == name {
                    out.push(p.clone());
                }
                stack.push(p);
            }
        }
    }
    out
}

fn termination_pod(c: &Cluster, name: &str, policy: Option<&str>, script: &str) {
    let policy = policy
        .map(|p| format!("\n    terminationMessagePolicy: {p}"))
        .unwrap_or_default();
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  runtimeClassName: host
  containers:
  - name: termination-message-container
    image: busybox
    command: ["/bin/sh", "-c", {script:?}]
    securityContext:
      runAsUser: 0{policy}
"#
    ));
}

/// C2 "should report termination message if TerminationMessagePath is set": the default
/// path `/dev/termination-log`, written by the container.
#[test]
fn c2_termination_message_from_the_default_path() {
    let _g = serial();
    let c = Cluster::up();
    termination_pod(&c, "c2", None, "/bin/echo -n DONE > /dev/termination-log");
    c.wait_pod_phase("c2", "Succeeded", LONG);
    assert_eq!(terminated_message(&c, "c2"), "DONE");
    assert_eq!(
        field(&c, "c2", "{.spec.containers[0].terminationMessagePath}"),
        "/dev/termination-log"
    );
    // (The host's /dev/termination-log is only the mount point; its content, if any, is
    // never a container's.)
}

/// C4 [Conformance] "should report termination message from log output if
/// TerminationMessagePolicy FallbackToLogsOnError is set".
#[test]
fn c4_termination_message_falls_back_to_the_log_on_error() {
    let _g = serial();
    let c = Cluster::up();
    termination_pod(
        &c,
        "c4",
        Some("FallbackToLogsOnError"),
        "/bin/echo -n DONE; /bin/false",
    );
    c.wait_pod_phase("c4", "Failed", LONG);
    assert_eq!(terminated_message(&c, "c4"), "DONE");
    assert_eq!(
        field(
            &c,
            "c4",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "1"
    );
}

/// C5 [Conformance] "should report termination message as empty when pod succeeds and
/// TerminationMessagePolicy FallbackToLogsOnError is set".
#[test]
fn c5_no_fallback_when_the_container_succeeds() {
    let _g = serial();
    let c = Cluster::up();
    termination_pod(
        &c,
        "c5",
        Some("FallbackToLogsOnError"),
        "/bin/echo -n DONE; /bin/true",
    );
    c.wait_pod_phase("c5", "Succeeded", LONG);
    assert_eq!(terminated_message(&c, "c5"), "");
    assert_eq!(c.kubectl_ok(&["logs", "c5"]), "DONE\n");
}

/// C6 [Conformance] "should report termination message from file when pod succeeds and
/// TerminationMessagePolicy FallbackToLogsOnError is set".
#[test]
fn c6_the_file_wins_over_the_log() {
    let _g = serial();
    let c = Cluster::up();
    termination_pod(
        &c,
        "c6",
        Some("FallbackToLogsOnError"),
        "/bin/echo -n OK > /dev/termination-log; /bin/echo DONE; /bin/true",
    );
    c.wait_pod_phase("c6", "Succeeded", LONG);
    assert_eq!(terminated_message(&c, "c6"), "OK");
}

/// configMap and secret volumes: the container reads the files (items, modes); a missing
/// ConfigMap keeps the container waiting with CreateContainerConfigError until it exists.
#[test]
fn config_map_and_secret_volumes_are_read_by_the_container() {
    let _g = serial();
    let c = Cluster::up();
    let mnt = c.dir.path().join("mnt");
    let (cfg, sec) = (mnt.join("cfg"), mnt.join("sec"));
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=s3cret",
        "--from-literal=user=admin",
    ]);
    let script = format!(
        "cat {cfg}/greeting; echo; cat {sec}/creds/pw; echo; stat -L -c %a {sec}/creds/pw; \
         ls {sec}; touch {cfg}/x 2>/dev/null || echo read-only; sleep 1000",
        cfg = cfg.display(),
        sec = sec.display()
    );
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  restartPolicy: Never
  runtimeClassName: host
  containers:
  - name: reader
    image: busybox
    command: ["/bin/sh", "-c", {script:?}]
    volumeMounts:
    - name: cfg
      mountPath: {cfg}
    - name: sec
      mountPath: {sec}
  volumes:
  - name: cfg
    configMap:
      name: settings
  - name: sec
    secret:
      secretName: db
      items:
      - key: password
        path: creds/pw
        mode: 0400
"#,
        cfg = cfg.display(),
        sec = sec.display()
    ));
    c.wait_for("CreateContainerConfigError", LONG, || {
        field(
            &c,
            "reader",
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "CreateContainerConfigError"
    });
    assert_eq!(
        field(
            &c,
            "reader",
            "{.status.containerStatuses[0].state.waiting.message}"
        ),
        "MountVolume.SetUp failed for volume \"cfg\" : configmaps \"settings\" not found"
    );
    assert_eq!(field(&c, "reader", "{.status.phase}"), "Pending");
    c.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=greeting=hello",
    ]);
    // Retried after the config-error back-off (10–15 s).
    c.wait_pod_ready("reader", LONG);
    c.wait_for("the container's output", LONG, || {
        c.kubectl(&["logs", "reader"])
            .stdout
            .ends_with(b"read-only\n")
    });
    assert_eq!(
        c.kubectl_ok(&["logs", "reader"]),
        "hello\ns3cret\n400\ncreds\nread-only\n"
    );
    // Nothing of it is on the host at the mount paths.
    assert!(!cfg.join("greeting").exists());
    assert!(!sec.join("creds").exists());
}

/// hostPath volumes: DirectoryOrCreate creates the directory, the container's writes land
/// in it, readOnly holds, and a failed type check keeps the container waiting.
#[test]
fn host_path_volumes_with_type_checks() {
    let _g = serial();
    let c = Cluster::up();
    let host = c.dir.path().join("host-data");
    let target = c.dir.path().join("in-container/data");
    let script = format!(
        "echo written > {t}/out.txt; cat {t}/../ro/seed; touch {t}/../ro/x 2>/dev/null || echo ro; sleep 1000",
        t = target.display()
    );
    let ro_src = c.dir.path().join("ro-src");
    std::fs::create_dir_all(&ro_src).expect("ro src");
    std::fs::write(ro_src.join("seed"), "seeded\n").expect("seed");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hostpath
spec:
  restartPolicy: Never
  runtimeClassName: host
  containers:
  - name: writer
    image: busybox
    command: ["/bin/sh", "-c", {script:?}]
    volumeMounts:
    - name: data
      mountPath: {target}
    - name: ro
      mountPath: {ro_target}
      readOnly: true
  volumes:
  - name: data
    hostPath:
      path: {host}
      type: DirectoryOrCreate
  - name: ro
    hostPath:
      path: {ro_src}
      type: Directory
"#,
        target = target.display(),
        ro_target = target.with_file_name("ro").display(),
        host = host.display(),
        ro_src = ro_src.display(),
    ));
    c.wait_pod_ready("hostpath", LONG);
    c.wait_for("the container's writes", LONG, || {
        c.kubectl(&["logs", "hostpath"]).stdout.ends_with(b"ro\n")
    });
    assert_eq!(c.kubectl_ok(&["logs", "hostpath"]), "seeded\nro\n");
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).expect("written through the mount"),
        "written\n"
    );
    assert!(!ro_src.join("x").exists());
    // A type check that fails: File on a missing path.
    let missing = c.dir.path().join("no-such-file");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: badhost
spec:
  restartPolicy: Never
  runtimeClassName: host
  containers:
  - name: app
    image: busybox
    command: ["true"]
    volumeMounts:
    - name: f
      mountPath: /podvisor-e2e-never-mounted
  volumes:
  - name: f
    hostPath:
      path: {missing}
      type: File
"#,
        missing = missing.display()
    ));
    c.wait_for("the failed type check", LONG, || {
        field(
            &c,
            "badhost",
            "{.status.containerStatuses[0].state.waiting.message}",
        ) == format!(
            "MountVolume.SetUp failed for volume \"f\" : hostPath type check failed: {} is not a file",
            missing.display()
        )
    });
    assert_eq!(
        field(
            &c,
            "badhost",
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "CreateContainerConfigError"
    );
}
