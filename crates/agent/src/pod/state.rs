//! The pod worker state machine (spec §1.3; STYLE.md §2, §4).
//!
//! ```text
//!            deletionTimestamp / object gone / all done / drain
//!  Syncing ────────────────────────────────────────────────▶ Terminating { deadline }
//!                                                               │  every container stopped
//!                                                               ▼
//!                                                           Terminated ── cleaned up ──▶ Finished
//! ```
//!
//! * **Syncing**: containers are started and restarted per the restart policy.
//! * **Terminating**: containers are being stopped; the [`Deadline`] only moves earlier (a
//!   shorter `deletionGracePeriodSeconds`, or the object vanishing = force).
//! * **Terminated**: nothing runs any more; the final status is written, the sandbox removed
//!   (unless the pod completed by itself and its object stays, so its logs stay readable) and
//!   the object deleted with grace 0 and a UID precondition when it is being deleted.
//! * **Finished**: this UID never runs again. Only the object's disappearance matters now (the
//!   kept sandbox is then removed and the worker ends).
//!
//! [`transition`] is the one pure function mapping state × input to next state + effects;
//! the worker performs the effects. [`effective_grace`] computes the grace period once from
//! the pod (deletionGracePeriodSeconds, else the spec's, never below 1 s; 0 = force).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;

/// The default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The pod-level grace of a forced stop (kubelet `calculateEffectiveGracePeriod` floor).
pub const FORCE_GRACE: Duration = Duration::from_secs(1);

/// How the pod asks to be stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraceRequest {
    /// Grace 0: a force deletion, or the object is gone. The kubelet still gives the pod
    /// one second ("no matter what, we always supply a grace period of 1"): preStop gets at
    /// most that second, then the stop signal, then SIGKILL 2 s later (spec §1.3, §10.3, N8).
    Force,
    /// Stop within this many seconds (≥ 1).
    Seconds(i64),
}

/// The grace the pod's spec gives (≥ 1 s).
pub fn spec_grace_seconds(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .max(1)
}

/// The grace of a deletion in progress (None if the pod is not being deleted):
/// `deletionGracePeriodSeconds` (0 = force), else the spec's; at least 1 s otherwise.
pub fn effective_grace(pod: &Pod) -> Option<GraceRequest> {
    pod.metadata.deletion_timestamp.as_ref()?;
    match pod.metadata.deletion_grace_period_seconds {
        Some(0) => Some(GraceRequest::Force),
        Some(g) => Some(GraceRequest::Seconds(g.max(1))),
        None => Some(GraceRequest::Seconds(spec_grace_seconds(pod))),
    }
}

/// The latest-wins input of a worker.
#[derive(Clone, Debug, Default)]
pub struct WorkerInput {
    /// The pod object; None once it is gone.
    pub pod: Option<Arc<Pod>>,
    /// Drain: stop gracefully with this grace (agent shutdown with drain).
    pub drain: Option<i64>,
}

/// Resolves once the worker's input asks the pod to stop ([`WorkerInput::stop_requested`])
/// or its sender is gone.
pub async fn stop_requested(input: &mut tokio::sync::watch::Receiver<WorkerInput>) {
    let _ = input.wait_for(WorkerInput::stop_requested).await;
}

impl WorkerInput {
    /// Whether this input asks the pod to stop: the object is gone, it is being deleted, or
    /// the agent drains. The one predicate that pre-empts whatever the worker is doing for a
    /// running pod (a sync, a container kill): the loop then feeds the input to
    /// [`transition`].
    pub fn stop_requested(&self) -> bool {
        self.drain.is_some()
            || self
                .pod
                .as_ref()
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    }
}

/// When the pod's processes must be gone: computed once when termination starts, persisted,
/// and only ever moved earlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deadline {
    /// When termination started (the grace is counted from here).
    pub started_at: SystemTime,
    /// When every process gets SIGKILL (the stop signal is sent at the latest then).
    pub at: SystemTime,
    /// The grace period in force, in seconds (1 when forced).
    pub grace_seconds: i64,
    /// Forced (grace 0 or the object is gone): the one-second floor applies.
    pub force: bool,
}

