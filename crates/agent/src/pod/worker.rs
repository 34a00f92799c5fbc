//! Pod workers: one task per pod UID, owning everything the agent does for that pod.
//!
//! # Inputs (latest wins)
//!
//! * the pod object, through a `watch` channel ([`WorkerInput`]): the newest version
//!   replaces any unread one; `pod: None` means the object is gone; `drain` asks for a
//!   graceful stop on agent shutdown;
//! * runtime notes ([`RuntimeNote`]): an exit of one of its containers, or "resync" after the
//!   agent's event stream lagged;
//! * its own timers: the end of a crash back-off, a retry.
//!
//! # Loop
//!
//! Each turn: feed a changed input to [`transition`](crate::state::transition) and perform the
//! effects; then act for the state — *Syncing*: make the containers match the spec and the
//! restart policy (spec §4); *Terminating*: the termination future runs (below);
//! *Terminated*: final status, sandbox removal, delete with grace 0 and a UID precondition;
//! then write the status if it changed; then wait for the next input, note, timer or the end
//! of termination.
//!
//! # Termination timeline (one container; all containers in parallel)
//!
//! ```text
//! T0 deletion seen ─ Killing event ─ preStop (bounded by the deadline) ─ stop signal ─┐
//!                                                                                      │
//!   exit, or SIGKILL at max(deadline, signal + 2 s) ◀──────────────────────────────────┘
//! ```
//!
//! The deadline is computed once (state.rs), persisted (deadlines.rs) and only moves
//! earlier; the running stops follow it through a `watch`. Force (object gone): SIGKILL at
//! once, no preStop. Every process is gone by deadline + 2 s whatever the hook does: at the
//! deadline the hook's future is dropped.
//!
//! # Tokens
//!
//! `shutdown` (the agent's) ends the worker and leaves the pod running for re-adoption: the
//! termination in flight is dropped, its deadline stays on disk. `kill` (the pod's own) is
//! cancelled when termination starts and aborts any container start still in flight.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use podvisor_api::status::{self as rules, pod_full_name};
use podvisor_runtime::{
    ContainerConfig, ContainerId, ContainerRuntime, ContainerState, ExitEvent, ExitStatus,
    Resources, RuntimeError, SandboxConfig, SandboxState, SandboxStatus, Signal,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{EventSink, EventType, PodApi, PodEvent, PodRef};
use crate::backoff::CrashBackoff;
use crate::clock::WallClock;
use crate::deadlines::{DeadlineStore, TerminationRecord};
use crate::hooks::{HookContext, HookRunner};
use crate::podstatus::{ContainerView, Instance, StatusInput, Waiting, compute_status};
use crate::probe::ProbeUpdate;
use crate::probe::glue::{self as probe_glue, PodProbes};
use crate::state::{
    Deadline, Effect, Input, PodWorkerState, Why, effective_grace, spec_grace_seconds, transition,
};

/// Sandbox label: pod namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Sandbox label: pod name.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// Sandbox label: pod UID.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// Container label: container name.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Container annotation: the instance number (restartCount).
pub const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Why and message of a pod stopped by `spec.activeDeadlineSeconds` (kubelet).
const DEADLINE_EXCEEDED_MESSAGE: &str =
    "Pod was active on the node longer than the specified deadline";

/// Container annotation: the container spec hash.
pub const ANNOTATION_HASH: &str = "io.kubernetes.container.hash";

/// The minimum time between the stop signal and SIGKILL (spec §1.6).
pub const MIN_STOP_WINDOW: Duration = Duration::from_secs(2);

/// The slowest refresh of the probe annotations when no status write carries them.
pub const PROBE_ANNOTATION_REFRESH: Duration = Duration::from_secs(60);

/// The retry interval after a CreateContainerConfigError (the kubelet's pod worker back-off
/// period; up to 50 % jitter is added).
pub const CONFIG_ERROR_RETRY: Duration = Duration::from_secs(10);

/// What every worker shares.
pub struct WorkerCtx {
    /// The runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Pod writes.
    pub api: Arc<dyn PodApi>,
    /// Events.
    pub events: Arc<dyn EventSink>,
    /// Lifecycle hooks.
    pub hooks: Arc<dyn HookRunner>,
    /// The wall clock.
    pub clock: WallClock,
    /// Persisted deadlines.
    pub deadlines: DeadlineStore,
    /// ConfigMaps and Secrets the pods refer to.
    pub objects: Arc<dyn crate::objects::ObjectSource>,
    /// The root of the per-pod directories (`<pods_dir>/<uid>/volumes/...`), kept across
    /// container restarts and removed with the pod.
    pub pods_dir: std::path::PathBuf,
    /// This node's name.
    pub node_name: String,
    /// This node's IP (host IP and, for now, pod IP).
    pub node_ip: String,
    /// The node's allocatable resources (env `resourceFieldRef` limits default to them).
    pub allocatable: BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    /// First crash back-off.
    pub backoff_initial: Duration,
    /// Maximum crash back-off.
    pub backoff_max: Duration,
}

/// The latest-wins input of a worker.
#[derive(Clone, Debug, Default)]
pub struct WorkerInput {
    /// The pod object; None once it is gone.
    pub pod: Option<Arc<Pod>>,
    /// Drain: stop gracefully with this grace (agent shutdown with drain).
    pub drain: Option<i64>,
}

/// A note from the runtime.
#[derive(Clone, Debug)]
pub enum RuntimeNote {
    /// One of the pod's containers exited.
    Exit(ExitEvent),
    /// Events may have been lost: re-read the runtime.
    Resync,
}

/// The agent's handle on a worker.
pub struct WorkerHandle {
    /// Latest-wins pod input.
    pub input: watch::Sender<WorkerInput>,
    /// Runtime notes.
    pub notes: mpsc::UnboundedSender<RuntimeNote>,
    /// The worker's state name, for observers (drain waits for "finished").
    pub state: watch::Receiver<&'static str>,
}

#[derive(Debug, Default)]
struct ContainerRecord {
    /// Instances, oldest first (the newest two are kept, plus any still running).
    instances: Vec<Instance>,
    /// Why it waits, if it does.
    waiting: Option<Waiting>,
    /// When creating it last failed (restart back-off counts from there).
    create_failed_at: Option<SystemTime>,
    /// The instance whose back-off was already announced with a BackOff event.
    backoff_announced: Option<(Option<ContainerId>, Duration)>,
    /// While a postStart hook runs: the running instance as it is reported (created, waiting).
    post_start_pending: Option<Instance>,
    /// After a CreateContainerConfigError: no new attempt before this (the kubelet's pod
    /// worker back-off, 10 s plus up to 50 % jitter).
    config_retry_at: Option<Instant>,
    /// The spec hash each instance was created from (a changed spec restarts it).
    hashes: HashMap<ContainerId, u64>,
    /// The running instance was killed because its spec changed: start the new spec
    /// whatever the restart policy says (kubelet `computePodActions`).
    restart_for_change: bool,
}

impl ContainerRecord {
    fn current(&self) -> Option<&Instance> {
        self.instances.last()
    }

    fn previous(&self) -> Option<&Instance> {
        let n = self.instances.len();
        (n >= 2).then(|| &self.instances[n - 2])
    }

    fn instance_mut(&mut self, id: &ContainerId) -> Option<&mut Instance> {
        self.instances.iter_mut().find(|i| &i.id == id)
    }
}

/// A stable hash of a container's spec (changing it starts a fresh back-off).
pub fn container_hash(c: &Container) -> u64 {
    let json = serde_json::to_string(c).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    h.finish()
}

/// The `fieldPath` of a container's events: `spec.initContainers{n}` for an init container,
/// else `spec.containers{n}`.
fn field_path(pod: &Pod, name: &str) -> String {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|v| v.iter().any(|c| c.name == name));
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn stop_signal_of(c: &Container) -> Signal {
    c.lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.as_deref())
        .and_then(Signal::from_name)
        .unwrap_or(Signal::TERM)
}

