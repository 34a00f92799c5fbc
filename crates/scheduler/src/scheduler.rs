//! The scheduling loop: watches, queue, decisions, binding, failure reporting.
//!
//! # Lifecycle
//!
//! ```text
//! Scheduler::run(shutdown)
//!   └─ (leader election, optional) ── while leading ──▶ one *term*:
//!        start pod + node watchers (kube::runtime::watcher), empty cache and queue
//!        Syncing ── both initial lists done ──▶ Scheduling ── token cancelled ──▶ Draining
//!                                                                 (binds and events awaited)
//! ```
//!
//! Each term starts from scratch (fresh watches, cache and queue), so nothing assumed in an
//! earlier term can leak into the next.
//!
//! # Rules
//! * Only pods with an empty `spec.nodeName`, `spec.schedulerName` equal to ours, no
//!   `deletionTimestamp`, no `schedulingGates` and a non-terminal phase are queued. Bound
//!   pods only count toward their node's usage (see [`crate::cache`]).
//! * No pod is scheduled before both initial lists are complete (no decisions on a partial
//!   view of nodes or usage).
//! * A decision assumes the pod on its node at once, then binds in a separate task
//!   (`POST pods/{name}/binding`, bounded concurrency). Success: `Scheduled` event. Failure:
//!   the assumption is forgotten, `FailedScheduling` (reason `SchedulerError`) is reported,
//!   and the pod retries after its back-off; a pod that is gone (404) is dropped.
//! * No fit: `PodScheduled=False`, reason `Unschedulable`, the upstream message (patched only
//!   when it changed), a `FailedScheduling` Warning event; the pod waits in the queue's
//!   unschedulable set until a relevant cluster change (node added or changed in a way that
//!   matters, bound pod deleted, finished, moved or shrunk).
//! * Every spawned task is owned by a `JoinSet` and awaited when the term ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use thiserror::Error;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::algorithm::{self, ScheduleFailure};
use crate::cache::{Cache, PodChange, PodInfo};
use crate::volumebinding::{self, BindPlan, VolumeCache};
use podvisor_kit::WallClock;
use podvisor_kit::events::{EventRecorder, EventStats, EventType};
use podvisor_kit::leader::{KubeLeaseClient, LeaderElectionConfig, LeaderElector, LeaderError};

use crate::events::pod_event;
use crate::queue::{Failure, SchedulingQueue};

/// The default scheduler name.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// The lease the default scheduler elects on.
pub const DEFAULT_LEASE_NAME: &str = "kube-scheduler";

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods with this `spec.schedulerName` are ours (default `default-scheduler`); also the
    /// events' `source.component`.
    pub scheduler_name: String,
    /// Leader election; `None` schedules unconditionally (single instance).
    pub leader_election: Option<LeaderElectionConfig>,
    /// Back-off after the first failed attempt (default 1 s).
    pub initial_backoff: Duration,
    /// Back-off cap (default 10 s).
    pub max_backoff: Duration,
    /// Bind requests in flight at most (default 64).
    pub bind_concurrency: usize,
    /// Identity used as the events' `reportingInstance` (default: the leader election
    /// identity, else the scheduler name).
    pub identity: Option<String>,
    /// Where the events about pods also go: the pods' timelines (default: disabled).
    pub timeline: podvisor_kit::timeline::TimelineRecorder,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_owned(),
            leader_election: None,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            bind_concurrency: 64,
            identity: None,
            timeline: podvisor_kit::timeline::TimelineRecorder::disabled(),
        }
    }
}

impl SchedulerConfig {
    /// Defaults plus leader election on lease `kube-system/kube-scheduler` with `identity`.
    pub fn with_leader_election(identity: impl Into<String>) -> Self {
        SchedulerConfig {
            leader_election: Some(LeaderElectionConfig::new(DEFAULT_LEASE_NAME, identity)),
            ..Default::default()
        }
    }

    fn instance(&self) -> String {
        self.identity
            .clone()
            .or_else(|| self.leader_election.as_ref().map(|l| l.identity.clone()))
            .unwrap_or_else(|| self.scheduler_name.clone())
    }
}

