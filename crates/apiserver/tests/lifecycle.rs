//! Pod graceful deletion (spec §1.1–1.2), binding, finalizers, namespace deletion, and the
//! watcher's relist after a 410, through kube-rs and `in_process_client`.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
    WatchParams,
};
use kube::runtime::watcher;
use podvisor_apiserver::testing::memory_server;
use podvisor_apiserver::{ApiServer, ApiServerConfig};
use podvisor_store::Store as _;
use podvisor_testkit::{api_status, bind_pod, pod};
use serde_json::json;

#[tokio::test]
async fn binding_sets_node_and_condition_once() {
    let srv = memory_server().await;
    let pods: Api<Pod> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    pods.create(&PostParams::default(), &pod("b").label("app", "b").build())
        .await
        .unwrap();
    bind_pod(&pods, "b", "n1").await.unwrap();
    let p = pods.get("b").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("n1"));
    let conds = p.status.unwrap().conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    let e = api_status(bind_pod(&pods, "b", "n2").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("already assigned to node \"n1\""),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn graceful_delete_follows_the_rules() {
    let srv = memory_server().await;
    let pods: Api<Pod> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    pods.create(&PostParams::default(), &pod("g").label("app", "g").build())
        .await
        .unwrap();
    bind_pod(&pods, "g", "n1").await.unwrap();
    let mut w = pods
        .watch(
            &WatchParams::default().fields("metadata.name=g").timeout(10),
            "0",
        )
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        w.try_next().await.unwrap(),
        Some(WatchEvent::Added(_))
    ));

    // First delete: deadline = now + 30 s, generation 1 -> 2, object stays.
    let first = pods
        .delete("g", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("pod returned");
    let meta = &first.metadata;
    assert_eq!(meta.deletion_grace_period_seconds, Some(30));
    assert_eq!(meta.generation, Some(2));
    let deadline = meta.deletion_timestamp.clone().unwrap().0;
    match w.try_next().await.unwrap() {
        Some(WatchEvent::Modified(p)) => assert!(p.metadata.deletion_timestamp.is_some()),
        other => panic!("{other:?}"),
    }
    assert!(pods.get("g").await.is_ok());

    // A longer grace changes nothing; a shorter one moves the deadline earlier.
    let same = pods
        .delete("g", &DeleteParams::default().grace_period(60))
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(same.metadata.deletion_grace_period_seconds, Some(30));
    let shorter = pods
        .delete("g", &DeleteParams::default().grace_period(5))
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(shorter.metadata.deletion_grace_period_seconds, Some(5));
    let new_deadline = shorter.metadata.deletion_timestamp.clone().unwrap().0;
    assert_eq!(deadline.duration_since(new_deadline).as_secs(), 25);

    // Wrong UID precondition -> 409; the node's final delete (grace 0 + UID) removes it.
    let wrong = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..DeleteParams::default().grace_period(0)
    };
    assert_eq!(
        api_status(pods.delete("g", &wrong).await.unwrap_err()).code,
        409
    );
    let uid = first.metadata.uid.clone();
    let fin = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default().grace_period(0)
    };
    pods.delete("g", &fin).await.unwrap();
    assert_eq!(api_status(pods.get("g").await.unwrap_err()).code, 404);
    let mut saw_deleted = false;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), w.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        if let WatchEvent::Deleted(_) = ev {
            saw_deleted = true;
            break;
        }
    }
    assert!(saw_deleted);
}

