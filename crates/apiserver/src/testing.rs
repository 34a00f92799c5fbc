//! Helpers for other crates' tests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::{ApiServer, ApiServerConfig};

/// An API server on a fresh memory store with a temporary data dir (removed when the last
/// clone of the server is dropped).
pub async fn memory_server() -> ApiServer {
    let dir = tempfile::tempdir().expect("temporary data dir");
    let config = ApiServerConfig::new(dir.path());
    let store = Arc::new(podvisor_store::memory::MemoryStore::new());
    ApiServer::build(store, config, Some(dir))
        .await
        .expect("memory api server")
}

/// A [`memory_server`] serving HTTPS on a loopback port until [`Serving::stop`].
pub struct Serving {
    /// The server.
    pub server: ApiServer,
    /// The port on 127.0.0.1.
    pub port: u16,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Starts a [`memory_server`] serving HTTPS on `127.0.0.1:<port>`.
pub async fn serving_memory_server() -> Serving {
    serve_on_loopback(memory_server().await).await
}

/// Serves `server` over HTTPS on an ephemeral port of 127.0.0.1 until [`Serving::stop`]
/// (or until the [`Serving`] is dropped: the task is then left to end with the runtime).
pub async fn serve_on_loopback(server: ApiServer) -> Serving {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    let (stop, stopped) = oneshot::channel::<()>();
    let s = server.clone();
    let task = tokio::spawn(async move {
        s.serve(listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
    });
    Serving {
        server,
        port,
        stop,
        task,
    }
}

impl Serving {
    /// Stops serving; the server must end within 10 s.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops in time")
            .expect("server task");
    }
}

/// Publishes the `kube-root-ca.crt` ConfigMap (the cluster CA as `ca.crt`) in `namespace`, as
/// the controller manager's root-CA publisher does. Tests that run an agent against a bare
/// [`memory_server`] need it: every pod gets the service-account token volume, which reads it.
pub async fn publish_root_ca(server: &ApiServer, namespace: &str) {
    use k8s_openapi::api::core::v1::ConfigMap;
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("kube-root-ca.crt".into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some([("ca.crt".to_string(), server.ca_pem())].into()),
        ..Default::default()
    };
    kube::Api::<ConfigMap>::namespaced(server.in_process_client(&server.admin_token()), namespace)
        .create(&kube::api::PostParams::default(), &cm)
        .await
        .expect("publish kube-root-ca.crt");
}
