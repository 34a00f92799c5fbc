//! Computes a pod's API status (spec §2) from what the worker knows: the pod object, whether
//! its sandbox exists, and per container the newest and previous runtime instances plus the
//! reason it is waiting, if it is. Pure: the worker supplies every fact and the time.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiContainerStatus, HostIP, Pod, PodIP, PodStatus,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podvisor_api::status as rules;
use podvisor_runtime::{ContainerId, ContainerState, ExitStatus, Signal};

use crate::clock::to_time;

/// The scheme of `containerID`.
pub const CONTAINER_ID_SCHEME: &str = "podvisor://";

/// One runtime instance of a container, as the worker tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The runtime's ID.
    pub id: ContainerId,
    /// The instance number (restartCount when it was created).
    pub restart_count: i32,
    /// The image it was created with.
    pub image: String,
    /// The image's ID as `imageID` reports it (the repo digest); empty: `image`.
    pub image_id: String,
    /// Its state.
    pub state: ContainerState,
    /// The signal that stops it (`lifecycle.stopSignal`, else the image's, else SIGTERM),
    /// reported as `containerStatuses[].stopSignal`.
    pub stop_signal: Option<Signal>,
}

impl Instance {
    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }

    /// How it ended, if it did.
    pub fn exit(&self) -> Option<&ExitStatus> {
        match &self.state {
            ContainerState::Exited(e) => Some(e),
            _ => None,
        }
    }
}

/// A waiting reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// E.g. `CrashLoopBackOff`.
    pub reason: String,
    /// E.g. `back-off 10s restarting failed container=…`.
    pub message: Option<String>,
}

/// What the worker knows of one container of the spec.
#[derive(Clone, Debug, Default)]
pub struct ContainerView<'a> {
    /// The spec's name.
    pub name: &'a str,
    /// The spec's image.
    pub image: &'a str,
    /// The newest instance.
    pub current: Option<&'a Instance>,
    /// The instance before it.
    pub previous: Option<&'a Instance>,
    /// Set when the container is not running and waits (back-off, create error).
    pub waiting: Option<&'a Waiting>,
    /// Readiness result (true without a readiness probe).
    pub ready: bool,
    /// Startup result (true without a startup probe).
    pub started: bool,
    /// Its allocated resources (in-place resize): `allocatedResources` are their requests.
    pub allocated: Option<&'a ResourceRequirements>,
    /// The resources its running instance has (`resources`).
    pub resources: Option<&'a ResourceRequirements>,
}

/// Everything the status is made from.
#[derive(Clone, Debug)]
pub struct StatusInput<'a> {
    /// The pod as last seen (its status gives the current conditions and phase).
    pub pod: &'a Pod,
    /// The sandbox exists.
    pub sandbox_ready: bool,
    /// One view per spec container, in spec order.
    pub containers: Vec<ContainerView<'a>>,
    /// One view per spec init container (regular and sidecar), in spec order.
    pub init_containers: Vec<ContainerView<'a>>,
    /// One view per ephemeral container, in spec order.
    pub ephemeral_containers: Vec<ContainerView<'a>>,
    /// Final status of a deleted/drained pod (§1.5).
    pub pod_is_terminal: bool,
    /// The node's IP.
    pub host_ip: &'a str,
    /// The pod's own addresses (empty: the host's network, the pod's IP is the node's).
    pub pod_ips: &'a [String],
    /// `PodResizePending` / `PodResizeInProgress`, when a resize waits or runs.
    pub resize_conditions: Vec<k8s_openapi::api::core::v1::PodCondition>,
    /// The pod-level allocation (`status.allocatedResources` are its requests) and what the
    /// pod's cgroup has (`status.resources`), for a pod with pod-level resources.
    pub pod_allocated: Option<&'a ResourceRequirements>,
    /// See `pod_allocated`.
    pub pod_resources: Option<&'a ResourceRequirements>,
    /// `AllContainersRestarting`: None for a pod without a `RestartAllContainers` rule, else
    /// whether a restart of all its containers is under way (`restart_all.rs`).
    pub all_containers_restarting: Option<bool>,
    /// When the agent first saw the pod.
    pub start_time: SystemTime,
    /// Now.
    pub now: SystemTime,
    /// A pod-level reason and message to set (drain).
    pub reason: Option<(&'a str, &'a str)>,
}

