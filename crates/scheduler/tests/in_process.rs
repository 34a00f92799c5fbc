//! The scheduler against the in-process API server (memory store): Node objects made Ready
//! by hand (no agents), pods created through the API, results read back through the API.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod, Taint, Toleration};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use podvisor_kit::LeaderElectionConfig;
use podvisor_scheduler::{Scheduler, SchedulerConfig};
use tokio_util::sync::CancellationToken;

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    stats: std::sync::Arc<podvisor_scheduler::SchedulerStats>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("scheduler stops")
            .expect("scheduler task");
    }
}

fn start(client: &kube::Client, config: SchedulerConfig) -> Running {
    let sched = Scheduler::new(client.clone(), config);
    let stats = sched.stats();
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    let task = tokio::spawn(async move {
        sched.run(s).await.expect("scheduler run");
    });
    Running {
        shutdown,
        task,
        stats,
    }
}

fn fast_config() -> SchedulerConfig {
    SchedulerConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..Default::default()
    }
}

async fn events_for(client: &kube::Client, pod: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .collect()
}

async fn wait_event(client: &kube::Client, pod: &str, reason: &str) -> Event {
    eventually(
        Duration::from_secs(20),
        &format!("{reason} event for {pod}"),
        || async {
            events_for(client, pod)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        },
    )
    .await
}

