//! The node's Service proxy, like kube-proxy in nftables mode: it follows Services and
//! EndpointSlices and programs one nftables table, `ip podvisor`, so that cluster IPs and
//! node ports reach the Services' endpoints (rules in [`rules`]).
//!
//! # Lifecycle
//!
//! ```text
//! start ──▶ caches (Services, EndpointSlices, this Node) listed ──▶ sync
//!   ▲                                                               │
//!   │  a change (any watch event) ─▶ wait min_sync_period ─▶ sync ◀─┘
//!   │                                                       │ failed: retried after
//!   │                                                       │ retry_period, with a full
//!   │                                                       │ re-creation of the table
//! stop ──▶ one transaction deletes the table (clean shutdown only; a crash leaves the
//!          rules in place, and the next start replaces them)
//! ```
//!
//! A sync builds the ruleset from the caches, renders one transaction — the whole table on
//! the first sync and after a failure, otherwise only what changed since the last applied
//! sync ([`rules::render_delta`]: the changed Service ports' map elements and chains) —
//! applies it with `nft -f -` (atomic: the kernel switches from the old rules to the new
//! ones at once) and
//! then — the one point where a sync counts as applied — publishes what it programmed on
//! [`Proxy::applied`]: the EndpointSlice `(uid, generation)`s and the highest EndpointSlice
//! `resourceVersion` of the caches the rules were built from. The agent forwards that number
//! to its Node ([`crate::drain::ProxyAck`]), where the drain barrier of every node reads it:
//! "every EndpointSlice change up to here is in this node's rules". Every sync is counted and
//! logged with its duration and rule count ([`SyncStats`]).
//!
//! Without the `nft` tool the proxy does not run: `up` says so in one line, and the node
//! gets a Warning event; Services then are not reachable through their cluster IPs on it.

pub mod nft;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use podvisor_kit::reflect::{Cached, reflect};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::Level;

use self::nft::Dataplane;

/// What `up` and `agent` say when the `nft` tool is missing.
pub const NFT_MISSING: &str =
    "nft not found: Services are not proxied on this node (install the nftables package)";

/// Records on the Node that its Service proxy is not running (a Warning event,
/// `ServiceProxyUnavailable`).
pub async fn report_unavailable(client: Client, node: &str) {
    use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{node}.")),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            uid: Some(node.to_string()),
            ..ObjectReference::default()
        },
        reason: Some("ServiceProxyUnavailable".into()),
        message: Some(NFT_MISSING.into()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some("kube-proxy".into()),
            host: Some(node.to_string()),
        }),
        ..Event::default()
    };
    if let Err(e) = Api::<Event>::namespaced(client, "default")
        .create(&kube::api::PostParams::default(), &event)
        .await
    {
        tracing::debug!(error = %e, "cannot record that the service proxy is unavailable");
    }
}

/// What a sync programmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The EndpointSlices (uid → generation).
    pub slices: BTreeMap<String, i64>,
    /// The highest EndpointSlice `resourceVersion` among them (store revisions are one
    /// increasing counter, and one watch delivers them in order: every slice change up to
    /// this revision is in the rules).
    pub resource_version: u64,
}

/// Settings of the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Changes within this period are applied in one sync (kube-proxy's
    /// `--config-sync-period`'s partner `minSyncPeriod`).
    pub min_sync_period: Duration,
    /// How long a failed sync waits before it is retried.
    pub retry_period: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            min_sync_period: Duration::from_millis(50),
            retry_period: Duration::from_secs(1),
        }
    }
}

/// Counters of the syncs so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncStats {
    /// Syncs applied.
    pub syncs: u64,
    /// Syncs that failed.
    pub failures: u64,
    /// Duration of the last applied sync.
    pub last_duration: Duration,
    /// Rules of the last applied sync.
    pub last_rules: usize,
}

/// The proxy of one node.
pub struct Proxy {
    client: Client,
    node: String,
    dataplane: Arc<dyn Dataplane>,
    config: ProxyConfig,
    applied: watch::Sender<Applied>,
    stats: Arc<Mutex<SyncStats>>,
}

/// The state one sync works from and leaves behind.
#[derive(Default)]
struct Synced {
    ruleset: Option<rules::Ruleset>,
    owned: (BTreeSet<String>, BTreeSet<String>),
    broken: bool,
}

impl Proxy {
    /// A proxy for `node` programming `dataplane`.
    pub fn new(
        client: Client,
        node: &str,
        dataplane: Arc<dyn Dataplane>,
        config: ProxyConfig,
    ) -> Proxy {
        Proxy {
            client,
            node: node.to_string(),
            dataplane,
            config,
            applied: watch::channel(Applied::default()).0,
            stats: Arc::default(),
        }
    }

