//! The last results of each probe, for users (docs/design/0002-probe-results.md).
//!
//! Each container × probe type keeps its last [`HISTORY_LEN`] runs: when, what came out
//! (`success`, `warning`, `failure`, `timeout`, `error`), how long it took and an excerpt
//! of the output, plus the published state and the current run of identical results. The
//! pod worker writes them as one annotation per container,
//! `probes.podvisor.io/<container>`, whose value is compact JSON:
//!
//! ```json
//! {"liveness":{"state":"Success","run":{"result":"timeout","count":2},"threshold":3,
//!   "last":[{"at":"2026-11-25T09:41:00.120Z","result":"timeout","ms":1001,
//!            "out":"command \"sh -c sleep 10\" timed out"}]}}
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{ProbeResult, ProbeType};
use crate::handlers::{HandlerResult, Outcome};

/// How many runs are kept per probe.
pub const HISTORY_LEN: usize = 5;

/// How much output is kept per run (characters).
pub const OUTPUT_EXCERPT_CHARS: usize = 200;

/// The annotation key prefix.
pub const ANNOTATION_PREFIX: &str = "probes.podvisor.io/";

/// The annotation key for a container.
pub fn annotation_key(container: &str) -> String {
    format!("{ANNOTATION_PREFIX}{container}")
}

/// One probe run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeRecord {
    /// When the run ended (RFC 3339, milliseconds).
    pub at: String,
    /// `success`, `warning`, `failure` (the application said no), `timeout` or `error`
    /// (the probe could not run).
    pub result: &'static str,
    /// How long the run took, in milliseconds.
    pub ms: u64,
    /// The first characters of the output or error.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub out: String,
}

/// The run of identical results a threshold counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResultRun {
    /// `success` or `failure`.
    pub result: &'static str,
    /// How many in a row.
    pub count: u32,
}

/// The history of one probe of one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeHistory {
    /// The published state (`Success`, `Failure`, `Unknown`).
    pub state: &'static str,
    /// The current run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<ResultRun>,
    /// The threshold the run must reach to change the state.
    pub threshold: i32,
    /// The last runs, oldest first.
    pub last: VecDeque<ProbeRecord>,
}

impl ProbeHistory {
    /// An empty history with the initial state.
    pub fn new(state: ProbeResult) -> ProbeHistory {
        ProbeHistory {
            state: state.as_str(),
            run: None,
            threshold: 1,
            last: VecDeque::new(),
        }
    }

    /// Adds a run.
    pub fn push(&mut self, at: SystemTime, r: &HandlerResult) {
        if self.last.len() == HISTORY_LEN {
            self.last.pop_front();
        }
        self.last.push_back(ProbeRecord {
            at: rfc3339_millis(at),
            result: outcome_name(&r.outcome),
            ms: duration_ms(r.latency),
            out: excerpt(&r.output),
        });
    }
}

/// The lower-case name of an outcome in the history.
pub fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Warning => "warning",
        Outcome::Failure { timed_out: false } => "failure",
        Outcome::Failure { timed_out: true } => "timeout",
        Outcome::Error => "error",
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The first [`OUTPUT_EXCERPT_CHARS`] characters, trimmed.
pub fn excerpt(s: &str) -> String {
    let t = s.trim();
    match t.char_indices().nth(OUTPUT_EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let ms = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    };
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => String::new(),
    }
}

/// Renders the annotation value for one container from its probes' histories.
pub fn render(histories: &BTreeMap<ProbeType, ProbeHistory>) -> String {
    let map: BTreeMap<&'static str, &ProbeHistory> =
        histories.iter().map(|(t, h)| (t.key(), h)).collect();
    serde_json::to_string(&map).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_runs_and_renders_compact_json() {
        let mut h = ProbeHistory::new(ProbeResult::Success);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_063_660_120);
        for i in 0..7u64 {
            h.push(
                t0 + Duration::from_secs(i),
                &HandlerResult {
                    outcome: Outcome::Failure {
                        timed_out: i % 2 == 0,
                    },
                    output: format!("out {i}"),
                    latency: Duration::from_millis(1000 + i),
                },
            );
        }
        assert_eq!(h.last.len(), HISTORY_LEN);
        assert_eq!(h.last[0].out, "out 2");
        assert_eq!(h.last[0].result, "timeout");
        assert_eq!(h.last[1].result, "failure");
        let mut m = BTreeMap::new();
        m.insert(ProbeType::Liveness, h);
        let json = render(&m);
        assert!(
            json.starts_with("{\"liveness\":{\"state\":\"Success\""),
            "{json}"
        );
        assert!(
            json.contains("\"at\":\"2025-11-25T09:41:02.120Z\""),
            "{json}"
        );
        assert!(json.contains("\"ms\":1002"), "{json}");
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "x".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), OUTPUT_EXCERPT_CHARS + 1);
        assert_eq!(excerpt("  ok\n"), "ok");
    }
}
