//! Discovery: `/version`, legacy `/api`, `/apis`, `/api/v1`, `/apis/G/V`, and aggregated
//! discovery (`apidiscovery.k8s.io` v2 and v2beta1) chosen by `Accept`, with a response
//! `Content-Type` naming exactly the flavour served.

use serde_json::{Value, json};

use crate::registry::{self, ResourceKind, Subresource};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs of a kind only the server writes ([`ResourceKind::read_only`]).
const READ_ONLY_VERBS: &[&str] = &["delete", "deletecollection", "get", "list", "watch"];

fn verbs(kind: &ResourceKind) -> &'static [&'static str] {
    if kind.read_only {
        READ_ONLY_VERBS
    } else {
        VERBS
    }
}

/// The `/version` document.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33",
        "emulationMajor": "1", "emulationMinor": "33",
        "minCompatibilityMajor": "1", "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.1-podvisor", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust", "compiler": "rustc", "platform": "linux/amd64"
    })
}

/// Which discovery flavour a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Aggregated, `apidiscovery.k8s.io/v2`.
    V2,
    /// Aggregated, `apidiscovery.k8s.io/v2beta1`.
    V2Beta1,
    /// Legacy `APIVersions` / `APIGroupList`.
    Legacy,
}

impl Flavour {
    /// Picks the first flavour in `Accept` order the server can serve.
    pub fn negotiate(accept: Option<&str>) -> Flavour {
        let Some(accept) = accept else {
            return Flavour::Legacy;
        };
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let params: Vec<(&str, &str)> = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            let get = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
            if media != "application/json" && media != "*/*" && media != "application/*" {
                continue;
            }
            match (get("g"), get("v"), get("as")) {
                (Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => {
                    return Flavour::V2;
                }
                (Some("apidiscovery.k8s.io"), Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                    return Flavour::V2Beta1;
                }
                (None, None, None) => return Flavour::Legacy,
                _ => continue,
            }
        }
        Flavour::Legacy
    }

    /// The response content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Flavour::V2 => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            Flavour::V2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
            Flavour::Legacy => "application/json",
        }
    }
}

fn sub_kind(kind: &ResourceKind, sub: Subresource) -> (Value, &'static [&'static str]) {
    match sub {
        Subresource::Status => (
            json!({"group": kind.group, "version": kind.version, "kind": kind.kind}),
            &["get", "patch", "update"],
        ),
        Subresource::Scale => (
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            &["get", "patch", "update"],
        ),
        Subresource::Binding => (
            json!({"group": "", "version": "v1", "kind": "Binding"}),
            &["create"],
        ),
        Subresource::Log => (
            json!({"group": "", "version": "v1", "kind": "Pod"}),
            &["get"],
        ),
        Subresource::EphemeralContainers | Subresource::Resize => (
            json!({"group": "", "version": "v1", "kind": "Pod"}),
            &["get", "patch", "update"],
        ),
        Subresource::Exec => (
            json!({"group": "", "version": "v1", "kind": "PodExecOptions"}),
            &["create", "get"],
        ),
        Subresource::Attach => (
            json!({"group": "", "version": "v1", "kind": "PodAttachOptions"}),
            &["create", "get"],
        ),
        Subresource::PortForward => (
            json!({"group": "", "version": "v1", "kind": "PodPortForwardOptions"}),
            &["create", "get"],
        ),
        Subresource::Eviction => (
            json!({"group": "policy", "version": "v1", "kind": "Eviction"}),
            &["create"],
        ),
        Subresource::Token => (
            json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}),
            &["create"],
        ),
        Subresource::Entries => (
            json!({"group": kind.group, "version": kind.version, "kind": kind.kind}),
            &["create"],
        ),
    }
}

fn aggregated_resource(kind: &ResourceKind) -> Value {
    let mut r = json!({
        "resource": kind.plural,
        "responseKind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
        "scope": if kind.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": kind.singular,
        "verbs": verbs(kind),
    });
    if !kind.short_names.is_empty() {
        r["shortNames"] = json!(kind.short_names);
    }
    if !kind.categories.is_empty() {
        r["categories"] = json!(kind.categories);
    }
    if !kind.subresources.is_empty() {
        let subs: Vec<Value> = kind
            .subresources
            .iter()
            .map(|s| {
                let (rk, verbs) = sub_kind(kind, *s);
                json!({"subresource": s.name(), "responseKind": rk, "verbs": verbs})
            })
            .collect();
        r["subresources"] = Value::from(subs);
    }
    r
}

