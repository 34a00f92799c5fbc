//! The horizontal pod autoscaler (autoscaling/v2), on CPU and memory from
//! `metrics.k8s.io/v1beta1`, as upstream's `podautoscaler` controller.
//!
//! Every [`SYNC_PERIOD`] each HPA is reconciled once, in this order:
//!
//! ```text
//! get the target's scale ──(fails)──▶ AbleToScale=False/FailedGetScale
//!   │ spec.replicas == 0 and minReplicas != 0 ──▶ ScalingActive=False/ScalingDisabled
//!   │ replicas outside [min, max] ──▶ desired = the bound ("Current number of replicas …")
//!   ▼
//! per metric: a proposal ([`replicas_for`]) ──(no metrics)──▶ ScalingActive=False/FailedGetResourceMetric
//!   ▼ the largest proposal; ScalingActive=True/ValidMetricFound
//! stabilize ([`Recommendations::stabilize`]): the lowest recommendation of the scale-up
//!   window, the highest of the scale-down window (default 0 s / 300 s)
//!   ▼ AbleToScale=True/ScaleUpStabilized|ScaleDownStabilized|ReadyForNewScale
//! rate limits and bounds ([`limit`]): the behavior's policies over the scale events of their
//!   periods, then [minReplicas, maxReplicas]  ▶ ScalingLimited with the reason
//!   ▼
//! desired != current: update the scale subresource, event SuccessfulRescale,
//!   AbleToScale=True/SucceededRescale, lastScaleTime; then the status.
//! ```
//!
//! A proposal follows upstream's replica calculator: pods being deleted or failed are
//! ignored; pods without metrics are "missing"; for CPU, pods not Ready are "unready". Over
//! the ready pods with metrics the usage ratio is usage / target (utilization: usage over the
//! summed requests, in percent, against `averageUtilization`; `AverageValue`: the average
//! against `averageValue`). Within the tolerance (0.1) of 1 the count stays; otherwise, when
//! no pod is missing or unready, it is `ceil(ratio × ready pods)`. Else missing pods count
//! as at 100 % of their request (or the target, if higher) on a scale-down and 0 on a
//! scale-up, unready ones as 0 on a scale-up, and the ratio is recomputed; a ratio that
//! crosses 1 or falls within the tolerance keeps the count.
//!
//! The recommendations and scale events are kept in memory per HPA (lost with the
//! controller manager's leadership, as upstream's are).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use podvisor_kit::events::EventType;
use serde::Deserialize;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::context::{ControllerError, Ctx};

const COMPONENT: &str = "horizontal-pod-autoscaler";

/// How often every HPA is reconciled (upstream's `--horizontal-pod-autoscaler-sync-period`).
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// A usage ratio this close to 1 changes nothing.
pub const TOLERANCE: f64 = 0.1;
/// The scale-down stabilization window when the behavior gives none.
pub const DEFAULT_DOWN_WINDOW: i64 = 300;

/// Runs the controller until `shutdown`.
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut history: HashMap<String, Recommendations> = HashMap::new();
    let mut tick = tokio::time::interval(SYNC_PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let hpas = match Api::<HorizontalPodAutoscaler>::all(ctx.client.clone())
            .list(&Default::default())
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list horizontal pod autoscalers");
                continue;
            }
        };
        let keys: Vec<String> = hpas.iter().map(key_of).collect();
        history.retain(|k, _| keys.contains(k));
        for hpa in hpas {
            let rec = history.entry(key_of(&hpa)).or_default();
            if let Err(e) = reconcile(&ctx, &hpa, rec).await {
                tracing::warn!(hpa = %key_of(&hpa), error = %e, "horizontal pod autoscaler sync failed");
            }
        }
    }
}