impl Deadline {
    /// A deadline starting `now`.
    pub fn new(now: SystemTime, req: GraceRequest) -> Deadline {
        match req {
            GraceRequest::Force => Deadline {
                started_at: now,
                at: now + FORCE_GRACE,
                grace_seconds: 1,
                force: true,
            },
            GraceRequest::Seconds(g) => {
                let g = g.max(1);
                Deadline {
                    started_at: now,
                    at: now + Duration::from_secs(g as u64),
                    grace_seconds: g,
                    force: false,
                }
            }
        }
    }

    /// The deadline after a new request, if it moves it earlier (monotone: never later).
    pub fn shortened(&self, req: GraceRequest, now: SystemTime) -> Option<Deadline> {
        match req {
            GraceRequest::Force if !self.force => Some(Deadline {
                started_at: self.started_at,
                at: self.at.min(now + FORCE_GRACE),
                grace_seconds: self.grace_seconds.min(1),
                force: true,
            }),
            GraceRequest::Force => None,
            GraceRequest::Seconds(g) => {
                let g = g.max(1);
                let at = self.started_at + Duration::from_secs(g as u64);
                (!self.force && g < self.grace_seconds && at < self.at).then_some(Deadline {
                    started_at: self.started_at,
                    at,
                    grace_seconds: g,
                    force: false,
                })
            }
        }
    }
}

/// Why a pod is terminating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its object is being deleted (deletionTimestamp).
    Deleted,
    /// Its object is gone (force deletion, or removed while the agent was away).
    Gone,
    /// Every container finished and the restart policy restarts none (or the API already
    /// shows a terminal phase).
    Completed,
    /// The agent drains on shutdown.
    Drained,
    /// `spec.activeDeadlineSeconds` passed: the pod is stopped and fails with reason
    /// `DeadlineExceeded` (its object stays).
    DeadlineExceeded,
    /// The agent's admission refused the pod before anything started (the kubelet's
    /// `rejectPod`): it fails with the admission's reason (its object stays).
    Rejected,
}

/// The state of one pod worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodWorkerState {
    /// Starting and restarting containers.
    Syncing,
    /// Stopping containers by the deadline.
    Terminating {
        /// The deadline.
        deadline: Deadline,
        /// Why.
        why: Why,
        /// The object must be deleted at the end (it has a deletionTimestamp).
        delete_object: bool,
        /// The object no longer exists.
        object_gone: bool,
    },
    /// Nothing runs; cleanup is due.
    Terminated {
        /// Why it terminated.
        why: Why,
        /// The object must be deleted.
        delete_object: bool,
        /// The object no longer exists.
        object_gone: bool,
    },
    /// Done; this UID never runs again.
    Finished {
        /// Whether the sandbox was removed (else it is kept for logs until the object goes).
        sandbox_removed: bool,
    },
}

