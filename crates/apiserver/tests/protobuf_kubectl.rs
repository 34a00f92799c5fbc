//! End to end with the real kubectl: its generator commands send protobuf bodies
//! (`Content-Type: application/vnd.kubernetes.protobuf`). Each must succeed, and the
//! object read back must equal the one created from the same command's JSON
//! (`--dry-run=client -o json` piped into `kubectl create -f`, which sends JSON).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use podvisor_apiserver::testing::memory_server;
use podvisor_testkit::json::without_server_fields;
use serde_json::Value;
use tokio::process::Command;

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
    home: PathBuf,
}

struct Output {
    stdout: String,
    stderr: String,
}

impl Kubectl {
    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("kubectl");
        // Global flags first: everything after a `--` belongs to the container command.
        cmd.arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap_or_else(|e| panic!("kubectl {args:?} could not start: {e}"));
        let output = Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nstdout: {}\nstderr (last 3000 bytes): {}",
            out.status,
            output.stdout,
            tail(&output.stderr)
        );
        output
    }

    /// `kubectl create -f file --validate=false` (after `extra` flags).
    async fn create_file(&self, extra: &[&str], file: &std::path::Path) -> Output {
        let file = file.to_str().expect("utf-8");
        let mut args = vec!["create"];
        args.extend_from_slice(extra);
        args.extend(["-f", file, "--validate=false"]);
        self.run(&args).await
    }

    async fn get_json(&self, resource: &str, name: &str, namespace: &str) -> Value {
        let out = self
            .run(&["get", resource, name, "-n", namespace, "-o", "json"])
            .await;
        serde_json::from_str(&out.stdout).expect("kubectl get -o json prints JSON")
    }
}

fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(3000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn kubeconfig(dir: &Path, port: u16, ca_pem: &str, token: &str) -> PathBuf {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: podvisor\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: podvisor\n  context:\n    cluster: podvisor\n    user: admin\n    namespace: default\ncurrent-context: podvisor\n"
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// Drops what legitimately differs between two creations of the same object.
fn normalize(v: Value) -> Value {
    let mut v = without_server_fields(v);
    if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
        // Allocated per Service.
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    // The service-account volume's name ends in five random characters per pod.
    let text = v.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("kube-api-access-") {
        let end = i + "kube-api-access-".len();
        out.push_str(&rest[..end]);
        out.push_str("xxxxx");
        rest = rest.get(end + 5..).unwrap_or("");
    }
    out.push_str(rest);
    serde_json::from_str(&out).expect("normalized JSON")
}

fn sent_protobuf(out: &Output) -> bool {
    out.stderr
        .lines()
        .any(|l| l.contains("Content-Type") && l.contains("application/vnd.kubernetes.protobuf"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_generators_send_protobuf_and_match_json() {
    let srv = memory_server().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let srv = srv.clone();
        tokio::spawn(async move {
            srv.serve(listener, async {
                let _ = stop_rx.await;
            })
            .await
        })
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let kubectl = Kubectl {
        kubeconfig: kubeconfig(dir.path(), port, &srv.ca_pem(), &srv.admin_token()),
        cache: dir.path().join("cache"),
        home: dir.path().to_path_buf(),
    };

    // (generator args, resource, name, sends protobuf): created in `default`. The
    // `create` generators use client-go's typed clients (protobuf bodies); `run` and
    // `expose` go through the generic resource helper, which sends JSON (kubectl-wire
    // §4.15), so for them this checks that JSON still works next to protobuf.
    let generators: [(&[&str], &str, &str, bool); 5] = [
        (
            &["create", "configmap", "c", "--from-literal=a=b"],
            "configmap",
            "c",
            true,
        ),
        (
            &["create", "secret", "generic", "s", "--from-literal=k=v"],
            "secret",
            "s",
            true,
        ),
        (
            &["create", "deployment", "web", "--image=busybox"],
            "deployment",
            "web",
            true,
        ),
        (
            &["run", "x", "--image=busybox", "--", "sleep", "100"],
            "pod",
            "x",
            false,
        ),
        (
            &["expose", "deployment", "web", "--port=80"],
            "service",
            "web",
            false,
        ),
    ];

    let out = kubectl.run(&["create", "namespace", "dev", "-v=8"]).await;
    assert!(
        sent_protobuf(&out),
        "kubectl did not send protobuf:\n{}",
        tail(&out.stderr)
    );
    assert!(
        out.stdout.contains("namespace/dev created"),
        "{}",
        out.stdout
    );
    kubectl.run(&["create", "namespace", "jsonpath"]).await;

    // The JSON twin of `create namespace dev`.
    let ns_json = kubectl
        .run(&[
            "create",
            "namespace",
            "dev-json",
            "--dry-run=client",
            "-o",
            "json",
        ])
        .await;
    let ns_file = dir.path().join("ns.json");
    std::fs::write(&ns_file, &ns_json.stdout).expect("write");
    kubectl.create_file(&[], &ns_file).await;
    let mut via_pb = normalize(kubectl.get_json("namespace", "dev", "default").await);
    let mut via_json = normalize(kubectl.get_json("namespace", "dev-json", "default").await);
    for (v, name) in [(&mut via_pb, "dev"), (&mut via_json, "dev-json")] {
        let meta = v["metadata"].as_object_mut().expect("metadata");
        assert_eq!(meta.remove("name"), Some(Value::String(name.into())));
        let labels = meta
            .get_mut("labels")
            .and_then(Value::as_object_mut)
            .expect("labels");
        assert_eq!(
            labels.remove("kubernetes.io/metadata.name"),
            Some(Value::String(name.into()))
        );
    }
    assert_eq!(
        via_pb, via_json,
        "namespace differs between protobuf and JSON"
    );

    for (i, (args, resource, name, protobuf)) in generators.iter().enumerate() {
        // The generator itself, in `default`.
        let mut pb_args: Vec<&str> = args.to_vec();
        let sep = pb_args
            .iter()
            .position(|a| *a == "--")
            .unwrap_or(pb_args.len());
        pb_args.insert(sep, "-v=8");
        let out = kubectl.run(&pb_args).await;
        assert_eq!(
            sent_protobuf(&out),
            *protobuf,
            "kubectl {args:?}: unexpected body encoding:\n{}",
            tail(&out.stderr)
        );
        assert!(
            out.stdout.contains("created") || out.stdout.contains("exposed"),
            "{}",
            out.stdout
        );

        // JSON path, in `jsonpath`: the same command's object, created from JSON.
        let mut json_args: Vec<&str> = args.to_vec();
        let sep = json_args
            .iter()
            .position(|a| *a == "--")
            .unwrap_or(json_args.len());
        for extra in ["-n", "jsonpath", "--dry-run=client", "-o", "json"]
            .iter()
            .rev()
        {
            json_args.insert(sep, extra);
        }
        let printed = kubectl.run(&json_args).await;
        let file = dir.path().join(format!("obj-{i}.json"));
        std::fs::write(&file, &printed.stdout).expect("write");
        kubectl.create_file(&["-n", "jsonpath"], &file).await;

        let via_pb = normalize(kubectl.get_json(resource, name, "default").await);
        let via_json = normalize(kubectl.get_json(resource, name, "jsonpath").await);
        assert_eq!(
            via_pb, via_json,
            "{resource}/{name} differs between the protobuf and the JSON path"
        );
    }

    // Reads by a protobuf-preferring client (kubectl describe) still work.
    let described = kubectl.run(&["describe", "deployment", "web"]).await;
    assert!(described.stdout.contains("busybox"), "{}", described.stdout);
    // describe reads with `Accept: application/vnd.kubernetes.protobuf,application/json`,
    // so these objects (and the EventLists describe fetches) reach client-go as protobuf.
    for (what, expect) in [
        (["pod", "x"], "sleep"),
        (["service", "web"], "80/TCP"),
        (["secret", "s"], "k:"),
        (["configmap", "c"], "a:"),
        (["namespace", "dev"], "Active"),
    ] {
        let out = kubectl.run(&["describe", what[0], what[1], "-v=8"]).await;
        assert!(
            out.stdout.contains(expect),
            "describe {what:?}:\n{}",
            out.stdout
        );
        assert!(
            out.stderr
                .contains("Content-Type: application/vnd.kubernetes.protobuf"),
            "describe {what:?} got no protobuf answer:\n{}",
            tail(&out.stderr)
        );
    }

    // `kubectl debug node/…` creates a Pod with the typed client: a protobuf Pod with
    // host namespaces, a hostPath volume, a toleration and an explicit nodeName.
    let node = dir.path().join("node.json");
    std::fs::write(
        &node,
        r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1","labels":{"kubernetes.io/hostname":"node-1"}}}"#,
    )
    .expect("write");
    kubectl.create_file(&[], &node).await;
    let out = kubectl
        .run(&[
            "debug",
            "node/node-1",
            "--image=busybox",
            "--profile=legacy",
            "-v=8",
        ])
        .await;
    assert!(
        sent_protobuf(&out),
        "kubectl debug did not send protobuf:\n{}",
        tail(&out.stderr)
    );
    let pods = kubectl
        .run(&["get", "pods", "-n", "default", "-o", "json"])
        .await;
    let pods: Value = serde_json::from_str(&pods.stdout).expect("JSON");
    let debug_pod = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| {
            p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("node-debugger-"))
        })
        .unwrap_or_else(|| panic!("no debugger pod in {pods}"));
    let spec = &debug_pod["spec"];
    assert_eq!(spec["nodeName"], "node-1", "{spec}");
    assert_eq!(spec["hostPID"], true, "{spec}");
    assert_eq!(spec["hostNetwork"], true, "{spec}");
    assert_eq!(spec["hostIPC"], true, "{spec}");
    assert_eq!(spec["restartPolicy"], "Never", "{spec}");
    assert_eq!(spec["volumes"][0]["hostPath"]["path"], "/", "{spec}");
    assert_eq!(spec["tolerations"][0]["operator"], "Exists", "{spec}");
    assert_eq!(spec["containers"][0]["image"], "busybox", "{spec}");
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0]["mountPath"], "/host",
        "{spec}"
    );

    let out = kubectl.run(&["describe", "node", "node-1", "-v=8"]).await;
    assert!(out.stdout.contains("node-debugger-"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("Content-Type: application/vnd.kubernetes.protobuf")
    );

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("server stops")
        .expect("server task")
        .expect("serve");
}
