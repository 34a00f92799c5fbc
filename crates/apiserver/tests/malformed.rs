//! Sends well over 10,000 malformed requests across every route: nothing panics, nothing
//! answers 5xx, and every error reply is a `metav1.Status` whose `code` is the HTTP status.

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt as _;
use podvisor_apiserver::testing::memory_server;
use serde_json::Value;
use tower::ServiceExt as _;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64: deterministic, so a failure is reproducible.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

const PATHS: &[&str] = &[
    "/api",
    "/apis",
    "/api/v1",
    "/apis/apps/v1",
    "/apis/apps",
    "/apis/nope/v1",
    "/openapi/v3",
    "/openapi/v3/api/v1",
    "/openapi/v3/apis/apps/v1",
    "/openapi/v2",
    "/version",
    "/healthz",
    "/api/v1/pods",
    "/api/v1/namespaces",
    "/api/v1/namespaces/default",
    "/api/v1/namespaces/default/status",
    "/api/v1/namespaces/default/pods",
    "/api/v1/namespaces/default/pods/web",
    "/api/v1/namespaces/default/pods/web/status",
    "/api/v1/namespaces/default/pods/web/binding",
    "/api/v1/namespaces/default/pods/web/log",
    "/api/v1/namespaces/default/pods/web/exec",
    "/api/v1/namespaces/default/bindings",
    "/api/v1/namespaces/nope/pods",
    "/api/v1/nodes",
    "/api/v1/nodes/n1",
    "/api/v1/nodes/n1/status",
    "/api/v1/namespaces/default/events",
    "/api/v1/namespaces/default/services/s",
    "/api/v1/namespaces/default/endpoints",
    "/api/v1/namespaces/default/configmaps/c",
    "/api/v1/namespaces/default/secrets",
    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
    "/apis/apps/v1/namespaces/default/replicasets/rs",
    "/apis/apps/v1/namespaces/default/replicasets/rs/scale",
    "/apis/apps/v1/namespaces/default/deployments",
    "/apis/apps/v1/namespaces/default/statefulsets/s/scale",
    "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
    "/apis/events.k8s.io/v1/events",
    "/api/v1/namespaces/default/pods/web/status/extra",
    "/api/v1/namespaces//pods",
    "/api/v1/namespaces/default/pods/%2e%2e",
    "/api/v1/namespaces/default/pods/a%2Fb",
    "/api/v1/namespaces/Bad_NS/pods/x",
    "/api/v2/pods",
    "/apis/apps/v1/pods",
    "/api/v1/namespaces/default/pods/web/scale",
    "/api/v1/nodes/n1/log",
    "/%ff%fe",
    "/api/v1/namespaces/default/pods/\u{7f}",
];

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "FOO",
];

const QUERY_KEYS: &[&str] = &[
    "watch",
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "timeoutSeconds",
    "gracePeriodSeconds",
    "propagationPolicy",
    "dryRun",
    "fieldValidation",
    "fieldManager",
    "force",
    "container",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
    "follow",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "includeObject",
    "hash",
    "",
    "=",
];

const QUERY_VALUES: &[&str] = &[
    "",
    "true",
    "false",
    "1",
    "0",
    "-1",
    "yes",
    "abc",
    "9999999999999999999999",
    "1.5",
    "Exact",
    "NotOlderThan",
    "All",
    "Strict",
    "Warn",
    "Ignore",
    "Bogus",
    "a=b",
    "a!=b,c",
    "a in (",
    "a notin (b,c)",
    "!x",
    "x,,y",
    "metadata.name=web",
    "spec.bogus=1",
    "involvedObject.uid=u",
    "a=b=c",
    "\\",
    "%ff",
    "e30",
    "eyJydiI6MX0",
    "Object",
    "None",
    "Metadata",
    "2026-13-45T99:99:99Z",
    "app==web,tier!=x",
    "((((",
    "k>x",
    "a.b/c=d",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
    "application/x-www-form-urlencoded",
    "garbage/;;;",
    "",
    "application/apply-patch+cbor",
];

