//! `POST …/serviceaccounts/<name>/token`: the TokenRequest API (authentication.k8s.io/v1).
//!
//! Defaults, validation and messages as upstream's `serviceaccount/storage/token.go`: the
//! expiry defaults to 3600 s and must be at least 10 minutes and at most 2^32 s, audiences
//! default to the API server's, a `boundObjectRef` names a Pod or Secret of the same
//! namespace that must exist (with the given UID, and a Pod must run as this service
//! account). A node (NodeRestriction) may only ask for tokens bound to a pod on itself,
//! naming the pod's UID.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::jwt::{Claims, KubernetesClaim, Ref};
use super::{
    DEFAULT_EXPIRATION_SECONDS, EXTENDED_EXPIRATION_SECONDS, ISSUER, MIN_EXPIRATION_SECONDS,
    USER_PREFIX, WARN_ONLY_EXPIRATION_SECONDS,
};
use crate::error::ApiError;
use crate::objects;
use crate::registry::{NODES, PODS, SECRETS, SERVICEACCOUNTS};
use crate::request::{Ctx, Output, Target};

/// The longest lifetime a TokenRequest may ask for.
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// What a TokenRequest asks for, defaulted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    audiences: Vec<String>,
    expiration_seconds: i64,
    bound: Option<BoundRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BoundRef {
    api_version: String,
    kind: String,
    name: String,
    uid: String,
}

fn invalid(name: &str, field: &str, value: i64, why: &str) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!(
            "TokenRequest.authentication.k8s.io {name:?} is invalid: {field}: Invalid value: {value}: {why}"
        ),
    )
    .with_details(json!({"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest",
        "causes": [{"reason": "FieldValueInvalid", "message": format!("Invalid value: {value}: {why}"),
            "field": field}]}))
}

/// Reads, defaults and validates a TokenRequest body.
fn parse_spec(name: &str, body: &Value) -> Result<Spec, ApiError> {
    let spec = body.get("spec").cloned().unwrap_or(Value::Null);
    if !(spec.is_null() || spec.is_object()) {
        return Err(ApiError::bad_request("TokenRequest spec must be an object"));
    }
    let audiences: Vec<String> = match spec.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad_request("spec.audiences must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::bad_request("spec.audiences must be a list")),
    };
    let expiration_seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    const FIELD: &str = "spec.expirationSeconds";
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            FIELD,
            expiration_seconds,
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            FIELD,
            expiration_seconds,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let bound = match spec.get("boundObjectRef") {
        None | Some(Value::Null) => None,
        Some(r) => {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Some(BoundRef {
                api_version: s("apiVersion"),
                kind: s("kind"),
                name: s("name"),
                uid: s("uid"),
            })
        }
    };
    Ok(Spec {
        audiences,
        expiration_seconds,
        bound,
    })
}

