//! The StatefulSet controller.
//!
//! Pods are `<sts>-0 … <sts>-(N-1)`, owned by the StatefulSet (controller reference), with
//! the template's labels plus `statefulset.kubernetes.io/pod-name` and
//! `apps.kubernetes.io/pod-index`, `hostname` = pod name and `subdomain` = `serviceName`.
//! One reconcile, when the expectations are satisfied:
//!
//! * ordinals `0..N` in order: a missing pod is created under its fixed name; a Failed or
//!   Succeeded pod is deleted (it is recreated under the same name once gone); a
//!   terminating pod is waited for — the replacement has the SAME name, so it is created
//!   only after the old object has left the API (at most one pod per identity, spec §5.6).
//!   With `OrderedReady` the walk stops at the first pod that was just created, is
//!   terminating, or is not Running and Ready; with `Parallel` it goes on.
//! * ordinals ≥ N are condemned: with `OrderedReady`, only when nothing is terminating and
//!   every kept pod is Running and Ready, the highest one is deleted, one at a time; with
//!   `Parallel`, all at once.
//! * status: `replicas` (pods that exist), `readyReplicas`, `availableReplicas`
//!   (`minReadySeconds`), `currentReplicas`/`updatedReplicas`, `observedGeneration`.
//!
//! # Claims (`volumeClaimTemplates`)
//!
//! Before the pod of ordinal `n` is created, each template's claim `<template>-<sts>-<n>`
//! is created if missing (the template's labels plus the selector's `matchLabels`;
//! `SuccessfulCreate`/`FailedCreate` events as upstream) and the pod gets a
//! `persistentVolumeClaim` volume of the template's name in place of any volume of that
//! name. A claim being deleted holds the pod back until it is gone. A recreated pod
//! therefore finds the same claim, and so the same data; claims are never deleted with
//! the pod. `persistentVolumeClaimRetentionPolicy` (upstream's owner references):
//! `whenDeleted: Delete` makes the StatefulSet an owner of its claims (the garbage
//! collector deletes them with it); `whenScaled: Delete` makes the pod of a condemned
//! ordinal the claims' owner before the pod is deleted (so they go with it); `Retain`
//! removes the respective reference.
//!
//! Not done: template updates (RollingUpdate of existing pods, ControllerRevisions),
//! adoption of orphans.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, PostParams, Preconditions};
use podvisor_kit::events::EventType;
use tracing::info;

use crate::context::{ControllerError, Ctx, Key, replace};
use crate::expectations::PodId;
use crate::pods::{self, PodName};

/// The ordinal of `pod_name` if it is `<sts>-<n>`.
pub(crate) fn ordinal(sts: &str, pod_name: &str) -> Option<usize> {
    let rest = pod_name.strip_prefix(sts)?.strip_prefix('-')?;
    if rest.is_empty()
        || !rest.bytes().all(|b| b.is_ascii_digit())
        || (rest.len() > 1 && rest.starts_with('0'))
    {
        return None;
    }
    rest.parse().ok()
}

pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let exp_key = key.to_string();
    let Some(sts) = ctx.cached_owner(&ctx.statefulsets, &ctx.sts_expectations, key) else {
        return Ok(None);
    };
    let Some(spec) = sts.spec.as_ref() else {
        return Ok(None);
    };
    let ns = key.namespace.as_str();
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    let mut by_ord: BTreeMap<usize, std::sync::Arc<Pod>> = BTreeMap::new();
    for p in ctx.pods_in(ns) {
        if pods::controller_ref(&p.metadata).is_some_and(|o| o.uid == uid)
            && let Some(o) = p
                .metadata
                .name
                .as_deref()
                .and_then(|n| ordinal(&key.name, n))
        {
            by_ord.insert(o, p);
        }
    }
    let want = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    if sts.metadata.deletion_timestamp.is_none()
        && ctx
            .sts_expectations
            .satisfied(&exp_key, |id| ctx.seen(ns, id))
    {
        manage(ctx, &sts, key, &exp_key, &by_ord, want).await?;
    }
    let now = ctx.now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut requeue = None;
    let (mut ready, mut avail) = (0, 0);
    for p in by_ord.values() {
        if pods::is_running_and_ready(p) {
            ready += 1;
        }
        match pods::availability(p, min_ready, now) {
            Ok(()) if pods::is_running_and_ready(p) => avail += 1,
            Err(Some(w)) => requeue = Some(w + Duration::from_secs(1)),
            _ => {}
        }
    }
    let n = i32::try_from(by_ord.len()).unwrap_or(i32::MAX);
    let old = sts.status.clone().unwrap_or_default();
    let status = StatefulSetStatus {
        replicas: n,
        ready_replicas: Some(ready),
        available_replicas: Some(avail),
        current_replicas: Some(n),
        updated_replicas: Some(n),
        observed_generation: sts.metadata.generation,
        collision_count: old.collision_count,
        current_revision: old.current_revision.clone(),
        update_revision: old.update_revision.clone(),
        conditions: old.conditions.clone(),
    };
    if serde_json::to_value(&status).ok() != serde_json::to_value(&old).ok() {
        let mut s = (*sts).clone();
        s.status = Some(status);
        ctx.replace_status("StatefulSet", ns, &key.name, &s).await?;
    }
    Ok(requeue)
}

