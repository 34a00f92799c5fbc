//! OpenAPI: `/openapi/v2` (one document) and `/openapi/v3` (an index and one document per
//! group-version), with the complete schema of every served kind.
//!
//! The schemas are upstream's, as k8s-openapi (v1_33) carries them: `generate.py` writes
//! them to `definitions.tsv`, one definition per line, compiled into the binary. A
//! document is assembled on request from the raw lines (the served kinds' definitions
//! and everything they reference), so nothing parsed stays in memory; v3 documents name
//! their references `#/components/schemas/…` instead of `#/definitions/…`.
//!
//! Every path carries the operations kubectl looks at: `x-kubernetes-action`,
//! `x-kubernetes-group-version-kind` and, on PATCH, the `fieldValidation` parameter that
//! kubectl's `--validate=strict` checks for before it leaves validation to the server
//! (kubectl-wire §3). Documents are hashed (FNV-1a): the v3 index links each document
//! with `?hash=`, and responses carry the hash as their ETag.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::registry::{self, ResourceKind, Subresource};

pub mod proto;

static DEFINITIONS: &str = include_str!("definitions.tsv");

/// One schema definition.
#[derive(Debug, Clone, Copy)]
pub struct Definition {
    /// The definition name (`io.k8s.api.core.v1.Pod`).
    pub name: &'static str,
    /// The group of the kind ("" for core and for non-resources).
    pub group: &'static str,
    /// The version of the kind ("" for non-resources).
    pub version: &'static str,
    /// The kind ("" for non-resources).
    pub kind: &'static str,
    /// The schema, compact JSON with `#/definitions/` references.
    pub schema: &'static str,
}

/// Every definition, sorted by name.
pub fn definitions() -> &'static [Definition] {
    static DEFS: OnceLock<Vec<Definition>> = OnceLock::new();
    DEFS.get_or_init(|| {
        DEFINITIONS
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(5, '\t');
                Some(Definition {
                    name: f.next()?,
                    group: f.next()?,
                    version: f.next()?,
                    kind: f.next()?,
                    schema: f.next()?,
                })
            })
            .collect()
    })
}

/// The definitions of the custom kinds (see [`crate::crd`]).
fn custom_definitions() -> impl Iterator<Item = &'static Definition> {
    registry::custom_kinds()
        .into_iter()
        .filter_map(|k| k.custom)
        .flat_map(|c| c.definitions.iter())
}

fn definition(name: &str) -> Option<&'static Definition> {
    let defs = definitions();
    defs.binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &defs[i])
        .or_else(|| crate::timeline::DEFINITIONS.iter().find(|d| d.name == name))
        .or_else(|| custom_definitions().find(|d| d.name == name))
}

/// The definition of a served kind (by group, version and kind).
pub fn definition_of(group: &str, version: &str, kind: &str) -> Option<&'static Definition> {
    definitions()
        .iter()
        .chain(crate::timeline::DEFINITIONS)
        .chain(custom_definitions())
        .find(|d| d.kind == kind && d.version == version && d.group == group)
}

fn refs(schema: &str) -> impl Iterator<Item = &str> {
    const MARK: &str = "\"#/definitions/";
    schema.match_indices(MARK).filter_map(|(at, _)| {
        let rest = &schema[at + MARK.len()..];
        rest.find('"').map(|end| &rest[..end])
    })
}

/// The definitions `roots` need: themselves and everything they reference, by name.
fn closure<'a>(roots: impl IntoIterator<Item = &'a str>) -> Vec<&'static Definition> {
    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    let mut stack: Vec<&'static Definition> = roots.into_iter().filter_map(definition).collect();
    let mut out = Vec::new();
    while let Some(d) = stack.pop() {
        if !seen.insert(d.name) {
            continue;
        }
        out.push(d);
        stack.extend(refs(d.schema).filter_map(definition));
    }
    out.sort_by_key(|d| d.name);
    out
}

/// The definitions of meta types every document references.
const META: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
];

