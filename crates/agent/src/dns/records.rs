//! The records of the cluster zone, as CoreDNS's `kubernetes` plugin answers them (with the
//! Corefile kubeadm writes: `kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure;
//! fallthrough in-addr.arpa ip6.arpa }`, TTL 5).
//!
//! A [`Zone`] is an immutable snapshot built from the Services, EndpointSlices and Namespaces
//! ([`Zone::build`]); [`Zone::resolve`] is a pure function of it, the query name and type:
//!
//! | name | answer |
//! |------|--------|
//! | `<svc>.<ns>.svc.cluster.local` | ClusterIP: A/AAAA of its `clusterIPs`; headless: the ready endpoint addresses (not-ready ones too with `publishNotReadyAddresses`); ExternalName: CNAME (then the target's addresses) |
//! | `<hostname>.<svc>.<ns>.svc.cluster.local` | the endpoint whose `hostname` (or dashed IP) is the first label |
//! | `_<port>._<proto>.<svc>.<ns>.svc.cluster.local` SRV | one per matching named port (and endpoint, headless), target `<svc>...` or `<hostname>.<svc>...`, the addresses as additional records, weight `100 / n` |
//! | `<a-b-c-d>.<ns>.pod.cluster.local` | A of the address in the name (`pods insecure`) |
//! | PTR `<reversed ip>.in-addr.arpa` / `ip6.arpa` | a ClusterIP's `<svc>.<ns>.svc.cluster.local`, else every endpoint's `<hostname>.<svc>.<ns>.svc.cluster.local`; unknown: forwarded (fallthrough) |
//! | `cluster.local` SOA / NS, `ns.dns.cluster.local`, `dns-version.cluster.local` TXT | the zone's own records |
//!
//! A name that exists with no record of the asked type is NODATA (NOERROR, SOA in the
//! authority section); a name that does not exist — unknown Service or Namespace, a headless
//! Service without ready endpoints, a name with too many labels, a second-level label other
//! than `svc` or `pod` — is NXDOMAIN with the SOA. Answers from the zone are authoritative
//! (AA) without recursion available, as CoreDNS's are. Everything outside the zone is
//! [`Outcome::Forward`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The cluster's DNS domain.
pub const ZONE: &str = crate::pod::etc_files::CLUSTER_DOMAIN;
/// The TTL of every record of the zone (CoreDNS's default `ttl 5`).
pub const TTL: u32 = 5;
use podvisor_api::dns::SERVICE_NAME_LABEL;
/// The schema version `dns-version.<zone>` TXT answers (the Kubernetes DNS specification).
pub const SCHEMA_VERSION: &str = "1.1.0";
/// How many CNAMEs inside the zone are followed for one answer.
const MAX_CHAIN: usize = 8;

/// A Service port as DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Port {
    name: String,
    /// None: an EndpointSlice port without a number (all ports); no SRV record.
    port: Option<u16>,
    /// Lower case (`tcp`, `udp`, `sctp`).
    protocol: String,
}

#[derive(Clone, Debug)]
enum Kind {
    /// `clusterIPs` (empty while none is allocated).
    ClusterIp(Vec<IpAddr>),
    Headless,
    /// The lower-cased `externalName`.
    ExternalName(String),
}

#[derive(Clone, Debug)]
struct Svc {
    kind: Kind,
    ports: Vec<Port>,
}

#[derive(Clone, Debug)]
struct Endpoint {
    ip: IpAddr,
    /// `hostname`, or the address with `.`/`:` replaced by `-`.
    label: String,
    ports: Vec<Port>,
}

/// A snapshot of the cluster zone. See the module documentation.
#[derive(Debug, Default)]
pub struct Zone {
    services: HashMap<(String, String), Svc>,
    endpoints: HashMap<(String, String), Vec<Endpoint>>,
    /// None: not known (every namespace counts as existing).
    namespaces: Option<HashSet<String>>,
    reverse_services: HashMap<IpAddr, (String, String)>,
    reverse_endpoints: HashMap<IpAddr, Vec<String>>,
    serial: u32,
    /// The addresses of `ns.dns.<zone>` (the kube-dns Service's).
    dns_ips: Vec<IpAddr>,
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answer from the zone.
    Answer(Answer),
    /// Not the zone's: ask the node's resolvers.
    Forward,
}

