//! Port forwarding (the kubelet's `/portForward`), which the API server's `pods/portforward`
//! proxies to, so `kubectl port-forward` works.
//!
//! ```text
//! GET /portForward/<ns>/<pod>        Upgrade: websocket  Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io
//! GET|POST /portForward/<ns>/<pod>   Upgrade: SPDY/3.1   X-Stream-Protocol-Version: portforward.k8s.io
//! Authorization: Bearer <node token>
//! ```
//!
//! Either way the session speaks SPDY/3.1 ([`super::spdy`]): over the WebSocket each binary
//! message carries the next bytes of the SPDY stream (kubectl 1.31 and later); after the
//! SPDY upgrade, the connection itself. For each forwarded connection the client opens two
//! streams with the headers `streamType` (`error`, then `data`), `port` and `requestID`;
//! once both are there the agent connects to `localhost:<port>` **inside the pod's network
//! namespace** (a thread enters it, [`podvisor_runtime::process::netns::connect_in`]; a
//! host-network pod's is the node's) and relays the data stream both ways, each side's end
//! of stream passed on as a half close. A connection that fails is reported on the error
//! stream with the text the kubelet and containerd give it
//! (`error forwarding port 80 to pod <id>, uid : failed to execute portforward in network
//! namespace …: … connect: connection refused`), and both streams are closed. Any number of
//! connections share a session (at most [`MAX_PAIRS`] at once).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use podvisor_runtime::ContainerRuntime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::common::{authorized, find_sandbox, plain};
use super::spdy::{self, FLAG_FIN, Frame, HeaderCodec, kind};

/// The WebSocket subprotocol (SPDY tunnelled in WebSocket).
pub const PROTOCOL_WEBSOCKET: &str = "SPDY/3.1+portforward.k8s.io";
/// The stream protocol of the SPDY upgrade.
pub const PROTOCOL_SPDY: &str = "portforward.k8s.io";
/// Forwarded connections open at once in one session.
pub const MAX_PAIRS: usize = 256;
/// Bytes per data frame sent.
const CHUNK: usize = 32 * 1024;
/// How long a connection inside the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct PfState {
    runtime: Arc<dyn ContainerRuntime>,
    token: Arc<str>,
}

/// The `/portForward` route.
pub fn router(runtime: Arc<dyn ContainerRuntime>, token: Arc<str>) -> Router {
    Router::new()
        .route(
            "/portForward/{ns}/{pod}",
            get(port_forward).post(port_forward),
        )
        .with_state(PfState { runtime, token })
}

/// Where a pod's ports are: its sandbox ID and network namespace.
struct PodNet {
    sandbox: String,
    netns: PathBuf,
}

async fn find_pod(runtime: &dyn ContainerRuntime, ns: &str, pod: &str) -> Result<PodNet, Response> {
    let sb = find_sandbox(runtime, ns, pod)
        .await
        .ok()
        .filter(|s| s.state == podvisor_runtime::SandboxState::Ready)
        .ok_or_else(|| {
            plain(
                StatusCode::NOT_FOUND,
                format!("pod not found (\"{pod}_{ns}\")"),
            )
        })?;
    Ok(PodNet {
        netns: sb
            .netns
            .unwrap_or_else(|| podvisor_runtime::process::netns::netns_of(std::process::id())),
        sandbox: sb.config.id,
    })
}

