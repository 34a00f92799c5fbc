//! Process-wide metrics in the Prometheus text exposition format (version 0.0.4), under
//! the names, labels, help texts and buckets upstream Kubernetes uses, so dashboards and
//! alerts written for a cluster read podvisor unchanged.
//!
//! Every metric is a `static` of this module (the catalogue is [`FAMILIES`]); the API server
//! records requests, watches and store latency, the node agent records pod start latency,
//! and [`render`] writes all of them for `GET /metrics`. In `podvisor up` the agent runs in
//! the API server's process, so one `/metrics` carries both, as the issue asks.
//!
//! Rules:
//! - recording never blocks on I/O and never fails: a poisoned lock is taken over;
//! - every family holds at most [`MAX_SERIES`] label sets: a client cannot make the server
//!   spend memory without bound by inventing resources (a new set past the cap is dropped
//!   and counted in `podvisor_metrics_series_dropped_total`);
//! - label values are escaped as the format requires (`\\`, `"`, newline).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The most label sets one family keeps.
pub const MAX_SERIES: usize = 4096;

/// Label sets dropped because a family was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Upstream's request latency buckets (`apiserver_request_duration_seconds`,
/// `etcd_request_duration_seconds`).
pub const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// The kubelet's pod start buckets (`kubelet_pod_start_duration_seconds`).
pub const POD_START_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `map` may take the label set `key` (present already, or room left).
fn admit<V>(map: &BTreeMap<Vec<String>, V>, key: &[String]) -> bool {
    if map.len() < MAX_SERIES || map.contains_key(key) {
        return true;
    }
    DROPPED.fetch_add(1, Ordering::Relaxed);
    false
}

fn key(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_string()).collect()
}

/// A counter or gauge family (`counter`/`gauge` in `# TYPE`).
#[derive(Debug)]
pub struct Scalar {
    name: &'static str,
    help: &'static str,
    ty: &'static str,
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, f64>>,
}

impl Scalar {
    /// A counter family.
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Scalar {
        Scalar {
            name,
            help,
            ty: "counter",
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// A gauge family.
    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Scalar {
        Scalar {
            name,
            help,
            ty: "gauge",
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds `by` to the series of `values` (one value per label, in declaration order).
    pub fn add(&self, values: &[&str], by: f64) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let k = key(values);
        let mut s = lock(&self.series);
        if admit(&s, &k) {
            *s.entry(k).or_insert(0.0) += by;
        }
    }

    /// Adds one.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1.0);
    }

    /// The current value of a series (0 when absent).
    pub fn get(&self, values: &[&str]) -> f64 {
        lock(&self.series).get(&key(values)).copied().unwrap_or(0.0)
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, self.ty);
        for (k, v) in lock(&self.series).iter() {
            out.push_str(self.name);
            labels(out, self.labels, k, None);
            let _ = writeln!(out, " {}", number(*v));
        }
    }
}

/// A gauge series held while something is active (a watch): +1 now, −1 on drop.
#[derive(Debug)]
pub struct GaugeGuard {
    gauge: &'static Scalar,
    values: Vec<String>,
}

impl GaugeGuard {
    /// Raises the series of `values` by one until the guard drops.
    pub fn new(gauge: &'static Scalar, values: &[&str]) -> GaugeGuard {
        gauge.add(values, 1.0);
        GaugeGuard {
            gauge,
            values: key(values),
        }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        let v: Vec<&str> = self.values.iter().map(String::as_str).collect();
        self.gauge.add(&v, -1.0);
    }
}

#[derive(Debug, Default, Clone)]
struct Buckets {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A histogram family with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    bounds: &'static [f64],
    series: Mutex<BTreeMap<Vec<String>, Buckets>>,
}

impl Histogram {
    /// A histogram family.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Histogram {
        Histogram {
            name,
            help,
            labels,
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one observation (seconds) in the series of `values`.
    pub fn observe(&self, values: &[&str], v: f64) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let k = key(values);
        let mut s = lock(&self.series);
        if !admit(&s, &k) {
            return;
        }
        let b = s.entry(k).or_insert_with(|| Buckets {
            counts: vec![0; self.bounds.len()],
            ..Buckets::default()
        });
        if let Some(i) = self.bounds.iter().position(|le| v <= *le) {
            b.counts[i] += 1;
        }
        b.sum += v;
        b.count += 1;
    }

