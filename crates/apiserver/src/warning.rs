//! Warnings for a response's `Warning` headers (`299 - "text"`, which kubectl prints as
//! `Warning: text`), added from anywhere in the handling of one request, such as admission
//! deep inside `ops`. The request handler runs the request inside [`collect`]; [`add`]
//! outside of it (a background task) drops the warning. Identical warnings are sent once.

use std::cell::RefCell;
use std::future::Future;

use http::HeaderValue;
use http::header::{HeaderMap, WARNING};

tokio::task_local! {
    static WARNINGS: RefCell<Vec<String>>;
}

/// At most this many warnings are kept for one request.
const MAX_WARNINGS: usize = 256;

/// Adds a warning to the current request's response.
pub(crate) fn add(text: String) {
    let _ = WARNINGS.try_with(|w| {
        let mut w = w.borrow_mut();
        if w.len() < MAX_WARNINGS && !w.contains(&text) {
            w.push(text);
        }
    });
}

/// Runs `f` collecting the warnings added meanwhile.
pub(crate) async fn collect<F: Future>(f: F) -> (F::Output, Vec<String>) {
    WARNINGS
        .scope(RefCell::new(Vec::new()), async {
            let out = f.await;
            let warnings = WARNINGS.with(|w| w.take());
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
