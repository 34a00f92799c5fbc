//! [`ApiServer`]: construction, tokens, the in-flight request limit and the background
//! compaction task. How it is served (the axum router, HTTPS, the in-process client) is in
//! [`crate::serve`], above [`crate::rest`], which uses this handle.
//!
//! Lifecycle: [`ApiServer::new`] loads (or creates) TLS material and the token file in the
//! data dir, creates the initial namespaces, resumes namespace finalization and starts the
//! compaction task. Clones share one server. When the last clone is dropped, background
//! tasks are cancelled. [`ApiServer::serve`] serves HTTPS until its shutdown future
//! completes; then it stops accepting, asks open connections to finish and aborts what is
//! left (watches) after a short grace.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podvisor_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{
    Authenticator, AuthenticatorChain, Authorizer, Decision, RequestAttributes, TokenError,
    TokenFile, TokenReviewed, UserInfo,
};
use crate::error::ApiError;
use podvisor_kit::WallClock;

use crate::ops::Core;
use crate::serviceaccount::ServiceAccounts;
use crate::storage::Storage;
use crate::tls::{TlsError, TlsMaterial};

/// Configuration of an [`ApiServer`].
#[derive(Clone)]
pub struct ApiServerConfig {
    /// Where the CA, serving certificate and token file live.
    pub data_dir: PathBuf,
    /// Extra SANs (IP addresses or DNS names) for the serving certificate.
    pub extra_sans: Vec<String>,
    /// The address clients use (reported by legacy `/api` discovery).
    pub advertise_address: String,
    /// How often the compaction task runs.
    pub compaction_interval: Duration,
    /// Keep at least this many revisions of history.
    pub compaction_keep_revisions: i64,
    /// Keep at least this much time of history.
    pub compaction_keep_duration: Duration,
    /// The wall clock (default: the system clock).
    pub clock: Option<WallClock>,
    /// The authorizer (default: [`crate::auth::default_authorizer`]).
    pub authorizer: Option<Arc<dyn Authorizer>>,
    /// The audit log (none: off).
    pub audit: Option<crate::audit::AuditConfig>,
    /// Authenticators asked after the static token file, in order.
    pub authenticators: Vec<Arc<dyn Authenticator>>,
    /// Most short requests (everything but watches and followed logs) served at once,
    /// divided between priority levels and, within a level, between users by fair queuing;
    /// `system:masters` is exempt (see [`crate::flowcontrol`]).
    pub max_requests_in_flight: usize,
    /// How long a request waits in its queue for a seat before 429 TooManyRequests with
    /// `Retry-After: 1` (upstream: a quarter of the request timeout, 15 s).
    pub request_queue_wait: Duration,
    /// Connection limits of [`ApiServer::serve`].
    pub connections: ConnectionLimits,
    /// The Service cluster IP and node port ranges.
    pub service_network: crate::services::ServiceNetwork,
    /// Where pods reach this server: the `kubernetes` Service's endpoint (default: the
    /// advertise address). None of the two parsing as `IP:PORT` leaves the endpoints alone.
    pub kubernetes_endpoint: Option<std::net::SocketAddr>,
    /// Record pod timelines (`crate::timeline`); false: the server records none (nodes'
    /// and the scheduler's appends are still accepted).
    pub timeline: bool,
}

/// How long the server waits for clients, and how many connections that have not yet
/// authenticated it keeps (see [`crate::serve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The TLS handshake must end within this.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this (also the wait for the next request on a
    /// kept-alive HTTP/1.1 connection).
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Connections that have not sent an authenticated request yet, at most; past it the
    /// oldest of them is closed.
    pub max_unauthenticated: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            max_unauthenticated: 256,
        }
    }
}

impl ApiServerConfig {
    /// A configuration with defaults and the given data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> ApiServerConfig {
        ApiServerConfig {
            data_dir: data_dir.into(),
            extra_sans: Vec::new(),
            advertise_address: "127.0.0.1:6443".into(),
            compaction_interval: Duration::from_secs(60),
            compaction_keep_revisions: 10_000,
            compaction_keep_duration: Duration::from_secs(300),
            clock: None,
            authorizer: None,
            authenticators: Vec::new(),
            audit: None,
            max_requests_in_flight: 600,
            request_queue_wait: crate::flowcontrol::DEFAULT_QUEUE_WAIT,
            connections: ConnectionLimits::default(),
            service_network: crate::services::ServiceNetwork::default(),
            kubernetes_endpoint: None,
            timeline: true,
        }
    }
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig::new("podvisor-data")
    }
}

impl std::fmt::Debug for ApiServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerConfig")
            .field("data_dir", &self.data_dir)
            .field("extra_sans", &self.extra_sans)
            .field("advertise_address", &self.advertise_address)
            .field("compaction_interval", &self.compaction_interval)
            .field("compaction_keep_revisions", &self.compaction_keep_revisions)
            .field("compaction_keep_duration", &self.compaction_keep_duration)
            .finish_non_exhaustive()
    }
}

