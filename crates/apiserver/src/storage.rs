//! Objects as JSON in the [`Store`]: keys from the registry, `resourceVersion` = the key's
//! `mod_revision` (never stored in the value; set on every read), list paging with opaque
//! continue tokens.

use std::sync::Arc;

use base64::Engine as _;
use podvisor_store::{KeyValue, ListOptions, Revision, Store, StoreError};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::ResourceKind;

/// Decodes a stored value and stamps its `resourceVersion`.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    decode_at(&kv.value, kv.mod_revision)
}

/// Decodes stored bytes and stamps `resourceVersion = rev`.
pub fn decode_at(bytes: &[u8], rev: Revision) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("stored object is not valid JSON: {e}")))?;
    crate::objects::set_meta(&mut v, "resourceVersion", Value::from(rev.to_string()));
    Ok(v)
}

/// Decodes stored bytes as an object of `kind` (custom kinds take the version read through).
pub fn decode_as(kind: &ResourceKind, bytes: &[u8], rev: Revision) -> Result<Value, ApiError> {
    let mut v = decode_at(bytes, rev)?;
    crate::crd::convert(kind, &mut v);
    Ok(v)
}

/// Stamps `resourceVersion` into stored bytes without parsing them, when they have the
/// shape [`encode`] writes (compact JSON). Only the top-level `"metadata":{` counts: keys
/// sorting before it (a ControllerRevision's `data`) may hold nested `metadata` objects.
pub fn stamp_raw(bytes: &[u8], rev: Revision) -> Option<Vec<u8>> {
    if !bytes.starts_with(b"{\"apiVersion\":") {
        return None;
    }
    let at = top_level_metadata(bytes)?;
    let rv = format!("\"resourceVersion\":\"{rev}\"");
    let mut out = Vec::with_capacity(bytes.len() + rv.len() + 1);
    out.extend_from_slice(&bytes[..at]);
    out.extend_from_slice(rv.as_bytes());
    if bytes.get(at) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(&bytes[at..]);
    Some(out)
}

/// The offset just after the top-level `"metadata":{` of compact JSON (outside strings, at
/// object depth 1).
fn top_level_metadata(bytes: &[u8]) -> Option<usize> {
    const MARK: &[u8] = b"\"metadata\":{";
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                if depth == 1 && bytes[i..].starts_with(MARK) {
                    return Some(i + MARK.len());
                }
                in_string = true;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Encodes an object for storage (without `resourceVersion`).
pub fn encode(obj: &Value) -> Result<Vec<u8>, ApiError> {
    let mut v = obj.clone();
    crate::objects::set_meta(&mut v, "resourceVersion", Value::Null);
    serde_json::to_vec(&v).map_err(|e| ApiError::internal(e.to_string()))
}

/// Runs one store operation on `kind`, recording its latency.
async fn timed<T>(
    operation: &str,
    kind: &ResourceKind,
    op: impl std::future::Future<Output = T>,
) -> T {
    let started = tokio::time::Instant::now();
    let out = op.await;
    crate::metrics::store_op(
        &kind.qualified_resource(),
        operation,
        started.elapsed().as_secs_f64(),
    );
    out
}

/// Records one list under `prefix` (`/registry/<storage group>/<plural>/...`).
fn list_done(prefix: &str, started: tokio::time::Instant) {
    let mut parts = prefix.trim_start_matches("/registry/").split('/');
    let (group, plural) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let ty = match group {
        "core" | "" => plural.to_string(),
        g => format!("{plural}.{g}"),
    };
    crate::metrics::store_op(&ty, "list", started.elapsed().as_secs_f64());
}

/// A continue token: the revision of the first page and the last key returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    /// The snapshot revision.
    pub rev: Revision,
    /// The last key returned (exclusive start of the next page).
    pub start: String,
}

impl ContinueToken {
    /// Encodes the token (base64 of a small JSON document, like upstream).
    pub fn encode(&self) -> String {
        let j = json!({"v": "meta.k8s.io/v1", "rv": self.rev, "start": self.start});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(j.to_string())
    }

    /// Where a list starts: after the token's key at its revision, else from the beginning at
    /// `at` (the latest revision when `None`).
    fn resume(
        cont: Option<ContinueToken>,
        at: Option<Revision>,
    ) -> (Option<Revision>, Option<String>) {
        match cont {
            Some(c) => (Some(c.rev), Some(c.start)),
            None => (at, None),
        }
    }

    /// Decodes a token; `prefix` is the list prefix it must lie under.
    pub fn decode(s: &str, prefix: &str) -> Result<ContinueToken, ApiError> {
        let bad = || ApiError::bad_request(format!("invalid continue token: {s:?}"));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
        let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
        if rev <= 0 || !start.starts_with(prefix) {
            return Err(bad());
        }
        Ok(ContinueToken {
            rev,
            start: start.to_string(),
        })
    }
}

