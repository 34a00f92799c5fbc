//! Images through the real `kubectl` against `podvisor up`: real registries (Debian's
//! `docker-registry` on 127.0.0.1, one open, one with basic auth), an image built by the test
//! from `busybox-static` (an OCI layout pushed with `skopeo copy`), a k3s `registries.yaml`
//! with a `docker.io` mirror and a slow endpoint. One cluster and both registries are shared
//! by the cases.

#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Cluster, free_port};
use sha2::Digest as _;

const PULL: Duration = Duration::from_secs(60);

/// A `docker-registry` process on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path, name: &str, htpasswd: Option<&Path>) -> Registry {
        let port = free_port();
        let root = dir.join(format!("{name}-data"));
        std::fs::create_dir_all(&root).expect("registry dir");
        let auth = htpasswd
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        let config = dir.join(format!("{name}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                root.display()
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (Debian package docker-registry)");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "registry {name} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, port }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Writes an OCI layout with one image (tag `v1`) built from busybox-static: `/bin/*` applets,
/// `/etc/os-release` naming `os_id`, `/etc/passwd` with user `app` (1000:1001), and `config`
/// as the image config's `config`.
fn build_image(dir: &Path, os_id: &str, config: serde_json::Value) -> PathBuf {
    let layout = dir.join(format!("layout-{os_id}"));
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout");
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, path, data).expect("tar");
    };
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static at /bin/busybox");
    add("bin/busybox", &busybox, 0o755);
    add(
        "etc/os-release",
        format!("ID={os_id}\nNAME=\"podvisor test image\"\n").as_bytes(),
        0o644,
    );
    add(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n",
        0o644,
    );
    add("etc/group", b"root:x:0:\napp:x:1001:\n", 0o644);
    for applet in [
        "sh", "sleep", "cat", "echo", "id", "pwd", "env", "true", "ls", "touch", "wc", "test",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .expect("link");
    }
    let raw = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).expect("gzip");
    let layer = gz.finish().expect("gzip");
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [sha(&raw)]},
    });
    let config = serde_json::to_vec(&config).expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha(&layer), "size": layer.len()}],
    }))
    .expect("json");
    for b in [&layer, &config, &manifest] {
        std::fs::write(blobs.join(&sha(b)[7..]), b).expect("blob");
    }
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(&manifest), "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
        }))
        .expect("json"),
    )
    .expect("index");
    layout
}

/// A docker-archive tarball (the format of `podman save` / `docker save`) of the image in
/// `layout`, tagged `tag`: `manifest.json`, the config and the uncompressed layer.
fn docker_archive(layout: &Path, tag: &str) -> PathBuf {
    let blob =
        |digest: &str| std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).expect("blob");
    let json = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).expect("json");
    let index = json(&std::fs::read(layout.join("index.json")).expect("index"));
    let manifest = json(&blob(
        index["manifests"][0]["digest"].as_str().expect("digest"),
    ));
    let config = blob(manifest["config"]["digest"].as_str().expect("config"));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(
        &blob(manifest["layers"][0]["digest"].as_str().expect("layer"))[..],
    )
    .read_to_end(&mut raw)
    .expect("gunzip");
    let (config_name, layer_name) = (
        format!("{}.json", &sha(&config)[7..]),
        format!("{}.tar", &sha(&raw)[7..]),
    );
    let list = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}
    ]))
    .expect("json");
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", &list),
        (&config_name, &config),
        (&layer_name, &raw),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, &data[..]).expect("tar");
    }
    let file = layout.with_extension("tar");
    std::fs::write(&file, tar.into_inner().expect("tar")).expect("archive");
    file
}

/// `podvisor image ARGS --data-dir DATA`.
fn image_cmd(c: &Cluster, args: &[&str]) -> std::process::Output {
    Command::new(common::binary())
        .arg("image")
        .args(args)
        .arg("--data-dir")
        .arg(c.dir.path().join("data"))
        .output()
        .expect("podvisor image")
}