impl PodWorkerState {
    /// The state's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            PodWorkerState::Syncing => "syncing",
            PodWorkerState::Terminating { .. } => "terminating",
            PodWorkerState::Terminated { .. } => "terminated",
            PodWorkerState::Finished { .. } => "finished",
        }
    }

    /// Containers may be created, started and restarted (the kubelet's
    /// `!IsPodTerminationRequested`).
    pub fn may_start_containers(&self) -> bool {
        matches!(self, PodWorkerState::Syncing)
    }

    /// A container of the pod may still run (the kubelet's `CouldHaveRunningContainers`).
    pub fn could_have_running_containers(&self) -> bool {
        matches!(
            self,
            PodWorkerState::Syncing | PodWorkerState::Terminating { .. }
        )
    }

    /// The deadline in force while terminating.
    pub fn deadline(&self) -> Option<Deadline> {
        match self {
            PodWorkerState::Terminating { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    /// The pod's object no longer exists (nothing to write to, no events to send).
    pub fn object_gone(&self) -> bool {
        match self {
            PodWorkerState::Terminating { object_gone, .. }
            | PodWorkerState::Terminated { object_gone, .. } => *object_gone,
            _ => false,
        }
    }

    /// This UID is done for good: it never runs again.
    pub fn is_finished(&self) -> bool {
        matches!(self, PodWorkerState::Finished { .. })
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The pod object was observed.
    Pod {
        /// The deletion's grace, if it is being deleted.
        deletion: Option<GraceRequest>,
        /// Its phase in the API is Succeeded or Failed.
        phase_terminal: bool,
        /// Its spec's grace (≥ 1).
        spec_grace: i64,
    },
    /// The object is gone.
    Gone,
    /// The agent drains: stop with this grace.
    Drain {
        /// Seconds.
        grace: i64,
    },
    /// Sync found every app container finished with nothing to restart (sidecars may still
    /// run: they are stopped within the spec's grace).
    Completed {
        /// Its spec's grace (≥ 1).
        spec_grace: i64,
    },
    /// The agent's admission refused the pod (nothing runs yet).
    Rejected,
    /// `spec.activeDeadlineSeconds` passed: stop with the pod's grace.
    DeadlineExceeded {
        /// Seconds (the spec's grace).
        grace: i64,
    },
    /// A termination persisted by a previous agent is taken over (re-adoption): its
    /// deadline stands as it was written.
    Resume {
        /// The persisted deadline.
        deadline: Deadline,
        /// The object is being deleted (it has a deletionTimestamp).
        deleting: bool,
    },
    /// Termination stopped every container.
    AllStopped,
    /// Cleanup is done.
    CleanedUp {
        /// Whether the sandbox was removed.
        sandbox_removed: bool,
    },
}

/// What the worker must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Persist the deadline and start stopping the containers.
    StartTermination,
    /// Start stopping the containers with the deadline already on disk.
    ResumeTermination,
    /// The deadline moved earlier (or became force): persist it and tell the running stops.
    DeadlineChanged,
    /// Write the final status, remove the sandbox as needed, delete the object as needed.
    Cleanup,
    /// Remove the kept sandbox.
    RemoveSandbox,
    /// Delete the object (grace 0, UID precondition).
    DeleteObject,
    /// The worker ends.
    Exit,
}

/// The one transition function. `now` is the wall clock.
pub fn transition(
    state: &PodWorkerState,
    input: Input,
    now: SystemTime,
) -> (PodWorkerState, Vec<Effect>) {
    use PodWorkerState as S;
    let terminating = |req, why, delete_object, object_gone| {
        (
            S::Terminating {
                deadline: Deadline::new(now, req),
                why,
                delete_object,
                object_gone,
            },
            vec![Effect::StartTermination],
        )
    };
    match (state, input) {
        (
            S::Syncing,
            Input::Pod {
                deletion: Some(req),
                ..
            },
        ) => terminating(req, Why::Deleted, true, false),
        (
            S::Syncing,
            Input::Pod {
                phase_terminal: true,
                spec_grace,
                ..
            },
        ) => terminating(
            GraceRequest::Seconds(spec_grace),
            Why::Completed,
            false,
            false,
        ),
        (S::Syncing, Input::Gone) => terminating(GraceRequest::Force, Why::Gone, false, true),
        (S::Syncing, Input::Drain { grace }) => {
            terminating(GraceRequest::Seconds(grace), Why::Drained, false, false)
        }
        (S::Syncing, Input::DeadlineExceeded { grace }) => terminating(
            GraceRequest::Seconds(grace),
            Why::DeadlineExceeded,
            false,
            false,
        ),
        (S::Syncing, Input::Rejected) => {
            terminating(GraceRequest::Force, Why::Rejected, false, false)
        }
        (S::Syncing, Input::Completed { spec_grace }) => terminating(
            GraceRequest::Seconds(spec_grace),
            Why::Completed,
            false,
            false,
        ),
        (S::Syncing, Input::Resume { deadline, deleting }) => (
            S::Terminating {
                deadline,
                why: if deleting { Why::Deleted } else { Why::Drained },
                delete_object: deleting,
                object_gone: false,
            },
            vec![Effect::ResumeTermination],
        ),
        (
            S::Terminating {
                deadline,
                why,
                delete_object,
                object_gone,
            },
            input,
        ) => {
            let (deadline, why, delete_object, object_gone) =
                (*deadline, *why, *delete_object, *object_gone);
            match input {
                Input::Pod {
                    deletion: Some(req),
                    ..
                } => {
                    let why = if why == Why::Gone { why } else { Why::Deleted };
                    let (deadline, effects) = match deadline.shortened(req, now) {
                        Some(d) => (d, vec![Effect::DeadlineChanged]),
                        None => (deadline, vec![]),
                    };
                    (
                        S::Terminating {
                            deadline,
                            why,
                            delete_object: true,
                            object_gone,
                        },
                        effects,
                    )
                }
                Input::Gone => {
                    let (deadline, effects) = match deadline.shortened(GraceRequest::Force, now) {
                        Some(d) => (d, vec![Effect::DeadlineChanged]),
                        None => (deadline, vec![]),
                    };
                    (
                        S::Terminating {
                            deadline,
                            why,
                            delete_object,
                            object_gone: true,
                        },
                        effects,
                    )
                }
                Input::AllStopped => (
                    S::Terminated {
                        why,
                        delete_object,
                        object_gone,
                    },
                    vec![Effect::Cleanup],
                ),
                _ => (state.clone(), vec![]),
            }
        }
        (
            S::Terminated {
                why, object_gone, ..
            },
            Input::Pod {
                deletion: Some(_), ..
            },
        ) => (
            S::Terminated {
                why: *why,
                delete_object: true,
                object_gone: *object_gone,
            },
            vec![],
        ),
        (
            S::Terminated {
                why, delete_object, ..
            },
            Input::Gone,
        ) => (
            S::Terminated {
                why: *why,
                delete_object: *delete_object,
                object_gone: true,
            },
            vec![],
        ),
        (S::Terminated { .. }, Input::CleanedUp { sandbox_removed }) => {
            (S::Finished { sandbox_removed }, vec![])
        }
        (S::Finished { sandbox_removed }, Input::Gone) => {
            let mut effects = Vec::new();
            if !sandbox_removed {
                effects.push(Effect::RemoveSandbox);
            }
            effects.push(Effect::Exit);
            (
                S::Finished {
                    sandbox_removed: true,
                },
                effects,
            )
        }
        (
            S::Finished { sandbox_removed },
            Input::Pod {
                deletion: Some(_), ..
            },
        ) => {
            // a finished pod being deleted: its terminal phase is (or is about to be) written;
            // the kubelet's status manager deletes it once the sandbox is gone
            let mut effects = Vec::new();
            if !sandbox_removed {
                effects.push(Effect::RemoveSandbox);
            }
            effects.push(Effect::DeleteObject);
            (
                S::Finished {
                    sandbox_removed: true,
                },
                effects,
            )
        }
        _ => (state.clone(), vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    fn pod(tgps: Option<i64>, deletion: Option<i64>) -> Pod {
        let mut p = Pod {
            spec: Some(PodSpec {
                termination_grace_period_seconds: tgps,
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(g) = deletion {
            p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::from_second(1).unwrap()));
            p.metadata.deletion_grace_period_seconds = Some(g);
        }
        p
    }

    fn observed(deletion: Option<GraceRequest>) -> Input {
        Input::Pod {
            deletion,
            phase_terminal: false,
            spec_grace: 30,
        }
    }

    #[test]
    fn rule_1_3_effective_grace_deletion_wins_then_spec_then_floor_of_one() {
        assert_eq!(effective_grace(&pod(Some(30), None)), None);
        assert_eq!(
            effective_grace(&pod(Some(30), Some(10))),
            Some(GraceRequest::Seconds(10))
        );
        assert_eq!(
            effective_grace(&pod(Some(30), Some(0))),
            Some(GraceRequest::Force)
        );
        assert_eq!(
            effective_grace(&pod(Some(30), Some(-5))),
            Some(GraceRequest::Seconds(1))
        );
        let mut p = pod(Some(45), Some(1));
        p.metadata.deletion_grace_period_seconds = None;
        assert_eq!(effective_grace(&p), Some(GraceRequest::Seconds(45)));
        assert_eq!(spec_grace_seconds(&pod(None, None)), 30);
        assert_eq!(spec_grace_seconds(&pod(Some(0), None)), 1);
    }

    #[test]
    fn rule_1_3_deletion_starts_termination_with_a_deadline_computed_once() {
        let (s, fx) = transition(
            &PodWorkerState::Syncing,
            observed(Some(GraceRequest::Seconds(30))),
            t(0),
        );
        assert_eq!(fx, vec![Effect::StartTermination]);
        let PodWorkerState::Terminating {
            deadline,
            why,
            delete_object,
            ..
        } = &s
        else {
            panic!("{s:?}")
        };
        assert_eq!(
            (deadline.at, *why, *delete_object),
            (t(30), Why::Deleted, true)
        );
        // the same grace observed again later does not move the deadline
        let (s2, fx) = transition(&s, observed(Some(GraceRequest::Seconds(30))), t(10));
        assert_eq!((s2, fx), (s.clone(), vec![]));
    }

    #[test]
    fn rule_1_3_grace_only_decreases_n3() {
        let (s, _) = transition(
            &PodWorkerState::Syncing,
            observed(Some(GraceRequest::Seconds(60))),
            t(0),
        );
        // longer: no change
        let (s, fx) = transition(&s, observed(Some(GraceRequest::Seconds(100))), t(5));
        assert!(fx.is_empty());
        // shorter: deadline = original start + new grace
        let (s, fx) = transition(&s, observed(Some(GraceRequest::Seconds(10))), t(5));
        assert_eq!(fx, vec![Effect::DeadlineChanged]);
        let PodWorkerState::Terminating { deadline, .. } = &s else {
            panic!()
        };
        assert_eq!((deadline.at, deadline.grace_seconds), (t(10), 10));
    }

    #[test]
    fn rule_1_3_force_and_gone_keep_the_one_second_floor() {
        let (s, _) = transition(
            &PodWorkerState::Syncing,
            observed(Some(GraceRequest::Seconds(30))),
            t(0),
        );
        let (s, fx) = transition(&s, Input::Gone, t(3));
        assert_eq!(fx, vec![Effect::DeadlineChanged]);
        let PodWorkerState::Terminating {
            deadline,
            object_gone,
            ..
        } = &s
        else {
            panic!()
        };
        assert!(deadline.force && *object_gone);
        assert_eq!((deadline.at, deadline.grace_seconds), (t(4), 1));
        let (s, _) = transition(&PodWorkerState::Syncing, Input::Gone, t(7));
        let PodWorkerState::Terminating {
            deadline,
            why,
            delete_object,
            ..
        } = &s
        else {
            panic!()
        };
        assert_eq!(
            (deadline.at, deadline.force, *why, *delete_object),
            (t(8), true, Why::Gone, false)
        );
        let (s, _) = transition(
            &PodWorkerState::Syncing,
            observed(Some(GraceRequest::Force)),
            t(1),
        );
        let PodWorkerState::Terminating { deadline, .. } = &s else {
            panic!()
        };
        assert!(deadline.force);
        assert_eq!(deadline.at, t(2));
        // a forced deadline never moves later, and a shorter one already set stays
        let (s, _) = transition(
            &PodWorkerState::Syncing,
            observed(Some(GraceRequest::Seconds(30))),
            t(0),
        );
        let (s, _) = transition(&s, Input::Gone, t(29) + Duration::from_millis(500));
        let PodWorkerState::Terminating { deadline, .. } = &s else {
            panic!()
        };
        assert_eq!(deadline.at, t(30));
    }

    #[test]
    fn rule_1_3_terminated_uid_never_runs_again() {
        let (s, _) = transition(
            &PodWorkerState::Syncing,
            observed(Some(GraceRequest::Seconds(1))),
            t(0),
        );
        let (s, fx) = transition(&s, Input::AllStopped, t(1));
        assert_eq!(fx, vec![Effect::Cleanup]);
        let (s, _) = transition(
            &s,
            Input::CleanedUp {
                sandbox_removed: true,
            },
            t(1),
        );
        assert_eq!(
            s,
            PodWorkerState::Finished {
                sandbox_removed: true
            }
        );
        for input in [
            observed(None),
            Input::Completed { spec_grace: 30 },
            Input::Drain { grace: 5 },
            Input::AllStopped,
        ] {
            assert_eq!(transition(&s, input, t(2)), (s.clone(), vec![]));
        }
        assert_eq!(transition(&s, Input::Gone, t(2)).1, vec![Effect::Exit]);
    }

    #[test]
    fn rule_1_5_completed_pod_keeps_its_sandbox_until_the_object_goes() {
        let (s, _) = transition(
            &PodWorkerState::Syncing,
            Input::Completed { spec_grace: 30 },
            t(0),
        );
        let PodWorkerState::Terminating {
            why: Why::Completed,
            delete_object: false,
            ref deadline,
            ..
        } = s
        else {
            panic!()
        };
        // running sidecars get the spec's grace
        assert_eq!(deadline.at, t(30));
        let (s, _) = transition(&s, Input::AllStopped, t(0));
        let (s, _) = transition(
            &s,
            Input::CleanedUp {
                sandbox_removed: false,
            },
            t(0),
        );
        assert_eq!(
            transition(&s, Input::Gone, t(1)).1,
            vec![Effect::RemoveSandbox, Effect::Exit]
        );
        let del = transition(&s, observed(Some(GraceRequest::Seconds(30))), t(1)).1;
        assert_eq!(del, vec![Effect::RemoveSandbox, Effect::DeleteObject]);
    }

    #[test]
    fn deletion_during_drain_marks_the_object_for_deletion() {
        let (s, _) = transition(&PodWorkerState::Syncing, Input::Drain { grace: 30 }, t(0));
        let (s, fx) = transition(&s, observed(Some(GraceRequest::Seconds(5))), t(1));
        assert_eq!(fx, vec![Effect::DeadlineChanged]);
        let PodWorkerState::Terminating {
            why: Why::Deleted,
            delete_object: true,
            deadline,
            ..
        } = s
        else {
            panic!()
        };
        assert_eq!(deadline.at, t(5));
    }

    #[test]
    fn deadline_is_monotone_under_any_sequence() {
        let mut s = transition(
            &PodWorkerState::Syncing,
            observed(Some(GraceRequest::Seconds(120))),
            t(0),
        )
        .0;
        let mut last = t(120);
        let reqs = [50, 70, 20, 40, 20, 3, 9, 1, 100];
        for (i, g) in reqs.into_iter().enumerate() {
            s = transition(&s, observed(Some(GraceRequest::Seconds(g))), t(i as u64)).0;
            let PodWorkerState::Terminating { deadline, .. } = &s else {
                panic!()
            };
            assert!(deadline.at <= last);
            last = deadline.at;
        }
        assert_eq!(last, t(1));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn grace_request() -> impl Strategy<Value = GraceRequest> {
            prop_oneof![
                Just(GraceRequest::Force),
                (1i64..200).prop_map(GraceRequest::Seconds)
            ]
        }

        fn input() -> impl Strategy<Value = Input> {
            prop_oneof![
                (
                    proptest::option::of(grace_request()),
                    any::<bool>(),
                    1i64..200
                )
                    .prop_map(|(deletion, phase_terminal, spec_grace)| {
                        Input::Pod {
                            deletion,
                            phase_terminal,
                            spec_grace,
                        }
                    }),
                Just(Input::Gone),
                Just(Input::Rejected),
                (0i64..200).prop_map(|grace| Input::Drain { grace }),
                (1i64..200).prop_map(|spec_grace| Input::Completed { spec_grace }),
                (1i64..200).prop_map(|grace| Input::DeadlineExceeded { grace }),
                (grace_request(), any::<bool>()).prop_map(|(req, deleting)| Input::Resume {
                    deadline: Deadline::new(t(0), req),
                    deleting,
                }),
                Just(Input::AllStopped),
                any::<bool>().prop_map(|sandbox_removed| Input::CleanedUp { sandbox_removed }),
            ]
        }

        proptest! {
            /// Whatever the pod, the agent and the containers do, in any order: once set,
            /// the deadline never moves later; a UID that left Syncing never syncs again; a
            /// finished UID stays finished; termination starts at most once.
            #[test]
            fn deadline_never_moves_later_and_a_finished_uid_never_runs_again(
                steps in proptest::collection::vec((input(), 0u64..40), 1..60),
            ) {
                let mut state = PodWorkerState::Syncing;
                let mut now = 0;
                let mut deadline: Option<SystemTime> = None;
                let mut left_syncing = false;
                let mut finished = false;
                let mut starts = 0;
                for (input, dt) in steps {
                    now += dt;
                    let (next, effects) = transition(&state, input, t(now));
                    starts += effects
                        .iter()
                        .filter(|e| matches!(e, Effect::StartTermination | Effect::ResumeTermination))
                        .count();
                    prop_assert!(starts <= 1, "termination started twice");
                    if let Some(d) = next.deadline() {
                        if let Some(before) = deadline {
                            prop_assert!(d.at <= before, "deadline moved later: {:?} -> {:?}", before, d.at);
                        }
                        deadline = Some(d.at);
                    }
                    if left_syncing {
                        prop_assert!(!next.may_start_containers(), "{:?} -> {:?} on {:?}", state, next, input);
                    }
                    if finished {
                        prop_assert!(next.is_finished(), "a finished UID left Finished on {:?}", input);
                    }
                    left_syncing |= !next.may_start_containers();
                    finished |= next.is_finished();
                    state = next;
                }
            }
        }
    }
}
