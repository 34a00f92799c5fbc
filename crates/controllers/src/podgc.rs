//! PodGC, spec §5.5; upstream `pkg/controller/podgc`.
//!
//! Every `period` (20 s) one pass over the pod cache:
//!
//! 1. **terminated** (`terminated_pod_threshold` > 0): when more pods are `Succeeded` or
//!    `Failed` than the threshold, the surplus is force-deleted, evicted ones first, then
//!    oldest first;
//! 2. **terminating on an out-of-service node**: pods with a `deletionTimestamp` on a node
//!    that is not Ready and carries `node.kubernetes.io/out-of-service:NoExecute` are marked
//!    `Failed` and force-deleted;
//! 3. **orphaned**: a pod bound to a node missing from the cache puts that node in
//!    *quarantine* (`orphan_quarantine`, 40 s, from the first sighting). When the quarantine
//!    ends and a live GET confirms the node is gone, its pods get `phase: Failed` plus
//!    `DisruptionTarget` / `DeletionByPodGC` / `PodGC: node no longer exists` (status update)
//!    and are deleted with grace 0 and a UID precondition;
//! 4. **unscheduled terminating**: pods with a `deletionTimestamp` and no node are
//!    force-deleted.
//!
//! Step 2 also runs as soon as a node gets the out-of-service taint or a pod on such a node
//! starts terminating, not only every period: an admin who declares a node out of service
//! gets its pods replaced in seconds.
//!
//! "Force" means `DELETE gracePeriodSeconds=0`: the object leaves the API at once (unless
//! finalizers hold it), which is what lets a StatefulSet create the replacement under the
//! same name.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use podvisor_api::taints::{EFFECT_NO_EXECUTE, TAINT_OUT_OF_SERVICE};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::context::{ControllerError, Ctx};
use crate::pods;

/// The `DisruptionTarget` reason PodGC sets on orphaned pods.
pub const REASON_DELETION_BY_POD_GC: &str = "DeletionByPodGC";
/// Its message.
pub const MESSAGE_DELETION_BY_POD_GC: &str = "PodGC: node no longer exists";

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Upstream `byEvictionAndCreationTimestamp`: evicted pods first, then oldest, then by name.
fn eviction_then_age(a: &Pod, b: &Pod) -> Ordering {
    let evicted = |p: &Pod| {
        pods::phase(p) == Some("Failed")
            && p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
    };
    evicted(b)
        .cmp(&evicted(a))
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Runs PodGC until `shutdown`.
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut quarantine: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(ctx.config.pod_gc.period.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => gc(&ctx, &mut quarantine).await,
            _ = ctx.pod_gc.notified() => gc_terminating(&ctx, &ctx.pods.state()).await,
        }
    }
}

async fn gc(ctx: &Ctx, quarantine: &mut HashMap<String, Instant>) {
    let all = ctx.pods.state();
    if ctx.config.pod_gc.terminated_pod_threshold > 0 {
        gc_terminated(ctx, &all).await;
    }
    gc_terminating(ctx, &all).await;
    gc_orphaned(ctx, &all, quarantine).await;
    gc_unscheduled_terminating(ctx, &all).await;
}

async fn gc_terminated(ctx: &Ctx, all: &[Arc<Pod>]) {
    let mut terminated: Vec<&Arc<Pod>> = all.iter().filter(|p| pods::is_terminal(p)).collect();
    let surplus = terminated
        .len()
        .saturating_sub(ctx.config.pod_gc.terminated_pod_threshold);
    if surplus == 0 {
        return;
    }
    info!(count = surplus, "garbage collecting terminated pods");
    terminated.sort_by(|a, b| eviction_then_age(a, b));
    for p in terminated.into_iter().take(surplus) {
        log_failure(p, mark_failed_and_delete(ctx, p, None).await);
    }
}

/// Whether `node` is not Ready and carries `node.kubernetes.io/out-of-service:NoExecute`.
pub(crate) fn out_of_service(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.key == TAINT_OUT_OF_SERVICE && t.effect == EFFECT_NO_EXECUTE)
        });
    !ready && tainted
}

/// Wakes PodGC when `pod` is terminating on an out-of-service node.
pub(crate) fn route_pod(ctx: &Ctx, pod: &Pod, deleted: bool) {
    if !deleted
        && pod.metadata.deletion_timestamp.is_some()
        && ctx
            .nodes
            .get(&ObjectRef::new(node_name(pod)))
            .is_some_and(|n| out_of_service(&n))
    {
        ctx.pod_gc.notify_one();
    }
}

