//! The disruption controller: the status of each PodDisruptionBudget (policy/v1).
//!
//! For a budget (key `ns/name`), one reconcile reads the pods of its namespace that match
//! its selector (an empty or missing selector matches none) and computes, as upstream's
//! `trySync`:
//!
//! * `expectedPods` and `desiredHealthy` ([`podvisor_api::disruption::expected_and_desired`]):
//!   an integer `minAvailable` counts the matching pods; `maxUnavailable` or a percentage
//!   `minAvailable` is resolved (rounding up) against the summed `spec.replicas` of the
//!   pods' controllers: a ReplicaSet (its Deployment's replicas when it has one), a
//!   ReplicationController or a StatefulSet, each counted once. Pods without a controller
//!   are left out (event `UnmanagedPods`); a pod whose controller is unknown fails the sync.
//! * `disruptedPods`: the entries the eviction subresource added for pods it is deleting,
//!   kept while the pod exists without a deletionTimestamp and the entry is younger than
//!   two minutes (older ones get a `NotDeleted` event on the pod and are dropped); the key
//!   is requeued for the earliest expiry.
//! * `currentHealthy`: matching pods that are Ready, not being deleted and not in
//!   `disruptedPods`; `disruptionsAllowed = currentHealthy - desiredHealthy` (0 when
//!   negative or when no pod is expected).
//! * the `DisruptionAllowed` condition: True/`SufficientPods` or False/`InsufficientPods`.
//!
//! The status is written (status subresource, fenced by the cached resourceVersion) when a
//! count, the disrupted pods or `observedGeneration` changed. A failed sync writes
//! `disruptionsAllowed: 0` and `DisruptionAllowed=False` with reason `SyncFailed` and the
//! error as message (upstream's `failSafe`), so that evictions stop rather than overrun
//! the budget. The eviction side is in the API server (`pods/eviction`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use podvisor_api::disruption as budget;
use podvisor_kit::events::EventType;

use crate::context::{ControllerError, Ctx, Key, parse_selector};
use crate::pods;

const COMPONENT: &str = "disruption-controller";

/// What a successful sync computed.
struct Computed {
    status: PodDisruptionBudgetStatus,
    recheck: Option<Duration>,
    unmanaged: usize,
    no_pods: bool,
}

pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let Some(pdb) = ctx.pdbs.get(&key.obj_ref()) else {
        return Ok(None);
    };
    let now = ctx.now();
    let mut updated = (*pdb).clone();
    let recheck = match compute(ctx, &pdb, now) {
        Ok(c) => {
            let old = pdb.status.clone().unwrap_or_default();
            if same_counts(&old, &c.status) {
                return Ok(c.recheck);
            }
            if c.no_pods {
                ctx.event_about(
                    COMPONENT,
                    pdb.as_ref(),
                    EventType::Normal,
                    "NoPods",
                    "No matching pods found",
                );
            }
            if c.unmanaged > 0 {
                let sel =
                    serde_json::to_string(&pdb.spec.as_ref().and_then(|s| s.selector.clone()))
                        .unwrap_or_default();
                ctx.event_about(COMPONENT, pdb.as_ref(),
                    EventType::Warning,
                    "UnmanagedPods",
                    format!(
                        "Pods selected by this PodDisruptionBudget (selector: {sel}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
                    ),
                );
            }
            updated.status = Some(PodDisruptionBudgetStatus {
                conditions: old.conditions,
                ..c.status
            });
            budget::update_disruption_allowed_condition(&mut updated, now);
            c.recheck
        }
        Err(message) => {
            // failSafe: no disruption while the budget cannot be computed.
            let status = updated.status.get_or_insert_with(Default::default);
            let before = (status.disruptions_allowed, status.conditions.clone());
            status.disruptions_allowed = 0;
            budget::set_status_condition(
                status.conditions.get_or_insert_with(Vec::new),
                Condition {
                    type_: budget::DISRUPTION_ALLOWED.into(),
                    status: "False".into(),
                    reason: budget::SYNC_FAILED.into(),
                    message: message.clone(),
                    observed_generation: status.observed_generation,
                    last_transition_time: Time(now),
                },
                now,
            );
            if before == (status.disruptions_allowed, status.conditions.clone()) {
                return Ok(None);
            }
            ctx.event_about(
                COMPONENT,
                pdb.as_ref(),
                EventType::Warning,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {message}"),
            );
            None
        }
    };
    ctx.replace_status("PodDisruptionBudget", &key.namespace, &key.name, &updated)
        .await?;
    Ok(recheck)
}

/// Upstream skips the write when every count, the disrupted pods and the observed
/// generation are unchanged.
fn same_counts(a: &PodDisruptionBudgetStatus, b: &PodDisruptionBudgetStatus) -> bool {
    a.current_healthy == b.current_healthy
        && a.desired_healthy == b.desired_healthy
        && a.expected_pods == b.expected_pods
        && a.disruptions_allowed == b.disruptions_allowed
        && a.observed_generation == b.observed_generation
        && a.disrupted_pods.clone().unwrap_or_default()
            == b.disrupted_pods.clone().unwrap_or_default()
        && a.conditions
            .as_ref()
            .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c.reason != budget::SYNC_FAILED))
}

