//! The ReplicationController controller (v1), the legacy twin of the ReplicaSet.
//!
//! As upstream's replication manager, it is the ReplicaSet controller run on a conversion:
//! each reconcile converts the cached ReplicationController into a ReplicaSet (its equality
//! selector becomes `matchLabels`; template, replicas and `minReadySeconds` carry over),
//! runs [`crate::replicaset::sync`] with the kind `v1 ReplicationController` (so pods get a
//! controller reference to the ReplicationController and its own expectations are used) and
//! converts the resulting status back (`replicas`, `fullyLabeledReplicas`, `readyReplicas`,
//! `availableReplicas`, `observedGeneration` and the `ReplicaFailure` condition). The
//! defaulting of the selector and labels from the template is the API server's
//! (`SetDefaults_ReplicationController`); `kubectl scale rc` goes through the `scale`
//! subresource.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{
    ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::context::{ControllerError, Ctx, Key};
use crate::replicaset::{self, SetKind};

const KIND: SetKind = SetKind {
    api_version: "v1",
    kind: "ReplicationController",
};

/// The ReplicaSet the controller manages in place of `rc`.
pub(crate) fn as_replica_set(rc: &ReplicationController) -> ReplicaSet {
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: rc.spec.as_ref().map(|s| ReplicaSetSpec {
            min_ready_seconds: s.min_ready_seconds,
            replicas: s.replicas,
            selector: LabelSelector {
                match_labels: s.selector.clone(),
                match_expressions: None,
            },
            template: s.template.clone(),
        }),
        status: rc.status.as_ref().map(|s| ReplicaSetStatus {
            available_replicas: s.available_replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            observed_generation: s.observed_generation,
            ready_replicas: s.ready_replicas,
            replicas: s.replicas,
            terminating_replicas: None,
            conditions: s.conditions.as_ref().map(|cs| {
                cs.iter()
                    .map(|c| ReplicaSetCondition {
                        last_transition_time: c.last_transition_time.clone(),
                        message: c.message.clone(),
                        reason: c.reason.clone(),
                        status: c.status.clone(),
                        type_: c.type_.clone(),
                    })
                    .collect()
            }),
        }),
    }
}

/// The ReplicationController status of a ReplicaSet status.
pub(crate) fn rc_status(s: ReplicaSetStatus) -> ReplicationControllerStatus {
    ReplicationControllerStatus {
        available_replicas: s.available_replicas,
        fully_labeled_replicas: s.fully_labeled_replicas,
        observed_generation: s.observed_generation,
        ready_replicas: s.ready_replicas,
        replicas: s.replicas,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .map(|c| ReplicationControllerCondition {
                    last_transition_time: c.last_transition_time,
                    message: c.message,
                    reason: c.reason,
                    status: c.status,
                    type_: c.type_,
                })
                .collect()
        }),
    }
}

pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let Some(rc) = ctx.cached_owner(&ctx.replicationcontrollers, &ctx.rc_expectations, key) else {
        return Ok(None);
    };
    let rs = as_replica_set(&rc);
    let (status, requeue, manage_error) =
        replicaset::sync(ctx, key, KIND, &ctx.rc_expectations, &rs).await?;
    if let Some(status) = status
        && !replicaset::status_eq(&rs.status.clone().unwrap_or_default(), &status)
    {
        let mut updated = (*rc).clone();
        updated.status = Some(rc_status(status));
        ctx.replace_status("ReplicationController", &key.namespace, &key.name, &updated)
            .await?;
    }
    match manage_error {
        Some(e) => Err(e),
        None => Ok(requeue),
    }
}