fn key_of(hpa: &HorizontalPodAutoscaler) -> String {
    format!(
        "{}/{}",
        hpa.metadata.namespace.as_deref().unwrap_or_default(),
        hpa.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A recommendation or a scale event, at a time.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stamped {
    at: Timestamp,
    value: i32,
}

/// What one HPA's past syncs recommended and changed.
#[derive(Debug, Default)]
pub(crate) struct Recommendations {
    recommendations: Vec<Stamped>,
    scale_ups: Vec<Stamped>,
    scale_downs: Vec<Stamped>,
}

fn secs_before(now: Timestamp, secs: i64) -> Timestamp {
    now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(secs))
        .unwrap_or(now)
}

impl Recommendations {
    /// Upstream's `stabilizeRecommendationWithBehaviors`: records `desired` and returns the
    /// stabilized recommendation with the reason and message a stabilized one gets.
    fn stabilize(
        &mut self,
        now: Timestamp,
        desired: i32,
        current: i32,
        (up_window, down_window): (i64, i64),
    ) -> (i32, &'static str, &'static str) {
        let (window, better, reason, message): (i64, fn(i32, i32) -> i32, _, _) = if desired
            >= current
        {
            (
                up_window,
                std::cmp::min,
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        } else {
            (
                down_window,
                std::cmp::max,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        };
        let cutoff = secs_before(now, window);
        let obsolete = secs_before(now, up_window.max(down_window));
        let mut recommendation = desired;
        for r in &self.recommendations {
            if r.at > cutoff {
                recommendation = better(r.value, recommendation);
            }
        }
        self.recommendations.retain(|r| r.at >= obsolete);
        self.recommendations.push(Stamped {
            at: now,
            value: desired,
        });
        (recommendation, reason, message)
    }

    /// Records a rescale from `from` to `to`.
    fn scaled(&mut self, now: Timestamp, from: i32, to: i32) {
        let keep = secs_before(now, 3600);
        self.scale_ups.retain(|e| e.at >= keep);
        self.scale_downs.retain(|e| e.at >= keep);
        let e = Stamped {
            at: now,
            value: (to - from).abs(),
        };
        if to > from {
            self.scale_ups.push(e);
        } else {
            self.scale_downs.push(e);
        }
    }
}

/// The replicas added (or removed) by `events` in the last `period` seconds.
fn changed_within(events: &[Stamped], now: Timestamp, period: i32) -> i32 {
    let cutoff = secs_before(now, i64::from(period));
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.value)
        .sum()
}

/// The default scale-up rules (100 % or 4 pods per 15 s, whichever is more) and scale-down
/// rules (100 % per 15 s, a 300 s window), with a given behavior's fields over them.
fn rules_of(given: Option<&HPAScalingRules>, up: bool) -> (i64, String, Vec<(String, i32, i32)>) {
    let default_policies: Vec<(String, i32, i32)> = if up {
        vec![("Percent".into(), 100, 15), ("Pods".into(), 4, 15)]
    } else {
        vec![("Percent".into(), 100, 15)]
    };
    let window = given
        .and_then(|r| r.stabilization_window_seconds)
        .map(i64::from)
        .unwrap_or(if up { 0 } else { DEFAULT_DOWN_WINDOW });
    let select = given
        .and_then(|r| r.select_policy.clone())
        .unwrap_or_else(|| "Max".into());
    let policies = given
        .and_then(|r| r.policies.as_ref())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.iter()
                .map(|p| (p.type_.clone(), p.value, p.period_seconds))
                .collect()
        })
        .unwrap_or(default_policies);
    (window, select, policies)
}

/// The behavior's rate bound in one direction: each policy proposes the replica count at
/// the start of its period plus (`up`) or minus its `Pods` or `Percent` value, and `select`
/// picks among them (`Min`: the smallest change, `Max`: the largest; `Disabled`: none).
fn rate_bound(
    select: &str,
    policies: &[(String, i32, i32)],
    current: i32,
    up: bool,
    period_start: &dyn Fn(i32) -> i32,
) -> i32 {
    if select == "Disabled" {
        return current;
    }
    let proposals = policies.iter().map(|(ty, value, period)| {
        let start = period_start(*period);
        match (ty == "Pods", up) {
            (true, true) => start + value,
            (true, false) => start - value,
            (false, true) => (f64::from(start) * (1.0 + f64::from(*value) / 100.0)).ceil() as i32,
            (false, false) => (f64::from(start) * (1.0 - f64::from(*value) / 100.0)) as i32,
        }
    });
    if (select == "Min") == up {
        proposals.min().unwrap_or(current)
    } else {
        proposals.max().unwrap_or(current)
    }
}

