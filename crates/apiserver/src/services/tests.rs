use super::*;

#[test]
fn the_default_network_is_upstreams() {
    let net = ServiceNetwork::default();
    assert_eq!(net.cidr(), "10.96.0.0/12");
    assert_eq!(net.kubernetes_ip(), Ipv4Addr::new(10, 96, 0, 1));
    assert_eq!(net.nth(10), Some(Ipv4Addr::new(10, 96, 0, 10)));
    assert_eq!(net.static_band(), 256);
    assert_eq!(net.node_port_range(), "30000-32767");
    assert!(
        net.offset(Ipv4Addr::new(10, 96, 0, 0)).is_none(),
        "network address"
    );
    assert!(
        net.offset(Ipv4Addr::new(10, 111, 255, 255)).is_none(),
        "broadcast"
    );
    assert!(net.offset(Ipv4Addr::new(10, 111, 255, 254)).is_some());
    assert!(net.offset(Ipv4Addr::new(10, 112, 0, 1)).is_none());
    assert!(ServiceNetwork::parse("fd00::/108", "30000-32767").is_err());
    assert!(ServiceNetwork::parse("10.0.0.0/24", "3-2").is_err());
}

#[test]
fn held_values_follow_the_type() {
    let net = ServiceNetwork::default();
    let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"],
        "ports": [{"port": 53, "protocol": "TCP", "nodePort": 30053},
                  {"port": 53, "protocol": "UDP", "nodePort": 30053}]}});
    assert_eq!(
        held_by(&net, &svc),
        vec![
            Allocated::ClusterIp(Ipv4Addr::new(10, 96, 0, 9)),
            Allocated::NodePort(30053)
        ]
    );
    let headless = json!({"spec": {"clusterIP": "None"}});
    assert!(held_by(&net, &headless).is_empty());
    for v in held_by(&net, &svc) {
        assert_eq!(Allocated::from_key(&v.key()), Some(v));
    }
}
