//! The `kubernetes` Service in `default` and its endpoints, kept by the API servers
//! themselves (upstream's bootstrap controller and `lease` endpoint reconciler).
//!
//! ```text
//! start:        the Service exists (first IP of the range, 443/TCP "https" → the secure
//!               port), created if missing, its ports put back if changed
//! every 10 s:   this server renews its lease (/podvisor/masterleases/<ip>, 15 s TTL),
//!               reads every unexpired lease, writes Endpoints `kubernetes` and the
//!               EndpointSlice `kubernetes` with those addresses (sorted) if they differ
//! shutdown:     this server deletes its lease and writes the endpoints without itself
//! ```
//! Several servers on one etcd thus publish each other; a server that died drops out when
//! its lease expires. The endpoint controllers leave the Service alone: it has no selector.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use podvisor_store::{ListOptions, StoreError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::objects;
use crate::ops::{Core, UpdateMode};
use crate::registry::{ENDPOINTS, ENDPOINTSLICES, ResourceKind, SERVICES};

/// Where each API server's lease lives.
pub const LEASE_PREFIX: &str = "/podvisor/masterleases/";
/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often leases are renewed and the endpoints reconciled.
pub const RECONCILE_PERIOD: Duration = Duration::from_secs(10);
/// The Service's name and namespace.
pub const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";

impl Core {
    /// Creates the `kubernetes` Service if missing; puts its port back if it changed.
    pub async fn ensure_kubernetes_service(&self, secure_port: u16) -> Result<(), ApiError> {
        let ip = self.services.kubernetes_ip().to_string();
        let ports = json!([{"name": "https", "port": 443, "protocol": "TCP",
            "targetPort": secure_port}]);
        match self.storage.get(&SERVICES, Some(NAMESPACE), NAME).await? {
            None => {
                let svc = json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": NAME, "namespace": NAMESPACE,
                        "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                        "sessionAffinity": "None", "ports": ports}});
                self.create_unless_present(&SERVICES, Some(NAMESPACE), svc)
                    .await
            }
            Some((svc, _)) if svc.pointer("/spec/ports") != Some(&ports) => {
                self.edit(&SERVICES, Some(NAMESPACE), NAME, &|c: &mut Value| {
                    c["spec"]["ports"] = ports.clone()
                })
                .await
            }
            Some(_) => Ok(()),
        }
    }

    /// Renews (or with `me` None, skips) this server's lease, drops `gone`'s lease, and
    /// writes the endpoints of the `kubernetes` Service from the unexpired leases.
    pub async fn reconcile_kubernetes_endpoints(
        &self,
        me: Option<SocketAddr>,
        gone: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        let store = &self.storage.store;
        let now = self.now();
        if let Some(ip) = gone {
            match store.delete(&format!("{LEASE_PREFIX}{ip}"), None).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(ApiError::from_store_generic(e)),
            }
        }
        let port = match me {
            Some(addr) => {
                let expires = objects::format_time(now.checked_add(LEASE_TTL).unwrap_or(now));
                let value = serde_json::to_vec(&json!({"expires": expires, "port": addr.port()}))
                    .unwrap_or_default();
                let key = format!("{LEASE_PREFIX}{}", addr.ip());
                match store
                    .get(&key)
                    .await
                    .map_err(ApiError::from_store_generic)?
                {
                    Some(kv) => store.update(&key, value, kv.mod_revision).await.map(|_| ()),
                    None => store.create(&key, value).await.map(|_| ()),
                }
                .or_else(|e| match e {
                    StoreError::Conflict { .. } | StoreError::AlreadyExists { .. } => Ok(()),
                    e => Err(ApiError::from_store_generic(e)),
                })?;
                Some(addr.port())
            }
            None => None,
        };
        let leases = store
            .list(LEASE_PREFIX, ListOptions::default())
            .await
            .map_err(ApiError::from_store_generic)?;
        let mut live: Vec<(IpAddr, u16)> = Vec::new();
        for kv in &leases.items {
            let Some(ip) = kv
                .key
                .strip_prefix(LEASE_PREFIX)
                .and_then(|s| s.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let v: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            let expires = v
                .get("expires")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            let lease_port = v
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            match (expires, lease_port) {
                (Some(t), Some(p)) if t > now => live.push((ip, p)),
                _ => {
                    let _ = store.delete(&kv.key, Some(kv.mod_revision)).await;
                }
            }
        }
        live.sort();
        let port = port.or(live.first().map(|(_, p)| *p)).unwrap_or(6443);
        self.put_kubernetes_endpoints(&live, port).await
    }