/// The definition names a kind's operations use (the kind, its list and its subresource
/// bodies).
fn kind_roots(k: &ResourceKind) -> Vec<&'static str> {
    let mut out = Vec::new();
    for kind in [k.kind.to_string(), k.list_kind()] {
        if let Some(d) = definition_of(k.group, k.version, &kind) {
            out.push(d.name);
        }
    }
    for s in k.subresources {
        let (g, v, kind) = match s {
            Subresource::Scale => ("autoscaling", "v1", "Scale"),
            Subresource::Binding => ("", "v1", "Binding"),
            Subresource::Eviction => ("policy", "v1", "Eviction"),
            Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
            _ => continue,
        };
        out.extend(definition_of(g, v, kind).map(|d| d.name));
    }
    out
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: the group-version part of operation ids.
fn op_group(group: &str, version: &str) -> String {
    let mut out = String::new();
    let g = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    for part in g.split('.').chain([version]) {
        let mut c = part.chars();
        if let Some(first) = c.next() {
            out.extend(first.to_uppercase());
            out.push_str(c.as_str());
        }
    }
    out
}

/// How references are written: v2 `#/definitions/`, v3 `#/components/schemas/`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    V2,
    V3,
}

impl Flavour {
    fn reference(self, name: &str) -> Value {
        match self {
            Flavour::V2 => json!({"$ref": format!("#/definitions/{name}")}),
            Flavour::V3 => json!({"$ref": format!("#/components/schemas/{name}")}),
        }
    }

    fn param(self, name: &str, ty: &str, place: &str, required: bool) -> Value {
        let mut p = match self {
            Flavour::V2 => json!({"name": name, "in": place, "type": ty, "uniqueItems": true}),
            Flavour::V3 => {
                json!({"name": name, "in": place, "schema": {"type": ty, "uniqueItems": true}})
            }
        };
        if required {
            p["required"] = true.into();
        }
        p
    }

    fn response(self, schema: Option<&str>) -> Value {
        let Some(name) = schema else {
            return json!({"description": "OK"});
        };
        match self {
            Flavour::V2 => json!({"description": "OK", "schema": self.reference(name)}),
            Flavour::V3 => json!({"description": "OK", "content": {
                "application/json": {"schema": self.reference(name)},
                "application/yaml": {"schema": self.reference(name)}}}),
        }
    }
}

