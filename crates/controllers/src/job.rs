//! The Job controller (batch/v1), after upstream's `pkg/controller/job`.
//!
//! # Lifecycle of a Job
//!
//! ```text
//!   created ──▶ running ──(success criteria)──▶ SuccessCriteriaMet ──(no pods left)──▶ Complete
//!      │           │  ▲
//!      │   suspend │  │ resume (startTime reset)
//!      │           ▼  │
//!      │        Suspended (active pods deleted)
//!      │
//!      └─(backoff limit / deadline / FailJob rule)──▶ FailureTarget ──(no pods left)──▶ Failed
//! ```
//!
//! `Complete` and `Failed` are terminal: a finished Job creates and counts nothing more; it
//! only releases the tracking finalizers of pods that still carry one, and, with
//! `ttlSecondsAfterFinished`, is deleted (foreground propagation) that long after it
//! finished. The interim conditions (`SuccessCriteriaMet`, `FailureTarget`) are written
//! first so that the reason survives while the last pods are counted and terminate.
//!
//! # Counting with the tracking finalizer
//!
//! Every pod is created with the `batch.kubernetes.io/job-tracking` finalizer, so it cannot
//! disappear before it was counted. Counting is a three-step protocol, one step per status
//! write, so that a crash between two steps never loses or double-counts a pod:
//!
//! 1. a finished pod (Succeeded, Failed, or — with `podReplacementPolicy:
//!    TerminatingOrFailed` — terminating) that still has the finalizer is recorded by UID in
//!    `status.uncountedTerminatedPods` (Indexed successes go straight into
//!    `completedIndexes`, the index being their identity); the status is written;
//! 2. then its finalizer is removed (a merge patch fenced by the pod's resourceVersion);
//! 3. a UID in `uncountedTerminatedPods` whose pod no longer has the finalizer (or is gone)
//!    moves into `succeeded`/`failed` at the next status write.
//!
//! A pod without the finalizer is never counted again.
//!
//! # One reconcile
//!
//! [`reconcile`] reads the Job and its pods from the caches (claiming orphans that match the
//! selector, as the ReplicaSet controller does) and asks the pure [`plan`] what to do: the
//! status to write, pods to create (with their completion index) and delete, finalizers to
//! remove, events, and when to look again (pod-failure back-off, active deadline, TTL). It
//! then deletes, creates, writes the status (fenced by the cached resourceVersion) and only
//! then removes finalizers. Creates and deletes in flight are [expectations]: while they are
//! not visible in the pod cache the Job creates and deletes nothing more.
//!
//! # Rules (as upstream)
//!
//! * Wanted active pods: `min(parallelism, completions − succeeded)`; without
//!   `completions`, `parallelism` until the first success, then no new pods.
//! * Pod-failure back-off: after `n` failures since the last success no pod is created until
//!   `10 s · 2^(n−1)` (at most 10 min) after the last failure.
//! * `failed > backoffLimit`, or (restartPolicy OnFailure) container restarts of active pods
//!   reaching it → `BackoffLimitExceeded`; `activeDeadlineSeconds` since `startTime` →
//!   `DeadlineExceeded`; a `podFailurePolicy` rule with action FailJob → `PodFailurePolicy`;
//!   rules with action Ignore do not count the failure.
//! * Indexed Jobs: each pod gets its index in the `batch.kubernetes.io/job-completion-index`
//!   annotation and label, `JOB_COMPLETION_INDEX` from that annotation (downward API) in
//!   every container, hostname `<job>-<index>` and generateName `<job>-<index>-`; duplicate
//!   or out-of-range pods are deleted; `successPolicy` rules may end the Job early.
//! * `backoffLimitPerIndex` (Indexed): each pod carries the failures of its index before it
//!   (`batch.kubernetes.io/job-index-failure-count`, ignored ones in
//!   `…-ignored-failure-count`); a counted failure of a pod whose index already failed
//!   `backoffLimitPerIndex` times, or a `FailIndex` rule, marks the index failed
//!   (`status.failedIndexes`, never re-run, its active pods deleted). More failed indexes
//!   than `maxFailedIndexes` → `MaxFailedIndexesExceeded`; every index succeeded or failed
//!   with some failed → `FailedIndexes`. The pod-failure back-off stays per Job.
//! * `suspend: true` deletes the active pods and sets `Suspended=True`; resuming sets it
//!   False and resets `startTime`.
//!
//! [expectations]: crate::expectations

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicyRule, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::{Api, ResourceExt};
use podvisor_kit::events::EventType;
use tracing::{debug, info};

use crate::context::{ControllerError, Ctx, Key, parse_selector};
use crate::expectations::PodId;
use crate::pods::{self, PodName};

/// The finalizer that keeps a Job's pod until it was counted.
pub(crate) const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation (and label) holding an Indexed Job pod's completion index.
pub(crate) const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// The annotation counting the failures of a pod's index before it (backoffLimitPerIndex).
pub(crate) const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// The annotation counting the ignored failures of a pod's index before it.
pub(crate) const INDEX_IGNORED_FAILURE_COUNT: &str =
    "batch.kubernetes.io/job-index-ignored-failure-count";
/// The environment variable carrying the completion index.
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Upstream's `DefaultJobPodFailureBackOff`.
pub(crate) const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `MaxJobPodFailureBackOff`.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Most pods created or deleted in one reconcile (upstream's `MaxPodCreateDeletePerSync`).
const MAX_PER_SYNC: usize = 500;
/// Most UIDs recorded in `uncountedTerminatedPods` at once (upstream's `MaxUncountedPods`).
const MAX_UNCOUNTED: usize = 500;
const COMPONENT: &str = "job-controller";

/// Condition reasons and messages (upstream `batch.JobReason*`).
const BACKOFF_LIMIT_EXCEEDED: (&str, &str) = (
    "BackoffLimitExceeded",
    "Job has reached the specified backoff limit",
);
const MAX_FAILED_INDEXES_EXCEEDED: (&str, &str) = (
    "MaxFailedIndexesExceeded",
    "Job has exceeded the specified maximal number of failed indexes",
);
const FAILED_INDEXES: (&str, &str) = ("FailedIndexes", "Job has failed indexes");
const DEADLINE_EXCEEDED: (&str, &str) = (
    "DeadlineExceeded",
    "Job was active longer than specified deadline",
);
const COMPLETIONS_REACHED: (&str, &str) = (
    "CompletionsReached",
    "Reached expected number of succeeded pods",
);

/// The pod-failure back-off of one Job (upstream's `backoffRecord`): failures since the
/// last success and when the last of them finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) failures_after_last_success: u32,
    pub(crate) last_failure: Option<Timestamp>,
}

impl Backoff {
    /// How long new pods must still wait at `now`.
    pub(crate) fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let mut delay = DEFAULT_BACKOFF;
        for _ in 1..self.failures_after_last_success {
            delay = delay.saturating_mul(2);
            if delay >= MAX_BACKOFF {
                delay = MAX_BACKOFF;
                break;
            }
        }
        delay.saturating_sub(since(now, last))
    }

    /// The record after newly counted successes and failures (their finish times).
    pub(crate) fn after(self, succeeded: &[Timestamp], failed: &[Timestamp]) -> Backoff {
        let last_failure = failed.iter().max().copied();
        match (succeeded.iter().max(), last_failure) {
            (None, None) => self,
            (None, Some(f)) => Backoff {
                failures_after_last_success: self
                    .failures_after_last_success
                    .saturating_add(u32::try_from(failed.len()).unwrap_or(u32::MAX)),
                last_failure: Some(f),
            },
            (Some(_), None) => Backoff::default(),
            (Some(s), Some(f)) => {
                let after = failed.iter().filter(|t| *t > s).count();
                if after == 0 {
                    Backoff::default()
                } else {
                    Backoff {
                        failures_after_last_success: u32::try_from(after).unwrap_or(u32::MAX),
                        last_failure: Some(f),
                    }
                }
            }
        }
    }
}

