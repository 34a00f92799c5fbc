//! Defaulting as upstream's `SetDefaults_*` functions and the default admission plugins
//! (Priority, DefaultTolerationSeconds) do it. Applied by the API server on create and
//! update before validation.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, HTTPGetAction, LifecycleHandler, Pod, PodSecurityContext,
    PodSpec, Probe, ResourceRequirements, Service, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The default `terminationGracePeriodSeconds`.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// The default `tolerationSeconds` the DefaultTolerationSeconds plugin adds.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;
/// Taint key of a not-ready node.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint key of an unreachable node.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn set<T>(slot: &mut Option<T>, v: T) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

fn image_pull_policy(image: &str) -> &'static str {
    // Digest references and explicit non-latest tags are IfNotPresent; no tag or `latest` is Always.
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_http_get(h: &mut HTTPGetAction) {
    if h.path.as_deref().unwrap_or("").is_empty() {
        h.path = Some("/".into());
    }
    set(&mut h.scheme, "HTTP".into());
}

fn default_handler(h: &mut LifecycleHandler) {
    if let Some(g) = h.http_get.as_mut() {
        default_http_get(g);
    }
}

fn default_probe(p: &mut Probe) {
    set(&mut p.timeout_seconds, 1);
    set(&mut p.period_seconds, 10);
    set(&mut p.success_threshold, 1);
    set(&mut p.failure_threshold, 3);
    if let Some(g) = p.http_get.as_mut() {
        default_http_get(g);
    }
    if let Some(g) = p.grpc.as_mut() {
        set(&mut g.service, String::new());
    }
}

fn default_container(c: &mut Container, host_network: bool) {
    set(
        &mut c.termination_message_path,
        "/dev/termination-log".into(),
    );
    set(&mut c.termination_message_policy, "File".into());
    if c.image_pull_policy.is_none() {
        c.image_pull_policy = Some(image_pull_policy(c.image.as_deref().unwrap_or("")).into());
    }
    set(&mut c.resources, ResourceRequirements::default());
    for p in c.ports.iter_mut().flatten() {
        set(&mut p.protocol, "TCP".into());
        if host_network && p.host_port.is_none() {
            p.host_port = Some(p.container_port);
        }
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set(&mut f.api_version, "v1".into());
        }
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(p);
    }
    if let Some(l) = c.lifecycle.as_mut() {
        for h in [&mut l.post_start, &mut l.pre_stop].into_iter().flatten() {
            default_handler(h);
        }
    }
}

/// Defaults a pod spec (also used for workload templates).
pub fn default_pod_spec(spec: &mut PodSpec) {
    set(&mut spec.restart_policy, "Always".into());
    set(&mut spec.dns_policy, "ClusterFirst".into());
    set(
        &mut spec.termination_grace_period_seconds,
        DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    );
    set(&mut spec.security_context, PodSecurityContext::default());
    set(&mut spec.scheduler_name, "default-scheduler".into());
    set(&mut spec.enable_service_links, true);
    let host_network = spec.host_network.unwrap_or(false);
    for c in spec.init_containers.iter_mut().flatten() {
        default_container(c, host_network);
    }
    for c in spec.containers.iter_mut() {
        default_container(c, host_network);
    }
    for v in spec.volumes.iter_mut().flatten() {
        let has_source = {
            let mut probe = v.clone();
            probe.name = String::new();
            probe != Default::default()
        };
        if !has_source {
            v.empty_dir = Some(EmptyDirVolumeSource::default());
        }
        if let Some(s) = v.secret.as_mut() {
            set(&mut s.default_mode, 0o644);
        }
        if let Some(s) = v.config_map.as_mut() {
            set(&mut s.default_mode, 0o644);
        }
    }
}

/// Adds the admission-time defaults a pod gets on create: priority 0 with
/// `PreemptLowerPriority`, and 300 s `NoExecute` tolerations for the not-ready and
/// unreachable taints unless the pod already tolerates them.
pub fn admit_pod_spec(spec: &mut PodSpec) {
    set(&mut spec.priority, 0);
    set(&mut spec.preemption_policy, "PreemptLowerPriority".into());
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [TAINT_NOT_READY, TAINT_UNREACHABLE] {
        let tolerated = tolerations.iter().any(|t| {
            let key_ok = t.key.as_deref().unwrap_or("").is_empty()
                && t.operator.as_deref() == Some("Exists")
                || t.key.as_deref() == Some(key);
            let effect_ok = t.effect.as_deref().unwrap_or("").is_empty()
                || t.effect.as_deref() == Some("NoExecute");
            key_ok && effect_ok
        });
        if !tolerated {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
}

/// Defaults a pod on create or update (not the admission defaults).
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    if spec.termination_grace_period_seconds.is_some_and(|g| g < 0) {
        spec.termination_grace_period_seconds = Some(1);
    }
}

/// The QoS class of a pod spec: `Guaranteed`, `Burstable` or `BestEffort` (upstream
/// `GetPodQOS`, pod-level resources included: [`crate::status::qos_class`]).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    crate::status::qos_class(spec)
}