/// `state.terminated.message`: the runtime's message, then the termination message (spec
/// §1.8: `runtime message + ": " + termination message`).
fn terminated_message(e: &ExitStatus) -> Option<String> {
    match (&e.message, &e.termination_message) {
        (Some(m), Some(t)) if !m.is_empty() => Some(format!("{m}: {t}")),
        (_, Some(t)) => Some(t.clone()),
        (m, None) => m.clone(),
    }
}

fn terminated(e: &ExitStatus, id: &ContainerId) -> ApiState {
    let reason = if e.oom_killed {
        "OOMKilled"
    } else if e.exit_code == 128 && e.message.is_some() {
        "StartError"
    } else if e.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    ApiState {
        terminated: Some(ContainerStateTerminated {
            exit_code: e.exit_code,
            signal: e.signal.map(|s| s.0),
            reason: Some(reason.to_string()),
            message: terminated_message(e),
            started_at: Some(to_time(e.started_at)),
            finished_at: Some(to_time(e.finished_at)),
            container_id: Some(format!("{CONTAINER_ID_SCHEME}{id}")),
        }),
        ..ApiState::default()
    }
}

fn waiting(w: &Waiting) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(w.reason.clone()),
            message: w.message.clone(),
        }),
        ..ApiState::default()
    }
}

/// The API status of one container.
pub fn container_status(v: &ContainerView<'_>, has_init_containers: bool) -> ApiContainerStatus {
    let default_waiting = Waiting {
        reason: if has_init_containers {
            "PodInitializing"
        } else {
            "ContainerCreating"
        }
        .to_string(),
        message: None,
    };
    let mut st = ApiContainerStatus {
        name: v.name.to_string(),
        image: v
            .current
            .map(|i| i.image.as_str())
            .unwrap_or(v.image)
            .to_string(),
        image_id: String::new(),
        restart_count: v.current.map(|i| i.restart_count).unwrap_or(0),
        ..ApiContainerStatus::default()
    };
    let prev_terminated = v
        .previous
        .and_then(|p| p.exit().map(|e| terminated(e, &p.id)));
    match v.current {
        None => {
            st.state = Some(waiting(v.waiting.unwrap_or(&default_waiting)));
        }
        Some(i) => {
            st.image_id = if i.image_id.is_empty() {
                i.image.clone()
            } else {
                i.image_id.clone()
            };
            st.container_id = Some(format!("{CONTAINER_ID_SCHEME}{}", i.id));
            st.stop_signal = i.stop_signal.map(Signal::name);
            match &i.state {
                ContainerState::Created => {
                    st.state = Some(waiting(v.waiting.unwrap_or(&default_waiting)));
                    st.last_state = prev_terminated;
                }
                ContainerState::Running { started_at, .. } => {
                    st.state = Some(ApiState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(to_time(*started_at)),
                        }),
                        ..ApiState::default()
                    });
                    st.last_state = prev_terminated;
                    st.started = Some(v.started);
                    st.ready = v.started && v.ready;
                }
                ContainerState::Exited(e) => match v.waiting {
                    Some(w) => {
                        st.state = Some(waiting(w));
                        st.last_state = Some(terminated(e, &i.id));
                    }
                    None => {
                        st.state = Some(terminated(e, &i.id));
                        st.last_state = prev_terminated;
                    }
                },
            }
        }
    }
    if st.started.is_none() {
        st.started = Some(false);
    }
    st.allocated_resources = v
        .allocated
        .and_then(|r| r.requests.clone())
        .filter(|r| !r.is_empty());
    st.resources = v.resources.cloned();
    st
}

/// The API status of one init container (spec §2.3): like an app container's, and a
/// regular init container reports `ready` exactly when it completed with exit 0 (a sidecar
/// reports its readiness like an app container).
pub fn init_container_status(v: &ContainerView<'_>, sidecar: bool) -> ApiContainerStatus {
    let mut st = container_status(v, true);
    if !sidecar {
        st.ready = st
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0);
    }
    st
}

