//! The command line: one binary, a few subcommands.
//!
//! Every flag can also come from an environment variable (`PODVISOR_<FLAG>`) or from a YAML
//! config file (`--config FILE`) whose keys are the flag names (`data-dir: /srv/podvisor`).
//! Precedence: config file < environment < flags.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// podvisor: a Kubernetes-compatible pod lifecycle engine in one binary.
#[derive(Debug, Parser)]
#[command(name = "podvisor", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a single-node cluster: API server, scheduler and a node agent in one process.
    #[command(after_help = "Examples:\n  \
        podvisor up\n  \
        podvisor up --data-dir /tmp/pv --listen 127.0.0.1:7443\n  \
        podvisor up --keep-pods        # Ctrl-C leaves pods running for the next start")]
    Up(UpArgs),
    /// Start the control plane only (API server, scheduler, controllers), on redb or etcd.
    #[command(after_help = "Examples:\n  \
        podvisor server --data-dir /var/lib/podvisor-server\n  \
        podvisor server --store etcd:http://127.0.0.1:2379 --listen 0.0.0.0:6443\n  \
        # HA: more servers on the same etcd, each with a copy of the first one's ca.crt,\n  \
        # ca.key, sa.key and tokens.csv in its data dir\n  \
        podvisor server --store etcd:http://10.0.0.9:2379 --data-dir /var/lib/podvisor-2")]
    Server(ServerArgs),
    /// Run a node agent that joins a server.
    #[command(after_help = "Examples:\n  \
        podvisor token create node worker-1 > /tmp/worker-1.token   # prints the CA pin\n  \
        podvisor agent --server https://127.0.0.1:6443 --token-file /tmp/worker-1.token \\\n      \
        --ca-cert-hash sha256:… --node-name worker-1 --node-ip 127.0.0.2 --data-dir /tmp/worker-1\n  \
        podvisor agent --server https://10.0.0.1:6443,https://10.0.0.2:6443 …   # HA servers")]
    Agent(AgentArgs),
    /// Print the admin kubeconfig of a data dir.
    #[command(after_help = "Example:\n  podvisor kubeconfig > ~/.kube/podvisor.yaml")]
    Kubeconfig(KubeconfigArgs),
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Measure pod lifecycle latency, throughput and footprint (see docs/BENCHMARKS.md).
    #[command(after_help = "Examples:\n  \
        podvisor bench\n  \
        podvisor bench --quick --json /tmp/bench.json\n  \
        podvisor bench --peer podman")]
    Bench(BenchArgs),
    /// The node's images: import tarballs, list, remove.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Internal: the per-pod supervisor process (started by the node agent).
    #[command(hide = true)]
    Supervise(SuperviseArgs),
}

/// Flags shared by the commands that own a data dir.
#[derive(Debug, Args, Clone)]
pub struct DataDirArgs {
    /// Where podvisor keeps its store, certificates, tokens and pod state
    /// [default: /var/lib/podvisor as root, else $XDG_DATA_HOME/podvisor].
    #[arg(long, env = "PODVISOR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A YAML file whose keys are these flags' names (`listen: 127.0.0.1:7443`).
    #[arg(long, env = "PODVISOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The pod network flags of the commands that run a node agent.
#[derive(Debug, Args, Clone)]
pub struct NetworkArgs {
    /// Give every pod that is not `hostNetwork` a network namespace and address of its own,
    /// through CNI (false: every pod on the host's network).
    #[arg(long, env = "PODVISOR_POD_NETWORK", default_value_t = true,
        action = clap::ArgAction::Set, value_name = "BOOL")]
    pub pod_network: bool,
    /// The CNI configuration directory; its first configuration (by file name) is used
    /// [default: DATA_DIR/cni/net.d, podvisor's own: a bridge on the node's podCIDR is
    /// written there when it is empty].
    #[arg(long, env = "PODVISOR_CNI_CONF_DIR", value_name = "DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// Where the CNI plugins are (colon-separated, searched in order).
    #[arg(
        long,
        env = "PODVISOR_CNI_BIN_DIR",
        default_value = "/opt/cni/bin:/usr/lib/cni",
        value_name = "DIRS"
    )]
    pub cni_bin_dir: String,
    /// Run the Service proxy (nftables table `podvisor`) on this node; it runs only with the
    /// pod network.
    #[arg(long, env = "PODVISOR_SERVICE_PROXY", default_value_t = true,
        action = clap::ArgAction::Set, value_name = "BOOL")]
    pub service_proxy: bool,
}

