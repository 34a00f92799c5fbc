//! The timeline pruner (podvisor's own; docs/design/0008-timeline.md): deletes the
//! `timelines.podvisor.io/v1` Timelines of pods gone longer than the retention.
//!
//! Every `period` one pass: list the Timelines (a plain list: they are not cached), and for
//! each whose pod UID is not in the pod cache, delete it when the retention has passed
//! since the pod was removed (`removedAt`), or, when no removal was recorded (the server
//! stopped in between, or recording was off), since its newest entry. A delete that finds
//! the timeline gone (another pruner, a user) is not an error.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use podvisor_kit::timeline as tl;
use serde_json::Value;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::context::Ctx;

/// Settings of the timeline pruner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineGcConfig {
    /// How long a pod's timeline is kept after the pod is gone. Default 24 h.
    pub retention: Duration,
    /// How often the pruner runs. Default 1 minute (at most a quarter of the retention, at
    /// least 1 s).
    pub period: Duration,
}

impl Default for TimelineGcConfig {
    fn default() -> Self {
        TimelineGcConfig {
            retention: Duration::from_secs(24 * 3600),
            period: Duration::from_secs(60),
        }
    }
}

impl TimelineGcConfig {
    /// The period actually used: `period`, but at most a quarter of the retention and at
    /// least one second.
    pub fn effective_period(&self) -> Duration {
        self.period
            .min(self.retention / 4)
            .max(Duration::from_secs(1))
    }
}

/// The ApiResource of timelines.
pub fn timelines_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(tl::GROUP, tl::VERSION, "Timeline"),
        "timelines",
    )
}

/// Whether `timeline` is due for deletion at `now`: its pod (by UID) is not `live` and the
/// retention has passed since `removedAt`, or without one, since its newest entry (or its
/// creation).
pub fn expired(
    timeline: &Value,
    live: &HashSet<String>,
    now: SystemTime,
    retention: Duration,
) -> bool {
    let uid = timeline
        .pointer("/pod/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if live.contains(uid) {
        return false;
    }
    let newest_entry = timeline
        .get("entries")
        .and_then(Value::as_array)
        .and_then(|es| es.last())
        .and_then(|e| e.get("lastTime").or_else(|| e.get("time")))
        .and_then(Value::as_str);
    let since = timeline
        .get("removedAt")
        .and_then(Value::as_str)
        .or(newest_entry)
        .or_else(|| {
            timeline
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
        })
        .and_then(tl::parse_micros);
    let Some(since) = since else {
        return false;
    };
    let now_micros = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    now_micros.saturating_sub(since) >= retention.as_micros() as i64
}

/// Runs the pruner until `shutdown`.
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.config.timeline_gc.effective_period());
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => prune(&ctx).await,
        }
    }
}

async fn prune(ctx: &Ctx) {
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &timelines_resource());
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            debug!(error = %e, "cannot list timelines");
            return;
        }
    };
    let live: HashSet<String> = ctx
        .pods
        .state()
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let now = ctx.config.clock.now();
    for t in list.items {
        let Ok(value) = serde_json::to_value(&t) else {
            continue;
        };
        if !expired(&value, &live, now, ctx.config.timeline_gc.retention) {
            continue;
        }
        let (Some(ns), Some(name)) = (t.metadata.namespace.as_deref(), t.metadata.name.as_deref())
        else {
            continue;
        };
        let ns_api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &timelines_resource());
        match ns_api.delete(name, &DeleteParams::default()).await {
            Ok(_) => debug!(namespace = ns, timeline = name, "timeline pruned"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => warn!(namespace = ns, timeline = name, error = %e, "cannot prune timeline"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podvisor_kit::WallClock;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn timelines_expire_a_retention_after_removal_under_paused_time() {
        let clock = WallClock::tokio(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let retention = Duration::from_secs(120);
        let stamp = |c: &WallClock| tl::format_time(c.now());
        let removed = json!({"pod": {"uid": "gone"}, "removedAt": stamp(&clock),
            "entries": [{"time": stamp(&clock), "component": "c", "step": "Removed"}]});
        let running = json!({"pod": {"uid": "live"},
            "entries": [{"time": stamp(&clock), "component": "c", "step": "Created"}]});
        let live: HashSet<String> = ["live".to_string()].into();
        tokio::time::sleep(Duration::from_secs(119)).await;
        assert!(!expired(&removed, &live, clock.now(), retention));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(expired(&removed, &live, clock.now(), retention));
        // a live pod's timeline is kept whatever its age
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        assert!(!expired(&running, &live, clock.now(), retention));
        // without a recorded removal, the newest entry counts
        let unrecorded = json!({"pod": {"uid": "x"}, "entries": [
            {"time": stamp(&clock), "component": "c", "step": "Created"}]});
        assert!(!expired(&unrecorded, &live, clock.now(), retention));
        tokio::time::sleep(retention).await;
        assert!(expired(&unrecorded, &live, clock.now(), retention));
    }

    #[test]
    fn the_period_follows_a_short_retention() {
        let c = TimelineGcConfig {
            retention: Duration::from_secs(20),
            ..TimelineGcConfig::default()
        };
        assert_eq!(c.effective_period(), Duration::from_secs(5));
        assert_eq!(
            TimelineGcConfig::default().effective_period(),
            Duration::from_secs(60)
        );
    }
}
