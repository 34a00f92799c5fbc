//! What the agent's real-process suites (`process_e2e`, `init_process`) share: the runner of
//! their `harness = false` binaries, and the environment each test gets (an in-process API
//! server on the memory store, a node token, a temporary directory and the process runtime).
//!
//! Each suite binary is its own supervisor: run with `supervise --dir …` it becomes the
//! sandbox supervisor (as `podvisor supervise` does); otherwise [`main`] runs the selected
//! tests one at a time, each in a fresh tokio runtime with real time, and removes every
//! sandbox a test left behind (so no process outlives its test), whether it passed or not.
#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use podvisor_agent::{Agent, AgentConfig};
use podvisor_apiserver::testing::{memory_server, publish_root_ca};
use podvisor_runtime::ContainerRuntime;
use podvisor_runtime::process::{ProcessRuntime, ProcessRuntimeConfig, supervisor_main};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One test of a suite.
pub type TestFn = fn(Env) -> futures::future::BoxFuture<'static, ()>;

/// The suite binary's `main`: the supervisor when asked to be one, otherwise the test kit's
/// runner of `tests` (selection as libtest takes it) with [`run_one`] for each.
pub fn main(tests: Vec<(&'static str, TestFn)>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("supervise") {
        return ExitCode::from(supervisor_main(args[1..].to_vec()).clamp(0, 255) as u8);
    }
    podvisor_testkit::runner::run(tests, run_one)
}

/// Runs one test in a fresh runtime and environment; its panic is passed on after the
/// clean-up (the runner reports it).
fn run_one(f: TestFn) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let env = Env::new().await;
        let dir = env.dir.clone();
        let outcome = tokio::spawn(f(env)).await;
        remove_everything(&dir).await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    });
}

/// Removes every sandbox left under `dir` (kills every process the test started).
async fn remove_everything(dir: &tempfile::TempDir) {
    if let Ok(rt) = new_runtime(dir.path()).await
        && let Ok(list) = rt.list().await
    {
        for sb in list {
            let _ = rt.remove_sandbox(&sb.config.id).await;
        }
    }
}

/// A process runtime instance on the state under `dir` (a restarted agent gets a new one on
/// the same state); the supervisor is this test binary.
pub async fn new_runtime(dir: &Path) -> Result<ProcessRuntime, podvisor_runtime::RuntimeError> {
    let exe = std::env::current_exe().expect("current exe");
    let mut cfg = ProcessRuntimeConfig::new(dir.join("runtime"), exe, vec!["supervise".into()]);
    cfg.spare_supervisors = 0;
    ProcessRuntime::new(cfg).await
}

/// What every test gets: an API server, its admin client, `node-1`'s token, a temporary
/// directory and a process runtime on it.
pub struct Env {
    pub server: podvisor_apiserver::ApiServer,
    pub admin: Client,
    pub node_token: String,
    pub dir: Arc<tempfile::TempDir>,
    pub runtime: Arc<ProcessRuntime>,
}

impl Env {
    async fn new() -> Env {
        let server = memory_server().await;
        publish_root_ca(&server, "default").await;
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

    /// A directory for the test's own files (markers, heartbeats).
    pub fn work(&self) -> PathBuf {
        let p = self.dir.path().join("work");
        std::fs::create_dir_all(&p).expect("work dir");
        p
    }

    /// The agent's configuration: `node-1` on 127.0.0.1 with its state in the directory.
    pub fn agent_config(&self) -> AgentConfig {
        let mut cfg = AgentConfig::new(
            "node-1",
            "127.0.0.1".parse().expect("ip"),
            self.dir.path().join("agent"),
        );
        cfg.node_token = self.node_token.clone();
        cfg
    }

    /// Starts an agent with `cfg` on `runtime`; cancel the token to stop it.
    pub fn start_agent_with(
        &self,
        runtime: Arc<ProcessRuntime>,
        cfg: AgentConfig,
    ) -> (CancellationToken, JoinHandle<()>) {
        let client = self.server.in_process_client(&self.node_token);
        let agent = Agent::new(client, runtime, cfg);
        let stop = CancellationToken::new();
        let s = stop.clone();
        (
            stop,
            tokio::spawn(async move { agent.run(s).await.expect("agent") }),
        )
    }

    /// The pods of namespace `default`, as the admin.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), "default")
    }
}

/// `sh -c <script>`.
pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Polls `f` every 25 ms until it gives a value; panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
