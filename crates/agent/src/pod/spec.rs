//! A pod's runtime configuration (pure): the sandbox and container configs the runtime
//! receives, their labels and annotations (how a re-adopting agent, the log and the exec
//! servers recognise its containers), the spec hash that restarts a container whose spec
//! changed, and the stop signal. What a config needs resolved before a create (environment,
//! volume mounts) is `sync.rs`'s.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_api::status as rules;
use podvisor_runtime::{ContainerConfig, Resources, SandboxConfig, Signal};

/// Sandbox label: pod namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";

/// Sandbox label: pod name.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";

/// Sandbox label: pod UID.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";

/// Container label: container name.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// Container annotation: the instance number (restartCount).
pub const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

/// Container annotation: the container spec hash.
pub const ANNOTATION_HASH: &str = "io.kubernetes.container.hash";

/// The UID of the pod a sandbox is for: its label, else (older sandboxes) its ID.
pub fn sandbox_pod_uid(config: &SandboxConfig) -> &str {
    config.labels.get(LABEL_POD_UID).unwrap_or(&config.id)
}

/// The spec name of a runtime container: its label, else its runtime name.
pub fn spec_container_name(config: &ContainerConfig) -> &str {
    config
        .labels
        .get(LABEL_CONTAINER_NAME)
        .unwrap_or(&config.name)
}

/// A stable hash of a container's spec (changing it starts a fresh back-off).
pub fn container_hash(c: &Container) -> u64 {
    // resources and resizePolicy change in place (in-place resize), never by a restart
    // for a changed definition
    let hashed = Container {
        resources: None,
        resize_policy: None,
        ..c.clone()
    };
    let json = serde_json::to_string(&hashed).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    h.finish()
}

/// The `fieldPath` of a container's events: `spec.initContainers{n}` for an init container,
/// `spec.ephemeralContainers{n}` for an ephemeral one, else `spec.containers{n}`.
pub(super) fn field_path(pod: &Pod, name: &str) -> String {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|v| v.iter().any(|c| c.name == name));
    let ephemeral = spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|v| v.iter().any(|c| c.name == name));
    if init {
        format!("spec.initContainers{{{name}}}")
    } else if ephemeral {
        format!("spec.ephemeralContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

/// The pod's ephemeral containers (`kubectl debug`) as the containers they describe, in
/// spec order. They run in the pod's sandbox like its other containers, so they share its
/// pid, ipc, uts and network namespaces: `targetContainerName`'s processes are visible to
/// them whatever it names (the sandbox has one pid namespace).
pub fn ephemeral_containers(pod: &Pod) -> Vec<Container> {
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .map(|v| {
            v.iter()
                .map(podvisor_api::validation::ephemeral_as_container)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn stop_signal_of(c: &Container) -> Signal {
    c.lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.as_deref())
        .and_then(Signal::from_name)
        .unwrap_or(Signal::TERM)
}

pub(super) fn parse_millis(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<u64> {
    let nanos = rules::parse_quantity(&q?.0).ok()?;
    u64::try_from(nanos / 1_000_000).ok()
}

pub(super) fn parse_units(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<u64> {
    let nanos = rules::parse_quantity(&q?.0).ok()?;
    u64::try_from(nanos / 1_000_000_000).ok()
}

/// The cgroup limits of a container's `resources` (memory limit, cpu request and limit).
pub fn runtime_resources(
    res: Option<&k8s_openapi::api::core::v1::ResourceRequirements>,
) -> Resources {
    let limits = res.and_then(|r| r.limits.as_ref());
    let requests = res.and_then(|r| r.requests.as_ref());
    Resources {
        memory_limit_bytes: parse_units(limits.and_then(|l| l.get("memory"))),
        cpu_request_millis: parse_millis(requests.and_then(|l| l.get("cpu"))),
        cpu_limit_millis: parse_millis(limits.and_then(|l| l.get("cpu"))),
        pids_limit: None,
    }
}

/// The runtime configuration of a container of the pod, with its resolved environment
/// (`crate::pod::env::resolve`; `command` and `args` are expanded against it).
pub fn container_config(
    pod: &Pod,
    c: &Container,
    restart_count: i32,
    hash: u64,
    env: Vec<(String, String)>,
) -> ContainerConfig {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user));
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group));
    let mut labels = pod_labels(pod);
    labels.insert(LABEL_CONTAINER_NAME.to_string(), c.name.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ANNOTATION_RESTART_COUNT.to_string(),
        restart_count.to_string(),
    );
    annotations.insert(ANNOTATION_HASH.to_string(), format!("{hash:x}"));
    let (command, args) = crate::pod::env::expand_command(c, &env);
    ContainerConfig {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        command,
        args,
        env,
        working_dir: c
            .working_dir
            .as_ref()
            .filter(|w| !w.is_empty())
            .map(Into::into),
        uid: uid.and_then(|u| u32::try_from(u).ok()),
        gid: gid.and_then(|g| u32::try_from(g).ok()),
        stop_signal: Some(stop_signal_of(c)),
        resources: runtime_resources(c.resources.as_ref()),
        labels,
        annotations,
        mounts: Vec::new(),
        termination_message: crate::pod::volumes::termination_message(c),
        rootfs: None,
        security: Default::default(),
        stdio: podvisor_runtime::Stdio {
            stdin: c.stdin == Some(true),
            stdin_once: c.stdin_once == Some(true),
            tty: c.tty == Some(true),
        },
    }
}

/// The labels that name the pod on its sandbox and on each of its containers (how a
/// re-adopting agent and the log and exec servers find them).
fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let meta = &pod.metadata;
    BTreeMap::from([
        (
            LABEL_POD_NAME.to_string(),
            meta.name.clone().unwrap_or_default(),
        ),
        (
            LABEL_POD_NAMESPACE.to_string(),
            meta.namespace.clone().unwrap_or_default(),
        ),
        (
            LABEL_POD_UID.to_string(),
            meta.uid.clone().unwrap_or_default(),
        ),
    ])
}

/// The sandbox configuration of the pod.
/// (`hostPID`, `hostIPC` and the pod's sysctls included; the network is the worker's).
pub fn sandbox_config(pod: &Pod) -> SandboxConfig {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let sysctls = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|p| p.sysctls.as_ref())
        .map(|v| {
            v.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    SandboxConfig {
        id: meta.uid.clone().unwrap_or_default(),
        hostname: meta.name.clone().unwrap_or_default(),
        labels: pod_labels(pod),
        annotations: BTreeMap::new(),
        // pod-level resources (KEP-2837) limit the pod cgroup
        resources: runtime_resources(spec.and_then(|s| s.resources.as_ref())),
        network_namespace: false,
        host_pid: spec.and_then(|s| s.host_pid) == Some(true),
        host_ipc: spec.and_then(|s| s.host_ipc) == Some(true),
        sysctls,
    }
}
