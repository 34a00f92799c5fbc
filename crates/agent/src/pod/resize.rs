//! In-place pod resize (KEP-1287, GA in 1.35): a container's cpu and memory requests and
//! limits change through `pods/resize` while it runs, and the agent follows.
//!
//! # Three views of a container's resources
//!
//! ```text
//!   desired (spec, written through pods/resize)
//!      │  admission: fits the node? ── no, not even empty ──▶ PodResizePending / Infeasible
//!      │                             ── no, not beside the other pods ─▶ PodResizePending / Deferred
//!      ▼ yes
//!   allocated (status.containerStatuses[].allocatedResources; what the node accounts)
//!      │  actuation, per container whose resources changed:
//!      │    a changed resource whose resizePolicy is RestartContainer ─▶ the container is
//!      │        restarted (same restart count rules, new instance with the new limits)
//!      │    otherwise its cgroup limits are changed live (same process, same PID); a memory
//!      │        limit below the current usage is refused: PodResizeInProgress, reason Error
//!      ▼
//!   actuated (status.containerStatuses[].resources; what the running instance has)
//! ```
//!
//! `PodResizeInProgress` is True while an allocated change is not yet actuated,
//! `PodResizePending` while a desired change is not allocated; both disappear once the three
//! views agree. Both carry the pod's generation (`observedGeneration`).
//!
//! # Rules
//!
//! * Admission (upstream allocation manager `canResizePod`): the pod's new total requests
//!   must not exceed the node's allocatable (else Infeasible, `Node didn't have enough
//!   capacity: <resource>, requested: <n>, capacity: <n>`), and with the other pods'
//!   allocated requests must fit beside them (else Deferred, `Node didn't have enough
//!   resource: <resource>, requested: <n>, used: <n>, capacity: <n>`); cpu in millicores,
//!   memory in bytes. A deferred resize is retried at every sync.
//! * The [`Allocations`] ledger holds every pod's allocated requests on this node; a worker
//!   enters its pod at its first sync and leaves at termination.
//! * A container created (first start or restart) is created from its allocated resources,
//!   never from a desired change the node has not admitted.
//! * The allocation is the node's own: written crash-safely (temporary file, fsync, rename,
//!   fsync of the directory) to `<pods_dir>/<uid>/allocated.json` whenever it changes and read
//!   back by a restarted agent (upstream's allocation checkpoint); only a pod first seen takes
//!   its spec as its allocation. It is never read back from the pod's status.
//! * Pod-level resources (`spec.resources`, KEP-2837/5419) are one more allocation: they
//!   replace the containers' sum in the node's accounting, set the pod cgroup's limits when
//!   the sandbox is made, and a change is actuated live on the pod cgroup
//!   (`update_sandbox_resources`), before the containers when it grows, after them when its
//!   memory limit shrinks. Reported as `status.allocatedResources` and `status.resources`.
//! * A memory limit decrease below the current usage is refused before anything changes:
//!   `PodResizeInProgress` reason `Error`, message `cannot decrease memory limits: …` with
//!   the pod's (`attempting to set pod memory limit (<n>) below current usage (<n>)`, its
//!   limit being its pod-level one, else its containers' sum when all have one) and each
//!   container's refusal, bracketed when more than one; retried every 5 s.
//! * Events as upstream's kubelet: `ResizeStarted` when a change is admitted, then
//!   `ResizeCompleted` once actuated or `ResizeError` (Warning) when actuation fails, each
//!   with `Pod resize …: {"containers":[{"name":…,"resources":{…}}],"generation":n}`.
//!
//! Who calls what: `sync.rs` calls [`PodWorker::sync_resize`] once per sync, before the
//! containers' turns; `start_new` asks [`PodResize::allocated_container`] for the spec to
//! create; `status.rs` reports [`PodResize::conditions`] and the per-container views.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use podvisor_api::status as rules;
use podvisor_runtime::{ContainerId, ContainerState};

use super::worker::PodWorker;
use crate::api::EventType;

/// Condition type `PodResizePending`.
pub const POD_RESIZE_PENDING: &str = "PodResizePending";
/// Condition type `PodResizeInProgress`.
pub const POD_RESIZE_IN_PROGRESS: &str = "PodResizeInProgress";

/// Requests of cpu (millicores) and memory (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Millicores.
    pub cpu_millis: i128,
    /// Bytes.
    pub memory: i128,
}