fn aggregated_group(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = registry::kinds_in(name, v)
                .into_iter()
                .map(aggregated_resource)
                .collect();
            json!({"version": v, "freshness": "Current", "resources": resources})
        })
        .collect();
    json!({"metadata": {"name": name, "creationTimestamp": null}, "versions": versions})
}

/// The aggregated document for `/api` (core) or `/apis` (groups).
pub fn aggregated(core: bool, flavour: Flavour) -> Value {
    let api_version = match flavour {
        Flavour::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        _ => "apidiscovery.k8s.io/v2",
    };
    let items: Vec<Value> = if core {
        vec![aggregated_group("", &["v1"])]
    } else {
        let mut items: Vec<Value> = registry::groups()
            .iter()
            .map(|(g, vs)| aggregated_group(g, vs))
            .collect();
        items.push(crate::metrics_api::aggregated_group());
        items
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items})
}

/// Legacy `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn api_group(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

/// Legacy `/apis`.
pub fn api_group_list() -> Value {
    let mut groups: Vec<Value> = registry::groups()
        .iter()
        .map(|(g, vs)| api_group(g, vs))
        .collect();
    groups.push(crate::metrics_api::api_group());
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/apis/G`, if served.
pub fn api_group_doc(group: &str) -> Option<Value> {
    if group == crate::metrics_api::GROUP {
        let mut v = crate::metrics_api::api_group();
        v["kind"] = "APIGroup".into();
        v["apiVersion"] = "v1".into();
        return Some(v);
    }
    registry::groups()
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(g, vs)| {
            let mut v = api_group(g, vs);
            v["kind"] = "APIGroup".into();
            v["apiVersion"] = "v1".into();
            v
        })
}

/// Legacy `APIResourceList` for one group-version, if served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == (crate::metrics_api::GROUP, crate::metrics_api::VERSION) {
        return Some(crate::metrics_api::resource_list());
    }
    let kinds = registry::kinds_in(group, version);
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for k in kinds {
        let mut r = json!({"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
            "kind": k.kind, "verbs": verbs(k)});
        if !k.short_names.is_empty() {
            r["shortNames"] = json!(k.short_names);
        }
        if !k.categories.is_empty() {
            r["categories"] = json!(k.categories);
        }
        resources.push(r);
        for s in k.subresources {
            let (rk, verbs) = sub_kind(k, *s);
            let mut r = json!({"name": format!("{}/{}", k.plural, s.name()), "singularName": k.singular,
                "namespaced": k.namespaced, "kind": rk["kind"], "verbs": verbs});
            if rk["group"] != json!(group) || rk["version"] != json!(version) {
                r["group"] = rk["group"].clone();
                r["version"] = rk["version"].clone();
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_accept_order() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(Flavour::negotiate(Some(kubectl)), Flavour::V2);
        assert_eq!(
            Flavour::negotiate(Some(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
            )),
            Flavour::V2Beta1
        );
        assert_eq!(
            Flavour::negotiate(Some("application/json")),
            Flavour::Legacy
        );
        assert_eq!(Flavour::negotiate(None), Flavour::Legacy);
    }

    #[test]
    fn every_aggregated_resource_has_a_response_kind() {
        for core in [true, false] {
            let doc = aggregated(core, Flavour::V2);
            for g in doc["items"].as_array().unwrap() {
                for v in g["versions"].as_array().unwrap() {
                    for r in v["resources"].as_array().unwrap() {
                        assert!(r["responseKind"]["kind"].is_string(), "{r}");
                        for s in r["subresources"].as_array().into_iter().flatten() {
                            assert!(s["responseKind"]["kind"].is_string());
                        }
                    }
                }
            }
        }
        let l = resource_list("apps", "v1").unwrap();
        assert!(
            l["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "replicasets/scale" && r["group"] == "autoscaling")
        );
    }
}
