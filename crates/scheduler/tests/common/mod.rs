//! Shared helpers for the in-process scheduler tests: an API server on the memory store,
//! Node objects made Ready through `nodes/status`, pods, and polling with generous bounds.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use podvisor_testkit::quantities;
use podvisor_testkit::{PodBuilder, container};

/// A running in-process API server and an admin client.
pub struct Cluster {
    pub server: podvisor_apiserver::ApiServer,
    pub client: kube::Client,
}

pub async fn cluster() -> Cluster {
    let server = podvisor_apiserver::testing::memory_server().await;
    let client = server.in_process_client(&server.admin_token());
    Cluster { server, client }
}

/// Creates a Ready node with the given allocatable cpu, memory and pod count.
pub async fn add_node(client: &kube::Client, name: &str, cpu: &str, mem: &str, pods: &str) {
    add_node_with(client, name, cpu, mem, pods, Vec::new(), BTreeMap::new()).await;
}

pub async fn add_node_with(
    client: &kube::Client,
    name: &str,
    cpu: &str,
    mem: &str,
    pods: &str,
    taints: Vec<Taint>,
    labels: BTreeMap<String, String>,
) {
    let api: Api<Node> = Api::all(client.clone());
    let mut all_labels = labels;
    all_labels.insert("kubernetes.io/hostname".to_owned(), name.to_owned());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(all_labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..Default::default()
        }),
        status: None,
    };
    api.create(&PostParams::default(), &node)
        .await
        .expect("create node");
    set_node_status(client, name, cpu, mem, pods, "True").await;
}

pub async fn set_node_status(
    client: &kube::Client,
    name: &str,
    cpu: &str,
    mem: &str,
    pods: &str,
    ready: &str,
) {
    let api: Api<Node> = Api::all(client.clone());
    let alloc = quantities(&[("cpu", cpu), ("memory", mem), ("pods", pods)]);
    let status = NodeStatus {
        allocatable: Some(alloc.clone()),
        capacity: Some(alloc),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".to_owned(),
            status: ready.to_owned(),
            reason: Some("KubeletReady".to_owned()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch node status");
}

/// A pod in `default` with one container `app` requesting `cpu`.
pub fn pod(name: &str, cpu: &str) -> Pod {
    pod_builder(name, cpu).build()
}

/// The builder behind [`pod`], for more settings.
pub fn pod_builder(name: &str, cpu: &str) -> PodBuilder {
    podvisor_testkit::pod(name)
        .namespace("default")
        .container(container("app").image("busybox").requests(&[("cpu", cpu)]))
}

pub async fn create_pod(client: &kube::Client, pod: &Pod) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), pod)
        .await
        .expect("create pod")
}

pub async fn get_pod(client: &kube::Client, name: &str) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.get(name).await.expect("get pod")
}

pub async fn list_pods(client: &kube::Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .expect("list pods")
        .items
}

pub fn node_of(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

pub fn scheduled_condition(p: &Pod) -> Option<(String, Option<String>, Option<String>)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    podvisor_testkit::wait_some(what, limit, check).await
}

/// Waits until the pod is bound and returns its node.
pub async fn wait_bound(client: &kube::Client, name: &str) -> String {
    eventually(
        Duration::from_secs(20),
        &format!("pod {name} bound"),
        || async { node_of(&get_pod(client, name).await) },
    )
    .await
}

/// Waits until the pod's PodScheduled condition is False/Unschedulable and returns the
/// message.
pub async fn wait_unschedulable(client: &kube::Client, name: &str) -> String {
    eventually(
        Duration::from_secs(20),
        &format!("pod {name} unschedulable"),
        || async {
            match scheduled_condition(&get_pod(client, name).await) {
                Some((s, Some(r), Some(m))) if s == "False" && r == "Unschedulable" => Some(m),
                _ => None,
            }
        },
    )
    .await
}
