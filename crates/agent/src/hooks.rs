//! Lifecycle hooks (spec §1.9, §1.6): postStart and preStop, on the handlers shared with
//! the probes (`crate::handlers`).
//!
//! # Pieces
//!
//! * [`HookRunner`]: what the pod worker calls to run one lifecycle handler against a
//!   [`HookContext`] (the preStop of a termination or of a restart kill). The worker bounds
//!   it itself: at the deadline the future is dropped and termination goes on (a hook never
//!   stretches the hard bound).
//! * [`LifecycleHooks`]: the production runner: exec with the container's `$(VAR)`
//!   expansion, httpGet with HTTPS (unverified), same-host redirects and the HTTPS→HTTP
//!   fallback, sleep; the kubelet's messages.
//! * [`run_post_start`]: the whole postStart protocol around one handler run (outcomes,
//!   events), on a [`HookTarget`].
//!
//! # postStart
//!
//! ```text
//! start_container ──▶ run_post_start(ctx, hook, kill_token)
//!                        ├─ Completed  → report the container running (and probe it)
//!                        ├─ Failed     → event FailedPostStartHook "PostStartHook failed";
//!                        │               kill the container with message "FailedPostStartHook"
//!                        │               (preStop runs, normal grace); waiting reason
//!                        │               PostStartHookError with the message; restart per policy
//!                        └─ Cancelled  → the pod is being deleted: stop waiting at once
//!                                        (the kubelet hangs here; we do not)
//! ```
//!
//! While the hook runs the container is reported `waiting` (ContainerCreating or
//! PodInitializing), never `running`.
//!
//! # preStop
//!
//! preStop runs only when the agent stops a running container (never for a container that
//! exited by itself), inside the one stop path (`crate::pod::stop`): [`HookRunner::run`] with
//! what is left until the stop's deadline as its budget, dropped at the deadline or when the
//! container exits. The stop signal follows; SIGKILL comes at the deadline but never less
//! than 2 s after the signal (`pod::stop::sigkill_at`, the one minimum-grace rule). A failed
//! hook gives event FailedPreStopHook "PreStopHook failed" and the stop goes on.
//!
//! Messages copy the kubelet's: `Exec lifecycle hook ([sh -c exit 1]) for Container "c" in
//! Pod "p_ns(uid)" failed - error: command 'sh -c exit 1' exited with 1: , message: ""`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use podvisor_runtime::{ContainerId, ContainerRuntime};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handlers::http::{self, HttpOutcome};
use crate::handlers::{
    Action, HandlerEvent, Purpose, cap_output, expand_command, format_pod, join_host_port, sleep,
};

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

/// Event reason of a failed postStart hook.
pub const FAILED_POST_START_HOOK: &str = "FailedPostStartHook";
/// Event reason of a failed preStop hook.
pub const FAILED_PRE_STOP_HOOK: &str = "FailedPreStopHook";
/// The waiting reason of a container whose postStart hook failed.
pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";

/// An exec hook without a timeout of its own runs at most this long (a postStart is also
/// ended by a deletion; a preStop by its budget).
const EXEC_HOOK_CEILING: Duration = Duration::from_secs(24 * 3600);

/// Where [`run_post_start`] (and, through [`LifecycleHooks`], a preStop) runs a hook.
#[derive(Clone)]
pub struct HookTarget {
    /// The runtime (exec).
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Pod name.
    pub pod_name: String,
    /// Pod namespace.
    pub pod_namespace: String,
    /// Pod UID.
    pub pod_uid: String,
    /// The pod IP (default host of httpGet).
    pub pod_ip: String,
    /// The container's spec.
    pub container: Container,
    /// The container instance.
    pub container_id: ContainerId,
}

impl std::fmt::Debug for HookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookTarget")
            .field("pod", &self.pod_name)
            .field("container", &self.container.name)
            .field("container_id", &self.container_id)
            .finish()
    }
}

/// How a postStart hook ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostStartOutcome {
    /// It finished: the container may be reported running.
    Completed {
        /// Events to record (an HTTPS→HTTP fallback).
        events: Vec<HandlerEvent>,
    },
    /// It failed: kill the container (message `FailedPostStartHook`), waiting reason
    /// `PostStartHookError` with `message`.
    Failed {
        /// The hook's error message (for the container status, not the event).
        message: String,
        /// Events to record (FailedPostStartHook, plus any fallback).
        events: Vec<HandlerEvent>,
    },
    /// The pod's kill token fired while the hook ran.
    Cancelled,
}

fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// Runs a hook's action once. `deadline`: when to give up (None = no limit but the
/// ceiling). Returns the error message on failure, and events.
async fn run_hook(
    ctx: &HookTarget,
    handler: &LifecycleHandler,
    deadline: Option<Instant>,
) -> (Result<(), String>, Vec<HandlerEvent>) {
    let pod = format_pod(&ctx.pod_name, &ctx.pod_namespace, &ctx.pod_uid);
    let cname = &ctx.container.name;
    let mut events = Vec::new();
    let remaining = || match deadline {
        Some(d) => d.saturating_duration_since(Instant::now()),
        None => EXEC_HOOK_CEILING,
    };
    let action = match Action::from_lifecycle(handler) {
        Ok(a) => a,
        Err(e) => {
            return (
                Err(format!("Cannot run handler: invalid handler: {e}")),
                events,
            );
        }
    };
    let r = match &action {
        Action::Exec { command } => {
            let command = expand_command(command, &ctx.container);
            match ctx
                .runtime
                .exec(&ctx.container_id, &command, remaining())
                .await
            {
                Ok(res) => {
                    let output = cap_output(&res.output);
                    let err = if res.timed_out || res.exit_code.is_none() {
                        Some(format!("command {:?} timed out", command.join(" ")))
                    } else {
                        match res.exit_code {
                            Some(0) => None,
                            Some(code) => Some(format!(
                                "command '{}' exited with {code}: {output}",
                                command.join(" ")
                            )),
                            None => None,
                        }
                    };
                    match err {
                        None => Ok(()),
                        Some(err) => Err(format!(
                            "Exec lifecycle hook ({}) for Container {cname:?} in Pod {pod:?} failed - error: {err}, message: {output:?}",
                            go_list(&command)
                        )),
                    }
                }
                Err(e) => Err(format!(
                    "Exec lifecycle hook ({}) for Container {cname:?} in Pod {pod:?} failed - error: {e}, message: \"\"",
                    go_list(&command)
                )),
            }
        }
        Action::HttpGet { path, .. } => {
            let fail = |err: String| {
                Err(format!(
                    "HTTP lifecycle hook ({path}) for Container {cname:?} in Pod {pod:?} failed - error: {err}"
                ))
            };
            match http::HttpGet::for_action(
                &action,
                &ctx.container,
                &ctx.pod_ip,
                Purpose::Lifecycle,
            ) {
                Err(e) => fail(e),
                Ok(mut req) => match http::get(&req, remaining()).await {
                    HttpOutcome::Response { .. } | HttpOutcome::BodyError { .. } => Ok(()),
                    HttpOutcome::Failed { message, .. }
                        if req.scheme == "https" && http::is_plain_http_reply(&message) =>
                    {
                        req.scheme = "http".into();
                        req.headers
                            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
                        match http::get(&req, remaining()).await {
                            HttpOutcome::Failed { .. } => fail(message),
                            _ => {
                                events.push(HandlerEvent {
                                        container: cname.clone(),
                                        event_type: "Warning",
                                        reason: "LifecycleHTTPFallback",
                                        message: format!(
                                            "request to HTTPS lifecycle hook {} got HTTP response, retry with HTTP succeeded",
                                            join_host_port(&req.host, req.port)
                                        ),
                                    });
                                Ok(())
                            }
                        }
                    }
                    HttpOutcome::Failed { message, .. } => fail(message),
                },
            }
        }
        Action::Sleep { seconds } => {
            if sleep::sleep_within(*seconds, remaining()).await {
                Ok(())
            } else {
                Err(format!(
                    "Sleep lifecycle hook ({seconds}) for Container {cname:?} in Pod {pod:?} failed - error: container terminated before sleep hook finished"
                ))
            }
        }
        Action::TcpSocket { .. } | Action::Grpc { .. } => Err(format!(
            "Cannot run handler: invalid handler: tcpSocket is not supported as a lifecycle handler (Container {cname:?} in Pod {pod:?})"
        )),
    };
    (r, events)
}

