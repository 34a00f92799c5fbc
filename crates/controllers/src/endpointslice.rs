//! The EndpointSlice controller (discovery.k8s.io/v1), as upstream's
//! `pkg/controller/endpointslice`: for every Service with a selector, the pods it selects
//! are published in EndpointSlices of at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints.
//!
//! # Who is listed, and how (spec §6)
//!
//! A selected pod is listed while it is not terminal (`Succeeded`/`Failed`) and has an IP;
//! terminating pods stay listed. Each endpoint's conditions:
//!
//! ```text
//! serving     = pod condition Ready == True   (readiness gates included)
//! terminating = pod.deletionTimestamp != nil
//! ready       = publishNotReadyAddresses || (serving && !terminating)
//! ```
//! Ports are the Service's ports with `targetPort` resolved per pod (a named target port
//! is looked up among the pod's container ports; a pod without it is listed without that
//! port, so pods with different resolutions go to different slices).
//!
//! # Reconcile (one Service key; never two workers on one key)
//!
//! ```text
//! Service gone, selectorless or ExternalName → delete the slices this controller manages
//! desired = endpoints grouped by their resolved port list
//! for each slice we manage (label managed-by = endpointslice-controller.k8s.io):
//!     other ports or address type        → delete
//!     endpoints no longer desired        → removed      (slice updated)
//!     endpoints changed                  → replaced     (slice updated)
//! new endpoints fill updated slices first, then slices with room, then new slices
//! slices left empty → deleted; a Service with no endpoint keeps one empty placeholder
//! labels (the Service's, plus kubernetes.io/service-name, managed-by, headless) and the
//! controlling ownerReference are kept in line
//! ```
//! A cache that has not seen this controller's own last writes (a slice created, updated or
//! deleted a moment ago) makes the reconcile wait and retry instead of acting twice: the
//! [`SliceTracker`] remembers the generation each write produced.
//!
//! Triggers: Service events; pod events (the Services in the pod's namespace that select it
//! or list it); slice events (a managed slice changed by someone else); the resync.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::Store;

use crate::context::{ControllerError, Ctx, Key, deleted, replace};
use crate::queue::WorkQueue;

/// The most endpoints one slice holds (upstream's `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The label naming a slice's Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The label of the slices and Endpoints of a headless Service.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";

/// The caches and queues of the Service endpoint controllers (this one and
/// [`crate::endpoints`]).
pub(crate) struct ServiceState {
    pub(crate) services: Store<Service>,
    pub(crate) slices: Store<EndpointSlice>,
    pub(crate) endpoints: Store<Endpoints>,
    pub(crate) slice_queue: WorkQueue<Key>,
    pub(crate) endpoints_queue: WorkQueue<Key>,
    pub(crate) tracker: SliceTracker,
}

/// The reflector writers of [`ServiceState`]'s caches.
pub(crate) struct ServiceWriters {
    pub(crate) services: kube::runtime::reflector::store::Writer<Service>,
    pub(crate) slices: kube::runtime::reflector::store::Writer<EndpointSlice>,
    pub(crate) endpoints: kube::runtime::reflector::store::Writer<Endpoints>,
}

impl ServiceState {
    pub(crate) fn new() -> (ServiceState, ServiceWriters) {
        let (services, sw) = kube::runtime::reflector::store();
        let (slices, lw) = kube::runtime::reflector::store();
        let (endpoints, ew) = kube::runtime::reflector::store();
        (
            ServiceState {
                services,
                slices,
                endpoints,
                slice_queue: WorkQueue::new(),
                endpoints_queue: WorkQueue::new(),
                tracker: SliceTracker::default(),
            },
            ServiceWriters {
                services: sw,
                slices: lw,
                endpoints: ew,
            },
        )
    }

    fn queue(&self, key: Key) {
        self.slice_queue.add(key.clone());
        self.endpoints_queue.add(key);
    }
}

/// The generation of each slice this controller last wrote (`None`: deleted), per Service.
#[derive(Default)]
pub(crate) struct SliceTracker {
    written: Mutex<HashMap<Key, HashMap<String, Option<i64>>>>,
}

