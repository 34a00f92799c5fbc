//! The table of lifecycle rules (spec §1, §2, §4; §8 case ids) on the fake runtime under
//! paused time: one pod worker, driven directly, with recording fakes for the API and events.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, Lifecycle, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podvisor_runtime::fake::{Attempt, ExecScript, FakeCall, FakeScript};
use podvisor_runtime::{ContainerRuntime, Signal};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::EventType;
use crate::clock::to_time;
use crate::pod::{PodWorker, RuntimeNote, WorkerInput};
use crate::testing::builders::*;
use crate::testing::{PodApiCall, WorkerHarness as Harness, advance, s, settle};

const UID: &str = POD_UID;

// ---------------------------------------------------------------- §2: phases and conditions

#[tokio::test(start_paused = true)]
async fn rule_2_1_always_running_container_is_running_and_ready() {
    let h = Harness::new();
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert_eq!(condition(&st, "Ready").0, "True");
    assert_eq!(condition(&st, "ContainersReady").0, "True");
    assert_eq!(condition(&st, "PodReadyToStartContainers").0, "True");
    assert_eq!(condition(&st, "Initialized").0, "True");
    assert_eq!(condition(&st, "PodScheduled").0, "True");
    let c = cs(&st, "app");
    assert!(c.ready && c.started == Some(true) && c.restart_count == 0);
    assert!(c.container_id.unwrap().starts_with("podvisor://"));
    assert_eq!(st.host_ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(st.pod_ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
    assert!(st.start_time.is_some());
    assert_eq!(h.reasons(), ["Pulled", "Created", "Started"]);
    assert_eq!(
        h.event("Pulled").unwrap().1,
        "Container image \"busybox\" already present on machine"
    );
    assert_eq!(h.event("Created").unwrap().1, "Created container: app");
    assert_eq!(h.event("Started").unwrap().1, "Started container app");
    // nothing changes: nothing is rewritten
    let n = h.api.statuses().len();
    advance(s(120)).await;
    assert_eq!(h.api.statuses().len(), n);
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_starts_running_is_counted_in_the_pod_start_latency_histogram() {
    let hist = &podvisor_kit::metrics::KUBELET_POD_START_DURATION_SECONDS;
    let before = hist.count(&[]);
    let h = Harness::new();
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    assert_eq!(phase(&h.last()), "Running");
    // Other tests of this process may count pods too: at least this one was counted.
    assert!(hist.count(&[]) > before);
}

#[tokio::test(start_paused = true)]
async fn rule_2_1_never_exit_0_is_succeeded_and_exit_1_is_failed() {
    for (code, want, reason) in [(0, "Succeeded", "Completed"), (1, "Failed", "Error")] {
        let h = Harness::new();
        h.rt.script("app", FakeScript::always(Attempt::exits_after(s(3), code)));
        let _w = h.start(pod("Never", vec![container("app")], None)).await;
        advance(s(4)).await;
        let st = h.last();
        assert_eq!(phase(&st), want);
        let t = cs(&st, "app").state.unwrap().terminated.unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (code, Some(reason)));
        let ready_reason = if code == 0 {
            "PodCompleted"
        } else {
            "PodFailed"
        };
        assert_eq!(condition(&st, "Ready").1.as_deref(), Some(ready_reason));
        assert_eq!(h.starts().len(), 1, "Never restarts nothing");
        // the sandbox is kept (logs stay readable) while the object exists
        assert!(h.rt.has_sandbox(UID));
        assert!(h.api.deletes().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn rule_2_1_on_failure_restarts_failures_and_completes_on_success() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::sequence(vec![
            Attempt::exits_after(s(1), 1),
            Attempt::exits_after(s(1), 0),
        ]),
    );
    let _w = h
        .start(pod("OnFailure", vec![container("app")], None))
        .await;
    advance(s(1)).await;
    // first restart is immediate; while it runs the pod is Running
    assert_eq!(phase(&h.last()), "Running");
    advance(s(2)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Succeeded");
    assert_eq!(cs(&st, "app").restart_count, 1);
    assert_eq!(h.starts().len(), 2);
}

/// §8 C1: "should run with the expected status".
#[tokio::test(start_paused = true)]
async fn c1_run_with_the_expected_status() {
    let script = || {
        FakeScript::sequence(vec![
            Attempt::exits_after(s(1), 1),
            Attempt::exits_after(s(1), 0),
            Attempt::forever(),
        ])
    };
    for (policy, restarts, want_phase, ready) in [
        ("Always", 2, "Running", true),
        ("OnFailure", 1, "Succeeded", false),
        ("Never", 0, "Failed", false),
    ] {
        let h = Harness::new();
        h.rt.script("app", script());
        let _w = h.start(pod(policy, vec![container("app")], None)).await;
        advance(s(60)).await;
        let st = h.last();
        assert_eq!(phase(&st), want_phase, "{policy}");
        let c = cs(&st, "app");
        assert_eq!(c.restart_count, restarts, "{policy}");
        assert_eq!(c.ready, ready, "{policy}");
        assert_eq!(condition(&st, "Ready").0 == "True", ready, "{policy}");
    }
}

#[tokio::test(start_paused = true)]
async fn rule_2_1_one_never_started_container_keeps_the_pod_pending() {
    let h = Harness::new();
    h.rt.script("slow", FakeScript::always(Attempt::start_hangs()));
    let mut w = h
        .start(pod(
            "Always",
            vec![container("app"), container("slow")],
            None,
        ))
        .await;
    advance(s(5)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Pending");
    assert_eq!(
        waiting_reason(&st, "slow").as_deref(),
        Some("ContainerCreating")
    );
    assert_eq!(
        condition(&st, "Ready").2.as_deref(),
        Some("containers with unready status: [app slow]")
    );
    // a start that never returns does not block termination
    let t_del = Instant::now();
    w.delete(&h.clock, 30);
    advance(s(1)).await;
    assert_eq!(h.api.deletes().len(), 1);
    assert!(h.api.deletes()[0].0 - t_del <= s(1));
    assert_eq!(phase(&h.last()), "Failed", "the final status is terminal");
}

#[tokio::test(start_paused = true)]
async fn rule_2_3_oom_killed_reason() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::oom_after(s(2))));
    let _w = h.start(pod("Never", vec![container("app")], None)).await;
    advance(s(3)).await;
    let t = cs(&h.last(), "app").state.unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
    assert_eq!(phase(&h.last()), "Failed");
}

#[tokio::test(start_paused = true)]
async fn rule_2_3_create_container_error_is_waiting_with_the_message() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::create_fails("no command specified")),
    );
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    let st = h.last();
    let w = cs(&st, "app").state.unwrap().waiting.unwrap();
    assert_eq!(w.reason.as_deref(), Some("CreateContainerError"));
    assert!(w.message.unwrap().contains("no command specified"));
    assert_eq!(phase(&st), "Pending");
    let (ty, msg) = h.event("Failed").unwrap();
    assert_eq!(
        (ty, msg.as_str()),
        (EventType::Warning, "Error: no command specified")
    );
}

#[tokio::test(start_paused = true)]
async fn rule_2_3_start_error_is_terminated_128() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::start_fails(
            "exec: \"nope\": executable file not found",
        )),
    );
    let _w = h.start(pod("Never", vec![container("app")], None)).await;
    let st = h.last();
    let t = cs(&st, "app").state.unwrap().terminated.unwrap();
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (128, Some("StartError"))
    );
    assert_eq!(phase(&st), "Failed");
}

// ---------------------------------------------------------------- §4: restarts and back-off

