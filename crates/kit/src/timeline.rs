//! The pod flight recorder (docs/design/0008-timeline.md): typed, timestamped entries of
//! what every component did to a pod, appended in batches to the pod's `Timeline`
//! (`timelines.podvisor.io/v1`), which the API server keeps after the pod is gone.
//!
//! # Flow
//!
//! ```text
//!  component ──record()──▶ bounded queue ──▶ run_writer ──append(pod, entries)──▶ TimelineSink
//!            (never blocks;               (one batch per pod     (POST …/timelines/{uid}/entries,
//!             full: dropped and counted)   every `window`)        which the API server queues in
//!                                                                 its own recorder, whose sink
//!                                                                 is the store)
//! ```
//!
//! # Rules
//!
//! * [`TimelineRecorder::record`] never blocks and never fails; a disabled recorder
//!   ([`TimelineRecorder::disabled`]) records nothing (the `--timeline=false` switch).
//! * Times are the recording component's wall clock, UTC, in microseconds, in one fixed
//!   RFC 3339 form ([`format_time`]), so that entries sort by their text.
//! * The writer groups entries per pod: one append per pod per `window` (1 s by default),
//!   however many entries; at most [`MAX_ENTRIES`] are kept pending per pod.
//! * [`merge`] is the one place entries join a timeline: in time order, consecutive repeats
//!   (same component, step, container, message) folded into `count`/`lastTime`, and at most
//!   [`MAX_ENTRIES`] kept (the first [`KEEP_HEAD`] and the newest; the rest counted in
//!   `droppedEntries`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::clock::{WallClock, to_timestamp};

/// The API group.
pub const GROUP: &str = "timelines.podvisor.io";
/// The API version.
pub const VERSION: &str = "v1";
/// `apiVersion` of a Timeline.
pub const API_VERSION: &str = "timelines.podvisor.io/v1";
/// Entries kept per pod.
pub const MAX_ENTRIES: usize = 256;
/// Entries at the start of a timeline that are never dropped (creation, scheduling, the
/// first start), however long the pod lives.
pub const KEEP_HEAD: usize = 32;
/// Entries queued in one recorder at most.
pub const QUEUE_CAPACITY: usize = 16_384;
/// The default batching window of the writer: long enough that a pod's start (created,
/// bound, scheduled, sandbox, started, status) is one append per component, written after
/// the pod is running rather than competing with its start.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(1);
/// Appends written at the same time by one writer.
const CONCURRENCY: usize = 4;
/// Characters of a probe's or hook's output kept in an entry.
pub const EXCERPT_CHARS: usize = 200;

/// What happened. The component that records a step is fixed by the step (the table in the
/// design note); `Event` carries another component event's reason in `details.reason`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// API server: the pod object was created (`details.user`).
    Created,
    /// Scheduler: no node fits (the "0/N nodes are available" message).
    FailedScheduling,
    /// Scheduler: a node was chosen (`details.node`, `details.attempts`).
    Scheduled,
    /// API server: the binding was stored (`details.node`).
    Bound,
    /// Agent: the image is being pulled.
    ImagePulling,
    /// Agent: the image is present.
    ImagePulled,
    /// Agent: the pod sandbox and its network are ready (`details.ip`).
    SandboxReady,
    /// Agent: a container was created.
    ContainerCreated,
    /// Agent: a container was started.
    ContainerStarted,
    /// Agent: a container exited (`details.exitCode`, `signal`, `reason`).
    ContainerExited,
    /// Agent: a probe's published result changed (`details.probe`, `result`; the message
    /// is an excerpt of the output).
    ProbeResult,
    /// Agent: the pod's Ready condition changed (`details.ready`).
    ReadyChanged,
    /// Agent: a restart waits in crash back-off.
    BackOff,
    /// Agent: a container is being stopped (the `Killing` reason).
    Killing,
    /// API server: deletion was requested (`details.user`, `details.grace`).
    DeleteRequested,
    /// Agent: the pod is out of every node's load balancer (the drain barrier).
    EndpointsDrained,
    /// Agent: a preStop hook started.
    PreStopStarted,
    /// Agent: a preStop hook ended (`details.outcome`).
    PreStopFinished,
    /// Agent: the stop signal was sent (`details.signal`, `details.handled`).
    StopSignal,
    /// Agent: SIGKILL was sent (`details.lateMs`: how late against the deadline).
    Killed,
    /// Agent: the pod's status was written (`details.phase`).
    StatusWritten,
    /// API server: the pod object is gone from the store.
    Removed,
    /// Another event of a component (`details.reason`).
    Event,
    /// A step this version does not know.
    #[serde(other)]
    Unknown,
}

