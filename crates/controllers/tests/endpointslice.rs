//! The EndpointSlice and Endpoints controllers against an in-process API server (the test
//! plays the kubelet by writing pod status).

mod common;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use podvisor_testkit::eventually;
use serde_json::json;

async fn slices(client: &Client) -> Vec<EndpointSlice> {
    Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// (address, ready, serving, terminating) of every endpoint of `web`.
async fn endpoints_of_web(client: &Client) -> Vec<(String, bool, bool, bool)> {
    let mut out: Vec<_> = slices(client)
        .await
        .iter()
        .flat_map(|s| s.endpoints.clone())
        .map(|e| {
            let c = e.conditions.unwrap_or_default();
            (
                e.addresses[0].clone(),
                c.ready.unwrap_or(false),
                c.serving.unwrap_or(false),
                c.terminating.unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

async fn running_pod(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let p: Pod =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "web"},
        "finalizers": ["test.podvisor.io/hold"]},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
            "ports": [{"name": "http", "containerPort": 8080}]}]}}))
        .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[tokio::test]
async fn slices_and_endpoints_follow_pods_and_the_service() {
    let running = common::start().await;
    let client = running.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
    .unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();

    // No pods: one placeholder slice, and Endpoints without subsets.
    eventually("a placeholder slice", || async {
        let s = slices(&client).await;
        s.len() == 1 && s[0].endpoints.is_empty()
    })
    .await;

    running_pod(&pods, "a", "10.244.0.5", true).await;
    running_pod(&pods, "b", "10.244.0.6", false).await;
    eventually("two endpoints", || async {
        endpoints_of_web(&client).await
            == vec![
                ("10.244.0.5".to_string(), true, true, false),
                ("10.244.0.6".to_string(), false, false, false),
            ]
    })
    .await;
    let s = &slices(&client).await[0];
    assert_eq!(
        s.ports.as_ref().unwrap()[0].port,
        Some(8080),
        "named targetPort resolved"
    );
    assert_eq!(s.address_type, "IPv4");
    assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, svc.metadata.uid.clone().unwrap());
    assert_eq!(
        s.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert!(
        s.metadata.generation.unwrap_or(0) >= 1,
        "slices carry a generation"
    );

    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    eventually("legacy endpoints", || async {
        eps.get("web")
            .await
            .ok()
            .and_then(|e| e.subsets)
            .is_some_and(|s| {
                s.len() == 1
                    && s[0].addresses.as_ref().map(Vec::len) == Some(1)
                    && s[0].not_ready_addresses.as_ref().map(Vec::len) == Some(1)
            })
    })
    .await;

    // A terminating ready pod: in the slice as serving+terminating, not ready; out of
    // Endpoints.
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    eventually("a terminating endpoint", || async {
        endpoints_of_web(&client).await.first()
            == Some(&("10.244.0.5".to_string(), false, true, true))
    })
    .await;
    eventually("the terminating pod leaves Endpoints", || async {
        eps.get("web")
            .await
            .ok()
            .and_then(|e| e.subsets)
            .is_some_and(|s| s.len() == 1 && s[0].addresses.is_none())
    })
    .await;
    let generation = slices(&client).await[0].metadata.generation.unwrap_or(0);
    assert!(
        generation >= 2,
        "every endpoint change bumps the generation"
    );

    // The Service goes: its slices and Endpoints go too.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("slices deleted", || async {
        slices(&client).await.is_empty()
    })
    .await;
    eventually("endpoints deleted", || async {
        eps.get("web").await.is_err()
    })
    .await;
    for name in ["a", "b"] {
        let _ = pods
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await;
    }
    running.stop().await;
}
