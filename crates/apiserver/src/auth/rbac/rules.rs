//! Policy rules as upstream's RBAC evaluates them: whether a rule allows a request
//! (`RuleAllows`), whether rules cover other rules (`Covers`, for the escalation check), and
//! the compact text of missing rules in the escalation message.

use serde_json::Value;

use crate::auth::RequestAttributes;

/// `*`: every verb, group, resource or non-resource URL.
pub const ALL: &str = "*";

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    /// Verbs ("get", "*").
    pub verbs: Vec<String>,
    /// API groups ("" for core, "*").
    pub api_groups: Vec<String>,
    /// Resources ("pods", "pods/log", "*/scale", "*").
    pub resources: Vec<String>,
    /// Object names; empty: any.
    pub resource_names: Vec<String>,
    /// Non-resource URLs ("/healthz", "/api/*", "*").
    pub non_resource_urls: Vec<String>,
}

/// The strings of a JSON array (anything else: none).
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    /// A rule from its JSON (`{"verbs": [...], "apiGroups": [...], ...}`).
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(v.get("verbs")),
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
        }
    }

    /// The rules of a Role or ClusterRole object (its `rules`).
    pub fn all_from(obj: &Value) -> Vec<Rule> {
        obj.get("rules")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Rule::from_json).collect())
            .unwrap_or_default()
    }

    /// The rule as JSON, fields left out when empty (as upstream serializes it).
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("verbs".into(), self.verbs.clone().into());
        let mut put = |k: &str, v: &Vec<String>| {
            if !v.is_empty() {
                m.insert(k.into(), v.clone().into());
            }
        };
        put("apiGroups", &self.api_groups);
        put("resources", &self.resources);
        put("resourceNames", &self.resource_names);
        put("nonResourceURLs", &self.non_resource_urls);
        Value::Object(m)
    }

    /// Whether this rule allows the request (upstream's `RuleAllows`).
    pub fn allows(&self, a: &RequestAttributes) -> bool {
        if !verb_matches(&self.verbs, &a.verb) {
            return false;
        }
        if !a.resource_request {
            return self
                .non_resource_urls
                .iter()
                .any(|u| url_covers(u, &a.path));
        }
        self.api_groups.iter().any(|g| g == ALL || *g == a.group)
            && resource_matches(&self.resources, &a.resource, &a.subresource)
            && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
    }
}

fn verb_matches(verbs: &[String], verb: &str) -> bool {
    verbs.iter().any(|v| v == ALL || v == verb)
}

/// Upstream's `ResourceMatches`: `*`, the exact `resource[/subresource]`, or `*/<sub>`.
fn resource_matches(rules: &[String], resource: &str, sub: &str) -> bool {
    rules.iter().any(|r| {
        if r == ALL {
            return true;
        }
        if sub.is_empty() {
            return r == resource;
        }
        match r.split_once('/') {
            Some((res, s)) => s == sub && (res == resource || res == ALL),
            None => false,
        }
    })
}

