//! The pod features of Kubernetes 1.33–1.37 on the fake runtime under paused time:
//! container restart rules and their effect on the phase (KEP-5307), observedGeneration
//! (KEP-5067), `containerStatuses[].stopSignal` and the early `StopSignalNotHandled`
//! warning (KEP-4960), sleep hooks of zero seconds (KEP-4818), the visible refusal of
//! `hostUsers: false` and image volumes, and the node's back-off cap (KEP-5593).

use k8s_openapi::api::core::v1::{
    Container, ContainerRestartRule, ContainerRestartRuleOnExitCodes,
};
use podvisor_runtime::Signal;
use podvisor_runtime::fake::{Attempt, FakeScript};
use tokio::time::Instant;

use crate::api::EventType;
use crate::testing::builders::*;
use crate::testing::{WorkerHarness as Harness, advance, s};

fn with_rules(name: &str, policy: &str, op: &str, codes: &[i32]) -> Container {
    Container {
        restart_policy: Some(policy.into()),
        restart_policy_rules: Some(vec![ContainerRestartRule {
            action: "Restart".into(),
            exit_codes: Some(ContainerRestartRuleOnExitCodes {
                operator: op.into(),
                values: Some(codes.to_vec()),
            }),
        }]),
        ..container(name)
    }
}

// ------------------------------------------------------------ restart rules (KEP-5307)

#[tokio::test(start_paused = true)]
async fn a_restart_rule_restarts_a_container_of_a_never_pod_until_an_unlisted_exit() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::sequence(vec![
            Attempt::exits_after(s(1), 42),
            Attempt::exits_after(s(1), 42),
            Attempt::exits_after(s(1), 1),
        ]),
    );
    let c = with_rules("app", "Never", "In", &[42]);
    let _w = h.start(pod("Never", vec![c], None)).await;
    advance(s(1)).await;
    // exit 42 matches the rule: restarted at once (first restart), the pod keeps running
    assert_eq!(phase(&h.last()), "Running");
    assert_eq!(cs(&h.last(), "app").restart_count, 1);
    advance(s(1)).await;
    // the second 42 waits out the 10 s back-off: CrashLoopBackOff, still Running
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert_eq!(
        waiting_reason(&st, "app").as_deref(),
        Some("CrashLoopBackOff")
    );
    advance(s(12)).await;
    // exit 1 matches no rule; the container's Never keeps it stopped and the pod fails
    let st = h.last();
    assert_eq!(phase(&st), "Failed");
    assert_eq!(cs(&st, "app").restart_count, 2);
    assert_eq!(terminated_code(&st, "app"), Some(1));
    assert_eq!(h.start_times("app"), vec![s(0), s(1), s(12)]);
}

#[tokio::test(start_paused = true)]
async fn a_not_in_rule_restarts_failures_and_lets_a_success_complete_the_pod() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::sequence(vec![
            Attempt::exits_after(s(1), 3),
            Attempt::exits_after(s(1), 0),
        ]),
    );
    let c = with_rules("app", "Never", "NotIn", &[0]);
    let _w = h.start(pod("Never", vec![c], None)).await;
    advance(s(3)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Succeeded");
    assert_eq!(cs(&st, "app").restart_count, 1);
}

