//! The conformance suite every [`Store`] backend must pass.
//!
//! Each `check_*` function opens fresh stores from a [`Backend`] and panics (like a test
//! assertion) when the store breaks the contract described in the crate documentation.
//! [`conformance_tests!`](crate::conformance_tests) turns every check into a `#[tokio::test]`,
//! so a backend's test file is one line:
//!
//! ```text
//! podvisor_store::conformance_tests!(MyBackend::new());
//! ```
//!
//! The checks use only the public [`Store`] trait and real time (bounded by generous
//! timeouts), so they run unchanged against an external etcd server.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;

use crate::{
    KeyValue, ListOptions, MAX_VALUE_BYTES, Revision, Store, StoreError, WatchConfig, WatchEvent,
    WatchStream,
};

/// Opens fresh, empty stores of one backend for the checks.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Opens a fresh, empty store (revision 1, nothing compacted) tuned with `config`.
    async fn open(&self, config: WatchConfig) -> Arc<dyn Store>;
}

/// How long a check waits for something that should happen promptly.
const PATIENCE: Duration = Duration::from_secs(20);

fn config() -> WatchConfig {
    WatchConfig {
        progress_interval: Duration::from_millis(200),
        watch_buffer: 1024,
    }
}

async fn open(backend: &dyn Backend) -> Arc<dyn Store> {
    backend.open(config()).await
}

/// Waits for the next non-progress watch item.
async fn next_event(stream: &mut WatchStream) -> Result<WatchEvent, StoreError> {
    loop {
        match tokio::time::timeout(PATIENCE, stream.next()).await {
            Err(_) => panic!("no watch event within {PATIENCE:?}"),
            Ok(None) => panic!("watch stream ended without an error"),
            Ok(Some(Ok(WatchEvent::Progress(_)))) => continue,
            Ok(Some(other)) => return other,
        }
    }
}

/// Collects watch events until one with revision `>= until` arrives.
async fn collect_until(stream: &mut WatchStream, until: Revision) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    loop {
        let ev = next_event(stream).await.expect("watch failed");
        let rev = ev.revision();
        out.push(ev);
        if rev >= until {
            return out;
        }
    }
}

/// A write made by a check, and the event a watcher must see for it.
fn put_event(kv: &KeyValue, prev: Option<&KeyValue>) -> WatchEvent {
    WatchEvent::Put {
        kv: kv.clone(),
        prev: prev.cloned(),
    }
}

