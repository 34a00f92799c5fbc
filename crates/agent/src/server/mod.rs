//! The node agent's HTTP server for the API server's proxied subresources: `pods/log`
//! ([`logs`], the kubelet's `/containerLogs`), `pods/exec` / `pods/attach` ([`exec`],
//! the kubelet's `/exec` and `/attach` over WebSocket) and `pods/portforward`
//! ([`portforward`], the kubelet's `/portForward`, SPDY/3.1 over WebSocket or upgraded HTTP).
//!
//! ```text
//! LogServer::bind(addr, runtime, token, clock) ── serve(shutdown)
//!     ├─ /containerLogs/{ns}/{pod}/{container}   logs::router
//!     ├─ /exec/{ns}/{pod}/{container}            exec::router
//!     ├─ /attach/{ns}/{pod}/{container}          exec::router
//!     └─ /portForward/{ns}/{pod}                 portforward::router
//! ```
//!
//! Every request carries the node's bearer token. Both endpoints find the container
//! instance through the runtime's labels ([`common`]); attach reads the log file as
//! `logs -f` does. Imports go one way: this module → logs, exec; exec → logs; both →
//! common.

pub mod common;
pub mod exec;
pub mod logs;
pub mod portforward;
pub mod spdy;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use podvisor_runtime::ContainerRuntime;
use tokio_util::sync::CancellationToken;

use crate::clock::WallClock;
use crate::error::AgentError;

/// The log server, bound and ready to serve.
pub struct LogServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl LogServer {
    /// Binds `addr`.
    pub async fn bind(
        addr: SocketAddr,
        runtime: Arc<dyn ContainerRuntime>,
        token: &str,
        clock: WallClock,
    ) -> Result<LogServer, AgentError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| AgentError::Io {
                operation: "bind log server",
                path: addr.to_string(),
                message: e.to_string(),
            })?;
        let token: Arc<str> = Arc::from(token);
        let router = logs::router(runtime.clone(), token.clone(), clock)
            .merge(exec::router(runtime.clone(), token.clone()))
            .merge(portforward::router(runtime, token));
        Ok(LogServer { listener, router })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown`.
    pub async fn serve(self, shutdown: CancellationToken) {
        let res = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "log server stopped");
        }
    }
}
