//! The garbage collector (background propagation).
//!
//! A dependent (a pod, a ReplicaSet, a Job, a ControllerRevision or a PersistentVolumeClaim)
//! lists its owners in `metadata.ownerReferences`.
//! When an owner is deleted, the dependents that point at it are queued. For each
//! dependent the collector checks every owner reference of a kind it knows (apps/v1
//! ReplicaSet, Deployment, StatefulSet, DaemonSet; v1 ReplicationController, Pod; batch/v1
//! Job, CronJob): first in the cache, and when the cache does not
//! have the owner's UID, with a live GET (the cache may lag; a GET 404 or a different UID
//! means the owner is gone). Then:
//!
//! * all owners gone → delete the dependent (UID precondition, background propagation, so
//!   its own dependents are collected the same way in turn);
//! * some owners gone → remove the dangling references (merge patch fenced by the
//!   resourceVersion);
//! * owners of kinds it does not know are assumed present.
//!
//! # Foreground and orphan propagation
//!
//! A DELETE with `propagationPolicy: Foreground` or `Orphan` of an owner (a ReplicaSet,
//! Deployment, StatefulSet or Job) does not remove it: the API server sets its
//! `deletionTimestamp` and adds the `foregroundDeletion` or `orphan` finalizer. Such an owner
//! is queued as [`GcKey::Owner`], and again whenever one of its dependents is deleted:
//!
//! * `orphan`: the reference to the owner is removed from every dependent (merge patch
//!   fenced by the dependent's resourceVersion), then the finalizer; the owner goes, its
//!   dependents stay.
//! * `foregroundDeletion`: every dependent not yet being deleted is deleted (foreground
//!   again when it has dependents of its own, so the cascade runs depth first); once no
//!   dependent with `blockOwnerDeletion: true` is left, the finalizer is removed and the
//!   owner goes. Dependents without `blockOwnerDeletion` are deleted but not waited for.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::{Api, Resource};
use tracing::info;

use crate::context::{ControllerError, Ctx, GcKey, Key, OwnerKind};

/// The finalizer of `propagationPolicy: Foreground`.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of `propagationPolicy: Orphan`.
pub(crate) const ORPHAN: &str = "orphan";

/// Whether an owner's finalizers ask the collector to act now (it is being deleted with
/// foreground or orphan propagation).
pub(crate) fn owner_pending(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
        && meta
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FOREGROUND || f == ORPHAN)
}

pub(crate) async fn reconcile(ctx: &Ctx, key: &GcKey) -> Result<Option<Duration>, ControllerError> {
    let (meta, k) = match key {
        GcKey::Owner(kind, k) => return reconcile_owner(ctx, *kind, k).await,
        GcKey::Pod(k) => match ctx.pods.get(&k.obj_ref()) {
            Some(p) => (p.metadata.clone(), k),
            None => return Ok(None),
        },
        GcKey::ReplicaSet(k) => match ctx.replicasets.get(&k.obj_ref()) {
            Some(r) => (r.metadata.clone(), k),
            None => return Ok(None),
        },
        GcKey::Job(k) => match ctx.jobs.get(&k.obj_ref()) {
            Some(j) => (j.metadata.clone(), k),
            None => return Ok(None),
        },
        GcKey::ControllerRevision(k) => match ctx.controllerrevisions.get(&k.obj_ref()) {
            Some(r) => (r.metadata.clone(), k),
            None => return Ok(None),
        },
        GcKey::Claim(k) => match ctx.volumes.claim(&k.namespace, &k.name) {
            Some(c) => (c.metadata.clone(), k),
            None => return Ok(None),
        },
    };
    let refs = meta.owner_references.clone().unwrap_or_default();
    if refs.is_empty() {
        return Ok(None);
    }
    let mut gone = Vec::new();
    for r in &refs {
        if !owner_exists(ctx, &k.namespace, r).await? {
            gone.push(r.uid.clone());
        }
    }
    if gone.is_empty() {
        return Ok(None);
    }
    if gone.len() == refs.len() {
        if meta.deletion_timestamp.is_some() {
            return Ok(None);
        }
        info!(namespace = %k.namespace, name = %k.name, "deleting dependent of a deleted owner");
        delete_dependent(ctx, key, &meta, PropagationPolicy::Background).await?;
        return Ok(None);
    }
    remove_refs(ctx, key, k, &meta, &refs, &gone).await
}

