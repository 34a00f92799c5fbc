//! Wiring the components into processes: `up`, `server`, `agent`, `token create`.
//!
//! # Shutdown
//!
//! ```text
//! up:     SIGINT/SIGTERM #1 ─▶ terminate every pod gracefully (or keep them: --keep-pods)
//!                              ─▶ stop agent, scheduler, API server ─▶ exit 0
//!         SIGINT/SIGTERM #2 ─▶ exit at once; pods keep running under their supervisors and
//!                              their persisted deadlines, and are re-adopted on the next start
//! server: SIGINT/SIGTERM    ─▶ stop scheduler, controllers and API server ─▶ exit 0
//! agent:  SIGTERM           ─▶ leave pods running for re-adoption (--drain: terminate them)
//! ```
//!
//! Every component runs as an owned task with its own cancellation token; stopping the
//! agent is not stopping its pods (STYLE.md §5).

#![allow(clippy::disallowed_methods)] // start-up time is measured with the real clock

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::watcher;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use podvisor_apiserver::{ApiServer, ApiServerConfig};
use podvisor_store::Store;

use crate::cli::{AgentArgs, ControllerArgs, ServerArgs, TokenCreateArgs, UpArgs};
use crate::{config, kubeconfig};

/// The runtime's state directory inside a data dir.
fn runtime_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("runtime")
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Waits for SIGINT or SIGTERM; returns which.
async fn next_signal(
    int: &mut tokio::signal::unix::Signal,
    term: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

async fn open_store(spec: Option<&str>, data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let spec = spec
        .map(str::to_string)
        .unwrap_or_else(|| format!("redb:{}", data_dir.join("store.redb").display()));
    if let Some(path) = spec.strip_prefix("redb:") {
        let store = podvisor_store::redb_store::RedbStore::open(Path::new(path))
            .with_context(|| format!("cannot open the store {path}"))?;
        return Ok(Arc::new(store));
    }
    if let Some(urls) = spec.strip_prefix("etcd:") {
        return open_etcd(urls).await;
    }
    if spec == "memory" {
        return Ok(Arc::new(podvisor_store::memory::MemoryStore::new()));
    }
    bail!("unknown --store {spec:?}: expected redb:PATH, etcd:URL[,URL…] or memory")
}

#[cfg(feature = "etcd")]
async fn open_etcd(urls: &str) -> anyhow::Result<Arc<dyn Store>> {
    let endpoints: Vec<String> = urls.split(',').map(|s| s.trim().to_string()).collect();
    let store = podvisor_store::etcd::EtcdStore::connect(&endpoints, "/podvisor")
        .await
        .with_context(|| format!("cannot connect to etcd at {urls}"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "etcd"))]
async fn open_etcd(_urls: &str) -> anyhow::Result<Arc<dyn Store>> {
    bail!("this podvisor was built without etcd support; rebuild with `--features etcd`")
}

/// Wraps the store so Secrets are encrypted at rest: with the given
/// `EncryptionConfiguration` file, or (`default_in` set) the data dir's own, created on first
/// start with a fresh key.
fn encrypted_store(
    store: Arc<dyn Store>,
    config_file: Option<&Path>,
    default_in: Option<&Path>,
) -> anyhow::Result<Arc<dyn Store>> {
    use podvisor_apiserver::encryption::{EncryptedStore, EncryptionConfig};
    let config = match (config_file, default_in) {
        (Some(file), _) => EncryptionConfig::load(file)?,
        (None, Some(dir)) => EncryptionConfig::load_or_create(dir)?,
        (None, None) => return Ok(store),
    };
    Ok(Arc::new(EncryptedStore::new(store, config)))
}

/// The serving API server: its stop token and its task.
struct ApiServing {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The audit log of `args` (`default` when no path is given; `-` or empty: off).
fn audit_config(
    args: &crate::cli::AuditArgs,
    default: Option<PathBuf>,
) -> anyhow::Result<Option<podvisor_apiserver::audit::AuditConfig>> {
    use podvisor_apiserver::audit::{AuditConfig, AuditPolicy};
    let path = match &args.audit_log_path {
        Some(p) if p.as_os_str().is_empty() || p.as_os_str() == "-" => return Ok(None),
        Some(p) => p.clone(),
        None => match default {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    let policy = match &args.audit_policy_file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the audit policy {}", f.display()))?;
            AuditPolicy::parse(&text)
                .map_err(|e| anyhow::anyhow!("audit policy {}: {e}", f.display()))?
        }
        None => AuditPolicy::writes_at_metadata(),
    };
    Ok(Some(AuditConfig {
        path,
        policy,
        max_bytes: args.audit_log_maxsize.saturating_mul(1024 * 1024),
        max_backups: args.audit_log_maxbackup,
    }))
}

async fn start_api_server(
    store: Arc<dyn Store>,
    data_dir: &Path,
    serve: &crate::cli::ServeArgs,
    extra_sans: &[String],
    audit: Option<podvisor_apiserver::audit::AuditConfig>,
) -> anyhow::Result<(ApiServer, ApiServing)> {
    let listen = serve.listen;
    let mut config = ApiServerConfig::new(data_dir.to_path_buf());
    config.timeline = serve.timeline;
    config.extra_sans = extra_sans.to_vec();
    config.audit = audit;
    if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
        config.extra_sans.push(listen.ip().to_string());
    }
    config.service_network = podvisor_apiserver::services::ServiceNetwork::parse(
        &serve.service_cluster_ip_range,
        &serve.service_node_port_range,
    )
    .map_err(anyhow::Error::msg)?;
    // Clients in pods reach the server at the `kubernetes` Service's IP and names.
    config
        .extra_sans
        .push(config.service_network.kubernetes_ip().to_string());
    for name in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        config.extra_sans.push(name.to_string());
    }
    let endpoint_ip = serve
        .advertise_address
        .or_else(|| Some(listen.ip()).filter(|ip| !ip.is_unspecified()));
    if let Some(ip) = serve.advertise_address {
        config.extra_sans.push(ip.to_string());
    }
    config.kubernetes_endpoint = endpoint_ip.map(|ip| std::net::SocketAddr::new(ip, listen.port()));
    let server = ApiServer::new(store, config)
        .await
        .context("cannot start the API server")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    // The CA goes next to the kubeconfig so agents and other clients can trust the server.
    std::fs::write(data_dir.join("ca.crt"), server.ca_pem())
        .with_context(|| format!("cannot write {}", data_dir.join("ca.crt").display()))?;
    let url = kubeconfig::server_url(listen);
    kubeconfig::write(data_dir, &url, &server.ca_pem(), &server.admin_token())?;
    let s = server.clone();
    let mut hup = signal(SignalKind::hangup())?;
    let stop = CancellationToken::new();
    let shutdown = stop.clone();
    let task = tokio::spawn(async move {
        // SIGHUP reloads the token file (changes are also picked up at the next request).
        let reloads = {
            let s = s.clone();
            async move {
                while hup.recv().await.is_some() {
                    match s.reload_tokens() {
                        Ok(()) => info!("SIGHUP: token file reloaded"),
                        Err(e) => warn!(error = %e, "SIGHUP: cannot reload the token file"),
                    }
                }
                std::future::pending::<()>().await
            }
        };
        tokio::select! {
            r = s.serve(listener, shutdown.cancelled_owned()) => r.map_err(anyhow::Error::from),
            _ = reloads => Ok(()),
        }
    });
    Ok((server, ApiServing { stop, task }))
}