/// Where the node pulls images from.
#[derive(Debug, Args, Clone)]
pub struct ImageArgs {
    /// A registry (HOST:PORT) spoken to in plain HTTP; repeat for several.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registry: Vec<String>,
    /// Registry mirrors (endpoints, rewrites) and per-registry auth and TLS, in k3s's
    /// `registries.yaml` format.
    #[arg(long, env = "PODVISOR_REGISTRIES_CONFIG", value_name = "FILE")]
    pub registries_config: Option<PathBuf>,
    /// Disk use (percent of the image store's filesystem) at which unused images are
    /// garbage collected; 100 turns image garbage collection off.
    #[arg(long, env = "PODVISOR_IMAGE_GC_HIGH_THRESHOLD", default_value_t = 85,
        value_parser = clap::value_parser!(u8).range(0..=100), value_name = "PERCENT")]
    pub image_gc_high_threshold: u8,
    /// Disk use (percent) image garbage collection frees down to.
    #[arg(long, env = "PODVISOR_IMAGE_GC_LOW_THRESHOLD", default_value_t = 80,
        value_parser = clap::value_parser!(u8).range(0..=100), value_name = "PERCENT")]
    pub image_gc_low_threshold: u8,
    /// How long an unused image is kept at least (since its last use) before garbage
    /// collection may remove it.
    #[arg(long, env = "PODVISOR_MINIMUM_IMAGE_TTL_DURATION", default_value = "2m",
        value_parser = parse_duration, value_name = "DURATION")]
    pub minimum_image_ttl_duration: Duration,
}

/// What a node lets its pods do beyond the defaults (`up` and `agent`).
#[derive(Debug, Args, Clone)]
pub struct NodeSecurityArgs {
    /// Unsafe sysctls pods may set besides the safe set, as the kubelet's flag: names, or
    /// prefixes ending in `*` (`kernel.msg*,net.core.somaxconn`); only namespaced sysctls.
    #[arg(
        long,
        env = "PODVISOR_ALLOWED_UNSAFE_SYSCTLS",
        value_delimiter = ',',
        value_name = "SYSCTLS"
    )]
    pub allowed_unsafe_sysctls: Vec<String>,
}

/// How much the node holds (`up` and `agent`; the kubelet's flags).
#[derive(Debug, Args, Clone)]
pub struct NodeCapacityArgs {
    /// Number of pods that can run on this node: its `pods` capacity and allocatable.
    #[arg(long, env = "PODVISOR_MAX_PODS",
        default_value_t = podvisor_agent::config::DEFAULT_MAX_PODS,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_pods: u32,
}

/// How the node restarts crashing containers (`up` and `agent`).
#[derive(Debug, Args, Clone)]
pub struct CrashLoopArgs {
    /// The longest crash back-off between container restarts on this node, 1s to 300s (the
    /// kubelet configuration's `crashLoopBackOff.maxContainerRestartPeriod`).
    #[arg(
        long,
        env = "PODVISOR_MAX_CONTAINER_RESTART_PERIOD",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub max_container_restart_period: Option<Duration>,
}

