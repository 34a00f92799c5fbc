//! Server-side apply: create, ownership, conflicts, force, field removal.

use podvisor_apiserver::ResourceKind;
use podvisor_apiserver::patch::{PatchError, PatchType, apply_patch, record_update};
use podvisor_apiserver::registry::{CONFIGMAPS, DEPLOYMENTS, PODS};
use podvisor_testkit::json::container_names;
use serde_json::{Value, json};

const T0: &str = "2026-11-25T09:00:00Z";
const T1: &str = "2026-11-25T09:05:00Z";

fn ssa(
    kind: &ResourceKind,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, PatchError> {
    apply_patch(
        kind,
        PatchType::Apply,
        live,
        config.to_string().as_bytes(),
        manager,
        force,
        T1,
    )
}

fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn deployment(replicas: i64) -> Value {
    json!({"apiVersion":"apps/v1","kind":"Deployment",
           "metadata":{"name":"d","namespace":"default","labels":{"app":"d"}},
           "spec":{"replicas":replicas,"selector":{"matchLabels":{"app":"d"}},
                   "template":{"metadata":{"labels":{"app":"d"}},
                               "spec":{"containers":[{"name":"main","image":"nginx"}]}}}})
}

/// The field manager of `kubectl apply` without `--server-side`.
const CSA: &str = "kubectl-client-side-apply";

#[test]
fn apply_creates_with_an_apply_entry() {
    let config = json!({"apiVersion":"v1","kind":"Pod",
        "metadata":{"name":"ssa","namespace":"default","labels":{"app":"app"}},
        "spec":{"containers":[{"name":"nginx","image":"nginx","ports":[{"containerPort":80}]}]}});
    let out = ssa(&PODS, None, &config, "kubectl", false).unwrap();
    assert_eq!(out["spec"], config["spec"]);
    assert_eq!(out["metadata"]["labels"], json!({"app": "app"}));
    let mf = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(
        mf[0],
        json!({"manager":"kubectl","operation":"Apply","apiVersion":"v1","time":T1,"fieldsType":"FieldsV1",
               "fieldsV1":{"f:metadata":{"f:labels":{"f:app":{}}},
                           "f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},
                               "f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}})
    );
}

#[test]
fn apply_accepts_yaml() {
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n";
    let out = apply_patch(
        &CONFIGMAPS,
        PatchType::Apply,
        None,
        yaml.as_bytes(),
        "m",
        false,
        T0,
    )
    .unwrap();
    assert_eq!(out["data"], json!({"a": "1"}));
    assert_eq!(
        entry(&out, "m", "Apply").unwrap()["fieldsV1"],
        json!({"f:data":{"f:a":{}}})
    );
}

#[test]
fn apply_rejects_bad_configurations() {
    let cases: Vec<(&[u8], u16)> = vec![
        (b"{", 400),
        (b"- a\n- b\n", 400),
        (b"[1]", 400),
        (b"\xff\xfe", 400),
        (
            br#"{"apiVersion":"v2","kind":"ConfigMap","metadata":{"name":"c"}}"#,
            400,
        ),
        (br#"{"apiVersion":"v1","metadata":{"name":"c"}}"#, 400),
        (
            br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"c"}}"#,
            400,
        ),
        (
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","managedFields":[]}}"#,
            400,
        ),
        (b"a: [1\n", 400),
    ];
    for (body, code) in cases {
        let e = apply_patch(&CONFIGMAPS, PatchType::Apply, None, body, "m", false, T0).unwrap_err();
        assert_eq!(e.code(), code, "{}", String::from_utf8_lossy(body));
    }
    // A list-map item without its key.
    let e = ssa(
        &PODS,
        None,
        &json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
        "spec":{"containers":[{"image":"x"}]}}),
        "m",
        false,
    )
    .unwrap_err();
    assert_eq!((e.code(), e.reason()), (422, "Invalid"));
    // Duplicate keys.
    let e = ssa(
        &PODS,
        None,
        &json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
        "spec":{"containers":[{"name":"a"},{"name":"a"}]}}),
        "m",
        false,
    )
    .unwrap_err();
    assert_eq!(e.code(), 422);
    assert!(e.message().contains("duplicate entries"), "{}", e.message());
}