async fn gc_terminating(ctx: &Ctx, all: &[Arc<Pod>]) {
    let mut victims: Vec<&Arc<Pod>> = all
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !pods::is_terminal(p))
        .filter(|p| {
            ctx.nodes
                .get(&ObjectRef::new(node_name(p)))
                .is_some_and(|n| out_of_service(&n))
        })
        .collect();
    if victims.is_empty() {
        return;
    }
    info!(
        count = victims.len(),
        "garbage collecting terminating pods on out-of-service nodes"
    );
    victims.sort_by(|a, b| eviction_then_age(a, b));
    for p in victims {
        log_failure(p, mark_failed_and_delete(ctx, p, None).await);
    }
}

async fn gc_orphaned(ctx: &Ctx, all: &[Arc<Pod>], quarantine: &mut HashMap<String, Instant>) {
    let now = Instant::now();
    let existing: HashSet<String> = ctx
        .nodes
        .state()
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    for p in all {
        let node = node_name(p);
        if !node.is_empty() && !existing.contains(node) {
            quarantine
                .entry(node.to_string())
                .or_insert(now + ctx.config.pod_gc.orphan_quarantine);
        }
    }
    let due: Vec<String> = quarantine
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(n, _)| n.clone())
        .collect();
    let mut deleted = HashSet::new();
    for node in due {
        quarantine.remove(&node);
        if existing.contains(&node) {
            continue;
        }
        match ctx.nodes_api().get_opt(&node).await {
            Ok(None) => {
                deleted.insert(node);
            }
            Ok(Some(_)) => {}
            Err(e) => warn!(%node, error = %e, "checking whether a node exists failed"),
        }
    }
    if deleted.is_empty() {
        return;
    }
    let condition = pods::disruption_target(REASON_DELETION_BY_POD_GC, MESSAGE_DELETION_BY_POD_GC);
    for p in all.iter().filter(|p| deleted.contains(node_name(p))) {
        info!(pod = ?p.metadata.name, ns = ?p.metadata.namespace, node = node_name(p),
            "force deleting orphaned pod: its node no longer exists");
        log_failure(
            p,
            mark_failed_and_delete(ctx, p, Some(condition.clone())).await,
        );
    }
}

async fn gc_unscheduled_terminating(ctx: &Ctx, all: &[Arc<Pod>]) {
    for p in all
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
    {
        log_failure(p, mark_failed_and_delete(ctx, p, None).await);
    }
}

fn log_failure(p: &Pod, r: Result<(), ControllerError>) {
    if let Err(e) = r {
        warn!(pod = ?p.metadata.name, ns = ?p.metadata.namespace, error = %e,
            "PodGC could not delete pod; retrying next pass");
    }
}

/// Upstream `markFailedAndDeletePodWithCondition`: a pod not yet terminal is first set to
/// `Failed` (plus `condition`) so it never stays `Running` without a kubelet; then DELETE
/// with grace 0, fenced by the UID.
async fn mark_failed_and_delete(
    ctx: &Ctx,
    cached: &Pod,
    condition: Option<PodCondition>,
) -> Result<(), ControllerError> {
    let ns = cached.metadata.namespace.clone().unwrap_or_default();
    let name = cached.metadata.name.clone().unwrap_or_default();
    let uid = cached.metadata.uid.clone();
    let api = ctx.pods_api(&ns);
    if !pods::is_terminal(cached) {
        let Some(mut pod) = api
            .get_opt(&name)
            .await
            .map_err(ControllerError::api("get", "Pod", &ns, &name))?
        else {
            return Ok(());
        };
        if pod.metadata.uid != uid {
            return Ok(());
        }
        if !pods::is_terminal(&pod) {
            pod.status.get_or_insert_with(Default::default).phase = Some("Failed".into());
            if let Some(c) = condition {
                pods::update_condition(&mut pod, c, Time(ctx.now()));
            }
            match api
                .replace_status(&name, &PostParams::default(), &pod)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => return Err(ControllerError::api("update status", "Pod", &ns, &name)(e)),
            }
        }
    }
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(ControllerError::api("delete", "Pod", &ns, &name)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::tests::pod;

    #[test]
    fn evicted_pods_go_first_then_the_oldest() {
        let mut evicted = pod("evicted", Some("n"), "Failed", false, 30);
        if let Some(s) = evicted.status.as_mut() {
            s.reason = Some("Evicted".into());
        }
        let mut ps = [
            pod("new", Some("n"), "Succeeded", false, 20),
            evicted,
            pod("old", Some("n"), "Failed", false, 10),
        ];
        ps.sort_by(eviction_then_age);
        let names: Vec<_> = ps
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["evicted", "old", "new"]);
    }
}
