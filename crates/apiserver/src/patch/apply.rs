//! Server-side apply and managed-fields bookkeeping (structured-merge-diff semantics).
//!
//! Every object carries `metadata.managedFields`: one entry per (manager, operation,
//! apiVersion for updates, subresource), each owning a [`FieldSet`]. Two operations change
//! ownership:
//!
//! - **Apply** ([`server_side_apply`]): the applied configuration is merged over the live
//!   object (maps by key, list-maps by their keys, sets by value, other lists replaced);
//!   the applier's entry becomes exactly the fields of the configuration; fields the
//!   applier owned last time, left out now and owned by nobody else are removed; changing
//!   a field another manager owns is a conflict (409) unless `force`, which takes the field
//!   over. `kubectl` (the manager name of `kubectl apply --server-side`) may take over
//!   fields recorded in the client-side `last-applied-configuration` annotation without
//!   `force`, and keeps that annotation in sync, as upstream does.
//! - **Update** ([`record_update`]): create, update and non-apply patches. The updater
//!   gains every field it added or changed and takes it from everyone else; removed fields
//!   leave every set.
//!
//! Identity fields (`apiVersion`, `kind`, `metadata.name`, `uid`, `resourceVersion`, …) are
//! never owned. An object without managed fields that is applied to gets a
//! `before-first-apply` entry owning what was there, so the first applier cannot silently
//! take fields it never set.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::fields::{FieldSet, field, path_string};
use super::schema::{ListType, atomic_struct, key_default, list_type};
use super::{ConflictCause, PatchError};
use crate::registry::{ResourceKind, Subresource};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const ANCIENT_CHANGES: &str = "ancient-changes";
const MAX_UPDATE_MANAGERS: usize = 10;

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
struct Manager {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: String,
    set: FieldSet,
}

impl Manager {
    fn is_apply(&self) -> bool {
        self.operation == "Apply"
    }

    fn same_identity(&self, other: &Manager) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.is_apply() || self.api_version == other.api_version)
    }

    /// How upstream names a manager in conflict messages.
    fn display(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if !self.is_apply() {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::from(self.manager.clone()));
        m.insert("operation".into(), Value::from(self.operation.clone()));
        m.insert("apiVersion".into(), Value::from(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::from(t.clone()));
        }
        m.insert("fieldsType".into(), Value::from("FieldsV1"));
        m.insert("fieldsV1".into(), self.set.to_json());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), Value::from(self.subresource.clone()));
        }
        Value::Object(m)
    }
}

fn decode_managers(entries: &Value) -> Result<Vec<Manager>, String> {
    let Value::Array(entries) = entries else {
        return Err("metadata.managedFields must be a list".to_string());
    };
    let mut out: Vec<Manager> = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Object(e) = e else {
            return Err("metadata.managedFields entries must be objects".to_string());
        };
        let s = |k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let set = match e.get("fieldsV1") {
            Some(v) => FieldSet::from_json(v)?,
            None => FieldSet::new(),
        };
        match e.get("fieldsType").and_then(Value::as_str) {
            Some("FieldsV1") | None => {}
            Some(other) => return Err(format!("unsupported fieldsType {other:?}")),
        }
        let m = Manager {
            manager: s("manager"),
            operation: s("operation"),
            api_version: s("apiVersion"),
            time: e.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: s("subresource"),
            set,
        };
        if m.operation != "Apply" && m.operation != "Update" {
            return Err(format!("invalid managedFields operation {:?}", m.operation));
        }
        match out.iter_mut().find(|o| o.same_identity(&m)) {
            Some(o) => o.set = o.set.union(&m.set),
            None => out.push(m),
        }
    }
    Ok(out)
}

fn encode_managers(mut managers: Vec<Manager>) -> Value {
    cap_update_managers(&mut managers);
    managers.retain(|m| !m.set.is_empty());
    managers.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| a.time.cmp(&b.time))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    Value::Array(managers.iter().map(Manager::to_json).collect())
}

