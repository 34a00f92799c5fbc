//! Ephemeral containers (`kubectl debug`) on the fake runtime under paused time: added to a
//! running pod they start once, are never restarted, are reported in
//! `ephemeralContainerStatuses` (never ready) without touching the pod's phase, and are
//! stopped with the pod.

use k8s_openapi::api::core::v1::{EphemeralContainer, PodStatus};
use podvisor_runtime::Signal;
use podvisor_runtime::fake::{Attempt, FakeScript};

use crate::testing::builders::*;
use crate::testing::{WorkerHarness as Harness, advance, s};

fn ecs(st: &PodStatus, name: &str) -> k8s_openapi::api::core::v1::ContainerStatus {
    st.ephemeral_container_statuses
        .as_ref()
        .and_then(|v| v.iter().find(|c| c.name == name))
        .cloned()
        .unwrap_or_else(|| panic!("no ephemeral status for {name}: {st:?}"))
}

fn debug_container(name: &str) -> EphemeralContainer {
    EphemeralContainer {
        name: name.into(),
        image: Some("busybox".into()),
        command: Some(vec!["sh".into()]),
        target_container_name: Some("app".into()),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn an_ephemeral_container_runs_once_and_leaves_the_phase_alone() {
    let h = Harness::new();
    h.rt.script("dbg", FakeScript::always(Attempt::exits_after(s(2), 1)));
    let mut w = h.start(pod("Always", vec![container("app")], None)).await;
    assert_eq!(phase(&h.last()), "Running");
    assert!(h.last().ephemeral_container_statuses.is_none());
    w.update(|p| {
        p.spec.as_mut().unwrap().ephemeral_containers = Some(vec![debug_container("dbg")]);
    });
    advance(s(1)).await;
    let st = h.last();
    let running = ecs(&st, "dbg");
    assert!(running.state.unwrap().running.is_some());
    assert!(!running.ready, "ephemeral containers are never ready");
    assert_eq!(phase(&st), "Running");
    assert_eq!(condition(&st, "Ready").0, "True");
    // It exits 1 under restartPolicy Always: not restarted, the pod keeps running.
    advance(s(60)).await;
    let st = h.last();
    let done = ecs(&st, "dbg");
    assert_eq!(done.state.unwrap().terminated.unwrap().exit_code, 1);
    assert_eq!(done.restart_count, 0);
    assert_eq!(h.start_times("dbg").len(), 1, "never restarted");
    assert_eq!(phase(&st), "Running");
    assert_eq!(
        h.event("Started").map(|e| e.1),
        Some("Started container app".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn a_running_ephemeral_container_is_stopped_with_the_pod() {
    let h = Harness::new();
    h.rt.script("dbg", FakeScript::always(Attempt::forever()));
    let mut w = h
        .start(pod("Always", vec![container("app")], Some(5)))
        .await;
    w.update(|p| {
        p.spec.as_mut().unwrap().ephemeral_containers = Some(vec![debug_container("dbg")]);
    });
    advance(s(1)).await;
    assert!(ecs(&h.last(), "dbg").state.unwrap().running.is_some());
    w.delete(&h.clock, 5);
    advance(s(1)).await;
    // Asked to stop with the pod's grace, like the app container.
    let to_dbg = h.signals_to("dbg");
    assert_eq!(
        to_dbg.first().map(|(_, sig)| *sig),
        Some(Signal::TERM),
        "{to_dbg:?}"
    );
}
