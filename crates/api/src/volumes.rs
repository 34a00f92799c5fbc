//! PersistentVolume ↔ PersistentVolumeClaim matching as upstream's PV controller and the
//! scheduler's VolumeBinding plugin read it (`pkg/controller/volume/persistentvolume/util`,
//! `component-helpers/storage/volume`): the storage class of either side, whether a volume
//! is bound to a claim, access and volume modes, capacity, a volume's node affinity, and
//! the best (smallest sufficient) available volume for a claim. Pure: shared by the PV
//! controller and the scheduler.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::LabelSelector;
use crate::nodeaffinity::term_matches;

/// Set on a claim once the PV controller completed its binding.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume the controller (not a user) bound.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Set on a dynamically provisioned volume: the provisioner's name.
pub const ANN_DYNAMICALLY_PROVISIONED: &str = "pv.kubernetes.io/provisioned-by";
/// Set on a claim that waits for a provisioner: its name.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`ANN_STORAGE_PROVISIONER`] (still written by upstream).
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Set by the scheduler on a `WaitForFirstConsumer` claim: the node its first pod goes to.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The beta storage-class annotation (wins over `storageClassName`).
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// Marks the default StorageClass.
pub const ANN_DEFAULT_STORAGE_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling of [`ANN_DEFAULT_STORAGE_CLASS`].
pub const ANN_BETA_DEFAULT_STORAGE_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// Keeps a claim while a pod uses it.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// Keeps a volume while it is bound.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";
/// The built-in node-local provisioner.
pub const LOCAL_PATH_PROVISIONER: &str = "podvisor.io/local-path";
/// The StorageClass a cluster starts with (default, [`LOCAL_PATH_PROVISIONER`]).
pub const DEFAULT_STORAGE_CLASS: &str = "local-path";
/// The Node annotation where an agent publishes the directory under which the node-local
/// provisioner's volumes live.
pub const ANN_LOCAL_STORAGE_ROOT: &str = "node.podvisor.io/local-storage-root";
/// The node label local volumes are pinned with.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

fn annotation<'a>(a: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    a.and_then(|a| a.get(key)).map(String::as_str)
}

/// The claim's class: the beta annotation, else `storageClassName`, else `""`.
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    annotation(claim.metadata.annotations.as_ref(), ANN_BETA_STORAGE_CLASS)
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The volume's class: the beta annotation, else `storageClassName`, else `""`.
pub fn volume_class(pv: &PersistentVolume) -> &str {
    annotation(pv.metadata.annotations.as_ref(), ANN_BETA_STORAGE_CLASS)
        .or_else(|| pv.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the volume's `claimRef` names the claim (and its UID, when the ref has one).
pub fn is_bound_to_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

/// Whether the volume offers every access mode the claim asks for.
pub fn access_modes_fit(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let have = pv
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[]);
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[])
        .iter()
        .all(|m| have.contains(m))
}

/// Whether claim and volume disagree on `volumeMode` (default `Filesystem`).
pub fn volume_mode_mismatch(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let c = claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let v = pv.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    c.unwrap_or("Filesystem") != v.unwrap_or("Filesystem")
}

/// The storage the claim requests, in bytes (0 when missing or unparsable).
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> i128 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| crate::status::parse_quantity(&q.0).ok())
        .unwrap_or(0)
}

/// The volume's capacity in bytes (0 when missing or unparsable).
pub fn capacity_bytes(pv: &PersistentVolume) -> i128 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| crate::status::parse_quantity(&q.0).ok())
        .unwrap_or(0)
}

/// Whether a node (its labels and name) satisfies the volume's required node affinity
/// (no affinity: every node).
pub fn node_affinity_matches(
    pv: &PersistentVolume,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    let Some(req) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    req.node_selector_terms
        .iter()
        .any(|t| term_matches(t, labels, node_name))
}

/// The node a volume is pinned to by a single `kubernetes.io/hostname In [node]` term.
pub fn pinned_node(pv: &PersistentVolume) -> Option<&str> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    let [term] = terms.as_slice() else {
        return None;
    };
    let [req] = term.match_expressions.as_deref()? else {
        return None;
    };
    match (
        req.key.as_str(),
        req.operator.as_str(),
        req.values.as_deref(),
    ) {
        (LABEL_HOSTNAME, "In", Some([node])) => Some(node.as_str()),
        _ => None,
    }
}

