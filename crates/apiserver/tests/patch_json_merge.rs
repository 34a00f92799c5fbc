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

/// A patch that copies the object into itself again and again (each copy doubles it) is
/// refused once the copies add more than upstream's `JSONPatchMaxCopyBytes`, quickly and
/// without building the oversized object.
#[test]
fn json_patch_copy_doubling_is_refused_at_the_copy_limit() {
    let mut node = json!({"metadata":{"name":"n","annotations":{"a": "x".repeat(1000)}}});
    node["metadata"]["labels"] = json!({"l": "v"});
    // Level i holds two copies of level i-1: 40 levels would be 2^40 KB.
    let mut ops =
        vec![json!({"op":"add","path":"/metadata/annotations/l0","value":"x".repeat(1000)})];
    for i in 1..40 {
        ops.push(json!({"op":"add","path":format!("/d{i}"),"value":{}}));
        ops.push(
            json!({"op":"copy","from":format!("/metadata/annotations"),"path":format!("/d{i}/a")}),
        );
        ops.push(
            json!({"op":"copy","from":format!("/metadata/annotations"),"path":format!("/d{i}/b")}),
        );
        ops.push(json!({"op":"copy","from":format!("/d{i}"),"path":format!("/metadata/annotations/k{i}")}));
    }
    let body = Value::Array(ops).to_string();
    assert!(
        body.len() < 16 * 1024,
        "a small patch: {} bytes",
        body.len()
    );
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let e = apply_patch(
        &PODS,
        PatchType::Json,
        Some(&node),
        body.as_bytes(),
        "m",
        false,
        NOW,
    )
    .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((e.code(), e.reason()), (422, "Invalid"), "{e}");
    assert!(
        e.message()
            .starts_with("Unable to complete the copy, the accumulated size increase of copy is ")
            && e.message().ends_with("exceeding the limit 3145728"),
        "{}",
        e.message()
    );
}

/// Copies that stay under the limit still apply.
#[test]
fn json_patch_copies_under_the_limit_apply() {
    let body = json!([
        {"op":"copy","from":"/metadata/labels","path":"/metadata/annotations"},
        {"op":"copy","from":"/metadata/labels/a","path":"/metadata/labels/b"}
    ])
    .to_string();
    let out = run(PatchType::Json, &pod(), &body).expect("patch");
    assert_eq!(out["metadata"]["annotations"], json!({"a":"1"}));
    assert_eq!(out["metadata"]["labels"], json!({"a":"1","b":"1"}));
}

/// Whatever the patch type, an object that would come out larger than a request may be is
/// refused with 413 before it is stored.
#[test]
fn patched_object_larger_than_a_request_is_refused() {
    let big = "y".repeat(1024 * 1024);
    let mut original = pod();
    original["metadata"]["annotations"] = json!({"a": big, "b": big});
    let body = json!({"metadata":{"annotations":{"c": big, "d": big}}}).to_string();
    let e = run(PatchType::Merge, &original, &body).unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (413, "RequestEntityTooLarge"),
        "{e}"
    );
}
