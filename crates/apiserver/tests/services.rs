//! Services through kube-rs: defaulting, the cluster IP and node port allocators (errors,
//! release, survival across a restart, repair) and the `kubernetes` Service.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use podvisor_apiserver::{ApiServer, ApiServerConfig};
use podvisor_store::Store;
use podvisor_testkit::api_status;
use serde_json::json;

async fn server_on(store: Arc<dyn Store>, dir: &std::path::Path) -> ApiServer {
    ApiServer::new(store, ApiServerConfig::new(dir))
        .await
        .expect("api server")
}

fn service(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn create(
    api: &Api<Service>,
    name: &str,
    spec: serde_json::Value,
) -> Result<Service, kube::Error> {
    api.create(&PostParams::default(), &service(name, spec))
        .await
}

#[tokio::test]
async fn cluster_ips_are_allocated_once_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(podvisor_store::memory::MemoryStore::new());
    let srv = server_on(store.clone(), dir.path()).await;
    let api: Api<Service> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");

    let web = create(
        &api,
        "web",
        json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}),
    )
    .await
    .unwrap();
    let spec = web.spec.unwrap();
    let ip: std::net::Ipv4Addr = spec.cluster_ip.as_deref().unwrap().parse().unwrap();
    let o = ip.octets();
    assert!(
        o[0] == 10 && (96..112).contains(&o[1]),
        "{ip} in 10.96.0.0/12"
    );
    assert!(
        !(o[1] == 96 && o[2] == 0),
        "{ip}: dynamic IPs avoid the static band"
    );
    assert_eq!(spec.cluster_ips, Some(vec![ip.to_string()]));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    assert_eq!(spec.session_affinity.as_deref(), Some("None"));
    assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));

    let fixed = create(
        &api,
        "fixed",
        json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}),
    )
    .await
    .unwrap();
    assert_eq!(
        fixed.spec.unwrap().cluster_ips,
        Some(vec!["10.96.0.20".to_string()])
    );
    let dup = api_status(
        create(
            &api,
            "dup",
            json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(dup.code, 422);
    assert_eq!(
        dup.message,
        "Service \"dup\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.20\"}: failed to allocate IP 10.96.0.20: provided IP is already allocated"
    );
    let outside = api_status(
        create(
            &api,
            "out",
            json!({"clusterIP": "10.0.0.5", "ports": [{"port": 80}]}),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        outside.message.ends_with("failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
        "{}",
        outside.message
    );
    let kubernetes = api_status(
        create(
            &api,
            "k",
            json!({"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        kubernetes
            .message
            .contains("provided IP is already allocated"),
        "the kubernetes Service holds 10.96.0.1"
    );

    // A restart on the same store: the IP is still held; after deleting its Service it is free.
    drop(api);
    drop(srv);
    let srv = server_on(store.clone(), dir.path()).await;
    let api: Api<Service> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    let again = api_status(
        create(
            &api,
            "dup",
            json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}),
        )
        .await
        .unwrap_err(),
    );
    assert!(again.message.contains("provided IP is already allocated"));
    api.delete("fixed", &DeleteParams::default()).await.unwrap();
    create(
        &api,
        "dup",
        json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn node_ports_are_allocated_checked_and_kept_on_update() {
    let srv = podvisor_apiserver::testing::memory_server().await;
    let api: Api<Service> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    let np = create(&api, "np", json!({"type": "NodePort", "selector": {"app": "a"}, "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        {"name": "web", "port": 80, "nodePort": 30080}]}))
    .await
    .unwrap();
    let spec = np.spec.clone().unwrap();
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    let ports = spec.ports.unwrap();
    let dns = ports[0].node_port.unwrap();
    assert!((30000..=32767).contains(&dns));
    assert_eq!(
        ports[1].node_port,
        Some(dns),
        "one node port for one port number"
    );
    assert_eq!(ports[2].node_port, Some(30080));

    let taken = api_status(
        create(
            &api,
            "np2",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        taken.message,
        "Service \"np2\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );
    let range = api_status(
        create(
            &api,
            "np3",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        range.message,
        "Service \"np3\" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );

    // A replace without the allocated values keeps them; changing the IP is refused.
    let mut replace = service(
        "np",
        json!({"type": "NodePort", "selector": {"app": "a"}, "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        {"name": "web", "port": 80}]}),
    );
    replace.metadata.resource_version = np.metadata.resource_version.clone();
    let replaced = api
        .replace("np", &PostParams::default(), &replace)
        .await
        .unwrap();
    assert_eq!(
        replaced.spec.as_ref().unwrap().cluster_ip,
        np.spec.as_ref().unwrap().cluster_ip
    );
    assert_eq!(
        replaced.spec.as_ref().unwrap().ports.as_ref().unwrap()[2].node_port,
        Some(30080)
    );
    let mut moved = replaced.clone();
    moved.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.77".into());
    moved.spec.as_mut().unwrap().cluster_ips = Some(vec!["10.96.0.77".into()]);
    let refused = api_status(
        api.replace("np", &PostParams::default(), &moved)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        refused.message,
        "Service \"np\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.77\"}: may not change once set"
    );

    // Turned into ClusterIP, the node ports are released.
    let mut cip = replaced.clone();
    cip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    cip.spec.as_mut().unwrap().external_traffic_policy = None;
    api.replace("np", &PostParams::default(), &cip)
        .await
        .unwrap();
    create(
        &api,
        "np2",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn headless_and_external_name_services_get_no_ip() {
    let srv = podvisor_apiserver::testing::memory_server().await;
    let api: Api<Service> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    let h = create(
        &api,
        "h",
        json!({"clusterIP": "None", "selector": {"app": "a"}, "ports": [{"port": 80}]}),
    )
    .await
    .unwrap()
    .spec
    .unwrap();
    assert_eq!(h.cluster_ips, Some(vec!["None".to_string()]));
    assert_eq!(h.ip_family_policy.as_deref(), Some("SingleStack"));
    let bare = create(&api, "bare", json!({"clusterIP": "None"}))
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(bare.ip_family_policy.as_deref(), Some("RequireDualStack"));
    let ext = create(
        &api,
        "ext",
        json!({"type": "ExternalName", "externalName": "example.com"}),
    )
    .await
    .unwrap()
    .spec
    .unwrap();
    assert_eq!(
        (ext.cluster_ip, ext.ip_families, ext.internal_traffic_policy),
        (None, None, None)
    );
}

#[tokio::test]
async fn the_kubernetes_service_points_at_the_api_server() {
    let srv = podvisor_apiserver::testing::memory_server().await;
    let client = srv.in_process_client(&srv.admin_token());
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    let port = &spec.ports.unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("https"), 443));
    assert_eq!(svc.metadata.labels.unwrap()["provider"], "kubernetes");
    let ep = Api::<Endpoints>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "127.0.0.1");
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 6443);
    let slice = Api::<EndpointSlice>::namespaced(client, "default")
        .get("kubernetes")
        .await
        .unwrap();
    assert_eq!(slice.endpoints[0].addresses, vec!["127.0.0.1".to_string()]);
    assert_eq!(
        slice.metadata.labels.unwrap()["kubernetes.io/service-name"],
        "kubernetes"
    );
}

#[tokio::test]
async fn repair_releases_orphans_and_restores_missing_reservations() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(podvisor_store::memory::MemoryStore::new());
    let srv = server_on(store.clone(), dir.path()).await;
    let api: Api<Service> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    create(
        &api,
        "a",
        json!({"clusterIP": "10.96.0.30", "ports": [{"port": 80}]}),
    )
    .await
    .unwrap();
    // A leak (a crash between reserve and store) and a lost reservation.
    store
        .create(
            "/podvisor/ranges/serviceips/10.96.0.31",
            br#"{"namespace":"default","name":"gone","uid":"x","allocated":"2020-01-01T00:00:00Z"}"#.to_vec(),
        )
        .await
        .unwrap();
    store
        .delete("/podvisor/ranges/serviceips/10.96.0.30", None)
        .await
        .unwrap();
    drop(api);
    drop(srv);
    let srv = server_on(store.clone(), dir.path()).await;
    let api: Api<Service> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    assert!(
        store
            .get("/podvisor/ranges/serviceips/10.96.0.30")
            .await
            .unwrap()
            .is_some()
    );
    create(
        &api,
        "b",
        json!({"clusterIP": "10.96.0.31", "ports": [{"port": 80}]}),
    )
    .await
    .unwrap();
}
