//! Update manager entries recorded for create, update and non-apply patches.

use podvisor_apiserver::patch::record_update;
use podvisor_apiserver::registry::{CONFIGMAPS, PODS};
use serde_json::{Value, json};

const T0: &str = "2026-11-25T09:00:00Z";
const T1: &str = "2026-11-25T09:05:00Z";

fn managers(obj: &Value) -> Vec<(String, String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_string(),
                        e["operation"].as_str().unwrap().to_string(),
                        e["time"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn create_records_every_field_like_upstream() {
    let mut pod = json!({"apiVersion":"v1","kind":"Pod",
        "metadata":{"name":"p","namespace":"default","uid":"u","resourceVersion":"1","creationTimestamp":T0,
                    "labels":{"run":"p"}},
        "spec":{"containers":[{"name":"c","image":"x","ports":[{"containerPort":80,"protocol":"TCP"}],"resources":{}}],
                "restartPolicy":"Always"}});
    record_update(&PODS, None, &mut pod, "kubectl-create", T0);
    assert_eq!(
        pod["metadata"]["managedFields"],
        json!([{"manager":"kubectl-create","operation":"Update","apiVersion":"v1","time":T0,"fieldsType":"FieldsV1",
                "fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:run":{}}},
                            "f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:image":{},"f:name":{},
                                "f:ports":{".":{},"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}},
                                "f:resources":{}}},
                                      "f:restartPolicy":{}}}}])
    );
}

#[test]
fn an_update_takes_changed_fields_from_other_managers() {
    let mut cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1","b":"2"}});
    record_update(&CONFIGMAPS, None, &mut cm, "creator", T0);
    let old = cm.clone();
    cm["data"]["a"] = json!("changed");
    record_update(&CONFIGMAPS, Some(&old), &mut cm, "editor", T1);
    let mf = cm["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 2);
    assert_eq!(mf[0]["manager"], "creator");
    assert_eq!(mf[0]["fieldsV1"], json!({"f:data":{".":{},"f:b":{}}}));
    assert_eq!(mf[1]["manager"], "editor");
    assert_eq!(mf[1]["fieldsV1"], json!({"f:data":{"f:a":{}}}));
}

#[test]
fn removed_fields_leave_every_set_and_empty_managers_disappear() {
    let mut cm =
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1"}});
    record_update(&CONFIGMAPS, None, &mut cm, "creator", T0);
    let old = cm.clone();
    cm.as_object_mut().unwrap().remove("data");
    record_update(&CONFIGMAPS, Some(&old), &mut cm, "remover", T1);
    assert!(cm["metadata"].get("managedFields").is_none(), "{cm}");
}

#[test]
fn no_change_keeps_entries_and_times() {
    let mut cm =
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1"}});
    record_update(&CONFIGMAPS, None, &mut cm, "creator", T0);
    let old = cm.clone();
    cm["metadata"]["resourceVersion"] = json!("7");
    record_update(&CONFIGMAPS, Some(&old), &mut cm, "creator", T1);
    assert_eq!(
        managers(&cm),
        vec![("creator".into(), "Update".into(), T0.into())]
    );
    record_update(&CONFIGMAPS, Some(&old), &mut cm, "someone-else", T1);
    assert_eq!(managers(&cm).len(), 1);
}

#[test]
fn same_manager_accumulates_and_refreshes_time() {
    let mut cm =
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1"}});
    record_update(&CONFIGMAPS, None, &mut cm, "m", T0);
    let old = cm.clone();
    cm["data"]["b"] = json!("2");
    record_update(&CONFIGMAPS, Some(&old), &mut cm, "m", T1);
    assert_eq!(
        managers(&cm),
        vec![("m".into(), "Update".into(), T1.into())]
    );
    assert_eq!(
        cm["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data":{".":{},"f:a":{},"f:b":{}}})
    );
}

