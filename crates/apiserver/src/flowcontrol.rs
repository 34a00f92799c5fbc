//! API Priority and Fairness, after upstream's defaults: the server's request seats are
//! divided between priority levels, and within a level between flows (users) by fair
//! queuing, so that no client takes the seats the admin, the nodes or anyone else needs.
//!
//! # Priority levels (upstream's suggested configuration)
//!
//! | level           | who (flow schema)                                   | shares | queues × hand × length |
//! |-----------------|-----------------------------------------------------|--------|------------------------|
//! | `exempt`        | group `system:masters` (the admin; in `up` the scheduler and controllers) | — | never limited |
//! | `system`        | group `system:nodes`                                | 30     | 64 × 6 × 50            |
//! | `workload-high` | `system:kube-scheduler`, `system:kube-controller-manager`, service accounts of `kube-system` | 40 | 128 × 6 × 50 |
//! | `global-default`| every other authenticated user                      | 20     | 128 × 6 × 50           |
//! | `catch-all`     | anyone else                                         | 5      | none: rejected when full |
//!
//! A level's seats: `ceil(total × shares / sum of shares)` (upstream's NominalCL).
//!
//! # A request's way through a level
//!
//! ```text
//!   arrives ── a seat free, nothing queued, its flow under its cap ──▶ executes
//!      │
//!      └─ else: shuffle sharding deals the flow a hand of queues (a hash of the user);
//!         it joins the shortest ── that queue is full ──▶ 429 at once
//!            │
//!            ├─ a seat frees: queues are served in turn (round robin over the queues whose
//!            │  first request's flow is under its cap) ──▶ executes
//!            └─ still queued after the wait limit (15 s, a quarter of the request timeout)
//!               ──▶ 429 TooManyRequests with Retry-After
//! ```
//!
//! One flow executes at most a quarter of its level's seats at once: a client holding
//! hundreds of slow requests waits in its own queues while the other flows of its level are
//! dispatched past it. Long-running requests (watches, log follows, exec) take no seat, as
//! upstream. A seat is a guard ([`Slot`]); dropping it (the request finished, or its
//! connection closed) frees the seat and dispatches the next queued request.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::auth::UserInfo;

/// Upstream's wait limit: a quarter of the 60 s request timeout.
pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(15);

/// A priority level's fixed configuration.
#[derive(Debug, Clone, Copy)]
struct LevelConfig {
    name: &'static str,
    shares: usize,
    /// Queues (0: requests that cannot execute at once are rejected).
    queues: usize,
    hand: usize,
    queue_length: usize,
}

const LEVELS: [LevelConfig; 4] = [
    LevelConfig {
        name: "system",
        shares: 30,
        queues: 64,
        hand: 6,
        queue_length: 50,
    },
    LevelConfig {
        name: "workload-high",
        shares: 40,
        queues: 128,
        hand: 6,
        queue_length: 50,
    },
    LevelConfig {
        name: "global-default",
        shares: 20,
        queues: 128,
        hand: 6,
        queue_length: 50,
    },
    LevelConfig {
        name: "catch-all",
        shares: 5,
        queues: 0,
        hand: 0,
        queue_length: 0,
    },
];

/// The priority level of `user`'s requests: an index into `LEVELS`, None for `exempt`.
fn classify(user: &UserInfo) -> Option<usize> {
    let in_group = |g: &str| user.groups.iter().any(|x| x == g);
    if in_group("system:masters") {
        None
    } else if in_group("system:nodes") {
        Some(0)
    } else if matches!(
        user.name.as_str(),
        "system:kube-scheduler" | "system:kube-controller-manager"
    ) || user.name.starts_with("system:serviceaccount:kube-system:")
    {
        Some(1)
    } else if in_group("system:authenticated") || !user.name.is_empty() {
        Some(2)
    } else {
        Some(3)
    }
}

/// Why a request was not given a seat (answered 429 with Retry-After).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The queue the flow was dealt is full (or the level does not queue).
    QueueFull,
    /// It waited the whole wait limit in its queue.
    TimedOut,
}

struct Waiter {
    id: u64,
    flow: String,
    grant: oneshot::Sender<()>,
}

#[derive(Default)]
struct LevelState {
    executing: usize,
    by_flow: HashMap<String, usize>,
    queues: Vec<VecDeque<Waiter>>,
    /// The queue served first on the next dispatch (round robin).
    next: usize,
    next_id: u64,
}

struct Level {
    config: LevelConfig,
    seats: usize,
    per_flow: usize,
    state: Mutex<LevelState>,
}

