//! The ReplicaSet controller and the garbage collector against an in-process API server
//! (no agents: the test plays the kubelet by patching pod status).

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use podvisor_testkit::{eventually, mark_ready};
use serde_json::json;

async fn pods(client: &Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn active(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Failed" | "Succeeded")
                )
        })
        .collect()
}

/// `kubectl scale <kind>/web --replicas=n`, then waits for `n` active pods.
async fn scale_to<K>(api: &Api<K>, client: &Client, n: i32, what: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    podvisor_testkit::scale(api, "web", n).await;
    eventually(what, || async {
        active(&pods(client).await).len() == n as usize
    })
    .await;
}

#[tokio::test]
async fn replicaset_scales_replaces_failed_pods_and_is_garbage_collected() {
    let running = common::start().await;
    let client = running.client.clone();

    let rs_api = Api::<ReplicaSet>::namespaced(client.clone(), "default");
    let rs = common::create::<ReplicaSet>(&client, json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1000"]}]}
            }
        }
    }))
    .await;
    let rs_uid = rs.metadata.uid.clone().expect("uid");

    eventually("2 pods", || async {
        active(&pods(&client).await).len() == 2
    })
    .await;
    // No double creation while the watch catches up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ps = pods(&client).await;
    assert_eq!(ps.len(), 2);
    for p in &ps {
        let name = p.metadata.name.as_deref().expect("name");
        assert!(name.starts_with("web-"), "{name}");
        let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.uid, rs_uid);
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    // The kubelet reports both Running and Ready: status follows.
    let pod_api = Api::<Pod>::namespaced(client.clone(), "default");
    for p in &ps {
        let name = p.metadata.name.as_deref().expect("name");
        mark_ready(&pod_api, name).await.expect("status");
    }
    eventually("ready status", || async {
        rs_api
            .get_status("web")
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| {
                s.replicas == 2
                    && s.ready_replicas == Some(2)
                    && s.available_replicas == Some(2)
                    && s.fully_labeled_replicas == Some(2)
                    && s.observed_generation == r_gen(&rs)
            })
    })
    .await;

    // A failed pod is replaced and no longer counts.
    let victim = ps[0].metadata.name.clone().expect("name");
    pod_api
        .patch_status(
            &victim,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await
        .expect("fail pod");
    eventually("replacement", || async {
        let ps = pods(&client).await;
        ps.len() == 3 && active(&ps).len() == 2
    })
    .await;

    // kubectl scale rs/web --replicas=1
    scale_to(&rs_api, &client, 1, "scale down to 1").await;
    // The ready pod is kept, the new unready one goes.
    let kept = active(&pods(&client).await)[0].metadata.name.clone();
    assert_eq!(kept, ps[1].metadata.name);

    // Scale up again.
    scale_to(&rs_api, &client, 3, "scale up to 3").await;

    // Deleting the ReplicaSet collects its pods (the failed one too).
    rs_api
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete rs");
    eventually("pods collected", || async {
        active(&pods(&client).await).is_empty()
            && pods(&client)
                .await
                .iter()
                .all(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;

    running.stop().await;
}

fn r_gen(rs: &ReplicaSet) -> Option<i64> {
    rs.metadata.generation
}

/// The legacy twin: a ReplicationController whose selector and labels the API server
/// defaults from the template, scaled through `scale`, collected with its pods.
#[tokio::test]
async fn replication_controller_runs_its_replicas_as_a_replica_set_does() {
    use k8s_openapi::api::core::v1::ReplicationController;
    let running = common::start().await;
    let client = running.client.clone();
    let rc_api = Api::<ReplicationController>::namespaced(client.clone(), "default");
    let rc = common::create::<ReplicationController>(&client, json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1000"]}]}
            }
        }
    }))
    .await;
    assert_eq!(
        rc.spec.as_ref().and_then(|s| s.selector.clone()),
        Some([("app".to_string(), "web".to_string())].into())
    );
    assert_eq!(
        rc.metadata.labels,
        Some([("app".to_string(), "web".to_string())].into())
    );
    eventually("2 pods", || async {
        active(&pods(&client).await).len() == 2
    })
    .await;
    let ps = pods(&client).await;
    for p in &ps {
        let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str()),
            ("v1", "ReplicationController")
        );
        assert_eq!(owner.uid, rc.metadata.uid.clone().unwrap_or_default());
    }
    let pod_api = Api::<Pod>::namespaced(client.clone(), "default");
    for p in &ps {
        mark_ready(&pod_api, p.metadata.name.as_deref().expect("name"))
            .await
            .expect("status");
    }
    eventually("ready status", || async {
        rc_api
            .get_status("web")
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| {
                s.replicas == 2
                    && s.ready_replicas == Some(2)
                    && s.available_replicas == Some(2)
                    && s.fully_labeled_replicas == Some(2)
                    && s.observed_generation == Some(1)
            })
    })
    .await;
    // kubectl scale rc/web --replicas=3
    scale_to(&rc_api, &client, 3, "3 pods").await;
    rc_api
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete rc");
    eventually("pods collected", || async {
        active(&pods(&client).await).is_empty()
    })
    .await;
    running.stop().await;
}
