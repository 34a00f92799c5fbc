//! A container's confinement, as containerd and runc apply a CRI security context: prepared
//! in the supervisor ([`prepare`]: pure, allocates) and applied in the child between fork and
//! exec (`spawn.rs`, plain system calls only).
//!
//! # What is applied, in the child, in this order
//!
//! 1. `no_new_privs` when asked (`allowPrivilegeEscalation: false`).
//! 2. The capability bounding set: every capability outside the container's set is dropped
//!    (`PR_CAPBSET_DROP`), then `PR_SET_KEEPCAPS`.
//! 3. The seccomp filters (`PR_SET_SECCOMP`); the filters allow every call the remaining
//!    steps make.
//! 4. Supplementary groups, gid, uid (`spawn.rs`).
//! 5. The capability sets (`capset`): effective, permitted and inheritable are the
//!    container's set for uid 0 and empty for any other uid (containerd); the ambient set
//!    is cleared. At `execve` a uid-0 process gets the bounding set, any other none.
//!
//! Without `no_new_privs` the seccomp filters go in before step 4 (the child still holds
//! `CAP_SYS_ADMIN`, which installing a filter then needs); with it, after step 5 (runc's
//! order).
//!
//! # The container's capability set (containerd's `setOCICapabilities`)
//!
//! Start from [`DEFAULT_CAPABILITIES`] (containerd's default, 14 capabilities); `add: [ALL]`
//! makes it every capability, `drop: [ALL]` empties it, then each other `add` is added and
//! each other `drop` removed (names without `CAP_`, as Kubernetes writes them; with it is
//! accepted too). `privileged` is every capability and no seccomp filter.
//!
//! # RuntimeDefault
//!
//! [`runtime_default`] is containerd's default profile (moby's `default.json`): an
//! allowlist answering `EPERM` to everything else, with `personality` limited to the
//! personalities the profile lists, `socket` refused for `AF_VSOCK`, `clone` refused with
//! namespace flags and `clone3` answered `ENOSYS` (so libc falls back to `clone`) unless the
//! set holds `CAP_SYS_ADMIN`, and the calls gated by a capability (mount, ptrace, reboot,
//! module loading, ...) allowed only when the set holds it. The filters are built with
//! `seccompiler` (rust-vmm, pure Rust) for x86_64; elsewhere RuntimeDefault fails the start.
//! `Localhost` profiles (OCI JSON: `defaultAction`, `defaultErrnoRet`, `syscalls` with names,
//! action and errno; argument conditions are refused) are compiled the same way.

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::{SeccompProfile, SecurityConfig};

/// Every capability the kernel defines, by number.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's default capabilities of a container that is not privileged.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The number of a capability (`NET_ADMIN` or `CAP_NET_ADMIN`, any case).
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAPABILITIES
        .iter()
        .position(|c| *c == full)
        .map(|i| i as u32)
}

/// The capabilities this process may hand on (its bounding set), as containerd's
/// `cap.Current()`: `privileged` and `ALL` mean these.
pub fn current_capabilities() -> BTreeSet<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    (0..CAPABILITIES.len() as u32)
        .filter(|c| mask & (1 << c) != 0)
        .collect()
}

/// The container's capability set (numbers), by containerd's rules (module docs).
pub fn capability_set(sec: &SecurityConfig) -> Result<BTreeSet<u32>, String> {
    capability_set_within(sec, &current_capabilities())
}

/// [`capability_set`] where the runtime holds `all`.
pub fn capability_set_within(
    sec: &SecurityConfig,
    all: &BTreeSet<u32>,
) -> Result<BTreeSet<u32>, String> {
    let all = all.clone();
    if sec.privileged {
        return Ok(all);
    }
    let mut set: BTreeSet<u32> = DEFAULT_CAPABILITIES
        .iter()
        .filter_map(|c| capability_number(c))
        .collect();
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    if sec.capabilities_add.iter().any(is_all) {
        set = all.clone();
    }
    if sec.capabilities_drop.iter().any(is_all) {
        set.clear();
    }
    let number =
        |c: &String| capability_number(c).ok_or_else(|| format!("unknown capability {c:?}"));
    for c in sec.capabilities_add.iter().filter(|c| !is_all(c)) {
        set.insert(number(c)?);
    }
    for c in sec.capabilities_drop.iter().filter(|c| !is_all(c)) {
        set.remove(&number(c)?);
    }
    // What the runtime does not hold it cannot hand on.
    set.retain(|c| all.contains(c));
    Ok(set)
}

