//! Watch: a chunked 200 response with one JSON event per line.
//!
//! ```text
//! rv "" or "0", or sendInitialEvents=true:  ADDED for every current object (at revision R)
//!                                          [+ BOOKMARK k8s.io/initial-events-end at R]
//!                                          then live events after R
//! rv N:                                    live events after N; N compacted -> ERROR 410
//! store stream fails (compacted, lagging)  -> ERROR event, stream ends
//! timeoutSeconds (default 30–60 min)       -> stream ends cleanly
//! ```
//! With selectors, an object that starts matching is ADDED and one that stops matching is
//! DELETED, as upstream's cacher does. Bookmarks (allowWatchBookmarks) are sent at most every
//! 10 s from the store's progress notifications. When a Table was asked for, every object is
//! a one-row Table (column definitions in the first event only).
//!
//! Every watcher of a prefix sees the same stored events: each event is decoded once for all
//! of them ([`Decoded`], as upstream's cacher decodes once per event), and the JSON line of a
//! built-in kind is encoded once per event type; each watcher still applies its own
//! selectors to the shared object.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderValue, StatusCode, header};
use podvisor_store::{StoreError, WatchEvent, WatchStream};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::ResourceKind;
use crate::request::{
    Ctx, Output, Selectors, Target, list_prefix, parse_resource_version, partial_metadata,
};
use crate::storage::decode_at;

const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

/// Events decoded recently, shared by the watchers of one server: an object is decoded once
/// for all the watchers that receive it (a key at a revision never changes). Bounded: the
/// [`Decoded::CAPACITY`] most recent; a watcher that lags further behind decodes for itself.
#[derive(Default)]
pub struct Decoded {
    inner: Mutex<DecodedInner>,
}

#[derive(Default)]
struct DecodedInner {
    /// By revision (a revision holds few keys: one per write of its transaction).
    by_rev: HashMap<i64, Vec<Arc<DecodedObject>>>,
    order: VecDeque<i64>,
}

/// One stored object at one revision, decoded with its `resourceVersion`.
struct DecodedObject {
    key: String,
    obj: Result<Value, ()>,
    /// The JSON watch line for ADDED, MODIFIED and DELETED (built-in kinds, JSON output).
    lines: [OnceLock<Bytes>; 3],
}

impl Decoded {
    /// How many decoded objects are kept.
    pub const CAPACITY: usize = 512;

    /// `bytes` (the value of `key` stored at or deleted at `rev`) decoded with
    /// `resourceVersion = rev`, from the cache when another watcher decoded it already.
    fn get(&self, key: &str, rev: i64, bytes: &[u8]) -> Arc<DecodedObject> {
        {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(o) = inner
                .by_rev
                .get(&rev)
                .and_then(|v| v.iter().find(|o| o.key == key))
            {
                return o.clone();
            }
        }
        let decoded = Arc::new(DecodedObject {
            key: key.to_string(),
            obj: decode_at(bytes, rev).map_err(|_| ()),
            lines: Default::default(),
        });
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let DecodedInner { by_rev, order } = &mut *inner;
        let at = by_rev.entry(rev).or_default();
        if let Some(o) = at.iter().find(|o| o.key == key) {
            return o.clone();
        }
        at.push(decoded.clone());
        order.push_back(rev);
        while order.len() > Self::CAPACITY {
            if let Some(old) = order.pop_front()
                && let Some(v) = by_rev.get_mut(&old)
            {
                if v.len() > 1 {
                    v.remove(0);
                } else {
                    by_rev.remove(&old);
                }
            }
        }
        decoded
    }
}

struct Encoder {
    kind: &'static ResourceKind,
    out: Output,
    defs_sent: bool,
    ctx_now: podvisor_kit::WallClock,
    include: String,
    protobuf: bool,
}

