//! The conformance suite and durability tests against the embedded redb backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use podvisor_store::conformance::Backend;
use podvisor_store::redb_store::{RedbOptions, RedbStore};
use podvisor_store::{Store, WatchConfig};

struct Redb {
    dir: tempfile::TempDir,
    files: AtomicUsize,
}

impl Redb {
    fn new() -> Redb {
        Redb {
            dir: tempfile::tempdir().expect("temp dir"),
            files: AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Backend for Redb {
    async fn open(&self, config: WatchConfig) -> Arc<dyn Store> {
        let n = self.files.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("store-{n}.redb"));
        let options = RedbOptions {
            watch: config,
            retain_revisions: None,
            ..RedbOptions::default()
        };
        Arc::new(RedbStore::open_with(path, options).expect("open redb store"))
    }
}

podvisor_store::conformance_tests!(Redb::new());
