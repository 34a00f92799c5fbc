//! The dataplane side effect: one `nft -f -` transaction per sync, behind [`Dataplane`],
//! with a recording fake beside it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use tokio::io::AsyncWriteExt as _;

/// Applies rule transactions atomically.
#[async_trait::async_trait]
pub trait Dataplane: Send + Sync + 'static {
    /// Applies one transaction (all or nothing); the error is the tool's message.
    async fn apply(&self, script: &str) -> Result<(), String>;
}

/// The `nft` command line tool.
#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
}

/// Where `nft` is looked for besides `PATH`.
const SBIN: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

impl Nft {
    /// `nft` from `PATH` or the sbin directories; None when it is not installed.
    pub fn find() -> Option<Nft> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(SBIN.iter().map(PathBuf::from))
            .map(|d| d.join("nft"))
            .find(|p| is_executable(p))
            .map(|program| Nft { program })
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[async_trait::async_trait]
impl Dataplane for Nft {
    async fn apply(&self, script: &str) -> Result<(), String> {
        let mut child = tokio::process::Command::new(&self.program)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(|e| format!("writing to nft: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("waiting for nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            // The first lines say what failed; the rest echoes the script.
            Err(err.lines().take(6).collect::<Vec<_>>().join("\n"))
        }
    }
}

/// A recording fake: keeps every transaction; fails the ones a test scripts to fail.
#[derive(Debug, Default)]
pub struct FakeDataplane {
    /// Transactions applied, in order.
    pub applied: Mutex<Vec<String>>,
    /// Transactions still to fail (each failure consumes one).
    pub failures: Mutex<u32>,
}

impl FakeDataplane {
    /// The transactions applied so far.
    pub fn scripts(&self) -> Vec<String> {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait::async_trait]
impl Dataplane for FakeDataplane {
    async fn apply(&self, script: &str) -> Result<(), String> {
        {
            let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if *f > 0 {
                *f -= 1;
                return Err("scripted failure".into());
            }
        }
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(script.to_string());
        Ok(())
    }
}
