//! The agent's Node and its heartbeats (spec §5.1).
//!
//! * **Registration**: create the Node (labels, addresses InternalIP + Hostname, capacity and
//!   allocatable cpu / memory / ephemeral-storage / pods = `max_pods` (110 by default, the
//!   kubelet's `--max-pods`), conditions, nodeInfo,
//!   daemonEndpoints.kubeletEndpoint.Port = the log server's port); if it exists, update its
//!   labels and status.
//! * **Lease**: `coordination.k8s.io/v1` Lease named after the node in `kube-node-lease`,
//!   `leaseDurationSeconds` 40, renewed every `lease_interval` (10 s by default, a quarter
//!   of the duration), each renewal bounded by that interval. Success, a stale epoch (409)
//!   and the control plane's grace period published on the Lease go to the node's
//!   [`Fence`] (crate::fence): this loop is what tells the agent it holds its lease.
//! * **Status**: recomputed every `node_status_update_interval`; written when it changed
//!   (ignoring heartbeat times) and at least every `node_status_report_interval` (1 min).
//!
//! Everything goes through kube-rs with the node's own credentials; failures are logged and
//! retried on the next tick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use podvisor_runtime::ContainerRuntime;
use tokio_util::sync::CancellationToken;

use crate::clock::{WallClock, to_micro_time, to_time};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::fence::{Fence, FenceState};

/// The kubelet version the agent reports.
pub const KUBELET_VERSION: &str = "v1.33.1-podvisor";
/// The runtime version the agent reports.
pub const CONTAINER_RUNTIME_VERSION: &str = "podvisor://0.1.0";
/// The namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// Capacity found on this machine, with the configured overrides on top.
pub fn capacity(config: &AgentConfig) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    out.insert("cpu".to_string(), Quantity(cpus.to_string()));
    let mem_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    });
    out.insert(
        "memory".to_string(),
        Quantity(format!("{}Ki", mem_kib.unwrap_or(0))),
    );
    let disk_kib = rustix::fs::statvfs(&config.state_dir)
        .ok()
        .map(|s| s.f_blocks.saturating_mul(s.f_frsize) / 1024)
        .unwrap_or(0);
    out.insert(
        "ephemeral-storage".to_string(),
        Quantity(format!("{disk_kib}Ki")),
    );
    out.insert("pods".to_string(), Quantity(config.max_pods.to_string()));
    for (k, v) in &config.capacity {
        out.insert(k.clone(), Quantity(v.clone()));
    }
    out
}

fn system_info() -> NodeSystemInfo {
    let machine_id = read_trimmed("/etc/machine-id").unwrap_or_default();
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".to_string());
    NodeSystemInfo {
        architecture: arch().to_string(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        container_runtime_version: CONTAINER_RUNTIME_VERSION.to_string(),
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        kube_proxy_version: String::new(),
        kubelet_version: KUBELET_VERSION.to_string(),
        machine_id: machine_id.clone(),
        operating_system: "linux".to_string(),
        os_image,
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid").unwrap_or(machine_id),
        ..Default::default()
    }
}

/// The machine's hostname (the Node's `Hostname` address).
pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".to_string())
}

/// The node's conditions: no pressure, and Ready as the runtime allows.
pub fn conditions(runtime_ok: bool) -> Vec<NodeCondition> {
    let c = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        ..Default::default()
    };
    vec![
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        if runtime_ok {
            c(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            )
        } else {
            c(
                "Ready",
                "False",
                "KubeletNotReady",
                "container runtime is down",
            )
        },
    ]
}

/// `NetworkUnavailable` when pods fall back to the host's network (no CNI plugins): the
/// message says what is missing. Its status is False: the node's network works and pods
/// run on it (True would taint the node `network-unavailable:NoSchedule` and keep every pod
/// off it).
fn network_condition(message: &str) -> NodeCondition {
    NodeCondition {
        type_: "NetworkUnavailable".to_string(),
        status: "False".to_string(),
        reason: Some("NoNetworkPlugin".to_string()),
        message: Some(message.to_string()),
        ..Default::default()
    }
}

/// The node's status (heartbeat and transition times set from `now` and `previous`).
pub fn node_status(
    config: &AgentConfig,
    log_port: u16,
    runtime_ok: bool,
    previous: Option<&NodeStatus>,
    now: SystemTime,
) -> NodeStatus {
    let cap = capacity(config);
    let old = previous.and_then(|p| p.conditions.as_ref());
    let mut conditions = conditions(runtime_ok);
    if let Some(message) = config.network.as_ref().and_then(crate::network::missing) {
        conditions.insert(0, network_condition(&message));
    }
    let conditions = conditions
        .into_iter()
        .map(|mut c| {
            let kept = old
                .and_then(|o| {
                    o.iter()
                        .find(|x| x.type_ == c.type_ && x.status == c.status)
                })
                .and_then(|x| x.last_transition_time.clone());
            c.last_transition_time = Some(kept.unwrap_or_else(|| to_time(now)));
            c.last_heartbeat_time = Some(to_time(now));
            c
        })
        .collect();
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: hostname(),
            },
        ]),
        allocatable: Some(cap.clone()),
        capacity: Some(cap),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(log_port),
            }),
        }),
        node_info: Some(system_info()),
        ..Default::default()
    }
}

