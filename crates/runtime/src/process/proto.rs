//! The supervisor's control protocol: one JSON object per line over the unix socket
//! `<sandbox dir>/sock`, and the records it keeps on disk.
//!
//! A client sends a [`Request`] and reads one [`Response`] line; `watch` is answered with an
//! empty response and then streams one `{"exit": …}` line per container exit until the
//! supervisor ends. Requests: `ping`, `watch`, `create {config}`, `start {id}`,
//! `signal {id, signal}`, `exec {id, command, timeout_ms}`, `exec_stream {id, command}`, `attach {id}`, `remove {id}`, `shutdown`,
//! `adopt {dir}` (a spare supervisor takes on a sandbox).

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::cgroup::CgDir;
use crate::{ContainerConfig, ExecResult, ExitEvent, SandboxConfig};

/// A request to the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Liveness check.
    Ping,
    /// Subscribe this connection to exit events.
    Watch,
    /// Create a container.
    Create { config: Box<ContainerConfig> },
    /// Start a created container.
    Start { id: String },
    /// Signal a container's process group (SIGKILL: the whole tree).
    Signal { id: String, signal: i32 },
    /// Run a command in a container's context.
    Exec {
        id: String,
        command: Vec<String>,
        timeout_ms: u64,
    },
    /// Run a command in a container's context with the stdin, stdout and stderr sent with
    /// the request (SCM_RIGHTS). Answered at once (empty or error); the exit follows as an
    /// `exec` result. Closing the connection kills the command.
    /// With `tty`, stdin is a terminal that becomes the command's controlling terminal.
    ExecStream {
        id: String,
        command: Vec<String>,
        #[serde(default)]
        tty: bool,
    },
    /// The stdin of a running container: answered with its descriptor attached
    /// (SCM_RIGHTS), or without one when it has no open stdin.
    Attach { id: String },
    /// Remove a created or exited container.
    Remove { id: String },
    /// Kill everything, remove the cgroups and exit.
    Shutdown,
    /// A spare supervisor (started ahead of time with an empty sandbox ID) becomes the
    /// supervisor of the sandbox whose record is in `dir` (its own directory, renamed there).
    Adopt { dir: PathBuf },
}

/// What went wrong, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidState,
    StartFailed,
    Os,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub state: String,
}

impl WireError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> WireError {
        WireError {
            kind,
            message: message.into(),
            operation: String::new(),
            state: String::new(),
        }
    }
    pub(crate) fn invalid_state(operation: &str, id: &str, state: &str) -> WireError {
        WireError {
            kind: ErrorKind::InvalidState,
            message: id.to_string(),
            operation: operation.to_string(),
            state: state.to_string(),
        }
    }
}

/// An answer (or, on a watch connection, an event).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitEvent>,
}

/// `sandbox.json`: written by the client before the supervisor starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    pub config: SandboxConfig,
    pub created_at: SystemTime,
    /// The sandbox's cgroup directories (one per usable hierarchy).
    pub cgroups: Vec<CgDir>,
    pub log_max_bytes: u64,
    /// Whether to create pid, ipc and uts namespaces.
    pub namespaces: bool,
}

/// `supervisor.json`: who serves the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SupervisorRecord {
    pub host_pid: u32,
    pub start_ticks: u64,
    /// Whether it holds the sandbox's own namespaces (it is PID 1 of the pid namespace).
    pub namespaces: bool,
    /// Whether it holds the sandbox's own network namespace.
    #[serde(default)]
    pub network: bool,
}

/// `containers/<id>/container.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    pub log_path: PathBuf,
    pub attempt: u32,
    pub created_at: SystemTime,
}

/// `containers/<id>/started.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StartedRecord {
    pub host_pid: u32,
    pub ns_pid: i32,
    pub start_ticks: u64,
    pub started_at: SystemTime,
}

// `containers/<id>/exit.json` holds an `ExitStatus`.
