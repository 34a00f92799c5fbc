//! `timelines.podvisor.io/v1` Timeline: one object per pod UID, stored under
//! `/registry/timelines.podvisor.io/timelines/<namespace>/<pod uid>`, appended to by every
//! component that touches the pod, kept after the pod is gone until the timeline
//! controller prunes it (docs/design/0008-timeline.md).
//!
//! * Reads are the generic registry's (get, list, watch; RBAC as for pods, read-only); a
//!   get by a name that is not a timeline's resolves it as a pod name: the newest timeline
//!   of a pod of that name in the namespace.
//! * Writes: `POST …/timelines/{uid}/entries` (a `TimelineEntries` body) queues the entries
//!   in the API server's [`TimelineRecorder`] beside its own (created, bound, delete
//!   requested, removed); its writer appends each pod's batch through [`StoreSink`] and
//!   [`append`], one store write per pod per window. A node may
//!   append only to timelines of pods bound to it (`crate::auth::node`).
//! * `kubectl get timeline <pod>` asks for a Table: it gets one row per step, with the time
//!   relative to the first ([`steps_table`]); a list gets one row per timeline.

use std::sync::Arc;

use futures::future::BoxFuture;
use http::StatusCode;
use podvisor_kit::timeline::{self as tl, Entry, PodKey, Step, TimelineRecorder, TimelineSink};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::openapi::Definition;
use crate::ops::Core;
use crate::registry::TIMELINES;
use crate::request::{Ctx, Output, Target};
use crate::table::human_duration_secs;

/// The OpenAPI schemas of the group (podvisor's own, beside upstream's `definitions.tsv`).
pub static DEFINITIONS: &[Definition] = &[
    Definition {
        name: "io.podvisor.timelines.v1.Timeline",
        group: tl::GROUP,
        version: tl::VERSION,
        kind: "Timeline",
        schema: r##"{"description":"Timeline is the lifecycle record of one pod (by UID), kept after the pod is gone.","type":"object","properties":{"apiVersion":{"type":"string"},"kind":{"type":"string"},"metadata":{"$ref":"#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},"pod":{"description":"The pod: name, uid and the node it was bound to.","type":"object","properties":{"name":{"type":"string"},"uid":{"type":"string"},"nodeName":{"type":"string"}}},"entries":{"description":"The steps, in time order.","type":"array","items":{"$ref":"#/definitions/io.podvisor.timelines.v1.TimelineEntry"}},"removedAt":{"description":"When the pod object was removed (retention counts from here).","type":"string"},"droppedEntries":{"description":"Entries dropped to keep the timeline bounded.","type":"integer","format":"int64"},"writes":{"description":"Store writes made to this timeline.","type":"integer","format":"int64"}},"x-kubernetes-group-version-kind":[{"group":"timelines.podvisor.io","kind":"Timeline","version":"v1"}]}"##,
    },
    Definition {
        name: "io.podvisor.timelines.v1.TimelineEntry",
        group: "",
        version: "",
        kind: "",
        schema: r##"{"description":"One step of a pod's lifecycle.","type":"object","required":["time","component","step"],"properties":{"time":{"description":"RFC 3339 UTC time with microseconds, from the recording component's clock.","type":"string"},"component":{"type":"string"},"step":{"type":"string"},"container":{"type":"string"},"message":{"type":"string"},"details":{"type":"object","additionalProperties":{"type":"string"}},"count":{"type":"integer","format":"int32"},"lastTime":{"type":"string"}}}"##,
    },
    Definition {
        name: "io.podvisor.timelines.v1.TimelineList",
        group: tl::GROUP,
        version: tl::VERSION,
        kind: "TimelineList",
        schema: r##"{"description":"TimelineList is a list of Timelines.","type":"object","required":["items"],"properties":{"apiVersion":{"type":"string"},"kind":{"type":"string"},"metadata":{"$ref":"#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"},"items":{"type":"array","items":{"$ref":"#/definitions/io.podvisor.timelines.v1.Timeline"}}},"x-kubernetes-group-version-kind":[{"group":"timelines.podvisor.io","kind":"TimelineList","version":"v1"}]}"##,
    },
];

