//! Pod status rules of spec §2, as pure functions on `k8s-openapi` types: the pod phase
//! (`getPhase`), the kubelet-owned conditions with upstream's reasons and messages, the QoS
//! class, and the small formatting helpers the kubelet's messages use.
//!
//! Who calls what: the node agent computes a pod's status from runtime facts, then calls
//! [`get_phase`], [`initialized_condition`], [`containers_ready_condition`],
//! [`ready_condition`] and merges them with [`merge_conditions`]; the API server may call
//! [`qos_class`] at create time.

use k8s_openapi::api::core::v1::{
    Container, ContainerRestartRule, ContainerStatus, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Phase `Pending`.
pub const PHASE_PENDING: &str = "Pending";
/// Phase `Running`.
pub const PHASE_RUNNING: &str = "Running";
/// Phase `Succeeded`.
pub const PHASE_SUCCEEDED: &str = "Succeeded";
/// Phase `Failed`.
pub const PHASE_FAILED: &str = "Failed";

/// Condition type `PodScheduled`.
pub const POD_SCHEDULED: &str = "PodScheduled";
/// Condition type `PodReadyToStartContainers`.
pub const POD_READY_TO_START_CONTAINERS: &str = "PodReadyToStartContainers";
/// Condition type `Initialized`.
pub const INITIALIZED: &str = "Initialized";
/// Condition type `ContainersReady`.
pub const CONTAINERS_READY: &str = "ContainersReady";
/// Condition type `Ready`.
pub const READY: &str = "Ready";
/// Condition type `AllContainersRestarting` (KEP-5532).
pub const ALL_CONTAINERS_RESTARTING: &str = "AllContainersRestarting";

/// Whether `phase` is `Succeeded` or `Failed` (terminal phases never revert).
pub fn is_terminal_phase(phase: Option<&str>) -> bool {
    matches!(phase, Some(PHASE_SUCCEEDED) | Some(PHASE_FAILED))
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

fn is_running(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.running.is_some())
}

fn terminated_code(s: &ContainerStatus) -> Option<i32> {
    s.state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .map(|t| t.exit_code)
}

fn is_waiting(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.waiting.is_some())
}

fn waiting_reason(s: &ContainerStatus) -> Option<&str> {
    s.state
        .as_ref()
        .and_then(|st| st.waiting.as_ref())
        .and_then(|w| w.reason.as_deref())
}

/// The waiting reason of a container whose init containers run (again) first.
pub const POD_INITIALIZING: &str = "PodInitializing";

