//! The embedded, durable backend on one [redb](https://docs.rs/redb) file; podvisor's default.
//!
//! # On disk
//!
//! One redb database (plus its write-ahead log, below) with four tables, all changed together
//! in one transaction per batch:
//!
//! | table      | key            | value                                              |
//! |------------|----------------|----------------------------------------------------|
//! | `meta`     | name           | `format`, `revision`, `compacted` (i64 / marker)   |
//! | `kv`       | key            | `(create_revision, mod_revision)` of live keys     |
//! | `versions` | `(key, rev)`   | the key's value written at `rev`, or a tombstone   |
//! | `log`      | `rev`          | the key written at `rev` (one write per revision)  |
//!
//! `versions` + `log` are the history: a list at an old revision picks, per key, the newest
//! version at or below it; a watch from an old revision walks `log` and reads each event's
//! value and previous value from `versions`. Both survive restarts.
//!
//! # Writes: one writer, group commit
//!
//! ```text
//!  create/update/delete/compact ──► channel ──► writer thread: take every queued request
//!        (await reply)                             (up to a batch limit), apply them in order
//!                                                  in ONE write transaction (each success
//!                                                  gets the next revision; a failed
//!                                                  precondition changes nothing), commit with
//!                                                  fsync, then: advance the revision, append
//!                                                  events to the in-memory ring, publish them to
//!                                                  watchers, and answer every request.
//! ```
//!
//! A request is answered only after its batch is durable, so an acknowledged write survives
//! `kill -9` and power loss. Many concurrent writers share one transaction and one fsync, so
//! durability does not cap throughput.
//!
//! Durability comes from a write-ahead log (`<file>.wal`, see the `wal` module), as in etcd:
//! the batch's writes are appended to a preallocated log file and `fdatasync`ed (one
//! sequential write), then redb commits the transaction without its own sync. A batch that
//! compacts, or that would overflow the log ([`RedbOptions::wal_bytes`], 64 MiB by default), is instead committed durably by redb (a
//! checkpoint) and the log starts over; so does a clean shutdown. On open, the log's batches
//! newer than the durable redb file are replayed in one durable commit. If a commit fails, the
//! writes of that batch are answered `Unavailable` (their outcome is unknown, as with an etcd
//! timeout) and the store refuses further writes until it is reopened.
//!
//! # Reads
//!
//! Reads open their own redb read transaction (a consistent snapshot that includes every
//! acknowledged write) and never wait for the writer.
//!
//! # Watches
//!
//! Served by the shared fan-out (`hub` module): live watchers get committed batches from
//! memory; a watch that starts in the past reads the recent in-memory ring of events, or the
//! on-disk history for older revisions, until it has caught up.
//!
//! # Compaction
//!
//! [`Store::compact`]`(C)` removes, in one transaction, every version a read or watch at
//! revision `>= C` cannot need: for each key written below `C` it keeps only the newest version
//! below `C` (needed as the state at `C` and as the previous value of the next event), and
//! drops it too if it is a tombstone; `log` entries below `C` go. The work is proportional to
//! the writes compacted, not to the store size. With [`RedbOptions::retain_revisions`] set (the
//! default keeps the last 100,000 revisions) the writer compacts by itself, in small steps, so
//! the API server does not need a compactor; callers may still call `compact` at any time.
//!
//! # Opening
//!
//! [`RedbStore::open`] creates the file if it is missing, checks the integrity of an existing
//! file, and refuses a corrupt file or one that is not a podvisor store with
//! [`StoreError::Corrupt`] naming the path. One process at a time may open a file (a second
//! open fails `Unavailable`). Open watch streams keep the file open until they are dropped.

use std::collections::VecDeque;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::hub::{Event, History, HistoryPage, Hub, WatchConfig, watch_stream};
use crate::validate::{check_continue, check_key, check_value};
use crate::wal::{Effect, Wal};
use crate::{KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchStream};

const META: TableDefinition<&str, i64> = TableDefinition::new("podvisor_meta");
const KV: TableDefinition<&str, (i64, i64)> = TableDefinition::new("podvisor_kv");
const VERSIONS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("podvisor_versions");
const LOG: TableDefinition<i64, &str> = TableDefinition::new("podvisor_log");

/// The marker of the file format, stored under `format` in `meta`.
const FORMAT: i64 = 0x706f_6476_0001; // "podv" + version 1

/// The free space a reopen after a write error waits for.
const MIN_FREE_TO_RECOVER: u64 = 1024 * 1024;

/// The bytes an unprivileged writer may still use on the filesystem of `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The least time between two reopen attempts of a store broken by a write error.
const RECOVERY_SPACING: std::time::Duration = std::time::Duration::from_millis(250);
/// How many requests the writer puts in one transaction at most.
const MAX_BATCH: usize = 2048;
/// How many bytes of values the writer puts in one transaction at most (beyond one request).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Events kept in memory for watchers that start a little in the past.
const RING_EVENTS: usize = 16 * 1024;
/// Bytes of values kept in the ring at most.
const RING_BYTES: usize = 64 * 1024 * 1024;

/// Options of a [`RedbStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedbOptions {
    /// Watch tuning.
    pub watch: WatchConfig,
    /// Keep at least this many revisions of history and compact older ones automatically;
    /// `None` keeps everything until [`Store::compact`] is called.
    pub retain_revisions: Option<i64>,
    /// redb's page cache, in bytes.
    pub cache_bytes: usize,
    /// The size of the write-ahead log file; when it is full the writer checkpoints (one
    /// durable redb commit) and starts it over.
    pub wal_bytes: u64,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            watch: WatchConfig::default(),
            retain_revisions: Some(100_000),
            cache_bytes: 256 * 1024 * 1024,
            wal_bytes: crate::wal::CAPACITY,
        }
    }
}

/// Whether an I/O error says the disk (or the quota) is full.
fn is_no_space(io: &std::io::Error) -> bool {
    matches!(io.raw_os_error(), Some(libc_enospc) if libc_enospc == 28 || libc_enospc == 122)
        || io.kind() == std::io::ErrorKind::StorageFull
        || io.kind() == std::io::ErrorKind::QuotaExceeded
}

fn unavailable(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        message: format!("{what}: {err}"),
    }
}

