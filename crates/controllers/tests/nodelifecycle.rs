//! Node failure against an in-process API server under paused tokio time (spec §5, groups
//! H and N of §8): the node lifecycle controller, NoExecute taint eviction and PodGC. The
//! test plays the kubelets (Node status, Lease renewals, pod status) and a minimal
//! scheduler (binding), so minutes of node failure run in milliseconds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use podvisor_controllers::{ControllerConfig, ControllerManager};
use podvisor_kit::WallClock;
use podvisor_testkit::wait_until;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often [`wait_until`] polls (paused time).
const POLL: Duration = Duration::from_millis(250);

const EVICT_KEY: &str = "kubernetes.io/e2e-evict-taint-key";
const EVICT_VALUE: &str = "evictTaintVal";

/// The wall clock of the test: the real time at the start plus paused tokio time (the API
/// server stamps `creationTimestamp` with the real clock, which barely moves meanwhile).
#[allow(clippy::disallowed_methods)]
fn test_clock() -> WallClock {
    WallClock::tokio(std::time::SystemTime::now())
}

struct Cluster {
    client: Client,
    clock: WallClock,
    stop: CancellationToken,
    manager: Option<JoinHandle<Result<(), podvisor_controllers::ControllerError>>>,
    kubelets: BTreeMap<String, CancellationToken>,
    tasks: Vec<JoinHandle<()>>,
    _server: podvisor_apiserver::ApiServer,
}

