//! `/metrics` (Prometheus text under upstream's names and labels) and the named checks of
//! `/livez` and `/readyz`, through the router.

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use podvisor_apiserver::ApiServer;
use podvisor_apiserver::testing::memory_server;
use tower::ServiceExt as _;

async fn send(
    srv: &ApiServer,
    method: &str,
    uri: &str,
    ct: &str,
    body: &str,
) -> http::Response<Body> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", srv.admin_token()))
        .header("content-type", ct)
        .body(Body::from(body.to_string()))
        .unwrap();
    srv.router().oneshot(req).await.unwrap()
}

async fn call(
    srv: &ApiServer,
    method: &str,
    uri: &str,
    ct: &str,
    body: &str,
) -> (StatusCode, String) {
    let r = send(srv, method, uri, ct, body).await;
    let status = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics(srv: &ApiServer) -> String {
    let (code, text) = call(srv, "GET", "/metrics", "", "").await;
    assert_eq!(code, 200);
    text
}

#[tokio::test]
async fn requests_are_counted_by_verb_resource_scope_and_code() {
    let srv = memory_server().await;
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"m"},"data":{"a":"1"}}"#;
    let ns = "/api/v1/namespaces/default/configmaps";
    assert_eq!(call(&srv, "POST", ns, "application/json", cm).await.0, 201);
    assert_eq!(call(&srv, "GET", &format!("{ns}/m"), "", "").await.0, 200);
    assert_eq!(
        call(&srv, "GET", &format!("{ns}/nope"), "", "").await.0,
        404
    );
    assert_eq!(call(&srv, "GET", "/api/v1/configmaps", "", "").await.0, 200);
    let apply =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"m"},"data":{"a":"2"}}"#;
    let (code, _) = call(
        &srv,
        "PATCH",
        &format!("{ns}/m?fieldManager=t&force=true&dryRun=All"),
        "application/apply-patch+yaml",
        apply,
    )
    .await;
    assert_eq!(code, 200);

    let r = send(&srv, "GET", "/metrics", "", "").await;
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let total = |code: &str, dry: &str, scope: &str, verb: &str| {
        sample(
            &text,
            &format!(
                "apiserver_request_total{{code=\"{code}\",component=\"apiserver\",dry_run=\"{dry}\",group=\"\",resource=\"configmaps\",scope=\"{scope}\",subresource=\"\",verb=\"{verb}\",version=\"v1\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    assert!(total("201", "", "namespace", "POST") >= 1.0, "{text}");
    assert!(total("200", "", "resource", "GET") >= 1.0, "{text}");
    assert!(total("404", "", "resource", "GET") >= 1.0, "{text}");
    assert!(total("200", "", "cluster", "LIST") >= 1.0, "{text}");
    assert!(total("200", "All", "resource", "APPLY") >= 1.0, "{text}");
    assert!(text.contains("# TYPE apiserver_request_total counter\n"));
    assert!(text.contains("# TYPE apiserver_request_duration_seconds histogram\n"));
    assert!(
        sample(
            &text,
            "apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"namespace\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"+Inf\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // The store's latency by operation and resource.
    assert!(
        sample(
            &text,
            "etcd_request_duration_seconds_count{operation=\"create\",type=\"configmaps\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // This very request is in flight while the page is written.
    assert!(
        sample(
            &text,
            "apiserver_current_inflight_requests{request_kind=\"readOnly\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(text.contains("# TYPE kubelet_pod_start_duration_seconds histogram\n"));
    // Non-resource requests are counted under their path, a fixed set (the page above
    // shows on the next one).
    let (code, _) = call(&srv, "GET", "/not/a/path", "", "").await;
    assert_eq!(code, 404);
    let text = metrics(&srv).await;
    assert!(
        sample(
            &text,
            "apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"\",scope=\"\",subresource=\"/metrics\",verb=\"GET\",version=\"\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(!text.contains("/not/a/path"));

    // Anonymous requests get no metrics.
    let anon = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let r = srv.router().oneshot(anon).await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn an_open_watch_holds_the_long_running_gauge() {
    let srv = memory_server().await;
    let series = "apiserver_longrunning_requests{component=\"apiserver\",group=\"\",resource=\"secrets\",scope=\"namespace\",subresource=\"\",verb=\"WATCH\",version=\"v1\"}";
    let before = sample(&metrics(&srv).await, series).unwrap_or(0.0);
    let w = send(
        &srv,
        "GET",
        "/api/v1/namespaces/default/secrets?watch=true&timeoutSeconds=30",
        "",
        "",
    )
    .await;
    assert_eq!(w.status(), 200);
    assert_eq!(sample(&metrics(&srv).await, series), Some(before + 1.0));
    drop(w);
    assert_eq!(sample(&metrics(&srv).await, series), Some(before));
}

#[tokio::test]
async fn livez_and_readyz_name_their_checks() {
    let srv = memory_server().await;
    assert_eq!(
        call(&srv, "GET", "/readyz", "", "").await,
        (StatusCode::OK, "ok".to_string())
    );
    assert_eq!(
        call(&srv, "GET", "/readyz?verbose", "", "").await,
        (
            StatusCode::OK,
            "[+]ping ok\n[+]etcd ok\n[+]etcd-readiness ok\nreadyz check passed\n".to_string()
        )
    );
    assert_eq!(
        call(&srv, "GET", "/livez?verbose", "", "").await,
        (
            StatusCode::OK,
            "[+]ping ok\n[+]etcd ok\nlivez check passed\n".to_string()
        )
    );
    assert_eq!(
        call(&srv, "GET", "/livez?verbose&exclude=etcd&exclude=nope", "", "").await,
        (
            StatusCode::OK,
            "[+]ping ok\n[+]etcd excluded: ok\nwarn: some health checks cannot be excluded: no matches for \"nope\"\nlivez check passed\n".to_string()
        )
    );
    assert_eq!(
        call(&srv, "GET", "/readyz/etcd-readiness", "", "").await,
        (StatusCode::OK, "ok".to_string())
    );
    assert_eq!(
        call(&srv, "GET", "/livez/etcd-readiness", "", "").await.0,
        404
    );
    assert_eq!(call(&srv, "GET", "/healthz", "", "").await.1, "ok");
}
