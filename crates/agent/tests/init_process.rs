//! Init containers and native sidecars with real processes (spec §2.1–2.3, §8 group D): the
//! agent on the process runtime against the in-process API server. D1–D4 and a sidecar pod
//! (startup probe gating the next init container, stopped after the app once it completed).
//! Every version of each pod seen through a watch is checked against the group D
//! invariants.
//!
//! The binary is its own supervisor and runs one test at a time with real time and generous
//! bounds (see `process_support`).

mod process_support;

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, ExecAction, Pod, PodCondition, PodStatus, Probe,
};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use podvisor_runtime::process::ProcessRuntime;
use podvisor_testkit as testkit;
use process_support::{Env, new_runtime};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    process_support::main(vec![
        (
            "d1_never_pod_runs_init_containers_in_order_then_succeeds",
            |e| Box::pin(d1_never_pod_runs_init_containers_in_order_then_succeeds(e)),
        ),
        ("d2_always_pod_runs_init_containers_then_the_app", |e| {
            Box::pin(d2_always_pod_runs_init_containers_then_the_app(e))
        }),
        (
            "d3_failing_init_container_restarts_and_blocks_the_app",
            |e| Box::pin(d3_failing_init_container_restarts_and_blocks_the_app(e)),
        ),
        ("d4_failing_init_container_fails_a_never_pod", |e| {
            Box::pin(d4_failing_init_container_fails_a_never_pod(e))
        }),
        ("sidecar_gates_the_next_init_and_stops_after_the_app", |e| {
            Box::pin(sidecar_gates_the_next_init_and_stops_after_the_app(e))
        }),
        (
            "agent_restart_does_not_rerun_completed_init_containers",
            |e| Box::pin(agent_restart_does_not_rerun_completed_init_containers(e)),
        ),
    ])
}

/// Every version of a pod seen through a watch.
type Versions = Arc<Mutex<Vec<Pod>>>;

impl Env {
    /// The agent, with a 1 s first crash back-off (so D3 sees three restarts quickly).
    fn start_agent(&self) -> (CancellationToken, JoinHandle<()>) {
        self.start_agent_on(self.runtime.clone())
    }

    /// The agent on a given runtime instance (a restarted agent gets a new one).
    fn start_agent_on(&self, runtime: Arc<ProcessRuntime>) -> (CancellationToken, JoinHandle<()>) {
        let mut cfg = self.agent_config();
        cfg.backoff_initial = Duration::from_secs(1);
        self.start_agent_with(runtime, cfg)
    }

    /// Starts recording every version of the pod, then creates it.
    async fn create(&self, pod: Pod) -> (Versions, JoinHandle<()>) {
        let name = pod.metadata.name.clone().expect("name");
        let versions: Versions = Arc::default();
        let api = self.pods();
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let sink = versions.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, cfg).boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) = ev {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create");
        (versions, task)
    }

    /// Waits until the pod's status satisfies `f`; returns it.
    async fn wait_status(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        f: impl Fn(&PodStatus) -> bool,
    ) -> PodStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(p) = self.pods().get(name).await
                && let Some(st) = p.status
                && f(&st)
            {
                return st;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn delete_and_wait_gone(&self, name: &str) {
        let _ = self.pods().delete(name, &DeleteParams::default()).await;
        let deadline = Instant::now() + Duration::from_secs(40);
        while self.pods().get_opt(name).await.ok().flatten().is_some() {
            assert!(Instant::now() < deadline, "pod {name} not gone");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn c(name: &str, script: &str) -> Container {
    testkit::container(name)
        .command(&["sh", "-c", script])
        .build()
}

fn sidecar(name: &str, script: &str) -> Container {
    Container {
        restart_policy: Some("Always".into()),
        ..c(name, script)
    }
}

/// Pod `name` bound to `node-1` with a 10 s grace period.
fn pod(name: &str, policy: &str, init: Vec<Container>, app: Vec<Container>) -> Pod {
    testkit::pod(name)
        .node_name("node-1")
        .restart_policy(policy)
        .grace_period(10)
        .with(|p| {
            let spec = p.spec.as_mut().expect("spec");
            spec.init_containers = Some(init);
            spec.containers = app;
        })
        .build()
}

fn phase(st: &PodStatus) -> &str {
    st.phase.as_deref().unwrap_or_default()
}

fn cond<'a>(st: &'a PodStatus, ty: &str) -> Option<&'a PodCondition> {
    st.conditions.as_deref()?.iter().find(|c| c.type_ == ty)
}

/// `Initialized` is False with reason ContainersNotInitialized and `message`.
fn assert_not_initialized(st: &PodStatus, message: &str) {
    let ic = cond(st, "Initialized").expect("Initialized");
    assert_eq!(
        (
            ic.status.as_str(),
            ic.reason.as_deref(),
            ic.message.as_deref()
        ),
        ("False", Some("ContainersNotInitialized"), Some(message))
    );
}

fn ics<'a>(st: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    st.init_container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no init status {name}: {st:?}"))
}

