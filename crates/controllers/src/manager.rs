//! The controller manager: caches, event routing, work queues and workers.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::events::EventRecorder;
use crate::expectations::{Expectations, Seen};
use crate::pods;
use crate::queue::WorkQueue;
use crate::{deployment, gc, nodelifecycle, podgc, replicaset, statefulset, tainteviction};

/// The wall clock used for timestamps (conditions, availability). Injected so tests can
/// control it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Settings of the controller manager.
#[derive(Clone)]
pub struct ControllerConfig {
    /// Workers per controller (keys of one controller processed concurrently; never the same
    /// key twice at once). Default 2.
    pub workers: usize,
    /// Every key is re-queued this often even without events. Default 5 minutes.
    pub resync: Duration,
    /// The wall clock.
    pub clock: Clock,
    /// Node lifecycle and taint eviction settings.
    pub node_lifecycle: NodeLifecycleConfig,
    /// PodGC settings.
    pub pod_gc: PodGcConfig,
}

/// Settings of the node lifecycle controller (spec §5.2; upstream flag names in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLifecycleConfig {
    /// How often node health is checked [`--node-monitor-period`]. Default 5 s.
    pub monitor_period: Duration,
    /// How long a node may go without a lease renewal or status update before its
    /// conditions become `Unknown` [`--node-monitor-grace-period`]. Default 50 s.
    pub monitor_grace_period: Duration,
    /// The same for a node that never posted a Ready condition
    /// [`--node-startup-grace-period`]. Default 60 s.
    pub startup_grace_period: Duration,
    /// NoExecute-tainting rate per zone in nodes per second [`--node-eviction-rate`].
    /// Default 0.1 (burst 1).
    pub eviction_rate: f64,
    /// The rate in a partially disrupted zone of a large cluster
    /// [`--secondary-node-eviction-rate`]. Default 0.01.
    pub secondary_eviction_rate: f64,
    /// Share of not-ready nodes (with more than 2 of them) that makes a zone partially
    /// disrupted [`--unhealthy-zone-threshold`]. Default 0.55.
    pub unhealthy_zone_threshold: f64,
    /// Zones with at most this many nodes stop tainting when partially disrupted
    /// [`--large-cluster-size-threshold`]. Default 50.
    pub large_cluster_threshold: usize,
    /// How often the NoExecute tainting queue is worked (upstream's `nodeEvictionPeriod`).
    /// Default 100 ms.
    pub tainting_period: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        Self {
            monitor_period: Duration::from_secs(5),
            monitor_grace_period: Duration::from_secs(50),
            startup_grace_period: Duration::from_secs(60),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_threshold: 50,
            tainting_period: Duration::from_millis(100),
        }
    }
}

/// Settings of PodGC (spec §5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodGcConfig {
    /// How often PodGC runs. Default 20 s.
    pub period: Duration,
    /// How long a pod's node must stay missing before its pods are force-deleted.
    /// Default 40 s.
    pub orphan_quarantine: Duration,
    /// Terminated pods kept before the oldest are deleted [`--terminated-pod-gc-threshold`];
    /// 0 disables. Default 12 500.
    pub terminated_pod_threshold: usize,
}

impl Default for PodGcConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(20),
            orphan_quarantine: Duration::from_secs(40),
            terminated_pod_threshold: 12_500,
        }
    }
}

impl fmt::Debug for ControllerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerConfig")
            .field("workers", &self.workers)
            .field("resync", &self.resync)
            .field("node_lifecycle", &self.node_lifecycle)
            .field("pod_gc", &self.pod_gc)
            .finish_non_exhaustive()
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            resync: Duration::from_secs(300),
            clock: Arc::new(system_now),
            node_lifecycle: NodeLifecycleConfig::default(),
            pod_gc: PodGcConfig::default(),
        }
    }
}

// The one place that reads the real clock: condition and availability timestamps are wall
// time by definition (they are compared with timestamps the kubelet wrote).
#[allow(clippy::disallowed_methods)]
fn system_now() -> Timestamp {
    Timestamp::now()
}

