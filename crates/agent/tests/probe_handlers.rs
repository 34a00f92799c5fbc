//! Probe handlers against real sockets (HTTP, HTTPS, TCP, gRPC servers in the test) and exec
//! on the fake runtime. Case ids refer to spec §8 group A where a case checks a handler rule.

mod probe_support;

use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_agent::handlers::{Action, Outcome, grpc, run_probe_action, run_tcp};
use podvisor_runtime::ContainerId;
use podvisor_runtime::fake::{ExecScript, FakeScript};
use probe_support::*;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn http_2xx_is_success_with_the_body() {
    let srv = HttpServer::start(|_| Reply::status(200, "ok")).await;
    let r = run_probe_action(&get(srv.port, "/healthz"), &no_exec_target(), SECOND).await;
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.output, "ok");
    assert_eq!(srv.paths(), vec!["/healthz"]);
}

#[tokio::test]
async fn a5_http_500_is_failure_with_upstream_message() {
    let srv = HttpServer::start(|_| Reply::status(500, "secret body")).await;
    let r = run_probe_action(&get(srv.port, "/healthz"), &no_exec_target(), SECOND).await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: false });
    assert_eq!(r.output, "HTTP probe failed with statuscode: 500");
}

#[tokio::test]
async fn a12_same_host_redirect_is_followed() {
    let srv = HttpServer::start(|p| {
        if p.starts_with("/redirect") {
            Reply::redirect("/healthz")
        } else {
            Reply::status(500, "error")
        }
    })
    .await;
    let r = run_probe_action(
        &get(srv.port, "/redirect?loc=%2Fhealthz"),
        &no_exec_target(),
        SECOND,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: false });
    assert_eq!(r.output, "HTTP probe failed with statuscode: 500");
    assert_eq!(srv.paths(), vec!["/redirect?loc=%2Fhealthz", "/healthz"]);
}

#[tokio::test]
async fn a13_non_local_redirect_is_a_warning_counting_as_success() {
    let srv = HttpServer::start(|_| Reply::redirect("http://0.0.0.0/")).await;
    let r = run_probe_action(
        &get(srv.port, "/redirect?loc=http%3A%2F%2F0.0.0.0%2F"),
        &no_exec_target(),
        SECOND,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Warning);
    assert!(r.outcome.is_success());
    assert!(
        r.output.contains(
            "Probe terminated redirects, Response body: <a href=\"http://0.0.0.0/\">Found</a>."
        ),
        "{}",
        r.output
    );
    assert_eq!(srv.paths().len(), 1, "the other host is never contacted");
}

#[tokio::test]
async fn tenth_same_host_redirect_fails() {
    let srv = HttpServer::start(|p| {
        let n: u32 = p.trim_start_matches("/r").parse().unwrap_or(0);
        Reply::redirect(&format!("/r{}", n + 1))
    })
    .await;
    let r = run_probe_action(&get(srv.port, "/r0"), &no_exec_target(), SECOND).await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: false });
    assert!(
        r.output.ends_with("stopped after 10 redirects"),
        "{}",
        r.output
    );
    assert_eq!(srv.paths().len(), 10);
}

#[tokio::test]
async fn http_headers_user_agent_host_override_and_named_port() {
    let srv = HttpServer::start(|_| Reply::status(204, "")).await;
    let mut t = no_exec_target();
    t.container.ports.as_mut().unwrap()[0].container_port = srv.port as i32;
    let action = Action::HttpGet {
        scheme: "HTTP".to_lowercase(),
        host: Some("127.0.0.1".into()),
        port: IntOrString::String("web".into()),
        path: "healthz".into(),
        headers: vec![
            ("Host".into(), "example.test".into()),
            ("X-Custom".into(), "yes".into()),
        ],
    };
    let r = run_probe_action(&action, &t, SECOND).await;
    assert_eq!(r.outcome, Outcome::Success);
    let head = srv.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
    assert!(head.contains("host: example.test\r\n"), "{head}");
    assert!(head.contains("user-agent: kube-probe/1.32\r\n"), "{head}");
    assert!(head.contains("accept: */*\r\n"), "{head}");
    assert!(head.contains("x-custom: yes\r\n"), "{head}");
}

#[tokio::test]
async fn http_unknown_port_name_is_an_error_not_a_failure() {
    let r = run_probe_action(
        &Action::HttpGet {
            scheme: "http".into(),
            host: None,
            port: IntOrString::String("nope".into()),
            path: "/".into(),
            headers: vec![],
        },
        &no_exec_target(),
        SECOND,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Error);
    assert_eq!(r.output, "port nope not found");
}

#[tokio::test]
async fn a2_http_connection_refused_message() {
    let port = closed_port().await;
    let r = run_probe_action(&get(port, "/"), &no_exec_target(), SECOND).await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: false });
    assert_eq!(
        r.output,
        format!(
            "Get \"http://127.0.0.1:{port}/\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        )
    );
}