async fn port_forward(
    State(st): State<PfState>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    if !authorized(&st.token, req.headers()) {
        return plain(StatusCode::UNAUTHORIZED, "Unauthorized".into());
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let target = match find_pod(st.runtime.as_ref(), &ns, &pod).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if upgrade == "websocket" {
        let (mut parts, _) = req.into_parts();
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(e) => return e.into_response(),
        };
        return ws
            .protocols([PROTOCOL_WEBSOCKET])
            .on_upgrade(move |socket| async move {
                let io = bridge(socket);
                serve(io, target).await;
            });
    }
    if upgrade.starts_with("spdy/3.1") {
        let on = hyper::upgrade::on(req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                serve(hyper_util::rt::TokioIo::new(up), target).await;
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", PROTOCOL_SPDY)
            .body(axum::body::Body::empty())
            .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    }
    plain(StatusCode::BAD_REQUEST, "Upgrade request required".into())
}

/// A byte stream over a WebSocket: binary messages in and out, pings answered.
fn bridge(ws: WebSocket) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let mut buf = vec![0u8; CHUNK];
        loop {
            tokio::select! {
                m = stream.next() => match m {
                    Some(Ok(Message::Binary(d))) => {
                        if wr.write_all(&d).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(p))) => {
                        if sink.send(Message::Pong(p)).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink
                            .send(Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                },
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    ours
}

/// One forwarded connection being assembled: its two streams.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
}

/// Runs a SPDY port-forward session on `io` until the client goes away.
async fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(io: S, target: PodNet) {
    let target = Arc::new(target);
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut codec = HeaderCodec::default();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut inbound: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_stream = 0;
    loop {
        while tasks.try_join_next().is_some() {}
        let frame = match spdy::read_frame(&mut rd).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::info!(error = %e, "port-forward session ended");
                break;
            }
        };
        match frame {
            Frame::Control {
                kind: kind::SYN_STREAM,
                payload,
                ..
            } => {
                let (id, block) = match spdy::syn_stream(&payload) {
                    Ok(x) => x,
                    Err(_) => break,
                };
                last_stream = last_stream.max(id);
                let headers = match codec.decode(block) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::info!(error = %e, "bad port-forward headers");
                        break;
                    }
                };
                let port = headers.get("port").and_then(|p| p.parse::<u16>().ok());
                let (Some(port), Some(kind)) = (port.filter(|p| *p > 0), headers.get("streamtype"))
                else {
                    let _ = out.send(spdy::rst_frame(id, 1)).await;
                    continue;
                };
                if out.send(codec.syn_reply(id)).await.is_err() {
                    break;
                }
                let request = headers.get("requestid").cloned().unwrap_or_default();
                if tasks.len() >= MAX_PAIRS
                    || (pairs.len() >= MAX_PAIRS && !pairs.contains_key(&request))
                {
                    let _ = out.send(spdy::rst_frame(id, 7)).await;
                    continue;
                }
                let p = pairs.entry(request.clone()).or_default();
                p.port = port;
                match kind.as_str() {
                    "error" => p.error = Some(id),
                    "data" => p.data = Some(id),
                    _ => {
                        let _ = out.send(spdy::rst_frame(id, 1)).await;
                        continue;
                    }
                }
                if let (Some(e), Some(d)) = (p.error, p.data) {
                    let port = p.port;
                    pairs.remove(&request);
                    let (tx, rx) = mpsc::channel(16);
                    inbound.insert(d, tx);
                    tasks.spawn(forward(out.clone(), e, d, port, target.clone(), rx));
                }
            }
            Frame::Control {
                kind: kind::PING,
                payload,
                ..
            } => {
                if out.send(spdy::ping_frame(&payload)).await.is_err() {
                    break;
                }
            }
            Frame::Control {
                kind: kind::RST_STREAM,
                payload,
                ..
            } => {
                if payload.len() >= 4 {
                    let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff;
                    inbound.remove(&id);
                }
            }
            Frame::Control {
                kind: kind::GOAWAY, ..
            } => break,
            Frame::Control { .. } => {}
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                if let Some(tx) = inbound.get(&stream) {
                    let gone = !data.is_empty() && tx.send(data).await.is_err();
                    if gone || flags & FLAG_FIN != 0 {
                        inbound.remove(&stream);
                    }
                }
            }
        }
    }
    drop(inbound);
    tasks.shutdown().await;
    let _ = out.send(spdy::goaway_frame(last_stream)).await;
    drop(out);
    let _ = writer.await;
}

