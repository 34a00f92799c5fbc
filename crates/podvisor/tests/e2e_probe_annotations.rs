//! Acceptance test: probe results visible on the pod (issue 6,
//! docs/design/0002-probe-results.md), read the way a user would, with
//! `kubectl get pod -o jsonpath='{.metadata.annotations.probes\.podvisor\.io/<container>}'`.

#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(90);

fn annotation(c: &Cluster, pod: &str, container: &str) -> Option<serde_json::Value> {
    let raw = c.pod_field(
        pod,
        &format!("{{.metadata.annotations.probes\\.podvisor\\.io/{container}}}"),
    )?;
    serde_json::from_str(raw.trim()).ok()
}

fn results(v: &serde_json::Value) -> Vec<String> {
    v["readiness"]["last"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["result"].as_str().map(String::from))
        .collect()
}

#[test]
fn readiness_history_tells_a_timeout_from_a_failure() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("probes");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  terminationGracePeriodSeconds: 2
  runtimeClassName: host
  containers:
  - name: web
    image: busybox
    command: ["sh", "-c", "sleep 1000 & wait", "{m}"]
    readinessProbe:
      exec: {{command: ["true"]}}
      initialDelaySeconds: 5
      periodSeconds: 1
  - name: slow
    image: busybox
    command: ["sh", "-c", "sleep 1000 & wait", "{m}"]
    readinessProbe:
      exec: {{command: ["sleep", "30"]}}
      timeoutSeconds: 1
      periodSeconds: 2
  - name: bad
    image: busybox
    command: ["sh", "-c", "sleep 1000 & wait", "{m}"]
    readinessProbe:
      exec: {{command: ["sh", "-c", "echo not ready yet; exit 1"]}}
      periodSeconds: 1
"#
    ));
    // web turns ready: that status write carries the histories of all three
    c.wait_for("web ready", LONG, || {
        c.pod_field(
            "probed",
            "{.status.containerStatuses[?(@.name==\"web\")].ready}",
        )
        .as_deref()
            == Some("true")
    });
    c.wait_for("the annotations", LONG, || {
        let slow = annotation(&c, "probed", "slow");
        let bad = annotation(&c, "probed", "bad");
        let web = annotation(&c, "probed", "web");
        slow.is_some_and(|v| results(&v).iter().any(|r| r == "timeout"))
            && bad.is_some_and(|v| results(&v).iter().any(|r| r == "failure"))
            && web.is_some_and(|v| results(&v).iter().any(|r| r == "success"))
    });
    let slow = annotation(&c, "probed", "slow").expect("slow");
    assert!(
        results(&slow).iter().all(|r| r == "timeout"),
        "a probe that hangs times out, it does not fail: {slow}"
    );
    assert_eq!(slow["readiness"]["state"], "Failure", "{slow}");
    let bad = annotation(&c, "probed", "bad").expect("bad");
    assert!(
        results(&bad).iter().all(|r| r == "failure"),
        "the application said no: {bad}"
    );
    let last = bad["readiness"]["last"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["out"].as_str().unwrap_or("").contains("not ready yet"),
        "{bad}"
    );
    let web = annotation(&c, "probed", "web").expect("web");
    assert_eq!(web["readiness"]["state"], "Success", "{web}");
    // the pod stays not Ready (slow and bad), and describe shows the annotation
    let d = c.kubectl_ok(&["describe", "pod", "probed"]);
    assert!(d.contains("probes.podvisor.io/slow"), "{d}");
    c.kubectl_ok(&["delete", "pod", "probed", "--wait=true", "--timeout=60s"]);
    assert!(find_pids(&m).is_empty(), "processes left behind");
}
