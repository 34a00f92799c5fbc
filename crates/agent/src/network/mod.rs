//! The pod network: a network namespace of its own for every pod that is not `hostNetwork`,
//! plugged by CNI ([`cni`]), beside the pod worker.
//!
//! # A pod's network, from first to last
//!
//! ```text
//!   sandbox created with a      ADD (chain of the first       containers start ...   last container gone:
//!   network namespace (its  ──▶ configuration), result  ──▶  status.podIP(s) =  ──▶ DEL (cached config
//!   supervisor holds it, lo up)  cached on disk               the pod's address       and result), then
//!                                                                                     the sandbox goes
//! ```
//!
//! * The namespace is the sandbox's (`SandboxConfig::network_namespace`, made by the
//!   runtime's supervisor, named `/proc/<supervisor>/ns/net`): it survives an agent restart
//!   and ends with the supervisor.
//! * [`PodNetwork::setup`] runs before any container is created; the pod's
//!   `PodReadyToStartContainers` condition turns True only after it succeeded. A failed ADD
//!   removes the sandbox again (`FailedCreatePodSandBox`) and the worker retries.
//! * A re-adopted sandbox (agent restart) finds its addresses in the cache
//!   ([`PodNetwork::cached_ips`]); the agent runs CHECK on it ([`PodNetwork::check`]).
//! * [`PodNetwork::teardown`] runs DEL while the namespace still exists, before the sandbox
//!   is removed; the IP lease is released then and never earlier. A DEL that fails keeps
//!   the cache entry and is retried; at start the agent deletes every cached attachment
//!   whose sandbox is gone ([`PodNetwork::collect_garbage`]).
//!
//! # Configuration
//!
//! The first configuration in the conf dir (default: podvisor's own, `<data dir>/cni/net.d`,
//! so that a podman bridge in `/etc/cni/net.d` is never joined silently). When podvisor's
//! own dir is empty it writes [`default_conflist`]: `bridge` `podvisor0` with `host-local`
//! IPAM on the node's `spec.podCIDR` (waiting for the node IPAM controller to assign one),
//! masquerade for traffic leaving the node, `portmap` for `hostPort`, `loopback`.
//!
//! # Between nodes
//!
//! [`routes`]: each agent routes the other nodes' podCIDRs via their InternalIP (host-gw,
//! nodes on one L2 segment). Traffic leaving the pod subnet is masqueraded by the default
//! configuration's bridge (`ipMasq`), pod-to-pod traffic across nodes included.
//!
//! # Without plugins
//!
//! When the binaries the configuration needs are missing ([`PodNetwork::missing`]) pods run
//! on the host's network as before, the node says why in its `NetworkUnavailable`
//! condition, and `up` prints that one line. The check runs per new sandbox, so installing
//! the plugins takes effect for the next pod.

pub mod cni;
pub mod routes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Map, Value, json};

use self::cni::{Attachment, ConfList, Runner};

/// The interface name inside the pod.
pub const IF_NAME: &str = "eth0";
/// The name of the configuration podvisor writes.
pub const DEFAULT_CONF_FILE: &str = "10-podvisor.conflist";
/// The bridge of the default configuration.
pub const BRIDGE: &str = "podvisor0";
/// The plugins the default configuration uses.
pub const DEFAULT_PLUGINS: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];
/// The Debian/Ubuntu/Fedora package with the standard plugins.
pub const PLUGIN_PACKAGE: &str = "containernetworking-plugins";
/// The default plugin directories (upstream's, then Debian's).
pub const DEFAULT_BIN_DIRS: &str = "/opt/cni/bin:/usr/lib/cni";

/// How the pod network is set up.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Where the network configuration is read.
    pub conf_dir: PathBuf,
    /// Whether `conf_dir` is podvisor's own: when it has no configuration, the default is
    /// written there.
    pub write_default: bool,
    /// Where the plugins are, searched in order.
    pub bin_dirs: Vec<PathBuf>,
    /// The result cache and the default configuration's IPAM state.
    pub state_dir: PathBuf,
}

