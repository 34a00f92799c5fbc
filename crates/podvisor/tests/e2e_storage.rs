//! Acceptance tests for volumes that outlive the pod, through the real `kubectl` against
//! one `podvisor up` cluster shared by every case (run in order in one test):
//!
//! 1. the default StorageClass `local-path` and the tables of `kubectl get pv,pvc,sc`;
//! 2. a claim of the default class waits for its first consumer, is provisioned on the
//!    node the scheduler picked (a directory under the node's data dir, the pod's fsGroup
//!    applied), `kubectl describe pvc` tells the story; pvc-protection keeps the claim
//!    while its pod runs; Delete reclaim removes the volume and its directory;
//! 3. an admin's hostPath PV bound by capacity and class, Retain keeps it `Released`;
//! 4. a pod whose claim is missing is unschedulable with upstream's message;
//! 5. a StatefulSet with `volumeClaimTemplates`: `db-0` deleted and recreated finds the
//!    same data on its claim while its emptyDir starts empty, and keeps it across a restart
//!    of `up` (agent included); `whenScaled: Retain` keeps
//!    the claim of a removed ordinal, `whenDeleted: Delete` removes every claim (and, by
//!    the Delete reclaim, their volumes) with the StatefulSet.

#![allow(clippy::disallowed_methods)]

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(30);

fn get(c: &Cluster, args: &[&str]) -> String {
    let out = c.kubectl(args);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn exists(c: &Cluster, kind: &str, name: &str) -> bool {
    c.kubectl(&["get", kind, name, "-o", "name"])
        .status
        .success()
}

/// Header words of a `kubectl get` table.
fn header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
        .split_whitespace()
        .collect()
}

fn claim_pod(name: &str, claim: &str, script: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 1
{extra_spec}  containers:
  - name: main
    image: busybox
    command: ["/bin/sh", "-c", {script:?}]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: {claim}
"#
    )
}

fn storage_root(c: &Cluster) -> PathBuf {
    c.dir.path().join("data").join("agent").join("storage")
}

