//! The node lifecycle controller, spec §5.2; upstream `pkg/controller/nodelifecycle`.
//!
//! # Health
//!
//! Every `monitor_period` (5 s) each Node is checked. Its *probe timestamp* (our own
//! monotonic clock) moves to "now" whenever the Ready condition's `lastHeartbeatTime`
//! changes or the node's Lease in `kube-node-lease` shows a later `renewTime`: either
//! signal means the agent is alive. When `now > probe + grace` (`monitor_grace_period`,
//! 50 s; `startup_grace_period`, 60 s, for a node that never posted Ready, counted from its
//! creation) the conditions `Ready`, `MemoryPressure`, `DiskPressure` and `PIDPressure`
//! become `Unknown` / `NodeStatusUnknown` / `Kubelet stopped posting node status.` (absent
//! ones are added as `NodeStatusNeverUpdated`), written with a status update fenced by the
//! resourceVersion. `lastHeartbeatTime` is kept, so the write itself is not a heartbeat.
//!
//! ```text
//!  heartbeat/lease ──▶ Ready=True ──(no heartbeat for grace)──▶ Ready=Unknown ──▶ pods Ready=False
//!        ▲                                                          │
//!        └──────────── agent posts Ready=True again ◀───────────────┘
//! ```
//!
//! # Pods
//!
//! While a node's Ready is not `True`, every pod on it whose `Ready` condition is `True`
//! gets `Ready=False` (status update; phase and container statuses untouched).
//!
//! # Taints
//!
//! * NoSchedule (TaintNodesByCondition), every pass: `not-ready` for Ready=False,
//!   `unreachable` for Unknown, `memory-pressure`/`disk-pressure`/`pid-pressure`/
//!   `network-unavailable` for those conditions True, `unschedulable` for
//!   `spec.unschedulable`; others of these keys are removed.
//! * NoExecute (taint-based eviction): Ready=False queues the node for
//!   `node.kubernetes.io/not-ready:NoExecute`, Unknown for `unreachable:NoExecute` (if the
//!   other one is present they are swapped at once); Ready=True removes both and unqueues.
//!   The queue is per zone and rate limited (token bucket, `eviction_rate` nodes/s, burst 1),
//!   worked every `tainting_period`.
//!
//! # Fencing (docs/design/0007-node-fencing.md)
//!
//! Every node Lease carries the grace period (`node.podvisor.io/node-monitor-grace-period`).
//! A node silent for the grace period whose Lease is still held is declared dead: the
//! Lease's `leaseTransitions` (the node's epoch) is bumped and `holderIdentity` cleared,
//! with a `NodeFenced` Warning event; the API server then refuses the node's writes of the
//! old epoch.
//!
//! # Zones and master disruption mode
//!
//! A zone (`topology.kubernetes.io/region` + `zone` labels) is `FullDisruption` when none
//! of its nodes is Ready, `PartialDisruption` when more than 2 and at least
//! `unhealthy_zone_threshold` of them are not Ready, else `Normal`. Normal and full zones
//! taint at `eviction_rate`; partial ones at `secondary_eviction_rate` if the zone has more
//! than `large_cluster_threshold` nodes, else not at all. When **every** zone is fully
//! disrupted the controller enters *master disruption mode*: it removes the NoExecute
//! taints from all nodes and stops tainting (a cluster whose nodes all went silent is more
//! likely cut off from the control plane than dead). Leaving the mode gives every node a
//! fresh grace period.
//!
//! Health, zone states and the tainting queues live in this one task, so a monitor pass and
//! a tainting pass never interleave.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use podvisor_api::defaults::{TAINT_NOT_READY, TAINT_UNREACHABLE};
use podvisor_api::fencing::{ANN_NODE_MONITOR_GRACE_PERIOD, format_duration, lease_epoch};
use podvisor_api::taints::{
    EFFECT_NO_EXECUTE, EFFECT_NO_SCHEDULE, TAINT_UNSCHEDULABLE, same_taint,
};
use podvisor_kit::events::{EventRecord, EventType, object_ref};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::context::{ControllerError, Ctx, replace};
use crate::pods;

/// The component named in events.
const COMPONENT: &str = "node-controller";

