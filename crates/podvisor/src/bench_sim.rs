//! Simulated clusters for the bench: one process holding an API server on a temporary redb
//! store, the scheduler, (optionally) the controller manager, and many agents on the fake
//! runtime, each a Node with its own token. No pod runs a process, so what is measured is
//! the control plane: the `scale` part (pods straight onto 100 nodes) and the `jobs` part (a
//! Job of many completions against a ReplicaSet of as many replicas).

#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use podvisor_runtime::fake::{Attempt, FakeRuntime, FakeScript};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::bench::{Observer, SLEEP, ensure_namespace, not_running_summary, pod_json, round};
use crate::bench_proc::rss_kb;

/// One simulated cluster; everything it started ends when it is dropped.
pub(crate) struct SimCluster {
    /// A cluster-admin client (in process, no TLS).
    pub(crate) admin: kube::Client,
    server: podvisor_apiserver::ApiServer,
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    _dir: tempfile::TempDir,
}

/// How a simulated container named [`JOB_CONTAINER`] behaves: it exits 0 after this long.
const JOB_RUN: Duration = Duration::from_millis(200);
/// The container name the `jobs` part gives its Job's pods.
const JOB_CONTAINER: &str = "work";

impl SimCluster {
    /// Starts the server, the scheduler, `nodes` agents and, with `controllers`, the
    /// controller manager, and waits until every node is Ready.
    pub(crate) async fn start(nodes: usize, controllers: bool) -> anyhow::Result<SimCluster> {
        use podvisor_apiserver::{ApiServer, ApiServerConfig};

        let dir = tempfile::Builder::new()
            .prefix("podvisor-bench-sim")
            .tempdir()?;
        let store = podvisor_store::redb_store::RedbStore::open(dir.path().join("store.redb"))?;
        let server = ApiServer::new(
            Arc::new(store),
            ApiServerConfig::new(dir.path().join("server")),
        )
        .await?;
        let admin = server.in_process_client(&server.admin_token());
        // The pods ask for the `host` RuntimeClass, as `up` and `server` provide it.
        crate::run::ensure_host_runtime_class(admin.clone()).await;
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        let scheduler = podvisor_scheduler::Scheduler::new(
            admin.clone(),
            podvisor_scheduler::SchedulerConfig::default(),
        );
        let s = stop.clone();
        tasks.spawn(async move {
            let _ = scheduler.run(s).await;
        });
        if controllers {
            let config = podvisor_controllers::ControllerConfig {
                // Pods mount their service-account token with the cluster's CA.
                root_ca: Some(server.ca_pem()),
                ..Default::default()
            };
            let manager = podvisor_controllers::ControllerManager::new(admin.clone(), config);
            let s = stop.clone();
            tasks.spawn(async move {
                let _ = manager.run(s).await;
            });
        }
        let clock = podvisor_kit::WallClock::system();
        for i in 0..nodes {
            let name = format!("sim-{i:03}");
            let token = server.ensure_node_token(&name)?;
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                127,
                1,
                (i / 250) as u8,
                (i % 250 + 1) as u8,
            ));
            let mut config = podvisor_agent::AgentConfig::new(
                name.clone(),
                ip,
                dir.path().join("agents").join(&name),
            );
            config.node_token = token.clone();
            config.log_server_addr = std::net::SocketAddr::new(ip, 0);
            let runtime = Arc::new(FakeRuntime::new(clock.clone()));
            runtime.set_recording(false);
            runtime.script(
                JOB_CONTAINER,
                FakeScript::always(Attempt::exits_after(JOB_RUN, 0)),
            );
            // As in `up`: the drain barrier's watches under the proxy's identity.
            let proxy = server.in_process_client(&server.ensure_proxy_token(&name)?);
            let agent =
                podvisor_agent::Agent::new(server.in_process_client(&token), runtime, config)
                    .with_service_client(proxy);
            let s = stop.clone();
            tasks.spawn(async move {
                let _ = agent.run(s).await;
            });
        }
        let sim = SimCluster {
            admin,
            server,
            stop,
            tasks,
            _dir: dir,
        };
        sim.wait_nodes_ready(nodes).await?;
        Ok(sim)
    }

    async fn wait_nodes_ready(&self, nodes: usize) -> anyhow::Result<()> {
        let node_api: Api<Node> = Api::all(self.admin.clone());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let list = node_api.list(&ListParams::default()).await?;
            let ready = list
                .items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .count();
            if ready == nodes {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {ready} of {nodes} simulated nodes became Ready");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Write requests (create, update, patch, delete, apply) the API server has answered,
    /// from its own `apiserver_request_total`.
    async fn writes(&self) -> anyhow::Result<f64> {
        let text = self
            .admin
            .request_text(http::Request::get("/metrics").body(Vec::new())?)
            .await?;
        let writes = ["POST", "PUT", "PATCH", "DELETE", "APPLY"];
        Ok(text
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
            .filter(|l| writes.iter().any(|v| l.contains(&format!("verb=\"{v}\""))))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Stops every agent, the controllers and the scheduler and waits for them, before the
    /// data dir goes.
    async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// The resident memory of this whole process (server, controllers and agents).
    fn rss_mb(&self) -> f64 {
        rss_kb(std::process::id() as i32) as f64 / 1024.0
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tasks.abort_all();
    }
}

/// The `scale` part: simulated nodes (the API server on the embedded redb store, the
/// scheduler and `nodes` agents on the fake runtime, all in this process) and
/// `nodes × per_node` pods created at once. Within `limit`, or it fails with what the pods
/// that are not Running show.
pub(crate) async fn scale(nodes: usize, per_node: usize, limit: Duration) -> anyhow::Result<Value> {
    let started = Instant::now();
    let sim = SimCluster::start(nodes, false).await?;
    eprintln!(
        "scale: {nodes} simulated nodes Ready; creating {} pods",
        nodes * per_node
    );
    ensure_namespace(&sim.admin, "sim").await?;
    // What the root CA publisher (a controller, not run here) puts in every namespace: the
    // pods' service account volume projects it.
    let root_ca: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "kube-root-ca.crt"},
        "data": {"ca.crt": sim.server.ca_pem()},
    }))?;
    Api::<ConfigMap>::namespaced(sim.admin.clone(), "sim")
        .create(&PostParams::default(), &root_ca)
        .await?;
    let pods: Api<Pod> = Api::namespaced(sim.admin.clone(), "sim");
    let (obs, watch_task) = Observer::start(pods.clone());
    let total = nodes * per_node;
    let names: Vec<String> = (0..total).map(|i| format!("sim-{i}")).collect();
    let t0 = Instant::now();
    futures::stream::iter(names.clone())
        .map(|name| {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &pod_json(&name, SLEEP, 1, None)?)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let created = t0.elapsed();
    eprintln!(
        "scale: pods created in {:.1} s; waiting for Running",
        created.as_secs_f64()
    );
    let mut said = Instant::now();
    let left = limit.saturating_sub(started.elapsed() + Duration::from_secs(5));
    let waited = obs
        .wait(left, |s| {
            if said.elapsed() >= Duration::from_secs(10) {
                said = Instant::now();
                eprintln!(
                    "scale: {} of {total} pods Running after {:.0} s",
                    s.running.len(),
                    t0.elapsed().as_secs_f64()
                );
            }
            s.running.len() >= total && names.iter().all(|n| s.running.contains_key(n))
        })
        .await;
    if let Err(e) = waited {
        return Err(e.context(format!(
            "simulated pods not all Running; {}",
            not_running_summary(&pods).await
        )));
    }
    let all_running = t0.elapsed();
    let rss = sim.rss_mb();
    println!("## scale: {nodes} simulated nodes (fake runtime) x {per_node} pods, one process");
    println!(
        "{total} pods created in {:.2} s; all Running after {:.2} s ({:.0} pods/s); RSS of the whole simulated cluster {:.1} MB\n",
        created.as_secs_f64(),
        all_running.as_secs_f64(),
        total as f64 / all_running.as_secs_f64(),
        rss
    );
    watch_task.abort();
    sim.shutdown().await;
    Ok(
        json!({"nodes": nodes, "pods": total, "created_s": round(created.as_secs_f64()), "all_running_s": round(all_running.as_secs_f64()), "rss_mb": round(rss)}),
    )
}