fn push(layout: &Path, dest: &str, creds: Option<&str>) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    podvisor_testkit::run_ok(
        cmd.arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{dest}")),
    );
}

/// A TCP proxy to `upstream` that holds every connection `delay` before forwarding it.
fn slow_proxy(upstream: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let (mut a, mut b) = (
                    conn.try_clone().expect("clone"),
                    up.try_clone().expect("clone"),
                );
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut d) = (up, conn);
                let _ = std::io::copy(&mut c, &mut d);
                let _ = d.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
    port
}

/// An htpasswd line for `user`/`password` (bcrypt, which the registry requires).
fn htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import crypt,sys; print(sys.argv[1] + ':' + crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))",
            user,
            password,
        ])
        .output();
    let line = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            let o = Command::new("htpasswd")
                .args(["-nbB", user, password])
                .output()
                .expect("python3 crypt or htpasswd (apache2-utils) to make a bcrypt hash");
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        }
    };
    let p = dir.join("htpasswd");
    std::fs::write(&p, format!("{line}\n")).expect("htpasswd");
    p
}

fn events(c: &Cluster, pod: &str) -> String {
    c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}|{.message}{\"\\n\"}{end}",
    ])
}

fn pod(name: &str, image: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
{extra}  containers:
  - name: main
    image: {image}
    command: ["sleep", "3600"]
"#
    )
}

fn waiting(c: &Cluster, pod: &str) -> (String, String) {
    let r = c
        .pod_field(pod, "{.status.containerStatuses[0].state.waiting.reason}")
        .unwrap_or_default();
    let m = c
        .pod_field(pod, "{.status.containerStatuses[0].state.waiting.message}")
        .unwrap_or_default();
    (r, m)
}

