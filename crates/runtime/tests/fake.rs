//! The conformance suite against the scripted fake backend, under paused tokio time.

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

conformance!(
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
