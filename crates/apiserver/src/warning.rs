//! Warnings for a response's `Warning` headers (`299 - "text"`, which kubectl prints as
//! `Warning: text`), added from anywhere in the handling of one request, such as admission
//! deep inside `ops`. The request handler runs the request inside [`collect`]; [`add`]
//! outside of it (a background task) drops the warning. Identical warnings are sent once.
//!
//! The same scope carries the request's audit annotations ([`annotate`]): admission steps
//! (Pod Security's `pod-security.kubernetes.io/audit-violations`) add them, and the audit
//! event written at the end of the request carries them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;

use http::HeaderValue;
use http::header::{HeaderMap, WARNING};

/// What one request has gathered for its response and its audit event.
#[derive(Default)]
struct Notes {
    warnings: Vec<String>,
    annotations: BTreeMap<String, String>,
}

tokio::task_local! {
    static NOTES: RefCell<Notes>;
}

/// At most this many warnings (and audit annotations) are kept for one request.
const MAX_WARNINGS: usize = 256;

/// Adds a warning to the current request's response.
pub(crate) fn add(text: String) {
    let _ = NOTES.try_with(|n| {
        let w = &mut n.borrow_mut().warnings;
        if w.len() < MAX_WARNINGS && !w.contains(&text) {
            w.push(text);
        }
    });
}

/// Adds an audit annotation to the current request's audit event (a later value for the
/// same key wins).
pub(crate) fn annotate(key: String, value: String) {
    let _ = NOTES.try_with(|n| {
        let a = &mut n.borrow_mut().annotations;
        if a.len() < MAX_WARNINGS || a.contains_key(&key) {
            a.insert(key, value);
        }
    });
}

/// The audit annotations added so far in the current request.
pub(crate) fn annotations() -> BTreeMap<String, String> {
    NOTES
        .try_with(|n| n.borrow().annotations.clone())
        .unwrap_or_default()
}

/// Runs `f` collecting the warnings added meanwhile.
pub(crate) async fn collect<F: Future>(f: F) -> (F::Output, Vec<String>) {
    NOTES
        .scope(RefCell::new(Notes::default()), async {
            let out = f.await;
            let warnings = NOTES.with(|n| std::mem::take(&mut n.borrow_mut().warnings));
            (out, warnings)
        })
        .await
}

/// Appends `warnings` as `Warning` headers.
pub(crate) fn append_headers(headers: &mut HeaderMap, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(hv) = HeaderValue::from_str(&text) {
            headers.append(WARNING, hv);
        }
    }
}