#[tokio::test(start_paused = true)]
async fn rule_4_crash_loop_delays_are_0_10_20_40_80_160_300_300() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(1), 1)));
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    advance(s(1300)).await;
    let starts = h.starts();
    // each instance runs 1 s; delay = start[k+1] - (start[k] + 1 s)
    let delays: Vec<u64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0] - s(1)).as_secs())
        .collect();
    assert_eq!(&delays[..8], &[0, 10, 20, 40, 80, 160, 300, 300]);
}

#[tokio::test(start_paused = true)]
async fn rule_4_exit_0_under_always_backs_off_too() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(5), 0)));
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    advance(s(60)).await;
    let starts = h.starts();
    let delays: Vec<u64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0] - s(5)).as_secs())
        .collect();
    assert_eq!(&delays[..3], &[0, 10, 20]);
    assert_eq!(phase(&h.last()), "Running");
}

#[tokio::test(start_paused = true)]
async fn rule_4_back_off_resets_after_ten_minutes_running() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(601), 1)));
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    advance(s(601 * 3 + 5)).await;
    let starts = h.starts();
    let delays: Vec<u64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0] - s(601)).as_secs())
        .collect();
    assert_eq!(delays, vec![0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn rule_2_3_crash_loop_back_off_status_and_event() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(1), 2)));
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    advance(s(2)).await; // exit, immediate restart, second exit → 10 s back-off
    let st = h.last();
    let c = cs(&st, "app");
    let w = c.state.clone().unwrap().waiting.unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        w.message.as_deref(),
        Some("back-off 10s restarting failed container=app pod=p_default(uid-1)")
    );
    assert_eq!(c.restart_count, 1);
    let last = c.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
    assert!(!c.ready);
    assert_eq!(phase(&st), "Running");
    assert_eq!(
        condition(&st, "Ready").1.as_deref(),
        Some("ContainersNotReady")
    );
    let (ty, msg) = h.event("BackOff").unwrap();
    assert_eq!(ty, EventType::Warning);
    assert_eq!(
        msg,
        "Back-off restarting failed container app in pod p_default(uid-1)"
    );
    advance(s(10)).await;
    assert_eq!(cs(&h.last(), "app").restart_count, 2);
    advance(s(2)).await;
    let w = cs(&h.last(), "app").state.unwrap().waiting.unwrap();
    assert_eq!(
        w.message.as_deref(),
        Some("back-off 20s restarting failed container=app pod=p_default(uid-1)")
    );
}

#[tokio::test(start_paused = true)]
async fn rule_4_restart_count_is_monotone_and_counts_new_instances() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(1), 1)));
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    advance(s(400)).await;
    let counts: Vec<i32> = h
        .api
        .statuses()
        .iter()
        .map(|st| cs(st, "app").restart_count)
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!(*counts.last().unwrap() as usize, h.starts().len() - 1);
}

// ---------------------------------------------------------------- §1: graceful deletion

/// §8 N5: TERM handled with exit 0 → Succeeded before DELETED.
#[tokio::test(start_paused = true)]
async fn n5_term_honoured_exit_0_succeeds_then_object_deleted() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().on_stop_exit(s(1), 0)),
    );
    let mut w = h.start(pod("Always", vec![container("app")], None)).await;
    advance(s(5)).await;
    let t_del = Instant::now();
    w.delete(&h.clock, 30);
    advance(s(3)).await;
    assert_eq!(
        h.signals(),
        vec![(h.since(t_del), "app".into(), Signal::TERM)]
    );
    let deletes = h.api.deletes();
    assert_eq!(deletes.len(), 1);
    let (at, call) = &deletes[0];
    assert_eq!(
        call,
        &PodApiCall::Delete {
            namespace: "default".into(),
            name: "p".into(),
            uid: UID.into()
        }
    );
    assert_eq!(*at - t_del, s(1), "deleted as soon as the process exited");
    let st = h.last();
    assert_eq!(phase(&st), "Succeeded");
    assert_eq!(terminated_code(&st, "app"), Some(0));
    assert_eq!(
        condition(&st, "Ready"),
        ("False".into(), Some("PodCompleted".into()), None)
    );
    assert_eq!(
        condition(&st, "ContainersReady").1.as_deref(),
        Some("PodCompleted")
    );
    assert!(!h.rt.has_sandbox(UID));
    assert_eq!(h.event("Killing").unwrap().1, "Stopping container app");
    assert!(h.event("StopSignalNotHandled").is_none());
}

/// §1.4 net rule: terminal status, then cleanup, then the delete.
#[tokio::test(start_paused = true)]
async fn rule_1_4_order_is_stop_terminal_status_cleanup_delete() {
    let h = Harness::new();
    let mut w = h.start(pod("Always", vec![container("app")], None)).await;
    w.delete(&h.clock, 30);
    advance(s(1)).await;
    let api_calls = h.api.calls();
    let last_status_at = api_calls
        .iter()
        .filter(|(_, c)| matches!(c, PodApiCall::UpdateStatus { .. }))
        .map(|(t, _)| *t)
        .next_back()
        .unwrap();
    let (delete_at, _) = h.api.deletes()[0].clone();
    assert!(last_status_at <= delete_at);
    let rt_calls = h.rt.mutating_calls();
    let sig = rt_calls
        .iter()
        .position(|c| matches!(c, FakeCall::Signal { .. }))
        .unwrap();
    let rm = rt_calls
        .iter()
        .position(|c| matches!(c, FakeCall::RemoveSandbox { .. }))
        .unwrap();
    assert!(sig < rm);
    // a process killed by SIGTERM (no handler, exit 143) → Failed
    assert_eq!(phase(&h.last()), "Failed");
    assert_eq!(terminated_code(&h.last(), "app"), Some(143));
}

/// §8 N6: TERM ignored, grace 5 → SIGKILL at +5 s, 137, Failed; Terminating in between.
#[tokio::test(start_paused = true)]
async fn n6_term_ignored_is_killed_at_the_deadline() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::forever().ignore_stop()));
    let mut w = h.start(pod("Always", vec![container("app")], None)).await;
    let t_del = Instant::now();
    w.delete(&h.clock, 5);
    advance(s(4)).await;
    assert!(
        h.api.deletes().is_empty(),
        "still terminating before the deadline"
    );
    assert_eq!(phase(&h.last()), "Running");
    advance(s(2)).await;
    let sig: Vec<_> = h
        .signals()
        .into_iter()
        .map(|(t, _, s)| (t - h.since(t_del), s))
        .collect();
    assert_eq!(sig, vec![(s(0), Signal::TERM), (s(5), Signal::KILL)]);
    let st = h.last();
    assert_eq!(terminated_code(&st, "app"), Some(137));
    assert_eq!(phase(&st), "Failed");
    assert_eq!(condition(&st, "Ready").1.as_deref(), Some("PodFailed"));
    assert_eq!(h.api.deletes()[0].0 - t_del, s(5));
    let (ty, msg) = h.event("StopSignalNotHandled").unwrap();
    assert_eq!(ty, EventType::Warning);
    assert_eq!(
        msg,
        "PID 1 does not handle SIGTERM: it will be killed after the grace period"
    );
}

/// §8 N7: preStop `sleep 1000`, TGPS 10 → SIGTERM at 10 s, SIGKILL at 12 s.
#[tokio::test(start_paused = true)]
async fn n7_hanging_pre_stop_is_cut_at_the_deadline_then_2s_floor() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::forever().ignore_stop()));
    let c = with_pre_stop(container("app"), sleep_hook(1000));
    let mut w = h.start(pod("Always", vec![c], Some(10))).await;
    let t_del = Instant::now();
    w.delete(&h.clock, 10);
    advance(s(20)).await;
    let sig: Vec<_> = h
        .signals()
        .into_iter()
        .map(|(t, _, s)| (t - h.since(t_del), s))
        .collect();
    assert_eq!(sig, vec![(s(10), Signal::TERM), (s(12), Signal::KILL)]);
    // hard bound: processes gone by deadline + 2 s, object removed at once after
    assert_eq!(h.api.deletes()[0].0 - t_del, s(12));
}

