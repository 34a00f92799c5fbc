//! The probe manager of one pod, owned by its pod worker.
//!
//! # Lifecycle
//!
//! ```text
//! new(pod, deps) ──▶ add_pod(spec)            one worker per container × probe it declares
//!                      │                      (regular containers and restartable init
//!                      │                      containers), ticking from now
//!                      ├─ set_container(name, Some(target))   on every start / exit / restart
//!                      ├─ started(name, target) / ready(name, target)   for the status
//!                      ├─ ProbeUpdate::Changed / Kill / Event  on the updates channel
//!                      ├─ stop_liveness_and_startup()         when termination starts
//!                      └─ remove_pod()  (or drop)             when the containers have stopped
//! ```
//!
//! # Rules
//!
//! * Results are keyed by container ID: `started` and `ready` consult only results
//!   published for the instance the caller names. A new instance starts from the initial
//!   value (readiness Failure, liveness Success, startup Unknown).
//! * `started` = running and (startup result Success, or no startup worker). `ready` =
//!   started and running and (readiness result Success, or no readiness worker). When
//!   `ready` finds a started container without a Success, it triggers an immediate
//!   readiness run (the kubelet's `UpdatePodStatus`), once per instance, so readiness
//!   follows a new instance at once rather than one period later; a startup success
//!   triggers readiness directly.
//! * A published liveness or startup Failure sends one [`ProbeUpdate::Kill`]; the worker
//!   then holds until a new container ID appears. After `stop_liveness_and_startup` no
//!   liveness or startup result, event or kill is ever sent, even from a run in flight.
//! * Readiness keeps running during termination, until `remove_pod`.
//! * Every worker is a task in the manager's `JoinSet`: dropping the manager stops them all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use podvisor_runtime::{ContainerId, ContainerRuntime};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handler::{HandlerTarget, Outcome};
use super::history::{self, ProbeHistory, ResultRun};
use super::worker::{self, Published, Step, Worker};
use super::{ProbeResult, ProbeSpec, ProbeType};

/// A wall clock (injected, so tests control timestamps).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The pod, as the probes need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePod {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
    /// The pod IP (the default host of httpGet, tcpSocket and grpc).
    pub pod_ip: String,
    /// `spec.restartPolicy` (`Always`, `OnFailure`, `Never`).
    pub restart_policy: String,
}

/// What the workers need from the agent.
#[derive(Clone)]
pub struct ProbeDeps {
    /// The runtime (exec probes).
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The wall clock (initialDelaySeconds against `startedAt`, history timestamps).
    pub clock: Clock,
    /// When the agent started: workers created within one period of it wait a random part
    /// of a period first. None = long ago (no jitter; what tests use).
    pub agent_started: Option<Instant>,
}

/// A container instance as the pod worker observes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerTarget {
    /// Created (or being started: a postStart hook is running), not running yet.
    Waiting {
        /// Its ID.
        id: ContainerId,
    },
    /// Running since `started_at`.
    Running {
        /// Its ID.
        id: ContainerId,
        /// `state.running.startedAt`.
        started_at: SystemTime,
    },
    /// Ended (maybe to be restarted as a new instance).
    Exited {
        /// Its ID.
        id: ContainerId,
    },
}

impl ContainerTarget {
    /// The instance's ID.
    pub fn id(&self) -> &ContainerId {
        match self {
            ContainerTarget::Waiting { id }
            | ContainerTarget::Running { id, .. }
            | ContainerTarget::Exited { id } => id,
        }
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        matches!(self, ContainerTarget::Running { .. })
    }
}

/// A request to kill a container that failed its liveness or startup probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillRequest {
    /// The container name.
    pub container: String,
    /// The instance to kill (ignore the request if it is no longer current).
    pub container_id: ContainerId,
    /// Liveness or Startup.
    pub probe_type: ProbeType,
    /// The `Killing` event message: `Container <c> failed liveness probe, will be
    /// restarted` (no suffix under restartPolicy Never).
    pub message: String,
    /// The probe's `terminationGracePeriodSeconds`, which overrides the pod's for this kill
    /// (unless the pod is being deleted: then `deletionGracePeriodSeconds` wins).
    pub grace_period_seconds: Option<i64>,
}

