//! Forwarding of names outside the cluster zone to the node's resolvers (the `nameserver`s of
//! the host's `/etc/resolv.conf`, as CoreDNS's `forward . /etc/resolv.conf`).
//!
//! Every query is network input, so each is bounded:
//!
//! * at most [`ForwardLimits::max_in_flight`] upstream queries at once; one more is refused
//!   at once (REFUSED, as CoreDNS's `max_concurrent`) instead of queueing;
//! * each upstream is tried in turn with [`ForwardLimits::attempt_timeout`] per attempt, the
//!   whole query within [`ForwardLimits::total_timeout`] (then SERVFAIL);
//! * the query is re-made (new ID, the one question, RD, EDNS with a 1232-byte payload), never
//!   relayed byte for byte; a UDP answer is read into a 4096-byte buffer and a truncated one
//!   (TC) is asked again over TCP, whose answers are at most 65,535 bytes by their length
//!   prefix;
//! * an answer counts only if its ID and question match the query.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The EDNS payload size podvisor advertises upstream and answers with at most over UDP
/// (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;
const UDP_BUFFER: usize = 4096;

/// The bounds of forwarding.
#[derive(Clone, Debug)]
pub struct ForwardLimits {
    /// Upstream queries at once (default 512).
    pub max_in_flight: usize,
    /// One attempt at one upstream (default 2 s).
    pub attempt_timeout: Duration,
    /// The whole query (default 5 s, as a resolver's default `timeout:5`).
    pub total_timeout: Duration,
}

impl Default for ForwardLimits {
    fn default() -> Self {
        ForwardLimits {
            max_in_flight: 512,
            attempt_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a forwarded query has no answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    /// Too many queries in flight: refused without asking.
    #[error("too many upstream queries in flight")]
    Busy,
    /// No upstream resolver is configured.
    #[error("no upstream resolver")]
    NoUpstream,
    /// No upstream answered in time.
    #[error("no upstream answered: {0}")]
    Failed(String),
}

/// The node's resolvers. See the module documentation.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    permits: Arc<Semaphore>,
    limits: ForwardLimits,
}

/// The `nameserver` addresses of a resolv.conf text (port 53), at most 3 as the resolver
/// uses, none of `own` (the cluster DNS itself: no loops).
pub fn nameservers(resolv_conf: &str, own: &[IpAddr]) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then(|| f.next()).flatten()
        })
        .filter_map(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        .filter(|ip| !own.contains(ip))
        .map(|ip| SocketAddr::new(ip, 53))
        .take(3)
        .collect()
}

impl Forwarder {
    /// A forwarder to `upstreams`.
    pub fn new(upstreams: Vec<SocketAddr>, limits: ForwardLimits) -> Forwarder {
        Forwarder {
            upstreams,
            permits: Arc::new(Semaphore::new(limits.max_in_flight)),
            limits,
        }
    }

    /// The upstream resolvers.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// A place among the in-flight queries, or [`ForwardError::Busy`].
    pub fn permit(&self) -> Result<OwnedSemaphorePermit, ForwardError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ForwardError::Busy)
    }

    /// Asks the upstreams for `name` / `qtype` (recursion desired) and returns the first
    /// matching answer. Holds a permit for the whole time.
    pub async fn query(&self, name: &Name, qtype: RecordType) -> Result<Message, ForwardError> {
        let _permit = self.permit()?;
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        match tokio::time::timeout(self.limits.total_timeout, self.try_all(name, qtype)).await {
            Ok(r) => r,
            Err(_) => Err(ForwardError::Failed("timed out".into())),
        }
    }

    async fn try_all(&self, name: &Name, qtype: RecordType) -> Result<Message, ForwardError> {
        let mut last = String::new();
        for upstream in &self.upstreams {
            let query = make_query(name, qtype);
            let attempt = async {
                let reply = udp_exchange(*upstream, &query).await?;
                if reply.metadata.truncation {
                    tcp_exchange(*upstream, &query).await
                } else {
                    Ok(reply)
                }
            };
            match tokio::time::timeout(self.limits.attempt_timeout, attempt).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(e)) => last = format!("{upstream}: {e}"),
                Err(_) => last = format!("{upstream}: timed out"),
            }
        }
        Err(ForwardError::Failed(last))
    }
}

fn make_query(name: &Name, qtype: RecordType) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let mut q = Query::query(name.clone(), qtype);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    m.set_edns(edns);
    m
}

/// Whether `reply` answers `query` (same ID and question).
fn matches(query: &Message, reply: &Message) -> bool {
    reply.metadata.id == query.metadata.id
        && reply.metadata.message_type == MessageType::Response
        && reply.queries.len() == 1
        && query.queries.first().is_some_and(|q| {
            let r = &reply.queries[0];
            r.query_type() == q.query_type() && r.name() == q.name()
        })
}

