//! The taint eviction controller (NoExecute), spec §5.4; upstream
//! `pkg/controller/tainteviction`.
//!
//! # Rules
//!
//! For every pod bound to a node, with `T` = the node's `NoExecute` taints:
//!
//! * `T` empty → any scheduled eviction of the pod is cancelled (removing the taint cancels
//!   the eviction);
//! * some taint of `T` is tolerated by none of the pod's tolerations → evict **now**;
//! * otherwise, with the first matching toleration of each taint: any `tolerationSeconds ≤ 0`
//!   → now; all unbounded → never (a scheduled eviction is cancelled); else after the
//!   **minimum** `tolerationSeconds`.
//!
//! An eviction, once scheduled, keeps its time: later updates of the pod or the node never
//! move it (upstream keeps the existing work item's creation time). Only "not tolerated at
//! all" replaces it with an immediate one.
//!
//! # State
//!
//! ```text
//!   (none) ──schedule(at)──▶ Scheduled { uid, created_at, fire_at } ──fire_at reached──▶ evict
//!      ▲                              │                                      │
//!      └───── cancel (taint gone, ────┘                                      │
//!             toleration forever,                                           ▼
//!             pod gone or terminating)             status: DisruptionTarget/DeletionByTaintManager
//!                                                  then DELETE (empty options: the pod's own grace)
//! ```
//!
//! Triggers: node events queue the node (all its pods are re-examined), pod events queue the
//! pod; the due time is a delayed key in [`Ctx::eviction_queue`]. A key that comes due
//! checks the table: cancelled → nothing; moved later → wait again; due → evict. The
//! eviction re-reads the pod and fences the delete with its UID, so a pod recreated under
//! the same name (a StatefulSet replica) is never hit by its predecessor's eviction.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, PostParams, Preconditions};
use podvisor_api::taints::{self, TolerationTime};
use podvisor_kit::events::{EventRecord, EventType, object_ref};
use tokio::time::Instant;
use tracing::info;

use crate::context::{ControllerError, Ctx, Key};
use crate::evictions::Scheduled;

/// The component named in events.
const COMPONENT: &str = "taint-eviction-controller";

/// The `DisruptionTarget` reason the taint manager sets.
pub const REASON_DELETION_BY_TAINT_MANAGER: &str = "DeletionByTaintManager";
/// Its message.
pub const MESSAGE_DELETION_BY_TAINT_MANAGER: &str =
    "Taint manager: deleting due to NoExecute taint";

/// What to do with one pod on a node with `NoExecute` taints `taints` (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Cancel any scheduled eviction.
    Cancel,
    /// Some taint is not tolerated: evict now, replacing any scheduled eviction.
    EvictNow,
    /// Evict after this long, unless an eviction is already scheduled.
    EvictAfter(Duration),
}

pub(crate) fn decide(pod: &Pod, taints: &[Taint]) -> Decision {
    if taints.is_empty() || pod.metadata.deletion_timestamp.is_some() {
        return Decision::Cancel;
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    match taints::matching_tolerations(taints, tolerations) {
        None => Decision::EvictNow,
        Some(used) => match taints::min_toleration_time(&used) {
            TolerationTime::Forever => Decision::Cancel,
            TolerationTime::Now => Decision::EvictAfter(Duration::ZERO),
            TolerationTime::After(d) => Decision::EvictAfter(d),
        },
    }
}

/// Cancels a scheduled eviction of `key`, with an event if there was one.
fn cancel(ctx: &Ctx, key: &Key) {
    if let Some(s) = ctx.evictions.cancel(key) {
        info!(pod = %key, "cancelling taint-based eviction");
        ctx.record_event(
            COMPONENT,
            EventRecord::new(
                ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    namespace: Some(key.namespace.clone()),
                    name: Some(key.name.clone()),
                    uid: Some(s.uid),
                    ..Default::default()
                },
                EventType::Normal,
                "TaintManagerEviction",
                format!("Cancelling deletion of Pod {key}"),
            ),
        );
    }
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn process_pod_on_node(ctx: &Ctx, key: Key, pod: &Pod, taints: &[Taint], now: Instant) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let fire_at = match decide(pod, taints) {
        Decision::Cancel => return cancel(ctx, &key),
        Decision::EvictNow => {
            ctx.evictions.lock().remove(&key);
            now
        }
        Decision::EvictAfter(d) => {
            let g = ctx.evictions.lock();
            if g.get(&key).is_some_and(|s| s.uid == uid) {
                return;
            }
            drop(g);
            now + d
        }
    };
    info!(pod = %key, node = node_name(pod).unwrap_or(""), after = ?fire_at - now,
        "scheduling taint-based eviction");
    ctx.evictions.lock().insert(
        key.clone(),
        Scheduled {
            uid,
            created_at: now,
            fire_at,
        },
    );
    ctx.eviction_queue.add_after(key, fire_at - now);
}

