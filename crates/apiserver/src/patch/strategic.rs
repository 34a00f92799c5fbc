//! Strategic merge patch (`application/strategic-merge-patch+json`), as upstream's
//! apimachinery `strategicpatch` applies it on the server (`MergeParallelList` and
//! `IgnoreUnmatchedNulls` on).
//!
//! Rules:
//! - maps merge recursively; `null` deletes a key (and is dropped where nothing matched);
//! - lists merge according to [`super::schema::list_type`]: lists of objects with a merge
//!   key merge element by element, sets of scalars are unioned, every other list is replaced;
//! - directives: `$patch: replace|delete` in a map, `{"$patch": "delete", <key>: …}` and
//!   `{"$patch": "replace"}` in a list, `$deleteFromPrimitiveList/<list>`,
//!   `$setElementOrder/<list>` (final order: the order list, then the live order for
//!   server-only items) and `$retainKeys` (keys not listed are cleared from the live map).

use serde_json::{Map, Value};

use super::PatchError;
use super::schema::{ListType, list_type};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `original` (an object of `kind`).
pub(crate) fn apply(kind: &str, original: Value, patch: Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::bad_request(
            "error decoding patch: a strategic merge patch must be a JSON object",
        ));
    };
    let original = match original {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut merger = Merger {
        kind,
        path: Vec::new(),
    };
    Ok(Value::Object(merger.merge_map(original, patch)?))
}

struct Merger<'a> {
    kind: &'a str,
    /// Field names from the root, list items skipped.
    path: Vec<String>,
}

fn bad_patch_type(directive: &Value) -> PatchError {
    PatchError::bad_request(format!("Unknown patch type: {directive}"))
}

fn no_merge_key(item: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::bad_request(format!(
        "map: {} does not contain declared merge key: {key}",
        Value::Object(item.clone())
    ))
}