/// Errors that end [`Scheduler::run`].
#[derive(Debug, Error)]
pub enum SchedulerError {
    /// Leader election could not run.
    #[error("leader election: {0}")]
    LeaderElection(#[from] LeaderError),
}

/// Counters, for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    /// Pods bound successfully.
    pub bound: AtomicU64,
    /// Attempts that found no node.
    pub unschedulable_attempts: AtomicU64,
    /// Bind requests that failed.
    pub bind_errors: AtomicU64,
    /// Leadership terms started.
    pub terms: AtomicU64,
    /// Event sink counters.
    pub events: Arc<EventStats>,
}

/// The scheduler. See the module docs.
pub struct Scheduler {
    client: kube::Client,
    config: SchedulerConfig,
    clock: WallClock,
    stats: Arc<SchedulerStats>,
}

/// How a bind task ended.
struct BindOutcome {
    info: Arc<PodInfo>,
    node: String,
    result: Result<(), kube::Error>,
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Whether this scheduler is responsible for a pod (module docs, first rule).
pub fn is_pending_for(pod: &Pod, scheduler_name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return false;
    }
    if spec
        .scheduler_name
        .as_deref()
        .unwrap_or(DEFAULT_SCHEDULER_NAME)
        != scheduler_name
    {
        return false;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if spec
        .scheduling_gates
        .as_ref()
        .is_some_and(|g| !g.is_empty())
    {
        return false;
    }
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The PodScheduled condition patch, or `None` when the pod already carries it.
fn scheduled_condition_patch(
    pod: &Pod,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> Option<serde_json::Value> {
    let existing = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(c) = existing
        && c.status == "False"
        && c.reason.as_deref() == Some(reason)
        && c.message.as_deref() == Some(message)
    {
        return None;
    }
    let transition = match existing {
        Some(c) if c.status == "False" => c.last_transition_time.clone().unwrap_or(Time(now)),
        _ => Time(now),
    };
    Some(serde_json::json!({
        "status": {
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": transition,
            }]
        }
    }))
}

impl Scheduler {
    /// A scheduler talking to the API through `client`.
    pub fn new(client: kube::Client, config: SchedulerConfig) -> Self {
        Scheduler {
            client,
            config,
            clock: WallClock::system(),
            stats: Arc::new(SchedulerStats::default()),
        }
    }

