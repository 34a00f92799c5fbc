//! JSON object helpers: metadata access, typed round trips through `k8s-openapi` (which
//! normalizes objects and reveals unknown fields), timestamps.

use serde_json::{Map, Value};

use crate::registry::ResourceKind;

/// Formats a timestamp as a Kubernetes `Time` (RFC 3339, seconds, `Z`).
pub fn format_time(t: jiff::Timestamp) -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t).unwrap_or_else(|_| t.to_string())
}

/// Parses a Kubernetes `Time` or `MicroTime`.
pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// The mutable metadata map, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let m = obj.as_object_mut().expect("object");
    let meta = m
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("object")
}

/// Sets `metadata.<field>`, or removes it for `Value::Null`.
pub fn set_meta(obj: &mut Value, field: &str, v: Value) {
    let m = meta_mut(obj);
    if v.is_null() {
        m.remove(field);
    } else {
        m.insert(field.to_string(), v);
    }
}

/// The object's name.
pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// The object's finalizers.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The object's labels.
pub fn labels(obj: &Value) -> std::collections::BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Round-trips an object through its kind's `k8s-openapi` type (the descriptor's
/// [`ResourceKind::round_trip`]): type errors surface, unknown fields are dropped,
/// everything else keeps its value. Kinds without a type keep the object as sent.
pub fn round_trip(kind: &ResourceKind, v: Value) -> Result<Value, serde_json::Error> {
    match kind.round_trip {
        Some(rt) => rt(v),
        None if kind.custom.is_some() => Ok(crate::crd::prune(kind, v)),
        None => Ok(v),
    }
}

/// Field paths present (non-null) in `original` but missing from `normalized`: the
/// unknown fields, in upstream's notation (`spec.containers[0].imagee`).
pub fn unknown_fields(original: &Value, normalized: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(original, normalized, String::new(), &mut out);
    out
}

fn walk_unknown(o: &Value, n: &Value, path: String, out: &mut Vec<String>) {
    match (o, n) {
        (Value::Object(om), Value::Object(nm)) => {
            for (k, ov) in om {
                if ov.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match nm.get(k) {
                    Some(nv) => walk_unknown(ov, nv, p, out),
                    None => {
                        // Empty containers may be dropped by the typed round trip without being unknown.
                        let empty = matches!(ov, Value::Object(m) if m.is_empty())
                            || matches!(ov, Value::Array(a) if a.is_empty());
                        if !empty {
                            out.push(p);
                        }
                    }
                }
            }
        }
        (Value::Array(oa), Value::Array(na)) => {
            for (i, (ov, nv)) in oa.iter().zip(na).enumerate() {
                walk_unknown(ov, nv, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Whether two objects are equal ignoring `metadata.resourceVersion` and `managedFields`
/// timestamps (used to skip no-op writes).
pub fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_with_paths() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "creationTimestamp": null},
            "spec": {"foo": 1, "containers": [{"name": "a", "image": "i", "imagee": "j"}]}, "status": {}});
        let n = round_trip(&crate::registry::PODS, pod.clone()).unwrap();
        assert_eq!(
            unknown_fields(&pod, &n),
            vec!["spec.containers[0].imagee", "spec.foo"]
        );
    }

    #[test]
    fn type_errors_fail_the_round_trip() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5}});
        assert!(round_trip(&crate::registry::PODS, pod).is_err());
    }
}