#[tokio::test(start_paused = true)]
async fn a_containers_own_policy_overrides_the_pods() {
    // pod Never, one container Always: its success restarts it, the pod stays Running
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(1), 0)));
    h.rt.script("side", FakeScript::always(Attempt::exits_after(s(1), 0)));
    let always = Container {
        restart_policy: Some("Always".into()),
        ..container("app")
    };
    let _w = h
        .start(pod("Never", vec![always, container("side")], None))
        .await;
    advance(s(1)).await;
    advance(s(1)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert_eq!(cs(&st, "app").restart_count, 1);
    assert_eq!(cs(&st, "side").restart_count, 0);
    assert_eq!(terminated_code(&st, "side"), Some(0));
    // pod Always, container Never: its failure is final while the other one runs on
    let h = Harness::new();
    h.rt.script("once", FakeScript::always(Attempt::exits_after(s(1), 2)));
    let once = Container {
        restart_policy: Some("Never".into()),
        ..container("once")
    };
    let _w = h
        .start(pod("Always", vec![once, container("web")], None))
        .await;
    advance(s(30)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert_eq!(cs(&st, "once").restart_count, 0);
    assert_eq!(terminated_code(&st, "once"), Some(2));
    assert_eq!(h.start_times("once"), vec![s(0)]);
}

// ------------------------------------------------------------ generation (KEP-5067)

#[tokio::test(start_paused = true)]
async fn the_status_and_every_condition_carry_the_observed_generation() {
    let h = Harness::new();
    let mut p = pod("Always", vec![container("app")], None);
    p.metadata.generation = Some(1);
    let mut w = h.start(p).await;
    let st = h.last();
    assert_eq!(st.observed_generation, Some(1));
    let conds = st.conditions.unwrap();
    assert_eq!(conds.len(), 5);
    assert!(
        conds.iter().all(|c| c.observed_generation == Some(1)),
        "{conds:?}"
    );
    // a spec change (the API server bumps the generation) is observed with the next status
    w.update(|p| {
        p.metadata.generation = Some(2);
        p.spec.as_mut().unwrap().active_deadline_seconds = Some(3600);
    });
    advance(s(1)).await;
    let st = h.last();
    assert_eq!(st.observed_generation, Some(2));
    assert!(
        st.conditions
            .unwrap()
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
}

// ------------------------------------------------------------ stop signals (KEP-4960)

#[tokio::test(start_paused = true)]
async fn the_stop_signal_in_force_is_reported_and_sent() {
    let h = Harness::new();
    let mut usr1 = container("usr1");
    usr1.lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
        stop_signal: Some("SIGUSR1".into()),
        ..Default::default()
    });
    let mut w = h
        .start(pod("Always", vec![usr1, container("plain")], Some(30)))
        .await;
    let st = h.last();
    assert_eq!(cs(&st, "usr1").stop_signal.as_deref(), Some("SIGUSR1"));
    assert_eq!(cs(&st, "plain").stop_signal.as_deref(), Some("SIGTERM"));
    w.delete(&h.clock, 30);
    advance(s(1)).await;
    let sent: Vec<Signal> = h
        .signals_to("usr1")
        .into_iter()
        .map(|(_, sig)| sig)
        .collect();
    assert_eq!(sent.first().copied(), Signal::from_name("SIGUSR1"));
    assert_eq!(
        h.signals_to("plain").first().map(|(_, sig)| *sig),
        Some(Signal::TERM)
    );
}

#[tokio::test(start_paused = true)]
async fn an_unhandled_stop_signal_is_warned_about_soon_after_start_once_per_instance() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::sequence(vec![
            Attempt::exits_after(s(5), 1).reports_handles_stop_signal(Some(false)),
            Attempt::forever().reports_handles_stop_signal(Some(false)),
        ]),
    );
    h.rt.script(
        "good",
        FakeScript::always(Attempt::forever().reports_handles_stop_signal(Some(true))),
    );
    let _w = h
        .start(pod(
            "Always",
            vec![container("app"), container("good")],
            None,
        ))
        .await;
    advance(s(1)).await;
    assert!(
        h.event("StopSignalNotHandled").is_none(),
        "not before it settled"
    );
    advance(s(2)).await;
    let (ty, msg) = h.event("StopSignalNotHandled").expect("the early warning");
    assert_eq!(ty, EventType::Warning);
    assert_eq!(
        msg,
        "PID 1 does not handle SIGTERM: it will be killed after the grace period"
    );
    let count = || {
        h.reasons()
            .iter()
            .filter(|r| *r == "StopSignalNotHandled")
            .count()
    };
    assert_eq!(count(), 1, "only the container that ignores it");
    advance(s(1)).await;
    assert_eq!(count(), 1, "once per instance");
    // the next instance (restarted at 5 s) is checked again, 2 s after its start
    advance(s(4)).await;
    assert_eq!(count(), 2);
    advance(s(30)).await;
    assert_eq!(count(), 2, "once per instance");
}