impl Cluster {
    async fn start() -> Cluster {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut ControllerConfig)) -> Cluster {
        let server = podvisor_apiserver::testing::memory_server().await;
        let client = server.in_process_client(&server.admin_token());
        let clock = test_clock();
        let mut config = ControllerConfig {
            clock: clock.clone(),
            ..Default::default()
        };
        tweak(&mut config);
        let stop = CancellationToken::new();
        let manager =
            tokio::spawn(ControllerManager::new(client.clone(), config).run(stop.clone()));
        Cluster {
            client,
            clock,
            stop,
            manager: Some(manager),
            kubelets: BTreeMap::new(),
            tasks: Vec::new(),
            _server: server,
        }
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Registers a Ready node and starts its "kubelet": a lease renewal every 10 s.
    async fn add_node(&mut self, name: &str) {
        let now = self.clock.timestamp();
        let cond = |ty: &str, status: &str, reason: &str| {
            json!({"type": ty, "status": status, "reason": reason,
                "lastHeartbeatTime": now.to_string(), "lastTransitionTime": now.to_string()})
        };
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                cond("Ready", "True", "KubeletReady"),
            ]}
        }))
        .expect("node");
        let created = self
            .nodes()
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
        let mut with_status = created;
        with_status.status = node.status.clone();
        self.nodes()
            .replace_status(name, &PostParams::default(), &with_status)
            .await
            .expect("node status");
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                "renewTime": MicroTime(now)}
        }))
        .expect("lease");
        leases
            .create(&PostParams::default(), &lease)
            .await
            .expect("create lease");
        self.start_kubelet(name);
    }

    /// The node's "kubelet": renews the lease every 10 s until killed.
    fn start_kubelet(&mut self, name: &str) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let stop = CancellationToken::new();
        self.kubelets.insert(name.to_string(), stop.clone());
        let clock = self.clock.clone();
        let name = name.to_string();
        self.tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
                if let Ok(mut l) = leases.get(&name).await {
                    if let Some(s) = l.spec.as_mut() {
                        s.renew_time = Some(MicroTime(clock.timestamp()));
                    }
                    let _ = leases.replace(&name, &PostParams::default(), &l).await;
                }
            }
        }));
    }

    /// The node's agent dies: no more lease renewals or status updates.
    fn kill_kubelet(&self, name: &str) {
        self.kubelets[name].cancel();
    }

    /// A minimal scheduler: binds unbound pods to the first node (by name) that is Ready
    /// and carries no taint.
    fn start_binder(&mut self) {
        let pods = self.pods();
        let nodes = self.nodes();
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                let Ok(ns) = nodes.list(&ListParams::default()).await else {
                    continue;
                };
                let mut ns = ns.items;
                ns.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                let target = ns.iter().find(|n| {
                    ready(n).as_deref() == Some("True")
                        && n.spec
                            .as_ref()
                            .and_then(|s| s.taints.as_ref())
                            .is_none_or(|t| t.is_empty())
                });
                let Some(target) = target.and_then(|n| n.metadata.name.clone()) else {
                    continue;
                };
                let Ok(ps) = pods.list(&ListParams::default()).await else {
                    continue;
                };
                for p in ps.items {
                    if p.metadata.deletion_timestamp.is_none()
                        && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none()
                    {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        let binding = json!({"apiVersion": "v1", "kind": "Binding",
                            "metadata": {"name": name},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": target}});
                        let _ = pods
                            .create_subresource::<_, serde_json::Value>(
                                "binding",
                                &name,
                                &PostParams::default(),
                                &binding,
                            )
                            .await;
                    }
                }
            }
        }));
    }

    /// Plays the kubelet for a pod once: Running and Ready.
    async fn run_pod(&self, name: &str) {
        let now = self.clock.timestamp().to_string();
        self.pods()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                ]}})),
            )
            .await
            .expect("pod status");
    }

    /// Creates a pod bound to `node` with the given extra tolerations, Running and Ready.
    async fn pod_on(&self, name: &str, node: &str, tolerations: serde_json::Value) {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"group": name}},
            "spec": {"nodeName": node, "tolerations": tolerations,
                "containers": [{"name": "pause", "image": "pause"}]}
        }))
        .expect("pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        self.run_pod(name).await;
    }

    async fn pod(&self, name: &str) -> Option<Pod> {
        self.pods().get_opt(name).await.expect("get pod")
    }

    async fn node(&self, name: &str) -> Node {
        self.nodes().get(name).await.expect("get node")
    }

    /// Adds or removes the e2e test taint on `node`.
    async fn set_evict_taint(&self, node: &str, present: bool) {
        let mut n = self.node(node).await;
        let taints = n
            .spec
            .get_or_insert_with(Default::default)
            .taints
            .get_or_insert_with(Vec::new);
        taints.retain(|t| t.key != EVICT_KEY);
        if present {
            taints.push(Taint {
                key: EVICT_KEY.into(),
                value: Some(EVICT_VALUE.into()),
                effect: "NoExecute".into(),
                time_added: None,
            });
        }
        self.nodes()
            .replace(node, &PostParams::default(), &n)
            .await
            .expect("update taints");
    }

    async fn stop(mut self) {
        for k in self.kubelets.values() {
            k.cancel();
        }
        self.stop.cancel();
        if let Some(m) = self.manager.take() {
            m.await.expect("join").expect("manager");
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

/// `(kind/name, reason, message)` of every event.
async fn events(c: &Cluster) -> Vec<(String, String, String)> {
    Api::<Event>::all(c.client.clone())
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| {
            (
                format!(
                    "{}/{}",
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default()
                ),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

async fn has_event(c: &Cluster, object: &str, reason: &str, message: &str) -> bool {
    events(c)
        .await
        .iter()
        .any(|e| e.0 == object && e.1 == reason && e.2 == message)
}

fn ready(n: &Node) -> Option<String> {
    podvisor_testkit::node_ready(n).map(|c| c.status.clone())
}

fn pod_condition(p: &Pod, ty: &str) -> Option<(String, Option<String>, Option<String>)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn taint_keys(n: &Node, effect: &str) -> Vec<String> {
    let mut v: Vec<String> = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == effect)
        .map(|t| t.key.clone())
        .collect();
    v.sort();
    v
}

fn evicted(p: &Option<Pod>) -> bool {
    p.as_ref()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

fn toleration(seconds: Option<i64>) -> serde_json::Value {
    let mut t = json!({"key": EVICT_KEY, "operator": "Equal", "value": EVICT_VALUE,
        "effect": "NoExecute"});
    if let Some(s) = seconds {
        t["tolerationSeconds"] = json!(s);
    }
    json!([t])
}

/// Asserts `f` stays false for `dur`, polling every second.
async fn never_within<F, Fut>(what: &str, dur: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < dur {
        assert!(!f().await, "{what} after {:?}", start.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Node lifecycle (§5.2)
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn silent_node_goes_unknown_after_the_grace_period_then_its_pods_are_evicted() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.add_node("node-b").await;
    c.pod_on("p", "node-b", json!([])).await;
    // The admission plugin added the 300 s defaults.
    let tolerations = c
        .pod("p")
        .await
        .and_then(|p| p.spec?.tolerations)
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        assert!(
            tolerations.iter().any(|t| t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some("NoExecute")
                && t.toleration_seconds == Some(300)),
            "{tolerations:?}"
        );
    }
    // Healthy nodes stay healthy well past the grace period.
    tokio::time::sleep(Duration::from_secs(125)).await;
    assert_eq!(ready(&c.node("node-b").await).as_deref(), Some("True"));

    // Agent B dies 5 s after its last renewal (at 120 s).
    c.kill_kubelet("node-b");
    let gone = wait_until("node-b Unknown", Duration::from_secs(80), POLL, || async {
        ready(&c.node("node-b").await).as_deref() == Some("Unknown")
    })
    .await;
    // The renewal is noticed at the next monitor pass (≤ 5 s), the grace of 50 s runs from
    // there and is checked every 5 s: Unknown 50–60 s after the renewal.
    assert!(
        gone >= Duration::from_secs(44) && gone <= Duration::from_secs(56),
        "Unknown {gone:?} after the kill, 5 s after the last renewal"
    );
    let b = c.node("node-b").await;
    for ty in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let cond = b
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == ty))
            .unwrap_or_else(|| panic!("{ty} missing"));
        assert_eq!(cond.status, "Unknown", "{ty}");
        assert_eq!(cond.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            cond.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
    }
    assert_eq!(ready(&c.node("node-a").await).as_deref(), Some("True"));

    // Taints, NoSchedule and (rate limited, first token free) NoExecute.
    wait_until(
        "unreachable taints",
        Duration::from_secs(2),
        POLL,
        || async {
            let n = c.node("node-b").await;
            taint_keys(&n, "NoSchedule") == ["node.kubernetes.io/unreachable"]
                && taint_keys(&n, "NoExecute") == ["node.kubernetes.io/unreachable"]
        },
    )
    .await;
    assert!(taint_keys(&c.node("node-a").await, "NoExecute").is_empty());

    // The pod: Ready=False, phase unchanged.
    wait_until("pod Ready=False", Duration::from_secs(6), POLL, || async {
        c.pod("p")
            .await
            .and_then(|p| pod_condition(&p, "Ready"))
            .is_some_and(|(s, _, _)| s == "False")
    })
    .await;
    let p = c.pod("p").await.expect("pod");
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    assert!(p.metadata.deletion_timestamp.is_none());

    // 300 s of default toleration, then DisruptionTarget + graceful delete.
    never_within(
        "pod evicted before its toleration",
        Duration::from_secs(290),
        || async { evicted(&c.pod("p").await) },
    )
    .await;
    wait_until("pod evicted", Duration::from_secs(15), POLL, || async {
        evicted(&c.pod("p").await)
    })
    .await;
    let p = c.pod("p").await.expect("terminating pod stays: no kubelet");
    assert_eq!(
        pod_condition(&p, "DisruptionTarget"),
        Some((
            "True".into(),
            Some("DeletionByTaintManager".into()),
            Some("Taint manager: deleting due to NoExecute taint".into())
        ))
    );
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_returning_node_loses_its_taints_and_keeps_its_pods() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.add_node("node-b").await;
    c.pod_on("p", "node-b", json!([])).await;
    c.kill_kubelet("node-b");
    wait_until("NoExecute taint", Duration::from_secs(80), POLL, || async {
        !taint_keys(&c.node("node-b").await, "NoExecute").is_empty()
    })
    .await;
    // The agent comes back: Ready=True with a new heartbeat.
    let mut n = c.node("node-b").await;
    let now = Time(c.clock.timestamp());
    for cond in n
        .status
        .as_mut()
        .and_then(|s| s.conditions.as_mut())
        .into_iter()
        .flatten()
    {
        cond.status = if cond.type_ == "Ready" {
            "True"
        } else {
            "False"
        }
        .into();
        cond.reason = Some("KubeletReady".into());
        cond.message = None;
        cond.last_heartbeat_time = Some(now.clone());
        cond.last_transition_time = Some(now.clone());
    }
    c.nodes()
        .replace_status("node-b", &PostParams::default(), &n)
        .await
        .expect("status");
    c.start_kubelet("node-b");
    wait_until("taints removed", Duration::from_secs(7), POLL, || async {
        let n = c.node("node-b").await;
        taint_keys(&n, "NoExecute").is_empty() && taint_keys(&n, "NoSchedule").is_empty()
    })
    .await;
    // The eviction was cancelled with the taint.
    never_within("pod evicted", Duration::from_secs(400), || async {
        evicted(&c.pod("p").await)
    })
    .await;
    c.stop().await;
}

/// N11: when every node stops heartbeating, no NoExecute taint remains and nothing is
/// evicted (master disruption mode), even for a node that was tainted before the others
/// went silent.
#[tokio::test(start_paused = true)]
async fn n11_all_nodes_down_means_no_evictions() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.add_node("node-b").await;
    c.pod_on("pa", "node-a", json!([])).await;
    c.pod_on("pb", "node-b", json!([])).await;
    // B first: with A still Ready, B is tainted.
    c.kill_kubelet("node-b");
    wait_until("B tainted", Duration::from_secs(80), POLL, || async {
        taint_keys(&c.node("node-b").await, "NoExecute") == ["node.kubernetes.io/unreachable"]
    })
    .await;
    // Then A: every node is down.
    c.kill_kubelet("node-a");
    wait_until("A Unknown", Duration::from_secs(80), POLL, || async {
        ready(&c.node("node-a").await).as_deref() == Some("Unknown")
    })
    .await;
    wait_until(
        "B's NoExecute taint removed",
        Duration::from_secs(2),
        POLL,
        || async { taint_keys(&c.node("node-b").await, "NoExecute").is_empty() },
    )
    .await;
    never_within(
        "a NoExecute taint or an eviction",
        Duration::from_secs(600),
        || async {
            let a = c.node("node-a").await;
            let b = c.node("node-b").await;
            !taint_keys(&a, "NoExecute").is_empty()
                || !taint_keys(&b, "NoExecute").is_empty()
                || evicted(&c.pod("pa").await)
                || evicted(&c.pod("pb").await)
        },
    )
    .await;
    // The scheduler still sees them unreachable.
    for n in ["node-a", "node-b"] {
        assert_eq!(
            taint_keys(&c.node(n).await, "NoSchedule"),
            ["node.kubernetes.io/unreachable"]
        );
    }
    // Pods were still marked not ready.
    for p in ["pa", "pb"] {
        let pod = c.pod(p).await.expect("pod");
        assert_eq!(
            pod_condition(&pod, "Ready").map(|c| c.0).as_deref(),
            Some("False")
        );
    }
    c.stop().await;
}

// ---------------------------------------------------------------------------------------
// NoExecute taint eviction, group H (upstream test/e2e/node/taints.go timings)
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn h1_evicts_pods_from_tainted_nodes() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.pod_on("h1", "node-a", json!([])).await;
    c.set_evict_taint("node-a", true).await;
    let took = wait_until("h1 evicted", Duration::from_secs(65), POLL, || async {
        evicted(&c.pod("h1").await)
    })
    .await;
    assert!(took < Duration::from_secs(2), "evicted after {took:?}");
    let p = c.pod("h1").await.expect("pod");
    assert_eq!(
        pod_condition(&p, "DisruptionTarget")
            .and_then(|c| c.1)
            .as_deref(),
        Some("DeletionByTaintManager")
    );
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn h2_does_not_evict_pods_with_unbounded_tolerations() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.pod_on("h2", "node-a", toleration(None)).await;
    c.set_evict_taint("node-a", true).await;
    never_within("h2 evicted", Duration::from_secs(65), || async {
        evicted(&c.pod("h2").await)
    })
    .await;
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn h3_eventually_evicts_pods_with_finite_tolerations() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.pod_on("h3", "node-a", toleration(Some(70))).await;
    c.set_evict_taint("node-a", true).await;
    never_within("h3 evicted early", Duration::from_secs(65), || async {
        evicted(&c.pod("h3").await)
    })
    .await;
    let took = wait_until("h3 evicted", Duration::from_secs(65), POLL, || async {
        evicted(&c.pod("h3").await)
    })
    .await;
    // 70 s after the taint: about 5 s after the first 65.
    assert!(
        took <= Duration::from_secs(7),
        "evicted {took:?} after 65 s"
    );
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn h4_removing_the_taint_cancels_the_eviction() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.pod_on("h4", "node-a", toleration(Some(10))).await;
    c.set_evict_taint("node-a", true).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.set_evict_taint("node-a", false).await;
    never_within("h4 evicted", Duration::from_secs(75), || async {
        evicted(&c.pod("h4").await)
    })
    .await;
    assert!(
        has_event(
            &c,
            "Pod/h4",
            "TaintManagerEviction",
            "Cancelling deletion of Pod default/h4"
        )
        .await,
        "{:?}",
        events(&c).await
    );
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn h5_only_evicts_pods_without_tolerations() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.pod_on("h5-1", "node-a", json!([])).await;
    c.pod_on("h5-2", "node-a", toleration(None)).await;
    c.set_evict_taint("node-a", true).await;
    wait_until("h5-1 evicted", Duration::from_secs(65), POLL, || async {
        evicted(&c.pod("h5-1").await)
    })
    .await;
    never_within("h5-2 evicted", Duration::from_secs(65), || async {
        evicted(&c.pod("h5-2").await)
    })
    .await;
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn h6_evicts_pods_after_their_min_toleration_seconds() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.pod_on("h6-1", "node-a", toleration(Some(5))).await;
    c.pod_on("h6-2", "node-a", toleration(Some(25))).await;
    c.set_evict_taint("node-a", true).await;
    let start = Instant::now();
    wait_until("h6-1 evicted", Duration::from_secs(110), POLL, || async {
        evicted(&c.pod("h6-1").await)
    })
    .await;
    let first = start.elapsed();
    assert!(!evicted(&c.pod("h6-2").await), "h6-2 evicted with h6-1");
    wait_until("h6-2 evicted", Duration::from_secs(110), POLL, || async {
        evicted(&c.pod("h6-2").await)
    })
    .await;
    let second = start.elapsed();
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(7)).contains(&first),
        "{first:?}"
    );
    assert!(
        (Duration::from_secs(25)..Duration::from_secs(27)).contains(&second),
        "{second:?}"
    );
    c.stop().await;
}

