//! The web view (issue 19, docs/design/0009-web-view.md) in a real headless browser:
//! Debian's `chromium` driven through `chromedriver` (WebDriver, with the `fantoccini`
//! client). `podvisor up` prints the ready URL; the page shows the node, a pod appears live
//! (watch), the pod page draws the pod's timeline as a Gantt chart whose bars, probe ticks and
//! termination marks sit exactly at the times `kubectl get timeline -o json` reports, the
//! timeline of the removed pod is still shown, the SVG (and PNG) download is the chart on the
//! page, and RBAC applies to the page's calls. Screenshots and the downloads are kept under
//! `target/tmp/e2e_ui/` (the path is printed).
//!
//! The browser is required: without `chromium` and `chromedriver` the test fails (CI installs
//! them; `apt-get install chromium chromium-driver`).

#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pods::shell_pod;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// How long any one condition in the browser may take (a loaded 2-core machine runs the
/// cluster, kubectl and chromium at once).
const WAIT: Duration = Duration::from_secs(120);
/// One WebDriver command at most.
const COMMAND: Duration = Duration::from_secs(90);

/// An executable on the PATH (or at a Debian path), or None.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/lib/chromium".into()])
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// `chromedriver` on a port of its own, in a process group of its own (chromium runs in
/// it too), stopped with its group on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(program: &Path, log: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port} within 60 s; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    fn signal_group(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // chromium's processes share the group; whatever is left goes now
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

/// Chromium's switches: headless as root, trusting the cluster's self-signed certificate,
/// and reaching no network: no background requests, component updates, sync or QUIC, and
/// no name resolves (the page is at 127.0.0.1).
fn chrome_args(profile: &Path) -> Vec<String> {
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1300",
        "--ignore-certificate-errors",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--metrics-recording-only",
        "--no-first-run",
        "--no-default-browser-check",
        "--safebrowsing-disable-auto-update",
        "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,\
         AutofillServerCommunication,CertificateTransparencyComponentUpdater",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// A WebDriver command with a bound.
async fn bounded<T, E: std::fmt::Debug>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> T {
    match tokio::time::timeout(COMMAND, f).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e:?}"),
        Err(_) => panic!("{what}: no answer within {COMMAND:?}"),
    }
}

/// The browser session and where its artefacts go.
struct Browser {
    client: Client,
    artefacts: PathBuf,
    downloads: PathBuf,
}