    /// The number of observations in a series.
    pub fn count(&self, values: &[&str]) -> u64 {
        lock(&self.series).get(&key(values)).map_or(0, |b| b.count)
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        for (k, b) in lock(&self.series).iter() {
            let mut cumulative = 0;
            for (le, n) in self.bounds.iter().zip(&b.counts) {
                cumulative += n;
                let _ = write!(out, "{}_bucket", self.name);
                labels(out, self.labels, k, Some(&number(*le)));
                let _ = writeln!(out, " {cumulative}");
            }
            let _ = write!(out, "{}_bucket", self.name);
            labels(out, self.labels, k, Some("+Inf"));
            let _ = writeln!(out, " {}", b.count);
            let _ = write!(out, "{}_sum", self.name);
            labels(out, self.labels, k, None);
            let _ = writeln!(out, " {}", number(b.sum));
            let _ = write!(out, "{}_count", self.name);
            labels(out, self.labels, k, None);
            let _ = writeln!(out, " {}", b.count);
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, ty: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {ty}");
}

fn labels(out: &mut String, names: &[&str], values: &[String], le: Option<&str>) {
    if names.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (n, v) in names.iter().zip(values) {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{n}=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
}

/// A number as Prometheus writes it (`1`, `0.005`, `1e+06` style is not needed here).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// `apiserver_request_total`.
pub static APISERVER_REQUEST_TOTAL: Scalar = Scalar::counter(
    "apiserver_request_total",
    "[STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
    &[
        "code",
        "component",
        "dry_run",
        "group",
        "resource",
        "scope",
        "subresource",
        "verb",
        "version",
    ],
);

/// `apiserver_request_duration_seconds`.
pub static APISERVER_REQUEST_DURATION_SECONDS: Histogram = Histogram::new(
    "apiserver_request_duration_seconds",
    "[STABLE] Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
    &[
        "component",
        "dry_run",
        "group",
        "resource",
        "scope",
        "subresource",
        "verb",
        "version",
    ],
    REQUEST_BUCKETS,
);

/// `apiserver_current_inflight_requests`.
pub static APISERVER_CURRENT_INFLIGHT_REQUESTS: Scalar = Scalar::gauge(
    "apiserver_current_inflight_requests",
    "[STABLE] Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
    &["request_kind"],
);

/// `apiserver_longrunning_requests` (watches and other streams).
pub static APISERVER_LONGRUNNING_REQUESTS: Scalar = Scalar::gauge(
    "apiserver_longrunning_requests",
    "[STABLE] Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
    &[
        "component",
        "group",
        "resource",
        "scope",
        "subresource",
        "verb",
        "version",
    ],
);

/// `etcd_request_duration_seconds`: the store's latency, whatever the backend.
pub static ETCD_REQUEST_DURATION_SECONDS: Histogram = Histogram::new(
    "etcd_request_duration_seconds",
    "[ALPHA] Etcd request latency in seconds for each operation and object type.",
    &["operation", "type"],
    REQUEST_BUCKETS,
);

/// `kubelet_pod_start_duration_seconds`.
pub static KUBELET_POD_START_DURATION_SECONDS: Histogram = Histogram::new(
    "kubelet_pod_start_duration_seconds",
    "[ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
    &[],
    POD_START_BUCKETS,
);

/// One family of the catalogue.
#[derive(Debug, Clone, Copy)]
pub enum Family {
    /// A counter or gauge.
    Scalar(&'static Scalar),
    /// A histogram.
    Histogram(&'static Histogram),
}

/// Every metric, in the order [`render`] writes them.
pub static FAMILIES: &[Family] = &[
    Family::Scalar(&APISERVER_CURRENT_INFLIGHT_REQUESTS),
    Family::Histogram(&APISERVER_REQUEST_DURATION_SECONDS),
    Family::Scalar(&APISERVER_LONGRUNNING_REQUESTS),
    Family::Scalar(&APISERVER_REQUEST_TOTAL),
    Family::Histogram(&ETCD_REQUEST_DURATION_SECONDS),
    Family::Histogram(&KUBELET_POD_START_DURATION_SECONDS),
];

/// Every metric in the text format (`text/plain; version=0.0.4; charset=utf-8`).
pub fn render() -> String {
    let mut out = String::with_capacity(16 * 1024);
    for f in FAMILIES {
        match f {
            Family::Scalar(s) => s.render(&mut out),
            Family::Histogram(h) => h.render(&mut out),
        }
    }
    header(
        &mut out,
        "podvisor_metrics_series_dropped_total",
        "Label sets not recorded because their metric already held the most series it keeps.",
        "counter",
    );
    let _ = writeln!(
        out,
        "podvisor_metrics_series_dropped_total {}",
        DROPPED.load(Ordering::Relaxed)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        static C: Scalar = Scalar::counter("t_total", "Help.", &["code", "verb"]);
        C.inc(&["200", "GET"]);
        C.add(&["200", "GET"], 2.0);
        C.inc(&["404", "with \"quote\""]);
        let mut out = String::new();
        C.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_total Help.\n# TYPE t_total counter\nt_total{code=\"200\",verb=\"GET\"} 3\nt_total{code=\"404\",verb=\"with \\\"quote\\\"\"} 1\n"
        );

        static H: Histogram = Histogram::new("t_seconds", "H.", &[], &[0.1, 1.0]);
        H.observe(&[], 0.05);
        H.observe(&[], 0.5);
        H.observe(&[], 7.0);
        let mut out = String::new();
        H.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_seconds H.\n# TYPE t_seconds histogram\nt_seconds_bucket{le=\"0.1\"} 1\nt_seconds_bucket{le=\"1\"} 2\nt_seconds_bucket{le=\"+Inf\"} 3\nt_seconds_sum 7.55\nt_seconds_count 3\n"
        );
    }

    #[test]
    fn a_family_keeps_at_most_max_series_label_sets() {
        static C: Scalar = Scalar::counter("cap_total", "Help.", &["resource"]);
        for i in 0..MAX_SERIES + 10 {
            C.inc(&[&format!("r{i}")]);
        }
        assert_eq!(lock(&C.series).len(), MAX_SERIES);
        assert_eq!(C.get(&["r0"]), 1.0);
        C.inc(&["r0"]);
        assert_eq!(C.get(&["r0"]), 2.0, "an existing series still counts");
        assert!(DROPPED.load(Ordering::Relaxed) >= 10);
    }

    #[test]
    fn a_gauge_guard_counts_while_alive() {
        static G: Scalar = Scalar::gauge("g", "G.", &["verb"]);
        let a = GaugeGuard::new(&G, &["WATCH"]);
        let b = GaugeGuard::new(&G, &["WATCH"]);
        assert_eq!(G.get(&["WATCH"]), 2.0);
        drop(a);
        drop(b);
        assert_eq!(G.get(&["WATCH"]), 0.0);
    }
}
