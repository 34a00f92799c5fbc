//! Helpers for tests that talk to an API server through `kube`.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, Node, NodeCondition, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource};

/// Polls `check` every 20 ms until it returns `Some`; panics naming `what` after `limit`
/// (of tokio time).
pub async fn wait_some<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every `every` until it holds; panics naming `what` after `limit` (of tokio
/// time). Returns how long it took.
pub async fn wait_until<F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Deletes pod `name` with a grace period of 0 (`kubectl delete --grace-period=0`): the
/// object goes at once, and the node then stops what is left.
pub async fn delete_now(pods: &Api<Pod>, name: &str) {
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    if let Err(e) = pods.delete(name, &now).await {
        panic!("delete pod {name}: {e}");
    }
}

/// The Node's `Ready` condition, if it has one.
pub fn node_ready(n: &Node) -> Option<&NodeCondition> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The `Status` of an API error; panics (failing the test) on any other error.
pub fn api_status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `check` every 50 ms until it holds; panics after 20 s (of tokio time) naming
/// `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// `kubectl scale <kind>/<name> --replicas=n` through the `scale` subresource.
pub async fn scale<K>(api: &Api<K>, name: &str, n: i32)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_scale(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": n}})),
    )
    .await
    .expect("scale");
}

/// Plays the kubelet for one pod: `Running` and `Ready=True`.
pub async fn mark_ready(pods: &Api<Pod>, name: &str) -> Result<Pod, kube::Error> {
    let patch = serde_json::json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// The names of every object `api` lists (panics if the list fails).
pub async fn object_names<K>(api: &Api<K>) -> Vec<String>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect()
}

/// Sets one label on `name` with a merge patch (panics if the patch fails).
pub async fn set_label<K>(api: &Api<K>, name: &str, key: &str, value: &str) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({"metadata": {"labels": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label patch")
}

/// Binds pod `name` to `node` through `pods/binding`, as the scheduler does.
pub async fn bind_pod(pods: &Api<Pod>, name: &str, node: &str) -> Result<(), kube::Error> {
    let binding: Binding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
    }))
    .expect("binding");
    pods.create_subresource::<Binding, kube::core::Status>(
        "binding",
        name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map(|_| ())
}