/// Errors of the controllers.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// An API call failed.
    #[error("{op} {kind} {namespace}/{name}: {source}")]
    Api {
        /// What was attempted (`create`, `delete`, `update status`, ...).
        op: &'static str,
        /// The kind of the object.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name (or generateName prefix).
        name: String,
        /// The client error.
        #[source]
        source: Box<kube::Error>,
    },
    /// An object's label selector could not be parsed.
    #[error("invalid selector of {kind} {namespace}/{name}: {message}")]
    Selector {
        /// The kind of the owner.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Why.
        message: String,
    },
    /// A cache never finished its initial list.
    #[error("the {0} cache stopped before it was ready")]
    CacheNotReady(&'static str),
}

impl ControllerError {
    /// A resourceVersion or UID precondition failed (409); retry after re-reading.
    pub fn is_conflict(&self) -> bool {
        self.status().is_some_and(|s| s.code == 409)
    }

    /// The object was not found (404).
    pub fn is_not_found(&self) -> bool {
        self.status().is_some_and(|s| s.code == 404)
    }

    /// The object already exists (409 AlreadyExists).
    pub fn is_already_exists(&self) -> bool {
        self.status().is_some_and(|s| s.reason == "AlreadyExists")
    }

    pub(crate) fn status(&self) -> Option<&kube::core::Status> {
        match self {
            ControllerError::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    pub(crate) fn api(
        op: &'static str,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> impl FnOnce(kube::Error) -> ControllerError {
        let namespace = namespace.to_string();
        let name = name.to_string();
        move |source| ControllerError::Api {
            op,
            kind,
            namespace,
            name,
            source: Box::new(source),
        }
    }
}

/// A namespaced object key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl Key {
    pub(crate) fn of(meta: &ObjectMeta) -> Option<Key> {
        Some(Key {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
        })
    }
    pub(crate) fn obj_ref<K: Resource<DynamicType = ()>>(&self) -> ObjectRef<K> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A dependent the garbage collector should look at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum GcKey {
    Pod(Key),
    ReplicaSet(Key),
}

/// Shared state of all controllers.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) config: ControllerConfig,
    pub(crate) pods: Store<Pod>,
    pub(crate) replicasets: Store<ReplicaSet>,
    pub(crate) deployments: Store<Deployment>,
    pub(crate) statefulsets: Store<StatefulSet>,
    pub(crate) nodes: Store<Node>,
    pub(crate) leases: Store<Lease>,
    pub(crate) rs_queue: WorkQueue<Key>,
    pub(crate) deploy_queue: WorkQueue<Key>,
    pub(crate) sts_queue: WorkQueue<Key>,
    pub(crate) gc_queue: WorkQueue<GcKey>,
    /// Nodes whose NoExecute taints the taint eviction controller should look at.
    pub(crate) taint_node_queue: WorkQueue<String>,
    /// Pods the taint eviction controller should look at.
    pub(crate) taint_pod_queue: WorkQueue<Key>,
    /// Pods with a scheduled eviction, due at the time they were added for.
    pub(crate) eviction_queue: WorkQueue<Key>,
    pub(crate) evictions: tainteviction::Evictions,
    pub(crate) events: EventRecorder,
    pub(crate) rs_expectations: Expectations,
    pub(crate) sts_expectations: Expectations,
}

impl Ctx {
    pub(crate) fn now(&self) -> Timestamp {
        (self.config.clock)()
    }

    /// Pods of `namespace` from the cache.
    pub(crate) fn pods_in(&self, namespace: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
    }

    /// What the pod cache says about the pod `name` with UID `uid` in `namespace`.
    pub(crate) fn seen(&self, namespace: &str, id: &crate::expectations::PodId) -> Seen {
        match self.pods.get(&ObjectRef::new(&id.name).within(namespace)) {
            Some(p) if p.metadata.uid.as_deref() == Some(id.uid.as_str()) => {
                if p.metadata.deletion_timestamp.is_some() {
                    Seen::Terminating
                } else {
                    Seen::Live
                }
            }
            _ => Seen::Absent,
        }
    }

