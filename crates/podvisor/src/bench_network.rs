//! The bench's `network` part: what a pod network costs (create → Running of pods with a
//! network of their own against `hostNetwork` pods, alternating, in one cluster) and whether
//! 100 pods started at once all get distinct addresses.
//!
//! Pod networks make a bridge, veths, addresses and NAT rules in the network namespace `up`
//! runs in, so this part runs only when the bench itself is in a network namespace of its
//! own (not PID 1's): `unshare -n sh -c 'ip link set lo up && podvisor bench --only network'`.
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::bench::{Observer, Samples, UpProcess, ensure_namespace, pod_json};

/// Whether this process is in a network namespace other than PID 1's. Decided once, at the
/// first call (`bench` calls it before any part runs): the `network` part leaves its bridge
/// in the namespace, which the fallback below would take for the machine's interfaces.
pub(crate) fn own_network_namespace() -> bool {
    static OWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWN.get_or_init(decide_own_network_namespace)
}

fn decide_own_network_namespace() -> bool {
    let ns = |p: &str| std::fs::read_link(p).ok();
    match (ns("/proc/self/ns/net"), ns("/proc/1/ns/net")) {
        (Some(a), Some(b)) => a != b,
        // PID 1's namespace may be unreadable (a hardened /proc): a namespace whose only
        // interface is `lo` is one made for the bench.
        (Some(_), None) => std::fs::read_to_string("/proc/self/net/dev")
            .is_ok_and(|t| t.lines().skip(2).all(|l| l.trim_start().starts_with("lo:"))),
        _ => false,
    }
}

/// Runs the part; None (with the reason printed) when it cannot run here.
pub async fn run(seq_n: usize, burst_n: usize) -> anyhow::Result<Option<Value>> {
    println!("## pod network");
    if !own_network_namespace() {
        println!(
            "not measured: pod networks are made only in a network namespace of the bench's own:\n  unshare -n sh -c 'ip link set lo up && podvisor bench --only network'\n"
        );
        return Ok(None);
    }
    let (up, _) = UpProcess::start_with("bench-net", true).await?;
    let result = measure(&up, seq_n, burst_n).await;
    up.stop();
    result.map(Some)
}

fn with_host_network(mut pod: Pod, host: bool) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.host_network = Some(host);
    }
    pod
}

async fn measure(up: &UpProcess, seq_n: usize, burst_n: usize) -> anyhow::Result<Value> {
    const SLEEP: &[&str] = &["sh", "-c", "sleep 100000 & wait"];
    let client = up.client.clone();
    ensure_namespace(&client, "bench").await?;
    let pods: Api<Pod> = Api::namespaced(client, "bench");
    let (obs, watch_task) = Observer::start(pods.clone());
    // the first pod waits for the node's podCIDR and writes the default configuration
    for i in 0..3 {
        let name = format!("net-warm-{i}");
        pods.create(&PostParams::default(), &pod_json(&name, SLEEP, 0, None)?)
            .await?;
        obs.wait(Duration::from_secs(120), |s| s.running.contains_key(&name))
            .await?;
    }
    let (mut own, mut host) = (Samples::default(), Samples::default());
    for i in 0..seq_n * 2 {
        let host_net = i % 2 == 1;
        let name = format!("net-seq-{i}");
        let pod = with_host_network(pod_json(&name, SLEEP, 0, None)?, host_net);
        let t = Instant::now();
        pods.create(&PostParams::default(), &pod).await?;
        obs.wait(Duration::from_secs(60), |s| s.running.contains_key(&name))
            .await?;
        let d = obs.running_at(&name) - t;
        if host_net { host.push(d) } else { own.push(d) }
    }
    println!(
        "create -> Running, own network  p50 {:.1} ms  p90 {:.1} ms",
        own.pct(50.0),
        own.pct(90.0)
    );
    println!(
        "create -> Running, hostNetwork  p50 {:.1} ms  p90 {:.1} ms",
        host.pct(50.0),
        host.pct(90.0)
    );
    println!(
        "network setup adds              p50 {:.1} ms",
        own.pct(50.0) - host.pct(50.0)
    );
    let names: Vec<String> = (0..burst_n).map(|i| format!("net-burst-{i}")).collect();
    let t = Instant::now();
    for n in &names {
        pods.create(&PostParams::default(), &pod_json(n, SLEEP, 0, None)?)
            .await?;
    }
    obs.wait(Duration::from_secs(300), |s| {
        names.iter().all(|n| s.running.contains_key(n))
    })
    .await?;
    let all_running = t.elapsed();
    let mut ips = BTreeSet::new();
    for n in &names {
        let p = pods.get(n).await?;
        if let Some(ip) = p.status.and_then(|s| s.pod_ip) {
            ips.insert(ip);
        }
    }
    println!(
        "{burst_n} pods at once: all Running in {:.2} s, {} distinct pod IPs\n",
        all_running.as_secs_f64(),
        ips.len()
    );
    watch_task.abort();
    Ok(json!({
        "own_network_to_running": own.summary(),
        "host_network_to_running": host.summary(),
        "setup_p50_ms": own.pct(50.0) - host.pct(50.0),
        "burst": {"pods": burst_n, "all_running_s": all_running.as_secs_f64(), "distinct_ips": ips.len()},
    }))
}