/// Self-fencing (`up` and `agent`; docs/design/0007-node-fencing.md).
#[derive(Debug, Args, Clone)]
pub struct FenceArgs {
    /// Kill (SIGKILL) every pod of this node when it could not renew its node Lease for
    /// this long, so no copy of a pod still runs here when the control plane replaces it.
    /// Must be longer than the renew interval (a quarter of the lease duration) and shorter
    /// than the control plane's `--node-monitor-grace-period` [default: the lease duration,
    /// at most three quarters of the control plane's grace period].
    #[arg(long, env = "PODVISOR_FENCE_AFTER", value_parser = parse_duration, value_name = "DURATION")]
    pub fence_after: Option<Duration>,
    /// `leaseDurationSeconds` of the node's Lease (the kubelet's `nodeLeaseDurationSeconds`);
    /// the Lease is renewed every quarter of it.
    #[arg(
        long,
        env = "PODVISOR_NODE_LEASE_DURATION_SECONDS",
        default_value_t = 40,
        value_parser = clap::value_parser!(i32).range(1..),
        value_name = "SECONDS"
    )]
    pub node_lease_duration_seconds: i32,
}

/// Where a control plane keeps its data and serves the API (`up` and `server`).
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub dirs: DataDirArgs,
    /// The API server's address.
    #[arg(
        long,
        env = "PODVISOR_LISTEN",
        default_value = "127.0.0.1:6443",
        value_name = "ADDR:PORT"
    )]
    pub listen: SocketAddr,
    /// The range (IPv4 CIDR) Service cluster IPs are allocated from; its first address is
    /// the `kubernetes` Service's.
    #[arg(
        long,
        env = "PODVISOR_SERVICE_CLUSTER_IP_RANGE",
        default_value = "10.96.0.0/12",
        value_name = "CIDR"
    )]
    pub service_cluster_ip_range: String,
    /// The range NodePort Services' node ports are allocated from.
    #[arg(
        long,
        env = "PODVISOR_SERVICE_NODE_PORT_RANGE",
        default_value = "30000-32767",
        value_name = "FIRST-LAST"
    )]
    pub service_node_port_range: String,
    /// The IP pods and other nodes reach this API server at: the `kubernetes` Service's
    /// endpoint [default: the listen address when it is a specific one; with `up` and a pod
    /// network, the node's pod-network gateway].
    #[arg(long, env = "PODVISOR_ADVERTISE_ADDRESS", value_name = "IP")]
    pub advertise_address: Option<IpAddr>,
    /// Record every pod's lifecycle timeline (`kubectl get timelines`): the API server's,
    /// the scheduler's and (with `up`) the node agent's steps.
    #[arg(long, env = "PODVISOR_TIMELINE", default_value_t = true,
        action = clap::ArgAction::Set, value_name = "BOOL")]
    pub timeline: bool,
    #[command(flatten)]
    pub audit: AuditArgs,
}

/// The audit log (upstream's `--audit-*` flags).
#[derive(Debug, Args, Clone)]
pub struct AuditArgs {
    /// Write the audit log (audit.k8s.io/v1 Event JSON lines) to this file [default for
    /// `up`: DATA_DIR/audit.log; for `server`: no audit log]. `-` or an empty value: off.
    #[arg(long, env = "PODVISOR_AUDIT_LOG_PATH", value_name = "FILE")]
    pub audit_log_path: Option<PathBuf>,
    /// The audit policy (upstream's `Policy` file) [default: writes at Metadata level].
    #[arg(long, env = "PODVISOR_AUDIT_POLICY_FILE", value_name = "FILE")]
    pub audit_policy_file: Option<PathBuf>,
    /// Rotate the audit log past this many megabytes.
    #[arg(long, default_value_t = 100, value_name = "MB")]
    pub audit_log_maxsize: u64,
    /// Keep this many rotated audit log files.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub audit_log_maxbackup: usize,
}

