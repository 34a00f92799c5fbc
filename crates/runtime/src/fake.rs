//! A scripted, recording runtime for tests and simulated nodes.
//!
//! [`FakeRuntime`] implements [`ContainerRuntime`] without processes. What each container does
//! is scripted by container name ([`FakeScript`]): how its start goes (ok, fail with a message,
//! block for a while or forever), how it runs (forever, exit after a delay with a code, get
//! OOM-killed), what it does on its stop signal (die of it, exit after a delay with a code,
//! ignore it), and what `exec` returns per command line. A script may list one [`Attempt`] per
//! start of the same container name in the same sandbox (the last one repeats), so "crash
//! twice, then run" is one line.
//!
//! # Rules
//!
//! * Every delay is on tokio time (`tokio::time::sleep_until`), so tests under
//!   `#[tokio::test(start_paused = true)]` are deterministic; timestamps come from an injected
//!   wall clock ([`WallClock`]; [`tokio_clock`] advances with tokio time).
//! * Every call is recorded as a typed [`FakeCall`] with the tokio instant it was made at, so
//!   tests can assert order and timing ("SIGTERM at +0 s, SIGKILL at +30 s"). Recording can be
//!   switched off for scale runs ([`FakeRuntime::set_recording`]).
//! * Exits are delivered on the same broadcast stream as the real backend
//!   ([`ContainerRuntime::subscribe`]), exactly once per container instance.
//! * SIGKILL ends a running container at once (exit 137). The stop signal (the container's
//!   `stop_signal`, else SIGTERM) follows the script. Any other signal ends it with 128 + signal.
//! * Illegal operations fail with [`RuntimeError::InvalidState`] naming the current state;
//!   removing what is already gone succeeds; signalling an exited container succeeds.
//! * It is cheap: a container is a map entry plus, while an exit is pending, one sleeping task
//!   (owned by the entry, aborted when it goes). Thousands of containers are fine.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::{
    ContainerConfig, ContainerId, ContainerRuntime, ContainerState, ContainerStatus, ExecResult,
    ExitEvent, ExitEvents, ExitStatus, RuntimeError, SUPERVISOR_LOST, SandboxConfig, SandboxState,
    SandboxStatus, Signal,
};

pub use podvisor_kit::WallClock;

/// A wall clock that starts at `base` and advances with tokio time (so it pauses and jumps
/// with `tokio::time::pause`/`advance`): [`WallClock::tokio`]. Must be called inside a
/// tokio runtime.
pub fn tokio_clock(base: SystemTime) -> WallClock {
    WallClock::tokio(base)
}

/// How starting a container goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// It starts.
    Ok,
    /// It fails with this message (`RuntimeError::StartFailed`; the container is left exited
    /// with code 128 and the message, as a runtime reports a `StartError`).
    Fail(String),
    /// `start_container` never returns.
    Hang,
}

/// How a started container runs when nobody signals it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// It runs until signalled.
    Forever,
    /// It exits by itself after the duration with the code.
    Exit {
        /// How long it runs.
        after: Duration,
        /// Its exit code.
        code: i32,
    },
    /// The OOM killer ends it after the duration (exit 137, `oom_killed`).
    OomKilled {
        /// How long it runs.
        after: Duration,
    },
}

/// What a running container does when it gets its stop signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// It has no handler and dies of the signal at once (exit 128 + signal), as a host process.
    Die,
    /// It handles the signal and exits after the duration with the code.
    Exit {
        /// How long its shutdown takes.
        after: Duration,
        /// Its exit code.
        code: i32,
    },
    /// It ignores the signal (only SIGKILL ends it), as a container's PID 1 without a handler.
    Ignore,
}

/// The script of one start of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// If set, `create_container` fails with `StartFailed` and this message.
    pub create_error: Option<String>,
    /// How long `start_container` takes before its outcome (tokio time).
    pub start_delay: Duration,
    /// The outcome of `start_container`.
    pub start: StartOutcome,
    /// How it runs.
    pub run: RunOutcome,
    /// What it does on its stop signal.
    pub on_stop: StopOutcome,
    /// What `ContainerStatus::handles_stop_signal` says; None = derived from `on_stop`
    /// (`Ignore` → Some(false), otherwise Some(true)).
    pub handles_stop_signal: Option<bool>,
    /// Lines written to the container's log file at start (CRI format, stdout), when the
    /// runtime has a log directory. They are also the log the termination-message fallback
    /// reads.
    pub log_lines: Vec<String>,
    /// What the container writes to its termination-message file before it exits (only
    /// reported when its config has termination-message settings; see
    /// [`crate::termination`] for the rules, the log fallback included).
    pub termination_file: Option<String>,
}

impl Default for Attempt {
    fn default() -> Self {
        Attempt::forever()
    }
}

impl Attempt {
    /// Starts, runs until signalled, dies of its stop signal.
    pub fn forever() -> Attempt {
        Attempt {
            create_error: None,
            start_delay: Duration::ZERO,
            start: StartOutcome::Ok,
            run: RunOutcome::Forever,
            on_stop: StopOutcome::Die,
            handles_stop_signal: None,
            log_lines: Vec::new(),
            termination_file: None,
        }
    }

    /// Starts and exits by itself after `after` with `code`.
    pub fn exits_after(after: Duration, code: i32) -> Attempt {
        Attempt {
            run: RunOutcome::Exit { after, code },
            ..Attempt::forever()
        }
    }

    /// Starts and is OOM-killed after `after`.
    pub fn oom_after(after: Duration) -> Attempt {
        Attempt {
            run: RunOutcome::OomKilled { after },
            ..Attempt::forever()
        }
    }

    /// `create_container` fails with this message.
    pub fn create_fails(message: impl Into<String>) -> Attempt {
        Attempt {
            create_error: Some(message.into()),
            ..Attempt::forever()
        }
    }

    /// `start_container` fails with this message.
    pub fn start_fails(message: impl Into<String>) -> Attempt {
        Attempt {
            start: StartOutcome::Fail(message.into()),
            ..Attempt::forever()
        }
    }

    /// `start_container` never returns.
    pub fn start_hangs() -> Attempt {
        Attempt {
            start: StartOutcome::Hang,
            ..Attempt::forever()
        }
    }

    /// `start_container` takes `delay` (then follows the rest of the script).
    pub fn start_delay(mut self, delay: Duration) -> Attempt {
        self.start_delay = delay;
        self
    }

    /// On the stop signal it exits after `after` with `code`.
    pub fn on_stop_exit(mut self, after: Duration, code: i32) -> Attempt {
        self.on_stop = StopOutcome::Exit { after, code };
        self
    }

    /// It ignores its stop signal.
    pub fn ignore_stop(mut self) -> Attempt {
        self.on_stop = StopOutcome::Ignore;
        self
    }

    /// Overrides what `handles_stop_signal` reports.
    pub fn reports_handles_stop_signal(mut self, value: Option<bool>) -> Attempt {
        self.handles_stop_signal = value;
        self
    }

