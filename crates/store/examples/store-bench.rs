//! Store benchmark: durable write throughput and latency (1 and 64 concurrent writers) and
//! watch delivery latency with 1,000 watchers, for the redb, etcd and memory backends in the
//! same run. The etcd server is started by the benchmark itself (a real `etcd` on a free
//! 127.0.0.1 port, data dir on the same disk as the redb file).
//!
//! ```text
//! cargo run --release -p podvisor-store --features etcd --example store-bench [-- --seconds 3]
//! ```

#[path = "../tests/support/etcd_server.rs"]
mod etcd_server;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use podvisor_store::etcd::EtcdStore;
use podvisor_store::memory::MemoryStore;
use podvisor_store::redb_store::{RedbOptions, RedbStore};
use podvisor_store::{Store, WatchConfig, WatchEvent};
use tokio::time::Instant;

const VALUE_BYTES: usize = 256;
const WATCHERS: usize = 1000;
const WATCH_WRITES: usize = 200;

#[derive(Default, Clone)]
struct Row {
    backend: &'static str,
    w1: f64,
    w1_p50: Duration,
    w1_p99: Duration,
    w64: f64,
    w64_p50: Duration,
    w64_p99: Duration,
    watch_p50: Duration,
    watch_p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// `writers` tasks create distinct keys for `secs`; returns the write count and latencies.
async fn writes(
    store: Arc<dyn Store>,
    tag: &str,
    writers: usize,
    secs: f64,
) -> (usize, Vec<Duration>) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = store.clone();
        let tag = tag.to_string();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                store
                    .create(&format!("/bench/{tag}/{w}/{i}"), vec![7u8; VALUE_BYTES])
                    .await
                    .expect("benchmark write failed");
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("writer task"));
    }
    (all.len(), all)
}

/// Write figures of one backend, summed over interleaved rounds.
#[derive(Default)]
struct Writes {
    count: usize,
    secs: f64,
    lat: Vec<Duration>,
}

impl Writes {
    fn add(&mut self, (count, lat): (usize, Vec<Duration>), secs: f64) {
        self.count += count;
        self.secs += secs;
        self.lat.extend(lat);
    }
    fn figures(mut self) -> (f64, Duration, Duration) {
        self.lat.sort_unstable();
        (
            self.count as f64 / self.secs.max(1e-9),
            percentile(&self.lat, 0.50),
            percentile(&self.lat, 0.99),
        )
    }
}

/// 1,000 watchers on one prefix; one writer makes WATCH_WRITES paced writes; returns the
/// p50/p99 of (delivery time - write start) over every watcher and event.
async fn watch_delivery(store: Arc<dyn Store>) -> (Duration, Duration) {
    let mut streams = Vec::new();
    for _ in 0..WATCHERS {
        streams.push(store.watch("/watch/", 0).await.expect("watch"));
    }
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for mut w in streams {
        tasks.spawn(async move {
            let mut got = Vec::with_capacity(WATCH_WRITES);
            while got.len() < WATCH_WRITES {
                match tokio::time::timeout(Duration::from_secs(60), w.next()).await {
                    Ok(Some(Ok(WatchEvent::Put { kv, .. }))) => got.push((kv.key, Instant::now())),
                    Ok(Some(Ok(_))) => {}
                    other => panic!("watcher failed: {other:?}"),
                }
            }
            got
        });
    }
    for i in 0..WATCH_WRITES {
        let key = format!("/watch/{i}");
        started.lock().insert(key.clone(), Instant::now());
        store
            .create(&key, vec![1u8; VALUE_BYTES])
            .await
            .expect("watch write");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut lat = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let started = started.lock();
        for (key, at) in r.expect("watcher task") {
            if let Some(s) = started.get(&key) {
                lat.push(at.saturating_duration_since(*s));
            }
        }
    }
    lat.sort_unstable();
    (percentile(&lat, 0.50), percentile(&lat, 0.99))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let mut secs = 6.0;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--seconds")
        && let Some(v) = args.get(i + 1).and_then(|v| v.parse().ok())
    {
        secs = v;
    }
    let config = WatchConfig {
        progress_interval: Duration::from_secs(1),
        watch_buffer: 4096,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let redb = RedbStore::open_with(
        dir.path().join("bench.redb"),
        RedbOptions {
            watch: config.clone(),
            ..RedbOptions::default()
        },
    )
    .expect("open redb");
    let server = etcd_server::EtcdServer::start().await;
    let etcd = EtcdStore::connect_with(
        std::slice::from_ref(&server.endpoint),
        "/podvisor",
        config.clone(),
    )
    .await
    .expect("connect etcd");
    let backends: Vec<(&'static str, Arc<dyn Store>)> = vec![
        ("redb", Arc::new(redb.clone())),
        ("etcd", Arc::new(etcd)),
        ("memory", Arc::new(MemoryStore::with_watch_config(config))),
    ];
    // The disk is shared with other work, so its sync latency drifts: the backends take turns
    // in short rounds, and each figure sums all of its rounds.
    const ROUNDS: usize = 6;
    let slice = secs / ROUNDS as f64;
    let mut one: Vec<Writes> = backends.iter().map(|_| Writes::default()).collect();
    let mut many: Vec<Writes> = backends.iter().map(|_| Writes::default()).collect();
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        for (i, (_, store)) in backends.iter().enumerate() {
            one[i].add(
                writes(store.clone(), &format!("one{round}"), 1, slice).await,
                slice,
            );
            many[i].add(
                writes(store.clone(), &format!("many{round}"), 64, slice).await,
                slice,
            );
        }
    }
    let mut rows = Vec::new();
    for ((name, store), (one, many)) in backends.iter().zip(one.into_iter().zip(many)) {
        eprintln!("{name}: {WATCHERS} watchers...");
        let (w1, w1_p50, w1_p99) = one.figures();
        let (w64, w64_p50, w64_p99) = many.figures();
        let (watch_p50, watch_p99) = watch_delivery(store.clone()).await;
        rows.push(Row {
            backend: name,
            w1,
            w1_p50,
            w1_p99,
            w64,
            w64_p50,
            w64_p99,
            watch_p50,
            watch_p99,
        });
    }
    let stats = redb.stats();
    eprintln!(
        "redb group commit: {} writes in {} transactions ({:.1} per fsync)",
        stats.requests,
        stats.transactions,
        stats.requests as f64 / stats.transactions.max(1) as f64
    );
    drop(backends);
    drop(server);

    println!();
    println!(
        "| backend | writes/s, 1 writer | p50 | p99 | writes/s, 64 writers | p50 | p99 | watch delivery p50, {WATCHERS} watchers | p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {} | {} | {:.0} | {} | {} | {} | {} |",
            r.backend,
            r.w1,
            ms(r.w1_p50),
            ms(r.w1_p99),
            r.w64,
            ms(r.w64_p50),
            ms(r.w64_p99),
            ms(r.watch_p50),
            ms(r.watch_p99)
        );
    }
    let find = |name: &str| {
        rows.iter()
            .find(|r| r.backend == name)
            .cloned()
            .unwrap_or_default()
    };
    let (redb, etcd) = (find("redb"), find("etcd"));
    println!();
    println!(
        "redb/etcd: {:.2}x with 1 writer, {:.2}x with 64 writers ({VALUE_BYTES}-byte values, creates, {secs} s per figure in 6 interleaved rounds)",
        redb.w1 / etcd.w1.max(1e-9),
        redb.w64 / etcd.w64.max(1e-9)
    );
}
