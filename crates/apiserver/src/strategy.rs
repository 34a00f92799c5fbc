//! Per-kind behaviour: what a create or update may set, defaulting, validation and the
//! fields a field selector may use. Everything here is pure (no store access).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podvisor_api::validation::{self as v, FieldError, NameRule};
use podvisor_api::{LabelSelector, defaults};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{ResourceKind, Strategy};

mod builtin;

pub use builtin::SYSTEM_PRIORITY_CLASSES;

fn typed<T: DeserializeOwned>(kind: &ResourceKind, obj: &Value) -> Result<T, ApiError> {
    serde_json::from_value(obj.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            kind.kind, kind.version, kind.kind
        ))
    })
}

fn back<T: Serialize>(t: &T) -> Result<Value, ApiError> {
    serde_json::to_value(t).map_err(|e| ApiError::internal(e.to_string()))
}

/// Whether objects of this kind carry `metadata.generation`.
pub fn tracks_generation(kind: &ResourceKind, obj: &Value) -> bool {
    is_endpoint_slice(kind)
        || (!matches!(kind.strategy, Strategy::Namespace | Strategy::Node)
            && obj.get("spec").is_some())
}

fn is_endpoint_slice(kind: &ResourceKind) -> bool {
    kind.group == "discovery.k8s.io" && kind.kind == "EndpointSlice"
}

/// Whether an update changes what bumps `metadata.generation`: the spec, or for an
/// EndpointSlice (which has none) its endpoints, ports or address type (upstream's
/// `endpointSliceStrategy.PrepareForUpdate`).
pub fn generation_changed(kind: &ResourceKind, new: &Value, old: &Value) -> bool {
    if is_endpoint_slice(kind) {
        return ["endpoints", "ports", "addressType"]
            .iter()
            .any(|f| new.get(*f) != old.get(*f));
    }
    new.get("spec") != old.get("spec")
}

/// Whether PUT may create a missing object.
pub fn allow_create_on_update(kind: &ResourceKind) -> bool {
    matches!(kind.kind, "Event" | "Lease" | "Endpoints")
}

/// Resets what users may not set on create (mostly `status`).
pub fn prepare_for_create(kind: &ResourceKind, obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    if kind.custom.is_some() {
        if kind.has_subresource(crate::registry::Subresource::Status) {
            m.remove("status");
        }
        return;
    }
    match kind.strategy {
        Strategy::Pod => {
            m.insert("status".into(), json!({"phase": "Pending"}));
        }
        Strategy::Namespace => {
            m.insert("status".into(), json!({"phase": "Active"}));
            let spec = m.entry("spec").or_insert_with(|| json!({}));
            if spec.get("finalizers").is_none() && spec.is_object() {
                spec["finalizers"] = json!(["kubernetes"]);
            }
        }
        Strategy::Workload => {
            m.insert("status".into(), json!({}));
        }
        _ if kind.kind == "Service" => {
            m.insert("status".into(), json!({"loadBalancer": {}}));
        }
        Strategy::WithStatus
            if kind.group.is_empty()
                && matches!(kind.kind, "PersistentVolume" | "PersistentVolumeClaim") =>
        {
            m.insert("status".into(), json!({"phase": "Pending"}));
        }
        Strategy::WithStatus => {
            m.insert("status".into(), json!({}));
        }
        _ => {}
    }
}

