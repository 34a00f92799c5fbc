//! RBAC (rbac.authorization.k8s.io/v1) as upstream's authorizer, escalation checks and
//! default policy.
//!
//! Lifecycle of the policy in memory:
//!
//! ```text
//! ApiServer::build ── reconcile defaults (bootstrap.rs) ── aggregate ── load ──▶ serving
//!                                                                    │
//!             store watch on /registry/rbac.authorization.k8s.io/ ◀──┘
//!                 │ a batch of events
//!                 ▼
//!        objects updated ─▶ aggregated ClusterRoles rewritten if their rules changed
//!                        ─▶ a new Policy (policy.rs) swapped in
//! ```
//!
//! Rules:
//! - Authorization reads one immutable [`Policy`] (an `Arc` swapped under a lock held only
//!   for the clone): the bindings of the user's name and groups, cluster bindings first, then
//!   the bindings of the request's namespace; the first rule that allows wins. RBAC never
//!   denies: when nothing allows, the answer is "no opinion", with the roles that could not
//!   be found as the reason (`RBAC: clusterrole.rbac.authorization.k8s.io "x" not found`).
//! - The policy follows the store: a write of a Role or binding takes effect when the
//!   watch delivers it (milliseconds), as upstream's informer-fed authorizer.
//! - A ClusterRole with an `aggregationRule` gets, as its rules, the rules of the
//!   ClusterRoles its selectors match (by name order, duplicates dropped), rewritten by the
//!   watcher whenever they change (upstream's clusterrole-aggregation controller).
//! - Escalation ([`RbacAuthorizer::check_escalation`]): a Role or ClusterRole may be
//!   written only by a user who holds all its rules (or may `escalate` it, or is in
//!   `system:masters`); a binding only by a user who holds all the rules of the role it
//!   refers to, or may `bind` that role.
//! - The store is followed by a [`Mirror`]; a request denied while the policy is behind the
//!   RBAC writes made through this server is decided again once it caught up
//!   ([`RbacAuthorizer::caught_up`]), so a binding works as soon as its create returned.

pub mod bootstrap;
pub mod policy;
pub mod rules;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde_json::Value;

pub use policy::{Policy, RoleRef};
pub use rules::Rule;

use crate::auth::mirror::{Change, Follower, Mirror};
use crate::auth::{Authorizer, Decision, MASTERS_GROUP, RequestAttributes, UserInfo};
use crate::error::ApiError;
use crate::ops::{Core, UpdateMode};
use crate::registry::{CLUSTERROLEBINDINGS, CLUSTERROLES, ROLEBINDINGS, ROLES, ResourceKind};

/// The storage prefix of every RBAC object.
const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// The RBAC authorizer: answers from the policy in memory.
#[derive(Debug, Default)]
pub struct RbacAuthorizer {
    policy: RwLock<Arc<Policy>>,
    objects: Mutex<Objects>,
    mirror: OnceLock<Arc<Mirror>>,
}

impl Authorizer for RbacAuthorizer {
    fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes) -> Decision {
        let policy = self.policy();
        let (allowed, walk) = policy.allows(user, attrs);
        if allowed {
            return Decision::Allow;
        }
        Decision::NoOpinion(match walk.errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", walk.errors[0]),
            _ => format!("RBAC: [{}]", walk.errors.join(", ")),
        })
    }
}

/// The objects the policy is built from, by storage key.
#[derive(Debug, Default)]
struct Objects {
    by_key: BTreeMap<String, Value>,
}

impl Objects {
    fn of_kind<'a>(&'a self, plural: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        let prefix = format!("{PREFIX}{plural}/");
        self.by_key
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
    }

    fn policy(&self) -> Policy {
        Policy::build(
            self.of_kind("clusterroles"),
            self.of_kind("roles"),
            self.of_kind("clusterrolebindings"),
            self.of_kind("rolebindings"),
        )
    }
}

#[async_trait::async_trait]
impl Follower for RbacAuthorizer {
    async fn apply(&self, core: &Core, changes: Vec<Change>) {
        let stale = {
            let Ok(mut objects) = self.objects.lock() else {
                return;
            };
            for c in changes {
                match c {
                    Change::Reset { objects: all, .. } => {
                        objects.by_key = all.into_iter().collect()
                    }
                    Change::Put(k, v) => {
                        objects.by_key.insert(k, v);
                    }
                    Change::Delete(k) => {
                        objects.by_key.remove(&k);
                    }
                }
            }
            self.set_policy(objects.policy());
            stale_aggregations(&objects)
        };
        write_aggregations(core, stale).await;
    }
}

