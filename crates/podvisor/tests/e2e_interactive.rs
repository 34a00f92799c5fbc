//! Acceptance tests of the interactive workload paths (issue 25), driven only through the
//! real `kubectl` against `podvisor up` with real processes: containers with an open stdin
//! (`kubectl run --rm -i`, `kubectl attach -i`, `stdinOnce`, `tty`) and ephemeral containers
//! (`kubectl debug`, the `ephemeralcontainers` subresource). One cluster serves every case.

#![allow(clippy::disallowed_methods)]

mod common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(60);

/// Pods on the host filesystem, as `kubectl run --overrides` sets it.
const HOST: &str = r#"--overrides={"apiVersion":"v1","spec":{"runtimeClassName":"host"}}"#;

#[test]
fn interactive_through_kubectl() {
    let _g = serial();
    let c = Cluster::up();
    run_rm_i_feeds_stdin_and_deletes_the_pod(&c);
    attach_i_writes_to_an_open_stdin(&c);
    stdin_once_closes_after_the_first_attach(&c);
    tty_gives_the_container_a_terminal(&c);
    debug_adds_ephemeral_containers(&c);
}

/// `kubectl run --rm -i`: the command reads what kubectl's stdin had, its output comes
/// back, and the pod is deleted afterwards.
fn run_rm_i_feeds_stdin_and_deletes_the_pod(c: &Cluster) {
    let out = c.kubectl_with_input(
        &[
            "run",
            "reader",
            "--rm",
            "-i",
            "--restart=Never",
            "--image=busybox",
            HOST,
            "--",
            "sh",
            "-c",
            "while read l; do echo \"got:$l\"; done; echo done",
        ],
        b"one\ntwo\n",
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl run failed: {stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("got:one\ngot:two\ndone\n"),
        "stdout: {stdout}"
    );
    assert!(
        stdout.contains("pod \"reader\" deleted"),
        "stdout: {stdout}"
    );
    c.wait_for("pod reader deleted", WAIT, || !c.pod_exists("reader"));
}

/// A pod whose container `main` echoes each line of its stdin (`stdin: true`, with
/// `stdinOnce` as given) and says `eof` at the end.
fn echo_pod(name: &str, once: bool) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  runtimeClassName: host
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    stdin: true
    stdinOnce: {once}
    command: ["sh", "-c", "echo ready; while read l; do echo \"echo:$l\"; done; echo eof"]
"#
    )
}

/// `kubectl attach -i` with `line` on stdin, kept open: returns the attach and the lines
/// it prints.
fn attach_and_send(
    c: &Cluster,
    pod: &str,
    line: &str,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = c
        .kubectl_command(&["attach", "-i", pod])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn attach");
    let rx = stdout_lines(&mut child);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(line.as_bytes()).expect("write");
    stdin.flush().expect("flush");
    // Keep stdin open until the caller is done with the attach.
    std::mem::forget(stdin);
    (child, rx)
}

/// Waits for `want` among the lines of `rx`.
fn expect_line(rx: &std::sync::mpsc::Receiver<String>, want: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l == want => return,
            Ok(l) => seen.push(l),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    panic!("no line {want:?} from attach; saw {seen:?}");
}

/// `kubectl attach -i`: what it writes reaches the container; with `stdin: true` (and no
/// `stdinOnce`) stdin stays open after a client detaches, for the next one.
fn attach_i_writes_to_an_open_stdin(c: &Cluster) {
    c.apply(&echo_pod("echo", false));
    c.wait_pod_phase("echo", "Running", WAIT);
    for word in ["first", "second"] {
        let (mut child, rx) = attach_and_send(c, "echo", &format!("{word}\n"));
        expect_line(&rx, &format!("echo:{word}"));
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        c.pod_field("echo", "{.status.phase}").as_deref(),
        Some("Running")
    );
    let logs = c.kubectl_ok(&["logs", "echo"]);
    assert_eq!(logs, "ready\necho:first\necho:second\n");
    c.kubectl_ok(&["delete", "pod", "echo", "--wait=false"]);
}

/// `stdinOnce`: the first attached client's end of input is the container's end of input.
fn stdin_once_closes_after_the_first_attach(c: &Cluster) {
    c.apply(&echo_pod("once", true));
    c.wait_pod_phase("once", "Running", WAIT);
    let out = c.kubectl_with_input(&["attach", "-i", "once"], b"only\n");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("echo:only\neof\n"), "stdout: {stdout}");
    c.wait_pod_phase("once", "Succeeded", WAIT);
    assert_eq!(c.kubectl_ok(&["logs", "once"]), "ready\necho:only\neof\n");
    c.kubectl_ok(&["delete", "pod", "once", "--wait=false"]);
}

