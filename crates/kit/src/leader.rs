//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`
//! does it, so several instances can run and exactly one acts. Used by the scheduler and by
//! the binary for the controller manager: wrap the work in [`LeaderElector::run`].
//!
//! # States
//!
//! ```text
//!             acquire succeeded                      renew failed for renew_deadline,
//!  Candidate ───────────────────▶ Leader ──────────▶ or the lease shows another holder
//!     ▲  every retry_period        │  renew every     │  (work cancelled and awaited)
//!     │  (lease held and fresh)    │  retry_period    │
//!     └────────────────────────────┴──────────────────┘
//!                                   │ shutdown: work cancelled and awaited, lease released
//!                                   ▼
//!                                 Stopped
//! ```
//!
//! # Rules
//! * A lease is *held* by someone else while `holderIdentity` is non-empty and the record has
//!   not changed for `leaseDurationSeconds`, measured on **our own monotonic clock from when we
//!   first saw that record** (client-go's `observedTime`), so wall-clock skew between
//!   instances does not matter.
//! * Every write is a `replace` carrying the `resourceVersion` we read (or a `create` that
//!   fails if the lease exists): two candidates can never both win the same term; the loser
//!   gets a conflict and stays a candidate.
//! * Taking over from another holder sets `acquireTime` and increments `leaseTransitions`;
//!   renewing keeps them and moves `renewTime`.
//! * The leader renews every `retry_period`; if it cannot renew within `renew_deadline` of
//!   the last success it stops leading *before* the lease can expire for others
//!   (`renew_deadline < lease_duration`).
//! * On shutdown the leader releases the lease (empty holder, duration 1 s) so a standby
//!   takes over after one retry period instead of a full lease duration.
//!
//! The decision itself is the pure function [`decide`]; the I/O sits behind [`LeaseClient`]
//! with [`KubeLeaseClient`] for the API and a recording fake in the tests.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::WallClock;

