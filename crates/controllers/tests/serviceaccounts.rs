//! The ServiceAccount controller and the root CA publisher: every namespace gets `default`
//! and `kube-root-ca.crt`, both come back when deleted, and the CA is put back when changed.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use podvisor_controllers::{ControllerConfig, ControllerManager};
use tokio_util::sync::CancellationToken;

async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    podvisor_testkit::wait_some(what, Duration::from_secs(5), f).await
}

#[tokio::test]
async fn every_namespace_keeps_its_default_account_and_root_ca() {
    let server = podvisor_apiserver::testing::memory_server().await;
    let client = server.in_process_client(&server.admin_token());
    let config = ControllerConfig {
        root_ca: Some(server.ca_pem()),
        ..Default::default()
    };
    let stop = CancellationToken::new();
    let manager = tokio::spawn(ControllerManager::new(client.clone(), config).run(stop.clone()));

    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "team"}})).unwrap(),
    )
    .await
    .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let ca = server.ca_pem();
    let has_ca = |cm: &ConfigMap| {
        cm.data.as_ref().and_then(|d| d.get("ca.crt")) == Some(&ca)
            && cm
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/description"))
    };
    for ns in ["default", "kube-system", "team"] {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        eventually("the root CA ConfigMap", || async {
            cms.get_opt("kube-root-ca.crt")
                .await
                .unwrap()
                .filter(has_ca)
        })
        .await;
    }

    // Deleted: both come back.
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    cms.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    eventually("default again", || async {
        sas.get_opt("default").await.unwrap()
    })
    .await;
    eventually("the CA again", || async {
        cms.get_opt("kube-root-ca.crt")
            .await
            .unwrap()
            .filter(has_ca)
    })
    .await;

    // Changed: the CA is put back.
    let mut cm = cms.get("kube-root-ca.crt").await.unwrap();
    cm.data = Some([("ca.crt".to_string(), "forged".to_string())].into());
    cms.replace("kube-root-ca.crt", &PostParams::default(), &cm)
        .await
        .unwrap();
    eventually("the CA restored", || async {
        cms.get_opt("kube-root-ca.crt")
            .await
            .unwrap()
            .filter(has_ca)
    })
    .await;

    stop.cancel();
    manager.await.unwrap().unwrap();
}
