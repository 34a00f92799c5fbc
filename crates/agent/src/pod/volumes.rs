//! Pod volumes on the node: what a container's `volumeMounts` bind-mount into its private
//! mount namespace (the runtime makes the mounts; this module prepares their sources).
//!
//! # Layout
//!
//! ```text
//! <pods_dir>/<pod uid>/volumes/kubernetes.io~empty-dir/<volume>     emptyDir (tmpfs for Memory)
//!                             /kubernetes.io~configmap/<volume>      configMap
//!                             /kubernetes.io~secret/<volume>         secret
//!                             /kubernetes.io~downward-api/<volume>   downwardAPI
//!                             /kubernetes.io~projected/<volume>      projected
//! ```
//!
//! hostPath volumes are the host path itself; persistentVolumeClaim volumes are their bound
//! volume's directory ([`crate::pod::claims`]).
//!
//! # Life
//!
//! * A volume is set up the first time a container that mounts it starts (the kubelet sets up
//!   all of a pod's volumes before its first container; here a volume no container mounts is
//!   never made). Setting up is idempotent: an emptyDir keeps its content across container
//!   restarts.
//! * API-data volumes (configMap, secret, downwardAPI, projected) are written like the
//!   kubelet's atomic writer: the files go to a fresh hidden directory `..<random>`, the
//!   symlink `..data` is swapped to it with one `rename`, and each top-level entry is a
//!   symlink into `..data`. A container therefore sees either the old or the new set, never a
//!   mix. They are rewritten (only if their content changed) each time a container mounting
//!   them starts, and, best effort, at the worker's syncs at most every [`REFRESH_INTERVAL`]
//!   (the worker wakes itself for that while the pod runs); a `subPath` mount of one of their
//!   files does not see updates (as upstream).
//! * Everything under `<pods_dir>/<uid>` (tmpfs mounts unmounted first) is removed when the
//!   pod's sandbox is removed ([`PodVolumes::cleanup`]).
//!
//! # Errors
//!
//! A missing ConfigMap or Secret that is not `optional`, a missing key, a failed hostPath
//! type check: [`VolumeError`], whose message is the kubelet's `MountVolume.SetUp failed for
//! volume "v" : ...`. The worker reports it as the container's `CreateContainerConfigError`
//! (with a `FailedMount` event) and retries after the config-error back-off.
//!
//! `serviceAccountToken` projections are tokens bound to the pod from the TokenRequest API,
//! cached and rotated by [`crate::pod::tokens`]; a failed fetch is the kubelet's
//! `MountVolume.SetUp failed for volume "v" : failed to fetch token: ...`.
//!
//! Not supported: `clusterTrustBundle` projections are skipped (the rest of the projected
//! volume is written), `mountPropagation` other than None, and secret volumes are plain
//! files under the pod directory rather than a tmpfs.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Volume};
use podvisor_runtime::{Mount, TerminationMessage};

use super::volume_payload::{
    Payload, config_map_payload, downward_payload, get_config_map, get_secret, payload_path,
    secret_payload, write_atomic,
};
use crate::error::AgentError;
use crate::pod::env::EnvSources;

/// The default file mode of API-data volumes (`defaultMode`, 0644).
pub const DEFAULT_MODE: u32 = 0o644;
/// How often, at most, a running pod's API-data volumes are re-read and rewritten.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

pub(super) const DATA_LINK: &str = "..data";

/// Why a container's volumes cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A volume could not be set up (the kubelet's `FailedMount` message).
    #[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
    SetUp {
        /// The volume's name.
        volume: String,
        /// What went wrong.
        message: String,
    },
    /// A volume mount is invalid (no such volume, bad subPath).
    #[error("{0}")]
    Mount(String),
}

impl VolumeError {
    pub(super) fn setup(volume: &str, message: impl Into<String>) -> VolumeError {
        VolumeError::SetUp {
            volume: volume.to_string(),
            message: message.into(),
        }
    }
}

/// The termination-message settings of a container (`terminationMessagePath`, default
/// `/dev/termination-log`; `terminationMessagePolicy`, default `File`; the API server applies
/// the defaults, they are repeated here). None when the path is explicitly empty.
pub fn termination_message(c: &Container) -> Option<TerminationMessage> {
    let path = c
        .termination_message_path
        .as_deref()
        .unwrap_or(DEFAULT_TERMINATION_MESSAGE_PATH);
    if path.is_empty() {
        return None;
    }
    Some(TerminationMessage {
        path: path.into(),
        fallback_to_logs_on_error: c.termination_message_policy.as_deref()
            == Some("FallbackToLogsOnError"),
    })
}

