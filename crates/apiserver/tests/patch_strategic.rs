//! Strategic merge patch: merge keys, directives and the bodies kubectl sends.

use podvisor_apiserver::ResourceKind;
use podvisor_apiserver::patch::{PatchError, PatchType, apply_patch};
use podvisor_apiserver::registry::{DEPLOYMENTS, NODES, PODS, SERVICES};
use podvisor_testkit::json::container_names;
use serde_json::{Value, json};

const NOW: &str = "2026-11-25T09:00:00Z";

fn smp(kind: &ResourceKind, original: Value, patch: Value) -> Result<Value, PatchError> {
    apply_patch(
        kind,
        PatchType::StrategicMerge,
        Some(&original),
        patch.to_string().as_bytes(),
        "test",
        false,
        NOW,
    )
}

fn live_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": "default",
                     "labels": {"app": "app", "tier": "v1"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
        "spec": {
            "containers": [
                {"name": "main", "image": "busybox", "env": [{"name": "A", "value": "1"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "side", "image": "busybox"}
            ],
            "restartPolicy": "Always"
        }
    })
}

#[test]
fn kubectl_client_side_apply_second_patch() {
    // The body kubectl 1.32 sends on the second `kubectl apply -f` (kubectl-wire.md §4.4).
    let patch = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"new\":1}\n"},
                 "labels":{"tier":"v2"}},
     "spec":{"$setElementOrder/containers":[{"name":"main"}],
             "containers":[{"$setElementOrder/env":[{"name":"A"}],"env":[{"name":"A","value":"2"}],"name":"main"},
                           {"$patch":"delete","name":"side"}]}});
    let out = smp(&PODS, live_pod(), patch).unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "app", "tier": "v2"})
    );
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"new\":1}\n"
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "main", "image": "busybox", "env": [{"name": "A", "value": "2"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}]}])
    );
    assert_eq!(out["spec"]["restartPolicy"], "Always");
}

#[test]
fn label_only_patch_keeps_everything_else() {
    let patch = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"x"},"labels":{"tier":"v3"}}});
    let out = smp(&PODS, live_pod(), patch).unwrap();
    assert_eq!(out["metadata"]["labels"]["tier"], "v3");
    assert_eq!(out["spec"], live_pod()["spec"]);
}

#[test]
fn null_deletes_a_key_and_unmatched_nulls_are_dropped() {
    let patch = json!({"metadata":{"labels":{"tier":null, "absent": null}}, "spec": {"newField": {"a": null, "b": 1}}});
    let out = smp(&PODS, live_pod(), patch).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"app": "app"}));
    assert_eq!(out["spec"]["newField"], json!({"b": 1}));
}

#[test]
fn containers_merge_by_name_and_new_ones_append() {
    let patch = json!({"spec":{"containers":[{"name":"side","image":"nginx"},{"name":"third","image":"x"}]}});
    let out = smp(&PODS, live_pod(), patch).unwrap();
    let names = container_names(&out);
    assert_eq!(names, ["main", "side", "third"]);
    assert_eq!(out["spec"]["containers"][1]["image"], "nginx");
    assert_eq!(out["spec"]["containers"][0]["env"][0]["value"], "1");
}

#[test]
fn ports_merge_by_container_port() {
    let patch = json!({"spec":{"containers":[{"name":"main","ports":[{"containerPort":80,"name":"http"},{"containerPort":443}]}]}});
    let out = smp(&PODS, live_pod(), patch).unwrap();
    assert_eq!(
        out["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}])
    );
}

#[test]
fn lists_without_strategy_are_replaced() {
    let original = json!({"spec":{"tolerations":[{"key":"a"}],"containers":[{"name":"main","args":["1","2"]}]}});
    let patch =
        json!({"spec":{"tolerations":[{"key":"b"}],"containers":[{"name":"main","args":["3"]}]}});
    let out = smp(&PODS, original, patch).unwrap();
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "b"}]));
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["3"]));
}

#[test]
fn finalizers_are_a_set() {
    let original = json!({"metadata":{"finalizers":["a","b"]}});
    let out = smp(
        &PODS,
        original.clone(),
        json!({"metadata":{"finalizers":["b","c"]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = smp(
        &PODS,
        original,
        json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn delete_from_primitive_list_of_missing_list_is_a_no_op() {
    let out = smp(
        &PODS,
        json!({"metadata":{}}),
        json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}}),
    )
    .unwrap();
    assert_eq!(out, json!({"metadata":{}}));
}

#[test]
fn patch_replace_directive_in_a_map() {
    let patch = json!({"metadata":{"labels":{"$patch":"replace","only":"this"}}});
    let out = smp(&PODS, live_pod(), patch).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
}

#[test]
fn patch_delete_directive_in_a_map() {
    let patch = json!({"metadata":{"labels":{"$patch":"delete"}}});
    let out = smp(&PODS, live_pod(), patch).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({}));
}

#[test]
fn patch_replace_directive_in_a_list() {
    let patch = json!({"spec":{"containers":[{"$patch":"replace"},{"name":"only","image":"x"}]}});
    let out = smp(&PODS, live_pod(), patch).unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "only", "image": "x"}])
    );
}

