//! Syncing a pod (spec §2, §4): the sandbox, then init containers in order (regular ones
//! to completion, sidecars kept running), then the app containers; each container created
//! (its environment and volume mounts resolved first) and started per the restart policy
//! and its back-off, its postStart hook run before it is reported running; liveness and
//! startup kills.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Container;
use podvisor_api::status as rules;
use podvisor_runtime::{ContainerId, ContainerState, ExitStatus, RuntimeError};
use tokio::time::Instant;

use super::restart::{
    BackoffLimits, ContainerLifecycle, Policy, RestartDecision, RestartPolicy, decide,
};
use super::spec::{container_config, container_hash};
use super::state::{Input, spec_grace_seconds, stop_requested};
use super::status::{Instance, Waiting};
use super::worker::{DEADLINE_EXCEEDED_MESSAGE, PodWorker};
use crate::api::EventType;
use crate::probe::ProbeUpdate;
use crate::probe::glue::PodProbes;

/// The retry interval after a CreateContainerConfigError (the kubelet's pod worker back-off
/// period; up to 50 % jitter is added).
pub const CONFIG_ERROR_RETRY: Duration = Duration::from_secs(10);

/// How long after its start a container's PID 1 counts as settled (its signal handlers
/// installed) for the early `StopSignalNotHandled` check.
pub const STOP_SIGNAL_SETTLE: Duration = Duration::from_secs(2);

impl PodWorker {
    /// Syncing: make the containers match the spec, interrupted by a termination request.
    pub(super) async fn sync(&mut self) {
        if self.admission_rejected().await || self.active_deadline_passed().await {
            return;
        }
        let mut rx = self.input_rx.clone();
        let shutdown = self.shutdown.clone();
        let kill = self.kill.clone();
        let completed = tokio::select! {
            c = self.sync_containers() => c,
            _ = stop_requested(&mut rx) => {
                self.input_changed = true;
                false
            }
            _ = kill.cancelled() => false,
            _ = shutdown.cancelled() => false,
        };
        if completed {
            let spec_grace = spec_grace_seconds(&self.pod);
            self.apply(Input::Completed { spec_grace }).await;
        }
    }

    /// The kubelet's admission of a pod it has not started (no `status.startTime`, no
    /// sandbox): sysctls outside the node's allowed set are refused (`SysctlForbidden`); the
    /// pod then fails with `Pod was rejected: <why>` and nothing of it runs.
    pub(super) async fn admission_rejected(&mut self) -> bool {
        let started = self
            .pod
            .status
            .as_ref()
            .is_some_and(|s| s.start_time.is_some());
        if started || self.sandbox_ready || !self.containers.is_empty() {
            return false;
        }
        let allowed = &self.ctx.allowed_unsafe_sysctls;
        let Some(why) = super::security::sysctl_admission(&self.pod, allowed) else {
            return false;
        };
        self.event(None, EventType::Warning, "SysctlForbidden", why.clone());
        self.rejection = Some(("SysctlForbidden", format!("Pod was rejected: {why}")));
        self.apply(Input::Rejected).await;
        true
    }

    /// `spec.activeDeadlineSeconds` (kubelet `activeDeadlineHandler`): counted from
    /// `status.startTime`; once passed, the pod is stopped with its grace and fails with
    /// reason `DeadlineExceeded`. Until then the worker wakes at the deadline (an update
    /// that shortens it is seen on the next sync).
    pub(super) async fn active_deadline_passed(&mut self) -> bool {
        let Some(secs) = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
        else {
            return false;
        };
        let started = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or(self.start_time, |t| SystemTime::from(t.0));
        let at = started + Duration::from_secs(secs.max(0) as u64);
        if self.ctx.clock.now() < at {
            let wake = self.ctx.clock.instant_for(at);
            self.wake_at(wake);
            return false;
        }
        self.event(
            None,
            EventType::Warning,
            "DeadlineExceeded",
            DEADLINE_EXCEEDED_MESSAGE.into(),
        );
        let grace = spec_grace_seconds(&self.pod);
        self.apply(Input::DeadlineExceeded { grace }).await;
        true
    }