async fn delete(ctx: &Ctx, exp_key: &str, ns: &str, p: &Pod) -> Result<(), ControllerError> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let uid = p.metadata.uid.clone().unwrap_or_default();
    info!(%ns, pod = %name, "statefulset deleting pod");
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match ctx.pods_api(ns).delete(&name, &dp).await {
        Ok(_) => {
            ctx.sts_expectations.deleted(exp_key, PodId { name, uid });
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(ControllerError::api("delete", "Pod", ns, &name)(e)),
    }
}

async fn manage(
    ctx: &Ctx,
    sts: &StatefulSet,
    key: &Key,
    exp_key: &str,
    by_ord: &BTreeMap<usize, std::sync::Arc<Pod>>,
    want: usize,
) -> Result<(), ControllerError> {
    let Some(spec) = sts.spec.as_ref() else {
        return Ok(());
    };
    let ns = key.namespace.as_str();
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    let mut all_healthy = true;
    for ord in 0..want {
        if let Some(p) = by_ord.get(&ord)
            && p.metadata.deletion_timestamp.is_none()
        {
            update_claim_owners(ctx, sts, ns, ord, p, false).await?;
        }
        match by_ord.get(&ord) {
            None => {
                let name = format!("{}-{ord}", key.name);
                let mut pod = pods::pod_from_template(
                    &spec.template,
                    ns,
                    pods::owner_ref("StatefulSet", &key.name, &uid),
                    PodName::Fixed(name.clone()),
                );
                let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
                labels.insert("statefulset.kubernetes.io/pod-name".into(), name.clone());
                labels.insert("apps.kubernetes.io/pod-index".into(), ord.to_string());
                if let Some(ps) = pod.spec.as_mut() {
                    ps.hostname = Some(name.clone());
                    if !spec.service_name.as_deref().unwrap_or_default().is_empty() {
                        ps.subdomain = spec.service_name.clone();
                    }
                }
                if !ensure_claims(ctx, sts, ns, ord, &name).await? {
                    // A claim of this ordinal is being deleted: wait for it to go.
                    all_healthy = false;
                    if !parallel {
                        return Ok(());
                    }
                    continue;
                }
                use_claims(&mut pod, sts, ord);
                info!(%ns, pod = %name, "statefulset creating pod");
                match ctx.pods_api(ns).create(&PostParams::default(), &pod).await {
                    Ok(p) => ctx.sts_expectations.created(
                        exp_key,
                        PodId {
                            name,
                            uid: p.metadata.uid.unwrap_or_default(),
                        },
                    ),
                    // The old pod of that name is still there: wait for it to go.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(ControllerError::api("create", "Pod", ns, &name)(e)),
                }
                all_healthy = false;
                if !parallel {
                    return Ok(());
                }
            }
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                all_healthy = false;
                if !parallel {
                    return Ok(());
                }
            }
            Some(p) if pods::is_terminal(p) => {
                delete(ctx, exp_key, ns, p).await?;
                all_healthy = false;
                if !parallel {
                    return Ok(());
                }
            }
            Some(p) if !pods::is_running_and_ready(p) => {
                all_healthy = false;
                if !parallel {
                    return Ok(());
                }
            }
            Some(_) => {}
        }
    }
    let condemned: Vec<&std::sync::Arc<Pod>> = by_ord.range(want..).map(|(_, p)| p).rev().collect();
    if parallel {
        for p in condemned {
            if p.metadata.deletion_timestamp.is_none() {
                condemn_claims(ctx, sts, ns, p).await?;
                delete(ctx, exp_key, ns, p).await?;
            }
        }
        return Ok(());
    }
    if !all_healthy
        || condemned
            .iter()
            .any(|p| p.metadata.deletion_timestamp.is_some())
    {
        return Ok(());
    }
    if let Some(p) = condemned.first() {
        condemn_claims(ctx, sts, ns, p).await?;
        delete(ctx, exp_key, ns, p).await?;
    }
    Ok(())
}

/// The claim of template `template` for ordinal `ord` of StatefulSet `sts`.
pub(crate) fn claim_name(template: &str, sts: &str, ord: usize) -> String {
    format!("{template}-{sts}-{ord}")
}

