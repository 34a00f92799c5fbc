//! The container runtime: sandboxes and the containers in them, as real processes or scripted.
//!
//! The runtime knows nothing of pods (DESIGN.md, decision 5). The node agent decides; the
//! runtime does. Its vocabulary:
//!
//! * a **sandbox** is the pod-level unit: a directory, namespaces, a cgroup, and (for the
//!   process backend) a per-sandbox supervisor process that outlives the agent;
//! * a **container** is one process tree inside a sandbox: command, args, env, working dir,
//!   uid/gid, stop signal, log file and resource limits.
//!
//! # Container states
//!
//! ```text
//!   create_container        start_container         process exits / killed
//! ──────────────────▶ Created ──────────────▶ Running ──────────────────────▶ Exited
//!                        │                                                    │
//!                        └──────────── remove_container ◀─────────────────────┘
//! ```
//!
//! Illegal operations (starting a running container, exec in an exited one, creating a
//! container in a removed sandbox) fail with [`RuntimeError::InvalidState`] naming the current
//! state. Removing something already gone succeeds. Signalling an exited container succeeds
//! (there is nothing left to signal: "not found counts as killed").
//!
//! Every exit is reported once on the stream from [`ContainerRuntime::subscribe`], and is also
//! visible through [`ContainerRuntime::container_status`] and [`ContainerRuntime::list`], so an
//! agent that restarts finds exits that happened while it was away.
//!
//! # Backends
//!
//! * `process` — real processes under a per-sandbox supervisor (`podvisor supervise`).
//! * [`fake`] — scripted, every delay on tokio time, every call recorded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub mod fake;
pub mod process;
pub mod termination;

/// The message of the exit recorded for a container whose sandbox supervisor died.
pub const SUPERVISOR_LOST: &str = "the sandbox supervisor exited unexpectedly";

/// A signal number (Linux numbering), such as 15 for SIGTERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Signal(pub i32);

impl Signal {
    /// SIGHUP.
    pub const HUP: Signal = Signal(1);
    /// SIGINT.
    pub const INT: Signal = Signal(2);
    /// SIGQUIT.
    pub const QUIT: Signal = Signal(3);
    /// SIGKILL.
    pub const KILL: Signal = Signal(9);
    /// SIGUSR1.
    pub const USR1: Signal = Signal(10);
    /// SIGUSR2.
    pub const USR2: Signal = Signal(12);
    /// SIGTERM.
    pub const TERM: Signal = Signal(15);

    const NAMES: &'static [(&'static str, i32)] = &[
        ("SIGHUP", 1),
        ("SIGINT", 2),
        ("SIGQUIT", 3),
        ("SIGILL", 4),
        ("SIGTRAP", 5),
        ("SIGABRT", 6),
        ("SIGBUS", 7),
        ("SIGFPE", 8),
        ("SIGKILL", 9),
        ("SIGUSR1", 10),
        ("SIGSEGV", 11),
        ("SIGUSR2", 12),
        ("SIGPIPE", 13),
        ("SIGALRM", 14),
        ("SIGTERM", 15),
        ("SIGSTKFLT", 16),
        ("SIGCHLD", 17),
        ("SIGCONT", 18),
        ("SIGSTOP", 19),
        ("SIGTSTP", 20),
        ("SIGTTIN", 21),
        ("SIGTTOU", 22),
        ("SIGURG", 23),
        ("SIGXCPU", 24),
        ("SIGXFSZ", 25),
        ("SIGVTALRM", 26),
        ("SIGPROF", 27),
        ("SIGWINCH", 28),
        ("SIGIO", 29),
        ("SIGPWR", 30),
        ("SIGSYS", 31),
    ];

    /// Parses a signal name as Kubernetes' `lifecycle.stopSignal` spells it (`SIGTERM`), or
    /// without the `SIG` prefix, or a number.
    pub fn from_name(name: &str) -> Option<Signal> {
        if let Ok(n) = name.parse::<i32>() {
            return (1..=64).contains(&n).then_some(Signal(n));
        }
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == full)
            .map(|(_, v)| Signal(*v))
    }

    /// The signal's name (`SIGTERM`), or its number as text if it has none.
    pub fn name(self) -> String {
        Self::NAMES
            .iter()
            .find(|(_, v)| *v == self.0)
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| self.0.to_string())
    }
}

