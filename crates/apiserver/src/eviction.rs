//! `pods/eviction`.
//!
//! Eviction (`POST …/pods/<p>/eviction`, `policy/v1` or `policy/v1beta1` `Eviction`) is a
//! graceful delete with the Eviction's `deleteOptions`, guarded by the pod's
//! PodDisruptionBudget as upstream's `EvictionREST`:
//!
//! * a pod that is terminal, Pending or already being deleted is deleted without looking
//!   at budgets; so is a pod no budget selects (an empty selector selects nothing);
//! * more than one budget → 500 (unsupported);
//! * a pod that is not Ready is deleted without spending the budget when the budget's
//!   `unhealthyPodEvictionPolicy` is `AlwaysAllow`, or (`IfHealthyBudget`, the default) when
//!   `currentHealthy >= desiredHealthy > 0`; the delete then carries the pod's
//!   resourceVersion so that a pod that became Ready meanwhile is not deleted;
//! * otherwise the budget is checked and decremented in one guaranteed status update
//!   ([`check_and_decrement`]): a budget the disruption controller has not observed yet, or
//!   with `disruptionsAllowed: 0`, answers 429 TooManyRequests `Cannot evict pod as it would
//!   violate the pod's disruption budget.` with a `DisruptionBudget` cause; success records
//!   the pod in `disruptedPods` (the controller stops counting it as healthy) before the
//!   pod is deleted. A dry run checks without writing.
//!
//! Before the delete the pod gets the condition `DisruptionTarget=True` with reason
//! `EvictionByEvictionAPI` and message `Eviction API: evicting` (upstream's
//! `addConditionAndDeletePod`, [`mark_disruption_target`]); the delete's resourceVersion
//! precondition then names the revision of that write.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podvisor_api::disruption as budget;
use serde_json::json;

use crate::error::{ApiError, success_status};
use crate::ops::{Core, DeleteOptions, UpdateMode};
use crate::registry::{PODDISRUPTIONBUDGETS, PODS};
use crate::request::{Ctx, Target};

