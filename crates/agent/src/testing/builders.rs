//! The agent's unit tests' pods and containers, on the project's one builder set
//! (`podvisor_testkit`): a pod bound to `node-1` with UID [`POD_UID`], containers on
//! `busybox`, hooks and probes, and readers of a written status.

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerStatus, ExecAction, Lifecycle, LifecycleHandler, Pod, PodStatus,
    Probe, SleepAction,
};

/// The UID of the pods [`pod`] builds.
pub const POD_UID: &str = "uid-1";

/// Pod `default/p` (UID [`POD_UID`]) bound to `node-1` with `restartPolicy: policy`, the
/// containers and `terminationGracePeriodSeconds: grace` (on the project's builders,
/// `podvisor_testkit`).
pub fn pod(policy: &str, containers: Vec<Container>, grace: Option<i64>) -> Pod {
    podvisor_testkit::pod("p")
        .namespace("default")
        .node_name("node-1")
        .restart_policy(policy)
        .with(|p| {
            p.metadata.uid = Some(POD_UID.into());
            if let Some(spec) = p.spec.as_mut() {
                spec.containers = containers;
                spec.termination_grace_period_seconds = grace;
            }
        })
        .build()
}

/// [`pod`] with init containers (regular ones and sidecars, see [`sidecar`]).
pub fn init_pod(
    policy: &str,
    init: Vec<Container>,
    app: Vec<Container>,
    grace: Option<i64>,
) -> Pod {
    let mut p = pod(policy, app, grace);
    if let Some(spec) = p.spec.as_mut() {
        spec.init_containers = Some(init);
    }
    p
}

/// A container named `name` on image `busybox`.
pub fn container(name: &str) -> Container {
    podvisor_testkit::container(name).image("busybox").build()
}

/// A sidecar: an init container with `restartPolicy: Always`.
pub fn sidecar(name: &str) -> Container {
    Container {
        restart_policy: Some("Always".into()),
        ..container(name)
    }
}

/// `c` with a preStop hook.
pub fn with_pre_stop(mut c: Container, h: LifecycleHandler) -> Container {
    c.lifecycle = Some(Lifecycle {
        pre_stop: Some(h),
        ..c.lifecycle.unwrap_or_default()
    });
    c
}

/// `c` with a postStart hook.
pub fn with_post_start(mut c: Container, h: LifecycleHandler) -> Container {
    c.lifecycle = Some(Lifecycle {
        post_start: Some(h),
        ..c.lifecycle.unwrap_or_default()
    });
    c
}

/// `c` with an exec startup probe running `cmd` after `delay` seconds, every `period`
/// seconds, up to 100 failures.
pub fn with_startup(mut c: Container, cmd: &str, delay: i32, period: i32) -> Container {
    c.startup_probe = Some(Probe {
        initial_delay_seconds: Some(delay),
        period_seconds: Some(period),
        failure_threshold: Some(100),
        ..exec_probe(&[cmd])
    });
    c
}

/// ConfigMap `default/<name>` with `data`.
pub fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    podvisor_testkit::config_map("default", name, data)
}

/// A `sleep` lifecycle handler.
pub fn sleep_hook(secs: i64) -> LifecycleHandler {
    LifecycleHandler {
        sleep: Some(SleepAction { seconds: secs }),
        ..Default::default()
    }
}

/// An `exec` lifecycle handler.
pub fn exec_hook(cmd: &[&str]) -> LifecycleHandler {
    LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(cmd.iter().map(|s| s.to_string()).collect()),
        }),
        ..Default::default()
    }
}

/// An `exec` probe with the defaults.
pub fn exec_probe(cmd: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(cmd.iter().map(|s| s.to_string()).collect()),
        }),
        ..Default::default()
    }
}

/// The status's phase.
pub fn phase(st: &PodStatus) -> &str {
    st.phase.as_deref().unwrap_or_default()
}

/// A condition's `(status, reason, message)`; panics if absent.
pub fn condition(st: &PodStatus, ty: &str) -> (String, Option<String>, Option<String>) {
    let c = st
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == ty))
        .unwrap_or_else(|| panic!("no condition {ty}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// A container's status; panics if absent.
pub fn cs(st: &PodStatus, name: &str) -> ContainerStatus {
    st.container_statuses
        .as_ref()
        .and_then(|v| v.iter().find(|c| c.name == name))
        .unwrap_or_else(|| panic!("no status {name}"))
        .clone()
}

/// An init container's status; panics if absent.
pub fn ics(st: &PodStatus, name: &str) -> ContainerStatus {
    st.init_container_statuses
        .as_ref()
        .expect("initContainerStatuses")
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no init status {name}"))
        .clone()
}

/// The exit code of a container that terminated.
pub fn terminated_code(st: &PodStatus, name: &str) -> Option<i32> {
    cs(st, name)
        .state
        .and_then(|s| s.terminated)
        .map(|t| t.exit_code)
}

/// The waiting reason of a container.
pub fn waiting_reason(st: &PodStatus, name: &str) -> Option<String> {
    cs(st, name)
        .state
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason)
}

/// The waiting reason of an init container.
pub fn init_waiting(st: &PodStatus, name: &str) -> Option<String> {
    ics(st, name)
        .state
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason)
}
