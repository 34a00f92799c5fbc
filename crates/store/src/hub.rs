//! Watch fan-out shared by the embedded backends (`memory`, `redb`).
//!
//! # Lifecycle of a watch
//!
//! ```text
//!   watch(prefix, from) ──► CatchUp ──(history read up to the published revision)──► Live ──► Ended
//!                              │                                                      │
//!                              └──── from < compaction point ──► Err(Compacted) ◄─────┘ (lagged)
//! ```
//!
//! * **CatchUp**: the stream reads committed events from the backend's [`History`] in pages,
//!   starting at `from`. After each page it takes the hub lock and, if the hub has published
//!   nothing beyond what it has read, subscribes to the live feed; otherwise it reads another
//!   page. The writer appends to history *before* it publishes, so no event falls between the
//!   two phases and none is delivered twice.
//! * **Live**: the stream receives committed batches from a bounded ring shared by every
//!   watcher ([`tokio::sync::broadcast`]). A writer never waits for a watcher: publishing is one
//!   push into the ring. A watcher that falls more than `watch_buffer` batches behind loses its
//!   place in the ring and is ended with [`StoreError::Compacted`] (it must relist), so memory
//!   stays bounded however slow a watcher is.
//! * When the stream has nothing to deliver for `progress_interval` it yields
//!   [`WatchEvent::Progress`] with the hub's published revision. This is exact: the published
//!   revision is read *before* checking that the ring holds nothing more for this watcher, and
//!   the writer pushes a batch into the ring *before* it advances the published revision.
//! * The stream ends with [`StoreError::Unavailable`] when the store shuts down.
//!
//! Who calls what: the backend's single writer calls [`Hub::publish`] in revision order, once
//! per committed batch, while no other publish runs. Readers call [`watch_stream`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::{KeyValue, Revision, StoreError, WatchEvent, WatchStream};

/// Tuning of watches on the embedded backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// How long a watch may stay silent before it sends a [`WatchEvent::Progress`] bookmark.
    pub progress_interval: Duration,
    /// How many committed write batches a watcher may lag behind the writers before it is ended
    /// with [`StoreError::Compacted`]. Memory for these batches is shared by all watchers.
    pub watch_buffer: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            progress_interval: Duration::from_secs(1),
            watch_buffer: 1024,
        }
    }
}

/// A committed change, shared between history and every watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A create or update.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A delete at `revision`.
    Delete { prev: KeyValue, revision: Revision },
}

impl Event {
    pub(crate) fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
    pub(crate) fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
    fn to_watch_event(&self) -> WatchEvent {
        match self {
            Event::Put { kv, prev } => WatchEvent::Put {
                kv: kv.clone(),
                prev: prev.clone(),
            },
            Event::Delete { prev, revision } => WatchEvent::Delete {
                prev: prev.clone(),
                revision: *revision,
            },
        }
    }
}

/// Events committed together, in revision order.
pub(crate) type Batch = Arc<Vec<Arc<Event>>>;

/// One page of history read by a catching-up watcher.
pub(crate) struct HistoryPage {
    /// The events under the prefix, in revision order.
    pub events: Vec<Arc<Event>>,
    /// Every revision up to and including this one has been scanned.
    pub scanned_to: Revision,
}

/// The committed history of a backend, read by watchers that start in the past.
#[async_trait::async_trait]
pub(crate) trait History: Send + Sync + 'static {
    /// Reads events under `prefix` with revision `>= from`, scanning at most `max` revisions.
    /// Fails with `Compacted` if `from` is below the compaction point.
    async fn read(
        &self,
        prefix: &str,
        from: Revision,
        max: usize,
    ) -> Result<HistoryPage, StoreError>;
}

struct HubInner {
    sender: Option<broadcast::Sender<Batch>>,
}

/// The live fan-out point of one store.
pub(crate) struct Hub {
    inner: Mutex<HubInner>,
    /// The newest revision pushed into the ring.
    published: AtomicI64,
    config: WatchConfig,
}

impl Hub {
    pub(crate) fn new(config: WatchConfig, published: Revision) -> Hub {
        let capacity = config.watch_buffer.max(1);
        let (sender, _) = broadcast::channel(capacity);
        Hub {
            inner: Mutex::new(HubInner {
                sender: Some(sender),
            }),
            published: AtomicI64::new(published),
            config,
        }
    }

    /// The newest revision handed to watchers.
    pub(crate) fn published(&self) -> Revision {
        self.published.load(Ordering::Acquire)
    }

    /// Hands a committed batch (already in history) to every live watcher. Never blocks on a
    /// watcher.
    pub(crate) fn publish(&self, batch: Batch) {
        let Some(last) = batch.last().map(|e| e.revision()) else {
            return;
        };
        let inner = self.inner.lock();
        if let Some(sender) = &inner.sender {
            // An error only means nobody is watching.
            let _ = sender.send(batch);
        }
        self.published.store(last, Ordering::Release);
    }

