//! Helpers for the probe tests: tiny in-process HTTP, HTTPS and gRPC health servers, and a
//! runtime whose exec results a test can change over time (delegating everything else to
//! the fake runtime).
#![allow(dead_code, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_agent::handlers::{Action, HandlerTarget};
use podvisor_runtime::fake::{FakeRuntime, tokio_clock};
use podvisor_runtime::{
    ContainerConfig, ContainerId, ContainerRuntime, ContainerState, ContainerStatus, ExecResult,
    ExitEvents, RuntimeError, SandboxConfig, SandboxStatus, Signal,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A response of the test HTTP server.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Never answer (for timeouts).
    pub hang: bool,
}

impl Reply {
    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            hang: false,
        }
    }
    pub fn redirect(loc: &str) -> Reply {
        // Go's http.Redirect body, which the A13 e2e test matches.
        let body = format!("<a href=\"{loc}\">Found</a>.\n");
        Reply {
            status: 302,
            headers: vec![
                ("Location".into(), loc.into()),
                ("Content-Type".into(), "text/html; charset=utf-8".into()),
            ],
            body: body.into_bytes(),
            hang: false,
        }
    }
    pub fn hang() -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            hang: true,
        }
    }
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// A plain (or TLS) HTTP/1.1 server on 127.0.0.1 that records each request head.
pub struct HttpServer {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    loop {
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}

async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    handler: Handler,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let Some(head) = read_head(&mut s).await else {
        return;
    };
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    requests.lock().unwrap().push(head);
    let reply = handler(&path);
    if reply.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return;
    }
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = s.write_all(out.as_bytes()).await;
    let _ = s.write_all(&reply.body).await;
    let _ = s.shutdown().await;
}

impl HttpServer {
    pub async fn start(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> HttpServer {
        Self::start_inner(Arc::new(handler), None).await
    }

    pub async fn start_tls(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> HttpServer {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = ck.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
        );
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        Self::start_inner(
            Arc::new(handler),
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn start_inner(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> HttpServer {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        let (port, task) = serve_loopback(move |s| {
            let handler = handler.clone();
            let reqs = reqs.clone();
            let tls = tls.clone();
            async move {
                match tls {
                    Some(acc) => {
                        if let Ok(s) = acc.accept(s).await {
                            answer(s, handler, reqs).await;
                        }
                    }
                    None => answer(s, handler, reqs).await,
                }
            }
        })
        .await;
        HttpServer {
            port,
            requests,
            task,
        }
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.split_whitespace().nth(1).unwrap_or("").to_string())
            .collect()
    }
}

/// Serves an ephemeral port of 127.0.0.1: each accepted connection is handed to `conn` on
/// a task of its own; the returned task accepts until it is aborted.
async fn serve_loopback<F, Fut>(conn: F) -> (u16, JoinHandle<()>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            conns.spawn(conn(s));
        }
    });
    (port, task)
}

/// A port with nothing listening.
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A gRPC health server (HTTP/2 prior knowledge) answering with `status(service)`:
/// Ok(serving status value) or Err(grpc status code).
pub struct GrpcServer {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcServer {
    pub async fn start(
        status: impl Fn(&str) -> Result<u64, u32> + Send + Sync + 'static,
    ) -> GrpcServer {
        use http_body_util::{BodyExt, Full};
        let status = Arc::new(status);
        let (port, task) = serve_loopback(move |s| {
                let status = status.clone();
                async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let status = status.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let mut resp = http::Response::builder()
                                .status(200)
                                .header("content-type", "application/grpc");
                            let (payload, code) = if path != "/grpc.health.v1.Health/Check" {
                                (Bytes::new(), 12u32)
                            } else {
                                let service = podvisor_agent::handlers::grpc::decode_request_service(&body).unwrap_or_default();
                                match status(&service) {
                                    Ok(v) => (
                                        podvisor_agent::handlers::grpc::encode_response(
                                            podvisor_agent::handlers::grpc::ServingStatus::from_value(v),
                                        ),
                                        0,
                                    ),
                                    Err(code) => (Bytes::new(), code),
                                }
                            };
                            if code != 0 {
                                // Trailers-only response.
                                resp = resp.header("grpc-status", code.to_string()).header("grpc-message", "not%20here");
                                return Ok::<_, std::convert::Infallible>(resp.body(GrpcBody::new(Bytes::new(), None)).unwrap());
                            }
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            let _ = Full::new(Bytes::new());
                            Ok(resp.body(GrpcBody::new(payload, Some(trailers))).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                }
        })
        .await;
        GrpcServer { port, task }
    }
}

/// A body of one data frame then optional trailers.
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl GrpcBody {
    fn new(data: Bytes, trailers: Option<http::HeaderMap>) -> GrpcBody {
        GrpcBody {
            data: (!data.is_empty()).then_some(data),
            trailers,
        }
    }
}

impl hyper::body::Body for GrpcBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(d))));
        }
        if let Some(t) = self.trailers.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::trailers(t))));
        }
        std::task::Poll::Ready(None)
    }
}

