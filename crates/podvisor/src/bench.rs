//! `podvisor bench`: pod lifecycle latency, throughput and footprint, against the physical
//! floor and (optionally) a peer, in one run on this machine.
//!
//! The harness starts the real `podvisor up` (this binary) as a child process on a temporary
//! data dir and a free port, and drives it over TLS with kube-rs, exactly as a user's
//! client would. Timestamps come from the client side: a pod is "Running" when the client
//! sees the watch event that says so. Every section prints its own table; `--json` also
//! writes everything as one JSON document.
//!
//! # Phases
//!
//! Each part (and each section of the cluster part) is a phase with a time limit that grows
//! with its sample size; a phase that fails or overruns ends the run with a line naming it.
//! On Ctrl-C or a failure every process the bench started ends (see `bench_proc`: the `up`
//! stops its pods, leftover supervisors are killed, podman containers removed) and the bench
//! says so. The burst runs on one node whose pod capacity (`--max-pods`) the bench raises to
//! hold it; against a smaller node the burst is sized to the free pod slots.

#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::Notify;

pub(crate) use crate::bench_proc::UpProcess;
use crate::bench_proc::{UpOptions, alive, processes_matching};
use crate::cli::BenchArgs;

/// Latency samples in milliseconds.
#[derive(Default, Clone)]
pub(crate) struct Samples(Vec<f64>);

impl Samples {
    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1000.0);
    }
    /// A sample given in milliseconds (negative for "before the deadline").
    pub(crate) fn push_ms(&mut self, ms: f64) {
        self.0.push(ms);
    }
    pub(crate) fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
        v[idx.min(v.len() - 1)]
    }
    pub(crate) fn summary(&self) -> Value {
        json!({"n": self.0.len(), "p50_ms": round(self.pct(50.0)), "p90_ms": round(self.pct(90.0)), "p99_ms": round(self.pct(99.0))})
    }
}

pub(crate) fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Pod events seen by the client's watch, by pod name.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) running: HashMap<String, Instant>,
    pub(crate) ready: HashMap<String, Instant>,
    pub(crate) deleted: HashMap<String, Instant>,
    /// The scheduler's message for pods it could not place (`PodScheduled` False).
    pub(crate) unschedulable: HashMap<String, String>,
}

pub(crate) struct Observer {
    seen: Mutex<Seen>,
    notify: Notify,
}

impl Observer {
    pub(crate) fn start(api: Api<Pod>) -> (Arc<Observer>, tokio::task::JoinHandle<()>) {
        let obs = Arc::new(Observer {
            seen: Mutex::new(Seen::default()),
            notify: Notify::new(),
        });
        let o = obs.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Ok(Some(ev)) = stream.try_next().await {
                let now = Instant::now();
                let mut seen = o.seen.lock().unwrap_or_else(|p| p.into_inner());
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        let status = p.status.as_ref();
                        if status.and_then(|s| s.phase.as_deref()) == Some("Running") {
                            seen.running.entry(name.clone()).or_insert(now);
                        }
                        let ready = status
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            });
                        if let Some(c) = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| {
                            cs.iter().find(|c| {
                                c.type_ == "PodScheduled"
                                    && c.status == "False"
                                    && c.reason.as_deref() == Some("Unschedulable")
                            })
                        }) {
                            let message = c.message.clone().unwrap_or_default();
                            seen.unschedulable.insert(name.clone(), message);
                        } else {
                            seen.unschedulable.remove(&name);
                        }
                        if ready {
                            seen.ready.entry(name).or_insert(now);
                        }
                    }
                    watcher::Event::Delete(p) => {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        seen.deleted.entry(name).or_insert(now);
                    }
                    _ => {}
                }
                drop(seen);
                o.notify.notify_waiters();
            }
        });
        (obs, task)
    }

    /// When pod `name` was first seen Running (now if never).
    pub(crate) fn running_at(&self, name: &str) -> Instant {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.running.get(name).copied().unwrap_or_else(Instant::now)
    }

    /// Waits until every pod in `names` is Running; fails at once, with the scheduler's
    /// message, when one of them is unschedulable.
    pub(crate) async fn wait_all_running(
        &self,
        names: &[String],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let mut stuck = None;
        let result = self
            .wait(timeout, |s| {
                if let Some((n, m)) = names
                    .iter()
                    .find_map(|n| s.unschedulable.get(n).map(|m| (n, m)))
                {
                    stuck = Some(format!("pod {n} is unschedulable: {m}"));
                    return true;
                }
                names.iter().all(|n| s.running.contains_key(n))
            })
            .await;
        if let Some(why) = stuck {
            bail!("{why}");
        }
        result.map_err(|e| {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let left = names
                .iter()
                .filter(|n| !seen.running.contains_key(*n))
                .count();
            e.context(format!("{left} of {} pods not Running", names.len()))
        })
    }

    pub(crate) async fn wait(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Seen) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if done(&self.seen.lock().unwrap_or_else(|p| p.into_inner())) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out after {timeout:?}");
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }
}

