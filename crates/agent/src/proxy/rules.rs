//! What the proxy programs, without I/O: Services and EndpointSlices → [`Ruleset`] →
//! the text of one `nft -f -` transaction ([`render`]).
//!
//! The table (`ip podvisor`), after kube-proxy's nftables mode:
//!
//! ```text
//! nat-prerouting / nat-output (dstnat)  → services
//! services:   ip daddr . l4proto . dport vmap @service-ips          → goto svc-*
//!             fib daddr type local, l4proto . dport vmap @service-nodeports → goto ext-*
//! ext-*:      mark for masquerade (externalTrafficPolicy Cluster); goto svc-*
//! svc-*:      traffic from outside the node's pod CIDR to the cluster IP → mark
//!             affinity: ip saddr @aff-* goto ep-*  (each endpoint; ClientIP only)
//!             numgen random mod N vmap { i : goto ep-i }
//! ep-*:       ip saddr <endpoint> → mark (hairpin); update @aff-*; dnat to ip:port
//! filter-input/forward/output (-110): a Service with no usable endpoint → reject
//!             (internalTrafficPolicy Local without a local endpoint → drop)
//! nat-postrouting (srcnat) → masquerading: marked packets are masqueraded
//! ```
//! Endpoints used: the ready ones; when none is ready, the serving+terminating ones
//! (ProxyTerminatingEndpoints); `internalTrafficPolicy: Local` (ClusterIP) and
//! `externalTrafficPolicy: Local` (NodePort) keep only endpoints on this node.
//!
//! A full transaction ([`render`]) replaces every rule of every chain it owns (chains and
//! maps are flushed and filled again) and deletes the chains and sets of Services that are
//! gone; a delta ([`render_delta`], every sync after a successful one) touches only the
//! Service ports that changed: it deletes their old map elements, flushes and refills their
//! chains, adds their new elements and deletes the chains and sets they no longer use — in
//! that order, so that nothing still points at what is deleted. Affinity sets are kept
//! across syncs (their entries are the affinity state).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The table's name (in the `ip` family).
pub const TABLE: &str = "podvisor";
/// The packet mark bit meaning "masquerade this".
pub const MASQUERADE_MARK: u32 = 0x4000;

/// One Service port as the proxy programs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortRules {
    /// `namespace/name:port-name` (or the port number), for comments and logs.
    pub name: String,
    /// The chain id (stable hash of name and protocol).
    pub id: String,
    /// The cluster IP (none for headless).
    pub cluster_ip: Option<Ipv4Addr>,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: &'static str,
    /// The Service port.
    pub port: u16,
    /// The node port, if any.
    pub node_port: Option<u16>,
    /// Client-IP affinity timeout, if any.
    pub affinity_seconds: Option<i32>,
    /// Endpoints for cluster IP traffic: (ip, port, id).
    pub cluster_endpoints: Vec<EndpointRules>,
    /// Endpoints for node port traffic (differs with `externalTrafficPolicy: Local`).
    pub external_endpoints: Vec<EndpointRules>,
    /// `externalTrafficPolicy: Local`: node port traffic keeps its source.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local` with no local endpoint: drop instead of reject.
    pub internal_local: bool,
}

/// One endpoint of a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointRules {
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// The target port.
    pub port: u16,
    /// The chain id.
    pub id: String,
}

/// Everything one sync programs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Service ports, sorted by name.
    pub services: Vec<ServicePortRules>,
    /// Traffic from outside this CIDR to a cluster IP is masqueraded (the node's pod CIDR;
    /// none: all of it).
    pub local_cidr: Option<String>,
}

impl Ruleset {
    /// Rules (and map elements) this ruleset has, for the sync log.
    pub fn rule_count(&self) -> usize {
        self.services
            .iter()
            .map(|s| {
                3 + s.cluster_endpoints.len() * 3
                    + s.external_endpoints.len() * 3
                    + usize::from(s.node_port.is_some()) * 3
            })
            .sum::<usize>()
            + 12
    }
}

