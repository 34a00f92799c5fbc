//! `pods/portforward`: `kubectl port-forward` (and any client of the kubelet's port-forward
//! protocol) through the API server to the pod's node agent, like exec ([`crate::exec`]).
//!
//! kubectl 1.31 and later send `GET` with `Upgrade: websocket` and the subprotocol
//! `SPDY/3.1+portforward.k8s.io` (SPDY tunnelled in WebSocket binary messages); older
//! ones, and newer ones whose WebSocket upgrade was refused, send `POST` with
//! `Upgrade: SPDY/3.1` and `X-Stream-Protocol-Version: portforward.k8s.io`. Both are passed
//! on unchanged to the agent's `/portForward/<ns>/<pod>`, which speaks SPDY either way and
//! connects inside the pod's network namespace; the ports travel in the SPDY stream
//! headers, not in the query. The pod must exist and be bound to a node.

use axum::response::Response;
use serde_json::Value;

use crate::error::ApiError;
use crate::exec::{UpgradeKind, WEBSOCKET, proxy_upgrade, upgrade_kind};
use crate::logs::kubelet_endpoint;
use crate::request::Ctx;

/// The SPDY/3.1 upgrade.
const SPDY: UpgradeKind = UpgradeKind {
    method: http::Method::POST,
    upgrade: "SPDY/3.1",
    request_headers: &["x-stream-protocol-version"],
    answer_headers: &["x-stream-protocol-version"],
};

/// Serves `pods/portforward` of `pod` (`namespace`/`name`).
pub async fn serve(
    ctx: &mut Ctx,
    namespace: &str,
    name: &str,
    pod: &Value,
) -> Result<Response, ApiError> {
    let kind = match upgrade_kind(ctx).as_deref() {
        Some("websocket") => &WEBSOCKET,
        Some(u) if u.starts_with("spdy/3.1") => &SPDY,
        _ => return Err(ApiError::bad_request("Upgrade request required")),
    };
    let endpoint = kubelet_endpoint(ctx, pod, name).await?;
    let path = format!("/portForward/{namespace}/{name}");
    proxy_upgrade(ctx, &endpoint, path, kind).await
}