/// §1.6: preStop runs first; SIGTERM when it ends; SIGKILL at max(grace, h + 2).
#[tokio::test(start_paused = true)]
async fn rule_1_6_pre_stop_first_then_signal_then_kill_at_the_deadline() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().ignore_stop())
            .exec(["/bin/drain"], ExecScript::ok().taking(s(4))),
    );
    let c = with_pre_stop(container("app"), exec_hook(&["/bin/drain"]));
    let mut w = h.start(pod("Always", vec![c], Some(30))).await;
    let t_del = Instant::now();
    w.delete(&h.clock, 30);
    advance(s(31)).await;
    let calls = h.rt.calls();
    let exec_at = calls
        .iter()
        .find(|r| matches!(r.call, FakeCall::Exec { .. }))
        .unwrap()
        .at;
    assert_eq!(exec_at, t_del);
    let sig: Vec<_> = h
        .signals()
        .into_iter()
        .map(|(t, _, s)| (t - h.since(t_del), s))
        .collect();
    assert_eq!(sig, vec![(s(4), Signal::TERM), (s(30), Signal::KILL)]);
    let kinds: Vec<&str> = h
        .events
        .reasons()
        .iter()
        .map(|(r, _)| r.as_str())
        .filter(|r| *r == "Killing" || *r == "StopSignalNotHandled")
        .map(|r| {
            if r == "Killing" {
                "Killing"
            } else {
                "StopSignalNotHandled"
            }
        })
        .collect();
    assert_eq!(kinds, ["Killing", "StopSignalNotHandled"]);
}

/// §8 B7: preStop sleep 50 of TGPS 100 → the container finishes ≥ 50 s and < 100 s after.
#[tokio::test(start_paused = true)]
async fn b7_pre_stop_sleep_action_delays_the_stop_signal() {
    let h = Harness::new();
    let c = with_pre_stop(container("app"), sleep_hook(50));
    let mut w = h.start(pod("Always", vec![c], Some(100))).await;
    let t_del = Instant::now();
    w.delete(&h.clock, 100);
    advance(s(60)).await;
    let sig: Vec<_> = h
        .signals()
        .into_iter()
        .map(|(t, _, s)| (t - h.since(t_del), s))
        .collect();
    assert_eq!(sig, vec![(s(50), Signal::TERM)]);
    assert_eq!(h.api.deletes()[0].0 - t_del, s(50));
}

/// §8 B8: TGPS 100, preStop sleep 50, DELETE with grace 30 → finished between 30 and 50 s.
/// Here the shorter grace arrives while the first deletion's preStop runs.
#[tokio::test(start_paused = true)]
async fn b8_shorter_grace_during_termination_cuts_the_hook() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::forever().ignore_stop()));
    let c = with_pre_stop(container("app"), sleep_hook(50));
    let mut w = h.start(pod("Always", vec![c], Some(100))).await;
    let t_del = Instant::now();
    w.delete(&h.clock, 100);
    advance(s(10)).await;
    w.delete(&h.clock, 30); // shorter: deadline = first request + 30 s
    advance(s(40)).await;
    let sig: Vec<_> = h
        .signals()
        .into_iter()
        .map(|(t, _, s)| (t - h.since(t_del), s))
        .collect();
    assert_eq!(sig, vec![(s(30), Signal::TERM), (s(32), Signal::KILL)]);
    let persisted = std::fs::read_dir(h.dir.path().join("terminations"))
        .unwrap()
        .count();
    assert_eq!(persisted, 0, "the record goes with the pod");
}

/// §8 N3 on the node: a longer grace never extends the deadline.
#[tokio::test(start_paused = true)]
async fn n3_longer_grace_does_not_extend_the_deadline() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::forever().ignore_stop()));
    let mut w = h.start(pod("Always", vec![container("app")], None)).await;
    let t_del = Instant::now();
    w.delete(&h.clock, 10);
    advance(s(2)).await;
    w.delete(&h.clock, 100);
    advance(s(20)).await;
    let kill = h
        .signals()
        .into_iter()
        .find(|(_, _, s)| *s == Signal::KILL)
        .unwrap();
    assert_eq!(kill.0 - h.since(t_del), s(10));
}

/// §8 N8, §10.3: force delete (object gone) → the 1 s pod-grace floor: preStop cut at 1 s,
/// then the stop signal, SIGKILL 2 s later; nothing written for the gone object.
#[tokio::test(start_paused = true)]
async fn n8_force_delete_keeps_one_second_then_the_stop_window() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::forever().ignore_stop()));
    let c = with_pre_stop(container("app"), sleep_hook(100));
    let w = h.start(pod("Always", vec![c], None)).await;
    let writes = h.api.statuses().len();
    let t_del = Instant::now();
    w.gone();
    advance(s(5)).await;
    let sig: Vec<_> = h
        .signals()
        .into_iter()
        .map(|(t, _, s)| (t - h.since(t_del), s))
        .collect();
    assert_eq!(sig, vec![(s(1), Signal::TERM), (s(3), Signal::KILL)]);
    assert!(!h.rt.has_sandbox(UID));
    assert_eq!(
        h.api.statuses().len(),
        writes,
        "nothing is written for a gone object"
    );
    assert!(h.api.deletes().is_empty());
    assert!(w.task.await.is_ok(), "the worker ends");
}

/// Gone during a graceful termination: the running deadline collapses to now + 1 s.
#[tokio::test(start_paused = true)]
async fn rule_1_3_gone_during_grace_collapses_to_one_second() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::forever().ignore_stop()));
    let mut w = h.start(pod("Always", vec![container("app")], None)).await;
    let t_del = Instant::now();
    w.delete(&h.clock, 30);
    advance(s(3)).await;
    w.gone();
    advance(s(3)).await;
    let sig: Vec<_> = h
        .signals()
        .into_iter()
        .map(|(t, _, s)| (t - h.since(t_del), s))
        .collect();
    assert_eq!(sig, vec![(s(0), Signal::TERM), (s(4), Signal::KILL)]);
}

/// Hard bound: a hook that never returns never stretches termination past deadline + 2 s.
#[tokio::test(start_paused = true)]
async fn hard_bound_hanging_exec_pre_stop() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().ignore_stop()).default_exec(ExecScript::hang()),
    );
    let c = with_pre_stop(container("app"), exec_hook(&["/bin/hang"]));
    let mut w = h.start(pod("Always", vec![c], Some(3))).await;
    let t_del = Instant::now();
    w.delete(&h.clock, 3);
    advance(s(10)).await;
    let kill = h
        .signals()
        .into_iter()
        .find(|(_, _, s)| *s == Signal::KILL)
        .unwrap();
    assert!(kill.0 - h.since(t_del) <= s(5));
    let (deleted_at, _) = h.api.deletes()[0].clone();
    assert!(deleted_at - t_del <= s(6));
}

#[tokio::test(start_paused = true)]
async fn rule_1_9_failed_pre_stop_is_a_warning_and_termination_goes_on() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever()).exec(["false"], ExecScript::exit(1)),
    );
    let c = with_pre_stop(container("app"), exec_hook(&["false"]));
    let mut w = h.start(pod("Always", vec![c], None)).await;
    w.delete(&h.clock, 30);
    advance(s(1)).await;
    assert_eq!(
        h.event("FailedPreStopHook").unwrap(),
        (EventType::Warning, "PreStopHook failed".into())
    );
    assert_eq!(h.signals()[0].2, Signal::TERM);
    assert_eq!(h.api.deletes().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn rule_1_6_lifecycle_stop_signal_is_sent() {
    let h = Harness::new();
    let mut c = container("app");
    c.lifecycle = Some(Lifecycle {
        stop_signal: Some("SIGUSR1".into()),
        ..Default::default()
    });
    let mut w = h.start(pod("Always", vec![c], None)).await;
    w.delete(&h.clock, 30);
    advance(s(1)).await;
    assert_eq!(h.signals()[0].2, Signal::USR1);
}

#[tokio::test(start_paused = true)]
async fn rule_4_no_restart_once_deletion_started() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().on_stop_exit(s(1), 1)),
    );
    let mut w = h.start(pod("Always", vec![container("app")], None)).await;
    w.delete(&h.clock, 30);
    advance(s(40)).await;
    assert_eq!(h.starts().len(), 1);
}