/// The namespace of node leases.
pub(crate) const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Reason of conditions set `Unknown` after the grace period.
pub const REASON_NODE_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
/// Its message.
pub const MESSAGE_NODE_STATUS_UNKNOWN: &str = "Kubelet stopped posting node status.";
/// Reason of conditions the agent never posted.
pub const REASON_NODE_STATUS_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
/// Its message.
pub const MESSAGE_NODE_STATUS_NEVER_UPDATED: &str = "Kubelet never posted node status.";

/// The conditions that become Unknown when the node goes silent (`NetworkUnavailable` is
/// the control plane's and is left alone).
const SILENT_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Conditions (type, status) that map to a NoSchedule taint key.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
];

const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const REGION_LABEL: &str = "topology.kubernetes.io/region";

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: None,
    }
}

/// The zone a node belongs to (upstream `GetZoneKey`): empty without topology labels.
pub(crate) fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    let (region, zone) = (get(REGION_LABEL), get(ZONE_LABEL));
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

fn condition<'a>(node: &'a Node, ty: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

fn has_taint(node: &Node, t: &Taint) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
        .iter()
        .any(|x| same_taint(x, t))
}

/// Disruption state of a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZoneState {
    /// Not evaluated yet.
    Initial,
    /// Some nodes ready, few not.
    Normal,
    /// More than 2 and at least the threshold share not ready.
    PartialDisruption,
    /// No node ready.
    FullDisruption,
}

/// Upstream `ComputeZoneState` over the Ready-ness of a zone's nodes.
pub(crate) fn zone_state(ready: &[bool], unhealthy_threshold: f64) -> ZoneState {
    let ready_n = ready.iter().filter(|r| **r).count();
    let not_ready = ready.len() - ready_n;
    if ready_n == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && (not_ready as f64) / (ready.len() as f64) >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// A token bucket with burst 1 (upstream `NewTokenBucketRateLimiter(qps, 1)`); qps 0 never
/// accepts.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    qps: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(qps: f64, now: Instant) -> Self {
        Self {
            qps,
            tokens: 1.0,
            last: now,
        }
    }

    pub(crate) fn try_accept(&mut self, now: Instant) -> bool {
        if self.qps <= 0.0 || !self.qps.is_finite() {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A zone's rate-limited queue of nodes to NoExecute-taint (upstream
/// `RateLimitedTimedQueue`): a set of node names with the time each is due.
struct Zone {
    state: ZoneState,
    limiter: TokenBucket,
    queue: HashMap<String, Instant>,
}

impl Zone {
    fn next_due(&self, now: Instant) -> Option<String> {
        self.queue
            .iter()
            .filter(|(_, at)| **at <= now)
            .min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))
            .map(|(n, _)| n.clone())
    }
}

/// What the controller remembers of a node between passes.
#[derive(Debug, Clone)]
struct NodeHealth {
    probe: Instant,
    ready_transition: Instant,
    /// The Ready condition as last seen (or written by us).
    ready: Option<NodeCondition>,
    /// The lease's last seen `renewTime`.
    lease_renew: Option<MicroTime>,
}

/// The controller's state; owned by [`run`]'s task.
struct NodeLifecycle {
    health: HashMap<String, NodeHealth>,
    zones: BTreeMap<String, Zone>,
}

/// Runs the controller until `shutdown`.
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let cfg = ctx.config.node_lifecycle.clone();
    let mut nlc = NodeLifecycle {
        health: HashMap::new(),
        zones: BTreeMap::new(),
    };
    let mut monitor = tokio::time::interval(cfg.monitor_period.max(Duration::from_millis(10)));
    monitor.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tainting = tokio::time::interval(cfg.tainting_period.max(Duration::from_millis(10)));
    tainting.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = monitor.tick() => nlc.monitor(&ctx).await,
            _ = tainting.tick() => nlc.taint_pass(&ctx).await,
        }
    }
}