/// Errors starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// TLS material.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The token file.
    #[error("tokens: {0}")]
    Tokens(#[from] TokenError),
    /// The service-account signing key.
    #[error("{0}")]
    ServiceAccountKey(#[from] crate::serviceaccount::KeyError),
    /// The store or initial objects.
    #[error("initialization: {0}")]
    Init(#[from] ApiError),
    /// Listener I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

struct Inner {
    core: Core,
    config: ApiServerConfig,
    tokens: Arc<TokenFile>,
    service_accounts: Arc<ServiceAccounts>,
    authenticators: AuthenticatorChain,
    authorizer: Arc<dyn Authorizer>,
    rbac: Arc<crate::auth::rbac::RbacAuthorizer>,
    graph: Arc<crate::auth::NodeGraph>,
    audit: Option<Arc<crate::audit::AuditLog>>,
    tls: TlsMaterial,
    flow: Arc<crate::flowcontrol::FlowControl>,
    kubernetes_endpoint: tokio::sync::watch::Sender<Option<std::net::SocketAddr>>,
    _temp_dir: Option<tempfile::TempDir>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.core.cancel.cancel();
        self.core.tasks.close();
    }
}

/// The Kubernetes API server. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Creates a server on `store`.
    pub async fn new(
        store: Arc<dyn Store>,
        config: ApiServerConfig,
    ) -> Result<ApiServer, ApiServerError> {
        Self::build(store, config, None).await
    }

    pub(crate) async fn build(
        store: Arc<dyn Store>,
        config: ApiServerConfig,
        temp_dir: Option<tempfile::TempDir>,
    ) -> Result<ApiServer, ApiServerError> {
        let tls = TlsMaterial::load_or_generate(&config.data_dir, &config.extra_sans)?;
        let tokens = Arc::new(TokenFile::load_or_create(&config.data_dir)?);
        let service_accounts = Arc::new(ServiceAccounts::load_or_generate(&config.data_dir)?);
        let mut core = Core {
            storage: Storage::new(store.clone()),
            clock: config.clock.clone().unwrap_or_else(WallClock::system),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            services: config.service_network.clone(),
            timeline: podvisor_kit::timeline::TimelineRecorder::disabled(),
        };
        core.timeline = crate::timeline::start(&core, config.timeline);
        // The authenticator chain: the static token file, service-account tokens, then the
        // configured others.
        let mut authenticators = AuthenticatorChain::new(vec![
            tokens.clone(),
            Arc::new(crate::serviceaccount::TokenAuthenticator::new(
                service_accounts.clone(),
                core.clone(),
            )),
        ]);
        for a in &config.authenticators {
            authenticators.push(a.clone());
        }
        core.ensure_initial_namespaces().await?;
        core.ensure_initial_objects().await?;
        let rbac = Arc::new(crate::auth::rbac::RbacAuthorizer::new());
        rbac.start(&core).await?;
        let graph = Arc::new(crate::auth::NodeGraph::default());
        graph.start(&core).await?;
        core.resume_namespace_finalizers().await?;
        core.repair_service_allocations().await?;
        core.tasks.spawn(repair_loop(core.clone()));
        let endpoint = config
            .kubernetes_endpoint
            .or_else(|| config.advertise_address.parse().ok());
        if let Some(endpoint) = endpoint {
            core.ensure_kubernetes_service(endpoint.port()).await?;
            core.reconcile_kubernetes_endpoints(Some(endpoint), None)
                .await?;
        }
        let (kubernetes_endpoint, endpoint_rx) = tokio::sync::watch::channel(endpoint);
        core.tasks.spawn(crate::services::kubernetes::run(
            core.clone(),
            endpoint_rx,
            core.cancel.clone(),
        ));
        let cancel = core.cancel.clone();
        let cfg = config.clone();
        core.tasks.spawn(compaction_loop(store, cfg, cancel));
        let authorizer = config.authorizer.clone().unwrap_or_else(|| {
            Arc::new(crate::auth::default_authorizer(graph.clone(), rbac.clone()))
        });
        let audit = match &config.audit {
            Some(a) => Some(Arc::new(crate::audit::AuditLog::open(a.clone())?)),
            None => None,
        };
        let flow = crate::flowcontrol::FlowControl::new(
            config.max_requests_in_flight,
            config.request_queue_wait,
        );
        Ok(ApiServer {
            inner: Arc::new(Inner {
                core,
                config,
                tokens,
                service_accounts,
                authenticators,
                authorizer,
                rbac,
                graph,
                audit,
                tls,
                flow,
                kubernetes_endpoint,
                _temp_dir: temp_dir,
            }),
        })
    }

    /// Publishes this server as `addr` in the `kubernetes` Service's endpoints from now on
    /// (replacing the address it published before), and makes the Service's target port
    /// `addr`'s port.
    pub async fn set_kubernetes_endpoint(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<(), ApiServerError> {
        self.inner
            .core
            .ensure_kubernetes_service(addr.port())
            .await?;
        self.inner.kubernetes_endpoint.send_replace(Some(addr));
        Ok(())
    }

    pub(crate) fn core(&self) -> &Core {
        &self.inner.core
    }

    /// The decision of the authorizer chain on `attrs` by `user`.
    pub fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes) -> Decision {
        self.inner.authorizer.authorize(user, attrs)
    }

    /// The audit log, when on.
    pub(crate) fn audit(&self) -> Option<Arc<crate::audit::AuditLog>> {
        self.inner.audit.clone()
    }

    /// The RBAC authorizer (its policy, escalation checks, rules of a user).
    pub fn rbac(&self) -> &crate::auth::rbac::RbacAuthorizer {
        &self.inner.rbac
    }

    /// Waits (at most `timeout`) until the authorizers' caches reflect every RBAC, pod and
    /// claim write made through this server.
    pub(crate) async fn authorizers_caught_up(&self, timeout: std::time::Duration) -> bool {
        let core = &self.inner.core;
        self.inner.rbac.caught_up(core, timeout).await
            && self.inner.graph.caught_up(core, timeout).await
    }

    /// The service-account token issuer.
    pub fn service_accounts(&self) -> &ServiceAccounts {
        &self.inner.service_accounts
    }

    /// The user a bearer token stands for (with `system:authenticated`), if any
    /// authenticator of the chain accepts it.
    pub async fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.inner.authenticators.authenticate(token).await
    }

    /// A TokenReview of `token` for `audiences` (none: the API server's own).
    pub async fn review_token(&self, token: &str, audiences: &[String]) -> TokenReviewed {
        let api = self.inner.service_accounts.api_audiences();
        let audiences = if audiences.is_empty() { api } else { audiences };
        self.inner
            .authenticators
            .review(token, audiences, api)
            .await
    }

    /// Waits for a seat for a short request of `user` (see [`crate::flowcontrol`]).
    pub(crate) async fn begin_request(
        &self,
        user: &UserInfo,
    ) -> Result<crate::flowcontrol::Slot, crate::flowcontrol::Rejected> {
        self.inner.flow.begin(user).await
    }

    /// Reads the token file again now (the binary calls this on SIGHUP; changes on disk are
    /// also picked up at the next request).
    pub fn reload_tokens(&self) -> Result<(), TokenError> {
        self.inner.tokens.reload()
    }

    pub(crate) fn tls(&self) -> &TlsMaterial {
        &self.inner.tls
    }

    pub(crate) fn advertise_address(&self) -> String {
        self.inner.config.advertise_address.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &ApiServerConfig {
        &self.inner.config
    }

    /// A token of the admin user (group `system:masters`).
    pub fn admin_token(&self) -> String {
        self.inner.tokens.admin_token().unwrap_or_default()
    }

    /// The token of node `node` (user `system:node:<node>`, group `system:nodes`), created if
    /// missing and persisted in the token file.
    pub fn ensure_node_token(&self, node: &str) -> Result<String, TokenError> {
        self.inner.tokens.ensure_node_token(node)
    }

    /// The token of node `node`'s Service proxy (user `system:kube-proxy`, bound to the
    /// `system:node-proxier` ClusterRole), created if missing and persisted in the token file.
    pub fn ensure_proxy_token(&self, node: &str) -> Result<String, TokenError> {
        self.inner.tokens.ensure_proxy_token(node)
    }

    /// The CA certificate (PEM) clients should trust.
    pub fn ca_pem(&self) -> String {
        self.inner.tls.ca_pem.clone()
    }
}

/// Repairs the Service allocations every [`crate::services::REPAIR_PERIOD`].
async fn repair_loop(core: Core) {
    let mut tick = tokio::time::interval(crate::services::REPAIR_PERIOD);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = core.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = core.repair_service_allocations().await {
            tracing::warn!(error = %e, "repairing service allocations");
        }
    }
}

/// Compacts the store so that at least `keep_revisions` revisions and `keep_duration` of
/// history remain.
async fn compaction_loop(store: Arc<dyn Store>, cfg: ApiServerConfig, cancel: CancellationToken) {
    let mut samples: VecDeque<(tokio::time::Instant, i64)> = VecDeque::new();
    let mut tick = tokio::time::interval(cfg.compaction_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(cur) = store.current_revision().await else {
            continue;
        };
        let now = tokio::time::Instant::now();
        samples.push_back((now, cur));
        while samples.len() > 1 && now.duration_since(samples[1].0) >= cfg.compaction_keep_duration
        {
            samples.pop_front();
        }
        let Some(&(t0, r0)) = samples.front() else {
            continue;
        };
        if now.duration_since(t0) < cfg.compaction_keep_duration {
            continue;
        }
        let target = (cur - cfg.compaction_keep_revisions).min(r0);
        let Ok(compacted) = store.compacted_revision().await else {
            continue;
        };
        if target > compacted
            && let Err(e) = store.compact(target).await
        {
            tracing::warn!(error = %e, target, "compaction failed");
        }
    }
}
