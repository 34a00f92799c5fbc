//! The Job controller against an in-process API server under paused tokio time (no agents:
//! the test plays the kubelet by patching pod status), so back-off and deadlines run in
//! milliseconds.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use podvisor_controllers::{ControllerConfig, ControllerManager};
use podvisor_kit::WallClock;
use podvisor_testkit::wait_until;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often [`wait_until`] polls (paused time).
const POLL: Duration = Duration::from_millis(100);

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

struct Cluster {
    client: Client,
    clock: WallClock,
    stop: CancellationToken,
    manager: tokio::task::JoinHandle<Result<(), podvisor_controllers::ControllerError>>,
    _server: podvisor_apiserver::ApiServer,
}

#[allow(clippy::disallowed_methods)]
async fn start() -> Cluster {
    let server = podvisor_apiserver::testing::memory_server().await;
    let client = server.in_process_client(&server.admin_token());
    let clock = WallClock::tokio(std::time::SystemTime::now());
    let config = ControllerConfig {
        clock: clock.clone(),
        ..Default::default()
    };
    let stop = CancellationToken::new();
    let manager = tokio::spawn(ControllerManager::new(client.clone(), config).run(stop.clone()));
    Cluster {
        client,
        clock,
        stop,
        manager,
        _server: server,
    }
}

