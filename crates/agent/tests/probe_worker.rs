//! The probe workers and manager (spec §3) on the fake runtime under paused time, named by
//! the spec §8 group A case ids where a case applies. A tiny "pod worker" in the test reacts
//! to the manager's updates as the agent does: it recomputes ready/started on every change
//! and kills and restarts a container on a kill request.

#[allow(dead_code)]
#[path = "../src/testing/builders.rs"]
mod builders;
mod probe_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use builders::{container, exec_probe};
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use podvisor_agent::handlers::HandlerEvent;
use podvisor_agent::probe::{
    ContainerTarget, KillRequest, ProbeDeps, ProbeManager, ProbePod, ProbeResult, ProbeType,
    ProbeUpdate, ProbeUpdates,
};
use podvisor_runtime::fake::{ExecScript, FakeOp, FakeScript, tokio_clock};
use podvisor_runtime::{ContainerRuntime, RuntimeError, Signal};
use probe_support::*;
use tokio::time::Instant;

const BASE: Duration = Duration::from_secs(1_764_000_000);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn with(mut p: Probe, f: impl FnOnce(&mut Probe)) -> Probe {
    f(&mut p);
    p
}

struct Harness {
    rt: Arc<TestRuntime>,
    mgr: ProbeManager,
    updates: ProbeUpdates,
    t0: Instant,
    never: bool,
    targets: BTreeMap<String, ContainerTarget>,
    kills: Vec<(Duration, KillRequest)>,
    events: Vec<(Duration, HandlerEvent)>,
    ready: Vec<(Duration, String, bool)>,
    started: Vec<(Duration, String, bool)>,
    restarts: u32,
}

impl Harness {
    async fn new(spec: PodSpec) -> Harness {
        Self::with_runtime(spec, TestRuntime::new(SystemTime::UNIX_EPOCH + BASE), None).await
    }

    async fn with_runtime(
        spec: PodSpec,
        rt: Arc<TestRuntime>,
        agent_started: Option<Instant>,
    ) -> Harness {
        let never = spec.restart_policy.as_deref() == Some("Never");
        let (mut mgr, updates) = ProbeManager::new(
            ProbePod {
                name: "p".into(),
                namespace: "ns".into(),
                uid: "u1".into(),
                pod_ip: "127.0.0.1".into(),
                restart_policy: spec
                    .restart_policy
                    .clone()
                    .unwrap_or_else(|| "Always".into()),
            },
            ProbeDeps {
                runtime: rt.clone(),
                clock: tokio_clock(SystemTime::UNIX_EPOCH + BASE),
                agent_started,
                steps: None,
            },
        );
        mgr.add_pod(&spec);
        let mut h = Harness {
            rt,
            mgr,
            updates,
            t0: Instant::now(),
            never,
            targets: BTreeMap::new(),
            kills: vec![],
            events: vec![],
            ready: vec![],
            started: vec![],
            restarts: 0,
        };
        for c in &spec.containers {
            h.start(&c.name).await;
        }
        h.observe();
        h
    }

