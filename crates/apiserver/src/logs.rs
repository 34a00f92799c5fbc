//! `pods/log`: proxied to the node agent that runs the pod.
//!
//! The API server resolves pod → `spec.nodeName` → the Node's `InternalIP` address (or
//! `Hostname`) and `status.daemonEndpoints.kubeletEndpoint.Port`, then sends
//!
//! ```text
//! GET https://<ip>:<port>/containerLogs/<ns>/<pod>/<container>?follow=&tailLines=&sinceSeconds=&sinceTime=&timestamps=&previous=&limitBytes=
//! Authorization: Bearer <that node's token>
//! ```
//!
//! over TLS, accepting only the certificate the node published on its Node
//! (`node.podvisor.io/serving-cert-sha256`), valid for the address dialed, and streams the
//! body back as `text/plain`. The agent answers errors as a JSON
//! `metav1.Status` with the matching HTTP code; those are passed on unchanged; other
//! non-2xx bodies are wrapped in a Status.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::error::ApiError;
use crate::registry::{NODES, PODS};
use crate::request::{Ctx, Target};

const PASSED: &[&str] = &[
    "follow",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "previous",
    "limitBytes",
];

fn container_names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Picks the container as upstream does, or explains why it cannot.
pub fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let containers = container_names(pod, "containers");
    let init = container_names(pod, "initContainers");
    let ephemeral = container_names(pod, "ephemeralContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|x| x == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// The kubelet's `validateContainerLogStatus` on the status the API server holds: logs
/// exist only for a container that runs or ran; otherwise a 400 says why (`kubectl logs`
/// prints `container "c" in pod "p" is waiting to start: ContainerCreating`).
pub fn check_log_status(pod: &Value, container: &str, previous: bool) -> Result<(), ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|f| {
        pod.pointer(&format!("/status/{f}"))
            .and_then(Value::as_array)
    })
    .flatten()
    .find(|s| s.get("name").and_then(Value::as_str) == Some(container));
    let err = |what: &str| {
        Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" {what}"
        )))
    };
    let Some(st) = status else {
        return err("is not available");
    };
    let id_of = |v: Option<&Value>| {
        v.and_then(|t| t.get("containerID"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .is_some()
    };
    let last = st.pointer("/lastState/terminated");
    if previous {
        if last.is_none() || !id_of(last) {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        return Ok(());
    }
    if st.pointer("/state/running").is_some() {
        return Ok(());
    }
    if let Some(t) = st.pointer("/state/terminated") {
        return if id_of(Some(t)) || id_of(last) {
            Ok(())
        } else {
            err("is terminated")
        };
    }
    if last.is_some() {
        return if id_of(last) {
            Ok(())
        } else {
            err("is terminated")
        };
    }
    if let Some(w) = st.pointer("/state/waiting") {
        return match w.get("reason").and_then(Value::as_str).unwrap_or("") {
            "ErrImagePull" => err("is waiting to start: image can't be pulled"),
            "ImagePullBackOff" => err("is waiting to start: trying and failing to pull image"),
            reason => err(&format!("is waiting to start: {reason}")),
        };
    }
    err("is waiting to start - no logs yet")
}

fn validate_params(ctx: &Ctx) -> Result<(), ApiError> {
    for k in ["tailLines", "sinceSeconds", "limitBytes"] {
        if let Some(n) = ctx.query.int(k)?
            && (n < 0 || (k != "tailLines" && n == 0))
        {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("{k}: Invalid value: {n}: must be greater than 0"),
            ));
        }
    }
    for k in ["follow", "timestamps", "previous"] {
        ctx.query.bool(k)?;
    }
    if ctx.query.get("sinceSeconds").is_some() && ctx.query.get("sinceTime").is_some() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    if let Some(t) = ctx.query.get("sinceTime")
        && crate::objects::parse_time(t).is_none()
    {
        return Err(ApiError::bad_request(format!("invalid sinceTime {t:?}")));
    }
    Ok(())
}

