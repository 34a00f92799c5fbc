//! Streaming exec on the process backend: stdout, stderr, stdin, exit codes, the container's
//! context, and the kill when the session ends.

use std::time::Duration;

use podvisor_runtime::{
    ContainerConfig, ContainerId, ContainerRuntime, ExecSession, ExecStreamRequest, RuntimeError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod sandbox;
const LONG: Duration = Duration::from_secs(20);

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The shared sandbox with one started container.
struct Env {
    env: sandbox::SandboxEnv,
    id: ContainerId,
}

impl std::ops::Deref for Env {
    type Target = sandbox::SandboxEnv;
    fn deref(&self) -> &sandbox::SandboxEnv {
        &self.env
    }
}

impl Env {
    async fn new(hint: &str, cfg: ContainerConfig) -> Env {
        let env = sandbox::SandboxEnv::new("pvxs", hint).await;
        let id = env
            .rt
            .create_container(&env.sandbox, cfg)
            .await
            .expect("create");
        env.rt.start_container(&id).await.expect("start");
        Env { env, id }
    }

    async fn stream(&self, command: Vec<String>, stdin: bool) -> ExecSession {
        self.rt
            .exec_stream(
                &self.id,
                ExecStreamRequest {
                    command,
                    stdin,
                    tty: false,
                    size: None,
                },
            )
            .await
            .expect("exec_stream")
    }

    async fn close(self) {
        self.rt.remove_sandbox(&self.sandbox).await.expect("remove");
    }
}

fn sleeper(env: Vec<(String, String)>) -> ContainerConfig {
    ContainerConfig {
        name: "app".into(),
        command: vec!["sleep".into(), "1000".into()],
        env,
        working_dir: Some("/tmp".into()),
        ..Default::default()
    }
}

async fn read_all(mut r: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut s = String::new();
    tokio::time::timeout(LONG, r.read_to_string(&mut s))
        .await
        .expect("read in time")
        .expect("read");
    s
}

/// Collects stdout, stderr and the exit code of a session.
async fn finish(s: ExecSession) -> (String, String, i32) {
    let (out, err, code) = tokio::join!(read_all(s.stdout), read_all(s.stderr), async {
        tokio::time::timeout(LONG, s.exit)
            .await
            .expect("exit in time")
    });
    (out, err, code.expect("exit code"))
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[tokio::test]
async fn streams_stdout_stderr_and_the_exit_code_in_the_containers_context() {
    let env = Env::new(
        "xs-basic",
        sleeper(vec![("GREETING".into(), "hi there".into())]),
    )
    .await;
    let s = env
        .stream(sh("echo $GREETING; pwd; echo oops >&2; exit 3"), false)
        .await;
    assert!(s.stdin.is_none());
    let (out, err, code) = finish(s).await;
    assert_eq!(out, "hi there\n/tmp\n");
    assert_eq!(err, "oops\n");
    assert_eq!(code, 3);
    // Without stdin the command reads /dev/null.
    let (out, _, code) = finish(env.stream(sh("cat; echo done"), false).await).await;
    assert_eq!((out.as_str(), code), ("done\n", 0));
    // A large output is not capped (unlike the buffered exec).
    let (out, _, code) = finish(env.stream(sh("head -c 200000 /dev/zero"), false).await).await;
    assert_eq!((out.len(), code), (200_000, 0));
    let missing = env
        .rt
        .exec_stream(
            &env.id,
            ExecStreamRequest {
                command: vec!["no-such-binary-pv".into()],
                stdin: false,
                tty: false,
                size: None,
            },
        )
        .await;
    assert!(
        matches!(&missing, Err(RuntimeError::StartFailed { message }) if message.contains("executable file not found")),
        "{missing:?}"
    );
    env.close().await;
}

#[tokio::test]
async fn stdin_is_echoed_and_end_of_file_reaches_the_command() {
    let env = Env::new("xs-stdin", sleeper(vec![])).await;
    let mut s = env.stream(vec!["cat".into()], true).await;
    let mut stdin = s.stdin.take().expect("stdin");
    stdin.write_all(b"hello stdin\n").await.expect("write");
    let mut buf = [0u8; 12];
    tokio::time::timeout(LONG, s.stdout.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(&buf, b"hello stdin\n");
    stdin.write_all(b"more").await.expect("write");
    stdin.shutdown().await.expect("close stdin");
    drop(stdin);
    let (out, err, code) = finish(s).await;
    assert_eq!((out.as_str(), err.as_str(), code), ("more", "", 0));
    env.close().await;
}

#[tokio::test]
async fn dropping_the_session_kills_the_command() {
    let env = Env::new("xs-kill", sleeper(vec![])).await;
    let mut s = env.stream(sh("echo $$; exec sleep 1000"), false).await;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\n") {
        let n = tokio::time::timeout(LONG, s.stdout.read(&mut b))
            .await
            .expect("pid in time")
            .expect("read");
        assert_eq!(n, 1, "stdout ended early");
        line.push(b[0]);
    }
    let ns_pid: u32 = String::from_utf8_lossy(&line)
        .trim()
        .parse()
        .expect("a pid");
    // Find the host pid: the sleep whose parent is the supervisor and which runs our command.
    // The shell execs `sleep` right after printing: wait for it.
    let main = main_pid(&env).await;
    let deadline = tokio::time::Instant::now() + LONG;
    let host_pid = loop {
        if let Some(p) = find_sleeper(ns_pid, main) {
            break p;
        }
        assert!(tokio::time::Instant::now() < deadline, "the exec's process");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(alive(host_pid));
    drop(s);
    let deadline = tokio::time::Instant::now() + LONG;
    while alive(host_pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "exec still runs after its session ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The container is untouched.
    let st = env.rt.container_status(&env.id).await.expect("status");
    assert_eq!(st.state.name(), "running");
    env.close().await;
}

/// The host PID of the container's main process; the container must be running.
async fn main_pid(env: &Env) -> u32 {
    let st = env.rt.container_status(&env.id).await.expect("status");
    let podvisor_runtime::ContainerState::Running {
        pid: Some(main), ..
    } = st.state
    else {
        panic!("not running: {:?}", st.state);
    };
    main
}

/// The host PID of a `sleep 1000` whose PID in its own namespace is `ns_pid`, in the pid
/// namespace of process `peer`.
fn find_sleeper(ns_pid: u32, peer: u32) -> Option<u32> {
    let ns_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let want = ns_of(peer)?;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let nspid = status
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|p| p.parse::<u32>().ok());
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if nspid == Some(ns_pid) && cmd == b"sleep\x001000\x00" && ns_of(pid) == Some(want.clone())
        {
            return Some(pid);
        }
    }
    None
}

#[tokio::test]
async fn runs_in_the_containers_pid_namespace() {
    let env = Env::new("xs-pidns", sleeper(vec![])).await;
    let (out, _, code) = finish(
        env.stream(sh("readlink /proc/self/ns/pid; echo $$"), false)
            .await,
    )
    .await;
    assert_eq!(code, 0);
    let mut lines = out.lines();
    let exec_ns = lines.next().unwrap_or("").to_string();
    let exec_pid: u32 = lines.next().unwrap_or("").parse().expect("a pid");
    let main = main_pid(&env).await;
    let main_ns = std::fs::read_link(format!("/proc/{main}/ns/pid")).expect("readlink");
    assert_eq!(
        exec_ns,
        main_ns.to_string_lossy(),
        "the container's pid namespace"
    );
    if is_root() {
        let own = std::fs::read_link("/proc/self/ns/pid").expect("readlink");
        assert_ne!(main_ns, own, "the sandbox has its own pid namespace");
        assert!(
            exec_pid < 1000,
            "a PID of the sandbox's namespace: {exec_pid}"
        );
    }
    env.close().await;
}

#[tokio::test]
async fn exec_in_a_stopped_container_is_refused() {
    let env = Env::new(
        "xs-stopped",
        ContainerConfig {
            name: "app".into(),
            command: sh("exit 0"),
            ..Default::default()
        },
    )
    .await;
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let st = env.rt.container_status(&env.id).await.expect("status");
        if st.state.name() == "exited" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = env
        .rt
        .exec_stream(
            &env.id,
            ExecStreamRequest {
                command: sh("echo hi"),
                stdin: false,
                tty: false,
                size: None,
            },
        )
        .await;
    assert!(matches!(r, Err(RuntimeError::InvalidState { .. })), "{r:?}");
    env.close().await;
}

#[tokio::test]
async fn a_terminal_carries_both_streams_and_takes_resizes() {
    let env = Env::new("xs-tty", sleeper(vec![])).await;
    let mut s = env
        .rt
        .exec_stream(
            &env.id,
            ExecStreamRequest {
                command: sh("stty size; read line; test -t 0 && test -t 1 && echo tty; stty size; echo \"got $line\"; echo err >&2"),
                stdin: true,
                tty: true,
                size: Some((80, 24)),
            },
        )
        .await
        .expect("exec_stream");
    let resize = s.resize.take().expect("a terminal can be resized");
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // the command starts with the requested size
    let first = async {
        while !String::from_utf8_lossy(&out).contains("\r\n") {
            let n = s.stdout.read(&mut buf).await.expect("read");
            assert!(n > 0, "output ended early");
            out.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(LONG, first)
        .await
        .expect("first line in time");
    resize(100, 30).expect("resize");
    let mut stdin = s.stdin.take().expect("stdin");
    stdin.write_all(b"hello\n").await.expect("write");
    let read = async {
        while !String::from_utf8_lossy(&out).contains("err\r\n") {
            let n = s.stdout.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "output ended early: {:?}",
                String::from_utf8_lossy(&out)
            );
            out.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(LONG, read)
        .await
        .expect("output in time");
    let out = String::from_utf8_lossy(&out).into_owned();
    // The terminal echoes the input and turns \n into \r\n; stderr comes the same way.
    assert!(out.starts_with("24 80\r\n"), "the initial size: {out:?}");
    assert!(out.contains("hello\r\n"), "{out:?}");
    assert!(
        out.contains("tty\r\n30 100\r\ngot hello\r\nerr\r\n"),
        "{out:?}"
    );
    drop(stdin);
    let code = tokio::time::timeout(LONG, s.exit)
        .await
        .expect("exit in time");
    assert_eq!(code.expect("exit code"), 0);
    let mut rest = String::new();
    s.stderr.read_to_string(&mut rest).await.expect("stderr");
    assert_eq!(rest, "");
    env.close().await;
}