    pub(crate) fn pods_api(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Pods bound to node `name`, from the cache.
    pub(crate) fn pods_on_node(&self, name: &str) -> Vec<Arc<Pod>> {
        self.pods.state_filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| n == name)
        })
    }

    pub(crate) fn nodes_api(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }
}

/// Runs the ReplicaSet, Deployment and StatefulSet controllers, the garbage collector, the
/// node lifecycle and taint eviction controllers and PodGC. Cheap to clone: each
/// [`ControllerManager::run`] starts from empty caches (one leadership term).
#[derive(Clone)]
pub struct ControllerManager {
    client: Client,
    config: ControllerConfig,
}

impl ControllerManager {
    /// A manager that will talk to the API through `client` (which needs cluster-wide rights
    /// on pods and apps/v1 objects).
    pub fn new(client: Client, config: ControllerConfig) -> Self {
        Self { client, config }
    }

    /// Runs every controller until `shutdown` is cancelled. Returns an error only if a cache
    /// could not start.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let (pods, pods_w) = reflector::store::<Pod>();
        let (replicasets, rs_w) = reflector::store::<ReplicaSet>();
        let (deployments, deploy_w) = reflector::store::<Deployment>();
        let (statefulsets, sts_w) = reflector::store::<StatefulSet>();
        let (nodes, nodes_w) = reflector::store::<Node>();
        let (leases, leases_w) = reflector::store::<Lease>();
        let (events, events_rx) = EventRecorder::new();
        let ctx = Arc::new(Ctx {
            client: self.client.clone(),
            config: self.config.clone(),
            pods,
            replicasets,
            deployments,
            statefulsets,
            nodes,
            leases,
            rs_queue: WorkQueue::new(),
            deploy_queue: WorkQueue::new(),
            sts_queue: WorkQueue::new(),
            gc_queue: WorkQueue::new(),
            taint_node_queue: WorkQueue::new(),
            taint_pod_queue: WorkQueue::new(),
            eviction_queue: WorkQueue::new(),
            evictions: tainteviction::Evictions::default(),
            events,
            rs_expectations: Expectations::default(),
            sts_expectations: Expectations::default(),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(crate::events::run_sink(
            self.client.clone(),
            self.config.clock.clone(),
            events_rx,
            shutdown.clone(),
        ));
        let c = self.client.clone();
        tasks.spawn(reflect(
            Api::<Pod>::all(c.clone()),
            pods_w,
            ctx.clone(),
            route_pod,
        ));
        tasks.spawn(reflect(
            Api::<ReplicaSet>::all(c.clone()),
            rs_w,
            ctx.clone(),
            route_replicaset,
        ));
        tasks.spawn(reflect(
            Api::<Deployment>::all(c.clone()),
            deploy_w,
            ctx.clone(),
            route_deployment,
        ));
        tasks.spawn(reflect(
            Api::<StatefulSet>::all(c.clone()),
            sts_w,
            ctx.clone(),
            route_statefulset,
        ));
        tasks.spawn(reflect(
            Api::<Node>::all(c.clone()),
            nodes_w,
            ctx.clone(),
            route_node,
        ));
        tasks.spawn(reflect(
            Api::<Lease>::namespaced(c, nodelifecycle::LEASE_NAMESPACE),
            leases_w,
            ctx.clone(),
            |_, _, _| {},
        ));

        let ready = async {
            ctx.pods
                .wait_until_ready()
                .await
                .map_err(|_| ControllerError::CacheNotReady("pod"))?;
            ctx.replicasets
                .wait_until_ready()
                .await
                .map_err(|_| ControllerError::CacheNotReady("replicaset"))?;
            ctx.deployments
                .wait_until_ready()
                .await
                .map_err(|_| ControllerError::CacheNotReady("deployment"))?;
            ctx.statefulsets
                .wait_until_ready()
                .await
                .map_err(|_| ControllerError::CacheNotReady("statefulset"))?;
            ctx.nodes
                .wait_until_ready()
                .await
                .map_err(|_| ControllerError::CacheNotReady("node"))?;
            ctx.leases
                .wait_until_ready()
                .await
                .map_err(|_| ControllerError::CacheNotReady("lease"))?;
            Ok::<(), ControllerError>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = ready => r?,
        }
        resync_all(&ctx);

        for _ in 0..self.config.workers.max(1) {
            tasks.spawn(worker(
                "replicaset",
                ctx.clone(),
                ctx.rs_queue.clone(),
                shutdown.clone(),
                |ctx, key| Box::pin(async move { replicaset::reconcile(&ctx, &key).await }),
            ));
            tasks.spawn(worker(
                "deployment",
                ctx.clone(),
                ctx.deploy_queue.clone(),
                shutdown.clone(),
                |ctx, key| Box::pin(async move { deployment::reconcile(&ctx, &key).await }),
            ));
            tasks.spawn(worker(
                "statefulset",
                ctx.clone(),
                ctx.sts_queue.clone(),
                shutdown.clone(),
                |ctx, key| Box::pin(async move { statefulset::reconcile(&ctx, &key).await }),
            ));
            tasks.spawn(worker(
                "garbagecollector",
                ctx.clone(),
                ctx.gc_queue.clone(),
                shutdown.clone(),
                |ctx, key| Box::pin(async move { gc::reconcile(&ctx, &key).await }),
            ));
            tasks.spawn(worker(
                "tainteviction-node",
                ctx.clone(),
                ctx.taint_node_queue.clone(),
                shutdown.clone(),
                |ctx, key| Box::pin(async move { tainteviction::reconcile_node(&ctx, &key) }),
            ));
            tasks.spawn(worker(
                "tainteviction-pod",
                ctx.clone(),
                ctx.taint_pod_queue.clone(),
                shutdown.clone(),
                |ctx, key| Box::pin(async move { tainteviction::reconcile_pod(&ctx, &key) }),
            ));
            tasks.spawn(worker(
                "tainteviction",
                ctx.clone(),
                ctx.eviction_queue.clone(),
                shutdown.clone(),
                |ctx, key| Box::pin(async move { tainteviction::evict(&ctx, &key).await }),
            ));
        }
        tasks.spawn(nodelifecycle::run(ctx.clone(), shutdown.clone()));
        tasks.spawn(podgc::run(ctx.clone(), shutdown.clone()));
        let resync_ctx = ctx.clone();
        let resync_stop = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(resync_ctx.config.resync);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = resync_stop.cancelled() => return,
                    _ = tick.tick() => resync_all(&resync_ctx),
                }
            }
        });
        shutdown.cancelled().await;
        tasks.shutdown().await;
        Ok(())
    }
}

