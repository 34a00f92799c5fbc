//! `podvisor image import`: images from a tarball into the store, for air-gapped nodes.
//!
//! Two formats, told apart by their content:
//! * docker-archive (`docker save`, `podman save`): `manifest.json` lists each image's
//!   config file, layer files (bottom first) and `RepoTags`;
//! * OCI archive (`podman save --format oci-archive`, `skopeo copy … oci-archive:`,
//!   `docker save` since 25): `oci-layout`, `index.json` naming manifests (or an index, where
//!   linux on the node's architecture is chosen) in `blobs/sha256/`; the tag comes from the
//!   `io.containerd.image.name` or `org.opencontainers.image.ref.name` annotation when that
//!   is a full reference.
//!
//! The file is read twice: once for the small metadata files, once streaming each layer into
//! the store (which verifies its digest: the file name under `blobs/sha256/`, else the
//! config's `diff_id`, the digest of an uncompressed layer). What the store gets is what a
//! pull gives it, so an imported image runs with `imagePullPolicy: Never` or `IfNotPresent`.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::store::{ImageConfig, ImageRecord, ImageStore, sha256_digest};

/// Files up to this size are kept in memory in the first pass (manifests, configs).
const SMALL_FILE: u64 = 4 << 20;
/// The most memory the first pass keeps.
const SMALL_TOTAL: u64 = 64 << 20;

/// One image found in the archive.
struct Found {
    config: Vec<u8>,
    /// (entry path in the archive, digest) of each layer, bottom first.
    layers: Vec<(String, String)>,
    tags: Vec<String>,
    repo_digests: Vec<String>,
}

fn clean(path: &str) -> String {
    path.trim_start_matches("./").to_string()
}