impl Level {
    fn lock(&self) -> std::sync::MutexGuard<'_, LevelState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives free seats to queued requests, the queues served in turn, skipping a queue
    /// whose first request's flow holds its cap.
    fn dispatch(&self, st: &mut LevelState) {
        let n = st.queues.len();
        while st.executing < self.seats && n > 0 {
            let start = st.next;
            let mut granted = false;
            for k in 0..n {
                let q = (start + k) % n;
                let eligible = st.queues[q]
                    .front()
                    .is_some_and(|w| st.by_flow.get(&w.flow).copied().unwrap_or(0) < self.per_flow);
                if !eligible {
                    continue;
                }
                let Some(w) = st.queues[q].pop_front() else {
                    continue;
                };
                st.next = (q + 1) % n;
                if w.grant.send(()).is_ok() {
                    st.executing += 1;
                    *st.by_flow.entry(w.flow).or_insert(0) += 1;
                }
                granted = true;
                break;
            }
            if !granted {
                return;
            }
        }
    }

    fn release(&self, flow: &str) {
        let mut st = self.lock();
        st.executing = st.executing.saturating_sub(1);
        if let Some(n) = st.by_flow.get_mut(flow) {
            *n -= 1;
            if *n == 0 {
                st.by_flow.remove(flow);
            }
        }
        self.dispatch(&mut st);
    }
}

/// Shuffle sharding: the hand of `hand` distinct queues of `queues` dealt to `flow`.
fn deal(flow: &str, queues: usize, hand: usize) -> Vec<usize> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    flow.hash(&mut h);
    let mut bits = h.finish();
    let mut deck: Vec<usize> = (0..queues).collect();
    let mut out = Vec::with_capacity(hand);
    for _ in 0..hand.min(queues) {
        let left = deck.len() as u64;
        out.push(deck.swap_remove((bits % left) as usize));
        bits /= left;
        if bits == 0 {
            bits = h.finish().rotate_left(17) ^ out.len() as u64;
        }
    }
    out
}

/// The seat accounting shared by every request of one server.
pub struct FlowControl {
    levels: Vec<Level>,
    queue_wait: Duration,
}

impl std::fmt::Debug for FlowControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seats: Vec<(&str, usize)> = self
            .levels
            .iter()
            .map(|l| (l.config.name, l.seats))
            .collect();
        f.debug_struct("FlowControl")
            .field("seats", &seats)
            .finish_non_exhaustive()
    }
}

/// One request seat; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    owner: Option<(Arc<FlowControl>, usize, String)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((fc, level, flow)) = self.owner.take() {
            fc.levels[level].release(&flow);
        }
    }
}

impl FlowControl {
    /// `total` seats divided between the priority levels; a queued request waits at most
    /// `queue_wait`.
    pub fn new(total: usize, queue_wait: Duration) -> Arc<FlowControl> {
        let sum: usize = LEVELS.iter().map(|l| l.shares).sum();
        let levels = LEVELS
            .iter()
            .map(|c| {
                let seats = (total * c.shares).div_ceil(sum);
                Level {
                    config: *c,
                    seats,
                    per_flow: (seats / 4).max(1),
                    state: Mutex::new(LevelState {
                        queues: (0..c.queues).map(|_| VecDeque::new()).collect(),
                        ..LevelState::default()
                    }),
                }
            })
            .collect();
        Arc::new(FlowControl { levels, queue_wait })
    }