/// An answer from the zone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// NOERROR or NXDOMAIN.
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the SOA of NODATA and NXDOMAIN, the zone's NS).
    pub authorities: Vec<Record>,
    /// The additional section.
    pub additionals: Vec<Record>,
    /// An ExternalName's target outside the zone: its records of the asked type come from
    /// the node's resolvers and are appended to the answer section.
    pub chase: Option<Name>,
}

fn is_v4(ip: &IpAddr) -> bool {
    ip.is_ipv4()
}

/// `10.0.0.1` → `10-0-0-1`, `fd00::1` → `fd00--1` (CoreDNS's `endpointHostname`).
fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

fn service_ports(s: &Service) -> Vec<Port> {
    s.spec
        .iter()
        .flat_map(|sp| sp.ports.iter().flatten())
        .map(|p| Port {
            name: p.name.clone().unwrap_or_default(),
            port: u16::try_from(p.port).ok(),
            protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
        })
        .collect()
}

fn service_kind(s: &Service) -> Kind {
    let spec = s.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        let name = spec.external_name.unwrap_or_default();
        return Kind::ExternalName(name.trim_end_matches('.').to_ascii_lowercase());
    }
    if spec.cluster_ip.as_deref() == Some("None") {
        return Kind::Headless;
    }
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(spec.cluster_ip.and_then(|ip| ip.parse::<IpAddr>().ok()));
    }
    Kind::ClusterIp(ips)
}

fn key(ns: &Option<String>, name: &Option<String>) -> (String, String) {
    (
        ns.clone().unwrap_or_else(|| "default".into()),
        name.clone().unwrap_or_default(),
    )
}