/// Defaults a ReplicaSet (replicas 1, template spec).
pub fn default_replica_set(rs: &mut ReplicaSet) {
    let spec = rs.spec.get_or_insert_with(Default::default);
    set(&mut spec.replicas, 1);
    if let Some(ps) = spec.template.as_mut().and_then(|t| t.spec.as_mut()) {
        default_pod_spec(ps);
    }
}

/// Defaults a Deployment (replicas, RollingUpdate 25%/25%, history 10, deadline 600).
pub fn default_deployment(d: &mut Deployment) {
    let spec = d.spec.get_or_insert_with(Default::default);
    set(&mut spec.replicas, 1);
    set(&mut spec.revision_history_limit, 10);
    set(&mut spec.progress_deadline_seconds, 600);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    set(&mut strategy.type_, "RollingUpdate".into());
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        set(&mut ru.max_surge, IntOrString::String("25%".into()));
        set(&mut ru.max_unavailable, IntOrString::String("25%".into()));
    }
    if let Some(ps) = spec.template.spec.as_mut() {
        default_pod_spec(ps);
    }
}

/// Defaults a StatefulSet (replicas, OrderedReady, RollingUpdate partition 0, Retain/Retain).
pub fn default_stateful_set(s: &mut StatefulSet) {
    let spec = s.spec.get_or_insert_with(Default::default);
    set(&mut spec.replicas, 1);
    set(&mut spec.revision_history_limit, 10);
    set(&mut spec.pod_management_policy, "OrderedReady".into());
    let us = spec
        .update_strategy
        .get_or_insert_with(StatefulSetUpdateStrategy::default);
    set(&mut us.type_, "RollingUpdate".into());
    if us.type_.as_deref() == Some("RollingUpdate") {
        let ru = us
            .rolling_update
            .get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
        set(&mut ru.partition, 0);
    }
    let pr = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    set(&mut pr.when_deleted, "Retain".into());
    set(&mut pr.when_scaled, "Retain".into());
    if let Some(ps) = spec.template.spec.as_mut() {
        default_pod_spec(ps);
    }
}

/// Defaults a Service (type ClusterIP, sessionAffinity None, ports TCP, targetPort = port).
pub fn default_service(s: &mut Service) {
    use k8s_openapi::api::core::v1::{ClientIPConfig, SessionAffinityConfig};
    let spec = s.spec.get_or_insert_with(Default::default);
    set(&mut spec.type_, "ClusterIP".into());
    set(&mut spec.session_affinity, "None".into());
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let c = spec
                .session_affinity_config
                .get_or_insert_with(SessionAffinityConfig::default)
                .client_ip
                .get_or_insert_with(ClientIPConfig::default);
            set(
                &mut c.timeout_seconds,
                crate::service::DEFAULT_CLIENT_IP_TIMEOUT_SECONDS,
            );
        }
        _ => {}
    }
    let ty = spec.type_.clone().unwrap_or_default();
    if ty != "ExternalName" {
        set(&mut spec.internal_traffic_policy, "Cluster".into());
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        set(&mut spec.external_traffic_policy, "Cluster".into());
    }
    if ty == "LoadBalancer" {
        set(&mut spec.allocate_load_balancer_node_ports, true);
    }
    if let Some(ip) = spec.cluster_ip.clone().filter(|ip| !ip.is_empty())
        && spec.cluster_ips.as_ref().is_none_or(Vec::is_empty)
    {
        spec.cluster_ips = Some(vec![ip]);
    }
    for p in spec.ports.iter_mut().flatten() {
        set(&mut p.protocol, "TCP".into());
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_defaults_match_upstream() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"terminationGracePeriodSeconds": -5, "containers": [
                {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
                 "livenessProbe": {"httpGet": {"port": 80}}},
                {"name": "b", "image": "busybox:1.36"}
            ]}
        }))
        .unwrap();
        default_pod(&mut pod);
        admit_pod_spec(pod.spec.as_mut().unwrap());
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(1));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.enable_service_links, Some(true));
        let a = &spec.containers[0];
        assert_eq!(a.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            spec.containers[1].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
        assert_eq!(
            a.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(a.termination_message_policy.as_deref(), Some("File"));
        assert_eq!(
            a.ports.as_ref().unwrap()[0].protocol.as_deref(),
            Some("TCP")
        );
        let lp = a.liveness_probe.as_ref().unwrap();
        assert_eq!(
            (
                lp.timeout_seconds,
                lp.period_seconds,
                lp.success_threshold,
                lp.failure_threshold
            ),
            (Some(1), Some(10), Some(1), Some(3))
        );
        assert_eq!(lp.http_get.as_ref().unwrap().path.as_deref(), Some("/"));
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 2);
        assert_eq!(qos_class(&spec), "BestEffort");
    }

    #[test]
    fn default_grace_is_30() {
        let mut pod = Pod::default();
        default_pod(&mut pod);
        assert_eq!(pod.spec.unwrap().termination_grace_period_seconds, Some(30));
    }
}
