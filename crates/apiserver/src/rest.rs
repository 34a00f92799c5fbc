//! The HTTP layer: one entry point ([`dispatch`]) that authenticates, parses the path into a
//! resource request, authorizes, decodes the body and query, calls [`crate::ops`], and
//! encodes the answer (JSON, YAML, Table or PartialObjectMetadata) or a Status error.

use std::panic::AssertUnwindSafe;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::{FutureExt as _, StreamExt as _};
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use crate::auth::RequestAttributes;
use crate::discovery::{self, Flavour};
use crate::error::{ApiError, success_status};
use crate::metrics::RequestMetric;
use crate::objects;
use crate::ops::{DeleteOptions, UpdateMode};
use crate::patch::{self, PatchType};
use crate::registry::{self, PODS, ResourceKind, Strategy, Subresource};
use crate::request::{
    Ctx, Output, Query, Selectors, Target, list_prefix, negotiate, parse_resource_version,
    parse_target, partial_metadata,
};
use crate::server::ApiServer;
use crate::storage::ContinueToken;
use crate::strategy;

/// The router's single handler.
pub async fn dispatch(srv: ApiServer, req: http::Request<Body>) -> Response {
    match AssertUnwindSafe(handle(srv, req)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => ApiError::internal("the request handler panicked").into_response(),
    }
}

/// One named health check of `/livez`, `/readyz` and `/healthz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// The server answers.
    Ping,
    /// The store answers a read (`etcd`, as upstream names the storage check).
    Etcd,
    /// The store can take writes (`etcd-readiness`): a full disk makes the server unready
    /// but not dead.
    EtcdReadiness,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Ping => "ping",
            Check::Etcd => "etcd",
            Check::EtcdReadiness => "etcd-readiness",
        }
    }

    async fn run(self, srv: &ApiServer) -> Result<(), String> {
        let store = &srv.core().storage.store;
        let probe = async {
            match self {
                Check::Ping => Ok(()),
                Check::Etcd => store.current_revision().await.map(|_| ()),
                Check::EtcdReadiness => store.health().await,
            }
        };
        match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the store did not answer within 2s".to_string()),
        }
    }
}

/// `/livez`, `/readyz`, `/healthz` and `/<endpoint>/<check>`, as upstream's healthz package
/// answers them: `ok`, or with `?verbose` (or on failure) one `[+]name ok` / `[-]name failed:
/// reason withheld` line per check and `<endpoint> check passed|failed`; `?exclude=name`
/// skips a check. With `?verbose` a failed check also shows its reason.
async fn health(srv: &ApiServer, endpoint: &str, rest: &[&str], query: Option<&str>) -> Response {
    let checks: &[Check] = match endpoint {
        "readyz" => &[Check::Ping, Check::Etcd, Check::EtcdReadiness],
        _ => &[Check::Ping, Check::Etcd],
    };
    if let [one] = rest {
        let Some(c) = checks.iter().find(|c| c.name() == *one) else {
            return ApiError::path_not_found().into_response();
        };
        return match c.run(srv).await {
            Ok(()) => text(StatusCode::OK, "ok"),
            Err(e) => text_owned(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal server error: {e}\n"),
            ),
        };
    }
    if !rest.is_empty() {
        return ApiError::path_not_found().into_response();
    }
    let q = Query::parse(query);
    let verbose = q.get("verbose").is_some();
    let excluded = q.all("exclude");
    let mut body = String::new();
    let mut failed = false;
    for c in checks {
        if excluded.iter().any(|e| e == c.name()) {
            body.push_str(&format!("[+]{} excluded: ok\n", c.name()));
            continue;
        }
        match c.run(srv).await {
            Ok(()) => body.push_str(&format!("[+]{} ok\n", c.name())),
            Err(e) => {
                failed = true;
                tracing::warn!(check = c.name(), error = %e, "{endpoint} check failed");
                let reason = if verbose { e } else { "reason withheld".into() };
                body.push_str(&format!("[-]{} failed: {reason}\n", c.name()));
            }
        }
    }
    let unknown: Vec<String> = excluded
        .iter()
        .filter(|e| !checks.iter().any(|c| c.name() == e.as_str()))
        .map(|e| format!("{e:?}"))
        .collect();
    if !unknown.is_empty() {
        body.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            unknown.join(",")
        ));
    }
    if failed {
        body.push_str(&format!("{endpoint} check failed\n"));
        return text_owned(StatusCode::INTERNAL_SERVER_ERROR, body);
    }
    if !verbose {
        return text(StatusCode::OK, "ok");
    }
    body.push_str(&format!("{endpoint} check passed\n"));
    text_owned(StatusCode::OK, body)
}

fn text_owned(code: StatusCode, body: String) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn text(code: StatusCode, body: &'static str) -> Response {
    text_owned(code, body.to_string())
}

