//! The cluster DNS, embedded in every agent (docs/design/0005-cluster-dns.md).
//!
//! # Where it listens and how pods reach it
//!
//! ```text
//!  pod (resolv.conf: nameserver 10.96.0.10) ──▶ 10.96.0.10:53 (the kube-dns Service,
//!     internalTrafficPolicy: Local) ──proxy DNAT──▶ <node gateway>:53 ──▶ this server
//! ```
//!
//! * Each agent serves DNS on its node's pod-network gateway, the first address of the
//!   Node's `spec.podCIDR` (the bridge's address in the default CNI configuration), UDP and
//!   TCP port 53. The socket is bound with `IP_FREEBIND` before the bridge exists (it
//!   appears with the first pod), so no pod ever starts before its DNS.
//! * The `kube-dns` Service in `kube-system` (clusterIP `10.96.0.10`, ports `dns` 53/UDP and
//!   `dns-tcp` 53/TCP) is selectorless with `internalTrafficPolicy: Local`; the controller
//!   manager keeps it and one EndpointSlice per Node with that Node's gateway address
//!   (the `kubedns` controller; the objects are `podvisor_api::dns`). Every node's proxy therefore sends a pod's queries
//!   to the DNS of the pod's own node: no query crosses nodes, and a dead node takes only
//!   its own pods' DNS with it.
//! * Without a pod network (no CNI plugins) nothing is served: pods run on the host's
//!   network and `ClusterFirst` falls back to the node's resolv.conf (the kubelet's
//!   behaviour on the host network; a `MissingClusterDNS` warning says so).
//!
//! # Answers
//!
//! [`records`] (the zone, CoreDNS's `kubernetes` plugin rules) from a snapshot kept by
//! [`catalog`]; every other name goes to the node's resolvers through [`forward`].
//!
//! # Bounds (every query is network input)
//!
//! Answers from the zone are computed in place from the snapshot (no I/O, no waiting).
//! Forwarded queries are capped in number, time and size ([`forward`]); over the cap they are
//! REFUSED at once. UDP answers are at most the client's EDNS size (512 without EDNS, never
//! more than [`forward::EDNS_PAYLOAD`]) with TC set beyond; TCP connections idle for
//! [`TCP_IDLE`] are closed. Only standard queries with one question are answered (others:
//! NOTIMP / FORMERR).

pub mod catalog;
pub mod forward;
pub mod records;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Name, Record};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio_util::sync::CancellationToken;

use self::catalog::ZoneView;
use self::forward::{ForwardError, Forwarder};
use self::records::{Answer, Outcome};

pub use podvisor_api::dns::{PORT, SERVICE_IP, SERVICE_NAME, SERVICE_NAMESPACE, gateway_of};

/// A TCP connection without a query for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(5);

/// At most this many TCP connections are open at once; further ones are closed on accept.
/// Each holds at most one 64 KiB message in flight, so TCP costs at most ~16 MiB.
pub const TCP_MAX_CONNECTIONS: usize = 256;

/// Answers DNS queries from the zone and the node's resolvers. See the module documentation.
#[derive(Clone)]
pub struct Handler {
    view: ZoneView,
    forwarder: Arc<Forwarder>,
}

impl Handler {
    /// A handler answering from `view`, forwarding through `forwarder`.
    pub fn new(view: ZoneView, forwarder: Arc<Forwarder>) -> Handler {
        Handler { view, forwarder }
    }
}

