//! Probes and hooks inside the agent's pod worker, on the fake runtime under paused time:
//! readiness drives containerStatuses[].ready and the Ready/ContainersReady conditions,
//! liveness kills and restarts through the worker's restart policy, startup gates `started`,
//! postStart gates `running`, and a deletion pre-empts a hanging postStart.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Probe};
use podvisor_agent::WallClock;
use podvisor_agent::api::EventType;
use podvisor_agent::testing::{advance, s, settle};
use podvisor_runtime::Signal;
use podvisor_runtime::fake::{Attempt, ExecScript, FakeCall, FakeScript};
use worker_support::Harness;
use worker_support::builders::{container, exec_hook, exec_probe, pod, with_post_start};

mod probe_support;
mod worker_support;

impl Harness {
    fn condition(&self, t: &str) -> (String, Option<String>) {
        let st = self.last();
        let c = st
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == t)
            .expect("condition");
        (c.status, c.reason)
    }

    fn events(&self, reason: &str) -> Vec<(EventType, String)> {
        self.kit
            .events
            .events()
            .into_iter()
            .filter(|(_, e)| e.reason == reason)
            .map(|(_, e)| (e.type_, e.message))
            .collect()
    }

    fn delete(&mut self, grace: i64) {
        self.worker.delete(&self.kit.clock, grace);
    }

    fn signals(&self) -> Vec<(Duration, Signal)> {
        self.kit
            .signals()
            .into_iter()
            .map(|(at, _, signal)| (at, signal))
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn readiness_drives_container_ready_and_the_pod_conditions() {
    let mut c = Container {
        name: "web".into(),
        ..Default::default()
    };
    c.readiness_probe = Some(Probe {
        initial_delay_seconds: Some(15),
        ..exec_probe(&["ready"])
    });
    let h = Harness::start(pod("Always", vec![c], None), FakeScript::default()).await;
    advance(s(5)).await;
    let cs = h.last().container_statuses.unwrap()[0].clone();
    assert!(cs.state.unwrap().running.is_some());
    assert!(!cs.ready);
    assert_eq!(
        h.condition("Ready"),
        ("False".into(), Some("ContainersNotReady".into()))
    );
    assert_eq!(h.condition("ContainersReady").0, "False");
    advance(s(20)).await;
    let cs = h.last().container_statuses.unwrap()[0].clone();
    assert!(
        cs.ready,
        "ready after the first success past the initial delay"
    );
    assert_eq!(h.condition("Ready").0, "True");
    assert_eq!(h.condition("ContainersReady").0, "True");
}

#[tokio::test(start_paused = true)]
async fn a3_liveness_failure_kills_and_restarts_through_the_worker() {
    let mut c = Container {
        name: "app".into(),
        ..Default::default()
    };
    c.liveness_probe = Some(Probe {
        initial_delay_seconds: Some(15),
        failure_threshold: Some(1),
        ..exec_probe(&["cat", "/tmp/health"])
    });
    let script = FakeScript::always(Attempt::forever()).exec(
        ["cat", "/tmp/health"],
        ExecScript::exit(1).output("cat: can't open '/tmp/health'"),
    );
    let h = Harness::start(pod("Always", vec![c], Some(30)), script).await;
    advance(s(25)).await;
    assert_eq!(
        h.events("Unhealthy"),
        vec![(
            EventType::Warning,
            "Liveness probe failed: cat: can't open '/tmp/health'".to_string()
        )]
    );
    assert!(
        h.events("Killing").contains(&(
            EventType::Normal,
            "Container app failed liveness probe, will be restarted".into()
        )),
        "{:?}",
        h.events("Killing")
    );
    let cs = h.last().container_statuses.unwrap()[0].clone();
    assert_eq!(cs.restart_count, 1, "the first restart is immediate");
    assert!(cs.state.unwrap().running.is_some());
    assert_eq!(h.signals()[0], (s(20), Signal::TERM));
}

#[tokio::test(start_paused = true)]
async fn a18_probe_grace_overrides_the_pods_for_the_kill() {
    let mut c = Container {
        name: "app".into(),
        ..Default::default()
    };
    c.liveness_probe = Some(Probe {
        initial_delay_seconds: Some(10),
        failure_threshold: Some(1),
        termination_grace_period_seconds: Some(5),
        ..exec_probe(&["false"])
    });
    let script =
        FakeScript::always(Attempt::forever().ignore_stop()).exec(["false"], ExecScript::exit(1));
    let h = Harness::start(pod("Always", vec![c], Some(500)), script).await;
    advance(s(30)).await;
    let sig = h.signals();
    assert_eq!(sig[0], (s(10), Signal::TERM));
    assert_eq!(sig[1], (s(15), Signal::KILL), "{sig:?}");
    let cs = h.last().container_statuses.unwrap()[0].clone();
    assert!(cs.restart_count >= 1);
}

#[tokio::test(start_paused = true)]
async fn startup_probe_gates_started_and_ready() {
    let mut c = Container {
        name: "app".into(),
        ..Default::default()
    };
    c.startup_probe = Some(Probe {
        period_seconds: Some(5),
        failure_threshold: Some(10),
        ..exec_probe(&["up"])
    });
    let h = Harness::start(
        pod("Always", vec![c], None),
        FakeScript::default().exec(["up"], ExecScript::exit(1)),
    )
    .await;
    advance(s(12)).await;
    let cs = h.last().container_statuses.unwrap()[0].clone();
    assert_eq!(cs.started, Some(false));
    assert!(!cs.ready);
    assert!(h.events("Killing").is_empty());
}

#[tokio::test(start_paused = true)]
async fn post_start_gates_running_and_a_failure_restarts() {
    let c = with_post_start(container("app"), exec_hook(&["hook"]));
    let script = FakeScript::always(Attempt::forever())
        .exec(["hook"], ExecScript::exit(3).taking(s(5)).output("boom"));
    let h = Harness::start(pod("Always", vec![c], Some(30)), script).await;
    advance(s(2)).await;
    let cs = h.last().container_statuses.unwrap()[0].clone();
    let st = cs.state.unwrap();
    assert!(
        st.running.is_none(),
        "not running while postStart runs: {st:?}"
    );
    assert_eq!(
        st.waiting.unwrap().reason.as_deref(),
        Some("ContainerCreating")
    );
    advance(s(5)).await;
    assert_eq!(
        h.events("FailedPostStartHook"),
        vec![(EventType::Warning, "PostStartHook failed".to_string())]
    );
    assert!(
        h.events("Killing")
            .contains(&(EventType::Normal, "FailedPostStartHook".into()))
    );
    let restarts =
        h.rt.calls()
            .into_iter()
            .filter(|r| matches!(r.call, FakeCall::StartContainer { .. }))
            .count();
    assert!(restarts >= 2, "restarted per policy");
}

#[tokio::test(start_paused = true)]
async fn deletion_preempts_a_hanging_post_start() {
    let c = with_post_start(container("app"), exec_hook(&["hang"]));
    let script = FakeScript::always(Attempt::forever()).exec(["hang"], ExecScript::hang());
    let mut h = Harness::start(pod("Always", vec![c], Some(10)), script).await;
    advance(s(3)).await;
    h.delete(10);
    settle().await;
    advance(s(15)).await;
    assert_eq!(
        h.rt.running_count(),
        0,
        "every process gone within the grace + 2 s"
    );
    assert!(!h.api.deletes().is_empty(), "the object is removed");
}

#[tokio::test(start_paused = true)]
async fn a22_a23_readiness_turns_false_while_terminating_without_liveness_kills() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut c = Container {
        name: "app".into(),
        ..Default::default()
    };
    c.readiness_probe = Some(Probe {
        period_seconds: Some(2),
        failure_threshold: Some(1),
        ..exec_probe(&["cat", "/tmp/ready"])
    });
    c.liveness_probe = Some(Probe {
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..exec_probe(&["cat", "/tmp/liveness"])
    });
    let base = SystemTime::UNIX_EPOCH + s(1_700_000_000);
    let trt = probe_support::TestRuntime::new(base);
    let clock = WallClock::tokio(base);
    // On SIGTERM the app removes both files and exits 0 after 20 s.
    trt.fake.script_default(FakeScript::always(
        Attempt::forever().on_stop_exit(s(20), 0),
    ));
    let gone = Arc::new(AtomicBool::new(false));
    let g = gone.clone();
    trt.on_exec(move |_, _| {
        Some(if g.load(Ordering::SeqCst) {
            probe_support::ExecBehavior::Exit(1, "cat: no such file".into())
        } else {
            probe_support::ExecBehavior::Exit(0, String::new())
        })
    });
    let fake = Arc::new(trt.fake.clone());
    let mut h = Harness::start_on(pod("Always", vec![c], Some(30)), fake, trt.clone(), clock).await;
    advance(s(5)).await;
    assert_eq!(h.condition("Ready").0, "True");
    h.delete(30);
    settle().await;
    gone.store(true, Ordering::SeqCst);
    advance(s(5)).await;
    let st = h.last();
    assert_eq!(
        h.condition("Ready"),
        ("False".into(), Some("ContainersNotReady".into())),
        "Ready turns False while the pod is terminating"
    );
    assert!(h.api.deletes().is_empty(), "the pod still exists");
    assert!(
        st.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .running
            .is_some()
    );
    assert!(
        h.events("Killing")
            .iter()
            .all(|(_, m)| !m.contains("failed liveness probe"))
    );
    assert!(
        h.events("Unhealthy")
            .iter()
            .all(|(_, m)| !m.contains("Liveness probe failed"))
    );
    assert!(!h.events("Unhealthy").is_empty(), "readiness kept probing");
}