fn start_scheduler(
    client: kube::Client,
    config: podvisor_scheduler::SchedulerConfig,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let scheduler = podvisor_scheduler::Scheduler::new(client, config);
    tokio::spawn(async move {
        if let Err(e) = scheduler.run(shutdown).await {
            warn!(error = %e, "scheduler stopped");
        }
    })
}

/// The scheduler's recorder of pod timelines (its writer ends with the scheduler, when the
/// last recorder is dropped), or a disabled one.
fn scheduler_timeline(
    client: &kube::Client,
    enabled: bool,
) -> podvisor_kit::timeline::TimelineRecorder {
    podvisor_kit::timeline::start_kube(
        client.clone(),
        podvisor_scheduler::DEFAULT_SCHEDULER_NAME,
        podvisor_kit::WallClock::system(),
        enabled,
        CancellationToken::new(),
    )
}

/// The lease the controller managers of several `podvisor server`s compete for.
const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";

fn controller_config(args: &ControllerArgs) -> podvisor_controllers::ControllerConfig {
    let mut config = podvisor_controllers::ControllerConfig::default();
    let nl = &mut config.node_lifecycle;
    nl.monitor_period = args.node_monitor_period;
    nl.monitor_grace_period = args.node_monitor_grace_period;
    nl.startup_grace_period = args.node_startup_grace_period;
    nl.eviction_rate = args.node_eviction_rate;
    config.pod_gc.terminated_pod_threshold = args.terminated_pod_gc_threshold;
    config.node_ipam.cluster_cidr = Some(args.cluster_cidr.clone()).filter(|c| !c.is_empty());
    config.timeline_gc.retention = args.timeline_retention;
    config
}

/// The election of `lease` by this server (`identity`) with the `--leader-elect-*` timings.
fn election(
    lease: &str,
    identity: &str,
    args: &crate::cli::LeaderElectionArgs,
) -> anyhow::Result<podvisor_kit::LeaderElectionConfig> {
    let mut config = podvisor_kit::LeaderElectionConfig::new(lease, identity);
    config.lease_duration = args.leader_elect_lease_duration;
    config.renew_deadline = args.leader_elect_renew_deadline;
    config.retry_period = args.leader_elect_retry_period;
    config.validate().map_err(|e| {
        anyhow::anyhow!(
            "--leader-elect-lease-duration {:?}, --leader-elect-renew-deadline {:?}, \
             --leader-elect-retry-period {:?}: {e}",
            config.lease_duration,
            config.renew_deadline,
            config.retry_period
        )
    })?;
    Ok(config)
}