    /// Returns true when every container finished and none will be restarted.
    pub(super) async fn sync_containers(&mut self) -> bool {
        let now = self.ctx.clock.now();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = RestartPolicy::from_spec(spec.restart_policy.as_deref());
        if !self.ensure_sandbox(&spec, policy).await {
            return self.completed(&spec);
        }
        if self.probes.is_none() {
            self.probes = PodProbes::for_pod(
                &self.pod,
                self.ctx.runtime.clone(),
                &self.ctx.clock,
                &self.pod_ip(),
                self.ctx.events.clone(),
            );
        }
        if self.last_written.is_none() {
            // the first status (Pending, ContainerCreating) goes out before any start
            self.write_status().await;
        }
        self.refresh_volumes().await;
        self.sync_resize(&spec).await;
        self.restart_all_if_triggered(&spec).await;
        let init = spec.init_containers.clone().unwrap_or_default();
        if self.sync_init_containers(&spec, &init, policy, now).await {
            for c in &spec.containers {
                // the container's own policy and restart rules, at its newest exit
                let exit_code = self
                    .containers
                    .get(&c.name)
                    .and_then(|r| r.current())
                    .and_then(|i| i.exit())
                    .map(|e| e.exit_code);
                let policy = super::restart_rules::effective_policy(c, &spec, exit_code);
                self.sync_container(c, policy, now).await;
            }
            // Ephemeral containers run once each, never restarted (upstream's kubelet).
            for c in super::spec::ephemeral_containers(&self.pod) {
                self.sync_container(&c, RestartPolicy::Never, now).await;
            }
        }
        self.completed(&spec)
    }

    /// Whether the pod is done: its phase, counting app containers and regular init
    /// containers only, is terminal (a running sidecar never keeps a pod from completing;
    /// the termination that follows stops it).
    pub(super) fn completed(&self, spec: &k8s_openapi::api::core::v1::PodSpec) -> bool {
        let mut regular = spec.clone();
        if let Some(init) = regular.init_containers.as_mut() {
            init.retain(|c| !rules::is_sidecar(c));
        }
        let has_init = regular
            .init_containers
            .as_ref()
            .is_some_and(|v| !v.is_empty());
        let statuses: Vec<_> = self
            .views(&regular.containers)
            .iter()
            .map(|v| crate::pod::status::container_status(v, has_init))
            .collect();
        let init_statuses: Vec<_> = self
            .views(regular.init_containers.as_deref().unwrap_or_default())
            .iter()
            .map(|v| crate::pod::status::init_container_status(v, false))
            .collect();
        rules::is_terminal_phase(Some(rules::get_phase(
            &regular,
            &init_statuses,
            &statuses,
            false,
        )))
    }

    /// Whether an app container of the pod was ever created (the pod was initialized
    /// before: regular init containers never run again, spec §2.2 `Initialized`).
    pub(super) fn app_container_created(&self, spec: &k8s_openapi::api::core::v1::PodSpec) -> bool {
        spec.containers.iter().any(|c| {
            self.containers
                .get(&c.name)
                .is_some_and(|r| !r.instances.is_empty())
        })
    }

    /// Whether an init container's newest instance completed with exit 0.
    pub(super) fn init_completed(&self, name: &str) -> bool {
        self.containers
            .get(name)
            .filter(|r| !r.history.new_sandbox)
            .and_then(|r| r.current())
            .and_then(|i| i.exit())
            .is_some_and(|e| e.exit_code == 0)
    }

    /// Whether a sidecar is `started`: running, its postStart done, its startup probe
    /// succeeded (or it has none).
    pub(super) fn sidecar_started(&self, name: &str) -> bool {
        let Some(rec) = self.containers.get(name) else {
            return false;
        };
        let Some(i) = rec.current().filter(|i| i.is_running()) else {
            return false;
        };
        if rec.lifecycle.post_start_reported().is_some() {
            return false;
        }
        match &self.probes {
            Some(p) => p.ready_started(name, &i.id, &i.state).1,
            None => true,
        }
    }

