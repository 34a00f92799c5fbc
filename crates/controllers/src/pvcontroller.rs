//! The PersistentVolume controller (upstream's `persistentvolume-binder`), the
//! `pvc-protection` and `pv-protection` controllers, and the claim side of the built-in
//! node-local provisioner ([`crate::provision`]).
//!
//! # States
//!
//! ```text
//! claim:   Pending ──bind──▶ Bound ──volume gone / claimRef changed──▶ Lost
//! volume:  Pending ─▶ Available ──bind──▶ Bound ──claim deleted──▶ Released ─┬─ Retain: stays
//!                                                                           ├─ Delete: volume and
//!                                                                           │  its data removed
//!                                                                           └─ fails: Failed
//! ```
//!
//! # Rules (level-triggered: each key is synced from the caches, every 15 s at the latest)
//!
//! * An unbound claim with `spec.volumeName` asks for that volume: bound if the volume
//!   satisfies it (`VolumeMismatch` otherwise), `FailedBinding` while it does not exist.
//! * An unbound claim without it gets the smallest `Available` volume of its class that
//!   fits ([`podvisor_api::volumes::find_matching_volume`]). For a class with
//!   `volumeBindingMode: WaitForFirstConsumer` the controller binds only a volume pre-bound
//!   to the claim: the scheduler picks the node first and either pre-binds a volume there or
//!   annotates the claim with `volume.kubernetes.io/selected-node`; until then the claim is
//!   `Pending` with a `WaitForFirstConsumer` event. A claim with a class and no volume is
//!   provisioned: the claim is annotated with its provisioner; the built-in
//!   `podvisor.io/local-path` provisioner makes a volume at once (`ProvisioningSucceeded`),
//!   any other is awaited (`ExternalProvisioning`). No class and no volume: `FailedBinding`.
//! * Binding writes, in order: the volume's `claimRef` (with the claim's UID; annotated
//!   `bound-by-controller` unless a user pre-bound it), the volume's phase `Bound`, the
//!   claim's `volumeName` and `bind-completed`, the claim's status (`Bound`, capacity and
//!   access modes of the volume). Each write carries the resourceVersion read, so a
//!   concurrent change makes it fail with 409 and the key is synced again; an interrupted
//!   binding is finished by the next sync of either side.
//! * A bound claim whose volume vanished or was bound to another claim becomes `Lost`
//!   (`ClaimLost`, `ClaimMisbound`).
//! * A volume whose claim is gone (or was recreated with another UID) is `Released`, then
//!   reclaimed: `Retain` keeps it; `Delete` removes a volume of the built-in provisioner
//!   (its directory first, [`crate::provision`]) and marks any other `Failed`
//!   (`VolumeFailedDelete`) unless an external provisioner made it; `Recycle` fails
//!   (`VolumeFailedRecycle`).
//! * Protection: a claim carries `kubernetes.io/pvc-protection` and a volume
//!   `kubernetes.io/pv-protection` (admission adds them, this controller too). A deleted
//!   claim keeps its finalizer while a scheduled, unfinished pod uses it (checked against a
//!   live list before removal); a deleted volume while it is `Bound`.
//!
//! Events come from `persistentvolume-controller` (binding) and the protection controllers
//! write no events, as upstream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Api, Resource};
use podvisor_api::volumes::{
    self as vol, ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER,
    ANN_DYNAMICALLY_PROVISIONED, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER,
    LOCAL_PATH_PROVISIONER, PV_PROTECTION_FINALIZER, PVC_PROTECTION_FINALIZER,
};
use podvisor_kit::events::EventType;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::context::{ControllerError, Ctx, Key};
use crate::queue::WorkQueue;

/// The component the binding events come from.
pub(crate) const COMPONENT: &str = "persistentvolume-controller";
/// How often every claim and volume is synced even without events (upstream's
/// `--pvclaimbinder-sync-period`).
const SYNC_PERIOD: Duration = Duration::from_secs(15);

/// The caches and queues of the volume controllers.
pub(crate) struct VolumeState {
    pub(crate) volumes: Store<PersistentVolume>,
    pub(crate) claims: Store<PersistentVolumeClaim>,
    pub(crate) classes: Store<StorageClass>,
    pub(crate) claim_queue: WorkQueue<Key>,
    pub(crate) volume_queue: WorkQueue<String>,
}

