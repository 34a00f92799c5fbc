//! A pod whose sandbox dies (its supervisor killed): the kubelet's `SandboxChanged` rules
//! (`sandbox.rs`) on the fake runtime under paused time.

use podvisor_runtime::fake::{Attempt, FakeCall, FakeScript};
use podvisor_runtime::{ContainerRuntime, SUPERVISOR_LOST, SandboxState};

use crate::api::EventType;
use crate::pod::sandbox::SANDBOX_CHANGED_MESSAGE;
use crate::testing::builders::*;
use crate::testing::{WorkerHarness as Harness, advance, s};

const UID: &str = POD_UID;

async fn sandbox_state(h: &Harness) -> Option<SandboxState> {
    h.rt.sandbox_status(UID).await.ok().map(|s| s.state)
}

#[tokio::test(start_paused = true)]
async fn a_dead_sandbox_is_recreated_and_its_containers_restarted() {
    let h = Harness::new();
    let mut p = pod("Always", vec![container("app"), container("side")], None);
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(3600);
    let _w = h.start(p).await;
    advance(s(5)).await;
    let started = h.last().start_time.clone();
    assert!(h.rt.lose_sandbox(UID));
    advance(s(1)).await;
    assert_eq!(sandbox_state(&h).await, Some(SandboxState::Ready));
    let (ty, msg) = h.event("SandboxChanged").expect("SandboxChanged event");
    assert_eq!(
        (ty, msg.as_str()),
        (EventType::Normal, SANDBOX_CHANGED_MESSAGE)
    );
    let removes =
        h.rt.calls()
            .into_iter()
            .filter(|r| matches!(r.call, FakeCall::RemoveSandbox { .. }))
            .count();
    assert_eq!(removes, 1, "what was left is killed and removed");
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert_eq!(
        st.start_time, started,
        "the pod's start time (deadline) is kept"
    );
    for name in ["app", "side"] {
        let c = cs(&st, name);
        assert_eq!(c.restart_count, 1, "{name}");
        assert!(c.ready && c.state.unwrap().running.is_some(), "{name}");
        let last = c.last_state.unwrap().terminated.unwrap();
        assert_eq!(
            (last.exit_code, last.reason.as_deref()),
            (137, Some("Error")),
            "{name}"
        );
        assert_eq!(h.start_times(name), [s(0), s(5)], "{name}");
    }
    // a second death: the counts go on, after the crash back-off (10 s)
    assert!(h.rt.lose_sandbox(UID));
    advance(s(5)).await;
    assert_eq!(
        waiting_reason(&h.last(), "app").as_deref(),
        Some("CrashLoopBackOff")
    );
    advance(s(6)).await;
    assert_eq!(cs(&h.last(), "app").restart_count, 2);
    assert_eq!(phase(&h.last()), "Running");
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_again_in_a_new_sandbox_before_the_app() {
    let h = Harness::new();
    h.rt.script("init1", FakeScript::always(Attempt::exits_after(s(2), 0)));
    let p = init_pod(
        "Always",
        vec![container("init1"), sidecar("side")],
        vec![container("app")],
        None,
    );
    let _w = h.start(p).await;
    advance(s(5)).await;
    assert_eq!(phase(&h.last()), "Running");
    assert!(h.rt.lose_sandbox(UID));
    advance(s(1)).await;
    // init1 (which had completed) runs again; nothing after it starts before it completes
    assert_eq!(h.start_times("init1"), [s(0), s(5)]);
    assert_eq!(h.start_times("side"), [s(2)]);
    assert_eq!(h.start_times("app"), [s(2)]);
    advance(s(2)).await;
    assert_eq!(h.start_times("side"), [s(2), s(7)]);
    assert_eq!(h.start_times("app"), [s(2), s(7)]);
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert_eq!(ics(&st, "init1").restart_count, 1);
    assert_eq!(ics(&st, "side").restart_count, 1);
    assert_eq!(cs(&st, "app").restart_count, 1);
}

#[tokio::test(start_paused = true)]
async fn never_keeps_the_dead_sandbox_and_fails_the_pod() {
    let h = Harness::new();
    let _w = h.start(pod("Never", vec![container("app")], None)).await;
    advance(s(5)).await;
    assert!(h.rt.lose_sandbox(UID));
    advance(s(2)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Failed");
    let t = cs(&st, "app").state.unwrap().terminated.unwrap();
    assert_eq!(t.exit_code, 137);
    assert_eq!(t.message.as_deref(), Some(SUPERVISOR_LOST));
    assert!(h.event("SandboxChanged").is_none());
    assert_eq!(h.start_times("app").len(), 1);
    assert_eq!(sandbox_state(&h).await, Some(SandboxState::NotReady));
}

#[tokio::test(start_paused = true)]
async fn a_readopted_dead_sandbox_is_recreated() {
    let h = Harness::new();
    let w = h.start(pod("Always", vec![container("app")], None)).await;
    advance(s(5)).await;
    let p = w.pod.clone();
    w.stop_agent().await;
    assert!(h.rt.lose_sandbox(UID));
    advance(s(5)).await;
    let _w2 = h.start(p).await;
    advance(s(1)).await;
    assert!(h.event("SandboxChanged").is_some());
    let c = cs(&h.last(), "app");
    assert_eq!(c.restart_count, 1);
    assert!(c.state.unwrap().running.is_some());
    assert_eq!(sandbox_state(&h).await, Some(SandboxState::Ready));
}
