//! The in-memory backend, for tests and simulations.
//!
//! It keeps the whole retained history in memory: for every key the list of its versions
//! (value or tombstone, by revision) since the compaction point, and the log of events (one
//! per revision). Writes take one lock, check their precondition, assign the next revision,
//! append to both, and publish the event to the watch fan-out (`hub` module) before the lock
//! is released, so watchers see revisions in order.
//!
//! Compaction to revision `C` keeps, for every key, its newest version at or below `C` (a
//! tombstone there is dropped) and every newer version, and drops the events below `C`.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::hub::{Event, History, HistoryPage, Hub, WatchConfig, watch_stream};
use crate::validate::{check_continue, check_key, check_value};
use crate::{KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchStream};

/// One version of a key: its value at `rev`, or `None` if it was deleted at `rev`.
struct Version {
    rev: Revision,
    kv: Option<Arc<KeyValue>>,
}

struct State {
    /// The current revision.
    revision: Revision,
    /// The oldest revision still readable.
    compacted: Revision,
    /// Versions of every key, oldest first.
    keys: BTreeMap<String, Vec<Version>>,
    /// One event per revision from `log_start`.
    log: VecDeque<Arc<Event>>,
    /// The revision of `log[0]`.
    log_start: Revision,
}

impl State {
    fn current(&self, key: &str) -> Option<&Arc<KeyValue>> {
        self.keys
            .get(key)
            .and_then(|versions| versions.last())
            .and_then(|v| v.kv.as_ref())
    }

    /// The live value of `key` for a guarded write: NotFound when there is none, Conflict when
    /// `expected` is given and the value is at another revision.
    fn current_at(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let Some(current) = self.current(key) else {
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        };
        if let Some(expected) = expected
            && current.mod_revision != expected
        {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                current: Some(Box::new((**current).clone())),
            });
        }
        Ok((**current).clone())
    }

    fn read_revision(&self, requested: Option<Revision>) -> Result<Revision, StoreError> {
        match requested {
            None | Some(0) => Ok(self.revision),
            Some(r) if r < 0 => Err(StoreError::InvalidArgument {
                message: format!("negative revision {r}"),
            }),
            Some(r) if r < self.compacted => Err(StoreError::Compacted {
                requested: r,
                compacted: self.compacted,
            }),
            Some(r) if r > self.revision => Err(StoreError::FutureRevision {
                requested: r,
                current: self.revision,
            }),
            Some(r) => Ok(r),
        }
    }

    /// Applies a write built for revision `self.revision + 1`: new revision, version, log
    /// entry. Returns the shared event.
    fn commit(&mut self, event: Event) -> Arc<Event> {
        self.revision += 1;
        let (key, kv) = match &event {
            Event::Put { kv, .. } => (kv.key.clone(), Some(Arc::new(kv.clone()))),
            Event::Delete { prev, .. } => (prev.key.clone(), None),
        };
        self.keys.entry(key).or_default().push(Version {
            rev: self.revision,
            kv,
        });
        let event = Arc::new(event);
        self.log.push_back(event.clone());
        event
    }
}

struct Inner {
    state: Mutex<State>,
    hub: Arc<Hub>,
}

/// The in-memory store. Cloning it gives another handle to the same data.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.state.lock();
        f.debug_struct("MemoryStore")
            .field("revision", &state.revision)
            .field("compacted", &state.compacted)
            .finish()
    }
}

impl MemoryStore {
    /// An empty store at revision 1 with the default [`WatchConfig`].
    pub fn new() -> MemoryStore {
        MemoryStore::with_watch_config(WatchConfig::default())
    }

    /// An empty store at revision 1 with the given watch tuning.
    pub fn with_watch_config(config: WatchConfig) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    revision: 1,
                    compacted: 1,
                    keys: BTreeMap::new(),
                    log: VecDeque::new(),
                    log_start: 2,
                }),
                hub: Arc::new(Hub::new(config, 1)),
            }),
        }
    }

    fn publish(&self, event: Arc<Event>) {
        self.inner.hub.publish(Arc::new(vec![event]));
    }
}

