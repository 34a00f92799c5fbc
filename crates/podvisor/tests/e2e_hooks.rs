//! Acceptance tests for lifecycle hooks and preStop (spec k8s-pod-lifecycle.md §1.6, §1.9,
//! catalogue §8 groups B and G, host adaptations §9), driven only through the real `kubectl`
//! against `podvisor up`, with real processes.
//!
//! The agnhost stand-ins are the python3 helpers of §9: the hook "handler" pod is
//! `python3 -m http.server`, which logs each request line (`"GET /echo?msg=poststart
//! HTTP/1.1" 404 -`), and the G1 state server counts `POST /write` bodies by `Source`.
//! Every test runs its own cluster, listens on its own 127.0.0.1 port and uses paths under
//! its own temporary directory, so tests may run in parallel.

#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::jiff::Timestamp;

const START: Duration = Duration::from_secs(60);

/// Seconds between two RFC 3339 timestamps as the API server prints them.
fn secs_between(from: &str, to: &str) -> i64 {
    let a: Timestamp = from.parse().unwrap_or_else(|e| panic!("{from:?}: {e}"));
    let b: Timestamp = to.parse().unwrap_or_else(|e| panic!("{to:?}: {e}"));
    b.as_second() - a.as_second()
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
fn wait_listening(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One plain HTTP/1.0 GET from the test process; the response body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Starts the hook handler pod (`python3 -m http.server PORT`) and waits until it listens.
fn start_handler(c: &Cluster, port: u16) {
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: pod-handle-http-request
  labels: {{app: handler}}
spec:
  terminationGracePeriodSeconds: 2
  runtimeClassName: host
  containers:
  - name: agnhost-container
    image: agnhost
    command: ["python3", "-u", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
    ports: [{{containerPort: {port}, name: http}}]
"#
    ));
    c.wait_pod_ready("pod-handle-http-request", START);
    wait_listening(port, START);
}

/// The handler's log (stderr carries the request lines).
fn handler_log(c: &Cluster) -> String {
    let out = c.kubectl(&["logs", "pod-handle-http-request"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the handler logged `GET /echo?msg=<msg>`.
fn wait_handler_got(c: &Cluster, msg: &str, timeout: Duration) {
    let needle = format!("GET /echo?msg={msg} ");
    c.wait_for(&format!("handler to log {needle:?}"), timeout, || {
        handler_log(c).contains(&needle)
    });
}

/// An exec hook command that GETs `/echo?msg=<msg>` from the handler, ignoring the 404
/// (python3 urllib stands in for `curl`; §9).
fn echo_exec(port: u16, msg: &str) -> String {
    let py = format!(
        "import urllib.request\ntry: urllib.request.urlopen('http://127.0.0.1:{port}/echo?msg={msg}', timeout=10)\nexcept Exception as e: print(e)"
    );
    format!("[\"python3\", \"-c\", {py:?}]")
}

fn phase(c: &Cluster, pod: &str) -> Option<String> {
    c.pod_field(pod, "{.status.phase}")
}

// ---------------------------------------------------------------------------------------
// Group B: lifecycle hooks (lifecycle_hook.go)
// ---------------------------------------------------------------------------------------

/// B1 [C] should execute poststart exec hook properly: the handler logs the request, and
/// the container is reported running only after the hook finished.
#[test]
fn b1_poststart_exec_hook_calls_the_handler_before_running() {
    let c = Cluster::up();
    let port = free_port();
    start_handler(&c, port);
    let done = c.dir.path().join("poststart-done");
    let py = format!(
        "import urllib.request,time\ntry: urllib.request.urlopen('http://127.0.0.1:{port}/echo?msg=poststart', timeout=10)\nexcept Exception as e: print(e)\ntime.sleep(2)\nopen({done:?}, 'w').write('done')",
        done = done.display().to_string()
    );
    let m = marker("b1");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: pod-with-poststart-exec-hook}}
spec:
  terminationGracePeriodSeconds: 5
  runtimeClassName: host
  containers:
  - name: pod-with-poststart-exec-hook
    image: busybox
    command: ["sh", "-c", "sleep 1000 & wait", "{m}"]
    lifecycle:
      postStart:
        exec:
          command: ["python3", "-c", {py:?}]
"#
    ));
    // Until the hook returns the container is waiting (ContainerCreating), never running.
    let deadline = Instant::now() + START;
    loop {
        let state = c
            .pod_field(
                "pod-with-poststart-exec-hook",
                "{.status.containerStatuses[0].state}",
            )
            .unwrap_or_default();
        if state.contains("\"running\"") {
            assert!(
                done.exists(),
                "container reported running before its postStart hook finished: {state}"
            );
            break;
        }
        assert!(
            !state.contains("terminated"),
            "container ended while its postStart hook ran: {state}"
        );
        assert!(Instant::now() < deadline, "never running: {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_pod_ready("pod-with-poststart-exec-hook", START);
    wait_handler_got(&c, "poststart", Duration::from_secs(120));
    assert_eq!(
        phase(&c, "pod-with-poststart-exec-hook").as_deref(),
        Some("Running")
    );
    c.kubectl_ok(&["delete", "pod", "pod-with-poststart-exec-hook"]);
    c.wait_for("processes gone", START, || find_pids(&m).is_empty());
}

/// B2 [C] should execute prestop exec hook properly: after a DELETE with grace 15 the
/// handler logs the preStop request within 30 s, and nothing before the delete.
#[test]
fn b2_prestop_exec_hook_calls_the_handler_on_delete() {
    let c = Cluster::up();
    let port = free_port();
    start_handler(&c, port);
    let m = marker("b2");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: pod-with-prestop-exec-hook}}
spec:
  runtimeClassName: host
  containers:
  - name: pod-with-prestop-exec-hook
    image: busybox
    command: ["sh", "-c", "sleep 1000 & wait", "{m}"]
    lifecycle:
      preStop:
        exec:
          command: {cmd}
"#,
        cmd = echo_exec(port, "prestop")
    ));
    c.wait_pod_ready("pod-with-prestop-exec-hook", START);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !handler_log(&c).contains("msg=prestop"),
        "preStop ran before any deletion"
    );
    c.kubectl_ok(&[
        "delete",
        "pod",
        "pod-with-prestop-exec-hook",
        "--grace-period=15",
        "--wait=false",
    ]);
    wait_handler_got(&c, "prestop", Duration::from_secs(30));
    c.wait_for("pod gone", Duration::from_secs(60), || {
        !c.pod_exists("pod-with-prestop-exec-hook")
    });
    assert!(find_pids(&m).is_empty(), "container processes left behind");
}

