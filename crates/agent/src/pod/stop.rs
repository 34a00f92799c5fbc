//! Stopping containers: pod termination (`StopEnv`) and the kill of one container for a
//! restart.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use podvisor_api::status::{self as rules, pod_full_name};
use podvisor_runtime::{ContainerId, ContainerRuntime, ContainerState, Signal};
use tokio::sync::watch;
use tokio::time::Instant;

use super::deadlines::{DeadlineStore, TerminationRecord};
use super::spec::stop_signal_of;
use super::state::{Deadline, WorkerInput};
use super::worker::PodWorker;
use crate::api::{EventSink, EventType, PodEvent, PodRef};
use crate::clock::WallClock;
use crate::hooks::{HookContext, HookRunner};
use crate::probe::glue as probe_glue;

/// The minimum time between the stop signal and SIGKILL (spec §1.6).
pub const MIN_STOP_WINDOW: Duration = Duration::from_secs(2);

/// Everything one container's stop needs, owned (the stops run as futures beside the loop).
#[derive(Clone)]
struct StopEnv {
    runtime: Arc<dyn ContainerRuntime>,
    hooks: Arc<dyn HookRunner>,
    events: Arc<dyn EventSink>,
    clock: WallClock,
    pod_ref: PodRef,
    pod_ip: String,
    deadline: watch::Receiver<Deadline>,
    exited: watch::Receiver<HashSet<ContainerId>>,
    record: Arc<Mutex<TerminationRecord>>,
    store: DeadlineStore,
    /// The names of the pod's init containers (their events name `spec.initContainers`).
    init_names: Arc<Vec<String>>,
}

struct StopTarget {
    container: Container,
    id: ContainerId,
    already_signalled: bool,
}

impl StopEnv {
    pub(super) fn event(&self, field: Option<&str>, type_: EventType, reason: &str, message: String) {
        let object_gone = self.deadline.borrow().force && self.pod_ref.uid.is_empty();
        if object_gone {
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

    /// Resolves once the container has exited.
    pub(super) async fn exited(&self, id: &ContainerId) {
        let mut rx = self.exited.clone();
        let _ = rx.wait_for(|set| set.contains(id)).await;
    }

    /// Resolves at `when(deadline)`, following deadline changes.
    pub(super) async fn until(&self, when: impl Fn(&Deadline) -> Instant) {
        let mut rx = self.deadline.clone();
        loop {
            let at = when(&rx.borrow_and_update());
            tokio::select! {
                _ = tokio::time::sleep_until(at) => return,
                r = rx.changed() => if r.is_err() {
                    tokio::time::sleep_until(at).await;
                    return;
                },
            }
        }
    }

    pub(super) fn deadline_instant(&self, d: &Deadline) -> Instant {
        self.clock.instant_for(d.at)
    }

    pub(super) fn mark_signalled(&self, name: &str) {
        let mut rec = self.record.lock().unwrap_or_else(|e| e.into_inner());
        if !rec.signalled.iter().any(|n| n == name) {
            rec.signalled.push(name.to_string());
            if let Err(e) = self.store.save(&rec) {
                tracing::warn!(error = %e, "cannot persist termination record");
            }
        }
    }

    /// Stops the pod's containers: `first` (app containers, regular init containers) all at
    /// once; then, once all of them exited or at the deadline, `sidecars` one after the
    /// other in the given (reverse spec) order, each with its preStop. At the deadline the
    /// sidecars not yet stopping are stopped all at once, so every process is still gone by
    /// max(deadline, signal + 2 s).
    pub(super) async fn stop_all(self, first: Vec<StopTarget>, sidecars: Vec<StopTarget>) {
        use futures::StreamExt;
        let first_ids: Vec<ContainerId> = first.iter().map(|t| t.id.clone()).collect();
        let first_stops =
            futures::future::join_all(first.into_iter().map(|t| self.clone().stop(t)));
        let env = self.clone();
        let sidecar_stops = async move {
            let deadline_at = |d: &Deadline| env.deadline_instant(d);
            if !sidecars.is_empty() {
                let mut rx = env.exited.clone();
                tokio::select! {
                    _ = rx.wait_for(|set| first_ids.iter().all(|id| set.contains(id))) => {}
                    _ = env.until(deadline_at) => {}
                }
            }
            let mut rest: std::collections::VecDeque<StopTarget> = sidecars.into();
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
                    _ = env.until(deadline_at) => {
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

    /// Stops one container (spec §1.6): Killing event, preStop within the deadline, stop
    /// signal, SIGKILL at max(deadline, signal + 2 s) (a forced stop has a 1 s deadline).
    pub(super) async fn stop(self, t: StopTarget) {
        let name = t.container.name.clone();
        let id = t.id.clone();
        let field = Some(name.as_str());
        if self.exited.borrow().contains(&id) {
            return;
        }
        self.event(
            field,
            EventType::Normal,
            "Killing",
            format!("Stopping container {name}"),
        );
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
                tokio::select! {
                    r = self.hooks.run(&ctx, &handler) => if let Err(e) = r {
                        tracing::info!(container = %name, error = %e, "preStop hook failed");
                        self.event(field, EventType::Warning, "FailedPreStopHook", "PreStopHook failed".into());
                    },
                    _ = self.until(|d| self.deadline_instant(d)) => {
                        tracing::info!(container = %name, "preStop hook cut at the deadline");
                    }
                    _ = self.exited(&id) => {}
                }
            }
        }
        if self.exited.borrow().contains(&id) {
            return;
        }
        let signal_at = Instant::now();
        let floor = if t.already_signalled {
            Duration::ZERO
        } else {
            MIN_STOP_WINDOW
        };
        if !t.already_signalled {
            let signal = stop_signal_of(&t.container);
            if let Ok(st) = self.runtime.container_status(&id).await
                && st.handles_stop_signal == Some(false)
            {
                self.event(
                    field,
                    EventType::Warning,
                    "StopSignalNotHandled",
                    format!(
                        "PID 1 does not handle {}: it will be killed after the grace period",
                        signal.name()
                    ),
                );
            }
            self.mark_signalled(&name);
            if let Err(e) = self.runtime.signal(&id, signal).await
                && !e.is_not_found()
            {
                tracing::warn!(container = %name, error = %e, "stop signal failed");
            }
        }
        tokio::select! {
            _ = self.exited(&id) => return,
            _ = self.until(|d| self.deadline_instant(d).max(signal_at + floor)) => {}
        }
        // SIGKILL the whole tree; repeat until the runtime reports the exit.
        for attempt in 0..30u32 {
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
                    deadline: deadline.clone(),
                    signalled: Vec::new(),
                }))
            })
            .clone();
        let signalled: Vec<String> = {
            let mut rec = record.lock().unwrap_or_else(|e| e.into_inner());
            rec.deadline = deadline.clone();
            if persist && let Err(e) = self.ctx.deadlines.save(&rec) {
                tracing::warn!(error = %e, "cannot persist the termination deadline");
            }
            rec.signalled.clone()
        };
        let (deadline_tx, deadline_rx) = watch::channel(deadline.clone());
        self.deadline_tx = Some(deadline_tx);
        let object_gone = self.object_gone();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let spec_init = spec.init_containers.clone().unwrap_or_default();
        let env = StopEnv {
            runtime: self.ctx.runtime.clone(),
            hooks: self.ctx.hooks.clone(),
            events: self.ctx.events.clone(),
            clock: self.ctx.clock.clone(),
            pod_ref: if object_gone {
                PodRef {
                    uid: String::new(),
                    ..self.pod_ref()
                }
            } else {
                self.pod_ref()
            },
            pod_ip: self.ctx.node_ip.clone(),
            deadline: deadline_rx,
            exited: self.exited_tx.subscribe(),
            record,
            store: self.ctx.deadlines.clone(),
            init_names: Arc::new(
                spec_init
                    .iter()
                    .map(|c: &Container| c.name.clone())
                    .collect(),
            ),
        };
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
        // containers of the sandbox that are not in the spec any more
        for (name, rec) in &self.containers {
            if spec
                .containers
                .iter()
                .chain(spec_init.iter())
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
        self.termination = Some(Box::pin(env.stop_all(first, sidecars)));
    }