    /// The name of `user`'s priority level.
    pub fn level_of(user: &UserInfo) -> &'static str {
        classify(user).map_or("exempt", |i| LEVELS[i].name)
    }

    /// Waits for a seat for a short request of `user` (at once for `exempt`).
    pub async fn begin(self: &Arc<Self>, user: &UserInfo) -> Result<Slot, Rejected> {
        let Some(li) = classify(user) else {
            return Ok(Slot { owner: None });
        };
        let level = &self.levels[li];
        let flow = user.name.clone();
        let slot = |fc: &Arc<FlowControl>| Slot {
            owner: Some((fc.clone(), li, flow.clone())),
        };
        let (id, q, rx) = {
            let mut st = level.lock();
            let mine = st.by_flow.get(&flow).copied().unwrap_or(0);
            let queued = st.queues.iter().any(|q| !q.is_empty());
            if st.executing < level.seats && mine < level.per_flow && !queued {
                st.executing += 1;
                *st.by_flow.entry(flow.clone()).or_insert(0) += 1;
                return Ok(slot(self));
            }
            let hand = deal(&flow, level.config.queues, level.config.hand);
            let Some(q) = hand.into_iter().min_by_key(|q| st.queues[*q].len()) else {
                return Err(Rejected::QueueFull);
            };
            if st.queues[q].len() >= level.config.queue_length {
                return Err(Rejected::QueueFull);
            }
            let (tx, rx) = oneshot::channel();
            st.next_id += 1;
            let id = st.next_id;
            st.queues[q].push_back(Waiter {
                id,
                flow: flow.clone(),
                grant: tx,
            });
            level.dispatch(&mut st);
            (id, q, rx)
        };
        let mut rx = rx;
        if let Ok(Ok(())) = tokio::time::timeout(self.queue_wait, &mut rx).await {
            return Ok(slot(self));
        }
        let mut st = level.lock();
        if let Some(pos) = st.queues[q].iter().position(|w| w.id == id) {
            st.queues[q].remove(pos);
            return Err(Rejected::TimedOut);
        }
        drop(st);
        // dispatched just as the wait ended: the seat is ours
        match rx.try_recv() {
            Ok(()) => Ok(slot(self)),
            Err(_) => Err(Rejected::TimedOut),
        }
    }

    /// Seats executing in level `name` (none for `exempt`).
    pub fn executing(&self, name: &str) -> usize {
        self.levels
            .iter()
            .find(|l| l.config.name == name)
            .map_or(0, |l| l.lock().executing)
    }

    /// Seats executing in every limited level together.
    pub fn in_use(&self) -> usize {
        self.levels.iter().map(|l| l.lock().executing).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, group: &str) -> UserInfo {
        UserInfo::new(name, name, vec![group.into()])
    }

    const WAIT: Duration = Duration::from_secs(15);

    #[test]
    fn users_map_to_upstreams_levels() {
        for (name, group, level) in [
            ("admin", "system:masters", "exempt"),
            ("system:node:n1", "system:nodes", "system"),
            (
                "system:kube-scheduler",
                "system:authenticated",
                "workload-high",
            ),
            ("alice", "system:authenticated", "global-default"),
            ("", "", "catch-all"),
        ] {
            assert_eq!(FlowControl::level_of(&user(name, group)), level, "{name}");
        }
        // NominalCL = ceil(600 × shares / 95)
        let fc = FlowControl::new(600, WAIT);
        let seats: Vec<usize> = fc.levels.iter().map(|l| l.seats).collect();
        assert_eq!(seats, [190, 253, 127, 32]);
    }

    #[test]
    fn shuffle_sharding_deals_distinct_queues_stably() {
        let a = deal("system:node:n1", 64, 6);
        assert_eq!(a.len(), 6);
        let mut d = a.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 6);
        assert_eq!(a, deal("system:node:n1", 64, 6));
        assert_ne!(a, deal("system:node:n2", 64, 6));
    }

    /// One flow past its cap waits in its queues while another flow of the same level is
    /// dispatched at once; the admin is never held; a freed seat goes to the waiting flow.
    #[tokio::test(start_paused = true)]
    async fn one_flow_cannot_hold_its_level() {
        let fc = FlowControl::new(95, WAIT); // system: 30 seats, 7 per flow
        let n1 = user("system:node:n1", "system:nodes");
        let n2 = user("system:node:n2", "system:nodes");
        let admin = user("admin", "system:masters");
        let mut held = Vec::new();
        for _ in 0..7 {
            held.push(fc.begin(&n1).await.expect("seat"));
        }
        let waiting = {
            let fc = fc.clone();
            let n1 = n1.clone();
            tokio::spawn(async move { fc.begin(&n1).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        let _other = fc.begin(&n2).await.expect("another node at once");
        let _admin: Vec<Slot> = futures::future::join_all((0..100).map(|_| fc.begin(&admin)))
            .await
            .into_iter()
            .map(|r| r.expect("exempt"))
            .collect();
        assert_eq!(fc.executing("system"), 8);
        held.pop();
        assert_eq!(
            waiting.await.unwrap(),
            Ok(()),
            "a freed seat goes to the queue"
        );
    }

    /// A queued request gives up after the wait limit; a full queue refuses at once; the
    /// catch-all level does not queue.
    #[tokio::test(start_paused = true)]
    async fn waits_are_bounded_and_queues_too() {
        let fc = FlowControl::new(4, Duration::from_secs(2));
        let alice = user("alice", "system:authenticated");
        let held = fc.begin(&alice).await.expect("seat"); // global-default: 1 seat
        let t = tokio::time::Instant::now();
        assert_eq!(fc.begin(&alice).await.unwrap_err(), Rejected::TimedOut);
        assert_eq!(t.elapsed(), Duration::from_secs(2));
        let mut waiters = Vec::new();
        for _ in 0..(6 * 50) {
            let (fc, alice) = (fc.clone(), alice.clone());
            waiters.push(tokio::spawn(
                async move { fc.begin(&alice).await.map(|_| ()) },
            ));
        }
        let queued = |fc: &FlowControl| -> usize {
            fc.levels[2].lock().queues.iter().map(VecDeque::len).sum()
        };
        while queued(&fc) < 6 * 50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(fc.begin(&alice).await.unwrap_err(), Rejected::QueueFull);
        drop(held);
        let anon = user("", "");
        let _a = fc.begin(&anon).await.expect("catch-all seat");
        assert_eq!(fc.begin(&anon).await.unwrap_err(), Rejected::QueueFull);
        for w in waiters {
            w.abort();
        }
    }
}
