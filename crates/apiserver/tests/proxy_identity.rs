//! The Service proxy's identity (docs/design/0011-proxy-identity.md): a node's token reads
//! what upstream's node authorizer lets a node read (Services, Nodes; no EndpointSlices, no
//! Namespaces), its Service proxy's token (`system:kube-proxy`, bound to
//! `system:node-proxier`) what the proxy and the cluster DNS follow and nothing more; the
//! bindings of earlier versions that gave nodes the proxy's reads are retired at start.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, ListParams, PostParams};
use podvisor_apiserver::testing::memory_server;
use podvisor_apiserver::{ApiServer, ApiServerConfig};
use podvisor_testkit::api_status;
use serde_json::json;

/// Asserts `result` is upstream's 403 for `user` listing `resource` of `group` cluster-wide.
fn assert_list_forbidden<T: std::fmt::Debug>(
    result: Result<T, kube::Error>,
    user: &str,
    resource: &str,
    group: &str,
) {
    let status = api_status(result.expect_err("the list is refused"));
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (
            403,
            "Forbidden",
            format!(
                "{qualified} is forbidden: User \"{user}\" cannot list resource \"{resource}\" in API group \"{group}\" at the cluster scope"
            )
            .as_str()
        )
    );
}

#[tokio::test]
async fn a_node_lists_no_endpoint_slices_and_its_proxy_reads_what_it_follows() {
    let srv = memory_server().await;
    let admin = srv.in_process_client(&srv.admin_token());
    let node = srv.in_process_client(&srv.ensure_node_token("n1").unwrap());
    let proxy_token = srv.ensure_proxy_token("n1").unwrap();
    assert_ne!(proxy_token, srv.ensure_node_token("n1").unwrap());
    assert_ne!(proxy_token, srv.ensure_proxy_token("n2").unwrap());
    let proxy = srv.in_process_client(&proxy_token);
    Api::<Secret>::namespaced(admin.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let all = ListParams::default();

    // The node: Services, as upstream's NodeRules give every node (the kubelet's service
    // links), its own Node only (AuthorizeNodeWithSelectors); EndpointSlices and
    // Namespaces not.
    Api::<Service>::all(node.clone()).list(&all).await.unwrap();
    let user = "system:node:n1";
    let refused = Api::<Node>::all(node.clone()).list(&all).await.unwrap_err();
    assert_eq!(
        api_status(refused).message,
        format!(
            "nodes is forbidden: User \"{user}\" cannot list resource \"nodes\" in API group \"\" at the cluster scope: node 'n1' cannot read all nodes, only its own Node object"
        )
    );
    assert_list_forbidden(
        Api::<EndpointSlice>::all(node.clone()).list(&all).await,
        user,
        "endpointslices",
        "discovery.k8s.io",
    );
    assert_list_forbidden(
        Api::<Namespace>::all(node.clone()).list(&all).await,
        user,
        "namespaces",
        "",
    );

    // The proxy: Services, EndpointSlices, Nodes and Namespaces; no Secrets, no writes.
    Api::<Service>::all(proxy.clone()).list(&all).await.unwrap();
    let slices = Api::<EndpointSlice>::all(proxy.clone())
        .list(&all)
        .await
        .unwrap();
    assert!(
        slices
            .items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("kubernetes")),
        "the proxy sees the kubernetes Service's slice"
    );
    Api::<Node>::all(proxy.clone()).list(&all).await.unwrap();
    Api::<Namespace>::all(proxy.clone())
        .list(&all)
        .await
        .unwrap();
    let proxy_user = "system:kube-proxy";
    assert_list_forbidden(
        Api::<Secret>::all(proxy.clone()).list(&all).await,
        proxy_user,
        "secrets",
        "",
    );
    let refused = Api::<Service>::namespaced(proxy.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        api_status(refused).message,
        "services is forbidden: User \"system:kube-proxy\" cannot create resource \"services\" in API group \"\" in the namespace \"default\""
    );
}

/// A data dir of an earlier version bound nodes to `system:node-proxier` and
/// `system:podvisor:cluster-dns`: the next start removes both grants, and the node is
/// refused what they gave it.
#[tokio::test]
async fn a_restart_retires_the_node_bindings_of_earlier_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(podvisor_store::memory::MemoryStore::new());
    let first = ApiServer::new(store.clone(), ApiServerConfig::new(dir.path()))
        .await
        .unwrap();
    let admin = first.in_process_client(&first.admin_token());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin);
    let nodes =
        json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:nodes"});
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "system:podvisor:node-proxier",
                    "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                    "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-proxier"},
                "subjects": [nodes.clone()],
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut dns = bindings.get("system:podvisor:cluster-dns").await.unwrap();
    dns.subjects
        .get_or_insert_default()
        .push(serde_json::from_value(nodes).unwrap());
    bindings
        .replace("system:podvisor:cluster-dns", &PostParams::default(), &dns)
        .await
        .unwrap();
    let node = first.in_process_client(&first.ensure_node_token("n1").unwrap());
    Api::<EndpointSlice>::all(node)
        .list(&ListParams::default())
        .await
        .expect("the old bindings let the node list EndpointSlices");
    drop(first);

    let second = ApiServer::new(store, ApiServerConfig::new(dir.path()))
        .await
        .unwrap();
    let admin = second.in_process_client(&second.admin_token());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin);
    assert!(
        bindings
            .get_opt("system:podvisor:node-proxier")
            .await
            .unwrap()
            .is_none()
    );
    let dns = bindings.get("system:podvisor:cluster-dns").await.unwrap();
    let subjects: Vec<(String, String)> = dns
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.kind, s.name))
        .collect();
    assert_eq!(
        subjects,
        vec![("User".to_string(), "system:kube-proxy".to_string())]
    );
    let node = second.in_process_client(&second.ensure_node_token("n1").unwrap());
    assert_list_forbidden(
        Api::<EndpointSlice>::all(node.clone())
            .list(&ListParams::default())
            .await,
        "system:node:n1",
        "endpointslices",
        "discovery.k8s.io",
    );
    assert_list_forbidden(
        Api::<Namespace>::all(node)
            .list(&ListParams::default())
            .await,
        "system:node:n1",
        "namespaces",
        "",
    );
}
