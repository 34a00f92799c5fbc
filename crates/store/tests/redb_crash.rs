//! Crash test of the redb backend: no acknowledged write is lost to `kill -9`.
//!
//! The parent runs [`CYCLES`] cycles on one store file. In each, it starts this same binary as a
//! child (`PODVISOR_STORE_CRASH_CHILD=<file>`), which opens the store and runs concurrent
//! writers (creates, CAS updates, deletes) that print one line per acknowledged write. At a
//! pseudo-random moment the parent kills the child with SIGKILL, reopens the store and checks:
//! every acknowledged write is in the history at its revision with its value, the current
//! revision is at least the newest acknowledged one, and the on-disk history is one event per
//! revision with no gap or duplicate (read back by a watch from the start).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use podvisor_store::redb_store::{RedbOptions, RedbStore};
use podvisor_store::{ListOptions, Store, StoreError, WatchEvent};

const CYCLES: u64 = 24;
const CHILD_ENV: &str = "PODVISOR_STORE_CRASH_CHILD";
const WRITERS: usize = 8;

fn options() -> RedbOptions {
    RedbOptions {
        retain_revisions: None,
        ..RedbOptions::default()
    }
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(path) = std::env::var(CHILD_ENV) {
        runtime.block_on(child(path));
        return ExitCode::SUCCESS;
    }
    podvisor_testkit::runner::run(vec![("redb_crash", ())], |()| {
        runtime.block_on(parent());
        println!("{CYCLES} kill -9 cycles");
    })
}

/// Writes forever, printing `ack <rev> <key> <value|-deleted->` after each acknowledged write.
async fn child(path: String) {
    let store = RedbStore::open_with(&path, options()).expect("child: open store");
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    println!("ready");
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/crash/{w}");
            let mut n: u64 = 0;
            loop {
                n += 1;
                let value = format!("{}-{w}-{n}", std::process::id());
                let (rev, shown) = match store.get(&key).await.expect("child: get") {
                    None => {
                        let kv = store.create(&key, value.clone().into_bytes()).await;
                        (kv.expect("child: create").mod_revision, value)
                    }
                    Some(kv) if n.is_multiple_of(5) => {
                        let (_, rev) = store
                            .delete(&key, Some(kv.mod_revision))
                            .await
                            .expect("child: delete");
                        (rev, "-deleted-".to_string())
                    }
                    Some(kv) => {
                        let kv = store
                            .update(&key, value.clone().into_bytes(), kv.mod_revision)
                            .await
                            .expect("child: update");
                        (kv.mod_revision, value)
                    }
                };
                let mut out = out.lock().expect("stdout");
                writeln!(out, "ack {rev} {key} {shown}").expect("stdout");
                out.flush().expect("stdout");
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

struct Ack {
    rev: i64,
    key: String,
    value: String,
}

async fn parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().expect("current exe");
    let mut all_acks: Vec<Ack> = Vec::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id());
    let mut last_revision = 1;
    for cycle in 0..CYCLES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let run_for = Duration::from_millis(30 + seed % 220);
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines: Vec<String> = Vec::new();
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    // A line cut by the kill has no newline: the write was not reported.
                    Ok(_) if line.ends_with('\n') => {
                        if lines.is_empty() {
                            let _ = ready_tx.send(());
                        }
                        lines.push(line.trim_end().to_string());
                    }
                    Ok(_) => break,
                }
            }
            lines
        });
        // The random moment is counted from when the child has opened the store.
        let waited = tokio::task::spawn_blocking(move || {
            ready_rx.recv_timeout(Duration::from_secs(30)).is_ok()
        })
        .await
        .expect("ready wait");
        if waited {
            tokio::time::sleep(run_for).await;
        }
        child.kill().expect("SIGKILL child");
        let status = child.wait().expect("wait child");
        assert!(!status.success(), "child exited by itself: {status}");
        let lines = reader.join().expect("reader thread");
        assert!(
            lines.first().map(String::as_str) == Some("ready") || lines.is_empty(),
            "child did not start cleanly: {lines:?}"
        );
        let mut acks = 0;
        for line in lines.iter().skip(1) {
            let mut parts = line.splitn(4, ' ');
            let (Some("ack"), Some(rev), Some(key), Some(value)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                panic!("bad child line {line:?}");
            };
            all_acks.push(Ack {
                rev: rev.parse().expect("revision"),
                key: key.to_string(),
                value: value.to_string(),
            });
            acks += 1;
        }
        last_revision = verify(&path, &all_acks, last_revision).await;
        eprintln!(
            "cycle {cycle}: killed after {run_for:?}, {acks} acknowledged writes, revision {last_revision}"
        );
    }
    assert!(
        all_acks.len() as u64 >= CYCLES,
        "the children acknowledged too few writes ({}) to test anything",
        all_acks.len()
    );
}

/// Reopens the store and checks every acknowledged write. Returns the current revision.
async fn verify(path: &std::path::Path, acks: &[Ack], previous_revision: i64) -> i64 {
    let store = RedbStore::open_with(path, options()).expect("reopen after kill -9");
    let current = store.current_revision().await.unwrap();
    assert!(
        current >= previous_revision,
        "revision went back: {current} < {previous_revision}"
    );
    let newest_ack = acks.iter().map(|a| a.rev).max().unwrap_or(1);
    assert!(
        current >= newest_ack,
        "acknowledged revision {newest_ack} lost (store at {current})"
    );

    // The full history, one event per revision 2..=current, in order.
    let mut history: BTreeMap<i64, WatchEvent> = BTreeMap::new();
    if current > 1 {
        let mut w = store.watch("/", 1).await.unwrap();
        let mut expect = 2;
        while expect <= current {
            match tokio::time::timeout(Duration::from_secs(20), w.next()).await {
                Ok(Some(Ok(WatchEvent::Progress(_)))) => {}
                Ok(Some(Ok(ev))) => {
                    assert_eq!(ev.revision(), expect, "history gap or duplicate");
                    history.insert(ev.revision(), ev);
                    expect += 1;
                }
                other => panic!("history watch failed: {other:?}"),
            }
        }
    }
    for ack in acks {
        let ev = history
            .get(&ack.rev)
            .unwrap_or_else(|| panic!("acknowledged revision {} missing", ack.rev));
        match ev {
            WatchEvent::Put { kv, .. } => {
                assert_eq!(kv.key, ack.key);
                assert_eq!(String::from_utf8_lossy(&kv.value), ack.value);
            }
            WatchEvent::Delete { prev, .. } => {
                assert_eq!(prev.key, ack.key);
                assert_eq!(ack.value, "-deleted-");
            }
            WatchEvent::Progress(_) => unreachable!(),
        }
    }
    // The current state agrees with the history.
    let now = store.list("/crash/", ListOptions::default()).await.unwrap();
    for kv in &now.items {
        match history.get(&kv.mod_revision) {
            Some(WatchEvent::Put { kv: h, .. }) => assert_eq!(h, kv),
            other => panic!("live key {} not at its history revision: {other:?}", kv.key),
        }
    }
    let mut live: BTreeMap<&str, i64> = BTreeMap::new();
    for (rev, ev) in &history {
        match ev {
            WatchEvent::Put { kv, .. } => {
                live.insert(&kv.key, *rev);
            }
            WatchEvent::Delete { prev, .. } => {
                live.remove(prev.key.as_str());
            }
            WatchEvent::Progress(_) => {}
        }
    }
    assert_eq!(
        live.len(),
        now.items.len(),
        "history replay disagrees with the live keys"
    );
    assert!(matches!(
        store.get("").await,
        Err(StoreError::InvalidArgument { .. })
    ));
    current
}
