//! Stopping containers: the one path for every stop the agent makes, whether the pod
//! terminates (deletion, completion, drain, `activeDeadlineSeconds`) or one container is
//! killed so that it restarts (a failed liveness or startup probe, a failed postStart hook,
//! a changed spec). As the kubelet's `killContainer`, one function stops one container:
//! `Stopper::stop`.
//!
//! # Expected flow of one stop
//!
//! 1. Nothing to do if the container already exited.
//! 2. `Killing` event (the message says why: `Stopping container c`, the probe's message,
//!    `FailedPostStartHook`, `Container c definition changed, will be restarted`).
//! 3. preStop, if the container has one and was not signalled before (a resumed termination
//!    does not run it twice), with what is left until the deadline as its budget; it is
//!    dropped at the deadline or when the container exits. A failure gives the warning
//!    `FailedPreStopHook` and the stop goes on.
//! 4. The stop signal (`lifecycle.stopSignal`, else SIGTERM), recorded first in the
//!    persisted termination record, so that a re-adopting agent does not send it twice;
//!    `StopSignalNotHandled` when the runtime says PID 1 ignores it.
//! 5. SIGKILL at [`sigkill_at`]: the deadline, but never less than [`MIN_STOP_WINDOW`] after
//!    the stop signal. That is the one minimum-grace rule, whatever preStop took.
//! 6. SIGKILL repeated until the runtime reports the exit (or says the container is gone,
//!    which counts as killed).
//!
//! The stop ends as soon as the container's exit is seen: it waits on exit events (the
//! worker feeds them into a `watch` of exited instances), it never polls.
//!
//! # Deadlines
//!
//! Pod termination follows the pod's [`Deadline`] through a `watch`: it only moves earlier
//! (`state.rs`), and every running stop sees the new one. A single kill has a deadline of
//! its own, `grace` from now (the probe's `terminationGracePeriodSeconds`, else the pod's).
//!
//! # Pod termination order
//!
//! `Stopper::stop_all`: app containers and regular init containers all at once; then,
//! once they exited or at the deadline, sidecars one after the other in reverse spec order,
//! each with its preStop; at the deadline the sidecars not yet stopping are stopped all at
//! once, so every process is still gone by max(deadline, signal + 2 s).
//!
//! # Who calls what
//!
//! The worker starts pod termination on the `StartTermination`/`ResumeTermination` effects
//! (`PodWorker::start_termination`; the future runs beside the loop), passes a shortened
//! deadline on `DeadlineChanged`, and kills one container with
//! `PodWorker::kill_container` (inside the loop, pre-empted by a stop request or the
//! agent's shutdown; the restart that follows is `restart::decide`'s).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Container;
use podvisor_api::status::{self as rules, pod_full_name};
use podvisor_runtime::{ContainerId, ContainerRuntime, ContainerState, Signal};
use tokio::sync::watch;
use tokio::time::Instant;

use super::deadlines::{DeadlineStore, TerminationRecord};
use super::spec::stop_signal_of;
use super::state::{Deadline, stop_requested};
use super::worker::PodWorker;
use crate::api::{EventSink, EventType, PodEvent, PodRef, Step};
use crate::clock::WallClock;
use crate::hooks::{HookContext, HookRunner};

/// The minimum time between the stop signal and SIGKILL (spec §1.6; the kubelet's
/// `minimumGracePeriodInSeconds`).
pub const MIN_STOP_WINDOW: Duration = Duration::from_secs(2);

/// When a container that got its stop signal at `signalled_at` is SIGKILLed: at the
/// deadline, but never less than [`MIN_STOP_WINDOW`] after the signal (a preStop hook that
/// used the whole grace leaves the process two seconds). `None`: no signal was sent by this
/// stop (it was sent before the agent restarted, or the container left the spec): at the
/// deadline.
pub fn sigkill_at(deadline: Instant, signalled_at: Option<Instant>) -> Instant {
    match signalled_at {
        Some(at) => deadline.max(at + MIN_STOP_WINDOW),
        None => deadline,
    }
}

