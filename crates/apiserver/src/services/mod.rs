//! Services in the API server: the cluster IP and node port allocators, and the `kubernetes`
//! Service with the endpoints the API servers keep for it ([`kubernetes`]).
//!
//! # Allocations
//!
//! Every cluster IP and node port a Service holds is a *reservation*: one key in the store
//! (`/podvisor/ranges/serviceips/<ip>`, `/podvisor/ranges/servicenodeports/<port>`) naming
//! the Service (namespace, name, uid). A reservation is made with the store's
//! create-if-absent, so two requests (on one server or on several sharing etcd) can never
//! both get one value, and it survives restarts with the store: a restarted server cannot
//! hand out a value a stored Service holds.
//!
//! ```text
//! create:  default → validate → reserve (asked-for value, else random free) → store
//!          the store write fails → release what this request reserved
//! update:  keep what the client left out (carry_allocated) → validate → reserve new values
//!          → store → release values the stored Service no longer holds
//!          a conflict → release what this attempt reserved, retry
//! delete:  the Service is removed → release its values
//! repair:  at start and every 3 minutes: a stored Service's value without a reservation is
//!          reserved again; a reservation of a Service that no longer exists (or has another
//!          uid) and is older than a minute is released (a crash between reserve and store
//!          leaks one for at most that long; a younger one may be a create in flight).
//! ```
//!
//! Dynamic cluster IPs come first from the upper part of the range: the lowest
//! `min(max(16, size/16), 256)` addresses are left for Services that ask for a specific IP
//! (upstream's `ServiceIPStaticSubrange`); the first address is the `kubernetes` Service's.
//! Node ports: a Service whose ports share a port number (53/TCP and 53/UDP) gets one node
//! port for them, as upstream does.
//!
//! Errors are upstream's: `provided IP is already allocated`, `provided port is already
//! allocated`, the range messages, and `range is full` (500).

pub mod kubernetes;

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::time::Duration;

use podvisor_api::FieldError;
use podvisor_api::service::{self as svc, CLUSTER_IP_NONE};
use podvisor_store::{ListOptions, StoreError};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects;
use crate::ops::Core;
use crate::registry::{ResourceKind, SERVICES};

/// Where reservations of cluster IPs live in the store.
pub const IP_PREFIX: &str = "/podvisor/ranges/serviceips/";
/// Where reservations of node ports live in the store.
pub const PORT_PREFIX: &str = "/podvisor/ranges/servicenodeports/";
/// How often allocations are repaired.
pub const REPAIR_PERIOD: Duration = Duration::from_secs(180);
/// How old an orphan reservation must be before repair releases it.
pub const ORPHAN_AGE: Duration = Duration::from_secs(60);

/// The cluster's Service networks (`--service-cluster-ip-range`,
/// `--service-node-port-range`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNetwork {
    base: u32,
    prefix: u8,
    node_ports: RangeInclusive<u16>,
}

impl Default for ServiceNetwork {
    fn default() -> Self {
        ServiceNetwork::parse("10.96.0.0/12", "30000-32767").unwrap_or(ServiceNetwork {
            base: u32::from(Ipv4Addr::new(10, 96, 0, 0)),
            prefix: 12,
            node_ports: 30000..=32767,
        })
    }
}

