//! The streaming endpoints of the node agent (the kubelet's `/exec` and `/attach`), which the
//! API server's `pods/exec` and `pods/attach` proxy to, so `kubectl exec`, `kubectl cp` and
//! `kubectl attach` work.
//!
//! ```text
//! GET /exec/<ns>/<pod>/<container>?command=<argv0>&command=<argv1>…&stdin=true&stdout=true&stderr=true&tty=true
//! GET /attach/<ns>/<pod>/<container>?stdout=true&stderr=true
//! Authorization: Bearer <node token>
//! Upgrade: websocket   Sec-WebSocket-Protocol: v5.channel.k8s.io (or v4.channel.k8s.io)
//! ```
//!
//! After the upgrade every message is a binary frame whose first byte is the channel
//! (apimachinery `remotecommand`): 0 stdin (client to server), 1 stdout, 2 stderr, 3 error
//! (one `metav1.Status` JSON at the end: `Success`, or `Failure` with reason
//! `NonZeroExitCode` and an `ExitCode` cause), 4 resize (client to server), and, in v5 only,
//! 255 close (`[255, 0]` half-closes stdin). Pings are answered. When the client goes away
//! the command is killed (the runtime's session ends).
//!
//! Exec runs through [`ContainerRuntime::exec_stream`]: with pipes, or with `tty=true` on a
//! pseudo terminal whose output (both streams) goes to the stdout channel (kubectl asks for
//! no stderr then) and whose size follows the resize messages.
//!
//! Attach streams what the container writes from now on, read from its log file as
//! `kubectl logs -f` does, until the container stops. With `stdin=true` the client's stdin
//! frames go to the container's stdin ([`ContainerRuntime::attach`]; a container without
//! `stdin: true` has none, and the frames are dropped as the kubelet drops them), resize
//! frames to its terminal (`tty: true`). Detaching (the client closes stdin or goes away)
//! drops the runtime's attach session, which closes a `stdinOnce` container's stdin.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use podvisor_runtime::{
    ContainerId, ContainerRuntime, ContainerState, ExecSession, ExecStreamRequest, RuntimeError,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::common::{authorized, find_running, plain};
use super::logs::parse_cri;

/// The WebSocket subprotocol of kubectl 1.30 and later.
pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
/// The previous subprotocol (no close channel).
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";

/// Channel numbers.
pub mod channel {
    /// Client to server: the command's stdin.
    pub const STDIN: u8 = 0;
    /// The command's stdout.
    pub const STDOUT: u8 = 1;
    /// The command's stderr.
    pub const STDERR: u8 = 2;
    /// The final status (a `metav1.Status` JSON).
    pub const ERROR: u8 = 3;
    /// Client to server: terminal size.
    pub const RESIZE: u8 = 4;
    /// Client to server (v5): `[255, <channel>]` closes that channel.
    pub const CLOSE: u8 = 255;
}

/// How long output is still relayed after the command exited (a background process may keep
/// the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct ExecState {
    runtime: Arc<dyn ContainerRuntime>,
    token: Arc<str>,
}

/// The query options of an exec or attach request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// The command line (exec only), one `command` parameter per element.
    pub command: Vec<String>,
    /// The client sends stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr.
    pub stderr: bool,
    /// The client asked for a terminal.
    pub tty: bool,
}

fn parse_bool(v: &str, name: &str) -> Result<bool, String> {
    match v {
        "" | "false" | "0" | "False" | "FALSE" => Ok(false),
        "true" | "1" | "True" | "TRUE" => Ok(true),
        other => Err(format!("invalid value {other:?} for {name}")),
    }
}

impl StreamOptions {
    /// Parses a query string (`command` may repeat).
    pub fn parse(query: &str) -> Result<StreamOptions, String> {
        let mut o = StreamOptions::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| format!("invalid encoding in {s:?}"))
            };
            let (k, v) = (decode(k)?, decode(v)?);
            match k.as_str() {
                "command" => o.command.push(v),
                "stdin" | "input" => o.stdin = parse_bool(&v, &k)?,
                "stdout" | "output" => o.stdout = parse_bool(&v, &k)?,
                "stderr" | "error" => o.stderr = parse_bool(&v, &k)?,
                "tty" => o.tty = parse_bool(&v, &k)?,
                _ => {}
            }
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(o)
    }
}