/// Runs a lifecycle handler once until `deadline` (None: no limit); the error is the
/// kubelet's message. Events (an HTTPS→HTTP fallback) are not reported.
pub async fn run_handler(
    ctx: &HookTarget,
    handler: &LifecycleHandler,
    deadline: Option<Instant>,
) -> Result<(), String> {
    run_hook(ctx, handler, deadline).await.0
}

fn hook_event(ctx: &HookTarget, reason: &'static str, message: &str) -> HandlerEvent {
    HandlerEvent {
        container: ctx.container.name.clone(),
        event_type: "Warning",
        reason,
        message: message.to_string(),
    }
}

/// Runs a postStart hook. Ends early with `Cancelled` when `kill` fires (the pod is being
/// deleted or the container killed).
pub async fn run_post_start(
    ctx: &HookTarget,
    handler: &LifecycleHandler,
    kill: &CancellationToken,
) -> PostStartOutcome {
    let run = run_hook(ctx, handler, None);
    tokio::select! {
        biased;
        _ = kill.cancelled() => PostStartOutcome::Cancelled,
        (r, mut events) = run => match r {
            Ok(()) => PostStartOutcome::Completed { events },
            Err(message) => {
                // The real error is not put in the event, "so that secrets won't leak".
                events.push(hook_event(ctx, FAILED_POST_START_HOOK, "PostStartHook failed"));
                PostStartOutcome::Failed { message, events }
            }
        },
    }
}

/// The agent's lifecycle-hook runner on the probe handlers: exec with the container's env
/// expansion, httpGet with HTTPS (unverified), same-host redirects and the HTTPS→HTTP
/// fallback, sleep; messages as the kubelet's.
pub struct LifecycleHooks {
    runtime: Arc<dyn ContainerRuntime>,
}

impl LifecycleHooks {
    /// Hooks that exec through `runtime`.
    pub fn new(runtime: Arc<dyn ContainerRuntime>) -> LifecycleHooks {
        LifecycleHooks { runtime }
    }
}

#[async_trait::async_trait]
impl HookRunner for LifecycleHooks {
    async fn run(&self, ctx: &HookContext, handler: &LifecycleHandler) -> Result<(), HookError> {
        // pod_full_name is "<name>_<ns>(<uid>)"; run_handler formats it itself.
        let (name, rest) = ctx
            .pod_full_name
            .split_once('_')
            .unwrap_or((ctx.pod_full_name.as_str(), ""));
        let (namespace, uid) = rest
            .strip_suffix(')')
            .and_then(|r| r.split_once('('))
            .unwrap_or((rest, ""));
        let target = HookTarget {
            runtime: self.runtime.clone(),
            pod_name: name.to_string(),
            pod_namespace: namespace.to_string(),
            pod_uid: uid.to_string(),
            pod_ip: ctx.pod_ip.clone(),
            container: ctx.container.clone(),
            container_id: ctx.container_id.clone(),
        };
        run_handler(&target, handler, Some(Instant::now() + ctx.budget))
            .await
            .map_err(HookError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, HTTPGetAction, SleepAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use podvisor_runtime::fake::{ExecScript, FakeRuntime, FakeScript, tokio_clock};
    use podvisor_runtime::{ContainerConfig, SandboxConfig};
    use std::time::SystemTime;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
            container: podvisor_testkit::container("c").port("web", 8080).build(),
            container_id: id,
            pod_ip: "127.0.0.1".into(),
            budget: Duration::from_secs(30),
        };
        (rt, ctx)
    }

    #[tokio::test(start_paused = true)]
    async fn exec_hook_succeeds_on_zero_and_fails_with_upstream_message() {
        let (rt, ctx) = setup().await;
        let hooks = LifecycleHooks::new(rt.clone());
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
                "Exec lifecycle hook ([false]) for Container \"c\" in Pod \"p_ns(u)\" failed"
            ),
            "{err}"
        );
        assert!(err.0.contains("boom"));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hook_sleeps_on_tokio_time() {
        let (rt, ctx) = setup().await;
        let hooks = LifecycleHooks::new(rt);
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
        let hooks = LifecycleHooks::new(rt);
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
            "HTTP lifecycle hook () for Container \"c\" in Pod \"p_ns(u)\" failed - error: port nope not found"
        );
    }
}
