//! Real TLS on 127.0.0.1:0 with kube-rs: the CA is trusted, tokens authenticate, 401 for
//! missing or unknown tokens, 403 for what a node may not do, open health endpoints.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use podvisor_apiserver::ApiServer;
use podvisor_apiserver::testing::{Serving, serving_memory_server};
use podvisor_testkit::{api_status, bind_pod, set_label};
use serde_json::json;

struct Running {
    srv: ApiServer,
    port: u16,
    serving: Serving,
}

impl Running {
    async fn start() -> Running {
        let serving = serving_memory_server().await;
        Running {
            srv: serving.server.clone(),
            port: serving.port,
            serving,
        }
    }

    async fn client(&self, token: &str) -> kube::Client {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.srv.ca_pem());
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: default\ncurrent-context: x\n",
            self.port
        );
        let kc = Kubeconfig::from_yaml(&yaml).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    async fn stop(self) {
        self.serving.stop().await;
    }
}

#[tokio::test]
async fn tls_crud_and_auth() {
    let r = Running::start().await;
    let admin = r.client(&r.srv.admin_token()).await;
    let v = admin.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    // Unknown token -> 401.
    let bad = r.client("not-a-token").await;
    let e = Api::<Pod>::namespaced(bad, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_status(e).code, 401);

    // A node may write its own Node and Lease, not other nodes or pods.
    let n1 = r.client(&r.srv.ensure_node_token("n1").unwrap()).await;
    let nodes: Api<Node> = Api::all(n1.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    let e = nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n2"}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(api_status(e).code, 403);
    let leases: Api<Lease> = Api::namespaced(n1.clone(), "kube-node-lease");
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let node_pods: Api<Pod> = Api::namespaced(n1.clone(), "default");
    assert_eq!(
        api_status(
            node_pods
                .create(&PostParams::default(), &p)
                .await
                .unwrap_err()
        )
        .code,
        403
    );
    // Status of a pod not bound to n1 -> 403; once bound -> allowed.
    let st = Patch::Merge(json!({"status": {"phase": "Running"}}));
    assert_eq!(
        api_status(
            node_pods
                .patch_status("p", &PatchParams::default(), &st)
                .await
                .unwrap_err()
        )
        .code,
        403
    );
    set_label(&pods, "p", "a", "b").await;
    bind_pod(&pods, "p", "n1").await.unwrap();
    node_pods
        .patch_status("p", &PatchParams::default(), &st)
        .await
        .unwrap();
    // A node lists only its own pods (the node authorizer wants its field selector).
    assert_eq!(
        node_pods
            .list(&ListParams::default().fields("spec.nodeName=n1"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        api_status(node_pods.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );
    r.stop().await;
}

#[tokio::test]
async fn health_and_version_are_open_and_discovery_needs_a_token() {
    let r = Running::start().await;
    let ca = reqwest_like_get(r.port, &r.srv.ca_pem(), "/healthz", None).await;
    assert_eq!(ca.0, 200);
    assert_eq!(ca.1, "ok");
    let v = reqwest_like_get(r.port, &r.srv.ca_pem(), "/version", None).await;
    assert_eq!(v.0, 200);
    assert!(v.1.contains("\"minor\":\"33\""));
    let d = reqwest_like_get(r.port, &r.srv.ca_pem(), "/api", None).await;
    assert_eq!(d.0, 401);
    assert!(d.1.contains("\"reason\":\"Unauthorized\""));
    r.stop().await;
}

/// A minimal HTTPS GET with rustls, trusting only the server's CA.
async fn reqwest_like_get(
    port: u16,
    ca_pem: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    use rustls::pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = conn
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}