fn app<'a>(st: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    st.container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no status {name}: {st:?}"))
}

fn waiting_reason(s: &ContainerStatus) -> Option<&str> {
    s.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

fn exit_code(s: &ContainerStatus) -> Option<i32> {
    s.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

/// Spec §8 group D `initContainersInvariants` on every version with a status.
fn check_invariants(versions: &Versions) {
    let versions = versions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut checked = 0;
    for p in &versions {
        let Some(st) = &p.status else { continue };
        let Some(init_cond) = cond(st, "Initialized") else {
            continue;
        };
        checked += 1;
        assert_ne!(init_cond.status, "Unknown", "Initialized never Unknown");
        assert!(init_cond.last_transition_time.is_some());
        if init_cond.status == "False" {
            for a in st.container_statuses.as_deref().unwrap_or_default() {
                assert_eq!(
                    waiting_reason(a),
                    Some("PodInitializing"),
                    "app container {} while init is incomplete: {st:?}",
                    a.name
                );
                assert_eq!(a.restart_count, 0);
            }
        }
        let spec = p.spec.as_ref().expect("spec");
        let complete = spec.init_containers.iter().flatten().all(|ic| {
            st.init_container_statuses
                .iter()
                .flatten()
                .find(|s| s.name == ic.name)
                .is_some_and(|s| {
                    if ic.restart_policy.as_deref() == Some("Always") {
                        s.started == Some(true)
                    } else {
                        s.ready
                    }
                })
        });
        if complete && phase(st) != "Failed" {
            assert_eq!(
                init_cond.status, "True",
                "Initialized once complete: {st:?}"
            );
        }
    }
    assert!(checked > 0, "statuses were seen");
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn d1_never_pod_runs_init_containers_in_order_then_succeeds(env: Env) {
    let (stop, agent) = env.start_agent();
    let order = env.work().join("order");
    let o = order.display();
    let p = pod(
        "d1",
        "Never",
        vec![
            c("init1", &format!("sleep 0.3; echo init1 >> {o}")),
            c("init2", &format!("echo init2 >> {o}")),
        ],
        vec![c("run1", &format!("echo run1 >> {o}"))],
    );
    let (versions, watch) = env.create(p).await;
    let st = env
        .wait_status("d1", "Succeeded", Duration::from_secs(30), |s| {
            phase(s) == "Succeeded"
        })
        .await;
    assert_eq!(lines(&order), ["init1", "init2", "run1"]);
    assert_eq!(
        cond(&st, "Initialized").expect("Initialized").status,
        "True"
    );
    assert_eq!(st.init_container_statuses.as_ref().map(Vec::len), Some(2));
    for n in ["init1", "init2"] {
        let s = ics(&st, n);
        assert!(s.ready, "{n} ready");
        let t = s
            .state
            .as_ref()
            .and_then(|x| x.terminated.as_ref())
            .expect("terminated");
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_invariants(&versions);
    watch.abort();
    stop.cancel();
    agent.await.expect("agent task");
}

async fn d2_always_pod_runs_init_containers_then_the_app(env: Env) {
    let (stop, agent) = env.start_agent();
    let p = pod(
        "d2",
        "Always",
        vec![c("init1", "true"), c("init2", "true")],
        vec![c("run1", "trap 'exit 0' TERM; while :; do sleep 0.1; done")],
    );
    let (versions, watch) = env.create(p).await;
    let st = env
        .wait_status("d2", "Running and Ready", Duration::from_secs(30), |s| {
            phase(s) == "Running" && cond(s, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    assert_eq!(
        cond(&st, "Initialized").expect("Initialized").status,
        "True"
    );
    for n in ["init1", "init2"] {
        assert!(ics(&st, n).ready);
        assert_eq!(exit_code(ics(&st, n)), Some(0));
    }
    check_invariants(&versions);
    env.delete_and_wait_gone("d2").await;
    watch.abort();
    stop.cancel();
    agent.await.expect("agent task");
}

async fn d3_failing_init_container_restarts_and_blocks_the_app(env: Env) {
    let (stop, agent) = env.start_agent();
    let p = pod(
        "d3",
        "Always",
        vec![c("init1", "exit 1"), c("init2", "true")],
        vec![c("run1", "sleep 600")],
    );
    let (versions, watch) = env.create(p).await;
    // back-off 0 s, 1 s, 2 s with the agent's 1 s first back-off
    let st = env
        .wait_status(
            "d3",
            "init1 restartCount >= 3",
            Duration::from_secs(40),
            |s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .any(|c| c.name == "init1" && c.restart_count >= 3)
            },
        )
        .await;
    assert_eq!(phase(&st), "Pending");
    assert_eq!(waiting_reason(ics(&st, "init2")), Some("PodInitializing"));
    assert_eq!(waiting_reason(app(&st, "run1")), Some("PodInitializing"));
    assert_not_initialized(&st, "containers with incomplete status: [init1 init2]");
    check_invariants(&versions);
    for p in versions.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if let Some(st) = &p.status
            && let Some(s) = st
                .init_container_statuses
                .iter()
                .flatten()
                .find(|c| c.name == "init1")
        {
            assert_ne!(exit_code(s), Some(0), "init1 never terminated with 0");
        }
    }
    env.delete_and_wait_gone("d3").await;
    watch.abort();
    stop.cancel();
    agent.await.expect("agent task");
}

async fn d4_failing_init_container_fails_a_never_pod(env: Env) {
    let (stop, agent) = env.start_agent();
    let p = pod(
        "d4",
        "Never",
        vec![c("init1", "true"), c("init2", "exit 1")],
        vec![c("run1", "true")],
    );
    let (versions, watch) = env.create(p).await;
    let st = env
        .wait_status("d4", "Failed", Duration::from_secs(30), |s| {
            phase(s) == "Failed"
        })
        .await;
    assert_not_initialized(&st, "containers with incomplete status: [init2]");
    assert_eq!(waiting_reason(app(&st, "run1")), Some("PodInitializing"));
    assert_eq!(exit_code(ics(&st, "init2")), Some(1));
    assert_eq!(ics(&st, "init2").restart_count, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_invariants(&versions);
    watch.abort();
    stop.cancel();
    agent.await.expect("agent task");
}

async fn sidecar_gates_the_next_init_and_stops_after_the_app(env: Env) {
    let (stop, agent) = env.start_agent();
    let work = env.work();
    let order = work.join("order");
    let up = work.join("side-up");
    let (o, u) = (order.display(), up.display());
    let mut side = sidecar(
        "side",
        &format!(
            "trap 'echo side-term >> {o}; exit 0' TERM; echo side >> {o}; sleep 1; touch {u}; \
             while :; do sleep 0.1; done"
        ),
    );
    side.startup_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(vec!["cat".into(), up.display().to_string()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(30),
        ..Default::default()
    });
    let p = pod(
        "sidecar",
        "Never",
        vec![
            side,
            c("init2", &format!("test -f {u} && echo init2 >> {o}")),
        ],
        vec![c("app", &format!("sleep 2; echo app >> {o}"))],
    );
    let (versions, watch) = env.create(p).await;
    let running = env
        .wait_status(
            "sidecar",
            "Running with the app",
            Duration::from_secs(30),
            |s| {
                phase(s) == "Running"
                    && s.container_statuses
                        .iter()
                        .flatten()
                        .any(|c| c.state.as_ref().is_some_and(|x| x.running.is_some()))
            },
        )
        .await;
    let side = ics(&running, "side");
    assert_eq!(side.started, Some(true));
    assert!(side.ready);
    assert_eq!(
        exit_code(ics(&running, "init2")),
        Some(0),
        "init2 ran after the probe"
    );
    let st = env
        .wait_status("sidecar", "Succeeded", Duration::from_secs(30), |s| {
            phase(s) == "Succeeded"
        })
        .await;
    assert_eq!(lines(&order), ["side", "init2", "app", "side-term"]);
    assert!(
        ics(&st, "side")
            .state
            .as_ref()
            .is_some_and(|x| x.terminated.is_some()),
        "the sidecar was stopped: {st:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_invariants(&versions);
    watch.abort();
    stop.cancel();
    agent.await.expect("agent task");
}

async fn agent_restart_does_not_rerun_completed_init_containers(env: Env) {
    let (stop, agent) = env.start_agent();
    let order = env.work().join("order");
    let o = order.display();
    let loop_forever = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    let p = pod(
        "adopt",
        "Always",
        vec![
            c("init1", &format!("echo init1 >> {o}")),
            sidecar("side", &format!("echo side >> {o}; {loop_forever}")),
        ],
        vec![c("app", &format!("echo app >> {o}; {loop_forever}"))],
    );
    let (versions, watch) = env.create(p).await;
    let ready = |s: &PodStatus| {
        phase(s) == "Running" && cond(s, "Ready").is_some_and(|c| c.status == "True")
    };
    env.wait_status("adopt", "Running and Ready", Duration::from_secs(30), ready)
        .await;
    assert_eq!(lines(&order), ["init1", "side", "app"]);
    // the agent goes away (its runtime instance too) and comes back
    stop.cancel();
    agent.await.expect("agent task");
    let runtime2 = Arc::new(
        new_runtime(env.dir.path())
            .await
            .expect("new runtime instance"),
    );
    let (stop2, agent2) = env.start_agent_on(runtime2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = env
        .wait_status(
            "adopt",
            "still Running and Ready",
            Duration::from_secs(10),
            ready,
        )
        .await;
    assert_eq!(lines(&order), ["init1", "side", "app"], "nothing ran again");
    let init1 = ics(&st, "init1");
    assert!(init1.ready);
    assert_eq!((exit_code(init1), init1.restart_count), (Some(0), 0));
    assert_eq!(ics(&st, "side").restart_count, 0);
    assert_eq!(app(&st, "app").restart_count, 0);
    check_invariants(&versions);
    env.delete_and_wait_gone("adopt").await;
    watch.abort();
    stop2.cancel();
    agent2.await.expect("agent task");
}