/// One container to stop.
pub(super) struct StopTarget {
    /// Its spec (preStop, stop signal).
    pub(super) container: Container,
    /// The running instance.
    pub(super) id: ContainerId,
    /// Its stop signal was already sent (before a re-adoption): no preStop, no signal.
    pub(super) already_signalled: bool,
    /// The message of the `Killing` event.
    pub(super) killing: String,
}

/// The persisted termination record and its store (pod termination only).
#[derive(Clone)]
struct Record {
    record: Arc<Mutex<TerminationRecord>>,
    store: DeadlineStore,
}

/// Everything a stop needs, owned: pod termination runs as a future beside the worker's loop.
#[derive(Clone)]
pub(super) struct Stopper {
    runtime: Arc<dyn ContainerRuntime>,
    hooks: Arc<dyn HookRunner>,
    events: Arc<dyn EventSink>,
    clock: WallClock,
    pod_ref: PodRef,
    pod_ip: String,
    /// The object is gone: events have nothing to attach to and are not sent.
    object_gone: bool,
    deadline: watch::Receiver<Deadline>,
    exited: watch::Receiver<HashSet<ContainerId>>,
    record: Option<Record>,
    /// The names of the pod's init containers (their events name `spec.initContainers`).
    init_names: Arc<Vec<String>>,
}

impl Stopper {
    fn event(&self, field: Option<&str>, type_: EventType, reason: &str, message: String) {
        if self.object_gone {
            return;
        }
        self.events.emit(PodEvent {
            pod: self.pod_ref.clone(),
            field_path: field.map(|n| {
                if self.init_names.iter().any(|i| i == n) {
                    format!("spec.initContainers{{{n}}}")
                } else {
                    format!("spec.containers{{{n}}}")
                }
            }),
            type_,
            reason: reason.to_string(),
            message,
        });
    }

    /// A timeline step (recorded also once the object is gone: the timeline outlives it).
    fn step(&self, field: Option<&str>, step: Step, message: String, details: &[(&str, String)]) {
        self.events
            .step(&self.pod_ref, step, field, message, details);
    }

