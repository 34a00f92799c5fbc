//! The etcd backend (feature `etcd`): the store contract on a real etcd v3 cluster, for
//! running podvisor on several machines.
//!
//! # Mapping
//!
//! * Every key lives under a configurable prefix (`/podvisor` + key, for example), so several
//!   stores can share one etcd. Revisions are etcd's own: `create_revision` and `mod_revision`
//!   map directly, and the store revision is etcd's header revision (writes by other users of
//!   the same etcd advance it too).
//! * `create`, `update` and `delete` are single etcd transactions whose compare (`version > 0`,
//!   `create_revision == 0`, `mod_revision == expected`) carries the precondition; the else
//!   branch reads the key, so a failed precondition reports the current value in the same
//!   round trip (etcd's `OptimisticPut` with `GetOnFailure`).
//! * `list` is a range read `[prefix + continue + "\0", end of prefix)` with etcd's limit and
//!   revision; etcd's count gives `remaining`.
//! * `compact(C)` compacts etcd at `C - 1` and makes `C` the store's compaction point: reads
//!   and watches below `C` fail `Compacted` (checked by the client against the highest point it
//!   knows, and by etcd below `C - 1`). The one-revision margin works around etcd bugs #18089
//!   and #19179 (fixed in 3.4.33 / 3.5.15, present in Debian's 3.4.23): etcd's compaction at
//!   `C` drops a delete made exactly at `C` from watches that start at `C`. Compacting at or
//!   below the current point is a harmless no-op, as on the other backends. etcd has no call
//!   that reports its compaction point, so [`Store::compacted_revision`] finds it by bisection
//!   with count-only reads (etcd's point + 1; another process that compacted etcd to revision
//!   1 only is not noticed).
//!
//! # Watch
//!
//! Every watch of one store handle (and its clones) is an etcd watcher (`prev_kv`,
//! `progress_notify`) on one shared etcd watch stream, run by a multiplexer task (see `Mux`),
//! as etcd's own Go client does. A watch is confirmed by etcd before [`Store::watch`] returns,
//! so writes after the call are seen. The multiplexer moves each watcher's events into a
//! bounded buffer of [`WatchConfig::watch_buffer`] events that the caller's stream drains; a
//! caller that falls that far behind is ended with [`StoreError::Compacted`] (it relists), so
//! a slow caller neither grows memory nor slows etcd or the other watchers. Every
//! [`WatchConfig::progress_interval`] the multiplexer asks etcd for one progress notification
//! for the whole stream and hands it to every watcher as [`WatchEvent::Progress`]. Dropping a
//! stream cancels its etcd watcher; if the etcd stream fails, every watch on it ends with
//! `Unavailable` and the next watch opens a new stream.
//!
//! etcd before 3.4.24 / 3.5.8 answers a progress request with its current revision even when
//! a watcher is still catching up from an old revision (etcd bug #15220), so on those
//! versions a bookmark is exact only for watches that have caught up.
//!
//! # Sizes
//!
//! A value of [`crate::MAX_VALUE_BYTES`] plus its key is slightly above etcd's default request
//! limit of 1.5 MiB: run etcd with `--max-request-bytes` of at least 1,700,000 (the tests use
//! 2 MiB), as larger writes fail `InvalidArgument` otherwise.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, PutOptions,
    Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::validate::{check_continue, check_key, check_value};
use crate::{
    KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchConfig, WatchEvent,
    WatchStream,
};

/// The largest gRPC message the client accepts from etcd.
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// A store on an etcd cluster. Cloning gives another handle on the same connection.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    prefix: String,
    endpoints: String,
    config: WatchConfig,
    /// The highest compaction point seen (a lower bound of etcd's).
    compacted: Arc<AtomicI64>,
    /// The watch multiplexer of this connection, while it runs.
    mux: Arc<MuxSlot>,
    next_token: Arc<AtomicU64>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Maps an etcd client error to a store error.
fn map_err(err: etcd_client::Error) -> StoreError {
    match &err {
        etcd_client::Error::GRpcStatus(status) => {
            let msg = status.message();
            if msg.contains("request is too large") {
                StoreError::InvalidArgument {
                    message: format!("etcd refused the request: {msg}"),
                }
            } else {
                StoreError::Unavailable {
                    message: format!("etcd: {msg} ({:?})", status.code()),
                }
            }
        }
        _ => StoreError::Unavailable {
            message: format!("etcd: {err}"),
        },
    }
}

