//! The StatefulSet controller against an in-process API server; the test plays the kubelet.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use podvisor_testkit::mark_ready;
use serde_json::json;

async fn names(client: &Client) -> Vec<String> {
    let mut v: Vec<String> = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=db"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    v.sort();
    v
}

async fn make_ready(client: &Client, name: &str) {
    mark_ready(&Api::<Pod>::namespaced(client.clone(), "default"), name)
        .await
        .expect("ready");
}

async fn wait_names(client: &Client, want: &[&str]) {
    for _ in 0..200 {
        if names(client).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("wanted {want:?}, have {:?}", names(client).await);
}

#[tokio::test]
async fn statefulset_creates_in_order_and_replaces_with_the_same_name() {
    let running = common::start().await;
    let client = running.client.clone();
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .expect("sts");
    let api = Api::<StatefulSet>::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &sts)
        .await
        .expect("create");

    wait_names(&client, &["db-0"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        names(&client).await,
        ["db-0"],
        "db-1 waits for db-0 to be Running and Ready"
    );
    make_ready(&client, "db-0").await;
    wait_names(&client, &["db-0", "db-1"]).await;
    make_ready(&client, "db-1").await;
    wait_names(&client, &["db-0", "db-1", "db-2"]).await;
    make_ready(&client, "db-2").await;

    // Same-name replacement, with a new UID.
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let old_uid = pods.get("db-1").await.expect("db-1").metadata.uid;
    podvisor_testkit::delete_now(&pods, "db-1").await;
    let mut replaced = false;
    for _ in 0..200 {
        if let Ok(Some(p)) = pods.get_opt("db-1").await
            && p.metadata.uid != old_uid
        {
            replaced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(replaced, "db-1 recreated under the same name");
    make_ready(&client, "db-1").await;

    // Scale down: highest ordinal first.
    api.patch_scale(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scale");
    let mut scaled = false;
    for _ in 0..200 {
        let live: Vec<String> = pods
            .list(&ListParams::default().labels("app=db"))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name)
            .collect();
        if live == ["db-0"] {
            scaled = true;
            break;
        }
        // OrderedReady deletes one at a time: db-1 may only go once db-2 has.
        assert!(
            live.contains(&"db-1".to_string()) || !live.contains(&"db-2".to_string()),
            "{live:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(scaled, "scaled down to db-0");
    running.stop().await;
}