impl Usage {
    fn plus(self, o: Usage) -> Usage {
        Usage {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory: self.memory + o.memory,
        }
    }
}

fn quantity(list: Option<&BTreeMap<String, Quantity>>, name: &str) -> Option<i128> {
    list.and_then(|l| l.get(name))
        .and_then(|q| rules::parse_quantity(&q.0).ok())
}

/// The cpu and memory requests of `r` (a missing request defaults to the limit, as the API
/// defaults it).
pub fn requests(r: Option<&ResourceRequirements>) -> Usage {
    let get = |name: &str| {
        quantity(r.and_then(|r| r.requests.as_ref()), name)
            .or_else(|| quantity(r.and_then(|r| r.limits.as_ref()), name))
            .unwrap_or(0)
    };
    Usage {
        cpu_millis: get("cpu") / 1_000_000,
        memory: get("memory") / 1_000_000_000,
    }
}

/// The node's allocatable cpu and memory (None: unknown, nothing is refused for lack of
/// room).
pub fn allocatable(list: &BTreeMap<String, Quantity>) -> Option<Usage> {
    Some(Usage {
        cpu_millis: quantity(Some(list), "cpu")? / 1_000_000,
        memory: quantity(Some(list), "memory")? / 1_000_000_000,
    })
}

/// Every pod's allocated requests on this node (for `Deferred`).
#[derive(Debug, Default)]
pub struct Allocations {
    pods: Mutex<HashMap<String, Usage>>,
}