/// Time from `t` to `now` (zero if `t` is later).
fn since(now: Timestamp, t: Timestamp) -> Duration {
    now.duration_since(t).try_into().unwrap_or(Duration::ZERO)
}

/// A pod the plan acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodRef {
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) resource_version: Option<String>,
    /// The finalizers it should keep (for a finalizer removal).
    pub(crate) keep_finalizers: Vec<String>,
}

impl PodRef {
    fn of(p: &Pod) -> PodRef {
        PodRef {
            name: p.name_any(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            resource_version: p.metadata.resource_version.clone(),
            keep_finalizers: p
                .finalizers()
                .iter()
                .filter(|f| *f != TRACKING_FINALIZER)
                .cloned()
                .collect(),
        }
    }
}

/// What one reconcile does (the output of [`plan`]).
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The status to write (written only if it differs from the Job's).
    pub(crate) status: JobStatus,
    /// Pods to create: their completion index (Indexed Jobs) or `None`.
    pub(crate) create: Vec<Option<i32>>,
    /// Active pods to delete.
    pub(crate) delete: Vec<PodRef>,
    /// Pods whose tracking finalizer goes once the status is written.
    pub(crate) release: Vec<PodRef>,
    /// Events about the Job: type, reason, message.
    pub(crate) events: Vec<(EventType, &'static str, String)>,
    /// The back-off record once the status is written.
    pub(crate) backoff: Backoff,
    /// When to look again at the latest.
    pub(crate) requeue: Option<Duration>,
    /// With `backoffLimitPerIndex`: the failure and ignored-failure counts the next pod of
    /// each index carries (from the last failed pod of the index).
    pub(crate) index_failures: BTreeMap<i32, (i32, i32)>,
    /// With `backoffLimitPerIndex`: indexes whose own back-off has not run out, and for how
    /// long still.
    pub(crate) index_wait: BTreeMap<i32, Duration>,
}

impl Plan {
    fn requeue_after(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }
}

/// The condition of `type_`, if present.
fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job is finished (`Complete` or `Failed` True), and when.
pub(crate) fn finished_at(job: &Job) -> Option<Option<Timestamp>> {
    let status = job.status.as_ref()?;
    let c = condition(status, "Complete").or_else(|| condition(status, "Failed"))?;
    Some(c.last_transition_time.as_ref().map(|t| t.0))
}

fn new_condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `ensureJobConditionStatus`: sets the condition's status, reason and message
/// (a `False` condition is not added when absent). Returns whether anything changed.
fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Some(Time(now));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
        return true;
    }
    if status == "False" {
        return false;
    }
    let mut c = new_condition(type_, reason, message, now);
    c.status = status.into();
    conditions.push(c);
    true
}

/// The completion index of a pod (annotation), if valid.
pub(crate) fn completion_index(pod: &Pod) -> Option<i32> {
    pod.annotations()
        .get(INDEX_ANNOTATION)
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|i| *i >= 0)
}

/// Parses `completedIndexes` ("1,3-5"); malformed parts are skipped.
pub(crate) fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(a), Ok(b)) = (a, b) {
            for i in a.max(0)..=b.min(completions.saturating_sub(1)) {
                out.insert(i);
            }
        }
    }
    out
}

/// Formats indexes as upstream does: ranges `a-b`, but two neighbours as `a,b`.
pub(crate) fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut intervals: Vec<(i32, i32)> = Vec::new();
    for &i in set {
        match intervals.last_mut() {
            Some((_, last)) if *last + 1 == i => *last = i,
            _ => intervals.push((i, i)),
        }
    }
    intervals
        .iter()
        .map(|&(a, b)| match b - a {
            0 => a.to_string(),
            1 => format!("{a},{b}"),
            _ => format!("{a}-{b}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// When the pod finished: its latest container termination, else its Ready=False
/// transition, else `now` (upstream's `getFinishedTime`).
fn finish_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let status = pod.status.as_ref();
    let ended = status
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    ended
        .or_else(|| {
            status?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")?
                .last_transition_time
                .as_ref()
                .map(|t| t.0)
        })
        .unwrap_or(now)
}

fn only_replace_failed(spec: &JobSpec) -> bool {
    spec.pod_replacement_policy.as_deref() == Some("Failed") || spec.pod_failure_policy.is_some()
}

/// Upstream's `isPodFailed`: Failed, or terminating and not Succeeded unless only failed
/// pods are replaced.
fn is_pod_failed(pod: &Pod, spec: &JobSpec) -> bool {
    if pods::phase(pod) == Some("Failed") {
        return true;
    }
    if only_replace_failed(spec) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && pods::phase(pod) != Some("Succeeded")
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// The action of the first `podFailurePolicy` rule a failed pod matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FailureAction {
    /// No rule matched: the failure counts.
    NoMatch,
    /// `FailJob`, with upstream's message.
    FailJob(String),
    /// `Ignore`: the failure does not count.
    Ignore,
    /// `Count`.
    Count,
    /// `FailIndex`.
    FailIndex,
}

impl FailureAction {
    fn counts(&self) -> bool {
        !matches!(self, FailureAction::Ignore)
    }
}

/// Upstream's `matchPodFailurePolicy` for a failed pod.
pub(crate) fn match_failure_policy(rules: &[PodFailurePolicyRule], pod: &Pod) -> FailureAction {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let status = pod.status.as_ref();
    for (index, rule) in rules.iter().enumerate() {
        let mut message = None;
        if let Some(req) = &rule.on_exit_codes {
            let statuses = status.into_iter().flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            });
            for cs in statuses {
                if req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                    continue;
                }
                let Some(code) = cs
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code)
                else {
                    continue;
                };
                if code == 0 {
                    continue;
                }
                let listed = req.values.contains(&code);
                let hit = match req.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                };
                if hit {
                    message = Some(format!(
                        "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                        cs.name, rule.action
                    ));
                    break;
                }
            }
        } else if let Some(conds) = &rule.on_pod_conditions {
            let have = status.and_then(|s| s.conditions.as_ref());
            for want in conds {
                let hit = have.is_some_and(|cs| {
                    cs.iter()
                        // `status` is optional since 1.35 and defaults to True
                        .any(|c| {
                            c.type_ == want.type_
                                && c.status == want.status.as_deref().unwrap_or("True")
                        })
                });
                if hit {
                    message = Some(format!(
                        "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                        want.type_, rule.action
                    ));
                    break;
                }
            }
        }
        let Some(message) = message else { continue };
        return match rule.action.as_str() {
            "FailJob" => FailureAction::FailJob(message),
            "Ignore" => FailureAction::Ignore,
            "FailIndex" => FailureAction::FailIndex,
            _ => FailureAction::Count,
        };
    }
    FailureAction::NoMatch
}

