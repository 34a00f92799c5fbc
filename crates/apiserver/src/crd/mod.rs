//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`): each served version of a CRD
//! becomes a [`ResourceKind`] served by the same generic code as the built-in kinds.
//!
//! Lifecycle of a CRD:
//!
//! ```text
//! create/update ──validate──▶ stored ──establish──▶ kinds registered (discovery, OpenAPI,
//!                                                   REST live) + status: NamesAccepted,
//!                                                   Established, acceptedNames, storedVersions
//! delete ──▶ every object of the CRD deleted ──▶ kinds unregistered ──▶ CRD removed
//! server start ──▶ every stored CRD established again
//! ```
//!
//! Versions share one storage prefix (`/registry/<group>/<plural>/`) and convert with the
//! `None` strategy: an object read through another version only changes `apiVersion`.
//! Descriptors are `'static` (the generic code holds them by reference); identical
//! descriptors are interned, so re-establishing an unchanged CRD allocates nothing.
//! CEL rules (`x-kubernetes-validations`) are compiled when the CRD is written (a rule that
//! does not compile makes it invalid) and evaluated on every create and update of its
//! objects, transition rules (`oldSelf`) on update only; see [`cel`].

pub mod cel;
pub mod jsonpath;
pub mod schema;

use std::collections::HashMap;
use std::sync::Mutex;

use podvisor_api::validation::{self as v, FieldError};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects;
use crate::openapi::Definition;
use crate::ops::Core;
use crate::registry::{self, CUSTOMRESOURCEDEFINITIONS, ResourceKind, Strategy, Subresource};
use crate::table::Printer;

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    /// Column name.
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `number`, `boolean`, `date`).
    pub ty: String,
    /// OpenAPI format.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0, or 1 for `-o wide` columns.
    pub priority: i64,
    /// The JSONPath of the cell.
    pub json_path: String,
}

/// The scale subresource's paths, as JSON pointers.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    /// `specReplicasPath`.
    pub spec_replicas: String,
    /// `statusReplicasPath`.
    pub status_replicas: String,
    /// `labelSelectorPath`.
    pub label_selector: Option<String>,
}

/// What a CRD says of one served version.
#[derive(Debug)]
pub struct CustomKind {
    /// The CRD's name (`<plural>.<group>`).
    pub crd: String,
    /// The version's rank in the group's preferred order (0 first).
    pub version_priority: u32,
    /// The `openAPIV3Schema`.
    pub schema: Option<Value>,
    /// The printer columns (Age when the CRD names none).
    pub columns: Vec<PrinterColumn>,
    /// The scale subresource, if served.
    pub scale: Option<ScalePaths>,
    /// The OpenAPI definitions of the kind and its list.
    pub definitions: [Definition; 2],
}

fn leak(s: impl Into<String>) -> &'static str {
    Box::leak(s.into().into_boxed_str())
}

fn leak_list(v: Option<&Value>) -> &'static [&'static str] {
    let items: Vec<&'static str> = v
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(leak).collect())
        .unwrap_or_default();
    Box::leak(items.into_boxed_slice())
}

/// A JSONPath (`.spec.replicas`) as a JSON pointer (`/spec/replicas`).
pub fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |mut p, s| {
            p.push('/');
            p.push_str(&s.replace('~', "~0").replace('/', "~1"));
            p
        })
}

/// Kubernetes version order: GA before beta before alpha, higher numbers first, then
/// other names alphabetically.
fn version_rank(v: &str) -> (u8, i64, i64, String) {
    let parsed = v.strip_prefix('v').and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        let (level, minor) = match tail {
            "" => (0, 0),
            t if t.starts_with("beta") => (1, t[4..].parse().ok()?),
            t if t.starts_with("alpha") => (2, t[5..].parse().ok()?),
            _ => return None,
        };
        Some((level, -major, -minor))
    });
    match parsed {
        Some((l, a, b)) => (l, a, b, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// The definition name upstream gives a custom kind (`com.example.v1.Widget`).
fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let rev: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", rev.join("."))
}

fn definitions_for(
    group: &str,
    version: &str,
    kind: &str,
    schema: Option<&Value>,
) -> [Definition; 2] {
    let name = definition_name(group, version, kind);
    let gvk = |k: &str| json!([{"group": group, "kind": k, "version": version}]);
    let mut s = schema.cloned().unwrap_or_else(|| json!({"type": "object"}));
    if let Some(m) = s.as_object_mut() {
        let props = m.entry("properties").or_insert_with(|| json!({}));
        if let Some(p) = props.as_object_mut() {
            p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            p.insert("metadata".into(), json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "description": "Standard object's metadata."}));
        }
        m.insert("x-kubernetes-group-version-kind".into(), gvk(kind));
    }
    let list_kind = format!("{kind}List");
    let list = json!({
        "description": format!("{list_kind} is a list of {kind}"),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": format!("#/definitions/{name}")}},
            "kind": {"type": "string"},
            "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"},
        },
        "x-kubernetes-group-version-kind": gvk(&list_kind),
    });
    let (g, v) = (leak(group), leak(version));
    [
        Definition {
            name: leak(name.clone()),
            group: g,
            version: v,
            kind: leak(kind),
            schema: leak(s.to_string()),
        },
        Definition {
            name: leak(format!("{name}List")),
            group: g,
            version: v,
            kind: leak(list_kind),
            schema: leak(list.to_string()),
        },
    ]
}