impl Encoder {
    fn line(&mut self, ty: &str, mut obj: Value) -> Bytes {
        if ty != "BOOKMARK" && ty != "ERROR" {
            crate::crd::convert(self.kind, &mut obj);
        }
        let object = match (ty, self.out) {
            ("BOOKMARK" | "ERROR", _) => obj,
            (_, Output::Table) => {
                let mut t = crate::table::table_for(
                    self.kind,
                    std::slice::from_ref(&obj),
                    true,
                    self.ctx_now.timestamp(),
                );
                if let Some(rows) = t.get_mut("rows").and_then(Value::as_array_mut) {
                    for row in rows.iter_mut() {
                        match self.include.as_str() {
                            "Object" => row["object"] = obj.clone(),
                            "None" => {
                                if let Some(m) = row.as_object_mut() {
                                    m.remove("object");
                                }
                            }
                            _ => {}
                        }
                    }
                }
                t["metadata"] = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
                if self.defs_sent {
                    t["columnDefinitions"] = Value::Null;
                }
                self.defs_sent = true;
                t
            }
            (_, Output::Metadata) => partial_metadata(&obj),
            _ => obj,
        };
        if self.protobuf {
            return match crate::protobuf::encode_watch_event(ty, &object) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::warn!(error = %e, "protobuf watch event encoding failed; event skipped");
                    Bytes::new()
                }
            };
        }
        let mut s = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
        s.push(b'\n');
        Bytes::from(s)
    }

    /// The line for a shared decoded object: encoded once for every watcher when the output
    /// is the plain JSON of a built-in kind, else as [`Encoder::line`] on a copy.
    fn shared_line(&mut self, ty: &str, d: &DecodedObject) -> Option<Bytes> {
        let obj = d.obj.as_ref().ok()?;
        let slot = match ty {
            "ADDED" => 0,
            "MODIFIED" => 1,
            _ => 2,
        };
        if self.out != Output::Json || self.protobuf || self.kind.custom.is_some() {
            return Some(self.line(ty, obj.clone()));
        }
        Some(
            d.lines[slot]
                .get_or_init(|| {
                    // The bytes `line` writes: `{"object":…,"type":…}` (keys in order).
                    let mut s = b"{\"object\":".to_vec();
                    if serde_json::to_writer(&mut s, obj).is_err() {
                        return Bytes::new();
                    }
                    s.extend_from_slice(b",\"type\":");
                    let _ = serde_json::to_writer(&mut s, ty);
                    s.extend_from_slice(b"}\n");
                    Bytes::from(s)
                })
                .clone(),
        )
    }

    fn bookmark(&mut self, rev: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.kind.kind, "apiVersion": self.kind.api_version(), "metadata": meta});
        self.line("BOOKMARK", obj)
    }

    fn error(&mut self, e: &ApiError) -> Bytes {
        self.line("ERROR", e.status())
    }
}

struct State {
    enc: Encoder,
    decoded: Arc<Decoded>,
    pending: VecDeque<Bytes>,
    stream: Option<WatchStream>,
    deadline: tokio::time::Instant,
    sel: Selectors,
    bookmarks: bool,
    last_bookmark: tokio::time::Instant,
    last_rev: i64,
    done: bool,
}

impl State {
    fn matches(&self, obj: &Value) -> bool {
        self.sel.is_empty() || self.sel.matches(self.enc.kind, obj)
    }