/// Restart mid-grace: the new worker kills at the original, persisted deadline.
#[tokio::test(start_paused = true)]
async fn restart_mid_grace_kills_at_the_original_deadline() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::forever().ignore_stop()));
    let mut w = h.start(pod("Always", vec![container("app")], None)).await;
    let t_del = Instant::now();
    w.delete(&h.clock, 30);
    advance(s(10)).await;
    let deleting = w.pod.clone();
    w.stop_agent().await;
    advance(s(5)).await; // the agent is down for 5 s
    assert_eq!(h.rt.running_count(), 1, "pods outlive the agent");
    let calls_before = h.rt.mutating_calls().len();
    let _w2 = h.start(deleting).await;
    advance(s(30)).await;
    let after: Vec<FakeCall> = h.rt.mutating_calls()[calls_before..].to_vec();
    assert!(
        !after.iter().any(|c| matches!(
            c,
            FakeCall::CreateContainer { .. } | FakeCall::StartContainer { .. }
        )),
        "nothing restarted: {after:?}"
    );
    let kill = h
        .signals()
        .into_iter()
        .find(|(_, _, s)| *s == Signal::KILL)
        .unwrap();
    assert_eq!(
        kill.0 - h.since(t_del),
        s(30),
        "original deadline, not 15 + 30"
    );
    assert_eq!(
        h.signals()
            .iter()
            .filter(|(_, _, s)| *s == Signal::TERM)
            .count(),
        1,
        "TERM not repeated"
    );
    assert_eq!(h.api.deletes().len(), 1);
}

/// Re-adoption: an agent restart restarts nothing and reconciles the status.
#[tokio::test(start_paused = true)]
async fn readoption_restarts_nothing() {
    let h = Harness::new();
    let w = h
        .start(pod(
            "Always",
            vec![container("app"), container("side")],
            None,
        ))
        .await;
    let p = w.pod.clone();
    w.stop_agent().await;
    let before = h.rt.mutating_calls().len();
    let _w2 = h.start(p).await;
    advance(s(1)).await;
    assert_eq!(h.rt.mutating_calls().len(), before);
    assert_eq!(phase(&h.last()), "Running");
}

#[tokio::test(start_paused = true)]
async fn readoption_sees_exits_that_happened_while_away() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::sequence(vec![Attempt::exits_after(s(20), 3), Attempt::forever()]),
    );
    let w = h.start(pod("Always", vec![container("app")], None)).await;
    let p = w.pod.clone();
    w.stop_agent().await;
    advance(s(30)).await;
    let _w2 = h.start(p).await;
    advance(s(1)).await;
    let c = cs(&h.last(), "app");
    assert_eq!(c.restart_count, 1);
    assert_eq!(c.last_state.unwrap().terminated.unwrap().exit_code, 3);
}

#[tokio::test(start_paused = true)]
async fn completed_pod_keeps_its_sandbox_until_the_object_goes() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(1), 0)));
    let w = h.start(pod("Never", vec![container("app")], None)).await;
    advance(s(2)).await;
    assert!(h.rt.has_sandbox(UID));
    w.gone();
    settle().await;
    assert!(!h.rt.has_sandbox(UID));
    assert!(w.task.await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn drain_stops_gracefully_and_leaves_the_object() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().on_stop_exit(s(2), 0)),
    );
    let w = h
        .start(pod("Always", vec![container("app")], Some(10)))
        .await;
    w.handle
        .input
        .send_modify(|i: &mut WorkerInput| i.drain = Some(10));
    advance(s(3)).await;
    assert_eq!(h.signals()[0].2, Signal::TERM);
    assert!(h.api.deletes().is_empty());
    let st = h.last();
    assert_eq!(phase(&st), "Succeeded");
    assert_eq!(st.reason.as_deref(), Some("Terminated"));
    assert_eq!(*w.handle.state.borrow(), "finished");
}

#[tokio::test(start_paused = true)]
async fn status_write_failures_are_retried() {
    let h = Harness::new();
    h.api.fail_status_writes(3);
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    advance(s(5)).await;
    assert_eq!(phase(&h.last()), "Running");
}

#[tokio::test(start_paused = true)]
async fn terminal_phase_never_reverts_in_written_statuses() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(1), 1)));
    let mut w = h.start(pod("Never", vec![container("app")], None)).await;
    advance(s(2)).await;
    w.update(|p| {
        p.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        })
    });
    w.delete(&h.clock, 30);
    advance(s(2)).await;
    let phases: Vec<String> = h
        .api
        .statuses()
        .iter()
        .map(|s| phase(s).to_string())
        .collect();
    let first_terminal = phases
        .iter()
        .position(|p| p == "Failed" || p == "Succeeded")
        .unwrap();
    assert!(
        phases[first_terminal..].iter().all(|p| p == "Failed"),
        "{phases:?}"
    );
    let _ = Time(jiff::Timestamp::UNIX_EPOCH);
}

