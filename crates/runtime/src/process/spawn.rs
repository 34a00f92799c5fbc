//! fork + exec of container processes and exec sessions, in the supervisor.
//!
//! Everything the child needs is prepared before `fork` (C strings, pointer arrays, open
//! cgroup files), so the child only makes system calls. In the child, in this order: own
//! process group; join the cgroups (before dropping privileges); default signal dispositions
//! and an empty signal mask; the mount namespace (a container: a private one, `/` made
//! recursively slave so nothing propagates to the host, then the bind mounts in order with
//! read-only remounts; an exec: `setns` into its container's); stdio; no_new_privs, the
//! capability bounding set and the seccomp filters (`security.rs`); supplementary groups,
//! gid, uid; the capability sets; working directory; report its host PID; mark every fd above 2 close-on-exec;
//! `execve`. A failure is reported as
//! (stage, errno) through a close-on-exec pipe; end of file on that pipe means the exec
//! succeeded.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Where in the child a start failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Creating the status pipe or forking.
    Fork,
    /// setpgid.
    ProcessGroup,
    /// Joining the cgroups.
    Cgroup,
    /// Redirecting stdio.
    Stdio,
    /// setgroups / setgid / setuid.
    Credentials,
    /// chdir.
    Chdir,
    /// execve.
    Exec,
    /// The mount namespace or one of the bind mounts (`SpawnError::mount` says which).
    Mount,
    /// no_new_privs, the capability sets or the seccomp filters (`security.rs`).
    Security,
}

impl Stage {
    fn code(self) -> i32 {
        self as i32
    }
    fn from_code(c: i32) -> Stage {
        match c {
            1 => Stage::ProcessGroup,
            2 => Stage::Cgroup,
            3 => Stage::Stdio,
            4 => Stage::Credentials,
            5 => Stage::Chdir,
            6 => Stage::Exec,
            7 => Stage::Mount,
            8 => Stage::Security,
            _ => Stage::Fork,
        }
    }
}

/// A failed start.
#[derive(Debug)]
pub(crate) struct SpawnError {
    /// Where.
    pub stage: Stage,
    /// The errno.
    pub errno: nix::errno::Errno,
    /// For [`Stage::Mount`]: 0 for the namespace itself, i for the i-th mount (1-based); for
    /// [`Stage::Security`], the step (`SECURITY_*`).
    pub mount: usize,
}

/// One bind mount, prepared for the child.
pub(crate) struct MountSpec {
    pub source: CString,
    pub target: CString,
    pub read_only: bool,
    /// Only remount `target` (already a mount) with `read_only`, no bind.
    pub remount_only: bool,
}

/// One step of building a container's root filesystem in the child (see `rootfs.rs`).
/// `Mkdir`, `Touch` and `Symlink` succeed when the path exists already.
pub(crate) enum RootOp {
    /// mkdir(path, mode).
    Mkdir(CString, u32),
    /// Create an empty file (for a file bind mount).
    Touch(CString),
    /// symlink(target, link).
    Symlink { target: CString, link: CString },
    /// mount(2).
    Mount {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: u64,
        data: Option<CString>,
    },
    /// `pivot_root` into this directory (a mount point), detach the old root, chdir("/").
    PivotRoot(CString),
}

/// The mount namespace a child gets.
pub(crate) enum MountNs<'a> {
    /// The supervisor's (the host's).
    Inherit,
    /// A private one with these bind mounts.
    Private(&'a [MountSpec]),
    /// A private one built by these steps (a container with its own root filesystem).
    Root(&'a [RootOp]),
    /// The one of this open `/proc/<pid>/ns/mnt` (an exec in a container), then, for a
    /// container with its own root filesystem, that root (an open `/proc/<pid>/root`):
    /// joining a mount namespace alone leaves the caller at the namespace's original root.
    Join { ns: RawFd, root: Option<RawFd> },
}

/// What to start.
pub(crate) struct SpawnSpec<'a> {
    pub path: &'a CString,
    /// Further executables to try, in order, when `path` does not exist (a `$PATH` lookup
    /// inside a container's own root filesystem, done after the root switch).
    pub alt_paths: &'a [CString],
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    pub cwd: &'a CString,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The groups to set (primary first) when running as root; None: as before (the
    /// primary group alone, or none when only a uid is given).
    pub groups: Option<&'a [libc::gid_t]>,
    /// Capabilities, no_new_privs and seccomp (`security.rs`).
    pub security: &'a super::security::Prepared,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub cgroup_procs: &'a [OwnedFd],
    /// A cgroup v2 directory to start the child in with `clone3(CLONE_INTO_CGROUP)` (no
    /// migration, so none of the cost of writing `cgroup.procs`), and that directory's
    /// `cgroup.procs` to write instead when clone3 is unavailable.
    pub clone_into: Option<(&'a OwnedFd, &'a OwnedFd)>,
    /// The mount namespace.
    pub mount_ns: MountNs<'a>,
    /// Start a new session with stdin (a terminal) as its controlling terminal, instead of
    /// a new process group (an exec with a terminal: ^C and job control work).
    pub controlling_tty: bool,
}