// ------------------------------------------------------------ sleep 0 (KEP-4818)

#[tokio::test(start_paused = true)]
async fn sleep_hooks_of_zero_seconds_return_at_once() {
    let h = Harness::new();
    let c = with_post_start(
        with_pre_stop(container("app"), sleep_hook(0)),
        sleep_hook(0),
    );
    let mut w = h.start(pod("Always", vec![c], Some(30))).await;
    // postStart sleep 0: the container is reported running at once
    let st = h.last();
    assert!(cs(&st, "app").state.unwrap().running.is_some());
    let t_del = Instant::now();
    w.delete(&h.clock, 30);
    advance(s(1)).await;
    // preStop sleep 0: the stop signal follows the delete at once
    let sig: Vec<_> = h
        .signals()
        .into_iter()
        .map(|(t, _, sig)| (t - h.since(t_del), sig))
        .collect();
    assert_eq!(sig, vec![(s(0), Signal::TERM)]);
    assert!(h.event("FailedPreStopHook").is_none());
    assert!(h.event("FailedPostStartHook").is_none());
}

// ------------------------------------------------------------ visible refusals

#[tokio::test(start_paused = true)]
async fn host_users_false_is_refused_with_a_waiting_reason_and_an_event() {
    let h = Harness::new();
    let mut p = pod("Always", vec![container("app")], None);
    p.spec.as_mut().unwrap().host_users = Some(false);
    let _w = h.start(p).await;
    let st = h.last();
    assert_eq!(phase(&st), "Pending");
    let w = cs(&st, "app").state.unwrap().waiting.unwrap();
    assert_eq!(w.reason.as_deref(), Some("CreateContainerConfigError"));
    let msg =
        "user namespaces are not supported on this node: spec.hostUsers: false cannot be honoured";
    assert_eq!(w.message.as_deref(), Some(msg));
    assert_eq!(
        h.event("Failed"),
        Some((EventType::Warning, format!("Error: {msg}")))
    );
    assert!(h.starts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_image_volume_is_refused_for_the_container_that_mounts_it() {
    let h = Harness::new();
    let mut uses = container("uses");
    uses.volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
        name: "model".into(),
        mount_path: "/model".into(),
        ..Default::default()
    }]);
    let mut p = pod("Always", vec![uses, container("other")], None);
    p.spec.as_mut().unwrap().volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
        name: "model".into(),
        image: Some(k8s_openapi::api::core::v1::ImageVolumeSource {
            reference: Some("quay.io/models/m:v1".into()),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    let _w = h.start(p).await;
    let st = h.last();
    assert_eq!(
        waiting_reason(&st, "uses").as_deref(),
        Some("CreateContainerConfigError")
    );
    assert!(cs(&st, "other").state.unwrap().running.is_some());
    assert_eq!(h.start_times("uses"), Vec::<std::time::Duration>::new());
}

// ------------------------------------------------------------ back-off cap (KEP-5593)

#[tokio::test(start_paused = true)]
async fn the_nodes_max_container_restart_period_caps_the_back_off() {
    let mut h = Harness::new();
    h.backoff_max = s(4);
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(1), 1)));
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    advance(s(40)).await;
    // exits at 1, 2+…: restarts immediately, then 4 s (initial lowered to the cap), 4, 4 …
    let starts = h.start_times("app");
    assert_eq!(&starts[..5], &[s(0), s(1), s(6), s(11), s(16)]);
    let msg = waiting_message(&h.last());
    assert!(
        msg.as_ref().is_none_or(|m| m.starts_with("back-off 4s")),
        "{msg:?}"
    );
}

fn waiting_message(st: &k8s_openapi::api::core::v1::PodStatus) -> Option<String> {
    cs(st, "app")
        .state
        .and_then(|s| s.waiting)
        .and_then(|w| w.message)
}

// ------------------------------------------------------------ in-place resize (KEP-1287)