fn json_response(v: &Value, ct: &'static str) -> Response {
    let mut r = (StatusCode::OK, serde_json::to_vec(v).unwrap_or_default()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// Serves one request and records it in the metrics (count, latency, in flight; a watch
/// holds the long-running gauge until its body ends).
async fn handle(srv: ApiServer, req: http::Request<Body>) -> Response {
    let started = tokio::time::Instant::now();
    let _in_flight = crate::metrics::in_flight(req.method());
    let mut metric = RequestMetric::non_resource(req.method(), req.uri().path());
    let (mut r, warnings) = crate::warning::collect(serve(srv, req, &mut metric)).await;
    crate::warning::append_headers(r.headers_mut(), &warnings);
    let Some(m) = metric else { return r };
    m.record(r.status().as_u16(), started.elapsed().as_secs_f64());
    if m.verb != "WATCH" || !r.status().is_success() {
        return r;
    }
    let guard = m.long_running();
    let (parts, body) = r.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _open = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

async fn serve(
    srv: ApiServer,
    req: http::Request<Body>,
    metric: &mut Option<RequestMetric>,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Open endpoints.
    match segs.as_slice() {
        ["version"] => return json_response(&discovery::version(), "application/json"),
        [endpoint @ ("readyz" | "livez" | "healthz"), rest @ ..] => {
            return health(&srv, endpoint, rest, parts.uri.query()).await;
        }
        // The web view's files (no data in them; its data calls are authenticated below).
        s if crate::ui::is_ui(s) => {
            return crate::ui::serve(&parts.method, &path, s, &parts.headers);
        }
        _ => {}
    }
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let user = match token {
        Some(t) => srv.authenticate(t).await,
        None => None,
    };
    let Some(user) = user else {
        return ApiError::unauthorized().into_response();
    };
    // `kubectl --as`: the request runs as the impersonated user (flow control and
    // authorization see it), the audit log names both.
    let (user, impersonator, refused) =
        match crate::auth::impersonate(&srv, &user, &mut parts.headers).await {
            Ok(Some(acting)) => (acting, Some(user), None),
            Ok(None) => (user, None, None),
            Err(e) => (user, None, Some(e)),
        };
    let query = Query::parse(parts.uri.query());
    let long_running =
        query.bool("watch").unwrap_or(false) || query.bool("follow").unwrap_or(false);
    let _slot = if long_running {
        None
    } else {
        match srv.begin_request(&user).await {
            Ok(slot) => Some(slot),
            Err(_) => return ApiError::too_many_requests().into_response(),
        }
    };
    let audit = srv.audit();
    let received = audit
        .as_ref()
        .map(|_| crate::audit::timestamp(srv.core().now()));
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut ctx = Ctx {
        srv,
        user,
        query,
        headers: parts.headers,
        body: std::sync::Mutex::new(Some(body)),
        warnings: Vec::new(),
        upgrade: std::sync::Mutex::new(upgrade),
        metric: None,
        keep_body: audit.as_ref().is_some_and(|a| a.wants_bodies()),
        kept_body: None,
    };
    let method = parts.method;
    let resource_request = matches!(segs.as_slice(), ["api", _, _, ..] | ["apis", _, _, _, ..]);
    let denied = if refused.is_some() {
        refused
    } else if resource_request {
        None
    } else {
        let attrs = RequestAttributes::non_resource(&method.as_str().to_ascii_lowercase(), &path);
        crate::auth::check(&ctx.srv, &ctx.user, &attrs).await.err()
    };
    let result = match segs.as_slice() {
        _ if denied.is_some() => Err(denied.unwrap_or_else(ApiError::path_not_found)),
        ["api"] | ["apis"] => {
            if method != Method::GET {
                Err(ApiError::method_not_allowed())
            } else {
                let flavour = Flavour::negotiate(accept.as_deref());
                let core = segs[0] == "api";
                let doc = match flavour {
                    Flavour::Legacy if core => {
                        discovery::api_versions(&ctx.srv.advertise_address())
                    }
                    Flavour::Legacy => discovery::api_group_list(),
                    f => discovery::aggregated(core, f),
                };
                let body = serde_json::to_string(&doc).unwrap_or_default();
                let mut r = cached(&ctx.headers, body, flavour.content_type());
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Accept"));
                Ok(r)
            }
        }
        ["metrics"] => match method == Method::GET {
            false => Err(ApiError::method_not_allowed()),
            true => {
                let mut r = (StatusCode::OK, podvisor_kit::metrics::render()).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                Ok(r)
            }
        },
        ["api", "v1"] => get_only(&method, discovery::resource_list("", "v1")),
        ["apis", g] => get_only(&method, discovery::api_group_doc(g)),
        ["apis", g, v] => get_only(&method, discovery::resource_list(g, v)),
        ["openapi", "v2"] => {
            // Asked for with `@v1.0`, answered with `.v1.0` (a valid media type), as
            // kube-openapi does.
            const PB: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
            let wants_pb = accept.as_deref().is_some_and(|a| {
                a.split(',').any(|m| {
                    let m = m.split(';').next().unwrap_or("").trim();
                    m == PB || m == "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
                })
            });
            if method != Method::GET {
                Err(ApiError::method_not_allowed())
            } else if wants_pb {
                let body = crate::openapi::v2_protobuf();
                let mut r = cached_bytes(&ctx.headers, body, PB);
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Accept"));
                Ok(r)
            } else {
                let mut r = cached(&ctx.headers, crate::openapi::v2(), "application/json");
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Accept"));
                Ok(r)
            }
        }
        ["openapi", "v3"] => match method == Method::GET {
            false => Err(ApiError::method_not_allowed()),
            true => Ok(cached(
                &ctx.headers,
                crate::openapi::v3_index(),
                "application/json",
            )),
        },
        ["openapi", "v3", rest @ ..] => {
            match (method == Method::GET, crate::openapi::v3_lookup(rest)) {
                (false, _) => Err(ApiError::method_not_allowed()),
                (true, None) => Err(ApiError::path_not_found()),
                (true, Some(doc)) => {
                    let mut r = cached(&ctx.headers, doc, "application/json");
                    if ctx.query.get("hash").is_some() {
                        r.headers_mut().insert(
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, immutable"),
                        );
                    }
                    Ok(r)
                }
            }
        }
        ["api", "v1", rest @ ..] => {
            resource(&mut ctx, &method, accept.as_deref(), "", "v1", rest).await
        }
        [
            "apis",
            crate::metrics_api::GROUP,
            crate::metrics_api::VERSION,
            rest @ ..,
        ] => crate::metrics_api::serve(&mut ctx, &method, rest).await,
        ["apis", g, v, rest @ ..] => {
            let (g, v) = (g.to_string(), v.to_string());
            resource(&mut ctx, &method, accept.as_deref(), &g, &v, rest).await
        }
        _ => Err(ApiError::path_not_found()),
    };
    if let Some(m) = ctx.metric.take() {
        *metric = Some(m);
    }
    let response = result.unwrap_or_else(|e| e.into_response());
    if let (Some(log), Some(received)) = (audit, received) {
        let attrs = audit_attributes(&ctx, &method, &segs, &path);
        let uri = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(&path);
        let (user, impersonated) = match &impersonator {
            Some(original) => (original, Some(&ctx.user)),
            None => (&ctx.user, None),
        };
        log.record(&crate::audit::AuditRequest {
            user,
            impersonated,
            attrs: &attrs,
            uri,
            user_agent: ctx.header(header::USER_AGENT),
            code: response.status().as_u16(),
            received,
            stage_time: crate::audit::timestamp(ctx.srv.core().now()),
            streaming: long_running && response.status().is_success(),
            body: ctx.kept_body.as_deref(),
            annotations: crate::warning::annotations(),
        });
    }
    response
}

/// The attributes of a request, for the audit log.
fn audit_attributes(ctx: &Ctx, method: &Method, segs: &[&str], path: &str) -> RequestAttributes {
    let target = match segs {
        ["api", "v1", rest @ ..] if !rest.is_empty() => parse_target("", "v1", rest).ok(),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => parse_target(g, v, rest).ok(),
        _ => None,
    };
    match target {
        Some(t) => {
            let watch = ctx.query.bool("watch").unwrap_or(false);
            let verb = verb_of(method, &t, watch).unwrap_or("create");
            attributes(ctx, &t, verb)
        }
        None => RequestAttributes::non_resource(&method.as_str().to_ascii_lowercase(), path),
    }
}

/// A document with an ETag (its hash); `304 Not Modified` when `If-None-Match` names it.
fn cached(headers: &http::HeaderMap, body: String, ct: &'static str) -> Response {
    cached_bytes(headers, body.into_bytes(), ct)
}

pub(crate) fn cached_bytes(headers: &http::HeaderMap, body: Vec<u8>, ct: &'static str) -> Response {
    let etag = format!("\"{}\"", crate::openapi::hash(&body));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        r
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn get_only(method: &Method, doc: Option<Value>) -> Result<Response, ApiError> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    doc.map(|d| json_response(&d, "application/json"))
        .ok_or_else(ApiError::path_not_found)
}

fn verb_of(method: &Method, t: &Target, watch: bool) -> Result<&'static str, ApiError> {
    Ok(match (method.as_str(), t.name.is_some(), t.sub) {
        ("GET" | "HEAD", false, _) if watch => "watch",
        ("GET" | "HEAD", false, _) => "list",
        ("GET" | "HEAD", true, Some(Subresource::Binding)) => {
            return Err(ApiError::method_not_allowed());
        }
        ("GET" | "HEAD", true, _) => "get",
        ("POST", false, None) => "create",
        ("POST", true, Some(Subresource::Binding | Subresource::Entries)) => "create",
        // the object itself or a subresource that takes writes
        (
            m @ ("PUT" | "PATCH"),
            true,
            Some(
                Subresource::Status
                | Subresource::Scale
                | Subresource::EphemeralContainers
                | Subresource::Resize,
            )
            | None,
        ) => {
            if m == "PUT" {
                "update"
            } else {
                "patch"
            }
        }
        ("DELETE", true, None) => "delete",
        ("DELETE", false, None) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    })
}

async fn resource(
    ctx: &mut Ctx,
    method: &Method,
    accept: Option<&str>,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response, ApiError> {
    if rest.is_empty() {
        return Err(ApiError::path_not_found());
    }
    if let Some(review) = crate::auth::reviews::Review::route(group, version, rest) {
        return crate::auth::reviews::serve(ctx, method, review).await;
    }
    // Legacy bindings collection: POST /api/v1/namespaces/{ns}/bindings.
    if group.is_empty() && rest.len() == 3 && rest[0] == "namespaces" && rest[2] == "bindings" {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed());
        }
        let t = Target {
            kind: &PODS,
            namespace: Some(rest[1].to_string()),
            name: None,
            sub: Some(Subresource::Binding),
        };
        ctx.metric = Some(RequestMetric::resource(&t, "create", false, false));
        authorize(ctx, &t, "create").await?;
        return binding(ctx, &t).await;
    }
    let t = parse_target(group, version, rest)?;
    ctx.metric = Some(RequestMetric::resource(&t, "connect", false, false));
    if let Some(
        sub @ (Subresource::Exec
        | Subresource::Attach
        | Subresource::PortForward
        | Subresource::Eviction
        | Subresource::Token),
    ) = t.sub
    {
        let allowed = if matches!(sub, Subresource::Eviction | Subresource::Token) {
            *method == Method::POST
        } else {
            *method == Method::GET || *method == Method::POST
        };
        if !allowed {
            return Err(ApiError::method_not_allowed());
        }
        // Opening a stream needs `create` (also for the WebSocket GET), as upstream.
        authorize(ctx, &t, "create").await?;
        return match sub {
            Subresource::Eviction => crate::eviction::evict(ctx, &t).await,
            Subresource::Token => crate::serviceaccount::token::create_token(ctx, &t).await,
            _ => crate::exec::pod_stream(ctx, &t, sub).await,
        };
    }
    let watch = ctx.query.bool("watch")?;
    let verb = verb_of(method, &t, watch)?;
    let apply = ctx
        .header(header::CONTENT_TYPE)
        .is_some_and(|c| c.starts_with("application/apply-patch"));
    let dry = ctx.query.get("dryRun") == Some("All");
    ctx.metric = Some(RequestMetric::resource(&t, verb, apply, dry));
    if t.kind.read_only && t.sub.is_none() && matches!(verb, "create" | "update" | "patch") {
        return Err(ApiError::method_not_allowed());
    }
    if verb != "create" || t.sub.is_some() {
        authorize(ctx, &t, verb).await?;
    }
    let name = t.name.clone().unwrap_or_default();
    match verb {
        "list" => list(ctx, &t, negotiate(accept)?).await,
        "watch" => crate::watch::watch(ctx, &t, negotiate(accept)?).await,
        "get" => match t.sub {
            Some(Subresource::Log) => crate::logs::pod_log(ctx, &t).await,
            Some(Subresource::Scale) => {
                let (obj, _) = ctx
                    .srv
                    .core()
                    .storage
                    .must_get(t.kind, t.namespace.as_deref(), &name)
                    .await?;
                Ok(ctx.respond(StatusCode::OK, &scale_of(t.kind, &obj), negotiate(accept)?))
            }
            _ => get(ctx, &t, negotiate(accept)?).await,
        },
        "create" if t.sub == Some(Subresource::Binding) => binding(ctx, &t).await,
        "create" if t.sub == Some(Subresource::Entries) => {
            crate::timeline::serve_entries(ctx, &t).await
        }
        "create" => create(ctx, &t).await,
        "update" => update(ctx, &t).await,
        "patch" => patch_object(ctx, &t).await,
        "delete" => delete(ctx, &t).await,
        "deletecollection" => delete_collection(ctx, &t).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Whether the user may create objects in `t`'s collection (checked before the body is
/// decoded; as upstream, a create is authorized without a name, and admission then looks at
/// the object).
async fn authorize_collection_create(ctx: &Ctx, t: &Target) -> Result<(), ApiError> {
    let attrs = attributes(ctx, t, "create");
    check(ctx, t, &attrs).await
}

/// The attributes of a request for `t` with `verb`, as upstream's request-info resolver
/// makes them: a list or watch whose field selector names one object (`metadata.name=x`)
/// is for that name.
fn attributes(ctx: &Ctx, t: &Target, verb: &str) -> RequestAttributes {
    let mut attrs = RequestAttributes::resource(
        verb,
        t.kind.group,
        t.kind.plural,
        t.sub.map(|s| s.name()).unwrap_or_default(),
        t.namespace.as_deref().unwrap_or_default(),
        t.name.as_deref().unwrap_or_default(),
    );
    attrs.version = t.kind.version.to_string();
    if matches!(verb, "list" | "watch") {
        let selector = ctx.query.get("fieldSelector").map(str::to_string);
        if let Some(name) = selector
            .as_deref()
            .and_then(|s| podvisor_api::FieldSelector::parse(s).ok())
            .and_then(|s| s.exact("metadata.name").map(str::to_string))
        {
            attrs.name = name;
        }
        attrs.field_selector = selector;
    }
    attrs
}

/// Asks the authorizer chain ([`crate::auth::check`]).
/// Then a node's write must carry its current lease epoch ([`crate::auth::check_node_epoch`]).
async fn check(ctx: &Ctx, t: &Target, attrs: &RequestAttributes) -> Result<(), ApiError> {
    crate::auth::check(&ctx.srv, &ctx.user, attrs).await?;
    crate::auth::check_node_epoch(&ctx.srv, &ctx.user, &ctx.headers, t.kind, attrs).await
}

async fn authorize(ctx: &Ctx, t: &Target, verb: &str) -> Result<(), ApiError> {
    let attrs = attributes(ctx, t, verb);
    check(ctx, t, &attrs).await
}

/// Converts objects to a Table (or leaves them) per `out`, honouring `includeObject`.
pub fn to_table(ctx: &Ctx, kind: &ResourceKind, objs: &[Value], with_defs: bool) -> Value {
    let mut table = patch_table(kind, objs, ctx.srv.core().now());
    let include = ctx.query.get("includeObject").unwrap_or("Metadata");
    if let Some(rows) = table.get_mut("rows").and_then(Value::as_array_mut) {
        for (row, obj) in rows.iter_mut().zip(objs) {
            match include {
                "Object" => row["object"] = obj.clone(),
                "None" => {
                    if let Some(m) = row.as_object_mut() {
                        m.remove("object");
                    }
                }
                _ => {}
            }
        }
    }
    if !with_defs {
        table["columnDefinitions"] = Value::Null;
    }
    table
}

fn patch_table(kind: &ResourceKind, objs: &[Value], now: jiff::Timestamp) -> Value {
    crate::table::table_for(kind, objs, true, now)
}

async fn get(ctx: &mut Ctx, t: &Target, out: Output) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let core = ctx.srv.core();
    let obj = match core
        .storage
        .get(t.kind, t.namespace.as_deref(), &name)
        .await?
    {
        Some((obj, _)) => obj,
        // a timeline is also found by its pod's name
        None if t.kind == &registry::TIMELINES => {
            let ns = t.namespace.as_deref().unwrap_or_default();
            crate::timeline::find_by_pod_name(core, ns, &name).await?
        }
        None => return Err(ApiError::not_found(t.kind, &name)),
    };
    let v = match out {
        Output::Table if t.kind == &registry::TIMELINES => {
            let mut table = crate::timeline::steps_table(&obj);
            if ctx.query.get("includeObject") == Some("Object")
                && let Some(rows) = table["rows"].as_array_mut()
            {
                for row in rows {
                    row["object"] = obj.clone();
                }
            }
            table
        }
        Output::Table => {
            let mut table = to_table(ctx, t.kind, std::slice::from_ref(&obj), true);
            table["metadata"] =
                json!({"resourceVersion": objects::meta_str(&obj, "resourceVersion")});
            table
        }
        Output::Metadata => partial_metadata(&obj),
        _ => obj,
    };
    Ok(ctx.respond(StatusCode::OK, &v, out))
}

async fn list(ctx: &mut Ctx, t: &Target, out: Output) -> Result<Response, ApiError> {
    let sel = Selectors::parse(t.kind, &ctx.query)?;
    let limit = ctx.query.int("limit")?.unwrap_or(0);
    if limit < 0 {
        return Err(ApiError::bad_request(
            "limit must be a non-negative integer",
        ));
    }
    let rv = ctx.query.text("resourceVersion");
    let rv_match = ctx.query.text("resourceVersionMatch");
    let cont_raw = ctx.query.text("continue");
    let prefix = list_prefix(t, &sel);
    let cont = if cont_raw.is_empty() {
        None
    } else {
        if !rv.is_empty() && rv != "0" {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        Some(ContinueToken::decode(&cont_raw, &prefix)?)
    };
    if !rv_match.is_empty() && rv.is_empty() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    let rv_num = parse_resource_version(&rv)?;
    let core = ctx.srv.core();
    let at = match (rv_match.as_str(), rv_num) {
        ("Exact", Some(0)) => {
            return Err(ApiError::bad_request(
                "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
        ("Exact", Some(n)) => Some(n),
        ("NotOlderThan" | "", Some(n)) if n > 0 => {
            core.storage.require_revision(n).await?;
            if rv_match.is_empty() && limit > 0 {
                Some(n)
            } else {
                None
            }
        }
        ("NotOlderThan" | "", _) => None,
        (other, _) => {
            return Err(ApiError::bad_request(format!(
                "invalid resourceVersionMatch {other:?}: supported values are \"Exact\" and \"NotOlderThan\""
            )));
        }
    };
    let kind = t.kind;
    // Fast path: an unfiltered JSON list is spliced from the stored bytes (not for custom
    // kinds, whose objects take the version they are read through).
    let wants_protobuf = crate::protobuf::negotiate(ctx.header(header::ACCEPT))
        == crate::protobuf::ResponseFormat::Protobuf;
    if sel.is_empty() && out == Output::Json && !wants_protobuf && kind.custom.is_none() {
        let page = core
            .storage
            .list_raw(&prefix, limit as usize, cont, at)
            .await?;
        let mut meta = json!({"resourceVersion": page.rev.to_string()});
        if let Some(c) = &page.cont {
            meta["continue"] = Value::from(c.clone());
        }
        if let Some(r) = page.remaining.filter(|r| *r > 0) {
            meta["remainingItemCount"] = Value::from(r);
        }
        let total: usize = page.items.iter().map(|i| i.len() + 1).sum();
        let mut body = Vec::with_capacity(total + 256);
        body.extend_from_slice(
            format!(
                "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
                kind.list_kind(),
                kind.api_version(),
                meta
            )
            .as_bytes(),
        );
        for (i, item) in page.items.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item);
        }
        body.extend_from_slice(b"]}");
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }
    // Fast path: a single name.
    let mut page = if let (Some(name), true) = (
        sel.fields.exact("metadata.name"),
        cont.is_none() && at.is_none(),
    ) {
        let ns = t
            .namespace
            .as_deref()
            .or(sel.fields.exact("metadata.namespace"));
        let rev = core
            .storage
            .store
            .current_revision()
            .await
            .map_err(ApiError::from_store_generic)?;
        let items = if kind.namespaced && ns.is_none() {
            core.storage
                .list(&prefix, 0, None, None, &|o| sel.matches(kind, o))
                .await?
                .items
        } else {
            match core.storage.get(kind, ns, name).await? {
                Some((o, _)) if sel.matches(kind, &o) => vec![o],
                _ => vec![],
            }
        };
        crate::storage::Page {
            items,
            rev,
            cont: None,
            remaining: None,
        }
    } else {
        let keep = |o: &Value| sel.is_empty() || sel.matches(kind, o);
        let mut p = core
            .storage
            .list(&prefix, limit as usize, cont, at, &keep)
            .await?;
        if !sel.is_empty() {
            p.remaining = None;
        }
        p
    };
    for o in &mut page.items {
        crate::crd::convert(kind, o);
    }
    let mut meta = json!({"resourceVersion": page.rev.to_string()});
    if let Some(c) = &page.cont {
        meta["continue"] = Value::from(c.clone());
    }
    if let Some(r) = page.remaining.filter(|r| *r > 0) {
        meta["remainingItemCount"] = Value::from(r);
    }
    let v = match out {
        Output::Table => {
            let mut table = to_table(ctx, kind, &page.items, true);
            table["metadata"] = meta;
            table
        }
        Output::Metadata => {
            let items: Vec<Value> = page.items.iter().map(partial_metadata).collect();
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items})
        }
        _ => {
            json!({"kind": kind.list_kind(), "apiVersion": kind.api_version(), "metadata": meta, "items": page.items})
        }
    };
    Ok(ctx.respond(StatusCode::OK, &v, out))
}

/// Field validation directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

fn field_validation(q: &Query) -> Result<FieldValidation, ApiError> {
    match q.get("fieldValidation").unwrap_or("") {
        "" | "Warn" => Ok(FieldValidation::Warn),
        "Strict" => Ok(FieldValidation::Strict),
        "Ignore" => Ok(FieldValidation::Ignore),
        other => Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
        ))),
    }
}

