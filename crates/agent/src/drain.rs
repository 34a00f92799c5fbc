//! The drain barrier: a terminating pod leaves every node's load balancer before its
//! containers hear of it (docs/design/0006-drain-barrier.md).
//!
//! # Acknowledgements
//!
//! Each node's proxy, after programming its dataplane from the EndpointSlices it has seen,
//! calls [`ProxyAck::applied`] with the highest EndpointSlice `resourceVersion` its rules
//! reflect. The agent writes it, coalesced, to its own Node as the annotation
//! [`ACK_ANNOTATION`] (a node may write its own Node). Store revisions are one global,
//! increasing counter (the store's etcd contract), so one number per node says "every slice
//! change up to here is in my rules".
//!
//! # The wait ([`wait`])
//!
//! ```text
//!  termination starts ─▶ every slice with the pod shows it not ready ─▶ every live node's ack
//!                        (or the pod is in no slice: no wait)             ≥ those slices' versions
//!                        and another endpoint is ready                      ─▶ preStop, stop signal
//! ```
//!
//! * Another endpoint ready: when a Service has no other ready endpoint, proxies fall back to
//!   its terminating ones (ProxyTerminatingEndpoints) — this pod. If another endpoint of the
//!   Service is starting (not ready, not terminating: a rolling update's new pod that the
//!   EndpointSlice controller has not marked ready yet), the wait goes on until it is ready
//!   in the slices and every node acknowledged that; with none starting there is nothing to
//!   wait for. The versions waited for are those of every slice of the pod's Services.
//! * Live nodes: Ready and acknowledging (a node without a proxy has nothing to drain).
//! * Bounded: [`DEFAULT_BOUND`] (5 s) but never more than half the grace period, counted in
//!   the grace period; cut short when the deadline moves. The outcome is an event:
//!   `EndpointsDrained` with the time it took, or the warning `EndpointsNotDrained` naming
//!   what was still pending at the bound.
//! * Opt-out: the pod annotation [`OPT_OUT_ANNOTATION`]`: "false"`; a resumed termination
//!   (the stop signal already went out before an agent restart) does not wait again.
//!
//! [`check`] is the pure rule; [`wait`] the loop over a [`DrainView`] (the agent's watch caches
//! of EndpointSlices and Nodes, or a test's fake under paused time).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Level;

/// The Node annotation carrying the highest EndpointSlice resourceVersion the node's proxy
/// has programmed.
pub const ACK_ANNOTATION: &str = "proxy.podvisor.io/endpointslices-applied";
/// The pod annotation that turns the barrier off for a pod (`"false"`).
pub const OPT_OUT_ANNOTATION: &str = "podvisor.io/drain-before-stop";
/// The longest wait (never more than half the grace period).
pub const DEFAULT_BOUND: Duration = Duration::from_secs(5);
/// The event reason of a completed drain.
pub const DRAINED: &str = "EndpointsDrained";
/// The warning reason of a drain cut at its bound.
pub const NOT_DRAINED: &str = "EndpointsNotDrained";

/// What the barrier waits for at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The agent has not listed EndpointSlices and Nodes yet (just started): wait.
    NotListed,
    /// The pod is in no EndpointSlice: nothing to wait for.
    NotAnEndpoint,
    /// Slices still show the pod ready (the EndpointSlice controller has not caught up).
    SlicesPending(Vec<String>),
    /// These Services have no other endpoint ready but one starting: until it is ready the
    /// proxies keep sending to the terminating pod (their fallback to terminating endpoints).
    NoOtherReady(Vec<String>),
    /// These nodes' proxies have not applied the slices' versions yet.
    NodesPending(Vec<String>),
    /// Every live node's proxy applied a version without the pod ready.
    Drained,
}

/// The bound of the wait for a pod with `grace` seconds of grace.
pub fn bound(grace: Duration) -> Duration {
    DEFAULT_BOUND.min(grace / 2)
}

/// Whether the pod takes part (not opted out).
pub fn enabled(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OPT_OUT_ANNOTATION))
        .is_none_or(|v| v != "false")
}