#[test]
fn set_element_order_reorders_and_keeps_server_only_items() {
    let original = json!({"spec":{"containers":[{"name":"a"},{"name":"b"},{"name":"c"}]}});
    let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"c"},{"name":"a"}],
                               "containers":[{"name":"a","image":"new"}]}});
    let out = smp(&PODS, original, patch).unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"b"},{"name":"c"},{"name":"a","image":"new"}])
    );
}

#[test]
fn set_element_order_for_primitive_lists() {
    let original = json!({"metadata":{"finalizers":["x","y"]}});
    let patch =
        json!({"metadata":{"$setElementOrder/finalizers":["y","x","z"],"finalizers":["z"]}});
    let out = smp(&PODS, original, patch).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["y", "x", "z"]));
}

#[test]
fn retain_keys_clears_other_union_members() {
    let original = json!({"spec":{"volumes":[{"name":"v","emptyDir":{}}]}});
    let patch = json!({"spec":{"volumes":[{"name":"v","$retainKeys":["name","hostPath"],"hostPath":{"path":"/x"}}]}});
    let out = smp(&PODS, original, patch).unwrap();
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name":"v","hostPath":{"path":"/x"}}])
    );

    let original =
        json!({"spec":{"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}}});
    let patch = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}});
    let out = smp(&DEPLOYMENTS, original, patch).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_must_list_every_patched_key() {
    let patch = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","other":1}}});
    let err = smp(&DEPLOYMENTS, json!({}), patch).unwrap_err();
    assert_eq!(err.code(), 400);
}

#[test]
fn deployment_template_containers_merge_by_name() {
    let original = json!({"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"a","image":"1"},{"name":"b","image":"1"}]}}}});
    let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"b","image":"2"}]}}}});
    let out = smp(&DEPLOYMENTS, original, patch).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name":"a","image":"1"},{"name":"b","image":"2"}])
    );
}

#[test]
fn service_ports_merge_by_port_and_node_conditions_by_type() {
    let original = json!({"spec":{"ports":[{"port":80,"protocol":"TCP","targetPort":8080}]}});
    let out = smp(
        &SERVICES,
        original,
        json!({"spec":{"ports":[{"port":80,"targetPort":9090}]}}),
    )
    .unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port":80,"protocol":"TCP","targetPort":9090}])
    );

    let original = json!({"status":{"conditions":[{"type":"Ready","status":"False"},{"type":"MemoryPressure","status":"False"}]}});
    let patch = json!({"status":{"conditions":[{"type":"Ready","status":"True"}]}});
    let out = smp(&NODES, original, patch).unwrap();
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type":"Ready","status":"True"},{"type":"MemoryPressure","status":"False"}])
    );
}

#[test]
fn pod_status_conditions_merge_by_type() {
    let original = json!({"status":{"phase":"Pending","conditions":[{"type":"PodScheduled","status":"True"}]}});
    let patch =
        json!({"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}});
    let out = smp(&PODS, original, patch).unwrap();
    assert_eq!(out["status"]["phase"], "Running");
    assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
}

#[test]
fn malformed_patches_are_bad_requests() {
    for body in [&b"{"[..], b"[1,2]", b"\"x\"", b"null"] {
        let err = apply_patch(
            &PODS,
            PatchType::StrategicMerge,
            Some(&live_pod()),
            body,
            "t",
            false,
            NOW,
        )
        .unwrap_err();
        assert_eq!(err.code(), 400, "{body:?}");
        assert_eq!(err.reason(), "BadRequest");
    }
    for patch in [
        json!({"metadata":{"labels":{"$patch":"bogus"}}}),
        json!({"spec":{"containers":[{"$patch":"delete"}]}}),
        json!({"spec":{"containers":[{"image":"no-name"}]}}),
        json!({"spec":{"containers":[{"$patch":"bogus","name":"x"}]}}),
        json!({"spec":{"$setElementOrder/containers":"notalist"}}),
        json!({"spec":{"containers":["scalar"]}}),
        json!({"spec":{"$unknownDirective":1}}),
    ] {
        let err = smp(&PODS, live_pod(), patch.clone()).unwrap_err();
        assert_eq!(err.code(), 400, "{patch}");
    }
}

#[test]
fn directives_in_new_values_are_resolved() {
    let patch = json!({"spec":{"initContainers":[{"name":"i","image":"x"},{"$patch":"delete","name":"gone"}]}});
    let out = smp(&PODS, live_pod(), patch).unwrap();
    assert_eq!(
        out["spec"]["initContainers"],
        json!([{"name":"i","image":"x"}])
    );
}