/// Resource limits of a container (all optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes; exceeding it gets the container OOM-killed.
    pub memory_limit_bytes: Option<u64>,
    /// Relative CPU weight in Kubernetes millicores (requests.cpu).
    pub cpu_request_millis: Option<u64>,
    /// CPU quota in millicores (limits.cpu).
    pub cpu_limit_millis: Option<u64>,
    /// Maximum number of processes.
    pub pids_limit: Option<u64>,
}

/// What a sandbox is made from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// The sandbox ID, chosen by the caller (the agent uses the pod UID). Unique per runtime.
    pub id: String,
    /// The hostname inside the sandbox (the pod name).
    pub hostname: String,
    /// Opaque labels kept with the sandbox and returned by `list` (for re-adoption).
    pub labels: BTreeMap<String, String>,
    /// Opaque annotations, kept like labels.
    pub annotations: BTreeMap<String, String>,
    /// Limits for the sandbox as a whole.
    pub resources: Resources,
    /// Give the sandbox a network namespace of its own (with `lo` up), held by its
    /// supervisor; its path is [`SandboxStatus::netns`]. False: the host's network.
    #[serde(default)]
    pub network_namespace: bool,
    /// Share the host's pid namespace (`hostPID`) instead of one of the sandbox's own.
    #[serde(default)]
    pub host_pid: bool,
    /// Share the host's IPC namespace (`hostIPC`) instead of one of the sandbox's own.
    #[serde(default)]
    pub host_ipc: bool,
    /// Sysctls set in the sandbox's own namespaces before any container starts, in order
    /// (names with `.` or `/` separators, as Kubernetes writes them). Only namespaced
    /// sysctls are accepted: `net.*` needs the sandbox's own network namespace, the IPC ones
    /// its own IPC namespace; anything else fails the sandbox's creation.
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
}

/// What a container is made from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The container name, unique among the live containers of its sandbox.
    pub name: String,
    /// The image reference, recorded (the process backend runs host executables).
    pub image: String,
    /// The entrypoint. If empty, `args` alone form the command line.
    pub command: Vec<String>,
    /// The arguments.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// The working directory, if not the sandbox directory.
    pub working_dir: Option<PathBuf>,
    /// Run as this user ID.
    pub uid: Option<u32>,
    /// Run as this group ID.
    pub gid: Option<u32>,
    /// The signal that asks the container to stop (SIGTERM if None).
    pub stop_signal: Option<Signal>,
    /// Limits.
    pub resources: Resources,
    /// Opaque labels kept with the container and returned by `list` (for re-adoption).
    pub labels: BTreeMap<String, String>,
    /// Opaque annotations, kept like labels.
    pub annotations: BTreeMap<String, String>,
    /// Bind mounts into the container's private mount namespace (volumes), in order.
    pub mounts: Vec<Mount>,
    /// Where the container may write a termination message, and the fallback when it wrote
    /// none (spec §1.8). None: no termination message is collected.
    pub termination_message: Option<TerminationMessage>,
    /// The container's own root filesystem (an image); None: the host's. With a root
    /// filesystem, mount targets, the working directory and the executable are paths inside
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootFs>,
    /// How the container is confined (the resolved `securityContext`).
    #[serde(default)]
    pub security: SecurityConfig,
    /// The container's standard input (`stdin`, `stdinOnce`, `tty`).
    #[serde(default)]
    pub stdio: Stdio,
}

/// A container's standard input and terminal, as the pod spec's `stdin`, `stdinOnce` and
/// `tty` ask for them.
///
/// Without `stdin` the container reads `/dev/null`. With it, its stdin is a pipe that stays
/// open (empty until someone attaches) for [`ContainerRuntime::attach`] to write to. With
/// `stdin_once` too, the runtime keeps the pipe open only until the first attach: once that
/// client is gone, the container reads end of file, for good (until it is restarted). With
/// `tty`, stdin, stdout and stderr are one pseudo terminal (the container's controlling
/// terminal) whose output is logged as `stdout`; the terminal's input is never closed, so
/// `stdin_once` changes nothing for it (as containerd's CRI does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stdio {
    /// Keep stdin open for attaching clients (`stdin`).
    #[serde(default)]
    pub stdin: bool,
    /// Close stdin once the first attached client detaches (`stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// A pseudo terminal for stdin, stdout and stderr (`tty`).
    #[serde(default)]
    pub tty: bool,
}

