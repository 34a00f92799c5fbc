//! `pods/eviction`.
//!
//! Eviction (`POST …/pods/<p>/eviction`, `policy/v1` or `policy/v1beta1` `Eviction`) is a
//! graceful delete with the Eviction's `deleteOptions`; there are no PodDisruptionBudgets
//! to respect (the kind is not served).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use crate::error::{ApiError, success_status};
use crate::ops::DeleteOptions;
use crate::registry::PODS;
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
    match core.delete(&PODS, Some(&ns), &name, &opts).await {
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
}
