//! The scheduling queue: which pending pod is tried next, and when a failed one is retried.
//!
//! # States (one per pending pod)
//!
//! ```text
//!            add                 pop                       bound
//!  (new) ──────────▶ Active ────────────▶ InFlight ────────────────▶ (removed)
//!                      ▲                  │    │ failed: no fit,
//!                      │ backoff expired  │    │ no cluster change during the attempt
//!                      │                  │    ▼
//!                   Backoff ◀─────────────┘  Unschedulable
//!                      ▲   failed: error, or no fit   │
//!                      │   but the cluster changed    │ cluster change (node added/changed,
//!                      └──────────────────────────────┘ pod deleted/finished), pod spec
//!                                                       update, or 5 min without retry
//! ```
//!
//! Rules (upstream `PriorityQueue`):
//! * `Active` pods are popped by priority (`spec.priority`, higher first), then FIFO.
//! * The back-off after the n-th failed attempt is `initial * 2^(n-1)`, capped at `max`
//!   (upstream `podInitialBackoffDuration` 1 s, `podMaxBackoffDuration` 10 s). A pod moved
//!   out of `Unschedulable` goes to `Backoff` if its back-off has not expired yet, else
//!   `Active`.
//! * A failure while a cluster event happened during the attempt goes to `Backoff`, not
//!   `Unschedulable`, so that event is not missed (upstream `moveRequestCycle`).
//! * Pods stuck in `Unschedulable` for 5 minutes are retried anyway (upstream
//!   `podMaxInUnschedulablePodsDuration`).
//! * Updates of an `InFlight` pod only replace the stored object; the attempt's result
//!   decides the next state.
//!
//! Time is an input: every method that needs it takes `now` (a pausable
//! `tokio::time::Instant`).

use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

/// Upstream `podMaxInUnschedulablePodsDuration`.
pub const MAX_UNSCHEDULABLE_DURATION: Duration = Duration::from_secs(300);

/// The state of a queued pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Ready to be tried.
    Active,
    /// Waiting until the instant before being tried again.
    Backoff {
        /// When the pod becomes active.
        until: Instant,
    },
    /// Failed to fit; waits for a cluster change.
    Unschedulable {
        /// When it entered this state.
        since: Instant,
    },
    /// Being scheduled or bound right now.
    InFlight {
        /// The move counter when the attempt started.
        move_seq: u64,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    pod: Arc<Pod>,
    state: QueueState,
    attempts: u32,
    /// Bumped whenever the pod re-enters `Active`; heap items with an older value are stale.
    generation: u64,
    last_failure: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct HeapItem {
    priority: i32,
    /// Reverse FIFO order: lower sequence pops first.
    neg_seq: std::cmp::Reverse<u64>,
    uid: String,
    generation: u64,
}

/// How a scheduling attempt ended, for [`SchedulingQueue::failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No node fits: wait for a cluster change.
    Unschedulable,
    /// An error (bind failed, API error): retry after the back-off.
    Error,
}

/// The queue. See the module docs.
#[derive(Debug)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<HeapItem>,
    backoff: BTreeSet<(Instant, String)>,
    seq: u64,
    move_seq: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
}

fn uid_of(pod: &Pod) -> Option<String> {
    pod.metadata.uid.clone()
}

