//! Scheduler throughput: 100 Ready nodes and 10,000 pending pods on the in-process API server
//! (memory store); measures how fast the scheduler binds the backlog.
//!
//! `cargo run --release -p podvisor-scheduler --example sched-bench [-- NODES PODS]`

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use podvisor_scheduler::algorithm;
use podvisor_scheduler::cache::{Cache, PodInfo};
use podvisor_scheduler::{Scheduler, SchedulerConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BENCH_ALLOCATABLE: [(&str, &str); 3] = [("cpu", "64"), ("memory", "256Gi"), ("pods", "110")];

fn bench_node(name: &str) -> Node {
    podvisor_testkit::node(name)
        .allocatable(&BENCH_ALLOCATABLE)
        .condition("Ready", "True")
        .build()
}

fn bench_pod(i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{i:05}")),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{i:05}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("busybox".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(podvisor_testkit::quantities(&[
                        ("cpu", "10m"),
                        ("memory", "16Mi"),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// The decision path alone (filters + scores + assume on the cache), no API.
#[allow(clippy::disallowed_methods)] // a CPU-time measurement outside any runtime
fn decisions_only(nodes: usize, pods: usize) -> f64 {
    let mut cache = Cache::new();
    for i in 0..nodes {
        cache.upsert_node(Arc::new(bench_node(&format!("node-{i:04}"))));
    }
    let infos: Vec<Arc<PodInfo>> = (0..pods)
        .map(|i| Arc::new(PodInfo::new(Arc::new(bench_pod(i)))))
        .collect();
    let start = std::time::Instant::now();
    for info in infos {
        let node = algorithm::schedule(&cache, &info).expect("fits");
        cache.assume(info, &node);
    }
    pods as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(100);
    let pods = args.get(1).copied().unwrap_or(10_000);
    let decisions = decisions_only(nodes, pods);

    let server = podvisor_apiserver::testing::memory_server().await;
    let client = server.in_process_client(&server.admin_token());

    let node_api: Api<Node> = Api::all(client.clone());
    for i in 0..nodes {
        let name = format!("node-{i:04}");
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        node_api
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
        let status = bench_node(&name).status;
        node_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await
            .expect("node status");
    }

    let created_at = Instant::now();
    let mut creators = tokio::task::JoinSet::new();
    let workers = 16;
    for w in 0..workers {
        let client = client.clone();
        creators.spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "default");
            let mut i = w;
            while i < pods {
                let mut pod = bench_pod(i);
                pod.metadata.uid = None;
                api.create(&PostParams::default(), &pod)
                    .await
                    .expect("create pod");
                i += workers;
            }
        });
    }
    while let Some(r) = creators.join_next().await {
        r.expect("creator");
    }
    let create_secs = created_at.elapsed().as_secs_f64();

    let sched = Scheduler::new(client.clone(), SchedulerConfig::default());
    let stats = sched.stats();
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move { sched.run(s).await });
    let mut first_bind = None;
    loop {
        let bound = stats.bound.load(Ordering::Relaxed) as usize;
        if bound > 0 && first_bind.is_none() {
            first_bind = Some(started.elapsed());
        }
        if bound >= pods {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            eprintln!("timed out with {bound} of {pods} bound");
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_bound = started.elapsed();
    let first = first_bind.unwrap_or_default();
    let drain = all_bound.saturating_sub(first);

    // Confirm through the API.
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = api.list(&ListParams::default()).await.expect("list");
    let confirmed = list
        .items
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        .count();
    // Let the event sink catch up, then stop.
    let ev_wait = Instant::now();
    while (stats.events.created.load(Ordering::Relaxed)
        + stats.events.dropped.load(Ordering::Relaxed))
        < pods as u64
        && ev_wait.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events_done = started.elapsed();
    shutdown.cancel();
    let _ = task.await;

    println!("nodes: {nodes}, pods: {pods}");
    println!("decisions only (filters + scores + assume, no API): {decisions:.0} pods/s");
    println!(
        "created {pods} pending pods in {create_secs:.2} s ({:.0} pods/s through the API)",
        pods as f64 / create_secs
    );
    println!(
        "scheduler start → first bind: {:.0} ms (watch lists of nodes and pods)",
        first.as_secs_f64() * 1000.0
    );
    println!(
        "scheduler start → all {pods} bound: {:.2} s = {:.0} pods/s overall",
        all_bound.as_secs_f64(),
        pods as f64 / all_bound.as_secs_f64()
    );
    println!(
        "first bind → last bind: {:.2} s = {:.0} pods/s scheduling throughput",
        drain.as_secs_f64(),
        pods.saturating_sub(1) as f64 / drain.as_secs_f64().max(1e-9)
    );
    println!(
        "confirmed bound through the API: {confirmed}; unschedulable attempts: {}; bind errors: {}",
        stats.unschedulable_attempts.load(Ordering::Relaxed),
        stats.bind_errors.load(Ordering::Relaxed)
    );
    println!(
        "Scheduled events: {} created, {} dropped, all written {:.2} s after start",
        stats.events.created.load(Ordering::Relaxed),
        stats.events.dropped.load(Ordering::Relaxed),
        events_done.as_secs_f64()
    );
}
