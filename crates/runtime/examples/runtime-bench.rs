//! Process runtime benchmark: sandbox + container start until the process runs, stop latency
//! of a TERM-honouring process, supervisor memory per sandbox, and plain fork+exec of the
//! same command as the floor.
//!
//! `cargo run --release -p podvisor-runtime --example runtime-bench [-- <iterations>] [--no-spares] [--termination-message] [--no-cgroups] [--no-namespaces] [--state-in=<dir>] [--supervisor=<program>[,<arg>…]]`
//! (`--state-in=/dev/shm` puts the runtime state on tmpfs, as `/run` would be).
//!
//! The example binary doubles as the supervisor (`runtime-bench supervise --dir …`), exactly
//! as the podvisor binary runs `podvisor supervise`.

use std::time::{Duration, Instant};

use podvisor_runtime::process::{ProcessRuntime, ProcessRuntimeConfig, supervisor_main};
use podvisor_runtime::{ContainerConfig, ContainerRuntime, SandboxConfig, Signal};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("supervise") {
        std::process::exit(supervisor_main(args[2..].to_vec()));
    }
    let n: usize = args
        .iter()
        .skip(1)
        .find_map(|s| s.parse().ok())
        .unwrap_or(200);
    let flags: Vec<String> = args
        .iter()
        .skip(1)
        .filter(|a| a.starts_with("--"))
        .cloned()
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(bench(n, &flags));
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn status_kib(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A sandbox named after its ID.
fn sandbox(id: &str) -> SandboxConfig {
    SandboxConfig {
        id: id.to_string(),
        hostname: id.to_string(),
        ..Default::default()
    }
}

/// Creates sandbox `id` with one container from `cfg` and starts it.
async fn run_one(runtime: &ProcessRuntime, id: &str, cfg: ContainerConfig) {
    runtime.create_sandbox(sandbox(id)).await.expect("sandbox");
    let c = runtime.create_container(id, cfg).await.expect("create");
    runtime.start_container(&c).await.expect("start");
}

#[allow(clippy::disallowed_methods)] // a benchmark measures real elapsed time
fn now() -> Instant {
    Instant::now()
}

async fn bench(n: usize, flags: &[String]) {
    let base = flags
        .iter()
        .find_map(|f| f.strip_prefix("--state-in="))
        .unwrap_or("/tmp");
    let dir = tempfile::Builder::new()
        .prefix("pvbench")
        .tempdir_in(base)
        .expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut cfg = match flags.iter().find_map(|f| f.strip_prefix("--supervisor=")) {
        // Another supervisor program (e.g. the small podvisor-runtime-supervisor binary).
        // `--supervisor=<program>[,<leading arg>…]`, e.g. `--supervisor=/path/podvisor,supervise`.
        Some(spec) => {
            let mut parts = spec.split(',').map(str::to_string);
            let program = parts.next().unwrap_or_default();
            ProcessRuntimeConfig::new(dir.path().join("rt"), program, parts.collect())
        }
        None => ProcessRuntimeConfig::new(dir.path().join("rt"), exe, vec!["supervise".into()]),
    };
    for f in flags {
        match f.as_str() {
            "--no-cgroups" => cfg.cgroups = false,
            "--no-namespaces" => cfg.namespaces = false,
            "--no-spares" => cfg.spare_supervisors = 0,
            // Every container gets the agent's default termination-message file (a bind
            // mount at /dev/termination-log, read after the exit).
            "--termination-message" => {}
            f if f.starts_with("--state-in=") || f.starts_with("--supervisor=") => {}
            other => panic!(
                "unknown flag {other} (--no-cgroups, --no-namespaces, --no-spares, --termination-message, --state-in=<dir>, --supervisor=<program>)"
            ),
        }
    }
    println!("configuration: {flags:?}");
    let runtime = ProcessRuntime::new(cfg).await.expect("runtime");
    let command = vec!["sleep".to_string(), "1000".to_string()];
    let termination_message = flags.iter().any(|f| f == "--termination-message").then(|| {
        podvisor_runtime::TerminationMessage {
            path: "/dev/termination-log".into(),
            fallback_to_logs_on_error: false,
        }
    });
    let container = |name: &str| ContainerConfig {
        name: name.into(),
        command: command.clone(),
        termination_message: termination_message.clone(),
        ..Default::default()
    };

    // Warm up (page cache, cgroup parents).
    for i in 0..5 {
        let id = format!("warm-{i}");
        run_one(&runtime, &id, container("c")).await;
        runtime.remove_sandbox(&id).await.expect("remove");
    }

    // Floor: plain fork+exec of the same command until it runs (std's spawn returns after exec).
    let mut floor = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = now();
        let mut child = std::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        floor.push(t0.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }

    // Sandbox + container start until the process runs; then stop by TERM until the exit event.
    let mut start = Vec::with_capacity(n);
    let mut phase_sandbox = Vec::with_capacity(n);
    let mut phase_create = Vec::with_capacity(n);
    let mut stop = Vec::with_capacity(n);
    let mut remove = Vec::with_capacity(n);
    let mut events = runtime.subscribe();
    let spares = !flags.iter().any(|f| f == "--no-spares");
    for i in 0..n {
        let id = format!("bench-{i}");
        if spares {
            // Steady state: a spare supervisor is ready (back-to-back creation faster than
            // the pool refills measures the cold path instead; see --no-spares).
            for _ in 0..500 {
                if runtime.spares_ready() > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let t0 = now();
        runtime.create_sandbox(sandbox(&id)).await.expect("sandbox");
        phase_sandbox.push(t0.elapsed());
        let ta = now();
        let c = runtime
            .create_container(&id, container("c"))
            .await
            .expect("create");
        phase_create.push(ta.elapsed());
        runtime.start_container(&c).await.expect("start");
        start.push(t0.elapsed());
        let t1 = now();
        runtime.signal(&c, Signal::TERM).await.expect("signal");
        loop {
            let ev = events.recv().await.expect("event");
            if ev.container_id == c {
                assert_eq!(ev.status.exit_code, 143);
                break;
            }
        }
        stop.push(t1.elapsed());
        let t2 = now();
        runtime.remove_sandbox(&id).await.expect("remove");
        remove.push(t2.elapsed());
    }

    // Supervisor memory with 20 live sandboxes, one running container each.
    let k = 20;
    let mut rss = Vec::new();
    let mut pss = Vec::new();
    for i in 0..k {
        let id = format!("mem-{i}");
        run_one(&runtime, &id, container("c")).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One control round trip (connect, ping, answer) with a blocking client, for reference.
    let mut rpc = Vec::new();
    {
        use std::io::{BufRead, Write};
        let sock = runtime.sandbox_dir("mem-0").join("sock");
        for _ in 0..n {
            let t = now();
            let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
            s.write_all(b"{\"op\":\"ping\"}\n").expect("write");
            let mut line = String::new();
            std::io::BufReader::new(&s)
                .read_line(&mut line)
                .expect("read");
            rpc.push(t.elapsed());
        }
    }
    for i in 0..k {
        let pid = runtime
            .supervisor_pid(&format!("mem-{i}"))
            .expect("supervisor");
        rss.push(status_kib(pid, "status", "VmRSS:"));
        pss.push(status_kib(pid, "smaps_rollup", "Pss:"));
    }
    for i in 0..k {
        runtime
            .remove_sandbox(&format!("mem-{i}"))
            .await
            .expect("remove");
    }

    let (f50, f99) = (percentile(&mut floor, 0.5), percentile(&mut floor, 0.99));
    let (s50, s99) = (percentile(&mut start, 0.5), percentile(&mut start, 0.99));
    let (t50, t99) = (percentile(&mut stop, 0.5), percentile(&mut stop, 0.99));
    let (r50, r99) = (percentile(&mut remove, 0.5), percentile(&mut remove, 0.99));
    let rss_avg = rss.iter().sum::<u64>() / rss.len() as u64;
    let pss_avg = pss.iter().sum::<u64>() / pss.len() as u64;
    println!("iterations: {n}");
    println!(
        "floor fork+exec `sleep 1000`:   p50 {}  p99 {}",
        ms(f50),
        ms(f99)
    );
    println!(
        "sandbox+container start:        p50 {}  p99 {}",
        ms(s50),
        ms(s99)
    );
    println!(
        "start / floor:                  p50 {:.2}x  p99 {:.2}x",
        s50.as_secs_f64() / f50.as_secs_f64(),
        s99.as_secs_f64() / f99.as_secs_f64()
    );
    println!(
        "  of which create_sandbox p50 {}, create_container p50 {}",
        ms(percentile(&mut phase_sandbox, 0.5)),
        ms(percentile(&mut phase_create, 0.5))
    );
    println!(
        "stop (TERM → exit event):       p50 {}  p99 {}",
        ms(t50),
        ms(t99)
    );
    println!(
        "sandbox removal:                p50 {}  p99 {}",
        ms(r50),
        ms(r99)
    );
    let (p50, p99) = (percentile(&mut rpc, 0.5), percentile(&mut rpc, 0.99));
    println!(
        "control round trip (ping):      p50 {}  p99 {}",
        ms(p50),
        ms(p99)
    );
    println!("supervisor RSS per sandbox:     {rss_avg} KiB (PSS {pss_avg} KiB), {k} sandboxes");
}