/// The cache writers the manager's reflectors feed.
pub(crate) struct VolumeWriters {
    pub(crate) volumes: reflector::store::Writer<PersistentVolume>,
    pub(crate) claims: reflector::store::Writer<PersistentVolumeClaim>,
    pub(crate) classes: reflector::store::Writer<StorageClass>,
}

impl VolumeState {
    pub(crate) fn new() -> (VolumeState, VolumeWriters) {
        let (volumes, vw) = reflector::store();
        let (claims, cw) = reflector::store();
        let (classes, sw) = reflector::store();
        (
            VolumeState {
                volumes,
                claims,
                classes,
                claim_queue: WorkQueue::new(),
                volume_queue: WorkQueue::new(),
            },
            VolumeWriters {
                volumes: vw,
                claims: cw,
                classes: sw,
            },
        )
    }

    /// The cached claim `namespace/name`.
    pub(crate) fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectRef::new(name).within(namespace))
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(&ObjectRef::new(name))
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    /// Queues every claim and volume.
    pub(crate) fn resync(&self) {
        for c in self.claims.state() {
            if let Some(k) = Key::of(&c.metadata) {
                self.claim_queue.add(k);
            }
        }
        for v in self.volumes.state() {
            if let Some(n) = &v.metadata.name {
                self.volume_queue.add(n.clone());
            }
        }
    }
}

/// A pod changed: the claims it uses may have lost their last user, a helper pod of the
/// provisioner may have finished, and a deleted pod's claims (StatefulSet `whenScaled:
/// Delete`) go to the garbage collector.
pub(crate) fn route_pod(ctx: &Ctx, pod: &Pod, deleted: bool) {
    let Some(ns) = pod.metadata.namespace.as_deref() else {
        return;
    };
    if deleted && let Some(uid) = &pod.metadata.uid {
        ctx.queue_owned_by(
            ctx.volumes.claims.state(),
            uid,
            crate::context::GcKey::Claim,
        );
    }
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.persistent_volume_claim {
            ctx.volumes.claim_queue.add(Key {
                namespace: ns.to_string(),
                name: c.claim_name.clone(),
            });
        }
    }
    if let Some(pv) = crate::provision::helper_volume(pod) {
        ctx.volumes.volume_queue.add(pv.to_string());
    }
}

/// Queues every claim and volume every [`SYNC_PERIOD`] until `shutdown` (the manager
/// runs the caches' reflectors and the workers of both queues).
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SYNC_PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => ctx.volumes.resync(),
        }
    }
}

/// A volume changed: it and its claim are synced.
pub(crate) fn route_volume(ctx: &Ctx, pv: &PersistentVolume, _deleted: bool) {
    if let Some(n) = &pv.metadata.name {
        ctx.volumes.volume_queue.add(n.clone());
    }
    if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
        && let (Some(ns), Some(name)) = (&r.namespace, &r.name)
    {
        ctx.volumes.claim_queue.add(Key {
            namespace: ns.clone(),
            name: name.clone(),
        });
    }
}

/// A class changed: every claim may bind or provision differently.
pub(crate) fn route_class(ctx: &Ctx, _class: &StorageClass, _deleted: bool) {
    ctx.volumes.resync();
}

/// A claim changed: it, its volume, its garbage collection and its StatefulSet.
pub(crate) fn route_claim(ctx: &Ctx, claim: &PersistentVolumeClaim, _deleted: bool) {
    if let Some(k) = Key::of(&claim.metadata) {
        ctx.volumes.claim_queue.add(k.clone());
        if claim
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|r| !r.is_empty())
        {
            ctx.gc_queue.add(crate::context::GcKey::Claim(k.clone()));
        }
        // A StatefulSet whose templates make this claim may wait for it.
        for sts in ctx.statefulsets.state() {
            let Some(sk) = Key::of(&sts.metadata) else {
                continue;
            };
            let makes = sk.namespace == k.namespace
                && sts
                    .spec
                    .iter()
                    .flat_map(|s| s.volume_claim_templates.iter().flatten())
                    .filter_map(|t| t.metadata.name.as_deref())
                    .any(|t| k.name.starts_with(&format!("{t}-{}-", sk.name)));
            if makes {
                ctx.sts_queue.add(sk);
            }
        }
    }
    if let Some(v) = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref())
        && !v.is_empty()
    {
        ctx.volumes.volume_queue.add(v.to_string());
    }
    // A volume pointing at a claim of that name (it may be gone, or recreated).
    for pv in ctx.volumes.volumes.state() {
        if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
            && r.name == claim.metadata.name
            && r.namespace == claim.metadata.namespace
            && let Some(n) = &pv.metadata.name
        {
            ctx.volumes.volume_queue.add(n.clone());
        }
    }
}