/// How a container's processes are confined, as a CRI `LinuxContainerSecurityContext`
/// carries it: the runtime turns it into credentials, capability sets, `no_new_privs`, a
/// seccomp filter and mount flags (see `process/security.rs`). The default leaves the
/// process as the runtime itself runs (no confinement).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityConfig {
    /// Whether the runtime applies the capability sets, seccomp and masking below; false
    /// (the default) leaves them as the runtime has them.
    #[serde(default)]
    pub confined: bool,
    /// Supplementary groups (`supplementalGroups` and `fsGroup`), besides the primary group.
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    /// `privileged`: every capability, no seccomp filter, nothing masked.
    #[serde(default)]
    pub privileged: bool,
    /// Capabilities added to the runtime's default set (`ALL` for every one), without the
    /// `CAP_` prefix as Kubernetes writes them.
    #[serde(default)]
    pub capabilities_add: Vec<String>,
    /// Capabilities dropped (`ALL` for every one), applied after the additions.
    #[serde(default)]
    pub capabilities_drop: Vec<String>,
    /// Set `no_new_privs` (`allowPrivilegeEscalation: false`).
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Mount the root filesystem read-only.
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    /// The seccomp profile.
    #[serde(default)]
    pub seccomp: SeccompProfile,
    /// `procMount: Unmasked`: `/proc` without the masked and read-only paths.
    #[serde(default)]
    pub unmasked_proc: bool,
}

/// A container's seccomp profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompProfile {
    /// No filter.
    #[default]
    Unconfined,
    /// The runtime's default profile (containerd's).
    RuntimeDefault,
    /// An OCI seccomp profile (JSON) in this file.
    Localhost(PathBuf),
}

/// A container root filesystem made of read-only layers: each instance gets an overlayfs
/// with a fresh upper directory (removed with the instance), its own `/proc`, a minimal
/// `/dev` and a read-only `/sys`, and `pivot_root`s into it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// The unpacked layers, top first (overlayfs `lowerdir` order).
    pub layers: Vec<PathBuf>,
}

/// A bind mount of a host path into a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The host path (a directory or a file) to mount.
    pub source: PathBuf,
    /// Where the container sees it (absolute).
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A container's termination message settings (`terminationMessagePath`/`Policy`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminationMessage {
    /// The path, as the container sees it, of the file the container may write.
    pub path: PathBuf,
    /// `FallbackToLogsOnError`: when the file is empty and the exit code is not 0, the
    /// message is the tail of the container's log.
    pub fallback_to_logs_on_error: bool,
}

/// A container's ID: unique for the lifetime of the runtime's state directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContainerId(pub String);

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code as Kubernetes reports it: the process's code, or 128 + signal.
    pub exit_code: i32,
    /// The signal that killed the process, if one did.
    pub signal: Option<Signal>,
    /// Whether the kernel's OOM killer ended it.
    pub oom_killed: bool,
    /// When the process started.
    pub started_at: SystemTime,
    /// When the process ended.
    pub finished_at: SystemTime,
    /// Why it could not start or ended abnormally, if the runtime knows (e.g. exec failed).
    pub message: Option<String>,
    /// The termination message of this instance (spec §1.8, see [`termination`]): what it
    /// wrote to its termination-message file, or the log fallback. None when the container has
    /// no termination-message settings, wrote nothing and no fallback applies, or never ran.
    /// Kept apart from `message`; the agent reports `message + ": " + termination_message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message: Option<String>,
}

