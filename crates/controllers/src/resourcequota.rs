//! The ResourceQuota controller (upstream `pkg/controller/resourcequota`): writes each
//! quota's `status.hard` (its `spec.hard`) and `status.used` (what the objects of its
//! namespace use, counted by `podvisor_api::quota`).
//!
//! Work is per namespace: a namespace is queued when one of its quotas is added or changed
//! (a watch on ResourceQuotas), when a pod in it is deleted, finishes or starts terminating
//! (replenishment: the pod controller's router calls [`route_pod`]), and every
//! [`RESYNC`] for every namespace with a quota (which also catches deletions of the other
//! kinds). A pass lists the namespace's quotas, lists each kind their `spec.hard` names once
//! (pods from the shared pod cache, the rest from the API), sums the usage of the objects
//! each quota matches, and writes the status of the quotas whose status changed.
//!
//! The admission step in the API server raises `used` optimistically on every admitted
//! create; this controller's recount is the truth that corrects it (objects that failed to
//! be stored, objects deleted, pods that finished).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::discovery;
use kube::runtime::watcher;
use kube::{Api, Client};
use podvisor_api::quota::{self, Usage};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::context::{ControllerError, Ctx};
use crate::queue::WorkQueue;

/// How often every namespace with a quota is recounted without an event.
pub const RESYNC: Duration = Duration::from_secs(10);

/// The controller's queue and the namespaces that have quotas.
pub(crate) struct QuotaState {
    pub(crate) queue: WorkQueue<String>,
    namespaces: Mutex<HashSet<String>>,
}

impl QuotaState {
    pub(crate) fn new() -> Self {
        Self {
            queue: WorkQueue::new(),
            namespaces: Mutex::new(HashSet::new()),
        }
    }

    fn has_quota(&self, ns: &str) -> bool {
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(ns)
    }

