//! The conformance suite against a real etcd server (feature `etcd`). Each test starts its own
//! `etcd` on free 127.0.0.1 ports; a missing `etcd` binary fails the tests.
#![cfg(feature = "etcd")]

mod support;

use std::sync::Arc;

use podvisor_store::conformance::Backend;
use podvisor_store::etcd::EtcdStore;
use podvisor_store::{Store, WatchConfig};
use support::etcd_server::EtcdServer;

/// One etcd server per test; stores share it only sequentially, each under its own prefix.
struct Etcd {
    server: tokio::sync::OnceCell<EtcdServer>,
    stores: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Backend for Etcd {
    async fn open(&self, config: WatchConfig) -> Arc<dyn Store> {
        let server = self.server.get_or_init(EtcdServer::start).await;
        let n = self
            .stores
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(n, 0, "the conformance checks expect a fresh etcd per store");
        let store = EtcdStore::connect_with(
            std::slice::from_ref(&server.endpoint),
            "/podvisor-test",
            config,
        )
        .await
        .expect("connect to etcd");
        Arc::new(store)
    }
}

fn etcd() -> Etcd {
    Etcd {
        server: tokio::sync::OnceCell::new(),
        stores: std::sync::atomic::AtomicUsize::new(0),
    }
}

podvisor_store::conformance_tests!(etcd());