fn short_hash(s: &str) -> String {
    // FNV-1a, 64 bits, base32-ish: stable across runs and versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..10)
        .map(|i| ALPHA[((h >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// Whether an endpoint is usable: its `ready` (unset counts as ready), or — when the
/// port has no ready endpoint — serving and terminating.
fn usable<'a>(
    eps: &[&'a k8s_openapi::api::discovery::v1::Endpoint],
) -> Vec<&'a k8s_openapi::api::discovery::v1::Endpoint> {
    let cond =
        |e: &k8s_openapi::api::discovery::v1::Endpoint| e.conditions.clone().unwrap_or_default();
    let ready: Vec<_> = eps
        .iter()
        .copied()
        .filter(|e| cond(e).ready.unwrap_or(true))
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.iter()
        .copied()
        .filter(|e| {
            let c = cond(e);
            c.serving.unwrap_or(false) && c.terminating.unwrap_or(false)
        })
        .collect()
}

/// Builds the ruleset for `node` from the Services and EndpointSlices it knows.
pub fn build(
    services: &[&Service],
    slices: &[&EndpointSlice],
    node: &str,
    local_cidr: Option<String>,
) -> Ruleset {
    // service (ns, name) → slices
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        if s.address_type != "IPv4" {
            continue;
        }
        let Some(name) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        by_service.entry((ns, name.clone())).or_default().push(s);
    }
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty == "ExternalName" {
            continue;
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let slices = by_service.get(&(ns.clone(), name.clone()));
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(podvisor_api::service::DEFAULT_CLIENT_IP_TIMEOUT_SECONDS)
        });
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        for sp in spec.ports.iter().flatten() {
            let protocol = match sp.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => "tcp",
                "UDP" => "udp",
                "SCTP" => "sctp",
                _ => continue,
            };
            let Ok(port) = u16::try_from(sp.port) else {
                continue;
            };
            let node_port = sp
                .node_port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0 && matches!(ty, "NodePort" | "LoadBalancer"));
            if cluster_ip.is_none() && node_port.is_none() {
                continue;
            }
            let port_name = sp.name.clone().unwrap_or_default();
            let full = format!(
                "{ns}/{name}:{}",
                if port_name.is_empty() {
                    sp.port.to_string()
                } else {
                    port_name.clone()
                }
            );
            let id = short_hash(&format!("{full}/{protocol}"));
            // The endpoints of this port: slices whose port of that name and protocol exists.
            let mut eps: Vec<(&k8s_openapi::api::discovery::v1::Endpoint, u16)> = Vec::new();
            for slice in slices.into_iter().flatten() {
                let Some(target) = slice.ports.iter().flatten().find(|p| {
                    p.name.as_deref().unwrap_or("") == port_name
                        && p.protocol
                            .as_deref()
                            .unwrap_or("TCP")
                            .eq_ignore_ascii_case(protocol)
                }) else {
                    continue;
                };
                let Some(tp) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for e in &slice.endpoints {
                    eps.push((e, tp));
                }
            }
            let pick = |local: bool| -> Vec<EndpointRules> {
                let candidates: Vec<_> = eps
                    .iter()
                    .filter(|(e, _)| !local || e.node_name.as_deref() == Some(node))
                    .map(|(e, _)| *e)
                    .collect();
                let chosen = usable(&candidates);
                let mut out: Vec<EndpointRules> = eps
                    .iter()
                    .filter(|(e, _)| chosen.iter().any(|c| std::ptr::eq(*c, *e)))
                    .filter_map(|(e, tp)| {
                        let ip: Ipv4Addr = e.addresses.first()?.parse().ok()?;
                        Some(EndpointRules {
                            ip,
                            port: *tp,
                            id: short_hash(&format!("{full}/{protocol}/{ip}:{tp}")),
                        })
                    })
                    .collect();
                out.sort();
                out.dedup();
                out
            };
            let (cluster_endpoints, external_endpoints) =
                (pick(internal_local), pick(external_local));
            out.push(ServicePortRules {
                name: full,
                id,
                cluster_ip,
                protocol,
                port,
                node_port,
                affinity_seconds,
                cluster_endpoints,
                external_endpoints,
                external_local,
                internal_local,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.protocol.cmp(b.protocol)));
    Ruleset {
        services: out,
        local_cidr,
    }
}

/// The chains and sets a ruleset defines (besides the fixed ones), for deleting stale ones.
pub fn owned_objects(r: &Ruleset) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut owned = (BTreeSet::new(), BTreeSet::new());
    for s in &r.services {
        service_objects(s, &mut owned);
    }
    owned
}