#[tokio::test]
async fn http_timeout_is_a_timed_out_failure() {
    let srv = HttpServer::start(|_| Reply::hang()).await;
    let r = run_probe_action(&get(srv.port, "/"), &no_exec_target(), SECOND).await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: true });
    assert!(
        r.output.ends_with(
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ),
        "{}",
        r.output
    );
    assert!(r.latency >= SECOND && r.latency < 3 * SECOND);
}

#[tokio::test]
async fn http_body_is_read_up_to_10_kib() {
    let srv = HttpServer::start(|_| Reply::status(200, &"x".repeat(50_000))).await;
    let r = run_probe_action(&get(srv.port, "/"), &no_exec_target(), SECOND).await;
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.output.len(), 10 * 1024);
}

#[tokio::test]
async fn https_is_not_verified() {
    let srv = HttpServer::start_tls(|_| Reply::status(200, "tls ok")).await;
    let action = Action::HttpGet {
        scheme: "https".into(),
        host: Some("localhost".into()),
        port: IntOrString::Int(srv.port as i32),
        path: "/".into(),
        headers: vec![],
    };
    let r = run_probe_action(&action, &no_exec_target(), 5 * SECOND).await;
    assert_eq!((r.outcome, r.output.as_str()), (Outcome::Success, "tls ok"));
}

#[tokio::test]
async fn a6_tcp_open_port_is_healthy_even_if_http_fails() {
    let srv = HttpServer::start(|_| Reply::status(500, "")).await;
    let r = run_tcp("127.0.0.1", srv.port, SECOND).await;
    assert_eq!(r.outcome, Outcome::Success);
    let port = closed_port().await;
    let r = run_tcp("127.0.0.1", port, SECOND).await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: false });
    assert_eq!(
        r.output,
        format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
    );
}

#[tokio::test]
async fn a20_grpc_serving_is_success() {
    let srv = GrpcServer::start(|svc| if svc.is_empty() { Ok(1) } else { Ok(2) }).await;
    let (o, out) = grpc::check("127.0.0.1", srv.port, "", 5 * SECOND).await;
    assert_eq!((o, out.as_str()), (Outcome::Success, "service healthy"));
    let (o, out) = grpc::check("127.0.0.1", srv.port, "db", 5 * SECOND).await;
    assert_eq!(o, Outcome::Failure { timed_out: false });
    assert_eq!(out, "service unhealthy (responded with \"NOT_SERVING\")");
}

#[tokio::test]
async fn grpc_status_errors_use_upstream_messages() {
    let srv = GrpcServer::start(|_| Err(12)).await;
    let (o, out) = grpc::check("127.0.0.1", srv.port, "", 5 * SECOND).await;
    assert_eq!(o, Outcome::Failure { timed_out: false });
    assert_eq!(
        out,
        "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): not here"
    );
    let srv = GrpcServer::start(|_| Err(5)).await;
    let (_, out) = grpc::check("127.0.0.1", srv.port, "", 5 * SECOND).await;
    assert_eq!(
        out,
        "error: health rpc probe failed: rpc error: code = NotFound desc = not here"
    );
}

#[tokio::test]
async fn a21_grpc_closed_port_fails() {
    let port = closed_port().await;
    let action = Action::Grpc {
        port: port as i32,
        service: String::new(),
    };
    let r = run_probe_action(&action, &no_exec_target(), SECOND).await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: false });
    assert!(
        r.output.starts_with(&format!(
            "error: failed to connect service at \"127.0.0.1:{port}\""
        )),
        "{}",
        r.output
    );
}

#[tokio::test(start_paused = true)]
async fn exec_exit_codes_timeouts_and_errors_on_the_fake_runtime() {
    let rt = TestRuntime::new(SystemTime::UNIX_EPOCH);
    rt.fake.script(
        "c",
        FakeScript::default()
            .exec(
                ["cat", "/tmp/health"],
                ExecScript::exit(1).output("cat: no such file"),
            )
            .exec(["true"], ExecScript::ok().output("fine"))
            .exec(
                ["sh", "-c", "sleep 10"],
                ExecScript::ok().taking(Duration::from_secs(10)),
            ),
    );
    let (id, _) = rt.start("pod", "c").await;
    let t = target(rt.clone(), id);
    let exec = |c: &[&str]| Action::Exec { command: cmd(c) };
    let r = run_probe_action(&exec(&["true"]), &t, SECOND).await;
    assert_eq!((r.outcome, r.output.as_str()), (Outcome::Success, "fine"));
    let r = run_probe_action(&exec(&["cat", "/tmp/health"]), &t, SECOND).await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: false });
    assert_eq!(r.output, "cat: no such file");
    let r = run_probe_action(&exec(&["sh", "-c", "sleep 10"]), &t, SECOND).await;
    assert_eq!(r.outcome, Outcome::Failure { timed_out: true });
    assert_eq!(r.output, "command \"sh -c sleep 10\" timed out");
    assert_eq!(r.latency, SECOND);
    let gone = target(rt.clone(), ContainerId("missing".into()));
    let r = run_probe_action(&exec(&["true"]), &gone, SECOND).await;
    assert_eq!(r.outcome, Outcome::Error);
}
