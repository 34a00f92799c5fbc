//! The bench's `services` part: what the Service path costs and how fast a pod leaves it.
//!
//! * Added latency through a ClusterIP: one echo pod, a new TCP connection per request from
//!   the node, alternating between the pod IP and the Service's cluster IP (the proxy's DNAT
//!   is the only difference).
//! * Endpoint removal → rules applied on every node: pods behind a Service are deleted one
//!   at a time; the time from the delete request until every node's proxy acknowledged an
//!   EndpointSlice version without the pod ready — exactly what the drain barrier waits for
//!   ([`podvisor_agent::drain`]), measured here by the bench's own watches.
//!
//! Like the `network` part it needs a network namespace of the bench's own:
//! `unshare -n sh -c 'ip link set lo up && podvisor bench --only services'`. The bench adds
//! a veth pair with the default route there (traffic to cluster IPs needs a route
//! before the proxy translates it).
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use podvisor_agent::drain;
use serde_json::{Value, json};

use crate::bench::{Observer, Samples, UpProcess, ensure_namespace};

const NS: &str = "bench-svc";

/// The echo app: one accept loop answering with its argument (python3 from the host; no
/// process per connection, so that the proxy's share of a request is not lost in noise).
const ECHO_SERVER: &str = "import socket,sys;s=socket.socket();s.setsockopt(1,2,1);s.bind((\"\",8080));s.listen(1024);n=sys.argv[1].encode()+b\"\\n\";[(c.sendall(n),c.close()) for c,_ in iter(s.accept,None)]";

fn echo_pod(name: &str, app: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "runtimeClassName": "host",
            "containers": [{"name": "main", "image": "busybox",
                "command": ["python3", "-c", ECHO_SERVER, name],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}],
        },
    }))?)
}

fn service(app: &str) -> anyhow::Result<Service> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": app},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": "http"}]},
    }))?)
}

/// One request on a new connection: the answer must not be empty.
fn request(addr: SocketAddr) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    if answer.trim().is_empty() {
        bail!("empty answer from {addr}");
    }
    Ok(t.elapsed())
}

/// A default route in the bench's namespace, if there is none.
fn default_route() -> anyhow::Result<()> {
    let sh = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .with_context(|| cmd.to_string())
    };
    let out = std::process::Command::new("ip")
        .args(["route", "show", "default"])
        .output()
        .context("ip route")?;
    if out.stdout.is_empty()
        && !sh("ip link add pvbench0 type veth peer name pvbench1 && ip link set pvbench1 up && ip link set pvbench0 up && ip route add default dev pvbench0")?
            .success()
    {
        bail!("cannot add a default route in the bench's network namespace");
    }
    Ok(())
}

/// Runs the part; None (with the reason printed) when it cannot run here.
pub async fn run(latency_n: usize, removals: usize) -> anyhow::Result<Option<Value>> {
    println!("## services");
    if !crate::bench_network::own_network_namespace() {
        println!(
            "not measured: the Service proxy programs nftables only in a network namespace of the bench's own:\n  unshare -n sh -c 'ip link set lo up && podvisor bench --only services'\n"
        );
        return Ok(None);
    }
    default_route()?;
    let (up, _) = UpProcess::start_with("bench-svc", true).await?;
    let result = measure(&up, latency_n, removals).await;
    up.stop();
    result.map(Some)
}

async fn measure(up: &UpProcess, latency_n: usize, removals: usize) -> anyhow::Result<Value> {
    let client = up.client.clone();
    ensure_namespace(&client, NS).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let (obs, watch_task) = Observer::start(pods.clone());
    let pp = PostParams::default();
    services.create(&pp, &service("lat")?).await?;
    services.create(&pp, &service("drain")?).await?;
    let mut names = vec!["lat-0".to_string()];
    pods.create(&pp, &echo_pod("lat-0", "lat")?).await?;
    for i in 0..removals + 1 {
        let name = format!("drain-{i}");
        pods.create(&pp, &echo_pod(&name, "drain")?).await?;
        names.push(name);
    }
    obs.wait(Duration::from_secs(180), |s| {
        names.iter().all(|n| s.ready.contains_key(n))
    })
    .await
    .context("echo pods Ready")?;

    // Latency: pod IP vs cluster IP, alternating.
    let pod_ip = pods
        .get("lat-0")
        .await?
        .status
        .and_then(|s| s.pod_ip)
        .context("pod IP")?;
    let cluster_ip = services
        .get("lat")
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .context("cluster IP")?;
    let direct: SocketAddr = format!("{pod_ip}:8080").parse()?;
    let via: SocketAddr = format!("{cluster_ip}:80").parse()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::task::spawn_blocking(move || request(via))
        .await?
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("{via} did not answer within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (pod_lat, svc_lat) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let (mut a, mut b) = (Samples::default(), Samples::default());
        for _ in 0..latency_n {
            a.push(request(direct)?);
            b.push(request(via)?);
        }
        Ok((a, b))
    })
    .await??;
    println!(
        "new connection + answer, pod IP      p50 {:.3} ms  p99 {:.3} ms",
        pod_lat.pct(50.0),
        pod_lat.pct(99.0)
    );
    println!(
        "new connection + answer, cluster IP  p50 {:.3} ms  p99 {:.3} ms",
        svc_lat.pct(50.0),
        svc_lat.pct(99.0)
    );
    println!(
        "the ClusterIP adds                   p50 {:.3} ms",
        svc_lat.pct(50.0) - pod_lat.pct(50.0)
    );

    // Endpoint removal → every node's proxy applied it.
    let mut tasks = tokio::task::JoinSet::new();
    let stop = tokio_util::sync::CancellationToken::new();
    let view = drain::KubeDrainView::start(&client, &mut tasks, stop.clone());
    let mut removal = Samples::default();
    for i in 0..removals {
        let name = format!("drain-{i}");
        let pod = pods.get(&name).await?;
        let ips: Vec<String> = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .into_iter()
            .collect();
        // Wait until this pod is in the caches' slices, ready, and every node caught up.
        let t = Instant::now();
        pods.delete(&name, &DeleteParams::default()).await?;
        match drain::wait(view.as_ref(), &pod, &ips, Duration::from_secs(30)).await {
            drain::Outcome::Drained(_) => removal.push(t.elapsed()),
            other => bail!("{name}: not drained: {other:?}"),
        }
    }
    stop.cancel();
    tasks.shutdown().await;
    println!(
        "endpoint removal -> rules applied on every node ({removals} pods, 1 node)  p50 {:.1} ms  p99 {:.1} ms\n",
        removal.pct(50.0),
        removal.pct(99.0)
    );
    watch_task.abort();
    Ok(json!({
        "pod_ip_request": pod_lat.summary(),
        "cluster_ip_request": svc_lat.summary(),
        "cluster_ip_adds_p50_ms": svc_lat.pct(50.0) - pod_lat.pct(50.0),
        "endpoint_removal_applied": removal.summary(),
    }))
}
