//! The process backend: containers are real host processes, each sandbox under its own
//! supervisor process (`podvisor supervise`, see [`supervisor_main`]) that outlives the agent.
//!
//! # Who does what
//!
//! [`ProcessRuntime`] (in the agent) owns the state directory and talks to the supervisors
//! over their unix sockets (JSON lines). Each supervisor starts its sandbox's containers,
//! reaps every process, writes logs and exit records, and enforces kills; the client reads
//! the records from disk for `container_status` and `list`, so it works the same after an
//! agent restart and even when a supervisor is gone.
//!
//! # State directory layout
//!
//! ```text
//! <state_dir>/sandboxes/<sandbox id>/
//!     sandbox.json          the SandboxConfig, creation time, cgroup directories (client)
//!     supervisor.json       the supervisor's host PID and start time (supervisor)
//!     supervisor.log        the supervisor's own diagnostics
//!     sock                  the control socket
//!     containers/<id>/      container.json (config, log path) · started.json (PID, start)
//!                           · exit.json (ExitStatus, written atomically and fsynced)
//!                           · termination-log (the instance's termination-message file)
//!     logs/<name>/<attempt>.log    CRI-format log; <attempt>.log.1 is the rotated part
//! ```
//!
//! Container IDs are `<name>-<attempt>-<random>`; `attempt` counts the containers of that
//! name created in the sandbox (0, 1, …), so after a restart the previous instance's log is
//! `<attempt - 1>.log` next to the current one ([`crate::ContainerStatus::log_path`]). Logs
//! stay until the sandbox is removed.
//!
//! # Isolation (when root)
//!
//! The supervisor unshares pid, ipc and uts namespaces: it is PID 1 of the sandbox's pid
//! namespace (containers share it, like `shareProcessNamespace`, and are never PID 1
//! themselves, so default signal actions apply), and the hostname is the sandbox hostname.
//! Cgroups: `<parent>/<sandbox>` and
//! `<parent>/<sandbox>/<container>` in every usable hierarchy; `<parent>` defaults to
//! `<the agent's own cgroup>/podvisor`. Without root or a writable cgroup fs the runtime runs
//! with what is available and logs one line saying what is missing.
//!
//! # Mounts (when root)
//!
//! Each container instance gets its own mount namespace, made in the child before exec:
//! `unshare(CLONE_NEWNS)`, `/` made recursively slave (host mounts still appear inside,
//! nothing made inside reaches the host), then [`ContainerConfig::mounts`](crate::Mount) are
//! bind-mounted in order (recursively; `read_only` remounts the top mount read-only), then
//! the instance's termination-message file. The filesystem is otherwise the host's: there is
//! no root switch, so a missing mount point is created **on the host** (a directory, or an
//! empty file when the source is a file) and left there; for the default
//! `terminationMessagePath` that is an empty `/dev/termination-log` on the host, which each
//! container sees replaced by its own file. A mount that fails makes the start fail
//! (`StartFailed`, recorded as exit code 128) with a message naming the source and target.
//! Execs (probes, hooks) join the container's mount namespace (`setns`), so they see what it
//! sees. Executables are looked up through the mounts (a command inside a volume works).
//!
//! Termination messages ([`crate::termination`]): `containers/<id>/termination-log` (mode
//! 0666) is created with the instance and mounted at its `terminationMessagePath`; when the
//! instance ends the supervisor reads it (or the log tail) into the exit record, so the
//! message survives agent restarts. Without root nothing is mounted: volume mounts make the
//! start fail, and the termination message can only come from the log fallback.
//!
//! Containers start directly in their v2 cgroup (`clone3(CLONE_INTO_CGROUP)`); a v1
//! hierarchy (memory, cpu, pids) is joined only when a limit asks for it, because joining one
//! is a cgroup migration that costs an RCU grace period (~10 ms) on kernels without
//! `favordynmods`. The v1 freezer is used only where there is no `cgroup.kill`.
//!
//! # Spare supervisors
//!
//! The runtime keeps [`ProcessRuntimeConfig::spare_supervisors`] supervisors started ahead of
//! time in `sandboxes/.spare-<owner pid>-<owner start>-<random>/` (namespaces made, socket
//! bound). `create_sandbox` renames one to the sandbox's directory and sends it `adopt`, then
//! starts a replacement in the background; with none ready it starts a supervisor itself.
//! Spares end when their runtime instance is dropped; a new instance ends spares whose owner
//! is gone.
//!
//! # Events
//!
//! Exits are broadcast from the supervisors' watch connections. An agent that restarts should
//! [`subscribe`](crate::ContainerRuntime::subscribe) first and then
//! [`list`](crate::ContainerRuntime::list): exits that happened while no runtime was connected
//! are in the list (their records are on disk), later ones arrive as events. A failed start is
//! returned as `StartFailed` (and recorded as exit code 128 with the message), not broadcast.

mod cgroup;
mod logs;
pub mod netns;
mod proto;
mod rootfs;
pub mod security;
mod spawn;
mod stream;
mod supervisor;
mod util;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use supervisor::supervisor_main;

use self::cgroup::CgDir;
use self::proto::{
    ContainerRecord, ErrorKind, Request, Response, SandboxRecord, StartedRecord, SupervisorRecord,
    WireError,
};
use self::util::{handles_signal, process_alive, read_json, valid_name, wall_now, write_json};
use crate::{
    ContainerConfig, ContainerId, ContainerRuntime, ContainerState, ContainerStatus, ExecResult,
    ExitEvent, ExitEvents, ExitStatus, RuntimeError, SandboxConfig, SandboxState, SandboxStatus,
    Signal,
};