/// `podvisor up`.
#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The node's name [default: the host name].
    #[arg(long, env = "PODVISOR_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// The node's IP, reported as InternalIP (and the IP of host-network pods).
    #[arg(
        long,
        env = "PODVISOR_NODE_IP",
        default_value = "127.0.0.1",
        value_name = "IP"
    )]
    pub node_ip: IpAddr,
    /// On Ctrl-C leave pods running (they are re-adopted on the next start) instead of
    /// terminating them gracefully.
    #[arg(long, env = "PODVISOR_KEEP_PODS")]
    pub keep_pods: bool,
    /// Use the scripted fake runtime instead of real processes (for simulations).
    #[arg(long, hide = true)]
    pub fake_runtime: bool,
    /// Encrypt Secrets at rest with this `EncryptionConfiguration` file (upstream's format,
    /// `aescbc` and `identity` providers) [default: DATA_DIR/encryption-config.yaml, created
    /// with a fresh `aescbc` key for secrets].
    #[arg(long, env = "PODVISOR_ENCRYPTION_PROVIDER_CONFIG", value_name = "FILE")]
    pub encryption_provider_config: Option<PathBuf>,
    #[command(flatten)]
    pub controllers: ControllerArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub node_security: NodeSecurityArgs,
    #[command(flatten)]
    pub node_capacity: NodeCapacityArgs,
    #[command(flatten)]
    pub crash_loop: CrashLoopArgs,
    #[command(flatten)]
    pub fence: FenceArgs,
}

/// `podvisor server`.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The store: `redb:PATH` (embedded, the default: DATA_DIR/store.redb) or
    /// `etcd:URL[,URL…]` (several servers on one etcd form an HA control plane).
    #[arg(long, env = "PODVISOR_STORE", value_name = "SPEC")]
    pub store: Option<String>,
    /// Extra names and IPs for the serving certificate (comma-separated).
    #[arg(
        long,
        env = "PODVISOR_TLS_SAN",
        value_delimiter = ',',
        value_name = "NAME|IP"
    )]
    pub tls_san: Vec<String>,
    /// Encrypt Secrets at rest with this `EncryptionConfiguration` file (upstream's format,
    /// `aescbc` and `identity` providers) [default with the embedded store:
    /// DATA_DIR/encryption-config.yaml, created with a fresh `aescbc` key; with etcd, every
    /// server must be given the same file, so there is no default].
    #[arg(long, env = "PODVISOR_ENCRYPTION_PROVIDER_CONFIG", value_name = "FILE")]
    pub encryption_provider_config: Option<PathBuf>,
    #[command(flatten)]
    pub controllers: ControllerArgs,
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
}

/// The leases the schedulers and controller managers of several servers compete for
/// (upstream's `--leader-elect-*` flags of kube-scheduler and kube-controller-manager).
#[derive(Debug, Args, Clone)]
pub struct LeaderElectionArgs {
    /// How long a standby waits after the leader's last renewal before it takes over: the
    /// longest the control plane goes without an active scheduler or controller manager
    /// when a leading server dies.
    #[arg(long, env = "PODVISOR_LEADER_ELECT_LEASE_DURATION", default_value = "15s",
        value_parser = parse_duration, value_name = "DURATION")]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading (shorter than the
    /// lease duration).
    #[arg(long, env = "PODVISOR_LEADER_ELECT_RENEW_DEADLINE", default_value = "10s",
        value_parser = parse_duration, value_name = "DURATION")]
    pub leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews (shorter than the renew
    /// deadline).
    #[arg(long, env = "PODVISOR_LEADER_ELECT_RETRY_PERIOD", default_value = "2s",
        value_parser = parse_duration, value_name = "DURATION")]
    pub leader_elect_retry_period: Duration,
}

