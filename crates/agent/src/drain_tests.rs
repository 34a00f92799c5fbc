use std::sync::Mutex;

use serde_json::json;

use super::*;

fn slice(rv: u64, ready: bool) -> Arc<EndpointSlice> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "shop", "resourceVersion": rv.to_string()},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.0.5"], "targetRef": {"kind": "Pod", "name": "web-1", "uid": "u1"},
                 "conditions": {"ready": ready, "terminating": !ready}},
                {"addresses": ["10.244.0.6"], "targetRef": {"kind": "Pod", "name": "web-2", "uid": "u2"},
                 "conditions": {"ready": true}}
            ]
        }))
        .unwrap(),
    )
}

fn node(name: &str, ready: bool, ack: Option<u64>) -> Arc<Node> {
    let mut annotations = serde_json::Map::new();
    if let Some(a) = ack {
        annotations.insert(ACK_ANNOTATION.into(), json!(a.to_string()));
    }
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap(),
    )
}

fn pod(annotations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "annotations": annotations}
    }))
    .unwrap()
}

#[test]
fn the_rule() {
    let ips = ["10.244.0.5".to_string()];
    let nodes = vec![node("a", true, Some(10)), node("b", true, Some(12))];
    assert_eq!(
        check("u9", &[], &[slice(12, false)], &nodes),
        Check::NotAnEndpoint
    );
    assert_eq!(
        check("u1", &ips, &[slice(11, true)], &nodes),
        Check::SlicesPending(vec!["shop/web-abc".into()])
    );
    assert_eq!(
        check("u1", &ips, &[slice(12, false)], &nodes),
        Check::NodesPending(vec!["a".into()])
    );
    // A node that is not Ready, or has no proxy, is not waited for.
    let nodes = vec![
        node("a", false, Some(10)),
        node("b", true, Some(12)),
        node("c", true, None),
    ];
    assert_eq!(
        check("u1", &ips, &[slice(12, false)], &nodes),
        Check::Drained
    );
    // Without a targetRef the address identifies the pod.
    let mut bare = (*slice(12, true)).clone();
    bare.endpoints[0].target_ref = None;
    assert!(matches!(
        check("u1", &ips, &[Arc::new(bare)], &nodes),
        Check::SlicesPending(_)
    ));
}