    /// Lines written to its log at start.
    pub fn logs<I, S>(mut self, lines: I) -> Attempt
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.log_lines = lines.into_iter().map(Into::into).collect();
        self
    }

    /// It writes `message` to its termination-message file.
    pub fn writes_termination_message(mut self, message: impl Into<String>) -> Attempt {
        self.termination_file = Some(message.into());
        self
    }

    /// Its termination message on an exit with `exit_code` (spec §1.8).
    fn termination_message(&self, config: &ContainerConfig, exit_code: i32) -> Option<String> {
        let file = self.termination_file.as_deref().unwrap_or("");
        crate::termination::message(
            config.termination_message.as_ref(),
            file.as_bytes(),
            exit_code,
            || {
                let ts = "1970-01-01T00:00:00.000000000Z";
                let log: String = self
                    .log_lines
                    .iter()
                    .map(|l| format!("{ts} stdout F {l}\n"))
                    .collect();
                crate::termination::cri_tail(
                    log.as_bytes(),
                    crate::termination::FALLBACK_LOG_LINES,
                    crate::termination::FALLBACK_LOG_BYTES,
                )
                .0
            },
        )
    }

    fn reported_handles_stop_signal(&self) -> Option<bool> {
        self.handles_stop_signal
            .or(Some(!matches!(self.on_stop, StopOutcome::Ignore)))
    }
}

/// What one `exec` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecScript {
    /// How long the command runs (tokio time); None = until the container dies or the timeout.
    pub duration: Option<Duration>,
    /// Its exit code.
    pub exit_code: i32,
    /// Its output.
    pub output: Vec<u8>,
    /// If set, the container's main process exits with this code when the command finishes
    /// (for example a preStop hook that stops the server).
    pub then_container_exits: Option<i32>,
    /// A streaming exec ([`ContainerRuntime::exec_stream`]) copies its stdin to its stdout
    /// (like `cat`) after printing `output`, and finishes at end of file.
    pub echo_stdin: bool,
}

impl Default for ExecScript {
    fn default() -> Self {
        ExecScript::ok()
    }
}

impl ExecScript {
    /// Exits 0 at once, no output.
    pub fn ok() -> ExecScript {
        ExecScript {
            duration: Some(Duration::ZERO),
            exit_code: 0,
            output: Vec::new(),
            then_container_exits: None,
            echo_stdin: false,
        }
    }

    /// Exits with `code` at once.
    pub fn exit(code: i32) -> ExecScript {
        ExecScript {
            exit_code: code,
            ..ExecScript::ok()
        }
    }

    /// Never finishes by itself.
    pub fn hang() -> ExecScript {
        ExecScript {
            duration: None,
            ..ExecScript::ok()
        }
    }

    /// Takes `d` to finish.
    pub fn taking(mut self, d: Duration) -> ExecScript {
        self.duration = Some(d);
        self
    }

    /// Prints `output`.
    pub fn output(mut self, output: impl Into<Vec<u8>>) -> ExecScript {
        self.output = output.into();
        self
    }

    /// A streaming exec copies its stdin to its stdout and finishes at end of file.
    pub fn echoing_stdin(mut self) -> ExecScript {
        self.echo_stdin = true;
        self
    }

    /// The container exits with `code` when the command finishes.
    pub fn then_container_exits(mut self, code: i32) -> ExecScript {
        self.then_container_exits = Some(code);
        self
    }
}

/// The script of a container name: one [`Attempt`] per start (the last repeats) and exec
/// results per command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeScript {
    /// One entry per start; the last repeats. Empty = [`Attempt::forever`].
    pub attempts: Vec<Attempt>,
    /// Exec results by exact command line.
    pub exec: BTreeMap<Vec<String>, ExecScript>,
    /// The result of any other command line.
    pub default_exec: ExecScript,
}

impl FakeScript {
    /// Every start behaves like `attempt`.
    pub fn always(attempt: Attempt) -> FakeScript {
        FakeScript {
            attempts: vec![attempt],
            ..FakeScript::default()
        }
    }

    /// The n-th start behaves like `attempts[n]`; the last repeats.
    pub fn sequence(attempts: Vec<Attempt>) -> FakeScript {
        FakeScript {
            attempts,
            ..FakeScript::default()
        }
    }

    /// `exec` of exactly `command` does `script`.
    pub fn exec<I, S>(mut self, command: I, script: ExecScript) -> FakeScript
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exec
            .insert(command.into_iter().map(Into::into).collect(), script);
        self
    }

    /// Any other `exec` does `script`.
    pub fn default_exec(mut self, script: ExecScript) -> FakeScript {
        self.default_exec = script;
        self
    }

    fn attempt(&self, n: usize) -> Attempt {
        match self.attempts.get(n).or(self.attempts.last()) {
            Some(a) => a.clone(),
            None => Attempt::forever(),
        }
    }
}

/// An operation, for injecting one-shot errors ([`FakeRuntime::fail_next`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FakeOp {
    /// `create_sandbox`.
    CreateSandbox,
    /// `remove_sandbox`.
    RemoveSandbox,
    /// `create_container`.
    CreateContainer,
    /// `start_container`.
    StartContainer,
    /// `signal`.
    Signal,
    /// `exec`.
    Exec,
    /// `exec_stream`.
    ExecStream,
    /// `attach`.
    Attach,
    /// `container_status`.
    ContainerStatus,
    /// `list`.
    List,
    /// `remove_container`.
    RemoveContainer,
    /// `update_container_resources`.
    UpdateResources,
    /// `update_sandbox_resources`.
    UpdateSandboxResources,
}

/// One call made to the fake, as typed data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeCall {
    /// `create_sandbox`.
    CreateSandbox {
        /// The sandbox ID.
        id: String,
    },
    /// `remove_sandbox`.
    RemoveSandbox {
        /// The sandbox ID.
        id: String,
    },
    /// `create_container`.
    CreateContainer {
        /// The sandbox ID.
        sandbox_id: String,
        /// The container name.
        name: String,
    },
    /// `start_container`.
    StartContainer {
        /// The container ID.
        id: ContainerId,
        /// The container name ("" if unknown).
        name: String,
    },
    /// `signal`.
    Signal {
        /// The container ID.
        id: ContainerId,
        /// The container name ("" if unknown).
        name: String,
        /// The signal.
        signal: Signal,
    },
    /// `update_container_resources`.
    UpdateResources {
        /// The container ID.
        id: ContainerId,
        /// The container name ("" if unknown).
        name: String,
        /// The new limits.
        resources: crate::Resources,
    },
    /// `update_sandbox_resources`.
    UpdateSandboxResources {
        /// The sandbox ID.
        id: String,
        /// The new limits.
        resources: crate::Resources,
    },
    /// `exec`.
    Exec {
        /// The container ID.
        id: ContainerId,
        /// The container name ("" if unknown).
        name: String,
        /// The command line.
        command: Vec<String>,
        /// The timeout given.
        timeout: Duration,
    },
    /// `exec_stream`.
    ExecStream {
        /// The container ID.
        id: ContainerId,
        /// The container name ("" if unknown).
        name: String,
        /// The command line.
        command: Vec<String>,
        /// Whether stdin was asked for.
        stdin: bool,
    },
    /// `attach`.
    Attach {
        /// The container ID.
        id: ContainerId,
        /// The container name ("" if unknown).
        name: String,
    },
    /// `container_status`.
    ContainerStatus {
        /// The container ID.
        id: ContainerId,
    },
    /// `list`.
    List,
    /// `remove_container`.
    RemoveContainer {
        /// The container ID.
        id: ContainerId,
        /// The container name ("" if unknown).
        name: String,
    },
}