/// The `jobs` part: a Job of `n` completions at parallelism 50 (each pod exits 0 after
/// 200 ms) against a ReplicaSet of `n` replicas, on the same simulated nodes with the
/// controller manager: time to Complete / all Ready, and API writes per pod for each.
pub(crate) async fn jobs(nodes: usize, n: usize) -> anyhow::Result<Value> {
    let sim = SimCluster::start(nodes, true).await?;
    ensure_namespace(&sim.admin, "sim").await?;
    eprintln!("jobs: {nodes} simulated nodes Ready; a Job of {n} completions");

    let job_api: Api<Job> = Api::namespaced(sim.admin.clone(), "sim");
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "bench-job"},
        "spec": {"completions": n, "parallelism": 50, "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "runtimeClassName": "host",
                "containers": [{"name": JOB_CONTAINER, "image": "busybox", "command": ["true"]}]}}},
    }))?;
    let before = sim.writes().await?;
    let t0 = Instant::now();
    job_api.create(&PostParams::default(), &job).await?;
    let deadline = t0 + Duration::from_secs(30 + n as u64 / 4);
    loop {
        let j = job_api.get("bench-job").await?;
        let conds = j.status.as_ref().and_then(|s| s.conditions.clone());
        let done = |t: &str| {
            conds
                .iter()
                .flatten()
                .any(|c| c.type_ == t && c.status == "True")
        };
        if done("Complete") {
            break;
        }
        if done("Failed") {
            bail!("the bench Job failed: {:?}", j.status);
        }
        if Instant::now() > deadline {
            bail!(
                "the bench Job did not complete: {:?}; its pods: {}",
                j.status,
                not_running_summary(&Api::namespaced(sim.admin.clone(), "sim")).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job_s = t0.elapsed().as_secs_f64();
    let job_writes = sim.writes().await? - before;
    let job_rss = sim.rss_mb();

    eprintln!("jobs: a ReplicaSet of {n} replicas");
    let rs_api: Api<ReplicaSet> = Api::namespaced(sim.admin.clone(), "sim");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "bench-rs"},
        "spec": {"replicas": n, "selector": {"matchLabels": {"app": "bench-rs"}},
            "template": {"metadata": {"labels": {"app": "bench-rs"}},
                "spec": {"runtimeClassName": "host",
                    "containers": [{"name": "main", "image": "busybox", "command": SLEEP}]}}},
    }))?;
    let before = sim.writes().await?;
    let t0 = Instant::now();
    rs_api.create(&PostParams::default(), &rs).await?;
    let deadline = t0 + Duration::from_secs(30 + n as u64 / 4);
    loop {
        let r = rs_api.get("bench-rs").await?;
        let ready = r
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if usize::try_from(ready).unwrap_or(0) >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the bench ReplicaSet reached only {ready} of {n} ready; its pods: {}",
                not_running_summary(&Api::namespaced(sim.admin.clone(), "sim")).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rs_s = t0.elapsed().as_secs_f64();
    let rs_writes = sim.writes().await? - before;
    let rss = sim.rss_mb();

    sim.shutdown().await;
    let per = |w: f64| w / n as f64;
    println!(
        "## jobs: Job of {n} completions (parallelism 50, pods exit 0 after {} ms) vs ReplicaSet of {n}, {nodes} simulated nodes",
        JOB_RUN.as_millis()
    );
    println!(
        "Job Complete after {job_s:.2} s ({:.0} completions/s); {job_writes:.0} API writes ({:.1} per pod)",
        n as f64 / job_s,
        per(job_writes)
    );
    println!(
        "ReplicaSet all Ready after {rs_s:.2} s ({:.0} pods/s); {rs_writes:.0} API writes ({:.1} per pod)",
        n as f64 / rs_s,
        per(rs_writes)
    );
    println!(
        "RSS of the whole simulated cluster: {job_rss:.1} MB after the Job, {rss:.1} MB after the ReplicaSet\n"
    );
    Ok(json!({
        "nodes": nodes, "n": n,
        "job": {"complete_s": round(job_s), "writes": job_writes, "writes_per_pod": round(per(job_writes)), "rss_mb": round(job_rss)},
        "replicaset": {"ready_s": round(rs_s), "writes": rs_writes, "writes_per_pod": round(per(rs_writes)), "rss_mb": round(rss)},
    }))
}