fn priority_of(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn spec_changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

impl SchedulingQueue {
    /// A queue with the given back-off bounds.
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> Self {
        SchedulingQueue {
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BTreeSet::new(),
            seq: 0,
            move_seq: 0,
            initial_backoff,
            max_backoff,
        }
    }

    /// Number of pods in the queue, in any state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no pod is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The state of a pod.
    pub fn state(&self, uid: &str) -> Option<QueueState> {
        self.entries.get(uid).map(|e| e.state)
    }

    /// The back-off after `attempts` failures.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.max_backoff {
                return self.max_backoff;
            }
        }
        d.min(self.max_backoff)
    }

    fn activate(&mut self, uid: &str) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        if let QueueState::Backoff { until } = e.state {
            self.backoff.remove(&(until, uid.to_owned()));
        }
        self.seq += 1;
        e.generation += 1;
        e.state = QueueState::Active;
        self.active.push(HeapItem {
            priority: priority_of(&e.pod),
            neg_seq: std::cmp::Reverse(self.seq),
            uid: uid.to_owned(),
            generation: e.generation,
        });
    }

    fn enter_backoff(&mut self, uid: &str, until: Instant) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        if let QueueState::Backoff { until: old } = e.state {
            self.backoff.remove(&(old, uid.to_owned()));
        }
        e.generation += 1;
        e.state = QueueState::Backoff { until };
        self.backoff.insert((until, uid.to_owned()));
    }

    /// Adds a pending pod, or updates the stored object of a queued one (an unschedulable
    /// pod whose spec changed is retried).
    pub fn add_or_update(&mut self, pod: Arc<Pod>, now: Instant) {
        let Some(uid) = uid_of(&pod) else {
            return;
        };
        match self.entries.get_mut(&uid) {
            None => {
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        pod,
                        state: QueueState::Active,
                        attempts: 0,
                        generation: 0,
                        last_failure: None,
                    },
                );
                self.activate(&uid);
            }
            Some(e) => {
                let changed = spec_changed(&e.pod, &pod);
                let old_priority = priority_of(&e.pod);
                e.pod = pod;
                let state = e.state;
                match state {
                    QueueState::Unschedulable { .. } if changed => self.move_one(&uid, now),
                    QueueState::Active if old_priority != priority_of(&self.entries[&uid].pod) => {
                        self.activate(&uid)
                    }
                    _ => {}
                }
            }
        }
    }

    /// Removes a pod (deleted, bound by someone else, or no longer ours).
    pub fn remove(&mut self, uid: &str) {
        if let Some(e) = self.entries.remove(uid)
            && let QueueState::Backoff { until } = e.state
        {
            self.backoff.remove(&(until, uid.to_owned()));
        }
    }

    /// Moves expired back-offs and long-unschedulable pods to `Active`.
    pub fn flush(&mut self, now: Instant) {
        while let Some((until, uid)) = self.backoff.first().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop_first();
            self.activate(&uid);
        }
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter_map(|(uid, e)| match e.state {
                QueueState::Unschedulable { since }
                    if now >= since + MAX_UNSCHEDULABLE_DURATION =>
                {
                    Some(uid.clone())
                }
                _ => None,
            })
            .collect();
        for uid in stale {
            self.move_one(&uid, now);
        }
    }

    /// Takes the next active pod and marks it in flight.
    pub fn pop(&mut self) -> Option<Arc<Pod>> {
        while let Some(item) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&item.uid) else {
                continue;
            };
            if e.generation != item.generation || e.state != QueueState::Active {
                continue;
            }
            e.state = QueueState::InFlight {
                move_seq: self.move_seq,
            };
            return Some(e.pod.clone());
        }
        None
    }

    /// The attempt for `uid` succeeded and the pod is being bound: it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.remove(uid);
    }

    /// The attempt for `uid` failed.
    pub fn failed(&mut self, uid: &str, failure: Failure, now: Instant) {
        let backoff = {
            let Some(e) = self.entries.get_mut(uid) else {
                return;
            };
            e.attempts = e.attempts.saturating_add(1);
            e.last_failure = Some(now);
            e.attempts
        };
        let until = now + self.backoff_duration(backoff);
        let moved_during_attempt = matches!(
            self.entries.get(uid).map(|e| e.state),
            Some(QueueState::InFlight { move_seq }) if move_seq != self.move_seq
        );
        match failure {
            Failure::Unschedulable if !moved_during_attempt => {
                if let Some(e) = self.entries.get_mut(uid) {
                    e.generation += 1;
                    e.state = QueueState::Unschedulable { since: now };
                }
            }
            _ => self.enter_backoff(uid, until),
        }
    }

    fn move_one(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        let until = e
            .last_failure
            .map(|t| t + self.backoff_duration(e.attempts.max(1)));
        match until {
            Some(until) if until > now => self.enter_backoff(uid, until),
            _ => self.activate(uid),
        }
    }

    /// A relevant cluster change: every unschedulable pod is retried (after its back-off).
    pub fn move_all_unschedulable(&mut self, now: Instant) {
        self.move_seq += 1;
        let uids: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, QueueState::Unschedulable { .. }))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in uids {
            self.move_one(&uid, now);
        }
    }

    /// When the queue next needs [`flush`](Self::flush) (earliest back-off expiry or
    /// unschedulable timeout).
    pub fn next_wakeup(&self) -> Option<Instant> {
        let b = self.backoff.first().map(|(t, _)| *t);
        let u = self
            .entries
            .values()
            .filter_map(|e| match e.state {
                QueueState::Unschedulable { since } => Some(since + MAX_UNSCHEDULABLE_DURATION),
                _ => None,
            })
            .min();
        match (b, u) {
            (Some(b), Some(u)) => Some(b.min(u)),
            (b, u) => b.or(u),
        }
    }

    /// Whether some pod is ready to pop (possibly a stale heap item).
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// The stored object of a queued pod.
    pub fn pod(&self, uid: &str) -> Option<&Arc<Pod>> {
        self.entries.get(uid).map(|e| &e.pod)
    }

    /// UIDs of all queued pods.
    pub fn uids(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, priority: Option<i32>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                priority,
                ..Default::default()
            }),
            status: None,
        })
    }

    fn q() -> SchedulingQueue {
        SchedulingQueue::new(Duration::from_secs(1), Duration::from_secs(10))
    }

    fn name(p: Option<Arc<Pod>>) -> Option<String> {
        p.and_then(|p| p.metadata.name.clone())
    }

    #[tokio::test(start_paused = true)]
    async fn pops_by_priority_then_fifo() {
        let mut q = q();
        let now = Instant::now();
        q.add_or_update(pod("a", None), now);
        q.add_or_update(pod("b", Some(10)), now);
        q.add_or_update(pod("c", None), now);
        assert_eq!(name(q.pop()).as_deref(), Some("b"));
        assert_eq!(name(q.pop()).as_deref(), Some("a"));
        assert_eq!(name(q.pop()).as_deref(), Some("c"));
        assert!(q.pop().is_none());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let q = q();
        let secs: Vec<u64> = (1..=6).map(|n| q.backoff_duration(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn error_goes_to_backoff_then_active() {
        let mut q = q();
        let now = Instant::now();
        q.add_or_update(pod("a", None), now);
        q.pop();
        q.failed("a", Failure::Error, now);
        assert_eq!(
            q.state("a"),
            Some(QueueState::Backoff {
                until: now + Duration::from_secs(1)
            })
        );
        assert_eq!(q.next_wakeup(), Some(now + Duration::from_secs(1)));
        q.flush(now + Duration::from_millis(999));
        assert!(q.pop().is_none());
        q.flush(now + Duration::from_secs(1));
        assert_eq!(name(q.pop()).as_deref(), Some("a"));
        q.failed("a", Failure::Error, now + Duration::from_secs(1));
        assert_eq!(
            q.state("a"),
            Some(QueueState::Backoff {
                until: now + Duration::from_secs(3)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_waits_for_a_cluster_change() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("a", None), t0);
        q.pop();
        q.failed("a", Failure::Unschedulable, t0);
        assert_eq!(q.state("a"), Some(QueueState::Unschedulable { since: t0 }));
        q.flush(t0 + Duration::from_secs(60));
        assert!(q.pop().is_none(), "no retry without a cluster change");
        // A change within the back-off goes to Backoff, after it straight to Active.
        q.move_all_unschedulable(t0 + Duration::from_millis(500));
        assert_eq!(
            q.state("a"),
            Some(QueueState::Backoff {
                until: t0 + Duration::from_secs(1)
            })
        );
        q.flush(t0 + Duration::from_secs(1));
        assert!(q.pop().is_some());
        q.failed("a", Failure::Unschedulable, t0 + Duration::from_secs(5));
        q.move_all_unschedulable(t0 + Duration::from_secs(20));
        assert_eq!(q.state("a"), Some(QueueState::Active));
    }

    #[tokio::test(start_paused = true)]
    async fn cluster_change_during_attempt_is_not_missed() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("a", None), t0);
        q.pop();
        q.move_all_unschedulable(t0);
        q.failed("a", Failure::Unschedulable, t0);
        assert!(matches!(q.state("a"), Some(QueueState::Backoff { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_are_retried_after_five_minutes() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("a", None), t0);
        q.pop();
        q.failed("a", Failure::Unschedulable, t0);
        assert_eq!(q.next_wakeup(), Some(t0 + MAX_UNSCHEDULABLE_DURATION));
        q.flush(t0 + MAX_UNSCHEDULABLE_DURATION);
        assert_eq!(q.state("a"), Some(QueueState::Active));
    }

    #[tokio::test(start_paused = true)]
    async fn spec_update_retries_an_unschedulable_pod_but_status_update_does_not() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("a", None), t0);
        q.pop();
        q.failed("a", Failure::Unschedulable, t0);
        let mut status_only = (*pod("a", None)).clone();
        status_only.status = Some(Default::default());
        q.add_or_update(Arc::new(status_only), t0 + Duration::from_secs(30));
        assert!(matches!(
            q.state("a"),
            Some(QueueState::Unschedulable { .. })
        ));
        let mut labelled = (*pod("a", None)).clone();
        labelled.metadata.labels = Some([("x".to_owned(), "y".to_owned())].into());
        q.add_or_update(Arc::new(labelled), t0 + Duration::from_secs(30));
        assert_eq!(q.state("a"), Some(QueueState::Active));
    }

    #[tokio::test(start_paused = true)]
    async fn updates_of_in_flight_pods_do_not_requeue() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("a", None), t0);
        q.pop();
        q.add_or_update(pod("a", Some(5)), t0);
        assert!(matches!(q.state("a"), Some(QueueState::InFlight { .. })));
        assert!(q.pop().is_none());
        q.done("a");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn removed_pods_are_not_popped() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("a", None), t0);
        q.add_or_update(pod("b", None), t0);
        q.remove("a");
        assert_eq!(name(q.pop()).as_deref(), Some("b"));
        assert!(q.pop().is_none());
    }
}
