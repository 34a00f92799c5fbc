//! The conformance suite and durability tests against the embedded redb backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use podvisor_store::conformance::Backend;
use podvisor_store::redb_store::{RedbOptions, RedbStore};
use std::time::Duration;

use futures::StreamExt;
use podvisor_store::{ListOptions, Store, StoreError, WatchConfig, WatchEvent};

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

fn options() -> RedbOptions {
    RedbOptions {
        retain_revisions: None,
        ..RedbOptions::default()
    }
}

async fn collect(store: &RedbStore, prefix: &str, from: i64, until: i64) -> Vec<WatchEvent> {
    let mut w = store.watch(prefix, from).await.unwrap();
    let mut out = Vec::new();
    while out.last().map(WatchEvent::revision).unwrap_or(0) < until {
        match tokio::time::timeout(Duration::from_secs(20), w.next()).await {
            Ok(Some(Ok(WatchEvent::Progress(_)))) => {}
            Ok(Some(Ok(ev))) => out.push(ev),
            other => panic!("watch failed: {other:?}"),
        }
    }
    out
}

/// List options at revision `rev`.
fn at(rev: i64) -> ListOptions {
    ListOptions {
        revision: Some(rev),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_revisions_and_compaction_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let (events, snapshot_at_4, last) = {
        let store = RedbStore::open_with(&path, options()).unwrap();
        let a = store.create("/p/a", b"1".to_vec()).await.unwrap();
        store.create("/p/b", b"2".to_vec()).await.unwrap();
        store
            .update("/p/a", b"3".to_vec(), a.mod_revision)
            .await
            .unwrap();
        store.delete("/p/b", None).await.unwrap();
        let last = store
            .create("/p/c", b"4".to_vec())
            .await
            .unwrap()
            .mod_revision;
        let snap = store.list("/p/", at(4)).await.unwrap();
        (collect(&store, "/p/", 1, last).await, snap, last)
    };
    let store = RedbStore::open_with(&path, options()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), last);
    // Watch from the start is served from disk after a reopen, with previous values.
    assert_eq!(collect(&store, "/p/", 1, last).await, events);
    let again = store.list("/p/", at(4)).await.unwrap();
    assert_eq!(again, snapshot_at_4);
    // New writes continue the revision sequence.
    let d = store.create("/p/d", vec![]).await.unwrap();
    assert_eq!(d.mod_revision, last + 1);
    store.compact(5).await.unwrap();
    drop(store);

    let store = RedbStore::open_with(&path, options()).unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), 5);
    let below = store.list("/p/", at(4)).await;
    assert!(matches!(
        below,
        Err(StoreError::Compacted {
            requested: 4,
            compacted: 5
        })
    ));
    // The delete at revision 5 (the compaction point) is still in the history.
    let tail = collect(&store, "/p/", 5, last + 1).await;
    assert_eq!(
        tail,
        events[3..]
            .iter()
            .cloned()
            .chain([WatchEvent::Put { kv: d, prev: None }])
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_with(dir.path().join("g.redb"), options()).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..64 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..20 {
                store
                    .create(&format!("/g/{w}/{i}"), vec![0; 100])
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.requests, 64 * 20);
    assert_eq!(store.current_revision().await.unwrap(), 1 + 64 * 20);
    assert!(
        stats.transactions * 4 <= stats.requests,
        "group commit did not batch: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_keeps_the_configured_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_with(
        dir.path().join("c.redb"),
        RedbOptions {
            retain_revisions: Some(50),
            ..RedbOptions::default()
        },
    )
    .unwrap();
    let mut kv = store.create("/k", b"0".to_vec()).await.unwrap();
    for i in 1..300 {
        kv = store
            .update("/k", format!("{i}").into_bytes(), kv.mod_revision)
            .await
            .unwrap();
    }
    let current = store.current_revision().await.unwrap();
    let compacted = store.compacted_revision().await.unwrap();
    assert!(compacted > 1, "no automatic compaction");
    assert!(
        current - compacted >= 50,
        "compacted into the window: {compacted} of {current}"
    );
    assert!(
        current - compacted <= 50 + 50 / 8 + 1,
        "window too large: {compacted} of {current}"
    );
    // The window is readable; below it is Compacted.
    let at = store.list("", at(compacted)).await.unwrap();
    assert_eq!(at.items.len(), 1);
    assert_eq!(at.items[0].mod_revision, compacted);
    assert!(store.watch("/", compacted - 1).await.is_err());
    assert_eq!(
        collect(&store, "/", compacted, current).await.len() as i64,
        current - compacted + 1
    );
}