/// The agent's path for `verb` on one container: `/{verb}/{namespace}/{pod}/{container}?{query}`.
pub(crate) fn kubelet_path(
    verb: &str,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "/{verb}/{}/{}/{}?{query}",
        enc(namespace),
        enc(pod),
        enc(container)
    )
}

/// The body of an agent's refusal, read for at most 10 s (empty if it does not come).
pub(crate) async fn agent_body(body: hyper::body::Incoming) -> bytes::Bytes {
    tokio::time::timeout(std::time::Duration::from_secs(10), body.collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

/// Where the agent of the node that runs a pod serves logs and exec, and what the API server
/// needs to talk to it.
pub(crate) struct KubeletEndpoint {
    /// `host:port` (`[v6]:port`).
    pub authority: String,
    /// The node's address dialed (its `InternalIP`, else its `Hostname`).
    host: String,
    /// The node's token, sent once the agent's certificate checked out.
    pub token: String,
    /// The agent's serving certificate, as the node published it.
    pin: String,
}

impl KubeletEndpoint {
    /// A TLS connection to the agent that accepts only the certificate its node published,
    /// valid for the address dialed; given up after 10 s with the error text upstream's
    /// proxy gives.
    pub(crate) async fn dial(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ApiError> {
        let authority = &self.authority;
        let ten = std::time::Duration::from_secs(10);
        let tcp = tokio::time::timeout(ten, tokio::net::TcpStream::connect(authority))
            .await
            .map_err(|_| ApiError::internal(format!("dial tcp {authority}: i/o timeout")))?
            .map_err(|e| ApiError::internal(format!("dial tcp {authority}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| ApiError::internal(format!("node address {:?}: {e}", self.host)))?;
        let connector =
            tokio_rustls::TlsConnector::from(crate::tls::pinned_client_config(Some(&self.pin)));
        tokio::time::timeout(ten, connector.connect(name, tcp))
            .await
            .map_err(|_| ApiError::internal(format!("tls handshake with {authority}: timeout")))?
            .map_err(|e| ApiError::internal(format!("tls handshake with {authority}: {e}")))
    }
}

impl KubeletEndpoint {
    /// `GET path` from the agent (with the node's token); the answer's head, its body to
    /// be read by the caller.
    pub(crate) async fn get(
        &self,
        ctx: &Ctx,
        path: String,
    ) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
        let stream = self.dial().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ApiError::internal(format!("kubelet connection: {e}")))?;
        ctx.srv.core().tasks.spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::get(path)
            .header(header::HOST, self.authority.as_str())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::internal(format!("kubelet request: {e}")))
    }
}

/// The agent endpoint of the node that runs `pod`, with that node's token and the serving
/// certificate it published.
pub(crate) async fn kubelet_endpoint(
    ctx: &Ctx,
    pod: &Value,
    name: &str,
) -> Result<KubeletEndpoint, ApiError> {
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let (n, _) = ctx.srv.core().storage.must_get(&NODES, None, &node).await?;
    node_endpoint(ctx, &n)
}

/// The agent endpoint of Node object `n`, with that node's token and the serving
/// certificate it published.
pub(crate) fn node_endpoint(ctx: &Ctx, n: &Value) -> Result<KubeletEndpoint, ApiError> {
    let node = crate::objects::name_of(n).to_string();
    let addrs = n
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let pick = |ty: &str| {
        addrs
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(ty))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .map(str::to_string)
    };
    let Some(host) = pick("InternalIP").or_else(|| pick("Hostname")) else {
        return Err(ApiError::internal(format!(
            "node {node:?} has no InternalIP address"
        )));
    };
    let port = n
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_i64)
        .filter(|p| (1..=65535).contains(p))
        .unwrap_or(10250);
    let Some(pin) = n
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(podvisor_api::ANNOTATION_SERVING_CERT_HASH))
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(ApiError::internal(format!(
            "node {node:?} has published no serving certificate ({})",
            podvisor_api::ANNOTATION_SERVING_CERT_HASH
        )));
    };
    let token = ctx
        .srv
        .ensure_node_token(&node)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(KubeletEndpoint {
        authority,
        host,
        token,
        pin,
    })
}

