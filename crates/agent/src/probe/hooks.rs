//! Lifecycle hooks: postStart and preStop (spec §1.9, §1.6), on the probe handlers.
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
//! `run_pre_stop(ctx, hook, budget)` runs only when the agent kills a running container
//! (never for a container that exited by itself). It returns when the hook ends or the
//! budget (the grace period) is spent, whichever comes first; the hook is abandoned at the
//! budget. The caller then signals with what is left: [`grace_after_pre_stop`] = grace −
//! whole seconds spent, at least 2 s (the one-time 2 s extension when the hook used it
//! all). A failed hook gives event FailedPreStopHook "PreStopHook failed" and termination
//! goes on.
//!
//! Messages copy the kubelet's: `Exec lifecycle hook ([sh -c exit 1]) for Container "c" in
//! Pod "p_ns(uid)" failed - error: command 'sh -c exit 1' exited with 1: , message: ""`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use podvisor_runtime::{ContainerId, ContainerRuntime};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::format_pod;
use super::handler::{Action, Purpose, cap_output, expand_command, resolve_port};
use super::http::{self, HttpOutcome};
use super::manager::ProbeEvent;

/// The minimum stop window after a preStop hook (`minimumGracePeriodInSeconds`).
pub const MIN_GRACE_AFTER_PRE_STOP_SECONDS: i64 = 2;

/// Event reason of a failed postStart hook.
pub const FAILED_POST_START_HOOK: &str = "FailedPostStartHook";
/// Event reason of a failed preStop hook.
pub const FAILED_PRE_STOP_HOOK: &str = "FailedPreStopHook";
/// The waiting reason of a container whose postStart hook failed.
pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";

/// An exec hook without a timeout of its own runs at most this long (a postStart is also
/// ended by a deletion; a preStop by its budget).
const EXEC_HOOK_CEILING: Duration = Duration::from_secs(24 * 3600);

/// Where a hook runs.
#[derive(Clone)]
pub struct HookContext {
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

impl std::fmt::Debug for HookContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookContext")
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
        events: Vec<ProbeEvent>,
    },
    /// It failed: kill the container (message `FailedPostStartHook`), waiting reason
    /// `PostStartHookError` with `message`.
    Failed {
        /// The hook's error message (for the container status, not the event).
        message: String,
        /// Events to record (FailedPostStartHook, plus any fallback).
        events: Vec<ProbeEvent>,
    },
    /// The pod's kill token fired while the hook ran.
    Cancelled,
}

/// How a preStop hook ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreStopOutcome {
    /// Time spent (at most the budget).
    pub elapsed: Duration,
    /// Whether the hook finished within the budget.
    pub completed: bool,
    /// The failure message, if it failed.
    pub failure: Option<String>,
    /// Events to record (FailedPreStopHook, fallback).
    pub events: Vec<ProbeEvent>,
}

/// The grace period left for the stop signal after a preStop hook: grace − whole seconds
/// spent, at least 2 s.
pub fn grace_after_pre_stop(grace_seconds: i64, elapsed: Duration) -> i64 {
    let spent = i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX);
    grace_seconds
        .saturating_sub(spent)
        .max(MIN_GRACE_AFTER_PRE_STOP_SECONDS)
}

fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// Runs a hook's action once. `deadline`: when to give up (None = no limit but the
/// ceiling). Returns the error message on failure, and events.
async fn run_hook(
    ctx: &HookContext,
    handler: &LifecycleHandler,
    deadline: Option<Instant>,
) -> (Result<(), String>, Vec<ProbeEvent>) {
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
        Action::HttpGet {
            scheme,
            host,
            port,
            path,
            headers,
        } => {
            let fail = |err: String| {
                Err(format!(
                    "HTTP lifecycle hook ({path}) for Container {cname:?} in Pod {pod:?} failed - error: {err}"
                ))
            };
            match resolve_port(port, &ctx.container) {
                Err(e) => fail(e),
                Ok(port) => {
                    let mut req = http::HttpGet {
                        scheme: scheme.clone(),
                        host: host.clone().unwrap_or_else(|| ctx.pod_ip.clone()),
                        port,
                        path: path.clone(),
                        headers: headers.clone(),
                        user_agent: Purpose::Lifecycle.user_agent(),
                    };
                    match http::get(&req, remaining()).await {
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
                                    events.push(ProbeEvent {
                                        container: cname.clone(),
                                        event_type: "Warning",
                                        reason: "LifecycleHTTPFallback",
                                        message: format!(
                                            "request to HTTPS lifecycle hook {} got HTTP response, retry with HTTP succeeded",
                                            super::handler::join_host_port(&req.host, port)
                                        ),
                                    });
                                    Ok(())
                                }
                            }
                        }
                        HttpOutcome::Failed { message, .. } => fail(message),
                    }
                }
            }
        }
        Action::Sleep { seconds } => {
            let want = Duration::from_secs((*seconds).max(0) as u64);
            if want <= remaining() {
                tokio::time::sleep(want).await;
                Ok(())
            } else {
                tokio::time::sleep(remaining()).await;
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
    ctx: &HookContext,
    handler: &LifecycleHandler,
    deadline: Option<Instant>,
) -> Result<(), String> {
    run_hook(ctx, handler, deadline).await.0
}

fn hook_event(ctx: &HookContext, reason: &'static str, message: &str) -> ProbeEvent {
    ProbeEvent {
        container: ctx.container.name.clone(),
        event_type: "Warning",
        reason,
        message: message.to_string(),
    }
}

/// Runs a postStart hook. Ends early with `Cancelled` when `kill` fires (the pod is being
/// deleted or the container killed).
pub async fn run_post_start(
    ctx: &HookContext,
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

/// Runs a preStop hook within `budget` (the grace period). See the module documentation.
pub async fn run_pre_stop(
    ctx: &HookContext,
    handler: &LifecycleHandler,
    budget: Duration,
) -> PreStopOutcome {
    let start = Instant::now();
    let deadline = start + budget;
    let r = tokio::time::timeout_at(deadline, run_hook(ctx, handler, Some(deadline))).await;
    let elapsed = start.elapsed().min(budget);
    match r {
        Err(_) => PreStopOutcome {
            elapsed: budget,
            completed: false,
            failure: None,
            events: Vec::new(),
        },
        Ok((Ok(()), events)) => PreStopOutcome {
            elapsed,
            completed: true,
            failure: None,
            events,
        },
        Ok((Err(message), mut events)) => {
            // A hook cut off by its budget is not a failure of the hook (the kubelet only
            // logs "not completed in grace period").
            let cut_off = Instant::now() >= deadline;
            if cut_off {
                return PreStopOutcome {
                    elapsed: budget,
                    completed: false,
                    failure: None,
                    events,
                };
            }
            events.push(hook_event(ctx, FAILED_PRE_STOP_HOOK, "PreStopHook failed"));
            PreStopOutcome {
                elapsed,
                completed: true,
                failure: Some(message),
                events,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_after_pre_stop_keeps_two_seconds() {
        assert_eq!(grace_after_pre_stop(30, Duration::from_millis(10_900)), 20);
        assert_eq!(grace_after_pre_stop(30, Duration::from_secs(30)), 2);
        assert_eq!(grace_after_pre_stop(30, Duration::from_secs(29)), 2);
        assert_eq!(grace_after_pre_stop(1, Duration::ZERO), 2);
        assert_eq!(grace_after_pre_stop(100, Duration::from_secs(50)), 50);
    }
}
