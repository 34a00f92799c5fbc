//! `pods/exec`, `pods/attach` and `pods/portforward` (connection upgrades).
//!
//! Exec and attach are validated here (pod, container, phase, options) and then proxied to
//! the node agent like `pods/log` ([`crate::logs`]): the API server sends the client's
//! WebSocket handshake on to `GET /exec/<ns>/<pod>/<container>?…` (or `/attach/…`) with the
//! node's token; when the agent answers `101 Switching Protocols`, that answer goes back to
//! the client and the two upgraded byte streams are spliced, as kube-apiserver's
//! upgrade-aware proxy does ([`proxy_upgrade`], shared with [`crate::portforward`]). An
//! agent error before the upgrade is returned as a Status. The SPDY/3.1 upgrade of older
//! exec clients is not served: it gets 400 with a message at once.

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::error::ApiError;
use crate::logs::{KubeletEndpoint, agent_body, choose_container, kubelet_endpoint, kubelet_path};
use crate::registry::{PODS, Subresource};
use crate::request::{Ctx, Target};

/// How a connection upgrade is passed on to the agent and answered.
pub(crate) struct UpgradeKind {
    /// The method of the request to the agent.
    pub method: http::Method,
    /// The `Upgrade` header of the request to the agent and of the answer.
    pub upgrade: &'static str,
    /// The handshake headers passed on to the agent.
    pub request_headers: &'static [&'static str],
    /// The answer headers passed back to the client.
    pub answer_headers: &'static [&'static str],
}

/// A WebSocket upgrade.
pub(crate) const WEBSOCKET: UpgradeKind = UpgradeKind {
    method: http::Method::GET,
    upgrade: "websocket",
    request_headers: &[
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    ],
    answer_headers: &["sec-websocket-accept", "sec-websocket-protocol"],
};

/// The client's `Upgrade` (lowercase) when it asks for an upgrade.
pub(crate) fn upgrade_kind(ctx: &Ctx) -> Option<String> {
    let connection = ctx
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if !connection {
        return None;
    }
    ctx.headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

fn flag(ctx: &Ctx, k: &str) -> Result<bool, ApiError> {
    ctx.query.bool(k)
}

/// Serves `pods/exec`, `pods/attach` and `pods/portforward`.
pub async fn pod_stream(ctx: &mut Ctx, t: &Target, sub: Subresource) -> Result<Response, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let core = ctx.srv.core();
    let (pod, _) = core
        .storage
        .get(&PODS, Some(&ns), &name)
        .await?
        .ok_or_else(|| ApiError::not_found(&PODS, &name))?;
    if sub == Subresource::PortForward {
        return crate::portforward::serve(ctx, &ns, &name, &pod).await;
    }
    let verb = if sub == Subresource::Exec {
        "exec"
    } else {
        "attach"
    };
    let container = choose_container(&pod, ctx.query.get("container"))?;
    let (stdin, stdout, stderr, tty) = (
        flag(ctx, "stdin")?,
        flag(ctx, "stdout")?,
        flag(ctx, "stderr")?,
        flag(ctx, "tty")?,
    );
    let command = ctx.query.all("command");
    if sub == Subresource::Exec && command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    if !(stdin || stdout || stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        let what = if sub == Subresource::Exec {
            "exec into"
        } else {
            "attach to"
        };
        return Err(ApiError::bad_request(format!(
            "cannot {what} a container in a completed pod; current phase is {phase}"
        )));
    }
    match upgrade_kind(ctx).as_deref() {
        Some("websocket") => {}
        Some(other) if other.starts_with("spdy") => {
            return Err(ApiError::bad_request(format!(
                "{verb} over {other} is not supported by this server: use a client that speaks WebSocket (v5.channel.k8s.io, kubectl 1.30 or later)"
            )));
        }
        _ => return Err(ApiError::bad_request("Upgrade request required")),
    }
    let endpoint = kubelet_endpoint(ctx, &pod, &name).await?;
    let query = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for c in &command {
            q.append_pair("command", c);
        }
        for (k, v) in [
            ("stdin", stdin),
            ("stdout", stdout),
            ("stderr", stderr),
            ("tty", tty),
        ] {
            if v {
                q.append_pair(k, "true");
            }
        }
        q.finish()
    };
    let path = kubelet_path(verb, &ns, &name, &container, &query);
    proxy_upgrade(ctx, &endpoint, path, &WEBSOCKET).await
}

/// Sends the client's upgrade request on to the agent at `endpoint` (with the node's token)
/// and, once the agent switched protocols, splices the two upgraded connections.
pub(crate) async fn proxy_upgrade(
    ctx: &mut Ctx,
    endpoint: &KubeletEndpoint,
    path: String,
    kind: &UpgradeKind,
) -> Result<Response, ApiError> {
    let core = ctx.srv.core();
    let (authority, token) = (&endpoint.authority, &endpoint.token);
    let stream = endpoint.dial().await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::internal(format!("kubelet connection: {e}")))?;
    core.tasks.spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut req = http::Request::builder()
        .method(kind.method.clone())
        .uri(path)
        .header(header::HOST, authority.as_str())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, kind.upgrade);
    for h in kind.request_headers {
        for v in ctx.headers.get_all(*h) {
            req = req.header(*h, v.clone());
        }
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp =
        tokio::time::timeout(std::time::Duration::from_secs(30), sender.send_request(req))
            .await
            .map_err(|_| ApiError::internal("kubelet request: no answer within 30s"))?
            .map_err(|e| ApiError::internal(format!("kubelet request: {e}")))?;
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(agent_error(status, resp.into_body()).await);
    }
    let Some(client_upgrade) = ctx.upgrade.lock().ok().and_then(|mut u| u.take()) else {
        return Err(ApiError::bad_request(
            "the connection cannot be upgraded (HTTP/1.1 is required)",
        ));
    };
    let mut answer = http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, kind.upgrade);
    for h in kind.answer_headers {
        for v in resp.headers().get_all(*h) {
            answer = answer.header(*h, v.clone());
        }
    }
    let agent_upgrade = hyper::upgrade::on(&mut resp);
    core.tasks.spawn(async move {
        let (client, agent) = match tokio::join!(client_upgrade, agent_upgrade) {
            (Ok(c), Ok(a)) => (c, a),
            (c, a) => {
                tracing::debug!(client = c.is_ok(), agent = a.is_ok(), "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut agent = TokioIo::new(agent);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
    });
    answer
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Turns an agent's refusal into the client's error: a Status is passed on, other bodies
/// are wrapped in one.
async fn agent_error(status: StatusCode, body: hyper::body::Incoming) -> ApiError {
    let bytes = agent_body(body).await;
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
        && v.get("kind").and_then(Value::as_str) == Some("Status")
    {
        let reason = v.get("reason").and_then(Value::as_str).unwrap_or("");
        let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
        return ApiError::new(
            status.as_u16(),
            static_reason(reason, status),
            msg.to_string(),
        );
    }
    let msg = String::from_utf8_lossy(&bytes).trim().to_string();
    ApiError::new(status.as_u16(), static_reason("", status), msg)
}

fn static_reason(reason: &str, status: StatusCode) -> &'static str {
    match (reason, status.as_u16()) {
        ("NotFound", _) | (_, 404) => "NotFound",
        ("BadRequest", _) | (_, 400) => "BadRequest",
        (_, 401) => "Unauthorized",
        (_, 403) => "Forbidden",
        _ => "InternalError",
    }
}