impl Browser {
    /// Runs `script` (a function body returning a value) until it returns something other
    /// than null/false, within [`WAIT`]; on timeout saves a screenshot and fails with the
    /// page's text.
    async fn wait(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = bounded(what, self.client.execute(script, vec![])).await;
            if !(v.is_null() || v == Value::Bool(false)) {
                return v;
            }
            if Instant::now() > deadline {
                let shot = self
                    .screenshot(&format!("failed-{}", what.replace(' ', "-")))
                    .await;
                let text = self
                    .client
                    .execute("return document.body.innerText", vec![])
                    .await
                    .unwrap_or_default();
                panic!(
                    "timed out after {WAIT:?} waiting in the browser for {what} (screenshot {}); page:\n{}",
                    shot.display(),
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = bounded("screenshot", self.client.screenshot()).await;
        let path = self.artefacts.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Waits for a finished download whose name starts with `prefix` and ends with `ext`.
    async fn downloaded(&self, prefix: &str, ext: &str) -> PathBuf {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(dir) = std::fs::read_dir(&self.downloads) {
                for e in dir.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with(prefix) && name.ends_with(ext) {
                        return e.path();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no download {prefix}*{ext} in {} within {WAIT:?}",
                self.downloads.display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn micros(t: &str) -> i64 {
    t.parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("time {t:?}: {e}"))
        .as_microsecond()
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .or_else(|| v[k].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("no number {k} in {v}"))
}

/// The chart as the page drew it: the axis and every bar, probe tick and mark with its
/// times and coordinates.
const READ_CHART: &str = r#"
const svg = document.getElementById('gantt');
if (!svg) return null;
const n = (el, a) => Number(el.getAttribute(a));
return {
  version: svg.dataset.timelineVersion, t0: n(svg, 'data-t0-us'), t1: n(svg, 'data-t1-us'), x0: n(svg, 'data-x0'),
  scale: n(svg, 'data-px-per-us'),
  bars: [...svg.querySelectorAll('rect.bar')].map((r) => ({
    lane: r.dataset.lane, state: r.dataset.state, start: n(r, 'data-start-us'), end: n(r, 'data-end-us'),
    x: n(r, 'x'), width: n(r, 'width'), open: r.dataset.open === 'true' })),
  probes: [...svg.querySelectorAll('line.probe')].map((l) => ({
    lane: l.dataset.lane, time: n(l, 'data-time-us'), x: n(l, 'x1'), probe: l.dataset.probe, result: l.dataset.result })),
  marks: [...svg.querySelectorAll('line.marker')].map((l) => ({
    step: l.dataset.step, time: n(l, 'data-time-us'), x: n(l, 'x1') })),
};
"#;

#[test]
fn web_view_shows_the_cluster_and_draws_a_pods_timeline() {
    let (chromium, chromedriver) = match (
        find_program(&["chromium", "chromium-browser"]),
        find_program(&["chromedriver"]),
    ) {
        (Some(c), Some(d)) => (c, d),
        (c, d) => panic!(
            "the web view test needs a headless browser: chromium {} and chromedriver {} \
             (Debian: apt-get install chromium chromium-driver; .ci/run installs them)",
            if c.is_some() { "found" } else { "NOT found" },
            if d.is_some() { "found" } else { "NOT found" },
        ),
    };
    let _serial = serial();
    let artefacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e_ui");
    let _ = std::fs::remove_dir_all(&artefacts);
    std::fs::create_dir_all(&artefacts).expect("artefact dir");
    eprintln!(
        "e2e_ui artefacts (screenshots, downloads): {}",
        artefacts.display()
    );

    let c = Cluster::up();
    // `up` prints the ready URL after its node is Ready
    let mut url = String::new();
    c.wait_for("the web view URL", Duration::from_secs(60), || {
        url =
            c.up.log_text()
                .lines()
                .find_map(|l| l.strip_prefix("# web view: "))
                .unwrap_or_default()
                .trim()
                .to_string();
        !url.is_empty()
    });
    let token = std::fs::read_to_string(c.kubeconfig())
        .expect("kubeconfig")
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: ").map(str::to_string))
        .expect("token in the kubeconfig");
    assert_eq!(
        url,
        format!("https://127.0.0.1:{}/ui/#token={token}", c.port),
        "the ready URL"
    );
    let base = format!("https://127.0.0.1:{}/ui/", c.port);

    let downloads = c.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("download dir");
    let driver = Driver::start(&chromedriver, &c.dir.path().join("chromedriver.log"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "timeouts": {"pageLoad": 120_000, "script": 60_000},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": chrome_args(&c.dir.path().join("chrome-profile")),
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
            },
        });
        let caps = caps.as_object().cloned().expect("capabilities");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = bounded(
            "a chromium session",
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{}", driver.port)),
        )
        .await;
        let b = Browser {
            client,
            artefacts: artefacts.clone(),
            downloads: downloads.clone(),
        };
        run(&c, &b, &url, &base, &token).await;
        let _ = tokio::time::timeout(COMMAND, b.client.close()).await;
    });
    drop(driver);
    eprintln!(
        "e2e_ui artefacts (screenshots, downloads): {}",
        artefacts.display()
    );
}

async fn run(c: &Cluster, b: &Browser, url: &str, base: &str, token: &str) {
    // log in with the ready URL: the token leaves the address bar, the node is listed
    bounded("open the ready URL", b.client.goto(url)).await;
    b.wait(
        "the node listed as Ready",
        "const r = document.querySelector('tr[data-node=\"e2e-node\"]'); \
         return r && r.dataset.status === 'Ready' ? r.innerText : null;",
    )
    .await;
    let address = bounded("the address", b.client.current_url()).await;
    assert!(
        !address.as_str().contains(token),
        "the token stayed in the address bar: {address}"
    );
    b.wait(
        "the user name",
        "const w = document.getElementById('whoami').textContent; return w || null;",
    )
    .await;
    let namespaces = b
        .wait(
            "the namespaces",
            "return document.querySelector('tr[data-namespace=\"kube-system\"]') && \
             document.querySelector('tr[data-namespace=\"default\"]') ? true : null;",
        )
        .await;
    assert_eq!(namespaces, Value::Bool(true));

    // a pod with a readiness probe, a preStop hook and a main process that ignores SIGTERM
    // (so the delete ends with SIGKILL at the deadline), created while the page watches
    let m = marker("ui");
    let state = c.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let state = state.display().to_string();
    let script = format!(
        "echo hello-from-web; touch {state}/ready; trap '' TERM; while true; do sleep 0.2; done"
    );
    let pod = shell_pod("web", &script, &m)
        .grace(3)
        .container_yaml(&format!(
            "    resources:\n      requests: {{cpu: 100m, memory: 32Mi}}\n    \
             readinessProbe:\n      exec: {{command: [\"test\", \"-f\", \"{state}/ready\"]}}\n      \
             periodSeconds: 1\n    lifecycle:\n      preStop:\n        exec: {{command: [\"sleep\", \"1\"]}}\n"
        ));
    c.apply(&pod.yaml());
    c.wait_pod_ready("web", Duration::from_secs(90));
    b.wait(
        "pod web Running in the list (watch)",
        "const r = document.querySelector('tr[data-pod=\"default/web\"]'); \
         return r && r.dataset.phase === 'Running' && r.cells[2].textContent === '1/1' ? true : null;",
    )
    .await;
    let node_row = b
        .wait(
            "the node's pods and requests",
            "const r = document.querySelector('tr[data-node=\"e2e-node\"]'); \
             return r && Number(r.dataset.pods) >= 1 && r.cells[3].textContent.includes('100m') ? r.innerText : null;",
        )
        .await;
    eprintln!("node row: {node_row}");
    let running = b
        .wait(
            "the Running count",
            "const c = document.querySelector('#phase-counts [data-phase=\"Running\"]'); \
             return c && Number(c.dataset.count) >= 1 ? Number(c.dataset.count) : null;",
        )
        .await;
    assert!(running.as_u64() >= Some(1));
    b.wait(
        "the pod's events",
        "return document.querySelector('#event-table tr[data-reason=\"Started\"]') ? true : null;",
    )
    .await;
    let shot = b.screenshot("1-cluster").await;
    eprintln!("screenshot: {}", shot.display());

    // the pod page, opened from the list
    // the link is clicked in the page: the list is rebuilt whenever the watch delivers
    b.wait(
        "the pod's link",
        "const a = document.querySelector('tr[data-pod=\"default/web\"] a'); \
         if (!a) return null; a.click(); return true;",
    )
    .await;
    b.wait(
        "the pod page: Ready, container main Running",
        "return document.body.dataset.page === 'pod' && \
         document.querySelector('#condition-table tr[data-condition=\"Ready\"][data-status=\"True\"]') && \
         document.querySelector('#container-table tr[data-container=\"main\"][data-state=\"Running\"]') ? true : null;",
    )
    .await;
    b.wait(
        "the readiness probe's tick on the chart",
        "return document.querySelector('#gantt line.probe[data-probe=\"readiness\"][data-result=\"Success\"]') ? true : null;",
    )
    .await;
    b.wait(
        "the log tail",
        "const l = document.getElementById('log-text'); \
         return l && l.textContent.includes('hello-from-web') ? true : null;",
    )
    .await;
    let shot = b.screenshot("2-pod-running").await;
    eprintln!("screenshot: {}", shot.display());

    // delete it while the page is open: the page keeps what is kept
    c.kubectl_ok(&["delete", "pod", "web", "--grace-period=3", "--wait=false"]);
    c.wait_for("pod web gone", Duration::from_secs(60), || {
        !c.pod_exists("web")
    });
    // the node's last batch (SIGKILL, the exit) may land after the removal
    let timeline = || -> Value {
        let out = c.kubectl(&["get", "timeline", "web", "-o", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let has = |t: &Value, step: &str| {
        t["entries"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["step"] == step))
    };
    c.wait_for(
        "the whole stop in the timeline",
        Duration::from_secs(60),
        || {
            let t = timeline();
            ["Removed", "Killed", "ContainerExited"]
                .iter()
                .all(|s| has(&t, s))
        },
    );
    // and no more appends for a few of the writers' 1 s windows
    let mut last = Value::Null;
    c.wait_for("the timeline settled", Duration::from_secs(60), || {
        let rv = timeline()["metadata"]["resourceVersion"].clone();
        let settled = rv == last && !rv.is_null();
        last = rv;
        if !settled {
            std::thread::sleep(Duration::from_secs(3));
        }
        settled
    });
    let (t, chart) = removed_chart(b, &timeline).await;
    std::fs::write(
        b.artefacts.join("timeline.json"),
        serde_json::to_string_pretty(&t).unwrap_or_default(),
    )
    .expect("write");
    let shot = b.screenshot("3-pod-removed").await;
    eprintln!("screenshot: {}", shot.display());
    check_chart(&t, &chart);
    let gantt = bounded("the chart element", b.client.find(Locator::Id("gantt"))).await;
    let png = bounded("the chart's screenshot", gantt.screenshot()).await;
    std::fs::write(b.artefacts.join("4-gantt.png"), png).expect("write");

    // the downloads: the SVG is the chart on the page, the PNG a picture of it
    let page_svg = b
        .wait("the SVG text", "return window.podvisorUI.svgText();")
        .await;
    let page_svg = page_svg.as_str().expect("svg text").to_string();
    let button = bounded("the SVG button", b.client.find(Locator::Id("download-svg"))).await;
    bounded("download the SVG", button.click()).await;
    let svg_path = b.downloaded("timeline-default-web-", ".svg").await;
    let svg = std::fs::read_to_string(&svg_path).expect("read the SVG");
    // (a late append to the timeline redraws the chart: then it is the one drawn after)
    let page_svg_after = b
        .wait("the SVG text", "return window.podvisorUI.svgText();")
        .await;
    if svg != page_svg && Some(svg.as_str()) != page_svg_after.as_str() {
        std::fs::write(b.artefacts.join("page.svg"), &page_svg).expect("write");
        std::fs::write(b.artefacts.join("downloaded.svg"), &svg).expect("write");
        panic!(
            "the downloaded SVG is not the chart on the page (both in {})",
            b.artefacts.display()
        );
    }
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
    let t0 = micros(t["entries"][0]["time"].as_str().expect("time"));
    assert!(svg.contains(&format!("data-t0-us=\"{t0}\"")), "{svg}");
    if svg == page_svg {
        let bars = chart["bars"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(svg.matches("class=\"bar\"").count(), bars);
    }
    std::fs::copy(&svg_path, b.artefacts.join("timeline.svg")).expect("copy");
    let button = bounded("the PNG button", b.client.find(Locator::Id("download-png"))).await;
    bounded("download the PNG", button.click()).await;
    let png_path = b.downloaded("timeline-default-web-", ".png").await;
    let png = std::fs::read(&png_path).expect("read the PNG");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    std::fs::copy(&png_path, b.artefacts.join("timeline.png")).expect("copy");

    // the cluster page lists the removed pod's timeline; opened afresh it is all there
    bounded("the cluster page", b.client.goto(&format!("{base}#/"))).await;
    let uid = t["pod"]["uid"].as_str().expect("uid").to_string();
    b.wait(
        "the removed pod in the list",
        &format!(
            "const r = document.querySelector('tr[data-removed-pod=\"default/web\"][data-uid=\"{uid}\"]'); \
             if (!r) return null; r.querySelector('a').click(); return true;"
        ),
    )
    .await;
    let (t_again, chart_again) = removed_chart(b, &timeline).await;
    if t_again["metadata"]["resourceVersion"] == t["metadata"]["resourceVersion"] {
        assert_eq!(chart_again, chart, "the same chart when opened afresh");
    } else {
        // a late append (say, the node's last batch) in between: checked afresh
        check_chart(&t_again, &chart_again);
    }
    let shot = b.screenshot("5-removed-pod-page").await;
    eprintln!("screenshot: {}", shot.display());

    // RBAC applies to the page's calls: a user without a role sees Forbidden, and a wrong
    // token gets the login form back
    let tokens = c.dir.path().join("data").join("tokens.csv");
    let mut text = std::fs::read_to_string(&tokens).expect("token file");
    text.push_str("ui-nobody-token,nobody,uid-nobody,\"\"\n");
    std::fs::write(&tokens, text).expect("token file");
    bounded("log out", async {
        b.client.find(Locator::Id("logout")).await?.click().await
    })
    .await;
    b.wait(
        "the login form",
        "return document.body.dataset.page === 'login' && document.getElementById('token') ? true : null;",
    )
    .await;
    login(b, "not-a-token").await;
    b.wait(
        "the refusal",
        "const e = document.querySelector('.login .error'); \
         return document.body.dataset.page === 'login' && e && e.textContent.includes('401') ? true : null;",
    )
    .await;
    bounded(
        "back to the cluster page",
        b.client
            .execute("location.hash = '#/'; return true;", vec![]),
    )
    .await;
    login(b, "ui-nobody-token").await;
    let forbidden = b
        .wait(
            "Forbidden for a user without a role",
            "const e = document.querySelector('#nodes .error'); \
             return e && document.getElementById('whoami').textContent === 'nobody' ? e.textContent : null;",
        )
        .await;
    assert!(
        forbidden
            .as_str()
            .is_some_and(|s| s.contains("Forbidden") && s.contains("nodes")),
        "{forbidden}"
    );
    let shot = b.screenshot("6-forbidden").await;
    eprintln!("screenshot: {}", shot.display());
}

/// The chart of the removed pod once the page shows the timeline at the version kubectl
/// reads (the timeline, the chart).
async fn removed_chart(b: &Browser, timeline: &dyn Fn() -> Value) -> (Value, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let chart = b
            .wait(
                "the removed pod's timeline",
                &format!(
                    "const g = document.getElementById('gantt'); \
                     if (!(document.body.dataset.podState === 'removed' && document.getElementById('removed-notice') && \
                     g && g.dataset.removed === 'true')) return null; \
                     {READ_CHART}"
                ),
            )
            .await;
        let t = timeline();
        if t["metadata"]["resourceVersion"] == chart["version"] {
            return (t, chart);
        }
        assert!(
            Instant::now() < deadline,
            "the page shows timeline version {} but kubectl reads {}",
            chart["version"],
            t["metadata"]["resourceVersion"]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn login(b: &Browser, token: &str) {
    let input = bounded("the token field", b.client.find(Locator::Id("token"))).await;
    bounded("clear the token field", input.clear()).await;
    bounded("type the token", input.send_keys(token)).await;
    let submit = bounded(
        "the login button",
        b.client.find(Locator::Css(".login button[type=submit]")),
    )
    .await;
    bounded("log in", submit.click()).await;
}

/// Every bar, tick and mark of `chart` sits where the axis puts its time, and the times are
/// the recorded entries' of timeline `t`.
fn check_chart(t: &Value, chart: &Value) {
    let es = t["entries"].as_array().expect("entries");
    let time = |e: &Value| micros(e["time"].as_str().expect("time"));
    let times: BTreeSet<i64> = es.iter().map(time).collect();
    let find = |step: &str, container: Option<&str>, detail: Option<(&str, &str)>| -> i64 {
        es.iter()
            .find(|e| {
                e["step"] == step
                    && container.is_none_or(|c| e["container"] == c)
                    && detail.is_none_or(|(k, v)| e["details"][k] == v)
            })
            .map(time)
            .unwrap_or_else(|| panic!("no {step} {container:?} {detail:?} in {t}"))
    };
    let t0 = num(chart, "t0") as i64;
    let x0 = num(chart, "x0");
    let scale = num(chart, "scale");
    assert_eq!(t0, time(&es[0]), "the axis starts at the first entry");
    let at = |us: i64| x0 + (us - t0) as f64 * scale;
    let close = |a: f64, b: f64| (a - b).abs() < 0.01;

    let bars = chart["bars"].as_array().expect("bars");
    for bar in bars {
        let (start, end) = (num(bar, "start") as i64, num(bar, "end") as i64);
        assert!(
            times.contains(&start) && times.contains(&end),
            "bar {bar} starts or ends at no recorded step"
        );
        assert!(close(num(bar, "x"), at(start)), "bar {bar} misplaced");
        assert!(
            close(num(bar, "width"), (end - start) as f64 * scale),
            "bar {bar} has the wrong width"
        );
        assert_eq!(bar["open"], false, "an open bar after removal: {bar}");
    }
    let bar = |lane: &str, state: &str| -> (i64, i64) {
        let found: Vec<&Value> = bars
            .iter()
            .filter(|b| b["lane"] == lane && b["state"] == state)
            .collect();
        assert_eq!(found.len(), 1, "one {state} bar in lane {lane}: {bars:?}");
        (num(found[0], "start") as i64, num(found[0], "end") as i64)
    };
    let removed = find("Removed", None, None);
    let started = find("ContainerStarted", Some("main"), None);
    let exited = find("ContainerExited", Some("main"), Some(("exitCode", "137")));
    assert_eq!(
        bar("main", "Running"),
        (started, exited),
        "main's Running bar"
    );
    assert_eq!(bar("main", "Terminated"), (exited, removed));
    let pre_start = find("PreStopStarted", Some("main"), None);
    let pre_end = find("PreStopFinished", Some("main"), None);
    assert_eq!(bar("main", "preStop"), (pre_start, pre_end));
    let delete = find("DeleteRequested", None, Some(("grace", "3")));
    assert_eq!(bar("deletion", "Terminating"), (delete, removed));
    let created = find("Created", None, None);
    let phase_running = find("StatusWritten", None, Some(("phase", "Running")));
    assert_eq!(bar("pod", "Pending"), (created, phase_running));
    let (pod_running, pod_end) = bar("pod", "Running");
    assert_eq!(pod_running, phase_running);
    assert!(pod_end <= removed);

    // probe ticks: one per recorded probe result, in the container's lane
    let probes = chart["probes"].as_array().expect("probes");
    let results: Vec<&Value> = es.iter().filter(|e| e["step"] == "ProbeResult").collect();
    assert_eq!(probes.len(), results.len(), "{probes:?}");
    for (p, e) in probes.iter().zip(&results) {
        assert_eq!(num(p, "time") as i64, time(e));
        assert_eq!(p["lane"], e["container"]);
        assert_eq!(p["result"], e["details"]["result"]);
        assert!(close(num(p, "x"), at(time(e))), "probe tick {p} misplaced");
    }
    assert!(
        probes
            .iter()
            .any(|p| p["probe"] == "readiness" && p["result"] == "Success"),
        "{probes:?}"
    );

    // termination marks at the recorded steps; the grace deadline the kubelet enforced
    let marks = chart["marks"].as_array().expect("marks");
    let mark = |step: &str| -> i64 {
        let m = marks
            .iter()
            .find(|m| m["step"] == step)
            .unwrap_or_else(|| panic!("no {step} mark in {marks:?}"));
        let us = num(m, "time") as i64;
        assert!(close(num(m, "x"), at(us)), "mark {m} misplaced");
        us
    };
    for e in es {
        let step = e["step"].as_str().unwrap_or_default();
        if [
            "DeleteRequested",
            "EndpointsDrained",
            "PreStopStarted",
            "StopSignal",
            "Killed",
            "Removed",
        ]
        .contains(&step)
        {
            assert!(
                marks
                    .iter()
                    .any(|m| m["step"] == step && num(m, "time") as i64 == time(e)),
                "no mark for {e}"
            );
        }
    }
    assert_eq!(mark("DeleteRequested"), delete);
    assert_eq!(mark("PreStopStarted"), pre_start);
    let signal = find("StopSignal", Some("main"), Some(("signal", "SIGTERM")));
    assert_eq!(mark("StopSignal"), signal);
    let killed = find("Killed", Some("main"), None);
    assert_eq!(mark("Killed"), killed);
    assert_eq!(mark("Removed"), removed);
    let killed_entry = es.iter().find(|e| e["step"] == "Killed").expect("Killed");
    let late_ms: i64 = killed_entry["details"]["lateMs"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("lateMs");
    let deadline = mark("GraceDeadline");
    // the deadline the kubelet enforced, as its SIGKILL entry names it
    assert_eq!(
        deadline,
        micros(
            killed_entry["details"]["deadline"]
                .as_str()
                .expect("deadline")
        )
    );
    assert!((deadline - (killed - late_ms * 1000)).abs() < 1000);
    assert!(
        (deadline - (delete + 3_000_000)).abs() < 1_000_000,
        "the grace deadline {} µs after the delete request",
        deadline - delete
    );
    // in the order of a graceful stop
    assert!(delete < pre_start && pre_start < pre_end && pre_end <= signal);
    assert!(signal < deadline && deadline <= killed && killed <= removed);
}
