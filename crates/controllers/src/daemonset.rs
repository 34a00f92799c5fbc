//! The DaemonSet controller: one pod per eligible node.
//!
//! # Which nodes
//!
//! [`node_should_run`] is upstream's `NodeShouldRunDaemonPod`, on the pod the DaemonSet would
//! make for the node (the template plus the daemon tolerations of [`add_daemon_tolerations`]):
//! a pod template with a `nodeName` of another node, or a `nodeSelector`/required node
//! affinity the node does not match, means *not run, not continue running*; an untolerated
//! `NoSchedule`/`NoExecute` taint of `spec.taints` means *not run*, and *not continue
//! running* only when an untolerated taint is `NoExecute`. Otherwise both.
//!
//! # One reconcile (key `ns/name`)
//!
//! 1. **History.** The DaemonSet's ControllerRevisions (controller reference = its UID) are
//!    split into the *current* one (its `data` equals the DaemonSet's patch
//!    `{"spec":{"template":{…,"$patch":"replace"}}}`) and *old* ones. A missing current
//!    revision is created as `<ds>-<hash>` (hash of the template and `collisionCount`,
//!    labels = template labels + `controller-revision-hash`, the DaemonSet's annotations,
//!    revision = highest old + 1); a name taken by a different template bumps
//!    `status.collisionCount`. A current revision whose number is not the highest is
//!    renumbered (a rollback makes an old template current again). The pods' hash is the
//!    current revision's `controller-revision-hash`.
//! 2. **Claim** pods as the ReplicaSet controller does ([`crate::replicaset::claim_pods`]);
//!    each pod belongs to the node named by `spec.nodeName` or, before scheduling, by its
//!    `metadata.name In [node]` node affinity.
//! 3. **Manage**, only when the expectations are satisfied (creates and deletes seen in the
//!    cache): a node that should run and has no pod gets one (the template, the daemon
//!    tolerations, labels + hash + `pod-template-generation`, required node affinity
//!    replaced by `metadata.name In [node]`, so the scheduler binds it there); failed and
//!    succeeded pods are deleted
//!    (replaced once gone); extra running pods are deleted, keeping the oldest (with
//!    `maxSurge`, the oldest old and the oldest new); a node that should not continue
//!    running loses all its pods. Terminating pods are waited for: at most one pod per node
//!    unless surging.
//! 4. **Rolling update** (`updateStrategy: RollingUpdate`; `OnDelete` replaces a pod only
//!    when the user deletes it) as [`plan_rolling_update`]: without surge, old pods are
//!    deleted while at most `maxUnavailable` nodes lack an available pod (an unavailable old
//!    pod is replaced at once); with `maxSurge`, a new pod is created beside the old one on
//!    up to `maxSurge` nodes and the old pod goes when the new one is available. Both are
//!    resolved against `desiredNumberScheduled`, rounding up.
//! 5. **History cleanup**: old revisions beyond `revisionHistoryLimit` whose hash no pod
//!    carries are deleted, oldest first.
//! 6. **Status** ([`status_for`]): desired/current/misscheduled/ready/available/updated
//!    counts and `observedGeneration`, written when changed, with a requeue for pods that
//!    become available after `minReadySeconds`.
//!
//! A DaemonSet being deleted is left alone (the garbage collector removes its pods and
//! revisions). Node changes (labels, taints, new nodes) queue every DaemonSet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use podvisor_api::taints::{EFFECT_NO_EXECUTE, EFFECT_NO_SCHEDULE, TAINT_UNSCHEDULABLE, tolerates};
use podvisor_kit::events::EventType;
use serde_json::{Value, json};
use tracing::info;

use crate::context::{ControllerError, Ctx, Key, parse_selector, replace};
use crate::expectations::PodId;
use crate::pods::{self, PodName};

const COMPONENT: &str = "daemonset-controller";
/// The label naming the ControllerRevision a pod was made from.
pub(crate) const HASH_LABEL: &str = "controller-revision-hash";
/// The DaemonSet generation a pod was made from (deprecated upstream, still set).
pub(crate) const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// Most pods created or deleted in one reconcile (upstream's burstReplicas).
const BURST: usize = 250;

/// Upstream's `AddOrUpdateDaemonPodTolerations`: daemon pods tolerate not-ready and
/// unreachable nodes (`NoExecute`, forever), node pressure and cordoning (`NoSchedule`), and
/// with `hostNetwork` a node without a pod network.
pub(crate) fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", EFFECT_NO_EXECUTE),
        ("node.kubernetes.io/unreachable", EFFECT_NO_EXECUTE),
        ("node.kubernetes.io/disk-pressure", EFFECT_NO_SCHEDULE),
        ("node.kubernetes.io/memory-pressure", EFFECT_NO_SCHEDULE),
        ("node.kubernetes.io/pid-pressure", EFFECT_NO_SCHEDULE),
        (TAINT_UNSCHEDULABLE, EFFECT_NO_SCHEDULE),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", EFFECT_NO_SCHEDULE));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // `AddOrUpdateTolerationInPodSpec`: an equal toleration is kept, one with the same
        // key, operator and effect is replaced.
        match tolerations.iter_mut().find(|o| {
            o.key == t.key
                && o.operator.as_deref().unwrap_or("Equal") == "Exists"
                && o.effect == t.effect
        }) {
            Some(o) => *o = t,
            None => tolerations.push(t),
        }
    }
}

