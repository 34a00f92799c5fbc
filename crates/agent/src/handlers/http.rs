//! A small HTTP/1.1 GET client for httpGet probes and hooks, with the kubelet's rules.
//!
//! * One connection per request (`Connection: close`, as the kubelet's probe transport
//!   disables keep-alives); `https` without certificate verification.
//! * Headers: the user's, in order; `User-Agent: kube-probe/1.32` (or `kube-lifecycle/1.32`)
//!   unless given; `Accept: */*` unless given (an empty given value removes it); a `Host`
//!   header overrides the request's host.
//! * Redirects (301, 302, 303, 307, 308 with a Location) are followed while the target's
//!   host name equals the first request's; the first redirect to another host is not
//!   followed and its 3xx response is returned (the caller turns it into a Warning); the 10th
//!   redirect fails with `stopped after 10 redirects`. A Host override survives only
//!   relative redirects.
//! * The whole exchange, redirects included, must finish within the timeout; a timeout
//!   before the response headers is a Failure, a failure while reading the body an Error
//!   (exactly as the kubelet, which discards such runs).
//! * At most 10 KiB of each body is read; the connection is then dropped.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use k8s_openapi::api::core::v1::Container;

use super::action::{
    Action, HandlerResult, MAX_BODY_BYTES, Outcome, Purpose, cap_output, dial_error,
    join_host_port, resolve_port,
};

/// One GET as a probe or hook describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGet {
    /// `http` or `https`.
    pub scheme: String,
    /// The host to connect to.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The path, possibly with a query.
    pub path: String,
    /// Extra headers, in order.
    pub headers: Vec<(String, String)>,
    /// The User-Agent to send unless a header gives one.
    pub user_agent: String,
}

impl HttpGet {
    /// The request of an httpGet handler of `container`: its port (a named one is one of
    /// the container's ports), to `host` or to the pod IP when none is given, with the
    /// User-Agent of `purpose`. The error says why the port is not usable.
    pub fn for_action(
        action: &Action,
        container: &Container,
        pod_ip: &str,
        purpose: Purpose,
    ) -> Result<HttpGet, String> {
        let Action::HttpGet {
            scheme,
            host,
            port,
            path,
            headers,
        } = action
        else {
            return Err("not an httpGet handler".into());
        };
        Ok(HttpGet {
            scheme: scheme.clone(),
            host: host.as_deref().unwrap_or(pod_ip).to_string(),
            port: resolve_port(port, container)?,
            path: path.clone(),
            headers: headers.clone(),
            user_agent: purpose.user_agent(),
        })
    }
}

/// How the exchange ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpOutcome {
    /// A final response (possibly an unfollowed 3xx) with up to 10 KiB of its body.
    Response {
        /// The status code.
        status: u16,
        /// The body, capped.
        body: Vec<u8>,
    },
    /// No usable response: connection, TLS, protocol, timeout or redirect-limit failure,
    /// with Go's `Get "<url>": <reason>` message.
    Failed {
        /// The message.
        message: String,
        /// Whether the timeout expired.
        timed_out: bool,
    },
    /// The response headers arrived but reading the body failed.
    BodyError {
        /// The message.
        message: String,
    },
}

/// A parsed absolute http(s) URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`.
    pub scheme: String,
    /// The host name or IP (IPv6 without brackets).
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// The port to connect to.
    pub fn effective_port(&self) -> u16 {
        self.port
            .unwrap_or(if self.scheme == "https" { 443 } else { 80 })
    }

    /// `host[:port]` as written in the URL.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => join_host_port(&self.host, p),
            None if self.host.contains(':') => format!("[{}]", self.host),
            None => self.host.clone(),
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)
    }
}

fn normalize_path(path: &str) -> String {
    let path = match path.find('#') {
        Some(i) => &path[..i],
        None => path,
    };
    if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

fn parse_authority(auth: &str) -> Result<(String, Option<u16>), String> {
    let auth = match auth.rfind('@') {
        Some(i) => &auth[i + 1..],
        None => auth,
    };
    if let Some(rest) = auth.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| format!("invalid host {auth:?}"))?;
        let host = rest[..close].to_string();
        let after = &rest[close + 1..];
        if after.is_empty() {
            return Ok((host, None));
        }
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("invalid port {after:?} after host"))?;
        return Ok((host, Some(port)));
    }
    match auth.rfind(':') {
        Some(i) => {
            let p = &auth[i + 1..];
            if p.is_empty() {
                return Ok((auth[..i].to_string(), None));
            }
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("invalid port {:?} after host", &auth[i..]))?;
            Ok((auth[..i].to_string(), Some(port)))
        }
        None => Ok((auth.to_string(), None)),
    }
}