/// The final status of a command that ended with `code`, as the kubelet writes it.
pub fn exit_status(command: &[String], code: i32) -> String {
    if code == 0 {
        return r#"{"metadata":{},"status":"Success"}"#.to_string();
    }
    let message = format!(
        "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
        command.join(" ")
    );
    format!(
        r#"{{"metadata":{{}},"status":"Failure","message":{},"reason":"NonZeroExitCode","details":{{"causes":[{{"reason":"ExitCode","message":"{code}"}}]}}}}"#,
        serde_json::Value::from(message)
    )
}

/// The final status of a command that could not run.
pub fn error_status(message: &str) -> String {
    let message =
        format!("Internal error occurred: error executing command in container: {message}");
    format!(
        r#"{{"metadata":{{}},"status":"Failure","message":{},"reason":"InternalError","details":{{"causes":[{{"message":{}}}]}},"code":500}}"#,
        serde_json::Value::from(message.clone()),
        serde_json::Value::from(message)
    )
}

/// The routes of the streaming endpoints.
pub(crate) fn router(runtime: Arc<dyn ContainerRuntime>, token: Arc<str>) -> Router {
    Router::new()
        .route("/{verb}/{ns}/{pod}/{container}", get(stream).post(stream))
        .with_state(ExecState { runtime, token })
}

/// Checks the request and picks the subprotocol; the error is the response to send.
fn prepare(
    st: &ExecState,
    headers: &HeaderMap,
    query: Option<String>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Upgrade, Box<Response>> {
    if !authorized(&st.token, headers) {
        return Err(Box::new(plain(
            StatusCode::UNAUTHORIZED,
            "Unauthorized".into(),
        )));
    }
    let opts = StreamOptions::parse(query.as_deref().unwrap_or(""))
        .map_err(|e| Box::new(plain(StatusCode::BAD_REQUEST, e)))?;
    let ws = ws.map_err(|_| {
        Box::new(plain(
            StatusCode::BAD_REQUEST,
            format!("a WebSocket upgrade (GET, subprotocol {PROTOCOL_V5}) is required"),
        ))
    })?;
    let ws = ws.protocols([PROTOCOL_V5, PROTOCOL_V4]);
    let v5 = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(PROTOCOL_V5) => true,
        Some(_) => false,
        None => {
            return Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                format!(
                    "unsupported WebSocket subprotocol: {PROTOCOL_V5} or {PROTOCOL_V4} is required"
                ),
            )));
        }
    };
    Ok(Upgrade { ws, v5, opts })
}

/// A checked upgrade request: the upgrade, whether the peer speaks v5, the options.
struct Upgrade {
    ws: WebSocketUpgrade,
    v5: bool,
    opts: StreamOptions,
}