    /// Init containers (spec §2.1–2.3): regular ones run one at a time, in order, each to
    /// exit 0, restarted per the pod's policy with back-off; sidecars (restartPolicy Always)
    /// are started in order, the next init container waiting until the sidecar is
    /// `started`, and are kept running (restarted with back-off) for the pod's life.
    /// Returns true once the pod is initialized (the app containers may run).
    pub(super) async fn sync_init_containers(
        &mut self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        init: &[Container],
        policy: RestartPolicy,
        now: SystemTime,
    ) -> bool {
        let initialized_before = self.app_container_created(spec) && !self.reinitializing;
        let mut initialized = true;
        for (n, c) in init.iter().enumerate() {
            if rules::is_sidecar(c) {
                if initialized {
                    self.sync_container(c, RestartPolicy::Always, now).await;
                    // a sidecar that restarts after the next init container was started
                    // holds nothing up
                    let next_created = init.get(n + 1).is_some_and(|next| {
                        self.containers
                            .get(&next.name)
                            .is_some_and(|r| !r.instances.is_empty() && !r.history.new_sandbox)
                    });
                    if !initialized_before && !next_created && !self.sidecar_started(&c.name) {
                        initialized = false;
                    }
                }
                continue;
            }
            if initialized_before || self.init_completed(&c.name) {
                continue;
            }
            if initialized {
                // an init container may state its own policy (beside its restart rules)
                let own = c
                    .restart_policy
                    .as_deref()
                    .map(|p| RestartPolicy::from_spec(Some(p)));
                self.sync_container(c, own.unwrap_or(policy), now).await;
                initialized = false;
            }
        }
        if initialized {
            self.reinitializing = false;
        }
        initialized
    }

    /// One container's turn: a running instance is kept (or killed when its spec changed),
    /// a created one started; otherwise [`decide`] says whether its next instance starts now,
    /// waits out its back-off, or never comes.
    pub(super) async fn sync_container(
        &mut self,
        c: &Container,
        restart: RestartPolicy,
        now: SystemTime,
    ) {
        let hash = container_hash(c);
        let full_name = self.full_name();
        let policy = Policy {
            restart,
            backoff: BackoffLimits {
                initial: self.ctx.backoff_initial,
                max: self.ctx.backoff_max,
            },
        };
        loop {
            let rec = self.containers.entry(c.name.clone()).or_default();
            rec.history.for_spec(hash);
            let (exit, next_count) = match rec.current() {
                None => (None, 0),
                Some(i) => match &i.state {
                    ContainerState::Running { started_at, .. } => {
                        let id = i.id.clone();
                        let started_at = *started_at;
                        rec.lifecycle = ContainerLifecycle::Current;
                        if rec.hashes.get(&id).is_none_or(|h| *h == hash) {
                            self.check_stop_signal_handled(c, &id, started_at).await;
                            return;
                        }
                        // only `image` of a container may change (spec §9.6): the kubelet
                        // kills it with the pod's grace and starts the new spec at once
                        rec.history.spec_changed = true;
                        let grace = spec_grace_seconds(&self.pod);
                        let killing =
                            format!("Container {} definition changed, will be restarted", c.name);
                        self.kill_container(c, &id, grace, killing).await;
                        if self.exited_tx.borrow().contains(&id) && !self.input_changed {
                            continue;
                        }
                        return;
                    }
                    ContainerState::Created => {
                        // left over from an interrupted start: start it now
                        let id = i.id.clone();
                        self.start_instance(c, &id, now).await;
                        return;
                    }
                    ContainerState::Exited(e) => (Some(e.clone()), i.restart_count + 1),
                },
            };
            let decision = decide(policy, exit.as_ref(), &rec.history, now);
            if decision == RestartDecision::Finished {
                rec.lifecycle = ContainerLifecycle::Current;
                return;
            }
            if let Some(at) = rec.lifecycle.retry_at()
                && Instant::now() < at
            {
                self.wake_at(at);
                return;
            }
            match decision {
                RestartDecision::Finished => return,
                RestartDecision::BackOff { backoff, until } => {
                    let current_id = rec.current().map(|i| i.id.clone());
                    if rec.history.create_failed_at.is_none() || rec.lifecycle.waiting().is_none() {
                        rec.lifecycle = ContainerLifecycle::Waiting(Waiting {
                            reason: "CrashLoopBackOff".into(),
                            message: Some(format!(
                                "back-off {} restarting failed container={} pod={full_name}",
                                rules::go_duration(backoff),
                                c.name
                            )),
                        });
                    }
                    if rec.history.announce(current_id, backoff) {
                        self.event(
                            Some(&c.name),
                            EventType::Warning,
                            "BackOff",
                            format!(
                                "Back-off restarting failed container {} in pod {full_name}",
                                c.name
                            ),
                        );
                    }
                    let at = self.ctx.clock.instant_for(until);
                    self.wake_at(at);
                    return;
                }
                RestartDecision::Start { entry } => {
                    rec.history.started(entry);
                    self.start_new(c, next_count, hash, now).await;
                    return;
                }
            }
        }
    }