/// The bounds the behavior's rate rules and `[min, max]` put on `desired`, with the
/// `ScalingLimited` reason and message (upstream's `convertDesiredReplicasWithBehaviorRate`).
#[allow(clippy::too_many_arguments)]
fn limit(
    hist: &Recommendations,
    now: Timestamp,
    current: i32,
    desired: i32,
    (min, max): (i32, i32),
    up: &(i64, String, Vec<(String, i32, i32)>),
    down: &(i64, String, Vec<(String, i32, i32)>),
) -> (i32, &'static str, &'static str) {
    let period_start = |period: i32| {
        current - changed_within(&hist.scale_ups, now, period)
            + changed_within(&hist.scale_downs, now, period)
    };
    if desired > current {
        let (_, select, policies) = up;
        let limit = rate_bound(select, policies, current, true, &period_start).max(current);
        let (allowed, reason, message) = if max > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > allowed {
            return (allowed, reason, message);
        }
    } else if desired < current {
        let (_, select, policies) = down;
        let limit = rate_bound(select, policies, current, false, &period_start).min(current);
        let (allowed, reason, message) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < allowed {
            return (allowed, reason, message);
        }
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

/// One pod as the replica calculator sees it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PodSample {
    /// Its usage of the resource (millicores, or bytes × 1000), when metrics came for it.
    pub usage: Option<i64>,
    /// Its summed container requests of the resource (same unit); None when a container has
    /// none.
    pub request: Option<i64>,
    /// Being deleted or failed.
    pub ignored: bool,
    /// Not ready (counts for CPU only).
    pub unready: bool,
}

/// A metric's target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Target {
    /// Percent of the requests.
    Utilization(i64),
    /// An average per pod (millicores, or bytes × 1000).
    AverageValue(i64),
}

/// A proposal: replicas, the utilization (percent, for a utilization target) and the raw
/// average usage per pod.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Proposal {
    pub replicas: i32,
    pub utilization: Option<i32>,
    pub average: i64,
}

/// Upstream's `GetResourceReplicas` / `GetRawResourceReplicas` (see the module essay).
pub(crate) fn replicas_for(
    current: i32,
    pods: &[(String, PodSample)],
    target: Target,
    cpu: bool,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let mut ready: Vec<(&str, i64, i64)> = Vec::new();
    let mut missing: Vec<(&str, i64)> = Vec::new();
    let mut unready: Vec<(&str, i64)> = Vec::new();
    for (name, p) in pods {
        if p.ignored {
            continue;
        }
        let request = match (target, p.request) {
            (Target::Utilization(_), None) => {
                return Err(format!(
                    "missing request for {} in pod {name}",
                    if cpu { "cpu" } else { "memory" }
                ));
            }
            (_, r) => r.unwrap_or(0),
        };
        match p.usage {
            None => missing.push((name, request)),
            Some(_) if cpu && p.unready => unready.push((name, request)),
            Some(u) => ready.push((name, u, request)),
        }
    }
    if ready.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let ratio_of = |samples: &[(&str, i64, i64)]| -> Result<(f64, Option<i32>, i64), String> {
        let usage: i64 = samples.iter().map(|s| s.1).sum();
        let average = usage / samples.len() as i64;
        match target {
            Target::Utilization(t) => {
                let requests: i64 = samples.iter().map(|s| s.2).sum();
                if requests == 0 {
                    return Err("no metrics returned matched known pods".into());
                }
                let utilization = (usage * 100 / requests) as i32;
                Ok((
                    f64::from(utilization) / t as f64,
                    Some(utilization),
                    average,
                ))
            }
            Target::AverageValue(t) => Ok((average as f64 / t.max(1) as f64, None, average)),
        }
    };
    let (ratio, utilization, average) = ratio_of(&ready)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average,
    };
    let scale_up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if (1.0 - ratio).abs() <= TOLERANCE {
            return Ok(proposal(current));
        }
        return Ok(proposal((ratio * ready.len() as f64).ceil() as i32));
    }
    let mut all = ready.clone();
    if ratio < 1.0 {
        for &(name, request) in &missing {
            let fallback = match target {
                Target::Utilization(t) => request * t.max(100) / 100,
                Target::AverageValue(t) => t,
            };
            all.push((name, fallback, request));
        }
    } else if ratio > 1.0 {
        all.extend(missing.iter().map(|(n, r)| (*n, 0, *r)));
    }
    if scale_up_with_unready {
        all.extend(unready.iter().map(|(n, r)| (*n, 0, *r)));
    }
    let (new_ratio, _, _) = ratio_of(&all)?;
    if (1.0 - new_ratio).abs() <= TOLERANCE
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * all.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

