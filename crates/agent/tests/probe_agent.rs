//! Probes and hooks inside the agent's pod worker, on the fake runtime under paused time:
//! readiness drives containerStatuses[].ready and the Ready/ContainersReady conditions,
//! liveness kills and restarts through the worker's restart policy, startup gates `started`,
//! postStart gates `running`, and a deletion pre-empts a hanging postStart.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{
    Container, ExecAction, Lifecycle, LifecycleHandler, Pod, PodSpec, PodStatus, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podvisor_agent::WallClock;
use podvisor_agent::api::EventType;
use podvisor_agent::clock::to_time;
use podvisor_agent::deadlines::DeadlineStore;
use podvisor_agent::hooks::LifecycleHooks;
use podvisor_agent::testing::{FakePodApi, RecordingEvents};
use podvisor_agent::worker::{PodWorker, RuntimeNote, WorkerCtx, WorkerHandle};
use podvisor_runtime::fake::{Attempt, ExecScript, FakeCall, FakeRuntime, FakeScript};
use podvisor_runtime::{ContainerRuntime, Signal};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod probe_support;

const UID: &str = "uid-probe";

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

struct Harness {
    rt: Arc<FakeRuntime>,
    api: Arc<FakePodApi>,
    events: Arc<RecordingEvents>,
    clock: WallClock,
    _dir: tempfile::TempDir,
    t0: Instant,
    handle: Option<WorkerHandle>,
    pod: Pod,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
    shutdown: CancellationToken,
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

async fn advance(d: Duration) {
    tokio::time::sleep(d).await;
    settle().await;
}

fn exec_probe(cmd: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(cmd.iter().map(|c| c.to_string()).collect()),
        }),
        ..Default::default()
    }
}

fn pod(policy: &str, containers: Vec<Container>, grace: Option<i64>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some(UID.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            restart_policy: Some(policy.into()),
            termination_grace_period_seconds: grace,
            containers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Harness {
    async fn start(pod: Pod, script: FakeScript) -> Harness {
        let clock = WallClock::tokio(SystemTime::UNIX_EPOCH + s(1_700_000_000));
        let rt = Arc::new(FakeRuntime::new(clock.clone()));
        rt.script_default(script);
        Self::start_on(pod, rt.clone(), rt, clock).await
    }

    async fn start_on(
        pod: Pod,
        fake: Arc<FakeRuntime>,
        runtime: Arc<dyn ContainerRuntime>,
        clock: WallClock,
    ) -> Harness {
        let rt = fake;
        let api = Arc::new(FakePodApi::new());
        let events = Arc::new(RecordingEvents::new());
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = Arc::new(WorkerCtx {
            runtime: runtime.clone(),
            api: api.clone(),
            events: events.clone(),
            hooks: Arc::new(LifecycleHooks::new(runtime)),
            clock: clock.clone(),
            deadlines: DeadlineStore::open(dir.path()).expect("state dir"),
            objects: Arc::new(podvisor_agent::objects::MemoryObjects::new()),
            pods_dir: dir.path().join("pods"),
            node_name: "node-1".into(),
            node_ip: "127.0.0.1".into(),
            allocatable: Default::default(),
            backoff_initial: s(10),
            backoff_max: s(300),
        });
        let shutdown = CancellationToken::new();
        let (worker, handle) = PodWorker::new(ctx, Arc::new(pod.clone()), None, shutdown.clone());
        let mut exits = rt.subscribe();
        let notes = handle.notes.clone();
        let forwarder = tokio::spawn(async move {
            while let Ok(ev) = exits.recv().await {
                if ev.sandbox_id == UID {
                    let _ = notes.send(RuntimeNote::Exit(ev));
                }
            }
        });
        let task = tokio::spawn(worker.run());
        settle().await;
        Harness {
            rt,
            api,
            events,
            clock,
            _dir: dir,
            t0: Instant::now(),
            handle: Some(handle),
            pod,
            _tasks: vec![forwarder, task],
            shutdown,
        }
    }

    fn last(&self) -> PodStatus {
        self.api.last_status().expect("a status was written")
    }

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
        self.events
            .events()
            .into_iter()
            .filter(|(_, e)| e.reason == reason)
            .map(|(_, e)| (e.type_, e.message))
            .collect()
    }

    fn delete(&mut self, grace: i64) {
        let now = self.clock.now();
        self.pod.metadata.deletion_timestamp = Some(to_time(now + s(grace as u64)));
        self.pod.metadata.deletion_grace_period_seconds = Some(grace);
        let pod = Arc::new(self.pod.clone());
        if let Some(h) = &self.handle {
            h.input.send_modify(|i| i.pod = Some(pod));
        }
    }

    fn signals(&self) -> Vec<(Duration, Signal)> {
        self.rt
            .calls()
            .into_iter()
            .filter_map(|r| match r.call {
                FakeCall::Signal { signal, .. } => Some((r.at - self.t0, signal)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
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
    let mut c = Container {
        name: "app".into(),
        ..Default::default()
    };
    c.lifecycle = Some(Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["hook".into()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
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
    let mut c = Container {
        name: "app".into(),
        ..Default::default()
    };
    c.lifecycle = Some(Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["hang".into()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
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
