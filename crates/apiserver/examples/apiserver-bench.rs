//! API server benchmark: pod creates/s with 1 and 32 clients, get and list latency with
//! N pods stored, watch delivery to 100 watchers, RSS idle and with N pods.
//!
//! ```text
//! cargo run --release -p podvisor-apiserver --example apiserver-bench -- [N=10000] [memory|redb] [inproc|tls]
//! ```
//! Clients are kube-rs clients, either in-process (`ApiServer::in_process_client`, the
//! router as a tower service) or over real TLS on 127.0.0.1. RSS is of this whole process
//! (server plus the benchmark's clients).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use podvisor_apiserver::{ApiServer, ApiServerConfig};
use serde_json::json;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}))
    .expect("pod")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn client(srv: &ApiServer, mode: &str, port: u16) -> kube::Client {
    if mode == "inproc" {
        return srv.in_process_client(&srv.admin_token());
    }
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(srv.ca_pem());
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
        srv.admin_token()
    );
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let backend = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("memory")
        .to_string();
    let mode = args
        .get(3)
        .map(String::as_str)
        .unwrap_or("inproc")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn podvisor_store::Store> = match backend.as_str() {
        "redb" => Arc::new(
            podvisor_store::redb_store::RedbStore::open(dir.path().join("store.redb"))
                .expect("redb"),
        ),
        _ => Arc::new(podvisor_store::memory::MemoryStore::new()),
    };
    let srv = ApiServer::new(store, ApiServerConfig::new(dir.path().join("data")))
        .await
        .expect("server");
    let serving = podvisor_apiserver::testing::serve_on_loopback(srv.clone()).await;
    let port = serving.port;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_kib();
    println!("backend={backend} clients={mode} pods={n}");
    println!("rss idle: {idle} KiB");

    // Creates, 1 client.
    let one = n.min(2000);
    let pods: Api<Pod> = Api::namespaced(client(&srv, &mode, port).await, "default");
    let t = tokio::time::Instant::now();
    for i in 0..one {
        pods.create(&PostParams::default(), &pod(&format!("s{i}")))
            .await
            .expect("create");
    }
    let el = t.elapsed();
    println!(
        "creates, 1 client: {one} in {:.2} s = {:.0}/s",
        el.as_secs_f64(),
        one as f64 / el.as_secs_f64()
    );

    // Creates, 32 clients, up to n pods in total.
    let per = (n - one).div_ceil(32);
    let t = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for c in 0..32 {
        let api: Api<Pod> = Api::namespaced(client(&srv, &mode, port).await, "default");
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let _ = api
                    .create(&PostParams::default(), &pod(&format!("m{c}-{i}")))
                    .await
                    .expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let el = t.elapsed();
    let total = per * 32;
    println!(
        "creates, 32 clients: {total} in {:.2} s = {:.0}/s",
        el.as_secs_f64(),
        total as f64 / el.as_secs_f64()
    );
    let stored = pods
        .list(&ListParams::default().limit(1))
        .await
        .expect("list");
    let _ = stored;
    println!("rss with {} pods: {} KiB", one + total, rss_kib());

    // Get latency.
    let mut lat = Vec::new();
    for i in 0..1000 {
        let t = tokio::time::Instant::now();
        pods.get(&format!("s{}", i % one)).await.expect("get");
        lat.push(t.elapsed());
    }
    println!(
        "get: p50 {} p99 {}",
        ms(pct(&mut lat, 0.5)),
        ms(pct(&mut lat, 0.99))
    );

    // List latency (all pods, one response; and paged by 500).
    let mut lat = Vec::new();
    let mut count = 0;
    for _ in 0..20 {
        let t = tokio::time::Instant::now();
        count = pods
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len();
        lat.push(t.elapsed());
    }
    println!(
        "list {count} pods: p50 {} p99 {}",
        ms(pct(&mut lat, 0.5)),
        ms(pct(&mut lat, 0.99))
    );
    let mut lat = Vec::new();
    for _ in 0..10 {
        let t = tokio::time::Instant::now();
        let mut lp = ListParams::default().limit(500);
        loop {
            let page = pods.list(&lp).await.expect("list");
            match page.metadata.continue_ {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
        lat.push(t.elapsed());
    }
    println!(
        "list {count} pods in pages of 500: p50 {} p99 {}",
        ms(pct(&mut lat, 0.5)),
        ms(pct(&mut lat, 0.99))
    );

    // Watch delivery: 100 watchers, 1000 new pods.
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let events = 1000usize;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(100);
    for _ in 0..100 {
        let api: Api<Pod> = Api::namespaced(client(&srv, &mode, port).await, "default");
        let mut w = api
            .watch(&WatchParams::default().timeout(600), &rv)
            .await
            .expect("watch")
            .boxed();
        let tx = done_tx.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            while let Some(Ok(ev)) = w.next().await {
                if let WatchEvent::Added(_) = ev {
                    seen += 1;
                    if seen == events {
                        let _ = tx.send(()).await;
                        return;
                    }
                }
            }
        });
    }
    drop(done_tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = tokio::time::Instant::now();
    let wc = client(&srv, &mode, port).await;
    let api: Api<Pod> = Api::namespaced(wc, "default");
    let mut tasks = Vec::new();
    for c in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..events / 8 {
                api.create(&PostParams::default(), &pod(&format!("w{c}-{i}")))
                    .await
                    .expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let created = t0.elapsed();
    let mut finish = Vec::new();
    while let Some(()) = tokio::time::timeout(Duration::from_secs(120), done_rx.recv())
        .await
        .ok()
        .flatten()
    {
        finish.push(t0.elapsed());
    }
    println!("watch: 1000 creates (8 writers) took {}", ms(created));
    let last = finish.iter().max().copied().unwrap_or_default();
    println!(
        "watch: {} of 100 watchers got all {events} events; last done after {} = {:.0} events/s delivered",
        finish.len(),
        ms(last),
        (finish.len() * events) as f64 / last.as_secs_f64().max(1e-9)
    );
    println!("rss at end: {} KiB", rss_kib());
    serving.stop().await;
}
