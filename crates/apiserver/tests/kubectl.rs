//! The real `kubectl` (1.32, via the installed dispatcher) against a started server over TLS:
//! version, api-resources, get (-o wide/yaml, -w), create, apply twice, apply --server-side,
//! label, annotate, scale, describe, wait, logs, delete variants, events, nodes, errors.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use podvisor_apiserver::ApiServer;
use podvisor_apiserver::testing::serving_memory_server;
use podvisor_testkit::{bind_pod, set_label};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

struct Env {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Env {
    fn new(port: u16, srv: &ApiServer) -> Env {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode(srv.ca_pem());
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: default\ncurrent-context: x\n",
            srv.admin_token()
        );
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, yaml).unwrap();
        Env { dir, kubeconfig }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("kubectl");
        c.args(args)
            .arg(format!(
                "--cache-dir={}",
                self.dir.path().join("cache").display()
            ))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut child = self.command(args).spawn().expect("kubectl");
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).await.unwrap();
        }
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl timed out")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (code, out, err) = self.run(args, stdin).await;
        assert_eq!(code, 0, "kubectl {args:?} failed: {out}\n{err}");
        out
    }

    async fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (code, out, err) = self.run(args, stdin).await;
        assert_ne!(code, 0, "kubectl {args:?} should fail: {out}");
        err
    }
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: nginx\n    image: nginx:1.27\n    ports:\n    - containerPort: 80\n";

fn app(tier: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  labels:\n    app: app\n    tier: {tier}\nspec:\n  containers:\n  - name: main\n    image: busybox:1.36\n    env:\n    - name: A\n      value: \"1\"\n"
    )
}

/// A stand-in node agent log endpoint: answers one request with `hello` and records the path.
async fn fake_log_endpoint() -> (u16, String, tokio::task::JoinHandle<String>) {
    use rustls::pki_types::pem::PemObject as _;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pin = podvisor_apiserver::tls::cert_hash(cert.der());
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut s = acceptor.accept(tcp).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let req = String::from_utf8_lossy(&buf[..n]).into_owned();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n").await.unwrap();
        let _ = s.shutdown().await;
        req
    });
    (port, pin, h)
}