#[test]
fn reapply_removes_fields_dropped_from_the_configuration() {
    let mut config = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"a":"1","b":"2"}},
                            "data":{"x":"1","y":"2"}});
    let live = ssa(&CONFIGMAPS, None, &config, "me", false).unwrap();
    config["data"].as_object_mut().unwrap().remove("y");
    config["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("b");
    let out = ssa(&CONFIGMAPS, Some(&live), &config, "me", false).unwrap();
    assert_eq!(out["data"], json!({"x": "1"}));
    assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
    assert_eq!(
        entry(&out, "me", "Apply").unwrap()["fieldsV1"],
        json!({"f:data":{"f:x":{}},"f:metadata":{"f:labels":{"f:a":{}}}})
    );
}

#[test]
fn removed_list_item_goes_unless_someone_else_owns_it() {
    let config = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
        "spec":{"containers":[{"name":"main","image":"a"},{"name":"side","image":"b"}]}});
    let live = ssa(&PODS, None, &config, "me", false).unwrap();
    let smaller = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
        "spec":{"containers":[{"name":"main","image":"a"}]}});
    let out = ssa(&PODS, Some(&live), &smaller, "me", false).unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"main","image":"a"}])
    );

    // Another applier also owns `side`: it stays.
    let other = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
        "spec":{"containers":[{"name":"side","image":"b"}]}});
    let shared = ssa(&PODS, Some(&live), &other, "other", false).unwrap();
    let out = ssa(&PODS, Some(&shared), &smaller, "me", false).unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"main","image":"a"},{"name":"side","image":"b"}])
    );
}

#[test]
fn conflict_with_an_update_manager() {
    let mut live = deployment(1);
    record_update(&DEPLOYMENTS, None, &mut live, CSA, T0);
    let err = ssa(&DEPLOYMENTS, Some(&live), &deployment(3), "kubectl", false).unwrap_err();
    assert_eq!((err.code(), err.reason()), (409, "Conflict"));
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        err.causes(),
        vec![
            json!({"reason":"FieldManagerConflict","message":"conflict with \"kubectl-client-side-apply\" using apps/v1","field":".spec.replicas"})
        ]
    );
}

#[test]
fn same_value_is_shared_ownership_not_a_conflict() {
    let mut live = deployment(1);
    record_update(&DEPLOYMENTS, None, &mut live, "creator", T0);
    let out = ssa(&DEPLOYMENTS, Some(&live), &deployment(1), "applier", false).unwrap();
    let replicas = |m: &str, op: &str| {
        entry(&out, m, op).unwrap()["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some()
    };
    assert!(replicas("creator", "Update"));
    assert!(replicas("applier", "Apply"));
}

#[test]
fn force_takes_ownership() {
    let mut live = deployment(1);
    record_update(&DEPLOYMENTS, None, &mut live, "creator", T0);
    let out = ssa(&DEPLOYMENTS, Some(&live), &deployment(5), "applier", true).unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
    let creator = &entry(&out, "creator", "Update").unwrap()["fieldsV1"]["f:spec"];
    assert!(creator.get("f:replicas").is_none());
    assert!(creator.get("f:template").is_some());
    let applier = &entry(&out, "applier", "Apply").unwrap()["fieldsV1"]["f:spec"];
    assert!(applier.get("f:replicas").is_some());
    // The creator no longer owns replicas, so it may now be changed without force.
    let out2 = ssa(&DEPLOYMENTS, Some(&out), &deployment(7), "applier", false).unwrap();
    assert_eq!(out2["spec"]["replicas"], 7);
}

#[test]
fn several_conflicts_are_listed_per_manager() {
    let mut live = deployment(1);
    record_update(&DEPLOYMENTS, None, &mut live, "creator", T0);
    let mut config = deployment(2);
    config["spec"]["template"]["spec"]["containers"][0]["image"] = json!("httpd");
    let err = ssa(&DEPLOYMENTS, Some(&live), &config, "applier", false).unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 2 conflicts: conflicts with \"creator\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"main\"].image"
    );
    assert_eq!(err.causes().len(), 2);
}

