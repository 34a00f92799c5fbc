//! Hostile and unlucky requests against the router: bodies built to cost CPU or memory, a
//! node token patching its own Node with `copy`, watch parameters at the edge of their
//! type, a delete racing a status write, and the exact bytes of error bodies.

#![allow(clippy::disallowed_methods)] // the tests measure real time

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt as _;
use podvisor_apiserver::testing::memory_server;
use podvisor_apiserver::{ApiServer, ApiServerConfig};
use podvisor_store::{KeyValue, ListOptions, ListResult, Revision, Store, StoreError};
use serde_json::{Value, json};
use tower::ServiceExt as _;

async fn call(
    srv: &ApiServer,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request");
    let resp = srv.router().oneshot(req).await.expect("infallible");
    let code = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    (code, bytes)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Error bodies are byte for byte what upstream sends: the Go struct's field order and a
/// trailing newline.
#[tokio::test]
async fn error_bodies_have_upstreams_bytes() {
    let srv = memory_server().await;
    let admin = srv.admin_token();
    let (code, body) = call(
        &srv,
        "GET",
        "/api/v1/namespaces/default/pods/missing",
        &admin,
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
         \"message\":\"pods \\\"missing\\\" not found\",\"reason\":\"NotFound\",\
         \"details\":{\"name\":\"missing\",\"kind\":\"pods\"},\"code\":404}\n"
    );
    let (code, body) = call(
        &srv,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/d",
        &admin,
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
         \"message\":\"deployments.apps \\\"d\\\" not found\",\"reason\":\"NotFound\",\
         \"details\":{\"name\":\"d\",\"group\":\"apps\",\"kind\":\"deployments\"},\"code\":404}\n"
    );
}

/// A node may patch its own Node; a small JSON patch of `copy`s that double the object each
/// time is refused (422, upstream's copy limit) quickly, before the object is built.
#[tokio::test]
async fn a_node_cannot_grow_its_node_with_json_patch_copies() {
    let srv = memory_server().await;
    let token = srv.ensure_node_token("n1").expect("node token");
    let node = json!({"apiVersion":"v1","kind":"Node","metadata":{"name":"n1",
        "annotations":{"a":"x".repeat(1000)}}});
    let (code, body) = call(
        &srv,
        "POST",
        "/api/v1/nodes",
        &token,
        "application/json",
        node.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let mut ops = Vec::new();
    // Each copy doubles the annotations: 14 of them would make 16 MB from 1 KB.
    for i in 0..14 {
        ops.push(json!({"op":"copy","from":"/metadata/annotations","path":format!("/metadata/annotations/c{i}")}));
    }
    let started = Instant::now();
    let (code, body) = call(
        &srv,
        "PATCH",
        "/api/v1/nodes/n1",
        &token,
        "application/json-patch+json",
        Value::Array(ops).to_string().into_bytes(),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(code, 422, "{}", String::from_utf8_lossy(&body));
    assert!(
        json_of(&body)["message"]
            .as_str()
            .is_some_and(|m| m.contains("accumulated size increase of copy")),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// A store that, on the first conditional delete of `key`, first lets another writer update
/// the object (a status write landing between the read and the write) and, after the
/// conflict, removes the object (its node finishing the deletion).
struct RacingStore {
    inner: Arc<dyn Store>,
    key: String,
    raced: AtomicBool,
}

#[async_trait::async_trait]
impl Store for RacingStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        self.inner.list(prefix, opts).await
    }
    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        self.inner.count(prefix).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        if key == self.key && expected.is_some() && !self.raced.swap(true, Ordering::SeqCst) {
            if let Some(cur) = self.inner.get(key).await? {
                self.inner
                    .update(key, cur.value.clone(), cur.mod_revision)
                    .await?;
            }
            let result = self.inner.delete(key, expected).await;
            let _ = self.inner.delete(key, None).await;
            return result;
        }
        self.inner.delete(key, expected).await
    }
    async fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> Result<podvisor_store::WatchStream, StoreError> {
        self.inner.watch(prefix, from).await
    }
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.inner.compacted_revision().await
    }
}

/// The DELETE of a pod that its node removes right after a status write raced the delete:
/// the delete succeeded, so it answers 200 with the pod, not 404.
#[tokio::test]
async fn a_delete_that_raced_a_status_write_answers_success() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RacingStore {
        inner: Arc::new(podvisor_store::MemoryStore::new()),
        key: "/registry/core/pods/default/p".into(),
        raced: AtomicBool::new(false),
    });
    let srv = ApiServer::new(store.clone(), ApiServerConfig::new(dir.path()))
        .await
        .expect("server");
    let admin = srv.admin_token();
    let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
        "spec":{"containers":[{"name":"c","image":"x"}]}});
    let (code, body) = call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/pods",
        &admin,
        "application/json",
        pod.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let (code, body) = call(
        &srv,
        "DELETE",
        "/api/v1/namespaces/default/pods/p",
        &admin,
        "application/json",
        Vec::new(),
    )
    .await;
    assert!(
        store.raced.load(Ordering::SeqCst),
        "the race was not staged"
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    assert_eq!(v["kind"], "Pod");
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
}