fn status_message(err: &etcd_client::Error) -> Option<&str> {
    match err {
        etcd_client::Error::GRpcStatus(status) => Some(status.message()),
        _ => None,
    }
}

fn is_compacted(err: &etcd_client::Error) -> bool {
    status_message(err).is_some_and(|m| m.contains("required revision has been compacted"))
}

fn is_future(err: &etcd_client::Error) -> bool {
    status_message(err).is_some_and(|m| m.contains("required revision is a future revision"))
}

/// The first key after every key that starts with `prefix` (etcd's prefix range end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte is 0xff (or the prefix is empty): the range runs to the end of the keyspace.
    vec![0]
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port`) and keeps keys under
    /// `prefix`, with the default [`WatchConfig`].
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore, StoreError> {
        EtcdStore::connect_with(endpoints, prefix, WatchConfig::default()).await
    }

    /// Connects like [`EtcdStore::connect`], with the given watch tuning.
    pub async fn connect_with(
        endpoints: &[String],
        prefix: &str,
        config: WatchConfig,
    ) -> Result<EtcdStore, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::InvalidArgument {
                message: "no etcd endpoints".to_string(),
            });
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_keep_alive(
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(10),
            );
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(map_err)?;
        let store = EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            prefix: prefix.to_string(),
            endpoints: endpoints.join(","),
            config,
            compacted: Arc::new(AtomicI64::new(1)),
            mux: Arc::new(Mutex::new(None)),
            next_token: Arc::new(AtomicU64::new(0)),
        };
        // Fail now, not at the first call, if etcd does not answer.
        store.current_revision().await?;
        Ok(store)
    }

    /// The prefix under which this store keeps its keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    fn corrupt(&self, message: String) -> StoreError {
        StoreError::Corrupt {
            path: format!("etcd://{}/{}", self.endpoints, self.prefix),
            message,
        }
    }

    fn to_kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        let key = kv
            .key()
            .strip_prefix(self.prefix.as_bytes())
            .ok_or_else(|| self.corrupt("etcd returned a key outside the prefix".to_string()))?;
        let key = std::str::from_utf8(key)
            .map_err(|_| self.corrupt("a key under the prefix is not UTF-8".to_string()))?;
        Ok(KeyValue {
            key: key.to_string(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// The current value of `key` from the else branch of a failed transaction.
    fn current_from(
        &self,
        resp: &etcd_client::TxnResponse,
    ) -> Result<Option<KeyValue>, StoreError> {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get.kvs().first().map(|kv| self.to_kv(kv)).transpose();
            }
        }
        Ok(None)
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        self.kv.clone().txn(txn).await.map_err(map_err)
    }

    /// Runs `then` on `key` (stored at `full`) if `compares` hold; when they do not, says why:
    /// NotFound when the key is gone, else Conflict against `expected`. Returns the revision of
    /// the write and the responses of its operations.
    async fn guarded(
        &self,
        key: &str,
        full: Vec<u8>,
        compares: Vec<Compare>,
        then: TxnOp,
        expected: Revision,
    ) -> Result<(Revision, Vec<TxnOpResponse>), StoreError> {
        let txn = Txn::new()
            .when(compares)
            .and_then([then])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(match self.current_from(&resp)? {
                None => StoreError::NotFound {
                    key: key.to_string(),
                },
                Some(current) => StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    current: Some(Box::new(current)),
                },
            });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((rev, resp.op_responses()))
    }

    /// Whether a read at `revision` is refused as compacted.
    async fn below_compaction(&self, revision: Revision) -> Result<bool, StoreError> {
        let probe = self.full("");
        match self
            .kv
            .clone()
            .get(
                probe,
                Some(GetOptions::new().with_count_only().with_revision(revision)),
            )
            .await
        {
            Ok(_) => Ok(false),
            Err(e) if is_compacted(&e) => Ok(true),
            Err(e) => Err(map_err(e)),
        }
    }

    /// The store's compaction point (see the module documentation: one above etcd's own).
    /// etcd has no call that reports its compaction point, so it is found by bisection with
    /// count-only reads (about log2(revisions) round trips, from the last point seen).
    async fn compaction_point(&self) -> Result<Revision, StoreError> {
        let known = self.compacted.load(Ordering::Acquire).max(1);
        // etcd's point is at least `known - 1`; is it higher?
        let floor = (known - 1).max(1);
        if !self.below_compaction(floor).await? {
            return Ok(known);
        }
        // Invariant: `lo` is compacted in etcd, `hi` is readable.
        let (mut lo, mut hi) = (floor, self.current_revision().await?);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.below_compaction(mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        // etcd's point is `hi`; the store's is one above it.
        let point = hi + 1;
        self.compacted.fetch_max(point, Ordering::AcqRel);
        Ok(self.compacted.load(Ordering::Acquire))
    }

    /// Fails with `Compacted` if `revision` is below the known compaction point.
    fn check_compacted(&self, revision: Revision) -> Result<(), StoreError> {
        let compacted = self.compacted.load(Ordering::Acquire);
        if revision < compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted,
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .kv
            .clone()
            .get(
                self.full(""),
                Some(GetOptions::new().with_count_only().with_limit(1)),
            )
            .await
            .map_err(map_err)?;
        resp.header()
            .map(|h| h.revision())
            .ok_or_else(|| StoreError::Unavailable {
                message: "etcd response without a header".to_string(),
            })
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        check_key(key)?;
        let resp = self
            .kv
            .clone()
            .get(self.full(key), None)
            .await
            .map_err(map_err)?;
        resp.kvs().first().map(|kv| self.to_kv(kv)).transpose()
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        check_continue(prefix, opts.continue_after.as_deref())?;
        if let Some(r) = opts.revision
            && r < 0
        {
            return Err(StoreError::InvalidArgument {
                message: format!("negative revision {r}"),
            });
        }
        if let Some(r) = opts.revision.filter(|&r| r > 0) {
            self.check_compacted(r)?;
        }
        let full_prefix = self.full(prefix);
        let start = match &opts.continue_after {
            Some(after) => {
                let mut k = self.full(after);
                k.push(0);
                k
            }
            None => full_prefix.clone(),
        };
        let mut get = GetOptions::new().with_range(prefix_end(&full_prefix));
        if opts.limit > 0 {
            get = get.with_limit(i64::try_from(opts.limit).unwrap_or(i64::MAX));
        }
        if let Some(r) = opts.revision.filter(|&r| r > 0) {
            get = get.with_revision(r);
        }
        let resp = match self.kv.clone().get(start, Some(get)).await {
            Ok(resp) => resp,
            Err(e) if is_compacted(&e) => {
                return Err(StoreError::Compacted {
                    requested: opts.revision.unwrap_or(0),
                    compacted: self.compaction_point().await?,
                });
            }
            Err(e) if is_future(&e) => {
                return Err(StoreError::FutureRevision {
                    requested: opts.revision.unwrap_or(0),
                    current: self.current_revision().await?,
                });
            }
            Err(e) => return Err(map_err(e)),
        };
        let items = resp
            .kvs()
            .iter()
            .map(|kv| self.to_kv(kv))
            .collect::<Result<Vec<_>, _>>()?;
        let revision = match opts.revision.filter(|&r| r > 0) {
            Some(r) => r,
            None => resp.header().map(|h| h.revision()).unwrap_or(0),
        };
        let more = resp.more();
        let remaining = resp.count() - items.len() as i64;
        Ok(ListResult {
            items,
            revision,
            more,
            remaining: more.then_some(remaining.max(0)),
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        let full_prefix = self.full(prefix);
        let resp = self
            .kv
            .clone()
            .get(
                full_prefix.clone(),
                Some(
                    GetOptions::new()
                        .with_range(prefix_end(&full_prefix))
                        .with_count_only(),
                ),
            )
            .await
            .map_err(map_err)?;
        Ok(resp.count())
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        check_value(&value)?;
        let full = self.full(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full.clone(), value.clone(), None)])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        check_value(&value)?;
        let full = self.full(key);
        let compares = vec![
            Compare::version(full.clone(), CompareOp::Greater, 0),
            Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
        ];
        let put = TxnOp::put(
            full.clone(),
            value.clone(),
            Some(PutOptions::new().with_prev_key()),
        );
        let (rev, ops) = self.guarded(key, full, compares, put, expected).await?;
        let create_revision = ops
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| StoreError::Unavailable {
                message: "etcd did not return the previous value of an update".to_string(),
            })?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: rev,
        })
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        check_key(key)?;
        let full = self.full(key);
        let mut compares = vec![Compare::version(full.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let delete = TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()));
        let (rev, ops) = self
            .guarded(key, full, compares, delete, expected.unwrap_or(0))
            .await?;
        let prev = ops
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(del) => del.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| StoreError::Unavailable {
                message: "etcd did not return the deleted value".to_string(),
            })?;
        Ok((self.to_kv(&prev)?, rev))
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        if from < 0 {
            return Err(StoreError::InvalidArgument {
                message: format!("negative watch revision {from}"),
            });
        }
        if from > 0 {
            self.check_compacted(from)?;
        }
        let full_prefix = self.full(prefix);
        let mut options = WatchOptions::new()
            .with_range(prefix_end(&full_prefix))
            .with_prev_key()
            .with_progress_notify();
        if from > 0 {
            options = options.with_start_revision(from);
        }
        let (tx, rx) = mpsc::channel(self.config.watch_buffer.max(1));
        let end: Arc<Mutex<Option<StoreError>>> = Arc::new(Mutex::new(None));
        let sink = Sink {
            tx,
            end: end.clone(),
            from,
            last: from.max(1) - 1,
        };
        let (created_tx, created_rx) = oneshot::channel();
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let mut create = Some(MuxCmd::Create {
            token,
            key: full_prefix,
            options: Box::new(options),
            sink,
            created: created_tx,
        });
        // Use the running multiplexer, or start one if there is none (or it has failed).
        let commands = {
            let mut mux = self.mux.lock();
            if let Some((_, commands)) = mux.as_ref()
                && let Some(cmd) = create.take()
                && let Err(mpsc::error::SendError(cmd)) = commands.send(cmd)
            {
                create = Some(cmd);
            }
            if create.is_some() {
                let (commands, rx) = mpsc::unbounded_channel();
                let id = self.next_token.fetch_add(1, Ordering::Relaxed);
                // The task holds the slot weakly, so it ends once every store handle and
                // every stream is gone.
                let detached = EtcdStore {
                    mux: Arc::new(Mutex::new(None)),
                    ..self.clone()
                };
                tokio::spawn(Mux::new(detached, Arc::downgrade(&self.mux), id).run(rx));
                *mux = Some((id, commands));
            }
            match (mux.as_ref(), create.take()) {
                (Some((_, commands)), Some(cmd)) => {
                    let _ = commands.send(cmd);
                    commands.clone()
                }
                (Some((_, commands)), None) => commands.clone(),
                (None, _) => {
                    return Err(StoreError::Unavailable {
                        message: "cannot start the etcd watch".to_string(),
                    });
                }
            }
        };
        // Wait for etcd to confirm the watch, so that writes after this call are seen.
        created_rx.await.map_err(|_| StoreError::Unavailable {
            message: "the etcd watch stream failed".to_string(),
        })??;
        let guard = CancelOnDrop { token, commands };
        let state = (rx, end, guard, false);
        Ok(
            futures::stream::unfold(state, |(mut rx, end, guard, done)| async move {
                if done {
                    return None;
                }
                match rx.recv().await {
                    Some(item) => Some((Ok(item), (rx, end, guard, false))),
                    None => {
                        let err = end.lock().take();
                        err.map(|e| (Err(e), (rx, end, guard, true)))
                    }
                }
            })
            .boxed(),
        )
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        if revision < 0 {
            return Err(StoreError::InvalidArgument {
                message: format!("negative compaction revision {revision}"),
            });
        }
        if revision <= self.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        // etcd is compacted one revision lower than asked (see the module documentation).
        if revision > 1 {
            match self.kv.clone().compact(revision - 1, None).await {
                Ok(_) => {}
                Err(e) if is_compacted(&e) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        self.compacted.fetch_max(revision, Ordering::AcqRel);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.compaction_point().await
    }
}

/// The running watch multiplexer of a store: its id and command channel.
type MuxSlot = Mutex<Option<(u64, mpsc::UnboundedSender<MuxCmd>)>>;

/// Cancels a watch when its stream is dropped.
struct CancelOnDrop {
    token: u64,
    commands: mpsc::UnboundedSender<MuxCmd>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let _ = self.commands.send(MuxCmd::Cancel { token: self.token });
    }
}

/// Tells a waiting [`Store::watch`] whether etcd accepted its watcher.
type Created = oneshot::Sender<Result<(), StoreError>>;

enum MuxCmd {
    Create {
        token: u64,
        key: Vec<u8>,
        options: Box<WatchOptions>,
        sink: Sink,
        created: Created,
    },
    Cancel {
        token: u64,
    },
}

/// The caller's end of one watch: a bounded buffer and the reason it ended.
struct Sink {
    tx: mpsc::Sender<WatchEvent>,
    end: Arc<Mutex<Option<StoreError>>>,
    from: Revision,
    /// The newest revision delivered (event or progress).
    last: Revision,
}

impl Sink {
    fn finish(self, err: Option<StoreError>) {
        if let Some(err) = err {
            *self.end.lock() = Some(err);
        }
        // Dropping `tx` lets the caller's stream drain, then report `end`.
    }
}

/// All watches of one store handle share one etcd watch stream (as etcd's own client does):
/// one HTTP/2 stream, and one progress request per interval for all of them. The multiplexer
/// task owns the stream: it sends create and cancel requests, matches etcd's `created`
/// answers to creates in order (etcd answers them in the order asked), and routes every
/// response by watch id to its sink without ever waiting for a caller.
struct Mux {
    /// The store's settings and clients (its own `mux` slot unused).
    store: EtcdStore,
    /// The slot of the store that started this task, and this task's id in it.
    slot: std::sync::Weak<MuxSlot>,
    id: u64,
    /// Creates sent to etcd and not yet confirmed, in order.
    pending: VecDeque<(u64, Sink, Created)>,
    /// Live watches by etcd watch id.
    sinks: HashMap<i64, (u64, Sink)>,
    /// etcd watch id by token.
    ids: HashMap<u64, i64>,
    /// Tokens canceled before etcd confirmed them.
    canceled_early: HashSet<u64>,
}

impl Mux {
    fn new(store: EtcdStore, slot: std::sync::Weak<MuxSlot>, id: u64) -> Mux {
        Mux {
            store,
            slot,
            id,
            pending: VecDeque::new(),
            sinks: HashMap::new(),
            ids: HashMap::new(),
            canceled_early: HashSet::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<MuxCmd>) {
        // The gRPC stream opens with the first create.
        let Some(first) = commands.recv().await else {
            return;
        };
        let MuxCmd::Create {
            token,
            key,
            options,
            sink,
            created,
        } = first
        else {
            return;
        };
        let stream = match self.store.watch.clone().watch(key, Some(*options)).await {
            Ok(stream) => stream,
            Err(e) => {
                let _ = created.send(Err(map_err(e)));
                self.fail(
                    &mut commands,
                    map_err_text("cannot open an etcd watch stream"),
                );
                return;
            }
        };
        self.pending.push_back((token, sink, created));
        let (mut requests, mut responses) = stream.split();
        let period = self.store.config.progress_interval;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let err = loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    // Every store handle and stream is gone.
                    None => return,
                    Some(MuxCmd::Create { token, key, options, sink, created }) => {
                        if let Err(e) = requests.watch(key, Some(*options)).await {
                            let _ = created.send(Err(map_err(e)));
                        } else {
                            self.pending.push_back((token, sink, created));
                        }
                    }
                    Some(MuxCmd::Cancel { token }) => {
                        if let Some(id) = self.ids.remove(&token) {
                            self.sinks.remove(&id);
                            if let Err(e) = requests.cancel(id).await {
                                break map_err(e);
                            }
                        } else {
                            self.canceled_early.insert(token);
                        }
                    }
                },
                msg = responses.message() => match msg {
                    Ok(Some(resp)) => {
                        let mut failed = None;
                        for id in self.handle(resp) {
                            if let Err(e) = requests.cancel(id).await {
                                failed = Some(map_err(e));
                                break;
                            }
                        }
                        if let Some(err) = failed {
                            break err;
                        }
                    }
                    Ok(None) => break map_err_text("etcd closed the watch stream"),
                    Err(e) => break map_err(e),
                },
                _ = progress.tick() => {
                    if !self.sinks.is_empty()
                        && let Err(e) = requests.request_progress().await
                    {
                        break map_err(e);
                    }
                }
            }
        };
        self.fail(&mut commands, err);
    }

    /// Ends every watch of this stream with `err`; later watches start a new stream.
    fn fail(&mut self, commands: &mut mpsc::UnboundedReceiver<MuxCmd>, err: StoreError) {
        if let Some(slot) = self.slot.upgrade() {
            let mut mux = slot.lock();
            if mux.as_ref().is_some_and(|(id, _)| *id == self.id) {
                *mux = None;
            }
        }
        commands.close();
        while let Ok(cmd) = commands.try_recv() {
            if let MuxCmd::Create { created, .. } = cmd {
                let _ = created.send(Err(err.clone()));
            }
        }
        for (_, _, created) in self.pending.drain(..) {
            let _ = created.send(Err(err.clone()));
        }
        for (_, (_, sink)) in self.sinks.drain() {
            sink.finish(Some(err.clone()));
        }
    }

    /// Routes one etcd response. Returns the etcd watches to cancel.
    fn handle(&mut self, resp: etcd_client::WatchResponse) -> Vec<i64> {
        let mut cancel = Vec::new();
        let id = resp.watch_id();
        if resp.created() {
            let Some((token, sink, created)) = self.pending.pop_front() else {
                return cancel;
            };
            if resp.canceled() || resp.compact_revision() > 0 {
                // Refused at creation: the caller's stream reports why.
                let _ = created.send(Ok(()));
                let err = refusal(&resp, &sink);
                sink.finish(Some(err));
                return cancel;
            }
            let _ = created.send(Ok(()));
            if self.canceled_early.remove(&token) {
                cancel.push(id);
                return cancel;
            }
            self.ids.insert(token, id);
            self.sinks.insert(id, (token, sink));
            return cancel;
        }
        if resp.canceled() || resp.compact_revision() > 0 {
            if let Some((token, sink)) = self.sinks.remove(&id) {
                self.ids.remove(&token);
                let err = refusal(&resp, &sink);
                sink.finish(Some(err));
            }
            return cancel;
        }
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        if resp.events().is_empty() {
            // A progress notification: for one watch, or (id -1) for every watch of the stream.
            let targets: Vec<i64> = if id == -1 {
                self.sinks.keys().copied().collect()
            } else {
                vec![id]
            };
            for target in targets {
                if let Some((_, sink)) = self.sinks.get_mut(&target)
                    && revision >= sink.last
                    && sink.tx.try_send(WatchEvent::Progress(revision)).is_ok()
                {
                    // Skipped if the buffer is full: the caller is behind anyway.
                    sink.last = revision;
                }
            }
            return cancel;
        }
        let Some((_, sink)) = self.sinks.get_mut(&id) else {
            return cancel;
        };
        let mut ended = None;
        for ev in resp.events() {
            let event = match convert(&self.store, ev) {
                Ok(event) => event,
                Err(err) => {
                    ended = Some(Some(err));
                    break;
                }
            };
            let rev = event.revision();
            match sink.tx.try_send(event) {
                Ok(()) => sink.last = rev,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Too far behind: end the watch rather than buffer without bound.
                    ended = Some(Some(StoreError::Compacted {
                        requested: rev,
                        compacted: rev,
                    }));
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    ended = Some(None);
                    break;
                }
            }
        }
        if let Some(err) = ended
            && let Some((token, sink)) = self.sinks.remove(&id)
        {
            self.ids.remove(&token);
            sink.finish(err);
            cancel.push(id);
        }
        cancel
    }
}

fn map_err_text(message: &str) -> StoreError {
    StoreError::Unavailable {
        message: message.to_string(),
    }
}

/// Why etcd canceled a watch.
fn refusal(resp: &etcd_client::WatchResponse, sink: &Sink) -> StoreError {
    if resp.compact_revision() > 0 {
        StoreError::Compacted {
            requested: sink.last.max(sink.from.max(1) - 1) + 1,
            // The store's compaction point is one above etcd's.
            compacted: resp.compact_revision() + 1,
        }
    } else {
        StoreError::Unavailable {
            message: format!("etcd canceled the watch: {}", resp.cancel_reason()),
        }
    }
}

/// Converts one etcd event.
fn convert(store: &EtcdStore, ev: &etcd_client::Event) -> Result<WatchEvent, StoreError> {
    let kv = ev.kv().ok_or_else(|| StoreError::Unavailable {
        message: "etcd watch event without a key".to_string(),
    })?;
    let prev = ev.prev_kv().map(|p| store.to_kv(p)).transpose()?;
    // A tombstone (delete) has version 0; a put has version >= 1.
    if kv.version() == 0 {
        let revision = kv.mod_revision();
        // Without the previous value (compacted away) the caller cannot apply the delete.
        let prev = prev.ok_or(StoreError::Compacted {
            requested: revision,
            compacted: revision,
        })?;
        Ok(WatchEvent::Delete { prev, revision })
    } else {
        if kv.version() > 1 && prev.is_none() {
            return Err(StoreError::Compacted {
                requested: kv.mod_revision(),
                compacted: kv.mod_revision(),
            });
        }
        Ok(WatchEvent::Put {
            kv: store.to_kv(kv)?,
            prev,
        })
    }
}