impl ServiceNetwork {
    /// Parses an IPv4 CIDR (`10.96.0.0/12`, prefix 8–30) and a port range (`30000-32767`).
    pub fn parse(cidr: &str, node_ports: &str) -> Result<ServiceNetwork, String> {
        let (ip, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| format!("service cluster IP range {cidr:?}: not a CIDR"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| {
            format!("service cluster IP range {cidr:?}: only IPv4 ranges are supported")
        })?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("service cluster IP range {cidr:?}: bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "service cluster IP range {cidr:?}: the prefix length must be between 8 and 30"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        let (first, last) = node_ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
            .ok_or_else(|| {
                format!("service node port range {node_ports:?}: expected FIRST-LAST")
            })?;
        if first == 0 || first > last {
            return Err(format!(
                "service node port range {node_ports:?}: empty or invalid"
            ));
        }
        Ok(ServiceNetwork {
            base: u32::from(ip) & mask,
            prefix,
            node_ports: first..=last,
        })
    }

    /// The range as a CIDR string.
    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }

    /// The node port range as `FIRST-LAST`.
    pub fn node_port_range(&self) -> String {
        format!("{}-{}", self.node_ports.start(), self.node_ports.end())
    }

    /// Usable addresses: all but the network and broadcast addresses.
    fn size(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The `n`th usable address (1-based: 1 is the network address + 1).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        (n >= 1 && n <= self.size()).then(|| Ipv4Addr::from(self.base + n))
    }

    /// The `kubernetes` Service's IP (the first usable address).
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let n = u32::from(ip).wrapping_sub(self.base);
        (n >= 1
            && n <= self.size()
            && u32::from(ip) & (u32::MAX << (32 - self.prefix)) == self.base)
            .then_some(n)
    }

    /// Size of the lower band kept for asked-for IPs.
    fn static_band(&self) -> u32 {
        (self.size() / 16).clamp(16, 256).min(self.size())
    }

    fn ip_range_error(&self, ip: &str) -> String {
        format!(
            "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
            self.cidr()
        )
    }
}

/// A value a Service holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Allocated {
    /// A cluster IP.
    ClusterIp(Ipv4Addr),
    /// A node port.
    NodePort(u16),
}

impl Allocated {
    fn key(self) -> String {
        match self {
            Allocated::ClusterIp(ip) => format!("{IP_PREFIX}{ip}"),
            Allocated::NodePort(p) => format!("{PORT_PREFIX}{p}"),
        }
    }

    fn from_key(key: &str) -> Option<Allocated> {
        if let Some(ip) = key.strip_prefix(IP_PREFIX) {
            return ip.parse().ok().map(Allocated::ClusterIp);
        }
        key.strip_prefix(PORT_PREFIX)?
            .parse()
            .ok()
            .map(Allocated::NodePort)
    }
}

/// The values a Service object holds (what its spec says), in the network's range.
pub fn held_by(net: &ServiceNetwork, obj: &Value) -> Vec<Allocated> {
    let Ok(s) = serde_json::from_value::<k8s_openapi::api::core::v1::Service>(obj.clone()) else {
        return Vec::new();
    };
    let Some(spec) = s.spec else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if svc::needs_cluster_ip(&spec) {
        for ip in svc::cluster_ips(&spec) {
            if let Ok(ip) = ip.parse::<Ipv4Addr>()
                && net.offset(ip).is_some()
            {
                out.push(Allocated::ClusterIp(ip));
            }
        }
    }
    if svc::needs_node_ports(&spec) {
        for p in spec.ports.iter().flatten() {
            if let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok())
                && net.node_ports.contains(&np)
                && !out.contains(&Allocated::NodePort(np))
            {
                out.push(Allocated::NodePort(np));
            }
        }
    }
    out
}

/// On update of a Service: what the client left out that `old` holds (cluster IPs, node
/// ports) is kept; what the new type does not use is dropped ([`svc::carry_allocated`]).
pub(crate) fn carry_allocated(
    kind: &ResourceKind,
    new: &mut Value,
    old: &Value,
) -> Result<(), ApiError> {
    use k8s_openapi::api::core::v1::Service;
    let parse = |v: &Value| {
        serde_json::from_value::<Service>(v.clone()).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version {:?} cannot be handled as a {}: {e}",
                kind.kind, kind.version, kind.kind
            ))
        })
    };
    let mut n = parse(new)?;
    svc::carry_allocated(&mut n, &parse(old)?);
    *new = serde_json::to_value(&n).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(())
}