fn cannot_handle(kind: &ResourceKind, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version {:?} cannot be handled as a {}: {why}",
        kind.kind, kind.version, kind.kind
    ))
}

/// Decodes a JSON or YAML request body into a normalized object of `kind`.
async fn decode_object(ctx: &mut Ctx, kind: &ResourceKind) -> Result<Value, ApiError> {
    let ct = ctx
        .header(header::CONTENT_TYPE)
        .unwrap_or("application/json")
        .to_string();
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let fv = field_validation(&ctx.query)?;
    let bytes = ctx.body_bytes().await?;
    let mut v: Value = match media.as_str() {
        "application/json" | "" | "*/*" => {
            crate::decode::json(&bytes).map_err(|e| cannot_handle(kind, e))?
        }
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            crate::decode::yaml(&bytes).map_err(|e| cannot_handle(kind, e))?
        }
        _ if crate::protobuf::is_protobuf_content_type(&ct) => {
            crate::protobuf::decode(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        _ => return Err(unsupported_media(&ct)),
    };
    let Some(m) = v.as_object_mut() else {
        return Err(cannot_handle(kind, "the body must be a JSON object"));
    };
    let want_av = kind.api_version();
    match m.get("apiVersion") {
        None | Some(Value::Null) => {
            m.insert("apiVersion".into(), want_av.clone().into());
        }
        Some(Value::String(av)) if *av == want_av => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({want_av})",
                other.as_str().unwrap_or("?")
            )));
        }
    }
    match m.get("kind") {
        None | Some(Value::Null) => {
            m.insert("kind".into(), kind.kind.into());
        }
        Some(Value::String(k)) if k == kind.kind => {}
        Some(other) => {
            return Err(cannot_handle(
                kind,
                format!(
                    "kind {} does not match the expected kind {}",
                    other, kind.kind
                ),
            ));
        }
    }
    let normalized = objects::round_trip(kind, v.clone()).map_err(|e| cannot_handle(kind, e))?;
    let unknown = objects::unknown_fields(&v, &normalized);
    ctx.warnings
        .extend(unknown_field_warnings(kind, fv, &unknown)?);
    Ok(normalized)
}

