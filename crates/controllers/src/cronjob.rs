//! The CronJob controller (batch/v1), after upstream's `cronjob_controllerv2.go`.
//!
//! A CronJob is level-triggered on its key and re-queued for its next activation. One
//! reconcile:
//!
//! 1. **Reconcile `status.active`** with the Jobs it controls (by controller reference): a
//!    finished Job leaves the list (event `SawCompletedJob`; a `Complete` one moves
//!    `lastSuccessfulTime`), a Job that went missing too (`MissingJob`).
//! 2. Nothing more while the CronJob is being deleted or `suspend`ed.
//! 3. **Due?** The most recent activation of the [schedule](crate::cron) (in `timeZone`)
//!    after `lastScheduleTime` (else `creationTimestamp`) and not after now; with
//!    `startingDeadlineSeconds` none earlier than that many seconds ago (an activation later
//!    than its deadline is `MissSchedule`). More than 100 missed activations give a
//!    `TooManyMissedTimes` warning; only the most recent one runs.
//! 4. **concurrencyPolicy**: `Forbid` skips the activation while a Job is active
//!    (`JobAlreadyActive`); `Replace` deletes the active Jobs first; `Allow` runs them side by
//!    side.
//! 5. **Create** the Job `<cronjob>-<scheduled unix minutes>` from `jobTemplate`, owned by the
//!    CronJob, annotated with `batch.kubernetes.io/cronjob-scheduled-timestamp`; the name
//!    makes a second create for the same activation fail with AlreadyExists. Then
//!    `status.active` gains it and `lastScheduleTime` becomes the activation.
//! 6. **History**: finished Jobs beyond `successfulJobsHistoryLimit` /
//!    `failedJobsHistoryLimit` are deleted, oldest first.
//!
//! The key comes back 100 ms after the next activation.

use std::time::Duration;

use jiff::Zoned;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use kube::{Api, Resource, ResourceExt};
use podvisor_kit::events::{EventRecord, EventType, object_ref};
use tracing::info;

use crate::context::{ControllerError, Ctx, Key};
use crate::cron::{self, Schedule};
use crate::job::finished_at;
use crate::pods;

const COMPONENT: &str = "cronjob-controller";
/// The annotation with the activation a Job was created for.
const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Most missed activations before the controller warns (upstream's 100).
const MANY_MISSED: usize = 100;

/// When the CronJob should run (the pure part of a reconcile).
#[derive(Debug, PartialEq)]
pub(crate) struct Due {
    /// The most recent unmet activation, if any.
    pub(crate) scheduled: Option<Zoned>,
    /// More than [`MANY_MISSED`] activations were missed.
    pub(crate) too_many_missed: bool,
    /// The next activation after now.
    pub(crate) next: Option<Zoned>,
}

/// Upstream's `mostRecentScheduleTime` with the starting deadline, and the next activation.
pub(crate) fn due(cj: &CronJob, now: &Zoned, sched: &Schedule, tz: &TimeZone) -> Due {
    let spec = cj.spec.as_ref();
    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(created);
    if let Some(d) = spec.and_then(|s| s.starting_deadline_seconds) {
        let deadline = now
            .timestamp()
            .checked_sub(jiff::SignedDuration::from_secs(d))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let mut out = Due {
        scheduled: None,
        too_many_missed: false,
        next: None,
    };
    let mut t = earliest.to_zoned(tz.clone());
    let mut missed = 0usize;
    // Past many missed activations, skip ahead to the last two months: bounded work per
    // reconcile however long the CronJob was not served.
    let skip_to = now
        .timestamp()
        .checked_sub(jiff::SignedDuration::from_hours(62 * 24))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    while let Some(n) = sched.next(&t, tz) {
        if n.timestamp() > now.timestamp() {
            out.next = Some(n);
            break;
        }
        missed += 1;
        out.scheduled = Some(n.clone());
        t = n;
        if missed == MANY_MISSED + 1 && t.timestamp() < skip_to {
            t = skip_to.to_zoned(tz.clone());
        }
    }
    out.too_many_missed = missed > MANY_MISSED;
    out
}

/// The time zone of a CronJob: its `timeZone`, else the controller's own.
fn time_zone(cj: &CronJob) -> Result<TimeZone, (String, String)> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        None => Ok(TimeZone::try_system().unwrap_or(TimeZone::UTC)),
        Some(name) => TimeZone::get(name).map_err(|e| {
            (
                "UnknownTimeZone".to_string(),
                format!("invalid timeZone: {name:?}: {e}"),
            )
        }),
    }
}