/// Revisions: the store starts at 1 (nothing compacted), every successful write adds exactly
/// one, failed writes consume none, create/mod revisions are kept as etcd keeps them.
pub async fn check_revisions(backend: &dyn Backend) {
    let store = open(backend).await;
    assert_eq!(store.current_revision().await.unwrap(), 1);
    assert!(store.compacted_revision().await.unwrap() <= 1);

    let a = store.create("/r/a", b"1".to_vec()).await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision), (2, 2));
    assert_eq!(a.value, b"1");
    assert_eq!(store.current_revision().await.unwrap(), 2);

    // Failed writes consume no revision.
    let err = store.create("/r/a", b"2".to_vec()).await.unwrap_err();
    assert_eq!(err, StoreError::AlreadyExists { key: "/r/a".into() });
    assert!(
        store
            .update("/r/a", b"2".to_vec(), 1)
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert!(matches!(
        store.update("/r/missing", b"2".to_vec(), 2).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("/r/missing", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .delete("/r/a", Some(7))
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert_eq!(store.current_revision().await.unwrap(), 2);

    let b = store.create("/r/b", b"b".to_vec()).await.unwrap();
    assert_eq!((b.create_revision, b.mod_revision), (3, 3));
    let a2 = store.update("/r/a", b"2".to_vec(), 2).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision), (2, 4));
    assert_eq!(store.get("/r/a").await.unwrap(), Some(a2.clone()));

    let (prev, rev) = store.delete("/r/a", None).await.unwrap();
    assert_eq!(prev, a2);
    assert_eq!(rev, 5);
    assert_eq!(store.get("/r/a").await.unwrap(), None);
    assert_eq!(store.current_revision().await.unwrap(), 5);

    // Recreating a key starts a new life: new create_revision.
    let a3 = store.create("/r/a", b"3".to_vec()).await.unwrap();
    assert_eq!((a3.create_revision, a3.mod_revision), (6, 6));
    // An empty value is a value.
    let e = store.create("/r/empty", Vec::new()).await.unwrap();
    assert_eq!(store.get("/r/empty").await.unwrap(), Some(e));
    assert_eq!(store.current_revision().await.unwrap(), 7);
}

/// Compare-and-swap: update and delete succeed only at the expected mod_revision, and a
/// conflict carries the current value.
pub async fn check_cas(backend: &dyn Backend) {
    let store = open(backend).await;
    let v1 = store.create("/cas/k", b"v1".to_vec()).await.unwrap();
    let v2 = store
        .update("/cas/k", b"v2".to_vec(), v1.mod_revision)
        .await
        .unwrap();

    // A stale update fails and reports the current value.
    match store
        .update("/cas/k", b"stale".to_vec(), v1.mod_revision)
        .await
    {
        Err(StoreError::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!(key, "/cas/k");
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(current.as_deref(), Some(&v2));
        }
        other => panic!("stale update gave {other:?}"),
    }
    // A stale delete fails too, and changes nothing.
    match store.delete("/cas/k", Some(v1.mod_revision)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current.as_deref(), Some(&v2)),
        other => panic!("stale delete gave {other:?}"),
    }
    assert_eq!(store.get("/cas/k").await.unwrap(), Some(v2.clone()));

    let (prev, _) = store.delete("/cas/k", Some(v2.mod_revision)).await.unwrap();
    assert_eq!(prev, v2);
    // Updating a deleted key is NotFound, even with its last revision.
    assert!(matches!(
        store.update("/cas/k", b"x".to_vec(), v2.mod_revision).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("/cas/k", Some(v2.mod_revision)).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// A model of the store: the state after every revision.
#[derive(Default)]
struct Model {
    snapshots: BTreeMap<Revision, BTreeMap<String, KeyValue>>,
    events: Vec<WatchEvent>,
}

impl Model {
    fn state_at(&self, rev: Revision) -> Vec<KeyValue> {
        self.snapshots
            .range(..=rev)
            .next_back()
            .map(|(_, s)| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Makes a deterministic mix of creates, updates and deletes under `prefix`, recording the
/// state after every revision and the expected watch events.
async fn churn(store: &dyn Store, prefix: &str, writes: usize, model: &mut Model) {
    let mut state: BTreeMap<String, KeyValue> = model
        .snapshots
        .values()
        .next_back()
        .cloned()
        .unwrap_or_default();
    let start = store.current_revision().await.unwrap();
    model
        .snapshots
        .entry(start)
        .or_insert_with(|| state.clone());
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ writes as u64;
    for i in 0..writes {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = format!("{prefix}{:02}", (seed >> 33) % 12);
        let value = format!("value-{i}").into_bytes();
        let ev = match state.get(&key).cloned() {
            None => {
                let kv = store.create(&key, value).await.unwrap();
                state.insert(key, kv.clone());
                put_event(&kv, None)
            }
            Some(cur) if (seed >> 20).is_multiple_of(4) => {
                let (prev, rev) = store.delete(&key, Some(cur.mod_revision)).await.unwrap();
                assert_eq!(prev, cur);
                state.remove(&key);
                WatchEvent::Delete {
                    prev,
                    revision: rev,
                }
            }
            Some(cur) => {
                let kv = store.update(&key, value, cur.mod_revision).await.unwrap();
                state.insert(key, kv.clone());
                put_event(&kv, Some(&cur))
            }
        };
        model.snapshots.insert(ev.revision(), state.clone());
        model.events.push(ev);
    }
}

/// List options that read at `rev`.
fn at_revision(rev: Revision) -> ListOptions {
    ListOptions {
        revision: Some(rev),
        ..Default::default()
    }
}

/// List options for a page of at most `limit` keys after `after`, read at `rev`.
fn page_at(rev: Revision, limit: usize, after: Option<String>) -> ListOptions {
    ListOptions {
        revision: Some(rev),
        limit,
        continue_after: after,
    }
}

/// List at the current and at every past revision returns exactly the state of that revision;
/// a future revision is refused.
pub async fn check_list_at_revision(backend: &dyn Backend) {
    let store = open(backend).await;
    let mut model = Model::default();
    churn(&*store, "/list/", 60, &mut model).await;
    let current = store.current_revision().await.unwrap();
    for rev in 1..=current {
        let page = store.list("/list/", at_revision(rev)).await.unwrap();
        assert_eq!(page.revision, rev);
        assert!(!page.more);
        assert_eq!(page.items, model.state_at(rev), "list at revision {rev}");
    }
    let now = store.list("/list/", ListOptions::default()).await.unwrap();
    assert_eq!(now.revision, current);
    assert_eq!(now.items, model.state_at(current));
    assert_eq!(store.count("/list/").await.unwrap(), now.items.len() as i64);
    match store.list("/list/", at_revision(current + 1)).await {
        Err(StoreError::FutureRevision { requested, .. }) => assert_eq!(requested, current + 1),
        other => panic!("list at a future revision gave {other:?}"),
    }
}

/// Paging with limit and continue at a pinned revision reads one consistent snapshot, even
/// while writes go on.
pub async fn check_pagination(backend: &dyn Backend) {
    let store = open(backend).await;
    let mut all = Vec::new();
    for i in 0..25 {
        all.push(
            store
                .create(&format!("/page/{i:03}"), format!("{i}").into_bytes())
                .await
                .unwrap(),
        );
    }
    store.create("/pagf", b"outside".to_vec()).await.unwrap();
    store.create("/pag", b"outside".to_vec()).await.unwrap();
    let first = store
        .list(
            "/page/",
            ListOptions {
                limit: 7,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items, all[..7].to_vec());
    assert!(first.more);
    if let Some(remaining) = first.remaining {
        assert_eq!(remaining, 18);
    }
    let pinned = first.revision;

    // Writes between pages must not show in later pages read at the pinned revision.
    store.delete("/page/010", None).await.unwrap();
    store.create("/page/0105", b"new".to_vec()).await.unwrap();
    store
        .update("/page/020", b"changed".to_vec(), all[20].mod_revision)
        .await
        .unwrap();

    let mut got = first.items.clone();
    let mut last = first;
    while last.more {
        let after = last.items.last().map(|kv| kv.key.clone());
        last = store
            .list("/page/", page_at(pinned, 7, after))
            .await
            .unwrap();
        assert_eq!(last.revision, pinned);
        assert!(last.items.len() <= 7);
        got.extend(last.items.iter().cloned());
    }
    assert_eq!(got, all);

    // A limit equal to the number of keys reports no more.
    let exact = store
        .list("/page/", page_at(pinned, 25, None))
        .await
        .unwrap();
    assert_eq!(exact.items.len(), 25);
    assert!(!exact.more);
    // Continue after the last key: an empty page.
    let empty = store
        .list("/page/", page_at(pinned, 5, Some("/page/024".into())))
        .await
        .unwrap();
    assert!(empty.items.is_empty() && !empty.more);
    // The current state sees the writes.
    let now = store.list("/page/", ListOptions::default()).await.unwrap();
    assert_eq!(now.items.len(), 25);
    assert!(now.items.iter().any(|kv| kv.key == "/page/0105"));
    assert!(!now.items.iter().any(|kv| kv.key == "/page/010"));
    assert_eq!(store.count("/page/").await.unwrap(), 25);
}

/// A watch from any retained revision delivers every later event under the prefix exactly
/// once, in order, with previous values; a watch resumed from the last seen revision + 1
/// continues without gap or duplicate; `from = 0` sees only new writes.
pub async fn check_watch_from_any_revision(backend: &dyn Backend) {
    let store = open(backend).await;
    let mut model = Model::default();
    churn(&*store, "/w/", 40, &mut model).await;
    let last = store.current_revision().await.unwrap();

    for from in 1..=last + 1 {
        let expected: Vec<WatchEvent> = model
            .events
            .iter()
            .filter(|e| e.revision() >= from)
            .cloned()
            .collect();
        let mut w = store.watch("/w/", from).await.unwrap();
        let got = if expected.is_empty() {
            Vec::new()
        } else {
            collect_until(&mut w, last).await
        };
        assert_eq!(got, expected, "watch from revision {from}");
    }

    // Resume after every few events, as a client does after a broken connection.
    let mut w = store.watch("/w/", 1).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < model.events.len() {
        let ev = next_event(&mut w).await.unwrap();
        let rev = ev.revision();
        seen.push(ev);
        if seen.len().is_multiple_of(3) {
            drop(w);
            w = store.watch("/w/", rev + 1).await.unwrap();
        }
    }
    assert_eq!(seen, model.events);

    // Live events after the history, on a watch opened in the past and one from now.
    let mut past = store.watch("/w/", last - 5).await.unwrap();
    let mut fresh = store.watch("/w/", 0).await.unwrap();
    let live = store.create("/w/live", b"x".to_vec()).await.unwrap();
    let tail = collect_until(&mut past, live.mod_revision).await;
    assert_eq!(tail.last(), Some(&put_event(&live, None)));
    assert_eq!(
        tail.len(),
        model
            .events
            .iter()
            .filter(|e| e.revision() >= last - 5)
            .count()
            + 1
    );
    assert_eq!(
        next_event(&mut fresh).await.unwrap(),
        put_event(&live, None)
    );

    // A watch on a future revision sees nothing older.
    let mut future = store.watch("/w/", live.mod_revision + 2).await.unwrap();
    let skipped = store
        .update("/w/live", b"y".to_vec(), live.mod_revision)
        .await
        .unwrap();
    let wanted = store
        .update("/w/live", b"z".to_vec(), skipped.mod_revision)
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut future).await.unwrap(),
        put_event(&wanted, Some(&skipped))
    );
}

/// The next item of `w`, which must come before `deadline` (else panics with `what`).
async fn next_before(
    w: &mut WatchStream,
    deadline: tokio::time::Instant,
    what: &str,
) -> Option<Result<WatchEvent, StoreError>> {
    tokio::time::timeout_at(deadline, w.next())
        .await
        .expect(what)
}

/// Progress notifications: an idle watch sends bookmarks, and a bookmark at R comes only after
/// every event up to R.
pub async fn check_watch_progress(backend: &dyn Backend) {
    let store = open(backend).await;
    let mut w = store.watch("/prog/", 0).await.unwrap();
    let before = store.current_revision().await.unwrap();
    // Writes elsewhere advance the bookmark of an idle watch.
    for i in 0..5 {
        store.create(&format!("/other/{i}"), vec![]).await.unwrap();
    }
    let target = before + 5;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match next_before(&mut w, deadline, "no progress notification in time").await {
            Some(Ok(WatchEvent::Progress(r))) if r >= target => break,
            Some(Ok(WatchEvent::Progress(r))) => assert!(r >= before, "bookmark went back: {r}"),
            other => panic!("unexpected watch item {other:?}"),
        }
    }
    // A bookmark never runs ahead of undelivered events.
    let mut last_event = 0;
    let mut expected = Vec::new();
    for i in 0..20 {
        let kv = store.create(&format!("/prog/{i}"), vec![1]).await.unwrap();
        expected.push(kv.mod_revision);
    }
    let end = *expected.last().unwrap_or(&0);
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match next_before(&mut w, deadline, "watch stalled").await {
            Some(Ok(WatchEvent::Progress(r))) => {
                assert!(r >= last_event, "bookmark {r} before event {last_event}");
                let undelivered: Vec<_> = expected
                    .iter()
                    .filter(|&&e| e <= r && !got.contains(&e))
                    .collect();
                assert!(
                    undelivered.is_empty(),
                    "bookmark {r} skipped {undelivered:?}"
                );
                if r >= end {
                    break;
                }
            }
            Some(Ok(ev)) => {
                last_event = ev.revision();
                got.push(last_event);
            }
            other => panic!("unexpected watch item {other:?}"),
        }
    }
    assert_eq!(got, expected);
}

/// Compaction: reads and watches below the compaction point fail with `Compacted`; at the
/// point they still work, including a delete made exactly at it.
pub async fn check_compaction(backend: &dyn Backend) {
    let store = open(backend).await;
    let mut model = Model::default();
    churn(&*store, "/c/", 30, &mut model).await;
    // A delete exactly at the compaction revision must survive in the watch history.
    let victim = store.create("/c/victim", b"v".to_vec()).await.unwrap();
    let (_, del_rev) = store.delete("/c/victim", None).await.unwrap();
    let after = store.create("/c/after", b"a".to_vec()).await.unwrap();
    store.compact(del_rev).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), del_rev);
    // Compacting again, or lower, is harmless.
    store.compact(del_rev).await.unwrap();
    store.compact(2).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), del_rev);
    let current = store.current_revision().await.unwrap();
    assert!(matches!(
        store.compact(current + 1).await,
        Err(StoreError::FutureRevision { .. })
    ));

    match store.list("/c/", at_revision(del_rev - 1)).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, del_rev - 1);
            assert_eq!(compacted, del_rev);
        }
        other => panic!("list below the compaction point gave {other:?}"),
    }
    let at = store.list("/c/", at_revision(del_rev)).await.unwrap();
    // The model knows the churn only; the victim was deleted at the compaction point.
    assert_eq!(at.items, model.state_at(del_rev));
    // Paging at the compaction point works.
    let page = store.list("/c/", page_at(del_rev, 2, None)).await.unwrap();
    assert_eq!(
        page.items,
        at.items.iter().take(2).cloned().collect::<Vec<_>>()
    );

    // A watch below the point fails (at once or as its first item).
    match store.watch("/c/", del_rev - 1).await {
        Err(err) => assert!(err.is_compacted(), "{err:?}"),
        Ok(mut w) => {
            let err = next_event(&mut w).await.unwrap_err();
            assert!(err.is_compacted(), "{err:?}");
        }
    }
    // A watch at the point sees the delete made at it, then what followed.
    let mut w = store.watch("/c/", del_rev).await.unwrap();
    assert_eq!(
        next_event(&mut w).await.unwrap(),
        WatchEvent::Delete {
            prev: victim,
            revision: del_rev
        }
    );
    assert_eq!(next_event(&mut w).await.unwrap(), put_event(&after, None));
    // Live data is intact.
    let now = store.list("/c/", ListOptions::default()).await.unwrap();
    assert_eq!(now.items.len() as i64, store.count("/c/").await.unwrap());
    assert!(now.items.contains(&after));
}