/// What the child applies (see the module docs), prepared before the fork.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// Set `no_new_privs`.
    pub no_new_privs: bool,
    /// Capabilities to drop from the bounding set; None: leave capabilities alone.
    pub bounding_drop: Option<Vec<u32>>,
    /// The `capset` data (two 32-bit words of effective, permitted, inheritable) for uid 0
    /// and for any other uid.
    pub caps_root: [CapData; 2],
    /// Filters to install, in order.
    pub seccomp: Vec<BpfProgram>,
}

/// `_LINUX_CAPABILITY_VERSION_3` (two data words).
pub(crate) const CAP_VERSION_3: u32 = 0x2008_0522;

/// `capset`'s `__user_cap_header_struct`.
#[repr(C)]
pub(crate) struct CapHeader {
    pub version: u32,
    pub pid: i32,
}

/// One word of `capset`'s `__user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CapData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

/// Prepares `sec` for the child; an error is the container's start failure.
pub(crate) fn prepare(sec: &SecurityConfig) -> Result<Prepared, String> {
    let mut p = Prepared {
        no_new_privs: sec.no_new_privileges,
        ..Prepared::default()
    };
    if !sec.confined {
        return Ok(p);
    }
    let set = capability_set(sec)?;
    p.bounding_drop = Some(
        (0..CAPABILITIES.len() as u32)
            .filter(|c| !set.contains(c))
            .collect(),
    );
    for c in &set {
        let word = &mut p.caps_root[(*c / 32) as usize];
        let bit = 1u32 << (c % 32);
        word.effective |= bit;
        word.permitted |= bit;
        word.inheritable |= bit;
    }
    p.seccomp = match (&sec.seccomp, sec.privileged) {
        (_, true) | (SeccompProfile::Unconfined, _) => Vec::new(),
        (SeccompProfile::RuntimeDefault, _) => runtime_default(&set)?,
        (SeccompProfile::Localhost(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "cannot load seccomp profile {:?}: {e}",
                    path.display().to_string()
                )
            })?;
            vec![localhost(&text)?]
        }
    };
    Ok(p)
}

fn arch() -> Result<TargetArch, String> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else {
        Err("seccomp profiles are supported on x86_64 only".into())
    }
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, String> {
    SeccompFilter::new(rules, mismatch, matched, arch()?)
        .and_then(BpfProgram::try_from)
        .map_err(|e| format!("seccomp filter: {e}"))
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conds).map_err(|e| e.to_string())
}

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// The namespace flags of `clone` (`CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET`).
const CLONE_NAMESPACES: u64 = 0x7E02_0000;
/// `AF_VSOCK`.
const AF_VSOCK: u64 = 40;
/// The personalities the default profile lets a process switch to.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