impl NodeLifecycle {
    /// One `monitorNodeHealth` pass.
    async fn monitor(&mut self, ctx: &Ctx) {
        let cfg = &ctx.config.node_lifecycle;
        let nodes = ctx.nodes.state();
        let names: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        self.health.retain(|n, _| names.contains(n));
        for z in self.zones.values_mut() {
            z.queue.retain(|n, _| names.contains(n));
        }
        let mut zone_ready: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        let mut latest = Vec::with_capacity(nodes.len());
        for node in nodes {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let zone = zone_key(&node);
            self.zones.entry(zone.clone()).or_insert_with(|| Zone {
                state: ZoneState::Initial,
                limiter: TokenBucket::new(cfg.eviction_rate, Instant::now()),
                queue: HashMap::new(),
            });
            let (node, observed, current) = match self.update_health(ctx, &node).await {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => {
                    warn!(node = %name, error = %e, "updating node health failed");
                    continue;
                }
            };
            zone_ready
                .entry(zone.clone())
                .or_default()
                .push(current.as_ref().is_some_and(|c| c.status == "True"));
            if let Err(e) = self.sync_lease(ctx, &node, current.as_ref()).await {
                warn!(node = %name, error = %e, "updating the node's lease failed");
            }
            if let Some(current) = &current {
                if let Err(e) = self
                    .process_taint_based_eviction(ctx, &node, &zone, &current.status)
                    .await
                {
                    warn!(node = %name, error = %e, "updating NoExecute taints failed");
                }
                if current.status != "True" {
                    if observed == "True" {
                        info!(node = %name, status = %current.status, "NodeNotReady");
                        ctx.record_event(
                            COMPONENT,
                            EventRecord::new(
                                object_ref(&node),
                                EventType::Normal,
                                "NodeNotReady",
                                format!("Node {name} status is now: NodeNotReady"),
                            ),
                        );
                    }
                    mark_pods_not_ready(ctx, &name).await;
                }
            }
            if let Err(e) = sync_no_schedule_taints(ctx, &node).await {
                warn!(node = %name, error = %e, "updating NoSchedule taints failed");
            }
            latest.push(node);
        }
        self.handle_disruption(ctx, &zone_ready, &latest).await;
    }

