//! The podvisor binary: `up`, `server`, `agent`, `kubeconfig`, `token`, `bench` and the
//! internal `supervise`.

mod bench;
mod bench_authz;
mod bench_hostile;
mod bench_network;
mod bench_podman;
mod bench_proc;
mod bench_services;
mod bench_sim;
mod bench_store;
mod cli;
mod config;
mod failover;
mod image_cmd;
mod kubeconfig;
mod pod_access;
mod run;

use std::process::ExitCode;

use cli::{Cli, Command};

fn main() -> ExitCode {
    #[allow(clippy::disallowed_methods)] // `up` reports its start-up time
    let started = std::time::Instant::now();
    let cli = match config::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    // The supervisor is a small, single-threaded process: no tokio runtime, no tracing setup.
    if let Command::Supervise(args) = &cli.command {
        return ExitCode::from(supervise(args.args.clone()));
    }
    // The benchmark prints tables; only warnings from the components interleave with them.
    let default_level = if matches!(cli.command, Command::Bench(_)) {
        "warn"
    } else {
        "info,kube=warn,hyper=warn"
    };
    init_tracing(default_level);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli, started)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PODVISOR_LOG")
        // The DNS server library logs every query at info: only its warnings by default.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{default_level},hickory_server=warn"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Raises the soft limit of open files to the hard limit: every client connection, watch and
/// pod log is a descriptor, and the common soft default (1024) lets a few hundred slow
/// clients make the API server unreachable.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}

fn supervise(args: Vec<String>) -> u8 {
    podvisor_runtime::process::supervisor_main(args).clamp(0, 255) as u8
}

async fn dispatch(cli: Cli, started: std::time::Instant) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => run::up(args, started).await,
        Command::Server(args) => run::server(args).await,
        Command::Agent(args) => run::agent(args).await,
        Command::Token(cli::TokenCommand::Create(args)) => run::token_create(args).await,
        Command::Kubeconfig(args) => {
            let dir = config::data_dir(args.dirs.data_dir.as_deref())?;
            let path = dir.join(kubeconfig::FILE_NAME);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!(
                    "no kubeconfig at {} ({e}); start `podvisor up` or `podvisor server` with this data dir first",
                    path.display()
                )
            })?;
            print!("{text}");
            Ok(())
        }
        Command::Bench(args) => bench::run(args).await,
        Command::Image(cmd) => image_cmd::run(cmd),
        Command::Supervise(args) => std::process::exit(i32::from(supervise(args.args))),
    }
}