    /// The `Killed` step: SIGKILL, and how late against the deadline.
    fn killed_step(&self, field: Option<&str>) {
        let deadline = self.deadline.borrow().at;
        let late_ms = match self.clock.now().duration_since(deadline) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        };
        let deadline = podvisor_kit::timeline::format_time(deadline);
        self.step(
            field,
            Step::Killed,
            format!("SIGKILL {late_ms}ms after the deadline {deadline}"),
            &[("lateMs", late_ms.to_string()), ("deadline", deadline)],
        );
    }

    fn has_exited(&self, id: &ContainerId) -> bool {
        self.exited.borrow().contains(id)
    }

    /// Resolves once the container has exited.
    async fn exited(&self, id: &ContainerId) {
        let mut rx = self.exited.clone();
        let _ = rx.wait_for(|set| set.contains(id)).await;
    }

    /// Resolves at `when(deadline)`, following deadline changes.
    async fn until(&self, when: impl Fn(Instant) -> Instant) {
        let mut rx = self.deadline.clone();
        loop {
            let at = when(self.clock.instant_for(rx.borrow_and_update().at));
            tokio::select! {
                _ = tokio::time::sleep_until(at) => return,
                r = rx.changed() => if r.is_err() {
                    tokio::time::sleep_until(at).await;
                    return;
                },
            }
        }
    }

    fn mark_signalled(&self, name: &str) {
        let Some(Record { record, store }) = &self.record else {
            return;
        };
        let mut rec = record.lock().unwrap_or_else(|e| e.into_inner());
        if !rec.signalled.iter().any(|n| n == name) {
            rec.signalled.push(name.to_string());
            if let Err(e) = store.save(&rec) {
                tracing::warn!(error = %e, "cannot persist termination record");
            }
        }
    }

    /// Stops the pod's containers in the termination order (module documentation):
    /// `first` all at once, then `sidecars` one by one in the given (reverse spec) order.
    pub(super) async fn stop_all(self, first: Vec<StopTarget>, sidecars: Vec<StopTarget>) {
        let first_ids: Vec<ContainerId> = first.iter().map(|t| t.id.clone()).collect();
        let first_stops =
            futures::future::join_all(first.into_iter().map(|t| self.clone().stop(t)));
        let env = self.clone();
        let sidecar_stops = async move {
            if !sidecars.is_empty() {
                let mut rx = env.exited.clone();
                tokio::select! {
                    _ = rx.wait_for(|set| first_ids.iter().all(|id| set.contains(id))) => {}
                    _ = env.until(|d| d) => {}
                }
            }
            let mut rest: VecDeque<StopTarget> = sidecars.into();
            let mut in_flight = futures::stream::FuturesUnordered::new();
            let mut all_at_once = false;
            loop {
                if in_flight.is_empty() {
                    match rest.pop_front() {
                        Some(t) => in_flight.push(env.clone().stop(t)),
                        None => break,
                    }
                }
                if all_at_once {
                    while in_flight.next().await.is_some() {}
                    continue;
                }
                tokio::select! {
                    _ = in_flight.next() => {}
                    _ = env.until(|d| d) => {
                        all_at_once = true;
                        for t in rest.drain(..) {
                            in_flight.push(env.clone().stop(t));
                        }
                    }
                }
            }
        };
        futures::future::join(first_stops, sidecar_stops).await;
    }

    /// Stops one container: the numbered flow of the module documentation.
    pub(super) async fn stop(self, t: StopTarget) {
        let name = t.container.name.clone();
        let id = t.id.clone();
        let field = Some(name.as_str());
        // 1. already exited
        if self.has_exited(&id) {
            return;
        }
        // 2. Killing
        self.event(field, EventType::Normal, "Killing", t.killing.clone());
        // 3. preStop within the deadline
        let pre_stop = t
            .container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.clone());
        if let (Some(handler), false) = (pre_stop, t.already_signalled) {
            let budget = self
                .deadline
                .borrow()
                .at
                .duration_since(self.clock.now())
                .unwrap_or(Duration::ZERO);
            if !budget.is_zero() {
                let ctx = HookContext {
                    pod_full_name: pod_full_name(
                        &self.pod_ref.name,
                        &self.pod_ref.namespace,
                        &self.pod_ref.uid,
                    ),
                    container: t.container.clone(),
                    container_id: id.clone(),
                    pod_ip: self.pod_ip.clone(),
                    budget,
                };
                self.step(
                    field,
                    Step::PreStopStarted,
                    format!("preStop started, {}ms to the deadline", budget.as_millis()),
                    &[],
                );
                let outcome = tokio::select! {
                    r = self.hooks.run(&ctx, &handler) => if let Err(e) = r {
                        tracing::info!(container = %name, error = %e, "preStop hook failed");
                        self.event(field, EventType::Warning, "FailedPreStopHook", "PreStopHook failed".into());
                        "failed"
                    } else {
                        "completed"
                    },
                    _ = self.until(|d| d) => {
                        tracing::info!(container = %name, "preStop hook cut at the deadline");
                        "cut at the deadline"
                    }
                    _ = self.exited(&id) => "ended by the container's exit",
                };
                self.step(
                    field,
                    Step::PreStopFinished,
                    format!("preStop {outcome}"),
                    &[("outcome", outcome.to_string())],
                );
            }
        }
        if self.has_exited(&id) {
            return;
        }
        // 4. the stop signal
        let signalled_at = (!t.already_signalled).then(Instant::now);
        if signalled_at.is_some() {
            // The instance's own stop signal (the pod's, else its image's STOPSIGNAL).
            let status = self.runtime.container_status(&id).await.ok();
            let signal = status
                .as_ref()
                .and_then(|st| st.config.stop_signal)
                .unwrap_or_else(|| stop_signal_of(&t.container));
            if let Some(st) = &status
                && st.handles_stop_signal == Some(false)
            {
                self.event(
                    field,
                    EventType::Warning,
                    "StopSignalNotHandled",
                    stop_signal_not_handled_message(signal),
                );
            }
            self.mark_signalled(&name);
            if let Err(e) = self.runtime.signal(&id, signal).await
                && !e.is_not_found()
            {
                tracing::warn!(container = %name, error = %e, "stop signal failed");
            }
            let handled = status.as_ref().and_then(|st| st.handles_stop_signal);
            self.step(
                field,
                Step::StopSignal,
                format!(
                    "{} sent{}",
                    signal.name(),
                    if handled == Some(false) {
                        ", PID 1 does not handle it"
                    } else {
                        ""
                    }
                ),
                &[
                    ("signal", signal.name().to_string()),
                    (
                        "handled",
                        handled.map_or("unknown".into(), |h| h.to_string()),
                    ),
                ],
            );
        }
        // 5. SIGKILL at the deadline, at least the stop window after the signal
        tokio::select! {
            _ = self.exited(&id) => return,
            _ = self.until(|d| sigkill_at(d, signalled_at)) => {}
        }
        // 6. SIGKILL the whole tree; repeat until the runtime reports the exit
        for attempt in 0..30u32 {
            if attempt == 0 {
                self.killed_step(field);
            }
            match self.runtime.signal(&id, Signal::KILL).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => return,
                Err(e) => tracing::warn!(container = %name, error = %e, "SIGKILL failed"),
            }
            tokio::select! {
                _ = self.exited(&id) => return,
                _ = tokio::time::sleep(Duration::from_millis(if attempt == 0 { 500 } else { 1000 })) => {}
            }
            if let Ok(st) = self.runtime.container_status(&id).await
                && !matches!(st.state, ContainerState::Running { .. })
            {
                return;
            }
        }
        tracing::error!(container = %name, "container still running after repeated SIGKILL");
    }
}

