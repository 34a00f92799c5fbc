//! The container log server (the kubelet's `/containerLogs` endpoint), which the API server's
//! `pods/log` proxies to, so `kubectl logs`, `logs -f` and `logs --previous` work.
//!
//! `GET /containerLogs/<ns>/<pod>/<container>?follow=&tailLines=&sinceSeconds=&sinceTime=&timestamps=&previous=&limitBytes=`
//! with `Authorization: Bearer <node token>`. Logs are read from the runtime's CRI-format
//! files (`<RFC3339Nano> stdout|stderr F|P <text>`): the prefix is stripped, partial (`P`)
//! lines are joined, `timestamps=true` prints `<RFC3339Nano> <text>` as the kubelet does.
//! `follow` streams new lines until the container stops; `previous` reads the last
//! terminated instance.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use podvisor_runtime::{ContainerId, ContainerRuntime, ContainerState};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::common::{authorized, find, plain};
use crate::clock::WallClock;

#[derive(Clone)]
struct LogState {
    runtime: Arc<dyn ContainerRuntime>,
    token: Arc<str>,
    clock: WallClock,
}

/// The query options of a log request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Stream new lines until the container stops.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only lines at or after this time (from sinceSeconds or sinceTime).
    pub since: Option<jiff::Timestamp>,
    /// Prefix lines with their timestamp.
    pub timestamps: bool,
    /// The previous (terminated) instance.
    pub previous: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
}

fn parse_bool(v: Option<&String>, name: &str) -> Result<bool, String> {
    match v.map(String::as_str) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(format!("invalid value {other:?} for {name}")),
    }
}

fn parse_num(v: Option<&String>, name: &str) -> Result<Option<i64>, String> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| format!("invalid value {s:?} for {name}"))
        })
        .transpose()
}

impl LogOptions {
    /// Parses the query string parameters; `now` turns sinceSeconds into a time.
    pub fn parse(q: &HashMap<String, String>, now: jiff::Timestamp) -> Result<LogOptions, String> {
        let tail = parse_num(q.get("tailLines"), "tailLines")?;
        let since_seconds = parse_num(q.get("sinceSeconds"), "sinceSeconds")?;
        let limit = parse_num(q.get("limitBytes"), "limitBytes")?;
        if tail.is_some_and(|t| t < 0) {
            return Err("tailLines must be non-negative".into());
        }
        if since_seconds.is_some_and(|s| s <= 0) || limit.is_some_and(|l| l <= 0) {
            return Err("sinceSeconds and limitBytes must be positive".into());
        }
        let since_time = match q.get("sinceTime").filter(|s| !s.is_empty()) {
            Some(s) => Some(
                s.parse::<jiff::Timestamp>()
                    .map_err(|_| format!("invalid sinceTime {s:?}"))?,
            ),
            None => None,
        };
        let since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("at most one of sinceTime or sinceSeconds may be specified".into());
            }
            (Some(s), None) => now.checked_sub(jiff::SignedDuration::from_secs(s)).ok(),
            (None, t) => t,
        };
        Ok(LogOptions {
            follow: parse_bool(q.get("follow"), "follow")?,
            tail_lines: tail.map(|t| t as usize),
            since,
            timestamps: parse_bool(q.get("timestamps"), "timestamps")?,
            previous: parse_bool(q.get("previous"), "previous")?,
            limit_bytes: limit.map(|l| l as usize),
        })
    }
}

/// One parsed CRI log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriLine<'a> {
    /// Its timestamp, as written.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// A partial line (`P`), continued by the next record.
    pub partial: bool,
    /// The text.
    pub content: &'a str,
}

/// Parses `<time> <stream> <tag> <content>`; None if the line is not in CRI format.
pub fn parse_cri(line: &str) -> Option<CriLine<'_>> {
    let mut it = line.splitn(4, ' ');
    let time = it.next()?;
    let stream = it.next()?;
    let tag = it.next()?;
    let content = it.next().unwrap_or("");
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let partial = tag.split(':').next() == Some("P");
    Some(CriLine {
        time,
        stream,
        partial,
        content,
    })
}

/// Incremental renderer: feeds raw file bytes, produces the output bytes.
struct Renderer {
    opts: LogOptions,
    pending: String,
    pending_time: Option<String>,
    carry: Vec<u8>,
    written: usize,
}

impl Renderer {
    fn new(opts: LogOptions) -> Renderer {
        Renderer {
            opts,
            pending: String::new(),
            pending_time: None,
            carry: Vec::new(),
            written: 0,
        }
    }

    fn exhausted(&self) -> bool {
        self.opts.limit_bytes.is_some_and(|l| self.written >= l)
    }

    /// Complete logical lines (time, text with newline) from new bytes.
    fn lines(&mut self, data: &[u8]) -> Vec<(Option<String>, String)> {
        self.carry.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(pos) = self.carry.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.carry.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&raw[..raw.len() - 1]).to_string();
            match parse_cri(&text) {
                Some(l) => {
                    if self.pending_time.is_none() {
                        self.pending_time = Some(l.time.to_string());
                    }
                    self.pending.push_str(l.content);
                    if !l.partial {
                        let mut t = std::mem::take(&mut self.pending);
                        t.push('\n');
                        out.push((self.pending_time.take(), t));
                    }
                }
                None => out.push((None, format!("{text}\n"))),
            }
        }
        out
    }

    fn render(&mut self, lines: Vec<(Option<String>, String)>) -> Vec<u8> {
        let mut out = Vec::new();
        for (time, text) in lines {
            let parsed = time
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if let (Some(since), Some(ts)) = (self.opts.since, parsed)
                && ts < since
            {
                continue;
            }
            if self.opts.timestamps {
                match parsed {
                    Some(ts) => out.extend_from_slice(format!("{ts} ").as_bytes()),
                    None => {
                        out.extend_from_slice(format!("{} ", time.unwrap_or_default()).as_bytes())
                    }
                }
            }
            out.extend_from_slice(text.as_bytes());
        }
        if let Some(limit) = self.opts.limit_bytes {
            let room = limit.saturating_sub(self.written);
            out.truncate(room);
        }
        self.written += out.len();
        out
    }
}