/// What `fieldValidation` makes of `unknown` fields: Strict refuses the object, Warn gives
/// one warning per field, Ignore nothing.
fn unknown_field_warnings(
    kind: &ResourceKind,
    fv: FieldValidation,
    unknown: &[String],
) -> Result<Vec<String>, ApiError> {
    let found: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    match fv {
        FieldValidation::Strict if !found.is_empty() => Err(cannot_handle(
            kind,
            format!("strict decoding error: {}", found.join(", ")),
        )),
        FieldValidation::Warn => Ok(found),
        _ => Ok(Vec::new()),
    }
}

fn unsupported_media(ct: &str) -> ApiError {
    let st = crate::protobuf::unsupported_media_type_status(ct);
    let mut e = ApiError::unsupported_media_type(ct);
    if let Some(m) = st.get("message").and_then(Value::as_str) {
        e.message = m.to_string();
    }
    e
}

fn check_namespace_match(t: &Target, obj: &Value) -> Result<(), ApiError> {
    if let (Some(ns), Some(body_ns)) = (&t.namespace, objects::meta_str(obj, "namespace"))
        && !body_ns.is_empty()
        && body_ns != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

async fn create(ctx: &mut Ctx, t: &Target) -> Result<Response, ApiError> {
    // Nothing is decoded for a user who may create nothing here: the body can be costly.
    authorize_collection_create(ctx, t).await?;
    let obj = decode_object(ctx, t.kind).await?;
    warn_unenforced(ctx, t.kind, &obj);
    check_namespace_match(t, &obj)?;
    let ns = t.namespace.as_deref().unwrap_or_default();
    crate::auth::admit_write(&ctx.srv, &ctx.user, t.kind, None, ns, None, &obj)?;
    let dry = ctx.dry_run()?;
    let manager = ctx.manager();
    // the pod is created as of the request's handling (the scheduler may bind it before
    // this handler gets on)
    let received = ctx.srv.core().clock.now();
    let created = ctx
        .srv
        .core()
        .create(t.kind, t.namespace.as_deref(), obj, dry, Some(&manager))
        .await?;
    if t.kind == &PODS && !dry {
        ctx.srv.core().timeline.record_at(
            received,
            &crate::timeline::pod_key(&created),
            podvisor_kit::timeline::Step::Created,
            None,
            format!("created by {}", ctx.user.name),
            &[("user", ctx.user.name.clone())],
        );
    }
    Ok(ctx.respond(StatusCode::CREATED, &created, Output::Json))
}

async fn update(ctx: &mut Ctx, t: &Target) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    if t.sub == Some(Subresource::Scale) {
        let scale = decode_object(ctx, &registry::SCALE).await?;
        return write_scale(ctx, t, scale).await;
    }
    let body = decode_object(ctx, t.kind).await?;
    warn_unenforced(ctx, t.kind, &body);
    check_namespace_match(t, &body)?;
    let body_name = objects::name_of(&body);
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let dry = ctx.dry_run()?;
    let manager = ctx.manager();
    let mode = UpdateMode::of(t.sub);
    let allow_create = strategy::allow_create_on_update(t.kind) && mode == UpdateMode::Main;
    let (srv, user) = (ctx.srv.clone(), ctx.user.clone());
    let ns = t.namespace.clone().unwrap_or_default();
    let mut transform = |old: Option<&Value>| -> Result<Option<Value>, ApiError> {
        if old.is_none() && !allow_create {
            return Err(ApiError::not_found(t.kind, &name));
        }
        crate::auth::admit_write(&srv, &user, t.kind, t.sub, &ns, old, &body)?;
        Ok(Some(body.clone()))
    };
    let (obj, created) = ctx
        .srv
        .core()
        .update(
            t.kind,
            t.namespace.as_deref(),
            &name,
            mode,
            dry,
            Some((manager.as_str(), t.sub)),
            &mut transform,
        )
        .await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(ctx.respond(code, &obj, Output::Json))
}

