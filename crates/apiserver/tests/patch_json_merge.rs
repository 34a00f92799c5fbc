//! JSON patch (RFC 6902), merge patch (RFC 7386) and content-type handling.

use podvisor_apiserver::patch::{PatchError, PatchType, apply_patch};
use podvisor_apiserver::registry::{PODS, REPLICASETS};
use serde_json::{Value, json};

const NOW: &str = "2026-11-25T09:00:00Z";

fn run(t: PatchType, original: &Value, body: &str) -> Result<Value, PatchError> {
    apply_patch(&PODS, t, Some(original), body.as_bytes(), "m", false, NOW)
}

fn pod() -> Value {
    json!({"metadata":{"name":"p","labels":{"a":"1"}},"spec":{"containers":[{"name":"c","image":"x"}]}})
}

#[test]
fn content_types() {
    for (content_type, want) in [
        ("application/json-patch+json", PatchType::Json),
        (
            "application/merge-patch+json; charset=utf-8",
            PatchType::Merge,
        ),
        (
            "Application/Strategic-Merge-Patch+JSON",
            PatchType::StrategicMerge,
        ),
        ("application/apply-patch+yaml", PatchType::Apply),
    ] {
        assert_eq!(
            PatchType::from_content_type(content_type),
            Some(want),
            "{content_type}"
        );
    }
    assert_eq!(PatchType::from_content_type("application/json"), None);
    assert_eq!(PatchType::from_content_type(""), None);
    let e = PatchError::unsupported_media_type("text/plain");
    assert_eq!((e.code(), e.reason()), (415, "UnsupportedMediaType"));
    assert!(e.message().contains("application/apply-patch+yaml"));
    for t in [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ] {
        assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
    }
}

#[test]
fn json_patch_operations() {
    let out = run(
        PatchType::Json,
        &pod(),
        r#"[{"op":"add","path":"/metadata/labels/b","value":"2"},
            {"op":"replace","path":"/spec/containers/0/image","value":"y"},
            {"op":"remove","path":"/metadata/labels/a"},
            {"op":"test","path":"/metadata/name","value":"p"}]"#,
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
    assert_eq!(out["spec"]["containers"][0]["image"], "y");
}

#[test]
fn json_patch_failures() {
    let e = run(
        PatchType::Json,
        &pod(),
        r#"[{"op":"test","path":"/metadata/name","value":"q"}]"#,
    )
    .unwrap_err();
    assert_eq!((e.code(), e.reason()), (422, "Invalid"));
    let e = run(
        PatchType::Json,
        &pod(),
        r#"[{"op":"remove","path":"/nope"}]"#,
    )
    .unwrap_err();
    assert_eq!(e.code(), 422);
    let e = run(
        PatchType::Json,
        &pod(),
        r#"[{"op":"replace","path":"","value":3}]"#,
    )
    .unwrap_err();
    assert_eq!(
        e.code(),
        422,
        "a patch that makes the object a scalar is invalid"
    );
    for bad in [
        r#"{"op":"add"}"#,
        r#"[{"op":"frobnicate","path":"/a"}]"#,
        "[",
        "",
    ] {
        let e = run(PatchType::Json, &pod(), bad).unwrap_err();
        assert_eq!((e.code(), e.reason()), (400, "BadRequest"), "{bad}");
    }
}

#[test]
fn json_patch_operation_limit() {
    let ops: Vec<Value> = (0..10_001)
        .map(|_| json!({"op":"test","path":"/metadata/name","value":"p"}))
        .collect();
    let e = run(PatchType::Json, &pod(), &Value::Array(ops).to_string()).unwrap_err();
    assert_eq!((e.code(), e.reason()), (413, "RequestEntityTooLarge"));
}

#[test]
fn merge_patch_rfc7386() {
    let out = run(
        PatchType::Merge,
        &pod(),
        r#"{"metadata":{"labels":{"a":null,"b":"2"}},"spec":{"containers":[{"name":"only"}]}}"#,
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "only"}]),
        "lists are replaced"
    );
    for bad in ["[1]", "3", "{", "null"] {
        assert_eq!(
            run(PatchType::Merge, &pod(), bad).unwrap_err().code(),
            400,
            "{bad}"
        );
    }
}

#[test]
fn kubectl_scale_merge_patch() {
    // kubectl-wire.md §4.13: PATCH …/scale with {"spec":{"replicas":3}}.
    let rs = json!({"spec":{"replicas":1,"selector":{"matchLabels":{"app":"x"}}}});
    let out = apply_patch(
        &REPLICASETS,
        PatchType::Merge,
        Some(&rs),
        br#"{"spec":{"replicas":3}}"#,
        "m",
        false,
        NOW,
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(out["spec"]["selector"], rs["spec"]["selector"]);
}