/// Upstream's `matchSuccessPolicy`: the message of the first rule the succeeded indexes
/// satisfy.
pub(crate) fn match_success_policy(
    spec: &JobSpec,
    completions: i32,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    let rules = &spec.success_policy.as_ref()?.rules;
    for (index, rule) in rules.iter().enumerate() {
        let met = match &rule.succeeded_indexes {
            Some(ix) => {
                let want = parse_indexes(ix, completions);
                let have = want.intersection(succeeded).count();
                match rule.succeeded_count {
                    Some(n) => i64::try_from(have).unwrap_or(i64::MAX) >= i64::from(n),
                    None => !want.is_empty() && have == want.len(),
                }
            }
            None => rule.succeeded_count.is_some_and(|n| {
                i64::try_from(succeeded.len()).unwrap_or(i64::MAX) >= i64::from(n)
            }),
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

/// Container restarts of running or pending pods reached the backoff limit (restartPolicy
/// OnFailure; upstream's `pastBackoffLimitOnFailure`).
fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[&Pod]) -> bool {
    let policy = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    if policy != Some("OnFailure") {
        return false;
    }
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(pods::phase(p), Some("Running" | "Pending")))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| i64::from(c.restart_count))
        .sum();
    let limit = i64::from(spec.backoff_limit.unwrap_or(6));
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn non_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Decides one reconcile of `job` from its owned `pods`, pure. `satisfied`: no creates or
/// deletes of this Job are still unobserved.
pub(crate) fn plan(
    job: &Job,
    pods: &[&Pod],
    now: Timestamp,
    backoff: Backoff,
    satisfied: bool,
) -> Plan {
    let mut out = Plan {
        backoff,
        ..Default::default()
    };
    let Some(spec) = job.spec.as_ref() else {
        return out;
    };
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut conditions = old.conditions.clone().unwrap_or_default();

    // A finished Job only lets go of its pods.
    if finished_at(job).is_some() || job.metadata.deletion_timestamp.is_some() {
        out.release = pods
            .iter()
            .filter(|p| has_finalizer(p))
            .map(|p| PodRef::of(p))
            .collect();
        out.status = status;
        return out;
    }

    let indexed = spec.completion_mode.as_deref() == Some("Indexed") && spec.completions.is_some();
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let suspended = spec.suspend == Some(true);
    let rules = spec
        .pod_failure_policy
        .as_ref()
        .map(|p| p.rules.as_slice())
        .unwrap_or(&[]);
    let in_range = |i: Option<i32>| i.is_some_and(|i| completions.is_none_or(|c| i < c));

    // Step 3 of the protocol: UIDs whose finalizer is gone move into the counters.
    let by_uid: HashMap<&str, &Pod> = pods
        .iter()
        .filter_map(|p| Some((p.metadata.uid.as_deref()?, *p)))
        .collect();
    let uncounted = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut succeeded = old.succeeded.unwrap_or(0);
    let mut failed = old.failed.unwrap_or(0);
    let mut still_succeeded = Vec::new();
    let mut still_failed = Vec::new();
    for (uids, keep, counter) in [
        (&uncounted.succeeded, &mut still_succeeded, &mut succeeded),
        (&uncounted.failed, &mut still_failed, &mut failed),
    ] {
        for uid in uids.iter().flatten() {
            match by_uid.get(uid.as_str()) {
                Some(p) if has_finalizer(p) => keep.push(uid.clone()),
                _ => *counter = counter.saturating_add(1),
            }
        }
    }
    let recorded: HashSet<String> = still_succeeded
        .iter()
        .chain(still_failed.iter())
        .cloned()
        .collect();

    // backoffLimitPerIndex: indexes that failed for good.
    let per_index = indexed && spec.backoff_limit_per_index.is_some();
    let mut failed_indexes = old
        .failed_indexes
        .as_deref()
        .filter(|_| per_index)
        .map(|s| parse_indexes(s, completions.unwrap_or(0)))
        .unwrap_or_default();
    let mut done_indexes = old
        .completed_indexes
        .as_deref()
        .filter(|_| indexed)
        .map(|s| parse_indexes(s, completions.unwrap_or(0)))
        .unwrap_or_default();

    // Step 1: finished pods that still carry the finalizer and were not recorded.
    let mut new_succeeded: Vec<(&Pod, Timestamp)> = Vec::new();
    let mut new_failed: Vec<(&Pod, Timestamp)> = Vec::new();
    let mut ignored: Vec<&Pod> = Vec::new();
    let mut fail_job: Option<String> = None;
    for p in pods.iter().copied() {
        let uid = p.metadata.uid.as_deref().unwrap_or_default();
        if !has_finalizer(p) || recorded.contains(uid) {
            continue;
        }
        if pods::phase(p) == Some("Succeeded") {
            if !indexed || in_range(completion_index(p)) {
                new_succeeded.push((p, finish_time(p, now)));
            } else {
                ignored.push(p);
            }
        } else if is_pod_failed(p, spec) {
            let action = if rules.is_empty() {
                FailureAction::NoMatch
            } else {
                match_failure_policy(rules, p)
            };
            if let FailureAction::FailJob(m) = &action {
                fail_job.get_or_insert(m.clone());
            }
            if per_index
                && let Some(i) = completion_index(p).filter(|i| in_range(Some(*i)))
                && index_failed(spec, p, &action)
            {
                failed_indexes.insert(i);
            }
            if action.counts() && (!indexed || in_range(completion_index(p))) {
                new_failed.push((p, finish_time(p, now)));
            } else {
                ignored.push(p);
            }
        }
    }
    // Bounded like upstream: the rest waits for the next reconcile.
    let room = MAX_UNCOUNTED.saturating_sub(recorded.len());
    new_succeeded.truncate(room);
    new_failed.truncate(room.saturating_sub(new_succeeded.len()));
    if new_succeeded.len() + new_failed.len() >= room {
        out.requeue_after(Duration::ZERO);
    }
    for (p, _) in &new_succeeded {
        if indexed {
            if let Some(i) = completion_index(p) {
                done_indexes.insert(i);
            }
        } else {
            still_succeeded.push(p.metadata.uid.clone().unwrap_or_default());
        }
        out.release.push(PodRef::of(p));
    }
    for (p, _) in &new_failed {
        still_failed.push(p.metadata.uid.clone().unwrap_or_default());
        out.release.push(PodRef::of(p));
    }
    for p in &ignored {
        out.release.push(PodRef::of(p));
    }
    // Recorded but still carrying the finalizer: step 2 again (idempotent).
    for p in pods.iter().copied() {
        let uid = p.metadata.uid.as_deref().unwrap_or_default();
        if recorded.contains(uid) && has_finalizer(p) {
            out.release.push(PodRef::of(p));
        }
    }
    let succeeded_total = if indexed {
        count(done_indexes.len())
    } else {
        succeeded.saturating_add(count(still_succeeded.len()))
    };
    let failed_total = failed.saturating_add(count(still_failed.len()));
    out.backoff = backoff.after(
        &new_succeeded.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
        &new_failed.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
    );

    let active: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| pods::is_active(p))
        .collect();
    let mut terminating = count(
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && !pods::is_terminal(p))
            .count(),
    );

    // The finishing condition: an interim one already written, or a new one.
    let mut interim: Option<JobCondition> = condition(&old, "SuccessCriteriaMet")
        .or_else(|| condition(&old, "FailureTarget"))
        .cloned();
    let mut new_interim = false;
    if interim.is_none() {
        let failure = |(reason, message): (&str, &str)| {
            Some(new_condition("FailureTarget", reason, message, now))
        };
        let deadline = spec.active_deadline_seconds.filter(|_| !suspended);
        let started = old.start_time.as_ref().map(|t| t.0);
        let all_indexes_finished = completions.is_some_and(|c| {
            count(done_indexes.len()).saturating_add(count(failed_indexes.len())) >= c
        });
        interim = if let Some(m) = &fail_job {
            failure(("PodFailurePolicy", m))
        } else if per_index
            && spec
                .max_failed_indexes
                .is_some_and(|m| count(failed_indexes.len()) > m)
        {
            failure(MAX_FAILED_INDEXES_EXCEEDED)
        } else if per_index && !failed_indexes.is_empty() && all_indexes_finished {
            failure(FAILED_INDEXES)
        } else if failed_total > spec.backoff_limit.unwrap_or(6)
            || past_backoff_limit_on_failure(spec, &active)
        {
            failure(BACKOFF_LIMIT_EXCEEDED)
        } else if let (Some(ads), Some(start)) = (deadline, started) {
            let limit = Duration::from_secs(u64::try_from(ads).unwrap_or(0));
            let elapsed = since(now, start);
            if elapsed >= limit {
                failure(DEADLINE_EXCEEDED)
            } else {
                out.requeue_after(limit - elapsed);
                None
            }
        } else {
            None
        };
        if interim.is_none()
            && indexed
            && let Some(m) = match_success_policy(spec, completions.unwrap_or(0), &done_indexes)
        {
            interim = Some(new_condition(
                "SuccessCriteriaMet",
                "SuccessPolicy",
                &m,
                now,
            ));
        }
        new_interim = interim.is_some();
    }

    let mut active_count = count(active.len());
    let mut ready = count(active.iter().filter(|p| pods::is_ready(p)).count());
    let mut extra_failed = Vec::new();
    if let Some(c) = &interim {
        // Finishing: every active pod goes; when failing, they count as failed.
        let failing = c.type_ == "FailureTarget";
        for p in &active {
            out.delete.push(PodRef::of(p));
            if failing
                && has_finalizer(p)
                && !recorded.contains(p.metadata.uid.as_deref().unwrap_or_default())
                && (!indexed || in_range(completion_index(p)))
            {
                extra_failed.push(p.metadata.uid.clone().unwrap_or_default());
            }
            if has_finalizer(p) {
                out.release.push(PodRef::of(p));
            }
        }
        terminating = terminating.saturating_add(active_count);
        active_count = 0;
        ready = 0;
    } else {
        if satisfied && job.metadata.deletion_timestamp.is_none() {
            let closed: BTreeSet<i32> = done_indexes.union(&failed_indexes).copied().collect();
            if per_index {
                out.index_failures = index_failure_counts(spec, pods);
                out.index_wait = index_backoff(spec, pods, now);
            }
            let (created, deleted) = manage(
                &mut out,
                spec,
                &active,
                succeeded_total,
                &closed,
                terminating,
                parallelism,
                indexed,
                now,
            );
            active_count = active_count
                .saturating_add(count(created))
                .saturating_sub(count(deleted.len()));
            ready = count(
                active
                    .iter()
                    .filter(|p| pods::is_ready(p) && !deleted.contains(&p.name_any()))
                    .count(),
            );
            terminating = terminating.saturating_add(count(deleted.len()));
            // Suspension, only when the pods were managed in this reconcile.
            if suspended {
                if ensure_condition(
                    &mut conditions,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                ) {
                    out.events
                        .push((EventType::Normal, "Suspended", "Job suspended".into()));
                }
            } else if ensure_condition(
                &mut conditions,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            ) {
                out.events
                    .push((EventType::Normal, "Resumed", "Job resumed".into()));
                status.start_time = Some(Time(now));
            }
        }
        let complete = match completions {
            None => succeeded_total > 0 && active_count == 0,
            Some(c) => succeeded_total >= c && active_count == 0,
        };
        if complete {
            let (reason, message) = COMPLETIONS_REACHED;
            interim = Some(new_condition("SuccessCriteriaMet", reason, message, now));
            new_interim = true;
        }
    }
    still_failed.extend(extra_failed);

    if !suspended && status.start_time.is_none() {
        status.start_time = Some(Time(now));
    }
    if new_interim && let Some(c) = &interim {
        conditions.push(c.clone());
    }
    // The terminal condition, once every pod was counted and none is terminating.
    if let Some(c) = &interim
        && still_succeeded.is_empty()
        && still_failed.is_empty()
        && terminating == 0
        && active_count == 0
    {
        let terminal = if c.type_ == "FailureTarget" {
            "Failed"
        } else {
            "Complete"
        };
        let reason = c.reason.clone().unwrap_or_default();
        let message = c.message.clone().unwrap_or_default();
        conditions.push(new_condition(terminal, &reason, &message, now));
        if terminal == "Complete" {
            status.completion_time = Some(Time(now));
            out.events
                .push((EventType::Normal, "Completed", "Job completed".into()));
        } else {
            out.events.push((
                EventType::Warning,
                static_reason(&reason),
                message.to_string(),
            ));
        }
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            out.requeue_after(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)));
        }
    }

    status.active = non_zero(active_count);
    status.ready = Some(ready);
    status.terminating = Some(terminating);
    status.succeeded = non_zero(if indexed { succeeded_total } else { succeeded });
    status.failed = non_zero(failed);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: (!still_succeeded.is_empty()).then_some(still_succeeded),
        failed: (!still_failed.is_empty()).then_some(still_failed),
    });
    if indexed {
        status.completed_indexes = Some(format_indexes(&done_indexes)).filter(|s| !s.is_empty());
    }
    if per_index {
        status.failed_indexes = Some(format_indexes(&failed_indexes));
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    out.status = status;
    out.release.dedup_by(|a, b| a.uid == b.uid);
    out
}