    async fn start(&mut self, name: &str) {
        let (id, started_at) = self.rt.start("p", name).await;
        let t = ContainerTarget::Running { id, started_at };
        self.mgr.set_container(name, Some(t.clone()));
        self.targets.insert(name.to_string(), t);
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Recomputes started/ready as a pod worker does on every status computation.
    fn observe(&mut self) {
        let now = self.now();
        for (name, t) in &self.targets {
            let s = self.mgr.started(name, t);
            if self
                .started
                .iter()
                .rev()
                .find(|(_, n, _)| n == name)
                .map(|x| x.2)
                != Some(s)
            {
                self.started.push((now, name.clone(), s));
            }
            let r = self.mgr.ready(name, t);
            if self
                .ready
                .iter()
                .rev()
                .find(|(_, n, _)| n == name)
                .map(|x| x.2)
                != Some(r)
            {
                self.ready.push((now, name.clone(), r));
            }
        }
    }

    async fn run_for(&mut self, d: Duration) {
        let end = self.t0 + self.now() + d;
        loop {
            tokio::select! {
                u = self.updates.recv() => {
                    let Some(u) = u else { return };
                    self.handle(u).await;
                }
                _ = tokio::time::sleep_until(end) => return,
            }
        }
    }

    async fn handle(&mut self, u: ProbeUpdate) {
        let now = self.now();
        match u {
            ProbeUpdate::Changed { .. } => {}
            ProbeUpdate::Event(e) => self.events.push((now, e)),
            ProbeUpdate::Kill(k) => {
                let current = self.targets.get(&k.container).map(|t| t.id().clone());
                if current.as_ref() == Some(&k.container_id) {
                    let _ = self.rt.fake.signal(&k.container_id, Signal::KILL).await;
                    let exited = ContainerTarget::Exited {
                        id: k.container_id.clone(),
                    };
                    self.mgr.set_container(&k.container, Some(exited.clone()));
                    self.targets.insert(k.container.clone(), exited);
                    if !self.never {
                        self.restarts += 1;
                        let name = k.container.clone();
                        self.start(&name).await;
                    }
                }
                self.kills.push((now, k));
            }
        }
        self.observe();
    }

    fn first_ready(&self, name: &str) -> Option<Duration> {
        self.ready
            .iter()
            .find(|(_, n, r)| n == name && *r)
            .map(|x| x.0)
    }

    fn first_started(&self, name: &str) -> Option<Duration> {
        self.started
            .iter()
            .find(|(_, n, s)| n == name && *s)
            .map(|x| x.0)
    }

    fn messages(&self, reason: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|(_, e)| e.reason == reason)
            .map(|(_, e)| e.message.clone())
            .collect()
    }
}