    fn set_namespaces(&self, f: impl FnOnce(&mut HashSet<String>)) {
        f(&mut self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Replenishment: a pod that is gone, finished or terminating changes what its namespace
/// uses.
pub(crate) fn route_pod(ctx: &Ctx, pod: &Pod, deleted: bool) {
    let Some(ns) = pod.metadata.namespace.as_deref() else {
        return;
    };
    if !ctx.quota.has_quota(ns) {
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if deleted
        || matches!(phase, Some("Succeeded" | "Failed"))
        || pod.metadata.deletion_timestamp.is_some()
    {
        ctx.quota.queue.add(ns.to_string());
    }
}

/// Watches ResourceQuotas and queues their namespaces; re-queues every namespace with a
/// quota every [`RESYNC`].
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let api: Api<ResourceQuota> = Api::all(ctx.client.clone());
    let mut events = watcher(api, watcher::Config::default()).boxed();
    let mut tick = tokio::time::interval(RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            ev = events.next() => match ev {
                Some(Ok(ev)) => on_event(&ctx, &mut seen, ev),
                Some(Err(e)) => tracing::debug!(error = %e, "resource quota watch"),
                None => return,
            },
            _ = tick.tick() => {
                let all: Vec<String> = {
                    let g = ctx.quota.namespaces.lock().unwrap_or_else(|e| e.into_inner());
                    g.iter().cloned().collect()
                };
                for ns in all {
                    ctx.quota.queue.add(ns);
                }
            }
        }
    }
}

fn on_event(ctx: &Ctx, seen: &mut HashSet<String>, ev: watcher::Event<ResourceQuota>) {
    let ns_of = |q: &ResourceQuota| q.metadata.namespace.clone().unwrap_or_default();
    match ev {
        watcher::Event::Apply(q) | watcher::Event::InitApply(q) => {
            let ns = ns_of(&q);
            seen.insert(format!("{ns}/{}", q.metadata.name.as_deref().unwrap_or("")));
            ctx.quota.set_namespaces(|s| {
                s.insert(ns.clone());
            });
            // A quota whose status already matches needs no pass.
            if needs_pass(&q) {
                ctx.quota.queue.add(ns);
            }
        }
        watcher::Event::Delete(q) => {
            let ns = ns_of(&q);
            seen.remove(&format!(
                "{ns}/{}",
                q.metadata.name.as_deref().unwrap_or("")
            ));
            let prefix = format!("{ns}/");
            if !seen.iter().any(|k| k.starts_with(&prefix)) {
                ctx.quota.set_namespaces(|s| {
                    s.remove(&ns);
                });
            }
        }
        watcher::Event::Init => seen.clear(),
        watcher::Event::InitDone => {
            let namespaces: HashSet<String> = seen
                .iter()
                .filter_map(|k| k.split_once('/').map(|(ns, _)| ns.to_string()))
                .collect();
            ctx.quota.set_namespaces(|s| *s = namespaces);
        }
    }
}

/// True when the quota's status does not yet reflect its spec (new or changed `hard`).
fn needs_pass(q: &ResourceQuota) -> bool {
    let hard = q.spec.as_ref().and_then(|s| s.hard.as_ref());
    let status = q.status.as_ref();
    status.and_then(|s| s.hard.as_ref()) != hard
        || status
            .and_then(|s| s.used.as_ref())
            .is_none_or(|u| hard.is_some_and(|h| h.keys().any(|k| !u.contains_key(k))))
}

/// Recounts every quota of namespace `ns`.
pub(crate) async fn reconcile(ctx: &Ctx, ns: &str) -> Result<Option<Duration>, ControllerError> {
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), ns);
    let quotas = api
        .list(&ListParams::default())
        .await
        .map_err(ControllerError::api("list", "resourcequota", ns, ""))?
        .items;
    if quotas.is_empty() {
        return Ok(None);
    }
    let mut kinds: HashSet<(String, String)> = HashSet::new();
    for q in &quotas {
        for name in hard_of(q).keys() {
            if let Some(k) = quota::kind_of(name) {
                kinds.insert(k);
            }
        }
    }
    let mut objects: HashMap<(String, String), Vec<Value>> = HashMap::new();
    for (plural, group) in kinds {
        match list_kind(ctx, ns, &plural, &group).await {
            Ok(items) => {
                objects.insert((plural, group), items);
            }
            Err(e) => {
                tracing::debug!(namespace = ns, resource = %plural, group = %group, error = %e, "resource quota cannot count");
            }
        }
    }
    let now = ctx.now().as_second();
    for q in quotas {
        let hard = hard_of(&q);
        let used = count(&q, &hard, &objects, now);
        let mut status = q.status.clone().unwrap_or_default();
        let want_hard = q.spec.as_ref().and_then(|s| s.hard.clone());
        let want_used = Some(to_quantities(&used));
        if status.hard == want_hard && status.used == want_used {
            continue;
        }
        status.hard = want_hard;
        status.used = want_used;
        let mut updated = q.clone();
        updated.status = Some(status);
        let name = q.metadata.name.clone().unwrap_or_default();
        ctx.replace_status("resourcequota", ns, &name, &updated)
            .await?;
    }
    Ok(None)
}

fn hard_of(q: &ResourceQuota) -> Usage {
    let hard = q
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), Value::from(v.0.clone())))
                .collect::<serde_json::Map<_, _>>()
        })
        .map(Value::Object);
    quota::from_list(hard.as_ref())
}

fn to_quantities(
    u: &Usage,
) -> BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    u.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.to_quantity()),
            )
        })
        .collect()
}

/// What the objects matching quota `q` use of each resource in `hard` (upstream's
/// `CalculateUsage`: every resource some evaluator charges starts at zero).
fn count(
    q: &ResourceQuota,
    hard: &Usage,
    objects: &HashMap<(String, String), Vec<Value>>,
    now: i64,
) -> Usage {
    // The quota as the shared matcher reads it: the scopes, and `hard` as its status.
    let mut qv = serde_json::to_value(q).unwrap_or(Value::Null);
    if let Some(m) = qv.as_object_mut() {
        m.insert(
            "status".into(),
            serde_json::json!({ "hard": quota::to_list(hard) }),
        );
    }
    let mut used = Usage::new();
    for ((plural, group), items) in objects {
        let names = quota::matching_resources(plural, group, hard.keys());
        if names.is_empty() {
            continue;
        }
        for n in &names {
            used.entry(n.clone()).or_insert(quota::Amount::count(0));
        }
        for obj in items {
            if quota::quota_matches(&qv, plural, group, obj) {
                let u = quota::usage(plural, group, obj, now);
                used = quota::add(&used, &quota::mask(&u, &names));
            }
        }
    }
    used
}

