//! kube-rs against the API server through `in_process_client`: CRUD, lists, watches,
//! conflicts, errors, graceful deletion, binding, auth.

use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use podvisor_apiserver::testing::memory_server;
use podvisor_testkit::{api_status, object_names, pod, set_label};
use serde_json::json;

/// A server and its `default` pods, with pod `name` (label app=web) created.
async fn with_web_pod(name: &str) -> (podvisor_apiserver::ApiServer, Api<Pod>) {
    let srv = memory_server().await;
    let pods: Api<Pod> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    pods.create(
        &PostParams::default(),
        &pod(name).label("app", "web").build(),
    )
    .await
    .unwrap();
    (srv, pods)
}

#[tokio::test]
async fn pod_crud_defaults_and_conflicts() {
    let srv = memory_server().await;
    let client = srv.in_process_client(&srv.admin_token());
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let created = pods
        .create(
            &PostParams::default(),
            &pod("web").label("app", "web").build(),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some());
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv: i64 = meta.resource_version.as_ref().unwrap().parse().unwrap();
    assert!(rv > 0);
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );

    let again = api_status(
        pods.create(
            &PostParams::default(),
            &pod("web").label("app", "web").build(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    let got = pods.get("web").await.unwrap();
    assert_eq!(got.metadata.uid, meta.uid);

    // Stale update -> 409 Conflict.
    let mut stale = got.clone();
    set_label(&pods, "web", "b", "2").await;
    stale
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("c".into(), "3".into());
    let e = api_status(
        pods.replace("web", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));

    let missing = api_status(pods.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "pods \"nope\" not found");

    // Invalid pod -> 422 with field causes.
    let bad: Pod = serde_json::from_value(
        json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}]}}),
    )
    .unwrap();
    let e = api_status(pods.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    let causes = e.details.unwrap().causes;
    assert!(causes.iter().any(|c| c.field == "metadata.name"));
    assert!(causes.iter().any(|c| c.field == "spec.containers[0].image"));

    // Spec is immutable except images.
    let e = api_status(
        pods.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": null, "containers": [{"name": "c", "image": "busybox:1.36", "args": ["x"]}]}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);

    // Missing namespace -> 404.
    let other: Api<Pod> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "nope");
    let e = api_status(
        other
            .create(
                &PostParams::default(),
                &pod("x").label("app", "web").build(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );
}

#[tokio::test]
async fn initial_namespaces_exist() {
    let srv = memory_server().await;
    let ns: Api<Namespace> = Api::all(srv.in_process_client(&srv.admin_token()));
    let names = object_names(&ns).await;
    for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&want.to_string()), "{names:?}");
    }
}

#[tokio::test]
async fn list_pagination_and_selectors() {
    let srv = memory_server().await;
    let pods: Api<Pod> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    for i in 0..25 {
        let mut p = pod(&format!("p{i:02}")).label("app", "web").build();
        p.metadata.labels.as_mut().unwrap().insert(
            "parity".into(),
            if i % 2 == 0 { "even" } else { "odd" }.into(),
        );
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(10);
    loop {
        let page = pods.list(&lp).await.unwrap();
        assert!(page.items.len() <= 10);
        seen.extend(page.items.into_iter().filter_map(|p| p.metadata.name));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let even = pods
        .list(&ListParams::default().labels("parity=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 13);
    let sel = pods
        .list(&ListParams::default().labels("parity in (odd),app"))
        .await
        .unwrap();
    assert_eq!(sel.items.len(), 12);
    let one = pods
        .list(&ListParams::default().fields("metadata.name=p03"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let e = api_status(
        pods.list(&ListParams::default().fields("spec.bogus=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
}

#[tokio::test]
async fn raw_watch_sees_added_modified_deleted() {
    let (_srv, pods) = with_web_pod("w0").await;
    let stream = pods
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap();
    let mut stream = stream.boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some("w0")),
        other => panic!("unexpected {other:?}"),
    }
    pods.create(
        &PostParams::default(),
        &pod("w1").label("app", "web").build(),
    )
    .await
    .unwrap();
    set_label(&pods, "w1", "x", "y").await;
    pods.delete("w1", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            _ => {}
        }
    }
    // Unscheduled pod: MODIFIED (deletionTimestamp) then DELETED.
    assert_eq!(kinds, ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn watcher_lists_then_follows_in_both_modes() {
    let (_srv, pods) = with_web_pod("a").await;
    for cfg in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut s = watcher(pods.clone(), cfg).boxed();
        let mut init_done = false;
        let mut saw_a = false;
        while !init_done {
            match tokio::time::timeout(Duration::from_secs(5), s.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                watcher::Event::InitApply(p) => saw_a |= p.metadata.name.as_deref() == Some("a"),
                watcher::Event::InitDone => init_done = true,
                _ => {}
            }
        }
        assert!(saw_a);
        let name = format!("b{}", uuid_like());
        pods.create(
            &PostParams::default(),
            &pod(&name).label("app", "web").build(),
        )
        .await
        .unwrap();
        loop {
            if let watcher::Event::Apply(p) =
                tokio::time::timeout(Duration::from_secs(5), s.try_next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap()
                && p.metadata.name.as_deref() == Some(name.as_str())
            {
                break;
            }
        }
    }
}

fn uuid_like() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn nodes_leases_events_crud() {
    let srv = memory_server().await;
    let client = srv.in_process_client(&srv.admin_token());
    let nodes: Api<Node> = Api::all(client.clone());
    let n: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}})).unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    let got = nodes.get("n1").await.unwrap();
    assert_eq!(got.status.unwrap().conditions.unwrap()[0].status, "True");

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let l: Lease = serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}})).unwrap();
    leases.create(&PostParams::default(), &l).await.unwrap();
    let mut got = leases.get("n1").await.unwrap();
    got.spec.as_mut().unwrap().lease_duration_seconds = Some(41);
    leases
        .replace("n1", &PostParams::default(), &got)
        .await
        .unwrap();

    let events: Api<Event> = Api::namespaced(client, "default");
    let e: Event = serde_json::from_value(json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"}, "reason": "Scheduled", "message": "m", "type": "Normal"})).unwrap();
    events.create(&PostParams::default(), &e).await.unwrap();
    let found = events
        .list(&ListParams::default().fields(
            "involvedObject.uid=u1,involvedObject.name=web,involvedObject.namespace=default",
        ))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let none = events
        .list(&ListParams::default().fields("involvedObject.uid=u2"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
}