impl SliceTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, HashMap<String, Option<i64>>>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wrote(&self, svc: &Key, slice: &str, generation: Option<i64>) {
        self.lock()
            .entry(svc.clone())
            .or_default()
            .insert(slice.to_string(), generation);
    }

    /// Whether the cached slices of `svc` reflect every write of this controller; entries
    /// the cache has caught up with are forgotten.
    fn cache_is_current(&self, svc: &Key, cached: &[Arc<EndpointSlice>]) -> bool {
        let mut all = self.lock();
        let Some(written) = all.get_mut(svc) else {
            return true;
        };
        written.retain(|name, generation| {
            let seen = cached
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            match (generation, seen) {
                (None, None) => false,
                (None, Some(_)) => true,
                (Some(_), None) => true,
                (Some(g), Some(s)) => s.metadata.generation.unwrap_or(0) < *g,
            }
        });
        let current = written.is_empty();
        if current {
            all.remove(svc);
        }
        current
    }

    fn forget(&self, svc: &Key) {
        self.lock().remove(svc);
    }
}

/// Whether the Service's selector selects `pod` (a Service without selector selects none).
pub(crate) fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if sel.is_empty() {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the Service's endpoints are managed by the controllers (it has a selector and is
/// not ExternalName).
pub(crate) fn managed(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    spec.selector.as_ref().is_some_and(|s| !s.is_empty())
        && spec.type_.as_deref() != Some("ExternalName")
}

/// Upstream's `ShouldPodBeInEndpoints`: not terminal, has an IP, and (unless
/// `include_terminating`) not terminating.
pub(crate) fn should_be_listed(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if pod_ip(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's (first) IP.
pub(crate) fn pod_ip(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .or_else(|| {
            status
                .pod_ips
                .as_ref()?
                .first()
                .map(|p| p.ip.as_str())
                .filter(|ip| !ip.is_empty())
        })
}

/// Whether the pod's `Ready` condition is `True`.
pub(crate) fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The port a Service port reaches on `pod`: the number, or the named container port with
/// the Service port's protocol (upstream's `FindPort`). None if the pod has no such port.
pub(crate) fn resolve_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let proto = port.protocol.as_deref().unwrap_or("TCP");
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto
                })
                .map(|p| p.container_port)
                .or_else(|| name.parse().ok())
        }
    }
}

/// Upstream's `ShouldSetHostname`: the pod names this Service as its subdomain.
pub(crate) fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let h = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| h.to_string())
}

/// A slice's port list in a comparable form.
type PortsKey = Vec<(String, i32, String, Option<String>)>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut k: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    k.sort();
    k
}

fn address_type(svc: &Service) -> &'static str {
    match svc
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .map(String::as_str)
    {
        Some("IPv6") => "IPv6",
        _ => "IPv4",
    }
}

fn family_matches(ip: &str, address_type: &str) -> bool {
    (address_type == "IPv6") == ip.contains(':')
}

/// The endpoints the Service should have, grouped by their resolved ports.
pub(crate) fn desired_endpoints<'a>(
    svc: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
    zone_of: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<PortsKey, (Vec<EndpointPort>, Vec<Endpoint>)> {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let family = address_type(svc);
    let mut out: BTreeMap<PortsKey, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods {
        if !selects(svc, pod) || !should_be_listed(pod, true) {
            continue;
        }
        let Some(ip) = pod_ip(pod).filter(|ip| family_matches(ip, family)) else {
            continue;
        };
        let ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(resolve_port(pod, sp)?),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        let serving = pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = publish || (serving && !terminating);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let ep = Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(pod, svc),
            zone: node.as_deref().and_then(zone_of),
            node_name: node,
            target_ref: Some(crate::pods::target_ref(pod)),
            ..Endpoint::default()
        };
        let entry = out
            .entry(ports_key(&ports))
            .or_insert_with(|| (ports, Vec::new()));
        entry.1.push(ep);
    }
    for (_, eps) in out.values_mut() {
        eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    }
    out
}

/// The labels a managed slice of `svc` carries.
pub(crate) fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.remove(LABEL_MANAGED_BY);
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    mark_headless(svc, &mut labels);
    labels
}

/// Sets the `service.kubernetes.io/headless` label when `svc` is headless, removes it
/// otherwise (the Service's own copy included), as upstream's endpoint controllers do.
pub(crate) fn mark_headless(svc: &Service, labels: &mut BTreeMap<String, String>) {
    if svc
        .spec
        .as_ref()
        .is_some_and(podvisor_api::service::is_headless)
    {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    } else {
        labels.remove(LABEL_HEADLESS);
    }
}

fn owner_ref(svc: &Service) -> OwnerReference {
    let (name, uid) = (&svc.metadata.name, &svc.metadata.uid);
    let (name, uid) = (name.as_deref().unwrap_or(""), uid.as_deref().unwrap_or(""));
    crate::pods::controller_owner_ref("v1", "Service", name, uid)
}

fn slice_prefix(name: &str) -> String {
    let mut p = format!("{name}-");
    if p.len() > 58 {
        p.truncate(57);
        p.push('-');
    }
    p
}