/// Decoded content of one `versions` entry.
enum Record<'a> {
    Value {
        create_revision: Revision,
        value: &'a [u8],
    },
    Tombstone,
}

const TAG_TOMBSTONE: u8 = 0;
const TAG_VALUE: u8 = 1;

fn encode_value(create_revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + value.len());
    out.push(TAG_VALUE);
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

struct Shared {
    path: PathBuf,
    /// The open database; `None` while the writer reopens it after a write error.
    db: parking_lot::RwLock<Option<Arc<redb::Database>>>,
    /// Why writes fail, while they do (a write error the writer has not recovered from).
    failing: Mutex<Option<StoreError>>,
    /// The current revision (every acknowledged write is at or below it).
    revision: AtomicI64,
    /// The compaction point.
    compacted: AtomicI64,
    /// Recent events, contiguous in revision, newest last.
    ring: Mutex<Ring>,
    hub: Arc<Hub>,
    /// Write transactions committed since open.
    transactions: AtomicU64,
    /// Requests answered by those transactions (successful or not).
    requests: AtomicU64,
}

/// Counters of a [`RedbStore`] since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedbStats {
    /// Write transactions committed (each one fsync).
    pub transactions: u64,
    /// Write requests they carried (group commit: many per transaction).
    pub requests: u64,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<Arc<Event>>,
    bytes: usize,
}

fn event_bytes(e: &Event) -> usize {
    match e {
        Event::Put { kv, prev } => kv.value.len() + prev.as_ref().map_or(0, |p| p.value.len()),
        Event::Delete { prev, .. } => prev.value.len(),
    }
}