fn patch_error(e: patch::PatchError) -> ApiError {
    let mut err = ApiError::new(e.code(), e.reason(), e.message().to_string());
    let causes = e.causes();
    if !causes.is_empty() {
        err = err.with_details(json!({"causes": causes}));
    }
    err
}

async fn patch_object(ctx: &mut Ctx, t: &Target) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let ct = ctx.header(header::CONTENT_TYPE).unwrap_or("").to_string();
    let pt = PatchType::from_content_type(&ct)
        .ok_or_else(|| patch_error(patch::PatchError::unsupported_media_type(&ct)))?;
    let force = ctx.query.bool("force")?;
    if force && pt != PatchType::Apply {
        return Err(ApiError::bad_request(
            "force may only be specified with apply patches",
        ));
    }
    let manager = match ctx.query.get("fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ if pt == PatchType::Apply => {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requests must provide a fieldManager",
            ));
        }
        _ => ctx.manager(),
    };
    let fv = field_validation(&ctx.query)?;
    let dry = ctx.dry_run()?;
    let body = ctx.body_bytes().await?;
    let core = ctx.srv.core();
    let now = core.now_str();
    if t.sub == Some(Subresource::Scale) {
        let (obj, _) = core
            .storage
            .must_get(t.kind, t.namespace.as_deref(), &name)
            .await?;
        let current = scale_of(t.kind, &obj);
        let patched = patch::apply_patch(
            &registry::SCALE,
            pt,
            Some(&current),
            &body,
            &manager,
            force,
            &now,
        )
        .map_err(patch_error)?;
        return write_scale(ctx, t, patched).await;
    }
    let mode = UpdateMode::of(t.sub);
    let kind = t.kind;
    let mut warnings = Vec::new();
    let (srv, user) = (ctx.srv.clone(), ctx.user.clone());
    let ns = t.namespace.clone().unwrap_or_default();
    let mut transform = |old: Option<&Value>| -> Result<Option<Value>, ApiError> {
        if old.is_none() && (pt != PatchType::Apply || mode == UpdateMode::Status) {
            return Err(ApiError::not_found(kind, &name));
        }
        let mut patched =
            patch::apply_patch(kind, pt, old, &body, &manager, force, &now).map_err(patch_error)?;
        // Admission that depends on the writer (NodeRestriction, RBAC escalation).
        crate::auth::admit_write(&srv, &user, kind, t.sub, &ns, old, &patched)?;
        if old.is_none() {
            // Server-side apply creating the object.
            let pn = objects::name_of(&patched).to_string();
            if !pn.is_empty() && pn != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({pn}) does not match the name on the URL ({name})"
                )));
            }
            objects::set_meta(&mut patched, "name", Value::from(name.clone()));
        }
        // Unknown fields introduced by the patch.
        if let Ok(n) = objects::round_trip(kind, with_type_meta(kind, patched.clone())) {
            let unknown = objects::unknown_fields(&with_type_meta(kind, patched.clone()), &n);
            warnings = unknown_field_warnings(kind, fv, &unknown)?;
        }
        Ok(Some(patched))
    };
    let rec = if pt == PatchType::Apply {
        None
    } else {
        Some((manager.as_str(), t.sub))
    };
    let result = core
        .update(
            kind,
            t.namespace.as_deref(),
            &name,
            mode,
            dry,
            rec,
            &mut transform,
        )
        .await;
    ctx.warnings.extend(warnings);
    let (obj, created) = result?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(ctx.respond(code, &obj, Output::Json))
}