/// The volumes of one pod on this node. Owned by the pod's worker.
#[derive(Debug)]
pub struct PodVolumes {
    dir: PathBuf,
    /// API-data volumes written so far (refreshed at syncs).
    api_data: BTreeMap<String, Volume>,
    next_refresh: Option<tokio::time::Instant>,
    /// Whether volumes written before this worker (agent restart) were looked for.
    discovered: bool,
    /// The service-account tokens of projected volumes.
    tokens: crate::pod::tokens::PodTokens,
    /// Where the node-local provisioner's volumes live ([`crate::pod::claims`]).
    storage_root: PathBuf,
}

impl PodVolumes {
    /// The volumes of the pod `uid`, under `<pods_dir>/<uid>`.
    pub fn new(pods_dir: &Path, uid: &str) -> PodVolumes {
        PodVolumes {
            dir: pods_dir.join(uid),
            storage_root: crate::pod::claims::storage_root(pods_dir),
            api_data: BTreeMap::new(),
            next_refresh: None,
            discovered: false,
            tokens: Default::default(),
        }
    }

    /// The pod's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// When the API-data volumes are next refreshed (None: the pod has none set up).
    pub fn next_refresh(&self) -> Option<tokio::time::Instant> {
        self.next_refresh
    }

    /// Sets up the volumes `c` mounts and returns its mounts, in `volumeMounts` order.
    /// `env` is the container's resolved environment (for `subPathExpr`).
    pub async fn container_mounts(
        &mut self,
        src: &EnvSources<'_>,
        c: &Container,
        env: &[(String, String)],
    ) -> Result<Vec<Mount>, VolumeError> {
        let volumes = src
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .cloned()
            .unwrap_or_default();
        let mut mounts = Vec::new();
        let mut ready: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
        for vm in c.volume_mounts.iter().flatten() {
            let Some(v) = volumes.iter().find(|v| v.name == vm.name) else {
                return Err(VolumeError::Mount(format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    vm.name, c.name
                )));
            };
            let (source, forced_ro) = match ready.get(&v.name) {
                Some(r) => r.clone(),
                None => {
                    let r = self.setup(src, v).await?;
                    ready.insert(v.name.clone(), r.clone());
                    r
                }
            };
            let sub = match (&vm.sub_path, &vm.sub_path_expr) {
                (Some(p), _) if !p.is_empty() => Some(p.clone()),
                (_, Some(e)) if !e.is_empty() => {
                    let view: BTreeMap<&str, &str> =
                        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    Some(podvisor_api::expand::expand(e, &view))
                }
                _ => None,
            };
            let source = match sub {
                None => source,
                Some(sub) => subpath_source(&source, &sub, &vm.name)?,
            };
            if vm.mount_path.is_empty() || !vm.mount_path.starts_with('/') {
                return Err(VolumeError::Mount(format!(
                    "mountPath {:?} of volume {:?} must be an absolute path",
                    vm.mount_path, vm.name
                )));
            }
            mounts.push(Mount {
                source,
                target: vm.mount_path.clone().into(),
                read_only: forced_ro || vm.read_only == Some(true),
            });
        }
        Ok(mounts)
    }

    /// Re-reads the API-data volumes written so far and rewrites those that changed, if
    /// [`REFRESH_INTERVAL`] has passed since the last refresh. Returns when the next refresh
    /// is due (None: the pod has no such volume). Failures are logged (best effort: the
    /// previous content stays).
    pub async fn refresh(&mut self, src: &EnvSources<'_>) -> Option<tokio::time::Instant> {
        if !self.discovered {
            // After an agent restart: the volumes already written are refreshed too.
            self.discovered = true;
            for v in src.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
                if let Some(kind) = api_data_kind(v)
                    && self.dir.join("volumes").join(kind).join(&v.name).exists()
                {
                    self.api_data.insert(v.name.clone(), v.clone());
                }
            }
        }
        if self.api_data.is_empty() {
            return None;
        }
        let now = tokio::time::Instant::now();
        if self.next_refresh.is_some_and(|t| now < t) {
            return self.next_refresh;
        }
        let volumes: Vec<Volume> = self.api_data.values().cloned().collect();
        for v in &volumes {
            if let Err(e) = self.setup(src, v).await {
                tracing::warn!(volume = %v.name, error = %e, "cannot refresh the volume");
            }
        }
        self.next_refresh = Some(now + REFRESH_INTERVAL);
        self.next_refresh
    }

    /// Sets up one volume; returns its host path and whether it is always read-only.
    async fn setup(
        &mut self,
        src: &EnvSources<'_>,
        v: &Volume,
    ) -> Result<(PathBuf, bool), VolumeError> {
        let io =
            |what: &str, e: std::io::Error| VolumeError::setup(&v.name, format!("{what}: {e}"));
        let base = self.dir.join("volumes");
        if let Some(e) = &v.empty_dir {
            let dir = base.join("kubernetes.io~empty-dir").join(&v.name);
            // Ownership is set once, when the volume is made (as the kubelet's SetUp).
            let fresh = !dir.exists();
            std::fs::create_dir_all(&dir).map_err(|e| io("create the emptyDir", e))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| io("chmod the emptyDir", e))?;
            if e.medium.as_deref() == Some("Memory") {
                mount_tmpfs(&dir, e.size_limit.as_ref())
                    .map_err(|m| VolumeError::setup(&v.name, m))?;
            }
            if let Some((gid, policy)) = fs_group(src.pod).filter(|_| fresh) {
                set_volume_ownership(&dir, gid, false, policy)
                    .map_err(|e| io("apply the fsGroup", e))?;
            }
            return Ok((dir, false));
        }
        if let Some(h) = &v.host_path {
            check_host_path(&h.path, h.type_.as_deref().unwrap_or(""))
                .map_err(|m| VolumeError::setup(&v.name, m))?;
            return Ok((PathBuf::from(&h.path), false));
        }
        if let Some(c) = &v.persistent_volume_claim {
            let claim = crate::pod::claims::resolve(src, &v.name, c, &self.storage_root).await?;
            if claim.owned
                && let Some((gid, policy)) = fs_group(src.pod)
            {
                set_volume_ownership(&claim.path, gid, false, policy)
                    .map_err(|e| io("apply the fsGroup", e))?;
            }
            return Ok((claim.path, claim.read_only));
        }
        let (kind, payload) = if let Some(s) = &v.config_map {
            let cm = get_config_map(src, &v.name, &s.name).await?;
            let payload = config_map_payload(
                &v.name,
                &s.name,
                cm.as_ref(),
                s.items.as_deref(),
                mode_of(s.default_mode),
                s.optional == Some(true),
            )?;
            ("kubernetes.io~configmap", payload)
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let secret = get_secret(src, &v.name, &name).await?;
            let payload = secret_payload(
                &v.name,
                &name,
                secret.as_ref(),
                s.items.as_deref(),
                mode_of(s.default_mode),
                s.optional == Some(true),
            )?;
            ("kubernetes.io~secret", payload)
        } else if let Some(d) = &v.downward_api {
            let payload = downward_payload(
                src,
                &v.name,
                d.items.as_deref().unwrap_or_default(),
                mode_of(d.default_mode),
            )?;
            ("kubernetes.io~downward-api", payload)
        } else if let Some(p) = &v.projected {
            let mode = mode_of(p.default_mode);
            let mut payload = Payload::new();
            for s in p.sources.iter().flatten() {
                if let Some(c) = &s.config_map {
                    let cm = get_config_map(src, &v.name, &c.name).await?;
                    payload.extend(config_map_payload(
                        &v.name,
                        &c.name,
                        cm.as_ref(),
                        c.items.as_deref(),
                        mode,
                        c.optional == Some(true),
                    )?);
                }
                if let Some(c) = &s.secret {
                    let secret = get_secret(src, &v.name, &c.name).await?;
                    payload.extend(secret_payload(
                        &v.name,
                        &c.name,
                        secret.as_ref(),
                        c.items.as_deref(),
                        mode,
                        c.optional == Some(true),
                    )?);
                }
                if let Some(d) = &s.downward_api {
                    payload.extend(downward_payload(
                        src,
                        &v.name,
                        d.items.as_deref().unwrap_or_default(),
                        mode,
                    )?);
                }
                if let Some(t) = &s.service_account_token {
                    let path = payload_path(&v.name, &t.path)?;
                    let token = self.service_account_token(src, t).await.map_err(|e| {
                        VolumeError::setup(&v.name, format!("failed to fetch token: {e}"))
                    })?;
                    payload.insert(path, (token.into_bytes(), mode));
                }
                if s.cluster_trust_bundle.is_some() {
                    tracing::debug!(volume = %v.name, "projected clusterTrustBundle sources are not supported; skipped");
                }
            }
            ("kubernetes.io~projected", payload)
        } else {
            debug_assert!(api_data_kind(v).is_none());
            return Err(VolumeError::setup(
                &v.name,
                "unsupported volume type (supported: emptyDir, hostPath, persistentVolumeClaim, configMap, secret, downwardAPI, projected)",
            ));
        };
        let dir = base.join(kind).join(&v.name);
        let owner = fs_group(src.pod);
        let mut payload = payload;
        if owner.is_some() {
            // The group may read every file (the kubelet's read-only ownership mask), folded
            // into the payload so that an unchanged volume still matches it.
            for (_, mode) in payload.values_mut() {
                *mode |= RO_MASK;
            }
        }
        let changed = write_atomic(&dir, &payload).map_err(|e| io("write the volume", e))?;
        if let Some((gid, policy)) = owner
            && changed
        {
            set_volume_ownership(&dir, gid, true, policy)
                .map_err(|e| io("apply the fsGroup", e))?;
        }
        self.api_data.insert(v.name.clone(), v.clone());
        if self.next_refresh.is_none() {
            self.next_refresh = Some(tokio::time::Instant::now() + REFRESH_INTERVAL);
        }
        Ok((dir, true))
    }

    /// The token a `serviceAccountToken` projection holds now (fetched or cached).
    async fn service_account_token(
        &mut self,
        src: &EnvSources<'_>,
        t: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
    ) -> Result<String, AgentError> {
        let meta = &src.pod.metadata;
        let req = crate::objects::PodTokenRequest {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            service_account: src
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
            pod_name: meta.name.clone().unwrap_or_default(),
            pod_uid: meta.uid.clone().unwrap_or_default(),
            audience: t.audience.clone().filter(|a| !a.is_empty()),
            expiration_seconds: t
                .expiration_seconds
                .unwrap_or(crate::pod::tokens::DEFAULT_EXPIRATION_SECONDS),
        };
        self.tokens.get(src.objects, &req).await
    }

    /// Removes the pod's directory: unmounts the tmpfs volumes, then deletes everything (never
    /// following symlinks). Succeeds if it is already gone.
    pub fn cleanup(&mut self) -> std::io::Result<()> {
        self.tokens.clear();
        self.api_data.clear();
        self.next_refresh = None;
        remove_pod_dir(&self.dir)
    }
}