/// Whether a node should run the daemon pod and whether a pod already there may stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Eligibility {
    pub(crate) should_run: bool,
    pub(crate) should_continue_running: bool,
}

/// Upstream's `NodeShouldRunDaemonPod` for a DaemonSet whose template spec is `template`.
pub(crate) fn node_should_run(template: &PodSpec, node: &Node) -> Eligibility {
    let never = Eligibility {
        should_run: false,
        should_continue_running: false,
    };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if template
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return never;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !podvisor_api::nodeaffinity::required_matches(template, &labels, name) {
        return never;
    }
    let mut spec = template.clone();
    add_daemon_tolerations(&mut spec);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let untolerated = |effects: &[&str]| {
        taints.iter().any(|t| {
            effects.contains(&t.effect.as_str()) && !tolerations.iter().any(|x| tolerates(x, t))
        })
    };
    if untolerated(&[EFFECT_NO_SCHEDULE, EFFECT_NO_EXECUTE]) {
        return Eligibility {
            should_run: false,
            should_continue_running: !untolerated(&[EFFECT_NO_EXECUTE]),
        };
    }
    Eligibility {
        should_run: true,
        should_continue_running: true,
    }
}

/// Upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node affinity becomes
/// the one term `metadata.name In [node]` (other affinity kept).
pub(crate) fn node_name_affinity(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut a = affinity.unwrap_or_default();
    a.node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(selector);
    a
}

/// Upstream's `GetTargetNodeName`: `spec.nodeName`, or before binding the single node of a
/// `metadata.name In [node]` required term.
pub(crate) fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = podvisor_api::nodeaffinity::required_terms(spec)?;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            let v = r.values.as_deref().unwrap_or_default();
            (r.key == "metadata.name" && r.operator == "In" && v.len() == 1).then(|| v[0].clone())
        })
    })
}

/// The labels and taints last seen per node: a DaemonSet's node eligibility depends on
/// nothing else, so only their change (or a node coming or going) queues the DaemonSets,
/// not every status heartbeat.
#[derive(Default)]
pub(crate) struct NodePlacements {
    seen: std::sync::Mutex<std::collections::HashMap<String, Value>>,
}

impl NodePlacements {
    /// Records `node` (or its deletion); true if its labels or taints changed.
    pub(crate) fn changed(&self, node: &Node, deleted: bool) -> bool {
        let Some(name) = node.metadata.name.clone() else {
            return false;
        };
        let mut g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if deleted {
            return g.remove(&name).is_some();
        }
        let now = json!([
            node.metadata.labels,
            node.spec.as_ref().and_then(|s| s.taints.as_ref())
        ]);
        g.insert(name, now.clone()).is_none_or(|old| old != now)
    }
}

/// The pod the DaemonSet makes for `node` from its template with revision `hash`.
fn pod_for_node(ds: &DaemonSet, owner: OwnerReference, node: &str, hash: &str) -> Option<Pod> {
    let spec = ds.spec.as_ref()?;
    let name = ds.metadata.name.clone().unwrap_or_default();
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let mut pod = pods::pod_from_template(
        &spec.template,
        &ns,
        owner,
        PodName::Generate(format!("{name}-")),
    );
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(HASH_LABEL.into(), hash.into());
    // Upstream's `CreatePodTemplate` still sets the deprecated generation label.
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let ps = pod.spec.get_or_insert_with(PodSpec::default);
    add_daemon_tolerations(ps);
    ps.affinity = Some(node_name_affinity(ps.affinity.take(), node));
    Some(pod)
}

/// Upstream's `getPatch`: the ControllerRevision data of the DaemonSet's template.
pub(crate) fn revision_data(ds: &DaemonSet) -> Value {
    let mut template = ds
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.template).ok())
        .unwrap_or_else(|| json!({}));
    if let Some(m) = template.as_object_mut() {
        m.insert("$patch".into(), "replace".into());
    }
    json!({"spec": {"template": template}})
}

fn revision_matches(ds: &DaemonSet, cr: &ControllerRevision) -> bool {
    cr.data.as_ref().map(|d| &d.0) == Some(&revision_data(ds))
}

/// Upstream's `podByCreationTimestampAndPhase`: running pods first, then oldest, then name.
fn by_age_and_phase(a: &&Pod, b: &&Pod) -> std::cmp::Ordering {
    let running = |p: &Pod| pods::phase(p) == Some("Running");
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    running(b)
        .cmp(&running(a))
        .then(created(a).cmp(&created(b)))
        .then(a.metadata.name.cmp(&b.metadata.name))
}

fn pod_hash(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .map(String::as_str)
}

fn name_of(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// What [`plan_manage`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ManagePlan {
    /// Nodes that get a pod.
    pub(crate) create: Vec<String>,
    /// Pods to delete.
    pub(crate) delete: Vec<String>,
    /// Failed pods among `delete`, with their node (for the `FailedDaemonPod` event).
    pub(crate) failed: Vec<(String, String)>,
    /// Failed pods left for now because their node's back-off runs: look again after this.
    pub(crate) requeue: Option<Duration>,
}

