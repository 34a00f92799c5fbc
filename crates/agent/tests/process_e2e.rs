//! The seed's scenario with real processes: the agent on the process runtime against the
//! in-process API server. TERM honoured (gone quickly), TERM ignored (SIGKILL at the
//! deadline, Terminating in between), preStop first, force delete, a double-forked daemon
//! killed with its pod, the agent stopped and restarted mid-grace (a new Agent and a new
//! runtime instance on the same state).
//!
//! The binary is its own supervisor and runs one test at a time with real time and generous
//! bounds (see `process_support`).

mod process_support;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ExecAction, Lifecycle, LifecycleHandler, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use podvisor_runtime::ContainerRuntime;
use podvisor_runtime::process::ProcessRuntime;
use podvisor_testkit as testkit;
use process_support::{Env, eventually, new_runtime, sh};
use tokio::task::JoinHandle;
use tokio::time::Instant as StdInstant;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    process_support::main(vec![
        ("term_honoured_pod_is_gone_quickly", |e| {
            Box::pin(term_honoured_pod_is_gone_quickly(e))
        }),
        ("term_ignored_is_killed_at_the_deadline", |e| {
            Box::pin(term_ignored_is_killed_at_the_deadline(e))
        }),
        ("pre_stop_runs_before_the_stop_signal", |e| {
            Box::pin(pre_stop_runs_before_the_stop_signal(e))
        }),
        ("force_delete_stops_within_the_floor", |e| {
            Box::pin(force_delete_stops_within_the_floor(e))
        }),
        ("double_forked_daemon_dies_with_its_pod", |e| {
            Box::pin(double_forked_daemon_dies_with_its_pod(e))
        }),
        ("agent_restart_mid_grace_keeps_the_original_deadline", |e| {
            Box::pin(agent_restart_mid_grace_keeps_the_original_deadline(e))
        }),
    ])
}

impl Env {
    fn start_agent(&self, runtime: Arc<ProcessRuntime>) -> (CancellationToken, JoinHandle<()>) {
        self.start_agent_with(runtime, self.agent_config())
    }

    /// Creates the pod and waits until it runs.
    async fn run_pod(&self, pod: Pod) -> Pod {
        let name = pod.metadata.name.clone().expect("name");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create");
        let pods = self.pods();
        eventually("pod running", Duration::from_secs(20), || async {
            pods.get(&name)
                .await
                .ok()
                .filter(|p| phase(p).as_deref() == Some("Running"))
        })
        .await
    }

    /// Starts recording the pod (see [`Env::record`]), lets the watch settle, and deletes it
    /// with its own grace period; returns the recording and the time of the delete.
    async fn record_and_delete(
        &self,
        name: &str,
    ) -> (JoinHandle<(Vec<Pod>, Option<StdInstant>)>, StdInstant) {
        let rec = self.record(name);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = StdInstant::now();
        self.pods()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
        (rec, t0)
    }

    /// Records every version of the pod until it is deleted; returns (versions, deleted at).
    fn record(&self, name: &str) -> JoinHandle<(Vec<Pod>, Option<StdInstant>)> {
        let api = self.pods();
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        tokio::spawn(async move {
            let mut versions = Vec::new();
            let mut stream = watcher(api, cfg).boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => {
                        versions.push(p)
                    }
                    Ok(watcher::Event::Delete(p)) => {
                        versions.push(p);
                        return (versions, Some(StdInstant::now()));
                    }
                    _ => {}
                }
            }
            (versions, None)
        })
    }
}

/// Pod `name` bound to `node-1` with one container `main` running `command`.
fn pod(name: &str, command: Vec<String>, grace: i64) -> Pod {
    testkit::pod(name)
        .node_name("node-1")
        .grace_period(grace)
        .container(testkit::container("main").with(|c| c.command = Some(command)))
        .build()
}

/// Waits at most `timeout` for a recording to end with the pod's deletion.
async fn deleted_within(
    rec: JoinHandle<(Vec<Pod>, Option<StdInstant>)>,
    timeout: Duration,
) -> (Vec<Pod>, Option<StdInstant>) {
    tokio::time::timeout(timeout, rec)
        .await
        .expect("deleted in time")
        .expect("watch")
}

