//! host-gw: pods on different nodes reach each other because every agent routes the other
//! nodes' podCIDRs via their InternalIP (flannel's `host-gw` backend). This needs the nodes
//! to be on one L2 segment (each InternalIP a direct neighbour); a route the kernel refuses
//! (gateway not directly reachable) is logged once and retried.
//!
//! The agent watches the Nodes and makes its routing table match as soon as the routes it
//! wants change (a node joins, gets its podCIDR, changes address or goes), and again every
//! 5 s against drift: one route per other node with a podCIDR and an InternalIP (`ip route
//! replace <cidr> via <ip>`, marked with protocol [`ROUTE_PROTO`] so that the agent knows
//! its own routes), and the routes it made for nodes that are gone or changed are deleted.
//! A joining node's pods are thus reachable from the others within a watch event, not up
//! to a period later (the Service proxy may send to them as soon as they are ready).
//! Routes are added with `ip` (iproute2).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The routing protocol number that marks the routes the agent made.
pub const ROUTE_PROTO: &str = "77";
const PERIOD: Duration = Duration::from_secs(5);

/// The routes this node wants: other nodes' podCIDRs → their InternalIP.
pub fn wanted<'a>(
    own: &str,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in nodes {
        if n.metadata.name.as_deref() == Some(own) {
            continue;
        }
        let spec = n.spec.as_ref();
        let cidrs = spec
            .and_then(|s| s.pod_cidrs.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
            .unwrap_or_default();
        let ip = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone());
        let Some(ip) = ip else { continue };
        let v6 = ip.contains(':');
        for c in cidrs {
            // a route of one family via a gateway of the same family only
            if c.contains(':') != v6 {
                continue;
            }
            out.insert(c, ip.clone());
        }
    }
    out
}

/// The routes the agent made earlier: destination → gateway.
async fn ours() -> Result<BTreeMap<String, String>, String> {
    let out = tokio::process::Command::new("ip")
        .args(["-4", "route", "show", "proto", ROUTE_PROTO])
        .output()
        .await
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let via = f.iter().position(|w| *w == "via")?;
            Some((f.first()?.to_string(), f.get(via + 1)?.to_string()))
        })
        .collect())
}

async fn ip(args: &[&str]) -> Result<(), String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Keeps the routes to the other nodes' pods until `stop`.
pub async fn run(client: kube::Client, own: String, stop: CancellationToken) {
    let changed = Arc::new(Notify::new());
    let (nodes, writer) = reflector::store::<Node>();
    let follow = {
        let changed = changed.clone();
        let api: kube::Api<Node> = kube::Api::all(client);
        async move {
            let stream = reflector::reflector(
                writer,
                watcher(api, watcher::Config::default()).default_backoff(),
            );
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(_) => changed.notify_one(),
                    Err(e) => tracing::debug!(error = %e, "watching nodes for pod routes"),
                }
            }
        }
    };
    let follow = tokio::spawn(follow);
    tokio::select! {
        _ = stop.cancelled() => {
            follow.abort();
            return;
        }
        _ = nodes.wait_until_ready() => {}
    }
    let mut warned: HashSet<String> = HashSet::new();
    let mut last: Option<BTreeMap<String, String>> = None;
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + PERIOD, PERIOD);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let want = wanted(&own, nodes.state().iter().map(|n| n.as_ref()));
        match ours().await {
            Ok(have) => {
                if have != want {
                    apply(&want, &have, &mut warned).await;
                }
                last = Some(want);
            }
            Err(e) => {
                if warned.insert("ip".into()) {
                    tracing::warn!("cannot route to other nodes' pods: {e}");
                }
            }
        }
        // The next pass: when the wanted routes change, or at the period.
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    follow.abort();
                    return;
                }
                _ = resync.tick() => break,
                _ = changed.notified() => {
                    let now = wanted(&own, nodes.state().iter().map(|n| n.as_ref()));
                    if last.as_ref() != Some(&now) {
                        break;
                    }
                }
            }
        }
    }
}

async fn apply(
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
    warned: &mut HashSet<String>,
) {
    for (dst, via) in have {
        if want.get(dst) != Some(via)
            && let Err(e) = ip(&["route", "del", dst, "proto", ROUTE_PROTO]).await
        {
            tracing::warn!(route = %dst, "cannot remove a pod route: {e}");
        }
    }
    for (dst, via) in want {
        if have.get(dst) == Some(via) {
            continue;
        }
        match ip(&["route", "replace", dst, "via", via, "proto", ROUTE_PROTO]).await {
            Ok(()) => {
                warned.remove(dst);
                tracing::info!(route = %dst, via = %via, "routing another node's pods");
            }
            Err(e) => {
                if warned.insert(dst.clone()) {
                    tracing::warn!(route = %dst, via = %via, "cannot route to another node's pods (host-gw needs the nodes on one L2 segment): {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_nodes_cidrs_via_their_internal_ip() {
        let node = |name: &str, cidr: Option<&str>, ip: Option<&str>| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"podCIDR": cidr, "podCIDRs": cidr.map(|c| vec![c])},
                "status": {"addresses": ip.map(|i| vec![
                    serde_json::json!({"type": "Hostname", "address": "h"}),
                    serde_json::json!({"type": "InternalIP", "address": i}),
                ])}
            }))
            .unwrap()
        };
        let nodes = [
            node("a", Some("10.244.0.0/24"), Some("10.0.0.1")),
            node("b", Some("10.244.1.0/24"), Some("10.0.0.2")),
            node("c", None, Some("10.0.0.3")),
            node("d", Some("10.244.3.0/24"), None),
        ];
        let w = wanted("a", &nodes);
        assert_eq!(
            w,
            BTreeMap::from([("10.244.1.0/24".to_string(), "10.0.0.2".to_string())])
        );
    }
}
