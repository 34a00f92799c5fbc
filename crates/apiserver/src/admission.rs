//! Admission that needs the store, and the objects a cluster starts with.
//!
//! - Priority (upstream's `Priority` plugin): a pod's `spec.priority` and
//!   `spec.preemptionPolicy` come from its `priorityClassName`, or from the class marked
//!   `globalDefault` (priority 0 when there is none); at most one class is the default.
//! - RuntimeClass (upstream's `RuntimeClass` plugin): a pod's `runtimeClassName` must name
//!   a class; the class's fixed overhead and scheduling constraints join the pod.
//! - DefaultStorageClass: a claim created without `storageClassName` (and without the beta
//!   annotation) gets the class marked default (the newest one when several are).
//! - StorageObjectInUseProtection: a created claim gets the `kubernetes.io/pvc-protection`
//!   finalizer, a created volume `kubernetes.io/pv-protection`.
//! - At start: the default StorageClass `local-path` (the built-in node-local provisioner,
//!   `WaitForFirstConsumer`, marked default), the system PriorityClasses, one APIService per served group-version (all
//!   local, `Available`), and the `default` ServiceAccount of each initial namespace; a
//!   namespace created later gets its `default` ServiceAccount right after it is stored
//!   (the serviceaccount controller's behaviour, without its re-creation on delete).

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects;
use crate::ops::{Core, INITIAL_NAMESPACES, UpdateMode};
use crate::registry::{
    self, APISERVICES, CUSTOMRESOURCEDEFINITIONS, LIMITRANGES, NAMESPACES, PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES, PODS, PRIORITYCLASSES, RUNTIMECLASSES, ResourceKind, SERVICEACCOUNTS,
    STORAGECLASSES,
};
use crate::strategy::SYSTEM_PRIORITY_CLASSES;

impl Core {
    /// The PriorityClass marked `globalDefault`, if any.
    async fn default_priority_class(&self) -> Result<Option<Value>, ApiError> {
        let page = self
            .storage
            .list(&PRIORITYCLASSES.prefix(), 0, None, None, &|o| {
                o.get("globalDefault").and_then(Value::as_bool) == Some(true)
            })
            .await?;
        Ok(page.items.into_iter().next())
    }

