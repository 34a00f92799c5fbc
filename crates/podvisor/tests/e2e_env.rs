//! Acceptance tests: a container's environment from the API (`env[].valueFrom`, `envFrom`),
//! driven through the real `kubectl` against `podvisor up`: ConfigMap and Secret values, the
//! downward API and resource fields reach the process; a missing ConfigMap keeps the pod
//! Pending with `CreateContainerConfigError` until it is created.

#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(60);

fn logs(c: &Cluster, pod: &str) -> String {
    c.kubectl_ok(&["logs", pod])
}

fn status_column(c: &Cluster, pod: &str) -> String {
    let out = c.kubectl_ok(&["get", "pod", pod, "--no-headers"]);
    out.split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn env_from_config_maps_secrets_and_the_downward_api_reaches_the_process() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("env");
    c.kubectl_ok(&[
        "create",
        "configmap",
        "app-config",
        "--from-literal=LEVEL=debug",
        "--from-literal=mode=fast",
        "--from-literal=1bad=skipped",
    ]);
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
        "--from-literal=USER=app",
        "--from-literal=9lives=skipped",
    ]);
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: env-pod
  labels: {{app: shop}}
  annotations: {{team: blue}}
spec:
  restartPolicy: Never
  serviceAccountName: default
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo POD=$POD; echo NS=$NS; echo UID=$POD_UID; echo NODE=$NODE; echo POD_IP=$POD_IP; echo HOST_IP=$HOST_IP; echo APP=$APP; echo TEAM=$TEAM; echo SA=$SA; echo MODE=$MODE; echo PASSWORD=$PASSWORD; echo CFG_LEVEL=$CFG_LEVEL; echo USER=$USER; echo CFG_1bad=$CFG_1bad; echo MEM=$MEM; echo CPUS=$CPUS; echo GREETING=$GREETING; echo ARG=$0", "$(GREETING)", "{m}"]
    resources:
      requests: {{memory: 32Mi}}
    envFrom:
    - prefix: CFG_
      configMapRef: {{name: app-config}}
    - secretRef: {{name: db}}
    env:
    - {{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: POD_UID, valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}}}
    - {{name: NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: HOST_IP, valueFrom: {{fieldRef: {{fieldPath: status.hostIP}}}}}}
    - {{name: APP, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['app']"}}}}}}
    - {{name: TEAM, valueFrom: {{fieldRef: {{fieldPath: "metadata.annotations['team']"}}}}}}
    - {{name: SA, valueFrom: {{fieldRef: {{fieldPath: spec.serviceAccountName}}}}}}
    - {{name: MODE, valueFrom: {{configMapKeyRef: {{name: app-config, key: mode}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: db, key: password}}}}}}
    - {{name: MEM, valueFrom: {{resourceFieldRef: {{resource: requests.memory, divisor: 1Mi}}}}}}
    - {{name: CPUS, valueFrom: {{resourceFieldRef: {{resource: limits.cpu}}}}}}
    - {{name: GREETING, value: "hello-$(POD)-$(CFG_LEVEL)"}}
"#
    ));
    c.wait_pod_phase("env-pod", "Succeeded", LONG);
    let out = logs(&c, "env-pod");
    let uid = c.pod_field("env-pod", "{.metadata.uid}").expect("uid");
    let ip = c.pod_field("env-pod", "{.status.podIP}").expect("pod IP");
    let host_ip = c.pod_field("env-pod", "{.status.hostIP}").expect("host IP");
    assert!(!ip.is_empty() && !uid.is_empty());
    for want in [
        "POD=env-pod".to_string(),
        "NS=default".into(),
        format!("UID={uid}"),
        format!("NODE={}", c.node),
        format!("POD_IP={ip}"),
        format!("HOST_IP={host_ip}"),
        "APP=shop".into(),
        "TEAM=blue".into(),
        "SA=default".into(),
        "MODE=fast".into(),
        "PASSWORD=hunter2".into(),
        "CFG_LEVEL=debug".into(),
        "USER=app".into(),
        "CFG_1bad=skipped".into(),
        "MEM=32".into(),
        "GREETING=hello-env-pod-debug".into(),
        "ARG=hello-env-pod-debug".into(),
    ] {
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}"
        );
    }
    // no cpu limit: the node's allocatable cpu
    let cpus = c.kubectl_ok(&[
        "get",
        "node",
        &c.node,
        "-o",
        "jsonpath={.status.allocatable.cpu}",
    ]);
    assert!(
        out.lines().any(|l| l == format!("CPUS={}", cpus.trim())),
        "CPUS should be {cpus} in:\n{out}"
    );
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=env-pod,reason=InvalidEnvironmentVariableNames",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert_eq!(
        events.trim(),
        "Keys [9lives] from the EnvFrom secret default/db were skipped since they are considered invalid environment variable names.",
        "with its prefix the ConfigMap's 1bad is valid; the Secret's 9lives is not"
    );
    assert!(find_pids(&m).is_empty(), "processes left behind");
}

#[test]
fn missing_config_map_keeps_the_pod_pending_until_it_is_created() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("late");
    c.apply(
        &pods::shell_pod("waits", "echo MODE=$MODE; sleep 1000 & wait", &m)
            .container_yaml(
                "    env:\n    - {name: MODE, valueFrom: {configMapKeyRef: {name: late, key: mode}}}\n",
            )
            .yaml(),
    );
    c.wait_for("STATUS CreateContainerConfigError", LONG, || {
        status_column(&c, "waits") == "CreateContainerConfigError"
    });
    assert_eq!(
        c.pod_field("waits", "{.status.phase}").as_deref(),
        Some("Pending")
    );
    assert_eq!(
        c.pod_field(
            "waits",
            "{.status.containerStatuses[0].state.waiting.message}"
        )
        .as_deref(),
        Some("configmap \"late\" not found")
    );
    let failed = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=waits,reason=Failed",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        failed.contains("Error: configmap \"late\" not found"),
        "{failed}"
    );
    assert!(find_pids(&m).is_empty(), "nothing runs yet");

    c.kubectl_ok(&["create", "configmap", "late", "--from-literal=mode=slow"]);
    c.wait_pod_phase("waits", "Running", LONG);
    assert_eq!(status_column(&c, "waits"), "Running");
    c.wait_for("the log line", LONG, || {
        logs(&c, "waits").contains("MODE=slow")
    });
    assert_eq!(
        c.pod_field("waits", "{.status.containerStatuses[0].restartCount}")
            .as_deref(),
        Some("0")
    );
    c.kubectl_ok(&["delete", "pod", "waits", "--wait=true", "--timeout=60s"]);
    assert!(find_pids(&m).is_empty(), "processes left behind");
}