/// A rolling update's moment: the terminating pod u1 is the Service's only serving endpoint
/// while the new pod u3 (in another slice of the same Service) is not ready yet.
#[test]
fn a_starting_endpoint_takes_over_before_the_pod_stops() {
    let labelled = |name: &str, rv: u64, eps: serde_json::Value| {
        Arc::new(
            serde_json::from_value::<EndpointSlice>(json!({
                "metadata": {"name": name, "namespace": "shop", "resourceVersion": rv.to_string(),
                    "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": eps,
            }))
            .unwrap(),
        )
    };
    let old = |rv| {
        labelled(
            "web-1",
            rv,
            json!([{"addresses": ["10.244.0.5"], "targetRef": {"uid": "u1"},
                "conditions": {"ready": false, "serving": true, "terminating": true}}]),
        )
    };
    let new = |rv, ready: bool| {
        labelled(
            "web-2",
            rv,
            json!([{"addresses": ["10.244.0.7"], "targetRef": {"uid": "u3"},
                "conditions": {"ready": ready, "serving": ready, "terminating": false}}]),
        )
    };
    let nodes = vec![node("a", true, Some(14))];
    assert_eq!(
        check("u1", &[], &[old(12), new(11, false)], &nodes),
        Check::NoOtherReady(vec!["shop/web".into()])
    );
    // Ready in its slice: every node must have applied that slice too.
    assert_eq!(
        check("u1", &[], &[old(12), new(15, true)], &nodes),
        Check::NodesPending(vec!["a".into()])
    );
    assert_eq!(
        check("u1", &[], &[old(12), new(14, true)], &nodes),
        Check::Drained
    );
    // Nothing starting: nothing to wait for (the proxies use the terminating pods).
    assert_eq!(check("u1", &[], &[old(12)], &nodes), Check::Drained);
    let (warning, _, message) = event(
        &Outcome::TimedOut(Check::NoOtherReady(vec!["shop/web".into()])),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(warning);
    assert!(
        message.contains("no other endpoint ready yet in Services shop/web"),
        "{message}"
    );
}

#[test]
fn bound_and_opt_out() {
    assert_eq!(bound(Duration::from_secs(30)), Duration::from_secs(5));
    assert_eq!(bound(Duration::from_secs(4)), Duration::from_secs(2));
    assert_eq!(bound(Duration::ZERO), Duration::ZERO);
    assert!(enabled(&pod(json!({}))));
    assert!(enabled(&pod(json!({OPT_OUT_ANNOTATION: "true"}))));
    assert!(!enabled(&pod(json!({OPT_OUT_ANNOTATION: "false"}))));
}

struct Fake {
    state: Mutex<Option<Snapshot>>,
    changes: watch::Sender<u64>,
}

impl Fake {
    fn new(slices: Vec<Arc<EndpointSlice>>, nodes: Vec<Arc<Node>>) -> Arc<Fake> {
        Arc::new(Fake {
            state: Mutex::new(Some((slices, nodes))),
            changes: watch::channel(0).0,
        })
    }

    fn set(&self, slices: Vec<Arc<EndpointSlice>>, nodes: Vec<Arc<Node>>) {
        *self.state.lock().unwrap() = Some((slices, nodes));
        self.changes.send_modify(|n| *n += 1);
    }
}

impl DrainView for Fake {
    fn snapshot(&self, _: &str) -> Option<Snapshot> {
        self.state.lock().unwrap().clone()
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[tokio::test(start_paused = true)]
async fn waits_for_the_slice_then_every_node() {
    let fake = Fake::new(
        vec![slice(11, true)],
        vec![node("a", true, Some(11)), node("b", true, Some(11))],
    );
    let p = pod(json!({}));
    let driver = {
        let fake = fake.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // the controller marks the pod not ready
            fake.set(
                vec![slice(12, false)],
                vec![node("a", true, Some(11)), node("b", true, Some(11))],
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            fake.set(
                vec![slice(12, false)],
                vec![node("a", true, Some(12)), node("b", true, Some(11))],
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            fake.set(
                vec![slice(12, false)],
                vec![node("a", true, Some(12)), node("b", true, Some(13))],
            );
        }
    };
    let (outcome, ()) = tokio::join!(wait(fake.as_ref(), &p, &[], Duration::from_secs(5)), driver);
    assert_eq!(outcome, Outcome::Drained(Duration::from_millis(700)));
    let (warning, reason, message) = event(&outcome, Duration::from_secs(5)).unwrap();
    assert!(!warning);
    assert_eq!(reason, DRAINED);
    assert!(message.contains("700ms"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_has_not_listed_yet_waits_for_its_caches() {
    let fake = Fake::new(vec![], vec![]);
    *fake.state.lock().unwrap() = None;
    let p = pod(json!({}));
    let outcome = wait(fake.as_ref(), &p, &[], Duration::from_secs(1)).await;
    assert_eq!(outcome, Outcome::TimedOut(Check::NotListed));
    let (warning, _, message) = event(&outcome, Duration::from_secs(1)).unwrap();
    assert!(warning);
    assert!(message.contains("not yet listed"), "{message}");
    // Listed: the pod is in a slice that shows it not ready, and every node acknowledged it.
    let driver = {
        let fake = fake.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            fake.set(vec![slice(12, false)], vec![node("a", true, Some(12))]);
        }
    };
    let (outcome, ()) = tokio::join!(wait(fake.as_ref(), &p, &[], Duration::from_secs(1)), driver);
    assert_eq!(outcome, Outcome::Drained(Duration::from_millis(100)));
}

#[tokio::test(start_paused = true)]
async fn the_bound_is_a_warning_and_no_endpoint_no_wait() {
    let fake = Fake::new(vec![slice(12, false)], vec![node("a", true, Some(10))]);
    let p = pod(json!({}));
    let started = Instant::now();
    let outcome = wait(fake.as_ref(), &p, &[], Duration::from_secs(2)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        outcome,
        Outcome::TimedOut(Check::NodesPending(vec!["a".into()]))
    );
    let (warning, reason, message) = event(&outcome, Duration::from_secs(2)).unwrap();
    assert!(warning);
    assert_eq!(reason, NOT_DRAINED);
    assert!(message.contains("nodes not yet updated: a"), "{message}");
    let other = pod(json!({}));
    let mut other = other;
    other.metadata.uid = Some("nobody".into());
    let started = Instant::now();
    assert_eq!(
        wait(fake.as_ref(), &other, &[], Duration::from_secs(2)).await,
        Outcome::Skipped
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(event(&Outcome::Skipped, Duration::ZERO), None);
}

#[tokio::test(start_paused = true)]
async fn acknowledgements_follow_the_proxy_and_only_move_forward() {
    let ack = ProxyAck::default();
    let mut rx = ack.applied.subscribe();
    let (proxy, applied) = watch::channel(crate::proxy::Applied::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let follower = tokio::spawn(ack.clone().follow(applied, stop.clone()));
    let sync = |rv: u64| {
        proxy.send_replace(crate::proxy::Applied {
            resource_version: rv,
            ..Default::default()
        });
    };
    sync(12);
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), 12);
    // An older revision (a slice deleted since) does not move the acknowledgement back.
    sync(9);
    tokio::task::yield_now().await;
    ack.applied(3);
    assert_eq!(*rx.borrow(), 12);
    assert!(!rx.has_changed().unwrap());
    sync(13);
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), 13);
    // The proxy stopped: so does the follower.
    drop(proxy);
    follower.await.unwrap();
}