    /// Replaces the wall clock used for timestamps.
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// The scheduler's counters.
    pub fn stats(&self) -> Arc<SchedulerStats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` is cancelled (with leader election: schedules only while
    /// holding the lease).
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        match &self.config.leader_election {
            None => {
                self.run_term(shutdown).await;
                Ok(())
            }
            Some(cfg) => {
                let leases = KubeLeaseClient::new(
                    self.client.clone(),
                    &cfg.lease_namespace,
                    &cfg.lease_name,
                );
                let mut elector =
                    LeaderElector::with_client(leases, cfg.clone(), self.clock.clone());
                elector.run(shutdown, |token| self.run_term(token)).await?;
                Ok(())
            }
        }
    }

    /// One term of scheduling, until `token` is cancelled.
    async fn run_term(&self, token: CancellationToken) {
        self.stats.terms.fetch_add(1, Ordering::Relaxed);
        let (recorder, writer) = crate::events::recorder(
            self.client.clone(),
            self.config.scheduler_name.clone(),
            self.config.instance(),
            self.clock.clone(),
            self.stats.events.clone(),
        );
        let recorder = recorder.with_timeline(self.config.timeline.clone());
        let sink = tokio::spawn(writer.run());
        let pods = watcher::watcher(
            Api::<Pod>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff();
        let nodes = watcher::watcher(
            Api::<Node>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff();
        let (volumes, volume_feed) = VolumeCache::start(&self.client);
        let volume_feed = tokio::spawn(volume_feed);
        let mut term = Term {
            sched: self,
            volumes,
            cache: Cache::new(),
            queue: SchedulingQueue::new(self.config.initial_backoff, self.config.max_backoff),
            recorder,
            binds: JoinSet::new(),
            effects: JoinSet::new(),
            pods_synced: false,
            nodes_synced: false,
            pod_init: None,
            node_init: None,
        };
        term.run(token, pods, nodes).await;
        volume_feed.abort();
        let _ = volume_feed.await;
        let Term {
            recorder,
            mut binds,
            mut effects,
            ..
        } = term;
        while let Some(res) = binds.join_next().await {
            if let Err(e) = res {
                tracing::warn!(error = %e, "bind task failed");
            }
        }
        while effects.join_next().await.is_some() {}
        drop(recorder);
        if tokio::time::timeout(Duration::from_secs(10), sink)
            .await
            .is_err()
        {
            tracing::warn!("event sink did not drain in time");
        }
    }
}

struct Term<'a> {
    sched: &'a Scheduler,
    volumes: VolumeCache,
    cache: Cache,
    queue: SchedulingQueue,
    recorder: EventRecorder,
    binds: JoinSet<BindOutcome>,
    effects: JoinSet<()>,
    pods_synced: bool,
    nodes_synced: bool,
    pod_init: Option<HashSet<String>>,
    node_init: Option<HashSet<String>>,
}

/// Pods decided per wake-up before the loop looks at watch events again.
const SCHEDULE_BATCH: usize = 64;

impl Term<'_> {
    async fn run(
        &mut self,
        token: CancellationToken,
        pods: impl Stream<Item = Result<Event<Pod>, watcher::Error>>,
        nodes: impl Stream<Item = Result<Event<Node>, watcher::Error>>,
    ) {
        let mut pods = std::pin::pin!(pods);
        let mut nodes = std::pin::pin!(nodes);
        let max_binds = self.sched.config.bind_concurrency.max(1);
        loop {
            let wakeup = self.queue.next_wakeup();
            let can_schedule = self.pods_synced
                && self.nodes_synced
                && self.binds.len() < max_binds
                && self.queue.has_active();
            tokio::select! {
                biased;
                _ = token.cancelled() => return,
                ev = pods.next() => match ev {
                    Some(Ok(ev)) => self.on_pod_event(ev),
                    Some(Err(e)) => tracing::warn!(error = %e, "pod watch error"),
                    None => return,
                },
                ev = nodes.next() => match ev {
                    Some(Ok(ev)) => self.on_node_event(ev),
                    Some(Err(e)) => tracing::warn!(error = %e, "node watch error"),
                    None => return,
                },
                Some(res) = self.binds.join_next(), if !self.binds.is_empty() => match res {
                    Ok(outcome) => self.on_bind_outcome(outcome),
                    Err(e) => tracing::warn!(error = %e, "bind task failed"),
                },
                Some(_) = self.effects.join_next(), if !self.effects.is_empty() => {}
                _ = self.volumes.changed() => self.queue.move_all_unschedulable(Instant::now()),
                _ = tokio::time::sleep_until(wakeup.unwrap_or_else(Instant::now)), if wakeup.is_some() => {
                    self.queue.flush(Instant::now());
                }
                _ = std::future::ready(()), if can_schedule => {
                    for _ in 0..SCHEDULE_BATCH {
                        if self.binds.len() >= max_binds || !self.schedule_one() {
                            break;
                        }
                    }
                }
            }
        }
    }

    fn on_pod_event(&mut self, ev: Event<Pod>) {
        match ev {
            Event::Init => self.pod_init = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (self.pod_init.as_mut(), pod.metadata.uid.as_ref())
                {
                    seen.insert(uid.clone());
                }
                self.apply_pod(pod);
            }
            Event::InitDone => {
                if let Some(seen) = self.pod_init.take() {
                    let mut freed = false;
                    for uid in self.cache.pod_uids() {
                        if !seen.contains(&uid) && !self.cache.is_assumed(&uid) {
                            freed |= self.cache.remove_pod(&uid) == PodChange::Freed;
                        }
                    }
                    for uid in self.queue.uids() {
                        if !seen.contains(&uid) {
                            self.queue.remove(&uid);
                        }
                    }
                    if freed {
                        self.queue.move_all_unschedulable(Instant::now());
                    }
                }
                self.pods_synced = true;
            }
            Event::Apply(pod) => self.apply_pod(pod),
            Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.queue.remove(uid);
                    if self.cache.remove_pod(uid) == PodChange::Freed {
                        self.queue.move_all_unschedulable(Instant::now());
                    }
                }
            }
        }
    }

    fn apply_pod(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod = Arc::new(pod);
        let now = Instant::now();
        if self.cache.apply_pod(pod.clone()) == PodChange::Freed {
            self.queue.move_all_unschedulable(now);
        }
        if is_pending_for(&pod, &self.sched.config.scheduler_name) {
            if !self.cache.contains_pod(&uid) {
                self.queue.add_or_update(pod, now);
            }
        } else {
            self.queue.remove(&uid);
        }
    }

    fn on_node_event(&mut self, ev: Event<Node>) {
        let now = Instant::now();
        match ev {
            Event::Init => self.node_init = Some(HashSet::new()),
            Event::InitApply(node) => {
                if let (Some(seen), Some(name)) =
                    (self.node_init.as_mut(), node.metadata.name.as_ref())
                {
                    seen.insert(name.clone());
                }
                if self.cache.upsert_node(Arc::new(node)) {
                    self.queue.move_all_unschedulable(now);
                }
            }
            Event::InitDone => {
                if let Some(seen) = self.node_init.take() {
                    for name in self.cache.node_names() {
                        if !seen.contains(&name) {
                            self.cache.remove_node(&name);
                        }
                    }
                }
                self.nodes_synced = true;
            }
            Event::Apply(node) => {
                if self.cache.upsert_node(Arc::new(node)) {
                    self.queue.move_all_unschedulable(now);
                }
            }
            Event::Delete(node) => {
                if let Some(name) = node.metadata.name.as_deref() {
                    self.cache.remove_node(name);
                }
            }
        }
    }

    /// Decides one pod. Returns false when no pod was ready.
    fn schedule_one(&mut self) -> bool {
        let Some(pod) = self.queue.pop() else {
            return false;
        };
        let Some(uid) = pod.metadata.uid.clone() else {
            return true;
        };
        if self.cache.contains_pod(&uid) {
            // Already assumed or bound (a stale pending version was queued).
            self.queue.done(&uid);
            return true;
        }
        let info = Arc::new(PodInfo::new(pod));
        if !info.invalid_quantities.is_empty() {
            tracing::warn!(pod = %info.name, ns = %info.namespace, invalid = ?info.invalid_quantities, "unparseable resource quantities counted as zero");
        }
        let claims = if volumebinding::uses_claims(&info.pod) {
            if !self.volumes.ready() {
                self.queue.failed(&uid, Failure::Error, Instant::now());
                return true;
            }
            match volumebinding::prefilter(&self.volumes, &info.pod) {
                Ok(c) => Some(c),
                Err(msg) => {
                    let failure = ScheduleFailure::Unschedulable(crate::fit_error::Diagnosis {
                        num_all_nodes: self.cache.node_count(),
                        prefilter_msg: Some(msg),
                        rejections: Vec::new(),
                        preemption_never: info
                            .pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.preemption_policy.as_deref())
                            == Some("Never"),
                    });
                    self.queue
                        .failed(&uid, Failure::Unschedulable, Instant::now());
                    self.report_failure(&info, "Unschedulable", failure_message(&failure));
                    return true;
                }
            }
        } else {
            None
        };
        let decision = match &claims {
            None => algorithm::schedule(&self.cache, &info),
            Some(c) => algorithm::schedule_with(&self.cache, &info, |name, data| {
                volumebinding::filter(&self.volumes, c, name, data)
            }),
        };
        match decision {
            Ok(node) => {
                let plan = claims.as_ref().and_then(|c| {
                    let (_, data, _) = self.cache.nodes().find(|(n, _, _)| **n == node)?;
                    volumebinding::plan(&self.volumes, c, &node, data)
                });
                self.cache.assume(info.clone(), &node);
                self.spawn_bind(info, node, plan);
            }
            Err(failure) => {
                self.sched
                    .stats
                    .unschedulable_attempts
                    .fetch_add(1, Ordering::Relaxed);
                self.queue
                    .failed(&uid, Failure::Unschedulable, Instant::now());
                self.report_failure(&info, "Unschedulable", failure_message(&failure));
            }
        }
        true
    }

    fn spawn_bind(&mut self, info: Arc<PodInfo>, node: String, plan: Option<BindPlan>) {
        let client = self.sched.client.clone();
        let api: Api<Pod> = Api::namespaced(self.sched.client.clone(), &info.namespace);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(info.name.clone()),
                namespace: Some(info.namespace.clone()),
                uid: Some(info.uid.clone()),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Node".to_owned()),
                name: Some(node.clone()),
                ..Default::default()
            },
        };
        self.binds.spawn(async move {
            if let Some(plan) = plan
                && let Err(e) = plan.execute(&client).await
            {
                return BindOutcome {
                    info,
                    node,
                    result: Err(e),
                };
            }
            let result = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &info.name,
                    &PostParams::default(),
                    &binding,
                )
                .await
                .map(|_| ());
            BindOutcome { info, node, result }
        });
    }

    fn on_bind_outcome(&mut self, outcome: BindOutcome) {
        let BindOutcome { info, node, result } = outcome;
        match result {
            Ok(()) => {
                self.queue.done(&info.uid);
                self.sched.stats.bound.fetch_add(1, Ordering::Relaxed);
                self.recorder.record(pod_event(
                    &info,
                    EventType::Normal,
                    "Scheduled",
                    "Binding",
                    format!(
                        "Successfully assigned {}/{} to {}",
                        info.namespace, info.name, node
                    ),
                ));
            }
            Err(e) => {
                self.sched.stats.bind_errors.fetch_add(1, Ordering::Relaxed);
                self.cache.forget(&info.uid);
                if is_status(&e, 404) {
                    // The pod is gone.
                    self.queue.remove(&info.uid);
                    return;
                }
                tracing::info!(pod = %info.name, ns = %info.namespace, node = %node, error = %e, "binding failed");
                self.queue.failed(&info.uid, Failure::Error, Instant::now());
                if !is_status(&e, 409) {
                    self.report_failure(&info, "SchedulerError", format!("binding rejected: {e}"));
                }
            }
        }
    }

    fn report_failure(&mut self, info: &PodInfo, reason: &'static str, message: String) {
        self.recorder.record(pod_event(
            info,
            EventType::Warning,
            "FailedScheduling",
            "Scheduling",
            message.clone(),
        ));
        let Some(patch) =
            scheduled_condition_patch(&info.pod, reason, &message, self.sched.clock.timestamp())
        else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.sched.client.clone(), &info.namespace);
        let name = info.name.clone();
        let ns = info.namespace.clone();
        self.effects.spawn(async move {
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                && !is_status(&e, 404)
            {
                tracing::warn!(pod = %name, ns = %ns, error = %e, "updating PodScheduled failed");
            }
        });
    }
}

fn failure_message(f: &ScheduleFailure) -> String {
    f.message()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSchedulingGate, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pending() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn responsibility_rules() {
        let p = pending();
        assert!(is_pending_for(&p, "default-scheduler"));
        assert!(!is_pending_for(&p, "other"));
        let mut named = pending();
        named.spec.as_mut().unwrap().scheduler_name = Some("other".into());
        assert!(is_pending_for(&named, "other"));
        let mut bound = pending();
        bound.spec.as_mut().unwrap().node_name = Some("n".into());
        assert!(!is_pending_for(&bound, "default-scheduler"));
        let mut deleting = pending();
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert!(!is_pending_for(&deleting, "default-scheduler"));
        let mut gated = pending();
        gated.spec.as_mut().unwrap().scheduling_gates =
            Some(vec![PodSchedulingGate { name: "g".into() }]);
        assert!(!is_pending_for(&gated, "default-scheduler"));
        let mut failed = pending();
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        assert!(!is_pending_for(&failed, "default-scheduler"));
    }

    #[test]
    fn condition_patch_only_when_changed_and_keeps_transition_time() {
        let t0 = jiff::Timestamp::from_second(1_000).unwrap();
        let t1 = jiff::Timestamp::from_second(2_000).unwrap();
        let p = pending();
        let patch = scheduled_condition_patch(&p, "Unschedulable", "m1", t0).unwrap();
        let c = &patch["status"]["conditions"][0];
        assert_eq!(c["type"], "PodScheduled");
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "Unschedulable");
        assert_eq!(c["message"], "m1");
        assert_eq!(c["lastTransitionTime"], "1970-01-01T00:16:40Z");
        let mut with = pending();
        with.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("m1".into()),
            last_transition_time: Some(Time(t0)),
            ..Default::default()
        }]);
        assert!(scheduled_condition_patch(&with, "Unschedulable", "m1", t1).is_none());
        let patch = scheduled_condition_patch(&with, "Unschedulable", "m2", t1).unwrap();
        assert_eq!(
            patch["status"]["conditions"][0]["lastTransitionTime"],
            "1970-01-01T00:16:40Z"
        );
    }
}
