//! Acceptance tests of `kubectl exec`, `cp`, `attach` and eviction (`drain`)
//! against `podvisor up`, driven only through the real `kubectl` (kubectl-wire.md §4.10,
//! §4.11).

#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(60);

/// Runs kubectl with an empty stdin.
fn run(c: &Cluster, args: &[&str]) -> Output {
    c.kubectl_with_input(args, b"")
}

/// `kubectl get --raw <path>`.
fn get_raw(c: &Cluster, path: &str) -> Output {
    run(c, &["get", "--raw", path])
}

/// Asserts that the command's stderr contains `needle`, showing the stderr when not.
#[track_caller]
fn assert_stderr_contains(out: &Output, needle: &str) {
    assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
}

fn pod(name: &str, marker: &str) -> String {
    pods::shell_pod(name, "sleep 1000 & wait", marker)
        .labels(&format!("app: {name}"))
        .container_yaml("    env:\n    - {name: GREETING, value: \"hello from env\"}\n")
        .yaml()
}

#[test]
fn exec_streams_output_stdin_and_exit_codes() {
    let _g = serial();
    let c = Cluster::up();
    let m = marker("exec");
    c.apply(&pod("p", &m));
    c.wait_pod_ready("p", LONG);

    let out = run(&c, &["exec", "p", "--", "echo", "hi"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");

    // A non-zero exit: kubectl prints the code and exits with it (kubectl-wire.md §4.10:
    // `false` gave rc=1).
    let out = run(&c, &["exec", "p", "--", "false"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("command terminated with exit code 1"),
        "stderr: {}",
        text(&out.stderr)
    );
    let out = run(
        &c,
        &[
            "exec",
            "p",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    let err = text(&out.stderr);
    assert!(err.contains("err\n"), "{err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");

    // Stdin is streamed and closed.
    let out = c.kubectl_with_input(&["exec", "-i", "p", "--", "cat"], b"x\n");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "x\n");
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = c.kubectl_with_input(&["exec", "-i", "p", "--", "sh", "-c", "cat | wc -c"], &big);
    assert_eq!(
        text(&out.stdout).trim(),
        "300000",
        "stderr: {}",
        text(&out.stderr)
    );

    // The container's environment and explicit container selection.
    let out = run(
        &c,
        &[
            "exec",
            "p",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo $GREETING",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        "hello from env\n",
        "stderr: {}",
        text(&out.stderr)
    );

    // `-it` gives the command a terminal (kubectl needs one itself: `script` provides it).
    let kubeconfig = c.kubeconfig();
    let out = Command::new("script")
        .args([
            "-qec",
            "stty cols 91 rows 27; kubectl exec -it p -- sh -c 'test -t 0 && test -t 1 && echo on-a-tty; stty size'",
            "/dev/null",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let out = wait_output(out, LONG);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown} {}", text(&out.stderr));
    // (The terminal may echo a control character kubectl sends when its own stdin ends.)
    assert!(shown.contains("on-a-tty\r\n"), "{shown:?}");
    assert!(shown.contains("27 91\r\n"), "{shown:?}");

    // Errors, as upstream words them.
    let out = run(&c, &["exec", "nope", "--", "true"]);
    assert!(!out.status.success());
    assert_stderr_contains(&out, "pods \"nope\" not found");
    let out = run(&c, &["exec", "p", "-c", "nope", "--", "true"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
    let out = get_raw(
        &c,
        "/api/v1/namespaces/default/pods/p/exec?command=true&container=nope&stdout=true",
    );
    assert_stderr_contains(&out, "container nope is not valid for pod p");
    let out = get_raw(
        &c,
        "/api/v1/namespaces/default/pods/p/exec?container=main&stdout=true",
    );
    assert_stderr_contains(
        &out,
        "you must specify at least one command for the container",
    );
    let out = run(&c, &["exec", "p", "--", "no-such-binary-pv"]);
    assert!(!out.status.success());
    assert_stderr_contains(&out, "executable file not found");

    // A completed pod.
    c.apply(
        &pods::shell_pod("done", "true", &marker("done"))
            .policy("Never")
            .yaml(),
    );
    c.wait_pod_phase("done", "Succeeded", LONG);
    let out = run(&c, &["exec", "done", "--", "true"]);
    assert!(!out.status.success());
    assert_stderr_contains(
        &out,
        "cannot exec into a container in a completed pod; current phase is Succeeded",
    );
    let out = get_raw(
        &c,
        "/api/v1/namespaces/default/pods/done/exec?command=true&stdout=true",
    );
    assert_stderr_contains(
        &out,
        "cannot exec into a container in a completed pod; current phase is Succeeded",
    );

    // `kubectl cp` from the pod (tar runs in the container).
    let src = c.dir.path().join("cp-source.txt");
    std::fs::write(&src, "copied content\n").expect("write");
    let dst = c.dir.path().join("cp-dest.txt");
    let src_arg = format!("p:{}", src.display());
    let out = run(&c, &["cp", &src_arg, dst.to_str().expect("utf8")]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&dst).expect("copied"),
        "copied content\n"
    );
    // And into the pod (tar reads the archive from stdin).
    let up = c.dir.path().join("cp-uploaded.txt");
    let up_arg = format!("p:{}", up.display());
    let out = run(&c, &["cp", src.to_str().expect("utf8"), &up_arg]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&up).expect("uploaded"),
        "copied content\n"
    );

    // Ending the session (kubectl killed) kills the command in the container.
    let container_pids = find_pids(&m);
    assert!(!container_pids.is_empty());
    let em = marker("exec-session");
    let child = c.kubectl_spawn(&["exec", "p", "--", "sh", "-c", "sleep 1000; true", &em]);
    let pid = wait_one_pid(&em, LONG);
    let mut child = child;
    child.kill().expect("kill kubectl");
    let _ = child.wait();
    wait_dead(pid, LONG);
    // The container itself is untouched.
    assert_eq!(
        find_pids(&m),
        container_pids,
        "the container's processes still run"
    );
}

#[test]
fn attach_and_eviction() {
    let _g = serial();
    let c = Cluster::up();
    let ticks = "i=0; while true; do echo tick $i; echo tock $i >&2; i=$((i+1)); sleep 0.2; done";
    c.apply(
        &pods::shell_pod("talker", ticks, &marker("talker"))
            .labels("app: talker")
            .yaml(),
    );
    c.wait_pod_ready("talker", LONG);

    // attach: the output from now on.
    let mut child = c
        .kubectl_command(&["attach", "talker"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn attach");
    let rx = stdout_lines(&mut child);
    let first = rx.recv_timeout(LONG).expect("attach printed a line");
    let second = rx.recv_timeout(LONG).expect("attach printed another line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("tick "), "{first}");
    assert!(second.starts_with("tick "), "{second}");
    let n: u64 = first[5..].parse().expect("a counter");
    let n2: u64 = second[5..].parse().expect("a counter");
    assert_eq!(n2, n + 1, "consecutive lines");

    // Eviction by a direct POST: the pod is deleted gracefully.
    let body = c.dir.path().join("eviction.json");
    std::fs::write(
        &body,
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"talker","namespace":"default"},"deleteOptions":{"gracePeriodSeconds":1}}"#,
    )
    .expect("write");
    // A POST of the eviction above.
    let evict = || {
        run(
            &c,
            &[
                "create",
                "--raw",
                "/api/v1/namespaces/default/pods/talker/eviction",
                "-f",
                body.to_str().expect("utf8"),
            ],
        )
    };
    let out = evict();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Success"),
        "{}",
        text(&out.stdout)
    );
    c.wait_for("talker deleted", LONG, || !c.pod_exists("talker"));
    let out = evict();
    assert!(
        text(&out.stderr).contains("NotFound") || text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );

    // `kubectl drain` evicts through pods/eviction.
    let m = marker("drain");
    c.apply(&pod("drained", &m));
    c.wait_pod_ready("drained", LONG);
    let out = run(
        &c,
        &[
            "drain",
            &c.node,
            "--force",
            "--pod-selector=app=drained",
            "--timeout=60s",
            "--grace-period=1",
        ],
    );
    assert!(
        out.status.success(),
        "stdout: {} stderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("evicting pod default/drained"), "{all}");
    assert!(!c.pod_exists("drained"));
    c.wait_for("the drained pod's processes to end", LONG, || {
        find_pids(&m).is_empty()
    });
}