/// Who holds a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    namespace: String,
    name: String,
    uid: String,
}

impl Owner {
    fn of(obj: &Value) -> Owner {
        Owner {
            namespace: objects::meta_str(obj, "namespace")
                .unwrap_or("")
                .to_string(),
            name: objects::name_of(obj).to_string(),
            uid: objects::meta_str(obj, "uid").unwrap_or("").to_string(),
        }
    }

    fn record(&self, now: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"namespace": self.namespace, "name": self.name,
            "uid": self.uid, "allocated": now}))
        .unwrap_or_default()
    }

    fn from_record(bytes: &[u8]) -> Option<(Owner, String)> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Some((
            Owner {
                namespace: s("namespace"),
                name: s("name"),
                uid: s("uid"),
            },
            s("allocated"),
        ))
    }
}

/// Reservations made by one request: released unless the request commits.
#[derive(Debug, Default)]
#[must_use = "release the reservations if the write fails"]
pub(crate) struct Reserved(Vec<Allocated>);

fn random_u32() -> u32 {
    (uuid::Uuid::new_v4().as_u128() >> 64) as u32
}

fn store_err(e: StoreError) -> ApiError {
    ApiError::from_store_generic(e)
}

impl Core {
    /// Reserves `value` for `owner`: `Ok(true)` if this call made the reservation,
    /// `Ok(false)` if the owner already held it; `Err(None)` when another Service holds it.
    async fn reserve(
        &self,
        value: Allocated,
        owner: &Owner,
        dry_run: bool,
    ) -> Result<Result<bool, ()>, ApiError> {
        let store = &self.storage.store;
        let held = |kv: Option<podvisor_store::KeyValue>| match kv {
            None => None,
            Some(kv) => {
                Some(Owner::from_record(&kv.value).is_some_and(|(o, _)| o.uid == owner.uid))
            }
        };
        if dry_run {
            return Ok(
                match held(store.get(&value.key()).await.map_err(store_err)?) {
                    None => Ok(true),
                    Some(true) => Ok(false),
                    Some(false) => Err(()),
                },
            );
        }
        match store
            .create(&value.key(), owner.record(&self.now_str()))
            .await
        {
            Ok(_) => Ok(Ok(true)),
            Err(StoreError::AlreadyExists { .. }) => {
                match held(store.get(&value.key()).await.map_err(store_err)?) {
                    Some(true) => Ok(Ok(false)),
                    Some(false) => Ok(Err(())),
                    // Released in between: try once more.
                    None => match store
                        .create(&value.key(), owner.record(&self.now_str()))
                        .await
                    {
                        Ok(_) => Ok(Ok(true)),
                        Err(StoreError::AlreadyExists { .. }) => Ok(Err(())),
                        Err(e) => Err(store_err(e)),
                    },
                }
            }
            Err(e) => Err(store_err(e)),
        }
    }

    /// Releases `values` if `owner_uid` holds them (never another Service's reservation).
    async fn release(&self, values: &[Allocated], owner_uid: &str) {
        let store = &self.storage.store;
        for v in values {
            let key = v.key();
            let Ok(Some(kv)) = store.get(&key).await else {
                continue;
            };
            if Owner::from_record(&kv.value).is_some_and(|(o, _)| o.uid == owner_uid)
                && let Err(e) = store.delete(&key, Some(kv.mod_revision)).await
                && !matches!(e, StoreError::NotFound { .. } | StoreError::Conflict { .. })
            {
                tracing::warn!(%key, error = %e, "releasing a service allocation");
            }
        }
    }

    /// Releases what a failed or abandoned request reserved.
    pub(crate) async fn release_reserved(&self, reserved: Reserved, obj: &Value) {
        if !reserved.0.is_empty() {
            self.release(&reserved.0, &Owner::of(obj).uid).await;
        }
    }