impl Cluster {
    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), "default")
    }
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }
    async fn job_pods(&self, job: &str) -> Vec<Pod> {
        let mut v = self
            .pods()
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        v.sort_by_key(|p| p.creation_timestamp().map(|t| t.0));
        v
    }
    /// The names of the job's pods that did not finish yet.
    async fn unfinished(&self, job: &str) -> Vec<String> {
        self.job_pods(job)
            .await
            .into_iter()
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .map(|p| p.name_any())
            .collect()
    }
    async fn create_job(&self, name: &str, spec: serde_json::Value) -> Job {
        let mut s = json!({"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}});
        for (k, v) in spec.as_object().cloned().unwrap_or_default() {
            s[k] = v;
        }
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name}, "spec": s,
        }))
        .expect("job");
        self.jobs()
            .create(&PostParams::default(), &job)
            .await
            .expect("create job")
    }
    /// Plays the kubelet: the pod's container exited with `code`.
    async fn finish(&self, pod: &str, code: i32) {
        let now = self.clock.timestamp().to_string();
        let phase = if code == 0 { "Succeeded" } else { "Failed" };
        let patch = json!({"status": {"phase": phase, "containerStatuses": [{
            "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "startedAt": now, "finishedAt": now}}}]}});
        self.pods()
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("pod status");
    }
    async fn condition(&self, job: &str, t: &str) -> Option<(String, String, String)> {
        let j = self.jobs().get_status(job).await.ok()?;
        let c = j
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == t && c.status == "True")?;
        Some((c.type_, c.reason?, c.message?))
    }
    async fn stop(self) {
        self.stop.cancel();
        self.manager.await.expect("join").expect("manager");
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_runs_its_completions_counts_through_the_finalizer_and_completes() {
    let c = start().await;
    c.create_job("pi", json!({"completions": 3, "parallelism": 2}))
        .await;
    wait_until("2 pods", Duration::from_secs(5), POLL, || async {
        c.job_pods("pi").await.len() == 2
    })
    .await;
    let pods = c.job_pods("pi").await;
    for p in &pods {
        assert!(p.name_any().starts_with("pi-"));
        assert!(p.finalizers().iter().any(|f| f == FINALIZER), "{p:?}");
        let owner = &p.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
    }
    for p in &pods {
        c.finish(&p.name_any(), 0).await;
    }
    wait_until("third pod", Duration::from_secs(5), POLL, || async {
        c.job_pods("pi").await.len() == 3
    })
    .await;
    // The counted pods lost their finalizer.
    wait_until(
        "finalizers removed",
        Duration::from_secs(5),
        POLL,
        || async {
            c.job_pods("pi")
                .await
                .iter()
                .filter(|p| p.finalizers().is_empty())
                .count()
                == 2
        },
    )
    .await;
    let third = c.unfinished("pi").await;
    assert_eq!(third.len(), 1);
    c.finish(&third[0], 0).await;
    wait_until("Complete", Duration::from_secs(5), POLL, || async {
        c.condition("pi", "Complete").await.is_some()
    })
    .await;
    let j = c.jobs().get_status("pi").await.expect("job");
    let s = j.status.expect("status");
    assert_eq!(s.succeeded, Some(3));
    assert_eq!(s.failed, None);
    assert_eq!(s.active, None);
    assert!(s.start_time.is_some() && s.completion_time.is_some());
    let types: Vec<_> = s
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.reason.unwrap_or_default()))
        .collect();
    assert_eq!(
        types,
        [
            (
                "SuccessCriteriaMet".to_string(),
                "CompletionsReached".to_string()
            ),
            ("Complete".to_string(), "CompletionsReached".to_string())
        ]
    );
    assert!(
        c.job_pods("pi")
            .await
            .iter()
            .all(|p| p.finalizers().is_empty())
    );
    // Events: three creates and the completion.
    wait_until("events", Duration::from_secs(5), POLL, || async {
        let evs = Api::<Event>::namespaced(c.client.clone(), "default")
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let n = |r: &str| {
            evs.iter()
                .filter(|e| e.reason.as_deref() == Some(r))
                .count()
        };
        n("SuccessfulCreate") == 3 && n("Completed") == 1
    })
    .await;

    // Deleting the Job collects its pods.
    c.jobs()
        .delete("pi", &DeleteParams::default())
        .await
        .expect("delete");
    wait_until("pods collected", Duration::from_secs(10), POLL, || async {
        c.job_pods("pi").await.is_empty()
    })
    .await;
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failed_pods_back_off_exponentially_until_the_backoff_limit_fails_the_job() {
    let c = start().await;
    c.create_job("flaky", json!({"backoffLimit": 2})).await;
    let mut created = Vec::new();
    for n in 1..=3 {
        wait_until("a pod", Duration::from_secs(60), POLL, || async {
            c.job_pods("flaky").await.len() == n
        })
        .await;
        created.push(Instant::now());
        let p = c.unfinished("flaky").await;
        assert_eq!(p.len(), 1);
        c.finish(&p[0], 1).await;
    }
    // 10 s after the first failure, 20 s after the second (finish times have whole seconds,
    // so up to one second less).
    let gap1 = created[1] - created[0];
    let gap2 = created[2] - created[1];
    assert!(
        gap1 >= Duration::from_secs(9) && gap1 < Duration::from_secs(11),
        "{gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_secs(19) && gap2 < Duration::from_secs(21),
        "{gap2:?}"
    );
    wait_until("Failed", Duration::from_secs(5), POLL, || async {
        c.condition("flaky", "Failed").await.is_some()
    })
    .await;
    assert_eq!(
        c.condition("flaky", "Failed").await,
        Some((
            "Failed".into(),
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into()
        ))
    );
    assert!(c.condition("flaky", "FailureTarget").await.is_some());
    let s = c
        .jobs()
        .get_status("flaky")
        .await
        .expect("job")
        .status
        .expect("status");
    assert_eq!(s.failed, Some(3));
    assert_eq!(s.completion_time, None);
    // No pod after failure.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(c.job_pods("flaky").await.len(), 3);
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_active_deadline_fails_a_running_job_and_ttl_deletes_it() {
    let c = start().await;
    c.create_job(
        "slow",
        json!({"activeDeadlineSeconds": 30, "ttlSecondsAfterFinished": 5, "parallelism": 2, "completions": 4}),
    )
    .await;
    wait_until("2 pods", Duration::from_secs(5), POLL, || async {
        c.job_pods("slow").await.len() == 2
    })
    .await;
    let took = wait_until("FailureTarget", Duration::from_secs(40), POLL, || async {
        c.condition("slow", "FailureTarget").await.is_some()
    })
    .await;
    assert!(took >= Duration::from_secs(29), "{took:?}");
    assert_eq!(
        c.condition("slow", "FailureTarget").await,
        Some((
            "FailureTarget".into(),
            "DeadlineExceeded".into(),
            "Job was active longer than specified deadline".into()
        ))
    );
    // Unscheduled pods go at once; the Job fails once none is left, then the TTL runs.
    wait_until("Failed", Duration::from_secs(5), POLL, || async {
        c.condition("slow", "Failed").await.is_some()
    })
    .await;
    let s = c
        .jobs()
        .get_status("slow")
        .await
        .expect("job")
        .status
        .expect("status");
    assert_eq!(s.failed, Some(2));
    let gone = wait_until("TTL deletion", Duration::from_secs(10), POLL, || async {
        c.jobs().get_opt("slow").await.ok().flatten().is_none()
    })
    .await;
    assert!(gone >= Duration::from_secs(4), "{gone:?}");
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_indexed_job_completes_every_index_once() {
    let c = start().await;
    c.create_job(
        "idx",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
    )
    .await;
    wait_until("3 pods", Duration::from_secs(5), POLL, || async {
        c.job_pods("idx").await.len() == 3
    })
    .await;
    let mut seen = Vec::new();
    for p in c.job_pods("idx").await {
        let ix = p
            .annotations()
            .get("batch.kubernetes.io/job-completion-index")
            .cloned()
            .expect("index");
        let spec = p.spec.clone().expect("spec");
        assert_eq!(spec.hostname, Some(format!("idx-{ix}")));
        assert!(p.name_any().starts_with(&format!("idx-{ix}-")));
        seen.push(ix);
    }
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);
    // Index 1 fails once and is retried with the same index.
    let by_ix = |pods: &[Pod], ix: &str| {
        pods.iter()
            .find(|p| {
                p.annotations()
                    .get("batch.kubernetes.io/job-completion-index")
                    .map(String::as_str)
                    == Some(ix)
                    && !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
            })
            .map(|p| p.name_any())
    };
    let pods = c.job_pods("idx").await;
    c.finish(&by_ix(&pods, "1").expect("1"), 1).await;
    c.finish(&by_ix(&pods, "0").expect("0"), 0).await;
    c.finish(&by_ix(&pods, "2").expect("2"), 0).await;
    wait_until(
        "completedIndexes 0,2",
        Duration::from_secs(5),
        POLL,
        || async {
            c.jobs()
                .get_status("idx")
                .await
                .ok()
                .and_then(|j| j.status?.completed_indexes)
                .as_deref()
                == Some("0,2")
        },
    )
    .await;
    wait_until("index 1 again", Duration::from_secs(15), POLL, || async {
        by_ix(&c.job_pods("idx").await, "1").is_some()
    })
    .await;
    let again = by_ix(&c.job_pods("idx").await, "1").expect("1");
    c.finish(&again, 0).await;
    wait_until("Complete", Duration::from_secs(5), POLL, || async {
        c.condition("idx", "Complete").await.is_some()
    })
    .await;
    let s = c
        .jobs()
        .get_status("idx")
        .await
        .expect("job")
        .status
        .expect("status");
    assert_eq!(s.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!((s.succeeded, s.failed), (Some(3), Some(1)));
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_suspended_job_runs_nothing_until_resumed() {
    let c = start().await;
    c.create_job("later", json!({"suspend": true})).await;
    wait_until("Suspended", Duration::from_secs(5), POLL, || async {
        c.condition("later", "Suspended").await.is_some()
    })
    .await;
    assert!(c.job_pods("later").await.is_empty());
    let s = c
        .jobs()
        .get_status("later")
        .await
        .expect("job")
        .status
        .expect("status");
    assert_eq!(s.start_time, None);
    c.jobs()
        .patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .expect("resume");
    wait_until("a pod", Duration::from_secs(5), POLL, || async {
        c.job_pods("later").await.len() == 1
    })
    .await;
    let j = c.jobs().get_status("later").await.expect("job");
    let cond = j
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Suspended"))
        .cloned()
        .expect("condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("JobResumed"))
    );
    assert!(j.status.and_then(|s| s.start_time).is_some());
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cronjob_runs_a_job_each_minute_and_keeps_its_history() {
    use k8s_openapi::api::batch::v1::CronJob;
    let c = start().await;
    let cj: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {"schedule": "* * * * *", "successfulJobsHistoryLimit": 1,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}}}
    }))
    .expect("cronjob");
    let cjs: Api<CronJob> = Api::namespaced(c.client.clone(), "default");
    cjs.create(&PostParams::default(), &cj)
        .await
        .expect("create");
    let job_names = || async {
        let mut v: Vec<String> = c
            .jobs()
            .list(&ListParams::default())
            .await
            .map(|l| l.items.iter().map(|j| j.name_any()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let first_at = wait_until("first job", Duration::from_secs(61), POLL, || async {
        job_names().await.len() == 1
    })
    .await;
    let first = job_names().await[0].clone();
    let minutes: i64 = first
        .strip_prefix("tick-")
        .and_then(|m| m.parse().ok())
        .expect("tick-<minutes>");
    let now_s = c.clock.timestamp().as_second();
    assert!(
        minutes * 60 <= now_s && now_s - minutes * 60 < 5,
        "{first} at {now_s}"
    );
    let active = || {
        let cjs = cjs.clone();
        async move {
            cjs.get_status("tick")
                .await
                .ok()
                .and_then(|cj| cj.status?.active)
                .map(|a| a.len())
                .unwrap_or(0)
        }
    };
    wait_until("active 1", Duration::from_secs(5), POLL, || async {
        active().await == 1
    })
    .await;
    // Forbid: while the first Job runs, the next minute starts nothing.
    tokio::time::sleep(Duration::from_secs(61) - first_at.min(Duration::from_secs(1))).await;
    assert_eq!(job_names().await, std::slice::from_ref(&first));
    // The first Job completes; the next activation runs, and history keeps one.
    let pod = c.unfinished(&first).await;
    c.finish(&pod[0], 0).await;
    // The missed activation of the minute runs at once (Forbid held it back).
    wait_until("second job", Duration::from_secs(5), POLL, || async {
        job_names().await.iter().any(|n| *n != first)
    })
    .await;
    wait_until(
        "status: first succeeded, second active",
        Duration::from_secs(5),
        POLL,
        || async {
            let Some(s) = cjs.get_status("tick").await.ok().and_then(|c| c.status) else {
                return false;
            };
            let names: Vec<_> = s
                .active
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| r.name)
                .collect();
            s.last_successful_time.is_some() && names.len() == 1 && names[0] != first
        },
    )
    .await;
    let second = job_names()
        .await
        .into_iter()
        .find(|n| *n != first)
        .expect("second");
    let pod = loop {
        let p = c.unfinished(&second).await;
        if !p.is_empty() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.finish(&pod[0], 0).await;
    wait_until("history of one", Duration::from_secs(10), POLL, || async {
        job_names().await == [second.clone()]
    })
    .await;
    c.stop().await;
}