#[test]
fn persistent_volumes_claims_and_classes() {
    let _g = serial();
    let started = Instant::now();
    let mut c = Cluster::up();

    // 1. The default class and the tables.
    let sc = c.kubectl_ok(&["get", "sc"]);
    assert_eq!(
        header(&sc),
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ],
        "{sc}"
    );
    let r = row(&sc, "local-path");
    assert_eq!(
        r[..6],
        [
            "local-path",
            "(default)",
            "podvisor.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ],
        "{sc}"
    );

    // 2. A claim of the default class: provisioned where its first pod goes.
    c.apply(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 64Mi
"#,
    );
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "pvc",
                "data",
                "-o",
                "jsonpath={.spec.storageClassName} {.metadata.finalizers}"
            ]
        ),
        r#"local-path ["kubernetes.io/pvc-protection"]"#
    );
    c.wait_for("the WaitForFirstConsumer event", WAIT, || {
        get(
            &c,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=data",
                "-o",
                "jsonpath={.items[*].reason}",
            ],
        )
        .contains("WaitForFirstConsumer")
    });
    let pvc = c.kubectl_ok(&["get", "pvc"]);
    assert_eq!(
        header(&pvc),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ],
        "{pvc}"
    );
    assert_eq!(
        row(&pvc, "data")[..4],
        ["data", "Pending", "local-path", "<unset>"],
        "{pvc}"
    );

    let m = marker("writer");
    c.apply(&claim_pod(
        "writer",
        "data",
        &format!("echo kept > /data/file; while true; do sleep 1; done # {m}"),
        "  securityContext:\n    fsGroup: 4321\n",
    ));
    c.wait_pod_ready("writer", WAIT);
    let volume = get(
        &c,
        &["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"],
    );
    assert!(volume.starts_with("pvc-"), "{volume}");
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "pvc",
                "data",
                "-o",
                "jsonpath={.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
            ]
        ),
        c.node
    );
    let pv = c.kubectl_ok(&["get", "pv"]);
    assert_eq!(
        header(&pv),
        [
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ],
        "{pv}"
    );
    assert_eq!(
        row(&pv, &volume)[..8],
        [
            volume.as_str(),
            "64Mi",
            "RWO",
            "Delete",
            "Bound",
            "default/data",
            "local-path",
            "<unset>"
        ],
        "{pv}"
    );
    assert_eq!(
        row(&c.kubectl_ok(&["get", "pvc"]), "data")[..6],
        [
            "data",
            "Bound",
            volume.as_str(),
            "64Mi",
            "RWO",
            "local-path"
        ]
    );
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "pv",
                &volume,
                "-o",
                "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]} {.metadata.annotations.pv\\.kubernetes\\.io/provisioned-by}"
            ]
        ),
        format!("{} podvisor.io/local-path", c.node)
    );
    let dir = storage_root(&c).join(format!("{volume}_default_data"));
    let file = dir.join("file");
    c.wait_for("the file in the provisioned directory", WAIT, || {
        file.exists()
    });
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "kept");
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.gid(), 4321, "fsGroup applied to the volume");
    assert_ne!(meta.mode() & 0o2000, 0, "setgid on the volume root");

    let describe = c.kubectl_ok(&["describe", "pvc", "data"]);
    for want in [
        "Name:          data",
        "StorageClass:  local-path",
        "Status:        Bound",
        &format!("Volume:        {volume}"),
        "Finalizers:    [kubernetes.io/pvc-protection]",
        "Capacity:      64Mi",
        "Access Modes:  RWO",
        "VolumeMode:    Filesystem",
        "Used By:       writer",
        "WaitForFirstConsumer",
        "waiting for first consumer to be created before binding",
        "ProvisioningSucceeded",
        &format!("Successfully provisioned volume {volume} using podvisor.io/local-path"),
    ] {
        assert!(describe.contains(want), "missing {want:?} in\n{describe}");
    }

    // pvc-protection: the claim stays (Terminating) while its pod runs.
    c.kubectl_ok(&["delete", "pvc", "data", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        row(&c.kubectl_ok(&["get", "pvc"]), "data")[1],
        "Terminating"
    );
    c.kubectl_ok(&["delete", "pod", "writer"]);
    c.wait_for("the claim gone after its pod", WAIT, || {
        !exists(&c, "pvc", "data")
    });
    // Delete reclaim: the volume and its directory go.
    c.wait_for("the provisioned volume deleted", WAIT, || {
        !exists(&c, "pv", &volume)
    });
    assert!(!dir.exists(), "the directory {dir:?} was removed");

    // 3. An admin's hostPath volume: bound by class and capacity, retained.
    let host_dir = c.dir.path().join("manual");
    std::fs::create_dir_all(&host_dir).unwrap();
    c.apply(&format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: manual-small
spec:
  capacity: {{storage: 10Mi}}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {{path: {small:?}}}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: manual
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: manual
  hostPath: {{path: {path:?}, type: Directory}}
"#,
        small = c.dir.path().join("small").display().to_string(),
        path = host_dir.display().to_string()
    ));
    c.wait_for("the admin's volumes Available", WAIT, || {
        get(
            &c,
            &[
                "get",
                "pv",
                "manual",
                "manual-small",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ],
        ) == "Available Available"
    });
    c.apply(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: static
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 100Mi
"#,
    );
    c.wait_for("the claim bound to the admin's volume", WAIT, || {
        get(
            &c,
            &[
                "get",
                "pvc",
                "static",
                "-o",
                "jsonpath={.status.phase} {.spec.volumeName}",
            ],
        ) == "Bound manual"
    });
    assert_eq!(
        row(&c.kubectl_ok(&["get", "pvc"]), "static")[..6],
        ["static", "Bound", "manual", "1Gi", "RWO,ROX", "manual"]
    );
    let m = marker("static");
    c.apply(&claim_pod(
        "static-user",
        "static",
        &format!("echo retained > /data/file; while true; do sleep 1; done # {m}"),
        "",
    ));
    c.wait_pod_ready("static-user", WAIT);
    c.wait_for("the file on the admin's volume", WAIT, || {
        host_dir.join("file").exists()
    });
    c.kubectl_ok(&["delete", "pod", "static-user"]);
    c.kubectl_ok(&["delete", "pvc", "static"]);
    c.wait_for("the retained volume Released", WAIT, || {
        get(
            &c,
            &["get", "pv", "manual", "-o", "jsonpath={.status.phase}"],
        ) == "Released"
    });
    let pv = c.kubectl_ok(&["get", "pv"]);
    assert_eq!(
        row(&pv, "manual")[..6],
        [
            "manual",
            "1Gi",
            "RWO,ROX",
            "Retain",
            "Released",
            "default/static"
        ],
        "{pv}"
    );
    assert_eq!(
        std::fs::read_to_string(host_dir.join("file"))
            .unwrap()
            .trim(),
        "retained"
    );
    assert_eq!(row(&pv, "manual-small")[4], "Available", "{pv}");
    let all = c.kubectl_ok(&["get", "pv,pvc,sc"]);
    for want in [
        "persistentvolume/manual ",
        "persistentvolume/manual-small ",
        "storageclass.storage.k8s.io/local-path (default) ",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }

    // 4. A missing claim: unschedulable, upstream's message.
    c.apply(&claim_pod("orphan", "nope", "sleep 1", ""));
    c.wait_for("the FailedScheduling message", WAIT, || {
        c.pod_field("orphan", "{.status.conditions[?(@.type==\"PodScheduled\")].message}")
            .as_deref()
            == Some(
                "0/1 nodes are available: persistentvolumeclaim \"nope\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
            )
    });

    // 5. StatefulSet claims.
    c.kubectl_ok(&["delete", "pod", "orphan", "--wait=false"]);
    let m = marker("db");
    let script = format!(
        "echo scratch-entries:$(ls /scratch | wc -l) >> /data/runs; touch /scratch/mark; \
         while true; do sleep 1; done # {m}"
    );
    c.apply(&format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 1
  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Delete
    whenScaled: Retain
  selector:
    matchLabels: {{app: db}}
  template:
    metadata:
      labels: {{app: db}}
    spec:
      runtimeClassName: host
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["/bin/sh", "-c", {script:?}]
        volumeMounts:
        - {{name: data, mountPath: /data}}
        - {{name: scratch, mountPath: /scratch}}
      volumes:
      - name: scratch
        emptyDir: {{}}
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 32Mi
"#
    ));
    c.wait_pod_ready("db-0", WAIT);
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "pvc",
                "data-db-0",
                "-o",
                "jsonpath={.status.phase} {.metadata.labels.app} {.metadata.ownerReferences[0].kind}"
            ]
        ),
        "Bound db StatefulSet"
    );
    let runs = |c: &Cluster| {
        let out = c.kubectl(&["exec", "db-0", "--", "cat", "/data/runs"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    c.wait_for("the first run recorded", WAIT, || {
        runs(&c) == "scratch-entries:0"
    });
    let uid = c.pod_field("db-0", "{.metadata.uid}").unwrap();
    c.kubectl_ok(&["delete", "pod", "db-0"]);
    c.wait_for("db-0 recreated", WAIT, || {
        c.pod_field("db-0", "{.metadata.uid}")
            .is_some_and(|u| u != uid)
    });
    c.wait_pod_ready("db-0", WAIT);
    // The claim kept the first run's line; the new emptyDir was empty again.
    c.wait_for("the second run recorded", WAIT, || {
        runs(&c) == "scratch-entries:0\nscratch-entries:0"
    });
    // An agent restart (all of `up`, killed) keeps the pod and its data.
    c.restart();
    c.wait_pod_ready("db-0", WAIT);
    c.wait_for("the data read after the restart", WAIT, || {
        runs(&c) == "scratch-entries:0\nscratch-entries:0"
    });
    assert_eq!(
        c.pod_field("db-0", "{.status.containerStatuses[0].restartCount}")
            .as_deref(),
        Some("0")
    );
    c.kubectl_ok(&["scale", "statefulset", "db", "--replicas=2"]);
    c.wait_pod_ready("db-1", WAIT);
    let db1_volume = get(
        &c,
        &[
            "get",
            "pvc",
            "data-db-1",
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
    );
    c.kubectl_ok(&["scale", "statefulset", "db", "--replicas=1"]);
    c.wait_for("db-1 gone", WAIT, || !c.pod_exists("db-1"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        exists(&c, "pvc", "data-db-1"),
        "whenScaled: Retain keeps the claim"
    );
    c.kubectl_ok(&["delete", "statefulset", "db"]);
    c.wait_for("the claims deleted with the StatefulSet", WAIT, || {
        !exists(&c, "pvc", "data-db-0") && !exists(&c, "pvc", "data-db-1")
    });
    c.wait_for("their volumes deleted", WAIT, || {
        !exists(&c, "pv", &db1_volume)
    });
    println!("e2e_storage: {:?}", started.elapsed());
}
