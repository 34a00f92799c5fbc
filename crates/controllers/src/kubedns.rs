//! The cluster DNS's objects (`podvisor_api::dns`): the `kube-dns` Service in `kube-system`
//! (created when missing, its ports, selector and `internalTrafficPolicy` put back when
//! changed; a different clusterIP is reported, as it cannot change) and one EndpointSlice per
//! Node with a podCIDR, pointing at the DNS server of that node's agent. Slices of Nodes that
//! are gone are deleted.
//!
//! A pass runs on every Node event (the manager's node router wakes it) and every 30 s; it is
//! idempotent (create-if-absent, replace only what differs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use podvisor_api::dns;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::context::Ctx;

/// Keeps the objects until `shutdown`.
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        if let Err(e) = pass(&ctx).await {
            warn!(error = %e, "kube-dns: pass failed; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ctx.kube_dns.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

async fn ensure_service(api: &Api<Service>) -> Result<Service, kube::Error> {
    let want = dns::service();
    match api.get_opt(dns::SERVICE_NAME).await? {
        None => match api.create(&PostParams::default(), &want).await {
            Ok(s) => Ok(s),
            Err(kube::Error::Api(s)) if s.code == 409 => api.get(dns::SERVICE_NAME).await,
            Err(e) => Err(e),
        },
        Some(have) => {
            let ip = have.spec.as_ref().and_then(|s| s.cluster_ip.clone());
            if ip.as_deref() != Some(dns::SERVICE_IP) {
                warn!(
                    cluster_ip = ?ip,
                    "kube-dns: the Service's clusterIP is not {}; pods' resolv.conf names {}",
                    dns::SERVICE_IP,
                    dns::SERVICE_IP
                );
            }
            if !dns::service_drifted(&have) {
                return Ok(have);
            }
            let spec = dns::service().spec.unwrap_or_default();
            let patch = serde_json::json!({"spec": {
                "selector": null,
                "ports": spec.ports,
                "internalTrafficPolicy": spec.internal_traffic_policy,
            }});
            api.patch(
                dns::SERVICE_NAME,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        }
    }
}

async fn pass(ctx: &Ctx) -> Result<(), kube::Error> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), dns::SERVICE_NAMESPACE);
    let svc = ensure_service(&services).await?;
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let want: BTreeMap<String, EndpointSlice> = ctx
        .nodes
        .state()
        .iter()
        .filter_map(|n| dns::node_slice(n, &uid))
        .filter_map(|s| Some((s.metadata.name.clone()?, s)))
        .collect();
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), dns::SERVICE_NAMESPACE);
    let selector = format!("{}={}", dns::MANAGED_BY_LABEL, dns::MANAGED_BY);
    let have = slices
        .list(&ListParams::default().labels(&selector))
        .await?;
    let mut existing = BTreeMap::new();
    for s in have.items {
        let Some(name) = s.metadata.name.clone() else {
            continue;
        };
        if !want.contains_key(&name) {
            match slices.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        existing.insert(name, s);
    }
    for (name, slice) in want {
        match existing.get(&name) {
            None => match slices.create(&PostParams::default(), &slice).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            },
            Some(have) if dns::slice_differs(have, &slice) => {
                let mut next = slice;
                next.metadata.resource_version = have.metadata.resource_version.clone();
                slices.replace(&name, &PostParams::default(), &next).await?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}
