//! What a handler runs and how a run ends: the [`Action`] resolved from a probe or a
//! lifecycle handler, the [`Outcome`] and [`HandlerResult`] of one run, the [`HandlerTarget`]
//! it runs against, and the kubelet's texts (Go's wording of dial and I/O errors, the
//! User-Agent) that every handler shares.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_runtime::{ContainerId, ContainerRuntime};

/// The Kubernetes minor version the probes and hooks claim in their User-Agent
/// (`kube-probe/1.32`), matching the version the API server reports.
pub const KUBE_VERSION: &str = "1.32";

/// The cap on response bodies and command output kept from one run (10 KiB).
pub const MAX_BODY_BYTES: usize = 10 * 1024;

/// What a handler runs, resolved from the API (the handler fields are mutually exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run a command in the container.
    Exec {
        /// The command line (before `$(VAR)` expansion).
        command: Vec<String>,
    },
    /// GET a URL.
    HttpGet {
        /// `http` or `https` (lower case).
        scheme: String,
        /// The host; None = the pod IP.
        host: Option<String>,
        /// The port, by number or by container port name.
        port: IntOrString,
        /// The path (with query), as given.
        path: String,
        /// Extra headers, in order.
        headers: Vec<(String, String)>,
    },
    /// Open a TCP connection.
    TcpSocket {
        /// The host; None = the pod IP.
        host: Option<String>,
        /// The port, by number or name.
        port: IntOrString,
    },
    /// Call `grpc.health.v1.Health/Check`.
    Grpc {
        /// The port (a number).
        port: i32,
        /// The service name ("" = the server as a whole).
        service: String,
    },
    /// Sleep (hooks only).
    Sleep {
        /// Seconds.
        seconds: i64,
    },
}

/// A probe or hook without a usable handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No handler field is set.
    #[error("no handler specified")]
    Missing,
    /// An exec action without a command.
    #[error("exec handler has no command")]
    EmptyCommand,
}

fn http_action(h: &k8s_openapi::api::core::v1::HTTPGetAction) -> Action {
    Action::HttpGet {
        scheme: h
            .scheme
            .as_deref()
            .map(str::to_ascii_lowercase)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "http".to_string()),
        host: h.host.clone().filter(|s| !s.is_empty()),
        port: h.port.clone(),
        path: h.path.clone().unwrap_or_default(),
        headers: h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect(),
    }
}

fn exec_action(e: &k8s_openapi::api::core::v1::ExecAction) -> Result<Action, ActionError> {
    match &e.command {
        Some(c) if !c.is_empty() => Ok(Action::Exec { command: c.clone() }),
        _ => Err(ActionError::EmptyCommand),
    }
}

fn tcp_action(t: &k8s_openapi::api::core::v1::TCPSocketAction) -> Action {
    Action::TcpSocket {
        host: t.host.clone().filter(|s| !s.is_empty()),
        port: t.port.clone(),
    }
}

/// The action of a handler from the fields probes and hooks share, and `other` (a probe's
/// grpc, a hook's sleep). The API admits one of them; the first set wins.
fn handler_action(
    exec: Option<&k8s_openapi::api::core::v1::ExecAction>,
    http_get: Option<&k8s_openapi::api::core::v1::HTTPGetAction>,
    other: Option<Action>,
    tcp_socket: Option<&k8s_openapi::api::core::v1::TCPSocketAction>,
) -> Result<Action, ActionError> {
    if let Some(e) = exec {
        return exec_action(e);
    }
    if let Some(h) = http_get {
        return Ok(http_action(h));
    }
    if let Some(a) = other {
        return Ok(a);
    }
    tcp_socket.map(tcp_action).ok_or(ActionError::Missing)
}

impl Action {
    /// The handler of a probe.
    pub fn from_probe(p: &Probe) -> Result<Action, ActionError> {
        let grpc = p.grpc.as_ref().map(|g| Action::Grpc {
            port: g.port,
            service: g.service.clone().unwrap_or_default(),
        });
        handler_action(
            p.exec.as_ref(),
            p.http_get.as_ref(),
            grpc,
            p.tcp_socket.as_ref(),
        )
    }

    /// The handler of a lifecycle hook (tcpSocket is deprecated there but still accepted).
    pub fn from_lifecycle(h: &LifecycleHandler) -> Result<Action, ActionError> {
        let sleep = h
            .sleep
            .as_ref()
            .map(|s| Action::Sleep { seconds: s.seconds });
        handler_action(
            h.exec.as_ref(),
            h.http_get.as_ref(),
            sleep,
            h.tcp_socket.as_ref(),
        )
    }
}

/// How one handler run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Healthy.
    Success,
    /// Healthy with a warning (a redirect that was not followed): counts as Success and
    /// records a `ProbeWarning` event.
    Warning,
    /// Unhealthy. `timed_out` tells "it did not answer in time" from "it said no".
    Failure {
        /// Whether the run hit its timeout.
        timed_out: bool,
    },
    /// The probe could not be run (unknown port name, runtime error): retried up to
    /// `MAX_PROBE_RETRIES` (crate::probe) times, then the run is discarded (no state change).
    Error,
}

impl Outcome {
    /// Success or Warning.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success | Outcome::Warning)
    }
}