fn has_annotation(meta: &kube::api::ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

fn set_annotation(meta: &mut kube::api::ObjectMeta, key: &str, value: &str) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), value.to_string());
}

fn has_finalizer(meta: &kube::api::ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

fn claims_api(ctx: &Ctx, ns: &str) -> Api<PersistentVolumeClaim> {
    Api::namespaced(ctx.client.clone(), ns)
}

fn volumes_api(ctx: &Ctx) -> Api<PersistentVolume> {
    Api::all(ctx.client.clone())
}

fn claim_err(
    op: &'static str,
    c: &PersistentVolumeClaim,
) -> impl FnOnce(kube::Error) -> ControllerError {
    ControllerError::api(
        op,
        "PersistentVolumeClaim",
        c.metadata.namespace.as_deref().unwrap_or_default(),
        c.metadata.name.as_deref().unwrap_or_default(),
    )
}

fn volume_err(
    op: &'static str,
    v: &PersistentVolume,
) -> impl FnOnce(kube::Error) -> ControllerError {
    ControllerError::api(
        op,
        "PersistentVolume",
        "",
        v.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Syncs claim `key`: protection, then binding.
pub(crate) async fn sync_claim_key(
    ctx: &Ctx,
    key: &Key,
) -> Result<Option<Duration>, ControllerError> {
    let Some(claim) = ctx.volumes.claim(&key.namespace, &key.name) else {
        return Ok(None);
    };
    let claim = match protect_claim(ctx, &claim).await? {
        Some(c) => c,
        None => return Ok(None),
    };
    sync_claim(ctx, &claim).await
}

/// The pvc-protection controller: adds the finalizer to a live claim, removes it from a
/// deleted claim no pod uses. Returns the claim to sync on (None: nothing more to do).
async fn protect_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
) -> Result<Option<PersistentVolumeClaim>, ControllerError> {
    let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let api = claims_api(ctx, ns);
    let protected = has_finalizer(&claim.metadata, PVC_PROTECTION_FINALIZER);
    if claim.metadata.deletion_timestamp.is_none() || !protected {
        return set_finalizer(&api, claim, PVC_PROTECTION_FINALIZER, true)
            .await
            .map_err(claim_err("add finalizer to", claim));
    }
    let cached = ctx.pods_in(ns);
    if cached.iter().any(|p| pod_uses_claim(p, name)) {
        return Ok(Some(claim.clone()));
    }
    // The cache may lag a pod just made: ask the API before letting the claim go.
    let live = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(claim_err("list pods using", claim))?;
    if live.items.iter().any(|p| pod_uses_claim(p, name)) {
        return Ok(Some(claim.clone()));
    }
    info!(%ns, claim = %name, "removing the pvc-protection finalizer: no pod uses the claim");
    set_finalizer(&api, claim, PVC_PROTECTION_FINALIZER, false)
        .await
        .map_err(claim_err("remove finalizer from", claim))
}

/// Puts finalizer `f` on a live object (`on`) or takes it off; writes only when that
/// changes something (fenced by the resourceVersion read). Returns the object as written
/// (None: it went away). A deleted object never gets a finalizer back.
async fn set_finalizer<K>(
    api: &Api<K>,
    obj: &K,
    f: &str,
    on: bool,
) -> Result<Option<K>, kube::Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let meta = obj.meta();
    let has = has_finalizer(meta, f);
    if has == on || (on && meta.deletion_timestamp.is_some()) {
        return Ok(Some(obj.clone()));
    }
    let mut o = obj.clone();
    let list = o.meta_mut().finalizers.get_or_insert_with(Vec::new);
    if on {
        list.push(f.to_string());
    } else {
        list.retain(|x| x != f);
    }
    let name = meta.name.clone().unwrap_or_default();
    match api.replace(&name, &PostParams::default(), &o).await {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a scheduled pod that has not finished uses claim `name` (of its namespace).
pub(crate) fn pod_uses_claim(pod: &Pod, name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if spec.node_name.as_deref().is_none_or(str::is_empty) || crate::pods::is_terminal(pod) {
        return false;
    }
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    spec.volumes.iter().flatten().any(|v| {
        v.persistent_volume_claim
            .as_ref()
            .is_some_and(|c| c.claim_name == name)
            || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == name)
    })
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claim_event(
    ctx: &Ctx,
    c: &PersistentVolumeClaim,
    t: EventType,
    reason: &str,
    msg: impl Into<String>,
) {
    ctx.event_about(COMPONENT, c, t, reason, msg);
}

fn volume_event(
    ctx: &Ctx,
    v: &PersistentVolume,
    t: EventType,
    reason: &str,
    msg: impl Into<String>,
) {
    ctx.event_about(COMPONENT, v, t, reason, msg);
}

/// Sets the claim's phase (and, when bound, capacity and access modes from `volume`).
async fn set_claim_phase(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> Result<PersistentVolumeClaim, ControllerError> {
    let old = claim.status.clone().unwrap_or_default();
    let mut status = PersistentVolumeClaimStatus {
        phase: Some(phase.to_string()),
        ..old.clone()
    };
    if let Some(v) = volume {
        let spec = v.spec.clone().unwrap_or_default();
        status.capacity = spec.capacity;
        status.access_modes = spec.access_modes;
    } else if phase != "Bound" {
        status.capacity = None;
        status.access_modes = None;
    }
    if status == old {
        return Ok(claim.clone());
    }
    let mut c = claim.clone();
    c.status = Some(status);
    let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    claims_api(ctx, ns)
        .replace_status(name, &PostParams::default(), &c)
        .await
        .map_err(claim_err("update status of", claim))
}

async fn set_volume_phase(
    ctx: &Ctx,
    volume: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Result<PersistentVolume, ControllerError> {
    if volume_phase(volume) == phase
        && volume.status.as_ref().and_then(|s| s.message.as_deref()) == message
    {
        return Ok(volume.clone());
    }
    let mut v = volume.clone();
    let old = v.status.clone().unwrap_or_default();
    v.status = Some(PersistentVolumeStatus {
        phase: Some(phase.to_string()),
        message: message.map(String::from),
        reason: None,
        last_phase_transition_time: if old.phase.as_deref() == Some(phase) {
            old.last_phase_transition_time
        } else {
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                ctx.now(),
            ))
        },
    });
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    volumes_api(ctx)
        .replace_status(name, &PostParams::default(), &v)
        .await
        .map_err(volume_err("update status of", volume))
}

/// Upstream's `syncClaim`.
async fn sync_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
) -> Result<Option<Duration>, ControllerError> {
    if has_annotation(&claim.metadata, ANN_BIND_COMPLETED) {
        return sync_bound_claim(ctx, claim).await;
    }
    let wanted = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if wanted.is_empty() {
        return sync_unbound_claim(ctx, claim).await;
    }
    // The user asked for a specific volume.
    let Some(volume) = ctx.volumes.volume(wanted) else {
        claim_event(
            ctx,
            claim,
            EventType::Warning,
            "FailedBinding",
            format!("volume {wanted:?} not found"),
        );
        set_claim_phase(ctx, claim, "Pending", None).await?;
        return Ok(None);
    };
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if claim_ref.is_none() {
        if let Err(msg) = vol::check_volume_satisfies_claim(&volume, claim) {
            claim_event(
                ctx,
                claim,
                EventType::Warning,
                "VolumeMismatch",
                format!("Cannot bind to requested volume {wanted:?}: {msg}"),
            );
            set_claim_phase(ctx, claim, "Pending", None).await?;
            return Ok(None);
        }
        bind(ctx, &volume, claim).await?;
        return Ok(None);
    }
    if !vol::is_bound_to_claim(&volume, claim) {
        // Claimed by someone else: wait.
        set_claim_phase(ctx, claim, "Pending", None).await?;
        return Ok(None);
    }
    bind(ctx, &volume, claim).await?;
    Ok(None)
}

fn delay_binding(ctx: &Ctx, claim: &PersistentVolumeClaim) -> bool {
    let class = vol::claim_class(claim);
    !class.is_empty()
        && ctx
            .volumes
            .class(class)
            .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
}

async fn sync_unbound_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
) -> Result<Option<Duration>, ControllerError> {
    let delay = delay_binding(ctx, claim);
    let volumes = ctx.volumes.volumes.state();
    let found =
        vol::find_matching_volume(claim, volumes.iter().map(|v| v.as_ref()), None, delay).cloned();
    if let Some(volume) = found {
        bind(ctx, &volume, claim).await?;
        return Ok(None);
    }
    let selected = has_annotation(&claim.metadata, ANN_SELECTED_NODE);
    if delay && !selected {
        claim_event(
            ctx,
            claim,
            EventType::Normal,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        );
    } else if !vol::claim_class(claim).is_empty() {
        let claim = crate::provision::provision_claim(ctx, claim).await?;
        set_claim_phase(ctx, &claim, "Pending", None).await?;
        return Ok(None);
    } else {
        claim_event(
            ctx,
            claim,
            EventType::Normal,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
        );
    }
    set_claim_phase(ctx, claim, "Pending", None).await?;
    Ok(None)
}

/// Marks a bound claim `Lost` (terminal), with the event once.
async fn lose_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    reason: &str,
    message: &str,
) -> Result<Option<Duration>, ControllerError> {
    if claim_phase(claim) != "Lost" {
        claim_event(ctx, claim, EventType::Warning, reason, message);
    }
    set_claim_phase(ctx, claim, "Lost", None).await?;
    Ok(None)
}