/// Starts the controller manager; with `election`, only while this process holds the
/// lease (each term runs a fresh manager, cancelled when leadership is lost).
fn start_controllers(
    client: kube::Client,
    config: podvisor_controllers::ControllerConfig,
    election: Option<podvisor_kit::LeaderElectionConfig>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let manager = podvisor_controllers::ControllerManager::new(client.clone(), config);
    tokio::spawn(async move {
        let Some(election) = election else {
            if let Err(e) = manager.run(shutdown).await {
                warn!(error = %e, "controllers stopped");
            }
            return;
        };
        let mut elector = podvisor_kit::LeaderElector::new(client, election);
        let term = |token: CancellationToken| {
            let manager = manager.clone();
            async move {
                // A term ends only when leadership ends; a manager that could not start is
                // retried within the term.
                while !token.is_cancelled() {
                    if let Err(e) = manager.clone().run(token.clone()).await {
                        warn!(error = %e, "controllers stopped; restarting");
                        tokio::select! {
                            _ = token.cancelled() => {}
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        };
        if let Err(e) = elector.run(shutdown, term).await {
            warn!(error = %e, "controller manager leader election stopped");
        }
    })
}

/// Waits until the node reports Ready.
async fn wait_node_ready(client: kube::Client, node: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let mut stream = watcher(nodes, cfg).boxed();
    while let Some(ev) = stream.next().await {
        let ready = |n: &Node| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        match ev {
            Ok(watcher::Event::Apply(n)) | Ok(watcher::Event::InitApply(n)) if ready(&n) => {
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "watching node {node}"),
        }
    }
    bail!("node watch ended before {node} was Ready")
}

/// Creates the RuntimeClass `host` (handler `host`): pods that name it run their commands on
/// the host filesystem instead of in their image.
pub(crate) async fn ensure_host_runtime_class(client: kube::Client) {
    use k8s_openapi::api::node::v1::RuntimeClass;
    let api: Api<RuntimeClass> = Api::all(client);
    let rc = RuntimeClass {
        metadata: kube::api::ObjectMeta {
            name: Some(podvisor_agent::image::HOST_RUNTIME_CLASS.into()),
            ..Default::default()
        },
        handler: podvisor_agent::image::HOST_RUNTIME_CLASS.into(),
        ..Default::default()
    };
    match api.create(&kube::api::PostParams::default(), &rc).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => tracing::warn!(error = %e, "cannot create the RuntimeClass \"host\""),
    }
}

/// The node's image service: the store under DATA_DIR/images, the registry settings.
fn image_service(
    args: &crate::cli::ImageArgs,
    data_dir: &Path,
) -> anyhow::Result<Arc<podvisor_agent::image::ImageManager>> {
    let settings = podvisor_agent::image::RegistrySettings::load(
        args.registries_config.as_deref(),
        args.insecure_registry.clone(),
    )
    .map_err(|e| anyhow::anyhow!("registries config: {e}"))?;
    podvisor_agent::image::open(data_dir, settings)
        .map_err(|e| anyhow::anyhow!("cannot open the image store: {e}"))
}

/// `podvisor up`.
pub async fn up(args: UpArgs, started: Instant) -> anyhow::Result<()> {
    // The agent's fence must come before the controllers' grace period ends.
    fencing(
        &mut podvisor_agent::AgentConfig::new("", args.node_ip, PathBuf::new()),
        &args.fence,
        Some(args.controllers.node_monitor_grace_period),
    )?;
    let data_dir = config::data_dir(args.serve.dirs.data_dir.as_deref())?;
    let node_name = args.node_name.clone().unwrap_or_else(host_name);
    let store = open_store(None, &data_dir).await?;
    let store = encrypted_store(
        store,
        args.encryption_provider_config.as_deref(),
        Some(&data_dir),
    )?;
    // `up` keeps an audit log of writes by default.
    let audit = audit_config(&args.serve.audit, Some(data_dir.join("audit.log")))?;
    let (server, serving) = start_api_server(store, &data_dir, &args.serve, &[], audit).await?;

    let admin = server.in_process_client(&server.admin_token());
    let node_token = server
        .ensure_node_token(&node_name)
        .context("cannot create the node's token")?;
    let node_client = server.in_process_client(&node_token);
    // The node's Service proxy (and cluster DNS) runs under its own identity.
    let proxy_token = server
        .ensure_proxy_token(&node_name)
        .context("cannot create the node's Service proxy token")?;
    let proxy_client = server.in_process_client(&proxy_token);

    let plane = ControlPlane::start(
        serving,
        admin.clone(),
        podvisor_scheduler::SchedulerConfig {
            timeline: scheduler_timeline(&admin, args.serve.timeline),
            ..Default::default()
        },
        podvisor_controllers::ControllerConfig {
            root_ca: Some(server.ca_pem()),
            ..controller_config(&args.controllers)
        },
        None,
    );

    ensure_host_runtime_class(admin.clone()).await;
    let agent_stop = CancellationToken::new();
    let mut agent_config =
        podvisor_agent::AgentConfig::new(node_name.clone(), args.node_ip, data_dir.join("agent"));
    agent_config.node_token = node_token.clone();
    agent_config.drain_on_shutdown = !args.keep_pods;
    agent_config.timeline = args.serve.timeline;
    agent_config.network = network_config(&args.network, &data_dir);
    let runtime = process_runtime(&data_dir, agent_config.network.as_ref()).await?;
    agent_config.image_gc = crate::image_cmd::gc_policy(&args.images)?;
    agent_config.allowed_unsafe_sysctls = unsafe_sysctls(&args.node_security)?;
    agent_config.max_pods = args.node_capacity.max_pods;
    crash_loop(&mut agent_config, &args.crash_loop)?;
    fencing(
        &mut agent_config,
        &args.fence,
        Some(args.controllers.node_monitor_grace_period),
    )?;
    let _spares = SparesGuard(runtime.clone());
    let agent_config_network = agent_config.network.clone();
    let mut agent = podvisor_agent::Agent::new(node_client, runtime.clone(), agent_config)
        .with_images(image_service(&args.images, &data_dir)?)
        .with_service_client(proxy_client.clone());
    if let Some(proxy) = service_proxy(&args.network, proxy_client, agent.client(), &node_name) {
        agent = agent.with_proxy(proxy);
    }
    let agent_task = {
        let stop = agent_stop.clone();
        tokio::spawn(async move { agent.run(stop).await })
    };

    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = wait_node_ready(admin.clone(), &node_name) => r?,
        s = next_signal(&mut int, &mut term) => {
            info!("{s} before the node was ready; exiting");
            return Ok(());
        }
    }
    // Pods in network namespaces of their own reach the API at the node's gateway.
    let pod_access_stop = CancellationToken::new();
    let pod_network_usable = agent_config_network
        .as_ref()
        .is_some_and(|n| podvisor_agent::network::missing(n).is_none());
    let pod_access = (pod_network_usable
        && args.serve.advertise_address.is_none()
        && args.serve.listen.ip().is_loopback())
    .then(|| {
        tokio::spawn(crate::pod_access::serve_for_pods(
            server.clone(),
            admin.clone(),
            node_name.clone(),
            args.serve.listen.port(),
            pod_access_stop.clone(),
        ))
    });
    let kubeconfig_path = data_dir.join(kubeconfig::FILE_NAME);
    info!(
        node = %node_name,
        ready_ms = started.elapsed().as_millis() as u64,
        "podvisor is up at {}",
        kubeconfig::server_url(args.serve.listen)
    );
    print_ready(
        &kubeconfig_path,
        &kubeconfig::ui_url(args.serve.listen, &server.admin_token()),
    );

    let s = next_signal(&mut int, &mut term).await;
    if args.keep_pods {
        info!("{s}: stopping; pods keep running and are re-adopted on the next start");
    } else {
        info!("{s}: terminating pods gracefully (again to stop at once)");
    }
    agent_stop.cancel();
    tokio::select! {
        r = agent_task => match r {
            Ok(Err(e)) => warn!(error = %e, "agent stopped with an error"),
            Err(e) => warn!(error = %e, "agent task failed"),
            Ok(Ok(())) => {}
        },
        s = next_signal(&mut int, &mut term) => {
            info!("{s}: stopping at once; pods keep running under their supervisors");
            return Ok(());
        }
    }
    if !args.keep_pods {
        remove_sandboxes_left(&runtime, agent_config_network.as_ref()).await;
    }
    pod_access_stop.cancel();
    if let Some(task) = pod_access {
        let _ = task.await;
    }
    plane.stop().await;
    Ok(())
}

/// The scheduler and controllers (stopped by one token) and the API server of `up` or
/// `server`.
struct ControlPlane {
    components_stop: CancellationToken,
    components: [tokio::task::JoinHandle<()>; 2],
    server: ApiServing,
}

impl ControlPlane {
    /// Starts the scheduler and the controllers on `client` beside the running API server.
    fn start(
        server: ApiServing,
        client: kube::Client,
        scheduler: podvisor_scheduler::SchedulerConfig,
        controllers: podvisor_controllers::ControllerConfig,
        election: Option<podvisor_kit::LeaderElectionConfig>,
    ) -> ControlPlane {
        let components_stop = CancellationToken::new();
        let components = [
            start_scheduler(client.clone(), scheduler, components_stop.clone()),
            start_controllers(client, controllers, election, components_stop.clone()),
        ];
        ControlPlane {
            components_stop,
            components,
            server,
        }
    }

    /// Stops the scheduler and the controllers and waits for them, then the API server:
    /// nothing writes once the server stops.
    async fn stop(self) {
        self.components_stop.cancel();
        for task in self.components {
            let _ = task.await;
        }
        self.server.stop.cancel();
        if let Ok(Err(e)) = self.server.task.await {
            warn!(error = %e, "API server stopped with an error");
        }
    }
}

/// After a drain: ends the supervisors the drain left, those of pods that had already
/// finished (Succeeded, Failed, or never started) and so had nothing to terminate. A clean
/// stop leaves no process behind; the pods' terminal status is already in the API.
async fn remove_sandboxes_left(
    runtime: &podvisor_runtime::process::ProcessRuntime,
    network: Option<&podvisor_agent::network::NetworkConfig>,
) {
    use podvisor_runtime::ContainerRuntime as _;
    let network = network.map(|n| podvisor_agent::network::PodNetwork::new(n.clone(), None, ""));
    let sandboxes = match runtime.list().await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot list the sandboxes left after the drain");
            return;
        }
    };
    for s in sandboxes {
        if let Some(net) = &network
            && let Err(e) = net.teardown(&s.config.id, s.netns.as_deref()).await
        {
            warn!(sandbox = %s.config.id, error = %e, "cannot release a pod network after the drain");
        }
        if let Err(e) = runtime.remove_sandbox(&s.config.id).await {
            warn!(sandbox = %s.config.id, error = %e, "cannot remove a sandbox after the drain");
        }
    }
    runtime.stop_spares();
}

