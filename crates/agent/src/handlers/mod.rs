//! The handlers shared by probes and lifecycle hooks: exec, tcpSocket, httpGet, grpc, sleep.
//!
//! A probe or hook names one handler; [`Action`] is that choice resolved from the API. Each
//! handler runs once and its run ends in a [`HandlerResult`] (outcome, output, latency):
//! `Success`, `Warning` (counts as success), `Failure` (the application said no, or timed
//! out) or `Error` (an internal error, which a probe retries and then discards). The
//! messages copy the kubelet's (which wraps Go's error texts), because users and tests match
//! them: `HTTP probe failed with statuscode: 500`, `dial tcp 127.0.0.1:81: connect:
//! connection refused`, `command "sh -c sleep 10" timed out`, `service unhealthy (responded
//! with "NOT_SERVING")`.
//!
//! # Pieces and who calls what
//!
//! ```text
//! probe::worker ──run_probe_action──▶ exec | tcp | http | grpc   (sleep is not a probe)
//! hooks         ──(its own dispatch)─▶ exec | http | sleep        (tcpSocket does nothing)
//!                                         │
//!                                         └─▶ action: Action, Outcome, HandlerResult,
//!                                             HandlerTarget, ports, Go's error texts
//! ```
//!
//! The handler modules use only [`action`]; nothing here knows of probes' thresholds or
//! hooks' budgets, which their callers own.

pub mod action;
pub mod exec;
pub mod grpc;
pub mod http;
pub mod sleep;
pub mod tcp;

use std::time::Duration;

use tokio::time::Instant;

pub use action::{
    Action, ActionError, HandlerEvent, HandlerResult, HandlerTarget, KUBE_VERSION, MAX_BODY_BYTES,
    Outcome, Purpose, cap_output, dial_error, format_pod, io_error_text, join_host_port,
    resolve_port,
};
pub use exec::{expand_command, run_exec};
pub use tcp::run_tcp;

/// Runs a probe action once with `timeout`. Never panics; every problem is an outcome.
pub async fn run_probe_action(
    action: &Action,
    target: &HandlerTarget,
    timeout: Duration,
) -> HandlerResult {
    let start = Instant::now();
    let mut r = match action {
        Action::Exec { command } => exec::run_exec(target, command, timeout).await,
        Action::TcpSocket { host, port } => match resolve_port(port, &target.container) {
            Ok(port) => {
                let host = host.clone().unwrap_or_else(|| target.pod_ip.clone());
                tcp::run_tcp(&host, port, timeout).await
            }
            Err(e) => HandlerResult::new(Outcome::Error, e),
        },
        Action::HttpGet { .. } => {
            match http::HttpGet::for_action(
                action,
                &target.container,
                &target.pod_ip,
                Purpose::Probe,
            ) {
                Ok(req) => http::probe_result(http::get(&req, timeout).await),
                Err(e) => HandlerResult::new(Outcome::Error, e),
            }
        }
        Action::Grpc { port, service } => {
            if !(1..65536).contains(port) {
                HandlerResult::new(Outcome::Error, format!("invalid port number: {port}"))
            } else {
                let host = target.pod_ip.clone();
                let (outcome, output) = grpc::check(&host, *port as u16, service, timeout).await;
                HandlerResult::new(outcome, output)
            }
        }
        Action::Sleep { .. } => {
            HandlerResult::new(Outcome::Error, "sleep is not a probe handler".to_string())
        }
    };
    r.latency = start.elapsed();
    r
}