pub(crate) fn pod_json(
    name: &str,
    command: &[&str],
    grace: i64,
    node: Option<&str>,
) -> anyhow::Result<Pod> {
    let mut spec = json!({
        "terminationGracePeriodSeconds": grace,
        "runtimeClassName": "host",
        "containers": [{"name": "main", "image": "busybox", "command": command}],
    });
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

pub(crate) async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates the pods `names`, each as `make` builds it, and waits up to 2 min until all are Ready.
async fn create_all_ready(
    api: &Api<Pod>,
    obs: &Observer,
    names: &[String],
    make: impl Fn(&str) -> anyhow::Result<Pod>,
) -> anyhow::Result<()> {
    for n in names {
        api.create(&PostParams::default(), &make(n)?).await?;
    }
    obs.wait(Duration::from_secs(120), |s| {
        names.iter().all(|n| s.ready.contains_key(n))
    })
    .await
}

/// The node the API part's pods are bound to: a Node object no agent runs, so nothing runs
/// its pods (and PodGC, which deletes pods bound to nodes that do not exist, keeps them).
const PARKING_NODE: &str = "bench-nowhere";

/// Creates the pods `api-<i>` for every `i` in `range`, `clients` requests at a time, bound
/// to [`PARKING_NODE`].
pub(crate) async fn create_unschedulable(
    api: &Api<Pod>,
    range: std::ops::Range<usize>,
    clients: usize,
) -> anyhow::Result<()> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(api.clone().into_client());
    let node = serde_json::from_value(json!({"metadata": {"name": PARKING_NODE}}))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    futures::stream::iter(range)
        .map(|i| {
            let api = api.clone();
            async move {
                let p = pod_json(&format!("api-{i}"), SLEEP, 1, Some(PARKING_NODE))?;
                api.create(&PostParams::default(), &p).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(clients)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

async fn delete_all_pods(api: &Api<Pod>, obs: &Observer, names: &[String]) -> anyhow::Result<()> {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    api.delete_collection(&dp, &ListParams::default()).await?;
    let names = names.to_vec();
    obs.wait(Duration::from_secs(120), |s| {
        names.iter().all(|n| s.deleted.contains_key(n))
    })
    .await
    .context("pods not deleted")
}

pub(crate) const SLEEP: &[&str] = &["sh", "-c", "sleep 100000 & wait"];

/// Sample sizes: `--quick` or the full run.
struct Sizes {
    seq: usize,
    burst: usize,
    del: usize,
    kill: usize,
    api: usize,
    list: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                seq: 20,
                burst: 100,
                del: 5,
                kill: 3,
                api: 500,
                list: 2_000,
            }
        } else {
            Sizes {
                seq: 100,
                burst: 1_000,
                del: 20,
                kill: 10,
                api: 2_000,
                list: 10_000,
            }
        }
    }
}

/// Runs `part` with a time limit; a failure or the limit names the phase.
pub(crate) async fn phase<T>(
    name: &str,
    limit: Duration,
    part: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    eprintln!("bench: phase `{name}` (time limit {} s)", limit.as_secs());
    match tokio::time::timeout(limit, part).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.context(format!("bench phase `{name}` failed"))),
        Err(_) => bail!(
            "bench phase `{name}` did not finish within its time limit of {} s",
            limit.as_secs()
        ),
    }
}

/// Runs a blocking part on a blocking thread (it stops at its next step when interrupted).
async fn blocking<T: Send + 'static>(
    part: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(part).await?
}

/// Runs the benchmark. Every part is a phase with a time limit; Ctrl-C or a failure ends
/// every process the bench started (`bench_proc`) and says so.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let result = tokio::select! {
        r = run_parts(&args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("bench interrupted (Ctrl-C)")),
    };
    // The parts' children have ended as the parts were dropped; blocking parts stop at their
    // next step, and what the podman part made is removed.
    if result.is_err() {
        crate::bench_proc::interrupt();
    }
    crate::bench_podman::remove_leftovers();
    if result.is_err() {
        eprintln!("bench: every process the bench started has ended");
    }
    result
}

