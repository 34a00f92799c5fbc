//! What every controller shares: the [`Ctx`] (client, caches, queues, expectations, the
//! event recorder, the wall clock), object [`Key`]s, the settings and [`ControllerError`].
//! The manager ([`crate::manager`]) builds the `Ctx`; controllers depend on this module,
//! never on the manager.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource};
use podvisor_kit::WallClock;
use podvisor_kit::events::{EventRecord, EventRecorder, Reporter};

use crate::evictions::Evictions;
use crate::expectations::{Expectations, Seen};
use crate::queue::WorkQueue;

/// Settings of the controller manager.
#[derive(Clone)]
pub struct ControllerConfig {
    /// Workers per controller (keys of one controller processed concurrently; never the same
    /// key twice at once). Default 2.
    pub workers: usize,
    /// Every key is re-queued this often even without events. Default 5 minutes.
    pub resync: Duration,
    /// The wall clock used for timestamps (conditions, availability). Injected so tests
    /// can control it.
    pub clock: WallClock,
    /// Node lifecycle and taint eviction settings.
    pub node_lifecycle: NodeLifecycleConfig,
    /// PodGC settings.
    pub pod_gc: PodGcConfig,
    /// The timeline pruner's settings.
    pub timeline_gc: crate::timelinegc::TimelineGcConfig,
    /// Node IPAM (podCIDR) settings.
    pub node_ipam: crate::nodeipam::NodeIpamConfig,
    /// The cluster's CA (PEM), published as the `kube-root-ca.crt` ConfigMap of every
    /// namespace (upstream's `--root-ca-file`); None publishes nothing.
    pub root_ca: Option<String>,
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
            .field("node_ipam", &self.node_ipam)
            .finish_non_exhaustive()
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            resync: Duration::from_secs(300),
            clock: WallClock::system(),
            node_lifecycle: NodeLifecycleConfig::default(),
            pod_gc: PodGcConfig::default(),
            timeline_gc: crate::timelinegc::TimelineGcConfig::default(),
            node_ipam: crate::nodeipam::NodeIpamConfig::default(),
            root_ca: None,
        }
    }
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

/// `api.replace` of `obj` (`kind` `namespace/name`), fenced by the resourceVersion it
/// carries; a failure is an "update" [`ControllerError::Api`].
pub(crate) async fn replace<K>(
    api: &Api<K>,
    kind: &'static str,
    namespace: &str,
    name: &str,
    obj: &K,
) -> Result<K, ControllerError>
where
    K: Clone + serde::Serialize + serde::de::DeserializeOwned + fmt::Debug,
{
    api.replace(name, &PostParams::default(), obj)
        .await
        .map_err(ControllerError::api("update", kind, namespace, name))
}

/// A create's result, where AlreadyExists (another writer was first) is success.
pub(crate) fn created(
    r: Result<impl Sized, kube::Error>,
    kind: &'static str,
    ns: &str,
    name: &str,
) -> Result<(), ControllerError> {
    match r.map_err(ControllerError::api("create", kind, ns, name)) {
        Err(e) if !e.is_already_exists() => Err(e),
        _ => Ok(()),
    }
}

/// A delete's result, where NotFound (already gone) is success; whether this delete removed
/// the object.
pub(crate) fn deleted(
    r: Result<impl Sized, kube::Error>,
    kind: &'static str,
    ns: &str,
    name: &str,
) -> Result<bool, ControllerError> {
    match r.map_err(ControllerError::api("delete", kind, ns, name)) {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
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
    Job(Key),
    ControllerRevision(Key),
    /// A PersistentVolumeClaim (StatefulSet claims with a retention policy).
    Claim(Key),
    /// An owner being deleted with foreground or orphan propagation.
    Owner(OwnerKind, Key),
}

/// The kinds whose dependents the garbage collector tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum OwnerKind {
    ReplicaSet,
    Deployment,
    StatefulSet,
    Job,
    CronJob,
    DaemonSet,
    ReplicationController,
}