fn kubectl_available() -> bool {
    Path::new("/usr/bin/kubectl").exists()
        || std::process::Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_suite() {
    assert!(
        kubectl_available(),
        "kubectl must be installed for this suite"
    );
    let serving = serving_memory_server().await;
    let (srv, port) = (serving.server.clone(), serving.port);
    let env = Env::new(port, &srv);
    let admin = srv.in_process_client(&srv.admin_token());
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");

    // version, api-resources
    let v = env.ok(&["version", "-o", "json"], None).await;
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "33");
    let ar = env.ok(&["api-resources"], None).await;
    for want in [
        "pods",
        "po",
        "replicasets",
        "leases",
        "endpointslices",
        "namespaces",
    ] {
        assert!(ar.contains(want), "api-resources lacks {want}:\n{ar}");
    }

    // create, get (table, wide, yaml)
    assert!(
        env.ok(&["create", "-f", "-"], Some(POD))
            .await
            .contains("pod/web created")
    );
    let t = env.ok(&["get", "pods"], None).await;
    assert!(t.starts_with("NAME"), "{t}");
    assert!(
        t.contains("READY") && t.contains("STATUS") && t.contains("RESTARTS"),
        "{t}"
    );
    assert!(
        t.contains("web") && t.contains("0/1") && t.contains("Pending"),
        "{t}"
    );
    let w = env.ok(&["get", "pods", "-o", "wide"], None).await;
    assert!(w.contains("NOMINATED NODE") && w.contains("<none>"), "{w}");
    let y = env.ok(&["get", "pod", "web", "-o", "yaml"], None).await;
    assert!(
        y.contains("terminationGracePeriodSeconds: 30") && y.contains("kind: Pod"),
        "{y}"
    );
    let names = env.ok(&["get", "pods", "-o", "name"], None).await;
    assert_eq!(names.trim(), "pod/web");
    let all = env.ok(&["get", "pods", "-A", "--show-labels"], None).await;
    assert!(all.contains("default") && all.contains("app=web"), "{all}");

    // errors
    let e = env.fails(&["create", "-f", "-"], Some(POD)).await;
    assert!(e.contains("AlreadyExists"), "{e}");
    let e = env.fails(&["get", "pod", "nope"], None).await;
    assert!(e.contains("pods \"nope\" not found"), "{e}");
    let bad = POD
        .replace("name: web", "name: Bad_Name")
        .replace("    image: nginx:1.27\n", "");
    let e = env.fails(&["create", "-f", "-"], Some(&bad)).await;
    assert!(e.contains("The Pod \"Bad_Name\" is invalid"), "{e}");
    assert!(
        e.contains("spec.containers[0].image: Required value"),
        "{e}"
    );
    let e = env
        .fails(&["-n", "nope", "create", "-f", "-"], Some(POD))
        .await;
    assert!(e.contains("namespaces \"nope\" not found"), "{e}");
    let e = env
        .fails(
            &["create", "-f", "-"],
            Some(
                &POD.replace("name: web", "name: strict")
                    .replace("    ports:", "    imagee: x\n    ports:"),
            ),
        )
        .await;
    assert!(e.contains("unknown field"), "{e}");

    // apply twice, then server-side apply
    assert!(
        env.ok(&["apply", "-f", "-"], Some(&app("v1")))
            .await
            .contains("pod/app created")
    );
    assert!(
        env.ok(&["apply", "-f", "-"], Some(&app("v2")))
            .await
            .contains("pod/app configured")
    );
    assert_eq!(
        env.ok(
            &[
                "get",
                "pod",
                "app",
                "-o",
                "jsonpath={.metadata.labels.tier}"
            ],
            None
        )
        .await,
        "v2"
    );
    assert!(
        env.ok(&["apply", "-f", "-"], Some(&app("v2")))
            .await
            .contains("unchanged")
    );
    let ssa = app("v3").replace("name: app\n", "name: ssa\n");
    assert!(
        env.ok(&["apply", "--server-side", "-f", "-"], Some(&ssa))
            .await
            .contains("serverside-applied")
    );
    assert!(
        env.ok(
            &["apply", "--server-side", "-f", "-"],
            Some(&ssa.replace("v3", "v4"))
        )
        .await
        .contains("serverside-applied")
    );
    assert_eq!(
        env.ok(
            &[
                "get",
                "pod",
                "ssa",
                "-o",
                "jsonpath={.metadata.labels.tier}"
            ],
            None
        )
        .await,
        "v4"
    );

    // label, annotate
    assert!(
        env.ok(&["label", "pod", "web", "foo=bar"], None)
            .await
            .contains("pod/web labeled")
    );
    assert!(
        env.ok(&["annotate", "pod", "web", "note=hi"], None)
            .await
            .contains("pod/web annotated")
    );
    assert_eq!(
        env.ok(
            &["get", "pods", "-l", "foo in (bar,baz)", "-o", "name"],
            None
        )
        .await
        .trim(),
        "pod/web"
    );

    // replicaset + scale
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: rs\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: rs\n  template:\n    metadata:\n      labels:\n        app: rs\n    spec:\n      containers:\n      - name: c\n        image: busybox:1.36\n";
    assert!(
        env.ok(&["create", "-f", "-"], Some(rs))
            .await
            .contains("replicaset.apps/rs created")
    );
    assert!(
        env.ok(&["scale", "rs/rs", "--replicas=3"], None)
            .await
            .contains("replicaset.apps/rs scaled")
    );
    assert_eq!(
        env.ok(
            &["get", "rs", "rs", "-o", "jsonpath={.spec.replicas}"],
            None
        )
        .await,
        "3"
    );
    assert!(
        env.ok(
            &["scale", "rs/rs", "--current-replicas=3", "--replicas=2"],
            None
        )
        .await
        .contains("scaled")
    );
    let rst = env.ok(&["get", "rs"], None).await;
    assert!(rst.contains("DESIRED") && rst.contains("rs"), "{rst}");

    // nodes, with a fake agent log endpoint
    let (log_port, pin, log_req) = fake_log_endpoint().await;
    let node = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  annotations:\n    node.podvisor.io/serving-cert-sha256: {pin}\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 127.0.0.1\n  daemonEndpoints:\n    kubeletEndpoint:\n      Port: {log_port}\n"
    );
    assert!(
        env.ok(&["create", "-f", "-"], Some(&node))
            .await
            .contains("node/n1 created")
    );
    let nodes = env.ok(&["get", "nodes"], None).await;
    assert!(
        nodes.contains("STATUS") && nodes.contains("ROLES") && nodes.contains("n1"),
        "{nodes}"
    );

    // bind web to n1, mark it Ready, and exercise logs, describe, wait
    bind_pod(&pods, "web", "n1").await.unwrap();
    pods.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "nginx", "image": "nginx:1.27", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}})),
    )
    .await
    .unwrap();
    let logs = env.ok(&["logs", "web"], None).await;
    assert_eq!(logs, "hello\n");
    let req = log_req.await.unwrap();
    assert!(
        req.starts_with("GET /containerLogs/default/web/nginx?"),
        "{req}"
    );
    assert!(
        req.contains("Authorization: Bearer") || req.contains("authorization: Bearer"),
        "{req}"
    );
    let t = env.ok(&["get", "pod", "web"], None).await;
    assert!(t.contains("1/1") && t.contains("Running"), "{t}");
    let ev = "apiVersion: v1\nkind: Event\nmetadata:\n  name: web.1\ninvolvedObject:\n  kind: Pod\n  name: web\n  namespace: default\nreason: Scheduled\nmessage: Successfully assigned default/web to n1\ntype: Normal\nsource:\n  component: default-scheduler\n";
    assert!(
        env.ok(&["create", "-f", "-"], Some(ev))
            .await
            .contains("event/web.1 created")
    );
    let evs = env.ok(&["get", "events"], None).await;
    assert!(
        evs.contains("LAST SEEN") && evs.contains("Scheduled"),
        "{evs}"
    );
    let d = env.ok(&["describe", "pod", "web"], None).await;
    assert!(
        d.contains("Name:") && d.contains("web") && d.contains("n1"),
        "{d}"
    );
    assert!(
        env.ok(
            &["wait", "--for=condition=Ready", "pod/web", "--timeout=10s"],
            None
        )
        .await
        .contains("condition met")
    );
    let e = env
        .fails(
            &["wait", "--for=condition=Ready", "pod/app", "--timeout=1s"],
            None,
        )
        .await;
    assert!(e.contains("timed out"), "{e}");

    // get -w: the GET row, then a MODIFIED row after a label change.
    let mut watch = env.command(&["get", "pod", "web", "-w"]).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("NAME"), "{first}");
    let row = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(row.starts_with("web"), "{row}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    set_label(&pods, "web", "w", "1").await;
    let next = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        next.starts_with("web") && next.contains("Running"),
        "{next}"
    );
    let _ = watch.start_kill();
    let _ = watch.wait().await;

    // delete variants: unscheduled pods go at once; a scheduled pod waits for "the node".
    assert!(
        env.ok(&["delete", "pod", "app"], None)
            .await
            .contains("pod \"app\" deleted")
    );
    let node_sim = {
        let pods = pods.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(p) = pods.get("web").await
                    && p.metadata.deletion_timestamp.is_some()
                {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let dp = DeleteParams {
                        preconditions: Some(kube::api::Preconditions {
                            uid: p.metadata.uid.clone(),
                            resource_version: None,
                        }),
                        ..DeleteParams::default().grace_period(0)
                    };
                    pods.delete("web", &dp).await.unwrap();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    assert!(
        env.ok(&["delete", "pod", "web", "--grace-period=5"], None)
            .await
            .contains("pod \"web\" deleted")
    );
    node_sim.await.unwrap();
    assert!(
        env.ok(
            &["delete", "pod", "ssa", "--force", "--grace-period=0"],
            None
        )
        .await
        .contains("force deleted")
    );
    assert!(
        env.ok(&["delete", "rs", "rs"], None)
            .await
            .contains("replicaset.apps \"rs\" deleted")
    );
    let e = env.fails(&["delete", "pod", "nope"], None).await;
    assert!(e.contains("NotFound"), "{e}");
    env.ok(&["delete", "pod", "nope", "--ignore-not-found"], None)
        .await;

    serving.stop().await;
}

const BUILTINS: &str = r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: host}
handler: host
---
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox, command: ["true"]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {disk: ssd}
      containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: ReplicationController