async fn run_parts(args: &BenchArgs) -> anyhow::Result<()> {
    let want = |part: &str| args.only.is_empty() || args.only.iter().any(|p| p == part);
    // Before any part adds interfaces to the namespace.
    crate::bench_network::own_network_namespace();
    let sizes = Sizes::new(args.quick);
    let quick = args.quick;
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let machine = machine();
    println!("# podvisor bench\ncommand: {command_line}\nmachine: {machine}\n");
    let mut report = json!({"command": command_line, "machine": machine});

    if want("floor") {
        let n = if quick { 100 } else { 300 };
        let floor = phase(
            "floor",
            Duration::from_secs(120),
            blocking(move || Ok(floor(n))),
        )
        .await?;
        println!("## physical floor (no orchestrator)");
        println!(
            "fork+exec+wait /bin/true                       p50 {:.3} ms",
            floor.0.pct(50.0)
        );
        println!(
            "unshare -pmui --fork /bin/true (namespaces)    p50 {:.3} ms",
            floor.1.pct(50.0)
        );
        println!(
            "fork+exec `sleep` until it runs (spawn)        p50 {:.3} ms\n",
            floor.2.pct(50.0)
        );
        report["floor"] = json!({"exec_true": floor.0.summary(), "namespaces_true": floor.1.summary(), "spawn_sleep": floor.2.summary()});
    }

    if want("authz") {
        report["authz"] = phase(
            "authz",
            Duration::from_secs(300),
            blocking(move || Ok(crate::bench_authz::run(quick))),
        )
        .await?;
    }

    let needs_cluster = ["startup", "delete", "api", "footprint"]
        .iter()
        .any(|p| want(p));
    if needs_cluster {
        // The burst runs on one node: its pod capacity (the kubelet's `--max-pods`, 110 by
        // default) is raised to hold it.
        let max_pods = (sizes.burst + 10).max(podvisor_agent::config::DEFAULT_MAX_PODS as usize);
        let (up, startup) = phase(
            "up",
            Duration::from_secs(90),
            UpProcess::launch(UpOptions {
                args: vec!["--max-pods".into(), max_pods.to_string().into()],
                ..UpOptions::up(BENCH_NODE)
            }),
        )
        .await?;
        let idle_rss = up.rss_kb();
        println!("## podvisor up (--max-pods {max_pods})");
        println!(
            "process start -> node Ready and kubeconfig printed: {:.1} ms",
            startup.as_secs_f64() * 1000.0
        );
        println!("RSS idle, no pods: {:.1} MB\n", idle_rss as f64 / 1024.0);
        report["up"] = json!({"ready_ms": round(startup.as_secs_f64() * 1000.0), "idle_rss_mb": round(idle_rss as f64 / 1024.0), "max_pods": max_pods});
        cluster_sections(&up, want, &sizes, &mut report).await?;
        up.stop();
    }

    if want("network") {
        let (n, burst) = if quick { (10, 30) } else { (50, 100) };
        if let Some(v) = phase(
            "network",
            Duration::from_secs(600),
            crate::bench_network::run(n, burst),
        )
        .await?
        {
            report["network"] = v;
        }
    }

    if want("services") {
        let (latency_n, removals) = if quick { (200, 10) } else { (1_000, 50) };
        if let Some(v) = phase(
            "services",
            Duration::from_secs(900),
            crate::bench_services::run(latency_n, removals),
        )
        .await?
        {
            report["services"] = v;
        }
    }

    if want("timeline") {
        let n = if quick { 10 } else { 40 };
        report["timeline"] = phase("timeline", limit(240, 4 * n, 5_000), timeline_cost(n)).await?;
    }

    if want("hostile") {
        report["hostile"] = phase("hostile", Duration::from_secs(600), async {
            let (up, _) = UpProcess::start("bench-hostile").await?;
            let result = hostile(&up, quick).await;
            up.stop();
            result
        })
        .await?;
    }

    if want("store") {
        let n = if quick { 200 } else { sizes.api };
        if let Some(v) = phase(
            "store",
            Duration::from_secs(600),
            crate::bench_store::run(n),
        )
        .await?
        {
            report["store"] = v;
        }
    }

    if want("scale") {
        let (nodes, per_node) = if quick { (20, 50) } else { (100, 100) };
        let limit = Duration::from_secs(if quick { 300 } else { 900 });
        report["scale"] = phase(
            "scale",
            limit,
            crate::bench_sim::scale(nodes, per_node, limit),
        )
        .await?;
    }

    if want("jobs") {
        let (nodes, n) = if quick { (5, 100) } else { (20, 1_000) };
        report["jobs"] = phase(
            "jobs",
            Duration::from_secs(if quick { 300 } else { 1_200 }),
            crate::bench_sim::jobs(nodes, n),
        )
        .await?;
    }

    match args.peer.as_str() {
        "none" => {}
        "podman" if want("podman") => {
            let n = if quick { 3 } else { 10 };
            // The peer is optional: where it cannot run, one line says why.
            match phase(
                "podman",
                Duration::from_secs(300),
                blocking(move || crate::bench_podman::run(n)),
            )
            .await
            {
                Ok(v) => report["podman"] = v,
                Err(e) if crate::bench_proc::interrupted() => return Err(e),
                Err(e) => println!("## podman\nnot measured: {e:#}\n"),
            }
        }
        "podman" => {}
        other => bail!("unknown peer {other:?} (supported: podman, none)"),
    }
    ratios(&mut report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

/// The hostile-input section against its own `up` (see `bench_hostile`).
async fn hostile(up: &UpProcess, quick: bool) -> anyhow::Result<Value> {
    let data = up.data_dir();
    let tokens = std::fs::read_to_string(data.join("tokens.csv")).context("read tokens.csv")?;
    let token_of = |pred: &dyn Fn(&str) -> bool| {
        tokens
            .lines()
            .find(|l| pred(l))
            .and_then(|l| l.split(',').next())
            .map(str::to_string)
    };
    let admin = token_of(&|l| l.contains("system:masters")).context("no admin token")?;
    let node = token_of(&|l| l.contains(",system:node:bench-hostile,")).context("no node token")?;
    let port = std::fs::read_to_string(data.join("kubeconfig"))?
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("server: https://127.0.0.1:")
                .map(str::to_string)
        })
        .and_then(|p| p.trim().parse().ok())
        .context("no port in the kubeconfig")?;
    let target = crate::bench_hostile::Target::new(port, &data)?;
    crate::bench_hostile::run(
        &target,
        &admin,
        &node,
        "bench-hostile",
        || up.rss_kb(),
        quick,
    )
    .await
}