fn with_type_meta(kind: &ResourceKind, mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), kind.api_version().into());
        m.insert("kind".into(), kind.kind.into());
    }
    v
}

/// Warns when a CRD carries CEL rules (`x-kubernetes-validations`) this server stores but
/// cannot evaluate (they call a function its CEL library lacks), naming each.
fn warn_unenforced(ctx: &mut Ctx, kind: &ResourceKind, obj: &Value) {
    if kind == &registry::CUSTOMRESOURCEDEFINITIONS {
        ctx.warnings.extend(crate::crd::cel_warnings(obj));
    }
}

/// Where a kind keeps its replica counts and selector: `spec.replicas`, `status.replicas`
/// and `spec.selector`, or a CRD's scale subresource paths.
fn scale_paths(kind: &ResourceKind) -> (String, String, Option<String>) {
    match kind.custom.and_then(|c| c.scale.as_ref()) {
        Some(p) => (
            p.spec_replicas.clone(),
            p.status_replicas.clone(),
            p.label_selector.clone(),
        ),
        None => (
            "/spec/replicas".into(),
            "/status/replicas".into(),
            Some("/spec/selector".into()),
        ),
    }
}

/// The `autoscaling/v1 Scale` view of a workload.
pub fn scale_of(kind: &ResourceKind, obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut m = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            m[f] = v.clone();
        }
    }
    let (spec_replicas, status_replicas, selector_path) = scale_paths(kind);
    let selector = match selector_path.and_then(|p| obj.pointer(&p)) {
        // A CRD's labelSelectorPath names a string in selector syntax.
        Some(Value::String(s)) => s.clone(),
        // ReplicationControllers select with a plain label map.
        Some(s) => {
            let s = match s.as_object() {
                Some(m)
                    if !m.contains_key("matchLabels") && !m.contains_key("matchExpressions") =>
                {
                    json!({"matchLabels": s})
                }
                _ => s.clone(),
            };
            serde_json::from_value(s)
                .ok()
                .map(|s| podvisor_api::selectors::format_label_selector(&s))
                .unwrap_or_default()
        }
        None => String::new(),
    };
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": m,
        "spec": {"replicas": obj.pointer(&spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
        "status": {"replicas": obj.pointer(&status_replicas).and_then(Value::as_i64).unwrap_or(0), "selector": selector}})
}