impl Shared {
    fn corrupt(&self, message: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.display().to_string(),
            message: message.into(),
        }
    }

    fn storage(&self, err: redb::StorageError) -> StoreError {
        match err {
            redb::StorageError::Corrupted(msg) => self.corrupt(msg),
            redb::StorageError::Io(io) if is_no_space(&io) => self.no_space(&io),
            other => unavailable("storage error", other),
        }
    }

    /// The error of a write that found the disk full: it names the cause and the file.
    fn no_space(&self, io: &dyn std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            message: format!(
                "no space left on the device of {}: writes fail until space is freed ({io})",
                self.path.display()
            ),
        }
    }

    /// The database, unless the writer is reopening it.
    fn database(&self) -> Result<Arc<redb::Database>, StoreError> {
        if let Some(db) = self.db.read().as_ref() {
            return Ok(db.clone());
        }
        Err(self
            .failing
            .lock()
            .clone()
            .unwrap_or_else(|| unavailable("store", "reopening after a write error")))
    }

    fn table_err(&self, err: redb::TableError) -> StoreError {
        match err {
            redb::TableError::Storage(e) => self.storage(e),
            other => self.corrupt(other.to_string()),
        }
    }

    fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Record<'a>, StoreError> {
        match bytes.split_first() {
            Some((&TAG_TOMBSTONE, [])) => Ok(Record::Tombstone),
            Some((&TAG_VALUE, rest)) if rest.len() >= 8 => {
                let (rev, value) = rest.split_at(8);
                let mut buf = [0u8; 8];
                buf.copy_from_slice(rev);
                Ok(Record::Value {
                    create_revision: i64::from_le_bytes(buf),
                    value,
                })
            }
            _ => Err(self.corrupt("undecodable version record")),
        }
    }

    fn read_txn(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.database()?
            .begin_read()
            .map_err(|e| unavailable("cannot begin a read transaction", e))
    }

    /// Reads the revision and compaction point of a snapshot.
    fn snapshot_meta(
        &self,
        txn: &redb::ReadTransaction,
    ) -> Result<(Revision, Revision), StoreError> {
        let meta = txn.open_table(META).map_err(|e| self.table_err(e))?;
        let get = |name: &str| -> Result<Revision, StoreError> {
            meta.get(name)
                .map_err(|e| self.storage(e))?
                .map(|g| g.value())
                .ok_or_else(|| self.corrupt(format!("meta entry {name} is missing")))
        };
        Ok((get("revision")?, get("compacted")?))
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let txn = self.read_txn()?;
        let kv = txn.open_table(KV).map_err(|e| self.table_err(e))?;
        let Some((create_revision, mod_revision)) =
            kv.get(key).map_err(|e| self.storage(e))?.map(|g| g.value())
        else {
            return Ok(None);
        };
        let versions = txn.open_table(VERSIONS).map_err(|e| self.table_err(e))?;
        self.value_at(&versions, key, mod_revision, create_revision)
            .map(Some)
    }

    fn value_at(
        &self,
        versions: &redb::ReadOnlyTable<(&'static str, i64), &'static [u8]>,
        key: &str,
        mod_revision: Revision,
        create_revision: Revision,
    ) -> Result<KeyValue, StoreError> {
        let guard = versions
            .get((key, mod_revision))
            .map_err(|e| self.storage(e))?
            .ok_or_else(|| self.corrupt(format!("version {mod_revision} of {key} is missing")))?;
        match self.decode(guard.value())? {
            Record::Value { value, .. } => Ok(KeyValue {
                key: key.to_string(),
                value: value.to_vec(),
                create_revision,
                mod_revision,
            }),
            Record::Tombstone => Err(self.corrupt(format!("live key {key} points at a tombstone"))),
        }
    }

    fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        let txn = self.read_txn()?;
        let kv = txn.open_table(KV).map_err(|e| self.table_err(e))?;
        let mut n = 0i64;
        for entry in kv.range::<&str>(prefix..).map_err(|e| self.storage(e))? {
            let (k, _) = entry.map_err(|e| self.storage(e))?;
            if !k.value().starts_with(prefix) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StoreError> {
        let txn = self.read_txn()?;
        let (current, compacted) = self.snapshot_meta(&txn)?;
        let revision = match opts.revision {
            None | Some(0) => current,
            Some(r) if r < 0 => {
                return Err(StoreError::InvalidArgument {
                    message: format!("negative revision {r}"),
                });
            }
            Some(r) if r < compacted => {
                return Err(StoreError::Compacted {
                    requested: r,
                    compacted,
                });
            }
            Some(r) if r > current => {
                return Err(StoreError::FutureRevision {
                    requested: r,
                    current,
                });
            }
            Some(r) => r,
        };
        let versions = txn.open_table(VERSIONS).map_err(|e| self.table_err(e))?;
        let mut page = Page {
            items: Vec::new(),
            limit: opts.limit,
            remaining: 0,
        };
        if revision == current {
            let kv = txn.open_table(KV).map_err(|e| self.table_err(e))?;
            let start = match &opts.continue_after {
                Some(after) => Bound::Excluded(after.as_str()),
                None => Bound::Included(prefix),
            };
            for entry in kv
                .range::<&str>((start, Bound::Unbounded))
                .map_err(|e| self.storage(e))?
            {
                let (k, v) = entry.map_err(|e| self.storage(e))?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    break;
                }
                let (create_revision, mod_revision) = v.value();
                if page.full() {
                    page.remaining += 1;
                } else {
                    page.items.push(self.value_at(
                        &versions,
                        key,
                        mod_revision,
                        create_revision,
                    )?);
                }
            }
        } else {
            // Walk every version under the prefix; per key keep the newest at or below
            // `revision`.
            let start = match &opts.continue_after {
                Some(after) => Bound::Excluded((after.as_str(), i64::MAX)),
                None => Bound::Included((prefix, i64::MIN)),
            };
            let mut best: Option<KeyValue> = None;
            let mut best_key: Option<String> = None;
            for entry in versions
                .range::<(&str, i64)>((start, Bound::Unbounded))
                .map_err(|e| self.storage(e))?
            {
                let (k, v) = entry.map_err(|e| self.storage(e))?;
                let (key, rev) = k.value();
                if !key.starts_with(prefix) {
                    break;
                }
                if best_key.as_deref() != Some(key) {
                    if let Some(kv) = best.take() {
                        page.push(kv);
                    }
                    best_key = Some(key.to_string());
                }
                if rev > revision {
                    continue;
                }
                best = match self.decode(v.value())? {
                    Record::Value {
                        create_revision,
                        value,
                    } => Some(KeyValue {
                        key: key.to_string(),
                        value: value.to_vec(),
                        create_revision,
                        mod_revision: rev,
                    }),
                    Record::Tombstone => None,
                };
            }
            if let Some(kv) = best.take() {
                page.push(kv);
            }
        }
        let more = page.remaining > 0;
        Ok(ListResult {
            items: page.items,
            revision,
            more,
            remaining: more.then_some(page.remaining),
        })
    }

    /// Reads events from disk: `log` revisions `>= from`, at most `max`.
    fn read_disk_history(
        &self,
        prefix: &str,
        from: Revision,
        max: usize,
    ) -> Result<HistoryPage, StoreError> {
        let txn = self.read_txn()?;
        let (current, compacted) = self.snapshot_meta(&txn)?;
        if from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        let log = txn.open_table(LOG).map_err(|e| self.table_err(e))?;
        let versions = txn.open_table(VERSIONS).map_err(|e| self.table_err(e))?;
        let mut events = Vec::new();
        // Revision 1 is the empty store: the first write is revision 2.
        let mut scanned_to = (from.max(2) - 1).min(current);
        for entry in log
            .range::<i64>(from..)
            .map_err(|e| self.storage(e))?
            .take(max.max(1))
        {
            let (r, k) = entry.map_err(|e| self.storage(e))?;
            let (rev, key) = (r.value(), k.value());
            if rev != scanned_to + 1 {
                return Err(self.corrupt(format!("history has a gap before revision {rev}")));
            }
            scanned_to = rev;
            if key.starts_with(prefix) {
                events.push(Arc::new(self.event_at(&versions, key, rev)?));
            }
        }
        Ok(HistoryPage { events, scanned_to })
    }

    fn event_at(
        &self,
        versions: &redb::ReadOnlyTable<(&'static str, i64), &'static [u8]>,
        key: &str,
        rev: Revision,
    ) -> Result<Event, StoreError> {
        let prev = match versions
            .range::<(&str, i64)>((key, i64::MIN)..(key, rev))
            .map_err(|e| self.storage(e))?
            .next_back()
        {
            None => None,
            Some(entry) => {
                let (k, v) = entry.map_err(|e| self.storage(e))?;
                match self.decode(v.value())? {
                    Record::Value {
                        create_revision,
                        value,
                    } => Some(KeyValue {
                        key: key.to_string(),
                        value: value.to_vec(),
                        create_revision,
                        mod_revision: k.value().1,
                    }),
                    Record::Tombstone => None,
                }
            }
        };
        let guard = versions
            .get((key, rev))
            .map_err(|e| self.storage(e))?
            .ok_or_else(|| self.corrupt(format!("version {rev} of {key} is missing")))?;
        match self.decode(guard.value())? {
            Record::Value {
                create_revision,
                value,
            } => Ok(Event::Put {
                kv: KeyValue {
                    key: key.to_string(),
                    value: value.to_vec(),
                    create_revision,
                    mod_revision: rev,
                },
                prev,
            }),
            Record::Tombstone => Ok(Event::Delete {
                prev: prev.ok_or_else(|| {
                    self.corrupt(format!("delete of {key} at {rev} has no previous value"))
                })?,
                revision: rev,
            }),
        }
    }
}

/// A list page being filled: keys beyond the limit are only counted.
struct Page {
    items: Vec<KeyValue>,
    limit: usize,
    remaining: i64,
}

impl Page {
    fn full(&self) -> bool {
        self.limit != 0 && self.items.len() >= self.limit
    }
    fn push(&mut self, kv: KeyValue) {
        if self.full() {
            self.remaining += 1;
        } else {
            self.items.push(kv);
        }
    }
}

struct HistoryReader(Arc<Shared>);

#[async_trait::async_trait]
impl History for HistoryReader {
    async fn read(
        &self,
        prefix: &str,
        from: Revision,
        max: usize,
    ) -> Result<HistoryPage, StoreError> {
        let shared = &self.0;
        let compacted = shared.compacted.load(Ordering::Acquire);
        if from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        {
            let ring = shared.ring.lock();
            if let Some(first) = ring.events.front().map(|e| e.revision())
                && from >= first
            {
                let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
                let mut events = Vec::new();
                let mut scanned_to = from - 1;
                for e in ring.events.iter().skip(skip).take(max.max(1)) {
                    scanned_to = e.revision();
                    if e.key().starts_with(prefix) {
                        events.push(e.clone());
                    }
                }
                return Ok(HistoryPage { events, scanned_to });
            }
        }
        let shared = shared.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || shared.read_disk_history(&prefix, from, max))
            .await
            .map_err(|e| unavailable("history reader failed", e))?
    }
}