fn static_reason(reason: &str) -> &'static str {
    match reason {
        "BackoffLimitExceeded" => "BackoffLimitExceeded",
        "DeadlineExceeded" => "DeadlineExceeded",
        "PodFailurePolicy" => "PodFailurePolicy",
        "MaxFailedIndexesExceeded" => "MaxFailedIndexesExceeded",
        "FailedIndexes" => "FailedIndexes",
        _ => "JobFailed",
    }
}

/// Upstream's `isIndexFailed`: a `FailIndex` rule, or a counted failure of a pod whose index
/// had already failed `backoffLimitPerIndex` times before it.
fn index_failed(spec: &JobSpec, pod: &Pod, action: &FailureAction) -> bool {
    match action {
        FailureAction::FailIndex => true,
        FailureAction::Ignore => false,
        _ => {
            let before = annotation_count(pod, INDEX_FAILURE_COUNT);
            spec.backoff_limit_per_index
                .is_some_and(|limit| before >= limit)
        }
    }
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.annotations()
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The last failed pod of every index (upstream's `podsWithDelayedDeletionPerIndex`).
fn last_failed_per_index<'a>(spec: &JobSpec, pods: &[&'a Pod]) -> BTreeMap<i32, &'a Pod> {
    let mut last: BTreeMap<i32, &Pod> = BTreeMap::new();
    for p in pods.iter().copied().filter(|p| is_pod_failed(p, spec)) {
        let Some(i) = completion_index(p) else {
            continue;
        };
        let t = |p: &Pod| finish_time(p, Timestamp::UNIX_EPOCH);
        if last.get(&i).is_none_or(|q| t(q) <= t(p)) {
            last.insert(i, p);
        }
    }
    last
}

/// Upstream's `getNewIndexFailureCounts` for every index with a failed pod: the counts of
/// its last failed pod plus that failure (counted, or ignored by a policy rule).
fn index_failure_counts(spec: &JobSpec, pods: &[&Pod]) -> BTreeMap<i32, (i32, i32)> {
    let rules = spec
        .pod_failure_policy
        .as_ref()
        .map(|p| p.rules.as_slice())
        .unwrap_or(&[]);
    last_failed_per_index(spec, pods)
        .into_iter()
        .map(|(i, p)| {
            let (mut failures, mut ignored) = (
                annotation_count(p, INDEX_FAILURE_COUNT),
                annotation_count(p, INDEX_IGNORED_FAILURE_COUNT),
            );
            if rules.is_empty() || match_failure_policy(rules, p).counts() {
                failures = failures.saturating_add(1);
            } else {
                ignored = ignored.saturating_add(1);
            }
            (i, (failures, ignored))
        })
        .collect()
}

/// With `backoffLimitPerIndex`, each index waits on its own back-off (upstream's
/// `getRemainingTimePerIndex`): 10 s doubled per failure of the index (counted or ignored)
/// up to 10 min, from when its last failed pod finished. Indexes still waiting at `now`.
fn index_backoff(spec: &JobSpec, pods: &[&Pod], now: Timestamp) -> BTreeMap<i32, Duration> {
    last_failed_per_index(spec, pods)
        .into_iter()
        .filter_map(|(i, p)| {
            let before = annotation_count(p, INDEX_FAILURE_COUNT)
                .saturating_add(annotation_count(p, INDEX_IGNORED_FAILURE_COUNT));
            let record = Backoff {
                failures_after_last_success: u32::try_from(before).unwrap_or(0).saturating_add(1),
                last_failure: Some(finish_time(p, now)),
            };
            let wait = record.remaining(now);
            (!wait.is_zero()).then_some((i, wait))
        })
        .collect()
}