fn pod(containers: Vec<Container>) -> PodSpec {
    PodSpec {
        containers,
        restart_policy: Some("Always".into()),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a1_not_ready_before_initial_delay_and_never_restarted() {
    let mut c = container("web");
    c.readiness_probe = Some(with(exec_probe(&["true"]), |p| {
        p.initial_delay_seconds = Some(15)
    }));
    let mut h = Harness::new(pod(vec![c])).await;
    h.run_for(secs(60)).await;
    let ready = h.first_ready("web").expect("becomes ready");
    assert!(ready >= secs(15), "ready at {ready:?}");
    assert!(ready <= secs(25), "ready at {ready:?}");
    // The first probe ran at the first tick at or after the initial delay (10 s ticks).
    let first = h.rt.exec_times("web", "true")[0] - h.t0;
    assert_eq!(first, secs(20));
    assert!(h.kills.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a2_failing_readiness_is_never_ready_and_never_restarts() {
    let mut c = container("web");
    c.readiness_probe = Some(exec_probe(&["false"]));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    rt.fake.script(
        "web",
        FakeScript::default().exec(["false"], ExecScript::exit(1).output("no")),
    );
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(60)).await;
    assert_eq!(h.first_ready("web"), None);
    assert!(h.kills.is_empty());
    assert_eq!(h.restarts, 0);
    let msgs = h.messages("Unhealthy");
    assert!(!msgs.is_empty());
    assert!(
        msgs.iter().all(|m| m == "Readiness probe failed: no"),
        "{msgs:?}"
    );
}

fn health_file_runtime(healthy_for: Duration) -> Arc<TestRuntime> {
    // `cat /tmp/health` succeeds for `healthy_for` after each container start.
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    let starts = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let s2 = starts.clone();
    rt.on_exec(move |_, c| {
        if c == cmd(&["cat", "/tmp/health"]) {
            let start = *s2.lock().unwrap().last()?;
            Some(if start.elapsed() < healthy_for {
                ExecBehavior::Exit(0, "ok".into())
            } else {
                ExecBehavior::Exit(
                    1,
                    "cat: can't open '/tmp/health': No such file or directory".into(),
                )
            })
        } else {
            None
        }
    });
    // Track starts through a background watcher of the fake's calls.
    let rt2 = rt.clone();
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let calls = rt2.fake.calls();
            let starts_now: Vec<_> = calls
                .iter()
                .filter(|c| {
                    matches!(
                        c.call,
                        podvisor_runtime::fake::FakeCall::StartContainer { .. }
                    )
                })
                .map(|c| c.at)
                .collect();
            if starts_now.len() > seen {
                starts
                    .lock()
                    .unwrap()
                    .extend_from_slice(&starts_now[seen..]);
                seen = starts_now.len();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    rt
}

#[tokio::test(start_paused = true)]
async fn a3_exec_liveness_restarts_when_the_file_goes() {
    let mut c = container("busybox");
    c.liveness_probe = Some(with(exec_probe(&["cat", "/tmp/health"]), |p| {
        p.initial_delay_seconds = Some(15);
        p.timeout_seconds = Some(5);
        p.failure_threshold = Some(1);
    }));
    let rt = health_file_runtime(secs(10));
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(40)).await;
    assert_eq!(h.kills.len(), 1, "{:?}", h.kills);
    let (at, k) = &h.kills[0];
    assert_eq!(*at, secs(20));
    assert_eq!(
        k.message,
        "Container busybox failed liveness probe, will be restarted"
    );
    assert_eq!(k.probe_type, ProbeType::Liveness);
    assert_eq!(
        h.messages("Unhealthy"),
        vec!["Liveness probe failed: cat: can't open '/tmp/health': No such file or directory"]
    );
    assert_eq!(h.restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn a4_exec_liveness_not_restarted_while_healthy() {
    let mut c = container("busybox");
    c.liveness_probe = Some(with(exec_probe(&["cat", "/tmp/health"]), |p| {
        p.initial_delay_seconds = Some(15);
        p.timeout_seconds = Some(5);
        p.failure_threshold = Some(1);
    }));
    let rt = health_file_runtime(secs(100_000));
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(240)).await;
    assert!(h.kills.is_empty());
    assert!(h.events.is_empty());
    assert!(h.rt.exec_times("busybox", "cat").len() >= 22);
}

#[tokio::test(start_paused = true)]
async fn a9_exec_liveness_over_its_timeout_restarts() {
    let mut c = container("c");
    c.liveness_probe = Some(with(exec_probe(&["sh", "-c", "sleep 10"]), |p| {
        p.initial_delay_seconds = Some(15);
        p.timeout_seconds = Some(1);
        p.failure_threshold = Some(1);
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    rt.fake.script(
        "c",
        FakeScript::default().default_exec(ExecScript::ok().taking(secs(10))),
    );
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(30)).await;
    assert_eq!(h.kills.len(), 1);
    assert_eq!(h.kills[0].0, secs(21), "probe at 20 s times out after 1 s");
    assert_eq!(
        h.messages("Unhealthy"),
        vec!["Liveness probe failed: command \"sh -c sleep 10\" timed out"]
    );
    let hist = h.mgr.history("c", ProbeType::Liveness).unwrap();
    assert_eq!(hist.last[0].result, "timeout");
    assert_eq!(hist.last[0].ms, 1000);
}

#[tokio::test(start_paused = true)]
async fn a10_exec_readiness_over_its_timeout_is_never_ready() {
    let mut c = container("c");
    c.readiness_probe = Some(with(exec_probe(&["sh", "-c", "sleep 10"]), |p| {
        p.initial_delay_seconds = Some(15);
        p.timeout_seconds = Some(1);
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    rt.fake
        .script("c", FakeScript::default().default_exec(ExecScript::hang()));
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(60)).await;
    assert_eq!(h.first_ready("c"), None);
    assert!(h.kills.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a11_failing_exec_liveness_restarts() {
    let mut c = container("c");
    c.liveness_probe = Some(with(exec_probe(&["sh", "-c", "sleep 10 & exit 1"]), |p| {
        p.timeout_seconds = Some(1);
        p.failure_threshold = Some(1);
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    rt.fake
        .script("c", FakeScript::default().default_exec(ExecScript::exit(1)));
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(30)).await;
    assert!(!h.kills.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a14_failing_startup_restarts_even_though_liveness_passes() {
    let mut c = container("c");
    c.startup_probe = Some(with(exec_probe(&["/bin/false"]), |p| {
        p.initial_delay_seconds = Some(15);
        p.failure_threshold = Some(3);
    }));
    c.liveness_probe = Some(with(exec_probe(&["/bin/true"]), |p| {
        p.initial_delay_seconds = Some(15);
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    rt.fake.script(
        "c",
        FakeScript::default()
            .exec(["/bin/false"], ExecScript::exit(1))
            .exec(["/bin/true"], ExecScript::ok()),
    );
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(60)).await;
    let (at, k) = &h.kills[0];
    assert_eq!(*at, secs(40), "failures at 20, 30, 40 s");
    assert_eq!(
        k.message,
        "Container c failed startup probe, will be restarted"
    );
    assert_eq!(k.probe_type, ProbeType::Startup);
    assert!(
        h.rt.exec_times("c", "/bin/true").is_empty(),
        "liveness is gated"
    );
    assert_eq!(h.first_started("c"), None);
}

#[tokio::test(start_paused = true)]
async fn a15_startup_probe_delays_liveness() {
    let mut c = container("c");
    c.liveness_probe = Some(with(exec_probe(&["/bin/false"]), |p| {
        p.initial_delay_seconds = Some(15);
        p.failure_threshold = Some(1);
    }));
    c.startup_probe = Some(with(exec_probe(&["/bin/false"]), |p| {
        p.initial_delay_seconds = Some(15);
        p.failure_threshold = Some(60);
        p.period_seconds = Some(10);
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    rt.fake
        .script("c", FakeScript::default().default_exec(ExecScript::exit(1)));
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(240)).await;
    assert!(h.kills.is_empty(), "{:?}", h.kills);
    let msgs = h.messages("Unhealthy");
    assert!(
        msgs.iter().all(|m| m.starts_with("Startup probe failed")),
        "{msgs:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a16_liveness_restarts_once_startup_enabled_it() {
    let mut c = container("c");
    c.startup_probe = Some(with(exec_probe(&["cat", "/tmp/startup"]), |p| {
        p.initial_delay_seconds = Some(15);
        p.failure_threshold = Some(60);
    }));
    c.liveness_probe = Some(with(exec_probe(&["/bin/false"]), |p| {
        p.initial_delay_seconds = Some(15);
        p.failure_threshold = Some(1);
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    let t0 = Instant::now();
    rt.on_exec(move |_, c| {
        if c == cmd(&["cat", "/tmp/startup"]) {
            Some(if t0.elapsed() >= secs(10) {
                ExecBehavior::Exit(0, "ok".into())
            } else {
                ExecBehavior::Exit(1, String::new())
            })
        } else if c == cmd(&["/bin/false"]) {
            Some(ExecBehavior::Exit(1, String::new()))
        } else {
            None
        }
    });
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(60)).await;
    assert_eq!(h.first_started("c"), Some(secs(20)));
    let (at, k) = &h.kills[0];
    // The liveness tick at (same instant, after the startup worker) or after the startup
    // success.
    assert!(*at >= secs(20) && *at <= secs(30), "{at:?}");
    assert_eq!(
        k.message,
        "Container c failed liveness probe, will be restarted"
    );
}

#[tokio::test(start_paused = true)]
async fn a17_ready_right_after_startup_succeeds() {
    let mut c = container("c");
    c.readiness_probe = Some(with(exec_probe(&["cat", "/tmp/health"]), |p| {
        p.period_seconds = Some(30);
    }));
    c.startup_probe = Some(with(exec_probe(&["cat", "/tmp/startup"]), |p| {
        p.period_seconds = Some(5);
        p.failure_threshold = Some(120);
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    let t0 = Instant::now();
    rt.on_exec(move |_, c| {
        if c == cmd(&["cat", "/tmp/startup"]) {
            Some(if t0.elapsed() >= secs(32) {
                ExecBehavior::Exit(0, String::new())
            } else {
                ExecBehavior::Exit(1, String::new())
            })
        } else {
            Some(ExecBehavior::Exit(0, String::new()))
        }
    });
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(120)).await;
    let started = h.first_started("c").expect("started");
    assert_eq!(started, secs(35));
    let ready = h.first_ready("c").expect("ready");
    assert!(ready >= started, "never ready before started");
    assert!(
        ready - started <= secs(1),
        "ready {ready:?} started {started:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a18_a19_probe_grace_period_travels_with_the_kill() {
    let mut c = container("c");
    c.liveness_probe = Some(Probe {
        http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
            path: Some("/healthz".into()),
            port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
                closed_port().await as i32,
            ),
            ..Default::default()
        }),
        initial_delay_seconds: Some(10),
        failure_threshold: Some(1),
        termination_grace_period_seconds: Some(5),
        ..Default::default()
    });
    let mut s = container("s");
    s.startup_probe = Some(with(exec_probe(&["cat", "/tmp/startup"]), |p| {
        p.initial_delay_seconds = Some(10);
        p.failure_threshold = Some(1);
        p.termination_grace_period_seconds = Some(5);
    }));
    s.liveness_probe = Some(exec_probe(&["/bin/true"]));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    rt.fake.script(
        "s",
        FakeScript::default().exec(["cat", "/tmp/startup"], ExecScript::exit(1)),
    );
    let mut spec = pod(vec![c, s]);
    spec.termination_grace_period_seconds = Some(500);
    let mut h = Harness::with_runtime(spec, rt, None).await;
    h.run_for(secs(15)).await;
    let mut kills: Vec<_> = h
        .kills
        .iter()
        .map(|(_, k)| (k.container.clone(), k.grace_period_seconds))
        .collect();
    kills.sort();
    assert_eq!(
        kills,
        vec![("c".to_string(), Some(5)), ("s".to_string(), Some(5))]
    );
}

#[tokio::test(start_paused = true)]
async fn a22_a23_readiness_keeps_running_and_liveness_stops_during_termination() {
    let mut c = container("c");
    c.readiness_probe = Some(with(exec_probe(&["cat", "/tmp/ready"]), |p| {
        p.initial_delay_seconds = Some(5);
        p.period_seconds = Some(2);
        p.failure_threshold = Some(1);
    }));
    c.liveness_probe = Some(with(exec_probe(&["cat", "/tmp/liveness"]), |p| {
        p.period_seconds = Some(1);
        p.failure_threshold = Some(1);
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    let terminating = Arc::new(AtomicBool::new(false));
    let term = terminating.clone();
    rt.on_exec(move |_, _| {
        // The TERM trap removes both files.
        Some(if term.load(Ordering::SeqCst) {
            ExecBehavior::Exit(1, "cat: no such file".into())
        } else {
            ExecBehavior::Exit(0, String::new())
        })
    });
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(10)).await;
    assert!(h.first_ready("c").is_some());
    // DELETE: termination starts, the container handles SIGTERM for a while.
    h.mgr.stop_liveness_and_startup();
    terminating.store(true, Ordering::SeqCst);
    let t_delete = h.now();
    h.run_for(secs(30)).await;
    let unready = h
        .ready
        .iter()
        .find(|(t, _, r)| *t >= t_delete && !*r)
        .map(|x| x.0)
        .unwrap_or_else(|| {
            panic!(
                "Ready turns False while terminating: {:?} {:?}",
                h.ready, h.events
            )
        });
    assert!(unready - t_delete <= secs(2));
    assert!(h.kills.is_empty());
    assert!(
        h.events
            .iter()
            .all(|(_, e)| !e.message.contains("Liveness probe failed")),
        "{:?}",
        h.events
    );
    let target = h.targets["c"].clone();
    assert_eq!(
        h.mgr.result("c", ProbeType::Liveness, target.id()),
        None,
        "liveness worker is gone"
    );
}

#[tokio::test(start_paused = true)]
async fn thresholds_count_consecutive_results() {
    let mut c = container("c");
    c.readiness_probe = Some(with(exec_probe(&["check"]), |p| {
        p.period_seconds = Some(1);
        p.success_threshold = Some(2);
        p.failure_threshold = Some(3);
    }));
    // Results by second: S S | F F S F F F | S S
    let pattern = [0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    rt.on_exec(move |_, _| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        Some(ExecBehavior::Exit(
            *pattern.get(i).unwrap_or(&0),
            String::new(),
        ))
    });
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(12)).await;
    let changes: Vec<(u64, bool)> = h.ready.iter().map(|(t, _, r)| (t.as_secs(), *r)).collect();
    // Probes at 0..: ready after the 2nd success (1 s), unready after the 3rd consecutive
    // failure (7 s), ready again after 2 successes (9 s).
    assert_eq!(changes, vec![(0, false), (1, true), (7, false), (9, true)]);
}

#[tokio::test(start_paused = true)]
async fn new_instance_starts_from_initial_results_and_releases_the_hold() {
    let mut c = container("c");
    c.liveness_probe = Some(with(exec_probe(&["live"]), |p| {
        p.period_seconds = Some(1);
        p.failure_threshold = Some(2);
    }));
    c.readiness_probe = Some(with(exec_probe(&["ready"]), |p| p.period_seconds = Some(1)));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    rt.fake.script(
        "c",
        FakeScript::default()
            .exec(["live"], ExecScript::exit(1))
            .exec(["ready"], ExecScript::ok()),
    );
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(6)).await;
    // Each instance gets two failures (2 periods) before its kill: kills at 1, 3, 5 s.
    let at: Vec<u64> = h.kills.iter().map(|(t, _)| t.as_secs()).collect();
    assert_eq!(at, vec![1, 3, 5]);
    // The new instance starts from liveness Success (one failure is below the threshold).
    let t = h.targets["c"].clone();
    assert_eq!(
        h.mgr.result("c", ProbeType::Liveness, t.id()),
        None,
        "not seen yet"
    );
    h.run_for(Duration::from_millis(500)).await;
    assert_eq!(h.kills.len(), 3);
    assert_eq!(
        h.mgr.result("c", ProbeType::Liveness, t.id()),
        Some(ProbeResult::Success)
    );
}

#[tokio::test(start_paused = true)]
async fn restart_policy_never_kill_message_and_worker_exit() {
    let mut c = container("c");
    c.liveness_probe = Some(with(exec_probe(&["live"]), |p| {
        p.period_seconds = Some(1);
        p.failure_threshold = Some(1);
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    rt.fake
        .script("c", FakeScript::default().default_exec(ExecScript::exit(1)));
    let mut spec = pod(vec![c]);
    spec.restart_policy = Some("Never".into());
    let mut h = Harness::with_runtime(spec, rt, None).await;
    h.run_for(secs(10)).await;
    assert_eq!(h.kills.len(), 1);
    assert_eq!(h.kills[0].1.message, "Container c failed liveness probe");
    assert_eq!(
        h.rt.exec_times("c", "live").len(),
        1,
        "no probing of an ended container"
    );
}

#[tokio::test(start_paused = true)]
async fn internal_errors_are_retried_three_times_then_discarded() {
    let mut c = container("c");
    c.readiness_probe = Some(with(exec_probe(&["ready"]), |p| {
        p.period_seconds = Some(10)
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    for _ in 0..3 {
        rt.fake.fail_next(
            FakeOp::Exec,
            RuntimeError::Os {
                operation: "exec".into(),
                message: "boom".into(),
            },
        );
    }
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(5)).await;
    assert_eq!(h.rt.exec_times("c", "ready").len(), 3);
    assert_eq!(
        h.messages("Unhealthy"),
        vec!["Readiness probe errored: exec: boom"]
    );
    assert_eq!(h.first_ready("c"), None);
    h.run_for(secs(10)).await;
    assert_eq!(h.first_ready("c"), Some(secs(10)));
}

#[tokio::test(start_paused = true)]
async fn jitter_only_right_after_an_agent_start() {
    let mut c = container("c");
    c.readiness_probe = Some(with(exec_probe(&["ready"]), |p| {
        p.period_seconds = Some(10)
    }));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    let mut h = Harness::with_runtime(pod(vec![c]), rt, Some(Instant::now())).await;
    h.run_for(secs(25)).await;
    let times: Vec<Duration> =
        h.rt.exec_times("c", "ready")
            .iter()
            .map(|t| *t - h.t0)
            .collect();
    assert!(!times.is_empty());
    assert!(times[0] < secs(10), "{times:?}");
    for w in times.windows(2) {
        assert_eq!(w[1] - w[0], secs(10), "then every period: {times:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn history_tells_a_timeout_from_a_no() {
    let mut c = container("c");
    c.readiness_probe = Some(with(exec_probe(&["ready"]), |p| p.period_seconds = Some(5)));
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    rt.on_exec(move |_, _| {
        Some(match n.fetch_add(1, Ordering::SeqCst) {
            0 => ExecBehavior::Hang,
            1 => ExecBehavior::Exit(1, "not yet".into()),
            _ => ExecBehavior::Exit(0, "ok".into()),
        })
    });
    let mut h = Harness::with_runtime(pod(vec![c]), rt, None).await;
    h.run_for(secs(12)).await;
    let hist = h.mgr.history("c", ProbeType::Readiness).unwrap();
    let results: Vec<_> = hist
        .last
        .iter()
        .map(|r| (r.result, r.ms, r.out.as_str()))
        .collect();
    assert_eq!(
        results,
        vec![
            ("timeout", 1000, "command \"ready\" timed out"),
            ("failure", 0, "not yet"),
            ("success", 0, "ok")
        ]
    );
    assert_eq!(hist.state, "Success");
    let ann = h.mgr.annotations();
    let v = &ann["probes.podvisor.io/c"];
    let json: serde_json::Value = serde_json::from_str(v).unwrap();
    assert_eq!(json["readiness"]["state"], "Success");
    assert_eq!(json["readiness"]["last"][0]["result"], "timeout");
    assert_eq!(
        json["readiness"]["last"][0]["at"],
        "2025-11-24T16:00:01.000Z"
    );
}

#[tokio::test(start_paused = true)]
async fn sidecar_probes_are_managed_and_remove_pod_stops_everything() {
    let mut side = container("side");
    side.restart_policy = Some("Always".into());
    side.startup_probe = Some(with(exec_probe(&["up"]), |p| p.period_seconds = Some(1)));
    let mut init = container("init");
    init.readiness_probe = Some(exec_probe(&["never-used"]));
    let spec = PodSpec {
        init_containers: Some(vec![init, side]),
        containers: vec![container("main")],
        ..Default::default()
    };
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH + BASE);
    let mut h = Harness::with_runtime(spec, rt, None).await;
    assert!(h.mgr.has_probe("side", ProbeType::Startup));
    assert!(
        !h.mgr.has_probe("init", ProbeType::Readiness),
        "regular init containers are not probed"
    );
    h.start("side").await;
    h.run_for(secs(3)).await;
    assert_eq!(h.first_started("side"), Some(secs(0)));
    h.mgr.remove_pod();
    h.mgr.join().await;
    let n = h.rt.exec_times("side", "up").len();
    h.run_for(secs(10)).await;
    assert_eq!(h.rt.exec_times("side", "up").len(), n);
    let _ = h.rt.fake.list().await;
}