async fn udp_exchange(upstream: SocketAddr, query: &Message) -> std::io::Result<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    let bytes = query.to_vec().map_err(std::io::Error::other)?;
    socket.send(&bytes).await?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Stray datagrams (a late answer to nothing, spoofing) are skipped; the attempt's
        // timeout bounds the loop.
        if let Ok(reply) = Message::from_vec(&buf[..n])
            && matches(query, &reply)
        {
            return Ok(reply);
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, query: &Message) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let bytes = query.to_vec().map_err(std::io::Error::other)?;
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await?;
    let n = stream.read_u16().await? as usize;
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).await?;
    let reply = Message::from_vec(&buf).map_err(std::io::Error::other)?;
    if !matches(query, &reply) {
        return Err(std::io::Error::other("the answer does not match the query"));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};

    #[test]
    fn nameservers_from_resolv_conf() {
        let text = "# comment\nsearch example.org\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver 10.96.0.10\nnameserver 1.1.1.1\nnameserver 8.8.8.8\noptions ndots:2\n";
        let own = ["10.96.0.10".parse().unwrap()];
        assert_eq!(
            nameservers(text, &own),
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap(),
                "1.1.1.1:53".parse().unwrap()
            ]
        );
    }

    /// A fake upstream on 127.0.0.1 that answers A queries with 192.0.2.1 and `truncated`
    /// over UDP (then a full answer over TCP), counting what it got.
    async fn upstream(truncated: bool) -> SocketAddr {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let answer = |q: &Message, trunc: bool| {
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.recursion_available = true;
            r.metadata.truncation = trunc;
            r.add_query(q.queries[0].clone());
            if !trunc {
                r.add_answer(Record::from_rdata(
                    q.queries[0].name().clone(),
                    60,
                    RData::A(A::new(192, 0, 2, 1)),
                ));
            }
            r.to_vec().unwrap()
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                let q = Message::from_vec(&buf[..n]).unwrap();
                // A stray datagram first: ignored by the client.
                let _ = udp.send_to(b"junk", from).await;
                let _ = udp.send_to(&answer(&q, truncated), from).await;
            }
        });
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    return;
                };
                let n = s.read_u16().await.unwrap() as usize;
                let mut buf = vec![0u8; n];
                s.read_exact(&mut buf).await.unwrap();
                let q = Message::from_vec(&buf).unwrap();
                let out = answer(&q, false);
                let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&out);
                s.write_all(&framed).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn forwards_over_udp_and_tcp_after_truncation() {
        let name = Name::from_ascii("example.com.").unwrap();
        for truncated in [false, true] {
            let up = upstream(truncated).await;
            let f = Forwarder::new(vec![up], ForwardLimits::default());
            let reply = f.query(&name, RecordType::A).await.unwrap();
            assert_eq!(reply.answers.len(), 1, "truncated: {truncated}");
            assert!(!reply.metadata.truncation);
        }
    }

    #[tokio::test]
    async fn a_dead_upstream_is_skipped_and_all_dead_fails_in_time() {
        let name = Name::from_ascii("example.com.").unwrap();
        // A bound socket that never answers.
        let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        let limits = ForwardLimits {
            attempt_timeout: Duration::from_millis(100),
            total_timeout: Duration::from_millis(1000),
            ..ForwardLimits::default()
        };
        let up = upstream(false).await;
        let f = Forwarder::new(vec![dead_addr, up], limits.clone());
        assert_eq!(
            f.query(&name, RecordType::A).await.unwrap().answers.len(),
            1
        );
        let f = Forwarder::new(vec![dead_addr], limits);
        let started = tokio::time::Instant::now();
        assert!(matches!(
            f.query(&name, RecordType::A).await,
            Err(ForwardError::Failed(_))
        ));
        assert!(started.elapsed() < Duration::from_millis(900));
        let none = Forwarder::new(Vec::new(), ForwardLimits::default());
        assert_eq!(
            none.query(&name, RecordType::A).await.unwrap_err(),
            ForwardError::NoUpstream
        );
    }

    #[test]
    fn queries_beyond_the_limit_are_refused() {
        let f = Forwarder::new(
            Vec::new(),
            ForwardLimits {
                max_in_flight: 2,
                ..ForwardLimits::default()
            },
        );
        let a = f.permit().unwrap();
        let _b = f.permit().unwrap();
        assert_eq!(f.permit().unwrap_err(), ForwardError::Busy);
        drop(a);
        assert!(f.permit().is_ok());
    }
}
