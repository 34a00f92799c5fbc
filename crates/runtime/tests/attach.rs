//! A container's stdin on the process backend ([`podvisor_runtime::Stdio`]): what attached
//! clients write is its input; `stdin` alone keeps it open across clients, `stdin_once`
//! closes it when the first client detaches, `tty` makes stdin and stdout a terminal.

use std::time::Duration;

use podvisor_runtime::{ContainerConfig, ContainerId, ContainerRuntime, ContainerState, Stdio};
use tokio::io::AsyncWriteExt;

mod sandbox;
const LONG: Duration = Duration::from_secs(20);

/// The shared sandbox, with the helpers these tests use.
struct Env(sandbox::SandboxEnv);

impl std::ops::Deref for Env {
    type Target = sandbox::SandboxEnv;
    fn deref(&self) -> &sandbox::SandboxEnv {
        &self.0
    }
}

impl Env {
    async fn new(hint: &str) -> Env {
        Env(sandbox::SandboxEnv::new("pvat", hint).await)
    }

    /// Starts container `name` running `sh -c script` with `stdio`.
    async fn start(&self, name: &str, script: &str, stdio: Stdio) -> ContainerId {
        let id = self
            .rt
            .create_container(
                &self.sandbox,
                ContainerConfig {
                    name: name.into(),
                    command: vec!["sh".into(), "-c".into(), script.into()],
                    stdio,
                    ..Default::default()
                },
            )
            .await
            .expect("create");
        self.rt.start_container(&id).await.expect("start");
        id
    }

    /// The container's log lines (`stream content`), once `want` is among them.
    async fn log_until(&self, id: &ContainerId, want: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let path = self.rt.container_status(id).await.expect("status").log_path;
            let lines: Vec<String> = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .map(|l| {
                    let mut p = l.splitn(4, ' ');
                    let (_, stream, _, content) = (p.next(), p.next(), p.next(), p.next());
                    format!("{} {}", stream.unwrap_or(""), content.unwrap_or(""))
                })
                .collect();
            if lines.iter().any(|l| l == want) {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {want:?} in the log: {lines:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn exit_code(&self, id: &ContainerId) -> i32 {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            if let ContainerState::Exited(e) =
                self.rt.container_status(id).await.expect("status").state
            {
                return e.exit_code;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the container exits"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn close(self) {
        self.rt.remove_sandbox(&self.sandbox).await.expect("remove");
    }
}

const ECHO: &str = "while read l; do echo \"got:$l\"; done; echo eof";

#[tokio::test]
async fn stdin_stays_open_across_clients_and_once_closes_after_the_first() {
    let env = Env::new("at-stdin").await;
    let open = Stdio {
        stdin: true,
        ..Default::default()
    };
    let keep = env.start("keep", ECHO, open).await;
    for word in ["a", "b"] {
        let mut s = env.rt.attach(&keep).await.expect("attach");
        assert!(s.resize.is_none(), "no terminal");
        let mut w = s.stdin.take().expect("an open stdin");
        w.write_all(format!("{word}\n").as_bytes())
            .await
            .expect("write");
        drop(w);
        env.log_until(&keep, &format!("stdout got:{word}")).await;
    }
    let st = env.rt.container_status(&keep).await.expect("status");
    assert_eq!(st.state.name(), "running", "stdin is still open");

    let once = env
        .start(
            "once",
            ECHO,
            Stdio {
                stdin: true,
                stdin_once: true,
                tty: false,
            },
        )
        .await;
    let mut first = env.rt.attach(&once).await.expect("attach");
    // A second client while the first is attached gets no stdin.
    let second = env.rt.attach(&once).await.expect("attach");
    assert!(second.stdin.is_none());
    let mut w = first.stdin.take().expect("stdin");
    w.write_all(b"only\n").await.expect("write");
    drop(w);
    let lines = env.log_until(&once, "stdout eof").await;
    assert_eq!(lines, ["stdout got:only", "stdout eof"]);
    assert_eq!(env.exit_code(&once).await, 0);

    // Without `stdin` the container reads end of file at once.
    let none = env.start("none", ECHO, Stdio::default()).await;
    env.log_until(&none, "stdout eof").await;
    env.close().await;
}

#[tokio::test]
async fn a_terminal_is_stdin_and_stdout_and_takes_resizes() {
    let env = Env::new("at-tty").await;
    let id = env
        .start(
            "term",
            "read l; test -t 0 && test -t 1 && echo \"tty:$l\"; stty size",
            Stdio {
                stdin: true,
                stdin_once: true,
                tty: true,
            },
        )
        .await;
    let mut s = env.rt.attach(&id).await.expect("attach");
    let resize = s.resize.take().expect("a terminal");
    resize(120, 40).expect("resize");
    let mut w = s.stdin.take().expect("stdin");
    w.write_all(b"typed\r").await.expect("write");
    let lines = env.log_until(&id, "stdout 40 120").await;
    assert!(lines.contains(&"stdout tty:typed".to_string()), "{lines:?}");
    drop(w);
    assert_eq!(env.exit_code(&id).await, 0);
    env.close().await;
}
