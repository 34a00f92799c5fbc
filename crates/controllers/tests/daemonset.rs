//! The DaemonSet controller against an in-process API server (no scheduler, no agents: the
//! test plays the kubelet by patching pod status; pods are found on their node by the
//! `metadata.name In [node]` affinity the controller gives them).

mod common;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use podvisor_testkit::{eventually, mark_ready};
use serde_json::json;

async fn add_node(
    client: &Client,
    name: &str,
    labels: serde_json::Value,
    taints: serde_json::Value,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
    }))
    .expect("node");
    let mut created = nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    created.status = Some(
        serde_json::from_value(json!({"conditions": [{"type": "Ready", "status": "True",
            "reason": "KubeletReady", "lastHeartbeatTime": "2030-01-01T00:00:00Z",
            "lastTransitionTime": "2030-01-01T00:00:00Z"}]}))
        .expect("status"),
    );
    nodes
        .replace_status(name, &PostParams::default(), &created)
        .await
        .expect("node status");
}

/// Live (not terminating) pods of the DaemonSet by target node, with their hash.
async fn pods_by_node(client: &Client) -> BTreeMap<String, Vec<(String, String)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for p in pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .and_then(|s| s.node_selector_terms.first())
            .and_then(|t| t.match_fields.as_ref())
            .and_then(|f| f.first())
            .and_then(|r| r.values.as_ref())
            .and_then(|v| v.first().cloned())
            .unwrap_or_default();
        let hash = p
            .labels()
            .get("controller-revision-hash")
            .cloned()
            .unwrap_or_default();
        out.entry(node).or_default().push((p.name_any(), hash));
    }
    out
}

async fn status(ds: &Api<DaemonSet>) -> serde_json::Value {
    let d = ds.get_status("agent").await.expect("ds");
    serde_json::to_value(d.status).unwrap_or_default()
}

async fn revisions(client: &Client) -> Vec<(i64, String)> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let mut v: Vec<(i64, String)> = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let hash = r
                .labels()
                .get("controller-revision-hash")
                .cloned()
                .unwrap_or_default();
            (r.revision, hash)
        })
        .collect();
    v.sort();
    v
}

/// Plays the kubelets: terminating pods go and (with `ready`) every other pod becomes
/// Running and Ready.
async fn kubelets(client: &Client, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for p in pods
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        if p.metadata.deletion_timestamp.is_some() {
            let _ = pods
                .delete(&p.name_any(), &DeleteParams::default().grace_period(0))
                .await;
        } else if ready {
            let _ = mark_ready(&pods, &p.name_any()).await;
        }
    }
}