/// B3 [C] should execute poststart http hook properly (the httpGet goes straight to the
/// handler; its host defaults to the pod IP, which is the node's 127.0.0.1).
#[test]
fn b3_poststart_http_hook_calls_the_handler() {
    let c = Cluster::up();
    let port = free_port();
    start_handler(&c, port);
    let ip = c
        .pod_field("pod-handle-http-request", "{.status.podIP}")
        .unwrap_or_default();
    assert_eq!(
        ip, "127.0.0.1",
        "host processes report the node IP as pod IP"
    );
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: pod-with-poststart-http-hook}}
spec:
  terminationGracePeriodSeconds: 2
  runtimeClassName: host
  containers:
  - name: pod-with-poststart-http-hook
    image: busybox
    command: ["sh", "-c", "sleep 1000 & wait"]
    lifecycle:
      postStart:
        httpGet:
          path: /echo?msg=poststart
          port: {port}
"#
    ));
    c.wait_pod_ready("pod-with-poststart-http-hook", START);
    wait_handler_got(&c, "poststart", Duration::from_secs(120));
    // A 404 from the handler is not a hook failure: no FailedPostStartHook, no restart.
    let ev = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=pod-with-poststart-http-hook",
    ]);
    assert!(!ev.contains("FailedPostStartHook"), "{ev}");
    assert_eq!(
        c.pod_field(
            "pod-with-poststart-http-hook",
            "{.status.containerStatuses[0].restartCount}"
        )
        .as_deref(),
        Some("0")
    );
}