    /// What follows the removal of a Service from the store.
    pub(crate) async fn after_service_removed(&self, obj: &Value) {
        let held = held_by(&self.services, obj);
        self.release(&held, &Owner::of(obj).uid).await;
    }

    /// What follows an update of a Service: values the old object held and the new one does
    /// not are released.
    pub(crate) async fn after_service_updated(&self, old: &Value, new: &Value) {
        let now = held_by(&self.services, new);
        let gone: Vec<Allocated> = held_by(&self.services, old)
            .into_iter()
            .filter(|v| !now.contains(v))
            .collect();
        self.release(&gone, &Owner::of(old).uid).await;
    }

    /// Allocates what a Service being created (`old` None) or updated needs: cluster IPs,
    /// IP families, node ports. Fills them into `obj`.
    pub(crate) async fn allocate_service(
        &self,
        kind: &ResourceKind,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Reserved, ApiError> {
        let mut reserved = Reserved::default();
        if kind != &SERVICES {
            return Ok(reserved);
        }
        let owner = Owner::of(obj);
        let name = owner.name.clone();
        let result = self
            .allocate_into(obj, old, &owner, dry_run, &mut reserved)
            .await;
        match result {
            Ok(()) => Ok(reserved),
            Err(e) => {
                self.release(&reserved.0, &owner.uid).await;
                Err(match e {
                    AllocError::Field(errs) => ApiError::invalid(&SERVICES, &name, &errs),
                    AllocError::Api(e) => e,
                })
            }
        }
    }

    async fn allocate_into(
        &self,
        obj: &mut Value,
        old: Option<&Value>,
        owner: &Owner,
        dry_run: bool,
        reserved: &mut Reserved,
    ) -> Result<(), AllocError> {
        let net = self.services.clone();
        let mut s: k8s_openapi::api::core::v1::Service = serde_json::from_value(obj.clone())
            .map_err(|e| AllocError::Api(ApiError::bad_request(e.to_string())))?;
        let old_held = old.map(|o| held_by(&net, o)).unwrap_or_default();
        let spec = s.spec.get_or_insert_with(Default::default);
        if svc::needs_cluster_ip(spec) {
            let headless = svc::is_headless(spec);
            let ips = svc::cluster_ips(spec);
            match ips.first().map(String::as_str) {
                Some(CLUSTER_IP_NONE) => {}
                Some(ip) => {
                    let parsed: Option<Ipv4Addr> = ip.parse().ok();
                    let value = parsed
                        .filter(|p| net.offset(*p).is_some())
                        .map(Allocated::ClusterIp);
                    match value {
                        None => {
                            return Err(AllocError::field(
                                "spec.clusterIPs",
                                &ips,
                                net.ip_range_error(ip),
                            ));
                        }
                        Some(v) if old_held.contains(&v) => {}
                        Some(v) => match self.reserve(v, owner, dry_run).await? {
                            Ok(true) => reserved.0.push(v),
                            Ok(false) => {}
                            Err(()) => {
                                return Err(AllocError::field(
                                    "spec.clusterIPs",
                                    &ips,
                                    format!(
                                        "failed to allocate IP {ip}: provided IP is already allocated"
                                    ),
                                ));
                            }
                        },
                    }
                }
                None => {
                    let ip = self.allocate_random_ip(owner, dry_run).await?;
                    reserved.0.push(Allocated::ClusterIp(ip));
                    spec.cluster_ip = Some(ip.to_string());
                    spec.cluster_ips = Some(vec![ip.to_string()]);
                }
            }
            if spec.cluster_ip.as_deref().unwrap_or("").is_empty()
                && let Some(first) = svc::cluster_ips(spec).first()
            {
                spec.cluster_ip = Some(first.clone());
            }
            if spec.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
                spec.cluster_ips = spec.cluster_ip.clone().map(|ip| vec![ip]);
            }
            if spec.ip_family_policy.is_none() {
                let selectorless = spec.selector.as_ref().is_none_or(|s| s.is_empty());
                spec.ip_family_policy = Some(
                    if headless && selectorless {
                        "RequireDualStack"
                    } else {
                        "SingleStack"
                    }
                    .into(),
                );
            }
            if spec.ip_families.as_ref().is_none_or(Vec::is_empty) {
                spec.ip_families = Some(vec!["IPv4".into()]);
            }
        }
        if svc::needs_node_ports(spec) {
            let mut by_port: Vec<(i32, i32)> = Vec::new();
            let n = spec.ports.as_ref().map_or(0, Vec::len);
            for i in 0..n {
                let Some(p) = spec.ports.as_mut().and_then(|p| p.get_mut(i)) else {
                    continue;
                };
                let field = format!("spec.ports[{i}].nodePort");
                match p.node_port.filter(|n| *n != 0) {
                    Some(np) => {
                        let value = u16::try_from(np)
                            .ok()
                            .filter(|v| net.node_ports.contains(v))
                            .map(Allocated::NodePort);
                        let Some(v) = value else {
                            return Err(AllocError::Field(vec![FieldError::invalid(
                                field,
                                np,
                                format!(
                                    "provided port is not in the valid range. The range of valid ports is {}",
                                    net.node_port_range()
                                ),
                            )]));
                        };
                        if !old_held.contains(&v) && !reserved.0.contains(&v) {
                            match self.reserve(v, owner, dry_run).await? {
                                Ok(true) => reserved.0.push(v),
                                Ok(false) => {}
                                Err(()) => {
                                    return Err(AllocError::Field(vec![FieldError::invalid(
                                        field,
                                        np,
                                        "provided port is already allocated",
                                    )]));
                                }
                            }
                        }
                        by_port.push((p.port, np));
                    }
                    None => {
                        if let Some((_, np)) = by_port.iter().find(|(port, _)| *port == p.port) {
                            p.node_port = Some(*np);
                            continue;
                        }
                        let np = self.allocate_random_port(owner, dry_run).await?;
                        reserved.0.push(Allocated::NodePort(np));
                        p.node_port = Some(i32::from(np));
                        by_port.push((p.port, i32::from(np)));
                    }
                }
            }
        }
        *obj = serde_json::to_value(&s)
            .map_err(|e| AllocError::Api(ApiError::internal(e.to_string())))?;
        Ok(())
    }