/// The kinds the RBAC mirror lists.
static RBAC_KINDS: [&ResourceKind; 4] =
    [&CLUSTERROLES, &ROLES, &CLUSTERROLEBINDINGS, &ROLEBINDINGS];

impl RbacAuthorizer {
    /// An authorizer with an empty policy (nothing allowed until [`RbacAuthorizer::start`]).
    pub fn new() -> RbacAuthorizer {
        RbacAuthorizer::default()
    }

    /// An authorizer over a fixed policy (tests, benchmarks).
    pub fn with_policy(policy: Policy) -> RbacAuthorizer {
        RbacAuthorizer {
            policy: RwLock::new(Arc::new(policy)),
            ..RbacAuthorizer::default()
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_policy(&self, p: Policy) {
        match self.policy.write() {
            Ok(mut g) => *g = Arc::new(p),
            Err(g) => *g.into_inner() = Arc::new(p),
        }
    }

    /// Reconciles the default roles and bindings, loads the policy, and follows the store
    /// from then on (a task of `core`).
    pub async fn start(self: &Arc<Self>, core: &Core) -> Result<(), ApiError> {
        reconcile_defaults(core).await?;
        let mirror = Mirror::start(core, PREFIX, &RBAC_KINDS, self.clone()).await?;
        let _ = self.mirror.set(mirror);
        // Serve with the aggregated roles in the policy.
        if !self.caught_up(core, Duration::from_secs(10)).await {
            tracing::warn!("rbac: the policy has not caught up with the default roles yet");
        }
        Ok(())
    }

    /// Waits (at most `timeout`) until the policy reflects every RBAC write made through
    /// this server; whether it does.
    pub async fn caught_up(&self, core: &Core, timeout: Duration) -> bool {
        let Some(m) = self.mirror.get() else {
            return true;
        };
        let last = RBAC_KINDS
            .iter()
            .map(|k| core.storage.marks.last(k))
            .max()
            .unwrap_or(0);
        m.applied() >= last || m.caught_up(last, timeout).await
    }

    /// Upstream's escalation check for a write of an RBAC object `obj` of `plural` by
    /// `user`: `Ok(())` or the Forbidden message's cause.
    pub fn check_escalation(
        &self,
        authorize: &dyn Fn(&RequestAttributes) -> bool,
        user: &UserInfo,
        plural: &str,
        namespace: &str,
        obj: &Value,
    ) -> Result<(), String> {
        if user.in_group(MASTERS_GROUP) {
            return Ok(());
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let policy = self.policy();
        match plural {
            "roles" | "clusterroles" => {
                if authorize(&rbac_attributes("escalate", plural, namespace, name)) {
                    return Ok(());
                }
                confirm_no_escalation(&policy, user, namespace, &Rule::all_from(obj))?;
                if plural == "clusterroles"
                    && obj.get("aggregationRule").is_some_and(|a| !a.is_null())
                {
                    let all = [
                        Rule {
                            verbs: vec!["*".into()],
                            api_groups: vec!["*".into()],
                            resources: vec!["*".into()],
                            ..Rule::default()
                        },
                        Rule {
                            verbs: vec!["*".into()],
                            non_resource_urls: vec!["*".into()],
                            ..Rule::default()
                        },
                    ];
                    if confirm_no_escalation(&policy, user, namespace, &all).is_err() {
                        return Err(
                            "must have cluster-admin privileges to use the aggregationRule".into(),
                        );
                    }
                }
                Ok(())
            }
            "rolebindings" | "clusterrolebindings" => {
                let kind = obj
                    .pointer("/roleRef/kind")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let role_name = obj
                    .pointer("/roleRef/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let (role, resource) = match kind {
                    "Role" => (RoleRef::Role(role_name.to_string()), "roles"),
                    _ => (RoleRef::ClusterRole(role_name.to_string()), "clusterroles"),
                };
                if authorize(&rbac_attributes("bind", resource, namespace, role_name)) {
                    return Ok(());
                }
                let rules = policy.role_rules(&role, namespace)?.to_vec();
                confirm_no_escalation(&policy, user, namespace, &rules)
            }
            _ => Ok(()),
        }
    }
}

/// A request for an RBAC resource (the `escalate` and `bind` checks).
fn rbac_attributes(verb: &str, plural: &str, namespace: &str, name: &str) -> RequestAttributes {
    let mut a = RequestAttributes::resource(
        verb,
        "rbac.authorization.k8s.io",
        plural,
        "",
        namespace,
        name,
    );
    a.version = "v1".into();
    a
}

/// Upstream's `ConfirmNoEscalation`: the user must hold every rule in `rules` in
/// `namespace`.
fn confirm_no_escalation(
    policy: &Policy,
    user: &UserInfo,
    namespace: &str,
    rules: &[Rule],
) -> Result<(), String> {
    let (owner, walk) = policy.rules_for(user, namespace);
    let (ok, missing) = rules::covers(&owner, rules);
    if ok {
        return Ok(());
    }
    let mut lines: Vec<String> = rules::compact(missing)
        .iter()
        .map(rules::compact_string)
        .collect();
    lines.sort();
    lines.dedup();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        rules::go_quoted(&user.groups),
        lines.join("\n")
    );
    if !walk.errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", walk.errors.join(" ")));
    }
    Err(msg)
}

fn labels_of(o: &Value) -> BTreeMap<String, String> {
    o.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The rules an aggregated ClusterRole should have given all ClusterRoles, or `None` when
/// `role` has no aggregation rule.
pub fn aggregated_rules<'a>(
    role: &Value,
    all: impl IntoIterator<Item = &'a Value>,
) -> Option<Vec<Value>> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")?
        .as_array()?;
    let selectors: Vec<podvisor_api::LabelSelector> = selectors
        .iter()
        .filter_map(|s| serde_json::from_value(s.clone()).ok())
        .filter_map(|s| podvisor_api::LabelSelector::from_meta(&s).ok())
        .collect();
    let me = role.pointer("/metadata/name").and_then(Value::as_str);
    let mut matched: Vec<&Value> = all
        .into_iter()
        .filter(|o| o.pointer("/metadata/name").and_then(Value::as_str) != me)
        .filter(|o| {
            let l = labels_of(o);
            selectors.iter().any(|s| s.matches(&l))
        })
        .collect();
    matched.sort_by_key(|o| {
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    });
    let mut out: Vec<Rule> = Vec::new();
    for o in matched {
        for r in Rule::all_from(o) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    Some(out.iter().map(Rule::to_json).collect())
}

/// The aggregated ClusterRoles whose rules are not what their selectors gather, with the
/// rules they should have. Aggregated roles may gather each other (`admin` gathers `edit`,
/// which gathers `view`): the rules are computed to a fixpoint first, so one write per role
/// brings the whole chain up to date.
fn stale_aggregations(objects: &Objects) -> Vec<(String, Vec<Value>)> {
    let mut work: Vec<Value> = objects.of_kind("clusterroles").cloned().collect();
    for _ in 0..8 {
        let mut changed = false;
        for i in 0..work.len() {
            let Some(rules) = aggregated_rules(&work[i], work.iter()) else {
                continue;
            };
            if rules_of(&work[i]) != rules {
                work[i]["rules"] = Value::from(rules);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let stored: Vec<&Value> = objects.of_kind("clusterroles").collect();
    work.into_iter()
        .zip(stored)
        .filter(|(w, s)| {
            w.get("aggregationRule").is_some_and(|a| !a.is_null()) && rules_of(w) != rules_of(s)
        })
        .map(|(w, _)| {
            let name = w
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            (name.to_string(), rules_of(&w))
        })
        .collect()
}

/// The `rules` of a role (none: empty).
fn rules_of(role: &Value) -> Vec<Value> {
    role.get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Writes the gathered rules of aggregated ClusterRoles (upstream's clusterrole-aggregation
/// controller); the watch then brings them into the policy.
async fn write_aggregations(core: &Core, stale: Vec<(String, Vec<Value>)>) {
    for (name, rules) in stale {
        let mut transform = |old: Option<&Value>| -> Result<Option<Value>, ApiError> {
            let Some(old) = old else { return Ok(None) };
            let mut new = old.clone();
            new["rules"] = Value::from(rules.clone());
            Ok(Some(new))
        };
        if let Err(e) = core
            .update(
                &CLUSTERROLES,
                None,
                &name,
                UpdateMode::Main,
                false,
                Some(("clusterrole-aggregation-controller", None)),
                &mut transform,
            )
            .await
        {
            tracing::warn!(role = %name, error = %e, "rbac: cannot aggregate cluster role");
        }
    }
}

/// Creates the missing default ClusterRoles and ClusterRoleBindings and adds to the
/// existing ones (autoupdate not `"false"`) what they lack; deletes the retired default
/// bindings of earlier versions (`bootstrap::RETIRED_CLUSTER_ROLE_BINDINGS`).
pub async fn reconcile_defaults(core: &Core) -> Result<(), ApiError> {
    for name in bootstrap::RETIRED_CLUSTER_ROLE_BINDINGS {
        let Some((existing, _)) = core.storage.get(&CLUSTERROLEBINDINGS, None, name).await? else {
            continue;
        };
        let bootstrapped = existing
            .pointer("/metadata/labels/kubernetes.io~1bootstrapping")
            .and_then(Value::as_str)
            == Some("rbac-defaults");
        if bootstrapped && bootstrap::may_update(&existing) {
            let opts = crate::ops::DeleteOptions::default();
            match core.delete(&CLUSTERROLEBINDINGS, None, name, &opts).await {
                Ok(_) => tracing::info!(binding = %name, "rbac: retired default binding deleted"),
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => return Err(e),
            }
        }
    }
    for (kind, expected) in bootstrap::cluster_roles()
        .into_iter()
        .map(|r| (&CLUSTERROLES, r))
        .chain(
            bootstrap::cluster_role_bindings()
                .into_iter()
                .map(|b| (&CLUSTERROLEBINDINGS, b)),
        )
    {
        let name = expected["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let existing = core.storage.get(kind, None, &name).await?;
        let Some((existing, _)) = existing else {
            match core.create(kind, None, expected, false, None).await {
                Ok(_) => {}
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
            continue;
        };
        if !bootstrap::may_update(&existing) {
            continue;
        }
        let reconciled = if kind == &CLUSTERROLES {
            bootstrap::reconcile_role(&existing, &expected)
        } else {
            match bootstrap::reconcile_binding(&existing, &expected) {
                bootstrap::BindingChange::Unchanged => None,
                bootstrap::BindingChange::Update(b) => Some(b),
                bootstrap::BindingChange::Recreate => {
                    // A roleRef cannot change: delete and create again.
                    let opts = crate::ops::DeleteOptions::default();
                    core.delete(kind, None, &name, &opts).await?;
                    core.create(kind, None, expected, false, None).await?;
                    continue;
                }
            }
        };
        if let Some(new) = reconciled {
            let mut transform = |_: Option<&Value>| Ok(Some(new.clone()));
            core.update(
                kind,
                None,
                &name,
                UpdateMode::Main,
                false,
                None,
                &mut transform,
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo::new(name, "", groups.iter().map(|g| g.to_string()).collect())
    }

    /// The fixed policy the fuzz test checks against its table.
    fn fixture() -> Policy {
        let cluster_roles = [
            json!({"metadata": {"name": "reader"}, "rules": [
                {"verbs": ["get", "list", "watch"], "apiGroups": ["", "apps"], "resources": ["pods", "deployments", "pods/log"]}]}),
            json!({"metadata": {"name": "scaler"}, "rules": [
                {"verbs": ["update", "patch"], "apiGroups": ["*"], "resources": ["*/scale"]}]}),
            json!({"metadata": {"name": "root"}, "rules": [
                {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}),
        ];
        let roles = [
            json!({"metadata": {"name": "one-secret", "namespace": "b"}, "rules": [
            {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"]}]}),
        ];
        let crbs = [
            json!({"metadata": {"name": "admins"}, "roleRef": {"kind": "ClusterRole", "name": "root"},
                "subjects": [{"kind": "Group", "name": "admins"}]}),
            json!({"metadata": {"name": "scalers"}, "roleRef": {"kind": "ClusterRole", "name": "scaler"},
                "subjects": [{"kind": "User", "name": "carol"}]}),
        ];
        let rbs = [
            json!({"metadata": {"name": "alice-reads-a", "namespace": "a"},
                "roleRef": {"kind": "ClusterRole", "name": "reader"},
                "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "robot"}]}),
            json!({"metadata": {"name": "bob-secret", "namespace": "b"},
                "roleRef": {"kind": "Role", "name": "one-secret"},
                "subjects": [{"kind": "User", "name": "bob"}, {"kind": "Group", "name": "devs"}]}),
            json!({"metadata": {"name": "dangling", "namespace": "a"},
                "roleRef": {"kind": "Role", "name": "missing"},
                "subjects": [{"kind": "User", "name": "bob"}]}),
        ];
        Policy::build(cluster_roles.iter(), roles.iter(), crbs.iter(), rbs.iter())
    }

    /// The expected answer, from a plain table of who may do what (written without the
    /// policy's index or rule matcher).
    fn expected(
        u: &str,
        groups: &[&str],
        verb: &str,
        group: &str,
        res: &str,
        ns: &str,
        name: &str,
    ) -> bool {
        let read = ["get", "list", "watch"].contains(&verb);
        if groups.contains(&"admins") {
            return true;
        }
        let reader_resource = matches!(
            (group, res),
            ("", "pods")
                | ("", "pods/log")
                | ("", "deployments")
                | ("apps", "pods")
                | ("apps", "pods/log")
                | ("apps", "deployments")
        );
        if (u == "alice" || u == "system:serviceaccount:a:robot")
            && ns == "a"
            && read
            && reader_resource
        {
            return true;
        }
        if u == "carol" && ["update", "patch"].contains(&verb) && res.ends_with("/scale") {
            return true;
        }
        if (u == "bob" || groups.contains(&"devs"))
            && ns == "b"
            && verb == "get"
            && group.is_empty()
            && res == "secrets"
            && name == "s1"
        {
            return true;
        }
        false
    }

    proptest! {
        #[test]
        fn the_authorizer_agrees_with_the_table(
            u in prop::sample::select(vec!["alice", "bob", "carol", "dave", "system:serviceaccount:a:robot", "system:serviceaccount:b:robot"]),
            g in prop::sample::subsequence(vec!["admins", "devs", "system:authenticated"], 0..=3),
            verb in prop::sample::select(vec!["get", "list", "watch", "create", "update", "patch", "delete", "escalate"]),
            group in prop::sample::select(vec!["", "apps", "batch"]),
            res in prop::sample::select(vec!["pods", "pods/log", "pods/exec", "deployments", "deployments/scale", "secrets", "nodes"]),
            ns in prop::sample::select(vec!["", "a", "b", "c"]),
            name in prop::sample::select(vec!["", "s1", "s2"]),
        ) {
            let policy = fixture();
            let who = user(u, &g);
            let (resource, sub) = res.split_once('/').unwrap_or((res, ""));
            let a = RequestAttributes::resource(verb, group, resource, sub, ns, name);
            let (got, _) = policy.allows(&who, &a);
            prop_assert_eq!(got, expected(u, &g, verb, group, res, ns, name), "{} {:?} {} {}/{} {}/{}", u, g, verb, group, res, ns, name);
        }
    }

    #[test]
    fn missing_roles_are_the_reason() {
        let z = RbacAuthorizer::with_policy(fixture());
        let d = z.authorize(
            &user("bob", &[]),
            &RequestAttributes::resource("list", "", "pods", "", "a", ""),
        );
        assert_eq!(
            d,
            Decision::NoOpinion(
                "RBAC: role.rbac.authorization.k8s.io \"missing\" not found".into()
            )
        );
    }

    #[test]
    fn escalation_is_refused_with_upstreams_message() {
        let z = RbacAuthorizer::with_policy(fixture());
        let alice = user("alice", &["system:authenticated"]);
        let deny_all = |_: &RequestAttributes| false;
        let role = json!({"metadata": {"name": "r"}, "rules": [
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]});
        assert_eq!(
            z.check_escalation(&deny_all, &alice, "roles", "a", &role),
            Err("user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}".into())
        );
        // What she holds she may grant, in her namespace only.
        let holds = json!({"metadata": {"name": "r"}, "rules": [
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]});
        assert!(
            z.check_escalation(&deny_all, &alice, "roles", "a", &holds)
                .is_ok()
        );
        assert!(
            z.check_escalation(&deny_all, &alice, "roles", "b", &holds)
                .is_err()
        );
        // The `escalate` verb lets her through.
        let allow_all = |_: &RequestAttributes| true;
        assert!(
            z.check_escalation(&allow_all, &alice, "roles", "a", &role)
                .is_ok()
        );
        // Binding cluster-admin-like `root` is refused; binding `reader` in `a` is fine.
        let bind = |role: &str| json!({"metadata": {"name": "x"}, "roleRef": {"kind": "ClusterRole", "name": role}});
        assert!(
            z.check_escalation(&deny_all, &alice, "rolebindings", "a", &bind("root"))
                .is_err()
        );
        assert!(
            z.check_escalation(&deny_all, &alice, "rolebindings", "a", &bind("reader"))
                .is_ok()
        );
        assert!(
            z.check_escalation(&allow_all, &alice, "rolebindings", "a", &bind("root"))
                .is_ok()
        );
        // An aggregation rule needs everything.
        let agg =
            json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": []}});
        assert_eq!(
            z.check_escalation(&deny_all, &alice, "clusterroles", "", &agg),
            Err("must have cluster-admin privileges to use the aggregationRule".into())
        );
    }

    #[test]
    fn aggregation_gathers_the_matching_roles_rules_in_name_order() {
        let roles = [
            json!({"metadata": {"name": "view"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-view": "true"}}]}}),
            json!({"metadata": {"name": "b", "labels": {"to-view": "true"}}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"metadata": {"name": "a", "labels": {"to-view": "true"}}, "rules": [
                {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]},
                {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"metadata": {"name": "c"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}),
        ];
        let got = aggregated_rules(&roles[0], roles.iter()).unwrap();
        assert_eq!(
            got,
            vec![
                json!({"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}),
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
            ]
        );
        assert!(aggregated_rules(&roles[1], roles.iter()).is_none());
    }
}

#[cfg(test)]
mod server_tests {
    use crate::auth::rbac::Rule;
    use crate::auth::{RequestAttributes, UserInfo};
    use crate::registry::CLUSTERROLES;

    /// At start the default roles exist, `admin` ⊇ `edit` ⊇ `view` are aggregated in one
    /// go, and nothing is rewritten afterwards (the aggregation is at its fixpoint).
    #[tokio::test]
    async fn defaults_are_reconciled_and_aggregation_settles() {
        let srv = crate::testing::memory_server().await;
        let core = srv.core();
        let rules = |name: &'static str| async move {
            let (r, _) = core
                .storage
                .must_get(&CLUSTERROLES, None, name)
                .await
                .unwrap();
            Rule::all_from(&r)
        };
        let view = rules("view").await;
        let admin = rules("admin").await;
        assert!(
            view.iter()
                .any(|r| r.resources.contains(&"pods/log".to_string()))
        );
        assert!(
            crate::auth::rbac::rules::covers(&admin, &view).0,
            "admin covers view"
        );
        assert!(
            !view
                .iter()
                .any(|r| r.resources.contains(&"secrets".to_string()))
        );
        let versions = || async move {
            let mut out = Vec::new();
            for name in ["admin", "edit", "view"] {
                let (_, rev) = core
                    .storage
                    .must_get(&CLUSTERROLES, None, name)
                    .await
                    .unwrap();
                out.push(rev);
            }
            out
        };
        let before = versions().await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(versions().await, before, "aggregated roles rewritten again");
        // A user bound to `view` through a RoleBinding may list pods there at once.
        let rb = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "v", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]});
        core.create(
            &crate::registry::ROLEBINDINGS,
            Some("default"),
            rb,
            false,
            None,
        )
        .await
        .unwrap();
        let alice = UserInfo::new("alice", "", vec!["system:authenticated".into()]);
        let list = RequestAttributes::resource("list", "", "pods", "", "default", "");
        crate::auth::check(&srv, &alice, &list).await.unwrap();
        let other = RequestAttributes::resource("list", "", "pods", "", "kube-system", "");
        assert!(crate::auth::check(&srv, &alice, &other).await.is_err());
    }
}