/// The node of the bench's `up`.
const BENCH_NODE: &str = "bench-node";

/// A time limit that grows with the number of pods a phase handles.
fn limit(base_s: u64, n: usize, per_pod_ms: u64) -> Duration {
    Duration::from_secs(base_s) + Duration::from_millis(per_pod_ms * n as u64)
}

async fn cluster_sections(
    up: &UpProcess,
    want: impl Fn(&str) -> bool,
    sizes: &Sizes,
    report: &mut Value,
) -> anyhow::Result<()> {
    let client = up.client.clone();
    ensure_namespace(&client, "bench").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let (obs, watch_task) = Observer::start(pods.clone());
    let _watch = AbortOnDrop(watch_task);

    if want("startup") {
        let n = sizes.seq;
        phase(
            "startup",
            limit(120, n, 5_000),
            startup_sequential(up, &pods, &obs, n, report),
        )
        .await?;
        let n = sizes.burst;
        phase(
            "burst",
            limit(120, n, 300),
            startup_burst(up, &pods, &obs, n, report),
        )
        .await?;
    }
    if want("delete") {
        phase(
            "delete",
            limit(60, sizes.del, 5_000),
            deletion(&pods, &obs, sizes.del, report),
        )
        .await?;
        phase(
            "sigkill",
            limit(60, sizes.kill, 5_000),
            sigkill(&pods, &obs, sizes.kill, report),
        )
        .await?;
    }
    if want("api") {
        phase(
            "api",
            limit(120, sizes.list + sizes.api, 20),
            api_section(up, sizes.api, sizes.list, report),
        )
        .await?;
    }
    Ok(())
}

/// Aborts a task when dropped (the observer's watch ends with its phase).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn startup_sequential(
    up: &UpProcess,
    pods: &Api<Pod>,
    obs: &Observer,
    seq_n: usize,
    report: &mut Value,
) -> anyhow::Result<()> {
    // Warm-up, excluded.
    for i in 0..3 {
        let name = format!("warm-{i}");
        pods.create(&PostParams::default(), &pod_json(&name, SLEEP, 1, None)?)
            .await?;
        obs.wait(Duration::from_secs(60), |s| s.running.contains_key(&name))
            .await
            .with_context(|| format!("warm-up pod {name} not Running"))?;
    }
    let (to_running, to_ready, mut names) = sequential_starts(pods, obs, "seq", seq_n).await?;
    println!("## pod startup, {seq_n} pods one after another (process runtime, `sleep`)");
    println!(
        "create -> Running  p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms",
        to_running.pct(50.0),
        to_running.pct(90.0),
        to_running.pct(99.0)
    );
    println!(
        "create -> Ready    p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms",
        to_ready.pct(50.0),
        to_ready.pct(90.0),
        to_ready.pct(99.0)
    );
    let rss_100 = up.rss_kb();
    let sup = up.supervisor_memory();
    println!(
        "RSS of up with {} pods: {:.1} MB; per pod supervisor: RSS {:.2} MB, PSS {:.2} MB ({} supervisors)\n",
        seq_n + 3,
        rss_100 as f64 / 1024.0,
        sup.rss_mb,
        sup.pss_mb,
        sup.processes
    );
    report["startup_sequential"] =
        json!({"create_to_running": to_running.summary(), "create_to_ready": to_ready.summary()});
    report["footprint"] = json!({"up_rss_mb_with_pods": round(rss_100 as f64 / 1024.0), "pods": seq_n + 3, "supervisor_rss_mb": round(sup.rss_mb), "supervisor_pss_mb": round(sup.pss_mb)});
    names.extend((0..3).map(|i| format!("warm-{i}")));
    delete_all_pods(pods, obs, &names).await
}

