//! Self-fencing (docs/design/0007-node-fencing.md).
//!
//! The node holds its Lease while it renews it. When it has not renewed it for
//! `fence_after` (a watchdog on the send time of the last successful renewal, independent
//! of any request in flight), or when the API server says its lease epoch is stale (the
//! control plane declared it dead), the node has **lost** its lease: the agent SIGKILLs
//! every pod through the runtime (nothing is left), and waits, **fenced**, until it holds
//! the lease again — under the same epoch if the control plane did not declare it dead
//! meanwhile, else under the new one, learnt from its Lease once the pods are dead. Then it
//! says so in Events on the node and on each pod it killed, and runs its pods afresh.
//!
//! ```text
//!  Holding ──(no renewal for fence_after, or stale epoch)──▶ Lost ──(pods killed)──▶ Fenced
//!     ▲                                                                               │
//!     └────────────────────── lease renewed / taken again ◀───────────────────────────┘
//! ```
//!
//! Every request of the agent carries its epoch ([`EPOCH_HEADER`], [`stamped_client`]);
//! the epoch is persisted in the state directory, so an agent restart keeps it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use kube::Client;
use podvisor_api::fencing::{EPOCH_HEADER, format_duration};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::PodRef;

/// The file in the state directory that holds the node's epoch.
const EPOCH_FILE: &str = "lease-epoch";

/// The node's lease epoch, shared by every request it makes and persisted.
#[derive(Clone, Debug, Default)]
pub struct LeaseEpoch {
    value: Arc<AtomicU64>,
    file: Option<PathBuf>,
}

impl LeaseEpoch {
    /// The epoch persisted in `state_dir` (0 when none is).
    pub fn load(state_dir: &std::path::Path) -> LeaseEpoch {
        let file = state_dir.join(EPOCH_FILE);
        let value = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        LeaseEpoch {
            value: Arc::new(AtomicU64::new(value)),
            file: Some(file),
        }
    }

    /// The current epoch.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::SeqCst)
    }

    /// Adopts `epoch` and persists it (atomically: a temporary file renamed).
    pub fn set(&self, epoch: u64) {
        self.value.store(epoch, Ordering::SeqCst);
        if let Some(file) = &self.file {
            let tmp = file.with_extension("tmp");
            let written = std::fs::create_dir_all(file.parent().unwrap_or(file))
                .and_then(|()| std::fs::write(&tmp, epoch.to_string()))
                .and_then(|()| std::fs::rename(&tmp, file));
            if let Err(e) = written {
                tracing::warn!(file = %file.display(), error = %e, "cannot persist the lease epoch");
            }
        }
    }
}

/// `client` with every request stamped with the current `epoch` ([`EPOCH_HEADER`]).
pub fn stamped_client(client: Client, epoch: LeaseEpoch) -> Client {
    let ns = client.default_namespace().to_string();
    let svc = tower::service_fn(move |mut req: http::Request<kube::client::Body>| {
        let client = client.clone();
        req.headers_mut()
            .insert(EPOCH_HEADER, HeaderValue::from(epoch.get()));
        async move { client.send(req).await }
    });
    Client::new(svc, ns)
}

/// Where the node stands with its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceState {
    /// It holds its lease: pods run.
    Holding,
    /// It lost its lease (`why`): the agent is killing its pods.
    Lost {
        /// E.g. `could not renew its lease for 40s (--fence-after)`.
        why: String,
    },
    /// Its pods are dead; it waits to hold its lease again.
    Fenced {
        /// Why it lost its lease.
        why: String,
        /// The pods it killed.
        killed: Vec<PodRef>,
    },
    /// `--fence-after` does not fit the control plane's grace period: the agent stops.
    Misconfigured(String),
}

/// The node's fence: its state, the last renewal, its epoch. Shared by the Node reporter
/// (which renews) and the agent's loop (which kills and restarts the pods).
#[derive(Debug)]
pub struct Fence {
    state: watch::Sender<FenceState>,
    renewed: watch::Sender<Instant>,
    fence_after: watch::Sender<Duration>,
    /// Whether `--fence-after` was given (else it follows the control plane's grace).
    explicit: bool,
    lease_duration: Duration,
    /// Why the lease was lost and the pods killed, from Fenced to Holding until taken.
    last: std::sync::Mutex<Option<(String, Vec<PodRef>)>>,
    /// The node's epoch.
    pub epoch: LeaseEpoch,
}

impl Fence {
    /// A fence holding the lease as of now, with `fence_after` (None: the default, lowered
    /// when the control plane's grace period is learnt).
    pub fn new(
        fence_after: Option<Duration>,
        lease_duration: Duration,
        epoch: LeaseEpoch,
    ) -> Fence {
        let after = fence_after
            .unwrap_or_else(|| podvisor_api::fencing::default_fence_after(lease_duration, None));
        Fence {
            state: watch::channel(FenceState::Holding).0,
            renewed: watch::channel(Instant::now()).0,
            fence_after: watch::channel(after).0,
            explicit: fence_after.is_some(),
            lease_duration,
            last: std::sync::Mutex::new(None),
            epoch,
        }
    }

    /// The state now.
    pub fn state(&self) -> FenceState {
        self.state.borrow().clone()
    }

    /// Follows the state.
    pub fn subscribe(&self) -> watch::Receiver<FenceState> {
        self.state.subscribe()
    }

    /// The fence-after in force.
    pub fn fence_after(&self) -> Duration {
        *self.fence_after.borrow()
    }