#[cfg(target_arch = "x86_64")]
mod table {
    /// containerd's default profile's unconditional allowlist (x86_64 names).
    pub(super) const ALLOWED: &[i64] = &[
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_access,
        libc::SYS_adjtimex,
        libc::SYS_alarm,
        libc::SYS_bind,
        libc::SYS_brk,
        libc::SYS_capget,
        libc::SYS_capset,
        libc::SYS_chdir,
        libc::SYS_chmod,
        libc::SYS_chown,
        libc::SYS_clock_adjtime,
        libc::SYS_clock_getres,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_close,
        libc::SYS_close_range,
        libc::SYS_connect,
        libc::SYS_copy_file_range,
        libc::SYS_creat,
        libc::SYS_dup,
        libc::SYS_dup2,
        libc::SYS_dup3,
        libc::SYS_epoll_create,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_ctl_old,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_wait_old,
        libc::SYS_eventfd,
        libc::SYS_eventfd2,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_faccessat,
        libc::SYS_faccessat2,
        libc::SYS_fadvise64,
        libc::SYS_fallocate,
        libc::SYS_fanotify_mark,
        libc::SYS_fchdir,
        libc::SYS_fchmod,
        libc::SYS_fchmodat,
        libc::SYS_fchown,
        libc::SYS_fchownat,
        libc::SYS_fcntl,
        libc::SYS_fdatasync,
        libc::SYS_fgetxattr,
        libc::SYS_flistxattr,
        libc::SYS_flock,
        libc::SYS_fork,
        libc::SYS_fremovexattr,
        libc::SYS_fsetxattr,
        libc::SYS_fstat,
        libc::SYS_fstatfs,
        libc::SYS_fsync,
        libc::SYS_ftruncate,
        libc::SYS_futex,
        libc::SYS_futex_waitv,
        libc::SYS_futimesat,
        libc::SYS_getcpu,
        libc::SYS_getcwd,
        libc::SYS_getdents,
        libc::SYS_getdents64,
        libc::SYS_getegid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getgroups,
        libc::SYS_getitimer,
        libc::SYS_getpeername,
        libc::SYS_getpgid,
        libc::SYS_getpgrp,
        libc::SYS_getpid,
        libc::SYS_getppid,
        libc::SYS_getpriority,
        libc::SYS_getrandom,
        libc::SYS_getresgid,
        libc::SYS_getresuid,
        libc::SYS_getrlimit,
        libc::SYS_get_robust_list,
        libc::SYS_getrusage,
        libc::SYS_getsid,
        libc::SYS_getsockname,
        libc::SYS_getsockopt,
        libc::SYS_get_thread_area,
        libc::SYS_gettid,
        libc::SYS_gettimeofday,
        libc::SYS_getuid,
        libc::SYS_getxattr,
        libc::SYS_inotify_add_watch,
        libc::SYS_inotify_init,
        libc::SYS_inotify_init1,
        libc::SYS_inotify_rm_watch,
        libc::SYS_io_cancel,
        libc::SYS_ioctl,
        libc::SYS_io_destroy,
        libc::SYS_io_getevents,
        libc::SYS_ioprio_get,
        libc::SYS_ioprio_set,
        libc::SYS_io_setup,
        libc::SYS_io_submit,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_io_uring_setup,
        libc::SYS_kill,
        libc::SYS_landlock_add_rule,
        libc::SYS_landlock_create_ruleset,
        libc::SYS_landlock_restrict_self,
        libc::SYS_lchown,
        libc::SYS_lgetxattr,
        libc::SYS_link,
        libc::SYS_linkat,
        libc::SYS_listen,
        libc::SYS_listxattr,
        libc::SYS_llistxattr,
        libc::SYS_lremovexattr,
        libc::SYS_lseek,
        libc::SYS_lsetxattr,
        libc::SYS_lstat,
        libc::SYS_madvise,
        libc::SYS_membarrier,
        libc::SYS_memfd_create,
        libc::SYS_memfd_secret,
        libc::SYS_mincore,
        libc::SYS_mkdir,
        libc::SYS_mkdirat,
        libc::SYS_mknod,
        libc::SYS_mknodat,
        libc::SYS_mlock,
        libc::SYS_mlock2,
        libc::SYS_mlockall,
        libc::SYS_mmap,
        libc::SYS_mprotect,
        libc::SYS_mq_getsetattr,
        libc::SYS_mq_notify,
        libc::SYS_mq_open,
        libc::SYS_mq_timedreceive,
        libc::SYS_mq_timedsend,
        libc::SYS_mq_unlink,
        libc::SYS_mremap,
        libc::SYS_msgctl,
        libc::SYS_msgget,
        libc::SYS_msgrcv,
        libc::SYS_msgsnd,
        libc::SYS_msync,
        libc::SYS_munlock,
        libc::SYS_munlockall,
        libc::SYS_munmap,
        libc::SYS_name_to_handle_at,
        libc::SYS_nanosleep,
        libc::SYS_newfstatat,
        libc::SYS_open,
        libc::SYS_openat,
        libc::SYS_openat2,
        libc::SYS_pause,
        libc::SYS_pidfd_open,
        libc::SYS_pidfd_send_signal,
        libc::SYS_pipe,
        libc::SYS_pipe2,
        libc::SYS_pkey_alloc,
        libc::SYS_pkey_free,
        libc::SYS_pkey_mprotect,
        libc::SYS_poll,
        libc::SYS_ppoll,
        libc::SYS_prctl,
        libc::SYS_pread64,
        libc::SYS_preadv,
        libc::SYS_preadv2,
        libc::SYS_prlimit64,
        libc::SYS_process_mrelease,
        libc::SYS_pselect6,
        libc::SYS_ptrace,
        libc::SYS_pwrite64,
        libc::SYS_pwritev,
        libc::SYS_pwritev2,
        libc::SYS_read,
        libc::SYS_readahead,
        libc::SYS_readlink,
        libc::SYS_readlinkat,
        libc::SYS_readv,
        libc::SYS_recvfrom,
        libc::SYS_recvmmsg,
        libc::SYS_recvmsg,
        libc::SYS_remap_file_pages,
        libc::SYS_removexattr,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_renameat2,
        libc::SYS_restart_syscall,
        libc::SYS_rmdir,
        libc::SYS_rseq,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigpending,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigqueueinfo,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigsuspend,
        libc::SYS_rt_sigtimedwait,
        libc::SYS_rt_tgsigqueueinfo,
        libc::SYS_sched_getaffinity,
        libc::SYS_sched_getattr,
        libc::SYS_sched_getparam,
        libc::SYS_sched_get_priority_max,
        libc::SYS_sched_get_priority_min,
        libc::SYS_sched_getscheduler,
        libc::SYS_sched_rr_get_interval,
        libc::SYS_sched_setaffinity,
        libc::SYS_sched_setattr,
        libc::SYS_sched_setparam,
        libc::SYS_sched_setscheduler,
        libc::SYS_sched_yield,
        libc::SYS_seccomp,
        libc::SYS_select,
        libc::SYS_semctl,
        libc::SYS_semget,
        libc::SYS_semop,
        libc::SYS_semtimedop,
        libc::SYS_sendfile,
        libc::SYS_sendmmsg,
        libc::SYS_sendmsg,
        libc::SYS_sendto,
        libc::SYS_setfsgid,
        libc::SYS_setfsuid,
        libc::SYS_setgid,
        libc::SYS_setgroups,
        libc::SYS_setitimer,
        libc::SYS_setpgid,
        libc::SYS_setpriority,
        libc::SYS_setregid,
        libc::SYS_setresgid,
        libc::SYS_setresuid,
        libc::SYS_setreuid,
        libc::SYS_setrlimit,
        libc::SYS_set_robust_list,
        libc::SYS_setsid,
        libc::SYS_setsockopt,
        libc::SYS_set_thread_area,
        libc::SYS_set_tid_address,
        libc::SYS_setuid,
        libc::SYS_setxattr,
        libc::SYS_shmat,
        libc::SYS_shmctl,
        libc::SYS_shmdt,
        libc::SYS_shmget,
        libc::SYS_shutdown,
        libc::SYS_sigaltstack,
        libc::SYS_signalfd,
        libc::SYS_signalfd4,
        libc::SYS_socketpair,
        libc::SYS_splice,
        libc::SYS_stat,
        libc::SYS_statfs,
        libc::SYS_statx,
        libc::SYS_symlink,
        libc::SYS_symlinkat,
        libc::SYS_sync,
        libc::SYS_sync_file_range,
        libc::SYS_syncfs,
        libc::SYS_sysinfo,
        libc::SYS_tee,
        libc::SYS_tgkill,
        libc::SYS_time,
        libc::SYS_timer_create,
        libc::SYS_timer_delete,
        libc::SYS_timer_getoverrun,
        libc::SYS_timer_gettime,
        libc::SYS_timer_settime,
        libc::SYS_timerfd_create,
        libc::SYS_timerfd_gettime,
        libc::SYS_timerfd_settime,
        libc::SYS_times,
        libc::SYS_tkill,
        libc::SYS_truncate,
        libc::SYS_umask,
        libc::SYS_uname,
        libc::SYS_unlink,
        libc::SYS_unlinkat,
        libc::SYS_utime,
        libc::SYS_utimensat,
        libc::SYS_utimes,
        libc::SYS_vfork,
        libc::SYS_vmsplice,
        libc::SYS_wait4,
        libc::SYS_waitid,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_arch_prctl,
        libc::SYS_modify_ldt,
    ];