/// `metrics.k8s.io/v1beta1` PodMetrics, as far as read here.
#[derive(Deserialize)]
struct PodMetricsList {
    items: Vec<PodMetrics>,
}

#[derive(Deserialize)]
struct PodMetrics {
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    containers: Vec<ContainerMetrics>,
}

#[derive(Deserialize)]
struct ContainerMetrics {
    usage: BTreeMap<String, Quantity>,
}

/// A quantity in thousandths of its unit (millicores; bytes × 1000), 0 when unreadable.
fn milli(q: &Quantity) -> i64 {
    podvisor_api::status::parse_quantity(&q.0)
        .map(|nanos| (nanos / 1_000_000) as i64)
        .unwrap_or(0)
}

/// The scale subresource of the HPA's target.
async fn get_scale(ctx: &Ctx, ns: &str, kind: &str, name: &str) -> Result<Scale, String> {
    let c = ctx.client.clone();
    let r = match kind {
        "Deployment" => Api::<Deployment>::namespaced(c, ns).get_scale(name).await,
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(c, ns).get_scale(name).await,
        "StatefulSet" => Api::<StatefulSet>::namespaced(c, ns).get_scale(name).await,
        "ReplicationController" => {
            Api::<ReplicationController>::namespaced(c, ns)
                .get_scale(name)
                .await
        }
        other => return Err(format!("unrecognized resource kind {other:?}")),
    };
    r.map_err(|e| e.to_string())
}

async fn set_scale(
    ctx: &Ctx,
    ns: &str,
    kind: &str,
    name: &str,
    replicas: i32,
) -> Result<(), String> {
    let c = ctx.client.clone();
    let patch = Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}}));
    let pp = PatchParams::default();
    let r = match kind {
        "Deployment" => {
            Api::<Deployment>::namespaced(c, ns)
                .patch_scale(name, &pp, &patch)
                .await
        }
        "ReplicaSet" => {
            Api::<ReplicaSet>::namespaced(c, ns)
                .patch_scale(name, &pp, &patch)
                .await
        }
        "StatefulSet" => {
            Api::<StatefulSet>::namespaced(c, ns)
                .patch_scale(name, &pp, &patch)
                .await
        }
        _ => {
            Api::<ReplicationController>::namespaced(c, ns)
                .patch_scale(name, &pp, &patch)
                .await
        }
    };
    r.map(|_| ()).map_err(|e| e.to_string())
}

/// The usage of each pod of `ns` matching `selector`, from the metrics API.
async fn pod_usage(
    ctx: &Ctx,
    ns: &str,
    selector: &str,
    resource: &str,
) -> Result<HashMap<String, i64>, String> {
    let sel: String = form_urlencoded::byte_serialize(selector.as_bytes()).collect();
    let req = http::Request::get(format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector={sel}"
    ))
    .body(Vec::new())
    .map_err(|e| e.to_string())?;
    let list: PodMetricsList = ctx
        .client
        .request(req)
        .await
        .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))?;
    Ok(list
        .items
        .into_iter()
        .filter(|m| !m.containers.is_empty())
        .map(|m| {
            let total = m
                .containers
                .iter()
                .map(|c| c.usage.get(resource).map(milli).unwrap_or(0))
                .sum();
            (m.metadata.name.unwrap_or_default(), total)
        })
        .collect())
}

