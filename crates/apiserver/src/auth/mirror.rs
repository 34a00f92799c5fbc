//! A copy in memory of some stored objects, kept by following the store: what the
//! authorizers decide from (RBAC objects; pods and claims for the node graph).
//!
//! ```text
//! start: list the kinds at one revision R ──▶ follower.apply([Reset]) ──▶ applied = R
//!        │
//!        ▼ (task of Core)
//! watch prefix from applied+1 ──▶ batch of events ──▶ follower.apply([Put|Delete..]) ──▶ applied
//!        │ error (compaction, store restart)
//!        └──▶ pause, list again ──▶ Reset
//! ```
//!
//! `applied` also advances on the store's progress bookmarks, so [`Mirror::caught_up`] can
//! wait until the copy reflects a given revision (the last write of its kinds through this
//! server): a request denied from a copy that is behind is decided again once it caught up.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use podvisor_store::{Revision, WatchEvent};
use serde_json::Value;

use crate::error::ApiError;
use crate::ops::Core;
use crate::registry::ResourceKind;

/// One change seen by a mirror.
#[derive(Debug, Clone)]
pub enum Change {
    /// Everything under `prefix` is now exactly `objects` (by storage key).
    Reset {
        /// The prefix the mirror follows.
        prefix: &'static str,
        /// The objects, by key.
        objects: Vec<(String, Value)>,
    },
    /// An object was created or updated.
    Put(String, Value),
    /// An object was deleted.
    Delete(String),
}

/// What a mirror feeds.
#[async_trait::async_trait]
pub trait Follower: Send + Sync + 'static {
    /// Applies a batch of changes (in revision order).
    async fn apply(&self, core: &Core, changes: Vec<Change>);
}

/// A store prefix followed into a [`Follower`].
#[derive(Debug)]
pub struct Mirror {
    prefix: &'static str,
    kinds: &'static [&'static ResourceKind],
    applied: tokio::sync::watch::Sender<Revision>,
}

impl Mirror {
    /// Lists `kinds` (all stored under `prefix`), hands them to `follower`, and follows the
    /// store from then on in a task of `core`.
    pub async fn start(
        core: &Core,
        prefix: &'static str,
        kinds: &'static [&'static ResourceKind],
        follower: Arc<dyn Follower>,
    ) -> Result<Arc<Mirror>, ApiError> {
        let mirror = Arc::new(Mirror {
            prefix,
            kinds,
            applied: tokio::sync::watch::channel(0).0,
        });
        let rev = mirror.reset(core, follower.as_ref()).await?;
        let (m, c) = (mirror.clone(), core.clone());
        core.tasks
            .spawn(async move { m.follow(c, follower, rev).await });
        Ok(mirror)
    }

    /// The last revision applied.
    pub fn applied(&self) -> Revision {
        *self.applied.borrow()
    }

    /// Waits until the copy reflects revision `rev`, at most `timeout`; whether it does.
    pub async fn caught_up(&self, rev: Revision, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|&a| a >= rev))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn reset(&self, core: &Core, follower: &dyn Follower) -> Result<Revision, ApiError> {
        let mut objects = Vec::new();
        let mut at = None;
        for kind in self.kinds {
            let page = core
                .storage
                .list(&kind.prefix(), 0, None, at, &|_| true)
                .await?;
            at = Some(page.rev);
            for o in page.items {
                let meta = |k: &str| {
                    o.pointer(&format!("/metadata/{k}"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                let key = kind.key(
                    meta("namespace").as_deref(),
                    &meta("name").unwrap_or_default(),
                );
                objects.push((key, o));
            }
        }
        let rev = at.unwrap_or(0);
        follower
            .apply(
                core,
                vec![Change::Reset {
                    prefix: self.prefix,
                    objects,
                }],
            )
            .await;
        self.applied.send_replace(rev);
        Ok(rev)
    }

    async fn follow(self: Arc<Self>, core: Core, follower: Arc<dyn Follower>, mut rev: Revision) {
        loop {
            let stream = tokio::select! {
                _ = core.cancel.cancelled() => return,
                s = core.storage.store.watch(self.prefix, rev + 1) => s,
            };
            if let Ok(mut stream) = stream {
                loop {
                    let first = tokio::select! {
                        _ = core.cancel.cancelled() => return,
                        e = stream.next() => e,
                    };
                    let Some(Ok(event)) = first else { break };
                    let mut events = vec![event];
                    // Take what else is ready, so a burst of writes costs one pass.
                    while events.len() < 1024
                        && let Some(Some(Ok(e))) = stream.next().now_or_never()
                    {
                        events.push(e);
                    }
                    let mut changes = Vec::with_capacity(events.len());
                    for e in events {
                        rev = rev.max(e.revision());
                        match e {
                            WatchEvent::Put { kv, .. } => match crate::storage::decode(&kv) {
                                Ok(v) => changes.push(Change::Put(kv.key, v)),
                                Err(err) => {
                                    tracing::warn!(key = %kv.key, error = %err, "mirror: undecodable object")
                                }
                            },
                            WatchEvent::Delete { prev, .. } => {
                                changes.push(Change::Delete(prev.key))
                            }
                            WatchEvent::Progress(_) => {}
                        }
                    }
                    if !changes.is_empty() {
                        follower.apply(&core, changes).await;
                    }
                    self.applied.send_replace(rev);
                }
            }
            // The watch ended (compaction, store restart): list again after a pause.
            tokio::select! {
                _ = core.cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            if let Ok(r) = self.reset(&core, follower.as_ref()).await {
                rev = r;
            }
        }
    }
}
