//! `tack-proxy` binary: run the L7 load-balancing server from a YAML file, or
//! (`tack-proxy ctl ...`) talk to a running one's admin API.
#![forbid(unsafe_code)]

mod ctl;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc: the request path allocates small, short-lived buffers on every request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tack's L7 load-balancing server.
///
/// Serve: `tack-proxy --config FILE` (SIGHUP re-reads FILE: new connections get
/// the new configuration, open ones finish on theirs, a broken file is refused
/// and the running configuration kept; SIGTERM/SIGINT drain and stop).
/// Runtime changes: `tack-proxy ctl --help` (the admin API, `admin:` in FILE).
#[derive(Parser, Debug)]
#[command(name = "tack-proxy", version, about, long_about)]
struct Args {
    /// YAML configuration file (a file of its own, or a Tack profile with a `proxy:` section).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Check the configuration (and read the files it names) and exit.
    #[arg(long)]
    check: bool,
    /// Worker threads (default: one per CPU; 1 runs a single-threaded runtime).
    #[arg(long)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Talk to a running tack-proxy's admin API: server state, weight, add,
    /// remove, reload, session tables.
    Ctl(ctl::Ctl),
}

fn load(path: &PathBuf) -> Result<tack_proxy::config::ProxyConfig, String> {
    tack_proxy::config::ProxyConfig::from_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Serve until SIGTERM or SIGINT; SIGHUP re-reads the file (a configuration
/// that cannot be used is refused and the running one kept).
async fn serve(path: PathBuf) -> Result<(), tack_proxy::Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let p = tack_proxy::Proxy::start_file(&path).await?;
    let (mut term, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(h)) => (t, h),
        (Err(e), _) | (_, Err(e)) => {
            log::error!("cannot handle signals: {e}");
            p.shutdown().await;
            return Ok(());
        }
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                // Errors are logged (and counted) by the reload itself.
                let _ = p.reload().await;
            }
        }
    }
    log::info!("shutting down");
    p.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let config = match (args.command, args.config) {
        (Some(Command::Ctl(c)), _) => return ctl::run(c),
        (None, Some(p)) => p,
        (None, None) => {
            eprintln!("tack-proxy: --config is required");
            return ExitCode::from(2);
        }
    };
    let cfg = match load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tack-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        if let Err(e) = tack_proxy::check_files(&cfg) {
            eprintln!("tack-proxy: {}: {e}", config.display());
            return ExitCode::from(2);
        }
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    // One thread: a current-thread runtime (no work-stealing machinery), the
    // per-core configuration the benchmark measures; more: the multi-thread runtime.
    let mut rt = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all();
    let rt = match rt.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tack-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    drop(cfg);
    let res = rt.block_on(serve(config));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tack-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
