//! Wire details through the router: discovery negotiation, OpenAPI, Warning headers,
//! Tables (objects, lists and watch events), generateName, metadata-only output.

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use podvisor_apiserver::ApiServer;
use podvisor_apiserver::testing::memory_server;
use serde_json::Value;
use serde_json::json;
use tower::ServiceExt as _;

async fn call(
    srv: &ApiServer,
    method: &str,
    uri: &str,
    ct: Option<&str>,
    accept: Option<&str>,
    body: &str,
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", srv.admin_token()));
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = srv
        .router()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"gen-","labels":{"app":"x"}},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;

#[tokio::test]
async fn discovery_flavours_echo_their_content_type() {
    let srv = memory_server().await;
    for (accept, ct, api_version) in [
        (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            "apidiscovery.k8s.io/v2",
        ),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
            "apidiscovery.k8s.io/v2beta1",
        ),
    ] {
        for path in ["/api", "/apis"] {
            let (s, h, b) = call(&srv, "GET", path, None, Some(accept), "").await;
            assert_eq!(s, 200);
            assert_eq!(h["content-type"], ct);
            assert_eq!(json(&b)["apiVersion"], api_version);
        }
    }
    let (_, h, b) = call(&srv, "GET", "/api", None, Some("application/json"), "").await;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(json(&b)["kind"], "APIVersions");
    let (_, _, b) = call(&srv, "GET", "/apis", None, None, "").await;
    let groups: Vec<String> = json(&b)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        groups,
        [
            "apiregistration.k8s.io",
            "apps",
            "events.k8s.io",
            "autoscaling",
            "batch",
            "networking.k8s.io",
            "policy",
            "rbac.authorization.k8s.io",
            "storage.k8s.io",
            "admissionregistration.k8s.io",
            "apiextensions.k8s.io",
            "scheduling.k8s.io",
            "coordination.k8s.io",
            "node.k8s.io",
            "discovery.k8s.io",
            "timelines.podvisor.io",
            "metrics.k8s.io",
        ]
    );
    let (s, _, b) = call(&srv, "GET", "/api/v1", None, None, "").await;
    assert_eq!(s, 200);
    assert!(
        json(&b)["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "pods/binding")
    );
    let (s, _, b) = call(&srv, "GET", "/openapi/v3", None, None, "").await;
    assert_eq!(s, 200);
    let url = json(&b)["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, h, _) = call(&srv, "GET", &url, None, None, "").await;
    assert_eq!(s, 200);
    assert_eq!(h["cache-control"], "public, immutable");
    assert_eq!(
        call(&srv, "GET", "/openapi/v3/apis/nope/v1", None, None, "")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn unknown_fields_follow_field_validation() {
    let srv = memory_server().await;
    let body = POD.replace(r#""image":"i""#, r#""image":"i","imagee":"j""#);
    let uri = "/api/v1/namespaces/default/pods";
    let (s, _, b) = call(
        &srv,
        "POST",
        &format!("{uri}?fieldValidation=Strict"),
        Some("application/json"),
        None,
        &body,
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        json(&b)["message"]
            .as_str()
            .unwrap()
            .contains("strict decoding error: unknown field \"spec.containers[0].imagee\"")
    );
    let (s, h, _) = call(
        &srv,
        "POST",
        &format!("{uri}?fieldValidation=Warn"),
        Some("application/json"),
        None,
        &body,
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(
        h["warning"],
        "299 - \"unknown field \\\"spec.containers[0].imagee\\\"\""
    );
    let (s, h, _) = call(
        &srv,
        "POST",
        &format!("{uri}?fieldValidation=Ignore"),
        Some("application/json"),
        None,
        &body,
    )
    .await;
    assert_eq!(s, 201);
    assert!(h.get("warning").is_none());
    let (s, _, _) = call(
        &srv,
        "POST",
        &format!("{uri}?fieldValidation=Nope"),
        Some("application/json"),
        None,
        &body,
    )
    .await;
    assert_eq!(s, 400);
    // YAML bodies work too.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  a: b\n";
    let (s, _, b) = call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/yaml"),
        None,
        yaml,
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(json(&b)["data"]["a"], "b");
}

#[tokio::test]
async fn tables_for_objects_lists_and_watches() {
    let srv = memory_server().await;
    let uri = "/api/v1/namespaces/default/pods";
    let (s, _, b) = call(&srv, "POST", uri, Some("application/json"), None, POD).await;
    assert_eq!(s, 201);
    let name = json(&b)["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let (_, _, b) = call(&srv, "GET", uri, None, Some(TABLE), "").await;
    let t = json(&b);
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 9);
    assert_eq!(t["rows"][0]["cells"][0], name.as_str());
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert!(t["metadata"]["resourceVersion"].is_string());
    let (_, _, b) = call(&srv, "GET", &format!("{uri}/{name}"), None, Some(TABLE), "").await;
    assert_eq!(json(&b)["rows"].as_array().unwrap().len(), 1);
    let (_, _, b) = call(
        &srv,
        "GET",
        &format!("{uri}?includeObject=Object"),
        None,
        Some(TABLE),
        "",
    )
    .await;
    assert_eq!(json(&b)["rows"][0]["object"]["kind"], "Pod");
    let (_, _, b) = call(
        &srv,
        "GET",
        uri,
        None,
        Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
        "",
    )
    .await;
    assert_eq!(json(&b)["kind"], "PartialObjectMetadataList");
    // A Table watch: every event is a one-row Table; definitions only in the first.
    let (s, h, b) = call(
        &srv,
        "GET",
        &format!("{uri}?watch=true&resourceVersion=0&timeoutSeconds=1"),
        None,
        Some(TABLE),
        "",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/json");
    let lines: Vec<Value> = b
        .split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(json)
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["kind"], "Table");
    assert!(lines[0]["object"]["columnDefinitions"].is_array());
    // Streaming list: ADDED, then the initial-events-end bookmark.
    let (_, _, b) = call(&srv, "GET", &format!("{uri}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"), None, None, "").await;
    let lines: Vec<Value> = b
        .split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(json)
        .collect();
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[1]["type"], "BOOKMARK");
    assert_eq!(
        lines[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(lines[1]["object"]["kind"], "Pod");
    // Lists carry their resourceVersion and kind.
    let (_, _, b) = call(&srv, "GET", uri, None, None, "").await;
    let l = json(&b);
    assert_eq!(
        (l["kind"].as_str(), l["apiVersion"].as_str()),
        (Some("PodList"), Some("v1"))
    );
    assert!(l["metadata"]["resourceVersion"].is_string());
}

#[tokio::test]
async fn exec_attach_and_portforward_validate_like_upstream() {
    let srv = memory_server().await;
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;
    let (s, _, _) = call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some("application/json"),
        None,
        pod,
    )
    .await;
    assert_eq!(s, 201);
    for (method, sub, says) in [
        (
            "GET",
            "exec?command=echo&command=hi&container=x&stdout=true",
            "container x is not valid for pod web",
        ),
        (
            "POST",
            "exec?container=c&stdout=true",
            "you must specify at least one command for the container",
        ),
        (
            "GET",
            "exec?command=true",
            "you must specify at least 1 of stdin, stdout, stderr",
        ),
        // Valid, but not a WebSocket upgrade.
        (
            "GET",
            "exec?command=true&stdout=true",
            "Upgrade request required",
        ),
        ("GET", "attach?stdout=true", "Upgrade request required"),
        ("POST", "portforward?ports=80", "Upgrade request required"),
        ("GET", "portforward?ports=80", "Upgrade request required"),
    ] {
        let uri = format!("/api/v1/namespaces/default/pods/web/{sub}");
        let (s, _, b) = call(&srv, method, &uri, None, None, "").await;
        assert_eq!(s, 400, "{method} {uri}");
        let st = json(&b);
        assert_eq!(st["kind"], "Status");
        assert_eq!(st["reason"], "BadRequest");
        assert_eq!(st["code"], 400);
        let msg = st["message"].as_str().unwrap();
        assert!(msg.contains(says), "{method} {uri}: {msg}");
    }
    // A completed pod.
    let (s, _, _) = call(
        &srv,
        "PATCH",
        "/api/v1/namespaces/default/pods/web/status",
        Some("application/merge-patch+json"),
        None,
        r#"{"status":{"phase":"Succeeded"}}"#,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, b) = call(
        &srv,
        "GET",
        "/api/v1/namespaces/default/pods/web/exec?command=true&stdout=true",
        None,
        None,
        "",
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        json(&b)["message"],
        "cannot exec into a container in a completed pod; current phase is Succeeded"
    );
    // A missing pod is a plain NotFound; other verbs are not allowed.
    let (s, _, b) = call(
        &srv,
        "GET",
        "/api/v1/namespaces/default/pods/nope/exec",
        None,
        None,
        "",
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(json(&b)["message"], "pods \"nope\" not found");
    let (s, _, _) = call(
        &srv,
        "DELETE",
        "/api/v1/namespaces/default/pods/web/exec",
        None,
        None,
        "",
    )
    .await;
    assert_eq!(s, 405);
    // Discovery lists the subresources with their option kinds.
    let (_, _, b) = call(&srv, "GET", "/api/v1", None, None, "").await;
    let names: Vec<String> = json(&b)["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    for n in [
        "pods/exec",
        "pods/attach",
        "pods/portforward",
        "pods/eviction",
    ] {
        assert!(names.iter().any(|x| x == n), "{names:?}");
    }
    let eviction = json(&b)["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .cloned()
        .unwrap();
    assert_eq!(
        (&eviction["group"], &eviction["version"], &eviction["kind"]),
        (&json!("policy"), &json!("v1"), &json!("Eviction"))
    );
}

#[tokio::test]
async fn eviction_deletes_the_pod_gracefully() {
    let srv = memory_server().await;
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"nodeName":"n1","containers":[{"name":"c","image":"i"}]}}"#;
    let (s, _, _) = call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some("application/json"),
        None,
        pod,
    )
    .await;
    assert_eq!(s, 201);
    let uri = "/api/v1/namespaces/default/pods/web/eviction";
    let (s, _, b) = call(
        &srv,
        "POST",
        uri,
        Some("application/json"),
        None,
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"other"}}"#,
    )
    .await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    let (s, _, b) = call(
        &srv,
        "POST",
        uri,
        Some("application/json"),
        None,
        r#"{"apiVersion":"policy/v1beta1","kind":"Eviction","metadata":{"name":"web"},"deleteOptions":{"gracePeriodSeconds":7}}"#,
    )
    .await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    let st = json(&b);
    assert_eq!(
        (&st["kind"], &st["status"]),
        (&json!("Status"), &json!("Success"))
    );
    // A bound pod is deleted gracefully: marked with the Eviction's grace period.
    let (s, _, b) = call(
        &srv,
        "GET",
        "/api/v1/namespaces/default/pods/web",
        None,
        None,
        "",
    )
    .await;
    assert_eq!(s, 200);
    let p = json(&b);
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 7);
    // Marked as upstream's eviction marks it before the delete.
    let cond = p["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionTarget"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&cond["status"], &cond["reason"], &cond["message"]),
        (
            &json!("True"),
            &json!("EvictionByEvictionAPI"),
            &json!("Eviction API: evicting")
        ),
        "{p}"
    );
    assert!(cond["lastTransitionTime"].is_string(), "{cond}");
    let (s, _, _) = call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/pods/nope/eviction",
        Some("application/json"),
        None,
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"nope"}}"#,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _, _) = call(&srv, "GET", uri, None, None, "").await;
    assert_eq!(s, 405);
}

/// Discovery and OpenAPI documents carry an ETag and answer 304 when the client has them.
#[tokio::test]
async fn discovery_and_openapi_are_cached_by_etag() {
    let srv = memory_server().await;
    let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    for (uri, accept) in [
        ("/apis", Some(v2)),
        ("/openapi/v2", None),
        ("/openapi/v3", None),
        ("/openapi/v3/apis/batch/v1", None),
    ] {
        let (code, h, body) = call(&srv, "GET", uri, None, accept, "").await;
        assert_eq!(code, StatusCode::OK, "{uri}");
        assert!(!body.is_empty());
        let etag = h["etag"].to_str().unwrap().to_string();
        let mut req = Request::builder()
            .uri(uri)
            .header("authorization", format!("Bearer {}", srv.admin_token()))
            .header("if-none-match", &etag);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let resp = srv
            .router()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{uri}");
        assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);
    }
    let pb = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    let (code, h, body) = call(&srv, "GET", "/openapi/v2", None, Some(pb), "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        h["content-type"],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    // Field 1 (swagger) = "2.0", then the definitions.
    assert_eq!(&body[..5], b"\x0a\x032.0");
    assert!(body.len() > 100_000);
}
