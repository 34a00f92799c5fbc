//! Protobuf through the API server's router: request bodies, negotiated responses,
//! lists, Tables, watches, DeleteOptions, and the 400/415 errors.

use std::path::PathBuf;

use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use podvisor_apiserver::ApiServer;
use podvisor_apiserver::protobuf;
use podvisor_apiserver::testing::memory_server;
use podvisor_testkit::json::without_server_fields;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const PB: &str = "application/vnd.kubernetes.protobuf";
const CLIENT_GO_ACCEPT: &str = "application/vnd.kubernetes.protobuf,application/json";

struct Reply {
    status: StatusCode,
    content_type: String,
    body: bytes::Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "expected JSON, got {:?}",
            self.content_type
        );
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn protobuf(&self) -> Value {
        assert_eq!(self.content_type, PB, "expected protobuf");
        protobuf::decode(&self.body).expect("protobuf body")
    }
}

async fn call(
    srv: &ApiServer,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri).header(
        header::AUTHORIZATION,
        format!("Bearer {}", srv.admin_token()),
    );
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let resp = srv
        .router()
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("router is infallible");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        content_type,
        body,
    }
}

fn fixture(name: &str) -> (Vec<u8>, Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protobuf");
    let pb = std::fs::read(dir.join(format!("{name}.pb"))).expect("fixture .pb");
    let json = std::fs::read(dir.join(format!("{name}.json"))).expect("fixture .json");
    (pb, serde_json::from_slice(&json).expect("fixture JSON"))
}

