//! The review APIs: SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
//! LocalSubjectAccessReview (authorization.k8s.io/v1), SelfSubjectReview and TokenReview
//! (authentication.k8s.io/v1): what `kubectl auth can-i [--list]` and `kubectl auth
//! whoami` call, and what a program (a webhook, kube-rbac-proxy) asks about a token it was
//! given. Nothing is stored: the request is authorized (`create` on the review
//! resource), answered from the authorizer chain, and echoed back with its `status`.

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::{MASTERS_GROUP, RequestAttributes, UserInfo};
use crate::error::ApiError;
use crate::request::{Ctx, Output};

/// Which review a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// `selfsubjectaccessreviews`.
    SelfAccess,
    /// `selfsubjectrulesreviews`.
    SelfRules,
    /// `subjectaccessreviews`.
    Access,
    /// `namespaces/{ns}/localsubjectaccessreviews`.
    LocalAccess(String),
    /// authentication.k8s.io `selfsubjectreviews`.
    SelfSubject,
    /// authentication.k8s.io `tokenreviews`.
    Token,
}

impl Review {
    /// The review at `/apis/<group>/<version>/<rest>`, if it is one.
    pub fn route(group: &str, version: &str, rest: &[&str]) -> Option<Review> {
        match (group, version, rest) {
            ("authorization.k8s.io", "v1", ["selfsubjectaccessreviews"]) => {
                Some(Review::SelfAccess)
            }
            ("authorization.k8s.io", "v1", ["selfsubjectrulesreviews"]) => Some(Review::SelfRules),
            ("authorization.k8s.io", "v1", ["subjectaccessreviews"]) => Some(Review::Access),
            ("authorization.k8s.io", "v1", ["namespaces", ns, "localsubjectaccessreviews"]) => {
                Some(Review::LocalAccess(ns.to_string()))
            }
            ("authentication.k8s.io", "v1", ["selfsubjectreviews"]) => Some(Review::SelfSubject),
            ("authentication.k8s.io", "v1", ["tokenreviews"]) => Some(Review::Token),
            _ => None,
        }
    }

    fn resource(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            Review::SelfAccess => (
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "SelfSubjectAccessReview",
            ),
            Review::SelfRules => (
                "authorization.k8s.io",
                "selfsubjectrulesreviews",
                "SelfSubjectRulesReview",
            ),
            Review::Access => (
                "authorization.k8s.io",
                "subjectaccessreviews",
                "SubjectAccessReview",
            ),
            Review::LocalAccess(_) => (
                "authorization.k8s.io",
                "localsubjectaccessreviews",
                "LocalSubjectAccessReview",
            ),
            Review::SelfSubject => (
                "authentication.k8s.io",
                "selfsubjectreviews",
                "SelfSubjectReview",
            ),
            Review::Token => ("authentication.k8s.io", "tokenreviews", "TokenReview"),
        }
    }
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// The attributes a review's `spec` asks about (upstream's `ResourceAttributesFrom` and
/// `NonResourceAttributesFrom`).
pub fn spec_attributes(spec: &Value) -> Result<RequestAttributes, String> {
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let mut a = RequestAttributes::resource(
            s(r, "/verb"),
            s(r, "/group"),
            s(r, "/resource"),
            s(r, "/subresource"),
            s(r, "/namespace"),
            s(r, "/name"),
        );
        a.version = s(r, "/version").to_string();
        let raw = s(r, "/fieldSelector/rawSelector");
        if !raw.is_empty() {
            a.field_selector = Some(raw.to_string());
        } else if let Some(reqs) = r
            .pointer("/fieldSelector/requirements")
            .and_then(Value::as_array)
        {
            let terms: Vec<String> = reqs
                .iter()
                .filter(|q| {
                    s(q, "/operator") == "In"
                        && q.pointer("/values")
                            .and_then(Value::as_array)
                            .is_some_and(|v| v.len() == 1)
                })
                .map(|q| format!("{}={}", s(q, "/key"), s(q, "/values/0")))
                .collect();
            if !terms.is_empty() {
                a.field_selector = Some(terms.join(","));
            }
        }
        return Ok(a);
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|r| r.is_object()) {
        return Ok(RequestAttributes::non_resource(
            s(n, "/verb"),
            s(n, "/path"),
        ));
    }
    Err("exactly one of nonResourceAttributes or resourceAttributes must be specified".into())
}

/// The user a SubjectAccessReview's `spec` names.
fn spec_user(spec: &Value) -> UserInfo {
    let list = |p: &str| super::rbac::rules::strings(spec.pointer(p));
    let mut u = UserInfo::new(s(spec, "/user"), s(spec, "/uid"), list("/groups"));
    if let Some(extra) = spec.get("extra").and_then(Value::as_object) {
        for (k, v) in extra {
            let vals = super::rbac::rules::strings(Some(v));
            u.extra.insert(k.clone(), vals);
        }
    }
    u
}