/// Applies defaults (and, on create, admission defaults) to an object of `kind`.
pub fn default_object(kind: &ResourceKind, obj: &Value, create: bool) -> Result<Value, ApiError> {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
    if kind.custom.is_some() {
        let mut o = obj.clone();
        crate::crd::default_object(kind, &mut o);
        return Ok(o);
    }
    match (kind.group, kind.kind) {
        ("", "Pod") => {
            let mut pod: core::Pod = typed(kind, obj)?;
            defaults::default_pod(&mut pod);
            if create {
                let spec = pod.spec.get_or_insert_with(Default::default);
                defaults::admit_pod_spec(spec);
                let qos = defaults::qos_class(spec);
                pod.status.get_or_insert_with(Default::default).qos_class = Some(qos.into());
            }
            back(&pod)
        }
        ("apps", "ReplicaSet") => {
            let mut o: apps::ReplicaSet = typed(kind, obj)?;
            defaults::default_replica_set(&mut o);
            back(&o)
        }
        ("apps", "Deployment") => {
            let mut o: apps::Deployment = typed(kind, obj)?;
            defaults::default_deployment(&mut o);
            back(&o)
        }
        ("apps", "StatefulSet") => {
            let mut o: apps::StatefulSet = typed(kind, obj)?;
            defaults::default_stateful_set(&mut o);
            back(&o)
        }
        ("", "Service") => {
            let mut o: core::Service = typed(kind, obj)?;
            defaults::default_service(&mut o);
            back(&o)
        }
        ("", "Secret") => {
            // stringData is write-only: merged into data.
            let mut o = obj.clone();
            if let Some(sd) = o.get("stringData").and_then(Value::as_object).cloned() {
                use base64::Engine as _;
                let data = o
                    .as_object_mut()
                    .map(|m| m.entry("data").or_insert_with(|| json!({})));
                if let Some(Value::Object(data)) = data {
                    for (k, val) in sd {
                        let s = val.as_str().unwrap_or_default();
                        data.insert(
                            k,
                            base64::engine::general_purpose::STANDARD.encode(s).into(),
                        );
                    }
                }
                if let Some(m) = o.as_object_mut() {
                    m.remove("stringData");
                }
            }
            if o.get("type").is_none()
                && let Some(m) = o.as_object_mut()
            {
                m.insert("type".into(), "Opaque".into());
            }
            Ok(o)
        }
        (_, _) if builtin::has_defaults(kind) => {
            let mut o = obj.clone();
            builtin::default_object(kind, &mut o, create);
            through_type(kind, o)
        }
        ("", "Namespace") => {
            let mut o = obj.clone();
            let name = crate::objects::name_of(&o).to_string();
            if !name.is_empty() {
                let labels = crate::objects::meta_mut(&mut o)
                    .entry("labels")
                    .or_insert_with(|| json!({}));
                if let Value::Object(l) = labels {
                    l.insert("kubernetes.io/metadata.name".into(), name.into());
                }
            }
            Ok(o)
        }
        _ => through_type(kind, obj.clone()),
    }
}

/// The object through its kind's type, as upstream's Go structs serialize it: a status the
/// server reset to `{}` gets its required counters as zeros (`replicas: 0`), which typed
/// clients such as the Python client insist on.
fn through_type(kind: &ResourceKind, o: Value) -> Result<Value, ApiError> {
    match kind.round_trip {
        Some(_) => {
            crate::objects::round_trip(kind, o).map_err(|e| ApiError::internal(e.to_string()))
        }
        None => Ok(o),
    }
}

fn name_rule(kind: &ResourceKind) -> NameRule {
    match kind.kind {
        "Namespace" | "Service" => NameRule::Label,
        "Event" => NameRule::Path,
        // `v1.` names the core group's APIService.
        "APIService" => NameRule::Path,
        _ if kind.group == "rbac.authorization.k8s.io" => NameRule::Path,
        _ => NameRule::Subdomain,
    }
}

fn meta_of(kind: &ResourceKind, obj: &Value) -> Result<ObjectMeta, ApiError> {
    typed(kind, obj.get("metadata").unwrap_or(&Value::Null))
}

