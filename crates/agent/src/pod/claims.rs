//! `persistentVolumeClaim` volumes: the claim, its bound PersistentVolume, and the host
//! directory the volume is (a `local` or `hostPath` volume; the node-local provisioner
//! makes `local` volumes under the node's storage root).
//!
//! # Rules (as the kubelet's volume manager)
//!
//! * The claim must exist, must not be being deleted (`can't start pod because PVC ns/c is
//!   being deleted`), and must be `Bound` to a volume whose `claimRef` is this claim.
//! * A `local` volume's path must exist (`path "…" does not exist`), except a directory of
//!   the node-local provisioner under [`storage_root`], which is made on first use with
//!   mode 0777 (local-path-provisioner's `mkdir -m 0777 -p`). A `hostPath` volume's type
//!   is checked like an inline hostPath volume.
//! * The pod's `fsGroup` is applied to a `local` volume at every setup (the kubelet's
//!   `SetVolumeOwnership`, `OnRootMismatch` honoured); hostPath volumes are left alone, as
//!   upstream.
//! * The claim's (or the volume's) `readOnly` makes the mount read-only.
//!
//! Failures are the kubelet's `MountVolume.SetUp failed` [`VolumeError`]s: the worker
//! reports them and retries, so a claim bound a moment later is picked up.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource;

use crate::pod::env::EnvSources;
use crate::pod::volumes::VolumeError;

/// Where the node-local provisioner's volumes live, given the pods directory
/// (`<state_dir>/pods` → `<state_dir>/storage`).
pub fn storage_root(pods_dir: &Path) -> PathBuf {
    pods_dir.with_file_name("storage")
}

/// What a claim volume resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimVolume {
    /// The host directory (or file) to mount.
    pub path: PathBuf,
    /// Whether the mount is read-only.
    pub read_only: bool,
    /// Whether the pod's fsGroup applies (a `local` volume).
    pub owned: bool,
}

/// Resolves the claim volume `volume` of the pod.
pub async fn resolve(
    src: &EnvSources<'_>,
    volume: &str,
    source: &PersistentVolumeClaimVolumeSource,
    storage_root: &Path,
) -> Result<ClaimVolume, VolumeError> {
    let fail = |m: String| VolumeError::SetUp {
        volume: volume.to_string(),
        message: m,
    };
    let ns = src.pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = &source.claim_name;
    let claim = src
        .objects
        .persistent_volume_claim(ns, name)
        .await
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail(format!("persistentvolumeclaim {name:?} not found")))?;
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(fail(format!(
            "can't start pod because PVC {ns}/{name} is being deleted"
        )));
    }
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let pv_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || pv_name.is_empty() {
        return Err(fail(format!(
            "error processing PVC {ns}/{name}: PVC {ns}/{name} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({pv_name:?})"
        )));
    }
    let pv = src
        .objects
        .persistent_volume(&pv_name)
        .await
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| {
            fail(format!(
                "failed to fetch PV {pv_name} from API server: persistentvolumes {pv_name:?} not found"
            ))
        })?;
    let spec = pv.spec.clone().unwrap_or_default();
    let ref_uid = spec.claim_ref.as_ref().and_then(|r| r.uid.clone());
    if ref_uid.is_none() || ref_uid != claim.metadata.uid {
        return Err(fail(format!(
            "error processing PVC {ns}/{name}: the PV {pv_name} is not bound to this claim"
        )));
    }
    let read_only = source.read_only == Some(true);
    if let Some(local) = &spec.local {
        let path = PathBuf::from(&local.path);
        if !path.exists() {
            if !provisioned_under(&path, storage_root, &pv_name) {
                return Err(fail(format!("path {:?} does not exist", local.path)));
            }
            make_dir(&path).map_err(|e| fail(format!("cannot make {:?}: {e}", local.path)))?;
        }
        return Ok(ClaimVolume {
            path,
            read_only,
            owned: true,
        });
    }
    if let Some(h) = &spec.host_path {
        crate::pod::volumes::check_host_path(&h.path, h.type_.as_deref().unwrap_or(""))
            .map_err(fail)?;
        return Ok(ClaimVolume {
            path: PathBuf::from(&h.path),
            read_only,
            owned: false,
        });
    }
    Err(fail(format!(
        "the PV {pv_name} has an unsupported volume source (supported: local, hostPath)"
    )))
}

/// Whether `path` is a directory of the node-local provisioner for volume `pv`: directly
/// under `root`, named `<pv>_…`.
fn provisioned_under(path: &Path, root: &Path, pv: &str) -> bool {
    path.parent() == Some(root)
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{pv}_")))
}

fn make_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::MemoryObjects;
    use k8s_openapi::api::core::v1::{
        LocalVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
        PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeSpec, Pod,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use std::collections::BTreeMap;

    fn claim(phase: &str, volume: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("ns".into()),
                uid: Some("cu".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: (!volume.is_empty()).then(|| volume.to_string()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn volume(name: &str, path: &Path, uid: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                local: Some(LocalVolumeSource {
                    path: path.display().to_string(),
                    fs_type: None,
                }),
                claim_ref: Some(ObjectReference {
                    uid: Some(uid.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    async fn run(objects: &MemoryObjects, root: &Path) -> Result<ClaimVolume, VolumeError> {
        let pod = pod();
        let alloc = BTreeMap::new();
        let src = EnvSources {
            pod: &pod,
            host_ips: vec![],
            pod_ips: vec![],
            allocatable: &alloc,
            objects,
        };
        let source = PersistentVolumeClaimVolumeSource {
            claim_name: "data".into(),
            read_only: None,
        };
        resolve(&src, "v", &source, root).await
    }

    #[tokio::test]
    async fn a_provisioned_directory_is_made_on_first_use() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("storage");
        let objects = MemoryObjects::new();
        objects.put_claim(claim("Bound", "pvc-1"));
        let dir = root.join("pvc-1_ns_data");
        objects.put_volume(volume("pvc-1", &dir, "cu"));
        let got = run(&objects, &root).await.expect("resolved");
        assert_eq!(got.path, dir);
        assert!(got.owned && !got.read_only);
        assert!(dir.is_dir());
    }

    #[tokio::test]
    async fn unbound_deleted_missing_and_foreign_claims_fail_like_the_kubelet() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("storage");
        let objects = MemoryObjects::new();
        let err = run(&objects, &root).await.unwrap_err().to_string();
        assert!(
            err.contains("persistentvolumeclaim \"data\" not found"),
            "{err}"
        );
        objects.put_claim(claim("Pending", ""));
        let err = run(&objects, &root).await.unwrap_err().to_string();
        assert!(err.contains("has non-bound phase (\"Pending\")"), "{err}");
        let mut deleting = claim("Bound", "pvc-1");
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        objects.put_claim(deleting);
        let err = run(&objects, &root).await.unwrap_err().to_string();
        assert!(err.contains("is being deleted"), "{err}");
        objects.put_claim(claim("Bound", "pvc-1"));
        objects.put_volume(volume("pvc-1", &root.join("pvc-1_ns_data"), "other"));
        let err = run(&objects, &root).await.unwrap_err().to_string();
        assert!(err.contains("not bound to this claim"), "{err}");
        // A local path outside the storage root must exist already.
        objects.put_volume(volume("pvc-1", &tmp.path().join("elsewhere"), "cu"));
        let err = run(&objects, &root).await.unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
