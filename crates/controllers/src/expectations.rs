//! Expectations: creates and deletes a controller issued that its cache has not seen yet.
//!
//! A controller acts on its informer cache, which lags the API. After creating pod `p` (UID
//! `u`) it records `u`; until a pod with that UID shows up in the cache, the controller does
//! not create or delete again for that owner (it would count wrong and double-create). After
//! deleting a pod it records the UID until the cache shows the pod gone or terminating.
//! Tracking UIDs rather than counts makes a same-name replacement (StatefulSet) safe: the old
//! terminating pod of that name does not satisfy the expectation for the new one. An entry
//! also expires after [`EXPECTATION_TTL`], like upstream's, so a lost event cannot wedge an
//! owner forever.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an unobserved create/delete blocks its owner at most.
pub(crate) const EXPECTATION_TTL: Duration = Duration::from_secs(300);

/// What the cache currently says about a pod UID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not in the cache (never seen, or gone).
    Absent,
    /// In the cache, not terminating.
    Live,
    /// In the cache with a deletionTimestamp.
    Terminating,
}

/// A pod by name and UID (the namespace is the owner's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodId {
    pub(crate) name: String,
    pub(crate) uid: String,
}

#[derive(Default)]
struct Pending {
    creates: Vec<(PodId, Instant)>,
    deletes: Vec<(PodId, Instant)>,
}

/// Per-owner in-flight creates and deletes (owner key → pod UIDs).
#[derive(Default)]
pub(crate) struct Expectations {
    inner: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a pod the owner created.
    pub(crate) fn created(&self, owner: &str, uid: PodId) {
        self.record(owner, |p| &mut p.creates, uid);
    }

    /// Records a pod the owner deleted.
    pub(crate) fn deleted(&self, owner: &str, uid: PodId) {
        self.record(owner, |p| &mut p.deletes, uid);
    }

    fn record(
        &self,
        owner: &str,
        list: fn(&mut Pending) -> &mut Vec<(PodId, Instant)>,
        uid: PodId,
    ) {
        list(self.lock().entry(owner.to_string()).or_default()).push((uid, Instant::now()));
    }

    /// Drops what the cache has observed (or what expired) and tells whether nothing remains
    /// in flight for `owner`.
    pub(crate) fn satisfied(&self, owner: &str, seen: impl Fn(&PodId) -> Seen) -> bool {
        let now = Instant::now();
        let mut g = self.lock();
        let Some(p) = g.get_mut(owner) else {
            return true;
        };
        p.creates.retain(|(uid, at)| {
            now.duration_since(*at) < EXPECTATION_TTL && seen(uid) == Seen::Absent
        });
        p.deletes.retain(|(uid, at)| {
            now.duration_since(*at) < EXPECTATION_TTL && seen(uid) == Seen::Live
        });
        let done = p.creates.is_empty() && p.deletes.is_empty();
        if done {
            g.remove(owner);
        }
        done
    }

    /// Forgets everything about `owner` (it was deleted).
    pub(crate) fn forget(&self, owner: &str) {
        self.lock().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(uid: &str) -> PodId {
        PodId {
            name: format!("pod-{uid}"),
            uid: uid.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_blocks_until_the_cache_sees_its_uid() {
        let e = Expectations::default();
        e.created("ns/rs", id("u1"));
        assert!(!e.satisfied("ns/rs", |_| Seen::Absent));
        assert!(e.satisfied("ns/rs", |u| if u.uid == "u1" {
            Seen::Live
        } else {
            Seen::Absent
        }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_is_observed_when_terminating_or_gone() {
        let e = Expectations::default();
        e.deleted("k", id("u1"));
        assert!(!e.satisfied("k", |_| Seen::Live));
        assert!(e.satisfied("k", |_| Seen::Terminating));
        e.deleted("k", id("u2"));
        assert!(e.satisfied("k", |_| Seen::Absent));
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_expire() {
        let e = Expectations::default();
        e.created("k", id("u1"));
        tokio::time::advance(EXPECTATION_TTL).await;
        assert!(e.satisfied("k", |_| Seen::Absent));
    }
}
