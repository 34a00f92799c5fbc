//! The grpc probe: one `grpc.health.v1.Health/Check` call over HTTP/2 (prior knowledge, no
//! TLS, as the kubelet), with the request and response messages encoded by hand (one string
//! field out, one enum field back). `SERVING` = Success; everything else is a Failure with
//! the kubelet's message.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use podvisor_api::status::go_duration;

use super::action::{KUBE_VERSION, Outcome, dial_error, join_host_port};

/// The health service's serving status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServingStatus {
    /// 0.
    Unknown,
    /// 1.
    Serving,
    /// 2.
    NotServing,
    /// 3.
    ServiceUnknown,
    /// Any other value.
    Other(u64),
}

impl ServingStatus {
    /// From the wire value.
    pub fn from_value(v: u64) -> ServingStatus {
        match v {
            0 => ServingStatus::Unknown,
            1 => ServingStatus::Serving,
            2 => ServingStatus::NotServing,
            3 => ServingStatus::ServiceUnknown,
            n => ServingStatus::Other(n),
        }
    }

    /// The wire value.
    pub fn value(self) -> u64 {
        match self {
            ServingStatus::Unknown => 0,
            ServingStatus::Serving => 1,
            ServingStatus::NotServing => 2,
            ServingStatus::ServiceUnknown => 3,
            ServingStatus::Other(n) => n,
        }
    }

    /// The enum name as the protobuf defines it.
    pub fn name(self) -> String {
        match self {
            ServingStatus::Unknown => "UNKNOWN".into(),
            ServingStatus::Serving => "SERVING".into(),
            ServingStatus::NotServing => "NOT_SERVING".into(),
            ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN".into(),
            ServingStatus::Other(n) => n.to_string(),
        }
    }
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Encodes a `HealthCheckRequest{service}` as one length-prefixed gRPC message.
pub fn encode_request(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    frame(&msg)
}

/// Encodes a `HealthCheckResponse{status}` as one length-prefixed gRPC message (for test
/// servers).
pub fn encode_response(status: ServingStatus) -> Bytes {
    let mut msg = BytesMut::new();
    if status.value() != 0 {
        msg.put_u8(0x08);
        put_varint(&mut msg, status.value());
    }
    frame(&msg)
}

fn frame(msg: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + msg.len());
    out.put_u8(0);
    out.put_u32(msg.len() as u32);
    out.put_slice(msg);
    out.freeze()
}

/// Decodes the first length-prefixed message's field 1 as a varint (the status in a
/// response, absent = 0); for a request, use [`decode_request_service`].
pub fn decode_response(data: &[u8]) -> Result<ServingStatus, String> {
    let msg = unframe(data)?;
    let mut pos = 0;
    let mut status = 0u64;
    while pos < msg.len() {
        let key = get_varint(msg, &mut pos).ok_or("truncated message")?;
        match (key >> 3, key & 7) {
            (1, 0) => status = get_varint(msg, &mut pos).ok_or("truncated message")?,
            (_, 0) => {
                get_varint(msg, &mut pos).ok_or("truncated message")?;
            }
            (_, 1) => pos += 8,
            (_, 5) => pos += 4,
            (_, 2) => {
                let n = get_varint(msg, &mut pos).ok_or("truncated message")? as usize;
                pos = pos.checked_add(n).ok_or("bad length")?;
            }
            (_, w) => return Err(format!("unsupported wire type {w}")),
        }
    }
    if pos > msg.len() {
        return Err("truncated message".into());
    }
    Ok(ServingStatus::from_value(status))
}

/// Decodes a `HealthCheckRequest`'s service name (for test servers).
pub fn decode_request_service(data: &[u8]) -> Result<String, String> {
    let msg = unframe(data)?;
    let mut pos = 0;
    let mut service = String::new();
    while pos < msg.len() {
        let key = get_varint(msg, &mut pos).ok_or("truncated message")?;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let n = get_varint(msg, &mut pos).ok_or("truncated message")? as usize;
                let end = pos
                    .checked_add(n)
                    .filter(|e| *e <= msg.len())
                    .ok_or("bad length")?;
                service = String::from_utf8_lossy(&msg[pos..end]).into_owned();
                pos = end;
            }
            (_, 0) => {
                get_varint(msg, &mut pos).ok_or("truncated message")?;
            }
            (_, 2) => {
                let n = get_varint(msg, &mut pos).ok_or("truncated message")? as usize;
                pos = pos.checked_add(n).ok_or("bad length")?;
            }
            (_, w) => return Err(format!("unsupported wire type {w}")),
        }
    }
    Ok(service)
}