/// B5 [C] should execute prestop http hook properly.
#[test]
fn b5_prestop_http_hook_calls_the_handler_on_delete() {
    let c = Cluster::up();
    let port = free_port();
    start_handler(&c, port);
    let m = marker("b5");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: pod-with-prestop-http-hook}}
spec:
  runtimeClassName: host
  containers:
  - name: pod-with-prestop-http-hook
    image: busybox
    command: ["sh", "-c", "sleep 1000 & wait", "{m}"]
    lifecycle:
      preStop:
        httpGet:
          path: /echo?msg=prestop
          port: {port}
"#
    ));
    c.wait_pod_ready("pod-with-prestop-http-hook", START);
    c.kubectl_ok(&[
        "delete",
        "pod",
        "pod-with-prestop-http-hook",
        "--grace-period=15",
        "--wait=false",
    ]);
    wait_handler_got(&c, "prestop", Duration::from_secs(30));
    c.wait_for("pod gone", Duration::from_secs(60), || {
        !c.pod_exists("pod-with-prestop-http-hook")
    });
    assert!(find_pids(&m).is_empty(), "container processes left behind");
}

/// A pause-like pod with a sleep preStop hook and a finalizer that keeps the object (and
/// its final container state) after termination.
fn sleep_hook_pod(name: &str, tgps: u32, sleep: u32, marker: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  finalizers: ["test.podvisor.io/keep"]
spec:
  terminationGracePeriodSeconds: {tgps}
  runtimeClassName: host
  containers:
  - name: pause
    image: pause
    command: ["sh", "-c", "sleep 100000 & wait", "{marker}"]
    lifecycle:
      preStop:
        sleep: {{seconds: {sleep}}}
"#
    )
}

/// Waits until the first container of `pod` is terminated; returns (startedAt, finishedAt).
fn wait_terminated(c: &Cluster, pod: &str, timeout: Duration) -> (String, String) {
    let path = "{.status.containerStatuses[0].state.terminated.startedAt} {.status.containerStatuses[0].state.terminated.finishedAt}";
    let mut out = (String::new(), String::new());
    c.wait_for(&format!("{pod} terminated"), timeout, || {
        let v = c.pod_field(pod, path).unwrap_or_default();
        match v.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => {
                out = (a.to_string(), b.to_string());
                true
            }
            _ => false,
        }
    });
    out
}