/// Upstream's `manageJob` for a running Job: deletes excess (or, suspended, all) active
/// pods and plans creates, honouring the pod-failure back-off. Returns how many pods it
/// plans to create and the names it deletes.
#[allow(clippy::too_many_arguments)]
fn manage(
    out: &mut Plan,
    spec: &JobSpec,
    active: &[&Pod],
    succeeded: i32,
    done_indexes: &BTreeSet<i32>,
    terminating: i32,
    parallelism: i32,
    indexed: bool,
    now: Timestamp,
) -> (usize, Vec<String>) {
    let mut deleted = Vec::new();
    if spec.suspend == Some(true) {
        for p in active {
            out.delete.push(PodRef::of(p));
            deleted.push(p.name_any());
        }
        return (0, deleted);
    }
    let want = match spec.completions {
        None if succeeded > 0 => count(active.len()),
        None => parallelism,
        Some(c) => (c - succeeded).clamp(0, parallelism),
    };
    let want = usize::try_from(want).unwrap_or(0);
    let mut keep: Vec<&Pod> = active.to_vec();
    if indexed {
        // Out-of-range, already succeeded or duplicated indexes go first.
        let completions = spec.completions.unwrap_or(0);
        let mut seen: BTreeMap<i32, &Pod> = BTreeMap::new();
        let mut ranked = active.to_vec();
        // The best pod of an index is the one deleted last.
        ranked.sort_by(|a, b| pods::delete_order(b, a));
        keep.clear();
        for p in ranked {
            match completion_index(p) {
                Some(i)
                    if i < completions && !done_indexes.contains(&i) && !seen.contains_key(&i) =>
                {
                    seen.insert(i, p);
                    keep.push(p);
                }
                _ => {
                    out.delete.push(PodRef::of(p));
                    deleted.push(p.name_any());
                }
            }
        }
    }
    if keep.len() > want {
        keep.sort_by(|a, b| pods::delete_order(a, b));
        for p in keep.iter().take((keep.len() - want).min(MAX_PER_SYNC)) {
            out.delete.push(PodRef::of(p));
            deleted.push(p.name_any());
        }
        return (0, deleted);
    }
    let mut diff = want - keep.len();
    if only_replace_failed(spec) {
        diff = diff.saturating_sub(usize::try_from(terminating).unwrap_or(0));
    }
    let diff = diff.min(MAX_PER_SYNC);
    if diff == 0 {
        return (0, deleted);
    }
    let per_index = indexed && spec.backoff_limit_per_index.is_some();
    // Without a per-index limit the whole Job waits on one back-off; with it, each index.
    let wait = out.backoff.remaining(now);
    if !per_index && !wait.is_zero() {
        out.requeue_after(wait);
        return (0, deleted);
    }
    if indexed {
        let busy: BTreeSet<i32> = keep.iter().filter_map(|p| completion_index(p)).collect();
        let pending: Vec<i32> = (0..spec.completions.unwrap_or(0))
            .filter(|i| !done_indexes.contains(i) && !busy.contains(i))
            .take(diff)
            .collect();
        let ready: Vec<i32> = pending
            .iter()
            .copied()
            .filter(|i| !out.index_wait.contains_key(i))
            .collect();
        if ready.is_empty() {
            let soonest = pending.iter().filter_map(|i| out.index_wait.get(i)).min();
            if let Some(wait) = soonest.copied() {
                out.requeue_after(wait);
            }
        }
        out.create.extend(ready.into_iter().map(Some));
    } else {
        out.create.extend(std::iter::repeat_n(None, diff));
    }
    (out.create.len(), deleted)
}

/// The pod a Job creates for `index`: the template with the tracking finalizer and, for an
/// Indexed Job, the index annotation and label, `JOB_COMPLETION_INDEX` and the hostname.
pub(crate) fn pod_for(job: &Job, owner: OwnerReference, index: Option<i32>) -> Pod {
    let name = job.name_any();
    let ns = job.namespace().unwrap_or_default();
    let mut template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let fins = meta.finalizers.get_or_insert_with(Vec::new);
    if !fins.iter().any(|f| f == TRACKING_FINALIZER) {
        fins.push(TRACKING_FINALIZER.into());
    }
    let prefix = match index {
        None => format!("{name}-"),
        Some(i) => {
            meta.annotations
                .get_or_insert_with(Default::default)
                .insert(INDEX_ANNOTATION.into(), i.to_string());
            meta.labels
                .get_or_insert_with(Default::default)
                .insert(INDEX_ANNOTATION.into(), i.to_string());
            if let Some(spec) = template.spec.as_mut() {
                if spec.hostname.as_deref().is_none_or(str::is_empty) {
                    spec.hostname = Some(format!("{name}-{i}"));
                }
                for c in spec
                    .containers
                    .iter_mut()
                    .chain(spec.init_containers.iter_mut().flatten())
                {
                    let env = c.env.get_or_insert_with(Vec::new);
                    if !env.iter().any(|e| e.name == INDEX_ENV) {
                        env.push(EnvVar {
                            name: INDEX_ENV.into(),
                            value: None,
                            value_from: Some(EnvVarSource {
                                field_ref: Some(ObjectFieldSelector {
                                    api_version: None,
                                    field_path: format!(
                                        "metadata.annotations['{INDEX_ANNOTATION}']"
                                    ),
                                }),
                                ..Default::default()
                            }),
                        });
                    }
                }
            }
            format!("{name}-{i}-")
        }
    };
    pods::pod_from_template(&template, &ns, owner, PodName::Generate(prefix))
}

/// The controller reference of a Job's pods.
pub(crate) fn owner_ref(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        ..pods::owner_ref("Job", name, uid)
    }
}

pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let exp_key = key.to_string();
    let ns = key.namespace.as_str();
    let Some(job) = ctx.cached_owner(&ctx.jobs, &ctx.job_expectations, key) else {
        ctx.forget_job_backoff(&exp_key);
        // Pods of a deleted Job keep no tracking finalizer.
        release_stale(ctx, key, None).await?;
        return Ok(None);
    };
    let Some(spec) = job.spec.as_ref() else {
        return Ok(None);
    };
    let uid = job.metadata.uid.clone().unwrap_or_default();
    release_stale(ctx, key, Some(&uid)).await?;
    let finished = finished_at(&job);
    let deleting = job.metadata.deletion_timestamp.is_some() || finished.is_some();
    let selector = parse_selector("Job", &job.metadata, spec.selector.as_ref())?;
    let owner = owner_ref(&key.name, &uid);
    let owned =
        crate::replicaset::claim_pods(ctx, ns, &uid, &owner, selector.as_ref(), deleting).await?;
    let owned: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
    let satisfied = ctx
        .job_expectations
        .satisfied(&exp_key, |id| ctx.seen(ns, id));
    let now = ctx.now();
    let mut plan = plan(&job, &owned, now, ctx.job_backoff(&exp_key), satisfied);

    let mut first_error = None;
    delete_pods(ctx, &job, &exp_key, &plan.delete, &mut first_error).await;
    let failed_creates = create_pods(
        ctx,
        &job,
        &owner,
        &exp_key,
        &plan.create,
        &plan.index_failures,
        &mut first_error,
    )
    .await;
    if failed_creates > 0
        && let Some(a) = plan.status.active
    {
        plan.status.active = non_zero(a.saturating_sub(count(failed_creates)));
    }
    if Some(&plan.status) != job.status.as_ref() {
        let mut updated = (*job).clone();
        updated.status = Some(plan.status.clone());
        ctx.replace_status("Job", ns, &key.name, &updated).await?;
    }
    ctx.set_job_backoff(&exp_key, plan.backoff);
    for (type_, reason, message) in &plan.events {
        ctx.event_about(COMPONENT, job.as_ref(), *type_, reason, message.clone());
    }
    for p in &plan.release {
        remove_finalizer(ctx, ns, p).await?;
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    // The TTL after finishing.
    if let (Some(Some(at)), Some(ttl)) = (finished, spec.ttl_seconds_after_finished) {
        let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
        let left = ttl.saturating_sub(since(now, at));
        if left.is_zero() {
            delete_finished(ctx, &job).await?;
            return Ok(None);
        }
        plan.requeue_after(left);
    }
    Ok(plan.requeue)
}