pub(crate) fn validate_workload(
    kind: &ResourceKind,
    obj: &Value,
) -> Result<Vec<FieldError>, ApiError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    if let Some(r) = spec.get("replicas").and_then(Value::as_i64)
        && r < 0
    {
        errs.push(FieldError::invalid(
            "spec.replicas",
            r,
            "must be greater than or equal to 0",
        ));
    }
    let selector = spec.get("selector");
    let sel = match selector {
        None | Some(Value::Null) => {
            errs.push(FieldError::required("spec.selector", ""));
            None
        }
        Some(s) => match serde_json::from_value(s.clone())
            .map_err(|e| e.to_string())
            .and_then(|m| LabelSelector::from_meta(&m).map_err(|e| e.to_string()))
        {
            Ok(sel) if sel.is_empty() => {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    s.clone(),
                    "empty selector is invalid for deployment",
                ));
                None
            }
            Ok(sel) => Some(sel),
            Err(e) => {
                errs.push(FieldError::invalid("spec.selector", s.clone(), e));
                None
            }
        },
    };
    let template = spec.get("template").cloned().unwrap_or(json!({}));
    let tlabels = crate::objects::labels(&template);
    if let Some(sel) = sel
        && !sel.matches(&tlabels)
    {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            serde_json::to_value(&tlabels).unwrap_or_default(),
            "`selector` does not match template `labels`",
        ));
    }
    let mut tspec: Option<k8s_openapi::api::core::v1::PodSpec> =
        template.get("spec").map(|s| typed(kind, s)).transpose()?;
    if kind.kind == "StatefulSet"
        && let Some(ps) = tspec.as_mut()
    {
        // Mounts may name a claim template: the controller adds its volume to each pod.
        let volumes = ps.volumes.get_or_insert_with(Vec::new);
        for t in spec
            .get("volumeClaimTemplates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = t.pointer("/metadata/name").and_then(Value::as_str);
            if let Some(name) = name
                && !volumes.iter().any(|v| v.name == name)
            {
                volumes.push(k8s_openapi::api::core::v1::Volume {
                    name: name.to_string(),
                    persistent_volume_claim: Some(
                        k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                            claim_name: name.to_string(),
                            read_only: None,
                        },
                    ),
                    ..Default::default()
                });
            }
        }
    }
    match tspec {
        Some(ps) => errs.extend(v::validate_pod_spec(&ps, "spec.template.spec")),
        None => errs.push(FieldError::required("spec.template.spec.containers", "")),
    }
    errs.extend(v::validate_labels(
        Some(&tlabels),
        "spec.template.metadata.labels",
    ));
    Ok(errs)
}

/// Validates an object for create.
pub fn validate_create(kind: &ResourceKind, obj: &Value) -> Result<Vec<FieldError>, ApiError> {
    validate_new(kind, obj, None)
}