/// Waits until the pod's container waits with `reason`; returns the message.
fn wait_reason(c: &Cluster, pod: &str, reason: &str) -> String {
    let deadline = std::time::Instant::now() + PULL;
    loop {
        let (r, m) = waiting(c, pod);
        if r == reason {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pod}: waiting for {reason}, last {r:?} {m:?}; events:\n{}",
            events(c, pod)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn images_pull_with_policies_auth_mirrors_and_back_off() {
    let _guard = common::serial();
    let dir = tempfile::Builder::new()
        .prefix("podvisor-e2e-img")
        .tempdir()
        .expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work");
    let open = Registry::start(&work, "open", None);
    let secret_file = htpasswd(&work, "alice", "s3cret");
    let locked = Registry::start(&work, "locked", Some(&secret_file));
    let layout = build_image(&work, "podvisor-test", serde_json::json!({}));
    push(&layout, &format!("{}/test/busybox:v1", open.host()), None);
    push(&layout, &format!("{}/mirror/busybox:v1", open.host()), None);
    push(
        &layout,
        &format!("{}/private/busybox:v1", locked.host()),
        Some("alice:s3cret"),
    );
    let slow = slow_proxy(open.port, Duration::from_secs(3));
    let registries = work.join("registries.yaml");
    std::fs::write(
        &registries,
        format!(
            r#"mirrors:
  docker.io:
    endpoint: ["http://{open}"]
    rewrite:
      "^library/(.*)": "mirror/$1"
  slow.registry.test:
    endpoint: ["http://127.0.0.1:{slow}"]
"#,
            open = open.host()
        ),
    )
    .expect("registries.yaml");
    let mut c = Cluster::up_with(
        dir,
        &[
            "--insecure-registry".into(),
            open.host(),
            "--insecure-registry".into(),
            locked.host(),
            "--registries-config".into(),
            registries.display().to_string(),
            // Image GC at every start collects every unused image.
            "--image-gc-high-threshold=0".into(),
            "--image-gc-low-threshold=0".into(),
            "--minimum-image-ttl-duration=0s".into(),
        ],
    );

    // Pull and run; the second pod finds the image present.
    let image = format!("{}/test/busybox:v1", open.host());
    c.apply(&pod("first", &image, ""));
    c.wait_pod_phase("first", "Running", PULL);
    let ev = events(&c, "first");
    assert!(
        ev.contains(&format!("Pulling|Pulling image \"{image}\"")),
        "{ev}"
    );
    let pulled = ev
        .lines()
        .find(|l| l.starts_with("Pulled|Successfully pulled image"))
        .unwrap_or_else(|| panic!("no Pulled event: {ev}"));
    assert!(
        pulled.contains(" including waiting). Image size: "),
        "{pulled}"
    );
    assert!(pulled.ends_with(" bytes."), "{pulled}");
    let image_id = c
        .pod_field("first", "{.status.containerStatuses[0].imageID}")
        .unwrap_or_default();
    assert!(
        image_id.starts_with(&format!("{}/test/busybox@sha256:", open.host())),
        "{image_id}"
    );
    assert_eq!(
        c.pod_field("first", "{.status.containerStatuses[0].image}")
            .as_deref(),
        Some(image.as_str())
    );
    c.wait_for("the node lists the image", Duration::from_secs(30), || {
        c.kubectl_ok(&[
            "get",
            "node",
            &c.node,
            "-o",
            "jsonpath={.status.images[*].names}",
        ])
        .contains(&image_id)
    });
    c.apply(&pod("second", &image, ""));
    c.wait_pod_phase("second", "Running", PULL);
    assert!(
        events(&c, "second").contains(&format!(
            "Pulled|Container image \"{image}\" already present on machine"
        )),
        "{}",
        events(&c, "second")
    );

    // A docker.io name served by the mirror (with a rewrite).
    c.apply(&pod("hub", "busybox:v1", ""));
    c.wait_pod_phase("hub", "Running", PULL);

    // A slow endpoint: the pod stays Pending / ContainerCreating while the image downloads.
    c.apply(&pod("slow", "slow.registry.test/test/busybox:v1", ""));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        c.pod_field("slow", "{.status.phase}").as_deref(),
        Some("Pending")
    );
    assert_eq!(waiting(&c, "slow").0, "ContainerCreating");
    c.wait_pod_phase("slow", "Running", PULL);

    // A wrong tag: ErrImagePull, then ImagePullBackOff.
    let missing = format!("{}/test/busybox:nope", open.host());
    c.apply(&pod("wrongtag", &missing, ""));
    let message = wait_reason(&c, "wrongtag", "ErrImagePull");
    assert!(message.contains("not found"), "{message}");
    assert_eq!(
        wait_reason(&c, "wrongtag", "ImagePullBackOff"),
        format!("Back-off pulling image \"{missing}\"")
    );
    let ev = events(&c, "wrongtag");
    assert!(
        ev.contains(&format!("Failed|Failed to pull image \"{missing}\": ")),
        "{ev}"
    );
    assert!(ev.contains("Failed|Error: ErrImagePull"), "{ev}");
    assert!(
        ev.contains(&format!("BackOff|Back-off pulling image \"{missing}\"")),
        "{ev}"
    );
    assert!(ev.contains("Failed|Error: ImagePullBackOff"), "{ev}");

    // Basic auth: refused without credentials, pulled with an imagePullSecret.
    let private = format!("{}/private/busybox:v1", locked.host());
    c.apply(&pod("noauth", &private, ""));
    let message = wait_reason(&c, "noauth", "ErrImagePull");
    assert!(message.contains("401 Unauthorized"), "{message}");
    c.kubectl_ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", locked.host()),
        "--docker-username=alice",
        "--docker-password=s3cret",
    ]);
    c.apply(&pod(
        "withauth",
        &private,
        "  imagePullSecrets: [{name: regcred}]\n",
    ));
    c.wait_pod_phase("withauth", "Running", PULL);

    // Never: a missing image is not pulled.
    let never = format!("{}/test/other:v1", open.host());
    c.apply(
        &pod("never", &never, "")
            .replace("    command:", "    imagePullPolicy: Never\n    command:"),
    );
    assert_eq!(
        wait_reason(&c, "never", "ErrImageNeverPull"),
        format!("Container image \"{never}\" is not present with pull policy of Never")
    );

    // An unparsable name.
    c.apply(&pod("badname", "\"bad name\"", ""));
    wait_reason(&c, "badname", "InvalidImageName");
    let mut buf = String::new();
    let _ = std::fs::File::open(&secret_file).and_then(|mut f| f.read_to_string(&mut buf));
    assert!(buf.starts_with("alice:"));

    // The container runs in the image's root filesystem, not the host's.
    let os = c.kubectl_ok(&["exec", "first", "--", "cat", "/etc/os-release"]);
    assert!(os.contains("ID=podvisor-test"), "{os}");
    assert_eq!(
        c.kubectl_ok(&["exec", "first", "--", "cat", "/etc/hostname"]),
        "first\n"
    );
    let ps = c.kubectl_ok(&["exec", "first", "--", "ls", "/proc"]);
    assert!(ps.split_whitespace().any(|p| p == "1"), "{ps}");
    assert!(
        c.kubectl_ok(&["exec", "first", "--", "ls", "/dev"])
            .contains("null"),
        "no /dev/null"
    );

    // The image's ENTRYPOINT, CMD, Env, WorkingDir, User and STOPSIGNAL.
    let merge = build_image(
        &work,
        "merge",
        serde_json::json!({
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo cmd-from-image; trap 'echo got-usr1 > /out/signal; exit 0' USR1; while :; do sleep 0.2; done"],
            "Env": ["FROM_IMAGE=yes", "OVER=image", "PATH=/bin"],
            "WorkingDir": "/srv/app",
            "User": "app",
            "StopSignal": "SIGUSR1",
        }),
    );
    let merge_image = format!("{}/test/merge:v1", open.host());
    push(&merge, &merge_image, None);
    let out = work.join("out");
    std::fs::create_dir_all(&out).expect("out");
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let merged = |name: &str, extra: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 5
  restartPolicy: Never
  volumes: [{{name: out, hostPath: {{path: {out}}}}}]
  containers:
  - name: main
    image: {merge_image}
    env: [{{name: OVER, value: pod}}]
    volumeMounts: [{{name: out, mountPath: /out}}]
{extra}"#,
            out = out.display()
        )
    };
    c.apply(&merged("imgcfg", ""));
    c.wait_pod_phase("imgcfg", "Running", PULL);
    c.wait_for("the image's CMD ran", Duration::from_secs(20), || {
        c.kubectl_ok(&["logs", "imgcfg"]).contains("cmd-from-image")
    });
    assert_eq!(
        c.kubectl_ok(&["exec", "imgcfg", "--", "id", "-u"]),
        "1000\n"
    );
    assert_eq!(
        c.kubectl_ok(&["exec", "imgcfg", "--", "id", "-g"]),
        "1001\n"
    );
    assert_eq!(c.kubectl_ok(&["exec", "imgcfg", "--", "pwd"]), "/srv/app\n");
    let env = c.kubectl_ok(&["exec", "imgcfg", "--", "env"]);
    assert!(env.contains("FROM_IMAGE=yes\n"), "{env}");
    assert!(
        env.contains("OVER=pod\n") && !env.contains("OVER=image"),
        "{env}"
    );
    c.kubectl_ok(&["delete", "pod", "imgcfg", "--wait=true"]);
    assert_eq!(
        std::fs::read_to_string(out.join("signal")).unwrap_or_default(),
        "got-usr1\n",
        "the image's STOPSIGNAL (SIGUSR1) stops the container"
    );
    // args replace CMD (ENTRYPOINT kept); runAsUser wins over the image's User.
    c.apply(&merged(
        "argsonly",
        "    args: [\"echo args-replace-cmd; id -u; sleep 3600\"]\n    securityContext: {runAsUser: 0}\n",
    ));
    c.wait_for("args ran", PULL, || {
        c.kubectl(&["logs", "argsonly"])
            .stdout
            .starts_with(b"args-replace-cmd\n0\n")
    });
    // command replaces ENTRYPOINT and drops CMD.
    c.apply(&merged(
        "cmdonly",
        "    command: [\"/bin/echo\", \"command-wins\"]\n",
    ));
    c.wait_pod_phase("cmdonly", "Succeeded", PULL);
    assert_eq!(c.kubectl_ok(&["logs", "cmdonly"]), "command-wins\n");

    // Writes to the root vanish with the instance; volumes persist across restarts.
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: restarts}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: data, emptyDir: {{}}}}]
  containers:
  - name: main
    image: {image}
    volumeMounts: [{{name: data, mountPath: /data}}]
    command: ["sh", "-c", "test -e /marker && echo marker-survived; touch /marker; echo run >> /data/runs; echo runs=$(cat /data/runs | wc -l); sleep 1; exit 1"]