/// How the process backend is set up.
#[derive(Clone, Debug)]
pub struct ProcessRuntimeConfig {
    /// The runtime's state directory (e.g. `<data-dir>/runtime`); sandboxes live below it.
    pub state_dir: PathBuf,
    /// The program that runs the supervisor (the podvisor binary).
    pub supervisor_program: PathBuf,
    /// Leading arguments (`["supervise"]` for the podvisor binary); the runtime appends
    /// `--dir <sandbox dir>`.
    pub supervisor_args: Vec<String>,
    /// A log file is rotated when it would grow past this many bytes (one rotated file kept).
    pub log_max_bytes: u64,
    /// The cgroup parent below each hierarchy's mount point (e.g. `podvisor`); None: a
    /// `podvisor` child of the agent's own cgroup.
    pub cgroup_parent: Option<String>,
    /// Whether to give sandboxes their own pid, ipc and uts namespaces (needs root).
    pub namespaces: bool,
    /// Whether to use cgroups (needs root and a writable cgroup fs). Without them, SIGKILL
    /// reaches a container's process group only; what escaped it (a `setsid` daemon) dies
    /// when the sandbox is removed.
    pub cgroups: bool,
    /// How long to wait for a supervisor's answer (exec adds its own timeout).
    pub request_timeout: Duration,
    /// How many supervisors to keep started ahead of time (namespaces made, socket bound): a
    /// new sandbox adopts one instead of waiting for a process to start. 0 disables.
    pub spare_supervisors: usize,
    /// Whether spare supervisors hold a network namespace of their own: only sandboxes that
    /// ask for the same ([`SandboxConfig::network_namespace`]) adopt them.
    pub spare_network: bool,
}

impl ProcessRuntimeConfig {
    /// A configuration with defaults: 10 MiB logs, namespaces when root, nested cgroups.
    pub fn new(
        state_dir: impl Into<PathBuf>,
        supervisor_program: impl Into<PathBuf>,
        supervisor_args: Vec<String>,
    ) -> ProcessRuntimeConfig {
        ProcessRuntimeConfig {
            state_dir: state_dir.into(),
            supervisor_program: supervisor_program.into(),
            supervisor_args,
            log_max_bytes: 10 * 1024 * 1024,
            cgroup_parent: None,
            namespaces: true,
            cgroups: true,
            request_timeout: Duration::from_secs(30),
            spare_supervisors: 1,
            spare_network: false,
        }
    }
}

/// Runs containers as real processes under per-sandbox supervisors. See the module docs.
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProcessRuntimeConfig,
    sandboxes: PathBuf,
    cgroup_parents: Vec<CgDir>,
    namespaces: bool,
    events: broadcast::Sender<ExitEvent>,
    index: Mutex<HashMap<ContainerId, String>>,
    removed: Mutex<HashSet<String>>,
    removing: Arc<Mutex<HashSet<String>>>,
    creating: Mutex<HashSet<String>>,
    watchers: Mutex<HashMap<String, JoinHandle<()>>>,
    spares: Mutex<Vec<PathBuf>>,
    spares_starting: std::sync::atomic::AtomicUsize,
    /// Set by [`ProcessRuntime::stop_spares`]: no spare is started or kept after it.
    spares_closed: std::sync::atomic::AtomicBool,
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        if let Ok(w) = self.inner.watchers.lock() {
            for h in w.values() {
                h.abort();
            }
        }
        // Spares belong to this instance: end them (briefly blocking; they answer at once).
        self.stop_spares();
    }
}

