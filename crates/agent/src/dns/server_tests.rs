//! The server over real sockets on 127.0.0.1: flags, sections, truncation, TCP, forwarding.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::catalog::ZoneView;
use super::forward::{ForwardLimits, Forwarder};
use super::records::Zone;
use super::*;

fn zone(endpoints: usize) -> Zone {
    let services = vec![
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "shop"},
                "spec": {"clusterIP": "10.96.4.5", "ports": [{"name": "http", "port": 80}]}}))
            .unwrap(),
        ),
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "big", "namespace": "shop"},
                "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}))
            .unwrap(),
        ),
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "ext", "namespace": "shop"},
                "spec": {"type": "ExternalName", "externalName": "example.org"}}))
            .unwrap(),
        ),
    ];
    let eps: Vec<_> = (0..endpoints)
        .map(|i| json!({"addresses": [format!("10.244.{}.{}", i / 250, i % 250 + 1)], "conditions": {"ready": true}}))
        .collect();
    let slices = vec![Arc::new(
        serde_json::from_value(json!({"metadata": {"name": "big-1", "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "big"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 80}], "endpoints": eps}))
        .unwrap(),
    )];
    Zone::build(
        &services,
        &slices,
        None,
        7,
        vec!["10.96.0.10".parse().unwrap()],
    )
}

/// An upstream that answers every A query with 192.0.2.1 and recursion available.
async fn upstream() -> SocketAddr {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.recursion_available = true;
            r.add_query(q.queries[0].clone());
            r.add_answer(Record::from_rdata(
                q.queries[0].name().clone(),
                60,
                RData::A(A::new(192, 0, 2, 1)),
            ));
            let _ = udp.send_to(&r.to_vec().unwrap(), from).await;
        }
    });
    addr
}