impl Zone {
    /// The zone of `services`, `slices` and `namespaces` (None: unknown), with `serial` in
    /// its SOA and `dns_ips` for `ns.dns.<zone>`.
    pub fn build(
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        namespaces: Option<&[Arc<Namespace>]>,
        serial: u32,
        dns_ips: Vec<IpAddr>,
    ) -> Zone {
        let mut zone = Zone {
            namespaces: namespaces.map(|list| {
                list.iter()
                    .filter_map(|n| n.metadata.name.clone())
                    .collect()
            }),
            serial,
            dns_ips,
            ..Zone::default()
        };
        let mut publish_not_ready = HashSet::new();
        for s in services {
            let k = key(&s.metadata.namespace, &s.metadata.name);
            let svc = Svc {
                kind: service_kind(s),
                ports: service_ports(s),
            };
            if let Kind::ClusterIp(ips) = &svc.kind {
                for ip in ips {
                    zone.reverse_services.insert(*ip, k.clone());
                }
            }
            if s.spec
                .as_ref()
                .and_then(|sp| sp.publish_not_ready_addresses)
                .unwrap_or(false)
            {
                publish_not_ready.insert(k.clone());
            }
            zone.services.insert(k, svc);
        }
        for slice in slices {
            let Some(svc_name) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            let k = key(&slice.metadata.namespace, &Some(svc_name.clone()));
            let ports: Vec<Port> = slice
                .ports
                .iter()
                .flatten()
                .map(|p| Port {
                    name: p.name.clone().unwrap_or_default(),
                    port: p.port.and_then(|n| u16::try_from(n).ok()),
                    protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                })
                .collect();
            let all = publish_not_ready.contains(&k);
            for ep in &slice.endpoints {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                if !ready && !all {
                    continue;
                }
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<IpAddr>() else {
                        continue;
                    };
                    let label = ep
                        .hostname
                        .clone()
                        .filter(|h| !h.is_empty())
                        .unwrap_or_else(|| dashed(&ip));
                    zone.reverse_endpoints
                        .entry(ip)
                        .or_default()
                        .push(format!("{}.{}.{}.svc.{ZONE}.", label, k.1, k.0));
                    zone.endpoints.entry(k.clone()).or_default().push(Endpoint {
                        ip,
                        label: label.to_ascii_lowercase(),
                        ports: ports.clone(),
                    });
                }
            }
        }
        zone
    }

    /// How many Services the zone has.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|n| n.contains(ns))
    }

    fn zone_name() -> Name {
        Name::from_ascii(format!("{ZONE}.")).unwrap_or_else(|_| Name::root())
    }

    /// The zone's SOA record.
    pub fn soa(&self) -> Record {
        let zone = Self::zone_name();
        let mname = Name::from_ascii(format!("ns.dns.{ZONE}.")).unwrap_or_else(|_| zone.clone());
        let rname =
            Name::from_ascii(format!("hostmaster.{ZONE}.")).unwrap_or_else(|_| zone.clone());
        Record::from_rdata(
            zone,
            TTL,
            RData::SOA(SOA::new(mname, rname, self.serial, 7200, 1800, 86400, TTL)),
        )
    }

    fn empty(&self, rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            authorities: vec![self.soa()],
            ..Answer::default()
        }
    }

    /// What to answer to `qname` / `qtype`. See the module documentation.
    pub fn resolve(&self, qname: &Name, qtype: RecordType) -> Outcome {
        let text = qname.to_ascii().to_ascii_lowercase();
        let text = text.trim_end_matches('.');
        if let Some(ip) = reverse_ip(text) {
            return match qtype {
                RecordType::PTR => self.ptr(qname, ip),
                _ => Outcome::Forward,
            };
        }
        let base = if text == ZONE {
            ""
        } else if let Some(b) = text.strip_suffix(ZONE).and_then(|b| b.strip_suffix('.')) {
            b
        } else {
            return Outcome::Forward;
        };
        Outcome::Answer(self.resolve_in_zone(qname, base, qtype, 0))
    }

    fn ptr(&self, qname: &Name, ip: IpAddr) -> Outcome {
        let targets: Vec<String> = match self.reverse_services.get(&ip) {
            Some((ns, name)) => vec![format!("{name}.{ns}.svc.{ZONE}.")],
            None => self.reverse_endpoints.get(&ip).cloned().unwrap_or_default(),
        };
        let answers: Vec<Record> = targets
            .iter()
            .filter_map(|t| Name::from_ascii(t).ok())
            .map(|t| Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(t))))
            .collect();
        if answers.is_empty() {
            // fallthrough in-addr.arpa ip6.arpa
            return Outcome::Forward;
        }
        Outcome::Answer(Answer {
            answers,
            ..Answer::default()
        })
    }

    fn resolve_in_zone(&self, qname: &Name, base: &str, qtype: RecordType, depth: usize) -> Answer {
        let zone = Self::zone_name();
        match (base, qtype) {
            ("", RecordType::SOA) => {
                return Answer {
                    answers: vec![self.soa()],
                    ..Answer::default()
                };
            }
            ("", RecordType::NS) => {
                let Ok(ns) = Name::from_ascii(format!("ns.dns.{ZONE}.")) else {
                    return self.empty(ResponseCode::NoError);
                };
                return Answer {
                    answers: vec![Record::from_rdata(zone, TTL, RData::NS(NS(ns.clone())))],
                    additionals: address_records(&ns, &self.dns_ips, None),
                    ..Answer::default()
                };
            }
            ("", _) | ("svc", _) | ("pod", _) => return self.empty(ResponseCode::NoError),
            ("dns-version", RecordType::TXT) => {
                return Answer {
                    answers: vec![Record::from_rdata(
                        qname.clone(),
                        TTL,
                        RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
                    )],
                    ..Answer::default()
                };
            }
            ("dns-version", _) => return self.empty(ResponseCode::NoError),
            ("ns.dns", RecordType::A | RecordType::AAAA) => {
                let answers = address_records(qname, &self.dns_ips, Some(qtype));
                return Answer {
                    answers,
                    authorities: Vec::new(),
                    ..Answer::default()
                }
                .or_nodata(self);
            }
            ("ns.dns", _) => return self.empty(ResponseCode::NoError),
            _ => {}
        }
        let Some(request) = parse(base) else {
            return self.empty(ResponseCode::NXDomain);
        };
        let targets = match request.kind {
            Level::Pod => self.find_pod(&request),
            Level::Svc => self.find_services(&request),
        };
        let Some(targets) = targets else {
            return self.empty(ResponseCode::NXDomain);
        };
        match qtype {
            RecordType::A | RecordType::AAAA => {
                let mut seen = BTreeSet::new();
                let mut answer = Answer::default();
                for t in &targets {
                    match &t.host {
                        Host::Ip(ip) => {
                            if family_matches(ip, qtype) && seen.insert(*ip) {
                                answer.answers.extend(address_records(qname, &[*ip], None));
                            }
                        }
                        Host::Name(target) => {
                            let Ok(target) = Name::from_ascii(format!("{target}.")) else {
                                continue;
                            };
                            answer.answers.push(Record::from_rdata(
                                qname.clone(),
                                TTL,
                                RData::CNAME(CNAME(target.clone())),
                            ));
                            self.follow(&target, qtype, depth, &mut answer);
                            break;
                        }
                    }
                }
                answer.or_nodata(self)
            }
            RecordType::CNAME => {
                let answers = targets
                    .iter()
                    .filter_map(|t| match &t.host {
                        Host::Name(n) => Name::from_ascii(format!("{n}.")).ok(),
                        Host::Ip(_) => None,
                    })
                    .map(|n| Record::from_rdata(qname.clone(), TTL, RData::CNAME(CNAME(n))))
                    .take(1)
                    .collect();
                Answer {
                    answers,
                    ..Answer::default()
                }
                .or_nodata(self)
            }
            RecordType::SRV => srv(qname, &targets).or_nodata(self),
            _ => self.empty(ResponseCode::NoError),
        }
    }

    /// Follows a CNAME target: inside the zone by resolving it here (bounded), outside by
    /// asking the upstream resolvers (`chase`).
    fn follow(&self, target: &Name, qtype: RecordType, depth: usize, answer: &mut Answer) {
        let text = target.to_ascii().to_ascii_lowercase();
        let text = text.trim_end_matches('.');
        let inside = if text == ZONE {
            Some("")
        } else {
            text.strip_suffix(ZONE).and_then(|b| b.strip_suffix('.'))
        };
        match inside {
            Some(base) if depth < MAX_CHAIN => {
                let inner = self.resolve_in_zone(target, base, qtype, depth + 1);
                answer.answers.extend(inner.answers);
                answer.chase = inner.chase;
            }
            Some(_) => {}
            None => answer.chase = Some(target.clone()),
        }
    }

    /// `pods insecure`: the address is the name.
    fn find_pod(&self, r: &Request) -> Option<Vec<Target>> {
        if r.endpoint.is_some() || r.port.is_some() {
            return None;
        }
        let podname = r.service.as_deref()?;
        if !self.namespace_exists(&r.namespace) {
            return None;
        }
        let text = if podname.matches('-').count() == 3 && !podname.contains("--") {
            podname.replace('-', ".")
        } else {
            podname.replace('-', ":")
        };
        let ip: IpAddr = text.parse().ok()?;
        Some(vec![Target {
            owner: None,
            host: Host::Ip(ip),
            port: None,
        }])
    }

    /// CoreDNS's `findServices`: None is "no such name" (NXDOMAIN); an empty list is NODATA.
    fn find_services(&self, r: &Request) -> Option<Vec<Target>> {
        if !self.namespace_exists(&r.namespace) {
            return None;
        }
        let Some(name) = r.service.as_deref() else {
            return Some(Vec::new());
        };
        let k = (r.namespace.clone(), name.to_string());
        let svc = self.services.get(&k)?;
        let base = format!("{name}.{}.svc.{ZONE}.", r.namespace);
        let mut found = false;
        let mut out = Vec::new();
        match &svc.kind {
            Kind::ExternalName(target) => {
                // External services cannot have endpoints; an address is not a CNAME.
                if r.endpoint.is_some() || target.is_empty() || target.parse::<IpAddr>().is_ok() {
                    return None;
                }
                out.push(Target {
                    owner: Some(base),
                    host: Host::Name(target.clone()),
                    port: None,
                });
                return Some(out);
            }
            Kind::Headless => {}
            Kind::ClusterIp(_) if r.endpoint.is_some() => {}
            Kind::ClusterIp(ips) => {
                for p in &svc.ports {
                    if !r.matches(p) {
                        continue;
                    }
                    found = true;
                    for ip in ips {
                        out.push(Target {
                            owner: Some(base.clone()),
                            host: Host::Ip(*ip),
                            port: p.port,
                        });
                    }
                }
                return found.then_some(out);
            }
        }
        for ep in self.endpoints.get(&k).into_iter().flatten() {
            if r.endpoint.as_ref().is_some_and(|e| e != &ep.label) {
                continue;
            }
            for p in &ep.ports {
                if !r.matches(p) {
                    continue;
                }
                found = true;
                out.push(Target {
                    owner: Some(format!("{}.{base}", ep.label)),
                    host: Host::Ip(ep.ip),
                    port: p.port,
                });
            }
        }
        found.then_some(out)
    }
}

