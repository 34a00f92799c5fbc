//! The agent against the in-process API server (memory store) and the fake runtime: Node and
//! Lease, the pod lifecycle through the watch, events, logs through the API server's proxy,
//! restart of the agent.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use podvisor_agent::{Agent, AgentConfig, WallClock};
use podvisor_apiserver::testing::{memory_server, publish_root_ca};
use podvisor_runtime::fake::{Attempt, FakeRuntime, FakeScript};
use podvisor_testkit as testkit;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: podvisor_apiserver::ApiServer,
    admin: Client,
    node_client: Client,
    node_token: String,
    rt: Arc<FakeRuntime>,
    dir: tempfile::TempDir,
    clock: WallClock,
}

async fn cluster(paused: bool) -> Cluster {
    let server = memory_server().await;
    publish_root_ca(&server, "default").await;
    let admin = server.in_process_client(&server.admin_token());
    let node_token = server.ensure_node_token("node-1").expect("node token");
    let node_client = server.in_process_client(&node_token);
    let dir = tempfile::tempdir().unwrap();
    let clock = if paused {
        WallClock::tokio(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
    } else {
        WallClock::system()
    };
    let rt = Arc::new(FakeRuntime::with_log_dir(
        clock.clone(),
        dir.path().join("logs"),
    ));
    Cluster {
        _server: server,
        admin,
        node_client,
        node_token,
        rt,
        dir,
        clock,
    }
}

impl Cluster {
    fn config(&self) -> AgentConfig {
        let mut c = AgentConfig::new(
            "node-1",
            "127.0.0.1".parse().unwrap(),
            self.dir.path().join("state"),
        );
        c.node_token = self.node_token.clone();
        c.clock = self.clock.clone();
        c
    }

    fn start_agent(&self, config: AgentConfig) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let agent = Agent::new(self.node_client.clone(), self.rt.clone(), config);
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            agent.run(s).await.expect("agent runs");
        });
        (stop, task)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), "default")
    }
}

/// Pod `name` bound to `node-1` with the named containers.
fn pod(name: &str, containers: &[&str], grace: Option<i64>) -> Pod {
    containers
        .iter()
        .fold(testkit::pod(name).node_name("node-1"), |p, c| {
            p.container(testkit::container(c))
        })
        .with(|p| {
            p.spec
                .as_mut()
                .expect("spec")
                .termination_grace_period_seconds = grace;
        })
        .build()
}

use podvisor_testkit::wait_some as eventually;

