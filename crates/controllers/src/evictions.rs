//! The taint eviction controller's table ([`crate::tainteviction`]): scheduled evictions
//! keyed by pod and the NoExecute taints last seen per node. A plain data structure under
//! one lock each, like [`crate::queue`] and [`crate::expectations`]; the rules that fill
//! and drain it are in `tainteviction`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Taint;
use tokio::time::Instant;

/// A scheduled eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scheduled {
    /// The pod's UID when the eviction was scheduled.
    pub(crate) uid: String,
    /// When it was scheduled.
    pub(crate) created_at: Instant,
    /// When it is due.
    pub(crate) fire_at: Instant,
}

/// The table of scheduled evictions, keyed by pod, and the NoExecute taints last seen per
/// node.
pub(crate) struct Evictions<K> {
    scheduled: Mutex<HashMap<K, Scheduled>>,
    node_taints: Mutex<HashMap<String, Vec<Taint>>>,
}

impl<K> Default for Evictions<K> {
    fn default() -> Self {
        Evictions {
            scheduled: Mutex::default(),
            node_taints: Mutex::default(),
        }
    }
}

impl<K: Eq + Hash> Evictions<K> {
    /// Records a node's NoExecute taints (`None`: the node was deleted); true if they
    /// differ from the last seen ones (or the node is new).
    pub(crate) fn node_taints_changed(&self, node: &str, taints: Option<Vec<Taint>>) -> bool {
        let mut g = self.node_taints.lock().unwrap_or_else(|e| e.into_inner());
        match taints {
            None => g.remove(node).is_some(),
            Some(t) => g
                .insert(node.to_string(), t.clone())
                .is_none_or(|old| old != t),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Scheduled>> {
        self.scheduled.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn cancel(&self, key: &K) -> Option<Scheduled> {
        self.lock().remove(key)
    }

    pub(crate) fn get(&self, key: &K) -> Option<Scheduled> {
        self.lock().get(key).cloned()
    }

    /// Removes the entry if it is still `s` (not replaced meanwhile).
    pub(crate) fn finish(&self, key: &K, s: &Scheduled) {
        let mut g = self.lock();
        if g.get(key) == Some(s) {
            g.remove(key);
        }
    }
}
