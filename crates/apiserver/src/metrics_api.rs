//! `metrics.k8s.io/v1beta1`: `NodeMetrics` and `PodMetrics`, as metrics-server serves them
//! (read-only: get and list), made on request from the node agents' resource reports
//! (`GET /stats/resource` on each agent, [`podvisor_api::resource_metrics`]) instead of an
//! aggregated API server, so `kubectl top node|pod` and the HPA controller work.
//!
//! ```text
//! GET /apis/metrics.k8s.io/v1beta1/nodes[/{name}]
//! GET /apis/metrics.k8s.io/v1beta1/pods                            (every namespace)
//! GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods[/{name}]   (?labelSelector=…)
//! ```
//!
//! A request asks the agents concerned (every node for nodes, the nodes of the namespace's
//! pods for pods) at once, each bounded by [`AGENT_TIMEOUT`]; a node whose agent does not
//! answer is left out, as metrics-server leaves out a node it cannot scrape. Requests are
//! authorized like any resource (`get`/`list` on `nodes`/`pods` in group `metrics.k8s.io`).
//! The group is in discovery ([`api_group`], [`resource_list`], [`aggregated_group`]) so
//! clients find it.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use axum::response::Response;
use http::{Method, StatusCode};
use podvisor_api::resource_metrics::{ResourceReport, cpu_quantity, memory_quantity};
use serde_json::{Value, json};

use crate::auth::RequestAttributes;
use crate::error::ApiError;
use crate::logs::node_endpoint;
use crate::registry::{NODES, PODS};
use crate::request::Ctx;

/// The group.
pub const GROUP: &str = "metrics.k8s.io";
/// Its one version.
pub const VERSION: &str = "v1beta1";
/// How long one agent may take to report.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest report read from an agent.
const MAX_REPORT: usize = 8 << 20;

/// The `(plural, kind, namespaced)` of the group's resources.
const RESOURCES: [(&str, &str, bool); 2] = [
    ("nodes", "NodeMetrics", false),
    ("pods", "PodMetrics", true),
];

/// The group in `/apis` (legacy discovery).
pub fn api_group() -> Value {
    let v = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"name": GROUP, "versions": [v.clone()], "preferredVersion": v})
}

/// The group in aggregated discovery.
pub fn aggregated_group() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(plural, kind, namespaced)| {
            json!({
                "resource": plural,
                "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
                "scope": if *namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": "",
                "verbs": ["get", "list"],
            })
        })
        .collect();
    json!({"metadata": {"name": GROUP, "creationTimestamp": null},
        "versions": [{"version": VERSION, "freshness": "Current", "resources": resources}]})
}

/// `/apis/metrics.k8s.io/v1beta1` (legacy discovery).
pub fn resource_list() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(plural, kind, namespaced)| {
            json!({"name": plural, "singularName": "", "namespaced": namespaced,
                "kind": kind, "verbs": ["get", "list"]})
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"), "resources": resources})
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Query<'a> {
    Nodes(Option<&'a str>),
    Pods {
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    },
}

fn parse<'a>(rest: &[&'a str]) -> Option<Query<'a>> {
    Some(match rest {
        ["nodes"] => Query::Nodes(None),
        ["nodes", n] => Query::Nodes(Some(n)),
        ["pods"] => Query::Pods {
            namespace: None,
            name: None,
        },
        ["namespaces", ns, "pods"] => Query::Pods {
            namespace: Some(ns),
            name: None,
        },
        ["namespaces", ns, "pods", n] => Query::Pods {
            namespace: Some(ns),
            name: Some(n),
        },
        _ => return None,
    })
}

