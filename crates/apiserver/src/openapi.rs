//! OpenAPI v3: the index at `/openapi/v3` and one small document per group-version with a
//! PATCH operation per kind, tagged `x-kubernetes-group-version-kind` and carrying the
//! `fieldValidation` parameter, which is what kubectl's `--validate=strict` looks for
//! before it leaves validation to the server (kubectl-wire §3).

use serde_json::{Value, json};

use crate::registry::{self, ResourceKind};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out = vec![("", "v1")];
    for (g, vs) in registry::groups() {
        for v in vs {
            out.push((g, v));
        }
    }
    out
}

fn hash(s: &str) -> String {
    // FNV-1a, 64 bit: stable across runs, enough to bust kubectl's HTTP cache on change.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

fn param(name: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}})
}

fn object_path(k: &ResourceKind) -> String {
    let base = format!("/{}", gv_path(k.group, k.version));
    if k.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", k.plural)
    } else {
        format!("{base}/{}/{{name}}", k.plural)
    }
}

/// The per-group-version document.
pub fn document(group: &str, version: &str) -> Option<Value> {
    let kinds = registry::kinds_in(group, version);
    if kinds.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for k in kinds {
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        let params = json!([
            param("dryRun", "string"),
            param("fieldManager", "string"),
            param("fieldValidation", "string"),
            param("force", "boolean")
        ]);
        paths.insert(
            object_path(k),
            json!({"patch": {
                "operationId": format!("patch{}", k.kind),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}}
            }}),
        );
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.4"},
        "paths": paths, "components": {"schemas": {}}}),
    )
}

/// The `/openapi/v3` index.
pub fn index() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in group_versions() {
        let doc = document(g, v).map(|d| d.to_string()).unwrap_or_default();
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
        );
    }
    json!({"paths": paths})
}

/// Resolves `/openapi/v3/<rest>` to a document.
pub fn lookup(rest: &[&str]) -> Option<Value> {
    match rest {
        ["api", v] => document("", v),
        ["apis", g, v] => document(g, v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_patch_operation_with_field_validation() {
        let idx = index();
        assert!(
            idx["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/api/v1?hash=")
        );
        let doc = lookup(&["apis", "apps", "v1"]).unwrap();
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/replicasets/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "ReplicaSet");
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(lookup(&["apis", "nope", "v1"]).is_none());
    }
}