/// The last version of the pod that has a phase.
fn last_status(versions: &[Pod]) -> &Pod {
    versions
        .iter()
        .rev()
        .find(|p| phase(p).is_some())
        .expect("a status")
}

fn phase(p: &Pod) -> Option<String> {
    p.status.as_ref().and_then(|s| s.phase.clone())
}

fn exit_code(p: &Pod) -> Option<i32> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether something still touches `path` (a heartbeat every 100 ms).
async fn beating(path: &Path) -> bool {
    let before = mtime(path);
    tokio::time::sleep(Duration::from_millis(600)).await;
    mtime(path) != before
}

/// A container script that beats on `beat` every 100 ms, with a TERM trap.
fn beating_script(beat: &Path, trap: &str) -> Vec<String> {
    sh(&format!(
        "{trap}; while :; do touch {b}; sleep 0.1; done",
        b = beat.display()
    ))
}

async fn term_honoured_pod_is_gone_quickly(env: Env) {
    let (stop, agent) = env.start_agent(env.runtime.clone());
    let beat = env.work().join("beat");
    env.run_pod(pod(
        "honour",
        beating_script(&beat, "trap 'exit 0' TERM"),
        30,
    ))
    .await;
    assert!(beating(&beat).await);
    let (rec, t0) = env.record_and_delete("honour").await;
    let (versions, deleted) = deleted_within(rec, Duration::from_secs(10)).await;
    let took = deleted.expect("DELETED seen") - t0;
    assert!(took < Duration::from_secs(3), "gone quickly, took {took:?}");
    let last_status = last_status(&versions);
    assert_eq!(
        phase(last_status).as_deref(),
        Some("Succeeded"),
        "terminal phase before DELETED"
    );
    assert_eq!(exit_code(last_status), Some(0));
    assert!(!beating(&beat).await);
    stop.cancel();
    agent.await.expect("agent task");
}

async fn term_ignored_is_killed_at_the_deadline(env: Env) {
    let (stop, agent) = env.start_agent(env.runtime.clone());
    let beat = env.work().join("beat");
    env.run_pod(pod("deaf", beating_script(&beat, "trap '' TERM"), 3))
        .await;
    let (rec, t0) = env.record_and_delete("deaf").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = env
        .pods()
        .get("deaf")
        .await
        .expect("still there: Terminating");
    assert!(p.metadata.deletion_timestamp.is_some());
    assert!(beating(&beat).await, "still running before the deadline");
    let (versions, deleted) = deleted_within(rec, Duration::from_secs(15)).await;
    let took = deleted.expect("DELETED seen") - t0;
    assert!(
        took >= Duration::from_secs(3),
        "not before the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3 + 2 + 1),
        "hard bound deadline + 2 s (+1 s for the object): {took:?}"
    );
    let last_status = last_status(&versions);
    assert_eq!(phase(last_status).as_deref(), Some("Failed"));
    assert_eq!(exit_code(last_status), Some(137));
    assert!(!beating(&beat).await);
    stop.cancel();
    agent.await.expect("agent task");
}

async fn pre_stop_runs_before_the_stop_signal(env: Env) {
    let (stop, agent) = env.start_agent(env.runtime.clone());
    let work = env.work();
    let order = work.join("order");
    let mut p = pod(
        "prestop",
        sh(&format!(
            "trap 'echo term >> {o}; exit 0' TERM; while :; do sleep 0.1; done",
            o = order.display()
        )),
        30,
    );
    let spec = p.spec.as_mut().expect("spec");
    spec.containers[0].lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(sh(&format!(
                    "echo prestop >> {o}; sleep 1",
                    o = order.display()
                ))),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    env.run_pod(p).await;
    let (rec, _) = env.record_and_delete("prestop").await;
    let (_, deleted) = deleted_within(rec, Duration::from_secs(15)).await;
    assert!(deleted.is_some());
    let text = std::fs::read_to_string(&order).expect("order file");
    assert_eq!(text, "prestop\nterm\n");
    stop.cancel();
    agent.await.expect("agent task");
}