async fn server(endpoints: usize, upstreams: Vec<SocketAddr>) -> (SocketAddr, CancellationToken) {
    let (udp, tcp) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = udp.local_addr().unwrap();
    // The TCP listener took its own ephemeral port: serve TCP on the UDP port's number.
    drop(tcp);
    let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
    let stop = CancellationToken::new();
    let handler = Handler::new(
        ZoneView::fixed(zone(endpoints)),
        Arc::new(Forwarder::new(upstreams, ForwardLimits::default())),
    );
    tokio::spawn(serve(handler, udp, tcp, stop.clone()));
    (addr, stop)
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

async fn ask_udp(server: SocketAddr, q: &Message) -> (Message, usize) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(std::time::Duration::from_secs(5), s.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    (Message::from_vec(&buf[..n]).unwrap(), n)
}

async fn ask_tcp(server: SocketAddr, q: &Message) -> Message {
    let mut s = tokio::net::TcpStream::connect(server).await.unwrap();
    s.write_all(&framed(q)).await.unwrap();
    let n = s.read_u16().await.unwrap();
    read_message(&mut s, n).await
}

/// `m` as DNS over TCP sends it: its length (2 bytes), then the message.
fn framed(m: &Message) -> Vec<u8> {
    let bytes = m.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    framed
}

/// Reads the `n` bytes of a message whose length was read.
async fn read_message(s: &mut tokio::net::TcpStream, n: u16) -> Message {
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

#[tokio::test]
async fn zone_answers_are_authoritative_without_recursion() {
    let (addr, stop) = server(3, Vec::new()).await;
    let (r, _) = ask_udp(
        addr,
        &query("web.shop.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.metadata.id, 4242);
    assert!(r.metadata.authoritative);
    assert!(!r.metadata.recursion_available);
    assert!(r.metadata.recursion_desired);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data, RData::A(A::new(10, 96, 4, 5)));
    let (r, _) = ask_udp(
        addr,
        &query("nope.shop.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.authorities.len(), 1);
    let r = ask_tcp(
        addr,
        &query("web.shop.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.answers.len(), 1);
    stop.cancel();
}

#[tokio::test]
async fn udp_answers_are_truncated_to_the_client_size_and_tcp_has_all() {
    let (addr, stop) = server(200, Vec::new()).await;
    let (r, n) = ask_udp(
        addr,
        &query("big.shop.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert!(n <= 512, "{n}");
    assert!(r.metadata.truncation);
    let (r, n) = ask_udp(
        addr,
        &query("big.shop.svc.cluster.local.", RecordType::A, Some(65000)),
    )
    .await;
    assert!(n <= forward::EDNS_PAYLOAD as usize, "{n}");
    assert!(r.metadata.truncation);
    let r = ask_tcp(
        addr,
        &query("big.shop.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 200);
    stop.cancel();
}

#[tokio::test]
async fn other_names_are_forwarded_and_external_names_chased() {
    let up = upstream().await;
    let (addr, stop) = server(1, vec![up]).await;
    let (r, _) = ask_udp(addr, &query("example.com.", RecordType::A, None)).await;
    assert!(!r.metadata.authoritative);
    assert!(r.metadata.recursion_available);
    assert_eq!(r.answers.len(), 1);
    let (r, _) = ask_udp(
        addr,
        &query("ext.shop.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.answers.len(), 2, "{r:?}");
    assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(r.answers[1].data, RData::A(A::new(192, 0, 2, 1)));
    stop.cancel();
    // Without an upstream, outside names fail (SERVFAIL), zone names still answer.
    let (addr, stop) = server(1, Vec::new()).await;
    let (r, _) = ask_udp(addr, &query("example.com.", RecordType::A, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    stop.cancel();
}

#[tokio::test]
async fn non_queries_are_not_implemented_and_unsynced_zones_fail() {
    let (addr, stop) = server(1, Vec::new()).await;
    let mut q = query("web.shop.svc.cluster.local.", RecordType::A, None);
    q.metadata.op_code = OpCode::Status;
    let (r, _) = ask_udp(addr, &q).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    stop.cancel();
    let (udp, tcp) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = udp.local_addr().unwrap();
    let stop = CancellationToken::new();
    let h = Handler::new(
        ZoneView::default(),
        Arc::new(Forwarder::new(Vec::new(), ForwardLimits::default())),
    );
    tokio::spawn(serve(h, udp, tcp, stop.clone()));
    let (r, _) = ask_udp(
        addr,
        &query("web.shop.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    stop.cancel();
}

/// The TCP server on a free port with at most `cap` connections, serving `zone(1)`.
async fn tcp_server(cap: usize) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let handler = Handler::new(
        ZoneView::fixed(zone(1)),
        Arc::new(Forwarder::new(Vec::new(), ForwardLimits::default())),
    );
    (addr, tokio::spawn(serve_tcp(handler, tcp, cap)))
}

#[tokio::test]
async fn tcp_connections_over_the_cap_are_closed_and_a_freed_slot_serves_again() {
    let (addr, served) = tcp_server(2).await;
    let q = query("web.shop.svc.cluster.local.", RecordType::A, None);
    // Two connections hold both slots; each is answered and stays open for more.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&framed(&q)).await.unwrap();
        let n = s.read_u16().await.unwrap();
        assert_eq!(read_message(&mut s, n).await.answers.len(), 1);
        held.push(s);
    }
    // A third is closed without an answer.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(&framed(&q)).await;
    let mut buf = [0u8; 2];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("the server closes the connection at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Freeing a slot lets the next connection in.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(&framed(&q)).await;
        if let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_secs(1), s.read_u16()).await
        {
            assert_eq!(read_message(&mut s, n).await.answers.len(), 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot came free");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    served.abort();
}

#[tokio::test]
async fn a_tcp_connection_that_sends_garbage_is_closed() {
    let (addr, served) = tcp_server(4).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let mut buf = [0u8; 2];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed, not left open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    served.abort();
}
