//! Lease-epoch write fencing (docs/design/0007-node-fencing.md): a node's writes carry its
//! epoch in `x-podvisor-node-epoch`; once its Lease's `leaseTransitions` is past it, every
//! write of the node is refused with 409 Conflict, reads are not, other users and other
//! nodes are not affected.

use std::sync::Arc;

use kube::Client;
use podvisor_apiserver::{ApiServer, ApiServerConfig};
use serde_json::{Value, json};

async fn server() -> (tempfile::TempDir, ApiServer) {
    let dir = tempfile::tempdir().unwrap();
    let srv = ApiServer::new(
        Arc::new(podvisor_store::memory::MemoryStore::new()),
        ApiServerConfig::new(dir.path()),
    )
    .await
    .unwrap();
    (dir, srv)
}

/// Sends `method path body` with the epoch header `epoch` (None: without it); returns the
/// status code and the JSON answer.
async fn send(
    client: &Client,
    method: &str,
    path: &str,
    epoch: Option<&str>,
    content_type: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    if let Some(e) = epoch {
        req = req.header("x-podvisor-node-epoch", e);
    }
    let req = req
        .header("content-type", content_type)
        .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
        .unwrap();
    let resp = client.send(req.map(Into::into)).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
const MERGE: &str = "application/merge-patch+json";

fn renew() -> Option<Value> {
    Some(json!({"spec": {"holderIdentity": "n1", "renewTime": "2026-01-01T00:00:00.000000Z"}}))
}

#[tokio::test]
async fn writes_of_an_older_epoch_are_refused_with_409_and_reads_are_not() {
    let (_dir, srv) = server().await;
    let n1 = srv.in_process_client(&srv.ensure_node_token("n1").unwrap());
    let n2 = srv.in_process_client(&srv.ensure_node_token("n2").unwrap());
    let admin = srv.in_process_client(&srv.admin_token());
    for (client, name) in [(&n1, "n1"), (&n2, "n2")] {
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name}, "spec": {"holderIdentity": name}});
        let (code, body) = send(
            client,
            "POST",
            LEASE,
            Some("0"),
            "application/json",
            Some(lease),
        )
        .await;
        assert_eq!(code, 201, "{body}");
    }
    let n1_lease = format!("{LEASE}/n1");
    assert_eq!(
        send(&n1, "PATCH", &n1_lease, Some("0"), MERGE, renew())
            .await
            .0,
        200
    );

    // The control plane declares n1 dead.
    let bump = json!({"spec": {"leaseTransitions": 1, "holderIdentity": null}});
    let (code, body) = send(&admin, "PATCH", &n1_lease, None, MERGE, Some(bump)).await;
    assert_eq!(code, 200, "{body}");

    for epoch in [Some("0"), None] {
        let (code, body) = send(&n1, "PATCH", &n1_lease, epoch, MERGE, renew()).await;
        assert_eq!(code, 409, "{body}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "Conflict");
        assert_eq!(
            body["message"],
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"n1\": node \"n1\" \
             writes with lease epoch 0, but its Lease is at epoch 1: the node was declared dead \
             and fenced; it must stop its pods and take its lease again"
        );
        assert_eq!(body["details"]["name"], "n1");
    }
    // Any write: a create (an Event) too.
    let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Node", "name": "n1"}, "reason": "Stale", "message": "x"});
    let (code, _) = send(
        &n1,
        "POST",
        "/api/v1/namespaces/default/events",
        Some("0"),
        "application/json",
        Some(event.clone()),
    )
    .await;
    assert_eq!(code, 409);
    // Reads pass: that is how the node learns its epoch.
    let (code, lease) = send(&n1, "GET", &n1_lease, Some("0"), "application/json", None).await;
    assert_eq!(
        (code, lease["spec"]["leaseTransitions"].as_i64()),
        (200, Some(1))
    );
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
    // The other node and the admin are not affected.
    let (code, _) = send(
        &n2,
        "PATCH",
        &format!("{LEASE}/n2"),
        Some("0"),
        MERGE,
        Some(json!({"spec": {"holderIdentity": "n2"}})),
    )
    .await;
    assert_eq!(code, 200);
    // Under the new epoch n1 takes its lease again and writes.
    let (code, body) = send(&n1, "PATCH", &n1_lease, Some("1"), MERGE, renew()).await;
    assert_eq!(
        (code, body["spec"]["holderIdentity"].as_str()),
        (200, Some("n1"))
    );
    let (code, _) = send(
        &n1,
        "POST",
        "/api/v1/namespaces/default/events",
        Some("1"),
        "application/json",
        Some(event),
    )
    .await;
    assert_eq!(code, 201);
    // A header that is not a number is a bad request.
    let (code, body) = send(&n1, "PATCH", &n1_lease, Some("one"), MERGE, renew()).await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
}