/// Prefixes are plain string prefixes: `/a/` never sees `/ab/` or `/a`.
pub async fn check_prefix_isolation(backend: &dyn Backend) {
    let store = open(backend).await;
    let mut wa = store.watch("/a/", 0).await.unwrap();
    let mut wab = store.watch("/ab/", 0).await.unwrap();
    let a1 = store.create("/a/1", b"a".to_vec()).await.unwrap();
    store.create("/ab/1", b"ab".to_vec()).await.unwrap();
    store.create("/a", b"bare".to_vec()).await.unwrap();
    store.create("/b/1", b"b".to_vec()).await.unwrap();
    let a2 = store.create("/a/2", b"a".to_vec()).await.unwrap();
    let ab2 = store.create("/ab/2", b"ab".to_vec()).await.unwrap();

    let la = store.list("/a/", ListOptions::default()).await.unwrap();
    assert_eq!(la.items, vec![a1.clone(), a2.clone()]);
    assert_eq!(store.count("/a/").await.unwrap(), 2);
    assert_eq!(store.count("/ab/").await.unwrap(), 2);
    assert_eq!(store.count("/").await.unwrap(), 6);
    assert_eq!(store.count("/nothing/").await.unwrap(), 0);
    assert_eq!(
        store
            .list("/nothing/", ListOptions::default())
            .await
            .unwrap()
            .items,
        vec![]
    );
    assert_eq!(
        collect_until(&mut wa, a2.mod_revision).await,
        vec![put_event(&a1, None), put_event(&a2, None)]
    );
    let got = collect_until(&mut wab, ab2.mod_revision).await;
    assert!(
        got.iter()
            .all(|e| matches!(e, WatchEvent::Put { kv, .. } if kv.key.starts_with("/ab/")))
    );
    assert_eq!(got.len(), 2);
    // A paged list does not wander past the prefix either.
    let page = store
        .list(
            "/a/",
            ListOptions {
                limit: 1,
                continue_after: Some("/a/1".into()),
                revision: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items, vec![a2]);
    assert!(!page.more);
}

/// 1,000 concurrent writers: exactly one creator wins per key, exactly one CAS wins per round,
/// and every success got its own revision.
pub async fn check_concurrent_writers(backend: &dyn Backend) {
    let store = open(backend).await;
    const WRITERS: usize = 1000;
    let start = store.current_revision().await.unwrap();

    // Everybody creates the same key; then everybody creates a key of their own pair.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..WRITERS {
        let store = store.clone();
        tasks.spawn(async move {
            let same = store
                .create("/race/same", format!("{i}").into_bytes())
                .await;
            let pair = store
                .create(
                    &format!("/race/pair/{}", i / 2),
                    format!("{i}").into_bytes(),
                )
                .await;
            (same, pair)
        });
    }
    let mut same_wins = 0;
    let mut pair_wins = 0;
    let mut revisions = HashSet::new();
    while let Some(res) = tasks.join_next().await {
        let (same, pair) = res.expect("writer task panicked");
        for (result, wins) in [(same, &mut same_wins), (pair, &mut pair_wins)] {
            match result {
                Ok(kv) => {
                    *wins += 1;
                    assert!(revisions.insert(kv.mod_revision), "revision reused");
                }
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(other) => panic!("concurrent create failed: {other:?}"),
            }
        }
    }
    assert_eq!(same_wins, 1);
    assert_eq!(pair_wins, WRITERS / 2);
    let after_creates = store.current_revision().await.unwrap();
    assert_eq!(after_creates - start, (1 + WRITERS / 2) as i64);

    // CAS rounds: everybody reads the counter, then tries to move it on; one wins per round.
    const ROUNDS: usize = 3;
    let counter = store.create("/race/counter", b"0".to_vec()).await.unwrap();
    let mut expected = counter.mod_revision;
    for round in 1..=ROUNDS {
        let wins = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..WRITERS {
            let store = store.clone();
            let wins = wins.clone();
            let barrier = barrier.clone();
            tasks.spawn(async move {
                let seen = store.get("/race/counter").await.unwrap().unwrap();
                barrier.wait().await;
                match store
                    .update(
                        "/race/counter",
                        format!("{round}:{i}").into_bytes(),
                        seen.mod_revision,
                    )
                    .await
                {
                    Ok(kv) => {
                        wins.fetch_add(1, Ordering::SeqCst);
                        Some(kv)
                    }
                    Err(StoreError::Conflict { current, .. }) => {
                        assert!(current.is_some_and(|c| c.mod_revision > seen.mod_revision));
                        None
                    }
                    Err(other) => panic!("CAS failed: {other:?}"),
                }
            });
        }
        let mut winner = None;
        while let Some(res) = tasks.join_next().await {
            if let Some(kv) = res.expect("CAS task panicked") {
                winner = Some(kv);
            }
        }
        assert_eq!(wins.load(Ordering::SeqCst), 1, "round {round}");
        let winner = winner.unwrap();
        assert_eq!(winner.mod_revision, expected + 1);
        expected = winner.mod_revision;
    }
    assert_eq!(store.current_revision().await.unwrap(), expected);
}