/// The chains and affinity sets of one Service port.
fn service_objects(
    s: &ServicePortRules,
    (chains, sets): &mut (BTreeSet<String>, BTreeSet<String>),
) {
    if s.cluster_ip.is_some() && !s.cluster_endpoints.is_empty() {
        chains.insert(format!("svc-{}", s.id));
    }
    if s.node_port.is_some() && !s.external_endpoints.is_empty() {
        chains.insert(format!("ext-{}", s.id));
    }
    for e in s.cluster_endpoints.iter().chain(&s.external_endpoints) {
        chains.insert(format!("ep-{}", e.id));
        if s.affinity_seconds.is_some() {
            sets.insert(format!("aff-{}", e.id));
        }
    }
}

/// The map elements of one Service port: (map, key, verdict).
fn map_elements(s: &ServicePortRules) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let (proto, port) = (s.protocol, s.port);
    if let Some(ip) = s.cluster_ip {
        let key = format!("{ip} . {proto} . {port}");
        if s.cluster_endpoints.is_empty() {
            let verdict = if s.internal_local {
                "drop".to_string()
            } else {
                "goto reject-chain".to_string()
            };
            out.push(("no-endpoint-services", key, verdict));
        } else {
            out.push(("service-ips", key, format!("goto svc-{}", s.id)));
        }
    }
    if let Some(np) = s.node_port {
        let key = format!("{proto} . {np}");
        if s.external_endpoints.is_empty() {
            out.push(("no-endpoint-nodeports", key, "goto reject-chain".into()));
        } else {
            out.push(("service-nodeports", key, format!("goto ext-{}", s.id)));
        }
    }
    out
}

/// Declares the affinity sets of one Service port (once each).
fn declare_sets<'a>(
    o: &mut String,
    t: &str,
    s: &'a ServicePortRules,
    declared: &mut BTreeSet<&'a String>,
) {
    if let Some(secs) = s.affinity_seconds {
        for e in s.cluster_endpoints.iter().chain(&s.external_endpoints) {
            if declared.insert(&e.id) {
                let _ = writeln!(
                    o,
                    "add set {t} aff-{} {{ type ipv4_addr; flags dynamic,timeout; timeout {secs}s; }}",
                    e.id
                );
            }
        }
    }
}

/// The rules of one Service port's own chains (declared and flushed before).
fn fill_service(
    o: &mut String,
    t: &str,
    s: &ServicePortRules,
    local_cidr: Option<&str>,
    filled: &mut BTreeSet<String>,
) {
    let (proto, port) = (s.protocol, s.port);
    if let Some(ip) = s.cluster_ip
        && !s.cluster_endpoints.is_empty()
    {
        let svc = format!("svc-{}", s.id);
        let masq = match local_cidr {
            Some(cidr) => format!(
                "ip daddr {ip} {proto} dport {port} ip saddr != {cidr} jump mark-for-masquerade"
            ),
            None => format!("ip daddr {ip} {proto} dport {port} jump mark-for-masquerade"),
        };
        let _ = writeln!(o, "add rule {t} {svc} {masq} comment \"{}\"", s.name);
        endpoint_rules(o, t, &svc, s, &s.cluster_endpoints, filled);
    }
    if s.node_port.is_some() && !s.external_endpoints.is_empty() {
        let ext = format!("ext-{}", s.id);
        if !s.external_local {
            let _ = writeln!(o, "add rule {t} {ext} jump mark-for-masquerade");
        }
        endpoint_rules(o, t, &ext, s, &s.external_endpoints, filled);
    }
}

