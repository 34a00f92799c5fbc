//! Pure helpers over pods shared by the controllers: activity, readiness, availability,
//! controller references, pods from templates and the delete ranking.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

/// The `DisruptionTarget=True` condition set before a controller deletes a pod.
pub(crate) fn disruption_target(reason: &str, message: &str) -> PodCondition {
    PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

/// A pod counts toward replicas: not terminal and not terminating (`IsPodActive`).
pub(crate) fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod)
}

/// Phase Succeeded or Failed.
pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// The pod's phase, if reported.
pub(crate) fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// When the Ready condition became True, if it is True.
pub(crate) fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| c.last_transition_time.as_ref().map(|t| t.0))
}

/// The Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Running and Ready (the StatefulSet's `isRunningAndReady`).
pub(crate) fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && is_ready(pod)
}

/// Whether the pod has been Ready for `min_ready_seconds` at `now`; when not yet, how long
/// until it will be (so the caller can requeue).
pub(crate) fn availability(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Result<(), Option<std::time::Duration>> {
    let Some(since) = ready_since(pod) else {
        return Err(None);
    };
    if min_ready_seconds <= 0 {
        return Ok(());
    }
    let Some(since) = since else {
        return Err(None);
    };
    let need = std::time::Duration::from_secs(u64::try_from(min_ready_seconds).unwrap_or(0));
    let elapsed = now
        .duration_since(since)
        .try_into()
        .unwrap_or(std::time::Duration::ZERO);
    if elapsed >= need {
        Ok(())
    } else {
        Err(Some(need - elapsed))
    }
}

/// The reference to `pod` an endpoint carries (`targetRef`).
pub(crate) fn target_ref(pod: &Pod) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Whether the pod is available at `now` ([`availability`]); when it will be later, that
/// wait is folded into `requeue` (the earliest of the waits seen).
pub(crate) fn available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
    requeue: &mut Option<std::time::Duration>,
) -> bool {
    match availability(pod, min_ready_seconds, now) {
        Ok(()) => true,
        Err(Some(wait)) => {
            *requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
            false
        }
        Err(None) => false,
    }
}

/// Upstream `UpdatePodCondition`: sets `condition` in the pod's status (adding it, or
/// replacing the one of the same type; `lastTransitionTime` is `now` unless the status
/// stays the same). Returns whether anything changed.
pub(crate) fn update_condition(pod: &mut Pod, mut condition: PodCondition, now: Time) -> bool {
    condition.last_transition_time = Some(now);
    let conditions = pod
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    let Some(old) = conditions.iter_mut().find(|c| c.type_ == condition.type_) else {
        conditions.push(condition);
        return true;
    };
    if condition.status == old.status {
        condition.last_transition_time = old.last_transition_time.clone();
    }
    let changed = condition != *old;
    *old = condition;
    changed
}

/// The owner reference with `controller: true`, if any.
pub(crate) fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller owner reference to an apps/v1 object.
pub(crate) fn owner_ref(kind: &str, name: &str, uid: &str) -> OwnerReference {
    controller_owner_ref("apps/v1", kind, name, uid)
}

/// A controller owner reference (`controller` and `blockOwnerDeletion` true).
pub(crate) fn controller_owner_ref(
    api_version: &str,
    kind: &str,
    name: &str,
    uid: &str,
) -> OwnerReference {
    OwnerReference {
        controller: Some(true),
        block_owner_deletion: Some(true),
        ..plain_owner_ref(api_version, kind, name, uid)
    }
}

/// An owner reference that is not the controller's (`controller` and `blockOwnerDeletion`
/// unset).
pub(crate) fn plain_owner_ref(
    api_version: &str,
    kind: &str,
    name: &str,
    uid: &str,
) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// A pod built from `template` (labels, annotations, spec), owned by `owner`.
pub(crate) fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner: OwnerReference,
    name: PodName,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    let (name, generate_name) = match name {
        PodName::Generate(prefix) => (None, Some(prefix)),
        PodName::Fixed(n) => (Some(n), None),
    };
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: Some(namespace.to_string()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// How a new pod is named.
pub(crate) enum PodName {
    /// `metadata.generateName` (the API server appends 5 random characters).
    Generate(String),
    /// A fixed name.
    Fixed(String),
}

fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// Whether `pod` carries every label of the template (`fullyLabeledReplicas`).
pub(crate) fn fully_labeled(pod: &Pod, template: &PodTemplateSpec) -> bool {
    let have = labels(&pod.metadata);
    template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .is_none_or(|want| want.iter().all(|(k, v)| have.get(k) == Some(v)))
}

/// Upstream's `ActivePods` ordering for scale-down: the pods that sort first are deleted
/// first. Unassigned < assigned; Pending < Unknown < Running; not ready < ready; ready for
/// less time first; more restarts first; newer first.
pub(crate) fn delete_order(a: &Pod, b: &Pod) -> Ordering {
    let assigned = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match phase(p) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    assigned(a)
        .cmp(&assigned(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then_with(
            || match (ready_since(a).flatten(), ready_since(b).flatten()) {
                // Ready for less time (later transition) is deleted first.
                (Some(x), Some(y)) => y.cmp(&x),
                _ => Ordering::Equal,
            },
        )
        .then(restarts(b).cmp(&restarts(a)))
        // Newer first; missing timestamps sort as newest.
        .then_with(|| match (created(a), created(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

    pub(crate) fn pod(
        name: &str,
        node: Option<&str>,
        phase: &str,
        ready: bool,
        created_s: i64,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    Timestamp::from_second(created_s).unwrap_or(Timestamp::UNIX_EPOCH),
                )),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(String::from),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(
                        Timestamp::from_second(created_s + 1).unwrap_or(Timestamp::UNIX_EPOCH),
                    )),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn delete_ranking_prefers_unscheduled_pending_unready_newer() {
        let mut pods = [
            pod("ready-old", Some("n"), "Running", true, 10),
            pod("ready-new", Some("n"), "Running", true, 20),
            pod("running-unready", Some("n"), "Running", false, 5),
            pod("pending-scheduled", Some("n"), "Pending", false, 1),
            pod("unscheduled", None, "Pending", false, 1),
        ];
        pods.sort_by(delete_order);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending-scheduled",
                "running-unready",
                "ready-new",
                "ready-old"
            ]
        );
    }

    #[test]
    fn terminal_and_terminating_pods_are_not_active() {
        assert!(is_active(&pod("a", None, "Running", true, 1)));
        assert!(!is_active(&pod("a", None, "Failed", false, 1)));
        assert!(!is_active(&pod("a", None, "Succeeded", false, 1)));
        let mut p = pod("a", None, "Running", true, 1);
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(!is_active(&p));
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("a", None, "Running", true, 100); // ready at 101
        let at = |s| Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(availability(&p, 0, at(101)), Ok(()));
        assert_eq!(
            availability(&p, 10, at(105)),
            Err(Some(std::time::Duration::from_secs(6)))
        );
        assert_eq!(availability(&p, 10, at(111)), Ok(()));
        assert_eq!(
            availability(&pod("b", None, "Running", false, 1), 0, at(200)),
            Err(None)
        );
    }
}
