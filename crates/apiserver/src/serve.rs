//! Serving an [`ApiServer`]: the axum router (every request goes to [`crate::rest::dispatch`]),
//! the in-process `kube::Client` over that router, and HTTPS on a listener.
//!
//! Lifecycle of [`ApiServer::serve`]: serve HTTPS until its shutdown future completes; then
//! stop accepting, ask open connections to finish and abort what is left (watches) after a
//! short grace.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
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

    /// Serves HTTPS on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ApiServerError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls().server_config()?);
        let router = self.router();
        let stop = CancellationToken::new();
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => {
                    let (tcp, _) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let router = router.clone();
                    let stop = stop.clone();
                    conns.spawn(async move {
                        let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            _ => return,
                        };
                        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(router));
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            _ = stop.cancelled() => {
                                conn.as_mut().graceful_shutdown();
                                let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                            }
                        }
                    });
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