/// Whether two statuses differ in anything but heartbeat times.
fn changed(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        if let Some(cs) = s.conditions.as_mut() {
            for c in cs {
                c.last_heartbeat_time = None;
            }
        }
        s
    };
    strip(a) != strip(b)
}

fn labels(config: &AgentConfig) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(
        "kubernetes.io/hostname".to_string(),
        config.node_name.clone(),
    );
    l.insert("kubernetes.io/os".to_string(), "linux".to_string());
    l.insert("kubernetes.io/arch".to_string(), arch().to_string());
    l.insert("beta.kubernetes.io/os".to_string(), "linux".to_string());
    l.insert("beta.kubernetes.io/arch".to_string(), arch().to_string());
    l
}

/// Keeps the Node registered and its status fresh.
pub struct NodeReporter {
    client: Client,
    config: Arc<AgentConfig>,
    runtime: Arc<dyn ContainerRuntime>,
    clock: WallClock,
    log_port: u16,
    last: Option<NodeStatus>,
    last_write: Option<tokio::time::Instant>,
    node_uid: Option<String>,
    images: Option<Arc<crate::image::ImageManager>>,
    serving_cert_hash: Option<String>,
    fence: Arc<Fence>,
}

impl NodeReporter {
    /// A reporter for `config.node_name`.
    pub fn new(
        client: Client,
        config: Arc<AgentConfig>,
        runtime: Arc<dyn ContainerRuntime>,
        log_port: u16,
        fence: Arc<Fence>,
    ) -> NodeReporter {
        let clock = config.clock.clone();
        NodeReporter {
            client,
            config,
            runtime,
            clock,
            log_port,
            last: None,
            last_write: None,
            node_uid: None,
            images: None,
            serving_cert_hash: None,
            fence,
        }
    }

    /// Lists the stored images in `status.images`.
    pub fn with_images(mut self, images: Option<Arc<crate::image::ImageManager>>) -> NodeReporter {
        self.images = images;
        self
    }

    /// `status.images`, when there is an image service.
    fn images(&self) -> Option<Vec<k8s_openapi::api::core::v1::ContainerImage>> {
        self.images
            .as_ref()
            .map(|m| crate::image::node_images(m.store()))
    }

    /// Publishes `hash` (the log server's certificate, `server::tls`) on the Node.
    pub fn with_serving_cert_hash(mut self, hash: String) -> NodeReporter {
        self.serving_cert_hash = Some(hash);
        self
    }

    /// The Node's annotations: the serving certificate's hash and the node-local
    /// provisioner's storage root ([`crate::pod::claims::storage_root`], made here).
    fn annotations(&self) -> Option<BTreeMap<String, String>> {
        let mut a = BTreeMap::new();
        if let Some(h) = &self.serving_cert_hash {
            a.insert(
                podvisor_api::ANNOTATION_SERVING_CERT_HASH.to_string(),
                h.clone(),
            );
        }
        let root = crate::pod::claims::storage_root(&self.config.state_dir.join("pods"));
        match std::fs::create_dir_all(&root).and_then(|()| std::path::absolute(&root)) {
            Ok(root) => {
                a.insert(
                    podvisor_api::volumes::ANN_LOCAL_STORAGE_ROOT.to_string(),
                    root.display().to_string(),
                );
            }
            Err(e) => {
                tracing::warn!(root = %root.display(), error = %e, "no local storage on this node: cannot make its root directory (check the data dir)");
            }
        }
        (!a.is_empty()).then_some(a)
    }

    /// The status to report now; transition times carry over from `previous`.
    fn status_now(&self, runtime_ok: bool, previous: Option<&NodeStatus>) -> NodeStatus {
        node_status(
            &self.config,
            self.log_port,
            runtime_ok,
            previous,
            self.clock.now(),
        )
    }