fn phase(p: &Pod) -> Option<String> {
    p.status.as_ref().and_then(|s| s.phase.clone())
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

#[tokio::test]
async fn node_lease_pod_lifecycle_events_and_logs() {
    let c = cluster(false).await;
    c.rt.script(
        "app",
        FakeScript::always(
            Attempt::forever()
                .on_stop_exit(Duration::from_millis(300), 0)
                .logs(["hello", "world"]),
        ),
    );
    let (stop, task) = c.start_agent(c.config());

    let nodes: Api<Node> = Api::all(c.admin.clone());
    let node = eventually("node", Duration::from_secs(10), || async {
        nodes.get_opt("node-1").await.ok().flatten()
    })
    .await;
    let ready_cond = podvisor_testkit::node_ready(&node).expect("Ready condition");
    assert_eq!(
        (ready_cond.status.as_str(), ready_cond.reason.as_deref()),
        ("True", Some("KubeletReady"))
    );
    let st = node.status.unwrap();
    let port = st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port;
    assert!(port > 0);
    let leases: Api<Lease> = Api::namespaced(c.admin.clone(), "kube-node-lease");
    let lease = eventually("lease", Duration::from_secs(10), || async {
        leases.get_opt("node-1").await.ok().flatten()
    })
    .await;
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("node-1")
    );

    let pods = c.pods();
    let created = pods
        .create(&PostParams::default(), &pod("web", &["app"], Some(30)))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let running = eventually("running and ready", Duration::from_secs(10), || async {
        pods.get("web")
            .await
            .ok()
            .filter(|p| phase(p).as_deref() == Some("Running") && ready(p))
    })
    .await;
    let st = running.status.unwrap();
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(
        st.container_statuses.unwrap()[0]
            .container_id
            .as_deref()
            .unwrap()
            .starts_with("podvisor://")
    );

    // logs through the API server's pods/log proxy
    let logs = pods.logs("web", &LogParams::default()).await.expect("logs");
    assert_eq!(logs, "hello\nworld\n");
    let err = pods
        .logs(
            "web",
            &LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("previous terminated container \"app\" in pod \"web\" not found"),
        "{err}"
    );

    // graceful delete: Terminating, then gone once the process exited
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("pod removed", Duration::from_secs(10), || async {
        matches!(pods.get_opt("web").await, Ok(None)).then_some(())
    })
    .await;
    assert!(!c.rt.has_sandbox(&uid));

    let events: Api<Event> = Api::namespaced(c.admin.clone(), "default");
    let evs = eventually("events", Duration::from_secs(10), || async {
        let l = events.list(&ListParams::default()).await.ok()?;
        let reasons: Vec<String> = l.items.iter().filter_map(|e| e.reason.clone()).collect();
        reasons.iter().any(|r| r == "Killing").then_some(l.items)
    })
    .await;
    let started = evs
        .iter()
        .find(|e| e.reason.as_deref() == Some("Started"))
        .expect("Started event");
    assert_eq!(started.involved_object.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        started.involved_object.field_path.as_deref(),
        Some("spec.containers{app}")
    );
    assert_eq!(
        started.source.as_ref().unwrap().component.as_deref(),
        Some("kubelet")
    );
    assert_eq!(
        started.source.as_ref().unwrap().host.as_deref(),
        Some("node-1")
    );
    assert_eq!(started.count, Some(1));

    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn agent_restart_readopts_and_force_delete_while_away_kills_the_orphan() {
    let c = cluster(false).await;
    let (stop, task) = c.start_agent(c.config());
    let pods = c.pods();
    let a = pods
        .create(&PostParams::default(), &pod("a", &["app"], None))
        .await
        .unwrap();
    let b = pods
        .create(&PostParams::default(), &pod("b", &["app"], None))
        .await
        .unwrap();
    for name in ["a", "b"] {
        eventually("running", Duration::from_secs(10), || async {
            pods.get(name)
                .await
                .ok()
                .filter(|p| phase(p).as_deref() == Some("Running"))
        })
        .await;
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(c.rt.running_count(), 2, "shutdown leaves pods running");
    // b is force-deleted while the agent is away
    podvisor_testkit::delete_now(&pods, "b").await;
    c.rt.clear_calls();
    let (stop, task) = c.start_agent(c.config());
    let b_uid = b.metadata.uid.unwrap();
    eventually("orphan removed", Duration::from_secs(10), || async {
        (!c.rt.has_sandbox(&b_uid)).then_some(())
    })
    .await;
    assert!(c.rt.has_sandbox(a.metadata.uid.as_deref().unwrap()));
    let restarted = c.rt.mutating_calls().into_iter().any(|call| {
        matches!(
            call,
            podvisor_runtime::fake::FakeCall::StartContainer { .. }
                | podvisor_runtime::fake::FakeCall::CreateContainer { .. }
        )
    });
    assert!(!restarted, "an agent restart restarts nothing");
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn drain_on_shutdown_stops_pods_and_writes_terminal_status() {
    let c = cluster(false).await;
    c.rt.script(
        "app",
        FakeScript::always(Attempt::forever().on_stop_exit(Duration::from_millis(100), 0)),
    );
    let mut cfg = c.config();
    cfg.drain_on_shutdown = true;
    let (stop, task) = c.start_agent(cfg);
    let pods = c.pods();
    pods.create(&PostParams::default(), &pod("d", &["app"], Some(5)))
        .await
        .unwrap();
    eventually("running", Duration::from_secs(10), || async {
        pods.get("d")
            .await
            .ok()
            .filter(|p| phase(p).as_deref() == Some("Running"))
    })
    .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("drain ends")
        .unwrap();
    assert_eq!(c.rt.running_count(), 0);
    let p = pods.get("d").await.unwrap();
    assert_eq!(phase(&p).as_deref(), Some("Succeeded"));
    assert_eq!(p.status.unwrap().reason.as_deref(), Some("Terminated"));
}

/// The in-process client has no sockets: the agent's pod lifecycle runs under paused time.
#[tokio::test(start_paused = true)]
async fn paused_time_crash_loop_through_the_api() {
    let c = cluster(true).await;
    c.rt.script(
        "app",
        FakeScript::always(Attempt::exits_after(Duration::from_secs(1), 1)),
    );
    let mut cfg = c.config();
    cfg.log_server_addr = "127.0.0.1:0".parse().unwrap();
    let (stop, task) = c.start_agent(cfg);
    let pods = c.pods();
    pods.create(&PostParams::default(), &pod("crash", &["app"], None))
        .await
        .unwrap();
    let p = eventually("crash loop", Duration::from_secs(120), || async {
        pods.get("crash").await.ok().filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| cs[0].restart_count >= 3)
        })
    })
    .await;
    assert_eq!(phase(&p).as_deref(), Some("Running"));
    // repeated events are aggregated: one BackOff event whose count grows
    let events: Api<Event> = Api::namespaced(c.admin.clone(), "default");
    let backoff = eventually("aggregated BackOff", Duration::from_secs(600), || async {
        let l = events.list(&ListParams::default()).await.ok()?;
        let b: Vec<Event> = l
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("BackOff"))
            .collect();
        (b.len() == 1 && b[0].count.unwrap_or(0) >= 2).then(|| b[0].clone())
    })
    .await;
    assert_eq!(backoff.type_.as_deref(), Some("Warning"));
    assert!(backoff.last_timestamp > backoff.first_timestamp);
    stop.cancel();
    task.await.unwrap();
}

