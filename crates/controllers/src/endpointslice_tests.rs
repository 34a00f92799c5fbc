use super::*;
use serde_json::json;

fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "d", "uid": format!("u-{name}"), "labels": {"app": "a"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
    }))
    .unwrap()
}

fn terminating(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ));
    p
}

fn svc(extra: serde_json::Value) -> Service {
    let mut spec = json!({"selector": {"app": "a"}, "clusterIP": "10.96.0.9",
        "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(
        json!({"metadata": {"name": "s", "namespace": "d", "uid": "svc-uid",
        "labels": {"team": "x"}}, "spec": spec}),
    )
    .unwrap()
}

fn no_zone(_: &str) -> Option<String> {
    Some("z1".into())
}

fn conditions(eps: &[Endpoint], ip: &str) -> (bool, bool, bool) {
    let c = eps
        .iter()
        .find(|e| e.addresses[0] == ip)
        .unwrap()
        .conditions
        .clone()
        .unwrap();
    (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
}

/// Applies a plan to `existing` as the API would (names for created slices).
fn apply(existing: &[EndpointSlice], plan: &SlicePlan) -> Vec<EndpointSlice> {
    let mut out: Vec<EndpointSlice> = existing
        .iter()
        .filter(|s| {
            !plan
                .delete
                .iter()
                .any(|d| d.metadata.name == s.metadata.name)
        })
        .filter(|s| {
            !plan
                .update
                .iter()
                .any(|u| u.metadata.name == s.metadata.name)
        })
        .cloned()
        .collect();
    out.extend(plan.update.iter().cloned());
    for (i, c) in plan.create.iter().enumerate() {
        let mut c = c.clone();
        c.metadata.name = Some(format!("s-{}-{i}", existing.len()));
        out.push(c);
    }
    out
}

#[test]
fn conditions_follow_spec_section_6() {
    let pods = [
        pod("ready", "10.0.0.1", true),
        pod("unready", "10.0.0.2", false),
        terminating(pod("draining", "10.0.0.3", true)),
        terminating(pod("gone", "10.0.0.4", false)),
    ];
    let desired = desired_endpoints(&svc(json!({})), pods.iter(), &no_zone);
    let (_, eps) = desired.values().next().unwrap();
    assert_eq!(conditions(eps, "10.0.0.1"), (true, true, false));
    assert_eq!(conditions(eps, "10.0.0.2"), (false, false, false));
    assert_eq!(
        conditions(eps, "10.0.0.3"),
        (false, true, true),
        "terminating is never ready"
    );
    assert_eq!(conditions(eps, "10.0.0.4"), (false, false, true));
    let published = desired_endpoints(
        &svc(json!({"publishNotReadyAddresses": true})),
        pods.iter(),
        &no_zone,
    );
    let (_, eps) = published.values().next().unwrap();
    assert_eq!(conditions(eps, "10.0.0.2"), (true, false, false));
    assert_eq!(conditions(eps, "10.0.0.3"), (true, true, true));
    let ep = &eps[0];
    assert_eq!(ep.node_name.as_deref(), Some("n1"));
    assert_eq!(ep.zone.as_deref(), Some("z1"));
    assert_eq!(ep.target_ref.as_ref().unwrap().kind.as_deref(), Some("Pod"));
}

#[test]
fn terminal_and_ipless_pods_are_not_listed_and_named_ports_resolve_per_pod() {
    let mut done = pod("done", "10.0.0.5", false);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut pending = pod("pending", "", false);
    pending.status.as_mut().unwrap().pod_ip = None;
    let mut other = pod("other", "10.0.0.6", true);
    other.spec.as_mut().unwrap().containers[0]
        .ports
        .as_mut()
        .unwrap()[0]
        .container_port = 9090;
    let mut portless = pod("portless", "10.0.0.7", true);
    portless.spec.as_mut().unwrap().containers[0].ports = None;
    let pods = [done, pending, pod("a", "10.0.0.1", true), other, portless];
    let desired = desired_endpoints(&svc(json!({})), pods.iter(), &no_zone);
    let groups: Vec<(Vec<Option<i32>>, Vec<String>)> = desired
        .values()
        .map(|(ports, eps)| {
            (
                ports.iter().map(|p| p.port).collect(),
                eps.iter().map(|e| e.addresses[0].clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            (vec![], vec!["10.0.0.7".to_string()]),
            (vec![Some(8080)], vec!["10.0.0.1".to_string()]),
            (vec![Some(9090)], vec!["10.0.0.6".to_string()]),
        ]
    );
}

#[test]
fn slices_hold_at_most_100_endpoints_and_a_second_plan_writes_nothing() {
    let pods: Vec<Pod> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.1.{}.{}", i / 200, i % 200 + 1),
                true,
            )
        })
        .collect();
    let s = svc(json!({}));
    let p1 = plan(&s, desired_endpoints(&s, pods.iter(), &no_zone), &[]);
    let mut sizes: Vec<usize> = p1.create.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100, 100]);
    let created = &p1.create[0];
    let labels = created.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_SERVICE_NAME], "s");
    assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
    assert_eq!(labels["team"], "x", "the Service's labels are copied");
    assert_eq!(created.metadata.generate_name.as_deref(), Some("s-"));
    let owner = &created.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Service", "svc-uid", Some(true))
    );
    let state = apply(&[], &p1);
    let p2 = plan(&s, desired_endpoints(&s, pods.iter(), &no_zone), &state);
    assert_eq!(p2, SlicePlan::default());

    // One pod goes unready: only its slice is written.
    let mut changed = pods.clone();
    changed[7]
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .status = "False".into();
    let p3 = plan(&s, desired_endpoints(&s, changed.iter(), &no_zone), &state);
    assert_eq!(
        (p3.create.len(), p3.update.len(), p3.delete.len()),
        (0, 1, 0)
    );
    // A new pod fills the slice with room instead of making a new one.
    let mut more = pods.clone();
    more.push(pod("new", "10.9.9.9", true));
    let p4 = plan(&s, desired_endpoints(&s, more.iter(), &no_zone), &state);
    assert_eq!(
        (p4.create.len(), p4.update.len(), p4.delete.len()),
        (0, 1, 0)
    );
    assert_eq!(p4.update[0].endpoints.len(), 51);
}

