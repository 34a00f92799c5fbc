//! The runtime conformance suite: generic async tests every `ContainerRuntime` backend must
//! pass. A backend's test file provides a [`Harness`] (the runtime plus a way to make a
//! container that behaves as described) and runs every case named by [`all_cases!`].

#![allow(dead_code)]

use std::time::Duration;

use podvisor_runtime::{
    ContainerConfig, ContainerId, ContainerRuntime, ContainerState, ExitEvent, ExitEvents,
    RuntimeError, SandboxConfig, SandboxState, Signal,
};

/// Calls the macro `$suite!` with the name of every case, so that each backend's test file
/// runs them all (it defines `$suite` to make one test per case on its harness).
macro_rules! all_cases {
    ($suite:ident) => {
        $suite!(
            exit_code_is_reported,
            term_default_action_reports_signal,
            term_handled_exits_cleanly,
            term_ignored_needs_kill,
            illegal_operations_name_the_state,
            removing_twice_succeeds,
            duplicates_are_refused,
            list_shows_everything,
            restart_is_a_new_container,
        );
    };
}

/// How a test container behaves.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Exits by itself after `after` with `code`.
    Exit { after: Duration, code: i32 },
    /// Runs until signalled; the signal's default action ends it.
    RunDefault,
    /// Runs; on SIGTERM exits with `code`.
    TrapTerm { code: i32 },
    /// Runs; ignores SIGTERM (dies only from SIGKILL).
    IgnoreTerm,
}

/// A backend under test.
pub trait Harness: Send + Sync {
    /// The backend.
    type Runtime: ContainerRuntime;
    /// The runtime instance.
    fn runtime(&self) -> &Self::Runtime;
    /// A container config named `name` behaving as described (scripted backends register the
    /// script here).
    fn container(&self, name: &str, behaviour: Behaviour) -> ContainerConfig;
    /// A unique sandbox ID for this test.
    fn sandbox_id(&self, hint: &str) -> String;
    /// Waits until a started container has set up its signal handling (a real program needs
    /// a moment after start; a scripted one is ready at once).
    fn wait_ready(&self, id: &ContainerId) -> impl std::future::Future<Output = ()> + Send;
}

/// A generous bound for anything real processes do.
pub const LONG: Duration = Duration::from_secs(20);

/// Creates a sandbox with a unique ID.
pub async fn sandbox<H: Harness>(h: &H, hint: &str) -> String {
    let id = h.sandbox_id(hint);
    let status = h
        .runtime()
        .create_sandbox(SandboxConfig {
            id: id.clone(),
            hostname: hint.to_string(),
            ..Default::default()
        })
        .await
        .expect("create sandbox");
    assert_eq!(status.state, SandboxState::Ready);
    id
}

/// Creates and starts a container.
pub async fn run<H: Harness>(h: &H, sandbox: &str, name: &str, b: Behaviour) -> ContainerId {
    let id = h
        .runtime()
        .create_container(sandbox, h.container(name, b))
        .await
        .expect("create container");
    let st = h
        .runtime()
        .start_container(&id)
        .await
        .expect("start container");
    assert!(
        matches!(
            st.state,
            ContainerState::Running { .. } | ContainerState::Exited(_)
        ),
        "{:?}",
        st.state
    );
    id
}