    /// Calls allowed only when the container holds a capability: (capability, calls).
    pub(super) const BY_CAPABILITY: &[(&str, &[i64])] = &[
        (
            "CAP_SYS_ADMIN",
            &[
                libc::SYS_bpf,
                libc::SYS_fanotify_init,
                libc::SYS_fsconfig,
                libc::SYS_fsmount,
                libc::SYS_fsopen,
                libc::SYS_fspick,
                libc::SYS_lookup_dcookie,
                libc::SYS_mount,
                libc::SYS_mount_setattr,
                libc::SYS_move_mount,
                libc::SYS_open_tree,
                libc::SYS_perf_event_open,
                libc::SYS_quotactl,
                libc::SYS_quotactl_fd,
                libc::SYS_setdomainname,
                libc::SYS_sethostname,
                libc::SYS_setns,
                libc::SYS_syslog,
                libc::SYS_umount2,
                libc::SYS_unshare,
            ],
        ),
        ("CAP_SYS_BOOT", &[libc::SYS_reboot]),
        ("CAP_SYS_CHROOT", &[libc::SYS_chroot]),
        (
            "CAP_SYS_MODULE",
            &[
                libc::SYS_delete_module,
                libc::SYS_init_module,
                libc::SYS_finit_module,
            ],
        ),
        ("CAP_SYS_PACCT", &[libc::SYS_acct]),
        (
            "CAP_SYS_PTRACE",
            &[
                libc::SYS_kcmp,
                libc::SYS_pidfd_getfd,
                libc::SYS_process_madvise,
                libc::SYS_process_vm_readv,
                libc::SYS_process_vm_writev,
            ],
        ),
        ("CAP_SYS_RAWIO", &[libc::SYS_iopl, libc::SYS_ioperm]),
        (
            "CAP_SYS_TIME",
            &[libc::SYS_settimeofday, libc::SYS_clock_settime],
        ),
        ("CAP_SYS_TTY_CONFIG", &[libc::SYS_vhangup]),
        (
            "CAP_SYS_NICE",
            &[
                libc::SYS_get_mempolicy,
                libc::SYS_mbind,
                libc::SYS_set_mempolicy,
            ],
        ),
        ("CAP_SYSLOG", &[libc::SYS_syslog]),
        ("CAP_BPF", &[libc::SYS_bpf]),
        ("CAP_PERFMON", &[libc::SYS_perf_event_open]),
    ];

