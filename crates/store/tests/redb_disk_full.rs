//! Disk-full test of the redb backend: writes fail with an error that names the cause while
//! the disk is full, reads keep working, [`Store::health`] reports it, and writes work
//! again once space is freed, with no acknowledged write lost and no gap in the history.
//!
//! The parent re-runs this binary inside a private mount namespace (`unshare -m`), where the
//! child mounts a small tmpfs it then fills; nothing outside the test is touched.

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use podvisor_store::redb_store::{RedbOptions, RedbStore};
use podvisor_store::{Store, StoreError, WatchEvent};

const CHILD_ENV: &str = "PODVISOR_STORE_DISK_FULL_CHILD";
/// The tmpfs: small, so filling it is quick.
const TMPFS_BYTES: u64 = 24 * 1024 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("redb_disk_full: test");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty()
        && !filters
            .iter()
            .any(|f| "redb_disk_full".contains(f.as_str()))
    {
        println!("running 0 tests (filtered out: redb_disk_full)");
        return;
    }
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(child(dir.into()));
        println!("child ok");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(&exe)
        .env(CHILD_ENV, dir.path())
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("child ok"),
        "disk-full child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    print!("{stdout}");
    println!("test redb_disk_full ... ok");
}

/// Every acknowledged write `(key, value, revision)` is in `store` as written.
async fn assert_all_there(store: &RedbStore, acked: &[(String, Vec<u8>, i64)]) {
    for (key, v, rev) in acked {
        let got = store
            .get(key)
            .await
            .expect("get")
            .expect("acknowledged key");
        assert_eq!((&got.value, got.mod_revision), (v, *rev), "{key}");
    }
}

fn options() -> RedbOptions {
    RedbOptions {
        retain_revisions: None,
        cache_bytes: 4 * 1024 * 1024,
        wal_bytes: 2 * 1024 * 1024,
        ..RedbOptions::default()
    }
}

/// Fills the filesystem with `file` until it is full.
fn fill(file: &std::path::Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(file).expect("filler");
    let chunk = vec![0x5au8; 64 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // Byte by byte, so not even a small page is left.
    while f.write_all(&[0]).is_ok() {}
    let _ = f.sync_all();
}

async fn child(dir: std::path::PathBuf) {
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={TMPFS_BYTES}"))
        .arg("podvisor-disk-full")
        .arg(&mnt)
        .status()
        .expect("mount");
    assert!(mounted.success(), "cannot mount a tmpfs (needs root)");
    let path = mnt.join("s.redb");
    let store = RedbStore::open_with(&path, options()).expect("open");
    let mut acked: Vec<(String, Vec<u8>, i64)> = Vec::new();
    let value = |i: usize| vec![b'a' + (i % 26) as u8; 48 * 1024];
    for i in 0..20 {
        let key = format!("/k/{i}");
        let kv = store.create(&key, value(i)).await.expect("create");
        acked.push((key, value(i), kv.mod_revision));
    }
    store.health().await.expect("healthy before");

    // Fill the disk, then write until the store needs space it cannot get.
    let filler = mnt.join("filler");
    fill(&filler);
    let mut failure = None;
    for i in 20..2000 {
        let key = format!("/k/{i}");
        match store.create(&key, value(i)).await {
            Ok(kv) => acked.push((key, value(i), kv.mod_revision)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a full disk never failed a write");
    let StoreError::Unavailable { message } = &failure else {
        panic!("unexpected error on a full disk: {failure:?}");
    };
    assert!(
        message.contains("no space left") && message.contains("s.redb"),
        "the error does not name the cause: {message}"
    );
    // While it lasts: writes keep failing with the cause, health says so, reads work.
    let again = store.create("/k/while-full", value(0)).await.unwrap_err();
    assert!(again.to_string().contains("no space left"), "{again}");
    let health = store.health().await.unwrap_err();
    assert!(health.to_string().contains("no space left"), "{health}");
    let (k0, v0, _) = &acked[0];
    assert_eq!(
        &store
            .get(k0)
            .await
            .expect("read while full")
            .expect("k0")
            .value,
        v0
    );

    // Space returns: writes work again without a restart.
    std::fs::remove_file(&filler).expect("free space");
    let mut recovered = None;
    for attempt in 0..100 {
        match store.create("/k/after", b"after".to_vec()).await {
            Ok(kv) => {
                recovered = Some(kv);
                break;
            }
            Err(e) => {
                assert!(attempt < 99, "writes never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let kv = recovered.expect("recovered");
    acked.push(("/k/after".into(), b"after".to_vec(), kv.mod_revision));
    store.health().await.expect("healthy after space returned");
    let last_before = acked[acked.len() - 2].2;
    assert_eq!(
        kv.mod_revision,
        last_before + 1,
        "a revision was skipped or reused"
    );

    // Every acknowledged write is there, in a history without gaps, also after a reopen.
    assert_all_there(&store, &acked).await;
    drop(store);
    let store = RedbStore::open_with(&path, options()).expect("reopen");
    let mut watch = store.watch("/k/", 2).await.expect("watch");
    let mut next = 2;
    while next <= kv.mod_revision {
        match watch.next().await.expect("event").expect("ok") {
            WatchEvent::Put { kv: e, .. } => {
                assert_eq!(e.mod_revision, next, "history gap");
                next += 1;
            }
            WatchEvent::Progress(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_all_there(&store, &acked).await;
    println!(
        "disk full after {} writes; recovered at revision {}",
        acked.len() - 1,
        kv.mod_revision
    );
}