impl Allocations {
    /// An empty ledger.
    pub fn new() -> Allocations {
        Allocations::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Usage>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records pod `uid`'s allocation.
    pub fn set(&self, uid: &str, usage: Usage) {
        self.lock().insert(uid.to_string(), usage);
    }

    /// Pod `uid` no longer holds anything.
    pub fn remove(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// What the pods other than `uid` hold.
    pub fn others(&self, uid: &str) -> Usage {
        self.lock()
            .iter()
            .filter(|(u, _)| u.as_str() != uid)
            .fold(Usage::default(), |a, (_, b)| a.plus(*b))
    }
}

/// Whether a pod whose requests become `wanted` fits the node (upstream `canResizePod`):
/// Err((reason, message)) for `Infeasible` or `Deferred`.
pub fn admit(
    wanted: Usage,
    others: Usage,
    allocatable: Option<Usage>,
) -> Result<(), (&'static str, String)> {
    let Some(cap) = allocatable else {
        return Ok(());
    };
    let checks = [
        ("cpu", wanted.cpu_millis, others.cpu_millis, cap.cpu_millis),
        ("memory", wanted.memory, others.memory, cap.memory),
    ];
    for (name, req, _, capacity) in checks {
        if req > capacity {
            return Err((
                "Infeasible",
                format!(
                    "Node didn't have enough capacity: {name}, requested: {req}, capacity: {capacity}"
                ),
            ));
        }
    }
    for (name, req, used, capacity) in checks {
        if req + used > capacity {
            return Err((
                "Deferred",
                format!(
                    "Node didn't have enough resource: {name}, requested: {req}, used: {used}, capacity: {capacity}"
                ),
            ));
        }
    }
    Ok(())
}

/// Whether going from `old` to `new` resources restarts container `c`: a changed cpu or
/// memory request or limit whose `resizePolicy` is `RestartContainer` (default
/// `NotRequired`).
pub fn restart_required(
    c: &Container,
    old: Option<&ResourceRequirements>,
    new: Option<&ResourceRequirements>,
) -> bool {
    ["cpu", "memory"].iter().any(|name| {
        let changed = ["requests", "limits"].iter().any(|which| {
            let get = |r: Option<&ResourceRequirements>| {
                quantity(
                    r.and_then(|r| match *which {
                        "requests" => r.requests.as_ref(),
                        _ => r.limits.as_ref(),
                    }),
                    name,
                )
            };
            get(old) != get(new)
        });
        changed
            && c.resize_policy
                .iter()
                .flatten()
                .any(|p| p.resource_name == *name && p.restart_policy == "RestartContainer")
    })
}

fn memory_limit(r: Option<&ResourceRequirements>) -> Option<i128> {
    quantity(r.and_then(|r| r.limits.as_ref()), "memory").map(|n| n / 1_000_000_000)
}

/// A pod's resize state (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct PodResize {
    /// Allocated resources per container name.
    allocated: BTreeMap<String, Option<ResourceRequirements>>,
    /// What each container's running instance has: its ID and resources.
    actuated: BTreeMap<String, (ContainerId, Option<ResourceRequirements>)>,
    /// `PodResizePending`: reason and message.
    pending: Option<(&'static str, String)>,
    /// `PodResizeInProgress` with reason `Error`: the message.
    error: Option<String>,
    /// An allocated change is not actuated yet.
    in_progress: bool,
    /// The pod-level allocation (`spec.resources` as admitted, KEP-5419); None until seeded.
    pod_allocated: Option<Option<ResourceRequirements>>,
    /// What the pod's cgroup has (`status.resources`); None until known.
    pod_actuated: Option<Option<ResourceRequirements>>,
    /// The generation of the resize announced with `ResizeStarted` and not yet completed.
    started: Option<i64>,
}

impl PodResize {
    /// The allocation of container `name`, if known.
    pub fn allocated(&self, name: &str) -> Option<&ResourceRequirements> {
        self.allocated.get(name).and_then(Option::as_ref)
    }

    /// What the running instance `id` of `name` has, if known.
    pub fn actuated(&self, name: &str, id: &ContainerId) -> Option<&ResourceRequirements> {
        self.actuated
            .get(name)
            .filter(|(i, _)| i == id)
            .and_then(|(_, r)| r.as_ref())
    }

    /// `c` as it is created: with its allocated resources.
    pub fn allocated_container(&self, c: &Container) -> Container {
        match self.allocated.get(&c.name) {
            Some(r) => Container {
                resources: r.clone(),
                ..c.clone()
            },
            None => c.clone(),
        }
    }

    /// Instance `id` of `name` was created with its allocated resources.
    pub fn created(&mut self, name: &str, id: &ContainerId) {
        let r = self.allocated.get(name).cloned().flatten();
        self.actuated.insert(name.to_string(), (id.clone(), r));
    }

    /// The resize conditions to report (without times; the merge sets them).
    pub fn conditions(&self, generation: Option<i64>) -> Vec<PodCondition> {
        let mut out = Vec::new();
        if let Some((reason, message)) = &self.pending {
            out.push(PodCondition {
                type_: POD_RESIZE_PENDING.into(),
                status: "True".into(),
                reason: Some(reason.to_string()),
                message: Some(message.clone()),
                observed_generation: generation,
                ..PodCondition::default()
            });
        }
        if self.in_progress || self.error.is_some() {
            out.push(PodCondition {
                type_: POD_RESIZE_IN_PROGRESS.into(),
                status: "True".into(),
                reason: self.error.as_ref().map(|_| "Error".to_string()),
                message: self.error.clone(),
                observed_generation: generation,
                ..PodCondition::default()
            });
        }
        out
    }

    /// Seeds the allocation of containers (and the pod) not yet allocated: from the node's
    /// own checkpoint (an agent restart, `checkpoint`), else the spec. Returns whether
    /// anything was seeded from the spec (the checkpoint is then written).
    fn seed(
        &mut self,
        containers: &[&Container],
        spec: &PodSpec,
        checkpoint: Option<&AllocationCheckpoint>,
    ) -> bool {
        let mut from_spec = false;
        for c in containers {
            if self.allocated.contains_key(&c.name) {
                continue;
            }
            let saved = checkpoint.and_then(|k| k.containers.get(&c.name)).cloned();
            from_spec |= saved.is_none();
            self.allocated
                .insert(c.name.clone(), saved.unwrap_or_else(|| c.resources.clone()));
        }
        if self.pod_allocated.is_none() {
            let saved = checkpoint.map(|k| k.pod.clone());
            from_spec |= saved.is_none();
            let pod = saved.unwrap_or_else(|| spec.resources.clone());
            self.pod_actuated = Some(pod.clone());
            self.pod_allocated = Some(pod);
        }
        from_spec
    }

    /// The pod's allocated pod-level resources, if it has any (KEP-2837).
    pub fn pod_allocated(&self) -> Option<&ResourceRequirements> {
        self.pod_allocated
            .as_ref()
            .and_then(Option::as_ref)
            .filter(|r| has_cpu_or_memory(r))
    }

    /// What the pod's cgroup has, if it has pod-level resources.
    pub fn pod_actuated(&self) -> Option<&ResourceRequirements> {
        self.pod_actuated
            .as_ref()
            .and_then(Option::as_ref)
            .filter(|r| has_cpu_or_memory(r))
    }

    /// The allocation as the checkpoint keeps it.
    fn checkpoint(&self) -> AllocationCheckpoint {
        AllocationCheckpoint {
            containers: self.allocated.clone(),
            pod: self.pod_allocated.clone().flatten(),
        }
    }

    /// The pod's allocated requests: its pod-level requests where it sets them (a request
    /// left out defaults to the limit), else its containers' sum.
    fn total(&self) -> Usage {
        let containers = self
            .allocated
            .values()
            .fold(Usage::default(), |a, r| a.plus(requests(r.as_ref())));
        let Some(pod) = self.pod_allocated() else {
            return containers;
        };
        let get = |name: &str| {
            quantity(pod.requests.as_ref(), name).or_else(|| quantity(pod.limits.as_ref(), name))
        };
        Usage {
            cpu_millis: get("cpu").map_or(containers.cpu_millis, |v| v / 1_000_000),
            memory: get("memory").map_or(containers.memory, |v| v / 1_000_000_000),
        }
    }
}

fn has_cpu_or_memory(r: &ResourceRequirements) -> bool {
    [r.requests.as_ref(), r.limits.as_ref()]
        .into_iter()
        .flatten()
        .any(|m| m.contains_key("cpu") || m.contains_key("memory"))
}

/// The node's own record of what it allocated to one pod (upstream's allocation manager
/// checkpoint): written whenever the allocation changes, read back by a restarted agent, so
/// that what the node admitted survives it (never read back from the pod's status).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AllocationCheckpoint {
    /// Allocated resources per container name (regular containers and sidecars).
    pub containers: BTreeMap<String, Option<ResourceRequirements>>,
    /// The pod-level allocation (`spec.resources`).
    pub pod: Option<ResourceRequirements>,
}

/// The checkpoint file of the pod whose directory is `pod_dir` (`<pods_dir>/<uid>`).
pub fn checkpoint_path(pod_dir: &std::path::Path) -> std::path::PathBuf {
    pod_dir.join("allocated.json")
}

/// Reads a checkpoint; None when absent or unreadable (a torn or foreign file is ignored,
/// never a panic).
pub fn load_checkpoint(path: &std::path::Path) -> Option<AllocationCheckpoint> {
    let data = std::fs::read(path).ok()?;
    match serde_json::from_slice(&data) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable allocation checkpoint");
            None
        }
    }
}

