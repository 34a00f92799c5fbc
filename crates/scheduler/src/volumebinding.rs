//! The VolumeBinding plugin: a pod's PersistentVolumeClaims decide which nodes it may go
//! to, and a `WaitForFirstConsumer` claim is bound only once its pod's node is chosen.
//!
//! # Rules (upstream's `pkg/scheduler/framework/plugins/volumebinding`)
//!
//! * Pre-filter (unresolvable, the message ends the attempt): a claim that does not exist
//!   (`persistentvolumeclaim "c" not found`), is being deleted (`... is being deleted`), or
//!   is unbound while its class binds `Immediate`ly (`pod has unbound immediate
//!   PersistentVolumeClaims`: the PV controller binds those).
//! * Filter, per node: a bound claim's volume must exist (`node(s) unavailable due to one
//!   or more pvc(s) bound to non-existent pv(s)`) and admit the node by its node affinity
//!   (`node(s) had volume node affinity conflict`); an unbound `WaitForFirstConsumer` claim
//!   needs an available volume that fits it on that node, or a class that can provision
//!   there (its `allowedTopologies`; the built-in local-path provisioner needs the node's
//!   storage root) — else `node(s) didn't find available persistent volumes to bind`.
//! * Pre-bind, in the bind task before `pods/binding`: for each such claim, the chosen
//!   node's best volume is pre-bound to it (its `claimRef`, written with the cached
//!   resourceVersion, so two pods cannot take one volume), or the claim is annotated with
//!   `volume.kubernetes.io/selected-node` for its provisioner; then the task waits (at
//!   most [`BIND_TIMEOUT`]) until the PV controller reports every claim bound. A failure
//!   fails the bind, and the pod is retried.
//!
//! The caches (claims, volumes, classes) are reflectors of the term; any change of them
//! moves the unschedulable pods back to the active queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use podvisor_api::volumes::{
    self as vol, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_LOCAL_STORAGE_ROOT,
    ANN_SELECTED_NODE, LOCAL_PATH_PROVISIONER, NodeView,
};
use podvisor_kit::reflect::{Cached, reflect};
use tokio::sync::Notify;

use crate::cache::NodeData;
use crate::filters::{FilterResult, Rejection};

/// Reason: a bound claim's volume does not admit the node.
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// Reason: no volume and no provisioning for an unbound claim on the node.
pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// Reason: a bound claim's volume does not exist.
pub const REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// Pre-filter message: an `Immediate` claim is not bound yet.
pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// How long the pre-bind step waits for the claims to be bound.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(120);

/// The claims, volumes and classes the plugin reads.
#[derive(Clone)]
pub struct VolumeCache {
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    changed: Arc<Notify>,
}

impl VolumeCache {
    /// The caches and the future that feeds them (run it for the term).
    pub fn start(client: &Client) -> (VolumeCache, impl Future<Output = ()> + Send + 'static) {
        let (claims, cw) = reflector::store();
        let (volumes, vw) = reflector::store();
        let (classes, sw) = reflector::store();
        let changed = Arc::new(Notify::new());
        let feed = {
            let (c, n) = (client.clone(), changed.clone());
            async move {
                tokio::join!(
                    follow(Api::<PersistentVolumeClaim>::all(c.clone()), cw, n.clone()),
                    follow(Api::<PersistentVolume>::all(c.clone()), vw, n.clone()),
                    follow(Api::<StorageClass>::all(c), sw, n),
                );
            }
        };
        (
            VolumeCache {
                claims,
                volumes,
                classes,
                changed,
            },
            feed,
        )
    }

    /// Whether the three initial lists are done.
    pub fn ready(&self) -> bool {
        is_ready(&self.claims) && is_ready(&self.volumes) && is_ready(&self.classes)
    }

    /// Resolves when a claim, volume or class changed.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectRef::new(name).within(ns))
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(&ObjectRef::new(name))
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(&ObjectRef::new(name))
    }
}

