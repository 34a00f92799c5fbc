//! Probe handlers against real processes: the python3 stand-in for agnhost `liveness` from
//! spec §9 (/healthz 200 for a while then 500, /redirect?loc=X → 302 with Go's body), run as a
//! child process and killed at the end of each test.

mod probe_support;

use std::process::Stdio;
use std::time::Duration;

use podvisor_agent::handlers::{Outcome, run_probe_action, run_tcp};
use podvisor_testkit::LIVENESS_PY;
use probe_support::{get, no_exec_target};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Server {
    child: tokio::process::Child,
    port: u16,
}

impl Server {
    async fn start(healthy_secs: f64) -> Server {
        let mut child = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(LIVENESS_PY)
            .arg(healthy_secs.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("server starts")
        .expect("port line");
        let port = line.trim().parse().expect("a port");
        Server { child, port }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a5_a6_healthz_turns_500_while_the_port_stays_open() {
    let srv = Server::start(1.0).await;
    let r = run_probe_action(&get(srv.port, "/healthz"), &no_exec_target(), TIMEOUT).await;
    assert_eq!((r.outcome, r.output.as_str()), (Outcome::Success, "ok"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = run_probe_action(&get(srv.port, "/healthz"), &no_exec_target(), TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: false });
    assert_eq!(r.output, "HTTP probe failed with statuscode: 500");
    let r = run_tcp("127.0.0.1", srv.port, TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::Success, "A6: tcp stays healthy");
    srv.stop().await;
}

#[tokio::test]
async fn a12_local_redirect_reaches_the_failing_healthz() {
    let srv = Server::start(0.0).await;
    let r = run_probe_action(
        &get(srv.port, "/redirect?loc=%2Fhealthz"),
        &no_exec_target(),
        TIMEOUT,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: false });
    assert_eq!(r.output, "HTTP probe failed with statuscode: 500");
    srv.stop().await;
}

#[tokio::test]
async fn a13_non_local_redirect_warns_with_gos_body() {
    let srv = Server::start(0.0).await;
    let r = run_probe_action(
        &get(srv.port, "/redirect?loc=http%3A%2F%2F0.0.0.0%2F"),
        &no_exec_target(),
        TIMEOUT,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Warning);
    assert!(
        r.output.contains(
            "Probe terminated redirects, Response body: <a href=\"http://0.0.0.0/\">Found</a>."
        ),
        "{}",
        r.output
    );
    srv.stop().await;
}