/// The samples of the pods `selector` picks in `ns`.
fn samples(
    ctx: &Ctx,
    ns: &str,
    selector: &podvisor_api::LabelSelector,
    resource: &str,
    usage: &HashMap<String, i64>,
) -> Vec<(String, PodSample)> {
    let mut out: Vec<(String, PodSample)> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .filter(|p| selector.matches(&p.metadata.labels.clone().unwrap_or_default()))
        .map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let sample = PodSample {
                usage: usage.get(&name).copied(),
                request: pod_request(p, resource),
                ignored: p.metadata.deletion_timestamp.is_some()
                    || p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"),
                unready: !crate::pods::is_ready(p),
            };
            (name, sample)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The summed requests of `resource` of the pod's containers (None if one has none).
fn pod_request(p: &Pod, resource: &str) -> Option<i64> {
    let spec = p.spec.as_ref()?;
    spec.containers
        .iter()
        .map(|c| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .map(milli)
        })
        .sum()
}

/// The condition `type_` set to `status`/`reason`/`message` (its transition time kept when
/// the status did not change).
fn set_condition(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let at = match conditions.iter().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    conditions.retain(|c| c.type_ != type_);
    conditions.push(HorizontalPodAutoscalerCondition {
        type_: type_.to_string(),
        status,
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: at,
    });
    let order = |t: &str| {
        ["AbleToScale", "ScalingActive", "ScalingLimited"]
            .iter()
            .position(|x| *x == t)
    };
    conditions.sort_by_key(|c| order(&c.type_));
}

/// The metric name upstream puts in messages and rescale reasons.
fn metric_name(resource: &str, target: Target) -> String {
    match target {
        Target::Utilization(_) => {
            format!("{resource} resource utilization (percentage of request)")
        }
        Target::AverageValue(_) => format!("{resource} resource"),
    }
}

/// One resource metric of the spec: its resource and target.
fn resource_metric(m: &MetricSpec) -> Result<(String, Target), String> {
    let r = m
        .resource
        .as_ref()
        .filter(|_| m.type_ == "Resource")
        .ok_or_else(|| format!("unsupported metric source type {:?}", m.type_))?;
    let target = match (
        r.target.type_.as_str(),
        r.target.average_utilization,
        &r.target.average_value,
    ) {
        ("Utilization", Some(u), _) => Target::Utilization(i64::from(u)),
        ("AverageValue", _, Some(v)) => Target::AverageValue(milli(v)),
        (t, _, _) => {
            return Err(format!(
                "invalid resource metric source: target type {t:?} without its value"
            ));
        }
    };
    Ok((r.name.clone(), target))
}

