//! Security end to end with the real binary and kubectl, one cluster for every case:
//! a pod reads its mounted service-account token and lists pods with it (curl against the
//! API server, from inside the pod: a `host` RuntimeClass pod shares the node's network), the
//! token stops working once the pod is deleted, `kubectl create token` tokens
//! authenticate as the service account, each securityContext field is checked from inside
//! the container (`id`, `/proc/self/status`, writing to `/`), `runAsNonRoot` refuses a
//! root container with the kubelet's message, `hostPID`/`hostIPC`, sysctls (set in the pod's
//! namespaces; an unsafe one rejects the pod as the kubelet does), `fsGroup` volume ownership
//! and `privileged` are seen from inside, and Pod Security admission refuses, warns and
//! validates namespace labels with upstream's texts.

#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(60);
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// `curl` of `path` on the cluster's API with `token`; returns the HTTP status code.
fn api_status(c: &Cluster, token: &str, path: &str) -> String {
    let ca = c.dir.path().join("data").join("ca.crt");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            ca.to_str().expect("utf8"),
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("https://127.0.0.1:{}{path}", c.port),
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn service_account_token_in_a_pod(c: &Cluster) {
    let script = format!(
        "D={SA_DIR}; echo ns=$(cat $D/namespace); \
         echo code=$(curl -sS -o /dev/null -w '%{{http_code}}' --cacert $D/ca.crt \
           -H \"Authorization: Bearer $(cat $D/token)\" \
           https://127.0.0.1:{}/api/v1/namespaces/default/pods); \
         echo token=$(cat $D/token); sleep 3600",
        c.port
    );
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: sa-reader
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 1
  containers:
  - name: reader
    image: busybox
    command: ["/bin/sh", "-c", {script:?}]
"#
    ));
    let volume = c
        .pod_field("sa-reader", "{.spec.volumes[0].name}")
        .unwrap_or_default();
    assert!(volume.starts_with("kube-api-access-"), "{volume}");
    let mut logs = String::new();
    c.wait_for("the pod's curl", LONG, || {
        logs = String::from_utf8_lossy(&c.kubectl(&["logs", "sa-reader"]).stdout).into_owned();
        logs.contains("token=")
    });
    assert!(logs.contains("ns=default"), "{logs}");
    assert!(logs.contains("code=200"), "{logs}");
    let token = logs
        .lines()
        .find_map(|l| l.strip_prefix("token="))
        .expect("token line")
        .trim()
        .to_string();
    assert_eq!(
        api_status(c, &token, "/api/v1/namespaces/default/pods"),
        "200"
    );
    c.kubectl_ok(&["delete", "pod", "sa-reader", "--wait=true"]);
    c.wait_for("the token to stop working", LONG, || {
        api_status(c, &token, "/api/v1/namespaces/default/pods") == "401"
    });
}

fn kubectl_create_token(c: &Cluster) {
    let token = c.kubectl_ok(&["create", "token", "default", "--duration=15m"]);
    let token = token.trim();
    // Authenticated (discovery is open to every authenticated user), but RBAC grants the
    // `default` service account nothing until a binding does.
    assert_eq!(api_status(c, token, "/api"), "200");
    assert_eq!(
        api_status(c, token, "/api/v1/namespaces/default/pods"),
        "403"
    );
    c.kubectl_ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list,watch",
        "--resource=pods",
    ]);
    c.kubectl_ok(&[
        "create",
        "rolebinding",
        "default-reads-pods",
        "--role=pod-reader",
        "--serviceaccount=default:default",
    ]);
    c.wait_for("the binding to authorize the token", LONG, || {
        api_status(c, token, "/api/v1/namespaces/default/pods") == "200"
    });
    assert_eq!(
        api_status(c, "garbage", "/api/v1/namespaces/default/pods"),
        "401"
    );
    let ca = c.kubectl_ok(&[
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    let want = std::fs::read_to_string(c.dir.path().join("data").join("ca.crt")).expect("ca");
    assert_eq!(ca.trim(), want.trim());
}

fn security_context_from_inside(c: &Cluster) {
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: confined
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsUser: 1000
    runAsGroup: 1000
    supplementalGroups: [3000]
    seccompProfile:
      type: RuntimeDefault
  containers:
  - name: c
    image: busybox
    workingDir: /
    command: ["/bin/sh", "-c", "id -u; id -G; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t ' ' '; touch /sec-e2e-write 2>/dev/null; echo touch=$?; sleep 3600"]
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
        add: ["NET_BIND_SERVICE"]
---
apiVersion: v1
kind: Pod
metadata:
  name: wants-non-root
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
"#,
    );
    let mut logs = String::new();
    let mut waiting = String::new();
    c.wait_for("the confined container's report", LONG, || {
        logs = String::from_utf8_lossy(&c.kubectl(&["logs", "confined"]).stdout).into_owned();
        waiting = c
            .pod_field(
                "confined",
                "{.status.containerStatuses[0].state.waiting.message}",
            )
            .unwrap_or_default();
        logs.contains("touch=") || waiting.contains("security") || waiting.contains("cannot")
    });
    assert!(waiting.is_empty(), "the container did not start: {waiting}");
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(
        lines,
        vec![
            "1000",
            "1000 3000",
            "CapEff: 0000000000000000",
            "CapBnd: 0000000000000400",
            "NoNewPrivs: 1",
            "Seccomp: 2",
            "touch=1",
        ],
        "{logs}"
    );
    let uid = c
        .pod_field("wants-non-root", "{.metadata.uid}")
        .unwrap_or_default();
    let want = format!(
        "container has runAsNonRoot and image will run as root (pod: \"wants-non-root_default({uid})\", container: c)"
    );
    c.wait_for("CreateContainerConfigError", LONG, || {
        c.pod_field(
            "wants-non-root",
            "{.status.containerStatuses[0].state.waiting.reason}",
        )
        .as_deref()
            == Some("CreateContainerConfigError")
    });
    assert_eq!(
        c.pod_field(
            "wants-non-root",
            "{.status.containerStatuses[0].state.waiting.message}"
        )
        .unwrap_or_default(),
        want
    );
    c.kubectl_ok(&[
        "delete",
        "pod",
        "confined",
        "wants-non-root",
        "--wait=false",
    ]);
}