/// Ends a spare supervisor and removes its directory (synchronously; used from Drop and for
/// stale spares).
fn stop_spare_blocking(dir: &Path) {
    use std::io::{BufRead, Write};
    if let Ok(mut s) = std::os::unix::net::UnixStream::connect(dir.join("sock")) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"{\"op\":\"shutdown\"}\n").is_ok() {
            let mut line = String::new();
            let mut r = std::io::BufReader::new(&s);
            let _ = r.read_line(&mut line);
            // The supervisor exits right after answering; EOF follows.
            let _ = r.read_line(&mut line);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs the supervisor command for `dir` and waits until it is ready.
async fn launch_supervisor(config: &ProcessRuntimeConfig, dir: &Path) -> Result<(), RuntimeError> {
    let out = tokio::process::Command::new(&config.supervisor_program)
        .args(&config.supervisor_args)
        .arg("--dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await;
    let failure = match out {
        Ok(o) if o.status.success() => return Ok(()),
        Ok(o) => format!(
            "{}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("{}: {e}", config.supervisor_program.display()),
    };
    Err(RuntimeError::Os {
        operation: "start the sandbox supervisor".into(),
        message: failure,
    })
}

/// Starts one spare supervisor in `<sandboxes>/.spare-<owner pid>-<owner start>-<random>`.
async fn start_spare(inner: std::sync::Weak<Inner>, delay: Duration) {
    // A refill waits a moment so that it does not compete with the sandbox start that
    // triggered it.
    tokio::time::sleep(delay).await;
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let me = std::process::id();
    let name = format!(
        ".spare-{me}-{}-{:016x}",
        util::start_ticks(me).unwrap_or(0),
        util::random_u64()
    );
    let dir = strong.sandboxes.join(name);
    let config = strong.config.clone();
    let rec = SandboxRecord {
        config: SandboxConfig {
            network_namespace: config.spare_network,
            ..SandboxConfig::default()
        },
        created_at: wall_now(),
        cgroups: Vec::new(),
        log_max_bytes: config.log_max_bytes,
        namespaces: strong.namespaces,
    };
    drop(strong);
    let prepared = std::fs::create_dir_all(dir.join("containers"))
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
        })
        .and_then(|()| write_json(&dir.join("sandbox.json"), &rec, false));
    let started = match prepared {
        Ok(()) => launch_supervisor(&config, &dir).await,
        Err(e) => Err(os("prepare a spare supervisor", e)),
    };
    let Some(strong) = inner.upgrade() else {
        // The runtime went away meanwhile.
        let _ = tokio::task::spawn_blocking(move || stop_spare_blocking(&dir)).await;
        return;
    };
    strong
        .spares_starting
        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    match started {
        Ok(()) => {
            // Checked under the list's lock, which `stop_spares` takes after closing: a spare
            // that finished starting after the stop is ended here instead of kept.
            let mut spares = lock(&strong.spares);
            if strong
                .spares_closed
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                drop(spares);
                drop(strong);
                let _ = tokio::task::spawn_blocking(move || stop_spare_blocking(&dir)).await;
            } else {
                spares.push(dir);
            }
        }
        Err(e) => {
            tracing::warn!("cannot start a spare supervisor: {e}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn os(operation: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Os {
        operation: operation.to_string(),
        message: e.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn intern_state(s: &str) -> &'static str {
    match s {
        "created" => "created",
        "running" => "running",
        "stopping" => "stopping",
        "exited" => "exited",
        "not ready" => "not ready",
        "removed" => "removed",
        _ => "in an unknown state",
    }
}

fn intern_operation(s: &str) -> &'static str {
    match s {
        "start container" => "start container",
        "exec in container" => "exec in container",
        "remove container" => "remove container",
        "use sandbox" => "use sandbox",
        "adopt sandbox" => "adopt sandbox",
        _ => "operate on",
    }
}

fn from_wire(e: WireError, sandbox: &str) -> RuntimeError {
    match e.kind {
        ErrorKind::NotFound => RuntimeError::ContainerNotFound {
            id: ContainerId(e.message),
        },
        ErrorKind::AlreadyExists => RuntimeError::AlreadyExists {
            what: "container",
            id: e.message,
        },
        ErrorKind::InvalidState => RuntimeError::InvalidState {
            operation: intern_operation(&e.operation),
            id: e.message,
            state: intern_state(&e.state),
        },
        ErrorKind::StartFailed => RuntimeError::StartFailed { message: e.message },
        ErrorKind::Os => RuntimeError::Os {
            operation: format!("supervisor of sandbox {sandbox}"),
            message: e.message,
        },
    }
}

impl ProcessRuntime {
    /// Opens (or creates) the state directory, resolves the cgroup hierarchies, logs one line
    /// about anything unavailable, and re-adopts every sandbox found: live supervisors are
    /// reconnected (their exits arrive on [`ContainerRuntime::subscribe`]), and containers of
    /// supervisors that died are recorded as killed. Nothing is restarted.
    pub async fn new(config: ProcessRuntimeConfig) -> Result<ProcessRuntime, RuntimeError> {
        let sandboxes = config.state_dir.join("sandboxes");
        std::fs::create_dir_all(&sandboxes)
            .map_err(|e| os("create the runtime state directory", e))?;
        let sandboxes = std::fs::canonicalize(&sandboxes)
            .map_err(|e| os("resolve the runtime state directory", e))?;
        let root = nix::unistd::geteuid().is_root();
        let mut missing = Vec::new();
        let cgroup_parents = if !config.cgroups {
            missing.push("cgroups (disabled)".into());
            Vec::new()
        } else if root {
            let layout = cgroup::detect(config.cgroup_parent.as_deref());
            missing.extend(layout.missing);
            layout.parents
        } else {
            missing.push("cgroups (not root)".into());
            Vec::new()
        };
        let namespaces = config.namespaces && root;
        if !namespaces {
            missing.push(
                if config.namespaces {
                    "pid/ipc/uts namespaces (not root)"
                } else {
                    "pid/ipc/uts namespaces (disabled)"
                }
                .into(),
            );
        }
        if missing.is_empty() {
            tracing::info!(state_dir = %sandboxes.display(), "process runtime: namespaces and cgroups available");
        } else {
            tracing::warn!("process runtime: running without {}", missing.join("; "));
        }
        let (events, _) = broadcast::channel(1024);
        let rt = ProcessRuntime {
            inner: Arc::new(Inner {
                config,
                sandboxes,
                cgroup_parents,
                namespaces,
                events,
                index: Mutex::new(HashMap::new()),
                removed: Mutex::new(HashSet::new()),
                removing: Arc::new(Mutex::new(HashSet::new())),
                creating: Mutex::new(HashSet::new()),
                watchers: Mutex::new(HashMap::new()),
                spares: Mutex::new(Vec::new()),
                spares_starting: std::sync::atomic::AtomicUsize::new(0),
                spares_closed: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        rt.clean_stale_spares();
        rt.adopt().await;
        rt.refill_spares(Duration::ZERO);
        Ok(rt)
    }

    /// Starts spare supervisors in the background up to the configured number.
    fn refill_spares(&self, delay: Duration) {
        use std::sync::atomic::Ordering;
        let want = self.inner.config.spare_supervisors;
        if self.inner.spares_closed.load(Ordering::SeqCst) {
            return;
        }
        loop {
            let have =
                lock(&self.inner.spares).len() + self.inner.spares_starting.load(Ordering::SeqCst);
            if have >= want {
                return;
            }
            self.inner.spares_starting.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(start_spare(Arc::downgrade(&self.inner), delay));
        }
    }

    /// Ends spares left behind by runtime instances that are gone.
    fn clean_stale_spares(&self) {
        let Ok(rd) = std::fs::read_dir(&self.inner.sandboxes) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(".spare-") {
                let mut it = rest.split('-');
                let owner = it.next().and_then(|p| p.parse::<u32>().ok());
                let ticks = it.next().and_then(|t| t.parse::<u64>().ok());
                let alive = matches!((owner, ticks), (Some(p), Some(t)) if process_alive(p, t));
                if !alive {
                    stop_spare_blocking(&e.path());
                }
            } else if name.starts_with(".removed-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Ends the spare supervisors now, blocking briefly. A process that is about to exit calls
    /// this: its runtime instance may never be dropped, and spares must not outlive it.
    /// Spares still starting end by themselves when they are ready; none starts afterwards.
    pub fn stop_spares(&self) {
        self.inner
            .spares_closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let spares = std::mem::take(&mut *lock(&self.inner.spares));
        for dir in spares {
            stop_spare_blocking(&dir);
        }
    }

    /// How many spare supervisors are ready to be adopted right now.
    pub fn spares_ready(&self) -> usize {
        lock(&self.inner.spares).len()
    }

    /// The directory of a sandbox.
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.inner.sandboxes.join(id)
    }

    /// The host PID of a sandbox's supervisor, if it is alive.
    pub fn supervisor_pid(&self, id: &str) -> Option<u32> {
        self.live_supervisor(id).map(|rec| rec.host_pid)
    }

    fn live_supervisor(&self, id: &str) -> Option<SupervisorRecord> {
        let rec: SupervisorRecord =
            read_json(&self.sandbox_dir(id).join("supervisor.json")).ok()??;
        process_alive(rec.host_pid, rec.start_ticks).then_some(rec)
    }

    /// The path of a sandbox's own network namespace, while its supervisor holds one.
    fn netns(&self, id: &str) -> Option<PathBuf> {
        let rec = self.live_supervisor(id)?;
        rec.network.then(|| netns::netns_of(rec.host_pid))
    }

    async fn adopt(&self) {
        let Ok(rd) = std::fs::read_dir(&self.inner.sandboxes) else {
            return;
        };
        for entry in rd.flatten() {
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !valid_name(&id) {
                continue;
            }
            let dir = entry.path();
            match read_json::<SandboxRecord>(&dir.join("sandbox.json")) {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(sandbox = %id, "skipping a sandbox with an unreadable record: {e}");
                    continue;
                }
            }
            for c in container_dirs(&dir) {
                if let Some(name) = c.file_name().and_then(|n| n.to_str()) {
                    lock(&self.inner.index).insert(ContainerId(name.to_string()), id.clone());
                }
            }
            if self.supervisor_pid(&id).is_some() {
                if let Err(e) = self.start_watch(&id, None).await {
                    tracing::warn!(sandbox = %id, "cannot reconnect to the supervisor: {e}");
                }
            } else {
                supervisor_lost(&dir, &id, &self.inner.events);
            }
        }
    }

    async fn request(
        &self,
        sandbox: &str,
        req: &Request,
        timeout: Duration,
    ) -> Result<Response, RuntimeError> {
        let sock = self.sandbox_dir(sandbox).join("sock");
        let unreachable = |message: String| RuntimeError::SupervisorUnreachable {
            id: sandbox.to_string(),
            message,
        };
        let fut = async {
            let mut s = UnixStream::connect(&sock)
                .await
                .map_err(|e| unreachable(format!("connect: {e}")))?;
            let mut line = serde_json::to_vec(req).map_err(|e| os("encode request", e))?;
            line.push(b'\n');
            s.write_all(&line)
                .await
                .map_err(|e| unreachable(format!("send: {e}")))?;
            let mut r = BufReader::new(s);
            let mut buf = String::new();
            let n = r
                .read_line(&mut buf)
                .await
                .map_err(|e| unreachable(format!("receive: {e}")))?;
            if n == 0 {
                return Err(unreachable("connection closed without an answer".into()));
            }
            serde_json::from_str::<Response>(&buf)
                .map_err(|e| unreachable(format!("bad answer: {e}")))
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
        }
    }

    async fn call(&self, sandbox: &str, req: Request) -> Result<Response, RuntimeError> {
        let resp = self
            .request(sandbox, &req, self.inner.config.request_timeout)
            .await?;
        match resp.error {
            Some(e) => Err(from_wire(e, sandbox)),
            None => Ok(resp),
        }
    }

    /// Opens the watch connection of sandbox `id` (first asking a spare supervisor to adopt
    /// the sandbox in `adopt`, on the same connection).
    async fn start_watch(&self, id: &str, adopt: Option<&Path>) -> Result<(), RuntimeError> {
        let dir = self.sandbox_dir(id);
        let unreachable = |message: String| RuntimeError::SupervisorUnreachable {
            id: id.to_string(),
            message,
        };
        let stream = tokio::time::timeout(
            self.inner.config.request_timeout,
            UnixStream::connect(dir.join("sock")),
        )
        .await
        .map_err(|_| unreachable("connect timed out".into()))?
        .map_err(|e| unreachable(format!("connect: {e}")))?;
        let (r, mut w) = stream.into_split();
        let mut request = Vec::new();
        if let Some(dir) = adopt {
            let adopt = Request::Adopt {
                dir: dir.to_path_buf(),
            };
            request = serde_json::to_vec(&adopt).map_err(|e| os("encode request", e))?;
            request.push(b'\n');
        }
        request.extend_from_slice(b"{\"op\":\"watch\"}\n");
        w.write_all(&request)
            .await
            .map_err(|e| unreachable(format!("send: {e}")))?;
        let mut lines = BufReader::new(r).lines();
        let answers = if adopt.is_some() { 2 } else { 1 };
        for _ in 0..answers {
            let line =
                match tokio::time::timeout(self.inner.config.request_timeout, lines.next_line())
                    .await
                {
                    Ok(Ok(Some(line))) => line,
                    _ => return Err(unreachable("no answer to watch".into())),
                };
            let resp: Response =
                serde_json::from_str(&line).map_err(|e| unreachable(format!("bad answer: {e}")))?;
            if let Some(e) = resp.error {
                return Err(from_wire(e, id));
            }
        }
        let events = self.inner.events.clone();
        let removing = self.inner.removing.clone();
        let sid = id.to_string();
        let handle = tokio::spawn(async move {
            let _keep_open = w;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(Response { exit: Some(ev), .. }) = serde_json::from_str::<Response>(&line)
                {
                    let _ = events.send(ev);
                }
            }
            if lock(&removing).contains(&sid) {
                return;
            }
            // The socket closes before a dying PID 1 has finished killing its namespace: wait
            // until the supervisor is really gone before recording what it ran as killed.
            let sup: Option<SupervisorRecord> =
                read_json(&dir.join("supervisor.json")).ok().flatten();
            for _ in 0..500 {
                if sup
                    .as_ref()
                    .is_none_or(|s| !process_alive(s.host_pid, s.start_ticks))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if lock(&removing).contains(&sid) {
                return;
            }
            if sup
                .as_ref()
                .is_some_and(|s| process_alive(s.host_pid, s.start_ticks))
            {
                tracing::warn!(sandbox = %sid, "lost the watch connection to a live supervisor");
                return;
            }
            tracing::warn!(sandbox = %sid, "the sandbox supervisor went away");
            let _ = tokio::task::spawn_blocking(move || supervisor_lost(&dir, &sid, &events)).await;
        });
        if let Some(old) = lock(&self.inner.watchers).insert(id.to_string(), handle) {
            old.abort();
        }
        Ok(())
    }

    /// The sandbox of container `id`, or `ContainerNotFound`.
    fn sandbox_of(&self, id: &ContainerId) -> Result<String, RuntimeError> {
        self.find(id)
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.clone() })
    }

    fn find(&self, id: &ContainerId) -> Option<String> {
        if let Some(s) = lock(&self.inner.index).get(id) {
            return Some(s.clone());
        }
        let rd = std::fs::read_dir(&self.inner.sandboxes).ok()?;
        for e in rd.flatten() {
            if e.path()
                .join("containers")
                .join(&id.0)
                .join("container.json")
                .exists()
            {
                let sid = e.file_name().to_string_lossy().into_owned();
                lock(&self.inner.index).insert(id.clone(), sid.clone());
                return Some(sid);
            }
        }
        None
    }

    fn read_sandbox(&self, id: &str) -> Result<SandboxStatus, RuntimeError> {
        let dir = self.sandbox_dir(id);
        let rec: SandboxRecord = read_json(&dir.join("sandbox.json"))
            .map_err(|e| os("read sandbox record", e))?
            .ok_or_else(|| RuntimeError::SandboxNotFound { id: id.to_string() })?;
        let supervisor = self.live_supervisor(id);
        let ready = supervisor.is_some() && !lock(&self.inner.removing).contains(id);
        let mut containers = Vec::new();
        for c in container_dirs(&dir) {
            match read_container(&c, id) {
                Ok(Some(s)) => containers.push(s),
                Ok(None) => {}
                Err(e) => tracing::warn!(sandbox = %id, "unreadable container record: {e}"),
            }
        }
        containers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(SandboxStatus {
            config: rec.config,
            state: if ready {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            created_at: rec.created_at,
            containers,
            netns: supervisor
                .filter(|s| s.network)
                .map(|s| netns::netns_of(s.host_pid)),
        })
    }
}

fn container_dirs(sandbox_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(sandbox_dir.join("containers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a container's records; Ok(None) if it has none (removed meanwhile).
fn read_container(dir: &Path, sandbox: &str) -> Result<Option<ContainerStatus>, RuntimeError> {
    let Some(rec) = read_json::<ContainerRecord>(&dir.join("container.json"))
        .map_err(|e| os("read container record", e))?
    else {
        return Ok(None);
    };
    let exit: Option<ExitStatus> =
        read_json(&dir.join("exit.json")).map_err(|e| os("read exit record", e))?;
    let started: Option<StartedRecord> =
        read_json(&dir.join("started.json")).map_err(|e| os("read start record", e))?;
    let stop = rec.config.stop_signal.unwrap_or(Signal::TERM).0;
    let (state, handles) = match (exit, started) {
        (Some(x), _) => (ContainerState::Exited(x), None),
        (None, Some(s)) => {
            let handles = if process_alive(s.host_pid, s.start_ticks) {
                handles_signal(s.host_pid, stop)
            } else {
                None
            };
            (
                ContainerState::Running {
                    pid: Some(s.host_pid),
                    started_at: s.started_at,
                },
                handles,
            )
        }
        (None, None) => (ContainerState::Created, None),
    };
    Ok(Some(ContainerStatus {
        id: ContainerId(rec.id),
        sandbox_id: sandbox.to_string(),
        config: rec.config,
        state,
        handles_stop_signal: handles,
        log_path: rec.log_path,
    }))
}

/// A supervisor died without recording its containers' ends: whatever it ran is gone (with
/// namespaces its death killed the pid namespace; without, the process groups are killed
/// here), so every running container is recorded as killed and announced.
fn supervisor_lost(dir: &Path, sandbox: &str, events: &broadcast::Sender<ExitEvent>) {
    for c in container_dirs(dir) {
        let Ok(Some(rec)) = read_json::<ContainerRecord>(&c.join("container.json")) else {
            continue;
        };
        if c.join("exit.json").exists() {
            continue;
        }
        let Ok(Some(started)) = read_json::<StartedRecord>(&c.join("started.json")) else {
            continue;
        };
        if process_alive(started.host_pid, started.start_ticks) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(started.host_pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let status = ExitStatus {
            exit_code: 137,
            signal: Some(Signal::KILL),
            oom_killed: false,
            started_at: started.started_at,
            finished_at: wall_now(),
            message: Some(crate::SUPERVISOR_LOST.into()),
            termination_message: crate::termination::message(
                rec.config.termination_message.as_ref(),
                &crate::termination::read_file(&c.join(supervisor::TERMINATION_FILE)),
                137,
                || crate::termination::log_tail(&rec.log_path),
            ),
        };
        if write_json(&c.join("exit.json"), &status, true).is_ok() {
            let _ = events.send(ExitEvent {
                sandbox_id: sandbox.to_string(),
                container_id: ContainerId(rec.id),
                container_name: rec.config.name,
                status,
            });
        }
    }
}

/// Marks a sandbox ID as being created until dropped.
struct CreatingGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for CreatingGuard<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.id);
    }
}

/// Removes the cgroup directories of a sandbox (its containers' first), killing what is left.
fn remove_sandbox_cgroups(dirs: &[CgDir]) {
    for d in dirs {
        if let Ok(rd) = std::fs::read_dir(&d.path) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    let child = CgDir {
                        path: e.path(),
                        ..d.clone()
                    };
                    cgroup::kill_all(std::slice::from_ref(&child));
                    cgroup::remove(std::slice::from_ref(&child));
                }
            }
        }
    }
    cgroup::kill_all(dirs);
    cgroup::remove(dirs);
}

impl ProcessRuntime {
    /// The cgroup directories of running container `id`, as its supervisor made them
    /// (supervisor.rs `create`); `InvalidState` (naming `operation`) when it is not running.
    fn running_container_cgroups(
        &self,
        id: &ContainerId,
        operation: &'static str,
    ) -> Result<Vec<CgDir>, RuntimeError> {
        let sid = self.sandbox_of(id)?;
        let dir = self.sandbox_dir(&sid);
        let sandbox: SandboxRecord = read_json(&dir.join("sandbox.json"))
            .map_err(|e| os("read sandbox record", e))?
            .ok_or_else(|| RuntimeError::SandboxNotFound { id: sid.clone() })?;
        let status = read_container(&dir.join("containers").join(&id.0), &sid)?
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.clone() })?;
        if !matches!(status.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::InvalidState {
                operation,
                id: id.0.clone(),
                state: status.state.name(),
            });
        }
        Ok(cgroup::needed(
            &sandbox.cgroups,
            &[&sandbox.config.resources, &status.config.resources],
        )
        .iter()
        .map(|d| d.child(&id.0))
        .collect())
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for ProcessRuntime {
    async fn create_sandbox(&self, config: SandboxConfig) -> Result<SandboxStatus, RuntimeError> {
        if !valid_name(&config.id) {
            return Err(RuntimeError::StartFailed {
                message: format!(
                    "invalid sandbox id {:?}: use 1-128 of [A-Za-z0-9._-], not starting with a dot",
                    config.id
                ),
            });
        }
        let id = config.id.clone();
        let dir = self.sandbox_dir(&id);
        let sock_len = dir.join("sock").as_os_str().len();
        if sock_len >= 108 {
            return Err(os(
                "create sandbox",
                format!(
                    "the control socket path would be {sock_len} bytes (limit 107): use a shorter state directory"
                ),
            ));
        }
        // Two concurrent creations of one ID: the second is refused (not raced on disk).
        if !lock(&self.inner.creating).insert(id.clone()) {
            return Err(RuntimeError::AlreadyExists {
                what: "sandbox",
                id,
            });
        }
        let _creating = CreatingGuard {
            set: &self.inner.creating,
            id: id.clone(),
        };
        if dir.join("sandbox.json").exists() {
            return Err(RuntimeError::AlreadyExists {
                what: "sandbox",
                id,
            });
        }
        lock(&self.inner.removed).remove(&id);
        let rec = SandboxRecord {
            config: config.clone(),
            created_at: wall_now(),
            cgroups: self
                .inner
                .cgroup_parents
                .iter()
                .map(|p| p.child(&id))
                .collect(),
            log_max_bytes: self.inner.config.log_max_bytes,
            namespaces: self.inner.namespaces,
        };
        // Spares hold pid and IPC namespaces of their own, with the kernel's sysctls.
        let spare = if config.network_namespace == self.inner.config.spare_network
            && !config.host_pid
            && !config.host_ipc
            && config.sysctls.is_empty()
        {
            lock(&self.inner.spares).pop()
        } else {
            None
        };
        let mut ready = false;
        if let Some(spare) = spare {
            // Claim: move its directory into place, give it the record, adopt + watch.
            let claimed = std::fs::rename(&spare, &dir)
                .map_err(|e| os("claim a spare supervisor", e))
                .and_then(|()| {
                    write_json(&dir.join("sandbox.json"), &rec, false)
                        .map_err(|e| os("write the sandbox record", e))
                });
            let result = match claimed {
                Ok(()) => self.start_watch(&id, Some(&dir)).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => ready = true,
                Err(e) => {
                    tracing::warn!(sandbox = %id, "a spare supervisor could not be used: {e}");
                    let (s, d) = (spare.clone(), dir.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        stop_spare_blocking(&s);
                        stop_spare_blocking(&d);
                    })
                    .await;
                }
            }
        }
        self.refill_spares(Duration::from_millis(20));
        if !ready {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("containers"))
                .map_err(|e| os("create the sandbox directory", e))?;
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711));
            }
            write_json(&dir.join("sandbox.json"), &rec, false)
                .map_err(|e| os("write the sandbox record", e))?;
            if let Err(e) = launch_supervisor(&self.inner.config, &dir).await {
                let _ = std::fs::remove_dir_all(&dir);
                remove_sandbox_cgroups(&rec.cgroups);
                return Err(e);
            }
            if let Err(e) = self.start_watch(&id, None).await {
                let _ = self.remove_sandbox(&id).await;
                return Err(e);
            }
        }
        let netns = self.netns(&id);
        if config.network_namespace && netns.is_none() {
            let _ = self.remove_sandbox(&id).await;
            return Err(os(
                "create sandbox",
                "no network namespace of its own: the runtime runs without namespaces",
            ));
        }
        Ok(SandboxStatus {
            config,
            state: SandboxState::Ready,
            created_at: rec.created_at,
            containers: Vec::new(),
            netns,
        })
    }

    async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.sandbox_dir(id);
        if !valid_name(id) || !dir.exists() {
            lock(&self.inner.removed).insert(id.to_string());
            return Ok(());
        }
        lock(&self.inner.removing).insert(id.to_string());
        let rec: Option<SandboxRecord> = read_json(&dir.join("sandbox.json")).ok().flatten();
        let sup: Option<SupervisorRecord> = read_json(&dir.join("supervisor.json")).ok().flatten();
        let shutdown = self
            .request(id, &Request::Shutdown, self.inner.config.request_timeout)
            .await;
        if shutdown.is_ok()
            && let Some(s) = &sup
        {
            // The supervisor answers, then exits: wait for it to be gone.
            for _ in 0..500 {
                if !process_alive(s.host_pid, s.start_ticks) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        } else if shutdown.is_err() {
            if let Some(s) = &sup
                && process_alive(s.host_pid, s.start_ticks)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(s.host_pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let events = self.inner.events.clone();
            let (d, sid) = (dir.clone(), id.to_string());
            let _ = tokio::task::spawn_blocking(move || supervisor_lost(&d, &sid, &events)).await;
        }
        // Let the watcher deliver the exits the shutdown produced.
        let watcher = lock(&self.inner.watchers).remove(id);
        if let Some(mut h) = watcher
            && tokio::time::timeout(Duration::from_secs(2), &mut h)
                .await
                .is_err()
        {
            h.abort();
        }
        if let Some(rec) = rec {
            let dirs = rec.cgroups.clone();
            let _ = tokio::task::spawn_blocking(move || remove_sandbox_cgroups(&dirs)).await;
        }
        // Move the directory out of the way first (atomically), so that nothing racing with
        // the removal (another runtime instance noticing the supervisor's end) writes into it.
        let tomb = self
            .inner
            .sandboxes
            .join(format!(".removed-{id}-{:016x}", util::random_u64()));
        let d = match std::fs::rename(&dir, &tomb) {
            Ok(()) => tomb,
            Err(_) => dir.clone(),
        };
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&d)).await;
        lock(&self.inner.index).retain(|_, s| s != id);
        lock(&self.inner.removed).insert(id.to_string());
        lock(&self.inner.removing).remove(id);
        match removed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Ok(Err(e)) => Err(os("remove the sandbox directory", e)),
            Err(e) => Err(os("remove the sandbox directory", e)),
        }
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> Result<ContainerId, RuntimeError> {
        if lock(&self.inner.removed).contains(sandbox_id) {
            return Err(RuntimeError::InvalidState {
                operation: "create a container in sandbox",
                id: sandbox_id.to_string(),
                state: "removed",
            });
        }
        if !valid_name(sandbox_id) || !self.sandbox_dir(sandbox_id).join("sandbox.json").exists() {
            return Err(RuntimeError::SandboxNotFound {
                id: sandbox_id.to_string(),
            });
        }
        let resp = self
            .call(
                sandbox_id,
                Request::Create {
                    config: Box::new(config),
                },
            )
            .await?;
        let id = ContainerId(
            resp.id
                .ok_or_else(|| os("create container", "the supervisor returned no id"))?,
        );
        lock(&self.inner.index).insert(id.clone(), sandbox_id.to_string());
        Ok(id)
    }

    async fn start_container(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let sid = self.sandbox_of(id)?;
        self.call(&sid, Request::Start { id: id.0.clone() }).await?;
        self.container_status(id).await
    }

    async fn signal(&self, id: &ContainerId, signal: Signal) -> Result<(), RuntimeError> {
        let sid = self.sandbox_of(id)?;
        match self
            .call(
                &sid,
                Request::Signal {
                    id: id.0.clone(),
                    signal: signal.0,
                },
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(RuntimeError::SupervisorUnreachable { .. })
                if self
                    .sandbox_dir(&sid)
                    .join("containers")
                    .join(&id.0)
                    .join("exit.json")
                    .exists() =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let sid = self.sandbox_of(id)?;
        let req = Request::Exec {
            id: id.0.clone(),
            command: command.to_vec(),
            timeout_ms: timeout.as_millis().min(u64::MAX as u128) as u64,
        };
        let resp = self
            .request(&sid, &req, timeout + self.inner.config.request_timeout)
            .await?;
        if let Some(e) = resp.error {
            return Err(from_wire(e, &sid));
        }
        resp.exec
            .ok_or_else(|| os("exec", "the supervisor returned no result"))
    }

    async fn exec_stream(
        &self,
        id: &ContainerId,
        request: crate::ExecStreamRequest,
    ) -> Result<crate::ExecSession, RuntimeError> {
        self.exec_stream_impl(id, request).await
    }

    async fn attach(&self, id: &ContainerId) -> Result<crate::AttachSession, RuntimeError> {
        self.attach_impl(id).await
    }

    async fn container_stats(
        &self,
        id: &ContainerId,
    ) -> Result<crate::ContainerStats, RuntimeError> {
        let dirs = self.running_container_cgroups(id, "read the stats of container")?;
        Ok(cgroup::usage(&dirs))
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: crate::Resources,
    ) -> Result<(), RuntimeError> {
        let dirs = self.running_container_cgroups(id, "update the resources of container")?;
        tokio::task::spawn_blocking(move || {
            let present: Vec<CgDir> = dirs.into_iter().filter(|d| d.path.is_dir()).collect();
            cgroup::apply(&present, &resources)
        })
        .await
        .map_err(|e| os("update container resources", e))?
        .map_err(|message| RuntimeError::Os {
            operation: "update container resources".to_string(),
            message,
        })
    }

    async fn update_sandbox_resources(
        &self,
        id: &str,
        resources: crate::Resources,
    ) -> Result<(), RuntimeError> {
        if !valid_name(id) {
            return Err(RuntimeError::SandboxNotFound { id: id.to_string() });
        }
        let file = self.sandbox_dir(id).join("sandbox.json");
        let sid = id.to_string();
        tokio::task::spawn_blocking(move || {
            let mut rec: SandboxRecord = read_json(&file)
                .map_err(|e| os("read sandbox record", e))?
                .ok_or(RuntimeError::SandboxNotFound { id: sid })?;
            // the controllers the sandbox's cgroup was made with
            let present: Vec<CgDir> = cgroup::needed(&rec.cgroups, &[&rec.config.resources])
                .into_iter()
                .filter(|d| d.path.is_dir())
                .collect();
            cgroup::apply(&present, &resources).map_err(|message| RuntimeError::Os {
                operation: "update sandbox resources".to_string(),
                message,
            })?;
            rec.config.resources = resources;
            write_json(&file, &rec, true).map_err(|e| os("write sandbox record", e))
        })
        .await
        .map_err(|e| os("update sandbox resources", e))?
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let sid = self.sandbox_of(id)?;
        let dir = self.sandbox_dir(&sid).join("containers").join(&id.0);
        read_container(&dir, &sid)?
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.clone() })
    }

    async fn list(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        let rd = std::fs::read_dir(&self.inner.sandboxes).map_err(|e| os("list sandboxes", e))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let Some(id) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !valid_name(&id) {
                continue;
            }
            match self.read_sandbox(&id) {
                Ok(s) => {
                    let mut index = lock(&self.inner.index);
                    for c in &s.containers {
                        index.insert(c.id.clone(), id.clone());
                    }
                    out.push(s);
                }
                Err(RuntimeError::SandboxNotFound { .. }) => {}
                Err(e) => tracing::warn!(sandbox = %id, "skipping sandbox: {e}"),
            }
        }
        out.sort_by(|a, b| a.config.id.cmp(&b.config.id));
        Ok(out)
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, RuntimeError> {
        if !valid_name(id) {
            return Err(RuntimeError::SandboxNotFound { id: id.to_string() });
        }
        self.read_sandbox(id)
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let Some(sid) = self.find(id) else {
            return Ok(());
        };
        let result = match self.call(&sid, Request::Remove { id: id.0.clone() }).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(RuntimeError::SupervisorUnreachable { .. })
                if self.supervisor_pid(&sid).is_none() =>
            {
                let dir = self.sandbox_dir(&sid).join("containers").join(&id.0);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(os("remove the container directory", e)),
                }
            }
            Err(e) => Err(e),
        };
        if result.is_ok() {
            lock(&self.inner.index).remove(id);
        }
        result
    }

    fn subscribe(&self) -> ExitEvents {
        self.inner.events.subscribe()
    }
}
