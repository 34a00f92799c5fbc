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
//!    later requeues the key for that moment. A failed create or delete sets the
//!    `ReplicaFailure` condition (`FailedCreate`/`FailedDelete`, the error as message) until
//!    a sync manages the replicas without error.
//!
//! The same [`sync`] runs the v1 ReplicationController ([`crate::replicationcontroller`])
//! through a conversion, parameterised by [`SetKind`] and the owner's expectations.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tracing::{debug, info};

use crate::context::{ControllerError, Ctx, Key, parse_selector};
use crate::expectations::{Expectations, PodId};
use crate::pods::{self, PodName};

/// Most pods created or deleted in one reconcile (upstream's burstReplicas).
const BURST: usize = 500;

/// The kind a replica set is served as: apps/v1 ReplicaSet or its legacy twin v1
/// ReplicationController (converted to a ReplicaSet for the shared logic, as upstream's
/// replication manager does).
#[derive(Clone, Copy)]
pub(crate) struct SetKind {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
}

pub(crate) const REPLICA_SET: SetKind = SetKind {
    api_version: "apps/v1",
    kind: "ReplicaSet",
};

pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let Some(rs) = ctx.cached_owner(&ctx.replicasets, &ctx.rs_expectations, key) else {
        return Ok(None);
    };
    let (status, requeue, manage_error) =
        sync(ctx, key, REPLICA_SET, &ctx.rs_expectations, &rs).await?;
    if let Some(status) = status
        && !status_eq(&rs.status.clone().unwrap_or_default(), &status)
    {
        let mut updated = (*rs).clone();
        updated.status = Some(status);
        ctx.replace_status("ReplicaSet", &key.namespace, &key.name, &updated)
            .await?;
    }
    match manage_error {
        Some(e) => Err(e),
        None => Ok(requeue),
    }
}

/// One sync of a replica set (steps 1–3 above): the status to write (`None` when the set
/// has no spec), when to look again, and the error of managing replicas (reported after
/// the status is written, as upstream does).
pub(crate) async fn sync(
    ctx: &Ctx,
    key: &Key,
    kind: SetKind,
    expectations: &Expectations,
    rs: &ReplicaSet,
) -> Result<
    (
        Option<ReplicaSetStatus>,
        Option<Duration>,
        Option<ControllerError>,
    ),
    ControllerError,
> {
    let exp_key = key.to_string();
    let Some(spec) = rs.spec.as_ref() else {
        return Ok((None, None, None));
    };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let ns = key.namespace.as_str();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let selector = parse_selector(kind.kind, &rs.metadata, Some(&spec.selector))?;
    let owner = pods::controller_owner_ref(kind.api_version, kind.kind, &key.name, &uid);

    let owned = claim_pods(ctx, ns, &uid, &owner, selector.as_ref(), deleting).await?;
    let active: Vec<&Pod> = owned
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| pods::is_active(p))
        .collect();

    let satisfied = expectations.satisfied(&exp_key, |id| ctx.seen(ns, id));
    let want = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    let mut manage_error = None;
    if satisfied && !deleting {
        let set = Managed {
            exp_key: &exp_key,
            expectations,
            ns,
            rs,
            owner: &owner,
        };
        if let Err(e) = manage_replicas(ctx, &set, &active, want).await {
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
        if pods::available(p, min_ready, now, &mut requeue) {
            available += 1;
        }
    }
    status.fully_labeled_replicas = Some(labeled);
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    set_replica_failure(
        &mut status,
        manage_error.as_ref(),
        active.len().cmp(&want),
        now,
    );
    // Add a second so that the pod is surely available when we look again.
    Ok((
        Some(status),
        requeue.map(|d| d + Duration::from_secs(1)),
        manage_error,
    ))
}

/// Upstream's `ReplicaFailure` condition: set (reason `FailedCreate` or `FailedDelete`, the
/// error as message) when managing replicas failed and it is not set yet; removed once a
/// sync manages them without error.
pub(crate) fn set_replica_failure(
    status: &mut ReplicaSetStatus,
    error: Option<&ControllerError>,
    active_vs_want: std::cmp::Ordering,
    now: k8s_openapi::jiff::Timestamp,
) {
    const TYPE: &str = "ReplicaFailure";
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let has = conditions.iter().any(|c| c.type_ == TYPE);
    match error {
        Some(e) if !has => {
            let reason = match active_vs_want {
                std::cmp::Ordering::Less => "FailedCreate",
                std::cmp::Ordering::Greater => "FailedDelete",
                std::cmp::Ordering::Equal => "",
            };
            let message = e
                .status()
                .map(|s| s.message.clone())
                .unwrap_or_else(|| e.to_string());
            conditions.push(ReplicaSetCondition {
                type_: TYPE.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has => conditions.retain(|c| c.type_ != TYPE),
        _ => {}
    }
    if conditions.is_empty() {
        status.conditions = None;
    }
}

pub(crate) fn status_eq(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let types = |s: &ReplicaSetStatus| {
        s.conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect::<Vec<_>>()
    };
    a.replicas == b.replicas
        && n(a.fully_labeled_replicas) == n(b.fully_labeled_replicas)
        && n(a.ready_replicas) == n(b.ready_replicas)
        && n(a.available_replicas) == n(b.available_replicas)
        && a.observed_generation == b.observed_generation
        && types(a) == types(b)
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

/// The set being managed and where its expectations are kept.
struct Managed<'a> {
    exp_key: &'a str,
    expectations: &'a Expectations,
    ns: &'a str,
    rs: &'a ReplicaSet,
    owner: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
}

async fn manage_replicas(
    ctx: &Ctx,
    set: &Managed<'_>,
    active: &[&Pod],
    want: usize,
) -> Result<(), ControllerError> {
    let Managed {
        exp_key,
        expectations,
        ns,
        rs,
        owner,
    } = *set;
    let name = rs.metadata.name.clone().unwrap_or_default();
    let Some(template) = rs.spec.as_ref().and_then(|s| s.template.as_ref()) else {
        return Ok(());
    };
    match diff(active.len(), want) {
        Diff::None => Ok(()),
        Diff::Create(n) => {
            info!(%ns, kind = owner.kind, name = %name, count = n, "creating pods");
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
                        Ok(p) => expectations.created(
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
            info!(%ns, kind = owner.kind, name = %name, count = n, "deleting pods");
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
                    Ok(_) => expectations.deleted(
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
    fn replica_failure_is_set_once_and_cleared_by_a_clean_sync() {
        let at = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
        let err = ControllerError::CacheNotReady("pod");
        let mut s = ReplicaSetStatus::default();
        set_replica_failure(&mut s, Some(&err), std::cmp::Ordering::Less, at);
        let c = s.conditions.clone().unwrap_or_default();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (
                c[0].type_.as_str(),
                c[0].status.as_str(),
                c[0].reason.as_deref()
            ),
            ("ReplicaFailure", "True", Some("FailedCreate"))
        );
        // Kept (not duplicated) while failing, removed after a clean sync.
        set_replica_failure(&mut s, Some(&err), std::cmp::Ordering::Greater, at);
        assert_eq!(s.conditions.as_ref().map(Vec::len), Some(1));
        set_replica_failure(&mut s, None, std::cmp::Ordering::Equal, at);
        assert_eq!(s.conditions, None);
    }

    #[test]
    fn diff_is_bounded_by_burst() {
        assert_eq!(diff(1, 3), Diff::Create(2));
        assert_eq!(diff(5, 3), Diff::Delete(2));
        assert_eq!(diff(3, 3), Diff::None);
        assert_eq!(diff(0, 10_000), Diff::Create(BURST));
    }
}