/// `kubectl create -f` of a manifest; returns the whole output (stdout and stderr).
fn kubectl_create(c: &Cluster, manifest: &str, extra: &[&str]) -> (bool, String) {
    let path = c.dir.path().join(format!("create-{}.yaml", manifest.len()));
    std::fs::write(&path, manifest).expect("write manifest");
    let mut args = vec!["create", "-f", path.to_str().expect("utf8")];
    args.extend_from_slice(extra);
    let out = c.kubectl(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A `host` pod in `namespace` with one privileged container `c` running `script`.
fn privileged_pod(name: &str, namespace: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: ["/bin/sh", "-c", {script:?}]
    securityContext:
      privileged: true
"#
    )
}

/// The full restricted refusal of a pod with one privileged container `c` and nothing else.
const RESTRICTED_DETAIL: &str = r#"privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;

fn pod_security_admission(c: &Cluster) {
    c.kubectl_ok(&["create", "namespace", "psa"]);
    // Unlabelled: privileged, anything goes.
    let (ok, out) = kubectl_create(c, &privileged_pod("early", "psa", "sleep 3600"), &[]);
    assert!(ok, "{out}");
    // Tightening enforce warns about the pod already there.
    let out = c.kubectl(&[
        "label",
        "namespace",
        "psa",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/audit=baseline",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Warning: existing pods in namespace "psa" violate the new PodSecurity enforce level "restricted:latest""#),
        "{stderr}"
    );
    assert!(
        stderr.contains("Warning: early: privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"),
        "{stderr}"
    );
    // A privileged pod is refused with upstream's message.
    let (ok, out) = kubectl_create(c, &privileged_pod("late", "psa", "sleep 3600"), &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("Error from server (Forbidden): error when creating ") && out.contains(&format!(
            r#"pods "late" is forbidden: violates PodSecurity "restricted:latest": {RESTRICTED_DETAIL}"#
        )),
        "{out}"
    );
    // A pod template is admitted with a warning.
    let deployment = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: priv
  namespace: psa
spec:
  replicas: 0
  selector:
    matchLabels: {app: priv}
  template:
    metadata:
      labels: {app: priv}
    spec:
      containers:
      - name: c
        image: busybox
        securityContext:
          privileged: true
"#;
    let (ok, out) = kubectl_create(c, deployment, &[]);
    assert!(ok, "{out}");
    // The audit level's verdict is in the create's audit event.
    let audit =
        std::fs::read_to_string(c.dir.path().join("data").join("audit.log")).expect("audit log");
    let event: serde_json::Value = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "deployments"
                && e["objectRef"]["namespace"] == "psa"
        })
        .unwrap_or_else(|| panic!("no audit event for the deployment: {audit}"));
    assert_eq!(
        event["annotations"]["pod-security.kubernetes.io/audit-violations"],
        r#"would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#,
        "{event}"
    );
    assert!(
        out.contains(&format!(
            r#"Warning: would violate PodSecurity "restricted:latest": {RESTRICTED_DETAIL}"#
        )),
        "{out}"
    );
    // Neither a scale (a subresource) nor a pod's metadata-only update is checked: the
    // privileged pod that predates the label may still be relabelled.
    for args in [
        &["scale", "-n", "psa", "deployment", "priv", "--replicas=1"][..],
        &["label", "-n", "psa", "pod", "early", "checked=no"][..],
    ] {
        let out = c.kubectl(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("Warning"),
            "{args:?}: {stderr}"
        );
    }
    // A pod that meets the restricted level is admitted without warnings.
    let compliant = r#"apiVersion: v1
kind: Pod
metadata:
  name: compliant
  namespace: psa
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: c
    image: busybox
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: ["ALL"]}
"#;
    let (ok, out) = kubectl_create(c, compliant, &["--dry-run=server"]);
    assert!(ok && !out.contains("Warning"), "{out}");
    // A label that does not parse is invalid.
    let out = c.kubectl(&[
        "label",
        "namespace",
        "psa",
        "--overwrite",
        "pod-security.kubernetes.io/audit=bogus",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"The Namespace "psa" is invalid: metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "bogus": must be one of privileged, baseline, restricted"#),
        "{stderr}"
    );
    c.kubectl_ok(&["delete", "namespace", "psa", "--wait=false"]);
}