/// Sets the value at a JSON pointer, creating objects on the way.
fn set_at(obj: &mut Value, pointer: &str, v: Value) {
    let mut cur = obj;
    let segs: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(m) = cur.as_object_mut() else { return };
        if i + 1 == segs.len() {
            m.insert(seg.clone(), v);
            return;
        }
        cur = m.entry(seg.clone()).or_insert_with(|| json!({}));
    }
}

async fn write_scale(ctx: &mut Ctx, t: &Target, scale: Value) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            &registry::SCALE,
            &name,
            &[podvisor_api::FieldError::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )],
        ));
    }
    let want_rv = objects::meta_str(&scale, "resourceVersion")
        .unwrap_or("")
        .to_string();
    let dry = ctx.dry_run()?;
    let manager = ctx.manager();
    let mut transform = |old: Option<&Value>| -> Result<Option<Value>, ApiError> {
        let Some(old) = old else {
            return Err(ApiError::not_found(t.kind, &name));
        };
        let mut new = old.clone();
        if !want_rv.is_empty() {
            objects::set_meta(&mut new, "resourceVersion", Value::from(want_rv.clone()));
        }
        set_at(&mut new, &scale_paths(t.kind).0, Value::from(replicas));
        Ok(Some(new))
    };
    let (obj, _) = ctx
        .srv
        .core()
        .update(
            t.kind,
            t.namespace.as_deref(),
            &name,
            UpdateMode::Main,
            dry,
            Some((manager.as_str(), Some(Subresource::Scale))),
            &mut transform,
        )
        .await?;
    Ok(ctx.respond(StatusCode::OK, &scale_of(t.kind, &obj), Output::Json))
}

async fn binding(ctx: &mut Ctx, t: &Target) -> Result<Response, ApiError> {
    let b = decode_object(ctx, &registry::BINDING).await?;
    let name = match &t.name {
        Some(n) => {
            let bn = objects::name_of(&b);
            if !bn.is_empty() && bn != n {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({bn}) does not match the name on the URL ({n})"
                )));
            }
            n.clone()
        }
        None => objects::name_of(&b).to_string(),
    };
    let ns = t.namespace.clone().unwrap_or_default();
    let node = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() || name.is_empty() {
        let mut errs = Vec::new();
        if name.is_empty() {
            errs.push(podvisor_api::FieldError::required("metadata.name", ""));
        }
        if node.is_empty() {
            errs.push(podvisor_api::FieldError::required("target.name", ""));
        }
        return Err(ApiError::invalid(&registry::BINDING, &name, &errs));
    }
    if ctx.dry_run()? {
        ctx.srv
            .core()
            .storage
            .must_get(&PODS, Some(&ns), &name)
            .await?;
    } else {
        ctx.srv
            .core()
            .bind_pod(&ns, &name, node, b.pointer("/metadata/annotations"))
            .await?;
    }
    Ok(ctx.respond(
        StatusCode::CREATED,
        &success_status(None, Some(201)),
        Output::Json,
    ))
}