/// One entry of a timeline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When, as [`format_time`] writes it.
    pub time: String,
    /// Who (`kube-apiserver`, `default-scheduler`, `kubelet`).
    pub component: String,
    /// What.
    pub step: Step,
    /// The container it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// A human-readable line.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The step's typed details, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// How many consecutive repeats this entry stands for (absent: one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The time of the last repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<String>,
}

impl Entry {
    /// The key under which consecutive repeats fold.
    fn same_as(&self, other: &Entry) -> bool {
        self.component == other.component
            && self.step == other.step
            && self.container == other.container
            && self.message == other.message
            && self.details == other.details
    }
}

/// `t` as a timeline time: UTC, always six fractional digits (`2026-12-08T01:02:03.000004Z`).
pub fn format_time(t: SystemTime) -> String {
    let ts = to_timestamp(t);
    let micros = ts.as_microsecond().rem_euclid(1_000_000);
    let secs = ts.strftime("%Y-%m-%dT%H:%M:%S");
    format!("{secs}.{micros:06}Z")
}

/// Parses a timeline time (or any RFC 3339 time) to microseconds since the epoch.
pub fn parse_micros(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_microsecond())
}

/// The pod an entry is about.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct PodKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (the timeline's name).
    pub uid: String,
}

/// Counters of a recorder and its writer.
#[derive(Debug, Default)]
pub struct TimelineStats {
    /// Entries recorded.
    pub recorded: AtomicU64,
    /// Appends written (one store write each).
    pub appends: AtomicU64,
    /// Entries dropped (queue full or closed, or the append refused).
    pub dropped: AtomicU64,
}

type Queued = (PodKey, Entry);

/// The recording side; cheap to clone.
#[derive(Clone)]
pub struct TimelineRecorder {
    tx: Option<mpsc::Sender<Queued>>,
    component: Arc<str>,
    clock: WallClock,
    stats: Arc<TimelineStats>,
}

impl std::fmt::Debug for TimelineRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimelineRecorder")
            .field("component", &self.component)
            .field("enabled", &self.tx.is_some())
            .finish_non_exhaustive()
    }
}

/// The receiving side of a recorder's queue, for [`run_writer`].
pub struct TimelineQueue {
    rx: mpsc::Receiver<Queued>,
    stats: Arc<TimelineStats>,
}