    /// The early `StopSignalNotHandled` warning: once an instance has run for
    /// [`STOP_SIGNAL_SETTLE`] (its handlers are installed by then), the runtime reads whether
    /// its PID 1 handles the stop signal (SigCgt, SigIgn, SigBlk); if not, a warning says so
    /// now, long before anyone deletes the pod. Once per instance; the warning at stop time
    /// stays.
    async fn check_stop_signal_handled(
        &mut self,
        c: &Container,
        id: &ContainerId,
        started_at: SystemTime,
    ) {
        let Some(rec) = self.containers.get(&c.name) else {
            return;
        };
        if rec.stop_signal_checked.as_ref() == Some(id) {
            return;
        }
        let settled_at = started_at + STOP_SIGNAL_SETTLE;
        if self.ctx.clock.now() < settled_at {
            let at = self.ctx.clock.instant_for(settled_at);
            self.wake_at(at);
            return;
        }
        if let Some(rec) = self.containers.get_mut(&c.name) {
            rec.stop_signal_checked = Some(id.clone());
        }
        let Ok(st) = self.ctx.runtime.container_status(id).await else {
            return;
        };
        if st.handles_stop_signal == Some(false) {
            let signal = st
                .config
                .stop_signal
                .unwrap_or_else(|| super::spec::stop_signal_of(c));
            self.event(
                Some(&c.name),
                EventType::Warning,
                "StopSignalNotHandled",
                super::stop::stop_signal_not_handled_message(signal),
            );
        }
    }