// ---------------------------------------------------------------------------------------
// Replacement (§5.6) and PodGC (§5.5): N9, N10
// ---------------------------------------------------------------------------------------

fn workload(kind: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "replicas": 1, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "pause"}],
                    "tolerations": [{"key": "node.kubernetes.io/unreachable",
                        "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 20}]}
            }
        }
    })
}

async fn app_pods(c: &Cluster, app: &str) -> Vec<Pod> {
    c.pods()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list")
        .items
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref()?.node_name.as_deref()
}

/// N9: a ReplicaSet pod on a lost node is replaced at once, under a new name, on the other
/// node, while the old pod stays Terminating.
#[tokio::test(start_paused = true)]
async fn n9_replicaset_replaces_an_evicted_pod_at_once_under_a_new_name() {
    let mut c = Cluster::start().await;
    // Only node-b exists at first, so the pod lands there.
    c.add_node("node-b").await;
    c.start_binder();
    let rs: ReplicaSet = serde_json::from_value(workload("ReplicaSet", "web")).expect("rs");
    Api::<ReplicaSet>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .expect("create rs");
    wait_until(
        "pod bound to node-b",
        Duration::from_secs(10),
        POLL,
        || async {
            app_pods(&c, "web")
                .await
                .iter()
                .any(|p| node_of(p) == Some("node-b"))
        },
    )
    .await;
    let old = app_pods(&c, "web").await.remove(0);
    let old_name = old.metadata.name.clone().expect("name");
    c.run_pod(&old_name).await;
    c.add_node("node-a").await;

    c.kill_kubelet("node-b");
    let killed = Instant::now();
    wait_until(
        "old pod evicted",
        Duration::from_secs(120),
        POLL,
        || async { evicted(&c.pod(&old_name).await) },
    )
    .await;
    let evicted_after = killed.elapsed();
    // ≤ 10 s since the last renewal + 50 s grace + 5 s period + 20 s toleration.
    assert!(
        evicted_after <= Duration::from_secs(86),
        "{evicted_after:?}"
    );
    let replaced = wait_until(
        "replacement on node-a",
        Duration::from_secs(5),
        POLL,
        || async {
            app_pods(&c, "web").await.iter().any(|p| {
                p.metadata.name.as_deref() != Some(&old_name)
                    && node_of(p) == Some("node-a")
                    && p.metadata.deletion_timestamp.is_none()
            })
        },
    )
    .await;
    assert!(
        replaced <= Duration::from_secs(2),
        "replaced {replaced:?} after the eviction"
    );
    let old = c.pod(&old_name).await.expect("old pod stays Terminating");
    assert!(old.metadata.deletion_timestamp.is_some());
    assert_eq!(app_pods(&c, "web").await.len(), 2);
    c.stop().await;
}