async fn remove_refs(
    ctx: &Ctx,
    key: &GcKey,
    k: &Key,
    meta: &ObjectMeta,
    refs: &[OwnerReference],
    gone: &[String],
) -> Result<Option<Duration>, ControllerError> {
    let keep: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !gone.contains(&r.uid))
        .cloned()
        .collect();
    let patch = crate::replicaset::owner_refs_patch(meta, &keep);
    let c = ctx.client.clone();
    let result = match key {
        GcKey::Pod(_) => patch_in::<Pod>(c, k, &patch).await,
        GcKey::ReplicaSet(_) => patch_in::<ReplicaSet>(c, k, &patch).await,
        GcKey::Job(_) => patch_in::<Job>(c, k, &patch).await,
        GcKey::ControllerRevision(_) => patch_in::<ControllerRevision>(c, k, &patch).await,
        GcKey::Claim(_) => patch_in::<PersistentVolumeClaim>(c, k, &patch).await,
        GcKey::Owner(..) => return Ok(None),
    };
    match result {
        Ok(()) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(ControllerError::api(
            "remove owner references",
            "Pod",
            &k.namespace,
            &k.name,
        )(e)),
    }
}

/// Whether the owner `r` (in `namespace`) still exists with the referenced UID.
async fn owner_exists(
    ctx: &Ctx,
    namespace: &str,
    r: &OwnerReference,
) -> Result<bool, ControllerError> {
    let key = Key {
        namespace: namespace.to_string(),
        name: r.name.clone(),
    };
    let cached_uid = match (r.api_version.as_str(), r.kind.as_str()) {
        ("batch/v1", "Job") => ctx
            .jobs
            .get(&key.obj_ref())
            .and_then(|o| o.metadata.uid.clone()),
        ("batch/v1", "CronJob") => ctx
            .cronjobs
            .get(&key.obj_ref())
            .and_then(|o| o.metadata.uid.clone()),
        ("apps/v1", "ReplicaSet") => ctx
            .replicasets
            .get(&key.obj_ref())
            .and_then(|o| o.metadata.uid.clone()),
        ("apps/v1", "Deployment") => ctx
            .deployments
            .get(&key.obj_ref())
            .and_then(|o| o.metadata.uid.clone()),
        ("apps/v1", "StatefulSet") => ctx
            .statefulsets
            .get(&key.obj_ref())
            .and_then(|o| o.metadata.uid.clone()),
        ("apps/v1", "DaemonSet") => ctx
            .daemonsets
            .get(&key.obj_ref())
            .and_then(|o| o.metadata.uid.clone()),
        ("v1", "ReplicationController") => ctx
            .replicationcontrollers
            .get(&key.obj_ref())
            .and_then(|o| o.metadata.uid.clone()),
        ("v1", "Pod") => ctx
            .pods
            .get(&key.obj_ref())
            .and_then(|o| o.metadata.uid.clone()),
        _ => return Ok(true),
    };
    if cached_uid.as_deref() == Some(r.uid.as_str()) {
        return Ok(true);
    }
    let live = match r.kind.as_str() {
        "Job" => live_uid::<Job>(ctx, namespace, &r.name).await,
        "CronJob" => live_uid::<CronJob>(ctx, namespace, &r.name).await,
        "ReplicaSet" => live_uid::<ReplicaSet>(ctx, namespace, &r.name).await,
        "Deployment" => live_uid::<Deployment>(ctx, namespace, &r.name).await,
        "DaemonSet" => live_uid::<DaemonSet>(ctx, namespace, &r.name).await,
        "ReplicationController" => live_uid::<ReplicationController>(ctx, namespace, &r.name).await,
        "Pod" => live_uid::<Pod>(ctx, namespace, &r.name).await,
        _ => live_uid::<StatefulSet>(ctx, namespace, &r.name).await,
    }
    .map_err(ControllerError::api("get", "owner", namespace, &r.name))?;
    Ok(live.as_deref() == Some(r.uid.as_str()))
}