#[tokio::test]
async fn daemonset_runs_one_pod_per_eligible_node_and_rolls_updates() {
    let running = common::start().await;
    let client = running.client.clone();
    add_node(&client, "n1", json!({"role": "edge"}), json!([])).await;
    // Cordoned: the daemon tolerations let the pod in.
    add_node(
        &client,
        "n2",
        json!({"role": "edge"}),
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
    )
    .await;
    // A taint the pod does not tolerate.
    add_node(
        &client,
        "n3",
        json!({"role": "edge"}),
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    )
    .await;
    // Not selected.
    add_node(&client, "n4", json!({"role": "core"}), json!([])).await;

    let ds_api: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    common::create::<DaemonSet>(&client, json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"nodeSelector": {"role": "edge"},
                    "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1d"]}]}
            }
        }
    }))
    .await;

    eventually("a pod on n1 and n2 only", || async {
        let by = pods_by_node(&client).await;
        by.keys().cloned().collect::<Vec<_>>() == ["n1", "n2"] && by.values().all(|v| v.len() == 1)
    })
    .await;
    let revs = revisions(&client).await;
    assert_eq!(revs.len(), 1, "{revs:?}");
    let (rev1, hash1) = revs[0].clone();
    assert_eq!(rev1, 1);
    let by = pods_by_node(&client).await;
    assert!(by.values().flatten().all(|(_, h)| *h == hash1), "{by:?}");

    // The pod carries the daemon tolerations and the owner reference.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = pods.get(&by["n1"][0].0).await.expect("pod");
    assert_eq!(
        p.labels()
            .get("pod-template-generation")
            .map(String::as_str),
        Some("1"),
        "{:?}",
        p.labels()
    );
    let tol: Vec<String> = p
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            format!(
                "{}:{}",
                t.key.unwrap_or_default(),
                t.effect.unwrap_or_default()
            )
        })
        .collect();
    assert!(
        tol.contains(&"node.kubernetes.io/unschedulable:NoSchedule".to_string()),
        "{tol:?}"
    );
    assert!(
        tol.contains(&"node.kubernetes.io/not-ready:NoExecute".to_string()),
        "{tol:?}"
    );
    let owner = &p.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("DaemonSet", Some(true))
    );

    eventually("status counts two desired, none ready", || async {
        let s = status(&ds_api).await;
        s["desiredNumberScheduled"] == 2
            && s["currentNumberScheduled"] == 2
            && s["numberMisscheduled"] == 0
            && s["numberReady"] == 0
            && s["updatedNumberScheduled"] == 2
            && s["numberUnavailable"] == 2
            && s["observedGeneration"] == 1
    })
    .await;
    kubelets(&client, true).await;
    eventually("both ready and available", || async {
        let s = status(&ds_api).await;
        s["numberReady"] == 2 && s["numberAvailable"] == 2
    })
    .await;

    // A new template: with maxUnavailable 1, one node at a time.
    ds_api
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"metadata": {"labels": {"app": "agent", "v": "2"}}}}}),
            ),
        )
        .await
        .expect("update template");
    eventually("a second revision", || async {
        revisions(&client).await.len() == 2
    })
    .await;
    let hash2 = revisions(&client).await[1].1.clone();
    assert_ne!(hash1, hash2);
    eventually("one node updated, the other still old", || async {
        kubelets(&client, false).await;
        let by = pods_by_node(&client).await;
        let hashes: Vec<&String> = by.values().flatten().map(|(_, h)| h).collect();
        hashes.iter().filter(|h| ***h == hash2).count() == 1
            && hashes.iter().filter(|h| ***h == hash1).count() == 1
    })
    .await;
    // The old pod of the other node waits until the new one is available.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let by = pods_by_node(&client).await;
    assert_eq!(
        by.values().flatten().filter(|(_, h)| *h == hash1).count(),
        1,
        "only maxUnavailable=1 old pod replaced before the new one is ready: {by:?}"
    );
    kubelets(&client, true).await;
    eventually("both nodes on the new revision", || async {
        kubelets(&client, true).await;
        let by = pods_by_node(&client).await;
        by.len() == 2 && by.values().flatten().all(|(_, h)| *h == hash2)
    })
    .await;
    kubelets(&client, true).await;
    eventually("rolled out", || async {
        let s = status(&ds_api).await;
        s["updatedNumberScheduled"] == 2
            && s["numberAvailable"] == 2
            && s["observedGeneration"] == 2
    })
    .await;

    // A node leaving the selector loses its pod (misscheduled until then), a new one gains one.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"role": "core"}}})),
        )
        .await
        .expect("relabel");
    add_node(&client, "n5", json!({"role": "edge"}), json!([])).await;
    eventually("pods on n2 and n5", || async {
        kubelets(&client, false).await;
        pods_by_node(&client)
            .await
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            == ["n2", "n5"]
    })
    .await;

    // Rollback as `kubectl rollout undo` does it: the revision's data as a strategic merge
    // patch. The old revision becomes current again under the next number.
    let crs: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let first = crs
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .find(|r| r.revision == 1)
        .expect("revision 1");
    let data = first.data.expect("data").0;
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    ds_api
        .patch("agent", &PatchParams::default(), &Patch::Strategic(data))
        .await
        .expect("undo");
    eventually("revision 1 renumbered to 3", || async {
        revisions(&client).await == [(2, hash2.clone()), (3, hash1.clone())]
    })
    .await;
    eventually("pods back on the first template", || async {
        kubelets(&client, true).await;
        let by = pods_by_node(&client).await;
        by.len() == 2 && by.values().flatten().all(|(_, h)| *h == hash1)
    })
    .await;

    // Deleting the DaemonSet collects its pods and revisions.
    ds_api
        .delete("agent", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("pods and revisions collected", || async {
        kubelets(&client, false).await;
        pods_by_node(&client).await.is_empty() && revisions(&client).await.is_empty()
    })
    .await;
    running.stop().await;
}