/// What a reconcile writes.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct SlicePlan {
    pub(crate) create: Vec<EndpointSlice>,
    pub(crate) update: Vec<EndpointSlice>,
    pub(crate) delete: Vec<EndpointSlice>,
}

fn endpoint_key(ep: &Endpoint) -> (Vec<String>, Option<String>) {
    (
        ep.addresses.clone(),
        ep.target_ref.as_ref().and_then(|r| r.uid.clone()),
    )
}

/// The writes that turn `existing` (the slices this controller manages for `svc`) into
/// `desired` (see the module essay).
pub(crate) fn plan(
    svc: &Service,
    mut desired: BTreeMap<PortsKey, (Vec<EndpointPort>, Vec<Endpoint>)>,
    existing: &[EndpointSlice],
) -> SlicePlan {
    if desired.is_empty() {
        // The placeholder: one slice with no endpoints and no ports.
        desired.insert(Vec::new(), (Vec::new(), Vec::new()));
    }
    let family = address_type(svc);
    let labels = slice_labels(svc);
    let owner = owner_ref(svc);
    let mut plan = SlicePlan::default();
    // (slice, changed) per port group
    let mut groups: BTreeMap<PortsKey, Vec<(EndpointSlice, bool)>> = BTreeMap::new();
    for s in existing {
        let key = ports_key(s.ports.as_deref().unwrap_or_default());
        if s.address_type != family || !desired.contains_key(&key) {
            plan.delete.push(s.clone());
            continue;
        }
        groups.entry(key).or_default().push((s.clone(), false));
    }
    let new_slice = |ports: &[EndpointPort]| EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(slice_prefix(svc.metadata.name.as_deref().unwrap_or(""))),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        address_type: family.into(),
        endpoints: Vec::new(),
        ports: Some(ports.to_vec()),
    };
    let placeholder_only = desired.values().all(|(_, eps)| eps.is_empty());
    for (key, (ports, eps)) in &desired {
        let mut want: BTreeMap<_, &Endpoint> = eps.iter().map(|e| (endpoint_key(e), e)).collect();
        let slices = groups.entry(key.clone()).or_default();
        for (slice, changed) in slices.iter_mut() {
            let before = slice.endpoints.len();
            slice
                .endpoints
                .retain(|e| want.contains_key(&endpoint_key(e)));
            *changed |= slice.endpoints.len() != before;
            for e in slice.endpoints.iter_mut() {
                if let Some(w) = want.remove(&endpoint_key(e))
                    && e != w
                {
                    *e = w.clone();
                    *changed = true;
                }
            }
        }
        // Fill: updated slices first, then any with room, then new slices.
        let mut rest: Vec<Endpoint> = want.into_values().cloned().collect();
        slices.sort_by_key(|(s, changed)| (!*changed, s.endpoints.len()));
        for (slice, changed) in slices.iter_mut() {
            while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE && !rest.is_empty() {
                slice.endpoints.push(rest.remove(0));
                *changed = true;
            }
        }
        for chunk in rest.chunks(MAX_ENDPOINTS_PER_SLICE) {
            let mut s = new_slice(ports);
            s.endpoints = chunk.to_vec();
            plan.create.push(s);
        }
    }
    let mut kept_placeholder = !plan.create.is_empty();
    for (_, slices) in groups {
        for (mut slice, changed) in slices {
            // An empty slice goes, unless it is the one placeholder of a Service without endpoints.
            let placeholder = placeholder_only && !kept_placeholder;
            if slice.endpoints.is_empty() && !placeholder {
                plan.delete.push(slice);
                continue;
            }
            kept_placeholder = true;
            let meta_changed = slice.metadata.labels.as_ref() != Some(&labels)
                || slice.metadata.owner_references.as_deref() != Some(std::slice::from_ref(&owner));
            if changed || meta_changed {
                slice
                    .endpoints
                    .sort_by(|a, b| a.addresses.cmp(&b.addresses));
                slice.metadata.labels = Some(labels.clone());
                slice.metadata.owner_references = Some(vec![owner.clone()]);
                plan.update.push(slice);
            }
        }
    }
    if !kept_placeholder {
        plan.create.push(new_slice(&[]));
    }
    plan
}

/// The slices this controller manages for the Service `key`, from the cache.
fn managed_slices(ctx: &Ctx, key: &Key) -> Vec<Arc<EndpointSlice>> {
    ctx.svc.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(key.namespace.as_str())
            && s.metadata.labels.as_ref().is_some_and(|l| {
                l.get(LABEL_SERVICE_NAME) == Some(&key.name)
                    && l.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
            })
    })
}