/// An event the pod worker should record on the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    /// The container name.
    pub container: String,
    /// `Warning` or `Normal`.
    pub event_type: &'static str,
    /// `Unhealthy` or `ProbeWarning`.
    pub reason: &'static str,
    /// The message, as the kubelet's.
    pub message: String,
}

/// What the manager tells the pod worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeUpdate {
    /// A published result changed: recompute `started`/`ready` and the pod conditions.
    Changed {
        /// The container name.
        container: String,
        /// The probe type.
        probe_type: ProbeType,
        /// The instance.
        container_id: ContainerId,
        /// The new result.
        result: ProbeResult,
    },
    /// Kill and restart (per restartPolicy) this container.
    Kill(KillRequest),
    /// Record this event.
    Event(ProbeEvent),
}

/// The receiving end of a manager's updates.
pub type ProbeUpdates = mpsc::UnboundedReceiver<ProbeUpdate>;

/// The state the workers share with the manager (under one lock, never held across an
/// await).
pub struct Shared {
    pub(crate) pod: ProbePod,
    pub(crate) terminal: bool,
    pub(crate) deleting: bool,
    pub(crate) containers: HashMap<String, ContainerTarget>,
    pub(crate) specs: HashMap<String, Container>,
    results: HashMap<(String, ProbeType), (ContainerId, ProbeResult)>,
    workers: HashSet<(String, ProbeType)>,
    triggers: HashMap<(String, ProbeType), Arc<Notify>>,
    /// The instance `ready()` last triggered a readiness run for (once per instance, so a
    /// status computation caused by the run's own event cannot loop).
    status_triggered: HashMap<String, ContainerId>,
    histories: HashMap<String, BTreeMap<ProbeType, ProbeHistory>>,
}

impl Shared {
    /// Publishes a result; true if it changed.
    pub(crate) fn set_result(
        &mut self,
        container: &str,
        probe_type: ProbeType,
        id: &ContainerId,
        result: ProbeResult,
    ) -> bool {
        let key = (container.to_string(), probe_type);
        let changed = match self.results.get(&key) {
            Some((rid, r)) => rid != id || *r != result,
            None => true,
        };
        if changed {
            self.results.insert(key, (id.clone(), result));
            if let Some(h) = self
                .histories
                .get_mut(container)
                .and_then(|m| m.get_mut(&probe_type))
            {
                h.state = result.as_str();
            }
        }
        changed
    }

    pub(crate) fn remove_result(&mut self, container: &str, probe_type: ProbeType) {
        self.results.remove(&(container.to_string(), probe_type));
    }

    fn result_for(
        &self,
        container: &str,
        probe_type: ProbeType,
        id: &ContainerId,
    ) -> Option<ProbeResult> {
        self.results
            .get(&(container.to_string(), probe_type))
            .filter(|(rid, _)| rid == id)
            .map(|(_, r)| *r)
    }

    fn has_worker(&self, container: &str, probe_type: ProbeType) -> bool {
        self.workers.contains(&(container.to_string(), probe_type))
    }

    /// The kubelet's `started`: startup Success for this instance, or no startup worker.
    pub(crate) fn is_started(&self, container: &str, id: &ContainerId) -> bool {
        match self.result_for(container, ProbeType::Startup, id) {
            Some(r) => r == ProbeResult::Success,
            None => !self.has_worker(container, ProbeType::Startup),
        }
    }