metadata: {name: legacy}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: legacy}}
    spec:
      containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: agent}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hpa}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 5
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny}
spec:
  podSelector: {}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: default, namespace: default}]
"#;

/// The built-in groups beyond pods and workloads: discovery, apply of one manifest with
/// many kinds, upstream's columns, defaults, priority admission and validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_builtin_kinds() {
    assert!(
        kubectl_available(),
        "kubectl must be installed for this suite"
    );
    let serving = serving_memory_server().await;
    let env = Env::new(serving.port, &serving.server);

    let versions = env.ok(&["api-versions"], None).await;
    for want in [
        "batch/v1",
        "node.k8s.io/v1",
        "scheduling.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
        "apiregistration.k8s.io/v1",
        "autoscaling/v2",
        "storage.k8s.io/v1",
        "v1",
    ] {
        assert!(
            versions.lines().any(|l| l == want),
            "api-versions lacks {want}:\n{versions}"
        );
    }
    let ar = env.ok(&["api-resources", "--api-group=batch"], None).await;
    assert!(ar.contains("cronjobs") && ar.contains(" cj "), "{ar}");

    // The cluster's starting objects.
    let sa = env.ok(&["get", "sa"], None).await;
    assert!(sa.starts_with("NAME ") && sa.contains("SECRETS"), "{sa}");
    assert!(sa.lines().any(|l| l.starts_with("default ")), "{sa}");
    let pc = env.ok(&["get", "pc"], None).await;
    assert!(
        pc.lines()
            .any(|l| l.starts_with("system-node-critical") && l.contains("2000001000")),
        "{pc}"
    );
    let apis = env.ok(&["get", "apiservices"], None).await;
    assert!(
        apis.lines()
            .any(|l| l.starts_with("v1.batch ") && l.contains("Local") && l.contains("True")),
        "{apis}"
    );

    let out = env.ok(&["apply", "-f", "-"], Some(BUILTINS)).await;
    for want in [
        "job.batch/pi created",
        "cronjob.batch/nightly created",
        "daemonset.apps/agent created",
        "replicationcontroller/legacy created",
        "persistentvolumeclaim/data created",
        "runtimeclass.node.k8s.io/host created",
    ] {
        assert!(out.contains(want), "{want}:\n{out}");
    }
    // Columns as upstream prints them.
    let jobs = env.ok(&["get", "jobs"], None).await;
    let header: Vec<&str> = jobs.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{jobs}"
    );
    assert!(jobs.contains("pi ") && jobs.contains("0/1"), "{jobs}");
    let ds = env.ok(&["get", "ds", "-o", "wide"], None).await;
    assert!(ds.contains("disk=ssd") && ds.contains("app=agent"), "{ds}");
    let pvc = env.ok(&["get", "pvc"], None).await;
    assert!(pvc.contains("Pending"), "{pvc}");
    let hpa = env.ok(&["get", "hpa"], None).await;
    assert!(
        hpa.contains("Deployment/web") && hpa.contains("cpu: <unknown>/80%"),
        "{hpa}"
    );
    let rb = env.ok(&["get", "rolebinding", "-o", "wide"], None).await;
    assert!(
        rb.contains("Role/reader") && rb.contains("default/default"),
        "{rb}"
    );
    let all = env.ok(&["get", "all"], None).await;
    assert!(
        all.contains("job.batch/pi") && all.contains("cronjob.batch/nightly"),
        "{all}"
    );
    // Defaults: the Job's generated selector and template labels, the RC's selector.
    let job = env.ok(&["get", "job", "pi", "-o", "json"], None).await;
    let job: serde_json::Value = serde_json::from_str(&job).unwrap();
    let uid = job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["job-name"],
        "pi"
    );
    assert_eq!(job["spec"]["backoffLimit"], 6);
    let rc = env
        .ok(
            &["get", "rc", "legacy", "-o", "jsonpath={.spec.selector.app}"],
            None,
        )
        .await;
    assert_eq!(rc, "legacy");
    let scale = env
        .ok(&["scale", "rc", "legacy", "--replicas=3"], None)
        .await;
    assert!(scale.contains("scaled"), "{scale}");

    // Priority admission.
    let pod = |class: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p-{class}}}\nspec:\n  priorityClassName: {class}\n  containers: [{{name: c, image: busybox}}]\n"
        )
    };
    env.ok(&["create", "-f", "-"], Some(&pod("high"))).await;
    let prio = env
        .ok(
            &["get", "pod", "p-high", "-o", "jsonpath={.spec.priority}"],
            None,
        )
        .await;
    assert_eq!(prio, "1000");
    let err = env.fails(&["create", "-f", "-"], Some(&pod("nope"))).await;
    assert!(
        err.contains("pods \"p-nope\" is forbidden: no PriorityClass with name nope was found"),
        "{err}"
    );
    let err = env
        .fails(
            &["create", "-f", "-"],
            Some("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: too-high}\nvalue: 2000000000\n"),
        )
        .await;
    assert!(
        err.contains("maximum allowed value of a user defined priority is 1000000000"),
        "{err}"
    );

    // RuntimeClass admission: the class must exist; its overhead and scheduling join the pod.
    env.ok(
        &["create", "-f", "-"],
        Some("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: fenced}\nhandler: fenced\noverhead: {podFixed: {cpu: 250m}}\nscheduling: {nodeSelector: {zone: a}, tolerations: [{key: k, operator: Exists}]}\n"),
    )
    .await;
    let rc_pod = |name: &str, class: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  runtimeClassName: {class}\n{extra}  containers: [{{name: c, image: busybox}}]\n"
        )
    };
    env.ok(&["create", "-f", "-"], Some(&rc_pod("rc-ok", "fenced", "")))
        .await;
    let got = env
        .ok(
            &["get", "pod", "rc-ok", "-o", "jsonpath={.spec.overhead.cpu} {.spec.nodeSelector.zone} {.spec.tolerations[*].key}"],
            None,
        )
        .await;
    assert!(got.starts_with("250m a k "), "{got}");
    let err = env
        .fails(&["create", "-f", "-"], Some(&rc_pod("rc-nope", "nope", "")))
        .await;
    assert!(
        err.contains(
            "pods \"rc-nope\" is forbidden: pod rejected: RuntimeClass \"nope\" not found"
        ),
        "{err}"
    );
    let err = env
        .fails(
            &["create", "-f", "-"],
            Some(&rc_pod(
                "rc-conflict",
                "fenced",
                "  nodeSelector: {zone: b}\n",
            )),
        )
        .await;
    assert!(
        err.contains("conflict: runtimeClass.scheduling.nodeSelector[zone] = a; pod.spec.nodeSelector[zone] = b"),
        "{err}"
    );

    // Validation: a Job's pods may not restart in place.
    let err = env
        .fails(
            &["create", "-f", "-"],
            Some("apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: busybox}]\n"),
        )
        .await;
    assert!(
        err.contains(
            r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#
        ),
        "{err}"
    );

    // OpenAPI: explain reads the v3 schemas, an unknown kind is a mapping error.
    let explain = env.ok(&["explain", "pod.spec"], None).await;
    assert!(
        explain.contains("KIND:       Pod")
            && explain.contains("containers\t<[]Container> -required-"),
        "{explain}"
    );
    let explain = env.ok(&["explain", "cronjobs.spec.schedule"], None).await;
    assert!(explain.contains("FIELD: schedule <string>"), "{explain}");
    let err = env
        .fails(
            &["apply", "-f", "-"],
            Some("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"),
        )
        .await;
    assert!(
        err.contains(r#"no matches for kind "Widget" in version "example.com/v1""#),
        "{err}"
    );
    let v2 = env.ok(&["get", "--raw", "/openapi/v2"], None).await;
    let v2: serde_json::Value = serde_json::from_str(&v2).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]["io.k8s.api.node.v1.RuntimeClass"].is_object());

    // A new namespace gets its default ServiceAccount.
    env.ok(&["create", "namespace", "team"], None).await;
    let sa = env
        .ok(&["get", "sa", "-n", "team", "-o", "name"], None)
        .await;
    assert_eq!(sa.trim(), "serviceaccount/default");

    serving.stop().await;
}

