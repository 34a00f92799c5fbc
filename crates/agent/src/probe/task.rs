//! One probe worker's task: the loop on tokio time around the pure [`Worker`], and the
//! context every task holds (the shared state, the runtime, the clock, the update channel).
//!
//! ```text
//! run(worker, ctx, stop, trigger):
//!   (jitter if the agent just started)
//!   loop: do_probe ── before_probe (under the lock) ── handler with retries ──
//!         after_probe (under the lock) ── publish Changed / Event / Kill
//!         wait for the period tick, a trigger, or stop
//!   worker_gone: its results are removed and Unknown is published
//! ```

use std::sync::{Arc, Mutex};

use podvisor_runtime::ContainerRuntime;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::history::ResultRun;
use super::shared::{KillRequest, ProbeUpdate, Shared, lock};
use super::worker::{Published, Step, Worker};
use super::{MAX_PROBE_RETRIES, ProbeResult, ProbeSpec, ProbeType};
use crate::clock::WallClock;
use crate::handlers::{HandlerEvent, HandlerResult, HandlerTarget, Outcome, run_probe_action};

/// What every worker task holds.
pub struct WorkerCtx {
    pub(crate) shared: Mutex<Shared>,
    pub(crate) runtime: Arc<dyn ContainerRuntime>,
    pub(crate) clock: WallClock,
    pub(crate) agent_started: Option<Instant>,
    pub(crate) steps: Option<Arc<dyn crate::api::EventSink>>,
    pub(crate) updates: mpsc::UnboundedSender<ProbeUpdate>,
}

impl WorkerCtx {
    fn send(&self, u: ProbeUpdate) {
        // The pod worker may have gone; then nobody needs the update.
        let _ = self.updates.send(u);
    }

    fn report(&self, w: &Worker, published: Vec<Published>) {
        for p in published {
            self.send(ProbeUpdate::Changed {
                container: w.container.clone(),
                probe_type: w.probe_type,
                container_id: p.container_id,
                result: p.result,
            });
        }
    }

    fn gated_off(&self, shared: &Shared, t: ProbeType) -> bool {
        shared.deleting && matches!(t, ProbeType::Liveness | ProbeType::Startup)
    }