/// Settings of one election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// Lease name (the scheduler uses `kube-scheduler`).
    pub lease_name: String,
    /// Lease namespace (default `kube-system`).
    pub lease_namespace: String,
    /// This instance's identity (unique per process).
    pub identity: String,
    /// How long a lease stays valid without renewal (default 15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up (default 10 s).
    pub renew_deadline: Duration,
    /// Interval between acquire/renew attempts (default 2 s).
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Upstream defaults: namespace `kube-system`, 15 s / 10 s / 2 s.
    pub fn new(lease_name: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaderElectionConfig {
            lease_name: lease_name.into(),
            lease_namespace: "kube-system".to_owned(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks the timings: `retry_period < renew_deadline < lease_duration`, the period
    /// positive (the leader must stop leading before its lease can expire for others).
    pub fn validate(&self) -> Result<(), LeaderError> {
        if self.renew_deadline >= self.lease_duration {
            return Err(LeaderError::Config(
                "renew_deadline must be shorter than lease_duration",
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(LeaderError::Config(
                "retry_period must be positive and shorter than renew_deadline",
            ));
        }
        Ok(())
    }
}

/// Errors of the lease API.
#[derive(Debug, Error)]
pub enum LeaderError {
    /// Someone else wrote the lease first (409 on create or replace).
    #[error("lease {name} was changed concurrently")]
    Conflict {
        /// Lease name.
        name: String,
    },
    /// Any other API failure.
    #[error("lease {name}: {source}")]
    Api {
        /// Lease name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A failure injected by a fake or reported by a non-kube backend.
    #[error("lease {name}: {message}")]
    Other {
        /// Lease name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The configuration is unusable.
    #[error("invalid leader election config: {0}")]
    Config(&'static str),
}

impl LeaderError {
    /// True for a lost write race (retrying later is the answer).
    pub fn is_conflict(&self) -> bool {
        matches!(self, LeaderError::Conflict { .. })
    }
}

/// The lease I/O the elector needs.
pub trait LeaseClient: Send + Sync + 'static {
    /// Reads the lease (`None` if it does not exist).
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, LeaderError>> + Send;
    /// Creates the lease; [`LeaderError::Conflict`] if it exists.
    fn create(&self, lease: Lease) -> impl Future<Output = Result<Lease, LeaderError>> + Send;
    /// Replaces the lease, fenced by `lease.metadata.resourceVersion`;
    /// [`LeaderError::Conflict`] if it changed.
    fn replace(&self, lease: Lease) -> impl Future<Output = Result<Lease, LeaderError>> + Send;
}

/// [`LeaseClient`] over the Kubernetes API.
#[derive(Clone)]
pub struct KubeLeaseClient {
    api: Api<Lease>,
    name: String,
}

impl KubeLeaseClient {
    /// A client for lease `name` in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        KubeLeaseClient {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
        }
    }

    fn map_err(&self, e: kube::Error) -> LeaderError {
        match &e {
            kube::Error::Api(s) if s.code == 409 => LeaderError::Conflict {
                name: self.name.clone(),
            },
            _ => LeaderError::Api {
                name: self.name.clone(),
                source: e,
            },
        }
    }
}

impl LeaseClient for KubeLeaseClient {
    async fn get(&self) -> Result<Option<Lease>, LeaderError> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn create(&self, lease: Lease) -> Result<Lease, LeaderError> {
        self.api
            .create(&PostParams::default(), &lease)
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn replace(&self, lease: Lease) -> Result<Lease, LeaderError> {
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.map_err(e))
    }
}

/// What one acquire/renew attempt should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// No lease exists: create this one.
    Create(LeaseSpec),
    /// Write this spec over the observed lease.
    Update(LeaseSpec),
    /// Another holder's lease is still valid.
    HeldByOther {
        /// The holder.
        holder: String,
    },
}

fn duration_secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// The pure acquire-or-renew decision. `observed_at` is when (on our monotonic clock) the
/// current record was first seen unchanged.
pub fn decide(
    observed: Option<&LeaseSpec>,
    observed_at: Instant,
    now: Instant,
    wall_now: jiff::Timestamp,
    identity: &str,
    lease_duration: Duration,
) -> Attempt {
    let stamp = Some(MicroTime(wall_now));
    let Some(old) = observed else {
        return Attempt::Create(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(duration_secs(lease_duration)),
            acquire_time: stamp.clone(),
            renew_time: stamp,
            lease_transitions: Some(0),
            ..Default::default()
        });
    };
    let holder = old.holder_identity.as_deref().unwrap_or("");
    let is_me = holder == identity;
    if !holder.is_empty() && !is_me {
        let valid_for = old
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(lease_duration);
        if observed_at + valid_for > now {
            return Attempt::HeldByOther {
                holder: holder.to_owned(),
            };
        }
    }
    let transitions = old.lease_transitions.unwrap_or(0);
    Attempt::Update(LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(duration_secs(lease_duration)),
        acquire_time: if is_me {
            old.acquire_time.clone()
        } else {
            stamp.clone()
        },
        renew_time: stamp,
        lease_transitions: Some(if is_me {
            transitions
        } else {
            transitions.saturating_add(1)
        }),
        ..old.clone()
    })
}

/// Runs work only while holding the lease. See the module docs.
pub struct LeaderElector<C: LeaseClient = KubeLeaseClient> {
    client: C,
    config: LeaderElectionConfig,
    clock: WallClock,
    observed: Option<Lease>,
    observed_at: Instant,
    leading: watch::Sender<bool>,
}

impl LeaderElector<KubeLeaseClient> {
    /// An elector over the Kubernetes API with the real wall clock.
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> Self {
        let leases = KubeLeaseClient::new(client, &config.lease_namespace, &config.lease_name);
        Self::with_client(leases, config, WallClock::system())
    }
}

impl<C: LeaseClient> LeaderElector<C> {
    /// An elector over any [`LeaseClient`] and wall clock.
    pub fn with_client(client: C, config: LeaderElectionConfig, clock: WallClock) -> Self {
        LeaderElector {
            client,
            config,
            clock,
            observed: None,
            observed_at: Instant::now(),
            leading: watch::channel(false).0,
        }
    }

    /// Follows whether this instance currently leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    fn observe(&mut self, lease: Option<Lease>) {
        let changed = match (&self.observed, &lease) {
            // Any write moves the resourceVersion, even one that left the spec equal.
            (Some(a), Some(b)) => {
                a.spec != b.spec || a.metadata.resource_version != b.metadata.resource_version
            }
            (None, None) => false,
            _ => true,
        };
        if changed {
            self.observed_at = Instant::now();
        }
        self.observed = lease;
    }

    /// One acquire-or-renew attempt. `Ok(true)`: we hold the lease now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let current = self.client.get().await?;
        self.observe(current);
        let attempt = decide(
            self.observed.as_ref().and_then(|l| l.spec.as_ref()),
            self.observed_at,
            Instant::now(),
            self.clock.timestamp(),
            &self.config.identity,
            self.config.lease_duration,
        );
        let written = match attempt {
            Attempt::HeldByOther { .. } => return Ok(false),
            Attempt::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.lease_name.clone()),
                        namespace: Some(self.config.lease_namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.client.create(lease).await?
            }
            Attempt::Update(spec) => {
                let mut lease = self.observed.clone().unwrap_or_default();
                lease.spec = Some(spec);
                self.client.replace(lease).await?
            }
        };
        self.observed = Some(written);
        self.observed_at = Instant::now();
        Ok(true)
    }

    async fn release(&mut self) {
        let Some(mut lease) = self.observed.clone() else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let now = Some(MicroTime(self.clock.timestamp()));
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = now.clone();
        spec.acquire_time = now;
        match self.client.replace(lease).await {
            Ok(l) => self.observed = Some(l),
            Err(e) => {
                tracing::warn!(error = %e, lease = %self.config.lease_name, "releasing lease failed")
            }
        }
    }

    fn set_leading(&self, v: bool) {
        self.leading.send_replace(v);
    }

    /// Campaigns until `shutdown`; while leading, runs `lead(token)` where `token` is
    /// cancelled when leadership is lost or on shutdown (the work is awaited before the next
    /// campaign or the release). Work that ends on its own while leading ends the election
    /// (the lease is released).
    pub async fn run<F, Fut>(
        &mut self,
        shutdown: CancellationToken,
        mut lead: F,
    ) -> Result<(), LeaderError>
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        let cfg = self.config.clone();
        cfg.validate()?;
        loop {
            // Candidate.
            loop {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                match self.try_acquire_or_renew().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) if e.is_conflict() => {}
                    Err(e) => tracing::debug!(error = %e, "acquiring lease failed"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(cfg.retry_period) => {}
                }
            }
            tracing::info!(identity = %cfg.identity, lease = %cfg.lease_name, "became leader");
            self.set_leading(true);
            let token = shutdown.child_token();
            let work = lead(token.clone());
            let mut work = std::pin::pin!(work);
            let mut last_renew = Instant::now();
            let ended_on_its_own = loop {
                tokio::select! {
                    _ = &mut work => break true,
                    _ = tokio::time::sleep(cfg.retry_period) => {
                        if shutdown.is_cancelled() {
                            break false;
                        }
                        let left = (last_renew + cfg.renew_deadline).saturating_duration_since(Instant::now());
                        match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                            Ok(Ok(true)) => last_renew = Instant::now(),
                            Ok(Ok(false)) => {
                                tracing::warn!(identity = %cfg.identity, "lease taken by another instance");
                                break false;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "renewing lease failed");
                                if Instant::now() >= last_renew + cfg.renew_deadline {
                                    break false;
                                }
                            }
                            Err(_) => break false,
                        }
                    }
                    _ = shutdown.cancelled() => break false,
                }
            };
            token.cancel();
            if !ended_on_its_own {
                work.await;
            }
            self.set_leading(false);
            if shutdown.is_cancelled() || ended_on_its_own {
                self.release().await;
                return Ok(());
            }
            tracing::warn!(identity = %cfg.identity, lease = %cfg.lease_name, "lost leadership");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Mutex;

    fn ts(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(secs).unwrap()
    }

    fn spec(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: (!holder.is_empty()).then(|| holder.to_owned()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(ts(100))),
            renew_time: Some(MicroTime(ts(100))),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn decide_creates_a_missing_lease() {
        let now = Instant::now();
        let d = decide(None, now, now, ts(200), "me", Duration::from_secs(15));
        let Attempt::Create(s) = d else {
            panic!("{d:?}")
        };
        assert_eq!(s.holder_identity.as_deref(), Some("me"));
        assert_eq!(s.lease_duration_seconds, Some(15));
        assert_eq!(s.lease_transitions, Some(0));
        assert_eq!(s.acquire_time, Some(MicroTime(ts(200))));
    }

    #[tokio::test(start_paused = true)]
    async fn decide_respects_a_fresh_foreign_lease_by_local_observation() {
        let seen = Instant::now();
        let other = spec("other", 3);
        // `after` seconds after we first saw the record unchanged.
        let at = |after: u64| {
            let now = seen + Duration::from_secs(after);
            decide(
                Some(&other),
                seen,
                now,
                ts(999),
                "me",
                Duration::from_secs(15),
            )
        };
        assert_eq!(
            at(14),
            Attempt::HeldByOther {
                holder: "other".into()
            }
        );
        // Expired on our clock, whatever its renewTime says: take over.
        let d = at(15);
        let Attempt::Update(s) = d else {
            panic!("{d:?}")
        };
        assert_eq!(s.holder_identity.as_deref(), Some("me"));
        assert_eq!(s.lease_transitions, Some(4));
        assert_eq!(s.acquire_time, Some(MicroTime(ts(999))));
    }

    /// What "me" writes over `observed` at wall time 300, seen unchanged just now.
    fn update_at_300(observed: &LeaseSpec) -> LeaseSpec {
        let now = Instant::now();
        let d = decide(
            Some(observed),
            now,
            now,
            ts(300),
            "me",
            Duration::from_secs(15),
        );
        let Attempt::Update(s) = d else {
            panic!("{d:?}")
        };
        s
    }

    #[tokio::test(start_paused = true)]
    async fn decide_renews_keeping_acquire_time_and_transitions() {
        let s = update_at_300(&spec("me", 2));
        assert_eq!(s.acquire_time, Some(MicroTime(ts(100))));
        assert_eq!(s.renew_time, Some(MicroTime(ts(300))));
        assert_eq!(s.lease_transitions, Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn decide_takes_a_released_lease_at_once() {
        let s = update_at_300(&spec("", 5));
        assert_eq!(s.lease_transitions, Some(6));
    }

    /// A recording, fenced in-memory lease store shared by several electors.
    #[derive(Clone, Default)]
    struct FakeLeases {
        state: Arc<Mutex<FakeState>>,
    }

    #[derive(Default)]
    struct FakeState {
        lease: Option<Lease>,
        rv: u64,
        calls: Vec<String>,
        fail: bool,
    }

    impl FakeLeases {
        /// Records the call and fails it if failures are injected.
        fn enter(&self, call: String) -> Result<std::sync::MutexGuard<'_, FakeState>, LeaderError> {
            let mut s = self.state.lock().unwrap();
            s.calls.push(call);
            if s.fail {
                return Err(LeaderError::Other {
                    name: "l".into(),
                    message: "injected".into(),
                });
            }
            Ok(s)
        }

        fn holder(&self) -> Option<String> {
            let s = self.state.lock().unwrap();
            s.lease
                .as_ref()
                .and_then(|l| l.spec.as_ref()?.holder_identity.clone())
        }
        fn transitions(&self) -> i32 {
            let s = self.state.lock().unwrap();
            s.lease
                .as_ref()
                .and_then(|l| l.spec.as_ref()?.lease_transitions)
                .unwrap_or(-1)
        }
        fn set_fail(&self, fail: bool) {
            self.state.lock().unwrap().fail = fail;
        }
        fn calls(&self) -> Vec<String> {
            self.state.lock().unwrap().calls.clone()
        }
    }

    fn holder(lease: &Lease) -> String {
        lease
            .spec
            .as_ref()
            .and_then(|x| x.holder_identity.clone())
            .unwrap_or_default()
    }

    impl LeaseClient for FakeLeases {
        async fn get(&self) -> Result<Option<Lease>, LeaderError> {
            let s = self.enter("get".into())?;
            Ok(s.lease.clone())
        }
        async fn create(&self, mut lease: Lease) -> Result<Lease, LeaderError> {
            let mut s = self.enter(format!("create {}", holder(&lease)))?;
            if s.lease.is_some() {
                return Err(LeaderError::Conflict { name: "l".into() });
            }
            s.rv += 1;
            lease.metadata.resource_version = Some(s.rv.to_string());
            s.lease = Some(lease.clone());
            Ok(lease)
        }
        async fn replace(&self, mut lease: Lease) -> Result<Lease, LeaderError> {
            let mut s = self.enter(format!("replace {}", holder(&lease)))?;
            if lease.metadata.resource_version != Some(s.rv.to_string()) {
                return Err(LeaderError::Conflict { name: "l".into() });
            }
            s.rv += 1;
            lease.metadata.resource_version = Some(s.rv.to_string());
            s.lease = Some(lease.clone());
            Ok(lease)
        }
    }

    fn fixed_clock() -> WallClock {
        WallClock::from_timestamp_fn(|| ts(1_000))
    }

    fn elector(leases: &FakeLeases, id: &str) -> LeaderElector<FakeLeases> {
        LeaderElector::with_client(
            leases.clone(),
            LeaderElectionConfig::new("sched", id),
            fixed_clock(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn fenced_writes_let_only_one_candidate_win() {
        let leases = FakeLeases::default();
        let mut a = elector(&leases, "a");
        let mut b = elector(&leases, "b");
        // Both read "no lease"; only the first create wins.
        assert!(a.try_acquire_or_renew().await.unwrap());
        assert!(!b.try_acquire_or_renew().await.unwrap());
        assert_eq!(leases.holder().as_deref(), Some("a"));
        // A stale replace (old resourceVersion) is rejected.
        let mut stale = a.observed.clone().unwrap();
        stale.metadata.resource_version = Some("0".into());
        assert!(leases.replace(stale).await.unwrap_err().is_conflict());
    }

    #[tokio::test(start_paused = true)]
    async fn one_leader_standby_takes_over_after_release() {
        let leases = FakeLeases::default();
        let shutdown_a = CancellationToken::new();
        let shutdown_b = CancellationToken::new();
        let active = Arc::new(Mutex::new(Vec::<String>::new()));
        let run = |id: &'static str, shutdown: CancellationToken| {
            let leases = leases.clone();
            let active = active.clone();
            tokio::spawn(async move {
                let mut e = elector(&leases, id);
                e.run(shutdown, |token| {
                    let active = active.clone();
                    async move {
                        active.lock().unwrap().push(format!("+{id}"));
                        token.cancelled().await;
                        active.lock().unwrap().push(format!("-{id}"));
                    }
                })
                .await
            })
        };
        let a = run("a", shutdown_a.clone());
        tokio::time::sleep(Duration::from_millis(10)).await;
        let b = run("b", shutdown_b.clone());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(*active.lock().unwrap(), vec!["+a"]);
        assert_eq!(leases.holder().as_deref(), Some("a"));
        shutdown_a.cancel();
        a.await.unwrap().unwrap();
        assert_eq!(leases.holder(), None, "released on shutdown");
        // The standby notices within one retry period.
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert_eq!(*active.lock().unwrap(), vec!["+a", "-a", "+b"]);
        assert_eq!(leases.holder().as_deref(), Some("b"));
        assert_eq!(leases.transitions(), 1);
        shutdown_b.cancel();
        b.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn crashed_leader_is_replaced_after_the_lease_duration() {
        let leases = FakeLeases::default();
        let mut a = elector(&leases, "a");
        assert!(a.try_acquire_or_renew().await.unwrap());
        drop(a); // crashed: never renews, never releases
        let shutdown = CancellationToken::new();
        let leases_b = leases.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let s = shutdown.clone();
        let start = Instant::now();
        let b = tokio::spawn(async move {
            let mut e = elector(&leases_b, "b");
            e.run(s, |token| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(Instant::now());
                    token.cancelled().await;
                }
            })
            .await
        });
        let became = rx.recv().await.unwrap();
        let waited = became - start;
        assert!(
            waited >= Duration::from_secs(15) && waited <= Duration::from_secs(18),
            "{waited:?}"
        );
        shutdown.cancel();
        b.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn leader_stops_working_when_it_cannot_renew() {
        let leases = FakeLeases::default();
        let shutdown = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let l2 = leases.clone();
        let s = shutdown.clone();
        let task = tokio::spawn(async move {
            let mut e = elector(&l2, "a");
            e.run(s, |token| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(("start", Instant::now()));
                    token.cancelled().await;
                    let _ = tx.send(("stop", Instant::now()));
                }
            })
            .await
        });
        let (_, started) = rx.recv().await.unwrap();
        leases.set_fail(true);
        let (what, stopped) = rx.recv().await.unwrap();
        assert_eq!(what, "stop");
        let after = stopped - started;
        // Last renewal at most one retry period before the failure; gives up within the
        // renew deadline, before the 15 s lease could expire for others.
        assert!(
            after <= Duration::from_secs(12) && after >= Duration::from_secs(8),
            "{after:?}"
        );
        leases.set_fail(false);
        // Back as a candidate it re-acquires its own lease.
        let (what, _) = rx.recv().await.unwrap();
        assert_eq!(what, "start");
        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert!(leases.calls().iter().any(|c| c == "replace a"));
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_timings_are_rejected() {
        let leases = FakeLeases::default();
        let mut cfg = LeaderElectionConfig::new("x", "a");
        cfg.renew_deadline = Duration::from_secs(20);
        let mut e = LeaderElector::with_client(leases, cfg, fixed_clock());
        let r = e.run(CancellationToken::new(), |_| async {}).await;
        assert!(matches!(r, Err(LeaderError::Config(_))));
    }
}
