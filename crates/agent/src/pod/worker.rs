//! The pod worker's loop: one task per pod UID (see the wing's essay in `mod.rs`).
//!
//! # Inputs (latest wins)
//!
//! * the pod object, through a `watch` channel ([`WorkerInput`]): the newest version
//!   replaces any unread one; `pod: None` means the object is gone; `drain` asks for a
//!   graceful stop on agent shutdown;
//! * runtime notes ([`RuntimeNote`]): an exit of one of its containers, or "resync" after the
//!   agent's event stream lagged;
//! * probe updates (results, events, kill requests);
//! * its own timers: the end of a crash back-off, a retry, `activeDeadlineSeconds`;
//! * the end of pod termination (the stops run as one future beside the loop).
//!
//! # A turn
//!
//! 1. A changed input goes through [`transition`]; the worker
//!    performs the effects (start or resume termination, a shorter deadline, delete, exit).
//! 2. It acts for the state: *Syncing*: make the containers match the spec and the restart
//!    policy (`sync.rs`, pre-empted by a stop request); *Terminating*: nothing, the
//!    termination future runs (`stop.rs`); *Terminated*: final status, sandbox removal,
//!    delete with grace 0 and a UID precondition (`cleanup`); *Finished*: nothing.
//! 3. It writes the status if it changed (and the probe annotations with it).
//! 4. It waits for the next input, note, probe update, timer or the end of termination.
//!
//! The deadline is computed once (`state.rs`), persisted (`deadlines.rs`) and only moves
//! earlier; every process is gone by max(deadline, signal + 2 s) whatever preStop does
//! (`stop.rs`). A forced stop (grace 0, or the object gone) has a one-second deadline.
//!
//! # Tokens
//!
//! `shutdown` (the agent's) ends the worker and leaves the pod running for re-adoption: the
//! termination in flight is dropped, its deadline stays on disk. `kill` (the pod's own) is
//! cancelled when termination starts and aborts any container start still in flight.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use podvisor_api::status::{self as rules, pod_full_name};
use podvisor_runtime::{
    ContainerId, ContainerRuntime, ContainerState, ExitEvent, ExitStatus, SandboxState,
    SandboxStatus,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::deadlines::{DeadlineStore, TerminationRecord};
use super::restart::{ContainerLifecycle, RestartHistory};
use super::spec::{ANNOTATION_HASH, ANNOTATION_RESTART_COUNT, field_path, spec_container_name};
use super::state::{
    Deadline, Effect, Input, PodWorkerState, Why, WorkerInput, effective_grace, spec_grace_seconds,
    transition,
};
use super::status::{ContainerView, Instance, StatusInput, compute_status};
use crate::api::{EventSink, EventType, PodApi, PodEvent, PodRef};
use crate::clock::WallClock;
use crate::hooks::HookRunner;
use crate::probe::glue::{self as probe_glue, PodProbes};

/// Why and message of a pod stopped by `spec.activeDeadlineSeconds` (kubelet).
pub(super) const DEADLINE_EXCEEDED_MESSAGE: &str =
    "Pod was active on the node longer than the specified deadline";

/// The slowest refresh of the probe annotations when no status write carries them.
pub const PROBE_ANNOTATION_REFRESH: Duration = Duration::from_secs(60);

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
    /// The pod network (None: every pod on the host's network).
    pub network: Option<Arc<crate::network::PodNetwork>>,
    /// The image service; None: images are not pulled (every image counts as present).
    pub images: Option<Arc<crate::image::ImageManager>>,
    /// The Services, for service-link variables.
    pub services: super::service_env::ServiceLister,
    /// The drain barrier's view of EndpointSlices and Nodes (None: no barrier).
    pub drain: Option<Arc<dyn crate::drain::DrainView>>,
    /// Unsafe sysctls the node allows ([`crate::AgentConfig::allowed_unsafe_sysctls`]).
    pub allowed_unsafe_sysctls: Vec<String>,
    /// Every pod's allocated requests on this node (in-place resize, `resize.rs`).
    pub allocations: Arc<crate::pod::resize::Allocations>,
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

/// What the worker knows of one container of the pod.
#[derive(Debug, Default)]
pub(super) struct ContainerRecord {
    /// Instances, oldest first (the newest two are kept, plus any still running).
    pub(super) instances: Vec<Instance>,
    /// The spec hash each instance was created from (a changed spec restarts it).
    pub(super) hashes: HashMap<ContainerId, u64>,
    /// Where it stands beside its newest instance (`restart.rs`).
    pub(super) lifecycle: ContainerLifecycle,
    /// What the restart decision remembers across instances (`restart.rs`).
    pub(super) history: RestartHistory,
    /// The instance whose handling of its stop signal was checked after start (the early
    /// `StopSignalNotHandled` warning is given once per instance).
    pub(super) stop_signal_checked: Option<ContainerId>,
}

impl ContainerRecord {
    pub(super) fn current(&self) -> Option<&Instance> {
        self.instances.last()
    }

    pub(super) fn previous(&self) -> Option<&Instance> {
        let n = self.instances.len();
        (n >= 2).then(|| &self.instances[n - 2])
    }

    pub(super) fn instance_mut(&mut self, id: &ContainerId) -> Option<&mut Instance> {
        self.instances.iter_mut().find(|i| &i.id == id)
    }
}

/// One pod's worker. See the module documentation.
pub struct PodWorker {
    pub(super) ctx: Arc<WorkerCtx>,
    pub(super) uid: String,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) pod: Arc<Pod>,
    pub(super) state: PodWorkerState,
    pub(super) sandbox_ready: bool,
    /// The pod's own addresses (empty: the host's network).
    pub(super) pod_ips: Vec<String>,
    /// Whether the `MissingClusterDNS` warning was given (once per worker).
    pub(super) dns_warned: bool,
    /// The sandbox's supervisor is gone (`sandbox.rs`): re-create it before anything runs.
    pub(super) sandbox_dead: bool,
    /// Init containers run again from the first in a new sandbox (`sandbox.rs`).
    pub(super) reinitializing: bool,
    pub(super) containers: BTreeMap<String, ContainerRecord>,
    pub(super) start_time: SystemTime,
    pub(super) last_written: Option<PodStatus>,
    pub(super) next_wake: Option<Instant>,
    pub(super) input_rx: watch::Receiver<WorkerInput>,
    pub(super) input_changed: bool,
    pub(super) notes_rx: mpsc::UnboundedReceiver<RuntimeNote>,
    pub(super) state_tx: watch::Sender<&'static str>,
    pub(super) shutdown: CancellationToken,
    pub(super) kill: CancellationToken,
    pub(super) termination: Option<BoxFuture<'static, ()>>,
    pub(super) deadline_tx: Option<watch::Sender<Deadline>>,
    pub(super) exited_tx: watch::Sender<HashSet<ContainerId>>,
    pub(super) record: Option<Arc<Mutex<TerminationRecord>>>,
    pub(super) resumed: Option<TerminationRecord>,
    pub(super) exit: bool,
    /// The pod's probes (crate::probe), once the sandbox exists and if any container has one.
    pub(super) probes: Option<PodProbes>,
    /// When the probe annotations were last patched (or the worker started).
    pub(super) annotations_at: Instant,
    /// The pod's volumes (crate::pod::volumes).
    pub(super) volumes: crate::pod::volumes::PodVolumes,
    /// Why the agent's admission refused the pod (reason, message), if it did.
    pub(super) rejection: Option<(&'static str, String)>,
    /// In-place resize: allocated and actuated resources, resize conditions (`resize.rs`).
    pub(super) resize: crate::pod::resize::PodResize,
    /// Restarts of all containers (`restart_all.rs`).
    pub(super) restart_all: crate::pod::restart_all::RestartAll,
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
        let volumes = crate::pod::volumes::PodVolumes::new(&ctx.pods_dir, &uid);
        let mut w = PodWorker {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid,
            pod,
            state: PodWorkerState::Syncing,
            sandbox_ready: false,
            rejection: None,
            resize: Default::default(),
            restart_all: Default::default(),
            pod_ips: Vec::new(),
            dns_warned: false,
            sandbox_dead: false,
            reinitializing: false,
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
    pub(super) fn adopt(&mut self, sb: SandboxStatus) {
        self.sandbox_ready = sb.state == SandboxState::Ready;
        if let Some(net) = &self.ctx.network {
            self.pod_ips = net.cached_ips(&sb.config.id).unwrap_or_default();
        }
        self.sandbox_dead = !self.sandbox_ready;
        let mut exited = HashSet::new();
        for c in sb.containers {
            let name = spec_container_name(&c.config).to_string();
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
                image_id: c
                    .config
                    .annotations
                    .get(crate::image::ANNOTATION_IMAGE_ID)
                    .cloned()
                    .unwrap_or_default(),
                stop_signal: c.config.stop_signal,
                image: c.config.image,
                state: c.state,
            });
        }
        for rec in self.containers.values_mut() {
            rec.instances.sort_by_key(|i| i.restart_count);
        }
        self.exited_tx.send_modify(|s| s.extend(exited));
    }

    pub(super) fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }

    pub(super) fn object_gone(&self) -> bool {
        self.state.object_gone()
    }

    pub(super) fn event(
        &self,
        container: Option<&str>,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
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

    pub(super) fn full_name(&self) -> String {
        pod_full_name(&self.name, &self.namespace, &self.uid)
    }

    pub(super) fn wake_at(&mut self, at: Instant) {
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }

    /// Runs the worker until it finishes or the agent shuts down.
    pub async fn run(self) {
        use tracing::Instrument;
        let span = tracing::info_span!("pod", ns = %self.namespace, pod = %self.name, uid = %self.uid, node = %self.ctx.node_name);
        self.run_loop().instrument(span).await
    }

    pub(super) async fn run_loop(mut self) {
        if let Some(rec) = self.resumed.take() {
            self.resume(rec).await;
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
    pub(super) async fn resume(&mut self, rec: TerminationRecord) {
        let deleting = self.pod.metadata.deletion_timestamp.is_some();
        let deadline = rec.deadline;
        tracing::info!(deadline = ?deadline.at, "resuming termination with the persisted deadline");
        self.record = Some(Arc::new(Mutex::new(rec)));
        self.apply(Input::Resume { deadline, deleting }).await;
    }

    pub(super) async fn absorb_input(&mut self) {
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

    pub(super) async fn apply(&mut self, input: Input) {
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
                Effect::ResumeTermination => self.start_termination(false),
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

    pub(super) fn current_deadline(&self) -> Option<Deadline> {
        self.state.deadline()
    }

    pub(super) async fn apply_note(&mut self, note: RuntimeNote) {
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

    pub(super) fn record_exit(&mut self, name: &str, id: &ContainerId, status: ExitStatus) {
        let pod = self.pod_ref();
        if let Some(i) = self
            .containers
            .get_mut(name)
            .and_then(|r| r.instance_mut(id))
        {
            if !matches!(i.state, ContainerState::Exited(_)) {
                crate::api::exit_step(self.ctx.events.as_ref(), &pod, name, &status);
            }
            i.state = ContainerState::Exited(status);
        }
        self.exited_tx.send_modify(|s| {
            s.insert(id.clone());
        });
    }

    /// Writes the status if it differs from the object's and from the last write.
    pub(super) async fn write_status(&mut self) {
        if self.object_gone() || self.state.is_finished() {
            return;
        }
        let status = self.status(false);
        self.write(status).await;
        self.write_probe_annotations(false).await;
    }

    /// Patches the `probes.podvisor.io/` annotations if they differ from the object's:
    /// together with a status write, otherwise at most every [`PROBE_ANNOTATION_REFRESH`]
    /// (docs/design/0002-probe-results.md). Best effort: a failure waits for the next one.
    pub(super) async fn write_probe_annotations(&mut self, with_status: bool) {
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

    pub(super) async fn write(&mut self, status: PodStatus) -> bool {
        if self.pod.status.as_ref() == Some(&status) || self.last_written.as_ref() == Some(&status)
        {
            return true;
        }
        let was_pending = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Pending");
        match self.ctx.api.update_status(&self.pod, &status).await {
            Ok(pod) => {
                if was_pending && status.phase.as_deref() == Some("Running") {
                    // The kubelet's pod start latency: from first seeing the pod to Running.
                    let secs = self
                        .ctx
                        .clock
                        .now()
                        .duration_since(self.start_time)
                        .map_or(0.0, |d| d.as_secs_f64());
                    podvisor_kit::metrics::KUBELET_POD_START_DURATION_SECONDS.observe(&[], secs);
                }
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

    /// The pod's IP: its own, or the node's on the host's network.
    pub(super) fn pod_ip(&self) -> String {
        self.pod_ips
            .first()
            .cloned()
            .unwrap_or_else(|| self.ctx.node_ip.clone())
    }

    /// Terminated: final status, sandbox removal, object deletion (spec §1.4).
    pub(super) async fn cleanup(&mut self) {
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
        self.ctx.allocations.remove(&self.uid);
        if !object_gone {
            let terminal = why != Why::Completed;
            let status = self.status(terminal);
            if !self.write(status).await {
                self.wake_at(Instant::now() + Duration::from_millis(200));
                return;
            }
        }
        // a completed or timed-out pod keeps its sandbox (logs) until its object goes
        let remove = !matches!(why, Why::Completed | Why::DeadlineExceeded | Why::Rejected)
            || delete_object
            || object_gone;
        if remove {
            if let Err(e) = self.release_sandbox().await {
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

impl PodWorker {
    pub(super) fn views<'a>(&'a self, containers: &'a [Container]) -> Vec<ContainerView<'a>> {
        containers
            .iter()
            .map(|c| {
                let rec = self.containers.get(&c.name);
                let current = rec.and_then(|r| {
                    let running = r.current().is_some_and(|i| i.is_running());
                    r.lifecycle
                        .post_start_reported()
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
                    waiting: rec.and_then(|r| r.lifecycle.waiting()),
                    ready,
                    started,
                    allocated: self.resize.allocated(&c.name),
                    resources: current
                        .filter(|i| i.is_running())
                        .and_then(|i| self.resize.actuated(&c.name, &i.id)),
                }
            })
            .collect()
    }

    pub(super) fn status(&self, pod_is_terminal: bool) -> PodStatus {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let views = self.views(&spec.containers);
        let init_views = self.views(spec.init_containers.as_deref().unwrap_or_default());
        let ephemeral = super::spec::ephemeral_containers(&self.pod);
        let ephemeral_views = self.views(&ephemeral);
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
            ephemeral_containers: ephemeral_views,
            pod_is_terminal,
            host_ip: &self.ctx.node_ip,
            pod_ips: &self.pod_ips,
            resize_conditions: self.resize.conditions(self.pod.metadata.generation),
            all_containers_restarting: self.all_containers_restarting(&spec),
            pod_allocated: self.resize.pod_allocated(),
            pod_resources: self.resize.pod_actuated(),
            start_time: self.start_time,
            now: self.ctx.clock.now(),
            reason: if deadline_exceeded {
                Some(("DeadlineExceeded", DEADLINE_EXCEEDED_MESSAGE))
            } else if let Some((reason, message)) = &self.rejection {
                Some((reason, message.as_str()))
            } else {
                drained.then_some((
                    "Terminated",
                    "Pod was terminated in response to imminent node shutdown.",
                ))
            },
        })
    }
}
