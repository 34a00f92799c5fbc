//! The Deployment controller.
//!
//! For each Deployment: its ReplicaSets are those whose controller reference is the
//! Deployment's UID. The *new* ReplicaSet is the one labelled `pod-template-hash` = hash of
//! the current pod template (FNV-32a of its JSON plus `collisionCount`, encoded as
//! upstream's `SafeEncodeString`); it is created as `<deploy>-<hash>` when missing, with
//! revision = highest old revision + 1. The rest are old.
//!
//! * **RollingUpdate**: the new ReplicaSet grows up to `replicas + maxSurge` pods in total;
//!   old ReplicaSets shrink (unavailable pods first, then available ones, oldest ReplicaSet
//!   first) while at least `replicas - maxUnavailable` pods stay available.
//! * **Recreate**: old ReplicaSets go to 0; the new one is scaled up only when no active pod
//!   of an old one remains.
//!
//! Scaling writes replace the ReplicaSet with its cached resourceVersion. Status sums the
//! ReplicaSets' status; conditions Available (MinimumReplicasAvailable /
//! MinimumReplicasUnavailable) and Progressing (NewReplicaSetCreated, ReplicaSetUpdated,
//! NewReplicaSetAvailable). Not done: proportional scaling during a rollout, pause,
//! progressDeadlineSeconds, revisionHistoryLimit cleanup, adoption of orphan ReplicaSets.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;

use crate::context::{ControllerError, Ctx, Key};
use crate::pods;

const HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";

/// FNV-32a of the template's JSON and the collision count, encoded like upstream.
pub(crate) fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// Resolves an int-or-percent against `total` (percent rounded up for surge, down otherwise).
pub(crate) fn resolve(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => {
            if round_up {
                (total * 25 + 99) / 100
            } else {
                total * 25 / 100
            }
        }
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let p: i32 = s.trim_end_matches('%').parse().unwrap_or(0);
            if round_up {
                (total * p + 99) / 100
            } else {
                total * p / 100
            }
        }
    }
}

/// maxSurge and maxUnavailable for `replicas` (both 0 → unavailable 1).
pub(crate) fn surge_unavailable(d: &Deployment, replicas: i32) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), replicas, true).max(0);
    let mut unavailable =
        resolve(ru.and_then(|r| r.max_unavailable.as_ref()), replicas, false).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

/// The new ReplicaSet's target in a rolling update.
pub(crate) fn new_rs_target(desired: i32, surge: i32, new_current: i32, all_current: i32) -> i32 {
    if new_current >= desired {
        return desired;
    }
    let room = desired + surge - all_current;
    if room <= 0 {
        return new_current;
    }
    new_current + room.min(desired - new_current)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}
fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

async fn scale(ctx: &Ctx, rs: &ReplicaSet, to: i32) -> Result<(), ControllerError> {
    if spec_replicas(rs) == to {
        return Ok(());
    }
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let mut r = rs.clone();
    if let Some(s) = r.spec.as_mut() {
        s.replicas = Some(to);
    }
    Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
        .replace(&name, &PostParams::default(), &r)
        .await
        .map_err(ControllerError::api("scale", "ReplicaSet", &ns, &name))?;
    Ok(())
}

pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let Some(d) = ctx.deployments.get(&key.obj_ref()) else {
        return Ok(None);
    };
    let Some(spec) = d.spec.as_ref() else {
        return Ok(None);
    };
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let ns = key.namespace.as_str();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1).max(0);
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision);
    let mut owned: Vec<ReplicaSet> = ctx
        .replicasets
        .state_filter(|r| {
            r.metadata.namespace.as_deref() == Some(ns)
                && pods::controller_ref(&r.metadata).is_some_and(|o| o.uid == uid)
        })
        .into_iter()
        .map(|r| (*r).clone())
        .collect();
    owned.sort_by_key(|r| r.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let is_new =
        |r: &ReplicaSet| r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) == Some(&hash);
    let olds: Vec<ReplicaSet> = owned.iter().filter(|r| !is_new(r)).cloned().collect();
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let (surge, unavailable) = surge_unavailable(&d, desired);
    let mut created = None;
    let new_rs = match owned.iter().find(|r| is_new(r)) {
        Some(r) => r.clone(),
        None => {
            let max_rev = owned
                .iter()
                .filter_map(|r| {
                    r.metadata
                        .annotations
                        .as_ref()?
                        .get(REVISION)?
                        .parse::<i64>()
                        .ok()
                })
                .max()
                .unwrap_or(0);
            let all: i32 = owned.iter().map(spec_replicas).sum();
            let initial = if recreate {
                0
            } else {
                new_rs_target(desired, surge, 0, all)
            };
            let mut template = spec.template.clone();
            let meta = template.metadata.get_or_insert_with(Default::default);
            meta.labels
                .get_or_insert_with(BTreeMap::new)
                .insert(HASH_LABEL.into(), hash.clone());
            let mut selector: LabelSelector = spec.selector.clone();
            selector
                .match_labels
                .get_or_insert_with(BTreeMap::new)
                .insert(HASH_LABEL.into(), hash.clone());
            let name = format!("{}-{hash}", key.name);
            let rs = ReplicaSet {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.to_string()),
                    labels: meta.labels.clone(),
                    annotations: Some(BTreeMap::from([(
                        REVISION.to_string(),
                        (max_rev + 1).to_string(),
                    )])),
                    owner_references: Some(vec![pods::owner_ref("Deployment", &key.name, &uid)]),
                    ..Default::default()
                },
                spec: Some(ReplicaSetSpec {
                    replicas: Some(initial),
                    min_ready_seconds: spec.min_ready_seconds,
                    selector,
                    template: Some(template),
                }),
                status: None,
            };
            let r = Api::<ReplicaSet>::namespaced(ctx.client.clone(), ns)
                .create(&PostParams::default(), &rs)
                .await
                .map_err(ControllerError::api("create", "ReplicaSet", ns, &name))?;
            created = Some(name);
            r
        }
    };

    if recreate {
        for o in &olds {
            scale(ctx, o, 0).await?;
        }
        let old_uids: Vec<String> = olds.iter().filter_map(|o| o.metadata.uid.clone()).collect();
        let old_pods_left = ctx.pods_in(ns).iter().any(|p| {
            pods::controller_ref(&p.metadata).is_some_and(|o| old_uids.contains(&o.uid))
                && !pods::is_terminal(p)
        });
        if !old_pods_left {
            scale(ctx, &new_rs, desired).await?;
        }
    } else {
        let all: i32 = owned.iter().map(spec_replicas).sum::<i32>()
            + if created.is_some() {
                spec_replicas(&new_rs)
            } else {
                0
            };
        let target = new_rs_target(desired, surge, spec_replicas(&new_rs), all);
        scale(ctx, &new_rs, target).await?;
        // Old ReplicaSets: keep at least desired - maxUnavailable available.
        let min_available = desired - unavailable;
        let all_after = all - spec_replicas(&new_rs) + target;
        let new_unavailable = (target - available(&new_rs)).max(0);
        let mut budget = all_after - min_available - new_unavailable;
        // Unhealthy old replicas first.
        let mut plans: Vec<i32> = olds.iter().map(spec_replicas).collect();
        for (i, o) in olds.iter().enumerate() {
            if budget <= 0 {
                break;
            }
            let unhealthy = (plans[i] - available(o)).max(0).min(budget);
            plans[i] -= unhealthy;
            budget -= unhealthy;
        }
        let avail_all: i32 = owned.iter().map(available).sum::<i32>();
        let mut more = (avail_all - min_available).max(0).min(budget.max(0));
        for p in plans.iter_mut() {
            let n = (*p).min(more);
            *p -= n;
            more -= n;
        }
        for (o, p) in olds.iter().zip(plans) {
            scale(ctx, o, p).await?;
        }
    }

    // Status.
    let all_rs: Vec<&ReplicaSet> = olds.iter().chain(std::iter::once(&new_rs)).collect();
    let sum = |f: fn(&ReplicaSet) -> i32| all_rs.iter().map(|r| f(r)).sum::<i32>();
    let replicas = sum(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0));
    let ready = sum(|r| {
        r.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    });
    let avail = sum(available);
    let updated = new_rs.status.as_ref().map(|s| s.replicas).unwrap_or(0);
    let new_name = new_rs.metadata.name.clone().unwrap_or_default();
    let now = Time(ctx.now());
    let old_status = d.status.clone().unwrap_or_default();
    let old_cond = |t: &str| {
        old_status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .cloned()
    };
    let cond = |t: &str, status: &str, reason: &str, message: String| {
        let prev = old_cond(t);
        let same = prev
            .as_ref()
            .is_some_and(|p| p.status == status && p.reason.as_deref() == Some(reason));
        DeploymentCondition {
            type_: t.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_update_time: if same {
                prev.as_ref().and_then(|p| p.last_update_time.clone())
            } else {
                Some(now.clone())
            },
            last_transition_time: match &prev {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => Some(now.clone()),
            },
        }
    };
    let available_cond = if avail >= desired - unavailable {
        cond(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        )
    } else {
        cond(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    let complete = updated == desired && replicas == desired && avail >= desired;
    let progressing = if complete {
        cond(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
        )
    } else if created.is_some() {
        cond(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set \"{new_name}\""),
        )
    } else {
        cond(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
        )
    };
    let status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(avail),
        unavailable_replicas: Some((desired - avail).max(0)),
        collision_count: collision,
        conditions: Some(vec![available_cond, progressing]),
        terminating_replicas: None,
    };
    let changed = serde_json::to_value(&status).ok() != serde_json::to_value(&old_status).ok();
    if changed {
        let mut nd = (*d).clone();
        nd.status = Some(status);
        ctx.replace_status("Deployment", ns, &key.name, &nd).await?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_25_percent_surge_up_unavailable_down() {
        assert_eq!(resolve(None, 10, true), 3);
        assert_eq!(resolve(None, 10, false), 2);
        assert_eq!(
            resolve(Some(&IntOrString::String("50%".into())), 3, true),
            2
        );
        assert_eq!(resolve(Some(&IntOrString::Int(1)), 3, false), 1);
    }

    #[test]
    fn new_rs_grows_within_surge() {
        assert_eq!(new_rs_target(3, 1, 0, 3), 1);
        assert_eq!(new_rs_target(3, 1, 1, 4), 1);
        assert_eq!(new_rs_target(3, 1, 1, 3), 2);
        assert_eq!(new_rs_target(3, 1, 5, 5), 3);
    }

    #[test]
    fn hash_depends_on_template_and_collisions() {
        let t = PodTemplateSpec::default();
        assert_eq!(template_hash(&t, None), template_hash(&t, None));
        assert_ne!(template_hash(&t, None), template_hash(&t, Some(1)));
        assert!(
            template_hash(&t, None)
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        );
    }
}