/// Heartbeats under paused time: the Lease is renewed every 10 s, node status is written at
/// least every minute.
#[tokio::test(start_paused = true)]
async fn lease_renewed_every_interval_and_node_status_at_least_every_minute() {
    let c = cluster(true).await;
    let (stop, task) = c.start_agent(c.config());
    let leases: Api<Lease> = Api::namespaced(c.admin.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(c.admin.clone());
    let renew = |l: Lease| l.spec.and_then(|s| s.renew_time).map(|t| t.0);
    let first = eventually("lease", Duration::from_secs(30), || async {
        leases
            .get_opt("node-1")
            .await
            .ok()
            .flatten()
            .and_then(renew)
    })
    .await;
    let heartbeat = |n: Node| {
        podvisor_testkit::node_ready(&n)?
            .last_heartbeat_time
            .as_ref()
            .map(|t| t.0)
    };
    let hb0 = eventually("node", Duration::from_secs(30), || async {
        nodes
            .get_opt("node-1")
            .await
            .ok()
            .flatten()
            .and_then(heartbeat)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    let later = leases.get("node-1").await.ok().and_then(renew).unwrap();
    let renewed = later.duration_since(first);
    assert!(
        renewed >= jiff::SignedDuration::from_secs(20),
        "renewed every 10 s: {renewed:?}"
    );
    tokio::time::sleep(Duration::from_secs(50)).await;
    let hb1 = nodes.get("node-1").await.ok().and_then(heartbeat).unwrap();
    assert!(
        hb1.duration_since(hb0) >= jiff::SignedDuration::from_secs(60),
        "{hb0} → {hb1}"
    );
    stop.cancel();
    task.await.unwrap();
}

/// A Ready condition overwritten on the server (the node lifecycle controller's `Unknown`)
/// is put right at the next status tick (10 s), not at the next one-minute report.
#[tokio::test(start_paused = true)]
async fn node_status_overwritten_on_the_server_is_restored_at_the_next_tick() {
    use kube::api::{Patch, PatchParams};
    let c = cluster(true).await;
    let (stop, task) = c.start_agent(c.config());
    let nodes: Api<Node> = Api::all(c.admin.clone());
    let ready =
        |n: &Node| podvisor_testkit::node_ready(n).map(|c| (c.status.clone(), c.reason.clone()));
    eventually("node ready", Duration::from_secs(30), || async {
        let n = nodes.get_opt("node-1").await.ok().flatten()?;
        (ready(&n)?.0 == "True").then_some(())
    })
    .await;
    // the agent has just written; the next one-minute report is far away
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut n = nodes.get("node-1").await.expect("node");
    for cond in n.status.as_mut().unwrap().conditions.as_mut().unwrap() {
        cond.status = "Unknown".into();
        cond.reason = Some("NodeStatusUnknown".into());
        cond.message = Some("Kubelet stopped posting node status.".into());
    }
    let patch = serde_json::json!({ "status": { "conditions": n.status.unwrap().conditions } });
    nodes
        .patch_status("node-1", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("overwrite");
    let got = nodes.get("node-1").await.expect("node");
    assert_eq!(ready(&got).unwrap().0, "Unknown");
    tokio::time::sleep(Duration::from_secs(12)).await;
    let got = nodes.get("node-1").await.expect("node");
    assert_eq!(
        ready(&got).unwrap(),
        ("True".to_string(), Some("KubeletReady".to_string())),
        "restored within one status tick"
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn logs_follow_previous_and_timestamps_through_the_proxy() {
    use futures::{AsyncBufReadExt, StreamExt};
    let c = cluster(false).await;
    c.rt.script(
        "app",
        FakeScript::sequence(vec![
            Attempt::exits_after(Duration::from_millis(200), 1).logs(["first life"]),
            Attempt::forever().logs(["second life"]),
        ]),
    );
    let (stop, task) = c.start_agent(c.config());
    let pods = c.pods();
    pods.create(&PostParams::default(), &pod("logs", &["app"], None))
        .await
        .unwrap();
    eventually("restarted once", Duration::from_secs(10), || async {
        pods.get("logs").await.ok().filter(|p| {
            phase(p).as_deref() == Some("Running")
                && p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|cs| cs[0].restart_count == 1)
        })
    })
    .await;
    let previous = pods
        .logs(
            "logs",
            &LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(previous, "first life\n");
    let stamped = pods
        .logs(
            "logs",
            &LogParams {
                timestamps: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (ts, text) = stamped.trim_end().split_once(' ').unwrap();
    assert_eq!(text, "second life");
    assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");

    // follow: new lines stream until the container exits
    let current =
        c.rt.find_container(
            &pods.get("logs").await.unwrap().metadata.uid.unwrap(),
            "app",
        )
        .unwrap();
    let mut lines = pods
        .log_stream(
            "logs",
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .lines();
    assert_eq!(lines.next().await.unwrap().unwrap(), "second life");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&current.log_path)
            .unwrap();
        writeln!(f, "2026-01-01T00:00:00.000000000Z stdout P par").unwrap();
        writeln!(f, "2026-01-01T00:00:00.000000000Z stdout F tial").unwrap();
    }
    let next = tokio::time::timeout(Duration::from_secs(5), lines.next())
        .await
        .expect("a followed line");
    assert_eq!(next.unwrap().unwrap(), "partial");
    c.rt.crash(&current.id, 0);
    let end = tokio::time::timeout(Duration::from_secs(5), lines.next())
        .await
        .expect("the stream ends");
    assert!(end.is_none());
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn many_pods_on_one_node() {
    const N: usize = 100;
    let c = cluster(false).await;
    c.rt.set_recording(false);
    let (stop, task) = c.start_agent(c.config());
    let pods = c.pods();
    let t0 = tokio::time::Instant::now();
    for i in 0..N {
        pods.create(
            &PostParams::default(),
            &pod(&format!("p{i}"), &["app"], Some(1)),
        )
        .await
        .unwrap();
    }
    let created = t0.elapsed();
    eventually("all running", Duration::from_secs(60), || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let l = pods.list(&ListParams::default()).await.ok()?;
        (l.items
            .iter()
            .filter(|p| phase(p).as_deref() == Some("Running") && ready(p))
            .count()
            == N)
            .then_some(())
    })
    .await;
    let started = t0.elapsed();
    let t1 = tokio::time::Instant::now();
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    eventually("all gone", Duration::from_secs(60), || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        pods.list(&ListParams::default())
            .await
            .ok()
            .filter(|l| l.items.is_empty())
            .map(|_| ())
    })
    .await;
    println!(
        "{N} pods: created in {created:?}; all Running+Ready in {started:?}; all deleted (graceful) in {:?}",
        t1.elapsed()
    );
    assert_eq!(c.rt.sandbox_count(), 0);
    stop.cancel();
    task.await.unwrap();
}

/// Fencing (docs/design/0007-node-fencing.md): the control plane declares the node dead (its
/// Lease's epoch bumped, holder cleared). The agent's next renewal is refused (409): it
/// kills its pod through the runtime, adopts the new epoch (persisted), takes its Lease
/// again, records `Fenced` on the Node and the pod, and runs the pod afresh.
#[tokio::test]
async fn a_node_declared_dead_kills_its_pods_and_rejoins_under_the_new_epoch() {
    let c = cluster(false).await;
    c.rt.script("app", FakeScript::always(Attempt::forever()));
    c.rt.set_recording(true);
    let mut config = c.config();
    config.lease_interval = Duration::from_millis(200);
    config.fence_after = Some(Duration::from_secs(30));
    let (stop, task) = c.start_agent(config);
    let pods = c.pods();
    pods.create(&PostParams::default(), &pod("db", &["app"], Some(1)))
        .await
        .unwrap();
    let running = || async {
        pods.get("db")
            .await
            .ok()
            .filter(|p| phase(p).as_deref() == Some("Running") && ready(p))
    };
    let before = eventually("db running", Duration::from_secs(10), running).await;
    let container_id = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .and_then(|c| c.container_id.clone())
    };
    let first = container_id(&before).expect("container id");
    assert_eq!(c.rt.sandbox_count(), 1);

    let leases: Api<Lease> = Api::namespaced(c.admin.clone(), "kube-node-lease");
    let bump = serde_json::json!({"spec": {"leaseTransitions": 1, "holderIdentity": null}});
    leases
        .patch(
            "node-1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&bump),
        )
        .await
        .unwrap();
    eventually(
        "lease taken again under epoch 1",
        Duration::from_secs(10),
        || async {
            let s = leases.get("node-1").await.ok()?.spec?;
            (s.lease_transitions == Some(1) && s.holder_identity.as_deref() == Some("node-1"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(c.dir.path().join("state/lease-epoch")).unwrap(),
        "1"
    );
    // The old sandbox was killed (SIGKILL, removed); the pod runs in a new one.
    eventually("db running again", Duration::from_secs(10), || async {
        running()
            .await
            .filter(|p| container_id(p).is_some_and(|id| id != first))
    })
    .await;
    assert_eq!(c.rt.sandbox_count(), 1);
    assert!(
        c.rt.calls().iter().any(|r| matches!(
            &r.call,
            podvisor_runtime::fake::FakeCall::RemoveSandbox { .. }
        )),
        "the sandbox was removed"
    );
    let uid = before.metadata.uid.unwrap();
    let events: Api<Event> = Api::all(c.admin.clone());
    eventually("Fenced events", Duration::from_secs(10), || async {
        let l = events.list(&ListParams::default()).await.ok()?;
        let fenced: Vec<(String, String, String)> = l
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Fenced"))
            .map(|e| {
                (
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.uid.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect();
        let why = "the control plane declared it dead (lease epoch 0 -> 1)";
        (fenced.contains(&(
            "Node".into(),
            "node-1".into(),
            format!(
                "Node node-1 {why}: it killed its 1 pod(s) with SIGKILL; it holds its lease \
                 again (epoch 1)"
            ),
        )) && fenced.contains(&(
            "Pod".into(),
            uid.clone(),
            format!(
                "Killed (SIGKILL): node node-1 {why}; no copy of the pod ran while the node did \
                 not hold its lease"
            ),
        )))
        .then_some(())
    })
    .await;
    stop.cancel();
    task.await.unwrap();
}