/// Queues every known key of every controller and every dependent with owners.
fn resync_all(ctx: &Ctx) {
    for n in ctx.nodes.state() {
        if let Some(name) = &n.metadata.name {
            ctx.taint_node_queue.add(name.clone());
        }
    }
    for rs in ctx.replicasets.state() {
        if let Some(k) = Key::of(&rs.metadata) {
            ctx.rs_queue.add(k.clone());
            if !rs
                .metadata
                .owner_references
                .as_deref()
                .unwrap_or_default()
                .is_empty()
            {
                ctx.gc_queue.add(GcKey::ReplicaSet(k));
            }
        }
    }
    for d in ctx.deployments.state() {
        if let Some(k) = Key::of(&d.metadata) {
            ctx.deploy_queue.add(k);
        }
    }
    for s in ctx.statefulsets.state() {
        if let Some(k) = Key::of(&s.metadata) {
            ctx.sts_queue.add(k);
        }
    }
    for p in ctx.pods.state() {
        if !p
            .metadata
            .owner_references
            .as_deref()
            .unwrap_or_default()
            .is_empty()
            && let Some(k) = Key::of(&p.metadata)
        {
            ctx.gc_queue.add(GcKey::Pod(k));
        }
    }
}

type Reconcile<K> = fn(
    Arc<Ctx>,
    K,
) -> std::pin::Pin<
    Box<dyn Future<Output = Result<Option<Duration>, ControllerError>> + Send>,
