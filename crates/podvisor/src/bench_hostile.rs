//! `podvisor bench --only hostile`: the API server under hostile input and slow clients.
//!
//! Against a real `podvisor up` (child process, TLS on 127.0.0.1), over raw HTTP/1.1 so
//! requests can be cut short:
//!
//! 1. **hostile bodies**: rounds of the bodies that once cost the most (100k-level JSON and
//!    YAML nesting, a YAML alias bomb, 3 MiB of tiny JSON values, a JSON patch of `copy`s
//!    from a node token on its own Node, a 100 MB body, a watch with the largest
//!    `timeoutSeconds`), as the admin, as a node and without a token; every request must be
//!    answered (never 5xx, never dropped). Reported: requests survived and the slowest
//!    refusal.
//! 2. **memory**: RSS of `up` idle before, and after the hostile run once it settled.
//! 3. **slow clients**: 600 connections of one node token that send headers and a few bytes
//!    of a body then stall, plus 1,010 connections that send half a request line without a
//!    token; meanwhile the admin lists ConfigMaps. Reported: admin p50/p99 and errors.

#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TLS client of one `up`.
#[derive(Clone)]
pub struct Target {
    port: u16,
    tls: tokio_rustls::TlsConnector,
}

impl Target {
    /// Trusts the CA in `data_dir/ca.crt`.
    pub fn new(port: u16, data_dir: &std::path::Path) -> anyhow::Result<Target> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let pem = std::fs::read(data_dir.join("ca.crt")).context("read ca.crt")?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots.add(c?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Target {
            port,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    async fn connect(&self) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        Ok(self.tls.connect(name, tcp).await?)
    }

    /// One request on a fresh connection; returns the status code (0 if the connection was
    /// closed without an answer) and the time to the answer.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Duration)> {
        let mut s = self.connect().await?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let started = Instant::now();
        s.write_all(head.as_bytes()).await?;
        // The server may answer (413, 401) before the whole body is sent: stop writing then.
        let _ = s.write_all(body).await;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf))
            .await
            .context("no answer within 60 s")?
            .unwrap_or(0);
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&buf[..n]);
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((code, took))
    }
}

fn hostile_bodies() -> Vec<(&'static str, &'static str, String, &'static str, Vec<u8>)> {
    let deep_json = "[".repeat(100_000).into_bytes();
    let deep_yaml = format!("a: {}", "[".repeat(100_000)).into_bytes();
    let block_yaml: String = (0..3000)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 9].join(",")
        ));
    }
    let many = format!("{{\"a\":[{}0]}}", "0,".repeat(1_500_000)).into_bytes();
    let copies: Vec<Value> = (0..40)
        .map(|i| json!({"op":"copy","from":"/metadata","path":format!("/metadata/annotations/c{i}")}))
        .collect();
    let cms = "/api/v1/namespaces/default/configmaps";
    vec![
        (
            "deep JSON",
            "POST",
            cms.into(),
            "application/json",
            deep_json.clone(),
        ),
        (
            "deep YAML flow",
            "POST",
            cms.into(),
            "application/yaml",
            deep_yaml.clone(),
        ),
        (
            "deep YAML block",
            "POST",
            cms.into(),
            "application/yaml",
            block_yaml.into_bytes(),
        ),
        (
            "YAML alias bomb",
            "POST",
            cms.into(),
            "application/yaml",
            bomb.into_bytes(),
        ),
        (
            "3 MiB of values",
            "POST",
            cms.into(),
            "application/json",
            many,
        ),
        (
            "apply deep YAML",
            "PATCH",
            format!("{cms}/x?fieldManager=m"),
            "application/apply-patch+yaml",
            deep_yaml,
        ),
        (
            "JSON patch copies",
            "PATCH",
            "/api/v1/nodes/NODE".into(),
            "application/json-patch+json",
            serde_json::to_vec(&copies).unwrap_or_default(),
        ),
        (
            "watch timeout i64::MAX",
            "GET",
            format!("{cms}?watch=1&timeoutSeconds=9223372036854775807"),
            "application/json",
            Vec::new(),
        ),
        (
            "100 MB body",
            "POST",
            cms.into(),
            "application/json",
            vec![b' '; 100 << 20],
        ),
    ]
}

