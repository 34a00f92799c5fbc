//! The command line: one binary, a few subcommands.
//!
//! Every flag can also come from an environment variable (`PODVISOR_<FLAG>`) or from a YAML
//! config file (`--config FILE`) whose keys are the flag names (`data-dir: /srv/podvisor`).
//! Precedence: config file < environment < flags.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

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
    /// Start the control plane only (API server, scheduler), on redb or etcd.
    #[command(after_help = "Examples:\n  \
        podvisor server --data-dir /var/lib/podvisor-server\n  \
        podvisor server --store etcd:http://127.0.0.1:2379 --listen 0.0.0.0:6443")]
    Server(ServerArgs),
    /// Run a node agent that joins a server.
    #[command(after_help = "Examples:\n  \
        podvisor token create node worker-1 > /tmp/worker-1.token\n  \
        podvisor agent --server https://127.0.0.1:6443 --token-file /tmp/worker-1.token \\\n      \
        --node-name worker-1 --node-ip 127.0.0.2 --data-dir /tmp/worker-1")]
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

/// `podvisor up`.
#[derive(Debug, Args, Clone)]
pub struct UpArgs {
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
    /// The node's name [default: the host name].
    #[arg(long, env = "PODVISOR_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// The node's IP, reported as InternalIP and used as the pods' IP.
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
}

/// `podvisor server`.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
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
}

/// `podvisor agent`.
#[derive(Debug, Args, Clone)]
pub struct AgentArgs {
    #[command(flatten)]
    pub dirs: DataDirArgs,
    /// The API server's URL.
    #[arg(long, env = "PODVISOR_SERVER", value_name = "URL")]
    pub server: String,
    /// A file holding this node's bearer token (`podvisor token create node NAME`).
    #[arg(long, env = "PODVISOR_TOKEN_FILE", value_name = "FILE")]
    pub token_file: PathBuf,
    /// The server's CA certificate (PEM) [default: DATA_DIR/ca.crt if present, else the
    /// server's certificate is not verified].
    #[arg(long, env = "PODVISOR_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The node's name.
    #[arg(long, env = "PODVISOR_NODE_NAME", value_name = "NAME")]
    pub node_name: String,
    /// The node's IP: InternalIP, the pods' IP, and where it serves logs.
    #[arg(long, env = "PODVISOR_NODE_IP", value_name = "IP")]
    pub node_ip: IpAddr,
    /// On SIGTERM terminate this node's pods gracefully before exiting (default: leave them
    /// running for re-adoption).
    #[arg(long, env = "PODVISOR_DRAIN")]
    pub drain: bool,
}

/// `podvisor kubeconfig`.
#[derive(Debug, Args, Clone)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    pub dirs: DataDirArgs,
}

/// `podvisor token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create (or print the existing) token of a node and print it.
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
    /// Measure a peer in the same run (`podman`) when it is installed.
    #[arg(long, value_name = "PEER")]
    pub peer: Option<String>,
    /// Which parts to run (comma-separated): startup,delete,api,footprint,scale,floor.
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
