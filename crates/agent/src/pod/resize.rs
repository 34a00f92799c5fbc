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
//! * After an agent restart, the allocation is what the status last reported
//!   (`resources`), else the spec.
//!
//! Who calls what: `sync.rs` calls [`PodWorker::sync_resize`] once per sync, before the
//! containers' turns; `start_new` asks [`PodResize::allocated_container`] for the spec to
//! create; `status.rs` reports [`PodResize::conditions`] and the per-container views.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{
    Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use podvisor_api::status as rules;
use podvisor_runtime::{ContainerId, ContainerState};

use super::worker::PodWorker;

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

    /// Seeds the allocation of containers not yet allocated: from the last reported
    /// `resources` (an agent restart), else the spec.
    fn seed(&mut self, containers: &[&Container], status: Option<&PodStatus>) {
        for c in containers {
            if self.allocated.contains_key(&c.name) {
                continue;
            }
            let reported = status
                .into_iter()
                .flat_map(rules::container_statuses)
                .find(|s| s.name == c.name)
                .and_then(|s| s.resources.clone());
            self.allocated
                .insert(c.name.clone(), reported.or_else(|| c.resources.clone()));
        }
    }

    fn total(&self) -> Usage {
        self.allocated
            .values()
            .fold(Usage::default(), |a, r| a.plus(requests(r.as_ref())))
    }
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
    /// One resize step per sync (see the module documentation): admit a desired change,
    /// then actuate the allocated one on every running container.
    pub(super) async fn sync_resize(&mut self, spec: &PodSpec) {
        let containers = resizable(spec);
        let status = self.pod.status.clone();
        self.resize.seed(&containers, status.as_ref());
        // admission
        let changed = containers
            .iter()
            .any(|c| self.resize.allocated.get(&c.name) != Some(&c.resources));
        if changed {
            let mut wanted = self.resize.clone();
            for c in &containers {
                wanted.allocated.insert(c.name.clone(), c.resources.clone());
            }
            let others = self.ctx.allocations.others(&self.uid);
            match admit(wanted.total(), others, allocatable(&self.ctx.allocatable)) {
                Ok(()) => {
                    self.resize.allocated = wanted.allocated;
                    self.resize.pending = None;
                }
                Err(why) => self.resize.pending = Some(why),
            }
        } else {
            self.resize.pending = None;
        }
        self.ctx.allocations.set(&self.uid, self.resize.total());
        // actuation
        let mut in_progress = false;
        let mut error = None;
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
            let actual = match self.resize.actuated.get(&c.name) {
                Some((aid, r)) if *aid == id => r.clone(),
                // adopted: it runs with what was allocated for it
                _ => {
                    self.resize.created(&c.name, &id);
                    continue;
                }
            };
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
            if let Some(limit) = memory_limit(allocated.as_ref())
                && memory_limit(actual.as_ref()).is_none_or(|old| limit < old)
                && let Ok(stats) = self.ctx.runtime.container_stats(&id).await
                && i128::from(stats.memory_working_set_bytes) > limit
            {
                in_progress = true;
                error = Some(format!(
                    "attempting to set container {:?} memory limit ({limit}) below current usage ({})",
                    c.name, stats.memory_working_set_bytes
                ));
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
        self.resize.in_progress = in_progress;
        self.resize.error = error;
        if in_progress || self.resize.pending.is_some() {
            // retried at the next sync (a deferred resize, a usage that may drop)
            self.wake_at(tokio::time::Instant::now() + std::time::Duration::from_secs(5));
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