"#
    ));
    c.wait_for("a second instance", Duration::from_secs(60), || {
        c.kubectl(&["logs", "restarts"])
            .stdout
            .starts_with(b"runs=2")
    });

    // Air-gapped: a `podman save` tarball imported, run with imagePullPolicy: Never.
    let import = |name: &str, config: serde_json::Value| {
        let layout = build_image(&work, name, config);
        let tag = format!("localhost/{name}:v1");
        let archive = docker_archive(&layout, &tag).display().to_string();
        let out = image_cmd(&c, &["import", &archive]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("Loaded image: {tag}\n")
        );
    };
    import("imported", serde_json::json!({"Cmd": ["sleep", "3600"]}));
    import("unused", serde_json::json!({}));
    c.apply(
        &pod("airgap", "localhost/imported:v1", "")
            .replace("    command:", "    imagePullPolicy: Never\n    command:"),
    );
    c.wait_pod_phase("airgap", "Running", PULL);
    let os = c.kubectl_ok(&["exec", "airgap", "--", "cat", "/etc/os-release"]);
    assert!(os.contains("ID=imported"), "{os}");
    let ls = String::from_utf8_lossy(&image_cmd(&c, &["ls"]).stdout).to_string();
    assert!(ls.starts_with("IMAGE "), "{ls}");
    for want in [
        "localhost/imported ",
        "localhost/unused ",
        &format!("{}/test/busybox ", open.host()),
    ] {
        assert!(ls.lines().any(|l| l.starts_with(want)), "{want} in:\n{ls}");
    }
    // An image in use is not removed.
    let out = image_cmd(&c, &["rm", "localhost/imported:v1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by a container"),
        "{out:?}"
    );

    // Re-adoption after the agent restarts keeps the container and its root.
    let id = c.pod_field("first", "{.status.containerStatuses[0].containerID}");
    c.restart();
    c.wait_pod_ready("first", PULL);
    assert_eq!(
        c.pod_field("first", "{.status.containerStatuses[0].containerID}"),
        id
    );
    let os = c.kubectl_ok(&["exec", "first", "--", "cat", "/etc/os-release"]);
    assert!(os.contains("ID=podvisor-test"), "{os}");
    // The restart's image GC removed the unused image and kept those in use.
    c.wait_for("image GC", Duration::from_secs(30), || {
        !String::from_utf8_lossy(&image_cmd(&c, &["ls"]).stdout).contains("localhost/unused")
    });
    let ls = String::from_utf8_lossy(&image_cmd(&c, &["ls"]).stdout).to_string();
    assert!(
        ls.contains("localhost/imported ") && ls.contains("/test/busybox "),
        "{ls}"
    );
}