/// Removes the tracking finalizer from pods controlled by a Job named `key` whose UID is
/// not `live_uid` (the Job was deleted, or replaced by another of the same name).
async fn release_stale(
    ctx: &Ctx,
    key: &Key,
    live_uid: Option<&str>,
) -> Result<(), ControllerError> {
    for p in ctx.pods_in(&key.namespace) {
        let stale = pods::controller_ref(&p.metadata).is_some_and(|r| {
            r.kind == "Job" && r.name == key.name && Some(r.uid.as_str()) != live_uid
        });
        if stale && has_finalizer(&p) {
            remove_finalizer(ctx, &key.namespace, &PodRef::of(&p)).await?;
        }
    }
    Ok(())
}

async fn remove_finalizer(ctx: &Ctx, ns: &str, p: &PodRef) -> Result<(), ControllerError> {
    // The field goes when no finalizer is left (as upstream's JSON patch leaves it).
    let finalizers = if p.keep_finalizers.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(p.keep_finalizers)
    };
    let patch = Patch::Merge(serde_json::json!({"metadata": {
        "uid": p.uid,
        "resourceVersion": p.resource_version,
        "finalizers": finalizers,
    }}));
    debug!(%ns, pod = %p.name, "removing the job tracking finalizer");
    match ctx
        .pods_api(ns)
        .patch(&p.name, &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(ControllerError::api("remove finalizer", "Pod", ns, &p.name)(e)),
    }
}

async fn delete_pods(
    ctx: &Ctx,
    job: &Job,
    exp_key: &str,
    victims: &[PodRef],
    first_error: &mut Option<ControllerError>,
) {
    if victims.is_empty() {
        return;
    }
    let ns = job.namespace().unwrap_or_default();
    let api = ctx.pods_api(&ns);
    info!(%ns, job = %job.name_any(), count = victims.len(), "deleting pods");
    let results = join_all(victims.iter().map(|p| {
        let api = api.clone();
        async move {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(p.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            (p, api.delete(&p.name, &dp).await)
        }
    }))
    .await;
    for (p, r) in results {
        match r {
            Ok(_) => {
                ctx.job_expectations.deleted(
                    exp_key,
                    PodId {
                        name: p.name.clone(),
                        uid: p.uid.clone(),
                    },
                );
                ctx.event_about(
                    COMPONENT,
                    job,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", p.name),
                );
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                first_error.get_or_insert(ControllerError::api("delete", "Pod", &ns, &p.name)(e));
            }
        }
    }
}

/// Creates the planned pods in slow-start batches; returns how many were not created.
async fn create_pods(
    ctx: &Ctx,
    job: &Job,
    owner: &OwnerReference,
    exp_key: &str,
    indexes: &[Option<i32>],
    index_failures: &BTreeMap<i32, (i32, i32)>,
    first_error: &mut Option<ControllerError>,
) -> usize {
    if indexes.is_empty() {
        return 0;
    }
    let ns = job.namespace().unwrap_or_default();
    let api = ctx.pods_api(&ns);
    info!(%ns, job = %job.name_any(), count = indexes.len(), "creating pods");
    let mut rest = indexes;
    for batch in crate::replicaset::slow_start_batches(indexes.len()) {
        let (now, later) = rest.split_at(batch.min(rest.len()));
        rest = later;
        let results = join_all(now.iter().map(|i| {
            let mut pod = pod_for(job, owner.clone(), *i);
            if job
                .spec
                .as_ref()
                .is_some_and(|s| s.backoff_limit_per_index.is_some())
                && let Some(i) = i
            {
                let (failures, ignored) = index_failures.get(i).copied().unwrap_or((0, 0));
                let a = pod
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default);
                a.insert(INDEX_FAILURE_COUNT.into(), failures.to_string());
                if ignored > 0 {
                    a.insert(INDEX_IGNORED_FAILURE_COUNT.into(), ignored.to_string());
                }
            }
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod).await }
        }))
        .await;
        let mut failed = false;
        for r in results {
            match r {
                Ok(p) => {
                    let name = p.name_any();
                    ctx.job_expectations.created(
                        exp_key,
                        PodId {
                            name: name.clone(),
                            uid: p.metadata.uid.unwrap_or_default(),
                        },
                    );
                    ctx.event_about(
                        COMPONENT,
                        job,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    );
                }
                Err(e) => {
                    failed = true;
                    first_error.get_or_insert(ctx.pod_create_failed(COMPONENT, job, e));
                }
            }
        }
        if failed {
            return rest.len() + now.len();
        }
    }
    0
}