/// A write request for the writer thread.
enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

enum Reply {
    Kv(KeyValue),
    Deleted(KeyValue, Revision),
    Compacted,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Create { value, .. } | Op::Update { value, .. } => value.len(),
            _ => 0,
        }
    }
}

struct Handle {
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Closing the channel stops the writer after its current batch.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.shared.hub.close();
    }
}

/// The embedded durable store. Cloning gives another handle to the same open file; the file
/// is closed when the last handle (and every watch stream) is dropped.
#[derive(Clone)]
pub struct RedbStore {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.handle.shared.path)
            .field(
                "revision",
                &self.handle.shared.revision.load(Ordering::Relaxed),
            )
            .finish()
    }
}

fn open_error(path: &Path, err: redb::DatabaseError) -> StoreError {
    let path_s = path.display().to_string();
    match err {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            StoreError::Unavailable {
                message: format!("store file {path_s} is already open by another process: {err}"),
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if !matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            StoreError::Unavailable {
                message: format!("cannot open store file {path_s}: {io}"),
            }
        }
        other => StoreError::Corrupt {
            path: path_s,
            message: other.to_string(),
        },
    }
}

/// Opens the store file and its write-ahead log, replays the log, and returns the database,
/// the log, the revision and the compaction point.
fn open_files(
    path: &Path,
    options: &RedbOptions,
) -> Result<(redb::Database, Wal, Revision, Revision), StoreError> {
    let path = path.to_path_buf();
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.display().to_string(),
        message,
    };
    // redb checks every page of an existing file on open; it reports damage as an error,
    // and any panic inside it on a hostile file is turned into `Corrupt` too.
    let file = crate::private_file(&path).map_err(|e| StoreError::Unavailable {
        message: format!("cannot open store file {}: {e}", path.display()),
    })?;
    let backend = PrefilledFile {
        inner: redb::backends::FileBackend::new(file).map_err(|e| open_error(&path, e))?,
    };
    let opened = std::panic::catch_unwind(|| {
        redb::Builder::new()
            .set_cache_size(options.cache_bytes)
            .set_check_integrity_on_open(true)
            .create_with_backend(backend)
    })
    .map_err(|_| corrupt("the file could not be read as a redb database".to_string()))?;
    let db = opened.map_err(|e| open_error(&path, e))?;
    let (revision, compacted) = init(&db).map_err(|e| match e {
        InitError::Foreign(message) => corrupt(message),
        InitError::Other(message) => corrupt(message),
    })?;
    let wal_path = {
        let mut p = path.clone().into_os_string();
        p.push(".wal");
        PathBuf::from(p)
    };
    let (wal, replay) =
        Wal::open(&wal_path, revision, options.wal_bytes).map_err(|e| StoreError::Unavailable {
            message: format!(
                "cannot open the write-ahead log {}: {e}",
                wal_path.display()
            ),
        })?;
    let revision = replay_into(&db, &replay, revision).map_err(|message| StoreError::Corrupt {
        path: wal_path.display().to_string(),
        message,
    })?;

    Ok((db, wal, revision, compacted))
}

impl RedbStore {
    /// Opens (or creates) the store file at `path` with default [`RedbOptions`].
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        RedbStore::open_with(path, RedbOptions::default())
    }

    /// Opens (or creates) the store file at `path`.
    ///
    /// Fails with [`StoreError::Corrupt`] (naming the file) if it is damaged or not a podvisor
    /// store, and `Unavailable` if it cannot be opened (missing directory, permissions, open
    /// in another process).
    pub fn open_with(
        path: impl AsRef<Path>,
        options: RedbOptions,
    ) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let (db, wal, revision, compacted) = open_files(&path, &options)?;
        let shared = Arc::new(Shared {
            path,
            db: parking_lot::RwLock::new(Some(Arc::new(db))),
            failing: Mutex::new(None),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            ring: Mutex::new(Ring::default()),
            hub: Arc::new(Hub::new(options.watch.clone(), revision)),
            transactions: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(MAX_BATCH * 2);
        let writer = {
            let shared = shared.clone();
            let retain = options.retain_revisions;
            std::thread::Builder::new()
                .name("podvisor-store-writer".to_string())
                .spawn(move || Writer::new(shared, retain, wal, options).run(rx))
                .map_err(|e| unavailable("cannot start the store writer", e))?
        };
        Ok(RedbStore {
            handle: Arc::new(Handle {
                requests: Some(tx),
                writer: Some(writer),
                shared,
            }),
        })
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.handle.shared.path
    }

    /// Commit counters since open (to observe group commit).
    pub fn stats(&self) -> RedbStats {
        let shared = &self.handle.shared;
        RedbStats {
            transactions: shared.transactions.load(Ordering::Relaxed),
            requests: shared.requests.load(Ordering::Relaxed),
        }
    }

    async fn submit(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, rx) = oneshot::channel();
        let requests = self
            .handle
            .requests
            .as_ref()
            .ok_or_else(|| unavailable("store", "closed"))?;
        requests
            .send(Request { op, reply })
            .await
            .map_err(|_| unavailable("store", "the writer has stopped"))?;
        rx.await
            .map_err(|_| unavailable("store", "the writer stopped before answering"))?
    }

    /// Submits a write whose reply is the written key-value (create and update).
    async fn submit_kv(&self, op: Op) -> Result<KeyValue, StoreError> {
        match self.submit(op).await? {
            Reply::Kv(kv) => Ok(kv),
            _ => Err(unavailable("store", "unexpected writer reply")),
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.handle.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| unavailable("store reader failed", e))?
    }
}

