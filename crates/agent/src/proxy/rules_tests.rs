use super::*;
use serde_json::json;

fn svc(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"}, "spec": spec}))
        .unwrap()
}

fn slice(svc: &str, port: i32, eps: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(
        json!({"metadata": {"name": format!("{svc}-x"), "namespace": "d",
        "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": eps,
        "ports": [{"name": "", "port": port, "protocol": "TCP"}]}),
    )
    .unwrap()
}

fn ep(ip: &str, ready: bool, serving: bool, terminating: bool, node: &str) -> serde_json::Value {
    json!({"addresses": [ip], "nodeName": node,
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

fn ips(eps: &[EndpointRules]) -> Vec<String> {
    eps.iter().map(|e| format!("{}:{}", e.ip, e.port)).collect()
}

#[test]
fn ready_endpoints_first_then_terminating_ones() {
    let s = svc(
        "web",
        json!({"clusterIP": "10.96.0.9", "ports": [{"port": 80, "protocol": "TCP"}]}),
    );
    let both = slice(
        "web",
        8080,
        json!([
            ep("10.244.0.2", true, true, false, "n1"),
            ep("10.244.0.3", false, true, true, "n1"),
            ep("10.244.0.4", false, false, false, "n1")
        ]),
    );
    let r = build(&[&s], &[&both], "n1", None);
    assert_eq!(ips(&r.services[0].cluster_endpoints), ["10.244.0.2:8080"]);
    let draining = slice(
        "web",
        8080,
        json!([
            ep("10.244.0.3", false, true, true, "n1"),
            ep("10.244.0.5", false, false, true, "n1")
        ]),
    );
    let r = build(&[&s], &[&draining], "n1", None);
    assert_eq!(
        ips(&r.services[0].cluster_endpoints),
        ["10.244.0.3:8080"],
        "serving+terminating only when none is ready"
    );
}

#[test]
fn local_traffic_policies_keep_this_nodes_endpoints() {
    let s = svc(
        "dns",
        json!({"clusterIP": "10.96.0.10", "internalTrafficPolicy": "Local",
        "type": "NodePort", "externalTrafficPolicy": "Cluster",
        "ports": [{"port": 53, "protocol": "TCP", "nodePort": 30053}]}),
    );
    let sl = slice(
        "dns",
        53,
        json!([
            ep("10.244.0.2", true, true, false, "n1"),
            ep("10.244.1.2", true, true, false, "n2")
        ]),
    );
    let r = build(&[&s], &[&sl], "n1", None);
    assert_eq!(ips(&r.services[0].cluster_endpoints), ["10.244.0.2:53"]);
    assert_eq!(
        ips(&r.services[0].external_endpoints),
        ["10.244.0.2:53", "10.244.1.2:53"]
    );
    let r = build(&[&s], &[&sl], "n3", None);
    assert!(r.services[0].cluster_endpoints.is_empty());
    let text = render(&r, &Default::default());
    assert!(text.contains("10.96.0.10 . tcp . 53 : drop"), "{text}");
}

#[test]
fn the_transaction_dispatches_randomly_with_affinity_and_masquerade() {
    let s = svc(
        "web",
        json!({"clusterIP": "10.96.0.9", "type": "NodePort", "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
    );
    let sl = slice(
        "web",
        8080,
        json!([
            ep("10.244.0.2", true, true, false, "n1"),
            ep("10.244.0.3", true, true, false, "n1")
        ]),
    );
    let r = build(&[&s], &[&sl], "n1", Some("10.244.0.0/24".into()));
    let text = render(&r, &Default::default());
    let id = &r.services[0].id;
    for want in [
        format!("add element ip podvisor service-ips {{ 10.96.0.9 . tcp . 80 : goto svc-{id} }}"),
        format!("add element ip podvisor service-nodeports {{ tcp . 30080 : goto ext-{id} }}"),
        format!(
            "add rule ip podvisor svc-{id} ip daddr 10.96.0.9 tcp dport 80 ip saddr != 10.244.0.0/24 jump mark-for-masquerade"
        ),
        "numgen random mod 2 vmap".to_string(),
        "timeout 60s".to_string(),
        "meta l4proto tcp dnat to 10.244.0.2:8080".to_string(),
        "ip saddr 10.244.0.3 jump mark-for-masquerade".to_string(),
        "masquerade fully-random".to_string(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    assert_eq!(
        text.matches("dnat to 10.244.0.2:8080").count(),
        1,
        "one endpoint chain per endpoint"
    );
    // The Service goes: its chains and sets are deleted by the next transaction.
    let gone = render(&build(&[], &[], "n1", None), &owned_objects(&r));
    assert!(
        gone.contains(&format!("delete chain ip podvisor svc-{id}")),
        "{gone}"
    );
    assert!(gone.contains("delete set ip podvisor aff-"), "{gone}");
}

#[test]
fn services_without_endpoints_reject_and_external_names_and_headless_are_skipped() {
    let s = svc(
        "web",
        json!({"clusterIP": "10.96.0.9", "ports": [{"port": 80, "protocol": "UDP"}]}),
    );
    let h = svc("h", json!({"clusterIP": "None", "ports": [{"port": 80}]}));
    let e = svc(
        "e",
        json!({"type": "ExternalName", "externalName": "example.com"}),
    );
    let r = build(&[&s, &h, &e], &[], "n1", None);
    assert_eq!(r.services.len(), 1);
    let text = render(&r, &Default::default());
    assert!(
        text.contains("10.96.0.9 . udp . 80 : goto reject-chain"),
        "{text}"
    );
}

/// Runs transactions through the real `nft` in a network namespace of their own (made with
/// `unshare -n` for this process only; gone when it exits).
fn nft_in_fresh_netns(scripts: &[String]) -> Result<String, String> {
    let mut all = String::new();
    for s in scripts {
        all.push_str(s);
        // `nft -f` of each transaction in order, then the table as the kernel holds it.
        all.push_str("\n#--\n");
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cmd = String::new();
    for (i, s) in scripts.iter().enumerate() {
        let f = dir.path().join(format!("t{i}.nft"));
        std::fs::write(&f, s).map_err(|e| e.to_string())?;
        cmd.push_str(&format!("nft -f {} && ", f.display()));
    }
    cmd.push_str("nft list ruleset");
    let out = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", &cmd])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_kernel_accepts_the_transactions_in_order() {
    let s = svc(
        "web",
        json!({"clusterIP": "10.96.0.9", "type": "NodePort", "sessionAffinity": "ClientIP",
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
    );
    let u = svc(
        "dns",
        json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}),
    );
    let sl = slice(
        "web",
        8080,
        json!([
            ep("10.244.0.2", true, true, false, "n1"),
            ep("10.244.0.3", true, true, false, "n1")
        ]),
    );
    let first = build(&[&s, &u], &[&sl], "n1", Some("10.244.0.0/24".into()));
    let t1 = render(&first, &Default::default());
    let second = build(&[&u], &[], "n1", Some("10.244.0.0/24".into()));
    let t2 = render(&second, &owned_objects(&first));
    let listed = nft_in_fresh_netns(&[t1.clone(), t2.clone(), render_delete()])
        .unwrap_or_else(|e| panic!("nft refused the transactions: {e}\n{t1}\n{t2}"));
    assert!(
        !listed.contains("podvisor"),
        "the table is gone after the delete: {listed}"
    );
    let kept = nft_in_fresh_netns(&[t1, t2]).unwrap();
    assert!(
        kept.contains("10.96.0.10 . udp . 53 : goto reject-chain"),
        "{kept}"
    );
    assert!(
        !kept.contains("svc-"),
        "the removed Service's chains are gone: {kept}"
    );
}

/// The words of a listing, sorted: equal for two tables with the same chains, rules, sets
/// and map elements, whatever order they were made in.
fn words(listing: &str) -> Vec<String> {
    let mut w: Vec<String> = listing
        .split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    w.sort();
    w
}

#[test]
fn delta_transactions_leave_the_table_a_full_sync_would() {
    let web = svc(
        "web",
        json!({"clusterIP": "10.96.0.9", "type": "NodePort", "sessionAffinity": "ClientIP",
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
    );
    let dns = svc(
        "dns",
        json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}),
    );
    let api = svc(
        "api",
        json!({"clusterIP": "10.96.0.11", "ports": [{"port": 443, "protocol": "TCP"}]}),
    );
    let fresh = svc(
        "fresh",
        json!({"clusterIP": "10.96.0.12", "ports": [{"port": 80, "protocol": "TCP"}]}),
    );
    let web_eps = |eps: serde_json::Value| slice("web", 8080, eps);
    let cidr = || Some("10.244.0.0/24".to_string());
    let a = build(
        &[&web, &dns, &api],
        &[
            &web_eps(json!([
                ep("10.244.0.2", true, true, false, "n1"),
                ep("10.244.0.3", true, true, false, "n1")
            ])),
            &slice(
                "api",
                6443,
                json!([ep("10.244.0.4", true, true, false, "n1")]),
            ),
        ],
        "n1",
        cidr(),
    );
    // One endpoint of web terminating, api gone, fresh added (no endpoints yet).
    let b = build(
        &[&web, &dns, &fresh],
        &[&web_eps(json!([
            ep("10.244.0.2", true, true, false, "n1"),
            ep("10.244.0.3", false, true, true, "n1")
        ]))],
        "n1",
        cidr(),
    );
    // web has no endpoint left; fresh got one.
    let c = build(
        &[&web, &dns, &fresh],
        &[&slice(
            "fresh",
            8080,
            json!([ep("10.244.0.5", true, true, false, "n1")]),
        )],
        "n1",
        cidr(),
    );
    let full_a = render(&a, &Default::default());
    let ab = render_delta(&b, &a).expect("same CIDR: a delta");
    let bc = render_delta(&c, &b).expect("same CIDR: a delta");
    assert!(
        !ab.contains("flush chain ip podvisor services") && !ab.contains("flush map"),
        "a delta leaves the fixed chains and the maps' other elements alone:\n{ab}"
    );
    assert!(!ab.contains("10.96.0.10"), "dns did not change:\n{ab}");
    assert_eq!(render_delta(&c, &c).as_deref(), Some(""));
    let other_cidr = Ruleset {
        local_cidr: None,
        ..c.clone()
    };
    assert_eq!(render_delta(&other_cidr, &c), None);

    let stepwise = nft_in_fresh_netns(&[full_a.clone(), ab.clone(), bc.clone()])
        .unwrap_or_else(|e| panic!("nft refused the deltas: {e}\n{ab}\n{bc}"));
    let direct = nft_in_fresh_netns(&[render(&c, &Default::default())]).unwrap();
    assert_eq!(
        words(&stepwise),
        words(&direct),
        "{stepwise}\n---\n{direct}"
    );
    assert!(
        stepwise.contains("10.96.0.9 . tcp . 80 : goto reject-chain"),
        "{stepwise}"
    );
    assert!(
        !stepwise.contains("aff-"),
        "web's affinity sets are gone: {stepwise}"
    );
}