/// Validates an object as created, or as updated from `old` (custom kinds' transition
/// rules see it).
fn validate_new(
    kind: &ResourceKind,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Vec<FieldError>, ApiError> {
    if kind.kind == "Pod" {
        let pod: k8s_openapi::api::core::v1::Pod = typed(kind, obj)?;
        return Ok(v::validate_pod(&pod));
    }
    let meta = meta_of(kind, obj)?;
    let mut errs = v::validate_object_meta(&meta, kind.namespaced, name_rule(kind));
    if kind.strategy == Strategy::Workload {
        errs.extend(validate_workload(kind, obj)?);
    }
    errs.extend(builtin::validate(kind, obj)?);
    if kind.group.is_empty() && kind.kind == "Service" {
        errs.extend(podvisor_api::service::validate_service(&typed(kind, obj)?));
    }
    if kind.custom.is_some() {
        errs.extend(crate::crd::validate_object(kind, obj, old));
    }
    if kind.kind == "Lease"
        && let Some(d) = obj
            .pointer("/spec/leaseDurationSeconds")
            .and_then(Value::as_i64)
        && d <= 0
    {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    Ok(errs)
}

/// Validates a pod update through its `ephemeralcontainers` subresource.
pub fn validate_ephemeral_containers_update(
    kind: &ResourceKind,
    new: &Value,
    old: &Value,
) -> Result<Vec<FieldError>, ApiError> {
    validate_pods(kind, new, old, v::validate_pod_ephemeral_containers_update)
}

/// Runs a pod subresource's validation on the typed pods.
fn validate_pods(
    kind: &ResourceKind,
    new: &Value,
    old: &Value,
    validate: fn(
        &k8s_openapi::api::core::v1::Pod,
        &k8s_openapi::api::core::v1::Pod,
    ) -> Vec<FieldError>,
) -> Result<Vec<FieldError>, ApiError> {
    let n: k8s_openapi::api::core::v1::Pod = typed(kind, new)?;
    let o: k8s_openapi::api::core::v1::Pod = typed(kind, old)?;
    Ok(validate(&n, &o))
}

/// Validates a `pods/resize` write (upstream `ValidatePodResize`).
pub fn validate_resize(
    kind: &ResourceKind,
    new: &Value,
    old: &Value,
) -> Result<Vec<FieldError>, ApiError> {
    validate_pods(kind, new, old, v::validate_pod_resize)
}

/// Validates an update of `kind` (`new` replacing `old`).
pub fn validate_update(
    kind: &ResourceKind,
    new: &Value,
    old: &Value,
) -> Result<Vec<FieldError>, ApiError> {
    if kind.kind == "Pod" {
        let n: k8s_openapi::api::core::v1::Pod = typed(kind, new)?;
        let o: k8s_openapi::api::core::v1::Pod = typed(kind, old)?;
        return Ok(v::validate_pod_update(&n, &o));
    }
    let mut errs = validate_new(kind, new, Some(old))?;
    errs.extend(builtin::validate_update(kind, new, old));
    if kind.group.is_empty() && kind.kind == "Service" {
        errs.extend(podvisor_api::service::validate_service_update(
            &typed(kind, new)?,
            &typed(kind, old)?,
        ));
    }
    if kind.strategy == Strategy::Workload {
        let ns = new.pointer("/spec/selector");
        let os = old.pointer("/spec/selector");
        if ns != os {
            errs.push(FieldError::invalid(
                "spec.selector",
                ns.cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
    }
    Ok(errs)
}

/// The field-selector fields a kind supports, beyond `metadata.name` and `metadata.namespace`.
pub fn selectable_fields(kind: &ResourceKind) -> &'static [&'static str] {
    match kind.strategy {
        Strategy::Pod => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Strategy::Event => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        Strategy::Node => &["spec.unschedulable"],
        Strategy::Namespace => &["status.phase"],
        Strategy::Workload => &["status.replicas"],
        Strategy::Generic if kind.kind == "Secret" => &["type"],
        Strategy::WithStatus if kind.kind == "Job" => &["status.successful"],
        Strategy::Generic | Strategy::WithStatus => &[],
    }
}

/// The value of a selectable field of `obj`.
pub fn field_value(kind: &ResourceKind, obj: &Value, field: &str) -> Option<String> {
    let s = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    match field {
        "metadata.name" => s(obj.pointer("/metadata/name")),
        "metadata.namespace" => s(obj.pointer("/metadata/namespace")),
        "spec.hostNetwork" => {
            Some(s(obj.pointer("/spec/hostNetwork")).unwrap_or_else(|| "false".into()))
        }
        "spec.unschedulable" => {
            Some(s(obj.pointer("/spec/unschedulable")).unwrap_or_else(|| "false".into()))
        }
        "spec.serviceAccountName" => s(obj.pointer("/spec/serviceAccountName")),
        "source" if kind.group == "events.k8s.io" => s(obj.pointer("/deprecatedSource/component")),
        "source" => s(obj.pointer("/source/component")),
        "reportingComponent" if kind.group == "events.k8s.io" => {
            s(obj.pointer("/reportingController"))
        }
        f if f.starts_with("involvedObject.") && kind.group == "events.k8s.io" => {
            let rest = &f["involvedObject.".len()..];
            s(obj.pointer(&format!("/regarding/{rest}")))
        }
        f => s(obj.pointer(&format!("/{}", f.replace('.', "/")))),
    }
}

/// Checks that every field of a field selector is supported for `kind`.
pub fn check_field_selector(
    kind: &ResourceKind,
    sel: &podvisor_api::FieldSelector,
) -> Result<(), ApiError> {
    for r in &sel.requirements {
        let ok = r.field == "metadata.name"
            || r.field == "metadata.namespace"
            || selectable_fields(kind).contains(&r.field.as_str());
        if !ok {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {}",
                r.field
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{EVENTS, EVENTS_V1, PERSISTENTVOLUMECLAIMS, PODS, REPLICASETS};

    #[test]
    fn claim_spec_is_immutable_but_binding_and_requests() {
        let claim = |volume: &str, size: &str, modes: &str| {
            json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {
                "accessModes": [modes], "volumeName": volume,
                "resources": {"requests": {"storage": size}}}})
        };
        let upd = |new: &Value, old: &Value| {
            validate_update(&PERSISTENTVOLUMECLAIMS, new, old)
                .unwrap()
                .iter()
                .map(|e| e.field.clone())
                .collect::<Vec<_>>()
        };
        let unbound = claim("", "1Gi", "ReadWriteOnce");
        assert!(upd(&claim("pv1", "1Gi", "ReadWriteOnce"), &unbound).is_empty());
        assert!(upd(&claim("", "2Gi", "ReadWriteOnce"), &unbound).is_empty());
        assert_eq!(upd(&claim("", "1Gi", "ReadOnlyMany"), &unbound), ["spec"]);
        let bound = claim("pv1", "1Gi", "ReadWriteOnce");
        assert_eq!(upd(&claim("pv2", "1Gi", "ReadWriteOnce"), &bound), ["spec"]);
    }

    #[test]
    fn field_values_cover_pods_and_events() {
        let pod = json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert_eq!(
            field_value(&PODS, &pod, "spec.nodeName").as_deref(),
            Some("n1")
        );
        assert_eq!(
            field_value(&PODS, &pod, "status.phase").as_deref(),
            Some("Running")
        );
        assert_eq!(
            field_value(&PODS, &pod, "spec.hostNetwork").as_deref(),
            Some("false")
        );
        let ev = json!({"involvedObject": {"uid": "u1", "name": "x"}, "source": {"component": "kubelet"}});
        assert_eq!(
            field_value(&EVENTS, &ev, "involvedObject.uid").as_deref(),
            Some("u1")
        );
        assert_eq!(
            field_value(&EVENTS, &ev, "source").as_deref(),
            Some("kubelet")
        );
        let ev2 = json!({"regarding": {"name": "x"}});
        assert_eq!(
            field_value(&EVENTS_V1, &ev2, "involvedObject.name").as_deref(),
            Some("x")
        );
        let bad = podvisor_api::FieldSelector::parse("spec.foo=x").unwrap();
        assert_eq!(check_field_selector(&PODS, &bad).unwrap_err().code, 400);
    }

    #[test]
    fn workload_selector_must_match_template() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r", "namespace": "d"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "y"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let errs = validate_create(&REPLICASETS, &rs).unwrap();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn rolling_updates_and_disruption_budgets_take_ints_or_percents_as_upstream() {
        let msgs = |api: &str, kind: &str, spec: Value| {
            let k = crate::registry::lookup_kind(api, kind).unwrap();
            let mut o = json!({"apiVersion": api, "kind": kind,
                "metadata": {"name": "x", "namespace": "d"}, "spec": spec});
            if let Some(t) = o.pointer_mut("/spec") {
                t["selector"] = json!({"matchLabels": {"app": "x"}});
                if kind != "PodDisruptionBudget" {
                    t["template"] = json!({"metadata": {"labels": {"app": "x"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]}});
                }
            }
            let o = default_object(k, &o, true).unwrap();
            let errs = validate_create(k, &o).unwrap();
            errs.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        let pdb = |spec| msgs("policy/v1", "PodDisruptionBudget", spec);
        assert_eq!(pdb(json!({"minAvailable": 1})), Vec::<String>::new());
        assert_eq!(pdb(json!({"maxUnavailable": "50%"})), Vec::<String>::new());
        assert_eq!(
            pdb(json!({"minAvailable": "50"})),
            [
                "spec.minAvailable: Invalid value: \"50\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
            ]
        );
        assert_eq!(
            pdb(json!({"maxUnavailable": "150%"})),
            ["spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
        assert_eq!(
            pdb(json!({"minAvailable": -1})),
            ["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]
        );
        let both = pdb(json!({"minAvailable": 1, "maxUnavailable": 1}));
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(both[0].starts_with("spec: Invalid value: "), "{both:?}");
        assert!(both[0].ends_with(": minAvailable and maxUnavailable cannot be both set"));
        assert_eq!(
            pdb(json!({"minAvailable": 1, "unhealthyPodEvictionPolicy": "Never"})),
            [
                "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""
            ]
        );

        let deploy = |strategy| msgs("apps/v1", "Deployment", json!({"strategy": strategy}));
        assert_eq!(deploy(json!({"type": "Recreate"})), Vec::<String>::new());
        assert_eq!(
            deploy(
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})
            ),
            [
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"
            ]
        );
        assert_eq!(
            deploy(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "110%"}})),
            [
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"110%\": must not be greater than 100%"
            ]
        );
        assert_eq!(
            deploy(json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})),
            [
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
            ]
        );

        let ds = |ru| {
            msgs(
                "apps/v1",
                "DaemonSet",
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru}}),
            )
        };
        assert_eq!(ds(json!({"maxUnavailable": 1})), Vec::<String>::new());
        assert_eq!(
            ds(json!({"maxUnavailable": 0, "maxSurge": "10%"})),
            Vec::<String>::new()
        );
        assert_eq!(
            ds(json!({"maxUnavailable": 1, "maxSurge": 1})),
            [
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"
            ]
        );
        assert_eq!(
            ds(json!({"maxUnavailable": 0, "maxSurge": 0})),
            [
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
            ]
        );
    }
}
