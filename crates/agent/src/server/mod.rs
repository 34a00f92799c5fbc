//! The node agent's HTTP server for the API server's proxied subresources: `pods/log`
//! ([`logs`], the kubelet's `/containerLogs`), `pods/exec` / `pods/attach` ([`exec`],
//! the kubelet's `/exec` and `/attach` over WebSocket) and `pods/portforward`
//! ([`portforward`], the kubelet's `/portForward`, SPDY/3.1 over WebSocket or upgraded HTTP).
//!
//! ```text
//! LogServer::bind(addr, runtime, token, clock, tls) ── serve(shutdown)
//!     ├─ /containerLogs/{ns}/{pod}/{container}   logs::router
//!     ├─ /exec/{ns}/{pod}/{container}            exec::router
//!     ├─ /attach/{ns}/{pod}/{container}          exec::router
//!     ├─ /portForward/{ns}/{pod}                 portforward::router
//!     └─ /stats/resource                         stats::router (metrics.k8s.io)
//! ```
//!
//! Served over TLS with the node's serving certificate ([`tls`]: SANs the node's IP and
//! hostname, its hash published on the Node for the API server to check). Every request
//! carries the node's bearer token. Both endpoints find the container
//! instance through the runtime's labels ([`common`]); attach reads the log file as
//! `logs -f` does; port-forward finds the pod's sandbox and its network namespace the
//! same way. Imports go one way: this module → logs, exec, portforward; exec → logs;
//! portforward → spdy; all → common.

pub mod common;
pub mod exec;
pub mod logs;
pub mod portforward;
pub mod spdy;
pub mod stats;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use podvisor_runtime::ContainerRuntime;
use tokio_util::sync::CancellationToken;

use crate::clock::WallClock;
use crate::error::AgentError;

/// A TLS handshake or a request's headers must come within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The log server, bound and ready to serve.
pub struct LogServer {
    listener: tokio::net::TcpListener,
    router: Router,
    tls: tokio_rustls::TlsAcceptor,
}

impl LogServer {
    /// Binds `addr`; connections are served over TLS with `tls` ([`tls::ServingCert`]).
    pub async fn bind(
        addr: SocketAddr,
        runtime: Arc<dyn ContainerRuntime>,
        token: &str,
        clock: WallClock,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<LogServer, AgentError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| AgentError::Io {
                operation: "bind log server",
                path: addr.to_string(),
                message: e.to_string(),
            })?;
        let token: Arc<str> = Arc::from(token);
        let router = logs::router(runtime.clone(), token.clone(), clock.clone())
            .merge(exec::router(runtime.clone(), token.clone()))
            .merge(stats::router(runtime.clone(), token.clone(), clock))
            .merge(portforward::router(runtime, token));
        Ok(LogServer {
            listener,
            router,
            tls: tokio_rustls::TlsAcceptor::from(tls),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown`; then the connections still open (log follows, exec
    /// sessions) are ended.
    pub async fn serve(self, shutdown: CancellationToken) {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (tcp, _) = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "log server accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (acceptor, router) = (self.tls.clone(), self.router.clone());
            conns.spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                else {
                    return;
                };
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT);
                let _ = builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(tls),
                        TowerToHyperService::new(router),
                    )
                    .await;
            });
        }
        conns.shutdown().await;
    }
}