#[test]
fn a_service_without_endpoints_keeps_one_placeholder() {
    let s = svc(json!({}));
    let p1 = plan(&s, desired_endpoints(&s, [].iter(), &no_zone), &[]);
    assert_eq!(p1.create.len(), 1);
    assert!(p1.create[0].endpoints.is_empty());
    assert_eq!(p1.create[0].ports, Some(vec![]));
    let state = apply(&[], &p1);
    assert_eq!(
        plan(&s, desired_endpoints(&s, [].iter(), &no_zone), &state),
        SlicePlan::default()
    );
    // Pods arrive: the placeholder is reused (or replaced), never kept beside real slices.
    let pods = [pod("a", "10.0.0.1", true)];
    let p2 = plan(&s, desired_endpoints(&s, pods.iter(), &no_zone), &state);
    let after = apply(&state, &p2);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].endpoints.len(), 1);
    // All pods gone: back to one empty slice.
    let p3 = plan(&s, desired_endpoints(&s, [].iter(), &no_zone), &after);
    let last = apply(&after, &p3);
    assert_eq!(last.len(), 1);
    assert!(last[0].endpoints.is_empty());
}

#[test]
fn headless_services_label_their_slices() {
    let s = svc(json!({"clusterIP": "None"}));
    let labels = slice_labels(&s);
    assert_eq!(labels.get(LABEL_HEADLESS).map(String::as_str), Some(""));
    let mut h: Pod = pod("h", "10.0.0.1", true);
    h.spec.as_mut().unwrap().hostname = Some("web-0".into());
    h.spec.as_mut().unwrap().subdomain = Some("s".into());
    let desired = desired_endpoints(&s, [h].iter(), &no_zone);
    assert_eq!(
        desired.values().next().unwrap().1[0].hostname.as_deref(),
        Some("web-0")
    );
}