/// Statuses for `views`; a container of which nothing is known any more (its sandbox is
/// gone) keeps a terminated state already reported in `old` (a container never goes back
/// from terminated to waiting).
fn statuses_of(
    views: &[ContainerView<'_>],
    old: &[ApiContainerStatus],
    one: impl Fn(&ContainerView<'_>) -> ApiContainerStatus,
) -> Vec<ApiContainerStatus> {
    views
        .iter()
        .map(|v| {
            let reported = old.iter().find(|s| {
                s.name == v.name && s.state.as_ref().is_some_and(|st| st.terminated.is_some())
            });
            match reported {
                Some(s) if v.current.is_none() && v.waiting.is_none() => s.clone(),
                _ => one(v),
            }
        })
        .collect()
}

/// The pod's status (spec §2).
pub fn compute_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let default_spec = Default::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let old = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.as_deref().unwrap_or_default();
    let has_init = !init_specs.is_empty();
    let statuses = statuses_of(
        &input.containers,
        old.container_statuses.as_deref().unwrap_or_default(),
        |v| container_status(v, has_init),
    );
    let init_statuses = statuses_of(
        &input.init_containers,
        old.init_container_statuses.as_deref().unwrap_or_default(),
        |v| {
            let sidecar = init_specs
                .iter()
                .any(|c| c.name == v.name && rules::is_sidecar(c));
            init_container_status(v, sidecar)
        },
    );
    let mut phase =
        rules::get_phase(spec, &init_statuses, &statuses, input.pod_is_terminal).to_string();
    if input.pod_is_terminal && !rules::is_terminal_phase(Some(&phase)) {
        // the final status of a stopped pod is terminal even if a container never started
        phase = rules::PHASE_FAILED.to_string();
    }
    if input.reason.is_some_and(|(r, _)| r == "DeadlineExceeded") {
        // the kubelet fails a pod past activeDeadlineSeconds as soon as it stops it
        phase = rules::PHASE_FAILED.to_string();
    }
    if rules::is_terminal_phase(old.phase.as_deref()) {
        // terminal phases are sticky
        phase = old.phase.clone().unwrap_or(phase);
    }
    let now: Time = to_time(input.now);
    let current_conditions = old.conditions.clone().unwrap_or_default();
    let containers_ready =
        rules::containers_ready_condition(spec, &init_statuses, &statuses, &phase);
    let ready = rules::ready_condition(spec, &current_conditions, &containers_ready);
    // Each condition the agent writes carries the generation it was computed from
    // (KEP-5067, upstream `CalculatePodConditionObservedGeneration` with the gate GA).
    let owned = [
        rules::ready_to_start_containers_condition(input.sandbox_ready),
        rules::initialized_condition(spec, &init_statuses, &statuses, &phase),
        ready,
        containers_ready,
        rules::scheduled_condition(),
    ]
    .into_iter()
    .map(|c| k8s_openapi::api::core::v1::PodCondition {
        observed_generation: pod.metadata.generation,
        ..c
    })
    .chain(input.resize_conditions.iter().cloned())
    .chain(
        input
            .all_containers_restarting
            .map(|r| rules::all_containers_restarting_condition(&phase, r)),
    )
    .collect();
    let conditions = rules::merge_conditions(&current_conditions, owned, &now);
    let (reason, message) = match input.reason {
        Some((r, m)) => (Some(r.to_string()), Some(m.to_string())),
        None if old.phase.as_deref() == Some(phase.as_str()) => {
            (old.reason.clone(), old.message.clone())
        }
        None => (None, None),
    };
    let ip = input.host_ip.to_string();
    let own = if input.pod_ips.is_empty() {
        vec![ip.clone()]
    } else {
        input.pod_ips.to_vec()
    };
    // Set once the sandbox is up; a terminal pod whose sandbox is gone keeps what it had.
    let pod_ips: Option<Vec<String>> = if input.sandbox_ready {
        Some(own)
    } else {
        old.pod_ips
            .as_ref()
            .map(|l| l.iter().map(|p| p.ip.clone()).collect())
            .or_else(|| old.pod_ip.clone().map(|p| vec![p]))
    };
    let pod_ip = pod_ips.as_ref().and_then(|l| l.first().cloned());
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        init_container_statuses: has_init.then_some(init_statuses),
        ephemeral_container_statuses: if input.ephemeral_containers.is_empty() {
            old.ephemeral_container_statuses.clone()
        } else {
            // Never probed, so never ready (as upstream reports them).
            Some(statuses_of(
                &input.ephemeral_containers,
                old.ephemeral_container_statuses
                    .as_deref()
                    .unwrap_or_default(),
                |v| ApiContainerStatus {
                    ready: false,
                    ..container_status(v, false)
                },
            ))
        },
        host_ip: Some(ip.clone()),
        host_ips: Some(vec![HostIP { ip: ip.clone() }]),
        pod_ips: pod_ips.map(|l| l.into_iter().map(|ip| PodIP { ip }).collect()),
        pod_ip,
        start_time: Some(
            old.start_time
                .clone()
                .unwrap_or_else(|| to_time(input.start_time)),
        ),
        qos_class: Some(
            old.qos_class
                .clone()
                .unwrap_or_else(|| rules::qos_class(spec).to_string()),
        ),
        reason,
        message,
        nominated_node_name: old.nominated_node_name.clone(),
        observed_generation: pod.metadata.generation,
        allocated_resources: input
            .pod_allocated
            .and_then(|r| r.requests.clone().or_else(|| r.limits.clone()))
            .filter(|r| !r.is_empty()),
        resources: input.pod_resources.cloned(),
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use podvisor_runtime::Signal;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn terminated_message_joins_runtime_and_termination_messages() {
        let mut e = ExitStatus {
            exit_code: 1,
            signal: None,
            oom_killed: false,
            started_at: t(1),
            finished_at: t(2),
            message: None,
            termination_message: Some("DONE".into()),
        };
        let msg = |e: &ExitStatus| {
            terminated(e, &ContainerId("c".into()))
                .terminated
                .and_then(|t| t.message)
        };
        assert_eq!(msg(&e).as_deref(), Some("DONE"));
        e.message = Some("the sandbox supervisor exited unexpectedly".into());
        assert_eq!(
            msg(&e).as_deref(),
            Some("the sandbox supervisor exited unexpectedly: DONE")
        );
        e.termination_message = None;
        assert_eq!(
            msg(&e).as_deref(),
            Some("the sandbox supervisor exited unexpectedly")
        );
    }

    fn pod(policy: &str, names: &[&str]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                containers: names
                    .iter()
                    .map(|n| Container {
                        name: n.to_string(),
                        image: Some("busybox".into()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(n: i32) -> Instance {
        Instance {
            id: ContainerId(format!("c{n}")),
            restart_count: n,
            image: "busybox".into(),
            image_id: String::new(),
            stop_signal: None,
            state: ContainerState::Running {
                pid: Some(1),
                started_at: t(1),
            },
        }
    }

    fn exited(n: i32, code: i32) -> Instance {
        Instance {
            id: ContainerId(format!("c{n}")),
            restart_count: n,
            image: "busybox".into(),
            image_id: String::new(),
            stop_signal: None,
            state: ContainerState::Exited(ExitStatus {
                exit_code: code,
                signal: (code > 128).then_some(Signal(code - 128)),
                oom_killed: false,
                started_at: t(1),
                finished_at: t(2),
                message: None,
                termination_message: None,
            }),
        }
    }

    fn input<'a>(p: &'a Pod, views: Vec<ContainerView<'a>>, terminal: bool) -> StatusInput<'a> {
        StatusInput {
            pod: p,
            sandbox_ready: true,
            containers: views,
            init_containers: Vec::new(),
            ephemeral_containers: Vec::new(),
            pod_is_terminal: terminal,
            host_ip: "10.0.0.1",
            pod_ips: &[],
            resize_conditions: Vec::new(),
            all_containers_restarting: None,
            pod_allocated: None,
            pod_resources: None,
            start_time: t(0),
            now: t(3),
            reason: None,
        }
    }

    fn cond<'a>(s: &'a PodStatus, ty: &str) -> &'a k8s_openapi::api::core::v1::PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == ty)
            .unwrap()
    }

    #[test]
    fn rule_2_3_container_creating_before_start_and_pending() {
        let p = pod("Always", &["app"]);
        let s = compute_status(&input(
            &p,
            vec![ContainerView {
                name: "app",
                image: "busybox",
                ..Default::default()
            }],
            false,
        ));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerCreating")
        );
        assert_eq!(
            (cs.ready, cs.started, cs.restart_count),
            (false, Some(false), 0)
        );
        assert_eq!(
            cond(&s, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [app]")
        );
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(s.host_ip.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn rule_2_2_running_without_probes_is_ready() {
        let p = pod("Always", &["app"]);
        let r = running(0);
        let v = ContainerView {
            name: "app",
            image: "busybox",
            current: Some(&r),
            ready: true,
            started: true,
            ..Default::default()
        };
        let s = compute_status(&input(&p, vec![v], false));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.container_id.as_deref(), Some("podvisor://c0"));
        assert!(cs.ready);
        let order: Vec<_> = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
    }

    #[test]
    fn rule_2_3_crash_loop_is_waiting_with_last_state_and_pod_running() {
        let p = pod("Always", &["app"]);
        let e = exited(1, 1);
        let w = Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some("back-off 10s restarting failed container=app pod=p_ns(u)".into()),
        };
        let v = ContainerView {
            name: "app",
            image: "busybox",
            current: Some(&e),
            waiting: Some(&w),
            ready: true,
            started: true,
            ..Default::default()
        };
        let s = compute_status(&input(&p, vec![v], false));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 1);
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert!(!cs.ready);
    }

    #[test]
    fn rule_2_3_terminated_reasons() {
        let p = pod("Never", &["a"]);
        for (code, oom, msg, want) in [
            (0, false, None, "Completed"),
            (2, false, None, "Error"),
            (137, true, None, "OOMKilled"),
            (
                128,
                false,
                Some("exec: not found".to_string()),
                "StartError",
            ),
        ] {
            let mut i = exited(0, code);
            if let ContainerState::Exited(e) = &mut i.state {
                e.oom_killed = oom;
                e.message = msg.clone();
            }
            let v = ContainerView {
                name: "a",
                image: "busybox",
                current: Some(&i),
                ..Default::default()
            };
            let s = compute_status(&input(&p, vec![v], false));
            let term = s.container_statuses.as_ref().unwrap()[0]
                .state
                .clone()
                .unwrap()
                .terminated
                .unwrap();
            assert_eq!(term.reason.as_deref(), Some(want));
            assert_eq!(term.message, msg);
        }
    }

    #[test]
    fn rule_1_5_deleted_pod_goes_terminal_with_ready_false() {
        let p = pod("Always", &["a"]);
        for (code, phase, reason) in [
            (0, "Succeeded", "PodCompleted"),
            (143, "Failed", "PodFailed"),
            (137, "Failed", "PodFailed"),
        ] {
            let i = exited(0, code);
            let v = ContainerView {
                name: "a",
                image: "busybox",
                current: Some(&i),
                ..Default::default()
            };
            let s = compute_status(&input(&p, vec![v], true));
            assert_eq!(s.phase.as_deref(), Some(phase));
            assert_eq!(cond(&s, "Ready").status, "False");
            assert_eq!(cond(&s, "Ready").reason.as_deref(), Some(reason));
            assert_eq!(cond(&s, "ContainersReady").reason.as_deref(), Some(reason));
        }
    }

    #[test]
    fn rule_2_1_terminal_phase_is_sticky() {
        let mut p = pod("Always", &["a"]);
        p.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        let r = running(0);
        let v = ContainerView {
            name: "a",
            image: "busybox",
            current: Some(&r),
            ready: true,
            started: true,
            ..Default::default()
        };
        assert_eq!(
            compute_status(&input(&p, vec![v], false)).phase.as_deref(),
            Some("Failed")
        );
    }

    #[test]
    fn rule_2_3_last_state_is_the_previous_instance() {
        let p = pod("Always", &["a"]);
        let prev = exited(0, 3);
        let cur = running(1);
        let v = ContainerView {
            name: "a",
            image: "busybox",
            current: Some(&cur),
            previous: Some(&prev),
            ready: true,
            started: true,
            ..Default::default()
        };
        let s = compute_status(&input(&p, vec![v], false));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 1);
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            3
        );
        assert!(cs.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn a_reported_terminated_state_survives_losing_the_sandbox() {
        let mut p = pod("Never", &["a"]);
        let e = exited(0, 0);
        let v = ContainerView {
            name: "a",
            image: "busybox",
            current: Some(&e),
            ..Default::default()
        };
        p.status = Some(compute_status(&input(&p, vec![v], false)));
        assert_eq!(
            p.status.as_ref().unwrap().phase.as_deref(),
            Some("Succeeded")
        );
        let gone = ContainerView {
            name: "a",
            image: "busybox",
            ..Default::default()
        };
        let mut i = input(&p, vec![gone], false);
        i.sandbox_ready = false;
        let s = compute_status(&i);
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            0
        );
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn rule_2_3_init_container_statuses_and_conditions() {
        let mut p = pod("Always", &["app"]);
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers = Some(vec![
            Container {
                name: "init1".into(),
                ..Default::default()
            },
            Container {
                name: "side".into(),
                restart_policy: Some("Always".into()),
                ..Default::default()
            },
            Container {
                name: "init2".into(),
                ..Default::default()
            },
        ]);
        let done = exited(0, 0);
        let side = running(0);
        let failed = exited(1, 1);
        let view = |name, current| ContainerView {
            name,
            image: "busybox",
            current,
            ready: true,
            started: true,
            ..Default::default()
        };
        let app = ContainerView {
            name: "app",
            image: "busybox",
            ..Default::default()
        };
        let mut i = input(&p, vec![app.clone()], false);
        i.init_containers = vec![
            view("init1", Some(&done)),
            view("side", Some(&side)),
            view("init2", Some(&failed)),
        ];
        let s = compute_status(&i);
        let ics = s.init_container_statuses.as_ref().unwrap();
        assert_eq!(
            ics.iter().map(|c| c.ready).collect::<Vec<_>>(),
            [true, true, false],
            "a completed init container is ready, a failed one is not; a sidecar by probe"
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(
            cond(&s, "Initialized").message.as_deref(),
            Some("containers with incomplete status: [init2]")
        );
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        // not started yet: PodInitializing for init containers too
        let mut i = input(&p, vec![app], false);
        i.init_containers = vec![view("init1", None), view("side", None), view("init2", None)];
        let s = compute_status(&i);
        let ics = s.init_container_statuses.as_ref().unwrap();
        assert!(ics.iter().all(|c| {
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref()
                == Some("PodInitializing")
        }));
        assert_eq!(
            cond(&s, "Initialized").message.as_deref(),
            Some("containers with incomplete status: [init1 side init2]")
        );
        // no init containers: no initContainerStatuses
        let p = pod("Always", &["app"]);
        assert!(
            compute_status(&input(&p, vec![], false))
                .init_container_statuses
                .is_none()
        );
    }

    #[test]
    fn unchanged_input_gives_an_equal_status_so_nothing_is_rewritten() {
        let mut p = pod("Always", &["a"]);
        let r = running(0);
        let v = ContainerView {
            name: "a",
            image: "busybox",
            current: Some(&r),
            ready: true,
            started: true,
            ..Default::default()
        };
        let s1 = compute_status(&input(&p, vec![v.clone()], false));
        p.status = Some(s1.clone());
        let mut later = input(&p, vec![v], false);
        later.now = t(100);
        assert_eq!(compute_status(&later), s1);
    }
}