impl OwnerKind {
    /// The kind of an owner reference, if tracked.
    pub(crate) fn of(api_version: &str, kind: &str) -> Option<OwnerKind> {
        match (api_version, kind) {
            ("apps/v1", "ReplicaSet") => Some(OwnerKind::ReplicaSet),
            ("apps/v1", "Deployment") => Some(OwnerKind::Deployment),
            ("apps/v1", "StatefulSet") => Some(OwnerKind::StatefulSet),
            ("batch/v1", "Job") => Some(OwnerKind::Job),
            ("batch/v1", "CronJob") => Some(OwnerKind::CronJob),
            ("apps/v1", "DaemonSet") => Some(OwnerKind::DaemonSet),
            ("v1", "ReplicationController") => Some(OwnerKind::ReplicationController),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            OwnerKind::ReplicaSet => "ReplicaSet",
            OwnerKind::Deployment => "Deployment",
            OwnerKind::StatefulSet => "StatefulSet",
            OwnerKind::Job => "Job",
            OwnerKind::CronJob => "CronJob",
            OwnerKind::DaemonSet => "DaemonSet",
            OwnerKind::ReplicationController => "ReplicationController",
        }
    }
}

/// Shared state of all controllers.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) config: ControllerConfig,
    pub(crate) pods: Store<Pod>,
    pub(crate) replicasets: Store<ReplicaSet>,
    pub(crate) deployments: Store<Deployment>,
    pub(crate) statefulsets: Store<StatefulSet>,
    pub(crate) jobs: Store<Job>,
    pub(crate) cronjobs: Store<CronJob>,
    pub(crate) daemonsets: Store<DaemonSet>,
    pub(crate) controllerrevisions: Store<ControllerRevision>,
    pub(crate) replicationcontrollers: Store<ReplicationController>,
    pub(crate) pdbs: Store<PodDisruptionBudget>,
    pub(crate) nodes: Store<Node>,
    pub(crate) leases: Store<Lease>,
    /// Wakes the node IPAM controller (a Node changed).
    pub(crate) node_ipam: tokio::sync::Notify,
    /// Wakes the kube-dns controller (a Node changed).
    pub(crate) kube_dns: tokio::sync::Notify,
    /// Wakes PodGC between its periods: a terminating pod on an out-of-service node.
    pub(crate) pod_gc: tokio::sync::Notify,
    pub(crate) rs_queue: WorkQueue<Key>,
    pub(crate) deploy_queue: WorkQueue<Key>,
    pub(crate) sts_queue: WorkQueue<Key>,
    pub(crate) job_queue: WorkQueue<Key>,
    pub(crate) cronjob_queue: WorkQueue<Key>,
    pub(crate) ds_queue: WorkQueue<Key>,
    pub(crate) rc_queue: WorkQueue<Key>,
    pub(crate) pdb_queue: WorkQueue<Key>,
    pub(crate) gc_queue: WorkQueue<GcKey>,
    /// Nodes whose NoExecute taints the taint eviction controller should look at.
    pub(crate) taint_node_queue: WorkQueue<String>,
    /// Pods the taint eviction controller should look at.
    pub(crate) taint_pod_queue: WorkQueue<Key>,
    /// Pods with a scheduled eviction, due at the time they were added for.
    pub(crate) eviction_queue: WorkQueue<Key>,
    pub(crate) evictions: Evictions<Key>,
    pub(crate) events: EventRecorder,
    pub(crate) rs_expectations: Expectations,
    pub(crate) sts_expectations: Expectations,
    pub(crate) job_expectations: Expectations,
    pub(crate) ds_expectations: Expectations,
    /// What of each node the DaemonSets depend on, to queue them only when it changes.
    pub(crate) ds_nodes: crate::daemonset::NodePlacements,
    /// The failed-pod back-off of each DaemonSet and node.
    pub(crate) ds_failed_backoff: crate::daemonset::FailedPodBackoff,
    pub(crate) rc_expectations: Expectations,
    /// The pod-failure back-off of each Job (`ns/name`), kept in memory as upstream does.
    pub(crate) job_backoff: Mutex<HashMap<String, crate::job::Backoff>>,
    /// Caches and queues of the EndpointSlice and Endpoints controllers.
    pub(crate) svc: crate::endpointslice::ServiceState,
    /// Caches and queues of the PersistentVolume controller.
    pub(crate) volumes: crate::pvcontroller::VolumeState,
    /// The ResourceQuota controller's queue of namespaces.
    pub(crate) quota: crate::resourcequota::QuotaState,
}

