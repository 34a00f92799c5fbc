//! The legacy Endpoints controller (core/v1 `Endpoints`), as upstream's
//! `pkg/controller/endpoint`: one Endpoints object per Service with a selector, named like
//! the Service.
//!
//! ```text
//! listed:    selected pods, not terminal, with an IP, and not terminating unless the
//!            Service has publishNotReadyAddresses (spec §6)
//! addresses: pod Ready (or publishNotReadyAddresses)  → subsets[].addresses
//!            otherwise                                → subsets[].notReadyAddresses
//! subsets:   addresses grouped by their resolved port list (named target ports resolved
//!            per pod), addresses sorted by IP, ports by name (upstream's RepackSubsets)
//! capacity:  at most 1000 addresses; beyond, truncated with the annotation
//!            endpoints.kubernetes.io/over-capacity: truncated
//! Service gone → its Endpoints deleted; unchanged subsets/labels → no write
//! ```
//! Keys are Services, queued with the EndpointSlice controller's (same triggers).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};

use crate::context::{ControllerError, Ctx, Key, deleted, replace};
use crate::endpointslice::{
    hostname, managed, pod_ip, pod_ready, resolve_port, selects, should_be_listed,
};

/// The most addresses one Endpoints object holds.
pub const MAX_ADDRESSES: usize = 1000;
/// The annotation of an Endpoints object that was truncated.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

type PortList = Vec<(String, i32, String)>;

/// The subsets of the Service's Endpoints, and whether they were truncated.
pub(crate) fn subsets<'a>(
    svc: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> (Vec<EndpointSubset>, bool) {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let svc_ports = spec.ports.unwrap_or_default();
    // port list → (ready, not ready)
    let mut groups: BTreeMap<PortList, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    let mut count = 0;
    let mut truncated = false;
    for pod in pods {
        if !selects(svc, pod) || !should_be_listed(pod, publish) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let mut ports: PortList = svc_ports
            .iter()
            .filter_map(|sp| {
                Some((
                    sp.name.clone().unwrap_or_default(),
                    resolve_port(pod, sp)?,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        ports.sort();
        if ports.is_empty() && !svc_ports.is_empty() {
            continue;
        }
        if count >= MAX_ADDRESSES {
            truncated = true;
            break;
        }
        count += 1;
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname(pod, svc),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(crate::pods::target_ref(pod)),
        };
        let entry = groups.entry(ports).or_default();
        if publish || pod_ready(pod) {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    let out = groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: Some(ready).filter(|a| !a.is_empty()),
                not_ready_addresses: Some(not_ready).filter(|a| !a.is_empty()),
                ports: Some(
                    ports
                        .into_iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            name: Some(name).filter(|n| !n.is_empty()),
                            port,
                            protocol: Some(protocol),
                            app_protocol: None,
                        })
                        .collect(),
                )
                .filter(|p: &Vec<EndpointPort>| !p.is_empty()),
            }
        })
        .collect();
    (out, truncated)
}

fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    crate::endpointslice::mark_headless(svc, &mut labels);
    labels
}

/// Reconciles the Endpoints of the Service `key`.
pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let current = ctx.svc.endpoints.get(&key.obj_ref());
    let svc = ctx.svc.services.get(&key.obj_ref());
    let Some(svc) = svc.filter(|s| managed(s)) else {
        // Only the Endpoints of a Service that is gone: a selectorless Service's Endpoints
        // belong to whoever wrote them.
        if ctx.svc.services.get(&key.obj_ref()).is_none() && current.is_some() {
            let r = api.delete(&key.name, &DeleteParams::default()).await;
            deleted(r, "Endpoints", &key.namespace, &key.name)?;
        }
        return Ok(None);
    };
    let pods = ctx.pods_in(&key.namespace);
    let (subsets, truncated) = subsets(&svc, pods.iter().map(|p| p.as_ref()));
    let labels = labels(&svc);
    let mut annotations = current
        .as_ref()
        .and_then(|c| c.metadata.annotations.clone())
        .unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    let subsets = Some(subsets).filter(|s| !s.is_empty());
    if let Some(c) = &current
        && c.subsets == subsets
        && c.metadata.labels.clone().unwrap_or_default() == labels
        && c.metadata.annotations.clone().unwrap_or_default() == annotations
    {
        return Ok(None);
    }
    let mut ep = Endpoints {
        metadata: ObjectMeta {
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        },
        subsets,
    };
    match current {
        Some(c) => {
            ep.metadata.resource_version = c.metadata.resource_version.clone();
            replace(&api, "Endpoints", &key.namespace, &key.name, &ep).await?;
        }
        None => match api.create(&PostParams::default(), &ep).await {
            Ok(_) => {}
            // The cache lags behind a write of ours or someone else's: read again.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Ok(Some(Duration::from_millis(100)));
            }
            Err(e) => {
                return Err(ControllerError::api(
                    "create",
                    "Endpoints",
                    &key.namespace,
                    &key.name,
                )(e));
            }
        },
    }
    Ok(None)
}

/// Routes an Endpoints event: a managed Service's Endpoints changed by someone else are put
/// back.
pub(crate) fn route_endpoints(ctx: &Ctx, ep: &Endpoints, _deleted: bool) {
    if let Some(key) = Key::of(&ep.metadata)
        && ctx
            .svc
            .services
            .get(&key.obj_ref())
            .is_some_and(|s| managed(&s))
    {
        ctx.svc.endpoints_queue.add(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, terminating: bool) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": format!("u-{name}"), "labels": {"app": "a"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap();
        if terminating {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    "2026-01-01T00:00:00Z".parse().unwrap(),
                ));
        }
        p
    }

    fn svc(publish: bool) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "d"},
            "spec": {"selector": {"app": "a"}, "publishNotReadyAddresses": publish,
                "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}))
        .unwrap()
    }

    #[test]
    fn ready_not_ready_and_terminating_pods() {
        let pods = [
            pod("b", "10.0.0.2", true, false),
            pod("a", "10.0.0.1", true, false),
            pod("c", "10.0.0.3", false, false),
            pod("t", "10.0.0.4", true, true),
        ];
        let (subsets, truncated) = subsets(&svc(false), pods.iter());
        assert!(!truncated);
        assert_eq!(subsets.len(), 1);
        let ips = |a: &Option<Vec<EndpointAddress>>| {
            a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(
            ips(&subsets[0].not_ready_addresses),
            ["10.0.0.3"],
            "terminating pods leave Endpoints"
        );
        assert_eq!(
            subsets[0].ports.as_ref().unwrap()[0].port,
            8080,
            "named target port resolved"
        );
        let (published, _) = subsets_of_publish(&pods);
        assert_eq!(
            ips(&published[0].addresses),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
    }

    fn subsets_of_publish(pods: &[Pod]) -> (Vec<EndpointSubset>, bool) {
        subsets(&svc(true), pods.iter())
    }
}
