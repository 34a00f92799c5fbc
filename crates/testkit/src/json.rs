//! Helpers for tests that compare objects as JSON.

use serde_json::Value;

/// The object without the metadata the server sets on every write (`namespace`, `uid`,
/// `resourceVersion`, `creationTimestamp`, `managedFields`, `selfLink`), so two creations
/// of the same object compare equal.
pub fn without_server_fields(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in [
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(key);
        }
    }
    v
}

/// The names of `spec.containers`, in order.
pub fn container_names(pod: &Value) -> Vec<&str> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_fields_go_and_the_rest_stays() {
        let v = json!({"metadata": {"name": "a", "uid": "u", "resourceVersion": "3", "labels": {"x": "y"}}, "spec": {}});
        assert_eq!(
            without_server_fields(v),
            json!({"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {}})
        );
        let p = json!({"spec": {"containers": [{"name": "c"}, {"name": "d"}]}});
        assert_eq!(container_names(&p), ["c", "d"]);
        assert!(container_names(&json!({})).is_empty());
    }
}