/// `/exec/...` and `/attach/...`: the upgrade checked, then the verb's own checks.
async fn stream(
    State(st): State<ExecState>,
    Path((verb, ns, pod, container)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if verb != "exec" && verb != "attach" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let upgrade = match prepare(&st, &headers, query, ws) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let target = Target { ns, pod, container };
    if verb == "exec" {
        exec(st, target, upgrade).await
    } else {
        attach(st, target, upgrade).await
    }
}

/// The container a stream is for.
struct Target {
    ns: String,
    pod: String,
    container: String,
}

async fn exec(st: ExecState, t: Target, Upgrade { ws, v5, opts }: Upgrade) -> Response {
    let Target { ns, pod, container } = t;
    if opts.command.is_empty() {
        return plain(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container".into(),
        );
    }
    let target = match find_running(st.runtime.as_ref(), &ns, &pod, &container).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let runtime = st.runtime.clone();
    ws.on_upgrade(move |mut socket| async move {
        // With a terminal, kubectl sends its size first: start the command with it.
        let (early, size) = if opts.tty {
            initial_size(&mut socket).await
        } else {
            (Vec::new(), None)
        };
        let session = runtime
            .exec_stream(
                &target.id,
                ExecStreamRequest {
                    command: opts.command.clone(),
                    stdin: opts.stdin,
                    tty: opts.tty,
                    size,
                },
            )
            .await;
        run_exec(socket, v5, opts, session, early).await;
    })
}

/// Sends one frame on `channel`.
async fn send(
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    channel: u8,
    data: &[u8],
) -> bool {
    let mut frame = Vec::with_capacity(data.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(data);
    tx.send(Message::Binary(Bytes::from(frame))).await.is_ok()
}

/// Sends the final status and closes the connection normally.
async fn finish(tx: &mut futures::stream::SplitSink<WebSocket, Message>, status: &str) {
    if send(tx, channel::ERROR, status.as_bytes()).await {
        let _ = tx
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
    }
}

/// A resize message (`{"Width":100,"Height":30}`).
#[derive(serde::Deserialize)]
struct TermSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// A text frame carries the same bytes as a binary one (channel byte first): upstream reads
/// both, and some clients (the official Python client) send stdin as text.
fn text_as_binary(m: Message) -> Message {
    match m {
        Message::Text(t) => Message::Binary(Bytes::copy_from_slice(t.as_str().as_bytes())),
        other => other,
    }
}

/// Waits (at most 1 s) for the client's first resize message; returns the frames read
/// before it (stdin data, kept for the command) and the size (columns, rows).
async fn initial_size(socket: &mut WebSocket) -> (Vec<Bytes>, Option<(u16, u16)>) {
    let mut early = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            m = socket.recv() => match m.map(|r| r.map(text_as_binary)) {
                Some(Ok(Message::Binary(b))) => {
                    if b.first() == Some(&channel::RESIZE)
                        && let Ok(size) = serde_json::from_slice::<TermSize>(&b[1..])
                    {
                        return (early, Some((size.width, size.height)));
                    }
                    early.push(b);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return (early, None),
                Some(Ok(_)) => {}
            },
            _ = &mut deadline => return (early, None),
        }
    }
}

/// Reads the client's frames: stdin data, stdin close, resize, until the client closes the
/// connection. `early` frames (read before the command started) come first.
async fn client_frames(
    mut rx: futures::stream::SplitStream<WebSocket>,
    mut stdin: Option<podvisor_runtime::ExecWriter>,
    resize: Option<podvisor_runtime::ExecResize>,
    v5: bool,
    early: Vec<Bytes>,
) {
    let mut early = early.into_iter();
    loop {
        let msg = match early.next() {
            Some(b) => Message::Binary(b),
            None => match rx.next().await {
                Some(Ok(m)) => text_as_binary(m),
                _ => break,
            },
        };
        let data = match msg {
            Message::Binary(b) => b,
            Message::Close(_) => break,
            // Pings are answered by the WebSocket layer.
            _ => continue,
        };
        let Some((&ch, rest)) = data.split_first() else {
            continue;
        };
        match ch {
            channel::STDIN => {
                if let Some(w) = stdin.as_mut()
                    && w.write_all(rest).await.is_err()
                {
                    stdin = None;
                }
            }
            channel::CLOSE if v5 && rest.first() == Some(&channel::STDIN) => {
                if let Some(mut w) = stdin.take() {
                    let _ = w.shutdown().await;
                }
            }
            channel::RESIZE => {
                if let (Some(resize), Ok(size)) =
                    (resize.as_ref(), serde_json::from_slice::<TermSize>(rest))
                    && let Err(e) = resize(size.width, size.height)
                {
                    tracing::debug!(error = %e, "terminal resize failed");
                }
            }
            _ => {}
        }
    }
}

async fn run_exec(
    socket: WebSocket,
    v5: bool,
    opts: StreamOptions,
    session: Result<ExecSession, RuntimeError>,
    early: Vec<Bytes>,
) {
    let (mut tx, rx) = socket.split();
    let mut session = match session {
        Ok(s) => s,
        Err(e) => {
            let msg = match &e {
                RuntimeError::InvalidState { state, .. } => {
                    format!("container is not running (it is {state})")
                }
                other => other.to_string(),
            };
            finish(&mut tx, &error_status(&msg)).await;
            return;
        }
    };
    let stdin = session.stdin.take();
    let resize = session.resize.take();
    let reader = client_frames(rx, stdin, resize, v5, early);
    let command = opts.command.clone();
    let writer = async move {
        let mut out_buf = vec![0u8; 32 * 1024];
        let mut err_buf = vec![0u8; 32 * 1024];
        let (mut out_open, mut err_open) = (true, true);
        let mut exit: Option<Result<i32, RuntimeError>> = None;
        let grace = tokio::time::sleep(Duration::from_secs(86_400 * 365));
        tokio::pin!(grace);
        let err_channel = if opts.stderr {
            Some(channel::STDERR)
        } else if opts.tty {
            Some(channel::STDOUT)
        } else {
            None
        };
        while out_open || err_open || exit.is_none() {
            tokio::select! {
                r = session.stdout.read(&mut out_buf), if out_open => match r {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => if opts.stdout && !send(&mut tx, channel::STDOUT, &out_buf[..n]).await {
                        return;
                    },
                },
                r = session.stderr.read(&mut err_buf), if err_open => match r {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => if let Some(ch) = err_channel && !send(&mut tx, ch, &err_buf[..n]).await {
                        return;
                    },
                },
                e = &mut session.exit, if exit.is_none() => {
                    exit = Some(e);
                    grace.as_mut().reset(tokio::time::Instant::now() + OUTPUT_GRACE);
                }
                _ = &mut grace, if exit.is_some() => break,
            }
        }
        let status = match exit {
            Some(Ok(code)) => exit_status(&command, code),
            Some(Err(e)) => error_status(&e.to_string()),
            None => error_status("the command did not report an exit code"),
        };
        finish(&mut tx, &status).await;
    };
    relay(reader, writer).await;
}

/// Runs the client's side (`reader`) and the container's side (`writer`) of a stream until
/// one ends. When the client goes away, dropping the writer ends the session (an exec'd
/// command is killed); when the writer is done, the client gets a moment to answer the
/// close frame.
async fn relay(reader: impl Future<Output = ()>, writer: impl Future<Output = ()>) {
    tokio::pin!(reader, writer);
    tokio::select! {
        _ = &mut reader => {}
        _ = &mut writer => {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
    }
}

async fn attach(st: ExecState, t: Target, Upgrade { ws, v5, opts }: Upgrade) -> Response {
    let Target { ns, pod, container } = t;
    let target = match find_running(st.runtime.as_ref(), &ns, &pod, &container).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let session = if opts.stdin {
        match st.runtime.attach(&target.id).await {
            Ok(s) => Some(s),
            Err(RuntimeError::InvalidState { .. }) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("container {container} is not running in pod {pod}"),
                );
            }
            Err(e) => {
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("attach to container {container} in pod {pod}: {e}"),
                );
            }
        }
    } else {
        None
    };
    let (stdin, resize) = session.map_or((None, None), |s| (s.stdin, s.resize));
    let start = tokio::fs::metadata(&target.log_path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let runtime = st.runtime.clone();
    ws.on_upgrade(move |socket| async move {
        let (tx, rx) = socket.split();
        let reader = client_frames(rx, stdin, resize, v5, Vec::new());
        let writer = follow_output(tx, runtime, target.id, target.log_path, start, opts);
        relay(reader, writer).await;
    })
}

