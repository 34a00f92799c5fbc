//! The per-sandbox supervisor: `podvisor supervise --dir <sandbox dir>` (entry point
//! [`supervisor_main`]), like containerd's shim or conmon.
//!
//! # Life
//!
//! 1. The client writes `sandbox.json` and runs the supervisor command; that **launcher**
//!    process closes every inherited fd above 2, starts a new session (`setsid`), and, when
//!    asked and permitted, unshares the pid (unless `host_pid`), ipc (unless `host_ipc`) and
//!    uts namespaces (hostname = the sandbox hostname), then writes the sandbox's sysctls
//!    in them (sandboxes that share the host's pid or IPC namespace or set sysctls never
//!    adopt a spare supervisor). A sysctl outside the sandbox's own namespaces fails the
//!    creation rather than change the node.
//! 2. It forks the **supervisor proper** (PID 1 of the new pid namespace, or a plain orphan
//!    without namespaces) and waits until it reports ready (socket bound, `supervisor.json`
//!    written) over a pipe, then exits: the supervisor is not the client's child, lives in its
//!    own session, and survives the client's death.
//! 3. The supervisor is the child subreaper (and, with namespaces, the init) of everything in
//!    the sandbox: it reaps every process, so there are never zombies. It serves the control
//!    socket ([`super::proto`]) in a single-threaded poll loop (no async runtime), writes the
//!    containers' logs, and records each exit atomically in `containers/<id>/exit.json`
//!    before announcing it to the watchers.
//! 4. On `shutdown` it kills everything, waits until the cgroups are empty, removes them and
//!    exits (as PID 1 of the namespace its exit also kills anything left in it).
//!
//! # Containers
//!
//! `Created → Running → Stopping → Exited`. When the main process exits, the rest of the
//! container (its cgroup, or its process group without cgroups) is killed, and the exit is
//! recorded once the container is empty (at most 2 s later), so an exit event means zero
//! processes remain.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal as NixSignal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::cgroup::{self, CgDir};
use super::logs::{LogFile, LogStream};
use super::proto::{
    ContainerRecord, ErrorKind, Request, Response, SandboxRecord, StartedRecord, SupervisorRecord,
    WireError,
};
use super::rootfs::{self, RootPlan};
use super::spawn::{self, MountNs, MountSpec, SpawnSpec, Stage};
use super::util::{
    mono_now, read_json, rfc3339_nano, start_ticks, valid_name, wall_now, write_json,
};
use crate::{ContainerConfig, ContainerId, ExecResult, ExitEvent, ExitStatus, Mount, Signal};

/// The name of a container instance's termination-message file in its directory.
pub(crate) const TERMINATION_FILE: &str = "termination-log";

/// An exec joins its container's mount namespace: no root steps of its own (only the
/// executable lookup words its errors as in the container's root).
static EXEC_PLAN: RootPlan = RootPlan {
    ops: Vec::new(),
    what: Vec::new(),
};

/// The PATH used when a container's environment has none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Exec output is capped at this many bytes.
pub(crate) const EXEC_OUTPUT_CAP: usize = 10 * 1024;
/// How long a stopping container may take to empty before its exit is recorded anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How long `shutdown` waits for the containers to empty.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// The supervisor's entry point: `args` are what follows `podvisor supervise`, i.e.
/// `--dir <sandbox dir>`. Returns the process exit code (0: the supervisor is up and running
/// detached; non-zero: it failed, with the reason on stderr). Must be called before any
/// thread is started (the podvisor binary calls it before building its tokio runtime).
pub fn supervisor_main(args: Vec<String>) -> i32 {
    let mut dir = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = it.next().map(PathBuf::from),
            other => {
                eprintln!("podvisor supervise: unknown argument {other:?}");
                return 2;
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: podvisor supervise --dir <sandbox dir>");
        return 2;
    };
    spawn::close_extra_fds();
    match launch(&dir) {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("podvisor supervise: {msg}");
            1
        }
    }
}

fn launch(dir: &Path) -> Result<(), String> {
    let rec: SandboxRecord = read_json(&dir.join("sandbox.json"))
        .map_err(|e| format!("read sandbox record: {e}"))?
        .ok_or_else(|| format!("no sandbox record in {}", dir.display()))?;
    let _ = nix::unistd::setsid();
    let mut namespaces = false;
    let mut network = false;
    let mut note = None;
    if rec.namespaces {
        use nix::sched::CloneFlags;
        let mut flags = CloneFlags::CLONE_NEWUTS;
        if !rec.config.host_pid {
            flags |= CloneFlags::CLONE_NEWPID;
        }
        if !rec.config.host_ipc {
            flags |= CloneFlags::CLONE_NEWIPC;
        }
        if rec.config.network_namespace {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        match nix::sched::unshare(flags) {
            Ok(()) => {
                namespaces = true;
                if rec.config.network_namespace {
                    super::netns::loopback_up().map_err(|e| format!("bring lo up: {e}"))?;
                    network = true;
                }
                if !rec.config.hostname.is_empty() {
                    nix::unistd::sethostname(&rec.config.hostname)
                        .map_err(|e| format!("sethostname {:?}: {e}", rec.config.hostname))?;
                }
                apply_sysctls(&rec.config)?;
            }
            Err(e) => {
                note = Some(format!(
                    "pid/ipc/uts namespaces unavailable ({e}); the sandbox shares the host's"
                ))
            }
        }
    }
    if !namespaces && !rec.config.sysctls.is_empty() {
        // Written in the host's namespaces they would change the node.
        return Err("sysctls need the sandbox's own namespaces, which are unavailable".into());
    }
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    match spawn::fork_supervisor() {
        Ok(0) => {
            drop(rd);
            let code = run(dir, rec, wr, (namespaces, network), note);
            std::process::exit(code);
        }
        Ok(_) => {}
        Err(e) => return Err(format!("fork: {e}")),
    }
    drop(wr);
    let mut text = String::new();
    let _ = File::from(rd).read_to_string(&mut text);
    if text.starts_with("OK") {
        Ok(())
    } else if text.is_empty() {
        Err("the supervisor died during setup".into())
    } else {
        Err(text.trim_start_matches("ERR ").trim().to_string())
    }
}

/// The `/proc/sys` path of a sysctl: `.` separates, `/` stands for a `.` inside a segment
/// (`net.ipv4.conf.eth0/1.forwarding`); a name whose first separator is `/` uses `/` as the
/// separator already.
fn sysctl_path(name: &str) -> PathBuf {
    let slash_first = name
        .find(['.', '/'])
        .is_some_and(|i| name.as_bytes()[i] == b'/');
    let rel: String = if slash_first {
        name.to_string()
    } else {
        name.chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect()
    };
    Path::new("/proc/sys").join(rel)
}

/// Which of the sandbox's own namespaces a sysctl lives in, if it is namespaced.
fn sysctl_namespace(path: &Path) -> Option<&'static str> {
    let rel = path.strip_prefix("/proc/sys").ok()?.to_str()?;
    let ipc = [
        "kernel/sem",
        "kernel/shmall",
        "kernel/shmmax",
        "kernel/shmmni",
    ]
    .contains(&rel)
        || ["kernel/shm", "kernel/msg", "fs/mqueue/"]
            .iter()
            .any(|p| rel.starts_with(p));
    if ipc {
        Some("ipc")
    } else if rel.starts_with("net/") {
        Some("net")
    } else {
        None
    }
}

