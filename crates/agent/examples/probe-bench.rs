//! Probe cost benchmark: N pods (one container each, one exec liveness probe every second)
//! on the fake runtime, real time. Reports the agent process's CPU over a steady window and
//! the probe period jitter (|interval − period|) p50/p99/max.
//!
//! `cargo run --release -p podvisor-agent --example probe-bench -- [pods=1000] [seconds=20]`

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, PodSpec, Probe};
use podvisor_agent::WallClock;
use podvisor_agent::probe::{ContainerTarget, ProbeDeps, ProbeManager, ProbePod};
use podvisor_runtime::fake::{FakeCall, FakeRuntime};
use podvisor_runtime::{ContainerConfig, ContainerRuntime, ContainerState, SandboxConfig};
use tokio::time::Instant;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pods: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let clock = WallClock::system();
    let rt = Arc::new(FakeRuntime::new(clock.clone()));
    let probe = Probe {
        exec: Some(ExecAction {
            command: Some(vec!["cat".into(), "/tmp/health".into()]),
        }),
        period_seconds: Some(1),
        ..Default::default()
    };
    let mut managers = Vec::with_capacity(pods);
    let mut drains = tokio::task::JoinSet::new();
    for i in 0..pods {
        let uid = format!("pod-{i}");
        rt.create_sandbox(SandboxConfig {
            id: uid.clone(),
            hostname: uid.clone(),
            ..Default::default()
        })
        .await
        .expect("sandbox");
        let id = rt
            .create_container(
                &uid,
                ContainerConfig {
                    name: "app".into(),
                    ..Default::default()
                },
            )
            .await
            .expect("container");
        let st = rt.start_container(&id).await.expect("start");
        let ContainerState::Running { started_at, .. } = st.state else {
            panic!("not running")
        };
        let (mut m, mut updates) = ProbeManager::new(
            ProbePod {
                name: uid.clone(),
                namespace: "bench".into(),
                uid: uid.clone(),
                pod_ip: "127.0.0.1".into(),
                restart_policy: "Always".into(),
            },
            ProbeDeps {
                runtime: rt.clone(),
                clock: clock.clone(),
                // as after an agent restart: the first probes are spread over a period
                agent_started: Some(Instant::now()),
                steps: None,
            },
        );
        m.add_pod(&PodSpec {
            containers: vec![Container {
                name: "app".into(),
                liveness_probe: Some(probe.clone()),
                ..Default::default()
            }],
            ..Default::default()
        });
        m.set_container("app", Some(ContainerTarget::Running { id, started_at }));
        drains.spawn(async move { while updates.recv().await.is_some() {} });
        managers.push(m);
    }
    // warm up, then measure a steady window
    tokio::time::sleep(Duration::from_secs(3)).await;
    rt.clear_calls();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let calls = rt.calls();
    let mut last: std::collections::HashMap<String, Instant> = Default::default();
    let mut jitter = Vec::new();
    let mut execs = 0usize;
    for c in calls {
        if let FakeCall::Exec { id, .. } = c.call {
            execs += 1;
            if let Some(prev) = last.insert(id.0.clone(), c.at) {
                let d = c.at - prev;
                jitter.push(if d > Duration::from_secs(1) {
                    d - Duration::from_secs(1)
                } else {
                    Duration::from_secs(1) - d
                });
            }
        }
    }
    jitter.sort();
    let rate = execs as f64 / wall;
    println!("pods={pods} probes/s={rate:.0} window={wall:.1}s");
    println!(
        "cpu={:.1}% of one core ({:.2}% per 100 probes/s)",
        cpu / wall * 100.0,
        cpu / wall * 100.0 / (rate / 100.0)
    );
    println!(
        "period jitter p50={:?} p99={:?} max={:?} (n={})",
        percentile(&jitter, 0.5),
        percentile(&jitter, 0.99),
        jitter.last().copied().unwrap_or_default(),
        jitter.len()
    );
    for m in &mut managers {
        m.remove_pod();
    }
    drop(managers);
    drains.abort_all();
}