/// Node failure handling (the controller manager's flags; upstream names).
#[derive(Debug, Args, Clone)]
pub struct ControllerArgs {
    /// How often node health is checked.
    #[arg(long, env = "PODVISOR_NODE_MONITOR_PERIOD", default_value = "5s",
        value_parser = parse_duration, value_name = "DURATION")]
    pub node_monitor_period: Duration,
    /// How long a node may go without renewing its Lease or posting status before it is
    /// marked `Unknown` (then tainted `unreachable`; its pods are evicted after their
    /// toleration, 300 s by default).
    #[arg(long, env = "PODVISOR_NODE_MONITOR_GRACE_PERIOD", default_value = "50s",
        value_parser = parse_duration, value_name = "DURATION")]
    pub node_monitor_grace_period: Duration,
    /// The same for a node that never posted its status.
    #[arg(long, env = "PODVISOR_NODE_STARTUP_GRACE_PERIOD", default_value = "60s",
        value_parser = parse_duration, value_name = "DURATION")]
    pub node_startup_grace_period: Duration,
    /// Nodes per second (per zone) that may get the NoExecute taint that evicts their pods.
    #[arg(
        long,
        env = "PODVISOR_NODE_EVICTION_RATE",
        default_value_t = 0.1,
        value_name = "RATE"
    )]
    pub node_eviction_rate: f64,
    /// Terminated pods kept before PodGC deletes the oldest (0: never).
    #[arg(
        long,
        env = "PODVISOR_TERMINATED_POD_GC_THRESHOLD",
        default_value_t = 12_500,
        value_name = "COUNT"
    )]
    pub terminated_pod_gc_threshold: usize,
    /// The pods' address range: every Node gets a /24 of it as its `spec.podCIDR`
    /// ("" allocates none).
    #[arg(
        long,
        env = "PODVISOR_CLUSTER_CIDR",
        default_value = "10.244.0.0/16",
        value_name = "CIDR"
    )]
    pub cluster_cidr: String,
    /// How long a pod's timeline is kept after the pod is gone.
    #[arg(long, env = "PODVISOR_TIMELINE_RETENTION", default_value = "24h",
        value_parser = parse_duration, value_name = "DURATION")]
    pub timeline_retention: Duration,
}

/// Parses a duration: a number with a unit `ms`, `s`, `m` or `h` (`500ms`, `40s`, `5m`),
/// possibly several (`1m30s`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: missing unit (ms, s, m or h)"))?;
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: not a duration"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("{text:?}: unknown unit {u:?} (ms, s, m or h)")),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * scale)
            .map_err(|_| format!("{text:?}: out of range"))?;
    }
    Ok(total)
}

/// `podvisor agent`.
#[derive(Debug, Args, Clone)]
pub struct AgentArgs {
    #[command(flatten)]
    pub dirs: DataDirArgs,
    /// The API server's URL; several (repeated or comma-separated) for the servers of an
    /// HA control plane: requests go to one of them and move to the next when it cannot
    /// be reached.
    #[arg(
        long,
        env = "PODVISOR_SERVER",
        value_name = "URL",
        value_delimiter = ',',
        required = true
    )]
    pub server: Vec<String>,
    /// A file holding this node's bearer token and, on its second line, the token of the
    /// node's Service proxy (`podvisor token create node NAME` prints both).
    #[arg(long, env = "PODVISOR_TOKEN_FILE", value_name = "FILE")]
    pub token_file: PathBuf,
    /// The server's CA certificate (PEM) [default: DATA_DIR/ca.crt if present]. Without it
    /// and without `--ca-cert-hash` the agent refuses to start: it never sends its token to a
    /// server it has not verified.
    #[arg(long, env = "PODVISOR_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Trust the server whose CA has this public key pin, as `kubeadm join
    /// --discovery-token-ca-cert-hash` does: `sha256:<hex of the SHA-256 of the CA's
    /// SubjectPublicKeyInfo>`, printed by `podvisor token create node`. The CA is fetched
    /// from the server's TLS handshake (no request is sent), checked against the pin and saved
    /// as DATA_DIR/ca.crt.
    #[arg(long, env = "PODVISOR_CA_CERT_HASH", value_name = "sha256:HEX")]
    pub ca_cert_hash: Option<String>,
    /// The node's name.
    #[arg(long, env = "PODVISOR_NODE_NAME", value_name = "NAME")]
    pub node_name: String,
    /// The node's IP: InternalIP, the IP of host-network pods, and where it serves logs.
    #[arg(long, env = "PODVISOR_NODE_IP", value_name = "IP")]
    pub node_ip: IpAddr,
    /// On SIGTERM terminate this node's pods gracefully before exiting (default: leave them
    /// running for re-adoption).
    #[arg(long, env = "PODVISOR_DRAIN")]
    pub drain: bool,
    /// Record the node's steps in its pods' timelines.
    #[arg(long, env = "PODVISOR_TIMELINE", default_value_t = true,
        action = clap::ArgAction::Set, value_name = "BOOL")]
    pub timeline: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub node_security: NodeSecurityArgs,
    #[command(flatten)]
    pub node_capacity: NodeCapacityArgs,
    #[command(flatten)]
    pub crash_loop: CrashLoopArgs,
    #[command(flatten)]
    pub fence: FenceArgs,
}

