//! The PersistentVolume controller against an in-process API server: binding of
//! `Immediate` claims by class and capacity, user pre-binding, phases, Retain and Delete
//! reclaim of admin-made volumes, the protection finalizers, and a
//! `WaitForFirstConsumer` claim provisioned once a node is selected.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

fn pv(name: &str, size: &str, class: &str, policy: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": class, "persistentVolumeReclaimPolicy": policy,
            "hostPath": {"path": format!("/tmp/{name}")}}
    }))
    .expect("pv")
}

fn pvc(name: &str, size: &str, class: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    let mut spec = json!({"accessModes": ["ReadWriteOnce"], "storageClassName": class,
        "resources": {"requests": {"storage": size}}});
    if let Some(v) = volume {
        spec["volumeName"] = json!(v);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec
    }))
    .expect("pvc")
}

async fn wait<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(t) = f().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn pv_phase(client: &Client, name: &str) -> Option<String> {
    Api::<PersistentVolume>::all(client.clone())
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|v| v.status.and_then(|s| s.phase))
}

async fn claim(client: &Client, name: &str) -> Option<PersistentVolumeClaim> {
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default")
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

async fn reasons(client: &Client, name: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map(|l| l.items.into_iter().filter_map(|e| e.reason).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn claims_bind_by_class_and_size_and_volumes_are_reclaimed_by_policy() {
    let running = common::start().await;
    let client = running.client.clone();
    let pvs = Api::<PersistentVolume>::all(client.clone());
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    for v in [
        pv("small", "1Gi", "manual", "Retain"),
        pv("big", "10Gi", "manual", "Retain"),
        pv("other", "2Gi", "fast", "Delete"),
    ] {
        pvs.create(&pp, &v).await.expect("create pv");
    }
    assert_eq!(
        pvs.get("small").await.unwrap().metadata.finalizers,
        Some(vec!["kubernetes.io/pv-protection".to_string()])
    );
    wait("volumes Available", async || {
        (pv_phase(&client, "big").await.as_deref() == Some("Available")).then_some(())
    })
    .await;

    // The smallest volume of the class that fits.
    pvcs.create(&pp, &pvc("a", "2Gi", "manual", None))
        .await
        .expect("claim a");
    let a = wait("claim a bound", async || {
        claim(&client, "a")
            .await
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
    })
    .await;
    assert_eq!(a.spec.as_ref().unwrap().volume_name.as_deref(), Some("big"));
    let ann = a.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("pv.kubernetes.io/bind-completed")
            .map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        ann.get("pv.kubernetes.io/bound-by-controller")
            .map(String::as_str),
        Some("yes")
    );
    let status = a.status.unwrap();
    assert_eq!(status.capacity.unwrap()["storage"].0, "10Gi");
    let big = pvs.get("big").await.unwrap();
    assert_eq!(big.status.unwrap().phase.as_deref(), Some("Bound"));
    let r = big.spec.unwrap().claim_ref.unwrap();
    assert_eq!(
        (r.name.as_deref(), r.uid),
        (Some("a"), a.metadata.uid.clone())
    );

    // Nothing fits: Pending; no class and no volume: FailedBinding.
    pvcs.create(&pp, &pvc("huge", "100Gi", "manual", None))
        .await
        .expect("huge");
    pvcs.create(&pp, &pvc("none", "1Gi", "", None))
        .await
        .expect("none");
    wait("FailedBinding of the classless claim", async || {
        reasons(&client, "none")
            .await
            .contains(&"FailedBinding".to_string())
            .then_some(())
    })
    .await;
    assert_eq!(
        claim(&client, "huge")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );

    // A user's pre-binding to a volume of the wrong class is a mismatch.
    pvcs.create(&pp, &pvc("pre", "1Gi", "manual", Some("other")))
        .await
        .expect("pre");
    wait("VolumeMismatch", async || {
        reasons(&client, "pre")
            .await
            .contains(&"VolumeMismatch".to_string())
            .then_some(())
    })
    .await;

    // Retain: the claim goes, the volume is Released and stays.
    pvcs.delete("a", &DeleteParams::default())
        .await
        .expect("delete a");
    wait("big Released", async || {
        (pv_phase(&client, "big").await.as_deref() == Some("Released")).then_some(())
    })
    .await;
    assert!(
        claim(&client, "a").await.is_none(),
        "no pod used it: the finalizer came off"
    );

    // Delete of an admin's hostPath volume cannot be done: Failed, VolumeFailedDelete.
    pvcs.create(&pp, &pvc("b", "1Gi", "fast", None))
        .await
        .expect("b");
    wait("b bound to other", async || {
        (pv_phase(&client, "other").await.as_deref() == Some("Bound")).then_some(())
    })
    .await;
    pvcs.delete("b", &DeleteParams::default())
        .await
        .expect("delete b");
    wait("other Failed", async || {
        (pv_phase(&client, "other").await.as_deref() == Some("Failed")).then_some(())
    })
    .await;
    let msg = pvs.get("other").await.unwrap().status.unwrap().message;
    assert_eq!(
        msg.as_deref(),
        Some(
            "error getting deleter volume plugin for volume \"other\": no deletable volume plugin matched"
        )
    );

    // pv-protection: a Released volume may go at once.
    pvs.delete("big", &DeleteParams::default())
        .await
        .expect("delete big");
    wait("big gone", async || {
        pv_phase(&client, "big").await.is_none().then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn a_wait_for_first_consumer_claim_is_provisioned_on_the_selected_node() {
    let running = common::start().await;
    let client = running.client.clone();
    let pp = PostParams::default();
    let node: Node = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"},
            "annotations": {"node.podvisor.io/local-storage-root": "/var/lib/pv/storage"}}}))
    .expect("node");
    Api::<Node>::all(client.clone())
        .create(&pp, &node)
        .await
        .expect("node");
    let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local"}, "provisioner": "podvisor.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Retain"});
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
    classes
        .create(&pp, &serde_json::from_value(class).expect("class"))
        .await
        .expect("class");
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
    pvcs.create(&pp, &pvc("data", "64Mi", "local", None))
        .await
        .expect("claim");
    wait("WaitForFirstConsumer", async || {
        reasons(&client, "data")
            .await
            .contains(&"WaitForFirstConsumer".to_string())
            .then_some(())
    })
    .await;
    assert!(
        claim(&client, "data")
            .await
            .unwrap()
            .spec
            .unwrap()
            .volume_name
            .is_none()
    );
    // What the scheduler does once it picked the node.
    let patch = json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "n1"}}});
    pvcs.patch("data", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("select node");
    let c = wait("claim bound", async || {
        claim(&client, "data")
            .await
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
    })
    .await;
    let uid = c.metadata.uid.clone().unwrap();
    let name = format!("pvc-{uid}");
    assert_eq!(c.spec.unwrap().volume_name.as_deref(), Some(name.as_str()));
    assert_eq!(
        c.metadata.annotations.unwrap()["volume.kubernetes.io/storage-provisioner"],
        "podvisor.io/local-path"
    );
    let v = Api::<PersistentVolume>::all(client.clone())
        .get(&name)
        .await
        .expect("pv");
    let spec = v.spec.unwrap();
    assert_eq!(
        spec.local.unwrap().path,
        format!("/var/lib/pv/storage/{name}_default_data")
    );
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Retain")
    );
    assert_eq!(
        podvisor_api::volumes::pinned_node(&PersistentVolume {
            spec: Some(k8s_openapi::api::core::v1::PersistentVolumeSpec {
                node_affinity: spec.node_affinity,
                ..Default::default()
            }),
            ..Default::default()
        }),
        Some("n1")
    );
    assert!(
        reasons(&client, "data")
            .await
            .contains(&"ProvisioningSucceeded".to_string())
    );
    running.stop().await;
}