impl NetworkConfig {
    /// podvisor's own setup below `data_dir` with plugins from `bin_dirs`.
    pub fn new(
        data_dir: &Path,
        conf_dir: Option<PathBuf>,
        bin_dirs: Vec<PathBuf>,
    ) -> NetworkConfig {
        NetworkConfig {
            write_default: conf_dir.is_none(),
            conf_dir: conf_dir.unwrap_or_else(|| data_dir.join("cni").join("net.d")),
            bin_dirs,
            state_dir: data_dir.join("cni"),
        }
    }
}

/// Splits a `:`-separated directory list.
pub fn split_dirs(list: &str) -> Vec<PathBuf> {
    list.split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// The default configuration list for a node whose pods get addresses from `pod_cidr`.
pub fn default_conflist(pod_cidr: &str, ipam_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "podvisor",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir,
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true },
            { "type": "loopback" }
        ]
    })
}

/// What keeps pods off their own network with `config`, in one line (None: nothing): no
/// configuration, or plugins it needs that are not installed. Pods then run on the host's
/// network.
pub fn missing(config: &NetworkConfig) -> Option<String> {
    let conf = cni::load_dir(&config.conf_dir);
    let needed: Vec<String> = match &conf {
        Some(c) => c.types(),
        None if config.write_default => DEFAULT_PLUGINS.iter().map(|s| s.to_string()).collect(),
        None => {
            return Some(format!(
                "no CNI configuration in {}; pods use the host network",
                config.conf_dir.display()
            ));
        }
    };
    let absent: Vec<&str> = needed
        .iter()
        .filter(|t| cni::find_plugin(&config.bin_dirs, t).is_none())
        .map(String::as_str)
        .collect();
    if absent.is_empty() {
        return None;
    }
    let dirs = std::env::join_paths(&config.bin_dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(format!(
        "pod network unavailable: CNI plugin(s) {} not found in {dirs}; install {PLUGIN_PACKAGE} (or set --cni-bin-dir); pods use the host network",
        absent.join(", ")
    ))
}

/// The pod network of one node. See the module documentation.
pub struct PodNetwork {
    config: NetworkConfig,
    runner: Runner,
    /// Reads the Node's `spec.podCIDR` for the default configuration.
    client: Option<kube::Client>,
    node_name: String,
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PodNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodNetwork")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether a pod uses the host's network.
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

impl PodNetwork {
    /// The pod network of node `node_name`; `client` reads the Node's podCIDR when the default
    /// configuration must be written.
    pub fn new(config: NetworkConfig, client: Option<kube::Client>, node_name: &str) -> PodNetwork {
        PodNetwork {
            runner: Runner {
                bin_dirs: config.bin_dirs.clone(),
                cache_dir: config.state_dir.join("cache"),
            },
            config,
            client,
            node_name: node_name.to_string(),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// What keeps pods off their own network, in one line (None: nothing); see [`missing`].
    pub fn missing(&self) -> Option<String> {
        missing(&self.config)
    }

    /// Whether a new sandbox for `pod` gets a network namespace of its own.
    pub fn wants_namespace(&self, pod: &Pod) -> bool {
        !host_network(pod) && self.missing().is_none()
    }

    /// The configuration to use, writing the default one first when needed.
    async fn conf(&self) -> Result<ConfList, String> {
        if let Some(c) = cni::load_dir(&self.config.conf_dir) {
            return Ok(c);
        }
        if !self.config.write_default {
            return Err(format!(
                "no network config found in {}",
                self.config.conf_dir.display()
            ));
        }
        let _w = self.writing.lock().await;
        if let Some(c) = cni::load_dir(&self.config.conf_dir) {
            return Ok(c);
        }
        let cidr = self.pod_cidr().await?;
        let list = default_conflist(&cidr, &self.config.state_dir.join("networks"));
        let bytes = serde_json::to_vec_pretty(&list).map_err(|e| e.to_string())?;
        let path = self.config.conf_dir.join(DEFAULT_CONF_FILE);
        cni::write_atomic(&path, &bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
        tracing::info!(file = %path.display(), pod_cidr = %cidr, "wrote the default pod network configuration");
        cni::load_dir(&self.config.conf_dir)
            .ok_or_else(|| "the default configuration does not load".into())
    }

    async fn pod_cidr(&self) -> Result<String, String> {
        let Some(client) = &self.client else {
            return Err("no API client to read the node's podCIDR".into());
        };
        let api: kube::Api<Node> = kube::Api::all(client.clone());
        let node = api
            .get(&self.node_name)
            .await
            .map_err(|e| format!("read node {}: {e}", self.node_name))?;
        node.spec
            .and_then(|s| s.pod_cidr)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("node {} has no podCIDR assigned yet", self.node_name))
    }

    /// ADD for the sandbox `id` of `pod` in the namespace `netns`: the pod's addresses.
    pub async fn setup(&self, pod: &Pod, id: &str, netns: &Path) -> Result<Vec<String>, String> {
        let wrap = |e: String| format!("failed to setup network for sandbox {id:?}: {e}");
        if let Some(c) = self.runner.cached_for(id, IF_NAME) {
            // A leftover of an earlier attempt for this ID: release it first.
            self.runner.del(&c, "").await.map_err(wrap)?;
        }
        let conf = self.conf().await.map_err(wrap)?;
        let a = attachment(pod, id, netns);
        let result = self.runner.add(&conf, &a).await.map_err(wrap)?;
        let ips = cni::result_ips(&result, IF_NAME);
        if ips.is_empty() {
            let _ = self.teardown(id, Some(netns)).await;
            return Err(wrap(format!("the result has no address for {IF_NAME}")));
        }
        Ok(ips)
    }

    /// The addresses of a sandbox's network, from the cache (a re-adopted sandbox).
    pub fn cached_ips(&self, id: &str) -> Option<Vec<String>> {
        let cached = self.runner.cached_for(id, IF_NAME)?;
        Some(cni::result_ips(&cached.result, IF_NAME))
    }

    /// CHECK of a re-adopted sandbox's network (agent restart); a failure is only logged:
    /// the pod keeps running as it is.
    pub async fn check(&self, id: &str, netns: &Path) {
        let Some(cached) = self.runner.cached_for(id, IF_NAME) else {
            return;
        };
        match self.runner.check(&cached, &netns.to_string_lossy()).await {
            Ok(()) => {}
            Err(e) if portmap_v6_false_alarm(&e, &cached.result) => {
                tracing::debug!(sandbox = %id, "network check: {e} (portmap before 1.3 checks IPv6 rules it never made for an IPv4-only pod)");
            }
            Err(e) => tracing::warn!(sandbox = %id, "network check failed: {e}"),
        }
    }

    /// DEL for the sandbox `id` (nothing when it has no network): its interfaces, port
    /// mappings and IP lease go. `netns` while it still exists.
    pub async fn teardown(&self, id: &str, netns: Option<&Path>) -> Result<(), String> {
        let Some(cached) = self.runner.cached_for(id, IF_NAME) else {
            return Ok(());
        };
        let ns = netns
            .filter(|p| p.exists())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.runner
            .del(&cached, &ns)
            .await
            .map_err(|e| format!("failed to destroy network for sandbox {id:?}: {e}"))
    }

    /// Deletes every cached attachment whose sandbox is not in `live` (left by a crash).
    pub async fn collect_garbage(&self, live: &std::collections::HashSet<String>) {
        for c in self.runner.cached() {
            if live.contains(&c.attachment.container_id) {
                continue;
            }
            let id = c.attachment.container_id.clone();
            match self.runner.del(&c, "").await {
                Ok(()) => {
                    tracing::info!(sandbox = %id, "released the network of a sandbox that is gone")
                }
                Err(e) => {
                    tracing::warn!(sandbox = %id, "cannot release the network of a sandbox that is gone: {e}")
                }
            }
        }
    }
}

/// Whether a CHECK failure is the `portmap` plugin's (before 1.3,
/// containernetworking/plugins#819) look for IPv6 DNAT rules of a pod without an IPv6
/// address: ADD made none, so their absence is no fault of the attachment.
fn portmap_v6_false_alarm(error: &str, result: &Value) -> bool {
    error.contains("type=\"portmap\"")
        && error.contains("could not check ipv6 dnat")
        && cni::result_ips(result, IF_NAME)
            .iter()
            .all(|ip| !ip.contains(':'))
}

/// The CNI arguments of a pod's attachment: Kubernetes' `CNI_ARGS` and its host ports.
fn attachment(pod: &Pod, id: &str, netns: &Path) -> Attachment {
    let meta = &pod.metadata;
    let args = vec![
        ["IgnoreUnknown".to_string(), "1".to_string()],
        [
            "K8S_POD_NAMESPACE".to_string(),
            meta.namespace.clone().unwrap_or_default(),
        ],
        [
            "K8S_POD_NAME".to_string(),
            meta.name.clone().unwrap_or_default(),
        ],
        ["K8S_POD_INFRA_CONTAINER_ID".to_string(), id.to_string()],
        [
            "K8S_POD_UID".to_string(),
            meta.uid.clone().unwrap_or_default(),
        ],
    ];
    let mut capability_args = Map::new();
    let mappings = port_mappings(pod);
    if !mappings.is_empty() {
        capability_args.insert("portMappings".into(), Value::Array(mappings));
    }
    Attachment {
        container_id: id.to_string(),
        netns: netns.to_string_lossy().into_owned(),
        if_name: IF_NAME.to_string(),
        args,
        capability_args,
    }
}

/// `portMappings` for the `portmap` plugin: every container port with a `hostPort`.
fn port_mappings(pod: &Pod) -> Vec<Value> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| {
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
            });
            if let Some(ip) = p.host_ip.as_deref().filter(|i| !i.is_empty()) {
                m["hostIP"] = Value::String(ip.to_string());
            }
            m
        })
        .collect()
}

