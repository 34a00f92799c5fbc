//! Service proxy sync time: N Services × M endpoints, built, rendered and applied with the
//! real `nft` in a network namespace of this process's own (`unshare(CLONE_NEWNET)`: the
//! machine's rules are never touched). Needs root and the `nft` tool.
//!
//! ```text
//! cargo run --release -p podvisor-agent --example proxy-bench -- 1000 10
//! ```
//! Prints the first sync (empty table → everything), a sync after one endpoint changed and
//! a sync after one Service was removed (both deltas, as the proxy applies them), and a full
//! resync of the last state for comparison.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use podvisor_agent::proxy::nft::{Dataplane, Nft};
use podvisor_agent::proxy::rules;
use serde_json::json;

fn objects(services: usize, endpoints: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut svcs = Vec::new();
    let mut slices = Vec::new();
    for i in 0..services {
        let name = format!("s{i}");
        svcs.push(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "bench"},
                "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1),
                    "ports": [{"name": "web", "port": 80, "protocol": "TCP"}]}}))
            .expect("service"),
        );
        let eps: Vec<_> = (0..endpoints)
            .map(|j| {
                let n = i * endpoints + j;
                json!({"addresses": [format!("10.{}.{}.{}", 100 + n / 65_000, (n / 250) % 250, n % 250 + 1)],
                    "conditions": {"ready": true, "serving": true, "terminating": false}, "nodeName": "n1"})
            })
            .collect();
        slices.push(
            serde_json::from_value(
                json!({"metadata": {"name": format!("{name}-x"), "namespace": "bench",
                "uid": format!("u{i}"), "generation": 1,
                "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "endpoints": eps,
                "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]}),
            )
            .expect("slice"),
        );
    }
    (svcs, slices)
}

struct Timed {
    build: Duration,
    render: Duration,
    apply: Duration,
    rules: usize,
    bytes: usize,
}

async fn sync(
    nft: &Nft,
    svcs: &[Service],
    slices: &[EndpointSlice],
    previous: Option<&rules::Ruleset>,
) -> (Timed, rules::Ruleset) {
    let t0 = tokio::time::Instant::now();
    let s: Vec<&Service> = svcs.iter().collect();
    let l: Vec<&EndpointSlice> = slices.iter().collect();
    let r = rules::build(&s, &l, "n1", Some("10.244.0.0/24".into()));
    let t1 = tokio::time::Instant::now();
    // As the proxy does: a delta after a successful sync, the whole table on the first.
    let script = previous
        .and_then(|p| rules::render_delta(&r, p))
        .unwrap_or_else(|| rules::render(&r, &Default::default()));
    let t2 = tokio::time::Instant::now();
    nft.apply(&script)
        .await
        .expect("nft applies the transaction");
    let t3 = tokio::time::Instant::now();
    (
        Timed {
            build: t1 - t0,
            render: t2 - t1,
            apply: t3 - t2,
            rules: r.rule_count(),
            bytes: script.len(),
        },
        r,
    )
}

fn print(what: &str, t: &Timed) {
    println!(
        "{what}: total={:?} build={:?} render={:?} nft={:?} rules={} script={} KiB",
        t.build + t.render + t.apply,
        t.build,
        t.render,
        t.apply,
        t.rules,
        t.bytes / 1024
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let endpoints: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("a network namespace of our own (needs root)");
    let nft = Nft::find().expect("the nft tool");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (svcs, mut slices) = objects(services, endpoints);
        println!("services={services} endpoints/service={endpoints}");
        let (t, r1) = sync(&nft, &svcs, &slices, None).await;
        print("first sync", &t);
        slices[0].endpoints[0]
            .conditions
            .as_mut()
            .expect("conditions")
            .ready = Some(false);
        let (t, r2) = sync(&nft, &svcs, &slices, Some(&r1)).await;
        print("one endpoint not ready", &t);
        let (t, r3) = sync(&nft, &svcs[1..], &slices[1..], Some(&r2)).await;
        print("one service removed", &t);
        // The full transaction of the same state, for comparison.
        let t0 = tokio::time::Instant::now();
        let script = rules::render(&r3, &rules::owned_objects(&r3));
        let t1 = tokio::time::Instant::now();
        nft.apply(&script)
            .await
            .expect("nft applies the transaction");
        let full = Timed {
            build: Duration::ZERO,
            render: t1 - t0,
            apply: t1.elapsed(),
            rules: r3.rule_count(),
            bytes: script.len(),
        };
        print("full resync of the same state", &full);
    });
}