/// Creates `n` pods `<prefix>-<i>` one after another, each once the one before is Ready:
/// create -> Running and create -> Ready, and the names.
async fn sequential_starts(
    pods: &Api<Pod>,
    obs: &Observer,
    prefix: &str,
    n: usize,
) -> anyhow::Result<(Samples, Samples, Vec<String>)> {
    let mut to_running = Samples::default();
    let mut to_ready = Samples::default();
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        let t = Instant::now();
        pods.create(&PostParams::default(), &pod_json(&name, SLEEP, 1, None)?)
            .await?;
        obs.wait(Duration::from_secs(60), |s| s.ready.contains_key(&name))
            .await
            .with_context(|| format!("pod {name} not Ready"))?;
        let seen = obs.seen.lock().unwrap_or_else(|p| p.into_inner());
        to_running.push(seen.running[&name] - t);
        to_ready.push(seen.ready[&name] - t);
        names.push(name);
    }
    Ok((to_running, to_ready, names))
}

/// The cost of the pod timelines (issue 19): create -> Running p50 of `n` sequential pods on
/// a cluster with `--timeline=false` and one with it on, alternately (off, on, off, on), in
/// this one run; and the timeline store writes per pod lifecycle (start and delete).
async fn timeline_cost(n: usize) -> anyhow::Result<Value> {
    let mut samples = [Samples::default(), Samples::default()];
    let mut writes = Samples::default();
    for round in 0..4 {
        let on = round % 2 == 1;
        let node = if on { "bench-tl-on" } else { "bench-tl-off" };
        let (up, _) = UpProcess::launch(UpOptions {
            args: vec!["--timeline".into(), on.to_string().into()],
            ..UpOptions::up(node)
        })
        .await?;
        ensure_namespace(&up.client, "bench").await?;
        let pods: Api<Pod> = Api::namespaced(up.client.clone(), "bench");
        let (obs, watch_task) = Observer::start(pods.clone());
        let _watch = AbortOnDrop(watch_task);
        let (_, _, warm) = sequential_starts(&pods, &obs, "warm", 3).await?;
        let (to_running, _, names) = sequential_starts(&pods, &obs, "tl", n).await?;
        delete_all_pods(&pods, &obs, &names).await?;
        delete_all_pods(&pods, &obs, &warm).await?;
        samples[usize::from(on)].0.extend(to_running.0);
        if on {
            // the last batches (exit, removal) land within the writers' window
            tokio::time::sleep(Duration::from_millis(500)).await;
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
                up.client.clone(),
                "bench",
                &podvisor_controllers::timelinegc::timelines_resource(),
            );
            for t in api.list(&Default::default()).await?.items {
                if let Some(w) = t.data.get("writes").and_then(Value::as_f64) {
                    writes.push_ms(w);
                }
            }
        }
        up.stop();
    }
    let (off, on) = (samples[0].pct(50.0), samples[1].pct(50.0));
    println!("## pod timelines: cost ({n} sequential pods x 2 clusters each way, alternating)");
    println!(
        "create -> Running p50: timeline off {off:.1} ms, on {on:.1} ms ({:+.1} %)",
        (on / off - 1.0) * 100.0
    );
    println!(
        "timeline store writes per pod lifecycle (create .. removed): p50 {:.0}, max {:.0}\n",
        writes.pct(50.0),
        writes.pct(100.0)
    );
    Ok(json!({
        "create_to_running_off": samples[0].summary(),
        "create_to_running_on": samples[1].summary(),
        "p50_change_percent": round((on / off - 1.0) * 100.0),
        "writes_per_pod": {"p50": writes.pct(50.0), "max": writes.pct(100.0), "n": writes.0.len()},
    }))
}