    /// `tryUpdateNodeHealth` with upstream's retries: on a write conflict the node is read
    /// again and the health re-evaluated. Returns the node as now stored, the Ready status
    /// observed before this pass and the current Ready condition; `None` if the node is gone.
    async fn update_health(
        &mut self,
        ctx: &Ctx,
        node: &Node,
    ) -> Result<Option<(Node, String, Option<NodeCondition>)>, ControllerError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut node = node.clone();
        let mut attempt = 0;
        loop {
            match self.try_update_health(ctx, &mut node).await {
                Ok((observed, current)) => return Ok(Some((node, observed, current))),
                Err(e) if e.is_conflict() && attempt < 4 => {
                    attempt += 1;
                    match ctx
                        .nodes_api()
                        .get_opt(&name)
                        .await
                        .map_err(ControllerError::api("get", "Node", "", &name))?
                    {
                        Some(n) => node = n,
                        None => return Ok(None),
                    }
                }
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_update_health(
        &mut self,
        ctx: &Ctx,
        node: &mut Node,
    ) -> Result<(String, Option<NodeCondition>), ControllerError> {
        let cfg = &ctx.config.node_lifecycle;
        let name = node.metadata.name.clone().unwrap_or_default();
        let now = Instant::now();
        let wall = ctx.now();
        let current = condition(node, "Ready").cloned();
        let (observed, grace) = match &current {
            Some(c) => (c.status.clone(), cfg.monitor_grace_period),
            None => ("Unknown".to_string(), cfg.startup_grace_period),
        };
        let fresh = |ready: Option<NodeCondition>, lease: Option<MicroTime>| NodeHealth {
            probe: now,
            ready_transition: now,
            ready,
            lease_renew: lease,
        };
        let mut health = match (self.health.get(&name), &current) {
            (None, None) => {
                // Never posted: the grace counts from the node's creation.
                let age = node
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .and_then(|t| Duration::try_from(wall.duration_since(t.0)).ok())
                    .unwrap_or_default();
                let since = now.checked_sub(age).unwrap_or(now);
                NodeHealth {
                    probe: since,
                    ready_transition: since,
                    ready: None,
                    lease_renew: None,
                }
            }
            (None, Some(_)) => fresh(current.clone(), None),
            (Some(h), None) if h.ready.is_some() => fresh(None, h.lease_renew.clone()),
            (Some(h), None) => h.clone(),
            (Some(h), Some(c)) => match &h.ready {
                None => fresh(current.clone(), h.lease_renew.clone()),
                Some(saved) if saved.last_heartbeat_time != c.last_heartbeat_time => NodeHealth {
                    probe: now,
                    ready_transition: if saved.last_transition_time != c.last_transition_time {
                        now
                    } else {
                        h.ready_transition
                    },
                    ready: current.clone(),
                    lease_renew: h.lease_renew.clone(),
                },
                Some(_) => h.clone(),
            },
        };
        // A renewed lease alone is enough to count as alive.
        let renew = ctx
            .leases
            .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
            .and_then(|l| l.spec.as_ref().and_then(|s| s.renew_time.clone()));
        if let Some(renew) = renew
            && health
                .lease_renew
                .as_ref()
                .is_none_or(|old| old.0 < renew.0)
        {
            health.lease_renew = Some(renew);
            health.probe = now;
        }
        let mut current = current;
        if now > health.probe + grace {
            let observed_ready = current.clone();
            let stamp = Some(Time(wall));
            let created = node.metadata.creation_timestamp.clone();
            let conditions = node
                .status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new);
            for ty in SILENT_CONDITIONS {
                match conditions.iter_mut().find(|c| c.type_ == ty) {
                    None => conditions.push(NodeCondition {
                        type_: ty.into(),
                        status: "Unknown".into(),
                        reason: Some(REASON_NODE_STATUS_NEVER_UPDATED.into()),
                        message: Some(MESSAGE_NODE_STATUS_NEVER_UPDATED.into()),
                        last_heartbeat_time: created.clone(),
                        last_transition_time: stamp.clone(),
                    }),
                    Some(c) if c.status != "Unknown" => {
                        c.status = "Unknown".into();
                        c.reason = Some(REASON_NODE_STATUS_UNKNOWN.into());
                        c.message = Some(MESSAGE_NODE_STATUS_UNKNOWN.into());
                        c.last_transition_time = stamp.clone();
                    }
                    Some(_) => {}
                }
            }
            current = condition(node, "Ready").cloned();
            if current != observed_ready {
                info!(node = %name, silent_for = ?now - health.probe,
                    "node stopped posting status: conditions set to Unknown");
                let written = ctx
                    .nodes_api()
                    .replace_status(&name, &PostParams::default(), node)
                    .await
                    .map_err(ControllerError::api("update status", "Node", "", &name))?;
                *node = written;
                health.ready = condition(node, "Ready").cloned();
                health.ready_transition = now;
            }
        }
        self.health.insert(name, health);
        Ok((observed, current))
    }

    /// Node fencing (docs/design/0007-node-fencing.md): publishes the grace period on the
    /// node's Lease ([`ANN_NODE_MONITOR_GRACE_PERIOD`], read by the agent to bound its
    /// `--fence-after`), and declares a node that went silent for the grace period dead:
    /// its Lease's epoch (`leaseTransitions`) is bumped and `holderIdentity` cleared, in one
    /// update fenced by the resourceVersion (a renewal landing first wins). From then on the
    /// API server refuses every write of the node's old epoch; the node, which killed its
    /// pods at `--fence-after`, takes its lease again under the new epoch when it is back.
    async fn sync_lease(
        &self,
        ctx: &Ctx,
        node: &Node,
        ready: Option<&NodeCondition>,
    ) -> Result<(), ControllerError> {
        let cfg = &ctx.config.node_lifecycle;
        let name = node.metadata.name.clone().unwrap_or_default();
        let Some(lease) = ctx
            .leases
            .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
        else {
            return Ok(());
        };
        let grace = format_duration(cfg.monitor_grace_period);
        let silent = ready.is_some_and(|c| c.status == "Unknown")
            && self
                .health
                .get(&name)
                .is_some_and(|h| Instant::now() > h.probe + cfg.monitor_grace_period);
        let spec = lease.spec.clone().unwrap_or_default();
        let held = spec
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty());
        let api: kube::Api<Lease> = kube::Api::namespaced(ctx.client.clone(), LEASE_NAMESPACE);
        let annotated = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_NODE_MONITOR_GRACE_PERIOD))
            == Some(&grace);
        if silent && held {
            let epoch = lease_epoch(&lease);
            let mut fenced = (*lease).clone();
            fenced
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(ANN_NODE_MONITOR_GRACE_PERIOD.into(), grace.clone());
            let spec = fenced.spec.get_or_insert_with(Default::default);
            spec.holder_identity = None;
            spec.lease_transitions = Some(i32::try_from(epoch + 1).unwrap_or(i32::MAX));
            replace(&api, "Lease", LEASE_NAMESPACE, &name, &fenced).await?;
            info!(node = %name, epoch = epoch + 1, "node declared dead: lease epoch bumped");
            ctx.record_event(
                COMPONENT,
                EventRecord::new(
                    object_ref(node),
                    EventType::Warning,
                    "NodeFenced",
                    format!(
                        "Node {name} did not renew its lease for {grace}: declared dead, lease \
                         epoch {epoch} -> {}; writes of the old epoch are refused",
                        epoch + 1
                    ),
                ),
            );
        } else if !annotated {
            let patch = serde_json::json!({ "metadata": { "annotations": {
                ANN_NODE_MONITOR_GRACE_PERIOD: grace,
            }}});
            api.patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(ControllerError::api(
                "patch",
                "Lease",
                LEASE_NAMESPACE,
                &name,
            ))?;
        }
        Ok(())
    }

    /// `processTaintBaseEviction`.
    async fn process_taint_based_eviction(
        &mut self,
        ctx: &Ctx,
        node: &Node,
        zone: &str,
        ready: &str,
    ) -> Result<(), ControllerError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let not_ready = taint(TAINT_NOT_READY, EFFECT_NO_EXECUTE);
        let unreachable = taint(TAINT_UNREACHABLE, EFFECT_NO_EXECUTE);
        let (want, opposite) = match ready {
            "False" => (not_ready, unreachable),
            "Unknown" => (unreachable, not_ready),
            _ => {
                if let Some(z) = self.zones.get_mut(zone) {
                    z.queue.remove(&name);
                }
                return mark_node_as_reachable(ctx, node).await;
            }
        };
        if has_taint(node, &opposite) {
            // Swap at once: the two taints mirror the Ready condition.
            update_taints(ctx, &name, &[want], &[opposite]).await
        } else {
            if let Some(z) = self.zones.get_mut(zone)
                && !has_taint(node, &want)
                && !z.queue.contains_key(&name)
            {
                info!(node = %name, taint = %want.key, "node queued for NoExecute tainting");
                z.queue.insert(name, Instant::now());
            }
            Ok(())
        }
    }

    /// `handleDisruption`: zone states, rate limits, master disruption mode.
    async fn handle_disruption(
        &mut self,
        ctx: &Ctx,
        zone_ready: &BTreeMap<String, Vec<bool>>,
        nodes: &[Node],
    ) {
        let cfg = &ctx.config.node_lifecycle;
        let new_states: BTreeMap<&String, ZoneState> = zone_ready
            .iter()
            .map(|(z, r)| (z, zone_state(r, cfg.unhealthy_zone_threshold)))
            .collect();
        let all_are_full = new_states.values().all(|s| *s == ZoneState::FullDisruption);
        self.zones.retain(|z, _| zone_ready.contains_key(z));
        let all_was_full = self
            .zones
            .values()
            .all(|z| z.state == ZoneState::FullDisruption);
        if all_are_full && all_was_full {
            return;
        }
        let now = Instant::now();
        if all_are_full {
            info!("all nodes are not ready: entering master disruption mode, no evictions");
            for node in nodes {
                if let Err(e) = mark_node_as_reachable(ctx, node).await {
                    warn!(node = ?node.metadata.name, error = %e, "removing NoExecute taints failed");
                }
            }
            for z in self.zones.values_mut() {
                z.limiter = TokenBucket::new(0.0, now);
                z.state = ZoneState::FullDisruption;
            }
            return;
        }
        if all_was_full {
            info!("some nodes are ready: leaving master disruption mode");
            for h in self.health.values_mut() {
                h.probe = now;
                h.ready_transition = now;
            }
        }
        for (name, z) in self.zones.iter_mut() {
            let Some(&new) = new_states.get(name) else {
                continue;
            };
            if z.state == new && !all_was_full {
                continue;
            }
            let size = zone_ready.get(name).map_or(0, Vec::len);
            let qps = match new {
                ZoneState::Normal | ZoneState::FullDisruption => cfg.eviction_rate,
                ZoneState::PartialDisruption if size > cfg.large_cluster_threshold => {
                    cfg.secondary_eviction_rate
                }
                ZoneState::PartialDisruption => 0.0,
                ZoneState::Initial => z.limiter.qps,
            };
            if z.limiter.qps != qps {
                z.limiter = TokenBucket::new(qps, now);
            }
            if z.state != new {
                info!(zone = %name, from = ?z.state, to = ?new, "zone state changed");
            }
            z.state = new;
        }
    }

    /// `doNoExecuteTaintingPass`: taints due nodes as the zone's rate allows.
    async fn taint_pass(&mut self, ctx: &Ctx) {
        let now = Instant::now();
        for z in self.zones.values_mut() {
            while let Some(name) = z.next_due(now) {
                if !z.limiter.try_accept(now) {
                    break;
                }
                let ready = ctx
                    .nodes
                    .get(&ObjectRef::new(&name))
                    .and_then(|n| condition(&n, "Ready").map(|c| c.status.clone()));
                let (add, remove) = match ready.as_deref() {
                    Some("False") => (TAINT_NOT_READY, TAINT_UNREACHABLE),
                    Some("Unknown") => (TAINT_UNREACHABLE, TAINT_NOT_READY),
                    // Gone, or healthy again meanwhile.
                    _ => {
                        z.queue.remove(&name);
                        continue;
                    }
                };
                info!(node = %name, taint = add, "adding NoExecute taint");
                match update_taints(
                    ctx,
                    &name,
                    &[taint(add, EFFECT_NO_EXECUTE)],
                    &[taint(remove, EFFECT_NO_EXECUTE)],
                )
                .await
                {
                    Ok(()) => {
                        z.queue.remove(&name);
                    }
                    Err(e) => {
                        warn!(node = %name, error = %e, "NoExecute tainting failed; retrying");
                        z.queue.insert(name, now + Duration::from_millis(50));
                    }
                }
            }
        }
    }
}