/// A URL rule covers a path when equal, `*`, or a `prefix*` of it.
fn url_covers(rule: &str, path: &str) -> bool {
    rule == ALL
        || rule == path
        || rule
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// Upstream's `BreakdownRule`: one rule per (group, resource, verb, name) and per (URL, verb).
pub fn breakdown(rule: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for r in &rule.resources {
            for v in &rule.verbs {
                let one = |names: Vec<String>| Rule {
                    verbs: vec![v.clone()],
                    api_groups: vec![g.clone()],
                    resources: vec![r.clone()],
                    resource_names: names,
                    non_resource_urls: Vec::new(),
                };
                if rule.resource_names.is_empty() {
                    out.push(one(Vec::new()));
                } else {
                    for n in &rule.resource_names {
                        out.push(one(vec![n.clone()]));
                    }
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(Rule {
                verbs: vec![v.clone()],
                non_resource_urls: vec![u.clone()],
                ..Rule::default()
            });
        }
    }
    out
}

fn has_all(owner: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| owner.contains(w))
}

/// Upstream's `ruleCovers`: whether `owner` grants everything `sub` (a broken-down rule) does.
fn rule_covers(owner: &Rule, sub: &Rule) -> bool {
    let verbs = owner.verbs.iter().any(|v| v == ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups =
        owner.api_groups.iter().any(|g| g == ALL) || has_all(&owner.api_groups, &sub.api_groups);
    let resources = has_all(&owner.resources, &sub.resources)
        || owner.resources.iter().any(|r| r == ALL)
        || sub.resources.iter().all(|s| {
            owner.resources.contains(s)
                || s.split_once('/')
                    .is_some_and(|(_, sr)| owner.resources.contains(&format!("*/{sr}")))
        });
    let urls = has_all(&owner.non_resource_urls, &sub.non_resource_urls)
        || sub.non_resource_urls.iter().all(|s| {
            owner
                .non_resource_urls
                .iter()
                .any(|o| o == s || (o.ends_with('*') && s.starts_with(o.trim_end_matches('*'))))
        });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// Upstream's `Covers`: whether `owner` grants everything in `wanted`, and the broken-down
/// rules it lacks.
pub fn covers(owner: &[Rule], wanted: &[Rule]) -> (bool, Vec<Rule>) {
    let mut missing = Vec::new();
    for w in wanted {
        for sub in breakdown(w) {
            if !owner.iter().any(|o| rule_covers(o, &sub)) {
                missing.push(sub);
            }
        }
    }
    (missing.is_empty(), missing)
}

/// Upstream's `CompactRules`: simple rules (one group, one resource, at most one name, no
/// URL) that differ only by verb are merged.
pub fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut simple: Vec<Rule> = Vec::new();
    for r in rules {
        let is_simple = r.resource_names.len() <= 1
            && r.non_resource_urls.is_empty()
            && r.api_groups.len() == 1
            && r.resources.len() == 1;
        if !is_simple {
            out.push(r);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == r.api_groups
                && s.resources == r.resources
                && s.resource_names == r.resource_names
        }) {
            Some(s) => s.verbs.extend(r.verbs),
            None => simple.push(r),
        }
    }
    out.extend(simple);
    out
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn go_quoted(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", inner.join(" "))
}

/// Upstream's `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn compact_string(r: &Rule) -> String {
    let mut parts = Vec::new();
    if !r.api_groups.is_empty() {
        parts.push(format!("APIGroups:{}", go_quoted(&r.api_groups)));
    }
    if !r.resources.is_empty() {
        parts.push(format!("Resources:{}", go_quoted(&r.resources)));
    }
    if !r.non_resource_urls.is_empty() {
        parts.push(format!(
            "NonResourceURLs:{}",
            go_quoted(&r.non_resource_urls)
        ));
    }
    if !r.resource_names.is_empty() {
        parts.push(format!("ResourceNames:{}", go_quoted(&r.resource_names)));
    }
    if !r.verbs.is_empty() {
        parts.push(format!("Verbs:{}", go_quoted(&r.verbs)));
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Rule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Rule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: Vec::new(),
        }
    }

    #[test]
    fn rules_match_like_upstream() {
        let a = |verb, group, res, sub, name| {
            RequestAttributes::resource(verb, group, res, sub, "ns", name)
        };
        let pods = rule(&["get", "list"], &[""], &["pods"], &[]);
        assert!(pods.allows(&a("get", "", "pods", "", "p")));
        assert!(!pods.allows(&a("get", "", "pods", "log", "p")));
        assert!(!pods.allows(&a("get", "apps", "pods", "", "p")));
        assert!(!pods.allows(&a("delete", "", "pods", "", "p")));
        let log = rule(&["get"], &[""], &["pods/log"], &[]);
        assert!(log.allows(&a("get", "", "pods", "log", "p")));
        assert!(!log.allows(&a("get", "", "pods", "", "p")));
        let any_status = rule(&["*"], &["*"], &["*/status"], &[]);
        assert!(any_status.allows(&a("update", "apps", "deployments", "status", "d")));
        assert!(!any_status.allows(&a("update", "apps", "deployments", "", "d")));
        let named = rule(&["get"], &[""], &["secrets"], &["s1"]);
        assert!(named.allows(&a("get", "", "secrets", "", "s1")));
        assert!(!named.allows(&a("get", "", "secrets", "", "s2")));
        assert!(!named.allows(&a("list", "", "secrets", "", "")));
        let urls = Rule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/api/*".into(), "/version".into()],
            ..Rule::default()
        };
        assert!(urls.allows(&RequestAttributes::non_resource("get", "/api/v1")));
        assert!(urls.allows(&RequestAttributes::non_resource("get", "/version")));
        assert!(!urls.allows(&RequestAttributes::non_resource("get", "/version/x")));
        assert!(!urls.allows(&RequestAttributes::non_resource("post", "/api/v1")));
        assert!(!urls.allows(&a("get", "", "pods", "", "")));
    }

    #[test]
    fn covers_and_the_compact_missing_rules() {
        let owner = vec![rule(
            &["get", "list", "watch"],
            &[""],
            &["pods", "configmaps"],
            &[],
        )];
        let (ok, _) = covers(&owner, &[rule(&["get"], &[""], &["pods"], &["x"])]);
        assert!(ok);
        let wanted = vec![rule(
            &["get", "delete", "create"],
            &[""],
            &["pods", "secrets"],
            &[],
        )];
        let (ok, missing) = covers(&owner, &wanted);
        assert!(!ok);
        let mut text: Vec<String> = compact(missing).iter().map(compact_string).collect();
        text.sort();
        assert_eq!(
            text,
            vec![
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete" "create"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete" "create"]}"#,
            ]
        );
        let admin = vec![
            rule(&["*"], &["*"], &["*"], &[]),
            Rule {
                verbs: vec!["*".into()],
                non_resource_urls: vec!["*".into()],
                ..Rule::default()
            },
        ];
        let (ok, missing) = covers(&owner, &admin);
        assert!(!ok);
        let text: Vec<String> = compact(missing).iter().map(compact_string).collect();
        assert_eq!(
            text,
            vec![
                r#"{NonResourceURLs:["*"], Verbs:["*"]}"#,
                r#"{APIGroups:["*"], Resources:["*"], Verbs:["*"]}"#,
            ]
        );
        assert!(covers(&admin, &wanted).0);
        let sub = vec![rule(&["get"], &["apps"], &["*/scale"], &[])];
        assert!(
            covers(
                &sub,
                &[rule(&["get"], &["apps"], &["deployments/scale"], &[])]
            )
            .0
        );
    }
}