impl ExitStatus {
    /// The record of a start that never ran: exit code 128, started and finished at `at`, with
    /// the reason as the message.
    pub fn start_failed(message: String, at: SystemTime) -> Self {
        Self {
            exit_code: 128,
            signal: None,
            oom_killed: false,
            started_at: at,
            finished_at: at,
            message: Some(message),
            termination_message: None,
        }
    }
}

/// The state of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Running.
    Running {
        /// The main process's PID (as seen from the host), if the backend has one.
        pid: Option<u32>,
        /// When it started.
        started_at: SystemTime,
    },
    /// Ended.
    Exited(ExitStatus),
}

impl ContainerState {
    /// A short name of the state, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running { .. } => "running",
            ContainerState::Exited(_) => "exited",
        }
    }
}

/// Everything the runtime knows of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Its ID.
    pub id: ContainerId,
    /// The sandbox it belongs to.
    pub sandbox_id: String,
    /// The configuration it was created with.
    pub config: ContainerConfig,
    /// Its state.
    pub state: ContainerState,
    /// Whether the stop signal will take effect on the main process, read from
    /// `/proc/<pid>/status` (SigCgt, SigIgn, SigBlk): `Some(true)` when the process catches it
    /// or its default action ends the process, `Some(false)` when it is ignored or blocked (such
    /// a process only dies by SIGKILL); None when unknown (not running). The process backend
    /// reads it afresh on every status call, since a program installs its handlers after
    /// start.
    pub handles_stop_signal: Option<bool>,
    /// The CRI-format log file (`<RFC3339Nano> stdout|stderr F|P <line>`).
    pub log_path: PathBuf,
}

/// The state of a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxState {
    /// Ready: containers may be created and started.
    Ready,
    /// Its supervisor is gone or it is being removed.
    NotReady,
}

/// Everything the runtime knows of one sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxStatus {
    /// The configuration it was created with.
    pub config: SandboxConfig,
    /// Its state.
    pub state: SandboxState,
    /// When it was created.
    pub created_at: SystemTime,
    /// Its containers, including exited ones not yet removed.
    pub containers: Vec<ContainerStatus>,
    /// The path of its own network namespace (`/proc/<supervisor>/ns/net`) while the
    /// supervisor that holds it is alive; None for a sandbox on the host's network.
    pub netns: Option<PathBuf>,
}

/// A container ended (reported once on the event stream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitEvent {
    /// The sandbox.
    pub sandbox_id: String,
    /// The container.
    pub container_id: ContainerId,
    /// The container's name.
    pub container_name: String,
    /// How it ended.
    pub status: ExitStatus,
}

/// The result of [`ContainerRuntime::exec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// The exit code (128 + signal if killed); None if it timed out.
    pub exit_code: Option<i32>,
    /// Stdout and stderr, interleaved, capped at 10 KiB.
    pub output: Vec<u8>,
    /// Whether the timeout expired (the command was then killed).
    pub timed_out: bool,
}

/// What a streaming exec ([`ContainerRuntime::exec_stream`]) runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStreamRequest {
    /// The command line (argv); the executable is looked up like the container's own.
    pub command: Vec<String>,
    /// Whether the caller writes to the command's stdin ([`ExecSession::stdin`]); without
    /// it the command reads `/dev/null`.
    pub stdin: bool,
    /// Give the command a pseudo terminal as stdin, stdout and stderr: its output (both
    /// streams) comes on [`ExecSession::stdout`], [`ExecSession::stderr`] stays empty, and
    /// [`ExecSession::resize`] sets the terminal size.
    #[serde(default)]
    pub tty: bool,
    /// The terminal's size (columns, rows) when the command starts, with `tty` (so that it
    /// does not first see 0 × 0 and then a resize).
    #[serde(default)]
    pub size: Option<(u16, u16)>,
}

/// A boxed byte stream from a streaming exec.
pub type ExecReader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;
/// A boxed byte sink into a streaming exec.
pub type ExecWriter = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;
/// Sets the terminal size (columns, rows) of a streaming exec with a terminal.
pub type ExecResize = Box<dyn Fn(u16, u16) -> Result<(), RuntimeError> + Send + Sync>;
/// Resolves to the exit code of a streaming exec (128 + signal if killed).
pub type ExecExit =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<i32, RuntimeError>> + Send>>;