/// Serves `POST …/serviceaccounts/<name>/token` (the caller has authorized `create` on
/// `serviceaccounts/token`).
pub async fn create_token(ctx: &mut Ctx, t: &Target) -> Result<Response, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let bytes = ctx.body_bytes().await?;
    let protobuf = ctx
        .header(http::header::CONTENT_TYPE)
        .is_some_and(crate::protobuf::is_protobuf_content_type);
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else if protobuf {
        crate::protobuf::decode(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?
    } else {
        crate::decode::json_or_yaml(&bytes)
            .map_err(|e| ApiError::bad_request(format!("failed to decode TokenRequest: {e}")))?
    };
    if !body.is_object() {
        return Err(ApiError::bad_request("a TokenRequest must be an object"));
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && kind != "TokenRequest"
    {
        return Err(ApiError::bad_request(format!(
            "expected a TokenRequest, got {kind}"
        )));
    }
    let mut spec = parse_spec(&name, &body)?;
    let srv = ctx.srv.clone();
    let core = srv.core();
    let sa = core
        .storage
        .must_get(&SERVICEACCOUNTS, Some(&ns), &name)
        .await?
        .0;
    let mut pod = None;
    let mut secret = None;
    if let Some(r) = &spec.bound {
        let (kind, found) = match (r.api_version.as_str(), r.kind.as_str()) {
            ("v1", "Pod") => (&PODS, &mut pod),
            ("v1", "Secret") => (&SECRETS, &mut secret),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {}",
                    if r.kind.is_empty() {
                        "(missing kind)"
                    } else {
                        &r.kind
                    }
                )));
            }
        };
        let obj = core.storage.must_get(kind, Some(&ns), &r.name).await?.0;
        let uid = super::uid_of(&obj).to_string();
        if !r.uid.is_empty() && r.uid != uid {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {:?}: the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                    r.kind, r.name, r.uid
                ),
            )
            .with_details(json!({"name": r.name, "kind": r.kind})));
        }
        if kind == &PODS {
            let runs_as = obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if runs_as != name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                )));
            }
        }
        *found = Some((obj, uid));
    }
    // NodeRestriction: a node asks only for tokens bound to its own pods, by UID.
    if let Some(node) = ctx.user.node_name() {
        let why = match (&spec.bound, &pod) {
            (Some(r), Some((p, _))) => {
                if r.uid.is_empty() {
                    Some("node requested token with a pod binding without a uid")
                } else if p.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
                    Some("node requested token bound to a pod scheduled on a different node")
                } else {
                    None
                }
            }
            _ => Some("node requested token not bound to a pod"),
        };
        if let Some(why) = why {
            return Err(ApiError::forbidden(
                SERVICEACCOUNTS.plural,
                "",
                &name,
                format!("serviceaccounts {name:?} is forbidden: {why}"),
            ));
        }
    }
    if spec.audiences.is_empty() {
        spec.audiences = srv.service_accounts().api_audiences().to_vec();
    }
    let now = core.now().as_second();
    let node = match &pod {
        Some((p, _)) => match p.pointer("/spec/nodeName").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => {
                let uid = core
                    .storage
                    .get(&NODES, None, n)
                    .await?
                    .map(|(o, _)| super::uid_of(&o).to_string())
                    .unwrap_or_default();
                Some(Ref {
                    name: n.to_string(),
                    uid,
                })
            }
            _ => None,
        },
        None => None,
    };
    let extend = pod.is_some()
        && spec.expiration_seconds == WARN_ONLY_EXPIRATION_SECONDS
        && spec
            .audiences
            .iter()
            .all(|a| srv.service_accounts().api_audiences().contains(a));
    let (exp, warnafter) = if extend {
        (
            now + EXTENDED_EXPIRATION_SECONDS,
            Some(now + spec.expiration_seconds),
        )
    } else {
        (now + spec.expiration_seconds, None)
    };
    let as_ref = |o: &Option<(Value, String)>| {
        o.as_ref().map(|(obj, uid)| Ref {
            name: objects::name_of(obj).to_string(),
            uid: uid.clone(),
        })
    };
    let claims = Claims {
        aud: spec.audiences.clone(),
        exp,
        iat: now,
        iss: ISSUER.to_string(),
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: KubernetesClaim {
            namespace: ns.clone(),
            node,
            pod: as_ref(&pod),
            secret: as_ref(&secret),
            serviceaccount: Ref {
                name: name.clone(),
                uid: super::uid_of(&sa).to_string(),
            },
            warnafter,
        },
        nbf: now,
        sub: format!("{USER_PREFIX}{ns}:{name}"),
    };
    let token = srv
        .service_accounts()
        .key()
        .sign(&claims)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let expires = jiff::Timestamp::from_second(now + spec.expiration_seconds)
        .map(objects::format_time)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut out_spec = json!({"audiences": spec.audiences,
        "expirationSeconds": spec.expiration_seconds, "boundObjectRef": null});
    match &spec.bound {
        Some(r) => {
            let uid = pod
                .as_ref()
                .or(secret.as_ref())
                .map(|(_, u)| u.clone())
                .unwrap_or_default();
            out_spec["boundObjectRef"] =
                json!({"kind": r.kind, "apiVersion": r.api_version, "name": r.name, "uid": uid});
        }
        None => {
            if let Some(m) = out_spec.as_object_mut() {
                m.remove("boundObjectRef");
            }
        }
    }
    let out = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": expires},
    });
    Ok(ctx.respond(StatusCode::CREATED, &out, Output::Json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_and_limits_are_upstreams() {
        let s = parse_spec("sa", &json!({})).unwrap();
        assert_eq!(s.expiration_seconds, 3600);
        assert!(s.audiences.is_empty() && s.bound.is_none());
        let e = parse_spec("sa", &json!({"spec": {"expirationSeconds": 599}})).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "TokenRequest.authentication.k8s.io \"sa\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        );
        assert!(parse_spec("sa", &json!({"spec": {"expirationSeconds": 600}})).is_ok());
        let big = parse_spec(
            "sa",
            &json!({"spec": {"expirationSeconds": (1i64 << 32) + 1}}),
        )
        .unwrap_err();
        assert!(
            big.message
                .ends_with("may not specify a duration larger than 2^32 seconds")
        );
        let b = parse_spec(
            "sa",
            &json!({"spec": {"audiences": ["x"], "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}}),
        )
        .unwrap();
        assert_eq!(b.audiences, vec!["x".to_string()]);
        assert_eq!(b.bound.unwrap().name, "p");
    }
}