/// `podvisor kubeconfig`.
#[derive(Debug, Args, Clone)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    pub dirs: DataDirArgs,
}

/// `podvisor image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load images from docker-archive or OCI-archive tarballs (`docker save`,
    /// `podman save`) into the node's store.
    #[command(
        after_help = "Example:\n  podman save -o app.tar localhost/app:v1 && podvisor image import app.tar"
    )]
    Import(ImageImportArgs),
    /// List the node's images.
    #[command(alias = "list")]
    Ls(ImageLsArgs),
    /// Remove images (refused while a container uses them).
    #[command(alias = "rmi")]
    Rm(ImageRmArgs),
}

/// `podvisor image import`.
#[derive(Debug, Args, Clone)]
pub struct ImageImportArgs {
    #[command(flatten)]
    pub dirs: DataDirArgs,
    /// The tarballs.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `podvisor image ls`.
#[derive(Debug, Args, Clone)]
pub struct ImageLsArgs {
    #[command(flatten)]
    pub dirs: DataDirArgs,
    /// Only the image IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `podvisor image rm`.
#[derive(Debug, Args, Clone)]
pub struct ImageRmArgs {
    #[command(flatten)]
    pub dirs: DataDirArgs,
    /// Tags, repo digests or (prefixes of) image IDs.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// `podvisor token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create (or print the existing) tokens of a node and print them: the node's, then its
    /// Service proxy's (user `system:kube-proxy`), one a line.
    Create(TokenCreateArgs),
}

/// `podvisor token create node NAME`.
#[derive(Debug, Args, Clone)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub dirs: DataDirArgs,
    /// The kind of identity: only `node` for now.
    #[arg(value_parser = ["node"])]
    pub kind: String,
    /// The node's name.
    pub name: String,
}

/// `podvisor bench`.
#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Smaller sample sizes (for a quick look; figures are noisier).
    #[arg(long)]
    pub quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The peer measured in the same run: `podman` (where it is installed; one line says
    /// why not otherwise) or `none`.
    #[arg(long, value_name = "PEER", default_value = "podman")]
    pub peer: String,
    /// Which parts to run (comma-separated): floor, authz, startup, delete, api, footprint,
    /// network, services (these two in a network namespace of the bench's own only), timeline
    /// (create -> Running with pod timelines off and on), hostile, store (the API on redb and
    /// on etcd), scale, jobs (a Job of many completions against a ReplicaSet of as many
    /// replicas, on simulated nodes), podman (the peer).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// `podvisor supervise …`: arguments are the runtime's own.
#[derive(Debug, Args, Clone)]
pub struct SuperviseArgs {
    /// Passed to the runtime's supervisor.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(parse_duration("40"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("50s"), Ok(Duration::from_secs(50)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 s").is_err());
    }

    #[test]
    fn controller_flags_reach_server_and_up() {
        let cli = Cli::try_parse_from([
            "podvisor",
            "server",
            "--node-monitor-grace-period",
            "20s",
            "--node-monitor-period=1s",
        ])
        .expect("parse");
        let Command::Server(args) = cli.command else {
            panic!("not server")
        };
        assert_eq!(
            args.controllers.node_monitor_grace_period,
            Duration::from_secs(20)
        );
        assert_eq!(args.controllers.node_monitor_period, Duration::from_secs(1));
        assert_eq!(
            args.controllers.node_startup_grace_period,
            Duration::from_secs(60)
        );
        assert_eq!(args.controllers.terminated_pod_gc_threshold, 12_500);
        let cli = Cli::try_parse_from(["podvisor", "up"]).expect("parse");
        let Command::Up(args) = cli.command else {
            panic!("not up")
        };
        assert_eq!(
            args.controllers.node_monitor_grace_period,
            Duration::from_secs(50)
        );
    }
}