    pub(super) const CLONE: i64 = libc::SYS_clone;
    pub(super) const CLONE3: i64 = libc::SYS_clone3;
    pub(super) const SOCKET: i64 = libc::SYS_socket;
    pub(super) const PERSONALITY: i64 = libc::SYS_personality;

    /// The number of a call by name (for Localhost profiles).
    pub(super) fn number(name: &str) -> Option<i64> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
    }

    /// The calls a Localhost profile may name.
    const NAMES: &[(&str, i64)] = &[
        ("accept", libc::SYS_accept),
        ("bind", libc::SYS_bind),
        ("chmod", libc::SYS_chmod),
        ("chown", libc::SYS_chown),
        ("clone", libc::SYS_clone),
        ("close", libc::SYS_close),
        ("connect", libc::SYS_connect),
        ("execve", libc::SYS_execve),
        ("exit", libc::SYS_exit),
        ("exit_group", libc::SYS_exit_group),
        ("fchmod", libc::SYS_fchmod),
        ("fchmodat", libc::SYS_fchmodat),
        ("fchown", libc::SYS_fchown),
        ("fchownat", libc::SYS_fchownat),
        ("getpid", libc::SYS_getpid),
        ("kill", libc::SYS_kill),
        ("listen", libc::SYS_listen),
        ("mkdir", libc::SYS_mkdir),
        ("mkdirat", libc::SYS_mkdirat),
        ("mount", libc::SYS_mount),
        ("open", libc::SYS_open),
        ("openat", libc::SYS_openat),
        ("ptrace", libc::SYS_ptrace),
        ("read", libc::SYS_read),
        ("reboot", libc::SYS_reboot),
        ("rmdir", libc::SYS_rmdir),
        ("setuid", libc::SYS_setuid),
        ("socket", libc::SYS_socket),
        ("umount2", libc::SYS_umount2),
        ("uname", libc::SYS_uname),
        ("unlink", libc::SYS_unlink),
        ("unlinkat", libc::SYS_unlinkat),
        ("unshare", libc::SYS_unshare),
        ("write", libc::SYS_write),
    ];
}