/// The objects of one kind in `ns`, as JSON: pods from the shared cache, the rest listed.
async fn list_kind(
    ctx: &Ctx,
    ns: &str,
    plural: &str,
    group: &str,
) -> Result<Vec<Value>, kube::Error> {
    if (plural, group) == ("pods", "") {
        return Ok(ctx
            .pods
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter_map(|p| serde_json::to_value(p.as_ref()).ok())
            .collect());
    }
    let Some(ar) = resource_of(&ctx.client, plural, group).await? else {
        return Ok(Vec::new());
    };
    let list = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ar)
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// The served version of (`plural`, `group`), by discovery; None when it is not served.
async fn resource_of(
    client: &Client,
    plural: &str,
    group: &str,
) -> Result<Option<ApiResource>, kube::Error> {
    let g = match discovery::group(client, group).await {
        Ok(g) => g,
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(g.recommended_resources()
        .into_iter()
        .map(|(ar, _)| ar)
        .find(|ar| ar.plural == plural))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rq(hard: Value, scopes: Value) -> ResourceQuota {
        serde_json::from_value(json!({"metadata": {"name": "q", "namespace": "ns"},
            "spec": {"hard": hard, "scopes": scopes}}))
        .unwrap()
    }

    fn pod(name: &str, cpu: Option<&str>, phase: &str) -> Value {
        let resources = match cpu {
            Some(c) => json!({"requests": {"cpu": c}, "limits": {"cpu": c}}),
            None => json!({}),
        };
        json!({"metadata": {"name": name, "namespace": "ns"},
               "spec": {"containers": [{"name": "c", "resources": resources}]},
               "status": {"phase": phase}})
    }

    #[test]
    fn counts_live_pods_and_every_stored_pod() {
        let q = rq(
            json!({"pods": "5", "requests.cpu": "2", "count/pods": "10", "count/configmaps": "3"}),
            json!([]),
        );
        let mut objects = HashMap::new();
        objects.insert(
            ("pods".to_string(), String::new()),
            vec![
                pod("a", Some("500m"), "Running"),
                pod("b", Some("250m"), "Pending"),
                pod("done", Some("1"), "Succeeded"),
            ],
        );
        objects.insert(
            ("configmaps".to_string(), String::new()),
            vec![json!({"metadata": {"name": "x"}})],
        );
        let used = count(&q, &hard_of(&q), &objects, 0);
        assert_eq!(
            quota::pretty(&used),
            "count/configmaps=1,count/pods=3,pods=2,requests.cpu=750m"
        );
    }

    #[test]
    fn scoped_quotas_count_only_their_pods_and_start_at_zero() {
        let q = rq(json!({"pods": "5"}), json!(["BestEffort"]));
        let mut objects = HashMap::new();
        objects.insert(
            ("pods".to_string(), String::new()),
            vec![
                pod("be", None, "Running"),
                pod("burst", Some("1"), "Running"),
            ],
        );
        assert_eq!(
            quota::pretty(&count(&q, &hard_of(&q), &objects, 0)),
            "pods=1"
        );
        objects.clear();
        objects.insert(("pods".to_string(), String::new()), Vec::new());
        assert_eq!(
            quota::pretty(&count(&q, &hard_of(&q), &objects, 0)),
            "pods=0"
        );
    }

    #[test]
    fn a_changed_spec_needs_a_pass() {
        let mut q = rq(json!({"pods": "5"}), json!([]));
        assert!(needs_pass(&q));
        q.status = Some(
            serde_json::from_value(json!({"hard": {"pods": "5"}, "used": {"pods": "0"}})).unwrap(),
        );
        assert!(!needs_pass(&q));
        q.spec.as_mut().unwrap().hard.as_mut().unwrap().insert(
            "services".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
        );
        assert!(needs_pass(&q));
    }
}