/// The TTL-after-finished deletion: foreground, fenced by the Job's UID.
async fn delete_finished(ctx: &Ctx, job: &Job) -> Result<(), ControllerError> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    info!(%ns, job = %name, "deleting a finished job after its TTL");
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: None,
        }),
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..Default::default()
    };
    match Api::<Job>::namespaced(ctx.client.clone(), &ns)
        .delete(&name, &dp)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(ControllerError::api("delete", "Job", &ns, &name)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
        let mut j: Job = serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "x"}]}}},
            "status": status,
        }))
        .expect("job");
        let mut s = serde_json::to_value(j.spec.take()).expect("spec");
        if let (Some(base), Some(add)) = (s.as_object_mut(), spec.as_object()) {
            for (k, v) in add {
                base.insert(k.clone(), v.clone());
            }
        }
        j.spec = serde_json::from_value(s).expect("spec");
        j
    }

    fn pod(name: &str, phase: &str, index: Option<i32>, finalizer: bool) -> Pod {
        let mut annotations = std::collections::BTreeMap::new();
        if let Some(i) = index {
            annotations.insert(INDEX_ANNOTATION.to_string(), i.to_string());
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                annotations: Some(annotations),
                finalizers: finalizer.then(|| vec![TRACKING_FINALIZER.to_string()]),
                ..Default::default()
            },
            spec: None,
            status: Some(serde_json::from_value(json!({"phase": phase})).expect("status")),
        }
    }

    fn cond<'a>(s: &'a JobStatus, t: &str) -> Option<&'a JobCondition> {
        s.conditions.as_ref()?.iter().find(|c| c.type_ == t)
    }

    fn uncounted(s: &JobStatus) -> (Vec<String>, Vec<String>) {
        let u = s.uncounted_terminated_pods.clone().unwrap_or_default();
        (
            u.succeeded.unwrap_or_default(),
            u.failed.unwrap_or_default(),
        )
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_ten_minutes() {
        let b = Backoff::default().after(&[], &[at(0)]);
        assert_eq!(b.remaining(at(3)), Duration::from_secs(7));
        let b = b.after(&[], &[at(10)]);
        assert_eq!(b.failures_after_last_success, 2);
        assert_eq!(b.remaining(at(10)), Duration::from_secs(20));
        assert_eq!(b.remaining(at(31)), Duration::ZERO);
        let many = Backoff {
            failures_after_last_success: 12,
            last_failure: Some(at(0)),
        };
        assert_eq!(many.remaining(at(0)), MAX_BACKOFF);
        // A success after the failures resets the record.
        assert_eq!(b.after(&[at(20)], &[]), Backoff::default());
        let mixed = b.after(&[at(20)], &[at(15), at(25)]);
        assert_eq!(mixed.failures_after_last_success, 1);
        assert_eq!(mixed.last_failure, Some(at(25)));
    }

    #[test]
    fn completed_indexes_are_formatted_as_upstream() {
        let set: BTreeSet<i32> = [0, 1, 3, 4, 5, 7].into_iter().collect();
        assert_eq!(format_indexes(&set), "0,1,3-5,7");
        assert_eq!(parse_indexes("0,1,3-5,7", 10), set);
        assert_eq!(parse_indexes("2-9", 4), [2, 3].into_iter().collect());
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn a_new_job_starts_parallelism_pods_and_its_start_time() {
        let j = job(json!({"completions": 5, "parallelism": 2}), json!(null));
        let p = plan(&j, &[], at(0), Backoff::default(), true);
        assert_eq!(p.create, vec![None, None]);
        assert_eq!(p.status.active, Some(2));
        assert_eq!(p.status.start_time, Some(Time(at(0))));
        assert_eq!(p.status.ready, Some(0));
    }

    #[test]
    fn a_finished_pod_is_recorded_before_its_finalizer_goes_then_counted() {
        let j = job(json!({"completions": 2, "parallelism": 1}), json!({}));
        let done = pod("a", "Succeeded", None, true);
        let p = plan(&j, &[&done], at(0), Backoff::default(), true);
        assert_eq!(uncounted(&p.status).0, vec!["uid-a".to_string()]);
        assert_eq!(
            p.status.succeeded, None,
            "not counted before the finalizer goes"
        );
        assert_eq!(p.release.len(), 1);
        assert_eq!(p.release[0].name, "a");
        assert_eq!(p.create, vec![None], "one completion left");

        // The finalizer is gone: the UID moves into the counter.
        let mut j2 = j.clone();
        j2.status = Some(p.status.clone());
        let released = pod("a", "Succeeded", None, false);
        let p2 = plan(&j2, &[&released], at(1), Backoff::default(), false);
        assert_eq!(p2.status.succeeded, Some(1));
        assert_eq!(uncounted(&p2.status), (vec![], vec![]));
        assert!(p2.release.is_empty());
    }

    #[test]
    fn success_sets_success_criteria_met_then_complete() {
        let j = job(json!({"completions": 1, "parallelism": 1}), json!({}));
        let done = pod("a", "Succeeded", None, true);
        let p = plan(&j, &[&done], at(0), Backoff::default(), true);
        let c = cond(&p.status, "SuccessCriteriaMet").expect("interim");
        assert_eq!(c.reason.as_deref(), Some("CompletionsReached"));
        assert_eq!(
            c.message.as_deref(),
            Some("Reached expected number of succeeded pods")
        );
        assert!(cond(&p.status, "Complete").is_none(), "a pod is uncounted");

        let mut j2 = j.clone();
        j2.status = Some(p.status.clone());
        let released = pod("a", "Succeeded", None, false);
        let p2 = plan(&j2, &[&released], at(2), Backoff::default(), true);
        let c = cond(&p2.status, "Complete").expect("complete");
        assert_eq!(c.reason.as_deref(), Some("CompletionsReached"));
        assert_eq!(p2.status.completion_time, Some(Time(at(2))));
        assert_eq!(p2.status.succeeded, Some(1));
        assert!(p2.events.iter().any(|e| e.1 == "Completed"));
        assert!(p2.create.is_empty());
    }

    #[test]
    fn failures_wait_for_the_backoff_and_past_the_limit_fail_the_job() {
        let j = job(
            json!({"completions": 1, "parallelism": 1, "backoffLimit": 1}),
            json!({"failed": 1, "startTime": Time(at(0))}),
        );
        // The first failure was counted at 5 s: no new pod before 15 s.
        let b = Backoff::default().after(&[], &[at(5)]);
        let p = plan(&j, &[], at(8), b, true);
        assert!(p.create.is_empty());
        assert_eq!(p.requeue, Some(Duration::from_secs(7)));
        let p = plan(&j, &[], at(15), b, true);
        assert_eq!(p.create, vec![None]);

        // The second failure exceeds backoffLimit 1.
        let second = pod("b", "Failed", None, true);
        let p = plan(&j, &[&second], at(20), b, true);
        let c = cond(&p.status, "FailureTarget").expect("failure target");
        assert_eq!(c.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            c.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
        assert!(cond(&p.status, "Failed").is_none());
        assert!(p.create.is_empty());
        assert_eq!(p.backoff.failures_after_last_success, 2);

        let mut j2 = j.clone();
        j2.status = Some(p.status.clone());
        let released = pod("b", "Failed", None, false);
        let p2 = plan(&j2, &[&released], at(21), b, true);
        let c = cond(&p2.status, "Failed").expect("failed");
        assert_eq!(c.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(p2.status.failed, Some(2));
        assert!(
            p2.events
                .iter()
                .any(|e| e.0 == EventType::Warning && e.1 == "BackoffLimitExceeded")
        );
    }

    #[test]
    fn the_active_deadline_deletes_active_pods_and_counts_them_failed() {
        let j = job(
            json!({"completions": 1, "activeDeadlineSeconds": 10}),
            json!({"startTime": Time(at(0)), "active": 1}),
        );
        let running = pod("a", "Running", None, true);
        let p = plan(&j, &[&running], at(4), Backoff::default(), true);
        assert_eq!(p.requeue, Some(Duration::from_secs(6)));
        assert!(cond(&p.status, "FailureTarget").is_none());

        let p = plan(&j, &[&running], at(10), Backoff::default(), true);
        let c = cond(&p.status, "FailureTarget").expect("failure target");
        assert_eq!(c.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(
            c.message.as_deref(),
            Some("Job was active longer than specified deadline")
        );
        assert_eq!(p.delete.len(), 1);
        assert_eq!(uncounted(&p.status).1, vec!["uid-a".to_string()]);
        assert_eq!(p.status.terminating, Some(1));
        assert_eq!(p.status.active, None);
    }

    #[test]
    fn indexed_jobs_create_pending_indexes_with_env_and_hostname() {
        let j = job(
            json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
            json!({"completedIndexes": "0"}),
        );
        let busy = pod("pi-1-x", "Running", Some(1), true);
        let dup = pod("pi-1-y", "Pending", Some(1), true);
        let p = plan(&j, &[&busy, &dup], at(0), Backoff::default(), true);
        assert_eq!(p.create, vec![Some(2)]);
        assert_eq!(p.delete.len(), 1, "the duplicate of index 1");
        assert_eq!(p.delete[0].name, "pi-1-y");

        let made = pod_for(&j, owner_ref("pi", "job-uid"), Some(2));
        assert_eq!(made.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(
            made.annotations().get(INDEX_ANNOTATION).map(String::as_str),
            Some("2")
        );
        assert_eq!(
            made.labels().get(INDEX_ANNOTATION).map(String::as_str),
            Some("2")
        );
        assert!(made.finalizers().iter().any(|f| f == TRACKING_FINALIZER));
        let spec = made.spec.expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        let e = env
            .iter()
            .find(|e| e.name == "JOB_COMPLETION_INDEX")
            .expect("env");
        assert_eq!(
            e.value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("metadata.annotations['batch.kubernetes.io/job-completion-index']")
        );
        let owner = &made.metadata.owner_references.expect("owner")[0];
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str()),
            ("batch/v1", "Job")
        );

        // A succeeded index goes straight into completedIndexes.
        let done = pod("pi-1-x", "Succeeded", Some(1), true);
        let p = plan(&j, &[&done], at(1), Backoff::default(), true);
        assert_eq!(p.status.completed_indexes.as_deref(), Some("0,1"));
        assert_eq!(p.status.succeeded, Some(2));
        assert_eq!(p.create, vec![Some(2), Some(3)]);
    }

    #[test]
    fn suspend_deletes_active_pods_and_resume_resets_the_start_time() {
        let j = job(
            json!({"completions": 2, "parallelism": 2, "suspend": true}),
            json!({"startTime": Time(at(0))}),
        );
        let running = pod("a", "Running", None, true);
        let p = plan(&j, &[&running], at(5), Backoff::default(), true);
        assert_eq!(p.delete.len(), 1);
        let c = cond(&p.status, "Suspended").expect("suspended");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
            ("True", Some("JobSuspended"), Some("Job suspended"))
        );
        assert!(p.events.iter().any(|e| e.1 == "Suspended"));

        let mut resumed = j.clone();
        resumed.spec.as_mut().expect("spec").suspend = Some(false);
        resumed.status = Some(p.status.clone());
        let p = plan(&resumed, &[], at(50), Backoff::default(), true);
        let c = cond(&p.status, "Suspended").expect("suspended");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("JobResumed"))
        );
        assert_eq!(p.status.start_time, Some(Time(at(50))));
        assert_eq!(p.create.len(), 2);
    }

    #[test]
    fn pod_failure_policy_rules_fail_the_job_or_ignore_the_failure() {
        let rules: Vec<PodFailurePolicyRule> = serde_json::from_value(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
        ]))
        .expect("rules");
        let mut p = pod("a", "Failed", None, true);
        p.status = Some(
            serde_json::from_value(json!({"phase": "Failed", "containerStatuses": [{
                "name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 42}}}]}))
            .expect("status"),
        );
        assert_eq!(
            match_failure_policy(&rules, &p),
            FailureAction::FailJob(
                "Container c for pod default/a failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        let mut disrupted = pod("b", "Failed", None, true);
        disrupted.status = Some(
            serde_json::from_value(json!({"phase": "Failed", "conditions": [
                {"type": "DisruptionTarget", "status": "True"}]}))
            .expect("status"),
        );
        assert_eq!(
            match_failure_policy(&rules, &disrupted),
            FailureAction::Ignore
        );

        let j = job(
            json!({"completions": 1, "podFailurePolicy": {"rules": rules}}),
            json!({}),
        );
        let out = plan(&j, &[&disrupted], at(0), Backoff::default(), true);
        assert_eq!(out.status.failed, None);
        assert_eq!(uncounted(&out.status), (vec![], vec![]));
        assert_eq!(
            out.release.len(),
            1,
            "an ignored failure is released uncounted"
        );
        assert_eq!(out.create, vec![None]);
        let out = plan(&j, &[&p], at(0), Backoff::default(), true);
        let c = cond(&out.status, "FailureTarget").expect("failure target");
        assert_eq!(c.reason.as_deref(), Some("PodFailurePolicy"));
    }

    #[test]
    fn with_backoff_limit_per_index_each_index_waits_on_its_own_back_off() {
        let spec = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
            "backoffLimitPerIndex": 5, "backoffLimit": i32::MAX});
        let j = job(spec, json!({}));
        // Index 1's pod failed at t=0 after two failures of the index before it.
        let mut failed = pod("a", "Failed", Some(1), true);
        failed.status = Some(
            serde_json::from_value(json!({"phase": "Failed", "containerStatuses": [{
                "name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "finishedAt": at(0).to_string()}}}]}))
            .expect("status"),
        );
        failed
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(INDEX_FAILURE_COUNT.into(), "2".into());
        let running = pod("b", "Running", Some(0), true);
        // Its third failure waits 40 s; index 2, which never failed, starts at once and
        // the Job-wide back-off does not hold it.
        let busy = Backoff {
            failures_after_last_success: 3,
            last_failure: Some(at(0)),
        };
        let out = plan(&j, &[&failed, &running], at(1), busy, true);
        assert_eq!(out.create, vec![Some(2)]);
        // With only index 1 left to create, the plan looks again when its wait ends.
        let two = pod("c", "Running", Some(2), true);
        let out = plan(&j, &[&failed, &running, &two], at(1), busy, true);
        assert!(out.create.is_empty());
        assert_eq!(out.requeue, Some(Duration::from_secs(39)));
        let out = plan(&j, &[&failed, &running, &two], at(40), busy, true);
        assert_eq!(out.create, vec![Some(1)]);
        assert_eq!(out.index_failures.get(&1), Some(&(3, 0)));
    }

    #[test]
    fn backoff_limit_per_index_fails_indexes_and_then_the_job() {
        let spec = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
            "backoffLimitPerIndex": 1, "backoffLimit": i32::MAX});
        let j = job(spec.clone(), json!({}));
        // Index 1's first pod failed: within its limit, it is replaced with the count.
        let first = pod("a", "Failed", Some(1), true);
        let out = plan(&j, &[&first], at(0), Backoff::default(), true);
        assert_eq!(out.status.failed_indexes.as_deref(), Some(""));
        assert_eq!(uncounted(&out.status).1, vec!["uid-a".to_string()]);
        assert_eq!(out.index_failures.get(&1), Some(&(1, 0)));
        // Its replacement (one failure before it) fails too: the index fails for good.
        let mut second = pod("b", "Failed", Some(1), true);
        second
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(INDEX_FAILURE_COUNT.into(), "1".into());
        let out = plan(&j, &[&second], at(0), Backoff::default(), true);
        assert_eq!(out.status.failed_indexes.as_deref(), Some("1"));
        assert!(cond(&out.status, "FailureTarget").is_none());
        // The failed index is not re-created and its active pods go.
        let busy = pod("c", "Running", Some(1), true);
        let j2 = job(spec.clone(), json!({"failedIndexes": "1"}));
        let out = plan(&j2, &[&busy], at(20_000), Backoff::default(), true);
        assert_eq!(out.delete.len(), 1);
        assert_eq!(out.create, vec![Some(0), Some(2)]);
        // Every other index succeeded: the Job fails with FailedIndexes.
        let j3 = job(
            spec.clone(),
            json!({"failedIndexes": "1", "completedIndexes": "0,2"}),
        );
        let out = plan(&j3, &[], at(0), Backoff::default(), true);
        let c = cond(&out.status, "FailureTarget").expect("failure target");
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (Some("FailedIndexes"), Some("Job has failed indexes"))
        );
        assert_eq!(
            cond(&out.status, "Failed").map(|c| c.reason.clone()),
            Some(Some("FailedIndexes".into()))
        );
        // maxFailedIndexes exceeded.
        let mut spec4 = spec;
        spec4["maxFailedIndexes"] = json!(0);
        let j4 = job(spec4, json!({}));
        let mut third = pod("d", "Failed", Some(2), true);
        third
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(INDEX_FAILURE_COUNT.into(), "1".into());
        let out = plan(&j4, &[&third], at(0), Backoff::default(), true);
        let c = cond(&out.status, "FailureTarget").expect("failure target");
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (
                Some("MaxFailedIndexesExceeded"),
                Some("Job has exceeded the specified maximal number of failed indexes")
            )
        );
    }

    #[test]
    fn a_fail_index_rule_fails_the_index_at_once() {
        let j = job(
            json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed",
                "backoffLimitPerIndex": 3, "podFailurePolicy": {"rules": [
                    {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}}]}}),
            json!({}),
        );
        let mut p = pod("a", "Failed", Some(0), true);
        p.status = Some(
            serde_json::from_value(json!({"phase": "Failed", "containerStatuses": [{
                "name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 7}}}]}))
            .expect("status"),
        );
        let out = plan(&j, &[&p], at(0), Backoff::default(), true);
        assert_eq!(out.status.failed_indexes.as_deref(), Some("0"));
    }

    #[test]
    fn success_policy_ends_an_indexed_job_early() {
        let j = job(
            json!({"completions": 5, "parallelism": 5, "completionMode": "Indexed",
                "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
            json!({}),
        );
        let lead = pod("pi-0-a", "Succeeded", Some(0), true);
        let other = pod("pi-1-a", "Running", Some(1), true);
        let p = plan(&j, &[&lead, &other], at(0), Backoff::default(), true);
        let c = cond(&p.status, "SuccessCriteriaMet").expect("met");
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (Some("SuccessPolicy"), Some("Matched rules at index 0"))
        );
        assert_eq!(p.delete.len(), 1, "the other index is terminated");
        assert_eq!(
            uncounted(&p.status).1,
            Vec::<String>::new(),
            "not a failure"
        );
    }

    #[test]
    fn a_finished_job_only_releases_finalizers() {
        let j = job(
            json!({"completions": 1}),
            json!({"conditions": [{"type": "Complete", "status": "True"}]}),
        );
        let stray = pod("a", "Failed", None, true);
        let p = plan(&j, &[&stray], at(0), Backoff::default(), true);
        assert_eq!(p.release.len(), 1);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(Some(&p.status), j.status.as_ref());
    }
}
