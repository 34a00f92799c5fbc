//! The controller manager with default settings against an in-process API server on the
//! memory store, as the workload controllers' tests start it.

use kube::Client;
use podvisor_controllers::{ControllerConfig, ControllerError, ControllerManager};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running manager and an admin client of its API server.
pub struct Running {
    /// The admin client.
    pub client: Client,
    stop: CancellationToken,
    manager: JoinHandle<Result<(), ControllerError>>,
    _server: podvisor_apiserver::ApiServer,
}

/// Starts an API server and the controller manager.
pub async fn start() -> Running {
    let server = podvisor_apiserver::testing::memory_server().await;
    let client = server.in_process_client(&server.admin_token());
    let stop = CancellationToken::new();
    let manager = tokio::spawn(
        ControllerManager::new(client.clone(), ControllerConfig::default()).run(stop.clone()),
    );
    Running {
        client,
        stop,
        manager,
        _server: server,
    }
}

impl Running {
    /// Stops the manager; it must end cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        self.manager.await.expect("join").expect("manager");
    }
}

/// Creates `manifest` (the JSON of a namespaced object) in `default`; panics on a refusal.
#[allow(dead_code)] // not every suite creates objects from JSON
pub async fn create<K>(client: &Client, manifest: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::Serialize
        + k8s_openapi::serde::de::DeserializeOwned,
{
    let obj: K = serde_json::from_value(manifest).expect("manifest");
    kube::Api::namespaced(client.clone(), "default")
        .create(&kube::api::PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", K::kind(&())))
}
