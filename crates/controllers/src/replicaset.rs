//! The ReplicaSet controller.
//!
//! For each ReplicaSet (key `ns/name`), one reconcile:
//!
//! 1. **Claim.** Pods of the namespace whose controller reference is this ReplicaSet (by
//!    UID) and that match its selector are its pods. Owned pods that no longer match are
//!    released (controller reference removed); orphans that match are adopted (controller
//!    reference added). Both writes are merge patches carrying the pod's UID and
//!    resourceVersion as preconditions, so they never act on a pod that changed meanwhile. A
//!    ReplicaSet being deleted adopts and releases nothing.
//! 2. **Manage replicas**, only when its expectations are satisfied (every create and
//!    delete it issued is visible in the pod cache) and it is not being deleted. *Active*
//!    pods (not Succeeded/Failed, no deletionTimestamp) are counted: fewer than
//!    `spec.replicas` → create the difference from the template in slow-start batches
//!    (1, 2, 4, …; a failure stops the rest); more → delete the excess, ranked by
//!    [`pods::delete_order`] (unscheduled, pending, not ready, newest first), each delete
//!    with a UID precondition. A failed pod is therefore replaced at once; it stays in the
//!    API (as upstream) for inspection.
//! 3. **Status** (`replicas` = active pods, `fullyLabeledReplicas`, `readyReplicas`,
//!    `availableReplicas` = Ready for `minReadySeconds`, `observedGeneration`) is written
//!    with the cached resourceVersion when it changed. A pod that will become available
//!    later requeues the key for that moment.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tracing::{debug, info};

use crate::context::{ControllerError, Ctx, Key, parse_selector};
use crate::expectations::PodId;
use crate::pods::{self, PodName};

/// Most pods created or deleted in one reconcile (upstream's burstReplicas).
const BURST: usize = 500;

pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let exp_key = key.to_string();
    let Some(rs) = ctx.cached_owner(&ctx.replicasets, &ctx.rs_expectations, key) else {
        return Ok(None);
    };
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(None);
    };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let ns = key.namespace.as_str();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let selector = parse_selector("ReplicaSet", &rs.metadata, Some(&spec.selector))?;
    let owner = pods::owner_ref("ReplicaSet", &key.name, &uid);

    let owned = claim_pods(ctx, ns, &uid, &owner, selector.as_ref(), deleting).await?;
    let active: Vec<&Pod> = owned
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| pods::is_active(p))
        .collect();

    let satisfied = ctx
        .rs_expectations
        .satisfied(&exp_key, |id| ctx.seen(ns, id));
    let mut manage_error = None;
    if satisfied && !deleting {
        let want = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
        if let Err(e) = manage_replicas(ctx, &exp_key, ns, &rs, &owner, &active, want).await {
            manage_error = Some(e);
        }
    }

    let now = ctx.now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut requeue: Option<Duration> = None;
    let mut status = ReplicaSetStatus {
        replicas: i32::try_from(active.len()).unwrap_or(i32::MAX),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut labeled, mut ready, mut available) = (0, 0, 0);
    for p in &active {
        if let Some(t) = &spec.template
            && pods::fully_labeled(p, t)
        {
            labeled += 1;
        }
        if pods::is_ready(p) {
            ready += 1;
        }
        match pods::availability(p, min_ready, now) {
            Ok(()) => available += 1,
            Err(Some(wait)) => requeue = Some(requeue.map_or(wait, |r| r.min(wait))),
            Err(None) => {}
        }
    }
    status.fully_labeled_replicas = Some(labeled);
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    write_status(ctx, &rs, status).await?;
    if let Some(e) = manage_error {
        return Err(e);
    }
    // Add a second so that the pod is surely available when we look again.
    Ok(requeue.map(|d| d + Duration::from_secs(1)))
}

async fn write_status(
    ctx: &Ctx,
    rs: &ReplicaSet,
    status: ReplicaSetStatus,
) -> Result<(), ControllerError> {
    let current = rs.status.clone().unwrap_or_default();
    if status_eq(&current, &status) {
        return Ok(());
    }
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let mut updated = rs.clone();
    updated.status = Some(status);
    ctx.replace_status("ReplicaSet", &ns, &name, &updated).await
}

fn status_eq(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    a.replicas == b.replicas
        && n(a.fully_labeled_replicas) == n(b.fully_labeled_replicas)
        && n(a.ready_replicas) == n(b.ready_replicas)
        && n(a.available_replicas) == n(b.available_replicas)
        && a.observed_generation == b.observed_generation
}