/// Values up to [`MAX_VALUE_BYTES`] are stored whole; one byte more is refused before
/// anything is written.
pub async fn check_large_values(backend: &dyn Backend) {
    let store = open(backend).await;
    let mut w = store.watch("/big/", 0).await.unwrap();
    let big: Vec<u8> = (0..MAX_VALUE_BYTES).map(|i| (i % 251) as u8).collect();
    let kv = store.create("/big/max", big.clone()).await.unwrap();
    assert_eq!(kv.value.len(), MAX_VALUE_BYTES);
    assert_eq!(store.get("/big/max").await.unwrap(), Some(kv.clone()));
    let kv2 = store
        .update("/big/max", big.clone(), kv.mod_revision)
        .await
        .unwrap();
    let list = store.list("/big/", ListOptions::default()).await.unwrap();
    assert_eq!(list.items, vec![kv2.clone()]);
    assert_eq!(next_event(&mut w).await.unwrap(), put_event(&kv, None));
    assert_eq!(
        next_event(&mut w).await.unwrap(),
        put_event(&kv2, Some(&kv))
    );

    let rev = store.current_revision().await.unwrap();
    let too_big = vec![7u8; MAX_VALUE_BYTES + 1];
    assert!(matches!(
        store.create("/big/over", too_big.clone()).await,
        Err(StoreError::InvalidArgument { .. })
    ));
    assert!(matches!(
        store.update("/big/max", too_big, kv2.mod_revision).await,
        Err(StoreError::InvalidArgument { .. })
    ));
    assert_eq!(store.current_revision().await.unwrap(), rev);
    assert_eq!(store.get("/big/over").await.unwrap(), None);
}