#[test]
fn conflict_between_two_appliers() {
    let live = ssa(&DEPLOYMENTS, None, &deployment(1), "first", false).unwrap();
    let err = ssa(&DEPLOYMENTS, Some(&live), &deployment(2), "second", false).unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"first\": .spec.replicas"
    );
}

#[test]
fn kubectl_may_take_over_fields_from_client_side_apply() {
    let mut live = deployment(1);
    live["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": deployment(1).to_string()});
    record_update(&DEPLOYMENTS, None, &mut live, CSA, T0);
    let out = ssa(&DEPLOYMENTS, Some(&live), &deployment(3), "kubectl", false).unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    let last: Value = serde_json::from_str(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        last["spec"]["replicas"], 3,
        "the annotation follows the applied configuration"
    );
    // Another manager name gets the conflict.
    let err = ssa(&DEPLOYMENTS, Some(&live), &deployment(3), "someone", false).unwrap_err();
    assert_eq!(err.code(), 409);
}

#[test]
fn first_apply_to_an_object_without_managed_fields_records_before_first_apply() {
    let live = deployment(1);
    let err = ssa(&DEPLOYMENTS, Some(&live), &deployment(2), "applier", false).unwrap_err();
    assert!(
        err.message().contains("\"before-first-apply\""),
        "{}",
        err.message()
    );
    let out = ssa(&DEPLOYMENTS, Some(&live), &deployment(1), "applier", false).unwrap();
    assert!(entry(&out, "before-first-apply", "Update").is_some());
    assert!(entry(&out, "applier", "Apply").is_some());
}

#[test]
fn apply_merges_lists_by_key_keeping_live_items() {
    let mut live = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
        "spec":{"containers":[{"name":"a","image":"1","ports":[{"containerPort":80,"protocol":"TCP"}]},
                              {"name":"b","image":"1"}],
                "restartPolicy":"Always"}});
    record_update(&PODS, None, &mut live, "creator", T0);
    let config = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
        "spec":{"containers":[{"name":"c","image":"1"},{"name":"a","ports":[{"containerPort":80}]}]}});
    let out = ssa(&PODS, Some(&live), &config, "applier", false).unwrap();
    let names = container_names(&out);
    assert_eq!(names, ["c", "a", "b"]);
    assert_eq!(out["spec"]["containers"][1]["image"], "1");
    assert_eq!(
        out["spec"]["containers"][1]["ports"],
        json!([{"containerPort":80,"protocol":"TCP"}])
    );
    assert_eq!(out["spec"]["restartPolicy"], "Always");
}

#[test]
fn apply_ignores_status_on_kinds_with_a_status_subresource() {
    let config = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a"}]},
                        "status":{"phase":"Running"}});
    let out = ssa(&PODS, None, &config, "m", false).unwrap();
    assert!(out.get("status").is_none());
}

#[test]
fn null_in_applied_configuration_removes_the_field() {
    let live = ssa(&CONFIGMAPS, None, &json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1","b":"2"}}), "m", false).unwrap();
    let out = ssa(&CONFIGMAPS, Some(&live), &json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1","b":null}}), "m", false).unwrap();
    assert_eq!(out["data"], json!({"a": "1"}));
}

#[test]
fn an_unchanged_reapply_keeps_the_object() {
    let config = deployment(2);
    let live = ssa(&DEPLOYMENTS, None, &config, "m", false).unwrap();
    let out = ssa(&DEPLOYMENTS, Some(&live), &config, "m", false).unwrap();
    let strip = |v: &Value| {
        let mut v = v.clone();
        v["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        v
    };
    assert_eq!(strip(&out), strip(&live));
    assert_eq!(
        entry(&out, "m", "Apply").unwrap()["fieldsV1"],
        entry(&live, "m", "Apply").unwrap()["fieldsV1"]
    );
}

#[test]
fn status_subresource_apply_applies_status_only() {
    use podvisor_apiserver::Subresource;
    use podvisor_apiserver::patch::apply_patch_subresource;
    let mut live = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a"}]}});
    record_update(&PODS, None, &mut live, "creator", T0);
    let config = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"x":"y"}},
                        "spec":{"containers":[{"name":"other"}]},"status":{"phase":"Running"}});
    let out = apply_patch_subresource(
        &PODS,
        Some(Subresource::Status),
        PatchType::Apply,
        Some(&live),
        config.to_string().as_bytes(),
        "agent",
        false,
        T1,
    )
    .unwrap();
    assert_eq!(out["status"]["phase"], "Running");
    assert_eq!(out["spec"], live["spec"]);
    assert!(out["metadata"].get("labels").is_none());
    let e = entry(&out, "agent", "Apply").unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status":{"f:phase":{}}}));
}

