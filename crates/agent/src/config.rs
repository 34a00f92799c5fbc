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
    /// Kill every pod when the Lease was not renewed for this long (crate::fence). None:
    /// the lease duration, lowered to three quarters of the control plane's grace period.
    pub fence_after: Option<Duration>,
    /// How often node status is recomputed (default 10 s).
    pub node_status_update_interval: Duration,
    /// Node status is written at least this often even if unchanged (default 1 min).
    pub node_status_report_interval: Duration,
    /// First crash back-off (default 10 s).
    pub backoff_initial: Duration,
    /// Maximum crash back-off (default 300 s): the kubelet configuration's
    /// `crashLoopBackOff.maxContainerRestartPeriod` (KEP-5593); set it with
    /// [`AgentConfig::set_max_container_restart_period`].
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
            fence_after: None,
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
/// The bounds of `maxContainerRestartPeriod` (upstream's kubelet configuration validation).
pub const MAX_CONTAINER_RESTART_PERIOD_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(300));

impl AgentConfig {
    /// Caps the crash back-off per node (KEP-5593, upstream's
    /// `crashLoopBackOff.maxContainerRestartPeriod`, 1 s to 300 s). The first back-off is
    /// lowered to the cap when it is longer, as the kubelet does. Out of range: upstream's
    /// configuration error.
    pub fn set_max_container_restart_period(&mut self, period: Duration) -> Result<(), String> {
        let (min, max) = MAX_CONTAINER_RESTART_PERIOD_RANGE;
        if period < min || period > max {
            return Err(format!(
                "invalid configuration: CrashLoopBackOff.MaxContainerRestartPeriod (got: {} seconds) must be set between 1s and 300s",
                period.as_secs_f64()
            ));
        }
        self.backoff_max = period;
        self.backoff_initial = self.backoff_initial.min(period);
        Ok(())
    }
}

#[cfg(test)]
mod max_restart_period_tests {
    use super::*;

    #[test]
    fn max_container_restart_period_is_bounded_and_lowers_the_first_back_off() {
        let mut c = AgentConfig::new("n", "127.0.0.1".parse().unwrap(), "/tmp/x".into());
        c.set_max_container_restart_period(Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            (c.backoff_initial, c.backoff_max),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
        c.set_max_container_restart_period(Duration::from_secs(300))
            .unwrap();
        assert_eq!(
            (c.backoff_initial, c.backoff_max),
            (Duration::from_secs(5), Duration::from_secs(300))
        );
        let err = c
            .set_max_container_restart_period(Duration::from_millis(500))
            .unwrap_err();
        assert_eq!(
            err,
            "invalid configuration: CrashLoopBackOff.MaxContainerRestartPeriod (got: 0.5 seconds) must be set between 1s and 300s"
        );
        assert!(
            c.set_max_container_restart_period(Duration::from_secs(301))
                .is_err()
        );
        assert_eq!(c.backoff_max, Duration::from_secs(300));
    }
}