/// `struct clone_args` of clone3(2), version 2 (with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks, into the cgroup `dir` when given and clone3 supports it. Returns the child's PID
/// (0 in the child) and whether the child already is in `dir`.
fn fork_into(dir: Option<RawFd>) -> Result<(i32, bool), nix::errno::Errno> {
    if let Some(fd) = dir {
        let args = CloneArgs {
            flags: CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: fd as u64,
            ..CloneArgs::default()
        };
        // SAFETY: clone3 without CLONE_VM/CLONE_VFORK and without a new stack behaves like
        // fork (the child gets a copy of the address space and returns 0 here); the caller is
        // single-threaded; `args` is a valid clone_args of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if r >= 0 {
            return Ok((r as i32, true));
        }
        // Unsupported (old kernel, v1-only, seccomp): fall back to fork + cgroup.procs.
    }
    // SAFETY: the supervisor is single-threaded (no tokio runtime, no helper threads), so the
    // child may run any code; it only makes system calls and ends in execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok((pid, false))
}

const CLONE_VM: u64 = 0x100;
const CLONE_VFORK: u64 = 0x4000;

/// What the child of [`vfork_into`] runs with (it lives in the parent's memory, which the
/// suspended parent does not touch until the child has exec'd or exited).
struct ChildCtx<'a> {
    spec: &'a SpawnSpec<'a>,
    argv: &'a [*const c_char],
    envp: &'a [*const c_char],
    procs: &'a [RawFd],
    status: RawFd,
    is_root: bool,
}