/// Writes the sandbox's sysctls; called in the supervisor, which is in the sandbox's
/// namespaces (a `/proc/sys` write applies to the writer's network and IPC namespaces).
fn apply_sysctls(config: &crate::SandboxConfig) -> Result<(), String> {
    for (name, value) in &config.sysctls {
        let path = sysctl_path(name);
        let own = match sysctl_namespace(&path) {
            Some("net") => config.network_namespace,
            Some(_) => !config.host_ipc,
            None => false,
        };
        if !own
            || path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(format!(
                "sysctl {name:?} is not in a namespace of the sandbox's own"
            ));
        }
        std::fs::write(&path, value.as_bytes())
            .map_err(|e| format!("write sysctl {name:?}={value:?}: {e}"))?;
    }
    Ok(())
}

fn log(msg: &str) {
    eprintln!("{} {msg}", rfc3339_nano(wall_now()));
}

fn own_host_pid() -> u32 {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(std::process::id)
}

fn run(
    dir: &Path,
    rec: SandboxRecord,
    ready: OwnedFd,
    (namespaces, network): (bool, bool),
    note: Option<String>,
) -> i32 {
    let mut ready = File::from(ready);
    let fail = |ready: &mut File, msg: String| {
        let _ = ready.write_all(format!("ERR {msg}").as_bytes());
        1
    };
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let _ = std::env::set_current_dir("/");
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("supervisor.log"))
    {
        Ok(f) => {
            let _ = nix::unistd::dup2_stdout(&f);
            let _ = nix::unistd::dup2_stderr(&f);
        }
        Err(e) => return fail(&mut ready, format!("open supervisor.log: {e}")),
    }
    let devnull = match File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => return fail(&mut ready, format!("open /dev/null: {e}")),
    };
    let _ = nix::unistd::dup2_stdin(&devnull);
    if let Some(n) = &note {
        log(n);
    }
    spawn::handle_signals_noop(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);
    let mut set = SigSet::empty();
    for s in [
        NixSignal::SIGCHLD,
        NixSignal::SIGTERM,
        NixSignal::SIGINT,
        NixSignal::SIGHUP,
    ] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        return fail(&mut ready, format!("block signals: {e}"));
    }
    let sigfd = match SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => return fail(&mut ready, format!("signalfd: {e}")),
    };
    let (sandbox_cg, errors) =
        cgroup::create(&cgroup::needed(&rec.cgroups, &[&rec.config.resources]));
    for e in errors {
        log(&format!("sandbox cgroup unavailable: {e}"));
    }
    if let Err(e) = cgroup::apply(&sandbox_cg, &rec.config.resources) {
        return fail(&mut ready, format!("sandbox limits: {e}"));
    }
    let sock = dir.join("sock");
    let _ = std::fs::remove_file(&sock);
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => return fail(&mut ready, format!("bind {}: {e}", sock.display())),
    };
    let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600));
    if let Err(e) = listener.set_nonblocking(true) {
        return fail(&mut ready, format!("listener: {e}"));
    }
    let host_pid = own_host_pid();
    let record = SupervisorRecord {
        host_pid,
        start_ticks: start_ticks(host_pid).unwrap_or(0),
        namespaces,
        network,
    };
    if let Err(e) = write_json(&dir.join("supervisor.json"), &record, false) {
        return fail(&mut ready, format!("write supervisor.json: {e}"));
    }
    let _ = ready.write_all(b"OK");
    drop(ready);
    log(&format!(
        "supervising sandbox {} (pid {host_pid}, namespaces: {namespaces})",
        rec.config.id
    ));
    let mut sup = Sup {
        dir: dir.to_path_buf(),
        rec,
        namespaces,
        host_pid,
        listener,
        sigfd,
        conns: Vec::new(),
        ctrs: BTreeMap::new(),
        execs: Vec::new(),
        attempts: HashMap::new(),
        shutdown: None,
        devnull,
        mount_ns: nix::unistd::geteuid().is_root(),
    };
    sup.run_loop()
}

struct Conn {
    stream: UnixStream,
    rbuf: Vec<u8>,
    /// Descriptors received with the bytes in `rbuf` (SCM_RIGHTS), for `exec_stream`.
    fds: Vec<OwnedFd>,
    wbuf: Vec<u8>,
    watching: bool,
    pending: bool,
    eof: bool,
}

enum CState {
    Created,
    Running {
        pid: i32,
        started_at: SystemTime,
    },
    Stopping {
        pid: i32,
        status: ExitStatus,
        deadline: Instant,
    },
    Exited,
}

impl CState {
    fn name(&self) -> &'static str {
        match self {
            CState::Created => "created",
            CState::Running { .. } => "running",
            CState::Stopping { .. } => "stopping",
            CState::Exited => "exited",
        }
    }
}

struct Ctr {
    rec: ContainerRecord,
    dir: PathBuf,
    cg: Vec<CgDir>,
    log: Option<LogFile>,
    out: Option<LogStream>,
    err: Option<LogStream>,
    state: CState,
    oom_base: u64,
    /// The main process's host PID while it runs in a private mount namespace (execs join
    /// that namespace through `/proc/<pid>/ns/mnt`).
    mnt_ns_pid: Option<u32>,
    /// Our end of the running container's stdin (`stdin: true`): the pipe's write end, or
    /// the terminal's primary side; handed to attaching clients (see [`crate::Stdio`]).
    stdin: Option<OwnedFd>,
}

struct ExecSession {
    conn: usize,
    pid: i32,
    out: Option<OwnedFd>,
    buf: Vec<u8>,
    /// None: a streaming exec, which runs until it exits or its connection closes.
    deadline: Option<Instant>,
    timed_out: bool,
    code: Option<i32>,
}

#[derive(Clone, Debug)]
enum Tag {
    Sig,
    Listen,
    Conn(usize),
    Log(String, bool),
    Exec(i32),
}

struct Sup {
    dir: PathBuf,
    rec: SandboxRecord,
    namespaces: bool,
    host_pid: u32,
    listener: UnixListener,
    sigfd: SignalFd,
    conns: Vec<Option<Conn>>,
    ctrs: BTreeMap<String, Ctr>,
    execs: Vec<ExecSession>,
    attempts: HashMap<String, u32>,
    shutdown: Option<(usize, Instant)>,
    devnull: File,
    /// Whether containers get private mount namespaces (the supervisor runs as root).
    mount_ns: bool,
}

fn set_nonblocking(fd: &OwnedFd) {
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}

fn cstring(s: &str, what: &str) -> Result<CString, WireError> {
    CString::new(s).map_err(|_| {
        WireError::new(
            ErrorKind::StartFailed,
            format!("{what} contains a NUL byte: {s:?}"),
        )
    })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds the executable like `execvp` (and Go's `exec.LookPath`) would, with the container's
/// PATH, and words failures the way container runtimes do.
/// `mounts` are the container's bind mounts: a path below a mount target is looked up at its
/// source (the lookup runs in the supervisor, outside the container's mount namespace).
pub(crate) fn resolve(
    argv0: &str,
    env: &[(String, String)],
    cwd: &Path,
    mounts: &[Mount],
) -> Result<PathBuf, String> {
    if argv0.contains('/') {
        let p = if Path::new(argv0).is_absolute() {
            PathBuf::from(argv0)
        } else {
            cwd.join(argv0)
        };
        return if host_view(&p, mounts).exists() {
            Ok(p)
        } else {
            Err(format!(
                "exec: \"{argv0}\": stat {argv0}: no such file or directory"
            ))
        };
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    for d in path.split(':') {
        let d = if d.is_empty() {
            Path::new(".")
        } else {
            Path::new(d)
        };
        let p = if d.is_absolute() {
            d.join(argv0)
        } else {
            cwd.join(d).join(argv0)
        };
        if is_executable(&host_view(&p, mounts)) {
            return Ok(p);
        }
    }
    Err(format!(
        "exec: \"{argv0}\": executable file not found in $PATH"
    ))
}

/// Where the host has what the container sees at `p`: below the last mount whose target
/// contains it, at that mount's source.
fn host_view(p: &Path, mounts: &[Mount]) -> PathBuf {
    for m in mounts.iter().rev() {
        if let Ok(rest) = p.strip_prefix(&m.target) {
            return if rest.as_os_str().is_empty() {
                m.source.clone()
            } else {
                m.source.join(rest)
            };
        }
    }
    p.to_path_buf()
}

/// Creates the mount point `target` (and its parents) on the host if it is missing: a
/// directory or an empty file, like `source`.
fn ensure_mount_point(source: &Path, target: &Path) -> Result<(), String> {
    if !target.is_absolute() {
        return Err(format!(
            "mount target {:?} is not an absolute path",
            target.display().to_string()
        ));
    }
    let meta = std::fs::metadata(source).map_err(|e| {
        format!(
            "mount source {:?}: {}",
            source.display().to_string(),
            io_desc(&e)
        )
    })?;
    match std::fs::symlink_metadata(target) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "mount point {:?}: {}",
                target.display().to_string(),
                io_desc(&e)
            ));
        }
    }
    let made = (|| {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if meta.is_dir() {
            match std::fs::create_dir(target) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                r => r,
            }
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(target)
                .map(drop)
        }
    })();
    made.map_err(|e| {
        format!(
            "create mount point {:?}: {}",
            target.display().to_string(),
            io_desc(&e)
        )
    })
}

