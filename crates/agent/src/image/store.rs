//! The content-addressed image store under `<data dir>/images`.
//!
//! ```text
//! images/
//!   blobs/sha256/<hex>     manifests and configs, by digest (verified before they are named)
//!   layers/sha256/<hex>/   each layer unpacked once, named by its (compressed) digest
//!   index.json             the images: id, tags, repo digests, layers, size, config, last use
//!   tmp/                   downloads and unpacks in progress
//! ```
//!
//! # Crash safety
//!
//! Nothing is visible before it is complete: a blob is written to `tmp/`, verified and
//! renamed; a layer is unpacked into `tmp/` and renamed; an image appears only when
//! `index.json` (written to a temporary file, fsynced, renamed) names it, after all its layers
//! are in place. Opening the store empties `tmp/`, so a pull interrupted by a crash leaves
//! nothing half-visible, and the next pull starts over for what was missing.
//!
//! # Concurrency
//!
//! The index is behind a mutex; file work happens outside it. Layers of one digest are
//! unpacked by one caller at a time ([`ImageStore::layer_lock`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// The parts of an image's configuration a container uses (OCI image config `config`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `Env` (`K=V`).
    #[serde(default)]
    pub env: Vec<String>,
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `WorkingDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `StopSignal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// The image config document as registries serve it (only what is read).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConfigDocument {
    #[serde(default)]
    pub config: Option<RawConfig>,
}

/// `config` of the image config document (Docker's capitalised names).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawConfig {
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "StopSignal", default)]
    stop_signal: Option<String>,
}

impl ImageConfig {
    /// Reads the config document's `config` part.
    pub fn parse(doc: &[u8]) -> Result<ImageConfig, String> {
        let doc: ConfigDocument =
            serde_json::from_slice(doc).map_err(|e| format!("invalid image config: {e}"))?;
        let c = doc.config.unwrap_or_default();
        Ok(ImageConfig {
            user: c.user.filter(|u| !u.is_empty()),
            env: c.env.unwrap_or_default(),
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            working_dir: c.working_dir.filter(|w| !w.is_empty()),
            stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
        })
    }
}

/// One stored image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image ID: its config digest (`sha256:…`).
    pub id: String,
    /// Its tags, normalized (`docker.io/library/busybox:1.36`).
    pub repo_tags: Vec<String>,
    /// Its repo digests (`docker.io/library/busybox@sha256:…`, the manifest's digest).
    pub repo_digests: Vec<String>,
    /// Its layers' digests, bottom first.
    pub layers: Vec<String>,
    /// Its size in bytes: config plus compressed layers (what the registry served).
    pub size: u64,
    /// Its configuration.
    pub config: ImageConfig,
    /// When a container last used it (seconds since the epoch; for garbage collection).
    #[serde(default)]
    pub last_used: u64,
}

impl ImageRecord {
    /// The repo digest to report as `imageID` (the first), or the ID.
    pub fn image_ref(&self) -> String {
        self.repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| self.id.clone())
    }
}

/// What can fail in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{operation} {path}: {message}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// Content did not match its digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Digest {
        /// The digest named.
        expected: String,
        /// The digest of the bytes.
        actual: String,
    },
    /// A digest is not `sha256:<64 hex>`.
    #[error("unsupported digest {0:?}")]
    BadDigest(String),
    /// The image is used by a container.
    #[error("image {0} is in use by a container")]
    InUse(String),
    /// No such image.
    #[error("no such image: {0}")]
    NotFound(String),
}

