//! Every patch type and server-side apply through kube-rs, plus dry-run, deletecollection
//! and scale.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use podvisor_apiserver::testing::memory_server;
use podvisor_testkit::{api_status, object_names};
use serde_json::json;

/// Server-side apply of `obj` to ConfigMap `ssa` by `manager`, taking over conflicts.
async fn force_apply(cms: &Api<ConfigMap>, manager: &str, obj: &serde_json::Value) -> ConfigMap {
    cms.patch(
        "ssa",
        &PatchParams::apply(manager).force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn every_patch_type() {
    let srv = memory_server().await;
    let pods: Api<Pod> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "labels": {"a": "1"}},
        "spec": {"containers": [{"name": "main", "image": "i:1"}, {"name": "side", "image": "s:1"}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let pp = PatchParams::default();

    let m = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"b": "2", "a": null}}})),
        )
        .await
        .unwrap();
    let labels = m.metadata.labels.unwrap();
    assert_eq!(
        (labels.get("a"), labels.get("b").map(String::as_str)),
        (None, Some("2"))
    );

    let s = pods
        .patch(
            "p",
            &pp,
            &Patch::Strategic(json!({"spec": {"containers": [{"name": "side", "image": "s:2"}]}})),
        )
        .await
        .unwrap();
    let cs = s.spec.unwrap().containers;
    assert_eq!(cs.len(), 2, "strategic merge keeps other containers");
    assert_eq!(cs[1].image.as_deref(), Some("s:2"));

    let j: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "i:2"}]),
    )
    .unwrap();
    let jp = pods.patch("p", &pp, &Patch::<()>::Json(j)).await.unwrap();
    assert_eq!(jp.spec.unwrap().containers[0].image.as_deref(), Some("i:2"));
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/name", "value": "x"}]))
            .unwrap();
    assert_eq!(
        api_status(
            pods.patch("p", &pp, &Patch::<()>::Json(bad))
                .await
                .unwrap_err()
        )
        .code,
        422
    );

    // A resourceVersion in a patch is a precondition.
    let stale = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"c": "3"}}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_status(stale).code, 409);
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_conflicts() {
    let srv = memory_server().await;
    let cms: Api<ConfigMap> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1", "b": "2"}});
    let created = cms
        .patch("ssa", &PatchParams::apply("one"), &Patch::Apply(&cfg))
        .await
        .unwrap();
    assert_eq!(created.data.unwrap().len(), 2);
    assert!(created.metadata.managed_fields.unwrap().iter().any(|m| m.manager.as_deref() == Some("one") && m.operation.as_deref() == Some("Apply")));
    // Another manager changing an owned field conflicts unless forced.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "9"}});
    assert_eq!(
        api_status(
            cms.patch("ssa", &PatchParams::apply("two"), &Patch::Apply(&other))
                .await
                .unwrap_err()
        )
        .code,
        409
    );
    let forced = force_apply(&cms, "two", &other).await;
    assert_eq!(forced.data.unwrap().get("a").map(String::as_str), Some("9"));
    // Dropping a field from one's own configuration removes it.
    let smaller =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let after = force_apply(&cms, "one", &smaller).await;
    let data = after.data.unwrap_or_default();
    assert!(!data.contains_key("b"), "{data:?}");
    assert_eq!(data.get("a").map(String::as_str), Some("9"));
}

#[tokio::test]
async fn dry_run_deletecollection_and_scale() {
    let srv = memory_server().await;
    let client = srv.in_process_client(&srv.admin_token());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = |n: &str, l: &str| {
        serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": n, "labels": {"g": l}}}))
            .unwrap()
    };
    cms.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &cm("dry", "x"),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("dry").await.unwrap().is_none());
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        cms.create(&PostParams::default(), &cm(n, l)).await.unwrap();
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("g=x"),
    )
    .await
    .unwrap();
    let left = object_names(&cms).await;
    assert_eq!(left, ["c"]);

    let rss: Api<ReplicaSet> = Api::namespaced(client, "default");
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "rs"}, "spec": {"selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})).unwrap();
    let created = rss.create(&PostParams::default(), &rs).await.unwrap();
    assert_eq!(created.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(created.metadata.generation, Some(1));
    let scale = rss.get_scale("rs").await.unwrap();
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=x"));
    let s = rss
        .patch_scale(
            "rs",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(s.spec.unwrap().replicas, Some(4));
    let after = rss.get("rs").await.unwrap();
    assert_eq!(
        (after.spec.unwrap().replicas, after.metadata.generation),
        (Some(4), Some(2))
    );
    assert_eq!(
        api_status(
            rss.patch_scale(
                "rs",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": -1}}))
            )
            .await
            .unwrap_err()
        )
        .code,
        422
    );
}
