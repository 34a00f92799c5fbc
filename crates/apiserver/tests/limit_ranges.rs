//! LimitRanger admission through the real API: a namespace's LimitRange defaults the
//! requests and limits of the pods created in it (and says so in an annotation), refuses
//! pods and claims outside its bounds with upstream's 403 messages, and is itself stored
//! with upstream's defaults.

use k8s_openapi::api::core::v1::{LimitRange, PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};
use podvisor_apiserver::testing::serving_memory_server;
use serde_json::json;

#[tokio::test]
async fn a_limit_range_defaults_and_bounds_pods_and_claims() {
    let serving = serving_memory_server().await;
    let srv = serving.server.clone();
    let admin = srv.in_process_client(&srv.admin_token());
    let ranges: Api<LimitRange> = Api::namespaced(admin.clone(), "default");
    let range: LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "limits"},
        "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "1"}, "default": {"memory": "128Mi"},
             "defaultRequest": {"cpu": "100m"}},
            {"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}},
        ]},
    }))
    .unwrap();
    let stored = ranges.create(&PostParams::default(), &range).await.unwrap();
    let item = &stored.spec.unwrap().limits[0];
    // The max becomes the default limit, and the default limits the default requests.
    let default = item.default.clone().unwrap();
    assert_eq!(default["cpu"].0, "1");
    assert_eq!(default["memory"].0, "128Mi");
    let request = item.default_request.clone().unwrap();
    assert_eq!(request["cpu"].0, "100m");
    assert_eq!(request["memory"].0, "128Mi");

    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let pod = |name: &str, resources: serde_json::Value| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"automountServiceAccountToken": false,
                "containers": [{"name": "app", "image": "busybox", "resources": resources}]},
        }))
        .unwrap()
    };
    let made = pods
        .create(&PostParams::default(), &pod("bare", json!({})))
        .await
        .unwrap();
    let res = made.spec.unwrap().containers[0].resources.clone().unwrap();
    assert_eq!(res.requests.unwrap()["cpu"].0, "100m");
    assert_eq!(res.limits.unwrap()["cpu"].0, "1");
    assert_eq!(
        made.metadata.annotations.unwrap()["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );
    assert_eq!(
        made.status.unwrap().qos_class.as_deref(),
        Some("Burstable"),
        "the QoS class follows the defaulted resources"
    );

    let err = pods
        .create(
            &PostParams::default(),
            &pod("big", json!({"limits": {"cpu": "2"}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 403);
    assert_eq!(status.reason, "Forbidden");
    assert_eq!(
        status.message,
        "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
    );

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), "default");
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}},
    }))
    .unwrap();
    let err = claims
        .create(&PostParams::default(), &claim)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(
        status.message,
        "persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"
    );
}
