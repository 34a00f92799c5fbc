//! Slow and idle clients against the real HTTPS server on 127.0.0.1: half-sent requests,
//! connections that never authenticate, slow bodies from one user, idle keep-alives.

#![allow(clippy::disallowed_methods)] // the tests measure real time

use std::sync::Arc;
use std::time::{Duration, Instant};

use podvisor_apiserver::{ApiServer, ApiServerConfig, ConnectionLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Running {
    srv: ApiServer,
    port: u16,
    tls: tokio_rustls::TlsConnector,
    _serving: podvisor_apiserver::testing::Serving,
    _dir: tempfile::TempDir,
}

async fn start(limits: ConnectionLimits, max_in_flight: usize) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ApiServerConfig::new(dir.path());
    cfg.connections = limits;
    cfg.max_requests_in_flight = max_in_flight;
    cfg.request_queue_wait = Duration::from_secs(1);
    let srv = ApiServer::new(Arc::new(podvisor_store::MemoryStore::new()), cfg)
        .await
        .expect("server");
    let serving = podvisor_apiserver::testing::serve_on_loopback(srv.clone()).await;
    let port = serving.port;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    for c in CertificateDer::pem_slice_iter(srv.ca_pem().as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Running {
        srv,
        port,
        tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        _serving: serving,
        _dir: dir,
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

impl Running {
    /// A connection that sent the headers of a 1000-byte POST to `resource` in `default`
    /// and the first bytes of its body, and then nothing more.
    async fn slow_post(&self, resource: &str, token: &str) -> Tls {
        let mut s = self.tls().await;
        let head = format!(
            "POST /api/v1/namespaces/default/{resource} HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n{{\"metadata\":"
        );
        s.write_all(head.as_bytes()).await.expect("write");
        s
    }

    async fn tls(&self) -> Tls {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        self.tls.connect(name, tcp).await.expect("handshake")
    }

    /// A full GET on a fresh connection: the status code and the time it took.
    async fn get(&self, path: &str, token: &str) -> (u16, Duration) {
        let started = Instant::now();
        let mut s = self.tls().await;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        (status(&out), started.elapsed())
    }
}

fn status(reply: &[u8]) -> u16 {
    String::from_utf8_lossy(reply)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Waits until the server closes `s` (EOF or error); returns how long that took, or `None`
/// if it was still open after `within`.
async fn closed_within<S: AsyncReadExt + Unpin>(s: &mut S, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(started.elapsed()), s.read(&mut buf)).await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        handshake_timeout: Duration::from_millis(500),
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(600),
        max_unauthenticated: 32,
    }
}

/// Half a request line, and a TLS handshake that never finishes: both closed within their
/// timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_fast() {
    let r = start(limits(), 600).await;
    let mut s = r.tls().await;
    s.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthoriz")
        .await
        .expect("write");
    let took = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(2)), "{took:?}");
    let mut raw = TcpStream::connect(("127.0.0.1", r.port))
        .await
        .expect("tcp");
    raw.write_all(b"\x16\x03\x01").await.expect("write");
    let took = closed_within(&mut raw, Duration::from_secs(5)).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(2)), "{took:?}");
}

/// Many connections that never authenticate: past the cap the oldest are closed at once,
/// and an admin still gets answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_are_capped() {
    let mut l = limits();
    // Long timeouts: only the cap may close them here.
    l.handshake_timeout = Duration::from_secs(30);
    l.header_read_timeout = Duration::from_secs(30);
    let r = start(l, 600).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(
            TcpStream::connect(("127.0.0.1", r.port))
                .await
                .expect("tcp"),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut closed = 0;
    for s in &mut idle[..150] {
        if closed_within(s, Duration::from_millis(200)).await.is_some() {
            closed += 1;
        }
    }
    assert!(closed >= 150, "only {closed} of the 168 oldest were closed");
    let (code, took) = r.get("/api/v1/namespaces", &r.srv.admin_token()).await;
    assert_eq!(code, 200);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// One node token holding many slow bodies waits in its queues past its share of the
/// `system` level, then gets 429; the admin and another node are still served at once. A slow body ends with 408 at the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_of_one_user_do_not_starve_the_others() {
    let mut l = limits();
    l.body_read_timeout = Duration::from_secs(20);
    let r = start(l, 40).await;
    let n1 = r.srv.ensure_node_token("n1").expect("token");
    let n2 = r.srv.ensure_node_token("n2").expect("token");
    let mut slow = Vec::new();
    for _ in 0..60 {
        slow.push(r.slow_post("events", &n1).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, took) = r.get("/api/v1/namespaces", &r.srv.admin_token()).await;
    assert_eq!(code, 200, "admin");
    assert!(took < Duration::from_secs(1), "admin waited {took:?}");
    // (Services: what a node may list.)
    let (code, _) = r.get("/api/v1/services", &n2).await;
    assert_eq!(code, 200, "another node");
    let (code, _) = r.get("/api/v1/services", &n1).await;
    assert_eq!(
        code, 429,
        "the slow node past its share, after the queue wait"
    );
    drop(slow);

    let mut l = limits();
    l.body_read_timeout = Duration::from_millis(500);
    let r = start(l, 40).await;
    let admin = r.srv.admin_token();
    let mut s = r.slow_post("configmaps", &admin).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .expect("read");
    assert_eq!(status(&buf[..n]), 408);
}

/// A kept-alive connection with nothing in flight is closed after the idle timeout; one
/// that streams a watch is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_but_watches_stay() {
    let r = start(limits(), 600).await;
    let admin = r.srv.admin_token();
    let mut s = r.tls().await;
    let req = format!(
        "GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 65536];
    let n = s.read(&mut buf).await.expect("read");
    assert_eq!(status(&buf[..n]), 200);
    let took = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(3)),
        "idle connection kept: {took:?}"
    );

    let mut w = r.tls().await;
    let req = format!(
        "GET /api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=30 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\r\n"
    );
    w.write_all(req.as_bytes()).await.expect("write");
    let n = w.read(&mut buf).await.expect("read");
    assert_eq!(status(&buf[..n]), 200);
    assert_eq!(
        closed_within(&mut w, Duration::from_secs(2)).await,
        None,
        "a quiet watch was closed as idle"
    );
}

/// Between requests a kept-alive connection waits for the idle timeout, not the header
/// timeout: a client's pool reuses it after a pause longer than the header timeout (a
/// connection closed under a request the client has just written ends in a TCP reset).
/// The header timeout starts with the next request's first byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_outlive_the_header_timeout() {
    let mut l = limits();
    l.idle_timeout = Duration::from_secs(5);
    let r = start(l, 600).await;
    let admin = r.srv.admin_token();
    let mut s = r.tls().await;
    let req = format!(
        "GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\r\n"
    );
    let mut buf = [0u8; 65536];
    for _ in 0..2 {
        s.write_all(req.as_bytes()).await.expect("write");
        let n = s.read(&mut buf).await.expect("read");
        assert_eq!(status(&buf[..n]), 200);
        // Three header timeouts of quiet.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    // Half a request's headers: closed within the header timeout of their first byte.
    s.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let took = closed_within(&mut s, Duration::from_secs(4)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(2)),
        "half-sent headers on a kept-alive connection: {took:?}"
    );
}