fn parse_millis(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<u64> {
    let nanos = rules::parse_quantity(&q?.0).ok()?;
    u64::try_from(nanos / 1_000_000).ok()
}

fn parse_units(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<u64> {
    let nanos = rules::parse_quantity(&q?.0).ok()?;
    u64::try_from(nanos / 1_000_000_000).ok()
}

/// The runtime configuration of a container of the pod, with its resolved environment
/// (`crate::env::resolve`; `command` and `args` are expanded against it).
pub fn container_config(
    pod: &Pod,
    c: &Container,
    restart_count: i32,
    hash: u64,
    env: Vec<(String, String)>,
) -> ContainerConfig {
    let meta = &pod.metadata;
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user));
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group));
    let res = c.resources.as_ref();
    let limits = res.and_then(|r| r.limits.as_ref());
    let requests = res.and_then(|r| r.requests.as_ref());
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_CONTAINER_NAME.to_string(), c.name.clone());
    labels.insert(
        LABEL_POD_NAME.to_string(),
        meta.name.clone().unwrap_or_default(),
    );
    labels.insert(
        LABEL_POD_NAMESPACE.to_string(),
        meta.namespace.clone().unwrap_or_default(),
    );
    labels.insert(
        LABEL_POD_UID.to_string(),
        meta.uid.clone().unwrap_or_default(),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ANNOTATION_RESTART_COUNT.to_string(),
        restart_count.to_string(),
    );
    annotations.insert(ANNOTATION_HASH.to_string(), format!("{hash:x}"));
    let (command, args) = crate::env::expand_command(c, &env);
    ContainerConfig {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        command,
        args,
        env,
        working_dir: c
            .working_dir
            .as_ref()
            .filter(|w| !w.is_empty())
            .map(Into::into),
        uid: uid.and_then(|u| u32::try_from(u).ok()),
        gid: gid.and_then(|g| u32::try_from(g).ok()),
        stop_signal: Some(stop_signal_of(c)),
        resources: Resources {
            memory_limit_bytes: parse_units(limits.and_then(|l| l.get("memory"))),
            cpu_request_millis: parse_millis(requests.and_then(|l| l.get("cpu"))),
            cpu_limit_millis: parse_millis(limits.and_then(|l| l.get("cpu"))),
            pids_limit: None,
        },
        labels,
        annotations,
        mounts: Vec::new(),
        termination_message: crate::volumes::termination_message(c),
    }
}

/// The sandbox configuration of the pod.
pub fn sandbox_config(pod: &Pod) -> SandboxConfig {
    let meta = &pod.metadata;
    let mut labels = BTreeMap::new();
    labels.insert(
        LABEL_POD_NAME.to_string(),
        meta.name.clone().unwrap_or_default(),
    );
    labels.insert(
        LABEL_POD_NAMESPACE.to_string(),
        meta.namespace.clone().unwrap_or_default(),
    );
    labels.insert(
        LABEL_POD_UID.to_string(),
        meta.uid.clone().unwrap_or_default(),
    );
    SandboxConfig {
        id: meta.uid.clone().unwrap_or_default(),
        hostname: meta.name.clone().unwrap_or_default(),
        labels,
        annotations: BTreeMap::new(),
        resources: Resources::default(),
    }
}

/// Everything one container's stop needs, owned (the stops run as futures beside the loop).
#[derive(Clone)]
struct StopEnv {
    runtime: Arc<dyn ContainerRuntime>,
    hooks: Arc<dyn HookRunner>,
    events: Arc<dyn EventSink>,
    clock: WallClock,
    pod_ref: PodRef,
    pod_ip: String,
    deadline: watch::Receiver<Deadline>,
    exited: watch::Receiver<HashSet<ContainerId>>,
    record: Arc<Mutex<TerminationRecord>>,
    store: DeadlineStore,
    /// The names of the pod's init containers (their events name `spec.initContainers`).
    init_names: Arc<Vec<String>>,
}

struct StopTarget {
    container: Container,
    id: ContainerId,
    already_signalled: bool,
}

impl StopEnv {
    fn event(&self, field: Option<&str>, type_: EventType, reason: &str, message: String) {
        let object_gone = self.deadline.borrow().force && self.pod_ref.uid.is_empty();
        if object_gone {
            return;
        }
        self.events.emit(PodEvent {
            pod: self.pod_ref.clone(),
            field_path: field.map(|n| {
                if self.init_names.iter().any(|i| i == n) {
                    format!("spec.initContainers{{{n}}}")
                } else {
                    format!("spec.containers{{{n}}}")
                }
            }),
            type_,
            reason: reason.to_string(),
            message,
        });
    }

    /// Resolves once the container has exited.
    async fn exited(&self, id: &ContainerId) {
        let mut rx = self.exited.clone();
        let _ = rx.wait_for(|set| set.contains(id)).await;
    }

    /// Resolves at `when(deadline)`, following deadline changes.
    async fn until(&self, when: impl Fn(&Deadline) -> Instant) {
        let mut rx = self.deadline.clone();
        loop {
            let at = when(&rx.borrow_and_update());
            tokio::select! {
                _ = tokio::time::sleep_until(at) => return,
                r = rx.changed() => if r.is_err() {
                    tokio::time::sleep_until(at).await;
                    return;
                },
            }
        }
    }

    fn deadline_instant(&self, d: &Deadline) -> Instant {
        self.clock.instant_for(d.at)
    }

    fn mark_signalled(&self, name: &str) {
        let mut rec = self.record.lock().unwrap_or_else(|e| e.into_inner());
        if !rec.signalled.iter().any(|n| n == name) {
            rec.signalled.push(name.to_string());
            if let Err(e) = self.store.save(&rec) {
                tracing::warn!(error = %e, "cannot persist termination record");
            }
        }
    }

    /// Stops the pod's containers: `first` (app containers, regular init containers) all at
    /// once; then, once all of them exited or at the deadline, `sidecars` one after the
    /// other in the given (reverse spec) order, each with its preStop. At the deadline the
    /// sidecars not yet stopping are stopped all at once, so every process is still gone by
    /// max(deadline, signal + 2 s).
    async fn stop_all(self, first: Vec<StopTarget>, sidecars: Vec<StopTarget>) {
        use futures::StreamExt;
        let first_ids: Vec<ContainerId> = first.iter().map(|t| t.id.clone()).collect();
        let first_stops =
            futures::future::join_all(first.into_iter().map(|t| self.clone().stop(t)));
        let env = self.clone();
        let sidecar_stops = async move {
            let deadline_at = |d: &Deadline| env.deadline_instant(d);
            if !sidecars.is_empty() {
                let mut rx = env.exited.clone();
                tokio::select! {
                    _ = rx.wait_for(|set| first_ids.iter().all(|id| set.contains(id))) => {}
                    _ = env.until(deadline_at) => {}
                }
            }
            let mut rest: std::collections::VecDeque<StopTarget> = sidecars.into();
            let mut in_flight = futures::stream::FuturesUnordered::new();
            let mut all_at_once = false;
            loop {
                if in_flight.is_empty() {
                    match rest.pop_front() {
                        Some(t) => in_flight.push(env.clone().stop(t)),
                        None => break,
                    }
                }
                if all_at_once {
                    while in_flight.next().await.is_some() {}
                    continue;
                }
                tokio::select! {
                    _ = in_flight.next() => {}
                    _ = env.until(deadline_at) => {
                        all_at_once = true;
                        for t in rest.drain(..) {
                            in_flight.push(env.clone().stop(t));
                        }
                    }
                }
            }
        };
        futures::future::join(first_stops, sidecar_stops).await;
    }