/// The bench node's allocatable pods, less the pods bound to it that have not ended.
async fn free_pod_slots(client: &kube::Client) -> anyhow::Result<usize> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let node = nodes.get(BENCH_NODE).await?;
    let allocatable = node
        .status
        .and_then(|s| s.allocatable)
        .and_then(|a| a.get("pods").and_then(|q| q.0.parse::<usize>().ok()))
        .context("the bench node reports no allocatable pods")?;
    let all: Api<Pod> = Api::all(client.clone());
    let used = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={BENCH_NODE}")))
        .await?
        .items
        .iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .count();
    Ok(allocatable.saturating_sub(used))
}

async fn startup_burst(
    up: &UpProcess,
    pods: &Api<Pod>,
    obs: &Observer,
    asked: usize,
    report: &mut Value,
) -> anyhow::Result<()> {
    // The burst is sized to what the node can hold (the bench raises its `--max-pods` to
    // hold the whole burst, so this only matters against a node configured otherwise).
    let free = free_pod_slots(&up.client).await?;
    let burst_n = asked.min(free);
    if burst_n < asked {
        println!("(burst sized to the node's {free} free pod slots instead of {asked})");
    }
    if burst_n == 0 {
        bail!("the bench node has no room for pods");
    }
    let t0 = Instant::now();
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let names: Vec<String> = (0..burst_n).map(|i| format!("burst-{i}")).collect();
    futures::stream::iter(names.clone())
        .map(|name| {
            let pods = pods.clone();
            let created = created.clone();
            async move {
                let t = Instant::now();
                pods.create(&PostParams::default(), &pod_json(&name, SLEEP, 1, None)?)
                    .await?;
                created
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name, t);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    obs.wait_all_running(&names, limit(60, burst_n, 200))
        .await
        .context("burst pods not all Running")?;
    let total = t0.elapsed();
    let mut burst = Samples::default();
    {
        let seen = obs.seen.lock().unwrap_or_else(|p| p.into_inner());
        let created = created.lock().unwrap_or_else(|p| p.into_inner());
        for n in &names {
            burst.push(seen.running[n] - created[n]);
        }
    }
    let rate = burst_n as f64 / total.as_secs_f64();
    let rss_burst = up.rss_kb();
    println!("## pod startup, burst of {burst_n} on one node");
    println!(
        "create -> Running  p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms; all Running after {:.2} s = {:.0} pods/s",
        burst.pct(50.0),
        burst.pct(90.0),
        burst.pct(99.0),
        total.as_secs_f64(),
        rate
    );
    println!(
        "RSS of up with {burst_n} pods: {:.1} MB\n",
        rss_burst as f64 / 1024.0
    );
    report["startup_burst"] = json!({"n": burst_n, "create_to_running": burst.summary(), "total_s": round(total.as_secs_f64()), "pods_per_s": round(rate), "up_rss_mb": round(rss_burst as f64 / 1024.0)});
    delete_all_pods(pods, obs, &names).await
}

async fn deletion(
    pods: &Api<Pod>,
    obs: &Observer,
    del_n: usize,
    report: &mut Value,
) -> anyhow::Result<()> {
    // A process that exits on SIGTERM: delete -> DELETED.
    let honour = ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"];
    let names: Vec<String> = (0..del_n).map(|i| format!("del-{i}")).collect();
    create_all_ready(pods, obs, &names, |n| pod_json(n, &honour, 30, None)).await?;
    let mut deleted = Samples::default();
    for n in &names {
        let t = Instant::now();
        pods.delete(n, &DeleteParams::default()).await?;
        obs.wait(Duration::from_secs(60), |s| s.deleted.contains_key(n))
            .await
            .with_context(|| format!("pod {n} not deleted"))?;
        deleted.push(obs.seen.lock().unwrap_or_else(|p| p.into_inner()).deleted[n] - t);
    }
    println!("## deletion");
    println!(
        "delete (default grace) of a SIGTERM-honouring pod -> DELETED  p50 {:.1} ms  p99 {:.1} ms",
        deleted.pct(50.0),
        deleted.pct(99.0)
    );
    report["delete"] = json!({"term_honouring_to_deleted": deleted.summary()});
    Ok(())
}

/// SIGKILL precision for processes that ignore SIGTERM (grace 2 s).
async fn sigkill(
    pods: &Api<Pod>,
    obs: &Observer,
    kill_n: usize,
    report: &mut Value,
) -> anyhow::Result<()> {
    let tag = format!("pvbench-{}", std::process::id());
    let names: Vec<String> = (0..kill_n).map(|i| format!("kill-{i}")).collect();
    create_all_ready(pods, obs, &names, |n| {
        let marker = format!("{tag}-{n}-");
        let cmd = [
            "sh",
            "-c",
            "trap '' TERM; sleep 100000 & wait",
            marker.as_str(),
        ];
        pod_json(n, &cmd, 2, None)
    })
    .await?;
    let mut overshoot = Samples::default();
    let mut early = 0;
    for n in &names {
        let marker = format!("{tag}-{n}-");
        let pids = processes_matching(|c| c.contains(&marker));
        let Some(&pid) = pids.first() else {
            bail!("no process found for pod {n}");
        };
        let t = Instant::now();
        pods.delete(n, &DeleteParams::default()).await?;
        let died = tokio::task::spawn_blocking(move || {
            let limit = Instant::now() + Duration::from_secs(30);
            while alive(pid) && Instant::now() < limit {
                std::thread::sleep(Duration::from_micros(500));
            }
            Instant::now()
        })
        .await?;
        let deadline = t + Duration::from_secs(2);
        if died < deadline {
            early += 1;
            overshoot.push_ms(-((deadline - died).as_secs_f64() * 1000.0));
        } else {
            overshoot.push(died - deadline);
        }
    }
    obs.wait(Duration::from_secs(60), |s| {
        names.iter().all(|n| s.deleted.contains_key(n))
    })
    .await
    .context("SIGTERM-ignoring pods not deleted")?;
    println!(
        "SIGTERM-ignoring pod, grace 2 s: death minus deadline  p50 {:.1} ms  p99 {:.1} ms  (killed early: {early})\n",
        overshoot.pct(50.0),
        overshoot.pct(99.0)
    );
    report["delete"]["sigkill_overshoot"] = overshoot.summary();
    report["delete"]["killed_early"] = json!(early);
    Ok(())
}

async fn api_section(
    up: &UpProcess,
    api_n: usize,
    list_n: usize,
    report: &mut Value,
) -> anyhow::Result<()> {
    let client = up.client.clone();
    ensure_namespace(&client, "bench-api").await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), "bench-api");
    let mut rates = Vec::new();
    let mut next = 0usize;
    for clients in [1usize, 32] {
        let n = if clients == 1 { api_n / 2 } else { api_n };
        let t0 = Instant::now();
        let start = next;
        next += n;
        create_unschedulable(&api, start..start + n, clients).await?;
        rates.push((clients, n as f64 / t0.elapsed().as_secs_f64()));
    }
    // Fill to list_n pods.
    create_unschedulable(&api, next..list_n.max(next), 32).await?;
    let mut list = Samples::default();
    for _ in 0..10 {
        let t = Instant::now();
        let l = api.list(&ListParams::default()).await?;
        list.push(t.elapsed());
        if l.items.len() < list_n {
            bail!("list returned {} pods, expected {list_n}", l.items.len());
        }
    }
    // The same list read as bytes (no decoding into typed pods): the server's and the
    // transfer's share of the typed list above.
    let mut list_bytes = Samples::default();
    let mut body_len = 0;
    for _ in 0..10 {
        let req = http::Request::get("/api/v1/namespaces/bench-api/pods").body(Vec::new())?;
        let t = Instant::now();
        body_len = client.request_text(req).await?.len();
        list_bytes.push(t.elapsed());
    }
    let mut get = Samples::default();
    for i in 0..200 {
        let t = Instant::now();
        api.get(&format!("api-{}", (i * 37) % list_n)).await?;
        get.push(t.elapsed());
    }
    let rss = up.rss_kb();
    // Watch delivery to 100 watchers.
    ensure_namespace(&client, "bench-watch").await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bench-watch");
    let arrivals: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut tasks = Vec::new();
    let ready = Arc::new(tokio::sync::Barrier::new(101));
    for _ in 0..100 {
        let cms = cms.clone();
        let arrivals = arrivals.clone();
        let ready = ready.clone();
        tasks.push(AbortOnDrop(tokio::spawn(async move {
            let mut s = watcher(cms, watcher::Config::default()).boxed();
            let mut waited = false;
            while let Ok(Some(ev)) = s.try_next().await {
                match ev {
                    watcher::Event::InitDone if !waited => {
                        waited = true;
                        ready.wait().await;
                    }
                    watcher::Event::Apply(cm) => {
                        let name = cm.metadata.name.unwrap_or_default();
                        arrivals
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((name, Instant::now()));
                    }
                    _ => {}
                }
            }
        })));
    }
    ready.wait().await;
    let mut sent = HashMap::new();
    for i in 0..20 {
        let name = format!("w-{i}");
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": name}, "data": {"i": i.to_string()}}),
        )?;
        sent.insert(name, Instant::now());
        cms.create(&PostParams::default(), &cm).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap_or_else(|p| p.into_inner()).len() < 2000
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tasks);
    let mut watch = Samples::default();
    for (name, at) in arrivals.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        if let Some(s) = sent.get(name) {
            watch.push(*at - *s);
        }
    }
    println!("## API");
    for (c, r) in &rates {
        println!("pod creates/s with {c} client(s): {r:.0}");
    }
    println!(
        "list of {list_n} pods: p50 {:.1} ms p99 {:.1} ms (read as bytes, {:.1} MB: p50 {:.1} ms p99 {:.1} ms); get: p50 {:.2} ms p99 {:.2} ms",
        list.pct(50.0),
        list.pct(99.0),
        body_len as f64 / 1e6,
        list_bytes.pct(50.0),
        list_bytes.pct(99.0),
        get.pct(50.0),
        get.pct(99.0)
    );
    println!(
        "watch delivery to 100 watchers ({} deliveries): p50 {:.2} ms p99 {:.2} ms",
        watch.0.len(),
        watch.pct(50.0),
        watch.pct(99.0)
    );
    println!(
        "RSS of up with {list_n} pod objects stored: {:.1} MB\n",
        rss as f64 / 1024.0
    );
    report["api"] = json!({
        "creates_per_s": rates.iter().map(|(c, r)| json!({"clients": c, "per_s": round(*r)})).collect::<Vec<_>>(),
        "list": list.summary(), "list_n": list_n, "list_bytes": list_bytes.summary(), "list_body_mb": round(body_len as f64 / 1e6), "get": get.summary(), "watch_100": watch.summary(),
        "rss_mb_with_objects": round(rss as f64 / 1024.0),
    });
    Ok(())
}