/// `add element` lines for `elems` (map, key, verdict), 500 to a line.
fn add_elements(o: &mut String, t: &str, elems: &[(&'static str, String, String)]) {
    for m in MAPS {
        let mine: Vec<String> = elems
            .iter()
            .filter(|(map, _, _)| *map == m)
            .map(|(_, k, v)| format!("{k} : {v}"))
            .collect();
        for chunk in mine.chunks(500) {
            let _ = writeln!(o, "add element {t} {m} {{ {} }}", chunk.join(", "));
        }
    }
}

const MAPS: [&str; 4] = [
    "service-ips",
    "service-nodeports",
    "no-endpoint-services",
    "no-endpoint-nodeports",
];

const BASE_CHAINS: &[(&str, &str)] = &[
    (
        "nat-prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
    ),
    (
        "nat-output",
        "type nat hook output priority -100; policy accept;",
    ),
    (
        "nat-postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
    ),
    (
        "filter-input",
        "type filter hook input priority -110; policy accept;",
    ),
    (
        "filter-forward",
        "type filter hook forward priority -110; policy accept;",
    ),
    (
        "filter-output",
        "type filter hook output priority -110; policy accept;",
    ),
];
const PLAIN_CHAINS: &[&str] = &[
    "services",
    "masquerading",
    "mark-for-masquerade",
    "endpoints-check",
    "reject-chain",
];

/// The `nft -f -` transaction that programs `r`, given what the previous sync defined
/// (`previous`: chains and sets that may need deleting).
pub fn render(r: &Ruleset, previous: &(BTreeSet<String>, BTreeSet<String>)) -> String {
    let t = format!("ip {TABLE}");
    let mut o = String::new();
    let _ = writeln!(o, "add table {t} {{ comment \"podvisor service proxy\"; }}");
    for (c, spec) in BASE_CHAINS {
        let _ = writeln!(o, "add chain {t} {c} {{ {spec} }}");
    }
    for c in PLAIN_CHAINS {
        let _ = writeln!(o, "add chain {t} {c}");
    }
    let _ = writeln!(
        o,
        "add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}"
    );
    let _ = writeln!(
        o,
        "add map {t} service-nodeports {{ type inet_proto . inet_service : verdict; }}"
    );
    let _ = writeln!(
        o,
        "add map {t} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}"
    );
    let _ = writeln!(
        o,
        "add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict; }}"
    );
    let (chains, sets) = owned_objects(r);
    // Stale chains are (re)declared too, so that flushing and deleting them cannot fail.
    let all_chains: BTreeSet<&String> = chains.iter().chain(&previous.0).collect();
    for c in &all_chains {
        let _ = writeln!(o, "add chain {t} {c}");
    }
    let mut declared = BTreeSet::new();
    for s in &r.services {
        declare_sets(&mut o, &t, s, &mut declared);
    }
    // Flush everything this transaction fills.
    for (c, _) in BASE_CHAINS {
        let _ = writeln!(o, "flush chain {t} {c}");
    }
    for c in PLAIN_CHAINS {
        let _ = writeln!(o, "flush chain {t} {c}");
    }
    for c in &all_chains {
        let _ = writeln!(o, "flush chain {t} {c}");
    }
    for m in MAPS {
        let _ = writeln!(o, "flush map {t} {m}");
    }
    // Fixed rules.
    let rule = |o: &mut String, chain: &str, body: &str| {
        let _ = writeln!(o, "add rule {t} {chain} {body}");
    };
    rule(&mut o, "nat-prerouting", "jump services");
    rule(&mut o, "nat-output", "jump services");
    rule(&mut o, "nat-postrouting", "jump masquerading");
    rule(&mut o, "filter-input", "ct state new jump endpoints-check");
    rule(
        &mut o,
        "filter-forward",
        "ct state new jump endpoints-check",
    );
    rule(&mut o, "filter-output", "ct state new jump endpoints-check");
    rule(&mut o, "reject-chain", "reject");
    rule(
        &mut o,
        "mark-for-masquerade",
        &format!("meta mark set meta mark | {MASQUERADE_MARK:#x}"),
    );
    rule(
        &mut o,
        "masquerading",
        &format!("meta mark & {MASQUERADE_MARK:#x} == 0 return"),
    );
    rule(
        &mut o,
        "masquerading",
        &format!("meta mark set meta mark ^ {MASQUERADE_MARK:#x}"),
    );
    rule(&mut o, "masquerading", "masquerade fully-random");
    rule(
        &mut o,
        "services",
        "ip daddr . meta l4proto . th dport vmap @service-ips",
    );
    rule(
        &mut o,
        "services",
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
    );
    rule(
        &mut o,
        "endpoints-check",
        "ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
    );
    rule(
        &mut o,
        "endpoints-check",
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports",
    );
    let mut filled = BTreeSet::new();
    let mut elements = Vec::new();
    for s in &r.services {
        fill_service(&mut o, &t, s, r.local_cidr.as_deref(), &mut filled);
        elements.extend(map_elements(s));
    }
    add_elements(&mut o, &t, &elements);
    // Gone Services: their chains (flushed above) and affinity sets.
    for c in previous.0.difference(&chains) {
        let _ = writeln!(o, "delete chain {t} {c}");
    }
    for s in previous.1.difference(&sets) {
        let _ = writeln!(o, "delete set {t} {s}");
    }
    o
}

/// The dispatch rules of `chain` (a `svc-*` or `ext-*` chain) to `eps` and each endpoint's
/// chain.
fn endpoint_rules(
    o: &mut String,
    t: &str,
    chain: &str,
    s: &ServicePortRules,
    eps: &[EndpointRules],
    filled: &mut BTreeSet<String>,
) {
    if s.affinity_seconds.is_some() {
        for e in eps {
            let _ = writeln!(
                o,
                "add rule {t} {chain} ip saddr @aff-{} goto ep-{}",
                e.id, e.id
            );
        }
    }
    let arms: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{i} : goto ep-{}", e.id))
        .collect();
    let _ = writeln!(
        o,
        "add rule {t} {chain} numgen random mod {} vmap {{ {} }}",
        eps.len(),
        arms.join(", ")
    );
    for e in eps {
        let ep = format!("ep-{}", e.id);
        // Filled once per sync even when two chains share it.
        if !filled.insert(ep.clone()) {
            continue;
        }
        let _ = writeln!(
            o,
            "add rule {t} {ep} ip saddr {} jump mark-for-masquerade",
            e.ip
        );
        if s.affinity_seconds.is_some() {
            let _ = writeln!(o, "add rule {t} {ep} update @aff-{} {{ ip saddr }}", e.id);
        }
        let _ = writeln!(
            o,
            "add rule {t} {ep} meta l4proto {} dnat to {}:{}",
            s.protocol, e.ip, e.port
        );
    }
}

/// The transaction that turns `old` (applied by the last sync) into `new`, touching only
/// the Service ports that changed (kube-proxy's partial syncs): their map elements, chains
/// and affinity sets; the fixed chains and every unchanged Service's chains stay as they
/// are. None when a full [`render`] is needed (the masquerading CIDR changed).
pub fn render_delta(new: &Ruleset, old: &Ruleset) -> Option<String> {
    if new.local_cidr != old.local_cidr {
        return None;
    }
    let t = format!("ip {TABLE}");
    let by_id = |r: &Ruleset| -> BTreeMap<String, ServicePortRules> {
        r.services
            .iter()
            .map(|s| (s.id.clone(), s.clone()))
            .collect()
    };
    let (old_by, new_by) = (by_id(old), by_id(new));
    let changed: Vec<&ServicePortRules> = new
        .services
        .iter()
        .filter(|s| old_by.get(&s.id) != Some(*s))
        .collect();
    let replaced: Vec<&ServicePortRules> = old
        .services
        .iter()
        .filter(|s| new_by.get(&s.id) != Some(*s))
        .collect();
    let mut o = String::new();
    if changed.is_empty() && replaced.is_empty() {
        return Some(o);
    }
    // 1. Map elements that go (or change their verdict) first: nothing points into the
    //    chains being refilled or deleted any more.
    let before: BTreeSet<_> = replaced.iter().flat_map(|s| map_elements(s)).collect();
    let after: BTreeSet<_> = changed.iter().flat_map(|s| map_elements(s)).collect();
    for (m, k, _) in before.difference(&after) {
        let _ = writeln!(o, "delete element {t} {m} {{ {k} }}");
    }
    // 2. The changed Service ports' chains and sets: declared, flushed, filled.
    let mut owned_before = (BTreeSet::new(), BTreeSet::new());
    for s in &replaced {
        service_objects(s, &mut owned_before);
    }
    let mut owned_after = (BTreeSet::new(), BTreeSet::new());
    for s in &changed {
        service_objects(s, &mut owned_after);
    }
    let all_chains: BTreeSet<&String> = owned_after.0.iter().chain(&owned_before.0).collect();
    for c in &all_chains {
        let _ = writeln!(o, "add chain {t} {c}");
    }
    let mut declared = BTreeSet::new();
    for s in &changed {
        declare_sets(&mut o, &t, s, &mut declared);
    }
    for c in &all_chains {
        let _ = writeln!(o, "flush chain {t} {c}");
    }
    let mut filled = BTreeSet::new();
    for s in &changed {
        fill_service(&mut o, &t, s, new.local_cidr.as_deref(), &mut filled);
    }
    // 3. New elements, then the chains and sets no Service port owns any more.
    let added: Vec<_> = after.difference(&before).cloned().collect();
    add_elements(&mut o, &t, &added);
    for c in owned_before.0.difference(&owned_after.0) {
        let _ = writeln!(o, "delete chain {t} {c}");
    }
    for set in owned_before.1.difference(&owned_after.1) {
        let _ = writeln!(o, "delete set {t} {set}");
    }
    Some(o)
}

/// The transaction that removes the table (clean shutdown).
pub fn render_delete() -> String {
    format!("add table ip {TABLE}\ndelete table ip {TABLE}\n")
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
