//! The node IPAM controller (upstream `pkg/controller/nodeipam`, range allocator): every
//! Node gets a `spec.podCIDR` (and `podCIDRs`) of its own from `--cluster-cidr`.
//!
//! # Rules
//!
//! * The cluster CIDR (IPv4; `podvisor up` and `server` use `10.244.0.0/16`) is cut into blocks of
//!   `node_cidr_mask_size` (default /24); a node without a podCIDR gets the lowest free block.
//! * What is taken is read from the Nodes themselves (the node cache), so a restarted
//!   manager never hands out a block twice; blocks patched but not yet seen in the cache are
//!   held in memory until they are.
//! * A Node's block is free again once the Node is deleted. A podCIDR outside the cluster
//!   CIDR (set by hand) is left alone and takes nothing.
//! * When every block is taken the Node gets a `CIDRNotAvailable` event and is retried on
//!   the next change.
//!
//! A pass runs on every Node event (the manager's node router wakes it) and every 30 s.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use podvisor_kit::events::{EventRecord, EventType, object_ref};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::context::Ctx;

/// The cluster CIDR `podvisor up` and `server` allocate from unless told otherwise.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";

/// Settings of the node IPAM controller (upstream flag names in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeIpamConfig {
    /// The pods' address range [`--cluster-cidr`]; None (the default, as upstream's
    /// `--allocate-node-cidrs=false`): no podCIDRs are allocated.
    pub cluster_cidr: Option<String>,
    /// The prefix length of each node's block [`--node-cidr-mask-size`]. Default 24.
    pub node_cidr_mask_size: u8,
}

impl Default for NodeIpamConfig {
    fn default() -> Self {
        Self {
            cluster_cidr: None,
            node_cidr_mask_size: 24,
        }
    }
}