/// Imports every image of the tarball at `file`; returns what was stored. Blocking.
pub fn import(store: &ImageStore, file: &Path) -> Result<Vec<ImageRecord>, String> {
    let open = || {
        std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .map_err(|e| format!("open {}: {e}", file.display()))
    };
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut kept = 0u64;
    let mut archive = tar::Archive::new(open()?);
    let entries = archive
        .entries()
        .map_err(|e| format!("read {}: {e}", file.display()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("read {}: {e}", file.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = clean(&entry.path().map_err(|e| e.to_string())?.to_string_lossy());
        let size = entry.header().size().unwrap_or(0);
        sizes.insert(path.clone(), size);
        if size <= SMALL_FILE && kept + size <= SMALL_TOTAL {
            let mut buf = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| format!("read {path}: {e}"))?;
            kept += size;
            small.insert(path, buf);
        }
    }
    let found = if small.contains_key("manifest.json") {
        docker_images(&small)?
    } else if small.contains_key("index.json") {
        oci_images(&small)?
    } else {
        return Err(format!(
            "{}: neither a docker-archive (manifest.json) nor an OCI archive (index.json)",
            file.display()
        ));
    };
    // Second pass: the layers, streamed into the store.
    let mut wanted: HashMap<String, String> = HashMap::new();
    for f in &found {
        for (path, digest) in &f.layers {
            if !store.has_layer(digest) {
                wanted.insert(path.clone(), digest.clone());
            }
        }
    }
    if !wanted.is_empty() {
        let mut archive = tar::Archive::new(open()?);
        let entries = archive
            .entries()
            .map_err(|e| format!("read {}: {e}", file.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("read {}: {e}", file.display()))?;
            let path = clean(&entry.path().map_err(|e| e.to_string())?.to_string_lossy());
            if let Some(digest) = wanted.remove(&path) {
                store
                    .unpack_layer(&digest, entry)
                    .map_err(|e| format!("layer {path}: {e}"))?;
            }
        }
        if let Some(path) = wanted.keys().next() {
            return Err(format!("layer {path} is not in the archive"));
        }
    }
    let mut out = Vec::new();
    for f in found {
        let config = ImageConfig::parse(&f.config)?;
        let id = sha256_digest(&f.config);
        store.put_blob(&id, &f.config).map_err(|e| e.to_string())?;
        let size = f.config.len() as u64
            + f.layers
                .iter()
                .map(|(p, _)| sizes.get(p).copied().unwrap_or(0))
                .sum::<u64>();
        let record = ImageRecord {
            id,
            repo_tags: f.tags,
            repo_digests: f.repo_digests,
            layers: f.layers.into_iter().map(|(_, d)| d).collect(),
            size,
            config,
            last_used: 0,
        };
        out.push(store.put_image(record).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn json(small: &HashMap<String, Vec<u8>>, path: &str) -> Result<Value, String> {
    let bytes = small
        .get(path)
        .ok_or_else(|| format!("{path} is missing from the archive"))?;
    serde_json::from_slice(bytes).map_err(|e| format!("{path}: {e}"))
}

/// `name` as a normalized tag (`docker.io/library/busybox:1.36`), when it is a full name.
fn full_tag(name: &str) -> Option<String> {
    let r = super::manager::normalize(name).ok()?;
    if r.digest().is_some() {
        return None;
    }
    Some(format!(
        "{}/{}:{}",
        r.registry(),
        r.repository(),
        r.tag().unwrap_or("latest")
    ))
}

/// The config's `rootfs.diff_ids`.
fn diff_ids(config: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(config)
        .ok()
        .and_then(|c| c.pointer("/rootfs/diff_ids").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// The digest of a layer file: its `blobs/sha256/<hex>` name, else the `diff_id`.
fn layer_digest(path: &str, diff_id: Option<&String>) -> Result<String, String> {
    if let Some(hex) = path.strip_prefix("blobs/sha256/")
        && hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(format!("sha256:{hex}"));
    }
    diff_id
        .cloned()
        .ok_or_else(|| format!("layer {path} has no diff_id in its image config"))
}

fn docker_images(small: &HashMap<String, Vec<u8>>) -> Result<Vec<Found>, String> {
    let manifest = json(small, "manifest.json")?;
    let list = manifest
        .as_array()
        .ok_or("manifest.json is not a list of images")?;
    let mut out = Vec::new();
    for m in list {
        let config_path = m
            .get("Config")
            .and_then(Value::as_str)
            .ok_or("manifest.json: an image without Config")?;
        let config = small
            .get(&clean(config_path))
            .cloned()
            .ok_or_else(|| format!("{config_path} is missing from the archive"))?;
        let ids = diff_ids(&config);
        let layers = m
            .get("Layers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let path = clean(l.as_str().unwrap_or_default());
                layer_digest(&path, ids.get(i)).map(|d| (path, d))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tags = m
            .get("RepoTags")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.as_str().and_then(full_tag))
            .collect();
        out.push(Found {
            config,
            layers,
            tags,
            repo_digests: Vec::new(),
        });
    }
    Ok(out)
}

fn blob(small: &HashMap<String, Vec<u8>>, digest: &str) -> Result<Vec<u8>, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("unsupported digest {digest}"))?;
    let bytes = small
        .get(&format!("blobs/sha256/{hex}"))
        .ok_or_else(|| format!("blob {digest} is missing from the archive"))?;
    if sha256_digest(bytes) != digest {
        return Err(format!("blob {digest} does not match its digest"));
    }
    Ok(bytes.clone())
}

/// The node's architecture as OCI names it.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn oci_images(small: &HashMap<String, Vec<u8>>) -> Result<Vec<Found>, String> {
    let index = json(small, "index.json")?;
    let mut out = Vec::new();
    for desc in index
        .get("manifests")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let annotations = desc.get("annotations");
        let name = [
            "io.containerd.image.name",
            "org.opencontainers.image.ref.name",
        ]
        .iter()
        .find_map(|k| annotations.and_then(|a| a.get(*k)).and_then(Value::as_str));
        let tags: Vec<String> = name.and_then(full_tag).into_iter().collect();
        let mut digest = desc
            .get("digest")
            .and_then(Value::as_str)
            .ok_or("index.json: a manifest without digest")?
            .to_string();
        let mut manifest: Value =
            serde_json::from_slice(&blob(small, &digest)?).map_err(|e| e.to_string())?;
        if manifest.get("manifests").is_some() {
            // An index: linux on this architecture.
            let chosen = manifest
                .get("manifests")
                .and_then(Value::as_array)
                .and_then(|ms| {
                    ms.iter().find(|m| {
                        m.pointer("/platform/os").and_then(Value::as_str) == Some("linux")
                            && m.pointer("/platform/architecture").and_then(Value::as_str)
                                == Some(oci_arch())
                    })
                })
                .and_then(|m| m.get("digest"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{digest}: no image for linux/{}", oci_arch()))?
                .to_string();
            digest = chosen;
            manifest = serde_json::from_slice(&blob(small, &digest)?).map_err(|e| e.to_string())?;
        }
        let config_digest = manifest
            .pointer("/config/digest")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("manifest {digest} has no config"))?;
        let config = blob(small, config_digest)?;
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|l| {
                let d = l.get("digest").and_then(Value::as_str).unwrap_or_default();
                let hex = d.strip_prefix("sha256:").unwrap_or(d);
                let path = format!("blobs/sha256/{hex}");
                layer_digest(&path, None).map(|d| (path, d))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let repo_digests = tags
            .iter()
            .filter_map(|t| t.rsplit_once(':'))
            .map(|(repo, _)| format!("{repo}@{digest}"))
            .collect();
        out.push(Found {
            config,
            layers,
            tags,
            repo_digests,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            h.set_cksum();
            b.append_data(&mut h, path, *data).expect("tar");
        }
        b.into_inner().expect("tar")
    }

    fn layer() -> Vec<u8> {
        tar_of(&[("etc/os-release", b"ID=imported\n")])
    }

    fn config(layer: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
        }))
        .expect("json")
    }

    #[test]
    fn a_docker_archive_imports_with_its_tags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path().join("images")).expect("store");
        let layer = layer();
        let config = config(&layer);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": "abc.json", "RepoTags": ["localhost/app:v1", "app:v2"],
            "Layers": ["0123/layer.tar"],
        }]))
        .expect("json");
        let file = dir.path().join("app.tar");
        std::fs::write(
            &file,
            tar_of(&[
                ("manifest.json", &manifest),
                ("abc.json", &config),
                ("0123/layer.tar", &layer),
            ]),
        )
        .expect("write");
        let got = import(&store, &file).expect("import");
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].repo_tags,
            ["localhost/app:v1", "docker.io/library/app:v2"]
        );
        assert_eq!(got[0].id, sha256_digest(&config));
        assert_eq!(got[0].config.cmd, ["sh"]);
        let path = store.layer_path(&sha256_digest(&layer)).expect("layer");
        assert_eq!(
            std::fs::read_to_string(path.join("etc/os-release")).expect("unpacked"),
            "ID=imported\n"
        );
        assert!(store.find("localhost/app:v1").is_some());
        // A layer that does not match its diff_id is refused.
        let other_config = self::config(&tar_of(&[("x", b"y")]));
        let bad = tar_of(&[
            ("manifest.json", &manifest),
            ("abc.json", &other_config),
            ("0123/layer.tar", &layer),
        ]);
        std::fs::write(&file, bad).expect("write");
        assert!(import(&store, &file).is_err());
    }

    #[test]
    fn an_oci_archive_imports_with_its_ref_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path().join("images")).expect("store");
        let layer = layer();
        let config = config(&layer);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "config": {"digest": sha256_digest(&config), "size": config.len()},
            "layers": [{"digest": sha256_digest(&layer), "size": layer.len()}],
        }))
        .expect("json");
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"digest": sha256_digest(&manifest), "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "example.com/team/app:1.0"}}],
        }))
        .expect("json");
        let blob_path = |b: &[u8]| format!("blobs/sha256/{}", &sha256_digest(b)[7..]);
        let file = dir.path().join("app.tar");
        std::fs::write(
            &file,
            tar_of(&[
                ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                ("index.json", &index),
                (&blob_path(&manifest), &manifest),
                (&blob_path(&config), &config),
                (&blob_path(&layer), &layer),
            ]),
        )
        .expect("write");
        let got = import(&store, &file).expect("import");
        assert_eq!(got[0].repo_tags, ["example.com/team/app:1.0"]);
        assert_eq!(
            got[0].repo_digests,
            [format!("example.com/team/app@{}", sha256_digest(&manifest))]
        );
        assert!(store.has_layer(&sha256_digest(&layer)));
    }
}