/// Simulated-node scale: 1000 pods on the fake runtime, started, crash-looping once, then
/// deleted, under paused time. Prints the real time it took.
#[tokio::test(start_paused = true)]
async fn scale_1000_pods_start_and_terminate() {
    const N: usize = 1000;
    #[allow(clippy::disallowed_methods)] // measuring the real cost of the simulation
    let real_start = std::time::Instant::now();
    let h = Harness::new();
    h.rt.set_recording(false);
    h.rt.script(
        "app",
        FakeScript::sequence(vec![
            Attempt::exits_after(s(5), 1),
            Attempt::forever().on_stop_exit(s(1), 0),
        ]),
    );
    let ctx = h.ctx();
    let mut handles = std::collections::HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let shutdown = CancellationToken::new();
    for i in 0..N {
        let mut p = pod("Always", vec![container("app")], Some(10));
        p.metadata.uid = Some(format!("uid-{i}"));
        p.metadata.name = Some(format!("p{i}"));
        let (worker, handle) =
            PodWorker::new(ctx.clone(), Arc::new(p.clone()), None, shutdown.clone());
        handles.insert(format!("uid-{i}"), (handle, p));
        tasks.spawn(worker.run());
    }
    let notes: std::collections::HashMap<String, _> = handles
        .iter()
        .map(|(k, (h, _))| (k.clone(), h.notes.clone()))
        .collect();
    let mut exits = h.rt.subscribe();
    let forwarder = tokio::spawn(async move {
        loop {
            match exits.recv().await {
                Ok(ev) => {
                    if let Some(n) = notes.get(&ev.sandbox_id) {
                        let _ = n.send(RuntimeNote::Exit(ev));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    for n in notes.values() {
                        let _ = n.send(RuntimeNote::Resync);
                    }
                }
                Err(_) => return,
            }
        }
    });
    advance(s(30)).await;
    assert_eq!(h.rt.running_count(), N, "every pod restarted once and runs");
    for (handle, p) in handles.values() {
        let mut p = p.clone();
        p.metadata.deletion_timestamp = Some(to_time(h.clock.now() + s(10)));
        p.metadata.deletion_grace_period_seconds = Some(10);
        handle.input.send_modify(|i| i.pod = Some(Arc::new(p)));
    }
    advance(s(5)).await;
    assert_eq!(h.rt.running_count(), 0);
    assert_eq!(h.rt.sandbox_count(), 0);
    assert_eq!(h.api.deletes().len(), N);
    while tasks.join_next().await.is_some() {}
    forwarder.abort();
    println!(
        "{N} pods: start, one crash-restart, graceful delete: {:?} real time",
        real_start.elapsed()
    );
}

// ------------------------------------------- §2.1–2.3, §8 group D: init containers, sidecars

/// Spec §8 group D `initContainersInvariants`, on one written status: while init is
/// incomplete every app container waits with PodInitializing and restartCount 0; the
/// Initialized condition is never Unknown, has a transition time, and is True exactly when
/// every init container completed (or an app container was started).
fn check_init_invariants(p: &Pod, st: &PodStatus) {
    let spec = p.spec.as_ref().unwrap();
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let conds = st.conditions.as_ref().expect("conditions");
    let c = conds
        .iter()
        .find(|c| c.type_ == "Initialized")
        .expect("Initialized condition");
    assert_ne!(c.status, "Unknown", "Initialized never Unknown: {st:?}");
    assert!(c.last_transition_time.is_some());
    let statuses = st.init_container_statuses.as_deref().unwrap_or_default();
    assert_eq!(
        statuses.len(),
        init.len(),
        "one init status per init container"
    );
    let complete = init.iter().all(|ic| {
        let s = statuses.iter().find(|s| s.name == ic.name).unwrap();
        if podvisor_api::status::is_sidecar(ic) {
            s.started == Some(true)
        } else {
            s.ready
        }
    });
    let app_started = st
        .container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|s| {
            s.state
                .as_ref()
                .is_some_and(|x| x.running.is_some() || x.terminated.is_some())
                || s.last_state
                    .as_ref()
                    .is_some_and(|l| l.terminated.is_some())
        });
    let terminal = matches!(st.phase.as_deref(), Some("Succeeded"));
    if !(complete || app_started || terminal) {
        assert_eq!(c.status, "False", "Initialized while incomplete: {st:?}");
        for a in st.container_statuses.as_deref().unwrap_or_default() {
            let reason = a
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref());
            assert_eq!(
                reason,
                Some("PodInitializing"),
                "app container {} during init: {a:?}",
                a.name
            );
            assert_eq!(a.restart_count, 0);
        }
    }
    if complete && !init.is_empty() && st.phase.as_deref() != Some("Failed") {
        assert_eq!(c.status, "True", "Initialized once complete: {st:?}");
    }
}

fn check_all_invariants(h: &Harness, p: &Pod) {
    let all = h.api.statuses();
    assert!(!all.is_empty());
    for st in &all {
        check_init_invariants(p, st);
    }
}