/// An io::Error's text without Rust's "(os error N)" suffix, lower-case like runtimes word it.
fn io_desc(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

fn exit_of(status: WaitStatus) -> Option<(i32, i32, Option<i32>)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code, None)),
        WaitStatus::Signaled(pid, sig, _) => {
            Some((pid.as_raw(), 128 + sig as i32, Some(sig as i32)))
        }
        _ => None,
    }
}

impl Sup {
    fn run_loop(&mut self) -> i32 {
        loop {
            if let Some(code) = self.maybe_finish_shutdown() {
                return code;
            }
            if self.spare_orphaned() {
                log("spare supervisor: its runtime is gone; exiting");
                let _ = std::fs::remove_dir_all(&self.dir);
                return 0;
            }
            let mut ready: Vec<(Tag, PollFlags)> = Vec::new();
            {
                let mut fds: Vec<PollFd<'_>> = Vec::new();
                let mut tags: Vec<Tag> = Vec::new();
                fds.push(PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN));
                tags.push(Tag::Sig);
                if self.shutdown.is_none() {
                    fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
                    tags.push(Tag::Listen);
                }
                for (i, c) in self.conns.iter().enumerate() {
                    let Some(c) = c else { continue };
                    let mut ev = PollFlags::empty();
                    if !c.eof {
                        ev |= PollFlags::POLLIN;
                    }
                    if !c.wbuf.is_empty() {
                        ev |= PollFlags::POLLOUT;
                    }
                    if !ev.is_empty() {
                        fds.push(PollFd::new(c.stream.as_fd(), ev));
                        tags.push(Tag::Conn(i));
                    }
                }
                for (id, c) in &self.ctrs {
                    for (s, is_err) in [(&c.out, false), (&c.err, true)] {
                        if let Some(s) = s {
                            fds.push(PollFd::new(s.fd.as_fd(), PollFlags::POLLIN));
                            tags.push(Tag::Log(id.clone(), is_err));
                        }
                    }
                }
                for e in &self.execs {
                    if let Some(fd) = &e.out {
                        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                        tags.push(Tag::Exec(e.pid));
                    }
                }
                let timeout = self.next_timeout();
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        log(&format!("poll: {e}"));
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                for (p, t) in fds.iter().zip(tags) {
                    if let Some(r) = p.revents()
                        && !r.is_empty()
                    {
                        ready.push((t, r));
                    }
                }
            }
            for (tag, flags) in ready {
                match tag {
                    Tag::Sig => {
                        let mut stop = false;
                        while let Ok(Some(info)) = self.sigfd.read_signal() {
                            stop |= info.ssi_signo != NixSignal::SIGCHLD as u32;
                        }
                        // A sandbox's supervisor outlives its agent and ignores the signals
                        // meant for it; a spare holds no pod, so it ends like any daemon.
                        if stop && self.rec.config.id.is_empty() && self.shutdown.is_none() {
                            log("spare supervisor: stop signal; exiting");
                            let _ = std::fs::remove_dir_all(&self.dir);
                            return 0;
                        }
                        self.reap();
                    }
                    Tag::Listen => self.accept(),
                    Tag::Conn(i) => {
                        if flags.intersects(PollFlags::POLLOUT) {
                            self.flush(i);
                        }
                        if flags
                            .intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                        {
                            self.read_conn(i);
                        }
                    }
                    Tag::Log(id, is_err) => self.pump_log(&id, is_err),
                    Tag::Exec(pid) => self.read_exec(pid),
                }
            }
            // A SIGCHLD may be coalesced with others or arrive while we were busy: reap anyway.
            self.reap();
            self.check_stopping();
            self.check_execs();
            self.close_finished_conns();
        }
    }

    fn next_timeout(&self) -> PollTimeout {
        let now = mono_now();
        let mut next: Option<Duration> = None;
        let mut consider = |d: Duration| next = Some(next.map_or(d, |n| n.min(d)));
        for e in &self.execs {
            if e.code.is_none()
                && !e.timed_out
                && let Some(deadline) = e.deadline
            {
                consider(deadline.saturating_duration_since(now));
            }
        }
        for c in self.ctrs.values() {
            if matches!(c.state, CState::Stopping { .. }) {
                consider(Duration::from_millis(5));
            }
        }
        if self.rec.config.id.is_empty() {
            // A spare checks now and then that its runtime instance still exists.
            consider(Duration::from_secs(1));
        }
        if let Some((_, deadline)) = self.shutdown {
            consider(
                deadline
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(20)),
            );
        }
        match next {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(
                d.as_millis().clamp(0, 60_000) as i32 + i32::from(d.subsec_micros() % 1000 != 0),
            )
            .unwrap_or(PollTimeout::NONE),
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let conn = Conn {
                        stream,
                        rbuf: Vec::new(),
                        fds: Vec::new(),
                        wbuf: Vec::new(),
                        watching: false,
                        pending: false,
                        eof: false,
                    };
                    match self.conns.iter().position(Option::is_none) {
                        Some(i) => self.conns[i] = Some(conn),
                        None => self.conns.push(Some(conn)),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    fn read_conn(&mut self, i: usize) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match super::stream::recv_with_fds(&c.stream, &mut chunk, &mut c.fds) {
                Ok(0) => {
                    c.eof = true;
                    break;
                }
                Ok(n) => c.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.eof = true;
                    break;
                }
            }
        }
        if c.rbuf.len() > 1 << 20 || c.fds.len() > 64 {
            self.conns[i] = None;
            return;
        }
        self.process_lines(i);
    }

    fn process_lines(&mut self, i: usize) {
        loop {
            let Some(Some(c)) = self.conns.get_mut(i) else {
                return;
            };
            if c.pending {
                return;
            }
            let Some(pos) = c.rbuf.iter().position(|&b| b == b'\n') else {
                return;
            };
            let line: Vec<u8> = c.rbuf.drain(..=pos).collect();
            let reply = match serde_json::from_slice::<Request>(&line[..pos]) {
                Ok(req) => self.handle(i, req),
                Err(e) => Some(Response {
                    error: Some(WireError::new(ErrorKind::Os, format!("bad request: {e}"))),
                    ..Default::default()
                }),
            };
            if let Some(r) = reply {
                self.send(i, &r);
            }
        }
    }

    fn send(&mut self, i: usize, r: &Response) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        if let Ok(mut bytes) = serde_json::to_vec(r) {
            bytes.push(b'\n');
            c.wbuf.extend_from_slice(&bytes);
        }
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        while !c.wbuf.is_empty() {
            match c.stream.write(&c.wbuf) {
                Ok(0) => break,
                Ok(n) => {
                    c.wbuf.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.conns[i] = None;
                    return;
                }
            }
        }
    }

    fn close_finished_conns(&mut self) {
        for slot in &mut self.conns {
            if let Some(c) = slot
                && c.eof
                && !c.pending
                && c.wbuf.is_empty()
            {
                *slot = None;
            }
        }
    }

    fn handle(&mut self, conn: usize, req: Request) -> Option<Response> {
        let ok = Response::default();
        let err = |e: WireError| {
            Some(Response {
                error: Some(e),
                ..Default::default()
            })
        };
        if self.shutdown.is_some() && !matches!(req, Request::Ping | Request::Shutdown) {
            return err(WireError::invalid_state(
                "use",
                &self.rec.config.id,
                "not ready",
            ));
        }
        if self.rec.config.id.is_empty()
            && !matches!(
                req,
                Request::Ping | Request::Watch | Request::Adopt { .. } | Request::Shutdown
            )
        {
            return err(WireError::invalid_state(
                "use",
                "spare supervisor",
                "not adopted",
            ));
        }
        match req {
            Request::Ping => Some(ok),
            Request::Watch => {
                if let Some(Some(c)) = self.conns.get_mut(conn) {
                    c.watching = true;
                }
                Some(ok)
            }
            Request::Create { config } => match self.create(*config) {
                Ok(id) => Some(Response {
                    id: Some(id),
                    ..Default::default()
                }),
                Err(e) => err(e),
            },
            Request::Start { id } => match self.start(&id) {
                Ok(()) => Some(ok),
                Err(e) => err(e),
            },
            Request::Signal { id, signal } => match self.signal(&id, signal) {
                Ok(()) => Some(ok),
                Err(e) => err(e),
            },
            Request::Exec {
                id,
                command,
                timeout_ms,
            } => match self.exec(conn, &id, &command, timeout_ms) {
                Ok(()) => {
                    if let Some(Some(c)) = self.conns.get_mut(conn) {
                        c.pending = true;
                    }
                    None
                }
                Err(e) => err(e),
            },
            Request::ExecStream { id, command, tty } => {
                let fds = self
                    .conns
                    .get_mut(conn)
                    .and_then(Option::as_mut)
                    .map(|c| std::mem::take(&mut c.fds))
                    .unwrap_or_default();
                match self.exec_stream(conn, &id, &command, tty, fds) {
                    Ok(()) => {
                        if let Some(Some(c)) = self.conns.get_mut(conn) {
                            c.pending = true;
                        }
                        Some(ok)
                    }
                    Err(e) => err(e),
                }
            }
            Request::Attach { id } => {
                self.attach(conn, &id);
                None
            }
            Request::Remove { id } => match self.remove(&id) {
                Ok(()) => Some(ok),
                Err(e) => err(e),
            },
            Request::Adopt { dir } => match self.adopt(dir) {
                Ok(()) => Some(ok),
                Err(e) => err(e),
            },
            Request::Shutdown => {
                self.begin_shutdown(conn);
                None
            }
        }
    }

    fn create(&mut self, config: ContainerConfig) -> Result<String, WireError> {
        if !valid_name(&config.name) {
            return Err(WireError::new(
                ErrorKind::StartFailed,
                format!(
                    "invalid container name {:?}: use 1-128 of [A-Za-z0-9._-], not starting with a dot",
                    config.name
                ),
            ));
        }
        if config.command.is_empty() && config.args.is_empty() {
            return Err(WireError::new(
                ErrorKind::StartFailed,
                format!(
                    "container {:?}: no command specified (command and args are both empty)",
                    config.name
                ),
            ));
        }
        if self
            .ctrs
            .values()
            .any(|c| c.rec.config.name == config.name && !matches!(c.state, CState::Exited))
        {
            return Err(WireError {
                kind: ErrorKind::AlreadyExists,
                message: config.name,
                operation: "container".into(),
                state: String::new(),
            });
        }
        let attempt = *self
            .attempts
            .entry(config.name.clone())
            .and_modify(|a| *a += 1)
            .or_insert(0);
        let id = format!(
            "{}-{}-{:012x}",
            config.name,
            attempt,
            super::util::random_u64() & 0xffff_ffff_ffff
        );
        let dir = self.dir.join("containers").join(&id);
        let os =
            |what: &str, e: std::io::Error| WireError::new(ErrorKind::Os, format!("{what}: {e}"));
        std::fs::create_dir_all(&dir).map_err(|e| os("create container directory", e))?;
        if config.termination_message.is_some() {
            // Per instance, empty, writable by any user the container runs as.
            let file = dir.join(TERMINATION_FILE);
            std::fs::File::create(&file)
                .and_then(|_| {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))
                })
                .map_err(|e| os("create the termination-message file", e))?;
        }
        let log_path = self
            .dir
            .join("logs")
            .join(&config.name)
            .join(format!("{attempt}.log"));
        let wanted: Vec<CgDir> = cgroup::needed(
            &self.rec.cgroups,
            &[&self.rec.config.resources, &config.resources],
        )
        .iter()
        .map(|d| d.child(&id))
        .collect();
        let (cg, errors) = cgroup::create(&wanted);
        for e in errors {
            log(&format!("container cgroup unavailable: {e}"));
        }
        if let Err(e) = cgroup::apply(&cg, &config.resources) {
            cgroup::remove(&cg);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(WireError::new(
                ErrorKind::StartFailed,
                format!("apply resource limits: {e}"),
            ));
        }
        let rec = ContainerRecord {
            id: id.clone(),
            sandbox_id: self.rec.config.id.clone(),
            config,
            log_path,
            attempt,
            created_at: wall_now(),
        };
        write_json(&dir.join("container.json"), &rec, false)
            .map_err(|e| os("write container record", e))?;
        self.ctrs.insert(
            id.clone(),
            Ctr {
                rec,
                dir,
                cg,
                log: None,
                out: None,
                err: None,
                state: CState::Created,
                oom_base: 0,
                mnt_ns_pid: None,
                stdin: None,
            },
        );
        Ok(id)
    }

    fn container_env(&self, config: &ContainerConfig) -> Vec<(String, String)> {
        let mut env = config.env.clone();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
        }
        if !env.iter().any(|(k, _)| k == "HOSTNAME") && !self.rec.config.hostname.is_empty() {
            env.insert(1, ("HOSTNAME".into(), self.rec.config.hostname.clone()));
        }
        env
    }

    fn cwd_of(&self, config: &ContainerConfig) -> PathBuf {
        match (&config.working_dir, &config.rootfs) {
            (Some(w), _) => w.clone(),
            (None, Some(_)) => PathBuf::from("/"),
            (None, None) => self.dir.clone(),
        }
    }

    /// Prepares path/alternative paths/argv/env/cwd C strings. With a root filesystem the
    /// `$PATH` lookup happens in the child after the root switch (the candidates in order).
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        argv: &[String],
        config: &ContainerConfig,
        mounts: &[Mount],
    ) -> Result<(CString, Vec<CString>, Vec<CString>, Vec<CString>, CString), WireError> {
        let env = self.container_env(config);
        let cwd = self.cwd_of(config);
        let (path, alt) = if config.rootfs.is_some() {
            let path_var = env
                .iter()
                .rev()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.as_str())
                .unwrap_or(DEFAULT_PATH);
            let mut all = rootfs::candidates(&argv[0], path_var, &cwd)
                .into_iter()
                .map(|p| cstring(&p.to_string_lossy(), "the executable path"))
                .collect::<Result<Vec<_>, _>>()?;
            if all.is_empty() {
                return Err(WireError::new(
                    ErrorKind::StartFailed,
                    format!("exec: \"{}\": executable file not found in $PATH", argv[0]),
                ));
            }
            let first = all.remove(0);
            (first, all)
        } else {
            let path = resolve(&argv[0], &env, &cwd, mounts)
                .map_err(|m| WireError::new(ErrorKind::StartFailed, m))?;
            (
                cstring(&path.to_string_lossy(), "the executable path")?,
                Vec::new(),
            )
        };
        let argv = argv
            .iter()
            .map(|a| cstring(a, "an argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| cstring(&format!("{k}={v}"), "an environment variable"))
            .collect::<Result<Vec<_>, _>>()?;
        let cwd = cstring(&cwd.to_string_lossy(), "the working directory")?;
        Ok((path, alt, argv, envp, cwd))
    }

    /// The mounts of a container instance: its own, then its termination-message file.
    fn mounts_of(config: &ContainerConfig, dir: &Path) -> Vec<Mount> {
        let mut mounts = config.mounts.clone();
        if let Some(t) = &config.termination_message {
            mounts.push(Mount {
                source: dir.join(TERMINATION_FILE),
                target: t.path.clone(),
                read_only: false,
            });
        }
        mounts
    }

    /// The mount namespace plan of a container start: None without a private mount
    /// namespace (not root: mounts are then refused, the termination-message file is not
    /// mounted). Creates missing mount points on the host.
    fn mount_plan(
        &self,
        config: &ContainerConfig,
        mounts: &[Mount],
    ) -> Result<Option<Vec<MountSpec>>, String> {
        let read_only_root = config.security.read_only_root_filesystem;
        if !self.mount_ns {
            if read_only_root {
                return Err(
                    "readOnlyRootFilesystem needs a private mount namespace, which needs the runtime to run as root"
                        .into(),
                );
            }
            if config.mounts.is_empty() {
                return Ok(None);
            }
            return Err(
                "volume mounts need a private mount namespace, which needs the runtime to run as root"
                    .into(),
            );
        }
        let mut plan = Vec::with_capacity(mounts.len());
        for m in mounts {
            ensure_mount_point(&m.source, &m.target)?;
            let c = |p: &Path| {
                CString::new(p.as_os_str().as_encoded_bytes())
                    .map_err(|_| format!("mount path contains a NUL byte: {:?}", p.display()))
            };
            plan.push(MountSpec {
                source: c(&m.source)?,
                target: c(&m.target)?,
                read_only: m.read_only,
                remount_only: false,
            });
        }
        if read_only_root {
            // The root mount itself, read-only in this namespace only (the volumes above are
            // mounts of their own and stay as they are).
            plan.push(MountSpec {
                source: CString::default(),
                target: CString::from(c"/"),
                read_only: true,
                remount_only: true,
            });
        }
        Ok(Some(plan))
    }

    fn start_error(
        argv0: &str,
        cwd: &Path,
        e: &spawn::SpawnError,
        mounts: &[Mount],
        root: Option<&RootPlan>,
    ) -> String {
        let desc = e.errno.desc().to_lowercase();
        if let Some(plan) = root {
            match e.stage {
                Stage::Mount => {
                    return match e.mount.checked_sub(1).and_then(|i| plan.what.get(i)) {
                        Some(w) => format!("{w}: {desc}"),
                        None => format!("cannot set up the container's mount namespace: {desc}"),
                    };
                }
                Stage::Exec if e.errno == Errno::ENOENT || e.errno == Errno::ENOTDIR => {
                    return if argv0.contains('/') {
                        format!("exec: \"{argv0}\": stat {argv0}: no such file or directory")
                    } else {
                        format!("exec: \"{argv0}\": executable file not found in $PATH")
                    };
                }
                _ => {}
            }
        }
        match e.stage {
            Stage::Mount => match e.mount.checked_sub(1).and_then(|i| mounts.get(i)) {
                Some(m) => format!(
                    "error mounting {:?} to {:?}{}: {desc}",
                    m.source.display().to_string(),
                    m.target.display().to_string(),
                    if m.read_only { " (read-only)" } else { "" }
                ),
                None => format!("cannot set up the container's mount namespace: {desc}"),
            },
            Stage::Exec => format!("exec: \"{argv0}\": {desc}"),
            Stage::Chdir => format!(
                "chdir to cwd ({:?}) set in the container config failed: {desc}",
                cwd.display().to_string()
            ),
            Stage::Credentials => format!("cannot set the container's user or group: {desc}"),
            Stage::Security => format!(
                "cannot apply the container's {}: {desc}",
                match e.mount {
                    spawn::SECURITY_NO_NEW_PRIVS => "no_new_privs",
                    spawn::SECURITY_BOUNDING => "capability bounding set",
                    spawn::SECURITY_SECCOMP => "seccomp profile",
                    spawn::SECURITY_AMBIENT => "ambient capabilities",
                    _ => "capabilities",
                }
            ),
            Stage::Cgroup => format!("cannot join the container's cgroup: {desc}"),
            Stage::Stdio => format!("cannot set up the container's stdio: {desc}"),
            Stage::ProcessGroup => format!("cannot create the container's process group: {desc}"),
            Stage::Fork => format!("fork: {desc}"),
        }
    }

    fn start(&mut self, id: &str) -> Result<(), WireError> {
        let Some(c) = self.ctrs.get(id) else {
            return Err(WireError::new(ErrorKind::NotFound, id));
        };
        if !matches!(c.state, CState::Created) {
            return Err(WireError::invalid_state(
                "start container",
                id,
                c.state.name(),
            ));
        }
        let config = c.rec.config.clone();
        let dir = c.dir.clone();
        let mounts = Self::mounts_of(&config, &dir);
        let argv: Vec<String> = config
            .command
            .iter()
            .chain(config.args.iter())
            .cloned()
            .collect();
        let cwd = self.cwd_of(&config);
        let prepared = self.prepare(&argv, &config, &mounts);
        let (path, alt, cargv, envp, ccwd) = match prepared {
            Ok(p) => p,
            Err(e) => return Err(self.fail_start(id, e.message)),
        };
        let root = match &config.rootfs {
            None => None,
            Some(_) if !self.mount_ns => {
                return Err(self.fail_start(
                    id,
                    "a container image needs a private mount namespace, which needs the runtime to run as root".into(),
                ));
            }
            Some(r) => match rootfs::plan(r, &dir, &mounts, &cwd, &config.security) {
                Ok(p) => Some(p),
                Err(m) => return Err(self.fail_start(id, m)),
            },
        };
        let plan = if root.is_some() {
            None
        } else {
            match self.mount_plan(&config, &mounts) {
                Ok(p) => p,
                Err(m) => return Err(self.fail_start(id, m)),
            }
        };
        let security = match super::security::prepare(&config.security) {
            Ok(p) => p,
            Err(m) => return Err(self.fail_start(id, m)),
        };
        let groups = groups_of(&config);
        let max = self.rec.log_max_bytes;
        let os = |what: &str, e: &dyn std::fmt::Display| {
            WireError::new(ErrorKind::Os, format!("{what}: {e}"))
        };
        let c = self
            .ctrs
            .get_mut(id)
            .ok_or_else(|| WireError::new(ErrorKind::NotFound, id))?;
        let log_file =
            LogFile::open(&c.rec.log_path, max).map_err(|e| os("open the log file", &e))?;
        let io = ContainerIo::new(config.stdio).map_err(|e| os("container stdio", &e))?;
        let place = cgroup::placement(&c.cg).map_err(|e| os("open the cgroup", &e))?;
        c.oom_base = cgroup::oom_kills(&c.cg);
        let started_at = wall_now();
        let spec = SpawnSpec {
            path: &path,
            alt_paths: &alt,
            argv: &cargv,
            envp: &envp,
            cwd: &ccwd,
            uid: config.uid,
            gid: config.gid,
            groups: groups.as_deref(),
            security: &security,
            stdin: io
                .child_stdin
                .as_ref()
                .map_or(self.devnull.as_raw_fd(), |f| f.as_raw_fd()),
            stdout: io.child_stdout.as_raw_fd(),
            stderr: io.child_stderr.as_raw_fd(),
            cgroup_procs: &place.procs,
            clone_into: place.unified.as_ref().map(|(d, p)| (d, p)),
            mount_ns: match (&root, &plan) {
                (Some(r), _) => MountNs::Root(&r.ops),
                (None, Some(p)) => MountNs::Private(p),
                (None, None) => MountNs::Inherit,
            },
            controlling_tty: config.stdio.tty,
        };
        let result = spawn::spawn(&spec);
        drop(place);
        let ContainerIo {
            stdout: out_r,
            stderr: err_r,
            stdin: our_stdin,
            ..
        } = io;
        match result {
            Ok(sp) => {
                let started = StartedRecord {
                    host_pid: sp.host_pid,
                    ns_pid: sp.pid,
                    start_ticks: start_ticks(sp.host_pid).unwrap_or(0),
                    started_at,
                };
                if let Err(e) = write_json(&c.dir.join("started.json"), &started, false) {
                    log(&format!("write started record of {id}: {e}"));
                }
                c.state = CState::Running {
                    pid: sp.pid,
                    started_at,
                };
                c.mnt_ns_pid = (plan.is_some() || root.is_some()).then_some(sp.host_pid);
                c.log = Some(log_file);
                c.out = Some(LogStream::new(out_r, "stdout"));
                c.err = err_r.map(|fd| LogStream::new(fd, "stderr"));
                c.stdin = our_stdin;
                Ok(())
            }
            Err(e) => {
                let msg = Self::start_error(&argv[0], &cwd, &e, &mounts, root.as_ref());
                Err(self.fail_start(id, msg))
            }
        }
    }

    /// Records a start that never ran (exit code 128 with the reason) and returns the error.
    fn fail_start(&mut self, id: &str, message: String) -> WireError {
        if let Some(c) = self.ctrs.get_mut(id) {
            let status = ExitStatus::start_failed(message.clone(), wall_now());
            if let Err(e) = write_json(&c.dir.join("exit.json"), &status, true) {
                log(&format!("write exit record of {id}: {e}"));
            }
            c.state = CState::Exited;
        }
        WireError::new(ErrorKind::StartFailed, message)
    }

    fn signal(&mut self, id: &str, sig: i32) -> Result<(), WireError> {
        let Some(c) = self.ctrs.get(id) else {
            return Err(WireError::new(ErrorKind::NotFound, id));
        };
        let nsig = NixSignal::try_from(sig)
            .map_err(|_| WireError::new(ErrorKind::Os, format!("invalid signal {sig}")))?;
        match c.state {
            CState::Running { pid, .. } => {
                let _ = killpg(Pid::from_raw(pid), nsig);
                if nsig == NixSignal::SIGKILL {
                    cgroup::kill_all(&c.cg);
                }
                Ok(())
            }
            CState::Created | CState::Stopping { .. } | CState::Exited => Ok(()),
        }
    }

    fn exec(
        &mut self,
        conn: usize,
        id: &str,
        command: &[String],
        timeout_ms: u64,
    ) -> Result<(), WireError> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| WireError::new(ErrorKind::Os, format!("pipe: {e}")))?;
        set_nonblocking(&r);
        let devnull = self.devnull.as_raw_fd();
        let result = self.spawn_in(id, command, devnull, w.as_raw_fd(), w.as_raw_fd(), false);
        drop(w);
        let pid = result?;
        self.execs.push(ExecSession {
            conn,
            pid,
            out: Some(r),
            buf: Vec::new(),
            deadline: Some(mono_now() + Duration::from_millis(timeout_ms)),
            timed_out: false,
            code: None,
        });
        Ok(())
    }

    /// Starts `command` in container `id`'s context (its mount namespace, cgroup, env,
    /// working directory and user) with the given stdio; returns its host PID.
    fn spawn_in(
        &self,
        id: &str,
        command: &[String],
        stdin: i32,
        stdout: i32,
        stderr: i32,
        tty: bool,
    ) -> Result<i32, WireError> {
        let Some(c) = self.ctrs.get(id) else {
            return Err(WireError::new(ErrorKind::NotFound, id));
        };
        if !matches!(c.state, CState::Running { .. }) {
            return Err(WireError::invalid_state(
                "exec in container",
                id,
                c.state.name(),
            ));
        }
        if command.is_empty() {
            return Err(WireError::new(
                ErrorKind::StartFailed,
                "exec: no command given",
            ));
        }
        let config = c.rec.config.clone();
        let mounts = Self::mounts_of(&config, &c.dir);
        let ns = match c.mnt_ns_pid {
            Some(pid) => Some(File::open(format!("/proc/{pid}/ns/mnt")).map_err(|e| {
                WireError::new(
                    ErrorKind::StartFailed,
                    format!("open the container's mount namespace: {}", io_desc(&e)),
                )
            })?),
            None => None,
        };
        let root = match (c.mnt_ns_pid, &config.rootfs) {
            (Some(pid), Some(_)) => Some(File::open(format!("/proc/{pid}/root")).map_err(|e| {
                WireError::new(
                    ErrorKind::StartFailed,
                    format!("open the container's root: {}", io_desc(&e)),
                )
            })?),
            _ => None,
        };
        let place = cgroup::placement(&c.cg)
            .map_err(|e| WireError::new(ErrorKind::Os, format!("open the cgroup: {e}")))?;
        let (path, alt, argv, envp, cwd) = self.prepare(command, &config, &mounts)?;
        let security = super::security::prepare(&config.security)
            .map_err(|m| WireError::new(ErrorKind::StartFailed, m))?;
        let groups = groups_of(&config);
        let spec = SpawnSpec {
            path: &path,
            alt_paths: &alt,
            argv: &argv,
            envp: &envp,
            cwd: &cwd,
            uid: config.uid,
            gid: config.gid,
            groups: groups.as_deref(),
            security: &security,
            stdin,
            stdout,
            stderr,
            cgroup_procs: &place.procs,
            clone_into: place.unified.as_ref().map(|(d, p)| (d, p)),
            mount_ns: match &ns {
                Some(f) => MountNs::Join {
                    ns: f.as_raw_fd(),
                    root: root.as_ref().map(|r| r.as_raw_fd()),
                },
                None => MountNs::Inherit,
            },
            controlling_tty: tty,
        };
        let sp = spawn::spawn(&spec).map_err(|e| {
            WireError::new(
                ErrorKind::StartFailed,
                Self::start_error(
                    &command[0],
                    &self.cwd_of(&config),
                    &e,
                    &[],
                    config.rootfs.as_ref().map(|_| &EXEC_PLAN),
                ),
            )
        })?;
        Ok(sp.pid)
    }

    fn remove(&mut self, id: &str) -> Result<(), WireError> {
        let Some(c) = self.ctrs.get(id) else {
            return Err(WireError::new(ErrorKind::NotFound, id));
        };
        if matches!(c.state, CState::Running { .. } | CState::Stopping { .. }) {
            return Err(WireError::invalid_state(
                "remove container",
                id,
                c.state.name(),
            ));
        }
        if let Some(c) = self.ctrs.remove(id) {
            for e in cgroup::remove(&c.cg) {
                log(&e);
            }
            let _ = std::fs::remove_dir_all(&c.dir);
        }
        Ok(())
    }

    /// Whether this is a spare whose runtime instance is gone (its directory is named
    /// `.spare-<owner pid>-<owner start ticks>-<random>`).
    fn spare_orphaned(&self) -> bool {
        if !self.rec.config.id.is_empty() || self.shutdown.is_some() {
            return false;
        }
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(rest) = name.strip_prefix(".spare-") else {
            return false;
        };
        let mut it = rest.split('-');
        let owner = it.next().and_then(|p| p.parse::<u32>().ok());
        let ticks = it.next().and_then(|t| t.parse::<u64>().ok());
        let owner_alive =
            matches!((owner, ticks), (Some(p), Some(t)) if super::util::process_alive(p, t));
        // (Not the directory's existence: a claim renames it before the spare hears of it.)
        !owner_alive
    }

    /// A spare becomes a sandbox's supervisor: its directory has been renamed to `dir`, which
    /// now holds the sandbox record.
    fn adopt(&mut self, dir: PathBuf) -> Result<(), WireError> {
        if !self.rec.config.id.is_empty() {
            return Err(WireError::invalid_state(
                "adopt",
                &self.rec.config.id,
                "in use",
            ));
        }
        let rec: SandboxRecord = read_json(&dir.join("sandbox.json"))
            .map_err(|e| WireError::new(ErrorKind::Os, format!("read sandbox record: {e}")))?
            .ok_or_else(|| WireError::new(ErrorKind::Os, "no sandbox record"))?;
        if self.namespaces && !rec.config.hostname.is_empty() {
            nix::unistd::sethostname(&rec.config.hostname).map_err(|e| {
                WireError::new(
                    ErrorKind::Os,
                    format!("sethostname {:?}: {e}", rec.config.hostname),
                )
            })?;
        }
        let (cg, errors) = cgroup::create(&cgroup::needed(&rec.cgroups, &[&rec.config.resources]));
        for e in errors {
            log(&format!("sandbox cgroup unavailable: {e}"));
        }
        cgroup::apply(&cg, &rec.config.resources)
            .map_err(|e| WireError::new(ErrorKind::StartFailed, format!("sandbox limits: {e}")))?;
        log(&format!(
            "spare supervisor adopted sandbox {}",
            rec.config.id
        ));
        self.dir = dir;
        self.rec = rec;
        Ok(())
    }

    fn begin_shutdown(&mut self, conn: usize) {
        if let Some(Some(c)) = self.conns.get_mut(conn) {
            c.pending = true;
        }
        for c in self.ctrs.values() {
            if let CState::Running { pid, .. } = c.state {
                let _ = killpg(Pid::from_raw(pid), NixSignal::SIGKILL);
                cgroup::kill_all(&c.cg);
            }
        }
        for e in &self.execs {
            let _ = killpg(Pid::from_raw(e.pid), NixSignal::SIGKILL);
        }
        self.shutdown = Some((conn, mono_now() + SHUTDOWN_LIMIT));
    }

    fn maybe_finish_shutdown(&mut self) -> Option<i32> {
        let (conn, deadline) = self.shutdown?;
        let busy = self
            .ctrs
            .values()
            .any(|c| matches!(c.state, CState::Running { .. } | CState::Stopping { .. }));
        if busy && mono_now() < deadline {
            return None;
        }
        let ids: Vec<String> = self.ctrs.keys().cloned().collect();
        for id in &ids {
            if matches!(
                self.ctrs.get(id).map(|c| &c.state),
                Some(CState::Stopping { .. })
            ) {
                self.finalize(id);
            }
        }
        if !self.namespaces {
            self.kill_orphans();
        }
        for c in self.ctrs.values() {
            for e in cgroup::remove(&c.cg) {
                log(&e);
            }
        }
        for e in cgroup::remove(&self.rec.cgroups) {
            log(&e);
        }
        self.send(conn, &Response::default());
        // Deliver what is queued (the exits above, the answer) before going away.
        for c in self.conns.iter_mut().flatten() {
            let _ = c.stream.set_nonblocking(false);
            let _ = c.stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = c.stream.write_all(&c.wbuf);
        }
        log("sandbox removed; supervisor exiting");
        Some(0)
    }

    /// Without a pid namespace, kills what was reparented to us (double-forked daemons).
    fn kill_orphans(&mut self) {
        for _ in 0..20 {
            let mut found = false;
            if let Ok(rd) = std::fs::read_dir("/proc") {
                for e in rd.flatten() {
                    let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    if let Some((ppid, state)) = super::util::ppid_and_state(pid)
                        && ppid == self.host_pid
                        && state != 'Z'
                    {
                        found = true;
                        let _ = kill(Pid::from_raw(pid as i32), NixSignal::SIGKILL);
                    }
                }
            }
            self.reap();
            if !found {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    if let Some((pid, code, sig)) = exit_of(status) {
                        self.on_exit(pid, code, sig);
                    }
                }
            }
        }
    }

    fn on_exit(&mut self, pid: i32, code: i32, sig: Option<i32>) {
        if let Some(e) = self.execs.iter_mut().find(|e| e.pid == pid) {
            e.code = Some(code);
            return;
        }
        let Some((id, c)) = self
            .ctrs
            .iter_mut()
            .find(|(_, c)| matches!(c.state, CState::Running { pid: p, .. } if p == pid))
        else {
            return; // an orphan reparented to us: reaped, nothing to record
        };
        let CState::Running { started_at, .. } = c.state else {
            return;
        };
        let finished_at = wall_now();
        let oom_killed = cgroup::oom_kills(&c.cg) > c.oom_base;
        // The rest of the container goes with its main process.
        let _ = killpg(Pid::from_raw(pid), NixSignal::SIGKILL);
        cgroup::kill_all(&c.cg);
        let status = ExitStatus {
            exit_code: code,
            signal: sig.map(Signal),
            oom_killed,
            started_at,
            finished_at,
            message: None,
            termination_message: None,
        };
        let _ = id;
        c.state = CState::Stopping {
            pid,
            status,
            deadline: mono_now() + DRAIN_LIMIT,
        };
    }

    fn check_stopping(&mut self) {
        let now = mono_now();
        let mut done = Vec::new();
        for (id, c) in &self.ctrs {
            if let CState::Stopping { pid, deadline, .. } = c.state {
                let empty = match cgroup::procs(&c.cg) {
                    Some(p) => p.is_empty(),
                    None => killpg(Pid::from_raw(pid), None).is_err(),
                };
                if empty || now >= deadline {
                    if !empty {
                        log(&format!(
                            "container {id}: processes remain {DRAIN_LIMIT:?} after its exit"
                        ));
                    }
                    done.push(id.clone());
                }
            }
        }
        for id in done {
            self.finalize(&id);
        }
    }

    fn finalize(&mut self, id: &str) {
        let Some(c) = self.ctrs.get_mut(id) else {
            return;
        };
        let CState::Stopping { mut status, .. } = std::mem::replace(&mut c.state, CState::Exited)
        else {
            return;
        };
        c.mnt_ns_pid = None;
        c.stdin = None;
        if let Some(log) = c.log.as_mut() {
            for s in [c.out.as_mut(), c.err.as_mut()].into_iter().flatten() {
                s.pump(log);
                s.finish(log);
            }
        }
        c.out = None;
        c.err = None;
        c.log = None;
        if c.rec.config.termination_message.is_some() {
            let file = crate::termination::read_file(&c.dir.join(TERMINATION_FILE));
            status.termination_message = crate::termination::message(
                c.rec.config.termination_message.as_ref(),
                &file,
                status.exit_code,
                || crate::termination::log_tail(&c.rec.log_path),
            );
        }
        // Visible at once (atomic rename), announced, then made durable: the fsyncs cost
        // milliseconds that the stop latency need not include (after a host crash nothing of
        // the sandbox survives anyway, and a runtime that finds no record records a kill).
        let exit_path = c.dir.join("exit.json");
        if let Err(e) = write_json(&exit_path, &status, false) {
            log(&format!("write exit record of {id}: {e}"));
        }
        let event = ExitEvent {
            sandbox_id: self.rec.config.id.clone(),
            container_id: ContainerId(id.to_string()),
            container_name: c.rec.config.name.clone(),
            status,
        };
        let line = Response {
            exit: Some(event),
            ..Default::default()
        };
        let watchers: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.watching))
            .map(|(i, _)| i)
            .collect();
        for i in watchers {
            self.send(i, &line);
        }
        if let Err(e) = super::util::sync_file(&exit_path) {
            log(&format!("sync exit record of {id}: {e}"));
        }
    }

    fn pump_log(&mut self, id: &str, is_err: bool) {
        let Some(c) = self.ctrs.get_mut(id) else {
            return;
        };
        let Some(log) = c.log.as_mut() else { return };
        let stream = if is_err { &mut c.err } else { &mut c.out };
        if let Some(s) = stream.as_mut()
            && s.pump(log)
        {
            *stream = None;
        }
    }

    fn read_exec(&mut self, pid: i32) {
        let Some(e) = self.execs.iter_mut().find(|e| e.pid == pid) else {
            return;
        };
        if drain_exec(e) {
            e.out = None;
        }
    }

    fn check_execs(&mut self) {
        let now = mono_now();
        let mut finished = Vec::new();
        for (i, e) in self.execs.iter_mut().enumerate() {
            if e.code.is_none() && !e.timed_out && e.deadline.is_some_and(|d| now >= d) {
                e.timed_out = true;
                let _ = killpg(Pid::from_raw(e.pid), NixSignal::SIGKILL);
            }
            // A streaming exec ends with its session: the client closed the connection.
            if e.code.is_none()
                && !e.timed_out
                && e.deadline.is_none()
                && self
                    .conns
                    .get(e.conn)
                    .is_none_or(|c| c.as_ref().is_none_or(|c| c.eof))
            {
                e.timed_out = true;
                let _ = killpg(Pid::from_raw(e.pid), NixSignal::SIGKILL);
            }
            if e.code.is_some() {
                drain_exec(e);
                finished.push(i);
            }
        }
        for i in finished.into_iter().rev() {
            let e = self.execs.remove(i);
            let result = ExecResult {
                exit_code: if e.timed_out { None } else { e.code },
                output: e.buf,
                timed_out: e.timed_out,
            };
            if let Some(Some(c)) = self.conns.get_mut(e.conn) {
                c.pending = false;
            }
            self.send(
                e.conn,
                &Response {
                    exec: Some(result),
                    ..Default::default()
                },
            );
            self.process_lines(e.conn);
        }
    }
}

