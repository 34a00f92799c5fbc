//! The conformance suite against the in-memory backend.

use std::sync::Arc;

use podvisor_store::conformance::Backend;
use podvisor_store::memory::MemoryStore;
use podvisor_store::{Store, WatchConfig};

struct Memory;

#[async_trait::async_trait]
impl Backend for Memory {
    async fn open(&self, config: WatchConfig) -> Arc<dyn Store> {
        Arc::new(MemoryStore::with_watch_config(config))
    }
}

podvisor_store::conformance_tests!(Memory);
