use super::*;
use serde_json::json;

fn svc(v: serde_json::Value) -> Arc<Service> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn slice(v: serde_json::Value) -> Arc<EndpointSlice> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn ns(name: &str) -> Arc<Namespace> {
    Arc::new(serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
}

fn zone() -> Zone {
    let services = vec![
        svc(json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.4.5", "clusterIPs": ["10.96.4.5"],
                "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}})),
        svc(json!({"metadata": {"name": "db", "namespace": "shop"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}})),
        svc(json!({"metadata": {"name": "empty", "namespace": "shop"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}})),
        svc(json!({"metadata": {"name": "warm", "namespace": "shop"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": true, "ports": [{"port": 80}]}})),
        svc(json!({"metadata": {"name": "ext", "namespace": "shop"},
            "spec": {"type": "ExternalName", "externalName": "Example.COM."}})),
        svc(json!({"metadata": {"name": "alias", "namespace": "shop"},
            "spec": {"type": "ExternalName", "externalName": "web.shop.svc.cluster.local"}})),
        svc(json!({"metadata": {"name": "dual", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.4.6", "clusterIPs": ["10.96.4.6", "fd00::6"],
                "ports": [{"name": "http", "port": 80}]}})),
    ];
    let slices = vec![
        slice(json!({"metadata": {"name": "db-abc", "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.0.7"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.0.8"], "conditions": {"ready": true}},
            {"addresses": ["10.244.0.9"], "conditions": {"ready": false}}
        ]})),
        slice(json!({"metadata": {"name": "warm-x", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "warm"}},
            "addressType": "IPv4",
            "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.0.10"], "conditions": {"ready": false}}]})),
        slice(json!({"metadata": {"name": "web-1", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.0.11"], "conditions": {"ready": true}}]})),
    ];
    let namespaces = vec![ns("shop"), ns("default")];
    Zone::build(
        &services,
        &slices,
        Some(&namespaces),
        1700000000,
        vec!["10.96.0.10".parse().unwrap()],
    )
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn answer(z: &Zone, q: &str, t: RecordType) -> Answer {
    match z.resolve(&name(q), t) {
        Outcome::Answer(a) => a,
        Outcome::Forward => panic!("{q} {t} was forwarded"),
    }
}

/// The answer section as text: `owner type data` per record.
fn texts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

fn is_nodata(a: &Answer) -> bool {
    a.rcode == ResponseCode::NoError
        && a.answers.is_empty()
        && a.authorities.len() == 1
        && a.authorities[0].record_type() == RecordType::SOA
}

fn is_nxdomain(a: &Answer) -> bool {
    a.rcode == ResponseCode::NXDomain
        && a.answers.is_empty()
        && a.authorities.len() == 1
        && a.authorities[0].record_type() == RecordType::SOA
}

#[test]
fn cluster_ip_service_a_and_aaaa() {
    let z = zone();
    let a = answer(&z, "web.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        texts(&a.answers),
        ["web.shop.svc.cluster.local. A 10.96.4.5"]
    );
    assert_eq!(a.answers[0].ttl, 5);
    assert_eq!(a.rcode, ResponseCode::NoError);
    // Case does not matter; the owner is the name as asked.
    let a = answer(&z, "WEB.Shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        texts(&a.answers),
        ["WEB.Shop.svc.cluster.local. A 10.96.4.5"]
    );
    // An IPv4-only Service has no AAAA: NODATA.
    assert!(is_nodata(&answer(
        &z,
        "web.shop.svc.cluster.local.",
        RecordType::AAAA
    )));
    let a = answer(&z, "dual.shop.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(
        texts(&a.answers),
        ["dual.shop.svc.cluster.local. AAAA fd00::6"]
    );
    // Other types of an existing name: NODATA.
    assert!(is_nodata(&answer(
        &z,
        "web.shop.svc.cluster.local.",
        RecordType::MX
    )));
    assert!(is_nodata(&answer(
        &z,
        "web.shop.svc.cluster.local.",
        RecordType::TXT
    )));
}

#[test]
fn unknown_names_are_nxdomain_and_namespaces_nodata() {
    let z = zone();
    for q in [
        "nope.shop.svc.cluster.local.",
        "web.nope.svc.cluster.local.",
        "web.shop.nope.cluster.local.",
        "a.b.c.web.shop.svc.cluster.local.",
        // a search-path expansion of an outside name
        "example.com.shop.svc.cluster.local.",
        "x.web.shop.svc.cluster.local.",
    ] {
        assert!(is_nxdomain(&answer(&z, q, RecordType::A)), "{q}");
    }
    let soa = &answer(&z, "nope.shop.svc.cluster.local.", RecordType::A).authorities[0];
    assert_eq!(
        soa.data.to_string(),
        "ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5"
    );
    assert_eq!(soa.name.to_string(), "cluster.local.");
    // An existing namespace, `svc`, `pod` and the apex exist (NODATA); an unknown namespace does not.
    for q in [
        "shop.svc.cluster.local.",
        "svc.cluster.local.",
        "pod.cluster.local.",
        "cluster.local.",
    ] {
        assert!(is_nodata(&answer(&z, q, RecordType::A)), "{q}");
    }
    assert!(is_nxdomain(&answer(
        &z,
        "nope.svc.cluster.local.",
        RecordType::A
    )));
}

#[test]
fn headless_services_answer_ready_endpoints() {
    let z = zone();
    let a = answer(&z, "db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        texts(&a.answers),
        [
            "db.shop.svc.cluster.local. A 10.244.0.7",
            "db.shop.svc.cluster.local. A 10.244.0.8"
        ]
    );
    // Without ready endpoints the name does not exist.
    assert!(is_nxdomain(&answer(
        &z,
        "empty.shop.svc.cluster.local.",
        RecordType::A
    )));
    // publishNotReadyAddresses: not-ready endpoints too.
    let a = answer(&z, "warm.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        texts(&a.answers),
        ["warm.shop.svc.cluster.local. A 10.244.0.10"]
    );
}

#[test]
fn endpoint_names_by_hostname_or_dashed_address() {
    let z = zone();
    let a = answer(&z, "db-0.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        texts(&a.answers),
        ["db-0.db.shop.svc.cluster.local. A 10.244.0.7"]
    );
    let a = answer(&z, "10-244-0-8.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        texts(&a.answers),
        ["10-244-0-8.db.shop.svc.cluster.local. A 10.244.0.8"]
    );
    // A not-ready endpoint has no name.
    assert!(is_nxdomain(&answer(
        &z,
        "10-244-0-9.db.shop.svc.cluster.local.",
        RecordType::A
    )));
    // Endpoint names of a ClusterIP Service resolve too (CoreDNS).
    let a = answer(&z, "10-244-0-11.web.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(a.answers.len(), 1);
}

#[test]
fn srv_for_named_ports() {
    let z = zone();
    let a = answer(
        &z,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        texts(&a.answers),
        ["_http._tcp.web.shop.svc.cluster.local. SRV 0 100 80 web.shop.svc.cluster.local."]
    );
    assert_eq!(
        texts(&a.additionals),
        ["web.shop.svc.cluster.local. A 10.96.4.5"]
    );
    let a = answer(&z, "_dns._udp.web.shop.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        texts(&a.answers),
        ["_dns._udp.web.shop.svc.cluster.local. SRV 0 100 53 web.shop.svc.cluster.local."]
    );
    // Wrong protocol or port name: no such name.
    assert!(is_nxdomain(&answer(
        &z,
        "_dns._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV
    )));
    // All ports of the Service name: weight split between them.
    let a = answer(&z, "web.shop.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        texts(&a.answers),
        [
            "web.shop.svc.cluster.local. SRV 0 50 80 web.shop.svc.cluster.local.",
            "web.shop.svc.cluster.local. SRV 0 50 53 web.shop.svc.cluster.local."
        ]
    );
    // Headless: one per endpoint, targets by hostname or dashed address.
    let a = answer(&z, "_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        texts(&a.answers),
        [
            "_pg._tcp.db.shop.svc.cluster.local. SRV 0 50 5432 db-0.db.shop.svc.cluster.local.",
            "_pg._tcp.db.shop.svc.cluster.local. SRV 0 50 5432 10-244-0-8.db.shop.svc.cluster.local."
        ]
    );
    assert_eq!(
        texts(&a.additionals),
        [
            "db-0.db.shop.svc.cluster.local. A 10.244.0.7",
            "10-244-0-8.db.shop.svc.cluster.local. A 10.244.0.8"
        ]
    );
}

#[test]
fn ptr_for_cluster_ips_and_endpoints_unknown_forwarded() {
    let z = zone();
    let a = answer(&z, "5.4.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        texts(&a.answers),
        ["5.4.96.10.in-addr.arpa. PTR web.shop.svc.cluster.local."]
    );
    let a = answer(&z, "7.0.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        texts(&a.answers),
        ["7.0.244.10.in-addr.arpa. PTR db-0.db.shop.svc.cluster.local."]
    );
    let a = answer(&z, "11.0.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        texts(&a.answers),
        ["11.0.244.10.in-addr.arpa. PTR 10-244-0-11.web.shop.svc.cluster.local."]
    );
    let v6 = "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    let a = answer(&z, v6, RecordType::PTR);
    assert_eq!(a.answers.len(), 1);
    assert_eq!(
        z.resolve(&name("1.1.1.1.in-addr.arpa."), RecordType::PTR),
        Outcome::Forward
    );
    assert_eq!(
        z.resolve(&name("4.96.10.in-addr.arpa."), RecordType::PTR),
        Outcome::Forward
    );
    assert_eq!(
        z.resolve(&name("5.4.96.10.in-addr.arpa."), RecordType::A),
        Outcome::Forward
    );
}

#[test]
fn external_name_is_a_cname_chased_outside_or_inside() {
    let z = zone();
    let a = answer(&z, "ext.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        texts(&a.answers),
        ["ext.shop.svc.cluster.local. CNAME example.com."]
    );
    assert_eq!(a.chase, Some(name("example.com.")));
    assert!(a.authorities.is_empty());
    let a = answer(&z, "ext.shop.svc.cluster.local.", RecordType::CNAME);
    assert_eq!(a.chase, None);
    assert_eq!(a.answers.len(), 1);
    // A target inside the zone is answered from the zone.
    let a = answer(&z, "alias.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        texts(&a.answers),
        [
            "alias.shop.svc.cluster.local. CNAME web.shop.svc.cluster.local.",
            "web.shop.svc.cluster.local. A 10.96.4.5"
        ]
    );
    assert_eq!(a.chase, None);
    // No endpoint names below an ExternalName.
    assert!(is_nxdomain(&answer(
        &z,
        "x.ext.shop.svc.cluster.local.",
        RecordType::A
    )));
}

#[test]
fn pods_insecure_and_zone_records() {
    let z = zone();
    let a = answer(&z, "10-244-0-99.shop.pod.cluster.local.", RecordType::A);
    assert_eq!(
        texts(&a.answers),
        ["10-244-0-99.shop.pod.cluster.local. A 10.244.0.99"]
    );
    assert!(is_nxdomain(&answer(
        &z,
        "junk.shop.pod.cluster.local.",
        RecordType::A
    )));
    assert!(is_nxdomain(&answer(
        &z,
        "10-244-0-99.nope.pod.cluster.local.",
        RecordType::A
    )));
    let a = answer(&z, "cluster.local.", RecordType::SOA);
    assert_eq!(a.answers.len(), 1);
    let a = answer(&z, "cluster.local.", RecordType::NS);
    assert_eq!(
        texts(&a.answers),
        ["cluster.local. NS ns.dns.cluster.local."]
    );
    assert_eq!(
        texts(&a.additionals),
        ["ns.dns.cluster.local. A 10.96.0.10"]
    );
    let a = answer(&z, "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(a.answers.len(), 1);
}

#[test]
fn names_outside_the_zone_are_forwarded() {
    let z = zone();
    for q in ["example.com.", "cluster.local.example.com.", "local."] {
        assert_eq!(z.resolve(&name(q), RecordType::A), Outcome::Forward, "{q}");
    }
}

#[test]
fn unknown_namespaces_are_all_present_without_a_namespace_list() {
    let z = Zone::build(&[], &[], None, 1, Vec::new());
    assert!(is_nodata(&answer(
        &z,
        "any.svc.cluster.local.",
        RecordType::A
    )));
    assert!(is_nxdomain(&answer(
        &z,
        "x.any.svc.cluster.local.",
        RecordType::A
    )));
}