/// The Job of the activation at `scheduled` (upstream's `getJobFromTemplate2`).
pub(crate) fn job_for(cj: &CronJob, scheduled: &Zoned) -> Job {
    let name = format!(
        "{}-{}",
        cj.name_any(),
        scheduled.timestamp().as_second().div_euclid(60)
    );
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_ANNOTATION.into(),
        scheduled.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cj.namespace(),
            labels: tm.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner_ref(cj)]),
            ..Default::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

fn owner_ref(cj: &CronJob) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        ..pods::owner_ref(
            "CronJob",
            &cj.name_any(),
            cj.metadata.uid.as_deref().unwrap_or_default(),
        )
    }
}

fn job_ref(j: &Job) -> ObjectReference {
    j.object_ref(&())
}

fn event(ctx: &Ctx, cj: &CronJob, type_: EventType, reason: &str, message: String) {
    ctx.record_event(
        COMPONENT,
        EventRecord::new(object_ref(cj), type_, reason.to_string(), message),
    );
}

/// The condition type a finished Job ended with.
fn finished_type(j: &Job) -> Option<&'static str> {
    let conds = j.status.as_ref()?.conditions.as_ref()?;
    let is = |t: &str| conds.iter().any(|c| c.type_ == t && c.status == "True");
    if is("Complete") {
        Some("Complete")
    } else if is("Failed") {
        Some("Failed")
    } else {
        None
    }
}

pub(crate) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Option<Duration>, ControllerError> {
    let Some(cj) = ctx.cronjobs.get(&key.obj_ref()) else {
        return Ok(None);
    };
    let Some(spec) = cj.spec.as_ref() else {
        return Ok(None);
    };
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let ns = key.namespace.as_str();
    let mine: Vec<std::sync::Arc<Job>> = ctx.jobs.state_filter(|j| {
        j.metadata.namespace.as_deref() == Some(ns)
            && pods::controller_ref(&j.metadata).is_some_and(|r| r.uid == uid)
    });
    let old = cj.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut active = old.active.clone().unwrap_or_default();

    // 1. The active list against the Jobs.
    for j in &mine {
        let in_list = active.iter().any(|r| r.uid == j.metadata.uid);
        if in_list && let Some(t) = finished_type(j) {
            active.retain(|r| r.uid != j.metadata.uid);
            event(
                ctx,
                &cj,
                EventType::Normal,
                "SawCompletedJob",
                format!("Saw completed job: {}, condition: {t}", j.name_any()),
            );
            if t == "Complete"
                && let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.clone())
                && status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|l| done.0 > l.0)
            {
                status.last_successful_time = Some(done);
            }
        } else if !in_list && finished_type(j).is_none() && j.metadata.deletion_timestamp.is_none()
        {
            event(
                ctx,
                &cj,
                EventType::Warning,
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    j.name_any()
                ),
            );
        }
    }
    let jobs_api = Api::<Job>::namespaced(ctx.client.clone(), ns);
    let mut kept = Vec::new();
    for r in active {
        let cached = mine.iter().any(|j| j.metadata.uid == r.uid);
        let present = cached
            || jobs_api
                .get_opt(r.name.as_deref().unwrap_or_default())
                .await
                .map_err(ControllerError::api("get", "Job", ns, &key.name))?
                .is_some_and(|j| j.metadata.uid == r.uid);
        if present {
            kept.push(r);
        } else {
            event(
                ctx,
                &cj,
                EventType::Normal,
                "MissingJob",
                format!(
                    "Active job went missing: {}",
                    r.name.clone().unwrap_or_default()
                ),
            );
        }
    }
    active = kept;

    let mut requeue = None;
    let deleting = cj.metadata.deletion_timestamp.is_some();
    if !deleting && spec.suspend != Some(true) {
        requeue = run_due(ctx, &cj, &mut status, &mut active).await?;
    }
    status.active = (!active.is_empty()).then_some(active);
    if status != old {
        let mut updated = (*cj).clone();
        updated.status = Some(status);
        ctx.replace_status("CronJob", ns, &key.name, &updated)
            .await?;
    }
    if !deleting {
        cleanup_history(ctx, &cj, &mine).await?;
    }
    Ok(requeue)
}