const ACCEPTS: &[&str] = &[
    "",
    "application/json",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/yaml",
    "text/html",
    "application/vnd.kubernetes.protobuf",
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    "*/*",
    ";;;,,,",
    "application/json;as=Nope",
];

fn body(rng: &mut Rng) -> Vec<u8> {
    let templates: &[&str] = &[
        "",
        "{",
        "}",
        "[]",
        "null",
        "42",
        "\"str\"",
        "{\"kind\":",
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}",
        "{\"apiVersion\":\"v2\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"x\"}}",
        "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"x\"}}",
        "{\"metadata\":{\"name\":5}}",
        "{\"metadata\":{\"name\":\"web\",\"namespace\":\"other\"},\"spec\":{\"containers\":[]}}",
        "{\"metadata\":{\"name\":\"web\"},\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"ports\":[{\"containerPort\":-1}]}]}}",
        "{\"metadata\":{\"name\":\"web\"},\"spec\":{\"containers\":\"nope\"}}",
        "[{\"op\":\"replace\",\"path\":\"/spec/nope/x\",\"value\":1}]",
        "[{\"op\":\"bogus\"}]",
        "[{\"op\":\"remove\",\"path\":\"\"}]",
        "{\"$patch\":\"delete\"}",
        "{\"spec\":{\"$setElementOrder/containers\":[{\"x\":1}],\"containers\":[{\"$patch\":\"merge\"}]}}",
        "{\"spec\":{\"containers\":[{\"$retainKeys\":5}]}}",
        "{\"gracePeriodSeconds\":\"x\"}",
        "{\"preconditions\":{\"uid\":5}}",
        "{\"kind\":\"DeleteOptions\",\"propagationPolicy\":\"Sideways\"}",
        "{\"target\":{\"name\":\"\"}}",
        "{\"metadata\":{\"name\":\"web\"},\"target\":{\"kind\":\"Node\",\"name\":\"n1\"}}",
        "{\"spec\":{\"replicas\":-3}}",
        "{\"spec\":{\"replicas\":\"many\"}}",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [",
        "a: &a [*a, *a]\nb: *a\n",
        "k8s\0\u{1}\u{2}\u{3}",
        "\u{0}\u{1}\u{2}",
        "{\"a\":1,\"a\":2}",
        "{\"metadata\":{\"labels\":{\"bad key!\":\"v\"},\"name\":\"l\"}}",
    ];
    let mut b = rng.pick(templates).as_bytes().to_vec();
    match rng.below(10) {
        0 => {
            // Deep nesting.
            let n = 200 + rng.below(5000);
            b = "[".repeat(n).into_bytes();
            b.extend(std::iter::repeat_n(b']', n));
        }
        1 if !b.is_empty() => {
            // Truncate.
            let at = rng.below(b.len());
            b.truncate(at);
        }
        2 => {
            // Random bytes.
            let n = rng.below(64);
            b = (0..n).map(|_| rng.next() as u8).collect();
        }
        3 if !b.is_empty() => {
            // Flip bytes.
            for _ in 0..3 {
                let at = rng.below(b.len());
                b[at] = rng.next() as u8;
            }
        }
        _ => {}
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_requests() {
    let srv = memory_server().await;
    let admin = srv.admin_token();
    let node = srv.ensure_node_token("n1").unwrap();
    // Some live objects so that object routes get past "not found".
    let seed = [
        (
            "/api/v1/namespaces/default/pods",
            "{\"metadata\":{\"name\":\"web\"},\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"i\"},{\"name\":\"b\",\"image\":\"i\"}]}}",
        ),
        ("/api/v1/nodes", "{\"metadata\":{\"name\":\"n1\"}}"),
        (
            "/api/v1/namespaces/default/configmaps",
            "{\"metadata\":{\"name\":\"c\"}}",
        ),
        (
            "/apis/apps/v1/namespaces/default/replicasets",
            "{\"metadata\":{\"name\":\"rs\"},\"spec\":{\"selector\":{\"matchLabels\":{\"a\":\"b\"}},\"template\":{\"metadata\":{\"labels\":{\"a\":\"b\"}},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"i\"}]}}}}",
        ),
    ];
    for (path, body) in seed {
        let req = Request::post(path)
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let r = srv.router().oneshot(req).await.unwrap();
        assert_eq!(r.status().as_u16(), 201, "seeding {path}");
    }
    let big = vec![b'{'; 3 * 1024 * 1024 + 10];
    let mut rng = Rng(0x5eed);
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    let total = 12_000;
    for i in 0..total {
        let method = *rng.pick(METHODS);
        let mut path = rng.pick(PATHS).to_string();
        if rng.chance(5) {
            path.push_str(&"/x".repeat(rng.below(40)));
        }
        let mut q = String::new();
        if rng.chance(5) {
            q.push('&');
        }
        for _ in 0..rng.below(5) {
            let k = rng.pick(QUERY_KEYS);
            let v = rng.pick(QUERY_VALUES);
            q.push_str(&form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>());
            q.push('=');
            q.push_str(&form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>());
            q.push('&');
        }
        // Bound watches so that a successful one ends quickly.
        if q.contains("watch=") {
            q.push_str("timeoutSeconds=1");
        }
        let uri = if q.is_empty() && !rng.chance(10) {
            path.clone()
        } else {
            format!("{path}?{q}")
        };
        let mut req = Request::builder().method(method).uri(uri.as_str());
        match rng.below(20) {
            0 => {}
            1 => req = req.header("authorization", "Bearer nope"),
            2 => req = req.header("authorization", "Basic abc"),
            3 => req = req.header("authorization", format!("Bearer {node}")),
            _ => req = req.header("authorization", format!("Bearer {admin}")),
        }
        let ct = rng.pick(CONTENT_TYPES);
        if !ct.is_empty() {
            req = req.header("content-type", *ct);
        }
        let acc = rng.pick(ACCEPTS);
        if !acc.is_empty() {
            req = req.header("accept", *acc);
        }
        let body = if i % 1000 == 7 {
            big.clone()
        } else {
            body(&mut rng)
        };
        let Ok(req) = req.body(Body::from(body)) else {
            continue; // The http crate refused the request line itself.
        };
        let resp = srv.router().oneshot(req).await.unwrap();
        let code = resp.status().as_u16();
        *counts.entry(code).or_default() += 1;
        assert!(code < 500, "request {i} {method} {uri} answered {code}");
        if resp.status().is_success() || method == "HEAD" {
            continue; // Watches stream; successes are not errors.
        }
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "request {i} {method} {uri}: {code} body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(v["kind"], "Status", "request {i} {method} {uri}: {v}");
        assert_eq!(v["status"], "Failure", "{v}");
        assert_eq!(v["code"].as_u64(), Some(u64::from(code)), "{v}");
        assert!(v["reason"].is_string() && v["message"].is_string(), "{v}");
    }
    // Targeted: each error class answers its own code.
    for (method, path, ct, accept, body, want) in [
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            "",
            big.clone(),
            413u16,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "text/plain",
            "",
            b"x".to_vec(),
            415,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/web",
            "application/json",
            "",
            b"{}".to_vec(),
            415,
        ),
        (
            "PUT",
            "/api/v1/namespaces/default/pods",
            "application/json",
            "",
            b"{}".to_vec(),
            405,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods/web",
            "",
            "text/html",
            vec![],
            406,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            "",
            b"{\"metadata\":".to_vec(),
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/yaml",
            "",
            b"a: [".to_vec(),
            400,
        ),
    ] {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {admin}"));
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        if !accept.is_empty() {
            req = req.header("accept", accept);
        }
        let resp = srv
            .router()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{method} {path}");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["code"].as_u64(), Some(u64::from(want)), "{v}");
    }
    let errors: usize = counts
        .iter()
        .filter(|(c, _)| **c >= 400)
        .map(|(_, n)| n)
        .sum();
    assert!(errors >= 10_000, "only {errors} error replies: {counts:?}");
    eprintln!("status codes: {counts:?}");
}