/// Reads `deleteOptions` of an Eviction.
fn eviction_delete_options(v: &Value) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions::default();
    let Some(d) = v.get("deleteOptions").filter(|d| !d.is_null()) else {
        return Ok(o);
    };
    if !d.is_object() {
        return Err(ApiError::bad_request("deleteOptions must be an object"));
    }
    match d.get("gracePeriodSeconds") {
        None | Some(Value::Null) => {}
        Some(g) => {
            let g = g
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("gracePeriodSeconds must be an integer"))?;
            if g < 0 {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "deleteOptions.gracePeriodSeconds: Invalid value: {g}: must be greater than or equal to 0"
                    ),
                ));
            }
            o.grace_period_seconds = Some(g);
        }
    }
    if let Some(p) = d.get("preconditions").filter(|p| !p.is_null()) {
        o.uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
        o.resource_version = p
            .get("resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if let Some(dry) = d.get("dryRun").and_then(Value::as_array) {
        if dry.iter().any(|x| x != "All") {
            return Err(ApiError::bad_request(
                "Invalid dry run value; supported values: \"All\"",
            ));
        }
        o.dry_run = !dry.is_empty();
    }
    if let Some(p) = d.get("propagationPolicy").and_then(Value::as_str)
        && !matches!(p, "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    Ok(o)
}

/// Serves `POST …/pods/<p>/eviction`: a graceful delete with the Eviction's options.
pub async fn evict(ctx: &mut Ctx, t: &Target) -> Result<Response, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let bytes = ctx.body_bytes().await?;
    let v: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        crate::decode::json_or_yaml(&bytes)
            .map_err(|e| ApiError::bad_request(format!("failed to decode Eviction: {e}")))?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "failed to decode Eviction: not an object",
        ));
    }
    if let Some(k) = v.get("kind").and_then(Value::as_str)
        && k != "Eviction"
    {
        return Err(ApiError::bad_request(format!(
            "failed to decode Eviction: unexpected kind {k:?}"
        )));
    }
    if let Some(av) = v.get("apiVersion").and_then(Value::as_str)
        && !matches!(av, "policy/v1" | "policy/v1beta1")
    {
        return Err(ApiError::bad_request(format!(
            "failed to decode Eviction: unsupported apiVersion {av:?}"
        )));
    }
    if let Some(n) = v.pointer("/metadata/name").and_then(Value::as_str)
        && !n.is_empty()
        && n != name
    {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let mut opts = eviction_delete_options(&v)?;
    opts.dry_run = opts.dry_run || ctx.dry_run()?;
    let core = ctx.srv.core();
    check_budget(core, &ns, &name, &mut opts).await?;
    if !opts.dry_run {
        mark_disruption_target(core, &ns, &name, &mut opts).await?;
    }
    match core.delete(&PODS, Some(&ns), &name, &opts).await {
        Ok(d) if !opts.dry_run => {
            crate::timeline::record_delete_request(
                core,
                &ctx.user.name,
                &d.object,
                &opts,
                "eviction",
            );
        }
        Ok(_) => {}
        Err(e) if e.code == 404 => return Err(ApiError::not_found(&PODS, &name)),
        Err(e) => return Err(e),
    }
    let body = success_status(None, Some(201));
    let mut r = (
        StatusCode::CREATED,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Adds `DisruptionTarget=True` (`EvictionByEvictionAPI`) to the pod's status, checking
/// the delete's preconditions against the latest pod first (upstream's
/// `addConditionAndDeletePod`); a resourceVersion precondition moves to the new revision.
async fn mark_disruption_target(
    core: &Core,
    ns: &str,
    name: &str,
    opts: &mut DeleteOptions,
) -> Result<(), ApiError> {
    let now = core.now_str();
    let (uid, rv) = (opts.uid.clone(), opts.resource_version.clone());
    let mut transform = |old: Option<&Value>| -> Result<Option<Value>, ApiError> {
        let Some(old) = old else {
            return Ok(None);
        };
        let meta = |f: &str| {
            old.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
        };
        if let Some(u) = uid.as_deref().filter(|u| !u.is_empty())
            && meta("uid") != Some(u)
        {
            return Err(ApiError::conflict(
                &PODS,
                name,
                &format!(
                    "the UID in the precondition ({u}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                    meta("uid").unwrap_or("")
                ),
            ));
        }
        if let Some(r) = rv.as_deref().filter(|r| !r.is_empty())
            && meta("resourceVersion") != Some(r)
        {
            return Err(ApiError::conflict(
                &PODS,
                name,
                &format!(
                    "the ResourceVersion in the precondition ({r}) does not match the ResourceVersion in record ({}). The object might have been modified",
                    meta("resourceVersion").unwrap_or("")
                ),
            ));
        }
        let mut new = old.clone();
        let Some(status) = new
            .as_object_mut()
            .map(|o| o.entry("status").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        else {
            return Ok(None);
        };
        let conditions = status
            .entry("conditions")
            .or_insert_with(|| json!([]))
            .as_array_mut();
        let Some(conditions) = conditions else {
            return Ok(None);
        };
        let mut cond = json!({
            "type": DISRUPTION_TARGET,
            "status": "True",
            "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting",
            "lastTransitionTime": now,
        });
        match conditions
            .iter_mut()
            .find(|c| c["type"] == DISRUPTION_TARGET)
        {
            Some(c) => {
                // Upstream's `UpdatePodCondition`: the transition time moves only with the
                // status.
                if c["status"] == "True" && c.get("lastTransitionTime").is_some() {
                    cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
                }
                *c = cond;
            }
            None => conditions.push(cond),
        }
        Ok(Some(new))
    };
    let (updated, _) = core
        .update(
            &PODS,
            Some(ns),
            name,
            UpdateMode::Status,
            false,
            None,
            &mut transform,
        )
        .await?;
    if opts
        .resource_version
        .as_deref()
        .is_some_and(|r| !r.is_empty())
    {
        opts.resource_version = updated
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    Ok(())
}

/// The pod condition type of a pod about to be disrupted.
const DISRUPTION_TARGET: &str = "DisruptionTarget";

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

/// Lets the eviction of pod `ns/name` go ahead or answers why not (see the module docs).
async fn check_budget(
    core: &Core,
    ns: &str,
    name: &str,
    opts: &mut DeleteOptions,
) -> Result<(), ApiError> {
    let Some((pod_v, _)) = core.storage.get(&PODS, Some(ns), name).await? else {
        return Err(ApiError::not_found(&PODS, name));
    };
    let pod: Pod = typed(pod_v)?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if pod.metadata.deletion_timestamp.is_some()
        || matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
    {
        return Ok(());
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let page = core
        .storage
        .list(
            &PODDISRUPTIONBUDGETS.list_prefix(Some(ns)),
            0,
            None,
            None,
            &|_| true,
        )
        .await?;
    let mut pdbs = Vec::new();
    for v in page.items {
        let pdb: PodDisruptionBudget = typed(v)?;
        let selects = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| podvisor_api::LabelSelector::from_meta(s).ok())
            .is_some_and(|s| !s.is_empty() && s.matches(&labels));
        if selects {
            pdbs.push(pdb);
        }
    }
    let pdb = match pdbs.len() {
        0 => return Ok(()),
        1 => pdbs.remove(0),
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    };
    if !budget::pod_ready(&pod) {
        let status = pdb.status.clone().unwrap_or_default();
        let always = pdb
            .spec
            .as_ref()
            .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref())
            == Some("AlwaysAllow");
        if always
            || (status.current_healthy >= status.desired_healthy && status.desired_healthy > 0)
        {
            if opts.resource_version.is_none() {
                opts.resource_version = pod.metadata.resource_version.clone();
            }
            return Ok(());
        }
    }
    let pdb_name = pdb.metadata.name.clone().unwrap_or_default();
    let now = core.now();
    let mut transform = |cur: Option<&Value>| -> Result<Option<Value>, ApiError> {
        let Some(cur) = cur else {
            return Err(ApiError::not_found(&PODDISRUPTIONBUDGETS, &pdb_name));
        };
        let mut live: PodDisruptionBudget = typed(cur.clone())?;
        check_and_decrement(&mut live, name, now)?;
        serde_json::to_value(&live)
            .map(Some)
            .map_err(|e| ApiError::internal(e.to_string()))
    };
    core.update(
        &PODDISRUPTIONBUDGETS,
        Some(ns),
        &pdb.metadata.name.clone().unwrap_or_default(),
        UpdateMode::Status,
        opts.dry_run,
        None,
        &mut transform,
    )
    .await?;
    Ok(())
}

/// 429 with the `DisruptionBudget` cause (upstream's `NewTooManyRequests` with a cause).
fn budget_denied(retry_after: u64, cause: String) -> ApiError {
    let mut details = json!({"causes": [{"reason": budget::CAUSE, "message": cause}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = retry_after.into();
    }
    let mut e =
        ApiError::new(429, "TooManyRequests", budget::EVICTION_DENIED).with_details(details);
    e.retry_after = (retry_after > 0).then_some(retry_after);
    e
}

/// Upstream's `checkAndDecrement` on the live budget: refuses when the controller has not
/// observed its generation, when it allows no disruption or its bookkeeping is off;
/// otherwise takes one disruption and records the pod in `disruptedPods`.
pub(crate) fn check_and_decrement(
    pdb: &mut PodDisruptionBudget,
    pod: &str,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<(), ApiError> {
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let generation = pdb.metadata.generation.unwrap_or(0);
    let status = pdb.status.get_or_insert_with(Default::default);
    let forbidden = |why: &str| {
        ApiError::forbidden(
            "poddisruptionbudget",
            "policy",
            &name,
            format!("poddisruptionbudget.policy {name:?} is forbidden: {why}"),
        )
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Err(budget_denied(
            10,
            format!("The disruption budget {name} is still being processed by the server."),
        ));
    }
    if status.disruptions_allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    if status.disrupted_pods.as_ref().map_or(0, |d| d.len()) > budget::MAX_DISRUPTED_PODS {
        return Err(forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if status.disruptions_allowed == 0 {
        return Err(budget_denied(
            0,
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status.desired_healthy, status.current_healthy
            ),
        ));
    }
    status.disruptions_allowed -= 1;
    status
        .disrupted_pods
        .get_or_insert_with(Default::default)
        .insert(pod.to_string(), Time(now));
    if status.disruptions_allowed == 0 {
        budget::update_disruption_allowed_condition(pdb, now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn eviction_options_are_read() {
        let o = eviction_delete_options(&json!({"deleteOptions": {"gracePeriodSeconds": 5, "dryRun": ["All"], "preconditions": {"uid": "u"}}})).unwrap();
        assert_eq!(o.grace_period_seconds, Some(5));
        assert!(o.dry_run);
        assert_eq!(o.uid.as_deref(), Some("u"));
        assert!(
            eviction_delete_options(&json!({}))
                .unwrap()
                .grace_period_seconds
                .is_none()
        );
        assert_eq!(
            eviction_delete_options(&json!({"deleteOptions": {"gracePeriodSeconds": -1}}))
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            eviction_delete_options(&json!({"deleteOptions": {"dryRun": ["x"]}}))
                .unwrap_err()
                .code,
            400
        );
    }

    fn pdb(generation: i64, observed: i64, allowed: i32) -> PodDisruptionBudget {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "generation": generation},
            "status": {"observedGeneration": observed, "disruptionsAllowed": allowed,
                "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2}}),
        )
        .unwrap()
    }

    #[test]
    fn a_budget_without_spare_disruptions_answers_429_with_its_cause() {
        let now = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
        let e = check_and_decrement(&mut pdb(1, 1, 0), "p", now).unwrap_err();
        assert_eq!((e.code, e.reason), (429, "TooManyRequests"));
        assert_eq!(
            e.message,
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        assert_eq!(
            e.details,
            Some(json!({"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]}))
        );
        assert_eq!(e.retry_after, None);
        // Not yet observed by the controller.
        let e = check_and_decrement(&mut pdb(2, 1, 1), "p", now).unwrap_err();
        assert_eq!(e.code, 429);
        assert_eq!(e.retry_after, Some(10));
        assert_eq!(
            e.details
                .as_ref()
                .and_then(|d| d.pointer("/causes/0/message"))
                .cloned(),
            Some(json!(
                "The disruption budget web is still being processed by the server."
            ))
        );
        assert_eq!(
            check_and_decrement(&mut pdb(1, 1, -1), "p", now)
                .unwrap_err()
                .code,
            403
        );
    }

    #[test]
    fn an_allowed_eviction_spends_one_disruption_and_records_the_pod() {
        let now = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
        let mut b = pdb(1, 1, 1);
        check_and_decrement(&mut b, "p", now).unwrap();
        let st = b.status.unwrap();
        assert_eq!(st.disruptions_allowed, 0);
        assert!(st.disrupted_pods.unwrap().contains_key("p"));
        let c = &st.conditions.unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("DisruptionAllowed", "False", "InsufficientPods")
        );
    }
}