fn revision(rv: Option<&String>) -> u64 {
    rv.and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label; a slice
/// without one stands alone).
fn service_of(s: &EndpointSlice) -> String {
    let ns = s.metadata.namespace.as_deref().unwrap_or_default();
    match s
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/service-name"))
    {
        Some(svc) => format!("{ns}/{svc}"),
        None => format!("{ns}/{}", s.metadata.name.as_deref().unwrap_or_default()),
    }
}

fn slice_name(s: &EndpointSlice) -> String {
    format!(
        "{}/{}",
        s.metadata.namespace.as_deref().unwrap_or_default(),
        s.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The rule: see the module documentation. `uid` and `ips` identify the pod's endpoints
/// (by `targetRef.uid`, else by address).
pub fn check(
    uid: &str,
    ips: &[String],
    slices: &[Arc<EndpointSlice>],
    nodes: &[Arc<Node>],
) -> Check {
    use k8s_openapi::api::discovery::v1::Endpoint;
    let is_mine = |e: &Endpoint| match e.target_ref.as_ref().and_then(|r| r.uid.as_deref()) {
        Some(u) => u == uid,
        None => e.addresses.iter().any(|a| ips.contains(a)),
    };
    let cond = |e: &Endpoint| e.conditions.clone().unwrap_or_default();
    // The Services the pod is an endpoint of, each with all of its slices.
    let services: std::collections::BTreeSet<String> = slices
        .iter()
        .filter(|s| s.endpoints.iter().any(is_mine))
        .map(|s| service_of(s))
        .collect();
    if services.is_empty() {
        return Check::NotAnEndpoint;
    }
    let mut needed = 0u64;
    let mut pending = Vec::new();
    let mut takeover = Vec::new();
    for svc in &services {
        let group: Vec<&Arc<EndpointSlice>> =
            slices.iter().filter(|s| &service_of(s) == svc).collect();
        let (mut other_ready, mut other_coming) = (false, false);
        for s in &group {
            needed = needed.max(revision(s.metadata.resource_version.as_ref()));
            for e in &s.endpoints {
                let c = cond(e);
                if is_mine(e) {
                    // unset counts as ready, as the proxies read it
                    if c.ready != Some(false) {
                        pending.push(slice_name(s));
                    }
                } else if c.ready.unwrap_or(true) {
                    other_ready = true;
                } else if !c.terminating.unwrap_or(false) {
                    other_coming = true;
                }
            }
        }
        // With no other endpoint ready the proxies fall back to terminating ones — this
        // pod among them (ProxyTerminatingEndpoints): wait for a starting one to take over.
        if !other_ready && other_coming {
            takeover.push(svc.clone());
        }
    }
    if !pending.is_empty() {
        pending.dedup();
        return Check::SlicesPending(pending);
    }
    if !takeover.is_empty() {
        return Check::NoOtherReady(takeover);
    }
    let behind: Vec<String> = nodes
        .iter()
        .filter(|n| node_ready(n))
        .filter_map(|n| {
            let ack = n.metadata.annotations.as_ref()?.get(ACK_ANNOTATION)?;
            (revision(Some(ack)) < needed).then(|| n.metadata.name.clone().unwrap_or_default())
        })
        .collect();
    if behind.is_empty() {
        Check::Drained
    } else {
        Check::NodesPending(behind)
    }
}

/// EndpointSlices and Nodes at one moment.
pub type Snapshot = (Vec<Arc<EndpointSlice>>, Vec<Arc<Node>>);

/// The caches the wait reads.
pub trait DrainView: Send + Sync {
    /// The EndpointSlices of `namespace` and every Node, now; None until both are listed.
    fn snapshot(&self, namespace: &str) -> Option<Snapshot>;
    /// Bumped on every change of either.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The pod is in no EndpointSlice, or opted out: no wait, no event.
    Skipped,
    /// Drained after this long.
    Drained(Duration),
    /// The bound was hit with this still pending.
    TimedOut(Check),
}

/// Waits until [`check`] says drained (or not an endpoint), at most `bound`.
pub async fn wait(view: &dyn DrainView, pod: &Pod, ips: &[String], bound: Duration) -> Outcome {
    let started = Instant::now();
    let until = started + bound;
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut changes = view.changes();
    loop {
        changes.borrow_and_update();
        let now = match view.snapshot(namespace) {
            Some((slices, nodes)) => check(uid, ips, &slices, &nodes),
            None => Check::NotListed,
        };
        match now {
            Check::NotAnEndpoint => return Outcome::Skipped,
            Check::Drained => return Outcome::Drained(started.elapsed()),
            pending => {
                tokio::select! {
                    r = changes.changed() => if r.is_err() {
                        tokio::time::sleep_until(until).await;
                        return Outcome::TimedOut(pending);
                    },
                    _ = tokio::time::sleep_until(until) => return Outcome::TimedOut(pending),
                }
            }
        }
    }
}

/// The event for an outcome: (warning?, reason, message); None for [`Outcome::Skipped`].
pub fn event(outcome: &Outcome, bound: Duration) -> Option<(bool, &'static str, String)> {
    match outcome {
        Outcome::Skipped => None,
        Outcome::Drained(took) => Some((
            false,
            DRAINED,
            format!(
                "Removed from the endpoints of every node in {}ms before stopping",
                took.as_millis()
            ),
        )),
        Outcome::TimedOut(pending) => {
            let what = match pending {
                Check::SlicesPending(s) => format!("EndpointSlices still ready: {}", s.join(", ")),
                Check::NoOtherReady(s) => {
                    format!("no other endpoint ready yet in Services {}", s.join(", "))
                }
                Check::NodesPending(n) => format!("nodes not yet updated: {}", n.join(", ")),
                Check::NotListed => "EndpointSlices and Nodes not yet listed".to_string(),
                _ => String::new(),
            };
            Some((
                true,
                NOT_DRAINED,
                format!(
                    "Endpoints not drained within {}ms ({what}); stopping anyway",
                    bound.as_millis()
                ),
            ))
        }
    }
}

/// The agent's caches of EndpointSlices and Nodes for [`wait`].
pub struct KubeDrainView {
    slices: kube::runtime::reflector::Store<EndpointSlice>,
    nodes: kube::runtime::reflector::Store<Node>,
    changes: watch::Sender<u64>,
}

impl DrainView for KubeDrainView {
    fn snapshot(&self, namespace: &str) -> Option<Snapshot> {
        use futures::FutureExt as _;
        let listed = |r: Option<Result<(), _>>| r.is_some_and(|r| r.is_ok());
        if !listed(self.slices.wait_until_ready().now_or_never())
            || !listed(self.nodes.wait_until_ready().now_or_never())
        {
            return None;
        }
        let slices = self
            .slices
            .state()
            .into_iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        Some((slices, self.nodes.state()))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl KubeDrainView {
    /// Starts the watches on `tasks` (stopped by `stop`).
    pub fn start(
        client: &kube::Client,
        tasks: &mut tokio::task::JoinSet<()>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Arc<KubeDrainView> {
        use kube::runtime::reflector;
        let (slices, slices_w) = reflector::store::<EndpointSlice>();
        let (nodes, nodes_w) = reflector::store::<Node>();
        let (changes, _) = watch::channel(0u64);
        let view = Arc::new(KubeDrainView {
            slices,
            nodes,
            changes,
        });
        let bump = {
            let view = view.clone();
            move || view.changes.send_modify(|n| *n = n.wrapping_add(1))
        };
        tasks.spawn(follow(
            kube::Api::all(client.clone()),
            slices_w,
            bump.clone(),
            stop.clone(),
        ));
        tasks.spawn(follow(kube::Api::all(client.clone()), nodes_w, bump, stop));
        view
    }
}

async fn follow<K: podvisor_kit::reflect::Cached>(
    api: kube::Api<K>,
    writer: kube::runtime::reflector::store::Writer<K>,
    bump: impl Fn() + Send + 'static,
    stop: tokio_util::sync::CancellationToken,
) {
    let config = kube::runtime::watcher::Config::default();
    let on_event = move |_| bump();
    let follow =
        podvisor_kit::reflect::reflect(api, config, writer, "drain", Level::DEBUG, on_event);
    stop.run_until_cancelled(follow).await;
}

/// The proxy's acknowledgement: [`ProxyAck::applied`] records the highest EndpointSlice
/// resourceVersion programmed ([`ProxyAck::follow`] takes it from the proxy's
/// [`crate::proxy::Proxy::applied`]); [`ProxyAck::run`] writes it to the Node (coalesced: one
/// patch at a time, the latest value; a failed write is retried).
#[derive(Clone)]
pub struct ProxyAck {
    applied: watch::Sender<u64>,
}

impl Default for ProxyAck {
    fn default() -> Self {
        ProxyAck {
            applied: watch::channel(0).0,
        }
    }
}

/// How long a failed acknowledgement write waits before it is retried.
const ACK_RETRY: Duration = Duration::from_millis(500);

impl ProxyAck {
    /// The proxy's rules reflect every EndpointSlice change up to `resource_version`.
    pub fn applied(&self, resource_version: u64) {
        self.applied.send_if_modified(|cur| {
            let newer = resource_version > *cur;
            if newer {
                *cur = resource_version;
            }
            newer
        });
    }

    /// Records every sync the proxy applies (its [`crate::proxy::Proxy::applied`]) until the
    /// proxy stops or `stop`.
    pub async fn follow(
        self,
        mut proxy: watch::Receiver<crate::proxy::Applied>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let rv = proxy.borrow_and_update().resource_version;
            self.applied(rv);
            tokio::select! {
                _ = stop.cancelled() => return,
                r = proxy.changed() => if r.is_err() { return },
            }
        }
    }

    /// Writes the acknowledgements to Node `node` until `stop`.
    pub async fn run(
        self,
        client: kube::Client,
        node: String,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let api: kube::Api<Node> = kube::Api::all(client);
        let mut rx = self.applied.subscribe();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = rx.changed() => if r.is_err() { return },
            }
            loop {
                let rv = *rx.borrow_and_update();
                match patch_ack(&api, &node, Some(rv)).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "drain: cannot write the proxy's acknowledgement; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(ACK_RETRY) => {}
                        }
                    }
                }
            }
        }
    }

    /// Removes the acknowledgement from Node `node` (the node runs no proxy: an old value
    /// would make every drain wait for it until the bound).
    pub async fn withdraw(client: kube::Client, node: String) {
        if let Err(e) = patch_ack(&kube::Api::all(client), &node, None).await {
            tracing::debug!(error = %e, "drain: cannot remove the proxy's acknowledgement");
        }
    }
}

async fn patch_ack(api: &kube::Api<Node>, node: &str, rv: Option<u64>) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"metadata": {"annotations": {
        ACK_ANNOTATION: rv.map(|rv| rv.to_string()),
    }}});
    api.patch(
        node,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .map(drop)
}

#[cfg(test)]
#[path = "drain_tests.rs"]
mod tests;
