//! The sandbox supervisor as a small standalone binary, for the runtime crate's own tests and
//! benchmark (the podvisor binary runs the same entry point as `podvisor supervise`).
//!
//! `podvisor-runtime-supervisor --dir <sandbox dir>` runs the supervisor.
//! `podvisor-runtime-supervisor test-agent <state dir> <sandbox id> <command…>` acts as a
//! minimal agent for tests: it creates the sandbox and a container running `command`, prints
//! the container ID on stdout and then waits forever (tests kill it with SIGKILL).

use std::io::Write;
use std::process::ExitCode;

use podvisor_runtime::process::{ProcessRuntime, ProcessRuntimeConfig, supervisor_main};
use podvisor_runtime::{ContainerConfig, ContainerRuntime, SandboxConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("test-agent") {
        return test_agent(&args[1..]);
    }
    ExitCode::from(supervisor_main(args).clamp(0, 255) as u8)
}

fn test_agent(args: &[String]) -> ExitCode {
    let [state_dir, sandbox, command @ ..] = args else {
        eprintln!("usage: test-agent <state dir> <sandbox id> <command…>");
        return ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let exe = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("current_exe: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = async {
            let runtime =
                ProcessRuntime::new(ProcessRuntimeConfig::new(state_dir, exe, vec![])).await?;
            runtime
                .create_sandbox(SandboxConfig {
                    id: sandbox.clone(),
                    hostname: sandbox.clone(),
                    ..Default::default()
                })
                .await?;
            let id = runtime
                .create_container(
                    sandbox,
                    ContainerConfig {
                        name: "main".into(),
                        command: command.to_vec(),
                        ..Default::default()
                    },
                )
                .await?;
            runtime.start_container(&id).await?;
            Ok::<_, podvisor_runtime::RuntimeError>((runtime, id))
        }
        .await;
        match result {
            Ok((_runtime, id)) => {
                println!("{id}");
                let _ = std::io::stdout().flush();
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
            }
            Err(e) => {
                eprintln!("test-agent: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