impl FakeCall {
    /// Whether the call changes state (everything but `container_status` and `list`).
    pub fn is_mutating(&self) -> bool {
        !matches!(self, FakeCall::ContainerStatus { .. } | FakeCall::List)
    }
}

/// A recorded call with the tokio instant it was made at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeCallRecord {
    /// When (tokio time).
    pub at: Instant,
    /// What.
    pub call: FakeCall,
}

struct FakeSandbox {
    config: SandboxConfig,
    state: SandboxState,
    created_at: SystemTime,
    containers: Vec<ContainerId>,
}

struct PendingExit {
    seq: u64,
    at: Instant,
    exit_code: i32,
    signal: Option<Signal>,
    oom_killed: bool,
    _timer: AbortOnDropHandle<()>,
}

struct FakeContainer {
    status: ContainerStatus,
    attempt: Attempt,
    script: Arc<FakeScript>,
    starting: bool,
    stop_signalled: bool,
    pending_exit: Option<PendingExit>,
    exited_tx: watch::Sender<bool>,
    /// What attached clients wrote to the container's stdin.
    stdin: Arc<Mutex<FakeStdin>>,
}

/// The stdin of a fake container (see [`crate::Stdio`]): what attached clients wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeStdin {
    /// The bytes written, in order.
    pub data: Vec<u8>,
    /// Whether a client attached with stdin.
    pub attached: bool,
    /// Whether stdin reached end of file (a `stdin_once` client detached).
    pub closed: bool,
}

#[derive(Default)]
struct State {
    sandboxes: BTreeMap<String, FakeSandbox>,
    containers: HashMap<ContainerId, FakeContainer>,
    next_id: u64,
    next_seq: u64,
    starts: HashMap<(String, String), usize>,
    scripts: HashMap<String, Arc<FakeScript>>,
    pod_scripts: HashMap<(String, String), Arc<FakeScript>>,
    default_script: Arc<FakeScript>,
    calls: Vec<FakeCallRecord>,
    recording: bool,
    fail_next: HashMap<FakeOp, Vec<RuntimeError>>,
    /// What running containers of each name use ([`FakeRuntime::set_stats`]).
    stats: HashMap<String, crate::ContainerStats>,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<ExitEvent>,
    clock: WallClock,
    log_dir: Option<PathBuf>,
}

/// The scripted runtime. Cheap to clone (shared state).
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime").finish_non_exhaustive()
    }
}

impl FakeRuntime {
    /// A fake with the given wall clock, recording calls, without log files.
    pub fn new(clock: WallClock) -> FakeRuntime {
        FakeRuntime::build(clock, None)
    }

    /// A fake that writes each container's scripted log lines under `log_dir`.
    pub fn with_log_dir(clock: WallClock, log_dir: PathBuf) -> FakeRuntime {
        FakeRuntime::build(clock, Some(log_dir))
    }