/// Upstream's `failedPodsBackoff` (`flowcontrol.NewBackOff(1s, 15min)`), per DaemonSet and
/// node: a failed daemon pod is deleted (and so replaced) at once, then only after 1 s,
/// 2 s, 4 s, … up to 15 min since the last deletion on that node, so a node that keeps
/// failing the pod (the agent refusing it) is not hot-looped. An entry unused for twice the
/// cap starts over.
#[derive(Default)]
pub(crate) struct FailedPodBackoff {
    entries: std::sync::Mutex<HashMap<(String, String), (Duration, Timestamp)>>,
}

impl FailedPodBackoff {
    const INITIAL: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(15 * 60);

    fn expired(now: Timestamp, last: Timestamp) -> bool {
        since(now, last) > Self::MAX * 2
    }

    /// `Some(wait)` while `(ds, node)` is backing off at `now`; otherwise records a deletion
    /// now (upstream's `IsInBackOffSinceUpdate`, then `Next`) and returns `None`.
    pub(crate) fn check(&self, ds: &str, node: &str, now: Timestamp) -> Option<Duration> {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (ds.to_string(), node.to_string());
        if let Some(&(backoff, last)) = g.get(&key)
            && !Self::expired(now, last)
        {
            let waited = since(now, last);
            if waited < backoff {
                return Some(backoff - waited);
            }
            g.insert(key, ((backoff * 2).min(Self::MAX), now));
            return None;
        }
        if g.len() >= 4096 {
            g.retain(|_, (_, last)| !Self::expired(now, *last));
        }
        g.insert(key, (Self::INITIAL, now));
        None
    }

    /// Drops the entries of a deleted DaemonSet.
    pub(crate) fn forget(&self, ds: &str) {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.retain(|(d, _), _| d != ds);
    }
}

fn since(now: Timestamp, t: Timestamp) -> Duration {
    now.duration_since(t).try_into().unwrap_or(Duration::ZERO)
}

/// Upstream's `podsShouldBeOnNode` over every node. `backoff(node)` says how long a failed
/// pod on `node` must still be left alone (`None`: delete it now).
pub(crate) fn plan_manage(
    nodes: &[(String, Eligibility)],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    surge: bool,
    backoff: &mut dyn FnMut(&str) -> Option<Duration>,
) -> ManagePlan {
    let mut plan = ManagePlan::default();
    for (node, e) in nodes {
        let pods = by_node.get(node);
        match pods {
            None if e.should_run => plan.create.push(node.clone()),
            Some(pods) if e.should_continue_running => {
                let mut running: Vec<&Pod> = Vec::new();
                for p in pods {
                    if p.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    match pods::phase(p) {
                        Some("Failed") => match backoff(node) {
                            Some(wait) => {
                                plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
                            }
                            None => {
                                plan.failed.push((name_of(p), node.clone()));
                                plan.delete.push(name_of(p));
                            }
                        },
                        Some("Succeeded") => plan.delete.push(name_of(p)),
                        _ => running.push(p),
                    }
                }
                if running.len() <= 1 {
                    continue;
                }
                running.sort_by(by_age_and_phase);
                if !surge {
                    plan.delete.extend(running[1..].iter().map(|p| name_of(p)));
                } else {
                    let (mut new_kept, mut old_kept) = (false, false);
                    for p in running {
                        let kept = if pod_hash(p) == Some(hash) {
                            &mut new_kept
                        } else {
                            &mut old_kept
                        };
                        if *kept {
                            plan.delete.push(name_of(p));
                        } else {
                            *kept = true;
                        }
                    }
                }
            }
            Some(pods) if !e.should_continue_running => {
                plan.delete.extend(
                    pods.iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .map(|p| name_of(p)),
                );
            }
            _ => {}
        }
    }
    plan
}

/// One node as the rolling update sees it (upstream's `findUpdatedPodsOnNode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodePods {
    pub(crate) node: String,
    pub(crate) should_run: bool,
    /// `None`: more than one old or new pod (the manage step cleans up first).
    pub(crate) pods: Option<UpdatePods>,
}

/// The old and new pod on a node and whether each is available.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UpdatePods {
    /// `(name, available)` of the pod from the current revision.
    pub(crate) new: Option<(String, bool)>,
    /// `(name, available)` of a pod from an older revision.
    pub(crate) old: Option<(String, bool)>,
}

/// What a rolling update step does: pods to delete, nodes to get a new pod beside the old.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct UpdatePlan {
    pub(crate) delete: Vec<String>,
    pub(crate) create: Vec<String>,
}