/// Ends the runtime's spare supervisors when the command returns, whichever way it returns
/// (the runtime itself may still be referenced by tasks that never get dropped).
struct SparesGuard(Arc<podvisor_runtime::process::ProcessRuntime>);

impl Drop for SparesGuard {
    fn drop(&mut self) {
        self.0.stop_spares();
    }
}

/// The pod network of a node agent, None with `--pod-network=false`. When the plugins are
/// missing it says so in one line (pods then use the host's network).
fn network_config(
    args: &crate::cli::NetworkArgs,
    data_dir: &Path,
) -> Option<podvisor_agent::network::NetworkConfig> {
    use podvisor_agent::network;
    if !args.pod_network {
        return None;
    }
    let config = network::NetworkConfig::new(
        data_dir,
        args.cni_conf_dir.clone(),
        network::split_dirs(&args.cni_bin_dir),
    );
    if let Some(missing) = network::missing(&config) {
        warn!("{missing}");
    }
    Some(config)
}

/// The node's Service proxy: on with the pod network and `--service-proxy`; without the
/// `nft` tool it says so in one line (and on the node, as an event) and stays off.
fn service_proxy(
    args: &crate::cli::NetworkArgs,
    proxy_client: kube::Client,
    node_client: kube::Client,
    node: &str,
) -> Option<podvisor_agent::proxy::Proxy> {
    use podvisor_agent::proxy;
    if !args.pod_network || !args.service_proxy {
        return None;
    }
    match proxy::nft::Nft::find() {
        Some(nft) => Some(proxy::Proxy::new(
            proxy_client,
            node,
            Arc::new(nft),
            proxy::ProxyConfig::default(),
        )),
        None => {
            warn!("{}", proxy::NFT_MISSING);
            let node = node.to_string();
            // The warning is the node's, with its lease epoch.
            tokio::spawn(async move { proxy::report_unavailable(node_client, &node).await });
            None
        }
    }
}