fn last_terminated_code(s: &ContainerStatus) -> Option<i32> {
    s.last_state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// Whether any regular container has been created (running, terminated, or has a previous
/// instance).
fn any_regular_container_created(spec: &PodSpec, statuses: &[ContainerStatus]) -> bool {
    spec.containers
        .iter()
        .filter_map(|c| find(statuses, &c.name))
        .any(|s| is_running(s) || terminated_code(s).is_some() || last_terminated_code(s).is_some())
}

/// The pod phase (spec §2.1, upstream `getPhase` with `ContainerRestartRules` on: a stopped
/// regular container counts as restarting when [`container_should_restart`] says so).
/// `pod_is_terminal` is true for the final status of a deleted or evicted pod: then a pod
/// whose containers all stopped is `Succeeded` if every exit code was 0, else `Failed`,
/// whatever its restart policy.
pub fn get_phase(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    pod_is_terminal: bool,
) -> &'static str {
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let (mut pending_init, mut failed_init) = (0, 0);
    let (mut pending_sidecar, mut unknown, mut running, mut waiting) = (0, 0, 0, 0);
    let (mut stopped, mut succeeded) = (0, 0);
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    for c in init_containers.iter().filter(|c| !is_sidecar(c)) {
        match find(init_statuses, &c.name) {
            None => pending_init += 1,
            Some(s) if is_running(s) => pending_init += 1,
            Some(s) => match terminated_code(s) {
                // an exit that restarts all containers runs the init containers again
                Some(code) if restarts_all_containers(c, code) => pending_init += 1,
                Some(code) if code != 0 => failed_init += 1,
                Some(_) => {}
                // waiting to run again after all containers were restarted
                None if waiting_reason(s) == Some(POD_INITIALIZING) => pending_init += 1,
                None if is_waiting(s) && last_terminated_code(s).is_some_and(|c| c != 0) => {
                    failed_init += 1
                }
                None => pending_init += 1,
            },
        }
    }
    for c in init_containers.iter().filter(|c| is_sidecar(c)) {
        match find(init_statuses, &c.name) {
            None => unknown += 1,
            Some(s) if is_running(s) => {
                running += 1;
                if s.started != Some(true) {
                    pending_sidecar += 1;
                }
            }
            Some(s) if terminated_code(s).is_some() => {}
            // a sidecar waiting to restart (CrashLoopBackOff) is ignored like a terminated one
            Some(s) if is_waiting(s) && last_terminated_code(s).is_some() => {}
            Some(s) if is_waiting(s) => {
                pending_sidecar += 1;
                waiting += 1;
            }
            Some(_) => {
                pending_sidecar += 1;
                unknown += 1;
            }
        }
    }
    // Stopped containers that their restart policy (the container's rules and policy, else
    // the pod's) restarts after their last exit: the pod keeps running for them.
    let mut restarting = 0;
    for c in &spec.containers {
        match find(statuses, &c.name) {
            None => unknown += 1,
            Some(s) if is_running(s) => running += 1,
            Some(s) => match terminated_code(s) {
                Some(code) => {
                    stopped += 1;
                    if code == 0 {
                        succeeded += 1;
                    }
                    if container_should_restart(c, spec, code) || restarts_all_containers(c, code) {
                        restarting += 1;
                    }
                }
                // waiting after an exit: it waits to restart (back-off)
                None if is_waiting(s) => match last_terminated_code(s) {
                    Some(_) => {
                        stopped += 1;
                        restarting += 1;
                    }
                    None => waiting += 1,
                },
                None => unknown += 1,
            },
        }
    }
    if failed_init > 0 && policy == "Never" {
        return PHASE_FAILED;
    }
    if pending_init > 0
        || (pending_sidecar > 0 && !any_regular_container_created(spec, statuses))
        || waiting > 0
    {
        return PHASE_PENDING;
    }
    if running > 0 && unknown == 0 {
        return PHASE_RUNNING;
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if pod_is_terminal {
            return if stopped == succeeded {
                PHASE_SUCCEEDED
            } else {
                PHASE_FAILED
            };
        }
        // Upstream: Always → Running; all succeeded → Succeeded; Never → Failed; OnFailure
        // → Running. With container restart rules (KEP-5307) the same outcome comes from
        // asking each stopped container whether it restarts after its last exit.
        if restarting > 0 {
            return PHASE_RUNNING;
        }
        if stopped == succeeded {
            return PHASE_SUCCEEDED;
        }
        return PHASE_FAILED;
    }
    PHASE_PENDING
}

/// Every container status of `status`: app containers, then init containers.
pub fn container_statuses(status: &PodStatus) -> impl Iterator<Item = &ContainerStatus> {
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
}

/// The `restartPolicyRules` action that restarts the container that exited.
pub const RESTART_RULE_ACTION_RESTART: &str = "Restart";
/// The `restartPolicyRules` action that restarts every container of the pod in place
/// (KEP-5532, `RestartAllContainersOnContainerExits`, beta and on since 1.36).
pub const RESTART_RULE_ACTION_RESTART_ALL_CONTAINERS: &str = "RestartAllContainers";

/// Whether an exit of `c` with `exit_code` restarts all the pod's containers: its first
/// matching rule has the action `RestartAllContainers` (upstream `ShouldAllContainersRestart`
/// per container).
pub fn restarts_all_containers(c: &Container, exit_code: i32) -> bool {
    matching_restart_rule(c, exit_code)
        .is_some_and(|r| r.action == RESTART_RULE_ACTION_RESTART_ALL_CONTAINERS)
}

/// Whether any container of `spec` (init or regular) has a `RestartAllContainers` rule
/// (upstream `podutil.AllContainersCouldRestart`): only such a pod reports the
/// `AllContainersRestarting` condition.
pub fn all_containers_could_restart(spec: &PodSpec) -> bool {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| c.restart_policy_rules.iter().flatten())
        .any(|r| r.action == RESTART_RULE_ACTION_RESTART_ALL_CONTAINERS)
}

/// The `AllContainersRestarting` condition (upstream `GenerateAllContainersRestartingCondition`):
/// False with reason `PodCompleted`/`PodFailed` in a terminal phase; True with reason
/// `RestartAllContainersStarted` from the exit that triggered a restart of all containers
/// until they are all cleaned up; False otherwise. It carries no `observedGeneration`.
pub fn all_containers_restarting_condition(phase: &str, restarting: bool) -> PodCondition {
    match phase {
        PHASE_SUCCEEDED => condition(ALL_CONTAINERS_RESTARTING, false, Some("PodCompleted"), None),
        PHASE_FAILED => condition(ALL_CONTAINERS_RESTARTING, false, Some("PodFailed"), None),
        _ if restarting => condition(
            ALL_CONTAINERS_RESTARTING,
            true,
            Some("RestartAllContainersStarted"),
            Some("container exited with restart policy rule".into()),
        ),
        _ => condition(ALL_CONTAINERS_RESTARTING, false, None, None),
    }
}