fn operation(
    f: Flavour,
    k: &ResourceKind,
    verb: &str,
    action: &str,
    namespaced: bool,
    response: Option<&str>,
    extra: &[Value],
) -> Value {
    let scope = if namespaced && k.namespaced {
        "Namespaced"
    } else {
        ""
    };
    let mut params: Vec<Value> = extra.to_vec();
    if matches!(action, "put" | "post" | "patch") {
        params.push(f.param("dryRun", "string", "query", false));
        params.push(f.param("fieldManager", "string", "query", false));
        params.push(f.param("fieldValidation", "string", "query", false));
    }
    if action == "patch" {
        params.push(f.param("force", "boolean", "query", false));
    }
    let ok = f.response(response);
    let mut responses = Map::new();
    responses.insert("200".into(), ok.clone());
    if matches!(action, "post" | "put") {
        responses.insert("201".into(), ok);
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    json!({
        "operationId": format!("{verb}{}{scope}{}", op_group(k.group, k.version), k.kind),
        "tags": [op_group(k.group, k.version).to_lowercase()],
        "parameters": params,
        "responses": responses,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": k.group, "version": k.version, "kind": k.kind},
    })
}

/// The paths of one kind: its collection(s), objects and status.
fn kind_paths(f: Flavour, k: &ResourceKind, paths: &mut Map<String, Value>) {
    let obj = definition_of(k.group, k.version, k.kind).map(|d| d.name);
    let list = definition_of(k.group, k.version, &k.list_kind()).map(|d| d.name);
    let status = Some("io.k8s.apimachinery.pkg.apis.meta.v1.Status");
    let base = format!("/{}", gv_path(k.group, k.version));
    let ns_base = if k.namespaced {
        format!("{base}/namespaces/{{namespace}}")
    } else {
        base.clone()
    };
    let name_param = f.param("name", "string", "path", true);
    let ns_param = f.param("namespace", "string", "path", true);
    let scoped: Vec<Value> = if k.namespaced { vec![ns_param] } else { vec![] };
    let mut with_name = scoped.clone();
    with_name.insert(0, name_param);
    let collection = json!({
        "get": operation(f, k, "list", "list", true, list, &scoped),
        "post": operation(f, k, "create", "post", true, obj, &scoped),
        "delete": operation(f, k, "deletecollection", "deletecollection", true, status, &scoped),
    });
    paths.insert(format!("{ns_base}/{}", k.plural), collection);
    if k.namespaced {
        paths.insert(
            format!("{base}/{}", k.plural),
            json!({"get": operation(f, k, "list", "list", false, list, &[])}),
        );
    }
    let item = json!({
        "get": operation(f, k, "read", "get", true, obj, &with_name),
        "put": operation(f, k, "replace", "put", true, obj, &with_name),
        "patch": operation(f, k, "patch", "patch", true, obj, &with_name),
        "delete": operation(f, k, "delete", "delete", true, obj.or(status), &with_name),
    });
    paths.insert(format!("{ns_base}/{}/{{name}}", k.plural), item);
    if k.has_subresource(Subresource::Status) {
        paths.insert(
            format!("{ns_base}/{}/{{name}}/status", k.plural),
            json!({
                "get": operation(f, k, "read", "get", true, obj, &with_name),
                "put": operation(f, k, "replace", "put", true, obj, &with_name),
                "patch": operation(f, k, "patch", "patch", true, obj, &with_name),
            }),
        );
    }
}

/// The served group-versions, core first.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    registry::all_group_versions()
        .into_iter()
        .flat_map(|(g, vs)| vs.into_iter().map(move |v| (g, v)))
        .collect()
}

fn write_schemas(out: &mut String, defs: &[&Definition], f: Flavour) {
    out.push('{');
    for (i, d) in defs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:", Value::from(d.name));
        match f {
            Flavour::V2 => out.push_str(d.schema),
            Flavour::V3 => {
                out.push_str(&d.schema.replace("#/definitions/", "#/components/schemas/"))
            }
        }
    }
    out.push('}');
}

/// An upper bound of a document's size, so that it is built in one allocation (a large
/// one, which the allocator maps and returns whole when the response is sent).
fn capacity(defs: &[&Definition], paths: &Map<String, Value>) -> usize {
    let schemas: usize = defs
        .iter()
        .map(|d| d.name.len() + d.schema.len() * 11 / 10 + 8)
        .sum();
    schemas + paths.len() * 8192 + 256
}

const INFO: &str = r#"{"title":"Kubernetes","version":"v1.33.1"}"#;

/// The definitions the v2 document carries.
fn v2_definitions() -> Vec<&'static Definition> {
    let mut roots: Vec<&str> = META.to_vec();
    for k in registry::kinds() {
        roots.extend(kind_roots(k));
    }
    closure(roots)
}

/// The `/openapi/v2` document as gnostic protobuf (definitions only, see [`proto`]).
pub fn v2_protobuf() -> Vec<u8> {
    proto::document(&v2_definitions(), &[])
}

/// The `/openapi/v2` document.
pub fn v2() -> String {
    let mut paths = Map::new();
    for k in registry::kinds() {
        kind_paths(Flavour::V2, k, &mut paths);
    }
    let defs = v2_definitions();
    let mut out = String::with_capacity(capacity(&defs, &paths));
    let _ = write!(
        out,
        r#"{{"swagger":"2.0","info":{INFO},"paths":{},"definitions":"#,
        Value::Object(paths)
    );
    write_schemas(&mut out, &defs, Flavour::V2);
    out.push('}');
    out
}

