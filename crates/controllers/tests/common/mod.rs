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