/// Keeps at most [`MAX_UPDATE_MANAGERS`] update entries by folding the oldest into
/// `ancient-changes`, as upstream does.
fn cap_update_managers(managers: &mut Vec<Manager>) {
    loop {
        let updates: Vec<usize> = (0..managers.len())
            .filter(|&i| !managers[i].is_apply() && managers[i].manager != ANCIENT_CHANGES)
            .collect();
        let ancient = managers.iter().position(|m| m.manager == ANCIENT_CHANGES);
        if updates.len() + usize::from(ancient.is_some()) <= MAX_UPDATE_MANAGERS {
            return;
        }
        let Some(&oldest) = updates
            .iter()
            .min_by(|&&a, &&b| managers[a].time.cmp(&managers[b].time))
        else {
            return;
        };
        let old = managers.remove(oldest);
        match managers.iter_mut().find(|m| m.manager == ANCIENT_CHANGES) {
            Some(a) => a.set = a.set.union(&old.set),
            None => managers.push(Manager {
                manager: ANCIENT_CHANGES.to_string(),
                operation: "Update".to_string(),
                api_version: old.api_version,
                time: old.time,
                subresource: String::new(),
                set: old.set,
            }),
        }
    }
}

/// Fields no manager ever owns (upstream's strip-meta manager).
fn strip_meta(set: &mut FieldSet) {
    for path in [
        &["f:apiVersion"][..],
        &["f:kind"],
        &["f:metadata"],
        &["f:metadata", "f:name"],
        &["f:metadata", "f:namespace"],
        &["f:metadata", "f:creationTimestamp"],
        &["f:metadata", "f:selfLink"],
        &["f:metadata", "f:uid"],
        &["f:metadata", "f:clusterName"],
        &["f:metadata", "f:generation"],
        &["f:metadata", "f:managedFields"],
        &["f:metadata", "f:resourceVersion"],
    ] {
        let p: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        set.remove_member(&p);
    }
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    v
}

/// The path elements of the items of a list, or `None` for atomic lists. Items whose keys
/// cannot be computed (malformed live data) are identified by index.
fn list_elements(ty: ListType, items: &[Value]) -> Vec<String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| element_of(ty, item).unwrap_or_else(|_| format!("i:{i}")))
        .collect()
}

/// The path element of one list item.
fn element_of(ty: ListType, item: &Value) -> Result<String, String> {
    match ty {
        ListType::Atomic => Err("atomic lists have no elements".to_string()),
        ListType::Set => {
            if item.is_object() || item.is_array() {
                return Err("a set may only hold scalars".to_string());
            }
            Ok(format!("v:{item}"))
        }
        ListType::Map { keys, .. } => {
            let Value::Object(obj) = item else {
                return Err("associative list items must be objects".to_string());
            };
            let mut k = Map::new();
            for key in keys {
                match obj
                    .get(*key)
                    .filter(|v| !v.is_null())
                    .cloned()
                    .or_else(|| key_default(key))
                {
                    Some(v) => {
                        k.insert(key.to_string(), v);
                    }
                    None => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {key:?}"
                        ));
                    }
                }
            }
            Ok(format!("k:{}", Value::Object(k)))
        }
    }
}

struct Walker<'a> {
    kind: &'a str,
    /// Field names from the root (list items skipped), for schema lookups.
    spath: Vec<String>,
    /// Path elements from the root.
    path: Vec<String>,
}