/// Adopts matching orphans, releases owned pods that stopped matching; returns the owned
/// pods that match.
pub(crate) async fn claim_pods(
    ctx: &Ctx,
    ns: &str,
    uid: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    selector: Option<&podvisor_api::selectors::LabelSelector>,
    deleting: bool,
) -> Result<Vec<Arc<Pod>>, ControllerError> {
    let mut owned = Vec::new();
    for pod in ctx.pods_in(ns) {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let matches = selector.is_some_and(|s| s.matches(&labels));
        match pods::controller_ref(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if !deleting && pod.metadata.deletion_timestamp.is_none() {
                    release(ctx, &pod, uid).await?;
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting && pod.metadata.deletion_timestamp.is_none() {
                    match adopt(ctx, &pod, owner.clone()).await {
                        Ok(adopted) => owned.push(Arc::new(adopted)),
                        // It changed or went away: the next event brings us back.
                        Err(e) if e.is_conflict() || e.is_not_found() || is_invalid(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(owned)
}

fn is_invalid(e: &ControllerError) -> bool {
    // A failed JSON-patch `test` operation is reported as 422 by some servers.
    e.status().is_some_and(|s| s.code == 422)
}

/// A merge patch replacing the owner references (dropping the field when none is left, as
/// upstream shows it), fenced by the pod's UID and resourceVersion (the API server treats a
/// resourceVersion in the patch as a precondition).
pub(crate) fn owner_refs_patch(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> Patch<serde_json::Value> {
    let refs = if refs.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(refs)
    };
    Patch::Merge(serde_json::json!({"metadata": {
        "uid": meta.uid,
        "resourceVersion": meta.resource_version,
        "ownerReferences": refs,
    }}))
}

pub(crate) async fn adopt(
    ctx: &Ctx,
    pod: &Pod,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<Pod, ControllerError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner);
    let patch = owner_refs_patch(&pod.metadata, &refs);
    debug!(%ns, pod = %name, "adopting pod");
    ctx.pods_api(&ns)
        .patch(&name, &PatchParams::default(), &patch)
        .await
        .map_err(ControllerError::api("adopt", "Pod", &ns, &name))
}

async fn release(ctx: &Ctx, pod: &Pod, owner_uid: &str) -> Result<(), ControllerError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_uid);
    let patch = owner_refs_patch(&pod.metadata, &refs);
    debug!(%ns, pod = %name, "releasing pod");
    match ctx
        .pods_api(&ns)
        .patch(&name, &PatchParams::default(), &patch)
        .await
        .map_err(ControllerError::api("release", "Pod", &ns, &name))
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() || e.is_not_found() || is_invalid(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Slow-start batch sizes for `n` creates: 1, 2, 4, … (upstream's `slowStartBatch`).
pub(crate) fn slow_start_batches(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut size) = (n, 1usize);
    while left > 0 {
        let b = size.min(left);
        out.push(b);
        left -= b;
        size = size.saturating_mul(2);
    }
    out
}

/// What to do about the replica count: create or delete how many.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Diff {
    Create(usize),
    Delete(usize),
    None,
}

pub(crate) fn diff(active: usize, want: usize) -> Diff {
    if active < want {
        Diff::Create((want - active).min(BURST))
    } else if active > want {
        Diff::Delete((active - want).min(BURST))
    } else {
        Diff::None
    }
}

async fn manage_replicas(
    ctx: &Ctx,
    exp_key: &str,
    ns: &str,
    rs: &ReplicaSet,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    active: &[&Pod],
    want: usize,
) -> Result<(), ControllerError> {
    let name = rs.metadata.name.clone().unwrap_or_default();
    let Some(template) = rs.spec.as_ref().and_then(|s| s.template.as_ref()) else {
        return Ok(());
    };
    match diff(active.len(), want) {
        Diff::None => Ok(()),
        Diff::Create(n) => {
            info!(%ns, replicaset = %name, count = n, "creating pods");
            let api = ctx.pods_api(ns);
            for batch in slow_start_batches(n) {
                let results = join_all((0..batch).map(|_| {
                    let pod = pods::pod_from_template(
                        template,
                        ns,
                        owner.clone(),
                        PodName::Generate(format!("{name}-")),
                    );
                    let api = api.clone();
                    async move { api.create(&PostParams::default(), &pod).await }
                }))
                .await;
                let mut first_error = None;
                for r in results {
                    match r {
                        Ok(p) => ctx.rs_expectations.created(
                            exp_key,
                            PodId {
                                name: p.metadata.name.unwrap_or_default(),
                                uid: p.metadata.uid.unwrap_or_default(),
                            },
                        ),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    return Err(ControllerError::api(
                        "create",
                        "Pod",
                        ns,
                        &format!("{name}-"),
                    )(e));
                }
            }
            Ok(())
        }
        Diff::Delete(n) => {
            let mut ranked: Vec<&Pod> = active.to_vec();
            ranked.sort_by(|a, b| pods::delete_order(a, b));
            info!(%ns, replicaset = %name, count = n, "deleting pods");
            let api = ctx.pods_api(ns);
            let results = join_all(ranked.into_iter().take(n).map(|p| {
                let api = api.clone();
                let pod_name = p.metadata.name.clone().unwrap_or_default();
                let uid = p.metadata.uid.clone().unwrap_or_default();
                async move {
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: Some(uid.clone()),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    (pod_name.clone(), uid, api.delete(&pod_name, &dp).await)
                }
            }))
            .await;
            let mut first_error = None;
            for (pod_name, uid, r) in results {
                match r {
                    Ok(_) => ctx.rs_expectations.deleted(
                        exp_key,
                        PodId {
                            name: pod_name,
                            uid,
                        },
                    ),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => {
                        first_error.get_or_insert((pod_name, e));
                    }
                }
            }
            if let Some((pod_name, e)) = first_error {
                return Err(ControllerError::api("delete", "Pod", ns, &pod_name)(e));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_doubles() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
    }

    #[test]
    fn diff_is_bounded_by_burst() {
        assert_eq!(diff(1, 3), Diff::Create(2));
        assert_eq!(diff(5, 3), Diff::Delete(2));
        assert_eq!(diff(3, 3), Diff::None);
        assert_eq!(diff(0, 10_000), Diff::Create(BURST));
    }
}