    /// Admission of a create or update of `obj` (already defaulted, not yet validated).
    pub(crate) async fn admit(
        &self,
        kind: &ResourceKind,
        obj: &mut Value,
        create: bool,
    ) -> Result<(), ApiError> {
        if kind == &PERSISTENTVOLUMECLAIMS && create {
            add_finalizer(obj, podvisor_api::volumes::PVC_PROTECTION_FINALIZER);
            self.admit_claim_class(obj).await?;
            return self.admit_limit_ranges(kind, obj).await;
        }
        if kind == &PERSISTENTVOLUMES && create {
            add_finalizer(obj, podvisor_api::volumes::PV_PROTECTION_FINALIZER);
            return Ok(());
        }
        if kind == &PODS && create {
            self.admit_limit_ranges(kind, obj).await?;
            self.admit_pod_service_account(obj).await?;
            self.admit_pod_priority(obj).await?;
            return self.admit_pod_runtime_class(obj).await;
        }
        if kind == &PRIORITYCLASSES
            && obj.get("globalDefault").and_then(Value::as_bool) == Some(true)
        {
            let name = objects::name_of(obj).to_string();
            if let Some(d) = self.default_priority_class().await?
                && (create || objects::name_of(&d) != name)
            {
                return Err(ApiError::forbidden(
                    kind.plural,
                    kind.group,
                    &name,
                    format!(
                        "{} {name:?} is forbidden: PriorityClass {} is already marked as default. Only one default can exist",
                        kind.qualified_resource(),
                        objects::name_of(&d)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Upstream's LimitRanger plugin for a pod or claim being created: the namespace's
    /// LimitRanges default a pod's requests and limits, then each range's bounds are
    /// checked; the first range it breaks refuses it (403, upstream's messages).
    async fn admit_limit_ranges(
        &self,
        kind: &ResourceKind,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        use podvisor_api::limitrange;
        let Some(ns) = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
        else {
            return Ok(());
        };
        let ranges = self
            .storage
            .list(&LIMITRANGES.list_prefix(Some(&ns)), 0, None, None, &|_| {
                true
            })
            .await?
            .items;
        if ranges.is_empty() {
            return Ok(());
        }
        let pod = kind == &PODS;
        if pod {
            limitrange::default_pod(obj, &ranges);
        }
        for range in &ranges {
            let errs = if pod {
                limitrange::check_pod(obj, range)
            } else {
                limitrange::check_claim(obj, range)
            };
            if !errs.is_empty() {
                let name = objects::name_of(obj).to_string();
                return Err(ApiError::forbidden(
                    kind.plural,
                    kind.group,
                    &name,
                    format!(
                        "{} {name:?} is forbidden: {}",
                        kind.qualified_resource(),
                        limitrange::aggregate(&errs)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Upstream's DefaultStorageClass plugin.
    async fn admit_claim_class(&self, claim: &mut Value) -> Result<(), ApiError> {
        let beta = format!(
            "/metadata/annotations/{}",
            podvisor_api::volumes::ANN_BETA_STORAGE_CLASS.replace('/', "~1")
        );
        if claim
            .pointer("/spec/storageClassName")
            .is_some_and(|c| !c.is_null())
            || claim.pointer(&beta).is_some()
        {
            return Ok(());
        }
        let page = self
            .storage
            .list(&STORAGECLASSES.prefix(), 0, None, None, &|o| {
                [
                    podvisor_api::volumes::ANN_DEFAULT_STORAGE_CLASS,
                    podvisor_api::volumes::ANN_BETA_DEFAULT_STORAGE_CLASS,
                ]
                .iter()
                .any(|a| {
                    o.pointer(&format!("/metadata/annotations/{}", a.replace('/', "~1")))
                        .and_then(Value::as_str)
                        == Some("true")
                })
            })
            .await?;
        let newest = page.items.iter().max_by(|a, b| {
            let created = |o: &Value| {
                o.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            created(a)
                .cmp(&created(b))
                .then_with(|| objects::name_of(b).cmp(objects::name_of(a)))
        });
        if let Some(class) = newest
            && let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert(
                "storageClassName".into(),
                Value::from(objects::name_of(class)),
            );
        }
        Ok(())
    }

    async fn admit_pod_priority(&self, pod: &mut Value) -> Result<(), ApiError> {
        let name = objects::name_of(pod).to_string();
        let forbidden = |msg: String| pod_forbidden(&name, msg);
        let class_name = pod
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let class = if class_name.is_empty() {
            self.default_priority_class().await?
        } else {
            match self
                .storage
                .get(&PRIORITYCLASSES, None, &class_name)
                .await?
            {
                Some((c, _)) => Some(c),
                None => {
                    return Err(forbidden(format!(
                        "no PriorityClass with name {class_name} was found"
                    )));
                }
            }
        };
        let (priority, policy) = match &class {
            Some(c) => (
                c.get("value").and_then(Value::as_i64).unwrap_or(0),
                c.get("preemptionPolicy")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
            None => (0, None),
        };
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if let Some(p) = spec.get("priority").and_then(Value::as_i64)
            && p != priority
        {
            return Err(forbidden(format!(
                "the integer value of priority ({p}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            )));
        }
        if let Some(c) = &class {
            spec.insert("priorityClassName".into(), Value::from(objects::name_of(c)));
        }
        spec.insert("priority".into(), Value::from(priority));
        if let Some(policy) = policy {
            if let Some(p) = spec.get("preemptionPolicy").and_then(Value::as_str)
                && p != policy
            {
                return Err(forbidden(format!(
                    "the string value of PreemptionPolicy ({p}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                )));
            }
            spec.insert("preemptionPolicy".into(), Value::from(policy));
        }
        Ok(())
    }

    /// Upstream's `RuntimeClass` plugin: the named class must exist; its `overhead.podFixed`
    /// becomes the pod's `overhead` (a pod may not set another), its `scheduling` node
    /// selector joins the pod's (a conflicting value is refused) and its tolerations are
    /// added.
    async fn admit_pod_runtime_class(&self, pod: &mut Value) -> Result<(), ApiError> {
        let name = objects::name_of(pod).to_string();
        let forbidden = |msg: String| pod_forbidden(&name, msg);
        let class_name = pod
            .pointer("/spec/runtimeClassName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let class = if class_name.is_empty() {
            None
        } else {
            match self.storage.get(&RUNTIMECLASSES, None, &class_name).await? {
                Some((c, _)) => Some(c),
                None => {
                    return Err(forbidden(format!(
                        "pod rejected: RuntimeClass {class_name:?} not found"
                    )));
                }
            }
        };
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let fixed = class
            .as_ref()
            .and_then(|c| c.pointer("/overhead/podFixed"))
            .cloned();
        match (fixed, spec.get("overhead").filter(|o| !o.is_null())) {
            (None, Some(_)) => {
                return Err(forbidden(
                    "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead".into(),
                ));
            }
            (Some(f), Some(o)) if !same_quantities(&f, o) => {
                return Err(forbidden(
                    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"
                        .into(),
                ));
            }
            (Some(f), None) => {
                spec.insert("overhead".into(), f);
            }
            _ => {}
        }
        let Some(scheduling) = class.as_ref().and_then(|c| c.get("scheduling")) else {
            return Ok(());
        };
        if let Some(sel) = scheduling.get("nodeSelector").and_then(Value::as_object) {
            let pod_sel = spec
                .entry("nodeSelector")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            if let Some(pod_sel) = pod_sel {
                for (k, v) in sel {
                    if let Some(pv) = pod_sel.get(k)
                        && pv != v
                    {
                        return Err(forbidden(format!(
                            "conflict: runtimeClass.scheduling.nodeSelector[{k}] = {}; pod.spec.nodeSelector[{k}] = {}",
                            v.as_str().unwrap_or_default(),
                            pv.as_str().unwrap_or_default()
                        )));
                    }
                    pod_sel.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some(tols) = scheduling.get("tolerations").and_then(Value::as_array)
            && let Some(pod_tols) = spec
                .entry("tolerations")
                .or_insert_with(|| json!([]))
                .as_array_mut()
        {
            for t in tols {
                if !pod_tols.contains(t) {
                    pod_tols.push(t.clone());
                }
            }
        }
        Ok(())
    }

    /// What follows a successful update: a CRD is established again.
    pub(crate) async fn after_update(&self, kind: &ResourceKind, obj: &Value) {
        if kind == &CUSTOMRESOURCEDEFINITIONS {
            self.establish(obj).await;
        }
    }

    /// What follows the removal of an object from the store: a Service's cluster IPs and
    /// node ports are released.
    pub(crate) async fn after_remove(&self, kind: &ResourceKind, obj: &Value) {
        if kind == &registry::SERVICES {
            self.after_service_removed(obj).await;
        }
        if kind == &registry::PODS {
            self.timeline.record(
                &crate::timeline::pod_key(obj),
                podvisor_kit::timeline::Step::Removed,
                None,
                "the pod object was removed",
                &[],
            );
        }
    }

    /// What follows a successful create: a new namespace gets its `default`
    /// ServiceAccount, a CRD is established.
    pub(crate) async fn after_create(&self, kind: &ResourceKind, obj: &Value) {
        if kind == &CUSTOMRESOURCEDEFINITIONS {
            self.establish(obj).await;
        }
        if kind == &NAMESPACES {
            let ns = objects::name_of(obj).to_string();
            if let Err(e) = self.ensure_default_service_account(&ns).await {
                tracing::warn!(namespace = %ns, error = %e, "default service account");
            }
        }
    }

    /// Stores the `default` ServiceAccount of `ns` directly (not through [`Core::create`],
    /// which calls this after creating a namespace).
    async fn ensure_default_service_account(&self, ns: &str) -> Result<(), ApiError> {
        if self
            .storage
            .get(&SERVICEACCOUNTS, Some(ns), "default")
            .await?
            .is_some()
        {
            return Ok(());
        }
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": ns,
                "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": self.now_str()}});
        match self
            .storage
            .create(&SERVICEACCOUNTS, Some(ns), "default", &sa)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_if_missing(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<(), ApiError> {
        let name = objects::name_of(&obj).to_string();
        if self.storage.get(kind, ns, &name).await?.is_some() {
            return Ok(());
        }
        match self.create(kind, ns, obj, false, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates what a cluster starts with (idempotent): the system PriorityClasses, the
    /// local APIServices and the initial namespaces' `default` ServiceAccounts.
    pub async fn ensure_initial_objects(&self) -> Result<(), ApiError> {
        use podvisor_api::volumes as v;
        let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": v::DEFAULT_STORAGE_CLASS,
                "annotations": {v::ANN_DEFAULT_STORAGE_CLASS: "true"}},
            "provisioner": v::LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"});
        self.create_if_missing(&STORAGECLASSES, None, class).await?;
        for (name, value) in SYSTEM_PRIORITY_CLASSES {
            let description = match *name {
                "system-node-critical" => {
                    "Used for system critical pods that must not be moved from their current node."
                }
                _ => {
                    "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."
                }
            };
            let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value, "description": description});
            self.create_if_missing(&PRIORITYCLASSES, None, pc).await?;
        }
        for ns in INITIAL_NAMESPACES {
            self.ensure_default_service_account(ns).await?;
        }
        for (group, versions) in registry::all_group_versions() {
            for version in versions {
                self.ensure_api_service(group, version).await?;
            }
        }
        self.establish_all().await
    }

    async fn ensure_api_service(&self, group: &str, version: &str) -> Result<(), ApiError> {
        let name = format!("{version}.{group}");
        let (group_priority, version_priority) = registry::group_priority(group, version);
        let svc = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": group_priority,
                "versionPriority": version_priority}});
        if self.storage.get(&APISERVICES, None, &name).await?.is_some() {
            return Ok(());
        }
        self.create_if_missing(&APISERVICES, None, svc).await?;
        let now = self.now_str();
        let mut transform = |old: Option<&Value>| -> Result<Option<Value>, ApiError> {
            let Some(old) = old else { return Ok(None) };
            let mut new = old.clone();
            new["status"] = json!({"conditions": [{"type": "Available", "status": "True",
                "lastTransitionTime": now, "reason": "Local",
                "message": "Local APIServices are always available"}]});
            Ok(Some(new))
        };
        self.update(
            &APISERVICES,
            None,
            &name,
            UpdateMode::Status,
            false,
            None,
            &mut transform,
        )
        .await?;
        Ok(())
    }
}

/// Adds `finalizer` to the object's `metadata.finalizers` unless present.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = objects::meta_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(l) = list.as_array_mut()
        && !l.iter().any(|f| f.as_str() == Some(finalizer))
    {
        l.push(Value::from(finalizer));
    }
}

/// `pods "NAME" is forbidden: MSG` (403), as an admission plugin refuses a pod.
pub(crate) fn pod_forbidden(name: &str, msg: String) -> ApiError {
    ApiError::forbidden(
        PODS.plural,
        "",
        name,
        format!("pods {name:?} is forbidden: {msg}"),
    )
}

/// Whether two resource lists (`{"cpu": "250m", ...}`) hold the same quantities.
fn same_quantities(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let nanos = |v: &Value| {
        v.as_str()
            .and_then(|q| podvisor_api::status::parse_quantity(q).ok())
    };
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k)
                .is_some_and(|w| nanos(v).is_some() && nanos(v) == nanos(w))
        })
}
