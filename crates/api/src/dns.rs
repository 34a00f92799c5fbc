//! The cluster DNS's objects: the `kube-dns` Service in `kube-system` and one EndpointSlice
//! per Node pointing at the DNS server of that node's agent (its pod-network gateway, the
//! first address of `spec.podCIDR`). The Service is selectorless with
//! `internalTrafficPolicy: Local`, so each node's proxy sends pods' queries to their own
//! node's server (docs/design/0005-cluster-dns.md).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The Service's name.
pub const SERVICE_NAME: &str = "kube-dns";
/// The Service's namespace.
pub const SERVICE_NAMESPACE: &str = "kube-system";
/// The Service's cluster IP, pods' `nameserver` for `ClusterFirst` (kubeadm's default).
pub const SERVICE_IP: &str = "10.96.0.10";
/// The DNS port.
pub const PORT: u16 = 53;
/// `endpointslice.kubernetes.io/managed-by` of the per-node slices (not the EndpointSlice
/// controller's, which leaves selectorless Services alone).
pub const MANAGED_BY: &str = "cluster-dns.podvisor.io";
/// The label naming the slices' Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the slices' manager.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// The first address of a CIDR (`10.244.3.0/24` → `10.244.3.1`): a node's pod-network
/// gateway, where its DNS server listens.
pub fn gateway_of(cidr: &str) -> Option<IpAddr> {
    let (addr, len) = cidr.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if len < 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            Some(IpAddr::V4((u32::from(a) & mask).checked_add(1)?.into()))
        }
        IpAddr::V6(a) if len < 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            Some(IpAddr::V6((u128::from(a) & mask).checked_add(1)?.into()))
        }
        _ => None,
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("k8s-app".to_string(), SERVICE_NAME.to_string()),
        (
            "kubernetes.io/cluster-service".to_string(),
            "true".to_string(),
        ),
        ("kubernetes.io/name".to_string(), "podvisor-dns".to_string()),
    ])
}

/// The `kube-dns` Service as podvisor keeps it.
pub fn service() -> Service {
    let port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.to_string()),
        port: i32::from(PORT),
        protocol: Some(protocol.to_string()),
        target_port: Some(IntOrString::Int(i32::from(PORT))),
        ..ServicePort::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some(SERVICE_NAME.to_string()),
            namespace: Some(SERVICE_NAMESPACE.to_string()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            cluster_ip: Some(SERVICE_IP.to_string()),
            cluster_ips: Some(vec![SERVICE_IP.to_string()]),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            internal_traffic_policy: Some("Local".to_string()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Whether `have` differs from [`service`] in what podvisor keeps: ports, selector
/// (none), internalTrafficPolicy.
pub fn service_drifted(have: &Service) -> bool {
    let want = service().spec.unwrap_or_default();
    let spec = have.spec.clone().unwrap_or_default();
    let ports = |s: &ServiceSpec| {
        s.ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone(),
                    p.port,
                    p.protocol.clone(),
                    p.target_port.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    ports(&spec) != ports(&want)
        || spec.selector.as_ref().is_some_and(|s| !s.is_empty())
        || spec.internal_traffic_policy != want.internal_traffic_policy
}

/// The name of a node's slice.
pub fn slice_name(node: &str) -> String {
    format!("{SERVICE_NAME}-{node}")
}

/// The EndpointSlice of `node` (None while it has no podCIDR), owned by the Service
/// (`service_uid`).
pub fn node_slice(node: &Node, service_uid: &str) -> Option<EndpointSlice> {
    let name = node.metadata.name.clone()?;
    let cidr = node.spec.as_ref()?.pod_cidr.clone()?;
    let gateway = gateway_of(&cidr)?;
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let port = |n: &str, protocol: &str| EndpointPort {
        name: Some(n.to_string()),
        port: Some(i32::from(PORT)),
        protocol: Some(protocol.to_string()),
        app_protocol: None,
    };
    Some(EndpointSlice {
        metadata: ObjectMeta {
            name: Some(slice_name(&name)),
            namespace: Some(SERVICE_NAMESPACE.to_string()),
            labels: Some(BTreeMap::from([
                (SERVICE_NAME_LABEL.to_string(), SERVICE_NAME.to_string()),
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_string(),
                kind: "Service".to_string(),
                name: SERVICE_NAME.to_string(),
                uid: service_uid.to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: if gateway.is_ipv4() { "IPv4" } else { "IPv6" }.to_string(),
        endpoints: vec![Endpoint {
            addresses: vec![gateway.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready),
                terminating: Some(false),
            }),
            node_name: Some(name),
            ..Endpoint::default()
        }],
        ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
    })
}

/// Whether two slices of a node differ in what matters (endpoints, ports, owner).
pub fn slice_differs(have: &EndpointSlice, want: &EndpointSlice) -> bool {
    have.endpoints != want.endpoints
        || have.ports != want.ports
        || have.address_type != want.address_type
        || have.metadata.owner_references != want.metadata.owner_references
        || have
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            != Some(&MANAGED_BY.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_is_the_first_address_of_the_cidr() {
        assert_eq!(
            gateway_of("10.244.3.0/24"),
            Some("10.244.3.1".parse().unwrap())
        );
        assert_eq!(
            gateway_of("10.244.3.7/24"),
            Some("10.244.3.1".parse().unwrap())
        );
        assert_eq!(
            gateway_of("fd00:1::/64"),
            Some("fd00:1::1".parse().unwrap())
        );
        assert_eq!(gateway_of("10.0.0.1/32"), None);
        assert_eq!(gateway_of("junk"), None);
    }

    #[test]
    fn node_slices_follow_the_pod_cidr_and_readiness() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.1.0/24"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let s = node_slice(&node, "u1").unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("kube-dns-n1"));
        assert_eq!(s.endpoints[0].addresses, ["10.244.1.1"]);
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("n1"));
        assert_eq!(
            s.endpoints[0].conditions.as_ref().unwrap().ready,
            Some(true)
        );
        assert!(!slice_differs(&s, &s));
        let mut unready = node.clone();
        unready.status = None;
        assert!(slice_differs(&s, &node_slice(&unready, "u1").unwrap()));
        let mut bare = node;
        bare.spec = None;
        assert!(node_slice(&bare, "u1").is_none());
    }

    #[test]
    fn service_drift_is_seen() {
        let s = service();
        assert!(!service_drifted(&s));
        let mut changed = s.clone();
        changed.spec.as_mut().unwrap().internal_traffic_policy = Some("Cluster".into());
        assert!(service_drifted(&changed));
        let mut selected = s;
        selected.spec.as_mut().unwrap().selector =
            Some(BTreeMap::from([("app".into(), "x".into())]));
        assert!(service_drifted(&selected));
    }
}