/// N10: a StatefulSet replica on a lost node is not replaced while it is Terminating; once
/// the Node is deleted PodGC fails and force-deletes it (after the quarantine) and the
/// replacement comes back under the same name on the other node.
#[tokio::test(start_paused = true)]
async fn n10_statefulset_waits_for_podgc_after_node_delete() {
    let mut c = Cluster::start().await;
    c.add_node("node-b").await;
    c.start_binder();
    let sts: StatefulSet = serde_json::from_value(workload("StatefulSet", "db")).expect("sts");
    Api::<StatefulSet>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &sts)
        .await
        .expect("create sts");
    wait_until(
        "db-0 bound to node-b",
        Duration::from_secs(10),
        POLL,
        || async {
            c.pod("db-0")
                .await
                .is_some_and(|p| node_of(&p) == Some("node-b"))
        },
    )
    .await;
    c.run_pod("db-0").await;
    let old_uid = c
        .pod("db-0")
        .await
        .and_then(|p| p.metadata.uid)
        .expect("uid");
    c.add_node("node-a").await;

    // Record what happens to the old db-0.
    let seen: Arc<Mutex<Vec<(bool, Pod)>>> = Arc::default();
    {
        let seen = seen.clone();
        let api = c.pods();
        let stop = c.stop.clone();
        c.tasks.push(tokio::spawn(async move {
            use futures::StreamExt;
            let cfg = watcher::Config::default().fields("metadata.name=db-0");
            let mut events = watcher(api, cfg).default_backoff().boxed();
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = events.next() => ev,
                };
                match ev {
                    Some(Ok(watcher::Event::Apply(p))) => {
                        seen.lock().expect("lock").push((false, p))
                    }
                    Some(Ok(watcher::Event::Delete(p))) => {
                        seen.lock().expect("lock").push((true, p))
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        }));
    }

    c.kill_kubelet("node-b");
    wait_until("db-0 evicted", Duration::from_secs(120), POLL, || async {
        evicted(&c.pod("db-0").await)
    })
    .await;
    // No replacement while the old object is Terminating.
    never_within(
        "db-0 replaced while terminating",
        Duration::from_secs(120),
        || async { c.pod("db-0").await.and_then(|p| p.metadata.uid) != Some(old_uid.clone()) },
    )
    .await;

    c.nodes()
        .delete("node-b", &DeleteParams::default())
        .await
        .expect("delete node");
    let deleted = Instant::now();
    wait_until("db-0 recreated", Duration::from_secs(90), POLL, || async {
        c.pod("db-0")
            .await
            .is_some_and(|p| p.metadata.uid != Some(old_uid.clone()))
    })
    .await;
    let took = deleted.elapsed();
    // 40 s quarantine, checked every 20 s.
    assert!(
        (Duration::from_secs(40)..=Duration::from_secs(62)).contains(&took),
        "recreated {took:?} after the node delete"
    );
    wait_until(
        "new db-0 on node-a",
        Duration::from_secs(5),
        POLL,
        || async {
            c.pod("db-0")
                .await
                .is_some_and(|p| node_of(&p) == Some("node-a"))
        },
    )
    .await;
    // PodGC wrote Failed + DeletionByPodGC before the (force) DELETE.
    let seen = seen.lock().expect("lock").clone();
    let old: Vec<&(bool, Pod)> = seen
        .iter()
        .filter(|(_, p)| p.metadata.uid.as_deref() == Some(old_uid.as_str()))
        .collect();
    let last_update = old
        .iter()
        .rev()
        .find(|(del, _)| !*del)
        .map(|(_, p)| p)
        .expect("updates of the old pod");
    assert_eq!(
        last_update.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed")
    );
    assert_eq!(
        pod_condition(last_update, "DisruptionTarget"),
        Some((
            "True".into(),
            Some("DeletionByPodGC".into()),
            Some("PodGC: node no longer exists".into())
        ))
    );
    assert!(old.iter().any(|(del, _)| *del), "old pod deleted");
    c.stop().await;
}