#[test]
fn scale_then_reapply_conflicts_with_the_scale_subresource_manager() {
    use podvisor_apiserver::Subresource;
    use podvisor_apiserver::patch::record_update_subresource;
    let live = ssa(&DEPLOYMENTS, None, &deployment(1), "kubectl", false).unwrap();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(3);
    record_update_subresource(
        &DEPLOYMENTS,
        Some(Subresource::Scale),
        Some(&live),
        &mut scaled,
        "kubectl-scale",
        T1,
    );
    let err = ssa(
        &DEPLOYMENTS,
        Some(&scaled),
        &deployment(1),
        "kubectl",
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"kubectl-scale\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
    // Dropping replicas from the configuration releases it: the scaled value stays.
    let mut without = deployment(1);
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let out = ssa(&DEPLOYMENTS, Some(&scaled), &without, "kubectl", false).unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
}

#[test]
fn client_side_apply_history_then_server_side_apply() {
    // kubectl apply (client-side) creates, then patches with a strategic merge patch; a
    // later `kubectl apply --server-side` takes over without --force-conflicts.
    let manifest = |image: &str| {
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"app","namespace":"default","labels":{"app":"app"}},
               "spec":{"containers":[{"name":"main","image":image},{"name":"side","image":"busybox"}]}})
    };
    let mut created = manifest("nginx:1");
    created["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": format!("{}\n", manifest("nginx:1"))});
    record_update(&PODS, None, &mut created, "kubectl-client-side-apply", T0);
    let smp = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration": format!("{}\n", manifest("nginx:2"))}},
                     "spec":{"$setElementOrder/containers":[{"name":"main"},{"name":"side"}],
                             "containers":[{"image":"nginx:2","name":"main"}]}});
    let mut patched = apply_patch(
        &PODS,
        PatchType::StrategicMerge,
        Some(&created),
        smp.to_string().as_bytes(),
        "",
        false,
        T1,
    )
    .unwrap();
    assert_eq!(patched["spec"]["containers"][0]["image"], "nginx:2");
    record_update(
        &PODS,
        Some(&created),
        &mut patched,
        "kubectl-client-side-apply",
        T1,
    );
    let out = ssa(
        &PODS,
        Some(&patched),
        &manifest("nginx:3"),
        "kubectl",
        false,
    )
    .unwrap();
    assert_eq!(out["spec"]["containers"][0]["image"], "nginx:3");
    assert_eq!(out["spec"]["containers"][1]["image"], "busybox");
    let csa = entry(&out, "kubectl-client-side-apply", "Update").unwrap();
    assert!(
        csa["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"main\"}"]
            .get("f:image")
            .is_none(),
        "image moved to the applier: {csa}"
    );
}

#[test]
fn an_applied_empty_list_is_owned_and_reapplying_changes_nothing() {
    let config = json!({"apiVersion":"v1","kind":"Pod",
        "metadata":{"name":"e","namespace":"default"},
        "spec":{"containers":[{"name":"a","image":"x"}],"initContainers":[]}});
    let first = ssa(&PODS, None, &config, "kubectl", false).unwrap();
    assert_eq!(
        entry(&first, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"]["f:initContainers"],
        json!({})
    );
    let again = ssa(&PODS, Some(&first), &config, "kubectl", false).unwrap();
    assert_eq!(again, first);
    assert!(entry(&again, "before-first-apply", "Update").is_none());
}
