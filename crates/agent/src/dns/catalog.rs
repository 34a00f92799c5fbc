//! The DNS server's view of the cluster: reflectors of Services, EndpointSlices and
//! Namespaces, and the [`Zone`] snapshot rebuilt from them.
//!
//! A change marks the snapshot stale; the rebuild runs at most once per
//! [`REBUILD_INTERVAL`] (a burst of slice updates during a rollout costs one rebuild), so a
//! name follows its objects within that interval plus the watch delay. Queries read the
//! current snapshot (an `Arc` clone under a short lock) and never wait for a rebuild. Until
//! Services and EndpointSlices are listed once the zone is not [`ZoneView::synced`] and
//! names in it get SERVFAIL (as CoreDNS before its first sync). Namespaces are optional:
//! while they cannot be listed, every namespace counts as existing.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use podvisor_kit::reflect::Cached;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::records::Zone;
use crate::clock::WallClock;

/// The least time between two rebuilds of the zone.
pub const REBUILD_INTERVAL: Duration = Duration::from_millis(50);

/// The current zone, shared by the watcher and the query handler.
#[derive(Clone, Default)]
pub struct ZoneView {
    inner: Arc<RwLock<(Arc<Zone>, bool)>>,
}

impl ZoneView {
    /// A view of a fixed zone (tests, benchmarks), synced.
    pub fn fixed(zone: Zone) -> ZoneView {
        ZoneView {
            inner: Arc::new(RwLock::new((Arc::new(zone), true))),
        }
    }

    /// The current snapshot.
    pub fn zone(&self) -> Arc<Zone> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Whether Services and EndpointSlices were listed at least once.
    pub fn synced(&self) -> bool {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).1
    }

    fn set(&self, zone: Zone, synced: bool) {
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(zone), synced);
    }
}

/// The SOA serial: seconds since the epoch at the rebuild (CoreDNS: the last change).
fn serial(clock: &WallClock) -> u32 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

async fn reflect<K: Cached>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
) {
    let notify = |_| changed.notify_one();
    let config = watcher::Config::default();
    podvisor_kit::reflect::reflect(api, config, writer, "dns", tracing::Level::DEBUG, notify).await
}

/// Follows Services, EndpointSlices and Namespaces through `client` and keeps `view` current
/// until `stop`; `dns_ips` are the kube-dns Service's addresses (`ns.dns.<zone>`).
pub async fn run(
    client: Client,
    view: ZoneView,
    dns_ips: Vec<IpAddr>,
    clock: WallClock,
    stop: CancellationToken,
) {
    let (services, services_w) = reflector::store::<Service>();
    let (slices, slices_w) = reflector::store::<EndpointSlice>();
    let (namespaces, namespaces_w) = reflector::store::<Namespace>();
    let changed = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(reflect(
        Api::all(client.clone()),
        services_w,
        changed.clone(),
    ));
    tasks.spawn(reflect(Api::all(client.clone()), slices_w, changed.clone()));
    tasks.spawn(reflect(Api::all(client), namespaces_w, changed.clone()));
    let rebuild = async {
        loop {
            changed.notified().await;
            let synced = ready(&services) && ready(&slices);
            let ns = ready(&namespaces).then(|| namespaces.state());
            let zone = Zone::build(
                &services.state(),
                &slices.state(),
                ns.as_deref(),
                serial(&clock),
                dns_ips.clone(),
            );
            view.set(zone, synced);
            tokio::time::sleep(REBUILD_INTERVAL).await;
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = rebuild => {}
    }
    tasks.shutdown().await;
}

fn ready<K: kube::Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>) -> bool {
    use futures::FutureExt;
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}