/// One page of a filtered list.
pub struct Page {
    /// Matching objects, with resourceVersion set.
    pub items: Vec<Value>,
    /// The revision the list was read at.
    pub rev: Revision,
    /// The continue token, if more items may follow.
    pub cont: Option<String>,
    /// Items remaining after this page (upper bound), if known.
    pub remaining: Option<i64>,
}

/// One page of an unfiltered list as raw JSON objects.
pub struct RawPage {
    /// The objects, each a JSON document with resourceVersion stamped.
    pub items: Vec<Vec<u8>>,
    /// The revision the list was read at.
    pub rev: Revision,
    /// The continue token, if more items follow.
    pub cont: Option<String>,
    /// Items remaining after this page, if known.
    pub remaining: Option<i64>,
}

/// Object storage on top of a [`Store`].
#[derive(Clone)]
pub struct Storage {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The revision of the last write of each kind through this server.
    pub marks: Arc<WriteMarks>,
    /// Watch events decoded once for all watchers.
    pub decoded: Arc<crate::watch::Decoded>,
}

/// The revision of the last write of each kind made through this server, so that a
/// component following the store (the authorizers' caches) can tell whether it has seen it.
#[derive(Debug, Default)]
pub struct WriteMarks(
    std::sync::Mutex<std::collections::HashMap<(&'static str, &'static str), Revision>>,
);

impl WriteMarks {
    fn mark(&self, kind: &ResourceKind, rev: Revision) {
        if let Ok(mut m) = self.0.lock() {
            let e = m.entry((kind.group, kind.plural)).or_default();
            *e = (*e).max(rev);
        }
    }

    /// The revision of the last write of `kind` (0 if none).
    pub fn last(&self, kind: &ResourceKind) -> Revision {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(&(kind.group, kind.plural)).copied())
            .unwrap_or(0)
    }
}

impl Storage {
    /// Storage on `store`.
    pub fn new(store: Arc<dyn Store>) -> Storage {
        Storage {
            store,
            marks: Arc::default(),
            decoded: Arc::default(),
        }
    }

    /// Fails as upstream does (504 "Too large resource version") when `rv` is beyond the
    /// store's current revision.
    pub async fn require_revision(&self, rv: Revision) -> Result<(), ApiError> {
        let current = self
            .store
            .current_revision()
            .await
            .map_err(ApiError::from_store_generic)?;
        if rv > current {
            return Err(ApiError::from_store_generic(StoreError::FutureRevision {
                requested: rv,
                current,
            }));
        }
        Ok(())
    }