    fn build(clock: WallClock, log_dir: Option<PathBuf>) -> FakeRuntime {
        let (events, _) = broadcast::channel(4096);
        let state = State {
            recording: true,
            ..State::default()
        };
        FakeRuntime {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                events,
                clock,
                log_dir,
            }),
        }
    }

    /// Scripts every container named `container_name` (in any sandbox without a more specific
    /// script).
    pub fn script(&self, container_name: &str, script: FakeScript) {
        self.inner
            .lock()
            .scripts
            .insert(container_name.to_string(), Arc::new(script));
    }

    /// Scripts the container `container_name` of sandboxes whose hostname is `hostname`
    /// (the pod name).
    pub fn script_for(&self, hostname: &str, container_name: &str, script: FakeScript) {
        self.inner.lock().pod_scripts.insert(
            (hostname.to_string(), container_name.to_string()),
            Arc::new(script),
        );
    }

    /// The script of containers nobody scripted (default: [`Attempt::forever`]).
    pub fn script_default(&self, script: FakeScript) {
        self.inner.lock().default_script = Arc::new(script);
    }

    /// Makes the next call of `op` fail with `error` (queued, one per call).
    pub fn fail_next(&self, op: FakeOp, error: RuntimeError) {
        self.inner
            .lock()
            .fail_next
            .entry(op)
            .or_default()
            .push(error);
    }

    /// Switches call recording on or off (off for scale runs).
    pub fn set_recording(&self, on: bool) {
        let mut st = self.inner.lock();
        st.recording = on;
        if !on {
            st.calls = Vec::new();
        }
    }

    /// Makes running containers named `container_name` report `stats` (default: nothing
    /// used).
    pub fn set_stats(&self, container_name: &str, stats: crate::ContainerStats) {
        self.inner
            .lock()
            .stats
            .insert(container_name.to_string(), stats);
    }

    /// What attached clients wrote to container `id`'s stdin (None: no such container).
    pub fn stdin_of(&self, id: &ContainerId) -> Option<FakeStdin> {
        let st = self.inner.lock();
        let c = st.containers.get(id)?;
        let stdin = c.stdin.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Some(stdin)
    }

    /// Every recorded call, oldest first.
    pub fn calls(&self) -> Vec<FakeCallRecord> {
        self.inner.lock().calls.clone()
    }

    /// The recorded calls that change state (no `container_status`, no `list`).
    pub fn mutating_calls(&self) -> Vec<FakeCall> {
        self.inner
            .lock()
            .calls
            .iter()
            .filter(|r| r.call.is_mutating())
            .map(|r| r.call.clone())
            .collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.inner.lock().calls.clear();
    }

    /// The newest container named `name` in sandbox `sandbox_id`.
    pub fn find_container(&self, sandbox_id: &str, name: &str) -> Option<ContainerStatus> {
        let st = self.inner.lock();
        let sb = st.sandboxes.get(sandbox_id)?;
        sb.containers
            .iter()
            .rev()
            .filter_map(|id| st.containers.get(id))
            .find(|c| c.status.config.name == name)
            .map(|c| c.status.clone())
    }

    /// Whether the sandbox exists.
    pub fn has_sandbox(&self, sandbox_id: &str) -> bool {
        self.inner.lock().sandboxes.contains_key(sandbox_id)
    }

    /// The number of running containers.
    pub fn running_count(&self) -> usize {
        self.inner
            .lock()
            .containers
            .values()
            .filter(|c| matches!(c.status.state, ContainerState::Running { .. }))
            .count()
    }

    /// The number of sandboxes.
    pub fn sandbox_count(&self) -> usize {
        self.inner.lock().sandboxes.len()
    }

    /// The sandbox's supervisor dies (`kill -9`): the sandbox becomes `NotReady` and every
    /// running container in it is recorded as killed (137, SIGKILL) and announced, as the
    /// process backend does. Returns false if there is no such sandbox.
    pub fn lose_sandbox(&self, sandbox_id: &str) -> bool {
        let events = {
            let mut st = self.inner.lock();
            let Some(sb) = st.sandboxes.get_mut(sandbox_id) else {
                return false;
            };
            sb.state = SandboxState::NotReady;
            let ids = sb.containers.clone();
            let mut events = Vec::new();
            for id in ids {
                if let Some(mut ev) =
                    self.inner
                        .finish_locked(&mut st, &id, 137, Some(Signal::KILL), false)
                {
                    ev.status.message = Some(SUPERVISOR_LOST.to_string());
                    if let Some(c) = st.containers.get_mut(&id) {
                        c.status.state = ContainerState::Exited(ev.status.clone());
                    }
                    events.push(ev);
                }
            }
            events
        };
        for ev in events {
            let _ = self.inner.events.send(ev);
        }
        true
    }

    /// Ends a running container from outside (a crash): exit with `code` now. Returns false if
    /// it was not running.
    pub fn crash(&self, id: &ContainerId, code: i32) -> bool {
        let ev = {
            let mut st = self.inner.lock();
            self.inner.finish_locked(&mut st, id, code, None, false)
        };
        match ev {
            Some(ev) => {
                let _ = self.inner.events.send(ev);
                true
            }
            None => false,
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Records the call and pops an injected error for `op`.
    fn enter(&self, st: &mut State, op: FakeOp, call: FakeCall) -> Result<(), RuntimeError> {
        if st.recording {
            st.calls.push(FakeCallRecord {
                at: Instant::now(),
                call,
            });
        }
        match st.fail_next.get_mut(&op) {
            Some(q) if !q.is_empty() => Err(q.remove(0)),
            _ => Ok(()),
        }
    }

    fn name_of(st: &State, id: &ContainerId) -> String {
        st.containers
            .get(id)
            .map(|c| c.status.config.name.clone())
            .unwrap_or_default()
    }

    /// Marks a running container exited; returns the event to broadcast (None if it was not
    /// running).
    fn finish_locked(
        &self,
        st: &mut State,
        id: &ContainerId,
        exit_code: i32,
        signal: Option<Signal>,
        oom_killed: bool,
    ) -> Option<ExitEvent> {
        let now = self.now();
        let c = st.containers.get_mut(id)?;
        let ContainerState::Running { started_at, .. } = c.status.state else {
            return None;
        };
        let status = ExitStatus {
            exit_code,
            signal,
            oom_killed,
            started_at,
            finished_at: now,
            message: None,
            termination_message: c.attempt.termination_message(&c.status.config, exit_code),
        };
        c.status.state = ContainerState::Exited(status.clone());
        c.pending_exit = None;
        let _ = c.exited_tx.send(true);
        Some(ExitEvent {
            sandbox_id: c.status.sandbox_id.clone(),
            container_id: id.clone(),
            container_name: c.status.config.name.clone(),
            status,
        })
    }

    /// Schedules an exit at `at` unless an earlier one is already pending.
    fn schedule_exit(
        self: &Arc<Self>,
        st: &mut State,
        id: &ContainerId,
        after: Duration,
        exit_code: i32,
        signal: Option<Signal>,
        oom_killed: bool,
    ) {
        let at = Instant::now() + after;
        st.next_seq += 1;
        let seq = st.next_seq;
        let Some(c) = st.containers.get_mut(id) else {
            return;
        };
        if c.pending_exit.as_ref().is_some_and(|p| p.at <= at) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(self);
        let cid = id.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(inner) = weak.upgrade() {
                inner.fire_exit(&cid, seq);
            }
        });
        c.pending_exit = Some(PendingExit {
            seq,
            at,
            exit_code,
            signal,
            oom_killed,
            _timer: AbortOnDropHandle::new(timer),
        });
    }

    fn fire_exit(&self, id: &ContainerId, seq: u64) {
        let ev = {
            let mut st = self.lock();
            let Some(c) = st.containers.get_mut(id) else {
                return;
            };
            let Some(p) = c.pending_exit.as_ref() else {
                return;
            };
            if p.seq != seq {
                return;
            }
            let (code, signal, oom) = (p.exit_code, p.signal, p.oom_killed);
            // Keep the timer handle alive until the end of this function: dropping it would
            // abort the task that is running us (harmless, but not yet).
            let pending = c.pending_exit.take();
            let ev = self.finish_locked(&mut st, id, code, signal, oom);
            drop(st);
            drop(pending);
            ev
        };
        if let Some(ev) = ev {
            let _ = self.events.send(ev);
        }
    }

    fn write_logs(&self, status: &ContainerStatus, lines: &[String]) {
        if self.log_dir.is_none() || lines.is_empty() {
            return;
        }
        let ts = rfc3339_nanos(self.now());
        let mut text = String::new();
        for l in lines {
            text.push_str(&format!("{ts} stdout F {l}\n"));
        }
        if let Some(parent) = status.log_path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&status.log_path)
        {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// Formats a wall-clock time as RFC 3339 with nanoseconds in UTC (`2026-01-02T03:04:05.000000006Z`),
/// the timestamp format of CRI log lines.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let nanos = d.subsec_nanos();
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A made-up namespace path for a sandbox that asked for a network namespace of its own.
fn fake_netns(config: &SandboxConfig) -> Option<std::path::PathBuf> {
    config
        .network_namespace
        .then(|| std::path::PathBuf::from(format!("/run/netns/fake-{}", config.id)))
}

#[async_trait::async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn create_sandbox(&self, config: SandboxConfig) -> Result<SandboxStatus, RuntimeError> {
        let mut st = self.inner.lock();
        self.inner.enter(
            &mut st,
            FakeOp::CreateSandbox,
            FakeCall::CreateSandbox {
                id: config.id.clone(),
            },
        )?;
        if st.sandboxes.contains_key(&config.id) {
            return Err(RuntimeError::AlreadyExists {
                what: "sandbox",
                id: config.id,
            });
        }
        let created_at = self.inner.now();
        let status = SandboxStatus {
            config: config.clone(),
            state: SandboxState::Ready,
            created_at,
            containers: Vec::new(),
            netns: fake_netns(&config),
        };
        st.sandboxes.insert(
            config.id.clone(),
            FakeSandbox {
                config,
                state: SandboxState::Ready,
                created_at,
                containers: Vec::new(),
            },
        );
        Ok(status)
    }

    async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let events = {
            let mut st = self.inner.lock();
            self.inner.enter(
                &mut st,
                FakeOp::RemoveSandbox,
                FakeCall::RemoveSandbox { id: id.to_string() },
            )?;
            let Some(sb) = st.sandboxes.remove(id) else {
                return Ok(());
            };
            let mut events = Vec::new();
            for cid in &sb.containers {
                if let Some(ev) =
                    self.inner
                        .finish_locked(&mut st, cid, 137, Some(Signal::KILL), false)
                {
                    events.push(ev);
                }
                st.containers.remove(cid);
            }
            st.starts.retain(|(sid, _), _| sid != id);
            events
        };
        for ev in events {
            let _ = self.inner.events.send(ev);
        }
        Ok(())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> Result<ContainerId, RuntimeError> {
        let mut st = self.inner.lock();
        self.inner.enter(
            &mut st,
            FakeOp::CreateContainer,
            FakeCall::CreateContainer {
                sandbox_id: sandbox_id.to_string(),
                name: config.name.clone(),
            },
        )?;
        let Some(sb) = st.sandboxes.get(sandbox_id) else {
            return Err(RuntimeError::SandboxNotFound {
                id: sandbox_id.to_string(),
            });
        };
        if sb.state != SandboxState::Ready {
            return Err(RuntimeError::InvalidState {
                operation: "create a container in sandbox",
                id: sandbox_id.to_string(),
                state: "not ready",
            });
        }
        let hostname = sb.config.hostname.clone();
        let live_same_name = sb
            .containers
            .iter()
            .filter_map(|id| st.containers.get(id))
            .any(|c| {
                c.status.config.name == config.name
                    && !matches!(c.status.state, ContainerState::Exited(_))
            });
        if live_same_name {
            return Err(RuntimeError::AlreadyExists {
                what: "container",
                id: config.name,
            });
        }
        let script = st
            .pod_scripts
            .get(&(hostname, config.name.clone()))
            .or_else(|| st.scripts.get(&config.name))
            .cloned()
            .unwrap_or_else(|| st.default_script.clone());
        let key = (sandbox_id.to_string(), config.name.clone());
        let n = st.starts.get(&key).copied().unwrap_or(0);
        let attempt = script.attempt(n);
        if let Some(msg) = &attempt.create_error {
            st.starts.insert(key, n + 1);
            return Err(RuntimeError::StartFailed {
                message: msg.clone(),
            });
        }
        st.starts.insert(key, n + 1);
        st.next_id += 1;
        let id = ContainerId(format!("fake{:012x}", st.next_id));
        let log_path = self
            .inner
            .log_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/nonexistent/podvisor-fake-logs"))
            .join(sandbox_id)
            .join(&config.name)
            .join(format!("{n}.log"));
        let status = ContainerStatus {
            id: id.clone(),
            sandbox_id: sandbox_id.to_string(),
            config,
            state: ContainerState::Created,
            handles_stop_signal: None,
            log_path,
        };
        let (exited_tx, _) = watch::channel(false);
        st.containers.insert(
            id.clone(),
            FakeContainer {
                status,
                attempt,
                script,
                starting: false,
                stop_signalled: false,
                pending_exit: None,
                exited_tx,
                stdin: Arc::default(),
            },
        );
        if let Some(sb) = st.sandboxes.get_mut(sandbox_id) {
            sb.containers.push(id.clone());
        }
        Ok(id)
    }

    async fn start_container(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let attempt = {
            let mut st = self.inner.lock();
            let name = Inner::name_of(&st, id);
            self.inner.enter(
                &mut st,
                FakeOp::StartContainer,
                FakeCall::StartContainer {
                    id: id.clone(),
                    name,
                },
            )?;
            let Some(c) = st.containers.get_mut(id) else {
                return Err(RuntimeError::ContainerNotFound { id: id.clone() });
            };
            if c.starting || !matches!(c.status.state, ContainerState::Created) {
                return Err(RuntimeError::InvalidState {
                    operation: "start container",
                    id: id.0.clone(),
                    state: if c.starting {
                        "starting"
                    } else {
                        c.status.state.name()
                    },
                });
            }
            c.starting = true;
            c.attempt.clone()
        };
        if !attempt.start_delay.is_zero() {
            tokio::time::sleep(attempt.start_delay).await;
        }
        if attempt.start == StartOutcome::Hang {
            std::future::pending::<()>().await;
        }
        let mut st = self.inner.lock();
        let now = self.inner.now();
        let Some(c) = st.containers.get_mut(id) else {
            return Err(RuntimeError::ContainerNotFound { id: id.clone() });
        };
        c.starting = false;
        if let StartOutcome::Fail(message) = &attempt.start {
            c.status.state = ContainerState::Exited(ExitStatus::start_failed(message.clone(), now));
            let _ = c.exited_tx.send(true);
            return Err(RuntimeError::StartFailed {
                message: message.clone(),
            });
        }
        c.status.state = ContainerState::Running {
            pid: None,
            started_at: now,
        };
        c.status.handles_stop_signal = attempt.reported_handles_stop_signal();
        let status = c.status.clone();
        match attempt.run {
            RunOutcome::Forever => {}
            RunOutcome::Exit { after, code } => {
                self.inner
                    .schedule_exit(&mut st, id, after, code, None, false);
            }
            RunOutcome::OomKilled { after } => {
                self.inner
                    .schedule_exit(&mut st, id, after, 137, Some(Signal::KILL), true);
            }
        }
        drop(st);
        self.inner.write_logs(&status, &attempt.log_lines);
        Ok(status)
    }

    async fn container_stats(
        &self,
        id: &ContainerId,
    ) -> Result<crate::ContainerStats, RuntimeError> {
        let st = self.inner.lock();
        let Some(c) = st.containers.get(id) else {
            return Err(RuntimeError::ContainerNotFound { id: id.clone() });
        };
        if !matches!(c.status.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::InvalidState {
                operation: "read the stats of container",
                id: id.0.clone(),
                state: c.status.state.name(),
            });
        }
        Ok(st
            .stats
            .get(&c.status.config.name)
            .copied()
            .unwrap_or_default())
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: crate::Resources,
    ) -> Result<(), RuntimeError> {
        let mut st = self.inner.lock();
        let name = Inner::name_of(&st, id);
        self.inner.enter(
            &mut st,
            FakeOp::UpdateResources,
            FakeCall::UpdateResources {
                id: id.clone(),
                name,
                resources: resources.clone(),
            },
        )?;
        let Some(c) = st.containers.get_mut(id) else {
            return Err(RuntimeError::ContainerNotFound { id: id.clone() });
        };
        if !matches!(c.status.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::InvalidState {
                operation: "update the resources of container",
                id: id.0.clone(),
                state: c.status.state.name(),
            });
        }
        c.status.config.resources = resources;
        Ok(())
    }

    async fn attach(&self, id: &ContainerId) -> Result<crate::AttachSession, RuntimeError> {
        use tokio::io::AsyncReadExt;
        let (stdio, shared) = {
            let mut st = self.inner.lock();
            let name = Inner::name_of(&st, id);
            self.inner.enter(
                &mut st,
                FakeOp::Attach,
                FakeCall::Attach {
                    id: id.clone(),
                    name,
                },
            )?;
            let Some(c) = st.containers.get(id) else {
                return Err(RuntimeError::ContainerNotFound { id: id.clone() });
            };
            if !matches!(c.status.state, ContainerState::Running { .. }) {
                return Err(RuntimeError::InvalidState {
                    operation: "attach to container",
                    id: id.0.clone(),
                    state: c.status.state.name(),
                });
            }
            (c.status.config.stdio, c.stdin.clone())
        };
        let once = stdio.stdin_once && !stdio.tty;
        {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            if !stdio.stdin || s.closed || (once && s.attached) {
                return Ok(crate::AttachSession {
                    stdin: None,
                    resize: None,
                });
            }
            s.attached = true;
        }
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                let n = theirs.read(&mut buf).await.unwrap_or(0);
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    s.closed |= once;
                    break;
                }
                s.data.extend_from_slice(&buf[..n]);
            }
        });
        Ok(crate::AttachSession {
            stdin: Some(Box::pin(ours)),
            resize: stdio
                .tty
                .then(|| Box::new(|_, _| Ok(())) as crate::ExecResize),
        })
    }

    async fn signal(&self, id: &ContainerId, signal: Signal) -> Result<(), RuntimeError> {
        let ev = {
            let mut st = self.inner.lock();
            let name = Inner::name_of(&st, id);
            self.inner.enter(
                &mut st,
                FakeOp::Signal,
                FakeCall::Signal {
                    id: id.clone(),
                    name,
                    signal,
                },
            )?;
            let Some(c) = st.containers.get_mut(id) else {
                return Err(RuntimeError::ContainerNotFound { id: id.clone() });
            };
            if !matches!(c.status.state, ContainerState::Running { .. }) {
                return Ok(());
            }
            let stop = c.status.config.stop_signal.unwrap_or(Signal::TERM);
            if signal == Signal::KILL {
                self.inner
                    .finish_locked(&mut st, id, 137, Some(Signal::KILL), false)
            } else if signal == stop {
                c.stop_signalled = true;
                match c.attempt.on_stop.clone() {
                    StopOutcome::Die => {
                        self.inner
                            .finish_locked(&mut st, id, 128 + signal.0, Some(signal), false)
                    }
                    StopOutcome::Exit { after, code } => {
                        if after.is_zero() {
                            self.inner.finish_locked(&mut st, id, code, None, false)
                        } else {
                            self.inner
                                .schedule_exit(&mut st, id, after, code, None, false);
                            None
                        }
                    }
                    StopOutcome::Ignore => None,
                }
            } else {
                self.inner
                    .finish_locked(&mut st, id, 128 + signal.0, Some(signal), false)
            }
        };
        if let Some(ev) = ev {
            let _ = self.inner.events.send(ev);
        }
        Ok(())
    }

    async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let (script, mut exited) = {
            let mut st = self.inner.lock();
            let name = Inner::name_of(&st, id);
            self.inner.enter(
                &mut st,
                FakeOp::Exec,
                FakeCall::Exec {
                    id: id.clone(),
                    name,
                    command: command.to_vec(),
                    timeout,
                },
            )?;
            let Some(c) = st.containers.get(id) else {
                return Err(RuntimeError::ContainerNotFound { id: id.clone() });
            };
            if !matches!(c.status.state, ContainerState::Running { .. }) {
                return Err(RuntimeError::InvalidState {
                    operation: "exec in container",
                    id: id.0.clone(),
                    state: c.status.state.name(),
                });
            }
            let script = c
                .script
                .exec
                .get(command)
                .cloned()
                .unwrap_or_else(|| c.script.default_exec.clone());
            (script, c.exited_tx.subscribe())
        };
        let run = async {
            match script.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let container_died = async {
            let _ = exited.wait_for(|e| *e).await;
        };
        tokio::select! {
            _ = run => {}
            _ = tokio::time::sleep(timeout) => {
                return Ok(ExecResult { exit_code: None, output: Vec::new(), timed_out: true });
            }
            _ = container_died => {
                return Ok(ExecResult { exit_code: Some(137), output: Vec::new(), timed_out: false });
            }
        }
        if let Some(code) = script.then_container_exits {
            let ev = {
                let mut st = self.inner.lock();
                self.inner.finish_locked(&mut st, id, code, None, false)
            };
            if let Some(ev) = ev {
                let _ = self.inner.events.send(ev);
            }
        }
        let mut output = script.output;
        output.truncate(10 * 1024);
        Ok(ExecResult {
            exit_code: Some(script.exit_code),
            output,
            timed_out: false,
        })
    }

    async fn exec_stream(
        &self,
        id: &ContainerId,
        request: crate::ExecStreamRequest,
    ) -> Result<crate::ExecSession, RuntimeError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (script, mut exited) = {
            let mut st = self.inner.lock();
            let name = Inner::name_of(&st, id);
            self.inner.enter(
                &mut st,
                FakeOp::ExecStream,
                FakeCall::ExecStream {
                    id: id.clone(),
                    name,
                    command: request.command.clone(),
                    stdin: request.stdin,
                },
            )?;
            let Some(c) = st.containers.get(id) else {
                return Err(RuntimeError::ContainerNotFound { id: id.clone() });
            };
            if !matches!(c.status.state, ContainerState::Running { .. }) {
                return Err(RuntimeError::InvalidState {
                    operation: "exec in container",
                    id: id.0.clone(),
                    state: c.status.state.name(),
                });
            }
            let script = c
                .script
                .exec
                .get(&request.command)
                .cloned()
                .unwrap_or_else(|| c.script.default_exec.clone());
            (script, c.exited_tx.subscribe())
        };
        let (out_ours, mut out) = tokio::io::duplex(64 * 1024);
        let (err_ours, err) = tokio::io::duplex(1024);
        let (stdin_ours, mut stdin) = tokio::io::duplex(64 * 1024);
        let (code_tx, code_rx) = tokio::sync::oneshot::channel::<i32>();
        let inner = self.inner.clone();
        let cid = id.clone();
        let task = tokio::spawn(async move {
            let run = async {
                let _ = out.write_all(&script.output).await;
                if script.echo_stdin && request.stdin {
                    let mut buf = [0u8; 4096];
                    loop {
                        match stdin.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if out.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
                match script.duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let died = async {
                let _ = exited.wait_for(|e| *e).await;
            };
            let code = tokio::select! {
                _ = run => script.exit_code,
                _ = died => 137,
            };
            drop(out);
            drop(err);
            if let Some(exit) = script.then_container_exits
                && code != 137
            {
                let ev = {
                    let mut st = inner.lock();
                    inner.finish_locked(&mut st, &cid, exit, None, false)
                };
                if let Some(ev) = ev {
                    let _ = inner.events.send(ev);
                }
            }
            let _ = code_tx.send(code);
        });
        // Dropping the exit future aborts the task: the "command" is killed.
        let guard = AbortOnDropHandle::new(task);
        let exit = async move {
            let code = code_rx.await;
            drop(guard);
            code.map_err(|_| RuntimeError::Os {
                operation: "exec with streams".into(),
                message: "the command was killed".into(),
            })
        };
        Ok(crate::ExecSession {
            stdin: request
                .stdin
                .then(|| Box::pin(stdin_ours) as crate::ExecWriter),
            stdout: Box::pin(out_ours),
            stderr: Box::pin(err_ours),
            exit: Box::pin(exit),
            resize: None,
        })
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let mut st = self.inner.lock();
        self.inner.enter(
            &mut st,
            FakeOp::ContainerStatus,
            FakeCall::ContainerStatus { id: id.clone() },
        )?;
        st.containers
            .get(id)
            .map(|c| c.status.clone())
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.clone() })
    }

    async fn list(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        let mut st = self.inner.lock();
        self.inner.enter(&mut st, FakeOp::List, FakeCall::List)?;
        Ok(st
            .sandboxes
            .values()
            .map(|sb| SandboxStatus {
                config: sb.config.clone(),
                state: sb.state,
                created_at: sb.created_at,
                containers: sb
                    .containers
                    .iter()
                    .filter_map(|id| st.containers.get(id))
                    .map(|c| c.status.clone())
                    .collect(),
                netns: fake_netns(&sb.config),
            })
            .collect())
    }

    async fn update_sandbox_resources(
        &self,
        id: &str,
        resources: crate::Resources,
    ) -> Result<(), RuntimeError> {
        let mut st = self.inner.lock();
        self.inner.enter(
            &mut st,
            FakeOp::UpdateSandboxResources,
            FakeCall::UpdateSandboxResources {
                id: id.to_string(),
                resources: resources.clone(),
            },
        )?;
        let sb = st
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| RuntimeError::SandboxNotFound { id: id.to_string() })?;
        sb.config.resources = resources;
        Ok(())
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, RuntimeError> {
        let st = self.inner.lock();
        let sb = st
            .sandboxes
            .get(id)
            .ok_or_else(|| RuntimeError::SandboxNotFound { id: id.to_string() })?;
        Ok(SandboxStatus {
            config: sb.config.clone(),
            state: sb.state,
            created_at: sb.created_at,
            containers: sb
                .containers
                .iter()
                .filter_map(|id| st.containers.get(id))
                .map(|c| c.status.clone())
                .collect(),
            netns: fake_netns(&sb.config),
        })
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let mut st = self.inner.lock();
        let name = Inner::name_of(&st, id);
        self.inner.enter(
            &mut st,
            FakeOp::RemoveContainer,
            FakeCall::RemoveContainer {
                id: id.clone(),
                name,
            },
        )?;
        let Some(c) = st.containers.get(id) else {
            return Ok(());
        };
        if c.starting || matches!(c.status.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::InvalidState {
                operation: "remove container",
                id: id.0.clone(),
                state: if c.starting {
                    "starting"
                } else {
                    c.status.state.name()
                },
            });
        }
        let sandbox_id = c.status.sandbox_id.clone();
        st.containers.remove(id);
        if let Some(sb) = st.sandboxes.get_mut(&sandbox_id) {
            sb.containers.retain(|c| c != id);
        }
        Ok(())
    }

    fn subscribe(&self) -> ExitEvents {
        self.inner.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> FakeRuntime {
        FakeRuntime::new(tokio_clock(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ))
    }

    fn sandbox(id: &str) -> SandboxConfig {
        SandboxConfig {
            id: id.into(),
            hostname: format!("pod-{id}"),
            ..Default::default()
        }
    }

    fn container(name: &str) -> ContainerConfig {
        ContainerConfig {
            name: name.into(),
            image: "busybox".into(),
            ..Default::default()
        }
    }

    async fn run(rt: &FakeRuntime, sb: &str, name: &str) -> ContainerId {
        if !rt.has_sandbox(sb) {
            rt.create_sandbox(sandbox(sb)).await.unwrap();
        }
        let id = rt.create_container(sb, container(name)).await.unwrap();
        rt.start_container(&id).await.unwrap();
        id
    }

    #[tokio::test(start_paused = true)]
    async fn attach_writes_stdin_and_stdin_once_closes_after_the_first_client() {
        use tokio::io::AsyncWriteExt;
        let rt = rt();
        rt.create_sandbox(sandbox("s1")).await.unwrap();
        let mut once = container("once");
        once.stdio = crate::Stdio {
            stdin: true,
            stdin_once: true,
            tty: false,
        };
        let id = rt.create_container("s1", once).await.unwrap();
        let early = rt.attach(&id).await;
        assert!(
            matches!(
                early,
                Err(RuntimeError::InvalidState {
                    state: "created",
                    ..
                })
            ),
            "{early:?}"
        );
        rt.start_container(&id).await.unwrap();
        let mut first = rt.attach(&id).await.unwrap();
        assert!(first.resize.is_none());
        let mut w = first.stdin.take().expect("stdin");
        w.write_all(b"hello").await.unwrap();
        drop(w);
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let got = rt.stdin_of(&id).unwrap();
        assert_eq!(
            (got.data.as_slice(), got.attached, got.closed),
            (&b"hello"[..], true, true)
        );
        assert!(
            rt.attach(&id).await.unwrap().stdin.is_none(),
            "closed for good"
        );
        // Without stdin: nothing to write to.
        let plain = run(&rt, "s1", "plain").await;
        assert!(rt.attach(&plain).await.unwrap().stdin.is_none());
        assert!(
            rt.calls()
                .iter()
                .any(|c| matches!(&c.call, FakeCall::Attach { name, .. } if name == "once"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn scripted_exit_after_delay_is_broadcast_once_with_times() {
        let rt = rt();
        rt.script(
            "app",
            FakeScript::always(Attempt::exits_after(Duration::from_secs(5), 3)),
        );
        let mut events = rt.subscribe();
        let t0 = Instant::now();
        let id = run(&rt, "s1", "app").await;
        let ev = events.recv().await.unwrap();
        assert_eq!(Instant::now() - t0, Duration::from_secs(5));
        assert_eq!(ev.container_id, id);
        assert_eq!(ev.status.exit_code, 3);
        assert_eq!(
            ev.status
                .finished_at
                .duration_since(ev.status.started_at)
                .unwrap(),
            Duration::from_secs(5)
        );
        assert!(matches!(
            rt.container_status(&id).await.unwrap().state,
            ContainerState::Exited(_)
        ));
        // signalling an exited container succeeds and emits nothing
        rt.signal(&id, Signal::KILL).await.unwrap();
        assert!(events.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn stop_signal_behaviours() {
        let rt = rt();
        rt.script("die", FakeScript::default());
        rt.script(
            "grace",
            FakeScript::always(Attempt::forever().on_stop_exit(Duration::from_secs(2), 0)),
        );
        rt.script("deaf", FakeScript::always(Attempt::forever().ignore_stop()));
        let mut events = rt.subscribe();
        let die = run(&rt, "s", "die").await;
        let grace = run(&rt, "s", "grace").await;
        let deaf = run(&rt, "s", "deaf").await;
        assert_eq!(
            rt.container_status(&deaf)
                .await
                .unwrap()
                .handles_stop_signal,
            Some(false)
        );
        assert_eq!(
            rt.container_status(&grace)
                .await
                .unwrap()
                .handles_stop_signal,
            Some(true)
        );
        for id in [&die, &grace, &deaf] {
            rt.signal(id, Signal::TERM).await.unwrap();
        }
        let ev = events.recv().await.unwrap();
        assert_eq!(
            (ev.container_name.as_str(), ev.status.exit_code),
            ("die", 143)
        );
        assert_eq!(ev.status.signal, Some(Signal::TERM));
        let t0 = Instant::now();
        let ev = events.recv().await.unwrap();
        assert_eq!(
            (ev.container_name.as_str(), ev.status.exit_code),
            ("grace", 0)
        );
        assert_eq!(Instant::now() - t0, Duration::from_secs(2));
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(events.try_recv().is_err(), "deaf ignores TERM");
        rt.signal(&deaf, Signal::KILL).await.unwrap();
        let ev = events.recv().await.unwrap();
        assert_eq!(
            (ev.container_name.as_str(), ev.status.exit_code),
            ("deaf", 137)
        );
        assert_eq!(rt.running_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_follow_the_sequence_and_last_repeats() {
        let rt = rt();
        rt.script(
            "c",
            FakeScript::sequence(vec![
                Attempt::exits_after(Duration::from_secs(1), 1),
                Attempt::start_fails("exec: \"nope\": not found"),
                Attempt::forever(),
            ]),
        );
        rt.create_sandbox(sandbox("s")).await.unwrap();
        let a = rt.create_container("s", container("c")).await.unwrap();
        rt.start_container(&a).await.unwrap();
        // a live container with the same name cannot be created twice
        assert!(matches!(
            rt.create_container("s", container("c")).await,
            Err(RuntimeError::AlreadyExists { .. })
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let b = rt.create_container("s", container("c")).await.unwrap();
        let err = rt.start_container(&b).await.unwrap_err();
        assert_eq!(
            err,
            RuntimeError::StartFailed {
                message: "exec: \"nope\": not found".into()
            }
        );
        let ContainerState::Exited(st) = rt.container_status(&b).await.unwrap().state else {
            panic!()
        };
        assert_eq!(st.exit_code, 128);
        for _ in 0..3 {
            let c = rt.create_container("s", container("c")).await.unwrap();
            rt.start_container(&c).await.unwrap();
            rt.signal(&c, Signal::KILL).await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn illegal_operations_name_the_state() {
        let rt = rt();
        let id = run(&rt, "s", "c").await;
        let err = rt.start_container(&id).await.unwrap_err();
        assert_eq!(
            err,
            RuntimeError::InvalidState {
                operation: "start container",
                id: id.0.clone(),
                state: "running"
            }
        );
        assert!(matches!(
            rt.remove_container(&id).await,
            Err(RuntimeError::InvalidState {
                state: "running",
                ..
            })
        ));
        rt.signal(&id, Signal::KILL).await.unwrap();
        assert!(matches!(
            rt.exec(&id, &["true".into()], Duration::from_secs(1)).await,
            Err(RuntimeError::InvalidState {
                state: "exited",
                ..
            })
        ));
        rt.remove_container(&id).await.unwrap();
        rt.remove_container(&id).await.unwrap();
        rt.remove_sandbox("s").await.unwrap();
        rt.remove_sandbox("s").await.unwrap();
        assert!(matches!(
            rt.create_container("s", container("c")).await,
            Err(RuntimeError::SandboxNotFound { .. })
        ));
        assert!(
            rt.signal(&id, Signal::TERM)
                .await
                .unwrap_err()
                .is_not_found()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exec_results_timeouts_and_container_death() {
        let rt = rt();
        rt.script(
            "c",
            FakeScript::default()
                .exec(["cat", "/ready"], ExecScript::exit(1).output("nope"))
                .exec(["slow"], ExecScript::ok().taking(Duration::from_secs(5)))
                .exec(
                    ["stop"],
                    ExecScript::ok()
                        .taking(Duration::from_secs(1))
                        .then_container_exits(0),
                )
                .default_exec(ExecScript::hang()),
        );
        let id = run(&rt, "s", "c").await;
        let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r = rt
            .exec(&id, &cmd(&["cat", "/ready"]), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            (r.exit_code, r.output.as_slice(), r.timed_out),
            (Some(1), &b"nope"[..], false)
        );
        let t0 = Instant::now();
        let r = rt
            .exec(&id, &cmd(&["slow"]), Duration::from_secs(2))
            .await
            .unwrap();
        assert!(r.timed_out && r.exit_code.is_none());
        assert_eq!(Instant::now() - t0, Duration::from_secs(2));
        // a hanging exec ends when the container is killed
        let rt2 = rt.clone();
        let id2 = id.clone();
        let hanging =
            tokio::spawn(
                async move { rt2.exec(&id2, &cmd(&["x"]), Duration::from_secs(600)).await },
            );
        tokio::time::sleep(Duration::from_secs(3)).await;
        rt.signal(&id, Signal::KILL).await.unwrap();
        let r = hanging.await.unwrap().unwrap();
        assert_eq!(r.exit_code, Some(137));
        // an exec that stops the container
        let id = run(&rt, "s", "c").await;
        let mut events = rt.subscribe();
        rt.exec(&id, &["stop".to_string()], Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(events.recv().await.unwrap().status.exit_code, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_recorded_in_order_with_times_and_errors_can_be_injected() {
        let rt = rt();
        rt.fail_next(
            FakeOp::CreateSandbox,
            RuntimeError::Os {
                operation: "mkdir".into(),
                message: "EIO".into(),
            },
        );
        assert!(rt.create_sandbox(sandbox("s")).await.is_err());
        let id = run(&rt, "s", "c").await;
        tokio::time::sleep(Duration::from_secs(7)).await;
        rt.signal(&id, Signal::TERM).await.unwrap();
        rt.remove_sandbox("s").await.unwrap();
        let calls = rt.calls();
        assert_eq!(
            calls.iter().map(|c| c.call.clone()).collect::<Vec<_>>(),
            vec![
                FakeCall::CreateSandbox { id: "s".into() },
                FakeCall::CreateSandbox { id: "s".into() },
                FakeCall::CreateContainer {
                    sandbox_id: "s".into(),
                    name: "c".into()
                },
                FakeCall::StartContainer {
                    id: id.clone(),
                    name: "c".into()
                },
                FakeCall::Signal {
                    id: id.clone(),
                    name: "c".into(),
                    signal: Signal::TERM
                },
                FakeCall::RemoveSandbox { id: "s".into() },
            ]
        );
        assert_eq!(calls[4].at - calls[3].at, Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn remove_sandbox_kills_running_containers_and_reports_their_exit() {
        let rt = rt();
        let mut events = rt.subscribe();
        run(&rt, "s", "a").await;
        run(&rt, "s", "b").await;
        rt.remove_sandbox("s").await.unwrap();
        let mut codes = vec![
            events.recv().await.unwrap().status.exit_code,
            events.recv().await.unwrap().status.exit_code,
        ];
        codes.sort();
        assert_eq!(codes, vec![137, 137]);
        assert_eq!(rt.sandbox_count(), 0);
        assert!(rt.list().await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_stop_exit_wins_over_a_later_scripted_exit_and_oom_is_reported() {
        let rt = rt();
        rt.script(
            "c",
            FakeScript::always(
                Attempt::exits_after(Duration::from_secs(10), 0)
                    .on_stop_exit(Duration::from_secs(1), 42),
            ),
        );
        rt.script(
            "o",
            FakeScript::always(Attempt::oom_after(Duration::from_secs(3))),
        );
        let mut events = rt.subscribe();
        let id = run(&rt, "s", "c").await;
        run(&rt, "s", "o").await;
        rt.signal(&id, Signal::TERM).await.unwrap();
        let ev = events.recv().await.unwrap();
        assert_eq!(ev.status.exit_code, 42);
        let ev = events.recv().await.unwrap();
        assert!(ev.status.oom_killed);
        assert_eq!(ev.status.exit_code, 137);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(events.try_recv().is_err(), "each instance exits once");
    }

    #[tokio::test(start_paused = true)]
    async fn thousands_of_containers_are_cheap() {
        let rt = rt();
        rt.set_recording(false);
        rt.script(
            "c",
            FakeScript::always(Attempt::exits_after(Duration::from_secs(30), 0)),
        );
        let mut events = rt.subscribe();
        for i in 0..3000 {
            run(&rt, &format!("s{i}"), "c").await;
        }
        assert_eq!(rt.running_count(), 3000);
        let mut n = 0;
        while n < 3000 {
            events.recv().await.unwrap();
            n += 1;
        }
        assert_eq!(rt.running_count(), 0);
        assert!(rt.calls().is_empty());
    }

    #[test]
    fn rfc3339_formatting() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339_nanos(t), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(
            rfc3339_nanos(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_nanos(leap), "2000-02-29T00:00:00.000000000Z");
    }
}
