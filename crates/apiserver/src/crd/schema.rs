//! Structural schemas of custom resources: validation with upstream's messages
//! (kube-openapi's validator as the API server reports it), pruning of unknown fields and
//! defaulting, following the `x-kubernetes-*` extensions: `preserve-unknown-fields`,
//! `int-or-string`, `embedded-resource`, `list-type` (`set`, `map` with
//! `list-map-keys`).

use podvisor_api::validation::FieldError;
use serde_json::{Map, Value};

fn ext<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s.get(name)
}

fn flag(s: &Value, name: &str) -> bool {
    ext(s, name).and_then(Value::as_bool) == Some(true)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => f.to_string(),
        None => v.to_string(),
    }
}

/// Validates `v` at `path` against `schema`, appending errors.
pub fn validate(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if flag(schema, "x-kubernetes-int-or-string") {
        let allowed = matches!(type_name(v), "integer" | "string")
            || (v.is_null() && flag(schema, "nullable"));
        if !allowed {
            errs.push(FieldError::invalid(
                path,
                type_name(v),
                format!(
                    "{path} in body must be of type integer-or-string: {:?}",
                    type_name(v)
                ),
            ));
        }
        return;
    }
    if v.is_null() {
        if !flag(schema, "nullable")
            && let Some(t) = schema.get("type").and_then(Value::as_str)
        {
            errs.push(FieldError::invalid(
                path,
                "null",
                format!("{path} in body must be of type {t}: \"null\""),
            ));
        }
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = actual == t || (t == "number" && actual == "integer");
        if !ok {
            errs.push(FieldError::invalid(
                path,
                actual,
                format!("{path} in body must be of type {t}: {actual:?}"),
            ));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        let supported: Vec<String> = e
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let refs: Vec<&str> = supported.iter().map(String::as_str).collect();
        errs.push(FieldError::not_supported(path, v.clone(), &refs));
    }
    match v {
        Value::Number(_) => validate_number(schema, v, path, errs),
        Value::String(s) => validate_string(schema, s, path, errs),
        Value::Array(a) => validate_array(schema, a, path, errs),
        Value::Object(m) => validate_object(schema, m, path, errs),
        _ => {}
    }
}

fn validate_number(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let x = v.as_f64().unwrap_or(0.0);
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMaximum");
        if x > max || (exclusive && x == max) {
            let rel = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body should be {rel} {}", num(&schema["maximum"])),
            ));
        }
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMinimum");
        if x < min || (exclusive && x == min) {
            let rel = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body should be {rel} {}", num(&schema["minimum"])),
            ));
        }
    }
    if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
        && m > 0.0
        && (x / m).fract() != 0.0
    {
        errs.push(FieldError::invalid(
            path,
            v.clone(),
            format!(
                "{path} in body should be a multiple of {}",
                num(&schema["multipleOf"])
            ),
        ));
    }
}