async fn live_uid<K>(ctx: &Ctx, namespace: &str, name: &str) -> Result<Option<String>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Ok(Api::<K>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await?
        .and_then(|o| o.meta().uid.clone()))
}

/// A cached dependent of an owner: which cache, its key and metadata.
struct Dependent {
    key: GcKey,
    meta: ObjectMeta,
    blocks: bool,
}

/// Every cached object with an owner reference to `uid`.
fn dependents(ctx: &Ctx, uid: &str) -> Vec<Dependent> {
    let mut out = Vec::new();
    let mut push = |meta: &ObjectMeta, key: fn(Key) -> GcKey| {
        if let Some(r) = meta
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.uid == uid)
            && let Some(k) = Key::of(meta)
        {
            out.push(Dependent {
                key: key(k),
                meta: meta.clone(),
                blocks: r.block_owner_deletion == Some(true),
            });
        }
    };
    for p in ctx.pods.state() {
        push(&p.metadata, GcKey::Pod);
    }
    for r in ctx.replicasets.state() {
        push(&r.metadata, GcKey::ReplicaSet);
    }
    for j in ctx.jobs.state() {
        push(&j.metadata, GcKey::Job);
    }
    for r in ctx.controllerrevisions.state() {
        push(&r.metadata, GcKey::ControllerRevision);
    }
    for c in ctx.volumes.claims.state() {
        push(&c.metadata, GcKey::Claim);
    }
    out
}

fn has_dependents(ctx: &Ctx, meta: &ObjectMeta) -> bool {
    meta.uid
        .as_deref()
        .is_some_and(|uid| !dependents(ctx, uid).is_empty())
}

/// The cached metadata of an owner.
fn owner_meta(ctx: &Ctx, kind: OwnerKind, k: &Key) -> Option<ObjectMeta> {
    match kind {
        OwnerKind::ReplicaSet => ctx
            .replicasets
            .get(&k.obj_ref())
            .map(|o| o.metadata.clone()),
        OwnerKind::Deployment => ctx
            .deployments
            .get(&k.obj_ref())
            .map(|o| o.metadata.clone()),
        OwnerKind::StatefulSet => ctx
            .statefulsets
            .get(&k.obj_ref())
            .map(|o| o.metadata.clone()),
        OwnerKind::Job => ctx.jobs.get(&k.obj_ref()).map(|o| o.metadata.clone()),
        OwnerKind::CronJob => ctx.cronjobs.get(&k.obj_ref()).map(|o| o.metadata.clone()),
        OwnerKind::DaemonSet => ctx.daemonsets.get(&k.obj_ref()).map(|o| o.metadata.clone()),
        OwnerKind::ReplicationController => ctx
            .replicationcontrollers
            .get(&k.obj_ref())
            .map(|o| o.metadata.clone()),
    }
}

async fn reconcile_owner(
    ctx: &Ctx,
    kind: OwnerKind,
    k: &Key,
) -> Result<Option<Duration>, ControllerError> {
    let Some(meta) = owner_meta(ctx, kind, k) else {
        return Ok(None);
    };
    if !owner_pending(&meta) {
        return Ok(None);
    }
    let uid = meta.uid.clone().unwrap_or_default();
    let fins = meta.finalizers.clone().unwrap_or_default();
    let deps = dependents(ctx, &uid);
    if fins.iter().any(|f| f == ORPHAN) {
        for d in &deps {
            let refs = d.meta.owner_references.clone().unwrap_or_default();
            let gone = [uid.clone()];
            let dk = dependent_key(&d.key);
            remove_refs(ctx, &d.key, dk, &d.meta, &refs, &gone).await?;
        }
        info!(kind = kind.name(), namespace = %k.namespace, name = %k.name, dependents = deps.len(), "orphaned dependents");
        return remove_owner_finalizer(ctx, kind, k, &meta, ORPHAN).await;
    }
    // Foreground.
    for d in deps.iter().filter(|d| d.meta.deletion_timestamp.is_none()) {
        let policy = if has_dependents(ctx, &d.meta) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        delete_dependent(ctx, &d.key, &d.meta, policy).await?;
    }
    if deps.iter().any(|d| d.blocks) {
        // A dependent's deletion queues the owner again.
        return Ok(None);
    }
    info!(kind = kind.name(), namespace = %k.namespace, name = %k.name, "dependents gone; finishing foreground deletion");
    remove_owner_finalizer(ctx, kind, k, &meta, FOREGROUND).await
}

