//! A process runtime over a fresh directory with one sandbox, shared by the streaming
//! tests (exec and attach).

use podvisor_runtime::process::{ProcessRuntime, ProcessRuntimeConfig};
use podvisor_runtime::{ContainerRuntime, SandboxConfig};

const SUPERVISOR: &str = env!("CARGO_BIN_EXE_podvisor-runtime-supervisor");

/// A runtime whose state lives in a temporary directory (prefix `prefix`), with no spare
/// supervisors, and one sandbox named after `hint` and this process.
pub struct SandboxEnv {
    pub rt: ProcessRuntime,
    pub sandbox: String,
    _dir: tempfile::TempDir,
}

impl SandboxEnv {
    pub async fn new(prefix: &str, hint: &str) -> SandboxEnv {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        let mut config = ProcessRuntimeConfig::new(dir.path().join("rt"), SUPERVISOR, vec![]);
        config.spare_supervisors = 0;
        let rt = ProcessRuntime::new(config).await.expect("runtime");
        let sandbox = format!("{hint}-{}", std::process::id());
        rt.create_sandbox(SandboxConfig {
            id: sandbox.clone(),
            hostname: hint.into(),
            ..Default::default()
        })
        .await
        .expect("sandbox");
        SandboxEnv {
            rt,
            sandbox,
            _dir: dir,
        }
    }
}