/// Upstream's `rollingUpdate` decision for `maxSurge` and `maxUnavailable` already
/// resolved against `desired` (desiredNumberScheduled).
pub(crate) fn plan_rolling_update(
    nodes: &[NodePods],
    max_surge: i32,
    max_unavailable: i32,
    desired: i32,
) -> UpdatePlan {
    let mut plan = UpdatePlan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for n in nodes {
            let Some(p) = &n.pods else {
                unavailable += 1;
                continue;
            };
            match (&p.new, &p.old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some((_, available)), None) => {
                    if !available {
                        unavailable += 1;
                    }
                }
                (None, Some((old, available))) => {
                    if !available {
                        plan.delete.push(old.clone());
                    } else if unavailable < max_unavailable {
                        candidates.push(old.clone());
                    }
                }
            }
        }
        let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        plan.delete
            .extend(candidates.into_iter().take(room.min(nodes.len())));
        return plan;
    }
    let (mut surging, mut available_count) = (0, 0);
    let (mut allowed, mut candidates, mut sunset) = (Vec::new(), Vec::new(), Vec::new());
    for n in nodes {
        let Some(p) = &n.pods else {
            surging += 1;
            continue;
        };
        if let Some((_, a)) = p.old.as_ref().or(p.new.as_ref())
            && *a
        {
            available_count += 1;
        }
        match (&p.new, &p.old) {
            (_, None) => {}
            (None, Some((old, available))) => {
                if !available {
                    if n.should_run {
                        allowed.push(n.node.clone());
                    } else {
                        sunset.push(old.clone());
                    }
                } else if surging < max_surge {
                    candidates.push(n.node.clone());
                }
            }
            (Some((_, new_available)), Some((old, _))) => {
                if *new_available {
                    plan.delete.push(old.clone());
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
    plan.create = allowed;
    plan.create.extend(candidates.into_iter().take(room));
    if !sunset.is_empty() {
        let room =
            usize::try_from((max_unavailable - (desired - available_count)).max(0)).unwrap_or(0);
        plan.delete.extend(sunset.into_iter().take(room));
    }
    plan
}

/// Upstream's `updateDaemonSetStatus` counts, and when the next pod becomes available.
pub(crate) fn status_for(
    ds: &DaemonSet,
    nodes: &[(String, Eligibility)],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    now: Timestamp,
) -> (DaemonSetStatus, Option<Duration>) {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut s = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    let mut requeue: Option<Duration> = None;
    for (node, e) in nodes {
        let pods = by_node.get(node).filter(|p| !p.is_empty());
        if !e.should_run {
            if pods.is_some() {
                s.number_misscheduled += 1;
            }
            continue;
        }
        s.desired_number_scheduled += 1;
        let Some(pods) = pods else { continue };
        s.current_number_scheduled += 1;
        let mut sorted = pods.clone();
        sorted.sort_by(by_age_and_phase);
        let pod = sorted[0];
        if pods::is_ready(pod) {
            ready += 1;
            if pods::available(pod, min_ready, now, &mut requeue) {
                available += 1;
            }
        }
        if pod_hash(pod) == Some(hash) {
            updated += 1;
        }
    }
    s.number_ready = ready;
    s.number_available = Some(available);
    s.updated_number_scheduled = Some(updated);
    s.number_unavailable = Some(s.desired_number_scheduled - available);
    (s, requeue)
}

fn status_eq(a: &DaemonSetStatus, b: &DaemonSetStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    a.desired_number_scheduled == b.desired_number_scheduled
        && a.current_number_scheduled == b.current_number_scheduled
        && a.number_misscheduled == b.number_misscheduled
        && a.number_ready == b.number_ready
        && n(a.number_available) == n(b.number_available)
        && n(a.number_unavailable) == n(b.number_unavailable)
        && n(a.updated_number_scheduled) == n(b.updated_number_scheduled)
        && a.observed_generation == b.observed_generation
        && a.collision_count == b.collision_count
}

pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let exp_key = key.to_string();
    let Some(ds) = ctx.cached_owner(&ctx.daemonsets, &ctx.ds_expectations, key) else {
        return Ok(None);
    };
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(None);
    };
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let ns = key.namespace.as_str();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let owner = pods::owner_ref("DaemonSet", &key.name, &uid);

    let Some((hash, old_revisions)) = history(ctx, &ds, &owner).await? else {
        // The collision count was bumped; the status update brings the key back.
        return Ok(None);
    };

    let selector = parse_selector("DaemonSet", &ds.metadata, Some(&spec.selector))?;
    let owned =
        crate::replicaset::claim_pods(ctx, ns, &uid, &owner, selector.as_ref(), false).await?;
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in &owned {
        // Deleted pods that finished no longer count (`includeDeletedTerminal = false`).
        if p.metadata.deletion_timestamp.is_some() && pods::is_terminal(p) {
            continue;
        }
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p.as_ref());
        }
    }
    let template_spec = spec.template.spec.clone().unwrap_or_default();
    let mut nodes: Vec<(String, Eligibility)> = ctx
        .nodes
        .state()
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, node_should_run(&template_spec, n))))
        .collect();
    nodes.sort_by(|a, b| a.0.cmp(&b.0));

    let surge_cfg = rolling_params(&ds);
    let mut failed_requeue = None;
    if ctx
        .ds_expectations
        .satisfied(&exp_key, |id| ctx.seen(ns, id))
    {
        let now = ctx.now();
        let mut plan = plan_manage(
            &nodes,
            &by_node,
            &hash,
            surge_cfg.as_ref().is_some_and(|c| c.0),
            &mut |node| ctx.ds_failed_backoff.check(&exp_key, node, now),
        );
        failed_requeue = plan.requeue;
        for (pod, node) in &plan.failed {
            ctx.event_about(
                COMPONENT,
                ds.as_ref(),
                EventType::Warning,
                "FailedDaemonPod",
                format!("Found failed daemon pod {ns}/{pod} on node {node}, will try to kill it"),
            );
        }
        if let Some((_, max_surge, max_unavailable)) = surge_cfg {
            let desired = nodes.iter().filter(|(_, e)| e.should_run).count();
            let desired = i32::try_from(desired).unwrap_or(i32::MAX);
            let now = ctx.now();
            let min_ready = spec.min_ready_seconds.unwrap_or(0);
            let view = update_view(&nodes, &by_node, &hash, min_ready, now);
            let surge = crate::deployment::resolve(Some(&max_surge), desired, true).max(0);
            let mut unavailable =
                crate::deployment::resolve(Some(&max_unavailable), desired, true).max(0);
            if surge == 0 && unavailable == 0 {
                unavailable = 1;
            }
            let up = plan_rolling_update(&view, surge, unavailable, desired);
            for d in up.delete {
                if !plan.delete.contains(&d) {
                    plan.delete.push(d);
                }
            }
            plan.create.extend(up.create);
        }
        sync_nodes(ctx, &ds, &exp_key, &owner, &hash, &plan).await?;
    }

    cleanup_history(ctx, &ds, &owned, old_revisions).await?;

    let (status, requeue) = status_for(&ds, &nodes, &by_node, &hash, ctx.now());
    if !status_eq(&ds.status.clone().unwrap_or_default(), &status) {
        let mut updated = (*ds).clone();
        updated.status = Some(status);
        ctx.replace_status("DaemonSet", ns, &key.name, &updated)
            .await?;
    }
    let requeue = requeue.map(|d| d + Duration::from_secs(1));
    Ok(match (requeue, failed_requeue) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// `(surge allowed, maxSurge, maxUnavailable)` of a RollingUpdate DaemonSet.
fn rolling_params(
    ds: &DaemonSet,
) -> Option<(
    bool,
    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
)> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let us = ds.spec.as_ref()?.update_strategy.as_ref();
    if us
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        != "RollingUpdate"
    {
        return None;
    }
    let ru = us.and_then(|u| u.rolling_update.as_ref());
    let surge = ru
        .and_then(|r| r.max_surge.clone())
        .unwrap_or(IntOrString::Int(0));
    let unavailable = ru
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    let allows = !matches!(&surge, IntOrString::Int(0))
        && !matches!(&surge, IntOrString::String(s) if s.trim_end_matches('%') == "0");
    Some((allows, surge, unavailable))
}