/// Serves `/apis/metrics.k8s.io/v1beta1/<rest>`.
pub async fn serve(ctx: &mut Ctx, method: &Method, rest: &[&str]) -> Result<Response, ApiError> {
    let Some(q) = parse(rest) else {
        return Err(ApiError::path_not_found());
    };
    if *method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let (resource, ns, name) = match q {
        Query::Nodes(n) => ("nodes", None, n),
        Query::Pods { namespace, name } => ("pods", namespace, name),
    };
    authorize(ctx, resource, ns, name)?;
    let selector = match ctx.query.get("labelSelector") {
        Some(s) if !s.is_empty() => Some(
            podvisor_api::LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("invalid labelSelector: {e}")))?,
        ),
        _ => None,
    };
    let keep =
        |labels: &BTreeMap<String, String>| selector.as_ref().is_none_or(|s| s.matches(labels));
    let items = match q {
        Query::Nodes(name) => node_metrics(ctx, name, &keep).await?,
        Query::Pods { namespace, name } => pod_metrics(ctx, namespace, name, &keep).await?,
    };
    let kind = if resource == "nodes" {
        "NodeMetrics"
    } else {
        "PodMetrics"
    };
    let body = match name {
        Some(n) => {
            let mut item = items.into_iter().next().ok_or_else(|| {
                let what = if resource == "nodes" {
                    "nodemetrics"
                } else {
                    "podmetrics"
                };
                ApiError::new(404, "NotFound", format!("{what}.{GROUP} {n:?} not found"))
                    .with_details(json!({"name": n, "group": GROUP, "kind": resource}))
            })?;
            item["kind"] = kind.into();
            item["apiVersion"] = format!("{GROUP}/{VERSION}").into();
            item
        }
        None => json!({"kind": format!("{kind}List"), "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": {}, "items": items}),
    };
    Ok(ctx.respond(StatusCode::OK, &body, crate::request::Output::Json))
}

fn authorize(
    ctx: &Ctx,
    resource: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    let verb = if name.is_some() { "get" } else { "list" };
    let mut attrs = RequestAttributes::resource(
        verb,
        GROUP,
        resource,
        "",
        ns.unwrap_or_default(),
        name.unwrap_or_default(),
    );
    attrs.version = VERSION.to_string();
    if ctx.srv.authorize(&ctx.user, &attrs).allowed() {
        return Ok(());
    }
    let what = match name {
        Some(n) => format!("{resource}.{GROUP} {n:?}"),
        None => format!("{resource}.{GROUP}"),
    };
    Err(ApiError::forbidden(
        resource,
        GROUP,
        name.unwrap_or_default(),
        format!(
            "{what} is forbidden: {}",
            attrs.forbidden_message(&ctx.user.name)
        ),
    ))
}

/// The labels of an object.
fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

/// Lists every object of `kind` in `ns` (all namespaces when None).
async fn list_all(
    ctx: &Ctx,
    kind: &crate::registry::ResourceKind,
    ns: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let prefix = kind.list_prefix(ns);
    let page = ctx
        .srv
        .core()
        .storage
        .list(&prefix, 0, None, None, &|_| true)
        .await?;
    Ok(page.items)
}

/// The report of `node`'s agent, or None when it cannot give one in time.
async fn report_of(ctx: &Ctx, node: &Value) -> Option<ResourceReport> {
    let name = crate::objects::name_of(node).to_string();
    let ask = async {
        let endpoint = node_endpoint(ctx, node)?;
        let resp = endpoint.get(ctx, "/stats/resource".to_string()).await?;
        if !resp.status().is_success() {
            return Err(ApiError::internal(format!(
                "agent answered {}",
                resp.status()
            )));
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_REPORT);
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .map_err(|e| ApiError::internal(format!("read the report: {e}")))?
            .to_bytes();
        serde_json::from_slice::<ResourceReport>(&bytes)
            .map_err(|e| ApiError::internal(format!("bad report: {e}")))
    };
    match tokio::time::timeout(AGENT_TIMEOUT, ask).await {
        Ok(Ok(r)) => Some(r),
        Ok(Err(e)) => {
            tracing::debug!(node = %name, error = %e.message, "no resource report");
            None
        }
        Err(_) => {
            tracing::debug!(node = %name, "no resource report in time");
            None
        }
    }
}

/// The reports of `nodes`, asked at once.
async fn reports(ctx: &Ctx, nodes: &[Value]) -> Vec<Option<ResourceReport>> {
    futures::future::join_all(nodes.iter().map(|n| report_of(ctx, n))).await
}