/// Reads what an exec session printed (keeping at most the cap). True at end of file.
fn drain_exec(e: &mut ExecSession) -> bool {
    let Some(fd) = &e.out else { return true };
    let mut chunk = [0u8; 4096];
    loop {
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                let room = EXEC_OUTPUT_CAP.saturating_sub(e.buf.len());
                e.buf.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return false,
            Err(_) => return true,
        }
    }
}

impl Sup {
    /// `exec_stream`: runs `command` in container `id` with the stdin, stdout and stderr
    /// that came with the request (SCM_RIGHTS, in that order). Answers at once; the exit
    /// follows on the same connection as an `exec` result. Closing the connection kills it.
    fn exec_stream(
        &mut self,
        conn: usize,
        id: &str,
        command: &[String],
        tty: bool,
        fds: Vec<OwnedFd>,
    ) -> Result<(), WireError> {
        let [stdin, stdout, stderr] = <[OwnedFd; 3]>::try_from(fds).map_err(|fds| {
            WireError::new(
                ErrorKind::Os,
                format!("exec_stream needs 3 descriptors, got {}", fds.len()),
            )
        })?;
        let pid = self.spawn_in(
            id,
            command,
            stdin.as_raw_fd(),
            stdout.as_raw_fd(),
            stderr.as_raw_fd(),
            tty,
        )?;
        // The child holds its own copies; ours close here so the client sees end of file.
        drop((stdin, stdout, stderr));
        self.execs.push(ExecSession {
            conn,
            pid,
            out: None,
            buf: Vec::new(),
            deadline: None,
            timed_out: false,
            code: None,
        });
        Ok(())
    }
}

