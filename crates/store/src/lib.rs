//! The revisioned key-value store behind the API server, with etcd's Kubernetes contract.
//!
//! # Consistency model
//!
//! The store holds keys (UTF-8 strings such as `/registry/pods/default/web`) and opaque values.
//! It has one global `revision` that starts at 1 for an empty store and grows by exactly one
//! for every successful write (create, update or delete). Every live key carries the revision
//! that created it (`create_revision`) and the revision of its last change (`mod_revision`).
//! A failed write (a precondition that does not hold) changes nothing and consumes no revision.
//!
//! Writes are linearizable: once a write returns `Ok`, every later read sees it, and for the
//! durable backends (`redb`, `etcd`) it survives a crash of the process or the machine.
//!
//! # Reads
//!
//! * [`Store::get`] reads one key at the current revision.
//! * [`Store::list`] reads the keys under a prefix, in key order, at the current revision or at
//!   an older one that compaction has not yet removed, with a `limit` and a continue key.
//!   Each page reports the revision it was read at; to read a consistent snapshot page by page,
//!   pass that revision back with the continue key.
//! * [`Store::count`] counts the keys under a prefix.
//!
//! # Watch
//!
//! [`Store::watch`] streams every change under a prefix with a revision greater than or equal to
//! the revision asked for (pass `current + 1` to see only new changes). Events arrive in
//! revision order, each exactly once, with the previous value of the key. When the stream has
//! nothing to deliver it sends [`WatchEvent::Progress`] now and then (a bookmark): the watcher
//! has seen every change up to that revision. A watch may fail with [`StoreError::Compacted`]
//! if its start revision is below the compaction point, or later if it falls so far behind that
//! the store would have to buffer without bound; the watcher then relists and watches again.
//!
//! # Compaction
//!
//! [`Store::compact`] forgets history below a revision. Reads and watches of revisions below the
//! compaction point fail with [`StoreError::Compacted`] (the API server answers 410 Gone).
//!
//! # Backends
//!
//! * [`memory::MemoryStore`] — in memory, for tests and simulations
//!   (`MemoryStore::new()`, or `with_watch_config`).
//! * [`redb_store::RedbStore`] — embedded and durable; the default
//!   (`RedbStore::open(path)`, or `open_with(path, RedbOptions)`; automatic compaction keeps
//!   the last [`RedbOptions::retain_revisions`] revisions).
//! * `etcd::EtcdStore` (feature `etcd`) — a real etcd cluster, for several machines
//!   (`EtcdStore::connect(&endpoints, prefix).await`, or `connect_with`).
//!
//! Watch tuning (bookmark interval, how far a watcher may lag) is [`WatchConfig`]. Every
//! backend passes the same suite, [`conformance`] (see [`conformance_tests!`]).

use std::pin::Pin;

use futures::Stream;

pub mod conformance;
#[cfg(feature = "etcd")]
pub mod etcd;
pub(crate) mod hub;
pub mod memory;
pub mod redb_store;
pub(crate) mod validate;
pub(crate) mod wal;

pub use hub::WatchConfig;
pub use memory::MemoryStore;
pub use redb_store::{RedbOptions, RedbStats, RedbStore};

/// Opens (creating if missing) a store file for reading and writing, readable by its owner
/// only: the store holds every object, Secrets included. An existing file with looser
/// permissions is tightened to 0600.
pub(crate) fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(file)
}

/// A store revision: the store-wide counter of writes. Revisions start at 1.
pub type Revision = i64;

/// The largest value the store accepts, in bytes (etcd's default request limit).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// The longest key the store accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 8 * 1024;

/// One key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value, as stored.
    pub value: Vec<u8>,
    /// The revision of the write that created this key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

/// Options of a [`Store::list`] call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read at this revision instead of the current one; it must not be compacted.
    pub revision: Option<Revision>,
    /// Return at most this many keys (0 = no limit).
    pub limit: usize,
    /// Start after this key (exclusive); it must be under the prefix. Used to page.
    pub continue_after: Option<String>,
}

/// One page of a [`Store::list`] result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// The keys, in key order.
    pub items: Vec<KeyValue>,
    /// The revision the page was read at.
    pub revision: Revision,
    /// Whether there are more keys after the last one returned.
    pub more: bool,
    /// How many keys after this page remain (when `more`), if the backend knows it.
    pub remaining: Option<i64>,
}

/// A change seen by a watch, or a progress notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated. `prev` is the value before, if the key existed.
    Put {
        /// The key as written, with its new revisions.
        kv: KeyValue,
        /// The previous value, if any.
        prev: Option<KeyValue>,
    },
    /// A key was deleted at `revision`; `prev` is its last value.
    Delete {
        /// The value of the key before the delete.
        prev: KeyValue,
        /// The revision of the delete.
        revision: Revision,
    },
    /// A bookmark: the watcher has seen every change up to and including this revision.
    Progress(Revision),
}

impl WatchEvent {
    /// The revision of the event.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
            WatchEvent::Progress(r) => *r,
        }
    }
}

/// The stream a watch returns. It ends with an error (for example `Compacted`) or when the
/// store shuts down; a dropped stream cancels the watch.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// What the store can fail with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The key does not exist.
    #[error("key not found: {key}")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A create found the key already present.
    #[error("key already exists: {key}")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// A conditional write found another `mod_revision`. `current` is the key's current value
    /// (None if it no longer exists).
    #[error("conflict on {key}: expected mod_revision {expected}, found {}", current.as_ref().map(|kv| kv.mod_revision).unwrap_or(0))]
    Conflict {
        /// The key.
        key: String,
        /// The mod_revision the caller expected.
        expected: Revision,
        /// The current value, if the key exists.
        current: Option<Box<KeyValue>>,
    },
    /// The revision asked for has been compacted away.
    #[error("revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The store's compaction point.
        compacted: Revision,
    },
    /// A revision in the future was asked for.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The store cannot answer now (I/O failure, lost connection, shutting down).
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What went wrong.
        message: String,
    },
    /// The request itself is bad (empty key, value too large, continue key outside prefix…).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// The data on disk is corrupt or of an unknown format.
    #[error("store file {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
    /// Whether this is a failed precondition on `mod_revision`.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
    /// Whether this is a read or watch below the compaction point.
    pub fn is_compacted(&self) -> bool {
        matches!(self, StoreError::Compacted { .. })
    }
}

/// The store contract. See the module documentation for the consistency model.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Reads one key at the current revision; `Ok(None)` if it does not exist.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Lists the keys under `prefix`.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError>;

    /// Counts the keys under `prefix` at the current revision.
    async fn count(&self, prefix: &str) -> Result<i64, StoreError>;

    /// Creates `key`; fails with `AlreadyExists` if it exists. Returns the stored key.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError>;

    /// Replaces the value of `key` if its `mod_revision` is `expected`; fails with `Conflict`
    /// (carrying the current value) otherwise, or `NotFound` if the key does not exist.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError>;

    /// Deletes `key`, if `expected` is given only when its `mod_revision` matches. Returns the
    /// deleted value and the revision of the delete. `NotFound` if the key does not exist.
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError>;

    /// Watches every change under `prefix` from revision `from` (inclusive). `from` = 0 means
    /// "from the next write".
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError>;

    /// Forgets history below `revision`.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The oldest revision still readable (the compaction point).
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;

    /// Whether writes can succeed now: `Err` names why not (a write error the backend has
    /// not recovered from yet, such as a full disk). For `/readyz`.
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