    fn handle(&mut self, ev: Result<WatchEvent, StoreError>) {
        match ev {
            Ok(WatchEvent::Put { kv, prev }) => {
                self.last_rev = kv.mod_revision;
                let d = self.decoded.get(&kv.key, kv.mod_revision, &kv.value);
                let Ok(obj) = &d.obj else { return };
                let now_match = self.matches(obj);
                let prev_match = match &prev {
                    None => false,
                    Some(_) if self.sel.is_empty() => true,
                    Some(p) => match &self.decoded.get(&p.key, p.mod_revision, &p.value).obj {
                        Ok(o) => self.matches(o),
                        Err(()) => false,
                    },
                };
                let ty = match (prev.is_some() && prev_match, now_match) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return,
                };
                if let Some(line) = self.enc.shared_line(ty, &d) {
                    self.pending.push_back(line);
                }
            }
            Ok(WatchEvent::Delete { prev, revision }) => {
                self.last_rev = revision;
                let d = self.decoded.get(&prev.key, revision, &prev.value);
                let Ok(obj) = &d.obj else { return };
                if self.matches(obj)
                    && let Some(line) = self.enc.shared_line("DELETED", &d)
                {
                    self.pending.push_back(line);
                }
            }
            Ok(WatchEvent::Progress(rev)) => {
                if self.bookmarks && rev > 0 && self.last_bookmark.elapsed() >= BOOKMARK_EVERY {
                    self.last_bookmark = tokio::time::Instant::now();
                    self.last_rev = self.last_rev.max(rev);
                    let b = self.enc.bookmark(rev, false);
                    self.pending.push_back(b);
                }
            }
            Err(e) => {
                let err = ApiError::from_store_generic(e);
                let line = self.enc.error(&err);
                self.pending.push_back(line);
                self.done = true;
            }
        }
    }
}

async fn step(mut st: State) -> Option<(Result<Bytes, Infallible>, State)> {
    loop {
        if let Some(b) = st.pending.pop_front() {
            return Some((Ok(b), st));
        }
        if st.done {
            return None;
        }
        let stream = st.stream.as_mut()?;
        tokio::select! {
            _ = tokio::time::sleep_until(st.deadline) => { st.done = true; }
            ev = stream.next() => match ev {
                Some(ev) => st.handle(ev),
                None => { st.done = true; }
            }
        }
    }
}

/// The longest watch, whatever `timeoutSeconds` asks for.
const MAX_TIMEOUT_SECONDS: u64 = 365 * 24 * 3600;

fn random_timeout() -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1800) as u64;
    Duration::from_secs(1800 + r)
}

