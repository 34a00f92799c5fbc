//! The process backend: the conformance suite plus what only real processes can show
//! (namespaces, cgroups, fds, logs, zombies, daemons, OOM, surviving the agent). Runs as root
//! in CI; each test uses its own state directory and removes its sandboxes.

#[macro_use]
mod conformance;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use conformance::{Behaviour, Harness, LONG, sandbox, wait_exit};
use futures::FutureExt;
use podvisor_runtime::process::{ProcessRuntime, ProcessRuntimeConfig};
use podvisor_runtime::{
    ContainerConfig, ContainerRuntime, ContainerState, Resources, RuntimeError, SandboxConfig,
    Signal,
};

const SUPERVISOR: &str = env!("CARGO_BIN_EXE_podvisor-runtime-supervisor");

struct Proc {
    rt: ProcessRuntime,
    _dir: tempfile::TempDir,
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

impl Harness for Proc {
    type Runtime = ProcessRuntime;
    fn runtime(&self) -> &ProcessRuntime {
        &self.rt
    }
    fn container(&self, name: &str, b: Behaviour) -> ContainerConfig {
        let command = match b {
            Behaviour::Exit { after, code } => {
                sh(&format!("sleep {}; exit {code}", after.as_secs_f64()))
            }
            Behaviour::RunDefault => vec!["sleep".into(), "1000".into()],
            Behaviour::TrapTerm { code } => sh(&format!(
                "trap 'exit {code}' TERM; echo ready; while :; do sleep 0.05; done"
            )),
            Behaviour::IgnoreTerm => sh("trap '' TERM; echo ready; while :; do sleep 0.05; done"),
        };
        ContainerConfig {
            name: name.into(),
            command,
            ..Default::default()
        }
    }
    fn sandbox_id(&self, hint: &str) -> String {
        format!("{hint}-{:08x}", rand_u32())
    }
    async fn wait_ready(&self, id: &podvisor_runtime::ContainerId) {
        // The scripts print "ready" once their trap is set.
        let log = self.rt.container_status(id).await.expect("status").log_path;
        wait_until("the container is ready", || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains(" F ready"))
        })
        .await;
    }
}

fn rand_u32() -> u32 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id()) as u32
}

fn config(dir: &Path) -> ProcessRuntimeConfig {
    ProcessRuntimeConfig::new(dir.join("rt"), SUPERVISOR, vec![])
}

async fn harness_with(f: impl FnOnce(&mut ProcessRuntimeConfig)) -> Proc {
    let dir = tempfile::Builder::new()
        .prefix("pvrt")
        .tempdir()
        .expect("tempdir");
    let mut cfg = config(dir.path());
    f(&mut cfg);
    let rt = ProcessRuntime::new(cfg).await.expect("runtime");
    Proc { rt, _dir: dir }
}

async fn harness() -> Proc {
    harness_with(|_| {}).await
}

/// Runs a test body, then removes every sandbox the runtime knows, even if the body panicked.
async fn guarded<F: Future<Output = ()>>(h: &Proc, body: F) {
    let result = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    cleanup(&h.rt).await;
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

async fn cleanup(rt: &ProcessRuntime) {
    for s in rt.list().await.unwrap_or_default() {
        let _ = rt.remove_sandbox(&s.config.id).await;
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let h = harness().await;
            guarded(&h, conformance::$name(&h)).await;
        }
    )*};
}

all_cases!(conformance);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// PIDs of processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) && pid != std::process::id() {
                out.push(pid);
            }
        }
    }
    out
}

fn stat_of(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    Some((it.next()?.parse().ok()?, state))
}

/// Zombie children of `parent`.
fn zombies_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, 'Z')) = stat_of(pid)
            && ppid == parent
        {
            out.push(pid);
        }
    }
    out
}

