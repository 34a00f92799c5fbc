//! `GET /stats/resource`: what the node and its pods use, for the API server's
//! `metrics.k8s.io` (the kubelet's `/metrics/resource` as metrics-server reads it).
//!
//! CPU is a rate: each report compares cumulative readings (the node's busy time from
//! `/proc/stat`, each running container's CPU time from its cgroup,
//! [`ContainerRuntime::container_stats`]) with those of the previous report, kept here.
//! When the previous readings are younger than [`MIN_WINDOW`] or older than
//! [`MAX_WINDOW`] (or there are none), two readings [`MIN_WINDOW`] apart are taken, so a
//! report always covers a window of at least that. Memory is the working set now (the node's
//! `MemTotal - MemAvailable`). Containers are found by the labels the agent gives them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use podvisor_api::resource_metrics::{ContainerUsage, PodUsage, ResourceReport, Usage, cpu_rate};
use podvisor_runtime::{ContainerId, ContainerRuntime, ContainerState};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::common::{authorized, plain};
use crate::clock::WallClock;
use crate::pod::{LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID, spec_container_name};

/// The shortest window a CPU rate is measured over.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// Older previous readings are not used (the rate would be a long average).
pub const MAX_WINDOW: Duration = Duration::from_secs(30);

/// Cumulative readings at one instant.
#[derive(Clone, Debug)]
struct Readings {
    at: Instant,
    node_cpu_nanos: u64,
    node_memory: u64,
    /// Per running container: its pod, its name, CPU time, working set.
    containers: HashMap<ContainerId, ContainerReading>,
}

#[derive(Clone, Debug)]
struct ContainerReading {
    namespace: String,
    pod: String,
    uid: String,
    name: String,
    cpu_nanos: u64,
    memory: u64,
}

#[derive(Clone)]
struct StatsState {
    runtime: Arc<dyn ContainerRuntime>,
    token: Arc<str>,
    clock: WallClock,
    last: Arc<Mutex<Option<Readings>>>,
}

/// The route of the resource report.
pub(crate) fn router(
    runtime: Arc<dyn ContainerRuntime>,
    token: Arc<str>,
    clock: WallClock,
) -> Router {
    Router::new()
        .route("/stats/resource", get(report))
        .with_state(StatsState {
            runtime,
            token,
            clock,
            last: Arc::default(),
        })
}