/// The `/openapi/v3/<api/v1 | apis/G/V>` document, if the group-version is served.
pub fn v3_document(group: &str, version: &str) -> Option<String> {
    let kinds = registry::kinds_in(group, version);
    if kinds.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut roots: Vec<&str> = META.to_vec();
    for k in kinds {
        kind_paths(Flavour::V3, k, &mut paths);
        roots.extend(kind_roots(k));
    }
    let defs = closure(roots);
    let mut out = String::with_capacity(capacity(&defs, &paths));
    let _ = write!(
        out,
        r#"{{"openapi":"3.0.0","info":{INFO},"paths":{},"components":{{"schemas":"#,
        Value::Object(paths)
    );
    write_schemas(&mut out, &defs, Flavour::V3);
    out.push_str("}}");
    Some(out)
}

/// FNV-1a, 64 bit, as 16 upper-case hex digits: stable across runs, changes with the
/// content (kubectl caches `?hash=` documents forever).
pub fn hash(s: impl AsRef<[u8]>) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in s.as_ref() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

/// The `/openapi/v3` index.
/// Built once per set of served kinds ([`registry::generation`]).
pub fn v3_index() -> String {
    static INDEX: std::sync::Mutex<Option<(u64, String)>> = std::sync::Mutex::new(None);
    let generation = registry::generation();
    if let Ok(cached) = INDEX.lock()
        && let Some((g, index)) = cached.as_ref()
        && *g == generation
    {
        return index.clone();
    }
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        let doc = v3_document(g, v).unwrap_or_default();
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
        );
    }
    let index = json!({"paths": paths}).to_string();
    if let Ok(mut cached) = INDEX.lock() {
        *cached = Some((generation, index.clone()));
    }
    index
}

/// Resolves `/openapi/v3/<rest>` to a document.
pub fn v3_lookup(rest: &[&str]) -> Option<String> {
    match rest {
        ["api", v] => v3_document("", v),
        ["apis", g, v] => v3_document(g, v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_patch_operation_with_field_validation() {
        let idx: Value = serde_json::from_str(&v3_index()).unwrap();
        assert!(
            idx["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/api/v1?hash=")
        );
        let doc: Value =
            serde_json::from_str(&v3_lookup(&["apis", "apps", "v1"]).unwrap()).unwrap();
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/replicasets/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "ReplicaSet");
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(v3_lookup(&["apis", "nope", "v1"]).is_none());
    }

    #[test]
    fn every_served_kind_has_its_schema_and_references_resolve() {
        for k in registry::KINDS {
            let d = definition_of(k.group, k.version, k.kind)
                .unwrap_or_else(|| panic!("no schema for {}", k.kind));
            assert!(d.schema.contains("x-kubernetes-group-version-kind"));
        }
        let v2: Value = serde_json::from_str(&v2()).unwrap();
        let defs = v2["definitions"].as_object().unwrap();
        let text = v2.to_string();
        for r in refs(&text) {
            assert!(defs.contains_key(r), "dangling reference {r}");
        }
        assert!(defs.contains_key("io.k8s.api.core.v1.PodSpec"));
        let pod = &defs["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.PodSpec"
        );
        let v3: Value = serde_json::from_str(&v3_lookup(&["api", "v1"]).unwrap()).unwrap();
        assert!(!v3.to_string().contains("#/definitions/"));
        assert!(v3["components"]["schemas"]["io.k8s.api.core.v1.PodList"].is_object());
    }

    #[test]
    fn operation_ids_follow_upstream() {
        assert_eq!(op_group("", "v1"), "CoreV1");
        assert_eq!(
            op_group("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
        assert_eq!(op_group("networking.k8s.io", "v1"), "NetworkingV1");
    }

    /// `definitions.tsv` is what `generate.py` makes from the k8s-openapi sources in the
    /// cargo registry.
    #[test]
    fn generated_definitions_are_current() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/openapi/generate.py");
        podvisor_testkit::run_ok(std::process::Command::new("python3").args([script, "--check"]));
    }
}
