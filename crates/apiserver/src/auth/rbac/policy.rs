//! The RBAC policy in memory: every Role and ClusterRole's rules, and every binding indexed
//! by subject (user name, group name; a service account counts as its user name), so that a
//! request looks only at the bindings of its own user and groups.
//!
//! A [`Policy`] is immutable; the watcher builds a new one when the RBAC objects change and
//! swaps it in ([`super::RbacAuthorizer`]).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::rules::Rule;
use crate::auth::{RequestAttributes, SERVICE_ACCOUNT_USER_PREFIX, UserInfo};

/// What a binding grants: the rules of a ClusterRole or of a Role in its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRef {
    /// `kind: ClusterRole`.
    ClusterRole(String),
    /// `kind: Role` (in the binding's namespace).
    Role(String),
}

/// One binding as the index keeps it.
#[derive(Debug, Clone)]
struct Binding {
    role: RoleRef,
}

/// Bindings by subject.
#[derive(Debug, Default)]
struct Subjects {
    users: HashMap<String, Vec<Binding>>,
    groups: HashMap<String, Vec<Binding>>,
}

impl Subjects {
    fn add(&mut self, subjects: Option<&Value>, namespace: &str, binding: Binding) {
        let Some(subjects) = subjects.and_then(Value::as_array) else {
            return;
        };
        for s in subjects {
            let str_of = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("");
            let name = str_of("name");
            if name.is_empty() {
                continue;
            }
            match str_of("kind") {
                "User" => self.users.entry(name.to_string()),
                "Group" => self.groups.entry(name.to_string()),
                "ServiceAccount" => {
                    // A service account without a namespace is in the binding's namespace.
                    let ns = match str_of("namespace") {
                        "" => namespace,
                        ns => ns,
                    };
                    if ns.is_empty() {
                        continue;
                    }
                    self.users
                        .entry(format!("{SERVICE_ACCOUNT_USER_PREFIX}{ns}:{name}"))
                }
                _ => continue,
            }
            .or_default()
            .push(binding.clone());
        }
    }

    /// The bindings that apply to `user`.
    fn of<'a>(&'a self, user: &'a UserInfo) -> impl Iterator<Item = &'a Binding> + 'a {
        self.users
            .get(&user.name)
            .into_iter()
            .chain(user.groups.iter().filter_map(|g| self.groups.get(g)))
            .flatten()
    }
}

/// The RBAC objects, indexed.
#[derive(Debug, Default)]
pub struct Policy {
    cluster_roles: HashMap<String, Arc<[Rule]>>,
    roles: HashMap<String, HashMap<String, Arc<[Rule]>>>,
    cluster_bindings: Subjects,
    bindings: HashMap<String, Subjects>,
}

/// What the walk over a user's rules found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Roles named by applicable bindings that do not exist (upstream's resolution errors).
    pub errors: Vec<String>,
}

impl Policy {
    /// A policy from the stored objects: ClusterRoles, Roles, ClusterRoleBindings and
    /// RoleBindings (each a full object with `metadata`).
    pub fn build<'a>(
        cluster_roles: impl IntoIterator<Item = &'a Value>,
        roles: impl IntoIterator<Item = &'a Value>,
        cluster_bindings: impl IntoIterator<Item = &'a Value>,
        bindings: impl IntoIterator<Item = &'a Value>,
    ) -> Policy {
        let meta = |o: &'a Value, k: &str| -> &'a str {
            o.pointer(&format!("/metadata/{k}"))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let mut p = Policy::default();
        for r in cluster_roles {
            p.cluster_roles
                .insert(meta(r, "name").to_string(), Rule::all_from(r).into());
        }
        for r in roles {
            p.roles
                .entry(meta(r, "namespace").to_string())
                .or_default()
                .insert(meta(r, "name").to_string(), Rule::all_from(r).into());
        }
        let role_ref = |b: &Value| -> Option<RoleRef> {
            let name = b.pointer("/roleRef/name")?.as_str()?.to_string();
            match b.pointer("/roleRef/kind")?.as_str()? {
                "ClusterRole" => Some(RoleRef::ClusterRole(name)),
                "Role" => Some(RoleRef::Role(name)),
                _ => None,
            }
        };
        for b in cluster_bindings {
            if let Some(role @ RoleRef::ClusterRole(_)) = role_ref(b) {
                p.cluster_bindings
                    .add(b.get("subjects"), "", Binding { role });
            }
        }
        for b in bindings {
            let ns = meta(b, "namespace");
            if let Some(role) = role_ref(b) {
                p.bindings.entry(ns.to_string()).or_default().add(
                    b.get("subjects"),
                    ns,
                    Binding { role },
                );
            }
        }
        p
    }

    /// The rules of a role reference from a binding in `namespace` ("" for a cluster binding).
    pub fn role_rules(&self, role: &RoleRef, namespace: &str) -> Result<&[Rule], String> {
        match role {
            RoleRef::ClusterRole(n) => self
                .cluster_roles
                .get(n)
                .map(|r| &r[..])
                .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io {n:?} not found")),
            RoleRef::Role(n) => self
                .roles
                .get(namespace)
                .and_then(|m| m.get(n))
                .map(|r| &r[..])
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {n:?} not found")),
        }
    }

    /// Visits every rule that applies to `user` in `namespace` (cluster bindings first, then
    /// the namespace's bindings) until `visit` returns true; returns whether it did.
    pub fn visit(
        &self,
        user: &UserInfo,
        namespace: &str,
        walk: &mut Walk,
        mut visit: impl FnMut(&Rule) -> bool,
    ) -> bool {
        for b in self.cluster_bindings.of(user) {
            match self.role_rules(&b.role, "") {
                Ok(rules) => {
                    if rules.iter().any(&mut visit) {
                        return true;
                    }
                }
                Err(e) => walk.errors.push(e),
            }
        }
        if namespace.is_empty() {
            return false;
        }
        let Some(subjects) = self.bindings.get(namespace) else {
            return false;
        };
        for b in subjects.of(user) {
            match self.role_rules(&b.role, namespace) {
                Ok(rules) => {
                    if rules.iter().any(&mut visit) {
                        return true;
                    }
                }
                Err(e) => walk.errors.push(e),
            }
        }
        false
    }

    /// Whether a rule bound to `user` allows `attrs`, with the resolution errors met.
    pub fn allows(&self, user: &UserInfo, attrs: &RequestAttributes) -> (bool, Walk) {
        let mut walk = Walk::default();
        let ok = self.visit(user, &attrs.namespace, &mut walk, |r| r.allows(attrs));
        (ok, walk)
    }

    /// Every rule that applies to `user` in `namespace` (upstream's `RulesFor`).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Walk) {
        let mut walk = Walk::default();
        let mut out = Vec::new();
        self.visit(user, namespace, &mut walk, |r| {
            out.push(r.clone());
            false
        });
        (out, walk)
    }

    /// How many bindings the index holds (cluster and namespaced, per subject).
    pub fn binding_count(&self) -> usize {
        let count = |s: &Subjects| {
            s.users.values().map(Vec::len).sum::<usize>()
                + s.groups.values().map(Vec::len).sum::<usize>()
        };
        count(&self.cluster_bindings) + self.bindings.values().map(count).sum::<usize>()
    }
}