/// redb's file backend, except that every region redb adds to the file is written with zeros
/// at once. Later commits then overwrite blocks the filesystem has already allocated, so their
/// `fdatasync` flushes data only, with no journal commit for block allocation (on the CI disk:
/// about 1.5 ms instead of 4 ms per sync, and no waiting on other processes' dirty data).
#[derive(Debug)]
struct PrefilledFile {
    inner: redb::backends::FileBackend,
}

/// The chunk of zeros written when the file grows.
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

impl redb::StorageBackend for PrefilledFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let old = self.inner.len()?;
        self.inner.set_len(len)?;
        let mut at = old;
        while at < len {
            let n = usize::try_from(len - at).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
            if let Err(e) = self.inner.write(at, &ZEROS[..n]) {
                // Out of space: give the region back, so the file stays as redb knew it.
                if len > old {
                    let _ = self.inner.set_len(old);
                }
                return Err(e);
            }
            at += n as u64;
        }
        Ok(())
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

enum InitError {
    Foreign(String),
    Other(String),
}

/// Creates the tables of a new file, or checks the format of an existing one. Returns the
/// revision and the compaction point.
fn init(db: &redb::Database) -> Result<(Revision, Revision), InitError> {
    let other = |e: &dyn std::fmt::Display| InitError::Other(e.to_string());
    let txn = db.begin_write().map_err(|e| other(&e))?;
    let result = {
        let existing: Vec<String> = txn
            .list_tables()
            .map_err(|e| other(&e))?
            .map(|t| redb::TableHandle::name(&t).to_string())
            .collect();
        let mut meta = txn.open_table(META).map_err(|e| match e {
            redb::TableError::TableTypeMismatch { .. } => {
                InitError::Foreign("not a podvisor store (table types differ)".to_string())
            }
            e => other(&e),
        })?;
        let format = meta
            .get("format")
            .map_err(|e| other(&e))?
            .map(|g| g.value());
        match format {
            Some(FORMAT) => {}
            Some(f) => return Err(InitError::Foreign(format!("unknown store format {f:#x}"))),
            None if !existing.is_empty() => {
                return Err(InitError::Foreign(format!(
                    "a redb database that is not a podvisor store (tables: {})",
                    existing.join(", ")
                )));
            }
            None => {
                meta.insert("format", FORMAT).map_err(|e| other(&e))?;
                meta.insert("revision", 1).map_err(|e| other(&e))?;
                meta.insert("compacted", 1).map_err(|e| other(&e))?;
            }
        }
        let revision = meta
            .get("revision")
            .map_err(|e| other(&e))?
            .map(|g| g.value());
        let compacted = meta
            .get("compacted")
            .map_err(|e| other(&e))?
            .map(|g| g.value());
        drop(meta);
        let map_table = |e: redb::TableError| match e {
            redb::TableError::TableTypeMismatch { .. } => {
                InitError::Foreign("not a podvisor store (table types differ)".to_string())
            }
            e => other(&e),
        };
        txn.open_table(KV).map_err(map_table)?;
        txn.open_table(VERSIONS).map_err(map_table)?;
        txn.open_table(LOG).map_err(map_table)?;
        match (revision, compacted) {
            (Some(r), Some(c)) if r >= 1 && c >= 1 && c <= r => (r, c),
            _ => {
                return Err(InitError::Other(
                    "revision entries are missing or inconsistent".into(),
                ));
            }
        }
    };
    txn.commit().map_err(|e| other(&e))?;
    Ok(result)
}

/// Applies the write-ahead log's batches (already checked to continue `revision`) to the store
/// in one durable commit. Returns the new revision.
fn replay_into(
    db: &redb::Database,
    batches: &[Vec<Effect>],
    revision: Revision,
) -> Result<Revision, String> {
    let Some(last) = batches.last().and_then(|b| b.last()).map(|e| e.rev) else {
        return Ok(revision);
    };
    let err = |e: &dyn std::fmt::Display| format!("replaying the write-ahead log: {e}");
    let txn = db.begin_write().map_err(|e| err(&e))?;
    {
        let mut kv = txn.open_table(KV).map_err(|e| err(&e))?;
        let mut versions = txn.open_table(VERSIONS).map_err(|e| err(&e))?;
        let mut log = txn.open_table(LOG).map_err(|e| err(&e))?;
        for effect in batches.iter().flatten() {
            let key = effect.key.as_str();
            match &effect.put {
                Some((create, value)) => {
                    kv.insert(key, (*create, effect.rev)).map_err(|e| err(&e))?;
                    versions
                        .insert((key, effect.rev), encode_value(*create, value).as_slice())
                        .map_err(|e| err(&e))?;
                }
                None => {
                    kv.remove(key).map_err(|e| err(&e))?;
                    versions
                        .insert((key, effect.rev), [TAG_TOMBSTONE].as_slice())
                        .map_err(|e| err(&e))?;
                }
            }
            log.insert(effect.rev, key).map_err(|e| err(&e))?;
        }
        let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
        meta.insert("revision", last).map_err(|e| err(&e))?;
    }
    txn.commit().map_err(|e| err(&e))?;
    Ok(last)
}

/// The single writer: owns write transactions, batching, and publishing.
struct Writer {
    shared: Arc<Shared>,
    retain: Option<i64>,
    revision: Revision,
    compacted: Revision,
    /// Set after a write error: the database must be reopened before the next write.
    broken: Arc<AtomicBool>,
    /// When the next reopen may be tried (they are spaced while the cause lasts).
    next_recovery: std::time::Instant,
    /// For reopening.
    options: RedbOptions,
    wal: Wal,
    /// Whether the batch being built compacted history (it then commits durably).
    compacted_in_batch: bool,
}

/// The effect of one request inside a batch.
struct Applied {
    reply: oneshot::Sender<Result<Reply, StoreError>>,
    result: Result<Reply, StoreError>,
}

type Tables<'t> = (
    redb::Table<'t, &'static str, (i64, i64)>,
    redb::Table<'t, (&'static str, i64), &'static [u8]>,
    redb::Table<'t, i64, &'static str>,
);