fn window(secs: f64) -> String {
    podvisor_api::status::go_duration(Duration::from_secs_f64(secs.max(0.0)))
}

async fn node_metrics(
    ctx: &Ctx,
    name: Option<&str>,
    keep: &(dyn Fn(&BTreeMap<String, String>) -> bool + Sync),
) -> Result<Vec<Value>, ApiError> {
    let nodes: Vec<Value> = list_all(ctx, &NODES, None)
        .await?
        .into_iter()
        .filter(|n| name.is_none_or(|want| crate::objects::name_of(n) == want))
        .filter(|n| keep(&labels_of(n)))
        .collect();
    let now = ctx.srv.core().now_str();
    let mut items = Vec::new();
    for (node, report) in nodes.iter().zip(reports(ctx, &nodes).await) {
        let Some(r) = report else { continue };
        items.push(json!({
            "metadata": {"name": crate::objects::name_of(node), "creationTimestamp": now,
                "labels": labels_of(node)},
            "timestamp": r.timestamp,
            "window": window(r.window_seconds),
            "usage": {"cpu": cpu_quantity(r.node.cpu_nano_cores),
                "memory": memory_quantity(r.node.memory_working_set_bytes)},
        }));
    }
    Ok(items)
}

async fn pod_metrics(
    ctx: &Ctx,
    namespace: Option<&str>,
    name: Option<&str>,
    keep: &(dyn Fn(&BTreeMap<String, String>) -> bool + Sync),
) -> Result<Vec<Value>, ApiError> {
    let pods: Vec<Value> = list_all(ctx, &PODS, namespace)
        .await?
        .into_iter()
        .filter(|p| name.is_none_or(|want| crate::objects::name_of(p) == want))
        .filter(|p| keep(&labels_of(p)))
        .collect();
    let node_names: HashSet<&str> = pods
        .iter()
        .filter_map(|p| p.pointer("/spec/nodeName").and_then(Value::as_str))
        .collect();
    let nodes: Vec<Value> = list_all(ctx, &NODES, None)
        .await?
        .into_iter()
        .filter(|n| node_names.contains(crate::objects::name_of(n)))
        .collect();
    let uid = |p: &Value| {
        p.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let wanted: BTreeMap<String, &Value> = pods.iter().filter_map(|p| Some((uid(p)?, p))).collect();
    let now = ctx.srv.core().now_str();
    let mut items = Vec::new();
    for r in reports(ctx, &nodes).await.into_iter().flatten() {
        for p in &r.pods {
            let Some(pod) = wanted.get(&p.uid) else {
                continue;
            };
            let containers: Vec<Value> = p
                .containers
                .iter()
                .map(|c| {
                    json!({"name": c.name, "usage": {"cpu": cpu_quantity(c.usage.cpu_nano_cores),
                        "memory": memory_quantity(c.usage.memory_working_set_bytes)}})
                })
                .collect();
            items.push(json!({
                "metadata": {"name": p.name, "namespace": p.namespace, "creationTimestamp": now,
                    "labels": labels_of(pod)},
                "timestamp": r.timestamp,
                "window": window(r.window_seconds),
                "containers": containers,
            }));
        }
    }
    items.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["metadata"]["namespace"].to_string(),
                v["metadata"]["name"].to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_discovery() {
        assert_eq!(parse(&["nodes"]), Some(Query::Nodes(None)));
        assert_eq!(
            parse(&["namespaces", "d", "pods", "p"]),
            Some(Query::Pods {
                namespace: Some("d"),
                name: Some("p")
            })
        );
        assert_eq!(parse(&["namespaces", "d"]), None);
        assert_eq!(parse(&["pods", "p"]), None);
        let list = resource_list();
        assert_eq!(list["groupVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(list["resources"][1]["kind"], "PodMetrics");
        assert_eq!(list["resources"][1]["namespaced"], true);
        assert_eq!(
            aggregated_group()["versions"][0]["resources"][0]["scope"],
            "Cluster"
        );
        assert_eq!(api_group()["preferredVersion"]["version"], "v1beta1");
        assert_eq!(window(10.5), "10.5s");
    }
}
