//! The controller manager: caches, event routing, work queues and workers. It builds the
//! shared [`Ctx`] and starts every controller; the controllers see only [`crate::context`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Level, debug, warn};

use crate::context::{ControllerConfig, ControllerError, Ctx, GcKey, Key, OwnerKind};
use crate::evictions::Evictions;
use crate::expectations::Expectations;
use crate::pods;
use crate::queue::WorkQueue;
use crate::{
    cronjob, daemonset, deployment, disruption, endpoints, endpointslice, gc, job, kubedns,
    nodeipam, nodelifecycle, podgc, replicaset, replicationcontroller, statefulset, tainteviction,
};
use podvisor_kit::events::{EventRecorder, RecorderConfig, Reporter};
use podvisor_kit::reflect::Cached;

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
        let (jobs, jobs_w) = reflector::store::<Job>();
        let (cronjobs, cronjobs_w) = reflector::store::<CronJob>();
        let (daemonsets, ds_w) = reflector::store::<DaemonSet>();
        let (controllerrevisions, cr_w) = reflector::store::<ControllerRevision>();
        let (replicationcontrollers, rc_w) = reflector::store::<ReplicationController>();
        let (pdbs, pdb_w) = reflector::store::<PodDisruptionBudget>();
        let (nodes, nodes_w) = reflector::store::<Node>();
        let (leases, leases_w) = reflector::store::<Lease>();
        let (events, event_writer) = EventRecorder::new(
            self.client.clone(),
            Reporter::component("controller-manager"),
            self.config.clock.clone(),
            RecorderConfig {
                aggregate: false,
                ..RecorderConfig::default()
            },
        );
        let (svc, svc_writers) = endpointslice::ServiceState::new();
        let (volumes, volume_writers) = crate::pvcontroller::VolumeState::new();
        let ctx = Arc::new(Ctx {
            client: self.client.clone(),
            config: self.config.clone(),
            pods,
            replicasets,
            deployments,
            statefulsets,
            jobs,
            cronjobs,
            daemonsets,
            controllerrevisions,
            replicationcontrollers,
            pdbs,
            nodes,
            leases,
            node_ipam: tokio::sync::Notify::new(),
            kube_dns: tokio::sync::Notify::new(),
            pod_gc: tokio::sync::Notify::new(),
            rs_queue: WorkQueue::new(),
            deploy_queue: WorkQueue::new(),
            sts_queue: WorkQueue::new(),
            job_queue: WorkQueue::new(),
            cronjob_queue: WorkQueue::new(),
            ds_queue: WorkQueue::new(),
            rc_queue: WorkQueue::new(),
            pdb_queue: WorkQueue::new(),
            gc_queue: WorkQueue::new(),
            taint_node_queue: WorkQueue::new(),
            quota: crate::resourcequota::QuotaState::new(),
            taint_pod_queue: WorkQueue::new(),
            eviction_queue: WorkQueue::new(),
            evictions: Evictions::default(),
            events,
            rs_expectations: Expectations::default(),
            sts_expectations: Expectations::default(),
            job_expectations: Expectations::default(),
            ds_expectations: Expectations::default(),
            ds_nodes: Default::default(),
            ds_failed_backoff: Default::default(),
            rc_expectations: Expectations::default(),
            job_backoff: Default::default(),
            svc,
            volumes,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(event_writer.run_until(shutdown.clone()));
        let c = self.client.clone();
        tasks.spawn(reflect(Api::all(c.clone()), pods_w, ctx.clone(), route_pod));
        tasks.spawn(reflect(
            Api::all(c.clone()),
            rs_w,
            ctx.clone(),
            route_replicaset,
        ));
        tasks.spawn(reflect(
            Api::all(c.clone()),
            deploy_w,
            ctx.clone(),
            route_deployment,
        ));
        tasks.spawn(reflect(
            Api::all(c.clone()),
            sts_w,
            ctx.clone(),
            route_statefulset,
        ));
        tasks.spawn(reflect(Api::all(c.clone()), jobs_w, ctx.clone(), route_job));
        tasks.spawn(reflect(
            Api::all(c.clone()),
            cronjobs_w,
            ctx.clone(),
            route_cronjob,
        ));
        tasks.spawn(reflect(
            Api::all(c.clone()),
            ds_w,
            ctx.clone(),
            route_daemonset,
        ));
        tasks.spawn(reflect(
            Api::all(c.clone()),
            cr_w,
            ctx.clone(),
            route_revision,
        ));
        tasks.spawn(reflect(
            Api::all(c.clone()),
            rc_w,
            ctx.clone(),
            route_replication_controller,
        ));
        tasks.spawn(reflect(Api::all(c.clone()), pdb_w, ctx.clone(), route_pdb));
        tasks.spawn(reflect(
            Api::all(c.clone()),
            nodes_w,
            ctx.clone(),
            route_node,
        ));
        let w = svc_writers;
        let routes = (endpointslice::route_service, endpointslice::route_slice);
        tasks.spawn(reflect(
            Api::all(c.clone()),
            w.services,
            ctx.clone(),
            routes.0,
        ));
        tasks.spawn(reflect(
            Api::all(c.clone()),
            w.slices,
            ctx.clone(),
            routes.1,
        ));
        let route_ep = endpoints::route_endpoints;
        tasks.spawn(reflect(
            Api::all(c.clone()),
            w.endpoints,
            ctx.clone(),
            route_ep,
        ));
        let (v, pv) = (volume_writers, crate::pvcontroller::route_volume);
        tasks.spawn(reflect(Api::all(c.clone()), v.volumes, ctx.clone(), pv));
        let pvc = crate::pvcontroller::route_claim;
        tasks.spawn(reflect(Api::all(c.clone()), v.claims, ctx.clone(), pvc));
        let sc = crate::pvcontroller::route_class;
        tasks.spawn(reflect(Api::all(c.clone()), v.classes, ctx.clone(), sc));
        let leases_api = Api::namespaced(c, nodelifecycle::LEASE_NAMESPACE);
        tasks.spawn(reflect(leases_api, leases_w, ctx.clone(), |_, _, _| {}));

        let ready = async {
            wait_ready(&ctx.pods, "pod").await?;
            wait_ready(&ctx.replicasets, "replicaset").await?;
            wait_ready(&ctx.deployments, "deployment").await?;
            wait_ready(&ctx.statefulsets, "statefulset").await?;
            wait_ready(&ctx.jobs, "job").await?;
            wait_ready(&ctx.cronjobs, "cronjob").await?;
            wait_ready(&ctx.daemonsets, "daemonset").await?;
            wait_ready(&ctx.controllerrevisions, "controllerrevision").await?;
            wait_ready(&ctx.replicationcontrollers, "replicationcontroller").await?;
            wait_ready(&ctx.pdbs, "poddisruptionbudget").await?;
            wait_ready(&ctx.nodes, "node").await?;
            wait_ready(&ctx.svc.services, "service").await?;
            wait_ready(&ctx.svc.slices, "endpointslice").await?;
            wait_ready(&ctx.svc.endpoints, "endpoints").await?;
            wait_ready(&ctx.volumes.volumes, "persistentvolume").await?;
            wait_ready(&ctx.volumes.claims, "persistentvolumeclaim").await?;
            wait_ready(&ctx.volumes.classes, "storageclass").await?;
            wait_ready(&ctx.leases, "lease").await
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = ready => r?,
        }
        resync_all(&ctx);

        // Workers per queue; a key is never processed by two workers at once.
        let by_key: [(&'static str, &WorkQueue<Key>, Reconcile<Key>); 13] = [
            (
                "persistentvolumeclaim",
                &ctx.volumes.claim_queue,
                |ctx, key| {
                    Box::pin(async move { crate::pvcontroller::sync_claim_key(&ctx, &key).await })
                },
            ),
            ("endpointslice", &ctx.svc.slice_queue, |ctx, key| {
                Box::pin(async move { endpointslice::reconcile(&ctx, &key).await })
            }),
            ("endpoints", &ctx.svc.endpoints_queue, |ctx, key| {
                Box::pin(async move { endpoints::reconcile(&ctx, &key).await })
            }),
            ("replicaset", &ctx.rs_queue, |ctx, key| {
                Box::pin(async move { replicaset::reconcile(&ctx, &key).await })
            }),
            ("deployment", &ctx.deploy_queue, |ctx, key| {
                Box::pin(async move { deployment::reconcile(&ctx, &key).await })
            }),
            ("statefulset", &ctx.sts_queue, |ctx, key| {
                Box::pin(async move { statefulset::reconcile(&ctx, &key).await })
            }),
            ("replicationcontroller", &ctx.rc_queue, |ctx, key| {
                Box::pin(async move { replicationcontroller::reconcile(&ctx, &key).await })
            }),
            ("disruption", &ctx.pdb_queue, |ctx, key| {
                Box::pin(async move { disruption::reconcile(&ctx, &key).await })
            }),
            ("daemonset", &ctx.ds_queue, |ctx, key| {
                Box::pin(async move { daemonset::reconcile(&ctx, &key).await })
            }),
            ("cronjob", &ctx.cronjob_queue, |ctx, key| {
                Box::pin(async move { cronjob::reconcile(&ctx, &key).await })
            }),
            ("job", &ctx.job_queue, |ctx, key| {
                Box::pin(async move { job::reconcile(&ctx, &key).await })
            }),
            ("tainteviction-pod", &ctx.taint_pod_queue, |ctx, key| {
                Box::pin(async move { tainteviction::reconcile_pod(&ctx, &key) })
            }),
            ("tainteviction", &ctx.eviction_queue, |ctx, key| {
                Box::pin(async move { tainteviction::evict(&ctx, &key).await })
            }),
        ];
        let gc: Reconcile<GcKey> =
            |ctx, key| Box::pin(async move { gc::reconcile(&ctx, &key).await });
        let taint_node: Reconcile<String> =
            |ctx, key| Box::pin(async move { tainteviction::reconcile_node(&ctx, &key) });
        let volume: Reconcile<String> = |ctx, key| {
            Box::pin(async move { crate::pvcontroller::sync_volume_key(&ctx, &key).await })
        };
        let quota: Reconcile<String> =
            |ctx, ns| Box::pin(async move { crate::resourcequota::reconcile(&ctx, &ns).await });
        for _ in 0..self.config.workers.max(1) {
            for (name, queue, reconcile) in &by_key {
                let queue = (*queue).clone();
                tasks.spawn(worker(
                    name,
                    ctx.clone(),
                    queue,
                    shutdown.clone(),
                    *reconcile,
                ));
            }
            let stop = shutdown.clone();
            tasks.spawn(worker(
                "garbagecollector",
                ctx.clone(),
                ctx.gc_queue.clone(),
                stop,
                gc,
            ));
            let (queue, stop) = (ctx.volumes.volume_queue.clone(), shutdown.clone());
            tasks.spawn(worker("persistentvolume", ctx.clone(), queue, stop, volume));
            let (queue, stop) = (ctx.taint_node_queue.clone(), shutdown.clone());
            tasks.spawn(worker(
                "tainteviction-node",
                ctx.clone(),
                queue,
                stop,
                taint_node,
            ));
            let (queue, stop) = (ctx.quota.queue.clone(), shutdown.clone());
            tasks.spawn(worker("resourcequota", ctx.clone(), queue, stop, quota));
        }
        tasks.spawn(nodelifecycle::run(ctx.clone(), shutdown.clone()));
        tasks.spawn(podgc::run(ctx.clone(), shutdown.clone()));
        tasks.spawn(crate::timelinegc::run(ctx.clone(), shutdown.clone()));
        tasks.spawn(crate::hpa::run(ctx.clone(), shutdown.clone()));
        tasks.spawn(crate::resourcequota::run(ctx.clone(), shutdown.clone()));
        tasks.spawn(nodeipam::run(ctx.clone(), shutdown.clone()));
        tasks.spawn(crate::serviceaccounts::run(ctx.clone(), shutdown.clone()));
        tasks.spawn(kubedns::run(ctx.clone(), shutdown.clone()));
        tasks.spawn(crate::pvcontroller::run(ctx.clone(), shutdown.clone()));
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
    endpointslice::resync(ctx);
    ctx.volumes.resync();
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
    for cj in ctx.cronjobs.state() {
        if let Some(k) = Key::of(&cj.metadata) {
            ctx.cronjob_queue.add(k);
        }
    }
    queue_all(&ctx.daemonsets, &ctx.ds_queue);
    queue_all(&ctx.replicationcontrollers, &ctx.rc_queue);
    queue_all(&ctx.pdbs, &ctx.pdb_queue);
    for r in ctx.controllerrevisions.state() {
        if has_owners(&r.metadata)
            && let Some(k) = Key::of(&r.metadata)
        {
            ctx.gc_queue.add(GcKey::ControllerRevision(k));
        }
    }
    for j in ctx.jobs.state() {
        if let Some(k) = Key::of(&j.metadata) {
            ctx.job_queue.add(k.clone());
            if has_owners(&j.metadata) {
                ctx.gc_queue.add(GcKey::Job(k));
            }
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

/// Queues the key of every cached object of one kind.
fn queue_all<K>(store: &Store<K>, queue: &WorkQueue<Key>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    for o in store.state() {
        if let Some(k) = Key::of(o.meta()) {
            queue.add(k);
        }
    }
}

/// Waits for a cache's initial list.
async fn wait_ready<K>(store: &Store<K>, what: &'static str) -> Result<(), ControllerError>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .wait_until_ready()
        .await
        .map_err(|_| ControllerError::CacheNotReady(what))
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

async fn reflect<K: Cached>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    ctx: Arc<Ctx>,
    route: fn(&Ctx, &K, bool),
) {
    let on_event = |event: watcher::Event<K>| match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => route(&ctx, &o, false),
        watcher::Event::Delete(o) => route(&ctx, &o, true),
        watcher::Event::InitDone => resync_all(&ctx),
        watcher::Event::Init => {}
    };
    let config = watcher::Config::default();
    podvisor_kit::reflect::reflect(api, config, writer, "controllers", Level::WARN, on_event).await
}

fn route_node(ctx: &Ctx, node: &Node, deleted: bool) {
    let Some(name) = &node.metadata.name else {
        return;
    };
    ctx.node_ipam.notify_one();
    ctx.kube_dns.notify_one();
    if !deleted && crate::podgc::out_of_service(node) {
        ctx.pod_gc.notify_one();
    }
    if ctx.ds_nodes.changed(node, deleted) {
        queue_all(&ctx.daemonsets, &ctx.ds_queue);
    }
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
    route_gc_owners(ctx, None, &pod.metadata, deleted);
    crate::podgc::route_pod(ctx, pod, deleted);
    endpointslice::route_pod(ctx, pod);
    crate::pvcontroller::route_pod(ctx, pod, deleted);
    crate::resourcequota::route_pod(ctx, pod, deleted);
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    for pdb in ctx.pdbs.state() {
        if pdb.metadata.namespace.as_deref() == Some(&key.namespace)
            && selector_matches(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()), &labels)
            && let Some(k) = Key::of(&pdb.metadata)
        {
            ctx.pdb_queue.add(k);
        }
    }
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
        Some(owner) if owner.kind == "DaemonSet" => {
            ctx.ds_queue.add(Key {
                namespace: key.namespace.clone(),
                name: owner.name.clone(),
            });
        }
        Some(owner) if owner.kind == "ReplicationController" && owner.api_version == "v1" => {
            ctx.rc_queue.add(Key {
                namespace: key.namespace.clone(),
                name: owner.name.clone(),
            });
        }
        Some(owner) if owner.kind == "StatefulSet" => {
            ctx.sts_queue.add(Key {
                namespace: key.namespace.clone(),
                name: owner.name.clone(),
            });
        }
        Some(owner) if owner.kind == "Job" && owner.api_version == "batch/v1" => {
            ctx.job_queue.add(Key {
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
            for d in ctx.daemonsets.state() {
                if d.metadata.namespace.as_deref() == Some(&key.namespace)
                    && selector_matches(d.spec.as_ref().map(|s| &s.selector), &labels)
                    && let Some(k) = Key::of(&d.metadata)
                {
                    ctx.ds_queue.add(k);
                }
            }
            for rc in ctx.replicationcontrollers.state() {
                if rc.metadata.namespace.as_deref() == Some(&key.namespace)
                    && rc
                        .spec
                        .as_ref()
                        .and_then(|s| s.selector.as_ref())
                        .is_some_and(|sel| {
                            !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
                        })
                    && let Some(k) = Key::of(&rc.metadata)
                {
                    ctx.rc_queue.add(k);
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
            for j in ctx.jobs.state() {
                if j.metadata.namespace.as_deref() == Some(&key.namespace)
                    && selector_matches(j.spec.as_ref().and_then(|s| s.selector.as_ref()), &labels)
                    && let Some(k) = Key::of(&j.metadata)
                {
                    ctx.job_queue.add(k);
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

/// Foreground/orphan deletion: queues the owner itself when it is pending, and the owners
/// of a dependent that is going (the owner may be waiting for it).
fn route_gc_owners(
    ctx: &Ctx,
    kind: Option<OwnerKind>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    deleted: bool,
) {
    if let (Some(kind), Some(key)) = (kind, Key::of(meta))
        && !deleted
        && gc::owner_pending(meta)
    {
        ctx.gc_queue.add(GcKey::Owner(kind, key));
    }
    if deleted || meta.deletion_timestamp.is_some() {
        for r in meta.owner_references.iter().flatten() {
            if let (Some(kind), Some(ns)) =
                (OwnerKind::of(&r.api_version, &r.kind), &meta.namespace)
            {
                ctx.gc_queue.add(GcKey::Owner(
                    kind,
                    Key {
                        namespace: ns.clone(),
                        name: r.name.clone(),
                    },
                ));
            }
        }
    }
}

fn has_owners(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    !meta
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .is_empty()
}

fn dependents_of(ctx: &Ctx, uid: &str) {
    ctx.queue_owned_by(ctx.pods.state(), uid, GcKey::Pod);
    ctx.queue_owned_by(ctx.replicasets.state(), uid, GcKey::ReplicaSet);
    ctx.queue_owned_by(ctx.jobs.state(), uid, GcKey::Job);
    ctx.queue_owned_by(
        ctx.controllerrevisions.state(),
        uid,
        GcKey::ControllerRevision,
    );
    ctx.queue_owned_by(ctx.volumes.claims.state(), uid, GcKey::Claim);
}

fn route_replicaset(ctx: &Ctx, rs: &ReplicaSet, deleted: bool) {
    let Some(key) = Key::of(&rs.metadata) else {
        return;
    };
    route_gc_owners(ctx, Some(OwnerKind::ReplicaSet), &rs.metadata, deleted);
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
    route_gc_owners(ctx, Some(OwnerKind::Deployment), &d.metadata, deleted);
    if deleted && let Some(uid) = &d.metadata.uid {
        dependents_of(ctx, uid);
    }
    ctx.deploy_queue.add(key);
}

fn route_statefulset(ctx: &Ctx, s: &StatefulSet, deleted: bool) {
    let Some(key) = Key::of(&s.metadata) else {
        return;
    };
    route_gc_owners(ctx, Some(OwnerKind::StatefulSet), &s.metadata, deleted);
    if deleted {
        ctx.sts_expectations.forget(&key.to_string());
        if let Some(uid) = &s.metadata.uid {
            dependents_of(ctx, uid);
        }
    }
    ctx.sts_queue.add(key);
}

fn route_job(ctx: &Ctx, j: &Job, deleted: bool) {
    let Some(key) = Key::of(&j.metadata) else {
        return;
    };
    route_gc_owners(ctx, Some(OwnerKind::Job), &j.metadata, deleted);
    if let Some(owner) = pods::controller_ref(&j.metadata)
        && owner.kind == "CronJob"
    {
        ctx.cronjob_queue.add(Key {
            namespace: key.namespace.clone(),
            name: owner.name.clone(),
        });
    }
    if deleted {
        ctx.job_expectations.forget(&key.to_string());
        if let Some(uid) = &j.metadata.uid {
            dependents_of(ctx, uid);
        }
    } else if has_owners(&j.metadata) {
        ctx.gc_queue.add(GcKey::Job(key.clone()));
    }
    ctx.job_queue.add(key);
}

fn route_cronjob(ctx: &Ctx, cj: &CronJob, deleted: bool) {
    let Some(key) = Key::of(&cj.metadata) else {
        return;
    };
    route_gc_owners(ctx, Some(OwnerKind::CronJob), &cj.metadata, deleted);
    if deleted && let Some(uid) = &cj.metadata.uid {
        dependents_of(ctx, uid);
    }
    ctx.cronjob_queue.add(key);
}

fn route_daemonset(ctx: &Ctx, ds: &DaemonSet, deleted: bool) {
    let Some(key) = Key::of(&ds.metadata) else {
        return;
    };
    route_gc_owners(ctx, Some(OwnerKind::DaemonSet), &ds.metadata, deleted);
    if deleted {
        ctx.ds_expectations.forget(&key.to_string());
        ctx.ds_failed_backoff.forget(&key.to_string());
        if let Some(uid) = &ds.metadata.uid {
            dependents_of(ctx, uid);
        }
    }
    ctx.ds_queue.add(key);
}

fn route_revision(ctx: &Ctx, r: &ControllerRevision, deleted: bool) {
    let Some(key) = Key::of(&r.metadata) else {
        return;
    };
    if !deleted && has_owners(&r.metadata) {
        ctx.gc_queue.add(GcKey::ControllerRevision(key.clone()));
    }
    route_gc_owners(ctx, None, &r.metadata, deleted);
    if let Some(owner) = pods::controller_ref(&r.metadata)
        && owner.kind == "DaemonSet"
    {
        ctx.ds_queue.add(Key {
            namespace: key.namespace,
            name: owner.name.clone(),
        });
    }
}

fn route_replication_controller(ctx: &Ctx, rc: &ReplicationController, deleted: bool) {
    let Some(key) = Key::of(&rc.metadata) else {
        return;
    };
    route_gc_owners(
        ctx,
        Some(OwnerKind::ReplicationController),
        &rc.metadata,
        deleted,
    );
    if deleted {
        ctx.rc_expectations.forget(&key.to_string());
        if let Some(uid) = &rc.metadata.uid {
            dependents_of(ctx, uid);
        }
    }
    ctx.rc_queue.add(key);
}

fn route_pdb(ctx: &Ctx, pdb: &PodDisruptionBudget, _deleted: bool) {
    if let Some(key) = Key::of(&pdb.metadata) {
        ctx.pdb_queue.add(key);
    }
}