async fn force_delete_stops_within_the_floor(env: Env) {
    let (stop, agent) = env.start_agent(env.runtime.clone());
    let beat = env.work().join("beat");
    env.run_pod(pod("forced", beating_script(&beat, "trap '' TERM"), 60))
        .await;
    podvisor_testkit::delete_now(&env.pods(), "forced").await;
    assert!(
        env.pods().get_opt("forced").await.expect("get").is_none(),
        "the object is gone at once"
    );
    let t0 = StdInstant::now();
    // the kubelet's floor: 1 s of pod grace and a 2 s stop window, so a TERM-ignoring
    // process still beats for about 2 s and is SIGKILLed then
    assert!(
        beating(&beat).await,
        "still running right after the force delete"
    );
    eventually("processes killed", Duration::from_secs(8), || async {
        (!beating(&beat).await).then_some(())
    })
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "killed within the floor: {:?}",
        t0.elapsed()
    );
    eventually("sandbox removed", Duration::from_secs(5), || async {
        env.runtime
            .list()
            .await
            .ok()
            .filter(|l| l.is_empty())
            .map(|_| ())
    })
    .await;
    stop.cancel();
    agent.await.expect("agent task");
}

async fn double_forked_daemon_dies_with_its_pod(env: Env) {
    let (stop, agent) = env.start_agent(env.runtime.clone());
    let work = env.work();
    let daemon = work.join("daemon");
    let script = format!(
        "setsid sh -c 'while :; do touch {d}; sleep 0.1; done' </dev/null >/dev/null 2>&1 & \
         trap 'exit 0' TERM; while :; do sleep 0.1; done",
        d = daemon.display()
    );
    env.run_pod(pod("daemon", sh(&script), 5)).await;
    eventually("daemon beating", Duration::from_secs(5), || async {
        beating(&daemon).await.then_some(())
    })
    .await;
    let (rec, _) = env.record_and_delete("daemon").await;
    let (_, deleted) = deleted_within(rec, Duration::from_secs(15)).await;
    assert!(deleted.is_some());
    assert!(
        !beating(&daemon).await,
        "the double-forked daemon died with its pod"
    );
    stop.cancel();
    agent.await.expect("agent task");
}

async fn agent_restart_mid_grace_keeps_the_original_deadline(env: Env) {
    let (stop, agent) = env.start_agent(env.runtime.clone());
    let beat = env.work().join("beat");
    env.run_pod(pod("restart", beating_script(&beat, "trap '' TERM"), 6))
        .await;
    let (rec, t0) = env.record_and_delete("restart").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // the agent goes away mid-grace (its runtime instance too); the pod keeps running
    stop.cancel();
    agent.await.expect("agent task");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(beating(&beat).await, "pods outlive the agent");
    let runtime2 = Arc::new(
        new_runtime(env.dir.path())
            .await
            .expect("new runtime instance"),
    );
    let (stop2, agent2) = env.start_agent(runtime2);
    // never earlier than the original deadline (t0 + 6 s)…
    tokio::time::sleep(
        Duration::from_secs(6).saturating_sub(t0.elapsed() + Duration::from_millis(700)),
    )
    .await;
    assert!(beating(&beat).await, "alive until the original deadline");
    // …and at most about a second later (plus the object removal)
    let (versions, deleted) = deleted_within(rec, Duration::from_secs(20)).await;
    let took = deleted.expect("DELETED seen") - t0;
    assert!(took >= Duration::from_secs(6), "{took:?}");
    assert!(
        took < Duration::from_secs(6 + 2),
        "original deadline, not a fresh grace period: {took:?}"
    );
    let last_status = last_status(&versions);
    assert_eq!(exit_code(last_status), Some(137));
    assert!(!beating(&beat).await);
    stop2.cancel();
    agent2.await.expect("agent task");
}