async fn report(State(st): State<StatsState>, headers: HeaderMap) -> Response {
    if !authorized(&st.token, &headers) {
        return plain(StatusCode::UNAUTHORIZED, "Unauthorized".into());
    }
    // One report at a time: each one's readings are the next one's start.
    let mut last = st.last.lock().await;
    let usable = last
        .as_ref()
        .filter(|r| (MIN_WINDOW..=MAX_WINDOW).contains(&r.at.elapsed()))
        .cloned();
    let before = match usable {
        Some(r) => r,
        None => {
            let r = read(st.runtime.as_ref()).await;
            tokio::time::sleep(MIN_WINDOW).await;
            r
        }
    };
    let after = read(st.runtime.as_ref()).await;
    let now = serde_json::to_value(crate::clock::to_time(st.clock.now()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let report = compare(&before, &after, &now);
    *last = Some(after);
    axum::Json(report).into_response()
}

/// The rates between two readings.
fn compare(before: &Readings, after: &Readings, timestamp: &str) -> ResourceReport {
    let secs = after.at.duration_since(before.at).as_secs_f64();
    let mut pods: Vec<PodUsage> = Vec::new();
    let mut ids: Vec<&ContainerId> = after.containers.keys().collect();
    ids.sort();
    for id in ids {
        let c = &after.containers[id];
        // A container first seen now has no rate yet: it is left out, as metrics-server does.
        let Some(b) = before.containers.get(id) else {
            continue;
        };
        let usage = ContainerUsage {
            name: c.name.clone(),
            usage: Usage {
                cpu_nano_cores: cpu_rate(b.cpu_nanos, c.cpu_nanos, secs),
                memory_working_set_bytes: c.memory,
            },
        };
        match pods.iter_mut().find(|p| p.uid == c.uid) {
            Some(p) => p.containers.push(usage),
            None => pods.push(PodUsage {
                namespace: c.namespace.clone(),
                name: c.pod.clone(),
                uid: c.uid.clone(),
                containers: vec![usage],
            }),
        }
    }
    for p in &mut pods {
        p.containers.sort_by(|a, b| a.name.cmp(&b.name));
    }
    ResourceReport {
        timestamp: timestamp.to_string(),
        window_seconds: secs,
        node: Usage {
            cpu_nano_cores: cpu_rate(before.node_cpu_nanos, after.node_cpu_nanos, secs),
            memory_working_set_bytes: after.node_memory,
        },
        pods,
    }
}

/// Reads everything now.
async fn read(runtime: &dyn ContainerRuntime) -> Readings {
    let mut containers = HashMap::new();
    for sb in runtime.list().await.unwrap_or_default() {
        let label = |k: &str| sb.config.labels.get(k).cloned().unwrap_or_default();
        let (namespace, pod, uid) = (
            label(LABEL_POD_NAMESPACE),
            label(LABEL_POD_NAME),
            label(LABEL_POD_UID),
        );
        if pod.is_empty() {
            continue;
        }
        for c in &sb.containers {
            if !matches!(c.state, ContainerState::Running { .. }) {
                continue;
            }
            let Ok(s) = runtime.container_stats(&c.id).await else {
                continue;
            };
            containers.insert(
                c.id.clone(),
                ContainerReading {
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    uid: uid.clone(),
                    name: spec_container_name(&c.config).to_string(),
                    cpu_nanos: s.cpu_usage_nanos,
                    memory: s.memory_working_set_bytes,
                },
            );
        }
    }
    let (node_cpu_nanos, node_memory) = node_readings();
    Readings {
        at: Instant::now(),
        node_cpu_nanos,
        node_memory,
        containers,
    }
}

/// The node's busy CPU time (ns, every CPU) and memory in use (bytes).
fn node_readings() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    (busy_nanos(&stat), used_memory(&meminfo))
}

/// The busy time of the `cpu` line of `/proc/stat` (all but idle and iowait), in ns
/// (USER_HZ is 100 on Linux).
fn busy_nanos(stat: &str) -> u64 {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user already)
    let busy: u64 = f.iter().take(8).sum::<u64>()
        - f.get(3).copied().unwrap_or(0)
        - f.get(4).copied().unwrap_or(0);
    busy * 10_000_000
}

/// `MemTotal - MemAvailable` of `/proc/meminfo`, in bytes.
fn used_memory(meminfo: &str) -> u64 {
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    kib("MemTotal:").saturating_sub(kib("MemAvailable:")) * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_readings_parse_proc() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n";
        assert_eq!(busy_nanos(stat), (100 + 5 + 50 + 3 + 2) * 10_000_000);
        let meminfo = "MemTotal:       16000 kB\nMemFree:  100 kB\nMemAvailable:   6000 kB\n";
        assert_eq!(used_memory(meminfo), 10_000 * 1024);
        assert_eq!((busy_nanos(""), used_memory("")), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn rates_cover_containers_seen_in_both_readings() {
        let t0 = Instant::now();
        let reading = |cpu: u64| ContainerReading {
            namespace: "d".into(),
            pod: "p".into(),
            uid: "u".into(),
            name: "c".into(),
            cpu_nanos: cpu,
            memory: 4096,
        };
        let before = Readings {
            at: t0,
            node_cpu_nanos: 0,
            node_memory: 1,
            containers: HashMap::from([(ContainerId("a".into()), reading(1_000_000_000))]),
        };
        let after = Readings {
            at: t0 + Duration::from_secs(2),
            node_cpu_nanos: 4_000_000_000,
            node_memory: 2,
            containers: HashMap::from([
                (ContainerId("a".into()), reading(2_000_000_000)),
                (ContainerId("new".into()), reading(5)),
            ]),
        };
        let r = compare(&before, &after, "now");
        assert_eq!(r.window_seconds, 2.0);
        assert_eq!(r.node.cpu_nano_cores, 2_000_000_000);
        assert_eq!(r.node.memory_working_set_bytes, 2);
        assert_eq!(r.pods.len(), 1);
        assert_eq!(
            r.pods[0].containers.len(),
            1,
            "the new container has no rate yet"
        );
        assert_eq!(r.pods[0].containers[0].usage.cpu_nano_cores, 500_000_000);
        assert_eq!(r.pods[0].containers[0].usage.memory_working_set_bytes, 4096);
    }
}
