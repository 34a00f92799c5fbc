//! The one pod-worker harness: a [`PodWorker`] on the fake runtime with the production
//! lifecycle hooks, recording fakes for the API and events, a throw-away state directory,
//! and the agent's dispatcher reduced to one pod (runtime exits become [`RuntimeNote`]s).
//! Tests run it under paused tokio time (`#[tokio::test(start_paused = true)]`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use podvisor_runtime::fake::{FakeCall, FakeRuntime};
use podvisor_runtime::{ContainerRuntime, Signal};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{FakePodApi, RecordingEvents};
use crate::api::EventType;
use crate::clock::{WallClock, to_time};
use crate::hooks::{HookRunner, LifecycleHooks};
use crate::objects::MemoryObjects;
use crate::pod::deadlines::DeadlineStore;
use crate::pod::{PodWorker, RuntimeNote, WorkerCtx, WorkerHandle};

/// `n` seconds.
pub fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Lets every ready task run (paused time does not move).
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Moves paused time by `d`, then lets every ready task run.
pub async fn advance(d: Duration) {
    tokio::time::sleep(d).await;
    settle().await;
}

/// A directory removed on drop (the worker's persisted deadlines and pod directories).
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh, empty directory under the system's temporary directory.
    pub fn new() -> std::io::Result<ScratchDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("podvisor-agent-test-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything a pod worker needs, faked and recording. See the module documentation.
pub struct WorkerHarness {
    /// The fake runtime (scripts, recorded calls).
    pub rt: Arc<FakeRuntime>,
    /// The recorded pod writes.
    pub api: Arc<FakePodApi>,
    /// The recorded events.
    pub events: Arc<RecordingEvents>,
    /// The wall clock (follows tokio time).
    pub clock: WallClock,
    /// The state directory (`terminations/`, `pods/<uid>/`).
    pub dir: ScratchDir,
    /// When the harness was made: the origin of every recorded time.
    pub t0: Instant,
    /// ConfigMaps and Secrets the pods refer to.
    pub objects: Arc<MemoryObjects>,
    /// The node's IP (host and pod IP).
    pub node_ip: String,
    /// What the worker talks to (the fake itself, or a wrapper of it).
    runtime: Arc<dyn ContainerRuntime>,
    /// The drain barrier's view (None: no barrier).
    pub drain: Option<Arc<dyn crate::drain::DrainView>>,
    /// The node's crash back-off cap (`maxContainerRestartPeriod`, default 300 s); the first
    /// back-off is 10 s or the cap if lower.
    pub backoff_max: Duration,
    /// The node's pods' allocated requests (in-place resize), shared by every worker of the
    /// harness.
    pub allocations: Arc<crate::pod::resize::Allocations>,
    /// The node's allocatable resources (empty: unknown).
    pub allocatable:
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
}

/// A worker started by [`WorkerHarness::start`].
pub struct RunningWorker {
    /// The agent's handle on it.
    pub handle: WorkerHandle,
    /// The agent's shutdown token.
    pub shutdown: CancellationToken,
    /// The worker's task.
    pub task: tokio::task::JoinHandle<()>,
    /// The exit forwarder's task.
    pub forwarder: tokio::task::JoinHandle<()>,
    /// The pod object as the API server has it.
    pub pod: Pod,
}

impl Default for WorkerHarness {
    fn default() -> WorkerHarness {
        WorkerHarness::new()
    }
}

impl WorkerHarness {
    /// A harness on a fresh fake runtime; node IP `10.0.0.7`.
    pub fn new() -> WorkerHarness {
        let clock = WallClock::tokio(SystemTime::UNIX_EPOCH + s(1_700_000_000));
        let rt = Arc::new(FakeRuntime::new(clock.clone()));
        WorkerHarness::on(rt.clone(), rt, clock)
    }

    /// A harness whose worker talks to `runtime` (a wrapper of `rt`) on `clock`.
    pub fn on(
        rt: Arc<FakeRuntime>,
        runtime: Arc<dyn ContainerRuntime>,
        clock: WallClock,
    ) -> WorkerHarness {
        WorkerHarness {
            rt,
            api: Arc::new(FakePodApi::new()),
            events: Arc::new(RecordingEvents::new()),
            clock,
            dir: ScratchDir::new().expect("scratch dir"),
            t0: Instant::now(),
            objects: Arc::new(MemoryObjects::new()),
            node_ip: "10.0.0.7".into(),
            runtime,
            drain: None,
            backoff_max: s(300),
            allocations: Arc::new(crate::pod::resize::Allocations::new()),
            allocatable: Default::default(),
        }
    }

    /// The node's IP is `ip`.
    pub fn with_node_ip(mut self, ip: &str) -> WorkerHarness {
        self.node_ip = ip.into();
        self
    }

    /// What every worker of this harness shares: the production lifecycle hooks.
    pub fn ctx(&self) -> Arc<WorkerCtx> {
        let hooks: Arc<dyn HookRunner> = Arc::new(LifecycleHooks::new(self.runtime.clone()));
        Arc::new(WorkerCtx {
            runtime: self.runtime.clone(),
            api: self.api.clone(),
            events: self.events.clone(),
            hooks,
            clock: self.clock.clone(),
            deadlines: DeadlineStore::open(self.dir.path()).expect("state dir"),
            objects: self.objects.clone(),
            pods_dir: self.dir.path().join("pods"),
            node_name: "node-1".into(),
            node_ip: self.node_ip.clone(),
            allocatable: self.allocatable.clone(),
            backoff_initial: s(10).min(self.backoff_max),
            backoff_max: self.backoff_max,
            network: None,
            images: None,
            services: crate::pod::service_env::fixed(Vec::new()),
            drain: self.drain.clone(),
            allowed_unsafe_sysctls: Vec::new(),
            allocations: self.allocations.clone(),
        })
    }

    /// Starts a worker for `pod`, adopting its sandbox if the runtime has one (as a
    /// restarted agent does), with the agent's exit dispatcher reduced to this pod.
    pub async fn start(&self, pod: Pod) -> RunningWorker {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let adopted = self
            .rt
            .list()
            .await
            .expect("list the fake runtime")
            .into_iter()
            .find(|sb| sb.config.id == uid);
        let shutdown = CancellationToken::new();
        let (worker, handle) =
            PodWorker::new(self.ctx(), Arc::new(pod.clone()), adopted, shutdown.clone());
        let mut exits = self.rt.subscribe();
        let notes = handle.notes.clone();
        let forwarder = tokio::spawn(async move {
            loop {
                match exits.recv().await {
                    Ok(ev) if ev.sandbox_id == uid => {
                        let _ = notes.send(RuntimeNote::Exit(ev));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let _ = notes.send(RuntimeNote::Resync);
                    }
                    Err(_) => return,
                }
            }
        });
        let task = tokio::spawn(worker.run());
        settle().await;
        RunningWorker {
            handle,
            shutdown,
            task,
            forwarder,
            pod,
        }
    }

    /// Time since the harness was made.
    pub fn since(&self, at: Instant) -> Duration {
        at - self.t0
    }

    /// The last status written; panics if none was.
    pub fn last(&self) -> PodStatus {
        self.api.last_status().expect("a status was written")
    }

    /// Every signal sent: (time, container name, signal).
    pub fn signals(&self) -> Vec<(Duration, String, Signal)> {
        self.rt
            .calls()
            .into_iter()
            .filter_map(|r| match r.call {
                FakeCall::Signal { name, signal, .. } => Some((r.at - self.t0, name, signal)),
                _ => None,
            })
            .collect()
    }

    /// The signals sent to container `name`: (time, signal).
    pub fn signals_to(&self, name: &str) -> Vec<(Duration, Signal)> {
        self.signals()
            .into_iter()
            .filter(|(_, n, _)| n == name)
            .map(|(t, _, sig)| (t, sig))
            .collect()
    }

    /// When any container was started.
    pub fn starts(&self) -> Vec<Duration> {
        self.rt
            .calls()
            .into_iter()
            .filter_map(|r| {
                matches!(r.call, FakeCall::StartContainer { .. }).then_some(r.at - self.t0)
            })
            .collect()
    }

    /// When container `name` was created.
    pub fn create_times(&self, name: &str) -> Vec<Duration> {
        self.times(name, |c| match c {
            FakeCall::CreateContainer { name, .. } => Some(name),
            _ => None,
        })
    }

    /// When container `name` was started.
    pub fn start_times(&self, name: &str) -> Vec<Duration> {
        self.times(name, |c| match c {
            FakeCall::StartContainer { name, .. } => Some(name),
            _ => None,
        })
    }

    /// When the runtime got the calls `of` names for container `name`.
    fn times(&self, name: &str, of: impl Fn(&FakeCall) -> Option<&String>) -> Vec<Duration> {
        self.rt
            .calls()
            .into_iter()
            .filter(|r| of(&r.call).is_some_and(|n| n == name))
            .map(|r| r.at - self.t0)
            .collect()
    }

    /// The reasons of every event, in order.
    pub fn reasons(&self) -> Vec<String> {
        self.events.reasons().into_iter().map(|(r, _)| r).collect()
    }

    /// The first event with `reason`: its type and message.
    pub fn event(&self, reason: &str) -> Option<(EventType, String)> {
        self.events
            .events()
            .into_iter()
            .find(|(_, e)| e.reason == reason)
            .map(|(_, e)| (e.type_, e.message))
    }
}

impl RunningWorker {
    /// Changes the pod object and hands the new version to the worker.
    pub fn update(&mut self, f: impl FnOnce(&mut Pod)) {
        f(&mut self.pod);
        let pod = Arc::new(self.pod.clone());
        self.handle.input.send_modify(|i| i.pod = Some(pod));
    }

    /// A graceful DELETE as the API server records it.
    pub fn delete(&mut self, clock: &WallClock, grace: i64) {
        let now = clock.now();
        self.update(|p| {
            if p.metadata.deletion_timestamp.is_none() {
                p.metadata.deletion_timestamp = Some(to_time(now + s(grace.max(0) as u64)));
            }
            p.metadata.deletion_grace_period_seconds = Some(grace);
        });
    }

    /// The object is gone.
    pub fn gone(&self) {
        self.handle.input.send_modify(|i| i.pod = None);
    }

    /// The agent stops (without drain): the worker ends, the pod keeps running.
    pub async fn stop_agent(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.forwarder.abort();
    }
}
