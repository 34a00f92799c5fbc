//! The conformance suite against the scripted fake backend, under paused tokio time.

#[macro_use]
mod conformance;

use std::time::{Duration, SystemTime};

use conformance::{Behaviour, Harness};
use podvisor_runtime::fake::{Attempt, FakeRuntime, FakeScript, tokio_clock};
use podvisor_runtime::{ContainerConfig, ContainerId};

struct Fake {
    rt: FakeRuntime,
}

impl Harness for Fake {
    type Runtime = FakeRuntime;
    fn runtime(&self) -> &FakeRuntime {
        &self.rt
    }
    fn container(&self, name: &str, b: Behaviour) -> ContainerConfig {
        let attempt = match b {
            Behaviour::Exit { after, code } => Attempt::exits_after(after, code),
            Behaviour::RunDefault => Attempt::forever(),
            Behaviour::TrapTerm { code } => Attempt::forever().on_stop_exit(Duration::ZERO, code),
            Behaviour::IgnoreTerm => Attempt::forever().ignore_stop(),
        };
        self.rt.script(name, FakeScript::always(attempt));
        ContainerConfig {
            name: name.into(),
            command: vec!["scripted".into()],
            ..Default::default()
        }
    }
    fn sandbox_id(&self, hint: &str) -> String {
        format!("{hint}-fake")
    }
    async fn wait_ready(&self, _id: &ContainerId) {}
}

fn harness() -> Fake {
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    Fake {
        rt: FakeRuntime::new(tokio_clock(base)),
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(start_paused = true)]
        async fn $name() {
            let h = harness();
            conformance::$name(&h).await;
        }
    )*};
}

all_cases!(conformance);

#[tokio::test(start_paused = true)]
async fn scripted_termination_messages_follow_the_rules() {
    use podvisor_runtime::{ContainerRuntime, SandboxConfig, TerminationMessage};
    let h = harness();
    let rt = &h.rt;
    rt.create_sandbox(SandboxConfig {
        id: "sb".into(),
        ..Default::default()
    })
    .await
    .expect("sandbox");
    let mut events = rt.subscribe();
    let cases = [
        // (attempt, fallback, expected)
        (
            Attempt::exits_after(Duration::from_secs(1), 0).writes_termination_message("OK"),
            false,
            Some("OK"),
        ),
        (
            Attempt::exits_after(Duration::from_secs(1), 1).logs(["a", "DONE"]),
            true,
            Some("a\nDONE"),
        ),
        (
            Attempt::exits_after(Duration::from_secs(1), 0).logs(["DONE"]),
            true,
            None,
        ),
        (
            Attempt::exits_after(Duration::from_secs(1), 1).logs(["DONE"]),
            false,
            None,
        ),
    ];
    for (i, (attempt, fallback, want)) in cases.into_iter().enumerate() {
        let name = format!("c{i}");
        rt.script(&name, FakeScript::always(attempt));
        let cfg = ContainerConfig {
            name,
            command: vec!["scripted".into()],
            termination_message: Some(TerminationMessage {
                path: "/dev/termination-log".into(),
                fallback_to_logs_on_error: fallback,
            }),
            ..Default::default()
        };
        let id = rt.create_container("sb", cfg).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let ev = conformance::wait_exit(&mut events, &id, Duration::from_secs(5)).await;
        assert_eq!(ev.status.termination_message.as_deref(), want, "case {i}");
    }
    // Without termination-message settings nothing is reported.
    rt.script(
        "plain",
        FakeScript::always(
            Attempt::exits_after(Duration::from_secs(1), 0).writes_termination_message("OK"),
        ),
    );
    let cfg = ContainerConfig {
        name: "plain".into(),
        command: vec!["scripted".into()],
        ..Default::default()
    };
    let id = rt.create_container("sb", cfg).await.expect("create");
    rt.start_container(&id).await.expect("start");
    let ev = conformance::wait_exit(&mut events, &id, Duration::from_secs(5)).await;
    assert_eq!(ev.status.termination_message, None);
}

#[tokio::test(start_paused = true)]
async fn scripted_streaming_exec_prints_echoes_and_ends_with_its_session() {
    use podvisor_runtime::fake::ExecScript;
    use podvisor_runtime::{ContainerRuntime, ExecStreamRequest};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = harness();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever())
            .exec(["hello"], ExecScript::exit(3).output("hi\n"))
            .exec(["cat"], ExecScript::ok().echoing_stdin())
            .exec(["hang"], ExecScript::hang()),
    );
    let sb = conformance::sandbox(&h, "xs").await;
    let id =
        h.rt.create_container(
            &sb,
            ContainerConfig {
                name: "app".into(),
                command: vec!["scripted".into()],
                ..Default::default()
            },
        )
        .await
        .expect("create");
    h.rt.start_container(&id).await.expect("start");
    let req = |c: &str, stdin: bool| ExecStreamRequest {
        command: vec![c.to_string()],
        stdin,
        tty: false,
        size: None,
    };
    let mut s =
        h.rt.exec_stream(&id, req("hello", false))
            .await
            .expect("exec");
    assert!(s.stdin.is_none());
    let mut out = String::new();
    s.stdout.read_to_string(&mut out).await.expect("read");
    assert_eq!(out, "hi\n");
    assert_eq!(s.exit.await.expect("exit"), 3);

    let mut s = h.rt.exec_stream(&id, req("cat", true)).await.expect("exec");
    let mut stdin = s.stdin.take().expect("stdin");
    stdin.write_all(b"x\n").await.expect("write");
    stdin.shutdown().await.expect("close");
    drop(stdin);
    let mut out = String::new();
    s.stdout.read_to_string(&mut out).await.expect("read");
    assert_eq!(out, "x\n");
    assert_eq!(s.exit.await.expect("exit"), 0);

    // A hanging command: dropping the session ends it (its stdout closes).
    let mut s =
        h.rt.exec_stream(&id, req("hang", false))
            .await
            .expect("exec");
    let exit = std::mem::replace(&mut s.exit, Box::pin(async { Ok(0) }));
    drop(exit);
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.stdout.read_to_end(&mut out))
        .await
        .expect("stdout ends when the session is dropped")
        .expect("read");

    // The container dies: a running exec ends with 137.
    let s =
        h.rt.exec_stream(&id, req("hang", false))
            .await
            .expect("exec");
    h.rt.signal(&id, podvisor_runtime::Signal::KILL)
        .await
        .expect("kill");
    assert_eq!(s.exit.await.expect("exit"), 137);
    let r = h.rt.exec_stream(&id, req("hello", false)).await;
    assert!(
        matches!(r, Err(podvisor_runtime::RuntimeError::InvalidState { .. })),
        "{r:?}"
    );
}
