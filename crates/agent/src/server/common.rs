//! What the log and exec endpoints share: the bearer-token check, the plain-text error
//! response, and finding a container instance by namespace, pod and container name from the
//! runtime's labels.

use std::path::PathBuf;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use podvisor_runtime::{ContainerId, ContainerRuntime, ContainerState};

use crate::pod::{
    ANNOTATION_RESTART_COUNT, LABEL_POD_NAME, LABEL_POD_NAMESPACE, spec_container_name,
};

/// Whether `headers` carry `Authorization: Bearer <token>` (compared in constant time; an
/// empty configured token lets nobody in).
pub(crate) fn authorized(token: &str, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| !token.is_empty() && constant_time_eq(t.as_bytes(), token.as_bytes()))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn plain(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

pub(crate) struct Target {
    pub(crate) id: ContainerId,
    pub(crate) log_path: PathBuf,
    pub(crate) running: bool,
}

/// The newest sandbox of pod `ns`/`pod`.
pub(crate) async fn find_sandbox(
    runtime: &dyn ContainerRuntime,
    ns: &str,
    pod: &str,
) -> Result<podvisor_runtime::SandboxStatus, Response> {
    let sandboxes = runtime
        .list()
        .await
        .map_err(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, format!("runtime: {e}")))?;
    sandboxes
        .into_iter()
        .filter(|s| {
            s.config.labels.get(LABEL_POD_NAMESPACE).map(String::as_str) == Some(ns)
                && s.config.labels.get(LABEL_POD_NAME).map(String::as_str) == Some(pod)
        })
        .max_by_key(|s| s.created_at)
        .ok_or_else(|| plain(StatusCode::NOT_FOUND, format!("pods \"{pod}\" not found")))
}

pub(crate) async fn find(
    runtime: &dyn ContainerRuntime,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<Target, Response> {
    let sb = find_sandbox(runtime, ns, pod).await?;
    let mut instances: Vec<_> = sb
        .containers
        .into_iter()
        .filter(|c| spec_container_name(&c.config) == container)
        .collect();
    instances.sort_by_key(|c| {
        c.config
            .annotations
            .get(ANNOTATION_RESTART_COUNT)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    });
    let chosen = if previous {
        let n = instances.len();
        (n >= 2)
            .then(|| instances.swap_remove(n - 2))
            .filter(|c| matches!(c.state, ContainerState::Exited(_)))
            .ok_or_else(|| {
                plain(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                    ),
                )
            })?
    } else {
        instances.pop().ok_or_else(|| {
            plain(
                StatusCode::NOT_FOUND,
                format!("container \"{container}\" in pod \"{pod}\" not found"),
            )
        })?
    };
    Ok(Target {
        running: matches!(chosen.state, ContainerState::Running { .. }),
        id: chosen.id,
        log_path: chosen.log_path,
    })
}

/// [`find`] the newest instance of a container, which must be running (exec and attach).
pub(crate) async fn find_running(
    runtime: &dyn ContainerRuntime,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<Target, Response> {
    let target = find(runtime, ns, pod, container, false).await?;
    if !target.running {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running in pod {pod}"),
        ));
    }
    Ok(target)
}
