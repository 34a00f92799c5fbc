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
//! Not done: template updates (RollingUpdate of existing pods, ControllerRevisions),
//! volumeClaimTemplates, adoption of orphans.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams, Preconditions};
use tracing::info;

use crate::context::{ControllerError, Ctx, Key};
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
        delete(ctx, exp_key, ns, p).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