/// Upstream's `checkVolumeSatisfyClaim`: why a volume a claim names cannot serve it.
pub fn check_volume_satisfies_claim(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), String> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion {:?}",
            pv.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    if capacity_bytes(pv) < requested_bytes(claim) {
        return Err("requested PV is too small".into());
    }
    if volume_class(pv) != claim_class(claim) {
        return Err("storageClassName does not match".into());
    }
    if volume_mode_mismatch(claim, pv) {
        return Err("incompatible volumeMode".into());
    }
    if !access_modes_fit(claim, pv) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// A node the scheduler is trying a claim on: its labels and name.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// The node's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The node's name.
    pub name: &'a str,
}

/// Upstream's `FindMatchingVolume`: the volume already bound (or pre-bound) to the claim,
/// else the smallest `Available` volume of the claim's class whose capacity suffices, whose
/// access and volume modes fit, whose labels match the claim's selector and (with a node)
/// whose node affinity admits the node. With `delay_binding` and no node (the PV
/// controller on a `WaitForFirstConsumer` claim) only a volume pre-bound to the claim is
/// returned: the scheduler binds the others.
pub fn find_matching_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: Option<NodeView<'_>>,
    delay_binding: bool,
) -> Option<&'a PersistentVolume> {
    let requested = requested_bytes(claim);
    let class = claim_class(claim);
    let selector = claim
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .map(LabelSelector::from_meta);
    let selector = match selector {
        Some(Ok(s)) => Some(s),
        // An unparsable selector matches nothing.
        Some(Err(_)) => return None,
        None => None,
    };
    let mut best: Option<(&PersistentVolume, i128)> = None;
    for pv in volumes {
        if !access_modes_fit(claim, pv) || volume_mode_mismatch(claim, pv) {
            continue;
        }
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let affinity_ok = node.is_none_or(|n| node_affinity_matches(pv, n.labels, n.name));
        if is_bound_to_claim(pv, claim) {
            return affinity_ok.then_some(pv);
        }
        if node.is_none() && delay_binding {
            continue;
        }
        let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        let unclaimed = pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none());
        if !available || !unclaimed {
            continue;
        }
        let labels = pv.metadata.labels.clone().unwrap_or_default();
        if selector.as_ref().is_some_and(|s| !s.matches(&labels)) {
            continue;
        }
        if volume_class(pv) != class || !affinity_ok {
            continue;
        }
        let size = capacity_bytes(pv);
        if size >= requested && best.is_none_or(|(_, b)| size < b) {
            best = Some((pv, size));
        }
    }
    best.map(|(pv, _)| pv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
    use k8s_openapi::api::core::v1::{
        ObjectReference, PersistentVolumeClaimSpec, PersistentVolumeSpec, PersistentVolumeStatus,
        VolumeNodeAffinity, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as Sel, ObjectMeta};

    fn claim(size: &str, modes: &[&str], class: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("c".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                storage_class_name: class.map(String::from),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn volume(name: &str, size: &str, modes: &[&str], class: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                capacity: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
                storage_class_name: (!class.is_empty()).then(|| class.to_string()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..Default::default()
            }),
        }
    }

    fn pinned(mut pv: PersistentVolume, node: &str) -> PersistentVolume {
        pv.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: LABEL_HOSTNAME.into(),
                        operator: "In".into(),
                        values: Some(vec![node.into()]),
                    }]),
                    match_fields: None,
                }],
            }),
        });
        pv
    }

    #[test]
    fn smallest_sufficient_volume_of_the_class_wins() {
        let c = claim("1Gi", &["ReadWriteOnce"], Some("fast"));
        let vols = [
            volume("big", "10Gi", &["ReadWriteOnce"], "fast"),
            volume("small", "500Mi", &["ReadWriteOnce"], "fast"),
            volume("fit", "2Gi", &["ReadWriteOnce", "ReadOnlyMany"], "fast"),
            volume("other-class", "1Gi", &["ReadWriteOnce"], "slow"),
            volume("wrong-mode", "1Gi", &["ReadOnlyMany"], "fast"),
        ];
        let m = find_matching_volume(&c, &vols, None, false).map(|v| v.metadata.name.clone());
        assert_eq!(m, Some(Some("fit".into())));
    }

    #[test]
    fn only_available_unclaimed_volumes_are_candidates() {
        let c = claim("1Gi", &["ReadWriteOnce"], None);
        let mut pending = volume("pending", "1Gi", &["ReadWriteOnce"], "");
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        let mut released = volume("released", "1Gi", &["ReadWriteOnce"], "");
        released.status.as_mut().unwrap().phase = Some("Released".into());
        assert!(find_matching_volume(&c, [&pending, &released], None, false).is_none());
    }

    #[test]
    fn a_prebound_volume_is_returned_even_when_delayed() {
        let c = claim("1Gi", &["ReadWriteOnce"], Some("local"));
        let free = volume("free", "1Gi", &["ReadWriteOnce"], "local");
        let mut pre = volume("pre", "5Gi", &["ReadWriteOnce"], "local");
        pre.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("c".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        });
        pre.status.as_mut().unwrap().phase = Some("Bound".into());
        let m = find_matching_volume(&c, [&free, &pre], None, true);
        assert_eq!(m.and_then(|v| v.metadata.name.as_deref()), Some("pre"));
        // Without the pre-bound one, a delayed claim gets nothing from the controller.
        assert!(find_matching_volume(&c, [&free], None, true).is_none());
    }

    #[test]
    fn scheduler_path_checks_node_affinity() {
        let c = claim("1Gi", &["ReadWriteOnce"], Some("local"));
        let a = pinned(volume("on-a", "1Gi", &["ReadWriteOnce"], "local"), "a");
        let labels_b = BTreeMap::from([(LABEL_HOSTNAME.to_string(), "b".to_string())]);
        let labels_a = BTreeMap::from([(LABEL_HOSTNAME.to_string(), "a".to_string())]);
        let on = |labels, name| Some(NodeView { labels, name });
        assert!(find_matching_volume(&c, [&a], on(&labels_b, "b"), true).is_none());
        assert!(find_matching_volume(&c, [&a], on(&labels_a, "a"), true).is_some());
        assert_eq!(pinned_node(&a), Some("a"));
    }

    #[test]
    fn selector_and_classes_including_the_beta_annotation() {
        let mut c = claim("1Gi", &["ReadWriteOnce"], None);
        c.spec.as_mut().unwrap().selector = Some(Sel {
            match_labels: Some(BTreeMap::from([("tier".into(), "db".into())])),
            ..Default::default()
        });
        let mut labelled = volume("l", "1Gi", &["ReadWriteOnce"], "");
        labelled.metadata.labels = Some(BTreeMap::from([("tier".into(), "db".into())]));
        let plain = volume("p", "1Gi", &["ReadWriteOnce"], "");
        let m = find_matching_volume(&c, [&plain, &labelled], None, false);
        assert_eq!(m.and_then(|v| v.metadata.name.as_deref()), Some("l"));
        let mut beta = claim("1Gi", &["ReadWriteOnce"], Some("x"));
        beta.metadata.annotations = Some(BTreeMap::from([(
            ANN_BETA_STORAGE_CLASS.to_string(),
            "y".to_string(),
        )]));
        assert_eq!(claim_class(&beta), "y");
    }

    #[test]
    fn satisfy_checks_report_upstream_messages() {
        let c = claim("2Gi", &["ReadWriteOnce"], Some("a"));
        let small = volume("v", "1Gi", &["ReadWriteOnce"], "a");
        assert_eq!(
            check_volume_satisfies_claim(&small, &c).unwrap_err(),
            "requested PV is too small"
        );
        let class = volume("v", "2Gi", &["ReadWriteOnce"], "b");
        assert_eq!(
            check_volume_satisfies_claim(&class, &c).unwrap_err(),
            "storageClassName does not match"
        );
        let mut block = volume("v", "2Gi", &["ReadWriteOnce"], "a");
        block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        assert_eq!(
            check_volume_satisfies_claim(&block, &c).unwrap_err(),
            "incompatible volumeMode"
        );
        let rox = volume("v", "2Gi", &["ReadOnlyMany"], "a");
        assert_eq!(
            check_volume_satisfies_claim(&rox, &c).unwrap_err(),
            "incompatible accessMode"
        );
        assert!(
            check_volume_satisfies_claim(&volume("v", "3Gi", &["ReadWriteOnce"], "a"), &c).is_ok()
        );
    }
}
