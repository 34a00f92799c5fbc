//! Security end to end with the real binary and kubectl, one cluster for every case:
//! a pod reads its mounted service-account token and lists pods with it (curl against the
//! API server, from inside the pod: a `host` RuntimeClass pod shares the node's network), the
//! token stops working once the pod is deleted, `kubectl create token` tokens
//! authenticate as the service account, each securityContext field is checked from inside
//! the container (`id`, `/proc/self/status`, writing to `/`), and `runAsNonRoot` refuses a
//! root container with the kubelet's message.

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
    assert_eq!(
        api_status(c, token, "/api/v1/namespaces/default/pods"),
        "200"
    );
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

#[test]
fn security_end_to_end() {
    let _g = serial();
    let c = Cluster::up();
    kubectl_create_token(&c);
    security_context_from_inside(&c);
    service_account_token_in_a_pod(&c);
}