impl Writer {
    #[allow(clippy::disallowed_methods)] // retry spacing of real I/O, not lifecycle time
    fn new(shared: Arc<Shared>, retain: Option<i64>, wal: Wal, options: RedbOptions) -> Writer {
        let revision = shared.revision.load(Ordering::Acquire);
        let compacted = shared.compacted.load(Ordering::Acquire);
        Writer {
            shared,
            retain,
            revision,
            compacted,
            broken: Arc::new(AtomicBool::new(false)),
            next_recovery: std::time::Instant::now(),
            options,
            wal,
            compacted_in_batch: false,
        }
    }

    /// After a write error: drops the database and opens the file again (replaying the log),
    /// so writes work again once the cause is gone (space freed). Tried at most every
    /// [`RECOVERY_SPACING`] while the cause lasts; the batches in between fail at once with
    /// the error that broke the store. Returns whether the store is writable again.
    #[allow(clippy::disallowed_methods)] // retry spacing of real I/O, not lifecycle time
    fn recover(&mut self) -> bool {
        if std::time::Instant::now() < self.next_recovery {
            return false;
        }
        self.next_recovery = std::time::Instant::now() + RECOVERY_SPACING;
        // While the disk is still full a reopen would fail, and closing the database would
        // take reads down with it: wait for space first.
        if let Some(free) = free_bytes(&self.shared.path)
            && free < MIN_FREE_TO_RECOVER
        {
            return false;
        }
        // Readers hold clones of the database for the length of one read; wait for them to
        // end so the file is closed before it is opened again.
        let old = self.shared.db.write().take();
        if let Some(old) = old {
            let mut old = Some(old);
            for _ in 0..500 {
                match Arc::try_unwrap(old.take().expect("database")) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) => {
                        old = Some(still_shared);
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
            }
            if let Some(old) = old {
                // Still in use: put it back and try again later.
                *self.shared.db.write() = Some(old);
                return false;
            }
        }
        let opened = open_files(&self.shared.path, &self.options);
        let (db, wal, revision, compacted) = match opened {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(path = %self.shared.path.display(), error = %e, "store reopen failed; retrying");
                return false;
            }
        };
        if revision != self.revision || compacted != self.compacted {
            // Acknowledged writes and the file disagree: never write on top of that.
            let e = self.shared.corrupt(format!(
                "after reopening, the file is at revision {revision} (compacted {compacted}) \
                 but revision {} (compacted {}) was acknowledged",
                self.revision, self.compacted
            ));
            tracing::error!(error = %e, "store cannot recover");
            *self.shared.failing.lock() = Some(e);
            self.next_recovery = std::time::Instant::now() + std::time::Duration::from_secs(3600);
            drop(db);
            return false;
        }
        self.wal = wal;
        *self.shared.db.write() = Some(Arc::new(db));
        *self.shared.failing.lock() = None;
        self.broken.store(false, Ordering::Relaxed);
        tracing::info!(path = %self.shared.path.display(), revision, "store recovered from a write error");
        true
    }

    /// Marks the store broken by `err` (a storage error): writes fail with it until a reopen
    /// succeeds.
    fn break_with(&mut self, err: &StoreError) {
        self.broken.store(true, Ordering::Relaxed);
        let mut failing = self.shared.failing.lock();
        if !matches!(*failing, Some(StoreError::Corrupt { .. })) {
            *failing = Some(err.clone());
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            let mut bytes = batch[0].op.bytes();
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.op.bytes();
                        batch.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
        // Shutting down: one durable commit makes the log unnecessary for the next open.
        if !self.broken.load(Ordering::Relaxed)
            && let Ok(db) = self.shared.database()
            && let Ok(txn) = db.begin_write()
            && txn.commit().is_ok()
        {
            self.wal.reset();
        }
    }

    fn commit_batch(&mut self, batch: Vec<Request>) {
        if self.broken.load(Ordering::Relaxed) && !self.recover() {
            let err = self
                .shared
                .failing
                .lock()
                .clone()
                .unwrap_or_else(|| unavailable("store", "reopening after a write error"));
            for req in batch {
                let _ = req.reply.send(Err(err.clone()));
            }
            return;
        }
        let start_revision = self.revision;
        let start_compacted = self.compacted;
        let mut events: Vec<Arc<Event>> = Vec::new();
        let mut applied: Vec<Applied> = Vec::with_capacity(batch.len());
        let outcome = self.write_txn(batch, &mut events, &mut applied);
        match outcome {
            Ok(()) => {
                self.shared.transactions.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .requests
                    .fetch_add(applied.len() as u64, Ordering::Relaxed);
                self.shared.revision.store(self.revision, Ordering::Release);
                self.shared
                    .compacted
                    .store(self.compacted, Ordering::Release);
                if !events.is_empty() {
                    {
                        let mut ring = self.shared.ring.lock();
                        for e in &events {
                            ring.bytes += event_bytes(e);
                            ring.events.push_back(e.clone());
                        }
                        while ring.events.len() > RING_EVENTS || ring.bytes > RING_BYTES {
                            match ring.events.pop_front() {
                                Some(e) => ring.bytes -= event_bytes(&e),
                                None => break,
                            }
                        }
                    }
                    self.shared.hub.publish(Arc::new(events));
                }
                for a in applied {
                    let _ = a.reply.send(a.result);
                }
            }
            Err((err, replies)) => {
                self.revision = start_revision;
                self.compacted = start_compacted;
                if matches!(err, StoreError::Unavailable { .. }) {
                    // A storage error: redb may hold state that is not on disk. Reopen
                    // before the next write.
                    self.break_with(&err);
                }
                tracing::error!(path = %self.shared.path.display(), error = %err, "store commit failed");
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Runs one write transaction for `batch`. On failure returns the error and every reply
    /// channel of the batch.
    #[allow(clippy::type_complexity)]
    fn write_txn(
        &mut self,
        batch: Vec<Request>,
        events: &mut Vec<Arc<Event>>,
        applied: &mut Vec<Applied>,
    ) -> Result<(), (StoreError, Vec<oneshot::Sender<Result<Reply, StoreError>>>)> {
        let shared = self.shared.clone();
        let db = match shared.database() {
            Ok(db) => db,
            Err(e) => {
                let replies = batch.into_iter().map(|r| r.reply).collect();
                return Err((e, replies));
            }
        };
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                let replies = batch.into_iter().map(|r| r.reply).collect();
                return Err((unavailable("cannot begin a write transaction", e), replies));
            }
        };
        let mut pending = batch.into_iter();
        let step: Result<(), StoreError> = (|| {
            let mut tables: Tables<'_> = (
                txn.open_table(KV).map_err(|e| shared.table_err(e))?,
                txn.open_table(VERSIONS).map_err(|e| shared.table_err(e))?,
                txn.open_table(LOG).map_err(|e| shared.table_err(e))?,
            );
            for req in pending.by_ref() {
                let result = self.apply(&mut tables, req.op, events);
                let failed_storage = matches!(
                    result,
                    Err(StoreError::Unavailable { .. } | StoreError::Corrupt { .. })
                );
                let err = result.as_ref().err().cloned();
                applied.push(Applied {
                    reply: req.reply,
                    result,
                });
                if failed_storage {
                    return Err(err.unwrap_or_else(|| unavailable("store", "write failed")));
                }
            }
            if let Some(retain) = self.retain {
                let slack = (retain / 8).max(1);
                if self.revision - self.compacted > retain + slack {
                    let target = self.revision - retain;
                    self.compact_in(&mut tables, target)?;
                }
            }
            let mut meta = txn.open_table(META).map_err(|e| shared.table_err(e))?;
            meta.insert("revision", self.revision)
                .map_err(|e| shared.storage(e))?;
            meta.insert("compacted", self.compacted)
                .map_err(|e| shared.storage(e))?;
            Ok(())
        })();
        let fail =
            |err: StoreError, applied: &mut Vec<Applied>, pending: std::vec::IntoIter<Request>| {
                let mut replies: Vec<_> = applied.drain(..).map(|a| a.reply).collect();
                replies.extend(pending.map(|r| r.reply));
                (err, replies)
            };
        if let Err(err) = step {
            let _ = txn.abort();
            events.clear();
            self.compacted_in_batch = false;
            return Err(fail(err, applied, pending));
        }
        // Durability: a batch of writes is made durable by one appended log record; redb then
        // commits it without a sync. A batch that compacted, or that would overflow the log, is
        // a checkpoint: redb commits it durably and the log starts over.
        let mut txn = txn;
        let checkpoint = std::mem::take(&mut self.compacted_in_batch);
        if !checkpoint && events.is_empty() {
            // Only failed preconditions: nothing to write.
            let _ = txn.abort();
            return Ok(());
        }
        let mut logged = false;
        let mut wal_offset = 0;
        if !checkpoint && !events.is_empty() {
            let effects: Vec<Effect> = events
                .iter()
                .map(|e| match &**e {
                    Event::Put { kv, .. } => Effect {
                        rev: kv.mod_revision,
                        key: kv.key.clone(),
                        put: Some((kv.create_revision, kv.value.clone())),
                    },
                    Event::Delete { prev, revision } => Effect {
                        rev: *revision,
                        key: prev.key.clone(),
                        put: None,
                    },
                })
                .collect();
            let payload = crate::wal::encode(&effects);
            wal_offset = self.wal.offset();
            if self.wal.fits(payload.len()) {
                if let Err(e) = self.wal.append(&payload) {
                    let _ = txn.abort();
                    events.clear();
                    return Err(fail(
                        unavailable("cannot write the write-ahead log", e),
                        applied,
                        pending,
                    ));
                }
                logged = true;
            }
        }
        if logged && let Err(e) = txn.set_durability(redb::Durability::None) {
            // The batch is in the log; commit it durably instead.
            tracing::warn!(error = %e, "non-durable commit refused");
            logged = false;
        }
        if let Err(e) = txn.commit() {
            events.clear();
            let err = match e {
                redb::CommitError::Storage(s) => shared.storage(s),
                other => unavailable("commit failed", other),
            };
            if logged && let Err(undo) = self.wal.undo(wal_offset) {
                // The batch stays in the log: a reopen would apply writes answered as
                // failed and never published. Refuse writes until the process restarts.
                let e = shared.corrupt(format!(
                    "cannot take back a write-ahead log record after a failed commit: {undo}"
                ));
                *shared.failing.lock() = Some(e);
                self.next_recovery += std::time::Duration::from_secs(365 * 24 * 3600);
            }
            return Err(fail(err, applied, pending));
        }
        if !logged {
            // A durable commit: everything logged so far is in the store file now.
            self.wal.reset();
        }
        Ok(())
    }

    fn current(&self, tables: &Tables<'_>, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let shared = &self.shared;
        let Some((create_revision, mod_revision)) = tables
            .0
            .get(key)
            .map_err(|e| shared.storage(e))?
            .map(|g| g.value())
        else {
            return Ok(None);
        };
        let guard = tables
            .1
            .get((key, mod_revision))
            .map_err(|e| shared.storage(e))?
            .ok_or_else(|| shared.corrupt(format!("version {mod_revision} of {key} is missing")))?;
        match shared.decode(guard.value())? {
            Record::Value { value, .. } => Ok(Some(KeyValue {
                key: key.to_string(),
                value: value.to_vec(),
                create_revision,
                mod_revision,
            })),
            Record::Tombstone => {
                Err(shared.corrupt(format!("live key {key} points at a tombstone")))
            }
        }
    }

    fn put(&mut self, tables: &mut Tables<'_>, kv: &KeyValue) -> Result<(), StoreError> {
        let shared = self.shared.clone();
        tables
            .0
            .insert(kv.key.as_str(), (kv.create_revision, kv.mod_revision))
            .map_err(|e| shared.storage(e))?;
        tables
            .1
            .insert(
                (kv.key.as_str(), kv.mod_revision),
                encode_value(kv.create_revision, &kv.value).as_slice(),
            )
            .map_err(|e| shared.storage(e))?;
        tables
            .2
            .insert(kv.mod_revision, kv.key.as_str())
            .map_err(|e| shared.storage(e))?;
        Ok(())
    }

    fn apply(
        &mut self,
        tables: &mut Tables<'_>,
        op: Op,
        events: &mut Vec<Arc<Event>>,
    ) -> Result<Reply, StoreError> {
        let shared = self.shared.clone();
        match op {
            Op::Create { key, value } => {
                if self.current(tables, &key)?.is_some() {
                    return Err(StoreError::AlreadyExists { key });
                }
                let rev = self.revision + 1;
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: rev,
                    mod_revision: rev,
                };
                self.put(tables, &kv)?;
                self.revision = rev;
                events.push(Arc::new(Event::Put {
                    kv: kv.clone(),
                    prev: None,
                }));
                Ok(Reply::Kv(kv))
            }
            Op::Update {
                key,
                value,
                expected,
            } => {
                let Some(prev) = self.current(tables, &key)? else {
                    return Err(StoreError::NotFound { key });
                };
                if prev.mod_revision != expected {
                    return Err(StoreError::Conflict {
                        key,
                        expected,
                        current: Some(Box::new(prev)),
                    });
                }
                let rev = self.revision + 1;
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: prev.create_revision,
                    mod_revision: rev,
                };
                self.put(tables, &kv)?;
                self.revision = rev;
                events.push(Arc::new(Event::Put {
                    kv: kv.clone(),
                    prev: Some(prev),
                }));
                Ok(Reply::Kv(kv))
            }
            Op::Delete { key, expected } => {
                let Some(prev) = self.current(tables, &key)? else {
                    return Err(StoreError::NotFound { key });
                };
                if let Some(expected) = expected
                    && prev.mod_revision != expected
                {
                    return Err(StoreError::Conflict {
                        key,
                        expected,
                        current: Some(Box::new(prev)),
                    });
                }
                let rev = self.revision + 1;
                tables
                    .0
                    .remove(key.as_str())
                    .map_err(|e| shared.storage(e))?;
                tables
                    .1
                    .insert((key.as_str(), rev), [TAG_TOMBSTONE].as_slice())
                    .map_err(|e| shared.storage(e))?;
                tables
                    .2
                    .insert(rev, key.as_str())
                    .map_err(|e| shared.storage(e))?;
                self.revision = rev;
                events.push(Arc::new(Event::Delete {
                    prev: prev.clone(),
                    revision: rev,
                }));
                Ok(Reply::Deleted(prev, rev))
            }
            Op::Compact { revision } => {
                if revision > self.revision {
                    return Err(StoreError::FutureRevision {
                        requested: revision,
                        current: self.revision,
                    });
                }
                if revision > self.compacted {
                    self.compact_in(tables, revision)?;
                }
                Ok(Reply::Compacted)
            }
        }
    }

    /// Removes history below `target` (see the module documentation).
    fn compact_in(&mut self, tables: &mut Tables<'_>, target: Revision) -> Result<(), StoreError> {
        let shared = self.shared.clone();
        // The keys written in [compacted, target).
        let mut keys: Vec<String> = Vec::new();
        for entry in tables
            .2
            .range::<i64>(self.compacted..target)
            .map_err(|e| shared.storage(e))?
        {
            let (_, k) = entry.map_err(|e| shared.storage(e))?;
            keys.push(k.value().to_string());
        }
        keys.sort_unstable();
        keys.dedup();
        for key in &keys {
            // Versions of `key` below `target`, oldest first.
            let mut below: Vec<(i64, bool)> = Vec::new();
            for entry in tables
                .1
                .range::<(&str, i64)>((key.as_str(), i64::MIN)..(key.as_str(), target))
                .map_err(|e| shared.storage(e))?
            {
                let (k, v) = entry.map_err(|e| shared.storage(e))?;
                let tombstone = matches!(shared.decode(v.value())?, Record::Tombstone);
                below.push((k.value().1, tombstone));
            }
            let keep = match below.last() {
                Some((rev, false)) => Some(*rev),
                _ => None,
            };
            for (rev, _) in below {
                if Some(rev) != keep {
                    tables
                        .1
                        .remove((key.as_str(), rev))
                        .map_err(|e| shared.storage(e))?;
                }
            }
        }
        let revs: Vec<i64> = {
            let mut revs = Vec::new();
            for entry in tables
                .2
                .range::<i64>(self.compacted..target)
                .map_err(|e| shared.storage(e))?
            {
                let (r, _) = entry.map_err(|e| shared.storage(e))?;
                revs.push(r.value());
            }
            revs
        };
        for r in revs {
            tables.2.remove(r).map_err(|e| shared.storage(e))?;
        }
        self.compacted = target;
        self.compacted_in_batch = true;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.handle.shared.revision.load(Ordering::Acquire))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        check_key(key)?;
        let key = key.to_string();
        self.read(move |s| s.get(&key)).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        check_continue(prefix, opts.continue_after.as_deref())?;
        let prefix = prefix.to_string();
        self.read(move |s| s.list(&prefix, &opts)).await
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        let prefix = prefix.to_string();
        self.read(move |s| s.count(&prefix)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        check_value(&value)?;
        self.submit_kv(Op::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        check_value(&value)?;
        self.submit_kv(Op::Update {
            key: key.to_string(),
            value,
            expected,
        })
        .await
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        check_key(key)?;
        match self
            .submit(Op::Delete {
                key: key.to_string(),
                expected,
            })
            .await?
        {
            Reply::Deleted(kv, rev) => Ok((kv, rev)),
            _ => Err(unavailable("store", "unexpected writer reply")),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        let shared = &self.handle.shared;
        let from = match from {
            0 => shared.revision.load(Ordering::Acquire) + 1,
            f if f < 0 => {
                return Err(StoreError::InvalidArgument {
                    message: format!("negative watch revision {f}"),
                });
            }
            f => {
                let compacted = shared.compacted.load(Ordering::Acquire);
                if f < compacted {
                    return Err(StoreError::Compacted {
                        requested: f,
                        compacted,
                    });
                }
                f
            }
        };
        let history: Arc<dyn History> = Arc::new(HistoryReader(shared.clone()));
        watch_stream(shared.hub.clone(), history, prefix, from)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        if revision < 0 {
            return Err(StoreError::InvalidArgument {
                message: format!("negative compaction revision {revision}"),
            });
        }
        if revision <= self.handle.shared.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        self.submit(Op::Compact { revision }).await.map(|_| ())
    }

    async fn health(&self) -> Result<(), StoreError> {
        match self.handle.shared.failing.lock().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.handle.shared.compacted.load(Ordering::Acquire))
    }
}
