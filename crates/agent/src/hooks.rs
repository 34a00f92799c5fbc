//! Lifecycle hook handlers (spec §1.9): the point where preStop (and later postStart) run.
//!
//! The worker calls [`HookRunner::run`] and bounds it itself: at the deadline the future is
//! dropped and termination goes on (a hook never stretches the hard bound). The default
//! runner, [`DefaultHooks`], implements `exec` (through the runtime, in the container's
//! context), `httpGet` (plain HTTP/1.1; only transport errors fail, the status code is not
//! checked, as upstream) and `sleep`. `tcpSocket` is deprecated for hooks and does nothing.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_runtime::{ContainerId, ContainerRuntime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a hook runs against.
#[derive(Clone, Debug)]
pub struct HookContext {
    /// `<name>_<ns>(<uid>)`, for messages.
    pub pod_full_name: String,
    /// The container's spec.
    pub container: Container,
    /// The running instance.
    pub container_id: ContainerId,
    /// The pod's IP (default host of httpGet).
    pub pod_ip: String,
    /// The time the hook may take at most (the caller also enforces it).
    pub budget: Duration,
}

/// Why a hook failed (the message goes to logs; events say only "PreStopHook failed").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HookError(pub String);

/// Runs lifecycle handlers.
#[async_trait::async_trait]
pub trait HookRunner: Send + Sync + 'static {
    /// Runs `handler`. The caller drops the future when the budget is spent.
    async fn run(&self, ctx: &HookContext, handler: &LifecycleHandler) -> Result<(), HookError>;
}

/// exec, httpGet and sleep.
pub struct DefaultHooks {
    runtime: Arc<dyn ContainerRuntime>,
}

impl DefaultHooks {
    /// Hooks that exec through `runtime`.
    pub fn new(runtime: Arc<dyn ContainerRuntime>) -> DefaultHooks {
        DefaultHooks { runtime }
    }
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, HookError> {
    match port {
        IntOrString::Int(p) => {
            u16::try_from(*p).map_err(|_| HookError(format!("invalid port {p}")))
        }
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            container
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| HookError(format!("couldn't find port: {name}")))
        }
    }
}

/// Sends one plain HTTP/1.1 GET and reads the status line. Transport errors fail.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, HookError> {
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| HookError(format!("Get \"http://{addr}{path}\": {e}")))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-lifecycle/1.32\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| HookError(format!("write: {e}")))?;
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    while n < buf.len() {
        let m = stream
            .read(&mut buf[n..])
            .await
            .map_err(|e| HookError(format!("read: {e}")))?;
        if m == 0 {
            break;
        }
        n += m;
        if buf[..n].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| HookError("malformed HTTP response".into()))
}

#[async_trait::async_trait]
impl HookRunner for DefaultHooks {
    async fn run(&self, ctx: &HookContext, handler: &LifecycleHandler) -> Result<(), HookError> {
        if let Some(exec) = &handler.exec {
            let cmd = exec.command.clone().unwrap_or_default();
            let res = self
                .runtime
                .exec(&ctx.container_id, &cmd, ctx.budget)
                .await
                .map_err(|e| HookError(format!("Exec lifecycle hook ({cmd:?}) for Container \"{}\" in Pod \"{}\" failed - error: {e}", ctx.container.name, ctx.pod_full_name)))?;
            return match res.exit_code {
                Some(0) => Ok(()),
                code => Err(HookError(format!(
                    "Exec lifecycle hook ({cmd:?}) for Container \"{}\" in Pod \"{}\" failed - error: command '{}' exited with {}: , message: {:?}",
                    ctx.container.name,
                    ctx.pod_full_name,
                    cmd.join(" "),
                    code.map(|c| c.to_string())
                        .unwrap_or_else(|| "timeout".into()),
                    String::from_utf8_lossy(&res.output)
                ))),
            };
        }
        if let Some(http) = &handler.http_get {
            let host = http
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| ctx.pod_ip.clone());
            let port = resolve_port(&http.port, &ctx.container)?;
            let mut path = http.path.clone().unwrap_or_default();
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
            let headers: Vec<(String, String)> = http
                .http_headers
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            return tokio::time::timeout(ctx.budget, http_get(&host, port, &path, &headers))
                .await
                .map_err(|_| HookError("http lifecycle hook timed out".into()))?
                .map(|_| ());
        }
        if let Some(sleep) = &handler.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
            return Ok(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, HTTPGetAction, SleepAction};
    use podvisor_runtime::fake::{ExecScript, FakeRuntime, FakeScript, tokio_clock};
    use podvisor_runtime::{ContainerConfig, SandboxConfig};
    use std::time::SystemTime;

    async fn setup() -> (Arc<FakeRuntime>, HookContext) {
        let rt = Arc::new(FakeRuntime::new(tokio_clock(SystemTime::UNIX_EPOCH)));
        rt.script(
            "c",
            FakeScript::default().exec(["false"], ExecScript::exit(1).output("boom")),
        );
        rt.create_sandbox(SandboxConfig {
            id: "s".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let id = rt
            .create_container(
                "s",
                ContainerConfig {
                    name: "c".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        let ctx = HookContext {
            pod_full_name: "p_ns(u)".into(),
            container: Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("web".into()),
                    container_port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            },
            container_id: id,
            pod_ip: "127.0.0.1".into(),
            budget: Duration::from_secs(30),
        };
        (rt, ctx)
    }

    #[tokio::test(start_paused = true)]
    async fn exec_hook_succeeds_on_zero_and_fails_with_upstream_message() {
        let (rt, ctx) = setup().await;
        let hooks = DefaultHooks::new(rt.clone());
        let ok = LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        };
        hooks.run(&ctx, &ok).await.unwrap();
        let bad = LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["false".into()]),
            }),
            ..Default::default()
        };
        let err = hooks.run(&ctx, &bad).await.unwrap_err();
        assert!(
            err.0.starts_with(
                "Exec lifecycle hook ([\"false\"]) for Container \"c\" in Pod \"p_ns(u)\" failed"
            ),
            "{err}"
        );
        assert!(err.0.contains("boom"));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hook_sleeps_on_tokio_time() {
        let (rt, ctx) = setup().await;
        let hooks = DefaultHooks::new(rt);
        let t0 = tokio::time::Instant::now();
        let h = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 5 }),
            ..Default::default()
        };
        hooks.run(&ctx, &h).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn http_hook_fails_only_on_transport_errors() {
        let (rt, mut ctx) = setup().await;
        let hooks = DefaultHooks::new(rt);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            req
        });
        ctx.container.ports = Some(vec![ContainerPort {
            name: Some("web".into()),
            container_port: i32::from(port),
            ..Default::default()
        }]);
        let h = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("web".into()),
                path: Some("/echo?msg=prestop".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        hooks.run(&ctx, &h).await.unwrap();
        assert!(
            server
                .await
                .unwrap()
                .starts_with("GET /echo?msg=prestop HTTP/1.1")
        );
        // nothing listens any more: transport error
        let closed = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(hooks.run(&ctx, &closed).await.is_err());
        let unknown = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("nope".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            hooks.run(&ctx, &unknown).await.unwrap_err().0,
            "couldn't find port: nope"
        );
    }
}