async fn delete_options(ctx: &mut Ctx) -> Result<DeleteOptions, ApiError> {
    let bytes = ctx.body_bytes().await?;
    let mut o = DeleteOptions::default();
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let ct = ctx.header(header::CONTENT_TYPE).unwrap_or("").to_string();
        let v: Value = if crate::protobuf::is_protobuf_content_type(&ct) {
            crate::protobuf::decode(&bytes).map_err(|e| {
                ApiError::bad_request(format!("failed to decode DeleteOptions: {e}"))
            })?
        } else {
            crate::decode::json_or_yaml(&bytes).map_err(|e| {
                ApiError::bad_request(format!("failed to decode DeleteOptions: {e}"))
            })?
        };
        let Some(m) = v.as_object() else {
            return Err(ApiError::bad_request(
                "failed to decode DeleteOptions: not an object",
            ));
        };
        if let Some(k) = m.get("kind").and_then(Value::as_str)
            && k != "DeleteOptions"
        {
            return Err(ApiError::bad_request(format!(
                "failed to decode DeleteOptions: unexpected kind {k:?}"
            )));
        }
        match m.get("gracePeriodSeconds") {
            None | Some(Value::Null) => {}
            Some(g) => {
                o.grace_period_seconds = Some(g.as_i64().ok_or_else(|| {
                    ApiError::bad_request("gracePeriodSeconds must be an integer")
                })?)
            }
        }
        if let Some(p) = m.get("preconditions").filter(|p| !p.is_null()) {
            o.uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
            o.resource_version = p
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(d) = m.get("dryRun").and_then(Value::as_array) {
            o.dry_run = d.iter().any(|x| x == "All");
            if d.iter().any(|x| x != "All") {
                return Err(ApiError::bad_request(
                    "Invalid dry run value; supported values: \"All\"",
                ));
            }
        }
        if let Some(p) = m.get("propagationPolicy").filter(|p| !p.is_null()) {
            let p = p.as_str().unwrap_or("?");
            check_propagation(p)?;
            o.propagation_policy = Some(p.to_string());
        }
        match m.get("orphanDependents").and_then(Value::as_bool) {
            Some(_) if o.propagation_policy.is_some() => {
                return Err(ApiError::bad_request(
                    "orphanDependents: Invalid value: true: Cannot set both orphanDependents and propagationPolicy",
                ));
            }
            Some(true) => o.propagation_policy = Some("Orphan".into()),
            Some(false) => o.propagation_policy = Some("Background".into()),
            None => {}
        }
    }
    if o.grace_period_seconds.is_none() {
        o.grace_period_seconds = ctx.query.int("gracePeriodSeconds")?;
    }
    if let Some(p) = ctx.query.get("propagationPolicy").filter(|p| !p.is_empty()) {
        check_propagation(p)?;
        o.propagation_policy = Some(p.to_string());
    }
    o.dry_run = o.dry_run || ctx.dry_run()?;
    Ok(o)
}

fn check_propagation(p: &str) -> Result<(), ApiError> {
    match p {
        "Orphan" | "Background" | "Foreground" => Ok(()),
        other => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

fn delete_details(kind: &ResourceKind, obj: &Value) -> Value {
    let mut d = json!({"name": objects::name_of(obj), "kind": kind.plural, "uid": objects::meta_str(obj, "uid").unwrap_or("")});
    if !kind.group.is_empty() {
        d["group"] = kind.group.into();
    }
    d
}

async fn delete(ctx: &mut Ctx, t: &Target) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let opts = delete_options(ctx).await?;
    // NodeRestriction: a node deletes only pods bound to it.
    if ctx.user.node_name().is_some()
        && t.kind.strategy == Strategy::Pod
        && let Some((pod, _)) = ctx
            .srv
            .core()
            .storage
            .get(t.kind, t.namespace.as_deref(), &name)
            .await?
    {
        crate::auth::admit_delete(&ctx.user, t.kind, &pod)?;
    }
    let d = ctx
        .srv
        .core()
        .delete(t.kind, t.namespace.as_deref(), &name, &opts)
        .await?;
    if t.kind == &PODS && !opts.dry_run {
        crate::timeline::record_delete_request(
            ctx.srv.core(),
            &ctx.user.name,
            &d.object,
            &opts,
            "delete",
        );
    }
    if t.kind.strategy == Strategy::Pod || t.kind.returns_deleted_object() || !d.gone {
        return Ok(ctx.respond(StatusCode::OK, &d.object, Output::Json));
    }
    Ok(ctx.respond(
        StatusCode::OK,
        &success_status(Some(delete_details(t.kind, &d.object)), None),
        Output::Json,
    ))
}

async fn delete_collection(ctx: &mut Ctx, t: &Target) -> Result<Response, ApiError> {
    let sel = Selectors::parse(t.kind, &ctx.query)?;
    let opts = delete_options(ctx).await?;
    let kind = t.kind;
    let core = ctx.srv.core();
    let page = core
        .storage
        .list(&list_prefix(t, &sel), 0, None, None, &|o| {
            sel.matches(kind, o)
        })
        .await?;
    let mut items = Vec::new();
    for obj in page.items {
        let ns = objects::meta_str(&obj, "namespace").map(str::to_string);
        match core
            .delete(kind, ns.as_deref(), objects::name_of(&obj), &opts)
            .await
        {
            Ok(d) => items.push(d.object),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let v = json!({"kind": kind.list_kind(), "apiVersion": kind.api_version(), "metadata": {"resourceVersion": page.rev.to_string()}, "items": items});
    Ok(ctx.respond(StatusCode::OK, &v, Output::Json))
}