/// Unmounts whatever is mounted below `dir` (deepest first), then removes it.
pub fn remove_pod_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut points: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %p.display(), error = %e, "cannot unmount a pod volume");
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The directory kind of an API-data volume (None for other volumes).
fn api_data_kind(v: &Volume) -> Option<&'static str> {
    if v.config_map.is_some() {
        Some("kubernetes.io~configmap")
    } else if v.secret.is_some() {
        Some("kubernetes.io~secret")
    } else if v.downward_api.is_some() {
        Some("kubernetes.io~downward-api")
    } else if v.projected.is_some() {
        Some("kubernetes.io~projected")
    } else {
        None
    }
}

pub(super) fn mode_of(mode: Option<i32>) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map_or(DEFAULT_MODE, |m| m & 0o7777)
}

/// `<volume dir>/<subPath>`: relative, no `..`; created as a directory if missing (as the
/// kubelet does).
fn subpath_source(volume: &Path, sub: &str, name: &str) -> Result<PathBuf, VolumeError> {
    let p = Path::new(sub);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(VolumeError::Mount(format!(
            "subPath {sub:?} of volume {name:?} must be a relative path without \"..\""
        )));
    }
    let full = volume.join(p);
    if std::fs::symlink_metadata(&full).is_err() {
        std::fs::create_dir_all(&full).map_err(|e| {
            VolumeError::Mount(format!(
                "failed to create subPath directory for volumeMount {name:?}: {e}"
            ))
        })?;
        let _ = std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o777));
    }
    Ok(full)
}