/// Steps 3 to 5: creates the Job of a due activation; returns when to look again.
async fn run_due(
    ctx: &Ctx,
    cj: &CronJob,
    status: &mut CronJobStatus,
    active: &mut Vec<ObjectReference>,
) -> Result<Option<Duration>, ControllerError> {
    let Some(spec) = cj.spec.as_ref() else {
        return Ok(None);
    };
    let tz = match time_zone(cj) {
        Ok(tz) => tz,
        Err((reason, message)) => {
            event(ctx, cj, EventType::Warning, &reason, message);
            return Ok(None);
        }
    };
    let sched = match cron::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            event(
                ctx,
                cj,
                EventType::Warning,
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            );
            return Ok(None);
        }
    };
    let now = ctx.now().to_zoned(tz.clone());
    let d = due(cj, &now, &sched, &tz);
    let requeue = d.next.as_ref().map(|n| {
        let wait: Duration = n
            .timestamp()
            .duration_since(now.timestamp())
            .try_into()
            .unwrap_or(Duration::ZERO);
        wait + Duration::from_millis(100)
    });
    let Some(scheduled) = d.scheduled else {
        return Ok(requeue);
    };
    if d.too_many_missed {
        event(
            ctx,
            cj,
            EventType::Warning,
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
        );
    }
    if let Some(deadline) = spec.starting_deadline_seconds {
        let late = scheduled
            .timestamp()
            .checked_add(jiff::SignedDuration::from_secs(deadline))
            .is_ok_and(|t| t < now.timestamp());
        if late {
            event(
                ctx,
                cj,
                EventType::Warning,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled
                        .with_time_zone(TimeZone::UTC)
                        .strftime("%a, %d %b %Y %H:%M:%S %z")
                ),
            );
            return Ok(requeue);
        }
    }
    let job = job_for(cj, &scheduled);
    let job_name = job.name_any();
    if active.iter().any(|r| r.name.as_deref() == Some(&job_name)) {
        return Ok(requeue);
    }
    let ns = cj.namespace().unwrap_or_default();
    let api = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            event(
                ctx,
                cj,
                EventType::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            );
            return Ok(requeue);
        }
        Some("Replace") => {
            for r in std::mem::take(active) {
                let name = r.name.clone().unwrap_or_default();
                delete_job(ctx, cj, &api, &name).await?;
            }
        }
        _ => {}
    }
    match api.create(&PostParams::default(), &job).await {
        Ok(created) => {
            info!(%ns, cronjob = %cj.name_any(), job = %job_name, "created job");
            event(
                ctx,
                cj,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created job {job_name}"),
            );
            active.push(job_ref(&created));
        }
        Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {
            // Created by an earlier reconcile whose status write was lost.
            if let Some(j) = api.get_opt(&job_name).await.ok().flatten()
                && pods::controller_ref(&j.metadata)
                    .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref())
                && finished_at(&j).is_none()
            {
                active.push(job_ref(&j));
            }
        }
        Err(e) => {
            event(
                ctx,
                cj,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {e}"),
            );
            return Err(ControllerError::api("create", "Job", &ns, &job_name)(e));
        }
    }
    status.last_schedule_time = Some(Time(scheduled.timestamp()));
    Ok(requeue)
}

async fn delete_job(
    ctx: &Ctx,
    cj: &CronJob,
    api: &Api<Job>,
    name: &str,
) -> Result<(), ControllerError> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            event(
                ctx,
                cj,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted job {name}"),
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(ControllerError::api(
            "delete",
            "Job",
            &cj.namespace().unwrap_or_default(),
            name,
        )(e)),
    }
}