/// Longest message or detail value accepted in an appended entry (characters).
const MAX_TEXT: usize = 1024;
/// Most details of one entry.
const MAX_DETAILS: usize = 16;
/// Attempts of the read-merge-write of one append against concurrent appends.
const ATTEMPTS: usize = 32;

/// Appends `entries` to `pod`'s timeline (creating it), in one store write: merged in time
/// order, repeats folded, bounded ([`tl::merge`]). A `Bound` entry names the node, a
/// `Removed` entry sets `removedAt` (where the retention counts from).
pub async fn append(core: &Core, pod: &PodKey, entries: Vec<Entry>) -> Result<Value, ApiError> {
    let ns = Some(pod.namespace.as_str());
    for _ in 0..ATTEMPTS {
        let current = core.storage.get(&TIMELINES, ns, &pod.uid).await?;
        let (mut obj, rev) = match current {
            Some((obj, rev)) => (obj, Some(rev)),
            None => (
                json!({
                    "apiVersion": tl::API_VERSION,
                    "kind": "Timeline",
                    "metadata": {
                        "name": pod.uid,
                        "namespace": pod.namespace,
                        "uid": uuid::Uuid::new_v4().to_string(),
                        "creationTimestamp": core.now_str(),
                    },
                    "pod": {"name": pod.name, "uid": pod.uid},
                    "entries": [],
                }),
                None,
            ),
        };
        apply(&mut obj, entries.clone());
        match rev {
            None => match core.storage.create(&TIMELINES, ns, &pod.uid, &obj).await {
                Ok(v) => return Ok(v),
                Err(e) if e.reason == "AlreadyExists" => continue,
                Err(e) => return Err(e),
            },
            Some(rev) => {
                if let Ok(v) = core
                    .storage
                    .update(&TIMELINES, ns, &pod.uid, &obj, rev)
                    .await?
                {
                    return Ok(v);
                }
            }
        }
    }
    Err(ApiError::conflict(
        &TIMELINES,
        &pod.uid,
        "too many concurrent updates; please try again",
    ))
}

/// Merges `new` into the stored object `obj` (pure; [`append`]'s body).
fn apply(obj: &mut Value, new: Vec<Entry>) {
    let mut list: Vec<Entry> = obj
        .get("entries")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    for e in &new {
        match e.step {
            Step::Bound | Step::Scheduled => {
                if let Some(node) = e.details.get("node") {
                    obj["pod"]["nodeName"] = Value::from(node.clone());
                }
            }
            Step::Removed => obj["removedAt"] = Value::from(e.time.clone()),
            _ => {}
        }
    }
    let merged = tl::merge(&mut list, new);
    if merged.dropped > 0 {
        let before = obj["droppedEntries"].as_u64().unwrap_or(0);
        obj["droppedEntries"] = Value::from(before + merged.dropped as u64);
    }
    obj["writes"] = Value::from(obj["writes"].as_u64().unwrap_or(0) + 1);
    obj["entries"] = serde_json::to_value(list).unwrap_or_else(|_| json!([]));
}

/// The API server's own entries, written straight to the store (no HTTP round trip).
#[derive(Clone)]
pub struct StoreSink(pub Core);

impl TimelineSink for StoreSink {
    fn append(&self, pod: PodKey, entries: Vec<Entry>) -> BoxFuture<'static, Result<(), String>> {
        let core = self.0.clone();
        Box::pin(async move {
            append(&core, &pod, entries)
                .await
                .map(|_| ())
                .map_err(|e| e.message)
        })
    }
}

