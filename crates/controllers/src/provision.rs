//! The built-in node-local provisioner (`podvisor.io/local-path`, what k3s users get from
//! local-path-provisioner), its control-plane half.
//!
//! # Life of a provisioned volume
//!
//! ```text
//! claim of a local-path class ── scheduler picks the node (selected-node annotation)
//!   └─▶ PV `pvc-<claim uid>`: local.path = <node's storage root>/pvc-<uid>_<ns>_<claim>,
//!       node affinity kubernetes.io/hostname=<node>, pre-bound to the claim,
//!       reclaim policy of the class          (event ProvisioningSucceeded)
//!   └─▶ the binder binds it; the node's agent makes the directory on first mount and
//!       applies the pod's fsGroup
//!   └─▶ claim deleted, policy Delete: helper pod `helper-pod-delete-<pv>` (kube-system,
//!       on the node, RuntimeClass `host`) removes the directory; once it Succeeded the
//!       helper pod and then the PV are deleted. A failed helper marks the PV Failed
//!       (VolumeFailedDelete); a node that no longer exists takes the directory with it.
//! ```
//!
//! The storage root is what the node's agent publishes in the Node annotation
//! [`ANN_LOCAL_STORAGE_ROOT`]; the helper pod removes only a path directly under that
//! root named after the volume, so a hand-made PV with the provisioner's annotation cannot
//! make it remove anything else. Only `WaitForFirstConsumer` classes can be served (the
//! node must be known): an `Immediate` claim fails with local-path-provisioner's
//! "configuration error, no node was specified".

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, LocalVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, Pod, PodSpec, Toleration,
    VolumeNodeAffinity,
};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::reflector::ObjectRef;
use podvisor_api::volumes::{
    ANN_BOUND_BY_CONTROLLER, ANN_DYNAMICALLY_PROVISIONED, ANN_LOCAL_STORAGE_ROOT,
    ANN_SELECTED_NODE, LABEL_HOSTNAME, LOCAL_PATH_PROVISIONER, PV_PROTECTION_FINALIZER,
    pinned_node,
};
use podvisor_kit::events::EventType;
use tracing::info;

use crate::context::{ControllerError, Ctx};
use crate::pvcontroller::{self as pvc};

/// The namespace helper pods run in.
const HELPER_NAMESPACE: &str = "kube-system";
/// The label naming the volume a helper pod works on.
const HELPER_LABEL: &str = "storage.podvisor.io/helper-for";
/// How often a running helper pod is looked at.
const HELPER_POLL: Duration = Duration::from_secs(1);

/// The volume a helper pod works for, if `pod` is one.
pub(crate) fn helper_volume(pod: &Pod) -> Option<&str> {
    if pod.metadata.namespace.as_deref() != Some(HELPER_NAMESPACE) {
        return None;
    }
    pod.metadata
        .labels
        .as_ref()?
        .get(HELPER_LABEL)
        .map(String::as_str)
}