    /// Stops one container (spec §1.6): Killing event, preStop within the deadline, stop
    /// signal, SIGKILL at max(deadline, signal + 2 s) (a forced stop has a 1 s deadline).
    async fn stop(self, t: StopTarget) {
        let name = t.container.name.clone();
        let id = t.id.clone();
        let field = Some(name.as_str());
        if self.exited.borrow().contains(&id) {
            return;
        }
        self.event(
            field,
            EventType::Normal,
            "Killing",
            format!("Stopping container {name}"),
        );
        let pre_stop = t
            .container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.clone());
        if let (Some(handler), false) = (pre_stop, t.already_signalled) {
            let budget = self
                .deadline
                .borrow()
                .at
                .duration_since(self.clock.now())
                .unwrap_or(Duration::ZERO);
            if !budget.is_zero() {
                let ctx = HookContext {
                    pod_full_name: pod_full_name(
                        &self.pod_ref.name,
                        &self.pod_ref.namespace,
                        &self.pod_ref.uid,
                    ),
                    container: t.container.clone(),
                    container_id: id.clone(),
                    pod_ip: self.pod_ip.clone(),
                    budget,
                };
                tokio::select! {
                    r = self.hooks.run(&ctx, &handler) => if let Err(e) = r {
                        tracing::info!(container = %name, error = %e, "preStop hook failed");
                        self.event(field, EventType::Warning, "FailedPreStopHook", "PreStopHook failed".into());
                    },
                    _ = self.until(|d| self.deadline_instant(d)) => {
                        tracing::info!(container = %name, "preStop hook cut at the deadline");
                    }
                    _ = self.exited(&id) => {}
                }
            }
        }
        if self.exited.borrow().contains(&id) {
            return;
        }
        let signal_at = Instant::now();
        let floor = if t.already_signalled {
            Duration::ZERO
        } else {
            MIN_STOP_WINDOW
        };
        if !t.already_signalled {
            let signal = stop_signal_of(&t.container);
            if let Ok(st) = self.runtime.container_status(&id).await
                && st.handles_stop_signal == Some(false)
            {
                self.event(
                    field,
                    EventType::Warning,
                    "StopSignalNotHandled",
                    format!(
                        "PID 1 does not handle {}: it will be killed after the grace period",
                        signal.name()
                    ),
                );
            }
            self.mark_signalled(&name);
            if let Err(e) = self.runtime.signal(&id, signal).await
                && !e.is_not_found()
            {
                tracing::warn!(container = %name, error = %e, "stop signal failed");
            }
        }
        tokio::select! {
            _ = self.exited(&id) => return,
            _ = self.until(|d| self.deadline_instant(d).max(signal_at + floor)) => {}
        }
        // SIGKILL the whole tree; repeat until the runtime reports the exit.
        for attempt in 0..30u32 {
            match self.runtime.signal(&id, Signal::KILL).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => return,
                Err(e) => tracing::warn!(container = %name, error = %e, "SIGKILL failed"),
            }
            tokio::select! {
                _ = self.exited(&id) => return,
                _ = tokio::time::sleep(Duration::from_millis(if attempt == 0 { 500 } else { 1000 })) => {}
            }
            if let Ok(st) = self.runtime.container_status(&id).await
                && !matches!(st.state, ContainerState::Running { .. })
            {
                return;
            }
        }
        tracing::error!(container = %name, "container still running after repeated SIGKILL");
    }
}

/// One pod's worker. See the module documentation.
pub struct PodWorker {
    ctx: Arc<WorkerCtx>,
    uid: String,
    namespace: String,
    name: String,
    pod: Arc<Pod>,
    state: PodWorkerState,
    sandbox_ready: bool,
    containers: BTreeMap<String, ContainerRecord>,
    backoff: CrashBackoff,
    start_time: SystemTime,
    last_written: Option<PodStatus>,
    next_wake: Option<Instant>,
    input_rx: watch::Receiver<WorkerInput>,
    input_changed: bool,
    notes_rx: mpsc::UnboundedReceiver<RuntimeNote>,
    state_tx: watch::Sender<&'static str>,
    shutdown: CancellationToken,
    kill: CancellationToken,
    termination: Option<BoxFuture<'static, ()>>,
    deadline_tx: Option<watch::Sender<Deadline>>,
    exited_tx: watch::Sender<HashSet<ContainerId>>,
    record: Option<Arc<Mutex<TerminationRecord>>>,
    resumed: Option<TerminationRecord>,
    exit: bool,
    /// The pod's probes (crate::probe), once the sandbox exists and if any container has one.
    probes: Option<PodProbes>,
    /// When the probe annotations were last patched (or the worker started).
    annotations_at: Instant,
    /// The pod's volumes (crate::volumes).
    volumes: crate::volumes::PodVolumes,
}

impl PodWorker {
    /// A worker for `pod`, adopting `adopted` (its sandbox found in the runtime), and its
    /// handle. Run it with [`PodWorker::run`] on an owned task.
    pub fn new(
        ctx: Arc<WorkerCtx>,
        pod: Arc<Pod>,
        adopted: Option<SandboxStatus>,
        shutdown: CancellationToken,
    ) -> (PodWorker, WorkerHandle) {
        let meta = &pod.metadata;
        let uid = meta.uid.clone().unwrap_or_default();
        let (input_tx, input_rx) = watch::channel(WorkerInput {
            pod: Some(pod.clone()),
            drain: None,
        });
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel("syncing");
        let (exited_tx, _) = watch::channel(HashSet::new());
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(crate::clock::from_time)
            .unwrap_or_else(|| ctx.clock.now());
        let resumed = ctx.deadlines.load(&uid);
        let volumes = crate::volumes::PodVolumes::new(&ctx.pods_dir, &uid);
        let mut w = PodWorker {
            backoff: CrashBackoff::new(ctx.backoff_initial, ctx.backoff_max),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid,
            pod,
            state: PodWorkerState::Syncing,
            sandbox_ready: false,
            containers: BTreeMap::new(),
            start_time,
            last_written: None,
            next_wake: None,
            input_rx,
            input_changed: true,
            notes_rx,
            state_tx,
            shutdown,
            kill: CancellationToken::new(),
            termination: None,
            deadline_tx: None,
            exited_tx,
            record: None,
            resumed,
            exit: false,
            probes: None,
            annotations_at: Instant::now(),
            volumes,
            ctx,
        };
        if let Some(sb) = adopted {
            w.adopt(sb);
        }
        (
            w,
            WorkerHandle {
                input: input_tx,
                notes: notes_tx,
                state: state_rx,
            },
        )
    }