/// What `agent` says when its token file holds no Service proxy token.
const NO_PROXY_TOKEN: &str = "the token file holds no Service proxy token (its second line): \
     Services are not proxied, the drain barrier is off and there is no cluster DNS and no \
     route to other nodes' pods on this node; `podvisor token create node NAME` prints both \
     tokens";

/// The tokens of a join token file (`podvisor token create node`): the node's (first
/// line) and its Service proxy's (second line, absent in files of earlier versions);
/// `None` when the file holds no token.
fn join_tokens(text: &str) -> Option<(String, Option<String>)> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let node = lines.next()?.to_string();
    Some((node, lines.next().map(String::from)))
}

async fn process_runtime(
    data_dir: &Path,
    network: Option<&podvisor_agent::network::NetworkConfig>,
) -> anyhow::Result<Arc<podvisor_runtime::process::ProcessRuntime>> {
    let exe = std::env::current_exe().context("cannot find the podvisor binary")?;
    let mut config = podvisor_runtime::process::ProcessRuntimeConfig::new(
        runtime_dir(data_dir),
        exe,
        vec!["supervise".to_string()],
    );
    // Spares are made the way most new sandboxes will be: with a network of their own when
    // the pod network is usable.
    config.spare_network = network.is_some_and(|n| podvisor_agent::network::missing(n).is_none());
    let runtime = podvisor_runtime::process::ProcessRuntime::new(config)
        .await
        .context("cannot start the process runtime")?;
    Ok(Arc::new(runtime))
}

/// `podvisor server`.
pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = config::data_dir(args.serve.dirs.data_dir.as_deref())?;
    let store = open_store(args.store.as_deref(), &data_dir).await?;
    // With etcd several servers share the store: they must share the key too, so only an
    // explicit file turns encryption on there.
    let embedded = !args
        .store
        .as_deref()
        .is_some_and(|s| s.starts_with("etcd:"));
    let store = encrypted_store(
        store,
        args.encryption_provider_config.as_deref(),
        embedded.then_some(data_dir.as_path()),
    )?;
    // Several servers may share one etcd: one active scheduler and one active controller
    // manager, each chosen by a Lease.
    let identity = format!("{}-{}", host_name(), std::process::id());
    let scheduler_election = election(
        podvisor_scheduler::DEFAULT_LEASE_NAME,
        &identity,
        &args.leader_election,
    )?;
    let controllers_election =
        election(CONTROLLER_MANAGER_LEASE, &identity, &args.leader_election)?;
    let audit = audit_config(&args.serve.audit, None)?;
    let (server, serving) =
        start_api_server(store, &data_dir, &args.serve, &args.tls_san, audit).await?;
    let admin = server.in_process_client(&server.admin_token());
    let plane = ControlPlane::start(
        serving,
        admin.clone(),
        podvisor_scheduler::SchedulerConfig {
            timeline: scheduler_timeline(&admin, args.serve.timeline),
            leader_election: Some(scheduler_election),
            ..podvisor_scheduler::SchedulerConfig::with_leader_election(identity.clone())
        },
        podvisor_controllers::ControllerConfig {
            root_ca: Some(server.ca_pem()),
            ..controller_config(&args.controllers)
        },
        Some(controllers_election),
    );
    ensure_host_runtime_class(server.in_process_client(&server.admin_token())).await;
    info!(
        "podvisor server is up at {}",
        kubeconfig::server_url(args.serve.listen)
    );
    print_ready(
        &data_dir.join(kubeconfig::FILE_NAME),
        &kubeconfig::ui_url(args.serve.listen, &server.admin_token()),
    );
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let s = next_signal(&mut int, &mut term).await;
    info!("{s}: stopping");
    plane.stop().await;
    Ok(())
}

/// The checked `--allowed-unsafe-sysctls`.
fn unsafe_sysctls(args: &crate::cli::NodeSecurityArgs) -> anyhow::Result<Vec<String>> {
    podvisor_agent::pod::security::check_unsafe_sysctl_patterns(&args.allowed_unsafe_sysctls)
        .map_err(|e| anyhow::anyhow!("--allowed-unsafe-sysctls: {e}"))?;
    Ok(args.allowed_unsafe_sysctls.clone())
}