fn resources(cpu: &str, mem: &str) -> k8s_openapi::api::core::v1::ResourceRequirements {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let list: std::collections::BTreeMap<String, Quantity> = [
        ("cpu".to_string(), Quantity(cpu.into())),
        ("memory".to_string(), Quantity(mem.into())),
    ]
    .into();
    k8s_openapi::api::core::v1::ResourceRequirements {
        requests: Some(list.clone()),
        limits: Some(list),
        ..Default::default()
    }
}

fn sized(name: &str, cpu: &str, mem: &str) -> Container {
    Container {
        resources: Some(resources(cpu, mem)),
        ..container(name)
    }
}

fn updates(h: &Harness) -> Vec<podvisor_runtime::Resources> {
    h.rt.calls()
        .into_iter()
        .filter_map(|r| match r.call {
            podvisor_runtime::fake::FakeCall::UpdateResources { resources, .. } => Some(resources),
            _ => None,
        })
        .collect()
}

fn condition_reason(st: &k8s_openapi::api::core::v1::PodStatus, ty: &str) -> Option<String> {
    st.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == ty)
        .map(|c| c.reason.clone().unwrap_or_default())
}

#[tokio::test(start_paused = true)]
async fn a_resize_changes_the_limits_live_and_reports_allocated_and_actual() {
    let h = Harness::new();
    let mut w = h
        .start(pod("Always", vec![sized("app", "100m", "64Mi")], None))
        .await;
    let st = h.last();
    let c = cs(&st, "app");
    assert_eq!(c.allocated_resources.unwrap()["memory"].0, "64Mi");
    assert_eq!(c.resources.unwrap().limits.unwrap()["cpu"].0, "100m");
    w.update(|p| {
        p.metadata.generation = Some(2);
        p.spec.as_mut().unwrap().containers[0].resources = Some(resources("200m", "128Mi"));
    });
    advance(s(1)).await;
    let up = updates(&h);
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].memory_limit_bytes, Some(128 << 20));
    assert_eq!(up[0].cpu_limit_millis, Some(200));
    assert_eq!(up[0].cpu_request_millis, Some(200));
    let st = h.last();
    let c = cs(&st, "app");
    assert_eq!(c.restart_count, 0, "no restart");
    assert_eq!(c.allocated_resources.unwrap()["cpu"].0, "200m");
    assert_eq!(c.resources.unwrap().limits.unwrap()["memory"].0, "128Mi");
    assert_eq!(condition_reason(&st, "PodResizeInProgress"), None);
    assert_eq!(condition_reason(&st, "PodResizePending"), None);
    assert_eq!(h.start_times("app"), vec![s(0)]);
    // upstream's events, with the allocation and the generation
    let summary = r#"{"containers":[{"name":"app","resources":{"limits":{"cpu":"200m","memory":"128Mi"},"requests":{"cpu":"200m","memory":"128Mi"}}}],"generation":2}"#;
    assert_eq!(
        h.event("ResizeStarted"),
        Some((EventType::Normal, format!("Pod resize started: {summary}")))
    );
    assert_eq!(
        h.event("ResizeCompleted"),
        Some((
            EventType::Normal,
            format!("Pod resize completed: {summary}")
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn a_sidecar_is_resized_in_place_like_a_container() {
    let h = Harness::new();
    let mut side = sized("side", "100m", "64Mi");
    side.restart_policy = Some("Always".into());
    let mut w = h
        .start(init_pod("Always", vec![side], vec![container("app")], None))
        .await;
    w.update(|p| {
        p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].resources =
            Some(resources("300m", "96Mi"));
    });
    advance(s(1)).await;
    let up = updates(&h);
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].memory_limit_bytes, Some(96 << 20));
    let st = h.last();
    let side = ics(&st, "side");
    assert_eq!(side.restart_count, 0);
    assert_eq!(side.allocated_resources.unwrap()["cpu"].0, "300m");
    assert_eq!(side.resources.unwrap().limits.unwrap()["memory"].0, "96Mi");
}