/// containerd's default profile for a container holding the capabilities `caps`: the main
/// filter, then (without `CAP_SYS_ADMIN`) one answering `clone3` with `ENOSYS`.
#[cfg(target_arch = "x86_64")]
pub fn runtime_default(caps: &BTreeSet<u32>) -> Result<Vec<BpfProgram>, String> {
    let holds = |name: &str| capability_number(name).is_some_and(|c| caps.contains(&c));
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in table::ALLOWED {
        rules.insert(*nr, Vec::new());
    }
    for (cap, calls) in table::BY_CAPABILITY {
        if holds(cap) {
            for nr in *calls {
                rules.insert(*nr, Vec::new());
            }
        }
    }
    let personalities = PERSONALITIES
        .iter()
        .map(|p| rule(vec![cond(0, SeccompCmpOp::Eq, *p)?]))
        .collect::<Result<Vec<_>, String>>()?;
    rules.insert(table::PERSONALITY, personalities);
    rules.insert(
        table::SOCKET,
        vec![rule(vec![cond(0, SeccompCmpOp::Ne, AF_VSOCK)?])?],
    );
    let sys_admin = holds("CAP_SYS_ADMIN");
    if sys_admin {
        rules.insert(table::CLONE, Vec::new());
        rules.insert(table::CLONE3, Vec::new());
    } else {
        rules.insert(
            table::CLONE,
            vec![rule(vec![cond(
                0,
                SeccompCmpOp::MaskedEq(CLONE_NAMESPACES),
                0,
            )?])?],
        );
    }
    let mut out = vec![compile(
        rules,
        SeccompAction::Errno(EPERM),
        SeccompAction::Allow,
    )?];
    if !sys_admin {
        out.push(compile(
            BTreeMap::from([(table::CLONE3, Vec::new())]),
            SeccompAction::Allow,
            SeccompAction::Errno(ENOSYS),
        )?);
    }
    Ok(out)
}

/// RuntimeDefault where no profile is built.
#[cfg(not(target_arch = "x86_64"))]
pub fn runtime_default(_caps: &BTreeSet<u32>) -> Result<Vec<BpfProgram>, String> {
    Err(arch().err().unwrap_or_default())
}