/// `podvisor agent`.
pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    // The grace period is the server's: checked against it when its Lease shows it.
    fencing(
        &mut podvisor_agent::AgentConfig::new("", args.node_ip, PathBuf::new()),
        &args.fence,
        None,
    )?;
    let data_dir = config::data_dir(args.dirs.data_dir.as_deref())?;
    let text = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read the token file {}", args.token_file.display()))?;
    let (token, proxy_token) = join_tokens(&text)
        .with_context(|| format!("the token file {} is empty", args.token_file.display()))?;
    let client = remote_clients(
        &args.server,
        &token,
        args.ca_file.as_deref(),
        args.ca_cert_hash.as_deref(),
        &data_dir,
    )
    .await?;
    let proxy_client = match &proxy_token {
        Some(t) => Some(
            remote_clients(
                &args.server,
                t,
                args.ca_file.as_deref(),
                args.ca_cert_hash.as_deref(),
                &data_dir,
            )
            .await?,
        ),
        None => None,
    };
    let mut agent_config = podvisor_agent::AgentConfig::new(
        args.node_name.clone(),
        args.node_ip,
        data_dir.join("agent"),
    );
    agent_config.node_token = token;
    agent_config.drain_on_shutdown = args.drain;
    agent_config.timeline = args.timeline;
    agent_config.network = network_config(&args.network, &data_dir);
    let agent_network = agent_config.network.clone();
    let runtime = process_runtime(&data_dir, agent_network.as_ref()).await?;
    agent_config.image_gc = crate::image_cmd::gc_policy(&args.images)?;
    agent_config.allowed_unsafe_sysctls = unsafe_sysctls(&args.node_security)?;
    agent_config.max_pods = args.node_capacity.max_pods;
    crash_loop(&mut agent_config, &args.crash_loop)?;
    fencing(&mut agent_config, &args.fence, None)?;
    let _spares = SparesGuard(runtime.clone());
    let mut agent = podvisor_agent::Agent::new(client, runtime.clone(), agent_config)
        .with_images(image_service(&args.images, &data_dir)?);
    match proxy_client {
        Some(proxy_client) => {
            agent = agent.with_service_client(proxy_client.clone());
            if let Some(proxy) =
                service_proxy(&args.network, proxy_client, agent.client(), &args.node_name)
            {
                agent = agent.with_proxy(proxy);
            }
        }
        None => warn!("{NO_PROXY_TOKEN}"),
    }
    let stop = CancellationToken::new();
    let mut task = {
        let stop = stop.clone();
        tokio::spawn(async move { agent.run(stop).await })
    };
    info!(node = %args.node_name, server = %args.server.join(","), "agent started");
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let result = tokio::select! {
        s = next_signal(&mut int, &mut term) => {
            let how = if args.drain { " after draining its pods" } else { "; pods keep running" };
            info!("{s}: stopping the agent{how}");
            stop.cancel();
            (&mut task).await
        }
        r = &mut task => r,
    };
    if args.drain {
        remove_sandboxes_left(&runtime, agent_network.as_ref()).await;
    }
    match result {
        Ok(r) => r.map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    }
}

/// The `--server` URL `server`, which must be https.
fn parse_server_url(server: &str) -> anyhow::Result<http::Uri> {
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("--server {server:?} is not a URL"))?;
    if url.scheme_str() != Some("https") {
        bail!(
            "--server {server:?} must be an https:// URL: the node token is never sent in the clear"
        );
    }
    Ok(url)
}

