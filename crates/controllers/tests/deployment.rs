//! The Deployment controller against an in-process API server; the test plays the kubelet.

mod common;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use podvisor_testkit::{eventually, mark_ready};
use serde_json::json;

/// Marks every unready, non-terminating pod of app=web Running and Ready.
async fn kubelet(client: &Client) {
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    let Ok(list) = api.list(&ListParams::default().labels("app=web")).await else {
        return;
    };
    for p in list.items {
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = p.metadata.name.unwrap_or_default();
        let _ = mark_ready(&api, &name).await;
    }
}

async fn rollout_done(client: &Client, image: &str) -> bool {
    kubelet(client).await;
    let Ok(d) = Api::<Deployment>::namespaced(client.clone(), "default")
        .get("web")
        .await
    else {
        return false;
    };
    let Some(s) = d.status else { return false };
    let pods = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let live: Vec<_> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    s.observed_generation == d.metadata.generation
        && s.updated_replicas == Some(2)
        && s.replicas == Some(2)
        && s.available_replicas == Some(2)
        && s.conditions.iter().flatten().any(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
        })
        && s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Available" && c.status == "True")
        && live.len() == 2
        && live.iter().all(|p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.containers[0].image.as_deref() == Some(image))
        })
}

#[tokio::test]
async fn deployment_rolls_out_and_rolls_to_a_new_image() {
    let running = common::start().await;
    let client = running.client.clone();
    let api = Api::<Deployment>::namespaced(client.clone(), "default");
    common::create::<Deployment>(
        &client,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}
        }),
    )
    .await;
    eventually("first rollout", || rollout_done(&client, "busybox:1")).await;

    // kubectl set image deployment/web c=busybox:2
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}})))
        .await
        .expect("set image");
    eventually("second rollout", || rollout_done(&client, "busybox:2")).await;
    let rss = Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect("rs")
        .items;
    assert_eq!(rss.len(), 2);
    for rs in &rss {
        let name = rs.metadata.name.clone().unwrap_or_default();
        let hash = rs
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(name, format!("web-{hash}"));
        let rev = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .cloned();
        let replicas = rs.spec.as_ref().and_then(|s| s.replicas);
        match rev.as_deref() {
            Some("1") => assert_eq!(replicas, Some(0), "old scaled down"),
            Some("2") => assert_eq!(replicas, Some(2)),
            other => panic!("revision {other:?}"),
        }
    }
    running.stop().await;
}