/// Mounts a tmpfs on `dir` (once: nothing happens if it already is a mount point).
fn mount_tmpfs(
    dir: &Path,
    size: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Result<(), String> {
    let here = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    let parent = dir
        .parent()
        .map(std::fs::metadata)
        .transpose()
        .map_err(|e| e.to_string())?;
    if parent.is_some_and(|p| p.dev() != here.dev()) {
        return Ok(());
    }
    let mut opts = String::from("mode=0777");
    if let Some(q) = size {
        let nanos = podvisor_api::status::parse_quantity(&q.0)
            .map_err(|e| format!("invalid sizeLimit: {e}"))?;
        let bytes = (nanos + 999_999_999) / 1_000_000_000;
        if bytes > 0 {
            opts.push_str(&format!(",size={bytes}"));
        }
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| format!("mount tmpfs on {}: {}", dir.display(), e.desc()))
}

/// The kubelet's hostPath type check (`checkType`).
pub(crate) fn check_host_path(path: &str, type_: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    let fail = |what: &str| Err(format!("hostPath type check failed: {path} is not {what}"));
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => std::fs::create_dir_all(path)
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)))
            .map_err(|e| format!("failed to create directory {path}: {e}")),
        "DirectoryOrCreate" | "Directory" => match ft {
            Some(t) if t.is_dir() => Ok(()),
            _ => fail("a directory"),
        },
        "FileOrCreate" if meta.is_none() => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o644)))
            .map_err(|e| format!("failed to create file {path}: {e}")),
        "FileOrCreate" | "File" => match ft {
            Some(t) if t.is_file() => Ok(()),
            _ => fail("a file"),
        },
        "Socket" => match ft {
            Some(t) if t.is_socket() => Ok(()),
            _ => fail("a socket file"),
        },
        "CharDevice" => match ft {
            Some(t) if t.is_char_device() => Ok(()),
            _ => fail("a character device"),
        },
        "BlockDevice" => match ft {
            Some(t) if t.is_block_device() => Ok(()),
            _ => fail("a block device"),
        },
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// The group may read and write (`rwMask`).
const RW_MASK: u32 = 0o660;
/// The group may read (`roMask`).
const RO_MASK: u32 = 0o440;
/// Directories are searchable (`execMask`).
const EXEC_MASK: u32 = 0o110;