impl Merger<'_> {
    fn list_type(&self, field: &str) -> ListType {
        let mut path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        path.push(field);
        list_type(self.kind, &path)
    }

    fn merge_map(
        &mut self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(directive) = patch.remove(DIRECTIVE) {
            return match directive.as_str() {
                Some("replace") => self.clean_map(patch),
                Some("delete") => Ok(Map::new()),
                Some("merge") => self.merge_map(original, patch),
                _ => Err(bad_patch_type(&directive)),
            };
        }
        if let Some(retain) = patch.remove(RETAIN_KEYS) {
            apply_retain_keys(&mut original, &patch, &retain)?;
        }
        self.merge_element_orders(&mut original, &mut patch)?;

        for (key, patch_value) in patch {
            if let Some(list) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                let Value::Array(to_delete) = patch_value else {
                    return Err(PatchError::bad_request(
                        "invalid patch format of primitive list",
                    ));
                };
                if let Some(Value::Array(items)) = original.get_mut(list) {
                    items.retain(|v| !to_delete.contains(v));
                }
                continue;
            }
            if key.starts_with(SET_ELEMENT_ORDER) {
                // Processed by merge_element_orders; left here only when neither the live
                // object nor the patch has the list.
                continue;
            }
            if key.starts_with('$') {
                return Err(PatchError::bad_request(format!(
                    "unknown strategic merge patch directive {key:?}"
                )));
            }
            if patch_value.is_null() {
                original.remove(&key);
                continue;
            }
            let merged = match original.remove(&key) {
                Some(Value::Object(o)) if patch_value.is_object() => {
                    let Value::Object(p) = patch_value else {
                        unreachable!("checked is_object")
                    };
                    self.path.push(key.clone());
                    let r = self.merge_map(o, p);
                    self.path.pop();
                    Value::Object(r?)
                }
                Some(Value::Array(o)) if patch_value.is_array() => {
                    let Value::Array(p) = patch_value else {
                        unreachable!("checked is_array")
                    };
                    let list_type = self.list_type(&key);
                    self.path.push(key.clone());
                    let r = self.merge_list(o, p, list_type);
                    self.path.pop();
                    Value::Array(r?)
                }
                _ => {
                    self.path.push(key.clone());
                    let r = self.clean(patch_value, &key);
                    self.path.pop();
                    r?
                }
            };
            original.insert(key, merged);
        }
        Ok(original)
    }

    /// A patch value that matched nothing in the live object: directives are resolved and
    /// nulls dropped, as if merged into an empty value. `self.path` ends with `field`.
    fn clean(&mut self, value: Value, field: &str) -> Result<Value, PatchError> {
        match value {
            Value::Object(m) => Ok(Value::Object(self.clean_map(m)?)),
            Value::Array(items) => {
                self.path.pop();
                let list_type = self.list_type(field);
                self.path.push(field.to_string());
                Ok(Value::Array(self.merge_list(
                    Vec::new(),
                    items,
                    list_type,
                )?))
            }
            v => Ok(v),
        }
    }

    fn clean_map(&mut self, m: Map<String, Value>) -> Result<Map<String, Value>, PatchError> {
        self.merge_map(Map::new(), m)
    }

    fn merge_list(
        &mut self,
        original: Vec<Value>,
        patch: Vec<Value>,
        list_type: ListType,
    ) -> Result<Vec<Value>, PatchError> {
        match list_type {
            ListType::Atomic => Ok(patch),
            ListType::Set => {
                if patch.iter().chain(original.iter()).any(|v| v.is_object()) {
                    // A list of maps where the schema has scalars: upstream requires a
                    // merge key, which a set does not have.
                    return Err(PatchError::bad_request(format!(
                        "cannot merge lists without merge key for {}",
                        self.path.join(".")
                    )));
                }
                let mut out: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
                for v in original.into_iter().chain(patch) {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                Ok(out)
            }
            ListType::Map { merge_key, .. } => self.merge_object_list(original, patch, merge_key),
        }
    }

    fn merge_object_list(
        &mut self,
        mut original: Vec<Value>,
        patch: Vec<Value>,
        key: &str,
    ) -> Result<Vec<Value>, PatchError> {
        if patch.iter().any(|v| !v.is_object()) {
            return Err(PatchError::bad_request(format!(
                "patch for list {} must be a list of objects",
                self.path.join(".")
            )));
        }
        let mut plain = Vec::with_capacity(patch.len());
        let mut replace = false;
        for item in patch {
            let Value::Object(mut m) = item else {
                continue;
            };
            match m.get(DIRECTIVE).cloned() {
                None => plain.push(m),
                Some(d) => match d.as_str() {
                    Some("delete") => {
                        let Some(k) = m.get(key) else {
                            return Err(no_merge_key(&m, key));
                        };
                        original.retain(|o| o.get(key) != Some(k));
                    }
                    Some("replace") => replace = true,
                    Some("merge") => {
                        m.remove(DIRECTIVE);
                        plain.push(m);
                    }
                    _ => return Err(bad_patch_type(&d)),
                },
            }
        }
        if replace {
            original = Vec::new();
        }
        for item in plain {
            let Some(k) = item.get(key).cloned() else {
                return Err(no_merge_key(&item, key));
            };
            match original.iter().position(|o| o.get(key) == Some(&k)) {
                Some(i) => {
                    let o = match std::mem::take(&mut original[i]) {
                        Value::Object(o) => o,
                        _ => Map::new(),
                    };
                    original[i] = Value::Object(self.merge_map(o, item)?);
                }
                None => original.push(Value::Object(self.clean_map(item)?)),
            }
        }
        Ok(original)
    }

    /// Processes every `$setElementOrder/<list>` of `patch` together with `<list>`, and
    /// removes both from `patch`.
    fn merge_element_orders(
        &mut self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
    ) -> Result<(), PatchError> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for directive_key in keys {
            let field = directive_key[SET_ELEMENT_ORDER.len()..].to_string();
            let Some(Value::Array(order)) = patch.remove(&directive_key) else {
                return Err(PatchError::bad_request(
                    "invalid patch format of setElementOrder list",
                ));
            };
            let list_type = self.list_type(&field);
            let merge_key = match list_type {
                ListType::Map { merge_key, .. } => Some(merge_key),
                _ => None,
            };
            if let Some(k) = merge_key
                && order.iter().any(|o| o.get(k).is_none())
            {
                return Err(PatchError::bad_request(format!(
                    "$setElementOrder/{field} elements must contain the merge key {k}"
                )));
            }
            let patch_list = match patch.remove(&field) {
                Some(Value::Array(p)) => Some(p),
                Some(Value::Null) => {
                    original.remove(&field);
                    continue;
                }
                Some(other) => {
                    // Not a list: merged normally later.
                    patch.insert(field, other);
                    continue;
                }
                None => None,
            };
            let original_list = match original.get(&field) {
                Some(Value::Array(o)) => Some(o.clone()),
                _ => None,
            };
            self.path.push(field.clone());
            let merged = match (&original_list, patch_list) {
                (None, None) => {
                    self.path.pop();
                    continue;
                }
                (None, Some(p)) => self.merge_list(Vec::new(), p, list_type),
                (Some(o), None) => Ok(o.clone()),
                (Some(o), Some(p)) => self.merge_list(o.clone(), p, list_type),
            };
            self.path.pop();
            let merged = merged?;
            let server_order = original_list.unwrap_or_default();
            let (mut in_patch, mut server_only): (Vec<Value>, Vec<Value>) = merged
                .into_iter()
                .partition(|item| index_of(&order, item, merge_key).is_some());
            sort_by_order(&mut in_patch, &order, merge_key);
            sort_by_order(&mut server_only, &server_order, merge_key);
            let both = merge_sorted(server_only, in_patch, &server_order, merge_key);
            original.insert(field, Value::Array(both));
        }
        Ok(())
    }
}

/// Where `item` sits in `list`, matching maps by `merge_key` and scalars by value.
fn index_of(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    match merge_key {
        Some(k) => {
            let v = item.get(k)?;
            list.iter().position(|o| o.get(k) == Some(v))
        }
        None => list.iter().position(|o| o == item),
    }
}

fn sort_by_order(items: &mut [Value], order: &[Value], merge_key: Option<&str>) {
    items.sort_by_key(|item| index_of(order, item, merge_key).unwrap_or(usize::MAX));
}

/// Interleaves two lists, each already in its own order: `left` items go before the first
/// `right` item that the live order puts after them.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let li = index_of(server_order, l, merge_key);
                let ri = index_of(server_order, r, merge_key);
                match (li, ri) {
                    (Some(li), Some(ri)) if li < ri => out.extend(left.next()),
                    _ => out.extend(right.next()),
                }
            }
        }
    }
    out
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
) -> Result<(), PatchError> {
    let Value::Array(retain) = retain else {
        return Err(PatchError::bad_request(
            "invalid patch format of retainKeys",
        ));
    };
    let keep = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !keep(k) {
            return Err(PatchError::bad_request(
                "invalid patch format of retainKeys",
            ));
        }
    }
    original.retain(|k, _| keep(k));
    Ok(())
}
