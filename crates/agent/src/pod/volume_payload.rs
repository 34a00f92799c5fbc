//! The files of API-data volumes (configMap, secret, downwardAPI, projected): the payload
//! each one should hold (key → path, bytes and mode), built from the objects and the pod,
//! and its atomic write under the `..data` link (the layout and rules are in `volumes.rs`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, DownwardAPIVolumeFile, KeyToPath, Secret};

use super::volumes::{DATA_LINK, VolumeError, mode_of};
use crate::error::AgentError;
use crate::pod::env::EnvSources;

/// Files of a volume: path → (contents, mode).
pub(super) type Payload = BTreeMap<PathBuf, (Vec<u8>, u32)>;

pub(super) async fn get_config_map(
    src: &EnvSources<'_>,
    volume: &str,
    name: &str,
) -> Result<Option<ConfigMap>, VolumeError> {
    let ns = src.pod.metadata.namespace.as_deref().unwrap_or("default");
    src.objects
        .config_map(ns, name)
        .await
        .map_err(|e: AgentError| VolumeError::setup(volume, e.to_string()))
}

pub(super) async fn get_secret(
    src: &EnvSources<'_>,
    volume: &str,
    name: &str,
) -> Result<Option<Secret>, VolumeError> {
    let ns = src.pod.metadata.namespace.as_deref().unwrap_or("default");
    src.objects
        .secret(ns, name)
        .await
        .map_err(|e: AgentError| VolumeError::setup(volume, e.to_string()))
}

/// Checks a payload path (relative, no `..` element, not empty).
pub(super) fn payload_path(volume: &str, p: &str) -> Result<PathBuf, VolumeError> {
    let path = Path::new(p);
    let bad = p.is_empty()
        || path.is_absolute()
        || p.starts_with("..")
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)));
    if bad {
        return Err(VolumeError::setup(
            volume,
            format!("invalid path {p:?}: must be relative and may not contain '..'"),
        ));
    }
    Ok(path.to_path_buf())
}

/// Files from `data` (key → bytes), all keys or just `items`.
pub(super) fn key_payload(
    volume: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    missing_key: impl Fn(&str) -> String,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let mut out = Payload::new();
    match items {
        None => {
            for (k, v) in data {
                out.insert(payload_path(volume, k)?, (v.clone(), mode));
            }
        }
        Some(items) => {
            for it in items {
                let Some(v) = data.get(&it.key) else {
                    if optional {
                        continue;
                    }
                    return Err(VolumeError::setup(volume, missing_key(&it.key)));
                };
                let m = it.mode.map_or(mode, |m| mode_of(Some(m)));
                out.insert(payload_path(volume, &it.path)?, (v.clone(), m));
            }
        }
    }
    Ok(out)
}

/// The keys of a ConfigMap or Secret (`kind`, as its API resource: `configmaps`,
/// `secrets`) as files; a missing object is an error unless the volume is optional.
pub(super) fn object_payload(
    volume: &str,
    kind: &str,
    name: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let Some(data) = data else {
        if optional {
            return Ok(Payload::new());
        }
        return Err(VolumeError::setup(
            volume,
            format!("{kind} {name:?} not found"),
        ));
    };
    let missing = |k: &str| match kind {
        "secrets" => format!("references non-existent secret key: {k}"),
        _ => format!("configmap references non-existent config key: {k}"),
    };
    key_payload(volume, &data, items, mode, missing, optional)
}

pub(super) fn config_map_payload(
    volume: &str,
    name: &str,
    cm: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let data = cm.map(|cm| {
        let text = cm
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k, v.clone().into_bytes()));
        let binary = cm
            .binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k, v.0.clone()));
        text.chain(binary).map(|(k, v)| (k.clone(), v)).collect()
    });
    object_payload(volume, "configmaps", name, data, items, mode, optional)
}

pub(super) fn secret_payload(
    volume: &str,
    name: &str,
    secret: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let data = secret.map(|s| {
        let binary = s.data.iter().flatten().map(|(k, v)| (k, v.0.clone()));
        let text = s
            .string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k, v.clone().into_bytes()));
        binary.chain(text).map(|(k, v)| (k.clone(), v)).collect()
    });
    object_payload(volume, "secrets", name, data, items, mode, optional)
}

pub(super) fn downward_payload(
    src: &EnvSources<'_>,
    volume: &str,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
) -> Result<Payload, VolumeError> {
    let mut out = Payload::new();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            crate::pod::env::field_value(src, f)
        } else if let Some(r) = &it.resource_field_ref {
            let spec = src.pod.spec.as_ref();
            let name = r.container_name.as_deref().unwrap_or("");
            let c = spec.and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|c| c.name == name)
            });
            match c {
                Some(c) => crate::pod::env::resource_value(src, c, r),
                None => {
                    return Err(VolumeError::setup(
                        volume,
                        format!("container {name:?} of resourceFieldRef not found"),
                    ));
                }
            }
        } else {
            continue;
        };
        let value = value.map_err(|e| VolumeError::setup(volume, e.to_string()))?;
        let m = it.mode.map_or(mode, |m| mode_of(Some(m)));
        out.insert(payload_path(volume, &it.path)?, (value.into_bytes(), m));
    }
    Ok(out)
}

/// Writes `payload` into `dir` atomically (see the module docs). Returns whether anything
/// changed.
pub(super) fn write_atomic(dir: &Path, payload: &Payload) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join(DATA_LINK);
    let old = std::fs::read_link(&data_link).ok();
    if let Some(old) = &old
        && matches_payload(&dir.join(old), payload)
    {
        return Ok(false);
    }
    let name = format!("..{:016x}", rand::random::<u64>());
    let fresh = dir.join(&name);
    std::fs::create_dir(&fresh)?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755))?;
    for (rel, (bytes, mode)) in payload {
        let file = fresh.join(rel);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, bytes)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp)?;
    std::fs::rename(&tmp, &data_link)?;
    // The user-visible entries: one symlink per top-level name, into `..data`.
    let tops: std::collections::BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(top), &link)?;
        }
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("..") {
            if n != DATA_LINK && n != name && e.path().is_dir() && !e.path().is_symlink() {
                std::fs::remove_dir_all(e.path())?;
            }
            continue;
        }
        if !tops.contains(&n) && e.path().is_symlink() {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(true)
}

/// Whether the directory holds exactly `payload` (files, contents, modes).
pub(super) fn matches_payload(dir: &Path, payload: &Payload) -> bool {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return false;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !walk(base, &p, out) {
                    return false;
                }
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_path_buf());
            }
        }
        true
    }
    let mut files = Vec::new();
    if !walk(dir, dir, &mut files) || files.len() != payload.len() {
        return false;
    }
    payload.iter().all(|(rel, (bytes, mode))| {
        let p = dir.join(rel);
        std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
            && std::fs::read(&p).is_ok_and(|b| &b == bytes)
    })
}