/// A node that never posts a Ready condition goes Unknown (`NodeStatusNeverUpdated`) after
/// the startup grace period.
#[tokio::test(start_paused = true)]
async fn a_node_that_never_posts_status_goes_unknown_after_the_startup_grace() {
    let c = Cluster::start().await;
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "silent"}
    }))
    .expect("node");
    c.nodes()
        .create(&PostParams::default(), &node)
        .await
        .expect("create");
    let took = wait_until(
        "conditions Unknown",
        Duration::from_secs(80),
        POLL,
        || async { ready(&c.node("silent").await).as_deref() == Some("Unknown") },
    )
    .await;
    // 60 s from the node's creation, noticed at the next 5 s monitor pass.
    assert!(
        (Duration::from_secs(59)..=Duration::from_secs(66)).contains(&took),
        "Unknown {took:?} after creation"
    );
    let n = c.node("silent").await;
    let conds = n.status.and_then(|s| s.conditions).unwrap_or_default();
    assert_eq!(conds.len(), 4, "{conds:?}");
    for cond in conds {
        assert_eq!(cond.status, "Unknown");
        assert_eq!(cond.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(
            cond.message.as_deref(),
            Some("Kubelet never posted node status.")
        );
    }
    c.stop().await;
}

/// PodGC: a terminating pod on a not-ready node with the out-of-service taint is marked
/// Failed and force-deleted.
#[tokio::test(start_paused = true)]
async fn podgc_force_deletes_terminating_pods_on_out_of_service_nodes() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.add_node("node-b").await;
    c.pod_on("p", "node-b", toleration(None)).await;
    c.kill_kubelet("node-b");
    wait_until("node-b Unknown", Duration::from_secs(80), POLL, || async {
        ready(&c.node("node-b").await).as_deref() == Some("Unknown")
    })
    .await;
    c.pods()
        .delete("p", &DeleteParams::default())
        .await
        .expect("delete");
    // Terminating, and it stays so: nobody runs it down.
    never_within(
        "terminating pod removed",
        Duration::from_secs(60),
        || async { c.pod("p").await.is_none() },
    )
    .await;
    let mut n = c.node("node-b").await;
    n.spec
        .get_or_insert_with(Default::default)
        .taints
        .get_or_insert_with(Vec::new)
        .push(Taint {
            key: "node.kubernetes.io/out-of-service".into(),
            value: Some("nodeshutdown".into()),
            effect: "NoExecute".into(),
            time_added: None,
        });
    c.nodes()
        .replace("node-b", &PostParams::default(), &n)
        .await
        .expect("taint");
    // At once, not at PodGC's next 20 s period.
    let took = wait_until(
        "pod force-deleted",
        Duration::from_secs(30),
        POLL,
        || async { c.pod("p").await.is_none() },
    )
    .await;
    assert!(took <= Duration::from_secs(1), "{took:?}");
    c.stop().await;
}