/// A running streaming exec. Dropping [`ExecSession::exit`] ends the session: the command
/// (its whole process group) is killed. Closing [`ExecSession::stdin`] (shutdown or drop)
/// gives the command end of file on its stdin.
pub struct ExecSession {
    /// The command's stdin, when the request asked for it.
    pub stdin: Option<ExecWriter>,
    /// The command's stdout; end of file once the command (and every process that
    /// inherited it) closed it.
    pub stdout: ExecReader,
    /// The command's stderr.
    pub stderr: ExecReader,
    /// The exit code, once the command ended.
    pub exit: ExecExit,
    /// Sets the terminal size, when the request asked for a terminal.
    pub resize: Option<ExecResize>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("stdin", &self.stdin.is_some())
            .field("tty", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// What a container uses (the kubelet's CRI `ContainerStats`): read from its cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// CPU time used since it started (all its processes), in nanoseconds.
    pub cpu_usage_nanos: u64,
    /// Its memory working set (usage less inactive file pages), in bytes.
    pub memory_working_set_bytes: u64,
}

/// A client attached to a running container ([`ContainerRuntime::attach`]): what it writes to
/// `stdin` is the container's input; dropping it detaches (and, with `stdin_once`, closes
/// the container's stdin).
pub struct AttachSession {
    /// The container's stdin; None when it has none (no `stdin`, or a `stdin_once` stdin
    /// that an earlier client already closed).
    pub stdin: Option<ExecWriter>,
    /// Sets the size of the container's terminal, when it has one (`tty`).
    pub resize: Option<ExecResize>,
}

impl std::fmt::Debug for AttachSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachSession")
            .field("stdin", &self.stdin.is_some())
            .field("tty", &self.resize.is_some())
            .finish()
    }
}

/// What the runtime can fail with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    /// The sandbox does not exist.
    #[error("sandbox {id} not found")]
    SandboxNotFound {
        /// The sandbox ID.
        id: String,
    },
    /// The container does not exist.
    #[error("container {id} not found")]
    ContainerNotFound {
        /// The container ID.
        id: ContainerId,
    },
    /// The sandbox or container already exists.
    #[error("{what} {id} already exists")]
    AlreadyExists {
        /// "sandbox" or "container".
        what: &'static str,
        /// Its ID or name.
        id: String,
    },
    /// The operation is not allowed in the current state.
    #[error("cannot {operation} {id}: it is {state}")]
    InvalidState {
        /// The operation.
        operation: &'static str,
        /// The object's ID.
        id: String,
        /// The current state's name.
        state: &'static str,
    },
    /// The container could not be created or started (bad command, no such executable, …).
    /// The agent reports this as CreateContainerError / StartError with this message.
    #[error("{message}")]
    StartFailed {
        /// What went wrong, for the user.
        message: String,
    },
    /// An operating system call failed.
    #[error("{operation}: {message}")]
    Os {
        /// What was being done.
        operation: String,
        /// The OS error.
        message: String,
    },
    /// The supervisor of a sandbox cannot be reached.
    #[error("supervisor of sandbox {id} unreachable: {message}")]
    SupervisorUnreachable {
        /// The sandbox ID.
        id: String,
        /// What went wrong.
        message: String,
    },
}

impl RuntimeError {
    /// Whether the object is gone (which callers that stop things treat as success).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            RuntimeError::SandboxNotFound { .. } | RuntimeError::ContainerNotFound { .. }
        )
    }
}

/// A stream of exit events.
pub type ExitEvents = tokio::sync::broadcast::Receiver<ExitEvent>;