/// Starts the API server's recorder (component `kube-apiserver`) and its writer, which
/// runs until `core.cancel`. `enabled` false: a disabled recorder.
pub fn start(core: &Core, enabled: bool) -> TimelineRecorder {
    if !enabled {
        return TimelineRecorder::disabled();
    }
    let (rec, queue) = TimelineRecorder::new("kube-apiserver", core.clock.clone());
    core.tasks.spawn(tl::run_writer(
        queue,
        Arc::new(StoreSink(core.clone())),
        tl::DEFAULT_WINDOW,
        core.cancel.clone(),
    ));
    rec
}

/// The pod of a pod object.
pub fn pod_key(pod: &Value) -> PodKey {
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    PodKey {
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name"),
        uid: s("/metadata/uid"),
    }
}

/// Records a deletion request of `pod` (its state after the request) by `user`: the grace
/// asked for, else the one in force; `how` is `delete` or `eviction`.
pub fn record_delete_request(
    core: &Core,
    user: &str,
    pod: &Value,
    opts: &crate::ops::DeleteOptions,
    how: &str,
) {
    let grace = opts
        .grace_period_seconds
        .or_else(|| {
            pod.pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(0);
    core.timeline.record(
        &pod_key(pod),
        Step::DeleteRequested,
        None,
        format!("{how} requested by {user} with grace {grace}s"),
        &[
            ("user", user.to_string()),
            ("grace", grace.to_string()),
            ("via", how.to_string()),
        ],
    );
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// Checks one appended entry (bounded, well formed).
fn check_entry(e: &Entry) -> Result<(), ApiError> {
    if tl::parse_micros(&e.time).is_none() {
        return Err(bad(format!(
            "entry time {:?} is not an RFC 3339 time",
            e.time
        )));
    }
    if e.component.is_empty() || e.component.len() > 253 {
        return Err(bad("entry component must be 1 to 253 characters"));
    }
    let long = |s: &str| s.chars().count() > MAX_TEXT;
    if long(&e.message)
        || e.container.as_deref().is_some_and(long)
        || e.details.len() > MAX_DETAILS
        || e.details.iter().any(|(k, v)| long(k) || long(v))
    {
        return Err(bad(format!(
            "entry too large: at most {MAX_TEXT} characters per text and {MAX_DETAILS} details"
        )));
    }
    Ok(())
}

/// `POST …/namespaces/{ns}/timelines/{uid}/entries`: takes a `TimelineEntries` body (`pod`
/// with the same namespace and UID as the path, at most [`tl::MAX_ENTRIES`] entries) into
/// the server's recorder, which appends it with the server's own entries of the pod in the
/// next window; answers `202 Accepted` (entries are lost if the server stops within the
/// window, as a flight recorder may).
pub async fn serve_entries(
    ctx: &mut Ctx,
    t: &Target,
) -> Result<axum::response::Response, ApiError> {
    let bytes = ctx.body_bytes().await?;
    let body: Value = crate::decode::json(&bytes).map_err(|e| bad(e.to_string()))?;
    let pod: PodKey = serde_json::from_value(body.get("pod").cloned().unwrap_or(Value::Null))
        .map_err(|e| bad(format!("pod: {e}")))?;
    let entries: Vec<Entry> =
        serde_json::from_value(body.get("entries").cloned().unwrap_or(Value::Null))
            .map_err(|e| bad(format!("entries: {e}")))?;
    let uid = t.name.clone().unwrap_or_default();
    let ns = t.namespace.clone().unwrap_or_default();
    if pod.uid != uid || pod.namespace != ns {
        return Err(bad(format!(
            "the pod of the entries ({}/{}) does not match the URL ({ns}/{uid})",
            pod.namespace, pod.uid
        )));
    }
    if pod.name.is_empty() || pod.name.len() > 253 {
        return Err(bad("pod.name must be 1 to 253 characters"));
    }
    if entries.is_empty() || entries.len() > tl::MAX_ENTRIES {
        return Err(bad(format!(
            "entries: 1 to {} entries per append",
            tl::MAX_ENTRIES
        )));
    }
    for e in &entries {
        check_entry(e)?;
    }
    // Queued with the server's own entries: one store write per pod per window for every
    // component together.
    let core = ctx.srv.core();
    for e in entries {
        core.timeline.enqueue(&pod, e);
    }
    Ok(ctx.respond(
        StatusCode::ACCEPTED,
        &crate::error::success_status(None, Some(202)),
        Output::Json,
    ))
}

/// The newest timeline in `ns` of a pod named `name` (a get by pod name).
pub async fn find_by_pod_name(core: &Core, ns: &str, name: &str) -> Result<Value, ApiError> {
    let page = core
        .storage
        .list(&TIMELINES.list_prefix(Some(ns)), 0, None, None, &|o| {
            o.pointer("/pod/name").and_then(Value::as_str) == Some(name)
        })
        .await?;
    page.items
        .into_iter()
        .max_by(|a, b| first_time(a).cmp(&first_time(b)))
        .ok_or_else(|| ApiError::not_found(&TIMELINES, name))
}

fn entries_of(obj: &Value) -> &[Value] {
    obj.get("entries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn first_time(obj: &Value) -> String {
    entries_of(obj)
        .first()
        .and_then(|e| e.get("time"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// `+1.234567s` after `t0` (micros).
fn relative(t0: i64, t: i64) -> String {
    let d = t - t0;
    let sign = if d < 0 { "-" } else { "+" };
    let d = d.unsigned_abs();
    format!("{sign}{}.{:06}s", d / 1_000_000, d % 1_000_000)
}

/// One line of details (`exitCode=137 signal=9`).
fn details_line(e: &Value) -> String {
    e.get("details")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The Table of one timeline: one row per step (`TIME` relative to the first entry,
/// `COMPONENT`, `STEP`, `CONTAINER`, `DETAILS`, `MESSAGE`; `-o wide` adds the absolute
/// time and the repeat count).
pub fn steps_table(obj: &Value) -> Value {
    let entries = entries_of(obj);
    let t0 = entries
        .first()
        .and_then(|e| e.get("time"))
        .and_then(Value::as_str)
        .and_then(tl::parse_micros)
        .unwrap_or(0);
    let meta = crate::table::partial_object_metadata(obj);
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let t = tl::parse_micros(&s("time")).unwrap_or(t0);
            let container = s("container");
            json!({
                "cells": [
                    relative(t0, t),
                    s("component"),
                    s("step"),
                    if container.is_empty() { "<none>".to_string() } else { container },
                    details_line(e),
                    s("message"),
                    s("time"),
                    e.get("count").and_then(Value::as_u64).unwrap_or(1),
                ],
                "object": meta,
            })
        })
        .collect();
    let col = |name: &str, ty: &str, desc: &str, priority: u8| json!({"name": name, "type": ty, "format": "", "description": desc, "priority": priority});
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)},
        "columnDefinitions": [
            col("Time", "string", "Time of the step relative to the first step of the timeline.", 0),
            col("Component", "string", "The component that recorded the step.", 0),
            col("Step", "string", "What happened.", 0),
            col("Container", "string", "The container the step is about.", 0),
            col("Details", "string", "The step's typed details.", 0),
            col("Message", "string", "A human-readable description.", 0),
            col("At", "string", "The absolute time (UTC, microseconds) of the step.", 1),
            col("Count", "integer", "How many consecutive repeats the row stands for.", 1),
        ],
        "rows": rows,
    })
}

/// The `Steps` cell of a list row.
pub fn steps_cell(obj: &Value, _now: jiff::Timestamp) -> Value {
    Value::from(entries_of(obj).len())
}

/// The `Last Step` cell of a list row.
pub fn last_step_cell(obj: &Value, _now: jiff::Timestamp) -> Value {
    entries_of(obj)
        .last()
        .and_then(|e| e.get("step"))
        .cloned()
        .unwrap_or_else(|| Value::from("<none>"))
}

/// The `Duration` cell of a list row: first to last step.
pub fn duration_cell(obj: &Value, _now: jiff::Timestamp) -> Value {
    let es = entries_of(obj);
    let at = |e: Option<&Value>| {
        e.and_then(|e| e.get("time"))
            .and_then(Value::as_str)
            .and_then(tl::parse_micros)
    };
    match (at(es.first()), at(es.last())) {
        (Some(a), Some(b)) => Value::from(human_duration_secs(((b - a) / 1_000_000).max(0))),
        _ => Value::from("<none>"),
    }
}

/// The `Pod` cell: the pod's name, with `(removed)` once it is gone.
pub fn pod_cell(obj: &Value, _now: jiff::Timestamp) -> Value {
    let name = obj
        .pointer("/pod/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if obj.get("removedAt").is_some_and(|v| !v.is_null()) {
        Value::from(format!("{name} (removed)"))
    } else {
        Value::from(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(time: &str, step: Step, details: &[(&str, &str)]) -> Entry {
        Entry {
            time: time.into(),
            component: "kube-apiserver".into(),
            step,
            container: None,
            message: String::new(),
            details: details
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            count: None,
            last_time: None,
        }
    }

    #[test]
    fn apply_records_node_removal_and_writes() {
        let mut obj = json!({"pod": {"name": "web", "uid": "u"}, "entries": []});
        apply(
            &mut obj,
            vec![
                entry("2026-01-01T00:00:00.000000Z", Step::Created, &[]),
                entry(
                    "2026-01-01T00:00:00.000100Z",
                    Step::Bound,
                    &[("node", "n1")],
                ),
            ],
        );
        apply(
            &mut obj,
            vec![entry("2026-01-01T00:00:09.000000Z", Step::Removed, &[])],
        );
        assert_eq!(obj["pod"]["nodeName"], "n1");
        assert_eq!(obj["removedAt"], "2026-01-01T00:00:09.000000Z");
        assert_eq!(obj["writes"], 2);
        assert_eq!(obj["entries"].as_array().map(Vec::len), Some(3));
        assert_eq!(pod_cell(&obj, jiff::Timestamp::UNIX_EPOCH), "web (removed)");
        assert_eq!(duration_cell(&obj, jiff::Timestamp::UNIX_EPOCH), "9s");
    }

    #[test]
    fn the_steps_table_is_relative_to_the_first_step() {
        let mut obj = json!({"metadata": {"name": "u", "namespace": "default"}, "entries": []});
        apply(
            &mut obj,
            vec![
                entry(
                    "2026-01-01T00:00:00.500000Z",
                    Step::Created,
                    &[("user", "admin")],
                ),
                entry(
                    "2026-01-01T00:00:03.750001Z",
                    Step::Killed,
                    &[("lateMs", "3")],
                ),
            ],
        );
        let t = steps_table(&obj);
        let rows = t["rows"].as_array().unwrap();
        assert_eq!(rows[0]["cells"][0], "+0.000000s");
        assert_eq!(rows[0]["cells"][2], "Created");
        assert_eq!(rows[0]["cells"][4], "user=admin");
        assert_eq!(rows[1]["cells"][0], "+3.250001s");
        assert_eq!(rows[1]["cells"][2], "Killed");
    }

    #[test]
    fn appended_entries_are_bounded() {
        let mut e = entry("2026-01-01T00:00:00Z", Step::Event, &[]);
        assert!(check_entry(&e).is_ok());
        e.message = "x".repeat(MAX_TEXT + 1);
        assert!(check_entry(&e).is_err());
        let bad_time = entry("yesterday", Step::Event, &[]);
        assert!(check_entry(&bad_time).is_err());
    }
}