/// Writes a checkpoint crash-safely: a temporary file, flushed to disk, renamed over the
/// old one, and the directory flushed, so a crash leaves the old or the new file, never a
/// torn one.
pub fn save_checkpoint(path: &std::path::Path, k: &AllocationCheckpoint) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec(k).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The message of a refused memory limit decrease (upstream's kubelet: "cannot decrease
/// memory limits: " and the pod's and the containers' refusals, bracketed when more than
/// one).
pub fn memory_decrease_message(refusals: &[String]) -> String {
    let joined = match refusals {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    format!("cannot decrease memory limits: {joined}")
}

/// The JSON an event about a resize carries (upstream's `ResizeStarted`, `ResizeCompleted`,
/// `ResizeError` messages): the allocated resources of the sidecars and containers, the
/// pod's generation and, for an error, the error.
fn resize_summary(
    spec: &PodSpec,
    allocated: &BTreeMap<String, Option<ResourceRequirements>>,
    generation: Option<i64>,
    error: Option<&str>,
) -> String {
    // written field by field: Go's encoder keeps the struct's order (a quantity list's keys
    // come sorted, as Go writes a map)
    fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    let entry = |c: &Container| {
        let mut e = format!("{{\"name\":{}", json(&c.name));
        if let Some(Some(r)) = allocated.get(&c.name) {
            let parts: Vec<String> = [("limits", &r.limits), ("requests", &r.requests)]
                .into_iter()
                .filter_map(|(key, list)| {
                    let l = list.as_ref().filter(|l| !l.is_empty())?;
                    Some(format!("\"{key}\":{}", json(l)))
                })
                .collect();
            e += &format!(",\"resources\":{{{}}}", parts.join(","));
        }
        e + "}"
    };
    let mut fields = Vec::new();
    let init: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| rules::is_sidecar(c))
        .map(entry)
        .collect();
    if !init.is_empty() {
        fields.push(format!("\"initContainers\":[{}]", init.join(",")));
    }
    let containers: Vec<String> = spec.containers.iter().map(entry).collect();
    fields.push(format!("\"containers\":[{}]", containers.join(",")));
    if let Some(g) = generation.filter(|g| *g != 0) {
        fields.push(format!("\"generation\":{g}"));
    }
    if let Some(e) = error {
        fields.push(format!("\"error\":{}", json(e)));
    }
    format!("{{{}}}", fields.join(","))
}

/// The regular containers and sidecars of `spec` (the ones that run for the pod's life and
/// may be resized).
fn resizable(spec: &PodSpec) -> Vec<&Container> {
    spec.containers
        .iter()
        .chain(
            spec.init_containers
                .iter()
                .flatten()
                .filter(|c| rules::is_sidecar(c)),
        )
        .collect()
}

impl PodWorker {
    /// The allocation checkpoint of this pod (`<pods_dir>/<uid>/allocated.json`).
    fn checkpoint_path(&self) -> std::path::PathBuf {
        checkpoint_path(&self.ctx.pods_dir.join(&self.uid))
    }

    /// Writes the allocation checkpoint (best effort: a failure is logged, the next change
    /// writes it again).
    fn save_allocation(&self) {
        if let Err(e) = save_checkpoint(&self.checkpoint_path(), &self.resize.checkpoint()) {
            tracing::warn!(error = %e, "cannot write the allocation checkpoint");
        }
    }

    /// One resize step per sync (see the module documentation): admit a desired change,
    /// then actuate the allocated one on the pod's cgroup and every running container.
    pub(super) async fn sync_resize(&mut self, spec: &PodSpec) {
        let containers = resizable(spec);
        let generation = self.pod.metadata.generation;
        if self.resize.pod_allocated.is_none()
            || containers
                .iter()
                .any(|c| !self.resize.allocated.contains_key(&c.name))
        {
            let saved = load_checkpoint(&self.checkpoint_path());
            if self.resize.seed(&containers, spec, saved.as_ref()) {
                self.save_allocation();
            }
        }
        // admission
        let changed = containers
            .iter()
            .any(|c| self.resize.allocated.get(&c.name) != Some(&c.resources))
            || self.resize.pod_allocated.as_ref() != Some(&spec.resources);
        if changed {
            let mut wanted = self.resize.clone();
            for c in &containers {
                wanted.allocated.insert(c.name.clone(), c.resources.clone());
            }
            wanted.pod_allocated = Some(spec.resources.clone());
            let others = self.ctx.allocations.others(&self.uid);
            match admit(wanted.total(), others, allocatable(&self.ctx.allocatable)) {
                Ok(()) => {
                    self.resize.allocated = wanted.allocated;
                    self.resize.pod_allocated = wanted.pod_allocated;
                    self.resize.pending = None;
                    self.resize.started = generation.or(Some(0));
                    self.save_allocation();
                    self.event(
                        None,
                        EventType::Normal,
                        "ResizeStarted",
                        format!(
                            "Pod resize started: {}",
                            resize_summary(spec, &self.resize.allocated, generation, None)
                        ),
                    );
                }
                Err(why) => self.resize.pending = Some(why),
            }
        } else {
            self.resize.pending = None;
        }
        self.ctx.allocations.set(&self.uid, self.resize.total());
        // actuation: first every memory limit decrease is checked against the usage
        let mut in_progress = false;
        let mut error = None;
        let mut running = Vec::new();
        for c in &containers {
            let Some(i) = self
                .containers
                .get(&c.name)
                .and_then(|r| r.current())
                .filter(|i| matches!(i.state, ContainerState::Running { .. }))
            else {
                continue;
            };
            let id = i.id.clone();
            let allocated = self.resize.allocated.get(&c.name).cloned().flatten();
            match self.resize.actuated.get(&c.name) {
                Some((aid, r)) if *aid == id => running.push((*c, id, r.clone(), allocated)),
                // adopted: it runs with what was allocated for it
                _ => self.resize.created(&c.name, &id),
            }
        }
        let refusals = memory_decrease_refusals(
            self.ctx.runtime.clone(),
            self.resize.pod_allocated != self.resize.pod_actuated,
            self.resize.pod_allocated().cloned(),
            self.resize.pod_actuated().cloned(),
            &running,
        )
        .await;
        let memory_refused = !refusals.is_empty();
        if memory_refused {
            in_progress = true;
            error = Some(memory_decrease_message(&refusals));
        }
        // the pod's cgroup grows before its containers and shrinks after them
        let pod_shrinks = memory_limit(self.resize.pod_allocated.clone().flatten().as_ref())
            .zip(memory_limit(
                self.resize.pod_actuated.clone().flatten().as_ref(),
            ))
            .is_some_and(|(new, old)| new < old);
        if !pod_shrinks && !memory_refused {
            self.actuate_pod_level(&mut in_progress, &mut error).await;
        }
        for (c, id, actual, allocated) in running {
            if actual == allocated {
                continue;
            }
            if restart_required(c, actual.as_ref(), allocated.as_ref()) {
                in_progress = true;
                let grace = super::state::spec_grace_seconds(&self.pod);
                let killing = format!("Container {} resize requires restart", c.name);
                if let Some(rec) = self.containers.get_mut(&c.name) {
                    rec.history.spec_changed = true;
                }
                self.kill_container(c, &id, grace, killing).await;
                continue;
            }
            if memory_refused {
                continue;
            }
            let update = super::spec::runtime_resources(allocated.as_ref());
            match self
                .ctx
                .runtime
                .update_container_resources(&id, update)
                .await
            {
                Ok(()) => {
                    self.resize.actuated.insert(c.name.clone(), (id, allocated));
                }
                Err(e) => {
                    in_progress = true;
                    error = Some(e.to_string());
                }
            }
        }
        if pod_shrinks && !memory_refused {
            self.actuate_pod_level(&mut in_progress, &mut error).await;
        }
        if memory_refused && self.resize.pod_actuated != self.resize.pod_allocated {
            in_progress = true;
        }
        if error.is_some() && error != self.resize.error {
            let message =
                resize_summary(spec, &self.resize.allocated, generation, error.as_deref());
            self.event(
                None,
                EventType::Warning,
                "ResizeError",
                format!("Pod resize error: {message}"),
            );
        }
        self.resize.in_progress = in_progress;
        self.resize.error = error;
        if !in_progress
            && self.resize.error.is_none()
            && let Some(g) = self.resize.started.take()
        {
            let g = Some(g).filter(|g| *g != 0);
            self.event(
                None,
                EventType::Normal,
                "ResizeCompleted",
                format!(
                    "Pod resize completed: {}",
                    resize_summary(spec, &self.resize.allocated, g, None)
                ),
            );
        }
        if in_progress || self.resize.pending.is_some() {
            // retried at the next sync (a deferred resize, a usage that may drop)
            self.wake_at(tokio::time::Instant::now() + std::time::Duration::from_secs(5));
        }
    }
}

/// The refusals of memory limit decreases below the current usage (upstream's kubelet before
/// it resizes): the pod's limit (its pod-level limit, else its containers' sum when every
/// container has one) against the pod's usage, then each container's.
async fn memory_decrease_refusals(
    runtime: std::sync::Arc<dyn podvisor_runtime::ContainerRuntime>,
    pod_changes: bool,
    pod_new: Option<ResourceRequirements>,
    pod_old: Option<ResourceRequirements>,
    running: &[(
        &Container,
        ContainerId,
        Option<ResourceRequirements>,
        Option<ResourceRequirements>,
    )],
) -> Vec<String> {
    let mut usage = BTreeMap::new();
    for (c, id, actual, allocated) in running {
        let shrinks = memory_limit(allocated.as_ref())
            .is_some_and(|new| memory_limit(actual.as_ref()).is_none_or(|old| new < old));
        if (shrinks || pod_changes)
            && let Ok(stats) = runtime.container_stats(id).await
        {
            usage.insert(c.name.clone(), i128::from(stats.memory_working_set_bytes));
        }
    }
    if usage.is_empty() {
        return Vec::new();
    }
    let pod_usage: i128 = usage.values().sum();
    let mut out = Vec::new();
    let (new_pod, old_pod) = match (pod_new.as_ref(), pod_old.as_ref()) {
        (Some(new), old) => (memory_limit(Some(new)), memory_limit(old)),
        _ => (
            running
                .iter()
                .map(|r| memory_limit(r.3.as_ref()))
                .sum::<Option<i128>>(),
            running
                .iter()
                .map(|r| memory_limit(r.2.as_ref()))
                .sum::<Option<i128>>(),
        ),
    };
    if let Some(limit) = new_pod
        && old_pod.is_none_or(|old| limit < old)
        && pod_usage > limit
    {
        out.push(format!(
            "attempting to set pod memory limit ({limit}) below current usage ({pod_usage})"
        ));
    }
    for (c, _, actual, allocated) in running {
        if let (Some(limit), Some(used)) = (memory_limit(allocated.as_ref()), usage.get(&c.name))
            && memory_limit(actual.as_ref()).is_none_or(|old| limit < old)
            && *used > limit
        {
            out.push(format!(
                    "attempting to set container {:?} memory limit ({limit}) below current usage ({used})",
                    c.name
                ));
        }
    }
    out
}

impl PodWorker {
    /// Changes the pod's cgroup to its allocated pod-level resources, if they differ from
    /// what it has (pod-level in-place resize, KEP-5419).
    async fn actuate_pod_level(&mut self, in_progress: &mut bool, error: &mut Option<String>) {
        if self.resize.pod_actuated == self.resize.pod_allocated || !self.sandbox_ready {
            return;
        }
        let allocated = self.resize.pod_allocated.clone().flatten();
        let update = super::spec::runtime_resources(allocated.as_ref());
        match self
            .ctx
            .runtime
            .update_sandbox_resources(&self.uid, update)
            .await
        {
            Ok(()) => self.resize.pod_actuated = Some(allocated),
            Err(e) => {
                *in_progress = true;
                *error = Some(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(cpu: &str, mem: &str) -> ResourceRequirements {
        let list: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(mem.into())),
        ]
        .into();
        ResourceRequirements {
            requests: Some(list.clone()),
            limits: Some(list),
            ..Default::default()
        }
    }

    #[test]
    fn requests_are_millicores_and_bytes() {
        assert_eq!(
            requests(Some(&rr("500m", "128Mi"))),
            Usage {
                cpu_millis: 500,
                memory: 128 << 20
            }
        );
        assert_eq!(requests(None), Usage::default());
    }

    #[test]
    fn a_resize_beyond_the_node_is_infeasible_and_beside_others_deferred() {
        let cap = Some(Usage {
            cpu_millis: 2000,
            memory: 4 << 30,
        });
        let want = |cpu| Usage {
            cpu_millis: cpu,
            memory: 1 << 20,
        };
        assert_eq!(admit(want(1000), Usage::default(), cap), Ok(()));
        assert_eq!(
            admit(want(3000), Usage::default(), cap),
            Err((
                "Infeasible",
                "Node didn't have enough capacity: cpu, requested: 3000, capacity: 2000".into()
            ))
        );
        assert_eq!(
            admit(want(1500), want(1000), cap),
            Err((
                "Deferred",
                "Node didn't have enough resource: cpu, requested: 1500, used: 1000, capacity: 2000"
                    .into()
            ))
        );
        assert_eq!(admit(want(1_000_000), want(1), None), Ok(()));
    }

    #[test]
    fn only_a_changed_resource_with_restart_container_restarts() {
        let mut c = Container {
            name: "app".into(),
            ..Default::default()
        };
        c.resize_policy = Some(vec![k8s_openapi::api::core::v1::ContainerResizePolicy {
            resource_name: "memory".into(),
            restart_policy: "RestartContainer".into(),
        }]);
        let old = rr("500m", "128Mi");
        assert!(!restart_required(
            &c,
            Some(&old),
            Some(&rr("800m", "128Mi"))
        ));
        assert!(restart_required(&c, Some(&old), Some(&rr("500m", "256Mi"))));
        c.resize_policy = None;
        assert!(!restart_required(
            &c,
            Some(&old),
            Some(&rr("500m", "256Mi"))
        ));
    }

    #[test]
    fn the_ledger_counts_the_other_pods() {
        let a = Allocations::new();
        a.set(
            "p1",
            Usage {
                cpu_millis: 100,
                memory: 1,
            },
        );
        a.set(
            "p2",
            Usage {
                cpu_millis: 200,
                memory: 2,
            },
        );
        assert_eq!(
            a.others("p1"),
            Usage {
                cpu_millis: 200,
                memory: 2
            }
        );
        a.remove("p2");
        assert_eq!(a.others("p1"), Usage::default());
    }
}