/// Reconciles the slices of the Service `key`.
pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let cached = managed_slices(ctx, key);
    if !ctx.svc.tracker.cache_is_current(key, &cached) {
        return Ok(Some(Duration::from_millis(100)));
    }
    let svc = ctx.svc.services.get(&key.obj_ref());
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let existing: Vec<EndpointSlice> = cached.iter().map(|s| (**s).clone()).collect();
    let plan = match svc.as_deref().filter(|s| managed(s)) {
        None => SlicePlan {
            delete: existing,
            ..SlicePlan::default()
        },
        Some(svc) => {
            let pods = ctx.pods_in(&key.namespace);
            let zone_of = |node: &str| {
                ctx.nodes
                    .get(&kube::runtime::reflector::ObjectRef::new(node))
                    .and_then(|n| n.metadata.labels.clone())
                    .and_then(|l| l.get("topology.kubernetes.io/zone").cloned())
            };
            let desired = desired_endpoints(svc, pods.iter().map(|p| p.as_ref()), &zone_of);
            plan(svc, desired, &existing)
        }
    };
    if svc.is_none() && plan.delete.is_empty() {
        ctx.svc.tracker.forget(key);
    }
    for s in &plan.delete {
        let name = s.metadata.name.clone().unwrap_or_default();
        let r = api.delete(&name, &DeleteParams::default()).await;
        if deleted(r, "EndpointSlice", &key.namespace, &name)? {
            ctx.svc.tracker.wrote(key, &name, None);
        }
    }
    for s in &plan.update {
        let name = s.metadata.name.clone().unwrap_or_default();
        let written = replace(&api, "EndpointSlice", &key.namespace, &name, s).await?;
        ctx.svc
            .tracker
            .wrote(key, &name, written.metadata.generation);
    }
    for s in &plan.create {
        let written = api
            .create(&PostParams::default(), s)
            .await
            .map_err(ControllerError::api(
                "create",
                "EndpointSlice",
                &key.namespace,
                &key.name,
            ))?;
        if let Some(name) = &written.metadata.name {
            ctx.svc
                .tracker
                .wrote(key, name, written.metadata.generation);
        }
    }
    Ok(None)
}

/// Routes a Service event to both endpoint controllers.
pub(crate) fn route_service(ctx: &Ctx, svc: &Service, _deleted: bool) {
    if let Some(key) = Key::of(&svc.metadata) {
        ctx.svc.queue(key);
    }
}

/// Routes a slice event: a managed slice changed by someone else is put back.
pub(crate) fn route_slice(ctx: &Ctx, slice: &EndpointSlice, _deleted: bool) {
    let labels = slice.metadata.labels.as_ref();
    if labels
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .map(String::as_str)
        != Some(MANAGED_BY)
    {
        return;
    }
    if let (Some(ns), Some(name)) = (
        slice.metadata.namespace.clone(),
        labels.and_then(|l| l.get(LABEL_SERVICE_NAME)).cloned(),
    ) {
        ctx.svc.slice_queue.add(Key {
            namespace: ns,
            name,
        });
    }
}

/// Routes a pod event to the Services that select the pod or list it now.
pub(crate) fn route_pod(ctx: &Ctx, pod: &Pod) {
    let Some(ns) = pod.metadata.namespace.as_deref() else {
        return;
    };
    let mut keys = BTreeSet::new();
    for svc in ctx
        .svc
        .services
        .state_filter(|s| s.metadata.namespace.as_deref() == Some(ns))
    {
        if selects(&svc, pod)
            && let Some(k) = Key::of(&svc.metadata)
        {
            keys.insert(k);
        }
    }
    let uid = pod.metadata.uid.as_deref();
    for slice in ctx.svc.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(ns)
            && s.endpoints
                .iter()
                .any(|e| e.target_ref.as_ref().and_then(|r| r.uid.as_deref()) == uid)
    }) {
        if let Some(name) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SERVICE_NAME))
        {
            keys.insert(Key {
                namespace: ns.to_string(),
                name: name.clone(),
            });
        }
    }
    for k in keys {
        ctx.svc.queue(k);
    }
}

/// Queues every Service (both controllers).
pub(crate) fn resync(ctx: &Ctx) {
    for svc in ctx.svc.services.state() {
        if let Some(k) = Key::of(&svc.metadata) {
            ctx.svc.queue(k);
        }
    }
}

#[cfg(test)]
#[path = "endpointslice_tests.rs"]
mod tests;