/// Step 6: deletes the oldest finished Jobs beyond the history limits.
async fn cleanup_history(
    ctx: &Ctx,
    cj: &CronJob,
    jobs: &[std::sync::Arc<Job>],
) -> Result<(), ControllerError> {
    let Some(spec) = cj.spec.as_ref() else {
        return Ok(());
    };
    let api = Api::<Job>::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Job> = jobs
            .iter()
            .map(|j| j.as_ref())
            .filter(|j| finished_type(j) == Some(kind) && j.metadata.deletion_timestamp.is_none())
            .collect();
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        if done.len() <= keep {
            continue;
        }
        done.sort_by_key(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
                .or_else(|| j.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        let extra = done.len() - keep;
        for j in done.into_iter().take(extra) {
            delete_job(ctx, cj, &api, &j.name_any()).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cj(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
        let mut s = json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {}}}});
        for (k, v) in spec.as_object().cloned().unwrap_or_default() {
            s[k] = v;
        }
        serde_json::from_value(json!({
            "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid",
                "creationTimestamp": "2026-12-07T10:01:00Z"},
            "spec": s, "status": status,
        }))
        .expect("cronjob")
    }

    fn now(s: &str) -> Zoned {
        s.parse::<Timestamp>().expect("ts").to_zoned(TimeZone::UTC)
    }

    fn due_at(c: &CronJob, at: &str) -> Due {
        let sched = cron::parse(&c.spec.as_ref().expect("spec").schedule).expect("schedule");
        due(c, &now(at), &sched, &TimeZone::UTC)
    }

    #[test]
    fn nothing_is_due_before_the_first_activation() {
        let d = due_at(&cj(json!({}), json!(null)), "2026-12-07T10:04:59Z");
        assert_eq!(d.scheduled, None);
        assert_eq!(d.next, Some(now("2026-12-07T10:05:00Z")));
    }

    #[test]
    fn the_most_recent_missed_activation_runs() {
        let d = due_at(&cj(json!({}), json!(null)), "2026-12-07T10:17:00Z");
        assert_eq!(d.scheduled, Some(now("2026-12-07T10:15:00Z")));
        assert!(!d.too_many_missed);
        assert_eq!(d.next, Some(now("2026-12-07T10:20:00Z")));
        // After lastScheduleTime only.
        let ran = cj(
            json!({}),
            json!({"lastScheduleTime": "2026-12-07T10:15:00Z"}),
        );
        assert_eq!(due_at(&ran, "2026-12-07T10:19:00Z").scheduled, None);
    }

    #[test]
    fn many_missed_activations_warn_and_the_deadline_limits_the_search() {
        let d = due_at(&cj(json!({}), json!(null)), "2026-12-08T10:00:30Z");
        assert!(d.too_many_missed);
        assert_eq!(d.scheduled, Some(now("2026-12-08T10:00:00Z")));
        let d = due_at(
            &cj(json!({"startingDeadlineSeconds": 60}), json!(null)),
            "2026-12-08T10:03:00Z",
        );
        assert_eq!(d.scheduled, None, "10:00 is older than the deadline");
        assert!(!d.too_many_missed);
    }

    #[test]
    fn the_job_is_named_after_the_activation_minute_and_owned() {
        let c = cj(
            json!({"jobTemplate": {"metadata": {"labels": {"team": "a"}}, "spec": {"backoffLimit": 2, "template": {}}}}),
            json!(null),
        );
        let j = job_for(&c, &now("2026-12-07T10:15:00Z"));
        let minutes = now("2026-12-07T10:15:00Z").timestamp().as_second() / 60;
        assert_eq!(j.name_any(), format!("tick-{minutes}"));
        assert_eq!(j.labels().get("team").map(String::as_str), Some("a"));
        assert_eq!(
            j.annotations()
                .get(SCHEDULED_ANNOTATION)
                .map(String::as_str),
            Some("2026-12-07T10:15:00+00:00")
        );
        let o = &j.owner_references()[0];
        assert_eq!(
            (o.kind.as_str(), o.api_version.as_str()),
            ("CronJob", "batch/v1")
        );
        assert_eq!(j.spec.and_then(|s| s.backoff_limit), Some(2));
    }
}