async fn create_namespace(srv: &ApiServer, name: &str) {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let r = call(
        srv,
        Method::POST,
        "/api/v1/namespaces",
        Some("application/json"),
        None,
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

/// kubectl's protobuf bodies create exactly what its JSON bodies create.
#[tokio::test]
async fn protobuf_and_json_bodies_create_the_same_objects() {
    let srv = memory_server().await;
    create_namespace(&srv, "jsonpath").await;
    for (name, path) in [
        ("configmap", "/api/v1/namespaces/{ns}/configmaps"),
        ("secret", "/api/v1/namespaces/{ns}/secrets"),
        ("deployment", "/apis/apps/v1/namespaces/{ns}/deployments"),
    ] {
        let (pb, json) = fixture(name);
        let via_pb = call(
            &srv,
            Method::POST,
            &path.replace("{ns}", "default"),
            Some(PB),
            Some(CLIENT_GO_ACCEPT),
            pb,
        )
        .await;
        assert_eq!(
            via_pb.status,
            StatusCode::CREATED,
            "{name}: {:?}",
            via_pb.body
        );
        let via_json = call(
            &srv,
            Method::POST,
            &path.replace("{ns}", "jsonpath"),
            Some("application/json"),
            None,
            json.to_string().into_bytes(),
        )
        .await;
        assert_eq!(
            via_json.status,
            StatusCode::CREATED,
            "{name}: {:?}",
            via_json.body
        );
        // The create answer to a protobuf-first client is protobuf.
        let created = via_pb.protobuf();
        let object_name = json["metadata"]["name"].as_str().expect("name");
        let read = |ns: &str| format!("{}/{object_name}", path.replace("{ns}", ns));
        let pb_read = call(&srv, Method::GET, &read("default"), None, None, vec![])
            .await
            .json();
        let json_read = call(&srv, Method::GET, &read("jsonpath"), None, None, vec![])
            .await
            .json();
        assert_eq!(
            without_server_fields(pb_read.clone()),
            without_server_fields(json_read),
            "{name}"
        );
        assert_eq!(
            created, pb_read,
            "{name}: create answer differs from a later GET"
        );
    }

    // Namespaces are cluster-scoped: compare two names.
    let (pb, json) = fixture("namespace");
    let r = call(&srv, Method::POST, "/api/v1/namespaces", Some(PB), None, pb).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let mut twin = json.clone();
    twin["metadata"]["name"] = json!("dev-json");
    let r = call(
        &srv,
        Method::POST,
        "/api/v1/namespaces",
        Some("application/json"),
        None,
        twin.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mut a = without_server_fields(
        call(
            &srv,
            Method::GET,
            "/api/v1/namespaces/dev",
            None,
            None,
            vec![],
        )
        .await
        .json(),
    );
    let mut b = without_server_fields(
        call(
            &srv,
            Method::GET,
            "/api/v1/namespaces/dev-json",
            None,
            None,
            vec![],
        )
        .await
        .json(),
    );
    for v in [&mut a, &mut b] {
        let meta = v["metadata"].as_object_mut().expect("metadata");
        meta.remove("name");
        meta.get_mut("labels")
            .and_then(Value::as_object_mut)
            .map(|l| l.remove("kubernetes.io/metadata.name"));
    }
    assert_eq!(a, b);
}

#[tokio::test]
async fn protobuf_first_accept_gets_protobuf_objects_and_lists() {
    let srv = memory_server().await;
    let (pb, _) = fixture("configmap");
    let r = call(
        &srv,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(PB),
        None,
        pb,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Without Accept the answer is JSON.
    assert!(r.content_type.starts_with("application/json"));

    let uri = "/api/v1/namespaces/default/configmaps/c";
    let as_json = call(
        &srv,
        Method::GET,
        uri,
        None,
        Some("application/json"),
        vec![],
    )
    .await
    .json();
    let as_pb = call(&srv, Method::GET, uri, None, Some(CLIENT_GO_ACCEPT), vec![])
        .await
        .protobuf();
    assert_eq!(as_pb, as_json);
    let only_pb = call(&srv, Method::GET, uri, None, Some(PB), vec![])
        .await
        .protobuf();
    assert_eq!(only_pb, as_json);

    let list_uri = "/api/v1/namespaces/default/configmaps";
    let list_json = call(&srv, Method::GET, list_uri, None, None, vec![])
        .await
        .json();
    let list_pb = call(
        &srv,
        Method::GET,
        list_uri,
        None,
        Some(CLIENT_GO_ACCEPT),
        vec![],
    )
    .await
    .protobuf();
    assert_eq!(list_pb["kind"], "ConfigMapList");
    assert_eq!(
        list_pb["metadata"]["resourceVersion"],
        list_json["metadata"]["resourceVersion"]
    );
    let strip = |items: &Value| -> Vec<Value> {
        items
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                let mut i = i.clone();
                if let Some(m) = i.as_object_mut() {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
                i
            })
            .collect()
    };
    assert_eq!(strip(&list_pb["items"]), strip(&list_json["items"]));

    // Tables are JSON whatever else the client accepts.
    let table = call(
        &srv,
        Method::GET,
        list_uri,
        None,
        Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/vnd.kubernetes.protobuf,application/json"),
        vec![],
    )
    .await
    .json();
    assert_eq!(table["kind"], "Table");

    // Errors stay JSON Statuses.
    let missing = call(
        &srv,
        Method::GET,
        "/api/v1/namespaces/default/configmaps/nope",
        None,
        Some(CLIENT_GO_ACCEPT),
        vec![],
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["reason"], "NotFound");
}

#[tokio::test]
async fn bad_protobuf_is_a_400_and_unknown_media_a_415() {
    let srv = memory_server().await;
    let uri = "/api/v1/namespaces/default/configmaps";
    let (good, _) = fixture("configmap");
    let mut bodies: Vec<Vec<u8>> = vec![
        b"k8s\0\xff\xff\xff".to_vec(),
        b"{\"kind\":\"ConfigMap\"}".to_vec(),
        good[..good.len() / 2].to_vec(),
        vec![],
    ];
    // A deterministic spray of mutations of a valid body.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200 {
        let mut b = good.clone();
        for _ in 0..3 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let at = usize::try_from(seed >> 33).unwrap_or(0) % b.len();
            b[at] = (seed >> 17) as u8;
        }
        bodies.push(b);
    }
    let mut rejected = 0;
    for body in bodies {
        let r = call(&srv, Method::POST, uri, Some(PB), None, body).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST
                || r.status == StatusCode::CREATED
                || r.status == StatusCode::CONFLICT
                || r.status == StatusCode::UNPROCESSABLE_ENTITY,
            "unexpected {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        if r.status == StatusCode::BAD_REQUEST {
            rejected += 1;
            assert_eq!(v["kind"], "Status");
            assert_eq!(v["reason"], "BadRequest");
            assert_eq!(v["code"], 400);
        }
    }
    assert!(
        rejected >= 4,
        "garbage bodies must be rejected, {rejected} were"
    );

    let r = call(
        &srv,
        Method::POST,
        uri,
        Some("text/plain"),
        None,
        b"a=b".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v = r.json();
    assert_eq!(v["reason"], "UnsupportedMediaType");
    assert_eq!(v["code"], 415);
    assert!(v["message"].as_str().is_some_and(|m| m.contains(PB)), "{v}");
}

#[tokio::test]
async fn protobuf_delete_options_are_honoured() {
    let srv = memory_server().await;
    let (pb, _) = fixture("configmap");
    let uri = "/api/v1/namespaces/default/configmaps";
    assert_eq!(
        call(&srv, Method::POST, uri, Some(PB), None, pb)
            .await
            .status,
        StatusCode::CREATED
    );
    // A wrong uid precondition must fail; the right one deletes.
    let opts = |uid: &str| {
        protobuf::encode(&json!({"apiVersion": "v1", "kind": "DeleteOptions",
            "propagationPolicy": "Background", "preconditions": {"uid": uid}}))
        .expect("encode")
    };
    let r = call(
        &srv,
        Method::DELETE,
        &format!("{uri}/c"),
        Some(PB),
        None,
        opts("wrong"),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let live = call(&srv, Method::GET, &format!("{uri}/c"), None, None, vec![])
        .await
        .json();
    let uid = live["metadata"]["uid"].as_str().expect("uid");
    let r = call(
        &srv,
        Method::DELETE,
        &format!("{uri}/c"),
        Some(PB),
        None,
        opts(uid),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let gone = call(&srv, Method::GET, &format!("{uri}/c"), None, None, vec![]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn watches_for_protobuf_clients() {
    let srv = memory_server().await;
    let (pb, created) = fixture("configmap");
    let uri = "/api/v1/namespaces/default/configmaps";
    assert_eq!(
        call(&srv, Method::POST, uri, Some(PB), None, pb)
            .await
            .status,
        StatusCode::CREATED
    );
    let watch = format!("{uri}?watch=true&timeoutSeconds=1");

    // client-go's Accept lists JSON too: a JSON line stream.
    let r = call(
        &srv,
        Method::GET,
        &watch,
        None,
        Some(CLIENT_GO_ACCEPT),
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.content_type.starts_with("application/json"),
        "{}",
        r.content_type
    );
    let first: Value =
        serde_json::from_slice(r.body.split(|b| *b == b'\n').next().expect("a line"))
            .expect("JSON event");
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["data"], created["data"]);

    // A protobuf-only client: length-prefixed WatchEvent frames.
    let r = call(&srv, Method::GET, &watch, None, Some(PB), vec![]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, protobuf::PROTOBUF_WATCH);
    let body = &r.body[..];
    assert!(body.len() > 4, "no frame");
    let len = u32::from_be_bytes(body[..4].try_into().expect("prefix")) as usize;
    let (ty, object) = protobuf::decode_watch_event(&body[4..4 + len]).expect("frame");
    assert_eq!(ty, "ADDED");
    assert_eq!(object["kind"], "ConfigMap");
    assert_eq!(object["data"], created["data"]);
}