    /// Takes over the runtime's view of the pod (agent restart): nothing is restarted.
    fn adopt(&mut self, sb: SandboxStatus) {
        self.sandbox_ready = sb.state == SandboxState::Ready;
        let mut exited = HashSet::new();
        for c in sb.containers {
            let name = c
                .config
                .labels
                .get(LABEL_CONTAINER_NAME)
                .cloned()
                .unwrap_or_else(|| c.config.name.clone());
            let restart_count = c
                .config
                .annotations
                .get(ANNOTATION_RESTART_COUNT)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if matches!(c.state, ContainerState::Exited(_)) {
                exited.insert(c.id.clone());
            }
            let rec = self.containers.entry(name).or_default();
            if let Some(h) = c
                .config
                .annotations
                .get(ANNOTATION_HASH)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                rec.hashes.insert(c.id.clone(), h);
            }
            rec.instances.push(Instance {
                id: c.id,
                restart_count,
                image: c.config.image,
                state: c.state,
            });
        }
        for rec in self.containers.values_mut() {
            rec.instances.sort_by_key(|i| i.restart_count);
        }
        self.exited_tx.send_modify(|s| s.extend(exited));
    }

    fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }

    fn object_gone(&self) -> bool {
        match &self.state {
            PodWorkerState::Terminating { object_gone, .. }
            | PodWorkerState::Terminated { object_gone, .. } => *object_gone,
            _ => false,
        }
    }

    fn event(&self, container: Option<&str>, type_: EventType, reason: &str, message: String) {
        if self.object_gone() {
            return;
        }
        self.ctx.events.emit(PodEvent {
            pod: self.pod_ref(),
            field_path: container.map(|n| field_path(&self.pod, n)),
            type_,
            reason: reason.to_string(),
            message,
        });
    }

    fn full_name(&self) -> String {
        pod_full_name(&self.name, &self.namespace, &self.uid)
    }

    fn wake_at(&mut self, at: Instant) {
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }

    /// Runs the worker until it finishes or the agent shuts down.
    pub async fn run(self) {
        use tracing::Instrument;
        let span = tracing::info_span!("pod", ns = %self.namespace, pod = %self.name, uid = %self.uid, node = %self.ctx.node_name);
        self.run_loop().instrument(span).await
    }

    async fn run_loop(mut self) {
        if let Some(rec) = self.resumed.take() {
            self.resume(rec);
        }
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            if self.input_changed {
                self.input_changed = false;
                self.absorb_input().await;
            }
            if self.exit {
                break;
            }
            self.next_wake = None;
            match &self.state {
                PodWorkerState::Syncing => self.sync().await,
                PodWorkerState::Terminated { .. } => self.cleanup().await,
                PodWorkerState::Terminating { .. } | PodWorkerState::Finished { .. } => {}
            }
            if self.exit {
                break;
            }
            self.observe_probes();
            self.write_status().await;
            let _ = self.state_tx.send(self.state.name());
            let wake = self.next_wake;
            let termination = self.termination.as_mut();
            let has_termination = termination.is_some();
            let termination = async move {
                match termination {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                r = self.input_rx.changed() => match r {
                    Ok(()) => self.input_changed = true,
                    Err(_) => break,
                },
                Some(note) = self.notes_rx.recv() => {
                    self.apply_note(note).await;
                    while let Ok(note) = self.notes_rx.try_recv() {
                        self.apply_note(note).await;
                    }
                }
                _ = termination, if has_termination => {
                    self.termination = None;
                    self.apply(Input::AllStopped).await;
                }
                Some(u) = probe_glue::next_update(&mut self.probes) => self.apply_probe_update(u).await,
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
        }
        let _ = self.state_tx.send(self.state.name());
    }

    /// Resumes a termination persisted by a previous agent.
    fn resume(&mut self, rec: TerminationRecord) {
        let deleting = self.pod.metadata.deletion_timestamp.is_some();
        self.state = PodWorkerState::Terminating {
            deadline: rec.deadline.clone(),
            why: if deleting { Why::Deleted } else { Why::Drained },
            delete_object: deleting,
            object_gone: false,
        };
        tracing::info!(deadline = ?rec.deadline.at, "resuming termination with the persisted deadline");
        self.record = Some(Arc::new(Mutex::new(rec)));
        self.start_termination(false);
    }

    async fn absorb_input(&mut self) {
        let input = self.input_rx.borrow_and_update().clone();
        match input.pod {
            Some(pod) if pod.metadata.uid.as_deref() == Some(self.uid.as_str()) => {
                let phase_terminal =
                    rules::is_terminal_phase(pod.status.as_ref().and_then(|s| s.phase.as_deref()));
                let i = Input::Pod {
                    deletion: effective_grace(&pod),
                    phase_terminal,
                    spec_grace: spec_grace_seconds(&pod),
                };
                self.pod = pod;
                self.apply(i).await;
            }
            Some(_) => {}
            None => self.apply(Input::Gone).await,
        }
        if let Some(grace) = input.drain {
            self.apply(Input::Drain { grace }).await;
        }
    }

    async fn apply(&mut self, input: Input) {
        let (next, effects) = transition(&self.state, input, self.ctx.clock.now());
        if next != self.state {
            tracing::debug!(
                from = self.state.name(),
                to = next.name(),
                ?input,
                "pod worker transition"
            );
        }
        self.state = next;
        for effect in effects {
            match effect {
                Effect::StartTermination => self.start_termination(true),
                Effect::DeadlineChanged => self.deadline_changed(),
                Effect::Cleanup => {}
                Effect::RemoveSandbox => self.remove_sandbox().await,
                Effect::DeleteObject => {
                    if let Err(e) = self
                        .ctx
                        .api
                        .delete_pod(&self.namespace, &self.name, &self.uid)
                        .await
                    {
                        tracing::warn!(error = %e, "delete of finished pod failed");
                    }
                }
                Effect::Exit => self.exit = true,
            }
        }
    }

    fn current_deadline(&self) -> Option<Deadline> {
        match &self.state {
            PodWorkerState::Terminating { deadline, .. } => Some(deadline.clone()),
            _ => None,
        }
    }

    fn start_termination(&mut self, persist: bool) {
        self.kill.cancel();
        if let Some(p) = self.probes.as_mut() {
            p.terminating();
        }
        let Some(deadline) = self.current_deadline() else {
            return;
        };
        let record = self
            .record
            .get_or_insert_with(|| {
                Arc::new(Mutex::new(TerminationRecord {
                    uid: self.uid.clone(),
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    deadline: deadline.clone(),
                    signalled: Vec::new(),
                }))
            })
            .clone();
        let signalled: Vec<String> = {
            let mut rec = record.lock().unwrap_or_else(|e| e.into_inner());
            rec.deadline = deadline.clone();
            if persist && let Err(e) = self.ctx.deadlines.save(&rec) {
                tracing::warn!(error = %e, "cannot persist the termination deadline");
            }
            rec.signalled.clone()
        };
        let (deadline_tx, deadline_rx) = watch::channel(deadline.clone());
        self.deadline_tx = Some(deadline_tx);
        let object_gone = self.object_gone();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let spec_init = spec.init_containers.clone().unwrap_or_default();
        let env = StopEnv {
            runtime: self.ctx.runtime.clone(),
            hooks: self.ctx.hooks.clone(),
            events: self.ctx.events.clone(),
            clock: self.ctx.clock.clone(),
            pod_ref: if object_gone {
                PodRef {
                    uid: String::new(),
                    ..self.pod_ref()
                }
            } else {
                self.pod_ref()
            },
            pod_ip: self.ctx.node_ip.clone(),
            deadline: deadline_rx,
            exited: self.exited_tx.subscribe(),
            record,
            store: self.ctx.deadlines.clone(),
            init_names: Arc::new(
                spec_init
                    .iter()
                    .map(|c: &Container| c.name.clone())
                    .collect(),
            ),
        };
        let targets = |c: &Container| -> Vec<StopTarget> {
            self.containers
                .get(&c.name)
                .map(|rec| {
                    rec.instances
                        .iter()
                        .filter(|i| i.is_running())
                        .map(|i| StopTarget {
                            container: c.clone(),
                            id: i.id.clone(),
                            already_signalled: signalled.contains(&c.name),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        // first every app container and running regular init container, all at once
        let mut first: Vec<StopTarget> = spec.containers.iter().flat_map(targets).collect();
        first.extend(
            spec_init
                .iter()
                .filter(|c| !rules::is_sidecar(c))
                .flat_map(targets),
        );
        // containers of the sandbox that are not in the spec any more
        for (name, rec) in &self.containers {
            if spec
                .containers
                .iter()
                .chain(spec_init.iter())
                .any(|c| &c.name == name)
            {
                continue;
            }
            for i in rec.instances.iter().filter(|i| i.is_running()) {
                first.push(StopTarget {
                    container: Container {
                        name: name.clone(),
                        ..Default::default()
                    },
                    id: i.id.clone(),
                    already_signalled: true,
                });
            }
        }
        // then the sidecars, in reverse spec order
        let sidecars: Vec<StopTarget> = spec_init
            .iter()
            .rev()
            .filter(|c| rules::is_sidecar(c))
            .flat_map(targets)
            .collect();
        self.termination = Some(Box::pin(env.stop_all(first, sidecars)));
    }

    fn deadline_changed(&mut self) {
        let Some(deadline) = self.current_deadline() else {
            return;
        };
        if deadline.force {
            tracing::info!("forced stop: one second of grace, then the 2 s stop window");
        }
        if let Some(record) = &self.record {
            let mut rec = record.lock().unwrap_or_else(|e| e.into_inner());
            rec.deadline = deadline.clone();
            if let Err(e) = self.ctx.deadlines.save(&rec) {
                tracing::warn!(error = %e, "cannot persist the termination deadline");
            }
        }
        if let Some(tx) = &self.deadline_tx {
            let _ = tx.send(deadline);
        }
    }

    async fn apply_note(&mut self, note: RuntimeNote) {
        match note {
            RuntimeNote::Exit(ev) => {
                self.record_exit(&ev.container_name, &ev.container_id, ev.status)
            }
            RuntimeNote::Resync => {
                let ids: Vec<(String, ContainerId)> = self
                    .containers
                    .iter()
                    .flat_map(|(n, r)| {
                        r.instances
                            .iter()
                            .filter(|i| i.exit().is_none())
                            .map(move |i| (n.clone(), i.id.clone()))
                    })
                    .collect();
                for (name, id) in ids {
                    match self.ctx.runtime.container_status(&id).await {
                        Ok(st) => {
                            if let ContainerState::Exited(e) = st.state {
                                self.record_exit(&name, &id, e);
                            }
                        }
                        Err(e) if e.is_not_found() => {
                            let now = self.ctx.clock.now();
                            self.record_exit(
                                &name,
                                &id,
                                ExitStatus {
                                    exit_code: 137,
                                    signal: None,
                                    oom_killed: false,
                                    started_at: now,
                                    finished_at: now,
                                    message: Some("The container could not be located when the pod was terminated".into()),
                                    termination_message: None,
                                },
                            );
                        }
                        Err(e) => tracing::warn!(error = %e, "resync failed"),
                    }
                }
            }
        }
    }

    fn record_exit(&mut self, name: &str, id: &ContainerId, status: ExitStatus) {
        if let Some(i) = self
            .containers
            .get_mut(name)
            .and_then(|r| r.instance_mut(id))
        {
            i.state = ContainerState::Exited(status);
        }
        self.exited_tx.send_modify(|s| {
            s.insert(id.clone());
        });
    }

    /// Syncing: make the containers match the spec, interrupted by a termination request.
    async fn sync(&mut self) {
        if self.active_deadline_passed().await {
            return;
        }
        let mut rx = self.input_rx.clone();
        let shutdown = self.shutdown.clone();
        let kill = self.kill.clone();
        let completed = tokio::select! {
            c = self.sync_containers() => c,
            _ = rx.wait_for(|i| i.drain.is_some() || i.pod.as_ref().is_none_or(|p| p.metadata.deletion_timestamp.is_some())) => {
                self.input_changed = true;
                false
            }
            _ = kill.cancelled() => false,
            _ = shutdown.cancelled() => false,
        };
        if completed {
            let spec_grace = spec_grace_seconds(&self.pod);
            self.apply(Input::Completed { spec_grace }).await;
        }
    }

    /// `spec.activeDeadlineSeconds` (kubelet `activeDeadlineHandler`): counted from
    /// `status.startTime`; once passed, the pod is stopped with its grace and fails with
    /// reason `DeadlineExceeded`. Until then the worker wakes at the deadline (an update
    /// that shortens it is seen on the next sync).
    async fn active_deadline_passed(&mut self) -> bool {
        let Some(secs) = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
        else {
            return false;
        };
        let started = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or(self.start_time, |t| SystemTime::from(t.0));
        let at = started + Duration::from_secs(secs.max(0) as u64);
        if self.ctx.clock.now() < at {
            let wake = self.ctx.clock.instant_for(at);
            self.wake_at(wake);
            return false;
        }
        self.event(
            None,
            EventType::Warning,
            "DeadlineExceeded",
            DEADLINE_EXCEEDED_MESSAGE.into(),
        );
        let grace = spec_grace_seconds(&self.pod);
        self.apply(Input::DeadlineExceeded { grace }).await;
        true
    }

    /// Returns true when every container finished and none will be restarted.
    async fn sync_containers(&mut self) -> bool {
        let now = self.ctx.clock.now();
        if !self.sandbox_ready {
            match self
                .ctx
                .runtime
                .create_sandbox(sandbox_config(&self.pod))
                .await
            {
                Ok(_) | Err(RuntimeError::AlreadyExists { .. }) => self.sandbox_ready = true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the sandbox");
                    self.event(
                        None,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    self.wake_at(Instant::now() + Duration::from_secs(1));
                    return false;
                }
            }
        }
        if self.probes.is_none() {
            self.probes = PodProbes::for_pod(
                &self.pod,
                self.ctx.runtime.clone(),
                &self.ctx.clock,
                &self.ctx.node_ip,
            );
        }
        if self.last_written.is_none() {
            // the first status (Pending, ContainerCreating) goes out before any start
            self.write_status().await;
        }
        self.refresh_volumes().await;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let init = spec.init_containers.clone().unwrap_or_default();
        if self.sync_init_containers(&spec, &init, &policy, now).await {
            for c in &spec.containers {
                self.sync_container(c, &policy, now).await;
            }
        }
        self.completed(&spec)
    }

    /// Whether the pod is done: its phase, counting app containers and regular init
    /// containers only, is terminal (a running sidecar never keeps a pod from completing;
    /// the termination that follows stops it).
    fn completed(&self, spec: &k8s_openapi::api::core::v1::PodSpec) -> bool {
        let mut regular = spec.clone();
        if let Some(init) = regular.init_containers.as_mut() {
            init.retain(|c| !rules::is_sidecar(c));
        }
        let has_init = regular
            .init_containers
            .as_ref()
            .is_some_and(|v| !v.is_empty());
        let statuses: Vec<_> = self
            .views(&regular.containers)
            .iter()
            .map(|v| crate::podstatus::container_status(v, has_init))
            .collect();
        let init_statuses: Vec<_> = self
            .views(regular.init_containers.as_deref().unwrap_or_default())
            .iter()
            .map(|v| crate::podstatus::init_container_status(v, false))
            .collect();
        rules::is_terminal_phase(Some(rules::get_phase(
            &regular,
            &init_statuses,
            &statuses,
            false,
        )))
    }

    /// Whether an app container of the pod was ever created (the pod was initialized
    /// before: regular init containers never run again, spec §2.2 `Initialized`).
    fn app_container_created(&self, spec: &k8s_openapi::api::core::v1::PodSpec) -> bool {
        spec.containers.iter().any(|c| {
            self.containers
                .get(&c.name)
                .is_some_and(|r| !r.instances.is_empty())
        })
    }

    /// Whether an init container's newest instance completed with exit 0.
    fn init_completed(&self, name: &str) -> bool {
        self.containers
            .get(name)
            .and_then(|r| r.current())
            .and_then(|i| i.exit())
            .is_some_and(|e| e.exit_code == 0)
    }

    /// Whether a sidecar is `started`: running, its postStart done, its startup probe
    /// succeeded (or it has none).
    fn sidecar_started(&self, name: &str) -> bool {
        let Some(rec) = self.containers.get(name) else {
            return false;
        };
        let Some(i) = rec.current().filter(|i| i.is_running()) else {
            return false;
        };
        if rec.post_start_pending.is_some() {
            return false;
        }
        match &self.probes {
            Some(p) => p.ready_started(name, &i.id, &i.state).1,
            None => true,
        }
    }

    /// Init containers (spec §2.1–2.3): regular ones run one at a time, in order, each to
    /// exit 0, restarted per the pod's policy with back-off; sidecars (restartPolicy Always)
    /// are started in order, the next init container waiting until the sidecar is
    /// `started`, and are kept running (restarted with back-off) for the pod's life.
    /// Returns true once the pod is initialized (the app containers may run).
    async fn sync_init_containers(
        &mut self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        init: &[Container],
        policy: &str,
        now: SystemTime,
    ) -> bool {
        let initialized_before = self.app_container_created(spec);
        let mut initialized = true;
        for (n, c) in init.iter().enumerate() {
            if rules::is_sidecar(c) {
                if initialized {
                    self.sync_container(c, "Always", now).await;
                    // a sidecar that restarts after the next init container was started
                    // holds nothing up
                    let next_created = init.get(n + 1).is_some_and(|next| {
                        self.containers
                            .get(&next.name)
                            .is_some_and(|r| !r.instances.is_empty())
                    });
                    if !initialized_before && !next_created && !self.sidecar_started(&c.name) {
                        initialized = false;
                    }
                }
                continue;
            }
            if initialized_before || self.init_completed(&c.name) {
                continue;
            }
            if initialized {
                self.sync_container(c, policy, now).await;
                initialized = false;
            }
        }
        initialized
    }

    async fn sync_container(&mut self, c: &Container, policy: &str, now: SystemTime) {
        let hash = container_hash(c);
        let key = (c.name.clone(), hash);
        let full_name = self.full_name();
        let rec = self.containers.entry(c.name.clone()).or_default();
        let (event_time, next_count) = match rec.current() {
            None => (rec.create_failed_at, 0),
            Some(i) => match &i.state {
                ContainerState::Running { .. } => {
                    let id = i.id.clone();
                    rec.waiting = None;
                    if rec.hashes.get(&id).is_some_and(|h| *h != hash) {
                        // only `image` of a container may change (spec §9.6): the kubelet
                        // kills it with the pod's grace and starts the new spec at once
                        rec.restart_for_change = true;
                        self.event(
                            Some(&c.name),
                            EventType::Normal,
                            "Killing",
                            format!("Container {} definition changed, will be restarted", c.name),
                        );
                        let grace = spec_grace_seconds(&self.pod);
                        self.kill_for_restart(c, &id, Duration::from_secs(grace as u64))
                            .await;
                    }
                    return;
                }
                ContainerState::Created => {
                    // left over from an interrupted start: start it now
                    let id = i.id.clone();
                    match self.ctx.runtime.start_container(&id).await {
                        Ok(st) => {
                            self.started(c, &id, st.state);
                            self.post_start(c, &id).await;
                        }
                        Err(e) => self.start_failed(c, &id, e, now).await,
                    }
                    return;
                }
                ContainerState::Exited(e) => {
                    if !should_restart(policy, e.exit_code) && !rec.restart_for_change {
                        rec.waiting = None;
                        return;
                    }
                    let t = rec
                        .create_failed_at
                        .map_or(e.finished_at, |f| f.max(e.finished_at));
                    (Some(t), i.restart_count + 1)
                }
            },
        };
        if let Some(at) = self.containers.get(&c.name).and_then(|r| r.config_retry_at)
            && Instant::now() < at
        {
            self.wake_at(at);
            return;
        }
        if let Some(t) = event_time {
            if let Some((backoff, until)) = self.backoff.in_backoff(&key, t, now) {
                let rec = self.containers.entry(c.name.clone()).or_default();
                let current_id = rec.current().map(|i| i.id.clone());
                if rec.create_failed_at.is_none() || rec.waiting.is_none() {
                    rec.waiting = Some(Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: Some(format!(
                            "back-off {} restarting failed container={} pod={full_name}",
                            rules::go_duration(backoff),
                            c.name
                        )),
                    });
                }
                let announce =
                    rec.backoff_announced.as_ref() != Some(&(current_id.clone(), backoff));
                rec.backoff_announced = Some((current_id, backoff));
                if announce {
                    self.event(
                        Some(&c.name),
                        EventType::Warning,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {full_name}",
                            c.name
                        ),
                    );
                }
                let at = self.ctx.clock.instant_for(until);
                self.wake_at(at);
                return;
            }
            self.backoff.next(&key, t, now);
        }
        self.start_new(c, next_count, hash, now).await;
    }

    async fn start_new(&mut self, c: &Container, restart_count: i32, hash: u64, now: SystemTime) {
        let image = c.image.clone().unwrap_or_default();
        self.event(
            Some(&c.name),
            EventType::Normal,
            "Pulled",
            format!("Container image \"{image}\" already present on machine"),
        );
        let env = match self.resolve_env(c).await {
            Some(env) => env,
            None => return,
        };
        let Some(mounts) = self.volume_mounts(c, &env).await else {
            return;
        };
        let mut config = container_config(&self.pod, c, restart_count, hash, env);
        config.mounts = mounts;
        let id = match self.ctx.runtime.create_container(&self.uid, config).await {
            Ok(id) => id,
            Err(RuntimeError::SandboxNotFound { .. }) => {
                self.sandbox_ready = false;
                self.wake_at(Instant::now());
                return;
            }
            Err(e) => {
                let message = e.to_string();
                let rec = self.containers.entry(c.name.clone()).or_default();
                rec.waiting = Some(Waiting {
                    reason: "CreateContainerError".into(),
                    message: Some(message.clone()),
                });
                rec.create_failed_at = Some(now);
                self.event(
                    Some(&c.name),
                    EventType::Warning,
                    "Failed",
                    format!("Error: {message}"),
                );
                self.wake_at(Instant::now());
                return;
            }
        };
        self.event(
            Some(&c.name),
            EventType::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        let rec = self.containers.entry(c.name.clone()).or_default();
        rec.create_failed_at = None;
        rec.restart_for_change = false;
        rec.hashes.insert(id.clone(), hash);
        rec.instances.push(Instance {
            id: id.clone(),
            restart_count,
            image,
            state: ContainerState::Created,
        });
        match self.ctx.runtime.start_container(&id).await {
            Ok(st) => {
                self.started(c, &id, st.state);
                self.post_start(c, &id).await;
            }
            Err(e) => self.start_failed(c, &id, e, now).await,
        }
        self.gc_instances(&c.name).await;
    }

    /// The container's environment (crate::env), or None after reporting a
    /// CreateContainerConfigError (waiting reason, `Failed` event, retry after the back-off).
    async fn resolve_env(&mut self, c: &Container) -> Option<Vec<(String, String)>> {
        let ips = vec![self.ctx.node_ip.clone()];
        let sources = crate::env::EnvSources {
            pod: &self.pod,
            host_ips: ips.clone(),
            pod_ips: ips,
            allocatable: &self.ctx.allocatable,
            objects: self.ctx.objects.as_ref(),
        };
        let resolved = crate::env::resolve(&sources, c).await;
        let rec = self.containers.entry(c.name.clone()).or_default();
        match resolved {
            Ok(env) => {
                rec.config_retry_at = None;
                for w in env.warnings {
                    self.event(None, EventType::Warning, crate::env::INVALID_ENV_NAMES, w);
                }
                Some(env.vars)
            }
            Err(e) => {
                let message = e.to_string();
                let jitter = Duration::from_millis(rand::random_range(0..5_000));
                let at = Instant::now() + CONFIG_ERROR_RETRY + jitter;
                rec.config_retry_at = Some(at);
                rec.waiting = Some(Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: Some(message.clone()),
                });
                self.event(
                    Some(&c.name),
                    EventType::Warning,
                    "Failed",
                    format!("Error: {message}"),
                );
                self.wake_at(at);
                None
            }
        }
    }

    /// The container's volume mounts (crate::volumes), or None after reporting a
    /// CreateContainerConfigError (`FailedMount` event, retry after the config-error back-off).
    async fn volume_mounts(
        &mut self,
        c: &Container,
        env: &[(String, String)],
    ) -> Option<Vec<podvisor_runtime::Mount>> {
        let ips = vec![self.ctx.node_ip.clone()];
        let sources = crate::env::EnvSources {
            pod: &self.pod,
            host_ips: ips.clone(),
            pod_ips: ips,
            allocatable: &self.ctx.allocatable,
            objects: self.ctx.objects.as_ref(),
        };
        let result = self.volumes.container_mounts(&sources, c, env).await;
        let e = match result {
            Ok(m) => {
                if let Some(at) = self.volumes.next_refresh() {
                    self.wake_at(at);
                }
                return Some(m);
            }
            Err(e) => e,
        };
        let message = e.to_string();
        let at = Instant::now()
            + CONFIG_ERROR_RETRY
            + Duration::from_millis(rand::random_range(0..5_000));
        let rec = self.containers.entry(c.name.clone()).or_default();
        rec.config_retry_at = Some(at);
        rec.waiting = Some(Waiting {
            reason: "CreateContainerConfigError".into(),
            message: Some(message.clone()),
        });
        let reason = match e {
            crate::volumes::VolumeError::SetUp { .. } => "FailedMount",
            crate::volumes::VolumeError::Mount(_) => "Failed",
        };
        self.event(Some(&c.name), EventType::Warning, reason, message);
        self.wake_at(at);
        None
    }

    /// Rewrites the pod's configMap/secret/downwardAPI volumes that changed, at most every
    /// `volumes::REFRESH_INTERVAL`, and wakes the worker for the next refresh.
    async fn refresh_volumes(&mut self) {
        let ips = vec![self.ctx.node_ip.clone()];
        let sources = crate::env::EnvSources {
            pod: &self.pod,
            host_ips: ips.clone(),
            pod_ips: ips,
            allocatable: &self.ctx.allocatable,
            objects: self.ctx.objects.as_ref(),
        };
        if let Some(at) = self.volumes.refresh(&sources).await {
            self.wake_at(at);
        }
    }

    /// Removes the pod's volumes (after its sandbox: nothing runs that uses them).
    fn remove_volumes(&mut self) {
        if let Err(e) = self.volumes.cleanup() {
            tracing::warn!(error = %e, dir = %self.volumes.dir().display(), "cannot remove the pod's volumes");
        }
    }

    fn started(&mut self, c: &Container, id: &ContainerId, state: ContainerState) {
        let already_exited = self.exited_tx.borrow().contains(id);
        let rec = self.containers.entry(c.name.clone()).or_default();
        rec.waiting = None;
        if let Some(i) = rec.instance_mut(id)
            && !already_exited
        {
            i.state = state;
        }
        self.event(
            Some(&c.name),
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
    }

    async fn start_failed(
        &mut self,
        c: &Container,
        id: &ContainerId,
        e: RuntimeError,
        now: SystemTime,
    ) {
        let message = match &e {
            RuntimeError::StartFailed { message } => message.clone(),
            other => other.to_string(),
        };
        let state = match self.ctx.runtime.container_status(id).await {
            Ok(st) if matches!(st.state, ContainerState::Exited(_)) => st.state,
            _ => ContainerState::Exited(ExitStatus {
                exit_code: 128,
                signal: None,
                oom_killed: false,
                started_at: now,
                finished_at: now,
                message: Some(message.clone()),
                termination_message: None,
            }),
        };
        let rec = self.containers.entry(c.name.clone()).or_default();
        if let Some(i) = rec.instance_mut(id) {
            i.state = state;
        }
        rec.waiting = None;
        self.exited_tx.send_modify(|s| {
            s.insert(id.clone());
        });
        self.event(
            Some(&c.name),
            EventType::Warning,
            "Failed",
            format!("Error: {message}"),
        );
        self.wake_at(Instant::now());
    }

    /// Tells the probes every container's newest instance (before each status computation).
    fn observe_probes(&self) {
        let Some(p) = &self.probes else {
            return;
        };
        for (name, rec) in &self.containers {
            let pending = rec.post_start_pending.is_some();
            p.observe(name, rec.current().map(|i| (&i.id, &i.state)), !pending);
        }
    }

    /// A probe result changed (the status is recomputed by the loop), an event, or a kill
    /// for a failed liveness/startup probe (spec §3.4; the restart follows the policy).
    async fn apply_probe_update(&mut self, u: ProbeUpdate) {
        match u {
            ProbeUpdate::Changed { .. } => {}
            ProbeUpdate::Event(e) => {
                let type_ = if e.event_type == "Normal" {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                self.event(Some(&e.container), type_, e.reason, e.message);
            }
            ProbeUpdate::Kill(k) => {
                if !matches!(self.state, PodWorkerState::Syncing) {
                    return;
                }
                let spec = self.pod.spec.clone().unwrap_or_default();
                let Some(c) = spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .find(|c| c.name == k.container)
                    .cloned()
                else {
                    return;
                };
                let running = self
                    .containers
                    .get(&k.container)
                    .and_then(|r| r.current())
                    .is_some_and(|i| i.id == k.container_id && i.is_running());
                if !running {
                    return;
                }
                self.event(
                    Some(&c.name),
                    EventType::Normal,
                    "Killing",
                    k.message.clone(),
                );
                let grace = k
                    .grace_period_seconds
                    .or(spec.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(0);
                self.kill_for_restart(&c, &k.container_id, Duration::from_secs(grace as u64))
                    .await;
            }
        }
    }

    /// Kills one container so that it restarts (probe or postStart failure): preStop, stop
    /// signal, SIGKILL after the grace; pre-empted by a deletion or the agent's shutdown.
    async fn kill_for_restart(&mut self, c: &Container, id: &ContainerId, grace: Duration) {
        let hook_ctx = HookContext {
            pod_full_name: self.full_name(),
            container: c.clone(),
            container_id: id.clone(),
            pod_ip: self.ctx.node_ip.clone(),
            budget: grace,
        };
        let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone());
        let runtime = self.ctx.runtime.clone();
        let hooks = self.ctx.hooks.clone();
        let kill = probe_glue::kill_for_restart(
            &runtime,
            &hooks,
            hook_ctx,
            pre_stop.as_ref(),
            stop_signal_of(c),
            grace,
        );
        let mut rx = self.input_rx.clone();
        let shutdown = self.shutdown.clone();
        let failed = tokio::select! {
            f = kill => f,
            _ = rx.wait_for(|i| i.drain.is_some() || i.pod.as_ref().is_none_or(|p| p.metadata.deletion_timestamp.is_some())) => {
                self.input_changed = true;
                None
            }
            _ = shutdown.cancelled() => None,
        };
        if let Some(e) = failed {
            tracing::info!(container = %c.name, error = %e, "preStop hook failed");
            self.event(
                Some(&c.name),
                EventType::Warning,
                "FailedPreStopHook",
                "PreStopHook failed".into(),
            );
        }
    }

    /// Runs the container's postStart hook (spec §1.9). The instance is reported waiting until
    /// the hook completes; on failure the container is killed (preStop runs) and waits with
    /// PostStartHookError. A deletion pre-empts the hook (`sync` drops this future on `kill`).
    async fn post_start(&mut self, c: &Container, id: &ContainerId) {
        let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) else {
            return;
        };
        let Some(rec) = self.containers.get_mut(&c.name) else {
            return;
        };
        let Some(mut pending) = rec.instance_mut(id).filter(|i| i.is_running()).cloned() else {
            return;
        };
        pending.state = ContainerState::Created;
        rec.post_start_pending = Some(pending);
        self.observe_probes();
        let ctx = crate::probe::HookContext {
            runtime: self.ctx.runtime.clone(),
            pod_name: self.name.clone(),
            pod_namespace: self.namespace.clone(),
            pod_uid: self.uid.clone(),
            pod_ip: self.ctx.node_ip.clone(),
            container: c.clone(),
            container_id: id.clone(),
        };
        let outcome = crate::probe::run_post_start(&ctx, &handler, &self.kill).await;
        if let Some(rec) = self.containers.get_mut(&c.name) {
            rec.post_start_pending = None;
        }
        let events = match outcome {
            crate::probe::PostStartOutcome::Completed { events } => events,
            crate::probe::PostStartOutcome::Cancelled => Vec::new(),
            crate::probe::PostStartOutcome::Failed { message, events } => {
                for e in events {
                    self.event(Some(&e.container), EventType::Warning, e.reason, e.message);
                }
                self.event(
                    Some(&c.name),
                    EventType::Normal,
                    "Killing",
                    "FailedPostStartHook".into(),
                );
                let grace = self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(0);
                self.kill_for_restart(c, id, Duration::from_secs(grace as u64))
                    .await;
                if let Some(rec) = self.containers.get_mut(&c.name) {
                    rec.waiting = Some(Waiting {
                        reason: crate::probe::hooks::POST_START_HOOK_ERROR.into(),
                        message: Some(message),
                    });
                }
                Vec::new()
            }
        };
        for e in events {
            self.event(Some(&e.container), EventType::Warning, e.reason, e.message);
        }
    }

    /// Removes instances older than the previous one (their logs go with them).
    async fn gc_instances(&mut self, name: &str) {
        let Some(rec) = self.containers.get_mut(name) else {
            return;
        };
        let mut remove = Vec::new();
        while rec.instances.len() > 2 && rec.instances[0].exit().is_some() {
            let id = rec.instances.remove(0).id;
            rec.hashes.remove(&id);
            remove.push(id);
        }
        for id in remove {
            if let Err(e) = self.ctx.runtime.remove_container(&id).await {
                tracing::debug!(error = %e, "cannot remove an old container instance");
            }
        }
    }

    fn views<'a>(&'a self, containers: &'a [Container]) -> Vec<ContainerView<'a>> {
        containers
            .iter()
            .map(|c| {
                let rec = self.containers.get(&c.name);
                let current = rec.and_then(|r| {
                    let running = r.current().is_some_and(|i| i.is_running());
                    r.post_start_pending
                        .as_ref()
                        .filter(|_| running)
                        .or(r.current())
                });
                let (ready, started) = match (&self.probes, current) {
                    (Some(p), Some(i)) => p.ready_started(&c.name, &i.id, &i.state),
                    _ => (true, true),
                };
                ContainerView {
                    name: &c.name,
                    image: c.image.as_deref().unwrap_or_default(),
                    current,
                    previous: rec.and_then(|r| r.previous()),
                    waiting: rec.and_then(|r| r.waiting.as_ref()),
                    ready,
                    started,
                }
            })
            .collect()
    }

    fn status(&self, pod_is_terminal: bool) -> PodStatus {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let views = self.views(&spec.containers);
        let init_views = self.views(spec.init_containers.as_deref().unwrap_or_default());
        let drained = matches!(
            self.state,
            PodWorkerState::Terminated {
                why: Why::Drained,
                ..
            }
        );
        let deadline_exceeded = matches!(
            self.state,
            PodWorkerState::Terminating {
                why: Why::DeadlineExceeded,
                ..
            } | PodWorkerState::Terminated {
                why: Why::DeadlineExceeded,
                ..
            }
        );
        compute_status(&StatusInput {
            pod: &self.pod,
            sandbox_ready: self.sandbox_ready,
            containers: views,
            init_containers: init_views,
            pod_is_terminal,
            host_ip: &self.ctx.node_ip,
            start_time: self.start_time,
            now: self.ctx.clock.now(),
            reason: if deadline_exceeded {
                Some(("DeadlineExceeded", DEADLINE_EXCEEDED_MESSAGE))
            } else {
                drained.then_some((
                    "Terminated",
                    "Pod was terminated in response to imminent node shutdown.",
                ))
            },
        })
    }

    /// Writes the status if it differs from the object's and from the last write.
    async fn write_status(&mut self) {
        if self.object_gone() || matches!(self.state, PodWorkerState::Finished { .. }) {
            return;
        }
        let status = self.status(false);
        self.write(status).await;
        self.write_probe_annotations(false).await;
    }

    /// Patches the `probes.podvisor.io/` annotations if they differ from the object's:
    /// together with a status write, otherwise at most every [`PROBE_ANNOTATION_REFRESH`]
    /// (docs/design/0002-probe-results.md). Best effort: a failure waits for the next one.
    async fn write_probe_annotations(&mut self, with_status: bool) {
        let Some(patch) = probe_glue::annotation_patch(self.probes.as_ref(), &self.pod) else {
            return;
        };
        let due = self.annotations_at + PROBE_ANNOTATION_REFRESH;
        if !with_status && Instant::now() < due {
            self.wake_at(due);
            return;
        }
        self.annotations_at = Instant::now();
        match self.ctx.api.patch_annotations(&self.pod, &patch).await {
            Ok(pod) => {
                if pod.metadata.uid.as_deref() == Some(self.uid.as_str()) {
                    self.pod = Arc::new(pod);
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(error = %e, "cannot write the probe annotations"),
        }
    }

    async fn write(&mut self, status: PodStatus) -> bool {
        if self.pod.status.as_ref() == Some(&status) || self.last_written.as_ref() == Some(&status)
        {
            return true;
        }
        match self.ctx.api.update_status(&self.pod, &status).await {
            Ok(pod) => {
                self.last_written = Some(status);
                if pod.metadata.uid.as_deref() == Some(self.uid.as_str()) {
                    self.pod = Arc::new(pod);
                }
                self.write_probe_annotations(true).await;
                true
            }
            Err(e) => {
                if !e.is_not_found() {
                    tracing::warn!(error = %e, "status write failed; retrying");
                    self.wake_at(Instant::now() + Duration::from_secs(1));
                }
                false
            }
        }
    }

    async fn remove_sandbox(&mut self) {
        match self.ctx.runtime.remove_sandbox(&self.uid).await {
            Ok(()) => {
                self.sandbox_ready = false;
                self.remove_volumes();
            }
            Err(e) => tracing::warn!(error = %e, "cannot remove the sandbox"),
        }
    }

    /// Terminated: final status, sandbox removal, object deletion (spec §1.4).
    async fn cleanup(&mut self) {
        let PodWorkerState::Terminated {
            why,
            delete_object,
            object_gone,
        } = self.state.clone()
        else {
            return;
        };
        if let Some(p) = self.probes.as_mut() {
            p.stop();
        }
        if !object_gone {
            let terminal = why != Why::Completed;
            let status = self.status(terminal);
            if !self.write(status).await {
                self.wake_at(Instant::now() + Duration::from_millis(200));
                return;
            }
        }
        // a completed or timed-out pod keeps its sandbox (logs) until its object goes
        let remove =
            !matches!(why, Why::Completed | Why::DeadlineExceeded) || delete_object || object_gone;
        if remove {
            if let Err(e) = self.ctx.runtime.remove_sandbox(&self.uid).await {
                tracing::warn!(error = %e, "cannot remove the sandbox; retrying");
                self.wake_at(Instant::now() + Duration::from_millis(200));
                return;
            }
            self.sandbox_ready = false;
            self.remove_volumes();
        }
        if delete_object
            && !object_gone
            && let Err(e) = self
                .ctx
                .api
                .delete_pod(&self.namespace, &self.name, &self.uid)
                .await
        {
            tracing::warn!(error = %e, "cannot delete the pod; retrying");
            self.wake_at(Instant::now() + Duration::from_millis(200));
            return;
        }
        self.ctx.deadlines.remove(&self.uid);
        self.record = None;
        self.apply(Input::CleanedUp {
            sandbox_removed: remove,
        })
        .await;
        if remove && (delete_object || object_gone) {
            // nothing is left to watch for
            self.exit = true;
        }
    }
}