/// A shared pod network.
pub type SharedPodNetwork = Arc<PodNetwork>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_become_port_mappings() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"},
                {"containerPort": 9000}
            ]}]}
        }))
        .unwrap();
        let a = attachment(&pod, "u1", Path::new("/proc/9/ns/net"));
        assert_eq!(
            a.capability_args["portMappings"],
            json!([
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
            ])
        );
        assert!(a.args.contains(&["K8S_POD_NAMESPACE".into(), "ns".into()]));
        assert_eq!(a.netns, "/proc/9/ns/net");
    }

    #[test]
    fn portmap_ipv6_check_of_an_ipv4_pod_is_a_false_alarm() {
        let e = "plugin type=\"portmap\" name=\"podvisor\" failed (check): could not check ipv6 dnat: chain CNI-DN-1 not found in iptables table nat";
        let v4 = json!({"interfaces": [{"name": "eth0", "sandbox": "/x"}],
            "ips": [{"address": "10.244.0.5/24", "interface": 0}]});
        let v6 = json!({"interfaces": [{"name": "eth0", "sandbox": "/x"}],
            "ips": [{"address": "10.244.0.5/24", "interface": 0},
                    {"address": "fd00::5/64", "interface": 0}]});
        assert!(portmap_v6_false_alarm(e, &v4));
        assert!(!portmap_v6_false_alarm(e, &v6));
        assert!(!portmap_v6_false_alarm(
            "plugin type=\"bridge\" failed (check): x",
            &v4
        ));
    }

    #[test]
    fn missing_plugins_are_named_with_the_package() {
        let d = tempfile::tempdir().unwrap();
        let net = PodNetwork::new(
            NetworkConfig::new(d.path(), None, vec![d.path().join("empty")]),
            None,
            "n",
        );
        let m = net.missing().unwrap();
        assert!(m.contains("bridge, host-local, portmap, loopback"), "{m}");
        assert!(m.contains(PLUGIN_PACKAGE), "{m}");
        let pod = Pod::default();
        assert!(!net.wants_namespace(&pod));
        let none = PodNetwork::new(
            NetworkConfig::new(d.path(), Some(d.path().join("nothing")), vec![]),
            None,
            "n",
        );
        assert!(none.missing().unwrap().contains("no CNI configuration"));
    }
}