/// Serves `GET .../pods/{name}/log`.
pub async fn pod_log(ctx: &mut Ctx, t: &Target) -> Result<Response, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    validate_params(ctx)?;
    let core = ctx.srv.core();
    let (pod, _) = core
        .storage
        .get(&PODS, Some(&ns), &name)
        .await?
        .ok_or_else(|| {
            ApiError::new(404, "NotFound", format!("pods {name:?} not found"))
                .with_details(serde_json::json!({"name": name, "kind": "pods"}))
        })?;
    let container = choose_container(&pod, ctx.query.get("container"))?;
    if pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    check_log_status(&pod, &container, ctx.query.bool("previous")?)?;
    let endpoint = kubelet_endpoint(ctx, &pod, &name).await?;
    let query = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for k in PASSED {
            if let Some(v) = ctx.query.get(k) {
                q.append_pair(k, v);
            }
        }
        q.finish()
    };
    let path = kubelet_path("containerLogs", &ns, &name, &container, &query);
    let resp = endpoint.get(ctx, path).await?;
    let status = resp.status();
    if status.is_success() {
        let mut r = (StatusCode::OK, Body::new(resp.into_body())).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(r);
    }
    let bytes = agent_body(resp.into_body()).await;
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
        && v.get("kind").and_then(Value::as_str) == Some("Status")
    {
        let mut r = (status, bytes).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }
    let msg = String::from_utf8_lossy(&bytes).trim().to_string();
    let reason = match status.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    Err(ApiError::new(status.as_u16(), reason, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_defaulting_matches_kubectl_expectations() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(choose_container(&one, None).unwrap(), "a");
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let e = choose_container(&two, None).unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(choose_container(&two, Some("i")).unwrap(), "i");
        assert_eq!(choose_container(&two, Some("x")).unwrap_err().code, 400);
    }

    #[test]
    fn log_status_follows_the_kubelet() {
        let pod =
            |st: Value| json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [st]}});
        let msg = |p: &Value, prev: bool| {
            check_log_status(p, "c", prev)
                .err()
                .map(|e| (e.code, e.message))
        };
        let running = pod(json!({"name": "c", "state": {"running": {}}, "containerID": "x://1"}));
        assert_eq!(msg(&running, false), None);
        assert_eq!(
            msg(&running, true),
            Some((
                400,
                "previous terminated container \"c\" in pod \"p\" not found".into()
            ))
        );
        let creating =
            pod(json!({"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}));
        assert_eq!(
            msg(&creating, false),
            Some((
                400,
                "container \"c\" in pod \"p\" is waiting to start: ContainerCreating".into()
            ))
        );
        let crashing = pod(
            json!({"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "x://1"}}}),
        );
        assert_eq!(msg(&crashing, false), None);
        assert_eq!(msg(&crashing, true), None);
        let done = pod(
            json!({"name": "c", "state": {"terminated": {"exitCode": 0, "containerID": "x://1"}}}),
        );
        assert_eq!(msg(&done, false), None);
        let never_ran = pod(json!({"name": "c", "state": {"terminated": {"exitCode": 137}}}));
        assert_eq!(
            msg(&never_ran, false),
            Some((400, "container \"c\" in pod \"p\" is terminated".into()))
        );
        let pull = pod(json!({"name": "c", "state": {"waiting": {"reason": "ImagePullBackOff"}}}));
        assert_eq!(
            msg(&pull, false).unwrap().1,
            "container \"c\" in pod \"p\" is waiting to start: trying and failing to pull image"
        );
        let none = json!({"metadata": {"name": "p"}, "status": {}});
        assert_eq!(
            msg(&none, false),
            Some((400, "container \"c\" in pod \"p\" is not available".into()))
        );
        let init = json!({"metadata": {"name": "p"}, "status": {"initContainerStatuses": [
            {"name": "c", "state": {"waiting": {"reason": "PodInitializing"}}}]}});
        assert_eq!(
            msg(&init, false).unwrap().1,
            "container \"c\" in pod \"p\" is waiting to start: PodInitializing"
        );
    }
}
