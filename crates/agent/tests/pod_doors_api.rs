//! The agent's doors against the in-process API server with a node's credentials: the probe
//! annotations patch ([`KubePodApi::patch_annotations`]) is allowed on the node's own pods for
//! `probes.podvisor.io/` keys only, and ConfigMaps and Secrets of its pods can be read
//! ([`KubeObjects`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Pod, Secret, SecretVolumeSource, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client};
use podvisor_agent::AgentError;
use podvisor_agent::api::{KubePodApi, PodApi};
use podvisor_agent::objects::{KubeObjects, ObjectSource};
use podvisor_apiserver::testing::memory_server;
use podvisor_testkit as testkit;

fn pod(name: &str, node: &str) -> Pod {
    testkit::pod(name)
        .node_name(node)
        .container(testkit::container("app"))
        .with(|p| {
            p.metadata.annotations =
                Some(BTreeMap::from([("owner".to_string(), "me".to_string())]));
        })
        .build()
}

fn patch(entries: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(String::from)))
        .collect()
}

/// The error is the API server's 403.
fn assert_forbidden(e: &AgentError) {
    assert!(
        matches!(
            e,
            AgentError::Api {
                code: Some(403),
                ..
            }
        ),
        "{e}"
    );
}

async fn create(admin: &Client, p: Pod) -> Pod {
    Api::<Pod>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &p)
        .await
        .expect("create pod")
}

#[tokio::test]
async fn a_node_patches_only_probe_annotations_of_its_own_pods() {
    let server = memory_server().await;
    let admin = server.in_process_client(&server.admin_token());
    let node = server.in_process_client(&server.ensure_node_token("node-1").unwrap());
    let mine = create(&admin, pod("mine", "node-1")).await;
    let theirs = create(&admin, pod("theirs", "node-2")).await;
    let doors = KubePodApi::new(node);

    let out = doors
        .patch_annotations(
            &mine,
            &patch(&[("probes.podvisor.io/app", Some("{\"liveness\":{}}"))]),
        )
        .await
        .expect("own pod, probe annotation");
    let a = out.metadata.annotations.clone().unwrap();
    assert_eq!(a["probes.podvisor.io/app"], "{\"liveness\":{}}");
    assert_eq!(a["owner"], "me", "other annotations stay");

    let stored = Api::<Pod>::namespaced(admin.clone(), "default")
        .get("mine")
        .await
        .unwrap();
    assert_eq!(
        stored.metadata.annotations.unwrap()["probes.podvisor.io/app"],
        "{\"liveness\":{}}"
    );

    // removal
    let out = doors
        .patch_annotations(&out, &patch(&[("probes.podvisor.io/app", None)]))
        .await
        .expect("removal");
    assert!(
        !out.metadata
            .annotations
            .unwrap()
            .contains_key("probes.podvisor.io/app")
    );

    // any other annotation: forbidden
    let e = doors
        .patch_annotations(&mine, &patch(&[("owner", Some("node"))]))
        .await
        .expect_err("other annotations are refused");
    assert_forbidden(&e);
    let e = doors
        .patch_annotations(
            &mine,
            &patch(&[("probes.podvisor.io/app", Some("{}")), ("owner", None)]),
        )
        .await
        .expect_err("a mixed patch is refused as a whole");
    assert_forbidden(&e);

    // another node's pod: forbidden
    let e = doors
        .patch_annotations(&theirs, &patch(&[("probes.podvisor.io/app", Some("{}"))]))
        .await
        .expect_err("not its pod");
    assert_forbidden(&e);

    let stored = Api::<Pod>::namespaced(admin, "default")
        .get("mine")
        .await
        .unwrap();
    assert_eq!(
        stored.metadata.annotations.unwrap(),
        BTreeMap::from([("owner".to_string(), "me".to_string())])
    );
}

#[tokio::test]
async fn a_node_reads_config_maps_and_secrets() {
    let server = memory_server().await;
    let admin = server.in_process_client(&server.admin_token());
    let node = server.in_process_client(&server.ensure_node_token("node-1").unwrap());
    // The Node authorizer lets a node read only what a pod bound to it references (the
    // references may name objects that do not exist yet: those read as NotFound).
    let mut reader = pod("reader", "node-1");
    let volumes = ["cfg", "nope"]
        .iter()
        .map(|name| Volume {
            name: format!("cm-{name}"),
            config_map: Some(ConfigMapVolumeSource {
                name: name.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .chain(["sec", "nope"].iter().map(|name| Volume {
            name: format!("secret-{name}"),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }));
    reader.spec.as_mut().unwrap().volumes = Some(volumes.collect());
    create(&admin, reader).await;
    Api::<ConfigMap>::namespaced(admin.clone(), "default")
        .create(
            &PostParams::default(),
            &testkit::config_map("default", "cfg", &[("k", "v")]),
        )
        .await
        .unwrap();
    Api::<Secret>::namespaced(admin.clone(), "default")
        .create(
            &PostParams::default(),
            &testkit::secret("default", "sec", &[("p", b"pw")]),
        )
        .await
        .unwrap();
    let objects = KubeObjects::new(node);
    let cm = objects.config_map("default", "cfg").await.unwrap().unwrap();
    assert_eq!(cm.data.unwrap()["k"], "v");
    let s = objects.secret("default", "sec").await.unwrap().unwrap();
    assert_eq!(s.data.unwrap()["p"].0, b"pw");
    assert!(
        objects
            .config_map("default", "nope")
            .await
            .unwrap()
            .is_none()
    );
    assert!(objects.secret("default", "nope").await.unwrap().is_none());
    // Objects no pod on this node references stay out of reach.
    Api::<ConfigMap>::namespaced(admin.clone(), "default")
        .create(
            &PostParams::default(),
            &testkit::config_map("default", "other", &[("k", "v")]),
        )
        .await
        .unwrap();
    assert_forbidden(&objects.config_map("default", "other").await.unwrap_err());
}