/// Upstream's `provisionClaim` for a claim of a class: the claim is annotated with the
/// provisioner; the built-in one makes the volume now, others are waited for.
pub(crate) async fn provision_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
) -> Result<PersistentVolumeClaim, ControllerError> {
    let class_name = podvisor_api::volumes::claim_class(claim).to_string();
    let Some(class) = pvc::storage_class(ctx, &class_name) else {
        pvc::event_on_claim(
            ctx,
            claim,
            EventType::Warning,
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class_name:?} not found"),
        );
        return Ok(claim.clone());
    };
    let claim = pvc::set_claim_provisioner(ctx, claim, &class.provisioner).await?;
    if class.provisioner != LOCAL_PATH_PROVISIONER {
        pvc::event_on_claim(
            ctx,
            &claim,
            EventType::Normal,
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                class.provisioner
            ),
        );
        return Ok(claim);
    }
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let pv_name = format!("pvc-{uid}");
    if pvc::cached_volume(ctx, &pv_name).is_some() {
        return Ok(claim);
    }
    let failed = |msg: String| {
        pvc::event_on_claim(ctx, &claim, EventType::Warning, "ProvisioningFailed", msg);
        Ok(claim.clone())
    };
    let node = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_SELECTED_NODE))
        .cloned()
        .unwrap_or_default();
    if node.is_empty() {
        return failed("configuration error, no node was specified".into());
    }
    let Some(root) = storage_root(ctx, &node) else {
        return failed(format!(
            "node {node:?} has no local storage (its agent publishes no {ANN_LOCAL_STORAGE_ROOT} annotation)"
        ));
    };
    let ns = claim.metadata.namespace.clone().unwrap_or_default();
    let name = claim.metadata.name.clone().unwrap_or_default();
    let path = format!("{root}/{pv_name}_{ns}_{name}");
    let spec = claim.spec.clone().unwrap_or_default();
    let capacity = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_else(|| k8s_openapi::apimachinery::pkg::api::resource::Quantity("0".into()));
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name.clone()),
            annotations: Some(BTreeMap::from([
                (
                    ANN_DYNAMICALLY_PROVISIONED.into(),
                    LOCAL_PATH_PROVISIONER.into(),
                ),
                (ANN_BOUND_BY_CONTROLLER.into(), "yes".into()),
            ])),
            finalizers: Some(vec![PV_PROTECTION_FINALIZER.into()]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some(BTreeMap::from([("storage".into(), capacity)])),
            claim_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns.clone()),
                name: Some(name.clone()),
                uid: Some(uid.clone()),
                resource_version: claim.metadata.resource_version.clone(),
                field_path: None,
            }),
            local: Some(LocalVolumeSource {
                path: path.clone(),
                fs_type: None,
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: LABEL_HOSTNAME.into(),
                            operator: "In".into(),
                            values: Some(vec![node.clone()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(class_name),
            mount_options: class.mount_options.clone(),
            volume_mode: spec.volume_mode.clone(),
            ..Default::default()
        }),
        status: None,
    };
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .create(&PostParams::default(), &pv)
        .await
    {
        Ok(_) => {
            info!(%ns, claim = %name, volume = %pv_name, %node, %path, "volume provisioned");
            pvc::event_on_claim(
                ctx,
                &claim,
                EventType::Normal,
                "ProvisioningSucceeded",
                format!("Successfully provisioned volume {pv_name} using {LOCAL_PATH_PROVISIONER}"),
            );
            Ok(claim)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(claim),
        Err(e) => {
            let msg = format!(
                "failed to provision volume with StorageClass {:?}: {e}",
                podvisor_api::volumes::claim_class(&claim)
            );
            pvc::event_on_claim(ctx, &claim, EventType::Warning, "ProvisioningFailed", msg);
            Err(ControllerError::api(
                "create",
                "PersistentVolume",
                "",
                &pv_name,
            )(e))
        }
    }
}

/// The storage root node `name` publishes.
fn storage_root(ctx: &Ctx, name: &str) -> Option<String> {
    let node = ctx.nodes.get(&ObjectRef::new(name))?;
    node.metadata
        .annotations
        .as_ref()?
        .get(ANN_LOCAL_STORAGE_ROOT)
        .filter(|r| r.starts_with('/') && !r.contains("/../"))
        .cloned()
}

/// Deletes a released volume of the provisioner: its directory through a helper pod on its
/// node, then the helper and the PV. Requeues itself while the helper runs.
pub(crate) async fn delete_volume(
    ctx: &Ctx,
    volume: &PersistentVolume,
) -> Result<Option<Duration>, ControllerError> {
    let pv_name = volume.metadata.name.clone().unwrap_or_default();
    let path = volume
        .spec
        .as_ref()
        .and_then(|s| s.local.as_ref().map(|l| l.path.clone()))
        .unwrap_or_default();
    let Some(node) = pinned_node(volume).map(String::from) else {
        if volume.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed") {
            pvc::delete_failed(ctx, volume, "the volume is not pinned to one node").await?;
        }
        return Ok(None);
    };
    if ctx.nodes.get(&ObjectRef::new(&node)).is_none() {
        // The node and its disk are gone.
        pvc::delete_volume_object(ctx, volume).await?;
        return Ok(None);
    }
    let Some(root) = storage_root(ctx, &node) else {
        return Ok(Some(HELPER_POLL * 5));
    };
    let inside = path
        .strip_prefix(&root)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|rest| {
            !rest.contains('/') && rest.starts_with(&format!("{pv_name}_")) && !rest.contains("..")
        });
    if !inside {
        if volume.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed") {
            let msg = format!("path {path:?} is not a directory of the provisioner under {root:?}");
            pvc::delete_failed(ctx, volume, &msg).await?;
        }
        return Ok(None);
    }
    let helper_name = format!("helper-pod-delete-{pv_name}");
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), HELPER_NAMESPACE);
    let helper = ctx
        .pods
        .get(&ObjectRef::new(&helper_name).within(HELPER_NAMESPACE));
    let Some(helper) = helper else {
        let pod = helper_pod(&helper_name, &pv_name, &node, &path);
        let r = pods.create(&PostParams::default(), &pod).await;
        crate::context::created(r, "Pod", HELPER_NAMESPACE, &helper_name)?;
        return Ok(Some(HELPER_POLL));
    };
    let phase = crate::pods::phase(&helper).unwrap_or("");
    match phase {
        "Succeeded" | "Failed" => {
            if helper.metadata.deletion_timestamp.is_none() {
                let _ = pods.delete(&helper_name, &DeleteParams::default()).await;
            }
            if phase == "Succeeded" {
                pvc::delete_volume_object(ctx, volume).await?;
            } else {
                let msg =
                    format!("failed to delete volume {pv_name}: helper pod {helper_name} failed");
                pvc::delete_failed(ctx, volume, &msg).await?;
            }
            Ok(None)
        }
        _ => Ok(Some(HELPER_POLL)),
    }
}

fn helper_pod(name: &str, pv_name: &str, node: &str, path: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(HELPER_NAMESPACE.into()),
            labels: Some(BTreeMap::from([(HELPER_LABEL.into(), pv_name.into())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            runtime_class_name: Some("host".into()),
            restart_policy: Some("Never".into()),
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            containers: vec![Container {
                name: "helper-pod".into(),
                image: Some("busybox".into()),
                command: Some(vec!["rm".into(), "-rf".into(), "--".into(), path.into()]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}