    fn trigger(&self, container: &str, probe_type: ProbeType) {
        if let Some(t) = self.triggers.get(&(container.to_string(), probe_type)) {
            t.notify_one();
        }
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every worker task holds.
pub struct WorkerCtx {
    pub(crate) shared: Mutex<Shared>,
    pub(crate) runtime: Arc<dyn ContainerRuntime>,
    pub(crate) clock: Clock,
    pub(crate) agent_started: Option<Instant>,
    updates: mpsc::UnboundedSender<ProbeUpdate>,
}

impl WorkerCtx {
    fn send(&self, u: ProbeUpdate) {
        // The pod worker may have gone; then nobody needs the update.
        let _ = self.updates.send(u);
    }

    fn report(&self, w: &Worker, published: Vec<Published>) {
        for p in published {
            self.send(ProbeUpdate::Changed {
                container: w.container.clone(),
                probe_type: w.probe_type,
                container_id: p.container_id,
                result: p.result,
            });
        }
    }

    fn gated_off(&self, shared: &Shared, t: ProbeType) -> bool {
        shared.deleting && matches!(t, ProbeType::Liveness | ProbeType::Startup)
    }

    /// One run of the worker's algorithm. Returns whether to keep going.
    pub(crate) async fn do_probe(&self, w: &mut Worker) -> bool {
        let (published, step, target) = {
            let mut shared = lock(&self.shared);
            if self.gated_off(&shared, w.probe_type) {
                return false;
            }
            let (published, step) = w.before_probe(&mut shared, (self.clock)());
            let target = match &step {
                Step::Probe(id) => shared.specs.get(&w.container).map(|c| HandlerTarget {
                    runtime: self.runtime.clone(),
                    container_id: id.clone(),
                    container: c.clone(),
                    pod_ip: shared.pod.pod_ip.clone(),
                }),
                _ => None,
            };
            (published, step, target)
        };
        self.report(w, published);
        let id = match step {
            Step::Exit => return false,
            Step::Skip => return true,
            Step::Probe(id) => id,
        };
        let Some(target) = target else {
            return true;
        };
        let result = worker::probe_with_retries(&w.spec, &target).await;
        let now = (self.clock)();
        let mut shared = lock(&self.shared);
        if self.gated_off(&shared, w.probe_type) || shared.terminal {
            return false;
        }
        let label = w.probe_type.label();
        let event = |reason: &'static str, message: String| {
            ProbeUpdate::Event(ProbeEvent {
                container: w.container.clone(),
                event_type: "Warning",
                reason,
                message,
            })
        };
        let verdict = match result.outcome {
            Outcome::Success => Some(ProbeResult::Success),
            Outcome::Warning => {
                self.send(event(
                    "ProbeWarning",
                    format!("{label} probe warning: {}", result.output),
                ));
                Some(ProbeResult::Success)
            }
            Outcome::Failure { .. } => {
                self.send(event(
                    "Unhealthy",
                    format!("{label} probe failed: {}", result.output),
                ));
                Some(ProbeResult::Failure)
            }
            Outcome::Error => {
                self.send(event(
                    "Unhealthy",
                    format!("{label} probe errored: {}", result.output),
                ));
                None
            }
        };
        let published = verdict.and_then(|v| w.after_probe(&mut shared, &id, v));
        if let Some(h) = shared
            .histories
            .get_mut(&w.container)
            .and_then(|m| m.get_mut(&w.probe_type))
        {
            h.push(now, &result);
            h.run = w.run().map(|(r, count)| ResultRun {
                result: if r == ProbeResult::Success {
                    "success"
                } else {
                    "failure"
                },
                count,
            });
            h.threshold = match w.run() {
                Some((ProbeResult::Success, _)) => w.spec.success_threshold,
                _ => w.spec.failure_threshold,
            };
        }
        if let Some(p) = published {
            if w.probe_type == ProbeType::Startup && p.result == ProbeResult::Success {
                // The container is started now: readiness runs at once (UpdatePodStatus).
                shared.trigger(&w.container, ProbeType::Readiness);
            }
            let kill = (matches!(w.probe_type, ProbeType::Liveness | ProbeType::Startup)
                && p.result == ProbeResult::Failure)
                .then(|| {
                    let what = if w.probe_type == ProbeType::Liveness {
                        "liveness"
                    } else {
                        "startup"
                    };
                    let restart = !w.restart_never;
                    KillRequest {
                        container: w.container.clone(),
                        container_id: p.container_id.clone(),
                        probe_type: w.probe_type,
                        message: format!(
                            "Container {} failed {what} probe{}",
                            w.container,
                            if restart { ", will be restarted" } else { "" }
                        ),
                        grace_period_seconds: w.spec.termination_grace_period_seconds,
                    }
                });
            drop(shared);
            self.report(w, vec![p]);
            if let Some(k) = kill {
                self.send(ProbeUpdate::Kill(k));
            }
        }
        true
    }

    /// A worker ended: drop its results and tell the pod worker (started/ready may change).
    pub(crate) fn worker_gone(&self, w: &Worker) {
        let mut shared = lock(&self.shared);
        let key = (w.container.clone(), w.probe_type);
        shared.workers.remove(&key);
        shared.triggers.remove(&key);
        let removed = shared.results.remove(&key);
        drop(shared);
        if let Some((id, _)) = removed {
            self.send(ProbeUpdate::Changed {
                container: w.container.clone(),
                probe_type: w.probe_type,
                container_id: id,
                result: ProbeResult::Unknown,
            });
        }
    }
}

/// The probe manager of one pod. See the module documentation.
pub struct ProbeManager {
    ctx: Arc<WorkerCtx>,
    stops: HashMap<(String, ProbeType), CancellationToken>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for ProbeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeManager")
            .field("workers", &self.stops.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ProbeManager {
    /// A manager with no workers yet, and the channel its updates arrive on.
    pub fn new(pod: ProbePod, deps: ProbeDeps) -> (ProbeManager, ProbeUpdates) {
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(WorkerCtx {
            shared: Mutex::new(Shared {
                pod,
                terminal: false,
                deleting: false,
                containers: HashMap::new(),
                specs: HashMap::new(),
                results: HashMap::new(),
                workers: HashSet::new(),
                triggers: HashMap::new(),
                status_triggered: HashMap::new(),
                histories: HashMap::new(),
            }),
            runtime: deps.runtime,
            clock: deps.clock,
            agent_started: deps.agent_started,
            updates: tx,
        });
        (
            ProbeManager {
                ctx,
                stops: HashMap::new(),
                tasks: JoinSet::new(),
            },
            rx,
        )
    }

    /// Starts the workers for every probe of the pod's containers and restartable init
    /// containers (sidecars). Probes that cannot be resolved (no handler) are skipped with a
    /// warning event, as the API would have rejected them. Call once, before starting the
    /// containers; calling again adds only missing workers.
    pub fn add_pod(&mut self, spec: &PodSpec) {
        let never = spec.restart_policy.as_deref() == Some("Never");
        for c in &spec.containers {
            self.add_container(c, never);
        }
        for c in spec.init_containers.iter().flatten() {
            if c.restart_policy.as_deref() == Some("Always") {
                self.add_container(c, false);
            }
        }
    }

    /// Starts the workers for one container's probes. `restart_never`: an ended instance
    /// is not replaced (restartPolicy Never), so its workers stop.
    pub fn add_container(&mut self, container: &Container, restart_never: bool) {
        let probes = [
            (ProbeType::Startup, &container.startup_probe),
            (ProbeType::Liveness, &container.liveness_probe),
            (ProbeType::Readiness, &container.readiness_probe),
        ];
        for (t, p) in probes {
            let Some(p) = p else { continue };
            let key = (container.name.clone(), t);
            if self.stops.contains_key(&key) {
                continue;
            }
            let spec = match ProbeSpec::from_api(p) {
                Ok(s) => s,
                Err(e) => {
                    let _ = self.ctx.updates.send(ProbeUpdate::Event(ProbeEvent {
                        container: container.name.clone(),
                        event_type: "Warning",
                        reason: "Unhealthy",
                        message: format!("{} probe errored: {e}", t.label()),
                    }));
                    continue;
                }
            };
            let trigger = Arc::new(Notify::new());
            {
                let mut shared = lock(&self.ctx.shared);
                shared
                    .specs
                    .insert(container.name.clone(), container.clone());
                shared.workers.insert(key.clone());
                shared.triggers.insert(key.clone(), trigger.clone());
                shared
                    .histories
                    .entry(container.name.clone())
                    .or_default()
                    .insert(t, ProbeHistory::new(t.initial_result()));
            }
            let stop = CancellationToken::new();
            self.stops.insert(key, stop.clone());
            let w = Worker::new(container.name.clone(), t, spec, restart_never);
            self.tasks
                .spawn(worker::run(w, self.ctx.clone(), stop, trigger));
        }
    }

    /// Records the container's current instance (None = not created yet). Call on every
    /// create, start (after postStart), exit and restart.
    pub fn set_container(&self, name: &str, target: Option<ContainerTarget>) {
        let mut shared = lock(&self.ctx.shared);
        match target {
            Some(t) => {
                shared.containers.insert(name.to_string(), t);
            }
            None => {
                shared.containers.remove(name);
            }
        }
    }

    /// Updates the pod IP.
    pub fn set_pod_ip(&self, ip: &str) {
        lock(&self.ctx.shared).pod.pod_ip = ip.to_string();
    }

    /// Whether the container has a probe of this type.
    pub fn has_probe(&self, container: &str, probe_type: ProbeType) -> bool {
        self.stops
            .contains_key(&(container.to_string(), probe_type))
    }

    /// `containerStatuses[].started` for this instance.
    pub fn started(&self, name: &str, target: &ContainerTarget) -> bool {
        if !target.is_running() {
            return false;
        }
        lock(&self.ctx.shared).is_started(name, target.id())
    }

    /// `containerStatuses[].ready` for this instance (regular containers and sidecars; a
    /// completed regular init container is ready by exit code, not by probes). Triggers an
    /// immediate readiness run when a started container is not ready yet.
    pub fn ready(&self, name: &str, target: &ContainerTarget) -> bool {
        if !target.is_running() {
            return false;
        }
        let mut shared = lock(&self.ctx.shared);
        if !shared.is_started(name, target.id()) {
            return false;
        }
        match shared.result_for(name, ProbeType::Readiness, target.id()) {
            Some(ProbeResult::Success) => true,
            _ => {
                let exists = shared.has_worker(name, ProbeType::Readiness);
                if exists && shared.status_triggered.get(name) != Some(target.id()) {
                    shared
                        .status_triggered
                        .insert(name.to_string(), target.id().clone());
                    shared.trigger(name, ProbeType::Readiness);
                }
                !exists
            }
        }
    }

    /// The published result of a probe for an instance (None: none published for it).
    pub fn result(
        &self,
        name: &str,
        probe_type: ProbeType,
        id: &ContainerId,
    ) -> Option<ProbeResult> {
        lock(&self.ctx.shared).result_for(name, probe_type, id)
    }

    /// Termination started: liveness and startup stop now (their results read Success, no
    /// more failures, events or kills); readiness keeps running.
    pub fn stop_liveness_and_startup(&mut self) {
        {
            let mut shared = lock(&self.ctx.shared);
            shared.deleting = true;
            let keys: Vec<_> = shared
                .results
                .keys()
                .filter(|(_, t)| matches!(t, ProbeType::Liveness | ProbeType::Startup))
                .cloned()
                .collect();
            for k in keys {
                if let Some((_, r)) = shared.results.get_mut(&k) {
                    *r = ProbeResult::Success;
                }
            }
        }
        for ((_, t), stop) in &self.stops {
            if matches!(t, ProbeType::Liveness | ProbeType::Startup) {
                stop.cancel();
            }
        }
    }

    /// Stops every worker of one container (its spec went away).
    pub fn remove_container(&mut self, name: &str) {
        for ((c, _), stop) in &self.stops {
            if c == name {
                stop.cancel();
            }
        }
        self.stops.retain(|(c, _), _| c != name);
    }

    /// The pod's containers have stopped (or its phase is terminal): every worker stops.
    pub fn remove_pod(&mut self) {
        lock(&self.ctx.shared).terminal = true;
        for stop in self.stops.values() {
            stop.cancel();
        }
    }

    /// Waits until every worker task has ended (after `remove_pod`).
    pub async fn join(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// The `probes.podvisor.io/<container>` annotations with each probe's recent results
    /// (docs/design/0002-probe-results.md).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let shared = lock(&self.ctx.shared);
        shared
            .histories
            .iter()
            .map(|(c, h)| (history::annotation_key(c), history::render(h)))
            .collect()
    }

    /// The recent results of one probe.
    pub fn history(&self, container: &str, probe_type: ProbeType) -> Option<ProbeHistory> {
        lock(&self.ctx.shared)
            .histories
            .get(container)
            .and_then(|m| m.get(&probe_type))
            .cloned()
    }
}

impl Drop for ProbeManager {
    fn drop(&mut self) {
        for stop in self.stops.values() {
            stop.cancel();
        }
        self.tasks.abort_all();
    }
}