async fn sync_bound_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
) -> Result<Option<Duration>, ControllerError> {
    let name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if name.is_empty() {
        return lose_claim(
            ctx,
            claim,
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        )
        .await;
    }
    let Some(volume) = ctx.volumes.volume(name) else {
        return lose_claim(
            ctx,
            claim,
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        )
        .await;
    };
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    match claim_ref {
        None => bind(ctx, &volume, claim).await?,
        Some(r) if r.uid.as_deref() == claim.metadata.uid.as_deref() => {
            bind(ctx, &volume, claim).await?
        }
        Some(_) => {
            return lose_claim(
                ctx,
                claim,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )
            .await;
        }
    }
    Ok(None)
}

/// The reference a volume keeps to its claim.
fn claim_ref_of(claim: &PersistentVolumeClaim) -> ObjectReference {
    claim.object_ref(&())
}

/// Upstream's `bind`: volume first, then the claim; each step only when needed.
async fn bind(
    ctx: &Ctx,
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), ControllerError> {
    let pv_name = volume.metadata.name.clone().unwrap_or_default();
    let mut volume = volume.clone();
    let current = volume.spec.as_ref().and_then(|s| s.claim_ref.clone());
    let uid_set = current
        .as_ref()
        .is_some_and(|r| r.uid.is_some() && r.uid == claim.metadata.uid);
    if !uid_set {
        let mut v = volume.clone();
        let spec = v.spec.get_or_insert_with(Default::default);
        if current.is_none() {
            set_annotation(&mut v.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
        }
        let spec_ref = spec.claim_ref.get_or_insert_with(Default::default);
        *spec_ref = claim_ref_of(claim);
        volume = volumes_api(ctx)
            .replace(&pv_name, &PostParams::default(), &v)
            .await
            .map_err(volume_err("bind", &v))?;
    }
    let volume = set_volume_phase(ctx, &volume, "Bound", None).await?;
    let mut claim = claim.clone();
    let named = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if named != pv_name || !has_annotation(&claim.metadata, ANN_BIND_COMPLETED) {
        let mut c = claim.clone();
        if named.is_empty() {
            set_annotation(&mut c.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
        }
        set_annotation(&mut c.metadata, ANN_BIND_COMPLETED, "yes");
        c.spec.get_or_insert_with(Default::default).volume_name = Some(pv_name.clone());
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        let name = claim.metadata.name.clone().unwrap_or_default();
        claim = claims_api(ctx, &ns)
            .replace(&name, &PostParams::default(), &c)
            .await
            .map_err(claim_err("bind", &c))?;
        info!(%ns, claim = %name, volume = %pv_name, "claim bound");
    }
    set_claim_phase(ctx, &claim, "Bound", Some(&volume)).await?;
    Ok(())
}

/// Syncs volume `name`: protection, then phase and reclaim.
pub(crate) async fn sync_volume_key(
    ctx: &Ctx,
    name: &str,
) -> Result<Option<Duration>, ControllerError> {
    let Some(volume) = ctx.volumes.volume(name) else {
        return Ok(None);
    };
    let Some(volume) = protect_volume(ctx, &volume).await? else {
        return Ok(None);
    };
    sync_volume(ctx, &volume).await
}

/// The pv-protection controller: the finalizer on a live volume, off a deleted one that
/// is not bound.
async fn protect_volume(
    ctx: &Ctx,
    volume: &PersistentVolume,
) -> Result<Option<PersistentVolume>, ControllerError> {
    let keep = volume.metadata.deletion_timestamp.is_none() || volume_phase(volume) == "Bound";
    let written = set_finalizer(&volumes_api(ctx), volume, PV_PROTECTION_FINALIZER, keep)
        .await
        .map_err(volume_err("update the finalizers of", volume))?;
    // A deleted volume whose finalizer came off is gone (or about to be).
    Ok(written.filter(|_| keep))
}

/// Upstream's `syncVolume`.
async fn sync_volume(
    ctx: &Ctx,
    volume: &PersistentVolume,
) -> Result<Option<Duration>, ControllerError> {
    let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        set_volume_phase(ctx, volume, "Available", None).await?;
        return Ok(None);
    };
    if r.uid.as_deref().is_none_or(str::is_empty) {
        // Pre-bound by a user, the claim not bound yet.
        set_volume_phase(ctx, volume, "Available", None).await?;
        return Ok(None);
    }
    let ns = r.namespace.as_deref().unwrap_or_default();
    let name = r.name.as_deref().unwrap_or_default();
    let mut claim = ctx.volumes.claim(ns, name);
    if claim.is_none() {
        // The cache may lag a claim just made.
        claim = claims_api(ctx, ns)
            .get_opt(name)
            .await
            .map_err(volume_err("get the claim of", volume))?
            .map(Arc::new);
    }
    let claim = claim.filter(|c| c.metadata.uid == r.uid);
    let Some(claim) = claim else {
        // The claim is gone: release and reclaim.
        let volume = if matches!(volume_phase(volume), "Released" | "Failed") {
            volume.clone()
        } else {
            info!(volume = ?volume.metadata.name, "volume released");
            set_volume_phase(ctx, volume, "Released", None).await?
        };
        return reclaim(ctx, &volume).await;
    };
    let bound_to = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    let pv_name = volume.metadata.name.as_deref().unwrap_or_default();
    if bound_to.is_empty() {
        // The claim's side is not done yet: let its sync finish the binding.
        ctx.volumes.claim_queue.add(Key {
            namespace: ns.into(),
            name: name.into(),
        });
        return Ok(None);
    }
    if bound_to == pv_name {
        set_volume_phase(ctx, volume, "Bound", None).await?;
        return Ok(None);
    }
    // The claim was bound to another volume.
    let dynamic = has_annotation(&volume.metadata, ANN_DYNAMICALLY_PROVISIONED);
    if dynamic && reclaim_policy(volume) == "Delete" {
        let volume = if matches!(volume_phase(volume), "Released" | "Failed") {
            volume.clone()
        } else {
            set_volume_phase(ctx, volume, "Released", None).await?
        };
        return reclaim(ctx, &volume).await;
    }
    unbind(ctx, volume).await?;
    Ok(None)
}

/// Upstream's `unbindVolume`: a controller-made binding is dropped, a user's pre-binding
/// loses only the UID.
async fn unbind(ctx: &Ctx, volume: &PersistentVolume) -> Result<(), ControllerError> {
    let mut v = volume.clone();
    let by_controller = has_annotation(&v.metadata, ANN_BOUND_BY_CONTROLLER);
    if let Some(spec) = v.spec.as_mut() {
        if by_controller {
            spec.claim_ref = None;
        } else if let Some(r) = spec.claim_ref.as_mut() {
            r.uid = None;
        }
    }
    if let Some(a) = v.metadata.annotations.as_mut() {
        a.remove(ANN_BOUND_BY_CONTROLLER);
    }
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    let v = volumes_api(ctx)
        .replace(name, &PostParams::default(), &v)
        .await
        .map_err(volume_err("unbind", volume))?;
    set_volume_phase(ctx, &v, "Available", None).await?;
    Ok(())
}

fn reclaim_policy(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// Upstream's `reclaimVolume` for a `Released` volume.
async fn reclaim(
    ctx: &Ctx,
    volume: &PersistentVolume,
) -> Result<Option<Duration>, ControllerError> {
    match reclaim_policy(volume) {
        "Retain" => Ok(None),
        "Recycle" => {
            if volume_phase(volume) != "Failed" {
                volume_event(
                    ctx,
                    volume,
                    EventType::Warning,
                    "VolumeFailedRecycle",
                    "No recycler plugin found for the volume!",
                );
                set_volume_phase(
                    ctx,
                    volume,
                    "Failed",
                    Some("No recycler plugin found for the volume!"),
                )
                .await?;
            }
            Ok(None)
        }
        _ => {
            let by = volume
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANN_DYNAMICALLY_PROVISIONED))
                .map(String::as_str);
            match by {
                Some(LOCAL_PATH_PROVISIONER) => crate::provision::delete_volume(ctx, volume).await,
                // An external provisioner deletes what it made.
                Some(_) => Ok(None),
                None => {
                    let msg = format!(
                        "error getting deleter volume plugin for volume {:?}: no deletable volume plugin matched",
                        volume.metadata.name.as_deref().unwrap_or_default()
                    );
                    if volume_phase(volume) != "Failed" {
                        volume_event(ctx, volume, EventType::Warning, "VolumeFailedDelete", &msg);
                        set_volume_phase(ctx, volume, "Failed", Some(&msg)).await?;
                    }
                    Ok(None)
                }
            }
        }
    }
}

