//! Serving an [`ApiServer`]: the axum router (every request goes to [`crate::rest::dispatch`]),
//! the in-process `kube::Client` over that router, and HTTPS on a listener.
//!
//! Lifecycle of [`ApiServer::serve`]: serve HTTPS until its shutdown future completes; then
//! stop accepting, ask open connections to finish and abort what is left (watches) after a
//! short grace.
//!
//! # A connection's life
//!
//! ```text
//! accepted ── unauthenticated ──(a request with a valid token)──▶ authenticated
//!    │              │ TLS handshake within handshake_timeout
//!    │              │ headers within header_read_timeout of their first byte,
//!    │              │ bodies within body_read_timeout
//!    │              └─ more than max_unauthenticated such connections: the oldest is closed
//!    └─ no request in flight for idle_timeout (a watch or a log stream is in flight while
//!       its body streams): closed
//! ```
//!
//! Between two requests on a kept-alive HTTP/1.1 connection only the idle timeout runs; the
//! header timeout starts with the next request's first byte, as Go's server (upstream's)
//! separates `IdleTimeout` from `ReadHeaderTimeout`. (hyper's own header timeout starts as
//! soon as the connection waits for a request, which would close every kept-alive
//! connection after the header timeout: a client's pool reuses connections for 90 s, and a
//! request written as the server closes its connection gets a TCP reset.)
//!
//! A client that opens connections and sends nothing, or half a request, or never a valid
//! token, cannot keep more than `max_unauthenticated` descriptors for more than a few
//! seconds; a user with a token that sends slow bodies is bounded by its flow's share of its
//! priority level's seats ([`crate::flowcontrol`]) and the body timeout.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::server::{ApiServer, ApiServerError};

impl ApiServer {
    /// The axum router serving the whole API (authentication included).
    pub fn router(&self) -> axum::Router {
        let srv = self.clone();
        axum::Router::new().fallback(move |req: http::Request<axum::body::Body>| {
            let srv = srv.clone();
            async move { crate::rest::dispatch(srv, req).await }
        })
    }

    /// A `kube::Client` whose requests go straight into the router (same authentication and
    /// authorization as over the network), authenticated with `token`.
    pub fn in_process_client(&self, token: &str) -> kube::Client {
        let router = self.router();
        let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .unwrap_or_else(|_| http::HeaderValue::from_static("Bearer invalid"));
        let svc = tower::ServiceBuilder::new()
            .map_request(move |mut req: http::Request<kube::client::Body>| {
                req.headers_mut()
                    .insert(http::header::AUTHORIZATION, value.clone());
                req
            })
            .service(router);
        kube::Client::new(svc, "default")
    }

    /// Serves HTTPS on `listener` until `shutdown` completes, within the
    /// [`ConnectionLimits`](crate::ConnectionLimits) of the configuration.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ApiServerError> {
        self.serve_tls(listener, self.tls().server_config()?, shutdown)
            .await
    }

    /// [`ApiServer::serve`] on a further address, with a serving certificate that also names
    /// `extra_sans` (say, an address known only once the node has its pod network).
    pub async fn serve_also(
        &self,
        listener: TcpListener,
        extra_sans: &[String],
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ApiServerError> {
        let mut sans = self.config().extra_sans.clone();
        sans.extend(extra_sans.iter().cloned());
        let tls = self.tls().with_more_sans(&self.config().data_dir, &sans)?;
        self.serve_tls(listener, tls.server_config()?, shutdown)
            .await
    }

    async fn serve_tls(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ApiServerError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let router = self.router();
        let limits = self.config().connections;
        let stop = CancellationToken::new();
        let unauthenticated = Arc::new(Unauthenticated::new(limits.max_unauthenticated));
        let mut conns = JoinSet::new();
        let mut next_id: u64 = 0;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => {
                    let (tcp, _) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of descriptors, most likely: let connections finish.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    next_id += 1;
                    let conn = Connection {
                        id: next_id,
                        srv: self.clone(),
                        router: router.clone(),
                        acceptor: acceptor.clone(),
                        limits,
                        stop: stop.clone(),
                        evicted: unauthenticated.admit(next_id),
                        unauthenticated: unauthenticated.clone(),
                        activity: Arc::new(Activity::default()),
                    };
                    conns.spawn(conn.run(tcp));
                }
            }
        }
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        conns.abort_all();
        while conns.join_next().await.is_some() {}
        Ok(())
    }
}

/// The connections that have not authenticated yet, oldest first; admitting one past the
/// limit closes the oldest.
struct Unauthenticated {
    max: usize,
    queue: Mutex<VecDeque<(u64, CancellationToken)>>,
}

impl Unauthenticated {
    fn new(max: usize) -> Unauthenticated {
        Unauthenticated {
            max: max.max(1),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// Registers connection `id`; the token is cancelled if it is evicted.
    fn admit(&self, id: u64) -> CancellationToken {
        let token = CancellationToken::new();
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back((id, token.clone()));
        while q.len() > self.max {
            if let Some((_, oldest)) = q.pop_front() {
                oldest.cancel();
            }
        }
        token
    }

    /// Connection `id` authenticated or ended.
    fn release(&self, id: u64) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = q.iter().position(|(i, _)| *i == id) {
            q.remove(at);
        }
    }
}

/// What a connection is doing, for the idle and header timeouts.
struct Activity {
    /// Requests whose response has not been fully sent.
    in_flight: AtomicUsize,
    /// Bumped whenever a request starts or a response ends.
    events: AtomicU64,
    authenticated: AtomicBool,
    /// When the first byte after the last request's start arrived with no request in flight
    /// (milliseconds since `started`, at least 1), or 0: the headers being read.
    headers_since_ms: AtomicU64,
    started: tokio::time::Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            events: AtomicU64::new(0),
            authenticated: AtomicBool::new(false),
            headers_since_ms: AtomicU64::new(0),
            started: tokio::time::Instant::now(),
        }
    }
}