impl Answer {
    /// An answer without records is NODATA: NOERROR with the SOA.
    fn or_nodata(mut self, zone: &Zone) -> Answer {
        if self.answers.is_empty() && self.chase.is_none() {
            self.authorities = vec![zone.soa()];
        }
        self
    }
}

fn family_matches(ip: &IpAddr, qtype: RecordType) -> bool {
    match qtype {
        RecordType::A => is_v4(ip),
        RecordType::AAAA => !is_v4(ip),
        _ => true,
    }
}

/// A/AAAA records of `ips` at `name` (only the family of `only` when given).
fn address_records(name: &Name, ips: &[IpAddr], only: Option<RecordType>) -> Vec<Record> {
    ips.iter()
        .filter(|ip| only.is_none_or(|t| family_matches(ip, t)))
        .map(|ip| {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
            };
            Record::from_rdata(name.clone(), TTL, data)
        })
        .collect()
}

/// SRV records as CoreDNS's `plugin.SRV`: weight `floor(100 / n)` for the n services of one
/// priority, duplicates (same target and port) dropped, the targets' addresses as
/// additional records.
fn srv(qname: &Name, targets: &[Target]) -> Answer {
    let n = targets.len().max(1);
    let weight = u16::try_from((100 / n).max(1)).unwrap_or(1);
    let mut answer = Answer::default();
    let mut seen_srv = HashSet::new();
    let mut seen_addr = HashSet::new();
    for t in targets {
        let Some(port) = t.port else {
            continue;
        };
        let (target, addr) = match &t.host {
            Host::Name(n) => (format!("{n}."), None),
            Host::Ip(ip) => (t.owner.clone().unwrap_or_default(), Some(*ip)),
        };
        let Ok(target_name) = Name::from_ascii(&target) else {
            continue;
        };
        if seen_srv.insert((target.clone(), port)) {
            answer.answers.push(Record::from_rdata(
                qname.clone(),
                TTL,
                RData::SRV(SRV::new(0, weight, port, target_name.clone())),
            ));
        }
        if let Some(ip) = addr
            && seen_addr.insert((target, ip))
        {
            answer
                .additionals
                .extend(address_records(&target_name, &[ip], None));
        }
    }
    answer
}