/// Creates pods `p{i}` (100m cpu) for `range` and waits until each is bound.
async fn create_and_bind(client: &kube::Client, range: std::ops::Range<usize>) {
    for i in range.clone() {
        create_pod(client, &pod(&format!("p{i}"), "100m")).await;
    }
    for i in range {
        wait_bound(client, &format!("p{i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_a_pod_and_emits_the_scheduled_event() {
    let c = cluster().await;
    add_node(&c.client, "node-1", "4", "8Gi", "110").await;
    let sched = start(&c.client, fast_config());
    create_pod(&c.client, &pod("web", "100m")).await;
    assert_eq!(wait_bound(&c.client, "web").await, "node-1");
    let ev = wait_event(&c.client, "web", "Scheduled").await;
    assert_eq!(
        ev.message.as_deref(),
        Some("Successfully assigned default/web to node-1")
    );
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
    assert_eq!(
        ev.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("default-scheduler")
    );
    assert_eq!(ev.reporting_component.as_deref(), Some("default-scheduler"));
    let p = get_pod(&c.client, "web").await;
    assert_eq!(
        scheduled_condition(&p).map(|c| c.0),
        Some("True".to_owned()),
        "the binding sets PodScheduled=True"
    );
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_one_owner_spread_across_many_nodes() {
    let c = cluster().await;
    for i in 0..20 {
        add_node(&c.client, &format!("node-{i:02}"), "64", "256Gi", "110").await;
    }
    let sched = start(&c.client, fast_config());
    for i in 0..60 {
        create_pod(
            &c.client,
            &pod_builder(&format!("web-{i}"), "100m")
                .owner("ReplicaSet", "web", "rs-uid-1")
                .build(),
        )
        .await;
    }
    let placed = eventually(Duration::from_secs(30), "60 pods bound", || async {
        let pods = list_pods(&c.client).await;
        let nodes: Vec<String> = pods.iter().filter_map(node_of).collect();
        (nodes.len() == 60).then_some(nodes)
    })
    .await;
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for n in placed {
        *per_node.entry(n).or_default() += 1;
    }
    assert_eq!(per_node.len(), 20, "every node used: {per_node:?}");
    assert!(
        per_node.values().all(|&n| n == 3),
        "even spread: {per_node:?}"
    );
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_fill_up_then_unschedulable_with_the_exact_message() {
    let c = cluster().await;
    for i in 1..=3 {
        add_node(&c.client, &format!("node-{i}"), "1", "4Gi", "110").await;
    }
    let sched = start(&c.client, fast_config());
    for i in 0..3 {
        create_pod(&c.client, &pod(&format!("fit-{i}"), "600m")).await;
    }
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(wait_bound(&c.client, &format!("fit-{i}")).await);
    }
    nodes.sort();
    assert_eq!(
        nodes,
        vec!["node-1", "node-2", "node-3"],
        "one per node: 2 × 600m > 1 cpu"
    );
    create_pod(&c.client, &pod("extra", "600m")).await;
    let msg = wait_unschedulable(&c.client, "extra").await;
    let expected = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    assert_eq!(msg, expected);
    let ev = wait_event(&c.client, "extra", "FailedScheduling").await;
    assert_eq!(ev.message.as_deref(), Some(expected));
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert!(node_of(&get_pod(&c.client, "extra").await).is_none());

    // Deleting a bound pod frees its cpu: the pending pod is retried and lands there.
    let api: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let freed = node_of(&get_pod(&c.client, "fit-1").await).unwrap();
    api.delete("fit-1", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    assert_eq!(wait_bound(&c.client, "extra").await, freed);
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pods_and_mixed_reasons() {
    let c = cluster().await;
    add_node(&c.client, "full", "64", "64Gi", "1").await;
    add_node_with(
        &c.client,
        "infra",
        "64",
        "64Gi",
        "110",
        vec![Taint {
            key: "dedicated".into(),
            value: Some("infra".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }],
        BTreeMap::new(),
    )
    .await;
    add_node(&c.client, "cordoned", "64", "64Gi", "110").await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c.client.clone());
    nodes
        .patch(
            "cordoned",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("cordon");
    let sched = start(&c.client, fast_config());
    create_pod(&c.client, &pod("first", "100m")).await;
    assert_eq!(wait_bound(&c.client, "first").await, "full");
    create_pod(&c.client, &pod("second", "100m")).await;
    let msg = wait_unschedulable(&c.client, "second").await;
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint {dedicated: infra}, \
         1 node(s) were unschedulable. preemption: 0/3 nodes are available: \
         1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    );
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_keep_pods_off_unless_tolerated_and_not_ready_nodes_are_avoided() {
    let c = cluster().await;
    let taint = Taint {
        key: "gpu".into(),
        value: Some("true".into()),
        effect: "NoSchedule".into(),
        time_added: None,
    };
    add_node_with(
        &c.client,
        "gpu-1",
        "8",
        "16Gi",
        "110",
        vec![taint],
        BTreeMap::new(),
    )
    .await;
    add_node(&c.client, "down", "8", "16Gi", "110").await;
    set_node_status(&c.client, "down", "8", "16Gi", "110", "False").await;
    let sched = start(&c.client, fast_config());
    create_pod(&c.client, &pod("plain", "100m")).await;
    let msg = wait_unschedulable(&c.client, "plain").await;
    assert_eq!(
        msg,
        "0/2 nodes are available: 1 node(s) had untolerated taint {gpu: true}, \
         1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    let mut tolerant = pod("tolerant", "100m");
    tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
        key: Some("gpu".into()),
        operator: Some("Equal".into()),
        value: Some("true".into()),
        effect: Some("NoSchedule".into()),
        toleration_seconds: None,
    }]);
    create_pod(&c.client, &tolerant).await;
    assert_eq!(wait_bound(&c.client, "tolerant").await, "gpu-1");
    // The node becomes Ready: the waiting pod is retried on the node change.
    set_node_status(&c.client, "down", "8", "16Gi", "110", "True").await;
    assert_eq!(wait_bound(&c.client, "plain").await, "down");
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_when_a_node_appears() {
    let c = cluster().await;
    let sched = start(&c.client, fast_config());
    create_pod(&c.client, &pod("early", "100m")).await;
    let msg = eventually(Duration::from_secs(20), "no-nodes condition", || async {
        scheduled_condition(&get_pod(&c.client, "early").await).and_then(|c| c.2)
    })
    .await;
    assert_eq!(msg, "no nodes available to schedule pods");
    add_node(&c.client, "late", "2", "4Gi", "110").await;
    assert_eq!(wait_bound(&c.client, "early").await, "late");
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_and_affinity() {
    let c = cluster().await;
    add_node_with(
        &c.client,
        "ssd",
        "4",
        "8Gi",
        "110",
        vec![],
        [("disk".to_owned(), "ssd".to_owned())].into(),
    )
    .await;
    add_node(&c.client, "hdd", "4", "8Gi", "110").await;
    let sched = start(&c.client, fast_config());
    let mut p = pod("wants-ssd", "100m");
    p.spec.as_mut().unwrap().node_selector = Some([("disk".to_owned(), "ssd".to_owned())].into());
    create_pod(&c.client, &p).await;
    assert_eq!(wait_bound(&c.client, "wants-ssd").await, "ssd");
    let mut q = pod("wants-nvme", "100m");
    q.spec.as_mut().unwrap().node_selector = Some([("disk".to_owned(), "nvme".to_owned())].into());
    create_pod(&c.client, &q).await;
    assert_eq!(
        wait_unschedulable(&c.client, "wants-nvme").await,
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_for_other_schedulers_and_preassigned_pods_are_left_alone() {
    let c = cluster().await;
    add_node(&c.client, "n1", "1", "4Gi", "110").await;
    let sched = start(&c.client, fast_config());
    let mut other = pod("other", "100m");
    other.spec.as_mut().unwrap().scheduler_name = Some("my-scheduler".into());
    create_pod(&c.client, &other).await;
    let mut pre = pod("pre", "800m");
    pre.spec.as_mut().unwrap().node_name = Some("n1".into());
    create_pod(&c.client, &pre).await;
    // The preassigned pod's 800m counts: a 300m pod no longer fits.
    create_pod(&c.client, &pod("after", "300m")).await;
    let msg = wait_unschedulable(&c.client, "after").await;
    assert!(
        msg.starts_with("0/1 nodes are available: 1 Insufficient cpu."),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = get_pod(&c.client, "other").await;
    assert!(node_of(&o).is_none());
    assert!(scheduled_condition(&o).is_none(), "not ours: untouched");
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_two_schedulers_one_active() {
    let c = cluster().await;
    for i in 0..4 {
        add_node(&c.client, &format!("n{i}"), "16", "32Gi", "110").await;
    }
    let le = |id: &str| {
        let mut l = LeaderElectionConfig::new("kube-scheduler", id);
        l.lease_duration = Duration::from_secs(3);
        l.renew_deadline = Duration::from_secs(2);
        l.retry_period = Duration::from_millis(200);
        SchedulerConfig {
            leader_election: Some(l),
            ..fast_config()
        }
    };
    let a = start(&c.client, le("sched-a"));
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    eventually(Duration::from_secs(10), "a leads", || async {
        let l = leases.get_opt("kube-scheduler").await.ok().flatten()?;
        (l.spec?.holder_identity.as_deref() == Some("sched-a")).then_some(())
    })
    .await;
    let b = start(&c.client, le("sched-b"));
    create_and_bind(&c.client, 0..20).await;
    // the counter moves once the bind call returned, which may be after the test saw it
    eventually(Duration::from_secs(10), "a counted 20 binds", || async {
        (a.stats.bound.load(Ordering::Relaxed) == 20).then_some(())
    })
    .await;
    assert_eq!(
        b.stats.bound.load(Ordering::Relaxed),
        0,
        "the standby never schedules"
    );
    assert_eq!(b.stats.terms.load(Ordering::Relaxed), 0);

    // The leader stops (and releases): the standby takes over and schedules new pods.
    a.stop().await;
    let l = eventually(Duration::from_secs(10), "b leads", || async {
        let l = leases.get_opt("kube-scheduler").await.ok().flatten()?;
        let spec = l.spec.clone()?;
        (spec.holder_identity.as_deref() == Some("sched-b")).then_some(spec)
    })
    .await;
    assert_eq!(l.lease_transitions, Some(1));
    assert!(l.acquire_time.is_some() && l.renew_time.is_some());
    create_and_bind(&c.client, 20..30).await;
    eventually(Duration::from_secs(10), "b counted 10 binds", || async {
        (b.stats.bound.load(Ordering::Relaxed) == 10).then_some(())
    })
    .await;
    let stats = b.stats.clone();
    b.stop().await;
    assert_eq!(
        stats.bound.load(Ordering::Relaxed),
        10,
        "each pod bound once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pods_on_a_hundred_nodes_respect_pod_limits() {
    let c = cluster().await;
    for i in 0..100 {
        add_node(&c.client, &format!("node-{i:03}"), "32", "64Gi", "10").await;
    }
    let sched = start(&c.client, fast_config());
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..10 {
        let client = c.client.clone();
        tasks.spawn(async move {
            for i in 0..101 {
                create_pod(&client, &pod(&format!("p-{chunk}-{i}"), "10m")).await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("creator");
    }
    // 1010 pods, 100 × 10 slots: exactly 1000 bound, 10 Unschedulable with "Too many pods".
    let pods = eventually(
        Duration::from_secs(60),
        "1000 bound + 10 unschedulable",
        || async {
            let pods = list_pods(&c.client).await;
            let bound = pods.iter().filter(|p| node_of(p).is_some()).count();
            let unsched = pods
                .iter()
                .filter(|p| scheduled_condition(p).is_some_and(|c| c.0 == "False"))
                .count();
            (bound == 1000 && unsched == 10).then_some(pods)
        },
    )
    .await;
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in &pods {
        if let Some(n) = node_of(p) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    assert!(per_node.values().all(|&n| n == 10), "{per_node:?}");
    let waiting = pods.iter().find(|p| node_of(p).is_none()).unwrap();
    assert_eq!(
        scheduled_condition(waiting).and_then(|c| c.2).as_deref(),
        Some(
            "0/100 nodes are available: 100 Too many pods. preemption: 0/100 nodes are available: 100 No preemption victims found for incoming pod."
        )
    );
    sched.stop().await;
}
