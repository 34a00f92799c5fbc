//! The agent: wires the Node reporter, the log server, the event writer and one
//! [`PodWorker`] per pod UID, driven by a watch of the pods bound to this node.
//!
//! # Start
//!
//! 1. open the state directory (persisted deadlines), bind the log server;
//! 2. subscribe to runtime exits, then list the runtime (so no exit falls in between): every
//!    sandbox found is offered to the worker of its pod UID for re-adoption — nothing is
//!    restarted;
//! 3. register the Node and start the Lease and status loops;
//! 4. watch pods with `spec.nodeName=<node>` (kube-runtime watcher): each object goes to its
//!    worker (created on first sight, latest wins); a DELETED event or absence from a relist
//!    tells the worker the object is gone. Sandboxes whose pod is absent after the first
//!    list are orphans: killed at once and removed.
//!
//! # Fencing
//!
//! When the node loses its lease ([`crate::fence`]) every worker is stopped, every sandbox
//! is removed through the runtime (SIGKILL to the whole tree), and the agent waits until it
//! holds its lease again; then it records `Fenced` events on the node and on each pod it
//! killed and starts over from a fresh list of its pods, as after a restart with nothing to
//! re-adopt. A `--fence-after` that does not fit the control plane's grace period stops the
//! agent with that error.
//!
//! # Stop
//!
//! Cancelling the token leaves pods running (their workers are dropped, persisted deadlines
//! stay) for the next agent to re-adopt; with `drain_on_shutdown` every pod is first
//! stopped gracefully (spec grace) and its terminal status written.
//!
//! Every task is owned (a `JoinSet`), none detached.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use podvisor_runtime::{ContainerRuntime, SandboxStatus};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{EventSink, EventType, KubePodApi, PodApi, PodEvent, PodRef, kubelet_events};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::fence::{Fence, FenceState, LeaseEpoch, stamped_client};
use crate::hooks::HookRunner;
use crate::node::NodeReporter;
use crate::pod::deadlines::DeadlineStore;
use crate::pod::state::spec_grace_seconds;
use crate::pod::{
    LABEL_POD_NAME, LABEL_POD_NAMESPACE, PodWorker, RuntimeNote, WorkerCtx, WorkerHandle,
    sandbox_pod_uid,
};
use crate::server::LogServer;
use crate::server::tls::ServingCert;

/// The node agent. See the module documentation.
pub struct Agent {
    client: Client,
    runtime: Arc<dyn ContainerRuntime>,
    config: Arc<AgentConfig>,
    hooks: Option<Arc<dyn HookRunner>>,
    pod_api: Option<Arc<dyn PodApi>>,
    events: Option<Arc<dyn EventSink>>,
    objects: Option<Arc<dyn crate::objects::ObjectSource>>,
    images: Option<Arc<crate::image::ImageManager>>,
    proxy: std::sync::Mutex<Option<crate::proxy::Proxy>>,
    service_client: Option<Client>,
    log_addr: watch::Sender<Option<SocketAddr>>,
    fence: Arc<Fence>,
}