/// What an overridden exec does.
#[derive(Clone, Debug)]
pub enum ExecBehavior {
    /// Exit with this code and output at once.
    Exit(i32, String),
    /// Run past any timeout.
    Hang,
}

type ExecFn = Box<dyn Fn(&str, &[String]) -> Option<ExecBehavior> + Send + Sync>;

/// The fake runtime, with exec results computed by a closure of (container name, command)
/// when it returns Some. Every exec is recorded with its tokio time.
pub struct TestRuntime {
    pub fake: FakeRuntime,
    exec_fn: Mutex<Option<ExecFn>>,
    pub execs: Mutex<Vec<(Instant, String, Vec<String>)>>,
    names: Mutex<std::collections::HashMap<ContainerId, String>>,
}

impl TestRuntime {
    pub fn new(base: SystemTime) -> Arc<TestRuntime> {
        Arc::new(TestRuntime {
            fake: FakeRuntime::new(tokio_clock(base)),
            exec_fn: Mutex::new(None),
            execs: Mutex::new(Vec::new()),
            names: Mutex::new(Default::default()),
        })
    }

    pub fn on_exec(
        &self,
        f: impl Fn(&str, &[String]) -> Option<ExecBehavior> + Send + Sync + 'static,
    ) {
        *self.exec_fn.lock().unwrap() = Some(Box::new(f));
    }

    /// Exec calls of a container whose command starts with `first`.
    pub fn exec_times(&self, container: &str, first: &str) -> Vec<Instant> {
        self.execs
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c, cmd)| c == container && cmd.first().map(String::as_str) == Some(first))
            .map(|(t, _, _)| *t)
            .collect()
    }

    /// Creates (once) the sandbox and starts a container; returns its ID and startedAt.
    pub async fn start(&self, sandbox: &str, name: &str) -> (ContainerId, SystemTime) {
        if !self.fake.has_sandbox(sandbox) {
            self.fake
                .create_sandbox(SandboxConfig {
                    id: sandbox.to_string(),
                    hostname: sandbox.to_string(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        if let Some(old) = self.fake.find_container(sandbox, name) {
            let _ = self.fake.signal(&old.id, Signal::KILL).await;
            let _ = self.fake.remove_container(&old.id).await;
        }
        let id = self
            .fake
            .create_container(
                sandbox,
                ContainerConfig {
                    name: name.to_string(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let st = self.fake.start_container(&id).await.unwrap();
        self.names
            .lock()
            .unwrap()
            .insert(id.clone(), name.to_string());
        let started_at = match st.state {
            ContainerState::Running { started_at, .. } => started_at,
            other => panic!("not running: {other:?}"),
        };
        (id, started_at)
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for TestRuntime {
    async fn create_sandbox(&self, config: SandboxConfig) -> Result<SandboxStatus, RuntimeError> {
        self.fake.create_sandbox(config).await
    }
    async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.fake.remove_sandbox(id).await
    }
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> Result<ContainerId, RuntimeError> {
        self.fake.create_container(sandbox_id, config).await
    }
    async fn start_container(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        self.fake.start_container(id).await
    }
    async fn signal(&self, id: &ContainerId, signal: Signal) -> Result<(), RuntimeError> {
        self.fake.signal(id, signal).await
    }
    async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let name = self
            .names
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default();
        self.execs
            .lock()
            .unwrap()
            .push((Instant::now(), name.clone(), command.to_vec()));
        let behavior = self
            .exec_fn
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|f| f(&name, command));
        match behavior {
            Some(ExecBehavior::Exit(code, out)) => Ok(ExecResult {
                exit_code: Some(code),
                output: out.into_bytes(),
                timed_out: false,
            }),
            Some(ExecBehavior::Hang) => {
                tokio::time::sleep(timeout).await;
                Ok(ExecResult {
                    exit_code: None,
                    output: Vec::new(),
                    timed_out: true,
                })
            }
            None => self.fake.exec(id, command, timeout).await,
        }
    }
    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        self.fake.container_status(id).await
    }
    async fn list(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        self.fake.list().await
    }
    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.fake.remove_container(id).await
    }
    fn subscribe(&self) -> ExitEvents {
        self.fake.subscribe()
    }
}

pub fn cmd(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A handler target on `rt`: container `c` with port `web` (1), pod IP 127.0.0.1.
pub fn target(rt: Arc<TestRuntime>, id: ContainerId) -> HandlerTarget {
    HandlerTarget {
        runtime: rt,
        container_id: id,
        container: podvisor_testkit::container("c").port("web", 1).build(),
        pod_ip: "127.0.0.1".into(),
    }
}

/// [`target`] on a runtime without exec scripts.
pub fn no_exec_target() -> HandlerTarget {
    target(
        TestRuntime::new(SystemTime::UNIX_EPOCH),
        ContainerId("none".into()),
    )
}

/// An http GET of `path` on the pod IP's `port`.
pub fn get(port: u16, path: &str) -> Action {
    Action::HttpGet {
        scheme: "http".into(),
        host: None,
        port: IntOrString::Int(port as i32),
        path: path.into(),
        headers: vec![],
    }
}
