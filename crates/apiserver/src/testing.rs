//! Helpers for other crates' tests.

use std::sync::Arc;

use crate::server::{ApiServer, ApiServerConfig};

/// An API server on a fresh memory store with a temporary data dir (removed when the last
/// clone of the server is dropped).
pub async fn memory_server() -> ApiServer {
    let dir = tempfile::tempdir().expect("temporary data dir");
    let config = ApiServerConfig::new(dir.path());
    let store = Arc::new(podvisor_store::memory::MemoryStore::new());
    ApiServer::build(store, config, Some(dir))
        .await
        .expect("memory api server")
}