/// What the handler sends: header fields and the three sections.
struct Reply {
    metadata: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn error(request: &Request, code: ResponseCode) -> Reply {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = code;
        Reply {
            metadata,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

impl Handler {
    async fn reply(&self, request: &Request) -> Reply {
        if request.metadata.op_code != OpCode::Query {
            return Reply::error(request, ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            return Reply::error(request, ResponseCode::FormErr);
        };
        let name: Name = info.query.original().name().clone();
        let qtype = info.query.query_type();
        let zone = self.view.zone();
        match zone.resolve(&name, qtype) {
            Outcome::Answer(_) if !self.view.synced() => {
                Reply::error(request, ResponseCode::ServFail)
            }
            Outcome::Answer(answer) => self.zone_reply(request, answer, qtype).await,
            Outcome::Forward => self.forwarded(request, &name, qtype).await,
        }
    }

    async fn zone_reply(
        &self,
        request: &Request,
        answer: Answer,
        qtype: hickory_proto::rr::RecordType,
    ) -> Reply {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.response_code = answer.rcode;
        let mut reply = Reply {
            metadata,
            answers: answer.answers,
            authorities: answer.authorities,
            additionals: answer.additionals,
        };
        if let Some(target) = answer.chase
            && let Ok(upstream) = self.forwarder.query(&target, qtype).await
        {
            reply.answers.extend(upstream.answers);
        }
        reply
    }

    async fn forwarded(
        &self,
        request: &Request,
        name: &Name,
        qtype: hickory_proto::rr::RecordType,
    ) -> Reply {
        match self.forwarder.query(name, qtype).await {
            Ok(upstream) => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = upstream.metadata.response_code;
                metadata.recursion_available = upstream.metadata.recursion_available;
                metadata.authentic_data = upstream.metadata.authentic_data;
                Reply {
                    metadata,
                    answers: upstream.answers,
                    authorities: upstream.authorities,
                    additionals: upstream.additionals,
                }
            }
            Err(ForwardError::Busy) => Reply::error(request, ResponseCode::Refused),
            Err(e) => {
                tracing::debug!(name = %name, error = %e, "dns: forwarding failed");
                Reply::error(request, ResponseCode::ServFail)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let reply = self.reply(request).await;
        let edns = request.edns.as_ref().map(|e| {
            let mut out = Edns::new();
            out.set_max_payload(e.max_payload().clamp(512, forward::EDNS_PAYLOAD));
            out
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let metadata = reply.metadata;
        let response = builder.build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "dns: cannot send a response");
                let mut failed = metadata;
                failed.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: failed,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

fn freebind_socket(
    addr: SocketAddr,
    kind: nix::sys::socket::SockType,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockaddrStorage, sockopt};
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(
        family,
        kind,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    if addr.is_ipv4() {
        socket::setsockopt(&fd, sockopt::IpFreebind, &true)?;
    }
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(fd)
}

/// Binds UDP and TCP on `addr` (also an address the host does not have yet, IPv4).
pub fn bind(addr: SocketAddr) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    use nix::sys::socket::{Backlog, SockType, listen};
    let udp = freebind_socket(addr, SockType::Datagram)?;
    let udp = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(udp))?;
    let tcp = freebind_socket(addr, SockType::Stream)?;
    listen(&tcp, Backlog::new(1024).map_err(std::io::Error::other)?)?;
    let tcp = tokio::net::TcpListener::from_std(std::net::TcpListener::from(tcp))?;
    Ok((udp, tcp))
}

/// Serves `handler` on `udp` and `tcp` until `stop`.
pub async fn serve(
    handler: Handler,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    stop: CancellationToken,
) {
    let mut server = hickory_server::Server::new(handler.clone());
    server.register_socket(udp);
    tokio::select! {
        _ = stop.cancelled() => {
            let _ = server.shutdown_gracefully().await;
        }
        r = server.block_until_done() => {
            if let Err(e) = r {
                tracing::warn!(error = %e, "the DNS server stopped");
            }
        }
        () = serve_tcp(handler, tcp, TCP_MAX_CONNECTIONS) => {}
    }
}

/// DNS over TCP (RFC 7766 framing) with a cap on open connections: hickory-server's own
/// listener takes no limit, so a client could hold any number of sockets and tasks.
/// Connections over `max` are accepted and closed at once, so the backlog never fills
/// with them.
pub async fn serve_tcp(handler: Handler, tcp: tokio::net::TcpListener, max: usize) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let mut open = tokio::task::JoinSet::new();
    loop {
        let (stream, src) = match tcp.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of descriptors or a reset before accept: wait a little, never spin.
                tracing::debug!(error = %e, "dns: TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%src, max, "dns: too many TCP connections; closing");
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        open.spawn(async move {
            serve_tcp_connection(&handler, stream, src).await;
            drop(slot);
        });
        while open.try_join_next().is_some() {}
    }
}

/// Answers the queries of one TCP connection in order until it closes, idles for
/// [`TCP_IDLE`] or sends something that is not a DNS query.
async fn serve_tcp_connection(handler: &Handler, stream: tokio::net::TcpStream, src: SocketAddr) {
    use futures::StreamExt;
    use hickory_server::net::runtime::TokioTime;
    use hickory_server::net::runtime::iocompat::AsyncIoTokioAsStd;
    use hickory_server::net::tcp::TcpStream;
    use hickory_server::net::xfer::Protocol;
    use hickory_server::server::{ResponseHandle, TimeoutStream};

    let (messages, replies) = TcpStream::from_stream_with_buffer_size(
        AsyncIoTokioAsStd(stream),
        src,
        // One query is answered at a time, so one reply is ever queued.
        2,
    );
    let mut messages = TimeoutStream::new(messages, TCP_IDLE);
    while let Some(Ok(message)) = messages.next().await {
        let (bytes, src) = message.into_parts();
        let request = match Request::from_bytes(bytes, src, Protocol::Tcp) {
            Ok(request) => request,
            Err(e) => {
                tracing::debug!(%src, error = %e, "dns: undecodable TCP message; closing");
                return;
            }
        };
        if request.metadata.message_type == hickory_proto::op::MessageType::Response {
            return;
        }
        let respond = ResponseHandle::new(src, replies.clone(), Protocol::Tcp);
        handler
            .handle_request::<_, TokioTime>(&request, respond)
            .await;
    }
}

/// The node's DNS: waits for the Node's podCIDR, listens on its gateway and answers until
/// `stop`. `resolv_conf` is the node's (upstream resolvers).
pub async fn run_node(
    client: kube::Client,
    node: String,
    resolv_conf: String,
    clock: crate::clock::WallClock,
    stop: CancellationToken,
) {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let gateway = loop {
        let cidr = nodes
            .get_opt(&node)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.spec?.pod_cidr);
        if let Some(gw) = cidr.as_deref().and_then(gateway_of) {
            break gw;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    let addr = SocketAddr::new(gateway, PORT);
    let (udp, tcp) = match bind(addr) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot listen for DNS; pods get no cluster DNS");
            return;
        }
    };
    let service_ip: IpAddr = SERVICE_IP.parse().unwrap_or(gateway);
    let upstreams = forward::nameservers(&resolv_conf, &[service_ip, gateway]);
    tracing::info!(%addr, upstreams = ?upstreams, "cluster DNS listening");
    let view = ZoneView::default();
    let forwarder = Arc::new(Forwarder::new(upstreams, Default::default()));
    let watch = catalog::run(client, view.clone(), vec![service_ip], clock, stop.clone());
    tokio::join!(
        watch,
        serve(Handler::new(view, forwarder), udp, tcp, stop.clone())
    );
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod server_tests;