fn templates(sts: &StatefulSet) -> &[PersistentVolumeClaim] {
    sts.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or(&[])
}

fn sts_name(sts: &StatefulSet) -> &str {
    sts.metadata.name.as_deref().unwrap_or_default()
}

/// The retention policy: (whenDeleted, whenScaled), `Retain` by default.
fn retention(sts: &StatefulSet) -> (&str, &str) {
    let p = sts
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    (
        p.and_then(|p| p.when_deleted.as_deref())
            .unwrap_or("Retain"),
        p.and_then(|p| p.when_scaled.as_deref()).unwrap_or("Retain"),
    )
}

fn sts_owner(sts: &StatefulSet) -> OwnerReference {
    let uid = sts.metadata.uid.as_deref().unwrap_or("");
    pods::plain_owner_ref("apps/v1", "StatefulSet", sts_name(sts), uid)
}

fn pod_owner(pod: &Pod) -> OwnerReference {
    let (name, uid) = (&pod.metadata.name, &pod.metadata.uid);
    let (name, uid) = (name.as_deref().unwrap_or(""), uid.as_deref().unwrap_or(""));
    pods::plain_owner_ref("v1", "Pod", name, uid)
}

/// The owner references a claim of ordinal `ord` should carry (upstream's
/// `updateClaimOwnerRefForSetAndPod`): `refs` with the StatefulSet's and the pod's
/// references added or removed.
fn wanted_owners(
    sts: &StatefulSet,
    pod: Option<&Pod>,
    condemned: bool,
    refs: &[OwnerReference],
) -> Vec<OwnerReference> {
    let (when_deleted, when_scaled) = retention(sts);
    let set = sts_owner(sts);
    let mut out: Vec<OwnerReference> = refs.to_vec();
    let mut put = |r: &OwnerReference, on: bool| {
        let has = out.iter().position(|x| x.uid == r.uid);
        match (has, on) {
            (None, true) => out.push(r.clone()),
            (Some(i), false) => {
                out.remove(i);
            }
            _ => {}
        }
    };
    let scaled_delete = condemned && when_scaled == "Delete";
    put(&set, when_deleted == "Delete" && !scaled_delete);
    if let Some(p) = pod {
        put(&pod_owner(p), scaled_delete);
    }
    out
}

/// Creates the missing claims of ordinal `ord` (for pod `pod_name`). False when one is
/// being deleted.
async fn ensure_claims(
    ctx: &Ctx,
    sts: &StatefulSet,
    ns: &str,
    ord: usize,
    pod_name: &str,
) -> Result<bool, ControllerError> {
    let set_name = sts_name(sts);
    let selector = sts
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    for t in templates(sts) {
        let tname = t.metadata.name.as_deref().unwrap_or_default();
        let name = claim_name(tname, set_name, ord);
        if let Some(c) = ctx.volumes.claim(ns, &name) {
            if c.metadata.deletion_timestamp.is_some() {
                ctx.event_about(
                    "statefulset-controller",
                    sts,
                    EventType::Warning,
                    "FailedCreate",
                    format!("create Pod {pod_name} in StatefulSet {set_name} failed error: pvc {name} is being deleted"),
                );
                return Ok(false);
            }
            continue;
        }
        let mut labels = t.metadata.labels.clone().unwrap_or_default();
        labels.extend(selector.clone());
        let claim = PersistentVolumeClaim {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_string()),
                labels: Some(labels),
                annotations: t.metadata.annotations.clone(),
                owner_references: Some(wanted_owners(sts, None, false, &[]))
                    .filter(|r| !r.is_empty()),
                ..Default::default()
            },
            spec: t.spec.clone(),
            status: None,
        };
        let api: kube::Api<PersistentVolumeClaim> = kube::Api::namespaced(ctx.client.clone(), ns);
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => ctx.event_about(
                "statefulset-controller",
                sts,
                EventType::Normal,
                "SuccessfulCreate",
                format!("create Claim {name} Pod {pod_name} in StatefulSet {set_name} success"),
            ),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                ctx.event_about(
                    "statefulset-controller",
                    sts,
                    EventType::Warning,
                    "FailedCreate",
                    format!("create Claim {name} for Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
                );
                return Err(ControllerError::api(
                    "create",
                    "PersistentVolumeClaim",
                    ns,
                    &name,
                )(e));
            }
        }
    }
    Ok(true)
}

/// Upstream's `updateStorage`: a claim volume per template, replacing a volume of the
/// template's name.
fn use_claims(pod: &mut Pod, sts: &StatefulSet, ord: usize) {
    let tmpls = templates(sts);
    if tmpls.is_empty() {
        return;
    }
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let set_name = sts_name(sts);
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    for t in tmpls {
        let tname = t.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != tname);
        volumes.push(Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&tname, set_name, ord),
                read_only: None,
            }),
            ..Default::default()
        });
    }
}

