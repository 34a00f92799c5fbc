//! Hardening of `podvisor up` and `podvisor agent` as an operator meets it: nothing left
//! running after a clean stop, Secrets unreadable on disk, revoked tokens refused at once,
//! agents that never send their token to an unverified server.
//!
//! Real binary, real processes, kubectl; every test has its own data dir and port.

#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn pod(name: &str, script: &str, m: &str) -> String {
    pods::shell_pod(name, script, m).policy("Never").yaml()
}

/// Live processes whose command line names `needle`, with their command lines.
fn processes_naming(needle: &str) -> Vec<(i32, String)> {
    find_pids(needle)
        .into_iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            (p, cmd)
        })
        .collect()
}

/// After pods that failed to start, exited 1, exited 0 and kept running, a Ctrl-C on `up`
/// ends every process it started: no supervisor (spare or not) and no container is left.
#[test]
fn a_clean_stop_of_up_leaves_no_process_behind() {
    let _g = serial();
    let mut c = Cluster::up();
    let m = marker("stop");
    c.apply(&format!(
        "{}---\n{}---\n{}",
        pod("exit0", "exit 0", &m),
        pod("exit1", "exit 1", &m),
        pod("sleeper", "sleep 1000", &m)
    ));
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: nostart
spec:
  restartPolicy: Never
  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["/no/such/binary"]
"#,
    );
    c.wait_pod_phase("exit0", "Succeeded", Duration::from_secs(60));
    c.wait_pod_phase("exit1", "Failed", Duration::from_secs(60));
    c.wait_pod_ready("sleeper", Duration::from_secs(60));
    c.wait_for("nostart to fail", Duration::from_secs(60), || {
        c.pod_field("nostart", "{.status.phase}").as_deref() == Some("Failed")
            || c.pod_field(
                "nostart",
                "{.status.containerStatuses[0].state.waiting.reason}",
            )
            .is_some_and(|r| !r.is_empty())
    });
    let data = c.dir.path().join("data").display().to_string();
    assert!(
        !processes_naming(&data).is_empty(),
        "supervisors run under the data dir"
    );

    c.up.signal(2);
    let code = c.up.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", tail(&c.up.log_text(), 30));
    // Spares check their owner about once a second; give every process a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = processes_naming(&data)
            .into_iter()
            .chain(processes_naming(&m))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left after a clean stop: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kill -9` of a running pod's sandbox supervisor: as the kubelet does when a sandbox
/// dies, a `SandboxChanged` event, a new sandbox (a new supervisor), the container
/// restarted with restartCount 1 and the killed instance as its lastState.
#[test]
fn a_pod_whose_supervisor_is_killed_gets_a_new_sandbox() {
    let _g = serial();
    let mut c = Cluster::up();
    let m = marker("sandbox");
    c.apply(
        &pod("phoenix", "sleep 1000", &m).replace("restartPolicy: Never", "restartPolicy: Always"),
    );
    c.wait_pod_ready("phoenix", Duration::from_secs(60));
    let uid = c.pod_field("phoenix", "{.metadata.uid}").expect("uid");
    let record = c
        .dir
        .path()
        .join("data/runtime/sandboxes")
        .join(&uid)
        .join("supervisor.json");
    let supervisor = || -> i32 {
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["host_pid"].as_i64())
            .unwrap_or(0) as i32
    };
    let old = supervisor();
    assert!(old > 0 && alive(old), "no live supervisor in {record:?}");
    let container = wait_one_pid(&m, Duration::from_secs(10));
    let _ = std::process::Command::new("kill")
        .args(["-9", &old.to_string()])
        .status();
    wait_dead(container, Duration::from_secs(10));
    c.wait_for(
        "the container restarted in a new sandbox",
        Duration::from_secs(60),
        || {
            c.pod_field(
                "phoenix",
                "{.status.containerStatuses[0].restartCount}/{.status.containerStatuses[0].ready}",
            )
            .as_deref()
                == Some("1/true")
        },
    );
    let new = supervisor();
    assert!(new > 0 && new != old && alive(new), "new supervisor {new}");
    assert_eq!(find_pids(&m).len(), 1, "one container runs again");
    assert_eq!(
        c.pod_field("phoenix", "{.status.phase}").as_deref(),
        Some("Running")
    );
    assert_eq!(
        c.pod_field(
            "phoenix",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        )
        .as_deref(),
        Some("137")
    );
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=phoenix,reason=SandboxChanged",
        "-o",
        "jsonpath={.items[*].type}: {.items[*].message}",
    ]);
    assert_eq!(
        events,
        "Normal: Pod sandbox changed, it will be killed and re-created."
    );
    c.up.signal(2);
    assert_eq!(c.up.wait_exit(Duration::from_secs(60)), Some(0));
}

/// A spare supervisor holds no pod: SIGTERM ends it (a sandbox's supervisor outlives its
/// agent, a spare has nothing to keep).
#[test]
fn sigterm_ends_a_spare_supervisor() {
    let _g = serial();
    let mut c = Cluster::up();
    let data = c.dir.path().join("data").display().to_string();
    let mut spare = None;
    c.wait_for("a spare supervisor", Duration::from_secs(30), || {
        spare = processes_naming(&data)
            .into_iter()
            .find(|(_, cmd)| cmd.contains("/.spare-"));
        spare.is_some()
    });
    let (pid, _) = spare.expect("spare");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    wait_dead(pid, Duration::from_secs(5));
    c.up.signal(2);
    assert_eq!(c.up.wait_exit(Duration::from_secs(60)), Some(0));
}

/// Secrets are encrypted at rest in `up` by default (upstream's aescbc format, the key in the
/// data dir), readable through the API, and the data dir and its secrets are private.
#[test]
fn secrets_are_encrypted_at_rest_and_the_data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let _g = serial();
    let mut c = Cluster::up();
    let plain = "very-secret-value-4711";
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        &format!("--from-literal=k={plain}"),
    ]);
    let got = c.kubectl_ok(&["get", "secret", "s1", "-o", "jsonpath={.data.k}"]);
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
    assert_eq!(got.trim(), encoded);
    let data = c.dir.path().join("data");
    // Stop so every byte is on disk, then look for the value in every file of the data dir.
    c.up.signal(2);
    assert_eq!(c.up.wait_exit(Duration::from_secs(60)), Some(0));
    let mut found_cipher = false;
    for name in ["store.redb", "store.redb.wal"] {
        let bytes = std::fs::read(data.join(name)).expect("store file");
        for needle in [plain.as_bytes(), encoded.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{name} holds the secret in the clear"
            );
        }
        found_cipher |= bytes
            .windows(b"k8s:enc:aescbc:v1:key1:".len())
            .any(|w| w == b"k8s:enc:aescbc:v1:key1:");
    }
    assert!(found_cipher, "no aescbc value in the store files");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data dir");
    for f in [
        "store.redb",
        "store.redb.wal",
        "tokens.csv",
        "encryption-config.yaml",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    // The key survives a restart: the secret is still readable.
    c.restart();
    let got = c.kubectl_ok(&["get", "secret", "s1", "-o", "jsonpath={.data.k}"]);
    assert_eq!(got.trim(), encoded);
}

/// A token removed from the token file is refused at its very next request, with no
/// restart and no unknown token needed to trigger a reload.
#[test]
fn a_revoked_token_is_refused_at_once() {
    let _g = serial();
    let c = Cluster::up();
    let data = c.dir.path().join("data");
    let (token, _) = steps::node_tokens(&data, "w1");
    let with_token = |t: &str| {
        kubectl(
            &c.kubeconfig(),
            &[
                "get",
                "--raw",
                "/api/v1/nodes?fieldSelector=metadata.name%3Dw1",
                &format!("--token={t}"),
            ],
        )
    };
    podvisor_testkit::assert_success(&with_token(&token), "a fresh token");
    let file = data.join("tokens.csv");
    let text = std::fs::read_to_string(&file).expect("tokens");
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&token))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, kept).expect("write tokens");
    let refused = with_token(&token);
    assert!(!refused.status.success(), "a revoked token still works");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Unauthorized"), "{err}");
    // SIGHUP reloads the token file; it does not end `up`.
    c.up.signal(1);
    c.wait_for("the SIGHUP reload", Duration::from_secs(10), || {
        c.up.log_text().contains("token file reloaded")
    });
    assert!(alive(c.up.pid()), "SIGHUP ended up");
    c.kubectl_ok(&["get", "nodes"]);
}

/// An impostor TLS server (self-signed, `openssl s_server`) that prints whatever a client
/// sends it.
struct Impostor {
    child: std::process::Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Impostor {
    fn start(dir: &std::path::Path) -> Impostor {
        let key = dir.join("impostor.key");
        let crt = dir.join("impostor.crt");
        podvisor_testkit::run_ok(
            std::process::Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec"])
                .args([
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-days",
                    "1",
                ])
                .args([
                    "-subj",
                    "/CN=impostor",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&crt),
        );
        let port = free_port();
        let out = dir.join("impostor.out");
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-accept", &port.to_string()])
            .arg("-cert")
            .arg(&crt)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "impostor did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Impostor { child, port, out }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_agent(dir: &std::path::Path, name: &str, server: &str, extra: &[&str]) -> Process {
    let token_file = dir.join(format!("{name}.token"));
    if !token_file.exists() {
        std::fs::write(&token_file, "node-token-that-must-not-leak-0815\n").expect("token");
    }
    let mut args: Vec<String> = vec![
        "agent".into(),
        "--server".into(),
        server.into(),
        "--token-file".into(),
        token_file.display().to_string(),
        "--node-name".into(),
        name.into(),
        "--node-ip".into(),
        "127.0.0.3".into(),
        "--data-dir".into(),
        dir.join(name).display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Process::start(name, &args, dir)
}

/// Without a CA file or pin the agent refuses to start; with a pin that the impostor's CA
/// does not match it refuses too; in neither case does the impostor see the token.
#[test]
fn an_agent_never_sends_its_token_to_an_unverified_server() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let impostor = Impostor::start(dir.path());
    let url = format!("https://127.0.0.1:{}", impostor.port);
    let mut bare = run_agent(dir.path(), "bare", &url, &[]);
    let code = bare.wait_exit(Duration::from_secs(20));
    assert!(
        matches!(code, Some(c) if c != 0),
        "agent without a CA ran on: {code:?}"
    );
    assert!(
        bare.log_text().contains("--ca-cert-hash"),
        "{}",
        bare.log_text()
    );
    let wrong_pin = format!("sha256:{}", "ab".repeat(32));
    let mut pinned = run_agent(dir.path(), "pinned", &url, &["--ca-cert-hash", &wrong_pin]);
    let code = pinned.wait_exit(Duration::from_secs(20));
    assert!(
        matches!(code, Some(c) if c != 0),
        "agent trusted the impostor: {code:?}"
    );
    assert!(
        pinned.log_text().contains("no CA matching --ca-cert-hash"),
        "{}",
        pinned.log_text()
    );
    std::thread::sleep(Duration::from_millis(200));
    let seen = impostor.received();
    assert!(
        !seen.contains("node-token-that-must-not-leak") && !seen.contains("Authorization"),
        "the impostor received: {seen}"
    );
}

/// `podvisor token create node` prints the CA pin; an agent with only that pin (no CA file,
/// an empty data dir) verifies the real server, saves its CA and joins.
#[test]
fn an_agent_joins_with_the_printed_ca_pin() {
    let _g = serial();
    let c = Cluster::up();
    let data = c.dir.path().join("data");
    let out = std::process::Command::new(binary())
        .args(["token", "create", "node", "pinned-worker", "--data-dir"])
        .arg(&data)
        .output()
        .expect("token create");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pin = stderr
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no pin printed: {stderr}"))
        .to_string();
    let token_file = c.dir.path().join("pinned-worker.token");
    std::fs::write(&token_file, &out.stdout).expect("token");
    let url = format!("https://127.0.0.1:{}", c.port);
    let mut agent = run_agent(
        c.dir.path(),
        "pinned-worker",
        &url,
        &["--ca-cert-hash", &pin],
    );
    c.wait_for(
        "the pinned agent's node to be Ready",
        Duration::from_secs(60),
        || {
            c.kubectl(&[
                "get",
                "node",
                "pinned-worker",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .stdout
                == b"True"
        },
    );
    assert!(c.dir.path().join("pinned-worker").join("ca.crt").exists());
    agent.signal(15);
    agent.wait_exit(Duration::from_secs(30));
}

/// `up` raises its open-file soft limit to the hard limit at start: many slow clients must
/// not run it out of descriptors.
#[test]
fn up_raises_its_open_file_limit_to_the_hard_limit() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let script = format!(
        "ulimit -S -n 512 && exec {} up --data-dir {} --listen 127.0.0.1:{port} --node-name lim",
        binary().display(),
        dir.path().join("data").display()
    );
    let log = std::fs::File::create(dir.path().join("up.log")).expect("log");
    let mut child = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("PODVISOR_POD_NETWORK", "false")
        .stdout(log.try_clone().expect("clone"))
        .stderr(log)
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let limits = || std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let open_files = |text: &str| -> Option<(String, String)> {
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        let mut f = line["Max open files".len()..].split_whitespace();
        Some((f.next()?.to_string(), f.next()?.to_string()))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    while Instant::now() < deadline {
        // After exec the process is podvisor; wait until it has raised the limit.
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(" up")
            || String::from_utf8_lossy(&cmd).contains("\0up\0")
        {
            seen = open_files(&limits());
            if let Some((soft, hard)) = &seen
                && soft == hard
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let _ = child.wait();
    let (soft, hard) = seen.expect("read the limits of up");
    assert_eq!(soft, hard, "soft open-file limit not raised");
    assert_ne!(soft, "512");
}

/// `up --node-ip` with an address that is not loopback, in a network namespace made here:
/// the API server dials the node's InternalIP for logs and exec, and the agent listens
/// there, over TLS with a certificate for that IP whose hash its Node publishes.
#[test]
fn logs_and_exec_work_with_a_non_loopback_node_ip() {
    let _g = serial();
    let ip = "10.250.0.1";
    let ns = NetNs::new("harden").with_lo_addr(ip);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("up.log")).expect("log");
    let mut up = ns
        .command(binary().to_str().expect("utf8"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:6443",
            "--node-name",
            "nsnode",
            "--node-ip",
            ip,
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("PODVISOR_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("clone"))
        .stderr(log)
        .spawn()
        .expect("spawn up");
    let kubeconfig = data.join("kubeconfig");
    let kubectl = |args: &[&str]| {
        ns.command("kubectl")
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("kubectl")
    };
    let up_log = || std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !up_log().contains("podvisor is up") {
        assert!(Instant::now() < deadline, "up did not start:\n{}", up_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = marker("nsip");
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(&manifest, pod("talker", "echo said-hello; sleep 1000", &m)).expect("write");
    podvisor_testkit::assert_success(
        &kubectl(&["apply", "-f", manifest.to_str().expect("utf8")]),
        "kubectl apply",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let logs = loop {
        let out = kubectl(&["logs", "talker"]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("said-hello") {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "kubectl logs never worked: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&up_log(), 20)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(logs.contains("said-hello"));
    let out = kubectl(&["exec", "talker", "--", "echo", "exec-works"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("exec-works"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = kubectl(&[
        "get",
        "node",
        "nsnode",
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    assert_eq!(String::from_utf8_lossy(&addr.stdout), ip);
    // The agent serves TLS with a certificate for the node's IP and hostname, whose hash
    // is the one its Node publishes (the API server accepts no other).
    let node_field = |path: &str| {
        let out = kubectl(&["get", "node", "nsnode", "-o", &format!("jsonpath={path}")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let port = node_field("{.status.daemonEndpoints.kubeletEndpoint.Port}");
    let hostname = node_field("{.status.addresses[?(@.type==\"Hostname\")].address}");
    let pin = node_field("{.metadata.annotations.node\\.podvisor\\.io/serving-cert-sha256}");
    let script = format!(
        "openssl s_client -connect {ip}:{port} </dev/null 2>/dev/null | openssl x509 -outform der > {dir}/kubelet.der \
         && openssl x509 -inform der -in {dir}/kubelet.der -noout -ext subjectAltName \
         && sha256sum {dir}/kubelet.der",
        dir = dir.path().display()
    );
    let out = ns
        .command("sh")
        .args(["-c", &script])
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "no TLS on {ip}:{port}: {text}");
    assert!(text.contains(&format!("IP Address:{ip}")), "{text}");
    assert!(text.contains(&format!("DNS:{hostname}")), "{text}");
    let sum = text.lines().last().unwrap_or_default();
    assert_eq!(format!("sha256:{}", &sum[..64.min(sum.len())]), pin);
    let _ = std::process::Command::new("kill")
        .args(["-INT", &up.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while up.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = up.kill();
    let _ = up.wait();
}
