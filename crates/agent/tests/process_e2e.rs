//! The seed's scenario with real processes: the agent on the process runtime against the
//! in-process API server. TERM honoured (gone quickly), TERM ignored (SIGKILL at the
//! deadline, Terminating in between), preStop first, force delete, a double-forked daemon
//! killed with its pod, the agent stopped and restarted mid-grace (a new Agent and a new
//! runtime instance on the same state).
//!
//! This test binary is its own supervisor: run with `supervise --dir …` it becomes the
//! sandbox supervisor (as `podvisor supervise` does), otherwise it runs the tests, one at a
//! time, each in a fresh tokio runtime, with real time and generous bounds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant as StdInstant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Container, ExecAction, Lifecycle, LifecycleHandler, Pod, PodSpec,
};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use podvisor_agent::{Agent, AgentConfig};
use podvisor_apiserver::testing::memory_server;
use podvisor_runtime::ContainerRuntime;
use podvisor_runtime::process::{ProcessRuntime, ProcessRuntimeConfig, supervisor_main};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("supervise") {
        return ExitCode::from(supervisor_main(args[1..].to_vec()).clamp(0, 255) as u8);
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let list_only = args.iter().any(|a| a == "--list");
    type TestFn = fn(Env) -> futures::future::BoxFuture<'static, ()>;
    let tests: Vec<(&str, TestFn)> = vec![
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
    ];
    if list_only {
        for (name, _) in &tests {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|flt| !name.contains(flt)) {
            continue;
        }
        ran += 1;
        let result = std::panic::catch_unwind(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio");
            rt.block_on(async {
                let env = Env::new().await;
                let cleanup = env.clone_for_cleanup();
                let outcome = tokio::spawn(f(env)).await;
                cleanup.remove_everything().await;
                if let Err(e) = outcome {
                    std::panic::resume_unwind(e.into_panic());
                }
            });
        });
        match result {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

struct Env {
    server: podvisor_apiserver::ApiServer,
    admin: Client,
    node_token: String,
    dir: Arc<tempfile::TempDir>,
    runtime: Arc<ProcessRuntime>,
}

struct Cleanup {
    dir: Arc<tempfile::TempDir>,
}

impl Cleanup {
    /// Removes every sandbox left (kills every process the test started).
    async fn remove_everything(self) {
        if let Ok(rt) = new_runtime(self.dir.path()).await
            && let Ok(list) = rt.list().await
        {
            for sb in list {
                let _ = rt.remove_sandbox(&sb.config.id).await;
            }
        }
    }
}

async fn new_runtime(dir: &Path) -> Result<ProcessRuntime, podvisor_runtime::RuntimeError> {
    let exe = std::env::current_exe().expect("current exe");
    let mut cfg = ProcessRuntimeConfig::new(dir.join("runtime"), exe, vec!["supervise".into()]);
    cfg.spare_supervisors = 0;
    ProcessRuntime::new(cfg).await
}

impl Env {
    async fn new() -> Env {
        let server = memory_server().await;
        let admin = server.in_process_client(&server.admin_token());
        let node_token = server.ensure_node_token("node-1").expect("node token");
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let runtime = Arc::new(new_runtime(dir.path()).await.expect("process runtime"));
        Env {
            server,
            admin,
            node_token,
            dir,
            runtime,
        }
    }

    fn clone_for_cleanup(&self) -> Cleanup {
        Cleanup {
            dir: self.dir.clone(),
        }
    }

    fn work(&self) -> PathBuf {
        let p = self.dir.path().join("work");
        std::fs::create_dir_all(&p).expect("work dir");
        p
    }

    fn start_agent(&self, runtime: Arc<ProcessRuntime>) -> (CancellationToken, JoinHandle<()>) {
        let mut cfg = AgentConfig::new(
            "node-1",
            "127.0.0.1".parse().expect("ip"),
            self.dir.path().join("agent"),
        );
        cfg.node_token = self.node_token.clone();
        let client = self.server.in_process_client(&self.node_token);
        let agent = Agent::new(client, runtime, cfg);
        let stop = CancellationToken::new();
        let s = stop.clone();
        (
            stop,
            tokio::spawn(async move { agent.run(s).await.expect("agent") }),
        )
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), "default")
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

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn pod(name: &str, command: Vec<String>, grace: i64) -> Pod {
    Pod {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            termination_grace_period_seconds: Some(grace),
            containers: vec![Container {
                name: "main".into(),
                image: Some("busybox".into()),
                command: Some(command),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
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

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = StdInstant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(StdInstant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
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
    let rec = env.record("honour");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = StdInstant::now();
    env.pods()
        .delete("honour", &DeleteParams::default())
        .await
        .expect("delete");
    let (versions, deleted) = tokio::time::timeout(Duration::from_secs(10), rec)
        .await
        .expect("deleted in time")
        .expect("watch");
    let took = deleted.expect("DELETED seen") - t0;
    assert!(took < Duration::from_secs(3), "gone quickly, took {took:?}");
    let last_status = versions
        .iter()
        .rev()
        .find(|p| phase(p).is_some())
        .expect("a status");
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
    let rec = env.record("deaf");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = StdInstant::now();
    env.pods()
        .delete("deaf", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = env
        .pods()
        .get("deaf")
        .await
        .expect("still there: Terminating");
    assert!(p.metadata.deletion_timestamp.is_some());
    assert!(beating(&beat).await, "still running before the deadline");
    let (versions, deleted) = tokio::time::timeout(Duration::from_secs(15), rec)
        .await
        .expect("deleted in time")
        .expect("watch");
    let took = deleted.expect("DELETED seen") - t0;
    assert!(
        took >= Duration::from_secs(3),
        "not before the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3 + 2 + 1),
        "hard bound deadline + 2 s (+1 s for the object): {took:?}"
    );
    let last_status = versions
        .iter()
        .rev()
        .find(|p| phase(p).is_some())
        .expect("a status");
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
    let rec = env.record("prestop");
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.pods()
        .delete("prestop", &DeleteParams::default())
        .await
        .expect("delete");
    let (_, deleted) = tokio::time::timeout(Duration::from_secs(15), rec)
        .await
        .expect("deleted in time")
        .expect("watch");
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
    env.pods()
        .delete(
            "forced",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("delete");
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
    let rec = env.record("daemon");
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.pods()
        .delete("daemon", &DeleteParams::default())
        .await
        .expect("delete");
    let (_, deleted) = tokio::time::timeout(Duration::from_secs(15), rec)
        .await
        .expect("deleted in time")
        .expect("watch");
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
    let rec = env.record("restart");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = StdInstant::now();
    env.pods()
        .delete("restart", &DeleteParams::default())
        .await
        .expect("delete");
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
    let (versions, deleted) = tokio::time::timeout(Duration::from_secs(20), rec)
        .await
        .expect("deleted in time")
        .expect("watch");
    let took = deleted.expect("DELETED seen") - t0;
    assert!(took >= Duration::from_secs(6), "{took:?}");
    assert!(
        took < Duration::from_secs(6 + 2),
        "original deadline, not a fresh grace period: {took:?}"
    );
    let last_status = versions
        .iter()
        .rev()
        .find(|p| phase(p).is_some())
        .expect("a status");
    assert_eq!(exit_code(last_status), Some(137));
    assert!(!beating(&beat).await);
    stop2.cancel();
    agent2.await.expect("agent task");
}