fn io_err(operation: &'static str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        operation,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The hex part of a `sha256:` digest, checked.
pub fn digest_hex(digest: &str) -> Result<&str, StoreError> {
    match digest.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        _ => Err(StoreError::BadDigest(digest.to_string())),
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The image index as last read from (or written to) `index.json`, with the file's stamp:
/// another process (`podvisor image import`) may change the file, and the index is re-read
/// when its stamp moved.
#[derive(Default)]
struct Index {
    images: BTreeMap<String, ImageRecord>,
    stamp: Option<(std::time::SystemTime, u64)>,
}

impl std::ops::Deref for Index {
    type Target = BTreeMap<String, ImageRecord>;
    fn deref(&self) -> &Self::Target {
        &self.images
    }
}

impl std::ops::DerefMut for Index {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.images
    }
}

fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn read_index(path: &Path) -> Result<BTreeMap<String, ImageRecord>, StoreError> {
    match std::fs::read(path) {
        Ok(b) => {
            let list: Vec<ImageRecord> =
                serde_json::from_slice(&b).map_err(|e| io_err("parse", path, e))?;
            Ok(list.into_iter().map(|r| (r.id.clone(), r)).collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(io_err("read", path, e)),
    }
}

/// The store. See the module documentation.
pub struct ImageStore {
    root: PathBuf,
    index: Mutex<Index>,
    layer_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.root)
            .finish()
    }
}

impl ImageStore {
    /// Opens (or creates) the store at `root`, emptying `tmp/`.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, StoreError> {
        let root = root.into();
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io_err("empty", &tmp, e))?;
        }
        for d in ["blobs/sha256", "layers/sha256", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| io_err("create", &p, e))?;
        }
        let index_path = root.join("index.json");
        let index = Index {
            images: read_index(&index_path)?,
            stamp: stamp(&index_path),
        };
        Ok(ImageStore {
            root,
            index: Mutex::new(index),
            layer_locks: Mutex::new(HashMap::new()),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index, re-read first if another process changed `index.json`.
    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.root.join("index.json");
        let now = stamp(&path);
        if now != index.stamp {
            match read_index(&path) {
                Ok(mut fresh) => {
                    // Last-use times live in memory between writes: keep the newer.
                    for (id, r) in fresh.iter_mut() {
                        if let Some(old) = index.images.get(id) {
                            r.last_used = r.last_used.max(old.last_used);
                        }
                    }
                    index.images = fresh;
                    index.stamp = now;
                }
                Err(e) => tracing::warn!(error = %e, "cannot re-read the image index"),
            }
        }
        index
    }

    /// Holds the store's lock file (across processes) while `f` changes the index.
    fn exclusive<T>(&self, f: impl FnOnce() -> T) -> T {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"));
        if let Ok(l) = &lock {
            let _ = rustix::fs::flock(l, rustix::fs::FlockOperation::LockExclusive);
        }
        f()
    }

    /// A fresh temporary path (not created).
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{what}-{:016x}", rand::random::<u64>()))
    }

    /// Where the blob `digest` is (whether or not it exists).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// Where the unpacked layer `digest` is (whether or not it exists).
    pub fn layer_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("layers/sha256").join(digest_hex(digest)?))
    }

    /// Whether the layer is unpacked.
    pub fn has_layer(&self, digest: &str) -> bool {
        self.layer_path(digest).is_ok_and(|p| p.is_dir())
    }

    /// The lock held while the layer `digest` is fetched and unpacked.
    pub fn layer_lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.layer_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(digest.to_string()).or_default().clone()
    }

    /// Stores `bytes` as the blob `digest` after checking it.
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(StoreError::Digest {
                expected: digest.to_string(),
                actual,
            });
        }
        let path = self.blob_path(digest)?;
        if path.exists() {
            return Ok(path);
        }
        let tmp = self.tmp_path("blob");
        write_synced(&tmp, bytes)?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err("rename", &path, e))?;
        Ok(path)
    }

    /// Reads the blob `digest`.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest)?;
        std::fs::read(&path).map_err(|e| io_err("read", &path, e))
    }

    /// Unpacks the layer read from `input` (compressed bytes whose sha256 must be `digest`) and
    /// names it, unless it already is. Blocking: call from `spawn_blocking`.
    pub fn unpack_layer(&self, digest: &str, input: impl std::io::Read) -> Result<(), StoreError> {
        let path = self.layer_path(digest)?;
        if path.is_dir() {
            return Ok(());
        }
        let tmp = self.tmp_path("layer");
        std::fs::create_dir_all(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        let mut hashing = HashingReader::new(input);
        let result = super::unpack::unpack_layer(&mut hashing, &tmp)
            .and_then(|_| std::io::copy(&mut hashing, &mut std::io::sink()).map(drop));
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(io_err("unpack layer", Path::new(digest), e));
        }
        let actual = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
        if actual != digest {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(StoreError::Digest {
                expected: digest.to_string(),
                actual,
            });
        }
        // The layer's root directory is the container's `/`: searchable by every user.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755));
        match std::fs::rename(&tmp, &path) {
            Ok(()) => Ok(()),
            Err(_) if path.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(io_err("rename", &path, e)),
        }
    }

    /// Records an image (its blobs and layers must be in place): tags named by it are moved
    /// from any other image to it.
    pub fn put_image(&self, record: ImageRecord) -> Result<ImageRecord, StoreError> {
        self.exclusive(|| self.put_image_locked(record))
    }

    fn put_image_locked(&self, mut record: ImageRecord) -> Result<ImageRecord, StoreError> {
        if record.last_used == 0 {
            record.last_used = epoch_secs();
        }
        let mut index = self.index();
        for other in index.values_mut() {
            if other.id != record.id {
                other.repo_tags.retain(|t| !record.repo_tags.contains(t));
            }
        }
        if let Some(old) = index.get(&record.id) {
            for t in &old.repo_tags {
                if !record.repo_tags.contains(t) {
                    record.repo_tags.push(t.clone());
                }
            }
            for d in &old.repo_digests {
                if !record.repo_digests.contains(d) {
                    record.repo_digests.push(d.clone());
                }
            }
            record.last_used = record.last_used.max(old.last_used);
        }
        index.insert(record.id.clone(), record.clone());
        self.save(&mut index)?;
        Ok(record)
    }

    fn save(&self, index: &mut Index) -> Result<(), StoreError> {
        let list: Vec<&ImageRecord> = index.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).unwrap_or_default();
        let path = self.root.join("index.json");
        let tmp = self.tmp_path("index");
        write_synced(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err("rename", &path, e))?;
        index.stamp = stamp(&path);
        Ok(())
    }

    /// The image a reference names: a normalized tag (`docker.io/library/busybox:1.36`), a
    /// repo digest, an image ID or a unique ID prefix.
    pub fn find(&self, reference: &str) -> Option<ImageRecord> {
        let index = self.index();
        index
            .values()
            .find(|r| {
                r.repo_tags.iter().any(|t| t == reference)
                    || r.repo_digests.iter().any(|d| d == reference)
                    || r.id == reference
            })
            .cloned()
            .or_else(|| {
                let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
                if hex.len() < 6 {
                    return None;
                }
                let mut hits = index
                    .values()
                    .filter(|r| r.id.trim_start_matches("sha256:").starts_with(hex));
                match (hits.next(), hits.next()) {
                    (Some(r), None) => Some(r.clone()),
                    _ => None,
                }
            })
    }

    /// Every image.
    pub fn list(&self) -> Vec<ImageRecord> {
        self.index().values().cloned().collect()
    }

    /// Marks the image as used now (`now` in seconds since the epoch), in memory; persisted
    /// with the next index write.
    pub fn touch(&self, id: &str, now: u64) {
        if let Some(r) = self.index().get_mut(id) {
            r.last_used = now;
        }
    }

    /// Removes the image `id` and the layers no other image uses. `in_use` are the IDs of
    /// images containers use: those are refused.
    pub fn remove(&self, id: &str, in_use: &[String]) -> Result<ImageRecord, StoreError> {
        self.exclusive(|| self.remove_locked(id, in_use))
    }

    fn remove_locked(&self, id: &str, in_use: &[String]) -> Result<ImageRecord, StoreError> {
        if in_use.iter().any(|u| u == id) {
            return Err(StoreError::InUse(id.to_string()));
        }
        let (record, orphans) = {
            let mut index = self.index();
            let record = index
                .remove(id)
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            self.save(&mut index)?;
            let orphans: Vec<String> = record
                .layers
                .iter()
                .filter(|l| !index.values().any(|r| r.layers.contains(l)))
                .cloned()
                .collect();
            (record, orphans)
        };
        for l in orphans {
            if let Ok(p) = self.layer_path(&l) {
                // Renamed away first, so a half-removed layer is never seen as present.
                let tmp = self.tmp_path("gone");
                if std::fs::rename(&p, &tmp).is_ok() {
                    let _ = std::fs::remove_dir_all(&tmp);
                }
            }
        }
        if let Ok(p) = self.blob_path(&record.id) {
            let _ = std::fs::remove_file(p);
        }
        Ok(record)
    }
}