    /// Learns the control plane's grace period: the default fence-after follows it; an
    /// explicit one that does not fit makes the agent stop with the error.
    pub fn set_grace(&self, grace: Duration) {
        let fits = if self.explicit {
            podvisor_api::fencing::check_fence_after(
                self.fence_after(),
                self.lease_duration,
                Some(grace),
            )
        } else {
            let d = podvisor_api::fencing::default_fence_after(self.lease_duration, Some(grace));
            self.fence_after
                .send_if_modified(|a| std::mem::replace(a, d) != d);
            podvisor_api::fencing::check_fence_after(d, self.lease_duration, Some(grace))
        };
        if let Err(e) = fits {
            self.state.send_replace(FenceState::Misconfigured(e));
        }
    }

    /// A renewal sent at `sent` succeeded under the current epoch: the lease is held (again,
    /// when fenced; a kill in progress finishes first).
    pub fn renewed(&self, sent: Instant) {
        let held = self.state.send_if_modified(|s| match s {
            FenceState::Fenced { why, killed } => {
                let last = (std::mem::take(why), std::mem::take(killed));
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(last);
                *s = FenceState::Holding;
                true
            }
            _ => false,
        });
        if held || matches!(*self.state.borrow(), FenceState::Holding) {
            self.renewed.send_replace(sent);
        }
    }

    /// The lease is lost (`why`): from Holding to Lost; otherwise nothing changes.
    pub fn lose(&self, why: String) {
        self.state.send_if_modified(|s| {
            if *s == FenceState::Holding {
                tracing::warn!(%why, "the node lost its lease: killing its pods");
                *s = FenceState::Lost { why };
                true
            } else {
                false
            }
        });
    }

    /// The pods are dead: from Lost to Fenced.
    pub fn killed(&self, killed: Vec<PodRef>) {
        self.state.send_if_modified(|s| match s {
            FenceState::Lost { why } => {
                *s = FenceState::Fenced {
                    why: std::mem::take(why),
                    killed,
                };
                true
            }
            _ => false,
        });
    }

    /// Why the lease was last lost and which pods were killed, once the node holds it
    /// again (taken: the events are written once).
    pub fn last_fencing(&self) -> Option<(String, Vec<PodRef>)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether the pods are dead (the agent may take a new epoch).
    pub fn is_fenced(&self) -> bool {
        matches!(*self.state.borrow(), FenceState::Fenced { .. })
    }

    /// The watchdog: loses the lease `fence_after` after the last renewal's send time.
    pub async fn watchdog(self: Arc<Self>, stop: CancellationToken) {
        let mut renewed = self.renewed.subscribe();
        let mut after = self.fence_after.subscribe();
        loop {
            let fence_after = *after.borrow_and_update();
            let deadline = *renewed.borrow_and_update() + fence_after;
            tokio::select! {
                _ = stop.cancelled() => return,
                r = renewed.changed() => if r.is_err() { return },
                r = after.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => {
                    self.lose(format!(
                        "could not renew its lease for {} (--fence-after)",
                        format_duration(fence_after)
                    ));
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        r = renewed.changed() => if r.is_err() { return },
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(after: u64) -> Arc<Fence> {
        Arc::new(Fence::new(
            Some(Duration::from_secs(after)),
            Duration::from_secs(40),
            LeaseEpoch::default(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_loses_the_lease_fence_after_the_last_renewal() {
        let f = fence(15);
        let stop = CancellationToken::new();
        let task = tokio::spawn(f.clone().watchdog(stop.clone()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        f.renewed(Instant::now());
        tokio::time::sleep(Duration::from_secs(14)).await;
        assert_eq!(f.state(), FenceState::Holding, "renewed 14 s ago");
        tokio::time::sleep(Duration::from_millis(1001)).await;
        assert_eq!(
            f.state(),
            FenceState::Lost {
                why: "could not renew its lease for 15s (--fence-after)".into()
            }
        );
        // A renewal while the kill runs changes nothing; once the pods are dead it does.
        f.renewed(Instant::now());
        assert!(matches!(f.state(), FenceState::Lost { .. }));
        f.killed(vec![]);
        assert!(f.is_fenced());
        f.renewed(Instant::now());
        assert_eq!(f.state(), FenceState::Holding);
        assert_eq!(
            f.last_fencing(),
            Some((
                "could not renew its lease for 15s (--fence-after)".into(),
                vec![]
            ))
        );
        assert_eq!(f.last_fencing(), None);
        tokio::time::sleep(Duration::from_secs(14)).await;
        assert_eq!(f.state(), FenceState::Holding, "the deadline moved on");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(matches!(f.state(), FenceState::Lost { .. }));
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_default_fence_after_follows_the_grace_period_and_an_explicit_one_is_checked() {
        let f = Fence::new(None, Duration::from_secs(40), LeaseEpoch::default());
        assert_eq!(f.fence_after(), Duration::from_secs(40));
        f.set_grace(Duration::from_secs(20));
        assert_eq!(f.fence_after(), Duration::from_secs(15));
        assert_eq!(f.state(), FenceState::Holding);
        let f = fence(30);
        f.set_grace(Duration::from_secs(20));
        assert_eq!(
            f.state(),
            FenceState::Misconfigured(
                "--fence-after 30s must be shorter than the control plane's \
                 --node-monitor-grace-period 20s: the control plane could declare this node dead \
                 and replace its pods while they still run here"
                    .into()
            )
        );
    }

    #[test]
    fn the_epoch_is_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let e = LeaseEpoch::load(dir.path());
        assert_eq!(e.get(), 0);
        e.set(3);
        assert_eq!(LeaseEpoch::load(dir.path()).get(), 3);
    }
}