/// `fsGroup` and whether its `fsGroupChangePolicy` is `OnRootMismatch`.
fn fs_group(pod: &k8s_openapi::api::core::v1::Pod) -> Option<(u32, bool)> {
    let psc = pod.spec.as_ref()?.security_context.as_ref()?;
    let gid = u32::try_from(psc.fs_group?).ok()?;
    let on_root_mismatch = psc.fs_group_change_policy.as_deref() == Some("OnRootMismatch");
    Some((gid, on_root_mismatch))
}

/// The kubelet's `SetVolumeOwnership`: every file and directory under `dir` (symbolic links
/// not followed) gets group `gid` and the group bits of `mask` (read-write, or read-only for
/// API-data volumes); directories also get the setgid bit and search permission, so that
/// files made later inherit the group. With `OnRootMismatch` nothing is done when the
/// volume's root already has the group, the bits and setgid.
fn set_volume_ownership(
    dir: &Path,
    gid: u32,
    read_only: bool,
    on_root_mismatch: bool,
) -> std::io::Result<()> {
    let mask = if read_only { RO_MASK } else { RW_MASK };
    if on_root_mismatch {
        let m = std::fs::metadata(dir)?;
        let want = mask | EXEC_MASK;
        let perm = m.permissions().mode();
        if m.gid() == gid && m.is_dir() && perm & want == want && perm & 0o2000 != 0 {
            return Ok(());
        }
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p)?;
        std::os::unix::fs::lchown(&p, None, Some(gid))?;
        if m.file_type().is_symlink() {
            continue;
        }
        let mut mode = m.permissions().mode() | mask;
        if m.is_dir() {
            mode |= 0o2000 | EXEC_MASK;
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::MemoryObjects;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapVolumeSource, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
        EmptyDirVolumeSource, HostPathVolumeSource, KeyToPath, ObjectFieldSelector, PodSpec,
        SecretVolumeSource, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(volumes: Vec<Volume>) -> k8s_openapi::api::core::v1::Pod {
        k8s_openapi::api::core::v1::Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(volumes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(mounts: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            volume_mounts: Some(
                mounts
                    .iter()
                    .map(|(n, p)| VolumeMount {
                        name: n.to_string(),
                        mount_path: p.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn sources<'a>(
        pod: &'a k8s_openapi::api::core::v1::Pod,
        objects: &'a MemoryObjects,
        alloc: &'a BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    ) -> EnvSources<'a> {
        EnvSources {
            pod,
            host_ips: vec!["127.0.0.1".into()],
            pod_ips: vec!["127.0.0.1".into()],
            allocatable: alloc,
            objects,
        }
    }

    fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
        podvisor_testkit::config_map("ns", name, data)
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn empty_dir_survives_setup_again_and_is_removed_with_the_pod() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = pod(vec![Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }]);
        let objects = MemoryObjects::new();
        let alloc = BTreeMap::new();
        let src = sources(&p, &objects, &alloc);
        let mut vols = PodVolumes::new(tmp.path(), "u1");
        let c = container(&[("scratch", "/scratch")]);
        let m = vols.container_mounts(&src, &c, &[]).await.expect("mounts");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].target, PathBuf::from("/scratch"));
        assert!(!m[0].read_only);
        assert!(m[0].source.starts_with(tmp.path().join("u1/volumes")));
        assert_eq!(mode(&m[0].source), 0o777);
        std::fs::write(m[0].source.join("restartCount"), "1\n").expect("write");
        // A restart sets it up again: the content stays.
        let again = vols.container_mounts(&src, &c, &[]).await.expect("mounts");
        assert_eq!(again, m);
        assert!(m[0].source.join("restartCount").exists());
        vols.cleanup().expect("cleanup");
        assert!(!tmp.path().join("u1").exists());
        vols.cleanup().expect("cleanup twice");
    }

    /// The admission's `kube-api-access-*` volume: a token bound to the pod, the CA and the
    /// namespace; the token is rotated at the first refresh after 80 % of its life.
    #[tokio::test(start_paused = true)]
    async fn service_account_token_volume_is_written_and_rotated() {
        let tmp = tempfile::tempdir().expect("tmp");
        let v: Volume = serde_json::from_value(serde_json::json!({
            "name": "kube-api-access-x2b4c", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}))
        .expect("volume");
        let mut p = pod(vec![v]);
        p.spec.as_mut().expect("spec").service_account_name = Some("robot".into());
        let objects = MemoryObjects::new();
        objects.put_config_map(cm("kube-root-ca.crt", &[("ca.crt", "PEM")]));
        let alloc = BTreeMap::new();
        let src = sources(&p, &objects, &alloc);
        let mut vols = PodVolumes::new(tmp.path(), "u1");
        let c = container(&[(
            "kube-api-access-x2b4c",
            "/var/run/secrets/kubernetes.io/serviceaccount",
        )]);
        let m = vols.container_mounts(&src, &c, &[]).await.expect("mounts");
        assert!(m[0].read_only);
        let read = |f: &str| std::fs::read_to_string(m[0].source.join(f)).expect("read");
        assert_eq!(read("token"), "token-1-robot-u1");
        assert_eq!(read("ca.crt"), "PEM");
        assert_eq!(read("namespace"), "ns");
        assert_eq!(mode(&m[0].source.join("token")), 0o644);
        let req = &objects.token_requests()[0];
        assert_eq!(
            (
                req.pod_name.as_str(),
                req.pod_uid.as_str(),
                req.expiration_seconds
            ),
            ("p", "u1", 3607)
        );
        // Refreshes before 80 % of 3607 s keep the token; the first one after replaces it.
        tokio::time::advance(Duration::from_secs(2850)).await;
        vols.refresh(&src).await;
        assert_eq!(read("token"), "token-1-robot-u1");
        tokio::time::advance(Duration::from_secs(40)).await;
        vols.refresh(&src).await;
        assert_eq!(read("token"), "token-2-robot-u1");
        assert_eq!(objects.token_requests().len(), 2);
    }

    #[tokio::test]
    async fn config_map_files_are_atomic_and_updated_when_changed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = pod(vec![Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                default_mode: Some(0o600),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let objects = MemoryObjects::new();
        objects.put_config_map(cm("settings", &[("a", "1"), ("b.txt", "two")]));
        let alloc = BTreeMap::new();
        let src = sources(&p, &objects, &alloc);
        let mut vols = PodVolumes::new(tmp.path(), "u1");
        let c = container(&[("cfg", "/etc/cfg")]);
        let m = vols.container_mounts(&src, &c, &[]).await.expect("mounts");
        assert!(m[0].read_only, "API data volumes are read-only");
        let dir = &m[0].source;
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("a"), "1");
        assert_eq!(
            std::fs::read_to_string(dir.join("b.txt")).expect("b"),
            "two"
        );
        assert_eq!(mode(&dir.join("a")), 0o600);
        assert_eq!(
            std::fs::read_link(dir.join("a")).expect("link"),
            PathBuf::from("..data/a")
        );
        let first = std::fs::read_link(dir.join("..data")).expect("data link");
        // Unchanged: nothing is rewritten.
        assert!(
            !write_atomic(dir, &{
                let mut p = Payload::new();
                p.insert("a".into(), (b"1".to_vec(), 0o600));
                p.insert("b.txt".into(), (b"two".to_vec(), 0o600));
                p
            })
            .expect("write")
        );
        // Changed (a key removed, one changed): a new generation, the old one gone.
        objects.put_config_map(cm("settings", &[("a", "3")]));
        vols.next_refresh = None;
        assert!(vols.refresh(&src).await.is_some());
        let second = std::fs::read_link(dir.join("..data")).expect("data link");
        assert_ne!(first, second);
        assert!(!dir.join(&first).exists());
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("a"), "3");
        assert!(std::fs::symlink_metadata(dir.join("b.txt")).is_err());
        vols.cleanup().expect("cleanup");
    }

    #[tokio::test]
    async fn missing_objects_and_keys_fail_unless_optional() {
        let tmp = tempfile::tempdir().expect("tmp");
        let vol = |name: &str, optional: bool, items: Option<Vec<KeyToPath>>| Volume {
            name: name.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "absent".into(),
                optional: Some(optional),
                items,
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = pod(vec![
            vol("req", false, None),
            vol("opt", true, None),
            Volume {
                name: "sec".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("s".into()),
                    items: Some(vec![KeyToPath {
                        key: "nope".into(),
                        path: "x".into(),
                        mode: None,
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]);
        let objects = MemoryObjects::new();
        objects.put_secret(podvisor_testkit::secret("ns", "s", &[("k", b"v")]));
        let alloc = BTreeMap::new();
        let src = sources(&p, &objects, &alloc);
        let mut vols = PodVolumes::new(tmp.path(), "u1");
        let err = vols
            .container_mounts(&src, &container(&[("req", "/a")]), &[])
            .await
            .expect_err("missing configmap");
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"req\" : configmaps \"absent\" not found"
        );
        let m = vols
            .container_mounts(&src, &container(&[("opt", "/a")]), &[])
            .await
            .expect("optional");
        let visible = std::fs::read_dir(&m[0].source)
            .expect("dir")
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
            .count();
        assert_eq!(
            visible, 0,
            "an optional missing configmap gives an empty volume"
        );
        let err = vols
            .container_mounts(&src, &container(&[("sec", "/a")]), &[])
            .await
            .expect_err("missing key");
        assert!(
            err.to_string()
                .ends_with("references non-existent secret key: nope"),
            "{err}"
        );
        let err = vols
            .container_mounts(&src, &container(&[("nosuch", "/a")]), &[])
            .await
            .expect_err("no volume");
        assert!(err.to_string().contains("cannot find volume"), "{err}");
        vols.cleanup().expect("cleanup");
    }

    #[tokio::test]
    async fn secret_items_modes_and_downward_api_files() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = pod(vec![
            Volume {
                name: "sec".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("s".into()),
                    items: Some(vec![KeyToPath {
                        key: "k".into(),
                        path: "sub/dir/key".into(),
                        mode: Some(0o400),
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "info".into(),
                downward_api: Some(DownwardAPIVolumeSource {
                    items: Some(vec![
                        DownwardAPIVolumeFile {
                            path: "name".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.name".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        DownwardAPIVolumeFile {
                            path: "labels".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.labels".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]);
        let objects = MemoryObjects::new();
        objects.put_secret(podvisor_testkit::secret("ns", "s", &[("k", b"s3cret")]));
        let alloc = BTreeMap::new();
        let src = sources(&p, &objects, &alloc);
        let mut vols = PodVolumes::new(tmp.path(), "u1");
        let m = vols
            .container_mounts(&src, &container(&[("sec", "/s"), ("info", "/info")]), &[])
            .await
            .expect("mounts");
        let key = m[0].source.join("sub/dir/key");
        assert_eq!(std::fs::read(&key).expect("key"), b"s3cret");
        assert_eq!(mode(&key), 0o400);
        assert_eq!(
            std::fs::read_to_string(m[1].source.join("name")).expect("name"),
            "p"
        );
        assert_eq!(
            std::fs::read_to_string(m[1].source.join("labels")).expect("labels"),
            "app=\"web\""
        );
        vols.cleanup().expect("cleanup");
    }

    #[tokio::test]
    async fn host_path_types_are_checked_like_upstream() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("hp");
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").expect("file");
        let d = dir.display().to_string();
        let f = file.display().to_string();
        assert_eq!(
            check_host_path(&d, "Directory"),
            Err(format!(
                "hostPath type check failed: {d} is not a directory"
            ))
        );
        check_host_path(&d, "DirectoryOrCreate").expect("created");
        assert!(dir.is_dir());
        check_host_path(&d, "Directory").expect("now a directory");
        assert_eq!(
            check_host_path(&f, "Directory"),
            Err(format!(
                "hostPath type check failed: {f} is not a directory"
            ))
        );
        check_host_path(&f, "File").expect("a file");
        assert_eq!(
            check_host_path(&d, "File"),
            Err(format!("hostPath type check failed: {d} is not a file"))
        );
        let new_file = tmp.path().join("new");
        check_host_path(&new_file.display().to_string(), "FileOrCreate").expect("created");
        assert!(new_file.is_file());
        assert_eq!(
            check_host_path(&f, "Socket"),
            Err(format!(
                "hostPath type check failed: {f} is not a socket file"
            ))
        );
        check_host_path("/dev/null", "CharDevice").expect("char device");
        assert_eq!(
            check_host_path(&f, "BlockDevice"),
            Err(format!(
                "hostPath type check failed: {f} is not a block device"
            ))
        );
        assert_eq!(
            check_host_path(&f, "Weird"),
            Err("Weird is an invalid volume type".into())
        );
        check_host_path("/does/not/exist", "").expect("no check");
        // Through a pod: a hostPath mount is the path itself.
        let p = pod(vec![Volume {
            name: "h".into(),
            host_path: Some(HostPathVolumeSource {
                path: d.clone(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        }]);
        let objects = MemoryObjects::new();
        let alloc = BTreeMap::new();
        let src = sources(&p, &objects, &alloc);
        let mut vols = PodVolumes::new(tmp.path(), "u1");
        let mut c = container(&[("h", "/data")]);
        if let Some(vm) = c.volume_mounts.as_mut().and_then(|v| v.first_mut()) {
            vm.read_only = Some(true);
            vm.sub_path_expr = Some("$(POD)/x".into());
        }
        let m = vols
            .container_mounts(&src, &c, &[("POD".into(), "p1".into())])
            .await
            .expect("mounts");
        assert_eq!(m[0].source, dir.join("p1/x"));
        assert!(m[0].source.is_dir(), "subPath created");
        assert!(m[0].read_only);
    }

    #[tokio::test]
    async fn memory_empty_dir_is_a_tmpfs_when_root() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let p = pod(vec![Volume {
            name: "mem".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                    "1Mi".into(),
                )),
            }),
            ..Default::default()
        }]);
        let objects = MemoryObjects::new();
        let alloc = BTreeMap::new();
        let src = sources(&p, &objects, &alloc);
        let mut vols = PodVolumes::new(tmp.path(), "u1");
        let c = container(&[("mem", "/m")]);
        let m = vols.container_mounts(&src, &c, &[]).await.expect("mounts");
        let dir = m[0].source.display().to_string();
        let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(dir.as_str()))
            .expect("mounted");
        assert!(
            line.contains("tmpfs") && line.contains("size=1024k"),
            "{line}"
        );
        // Setting it up again does not stack mounts.
        vols.container_mounts(&src, &c, &[]).await.expect("mounts");
        let count = std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(dir.as_str()))
            .count();
        assert_eq!(count, 1);
        vols.cleanup().expect("cleanup");
        assert!(!tmp.path().join("u1").exists());
    }

    #[test]
    fn termination_message_defaults() {
        let mut c = Container::default();
        assert_eq!(
            termination_message(&c),
            Some(TerminationMessage {
                path: "/dev/termination-log".into(),
                fallback_to_logs_on_error: false,
            })
        );
        c.termination_message_policy = Some("FallbackToLogsOnError".into());
        c.termination_message_path = Some("/tmp/x".into());
        assert_eq!(
            termination_message(&c),
            Some(TerminationMessage {
                path: "/tmp/x".into(),
                fallback_to_logs_on_error: true,
            })
        );
        c.termination_message_path = Some(String::new());
        assert_eq!(termination_message(&c), None);
    }

    #[test]
    fn fs_group_ownership_sets_group_bits_and_setgid_once_on_root_mismatch() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("vol");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::write(root.join("sub/f"), b"x").expect("write");
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        std::os::unix::fs::symlink("sub/f", root.join("link")).expect("symlink");
        // Our own group: changing to it needs no privilege.
        let gid = std::fs::metadata(&root).expect("stat").gid();
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        set_volume_ownership(&root, gid, false, false).expect("ownership");
        assert_eq!(mode(&root), 0o2770);
        assert_eq!(mode(&root.join("sub")) & 0o2770, 0o2770);
        assert_eq!(mode(&root.join("sub/f")), 0o660);
        // OnRootMismatch: the root is right, nothing below is touched.
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        set_volume_ownership(&root, gid, false, true).expect("ownership");
        assert_eq!(mode(&root.join("sub/f")), 0o600);
        // Without it, everything is walked again.
        set_volume_ownership(&root, gid, false, false).expect("ownership");
        assert_eq!(mode(&root.join("sub/f")), 0o660);
        // Read-only volumes get group read only.
        let ro = tmp.path().join("ro");
        std::fs::create_dir_all(&ro).expect("mkdir");
        std::fs::write(ro.join("k"), b"v").expect("write");
        std::fs::set_permissions(ro.join("k"), std::fs::Permissions::from_mode(0o400))
            .expect("chmod");
        set_volume_ownership(&ro, gid, true, false).expect("ownership");
        assert_eq!(mode(&ro.join("k")), 0o440);
    }
}