/// The first of a container's `restartPolicyRules` whose exit-code requirement holds for
/// `exit_code` (upstream `findMatchingContainerRestartRule`): `In` holds when the code is
/// listed, `NotIn` when it is not.
pub fn matching_restart_rule(c: &Container, exit_code: i32) -> Option<&ContainerRestartRule> {
    c.restart_policy_rules.iter().flatten().find(|r| {
        r.exit_codes.as_ref().is_some_and(|e| {
            let listed = e.values.iter().flatten().any(|v| *v == exit_code);
            match e.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            }
        })
    })
}

/// Whether a regular container can ever be restarted (upstream
/// `podutil.IsContainerRestartable`): a `Restart` rule, else its own policy is not Never,
/// else the pod's is not Never.
pub fn is_container_restartable(spec: &PodSpec, c: &Container) -> bool {
    match c.restart_policy.as_deref() {
        Some(own) => {
            c.restart_policy_rules
                .iter()
                .flatten()
                .any(|r| r.action == RESTART_RULE_ACTION_RESTART)
                || own != "Never"
        }
        None => spec.restart_policy.as_deref() != Some("Never"),
    }
}

/// Whether a regular container is restarted after it exited with `exit_code` (upstream
/// `podutil.ContainerShouldRestart`): its first matching restart rule with action
/// `Restart`, else its own `restartPolicy`, else the pod's.
pub fn container_should_restart(c: &Container, spec: &PodSpec, exit_code: i32) -> bool {
    let policy = match c.restart_policy.as_deref() {
        Some(own) => {
            if matching_restart_rule(c, exit_code)
                .is_some_and(|r| r.action == RESTART_RULE_ACTION_RESTART)
            {
                return true;
            }
            own
        }
        None => spec.restart_policy.as_deref().unwrap_or("Always"),
    };
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Formats names as Go's `%s` formats a `[]string`: `[a b c]`.
pub fn go_string_slice(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

fn condition(
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.map(str::to_string),
        message,
        ..PodCondition::default()
    }
}

fn unready_message(unknown: &[String], other: &[String], other_what: &str) -> Option<String> {
    let mut parts = Vec::new();
    if !unknown.is_empty() {
        parts.push(format!(
            "containers with unknown status: {}",
            go_string_slice(unknown)
        ));
    }
    if !other.is_empty() {
        parts.push(format!(
            "containers with {other_what} status: {}",
            go_string_slice(other)
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The `ContainersReady` condition (upstream `GenerateContainersReadyCondition`): True when
/// every regular container and every sidecar is ready; terminal phases give False with
/// `PodCompleted`/`PodFailed`; otherwise False, `ContainersNotReady`,
/// `containers with unready status: [a b]`.
pub fn containers_ready_condition(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let (mut unknown, mut unready) = (Vec::new(), Vec::new());
    let sidecars = spec
        .init_containers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|c| is_sidecar(c));
    for c in sidecars {
        match find(init_statuses, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.clone()),
            Some(_) => {}
            None => unknown.push(c.name.clone()),
        }
    }
    for c in &spec.containers {
        match find(statuses, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.clone()),
            Some(_) => {}
            None => unknown.push(c.name.clone()),
        }
    }
    if phase == PHASE_SUCCEEDED && unknown.is_empty() {
        return condition(CONTAINERS_READY, false, Some("PodCompleted"), None);
    }
    if phase == PHASE_FAILED {
        return condition(CONTAINERS_READY, false, Some("PodFailed"), None);
    }
    match unready_message(&unknown, &unready, "unready") {
        Some(msg) => condition(
            CONTAINERS_READY,
            false,
            Some("ContainersNotReady"),
            Some(msg),
        ),
        None => condition(CONTAINERS_READY, true, None, None),
    }
}

/// The `Ready` condition (upstream `GeneratePodReadyCondition`): ContainersReady's status,
/// reason and message when it is not True; then the readiness gates, read from the pod's
/// current `conditions`.
pub fn ready_condition(
    spec: &PodSpec,
    current_conditions: &[PodCondition],
    containers_ready: &PodCondition,
) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition {
            type_: READY.to_string(),
            ..containers_ready.clone()
        };
    }
    let mut problems = Vec::new();
    for gate in spec.readiness_gates.as_deref().unwrap_or_default() {
        let t = &gate.condition_type;
        match current_conditions.iter().find(|c| &c.type_ == t) {
            None => problems.push(format!(
                "corresponding condition of pod readiness gate \"{t}\" does not exist."
            )),
            Some(c) if c.status != "True" => problems.push(format!(
                "the status of pod readiness gate \"{t}\" is not \"True\", but {}",
                c.status
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        condition(READY, true, None, None)
    } else {
        condition(
            READY,
            false,
            Some("ReadinessGatesNotReady"),
            Some(problems.join(", ")),
        )
    }
}

/// The `Initialized` condition (upstream `GeneratePodInitializedCondition`).
pub fn initialized_condition(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    if init_containers.is_empty() {
        return condition(INITIALIZED, true, None, None);
    }
    let (mut unknown, mut incomplete) = (Vec::new(), Vec::new());
    for c in init_containers {
        match find(init_statuses, &c.name) {
            None => unknown.push(c.name.clone()),
            Some(s) if is_sidecar(c) => {
                if s.started != Some(true) {
                    incomplete.push(c.name.clone());
                }
            }
            Some(s) => {
                if !s.ready {
                    incomplete.push(c.name.clone());
                }
            }
        }
    }
    if phase == PHASE_SUCCEEDED && unknown.is_empty() {
        return condition(INITIALIZED, true, Some("PodCompleted"), None);
    }
    if any_regular_container_created(spec, statuses) {
        return condition(INITIALIZED, true, None, None);
    }
    match unready_message(&unknown, &incomplete, "incomplete") {
        Some(msg) => condition(
            INITIALIZED,
            false,
            Some("ContainersNotInitialized"),
            Some(msg),
        ),
        None => condition(INITIALIZED, true, None, None),
    }
}

/// The `PodReadyToStartContainers` condition: True once the sandbox exists.
pub fn ready_to_start_containers_condition(sandbox_ready: bool) -> PodCondition {
    condition(POD_READY_TO_START_CONTAINERS, sandbox_ready, None, None)
}

/// The `PodScheduled` condition the kubelet appends: True.
pub fn scheduled_condition() -> PodCondition {
    condition(POD_SCHEDULED, true, None, None)
}

/// The condition types the kubelet owns (and rewrites on every status; the two resize
/// conditions only while a resize waits or runs).
pub const KUBELET_OWNED: [&str; 8] = [
    POD_READY_TO_START_CONTAINERS,
    INITIALIZED,
    READY,
    CONTAINERS_READY,
    POD_SCHEDULED,
    "PodResizePending",
    "PodResizeInProgress",
    ALL_CONTAINERS_RESTARTING,
];

/// Merges freshly computed kubelet-owned conditions into the current ones: conditions the
/// kubelet does not own are kept first, in their order; then the owned ones in upstream's
/// order (PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled).
/// `lastTransitionTime` is kept from the current condition of the same type when the status
/// did not change, and is `now` otherwise.
pub fn merge_conditions(
    current: &[PodCondition],
    owned: Vec<PodCondition>,
    now: &Time,
) -> Vec<PodCondition> {
    let mut out: Vec<PodCondition> = current
        .iter()
        .filter(|c| !KUBELET_OWNED.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    let mut owned = owned;
    owned.sort_by_key(|c| {
        KUBELET_OWNED
            .iter()
            .position(|t| *t == c.type_)
            .unwrap_or(usize::MAX)
    });
    for mut c in owned {
        let old = current.iter().find(|o| o.type_ == c.type_);
        c.last_transition_time = match old {
            Some(o) if o.status == c.status && o.last_transition_time.is_some() => {
                o.last_transition_time.clone()
            }
            _ => Some(now.clone()),
        };
        if let Some(o) = old.filter(|o| c.type_ == POD_SCHEDULED && o.status == c.status) {
            c.reason = o.reason.clone();
            c.message = o.message.clone();
        }
        out.push(c);
    }
    out
}

/// Errors of [`parse_quantity`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// Parses a Kubernetes quantity (`100m`, `1.5`, `128Mi`, `1e3`, `2G`) into nano-units
/// ([`crate::quantity::parse_nanos`]).
pub fn parse_quantity(q: &str) -> Result<i128, QuantityError> {
    crate::quantity::parse_nanos(q).map_err(|_| QuantityError(q.to_string()))
}

/// Whether `spec.resources` (pod-level resources, KEP-2837) sets cpu or memory.
pub fn pod_level_resources_set(spec: &PodSpec) -> bool {
    spec.resources.as_ref().is_some_and(|r| {
        [r.requests.as_ref(), r.limits.as_ref()]
            .into_iter()
            .flatten()
            .any(|m| m.contains_key("cpu") || m.contains_key("memory"))
    })
}

/// The QoS class from pod-level resources (upstream `ComputePodQOS` with `PodLevelResources`
/// on): the pod's own cpu/memory requests and limits decide, whatever its containers set;
/// `Guaranteed` needs both limits and requests equal to them.
fn pod_level_qos_class(r: &k8s_openapi::api::core::v1::ResourceRequirements) -> &'static str {
    let get = |m: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
               res: &str| {
        m.and_then(|m| m.get(res))
            .and_then(|q| parse_quantity(&q.0).ok())
            .filter(|v| *v > 0)
    };
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for res in ["cpu", "memory"] {
        let limit = get(r.limits.as_ref(), res);
        if let Some(v) = get(r.requests.as_ref(), res).or(limit) {
            requests.push((res, v));
        }
        if let Some(v) = limit {
            limits.push((res, v));
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if limits.len() == 2 && requests == limits {
        return "Guaranteed";
    }
    "Burstable"
}

/// The pod's QoS class (upstream `GetPodQOS`): from the pod-level resources when the pod
/// sets them ([`pod_level_resources_set`]); else `BestEffort` with no cpu/memory requests or
/// limits anywhere, `Guaranteed` when every container has cpu and memory limits and the
/// requests equal the limits, otherwise `Burstable`. A request left out defaults to the
/// limit, as API defaulting does. Unparsable quantities count as absent.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    if let Some(r) = spec
        .resources
        .as_ref()
        .filter(|_| pod_level_resources_set(spec))
    {
        return pod_level_qos_class(r);
    }
    const RES: [&str; 2] = ["cpu", "memory"];
    let mut requests = [0i128; 2];
    let mut limits = [0i128; 2];
    let (mut any_request, mut any_limit) = (false, false);
    let mut guaranteed = true;
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.as_deref().unwrap_or_default());
    for c in all {
        let res = c.resources.as_ref();
        let get = |m: Option<
            &std::collections::BTreeMap<
                String,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            >,
        >,
                   r: &str| {
            m.and_then(|m| m.get(r))
                .and_then(|q| parse_quantity(&q.0).ok())
                .filter(|v| *v != 0)
        };
        for (i, r) in RES.iter().enumerate() {
            let limit = get(res.and_then(|x| x.limits.as_ref()), r);
            let request = get(res.and_then(|x| x.requests.as_ref()), r).or(limit);
            if let Some(v) = request {
                requests[i] += v;
                any_request = true;
            }
            match limit {
                Some(v) => {
                    limits[i] += v;
                    any_limit = true;
                }
                None => guaranteed = false,
            }
        }
    }
    if !any_request && !any_limit {
        return "BestEffort";
    }
    if guaranteed && requests == limits {
        return "Guaranteed";
    }
    "Burstable"
}

/// Formats a duration as Go's `time.Duration.String` does (`10s`, `1m20s`, `5m0s`, `1h0m0s`,
/// `1.5s`, `500ms`), the form kubelet messages use.
pub fn go_duration(d: std::time::Duration) -> String {
    let total_nanos = d.as_nanos();
    if total_nanos == 0 {
        return "0s".to_string();
    }
    if total_nanos < 1_000_000_000 {
        let (unit, div) = if total_nanos < 1000 {
            ("ns", 1)
        } else if total_nanos < 1_000_000 {
            ("µs", 1000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", trim_fraction(total_nanos, div));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let sec_part = trim_fraction(
        u128::from(s) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
    );
    if h > 0 {
        format!("{h}h{m}m{sec_part}s")
    } else if m > 0 {
        format!("{m}m{sec_part}s")
    } else {
        format!("{sec_part}s")
    }
}

fn trim_fraction(value: u128, div: u128) -> String {
    let int = value / div;
    let frac = value % div;
    if frac == 0 {
        return int.to_string();
    }
    let width = div.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{int}.{}", f.trim_end_matches('0'))
}

/// The kubelet's `format.Pod`: `<name>_<namespace>(<uid>)`.
pub fn pod_full_name(name: &str, namespace: &str, uid: &str) -> String {
    format!("{name}_{namespace}({uid})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PodReadinessGate, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn spec(policy: &str, names: &[&str]) -> PodSpec {
        PodSpec {
            restart_policy: Some(policy.into()),
            containers: names
                .iter()
                .map(|n| Container {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn running(name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready: true,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn terminated(name: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn waiting(name: &str, last_code: Option<i32>) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            last_state: last_code.map(|c| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: c,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Spec §2.1 single- and two-container table.
    #[test]
    fn get_phase_table_of_spec_2_1() {
        type Case = (
            &'static str,
            Vec<&'static str>,
            Vec<ContainerStatus>,
            bool,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("Always", vec!["a"], vec![], false, "Pending"),
            (
                "Always",
                vec!["a"],
                vec![waiting("a", None)],
                false,
                "Pending",
            ),
            ("Always", vec!["a"], vec![running("a")], false, "Running"),
            (
                "Always",
                vec!["a"],
                vec![waiting("a", Some(0))],
                false,
                "Running",
            ),
            (
                "Always",
                vec!["a"],
                vec![waiting("a", Some(1))],
                false,
                "Running",
            ),
            (
                "OnFailure",
                vec!["a"],
                vec![terminated("a", 0)],
                false,
                "Succeeded",
            ),
            (
                "OnFailure",
                vec!["a"],
                vec![waiting("a", Some(1))],
                false,
                "Running",
            ),
            (
                "Never",
                vec!["a"],
                vec![terminated("a", 0)],
                false,
                "Succeeded",
            ),
            (
                "Never",
                vec!["a"],
                vec![terminated("a", 1)],
                false,
                "Failed",
            ),
            (
                "Always",
                vec!["a"],
                vec![terminated("a", 0)],
                true,
                "Succeeded",
            ),
            (
                "Always",
                vec!["a"],
                vec![terminated("a", 143)],
                true,
                "Failed",
            ),
            (
                "Always",
                vec!["a"],
                vec![terminated("a", 137)],
                true,
                "Failed",
            ),
            (
                "Always",
                vec!["a", "b"],
                vec![running("a"), waiting("b", None)],
                false,
                "Pending",
            ),
            (
                "Always",
                vec!["a", "b"],
                vec![running("a"), waiting("b", Some(1))],
                false,
                "Running",
            ),
            (
                "OnFailure",
                vec!["a", "b"],
                vec![terminated("a", 0), running("b")],
                false,
                "Running",
            ),
            (
                "Never",
                vec!["a", "b"],
                vec![terminated("a", 1), running("b")],
                false,
                "Running",
            ),
            (
                "Never",
                vec!["a", "b"],
                vec![terminated("a", 1), terminated("b", 0)],
                false,
                "Failed",
            ),
            // a container with its own policy or restart rules (KEP-5307)
            (
                "Never",
                vec!["a"],
                vec![waiting("a", Some(42))],
                false,
                "Running",
            ),
            // a waiting container with a lastState counts as stopped, not succeeded
            (
                "OnFailure",
                vec!["a"],
                vec![waiting("a", Some(0))],
                false,
                "Running",
            ),
        ];
        for (i, (policy, names, statuses, terminal, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                get_phase(&spec(policy, &names), &[], &statuses, terminal),
                want,
                "case {i}"
            );
        }
    }

    #[test]
    fn restart_rules_decide_whether_a_stopped_container_keeps_the_pod_running() {
        let rules = |policy: &str, op: &str, codes: &[i32]| Container {
            name: "a".into(),
            restart_policy: Some(policy.into()),
            restart_policy_rules: Some(vec![ContainerRestartRule {
                action: "Restart".into(),
                exit_codes: Some(
                    k8s_openapi::api::core::v1::ContainerRestartRuleOnExitCodes {
                        operator: op.into(),
                        values: Some(codes.to_vec()),
                    },
                ),
            }]),
            ..Container::default()
        };
        let with = |c: Container, pod_policy: &str| PodSpec {
            restart_policy: Some(pod_policy.into()),
            containers: vec![c],
            ..PodSpec::default()
        };
        // exit 42 matches In [42]: restarted, the Never pod is Running
        let s = with(rules("Never", "In", &[42]), "Never");
        assert_eq!(
            get_phase(&s, &[], &[terminated("a", 42)], false),
            PHASE_RUNNING
        );
        assert_eq!(
            get_phase(&s, &[], &[terminated("a", 1)], false),
            PHASE_FAILED
        );
        assert_eq!(
            get_phase(&s, &[], &[terminated("a", 0)], false),
            PHASE_SUCCEEDED
        );
        // NotIn [0]: every failure restarts, success completes
        let s = with(rules("Never", "NotIn", &[0]), "Never");
        assert_eq!(
            get_phase(&s, &[], &[terminated("a", 3)], false),
            PHASE_RUNNING
        );
        assert_eq!(
            get_phase(&s, &[], &[terminated("a", 0)], false),
            PHASE_SUCCEEDED
        );
        // the container's own Never in an Always pod: its failure is final
        let own_never = Container {
            name: "a".into(),
            restart_policy: Some("Never".into()),
            ..Container::default()
        };
        let s = with(own_never.clone(), "Always");
        assert_eq!(
            get_phase(&s, &[], &[terminated("a", 1)], false),
            PHASE_FAILED
        );
        assert!(!is_container_restartable(&s, &own_never));
        assert!(is_container_restartable(&s, &rules("Never", "In", &[1])));
        // the final status of a deleted pod ignores the rules
        let s = with(rules("Never", "In", &[42]), "Never");
        assert_eq!(
            get_phase(&s, &[], &[terminated("a", 42)], true),
            PHASE_FAILED
        );
    }

    #[test]
    fn get_phase_init_containers() {
        let mut s = spec("Never", &["app"]);
        s.init_containers = Some(vec![Container {
            name: "init".into(),
            ..Default::default()
        }]);
        assert_eq!(
            get_phase(&s, &[running("init")], &[waiting("app", None)], false),
            "Pending"
        );
        assert_eq!(
            get_phase(&s, &[terminated("init", 1)], &[waiting("app", None)], false),
            "Failed"
        );
        s.restart_policy = Some("Always".into());
        assert_eq!(
            get_phase(
                &s,
                &[waiting("init", Some(1))],
                &[waiting("app", None)],
                false
            ),
            "Pending"
        );
    }

    #[test]
    fn get_phase_sidecars() {
        let mut s = spec("Never", &["app"]);
        s.init_containers = Some(vec![Container {
            name: "side".into(),
            restart_policy: Some("Always".into()),
            ..Default::default()
        }]);
        let mut unstarted = running("side");
        unstarted.started = Some(false);
        // a sidecar not yet started keeps the pod Pending until an app container started
        assert_eq!(
            get_phase(&s, &[unstarted.clone()], &[waiting("app", None)], false),
            "Pending"
        );
        assert_eq!(
            get_phase(&s, &[unstarted], &[running("app")], false),
            "Running"
        );
        // a crash-looping sidecar is ignored, like a terminated one
        assert_eq!(
            get_phase(&s, &[waiting("side", Some(1))], &[running("app")], false),
            "Running"
        );
        assert_eq!(
            get_phase(
                &s,
                &[waiting("side", Some(1))],
                &[terminated("app", 0)],
                false
            ),
            "Succeeded"
        );
        assert_eq!(
            get_phase(
                &s,
                &[terminated("side", 143)],
                &[terminated("app", 0)],
                false
            ),
            "Succeeded"
        );
        // a running sidecar counts as running
        assert_eq!(
            get_phase(&s, &[running("side")], &[terminated("app", 0)], false),
            "Running"
        );
    }

    #[test]
    fn containers_ready_and_ready_conditions_use_upstream_strings() {
        let s = spec("Always", &["a", "b", "c"]);
        let mut b = running("b");
        b.ready = false;
        let c = containers_ready_condition(&s, &[], &[running("a"), b], "Running");
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            c.message.as_deref(),
            Some("containers with unknown status: [c], containers with unready status: [b]")
        );
        let r = ready_condition(&s, &[], &c);
        assert_eq!(
            (r.type_.as_str(), r.reason.as_deref(), r.message),
            ("Ready", Some("ContainersNotReady"), c.message.clone())
        );
        let s1 = spec("Never", &["a"]);
        let done = containers_ready_condition(&s1, &[], &[terminated("a", 0)], "Succeeded");
        assert_eq!(
            (done.status.as_str(), done.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
        let failed = containers_ready_condition(&s1, &[], &[terminated("a", 1)], "Failed");
        assert_eq!(failed.reason.as_deref(), Some("PodFailed"));
        let ok = containers_ready_condition(&s1, &[], &[running("a")], "Running");
        assert_eq!((ok.status.as_str(), ok.reason), ("True", None));
    }

    #[test]
    fn readiness_gates() {
        let mut s = spec("Always", &["a"]);
        s.readiness_gates = Some(vec![
            PodReadinessGate {
                condition_type: "k8s.io/test-condition1".into(),
            },
            PodReadinessGate {
                condition_type: "k8s.io/test-condition2".into(),
            },
        ]);
        let cr = containers_ready_condition(&s, &[], &[running("a")], "Running");
        let current = vec![PodCondition {
            type_: "k8s.io/test-condition1".into(),
            status: "False".into(),
            ..Default::default()
        }];
        let r = ready_condition(&s, &current, &cr);
        assert_eq!(r.reason.as_deref(), Some("ReadinessGatesNotReady"));
        assert_eq!(
            r.message.as_deref(),
            Some(
                "the status of pod readiness gate \"k8s.io/test-condition1\" is not \"True\", but False, corresponding condition of pod readiness gate \"k8s.io/test-condition2\" does not exist."
            )
        );
    }

    #[test]
    fn initialized_condition_messages() {
        let mut s = spec("Always", &["run1"]);
        s.init_containers = Some(vec![
            Container {
                name: "init1".into(),
                ..Default::default()
            },
            Container {
                name: "init2".into(),
                ..Default::default()
            },
        ]);
        let c = initialized_condition(
            &s,
            &[waiting("init1", Some(1)), waiting("init2", None)],
            &[waiting("run1", None)],
            "Pending",
        );
        assert_eq!(c.reason.as_deref(), Some("ContainersNotInitialized"));
        assert_eq!(
            c.message.as_deref(),
            Some("containers with incomplete status: [init1 init2]")
        );
        assert_eq!(
            initialized_condition(&spec("Always", &["a"]), &[], &[], "Pending").status,
            "True"
        );
    }

    #[test]
    fn merge_keeps_foreign_conditions_first_and_transition_times() {
        let t0 = Time(jiff::Timestamp::from_second(1000).unwrap());
        let t1 = Time(jiff::Timestamp::from_second(2000).unwrap());
        let current = vec![
            PodCondition {
                type_: "PodScheduled".into(),
                status: "True".into(),
                last_transition_time: Some(t0.clone()),
                ..Default::default()
            },
            PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                ..Default::default()
            },
            PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                last_transition_time: Some(t0.clone()),
                ..Default::default()
            },
        ];
        let owned = vec![
            scheduled_condition(),
            condition(READY, true, None, None),
            condition(CONTAINERS_READY, true, None, None),
            ready_to_start_containers_condition(true),
            condition(INITIALIZED, true, None, None),
        ];
        let merged = merge_conditions(&current, owned, &t1);
        let types: Vec<_> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "DisruptionTarget",
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert_eq!(merged[5].last_transition_time, Some(t0));
        assert_eq!(merged[3].last_transition_time, Some(t1));
    }

    fn with_resources(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let m = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, q)| (k.to_string(), Quantity(q.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: m(req),
                limits: m(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn qos_classes() {
        let pod = |c: Container| PodSpec {
            containers: vec![c],
            ..Default::default()
        };
        assert_eq!(qos_class(&pod(Container::default())), "BestEffort");
        assert_eq!(
            qos_class(&pod(with_resources(
                &[("cpu", "100m"), ("memory", "100Mi")],
                &[("cpu", "0.1"), ("memory", "100Mi")]
            ))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(with_resources(
                &[],
                &[("cpu", "1"), ("memory", "1Gi")]
            ))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(with_resources(&[("cpu", "100m")], &[]))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(with_resources(
                &[("cpu", "100m"), ("memory", "1Gi")],
                &[("cpu", "200m"), ("memory", "1Gi")]
            ))),
            "Burstable"
        );
    }

    #[test]
    fn pod_level_resources_decide_the_qos_class() {
        let m = |kv: &[(&str, &str)]| -> Option<std::collections::BTreeMap<String, Quantity>> {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            )
        };
        let pod = |req: &[(&str, &str)], lim: &[(&str, &str)], c: Container| PodSpec {
            containers: vec![c],
            resources: Some(ResourceRequirements {
                requests: m(req),
                limits: m(lim),
                ..Default::default()
            }),
            ..Default::default()
        };
        // containers without resources, the pod's limits equal its requests: Guaranteed
        let both = [("cpu", "500m"), ("memory", "128Mi")];
        assert_eq!(
            qos_class(&pod(&both, &both, Container::default())),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(&[], &both, Container::default())),
            "Guaranteed"
        );
        // only a cpu limit at pod level: Burstable, even with a Guaranteed-looking container
        let c = with_resources(&[], &[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(qos_class(&pod(&[], &[("cpu", "1")], c)), "Burstable");
        assert_eq!(
            qos_class(&pod(&[("memory", "64Mi")], &[], Container::default())),
            "Burstable"
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Ok(100_000_000));
        assert_eq!(parse_quantity("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_quantity("1Ki"), Ok(1024 * 1_000_000_000));
        assert_eq!(parse_quantity("1e3"), Ok(1000 * 1_000_000_000));
        assert!(parse_quantity("abc").is_err());
        assert!(parse_quantity("1Zi").is_err());
        assert!(parse_quantity("").is_err());
    }

    #[test]
    fn go_durations() {
        use std::time::Duration;
        let cases = [
            (10, "10s"),
            (20, "20s"),
            (80, "1m20s"),
            (160, "2m40s"),
            (300, "5m0s"),
            (3600, "1h0m0s"),
        ];
        for (s, want) in cases {
            assert_eq!(go_duration(Duration::from_secs(s)), want);
        }
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
