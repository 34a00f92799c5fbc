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
/// A Service delete answers with the Service (upstream's `ReturnDeletedObject`), which the
/// official clients parse as the kind they asked for; a ConfigMap delete answers a Status.
#[tokio::test]
async fn deleting_a_service_returns_the_service() {
    let srv = memory_server().await;
    let admin = srv.admin_token();
    let svc = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},
        "spec":{"ports":[{"port":80}]}});
    let (code, body) = call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/services",
        &admin,
        "application/json",
        svc.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let (code, body) = call(
        &srv,
        "DELETE",
        "/api/v1/namespaces/default/services/s",
        &admin,
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    let v = json_of(&body);
    assert_eq!(
        (v["kind"].as_str(), v["metadata"]["name"].as_str()),
        (Some("Service"), Some("s"))
    );
    let cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}});
    call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &admin,
        "application/json",
        cm.to_string().into_bytes(),
    )
    .await;
    let (code, body) = call(
        &srv,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/c",
        &admin,
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(json_of(&body)["kind"], "Status");
}

/// `timeoutSeconds` at the top of its type is an ordinary long watch, not a panic.
#[tokio::test]
async fn watch_with_the_largest_timeout_does_not_panic() {
    let srv = memory_server().await;
    let admin = srv.admin_token();
    for t in [
        "9223372036854775807",
        "18446744073709551615",
        "-1",
        "99999999999999999999",
    ] {
        let req = Request::builder()
            .uri(format!(
                "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds={t}"
            ))
            .header("authorization", format!("Bearer {admin}"))
            .body(Body::empty())
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(5), srv.router().oneshot(req))
            .await
            .expect("the watch answers")
            .expect("infallible");
        assert!(
            resp.status().as_u16() < 500,
            "timeoutSeconds={t}: {}",
            resp.status()
        );
    }
}

/// Hostile bodies on every decoding path are refused quickly: 100k-level nesting in JSON
/// and YAML, in creates, updates, patches and delete options.
#[tokio::test]
async fn deeply_nested_bodies_are_refused_fast_everywhere() {
    let srv = memory_server().await;
    let admin = srv.admin_token();
    let deep_json = format!("{{\"a\":{}", "[".repeat(100_000)).into_bytes();
    let deep_yaml = format!("a: {}", "[".repeat(100_000)).into_bytes();
    let cases: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            deep_json.clone(),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/yaml",
            deep_yaml.clone(),
        ),
        (
            "PUT",
            "/api/v1/namespaces/default/configmaps/c",
            "application/yaml",
            deep_yaml.clone(),
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/c",
            "application/merge-patch+json",
            deep_json.clone(),
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/c",
            "application/apply-patch+yaml",
            deep_yaml.clone(),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps/c",
            "application/yaml",
            deep_yaml.clone(),
        ),
    ];
    for (method, path, ct, body) in cases {
        let started = Instant::now();
        let (code, reply) = call(&srv, method, path, &admin, ct, body).await;
        let took = started.elapsed();
        assert!(
            (400..500).contains(&code),
            "{method} {path} {ct}: {code} {}",
            String::from_utf8_lossy(&reply)
        );
        assert!(
            // generous for a debug build on a busy machine; the unbounded parser took tens of
            // seconds, and the release figure lives in `podvisor bench --only hostile`
            took < Duration::from_secs(1),
            "{method} {path} {ct}: {took:?}"
        );
    }
}

/// A body is not decoded for a user who may not make the request: an unauthenticated
/// client or a read-only user sending a hostile body gets 401/403 at once.
#[tokio::test]
async fn bodies_are_not_decoded_before_authorization() {
    let srv = memory_server().await;
    let node = srv.ensure_node_token("n1").expect("node token");
    let deep_yaml = format!("a: {}", "[".repeat(100_000)).into_bytes();
    for (token, want) in [("not-a-token", 401), (node.as_str(), 403)] {
        let started = Instant::now();
        let (code, _) = call(
            &srv,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            token,
            "application/yaml",
            deep_yaml.clone(),
        )
        .await;
        assert_eq!(code, want);
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}

/// A store whose disk is full: writes fail and health says why.
struct FullStore(Arc<dyn Store>);

fn no_space() -> StoreError {
    StoreError::Unavailable {
        message:
            "no space left on the device of /data/store.redb: writes fail until space is freed"
                .into(),
    }
}

#[async_trait::async_trait]
impl Store for FullStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.0.current_revision().await
    }
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.0.get(key).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        self.0.list(prefix, opts).await
    }
    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        self.0.count(prefix).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        if key.contains("/configmaps/") {
            return Err(no_space());
        }
        self.0.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        self.0.update(key, value, expected).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        self.0.delete(key, expected).await
    }
    async fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> Result<podvisor_store::WatchStream, StoreError> {
        self.0.watch(prefix, from).await
    }
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.0.compact(revision).await
    }
    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.0.compacted_revision().await
    }
    async fn health(&self) -> Result<(), StoreError> {
        Err(no_space())
    }
}

/// While the store cannot write, /readyz says so (500, `[-]etcd-readiness failed`, the reason with
/// `?verbose`) and writes answer a Status that names the cause.
#[tokio::test]
async fn readyz_reports_the_store_and_writes_name_the_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FullStore(Arc::new(podvisor_store::MemoryStore::new())));
    let srv = ApiServer::new(store, ApiServerConfig::new(dir.path()))
        .await
        .expect("server");
    let (code, body) = call(&srv, "GET", "/readyz", "", "", Vec::new()).await;
    assert_eq!(code, 500);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("[+]etcd ok\n[-]etcd-readiness failed: reason withheld\nreadyz check failed"),
        "{text}"
    );
    let (code, body) = call(&srv, "GET", "/readyz?verbose", "", "", Vec::new()).await;
    assert_eq!(code, 500);
    assert!(String::from_utf8_lossy(&body).contains("no space left"));
    let (code, _) = call(&srv, "GET", "/livez", "", "", Vec::new()).await;
    assert_eq!(code, 200, "the process is alive");
    let cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}});
    let (code, body) = call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &srv.admin_token(),
        "application/json",
        cm.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 500);
    let v = json_of(&body);
    assert_eq!(v["reason"], "InternalError");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("no space left")),
        "{v}"
    );
}