/// Removes both NoExecute taints (`markNodeAsReachable`).
async fn mark_node_as_reachable(ctx: &Ctx, node: &Node) -> Result<(), ControllerError> {
    let remove = [
        taint(TAINT_NOT_READY, EFFECT_NO_EXECUTE),
        taint(TAINT_UNREACHABLE, EFFECT_NO_EXECUTE),
    ];
    if !remove.iter().any(|t| has_taint(node, t)) {
        return Ok(());
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    info!(node = %name, "removing NoExecute taints");
    update_taints(ctx, &name, &[], &remove).await
}

/// The NoSchedule taints TaintNodesByCondition wants on `node`.
pub(crate) fn desired_no_schedule_taints(node: &Node) -> Vec<Taint> {
    let mut want = Vec::new();
    for c in node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
    {
        for (ty, status, key) in CONDITION_TAINTS {
            if c.type_ == ty && c.status == status {
                want.push(taint(key, EFFECT_NO_SCHEDULE));
            }
        }
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        want.push(taint(TAINT_UNSCHEDULABLE, EFFECT_NO_SCHEDULE));
    }
    want
}

async fn sync_no_schedule_taints(ctx: &Ctx, node: &Node) -> Result<(), ControllerError> {
    let want = desired_no_schedule_taints(node);
    let managed = |t: &Taint| {
        t.effect == EFFECT_NO_SCHEDULE
            && (t.key == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|c| c.2 == t.key))
    };
    let have: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
        .iter()
        .filter(|t| managed(t))
        .cloned()
        .collect();
    let add: Vec<Taint> = want
        .iter()
        .filter(|w| !have.iter().any(|h| same_taint(h, w)))
        .cloned()
        .collect();
    let remove: Vec<Taint> = have
        .iter()
        .filter(|h| !want.iter().any(|w| same_taint(h, w)))
        .cloned()
        .collect();
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    update_taints(ctx, &name, &add, &remove).await
}