/// Runs the three parts; `rss` reads the server's RSS in KiB.
pub async fn run(
    target: &Target,
    admin: &str,
    node: &str,
    node_name: &str,
    rss: impl Fn() -> u64,
    quick: bool,
) -> anyhow::Result<Value> {
    let idle_rss = rss();
    let rounds = if quick { 5 } else { 25 };
    let mut total = 0usize;
    let mut survived = 0usize;
    let mut worst: (Duration, String) = (Duration::ZERO, String::new());
    let bodies = hostile_bodies();
    for _ in 0..rounds {
        for (what, method, path, ct, body) in &bodies {
            let path = path.replace("NODE", node_name);
            for (who, token) in [
                ("admin", Some(admin)),
                ("node", Some(node)),
                ("anonymous", None),
            ] {
                total += 1;
                match target.request(method, &path, token, ct, body).await {
                    Ok((code, took)) if (200..500).contains(&code) => {
                        survived += 1;
                        if took > worst.0 && !path.contains("watch=1") {
                            worst = (took, format!("{what} as {who} ({code})"));
                        }
                    }
                    Ok((code, took)) => {
                        println!("  {what} as {who}: {code} after {took:?}");
                    }
                    Err(e) => println!("  {what} as {who}: {e:#}"),
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_rss = rss();

    // Slow clients.
    let mut held = Vec::new();
    for _ in 0..600 {
        let Ok(mut s) = target.connect().await else {
            break;
        };
        let head = format!(
            "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {node}\r\nContent-Type: application/json\r\n\
             Content-Length: 100000\r\n\r\n{{\"metadata\":"
        );
        if s.write_all(head.as_bytes()).await.is_ok() {
            held.push(s);
        }
    }
    let mut raw = Vec::new();
    for _ in 0..1010 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", target.port)).await {
            let _ = s.write_all(b"\x16\x03\x01").await;
            raw.push(s);
        }
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for _ in 0..if quick { 100 } else { 300 } {
        match target
            .request(
                "GET",
                "/api/v1/namespaces/default/configmaps?limit=10",
                Some(admin),
                "application/json",
                &[],
            )
            .await
        {
            Ok((200, took)) => lat.push(took.as_secs_f64() * 1000.0),
            _ => errors += 1,
        }
    }
    let slow_open = held.len();
    drop(held);
    drop(raw);
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((p / 100.0) * (lat.len().max(1) as f64 - 1.0)).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (p50, p99) = (pct(50.0), pct(99.0));
    println!("## hostile input and slow clients");
    println!("requests survived: {survived} of {total} ({rounds} rounds)");
    println!(
        "slowest refusal: {:.1} ms ({})",
        worst.0.as_secs_f64() * 1000.0,
        worst.1
    );
    println!(
        "RSS idle {:.1} MB, after the hostile run {:.1} MB ({:.2}x)",
        idle_rss as f64 / 1024.0,
        after_rss as f64 / 1024.0,
        after_rss as f64 / idle_rss.max(1) as f64
    );
    println!(
        "admin GET under {slow_open} slow node connections + 1010 half-open: p50 {p50:.1} ms, p99 {p99:.1} ms, {errors} errors\n"
    );
    Ok(json!({
        "requests": total,
        "survived": survived,
        "slowest_refusal_ms": (worst.0.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        "slowest_refusal": worst.1,
        "idle_rss_mb": idle_rss as f64 / 1024.0,
        "after_rss_mb": after_rss as f64 / 1024.0,
        "slow_connections": slow_open,
        "admin_p50_ms": p50,
        "admin_p99_ms": p99,
        "admin_errors": errors,
    }))
}