    /// Reads one object.
    pub async fn get(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<(Value, Revision)>, ApiError> {
        let kv = timed("get", kind, self.store.get(&kind.key(ns, name)))
            .await
            .map_err(ApiError::from_store_generic)?;
        match kv {
            Some(kv) => Ok(Some((
                decode_as(kind, &kv.value, kv.mod_revision)?,
                kv.mod_revision,
            ))),
            None => Ok(None),
        }
    }

    /// Reads one object or fails with 404.
    pub async fn must_get(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(Value, Revision), ApiError> {
        self.get(kind, ns, name)
            .await?
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// Creates an object; returns it with its resourceVersion.
    pub async fn create(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ApiError> {
        let kv = timed(
            "create",
            kind,
            self.store.create(&kind.key(ns, name), encode(obj)?),
        )
        .await
        .map_err(|e| ApiError::from_store(e, kind, name))?;
        self.marks.mark(kind, kv.mod_revision);
        decode_as(kind, &kv.value, kv.mod_revision)
    }

    /// Replaces an object if its revision is still `expected`.
    pub async fn update(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
        expected: Revision,
    ) -> Result<Result<Value, StoreError>, ApiError> {
        match timed(
            "update",
            kind,
            self.store
                .update(&kind.key(ns, name), encode(obj)?, expected),
        )
        .await
        {
            Ok(kv) => {
                self.marks.mark(kind, kv.mod_revision);
                Ok(Ok(decode_as(kind, &kv.value, kv.mod_revision)?))
            }
            Err(e @ (StoreError::Conflict { .. } | StoreError::NotFound { .. })) => Ok(Err(e)),
            Err(e) => Err(ApiError::from_store(e, kind, name)),
        }
    }

    /// Deletes an object if its revision is still `expected`; returns its last state with
    /// the revision of the delete.
    pub async fn delete(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        expected: Option<Revision>,
    ) -> Result<Result<Value, StoreError>, ApiError> {
        match timed(
            "delete",
            kind,
            self.store.delete(&kind.key(ns, name), expected),
        )
        .await
        {
            Ok((kv, rev)) => {
                self.marks.mark(kind, rev);
                Ok(Ok(decode_as(kind, &kv.value, rev)?))
            }
            Err(e @ (StoreError::Conflict { .. } | StoreError::NotFound { .. })) => Ok(Err(e)),
            Err(e) => Err(ApiError::from_store(e, kind, name)),
        }
    }

    /// One page of the store's list under `prefix` (timed for the metrics). A resumed list
    /// (`after` set) whose revision was compacted is `410 Expired` with `expired_message`.
    async fn store_page(
        &self,
        prefix: &str,
        revision: Option<Revision>,
        limit: usize,
        after: Option<String>,
        expired_message: &str,
    ) -> Result<podvisor_store::ListResult, ApiError> {
        let resumed = after.is_some();
        let started = tokio::time::Instant::now();
        let options = ListOptions {
            revision,
            limit,
            continue_after: after,
        };
        let page = self.store.list(prefix, options).await;
        list_done(prefix, started);
        page.map_err(|e| match e {
            StoreError::Compacted { .. } if resumed => ApiError::expired(expired_message),
            other => ApiError::from_store_generic(other),
        })
    }

    /// Lists objects under `prefix` without decoding them (no filtering).
    pub async fn list_raw(
        &self,
        prefix: &str,
        limit: usize,
        cont: Option<ContinueToken>,
        at: Option<Revision>,
    ) -> Result<RawPage, ApiError> {
        let (rev, after) = ContinueToken::resume(cont, at);
        let page = self
            .store_page(prefix, rev, limit, after, "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
            .await?;
        let mut items = Vec::with_capacity(page.items.len());
        for kv in &page.items {
            match stamp_raw(&kv.value, kv.mod_revision) {
                Some(b) => items.push(b),
                None => items.push(
                    serde_json::to_vec(&decode(kv)?)
                        .map_err(|e| ApiError::internal(e.to_string()))?,
                ),
            }
        }
        let cont = if page.more {
            page.items.last().map(|kv| {
                ContinueToken {
                    rev: page.revision,
                    start: kv.key.clone(),
                }
                .encode()
            })
        } else {
            None
        };
        Ok(RawPage {
            items,
            rev: page.revision,
            cont,
            remaining: if page.more { page.remaining } else { None },
        })
    }

    /// Lists objects under `prefix` that satisfy `keep`, up to `limit` (0 = all), from an
    /// optional continue token or at an exact revision.
    pub async fn list(
        &self,
        prefix: &str,
        limit: usize,
        cont: Option<ContinueToken>,
        at: Option<Revision>,
        keep: &(dyn Fn(&Value) -> bool + Send + Sync),
    ) -> Result<Page, ApiError> {
        let mut items = Vec::new();
        let (mut rev, mut after) = ContinueToken::resume(cont, at);
        let batch = if limit == 0 { 0 } else { limit.max(16) };
        loop {
            let page = self
                .store_page(prefix, rev, batch, after.clone(), "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
                .await?;
            rev = Some(page.revision);
            let n = page.items.len();
            for (i, kv) in page.items.iter().enumerate() {
                let obj = decode(kv)?;
                if keep(&obj) {
                    items.push(obj);
                    if limit > 0 && items.len() >= limit {
                        let more = page.more || i + 1 < n;
                        let cont = more.then(|| {
                            ContinueToken {
                                rev: page.revision,
                                start: kv.key.clone(),
                            }
                            .encode()
                        });
                        let remaining = if more {
                            page.remaining.map(|r| r + (n - i - 1) as i64)
                        } else {
                            None
                        };
                        return Ok(Page {
                            items,
                            rev: page.revision,
                            cont,
                            remaining,
                        });
                    }
                }
            }
            if !page.more || n == 0 {
                return Ok(Page {
                    items,
                    rev: page.revision,
                    cont: None,
                    remaining: None,
                });
            }
            after = page.items.last().map(|kv| kv.key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_stamping_matches_decoding() {
        for v in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "uid": "u"}, "spec": {"x": {"metadata": {}}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}),
            // A ControllerRevision: `data` sorts before `metadata` and holds a template.
            json!({"apiVersion": "apps/v1", "data": {"spec": {"template": {"metadata": {"labels": {"a": "b"}}}}, "s": "\"metadata\":{"},
                "kind": "ControllerRevision", "metadata": {"name": "r"}, "revision": 1}),
        ] {
            let bytes = encode(&v).unwrap();
            let raw: Value = serde_json::from_slice(&stamp_raw(&bytes, 42).unwrap()).unwrap();
            assert_eq!(raw, decode_at(&bytes, 42).unwrap());
        }
        assert!(stamp_raw(b"{\"kind\":1}", 1).is_none());
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = ContinueToken {
            rev: 7,
            start: "/registry/core/pods/default/a".into(),
        };
        let s = t.encode();
        assert_eq!(
            ContinueToken::decode(&s, "/registry/core/pods/").unwrap(),
            t
        );
        assert!(ContinueToken::decode(&s, "/registry/core/nodes/").is_err());
        assert!(ContinueToken::decode("!!", "/").is_err());
        assert!(ContinueToken::decode("e30", "/").is_err());
    }
}
