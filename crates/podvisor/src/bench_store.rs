//! The bench's `store` part: the API's create rate on each store backend, in the same run.
//!
//! Two `podvisor server` children are measured one after the other, each driven over TLS by
//! kube-rs exactly as the `api` part drives `up`: one on the embedded redb store (its default),
//! one on a real `etcd` the bench starts on free 127.0.0.1 ports with a temporary data dir.
//! Beside them, etcd's own put rate with the same concurrency and a value the size of a stored
//! pod, from a plain etcd client: the ceiling the etcd backend can approach. Every write is
//! durable before it is acknowledged on both backends (redb: its log's `fdatasync`; etcd: its
//! WAL's).
//!
//! Needs the binary's `etcd` feature and an `etcd` binary (`apt-get install etcd-server`);
//! without either it prints one line saying what is missing.
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use serde_json::Value;

/// Runs the part: `creates` pods from 32 clients (and half as many from one) on each backend.
pub async fn run(creates: usize) -> anyhow::Result<Option<Value>> {
    println!("## store backends (podvisor server over TLS, pod creates/s)");
    imp::run(creates).await
}

#[cfg(not(feature = "etcd"))]
mod imp {
    use serde_json::Value;

    pub async fn run(_creates: usize) -> anyhow::Result<Option<Value>> {
        println!(
            "not measured: this podvisor was built without the `etcd` feature \
             (cargo build --release -p podvisor --features etcd)\n"
        );
        Ok(None)
    }
}

#[cfg(feature = "etcd")]
mod imp {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::Pod;
    use kube::Api;
    use serde_json::{Value, json};

    use crate::bench::{create_unschedulable, ensure_namespace, round};
    use crate::bench_proc::{Guarded, UpOptions, UpProcess};

    /// The `etcd` binary: `$ETCD_BIN`, else the first on PATH.
    fn etcd_binary() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("ETCD_BIN") {
            return Some(PathBuf::from(p));
        }
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    }

    fn free_port() -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    /// A throwaway etcd: a child process with a temporary data dir.
    struct Etcd {
        _proc: Guarded,
        endpoint: String,
        _dir: tempfile::TempDir,
    }

    async fn start_etcd(bin: &Path) -> anyhow::Result<Etcd> {
        let dir = tempfile::Builder::new()
            .prefix("podvisor-bench-etcd")
            .tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let mut cmd = Command::new(bin);
        cmd.arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=bench={peer_url}"))
            .arg("--max-request-bytes=2097152")
            .arg("--log-outputs=stderr")
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut proc = Guarded::spawn(&mut cmd, "etcd", Duration::from_secs(10))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if proc.exited() {
                bail!(
                    "etcd exited at start; its log: {}",
                    dir.path().join("etcd.log").display()
                );
            }
            if let Ok(mut c) = etcd_client::Client::connect([&endpoint], None).await
                && c.status().await.is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("etcd did not answer within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Etcd {
            _proc: proc,
            endpoint,
            _dir: dir,
        })
    }

    /// Pod creates/s over TLS with 1 client (`n / 2` pods) and 32 clients (`n` pods).
    async fn creates(up: &UpProcess, n: usize) -> anyhow::Result<(f64, f64, usize)> {
        ensure_namespace(&up.client, "bench-api").await?;
        let api: Api<Pod> = Api::namespaced(up.client.clone(), "bench-api");
        let t = Instant::now();
        create_unschedulable(&api, 0..n / 2, 1).await?;
        let one = (n / 2) as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        create_unschedulable(&api, n / 2..n / 2 + n, 32).await?;
        let many = n as f64 / t.elapsed().as_secs_f64();
        // What a stored pod weighs: the value etcd's own put rate is measured with.
        let stored = serde_json::to_vec(&api.get("api-0").await?)?.len();
        Ok((one, many, stored))
    }

    /// etcd's own puts/s: distinct keys, `value` bytes each, from `clients` concurrent clients
    /// (sharing one connection, as the etcd backend does).
    async fn etcd_puts(
        endpoint: &str,
        n: usize,
        clients: usize,
        value: usize,
    ) -> anyhow::Result<f64> {
        let client = etcd_client::Client::connect([endpoint], None).await?;
        let body = vec![b'x'; value];
        let t = Instant::now();
        futures::stream::iter(0..n)
            .map(|i| {
                let mut c = client.clone();
                let body = body.clone();
                async move {
                    c.put(format!("/bench-raw/{clients}/{i:08}"), body, None)
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(clients)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }

    pub async fn run(n: usize) -> anyhow::Result<Option<Value>> {
        let Some(bin) = etcd_binary() else {
            println!("not measured: no `etcd` on PATH (apt-get install etcd-server)\n");
            return Ok(None);
        };
        let (redb_server, _) = UpProcess::launch(UpOptions {
            subcommand: "server",
            ..UpOptions::up("")
        })
        .await
        .context("podvisor server on redb")?;
        let (redb_1, redb_32, stored) = creates(&redb_server, n).await?;
        redb_server.stop();

        let etcd = start_etcd(&bin).await?;
        let (etcd_server, _) = UpProcess::launch(UpOptions {
            subcommand: "server",
            args: vec!["--store".into(), format!("etcd:{}", etcd.endpoint).into()],
            ..UpOptions::up("")
        })
        .await
        .context("podvisor server on etcd")?;
        let (etcd_1, etcd_32, _) = creates(&etcd_server, n).await?;
        etcd_server.stop();
        let raw_1 = etcd_puts(&etcd.endpoint, n / 2, 1, stored).await?;
        let raw_32 = etcd_puts(&etcd.endpoint, n, 32, stored).await?;
        drop(etcd);

        println!(
            "backend  1 client   32 clients   (pods created: {} + {n})",
            n / 2
        );
        println!("redb     {redb_1:>8.0}   {redb_32:>10.0}");
        println!("etcd     {etcd_1:>8.0}   {etcd_32:>10.0}");
        println!(
            "etcd's own puts/s ({stored}-byte values, same concurrency): {raw_1:.0} / {raw_32:.0}"
        );
        println!(
            "etcd backend / etcd's own put rate: {:.2}x / {:.2}x; redb / etcd backend: {:.2}x / {:.2}x\n",
            etcd_1 / raw_1,
            etcd_32 / raw_32,
            redb_1 / etcd_1,
            redb_32 / etcd_32
        );
        Ok(Some(json!({
            "creates": n, "stored_pod_bytes": stored,
            "redb": {"clients_1": round(redb_1), "clients_32": round(redb_32)},
            "etcd": {"clients_1": round(etcd_1), "clients_32": round(etcd_32)},
            "etcd_raw_puts": {"clients_1": round(raw_1), "clients_32": round(raw_32)},
            "etcd_backend_over_raw_32": round(etcd_32 / raw_32),
        })))
    }
}