fn unique_marker() -> String {
    // sleep accepts fractional seconds: a unique duration marks the test's processes.
    format!("1000.{:09}", rand_u32() % 1_000_000_000)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LONG;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn double_forked_daemon_dies_with_its_container() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let mut events = rt.subscribe();
        let sb = sandbox(&h, "daemon").await;
        let m = unique_marker();
        let cfg = ContainerConfig {
            name: "app".into(),
            command: sh(&format!(
                "(setsid sleep {m} &); (sleep {m} &); exec sleep {m}"
            )),
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        wait_until("three marked processes run", || {
            processes_with(&m).len() >= 3
        })
        .await;
        rt.signal(&id, Signal::KILL).await.expect("kill");
        let ev = wait_exit(&mut events, &id, LONG).await;
        assert_eq!(ev.status.exit_code, 137);
        assert_eq!(
            processes_with(&m),
            Vec::<u32>::new(),
            "processes survived the container's SIGKILL"
        );
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn main_exit_takes_the_rest_of_the_container_along() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let mut events = rt.subscribe();
        let sb = sandbox(&h, "mainexit").await;
        let m = unique_marker();
        let cfg = ContainerConfig {
            name: "app".into(),
            command: sh(&format!("(setsid sleep {m} &); sleep 0.3; exit 4")),
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let ev = wait_exit(&mut events, &id, LONG).await;
        assert_eq!(ev.status.exit_code, 4);
        assert_eq!(
            processes_with(&m),
            Vec::<u32>::new(),
            "an exit event means nothing of the container remains"
        );
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn orphans_are_reaped_no_zombies() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let mut events = rt.subscribe();
        let sb = sandbox(&h, "zombies").await;
        let sup = rt.supervisor_pid(&sb).expect("supervisor alive");
        // Twenty short-lived orphans (their parent subshell exits at once), then the main
        // process waits a little and exits.
        let cfg = ContainerConfig {
            name: "app".into(),
            command: sh("for i in $(seq 20); do (sleep 0.1 &); done; sleep 1"),
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // An exited orphan may be a zombie for a moment before the supervisor reaps it;
            // none may stay one.
            let z = zombies_of(sup);
            if !z.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let still: Vec<u32> = zombies_of(sup)
                    .into_iter()
                    .filter(|p| z.contains(p))
                    .collect();
                assert!(still.is_empty(), "zombies not reaped: {still:?}");
            }
        }
        let ev = wait_exit(&mut events, &id, LONG).await;
        assert_eq!(ev.status.exit_code, 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(zombies_of(sup), Vec::<u32>::new());
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn container_sees_only_stdio_fds() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let sb = sandbox(&h, "fds").await;
        // The agent side leaks an inheritable descriptor on purpose: it must not reach the container.
        let leaked = nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .expect("open");
        let cfg = ContainerConfig {
            name: "app".into(),
            command: vec!["sleep".into(), "30".into()],
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        let st = rt.start_container(&id).await.expect("start");
        let ContainerState::Running { pid: Some(pid), .. } = st.state else {
            panic!("not running: {:?}", st.state)
        };
        let stdio: BTreeSet<String> = ["0", "1", "2"].iter().map(|s| s.to_string()).collect();
        let open_fds = || -> BTreeSet<String> {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .expect("fd dir")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };
        // Right after the exec the dynamic loader briefly holds the libraries it maps (fd 3),
        // so look until that passes; a descriptor leaked from the agent never goes away.
        let mut fds = open_fds();
        for _ in 0..100 {
            if fds == stdio {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            fds = open_fds();
        }
        assert_eq!(fds, stdio);
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/fd/0")).expect("fd0"),
            PathBuf::from("/dev/null")
        );
        drop(leaked);
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

fn check_cri_line(line: &str) -> (String, String, String) {
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next().expect("timestamp").to_string();
    let stream = parts.next().expect("stream").to_string();
    let tag = parts.next().expect("tag").to_string();
    let body = parts.next().unwrap_or("").to_string();
    assert_eq!(
        ts.len(),
        "2026-11-25T09:23:05.123456789Z".len(),
        "timestamp {ts:?} in {line:?}"
    );
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{line:?}");
    assert!(stream == "stdout" || stream == "stderr", "{line:?}");
    assert!(tag == "F" || tag == "P", "{line:?}");
    (stream, tag, body)
}

#[tokio::test]
async fn logs_are_cri_formatted_rotated_and_kept_across_restarts() {
    let h = harness_with(|c| c.log_max_bytes = 4096).await;
    guarded(&h, async {
        let rt = &h.rt;
        let mut events = rt.subscribe();
        let sb = sandbox(&h, "logs").await;
        let cfg = ContainerConfig {
            name: "app".into(),
            command: sh("echo hello; echo oops >&2; printf 'no newline'"),
            ..Default::default()
        };
        let first = rt.create_container(&sb, cfg.clone()).await.expect("create");
        rt.start_container(&first).await.expect("start");
        wait_exit(&mut events, &first, LONG).await;
        let first_log = rt.container_status(&first).await.expect("status").log_path;
        let text = std::fs::read_to_string(&first_log).expect("log");
        let lines: Vec<_> = text.lines().map(check_cri_line).collect();
        assert!(lines.contains(&("stdout".into(), "F".into(), "hello".into())), "{text}");
        assert!(lines.contains(&("stderr".into(), "F".into(), "oops".into())), "{text}");
        assert!(lines.contains(&("stdout".into(), "F".into(), "no newline".into())), "{text}");

        // A second instance (a restart) logs elsewhere; the first log stays; rotation keeps
        // each file under the limit with one rotated file; long lines are split into P entries.
        let noisy = ContainerConfig {
            command: sh("i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done; head -c 40000 /dev/zero | tr '\\0' x; echo"),
            ..cfg
        };
        let second = rt.create_container(&sb, noisy).await.expect("create");
        rt.start_container(&second).await.expect("start");
        wait_exit(&mut events, &second, LONG).await;
        let second_log = rt.container_status(&second).await.expect("status").log_path;
        assert_ne!(first_log, second_log);
        assert_eq!(first_log.file_name().and_then(|n| n.to_str()), Some("0.log"));
        assert_eq!(second_log.file_name().and_then(|n| n.to_str()), Some("1.log"));
        assert!(std::fs::read_to_string(&first_log).expect("previous log kept").contains("hello"));
        let mut rotated = second_log.clone().into_os_string();
        rotated.push(".1");
        let current = std::fs::read_to_string(&second_log).expect("current");
        let older = std::fs::read_to_string(&rotated).expect("rotated file");
        for f in [&current, &older] {
            assert!(f.len() <= 4096 + 16 * 1024 + 64, "file of {} bytes", f.len());
            for l in f.lines() {
                check_cri_line(l);
            }
        }
        // Every 16 KiB piece of the 40000-byte line forces a rotation with a 4 KiB limit: the
        // rotated file ends with the second partial entry, the current one holds the rest.
        let (_, last_tag, last_body) = current.lines().map(check_cri_line).next_back().expect("entries");
        assert_eq!(last_tag, "F");
        assert_eq!(last_body.len(), 40000 - 2 * 16 * 1024);
        let (_, older_tag, older_body) = older.lines().map(check_cri_line).next_back().expect("entries");
        assert_eq!(older_tag, "P");
        assert_eq!(older_body.len(), 16 * 1024);
        rt.remove_sandbox(&sb).await.expect("remove");
        assert!(!first_log.exists(), "logs go with the sandbox");
    })
    .await;
}

#[tokio::test]
async fn exec_runs_in_the_container_with_a_timeout() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let sb = sandbox(&h, "exec").await;
        let cfg = ContainerConfig {
            name: "app".into(),
            command: vec!["sleep".into(), "1000".into()],
            env: vec![("GREETING".into(), "hi there".into())],
            working_dir: Some("/tmp".into()),
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let r = rt.exec(&id, &sh("echo $GREETING; pwd; hostname; echo err >&2; exit 3"), LONG).await.expect("exec");
        assert_eq!(r.exit_code, Some(3));
        assert!(!r.timed_out);
        let out = String::from_utf8_lossy(&r.output).into_owned();
        assert!(out.contains("hi there\n/tmp\n"), "{out}");
        assert!(out.contains("err"), "{out}");
        if is_root() {
            assert!(out.contains("exec\n"), "the sandbox hostname: {out}");
        }
        let m = unique_marker();
        let started = tokio::time::Instant::now();
        let r = rt.exec(&id, &sh(&format!("echo before; sleep {m}")), Duration::from_millis(300)).await.expect("exec");
        assert!(r.timed_out);
        assert_eq!(r.exit_code, None);
        assert_eq!(String::from_utf8_lossy(&r.output), "before\n");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        wait_until("the timed-out exec is gone", || processes_with(&m).is_empty()).await;
        let r = rt.exec(&id, &sh("head -c 50000 /dev/zero"), LONG).await.expect("exec");
        assert_eq!(r.output.len(), 10 * 1024);
        assert_eq!(r.exit_code, Some(0));
        let missing = rt.exec(&id, &["no-such-binary-pv".to_string()], LONG).await;
        assert!(matches!(&missing, Err(RuntimeError::StartFailed { message }) if message.contains("executable file not found")), "{missing:?}");
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn bad_commands_fail_with_clear_messages() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let sb = sandbox(&h, "badcmd").await;
        let empty = rt.create_container(&sb, ContainerConfig { name: "empty".into(), ..Default::default() }).await;
        assert!(matches!(&empty, Err(RuntimeError::StartFailed { message }) if message.contains("no command")), "{empty:?}");
        let cfg = ContainerConfig { name: "missing".into(), command: vec!["foo-not-here".into()], ..Default::default() };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        match rt.start_container(&id).await {
            Err(RuntimeError::StartFailed { message }) => {
                assert_eq!(message, "exec: \"foo-not-here\": executable file not found in $PATH")
            }
            other => panic!("{other:?}"),
        }
        let st = rt.container_status(&id).await.expect("status");
        assert!(matches!(&st.state, ContainerState::Exited(x) if x.exit_code == 128 && x.message.is_some()));
        let cfg = ContainerConfig {
            name: "badcwd".into(),
            command: vec!["true".into()],
            working_dir: Some("/no/such/dir".into()),
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        let r = rt.start_container(&id).await;
        assert!(matches!(&r, Err(RuntimeError::StartFailed { message }) if message.contains("/no/such/dir")), "{r:?}");
        // args alone form the command line when command is empty.
        let mut events = rt.subscribe();
        let cfg = ContainerConfig { name: "argsonly".into(), args: sh("exit 5"), ..Default::default() };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        assert_eq!(wait_exit(&mut events, &id, LONG).await.status.exit_code, 5);
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn env_user_and_namespaces_apply() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let mut events = rt.subscribe();
        let sb = sandbox(&h, "identity").await;
        let cfg = ContainerConfig {
            name: "app".into(),
            command: sh("echo $A-$B; id -u; id -g; hostname; echo $$"),
            env: vec![("A".into(), "1".into()), ("B".into(), "two".into())],
            uid: is_root().then_some(65534),
            gid: is_root().then_some(65534),
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let ev = wait_exit(&mut events, &id, LONG).await;
        assert_eq!(ev.status.exit_code, 0);
        let log = std::fs::read_to_string(rt.container_status(&id).await.expect("status").log_path)
            .expect("log");
        let out: Vec<String> = log.lines().map(|l| check_cri_line(l).2).collect();
        assert_eq!(out[0], "1-two");
        if is_root() {
            assert_eq!(out[1], "65534");
            assert_eq!(out[2], "65534");
            assert_eq!(out[3], "identity", "hostname is the sandbox's");
            let pid: u32 = out[4].parse().expect("pid");
            assert!(
                pid > 1 && pid < 100,
                "PID {pid} is in the sandbox's own pid namespace, not PID 1"
            );
        }
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

/// Runs `script` in a container of its own sandbox with `security`, uid and gid; returns
/// its output lines (or the start error).
async fn run_confined(
    h: &Proc,
    name: &str,
    script: &str,
    uid: Option<u32>,
    security: podvisor_runtime::SecurityConfig,
) -> Result<Vec<String>, String> {
    let rt = &h.rt;
    let mut events = rt.subscribe();
    let sb = sandbox(h, name).await;
    let cfg = ContainerConfig {
        name: "app".into(),
        command: sh(script),
        uid,
        gid: uid,
        security,
        ..Default::default()
    };
    let id = rt.create_container(&sb, cfg).await.expect("create");
    if let Err(e) = rt.start_container(&id).await {
        rt.remove_sandbox(&sb).await.expect("remove");
        return Err(e.to_string());
    }
    wait_exit(&mut events, &id, LONG).await;
    let log = std::fs::read_to_string(rt.container_status(&id).await.expect("status").log_path)
        .expect("log");
    rt.remove_sandbox(&sb).await.expect("remove");
    Ok(log.lines().map(|l| check_cri_line(l).2).collect())
}

/// securityContext as seen from inside: uid/gid/supplementary groups, the capability sets,
/// no_new_privs, the seccomp mode and what the RuntimeDefault profile refuses, a read-only
/// root, privileged.
#[tokio::test]
async fn security_settings_apply_inside_the_container() {
    if !is_root() {
        return;
    }
    use podvisor_runtime::{SeccompProfile, SecurityConfig};
    let h = harness().await;
    guarded(&h, async {
        const STATUS: &str =
            "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '";
        let restricted = SecurityConfig {
            confined: true,
            supplemental_groups: vec![3000, 4000],
            capabilities_add: vec!["NET_BIND_SERVICE".into()],
            capabilities_drop: vec!["ALL".into()],
            no_new_privileges: true,
            read_only_root_filesystem: true,
            seccomp: SeccompProfile::RuntimeDefault,
            ..Default::default()
        };
        let out = run_confined(
            &h,
            "restricted",
            &format!("id -u; id -G; {STATUS}; touch /should-fail 2>/dev/null; echo touch=$?"),
            Some(1000),
            restricted,
        )
        .await
        .expect("start");
        assert_eq!(
            out,
            vec![
                "1000",
                "1000 3000 4000",
                "CapEff: 0000000000000000",
                "CapBnd: 0000000000000400",
                "NoNewPrivs: 1",
                "Seccomp: 2",
                "touch=1",
            ]
        );
        // Root with containerd's default set under RuntimeDefault: unshare is refused.
        let out = run_confined(
            &h,
            "defaults",
            &format!("id -u; {STATUS}; unshare -n true 2>/dev/null; echo unshare=$?"),
            None,
            SecurityConfig {
                confined: true,
                seccomp: SeccompProfile::RuntimeDefault,
                ..Default::default()
            },
        )
        .await
        .expect("start");
        assert_eq!(
            out,
            vec![
                "0",
                "CapEff: 00000000a80425fb",
                "CapBnd: 00000000a80425fb",
                "NoNewPrivs: 0",
                "Seccomp: 2",
                "unshare=1",
            ]
        );
        let out = run_confined(
            &h,
            "privileged",
            STATUS,
            None,
            SecurityConfig {
                confined: true,
                privileged: true,
                seccomp: SeccompProfile::RuntimeDefault,
                ..Default::default()
            },
        )
        .await
        .expect("start");
        // Privileged: every capability the runtime holds itself.
        let own = std::fs::read_to_string("/proc/self/status").expect("status");
        let bnd = own
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .expect("CapBnd")
            .trim()
            .to_string();
        assert_eq!(
            out,
            vec![
                format!("CapEff: {bnd}"),
                format!("CapBnd: {bnd}"),
                "NoNewPrivs: 0".to_string(),
                "Seccomp: 0".to_string(),
            ]
        );
        let bad = run_confined(
            &h,
            "badcap",
            "true",
            None,
            SecurityConfig {
                confined: true,
                capabilities_add: vec!["NOT_A_CAP".into()],
                ..Default::default()
            },
        )
        .await
        .expect_err("an unknown capability fails the start");
        assert!(bad.contains("unknown capability \"NOT_A_CAP\""), "{bad}");
    })
    .await;
}

#[tokio::test]
async fn oom_kill_is_reported() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let memory_cgroup = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| {
                m.lines()
                    .any(|l| l.contains(" - cgroup ") && l.contains("memory"))
                    || m.contains(" - cgroup2 ")
            })
            .unwrap_or(false);
        if !is_root() || !memory_cgroup {
            eprintln!("skipping: no writable memory cgroup (not root or not mounted)");
            return;
        }
        let mut events = rt.subscribe();
        let sb = sandbox(&h, "oom").await;
        let cfg = ContainerConfig {
            name: "hog".into(),
            command: vec![
                "python3".into(),
                "-c".into(),
                "x = b'a' * (256 * 1024 * 1024)".into(),
            ],
            resources: Resources {
                memory_limit_bytes: Some(32 * 1024 * 1024),
                ..Default::default()
            },
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let ev = wait_exit(&mut events, &id, LONG).await;
        assert!(ev.status.oom_killed, "{:?}", ev.status);
        assert_eq!(ev.status.exit_code, 137);
        assert_eq!(ev.status.signal, Some(Signal::KILL));
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn supervisor_survives_its_agent_and_exits_are_readopted() {
    let dir = tempfile::Builder::new()
        .prefix("pvrt")
        .tempdir()
        .expect("tempdir");
    let state = dir.path().join("rt");
    let sb = format!("survive-{:08x}", rand_u32());
    // A separate agent process creates the sandbox and a container that exits with 7 after
    // a while; the agent is killed with SIGKILL before that.
    let mut agent = tokio::process::Command::new(SUPERVISOR)
        .arg("test-agent")
        .arg(&state)
        .arg(&sb)
        .args(["sh", "-c", "sleep 1; exit 7"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn agent");
    let mut line = String::new();
    let stdout = agent.stdout.take().expect("stdout");
    use tokio::io::AsyncBufReadExt;
    tokio::time::timeout(LONG, tokio::io::BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("agent answers")
        .expect("read");
    let id = podvisor_runtime::ContainerId(line.trim().to_string());
    assert!(!id.0.is_empty(), "the agent failed");
    agent.start_kill().expect("kill -9 the agent");
    agent.wait().await.expect("reap the agent");

    let rt = ProcessRuntime::new(ProcessRuntimeConfig::new(&state, SUPERVISOR, vec![]))
        .await
        .expect("runtime");
    let h = Proc { rt, _dir: dir };
    guarded(&h, async {
        let rt = &h.rt;
        let sup = rt
            .supervisor_pid(&sb)
            .expect("the supervisor outlived its agent");
        // Wait for the exit that happens while no runtime instance was listening at first.
        wait_until("the exit is recorded", || {
            std::fs::read_dir(rt.sandbox_dir(&sb).join("containers"))
                .is_ok_and(|rd| rd.flatten().any(|e| e.path().join("exit.json").exists()))
        })
        .await;
        let fresh = ProcessRuntime::new(ProcessRuntimeConfig::new(&state, SUPERVISOR, vec![]))
            .await
            .expect("runtime");
        let all = fresh.list().await.expect("list");
        let s = all
            .iter()
            .find(|s| s.config.id == sb)
            .expect("re-adopted sandbox");
        assert_eq!(s.containers.len(), 1, "nothing was restarted");
        assert_eq!(s.containers[0].id, id);
        assert!(
            matches!(&s.containers[0].state, ContainerState::Exited(x) if x.exit_code == 7),
            "{:?}",
            s.containers[0].state
        );
        assert_eq!(fresh.supervisor_pid(&sb), Some(sup), "same supervisor");
        // The re-adopted sandbox reports later exits on the event stream.
        let mut events = fresh.subscribe();
        let cfg = ContainerConfig {
            name: "later".into(),
            command: sh("exit 9"),
            ..Default::default()
        };
        let later = fresh.create_container(&sb, cfg).await.expect("create");
        fresh.start_container(&later).await.expect("start");
        assert_eq!(
            wait_exit(&mut events, &later, LONG).await.status.exit_code,
            9
        );
        fresh.remove_sandbox(&sb).await.expect("remove");
        wait_until("the supervisor exits", || {
            fresh.supervisor_pid(&sb).is_none() && stat_of(sup).is_none_or(|(_, s)| s == 'Z')
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn killed_supervisor_is_reported_as_lost() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let mut events = rt.subscribe();
        let sb = sandbox(&h, "lost").await;
        let m = unique_marker();
        let cfg = ContainerConfig {
            name: "app".into(),
            command: vec!["sleep".into(), m.clone()],
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let sup = rt.supervisor_pid(&sb).expect("supervisor");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sup as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
        let ev = wait_exit(&mut events, &id, LONG).await;
        assert_eq!(ev.status.exit_code, 137);
        assert!(
            ev.status
                .message
                .as_deref()
                .is_some_and(|m| m.contains("supervisor"))
        );
        wait_until("the container is gone", || processes_with(&m).is_empty()).await;
        let all = rt.list().await.expect("list");
        assert_eq!(
            all.iter().find(|s| s.config.id == sb).map(|s| s.state),
            Some(podvisor_runtime::SandboxState::NotReady)
        );
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn sandbox_removal_ends_the_supervisor_and_cgroups() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let sb = sandbox(&h, "removal").await;
        let sup = rt.supervisor_pid(&sb).expect("supervisor");
        let cfg = ContainerConfig {
            name: "app".into(),
            command: vec!["sleep".into(), "1000".into()],
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let cgroups: Vec<PathBuf> = std::fs::read_to_string(format!("/proc/{sup}/cgroup"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
            .collect::<Vec<_>>()
            .into_iter()
            .map(PathBuf::from)
            .collect();
        let _ = cgroups;
        let sandbox_cgroups: Vec<PathBuf> = ["memory", "pids", "freezer", "cpu", "unified"]
            .iter()
            .filter_map(|h| find_dir(Path::new("/sys/fs/cgroup").join(h).as_path(), &sb))
            .collect();
        if is_root() {
            assert!(!sandbox_cgroups.is_empty(), "the sandbox has cgroups");
        }
        rt.remove_sandbox(&sb).await.expect("remove");
        assert!(
            stat_of(sup).is_none_or(|(_, s)| s == 'Z'),
            "the supervisor exited"
        );
        for d in sandbox_cgroups {
            assert!(!d.exists(), "{} removed", d.display());
        }
        assert!(!rt.sandbox_dir(&sb).exists());
    })
    .await;
}

/// Finds a directory named `name` below `root` (depth-first, a few levels).
fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    fn walk(d: &Path, name: &str, depth: u32) -> Option<PathBuf> {
        if depth > 6 {
            return None;
        }
        for e in std::fs::read_dir(d).ok()?.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if e.file_name() == name {
                return Some(p);
            }
            if let Some(f) = walk(&p, name, depth + 1) {
                return Some(f);
            }
        }
        None
    }
    walk(root, name, 0)
}

#[tokio::test]
async fn sandbox_ids_are_validated() {
    let h = harness().await;
    let r =
        h.rt.create_sandbox(SandboxConfig {
            id: "../escape".into(),
            ..Default::default()
        })
        .await;
    assert!(matches!(r, Err(RuntimeError::StartFailed { .. })), "{r:?}");
    h.rt.remove_sandbox("../escape")
        .await
        .expect("removing a non-existent sandbox succeeds");
}

fn spare_dirs(rt: &ProcessRuntime) -> Vec<PathBuf> {
    let base = rt.sandbox_dir("x");
    let sandboxes = base.parent().expect("sandboxes dir");
    std::fs::read_dir(sandboxes)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(".spare-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn spare_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("supervisor.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("host_pid")?.as_u64().map(|p| p as u32)
}

#[tokio::test]
async fn spare_supervisors_are_adopted_and_ended_with_the_runtime() {
    let h = harness_with(|c| c.spare_supervisors = 2).await;
    let mut spare_pids = Vec::new();
    guarded(&h, async {
        let rt = &h.rt;
        wait_until("two spares are ready", || {
            spare_dirs(rt)
                .iter()
                .filter(|d| spare_pid(d).is_some())
                .count()
                == 2
        })
        .await;
        let before: Vec<u32> = spare_dirs(rt).iter().filter_map(|d| spare_pid(d)).collect();
        let mut sandboxes = Vec::new();
        for i in 0..3 {
            let sb = sandbox(&h, &format!("spare{i}")).await;
            let cfg = ContainerConfig {
                name: "app".into(),
                command: vec!["sleep".into(), "1000".into()],
                ..Default::default()
            };
            let id = rt.create_container(&sb, cfg).await.expect("create");
            rt.start_container(&id).await.expect("start");
            let r = rt.exec(&id, &sh("hostname"), LONG).await.expect("exec");
            if is_root() {
                assert_eq!(String::from_utf8_lossy(&r.output), format!("spare{i}\n"));
            }
            sandboxes.push(sb);
        }
        let used: Vec<u32> = sandboxes
            .iter()
            .filter_map(|s| rt.supervisor_pid(s))
            .collect();
        assert_eq!(used.len(), 3);
        assert!(
            before.iter().any(|p| used.contains(p)),
            "a spare was adopted: {before:?} {used:?}"
        );
        wait_until("the pool is refilled", || {
            spare_dirs(rt)
                .iter()
                .filter(|d| spare_pid(d).is_some())
                .count()
                == 2
        })
        .await;
        spare_pids = spare_dirs(rt).iter().filter_map(|d| spare_pid(d)).collect();
        for sb in sandboxes {
            rt.remove_sandbox(&sb).await.expect("remove");
        }
    })
    .await;
    let state = h.rt.sandbox_dir("x");
    drop(h.rt);
    for pid in spare_pids {
        // The spare answers the shutdown and exits; give the kernel up to 5 s to finish it.
        for _ in 0..250 {
            if stat_of(pid).is_none_or(|(_, s)| s == 'Z') {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            stat_of(pid).is_none_or(|(_, s)| s == 'Z'),
            "spare {pid} ended with its runtime: {:?}",
            stat_of(pid)
        );
    }
    let sandboxes = state.parent().expect("dir").to_path_buf();
    let left: Vec<_> = std::fs::read_dir(&sandboxes)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn works_without_namespaces_cgroups_or_spares() {
    let h = harness_with(|c| {
        c.namespaces = false;
        c.cgroups = false;
        c.spare_supervisors = 0;
    })
    .await;
    guarded(&h, async {
        let rt = &h.rt;
        let mut events = rt.subscribe();
        let sb = sandbox(&h, "plain").await;
        let m = unique_marker();
        let cfg = ContainerConfig {
            name: "app".into(),
            command: sh(&format!("(setsid sleep {m} &); sleep {m}")),
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        let st = rt.start_container(&id).await.expect("start");
        let ContainerState::Running { pid: Some(pid), .. } = st.state else {
            panic!("{:?}", st.state)
        };
        wait_until("both marked processes run", || {
            processes_with(&m).len() >= 2
        })
        .await;
        rt.signal(&id, Signal::TERM).await.expect("term");
        let ev = wait_exit(&mut events, &id, LONG).await;
        assert_eq!(
            (ev.status.exit_code, ev.status.signal),
            (143, Some(Signal::TERM))
        );
        assert!(stat_of(pid).is_none(), "the main process is reaped");
        // The setsid daemon left the process group; it dies with the sandbox.
        rt.remove_sandbox(&sb).await.expect("remove");
        wait_until("the escaped daemon is killed", || {
            processes_with(&m).is_empty()
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn limits_join_the_v1_hierarchies() {
    let h = harness().await;
    guarded(&h, async {
        if !is_root() {
            eprintln!("skipping: cgroups need root");
            return;
        }
        let rt = &h.rt;
        let sb = sandbox(&h, "limits").await;
        let cfg = ContainerConfig {
            name: "app".into(),
            command: vec!["sleep".into(), "1000".into()],
            resources: Resources {
                pids_limit: Some(64),
                cpu_limit_millis: Some(500),
                memory_limit_bytes: Some(64 << 20),
                ..Default::default()
            },
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        let st = rt.start_container(&id).await.expect("start");
        let ContainerState::Running { pid: Some(pid), .. } = st.state else {
            panic!("{:?}", st.state)
        };
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
        for (ctl, file, want) in [
            ("pids", "pids.max", "64"),
            ("memory", "memory.limit_in_bytes", "67108864"),
            ("cpu", "cpu.cfs_quota_us", "50000"),
        ] {
            let line = cgroups
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|x| x == ctl))
                })
                .unwrap_or_else(|| panic!("no {ctl} line in {cgroups}"));
            let path = line.splitn(3, ':').nth(2).expect("path");
            assert!(path.ends_with(&format!("{sb}/{}", id.0)), "{ctl}: {path}");
            let mount = if ctl == "cpu" && !Path::new("/sys/fs/cgroup/cpu").exists() {
                "cpu,cpuacct"
            } else {
                ctl
            };
            let value = std::fs::read_to_string(format!("/sys/fs/cgroup/{mount}{path}/{file}"))
                .expect("limit file");
            assert_eq!(value.trim(), want, "{ctl}");
        }
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn a_spare_whose_runtime_died_exits_by_itself() {
    let dir = tempfile::Builder::new()
        .prefix("pvrt")
        .tempdir()
        .expect("tempdir");
    let state = dir.path().join("rt");
    // A runtime in another process keeps a spare; that process is killed with SIGKILL.
    let mut agent = tokio::process::Command::new(SUPERVISOR)
        .arg("test-agent")
        .arg(&state)
        .arg(format!("sparedeath-{:08x}", rand_u32()))
        .args(["sleep", "1000"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn agent");
    let stdout = agent.stdout.take().expect("stdout");
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    tokio::time::timeout(LONG, tokio::io::BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("agent answers")
        .expect("read");
    let sandboxes = state.join("sandboxes");
    let spare_pids = || -> Vec<u32> {
        std::fs::read_dir(&sandboxes)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".spare-"))
                    .filter_map(|e| spare_pid(&e.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until("the agent's spare is ready", || !spare_pids().is_empty()).await;
    let spares = spare_pids();
    agent.start_kill().expect("kill -9 the agent");
    agent.wait().await.expect("reap");
    wait_until("the orphaned spare exits", || {
        spares
            .iter()
            .all(|p| stat_of(*p).is_none_or(|(_, s)| s == 'Z'))
    })
    .await;
    // The sandbox itself lives on; clean it up through a fresh runtime.
    let rt = ProcessRuntime::new(ProcessRuntimeConfig::new(&state, SUPERVISOR, vec![]))
        .await
        .expect("runtime");
    let h = Proc { rt, _dir: dir };
    cleanup(&h.rt).await;
}

#[tokio::test]
async fn concurrent_creation_of_one_id_yields_one_sandbox() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let id = h.sandbox_id("race");
        let cfg = SandboxConfig {
            id: id.clone(),
            hostname: "race".into(),
            ..Default::default()
        };
        let (a, b) = tokio::join!(rt.create_sandbox(cfg.clone()), rt.create_sandbox(cfg));
        let oks = [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count();
        assert_eq!(oks, 1, "{a:?} {b:?}");
        for r in [a, b] {
            if let Err(e) = r {
                assert!(matches!(e, RuntimeError::AlreadyExists { .. }), "{e:?}");
            }
        }
        let all = rt.list().await.expect("list");
        let s = all.iter().find(|s| s.config.id == id).expect("listed");
        assert_eq!(s.state, podvisor_runtime::SandboxState::Ready);
        rt.remove_sandbox(&id).await.expect("remove");
    })
    .await;
}

/// The log content lines of a container.
async fn log_lines(rt: &ProcessRuntime, id: &podvisor_runtime::ContainerId) -> Vec<String> {
    let log = std::fs::read_to_string(rt.container_status(id).await.expect("status").log_path)
        .unwrap_or_default();
    log.lines().map(|l| check_cri_line(l).2).collect()
}

/// Whether `path` is a mount point in this (the host's) mount namespace.
fn host_mounts_contain(path: &Path) -> bool {
    let p = path.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// Creates and starts container `cfg` (named `app`, printing `ready`) and waits for that
/// line; without root, checks that the start is refused for want of a mount namespace.
async fn start_ready_as_root(
    rt: &ProcessRuntime,
    sb: &str,
    cfg: ContainerConfig,
) -> Option<podvisor_runtime::ContainerId> {
    let id = rt.create_container(sb, cfg).await.expect("create");
    let started = rt.start_container(&id).await;
    if !is_root() {
        let err = started.expect_err("a private mount namespace needs root");
        assert!(err.to_string().contains("mount namespace"), "{err}");
        return None;
    }
    started.expect("start");
    wait_until("the container is ready", || {
        std::fs::read_to_string(rt.sandbox_dir(sb).join("logs").join("app").join("0.log"))
            .is_ok_and(|l| l.contains(" F ready"))
    })
    .await;
    Some(id)
}

#[tokio::test]
async fn mounts_are_private_to_the_container_and_read_only_holds() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let base = h._dir.path().join("vol");
        let (src, ro_src, file_src) = (base.join("src"), base.join("ro-src"), base.join("f.txt"));
        std::fs::create_dir_all(&src).expect("src");
        std::fs::create_dir_all(&ro_src).expect("ro src");
        std::fs::write(src.join("hello"), "from the volume").expect("hello");
        std::fs::write(src.join("run.sh"), "#!/bin/sh\necho script ran\n").expect("script");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        std::fs::write(&file_src, "one file").expect("file");
        // Mount points that do not exist yet (created on the host, left empty there).
        let (tgt, ro_tgt, file_tgt) = (
            base.join("in/a/b"),
            base.join("in/ro"),
            base.join("in/file.txt"),
        );
        let mounts = vec![
            podvisor_runtime::Mount {
                source: src.clone(),
                target: tgt.clone(),
                read_only: false,
            },
            podvisor_runtime::Mount {
                source: ro_src.clone(),
                target: ro_tgt.clone(),
                read_only: true,
            },
            podvisor_runtime::Mount {
                source: file_src.clone(),
                target: file_tgt.clone(),
                read_only: false,
            },
        ];
        let sb = sandbox(&h, "mounts").await;
        let mut events = rt.subscribe();
        let script = format!(
            "cat {t}/hello; echo; cat {f}; echo; \
             touch {r}/x 2>/dev/null && echo ro-writable || echo ro-refused; \
             touch {t}/written && echo rw-ok; echo ready; sleep 1000",
            t = tgt.display(),
            r = ro_tgt.display(),
            f = file_tgt.display()
        );
        let cfg = ContainerConfig {
            name: "app".into(),
            command: sh(&script),
            mounts: mounts.clone(),
            ..Default::default()
        };
        let Some(id) = start_ready_as_root(rt, &sb, cfg).await else {
            return;
        };
        let out = log_lines(rt, &id).await;
        assert_eq!(
            out[..4],
            ["from the volume", "one file", "ro-refused", "rw-ok"],
            "{out:?}"
        );
        // Writes through the read-write mount reach the source; nothing is mounted on the host.
        assert!(src.join("written").exists());
        assert!(!ro_src.join("x").exists());
        assert!(
            tgt.is_dir() && ro_tgt.is_dir() && file_tgt.is_file(),
            "mount points made"
        );
        assert_eq!(std::fs::read_dir(&tgt).expect("host view").count(), 0);
        assert_eq!(std::fs::read_to_string(&file_tgt).expect("host file"), "");
        assert!(!host_mounts_contain(&tgt) && !host_mounts_contain(&file_tgt));
        // Execs see the container's mounts, and find executables inside them.
        let r = rt
            .exec(
                &id,
                &["cat".into(), tgt.join("hello").display().to_string()],
                LONG,
            )
            .await
            .expect("exec");
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(r.output, b"from the volume");
        let r = rt
            .exec(&id, &[tgt.join("run.sh").display().to_string()], LONG)
            .await
            .expect("exec a script in the volume");
        assert_eq!(String::from_utf8_lossy(&r.output), "script ran\n");
        rt.signal(&id, Signal::KILL).await.expect("kill");
        wait_exit(&mut events, &id, LONG).await;
        // A command inside a volume also starts as a container.
        let cfg = ContainerConfig {
            name: "script".into(),
            command: vec![tgt.join("run.sh").display().to_string()],
            mounts,
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        assert_eq!(wait_exit(&mut events, &id, LONG).await.status.exit_code, 0);
        assert_eq!(log_lines(rt, &id).await, ["script ran"]);
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn a_mount_that_fails_is_a_start_error() {
    if !is_root() {
        return;
    }
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let base = h._dir.path().join("vol");
        std::fs::create_dir_all(base.join("dir")).expect("dir");
        std::fs::write(base.join("file"), "x").expect("file");
        let sb = sandbox(&h, "badmount").await;
        let cases = [
            (base.join("missing"), base.join("t1"), "mount source"),
            // a directory over an existing file
            (base.join("dir"), base.join("file"), "error mounting"),
        ];
        for (i, (source, target, want)) in cases.into_iter().enumerate() {
            let cfg = ContainerConfig {
                name: format!("c{i}"),
                command: sh("true"),
                mounts: vec![podvisor_runtime::Mount {
                    source,
                    target,
                    read_only: false,
                }],
                ..Default::default()
            };
            let id = rt.create_container(&sb, cfg).await.expect("create");
            let err = rt.start_container(&id).await.expect_err("mount fails");
            assert!(
                matches!(&err, RuntimeError::StartFailed { message } if message.contains(want)),
                "{err}"
            );
            match rt.container_status(&id).await.expect("status").state {
                ContainerState::Exited(e) => {
                    assert_eq!(e.exit_code, 128);
                    assert!(e.message.is_some_and(|m| m.contains(want)));
                }
                other => panic!("{other:?}"),
            }
        }
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

fn termination(path: &Path, fallback: bool) -> Option<podvisor_runtime::TerminationMessage> {
    Some(podvisor_runtime::TerminationMessage {
        path: path.to_path_buf(),
        fallback_to_logs_on_error: fallback,
    })
}

#[tokio::test]
async fn termination_message_file_is_per_instance_and_survives_readoption() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let path = h._dir.path().join("dev/termination-log");
        let sb = sandbox(&h, "termmsg").await;
        let mut events = rt.subscribe();
        let run = |script: &str| ContainerConfig {
            name: "app".into(),
            command: sh(script),
            termination_message: termination(&path, false),
            ..Default::default()
        };
        let first = rt
            .create_container(
                &sb,
                run(&format!(
                    "printf DONE > {p}; ls -l {p} | cut -c1-10",
                    p = path.display()
                )),
            )
            .await
            .expect("create");
        let file = rt
            .sandbox_dir(&sb)
            .join("containers")
            .join(&first.0)
            .join("termination-log");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o666);
        }
        rt.start_container(&first).await.expect("start");
        let ev = wait_exit(&mut events, &first, LONG).await;
        if !is_root() {
            // Without a mount namespace the container wrote the host path itself.
            return;
        }
        assert_eq!(ev.status.termination_message.as_deref(), Some("DONE"));
        assert_eq!(log_lines(rt, &first).await, ["-rw-rw-rw-"]);
        assert_eq!(
            std::fs::read_to_string(&path).expect("host mount point"),
            "",
            "the host file is only the mount point"
        );
        // The next instance starts with an empty file of its own.
        let second = rt
            .create_container(&sb, run(&format!("cat {}; exit 3", path.display())))
            .await
            .expect("create");
        rt.start_container(&second).await.expect("start");
        let ev = wait_exit(&mut events, &second, LONG).await;
        assert_eq!(ev.status.exit_code, 3);
        assert_eq!(ev.status.termination_message, None);
        assert!(log_lines(rt, &second).await.is_empty());
        // The message is in the exit record: a new runtime instance reads it back.
        let fresh = ProcessRuntime::new(config(h._dir.path()))
            .await
            .expect("runtime");
        let all = fresh.list().await.expect("list");
        let c = all
            .iter()
            .flat_map(|s| &s.containers)
            .find(|c| c.id == first)
            .expect("listed");
        assert!(
            matches!(&c.state, ContainerState::Exited(e) if e.termination_message.as_deref() == Some("DONE")),
            "{:?}",
            c.state
        );
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn termination_message_falls_back_to_the_log_only_on_error() {
    if !is_root() {
        return;
    }
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let path = h._dir.path().join("termination-log");
        let p = path.display().to_string();
        let sb = sandbox(&h, "fallback").await;
        let mut events = rt.subscribe();
        let long: String = (0..200).map(|i| format!("echo line{i}; ")).collect();
        let cases: Vec<(String, bool, Option<String>)> = vec![
            ("echo -n DONE; false".into(), true, Some("DONE".into())),
            ("echo -n DONE; true".into(), true, None),
            (
                format!("echo -n OK > {p}; echo DONE; false"),
                true,
                Some("OK".into()),
            ),
            (
                format!("echo -n OK > {p}; echo DONE; true"),
                true,
                Some("OK".into()),
            ),
            ("echo DONE; exit 2".into(), false, None),
            (
                "echo out; echo err >&2; exit 1".into(),
                true,
                Some("out\nerr".into()),
            ),
            (
                format!("{long} exit 1"),
                true,
                Some(
                    (120..200)
                        .map(|i| format!("line{i}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
            ),
        ];
        for (i, (script, fallback, want)) in cases.into_iter().enumerate() {
            let cfg = ContainerConfig {
                name: format!("c{i}"),
                command: sh(&script),
                termination_message: termination(&path, fallback),
                ..Default::default()
            };
            let id = rt.create_container(&sb, cfg).await.expect("create");
            rt.start_container(&id).await.expect("start");
            let ev = wait_exit(&mut events, &id, LONG).await;
            assert_eq!(ev.status.termination_message, want, "case {i}: {script}");
        }
        // Bounded to 2048 bytes of the tail.
        let big = "x".repeat(3000);
        let cfg = ContainerConfig {
            name: "big".into(),
            command: sh(&format!("echo {big}; echo -n END; exit 1")),
            termination_message: termination(&path, true),
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let m = wait_exit(&mut events, &id, LONG)
            .await
            .status
            .termination_message
            .expect("message");
        assert_eq!(m.len(), 2048);
        assert!(m.ends_with("x\nEND"), "{}", &m[m.len() - 10..]);
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

/// A root filesystem of two layers made from the host's busybox-static: the top one
/// overrides `/etc/os-release`.
fn busybox_layers(base: &Path) -> Option<Vec<PathBuf>> {
    let busybox = std::fs::read("/bin/busybox").ok()?;
    let (top, low) = (base.join("top"), base.join("low"));
    for d in [low.join("bin"), low.join("etc"), top.join("etc")] {
        std::fs::create_dir_all(d).expect("layer dir");
    }
    std::fs::write(low.join("bin/busybox"), busybox).expect("busybox");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            low.join("bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
    }
    for applet in ["sh", "cat", "ls", "sleep", "test", "echo", "touch", "grep"] {
        std::os::unix::fs::symlink("busybox", low.join("bin").join(applet)).expect("applet");
    }
    std::fs::write(low.join("etc/os-release"), "ID=low\n").expect("os-release");
    std::fs::write(top.join("etc/os-release"), "ID=rootfs-test\n").expect("os-release");
    Some(vec![top, low])
}

/// [`busybox_layers`] in the harness's directory; None (with a note) without busybox.
fn image_layers(h: &Proc) -> Option<Vec<PathBuf>> {
    let layers = busybox_layers(&h._dir.path().join("image"));
    if layers.is_none() {
        eprintln!("skipping: no /bin/busybox (Debian package busybox-static)");
    }
    layers
}

#[tokio::test]
async fn a_container_runs_in_its_own_root_filesystem() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let Some(layers) = image_layers(&h) else {
            return;
        };
        let vol = h._dir.path().join("vol");
        std::fs::create_dir_all(&vol).expect("vol");
        let sb = sandbox(&h, "rootfs").await;
        let mut events = rt.subscribe();
        let cfg = ContainerConfig {
            name: "app".into(),
            command: sh(
                "cat /etc/os-release; touch /written; test -c /dev/null && echo dev; \
                 test -e /proc/self/status && echo proc; ls /data; echo ready; sleep 1000",
            ),
            mounts: vec![podvisor_runtime::Mount {
                source: vol.clone(),
                target: "/data".into(),
                read_only: false,
            }],
            working_dir: Some("/work/dir".into()),
            rootfs: Some(podvisor_runtime::RootFs {
                layers: layers.clone(),
            }),
            ..Default::default()
        };
        std::fs::write(vol.join("in-volume"), "").expect("vol file");
        let Some(id) = start_ready_as_root(rt, &sb, cfg).await else {
            return;
        };
        assert_eq!(
            log_lines(rt, &id).await[..4],
            ["ID=rootfs-test", "dev", "proc", "in-volume"]
        );
        // Execs see the same root, working directory included.
        let r = rt
            .exec(&id, &sh("cat /etc/os-release; ls /; pwd"), LONG)
            .await
            .expect("exec");
        let out = String::from_utf8_lossy(&r.output).to_string();
        assert!(out.starts_with("ID=rootfs-test\n"), "{out}");
        assert!(out.contains("written"), "{out}");
        assert!(out.ends_with("/work/dir\n"), "{out}");
        // The layers are never written; the instance's writes go to its own upper directory.
        assert!(!layers.iter().any(|l| l.join("written").exists()));
        assert!(!layers.iter().any(|l| l.join("work").exists()));
        rt.signal(&id, Signal::KILL).await.expect("kill");
        wait_exit(&mut events, &id, LONG).await;
        // A missing executable is worded as upstream's.
        let cfg = ContainerConfig {
            name: "missing".into(),
            command: vec!["nosuch".into()],
            rootfs: Some(podvisor_runtime::RootFs { layers }),
            ..Default::default()
        };
        let id = rt.create_container(&sb, cfg).await.expect("create");
        let err = rt
            .start_container(&id)
            .await
            .expect_err("no such executable");
        assert!(
            err.to_string()
                .contains("exec: \"nosuch\": executable file not found in $PATH"),
            "{err}"
        );
        rt.remove_sandbox(&sb).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn sandboxes_share_host_namespaces_or_set_sysctls_in_their_own() {
    if !is_root() {
        eprintln!("skipping: namespaces need root");
        return;
    }
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let script = "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; \
                      cat /proc/sys/kernel/shm_rmid_forced; echo ready; sleep 1000";
        let mut lines = Vec::new();
        for (id, host, sysctls) in [
            (
                "own",
                false,
                vec![("kernel.shm_rmid_forced".to_string(), "1".to_string())],
            ),
            ("host", true, vec![]),
        ] {
            rt.create_sandbox(SandboxConfig {
                id: id.into(),
                host_pid: host,
                host_ipc: host,
                sysctls,
                ..Default::default()
            })
            .await
            .expect("sandbox");
            let cfg = ContainerConfig {
                name: "app".into(),
                command: sh(script),
                ..Default::default()
            };
            let cid = rt.create_container(id, cfg).await.expect("create");
            rt.start_container(&cid).await.expect("start");
            wait_until("the container is ready", || {
                std::fs::read_to_string(rt.sandbox_dir(id).join("logs/app/0.log"))
                    .is_ok_and(|l| l.contains(" F ready"))
            })
            .await;
            lines.push(log_lines(rt, &cid).await);
        }
        let link = |p: &str| {
            std::fs::read_link(p)
                .expect("ns link")
                .display()
                .to_string()
        };
        let (pid, ipc) = (link("/proc/self/ns/pid"), link("/proc/self/ns/ipc"));
        let host_value = std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced")
            .expect("sysctl")
            .trim()
            .to_string();
        assert_ne!(lines[0][0], pid, "{lines:?}");
        assert_ne!(lines[0][1], ipc, "{lines:?}");
        assert_eq!(lines[0][2], "1", "{lines:?}");
        assert_eq!(lines[1][..3], [pid, ipc, host_value], "{lines:?}");
        // A sysctl outside the sandbox's own namespaces would change the node: refused.
        for name in ["net.ipv4.ip_local_port_range", "vm.swappiness"] {
            let r = rt
                .create_sandbox(SandboxConfig {
                    id: "bad".into(),
                    sysctls: vec![(name.into(), "1".into())],
                    ..Default::default()
                })
                .await;
            let err = r.expect_err("refused").to_string();
            assert!(
                err.contains("is not in a namespace of the sandbox's own"),
                "{err}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn proc_mount_default_masks_proc_and_privileged_unmasks_it() {
    let h = harness().await;
    guarded(&h, async {
        let rt = &h.rt;
        let Some(layers) = image_layers(&h) else {
            return;
        };
        let sb = sandbox(&h, "masking").await;
        let mut events = rt.subscribe();
        // A masked file this kernel has (they vary with its configuration).
        let file = [
            "/proc/kcore",
            "/proc/keys",
            "/proc/timer_list",
            "/proc/latency_stats",
        ]
        .into_iter()
        .find(|f| Path::new(f).is_file())
        .expect("a maskable /proc file");
        let script = format!(
            "test -c {file} && echo file-masked; \
             (echo 1 > /proc/sys/kernel/shm_rmid_forced) 2>/dev/null || echo sys-read-only; \
             grep -q ' /sys sysfs ro' /proc/mounts && echo sysfs-ro; echo ready; sleep 1000"
        );
        let mut outputs = Vec::new();
        for (i, (privileged, unmasked)) in [(false, false), (false, true), (true, false)]
            .into_iter()
            .enumerate()
        {
            let cfg = ContainerConfig {
                name: "app".into(),
                command: sh(&script),
                rootfs: Some(podvisor_runtime::RootFs {
                    layers: layers.clone(),
                }),
                security: podvisor_runtime::SecurityConfig {
                    confined: true,
                    privileged,
                    unmasked_proc: unmasked,
                    ..Default::default()
                },
                ..Default::default()
            };
            let id = rt.create_container(&sb, cfg).await.expect("create");
            let started = rt.start_container(&id).await;
            if !is_root() {
                assert!(started.is_err());
                return;
            }
            started.expect("start");
            wait_until("the container is ready", || {
                std::fs::read_to_string(rt.sandbox_dir(&sb).join(format!("logs/app/{i}.log")))
                    .is_ok_and(|l| l.contains(" F ready"))
            })
            .await;
            outputs.push(log_lines(rt, &id).await);
            rt.signal(&id, Signal::KILL).await.expect("kill");
            wait_exit(&mut events, &id, LONG).await;
        }
        assert_eq!(
            outputs[0],
            ["file-masked", "sys-read-only", "sysfs-ro", "ready"]
        );
        // Unmasked: /proc as the kernel shows it (sysfs stays read-only).
        assert_eq!(outputs[1], ["sysfs-ro", "ready"]);
        // Privileged: nothing masked, sysfs writable.
        assert_eq!(outputs[2], ["ready"]);
    })
    .await;
}