const CERTIFICATE: &str = r#"
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: web}
spec:
  secretName: web-tls
  dnsNames: [web.example.com]
  issuerRef: {name: ca-issuer, kind: ClusterIssuer}
  privateKey: {algorithm: ECDSA, size: 256}
"#;

async fn wait_established(env: &Env, crd: &str) {
    env.ok(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=20s",
            &format!("crd/{crd}"),
        ],
        None,
    )
    .await;
}

/// A real operator's CRD (cert-manager's Certificate): install, establishment, discovery,
/// custom objects with printer columns, validation errors, status subresource, explain,
/// and deleting the CRD with its objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_custom_resources() {
    assert!(
        kubectl_available(),
        "kubectl must be installed for this suite"
    );
    let serving = serving_memory_server().await;
    let env = Env::new(serving.port, &serving.server);
    let crd = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/crds/certificates.cert-manager.io.yaml"
    );
    let out = env.ok(&["apply", "-f", crd], None).await;
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/certificates.cert-manager.io created"
        ),
        "{out}"
    );
    wait_established(&env, "certificates.cert-manager.io").await;
    let ar = env
        .ok(&["api-resources", "--api-group=cert-manager.io"], None)
        .await;
    assert!(
        ar.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f == [
                "certificates",
                "cert,certs",
                "cert-manager.io/v1",
                "true",
                "Certificate",
            ]
        }),
        "{ar}"
    );

    let out = env.ok(&["apply", "-f", "-"], Some(CERTIFICATE)).await;
    assert!(
        out.contains("certificate.cert-manager.io/web created"),
        "{out}"
    );
    let t = env.ok(&["get", "certs"], None).await;
    let header: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "SECRET", "AGE"], "{t}");
    assert!(t.lines().nth(1).unwrap().starts_with("web "), "{t}");
    assert!(t.contains("web-tls"), "{t}");
    // The status subresource: the main resource ignores status, the subresource sets it.
    env.ok(
        &[
            "patch",
            "certificate",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True","message":"Certificate is up to date and has not expired"}]}}"#,
        ],
        None,
    )
    .await;
    let t = env
        .run(&["get", "certificate", "web", "-o", "wide"], None)
        .await;
    assert!(
        t.1.contains("True")
            && t.1.contains("ca-issuer")
            && t.1.contains("Certificate is up to date"),
        "{t:?}"
    );
    // The CRD's category names its kinds.
    let all = env.ok(&["get", "cert-manager", "-o", "name"], None).await;
    assert_eq!(all.trim(), "certificate.cert-manager.io/web");

    // Validation against the schema, and pruning of unknown fields.
    let bad = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: bad}\nspec:\n  issuerRef: {name: x}\n  privateKey: {algorithm: DSA, size: big}\n";
    let err = env.fails(&["create", "-f", "-"], Some(bad)).await;
    for want in [
        r#"The Certificate "bad" is invalid"#,
        "spec.secretName: Required value",
        r#"spec.privateKey.algorithm: Unsupported value: "DSA": supported values: "RSA", "ECDSA", "Ed25519""#,
        r#"spec.privateKey.size: Invalid value: "string": spec.privateKey.size in body must be of type integer: "string""#,
    ] {
        assert!(err.contains(want), "{want}:\n{err}");
    }
    let extra = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: extra}\nspec:\n  secretName: s\n  issuerRef: {name: x}\n  bogus: 1\n";
    let err = env.fails(&["create", "-f", "-"], Some(extra)).await;
    assert!(err.contains(r#"unknown field "spec.bogus""#), "{err}");
    env.ok(&["create", "--validate=false", "-f", "-"], Some(extra))
        .await;
    let spec = env
        .ok(&["get", "cert", "extra", "-o", "jsonpath={.spec}"], None)
        .await;
    assert!(
        !spec.contains("bogus") && spec.contains("secretName"),
        "{spec}"
    );

    // OpenAPI is updated live: explain knows the kind.
    let explain = env
        .ok(&["explain", "certificate.spec.issuerRef"], None)
        .await;
    assert!(
        explain.contains("KIND:       Certificate")
            && explain.contains("name\t<string> -required-"),
        "{explain}"
    );

    // Deleting the CRD deletes its objects and stops serving the kind.
    env.ok(&["delete", "crd", "certificates.cert-manager.io"], None)
        .await;
    let err = env.fails(&["get", "certificates"], None).await;
    assert!(
        err.contains(r#"the server doesn't have a resource type "certificates""#)
            || err.contains("the server could not find the requested resource"),
        "{err}"
    );
    let apis = env.ok(&["api-versions"], None).await;
    assert!(!apis.contains("cert-manager.io"), "{apis}");
    env.ok(&["apply", "-f", crd], None).await;
    wait_established(&env, "certificates.cert-manager.io").await;
    let none = env.ok(&["get", "certificates", "-o", "name"], None).await;
    assert_eq!(none.trim(), "", "objects outlived their CRD");

    serving.stop().await;
}

const CRONTAB_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: crontabs.stable.example.com}
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Image, type: string, priority: 1, jsonPath: .spec.image}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.replicas <= self.maxReplicas"
              message: replicas must not exceed maxReplicas
            properties:
              cronSpec:
                type: string
                x-kubernetes-validations:
                - {rule: "self == oldSelf", message: cronSpec is immutable}
              image: {type: string}
              homepage:
                type: string
                x-kubernetes-validations:
                - rule: "isURL(self)"
              replicas: {type: integer, minimum: 0, default: 1}
              maxReplicas: {type: integer, default: 5}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
