//! The in-flight limit (429 after the queue wait) and the background compaction task (paused time).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use podvisor_apiserver::{ApiServer, ApiServerConfig};
use podvisor_store::Store as _;
use serde_json::json;

#[tokio::test]
async fn saturated_server_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ApiServerConfig::new(dir.path());
    cfg.max_requests_in_flight = 0;
    cfg.request_queue_wait = Duration::from_millis(100);
    let srv = ApiServer::new(Arc::new(podvisor_store::memory::MemoryStore::new()), cfg)
        .await
        .unwrap();
    let node = srv.ensure_node_token("n1").unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(srv.in_process_client(&node), "default");
    match cms.list(&ListParams::default()).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests")),
        other => panic!("{other:?}"),
    }
    // system:masters is exempt, as upstream's exempt priority level.
    let admin: Api<ConfigMap> =
        Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    admin.list(&ListParams::default()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn compaction_keeps_recent_history_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ApiServerConfig::new(dir.path());
    cfg.compaction_interval = Duration::from_secs(1);
    cfg.compaction_keep_revisions = 5;
    cfg.compaction_keep_duration = Duration::from_secs(3);
    let store = Arc::new(podvisor_store::memory::MemoryStore::new());
    let srv = ApiServer::new(store.clone(), cfg).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(srv.in_process_client(&srv.admin_token()), "default");
    for i in 0..20 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("c{i}")}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let written = store.current_revision().await.unwrap();
    // Within the keep duration nothing is compacted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(store.compacted_revision().await.unwrap() <= 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let compacted = store.compacted_revision().await.unwrap();
    assert!(compacted > 1, "compaction ran: {compacted}");
    assert!(
        compacted <= written - 5,
        "keeps the last 5 revisions: {compacted} vs {written}"
    );
}