impl TimelineRecorder {
    /// A recorder for `component` with the component's `clock`, and its queue.
    pub fn new(component: &str, clock: WallClock) -> (TimelineRecorder, TimelineQueue) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stats = Arc::new(TimelineStats::default());
        (
            TimelineRecorder {
                tx: Some(tx),
                component: component.into(),
                clock,
                stats: stats.clone(),
            },
            TimelineQueue { rx, stats },
        )
    }

    /// A recorder that records nothing.
    pub fn disabled() -> TimelineRecorder {
        TimelineRecorder {
            tx: None,
            component: "".into(),
            clock: WallClock::system(),
            stats: Arc::default(),
        }
    }

    /// Whether entries go anywhere.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// The same queue, reporting as `component`.
    pub fn for_component(&self, component: &str) -> TimelineRecorder {
        TimelineRecorder {
            component: component.into(),
            ..self.clone()
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<TimelineStats> {
        &self.stats
    }

    /// Records `step` of `pod` now; never blocks.
    pub fn record(
        &self,
        pod: &PodKey,
        step: Step,
        container: Option<&str>,
        message: impl Into<String>,
        details: &[(&str, String)],
    ) {
        self.record_at(self.clock.now(), pod, step, container, message, details);
    }

    /// Records `step` of `pod` as of `at` (a time of this component's clock taken earlier);
    /// never blocks.
    pub fn record_at(
        &self,
        at: SystemTime,
        pod: &PodKey,
        step: Step,
        container: Option<&str>,
        message: impl Into<String>,
        details: &[(&str, String)],
    ) {
        if self.tx.is_none() || pod.uid.is_empty() {
            return;
        }
        let entry = Entry {
            time: format_time(at),
            component: self.component.to_string(),
            step,
            container: container.map(str::to_string),
            message: message.into(),
            details: details
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            count: None,
            last_time: None,
        };
        self.enqueue(pod, entry);
    }

    /// Queues an entry recorded elsewhere (its own time and component), as [`Self::record`]
    /// does: the API server batches the entries nodes and the scheduler send it.
    pub fn enqueue(&self, pod: &PodKey, entry: Entry) {
        let Some(tx) = &self.tx else { return };
        self.stats.recorded.fetch_add(1, Ordering::Relaxed);
        if tx.try_send((pod.clone(), entry)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a component's event about a pod: the reasons that are steps become those
    /// steps, the others `Event` with the reason; probe failures are left out (a probe's
    /// changes of result are recorded instead of every run).
    pub fn record_event(&self, pod: &PodKey, container: Option<&str>, reason: &str, message: &str) {
        let step = match reason {
            "Unhealthy" | "ProbeWarning" => return,
            "Scheduled" => Step::Scheduled,
            "FailedScheduling" => Step::FailedScheduling,
            "Pulling" => Step::ImagePulling,
            "Pulled" => Step::ImagePulled,
            "Created" => Step::ContainerCreated,
            "Started" => Step::ContainerStarted,
            "BackOff" => Step::BackOff,
            "Killing" => Step::Killing,
            "EndpointsDrained" => Step::EndpointsDrained,
            _ => Step::Event,
        };
        let details = if step == Step::Event {
            vec![("reason", reason.to_string())]
        } else {
            Vec::new()
        };
        self.record(pod, step, container, message, &details);
    }
}

/// Where batches go.
pub trait TimelineSink: Send + Sync + 'static {
    /// Appends `entries` (in recording order) to `pod`'s timeline.
    fn append(&self, pod: PodKey, entries: Vec<Entry>) -> BoxFuture<'static, Result<(), String>>;
}

/// Writes batches from `queue` to `sink` until every recorder is dropped (what is pending
/// then is written) or `stop` fires (what is pending then is written too).
pub async fn run_writer(
    queue: TimelineQueue,
    sink: Arc<dyn TimelineSink>,
    window: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let TimelineQueue { mut rx, stats } = queue;
    let mut pending: HashMap<String, (PodKey, Vec<Entry>)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut due: Option<tokio::time::Instant> = None;
    let mut open = true;
    while open || !pending.is_empty() {
        let flush = tokio::select! {
            q = rx.recv(), if open => match q {
                Some((pod, entry)) => {
                    let slot = pending.entry(pod.uid.clone()).or_insert_with(|| {
                        order.push(pod.uid.clone());
                        (pod, Vec::new())
                    });
                    if slot.1.len() >= MAX_ENTRIES {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        slot.1.push(entry);
                    }
                    due.get_or_insert_with(|| tokio::time::Instant::now() + window);
                    false
                }
                None => {
                    open = false;
                    true
                }
            },
            _ = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if due.is_some() => true,
            _ = stop.cancelled(), if open => {
                open = false;
                true
            }
        };
        if !flush {
            continue;
        }
        due = None;
        let batches: Vec<(PodKey, Vec<Entry>)> = order
            .drain(..)
            .filter_map(|uid| pending.remove(&uid))
            .collect();
        futures::stream::iter(batches)
            .for_each_concurrent(CONCURRENCY, |(pod, entries)| {
                let sink = sink.clone();
                let stats = stats.clone();
                async move {
                    let n = entries.len() as u64;
                    match sink.append(pod.clone(), entries).await {
                        Ok(()) => {
                            stats.appends.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            stats.dropped.fetch_add(n, Ordering::Relaxed);
                            tracing::debug!(pod = %pod.name, error = %e, "timeline entries dropped");
                        }
                    }
                }
            })
            .await;
    }
}

/// The body of `POST …/namespaces/{ns}/timelines/{uid}/entries`.
pub fn entries_body(pod: &PodKey, entries: &[Entry]) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "TimelineEntries",
        "pod": pod,
        "entries": entries,
    })
}

/// [`TimelineSink`] over the API: `POST …/timelines/{uid}/entries` (a node may append only
/// to timelines of pods bound to it).
#[derive(Clone)]
pub struct KubeTimelineSink {
    client: kube::Client,
}

impl KubeTimelineSink {
    /// Wraps a client.
    pub fn new(client: kube::Client) -> KubeTimelineSink {
        KubeTimelineSink { client }
    }
}

