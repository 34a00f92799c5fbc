//! Object operations shared by every kind: create, guaranteed update, delete (with
//! finalizers and pod graceful deletion), namespace checks.
//!
//! # Pod graceful deletion (spec §1.1–1.2)
//!
//! ```text
//! first DELETE:  period = opts.grace ?? spec.terminationGracePeriodSeconds ?? 0
//!                period = 0 if unscheduled or terminal; negative -> 1
//!                write deletionTimestamp = now + period, deletionGracePeriodSeconds = period,
//!                generation + 1                                   (watchers: MODIFIED)
//!                period == 0 and no finalizers -> remove           (watchers: DELETED)
//! later DELETE:  pending grace nil/0 -> remove (if no finalizers)
//!                shorter grace -> deadline = old deadline - old grace + new grace; write;
//!                                 new grace 0 and no finalizers -> remove
//!                otherwise no-op; the current object is returned
//! ```
//! Nothing removes a pod when its deadline passes: the node agent does, with grace 0 and a
//! UID precondition. Objects with finalizers stay (with deletionTimestamp) until an update
//! empties `metadata.finalizers`; that update removes them.

use podvisor_kit::WallClock;
use podvisor_store::StoreError;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::objects::{self, finalizers, format_time, meta_str, set_meta};
use crate::patch;
use crate::registry::{self, NAMESPACES, PODS, ResourceKind, Strategy};
use crate::storage::Storage;
use crate::strategy;

/// Namespaces that exist from the start.
pub const INITIAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
/// Namespaces that may not be deleted.
pub const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Parsed `DeleteOptions` (body and query merged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `propagationPolicy` (or the deprecated `orphanDependents`): `Orphan`, `Background`
    /// or `Foreground`; `None` keeps the object's finalizers as they are.
    pub propagation_policy: Option<String>,
}

/// The finalizer the garbage collector honours for `propagationPolicy: Foreground`.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer the garbage collector honours for `propagationPolicy: Orphan`.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// Kinds whose dependents the garbage collector tracks: deleting one with `Orphan` or
/// `Foreground` propagation gets the matching finalizer (other kinds have no dependents
/// the collector could wait for, so their deletion stays background).
fn collects_dependents(kind: &ResourceKind) -> bool {
    matches!(
        (kind.group, kind.kind),
        (
            "apps",
            "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet"
        ) | ("batch", "Job" | "CronJob")
            | ("", "ReplicationController")
    )
}

/// Upstream's `deletionFinalizersForGarbageCollection`: the object's finalizers after a
/// delete with `policy` (`Orphan` adds `orphan` and drops `foregroundDeletion`,
/// `Foreground` the reverse, `Background` drops both). `None` when nothing changes.
fn gc_finalizers(kind: &ResourceKind, obj: &Value, policy: Option<&str>) -> Option<Vec<String>> {
    if !collects_dependents(kind) {
        return None;
    }
    let (add, drop): (Option<&str>, &[&str]) = match policy? {
        "Orphan" => (Some(ORPHAN_FINALIZER), &[FOREGROUND_FINALIZER]),
        "Foreground" => (Some(FOREGROUND_FINALIZER), &[ORPHAN_FINALIZER]),
        _ => (None, &[ORPHAN_FINALIZER, FOREGROUND_FINALIZER]),
    };
    let old = finalizers(obj);
    let mut new: Vec<String> = old
        .iter()
        .filter(|f| !drop.contains(&f.as_str()))
        .cloned()
        .collect();
    if let Some(a) = add
        && !new.iter().any(|f| f == a)
    {
        new.push(a.to_string());
    }
    (new != old).then_some(new)
}

/// The transform of a guaranteed update: current object (None if missing) to the new one
/// (None: nothing to do / do not create).
pub type Transform<'a> = dyn FnMut(Option<&Value>) -> Result<Option<Value>, ApiError> + Send + 'a;

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// The main resource: everything but status (for kinds with a status subresource).
    Main,
    /// The status subresource: only `.status`.
    Status,
    /// The pods' `ephemeralcontainers` subresource: only `.spec.ephemeralContainers`.
    EphemeralContainers,
    /// The pods' `resize` subresource: only the containers' `resources` and `resizePolicy`.
    Resize,
}