fn is_ready<K>(s: &Store<K>) -> bool
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    // A store is ready once its first list was applied; `state()` is empty before, but
    // so is an empty cluster's: `wait_until_ready` is the authority, polled without
    // waiting.
    futures::FutureExt::now_or_never(s.wait_until_ready()).is_some_and(|r| r.is_ok())
}

async fn follow<K: Cached>(api: Api<K>, writer: reflector::store::Writer<K>, changed: Arc<Notify>) {
    let notify = |event: watcher::Event<K>| {
        if !matches!(event, watcher::Event::Init) {
            changed.notify_one()
        }
    };
    let config = watcher::Config::default();
    reflect(api, config, writer, "volume", tracing::Level::WARN, notify).await
}

/// What a pod's claims ask of a node, from the pre-filter.
#[derive(Debug, Clone, Default)]
pub struct PodClaims {
    /// Claims bound to a volume: (claim, volume name).
    bound: Vec<(Arc<PersistentVolumeClaim>, String)>,
    /// Unbound claims of `WaitForFirstConsumer` classes.
    delayed: Vec<Arc<PersistentVolumeClaim>>,
}

impl PodClaims {
    /// Whether the pod has no claim to take care of.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty() && self.delayed.is_empty()
    }
}

fn claim_names(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{pod_name}-{}", v.name))
            }
        })
        .collect()
}

/// Whether the pod has any claim (so the volume caches matter to it).
pub fn uses_claims(pod: &Pod) -> bool {
    !claim_names(pod).is_empty()
}

/// The pre-filter: the pod's claims, or the unresolvable message.
pub fn prefilter(cache: &VolumeCache, pod: &Pod) -> Result<PodClaims, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = PodClaims::default();
    let mut unbound_immediate = false;
    for name in claim_names(pod) {
        let Some(claim) = cache.claim(ns, &name) else {
            return Err(format!("persistentvolumeclaim {name:?} not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        let volume = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if !volume.is_empty() {
            out.bound.push((claim, volume));
            continue;
        }
        let class = vol::claim_class(&claim);
        let delayed = !class.is_empty()
            && cache
                .class(class)
                .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        if delayed {
            out.delayed.push(claim);
        } else {
            unbound_immediate = true;
        }
    }
    if unbound_immediate {
        return Err(REASON_UNBOUND_IMMEDIATE.to_string());
    }
    Ok(out)
}

fn reject(reason: &str) -> FilterResult {
    Err(Rejection {
        reasons: vec![reason.to_string()],
        unresolvable: true,
    })
}

/// The filter for one node.
pub fn filter(
    cache: &VolumeCache,
    claims: &PodClaims,
    name: &str,
    node: &NodeData,
) -> FilterResult {
    for (_, pv_name) in &claims.bound {
        let Some(pv) = cache.volume(pv_name) else {
            return reject(REASON_PV_NOT_EXIST);
        };
        if !vol::node_affinity_matches(&pv, &node.labels, name) {
            return reject(REASON_NODE_CONFLICT);
        }
    }
    let volumes = cache.volumes.state();
    let view = NodeView {
        labels: &node.labels,
        name,
    };
    for claim in &claims.delayed {
        let found =
            vol::find_matching_volume(claim, volumes.iter().map(|v| v.as_ref()), Some(view), true);
        if found.is_some() || can_provision(cache, claim, node, name) {
            continue;
        }
        return reject(REASON_BIND_CONFLICT);
    }
    Ok(())
}

fn can_provision(
    cache: &VolumeCache,
    claim: &PersistentVolumeClaim,
    node: &NodeData,
    name: &str,
) -> bool {
    let Some(class) = cache.class(vol::claim_class(claim)) else {
        return false;
    };
    if let Some(topologies) = class.allowed_topologies.as_deref()
        && !topologies.is_empty()
        && !topologies.iter().any(|t| {
            t.match_label_expressions.iter().flatten().all(|r| {
                node.labels
                    .get(&r.key)
                    .is_some_and(|v| r.values.contains(v))
            })
        })
    {
        return false;
    }
    if class.provisioner == LOCAL_PATH_PROVISIONER {
        return node
            .node
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANN_LOCAL_STORAGE_ROOT));
    }
    let _ = name;
    true
}