/// Brings the owner references of ordinal `ord`'s claims in line with the retention
/// policy. Returns whether a claim was written.
async fn update_claim_owners(
    ctx: &Ctx,
    sts: &StatefulSet,
    ns: &str,
    ord: usize,
    pod: &Pod,
    condemned: bool,
) -> Result<bool, ControllerError> {
    let mut wrote = false;
    for t in templates(sts) {
        let tname = t.metadata.name.as_deref().unwrap_or_default();
        let name = claim_name(tname, sts_name(sts), ord);
        let Some(c) = ctx.volumes.claim(ns, &name) else {
            continue;
        };
        if c.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let refs = c.metadata.owner_references.clone().unwrap_or_default();
        let want = wanted_owners(sts, Some(pod), condemned, &refs);
        if want == refs {
            continue;
        }
        let mut claim = (*c).clone();
        claim.metadata.owner_references = Some(want);
        let api: kube::Api<PersistentVolumeClaim> = kube::Api::namespaced(ctx.client.clone(), ns);
        replace(&api, "PersistentVolumeClaim", ns, &name, &claim).await?;
        wrote = true;
    }
    Ok(wrote)
}

/// Before a condemned pod is deleted: its claims follow `whenScaled`.
async fn condemn_claims(
    ctx: &Ctx,
    sts: &StatefulSet,
    ns: &str,
    pod: &Pod,
) -> Result<(), ControllerError> {
    let Some(ord) = pod
        .metadata
        .name
        .as_deref()
        .and_then(|n| ordinal(sts_name(sts), n))
    else {
        return Ok(());
    };
    update_claim_owners(ctx, sts, ns, ord, pod, true).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(when_deleted: &str, when_scaled: &str) -> StatefulSet {
        let mut s = StatefulSet::default();
        s.metadata.name = Some("db".into());
        s.metadata.uid = Some("set-uid".into());
        let spec = s.spec.get_or_insert_with(Default::default);
        spec.persistent_volume_claim_retention_policy = Some(
            k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(when_deleted.into()),
                when_scaled: Some(when_scaled.into()),
            },
        );
        spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
            metadata: kube::api::ObjectMeta {
                name: Some("data".into()),
                ..Default::default()
            },
            ..Default::default()
        }]);
        s
    }

    fn pod(name: &str, uid: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(uid.into());
        p
    }

    fn uids(refs: &[OwnerReference]) -> Vec<&str> {
        refs.iter().map(|r| r.uid.as_str()).collect()
    }

    #[test]
    fn retention_policy_owner_references() {
        let p = pod("db-1", "pod-uid");
        // Retain/Retain: no references (and stale ones are removed).
        let s = sts("Retain", "Retain");
        assert!(wanted_owners(&s, Some(&p), false, &[sts_owner(&s)]).is_empty());
        // whenDeleted Delete: the set owns the claims of live ordinals.
        let s = sts("Delete", "Retain");
        assert_eq!(uids(&wanted_owners(&s, Some(&p), false, &[])), ["set-uid"]);
        assert_eq!(uids(&wanted_owners(&s, Some(&p), true, &[])), ["set-uid"]);
        // whenScaled Delete: a condemned pod owns its claims, the set does not.
        let s = sts("Delete", "Delete");
        assert_eq!(
            uids(&wanted_owners(&s, Some(&p), true, &[sts_owner(&s)])),
            ["pod-uid"]
        );
        assert_eq!(uids(&wanted_owners(&s, Some(&p), false, &[])), ["set-uid"]);
        let s = sts("Retain", "Delete");
        assert_eq!(uids(&wanted_owners(&s, Some(&p), true, &[])), ["pod-uid"]);
        assert!(wanted_owners(&s, Some(&p), false, &[pod_owner(&p)]).is_empty());
    }

    #[test]
    fn pod_gets_a_claim_volume_per_template_replacing_one_of_that_name() {
        let s = sts("Retain", "Retain");
        let mut p = pod("db-0", "u");
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            volumes: Some(vec![
                Volume {
                    name: "data".into(),
                    empty_dir: Some(Default::default()),
                    ..Default::default()
                },
                Volume {
                    name: "scratch".into(),
                    empty_dir: Some(Default::default()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        });
        use_claims(&mut p, &s, 0);
        let vols = p.spec.unwrap().volumes.unwrap();
        assert_eq!(vols.len(), 2);
        assert_eq!(vols[0].name, "scratch");
        assert_eq!(
            vols[1]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("data-db-0")
        );
        assert!(vols[1].empty_dir.is_none());
    }

    #[test]
    fn ordinals_parse_only_canonical_names() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "webby-1"), None);
        assert_eq!(ordinal("web", "web-"), None);
    }
}