    async fn allocate_random_ip(
        &self,
        owner: &Owner,
        dry_run: bool,
    ) -> Result<Ipv4Addr, AllocError> {
        let net = &self.services;
        let band = net.static_band();
        let size = net.size();
        // Upper band first, then the lower one (offsets 1..=size; 1 is kept for `kubernetes`).
        let bands = [(band + 1, size), (2, band)];
        for (lo, hi) in bands {
            if lo > hi {
                continue;
            }
            let span = hi - lo + 1;
            // A few random tries; then a scan that skips the reservations that exist.
            for _ in 0..8 {
                let ip = Ipv4Addr::from(net.base + lo + random_u32() % span);
                if let Ok(true) = self
                    .reserve(Allocated::ClusterIp(ip), owner, dry_run)
                    .await?
                {
                    return Ok(ip);
                }
            }
            let used = self.reserved_values(IP_PREFIX).await?;
            let start = random_u32() % span;
            for k in 0..span {
                let ip = Ipv4Addr::from(net.base + lo + (start + k) % span);
                if used.contains(&Allocated::ClusterIp(ip)) {
                    continue;
                }
                if let Ok(true) = self
                    .reserve(Allocated::ClusterIp(ip), owner, dry_run)
                    .await?
                {
                    return Ok(ip);
                }
            }
        }
        Err(AllocError::Api(ApiError::internal(
            "failed to allocate a serviceIP: range is full",
        )))
    }