fn update_view(
    nodes: &[(String, Eligibility)],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    min_ready: i32,
    now: Timestamp,
) -> Vec<NodePods> {
    let mut out = Vec::new();
    // Nodes that should run a pod and have none count as unavailable (upstream's
    // `updatedDesiredNodeCounts` adds them with no pods).
    let empty = Vec::new();
    let missing = nodes
        .iter()
        .filter(|(n, e)| e.should_run && !by_node.contains_key(n))
        .map(|(n, _)| (n, &empty));
    for (node, pods) in by_node.iter().chain(missing) {
        let should_run = nodes
            .iter()
            .find(|(n, _)| n == node)
            .is_some_and(|(_, e)| e.should_run);
        let mut up = Some(UpdatePods::default());
        for p in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let entry = (name_of(p), pods::availability(p, min_ready, now).is_ok());
            let Some(u) = up.as_mut() else { break };
            let slot = if pod_hash(p) == Some(hash) {
                &mut u.new
            } else {
                &mut u.old
            };
            if slot.is_some() {
                up = None;
            } else {
                *slot = Some(entry);
            }
        }
        out.push(NodePods {
            node: node.clone(),
            should_run,
            pods: up,
        });
    }
    out
}

/// Creates the pods for `plan.create` and deletes `plan.delete`, recording expectations.
async fn sync_nodes(
    ctx: &Ctx,
    ds: &DaemonSet,
    exp_key: &str,
    owner: &OwnerReference,
    hash: &str,
    plan: &ManagePlan,
) -> Result<(), ControllerError> {
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let api = ctx.pods_api(&ns);
    let mut first_error = None;
    let creates: Vec<&String> = plan.create.iter().take(BURST).collect();
    if !creates.is_empty() {
        info!(%ns, daemonset = %name, count = creates.len(), "creating daemon pods");
    }
    let mut offset = 0;
    for batch in crate::replicaset::slow_start_batches(creates.len()) {
        let results = join_all(creates[offset..offset + batch].iter().map(|node| {
            let pod = pod_for_node(ds, owner.clone(), node, hash);
            let api = api.clone();
            async move {
                match pod {
                    Some(p) => api.create(&PostParams::default(), &p).await.map(Some),
                    None => Ok(None),
                }
            }
        }))
        .await;
        offset += batch;
        for r in results {
            match r {
                Ok(Some(p)) => {
                    let pod = p.metadata.name.clone().unwrap_or_default();
                    ctx.ds_expectations.created(
                        exp_key,
                        PodId {
                            name: pod.clone(),
                            uid: p.metadata.uid.unwrap_or_default(),
                        },
                    );
                    ctx.event_about(
                        COMPONENT,
                        ds,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {pod}"),
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(ctx.pod_create_failed(COMPONENT, ds, e));
                }
            }
        }
        if first_error.is_some() {
            break;
        }
    }
    let uids: BTreeMap<String, String> = ctx
        .pods_in(&ns)
        .iter()
        .filter_map(|p| Some((p.metadata.name.clone()?, p.metadata.uid.clone()?)))
        .collect();
    let deletes: BTreeSet<&String> = plan.delete.iter().take(BURST).collect();
    let results = join_all(deletes.into_iter().map(|pod| {
        let api = api.clone();
        let uid = uids.get(pod).cloned();
        async move {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            (pod.clone(), uid, api.delete(pod, &dp).await)
        }
    }))
    .await;
    for (pod, uid, r) in results {
        match r {
            Ok(_) => {
                ctx.ds_expectations.deleted(
                    exp_key,
                    PodId {
                        name: pod.clone(),
                        uid: uid.unwrap_or_default(),
                    },
                );
                ctx.event_about(
                    COMPONENT,
                    ds,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {pod}"),
                );
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                first_error.get_or_insert(ControllerError::api("delete", "Pod", &ns, &pod)(e));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn revisions_api(ctx: &Ctx, ns: &str) -> Api<ControllerRevision> {
    Api::namespaced(ctx.client.clone(), ns)
}

/// Upstream's `constructHistory`: the current revision's hash and the old revisions. `None`
/// when the revision name collided and `collisionCount` was bumped.
async fn history(
    ctx: &Ctx,
    ds: &DaemonSet,
    owner: &OwnerReference,
) -> Result<Option<(String, Vec<Arc<ControllerRevision>>)>, ControllerError> {
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let (current, old): (Vec<_>, Vec<_>) = ctx
        .controllerrevisions
        .state_filter(|r| {
            r.metadata.namespace.as_deref() == Some(ns.as_str())
                && pods::controller_ref(&r.metadata).is_some_and(|o| o.uid == owner.uid)
        })
        .into_iter()
        .partition(|r| revision_matches(ds, r));
    let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let api = revisions_api(ctx, &ns);
    let hash_of = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL).cloned())
            .unwrap_or_else(|| r.metadata.name.clone().unwrap_or_default())
    };
    // Duplicates of the current revision (upstream's `dedupCurHistories`): keep the
    // highest revision.
    let mut current = current;
    current.sort_by_key(|r| std::cmp::Reverse(r.revision));
    for dup in current.iter().skip(1) {
        let n = dup.metadata.name.clone().unwrap_or_default();
        delete_revision(&api, &ns, &n).await?;
    }
    if let Some(cur) = current.first() {
        if cur.revision < next {
            let mut r = (**cur).clone();
            r.revision = next;
            let n = r.metadata.name.clone().unwrap_or_default();
            replace(&api, "ControllerRevision", &ns, &n, &r).await?;
        }
        return Ok(Some((hash_of(cur), old)));
    }
    let collision = ds.status.as_ref().and_then(|s| s.collision_count);
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let hash = crate::deployment::template_hash(&template, collision);
    let rev_name = format!("{name}-{hash}");
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    let cr = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(rev_name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(ds))),
        revision: next,
    };
    match api.create(&PostParams::default(), &cr).await {
        Ok(_) => Ok(Some((hash, old))),
        Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {
            let existing = api.get(&rev_name).await.map_err(ControllerError::api(
                "get",
                "ControllerRevision",
                &ns,
                &rev_name,
            ))?;
            if revision_matches(ds, &existing) {
                return Ok(Some((hash, old)));
            }
            // A different template under this hash: bump the collision count.
            let mut updated = ds.clone();
            let st = updated.status.get_or_insert_with(Default::default);
            st.collision_count = Some(collision.unwrap_or(0) + 1);
            ctx.replace_status("DaemonSet", &ns, &name, &updated)
                .await?;
            Ok(None)
        }
        Err(e) => Err(ControllerError::api(
            "create",
            "ControllerRevision",
            &ns,
            &rev_name,
        )(e)),
    }
}