>;

async fn worker<K: Clone + Eq + std::hash::Hash + fmt::Debug + Send + 'static>(
    name: &'static str,
    ctx: Arc<Ctx>,
    queue: WorkQueue<K>,
    shutdown: CancellationToken,
    reconcile: Reconcile<K>,
) {
    let mut failures: HashMap<K, u32> = HashMap::new();
    loop {
        let key = tokio::select! {
            _ = shutdown.cancelled() => return,
            k = queue.next() => k,
        };
        let result = reconcile(ctx.clone(), key.clone()).await;
        queue.done(&key);
        match result {
            Ok(requeue) => {
                failures.remove(&key);
                if let Some(after) = requeue {
                    queue.add_after(key, after);
                }
            }
            Err(e) => {
                let n = failures.entry(key.clone()).or_insert(0);
                *n = n.saturating_add(1);
                let backoff = if e.is_conflict() {
                    Duration::from_millis(10)
                } else {
                    Duration::from_millis(50u64.saturating_mul(1 << (*n).min(10)))
                        .min(Duration::from_secs(60))
                };
                if e.is_conflict() {
                    debug!(controller = name, ?key, error = %e, "conflict, retrying");
                } else {
                    warn!(controller = name, ?key, error = %e, ?backoff, "reconcile failed");
                }
                queue.add_after(key, backoff);
            }
        }
    }
}

async fn reflect<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    ctx: Arc<Ctx>,
    route: fn(&Ctx, &K, bool),
) where
    K: Resource<DynamicType = ()>
        + Clone
        + fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(event)) => match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => route(&ctx, &o, false),
                watcher::Event::Delete(o) => route(&ctx, &o, true),
                watcher::Event::InitDone => resync_all(&ctx),
                watcher::Event::Init => {}
            },
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "watch failed; retrying");
            }
        }
    }
}

fn route_node(ctx: &Ctx, node: &Node, deleted: bool) {
    let Some(name) = &node.metadata.name else {
        return;
    };
    // Only a change of the NoExecute taints matters to the taint eviction controller
    // (status updates arrive every few seconds per node and would rescan its pods).
    let taints = if deleted {
        None
    } else {
        Some(podvisor_api::taints::no_execute(
            node.spec
                .as_ref()
                .and_then(|s| s.taints.as_deref())
                .unwrap_or(&[]),
        ))
    };
    if ctx.evictions.node_taints_changed(name, taints) {
        ctx.taint_node_queue.add(name.clone());
    }
}

fn route_pod(ctx: &Ctx, pod: &Pod, deleted: bool) {
    let Some(key) = Key::of(&pod.metadata) else {
        return;
    };
    if deleted
        || pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    {
        ctx.taint_pod_queue.add(key.clone());
    }
    if !pod
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .is_empty()
        && !deleted
    {
        ctx.gc_queue.add(GcKey::Pod(key.clone()));
    }
    match pods::controller_ref(&pod.metadata) {
        Some(owner) if owner.kind == "ReplicaSet" => {
            let rs_key = Key {
                namespace: key.namespace.clone(),
                name: owner.name.clone(),
            };
            // A Recreate rollout waits for the old pods to go: tell the Deployment too.
            if let Some(rs) = ctx.replicasets.get(&rs_key.obj_ref())
                && let Some(d) = pods::controller_ref(&rs.metadata)
                && d.kind == "Deployment"
            {
                ctx.deploy_queue.add(Key {
                    namespace: key.namespace.clone(),
                    name: d.name.clone(),
                });
            }
            ctx.rs_queue.add(rs_key);
        }
        Some(owner) if owner.kind == "StatefulSet" => {
            ctx.sts_queue.add(Key {
                namespace: key.namespace.clone(),
                name: owner.name.clone(),
            });
        }
        Some(_) => {}
        None if !deleted && pod.metadata.deletion_timestamp.is_none() => {
            // An orphan: every owner whose selector matches may adopt it.
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            for rs in ctx.replicasets.state() {
                if rs.metadata.namespace.as_deref() == Some(&key.namespace)
                    && selector_matches(rs.spec.as_ref().map(|s| &s.selector), &labels)
                    && let Some(k) = Key::of(&rs.metadata)
                {
                    ctx.rs_queue.add(k);
                }
            }
            for s in ctx.statefulsets.state() {
                if s.metadata.namespace.as_deref() == Some(&key.namespace)
                    && selector_matches(s.spec.as_ref().map(|s| &s.selector), &labels)
                    && let Some(k) = Key::of(&s.metadata)
                {
                    ctx.sts_queue.add(k);
                }
            }
        }
        None => {}
    }
}

