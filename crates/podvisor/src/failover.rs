//! A Kubernetes client over the several API servers of an HA control plane
//! (docs/design/0010-ha-control-plane.md): an agent given `--server A,B,C` sends every
//! request to the *current* server and moves to the next one when that server cannot be
//! reached.
//!
//! ```text
//!  request ──▶ current server ──ok / any HTTP answer──▶ response (a 4xx/5xx is an answer)
//!                   │
//!                   └─ transport error ─▶ current := next (once per failure, not per caller)
//!                        ├─ not sent yet (connect, TLS), or a read (GET/HEAD): same request
//!                        │  to the next server, each server tried at most once
//!                        └─ a write that may have reached the server: the error goes back
//!                           to the caller, which retries as for any failed write
//! ```
//!
//! The servers share one etcd, so any of them gives the same answers: a watch re-opened on
//! the next server resumes from its resourceVersion. A write that failed after it was sent
//! is not repeated here, since it may have been committed (a repeated create would answer
//! AlreadyExists, a repeated generateName create would make a second object).
//!
//! It is a `tower` service around one [`kube::Client`] per server, so whatever wraps the
//! result (the agent's epoch stamping, [`podvisor_agent::fence::stamped_client`]) sees one
//! client.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, Request, Response};
use kube::client::Body;
use tracing::warn;

/// The servers and which one is in use.
struct Servers {
    servers: Vec<(String, kube::Client)>,
    current: AtomicUsize,
}

/// One client over `servers` (name, client) in the order given; the first is used first.
/// One server: its client as is.
pub fn client(mut servers: Vec<(String, kube::Client)>) -> Option<kube::Client> {
    if servers.len() <= 1 {
        return servers.pop().map(|(_, c)| c);
    }
    let namespace = servers[0].1.default_namespace().to_string();
    let shared = Arc::new(Servers {
        servers,
        current: AtomicUsize::new(0),
    });
    let svc = tower::service_fn(move |req: Request<Body>| {
        let shared = shared.clone();
        async move { shared.send(req).await }
    });
    Some(kube::Client::new(svc, namespace))
}

impl Servers {
    async fn send(&self, req: Request<Body>) -> Result<Response<Body>, kube::Error> {
        let n = self.servers.len();
        let read = matches!(*req.method(), Method::GET | Method::HEAD);
        let first = self.current.load(Ordering::SeqCst) % n;
        let mut req = req;
        let mut attempt = 0;
        loop {
            let i = (first + attempt) % n;
            attempt += 1;
            // Each server once: no copy for a retry after the last one.
            let spare = (attempt < n).then(|| copy(&req)).flatten();
            let (name, client) = &self.servers[i];
            let err = match client.send(req).await {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            let next = (i + 1) % n;
            // Concurrent failures of the same server move on once.
            if self
                .current
                .compare_exchange(i, next, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                warn!(
                    server = %name,
                    next = %self.servers[next].0,
                    error = %err,
                    "API server unreachable; failing over"
                );
            }
            match spare {
                Some(spare) if read || not_sent(&err) => req = spare,
                _ => return Err(err),
            }
        }
    }
}

/// A copy of `req` for a retry: None when its body is a stream (it cannot be sent twice).
fn copy(req: &Request<Body>) -> Option<Request<Body>> {
    let body = req.body().try_clone()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// Whether `err` happened before the request left: connecting, the TLS handshake.
fn not_sent(err: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(e) = e.downcast_ref::<hyper_util::client::legacy::Error>()
            && e.is_connect()
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;
    use kube::api::PostParams;
    use kube::runtime::{WatchStreamExt, watcher};
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// An API server on a free 127.0.0.1 port: its URL, the admin client config's CA, its
    /// stop token.
    async fn serve(
        server: &podvisor_apiserver::ApiServer,
    ) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let s = server.clone();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let _ = s.serve(listener, shutdown.cancelled_owned()).await;
        });
        (url, stop, task)
    }

    fn remote(server: &podvisor_apiserver::ApiServer, url: &str) -> kube::Client {
        let mut config = kube::Config::new(url.parse().expect("url"));
        config.auth_info.token = Some(server.admin_token().into());
        config.root_cert = crate::run::pem_to_der(server.ca_pem().as_bytes());
        kube::Client::try_from(config).expect("client")
    }

    fn config_map(name: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("cm")
    }

    /// Two "servers" of one store (one API server listening twice): reads, writes and a
    /// watch go on through the second when the first stops listening; a server never
    /// listening at all is skipped.
    #[tokio::test]
    async fn requests_and_watches_move_to_the_next_server() {
        let server = podvisor_apiserver::testing::memory_server().await;
        let (url_a, stop_a, task_a) = serve(&server).await;
        let (url_b, stop_b, task_b) = serve(&server).await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("https://{}", l.local_addr().expect("addr"))
        };
        let client = client(vec![
            (dead.clone(), remote(&server, &dead)),
            (url_a.clone(), remote(&server, &url_a)),
            (url_b.clone(), remote(&server, &url_b)),
        ])
        .expect("client");
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        // The dead server is skipped for a write too: nothing was sent to it.
        cms.create(&PostParams::default(), &config_map("one"))
            .await
            .expect("create through A");
        let mut events = watcher(cms.clone(), watcher::Config::default())
            .applied_objects()
            .boxed();
        let name = |e: Option<Result<ConfigMap, watcher::Error>>| {
            e.and_then(Result::ok).and_then(|c| c.metadata.name)
        };
        let first = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("watch event");
        assert_eq!(name(first).as_deref(), Some("one"));

        stop_a.cancel();
        task_a.await.expect("join");
        cms.create(&PostParams::default(), &config_map("two"))
            .await
            .expect("create through B once A is gone");
        assert_eq!(
            cms.get("one").await.expect("read through B").metadata.name,
            Some("one".into())
        );
        // The watch re-opens on B and sees the write.
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(e) = events.next().await {
                if name(Some(e)).as_deref() == Some("two") {
                    return true;
                }
            }
            false
        })
        .await
        .expect("the watch resumes on B");
        assert!(seen);
        stop_b.cancel();
        task_b.await.expect("join");
    }
}