    async fn allocate_random_port(&self, owner: &Owner, dry_run: bool) -> Result<u16, AllocError> {
        let range = self.services.node_ports.clone();
        let span = u32::from(*range.end() - *range.start()) + 1;
        let used = self.reserved_values(PORT_PREFIX).await?;
        let start = random_u32() % span;
        for k in 0..span {
            let port = *range.start() + ((start + k) % span) as u16;
            if used.contains(&Allocated::NodePort(port)) {
                continue;
            }
            if let Ok(true) = self
                .reserve(Allocated::NodePort(port), owner, dry_run)
                .await?
            {
                return Ok(port);
            }
        }
        Err(AllocError::Api(ApiError::internal(
            "failed to allocate a nodePort: range is full",
        )))
    }

    async fn reserved_values(
        &self,
        prefix: &str,
    ) -> Result<std::collections::HashSet<Allocated>, ApiError> {
        Ok(self
            .reservations(prefix)
            .await?
            .into_iter()
            .map(|(v, ..)| v)
            .collect())
    }

    /// Every reservation under `prefix`: value, holder, when it was made, its revision.
    async fn reservations(
        &self,
        prefix: &str,
    ) -> Result<Vec<(Allocated, Owner, String, i64)>, ApiError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .storage
                .store
                .list(
                    prefix,
                    ListOptions {
                        limit: 1000,
                        continue_after: after.take(),
                        ..ListOptions::default()
                    },
                )
                .await
                .map_err(store_err)?;
            for kv in &page.items {
                if let (Some(v), Some((o, at))) =
                    (Allocated::from_key(&kv.key), Owner::from_record(&kv.value))
                {
                    out.push((v, o, at, kv.mod_revision));
                }
            }
            match (page.more, page.items.last()) {
                (true, Some(last)) => after = Some(last.key.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Brings reservations and stored Services together (see the module essay). Returns how
    /// many reservations were made and released.
    pub async fn repair_service_allocations(&self) -> Result<(usize, usize), ApiError> {
        let services = self
            .storage
            .list(&SERVICES.prefix(), 0, None, None, &|_| true)
            .await?
            .items;
        let mut holders = std::collections::HashMap::new();
        let mut made = 0;
        for s in &services {
            let owner = Owner::of(s);
            for v in held_by(&self.services, s) {
                holders.insert(v, owner.uid.clone());
                match self.reserve(v, &owner, false).await? {
                    Ok(true) => made += 1,
                    Ok(false) => {}
                    Err(()) => tracing::warn!(
                        value = ?v,
                        service = %format!("{}/{}", owner.namespace, owner.name),
                        "the value was assigned to multiple services; please recreate the service"
                    ),
                }
            }
        }
        let now = self.now();
        let mut released = 0;
        for prefix in [IP_PREFIX, PORT_PREFIX] {
            for (v, owner, at, rev) in self.reservations(prefix).await? {
                if holders.get(&v) == Some(&owner.uid) {
                    continue;
                }
                let old_enough = at
                    .parse::<jiff::Timestamp>()
                    .map(|t| now.duration_since(t).as_secs() >= ORPHAN_AGE.as_secs() as i64)
                    .unwrap_or(true);
                if old_enough && self.storage.store.delete(&v.key(), Some(rev)).await.is_ok() {
                    released += 1;
                }
            }
        }
        if made + released > 0 {
            tracing::info!(made, released, "repaired service allocations");
        }
        Ok((made, released))
    }
}

enum AllocError {
    Field(Vec<FieldError>),
    Api(ApiError),
}

impl AllocError {
    fn field(field: &str, ips: &[String], detail: String) -> AllocError {
        AllocError::Field(vec![FieldError::invalid(
            field,
            serde_json::to_value(ips).unwrap_or_default(),
            detail,
        )])
    }
}

impl From<ApiError> for AllocError {
    fn from(e: ApiError) -> Self {
        AllocError::Api(e)
    }
}

#[cfg(test)]
mod tests;