impl Ctx {
    pub(crate) fn now(&self) -> Timestamp {
        self.config.clock.timestamp()
    }

    /// Writes `obj`'s status (`pods/status`-style `replace_status`), fenced by the cached
    /// resourceVersion it carries.
    pub(crate) async fn replace_status<K>(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        obj: &K,
    ) -> Result<(), ControllerError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + fmt::Debug,
    {
        Api::<K>::namespaced(self.client.clone(), namespace)
            .replace_status(name, &PostParams::default(), obj)
            .await
            .map(|_| ())
            .map_err(ControllerError::api("update status", kind, namespace, name))
    }

    /// Queues for the garbage collector each of `objects` that `uid` owns, as `gc_key`.
    pub(crate) fn queue_owned_by<K: Resource>(
        &self,
        objects: Vec<Arc<K>>,
        uid: &str,
        gc_key: fn(Key) -> GcKey,
    ) {
        for o in objects {
            let meta = o.meta();
            if meta.owner_references.iter().flatten().any(|r| r.uid == uid)
                && let Some(k) = Key::of(meta)
            {
                self.gc_queue.add(gc_key(k));
            }
        }
    }

    /// The pod-failure back-off record of Job `key`.
    pub(crate) fn job_backoff(&self, key: &str) -> crate::job::Backoff {
        let g = self.job_backoff.lock().unwrap_or_else(|e| e.into_inner());
        g.get(key).copied().unwrap_or_default()
    }

    /// Stores the back-off record of Job `key` (an empty one is dropped).
    pub(crate) fn set_job_backoff(&self, key: &str, b: crate::job::Backoff) {
        let mut g = self.job_backoff.lock().unwrap_or_else(|e| e.into_inner());
        if b == crate::job::Backoff::default() {
            g.remove(key);
        } else {
            g.insert(key.to_string(), b);
        }
    }

    /// Forgets the back-off record of a deleted Job.
    pub(crate) fn forget_job_backoff(&self, key: &str) {
        self.set_job_backoff(key, crate::job::Backoff::default());
    }

    /// Queues an event reported by `component` (never blocks; see [`podvisor_kit::events`]).
    pub(crate) fn record_event(&self, component: &'static str, event: EventRecord) {
        self.events
            .with_reporter(Reporter::component(component))
            .record(event);
    }

    /// Queues an event about `obj` (its object reference) reported by `component`.
    pub(crate) fn event_about<K: Resource<DynamicType = ()>>(
        &self,
        component: &'static str,
        obj: &K,
        type_: podvisor_kit::events::EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.record_event(
            component,
            EventRecord::new(
                podvisor_kit::events::object_ref(obj),
                type_,
                reason,
                message,
            ),
        );
    }

    /// A pod create of `owner` failed: the `FailedCreate` event and the error to return.
    pub(crate) fn pod_create_failed<K: Resource<DynamicType = ()>>(
        &self,
        component: &'static str,
        owner: &K,
        error: kube::Error,
    ) -> ControllerError {
        self.event_about(
            component,
            owner,
            podvisor_kit::events::EventType::Warning,
            "FailedCreate",
            format!("Error creating: {error}"),
        );
        let meta = owner.meta();
        ControllerError::api(
            "create",
            "Pod",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        )(error)
    }

    /// The cached owner `key`; when it is gone, its expectations are forgotten too.
    pub(crate) fn cached_owner<K>(
        &self,
        cache: &Store<K>,
        expectations: &Expectations,
        key: &Key,
    ) -> Option<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let owner = cache.get(&key.obj_ref());
        if owner.is_none() {
            expectations.forget(&key.to_string());
        }
        owner
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