/// The rules `user` holds in `namespace` across the chain (upstream's union `RulesFor`):
/// resource rules, non-resource rules, whether the list is incomplete, and the errors.
pub fn rules_for(
    srv: &crate::server::ApiServer,
    user: &UserInfo,
    namespace: &str,
) -> (Vec<Value>, Vec<Value>, bool, Vec<String>) {
    let mut resource = Vec::new();
    let mut non_resource = Vec::new();
    let mut incomplete = false;
    let mut errors = Vec::new();
    if user.in_group(MASTERS_GROUP) {
        resource.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        non_resource.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
    }
    if user.node_name().is_some() {
        incomplete = true;
        errors.push("node authorizer does not support user rule resolution".to_string());
    }
    let (rules, walk) = srv.rbac().policy().rules_for(user, namespace);
    for r in rules {
        if !r.resources.is_empty() {
            let mut m = Map::new();
            m.insert("verbs".into(), r.verbs.clone().into());
            m.insert("apiGroups".into(), r.api_groups.clone().into());
            m.insert("resources".into(), r.resources.clone().into());
            if !r.resource_names.is_empty() {
                m.insert("resourceNames".into(), r.resource_names.clone().into());
            }
            resource.push(Value::Object(m));
        }
        if !r.non_resource_urls.is_empty() {
            non_resource.push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        }
    }
    errors.extend(walk.errors);
    (resource, non_resource, incomplete, errors)
}

/// A user as the authentication API writes it (`UserInfo`: username, uid, groups, extra).
fn user_info(u: &UserInfo) -> Value {
    let mut info = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        info["uid"] = u.uid.clone().into();
    }
    if !u.extra.is_empty() {
        info["extra"] = json!(u.extra);
    }
    info
}

/// Upstream's aggregate of errors as text (`a`, or `[a, b]`).
fn aggregate(errors: &[String]) -> String {
    match errors.len() {
        0 => String::new(),
        1 => errors[0].clone(),
        _ => format!("[{}]", errors.join(", ")),
    }
}

/// Upstream's 422 for an invalid review (`Kind.group "" is invalid: ...`).
fn invalid(kind: &str, group: &str, cause: &str) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("{kind}.{group} \"\" is invalid: {cause}"),
    )
}

async fn body(ctx: &mut Ctx) -> Result<Value, ApiError> {
    let bytes = ctx.body_bytes().await?;
    let ct = ctx
        .header(http::header::CONTENT_TYPE)
        .unwrap_or("application/json")
        .to_string();
    let v = if crate::protobuf::is_protobuf_content_type(&ct) {
        crate::protobuf::decode(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?
    } else {
        crate::decode::json_or_yaml(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Ok(v)
}

/// Serves a review.
pub(crate) async fn serve(
    ctx: &mut Ctx,
    method: &Method,
    review: Review,
) -> Result<Response, ApiError> {
    let (group, plural, kind) = review.resource();
    if *method != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let ns = match &review {
        Review::LocalAccess(ns) => ns.as_str(),
        _ => "",
    };
    let mut attrs = RequestAttributes::resource("create", group, plural, "", ns, "");
    attrs.version = "v1".into();
    super::check(&ctx.srv, &ctx.user, &attrs).await?;
    let mut obj = body(ctx).await?;
    obj["apiVersion"] = format!("{group}/v1").into();
    obj["kind"] = kind.into();
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match &review {
        Review::SelfSubject => json!({"userInfo": user_info(&ctx.user)}),
        Review::Token => {
            let token = s(&spec, "/token");
            if token.is_empty() {
                return Err(ApiError::bad_request(
                    "token is required for TokenReview in authentication",
                ));
            }
            let audiences = super::rbac::rules::strings(spec.get("audiences"));
            let reviewed = ctx.srv.review_token(token, &audiences).await;
            let mut st = json!({"user": {}});
            if let Some(u) = &reviewed.user {
                st["authenticated"] = true.into();
                st["user"] = user_info(u);
                st["audiences"] = json!(reviewed.audiences);
            }
            if !reviewed.error.is_empty() {
                st["error"] = reviewed.error.into();
            }
            st
        }
        Review::SelfRules => {
            let ns = s(&spec, "/namespace");
            let (resource, non_resource, incomplete, errors) = rules_for(&ctx.srv, &ctx.user, ns);
            let mut st = json!({"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": incomplete});
            if !errors.is_empty() {
                st["evaluationError"] = aggregate(&errors).into();
            }
            st
        }
        Review::SelfAccess | Review::Access | Review::LocalAccess(_) => {
            let a = spec_attributes(&spec).map_err(|m| {
                invalid(
                    kind,
                    group,
                    &format!("spec.resourceAttributes: Invalid value: \"null\": {m}"),
                )
            })?;
            let user = if review == Review::SelfAccess {
                ctx.user.clone()
            } else {
                let u = spec_user(&spec);
                if u.name.is_empty() && u.groups.is_empty() {
                    return Err(invalid(
                        kind,
                        group,
                        "spec.user: Invalid value: \"\": at least one of user or group must be specified",
                    ));
                }
                u
            };
            if let Review::LocalAccess(ns) = &review
                && a.resource_request
                && a.namespace != *ns
            {
                return Err(ApiError::bad_request(format!(
                    "spec.resourceAttributes.namespace must match namespace: {ns}"
                )));
            }
            let decision = ctx.srv.authorize(&user, &a);
            let mut st = json!({"allowed": decision.allowed()});
            if matches!(decision, super::Decision::Deny(_)) {
                st["denied"] = true.into();
            }
            if !decision.reason().is_empty() {
                st["reason"] = decision.reason().into();
            }
            st
        }
    };
    obj["status"] = status;
    Ok(ctx.respond(StatusCode::CREATED, &obj, Output::Json))
}