impl TimelineSink for KubeTimelineSink {
    fn append(&self, pod: PodKey, entries: Vec<Entry>) -> BoxFuture<'static, Result<(), String>> {
        let client = self.client.clone();
        Box::pin(async move {
            let url = format!(
                "/apis/{API_VERSION}/namespaces/{}/timelines/{}/entries",
                pod.namespace, pod.uid
            );
            let body =
                serde_json::to_vec(&entries_body(&pod, &entries)).map_err(|e| e.to_string())?;
            let req = http::Request::post(url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body)
                .map_err(|e| e.to_string())?;
            client
                .request::<Value>(req)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Starts a recorder for `component` writing through `client`; the writer runs until
/// `stop` (or until every recorder is dropped). `enabled` false: a disabled recorder.
pub fn start_kube(
    client: kube::Client,
    component: &str,
    clock: WallClock,
    enabled: bool,
    stop: tokio_util::sync::CancellationToken,
) -> TimelineRecorder {
    if !enabled {
        return TimelineRecorder::disabled();
    }
    let (rec, queue) = TimelineRecorder::new(component, clock);
    tokio::spawn(run_writer(
        queue,
        Arc::new(KubeTimelineSink::new(client)),
        DEFAULT_WINDOW,
        stop,
    ));
    rec
}

/// What [`merge`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Entries added (not folded).
    pub added: usize,
    /// Entries dropped for the bound.
    pub dropped: usize,
}

/// Merges `new` entries into `entries`: each goes after every entry not later than it (so
/// the list stays in time order, and equal times keep their arrival order); a repeat of the
/// entry just before it (same component, step, container, message and details) is folded
/// into that entry's `count` and `lastTime`. Then the list is cut to [`MAX_ENTRIES`],
/// keeping the first [`KEEP_HEAD`] and the newest.
pub fn merge(entries: &mut Vec<Entry>, new: Vec<Entry>) -> Merged {
    let mut out = Merged::default();
    for e in new {
        let at = entries.partition_point(|x| x.time <= e.time);
        if at > 0 && entries[at - 1].same_as(&e) {
            let prev = &mut entries[at - 1];
            prev.count = Some(prev.count.unwrap_or(1).saturating_add(e.count.unwrap_or(1)));
            prev.last_time = Some(e.last_time.unwrap_or(e.time));
            continue;
        }
        entries.insert(at, e);
        out.added += 1;
    }
    if entries.len() > MAX_ENTRIES {
        let excess = entries.len() - MAX_ENTRIES;
        entries.drain(KEEP_HEAD..KEEP_HEAD + excess);
        out.dropped = excess;
    }
    out
}

/// A short, one-line excerpt of a command's output.
pub fn excerpt(output: &str) -> String {
    let one_line = output.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn entry(time: &str, step: Step, message: &str) -> Entry {
        Entry {
            time: time.to_string(),
            component: "kubelet".into(),
            step,
            container: None,
            message: message.into(),
            details: BTreeMap::new(),
            count: None,
            last_time: None,
        }
    }

    fn t(micros: u64) -> String {
        format_time(SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_000 + micros))
    }

    #[test]
    fn times_have_microseconds_and_sort_as_text() {
        assert_eq!(t(4), "2023-11-14T22:13:20.000004Z");
        assert_eq!(parse_micros(&t(4)), Some(1_700_000_000_000_004));
        let mut ts = vec![t(1_000_000), t(999_999), t(5)];
        ts.sort();
        assert_eq!(ts, vec![t(5), t(999_999), t(1_000_000)]);
    }

    #[test]
    fn merge_keeps_time_order_across_batches() {
        let mut list = Vec::new();
        merge(
            &mut list,
            vec![
                entry(&t(10), Step::Created, ""),
                entry(&t(30), Step::Bound, ""),
            ],
        );
        // a later batch of another component with an entry between the two
        let m = merge(
            &mut list,
            vec![
                entry(&t(20), Step::Scheduled, ""),
                entry(&t(40), Step::ImagePulled, ""),
            ],
        );
        assert_eq!(
            m,
            Merged {
                added: 2,
                dropped: 0
            }
        );
        let steps: Vec<Step> = list.iter().map(|e| e.step).collect();
        assert_eq!(
            steps,
            vec![
                Step::Created,
                Step::Scheduled,
                Step::Bound,
                Step::ImagePulled
            ]
        );
        // equal times keep arrival order
        merge(&mut list, vec![entry(&t(40), Step::ContainerCreated, "")]);
        assert_eq!(list[4].step, Step::ContainerCreated);
    }

    #[test]
    fn repeats_fold_into_count_and_last_time() {
        let mut list = Vec::new();
        let m = merge(
            &mut list,
            vec![
                entry(&t(1), Step::FailedScheduling, "0/1 nodes are available"),
                entry(&t(2), Step::FailedScheduling, "0/1 nodes are available"),
                entry(&t(3), Step::FailedScheduling, "0/1 nodes are available"),
                entry(&t(4), Step::Scheduled, "to n1"),
            ],
        );
        assert_eq!(m.added, 2);
        assert_eq!(list[0].count, Some(3));
        assert_eq!(list[0].last_time.as_deref(), Some(t(3).as_str()));
        assert_eq!(list[1].step, Step::Scheduled);
    }

    #[test]
    fn the_bound_keeps_the_head_and_the_newest() {
        let mut list = Vec::new();
        let many: Vec<Entry> = (0..MAX_ENTRIES as u64 + 50)
            .map(|i| entry(&t(i), Step::Event, &format!("e{i}")))
            .collect();
        let m = merge(&mut list, many);
        assert_eq!(m.dropped, 50);
        assert_eq!(list.len(), MAX_ENTRIES);
        assert_eq!(list[0].message, "e0");
        assert_eq!(list[KEEP_HEAD - 1].message, format!("e{}", KEEP_HEAD - 1));
        assert_eq!(list[KEEP_HEAD].message, format!("e{}", KEEP_HEAD + 50));
        assert_eq!(
            list.last().map(|e| e.message.clone()),
            Some(format!("e{}", MAX_ENTRIES + 49))
        );
    }

    #[test]
    fn events_map_to_steps_and_probe_failures_are_left_out() {
        let (rec, mut q) = TimelineRecorder::new("kubelet", WallClock::system());
        let pod = PodKey {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
        };
        rec.record_event(&pod, Some("app"), "Pulled", "already present");
        rec.record_event(&pod, Some("app"), "Unhealthy", "Readiness probe failed");
        rec.record_event(&pod, None, "SandboxChanged", "x");
        let (_, a) = q.rx.try_recv().unwrap();
        assert_eq!(
            (a.step, a.container.as_deref()),
            (Step::ImagePulled, Some("app"))
        );
        let (_, b) = q.rx.try_recv().unwrap();
        assert_eq!(b.step, Step::Event);
        assert_eq!(
            b.details.get("reason").map(String::as_str),
            Some("SandboxChanged")
        );
        assert!(q.rx.try_recv().is_err());
        // a disabled recorder records nothing
        TimelineRecorder::disabled().record(&pod, Step::Created, None, "", &[]);
    }

    /// Records every append.
    #[derive(Default)]
    struct Capture(Mutex<Vec<(String, Vec<Entry>, tokio::time::Instant)>>);

    impl TimelineSink for Arc<Capture> {
        fn append(
            &self,
            pod: PodKey,
            entries: Vec<Entry>,
        ) -> BoxFuture<'static, Result<(), String>> {
            self.0
                .lock()
                .unwrap()
                .push((pod.uid, entries, tokio::time::Instant::now()));
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_batches_per_pod_per_window() {
        let start = tokio::time::Instant::now();
        let clock = WallClock::tokio(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let (rec, q) = TimelineRecorder::new("kubelet", clock);
        let capture = Arc::new(Capture::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let writer = tokio::spawn(run_writer(
            q,
            Arc::new(capture.clone()),
            DEFAULT_WINDOW,
            stop.clone(),
        ));
        let pod = |uid: &str| PodKey {
            namespace: "default".into(),
            name: uid.into(),
            uid: uid.into(),
        };
        for i in 0..5 {
            rec.record(&pod("a"), Step::Event, None, format!("a{i}"), &[]);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rec.record(&pod("b"), Step::Created, None, "", &[]);
        tokio::time::sleep(DEFAULT_WINDOW * 2).await;
        rec.record(&pod("a"), Step::Removed, None, "", &[]);
        drop(rec);
        writer.await.unwrap();
        let got = capture.0.lock().unwrap();
        // one append per pod for the first window, one for the last entry
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0.as_str(), got[0].1.len()), ("a", 5));
        assert_eq!((got[1].0.as_str(), got[1].1.len()), ("b", 1));
        assert_eq!(got[0].2 - start, DEFAULT_WINDOW);
        assert_eq!(got[2].1[0].step, Step::Removed);
        // entry times are the component's clock, 10 ms apart
        let micros: Vec<i64> = got[0]
            .1
            .iter()
            .filter_map(|e| parse_micros(&e.time))
            .collect();
        assert_eq!(micros[1] - micros[0], 10_000);
    }
}