/// The runtime contract. See the module documentation.
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Creates a sandbox (and, for the process backend, its supervisor). Fails with
    /// `AlreadyExists` if the ID is taken.
    async fn create_sandbox(&self, config: SandboxConfig) -> Result<SandboxStatus, RuntimeError>;

    /// Kills everything in the sandbox (SIGKILL to the whole tree), removes its containers,
    /// directory and cgroup, and ends its supervisor. Succeeds if it is already gone.
    async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError>;

    /// Creates a container in a sandbox (not started).
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> Result<ContainerId, RuntimeError>;

    /// Starts a created container. Returns once the process runs (or failed to start, with
    /// `StartFailed`).
    async fn start_container(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError>;

    /// Sends `signal` to the container's process group. SIGKILL kills the whole tree
    /// (process group, cgroup, pid namespace). Succeeds on an exited or not yet started
    /// container (there is nothing to signal).
    async fn signal(&self, id: &ContainerId, signal: Signal) -> Result<(), RuntimeError>;

    /// Runs `command` in the container's context (its namespaces, cgroup, env, working dir,
    /// user) and waits at most `timeout` for it.
    async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError>;

    /// Starts `request.command` in the container's context, like [`ContainerRuntime::exec`],
    /// with its stdin, stdout and stderr as streams, and no timeout: it runs until it exits
    /// or the session is dropped (which kills it). Fails like `exec` when the container is
    /// not running or the command cannot start. Backends that cannot stream fail with
    /// [`RuntimeError::Os`].
    async fn exec_stream(
        &self,
        id: &ContainerId,
        request: ExecStreamRequest,
    ) -> Result<ExecSession, RuntimeError> {
        let _ = (id, request);
        Err(RuntimeError::Os {
            operation: "exec with streams".to_string(),
            message: "not supported by this runtime".to_string(),
        })
    }

    /// Attaches to the stdin (and terminal) of a running container (see [`Stdio`]). Fails
    /// with `InvalidState` when it is not running. Backends without stdin support fail with
    /// [`RuntimeError::Os`].
    async fn attach(&self, id: &ContainerId) -> Result<AttachSession, RuntimeError> {
        let _ = id;
        Err(RuntimeError::Os {
            operation: "attach".to_string(),
            message: "not supported by this runtime".to_string(),
        })
    }

    /// What the running container `id` uses now. Fails with `InvalidState` when it is not
    /// running; backends that cannot tell fail with [`RuntimeError::Os`].
    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats, RuntimeError> {
        let _ = id;
        Err(RuntimeError::Os {
            operation: "container stats".to_string(),
            message: "not supported by this runtime".to_string(),
        })
    }

    /// Changes the resource limits of the running container `id` in place (in-place pod
    /// resize): its processes keep running under the new cgroup limits. Fails with
    /// `InvalidState` when it is not running; backends that cannot do it fail with
    /// [`RuntimeError::Os`].
    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: Resources,
    ) -> Result<(), RuntimeError> {
        let _ = (id, resources);
        Err(RuntimeError::Os {
            operation: "update container resources".to_string(),
            message: "not supported by this runtime".to_string(),
        })
    }

    /// Changes the resource limits of sandbox `id` as a whole (the pod cgroup; pod-level
    /// in-place resize, KEP-5419): its containers keep running under the new limits, and
    /// the sandbox's configuration records them. Only controllers the sandbox's cgroup was
    /// made with change. Fails with `SandboxNotFound`; backends that cannot do it fail with
    /// [`RuntimeError::Os`].
    async fn update_sandbox_resources(
        &self,
        id: &str,
        resources: Resources,
    ) -> Result<(), RuntimeError> {
        let _ = (id, resources);
        Err(RuntimeError::Os {
            operation: "update sandbox resources".to_string(),
            message: "not supported by this runtime".to_string(),
        })
    }

    /// The container's status.
    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError>;

    /// Every sandbox with its containers, including exits recorded while nobody listened.
    async fn list(&self) -> Result<Vec<SandboxStatus>, RuntimeError>;

    /// One sandbox with its containers: `NotReady` once its supervisor is gone (every
    /// container it ran is then recorded as killed). Fails with `SandboxNotFound` if it does
    /// not exist.
    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, RuntimeError> {
        self.list()
            .await?
            .into_iter()
            .find(|s| s.config.id == id)
            .ok_or_else(|| RuntimeError::SandboxNotFound { id: id.to_string() })
    }

    /// Removes an exited or created container (its log stays until the sandbox goes).
    /// Succeeds if it is already gone. A running container must be stopped first.
    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    /// Subscribes to exit events from now on.
    fn subscribe(&self) -> ExitEvents;
}