/// Serves a watch request.
pub async fn watch(ctx: &mut Ctx, t: &Target, out: Output) -> Result<Response, ApiError> {
    let out = if out == Output::Yaml {
        Output::Json
    } else {
        out
    };
    let accept = ctx
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let protobuf = out == Output::Json
        && crate::protobuf::negotiate_watch(accept) == crate::protobuf::ResponseFormat::Protobuf;
    let sel = Selectors::parse(t.kind, &ctx.query)?;
    let rv = ctx.query.text("resourceVersion");
    let rv_match = ctx.query.text("resourceVersionMatch");
    let bookmarks = ctx.query.bool("allowWatchBookmarks")?;
    let send_initial = match ctx.query.get("sendInitialEvents") {
        None | Some("") => None,
        Some(_) => Some(ctx.query.bool("sendInitialEvents")?),
    };
    if !rv_match.is_empty() && rv_match != "NotOlderThan" {
        return Err(ApiError::bad_request(format!(
            "resourceVersionMatch {rv_match:?} is not supported for watch"
        )));
    }
    if send_initial.is_some() && rv_match != "NotOlderThan" {
        return Err(ApiError::bad_request(
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
        ));
    }
    let timeout = match ctx.query.int("timeoutSeconds")? {
        // Any positive value is accepted; past a year it is a year (no clock overflows).
        Some(n) if n > 0 => Duration::from_secs((n as u64).min(MAX_TIMEOUT_SECONDS)),
        Some(n) if n < 0 => {
            return Err(ApiError::bad_request("timeoutSeconds must be non-negative"));
        }
        _ => random_timeout(),
    };
    let rv_num = parse_resource_version(&rv)?;
    let core = ctx.srv.core();
    let kind = t.kind;
    let prefix = list_prefix(t, &sel);
    let initial = match send_initial {
        Some(b) => b,
        None => matches!(rv_num, None | Some(0)),
    };
    let enc = Encoder {
        kind,
        out,
        defs_sent: false,
        ctx_now: core.clock.clone(),
        include: ctx
            .query
            .get("includeObject")
            .unwrap_or("Metadata")
            .to_string(),
        protobuf,
    };
    let now = tokio::time::Instant::now();
    let mut st = State {
        enc,
        decoded: core.storage.decoded.clone(),
        pending: VecDeque::new(),
        stream: None,
        deadline: now + timeout,
        sel,
        bookmarks,
        last_bookmark: now,
        last_rev: rv_num.unwrap_or(0),
        done: false,
    };
    let from = if initial {
        let keep = |o: &Value| st.sel.is_empty() || st.sel.matches(kind, o);
        let page = core.storage.list(&prefix, 0, None, None, &keep).await?;
        for obj in page.items {
            let l = st.enc.line("ADDED", obj);
            st.pending.push_back(l);
        }
        if send_initial == Some(true) && bookmarks {
            let b = st.enc.bookmark(page.rev, true);
            st.pending.push_back(b);
        }
        st.last_rev = page.rev;
        page.rev + 1
    } else {
        let n = rv_num.unwrap_or(0);
        core.storage.require_revision(n).await?;
        n + 1
    };
    match core.storage.store.watch(&prefix, from).await {
        Ok(s) => st.stream = Some(s),
        Err(StoreError::Compacted { compacted, .. }) => {
            let e = ApiError::expired(format!(
                "too old resource version: {} ({})",
                from - 1,
                compacted
            ));
            let l = st.enc.error(&e);
            st.pending.push_back(l);
            st.done = true;
        }
        Err(e) => return Err(ApiError::from_store_generic(e)),
    }
    let body = Body::from_stream(futures::stream::unfold(st, step));
    let mut r = (StatusCode::OK, body).into_response();
    let ct = if protobuf {
        crate::protobuf::PROTOBUF_WATCH
    } else {
        "application/json"
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(out: Output) -> Encoder {
        Encoder {
            kind: crate::registry::lookup("", "v1", "pods").expect("pods"),
            out,
            defs_sent: false,
            ctx_now: podvisor_kit::WallClock::system(),
            include: "Metadata".into(),
            protobuf: false,
        }
    }

    /// The line encoded once for every watcher is byte for byte the line each watcher
    /// encoded for itself before, and a key at a revision is decoded once.
    #[test]
    fn a_shared_event_line_is_the_line_of_each_watcher() {
        let stored = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"ns","labels":{"x":"\"y\""}},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;
        let decoded = Decoded::default();
        let d = decoded.get("/registry/pods/ns/a", 7, stored);
        assert!(Arc::ptr_eq(
            &d,
            &decoded.get("/registry/pods/ns/a", 7, stored)
        ));
        assert!(!Arc::ptr_eq(
            &d,
            &decoded.get("/registry/pods/ns/b", 7, stored)
        ));
        let obj = decode_at(stored, 7).expect("decode");
        for ty in ["ADDED", "MODIFIED", "DELETED"] {
            let own = encoder(Output::Json).line(ty, obj.clone());
            let shared = encoder(Output::Json).shared_line(ty, &d).expect("line");
            assert_eq!(own, shared, "{ty}");
            // Other outputs are encoded per watcher, as before.
            let own = encoder(Output::Metadata).line(ty, obj.clone());
            let shared = encoder(Output::Metadata).shared_line(ty, &d).expect("line");
            assert_eq!(own, shared, "{ty} metadata");
        }
    }

    /// Past its capacity the oldest decoded objects are dropped.
    #[test]
    fn decoded_events_are_bounded() {
        let decoded = Decoded::default();
        let stored = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#;
        let first = decoded.get("/registry/configmaps/ns/a", 1, stored);
        for rev in 2..(Decoded::CAPACITY as i64 + 10) {
            decoded.get("/registry/configmaps/ns/a", rev, stored);
        }
        let inner = decoded.inner.lock().unwrap();
        assert_eq!(inner.order.len(), Decoded::CAPACITY);
        assert!(!inner.by_rev.contains_key(&1));
        drop(inner);
        assert!(!Arc::ptr_eq(
            &first,
            &decoded.get("/registry/configmaps/ns/a", 1, stored)
        ));
    }
}