/// Node fencing: every Lease carries the grace period; a node silent for it is declared
/// dead — its Lease's epoch (`leaseTransitions`) bumped, `holderIdentity` cleared, a
/// `NodeFenced` event — and a live node's Lease is left alone.
#[tokio::test(start_paused = true)]
async fn a_silent_node_is_declared_dead_with_a_new_lease_epoch() {
    let mut c = Cluster::start().await;
    c.add_node("node-a").await;
    c.add_node("node-b").await;
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
    let lease = |name: &'static str| {
        let leases = leases.clone();
        async move {
            let l = leases.get(name).await.expect("lease");
            let grace = l
                .metadata
                .annotations
                .and_then(|a| a.get("node.podvisor.io/node-monitor-grace-period").cloned());
            let spec = l.spec.unwrap_or_default();
            (grace, spec.lease_transitions, spec.holder_identity)
        }
    };
    wait_until(
        "grace period published",
        Duration::from_secs(6),
        POLL,
        || async {
            lease("node-a").await.0.as_deref() == Some("50s")
                && lease("node-b").await.0.as_deref() == Some("50s")
        },
    )
    .await;
    c.kill_kubelet("node-b");
    wait_until("node-b Unknown", Duration::from_secs(80), POLL, || async {
        ready(&c.node("node-b").await).as_deref() == Some("Unknown")
    })
    .await;
    wait_until(
        "node-b declared dead",
        Duration::from_secs(6),
        POLL,
        || async { lease("node-b").await == (Some("50s".into()), Some(1), None) },
    )
    .await;
    wait_until("NodeFenced event", Duration::from_secs(2), POLL, || {
        has_event(
            &c,
            "Node/node-b",
            "NodeFenced",
            "Node node-b did not renew its lease for 50s: declared dead, lease epoch 0 -> 1; \
             writes of the old epoch are refused",
        )
    })
    .await;
    // Declared dead once: the epoch stays while the node is silent.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(lease("node-b").await.1, Some(1));
    assert_eq!(
        lease("node-a").await,
        (Some("50s".into()), None, Some("node-a".into()))
    );
    c.stop().await;
}

/// PodGC keeps at most `terminated_pod_threshold` terminated pods, deleting the oldest
/// (created within one second here, so the name breaks the tie; the age ordering itself is
/// a unit test of `podgc`).
#[tokio::test(start_paused = true)]
async fn podgc_deletes_the_oldest_terminated_pods_above_the_threshold() {
    let mut c = Cluster::start_with(|cfg| cfg.pod_gc.terminated_pod_threshold = 2).await;
    c.add_node("node-a").await;
    for name in ["t1", "t2", "t3", "t4", "running"] {
        c.pod_on(name, "node-a", json!([])).await;
        if name != "running" {
            c.pods()
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
                )
                .await
                .expect("status");
        }
    }
    wait_until(
        "two terminated pods left",
        Duration::from_secs(30),
        POLL,
        || async { c.pod("t1").await.is_none() && c.pod("t2").await.is_none() },
    )
    .await;
    for name in ["t3", "t4", "running"] {
        assert!(c.pod(name).await.is_some(), "{name} deleted");
    }
    c.stop().await;
}