#[tokio::test]
async fn immediate_delete_cases() {
    let srv = memory_server().await;
    let pods: Api<Pod> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    // Unscheduled: gone at once even with a grace period.
    pods.create(&PostParams::default(), &pod("u").label("app", "u").build())
        .await
        .unwrap();
    let d = pods
        .delete("u", &DeleteParams::default().grace_period(30))
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(d.metadata.deletion_timestamp.is_some());
    assert_eq!(api_status(pods.get("u").await.unwrap_err()).code, 404);
    // Terminal: gone at once.
    pods.create(&PostParams::default(), &pod("t").label("app", "t").build())
        .await
        .unwrap();
    bind_pod(&pods, "t", "n1").await.unwrap();
    pods.patch_status(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    pods.delete("t", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_status(pods.get("t").await.unwrap_err()).code, 404);
    // Grace 0 (force): gone at once, and the name can be reused.
    pods.create(&PostParams::default(), &pod("f").label("app", "f").build())
        .await
        .unwrap();
    bind_pod(&pods, "f", "n1").await.unwrap();
    pods.delete("f", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("f").label("app", "f").build())
        .await
        .unwrap();
    // Negative grace on create is stored as 1.
    let mut neg = pod("neg").label("app", "neg").build();
    neg.spec.as_mut().unwrap().termination_grace_period_seconds = Some(-5);
    let p = pods.create(&PostParams::default(), &neg).await.unwrap();
    assert_eq!(p.spec.unwrap().termination_grace_period_seconds, Some(1));
}

#[tokio::test]
async fn status_subresource_is_separate_from_spec() {
    let srv = memory_server().await;
    let pods: Api<Pod> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    pods.create(&PostParams::default(), &pod("s").label("app", "s").build())
        .await
        .unwrap();
    // Status in a main-resource patch is ignored.
    pods.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}, "status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        pods.get("s")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );
    // Labels in a status patch are ignored, the status is written.
    pods.patch_status(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"y": "2"}}, "status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    let p = pods.get("s").await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running"));
    assert!(!p.metadata.labels.unwrap().contains_key("y"));
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let srv = memory_server().await;
    let cms: Api<ConfigMap> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}, "data": {"a": "b"}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let r = cms.delete("f", &DeleteParams::default()).await.unwrap();
    let held = r.left().expect("object returned while finalizers remain");
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_status(cms.get("f").await.unwrap_err()).code, 404);
    // Without finalizers DELETE answers a Success Status.
    cms.create(
        &PostParams::default(),
        &serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": "g"}})).unwrap(),
    )
    .await
    .unwrap();
    let s = cms
        .delete("g", &DeleteParams::default())
        .await
        .unwrap()
        .right()
        .expect("status");
    assert_eq!(s.status, Some(kube::core::response::StatusSummary::Success));
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let srv = memory_server().await;
    let client = srv.in_process_client(&srv.admin_token());
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap(),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "tmp");
    pods.create(&PostParams::default(), &pod("p").label("app", "p").build())
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "tmp");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
    )
    .await
    .unwrap();
    nss.delete("tmp", &DeleteParams::default()).await.unwrap();
    // Terminating namespaces refuse new content.
    let e = api_status(
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "d"}})).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    if e.code != 404 {
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    }
    for _ in 0..100 {
        if nss.get_opt("tmp").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(nss.get_opt("tmp").await.unwrap().is_none());
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        api_status(
            nss.delete("default", &DeleteParams::default())
                .await
                .unwrap_err()
        )
        .code,
        403
    );
}

#[tokio::test]
async fn watcher_relists_after_410() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(podvisor_store::memory::MemoryStore::new());
    let srv = ApiServer::new(store.clone(), ApiServerConfig::new(dir.path()))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    pods.create(&PostParams::default(), &pod("a").label("app", "a").build())
        .await
        .unwrap();

    // A raw watch from a compacted revision gets an ERROR 410 event inside a 200 stream.
    let old_rv = pods
        .get("a")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..5 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("x{i}")).label("app", &format!("x{i}")).build(),
        )
        .await
        .unwrap();
    }
    let cur = store.current_revision().await.unwrap();
    store.compact(cur).await.unwrap();
    let mut w = pods
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match w.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // The watcher (selector app=a, 1 s watches) resumes from a revision that gets compacted
    // while it is away, sees the 410 and relists.
    let mut s = watcher(
        pods.clone(),
        watcher::Config::default().labels("app=a").timeout(1),
    )
    .boxed();
    let mut inits = 0;
    let mut compacted = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while inits < 2 && tokio::time::Instant::now() < deadline {
        let ev = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .unwrap();
        match ev {
            Some(Ok(watcher::Event::InitDone)) => {
                inits += 1;
                if !compacted {
                    for i in 0..5 {
                        pods.create(
                            &PostParams::default(),
                            &pod(&format!("y{i}")).label("app", &format!("y{i}")).build(),
                        )
                        .await
                        .unwrap();
                    }
                    let cur = store.current_revision().await.unwrap();
                    store.compact(cur).await.unwrap();
                    compacted = true;
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(inits, 2, "the watcher must relist after the 410");
}
