//! Cluster DNS throughput and latency: the node's DNS server (the same handler and hickory
//! server the agent runs) with a zone of N Services, asked over UDP on 127.0.0.1 by C
//! clients, each sending its next query when the last answer arrived, for S seconds. The
//! names asked cycle through every Service (`s<i>.bench.svc.cluster.local`, A), with one
//! query in ten for a name that does not exist (NXDOMAIN). Nothing is forwarded upstream.
//!
//! ```text
//! cargo run --release -p podvisor-agent --example dns-bench -- 1000 16 10
//! ```
//! Prints queries/s, latency p50/p99/max and the failures (timeouts, wrong answers).
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use podvisor_agent::dns::catalog::ZoneView;
use podvisor_agent::dns::forward::{ForwardLimits, Forwarder};
use podvisor_agent::dns::records::Zone;
use podvisor_agent::dns::{Handler, bind, serve};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

fn zone(services: usize) -> Zone {
    let svcs: Vec<Arc<Service>> = (0..services)
        .map(|i| {
            Arc::new(
                serde_json::from_value(
                    json!({"metadata": {"name": format!("s{i}"), "namespace": "bench"},
                    "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1),
                        "ports": [{"name": "web", "port": 80}]}}),
                )
                .expect("service"),
            )
        })
        .collect();
    Zone::build(&svcs, &[], None, 1, vec!["10.96.0.10".parse().expect("ip")])
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    failures: u64,
}

async fn client(server: SocketAddr, services: usize, first: usize, until: Instant) -> Seen {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.connect(server).await.expect("connect");
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 4096];
    let mut i = first;
    let mut id: u16 = 0;
    while Instant::now() < until {
        i += 1;
        id = id.wrapping_add(1);
        let missing = i.is_multiple_of(10);
        let name = if missing {
            format!("nope{i}.bench.svc.cluster.local.")
        } else {
            format!("s{}.bench.svc.cluster.local.", i % services)
        };
        let mut q = Message::new(id, MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(
            Name::from_ascii(&name).expect("name"),
            RecordType::A,
        ));
        let bytes = q.to_vec().expect("encode");
        let t = Instant::now();
        if sock.send(&bytes).await.is_err() {
            seen.failures += 1;
            continue;
        }
        let answer = loop {
            match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
                Ok(Ok(n)) => match Message::from_vec(&buf[..n]) {
                    // a late answer to an earlier (timed out) query
                    Ok(m) if m.metadata.id != id => continue,
                    Ok(m) => break Some(m),
                    Err(_) => break None,
                },
                _ => break None,
            }
        };
        let ok = answer.is_some_and(|m| {
            if missing {
                m.metadata.response_code == ResponseCode::NXDomain
            } else {
                m.metadata.response_code == ResponseCode::NoError && m.answers.len() == 1
            }
        });
        if ok {
            seen.latencies.push(t.elapsed());
        } else {
            seen.failures += 1;
        }
    }
    seen
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (services, clients, seconds) = (arg(1, 1000).max(1), arg(2, 16).max(1), arg(3, 10));
    let (udp, tcp) = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let server = udp.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let handler = Handler::new(
        ZoneView::fixed(zone(services)),
        Arc::new(Forwarder::new(Vec::new(), ForwardLimits::default())),
    );
    let serving = tokio::spawn(serve(handler, udp, tcp, stop.clone()));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds as u64);
    let tasks: Vec<_> = (0..clients)
        .map(|c| tokio::spawn(client(server, services, c * 7919, until)))
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for t in tasks {
        let seen = t.await.expect("client");
        latencies.extend(seen.latencies);
        failures += seen.failures;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = serving.await;
    latencies.sort();
    println!(
        "dns: {services} services, {clients} clients, {elapsed:.1}s: {:.0} queries/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {failures} failed",
        latencies.len() as f64 / elapsed,
        pct(&latencies, 50.0),
        pct(&latencies, 99.0),
        pct(&latencies, 100.0),
    );
}
