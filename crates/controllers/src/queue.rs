//! A deduplicating work queue with delayed requeue.
//!
//! Rules (as client-go's workqueue): a key is queued at most once; a key being processed is
//! never handed to a second worker at the same time; a key added while it is being processed
//! is marked dirty and handed out again after [`WorkQueue::done`]. Delayed adds
//! ([`WorkQueue::add_after`]) keep only the earliest deadline per key.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

struct Inner<K> {
    queue: VecDeque<K>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    dirty: HashSet<K>,
    delayed: BTreeMap<(Instant, u64), K>,
    delayed_at: HashMap<K, (Instant, u64)>,
    seq: u64,
}

/// A work queue of keys; cheap to clone (shared).
pub(crate) struct WorkQueue<K> {
    inner: Arc<Mutex<Inner<K>>>,
    notify: Arc<Notify>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            notify: self.notify.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                delayed: BTreeMap::new(),
                delayed_at: HashMap::new(),
                seq: 0,
            })),
            notify: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` now.
    pub(crate) fn add(&self, key: K) {
        let mut g = self.lock();
        Self::add_locked(&mut g, key);
        drop(g);
        self.notify.notify_one();
    }

    fn add_locked(g: &mut Inner<K>, key: K) {
        if g.processing.contains(&key) {
            g.dirty.insert(key);
            return;
        }
        if g.queued.insert(key.clone()) {
            g.queue.push_back(key);
        }
    }

    /// Queues `key` after `delay` (keeps the earliest deadline if already delayed).
    pub(crate) fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut g = self.lock();
        if let Some(&(old, seq)) = g.delayed_at.get(&key) {
            if old <= at {
                return;
            }
            g.delayed.remove(&(old, seq));
        }
        g.seq += 1;
        let seq = g.seq;
        g.delayed.insert((at, seq), key.clone());
        g.delayed_at.insert(key, (at, seq));
        drop(g);
        self.notify.notify_one();
    }

    /// Waits for the next key; the caller must call [`WorkQueue::done`] with it afterwards.
    pub(crate) async fn next(&self) -> K {
        loop {
            let wake_at = {
                let mut g = self.lock();
                let now = Instant::now();
                while let Some((&(at, seq), _)) = g.delayed.iter().next() {
                    if at > now {
                        break;
                    }
                    if let Some(k) = g.delayed.remove(&(at, seq)) {
                        g.delayed_at.remove(&k);
                        Self::add_locked(&mut g, k);
                    }
                }
                if let Some(k) = g.queue.pop_front() {
                    g.queued.remove(&k);
                    g.processing.insert(k.clone());
                    if !g.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return k;
                }
                g.delayed.keys().next().map(|(at, _)| *at)
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }

    /// Marks `key` as processed; re-queues it if it was added meanwhile.
    pub(crate) fn done(&self, key: &K) {
        let mut g = self.lock();
        g.processing.remove(key);
        if g.dirty.remove(key) {
            Self::add_locked(&mut g, key.clone());
            drop(g);
            self.notify.notify_one();
        }
    }

    /// Number of keys queued now (not counting delayed ones).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_is_queued_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, "a");
        assert_eq!(q.next().await, "b");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_while_processing_comes_back_after_done() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.next().await;
        q.add("a");
        assert_eq!(q.len(), 0, "not handed out twice at once");
        q.done(&k);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_wait_their_turn() {
        let q = WorkQueue::new();
        q.add_after("late", Duration::from_secs(10));
        q.add_after("early", Duration::from_secs(5));
        q.add_after("late", Duration::from_secs(20));
        let start = Instant::now();
        assert_eq!(q.next().await, "early");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(q.next().await, "late");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }
}
