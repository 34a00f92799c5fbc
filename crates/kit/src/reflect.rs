//! One watch-and-cache loop for every component that keeps a reflector store of API
//! objects (the controller manager's informers, the scheduler's volume view, the agent's
//! Service, EndpointSlice, Node and Namespace caches): the watch (re-listed with back-off
//! after an error) feeds the store, and each event the store applied is handed to the
//! caller, who notifies, routes or bumps whatever depends on the cache.

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// What a reflector can cache: a statically typed (`DynamicType = ()`) API object that the
/// watch decodes and the store shares between tasks.
pub trait Cached:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Cached for K where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

/// Keeps `writer`'s store of `api` (selected by `config`) current and calls `on_event` with
/// every event once the store applied it; returns when the watch stream ends. A watch error
/// is logged (at `error_level`, naming `what`) and the watcher retries with back-off.
pub async fn reflect<K: Cached>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    what: &str,
    error_level: tracing::Level,
    on_event: impl FnMut(watcher::Event<K>) + Send,
) {
    let stream = watcher(api, config).default_backoff().reflect(writer);
    drive(stream, what, error_level, on_event).await
}

/// [`reflect`] without a store: `on_event` sees every event of the watch.
pub async fn watch<K: Cached>(
    api: Api<K>,
    config: watcher::Config,
    what: &str,
    error_level: tracing::Level,
    on_event: impl FnMut(watcher::Event<K>) + Send,
) {
    let stream = watcher(api, config).default_backoff();
    drive(stream, what, error_level, on_event).await
}

async fn drive<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    what: &str,
    error_level: tracing::Level,
    mut on_event: impl FnMut(watcher::Event<K>),
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => on_event(event),
            // `Level` orders by verbosity: ERROR < WARN < INFO < DEBUG < TRACE
            Err(e) if error_level <= tracing::Level::WARN => {
                tracing::warn!(error = %e, "{what}: watch failed; retrying")
            }
            Err(e) => tracing::debug!(error = %e, "{what}: watch failed; retrying"),
        }
    }
}
