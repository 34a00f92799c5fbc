//! The agent's configuration.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::clock::WallClock;

/// The kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: u32 = 110;

/// How the agent runs. Build with [`AgentConfig::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The Node's name.
    pub node_name: String,
    /// The Node's InternalIP (also every pod's IP for now).
    pub node_ip: IpAddr,
    /// The bearer token the log server requires (the node's own token, which the API server
    /// presents when it proxies `pods/log`).
    pub node_token: String,
    /// How often the Lease is renewed (default 10 s).
    pub lease_interval: Duration,
    /// `leaseDurationSeconds` of the Lease (default 40).
    pub lease_duration_seconds: i32,
    /// How often node status is recomputed (default 10 s).
    pub node_status_update_interval: Duration,
    /// Node status is written at least this often even if unchanged (default 1 min).
    pub node_status_report_interval: Duration,
    /// First crash back-off (default 10 s).
    pub backoff_initial: Duration,
    /// Maximum crash back-off (default 300 s).
    pub backoff_max: Duration,
    /// Where persisted deadlines live (must survive agent restarts).
    pub state_dir: PathBuf,
    /// The log and exec server's listen address (port 0 = ephemeral). The API server dials
    /// the node's InternalIP, so this is the node IP by default (all addresses if the node
    /// IP is not one of this host's).
    pub log_server_addr: SocketAddr,
    /// On shutdown, stop every pod gracefully first (default: leave them running for
    /// re-adoption).
    pub drain_on_shutdown: bool,
    /// Capacity overrides by resource name (`cpu`, `memory`, `ephemeral-storage`, `pods`, or
    /// any extended resource), as quantities.
    pub capacity: BTreeMap<String, String>,
    /// The wall clock.
    pub clock: WallClock,
    /// The pod network (None: every pod on the host's network).
    pub network: Option<crate::network::NetworkConfig>,
    /// When images are garbage collected (with an image service).
    pub image_gc: crate::image::gc::GcPolicy,
    /// Unsafe sysctls pods may set besides the safe set (names, or prefixes ending in `*`;
    /// the kubelet's `--allowed-unsafe-sysctls`), checked with
    /// [`crate::pod::security::check_unsafe_sysctl_patterns`].
    pub allowed_unsafe_sysctls: Vec<String>,
    /// How many pods the node holds: its `pods` capacity and allocatable (the kubelet's
    /// `--max-pods`, default 110). A `pods` entry in `capacity` overrides it.
    pub max_pods: u32,
}

impl AgentConfig {
    /// Defaults for a node: system clock, log server on the node IP with an ephemeral port,
    /// no token (set `node_token`!).
    pub fn new(node_name: impl Into<String>, node_ip: IpAddr, state_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            node_name: node_name.into(),
            node_ip,
            node_token: String::new(),
            lease_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
            node_status_update_interval: Duration::from_secs(10),
            node_status_report_interval: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            state_dir,
            log_server_addr: SocketAddr::new(node_ip, 0),
            drain_on_shutdown: false,
            capacity: BTreeMap::new(),
            clock: WallClock::system(),
            network: None,
            image_gc: Default::default(),
            allowed_unsafe_sysctls: Vec::new(),
            max_pods: DEFAULT_MAX_PODS,
        }
    }
}