#[tokio::test(start_paused = true)]
async fn d1_init_containers_run_in_order_on_a_never_pod_then_succeeded() {
    let h = Harness::new();
    h.rt.script("init1", FakeScript::always(Attempt::exits_after(s(2), 0)));
    h.rt.script("init2", FakeScript::always(Attempt::exits_after(s(3), 0)));
    h.rt.script("run1", FakeScript::always(Attempt::exits_after(s(1), 0)));
    let p = init_pod(
        "Never",
        vec![container("init1"), container("init2")],
        vec![container("run1")],
        None,
    );
    let _w = h.start(p.clone()).await;
    // init1 runs; init2 and run1 wait with PodInitializing
    let st = h.last();
    assert_eq!(phase(&st), "Pending");
    assert!(ics(&st, "init1").state.unwrap().running.is_some());
    assert_eq!(
        init_waiting(&st, "init2").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        waiting_reason(&st, "run1").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        condition(&st, "Initialized"),
        (
            "False".into(),
            Some("ContainersNotInitialized".into()),
            Some("containers with incomplete status: [init1 init2]".into())
        )
    );
    advance(s(10)).await;
    // one at a time, in order
    assert_eq!(h.start_times("init1"), [s(0)]);
    assert_eq!(h.start_times("init2"), [s(2)]);
    assert_eq!(h.start_times("run1"), [s(5)]);
    let st = h.last();
    assert_eq!(phase(&st), "Succeeded");
    assert_eq!(condition(&st, "Initialized").0, "True");
    assert_eq!(st.init_container_statuses.as_ref().unwrap().len(), 2);
    for n in ["init1", "init2"] {
        let c = ics(&st, n);
        assert!(c.ready, "completed init container {n} is ready");
        let t = c.state.unwrap().terminated.unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    }
    check_all_invariants(&h, &p);
    // events name the init containers by their field path
    let started: Vec<_> = h
        .events
        .events()
        .into_iter()
        .filter(|(_, e)| e.reason == "Started")
        .map(|(_, e)| e.field_path.unwrap_or_default())
        .collect();
    assert_eq!(
        started,
        [
            "spec.initContainers{init1}",
            "spec.initContainers{init2}",
            "spec.containers{run1}"
        ]
    );
    assert_eq!(
        &h.reasons()[..6],
        [
            "Pulled", "Created", "Started", "Pulled", "Created", "Started"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn d2_init_containers_on_an_always_pod_then_running() {
    let h = Harness::new();
    h.rt.script("init1", FakeScript::always(Attempt::exits_after(s(1), 0)));
    h.rt.script("init2", FakeScript::always(Attempt::exits_after(s(1), 0)));
    let p = init_pod(
        "Always",
        vec![container("init1"), container("init2")],
        vec![container("run1")],
        None,
    );
    let _w = h.start(p.clone()).await;
    advance(s(5)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert_eq!(condition(&st, "Initialized").0, "True");
    assert_eq!(condition(&st, "Ready").0, "True");
    for n in ["init1", "init2"] {
        let c = ics(&st, n);
        assert!(c.ready);
        assert_eq!(c.state.unwrap().terminated.unwrap().exit_code, 0);
    }
    assert!(cs(&st, "run1").state.unwrap().running.is_some());
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn d3_failing_init_container_on_an_always_pod_restarts_with_back_off_and_blocks_the_app() {
    let h = Harness::new();
    h.rt.script("init1", FakeScript::always(Attempt::exits_after(s(1), 1)));
    let p = init_pod(
        "Always",
        vec![container("init1"), container("init2")],
        vec![container("run1")],
        None,
    );
    let _w = h.start(p.clone()).await;
    advance(s(45)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Pending");
    let i1 = ics(&st, "init1");
    assert!(i1.restart_count >= 3, "restartCount {}", i1.restart_count);
    assert_eq!(
        i1.last_state.unwrap().terminated.unwrap().exit_code,
        1,
        "init1 keeps failing"
    );
    assert_eq!(
        init_waiting(&st, "init2").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        waiting_reason(&st, "run1").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        condition(&st, "Initialized"),
        (
            "False".into(),
            Some("ContainersNotInitialized".into()),
            Some("containers with incomplete status: [init1 init2]".into())
        )
    );
    // the same crash back-off as app containers: 0, 10, 20 s
    let starts = h.start_times("init1");
    let delays: Vec<u64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0] - s(1)).as_secs())
        .collect();
    assert_eq!(&delays[..3], &[0, 10, 20]);
    assert!(h.create_times("init2").is_empty());
    assert!(h.create_times("run1").is_empty());
    // init1 never reported terminated with 0
    for st in h.api.statuses() {
        let c = ics(&st, "init1");
        assert!(
            c.state
                .and_then(|s| s.terminated)
                .is_none_or(|t| t.exit_code != 0)
        );
    }
    let (ty, msg) = h.event("BackOff").expect("BackOff event");
    assert_eq!(ty, EventType::Warning);
    assert_eq!(
        msg,
        format!("Back-off restarting failed container init1 in pod p_default({UID})")
    );
    assert!(
        h.api
            .statuses()
            .iter()
            .any(|st| init_waiting(st, "init1").as_deref() == Some("CrashLoopBackOff"))
    );
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn d4_failing_init_container_fails_a_never_pod() {
    let h = Harness::new();
    h.rt.script("init1", FakeScript::always(Attempt::exits_after(s(1), 0)));
    h.rt.script("init2", FakeScript::always(Attempt::exits_after(s(1), 1)));
    let p = init_pod(
        "Never",
        vec![container("init1"), container("init2")],
        vec![container("run1")],
        None,
    );
    let _w = h.start(p.clone()).await;
    advance(s(30)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Failed");
    assert_eq!(
        condition(&st, "Initialized"),
        (
            "False".into(),
            Some("ContainersNotInitialized".into()),
            Some("containers with incomplete status: [init2]".into())
        )
    );
    assert_eq!(
        waiting_reason(&st, "run1").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        ics(&st, "init2")
            .state
            .unwrap()
            .terminated
            .unwrap()
            .exit_code,
        1
    );
    assert!(!ics(&st, "init2").ready);
    assert_eq!(h.start_times("init2").len(), 1, "never restarted");
    assert!(h.create_times("run1").is_empty());
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn on_failure_failing_init_container_is_restarted_and_the_pod_stays_pending() {
    let h = Harness::new();
    h.rt.script(
        "init1",
        FakeScript::sequence(vec![
            Attempt::exits_after(s(1), 1),
            Attempt::exits_after(s(1), 0),
        ]),
    );
    h.rt.script("run1", FakeScript::always(Attempt::exits_after(s(1), 0)));
    let p = init_pod(
        "OnFailure",
        vec![container("init1")],
        vec![container("run1")],
        None,
    );
    let _w = h.start(p.clone()).await;
    advance(s(1)).await;
    assert_eq!(phase(&h.last()), "Pending");
    advance(s(5)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Succeeded");
    let i1 = ics(&st, "init1");
    assert_eq!(i1.restart_count, 1);
    assert!(i1.ready);
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn init_containers_do_not_rerun_when_an_app_container_restarts() {
    let h = Harness::new();
    h.rt.script("init1", FakeScript::always(Attempt::exits_after(s(1), 0)));
    h.rt.script("run1", FakeScript::always(Attempt::exits_after(s(3), 1)));
    let p = init_pod(
        "Always",
        vec![container("init1")],
        vec![container("run1")],
        None,
    );
    let _w = h.start(p.clone()).await;
    advance(s(60)).await;
    assert!(h.start_times("run1").len() >= 3);
    assert_eq!(h.start_times("init1").len(), 1);
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert_eq!(condition(&st, "Initialized").0, "True");
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn readoption_recognises_completed_init_containers() {
    let h = Harness::new();
    h.rt.script("init1", FakeScript::always(Attempt::exits_after(s(1), 0)));
    let p = init_pod(
        "Always",
        vec![container("init1"), sidecar("side")],
        vec![container("run1")],
        None,
    );
    let w = h.start(p.clone()).await;
    advance(s(3)).await;
    assert_eq!(phase(&h.last()), "Running");
    let pod_obj = w.pod.clone();
    w.stop_agent().await;
    let before = h.rt.mutating_calls().len();
    let _w2 = h.start(pod_obj).await;
    advance(s(5)).await;
    assert_eq!(h.rt.mutating_calls().len(), before, "nothing runs again");
    assert_eq!(h.start_times("init1").len(), 1);
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert!(ics(&st, "init1").ready);
    assert!(ics(&st, "side").ready);
}

#[tokio::test(start_paused = true)]
async fn readoption_during_init_waits_for_the_running_init_container() {
    let h = Harness::new();
    h.rt.script("init1", FakeScript::always(Attempt::exits_after(s(10), 0)));
    let p = init_pod(
        "Always",
        vec![container("init1")],
        vec![container("run1")],
        None,
    );
    let w = h.start(p.clone()).await;
    advance(s(2)).await;
    let pod_obj = w.pod.clone();
    w.stop_agent().await;
    let _w2 = h.start(pod_obj).await;
    advance(s(3)).await;
    assert!(h.create_times("run1").is_empty());
    assert_eq!(h.start_times("init1").len(), 1);
    advance(s(10)).await;
    assert_eq!(h.start_times("init1").len(), 1);
    assert_eq!(h.start_times("run1").len(), 1);
    assert_eq!(phase(&h.last()), "Running");
}

// ---------------------------------------------------------------- native sidecars

#[tokio::test(start_paused = true)]
async fn sidecars_start_in_order_and_count_for_readiness() {
    let h = Harness::new();
    h.rt.script("init2", FakeScript::always(Attempt::exits_after(s(2), 0)));
    let p = init_pod(
        "Always",
        vec![sidecar("side1"), container("init2"), sidecar("side3")],
        vec![container("app")],
        None,
    );
    let _w = h.start(p.clone()).await;
    advance(s(5)).await;
    assert_eq!(h.start_times("side1"), [s(0)]);
    assert_eq!(h.start_times("init2"), [s(0)]);
    assert_eq!(h.start_times("side3"), [s(2)]);
    assert_eq!(h.start_times("app"), [s(2)]);
    let order: Vec<String> =
        h.rt.calls()
            .into_iter()
            .filter_map(|r| match r.call {
                FakeCall::StartContainer { name, .. } => Some(name),
                _ => None,
            })
            .collect();
    assert_eq!(order, ["side1", "init2", "side3", "app"]);
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    for n in ["side1", "side3"] {
        let c = ics(&st, n);
        assert!(c.state.unwrap().running.is_some());
        assert_eq!(c.started, Some(true));
        assert!(c.ready);
    }
    assert_eq!(condition(&st, "Initialized").0, "True");
    assert_eq!(condition(&st, "ContainersReady").0, "True");
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn next_init_container_waits_for_the_sidecars_startup_probe() {
    let h = Harness::new();
    h.rt.script(
        "side",
        FakeScript::always(Attempt::forever()).exec(["up"], ExecScript::ok()),
    );
    h.rt.script("init2", FakeScript::always(Attempt::exits_after(s(1), 0)));
    let p = init_pod(
        "Always",
        vec![
            with_startup(sidecar("side"), "up", 5, 1),
            container("init2"),
        ],
        vec![container("app")],
        None,
    );
    let _w = h.start(p.clone()).await;
    advance(s(3)).await;
    let st = h.last();
    assert_eq!(ics(&st, "side").started, Some(false));
    assert!(h.create_times("init2").is_empty(), "init2 waits");
    assert_eq!(
        condition(&st, "Initialized").2.as_deref(),
        Some("containers with incomplete status: [side init2]")
    );
    advance(s(10)).await;
    let init2 = h.start_times("init2");
    assert_eq!(init2.len(), 1);
    assert!(init2[0] >= s(5), "init2 started at {:?}", init2[0]);
    let st = h.last();
    assert_eq!(ics(&st, "side").started, Some(true));
    assert_eq!(phase(&st), "Running");
    check_all_invariants(&h, &p);

    // a sidecar whose startup probe keeps failing holds everything after it
    let h = Harness::new();
    h.rt.script(
        "never-up",
        FakeScript::always(Attempt::forever()).exec(["up"], ExecScript::exit(1)),
    );
    let p = init_pod(
        "Always",
        vec![with_startup(sidecar("never-up"), "up", 0, 1)],
        vec![container("app")],
        None,
    );
    let _w = h.start(p.clone()).await;
    advance(s(30)).await;
    assert!(h.create_times("app").is_empty());
    let st = h.last();
    assert_eq!(phase(&st), "Pending");
    assert_eq!(
        waiting_reason(&st, "app").as_deref(),
        Some("PodInitializing")
    );
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn sidecar_is_restarted_with_back_off_when_it_exits() {
    let h = Harness::new();
    h.rt.script("side", FakeScript::always(Attempt::exits_after(s(5), 1)));
    // a Never pod: sidecars restart whatever the pod's policy
    let p = init_pod("Never", vec![sidecar("side")], vec![container("app")], None);
    let _w = h.start(p.clone()).await;
    advance(s(50)).await;
    let starts = h.start_times("side");
    let delays: Vec<u64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0] - s(5)).as_secs())
        .collect();
    assert_eq!(&delays[..2], &[0, 10]);
    assert_eq!(h.start_times("app").len(), 1, "the app is not restarted");
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert!(ics(&st, "side").restart_count >= 2);
    assert!(h.event("BackOff").is_some());
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn never_pod_succeeds_with_a_running_sidecar_which_is_then_stopped() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(5), 0)));
    let p = init_pod(
        "Never",
        vec![
            sidecar("side1"),
            with_pre_stop(sidecar("side2"), sleep_hook(3)),
        ],
        vec![container("app")],
        Some(30),
    );
    let w = h.start(p.clone()).await;
    advance(s(3)).await;
    assert_eq!(phase(&h.last()), "Running");
    advance(s(10)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Succeeded");
    assert_eq!(
        condition(&st, "Initialized").1.as_deref(),
        Some("PodCompleted")
    );
    // the sidecars were stopped once the app completed, in reverse order, each with its
    // preStop within the spec's grace
    let s2 = h.signals_to("side2");
    let s1 = h.signals_to("side1");
    assert_eq!(s2, [(s(8), Signal::TERM)]);
    assert_eq!(s1, [(s(8), Signal::TERM)]);
    let order: Vec<String> = h.signals().into_iter().map(|(_, n, _)| n).collect();
    assert_eq!(order, ["side2", "side1"]);
    assert_eq!(h.rt.running_count(), 0);
    for n in ["side1", "side2"] {
        assert!(ics(&st, n).state.unwrap().terminated.is_some());
    }
    assert!(h.api.deletes().is_empty(), "a completed pod's object stays");
    drop(w);
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn on_failure_pod_with_a_failed_app_is_failed_not_held_by_the_sidecar() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(2), 0)));
    let p = init_pod(
        "OnFailure",
        vec![sidecar("side")],
        vec![container("app")],
        None,
    );
    let _w = h.start(p.clone()).await;
    advance(s(5)).await;
    assert_eq!(phase(&h.last()), "Succeeded");
    assert_eq!(h.rt.running_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn deletion_stops_the_app_then_sidecars_in_reverse_order_with_pre_stop() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().on_stop_exit(s(3), 0)),
    );
    let p = init_pod(
        "Always",
        vec![
            with_pre_stop(sidecar("side1"), sleep_hook(2)),
            with_pre_stop(sidecar("side2"), sleep_hook(2)),
        ],
        vec![container("app")],
        Some(30),
    );
    let mut w = h.start(p.clone()).await;
    advance(s(1)).await;
    w.delete(&h.clock, 30);
    advance(s(20)).await;
    // app: TERM at 1 s, exits at 4 s; side2: preStop 4–6 s, TERM at 6 s; side1: preStop
    // 6–8 s, TERM at 8 s
    assert_eq!(h.signals_to("app"), [(s(1), Signal::TERM)]);
    assert_eq!(h.signals_to("side2"), [(s(6), Signal::TERM)]);
    assert_eq!(h.signals_to("side1"), [(s(8), Signal::TERM)]);
    let killing: Vec<String> = h
        .events
        .events()
        .into_iter()
        .filter(|(_, e)| e.reason == "Killing")
        .map(|(_, e)| e.field_path.unwrap_or_default())
        .collect();
    assert_eq!(
        killing,
        [
            "spec.containers{app}",
            "spec.initContainers{side2}",
            "spec.initContainers{side1}"
        ]
    );
    assert_eq!(h.rt.running_count(), 0);
    assert_eq!(h.api.deletes().len(), 1);
    let st = h.last();
    assert_eq!(phase(&st), "Succeeded");
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn sigkill_bound_holds_with_sidecars_that_ignore_the_stop_signal() {
    let h = Harness::new();
    for n in ["app", "side1", "side2"] {
        h.rt.script(n, FakeScript::always(Attempt::forever().ignore_stop()));
    }
    let p = init_pod(
        "Always",
        vec![
            with_pre_stop(sidecar("side1"), sleep_hook(100)),
            with_pre_stop(sidecar("side2"), sleep_hook(100)),
        ],
        vec![with_pre_stop(container("app"), sleep_hook(100))],
        Some(10),
    );
    let mut w = h.start(p.clone()).await;
    w.delete(&h.clock, 10);
    advance(s(30)).await;
    assert_eq!(h.rt.running_count(), 0);
    // every process got SIGKILL by deadline (10 s) + the 2 s stop window
    for n in ["app", "side1", "side2"] {
        let sigs = h.signals_to(n);
        let kill = sigs
            .iter()
            .find(|(_, sig)| *sig == Signal::KILL)
            .unwrap_or_else(|| panic!("{n} was SIGKILLed: {sigs:?}"));
        assert!(kill.0 <= s(12), "{n} killed at {:?}", kill.0);
    }
    assert_eq!(h.api.deletes().len(), 1);
    let del = h.api.deletes()[0].0;
    assert!(h.since(del) <= s(13));
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn force_deletion_stops_sidecars_after_the_one_second_floor() {
    let h = Harness::new();
    for n in ["app", "side"] {
        h.rt.script(n, FakeScript::always(Attempt::forever().ignore_stop()));
    }
    let p = init_pod(
        "Always",
        vec![sidecar("side")],
        vec![container("app")],
        Some(30),
    );
    let w = h.start(p).await;
    advance(s(1)).await;
    w.gone();
    advance(s(5)).await;
    assert_eq!(h.rt.running_count(), 0);
    // the app first (TERM now, KILL 2 s later), the sidecar at the 1 s pod deadline
    assert_eq!(
        h.signals_to("app"),
        [(s(1), Signal::TERM), (s(3), Signal::KILL)]
    );
    assert_eq!(
        h.signals_to("side"),
        [(s(2), Signal::TERM), (s(4), Signal::KILL)]
    );
}

#[tokio::test(start_paused = true)]
async fn deletion_during_init_stops_the_running_init_container() {
    let h = Harness::new();
    h.rt.script("init1", FakeScript::always(Attempt::forever()));
    let p = init_pod(
        "Always",
        vec![sidecar("side"), container("init1")],
        vec![container("app")],
        Some(30),
    );
    let mut w = h.start(p.clone()).await;
    advance(s(1)).await;
    w.delete(&h.clock, 30);
    advance(s(5)).await;
    assert_eq!(h.signals_to("init1"), [(s(1), Signal::TERM)]);
    assert_eq!(h.signals_to("side"), [(s(1), Signal::TERM)]);
    assert_eq!(h.rt.running_count(), 0);
    assert_eq!(phase(&h.last()), "Failed");
    assert!(h.create_times("app").is_empty());
    check_all_invariants(&h, &p);
}

#[tokio::test(start_paused = true)]
async fn sidecar_readiness_probe_drives_containers_ready() {
    let h = Harness::new();
    h.rt.script(
        "side",
        FakeScript::always(Attempt::forever()).exec(["ready"], ExecScript::exit(1)),
    );
    let mut side = sidecar("side");
    side.readiness_probe = Some(k8s_openapi::api::core::v1::Probe {
        exec: Some(ExecAction {
            command: Some(vec!["ready".into()]),
        }),
        period_seconds: Some(1),
        ..Default::default()
    });
    let p = init_pod("Always", vec![side], vec![container("app")], None);
    let _w = h.start(p.clone()).await;
    advance(s(5)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert!(cs(&st, "app").ready);
    assert!(!ics(&st, "side").ready);
    assert_eq!(
        condition(&st, "ContainersReady"),
        (
            "False".into(),
            Some("ContainersNotReady".into()),
            Some("containers with unready status: [side]".into())
        )
    );
    check_all_invariants(&h, &p);
}

#[path = "worker_env_tests.rs"]
mod env;

/// §2.1 / e2e E4: past `activeDeadlineSeconds` (from `status.startTime`) the pod is stopped
/// with its grace and fails with reason DeadlineExceeded; the object stays.
#[tokio::test(start_paused = true)]
async fn e4_active_deadline_fails_the_pod_with_deadline_exceeded() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().on_stop_exit(s(1), 143)),
    );
    let mut p = pod("Always", vec![container("app")], Some(30));
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(5);
    let w = h.start(p).await;
    advance(s(4)).await;
    assert!(
        h.signals().is_empty(),
        "nothing is stopped before the deadline"
    );
    assert_eq!(phase(&h.last()), "Running");
    advance(s(3)).await;
    let sigs = h.signals();
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    assert_eq!((sigs[0].0, sigs[0].2), (s(5), Signal::TERM));
    let st = h.last();
    assert_eq!(phase(&st), "Failed");
    assert_eq!(st.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        st.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    assert_eq!(terminated_code(&st, "app"), Some(143));
    assert_eq!(
        h.event("DeadlineExceeded").map(|e| e.0),
        Some(EventType::Warning)
    );
    assert!(h.api.deletes().is_empty(), "the object stays");
    assert_eq!(*w.handle.state.borrow(), "finished");
    assert_eq!(h.starts().len(), 1, "never restarted");
}

/// An update that shortens `activeDeadlineSeconds` takes effect at the new deadline.
#[tokio::test(start_paused = true)]
async fn e4_shortened_active_deadline_is_honoured() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().on_stop_exit(s(1), 143)),
    );
    let mut p = pod("Always", vec![container("app")], Some(30));
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(600);
    let mut w = h.start(p).await;
    advance(s(10)).await;
    w.update(|p| p.spec.as_mut().unwrap().active_deadline_seconds = Some(20));
    advance(s(15)).await;
    let sigs = h.signals();
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    assert_eq!(sigs[0].0, s(20));
    assert_eq!(h.last().reason.as_deref(), Some("DeadlineExceeded"));
}