/// Interned descriptors, by the CRD content they were built from.
static INTERNED: Mutex<Option<HashMap<String, &'static ResourceKind>>> = Mutex::new(None);

/// The served versions of a CRD as descriptors (interned).
pub fn kinds_of(crd: &Value) -> Vec<&'static ResourceKind> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let crd_name = objects::name_of(crd).to_string();
    let mut versions: Vec<&Value> = spec["versions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|v| v["served"].as_bool() == Some(true))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|v| version_rank(v["name"].as_str().unwrap_or_default()));
    let mut out = Vec::new();
    let Ok(mut interned) = INTERNED.lock() else {
        return out;
    };
    let interned = interned.get_or_insert_with(HashMap::new);
    for (rank, ver) in versions.into_iter().enumerate() {
        let fingerprint = json!([crd_name, names, spec["scope"], ver, rank]).to_string();
        if let Some(k) = interned.get(&fingerprint) {
            out.push(*k);
            continue;
        }
        let version = ver["name"].as_str().unwrap_or_default();
        let subs = &ver["subresources"];
        let status = subs.get("status").is_some_and(Value::is_object);
        let scale = subs
            .get("scale")
            .filter(|s| s.is_object())
            .map(|s| ScalePaths {
                spec_replicas: pointer(s["specReplicasPath"].as_str().unwrap_or(".spec.replicas")),
                status_replicas: pointer(
                    s["statusReplicasPath"]
                        .as_str()
                        .unwrap_or(".status.replicas"),
                ),
                label_selector: s["labelSelectorPath"].as_str().map(pointer),
            });
        let subresources: &'static [Subresource] = match (status, scale.is_some()) {
            (true, true) => registry::STATUS_SCALE,
            (true, false) => registry::STATUS,
            (false, true) => &[Subresource::Scale],
            (false, false) => &[],
        };
        let schema = ver.pointer("/schema/openAPIV3Schema").cloned();
        let mut columns: Vec<PrinterColumn> = ver["additionalPrinterColumns"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| PrinterColumn {
                        name: c["name"].as_str().unwrap_or_default().to_string(),
                        ty: c["type"].as_str().unwrap_or("string").to_string(),
                        format: c["format"].as_str().unwrap_or_default().to_string(),
                        description: c["description"].as_str().unwrap_or_default().to_string(),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if columns.is_empty() {
            columns.push(PrinterColumn {
                name: "Age".into(),
                ty: "date".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            });
        }
        let custom: &'static CustomKind = Box::leak(Box::new(CustomKind {
            crd: crd_name.clone(),
            version_priority: rank as u32,
            definitions: definitions_for(group, version, kind, schema.as_ref()),
            schema,
            columns,
            scale,
        }));
        let singular = names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase());
        let mut rk = ResourceKind::new(
            leak(group),
            leak(version),
            leak(kind),
            leak(plural),
            leak(singular),
            spec["scope"].as_str() != Some("Cluster"),
        )
        .with_short_names(leak_list(names.get("shortNames")))
        .with_categories(leak_list(names.get("categories")))
        .with_subresources(subresources)
        .with_strategy(if status {
            Strategy::WithStatus
        } else {
            Strategy::Generic
        })
        .with_printer(Printer::Custom);
        rk.custom = Some(custom);
        let rk: &'static ResourceKind = Box::leak(Box::new(rk));
        interned.insert(fingerprint, rk);
        out.push(rk);
    }
    out
}