fn compute(ctx: &Ctx, pdb: &PodDisruptionBudget, now: Timestamp) -> Result<Computed, String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let selector = parse_selector("PodDisruptionBudget", &pdb.metadata, spec.selector.as_ref())
        .map_err(|e| e.to_string())?;
    let matching: Vec<std::sync::Arc<Pod>> = match &selector {
        None => Vec::new(),
        Some(sel) => ctx
            .pods_in(&ns)
            .into_iter()
            .filter(|p| sel.matches(&p.metadata.labels.clone().unwrap_or_default()))
            .collect(),
    };
    let count = i32::try_from(matching.len()).unwrap_or(i32::MAX);
    let (scale, unmanaged) = if budget::needs_scale(&spec) {
        expected_scale(ctx, &ns, &matching)?
    } else {
        (0, 0)
    };
    let (expected, desired) = budget::expected_and_desired(&spec, count, scale)?;

    // disruptedPods still awaiting their deletion.
    let recorded = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let mut disrupted = BTreeMap::new();
    let mut recheck: Option<Duration> = None;
    let timeout = k8s_openapi::jiff::SignedDuration::from_secs(budget::DELETION_TIMEOUT_SECONDS);
    for p in &matching {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = p.metadata.name.clone().unwrap_or_default();
        let Some(at) = recorded.get(&name) else {
            continue;
        };
        let expires = at.0.checked_add(timeout).unwrap_or(at.0);
        if expires < now {
            ctx.event_about(
                COMPONENT,
                p.as_ref(),
                EventType::Warning,
                "NotDeleted",
                format!(
                    "Pod was expected by PDB {ns}/{} to be deleted but it wasn't",
                    pdb.metadata.name.as_deref().unwrap_or_default()
                ),
            );
        } else {
            let left: Duration = expires
                .duration_since(now)
                .try_into()
                .unwrap_or(Duration::ZERO);
            recheck = Some(recheck.map_or(left, |r| r.min(left)));
            disrupted.insert(name, at.clone());
        }
    }
    let healthy = matching
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default())
                && budget::pod_ready(p)
        })
        .count();
    let healthy = i32::try_from(healthy).unwrap_or(i32::MAX);
    Ok(Computed {
        status: PodDisruptionBudgetStatus {
            current_healthy: healthy,
            desired_healthy: desired,
            expected_pods: expected,
            disruptions_allowed: budget::disruptions_allowed(healthy, desired, expected),
            disrupted_pods: Some(disrupted),
            observed_generation: pdb.metadata.generation,
            conditions: None,
        },
        recheck: recheck.map(|d| d + Duration::from_secs(1)),
        unmanaged,
        no_pods: matching.is_empty(),
    })
}

/// Upstream's `getExpectedScale`: the summed `spec.replicas` of the pods' controllers (each
/// once) and how many pods have no controller.
fn expected_scale(
    ctx: &Ctx,
    ns: &str,
    matching: &[std::sync::Arc<Pod>],
) -> Result<(i32, usize), String> {
    let mut seen = BTreeSet::new();
    let (mut scale, mut unmanaged) = (0i32, 0usize);
    for p in matching {
        let Some(r) = pods::controller_ref(&p.metadata) else {
            unmanaged += 1;
            continue;
        };
        let key = Key {
            namespace: ns.to_string(),
            name: r.name.clone(),
        };
        let found: Option<(String, i32)> = match (r.api_version.as_str(), r.kind.as_str()) {
            ("apps/v1", "ReplicaSet") => ctx
                .replicasets
                .get(&key.obj_ref())
                .filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .and_then(|rs| {
                    // A Deployment's ReplicaSet: the Deployment's scale.
                    if let Some(d) = pods::controller_ref(&rs.metadata)
                        && d.kind == "Deployment"
                    {
                        let dk = Key {
                            namespace: ns.to_string(),
                            name: d.name.clone(),
                        };
                        return ctx
                            .deployments
                            .get(&dk.obj_ref())
                            .filter(|x| x.metadata.uid.as_deref() == Some(d.uid.as_str()))
                            .map(|x| {
                                (
                                    d.uid.clone(),
                                    x.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                                )
                            });
                    }
                    Some((
                        r.uid.clone(),
                        rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    ))
                }),
            ("v1", "ReplicationController") => ctx
                .replicationcontrollers
                .get(&key.obj_ref())
                .filter(|x| x.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .map(|x| {
                    (
                        r.uid.clone(),
                        x.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                }),
            ("apps/v1", "StatefulSet") => ctx
                .statefulsets
                .get(&key.obj_ref())
                .filter(|x| x.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .map(|x| {
                    (
                        r.uid.clone(),
                        x.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                }),
            _ => None,
        };
        let Some((uid, replicas)) = found else {
            return Err(format!(
                "found no controllers for pod {:?}",
                p.metadata.name.as_deref().unwrap_or_default()
            ));
        };
        if seen.insert(uid) {
            scale = scale.saturating_add(replicas);
        }
    }
    Ok((scale, unmanaged))
}