fn assert_corrupt(path: &std::path::Path, result: Result<RedbStore, StoreError>) {
    match result {
        Err(StoreError::Corrupt { path: p, message }) => {
            assert_eq!(p, path.display().to_string());
            assert!(!message.is_empty());
            let shown = StoreError::Corrupt { path: p, message }.to_string();
            assert!(shown.contains(&path.display().to_string()), "{shown}");
        }
        other => panic!("expected Corrupt for {}, got {other:?}", path.display()),
    }
}

#[test]
fn a_foreign_or_damaged_file_is_refused_as_corrupt_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // Not a redb file at all.
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        b"these are not the bytes you are looking for\n".repeat(200),
    )
    .unwrap();
    assert_corrupt(&text, RedbStore::open(&text));
    // A redb database of somebody else.
    let other = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&other).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("theirs");
            let mut t = txn.open_table(def).unwrap();
            t.insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    assert_corrupt(&other, RedbStore::open(&other));
    // A podvisor store with damaged bytes: refused or opened, never a panic; when refused, as
    // Corrupt naming the file.
    let good = dir.path().join("good.redb");
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = RedbStore::open(&good).unwrap();
            for i in 0..200 {
                store
                    .create(&format!("/k/{i}"), vec![i as u8; 300])
                    .await
                    .unwrap();
            }
        });
    }
    let len = std::fs::metadata(&good).unwrap().len() as usize;
    let original = std::fs::read(&good).unwrap();
    for (n, at) in [0usize, 64, 512, 4096, 8192, len / 2, len - 100]
        .into_iter()
        .enumerate()
    {
        let mut bytes = original.clone();
        for b in bytes.iter_mut().skip(at).take(64) {
            *b ^= 0x5a;
        }
        let damaged = dir.path().join(format!("damaged-{n}.redb"));
        std::fs::write(&damaged, &bytes).unwrap();
        if let Err(err) = RedbStore::open(&damaged) {
            assert_corrupt(&damaged, Err(err));
        }
    }
    // Truncated files too.
    for (n, keep) in [10usize, 600, len / 3].into_iter().enumerate() {
        let cut = dir.path().join(format!("cut-{n}.redb"));
        std::fs::write(&cut, &original[..keep]).unwrap();
        if let Err(err) = RedbStore::open(&cut) {
            assert_corrupt(&cut, Err(err));
        }
    }
    // A missing directory is not corruption.
    let missing = dir.path().join("no/such/dir/s.redb");
    assert!(matches!(
        RedbStore::open(&missing),
        Err(StoreError::Unavailable { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_the_same_file_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let first = RedbStore::open(&path).unwrap();
    assert!(matches!(
        RedbStore::open(&path),
        Err(StoreError::Unavailable { .. })
    ));
    drop(first);
    RedbStore::open(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_write_ahead_log_capacity_checkpoint_and_reopen_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.redb");
    let value: Vec<u8> = (0..podvisor_store::MAX_VALUE_BYTES)
        .map(|i| (i % 253) as u8)
        .collect();
    // 8 values of 1.5 MiB: more than a 4 MiB log, so some batches are checkpoints.
    let small_log = RedbOptions {
        wal_bytes: 4 * 1024 * 1024,
        ..options()
    };
    let mut last = 0;
    {
        let store = RedbStore::open_with(&path, small_log.clone()).unwrap();
        for i in 0..8 {
            last = store
                .create(&format!("/big/{i:02}"), value.clone())
                .await
                .unwrap()
                .mod_revision;
        }
        assert_eq!(store.stats().transactions, 8);
    }
    let store = RedbStore::open_with(&path, small_log).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), last);
    assert_eq!(store.count("/big/").await.unwrap(), 8);
    let page = store
        .list(
            "/big/",
            ListOptions {
                limit: 2,
                continue_after: Some("/big/05".into()),
                revision: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.items.iter().all(|kv| kv.value == value));
}

/// The store file and its write-ahead log hold every Secret: only their owner may read them,
/// whatever the umask, and files left readable by an older version are tightened on open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let wal = dir.path().join("s.redb.wal");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let store = RedbStore::open_with(&path, options()).unwrap();
    store.create("/k", b"v".to_vec()).await.unwrap();
    assert_eq!((mode(&path), mode(&wal)), (0o600, 0o600));
    drop(store);
    for p in [&path, &wal] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let store = RedbStore::open_with(&path, options()).unwrap();
    assert_eq!((mode(&path), mode(&wal)), (0o600, 0o600));
    assert_eq!(store.get("/k").await.unwrap().unwrap().value, b"v");
}