/// The result of one handler run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerResult {
    /// How it ended.
    pub outcome: Outcome,
    /// The output (body, command output) on success, the failure or error message otherwise.
    pub output: String,
    /// How long it took.
    pub latency: Duration,
}

impl HandlerResult {
    /// A result with zero latency (the caller measures the run).
    pub fn new(outcome: Outcome, output: impl Into<String>) -> HandlerResult {
        HandlerResult {
            outcome,
            output: output.into(),
            latency: Duration::ZERO,
        }
    }
}

/// Where a handler runs: the container (for exec, ports and env) and the pod IP.
#[derive(Clone)]
pub struct HandlerTarget {
    /// The runtime (exec).
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The container instance.
    pub container_id: ContainerId,
    /// The container's spec (ports by name, env for `$(VAR)` expansion).
    pub container: Container,
    /// The pod IP (the default host).
    pub pod_ip: String,
}

impl std::fmt::Debug for HandlerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerTarget")
            .field("container_id", &self.container_id)
            .field("container", &self.container.name)
            .field("pod_ip", &self.pod_ip)
            .finish()
    }
}

/// Resolves a port given by number or by container port name (a numeric string is accepted
/// as a last resort), as the kubelet's `ResolveContainerPort`.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let n: i64 = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let by_name = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| i64::from(p.container_port));
            match by_name {
                Some(n) => n,
                None => match name.parse::<i64>() {
                    Ok(n) => n,
                    Err(_) => return Err(format!("port {name} not found")),
                },
            }
        }
    };
    if n > 0 && n < 65536 {
        Ok(n as u16)
    } else {
        Err(format!("invalid port number: {n}"))
    }
}

/// An event a handler run asks its caller to record (a probe's `Unhealthy`, a hook's
/// `LifecycleHTTPFallback`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerEvent {
    /// The container's name (the event's `fieldPath`).
    pub container: String,
    /// "Normal" or "Warning".
    pub event_type: &'static str,
    /// The reason.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// `name_namespace(uid)`, the kubelet's `format.Pod`, used in hook messages.
pub fn format_pod(name: &str, namespace: &str, uid: &str) -> String {
    format!("{name}_{namespace}({uid})")
}

/// Joins host and port as Go's `net.JoinHostPort` (IPv6 in brackets).
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's text for a failed TCP dial: `dial tcp <addr>: connect: connection refused`,
/// `dial tcp <addr>: i/o timeout`.
pub fn dial_error(addr: &str, err: Option<&std::io::Error>) -> String {
    match err {
        None => format!("dial tcp {addr}: i/o timeout"),
        Some(e) => format!("dial tcp {addr}: {}", io_error_text(e)),
    }
}

/// An I/O error in Go's wording (`connect: connection refused`).
pub fn io_error_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connect: connection refused".to_string(),
        K::ConnectionReset => "read: connection reset by peer".to_string(),
        K::TimedOut => "i/o timeout".to_string(),
        K::HostUnreachable => "connect: no route to host".to_string(),
        K::NetworkUnreachable => "connect: network is unreachable".to_string(),
        K::AddrNotAvailable => "connect: cannot assign requested address".to_string(),
        K::NotFound => "lookup: no such host".to_string(),
        _ => {
            let s = e.to_string();
            // "Foo bar (os error 12)" → "foo bar"
            let s = match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            };
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

/// Truncates command output or a body to the 10 KiB cap, lossily as UTF-8.
pub fn cap_output(bytes: &[u8]) -> String {
    let end = bytes.len().min(MAX_BODY_BYTES);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Which User-Agent purpose a request carries: `kube-probe/1.32` or `kube-lifecycle/1.32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A probe.
    Probe,
    /// A lifecycle hook.
    Lifecycle,
}

impl Purpose {
    /// The default User-Agent.
    pub fn user_agent(self) -> String {
        match self {
            Purpose::Probe => format!("kube-probe/{KUBE_VERSION}"),
            Purpose::Lifecycle => format!("kube-lifecycle/{KUBE_VERSION}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> Container {
        podvisor_testkit::container("c").port("http", 8080).build()
    }

    #[test]
    fn ports_resolve_by_number_name_and_numeric_string() {
        let c = container();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), Ok(81));
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &c),
            Err("port grpc not found".to_string())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &c),
            Err("invalid port number: 70000".to_string())
        );
    }

    #[test]
    fn host_port_joins_like_go() {
        assert_eq!(join_host_port("127.0.0.1", 80), "127.0.0.1:80");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
    }

    #[test]
    fn actions_resolve_from_the_api() {
        let p = Probe {
            grpc: Some(k8s_openapi::api::core::v1::GRPCAction {
                port: 5000,
                service: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            Action::from_probe(&p),
            Ok(Action::Grpc {
                port: 5000,
                service: String::new()
            })
        );
        assert_eq!(
            Action::from_probe(&Probe::default()),
            Err(ActionError::Missing)
        );
        let h = LifecycleHandler {
            sleep: Some(k8s_openapi::api::core::v1::SleepAction { seconds: 0 }),
            ..Default::default()
        };
        assert_eq!(Action::from_lifecycle(&h), Ok(Action::Sleep { seconds: 0 }));
    }
}