#[async_trait::async_trait]
impl History for Inner {
    async fn read(
        &self,
        prefix: &str,
        from: Revision,
        max: usize,
    ) -> Result<HistoryPage, StoreError> {
        let state = self.state.lock();
        if from < state.compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted: state.compacted,
            });
        }
        let start = usize::try_from(from.saturating_sub(state.log_start)).unwrap_or(0);
        let mut events = Vec::new();
        let mut scanned_to = from - 1;
        for event in state.log.iter().skip(start).take(max.max(1)) {
            scanned_to = event.revision();
            if event.key().starts_with(prefix) {
                events.push(event.clone());
            }
        }
        Ok(HistoryPage { events, scanned_to })
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.state.lock().revision)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        check_key(key)?;
        Ok(self
            .inner
            .state
            .lock()
            .current(key)
            .map(|kv| (**kv).clone()))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        check_continue(prefix, opts.continue_after.as_deref())?;
        let state = self.inner.state.lock();
        let revision = state.read_revision(opts.revision)?;
        let start = match &opts.continue_after {
            Some(after) => Bound::Excluded(after.as_str()),
            None => Bound::Included(prefix),
        };
        let mut items = Vec::new();
        let mut more = false;
        let mut remaining = 0i64;
        let visible = state
            .keys
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(_, versions)| {
                let idx = versions.partition_point(|v| v.rev <= revision);
                idx.checked_sub(1)
                    .and_then(|i| versions.get(i))
                    .and_then(|v| v.kv.as_ref())
            });
        for kv in visible {
            if opts.limit != 0 && items.len() >= opts.limit {
                more = true;
                remaining += 1;
            } else {
                items.push((**kv).clone());
            }
        }
        Ok(ListResult {
            items,
            revision,
            more,
            remaining: more.then_some(remaining),
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        let state = self.inner.state.lock();
        let n = state
            .keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, versions)| versions.last().is_some_and(|v| v.kv.is_some()))
            .count();
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        check_value(&value)?;
        let mut state = self.inner.state.lock();
        if state.current(key).is_some() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let rev = state.revision + 1;
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
        };
        let event = state.commit(Event::Put {
            kv: kv.clone(),
            prev: None,
        });
        self.publish(event);
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        check_value(&value)?;
        let mut state = self.inner.state.lock();
        let prev = state.current_at(key, Some(expected))?;
        let rev = state.revision + 1;
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.create_revision,
            mod_revision: rev,
        };
        let event = state.commit(Event::Put {
            kv: kv.clone(),
            prev: Some(prev),
        });
        self.publish(event);
        Ok(kv)
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        check_key(key)?;
        let mut state = self.inner.state.lock();
        let prev = state.current_at(key, expected)?;
        let rev = state.revision + 1;
        let event = state.commit(Event::Delete {
            prev: prev.clone(),
            revision: rev,
        });
        self.publish(event);
        Ok((prev, rev))
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        let from = {
            let state = self.inner.state.lock();
            match from {
                0 => state.revision + 1,
                f if f < 0 => {
                    return Err(StoreError::InvalidArgument {
                        message: format!("negative watch revision {f}"),
                    });
                }
                f if f < state.compacted => {
                    return Err(StoreError::Compacted {
                        requested: f,
                        compacted: state.compacted,
                    });
                }
                f => f,
            }
        };
        let history: Arc<dyn History> = self.inner.clone();
        watch_stream(self.inner.hub.clone(), history, prefix, from)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        if revision < 0 {
            return Err(StoreError::InvalidArgument {
                message: format!("negative compaction revision {revision}"),
            });
        }
        let mut state = self.inner.state.lock();
        if revision > state.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        if revision <= state.compacted {
            return Ok(());
        }
        state.compacted = revision;
        state.keys.retain(|_, versions| {
            // Keep the newest version at or below `revision`, unless it is a tombstone.
            let idx = versions.partition_point(|v| v.rev <= revision);
            if idx > 0 {
                let keep_from = if versions[idx - 1].kv.is_some() {
                    idx - 1
                } else {
                    idx
                };
                versions.drain(..keep_from);
            }
            !versions.is_empty()
        });
        while state.log_start < revision && state.log.pop_front().is_some() {
            state.log_start += 1;
        }
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.state.lock().compacted)
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::WatchEvent;

    #[tokio::test(start_paused = true)]
    async fn writes_list_and_watch_smoke() {
        let store = MemoryStore::new();
        let a = store.create("/a/1", b"x".to_vec()).await.unwrap();
        assert_eq!(a.mod_revision, 2);
        let a2 = store.update("/a/1", b"y".to_vec(), 2).await.unwrap();
        assert_eq!(a2.create_revision, 2);
        assert_eq!(a2.mod_revision, 3);
        let old = store
            .list(
                "/a/",
                ListOptions {
                    revision: Some(2),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(old.items, vec![a.clone()]);
        let mut w = store.watch("/a/", 2).await.unwrap();
        assert!(
            matches!(w.next().await, Some(Ok(WatchEvent::Put { ref kv, prev: None })) if kv == &a)
        );
        assert!(
            matches!(w.next().await, Some(Ok(WatchEvent::Put { ref kv, prev: Some(ref p) })) if kv == &a2 && p == &a)
        );
        let (_, rev) = store.delete("/a/1", Some(3)).await.unwrap();
        assert_eq!(rev, 4);
        assert!(matches!(
            w.next().await,
            Some(Ok(WatchEvent::Delete { revision: 4, .. }))
        ));
        assert_eq!(w.next().await, Some(Ok(WatchEvent::Progress(4))));
    }
}

#[cfg(test)]
mod progress_tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::WatchEvent;

    /// A store with progress bookmarks every `progress_secs` and a watch buffer of `watch_buffer`.
    fn store_with(progress_secs: u64, watch_buffer: usize) -> MemoryStore {
        MemoryStore::with_watch_config(WatchConfig {
            progress_interval: Duration::from_secs(progress_secs),
            watch_buffer,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn bookmark_interval_is_configurable_and_follows_paused_time() {
        let store = store_with(5, 8);
        let mut w = store.watch("/x/", 0).await.unwrap();
        let start = tokio::time::Instant::now();
        store.create("/y/1", vec![]).await.unwrap();
        assert_eq!(w.next().await, Some(Ok(WatchEvent::Progress(2))));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // A delivered event restarts the silence timer.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let kv = store.create("/x/1", vec![]).await.unwrap();
        assert!(matches!(w.next().await, Some(Ok(WatchEvent::Put { .. }))));
        assert_eq!(
            w.next().await,
            Some(Ok(WatchEvent::Progress(kv.mod_revision)))
        );
        assert_eq!(start.elapsed(), Duration::from_secs(13));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watcher_too_far_behind_ends_with_compacted_and_writers_never_wait() {
        let store = store_with(1, 4);
        let mut slow = store.watch("/s/", 0).await.unwrap();
        for i in 0..10 {
            store.create(&format!("/s/{i}"), vec![]).await.unwrap();
        }
        match slow.next().await {
            Some(Err(StoreError::Compacted { requested, .. })) => assert_eq!(requested, 2),
            other => panic!("expected Compacted, got {other:?}"),
        }
        assert_eq!(slow.next().await, None);
        // Memory of the ring is bounded; a new watch from history still works.
        let mut again = store.watch("/s/", 2).await.unwrap();
        let mut n = 0;
        while n < 10 {
            if let Some(Ok(WatchEvent::Put { .. })) = again.next().await {
                n += 1;
            }
        }
    }
}