/// Compiles an OCI seccomp profile (JSON) of the calls [`table`] names.
fn localhost(text: &str) -> Result<BpfProgram, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Profile {
        default_action: String,
        #[serde(default)]
        default_errno_ret: Option<u32>,
        #[serde(default)]
        syscalls: Vec<Calls>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Calls {
        names: Vec<String>,
        action: String,
        #[serde(default)]
        errno_ret: Option<u32>,
        #[serde(default)]
        args: Option<Vec<serde_json::Value>>,
    }
    let action = |a: &str, errno: Option<u32>| -> Result<SeccompAction, String> {
        Ok(match a {
            "SCMP_ACT_ALLOW" => SeccompAction::Allow,
            "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno.unwrap_or(EPERM)),
            "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
            "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
            "SCMP_ACT_LOG" => SeccompAction::Log,
            "SCMP_ACT_TRAP" => SeccompAction::Trap,
            other => return Err(format!("unsupported seccomp action {other:?}")),
        })
    };
    let p: Profile =
        serde_json::from_str(text).map_err(|e| format!("invalid seccomp profile: {e}"))?;
    let default = action(&p.default_action, p.default_errno_ret)?;
    let mut matched: Option<SeccompAction> = None;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for c in &p.syscalls {
        if c.args.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err("seccomp profile rules with argument conditions are not supported".into());
        }
        let a = action(&c.action, c.errno_ret)?;
        if matched.as_ref().is_some_and(|m| *m != a) {
            return Err("seccomp profiles with more than one rule action are not supported".into());
        }
        matched = Some(a);
        for n in &c.names {
            #[cfg(target_arch = "x86_64")]
            let nr = table::number(n);
            #[cfg(not(target_arch = "x86_64"))]
            let nr: Option<i64> = None;
            let nr = nr.ok_or_else(|| format!("unknown system call {n:?} in seccomp profile"))?;
            rules.insert(nr, Vec::new());
        }
    }
    compile(rules, default, matched.unwrap_or(SeccompAction::Allow))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(add: &[&str], drop: &[&str]) -> SecurityConfig {
        SecurityConfig {
            confined: true,
            capabilities_add: add.iter().map(|s| s.to_string()).collect(),
            capabilities_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn capability_set(sec: &SecurityConfig) -> Result<BTreeSet<u32>, String> {
        capability_set_within(sec, &(0..41).collect())
    }

    fn names(set: &BTreeSet<u32>) -> Vec<&'static str> {
        set.iter().map(|c| CAPABILITIES[*c as usize]).collect()
    }

    #[test]
    fn capability_sets_follow_containerd() {
        assert_eq!(capability_set(&sec(&[], &[])).unwrap().len(), 14);
        let s = capability_set(&sec(&["NET_ADMIN"], &["KILL", "cap_chown"])).unwrap();
        assert!(names(&s).contains(&"CAP_NET_ADMIN"));
        assert!(!names(&s).contains(&"CAP_KILL") && !names(&s).contains(&"CAP_CHOWN"));
        assert_eq!(
            names(&capability_set(&sec(&["NET_BIND_SERVICE"], &["ALL"])).unwrap()),
            vec!["CAP_NET_BIND_SERVICE"]
        );
        assert_eq!(capability_set(&sec(&["ALL"], &[])).unwrap().len(), 41);
        assert!(capability_set(&sec(&[], &["ALL"])).unwrap().is_empty());
        assert!(capability_set(&sec(&["NOPE"], &[])).is_err());
        let privileged = SecurityConfig {
            privileged: true,
            ..sec(&[], &["ALL"])
        };
        assert_eq!(capability_set(&privileged).unwrap().len(), 41);
    }

    #[test]
    fn prepared_sets_and_filters() {
        let p = prepare(&SecurityConfig {
            seccomp: SeccompProfile::RuntimeDefault,
            ..sec(&[], &["ALL"])
        })
        .unwrap();
        assert_eq!(p.bounding_drop.as_ref().unwrap().len(), 41);
        assert_eq!(p.caps_root, [CapData::default(); 2]);
        assert_eq!(p.seccomp.len(), 2, "main filter + clone3 ENOSYS");
        let admin = prepare(&SecurityConfig {
            seccomp: SeccompProfile::RuntimeDefault,
            ..sec(&["SYS_ADMIN"], &[])
        })
        .unwrap();
        assert_eq!(admin.seccomp.len(), 1);
        assert_eq!(admin.caps_root[0].effective & (1 << 21), 1 << 21);
        let unconfined = prepare(&SecurityConfig::default()).unwrap();
        assert!(unconfined.bounding_drop.is_none() && unconfined.seccomp.is_empty());
    }

    #[test]
    fn localhost_profiles_compile() {
        let ok = r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#;
        assert!(localhost(ok).is_ok());
        assert!(localhost(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["nope"], "action": "SCMP_ACT_ERRNO"}]}"#).is_err());
        assert!(localhost("{").is_err());
    }
}