/// Adds `add` (with `timeAdded` = now) and removes `remove` (by key and effect) on node
/// `name` (upstream `SwapNodeControllerTaint`): an update fenced by the resourceVersion,
/// first on the cached node, then re-read on conflict (5 attempts).
pub(crate) async fn update_taints(
    ctx: &Ctx,
    name: &str,
    add: &[Taint],
    remove: &[Taint],
) -> Result<(), ControllerError> {
    let api = ctx.nodes_api();
    let mut cached = ctx.nodes.get(&ObjectRef::new(name)).map(|n| (*n).clone());
    let mut last = None;
    for _ in 0..5 {
        let mut node = match cached.take() {
            Some(n) => n,
            None => match api
                .get_opt(name)
                .await
                .map_err(ControllerError::api("get", "Node", "", name))?
            {
                Some(n) => n,
                None => return Ok(()),
            },
        };
        let old = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let mut new: Vec<Taint> = old
            .iter()
            .filter(|t| !remove.iter().any(|r| same_taint(r, t)))
            .cloned()
            .collect();
        for a in add {
            if !new.iter().any(|t| same_taint(t, a)) {
                new.push(Taint {
                    time_added: Some(Time(ctx.now())),
                    ..a.clone()
                });
            }
        }
        if new == old {
            return Ok(());
        }
        node.spec.get_or_insert_with(Default::default).taints = (!new.is_empty()).then_some(new);
        match api.replace(name, &PostParams::default(), &node).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => {
                let err = ControllerError::api("update taints", "Node", "", name)(e);
                if !err.is_conflict() {
                    return Err(err);
                }
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or(ControllerError::CacheNotReady("node")))
}

/// Sets `Ready=False` on every pod of `node` whose Ready is True (`MarkPodsNotReady`).
async fn mark_pods_not_ready(ctx: &Ctx, node: &str) {
    for pod in ctx.pods_on_node(node) {
        if !pods::is_ready(&pod) {
            continue;
        }
        let Some(ready) = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .cloned()
        else {
            continue;
        };
        let mut p = (*pod).clone();
        pods::update_condition(
            &mut p,
            PodCondition {
                status: "False".into(),
                ..ready
            },
            Time(ctx.now()),
        );
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        info!(pod = %format!("{ns}/{name}"), %node, "marking pod not ready: node not ready");
        match ctx
            .pods_api(&ns)
            .replace_status(&name, &PostParams::default(), &p)
            .await
        {
            Ok(_) => ctx.record_event(
                COMPONENT,
                EventRecord::new(
                    object_ref(&p),
                    EventType::Warning,
                    "NodeNotReady",
                    "Node is not ready",
                ),
            ),
            // Changed or gone meanwhile: the next pass looks again.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => warn!(pod = %name, %ns, error = %e, "marking pod not ready failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    #[test]
    fn zone_states_follow_upstream() {
        let t = 0.55;
        assert_eq!(zone_state(&[false, false], t), ZoneState::FullDisruption);
        assert_eq!(zone_state(&[true, false], t), ZoneState::Normal);
        assert_eq!(zone_state(&[true, false, false], t), ZoneState::Normal);
        assert_eq!(
            zone_state(&[true, false, false, false], t),
            ZoneState::PartialDisruption
        );
        assert_eq!(
            zone_state(&[true, true, true, false, false, false], t),
            ZoneState::Normal
        );
        assert_eq!(zone_state(&[], t), ZoneState::Normal);
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_allows_a_burst_of_one_then_the_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(0.1, start);
        assert!(b.try_accept(start));
        assert!(!b.try_accept(start + Duration::from_secs(5)));
        assert!(b.try_accept(start + Duration::from_secs(10)));
        let mut never = TokenBucket::new(0.0, start);
        assert!(!never.try_accept(start + Duration::from_secs(1000)));
    }

    #[test]
    fn no_schedule_taints_mirror_conditions() {
        let cond = |ty: &str, st: &str| NodeCondition {
            type_: ty.into(),
            status: st.into(),
            ..Default::default()
        };
        let node = Node {
            spec: Some(NodeSpec {
                unschedulable: Some(true),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![
                    cond("Ready", "Unknown"),
                    cond("MemoryPressure", "Unknown"),
                    cond("DiskPressure", "True"),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let keys: Vec<String> = desired_no_schedule_taints(&node)
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert_eq!(
            keys,
            [
                TAINT_UNREACHABLE,
                "node.kubernetes.io/disk-pressure",
                TAINT_UNSCHEDULABLE
            ]
        );
    }

    #[test]
    fn zone_key_uses_region_and_zone_labels() {
        let mut n = Node::default();
        assert_eq!(zone_key(&n), "");
        n.metadata.labels = Some(
            [(ZONE_LABEL.to_string(), "a".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(zone_key(&n), ":\x00:a");
    }
}
