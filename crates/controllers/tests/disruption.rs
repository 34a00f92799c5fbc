//! PodDisruptionBudgets: the disruption controller's status and the eviction subresource
//! against an in-process API server (the test plays the kubelet by patching pod status).

mod common;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use podvisor_testkit::{eventually, mark_ready};
use serde_json::json;

async fn pod_names(client: &Client, selector: &str) -> Vec<String> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect()
}

async fn ready_all(client: &Client, selector: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for n in pod_names(client, selector).await {
        mark_ready(&pods, &n).await.expect("ready");
    }
}

async fn status(api: &Api<PodDisruptionBudget>, name: &str) -> serde_json::Value {
    serde_json::to_value(api.get_status(name).await.expect("pdb").status).unwrap_or_default()
}

#[tokio::test]
async fn budgets_count_healthy_pods_and_gate_evictions() {
    let running = common::start().await;
    let client = running.client.clone();
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    common::create::<ReplicaSet>(
        &client,
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        }),
    )
    .await;
    eventually("2 pods", || async {
        pod_names(&client, "app=web").await.len() == 2
    })
    .await;
    ready_all(&client, "app=web").await;

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let pdb = |name: &str, spec: serde_json::Value| -> PodDisruptionBudget {
        serde_json::from_value(
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name}, "spec": spec}),
        )
        .expect("pdb")
    };
    pdbs.create(
        &PostParams::default(),
        &pdb(
            "web",
            json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
        ),
    )
    .await
    .expect("create pdb");
    eventually("no disruption allowed", || async {
        let s = status(&pdbs, "web").await;
        s["currentHealthy"] == 2
            && s["desiredHealthy"] == 2
            && s["expectedPods"] == 2
            && s["disruptionsAllowed"] == 0
            && s["observedGeneration"] == 1
            && s["conditions"][0]["type"] == "DisruptionAllowed"
            && s["conditions"][0]["status"] == "False"
            && s["conditions"][0]["reason"] == "InsufficientPods"
    })
    .await;

    // The eviction is refused with upstream's answer.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let victim = pod_names(&client, "app=web").await[0].clone();
    match pods.evict(&victim, &EvictParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));
            assert_eq!(
                s.message,
                "Cannot evict pod as it would violate the pod's disruption budget."
            );
            let d = serde_json::to_value(&s.details).unwrap_or_default();
            assert_eq!(d["causes"][0]["reason"], "DisruptionBudget");
            assert_eq!(
                d["causes"][0]["message"],
                "The disruption budget web needs 2 healthy pods and has 2 currently"
            );
        }
        other => panic!("eviction not refused: {other:?}"),
    }

    // One more replica: one disruption allowed, the eviction goes through and is recorded.
    podvisor_testkit::scale(&rs_api, "web", 3).await;
    eventually("3 pods", || async {
        pod_names(&client, "app=web").await.len() == 3
    })
    .await;
    ready_all(&client, "app=web").await;
    eventually("one disruption allowed", || async {
        let s = status(&pdbs, "web").await;
        s["currentHealthy"] == 3
            && s["disruptionsAllowed"] == 1
            && s["conditions"][0]["status"] == "True"
            && s["conditions"][0]["reason"] == "SufficientPods"
    })
    .await;
    pods.evict(&victim, &EvictParams::default())
        .await
        .expect("eviction allowed");
    // The budget is spent (in `disruptedPods` until the controller sees the pod terminating).
    let s = status(&pdbs, "web").await;
    assert_eq!(s["disruptionsAllowed"], 0, "{s}");
    let p = pods.get_opt(&victim).await.expect("get pod");
    assert!(p.is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
    eventually("the evicted pod no longer counts", || async {
        status(&pdbs, "web").await["currentHealthy"] == 2
    })
    .await;

    // maxUnavailable as a percentage of the ReplicaSet's scale (3): 34% rounds up to 2.
    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": null, "maxUnavailable": "34%"}})),
    )
    .await
    .expect("patch pdb");
    eventually("maxUnavailable over the scale", || async {
        let s = status(&pdbs, "web").await;
        s["expectedPods"] == 3 && s["desiredHealthy"] == 1 && s["observedGeneration"] == 2
    })
    .await;

    // A pod whose controller the budget cannot scale: the sync fails safe.
    let orphan: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "odd", "labels": {"app": "odd"}, "ownerReferences": [{
            "apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "u-1",
            "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    .expect("pod");
    pods.create(&PostParams::default(), &orphan)
        .await
        .expect("odd pod");
    pdbs.create(
        &PostParams::default(),
        &pdb(
            "odd",
            json!({"maxUnavailable": 1, "selector": {"matchLabels": {"app": "odd"}}}),
        ),
    )
    .await
    .expect("create pdb");
    eventually("SyncFailed", || async {
        let s = status(&pdbs, "odd").await;
        s["disruptionsAllowed"] == 0
            && s["conditions"][0]["reason"] == "SyncFailed"
            && s["conditions"][0]["message"] == "found no controllers for pod \"odd\""
    })
    .await;
    running.stop().await;
}