fn release_finalizer(c: &Cluster, pod: &str) {
    c.kubectl_ok(&[
        "patch",
        "pod",
        pod,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    c.wait_for(&format!("{pod} gone"), START, || !c.pod_exists(pod));
}

/// B7 valid prestop hook using sleep action: TGPS 100, preStop sleep 50, default DELETE.
/// `finishedAt − (deletionTimestamp − 100 s)` is at least 50 s and below 100 s.
#[test]
fn b7_prestop_sleep_action_delays_the_stop_signal() {
    let c = Cluster::up();
    let m = marker("b7");
    c.apply(&sleep_hook_pod("pod-with-prestop-sleep-hook", 100, 50, &m));
    c.wait_pod_ready("pod-with-prestop-sleep-hook", START);
    c.kubectl_ok(&[
        "delete",
        "pod",
        "pod-with-prestop-sleep-hook",
        "--wait=false",
    ]);
    let dt = c
        .pod_field(
            "pod-with-prestop-sleep-hook",
            "{.metadata.deletionTimestamp}",
        )
        .unwrap_or_default();
    assert!(!dt.is_empty(), "no deletionTimestamp after DELETE");
    // Half-way through the hook the container still runs.
    std::thread::sleep(Duration::from_secs(20));
    assert!(!find_pids(&m).is_empty(), "stopped during the sleep hook");
    let (_, finished) =
        wait_terminated(&c, "pod-with-prestop-sleep-hook", Duration::from_secs(120));
    let took = secs_between(&dt, &finished) + 100;
    assert!(
        (50..100).contains(&took),
        "container finished {took} s after the delete request, expected 50 ≤ t < 100"
    );
    release_finalizer(&c, "pod-with-prestop-sleep-hook");
    assert!(find_pids(&m).is_empty(), "container processes left behind");
}

/// B8 reduce GracePeriodSeconds during runtime: TGPS 100, preStop sleep 50, DELETE with
/// grace 30: the hook is cut short and the container ends between 30 s and 50 s after the
/// delete request.
#[test]
fn b8_prestop_sleep_is_cut_short_by_a_shorter_delete_grace() {
    let c = Cluster::up();
    let m = marker("b8");
    c.apply(&sleep_hook_pod("pod-with-prestop-sleep-hook", 100, 50, &m));
    c.wait_pod_ready("pod-with-prestop-sleep-hook", START);
    c.kubectl_ok(&[
        "delete",
        "pod",
        "pod-with-prestop-sleep-hook",
        "--grace-period=30",
        "--wait=false",
    ]);
    let dt = c
        .pod_field(
            "pod-with-prestop-sleep-hook",
            "{.metadata.deletionTimestamp} {.metadata.deletionGracePeriodSeconds}",
        )
        .unwrap_or_default();
    let (dt, grace) = dt.split_once(' ').expect("deletion fields");
    assert_eq!(grace, "30");
    let (_, finished) =
        wait_terminated(&c, "pod-with-prestop-sleep-hook", Duration::from_secs(120));
    // deletionTimestamp = request time + 30 s; timestamps have whole seconds.
    let took = secs_between(dt, &finished) + 30;
    assert!(
        (29..50).contains(&took),
        "container finished {took} s after the delete request, expected 30 ≤ t < 50"
    );
    release_finalizer(&c, "pod-with-prestop-sleep-hook");
}

/// B9 ignore terminated container: a container that exits by itself (sleep 3) does not
/// run its 10 s sleep preStop hook.
#[test]
fn b9_prestop_sleep_does_not_run_for_a_container_that_exits_by_itself() {
    let c = Cluster::up();
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: pod-with-prestop-sleep-hook}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 30
  runtimeClassName: host
  containers:
  - name: busybox
    image: busybox
    command: ["sh", "-c", "sleep 3"]
    lifecycle:
      preStop:
        sleep: {seconds: 10}
"#,
    );
    let (started, finished) =
        wait_terminated(&c, "pod-with-prestop-sleep-hook", Duration::from_secs(60));
    let ran = secs_between(&started, &finished);
    assert!(
        (2..10).contains(&ran),
        "container ran {ran} s (sleep 3), the preStop must not run"
    );
    c.wait_pod_phase("pod-with-prestop-sleep-hook", "Succeeded", START);
}

/// B10 prestop hook using sleep action with zero duration: deletion completes well
/// within the default 30 s grace.
#[test]
fn b10_prestop_sleep_zero_deletes_promptly() {
    let c = Cluster::up();
    let m = marker("b10");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: pod-with-prestop-sleep-hook}}
spec:
  runtimeClassName: host
  containers:
  - name: pause
    image: pause
    command: ["sh", "-c", "sleep 100000 & wait", "{m}"]
    lifecycle:
      preStop:
        sleep: {{seconds: 0}}
"#
    ));
    c.wait_pod_ready("pod-with-prestop-sleep-hook", START);
    let t0 = Instant::now();
    c.kubectl_ok(&[
        "delete",
        "pod",
        "pod-with-prestop-sleep-hook",
        "--timeout=60s",
    ]);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "deletion took {took:?}; a zero sleep hook must not hold the grace period"
    );
    assert!(!c.pod_exists("pod-with-prestop-sleep-hook"));
    assert!(find_pids(&m).is_empty(), "container processes left behind");
}

// ---------------------------------------------------------------------------------------
// Group G: PreStop (pre_stop.go)
// ---------------------------------------------------------------------------------------