fn remove_dot_segments(path: &str) -> String {
    let (p, query) = match path.find('?') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = p.split('/').collect();
    for (i, seg) in segs.iter().enumerate() {
        match *seg {
            "." => {
                if i == segs.len() - 1 {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == segs.len() - 1 {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut joined = out.join("/");
    if !joined.starts_with('/') {
        joined.insert(0, '/');
    }
    format!("{joined}{query}")
}

/// Resolves a Location header against the current URL (RFC 3986, http/https only).
pub fn resolve_location(base: &Url, location: &str) -> Result<Url, String> {
    let loc = match location.find('#') {
        Some(i) => &location[..i],
        None => location,
    };
    if let Some(rest) = loc.strip_prefix("//") {
        let (auth, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = parse_authority(auth)?;
        return Ok(Url {
            scheme: base.scheme.clone(),
            host,
            port,
            path: normalize_path(path),
        });
    }
    if let Some(colon) = loc.find(':') {
        let scheme = &loc[..colon];
        let is_scheme = !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if is_scheme && !loc[..colon].contains('/') {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(format!("unsupported protocol scheme {scheme:?}"));
            }
            let rest = loc[colon + 1..]
                .strip_prefix("//")
                .unwrap_or(&loc[colon + 1..]);
            let (auth, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (host, port) = parse_authority(auth)?;
            return Ok(Url {
                scheme,
                host,
                port,
                path: normalize_path(path),
            });
        }
    }
    let path = if loc.starts_with('/') {
        remove_dot_segments(loc)
    } else if loc.is_empty() {
        base.path.clone()
    } else if let Some(q) = loc.strip_prefix('?') {
        let p = base.path.split('?').next().unwrap_or("/");
        format!("{p}?{q}")
    } else {
        let p = base.path.split('?').next().unwrap_or("/");
        let dir = match p.rfind('/') {
            Some(i) => &p[..=i],
            None => "/",
        };
        remove_dot_segments(&format!("{dir}{loc}"))
    };
    Ok(Url {
        scheme: base.scheme.clone(),
        host: base.host.clone(),
        port: base.port,
        path,
    })
}

fn is_followed_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

enum ExchangeError {
    /// Before the response headers: `Get "<url>": <reason>`.
    Transport { message: String, timed_out: bool },
    /// While reading the body.
    Body(String),
}

struct Response {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

/// GETs `req` within `timeout`, following redirects as the kubelet does.
pub async fn get(req: &HttpGet, timeout: Duration) -> HttpOutcome {
    let deadline = Instant::now() + timeout;
    let first = Url {
        scheme: req.scheme.clone(),
        host: req.host.clone(),
        port: Some(req.port),
        path: normalize_path(&req.path),
    };
    let host_override = req
        .headers
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty());
    let mut url = first.clone();
    let mut host_header = host_override.clone().unwrap_or_else(|| url.authority());
    let mut redirects = 0usize;
    loop {
        let text = url.to_string();
        match exchange(&url, &host_header, req, deadline).await {
            Err(ExchangeError::Transport { message, timed_out }) => {
                return HttpOutcome::Failed {
                    message: format!("Get {text:?}: {message}"),
                    timed_out,
                };
            }
            Err(ExchangeError::Body(message)) => {
                return HttpOutcome::BodyError { message };
            }
            Ok(resp) => {
                let location = resp.location.filter(|l| !l.is_empty());
                let (true, Some(location)) = (is_followed_redirect(resp.status), location) else {
                    return HttpOutcome::Response {
                        status: resp.status,
                        body: resp.body,
                    };
                };
                let next = match resolve_location(&url, &location) {
                    Ok(n) => n,
                    Err(e) => {
                        return HttpOutcome::Failed {
                            message: format!(
                                "Get {text:?}: failed to parse Location header {location:?}: {e}"
                            ),
                            timed_out: false,
                        };
                    }
                };
                if !next.host.eq_ignore_ascii_case(&first.host) {
                    return HttpOutcome::Response {
                        status: resp.status,
                        body: resp.body,
                    };
                }
                redirects += 1;
                if redirects >= 10 {
                    return HttpOutcome::Failed {
                        message: format!("Get {:?}: stopped after 10 redirects", next.to_string()),
                        timed_out: false,
                    };
                }
                let relative = !location.contains("://") && !location.starts_with("//");
                host_header = match (&host_override, relative) {
                    (Some(h), true) => h.clone(),
                    _ => next.authority(),
                };
                url = next;
            }
        }
    }
}

async fn exchange(
    url: &Url,
    host_header: &str,
    req: &HttpGet,
    deadline: Instant,
) -> Result<Response, ExchangeError> {
    let port = url.effective_port();
    let addr = join_host_port(&url.host, port);
    let timeout_err = || ExchangeError::Transport {
        message: "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            .to_string(),
        timed_out: true,
    };
    let tcp = match tokio::time::timeout_at(
        deadline,
        tokio::net::TcpStream::connect((url.host.as_str(), port)),
    )
    .await
    {
        Err(_) => return Err(timeout_err()),
        Ok(Err(e)) => {
            return Err(ExchangeError::Transport {
                message: dial_error(&addr, Some(&e)),
                timed_out: false,
            });
        }
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let request = build_request(url, host_header, req)?;
    if url.scheme == "https" {
        let config = tls_config().map_err(|e| ExchangeError::Transport {
            message: e,
            timed_out: false,
        })?;
        let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| {
            ExchangeError::Transport {
                message: format!("tls: invalid server name: {e}"),
                timed_out: false,
            }
        })?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
            Err(_) => return Err(timeout_err()),
            Ok(Err(e)) => {
                return Err(ExchangeError::Transport {
                    message: tls_error_text(&e),
                    timed_out: false,
                });
            }
            Ok(Ok(s)) => s,
        };
        send(tls, request, deadline).await
    } else {
        send(tcp, request, deadline).await
    }
}

/// Whether a TLS failure means the server spoke plain HTTP (the hook fallback case).
pub fn is_plain_http_reply(message: &str) -> bool {
    message.contains("server gave HTTP response to HTTPS client")
}

fn tls_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        // What Go reports when a plain HTTP server answers a TLS client hello.
        "http: server gave HTTP response to HTTPS client".to_string()
    } else {
        format!("tls: {text}")
    }
}

fn build_request(
    url: &Url,
    host_header: &str,
    req: &HttpGet,
) -> Result<http::Request<Empty<Bytes>>, ExchangeError> {
    let invalid = |what: &str, v: &str| ExchangeError::Transport {
        message: format!("net/http: invalid header field {what} {v:?}"),
        timed_out: false,
    };
    let mut b = http::Request::builder()
        .method(http::Method::GET)
        .uri(url.path.as_str());
    let headers = b.headers_mut().ok_or_else(|| ExchangeError::Transport {
        message: format!("parse {:?}: invalid URI", url.path),
        timed_out: false,
    })?;
    let host = http::HeaderValue::from_str(host_header)
        .map_err(|_| invalid("value for \"Host\"", host_header))?;
    headers.insert(http::header::HOST, host);
    let mut has_ua = false;
    let mut accept: Option<String> = None;
    for (name, value) in &req.headers {
        if name.eq_ignore_ascii_case("host") {
            continue;
        }
        if name.eq_ignore_ascii_case("user-agent") {
            has_ua = true;
        }
        if name.eq_ignore_ascii_case("accept") {
            accept = Some(value.clone());
            if value.is_empty() {
                continue;
            }
        }
        let n = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("name", name))?;
        let v = http::HeaderValue::from_str(value)
            .map_err(|_| invalid(&format!("value for {name:?}"), value))?;
        headers.append(n, v);
    }
    if !has_ua {
        let v = http::HeaderValue::from_str(&req.user_agent)
            .map_err(|_| invalid("value for \"User-Agent\"", &req.user_agent))?;
        headers.insert(http::header::USER_AGENT, v);
    }
    if accept.is_none() {
        headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("*/*"));
    }
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    b.body(Empty::new()).map_err(|e| ExchangeError::Transport {
        message: e.to_string(),
        timed_out: false,
    })
}

fn hyper_error_text(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        "EOF".to_string()
    } else if e.is_parse() {
        format!("net/http: HTTP/1.x transport connection broken: {e}")
    } else {
        e.to_string()
    }
}

