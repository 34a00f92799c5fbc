//! The restart decision: the crash-loop delays by example, and its rules as properties.

use super::*;
use proptest::prelude::*;

const LIMITS: BackoffLimits = BackoffLimits {
    initial: Duration::from_secs(10),
    max: Duration::from_secs(300),
};

fn policy(restart: RestartPolicy, backoff: BackoffLimits) -> Policy {
    Policy { restart, backoff }
}

fn exit(code: i32, finished_at: SystemTime) -> ExitStatus {
    ExitStatus {
        exit_code: code,
        signal: None,
        oom_killed: false,
        started_at: finished_at,
        finished_at,
        message: None,
        termination_message: None,
    }
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
}

/// Runs a crash loop: each instance runs `runs[i]` then exits 1; returns the delays between
/// each exit and the next start, and every back-off the decisions reported.
fn crash_loop(limits: BackoffLimits, runs: &[Duration]) -> (Vec<Duration>, Vec<Duration>) {
    let p = policy(RestartPolicy::Always, limits);
    let mut h = RestartHistory::default();
    h.for_spec(1);
    let mut now = t0();
    let (mut delays, mut backoffs) = (Vec::new(), Vec::new());
    for run in runs {
        now += *run;
        let e = exit(1, now);
        let finished = now;
        let entry = match decide(p, Some(&e), &h, now) {
            RestartDecision::BackOff { backoff, until } => {
                backoffs.push(backoff);
                assert_eq!(until, finished + backoff);
                now = until;
                match decide(p, Some(&e), &h, now) {
                    RestartDecision::Start { entry } => entry,
                    d => panic!("still held at the end of the back-off: {d:?}"),
                }
            }
            RestartDecision::Start { entry } => entry,
            RestartDecision::Finished => panic!("Always restarts"),
        };
        backoffs.extend(entry.map(|e| e.backoff));
        h.started(entry);
        delays.push(now.duration_since(finished).unwrap());
    }
    (delays, backoffs)
}

fn secs(v: &[Duration]) -> Vec<u64> {
    v.iter().map(Duration::as_secs).collect()
}

#[test]
fn crash_loop_delays_are_0_10_20_40_80_160_300_300() {
    let (delays, _) = crash_loop(LIMITS, &[Duration::from_secs(1); 9]);
    assert_eq!(secs(&delays), vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
}

#[test]
fn backoff_resets_after_ten_minutes_of_running() {
    // runs of 601 s: every restart finds the entry expired → immediate
    let (delays, _) = crash_loop(LIMITS, &[Duration::from_secs(601); 4]);
    assert_eq!(secs(&delays), vec![0, 0, 0, 0]);
}

#[test]
fn spec_change_uses_a_fresh_key() {
    let p = policy(RestartPolicy::Always, LIMITS);
    let mut h = RestartHistory::default();
    h.for_spec(1);
    let t = t0();
    let RestartDecision::Start { entry } = decide(p, Some(&exit(1, t)), &h, t) else {
        panic!()
    };
    h.started(entry);
    assert!(matches!(
        decide(p, Some(&exit(1, t)), &h, t),
        RestartDecision::BackOff { .. }
    ));
    h.for_spec(2);
    assert!(matches!(
        decide(p, Some(&exit(1, t)), &h, t),
        RestartDecision::Start { .. }
    ));
}

#[test]
fn configurable_initial_and_max() {
    let limits = BackoffLimits {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(4),
    };
    let (delays, _) = crash_loop(limits, &[Duration::ZERO; 6]);
    assert_eq!(secs(&delays), vec![0, 1, 2, 4, 4, 4]);
}

#[test]
fn policy_decides_which_exits_restart() {
    let t = t0();
    let h = RestartHistory::default();
    for (restart, code, restarts) in [
        (RestartPolicy::Always, 0, true),
        (RestartPolicy::Always, 1, true),
        (RestartPolicy::OnFailure, 0, false),
        (RestartPolicy::OnFailure, 2, true),
        (RestartPolicy::Never, 1, false),
    ] {
        let d = decide(policy(restart, LIMITS), Some(&exit(code, t)), &h, t);
        assert_eq!(
            d != RestartDecision::Finished,
            restarts,
            "{restart:?} {code}"
        );
    }
    // a kill for a spec change starts the new spec whatever the policy says
    let changed = RestartHistory {
        spec_changed: true,
        ..Default::default()
    };
    let d = decide(
        policy(RestartPolicy::Never, LIMITS),
        Some(&exit(137, t)),
        &changed,
        t,
    );
    let initial = BackoffEntry {
        backoff: LIMITS.initial,
        last_update: t,
    };
    assert_eq!(
        d,
        RestartDecision::Start {
            entry: Some(initial)
        }
    );
}

#[test]
fn a_failed_create_holds_the_first_instance_back() {
    let p = policy(RestartPolicy::Always, LIMITS);
    let mut h = RestartHistory::default();
    let t = t0();
    assert_eq!(
        decide(p, None, &h, t),
        RestartDecision::Start { entry: None }
    );
    h.create_failed_at = Some(t);
    let RestartDecision::Start { entry } = decide(p, None, &h, t) else {
        panic!()
    };
    h.started(entry);
    h.create_failed_at = Some(t + Duration::from_secs(1));
    assert_eq!(
        decide(p, None, &h, t + Duration::from_secs(2)),
        RestartDecision::BackOff {
            backoff: Duration::from_secs(10),
            until: t + Duration::from_secs(11),
        }
    );
}

proptest! {
    /// Whatever the run times, no back-off ever exceeds the cap, and no start is held longer.
    #[test]
    fn backoff_never_exceeds_the_cap(
        initial in 1u64..60,
        extra in 0u64..600,
        runs in proptest::collection::vec(0u64..2_000, 1..40),
    ) {
        let limits = BackoffLimits {
            initial: Duration::from_secs(initial),
            max: Duration::from_secs(initial + extra),
        };
        let runs: Vec<Duration> = runs.into_iter().map(Duration::from_secs).collect();
        let (delays, backoffs) = crash_loop(limits, &runs);
        for b in backoffs.iter().chain(delays.iter()) {
            prop_assert!(*b <= limits.max);
        }
    }

    /// An instance that ran longer than twice the cap (ten minutes with the defaults)
    /// restarts at once, and the back-off starts over from the initial value.
    #[test]
    fn backoff_resets_after_a_long_run(
        crashes in proptest::collection::vec(0u64..30, 0..12),
        long_run in 601u64..5_000,
    ) {
        let mut runs: Vec<Duration> = crashes.into_iter().map(Duration::from_secs).collect();
        runs.push(Duration::from_secs(long_run));
        let (delays, _) = crash_loop(LIMITS, &runs);
        prop_assert_eq!(*delays.last().unwrap(), Duration::ZERO);
        // and the next crash waits the initial back-off only
        runs.push(Duration::from_secs(1));
        let (delays, _) = crash_loop(LIMITS, &runs);
        prop_assert_eq!(*delays.last().unwrap(), LIMITS.initial);
    }
}
