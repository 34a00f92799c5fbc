//! Service links: the environment variables the kubelet gives every container for the
//! Services it can see (`getServiceEnvVarMap` + `envvars.FromServices`).
//!
//! * Services with a cluster IP (not headless, not ExternalName) count.
//! * The `kubernetes` Service of `default` always (so `KUBERNETES_SERVICE_HOST` and
//!   `KUBERNETES_SERVICE_PORT` reach every pod, in-cluster clients need them); every
//!   Service of the pod's own namespace only with `enableServiceLinks` (default true). A
//!   Service of the pod's namespace wins over `default`'s of the same name.
//! * Per Service `NAME` (upper case, `-` → `_`): `NAME_SERVICE_HOST` (the cluster IP),
//!   `NAME_SERVICE_PORT` (the first port), `NAME_SERVICE_PORT_<PORTNAME>` per named port, and
//!   the Docker link variables: `NAME_PORT` (`<proto>://<ip>:<first port>`) and per port
//!   `NAME_PORT_<port>_<PROTO>` with `_PROTO`, `_PORT`, `_ADDR`.
//!
//! The container's own variables win over these, and `$(VAR)` in a value can name them
//! ([`super::env::resolve_with_services`]). The agent reads Services from a watch cache;
//! until it has listed them once, containers cannot start (the kubelet's
//! `services have not yet been read at least once, cannot construct envvars`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};

/// The Services the agent knows (its watch cache); None until they were listed once.
pub type ServiceLister = Arc<dyn Fn() -> Option<Vec<Arc<Service>>> + Send + Sync>;

/// A lister of a fixed list (tests, agents without an API).
pub fn fixed(services: Vec<Service>) -> ServiceLister {
    let list: Vec<Arc<Service>> = services.into_iter().map(Arc::new).collect();
    Arc::new(move || Some(list.clone()))
}

/// The names of the Services of `default` whose variables every pod gets.
const MASTER_SERVICES: [&str; 1] = ["kubernetes"];

fn env_name(s: &str) -> String {
    s.replace('-', "_").to_ascii_uppercase()
}

fn cluster_ip(s: &Service) -> Option<&str> {
    s.spec
        .as_ref()?
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

/// `host:port`, with brackets for IPv6 (`net.JoinHostPort`).
fn join_host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The variables of one Service (`envvars.FromServices` for one), in upstream's order.
fn service_vars(s: &Service, out: &mut Vec<(String, String)>) {
    let Some(ip) = cluster_ip(s) else {
        return;
    };
    let ports = s
        .spec
        .as_ref()
        .and_then(|sp| sp.ports.as_deref())
        .unwrap_or_default();
    let Some(first) = ports.first() else {
        return;
    };
    let prefix = env_name(s.metadata.name.as_deref().unwrap_or_default());
    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
    out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                p.port.to_string(),
            ));
        }
    }
    for (i, p) in ports.iter().enumerate() {
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        let lower = protocol.to_ascii_lowercase();
        let url = format!("{lower}://{}", join_host_port(ip, p.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_ascii_uppercase());
        out.push((port_prefix.clone(), url));
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), p.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
    }
}

/// The service-link variables of `pod` from `services` (each name once, sorted by
/// Service name). See the module documentation.
pub fn service_env(pod: &Pod, services: &[Arc<Service>]) -> Vec<(String, String)> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in services {
        if cluster_ip(s).is_none() {
            continue;
        }
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let ns = s.metadata.namespace.as_deref().unwrap_or("default");
        if ns == "default" && MASTER_SERVICES.contains(&name) {
            chosen.entry(name).or_insert(s);
        } else if ns == namespace && links {
            chosen.insert(name, s);
        }
    }
    let mut out = Vec::new();
    for s in chosen.values() {
        service_vars(s, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, spec: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
            )
            .unwrap(),
        )
    }

    fn pod(ns: &str, links: Option<bool>) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": ns},
            "spec": {"containers": [], "enableServiceLinks": links}}))
        .unwrap()
    }

    fn services() -> Vec<Arc<Service>> {
        vec![
            svc(
                "default",
                "kubernetes",
                json!({"clusterIP": "10.96.0.1",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}),
            ),
            svc(
                "shop",
                "redis-master",
                json!({"clusterIP": "10.96.7.8",
                "ports": [{"port": 6379}, {"name": "metrics", "port": 9121, "protocol": "UDP"}]}),
            ),
            svc(
                "shop",
                "headless",
                json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            ),
            svc(
                "shop",
                "ext",
                json!({"type": "ExternalName", "externalName": "example.com"}),
            ),
            svc(
                "other",
                "elsewhere",
                json!({"clusterIP": "10.96.9.9", "ports": [{"port": 80}]}),
            ),
            svc(
                "shop",
                "v6",
                json!({"clusterIP": "fd00::5", "ports": [{"port": 80}]}),
            ),
        ]
    }

    fn map(v: &[(String, String)]) -> BTreeMap<&str, &str> {
        v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn the_kubelets_variables_for_every_service_of_the_namespace() {
        let env = service_env(&pod("shop", None), &services());
        let m = map(&env);
        let want: BTreeMap<&str, &str> = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ("REDIS_MASTER_SERVICE_HOST", "10.96.7.8"),
            ("REDIS_MASTER_SERVICE_PORT", "6379"),
            ("REDIS_MASTER_SERVICE_PORT_METRICS", "9121"),
            ("REDIS_MASTER_PORT", "tcp://10.96.7.8:6379"),
            ("REDIS_MASTER_PORT_6379_TCP", "tcp://10.96.7.8:6379"),
            ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_MASTER_PORT_6379_TCP_ADDR", "10.96.7.8"),
            ("REDIS_MASTER_PORT_9121_UDP", "udp://10.96.7.8:9121"),
            ("REDIS_MASTER_PORT_9121_UDP_PROTO", "udp"),
            ("REDIS_MASTER_PORT_9121_UDP_PORT", "9121"),
            ("REDIS_MASTER_PORT_9121_UDP_ADDR", "10.96.7.8"),
            ("V6_SERVICE_HOST", "fd00::5"),
            ("V6_SERVICE_PORT", "80"),
            ("V6_PORT", "tcp://[fd00::5]:80"),
            ("V6_PORT_80_TCP", "tcp://[fd00::5]:80"),
            ("V6_PORT_80_TCP_PROTO", "tcp"),
            ("V6_PORT_80_TCP_PORT", "80"),
            ("V6_PORT_80_TCP_ADDR", "fd00::5"),
        ]
        .into_iter()
        .collect();
        assert_eq!(m, want);
        assert_eq!(env.len(), want.len(), "each name once");
    }

    #[test]
    fn without_service_links_only_kubernetes() {
        let env = service_env(&pod("shop", Some(false)), &services());
        assert!(
            env.iter().all(|(k, _)| k.starts_with("KUBERNETES_")),
            "{env:?}"
        );
        assert_eq!(env.len(), 8);
        // Pods of default with links off still get `kubernetes`.
        let env = service_env(&pod("default", Some(false)), &services());
        assert_eq!(map(&env)["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
    }

    #[test]
    fn a_namespace_service_named_kubernetes_wins() {
        let mut list = services();
        list.push(svc(
            "shop",
            "kubernetes",
            json!({"clusterIP": "10.96.3.3", "ports": [{"port": 80}]}),
        ));
        let env = service_env(&pod("shop", None), &list);
        assert_eq!(map(&env)["KUBERNETES_SERVICE_HOST"], "10.96.3.3");
    }
}