async fn send<S>(
    io: S,
    request: http::Request<Empty<Bytes>>,
    deadline: Instant,
) -> Result<Response, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout_err = || ExchangeError::Transport {
        message: "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            .to_string(),
        timed_out: true,
    };
    let handshake = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io));
    let (mut sender, conn) = match tokio::time::timeout_at(deadline, handshake).await {
        Err(_) => return Err(timeout_err()),
        Ok(Err(e)) => {
            return Err(ExchangeError::Transport {
                message: hyper_error_text(&e),
                timed_out: false,
            });
        }
        Ok(Ok(x)) => x,
    };
    // The connection future is driven here, beside the request, and dropped with it (no
    // detached task).
    let conn = async move {
        let _ = conn.await;
    };
    tokio::pin!(conn);
    let work = async {
        let resp = match tokio::time::timeout_at(deadline, sender.send_request(request)).await {
            Err(_) => return Err(timeout_err()),
            Ok(Err(e)) => {
                return Err(ExchangeError::Transport {
                    message: hyper_error_text(&e),
                    timed_out: false,
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while buf.len() < MAX_BODY_BYTES {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    return Err(ExchangeError::Body(
                        "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
                            .to_string(),
                    ));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(ExchangeError::Body(hyper_error_text(&e))),
                Ok(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        let room = MAX_BODY_BYTES - buf.len();
                        buf.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
            }
        }
        Ok(Response {
            status,
            location,
            body: buf,
        })
    };
    tokio::pin!(work);
    tokio::select! {
        biased;
        r = &mut work => r,
        _ = &mut conn => work.await,
    }
}

#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client TLS configuration: any certificate is accepted, as the kubelet's probes do
/// (`InsecureSkipVerify`).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("tls: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Maps an HTTP exchange to a probe result as the kubelet's `DoHTTPProbe`.
pub fn probe_result(r: HttpOutcome) -> HandlerResult {
    match r {
        HttpOutcome::Response { status, body } => {
            if (200..400).contains(&status) {
                if status >= 300 {
                    HandlerResult::new(
                        Outcome::Warning,
                        format!(
                            "Probe terminated redirects, Response body: {}",
                            cap_output(&body)
                        ),
                    )
                } else {
                    HandlerResult::new(Outcome::Success, cap_output(&body))
                }
            } else {
                HandlerResult::new(
                    Outcome::Failure { timed_out: false },
                    format!("HTTP probe failed with statuscode: {status}"),
                )
            }
        }
        HttpOutcome::Failed { message, timed_out } => {
            HandlerResult::new(Outcome::Failure { timed_out }, message)
        }
        HttpOutcome::BodyError { message } => HandlerResult::new(Outcome::Error, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url {
            scheme: "http".into(),
            host: "127.0.0.1".into(),
            port: Some(8080),
            path: "/redirect?loc=x".into(),
        }
    }

    #[test]
    fn locations_resolve() {
        let b = base();
        assert_eq!(
            resolve_location(&b, "/healthz").unwrap().to_string(),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(
            resolve_location(&b, "http://0.0.0.0/").unwrap().to_string(),
            "http://0.0.0.0/"
        );
        assert_eq!(
            resolve_location(&b, "//example.com:81/a")
                .unwrap()
                .to_string(),
            "http://example.com:81/a"
        );
        assert_eq!(
            resolve_location(&b, "other?x=1").unwrap().to_string(),
            "http://127.0.0.1:8080/other?x=1"
        );
        assert_eq!(
            resolve_location(&b, "?y=2").unwrap().to_string(),
            "http://127.0.0.1:8080/redirect?y=2"
        );
        assert_eq!(
            resolve_location(&b, "/a/b/../c").unwrap().to_string(),
            "http://127.0.0.1:8080/a/c"
        );
        assert_eq!(
            resolve_location(&b, "https://[::1]:9443/x")
                .unwrap()
                .to_string(),
            "https://[::1]:9443/x"
        );
        assert!(resolve_location(&b, "ftp://x/").is_err());
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("healthz"), "/healthz");
        assert_eq!(normalize_path("/a?b=c#frag"), "/a?b=c");
    }

    #[test]
    fn http_results_follow_the_status_code() {
        let ok = probe_result(HttpOutcome::Response {
            status: 204,
            body: b"fine".to_vec(),
        });
        assert_eq!((ok.outcome, ok.output.as_str()), (Outcome::Success, "fine"));
        let redirect = probe_result(HttpOutcome::Response {
            status: 302,
            body: b"<a href=\"http://0.0.0.0/\">Found</a>.\n".to_vec(),
        });
        assert_eq!(redirect.outcome, Outcome::Warning);
        assert_eq!(
            redirect.output,
            "Probe terminated redirects, Response body: <a href=\"http://0.0.0.0/\">Found</a>.\n"
        );
        let bad = probe_result(HttpOutcome::Response {
            status: 500,
            body: b"secret".to_vec(),
        });
        assert_eq!(bad.outcome, Outcome::Failure { timed_out: false });
        assert_eq!(bad.output, "HTTP probe failed with statuscode: 500");
        let low = probe_result(HttpOutcome::Response {
            status: 199,
            body: vec![],
        });
        assert!(!low.outcome.is_success());
        let edge = probe_result(HttpOutcome::Response {
            status: 399,
            body: vec![],
        });
        assert!(edge.outcome.is_success());
        let four = probe_result(HttpOutcome::Response {
            status: 400,
            body: vec![],
        });
        assert!(!four.outcome.is_success());
    }
}