/// Waits for the exit event of `id`.
pub async fn wait_exit(events: &mut ExitEvents, id: &ContainerId, within: Duration) -> ExitEvent {
    tokio::time::timeout(within, async {
        loop {
            match events.recv().await {
                Ok(ev) if &ev.container_id == id => return ev,
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no exit event for {id} within {within:?}"))
}

/// exit 3 → exit code 3, no signal; the status shows the same as the event.
pub async fn exit_code_is_reported<H: Harness>(h: &H) {
    let rt = h.runtime();
    let mut events = rt.subscribe();
    let sb = sandbox(h, "exitcode").await;
    let id = run(
        h,
        &sb,
        "app",
        Behaviour::Exit {
            after: Duration::from_millis(50),
            code: 3,
        },
    )
    .await;
    let ev = wait_exit(&mut events, &id, LONG).await;
    assert_eq!(ev.sandbox_id, sb);
    assert_eq!(ev.container_name, "app");
    assert_eq!(ev.status.exit_code, 3);
    assert_eq!(ev.status.signal, None);
    assert!(!ev.status.oom_killed);
    assert!(ev.status.finished_at >= ev.status.started_at);
    let st = rt.container_status(&id).await.expect("status");
    assert_eq!(st.state, ContainerState::Exited(ev.status.clone()));
    rt.remove_sandbox(&sb).await.expect("remove sandbox");
}

/// A process ended by SIGTERM's default action reports 143 and the signal.
pub async fn term_default_action_reports_signal<H: Harness>(h: &H) {
    let rt = h.runtime();
    let mut events = rt.subscribe();
    let sb = sandbox(h, "termdefault").await;
    let id = run(h, &sb, "app", Behaviour::RunDefault).await;
    rt.signal(&id, Signal::TERM).await.expect("signal");
    let ev = wait_exit(&mut events, &id, LONG).await;
    assert_eq!(ev.status.exit_code, 143);
    assert_eq!(ev.status.signal, Some(Signal::TERM));
    rt.remove_sandbox(&sb).await.expect("remove sandbox");
}

/// A process that handles SIGTERM exits with its own code.
pub async fn term_handled_exits_cleanly<H: Harness>(h: &H) {
    let rt = h.runtime();
    let mut events = rt.subscribe();
    let sb = sandbox(h, "termhandled").await;
    let id = run(h, &sb, "app", Behaviour::TrapTerm { code: 0 }).await;
    h.wait_ready(&id).await;
    wait_handles_stop_signal(h, &id, true).await;
    rt.signal(&id, Signal::TERM).await.expect("signal");
    let ev = wait_exit(&mut events, &id, LONG).await;
    assert_eq!(ev.status.exit_code, 0);
    assert_eq!(ev.status.signal, None);
    rt.remove_sandbox(&sb).await.expect("remove sandbox");
}

/// Waits until the runtime reports `handles_stop_signal == Some(expected)` (a program installs
/// its handlers some time after it starts).
pub async fn wait_handles_stop_signal<H: Harness>(h: &H, id: &ContainerId, expected: bool) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let st = h.runtime().container_status(id).await.expect("status");
        if st.handles_stop_signal == Some(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "handles_stop_signal stayed {:?}",
            st.handles_stop_signal
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A process that ignores SIGTERM keeps running; SIGKILL ends it with 137.
pub async fn term_ignored_needs_kill<H: Harness>(h: &H) {
    let rt = h.runtime();
    let mut events = rt.subscribe();
    let sb = sandbox(h, "termignored").await;
    let id = run(h, &sb, "app", Behaviour::IgnoreTerm).await;
    h.wait_ready(&id).await;
    wait_handles_stop_signal(h, &id, false).await;
    rt.signal(&id, Signal::TERM).await.expect("signal TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = rt.container_status(&id).await.expect("status");
    assert!(
        matches!(st.state, ContainerState::Running { .. }),
        "TERM ended it: {:?}",
        st.state
    );
    rt.signal(&id, Signal::KILL).await.expect("signal KILL");
    let ev = wait_exit(&mut events, &id, LONG).await;
    assert_eq!(ev.status.exit_code, 137);
    assert_eq!(ev.status.signal, Some(Signal::KILL));
    rt.remove_sandbox(&sb).await.expect("remove sandbox");
}

fn assert_invalid_state<T: std::fmt::Debug>(r: Result<T, RuntimeError>, want_state: &str) {
    match r {
        Err(RuntimeError::InvalidState { state, .. }) => assert_eq!(state, want_state),
        other => panic!("expected InvalidState({want_state}), got {other:?}"),
    }
}

/// Starting twice, exec in an exited container, removing a running one and creating in a
/// removed sandbox fail with InvalidState naming the state; signalling an exited one succeeds.
pub async fn illegal_operations_name_the_state<H: Harness>(h: &H) {
    let rt = h.runtime();
    let mut events = rt.subscribe();
    let sb = sandbox(h, "illegal").await;
    let id = run(h, &sb, "app", Behaviour::RunDefault).await;
    assert_invalid_state(rt.start_container(&id).await, "running");
    assert_invalid_state(rt.remove_container(&id).await, "running");
    rt.signal(&id, Signal::KILL).await.expect("kill");
    wait_exit(&mut events, &id, LONG).await;
    assert_invalid_state(rt.start_container(&id).await, "exited");
    assert_invalid_state(
        rt.exec(&id, &["true".to_string()], Duration::from_secs(5))
            .await,
        "exited",
    );
    rt.signal(&id, Signal::TERM)
        .await
        .expect("signalling an exited container succeeds");
    let created = rt
        .create_container(&sb, h.container("later", Behaviour::RunDefault))
        .await
        .expect("create");
    rt.signal(&created, Signal::TERM)
        .await
        .expect("signalling a created container succeeds");
    assert_invalid_state(
        rt.exec(&created, &["true".to_string()], Duration::from_secs(5))
            .await,
        "created",
    );
    rt.remove_sandbox(&sb).await.expect("remove sandbox");
    // A removed sandbox is gone: InvalidState("removed") while the runtime instance remembers
    // the removal, SandboxNotFound otherwise (e.g. after a restart). Both mean "not there".
    match rt
        .create_container(&sb, h.container("x", Behaviour::RunDefault))
        .await
    {
        Err(RuntimeError::InvalidState {
            state: "removed", ..
        })
        | Err(RuntimeError::SandboxNotFound { .. }) => {}
        other => panic!("creating in a removed sandbox: {other:?}"),
    }
}

/// Removing a container or sandbox twice succeeds; unknown containers are not found.
pub async fn removing_twice_succeeds<H: Harness>(h: &H) {
    let rt = h.runtime();
    let mut events = rt.subscribe();
    let sb = sandbox(h, "removetwice").await;
    let id = run(
        h,
        &sb,
        "app",
        Behaviour::Exit {
            after: Duration::from_millis(10),
            code: 0,
        },
    )
    .await;
    wait_exit(&mut events, &id, LONG).await;
    rt.remove_container(&id).await.expect("remove");
    rt.remove_container(&id).await.expect("remove again");
    assert!(
        rt.container_status(&id)
            .await
            .expect_err("gone")
            .is_not_found()
    );
    rt.remove_sandbox(&sb).await.expect("remove sandbox");
    rt.remove_sandbox(&sb).await.expect("remove sandbox again");
    let err = rt
        .create_sandbox(SandboxConfig {
            id: sb.clone(),
            ..Default::default()
        })
        .await;
    // The ID can be used again after removal.
    err.expect("recreate");
    rt.remove_sandbox(&sb).await.expect("remove recreated");
}

/// A duplicate sandbox ID or a duplicate live container name is refused.
pub async fn duplicates_are_refused<H: Harness>(h: &H) {
    let rt = h.runtime();
    let sb = sandbox(h, "dup").await;
    let again = rt
        .create_sandbox(SandboxConfig {
            id: sb.clone(),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(
            again,
            Err(RuntimeError::AlreadyExists {
                what: "sandbox",
                ..
            })
        ),
        "{again:?}"
    );
    let _id = run(h, &sb, "app", Behaviour::RunDefault).await;
    let dup = rt
        .create_container(&sb, h.container("app", Behaviour::RunDefault))
        .await;
    assert!(
        matches!(dup, Err(RuntimeError::AlreadyExists { .. })),
        "{dup:?}"
    );
    assert!(matches!(
        rt.create_container("no-such-sandbox", h.container("x", Behaviour::RunDefault))
            .await,
        Err(RuntimeError::SandboxNotFound { .. })
    ));
    rt.remove_sandbox(&sb).await.expect("remove sandbox");
}

/// `list` shows every sandbox with its containers, running and exited; removing a sandbox
/// with running containers kills them (their exits are reported).
pub async fn list_shows_everything<H: Harness>(h: &H) {
    let rt = h.runtime();
    let mut events = rt.subscribe();
    let sb = sandbox(h, "list").await;
    let done = run(
        h,
        &sb,
        "done",
        Behaviour::Exit {
            after: Duration::from_millis(10),
            code: 7,
        },
    )
    .await;
    wait_exit(&mut events, &done, LONG).await;
    let running = run(h, &sb, "running", Behaviour::RunDefault).await;
    let all = rt.list().await.expect("list");
    let s = all
        .iter()
        .find(|s| s.config.id == sb)
        .expect("sandbox listed");
    assert_eq!(s.state, SandboxState::Ready);
    assert_eq!(s.containers.len(), 2);
    let d = s
        .containers
        .iter()
        .find(|c| c.id == done)
        .expect("exited listed");
    assert!(matches!(&d.state, ContainerState::Exited(x) if x.exit_code == 7));
    let r = s
        .containers
        .iter()
        .find(|c| c.id == running)
        .expect("running listed");
    assert!(matches!(r.state, ContainerState::Running { .. }));
    rt.remove_sandbox(&sb).await.expect("remove sandbox");
    let ev = wait_exit(&mut events, &running, LONG).await;
    assert_eq!(ev.status.exit_code, 137);
    assert!(
        rt.list()
            .await
            .expect("list")
            .iter()
            .all(|s| s.config.id != sb)
    );
}

/// A restarted container is a new container: new ID, the old one stays until removed.
pub async fn restart_is_a_new_container<H: Harness>(h: &H) {
    let rt = h.runtime();
    let mut events = rt.subscribe();
    let sb = sandbox(h, "restart").await;
    let first = run(
        h,
        &sb,
        "app",
        Behaviour::Exit {
            after: Duration::from_millis(10),
            code: 1,
        },
    )
    .await;
    wait_exit(&mut events, &first, LONG).await;
    let second = run(
        h,
        &sb,
        "app",
        Behaviour::Exit {
            after: Duration::from_millis(10),
            code: 2,
        },
    )
    .await;
    assert_ne!(first, second);
    let ev = wait_exit(&mut events, &second, LONG).await;
    assert_eq!(ev.status.exit_code, 2);
    let old = rt.container_status(&first).await.expect("old status");
    assert!(matches!(&old.state, ContainerState::Exited(x) if x.exit_code == 1));
    let new = rt.container_status(&second).await.expect("new status");
    assert_ne!(old.log_path, new.log_path, "each instance has its own log");
    rt.remove_sandbox(&sb).await.expect("remove sandbox");
}