impl PodWorker {
    /// A stopper following `deadline`, with the termination record if pod termination.
    fn stopper(
        &self,
        deadline: watch::Receiver<Deadline>,
        record: Option<Arc<Mutex<TerminationRecord>>>,
    ) -> Stopper {
        let init_names = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .map(|v| v.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        Stopper {
            runtime: self.ctx.runtime.clone(),
            hooks: self.ctx.hooks.clone(),
            events: self.ctx.events.clone(),
            clock: self.ctx.clock.clone(),
            pod_ref: self.pod_ref(),
            pod_ip: self.pod_ip(),
            object_gone: self.object_gone(),
            deadline,
            exited: self.exited_tx.subscribe(),
            record: record.map(|record| Record {
                record,
                store: self.ctx.deadlines.clone(),
            }),
            init_names: Arc::new(init_names),
        }
    }

    /// Starts pod termination (the `StartTermination` and `ResumeTermination` effects): the
    /// pod's kill token fires, liveness and startup probes stop, the deadline is recorded
    /// (and persisted unless resumed from disk), and [`Stopper::stop_all`] runs beside the
    /// loop until every container stopped.
    pub(super) fn start_termination(&mut self, persist: bool) {
        self.kill.cancel();
        if let Some(p) = self.probes.as_mut() {
            p.terminating();
        }
        let Some(deadline) = self.current_deadline() else {
            return;
        };
        let record = self
            .record
            .get_or_insert_with(|| {
                Arc::new(Mutex::new(TerminationRecord {
                    uid: self.uid.clone(),
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    deadline,
                    signalled: Vec::new(),
                }))
            })
            .clone();
        let signalled: Vec<String> = {
            let mut rec = record.lock().unwrap_or_else(|e| e.into_inner());
            rec.deadline = deadline;
            if persist && let Err(e) = self.ctx.deadlines.save(&rec) {
                tracing::warn!(error = %e, "cannot persist the termination deadline");
            }
            rec.signalled.clone()
        };
        let (deadline_tx, deadline_rx) = watch::channel(deadline);
        let deadline_moves = deadline_tx.subscribe();
        self.deadline_tx = Some(deadline_tx);
        let stopper = self.stopper(deadline_rx, Some(record));
        // The drain barrier (crate::drain): out of every node's load balancer first, unless
        // the stop signal already went out before an agent restart.
        let barrier = self
            .ctx
            .drain
            .clone()
            .filter(|_| signalled.is_empty() && !deadline.force && crate::drain::enabled(&self.pod))
            .map(|view| {
                let grace = Duration::from_secs(u64::try_from(deadline.grace_seconds).unwrap_or(0));
                (
                    view,
                    crate::drain::bound(grace),
                    self.pod.clone(),
                    self.pod_ips.clone(),
                )
            });
        let spec = self.pod.spec.clone().unwrap_or_default();
        let spec_init = spec.init_containers.clone().unwrap_or_default();
        let targets = |c: &Container| -> Vec<StopTarget> {
            self.containers
                .get(&c.name)
                .map(|rec| {
                    rec.instances
                        .iter()
                        .filter(|i| i.is_running())
                        .map(|i| StopTarget {
                            container: c.clone(),
                            id: i.id.clone(),
                            already_signalled: signalled.contains(&c.name),
                            killing: format!("Stopping container {}", c.name),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        // first every app container and running regular init container, all at once
        let mut first: Vec<StopTarget> = spec.containers.iter().flat_map(targets).collect();
        first.extend(
            spec_init
                .iter()
                .filter(|c| !rules::is_sidecar(c))
                .flat_map(targets),
        );
        let ephemeral = super::spec::ephemeral_containers(&self.pod);
        first.extend(ephemeral.iter().flat_map(targets));
        // containers of the sandbox that are not in the spec any more: SIGKILL at the deadline
        for (name, rec) in &self.containers {
            if spec
                .containers
                .iter()
                .chain(spec_init.iter())
                .chain(ephemeral.iter())
                .any(|c| &c.name == name)
            {
                continue;
            }
            for i in rec.instances.iter().filter(|i| i.is_running()) {
                first.push(StopTarget {
                    container: Container {
                        name: name.clone(),
                        ..Default::default()
                    },
                    id: i.id.clone(),
                    already_signalled: true,
                    killing: format!("Stopping container {name}"),
                });
            }
        }
        // then the sidecars, in reverse spec order
        let sidecars: Vec<StopTarget> = spec_init
            .iter()
            .rev()
            .filter(|c| rules::is_sidecar(c))
            .flat_map(targets)
            .collect();
        self.termination = Some(Box::pin(async move {
            if let Some((view, bound, pod, ips)) = barrier {
                let mut moves = deadline_moves;
                let outcome = tokio::select! {
                    o = crate::drain::wait(view.as_ref(), &pod, &ips, bound) => Some(o),
                    // a shorter deadline (forced deletion) ends the wait
                    _ = moves.changed() => None,
                };
                if let Some((warning, reason, message)) =
                    outcome.and_then(|o| crate::drain::event(&o, bound))
                {
                    let type_ = if warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    };
                    stopper.event(None, type_, reason, message);
                }
            }
            stopper.stop_all(first, sidecars).await;
        }));
    }

    /// The `DeadlineChanged` effect: the shorter deadline is persisted and every running
    /// stop follows it.
    pub(super) fn deadline_changed(&mut self) {
        let Some(deadline) = self.current_deadline() else {
            return;
        };
        if deadline.force {
            tracing::info!("forced stop: one second of grace, then the 2 s stop window");
        }
        if let Some(record) = &self.record {
            let mut rec = record.lock().unwrap_or_else(|e| e.into_inner());
            rec.deadline = deadline;
            if let Err(e) = self.ctx.deadlines.save(&rec) {
                tracing::warn!(error = %e, "cannot persist the termination deadline");
            }
        }
        if let Some(tx) = &self.deadline_tx {
            let _ = tx.send(deadline);
        }
    }

    /// Kills one running container so that it restarts (a failed liveness or startup probe,
    /// a failed postStart hook, a changed spec): [`Stopper::stop`] with a deadline `grace`
    /// seconds from now and `killing` as the `Killing` event's message. Runtime notes are
    /// applied while it runs (the stop waits for the exit event); a stop request (deletion,
    /// drain, the object gone) or the agent's shutdown pre-empts it. Once the exit is
    /// recorded the worker takes another turn at once (the restart decision).
    pub(super) async fn kill_container(
        &mut self,
        c: &Container,
        id: &ContainerId,
        grace_seconds: i64,
        killing: String,
    ) {
        let now = self.ctx.clock.now();
        let deadline = Deadline {
            started_at: now,
            at: now + Duration::from_secs(grace_seconds.max(0) as u64),
            grace_seconds: grace_seconds.max(0),
            force: false,
        };
        let (_deadline_tx, deadline_rx) = watch::channel(deadline);
        let stop = self.stopper(deadline_rx, None).stop(StopTarget {
            container: c.clone(),
            id: id.clone(),
            already_signalled: false,
            killing,
        });
        self.drive_stop(stop).await;
        if self.exited_tx.borrow().contains(id) {
            self.wake_at(Instant::now());
        }
    }

    /// Kills `targets` at once, all together: no preStop hook, no stop signal, the grace
    /// period ignored (SIGKILL, repeated until the runtime reports the exit) — the restart of
    /// all containers (`restart_all.rs`). `killing` gives each `Killing` event's message.
    /// Returns once every target exited or a stop was requested.
    pub(super) async fn kill_now(
        &mut self,
        targets: Vec<(Container, ContainerId)>,
        killing: impl Fn(&str) -> String,
    ) {
        if targets.is_empty() {
            return;
        }
        let now = self.ctx.clock.now();
        let (_deadline_tx, deadline_rx) = watch::channel(Deadline {
            started_at: now,
            at: now,
            grace_seconds: 0,
            force: true,
        });
        let stopper = self.stopper(deadline_rx, None);
        let stops = futures::future::join_all(targets.into_iter().map(|(c, id)| {
            let killing = killing(&c.name);
            stopper.clone().stop(StopTarget {
                container: c,
                id,
                // nothing to send but SIGKILL
                already_signalled: true,
                killing,
            })
        }));
        self.drive_stop(stops).await;
        // the exits the runtime recorded meanwhile
        while let Ok(note) = self.notes_rx.try_recv() {
            self.apply_note(note).await;
        }
        self.apply_note(super::worker::RuntimeNote::Resync).await;
    }

    /// Runs `stop` (a stop the worker started itself: a restart kill) to its end, applying
    /// the runtime notes meanwhile (the stop waits for the exit event); a stop request
    /// (deletion, drain, the object gone) or the agent's shutdown pre-empts it.
    async fn drive_stop(&mut self, stop: impl Future) {
        tokio::pin!(stop);
        let mut input = self.input_rx.clone();
        let shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = stop_requested(&mut input) => {
                    self.input_changed = true;
                    break;
                }
                _ = shutdown.cancelled() => break,
                Some(note) = self.notes_rx.recv() => self.apply_note(note).await,
            }
        }
    }
}

/// The `StopSignalNotHandled` warning: PID 1 neither catches its stop signal nor dies of
/// it by default (the kernel ignores default-action signals for a namespace's init), so only
/// SIGKILL at the end of the grace period ends it. Given once per instance soon after it
/// started (`sync.rs`) and again when the signal is sent.
pub(super) fn stop_signal_not_handled_message(signal: Signal) -> String {
    format!(
        "PID 1 does not handle {}: it will be killed after the grace period",
        signal.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sigkill_keeps_the_stop_window_after_the_signal() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // signal long before the deadline: SIGKILL at the deadline
        assert_eq!(sigkill_at(t0 + s(30), Some(t0 + s(10))), t0 + s(30));
        // preStop used the whole grace: two more seconds
        assert_eq!(sigkill_at(t0 + s(30), Some(t0 + s(30))), t0 + s(32));
        assert_eq!(sigkill_at(t0 + s(30), Some(t0 + s(29))), t0 + s(31));
        // grace 0: the window alone
        assert_eq!(sigkill_at(t0, Some(t0)), t0 + s(2));
        // signalled before a re-adoption: at the deadline
        assert_eq!(sigkill_at(t0 + s(30), None), t0 + s(30));
    }
}
