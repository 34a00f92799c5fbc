//! The `probes.podvisor.io/<container>` annotations (docs/design/0002-probe-results.md) as the
//! pod worker writes them, on the fake runtime under paused time: together with the status
//! write of a readiness transition, then at most once a minute while the history changes;
//! annotations of containers that are not in the spec are removed.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use podvisor_agent::testing::{PodApiCall, advance, s};
use podvisor_runtime::fake::{ExecScript, FakeScript};
use worker_support::Harness;
use worker_support::builders;

mod worker_support;

fn exec_probe(cmd: &str, timeout: i32, initial_delay: i32) -> Probe {
    Probe {
        timeout_seconds: Some(timeout),
        initial_delay_seconds: Some(initial_delay),
        failure_threshold: Some(1),
        ..builders::exec_probe(&[cmd])
    }
}

/// The kit's pod `p` (restartPolicy Always, the API default) with `annotations`.
fn pod(containers: Vec<Container>, annotations: Option<BTreeMap<String, String>>) -> Pod {
    let mut p = builders::pod("Always", containers, None);
    p.metadata.annotations = annotations;
    p
}

impl Harness {
    /// Times (since start) of the annotation patches.
    fn patch_times(&self) -> Vec<Duration> {
        self.api
            .annotation_patches()
            .into_iter()
            .map(|(at, _)| at - self.t0)
            .collect()
    }

    fn status_times(&self) -> Vec<Duration> {
        self.api
            .calls()
            .into_iter()
            .filter(|(_, c)| matches!(c, PodApiCall::UpdateStatus { .. }))
            .map(|(at, _)| at - self.t0)
            .collect()
    }

    fn annotation(&self, container: &str) -> serde_json::Value {
        let raw = self
            .api
            .annotations()
            .get(&format!("probes.podvisor.io/{container}"))
            .cloned()
            .unwrap_or_else(|| panic!("no annotation for {container}"));
        serde_json::from_str(&raw).expect("the annotation is JSON")
    }
}

fn last_result(v: &serde_json::Value) -> String {
    let runs = v["readiness"]["last"].as_array().expect("runs");
    runs.last().expect("a run")["result"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn annotations_come_with_the_readiness_transition_and_tell_timeout_from_failure() {
    let web = Container {
        name: "web".into(),
        readiness_probe: Some(exec_probe("web-ready", 1, 5)),
        ..Default::default()
    };
    let slow = Container {
        name: "slow".into(),
        readiness_probe: Some(exec_probe("slow-ready", 1, 0)),
        ..Default::default()
    };
    let bad = Container {
        name: "bad".into(),
        readiness_probe: Some(exec_probe("bad-ready", 1, 0)),
        ..Default::default()
    };
    let script = FakeScript::default()
        .exec(["slow-ready"], ExecScript::hang())
        .exec(["bad-ready"], ExecScript::exit(1).output("not yet"));
    let h = Harness::start(pod(vec![web, slow, bad], None), script).await;

    // the status write of the running containers carries the (still empty) histories
    assert_eq!(h.patch_times(), [s(0)]);
    assert_eq!(
        h.annotation("slow")["readiness"]["last"],
        serde_json::json!([])
    );
    advance(s(9)).await;
    assert_eq!(
        h.patch_times(),
        [s(0)],
        "probe runs without a status change write nothing"
    );
    // web's first run past its initial delay (the 10 s tick) makes it ready: the status
    // write and the annotations go out together
    advance(s(2)).await;
    let ready_at = *h.status_times().last().expect("a status write");
    assert_eq!(ready_at, s(10));
    let st = h.api.last_status().unwrap();
    let ready: Vec<(String, bool)> = st
        .container_statuses
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.ready))
        .collect();
    assert!(ready.contains(&("web".to_string(), true)), "{ready:?}");
    assert_eq!(h.patch_times(), [s(0), s(10)]);

    let slow = h.annotation("slow");
    assert_eq!(last_result(&slow), "timeout", "{slow}");
    assert_eq!(slow["readiness"]["state"], "Failure");
    let bad = h.annotation("bad");
    assert_eq!(last_result(&bad), "failure", "{bad}");
    let bad_run = bad["readiness"]["last"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(bad_run["out"], "not yet");
    let web = h.annotation("web");
    assert_eq!(last_result(&web), "success", "{web}");
    assert_eq!(web["readiness"]["state"], "Success");

    // nothing changes state any more: the histories move on and are refreshed once a minute
    advance(s(60)).await;
    assert_eq!(h.patch_times(), [s(0), s(10), s(70)]);
    advance(s(60)).await;
    assert_eq!(h.patch_times(), [s(0), s(10), s(70), s(130)]);
    let slow = h.annotation("slow");
    assert_eq!(
        slow["readiness"]["last"].as_array().unwrap().len(),
        5,
        "the last five runs"
    );
    assert_eq!(
        h.status_times().last(),
        Some(&s(10)),
        "no status write since"
    );
}

#[tokio::test(start_paused = true)]
async fn annotations_of_containers_not_in_the_spec_are_removed() {
    let annotations = BTreeMap::from([
        ("probes.podvisor.io/old".to_string(), "{}".to_string()),
        ("keep.example.com/x".to_string(), "y".to_string()),
    ]);
    let app = Container {
        name: "app".into(),
        ..Default::default()
    };
    let h = Harness::start(pod(vec![app], Some(annotations)), FakeScript::default()).await;
    advance(s(1)).await;
    let patches = h.api.annotation_patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(
        patches[0].1,
        BTreeMap::from([("probes.podvisor.io/old".to_string(), None)])
    );
    assert_eq!(h.patch_times()[0], h.status_times()[0]);
    advance(s(120)).await;
    assert_eq!(h.api.annotation_patches().len(), 1, "nothing more to write");
}