extern "C" fn child_entry(arg: *mut libc::c_void) -> ! {
    // SAFETY: `arg` is the ChildCtx passed by `vfork_into`; the parent is suspended
    // (CLONE_VFORK) until this child execs or exits, so the context stays valid.
    let ctx = unsafe { &*(arg as *const ChildCtx<'_>) };
    // SAFETY: we are the freshly cloned child on our own stack; `child` never returns.
    unsafe {
        child(
            ctx.spec,
            ctx.argv,
            ctx.envp,
            ctx.procs,
            None,
            ctx.status,
            ctx.is_root,
        )
    }
}

/// Starts the child like `posix_spawn` does (shared memory, parent suspended until exec, so
/// no page tables are copied: a fork of even a small process costs ~1 ms here) and directly in
/// the cgroup `cgroup` (CLONE_INTO_CGROUP). None when clone3 refuses (old kernel, v1 only).
#[cfg(target_arch = "x86_64")]
fn vfork_into(cgroup: RawFd, ctx: &ChildCtx<'_>) -> Option<i32> {
    let mut stack = vec![0u128; 64 * 1024 / 16];
    let args = CloneArgs {
        flags: CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.as_mut_ptr() as u64,
        stack_size: (stack.len() * 16) as u64,
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    // No signal handler may run in the child while it shares our memory: block everything
    // around the clone (the child resets dispositions, then clears its mask).
    // SAFETY: plain sigset manipulation on local values.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    };
    let ret: i64;
    // SAFETY: clone3 with CLONE_VM|CLONE_VFORK and a fresh 16-byte-aligned stack: the kernel
    // starts the child with rsp at the top of `stack` and rax = 0; the child calls
    // `child_entry(ctx)`, which never returns (exec or _exit). The parent is suspended until
    // then and continues after the syscall with rax = PID or -errno; only rax, rcx and r11
    // change in the parent, and nothing is pushed on the parent's stack.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") ctx as *const ChildCtx<'_> as *mut libc::c_void,
            in("r13") child_entry as extern "C" fn(*mut libc::c_void) -> !,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(stack);
    (ret > 0).then_some(ret as i32)
}

#[cfg(not(target_arch = "x86_64"))]
fn vfork_into(_cgroup: RawFd, _ctx: &ChildCtx<'_>) -> Option<i32> {
    None
}

/// A started process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spawned {
    /// The PID in the supervisor's PID namespace (also the process group ID).
    pub pid: i32,
    /// The PID as the host sees it (from `/proc/self` in the child).
    pub host_pid: u32,
}

const MSG_PID: i32 = 1;

/// Which step of [`Stage::Security`] failed (`SpawnError::mount` carries it).
pub(crate) const SECURITY_NO_NEW_PRIVS: usize = 1;
/// The bounding set or keep-caps.
pub(crate) const SECURITY_BOUNDING: usize = 2;
/// A seccomp filter.
pub(crate) const SECURITY_SECCOMP: usize = 3;
/// The capability sets.
pub(crate) const SECURITY_CAPSET: usize = 4;
/// The ambient capability set.
pub(crate) const SECURITY_AMBIENT: usize = 5;
const MSG_ERR: i32 = 2;

/// The pointers of `strings` followed by a null, as `execve` takes its argv and envp; valid
/// while `strings` lives.
fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Forks and execs. On failure the child has been reaped already.
pub(crate) fn spawn(spec: &SpawnSpec<'_>) -> Result<Spawned, SpawnError> {
    let argv = null_terminated(spec.argv);
    let envp = null_terminated(spec.envp);
    let procs: Vec<RawFd> = spec.cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    let (rd, wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| SpawnError {
            stage: Stage::Fork,
            errno,
            mount: 0,
        })?;
    let is_root = nix::unistd::geteuid().is_root();
    let ctx = ChildCtx {
        spec,
        argv: &argv,
        envp: &envp,
        procs: &procs,
        status: wr.as_raw_fd(),
        is_root,
    };
    let fast = spec
        .clone_into
        .and_then(|(dir, _)| vfork_into(dir.as_raw_fd(), &ctx));
    let pid = match fast {
        Some(pid) => pid,
        None => {
            let (pid, joined) = fork_into(spec.clone_into.map(|(dir, _)| dir.as_raw_fd()))
                .map_err(|errno| SpawnError {
                    stage: Stage::Fork,
                    errno,
                    mount: 0,
                })?;
            if pid == 0 {
                let extra = if joined {
                    None
                } else {
                    spec.clone_into.map(|(_, p)| p.as_raw_fd())
                };
                // SAFETY: we are the freshly forked child; `child` never returns.
                unsafe { child(spec, &argv, &envp, &procs, extra, wr.as_raw_fd(), is_root) }
            }
            pid
        }
    };
    drop(wr);
    let mut buf = Vec::with_capacity(24);
    let mut chunk = [0u8; 64];
    loop {
        match nix::unistd::read(&rd, &mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    let mut host_pid = pid as u32;
    let mut error = None;
    for msg in buf.chunks_exact(12) {
        let word = |i: usize| i32::from_ne_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
        match word(0) {
            MSG_PID if word(4) > 0 => host_pid = word(4) as u32,
            MSG_ERR => {
                error = Some((
                    Stage::from_code(word(4) & 0xff),
                    nix::errno::Errno::from_raw(word(8)),
                    (word(4) >> 8) as usize,
                ))
            }
            _ => {}
        }
    }
    if let Some((stage, errno, mount)) = error {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        return Err(SpawnError {
            stage,
            errno,
            mount,
        });
    }
    Ok(Spawned { pid, host_pid })
}

/// Writes one 12-byte message to the status pipe.
///
/// # Safety
/// `fd` must be an open file descriptor.
unsafe fn report(fd: RawFd, kind: i32, a: i32, b: i32) {
    let mut msg = [0u8; 12];
    msg[..4].copy_from_slice(&kind.to_ne_bytes());
    msg[4..8].copy_from_slice(&a.to_ne_bytes());
    msg[8..].copy_from_slice(&b.to_ne_bytes());
    // SAFETY: msg is a valid 12-byte buffer; fd is open per the contract.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

/// Enters a new mount namespace whose mounts receive the host's but never propagate back.
///
/// # Safety
/// Only in the freshly forked child (plain system calls).
unsafe fn private_mount_ns() -> bool {
    // SAFETY: plain system calls with valid constant arguments.
    unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ) == 0
    }
}

/// Installs the prepared seccomp filters in order; false if one was refused.
///
/// # Safety
/// Only in the freshly forked child (plain system calls on prepared memory).
unsafe fn install_seccomp(sec: &super::security::Prepared) -> bool {
    for f in &sec.seccomp {
        let prog = libc::sock_fprog {
            len: f.len() as libc::c_ushort,
            filter: f.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at a live, well-formed filter for the duration of the call.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return false;
        }
    }
    true
}

/// The child side of [`spawn`].
///
/// # Safety
/// Must only be called in a freshly forked child; the pointer arrays must be null-terminated
/// and point into `spec`'s C strings.
unsafe fn child(
    spec: &SpawnSpec<'_>,
    argv: &[*const c_char],
    envp: &[*const c_char],
    procs: &[RawFd],
    extra_procs: Option<RawFd>,
    status: RawFd,
    is_root: bool,
) -> ! {
    // SAFETY: plain system calls on valid, prepared arguments in the freshly forked child;
    // every path ends in execve or _exit.
    unsafe {
        let fail_at = |stage: Stage, index: usize| -> ! {
            let errno = *libc::__errno_location();
            report(status, MSG_ERR, stage.code() | ((index as i32) << 8), errno);
            libc::_exit(127)
        };
        let fail = |stage: Stage| -> ! { fail_at(stage, 0) };
        if spec.controlling_tty {
            if libc::setsid() < 0 {
                fail(Stage::ProcessGroup);
            }
        } else if libc::setpgid(0, 0) != 0 {
            fail(Stage::ProcessGroup);
        }
        for &fd in procs.iter().chain(extra_procs.iter()) {
            if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                fail(Stage::Cgroup);
            }
        }
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // The host PID, read before a root switch replaces `/proc` with the pod's.
        let mut link = [0u8; 32];
        let n = libc::readlink(c"/proc/self".as_ptr(), link.as_mut_ptr().cast(), link.len());
        if n > 0 {
            let mut host: i32 = 0;
            for &b in &link[..n as usize] {
                if b.is_ascii_digit() {
                    host = host.saturating_mul(10).saturating_add((b - b'0') as i32);
                }
            }
            report(status, MSG_PID, host, 0);
        }
        match spec.mount_ns {
            MountNs::Inherit => {}
            MountNs::Join { ns, root } => {
                if libc::setns(ns, libc::CLONE_NEWNS) != 0 {
                    fail(Stage::Mount);
                }
                if let Some(root) = root
                    && (libc::fchdir(root) != 0
                        || libc::chroot(c".".as_ptr()) != 0
                        || libc::chdir(c"/".as_ptr()) != 0)
                {
                    fail(Stage::Mount);
                }
            }
            MountNs::Root(ops) => {
                if !private_mount_ns() {
                    fail(Stage::Mount);
                }
                for (i, op) in ops.iter().enumerate() {
                    let ok = match op {
                        RootOp::Mkdir(p, mode) => {
                            libc::mkdir(p.as_ptr(), *mode as libc::mode_t) == 0
                                || *libc::__errno_location() == libc::EEXIST
                        }
                        RootOp::Touch(p) => {
                            let fd = libc::open(
                                p.as_ptr(),
                                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                                0o644,
                            );
                            if fd >= 0 {
                                libc::close(fd);
                            }
                            fd >= 0 || *libc::__errno_location() == libc::EISDIR
                        }
                        RootOp::Symlink { target, link } => {
                            libc::symlink(target.as_ptr(), link.as_ptr()) == 0
                                || *libc::__errno_location() == libc::EEXIST
                        }
                        RootOp::Mount {
                            source,
                            target,
                            fstype,
                            flags,
                            data,
                        } => {
                            libc::mount(
                                source.as_ptr(),
                                target.as_ptr(),
                                fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                                *flags as libc::c_ulong,
                                data.as_ref()
                                    .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
                            ) == 0
                        }
                        RootOp::PivotRoot(dir) => {
                            libc::chdir(dir.as_ptr()) == 0
                                && libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr())
                                    == 0
                                && libc::umount2(c".".as_ptr(), libc::MNT_DETACH) == 0
                                && libc::chdir(c"/".as_ptr()) == 0
                        }
                    };
                    if !ok {
                        fail_at(Stage::Mount, i + 1);
                    }
                }
            }
            MountNs::Private(mounts) => {
                if !private_mount_ns() {
                    fail(Stage::Mount);
                }
                for (i, m) in mounts.iter().enumerate() {
                    if !m.remount_only
                        && libc::mount(
                            m.source.as_ptr(),
                            m.target.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        ) != 0
                    {
                        fail_at(Stage::Mount, i + 1);
                    }
                    if m.read_only
                        && libc::mount(
                            std::ptr::null(),
                            m.target.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                            std::ptr::null(),
                        ) != 0
                    {
                        fail_at(Stage::Mount, i + 1);
                    }
                }
            }
        }
        for (from, to) in [(spec.stdin, 0), (spec.stdout, 1), (spec.stderr, 2)] {
            if libc::dup2(from, to) < 0 {
                fail(Stage::Stdio);
            }
        }
        if spec.controlling_tty && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
            fail(Stage::Stdio);
        }
        let sec = spec.security;
        if sec.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail_at(Stage::Security, SECURITY_NO_NEW_PRIVS);
        }
        let caps = sec.bounding_drop.as_deref().filter(|_| is_root);
        if let Some(drop) = caps {
            for &c in drop {
                if libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) != 0
                    && *libc::__errno_location() != libc::EINVAL
                {
                    fail_at(Stage::Security, SECURITY_BOUNDING);
                }
            }
            if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
                fail_at(Stage::Security, SECURITY_BOUNDING);
            }
        }
        // Without no_new_privs the filters must go in while the child still holds
        // CAP_SYS_ADMIN (before the uid changes); with it, as late as possible (runc's order).
        if !sec.no_new_privs && !install_seccomp(sec) {
            fail_at(Stage::Security, SECURITY_SECCOMP);
        }
        if let Some(groups) = spec.groups.filter(|_| is_root) {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                fail(Stage::Credentials);
            }
        } else if let Some(gid) = spec.gid {
            if is_root && libc::setgroups(1, &gid) != 0 {
                fail(Stage::Credentials);
            }
        } else if spec.uid.is_some() && is_root && libc::setgroups(0, std::ptr::null()) != 0 {
            fail(Stage::Credentials);
        }
        if let Some(gid) = spec.gid
            && libc::setgid(gid) != 0
        {
            fail(Stage::Credentials);
        }
        if let Some(uid) = spec.uid
            && libc::setuid(uid) != 0
        {
            fail(Stage::Credentials);
        }
        if caps.is_some() {
            let header = super::security::CapHeader {
                version: super::security::CAP_VERSION_3,
                pid: 0,
            };
            let data = if spec.uid.unwrap_or(0) == 0 {
                sec.caps_root
            } else {
                [super::security::CapData::default(); 2]
            };
            if libc::syscall(
                libc::SYS_capset,
                &header as *const super::security::CapHeader,
                data.as_ptr(),
            ) != 0
            {
                fail_at(Stage::Security, SECURITY_CAPSET);
            }
            if libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                fail_at(Stage::Security, SECURITY_AMBIENT);
            }
        }
        if sec.no_new_privs && !install_seccomp(sec) {
            fail_at(Stage::Security, SECURITY_SECCOMP);
        }
        if libc::chdir(spec.cwd.as_ptr()) != 0 {
            fail(Stage::Chdir);
        }
        // Nothing but 0, 1 and 2 survives the exec (the status pipe is already close-on-exec).
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::execve(spec.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
        let mut errno = *libc::__errno_location();
        for p in spec.alt_paths {
            if errno != libc::ENOENT && errno != libc::ENOTDIR && errno != libc::EACCES {
                break;
            }
            libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr());
            errno = *libc::__errno_location();
        }
        *libc::__errno_location() = errno;
        fail(Stage::Exec)
    }
}

/// Closes every file descriptor above 2 (the supervisor does this first, so nothing the agent
/// leaked reaches the containers).
pub(crate) fn close_extra_fds() {
    // SAFETY: close_range only closes descriptors; at process start nothing above 2 is owned
    // by Rust objects.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
}

/// Forks the supervisor proper off the launcher process. Returns the child's PID in the
/// parent and 0 in the child.
pub(crate) fn fork_supervisor() -> nix::Result<i32> {
    // SAFETY: called from the launcher before any thread is started; the child continues as
    // the single-threaded supervisor.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(pid)
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Gives `signals` a handler that does nothing. The supervisor blocks them and reads them
/// from a signalfd; as PID 1 of its pid namespace it must still not leave them at the
/// default disposition, or the kernel drops them when they come from the host (a namespace
/// init only receives the signals it handles).
pub(crate) fn handle_signals_noop(signals: &[libc::c_int]) {
    for &sig in signals {
        // SAFETY: a zeroed sigaction with a handler that touches nothing is valid for any
        // catchable signal; the process is single-threaded here.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}