/// A kube client for the remote API servers `servers` (one control plane: several fail
/// over, see [`crate::failover`]) with a bearer token. Every server is verified, against
/// `--ca-file`, DATA_DIR/ca.crt, or the CA that matches `--ca-cert-hash` (fetched from the
/// first server that answers); without any of them this fails before anything is sent.
async fn remote_clients(
    servers: &[String],
    token: &str,
    ca_file: Option<&Path>,
    ca_cert_hash: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<kube::Client> {
    let urls = servers
        .iter()
        .map(|s| parse_server_url(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let server = servers.join(",");
    let pin = ca_cert_hash.map(normalize_pin).transpose()?;
    let local = data_dir.join("ca.crt");
    let (pem, source) = match ca_file {
        Some(path) => (
            std::fs::read(path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))?,
            path.to_path_buf(),
        ),
        None if local.exists() => (
            std::fs::read(&local)
                .with_context(|| format!("cannot read the CA file {}", local.display()))?,
            local.clone(),
        ),
        None => match &pin {
            Some(pin) => {
                let pem = fetch_pinned_ca_any(&urls, pin).await?;
                std::fs::write(&local, pem.as_bytes())
                    .with_context(|| format!("cannot write {}", local.display()))?;
                info!(ca = %local.display(), "the server's CA matches --ca-cert-hash; saved");
                (pem.into_bytes(), local.clone())
            }
            None => bail!(
                "no CA to verify the server {server} with: pass --ca-file (the server's \
                 DATA_DIR/ca.crt) or --ca-cert-hash sha256:… (printed by `podvisor token create \
                 node`); the node token is never sent to an unverified server"
            ),
        },
    };
    let ders = pem_to_der(&pem)
        .with_context(|| format!("{} holds no PEM certificate", source.display()))?;
    if let Some(pin) = &pin
        && !ders
            .iter()
            .any(|d| podvisor_apiserver::tls::ca_cert_hash(d).as_deref() == Some(pin.as_str()))
    {
        bail!(
            "the CA in {} does not match --ca-cert-hash {pin}",
            source.display()
        );
    }
    let mut clients = Vec::new();
    for (name, url) in servers.iter().zip(urls) {
        let mut config = kube::Config::new(url);
        config.auth_info.token = Some(token.to_string().into());
        config.root_cert = Some(ders.clone());
        let client = kube::Client::try_from(config).context("cannot build the API client")?;
        clients.push((name.clone(), client));
    }
    crate::failover::client(clients).context("no --server given")
}

/// [`fetch_pinned_ca`] from the first of `urls` that answers.
async fn fetch_pinned_ca_any(urls: &[http::Uri], pin: &str) -> anyhow::Result<String> {
    let mut last = None;
    for url in urls {
        match fetch_pinned_ca(url, pin).await {
            Ok(pem) => return Ok(pem),
            Err(e) => {
                warn!(server = %url, error = %e, "cannot fetch the CA; trying the next server");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no --server given")))
}

/// `sha256:` + 64 hex digits, lower-cased.
fn normalize_pin(pin: &str) -> anyhow::Result<String> {
    let hex = pin
        .trim()
        .strip_prefix("sha256:")
        .with_context(|| format!("--ca-cert-hash {pin:?}: expected sha256:<64 hex digits>"))?;
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("--ca-cert-hash {pin:?}: expected sha256:<64 hex digits>");
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// Takes the certificate chain the server presents in a TLS handshake (nothing is sent
/// after it: no request, no token) and returns, as PEM, the certificate whose public key
/// matches `pin`. The kube client then verifies the server against that CA as usual.
async fn fetch_pinned_ca(url: &http::Uri, pin: &str) -> anyhow::Result<String> {
    use base64::Engine as _;
    use rustls::pki_types::ServerName;
    let host = url.host().context("--server has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_u16().unwrap_or(443);
    // any chain, for this one handshake: it is checked against the pin below
    let tls = podvisor_apiserver::tls::pinned_client_config(None);
    let name = ServerName::try_from(host.clone())
        .with_context(|| format!("{host:?} is not a server name"))?;
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .with_context(|| format!("timed out connecting to {host}:{port}"))?
    .with_context(|| format!("cannot connect to {host}:{port}"))?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    let conn = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        connector.connect(name, stream),
    )
    .await
    .with_context(|| format!("timed out in the TLS handshake with {host}:{port}"))?
    .with_context(|| format!("TLS handshake with {host}:{port}"))?;
    let chain: Vec<Vec<u8>> = conn
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.to_vec())
        .collect();
    drop(conn);
    let ca = chain
        .iter()
        .find(|der| podvisor_apiserver::tls::ca_cert_hash(der).as_deref() == Some(pin))
        .with_context(|| {
            format!(
                "the server {host}:{port} presented no CA matching --ca-cert-hash {pin}; \
                 refusing to send it the node token"
            )
        })?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    Ok(pem)
}

pub(crate) fn pem_to_der(pem: &[u8]) -> Option<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let certs = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    (!certs.is_empty()).then_some(certs)
}

/// `podvisor token create node NAME`.
pub async fn token_create(args: TokenCreateArgs) -> anyhow::Result<()> {
    let data_dir = config::data_dir(args.dirs.data_dir.as_deref())?;
    let tokens = podvisor_apiserver::auth::TokenFile::load_or_create(&data_dir)
        .with_context(|| format!("cannot read the token file in {}", data_dir.display()))?;
    let token = tokens
        .ensure_node_token(&args.name)
        .with_context(|| format!("cannot create a token for node {}", args.name))?;
    let proxy = tokens
        .ensure_proxy_token(&args.name)
        .with_context(|| format!("cannot create a Service proxy token for node {}", args.name))?;
    // The join file: the node's token, then its Service proxy's.
    println!("{token}\n{proxy}");
    // The pin goes to stderr: stdout stays the token alone (`> node.token`).
    let ca = data_dir.join("ca.crt");
    if let Some(pin) = std::fs::read_to_string(&ca)
        .ok()
        .and_then(|pem| podvisor_apiserver::tls::ca_cert_hash_pem(&pem))
    {
        eprintln!(
            "join with: podvisor agent --server https://<server>:<port> --token-file <file> \
             --ca-cert-hash {pin} --node-name {} --node-ip <ip>",
            args.name
        );
    }
    Ok(())
}

/// Applies `--max-container-restart-period` to the agent's configuration.
fn crash_loop(
    config: &mut podvisor_agent::AgentConfig,
    args: &crate::cli::CrashLoopArgs,
) -> anyhow::Result<()> {
    if let Some(period) = args.max_container_restart_period {
        config
            .set_max_container_restart_period(period)
            .map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// The node's lease duration, renew interval and `--fence-after`, checked against the
/// renew interval and, when known (`up`), the control plane's grace period `grace`.
fn fencing(
    config: &mut podvisor_agent::AgentConfig,
    args: &crate::cli::FenceArgs,
    grace: Option<Duration>,
) -> anyhow::Result<()> {
    use podvisor_api::fencing::{check_fence_after, default_fence_after, renew_interval};
    let lease = Duration::from_secs(u64::try_from(args.node_lease_duration_seconds).unwrap_or(40));
    let fence_after = args
        .fence_after
        .unwrap_or_else(|| default_fence_after(lease, grace));
    check_fence_after(fence_after, lease, grace).map_err(anyhow::Error::msg)?;
    config.lease_duration_seconds = args.node_lease_duration_seconds;
    config.lease_interval = renew_interval(lease);
    config.fence_after =
        Some(fence_after).filter(|_| args.fence_after.is_some() || grace.is_some());
    Ok(())
}

/// Prints the ready lines on stdout: the `export KUBECONFIG=` line to paste, then the web
/// view's URL as a shell comment. One write, and a stdout closed by whoever started us
/// (`podvisor up | head -1`, a supervisor that read what it needed) is not an error: the
/// cluster keeps running (`println!` would panic on the broken pipe).
fn print_ready(kubeconfig: &std::path::Path, ui_url: &str) {
    use std::io::Write as _;
    let text = format!(
        "export KUBECONFIG={}\n# web view: {ui_url}\n",
        kubeconfig.display()
    );
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::debug!(error = %e, "stdout closed: the ready lines were not printed");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{ListParams, Patch, PatchParams, PostParams};

    use super::*;

    #[test]
    fn a_join_file_holds_the_node_token_then_the_proxy_token() {
        assert_eq!(
            join_tokens("n-token\np-token\n"),
            Some(("n-token".into(), Some("p-token".into())))
        );
        // A file of an earlier version: the node token alone.
        assert_eq!(
            join_tokens("  n-token \n\n"),
            Some(("n-token".into(), None))
        );
        assert_eq!(join_tokens(" \n\n"), None);
    }

    #[test]
    fn fencing_defaults_below_the_grace_period_and_refuses_what_does_not_fit() {
        let args = |fence_after: Option<u64>, lease: i32| crate::cli::FenceArgs {
            fence_after: fence_after.map(Duration::from_secs),
            node_lease_duration_seconds: lease,
        };
        let config =
            || podvisor_agent::AgentConfig::new("n", [127, 0, 0, 1].into(), PathBuf::new());
        let grace = Some(Duration::from_secs(50));
        let mut c = config();
        fencing(&mut c, &args(None, 40), grace).unwrap();
        assert_eq!(c.fence_after, Some(Duration::from_millis(37_500)));
        assert_eq!(c.lease_interval, Duration::from_secs(10));
        let mut c = config();
        fencing(&mut c, &args(Some(3), 4), Some(Duration::from_secs(8))).unwrap();
        assert_eq!(
            (c.fence_after, c.lease_interval, c.lease_duration_seconds),
            (Some(Duration::from_secs(3)), Duration::from_secs(1), 4)
        );
        // A separate agent without --fence-after follows the control plane's grace period.
        let mut c = config();
        fencing(&mut c, &args(None, 40), None).unwrap();
        assert_eq!(c.fence_after, None);
        let e = fencing(&mut config(), &args(Some(50), 40), grace).unwrap_err();
        assert!(e.to_string().starts_with("--fence-after 50s must be shorter than the control plane's --node-monitor-grace-period 50s"), "{e}");
        let e = fencing(&mut config(), &args(Some(5), 40), None).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "--fence-after 5s must be longer than the node's lease renew interval 10s"
            ),
            "{e}"
        );
    }

    fn election(identity: &str) -> podvisor_kit::LeaderElectionConfig {
        let mut cfg = podvisor_kit::LeaderElectionConfig::new(CONTROLLER_MANAGER_LEASE, identity);
        cfg.lease_duration = Duration::from_secs(3);
        cfg.renew_deadline = Duration::from_secs(2);
        cfg.retry_period = Duration::from_millis(200);
        cfg
    }

    async fn holder(leases: &Api<Lease>) -> Option<String> {
        leases
            .get_opt(CONTROLLER_MANAGER_LEASE)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    }

    async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut f: F) {
        for _ in 0..200 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn pod_count(pods: &Api<Pod>) -> usize {
        pods.list(&ListParams::default().labels("app=le"))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
    }

    /// Two controller managers on one API server: one leads (and acts), the other waits;
    /// when the leader stops, the standby takes over and acts.
    #[tokio::test]
    async fn controller_managers_elect_one_leader_and_the_standby_takes_over() {
        let server = podvisor_apiserver::testing::memory_server().await;
        let client = server.in_process_client(&server.admin_token());
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
        let config = podvisor_controllers::ControllerConfig::default();
        let stops = [CancellationToken::new(), CancellationToken::new()];
        let mut tasks: Vec<Option<tokio::task::JoinHandle<()>>> = ["cm-0", "cm-1"]
            .iter()
            .zip(&stops)
            .map(|(id, stop)| {
                Some(start_controllers(
                    client.clone(),
                    config.clone(),
                    Some(election(id)),
                    stop.clone(),
                ))
            })
            .collect();
        eventually("a leader", async || holder(&leases).await.is_some()).await;
        let first = holder(&leases).await.expect("holder");

        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "le"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "le"}},
                "template": {"metadata": {"labels": {"app": "le"}},
                    "spec": {"containers": [{"name": "c", "image": "pause"}]}}}
        }))
        .expect("rs");
        let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
        rs_api
            .create(&PostParams::default(), &rs)
            .await
            .expect("create rs");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        eventually("one pod", async || pod_count(&pods).await == 1).await;
        for _ in 0..20 {
            assert_eq!(pod_count(&pods).await, 1, "only the leader acts");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(holder(&leases).await.as_deref(), Some(first.as_str()));

        // The leader stops (and releases the lease): the standby takes over.
        let i = usize::from(first == "cm-1");
        stops[i].cancel();
        if let Some(t) = tasks[i].take() {
            t.await.expect("join");
        }
        let second = if i == 0 { "cm-1" } else { "cm-0" };
        eventually("the standby leads", async || {
            holder(&leases).await.as_deref() == Some(second)
        })
        .await;
        rs_api
            .patch(
                "le",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
            )
            .await
            .expect("scale");
        eventually("two pods", async || pod_count(&pods).await == 2).await;
        for s in &stops {
            s.cancel();
        }
        for t in tasks.iter_mut().filter_map(Option::take) {
            t.await.expect("join");
        }
    }
}