    async fn put_kubernetes_endpoints(
        &self,
        live: &[(IpAddr, u16)],
        port: u16,
    ) -> Result<(), ApiError> {
        let port_json = json!({"name": "https", "port": port, "protocol": "TCP"});
        let subsets = if live.is_empty() {
            json!([])
        } else {
            let addrs: Vec<Value> = live
                .iter()
                .map(|(ip, _)| json!({"ip": ip.to_string()}))
                .collect();
            json!([{"addresses": addrs, "ports": [port_json]}])
        };
        let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": subsets});
        self.put_object(&ENDPOINTS, endpoints, &["subsets"]).await?;
        let eps: Vec<Value> = live
            .iter()
            .map(|(ip, _)| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
            .collect();
        let family = match live.first() {
            Some((IpAddr::V6(_), _)) => "IPv6",
            _ => "IPv4",
        };
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": NAME}},
            "addressType": family, "endpoints": eps, "ports": [port_json]});
        self.put_object(
            &ENDPOINTSLICES,
            slice,
            &["addressType", "endpoints", "ports"],
        )
        .await
    }

    /// Creates `obj`; one that exists already (another server was first) is success.
    async fn create_unless_present(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<(), ApiError> {
        match self.create(kind, ns, obj, false, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Updates the stored object `name` with what `change` does to it (the server's own
    /// write: the main resource, no field manager).
    async fn edit(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        change: &(dyn Fn(&mut Value) + Sync),
    ) -> Result<(), ApiError> {
        let mut transform = |cur: Option<&Value>| -> Result<Option<Value>, ApiError> {
            Ok(cur.map(|c| {
                let mut c = c.clone();
                change(&mut c);
                c
            }))
        };
        self.update(
            kind,
            ns,
            name,
            UpdateMode::Main,
            false,
            None,
            &mut transform,
        )
        .await
        .map(|_| ())
    }

    /// Creates `desired` or sets its `fields` (and labels) on the stored object if they differ.
    async fn put_object(
        &self,
        kind: &ResourceKind,
        desired: Value,
        fields: &[&str],
    ) -> Result<(), ApiError> {
        let name = objects::name_of(&desired).to_string();
        let ns = objects::meta_str(&desired, "namespace").map(str::to_string);
        match self.storage.get(kind, ns.as_deref(), &name).await? {
            None => {
                self.create_unless_present(kind, ns.as_deref(), desired)
                    .await
            }
            Some((cur, _))
                if fields.iter().all(|f| cur.get(*f) == desired.get(*f))
                    && cur.pointer("/metadata/labels") == desired.pointer("/metadata/labels") =>
            {
                Ok(())
            }
            Some(_) => {
                self.edit(kind, ns.as_deref(), &name, &|c: &mut Value| {
                    for f in fields {
                        c[*f] = desired.get(*f).cloned().unwrap_or(Value::Null);
                    }
                    let labels = desired.pointer("/metadata/labels").cloned();
                    objects::set_meta(c, "labels", labels.unwrap_or(Value::Null));
                })
                .await
            }
        }
    }
}

/// Keeps this server's lease and the `kubernetes` endpoints (at the address `endpoint`
/// holds; none: nothing to publish) until `cancel`, then removes this server from them.
pub async fn run(
    core: Core,
    mut endpoint: tokio::sync::watch::Receiver<Option<SocketAddr>>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(RECONCILE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut me = *endpoint.borrow_and_update();
    let mut gone = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            changed = endpoint.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = *endpoint.borrow_and_update();
                gone = me.map(|m| m.ip()).filter(|ip| Some(*ip) != next.map(|n| n.ip()));
                me = next;
            }
        }
        if me.is_none() && gone.is_none() {
            continue;
        }
        match core.reconcile_kubernetes_endpoints(me, gone).await {
            Ok(()) => gone = None,
            Err(e) => tracing::warn!(error = %e, "reconciling the kubernetes service endpoints"),
        }
    }
    if let Some(me) = me
        && let Err(e) = core
            .reconcile_kubernetes_endpoints(None, Some(me.ip()))
            .await
    {
        tracing::debug!(error = %e, "removing this server from the kubernetes endpoints");
    }
}