/// Relays what the container writes to its log from `pos` on, until it stops.
async fn follow_output(
    mut tx: futures::stream::SplitSink<WebSocket, Message>,
    runtime: Arc<dyn ContainerRuntime>,
    id: ContainerId,
    path: PathBuf,
    mut pos: u64,
    opts: StreamOptions,
) {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let running = matches!(
            runtime.container_status(&id).await.map(|s| s.state),
            Ok(ContainerState::Running { .. })
        );
        let mut data = Vec::new();
        if let Ok(mut f) = tokio::fs::File::open(&path).await {
            let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
            if len < pos {
                pos = 0; // rotated
            }
            if f.seek(std::io::SeekFrom::Start(pos)).await.is_ok()
                && f.read_to_end(&mut data).await.is_ok()
            {
                pos += data.len() as u64;
            }
        }
        carry.extend_from_slice(&data);
        while let Some(at) = carry.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = carry.drain(..=at).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let Some(l) = parse_cri(&text) else { continue };
            let mut content = l.content.as_bytes().to_vec();
            if !l.partial {
                content.push(b'\n');
            }
            let ch = match (l.stream, opts.tty) {
                ("stdout", _) if opts.stdout => Some(channel::STDOUT),
                ("stderr", false) if opts.stderr => Some(channel::STDERR),
                ("stderr", true) if opts.stdout => Some(channel::STDOUT),
                _ => None,
            };
            if let Some(ch) = ch
                && !send(&mut tx, ch, &content).await
            {
                return;
            }
        }
        if !running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    finish(&mut tx, r#"{"metadata":{},"status":"Success"}"#).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_repeated_commands_and_flags() {
        let o = StreamOptions::parse(
            "command=sh&command=-c&command=echo%20hi%3B+exit%203&container=c&stdout=true&stderr=1",
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi; exit 3"]);
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        assert!(StreamOptions::parse("command=ls").is_err());
        assert!(StreamOptions::parse("command=ls&stdout=maybe").is_err());
    }

    #[test]
    fn statuses_are_the_kubelets() {
        assert_eq!(
            exit_status(&["true".into()], 0),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            exit_status(&["false".into()], 1),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [false], exit code 1","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"1"}]}}"#
        );
        let v: serde_json::Value =
            serde_json::from_str(&error_status("exec: \"x\": not found")).unwrap();
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["code"], 500);
    }
}
