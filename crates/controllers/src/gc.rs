//! The garbage collector (background propagation).
//!
//! A dependent (a pod, a ReplicaSet or a Job) lists its owners in `metadata.ownerReferences`.
//! When an owner is deleted, the dependents that point at it are queued. For each
//! dependent the collector checks every owner reference of a kind it knows (apps/v1
//! ReplicaSet, Deployment, StatefulSet; batch/v1 Job): first in the cache, and when the cache does not
//! have the owner's UID, with a live GET (the cache may lag; a GET 404 or a different UID
//! means the owner is gone). Then:
//!
//! * all owners gone → delete the dependent (UID precondition, background propagation, so
//!   its own dependents are collected the same way in turn);
//! * some owners gone → remove the dangling references (merge patch fenced by the
//!   resourceVersion);
//! * owners of kinds it does not know are assumed present.
//!
//! Foreground and orphan propagation are not implemented (the API server does not set their
//! finalizers); a DELETE with those policies behaves as background.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PatchParams, Preconditions, PropagationPolicy};
use kube::{Api, Resource};
use tracing::info;

use crate::context::{ControllerError, Ctx, GcKey, Key};

pub(crate) async fn reconcile(ctx: &Ctx, key: &GcKey) -> Result<Option<Duration>, ControllerError> {
    let (meta, kind, k) = match key {
        GcKey::Pod(k) => match ctx.pods.get(&k.obj_ref()) {
            Some(p) => (p.metadata.clone(), "Pod", k),
            None => return Ok(None),
        },
        GcKey::ReplicaSet(k) => match ctx.replicasets.get(&k.obj_ref()) {
            Some(r) => (r.metadata.clone(), "ReplicaSet", k),
            None => return Ok(None),
        },
        GcKey::Job(k) => match ctx.jobs.get(&k.obj_ref()) {
            Some(j) => (j.metadata.clone(), "Job", k),
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
        info!(kind, namespace = %k.namespace, name = %k.name, "deleting dependent of a deleted owner");
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid.clone(),
                resource_version: None,
            }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        let result = match key {
            GcKey::Pod(_) => Api::<Pod>::namespaced(ctx.client.clone(), &k.namespace)
                .delete(&k.name, &dp)
                .await
                .map(|_| ()),
            GcKey::ReplicaSet(_) => Api::<ReplicaSet>::namespaced(ctx.client.clone(), &k.namespace)
                .delete(&k.name, &dp)
                .await
                .map(|_| ()),
            GcKey::Job(_) => Api::<Job>::namespaced(ctx.client.clone(), &k.namespace)
                .delete(&k.name, &dp)
                .await
                .map(|_| ()),
        };
        return match result {
            Ok(()) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
            Err(e) => Err(ControllerError::api("delete", kind, &k.namespace, &k.name)(
                e,
            )),
        };
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
    let pp = PatchParams::default();
    let result = match key {
        GcKey::Pod(_) => Api::<Pod>::namespaced(ctx.client.clone(), &k.namespace)
            .patch(&k.name, &pp, &patch)
            .await
            .map(|_| ()),
        GcKey::ReplicaSet(_) => Api::<ReplicaSet>::namespaced(ctx.client.clone(), &k.namespace)
            .patch(&k.name, &pp, &patch)
            .await
            .map(|_| ()),
        GcKey::Job(_) => Api::<Job>::namespaced(ctx.client.clone(), &k.namespace)
            .patch(&k.name, &pp, &patch)
            .await
            .map(|_| ()),
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
        _ => return Ok(true),
    };
    if cached_uid.as_deref() == Some(r.uid.as_str()) {
        return Ok(true);
    }
    let live = match r.kind.as_str() {
        "Job" => live_uid::<Job>(ctx, namespace, &r.name).await,
        "ReplicaSet" => live_uid::<ReplicaSet>(ctx, namespace, &r.name).await,
        "Deployment" => live_uid::<Deployment>(ctx, namespace, &r.name).await,
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