impl UpdateMode {
    /// The mode of a write to `sub` (None: the main resource).
    pub fn of(sub: Option<registry::Subresource>) -> UpdateMode {
        match sub {
            Some(registry::Subresource::Status) => UpdateMode::Status,
            Some(registry::Subresource::EphemeralContainers) => UpdateMode::EphemeralContainers,
            Some(registry::Subresource::Resize) => UpdateMode::Resize,
            _ => UpdateMode::Main,
        }
    }
}

/// What a `pods/resize` write stores: `old` with the pod-level `spec.resources` (KEP-5419)
/// and each container's `resources` and `resizePolicy` (matched by name) and the
/// resourceVersion precondition taken from `new`.
fn resize_update(old: &Value, new: &Value) -> Value {
    let mut merged = old.clone();
    if let Some(rv) = new.pointer("/metadata/resourceVersion") {
        set_meta(&mut merged, "resourceVersion", rv.clone());
    }
    if let Some(spec) = merged.get_mut("spec").and_then(Value::as_object_mut) {
        match new.pointer("/spec/resources") {
            Some(v) => spec.insert("resources".into(), v.clone()),
            None => spec.remove("resources"),
        };
    }
    for list in ["containers", "initContainers"] {
        let Some(olds) = merged
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        let news = new
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in olds.iter_mut() {
            let name = c.get("name").cloned();
            let Some(n) = news.iter().find(|n| n.get("name") == name.as_ref()) else {
                continue;
            };
            let Some(m) = c.as_object_mut() else { continue };
            for field in ["resources", "resizePolicy"] {
                match n.get(field) {
                    Some(v) => m.insert(field.into(), v.clone()),
                    None => m.remove(field),
                };
            }
        }
    }
    merged
}

/// What a subresource write stores: `old` with the field at `path` (and the
/// resourceVersion precondition) taken from `new`; a field `new` lacks is removed.
fn subresource_update(old: &Value, new: &Value, path: &[&str]) -> Value {
    let mut merged = old.clone();
    let Some((last, parents)) = path.split_last() else {
        return merged;
    };
    let pointer: String = path.iter().map(|p| format!("/{p}")).collect();
    let value = new.pointer(&pointer).cloned();
    let mut at = Some(&mut merged);
    for p in parents {
        at = at.and_then(|v| v.get_mut(*p));
    }
    if let Some(m) = at.and_then(Value::as_object_mut) {
        match value {
            Some(v) => m.insert((*last).into(), v),
            None => m.remove(*last),
        };
    }
    set_meta(
        &mut merged,
        "resourceVersion",
        new.pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(Value::Null),
    );
    merged
}

/// Result of a delete.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The last state of the object.
    pub object: Value,
    /// Whether the object is gone from storage.
    pub gone: bool,
}

impl Deleted {
    /// The object is gone; `object` is its last state.
    fn gone(object: Value) -> Deleted {
        Deleted { object, gone: true }
    }

    /// The object is still there (marked for deletion, waiting for finalizers or its
    /// grace period), as `object`.
    fn pending(object: Value) -> Deleted {
        Deleted {
            object,
            gone: false,
        }
    }
}

/// The operation core: storage plus clock plus owned background tasks.
#[derive(Clone)]
pub struct Core {
    /// Object storage.
    pub storage: Storage,
    /// Wall clock.
    pub clock: WallClock,
    /// Background tasks (namespace finalization).
    pub tasks: TaskTracker,
    /// Cancels background tasks.
    pub cancel: CancellationToken,
    /// The Service networks the allocators hand out from.
    pub services: crate::services::ServiceNetwork,
}

fn ns_opt(kind: &ResourceKind, ns: Option<&str>) -> Option<String> {
    if kind.namespaced {
        ns.map(str::to_string)
    } else {
        None
    }
}

