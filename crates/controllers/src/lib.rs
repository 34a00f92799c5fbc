//! podvisor controllers, all API clients on `kube`: the ReplicaSet, Deployment and
//! StatefulSet controllers and a background garbage collector.
//!
//! # How they run
//!
//! [`ControllerManager::run`] starts one reflector (list + watch, all namespaces) per kind:
//! pods, ReplicaSets, Deployments, StatefulSets. Each watch event first updates the cache,
//! then maps the object to the keys it affects (a pod to its controller, an orphan pod to the
//! owners whose selector matches it, a ReplicaSet to its Deployment, a deleted owner to the
//! garbage collector) and adds them to that controller's [work queue](queue). Workers take
//! keys from the queues; a key is never processed by two workers at once. Every reconcile is
//! level-triggered: it reads the whole desired and observed state from the caches and acts
//! on the difference, so a lost or merged event costs nothing but latency. Creates and
//! deletes in flight are tracked as [expectations](expectations) so that a lagging cache
//! cannot make a controller act twice. Writes to objects the controller read from the
//! cache (scale, status, adoption) carry the cached `resourceVersion` and fail with 409 if
//! the object changed meanwhile; the key is then retried.
//!
//! There is no leader election: run one controller manager per cluster (`podvisor up` and a
//! single `podvisor server` do). Two managers would both act, and the resourceVersion
//! fencing and name-based creates keep them from corrupting objects, but ReplicaSets could
//! briefly over-create.

mod deployment;
mod expectations;
mod gc;
mod manager;
mod pods;
mod queue;
mod replicaset;
mod statefulset;

pub use manager::{Clock, ControllerConfig, ControllerError, ControllerManager};