/// The standard streams of a container being started: the child's ends (closed once it
/// runs) and ours (the log readers and the stdin kept for attaching clients).
struct ContainerIo {
    child_stdin: Option<OwnedFd>,
    child_stdout: OwnedFd,
    child_stderr: OwnedFd,
    stdout: OwnedFd,
    stderr: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
}

impl ContainerIo {
    /// Pipes for stdout and stderr, and for stdin with `stdin`; or one terminal for all
    /// three with `tty` (its output is logged as stdout).
    fn new(stdio: crate::Stdio) -> Result<ContainerIo, String> {
        let cloexec_pipe =
            || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
        if stdio.tty {
            let (primary, secondary) = super::stream::open_pty().map_err(|e| e.to_string())?;
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup: {e}"));
            return Ok(ContainerIo {
                child_stdin: Some(dup(&secondary)?),
                child_stdout: dup(&secondary)?,
                child_stderr: secondary,
                stdin: if stdio.stdin {
                    Some(dup(&primary)?)
                } else {
                    None
                },
                stdout: primary,
                stderr: None,
            });
        }
        let (out_r, out_w) = cloexec_pipe()?;
        let (err_r, err_w) = cloexec_pipe()?;
        set_nonblocking(&out_r);
        set_nonblocking(&err_r);
        let (child_stdin, stdin) = if stdio.stdin {
            let (r, w) = cloexec_pipe()?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        Ok(ContainerIo {
            child_stdin,
            child_stdout: out_w,
            child_stderr: err_w,
            stdout: out_r,
            stderr: Some(err_r),
            stdin,
        })
    }
}

impl Sup {
    /// `attach`: answers with a copy of the running container's stdin attached (SCM_RIGHTS),
    /// or with none when it has no open stdin. A `stdin_once` stdin (without a terminal) is
    /// given away: ours closes, so the container reads end of file once that client is done.
    fn attach(&mut self, conn: usize, id: &str) {
        let answer =
            match self.ctrs.get_mut(id) {
                None => Err(WireError::new(ErrorKind::NotFound, id)),
                Some(c) if !matches!(c.state, CState::Running { .. }) => Err(
                    WireError::invalid_state("attach to container", id, c.state.name()),
                ),
                Some(c) => {
                    let once = c.rec.config.stdio.stdin_once && !c.rec.config.stdio.tty;
                    let fd = if once {
                        c.stdin.take()
                    } else {
                        c.stdin.as_ref().and_then(|f| f.try_clone().ok())
                    };
                    Ok(fd)
                }
            };
        let (resp, fd) = match answer {
            Ok(fd) => (Response::default(), fd),
            Err(e) => (
                Response {
                    error: Some(e),
                    ..Default::default()
                },
                None,
            ),
        };
        self.flush(conn);
        let Some(Some(c)) = self.conns.get_mut(conn) else {
            return;
        };
        let Ok(mut line) = serde_json::to_vec(&resp) else {
            return;
        };
        line.push(b'\n');
        let fds: Vec<&OwnedFd> = fd.iter().collect();
        // A fresh connection has room for one short line: sent whole or not at all.
        match super::stream::send_fds(&c.stream, &line, &fds) {
            Ok(n) if n == line.len() => {}
            Ok(n) => c.wbuf.extend_from_slice(&line[n..]),
            Err(_) => c.eof = true,
        }
    }
}

/// The groups a container's processes get (primary first, then `supplemental_groups`), when
/// it has supplementary groups; None leaves `spawn`'s default.
fn groups_of(config: &ContainerConfig) -> Option<Vec<libc::gid_t>> {
    if config.security.supplemental_groups.is_empty() {
        return None;
    }
    let mut groups: Vec<libc::gid_t> = config.gid.into_iter().collect();
    for g in &config.security.supplemental_groups {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
    Some(groups)
}