/// A node changed: re-examine every pod on it.
pub(crate) fn reconcile_node(ctx: &Ctx, name: &str) -> Result<Option<Duration>, ControllerError> {
    let taints = ctx
        .nodes
        .get(&kube::runtime::reflector::ObjectRef::new(name))
        .map(|n| {
            taints::no_execute(
                n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_deref())
                    .unwrap_or(&[]),
            )
        });
    // A deleted node: scheduled evictions stay (PodGC takes over its pods), as upstream.
    let Some(taints) = taints else {
        return Ok(None);
    };
    let now = Instant::now();
    for pod in ctx.pods_on_node(name) {
        if let Some(key) = Key::of(&pod.metadata) {
            process_pod_on_node(ctx, key, &pod, &taints, now);
        }
    }
    Ok(None)
}

/// A pod changed (or was deleted).
pub(crate) fn reconcile_pod(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let Some(pod) = ctx.pods.get(&key.obj_ref()) else {
        ctx.evictions.cancel(key);
        return Ok(None);
    };
    let Some(node) = node_name(&pod) else {
        cancel(ctx, key);
        return Ok(None);
    };
    let Some(node) = ctx
        .nodes
        .get(&kube::runtime::reflector::ObjectRef::new(node))
    else {
        return Ok(None);
    };
    let taints = taints::no_execute(
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[]),
    );
    process_pod_on_node(ctx, key.clone(), &pod, &taints, Instant::now());
    Ok(None)
}

/// A scheduled eviction may be due: evict if it is.
pub(crate) async fn evict(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let Some(s) = ctx.evictions.get(key) else {
        return Ok(None);
    };
    let now = Instant::now();
    if s.fire_at > now {
        return Ok(Some(s.fire_at - now));
    }
    let api = ctx.pods_api(&key.namespace);
    let pod = api.get_opt(&key.name).await.map_err(ControllerError::api(
        "get",
        "Pod",
        &key.namespace,
        &key.name,
    ))?;
    let Some(mut pod) = pod else {
        ctx.evictions.finish(key, &s);
        return Ok(None);
    };
    if pod.metadata.uid.as_deref() != Some(s.uid.as_str())
        || pod.metadata.deletion_timestamp.is_some()
    {
        ctx.evictions.finish(key, &s);
        return Ok(None);
    }
    info!(pod = %key, "deleting pod: NoExecute taint not tolerated");
    ctx.record_event(
        COMPONENT,
        EventRecord::new(
            object_ref(&pod),
            EventType::Normal,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {key}"),
        ),
    );
    let condition = crate::pods::disruption_target(
        REASON_DELETION_BY_TAINT_MANAGER,
        MESSAGE_DELETION_BY_TAINT_MANAGER,
    );
    if crate::pods::update_condition(&mut pod, condition, Time(ctx.now())) {
        match api
            .replace_status(&key.name, &PostParams::default(), &pod)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                ctx.evictions.finish(key, &s);
                return Ok(None);
            }
            Err(e) => {
                return Err(ControllerError::api(
                    "update status",
                    "Pod",
                    &key.namespace,
                    &key.name,
                )(e));
            }
        }
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(s.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&key.name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => {
            return Err(ControllerError::api(
                "delete",
                "Pod",
                &key.namespace,
                &key.name,
            )(e));
        }
    }
    ctx.evictions.finish(key, &s);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, Toleration};

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: None,
        }
    }

    fn tol(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn decisions_follow_the_tolerations() {
        let t = [taint("k")];
        assert_eq!(decide(&pod(vec![]), &t), Decision::EvictNow);
        assert_eq!(decide(&pod(vec![tol("k", None)]), &t), Decision::Cancel);
        assert_eq!(
            decide(&pod(vec![tol("k", Some(70))]), &t),
            Decision::EvictAfter(Duration::from_secs(70))
        );
        assert_eq!(decide(&pod(vec![tol("k", None)]), &[]), Decision::Cancel);
        assert_eq!(
            decide(&pod(vec![tol("k", Some(0))]), &t),
            Decision::EvictAfter(Duration::ZERO)
        );
        // Two taints, one tolerated for 5 s and one for 25 s: the minimum wins.
        let two = [taint("a"), taint("b")];
        assert_eq!(
            decide(&pod(vec![tol("b", Some(25)), tol("a", Some(5))]), &two),
            Decision::EvictAfter(Duration::from_secs(5))
        );
        assert_eq!(
            decide(&pod(vec![tol("a", Some(5))]), &two),
            Decision::EvictNow
        );
    }
}