    pub(super) async fn start_new(
        &mut self,
        c: &Container,
        restart_count: i32,
        hash: u64,
        now: SystemTime,
    ) {
        let image = c.image.clone().unwrap_or_default();
        if let Some(message) = super::unsupported::unsupported(&self.pod, c) {
            self.config_error(c, "Failed", format!("Error: {message}"), message);
            return;
        }
        let Some(stored) = self.ensure_image(c).await else {
            return;
        };
        let env = match self.resolve_env(c).await {
            Some(env) => env,
            None => return,
        };
        let Some(mounts) = self.volume_mounts(c, &env).await else {
            return;
        };
        // created from what the node allocated to it (in-place resize, `resize.rs`)
        let allocated = self.resize.allocated_container(c);
        let mut config = container_config(&self.pod, &allocated, restart_count, hash, env);
        config.mounts = mounts;
        let seccomp_root = self.ctx.pods_dir.with_file_name("seccomp");
        config.security = crate::pod::security::security_config(&self.pod, c, &seccomp_root);
        let applied = crate::image::apply_image(
            self.ctx.images.as_deref(),
            &mut config,
            c,
            stored.as_ref(),
            &image,
        );
        if applied.is_ok()
            && let Err(message) =
                crate::pod::security::verify_run_as_non_root(&self.pod, c, config.uid)
        {
            self.config_error(c, "Failed", format!("Error: {message}"), message);
            return;
        }
        let etc = self.etc_mounts(&config.mounts, config.rootfs.is_some());
        config.mounts.extend(etc);
        let stop_signal = config.stop_signal;
        let created = match applied {
            Ok(ids) => self
                .ctx
                .runtime
                .create_container(&self.uid, config)
                .await
                .map(|id| (id, ids)),
            Err(message) => Err(RuntimeError::StartFailed { message }),
        };
        let (id, (image, image_id)) = match created {
            Ok(created) => created,
            Err(RuntimeError::SandboxNotFound { .. }) => {
                self.sandbox_ready = false;
                self.wake_at(Instant::now());
                return;
            }
            Err(e) => {
                let message = e.to_string();
                let rec = self.containers.entry(c.name.clone()).or_default();
                rec.lifecycle = ContainerLifecycle::Waiting(Waiting {
                    reason: "CreateContainerError".into(),
                    message: Some(message.clone()),
                });
                rec.history.create_failed_at = Some(now);
                self.failed(c, &message);
                return;
            }
        };
        self.event(
            Some(&c.name),
            EventType::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        self.resize.created(&c.name, &id);
        let rec = self.containers.entry(c.name.clone()).or_default();
        rec.history.created();
        rec.hashes.insert(id.clone(), hash);
        rec.instances.push(Instance {
            id: id.clone(),
            restart_count,
            image,
            image_id,
            state: ContainerState::Created,
            stop_signal,
        });
        self.start_instance(c, &id, now).await;
        self.gc_instances(&c.name).await;
    }

    /// Starts a created instance, then runs its postStart hook.
    async fn start_instance(&mut self, c: &Container, id: &ContainerId, now: SystemTime) {
        match self.ctx.runtime.start_container(id).await {
            Ok(st) => {
                self.started(c, id, st.state);
                // the early StopSignalNotHandled check, once it settled
                self.wake_at(Instant::now() + STOP_SIGNAL_SETTLE);
                self.post_start(c, id).await;
            }
            Err(e) => self.start_failed(c, id, e, now).await,
        }
    }

    pub(super) fn started(&mut self, c: &Container, id: &ContainerId, state: ContainerState) {
        let already_exited = self.exited_tx.borrow().contains(id);
        let rec = self.containers.entry(c.name.clone()).or_default();
        rec.lifecycle = ContainerLifecycle::Current;
        if let Some(i) = rec.instance_mut(id)
            && !already_exited
        {
            i.state = state;
        }
        self.event(
            Some(&c.name),
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        // An instance that exited before its start returned (`exit 3` at once) is already
        // Exited here, so the exit event that follows finds nothing new: its exit is
        // recorded now, after its start.
        if let Some(ContainerState::Exited(e)) = self
            .containers
            .get(&c.name)
            .and_then(|r| r.instances.iter().find(|i| &i.id == id))
            .map(|i| &i.state)
            .filter(|_| !already_exited)
        {
            crate::api::exit_step(self.ctx.events.as_ref(), &self.pod_ref(), &c.name, e);
        }
    }

    pub(super) async fn start_failed(
        &mut self,
        c: &Container,
        id: &ContainerId,
        e: RuntimeError,
        now: SystemTime,
    ) {
        let message = match &e {
            RuntimeError::StartFailed { message } => message.clone(),
            other => other.to_string(),
        };
        let state = match self.ctx.runtime.container_status(id).await {
            Ok(st) if matches!(st.state, ContainerState::Exited(_)) => st.state,
            _ => ContainerState::Exited(ExitStatus {
                exit_code: 128,
                signal: None,
                oom_killed: false,
                started_at: now,
                finished_at: now,
                message: Some(message.clone()),
                termination_message: None,
            }),
        };
        let rec = self.containers.entry(c.name.clone()).or_default();
        if let Some(i) = rec.instance_mut(id) {
            i.state = state;
        }
        rec.lifecycle = ContainerLifecycle::Current;
        self.exited_tx.send_modify(|s| {
            s.insert(id.clone());
        });
        self.failed(c, &message);
    }

    /// A create or start failed: the `Failed` warning, and another turn at once (the
    /// restart decision holds the next attempt back).
    fn failed(&mut self, c: &Container, message: &str) {
        self.event(
            Some(&c.name),
            EventType::Warning,
            "Failed",
            format!("Error: {message}"),
        );
        self.wake_at(Instant::now());
    }

    /// Tells the probes every container's newest instance (before each status computation).
    pub(super) fn observe_probes(&self) {
        let Some(p) = &self.probes else {
            return;
        };
        for (name, rec) in &self.containers {
            let pending = rec.lifecycle.post_start_reported().is_some();
            p.observe(name, rec.current().map(|i| (&i.id, &i.state)), !pending);
        }
    }

    /// A probe result changed (the status is recomputed by the loop), an event, or a kill
    /// for a failed liveness/startup probe (spec §3.4; the restart follows the policy).
    pub(super) async fn apply_probe_update(&mut self, u: ProbeUpdate) {
        match u {
            ProbeUpdate::Changed { .. } => {}
            ProbeUpdate::Event(e) => {
                let type_ = if e.event_type == "Normal" {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                self.event(Some(&e.container), type_, e.reason, e.message);
            }
            ProbeUpdate::Kill(k) => {
                if !self.state.may_start_containers() {
                    return;
                }
                let spec = self.pod.spec.clone().unwrap_or_default();
                let Some(c) = spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .find(|c| c.name == k.container)
                    .cloned()
                else {
                    return;
                };
                let running = self
                    .containers
                    .get(&k.container)
                    .and_then(|r| r.current())
                    .is_some_and(|i| i.id == k.container_id && i.is_running());
                if !running {
                    return;
                }
                let grace = k
                    .grace_period_seconds
                    .or(spec.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(0);
                self.kill_container(&c, &k.container_id, grace, k.message)
                    .await;
            }
        }
    }

    /// Runs the container's postStart hook (spec §1.9). The instance is reported waiting until
    /// the hook completes; on failure the container is killed (preStop runs) and waits with
    /// PostStartHookError. A deletion pre-empts the hook (`sync` drops this future on `kill`).
    pub(super) async fn post_start(&mut self, c: &Container, id: &ContainerId) {
        let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) else {
            return;
        };
        let Some(rec) = self.containers.get_mut(&c.name) else {
            return;
        };
        let Some(mut pending) = rec.instance_mut(id).filter(|i| i.is_running()).cloned() else {
            return;
        };
        pending.state = ContainerState::Created;
        rec.lifecycle = ContainerLifecycle::PostStarting { reported: pending };
        self.observe_probes();
        let ctx = crate::hooks::HookTarget {
            runtime: self.ctx.runtime.clone(),
            pod_name: self.name.clone(),
            pod_namespace: self.namespace.clone(),
            pod_uid: self.uid.clone(),
            pod_ip: self.pod_ip(),
            container: c.clone(),
            container_id: id.clone(),
        };
        let outcome = crate::hooks::run_post_start(&ctx, &handler, &self.kill).await;
        if let Some(rec) = self.containers.get_mut(&c.name)
            && rec.lifecycle.post_start_reported().is_some()
        {
            rec.lifecycle = ContainerLifecycle::Current;
        }
        let events = match outcome {
            crate::hooks::PostStartOutcome::Completed { events } => events,
            crate::hooks::PostStartOutcome::Cancelled => Vec::new(),
            crate::hooks::PostStartOutcome::Failed { message, events } => {
                for e in events {
                    self.event(Some(&e.container), EventType::Warning, e.reason, e.message);
                }
                let grace = self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(0);
                self.kill_container(c, id, grace, "FailedPostStartHook".into())
                    .await;
                if let Some(rec) = self.containers.get_mut(&c.name) {
                    rec.lifecycle = ContainerLifecycle::Waiting(Waiting {
                        reason: crate::hooks::POST_START_HOOK_ERROR.into(),
                        message: Some(message),
                    });
                }
                Vec::new()
            }
        };
        for e in events {
            self.event(Some(&e.container), EventType::Warning, e.reason, e.message);
        }
    }

    /// Removes instances older than the previous one (their logs go with them).
    pub(super) async fn gc_instances(&mut self, name: &str) {
        let Some(rec) = self.containers.get_mut(name) else {
            return;
        };
        let mut remove = Vec::new();
        while rec.instances.len() > 2 && rec.instances[0].exit().is_some() {
            let id = rec.instances.remove(0).id;
            rec.hashes.remove(&id);
            remove.push(id);
        }
        for id in remove {
            if let Err(e) = self.ctx.runtime.remove_container(&id).await {
                tracing::debug!(error = %e, "cannot remove an old container instance");
            }
        }
    }
}
