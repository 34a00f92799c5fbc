//! The API for pods on `up`'s node: a pod in a network namespace of its own cannot reach
//! 127.0.0.1, where `up` serves by default. Once the node has its podCIDR (and the pod network
//! is usable), the API server also serves on the node's pod-network gateway (the first address
//! of the podCIDR, which the bridge holds) with a certificate that names it, and publishes
//! that address as the `kubernetes` Service's endpoint (reached through 10.96.0.1:443).
//!
//! The listener binds with `IP_FREEBIND`: the bridge and its address appear with the first
//! pod, after this runs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use podvisor_apiserver::ApiServer;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The gateway of a podCIDR: its first host address (IPv4 only).
pub fn gateway(pod_cidr: &str) -> Option<Ipv4Addr> {
    let (net, prefix) = pod_cidr.split_once('/')?;
    let net: Ipv4Addr = net.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    if prefix >= 31 {
        return None;
    }
    Some(Ipv4Addr::from(u32::from(net) + 1))
}

/// Waits (bounded) for the node's podCIDR; then serves on its gateway and publishes it.
pub async fn serve_for_pods(
    server: ApiServer,
    client: kube::Client,
    node: String,
    port: u16,
    stop: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut cidr = None;
    for _ in 0..600 {
        if let Ok(n) = nodes.get(&node).await
            && let Some(c) = n.spec.and_then(|s| s.pod_cidr)
        {
            cidr = Some(c);
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let Some(gw) = cidr.as_deref().and_then(gateway) else {
        warn!(node = %node, "no IPv4 podCIDR: pods cannot reach the API server");
        return;
    };
    let addr = SocketAddr::new(IpAddr::V4(gw), port);
    let listener = match bind_free(addr) {
        Ok(l) => l,
        Err(e) => {
            warn!(%addr, error = %e, "cannot serve the API for pods");
            return;
        }
    };
    if let Err(e) = server.set_kubernetes_endpoint(addr).await {
        warn!(%addr, error = %e, "cannot publish the API server's address for pods");
    }
    info!(%addr, "serving the API for pods");
    if let Err(e) = server
        .serve_also(listener, &[gw.to_string()], stop.cancelled_owned())
        .await
    {
        warn!(%addr, error = %e, "serving the API for pods stopped");
    }
}

/// A listener on `addr`, which need not be assigned yet.
fn bind_free(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    rustix::net::sockopt::set_ip_freebind(&socket, true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_the_first_address() {
        assert_eq!(gateway("10.244.3.0/24"), Some(Ipv4Addr::new(10, 244, 3, 1)));
        assert_eq!(gateway("fd00::/64"), None);
        assert_eq!(gateway("10.0.0.0/31"), None);
    }
}
