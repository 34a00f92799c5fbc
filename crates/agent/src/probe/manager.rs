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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Container, PodSpec};
use podvisor_runtime::{ContainerId, ContainerRuntime};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::history::{self, ProbeHistory};
use super::shared::{ContainerTarget, ProbePod, ProbeUpdate, ProbeUpdates, Shared, lock};
use super::task::{self, WorkerCtx};
use super::worker::Worker;
use super::{ProbeResult, ProbeSpec, ProbeType};
use crate::clock::WallClock;
use crate::handlers::HandlerEvent;

/// What the workers need from the agent.
#[derive(Clone)]
pub struct ProbeDeps {
    /// The runtime (exec probes).
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The wall clock (initialDelaySeconds against `startedAt`, history timestamps).
    pub clock: WallClock,
    /// When the agent started: workers created within one period of it wait a random part
    /// of a period first. None = long ago (no jitter; what tests use).
    pub agent_started: Option<Instant>,
    /// Where changes of a probe's result are recorded as timeline steps (None: nowhere).
    pub steps: Option<Arc<dyn crate::api::EventSink>>,
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
            shared: Mutex::new(Shared::new(pod)),
            runtime: deps.runtime,
            clock: deps.clock,
            agent_started: deps.agent_started,
            steps: deps.steps,
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
                    let _ = self.ctx.updates.send(ProbeUpdate::Event(HandlerEvent {
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
                .spawn(task::run(w, self.ctx.clone(), stop, trigger));
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