/// The §9 state server: POST /write {"Source": s} counts; GET /read returns the counts.
const STATE_SERVER: &str = r#"import http.server, json, sys, threading
state = {}
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        if self.path != "/write":
            self.send_response(404); self.end_headers(); return
        with lock:
            src = body.get("Source", "")
            state[src] = state.get(src, 0) + 1
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
    def do_GET(self):
        if self.path != "/read":
            self.send_response(404); self.end_headers(); return
        with lock:
            out = json.dumps({"Received": state}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.end_headers(); self.wfile.write(out)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn received_prestop(port: u16) -> i64 {
    http_get(port, "/read")
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["Received"]["prestop"].as_i64())
        .unwrap_or(0)
}

/// G1 [C] should call prestop when killing a pod: the tester's preStop POSTs
/// `{"Source":"prestop"}` to the server, whose state then shows `Received.prestop ≥ 1`.
#[test]
fn g1_prestop_is_called_when_the_pod_is_killed() {
    let c = Cluster::up();
    let port = free_port();
    let script = c.dir.path().join("state_server.py");
    std::fs::write(&script, STATE_SERVER).expect("write server");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: server}}
spec:
  terminationGracePeriodSeconds: 2
  runtimeClassName: host
  containers:
  - name: server
    image: agnhost
    command: ["python3", "{script}", "{port}"]
"#,
        script = script.display()
    ));
    c.wait_pod_ready("server", START);
    wait_listening(port, START);
    let py = format!(
        "import urllib.request\nurllib.request.urlopen(urllib.request.Request('http://127.0.0.1:{port}/write', data=b'{{\"Source\": \"prestop\"}}', headers={{'Content-Type': 'application/json'}}), timeout=10)"
    );
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: tester}}
spec:
  runtimeClassName: host
  containers:
  - name: tester
    image: busybox
    command: ["sh", "-c", "sleep 600 & wait"]
    lifecycle:
      preStop:
        exec:
          command: ["python3", "-c", {py:?}]
"#
    ));
    c.wait_pod_ready("tester", START);
    assert_eq!(received_prestop(port), 0, "preStop ran before the delete");
    c.kubectl_ok(&["delete", "pod", "tester", "--timeout=90s"]);
    c.wait_for(
        "server state shows the preStop",
        Duration::from_secs(30),
        || received_prestop(port) >= 1,
    );
    // The server still runs: killing the tester touched nothing else.
    assert_eq!(phase(&c, "server").as_deref(), Some("Running"));
}

/// G2 graceful pod terminated should wait until preStop hook completes the process: a
/// preStop that never ends keeps the pod Running (not terminal) through the grace period,
/// and is cut at the grace period (plus the 2 s floor).
#[test]
fn g2_pod_stays_running_while_an_endless_prestop_runs_until_the_grace_period() {
    let c = Cluster::up();
    let m = marker("g2");
    let hm = marker("g2hook");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: g2}}
spec:
  runtimeClassName: host
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "sleep 600 & wait", "{m}"]
    lifecycle:
      preStop:
        exec:
          command: ["sh", "-c", "while true; do echo preStop; sleep 1; done", "{hm}"]
"#
    ));
    c.wait_pod_ready("g2", START);
    let t0 = Instant::now();
    c.kubectl_ok(&["delete", "pod", "g2", "--grace-period=30", "--wait=false"]);
    c.wait_for("the preStop hook to run", Duration::from_secs(10), || {
        !find_pids(&hm).is_empty()
    });
    // Within the grace period the phase stays Running and the container runs.
    while t0.elapsed() < Duration::from_secs(25) {
        let p = phase(&c, "g2");
        assert_eq!(
            p.as_deref(),
            Some("Running"),
            "phase during the preStop hook at {:?}",
            t0.elapsed()
        );
        assert!(
            !find_pids(&m).is_empty(),
            "container stopped during the grace period at {:?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    c.wait_for("pod gone", Duration::from_secs(60), || !c.pod_exists("g2"));
    let gone = t0.elapsed();
    assert!(
        gone >= Duration::from_secs(29) && gone < Duration::from_secs(50),
        "pod gone {gone:?} after the delete, expected about 30 s (+2 s)"
    );
    c.wait_for("hook processes gone", Duration::from_secs(10), || {
        find_pids(&hm).is_empty() && find_pids(&m).is_empty()
    });
}