/// Now, in seconds since the epoch (the system's wall clock: the store's times are only
/// compared with each other, by garbage collection).
pub fn epoch_secs() -> u64 {
    crate::clock::WallClock::system()
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `bytes` to `path` and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| io_err("create", path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err("write", path, e))
}

/// A reader that hashes what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    pub(crate) hasher: sha2::Sha256,
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: sha2::Sha256::new(),
        }
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, tags: &[&str], layers: &[&str]) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: Vec::new(),
            layers: layers.iter().map(|t| t.to_string()).collect(),
            size: 1,
            config: ImageConfig::default(),
            last_used: 0,
        }
    }

    #[test]
    fn a_blob_is_named_only_when_its_digest_matches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let d = sha256_digest(b"hello");
        assert!(matches!(
            store.put_blob(&d, b"other"),
            Err(StoreError::Digest { .. })
        ));
        assert!(!store.blob_path(&d).expect("path").exists());
        store.put_blob(&d, b"hello").expect("put");
        assert_eq!(store.read_blob(&d).expect("read"), b"hello");
        assert!(matches!(
            store.blob_path("md5:abc"),
            Err(StoreError::BadDigest(_))
        ));
    }

    #[test]
    fn a_layer_with_a_wrong_digest_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", &b"hi"[..]).expect("append");
        let raw = b.into_inner().expect("tar");
        let wrong = sha256_digest(b"not it");
        assert!(store.unpack_layer(&wrong, &raw[..]).is_err());
        assert!(!store.has_layer(&wrong));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp"))
                .expect("tmp")
                .count(),
            0
        );
        let right = sha256_digest(&raw);
        store.unpack_layer(&right, &raw[..]).expect("unpack");
        assert!(store.layer_path(&right).expect("path").join("f").is_file());
    }

    #[test]
    fn tags_move_and_shared_layers_stay_until_their_last_image_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let l1 = sha256_digest(b"l1");
        let l2 = sha256_digest(b"l2");
        for l in [&l1, &l2] {
            std::fs::create_dir_all(store.layer_path(l).expect("path")).expect("mkdir");
        }
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        store
            .put_image(record(&a, &["r/x:1"], &[&l1, &l2]))
            .expect("put");
        store
            .put_image(record(&b, &["r/x:1"], &[&l1]))
            .expect("put");
        assert_eq!(store.find("r/x:1").expect("find").id, b);
        assert!(store.find(&a).expect("by id").repo_tags.is_empty());
        assert!(matches!(
            store.remove(&a, std::slice::from_ref(&a)),
            Err(StoreError::InUse(_))
        ));
        store.remove(&a, &[]).expect("remove");
        assert!(store.has_layer(&l1));
        assert!(!store.has_layer(&l2));
        // survives a reopen
        drop(store);
        let store = ImageStore::open(dir.path()).expect("reopen");
        assert_eq!(store.list().len(), 1);
        assert_eq!(store.find(&b[..15]).expect("prefix").id, b);
    }

    #[test]
    fn the_image_config_is_read_from_dockers_names() {
        let c = ImageConfig::parse(
            br#"{"architecture":"amd64","config":{"User":"nobody","Env":["PATH=/bin"],"Entrypoint":["/bin/sh"],"Cmd":["-c","true"],"WorkingDir":"/w","StopSignal":"SIGQUIT"}}"#,
        )
        .expect("parse");
        assert_eq!(c.user.as_deref(), Some("nobody"));
        assert_eq!(c.entrypoint, vec!["/bin/sh"]);
        assert_eq!(c.cmd, vec!["-c", "true"]);
        assert_eq!(c.working_dir.as_deref(), Some("/w"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
    }
}