fn validate_string(schema: &Value, s: &str, path: &str, errs: &mut Vec<FieldError>) {
    let len = s.chars().count();
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len as u64 > max
    {
        errs.push(FieldError::too_long(path, max as usize));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && (len as u64) < min
    {
        errs.push(FieldError::invalid(
            path,
            s,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        let re = regex::RegexBuilder::new(p).size_limit(1 << 20).build();
        if let Ok(re) = re
            && !re.is_match(s)
        {
            errs.push(FieldError::invalid(
                path,
                s,
                format!("{path} in body should match '{p}'"),
            ));
        }
    }
}

fn validate_array(schema: &Value, a: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && a.len() as u64 > max
    {
        errs.push(FieldError::too_many(path, a.len(), max as usize));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (a.len() as u64) < min
    {
        errs.push(FieldError::invalid(
            path,
            a.len(),
            format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(items) = schema.get("items") {
        for (i, item) in a.iter().enumerate() {
            validate(items, item, &format!("{path}[{i}]"), errs);
        }
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in a.iter().enumerate() {
                if a[..i].contains(item) {
                    errs.push(FieldError::duplicate(format!("{path}[{i}]"), item.clone()));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Value {
                let mut m = Map::new();
                for k in &keys {
                    if let Some(v) = item.get(*k) {
                        m.insert((*k).to_string(), v.clone());
                    }
                }
                Value::Object(m)
            };
            for (i, item) in a.iter().enumerate() {
                let k = key_of(item);
                if a[..i].iter().any(|o| key_of(o) == k) {
                    errs.push(FieldError::duplicate(format!("{path}[{i}]"), k));
                }
            }
        }
        _ => {}
    }
}

fn validate_object(schema: &Value, m: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if m.get(r).is_none() {
                errs.push(FieldError::required(child(path, r), ""));
            }
        }
    }
    if flag(schema, "x-kubernetes-embedded-resource") {
        for f in ["apiVersion", "kind"] {
            if m.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                errs.push(FieldError::required(child(path, f), "must not be empty"));
            }
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && m.len() as u64 > max
    {
        errs.push(FieldError::too_many(path, m.len(), max as usize));
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, v) in m {
        // The root's and embedded objects' metadata is validated as ObjectMeta.
        if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match (props.and_then(|p| p.get(k)), additional) {
            (Some(s), _) => validate(s, v, &child(path, k), errs),
            (None, Some(a)) => validate(a, v, &child(path, k), errs),
            _ => {}
        }
    }
}

/// Drops the fields `schema` does not declare (unless it preserves unknown fields);
/// `root` keeps `apiVersion`, `kind` and `metadata`. Returns the pruned paths.
pub fn prune(schema: &Value, v: &mut Value, root: bool, path: &str, pruned: &mut Vec<String>) {
    if flag(schema, "x-kubernetes-preserve-unknown-fields") && schema.get("properties").is_none() {
        return;
    }
    match v {
        Value::Object(m) => {
            let keep_all = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let p = child(path, &k);
                match (props.and_then(|p| p.get(&k)), additional) {
                    (Some(s), _) => {
                        if let Some(x) = m.get_mut(&k) {
                            prune(s, x, false, &p, pruned);
                        }
                    }
                    (None, Some(a)) if a.is_object() => {
                        if let Some(x) = m.get_mut(&k) {
                            prune(a, x, false, &p, pruned);
                        }
                    }
                    (None, Some(Value::Bool(true))) => {}
                    _ if keep_all => {}
                    _ => {
                        m.remove(&k);
                        pruned.push(p);
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter_mut().enumerate() {
                    prune(items, x, false, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Sets the `default` of every declared field missing from `v`, depth first.
pub fn default(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if !m.contains_key(k)
                        && let Some(d) = s.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                    if let Some(x) = m.get_mut(k) {
                        default(s, x);
                    }
                }
            }
            if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for x in m.values_mut() {
                    default(a, x);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for x in a.iter_mut() {
                    default(items, x);
                }
            }
        }
        _ => {}
    }
}

/// The structural-schema errors of a CRD version's `openAPIV3Schema` (at `path`): every
/// specified field has a type unless it is int-or-string or preserves unknown fields.
pub fn check_structural(schema: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    let typed = schema
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !typed
        && !flag(schema, "x-kubernetes-int-or-string")
        && !flag(schema, "x-kubernetes-preserve-unknown-fields")
    {
        errs.push(FieldError::required(
            format!("{path}.type"),
            "must not be empty for specified object fields",
        ));
    }
    if root
        && schema
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "object")
    {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            schema["type"].clone(),
            "must be object at the root",
        ));
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            check_structural(s, &format!("{path}.properties[{k}]"), false, errs);
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        check_structural(items, &format!("{path}.items"), false, errs);
    }
    if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        check_structural(a, &format!("{path}.additionalProperties"), false, errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(schema: Value, v: Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate(&schema, &v, "", &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn messages_follow_upstream() {
        let s = json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object",
            "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
            "name": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "port": {"x-kubernetes-int-or-string": true},
            "tags": {"type": "array", "maxItems": 1, "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}}});
        assert_eq!(errors(s.clone(), json!({})), ["spec: Required value"]);
        let e = errors(
            s.clone(),
            json!({"spec": {"size": "x", "name": "ABCD", "mode": "c", "port": true, "tags": ["x", "x"]}}),
        );
        assert_eq!(
            e,
            [
                r#"spec.mode: Unsupported value: "c": supported values: "a", "b""#,
                r#"spec.name: Too long: may not be more than 3 bytes"#,
                r#"spec.name: Invalid value: "ABCD": spec.name in body should match '^[a-z]+$'"#,
                r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer-or-string: "boolean""#,
                r#"spec.size: Invalid value: "string": spec.size in body must be of type integer: "string""#,
                r#"spec.tags: Too many: 2: must have at most 1 items"#,
                r#"spec.tags[1]: Duplicate value: "x""#,
            ]
        );
        assert_eq!(
            errors(s, json!({"spec": {"size": 11}})),
            ["spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"]
        );
    }

    #[test]
    fn pruning_keeps_declared_and_preserved_fields_and_defaults_fill_in() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "a": {"type": "string", "default": "x"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}});
        let mut v = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"b": 1, "free": {"any": {"thing": 1}}, "labels": {"k": "v"}}, "extra": true});
        let mut pruned = Vec::new();
        prune(&s, &mut v, true, "", &mut pruned);
        default(&s, &mut v);
        pruned.sort();
        assert_eq!(pruned, ["extra", "spec.b"]);
        assert_eq!(v["spec"]["a"], "x");
        assert_eq!(v["spec"]["free"]["any"]["thing"], 1);
        assert_eq!(v["metadata"]["name"], "n");
    }
}