/// Remembers finished pod UIDs (never run again), bounded.
#[derive(Default)]
struct FinishedUids {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl FinishedUids {
    fn insert(&mut self, uid: String) {
        if self.set.insert(uid.clone()) {
            self.order.push_back(uid);
            while self.order.len() > 100_000 {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

fn orphan_pod(sb: &SandboxStatus) -> Pod {
    let label = |k: &str| sb.config.labels.get(k).cloned();
    let mut pod = Pod::default();
    pod.metadata.uid = Some(sandbox_pod_uid(&sb.config).to_string());
    pod.metadata.name = Some(label(LABEL_POD_NAME).unwrap_or_else(|| sb.config.hostname.clone()));
    pod.metadata.namespace = label(LABEL_POD_NAMESPACE);
    pod
}

impl Agent {
    /// An agent for `config.node_name`, talking to the API through `client` and running pods
    /// on `runtime`.
    /// Every request carries the node's lease epoch ([`crate::fence::stamped_client`]).
    pub fn new(client: Client, runtime: Arc<dyn ContainerRuntime>, config: AgentConfig) -> Agent {
        let (log_addr, _) = watch::channel(None);
        let epoch = LeaseEpoch::load(&config.state_dir);
        let fence = Arc::new(Fence::new(
            config.fence_after,
            Duration::from_secs(u64::try_from(config.lease_duration_seconds).unwrap_or(40)),
            epoch.clone(),
        ));
        let client = stamped_client(client, epoch);
        Agent {
            fence,
            client,
            runtime,
            config: Arc::new(config),
            hooks: None,
            pod_api: None,
            events: None,
            objects: None,
            images: None,
            proxy: std::sync::Mutex::new(None),
            service_client: None,
            log_addr,
        }
    }

    /// Runs `proxy` (the node's Service proxy) beside the pods, until the agent stops.
    pub fn with_proxy(self, proxy: crate::proxy::Proxy) -> Agent {
        *self.proxy.lock().unwrap_or_else(|e| e.into_inner()) = Some(proxy);
        self
    }

    /// Follows Services, EndpointSlices, Namespaces and every Node for the cluster DNS, the
    /// drain barrier and the routes to other nodes' pods through `client`: the node's
    /// Service proxy identity (`system:kube-proxy`), as the node's own may not list them
    /// (docs/design/0011-proxy-identity.md). Without it the node serves no cluster DNS,
    /// routes to no other node's pods and stops its pods without the drain barrier.
    pub fn with_service_client(mut self, client: Client) -> Agent {
        self.service_client = Some(client);
        self
    }

    /// Uses `hooks` for lifecycle handlers (default: the probe handlers'
    /// [`LifecycleHooks`](crate::hooks::LifecycleHooks)).
    pub fn with_hooks(mut self, hooks: Arc<dyn HookRunner>) -> Agent {
        self.hooks = Some(hooks);
        self
    }

    /// Uses `api` for pod status writes and deletes (default: kube-rs).
    pub fn with_pod_api(mut self, api: Arc<dyn PodApi>) -> Agent {
        self.pod_api = Some(api);
        self
    }

    /// Uses `events` for events (default: core/v1 Events through kube-rs).
    pub fn with_events(mut self, events: Arc<dyn EventSink>) -> Agent {
        self.events = Some(events);
        self
    }

    /// Uses `objects` to read ConfigMaps and Secrets (default: kube-rs).
    pub fn with_objects(mut self, objects: Arc<dyn crate::objects::ObjectSource>) -> Agent {
        self.objects = Some(objects);
        self
    }

    /// Pulls images with `images` (default: none; every image counts as present).
    pub fn with_images(mut self, images: Arc<crate::image::ImageManager>) -> Agent {
        self.images = Some(images);
        self
    }

    /// The agent's API client: every request carries the node's lease epoch.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The node's fence (its lease state and epoch).
    pub fn fence(&self) -> Arc<Fence> {
        self.fence.clone()
    }

    /// The log server's address, once bound (`daemonEndpoints.kubeletEndpoint.Port`).
    pub fn log_addr(&self) -> watch::Receiver<Option<SocketAddr>> {
        self.log_addr.subscribe()
    }

    /// Runs until `shutdown` is cancelled. See the module documentation.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        use tracing::Instrument;
        let span = tracing::info_span!("agent", node = %self.config.node_name);
        self.run_inner(shutdown).instrument(span).await
    }

    async fn run_inner(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let config = self.config.clone();
        let node = config.node_name.clone();
        let deadlines = DeadlineStore::open(&config.state_dir)?;
        let aux_stop = CancellationToken::new();
        let mut aux: JoinSet<()> = JoinSet::new();

        let mut names = vec![crate::node::hostname()];
        for n in [config.node_ip.to_string(), node.clone()] {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let cert = ServingCert::load_or_generate(
            &config.state_dir.join("pki"),
            &names,
            config.clock.now(),
        )?;
        let tls = cert.server_config()?;
        let log_server = match LogServer::bind(
            config.log_server_addr,
            self.runtime.clone(),
            &config.node_token,
            config.clock.clone(),
            tls.clone(),
        )
        .await
        {
            Ok(s) => s,
            // The node IP is not an address of this host (behind NAT, say): listen on all
            // addresses so the API server's dial to it can still arrive.
            Err(e)
                if config.log_server_addr.ip() == config.node_ip
                    && !config.node_ip.is_unspecified() =>
            {
                tracing::warn!(error = %e, ip = %config.node_ip, "the node IP is not an address of this host; the log server listens on all addresses");
                let any: std::net::IpAddr = if config.node_ip.is_ipv4() {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                };
                LogServer::bind(
                    SocketAddr::new(any, config.log_server_addr.port()),
                    self.runtime.clone(),
                    &config.node_token,
                    config.clock.clone(),
                    tls,
                )
                .await?
            }
            Err(e) => return Err(e),
        };
        let log_addr = log_server.local_addr();
        let _ = self.log_addr.send(log_addr);
        aux.spawn(log_server.serve(aux_stop.clone()));

        // The pods' timelines: the events about pods, the steps the pod workers record, and
        // the status writes (`podvisor_kit::timeline`).
        let timeline = podvisor_kit::timeline::start_kube(
            self.client.clone(),
            "kubelet",
            config.clock.clone(),
            config.timeline,
            aux_stop.clone(),
        );
        let events: Arc<dyn EventSink> = match self.events.clone() {
            Some(e) => e,
            None => {
                let (recorder, writer) =
                    kubelet_events(self.client.clone(), &node, config.clock.clone());
                aux.spawn(writer.run_until(aux_stop.clone()));
                Arc::new(recorder.with_timeline(timeline.clone()))
            }
        };
        let pod_api: Arc<dyn PodApi> = self.pod_api.clone().unwrap_or_else(|| {
            Arc::new(KubePodApi::new(self.client.clone()).with_timeline(Some(timeline.clone())))
        });
        let hooks: Arc<dyn HookRunner> = self
            .hooks
            .clone()
            .unwrap_or_else(|| Arc::new(crate::hooks::LifecycleHooks::new(self.runtime.clone())));
        let network = config.network.clone().map(|n| {
            Arc::new(crate::network::PodNetwork::new(
                n,
                Some(self.client.clone()),
                &node,
            ))
        });
        // Services for the service-link variables (a watch cache, as the kubelet's lister).
        let (services, services_writer) = kube::runtime::reflector::store::<Service>();
        let services_feed = podvisor_kit::reflect::reflect(
            Api::<Service>::all(self.client.clone()),
            watcher::Config::default(),
            services_writer,
            "service",
            tracing::Level::DEBUG,
            |_| {},
        );
        let stop = aux_stop.clone();
        aux.spawn(async move {
            stop.run_until_cancelled(services_feed).await;
        });
        let service_lister: crate::pod::service_env::ServiceLister = {
            let store = services.clone();
            Arc::new(move || {
                use futures::FutureExt;
                store
                    .wait_until_ready()
                    .now_or_never()
                    .is_some_and(|r| r.is_ok())
                    .then(|| store.state())
            })
        };
        let ctx =
            Arc::new(WorkerCtx {
                runtime: self.runtime.clone(),
                api: pod_api,
                events,
                hooks,
                clock: config.clock.clone(),
                deadlines,
                objects: self.objects.clone().unwrap_or_else(|| {
                    Arc::new(crate::objects::KubeObjects::new(self.client.clone()))
                }),
                pods_dir: config.state_dir.join("pods"),
                node_name: node.clone(),
                node_ip: config.node_ip.to_string(),
                allocatable: crate::node::capacity(&config),
                backoff_initial: config.backoff_initial,
                backoff_max: config.backoff_max,
                network: network.clone(),
                images: self.images.clone(),
                services: service_lister,
                drain: self.service_client.as_ref().map(
                    |client| -> Arc<dyn crate::drain::DrainView> {
                        crate::drain::KubeDrainView::start(client, &mut aux, aux_stop.clone())
                    },
                ),
                allowed_unsafe_sysctls: config.allowed_unsafe_sysctls.clone(),
                allocations: Arc::new(crate::pod::resize::Allocations::new()),
            });

        let mut exits = self.runtime.subscribe();
        let mut adopted: HashMap<String, SandboxStatus> = HashMap::new();
        for sb in self.runtime.list().await? {
            adopted.insert(sandbox_pod_uid(&sb.config).to_string(), sb);
        }
        if let Some(net) = &network {
            // Attachments whose sandbox is gone are released; the others are checked.
            let live: HashSet<String> = adopted.values().map(|s| s.config.id.clone()).collect();
            net.collect_garbage(&live).await;
            let checks: Vec<_> = adopted
                .values()
                .filter_map(|s| Some((s.config.id.clone(), s.netns.clone()?)))
                .collect();
            let net = net.clone();
            aux.spawn(async move {
                for (id, netns) in checks {
                    net.check(&id, &netns).await;
                }
            });
            // The routes follow every Node: the network side's read, as the proxy's.
            if let Some(service_client) = &self.service_client {
                aux.spawn(crate::network::routes::run(
                    service_client.clone(),
                    node.clone(),
                    aux_stop.clone(),
                ));
            } else {
                tracing::warn!(
                    "no routes to other nodes' pods: this node has no Service proxy credential"
                );
            }
            if network.as_ref().and_then(|n| n.missing()).is_some() {
                // The pod network's own warning says what is missing.
                tracing::info!("no cluster DNS on this node: the pod network is unavailable");
            } else if let Some(service_client) = &self.service_client {
                aux.spawn(crate::dns::run_node(
                    service_client.clone(),
                    node.clone(),
                    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                    config.clock.clone(),
                    aux_stop.clone(),
                ));
            } else {
                tracing::warn!("no cluster DNS on this node: it has no Service proxy credential");
            }
        }
        if !adopted.is_empty() {
            tracing::info!(
                sandboxes = adopted.len(),
                "re-adopting pods found in the runtime"
            );
        }

        let reporter = NodeReporter::new(
            self.client.clone(),
            config.clone(),
            self.runtime.clone(),
            log_addr.map_or(0, |a| a.port()),
            self.fence.clone(),
        )
        .with_serving_cert_hash(cert.hash()?)
        .with_images(self.images.clone());
        aux.spawn(reporter.run(aux_stop.clone()));
        aux.spawn(self.fence.clone().watchdog(aux_stop.clone()));
        let mut fence_state = self.fence.subscribe();
        let mut misconfigured = None;
        let proxy = self.proxy.lock().unwrap_or_else(|e| e.into_inner()).take();
        // The proxy's acknowledgements go to this Node, where every node's drain barrier
        // reads them (crate::drain); a node without a proxy withdraws an old one.
        if let Some(proxy) = proxy {
            let ack = crate::drain::ProxyAck::default();
            aux.spawn(ack.clone().follow(proxy.applied(), aux_stop.clone()));
            aux.spawn(ack.run(self.client.clone(), node.clone(), aux_stop.clone()));
            aux.spawn(proxy.run(aux_stop.clone()));
        } else {
            aux.spawn(crate::drain::ProxyAck::withdraw(
                self.client.clone(),
                node.clone(),
            ));
        }
        if let Some(images) = &self.images {
            aux.spawn(crate::image::gc::run(
                images.store().clone(),
                self.runtime.clone(),
                config.image_gc.clone(),
                crate::image::gc::GC_PERIOD,
                aux_stop.clone(),
            ));
        }

        // Containers need the Services listed once (service links): wait a little for it
        // here rather than fail the first containers' configuration.
        if tokio::time::timeout(Duration::from_secs(10), services.wait_until_ready())
            .await
            .is_err()
        {
            tracing::warn!("services not listed after 10s; containers wait for them");
        }
        let pods: Api<Pod> = Api::all(self.client.clone());
        let wc = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let mut stream = watcher(pods.clone(), wc.clone()).default_backoff().boxed();

        let mut workers_stop = CancellationToken::new();
        let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
        let mut tasks: JoinSet<String> = JoinSet::new();
        let mut finished = FinishedUids::default();
        let mut seen: HashSet<String> = HashSet::new();
        let mut orphans_handled = false;

        let spawn = |pod: Arc<Pod>,
                     adopted: Option<SandboxStatus>,
                     workers: &mut HashMap<String, WorkerHandle>,
                     tasks: &mut JoinSet<String>,
                     stop: &CancellationToken| {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let (worker, handle) = PodWorker::new(ctx.clone(), pod, adopted, stop.child_token());
            workers.insert(uid.clone(), handle);
            tasks.spawn(async move {
                worker.run().await;
                uid
            });
        };

        'main: loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = fence_state.changed() => {
                    if r.is_err() {
                        break;
                    }
                    let state = fence_state.borrow_and_update().clone();
                    match state {
                        FenceState::Misconfigured(e) => {
                            misconfigured = Some(e);
                            break;
                        }
                        FenceState::Lost { .. } => {}
                        _ => continue,
                    }
                    // Fence: no worker may start anything any more, then kill every sandbox.
                    workers_stop.cancel();
                    tasks.shutdown().await;
                    workers.clear();
                    seen.clear();
                    adopted.clear();
                    finished = FinishedUids::default();
                    workers_stop = CancellationToken::new();
                    let killed = kill_all_pods(self.runtime.as_ref(), network.as_deref()).await;
                    tracing::warn!(pods = killed.len(), "fenced: every pod killed; waiting to hold the lease again");
                    self.fence.killed(killed);
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => break 'main,
                            r = fence_state.changed() => if r.is_err() { break 'main },
                        }
                        let state = fence_state.borrow_and_update().clone();
                        match state {
                            FenceState::Holding => break,
                            FenceState::Misconfigured(e) => {
                                misconfigured = Some(e);
                                break 'main;
                            }
                            _ => {}
                        }
                    }
                    fenced_events(ctx.events.as_ref(), &node, &self.fence);
                    tracing::info!(epoch = self.fence.epoch.get(), "the node holds its lease again: running its pods");
                    stream = watcher(pods.clone(), wc.clone()).default_backoff().boxed();
                }
                ev = stream.next() => {
                    let Some(ev) = ev else {
                        tracing::warn!("pod watch ended");
                        break;
                    };
                    match ev {
                        Ok(watcher::Event::Init) => seen.clear(),
                        Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                            let Some(uid) = pod.metadata.uid.clone() else { continue };
                            seen.insert(uid.clone());
                            if finished.set.contains(&uid) {
                                continue;
                            }
                            let pod = Arc::new(pod);
                            match workers.get(&uid) {
                                Some(h) => h.input.send_modify(|i| i.pod = Some(pod)),
                                None => spawn(pod, adopted.remove(&uid), &mut workers, &mut tasks, &workers_stop),
                            }
                        }
                        Ok(watcher::Event::Delete(pod)) => {
                            if let Some(h) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                                h.input.send_modify(|i| i.pod = None);
                            }
                        }
                        Ok(watcher::Event::InitDone) => {
                            for (uid, h) in &workers {
                                if !seen.contains(uid) {
                                    h.input.send_modify(|i| i.pod = None);
                                }
                            }
                            if !orphans_handled {
                                orphans_handled = true;
                                for (uid, sb) in adopted.drain() {
                                    tracing::info!(%uid, "killing an orphaned sandbox (its pod is gone)");
                                    let pod = Arc::new(orphan_pod(&sb));
                                    spawn(pod, Some(sb), &mut workers, &mut tasks, &workers_stop);
                                    if let Some(h) = workers.get(&uid) {
                                        h.input.send_modify(|i| i.pod = None);
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "pod watch error"),
                    }
                }
                ev = exits.recv() => match ev {
                    Ok(ev) => {
                        if let Some(h) = workers.get(&ev.sandbox_id) {
                            let _ = h.notes.send(RuntimeNote::Exit(ev));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "runtime events lagged; resyncing every pod");
                        for h in workers.values() {
                            let _ = h.notes.send(RuntimeNote::Resync);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::error!("runtime event stream closed");
                        break;
                    }
                },
                Some(done) = tasks.join_next() => {
                    if let Ok(uid) = done {
                        workers.remove(&uid);
                        finished.insert(uid);
                    }
                }
            }
        }

        if config.drain_on_shutdown && !workers.is_empty() {
            tracing::info!(pods = workers.len(), "draining pods before shutdown");
            let mut longest = 0;
            for h in workers.values() {
                let grace = h
                    .input
                    .borrow()
                    .pod
                    .as_deref()
                    .map(spec_grace_seconds)
                    .unwrap_or(30);
                longest = longest.max(grace);
                h.input.send_modify(|i| i.drain = Some(grace));
            }
            let all_finished = async {
                for h in workers.values() {
                    let mut rx = h.state.clone();
                    let _ = rx.wait_for(|s| *s == "finished").await;
                }
            };
            let bound = Duration::from_secs(longest as u64) + Duration::from_secs(10);
            tokio::select! {
                _ = all_finished => {}
                _ = tokio::time::sleep(bound) => tracing::warn!("drain did not finish in time"),
                // exits must keep flowing to the workers while they drain
                _ = async {
                    loop {
                        match exits.recv().await {
                            Ok(ev) => if let Some(h) = workers.get(&ev.sandbox_id) {
                                let _ = h.notes.send(RuntimeNote::Exit(ev));
                            },
                            Err(broadcast::error::RecvError::Lagged(_)) => for h in workers.values() {
                                let _ = h.notes.send(RuntimeNote::Resync);
                            },
                            Err(_) => std::future::pending::<()>().await,
                        }
                    }
                } => {}
            }
        }
        workers_stop.cancel();
        while tasks.join_next().await.is_some() {}
        aux_stop.cancel();
        while aux.join_next().await.is_some() {}
        match misconfigured {
            Some(e) => Err(AgentError::Config(e)),
            None => Ok(()),
        }
    }
}

/// Removes every sandbox of the runtime (SIGKILL to its whole tree) and releases its pod
/// network; returns the pods they held.
async fn kill_all_pods(
    runtime: &dyn ContainerRuntime,
    network: Option<&crate::network::PodNetwork>,
) -> Vec<PodRef> {
    let sandboxes = match runtime.list().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "fencing: cannot list the sandboxes to kill");
            return Vec::new();
        }
    };
    let mut killed = Vec::new();
    for sb in sandboxes {
        let pod = orphan_pod(&sb);
        if let Err(e) = runtime.remove_sandbox(&sb.config.id).await {
            tracing::error!(sandbox = %sb.config.id, error = %e, "fencing: cannot kill a sandbox");
            continue;
        }
        if let Some(net) = network
            && let Err(e) = net.teardown(&sb.config.id, sb.netns.as_deref()).await
        {
            tracing::warn!(sandbox = %sb.config.id, error = %e, "fencing: cannot release a pod network");
        }
        killed.push(PodRef {
            namespace: pod.metadata.namespace.unwrap_or_default(),
            name: pod.metadata.name.unwrap_or_default(),
            uid: pod.metadata.uid.unwrap_or_default(),
        });
    }
    killed
}

/// The events of a fencing the node is back from: one on the node, one on each pod killed.
fn fenced_events(events: &dyn EventSink, node: &str, fence: &Fence) {
    let Some((why, killed)) = fence.last_fencing() else {
        return;
    };
    events.emit_node(
        node,
        EventType::Warning,
        "Fenced",
        format!(
            "Node {node} {why}: it killed its {} pod(s) with SIGKILL; it holds its lease again \
             (epoch {})",
            killed.len(),
            fence.epoch.get()
        ),
    );
    for pod in killed {
        events.emit(PodEvent {
            pod,
            field_path: None,
            type_: EventType::Warning,
            reason: "Fenced".into(),
            message: format!(
                "Killed (SIGKILL): node {node} {why}; no copy of the pod ran while the node \
                 did not hold its lease"
            ),
        });
    }
}
