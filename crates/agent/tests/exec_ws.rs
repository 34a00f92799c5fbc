//! The agent's `/exec` and `/attach` endpoints spoken to by a WebSocket client, as kubectl
//! (through the API server's proxy) speaks to them: v5.channel.k8s.io binary frames, the
//! final channel-3 Status, stdin with its close frame, pings, and errors before the upgrade.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{SinkExt, StreamExt};
use podvisor_agent::WallClock;
use podvisor_agent::pod::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE};
use podvisor_agent::server::LogServer;
use podvisor_agent::server::tls::ServingCert;
use podvisor_runtime::fake::{Attempt, ExecScript, FakeRuntime, FakeScript, tokio_clock};
use podvisor_runtime::{ContainerConfig, ContainerRuntime, SandboxConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "node-token";

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    /// The serving certificate's pin, as the node publishes it.
    pin: String,
    /// The runtime and its container `main` (with an open stdin).
    rt: FakeRuntime,
    main: podvisor_runtime::ContainerId,
    _pki: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn server() -> Server {
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let rt = FakeRuntime::new(tokio_clock(base));
    rt.script(
        "main",
        FakeScript::always(Attempt::forever())
            .exec(["echo", "hi"], ExecScript::ok().output("hi\n"))
            .exec(["false"], ExecScript::exit(1))
            .exec(["cat"], ExecScript::ok().echoing_stdin())
            .exec(["hang"], ExecScript::hang()),
    );
    let labels = BTreeMap::from([
        (LABEL_POD_NAMESPACE.to_string(), "default".to_string()),
        (LABEL_POD_NAME.to_string(), "p".to_string()),
    ]);
    rt.create_sandbox(SandboxConfig {
        id: "sb".into(),
        hostname: "p".into(),
        labels,
        ..Default::default()
    })
    .await
    .expect("sandbox");
    let id = rt
        .create_container(
            "sb",
            ContainerConfig {
                name: "main".into(),
                command: vec!["scripted".into()],
                labels: BTreeMap::from([(LABEL_CONTAINER_NAME.to_string(), "main".to_string())]),
                stdio: podvisor_runtime::Stdio {
                    stdin: true,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("create");
    rt.start_container(&id).await.expect("start");
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(rt.clone());
    let pki = tempfile::tempdir().expect("tempdir");
    let cert = ServingCert::load_or_generate(pki.path(), &["127.0.0.1".into()], base)
        .expect("serving certificate");
    let srv = LogServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        runtime,
        TOKEN,
        WallClock::system(),
        cert.server_config().expect("tls"),
    )
    .await
    .expect("bind");
    let addr = srv.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(srv.serve(stop.clone()));
    Server {
        addr,
        stop,
        pin: cert.hash().expect("hash"),
        rt,
        main: id,
        _pki: pki,
    }
}

/// A WebSocket handshake over TLS, trusting only the certificate pinned with `pin` (as the
/// API server dials an agent).
async fn ws_connect(
    addr: SocketAddr,
    pin: &str,
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<
    (
        Ws,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls =
        tokio_rustls::TlsConnector::from(podvisor_apiserver::tls::pinned_client_config(Some(pin)))
            .connect(
                rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
                tcp,
            )
            .await?;
    tokio_tungstenite::client_async(req, tls).await
}

/// The agent's certificate is refused unless it is the one pinned.
#[tokio::test]
async fn a_certificate_other_than_the_pinned_one_is_refused() {
    let s = server().await;
    let other = format!("sha256:{}", "0".repeat(64));
    let req = format!("wss://{}/exec/default/p/main?command=true", s.addr)
        .into_client_request()
        .expect("request");
    let e = ws_connect(s.addr, &other, req).await.expect_err("refused");
    assert!(
        e.to_string().contains("not the one the node published"),
        "{e}"
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn connect(
    s: &Server,
    path: &str,
    protocol: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("wss://{}{path}", s.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (ws, resp) = ws_connect(s.addr, &s.pin, req).await?;
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some(protocol)
    );
    Ok(ws)
}

/// Reads frames until the server closes: (stdout, stderr, final status).
async fn collect(ws: &mut Ws) -> (String, String, Option<String>) {
    let (mut out, mut err, mut status) = (String::new(), String::new(), None);
    let read = async {
        while let Some(m) = ws.next().await {
            match m.expect("frame") {
                Message::Binary(b) => {
                    let (ch, data) = b.split_first().expect("a channel byte");
                    let data = String::from_utf8_lossy(data).into_owned();
                    match ch {
                        1 => out.push_str(&data),
                        2 => err.push_str(&data),
                        3 => status = Some(data),
                        other => panic!("unexpected channel {other}"),
                    }
                }
                Message::Text(t) => panic!("a text frame: {t}"),
                Message::Close(c) => {
                    assert_eq!(c.map(|c| u16::from(c.code)), Some(1000));
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server ends the stream");
    (out, err, status)
}

#[tokio::test]
async fn exec_streams_output_and_ends_with_the_exit_status() {
    let s = server().await;
    let mut ws = connect(
        &s,
        "/exec/default/p/main?command=echo&command=hi&stdout=true&stderr=true",
        "v5.channel.k8s.io",
    )
    .await
    .expect("upgrade");
    let (out, err, status) = collect(&mut ws).await;
    assert_eq!((out.as_str(), err.as_str()), ("hi\n", ""));
    assert_eq!(
        status.as_deref(),
        Some(r#"{"metadata":{},"status":"Success"}"#)
    );

    let mut ws = connect(
        &s,
        "/exec/default/p/main?command=false&stdout=true",
        "v5.channel.k8s.io",
    )
    .await
    .expect("upgrade");
    let (_, _, status) = collect(&mut ws).await;
    assert_eq!(
        status.as_deref(),
        Some(
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [false], exit code 1","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"1"}]}}"#
        )
    );
}

#[tokio::test]
async fn stdin_is_relayed_closed_and_pings_answered() {
    let s = server().await;
    let mut ws = connect(
        &s,
        "/exec/default/p/main?command=cat&stdin=true&stdout=true",
        "v5.channel.k8s.io",
    )
    .await
    .expect("upgrade");
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    let pong = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Ok(Message::Pong(p))) = ws.next().await {
                return p;
            }
        }
    })
    .await
    .expect("a pong");
    assert_eq!(&pong[..], b"are you there");
    let mut frame = vec![0u8];
    frame.extend_from_slice(b"hello stdin\n");
    ws.send(Message::Binary(frame.into())).await.expect("stdin");
    ws.send(Message::Binary(vec![255u8, 0].into()))
        .await
        .expect("close stdin");
    let (out, _, status) = collect(&mut ws).await;
    assert_eq!(out, "hello stdin\n");
    assert_eq!(
        status.as_deref(),
        Some(r#"{"metadata":{},"status":"Success"}"#)
    );

    // v4 is accepted too (no close channel: the session ends with the connection).
    let ws = connect(
        &s,
        "/exec/default/p/main?command=echo&command=hi&stdout=true",
        "v4.channel.k8s.io",
    )
    .await;
    assert!(ws.is_ok());
}

#[tokio::test]
async fn the_container_stays_usable_after_a_client_goes_away() {
    let s = server().await;
    let ws = connect(
        &s,
        "/exec/default/p/main?command=hang&stdout=true",
        "v5.channel.k8s.io",
    )
    .await
    .expect("upgrade");
    drop(ws);
    // The session is dropped with the connection (the process backend kills the command:
    // runtime tests/exec_stream.rs and the e2e); the container keeps accepting execs.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ws = connect(
        &s,
        "/exec/default/p/main?command=echo&command=hi&stdout=true",
        "v5.channel.k8s.io",
    )
    .await
    .expect("upgrade");
    let (out, _, _) = collect(&mut ws).await;
    assert_eq!(out, "hi\n");
}

#[tokio::test]
async fn refusals_come_before_the_upgrade() {
    let s = server().await;
    let status_of = |e: tokio_tungstenite::tungstenite::Error| match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("not an HTTP refusal: {other}"),
    };
    let e = connect(
        &s,
        "/exec/default/p/nope?command=true&stdout=true",
        "v5.channel.k8s.io",
    )
    .await
    .expect_err("refused");
    assert_eq!(status_of(e), 404);
    let e = connect(&s, "/exec/default/p/main?stdout=true", "v5.channel.k8s.io")
        .await
        .expect_err("refused");
    assert_eq!(status_of(e), 400);
    let e = connect(
        &s,
        "/exec/default/p/main?command=true&stdout=true",
        "v9.channel.k8s.io",
    )
    .await
    .expect_err("refused");
    assert_eq!(status_of(e), 400);
    let e = connect(
        &s,
        "/attach/default/p/nope?stdout=true&stdin=true",
        "v5.channel.k8s.io",
    )
    .await
    .expect_err("refused");
    assert_eq!(status_of(e), 404);
    // Without the node's token.
    let req = format!(
        "wss://{}/exec/default/p/main?command=true&stdout=true",
        s.addr
    )
    .into_client_request()
    .expect("request");
    let e = ws_connect(s.addr, &s.pin, req).await.expect_err("refused");
    assert_eq!(status_of(e), 401);
}

/// Exec stdin sent in WebSocket *text* frames, as the official Python client sends it, is
/// accepted like binary frames, as upstream does.
#[tokio::test]
async fn stdin_in_text_frames_reaches_the_command() {
    let s = server().await;
    for protocol in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
        let mut ws = connect(
            &s,
            "/exec/default/p/main?command=cat&stdin=true&stdout=true",
            protocol,
        )
        .await
        .expect("upgrade");
        // The channel byte (0, stdin) is the text's first character.
        ws.send(Message::Text("\u{0}hello from text\n".into()))
            .await
            .expect("stdin");
        ws.send(Message::Binary(
            vec![0u8]
                .into_iter()
                .chain(*b"and binary\n")
                .collect::<Vec<u8>>()
                .into(),
        ))
        .await
        .expect("stdin");
        if protocol == "v5.channel.k8s.io" {
            ws.send(Message::Binary(vec![255u8, 0].into()))
                .await
                .expect("close stdin");
            let (out, _, _) = collect(&mut ws).await;
            assert_eq!(out, "hello from text\nand binary\n", "{protocol}");
        } else {
            let out = tokio::time::timeout(Duration::from_secs(10), async {
                let mut out = String::new();
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Binary(b) = m
                        && b.first() == Some(&1)
                    {
                        out.push_str(&String::from_utf8_lossy(&b[1..]));
                        if out.ends_with("and binary\n") {
                            break;
                        }
                    }
                }
                out
            })
            .await
            .expect("output");
            assert_eq!(out, "hello from text\nand binary\n", "{protocol}");
        }
    }
}

#[tokio::test]
async fn attach_with_stdin_writes_to_the_containers_stdin() {
    let s = server().await;
    let mut ws = connect(
        &s,
        "/attach/default/p/main?stdin=true&stdout=true",
        "v5.channel.k8s.io",
    )
    .await
    .expect("upgrade");
    ws.send(Message::Binary(b"\x00hello ".to_vec().into()))
        .await
        .expect("send");
    ws.send(Message::Binary(b"\x00world".to_vec().into()))
        .await
        .expect("send");
    // v5: close stdin, then the client goes.
    ws.send(Message::Binary(vec![255, 0].into()))
        .await
        .expect("close stdin");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = s.rt.stdin_of(&s.main).expect("container");
        if got.data == b"hello world" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stdin got {:?}",
            String::from_utf8_lossy(&got.data)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(ws);
}