impl<'a> Walker<'a> {
    fn new(kind: &'a str) -> Walker<'a> {
        Walker {
            kind,
            spath: Vec::new(),
            path: Vec::new(),
        }
    }

    fn schema_path(&self) -> Vec<&str> {
        self.spath.iter().map(String::as_str).collect()
    }

    fn list_type(&self) -> ListType {
        list_type(self.kind, &self.schema_path())
    }

    fn atomic_struct(&self) -> bool {
        // Every atomic struct of the served kinds sits at depth 2 (`spec.selector`).
        self.spath.len() == 2 && atomic_struct(self.kind, &self.schema_path())
    }

    fn push_field(&mut self, name: &str) {
        self.spath.push(name.to_string());
        self.path.push(field(name));
    }

    fn pop_field(&mut self) {
        self.spath.pop();
        self.path.pop();
    }

    fn invalid(&self, msg: impl std::fmt::Display) -> PatchError {
        PatchError::invalid(format!("{}: {msg}", path_string(&self.path)))
    }

    /// The fields an applied configuration sets (upstream `ToFieldSet`).
    fn field_set(&mut self, v: &Value, out: &mut FieldSet) -> Result<(), PatchError> {
        match v {
            Value::Object(m) if m.is_empty() || self.atomic_struct() => {
                if !self.path.is_empty() {
                    out.insert(&self.path);
                }
            }
            Value::Object(m) => {
                for (k, child) in m {
                    self.push_field(k);
                    let r = self.field_set(child, out);
                    self.pop_field();
                    r?;
                }
            }
            Value::Array(items) => {
                let ty = self.list_type();
                // An empty list is a leaf, as in `compare`: whoever sets `[]` owns it, so
                // the creator of `[]` and its first applier agree on who owns what.
                if ty == ListType::Atomic || (items.is_empty() && !self.path.is_empty()) {
                    out.insert(&self.path);
                    return Ok(());
                }
                let mut seen = HashSet::new();
                for item in items {
                    let pe = element_of(ty, item).map_err(|e| self.invalid(e))?;
                    if !seen.insert(pe.clone()) {
                        let mut p = self.path.clone();
                        p.push(pe);
                        return Err(PatchError::invalid(format!(
                            "{}: duplicate entries for key {}",
                            path_string(&self.path),
                            path_string(&p[p.len() - 1..])
                        )));
                    }
                    self.path.push(pe);
                    out.insert(&self.path);
                    let mut r = Ok(());
                    if let Value::Object(m) = item {
                        for (k, child) in m {
                            self.push_field(k);
                            r = self.field_set(child, out);
                            self.pop_field();
                            if r.is_err() {
                                break;
                            }
                        }
                    }
                    self.path.pop();
                    r?;
                }
            }
            _ => out.insert(&self.path),
        }
        Ok(())
    }

    /// Whether the node at the current path always exists in upstream's typed objects: Go
    /// serializes non-pointer structs and non-omitempty lists even when empty, so upstream
    /// never records them as added or removed (no `".": {}` on `f:spec`, `f:template`,
    /// `f:containers`, …).
    fn always_present(&self) -> bool {
        if self.path.len() != self.spath.len() || self.path.len() > 4 {
            // Inside a list item the parent itself may be new; nothing deeper than four
            // fields is always present.
            return false;
        }
        let p = self.schema_path();
        match p.as_slice() {
            [] | ["metadata"] => true,
            ["spec" | "status"] => !matches!(
                self.kind,
                "ConfigMap" | "Secret" | "Endpoints" | "Event" | "EndpointSlice"
            ),
            ["spec", "containers"] => self.kind == "Pod",
            ["spec", "template"]
            | ["spec", "template", "metadata" | "spec"]
            | ["spec", "template", "spec", "containers"] => {
                matches!(
                    self.kind,
                    "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
                )
            }
            ["spec", "strategy"] => self.kind == "Deployment",
            ["spec", "updateStrategy"] => self.kind == "StatefulSet",
            ["status", "loadBalancer"] => self.kind == "Service",
            ["involvedObject" | "source"] => self.kind == "Event",
            _ => false,
        }
    }

    /// Records what changed between `old` and `new` (upstream `Compare`).
    fn compare(&mut self, old: Option<&Value>, new: Option<&Value>, out: &mut Comparison) {
        let is_empty_obj = |v: Option<&Value>| match v {
            None | Some(Value::Null) => true,
            Some(Value::Object(m)) => m.is_empty(),
            _ => false,
        };
        let present = self.always_present();
        let (old, new) = if present {
            (old.or(Some(&Value::Null)), new.or(Some(&Value::Null)))
        } else {
            (old, new)
        };
        let obj_or_null = |v: Option<&Value>| v.is_none_or(|v| v.is_object() || v.is_null());
        let arr_or_null = |v: Option<&Value>| v.is_none_or(|v| v.is_array() || v.is_null());
        match (old, new) {
            (None, None) => {}
            (o, n)
                if obj_or_null(o)
                    && obj_or_null(n)
                    && !self.atomic_struct()
                    && !(is_empty_obj(o) && is_empty_obj(n)) =>
            {
                self.compare_map(o, n, out);
            }
            (o, n)
                if arr_or_null(o)
                    && arr_or_null(n)
                    && !(o.is_some_and(Value::is_null) && n.is_some_and(Value::is_null))
                    && self.list_type() != ListType::Atomic =>
            {
                let ty = self.list_type();
                if o.is_none() {
                    out.added.insert(&self.path);
                }
                if n.is_none() {
                    out.removed.insert(&self.path);
                }
                let empty = Vec::new();
                let ol = o.and_then(Value::as_array).unwrap_or(&empty);
                let nl = n.and_then(Value::as_array).unwrap_or(&empty);
                let oe = list_elements(ty, ol);
                let ne = list_elements(ty, nl);
                let mut old_by: HashMap<&str, &Value> = HashMap::new();
                for (pe, v) in oe.iter().zip(ol) {
                    old_by.entry(pe.as_str()).or_insert(v);
                }
                let mut new_by: HashMap<&str, &Value> = HashMap::new();
                for (pe, v) in ne.iter().zip(nl) {
                    new_by.entry(pe.as_str()).or_insert(v);
                }
                for pe in &ne {
                    if let Some(nv) = new_by.remove(pe.as_str()) {
                        self.path.push(pe.clone());
                        self.compare_item(ty, old_by.get(pe.as_str()).copied(), Some(nv), out);
                        self.path.pop();
                    }
                }
                for (pe, ov) in oe.iter().zip(ol) {
                    if !ne.contains(pe) && old_by.remove(pe.as_str()).is_some() {
                        self.path.push(pe.clone());
                        self.compare_item(ty, Some(ov), None, out);
                        self.path.pop();
                    }
                }
            }
            _ if present && is_empty_obj(old) && is_empty_obj(new) => {}
            (o, n) => match (o, n) {
                (None, Some(_)) => out.added.insert(&self.path),
                (Some(_), None) => out.removed.insert(&self.path),
                (Some(a), Some(b)) if a != b => out.modified.insert(&self.path),
                _ => {}
            },
        }
    }

    fn compare_item(
        &mut self,
        ty: ListType,
        old: Option<&Value>,
        new: Option<&Value>,
        out: &mut Comparison,
    ) {
        if matches!(ty, ListType::Set) {
            match (old, new) {
                (None, Some(_)) => out.added.insert(&self.path),
                (Some(_), None) => out.removed.insert(&self.path),
                _ => {}
            }
            return;
        }
        // Items are compared like map nodes.
        self.compare_map(old, new, out);
    }

    /// Compares a map node (not both absent): the node itself is added or removed, and its
    /// fields are compared one by one.
    fn compare_map(&mut self, old: Option<&Value>, new: Option<&Value>, out: &mut Comparison) {
        match (old, new) {
            (None, Some(_)) => out.added.insert(&self.path),
            (Some(_), None) => out.removed.insert(&self.path),
            _ => {}
        }
        let empty = Map::new();
        let om = old.and_then(Value::as_object).unwrap_or(&empty);
        let nm = new.and_then(Value::as_object).unwrap_or(&empty);
        for (k, nv) in nm {
            self.push_field(k);
            self.compare(om.get(k), Some(nv), out);
            self.pop_field();
        }
        for (k, ov) in om {
            if !nm.contains_key(k) {
                self.push_field(k);
                self.compare(Some(ov), None, out);
                self.pop_field();
            }
        }
    }

    /// Merges an applied configuration over the live value. `None` means "absent".
    fn merge(&mut self, live: Option<&Value>, config: &Value) -> Result<Option<Value>, PatchError> {
        match config {
            Value::Null => Ok(None),
            Value::Object(c) if self.atomic_struct() => Ok(Some(Value::Object(c.clone()))),
            Value::Object(c) => {
                let mut out = match live {
                    Some(Value::Object(l)) => l.clone(),
                    _ => Map::new(),
                };
                for (k, cv) in c {
                    self.push_field(k);
                    let merged = self.merge(out.get(k), cv);
                    self.pop_field();
                    match merged? {
                        Some(v) => {
                            out.insert(k.clone(), v);
                        }
                        None => {
                            out.remove(k);
                        }
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            Value::Array(c) => {
                let ty = self.list_type();
                if ty == ListType::Atomic {
                    return Ok(Some(config.clone()));
                }
                let empty = Vec::new();
                let l = match live {
                    Some(Value::Array(l)) => l,
                    _ => &empty,
                };
                Ok(Some(Value::Array(self.merge_list(ty, l, c)?)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    /// Upstream's list merge: items of the configuration in its order, live-only items
    /// kept where they were relative to the shared ones.
    fn merge_list(
        &mut self,
        ty: ListType,
        lhs: &[Value],
        rhs: &[Value],
    ) -> Result<Vec<Value>, PatchError> {
        let lhs_pes = list_elements(ty, lhs);
        let mut rhs_pes = Vec::with_capacity(rhs.len());
        for item in rhs {
            rhs_pes.push(element_of(ty, item).map_err(|e| self.invalid(e))?);
        }
        let mut observed_lhs: HashMap<&str, &Value> = HashMap::new();
        for (pe, v) in lhs_pes.iter().zip(lhs) {
            observed_lhs.entry(pe.as_str()).or_insert(v);
        }
        let mut observed_rhs: HashMap<&str, &Value> = HashMap::new();
        for (pe, v) in rhs_pes.iter().zip(rhs) {
            if observed_rhs.insert(pe.as_str(), v).is_some() {
                return Err(self.invalid(format!(
                    "duplicate entries for key {}",
                    path_string(std::slice::from_ref(pe))
                )));
            }
        }
        let mut shared = rhs_pes
            .iter()
            .filter(|pe| observed_lhs.contains_key(pe.as_str()))
            .map(String::as_str);
        let mut next_shared = shared.next();
        let mut merged_rhs: HashSet<&str> = HashSet::new();
        let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
        let (mut li, mut ri) = (0, 0);
        while li < lhs.len() || ri < rhs.len() {
            if li < lhs.len() && ri < rhs.len() {
                let pe = lhs_pes[li].as_str();
                if pe == rhs_pes[ri] {
                    merged_rhs.insert(pe);
                    out.extend(self.merge_item(ty, pe, observed_lhs.get(pe).copied(), &rhs[ri])?);
                    li += 1;
                    ri += 1;
                    next_shared = shared.next();
                    continue;
                }
                if observed_rhs.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                    li += 1;
                    continue;
                }
            }
            if li < lhs.len() {
                let pe = lhs_pes[li].as_str();
                if !observed_rhs.contains_key(pe) {
                    out.push(lhs[li].clone());
                    li += 1;
                    continue;
                } else if merged_rhs.contains(pe) {
                    li += 1;
                    continue;
                }
            }
            if ri < rhs.len() {
                let pe = rhs_pes[ri].as_str();
                merged_rhs.insert(pe);
                out.extend(self.merge_item(ty, pe, observed_lhs.get(pe).copied(), &rhs[ri])?);
                ri += 1;
                if next_shared == Some(pe) {
                    next_shared = shared.next();
                }
            }
        }
        Ok(out)
    }

    fn merge_item(
        &mut self,
        ty: ListType,
        pe: &str,
        live: Option<&Value>,
        config: &Value,
    ) -> Result<Option<Value>, PatchError> {
        if ty == ListType::Set {
            return Ok(Some(config.clone()));
        }
        self.path.push(pe.to_string());
        let r = self.merge(live, config);
        self.path.pop();
        r
    }

    /// Removes the value at `path` (path elements relative to the walker's position).
    fn remove(&mut self, v: &mut Value, path: &[String]) {
        let Some((pe, rest)) = path.split_first() else {
            return;
        };
        if let Some(name) = pe.strip_prefix("f:") {
            let Value::Object(m) = v else { return };
            if rest.is_empty() {
                m.remove(name);
            } else if let Some(child) = m.get_mut(name) {
                self.spath.push(name.to_string());
                self.remove(child, rest);
                self.spath.pop();
            }
            return;
        }
        let ty = self.list_type();
        let Value::Array(items) = v else { return };
        let pes = if ty == ListType::Atomic {
            (0..items.len()).map(|i| format!("i:{i}")).collect()
        } else {
            list_elements(ty, items)
        };
        if rest.is_empty() {
            let mut i = 0;
            items.retain(|_| {
                let keep = pes[i] != *pe;
                i += 1;
                keep
            });
        } else {
            for (item, item_pe) in items.iter_mut().zip(&pes) {
                if item_pe == pe {
                    self.remove(item, rest);
                }
            }
        }
    }
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    removed: FieldSet,
    modified: FieldSet,
}

fn compare(kind: &str, old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    Walker::new(kind).compare(Some(old), Some(new), &mut c);
    strip_meta(&mut c.added);
    strip_meta(&mut c.removed);
    strip_meta(&mut c.modified);
    c
}

fn applied_field_set(kind: &str, config: &Value) -> Result<FieldSet, PatchError> {
    let mut set = FieldSet::new();
    Walker::new(kind).field_set(config, &mut set)?;
    strip_meta(&mut set);
    Ok(set)
}

fn live_managers(obj: &Value) -> Vec<Manager> {
    match obj.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => Vec::new(),
        // Undecodable managed fields are reset rather than failing every write.
        Some(v) => decode_managers(v).unwrap_or_default(),
    }
}

fn set_managed_fields(obj: &mut Value, managers: Vec<Manager>) {
    let encoded = encode_managers(managers);
    let Value::Object(root) = obj else { return };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Value::Object(meta) = meta else { return };
    if encoded.as_array().is_some_and(Vec::is_empty) {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), encoded);
    }
}

fn last_applied(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()
}

/// The `last-applied-configuration` upstream writes for an applied configuration.
fn build_last_applied(config: &Value) -> String {
    let mut c = config.clone();
    if let Some(meta) = c.get_mut("metadata").and_then(Value::as_object_mut) {
        let remove_annotations = match meta.get_mut("annotations").and_then(Value::as_object_mut) {
            Some(a) => {
                a.remove(LAST_APPLIED);
                a.is_empty()
            }
            None => false,
        };
        if remove_annotations {
            meta.remove("annotations");
        }
    }
    format!("{c}\n")
}

/// Server-side apply of `config` (already decoded) over `live` (`None`: create).
pub(crate) fn server_side_apply(
    kind: &ResourceKind,
    subresource: Option<Subresource>,
    live: Option<&Value>,
    mut config: Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, PatchError> {
    check_config(kind, &config)?;
    if let Some(c) = config.as_object_mut() {
        match subresource {
            // The status subresource applies status only (upstream resets the rest).
            Some(Subresource::Status) => {
                c.retain(|k, _| {
                    matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")
                });
                if let Some(Value::Object(meta)) = c.get_mut("metadata") {
                    meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
                }
            }
            // The main resource resets status: status is applied through the status
            // subresource only.
            None if kind.has_subresource(Subresource::Status) => {
                c.remove("status");
            }
            _ => {}
        }
    }
    let subresource_name = subresource
        .map(Subresource::name)
        .unwrap_or_default()
        .to_string();
    let api_version = kind.api_version();
    let live_obj = live.cloned().unwrap_or_else(|| json!({}));
    let live_body = without_managed_fields(&live_obj);
    let mut managers = live_managers(&live_obj);
    if managers.is_empty() && live.is_some() {
        let c = compare(kind.kind, &json!({}), &live_body);
        let set = c.added.union(&c.modified);
        if !set.is_empty() {
            managers.push(Manager {
                manager: BEFORE_FIRST_APPLY.to_string(),
                operation: "Update".to_string(),
                api_version: api_version.clone(),
                time: Some(now.to_string()),
                subresource: String::new(),
                set,
            });
        }
    }

    let config_set = applied_field_set(kind.kind, &config)?;
    let mut merged = Walker::new(kind.kind)
        .merge(Some(&live_body), &config)?
        .unwrap_or_else(|| json!({}));

    let me = Manager {
        manager: manager.to_string(),
        operation: "Apply".to_string(),
        api_version: api_version.clone(),
        time: Some(now.to_string()),
        subresource: subresource_name,
        set: config_set,
    };
    let last_set = managers
        .iter()
        .position(|m| m.same_identity(&me))
        .map(|i| managers.remove(i).set);

    if let Some(last) = last_set {
        let owned = managers
            .iter()
            .fold(me.set.clone(), |acc, m| acc.union(&m.set));
        let to_remove = last.difference(&owned);
        for path in to_remove.paths() {
            Walker::new(kind.kind).remove(&mut merged, &path);
        }
    }

    let cmp = compare(kind.kind, &live_body, &merged);
    let changed = cmp.modified.union(&cmp.added);
    let conflicts: Vec<(usize, FieldSet)> = managers
        .iter()
        .enumerate()
        .map(|(i, m)| (i, m.set.intersection(&changed)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let mut take_over = force;
    if !conflicts.is_empty() && !force {
        let allowed = (manager == "kubectl")
            .then(|| last_applied(&live_obj))
            .flatten()
            .and_then(|la| serde_json::from_str::<Value>(la).ok())
            .and_then(|la| applied_field_set(kind.kind, &la).ok());
        let all_allowed = allowed.is_some_and(|allowed| {
            conflicts
                .iter()
                .all(|(_, c)| c.difference(&allowed).is_empty())
        });
        if !all_allowed {
            return Err(conflict_error(&managers, &conflicts));
        }
        take_over = true;
    }
    for (i, m) in managers.iter_mut().enumerate() {
        if take_over && let Some((_, c)) = conflicts.iter().find(|(j, _)| *j == i) {
            m.set = m.set.difference(c);
        }
        m.set = m.set.difference(&cmp.removed);
    }
    managers.push(me);

    if manager == "kubectl"
        && last_applied(&live_obj).is_some()
        && let Some(annotations) = merged
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
    {
        annotations.insert(
            LAST_APPLIED.into(),
            Value::from(build_last_applied(&config)),
        );
    }
    set_managed_fields(&mut merged, managers);
    Ok(merged)
}

fn check_config(kind: &ResourceKind, config: &Value) -> Result<(), PatchError> {
    let Value::Object(c) = config else {
        return Err(PatchError::bad_request(
            "error decoding YAML: an applied configuration must be an object",
        ));
    };
    let api_version = c
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let k = c.get("kind").and_then(Value::as_str).unwrap_or_default();
    if k.is_empty() {
        return Err(PatchError::bad_request(format!(
            "Object 'Kind' is missing in '{config}'"
        )));
    }
    if api_version != kind.api_version() {
        return Err(PatchError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {api_version}, expected: {}",
            kind.api_version()
        )));
    }
    if k != kind.kind {
        return Err(PatchError::bad_request(format!(
            "the kind in the apply patch ({k}) does not match the resource ({})",
            kind.kind
        )));
    }
    if c.get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|m| !m.is_null())
    {
        return Err(PatchError::bad_request(
            "metadata.managedFields must be nil",
        ));
    }
    Ok(())
}

fn conflict_error(managers: &[Manager], conflicts: &[(usize, FieldSet)]) -> PatchError {
    let mut by_manager: Vec<(String, Vec<String>)> = conflicts
        .iter()
        .map(|(i, set)| {
            (
                managers[*i].display(),
                set.paths().iter().map(|p| path_string(p)).collect(),
            )
        })
        .collect();
    by_manager.sort();
    let causes: Vec<ConflictCause> = by_manager
        .iter()
        .flat_map(|(m, paths)| {
            paths.iter().map(move |p| ConflictCause {
                field: p.clone(),
                message: format!("conflict with {m}"),
            })
        })
        .collect();
    let message = if causes.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            by_manager[0].0, causes[0].field
        )
    } else {
        let mut lines = Vec::new();
        for (m, paths) in &by_manager {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            causes.len(),
            lines.join("\n")
        )
    };
    PatchError::Conflict { message, causes }
}

/// Records an Update by `manager` (create when `old` is `None`) in `new`'s managed fields;
/// through a subresource (`status`, `scale`) the entry carries `subresource`, and managed
/// fields sent in `new` are ignored, as upstream does.
pub fn record_update(
    kind: &ResourceKind,
    subresource: Option<Subresource>,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    now: &str,
) {
    let api_version = kind.api_version();
    // Managed fields sent by the client count only on the main resource.
    let sent = new
        .pointer("/metadata/managedFields")
        .filter(|_| subresource.is_none());
    let mut managers = match sent {
        Some(Value::Array(entries)) if entries.len() == 1 && entries[0] == json!({}) => Vec::new(),
        Some(v @ Value::Array(entries)) if !entries.is_empty() => match decode_managers(v) {
            Ok(m) => m,
            Err(_) => old.map(live_managers).unwrap_or_default(),
        },
        _ => old.map(live_managers).unwrap_or_default(),
    };
    let old_body = old.map(without_managed_fields).unwrap_or_else(|| json!({}));
    let new_body = without_managed_fields(new);
    let cmp = compare(kind.kind, &old_body, &new_body);
    let changed = cmp.modified.union(&cmp.added);
    for m in &mut managers {
        m.set = m.set.difference(&changed).difference(&cmp.removed);
    }
    if !changed.is_empty() {
        let me = Manager {
            manager: manager.to_string(),
            operation: "Update".to_string(),
            api_version,
            time: Some(now.to_string()),
            subresource: subresource
                .map(Subresource::name)
                .unwrap_or_default()
                .to_string(),
            set: changed,
        };
        match managers.iter_mut().find(|m| m.same_identity(&me)) {
            Some(m) => {
                m.set = m.set.union(&me.set);
                m.time = me.time;
            }
            None => managers.push(me),
        }
    }
    set_managed_fields(new, managers);
}