    /// What the last applied sync programmed.
    pub fn applied(&self) -> watch::Receiver<Applied> {
        self.applied.subscribe()
    }

    /// The sync counters.
    pub fn stats(&self) -> Arc<Mutex<SyncStats>> {
        self.stats.clone()
    }

    /// Runs until `stop`, then removes the table.
    pub async fn run(self, stop: CancellationToken) {
        let changed = Arc::new(Notify::new());
        let (services, sw) = reflector::store::<Service>();
        let (slices, lw) = reflector::store::<EndpointSlice>();
        let (nodes, nw) = reflector::store::<Node>();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(follow(
            Api::all(self.client.clone()),
            watcher::Config::default(),
            sw,
            changed.clone(),
        ));
        tasks.spawn(follow(
            Api::all(self.client.clone()),
            watcher::Config::default(),
            lw,
            changed.clone(),
        ));
        let own = watcher::Config::default().fields(&format!("metadata.name={}", self.node));
        tasks.spawn(follow(
            Api::all(self.client.clone()),
            own,
            nw,
            changed.clone(),
        ));
        let ready = async {
            let _ = services.wait_until_ready().await;
            let _ = slices.wait_until_ready().await;
            let _ = nodes.wait_until_ready().await;
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ready => {}
        }
        let mut synced = Synced::default();
        loop {
            let ok = self.sync(&services, &slices, &nodes, &mut synced).await;
            let wait = async {
                if ok {
                    changed.notified().await;
                    tokio::time::sleep(self.config.min_sync_period).await;
                } else {
                    tokio::time::sleep(self.config.retry_period).await;
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = wait => {}
            }
        }
        tasks.shutdown().await;
        if let Err(e) = self.dataplane.apply(&rules::render_delete()).await {
            tracing::warn!(error = %e, "cannot remove the service proxy's table");
        }
    }

    /// One sync; false if it failed.
    async fn sync(
        &self,
        services: &Store<Service>,
        slices: &Store<EndpointSlice>,
        nodes: &Store<Node>,
        synced: &mut Synced,
    ) -> bool {
        let started = tokio::time::Instant::now();
        let svc_state = services.state();
        let slice_state = slices.state();
        let local_cidr = nodes
            .state()
            .first()
            .and_then(|n| n.spec.as_ref()?.pod_cidr.clone());
        let svcs: Vec<&Service> = svc_state.iter().map(|s| s.as_ref()).collect();
        let sls: Vec<&EndpointSlice> = slice_state.iter().map(|s| s.as_ref()).collect();
        let ruleset = rules::build(&svcs, &sls, &self.node, local_cidr);
        if synced.ruleset.as_ref() != Some(&ruleset) {
            let delta = match &synced.ruleset {
                Some(old) if !synced.broken => rules::render_delta(&ruleset, old),
                _ => None,
            };
            let script = match delta {
                Some(script) => script,
                None => {
                    let mut script = String::new();
                    if synced.broken {
                        // After a failure the table may be anything: start over.
                        script.push_str(&rules::render_delete());
                        synced.owned = Default::default();
                    }
                    script.push_str(&rules::render(&ruleset, &synced.owned));
                    script
                }
            };
            if let Err(e) = self.dataplane.apply(&script).await {
                synced.broken = true;
                let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                st.failures += 1;
                tracing::warn!(error = %e, failures = st.failures, "service proxy sync failed");
                return false;
            }
            synced.broken = false;
            synced.owned = rules::owned_objects(&ruleset);
            let elapsed = started.elapsed();
            let rule_count = ruleset.rule_count();
            {
                let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                st.syncs += 1;
                st.last_duration = elapsed;
                st.last_rules = rule_count;
                tracing::info!(
                    sync = st.syncs,
                    duration_ms = elapsed.as_secs_f64() * 1000.0,
                    rules = rule_count,
                    services = ruleset.services.len(),
                    "service proxy rules applied"
                );
            }
            synced.ruleset = Some(ruleset);
        }
        // Applied: what this node now programs.
        let applied = Applied {
            slices: slice_state
                .iter()
                .filter_map(|s| Some((s.metadata.uid.clone()?, s.metadata.generation.unwrap_or(0))))
                .collect(),
            resource_version: slice_state
                .iter()
                .filter_map(|s| s.metadata.resource_version.as_deref()?.parse().ok())
                .max()
                .unwrap_or(0),
        };
        self.applied.send_if_modified(|cur| {
            let modified = *cur != applied;
            *cur = applied;
            modified
        });
        true
    }
}

/// Keeps `writer`'s cache of `api` and notifies `changed` on every event.
async fn follow<K: Cached>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
) {
    let notify = |_| changed.notify_one();
    reflect(api, config, writer, "service proxy", Level::DEBUG, notify).await
}