/// `tty: true`: the container's stdin and stdout are a terminal; `kubectl run -it` (run
/// under `script`, which gives kubectl a terminal) drives a shell on it.
fn tty_gives_the_container_a_terminal(c: &Cluster) {
    let cmd = format!(
        "kubectl run term --rm -i -t --restart=Never --image=busybox '{HOST}' -- sh -c 'read l; test -t 0 && test -t 1 && echo \"tty:$l\"'"
    );
    let mut child = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("KUBECONFIG", c.kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let rx = stdout_lines(&mut child);
    let mut stdin = child.stdin.take().expect("stdin");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    let mut sent = false;
    let mut got = false;
    while std::time::Instant::now() < deadline && !got {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                // kubectl's hint comes once it is attached.
                if l.contains("try pressing enter") && !sent {
                    stdin.write_all(b"typed\r").expect("write");
                    stdin.flush().expect("flush");
                    sent = true;
                }
                got |= l.contains("tty:typed");
                seen.push(l);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    drop(stdin);
    let _ = wait_output(child, WAIT);
    assert!(sent && got, "terminal session: {seen:?}");
    c.wait_for("pod term deleted", WAIT, || !c.pod_exists("term"));
}

/// `kubectl debug pod/x --image … -c dbg`: an ephemeral container runs in the running pod
/// (once, reported in `ephemeralContainerStatuses`), `-i` attaches to it; the subresource
/// refuses what upstream refuses.
fn debug_adds_ephemeral_containers(c: &Cluster) {
    c.apply(&pods::shell_pod("target", "echo up; exec sleep 600", &marker("target")).yaml());
    c.wait_pod_ready("target", WAIT);
    c.kubectl_ok(&[
        "debug",
        "pod/target",
        "--image=busybox",
        "-c",
        "dbg",
        "--target=main",
        "--",
        "sh",
        "-c",
        "echo from-dbg; echo \"$0\"",
    ]);
    c.wait_for("dbg terminated", WAIT, || {
        c.pod_field(
            "target",
            "{.status.ephemeralContainerStatuses[?(@.name==\"dbg\")].state.terminated.reason}",
        )
        .as_deref()
            == Some("Completed")
    });
    assert_eq!(
        c.kubectl_ok(&["logs", "target", "-c", "dbg"]),
        "from-dbg\nsh\n"
    );
    assert_eq!(
        c.pod_field("target", "{.status.phase}").as_deref(),
        Some("Running"),
        "the pod keeps running"
    );
    assert_eq!(
        c.pod_field("target", "{.status.containerStatuses[0].restartCount}")
            .as_deref(),
        Some("0")
    );

    // -i: kubectl waits for the container to run and attaches to its stdin.
    let out = c.kubectl_with_input(
        &[
            "debug",
            "-i",
            "pod/target",
            "--image=busybox",
            "-c",
            "dbg2",
            "--",
            "sh",
        ],
        b"echo in-$((40+2)); exit 3\n",
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("in-42"),
        "stdout: {stdout}\n{}",
        text(&out.stderr)
    );
    c.wait_for("dbg2 exit code 3", WAIT, || {
        c.pod_field(
            "target",
            "{.status.ephemeralContainerStatuses[?(@.name==\"dbg2\")].state.terminated.exitCode}",
        )
        .as_deref()
            == Some("3")
    });

    // The subresource's own rules: a name in use, a forbidden field.
    let patch = |body: &str| {
        c.kubectl(&[
            "patch",
            "pod",
            "target",
            "--subresource=ephemeralcontainers",
            "--type=strategic",
            "-p",
            body,
        ])
    };
    let out = patch(
        r#"{"spec":{"ephemeralContainers":[{"name":"main","image":"busybox","command":["true"]}]}}"#,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("spec.ephemeralContainers[2].name: Duplicate value: \"main\""),
        "{}",
        text(&out.stderr)
    );
    let out = patch(
        r#"{"spec":{"ephemeralContainers":[{"name":"web","image":"busybox","ports":[{"containerPort":80}]}]}}"#,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(
            "spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container"
        ),
        "{}",
        text(&out.stderr)
    );
    // The main resource may not change them.
    let out = c.kubectl(&[
        "patch",
        "pod",
        "target",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/ephemeralContainers"}]"#,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pod updates may not change fields"),
        "{}",
        text(&out.stderr)
    );
    c.kubectl_ok(&["delete", "pod", "target", "--wait=false"]);
}