/// A record source found for a name (CoreDNS's `msg.Service`).
#[derive(Debug)]
struct Target {
    /// The owner name of SRV targets (`<svc>.<ns>.svc.<zone>.` or with the endpoint label).
    owner: Option<String>,
    host: Host,
    port: Option<u16>,
}

#[derive(Debug)]
enum Host {
    Ip(IpAddr),
    /// A domain (ExternalName), lower case, without the final dot.
    Name(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Level {
    Svc,
    Pod,
}

/// A parsed name below the zone (CoreDNS's `recordRequest`).
#[derive(Debug, PartialEq, Eq)]
struct Request {
    kind: Level,
    namespace: String,
    service: Option<String>,
    endpoint: Option<String>,
    /// `(port name, protocol)` from `_port._proto.`.
    port: Option<(String, String)>,
}

impl Request {
    fn matches(&self, p: &Port) -> bool {
        match &self.port {
            None => true,
            Some((name, proto)) => name.eq_ignore_ascii_case(&p.name) && proto == &p.protocol,
        }
    }
}

/// CoreDNS's `parseRequest` of the labels before the zone (`base`, lower case): None for
/// names that cannot exist.
fn parse(base: &str) -> Option<Request> {
    let mut segs: Vec<&str> = base.split('.').collect();
    let kind = match segs.pop()? {
        "svc" => Level::Svc,
        "pod" => Level::Pod,
        _ => return None,
    };
    let namespace = segs.pop()?.to_string();
    let service = segs.pop().map(str::to_string);
    let strip = |s: &str| s.strip_prefix('_').unwrap_or(s).to_string();
    let (endpoint, port) = match segs.as_slice() {
        [] => (None, None),
        [e] => (Some(e.to_string()), None),
        [port, proto] => (None, Some((strip(port), strip(proto)))),
        _ => return None,
    };
    Some(Request {
        kind,
        namespace,
        service,
        endpoint,
        port,
    })
}

/// The address of a full reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles `.ip6.arpa`).
fn reverse_ip(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        parts.reverse();
        return parts.join(".").parse().ok();
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = rest.split('.').collect();
    if nibbles.len() != 32 || nibbles.iter().any(|n| n.len() != 1) {
        return None;
    }
    let hex: String = nibbles.iter().rev().copied().collect();
    let groups: Vec<&str> = (0..8).map(|i| &hex[i * 4..i * 4 + 4]).collect();
    groups.join(":").parse().ok()
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