/// One sync of `hpa` (see the module essay).
async fn reconcile(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    hist: &mut Recommendations,
) -> Result<(), ControllerError> {
    let ns = hpa.metadata.namespace.clone().unwrap_or_default();
    let name = hpa.metadata.name.clone().unwrap_or_default();
    let Some(spec) = hpa.spec.clone() else {
        return Ok(());
    };
    let now = ctx.now();
    let old = hpa.status.clone().unwrap_or_default();
    let mut status = HorizontalPodAutoscalerStatus {
        conditions: old.conditions.clone(),
        current_metrics: old.current_metrics.clone(),
        current_replicas: old.current_replicas,
        desired_replicas: old.desired_replicas,
        last_scale_time: old.last_scale_time.clone(),
        observed_generation: hpa.metadata.generation,
    };
    let mut conditions = status.conditions.take().unwrap_or_default();
    let target = &spec.scale_target_ref;
    let kind_ref = format!("{}/{}", target.kind, target.name);
    let scale = match get_scale(ctx, &ns, &target.kind, &target.name).await {
        Ok(s) => s,
        Err(e) => {
            let message =
                format!("the HPA controller was unable to get the target's current scale: {e}");
            ctx.event_about(
                COMPONENT,
                hpa,
                EventType::Warning,
                "FailedGetScale",
                &message,
            );
            set_condition(
                &mut conditions,
                "AbleToScale",
                false,
                "FailedGetScale",
                message,
                now,
            );
            status.conditions = Some(conditions);
            return write_status(ctx, hpa, status).await;
        }
    };
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    status.current_replicas = Some(current);
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    set_condition(
        &mut conditions,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
        now,
    );
    let (desired, reason) = if current == 0 && min != 0 {
        set_condition(
            &mut conditions,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
            now,
        );
        status.desired_replicas = 0;
        status.conditions = Some(conditions);
        return write_status(ctx, hpa, status).await;
    } else if current > max {
        (
            max,
            "Current number of replicas above Spec.MaxReplicas".to_string(),
        )
    } else if current < min {
        (
            min,
            "Current number of replicas below Spec.MinReplicas".to_string(),
        )
    } else {
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let parsed = match podvisor_api::LabelSelector::parse(&selector) {
            Ok(s) if !selector.is_empty() => s,
            _ => {
                let message = "the HPA target's scale is missing a selector".to_string();
                ctx.event_about(
                    COMPONENT,
                    hpa,
                    EventType::Warning,
                    "SelectorRequired",
                    &message,
                );
                set_condition(
                    &mut conditions,
                    "ScalingActive",
                    false,
                    "InvalidSelector",
                    message,
                    now,
                );
                status.conditions = Some(conditions);
                return write_status(ctx, hpa, status).await;
            }
        };
        let metrics: Vec<MetricSpec> = spec
            .metrics
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| {
                vec![MetricSpec {
                    type_: "Resource".into(),
                    resource: Some(k8s_openapi::api::autoscaling::v2::ResourceMetricSource {
                        name: "cpu".into(),
                        target: k8s_openapi::api::autoscaling::v2::MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(80),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                }]
            });
        let mut best: Option<(i32, String)> = None;
        let mut statuses = Vec::new();
        let mut failure: Option<String> = None;
        for m in &metrics {
            let computed = async {
                let (resource, t) = resource_metric(m)?;
                let usage = pod_usage(ctx, &ns, &selector, &resource).await?;
                let pods = samples(ctx, &ns, &parsed, &resource, &usage);
                let p = replicas_for(current, &pods, t, resource == "cpu")
                    .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
                Ok::<_, String>((resource, t, p))
            }
            .await;
            match computed {
                Ok((resource, t, p)) => {
                    let average = if resource == "cpu" {
                        Quantity(format!("{}m", p.average))
                    } else {
                        Quantity((p.average / 1000).to_string())
                    };
                    statuses.push(MetricStatus {
                        type_: "Resource".into(),
                        resource: Some(ResourceMetricStatus {
                            name: resource.clone(),
                            current: MetricValueStatus {
                                average_utilization: p.utilization,
                                average_value: Some(average),
                                value: None,
                            },
                        }),
                        ..Default::default()
                    });
                    if best.as_ref().is_none_or(|(r, _)| p.replicas > *r) {
                        best = Some((p.replicas, metric_name(&resource, t)));
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        let Some((proposal, metric)) = best else {
            let message = format!(
                "the HPA was unable to compute the replica count: {}",
                failure.unwrap_or_default()
            );
            ctx.event_about(
                COMPONENT,
                hpa,
                EventType::Warning,
                "FailedGetResourceMetric",
                &message,
            );
            set_condition(
                &mut conditions,
                "ScalingActive",
                false,
                "FailedGetResourceMetric",
                message,
                now,
            );
            status.desired_replicas = current;
            status.conditions = Some(conditions);
            return write_status(ctx, hpa, status).await;
        };
        status.current_metrics = Some(statuses);
        set_condition(
            &mut conditions,
            "ScalingActive",
            true,
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {metric}"),
            now,
        );
        let behavior = spec.behavior.as_ref();
        let up = rules_of(behavior.and_then(|b| b.scale_up.as_ref()), true);
        let down = rules_of(behavior.and_then(|b| b.scale_down.as_ref()), false);
        let (stabilized, s_reason, s_message) =
            hist.stabilize(now, proposal, current, (up.0, down.0));
        if stabilized != proposal {
            set_condition(
                &mut conditions,
                "AbleToScale",
                true,
                s_reason,
                s_message.into(),
                now,
            );
        } else {
            set_condition(
                &mut conditions,
                "AbleToScale",
                true,
                "ReadyForNewScale",
                "recommended size matches current size".into(),
                now,
            );
        }
        let (limited, l_reason, l_message) =
            limit(hist, now, current, stabilized, (min, max), &up, &down);
        set_condition(
            &mut conditions,
            "ScalingLimited",
            limited != stabilized,
            l_reason,
            l_message.into(),
            now,
        );
        let reason = if limited > current {
            format!("{metric} above target")
        } else {
            "All metrics below target".to_string()
        };
        (limited, reason)
    };
    status.desired_replicas = desired;
    if desired != current {
        match set_scale(ctx, &ns, &target.kind, &target.name, desired).await {
            Ok(()) => {
                hist.scaled(now, current, desired);
                ctx.event_about(
                    COMPONENT,
                    hpa,
                    EventType::Normal,
                    "SuccessfulRescale",
                    format!("New size: {desired}; reason: {reason}"),
                );
                set_condition(
                    &mut conditions,
                    "AbleToScale",
                    true,
                    "SucceededRescale",
                    format!("the HPA controller was able to update the target scale to {desired}"),
                    now,
                );
                status.last_scale_time = Some(Time(now));
            }
            Err(e) => {
                let message =
                    format!("the HPA controller was unable to update the target scale: {e}");
                ctx.event_about(
                    COMPONENT,
                    hpa,
                    EventType::Warning,
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {e}"),
                );
                set_condition(
                    &mut conditions,
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    message,
                    now,
                );
            }
        }
        tracing::info!(hpa = %name, target = %kind_ref, from = current, to = desired, "rescaled");
    }
    status.conditions = Some(conditions);
    write_status(ctx, hpa, status).await
}

async fn write_status(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    status: HorizontalPodAutoscalerStatus,
) -> Result<(), ControllerError> {
    if hpa.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut updated = hpa.clone();
    updated.status = Some(status);
    let ns = hpa.metadata.namespace.clone().unwrap_or_default();
    let name = hpa.metadata.name.clone().unwrap_or_default();
    ctx.replace_status("horizontalpodautoscaler", &ns, &name, &updated)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(usage: Option<i64>, request: i64) -> PodSample {
        PodSample {
            usage,
            request: Some(request),
            ignored: false,
            unready: false,
        }
    }

    fn named(samples: Vec<PodSample>) -> Vec<(String, PodSample)> {
        samples
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("p{i}"), s))
            .collect()
    }

    #[test]
    fn proposals_follow_the_usage_ratio_with_the_tolerance() {
        let u = Target::Utilization(50);
        // 2 pods at 100 % of a 100m request against 50 %: ratio 2, 4 replicas.
        let p = replicas_for(
            2,
            &named(vec![pod(Some(100), 100), pod(Some(100), 100)]),
            u,
            true,
        )
        .unwrap();
        assert_eq!((p.replicas, p.utilization, p.average), (4, Some(100), 100));
        // Within the tolerance: unchanged.
        let p = replicas_for(
            2,
            &named(vec![pod(Some(54), 100), pod(Some(54), 100)]),
            u,
            true,
        )
        .unwrap();
        assert_eq!(p.replicas, 2);
        // Idle: scale down to ceil(0.02 × 3) = 1.
        let p = replicas_for(3, &named(vec![pod(Some(1), 100); 3]), u, true).unwrap();
        assert_eq!(p.replicas, 1);
        // Average value: 300m average against 100m: 3 × 2 pods.
        let p = replicas_for(
            2,
            &named(vec![pod(Some(300), 0), pod(Some(300), 0)]),
            Target::AverageValue(100),
            false,
        )
        .unwrap();
        assert_eq!(p.replicas, 6);
    }

    #[test]
    fn missing_and_unready_pods_dampen_as_upstream() {
        let u = Target::Utilization(50);
        // Scale up: a missing pod counts as 0; 2 at 100 % + 1 at 0 → ratio 4/3 → 4.
        let p = replicas_for(
            3,
            &named(vec![
                pod(Some(100), 100),
                pod(Some(100), 100),
                pod(None, 100),
            ]),
            u,
            true,
        )
        .unwrap();
        assert_eq!(p.replicas, 4);
        // Scale down: a missing pod counts as 100 % (above the 50 % target): 2 at 10 %, 1 at
        // 100 % → 40 % → ratio 0.8 → ceil(2.4) = 3 = current.
        let p = replicas_for(
            3,
            &named(vec![pod(Some(10), 100), pod(Some(10), 100), pod(None, 100)]),
            u,
            true,
        )
        .unwrap();
        assert_eq!(p.replicas, 3);
        // An unready CPU pod counts as 0 on a scale-up.
        let mut unready = pod(Some(500), 100);
        unready.unready = true;
        let p = replicas_for(2, &named(vec![pod(Some(100), 100), unready]), u, true).unwrap();
        assert_eq!(
            p.replicas, 2,
            "ratio 1 with the unready pod at 0: within tolerance"
        );
        // Deleted pods are ignored; none ready is an error.
        let mut gone = pod(Some(100), 100);
        gone.ignored = true;
        assert!(replicas_for(1, &named(vec![gone]), u, true).is_err());
        let no_request = PodSample {
            request: None,
            ..pod(Some(1), 0)
        };
        assert!(
            replicas_for(1, &named(vec![no_request]), u, true)
                .unwrap_err()
                .contains("missing request for cpu")
        );
        assert!(
            replicas_for(1, &[], u, true)
                .unwrap_err()
                .contains("no pods returned by selector")
        );
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn stabilization_keeps_the_highest_recent_downscale_and_the_lowest_upscale() {
        let mut h = Recommendations::default();
        let windows = (0, 300);
        assert_eq!(h.stabilize(at(0), 5, 5, windows).0, 5);
        // A lower recommendation within 300 s: the highest recent one (5) wins.
        let (r, reason, _) = h.stabilize(at(60), 2, 5, windows);
        assert_eq!((r, reason), (5, "ScaleDownStabilized"));
        // 301 s after the last 5: now 2.
        assert_eq!(h.stabilize(at(361), 2, 5, windows).0, 2);
        // Scale up with a 0 s window: at once.
        assert_eq!(h.stabilize(at(362), 8, 2, windows).0, 8);
        // With an up window, the lowest recent recommendation.
        let mut h = Recommendations::default();
        h.stabilize(at(0), 3, 3, (60, 0));
        let (r, reason, _) = h.stabilize(at(10), 9, 3, (60, 0));
        assert_eq!((r, reason), (3, "ScaleUpStabilized"));
    }

    #[test]
    fn rate_limits_and_bounds_name_their_reason() {
        let h = Recommendations::default();
        let up = rules_of(None, true);
        let down = rules_of(None, false);
        assert_eq!(up.0, 0);
        assert_eq!(down.0, 300);
        // From 1: at most max(2 × 1, 1 + 4) = 5 per 15 s.
        assert_eq!(
            limit(&h, at(0), 1, 20, (1, 50), &up, &down).1,
            "ScaleUpLimit"
        );
        assert_eq!(limit(&h, at(0), 1, 20, (1, 50), &up, &down).0, 5);
        assert_eq!(
            limit(&h, at(0), 1, 20, (1, 3), &up, &down),
            (
                3,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count"
            )
        );
        assert_eq!(
            limit(&h, at(0), 4, 0, (2, 10), &up, &down).1,
            "TooFewReplicas"
        );
        assert_eq!(
            limit(&h, at(0), 4, 3, (1, 10), &up, &down).1,
            "DesiredWithinRange"
        );
        // After a scale-up of 4 within the period, the period started at 1: limit 5.
        let mut h = Recommendations::default();
        h.scaled(at(0), 1, 5);
        assert_eq!(limit(&h, at(5), 5, 20, (1, 50), &up, &down).0, 5);
        assert_eq!(limit(&h, at(20), 5, 20, (1, 50), &up, &down).0, 10);
        // Down from 10 with two policies: `Min` takes the smaller change (-2), `Max` the
        // larger (-50 %), `Disabled` none.
        let h = Recommendations::default();
        let policies = vec![("Pods".to_string(), 2, 60), ("Percent".to_string(), 50, 60)];
        for (select, want) in [("Min", 8), ("Max", 5), ("Disabled", 10)] {
            let down = (0, select.to_string(), policies.clone());
            assert_eq!(
                limit(&h, at(0), 10, 1, (1, 20), &up, &down).0,
                want,
                "{select}"
            );
        }
        let up = (
            0,
            "Min".to_string(),
            vec![("Pods".to_string(), 4, 60), ("Percent".to_string(), 10, 60)],
        );
        assert_eq!(limit(&h, at(0), 10, 30, (1, 50), &up, &down).0, 11);
    }
}