    /// Creates or updates the Node. Returns its UID.
    pub async fn register(&mut self) -> Result<String, AgentError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let name = self.config.node_name.clone();
        let runtime_ok = self.runtime.list().await.is_ok();
        let status = self.status_now(runtime_ok, None);
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels(&self.config)),
                annotations: self.annotations(),
                ..Default::default()
            },
            spec: None,
            status: Some(status.clone()),
        };
        let created = match api.create(&PostParams::default(), &node).await {
            Ok(n) => n,
            Err(e) => {
                let err = AgentError::api(format!("register node {name}"), e);
                if !err.is_conflict() {
                    return Err(err);
                }
                let patch = serde_json::json!({ "metadata": {
                    "labels": labels(&self.config),
                    "annotations": self.annotations(),
                } });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| AgentError::api(format!("update node {name}"), e))?
            }
        };
        let previous = created.status.as_ref();
        let status = self.status_now(runtime_ok, previous);
        let written = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "status": status })),
            )
            .await
            .map_err(|e| AgentError::api(format!("update status of node {name}"), e))?;
        self.last = written.status.or(Some(status));
        self.last_write = Some(tokio::time::Instant::now());
        let uid = written
            .metadata
            .uid
            .or(created.metadata.uid)
            .unwrap_or_default();
        self.node_uid = Some(uid.clone());
        tracing::info!(node = %name, "node registered");
        Ok(uid)
    }

    /// One status tick: write when changed or when the report interval passed. "Changed" is
    /// judged against the Node as the server has it (kubelet `tryUpdateNodeStatus`), so a
    /// status another component overwrote (the node lifecycle controller's `Unknown`) is put
    /// right on the next tick, not at the next report interval.
    pub async fn tick(&mut self) -> Result<bool, AgentError> {
        let api: Api<Node> = Api::all(self.client.clone());
        match api.get_opt(&self.config.node_name).await {
            Ok(Some(n)) if n.status.is_some() => self.last = n.status,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the Node; using the last written status")
            }
        }
        let runtime_ok = self.runtime.list().await.is_ok();
        let mut status = self.status_now(runtime_ok, self.last.as_ref());
        status.images = self.images();
        let due = self
            .last_write
            .is_none_or(|t| t.elapsed() >= self.config.node_status_report_interval);
        if !due && self.last.as_ref().is_some_and(|l| !changed(l, &status)) {
            return Ok(false);
        }
        let name = &self.config.node_name;
        match api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "status": status })),
            )
            .await
        {
            Ok(n) => {
                self.last = n.status.or(Some(status));
                self.last_write = Some(tokio::time::Instant::now());
                Ok(true)
            }
            Err(e) => {
                let err = AgentError::api(format!("update status of node {name}"), e);
                if err.is_not_found() {
                    // the Node was deleted: register again
                    self.register().await?;
                    return Ok(true);
                }
                Err(err)
            }
        }
    }

    /// Renews (or creates, at the node's epoch) the node's Lease; returns it as stored.
    pub async fn renew_lease(&self) -> Result<Lease, AgentError> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let name = &self.config.node_name;
        let now = to_micro_time(self.clock.now());
        let patch = serde_json::json!({ "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": self.config.lease_duration_seconds,
            "renewTime": now,
        }});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(lease) => Ok(lease),
            Err(e) => {
                let err = AgentError::api(format!("renew lease {name}"), e);
                if !err.is_not_found() {
                    return Err(err);
                }
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(LEASE_NAMESPACE.into()),
                        owner_references: self.node_uid.as_ref().filter(|u| !u.is_empty()).map(
                            |uid| {
                                vec![OwnerReference {
                                    api_version: "v1".into(),
                                    kind: "Node".into(),
                                    name: name.clone(),
                                    uid: uid.clone(),
                                    ..Default::default()
                                }]
                            },
                        ),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(name.clone()),
                        lease_duration_seconds: Some(self.config.lease_duration_seconds),
                        renew_time: Some(now.clone()),
                        acquire_time: Some(now),
                        lease_transitions: Some(
                            i32::try_from(self.fence.epoch.get()).unwrap_or(i32::MAX),
                        ),
                        ..Default::default()
                    }),
                };
                api.create(&PostParams::default(), &lease)
                    .await
                    .map_err(|e| AgentError::api(format!("create lease {name}"), e))
            }
        }
    }

    /// One renewal, bounded by the renew interval; its outcome goes to the fence.
    async fn lease_tick(&self) {
        let sent = tokio::time::Instant::now();
        match tokio::time::timeout(self.config.lease_interval, self.renew_lease()).await {
            Ok(Ok(lease)) => {
                if let Some(grace) = lease
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(podvisor_api::fencing::ANN_NODE_MONITOR_GRACE_PERIOD))
                    .and_then(|g| podvisor_api::fencing::parse_grace(g))
                {
                    self.fence.set_grace(grace);
                }
                self.fence.renewed(sent);
            }
            Ok(Err(e)) if e.is_conflict() => {
                tracing::warn!(error = %e, "lease renewal refused");
                self.learn_epoch().await;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
            Err(_) => tracing::warn!(
                timeout = ?self.config.lease_interval,
                "lease renewal timed out"
            ),
        }
    }

    /// Reads the Lease: a newer epoch than the node's means the control plane declared the
    /// node dead. The lease is lost; once the pods are dead the node adopts the new epoch
    /// and takes its lease again at once.
    async fn learn_epoch(&self) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let lease = match api.get_opt(&self.config.node_name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the node's lease");
                return;
            }
        };
        let current = podvisor_api::fencing::lease_epoch(&lease);
        let mine = self.fence.epoch.get();
        if current <= mine {
            return;
        }
        self.fence.lose(format!(
            "the control plane declared it dead (lease epoch {mine} -> {current})"
        ));
        if self.fence.is_fenced() {
            tracing::info!(
                epoch = current,
                "pods killed: taking the lease again under the new epoch"
            );
            self.fence.epoch.set(current);
            let sent = tokio::time::Instant::now();
            match tokio::time::timeout(self.config.lease_interval, self.renew_lease()).await {
                Ok(Ok(_)) => self.fence.renewed(sent),
                Ok(Err(e)) => tracing::warn!(error = %e, "taking the lease again failed"),
                Err(_) => tracing::warn!("taking the lease again timed out"),
            }
        }
    }

    /// Registers (retrying), then renews the lease and reports status until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.register().await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "node registration failed; retrying");
                    if e.is_conflict() {
                        self.learn_epoch().await;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        let mut lease = tokio::time::interval(self.config.lease_interval);
        let mut status = tokio::time::interval(self.config.node_status_update_interval);
        lease.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fence = self.fence.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = lease.tick() => self.lease_tick().await,
                // Pods dead: try to hold the lease again at once.
                r = fence.changed() => {
                    if r.is_err() {
                        return;
                    }
                    if matches!(*fence.borrow_and_update(), FenceState::Fenced { .. }) {
                        self.lease_tick().await;
                    }
                }
                _ = status.tick() => {
                    if let Err(e) = self.tick().await {
                        tracing::warn!(error = %e, "node status update failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pods_sets_pod_capacity_and_allocatable() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = AgentConfig::new("n1", "10.1.2.3".parse().unwrap(), dir.path().to_path_buf());
        cfg.max_pods = 1_500;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let st = node_status(&cfg, 10250, true, None, now);
        assert_eq!(st.capacity.as_ref().unwrap()["pods"].0, "1500");
        assert_eq!(st.allocatable.as_ref().unwrap()["pods"].0, "1500");
    }

    #[test]
    fn node_status_has_upstream_conditions_capacity_and_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = AgentConfig::new("n1", "10.1.2.3".parse().unwrap(), dir.path().to_path_buf());
        cfg.capacity.insert("cpu".into(), "4".into());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let st = node_status(&cfg, 10250, true, None, now);
        let cap = st.capacity.as_ref().unwrap();
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["pods"].0, "110");
        assert!(cap["memory"].0.ends_with("Ki"));
        assert!(cap.contains_key("ephemeral-storage"));
        assert_eq!(st.allocatable, st.capacity);
        let conds: Vec<_> = st
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            conds,
            [
                ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("Ready", "True", "KubeletReady"),
            ]
        );
        assert_eq!(
            st.conditions.as_ref().unwrap()[3].message.as_deref(),
            Some("kubelet is posting ready status")
        );
        assert_eq!(
            st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            10250
        );
        let addrs = st.addresses.unwrap();
        assert_eq!(
            (addrs[0].type_.as_str(), addrs[0].address.as_str()),
            ("InternalIP", "10.1.2.3")
        );
        assert_eq!(addrs[1].type_, "Hostname");
        let info = st.node_info.unwrap();
        assert_eq!(info.container_runtime_version, "podvisor://0.1.0");
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        assert_eq!(info.operating_system, "linux");
    }

    #[test]
    fn heartbeats_alone_are_not_a_change_and_transition_times_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AgentConfig::new("n1", "10.1.2.3".parse().unwrap(), dir.path().to_path_buf());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = node_status(&cfg, 1, true, None, t0);
        let b = node_status(&cfg, 1, true, Some(&a), t0 + Duration::from_secs(30));
        assert!(!changed(&a, &b));
        let c = node_status(&cfg, 1, false, Some(&b), t0 + Duration::from_secs(60));
        assert!(changed(&b, &c));
        let ready = |s: &NodeStatus| s.conditions.as_ref().unwrap()[3].clone();
        assert_eq!(
            ready(&b).last_transition_time,
            ready(&a).last_transition_time
        );
        assert_ne!(
            ready(&c).last_transition_time,
            ready(&b).last_transition_time
        );
        assert_eq!(ready(&c).reason.as_deref(), Some("KubeletNotReady"));
    }
}