/// e2e E5/E9, spec §9.6: a new image kills the running container with the pod's grace
/// (preStop first) and starts the new spec at once, whatever the restart policy.
#[tokio::test(start_paused = true)]
async fn e9_image_change_restarts_the_container_at_once() {
    for policy in ["Always", "Never"] {
        let h = Harness::new();
        h.rt.script(
            "app",
            FakeScript::always(Attempt::forever().on_stop_exit(s(1), 143)),
        );
        let mut w = h.start(pod(policy, vec![container("app")], Some(30))).await;
        advance(s(5)).await;
        assert_eq!(h.starts().len(), 1);
        w.update(|p| p.spec.as_mut().unwrap().containers[0].image = Some("busybox:2".into()));
        advance(s(3)).await;
        let sigs = h.signals();
        assert_eq!(sigs.len(), 1, "{policy}: {sigs:?}");
        assert_eq!((sigs[0].0, sigs[0].2), (s(5), Signal::TERM));
        assert_eq!(
            h.starts(),
            vec![s(0), s(6)],
            "{policy}: restarted right after it stopped"
        );
        let st = h.last();
        let c = cs(&st, "app");
        assert_eq!(c.restart_count, 1, "{policy}");
        assert_eq!(c.image, "busybox:2", "{policy}");
        assert!(c.state.unwrap().running.is_some(), "{policy}");
        assert_eq!(phase(&st), "Running", "{policy}");
        let killing = h
            .events
            .events()
            .into_iter()
            .map(|(_, e)| e)
            .find(|e| e.reason == "Killing")
            .expect("Killing event");
        assert_eq!(
            killing.message,
            "Container app definition changed, will be restarted"
        );
        // nothing else changes: no more restarts
        advance(s(60)).await;
        assert_eq!(h.starts().len(), 2, "{policy}");
    }
}