/// What the pods that are not Running show: how many per phase and node binding, and the
/// conditions of one of them.
pub(crate) async fn not_running_summary(pods: &Api<Pod>) -> String {
    let list = match pods.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => return format!("cannot list the pods: {e}"),
    };
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut example = None;
    for p in &list {
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Running" {
            continue;
        }
        let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        *counts
            .entry(format!(
                "{phase} {}",
                if bound { "bound" } else { "unbound" }
            ))
            .or_default() += 1;
        if example.is_none() {
            example = Some(serde_json::to_string(&p.status).unwrap_or_default());
        }
    }
    format!(
        "not Running: {counts:?}; e.g. {}",
        example.unwrap_or_default()
    )
}

/// fork+exec of /bin/true, the same under fresh namespaces, and spawn of `sleep`.
fn floor(n: usize) -> (Samples, Samples, Samples) {
    let mut exec = Samples::default();
    let mut ns = Samples::default();
    let mut spawn = Samples::default();
    for _ in 0..n {
        if crate::bench_proc::interrupted() {
            break;
        }
        let t = Instant::now();
        let _ = Command::new("/bin/true").status();
        exec.push(t.elapsed());
        let t = Instant::now();
        let _ = Command::new("unshare")
            .args(["--pid", "--mount", "--uts", "--ipc", "--fork", "/bin/true"])
            .status();
        ns.push(t.elapsed());
        let t = Instant::now();
        if let Ok(mut c) = Command::new("sleep").arg("1000").spawn() {
            spawn.push(t.elapsed());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    (exec, ns, spawn)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores, {:.1} GiB, Linux {}",
        mem as f64 / 1048576.0,
        kernel.trim()
    )
}

fn ratios(report: &mut Value) {
    let get = |r: &Value, path: &[&str]| -> Option<f64> {
        let mut v = r;
        for p in path {
            v = v.get(*p)?;
        }
        v.as_f64()
    };
    let running = get(
        report,
        &["startup_sequential", "create_to_running", "p50_ms"],
    );
    let floor_ns = get(report, &["floor", "namespaces_true", "p50_ms"]);
    let floor_exec = get(report, &["floor", "exec_true", "p50_ms"]);
    let podman = get(report, &["podman", "run_d", "p50_ms"]);
    let mut out = serde_json::Map::new();
    println!("## ratios");
    if let (Some(r), Some(f)) = (running, floor_exec) {
        println!("create -> Running p50 / fork+exec floor: {:.1}x", r / f);
        out.insert("running_over_exec_floor".into(), json!(round(r / f)));
    }
    if let (Some(r), Some(f)) = (running, floor_ns) {
        println!("create -> Running p50 / namespaces floor: {:.1}x", r / f);
        out.insert("running_over_namespace_floor".into(), json!(round(r / f)));
    }
    if let (Some(r), Some(p)) = (running, podman) {
        println!(
            "podman run -d / podvisor create -> Running (p50): podvisor {:.1}x faster",
            p / r
        );
        out.insert("podman_over_podvisor".into(), json!(round(p / r)));
    }
    report["ratios"] = Value::Object(out);
}