impl Core {
    /// Now, from the injected clock.
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.timestamp()
    }

    /// Now as a Kubernetes `Time`.
    pub fn now_str(&self) -> String {
        format_time(self.now())
    }

    /// Checks that namespace `ns` exists and accepts new content.
    pub async fn check_namespace(
        &self,
        kind: &ResourceKind,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let Some((obj, _)) = self.storage.get(&NAMESPACES, None, ns).await? else {
            return Err(ApiError::not_found(&NAMESPACES, ns));
        };
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            let msg = format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            );
            return Err(ApiError::forbidden(
                kind.plural,
                kind.group,
                name,
                format!("{} {name:?} is forbidden: {msg}", kind.qualified_resource()),
            )
            .with_details(json!({"name": name, "kind": kind.plural,
                "causes": [{"reason": "NamespaceTerminating", "message": msg, "field": "metadata.namespace"}]})));
        }
        Ok(())
    }

    /// Creates the initial namespaces if missing.
    pub async fn ensure_initial_namespaces(&self) -> Result<(), ApiError> {
        for ns in INITIAL_NAMESPACES {
            if self.storage.get(&NAMESPACES, None, ns).await?.is_none() {
                let obj =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                match self.create(&NAMESPACES, None, obj, false, None).await {
                    Ok(_) => {}
                    Err(e) if e.reason == "AlreadyExists" => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Creates an object (already decoded and normalized). `ns` is the request namespace.
    pub async fn create(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Value, ApiError> {
        let (av, k) = kind.type_meta();
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), av);
            m.insert("kind".into(), k);
        }
        let ns = ns_opt(kind, ns);
        if let Some(ns) = &ns {
            set_meta(&mut obj, "namespace", Value::from(ns.clone()));
        } else {
            set_meta(&mut obj, "namespace", Value::Null);
        }
        // generateName
        let mut name = objects::name_of(&obj).to_string();
        let generated = name.is_empty();
        if generated && let Some(g) = meta_str(&obj, "generateName").filter(|g| !g.is_empty()) {
            name = format!("{}{}", truncate(g, 58), random_suffix());
            set_meta(&mut obj, "name", Value::from(name.clone()));
        }
        for f in [
            "uid",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            set_meta(&mut obj, f, Value::Null);
        }
        set_meta(&mut obj, "creationTimestamp", Value::from(self.now_str()));
        set_meta(
            &mut obj,
            "uid",
            Value::from(uuid::Uuid::new_v4().to_string()),
        );
        strategy::prepare_for_create(kind, &mut obj);
        // Field ownership is recorded on the defaulted object before admission, as upstream
        // does: admission-added fields (tolerations, priority, qosClass) belong to no manager,
        // so a later server-side apply of the same manifest does not remove them.
        let mut owned = strategy::default_object(kind, &obj, false)?;
        let mut admitted = obj;
        // The namespace is checked first, as upstream's NamespaceLifecycle admission runs
        // before the others (a pod in a missing namespace is NotFound, not a missing
        // service account).
        if let Some(ns) = &ns {
            self.check_namespace(kind, ns, &name).await?;
        }
        self.admit(kind, &mut admitted, true).await?;
        self.admit_pod_security(kind, &admitted, None, None).await?;
        let mut obj = strategy::default_object(kind, &admitted, true)?;
        if strategy::tracks_generation(kind, &obj) {
            set_meta(&mut obj, "generation", Value::from(1));
        } else {
            set_meta(&mut obj, "generation", Value::Null);
        }
        if let Some(m) = manager {
            patch::record_update(kind, None, &mut owned, m, &self.now_str());
            let mf = owned
                .pointer("/metadata/managedFields")
                .cloned()
                .unwrap_or(Value::Null);
            set_meta(&mut obj, "managedFields", mf);
        }
        let errs = strategy::validate_create(kind, &obj)?;
        if !errs.is_empty() {
            return Err(ApiError::invalid(kind, &name, &errs));
        }
        self.admit_quota(kind, &obj, None, dry_run).await?;
        let reserved = self.allocate_service(kind, &mut obj, None, dry_run).await?;
        if dry_run {
            if self
                .storage
                .get(kind, ns.as_deref(), &name)
                .await?
                .is_some()
            {
                return Err(ApiError::already_exists(kind, &name));
            }
            return Ok(obj);
        }
        // A generated name that collides is retried upstream-style by the client; we retry once here.
        let created = match self.storage.create(kind, ns.as_deref(), &name, &obj).await {
            Err(e) if generated && e.reason == "AlreadyExists" => {
                let g = meta_str(&obj, "generateName").unwrap_or("").to_string();
                let name = format!("{}{}", truncate(&g, 58), random_suffix());
                set_meta(&mut obj, "name", Value::from(name.clone()));
                self.storage.create(kind, ns.as_deref(), &name, &obj).await
            }
            other => other,
        };
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                self.release_reserved(reserved, &obj).await;
                return Err(e);
            }
        };
        self.after_create(kind, &created).await;
        Ok(created)
    }

    /// Guaranteed update: reads the object, applies `transform`, fixes server-owned fields,
    /// defaults, validates and writes, retrying on store conflicts. A resourceVersion in the
    /// transformed object is a precondition (409 if stale). Returns the object and whether it
    /// was created (PUT on kinds that allow create-on-update, or a create fallback).
    #[allow(clippy::too_many_arguments)]
    pub async fn update(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        mode: UpdateMode,
        dry_run: bool,
        manager: Option<(&str, Option<registry::Subresource>)>,
        transform: &mut Transform<'_>,
    ) -> Result<(Value, bool), ApiError> {
        let ns = ns_opt(kind, ns);
        for _ in 0..32 {
            let current = self.storage.get(kind, ns.as_deref(), name).await?;
            let Some((old, rev)) = current else {
                // Missing: the transform decides whether to create.
                let Some(new) = transform(None)? else {
                    return Err(ApiError::not_found(kind, name));
                };
                let created = self
                    .create(kind, ns.as_deref(), new, dry_run, manager.map(|m| m.0))
                    .await;
                match created {
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    other => return other.map(|v| (v, true)),
                }
            };
            let Some(mut new) = transform(Some(&old))? else {
                return Ok((old, false));
            };
            if let Some(want) = meta_str(&new, "resourceVersion").filter(|s| !s.is_empty())
                && want != rev.to_string()
            {
                return Err(ApiError::stale(kind, name));
            }
            self.finalize_update(kind, &old, &mut new, mode)?;
            if objects::same_content(&old, &new) {
                return Ok((old, false));
            }
            if mode == UpdateMode::Main {
                let sub = manager.and_then(|m| m.1);
                self.admit_pod_security(kind, &new, Some(&old), sub).await?;
                self.admit_quota(kind, &new, Some(&old), dry_run).await?;
            }
            if let Some((m, sub)) = manager {
                patch::record_update_subresource(
                    kind,
                    sub,
                    Some(&old),
                    &mut new,
                    m,
                    &self.now_str(),
                );
            }
            let reserved = self
                .allocate_service(kind, &mut new, Some(&old), dry_run)
                .await?;
            if dry_run {
                return Ok((new, false));
            }
            let written = self
                .storage
                .update(kind, ns.as_deref(), name, &new, rev)
                .await;
            if !matches!(written, Ok(Ok(_))) {
                self.release_reserved(reserved, &new).await;
            } else if kind == &registry::SERVICES {
                self.after_service_updated(&old, &new).await;
            }
            match written? {
                Ok(stored) => {
                    self.after_update(kind, &stored).await;
                    if should_delete_after_update(&stored)
                        && let Ok(gone) = self
                            .storage
                            .delete(kind, ns.as_deref(), name, meta_rev(&stored))
                            .await?
                    {
                        self.after_remove(kind, &gone).await;
                        return Ok((gone, false));
                    }
                    return Ok((stored, false));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, kind, name)),
            }
        }
        Err(ApiError::conflict(
            kind,
            name,
            "too many concurrent updates; please try again",
        ))
    }

    fn finalize_update(
        &self,
        kind: &ResourceKind,
        old: &Value,
        new: &mut Value,
        mode: UpdateMode,
    ) -> Result<(), ApiError> {
        let name = objects::name_of(old).to_string();
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the updated object is not a JSON object",
            ));
        }
        let new_name = objects::name_of(new);
        if !new_name.is_empty() && new_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({new_name}) does not match the name on the URL ({name})"
            )));
        }
        let (av, k) = kind.type_meta();
        if let Some(m) = new.as_object_mut() {
            m.insert("apiVersion".into(), av);
            m.insert("kind".into(), k);
        }
        // Typed normalization (patches may produce anything).
        *new = objects::round_trip(kind, new.clone()).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version {:?} cannot be handled as a {}: {e}",
                kind.kind, kind.version, kind.kind
            ))
        })?;
        if mode == UpdateMode::Status {
            *new = subresource_update(old, new, &["status"]);
        } else if mode == UpdateMode::EphemeralContainers {
            // As upstream's `dropNonEphemeralContainerUpdates`: the old pod with the new
            // ephemeral containers.
            *new = subresource_update(old, new, &["spec", "ephemeralContainers"]);
        } else if mode == UpdateMode::Resize {
            // As upstream's `dropNonResizeUpdates`: the old pod with the new containers'
            // resources and resize policies.
            *new = resize_update(old, new);
        } else if kind.has_subresource(registry::Subresource::Status)
            && let Some(m) = new.as_object_mut()
        {
            match old.get("status") {
                Some(s) => m.insert("status".into(), s.clone()),
                None => m.remove("status"),
            };
        }
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            set_meta(
                new,
                f,
                old.pointer(&format!("/metadata/{f}"))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        if new.pointer("/metadata/managedFields").is_none()
            && let Some(mf) = old.pointer("/metadata/managedFields")
        {
            set_meta(new, "managedFields", mf.clone());
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let of = finalizers(old);
            if let Some(added) = finalizers(new).into_iter().find(|f| !of.contains(f)) {
                return Err(ApiError::invalid(
                    kind,
                    &name,
                    &[podvisor_api::FieldError::forbidden(
                        "metadata.finalizers",
                        format!(
                            "no new finalizers can be added if the object is being deleted, found new finalizers [{added:?}]"
                        ),
                    )],
                ));
            }
        }
        if mode == UpdateMode::Main && kind == &registry::SERVICES {
            crate::services::carry_allocated(kind, new, old)?;
        }
        if mode != UpdateMode::Status {
            *new = strategy::default_object(kind, new, false)?;
        }
        let errs = if mode == UpdateMode::EphemeralContainers {
            strategy::validate_ephemeral_containers_update(kind, new, old)?
        } else if mode == UpdateMode::Resize {
            strategy::validate_resize(kind, new, old)?
        } else {
            strategy::validate_update(kind, new, old)?
        };
        if !errs.is_empty() {
            return Err(ApiError::invalid(kind, &name, &errs));
        }
        if strategy::tracks_generation(kind, new) && strategy::generation_changed(kind, new, old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            set_meta(new, "generation", Value::from(g + 1));
        }
        Ok(())
    }

    /// Deletes an object per its kind's rules.
    pub async fn delete(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let ns = ns_opt(kind, ns);
        let ns = ns.as_deref();
        if kind == &registry::CUSTOMRESOURCEDEFINITIONS && !opts.dry_run {
            self.delete_custom_objects(name).await?;
        }
        if kind.strategy == Strategy::Namespace && PROTECTED_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(
                "namespaces",
                "",
                name,
                format!("namespaces {name:?} is forbidden: this namespace may not be deleted"),
            ));
        }
        // As upstream's GuaranteedUpdate: a conflict (another write landed between the read
        // and the write) is retried here, not answered. Once this request has written the
        // deletion (deletionTimestamp), the object may vanish before the next attempt (its
        // node removed it); the delete then succeeded and answers with the last state seen.
        let mut written: Option<Value> = None;
        for _ in 0..32 {
            let (obj, rev) = match self.storage.must_get(kind, ns, name).await {
                Ok(found) => found,
                Err(e) if e.code == 404 && written.is_some() => {
                    return Ok(Deleted::gone(written.unwrap_or_default()));
                }
                Err(e) => return Err(e),
            };
            check_preconditions(kind, name, &obj, opts)?;
            let r = match kind.strategy {
                Strategy::Pod => {
                    self.delete_pod(kind, ns, name, obj, rev, opts, &mut written)
                        .await?
                }
                Strategy::Namespace => self.delete_namespace(ns, name, obj, rev, opts).await?,
                _ => self.delete_generic(kind, ns, name, obj, rev, opts).await?,
            };
            if let Some(d) = r {
                return Ok(d);
            }
        }
        Err(ApiError::conflict(
            kind,
            name,
            "too many concurrent updates; please try again",
        ))
    }

    async fn write_or_retry(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
        rev: i64,
    ) -> Result<Option<Value>, ApiError> {
        match self.storage.update(kind, ns, name, obj, rev).await? {
            Ok(v) => Ok(Some(v)),
            Err(_) => Ok(None),
        }
    }

    async fn remove(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        rev: i64,
    ) -> Result<Option<Deleted>, ApiError> {
        match self.storage.delete(kind, ns, name, Some(rev)).await? {
            Ok(v) => {
                self.after_remove(kind, &v).await;
                Ok(Some(Deleted::gone(v)))
            }
            Err(_) => Ok(None),
        }
    }

    /// `obj` marked for deletion now with no grace left, or None when it already is (or
    /// the delete is a dry run): the answer is then `obj` as it is.
    fn marked_for_deletion(&self, obj: &Value, opts: &DeleteOptions) -> Option<Value> {
        if obj.pointer("/metadata/deletionTimestamp").is_some() || opts.dry_run {
            return None;
        }
        let mut new = obj.clone();
        set_meta(&mut new, "deletionTimestamp", Value::from(self.now_str()));
        set_meta(&mut new, "deletionGracePeriodSeconds", Value::from(0));
        Some(new)
    }

    async fn delete_generic(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        rev: i64,
        opts: &DeleteOptions,
    ) -> Result<Option<Deleted>, ApiError> {
        let mut obj = obj;
        if let Some(fins) =
            gc_finalizers(kind, &obj, opts.propagation_policy.as_deref()).filter(|_| !opts.dry_run)
        {
            if fins.is_empty() {
                // Background after Orphan/Foreground: plain deletion from here.
                if let Some(m) = obj.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                    m.remove("finalizers");
                }
            } else {
                // The garbage collector finishes the deletion once it orphaned or deleted
                // the dependents and removed its finalizer.
                let mut new = obj.clone();
                set_meta(&mut new, "finalizers", json!(fins));
                if new.pointer("/metadata/deletionTimestamp").is_none() {
                    set_meta(&mut new, "deletionTimestamp", Value::from(self.now_str()));
                    set_meta(&mut new, "deletionGracePeriodSeconds", Value::from(0));
                    bump_generation(&mut new);
                }
                return Ok(self
                    .write_or_retry(kind, ns, name, &new, rev)
                    .await?
                    .map(|v| Deleted {
                        object: v,
                        gone: false,
                    }));
            }
        }
        if !finalizers(&obj).is_empty() {
            let Some(mut new) = self.marked_for_deletion(&obj, opts) else {
                return Ok(Some(Deleted::pending(obj)));
            };
            bump_generation(&mut new);
            return Ok(self
                .write_or_retry(kind, ns, name, &new, rev)
                .await?
                .map(Deleted::pending));
        }
        if opts.dry_run {
            return Ok(Some(Deleted::gone(obj)));
        }
        self.remove(kind, ns, name, rev).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn delete_pod(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        rev: i64,
        opts: &DeleteOptions,
        written: &mut Option<Value>,
    ) -> Result<Option<Deleted>, ApiError> {
        let requested = opts.grace_period_seconds.map(|g| if g < 0 { 1 } else { g });
        let has_finalizers = !finalizers(&obj).is_empty();
        if let Some(dts) = meta_str(&obj, "deletionTimestamp") {
            let current = obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            match current {
                None | Some(0) => {
                    if has_finalizers || opts.dry_run {
                        return Ok(Some(Deleted::pending(obj)));
                    }
                    return self.remove(kind, ns, name, rev).await;
                }
                Some(cur) => {
                    let Some(g) = requested.filter(|g| *g < cur) else {
                        return Ok(Some(Deleted::pending(obj)));
                    };
                    let old_deadline = objects::parse_time(dts).unwrap_or_else(|| self.now());
                    let deadline = old_deadline
                        .checked_sub(jiff::SignedDuration::from_secs(cur - g))
                        .unwrap_or(old_deadline);
                    let mut new = obj.clone();
                    set_meta(
                        &mut new,
                        "deletionTimestamp",
                        Value::from(format_time(deadline)),
                    );
                    set_meta(&mut new, "deletionGracePeriodSeconds", Value::from(g));
                    if opts.dry_run {
                        return Ok(Some(Deleted::pending(new)));
                    }
                    let Some(stored) = self.write_or_retry(kind, ns, name, &new, rev).await? else {
                        return Ok(None);
                    };
                    *written = Some(stored.clone());
                    if g == 0 && !has_finalizers {
                        let r = meta_rev(&stored).unwrap_or(rev);
                        return Ok(self
                            .remove(kind, ns, name, r)
                            .await?
                            .or(Some(Deleted::pending(stored))));
                    }
                    return Ok(Some(Deleted::pending(stored)));
                }
            }
        }
        let mut period = requested
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(0);
        let node = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let phase = obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
            period = 0;
        }
        if period < 0 {
            period = 1;
        }
        let deadline = self
            .now()
            .checked_add(jiff::SignedDuration::from_secs(period))
            .unwrap_or_else(|_| self.now());
        let mut new = obj.clone();
        set_meta(
            &mut new,
            "deletionTimestamp",
            Value::from(format_time(deadline)),
        );
        set_meta(&mut new, "deletionGracePeriodSeconds", Value::from(period));
        bump_generation(&mut new);
        if opts.dry_run {
            return Ok(Some(Deleted {
                object: new,
                gone: period == 0 && !has_finalizers,
            }));
        }
        let Some(stored) = self.write_or_retry(kind, ns, name, &new, rev).await? else {
            return Ok(None);
        };
        *written = Some(stored.clone());
        if period == 0 && !has_finalizers {
            let r = meta_rev(&stored).unwrap_or(rev);
            if let Some(d) = self.remove(kind, ns, name, r).await? {
                return Ok(Some(d));
            }
            // Someone wrote in between (e.g. a status update): the next attempt removes it.
            return Ok(None);
        }
        Ok(Some(Deleted::pending(stored)))
    }

    async fn delete_namespace(
        &self,
        _ns: Option<&str>,
        name: &str,
        obj: Value,
        rev: i64,
        opts: &DeleteOptions,
    ) -> Result<Option<Deleted>, ApiError> {
        let Some(mut new) = self.marked_for_deletion(&obj, opts) else {
            return Ok(Some(Deleted::pending(obj)));
        };
        if let Some(m) = new.as_object_mut() {
            m.insert("status".into(), json!({"phase": "Terminating"}));
        }
        let Some(stored) = self
            .write_or_retry(&NAMESPACES, None, name, &new, rev)
            .await?
        else {
            return Ok(None);
        };
        self.spawn_namespace_finalizer(name.to_string());
        Ok(Some(Deleted::pending(stored)))
    }

    /// Starts the task that empties a terminating namespace and then removes it.
    pub fn spawn_namespace_finalizer(&self, ns: String) {
        let core = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = core.cancel.cancelled() => {}
                r = core.finalize_namespace(&ns) => {
                    if let Err(e) = r {
                        tracing::warn!(namespace = %ns, error = %e, "namespace finalization failed");
                    }
                }
            }
        });
    }

    async fn finalize_namespace(&self, ns: &str) -> Result<(), ApiError> {
        let mut backoff = std::time::Duration::from_millis(50);
        loop {
            let mut remaining = 0usize;
            for kind in registry::kinds().into_iter().filter(|k| k.namespaced) {
                let page = self
                    .storage
                    .list(&kind.list_prefix(Some(ns)), 0, None, None, &|_| true)
                    .await?;
                for obj in page.items {
                    remaining += 1;
                    if obj.pointer("/metadata/deletionTimestamp").is_some()
                        && kind.strategy != Strategy::Pod
                    {
                        continue;
                    }
                    let name = objects::name_of(&obj).to_string();
                    match self
                        .delete(kind, Some(ns), &name, &DeleteOptions::default())
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if e.code == 404 => {}
                        Err(e) => {
                            tracing::debug!(namespace = %ns, %name, error = %e, "namespace content delete")
                        }
                    }
                }
            }
            if remaining == 0 {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
        }
        if let Some((_, rev)) = self.storage.get(&NAMESPACES, None, ns).await? {
            let _ = self
                .storage
                .delete(&NAMESPACES, None, ns, Some(rev))
                .await?;
        }
        Ok(())
    }

    /// Resumes finalization of namespaces that were terminating when the server stopped.
    pub async fn resume_namespace_finalizers(&self) -> Result<(), ApiError> {
        let page = self
            .storage
            .list(&NAMESPACES.prefix(), 0, None, None, &|o| {
                o.pointer("/metadata/deletionTimestamp").is_some()
            })
            .await?;
        for ns in page.items {
            self.spawn_namespace_finalizer(objects::name_of(&ns).to_string());
        }
        Ok(())
    }

    /// Binds a pod to a node (the `binding` subresource).
    pub async fn bind_pod(
        &self,
        ns: &str,
        name: &str,
        node: &str,
        annotations: Option<&Value>,
    ) -> Result<(), ApiError> {
        let kind = &PODS;
        for _ in 0..32 {
            let (obj, rev) = self.storage.must_get(kind, Some(ns), name).await?;
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::conflict(
                    kind,
                    name,
                    &format!("pod {name} is being deleted, cannot be assigned to a host"),
                ));
            }
            if let Some(cur) = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                return Err(ApiError::conflict(
                    kind,
                    name,
                    &format!("pod {name} is already assigned to node {cur:?}"),
                ));
            }
            let mut new = obj.clone();
            new["spec"]["nodeName"] = Value::from(node);
            if let Some(Value::Object(ann)) = annotations {
                let m = objects::meta_mut(&mut new);
                let a = m.entry("annotations").or_insert_with(|| json!({}));
                if let Value::Object(a) = a {
                    for (k, v) in ann {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
            let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": self.now_str()});
            let status = new
                .as_object_mut()
                .map(|m| m.entry("status").or_insert_with(|| json!({})));
            if let Some(Value::Object(st)) = status {
                let conds = st.entry("conditions").or_insert_with(|| json!([]));
                if let Value::Array(list) = conds {
                    list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                    list.push(cond);
                }
            }
            if self
                .write_or_retry(kind, Some(ns), name, &new, rev)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(ApiError::conflict(
            kind,
            name,
            "too many concurrent updates; please try again",
        ))
    }
}

fn check_preconditions(
    kind: &ResourceKind,
    name: &str,
    obj: &Value,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    if let Some(uid) = &opts.uid {
        let have = meta_str(obj, "uid").unwrap_or("");
        if uid != have {
            return Err(ApiError::conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                ),
            ));
        }
    }
    if let Some(rv) = &opts.resource_version {
        let have = meta_str(obj, "resourceVersion").unwrap_or("");
        if rv != have {
            return Err(ApiError::conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"
                ),
            ));
        }
    }
    Ok(())
}

fn bump_generation(obj: &mut Value) {
    if let Some(g) = obj.pointer("/metadata/generation").and_then(Value::as_i64)
        && g > 0
    {
        set_meta(obj, "generation", Value::from(g + 1));
    }
}

fn meta_rev(obj: &Value) -> Option<i64> {
    meta_str(obj, "resourceVersion")?.parse().ok()
}

fn should_delete_after_update(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
        && finalizers(obj).is_empty()
        && obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
        && obj.get("kind").and_then(Value::as_str) != Some("Namespace")
}

fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A 5-character suffix for generateName, from upstream's alphabet (no vowels, no 0/1/3).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = uuid::Uuid::new_v4().as_u128();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u128) as usize] as char;
            n /= ALPHABET.len() as u128;
            c
        })
        .collect()
}