/// Relays one forwarded connection (see the module documentation).
async fn forward(
    out: mpsc::Sender<Vec<u8>>,
    error: u32,
    data: u32,
    port: u16,
    target: Arc<PodNet>,
    mut inbound: mpsc::Receiver<Vec<u8>>,
) {
    let t = target.clone();
    let conn = tokio::task::spawn_blocking(move || connect(&t, port))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let stream = match conn.and_then(|s| {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        tokio::net::TcpStream::from_std(s).map_err(|e| e.to_string())
    }) {
        Ok(s) => s,
        Err(cause) => {
            let msg = format!(
                "error forwarding port {port} to pod {}, uid : {cause}",
                target.sandbox
            );
            tracing::info!("{msg}");
            let _ = out.send(spdy::data_frame(error, 0, msg.as_bytes())).await;
            let _ = out.send(spdy::data_frame(error, FLAG_FIN, &[])).await;
            let _ = out.send(spdy::data_frame(data, FLAG_FIN, &[])).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let to_pod = async move {
        while let Some(chunk) = inbound.recv().await {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    let out2 = out.clone();
    let from_pod = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out2
                        .send(spdy::data_frame(data, 0, &buf[..n]))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = out2.send(spdy::data_frame(data, FLAG_FIN, &[])).await;
    };
    tokio::join!(to_pod, from_pod);
    let _ = out.send(spdy::data_frame(error, FLAG_FIN, &[])).await;
}

/// Go's wording of a failed dial (`dial tcp4 127.0.0.1:80: connect: connection refused`).
fn dial_error(family: &str, addr: SocketAddr, e: &std::io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(n) => {
            let d = nix::errno::Errno::from_raw(n).desc();
            let mut c = d.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => String::new(),
            }
        }
        None if e.kind() == std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        None => e.to_string(),
    };
    format!("dial {family} {addr}: connect: {what}")
}

/// Connects to `localhost:port` inside the pod's namespace, IPv4 first (as containerd).
fn connect(target: &PodNet, port: u16) -> Result<std::net::TcpStream, String> {
    use podvisor_runtime::process::netns::connect_in;
    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let e4 = match connect_in(&target.netns, v4, CONNECT_TIMEOUT) {
        Ok(s) => return Ok(s),
        Err(e) => dial_error("tcp4", v4, &e),
    };
    let e6 = match connect_in(&target.netns, v6, CONNECT_TIMEOUT) {
        Ok(s) => return Ok(s),
        Err(e) => dial_error("tcp6", v6, &e),
    };
    Err(format!(
        "failed to execute portforward in network namespace {:?}: failed to connect to localhost:{port} inside namespace {:?}, IPv4: {e4} IPv6 {e6} ",
        target.netns.display().to_string(),
        target.sandbox
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_errors_read_as_go_writes_them() {
        let e = std::io::Error::from_raw_os_error(libc_econnrefused());
        assert_eq!(
            dial_error("tcp4", "127.0.0.1:80".parse().unwrap(), &e),
            "dial tcp4 127.0.0.1:80: connect: connection refused"
        );
    }

    fn libc_econnrefused() -> i32 {
        nix::errno::Errno::ECONNREFUSED as i32
    }

    /// A whole session over an in-memory stream: two connections to a listener, one to a
    /// closed port, against the test's own namespace.
    #[tokio::test]
    async fn a_session_forwards_connections_and_reports_refusals() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in listener.incoming().take(2) {
                let mut s = s.unwrap();
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = Vec::new();
                    s.read_to_end(&mut buf).unwrap();
                    s.write_all(&buf.iter().rev().copied().collect::<Vec<_>>())
                        .unwrap();
                });
            }
        });
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (client, server) = tokio::io::duplex(1 << 20);
        let target = PodNet {
            sandbox: "sb1".into(),
            netns: podvisor_runtime::process::netns::netns_of(std::process::id()),
        };
        tokio::spawn(serve(server, target));
        let (mut cr, mut cw) = tokio::io::split(client);
        let mut codec = HeaderCodec::default();
        let syn = |codec: &mut HeaderCodec, id: u32, ty: &str, port: u16, req: &str| {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            p.extend(codec.encode(&[
                ("streamtype", ty),
                ("port", &port.to_string()),
                ("requestid", req),
            ]));
            let mut f = vec![0x80, 3, 0, 1, 0];
            f.extend_from_slice(&(p.len() as u32).to_be_bytes()[1..]);
            f.extend(p);
            f
        };
        for (req, e, d, p) in [("0", 1, 3, port), ("1", 5, 7, port), ("2", 9, 11, closed)] {
            cw.write_all(&syn(&mut codec, e, "error", p, req))
                .await
                .unwrap();
            cw.write_all(&spdy::data_frame(e, FLAG_FIN, &[]))
                .await
                .unwrap();
            cw.write_all(&syn(&mut codec, d, "data", p, req))
                .await
                .unwrap();
        }
        cw.write_all(&spdy::data_frame(3, 0, b"abc")).await.unwrap();
        cw.write_all(&spdy::data_frame(3, FLAG_FIN, &[]))
            .await
            .unwrap();
        cw.write_all(&spdy::data_frame(7, FLAG_FIN, b"xyz"))
            .await
            .unwrap();
        cw.write_all(&spdy::ping_frame(&[0, 0, 0, 9]))
            .await
            .unwrap();
        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut fins = std::collections::HashSet::new();
        let mut replies = 0;
        let mut pinged = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !(fins.len() == 6 && replies == 6 && pinged) {
            let f = tokio::time::timeout_at(deadline, spdy::read_frame(&mut cr))
                .await
                .expect("frames in time")
                .unwrap()
                .unwrap();
            match f {
                Frame::Control {
                    kind: kind::SYN_REPLY,
                    ..
                } => replies += 1,
                Frame::Control {
                    kind: kind::PING, ..
                } => pinged = true,
                Frame::Data {
                    stream,
                    flags,
                    data,
                } => {
                    got.entry(stream).or_default().extend(data);
                    if flags & FLAG_FIN != 0 {
                        fins.insert(stream);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got[&3], b"cba");
        assert_eq!(got[&7], b"zyx");
        assert!(got.get(&1).is_none_or(|e| e.is_empty()));
        let refused = String::from_utf8(got[&9].clone()).unwrap();
        assert!(
            refused.starts_with(&format!(
                "error forwarding port {closed} to pod sb1, uid : failed to execute portforward in network namespace"
            )) && refused.contains(&format!(
                "IPv4: dial tcp4 127.0.0.1:{closed}: connect: connection refused"
            )),
            "{refused}"
        );
    }
}