/// The storage version of a CRD.
fn storage_version(crd: &Value) -> Option<&str> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v["storage"].as_bool() == Some(true))?["name"]
        .as_str()
}

/// Validates a CRD (upstream's `ValidateCustomResourceDefinition`, the checks clients meet).
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    for (f, v) in [
        ("plural", plural),
        ("kind", names["kind"].as_str().unwrap_or_default()),
    ] {
        if v.is_empty() {
            errs.push(FieldError::required(format!("spec.names.{f}"), ""));
        }
    }
    for m in v::dns1123_label_errors(plural)
        .into_iter()
        .filter(|_| !plural.is_empty())
    {
        errs.push(FieldError::invalid("spec.names.plural", plural, m));
    }
    let name = objects::name_of(crd);
    if name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced" | "Cluster") => {}
        Some(s) => errs.push(FieldError::not_supported(
            "spec.scope",
            s,
            &["Cluster", "Namespaced"],
        )),
        None => errs.push(FieldError::required("spec.scope", "")),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!([]),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, ver) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        match ver.pointer("/schema/openAPIV3Schema") {
            None => errs.push(FieldError::required(
                format!("{path}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(s) => {
                let at = format!("{path}.schema.openAPIV3Schema");
                schema::check_structural(s, &at, true, &mut errs);
                cel::check_schema(s, &at, &mut errs, &mut Vec::new());
            }
        }
        for (j, c) in ver["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let jp = c["jsonPath"].as_str().unwrap_or_default();
            if !jsonpath::is_valid(jp) {
                errs.push(FieldError::invalid(
                    format!("{path}.additionalPrinterColumns[{j}].jsonPath"),
                    jp,
                    "must be a simple json path starting with .",
                ));
            }
        }
    }
    errs
}

/// Warnings for a CRD's CEL rules this server accepts but cannot enforce (they call a
/// function of upstream's CEL library the `cel` crate lacks).
pub fn cel_warnings(crd: &Value) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, ver) in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(s) = ver.pointer("/schema/openAPIV3Schema") {
            let at = format!("spec.versions[{i}].schema.openAPIV3Schema");
            cel::check_schema(s, &at, &mut Vec::new(), &mut warnings);
        }
    }
    warnings
}

/// The status a CRD gets once its names are accepted and its kinds are served.
fn established_status(crd: &Value, now: &str) -> Value {
    let names = &crd["spec"]["names"];
    let kind = names["kind"].as_str().unwrap_or_default();
    let mut accepted = names.clone();
    if accepted.get("singular").is_none() {
        accepted["singular"] = kind.to_lowercase().into();
    }
    if accepted.get("listKind").is_none() {
        accepted["listKind"] = format!("{kind}List").into();
    }
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = storage_version(crd).map(Value::from)
        && !stored.contains(&v)
    {
        stored.push(v);
    }
    let keep_time = |ty: &str| {
        crd.pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == ty && c["status"] == "True"))
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| now.into())
    };
    json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": keep_time("NamesAccepted"),
                "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": keep_time("Established"),
                "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "storedVersions": stored,
    })
}

impl Core {
    /// Serves a stored CRD's kinds and records so in its status.
    pub(crate) async fn establish(&self, crd: &Value) {
        let name = objects::name_of(crd).to_string();
        if crd.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        registry::set_custom_kinds(&name, kinds_of(crd));
        for _ in 0..8 {
            let Ok(Some((cur, rev))) = self
                .storage
                .get(&CUSTOMRESOURCEDEFINITIONS, None, &name)
                .await
            else {
                return;
            };
            let status = established_status(&cur, &self.now_str());
            if cur.get("status") == Some(&status) {
                return;
            }
            let mut new = cur.clone();
            new["status"] = status;
            match self
                .storage
                .update(&CUSTOMRESOURCEDEFINITIONS, None, &name, &new, rev)
                .await
            {
                Ok(Ok(_)) => return,
                Ok(Err(_)) => continue,
                Err(e) => {
                    tracing::warn!(crd = %name, error = %e, "establishing a CRD");
                    return;
                }
            }
        }
    }

    /// Establishes every stored CRD (at start).
    pub(crate) async fn establish_all(&self) -> Result<(), ApiError> {
        let page = self
            .storage
            .list(&CUSTOMRESOURCEDEFINITIONS.prefix(), 0, None, None, &|_| {
                true
            })
            .await?;
        for crd in page.items {
            self.establish(&crd).await;
        }
        Ok(())
    }

