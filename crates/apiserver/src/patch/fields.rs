//! Field sets: which fields of an object a manager owns, in the `FieldsV1` format of
//! `metadata.managedFields` (structured-merge-diff).
//!
//! A set is a tree of path elements, each written as in `FieldsV1`:
//! `f:<field>`, `k:<json object of list-map keys>`, `v:<json value>` (set element) and
//! `i:<index>`. A node is a *member* when the path itself is owned (a leaf value, a list
//! item, an atomic value); in JSON a member with children carries `".": {}`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub(crate) fn new() -> FieldSet {
        FieldSet::default()
    }

    /// Whether no path is a member.
    pub(crate) fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds `path` as a member.
    pub(crate) fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for pe in path {
            // Allocate the element only for a new node: inserts mostly hit existing ones.
            if !node.children.contains_key(pe) {
                node.children.insert(pe.clone(), FieldSet::default());
            }
            let Some(child) = node.children.get_mut(pe) else {
                return;
            };
            node = child;
        }
        node.member = true;
    }

    /// Whether `path` is a member.
    #[cfg(test)]
    pub(crate) fn contains(&self, path: &[String]) -> bool {
        let mut node = self;
        for pe in path {
            match node.children.get(pe) {
                Some(n) => node = n,
                None => return false,
            }
        }
        node.member
    }

    /// Every member path, depth first in element order.
    pub(crate) fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Members of either set.
    pub(crate) fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_in_place(other);
        out
    }

    fn union_in_place(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, child) in &other.children {
            self.children
                .entry(pe.clone())
                .or_default()
                .union_in_place(child);
        }
    }

    /// Members of `self` that are not members of `other`.
    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            let c = match other.children.get(pe) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if !c.is_empty() {
                out.children.insert(pe.clone(), c);
            }
        }
        out
    }

    /// Members of both sets.
    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let c = child.intersection(o);
                if !c.is_empty() {
                    out.children.insert(pe.clone(), c);
                }
            }
        }
        out
    }

    /// Removes `path` (the member flag only; children stay).
    pub(crate) fn remove_member(&mut self, path: &[String]) {
        fn go(node: &mut FieldSet, path: &[String]) {
            match path.split_first() {
                None => node.member = false,
                Some((pe, rest)) => {
                    if let Some(child) = node.children.get_mut(pe) {
                        go(child, rest);
                        if child.is_empty() {
                            node.children.remove(pe);
                        }
                    }
                }
            }
        }
        go(self, path);
    }

    /// The `FieldsV1` JSON of the set.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            if !child.is_empty() {
                m.insert(pe.clone(), child.to_json());
            }
        }
        Value::Object(m)
    }

    /// Parses `FieldsV1` JSON.
    pub(crate) fn from_json(v: &Value) -> Result<FieldSet, String> {
        fn node(v: &Value, depth: usize) -> Result<FieldSet, String> {
            if depth > 256 {
                return Err("fieldsV1 nested too deeply".to_string());
            }
            let Value::Object(m) = v else {
                return Err(format!("fieldsV1 node must be an object, got {v}"));
            };
            let mut out = FieldSet {
                member: m.is_empty(),
                children: BTreeMap::new(),
            };
            for (k, child) in m {
                if k == "." {
                    out.member = true;
                    continue;
                }
                let valid = match k.split_at_checked(2) {
                    Some(("f:", _)) => true,
                    Some(("k:", rest)) => {
                        serde_json::from_str::<Value>(rest).is_ok_and(|v| v.is_object())
                    }
                    Some(("v:", rest)) => serde_json::from_str::<Value>(rest).is_ok(),
                    Some(("i:", rest)) => rest.parse::<usize>().is_ok(),
                    _ => false,
                };
                if !valid {
                    return Err(format!("invalid fieldsV1 path element {k:?}"));
                }
                out.children.insert(k.clone(), node(child, depth + 1)?);
            }
            Ok(out)
        }
        match v {
            Value::Object(m) if m.is_empty() => Ok(FieldSet::new()),
            _ => node(v, 0),
        }
    }
}

/// The path element of a field.
pub(crate) fn field(name: &str) -> String {
    format!("f:{name}")
}

/// A path in upstream's display form: `.spec.containers[name="main"].image`.
pub(crate) fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            s.push('[');
            if let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(k) {
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&parts.join(","));
            }
            s.push(']');
        } else if let Some(v) = pe.strip_prefix("v:") {
            s.push_str("[=");
            s.push_str(v);
            s.push(']');
        } else if let Some(i) = pe.strip_prefix("i:") {
            s.push('[');
            s.push_str(i);
            s.push(']');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(elems: &[&str]) -> Vec<String> {
        elems.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn json_round_trip_keeps_members_with_children() {
        let v = json!({"f:metadata":{"f:labels":{"f:app":{}}},
                       "f:spec":{"f:containers":{"k:{\"name\":\"main\"}":{".":{},"f:image":{}}}}});
        let s = FieldSet::from_json(&v).unwrap();
        assert!(s.contains(&p(&["f:metadata", "f:labels", "f:app"])));
        assert!(s.contains(&p(&["f:spec", "f:containers", "k:{\"name\":\"main\"}"])));
        assert!(!s.contains(&p(&["f:spec", "f:containers"])));
        assert_eq!(s.to_json(), v);
    }

    #[test]
    fn invalid_elements_are_rejected() {
        assert!(FieldSet::from_json(&json!({"x:y":{}})).is_err());
        assert!(FieldSet::from_json(&json!({"k:notjson":{}})).is_err());
        assert!(FieldSet::from_json(&json!({"f:a": 3})).is_err());
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&p(&["f:spec", "f:replicas"]));
        a.insert(&p(&["f:spec", "f:paused"]));
        let mut b = FieldSet::new();
        b.insert(&p(&["f:spec", "f:replicas"]));
        assert_eq!(a.intersection(&b), b);
        let d = a.difference(&b);
        assert_eq!(d.paths(), vec![p(&["f:spec", "f:paused"])]);
        assert_eq!(d.union(&b), a);
        assert!(b.difference(&a).is_empty());
    }

    #[test]
    fn display_paths_like_upstream() {
        assert_eq!(path_string(&p(&["f:spec", "f:replicas"])), ".spec.replicas");
        assert_eq!(
            path_string(&p(&[
                "f:spec",
                "f:containers",
                "k:{\"name\":\"main\"}",
                "f:image"
            ])),
            ".spec.containers[name=\"main\"].image"
        );
        assert_eq!(
            path_string(&p(&["f:metadata", "f:finalizers", "v:\"x\""])),
            ".metadata.finalizers[=\"x\"]"
        );
    }
}