fn sandbox_updates(h: &Harness) -> Vec<podvisor_runtime::Resources> {
    h.rt.calls()
        .into_iter()
        .filter_map(|r| match r.call {
            podvisor_runtime::fake::FakeCall::UpdateSandboxResources { resources, .. } => {
                Some(resources)
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn pod_level_resources_limit_the_pod_cgroup_and_resize_in_place() {
    let h = Harness::new();
    let mut p = pod("Always", vec![container("app"), container("side")], None);
    p.spec.as_mut().unwrap().resources = Some(resources("500m", "256Mi"));
    p.metadata.generation = Some(1);
    let mut w = h.start(p).await;
    // the sandbox (pod cgroup) is made with the pod's limits
    let sb = podvisor_runtime::ContainerRuntime::list(h.rt.as_ref())
        .await
        .unwrap()
        .pop()
        .expect("a sandbox");
    assert_eq!(sb.config.resources.memory_limit_bytes, Some(256 << 20));
    assert_eq!(sb.config.resources.cpu_limit_millis, Some(500));
    let st = h.last();
    assert_eq!(st.qos_class.as_deref(), Some("Guaranteed"));
    assert_eq!(
        st.allocated_resources.as_ref().unwrap()["memory"].0,
        "256Mi"
    );
    assert_eq!(
        st.resources.as_ref().unwrap().limits.as_ref().unwrap()["cpu"].0,
        "500m"
    );
    // a pod-level resize (KEP-5419) changes the pod cgroup live, nothing restarts
    w.update(|p| {
        p.metadata.generation = Some(2);
        p.spec.as_mut().unwrap().resources = Some(resources("1", "512Mi"));
    });
    advance(s(1)).await;
    let up = sandbox_updates(&h);
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].memory_limit_bytes, Some(512 << 20));
    assert_eq!(up[0].cpu_limit_millis, Some(1000));
    let st = h.last();
    assert_eq!(st.allocated_resources.as_ref().unwrap()["cpu"].0, "1");
    assert_eq!(
        st.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "512Mi"
    );
    assert_eq!(condition_reason(&st, "PodResizeInProgress"), None);
    assert_eq!(h.start_times("app"), vec![s(0)]);
    // shrinking the pod's memory below what its containers use is refused
    h.rt.set_stats(
        "app",
        podvisor_runtime::ContainerStats {
            cpu_usage_nanos: 0,
            memory_working_set_bytes: 200 << 20,
        },
    );
    h.rt.set_stats(
        "side",
        podvisor_runtime::ContainerStats {
            cpu_usage_nanos: 0,
            memory_working_set_bytes: 100 << 20,
        },
    );
    w.update(|p| {
        p.metadata.generation = Some(3);
        p.spec.as_mut().unwrap().resources = Some(resources("1", "256Mi"));
    });
    advance(s(1)).await;
    assert_eq!(sandbox_updates(&h).len(), 1);
    let st = h.last();
    let msg = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodResizeInProgress")
        .and_then(|c| c.message.clone());
    assert_eq!(
        msg.as_deref(),
        Some(
            "cannot decrease memory limits: attempting to set pod memory limit (268435456) below current usage (314572800)"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_reads_the_allocation_from_its_checkpoint_not_the_status() {
    let h = Harness::new();
    let mut w = h
        .start(pod("Always", vec![sized("app", "100m", "64Mi")], None))
        .await;
    w.update(|p| {
        p.spec.as_mut().unwrap().containers[0].resources = Some(resources("200m", "128Mi"));
    });
    advance(s(1)).await;
    assert_eq!(updates(&h).len(), 1);
    let checkpoint = h
        .dir
        .path()
        .join("pods")
        .join(crate::testing::builders::POD_UID)
        .join("allocated.json");
    let saved = crate::pod::resize::load_checkpoint(&checkpoint).expect("a checkpoint");
    assert_eq!(
        saved.containers["app"]
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()["memory"]
            .0,
        "128Mi"
    );
    // the agent restarts; the pod object it reads carries a stale status (the old
    // resources), as after a lost status write
    let mut stale = w.pod.clone();
    let mut status = h.last();
    for c in status.container_statuses.iter_mut().flatten() {
        c.resources = Some(resources("100m", "64Mi"));
        c.allocated_resources = resources("100m", "64Mi").requests;
    }
    stale.status = Some(status);
    w.stop_agent().await;
    let _w = h.start(stale).await;
    advance(s(1)).await;
    // the node's own record holds: nothing is resized again, 200m stays allocated
    assert_eq!(updates(&h).len(), 1);
    assert_eq!(
        h.reasons().iter().filter(|r| *r == "ResizeStarted").count(),
        1
    );
    let c = cs(&h.last(), "app");
    assert_eq!(c.allocated_resources.unwrap()["cpu"].0, "200m");
}

#[tokio::test(start_paused = true)]
async fn restart_container_policy_restarts_and_the_new_instance_has_the_new_limits() {
    let h = Harness::new();
    let mut c = sized("app", "100m", "64Mi");
    c.resize_policy = Some(vec![k8s_openapi::api::core::v1::ContainerResizePolicy {
        resource_name: "memory".into(),
        restart_policy: "RestartContainer".into(),
    }]);
    let mut w = h.start(pod("Always", vec![c], Some(5))).await;
    w.update(|p| {
        p.spec.as_mut().unwrap().containers[0].resources = Some(resources("100m", "128Mi"));
    });
    advance(s(2)).await;
    assert!(updates(&h).is_empty(), "not changed live");
    let st = h.last();
    let c = cs(&st, "app");
    assert_eq!(c.restart_count, 1);
    assert_eq!(c.resources.unwrap().limits.unwrap()["memory"].0, "128Mi");
    assert_eq!(h.start_times("app").len(), 2);
    assert_eq!(
        h.event("Killing").map(|e| e.1),
        Some("Container app resize requires restart".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn an_infeasible_resize_is_pending_and_changes_nothing() {
    let mut h = Harness::new();
    h.allocatable = {
        let mut m = std::collections::BTreeMap::new();
        m.insert(
            "cpu".to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
        );
        m.insert(
            "memory".to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()),
        );
        m
    };
    let mut w = h
        .start(pod("Always", vec![sized("app", "500m", "64Mi")], None))
        .await;
    w.update(|p| {
        p.spec.as_mut().unwrap().containers[0].resources = Some(resources("3", "64Mi"));
    });
    advance(s(1)).await;
    let st = h.last();
    assert_eq!(
        condition_reason(&st, "PodResizePending").as_deref(),
        Some("Infeasible")
    );
    let msg = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodResizePending")
        .and_then(|c| c.message.clone());
    assert_eq!(
        msg.as_deref(),
        Some("Node didn't have enough capacity: cpu, requested: 3000, capacity: 2000")
    );
    assert_eq!(cs(&st, "app").allocated_resources.unwrap()["cpu"].0, "500m");
    assert!(updates(&h).is_empty());
    // another pod holds 1.8 cores: 500m → 1 is Deferred until it leaves
    h.allocations.set(
        "other",
        crate::pod::resize::Usage {
            cpu_millis: 1800,
            memory: 0,
        },
    );
    w.update(|p| {
        p.spec.as_mut().unwrap().containers[0].resources = Some(resources("1", "64Mi"));
    });
    advance(s(1)).await;
    assert_eq!(
        condition_reason(&h.last(), "PodResizePending").as_deref(),
        Some("Deferred")
    );
    h.allocations.remove("other");
    advance(s(6)).await;
    let st = h.last();
    assert_eq!(condition_reason(&st, "PodResizePending"), None);
    assert_eq!(cs(&st, "app").allocated_resources.unwrap()["cpu"].0, "1");
    assert_eq!(updates(&h).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_memory_limit_below_the_usage_is_refused_in_progress_with_an_error() {
    let h = Harness::new();
    let mut w = h
        .start(pod("Always", vec![sized("app", "100m", "128Mi")], None))
        .await;
    h.rt.set_stats(
        "app",
        podvisor_runtime::ContainerStats {
            cpu_usage_nanos: 0,
            memory_working_set_bytes: 100 << 20,
        },
    );
    w.update(|p| {
        p.spec.as_mut().unwrap().containers[0].resources = Some(resources("100m", "64Mi"));
    });
    advance(s(1)).await;
    let st = h.last();
    let cond = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodResizeInProgress")
        .cloned()
        .expect("in progress");
    assert_eq!(cond.reason.as_deref(), Some("Error"));
    // upstream's words: the pod's limit (its containers' sum) and the container's, refused
    let refused = "cannot decrease memory limits: [attempting to set pod memory limit (67108864) below current usage (104857600), attempting to set container \"app\" memory limit (67108864) below current usage (104857600)]";
    assert_eq!(cond.message.as_deref(), Some(refused));
    assert!(updates(&h).is_empty());
    let (ty, msg) = h.event("ResizeError").expect("a ResizeError event");
    assert_eq!(ty, EventType::Warning);
    assert_eq!(
        msg,
        format!(
            "Pod resize error: {{\"containers\":[{{\"name\":\"app\",\"resources\":{{\"limits\":{{\"cpu\":\"100m\",\"memory\":\"64Mi\"}},\"requests\":{{\"cpu\":\"100m\",\"memory\":\"64Mi\"}}}}}}],\"error\":{}}}",
            serde_json::to_string(refused).unwrap()
        )
    );
    // the usage drops: the next try goes through
    h.rt.set_stats(
        "app",
        podvisor_runtime::ContainerStats {
            cpu_usage_nanos: 0,
            memory_working_set_bytes: 10 << 20,
        },
    );
    advance(s(6)).await;
    assert_eq!(updates(&h).len(), 1);
    assert_eq!(condition_reason(&h.last(), "PodResizeInProgress"), None);
}

// ------------------------------------------------------------ RestartAllContainers (KEP-5532)

fn restart_all_on(mut c: Container, policy: &str, codes: &[i32]) -> Container {
    c.restart_policy = Some(policy.into());
    c.restart_policy_rules = Some(vec![ContainerRestartRule {
        action: "RestartAllContainers".into(),
        exit_codes: Some(ContainerRestartRuleOnExitCodes {
            operator: "In".into(),
            values: Some(codes.to_vec()),
        }),
    }]);
    c
}

fn all_restarting(st: &k8s_openapi::api::core::v1::PodStatus) -> Option<(String, Option<String>)> {
    st.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "AllContainersRestarting")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test(start_paused = true)]
async fn a_restart_all_rule_kills_every_container_at_once_and_reruns_the_init_containers() {
    let h = Harness::new();
    h.rt.script("init", FakeScript::always(Attempt::exits_after(s(0), 0)));
    h.rt.script(
        "trigger",
        FakeScript::sequence(vec![Attempt::exits_after(s(5), 42), Attempt::forever()]),
    );
    // a sidecar and a container that would ignore their stop signal: killed all the same
    h.rt.script("side", FakeScript::always(Attempt::forever().ignore_stop()));
    h.rt.script(
        "other",
        FakeScript::always(Attempt::forever().ignore_stop()),
    );
    let mut other = with_pre_stop(container("other"), sleep_hook(20));
    other.restart_policy = Some("Never".into());
    let p = init_pod(
        "Never",
        vec![container("init"), sidecar("side")],
        vec![restart_all_on(container("trigger"), "Never", &[42]), other],
        Some(30),
    );
    let _w = h.start(p).await;
    advance(s(1)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    // a pod with the rule reports the condition, False while nothing restarts
    assert_eq!(all_restarting(&st), Some(("False".into(), None)));
    let ip = st.pod_ip.clone();
    advance(s(5)).await;
    // the condition was True, with upstream's reason and message, before anything was killed
    let statuses = h.api.statuses();
    let during = statuses
        .iter()
        .find(|st| all_restarting(st).is_some_and(|(s, _)| s == "True"))
        .expect("AllContainersRestarting=True was written");
    let cond = during
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "AllContainersRestarting")
        .unwrap();
    assert_eq!(cond.reason.as_deref(), Some("RestartAllContainersStarted"));
    assert_eq!(
        cond.message.as_deref(),
        Some("container exited with restart policy rule")
    );
    assert_eq!(cond.observed_generation, None);
    assert_eq!(phase(during), "Running");
    assert_eq!(cs(during, "other").restart_count, 0);
    // killed at once with SIGKILL: no preStop, no stop signal, no grace
    assert_eq!(h.signals_to("other"), vec![(s(5), Signal::KILL)]);
    assert_eq!(h.signals_to("side"), vec![(s(5), Signal::KILL)]);
    assert!(!h.reasons().iter().any(|r| r == "FailedPreStopHook"));
    // the init container ran again, then every container restarted in the same sandbox
    assert_eq!(h.start_times("init"), vec![s(0), s(5)]);
    let st = h.last();
    assert_eq!(all_restarting(&st), Some(("False".into(), None)));
    assert_eq!(phase(&st), "Running");
    assert_eq!(st.pod_ip, ip);
    for name in ["trigger", "other"] {
        assert_eq!(cs(&st, name).restart_count, 1, "{name}");
        assert!(cs(&st, name).state.unwrap().running.is_some(), "{name}");
    }
    assert_eq!(
        cs(&st, "other")
            .last_state
            .unwrap()
            .terminated
            .unwrap()
            .exit_code,
        137
    );
    assert_eq!(
        cs(&st, "trigger")
            .last_state
            .unwrap()
            .terminated
            .unwrap()
            .exit_code,
        42
    );
    assert_eq!(ics(&st, "side").restart_count, 1);
    assert_eq!(ics(&st, "init").restart_count, 1);
    let sandboxes =
        h.rt.calls()
            .into_iter()
            .filter(|r| {
                matches!(
                    r.call,
                    podvisor_runtime::fake::FakeCall::CreateSandbox { .. }
                )
            })
            .count();
    assert_eq!(sandboxes, 1, "the sandbox is kept");
}

#[tokio::test(start_paused = true)]
async fn a_sidecar_or_init_container_exit_restarts_all_and_never_fails_a_never_pod() {
    // a regular init container's exit 42 under a Never pod: all restart, not Failed
    let h = Harness::new();
    h.rt.script(
        "init",
        FakeScript::sequence(vec![
            Attempt::exits_after(s(1), 42),
            Attempt::exits_after(s(1), 0),
        ]),
    );
    let p = init_pod(
        "Never",
        vec![restart_all_on(container("init"), "Never", &[42])],
        vec![container("app")],
        None,
    );
    let _w = h.start(p).await;
    advance(s(1)).await;
    advance(s(1)).await;
    let st = h.last();
    assert!(
        h.api.statuses().iter().all(|st| phase(st) != "Failed"),
        "never Failed"
    );
    assert_eq!(phase(&st), "Running");
    assert_eq!(ics(&st, "init").restart_count, 1);
    let init = ics(&st, "init");
    assert_eq!(init.state.unwrap().terminated.unwrap().exit_code, 0);
    assert_eq!(init.last_state.unwrap().terminated.unwrap().exit_code, 42);
    assert!(cs(&st, "app").state.unwrap().running.is_some());
    // a sidecar's exit 88 restarts the app container too
    let h = Harness::new();
    h.rt.script(
        "side",
        FakeScript::sequence(vec![Attempt::exits_after(s(3), 88), Attempt::forever()]),
    );
    let p = init_pod(
        "Always",
        vec![restart_all_on(sidecar("side"), "Always", &[88])],
        vec![container("app")],
        None,
    );
    let _w = h.start(p).await;
    advance(s(4)).await;
    let st = h.last();
    assert_eq!(cs(&st, "app").restart_count, 1);
    assert_eq!(ics(&st, "side").restart_count, 1);
    assert_eq!(h.start_times("app"), vec![s(0), s(3)]);
    // a pod without such a rule has no such condition
    let h = Harness::new();
    let _w = h.start(pod("Always", vec![container("app")], None)).await;
    assert_eq!(all_restarting(&h.last()), None);
}
