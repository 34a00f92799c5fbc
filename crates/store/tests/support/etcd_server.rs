//! A throwaway etcd server for tests and the benchmark: a real `etcd` process on free
//! 127.0.0.1 ports with a temporary data directory, killed (by its pid) and removed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running etcd server.
pub struct EtcdServer {
    child: Child,
    /// The client URL, `http://127.0.0.1:<port>`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free 127.0.0.1 port")
}

/// The `etcd` binary, or a panic that says how to get it. The etcd backend tests must fail,
/// not skip, where etcd is missing.
fn etcd_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ETCD_BIN") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("etcd");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the `etcd` binary is not on PATH: the etcd backend tests need a real etcd server \
         (install it with `apt-get install -y etcd-server`, or set ETCD_BIN)"
    );
}

impl EtcdServer {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> EtcdServer {
        let bin = etcd_binary();
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir for etcd");
            let (client, peer) = (free_port(), free_port());
            let endpoint = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log file");
            let child = Command::new(&bin)
                .arg("--name=test")
                .arg(format!("--data-dir={}", dir.path().join("data").display()))
                .arg(format!("--listen-client-urls={endpoint}"))
                .arg(format!("--advertise-client-urls={endpoint}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=test={peer_url}"))
                .arg("--max-request-bytes=2097152")
                .arg("--logger=zap")
                .arg("--log-outputs=stderr")
                .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut server = EtcdServer {
                child,
                endpoint,
                _dir: dir,
            };
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(e) => {
                    let log = std::fs::read_to_string(server._dir.path().join("etcd.log"))
                        .unwrap_or_default();
                    last_error = format!("{e}\n{}", tail(&log, 2000));
                }
            }
        }
        panic!("etcd did not start: {last_error}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("etcd exited: {status}"));
            }
            if let Ok(mut client) = etcd_client::Client::connect([&self.endpoint], None).await
                && client.status().await.is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err("etcd did not answer within 20 s".to_string());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Kill exactly the process this server started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