impl Activity {
    /// Milliseconds since the connection was accepted, at least 1.
    fn millis(&self) -> u64 {
        (self.started.elapsed().as_millis() as u64).max(1)
    }
}

/// The connection's stream, noting when a request's first bytes arrive (for the header
/// timeout of HTTP/1.1; HTTP/2 frames such as pings arrive on idle connections).
struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
    headers_timed: bool,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.headers_timed
            && buf.filled().len() > before
            && self.activity.in_flight.load(Ordering::Acquire) == 0
        {
            let now = self.activity.millis();
            let _ = self.activity.headers_since_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct Connection {
    id: u64,
    srv: ApiServer,
    router: axum::Router,
    acceptor: tokio_rustls::TlsAcceptor,
    limits: crate::ConnectionLimits,
    stop: CancellationToken,
    evicted: CancellationToken,
    unauthenticated: Arc<Unauthenticated>,
    activity: Arc<Activity>,
}

impl Connection {
    async fn run(self, tcp: tokio::net::TcpStream) {
        let id = self.id;
        let unauthenticated = self.unauthenticated.clone();
        self.serve(tcp).await;
        unauthenticated.release(id);
    }

    async fn serve(self, tcp: tokio::net::TcpStream) {
        let tls = tokio::select! {
            r = tokio::time::timeout(self.limits.handshake_timeout, self.acceptor.accept(tcp)) => match r {
                Ok(Ok(s)) => s,
                _ => return,
            },
            _ = self.evicted.cancelled() => return,
        };
        // The header timeout is enforced below, from the first byte of a request's headers.
        let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        if !http2 {
            // The first request's headers are due from the end of the handshake.
            let now = self.activity.millis();
            self.activity.headers_since_ms.store(now, Ordering::Relaxed);
        }
        let tls = Counted {
            inner: tls,
            activity: self.activity.clone(),
            headers_timed: !http2,
        };
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let service = tower::service_fn({
            let router = self.router.clone();
            let srv = self.srv.clone();
            let activity = self.activity.clone();
            let unauthenticated = self.unauthenticated.clone();
            let id = self.id;
            move |req: http::Request<hyper::body::Incoming>| {
                let mut router = router.clone();
                let activity = activity.clone();
                let srv = srv.clone();
                let unauthenticated = unauthenticated.clone();
                activity.in_flight.fetch_add(1, Ordering::AcqRel);
                activity.events.fetch_add(1, Ordering::Relaxed);
                activity.headers_since_ms.store(0, Ordering::Relaxed);
                let guard = InFlight(activity);
                async move {
                    use tower::Service as _;
                    if !guard.0.authenticated.load(Ordering::Relaxed)
                        && let Some(t) = bearer(req.headers())
                        && srv.authenticate(t).await.is_some()
                    {
                        guard.0.authenticated.store(true, Ordering::Relaxed);
                        unauthenticated.release(id);
                    }
                    let req = req.map(axum::body::Body::new);
                    let resp = router.call(req).await?;
                    Ok::<_, std::convert::Infallible>(resp.map(|body| {
                        axum::body::Body::new(Tracked {
                            body,
                            _guard: guard,
                        })
                    }))
                }
            }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(service));
        tokio::pin!(conn);
        let idle = self.limits.idle_timeout;
        let headers = self.limits.header_read_timeout;
        let mut last_seen = self.activity.events.load(Ordering::Relaxed);
        let mut quiet_since = tokio::time::Instant::now();
        let mut tick =
            tokio::time::interval((idle.min(headers) / 4).max(Duration::from_millis(10)));
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = self.evicted.cancelled(), if !self.activity.authenticated.load(Ordering::Relaxed) => {
                    // Too many connections without a valid token: this is the oldest.
                    return;
                }
                _ = tick.tick() => {
                    let seen = self.activity.events.load(Ordering::Relaxed);
                    let in_flight = self.activity.in_flight.load(Ordering::Acquire);
                    let since = self.activity.headers_since_ms.load(Ordering::Relaxed);
                    if in_flight == 0
                        && since != 0
                        && self.activity.millis() >= since.saturating_add(headers.as_millis() as u64)
                    {
                        // A request's headers began and did not end in time (hyper's own
                        // header timeout also drops the connection).
                        return;
                    }
                    if seen != last_seen || in_flight > 0 {
                        last_seen = seen;
                        quiet_since = tokio::time::Instant::now();
                    } else if quiet_since.elapsed() >= idle {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
                        return;
                    }
                }
                _ = self.stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
                    return;
                }
            }
        }
    }
}

/// The bearer token of a request, if any.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Counts a request as in flight until its response body is done (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// A response body that holds its request's [`InFlight`] until it ends.
struct Tracked {
    body: axum::body::Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