/// Deletes a ControllerRevision (one already gone is fine).
async fn delete_revision(
    api: &Api<ControllerRevision>,
    ns: &str,
    name: &str,
) -> Result<(), ControllerError> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(ControllerError::api(
            "delete",
            "ControllerRevision",
            ns,
            name,
        )(e)),
    }
}

/// Upstream's `cleanupHistory`.
async fn cleanup_history(
    ctx: &Ctx,
    ds: &DaemonSet,
    owned: &[Arc<Pod>],
    mut old: Vec<Arc<ControllerRevision>>,
) -> Result<(), ControllerError> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0);
    let mut to_kill = old
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    if to_kill == 0 {
        return Ok(());
    }
    let live: BTreeSet<&str> = owned.iter().filter_map(|p| pod_hash(p)).collect();
    old.sort_by_key(|r| r.revision);
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let api = revisions_api(ctx, &ns);
    for r in old {
        if to_kill == 0 {
            break;
        }
        let hash = r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
        if hash.is_some_and(|h| live.contains(h.as_str())) {
            continue;
        }
        let n = r.metadata.name.clone().unwrap_or_default();
        delete_revision(&api, &ns, &n).await?;
        to_kill -= 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    const RUN: Eligibility = Eligibility {
        should_run: true,
        should_continue_running: true,
    };
    const STAY: Eligibility = Eligibility {
        should_run: false,
        should_continue_running: true,
    };
    const NEVER: Eligibility = Eligibility {
        should_run: false,
        should_continue_running: false,
    };

    #[test]
    fn daemon_tolerations_are_upstreams() {
        let mut spec = PodSpec::default();
        add_daemon_tolerations(&mut spec);
        let keys: Vec<_> = spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| {
                format!(
                    "{}:{}",
                    t.key.as_deref().unwrap_or(""),
                    t.effect.as_deref().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                "node.kubernetes.io/not-ready:NoExecute",
                "node.kubernetes.io/unreachable:NoExecute",
                "node.kubernetes.io/disk-pressure:NoSchedule",
                "node.kubernetes.io/memory-pressure:NoSchedule",
                "node.kubernetes.io/pid-pressure:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule",
            ]
        );
        assert!(
            spec.tolerations
                .iter()
                .flatten()
                .all(|t| t.operator.as_deref() == Some("Exists") && t.toleration_seconds.is_none())
        );
        let mut host = PodSpec {
            host_network: Some(true),
            ..Default::default()
        };
        add_daemon_tolerations(&mut host);
        add_daemon_tolerations(&mut host);
        let tols = host.tolerations.unwrap_or_default();
        assert_eq!(tols.len(), 7, "added once, {tols:?}");
        assert_eq!(
            tols[6].key.as_deref(),
            Some("node.kubernetes.io/network-unavailable")
        );
    }

    #[test]
    fn eligibility_follows_selector_affinity_and_taints() {
        let plain = PodSpec::default();
        assert_eq!(node_should_run(&plain, &node("a", &[], &[])), RUN);
        // Daemon tolerations cover cordoned and not-ready nodes.
        let cordoned = node(
            "a",
            &[],
            &[
                (TAINT_UNSCHEDULABLE, "NoSchedule"),
                ("node.kubernetes.io/not-ready", "NoExecute"),
            ],
        );
        assert_eq!(node_should_run(&plain, &cordoned), RUN);
        // An untolerated NoSchedule taint: do not start, but a running pod stays.
        assert_eq!(
            node_should_run(&plain, &node("a", &[], &[("dedicated", "NoSchedule")])),
            STAY
        );
        // NoExecute: neither.
        assert_eq!(
            node_should_run(&plain, &node("a", &[], &[("dedicated", "NoExecute")])),
            NEVER
        );
        // PreferNoSchedule does not matter.
        assert_eq!(
            node_should_run(&plain, &node("a", &[], &[("x", "PreferNoSchedule")])),
            RUN
        );
        let tolerating = PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            node_should_run(&tolerating, &node("a", &[], &[("dedicated", "NoExecute")])),
            RUN
        );
        // nodeSelector.
        let selecting = PodSpec {
            node_selector: Some([("disk".to_string(), "ssd".to_string())].into()),
            ..Default::default()
        };
        assert_eq!(node_should_run(&selecting, &node("a", &[], &[])), NEVER);
        assert_eq!(
            node_should_run(&selecting, &node("a", &[("disk", "ssd")], &[])),
            RUN
        );
        // Required node affinity.
        let affine = PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "zone".into(),
                                operator: "NotIn".into(),
                                values: Some(vec!["z1".into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            node_should_run(&affine, &node("a", &[("zone", "z1")], &[])),
            NEVER
        );
        assert_eq!(
            node_should_run(&affine, &node("a", &[("zone", "z2")], &[])),
            RUN
        );
        // A template pinned to another node.
        let pinned = PodSpec {
            node_name: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(node_should_run(&pinned, &node("a", &[], &[])), NEVER);
        assert_eq!(node_should_run(&pinned, &node("b", &[], &[])), RUN);
    }

    #[test]
    fn pods_target_their_node_by_affinity() {
        let a = node_name_affinity(None, "n1");
        let pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(a.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        let terms = &a
            .node_affinity
            .as_ref()
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.clone())
            .unwrap_or_default();
        assert_eq!(
            serde_json::to_value(terms).unwrap_or_default(),
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
        );
    }

    fn p(name: &str, hash: &str, phase: &str, created: i64, deleting: bool) -> Pod {
        let mut pod = crate::pods::tests::pod(name, Some("n"), phase, true, created);
        pod.metadata.labels = Some([(HASH_LABEL.to_string(), hash.to_string())].into());
        if deleting {
            pod.metadata.deletion_timestamp = pod.metadata.creation_timestamp.clone();
        }
        pod
    }

    #[test]
    fn manage_creates_on_empty_nodes_and_keeps_one_pod() {
        let a = p("a", "h", "Running", 1, false);
        let b = p("b", "h", "Running", 2, false);
        let failed = p("f", "h", "Failed", 3, false);
        let gone = p("g", "h", "Running", 3, true);
        let nodes = vec![
            ("n1".to_string(), RUN),
            ("n2".to_string(), RUN),
            ("n3".to_string(), RUN),
            ("n4".to_string(), NEVER),
            ("n5".to_string(), RUN),
        ];
        let by_node: BTreeMap<String, Vec<&Pod>> = [
            ("n1".to_string(), vec![&b, &a]),
            ("n3".to_string(), vec![&failed]),
            ("n4".to_string(), vec![&a]),
            ("n5".to_string(), vec![&gone]),
        ]
        .into();
        let plan = plan_manage(&nodes, &by_node, "h", false, &mut |_| None);
        assert_eq!(plan.create, ["n2"]);
        // The younger duplicate, the failed pod, the pod on a node it must leave.
        assert_eq!(plan.delete, ["b", "f", "a"]);
        assert_eq!(plan.failed, [("f".to_string(), "n3".to_string())]);
    }

    #[test]
    fn a_failed_pod_waits_while_its_node_backs_off() {
        let failed = p("f", "h", "Failed", 3, false);
        let nodes = vec![("n".to_string(), RUN)];
        let by_node: BTreeMap<String, Vec<&Pod>> = [("n".to_string(), vec![&failed])].into();
        let plan = plan_manage(&nodes, &by_node, "h", false, &mut |_| {
            Some(Duration::from_secs(3))
        });
        assert!(plan.delete.is_empty() && plan.failed.is_empty());
        assert!(
            plan.create.is_empty(),
            "the failed pod still holds the node"
        );
        assert_eq!(plan.requeue, Some(Duration::from_secs(3)));
    }

    #[test]
    fn failed_pod_backoff_doubles_per_node_up_to_fifteen_minutes_and_expires() {
        let b = FailedPodBackoff::default();
        let t = |s: i64| Timestamp::from_second(1_700_000_000 + s).expect("time");
        // First failure: deleted at once; the next one on that node waits 1 s, then 2 s.
        assert_eq!(b.check("ns/ds", "n1", t(0)), None);
        assert_eq!(b.check("ns/ds", "n1", t(0)), Some(Duration::from_secs(1)));
        assert_eq!(b.check("ns/ds", "n2", t(0)), None, "other nodes are apart");
        assert_eq!(b.check("ns/ds", "n1", t(1)), None);
        assert_eq!(b.check("ns/ds", "n1", t(2)), Some(Duration::from_secs(1)));
        let mut at = 1;
        let mut last = Duration::from_secs(2);
        for _ in 0..20 {
            at += i64::try_from(last.as_secs()).expect("secs");
            assert_eq!(b.check("ns/ds", "n1", t(at)), None);
            last = (last * 2).min(Duration::from_secs(900));
        }
        assert_eq!(
            b.check("ns/ds", "n1", t(at)),
            Some(Duration::from_secs(900))
        );
        // Unused for more than twice the cap, it starts over.
        assert_eq!(b.check("ns/ds", "n1", t(at + 1801)), None);
        assert_eq!(
            b.check("ns/ds", "n1", t(at + 1801)),
            Some(Duration::from_secs(1))
        );
        b.forget("ns/ds");
        assert_eq!(b.check("ns/ds", "n1", t(at + 1801)), None);
    }

    #[test]
    fn surge_keeps_the_oldest_old_and_new_pod() {
        let o1 = p("o1", "old", "Running", 1, false);
        let o2 = p("o2", "old", "Running", 2, false);
        let n1 = p("n1", "h", "Running", 3, false);
        let n2 = p("n2", "h", "Running", 4, false);
        let nodes = vec![("n".to_string(), RUN)];
        let by_node: BTreeMap<String, Vec<&Pod>> =
            [("n".to_string(), vec![&n2, &o2, &n1, &o1])].into();
        assert_eq!(
            plan_manage(&nodes, &by_node, "h", true, &mut |_| None).delete,
            ["o2", "n2"]
        );
    }

    fn view(node: &str, new: Option<(&str, bool)>, old: Option<(&str, bool)>) -> NodePods {
        NodePods {
            node: node.into(),
            should_run: true,
            pods: Some(UpdatePods {
                new: new.map(|(n, a)| (n.to_string(), a)),
                old: old.map(|(n, a)| (n.to_string(), a)),
            }),
        }
    }

    #[test]
    fn rolling_update_without_surge_respects_max_unavailable() {
        let nodes = [
            view("a", None, Some(("oa", true))),
            view("b", None, Some(("ob", true))),
            view("c", None, Some(("oc", false))),
            view("d", Some(("nd", true)), None),
        ];
        // An unavailable old pod is always replaced; one more within maxUnavailable 1.
        assert_eq!(plan_rolling_update(&nodes, 0, 1, 4).delete, ["oc", "oa"]);
        assert_eq!(
            plan_rolling_update(&nodes, 0, 2, 4).delete,
            ["oc", "oa", "ob"]
        );
        // A new pod that is not available yet uses up the budget.
        let busy = [
            view("a", None, Some(("oa", true))),
            view("d", Some(("nd", false)), None),
        ];
        assert!(plan_rolling_update(&busy, 0, 1, 2).delete.is_empty());
    }

    #[test]
    fn rolling_update_with_surge_creates_beside_and_then_deletes() {
        let nodes = [
            view("a", None, Some(("oa", true))),
            view("b", None, Some(("ob", true))),
            view("c", Some(("nc", true)), Some(("oc", true))),
            view("d", Some(("nd", false)), Some(("od", true))),
        ];
        // d is surging already: with maxSurge 1 nothing new starts, c's old pod goes.
        let plan = plan_rolling_update(&nodes, 1, 0, 4);
        assert_eq!(plan.delete, ["oc"]);
        assert!(plan.create.is_empty());
        let plan = plan_rolling_update(&nodes, 2, 0, 4);
        assert_eq!(plan.create, ["a"]);
        // An unavailable old pod gets its new pod regardless of the surge budget.
        let down = [view("a", None, Some(("oa", false)))];
        assert_eq!(plan_rolling_update(&down, 1, 0, 1).create, ["a"]);
    }
}