    /// One run of the worker's algorithm. Returns whether to keep going.
    pub(crate) async fn do_probe(&self, w: &mut Worker) -> bool {
        let (published, step, target) = {
            let mut shared = lock(&self.shared);
            if self.gated_off(&shared, w.probe_type) {
                return false;
            }
            let (published, step) = w.before_probe(&mut shared, self.clock.now());
            let target = match &step {
                Step::Probe(id) => shared.specs.get(&w.container).map(|c| HandlerTarget {
                    runtime: self.runtime.clone(),
                    container_id: id.clone(),
                    container: c.clone(),
                    pod_ip: shared.pod.pod_ip.clone(),
                }),
                _ => None,
            };
            (published, step, target)
        };
        self.report(w, published);
        let id = match step {
            Step::Exit => return false,
            Step::Skip => return true,
            Step::Probe(id) => id,
        };
        let Some(target) = target else {
            return true;
        };
        let result = probe_with_retries(&w.spec, &target).await;
        let now = self.clock.now();
        let mut shared = lock(&self.shared);
        if self.gated_off(&shared, w.probe_type) || shared.terminal {
            return false;
        }
        let label = w.probe_type.label();
        let event = |reason: &'static str, message: String| {
            ProbeUpdate::Event(HandlerEvent {
                container: w.container.clone(),
                event_type: "Warning",
                reason,
                message,
            })
        };
        let verdict = match result.outcome {
            Outcome::Success => Some(ProbeResult::Success),
            Outcome::Warning => {
                self.send(event(
                    "ProbeWarning",
                    format!("{label} probe warning: {}", result.output),
                ));
                Some(ProbeResult::Success)
            }
            Outcome::Failure { .. } => {
                self.send(event(
                    "Unhealthy",
                    format!("{label} probe failed: {}", result.output),
                ));
                Some(ProbeResult::Failure)
            }
            Outcome::Error => {
                self.send(event(
                    "Unhealthy",
                    format!("{label} probe errored: {}", result.output),
                ));
                None
            }
        };
        let published = verdict.and_then(|v| w.after_probe(&mut shared, &id, v));
        if let Some(h) = shared
            .histories
            .get_mut(&w.container)
            .and_then(|m| m.get_mut(&w.probe_type))
        {
            h.push(now, &result);
            h.run = w.run().map(|(r, count)| ResultRun {
                result: if r == ProbeResult::Success {
                    "success"
                } else {
                    "failure"
                },
                count,
            });
            h.threshold = match w.run() {
                Some((ProbeResult::Success, _)) => w.spec.success_threshold,
                _ => w.spec.failure_threshold,
            };
        }
        if let Some(p) = published {
            if let Some(steps) = &self.steps {
                let pod = crate::api::PodRef {
                    namespace: shared.pod.namespace.clone(),
                    name: shared.pod.name.clone(),
                    uid: shared.pod.uid.clone(),
                };
                let verdict = format!("{:?}", p.result);
                steps.step(
                    &pod,
                    crate::api::Step::ProbeResult,
                    Some(&w.container),
                    format!(
                        "{label} probe: {verdict} {}",
                        podvisor_kit::timeline::excerpt(&result.output)
                    )
                    .trim_end()
                    .to_string(),
                    &[
                        ("probe", w.probe_type.key().to_string()),
                        ("result", verdict),
                    ],
                );
            }
            if w.probe_type == ProbeType::Startup && p.result == ProbeResult::Success {
                // The container is started now: readiness runs at once (UpdatePodStatus).
                shared.trigger(&w.container, ProbeType::Readiness);
            }
            let kill = (matches!(w.probe_type, ProbeType::Liveness | ProbeType::Startup)
                && p.result == ProbeResult::Failure)
                .then(|| {
                    let what = if w.probe_type == ProbeType::Liveness {
                        "liveness"
                    } else {
                        "startup"
                    };
                    let restart = !w.restart_never;
                    KillRequest {
                        container: w.container.clone(),
                        container_id: p.container_id.clone(),
                        probe_type: w.probe_type,
                        message: format!(
                            "Container {} failed {what} probe{}",
                            w.container,
                            if restart { ", will be restarted" } else { "" }
                        ),
                        grace_period_seconds: w.spec.termination_grace_period_seconds,
                    }
                });
            drop(shared);
            self.report(w, vec![p]);
            if let Some(k) = kill {
                self.send(ProbeUpdate::Kill(k));
            }
        }
        true
    }

    /// A worker ended: drop its results and tell the pod worker (started/ready may change).
    pub(crate) fn worker_gone(&self, w: &Worker) {
        let mut shared = lock(&self.shared);
        let key = (w.container.clone(), w.probe_type);
        shared.workers.remove(&key);
        shared.triggers.remove(&key);
        let removed = shared.results.remove(&key);
        drop(shared);
        if let Some((id, _)) = removed {
            self.send(ProbeUpdate::Changed {
                container: w.container.clone(),
                probe_type: w.probe_type,
                container_id: id,
                result: ProbeResult::Unknown,
            });
        }
    }
}

/// Runs the handler, retrying internal errors up to [`MAX_PROBE_RETRIES`] times.
pub async fn probe_with_retries(spec: &ProbeSpec, target: &HandlerTarget) -> HandlerResult {
    let mut last = None;
    for _ in 0..MAX_PROBE_RETRIES {
        let r = run_probe_action(&spec.action, target, spec.timeout()).await;
        if r.outcome != Outcome::Error {
            return r;
        }
        last = Some(r);
    }
    last.unwrap_or(HandlerResult {
        outcome: Outcome::Error,
        output: String::new(),
        latency: std::time::Duration::ZERO,
    })
}

/// The worker loop. Ends when the worker exits by its rules or `stop` is cancelled; then
/// its results are removed.
pub async fn run(
    mut worker: Worker,
    ctx: Arc<WorkerCtx>,
    stop: CancellationToken,
    trigger: Arc<Notify>,
) {
    let period = worker.spec.period();
    if let Some(agent_started) = ctx.agent_started
        && agent_started.elapsed() < period
    {
        let jitter = period.mul_f64(rand::random::<f64>());
        tokio::select! {
            _ = stop.cancelled() => { ctx.worker_gone(&worker); return; }
            _ = tokio::time::sleep(jitter) => {}
        }
    }
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let keep_going = tokio::select! {
            biased;
            _ = stop.cancelled() => false,
            k = ctx.do_probe(&mut worker) => k,
        };
        if !keep_going || stop.is_cancelled() {
            break;
        }
        // A trigger that came in before or during this run is satisfied by it.
        let _ = futures::FutureExt::now_or_never(trigger.notified());
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
            _ = trigger.notified() => {}
        }
    }
    ctx.worker_gone(&worker);
}
