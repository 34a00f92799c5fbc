//! core/v1 Events for pods (`Scheduled`, `FailedScheduling`), written off the scheduling
//! path by the shared bounded recorder ([`podvisor_kit::events`]).
//!
//! The scheduling loop calls [`EventRecorder::record`], which never blocks: the event goes
//! into a bounded queue of [`EVENT_QUEUE_CAPACITY`], and a writer writes up to
//! [`EVENT_CONCURRENCY`] at once. When the queue is full the event is dropped and counted.
//! Repeats of the same pod, reason and message are aggregated like client-go's legacy
//! recorder: the first creates `<pod>.<hex nanos>`, later ones patch `count` and
//! `lastTimestamp`. Each scheduling term has its own recorder; the term ends by dropping it
//! and letting the writer drain.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use podvisor_kit::WallClock;
use podvisor_kit::events::{
    EventRecord, EventRecorder, EventStats, EventType, EventWriter, RecorderConfig, Reporter,
};

use crate::cache::PodInfo;

/// Capacity of the event queue.
pub const EVENT_QUEUE_CAPACITY: usize = 16_384;
/// Events written at the same time (few: events must not compete with binds for the API;
/// upstream's broadcaster writes them one at a time).
pub const EVENT_CONCURRENCY: usize = 4;

/// The scheduler's recorder (reporting as `component`/`instance`) and its writer.
pub fn recorder(
    client: kube::Client,
    component: String,
    instance: String,
    clock: WallClock,
    stats: Arc<EventStats>,
) -> (EventRecorder, EventWriter) {
    EventRecorder::new(
        client,
        Reporter {
            component,
            instance,
            host: None,
        },
        clock,
        RecorderConfig {
            capacity: EVENT_QUEUE_CAPACITY,
            concurrency: EVENT_CONCURRENCY,
            aggregate: true,
            stats,
        },
    )
}

/// An event about `pod` as it was when the event happened (its resourceVersion included).
pub fn pod_event(
    pod: &PodInfo,
    type_: EventType,
    reason: &str,
    action: &str,
    message: String,
) -> EventRecord {
    EventRecord {
        object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            resource_version: pod.pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        type_,
        reason: reason.to_owned(),
        message,
        action: Some(action.to_owned()),
    }
}