#[test]
fn managed_fields_sent_by_the_client_replace_the_live_ones() {
    let mut cm =
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1"}});
    record_update(&CONFIGMAPS, None, &mut cm, "creator", T0);
    let old = cm.clone();
    // kubectl's client-side to server-side apply migration rewrites the entries.
    cm["metadata"]["managedFields"] = json!([{"manager":"kubectl","operation":"Apply","apiVersion":"v1","time":T0,
        "fieldsType":"FieldsV1","fieldsV1":{"f:data":{"f:a":{}}}}]);
    record_update(&CONFIGMAPS, Some(&old), &mut cm, "kubectl", T1);
    assert_eq!(
        managers(&cm),
        vec![("kubectl".into(), "Apply".into(), T0.into())]
    );
    // A single empty entry clears them.
    let old = cm.clone();
    cm["metadata"]["managedFields"] = json!([{}]);
    record_update(&CONFIGMAPS, Some(&old), &mut cm, "kubectl", T1);
    assert!(cm["metadata"].get("managedFields").is_none());
    // Garbage sent by a client falls back to the live entries.
    cm = old.clone();
    cm["metadata"]["managedFields"] = json!([{"manager":"x","operation":"Bogus"}]);
    record_update(&CONFIGMAPS, Some(&old), &mut cm, "kubectl", T1);
    assert_eq!(
        managers(&cm),
        vec![("kubectl".into(), "Apply".into(), T0.into())]
    );
}

#[test]
fn at_most_ten_update_managers() {
    let mut cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{}});
    for i in 0..12 {
        let old = cm.clone();
        cm["data"][format!("k{i}")] = json!("v");
        record_update(
            &CONFIGMAPS,
            Some(&old),
            &mut cm,
            &format!("m{i:02}"),
            &format!("2026-11-25T09:{i:02}:00Z"),
        );
    }
    let ms = managers(&cm);
    assert_eq!(ms.len(), 10, "{ms:?}");
    assert!(ms.iter().any(|(m, _, _)| m == "ancient-changes"));
    assert!(ms.iter().any(|(m, _, _)| m == "m11"));
    assert!(!ms.iter().any(|(m, _, _)| m == "m00"));
}

#[test]
fn status_subresource_writes_are_recorded_with_their_subresource() {
    use podvisor_apiserver::Subresource;
    use podvisor_apiserver::patch::record_update_subresource;
    let mut pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}});
    record_update(&PODS, None, &mut pod, "kubectl-create", T0);
    let old = pod.clone();
    pod["status"] = json!({"phase":"Running","conditions":[{"type":"Ready","status":"True"}]});
    // Managed fields in a status write are ignored.
    pod["metadata"]["managedFields"] = json!([{}]);
    record_update_subresource(
        &PODS,
        Some(Subresource::Status),
        Some(&old),
        &mut pod,
        "kubelet",
        T1,
    );
    let mf = pod["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 2);
    assert_eq!(mf[1]["manager"], "kubelet");
    assert_eq!(mf[1]["subresource"], "status");
    assert_eq!(
        mf[1]["fieldsV1"],
        json!({"f:status":{"f:conditions":{".":{},"k:{\"type\":\"Ready\"}":{".":{},"f:status":{},"f:type":{}}},"f:phase":{}}})
    );
}

#[test]
fn structs_go_always_serializes_get_no_self_entry() {
    use podvisor_apiserver::registry::DEPLOYMENTS;
    let mut d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
        "spec":{"replicas":1,"selector":{"matchLabels":{"app":"d"}},
                "template":{"metadata":{"labels":{"app":"d"}},
                            "spec":{"containers":[{"name":"c","image":"x","resources":{"limits":{"cpu":"1"}}}]}}}});
    record_update(&DEPLOYMENTS, None, &mut d, "kubectl-create", T0);
    assert_eq!(
        d["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:spec":{"f:replicas":{},"f:selector":{},
            "f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},
                          "f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:image":{},"f:name":{},
                              "f:resources":{".":{},"f:limits":{".":{},"f:cpu":{}}}}}}}}})
    );
}