"#;

/// A CRD with two served versions (`None` conversion), the status and scale subresources,
/// defaulting, `-o wide` printer columns and CEL rules: a rule over two fields, a
/// transition rule (immutable field), a rule calling a function this server lacks (accepted
/// with a warning naming it) and a rule that does not compile (CRD refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_custom_scale_versions_and_cel() {
    assert!(
        kubectl_available(),
        "kubectl must be installed for this suite"
    );
    let serving = serving_memory_server().await;
    let env = Env::new(serving.port, &serving.server);
    let (code, out, err) = env.run(&["apply", "-f", "-"], Some(CRONTAB_CRD)).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(r#"Warning: spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[homepage].x-kubernetes-validations[0].rule: function "isURL" is not supported by this server's CEL library: the rule is stored but not enforced"#),
        "{err}"
    );
    wait_established(&env, "crontabs.stable.example.com").await;
    // A rule that does not compile makes the CRD invalid.
    let broken = CRONTAB_CRD
        .replace("crontabs.stable.example.com", "crontabs.broken.example.com")
        .replace("group: stable.example.com", "group: broken.example.com")
        .replace("self.replicas <= self.maxReplicas", "self.replicas <=");
    let err = env.fails(&["apply", "-f", "-"], Some(&broken)).await;
    assert!(
        err.contains(r#"The CustomResourceDefinition "crontabs.broken.example.com" is invalid: spec.versions[1].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: "self.replicas <=": compilation failed: ERROR: <input>:1:"#),
        "{err}"
    );

    let ct = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: nightly}\nspec: {cronSpec: '0 3 * * *', image: busybox}\n";
    env.ok(&["apply", "-f", "-"], Some(ct)).await;
    // Defaulting from the schema.
    let r = env
        .ok(
            &["get", "ct", "nightly", "-o", "jsonpath={.spec.replicas}"],
            None,
        )
        .await;
    assert_eq!(r, "1");
    let t = env.ok(&["get", "ct", "-o", "wide"], None).await;
    let header: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "IMAGE"], "{t}");
    assert!(t.contains("0 3 * * *") && t.contains("busybox"), "{t}");
    let t = env.ok(&["get", "ct"], None).await;
    assert!(!t.contains("IMAGE"), "{t}");

    // CEL rules: evaluated on update, the transition rule against the stored value.
    let err = env
        .fails(
            &[
                "patch",
                "ct",
                "nightly",
                "--type=merge",
                "-p",
                r#"{"spec":{"replicas":6}}"#,
            ],
            None,
        )
        .await;
    assert!(err.contains(r#"The CronTab "nightly" is invalid: spec: Invalid value: "object": replicas must not exceed maxReplicas"#), "{err}");
    let err = env
        .fails(
            &[
                "patch",
                "ct",
                "nightly",
                "--type=merge",
                "-p",
                r#"{"spec":{"cronSpec":"0 4 * * *","homepage":"not a url"}}"#,
            ],
            None,
        )
        .await;
    assert!(err.contains(r#"The CronTab "nightly" is invalid: spec.cronSpec: Invalid value: "string": cronSpec is immutable"#), "{err}");
    // on create the transition rule does not run; the other rule does
    let err = env
        .fails(
            &["create", "-f", "-"],
            Some("apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: big}\nspec: {cronSpec: '0 4 * * *', replicas: 9, maxReplicas: 8}\n"),
        )
        .await;
    assert!(
        err.contains(r#"The CronTab "big" is invalid: spec: Invalid value: "object": replicas must not exceed maxReplicas"#),
        "{err}"
    );

    // The scale subresource reads and writes the CRD's paths.
    env.ok(
        &[
            "patch",
            "ct",
            "nightly",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":1,"selector":"app=nightly"}}"#,
        ],
        None,
    )
    .await;
    let out = env.ok(&["scale", "ct/nightly", "--replicas=3"], None).await;
    assert!(
        out.contains("crontab.stable.example.com/nightly scaled"),
        "{out}"
    );
    let scale: serde_json::Value = serde_json::from_str(
        &env.ok(
            &[
                "get",
                "--raw",
                "/apis/stable.example.com/v1/namespaces/default/crontabs/nightly/scale",
            ],
            None,
        )
        .await,
    )
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=nightly");
    let err = env
        .fails(&["scale", "ct/nightly", "--replicas=-1"], None)
        .await;
    assert!(err.contains("replicas"), "{err}");

    // Another served version reads the same object.
    let v = env
        .ok(
            &[
                "get",
                "crontabs.v1beta1.stable.example.com",
                "nightly",
                "-o",
                "jsonpath={.apiVersion} {.spec.replicas}",
            ],
            None,
        )
        .await;
    assert_eq!(v, "stable.example.com/v1beta1 3");

    // Metrics count the custom kind's requests; readyz lists its checks.
    let m = env.ok(&["get", "--raw", "/metrics"], None).await;
    assert!(
        m.contains(r#"apiserver_request_total{code="200",component="apiserver",dry_run="",group="stable.example.com",resource="crontabs",scope="resource",subresource="scale",verb="PATCH",version="v1"}"#),
        "{m}"
    );
    let r = env.ok(&["get", "--raw", "/readyz?verbose"], None).await;
    assert!(r.ends_with("readyz check passed\n"), "{r}");
    serving.stop().await;
}