#[tokio::test(start_paused = true)]
async fn failing_sidecar_liveness_probe_restarts_the_sidecar_only() {
    let h = Harness::new();
    h.rt.script(
        "side",
        FakeScript::always(Attempt::forever()).exec(["alive"], ExecScript::exit(1)),
    );
    let mut side = sidecar("side");
    side.liveness_probe = Some(k8s_openapi::api::core::v1::Probe {
        exec: Some(ExecAction {
            command: Some(vec!["alive".into()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(3),
        ..Default::default()
    });
    let p = init_pod("Always", vec![side], vec![container("app")], None);
    let _w = h.start(p.clone()).await;
    advance(s(8)).await;
    assert!(h.start_times("side").len() >= 2, "the sidecar restarted");
    assert_eq!(h.start_times("app").len(), 1, "the app did not");
    let killing = h
        .events
        .events()
        .into_iter()
        .find(|(_, e)| e.reason == "Killing")
        .map(|(_, e)| e.field_path.unwrap_or_default());
    assert_eq!(killing.as_deref(), Some("spec.initContainers{side}"));
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert!(ics(&st, "side").restart_count >= 1);
    check_all_invariants(&h, &p);
}

#[path = "worker_volume_tests.rs"]
mod volumes;

// ------------------------------------------------ the one stop path, for a restart kill

fn with_liveness(mut c: Container, cmd: &str) -> Container {
    c.liveness_probe = Some(k8s_openapi::api::core::v1::Probe {
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..exec_probe(&[cmd])
    });
    c
}

/// A liveness kill waits for the exit event, not for a poll: the restart comes the moment
/// the container exits after its stop signal.
#[tokio::test(start_paused = true)]
async fn liveness_kill_restarts_as_soon_as_the_exit_is_seen() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().on_stop_exit(Duration::from_millis(350), 143))
            .exec(["alive"], ExecScript::exit(1)),
    );
    let _w = h
        .start(pod(
            "Always",
            vec![with_liveness(container("app"), "alive")],
            Some(30),
        ))
        .await;
    advance(s(5)).await;
    let term = h.signals_to("app")[0];
    assert_eq!(term.1, Signal::TERM);
    let starts = h.start_times("app");
    assert!(starts.len() >= 2, "{starts:?}");
    assert_eq!(starts[1], term.0 + Duration::from_millis(350));
    let killing = h.event("Killing").expect("Killing event").1;
    assert!(killing.contains("failed liveness probe"), "{killing}");
}

/// A restart kill follows the same rule as pod termination: preStop within the grace, then
/// the stop signal, and SIGKILL at the deadline but never less than 2 s after the signal.
#[tokio::test(start_paused = true)]
async fn liveness_kill_keeps_the_stop_window_after_a_pre_stop_that_used_the_grace() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().ignore_stop()).exec(["alive"], ExecScript::exit(1)),
    );
    let c = with_pre_stop(with_liveness(container("app"), "alive"), sleep_hook(60));
    let _w = h.start(pod("Always", vec![c], Some(10))).await;
    advance(s(30)).await;
    let sigs = h.signals_to("app");
    assert!(sigs.len() >= 2, "{sigs:?}");
    let (term, kill) = (sigs[0], sigs[1]);
    assert_eq!((term.1, kill.1), (Signal::TERM, Signal::KILL));
    assert_eq!(kill.0 - term.0, s(2), "{sigs:?}");
    let (ty, _) = h
        .event("StopSignalNotHandled")
        .expect("the same warning as termination");
    assert_eq!(ty, EventType::Warning);
}