fn selector_matches(
    sel: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    // An empty or invalid selector selects nothing for adoption (as upstream).
    let Some(sel) = sel else { return false };
    if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    {
        return false;
    }
    podvisor_api::selectors::LabelSelector::from_meta(sel).is_ok_and(|s| s.matches(labels))
}

pub(crate) fn parse_selector(
    kind: &'static str,
    meta: &ObjectMeta,
    sel: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Result<Option<podvisor_api::selectors::LabelSelector>, ControllerError> {
    let Some(sel) = sel else { return Ok(None) };
    if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    {
        return Ok(None);
    }
    podvisor_api::selectors::LabelSelector::from_meta(sel)
        .map(Some)
        .map_err(|e| ControllerError::Selector {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            message: e.to_string(),
        })
}

fn dependents_of(ctx: &Ctx, uid: &str) {
    for p in ctx.pods.state() {
        if p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid)
            && let Some(k) = Key::of(&p.metadata)
        {
            ctx.gc_queue.add(GcKey::Pod(k));
        }
    }
    for rs in ctx.replicasets.state() {
        if rs
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid)
            && let Some(k) = Key::of(&rs.metadata)
        {
            ctx.gc_queue.add(GcKey::ReplicaSet(k));
        }
    }
}

fn route_replicaset(ctx: &Ctx, rs: &ReplicaSet, deleted: bool) {
    let Some(key) = Key::of(&rs.metadata) else {
        return;
    };
    if deleted {
        ctx.rs_expectations.forget(&key.to_string());
        if let Some(uid) = &rs.metadata.uid {
            dependents_of(ctx, uid);
        }
    } else if !rs
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        ctx.gc_queue.add(GcKey::ReplicaSet(key.clone()));
    }
    match pods::controller_ref(&rs.metadata) {
        Some(d) if d.kind == "Deployment" => {
            ctx.deploy_queue.add(Key {
                namespace: key.namespace.clone(),
                name: d.name.clone(),
            });
        }
        Some(_) => {}
        None if !deleted => {
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            for d in ctx.deployments.state() {
                if d.metadata.namespace.as_deref() == Some(&key.namespace)
                    && selector_matches(d.spec.as_ref().map(|s| &s.selector), &labels)
                    && let Some(k) = Key::of(&d.metadata)
                {
                    ctx.deploy_queue.add(k);
                }
            }
        }
        None => {}
    }
    ctx.rs_queue.add(key);
}

fn route_deployment(ctx: &Ctx, d: &Deployment, deleted: bool) {
    let Some(key) = Key::of(&d.metadata) else {
        return;
    };
    if deleted && let Some(uid) = &d.metadata.uid {
        dependents_of(ctx, uid);
    }
    ctx.deploy_queue.add(key);
}

fn route_statefulset(ctx: &Ctx, s: &StatefulSet, deleted: bool) {
    let Some(key) = Key::of(&s.metadata) else {
        return;
    };
    if deleted {
        ctx.sts_expectations.forget(&key.to_string());
        if let Some(uid) = &s.metadata.uid {
            dependents_of(ctx, uid);
        }
    }
    ctx.sts_queue.add(key);
}