fn unframe(data: &[u8]) -> Result<&[u8], String> {
    if data.len() < 5 {
        return Err("response message missing".into());
    }
    if data[0] != 0 {
        return Err("compressed responses are not supported".into());
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    data.get(5..5 + len)
        .ok_or_else(|| "truncated message".to_string())
}

fn code_name(code: u32) -> String {
    let n = match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        n => return format!("Code({n})"),
    };
    n.to_string()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Calls `grpc.health.v1.Health/Check` for `service` on `host:port` within `timeout`.
pub async fn check(host: &str, port: u16, service: &str, timeout: Duration) -> (Outcome, String) {
    let deadline = Instant::now() + timeout;
    let addr = join_host_port(host, port);
    let failure = |msg: String| (Outcome::Failure { timed_out: false }, msg);
    let connect_timeout = || {
        (
            Outcome::Failure { timed_out: true },
            format!(
                "timeout: failed to connect service {addr:?} within {}: context deadline exceeded",
                go_duration(timeout)
            ),
        )
    };
    let tcp = match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect((host, port)))
        .await
    {
        Err(_) => return connect_timeout(),
        Ok(Err(e)) => {
            return failure(format!(
                "error: failed to connect service at {addr:?}: connection error: desc = \"transport: Error while dialing: {}\"",
                dial_error(&addr, Some(&e))
            ));
        }
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let handshake = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    );
    let (mut sender, conn) = match tokio::time::timeout_at(deadline, handshake).await {
        Err(_) => return connect_timeout(),
        Ok(Err(e)) => {
            return failure(format!(
                "error: failed to connect service at {addr:?}: connection error: desc = \"transport: {e}\""
            ));
        }
        Ok(Ok(x)) => x,
    };
    let conn = async move {
        let _ = conn.await;
    };
    tokio::pin!(conn);
    let rpc_timeout = || {
        (
            Outcome::Failure { timed_out: true },
            format!(
                "timeout: health rpc did not complete within {}",
                go_duration(timeout)
            ),
        )
    };
    let rpc_failed = |code: u32, message: &str| {
        if code == 12 {
            failure(format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"
            ))
        } else if code == 4 {
            rpc_timeout()
        } else {
            failure(format!(
                "error: health rpc probe failed: rpc error: code = {} desc = {message}",
                code_name(code)
            ))
        }
    };
    let uri = format!("http://{addr}/grpc.health.v1.Health/Check");
    let request = match http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(
            http::header::USER_AGENT,
            format!("kube-probe/{KUBE_VERSION}"),
        )
        .header("grpc-timeout", format!("{}m", timeout.as_millis().max(1)))
        .body(Full::new(encode_request(service)))
    {
        Ok(r) => r,
        Err(e) => return failure(format!("error: health rpc probe failed: {e}")),
    };
    let work = async {
        let resp = match tokio::time::timeout_at(deadline, sender.send_request(request)).await {
            Err(_) => return rpc_timeout(),
            Ok(Err(e)) => return rpc_failed(14, &e.to_string()),
            Ok(Ok(r)) => r,
        };
        if resp.status() != http::StatusCode::OK {
            return rpc_failed(
                if resp.status() == http::StatusCode::NOT_FOUND {
                    12
                } else {
                    2
                },
                &format!(
                    "unexpected HTTP status code received from server: {}",
                    resp.status().as_u16()
                ),
            );
        }
        let header_status = grpc_status(resp.headers());
        let mut body = resp.into_body();
        let mut data: Vec<u8> = Vec::new();
        let mut trailer_status = None;
        loop {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return rpc_timeout(),
                Ok(None) => break,
                Ok(Some(Err(e))) => return rpc_failed(14, &e.to_string()),
                Ok(Some(Ok(frame))) => {
                    if let Some(t) = frame.trailers_ref() {
                        trailer_status = grpc_status(t);
                    } else if let Ok(d) = frame.into_data()
                        && data.len() < 64 * 1024
                    {
                        data.extend_from_slice(&d);
                    }
                }
            }
        }
        let (code, message) = trailer_status.or(header_status).unwrap_or((
            2,
            "server closed the stream without sending trailers".into(),
        ));
        if code != 0 {
            return rpc_failed(code, &message);
        }
        match decode_response(&data) {
            Ok(ServingStatus::Serving) => (Outcome::Success, "service healthy".to_string()),
            Ok(s) => failure(format!("service unhealthy (responded with {:?})", s.name())),
            Err(e) => rpc_failed(
                13,
                &format!("grpc: failed to unmarshal the received message: {e}"),
            ),
        }
    };
    tokio::pin!(work);
    tokio::select! {
        biased;
        r = &mut work => r,
        _ = &mut conn => work.await,
    }
}

fn grpc_status(h: &http::HeaderMap) -> Option<(u32, String)> {
    let code = h
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u32>()
        .ok()?;
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let req = encode_request("svc");
        assert_eq!(&req[..], &[0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']);
        assert_eq!(decode_request_service(&req).unwrap(), "svc");
        assert_eq!(decode_request_service(&encode_request("")).unwrap(), "");
        for s in [
            ServingStatus::Unknown,
            ServingStatus::Serving,
            ServingStatus::NotServing,
            ServingStatus::ServiceUnknown,
        ] {
            assert_eq!(decode_response(&encode_response(s)).unwrap(), s);
        }
        assert!(decode_response(&[0, 0, 0]).is_err());
        assert!(decode_response(&[0, 0, 0, 0, 9, 8]).is_err());
        assert!(decode_response(&[1, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b%"), "a b%");
        assert_eq!(percent_decode("100%25"), "100%");
    }
}