fn dependent_key(key: &GcKey) -> &Key {
    match key {
        GcKey::Pod(k)
        | GcKey::ReplicaSet(k)
        | GcKey::Job(k)
        | GcKey::ControllerRevision(k)
        | GcKey::Claim(k)
        | GcKey::Owner(_, k) => k,
    }
}

async fn delete_dependent(
    ctx: &Ctx,
    key: &GcKey,
    meta: &ObjectMeta,
    policy: PropagationPolicy,
) -> Result<(), ControllerError> {
    let k = dependent_key(key);
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        propagation_policy: Some(policy),
        ..Default::default()
    };
    let c = ctx.client.clone();
    let (kind, result) = match key {
        GcKey::Pod(_) => ("Pod", delete_in::<Pod>(c, k, &dp).await),
        GcKey::ReplicaSet(_) => ("ReplicaSet", delete_in::<ReplicaSet>(c, k, &dp).await),
        GcKey::Job(_) => ("Job", delete_in::<Job>(c, k, &dp).await),
        GcKey::ControllerRevision(_) => (
            "ControllerRevision",
            delete_in::<ControllerRevision>(c, k, &dp).await,
        ),
        GcKey::Claim(_) => (
            "PersistentVolumeClaim",
            delete_in::<PersistentVolumeClaim>(c, k, &dp).await,
        ),
        GcKey::Owner(..) => return Ok(()),
    };
    match result {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(ControllerError::api("delete", kind, &k.namespace, &k.name)(
            e,
        )),
    }
}

async fn delete_in<K>(client: kube::Client, k: &Key, dp: &DeleteParams) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client, &k.namespace)
        .delete(&k.name, dp)
        .await
        .map(|_| ())
}

async fn patch_in<K>(
    client: kube::Client,
    k: &Key,
    patch: &Patch<serde_json::Value>,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client, &k.namespace)
        .patch(&k.name, &PatchParams::default(), patch)
        .await
        .map(|_| ())
}

/// Removes `finalizer` from the owner (merge patch fenced by its resourceVersion); the API
/// server removes the owner once no finalizer is left.
async fn remove_owner_finalizer(
    ctx: &Ctx,
    kind: OwnerKind,
    k: &Key,
    meta: &ObjectMeta,
    finalizer: &str,
) -> Result<Option<Duration>, ControllerError> {
    let rest: Vec<&String> = meta
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .collect();
    let fins = if rest.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(rest)
    };
    let patch = Patch::Merge(serde_json::json!({"metadata": {
        "uid": meta.uid,
        "resourceVersion": meta.resource_version,
        "finalizers": fins,
    }}));
    let c = ctx.client.clone();
    let result = match kind {
        OwnerKind::ReplicaSet => patch_in::<ReplicaSet>(c, k, &patch).await,
        OwnerKind::Deployment => patch_in::<Deployment>(c, k, &patch).await,
        OwnerKind::StatefulSet => patch_in::<StatefulSet>(c, k, &patch).await,
        OwnerKind::Job => patch_in::<Job>(c, k, &patch).await,
        OwnerKind::CronJob => patch_in::<CronJob>(c, k, &patch).await,
        OwnerKind::DaemonSet => patch_in::<DaemonSet>(c, k, &patch).await,
        OwnerKind::ReplicationController => patch_in::<ReplicationController>(c, k, &patch).await,
    };
    match result {
        Ok(()) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(ControllerError::api(
            "remove finalizer",
            kind.name(),
            &k.namespace,
            &k.name,
        )(e)),
    }
}
