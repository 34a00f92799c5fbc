//! Foreground and orphan propagation against an in-process API server: the API server sets
//! the finalizers on DELETE, the garbage collector finishes the deletion.

mod common;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::{Api, Client, ResourceExt};
use podvisor_testkit::eventually;
use serde_json::json;

async fn pods(client: &Client, app: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

async fn replicaset(client: &Client, name: &str, replicas: i32) -> ReplicaSet {
    let rs: ReplicaSet = common::create(
        client,
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                }
            }
        }),
    )
    .await;
    eventually("pods", || async {
        pods(client, name).await.len() == replicas as usize
    })
    .await;
    rs
}

fn delete_with(policy: PropagationPolicy) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(policy),
        ..Default::default()
    }
}

#[tokio::test]
async fn orphan_propagation_keeps_the_dependents_without_the_owner_reference() {
    let running = common::start().await;
    let client = running.client.clone();
    let rs_api = Api::<ReplicaSet>::namespaced(client.clone(), "default");
    replicaset(&client, "keep", 2).await;

    let answer = rs_api
        .delete("keep", &delete_with(PropagationPolicy::Orphan))
        .await
        .expect("delete");
    let pending = answer.left().expect("the object, not yet gone");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(pending.finalizers().iter().any(|f| f == "orphan"));

    eventually("rs gone", || async {
        rs_api.get_opt("keep").await.ok().flatten().is_none()
    })
    .await;
    let left = pods(&client, "keep").await;
    assert_eq!(left.len(), 2);
    for p in &left {
        assert!(p.metadata.deletion_timestamp.is_none(), "{p:?}");
        assert!(p.owner_references().is_empty(), "{p:?}");
    }
    running.stop().await;
}

#[tokio::test]
async fn foreground_propagation_waits_for_blocking_dependents() {
    let running = common::start().await;
    let client = running.client.clone();
    let rs_api = Api::<ReplicaSet>::namespaced(client.clone(), "default");
    let pod_api = Api::<Pod>::namespaced(client.clone(), "default");
    replicaset(&client, "fg", 2).await;
    // One pod holds on (a finalizer of its own) so the owner has to wait for it.
    let held = pods(&client, "fg").await[0].name_any();
    pod_api
        .patch(
            &held,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
        )
        .await
        .expect("hold");

    rs_api
        .delete("fg", &delete_with(PropagationPolicy::Foreground))
        .await
        .expect("delete");
    eventually("the free pod deleted", || async {
        pods(&client, "fg").await.len() == 1
    })
    .await;
    let rs = rs_api.get("fg").await.expect("rs still there");
    assert!(rs.finalizers().iter().any(|f| f == "foregroundDeletion"));
    assert!(rs.metadata.deletion_timestamp.is_some());
    let p = pod_api.get(&held).await.expect("held pod");
    assert!(p.metadata.deletion_timestamp.is_some(), "deleted, held");

    pod_api
        .patch(
            &held,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("release");
    eventually("rs gone after its pods", || async {
        rs_api.get_opt("fg").await.ok().flatten().is_none()
    })
    .await;
    assert!(pods(&client, "fg").await.is_empty());
    running.stop().await;
}