/// Bad input gets `InvalidArgument` (never a panic) and changes nothing.
pub async fn check_bad_input(backend: &dyn Backend) {
    let store = open(backend).await;
    store.create("/bad/k", b"v".to_vec()).await.unwrap();
    let invalid = |r: Result<(), StoreError>| {
        assert!(
            matches!(r, Err(StoreError::InvalidArgument { .. })),
            "expected InvalidArgument, got {r:?}"
        )
    };
    invalid(store.get("").await.map(|_| ()));
    invalid(store.create("", b"v".to_vec()).await.map(|_| ()));
    invalid(store.update("", b"v".to_vec(), 2).await.map(|_| ()));
    invalid(store.delete("", None).await.map(|_| ()));
    invalid(
        store
            .create(&"k".repeat(crate::MAX_KEY_BYTES + 1), vec![])
            .await
            .map(|_| ()),
    );
    invalid(
        store
            .list(
                "/bad/",
                ListOptions {
                    continue_after: Some("/other/x".into()),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ()),
    );
    invalid(store.list("/bad/", at_revision(-3)).await.map(|_| ()));
    invalid(store.watch("/bad/", -1).await.map(|_| ()));
    invalid(store.compact(-1).await);
    assert_eq!(store.current_revision().await.unwrap(), 2);
    // Odd but valid keys and values round-trip.
    for key in ["/bad/ü ñ", "/bad/\u{0}nul", "/bad/tab\tkey", "/bad//double"] {
        let kv = store.create(key, vec![0, 255, 0]).await.unwrap();
        assert_eq!(store.get(key).await.unwrap(), Some(kv));
    }
}

/// Watch fan-out: 1,000 watchers all see every event; a stalled watcher blocks neither the
/// writers nor the other watchers, and once far enough behind it is ended with `Compacted`.
pub async fn check_watch_fanout(backend: &dyn Backend) {
    const WATCHERS: usize = 1000;
    const BUFFER: usize = 16;
    let store = backend
        .open(WatchConfig {
            progress_interval: Duration::from_millis(500),
            watch_buffer: BUFFER,
        })
        .await;
    let mut stalled = store.watch("/fan/", 0).await.unwrap();
    let mut streams = Vec::new();
    for _ in 0..WATCHERS - 1 {
        streams.push(store.watch("/fan/", 0).await.unwrap());
    }
    // Every live watcher runs in its own task and counts what it sees.
    let writes = (BUFFER * 8) as i64;
    let first = store.current_revision().await.unwrap() + 1;
    let last = first + writes - 1;
    let received = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for mut w in streams {
        let received = received.clone();
        tasks.spawn(async move {
            let mut next = first;
            while next <= last {
                match w.next().await {
                    Some(Ok(WatchEvent::Progress(_))) => {}
                    Some(Ok(ev)) => {
                        assert_eq!(ev.revision(), next, "out of order or duplicate");
                        next += 1;
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("watcher ended early: {other:?}"),
                }
            }
        });
    }
    // The writer goes in steps of half the buffer, each time until every live watcher has
    // seen the step (healthy watchers keep up), while the stalled one (never polled) falls
    // further behind. Neither the writes nor the live watchers may wait for it.
    let step = (BUFFER / 2) as i64;
    let mut written = 0i64;
    tokio::time::timeout(PATIENCE * 3, async {
        while written < writes {
            for _ in 0..step {
                store
                    .create(&format!("/fan/{written:05}"), vec![1; 16])
                    .await
                    .unwrap();
                written += 1;
            }
            let want = (WATCHERS - 1) * written as usize;
            while received.load(Ordering::Relaxed) < want {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    })
    .await
    .expect("writers or live watchers blocked by a stalled watcher");
    tokio::time::timeout(PATIENCE, async {
        while let Some(res) = tasks.join_next().await {
            res.expect("watcher failed");
        }
    })
    .await
    .expect("live watchers did not finish");

    // The stalled watcher may deliver what it buffered, then must end with Compacted.
    let mut delivered = 0usize;
    let outcome = loop {
        match tokio::time::timeout(PATIENCE, stalled.next()).await {
            Err(_) => panic!("stalled watcher neither caught up nor ended"),
            Ok(Some(Ok(WatchEvent::Progress(_)))) => {}
            Ok(Some(Ok(_))) => delivered += 1,
            Ok(Some(Err(err))) => break err,
            Ok(None) => panic!("stalled watcher ended without an error"),
        }
    };
    assert!(
        outcome.is_compacted(),
        "stalled watcher ended with {outcome:?}"
    );
    assert!(
        delivered < writes as usize,
        "stalled watcher buffered everything ({delivered} events)"
    );
}

/// Defines one `#[tokio::test]` per conformance check for a backend. The argument is an
/// expression that makes a fresh [`conformance::Backend`](crate::conformance::Backend); it
/// is evaluated once per test.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::conformance_tests!(@each $backend;
            check_revisions, check_cas, check_list_at_revision, check_pagination,
            check_watch_from_any_revision, check_watch_progress, check_compaction,
            check_prefix_isolation, check_concurrent_writers, check_large_values,
            check_bad_input, check_watch_fanout);
    };
    (@each $backend:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let backend = $backend;
                $crate::conformance::$check(&backend).await;
            }
        )*
    };
}