    /// Deletes every object of CRD `name` and stops serving its kinds (before the CRD
    /// itself is removed).
    pub(crate) async fn delete_custom_objects(&self, name: &str) -> Result<(), ApiError> {
        let kinds: Vec<&'static ResourceKind> = registry::custom_kinds()
            .into_iter()
            .filter(|k| k.custom.is_some_and(|c| c.crd == name))
            .collect();
        registry::set_custom_kinds(name, Vec::new());
        let Some(kind) = kinds.first() else {
            return Ok(());
        };
        loop {
            let page = self
                .storage
                .list_raw(&kind.prefix(), 500, None, None)
                .await?;
            if page.items.is_empty() {
                return Ok(());
            }
            for raw in page.items {
                let Ok(obj) = serde_json::from_slice::<Value>(&raw) else {
                    continue;
                };
                let ns = objects::meta_str(&obj, "namespace").map(str::to_string);
                let n = objects::name_of(&obj).to_string();
                let _ = self.storage.delete(kind, ns.as_deref(), &n, None).await?;
            }
        }
    }
}

/// Column definitions of a custom kind's Table: Name, then the CRD's columns.
pub fn column_definitions(c: &CustomKind) -> Value {
    let mut cols = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        "priority": 0})];
    for col in &c.columns {
        cols.push(
            json!({"name": col.name, "type": col.ty, "format": col.format,
            "description": col.description, "priority": col.priority}),
        );
    }
    Value::Array(cols)
}

/// The cells of one object (upstream's CRD table convertor).
pub fn cells(c: &CustomKind, o: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut out = vec![Value::from(objects::name_of(o))];
    for col in &c.columns {
        let Some(v) = jsonpath::first(o, &col.json_path).filter(|v| !v.is_null()) else {
            out.push(Value::Null);
            continue;
        };
        let cell = match (col.ty.as_str(), v) {
            ("string", Value::String(s)) => Value::from(s.clone()),
            ("string", other) => Value::from(other.to_string()),
            ("integer", Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(Value::Null, Value::from),
            ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
            ("boolean", Value::Bool(b)) => Value::from(*b),
            ("date", Value::String(s)) => match objects::parse_time(s) {
                Some(t) => Value::from(crate::table::human_duration_nanos(
                    now.as_nanosecond() - t.as_nanosecond(),
                )),
                None => Value::from("<invalid>"),
            },
            _ => Value::Null,
        };
        out.push(cell);
    }
    out
}

/// The `None` conversion: an object of a custom kind read through `kind`'s version (all
/// versions of a CRD share one storage) only takes that version's `apiVersion`.
pub fn convert(kind: &ResourceKind, v: &mut Value) {
    if kind.custom.is_none() {
        return;
    }
    if let Some(m) = v.as_object_mut()
        && m.get("apiVersion").and_then(Value::as_str) != Some(&kind.api_version())
    {
        m.insert("apiVersion".into(), kind.api_version().into());
    }
}

/// Prunes an object of a custom kind (the "typed round trip" of custom kinds).
pub fn prune(kind: &ResourceKind, mut v: Value) -> Value {
    if let Some(s) = kind.custom.and_then(|c| c.schema.as_ref()) {
        schema::prune(s, &mut v, true, "", &mut Vec::new());
    }
    v
}

/// Defaults an object of a custom kind.
pub fn default_object(kind: &ResourceKind, v: &mut Value) {
    if let Some(s) = kind.custom.and_then(|c| c.schema.as_ref()) {
        schema::prune(s, v, true, "", &mut Vec::new());
        schema::default(s, v);
    }
}

/// Validates an object of a custom kind against its schema, then (when the schema is
/// valid) its CEL rules, with `old` the stored object on update.
pub fn validate_object(kind: &ResourceKind, v: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(s) = kind.custom.and_then(|c| c.schema.as_ref()) {
        schema::validate(s, v, "", &mut errs);
        if errs.is_empty() {
            errs = cel::validate_object(s, v, old);
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1beta1", "v1", "v2alpha1", "v2", "foo", "v1beta2"];
        v.sort_by_key(|x| version_rank(x));
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1beta1", "v2alpha1", "foo"]);
        assert_eq!(
            definition_name("cert-manager.io", "v1", "Certificate"),
            "io.cert-manager.v1.Certificate"
        );
        assert_eq!(pointer(".spec.replicas"), "/spec/replicas");
    }
}