fn own_status_line(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn ns_link(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .expect("ns link")
        .display()
        .to_string()
}

fn security_context_namespaces_sysctls_fs_group_privileged(c: &Cluster) {
    const REPORT: &str = "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; \
                          cat /proc/sys/kernel/shm_rmid_forced";
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: host-ns
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 1
  hostPID: true
  hostIPC: true
  containers:
  - name: c
    image: busybox
    command: ["/bin/sh", "-c", "{REPORT}; echo done; sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: own-ns
spec:
  runtimeClassName: host
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsUser: 1000
    runAsGroup: 1000
    fsGroup: 2000
    fsGroupChangePolicy: OnRootMismatch
    sysctls:
    - name: kernel.shm_rmid_forced
      value: "1"
  volumes:
  - name: scratch
    emptyDir: {{}}
  containers:
  - name: c
    image: busybox
    workingDir: /
    command: ["/bin/sh", "-c", "{REPORT}; id -G; stat -c '%g %a' /data; touch /data/f; stat -c '%g' /data/f; echo done; sleep 3600"]
    volumeMounts:
    - name: scratch
      mountPath: /data
---
apiVersion: v1
kind: Pod
metadata:
  name: unsafe-sysctl
spec:
  runtimeClassName: host
  securityContext:
    sysctls:
    - name: kernel.msgmax
      value: "65536"
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
"#
    ));
    c.apply(&privileged_pod(
        "privileged",
        "default",
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t ' ' '; echo done; sleep 3600",
    ));
    let logs_of = |pod: &str| {
        let mut logs = String::new();
        c.wait_for(&format!("{pod}'s report"), LONG, || {
            logs = String::from_utf8_lossy(&c.kubectl(&["logs", pod]).stdout).into_owned();
            logs.contains("done")
        });
        logs.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let (pid, ipc) = (ns_link("pid"), ns_link("ipc"));
    let host_shm = std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced")
        .expect("sysctl")
        .trim()
        .to_string();
    // hostPID/hostIPC: the node's namespaces (this test's), the node's sysctl value.
    assert_eq!(
        logs_of("host-ns"),
        [pid.clone(), ipc.clone(), host_shm, "done".into()]
    );
    // Own namespaces, the sysctl set in them, the fsGroup as a supplementary group and the
    // owner of the volume (setgid: new files get the group).
    let own = logs_of("own-ns");
    assert_ne!(own[0], pid, "{own:?}");
    assert_ne!(own[1], ipc, "{own:?}");
    assert_eq!(
        own[2..],
        ["1", "1000 2000", "2000 2777", "2000", "done"],
        "{own:?}"
    );
    // privileged: every capability the node has, no seccomp filter, no no_new_privs.
    assert_eq!(
        logs_of("privileged"),
        [
            own_status_line("CapBnd:").replace("CapBnd", "CapEff"),
            "NoNewPrivs: 0".into(),
            "Seccomp: 0".into(),
            "done".into()
        ]
    );
    // An unsafe sysctl: rejected by the node as the kubelet does.
    c.wait_for("the unsafe-sysctl rejection", LONG, || {
        c.pod_field("unsafe-sysctl", "{.status.phase}").as_deref() == Some("Failed")
    });
    assert_eq!(
        c.pod_field("unsafe-sysctl", "{.status.reason}").as_deref(),
        Some("SysctlForbidden")
    );
    assert_eq!(
        c.pod_field("unsafe-sysctl", "{.status.message}").as_deref(),
        Some(r#"Pod was rejected: forbidden sysctl: "kernel.msgmax" not allowlisted"#)
    );
    c.kubectl_ok(&[
        "delete",
        "pod",
        "host-ns",
        "own-ns",
        "privileged",
        "unsafe-sysctl",
        "--wait=false",
    ]);
}

#[test]
fn security_end_to_end() {
    let _g = serial();
    let c = Cluster::up();
    kubectl_create_token(&c);
    pod_security_admission(&c);
    security_context_from_inside(&c);
    security_context_namespaces_sysctls_fs_group_privileged(&c);
    service_account_token_in_a_pod(&c);
}