/// An IPv4 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length.
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` (the host bits must be zero).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("invalid CIDR address: {s}"))?;
        let len: u8 = l
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let c = Cidr { addr, len };
        if u32::from(addr) & !c.mask() != 0 {
            return Err(format!("invalid CIDR address: {s} (host bits set)"));
        }
        Ok(c)
    }

    fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The blocks of a cluster CIDR, by index.
#[derive(Clone, Copy, Debug)]
pub struct Blocks {
    cluster: Cidr,
    len: u8,
}

impl Blocks {
    /// The blocks of `/len` in `cluster`.
    pub fn new(cluster: Cidr, len: u8) -> Result<Blocks, String> {
        if len < cluster.len || len > 30 {
            return Err(format!(
                "node CIDR mask size {len} does not fit the cluster CIDR {cluster}"
            ));
        }
        Ok(Blocks { cluster, len })
    }

    /// How many blocks there are.
    pub fn count(&self) -> u64 {
        1u64 << (self.len - self.cluster.len)
    }

    /// Block `i`.
    pub fn block(&self, i: u64) -> Cidr {
        let base = u32::from(self.cluster.addr) as u64 + (i << (32 - self.len));
        Cidr {
            addr: Ipv4Addr::from(base as u32),
            len: self.len,
        }
    }

    /// The index of `c` if it is one of the blocks.
    pub fn index(&self, c: &Cidr) -> Option<u64> {
        if c.len != self.len
            || u32::from(c.addr) & self.cluster.mask() != u32::from(self.cluster.addr)
        {
            return None;
        }
        Some(((u32::from(c.addr) - u32::from(self.cluster.addr)) >> (32 - self.len)) as u64)
    }

    /// The lowest block not in `taken`.
    pub fn first_free(&self, taken: &BTreeSet<u64>) -> Option<u64> {
        (0..self.count()).find(|i| !taken.contains(i))
    }
}

fn pod_cidrs(n: &Node) -> Vec<String> {
    let spec = n.spec.as_ref();
    let mut out: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if let Some(c) = spec.and_then(|s| s.pod_cidr.clone())
        && !out.contains(&c)
    {
        out.push(c);
    }
    out
}

/// Runs the controller until `shutdown`. See the module documentation.
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let Some(cluster) = ctx.config.node_ipam.cluster_cidr.clone() else {
        return;
    };
    let blocks = match Cidr::parse(&cluster)
        .and_then(|c| Blocks::new(c, ctx.config.node_ipam.node_cidr_mask_size))
    {
        Ok(b) => b,
        Err(e) => {
            warn!("node IPAM disabled: {e}");
            return;
        }
    };
    let mut state = State::default();
    loop {
        pass(&ctx, &blocks, &mut state).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ctx.node_ipam.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// What the controller remembers between passes.
#[derive(Default)]
struct State {
    /// Blocks patched onto a node that the cache does not show yet.
    pending: HashMap<String, u64>,
    /// Nodes told `CIDRNotAvailable` (once until they get a block or go).
    exhausted: HashSet<String>,
}

const COMPONENT: &str = "cidrAllocator";

async fn pass(ctx: &Ctx, blocks: &Blocks, state: &mut State) {
    let State { pending, exhausted } = state;
    let nodes = ctx.nodes.state();
    let mut taken = BTreeSet::new();
    let mut without = Vec::new();
    for n in &nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let cidrs = pod_cidrs(n);
        if cidrs.is_empty() {
            if n.metadata.deletion_timestamp.is_none() {
                without.push(name);
            }
            continue;
        }
        pending.remove(&name);
        for c in cidrs {
            if let Some(i) = Cidr::parse(&c).ok().and_then(|c| blocks.index(&c)) {
                taken.insert(i);
            }
        }
    }
    // A pending block whose node is gone is free again.
    pending.retain(|name, _| without.contains(name));
    exhausted.retain(|name| without.contains(name));
    taken.extend(pending.values().copied());
    without.sort();
    let api: Api<Node> = Api::all(ctx.client.clone());
    for name in without {
        if pending.contains_key(&name) {
            continue;
        }
        let Some(i) = blocks.first_free(&taken) else {
            if exhausted.insert(name.clone())
                && let Some(node) = nodes
                    .iter()
                    .find(|n| n.metadata.name.as_deref() == Some(name.as_str()))
            {
                warn!(node = %name, "no pod CIDR left to allocate");
                ctx.record_event(
                    COMPONENT,
                    EventRecord::new(
                        object_ref(node.as_ref()),
                        EventType::Normal,
                        "CIDRNotAvailable",
                        format!("Node {name} status is now: CIDRNotAvailable"),
                    ),
                );
            }
            continue;
        };
        let cidr = blocks.block(i).to_string();
        let patch = serde_json::json!({ "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } });
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                info!(node = %name, pod_cidr = %cidr, "allocated the node's pod CIDR");
                taken.insert(i);
                pending.insert(name, i);
            }
            Err(e) => warn!(node = %name, error = %e, "cannot set the node's pod CIDR"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_cut_and_found_again() {
        let b = Blocks::new(Cidr::parse("10.244.0.0/16").unwrap(), 24).unwrap();
        assert_eq!(b.count(), 256);
        assert_eq!(b.block(0).to_string(), "10.244.0.0/24");
        assert_eq!(b.block(255).to_string(), "10.244.255.0/24");
        assert_eq!(b.index(&Cidr::parse("10.244.7.0/24").unwrap()), Some(7));
        assert_eq!(b.index(&Cidr::parse("10.245.7.0/24").unwrap()), None);
        assert_eq!(b.index(&Cidr::parse("10.244.7.0/25").unwrap()), None);
        let taken: BTreeSet<u64> = [0, 1, 3].into();
        assert_eq!(b.first_free(&taken), Some(2));
        let all: BTreeSet<u64> = (0..256).collect();
        assert_eq!(b.first_free(&all), None);
        assert!(Cidr::parse("10.244.0.1/16").is_err());
        assert!(Cidr::parse("10.244.0.0").is_err());
        assert!(Blocks::new(Cidr::parse("10.244.0.0/16").unwrap(), 8).is_err());
    }
}