    /// Ends every watch (after it has drained what it received); later watches fail with
    /// `Unavailable`.
    pub(crate) fn close(&self) {
        self.inner.lock().sender = None;
    }

    /// Subscribes if nothing newer than `read_to` has been published.
    fn try_subscribe(
        &self,
        read_to: Revision,
    ) -> Result<Option<broadcast::Receiver<Batch>>, StoreError> {
        let inner = self.inner.lock();
        let Some(sender) = &inner.sender else {
            return Err(shutting_down());
        };
        if self.published.load(Ordering::Acquire) <= read_to {
            Ok(Some(sender.subscribe()))
        } else {
            Ok(None)
        }
    }
}

fn shutting_down() -> StoreError {
    StoreError::Unavailable {
        message: "the store is shutting down".to_string(),
    }
}

/// How many revisions a catching-up watcher reads from history at once.
const CATCH_UP_PAGE: usize = 512;

enum Phase {
    CatchUp,
    Live {
        rx: broadcast::Receiver<Batch>,
        progress: tokio::time::Interval,
    },
    Ended,
}

struct WatchState {
    hub: Arc<Hub>,
    history: Arc<dyn History>,
    prefix: String,
    /// The next revision this watcher may deliver.
    next_rev: Revision,
    /// Every revision up to this one has been read from history (or is before `from`).
    scanned_to: Revision,
    pending: VecDeque<Arc<Event>>,
    phase: Phase,
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            while let Some(ev) = self.pending.pop_front() {
                let rev = ev.revision();
                if rev >= self.next_rev && ev.key().starts_with(&self.prefix) {
                    self.next_rev = rev + 1;
                    if let Phase::Live { progress, .. } = &mut self.phase {
                        progress.reset();
                    }
                    return Some(Ok(ev.to_watch_event()));
                }
            }
            match &mut self.phase {
                Phase::Ended => return None,
                Phase::CatchUp => {
                    self.next_rev = self.next_rev.max(self.scanned_to + 1);
                    match self.hub.try_subscribe(self.next_rev - 1) {
                        Ok(Some(rx)) => {
                            self.phase = live(&self.hub, rx);
                            continue;
                        }
                        Ok(None) => {}
                        Err(err) => return Some(self.fail(err)),
                    }
                    match self
                        .history
                        .read(&self.prefix, self.next_rev, CATCH_UP_PAGE)
                        .await
                    {
                        Ok(page) => {
                            self.pending.extend(page.events);
                            self.scanned_to = self.scanned_to.max(page.scanned_to);
                        }
                        Err(err) => return Some(self.fail(err)),
                    }
                }
                Phase::Live { rx, progress } => {
                    tokio::select! {
                        biased;
                        received = rx.recv() => match received {
                            Ok(batch) => self.pending.extend(batch.iter().cloned()),
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                let err = StoreError::Compacted {
                                    requested: self.next_rev,
                                    compacted: self.hub.published(),
                                };
                                return Some(self.fail(err));
                            }
                            Err(broadcast::error::RecvError::Closed) => {
                                return Some(self.fail(shutting_down()));
                            }
                        },
                        _ = progress.tick() => {
                            // Read the published revision first, then check that the ring
                            // holds nothing more for us: everything up to it was delivered.
                            let published = self.hub.published();
                            if rx.is_empty() {
                                return Some(Ok(WatchEvent::Progress(published)));
                            }
                        }
                    }
                }
            }
        }
    }

    fn fail(&mut self, err: StoreError) -> Result<WatchEvent, StoreError> {
        self.phase = Phase::Ended;
        self.pending.clear();
        Err(err)
    }
}

fn live(hub: &Hub, rx: broadcast::Receiver<Batch>) -> Phase {
    let period = hub.config.progress_interval;
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Phase::Live { rx, progress }
}

/// Starts a watch of `prefix` from revision `from` (already validated and resolved; `>= 1`).
/// A watch from the next revision (or later) joins the live feed at once, so its place in the
/// ring is held (and bounded) even before the stream is first polled.
pub(crate) fn watch_stream(
    hub: Arc<Hub>,
    history: Arc<dyn History>,
    prefix: &str,
    from: Revision,
) -> Result<WatchStream, StoreError> {
    let phase = match hub.try_subscribe(from - 1)? {
        Some(rx) => live(&hub, rx),
        None => Phase::CatchUp,
    };
    let state = WatchState {
        hub,
        history,
        prefix: prefix.to_string(),
        next_rev: from,
        scanned_to: from - 1,
        pending: VecDeque::new(),
        phase,
    };
    Ok(futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
    .boxed())
}