    pub(super) fn deadline_changed(&mut self) {
        let Some(deadline) = self.current_deadline() else {
            return;
        };
        if deadline.force {
            tracing::info!("forced stop: one second of grace, then the 2 s stop window");
        }
        if let Some(record) = &self.record {
            let mut rec = record.lock().unwrap_or_else(|e| e.into_inner());
            rec.deadline = deadline.clone();
            if let Err(e) = self.ctx.deadlines.save(&rec) {
                tracing::warn!(error = %e, "cannot persist the termination deadline");
            }
        }
        if let Some(tx) = &self.deadline_tx {
            let _ = tx.send(deadline);
        }
    }

    /// Kills one container so that it restarts (probe or postStart failure): preStop, stop
    /// signal, SIGKILL after the grace; pre-empted by a deletion or the agent's shutdown.
    pub(super) async fn kill_for_restart(&mut self, c: &Container, id: &ContainerId, grace: Duration) {
        let hook_ctx = HookContext {
            pod_full_name: self.full_name(),
            container: c.clone(),
            container_id: id.clone(),
            pod_ip: self.ctx.node_ip.clone(),
            budget: grace,
        };
        let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone());
        let runtime = self.ctx.runtime.clone();
        let hooks = self.ctx.hooks.clone();
        let kill = probe_glue::kill_for_restart(
            &runtime,
            &hooks,
            hook_ctx,
            pre_stop.as_ref(),
            stop_signal_of(c),
            grace,
        );
        let mut rx = self.input_rx.clone();
        let shutdown = self.shutdown.clone();
        let failed = tokio::select! {
            f = kill => f,
            _ = rx.wait_for(WorkerInput::stop_requested) => {
                self.input_changed = true;
                None
            }
            _ = shutdown.cancelled() => None,
        };
        if let Some(e) = failed {
            tracing::info!(container = %c.name, error = %e, "preStop hook failed");
            self.event(
                Some(&c.name),
                EventType::Warning,
                "FailedPreStopHook",
                "PreStopHook failed".into(),
            );
        }
    }

}