/// Marks a volume whose deletion failed.
pub(crate) async fn delete_failed(
    ctx: &Ctx,
    volume: &PersistentVolume,
    msg: &str,
) -> Result<(), ControllerError> {
    volume_event(ctx, volume, EventType::Warning, "VolumeFailedDelete", msg);
    set_volume_phase(ctx, volume, "Failed", Some(msg)).await?;
    Ok(())
}

/// Deletes the volume object (its data is gone already).
pub(crate) async fn delete_volume_object(
    ctx: &Ctx,
    volume: &PersistentVolume,
) -> Result<(), ControllerError> {
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: volume.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match volumes_api(ctx).delete(name, &dp).await {
        Ok(_) => {
            info!(volume = %name, "volume deleted");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(volume_err("delete", volume)(e)),
    }
}

/// Annotates the claim with its class's provisioner (upstream's `setClaimProvisioner`).
pub(crate) async fn set_claim_provisioner(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    provisioner: &str,
) -> Result<PersistentVolumeClaim, ControllerError> {
    let a = claim.metadata.annotations.as_ref();
    if a.and_then(|a| a.get(ANN_STORAGE_PROVISIONER))
        .map(String::as_str)
        == Some(provisioner)
        && a.and_then(|a| a.get(ANN_BETA_STORAGE_PROVISIONER))
            .map(String::as_str)
            == Some(provisioner)
    {
        return Ok(claim.clone());
    }
    let mut c = claim.clone();
    set_annotation(&mut c.metadata, ANN_STORAGE_PROVISIONER, provisioner);
    set_annotation(&mut c.metadata, ANN_BETA_STORAGE_PROVISIONER, provisioner);
    let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    claims_api(ctx, ns)
        .replace(name, &PostParams::default(), &c)
        .await
        .map_err(claim_err("annotate", claim))
}

/// An event about a claim from the binder.
pub(crate) fn event_on_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    t: EventType,
    reason: &str,
    msg: impl Into<String>,
) {
    claim_event(ctx, claim, t, reason, msg);
}

/// The class of `name`, from the cache.
pub(crate) fn storage_class(ctx: &Ctx, name: &str) -> Option<Arc<StorageClass>> {
    ctx.volumes.class(name)
}

/// The cached volume `name`.
pub(crate) fn cached_volume(ctx: &Ctx, name: &str) -> Option<Arc<PersistentVolume>> {
    ctx.volumes.volume(name)
}
