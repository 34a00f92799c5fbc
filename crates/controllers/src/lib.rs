//! podvisor controllers, all API clients on `kube`: the ReplicaSet, Deployment, StatefulSet
//! [Job](job) and [CronJob](cronjob) controllers, a background garbage collector, and node failure handling: the
//! [node lifecycle controller](nodelifecycle) (heartbeats, `Unknown` conditions, taints,
//! zone disruption), the [taint eviction controller](tainteviction) (NoExecute),
//! [PodGC](podgc), the [horizontal pod autoscaler](hpa) (a periodic loop, every 15 s), the
//! [node IPAM controller](nodeipam) (podCIDRs) and the cluster DNS's
//! objects ([kubedns]: the `kube-dns` Service and its per-node EndpointSlices), and the
//! PersistentVolume controller (`pvcontroller`: binding, reclaim, protection finalizers)
//! with the built-in node-local provisioner (`provision`).
//!
//! # How they run
//!
//! [`ControllerManager::run`] starts one reflector (list + watch, all namespaces) per kind:
//! pods, ReplicaSets, Deployments, StatefulSets, Jobs, CronJobs, Nodes and node Leases (`kube-node-lease`). Each watch event first updates the cache,
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
//! The node lifecycle controller and PodGC are periodic loops over the caches rather than
//! work queues; the taint eviction controller has queues for nodes and pods and a delayed
//! queue of due evictions.
//!
//! Exactly one manager may act per cluster: `podvisor server` runs [`ControllerManager::run`]
//! under a Lease election (`kube-system/kube-controller-manager`), one term per leadership,
//! each term starting from empty caches. Two managers acting at once would not corrupt
//! objects (resourceVersion fencing, name-based creates) but ReplicaSets could briefly
//! over-create and node health would be judged twice.

mod context;
mod cron;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
pub mod endpoints;
pub mod endpointslice;
mod evictions;
mod expectations;
mod gc;
mod hpa;
mod job;
pub mod kubedns;
mod manager;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
mod pods;
mod provision;
mod pvcontroller;
mod queue;
mod replicaset;
mod replicationcontroller;
mod resourcequota;
pub mod serviceaccounts;
mod statefulset;
pub mod tainteviction;
pub mod timelinegc;

pub use context::{ControllerConfig, ControllerError, NodeLifecycleConfig, PodGcConfig};
pub use manager::ControllerManager;