/// What the bind task must do before binding the pod to `node`.
#[derive(Debug, Clone)]
pub struct BindPlan {
    node: String,
    /// (claim, the volume pre-bound to it on the node, if a static one fits).
    claims: Vec<(Arc<PersistentVolumeClaim>, Option<Arc<PersistentVolume>>)>,
    /// Every claim of the pod (namespace, name), to wait for.
    all: Vec<(String, String)>,
}

/// The pre-bind plan for the chosen node (None: nothing to do).
pub fn plan(
    cache: &VolumeCache,
    claims: &PodClaims,
    node: &str,
    data: &NodeData,
) -> Option<BindPlan> {
    if claims.delayed.is_empty() {
        return None;
    }
    let volumes = cache.volumes.state();
    let view = NodeView {
        labels: &data.labels,
        name: node,
    };
    let mut taken: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for claim in &claims.delayed {
        let found = vol::find_matching_volume(
            claim,
            volumes
                .iter()
                .map(|v| v.as_ref())
                .filter(|v| !taken.iter().any(|t| Some(t) == v.metadata.name.as_ref())),
            Some(view),
            true,
        )
        .map(|v| Arc::new(v.clone()));
        if let Some(v) = &found
            && let Some(n) = &v.metadata.name
        {
            taken.push(n.clone());
        }
        out.push((claim.clone(), found));
    }
    let all = claims
        .delayed
        .iter()
        .chain(claims.bound.iter().map(|(c, _)| c))
        .map(|c| {
            (
                c.metadata.namespace.clone().unwrap_or_default(),
                c.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    Some(BindPlan {
        node: node.to_string(),
        claims: out,
        all,
    })
}

fn timeout_error(msg: String) -> kube::Error {
    kube::Error::Api(Box::new(
        kube::core::Status::failure(&msg, "Timeout").with_code(504),
    ))
}

impl BindPlan {
    /// Pre-binds the volumes or selects the node on the claims, then waits for the PV
    /// controller to bind every claim.
    pub async fn execute(&self, client: &Client) -> Result<(), kube::Error> {
        for (claim, volume) in &self.claims {
            let ns = claim.metadata.namespace.clone().unwrap_or_default();
            let name = claim.metadata.name.clone().unwrap_or_default();
            match volume {
                Some(pv) => {
                    let mut v = (**pv).clone();
                    v.metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
                    v.spec.get_or_insert_with(Default::default).claim_ref =
                        Some(k8s_openapi::api::core::v1::ObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("PersistentVolumeClaim".into()),
                            namespace: Some(ns.clone()),
                            name: Some(name.clone()),
                            uid: claim.metadata.uid.clone(),
                            resource_version: claim.metadata.resource_version.clone(),
                            field_path: None,
                        });
                    let pv_name = v.metadata.name.clone().unwrap_or_default();
                    Api::<PersistentVolume>::all(client.clone())
                        .replace(&pv_name, &PostParams::default(), &v)
                        .await?;
                }
                None => {
                    let patch = serde_json::json!({"metadata": {"annotations": {
                        ANN_SELECTED_NODE: self.node,
                    }}});
                    Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
        for (ns, name) in &self.all {
            let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
            loop {
                let c = api.get(name).await?;
                let bound = c
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(ANN_BIND_COMPLETED))
                    && c.spec
                        .as_ref()
                        .and_then(|s| s.volume_name.as_deref())
                        .is_some_and(|v| !v.is_empty())
                    && c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
                if bound {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(timeout_error(format!(
                        "binding volumes: timed out waiting for persistentvolumeclaim {ns}/{name} to be bound"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}