/// Renders a whole log file's content with `opts` (no follow).
pub fn render_all(data: &[u8], opts: &LogOptions) -> Vec<u8> {
    let mut r = Renderer::new(opts.clone());
    let mut lines = r.lines(data);
    if let Some(tail) = opts.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    r.render(lines)
}

async fn container_logs(
    State(st): State<LogState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&st.token, &headers) {
        return plain(StatusCode::UNAUTHORIZED, "Unauthorized".into());
    }
    let now = crate::clock::to_time(st.clock.now()).0;
    let opts = match LogOptions::parse(&q, now) {
        Ok(o) => o,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let target = match find(st.runtime.as_ref(), &ns, &pod, &container, opts.previous).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let data = match tokio::fs::read(&target.log_path).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("read log: {e}")),
    };
    let first = render_all(&data, &opts);
    if !(opts.follow && target.running && !opts.previous) {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            first,
        )
            .into_response();
    }
    // follow: continue from the end of what was read
    let mut renderer = Renderer::new(opts.clone());
    renderer.written = first.len();
    let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    renderer.carry = data[complete..].to_vec();
    let state = FollowState {
        runtime: st.runtime.clone(),
        id: target.id,
        path: target.log_path,
        pos: data.len() as u64,
        renderer,
        first: Some(first),
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), s))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

struct FollowState {
    runtime: Arc<dyn ContainerRuntime>,
    id: ContainerId,
    path: PathBuf,
    pos: u64,
    renderer: Renderer,
    first: Option<Vec<u8>>,
    done: bool,
}

impl FollowState {
    async fn read_new(&mut self) -> Vec<u8> {
        let Ok(mut f) = tokio::fs::File::open(&self.path).await else {
            return Vec::new();
        };
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        if len < self.pos {
            // rotated or truncated: start over
            self.pos = 0;
        }
        if f.seek(std::io::SeekFrom::Start(self.pos)).await.is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).await.is_err() {
            return Vec::new();
        }
        self.pos += buf.len() as u64;
        let lines = self.renderer.lines(&buf);
        self.renderer.render(lines)
    }

    async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if let Some(first) = self.first.take()
            && !first.is_empty()
        {
            return Some(first);
        }
        loop {
            if self.done || self.renderer.exhausted() {
                return None;
            }
            let running = matches!(
                self.runtime
                    .container_status(&self.id)
                    .await
                    .map(|s| s.state),
                Ok(ContainerState::Running { .. })
            );
            let out = self.read_new().await;
            if !running {
                self.done = true;
            }
            if !out.is_empty() {
                return Some(out);
            }
            if self.done {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The route of the log endpoint.
pub(crate) fn router(
    runtime: Arc<dyn ContainerRuntime>,
    token: Arc<str>,
    clock: WallClock,
) -> Router {
    Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .with_state(LogState {
            runtime,
            token,
            clock,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Result<LogOptions, String> {
        let q = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogOptions::parse(&q, "2026-01-01T00:01:00Z".parse().unwrap())
    }

    const LOG: &str = "2026-01-01T00:00:00.100000000Z stdout F one\n\
2026-01-01T00:00:30.000000000Z stderr P tw\n\
2026-01-01T00:00:30.500000000Z stderr F o\n\
2026-01-01T00:00:59.000000000Z stdout F three\n";

    #[test]
    fn cri_prefix_is_stripped_and_partials_joined() {
        let out = render_all(LOG.as_bytes(), &LogOptions::default());
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\nthree\n");
    }

    #[test]
    fn timestamps_tail_since_and_limit() {
        let out = render_all(
            LOG.as_bytes(),
            &opts(&[("timestamps", "true"), ("tailLines", "2")]).unwrap(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-01T00:00:30Z two\n2026-01-01T00:00:59Z three\n"
        );
        let out = render_all(LOG.as_bytes(), &opts(&[("sinceSeconds", "5")]).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), "three\n");
        let out = render_all(
            LOG.as_bytes(),
            &opts(&[("sinceTime", "2026-01-01T00:00:10Z")]).unwrap(),
        );
        assert_eq!(String::from_utf8(out).unwrap(), "two\nthree\n");
        let out = render_all(LOG.as_bytes(), &opts(&[("limitBytes", "6")]).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntw");
        let out = render_all(LOG.as_bytes(), &opts(&[("tailLines", "0")]).unwrap());
        assert!(out.is_empty());
    }

    #[test]
    fn bad_options_are_rejected() {
        assert!(opts(&[("tailLines", "x")]).is_err());
        assert!(opts(&[("follow", "maybe")]).is_err());
        assert!(opts(&[("limitBytes", "0")]).is_err());
        assert!(opts(&[("sinceSeconds", "5"), ("sinceTime", "2026-01-01T00:00:10Z")]).is_err());
        assert!(opts(&[("sinceTime", "yesterday")]).is_err());
        assert!(
            opts(&[("follow", "true"), ("previous", "1")])
                .unwrap()
                .previous
        );
    }

    #[test]
    fn non_cri_lines_pass_through() {
        let out = render_all(b"garbage line\n", &LogOptions::default());
        assert_eq!(out, b"garbage line\n");
        assert!(parse_cri("2026 foo F x").is_none());
    }
}
