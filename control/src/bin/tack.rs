//! `tack`: run the Tack load-balancing appliance from a YAML profile.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};
use tack_control::profile::Profile;
use tack_control::runtime::Appliance;

/// Tack: a DPDK load-balancing appliance.
#[derive(Parser, Debug)]
#[command(name = "tack", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the appliance on a profile until SIGINT or SIGTERM.
    Run {
        /// The YAML profile.
        #[arg(short, long, value_name = "PROFILE.yaml")]
        config: PathBuf,
    },
    /// Check a profile and print the EAL arguments it gives, without running.
    Check {
        /// The YAML profile.
        #[arg(short, long, value_name = "PROFILE.yaml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    // DPDK's own log lines go to the `dpdk` target; show them with RUST_LOG=dpdk=info.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,dpdk=off"))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Profile::load(&config) {
            Ok(p) => {
                println!("{}: ok", config.display());
                println!("EAL arguments: {}", p.eal_args().join(" "));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tack: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let profile = match Profile::load(&config) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("tack: {e}");
                    return ExitCode::from(2);
                }
            };
            run(&profile)
        }
    }
}

fn run(profile: &Profile) -> ExitCode {
    let quit = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, quit.clone()) {
            eprintln!("tack: cannot handle signal {sig}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let app = match Appliance::start(profile) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tack: {e}");
            return ExitCode::FAILURE;
        }
    };
    for p in app.ports() {
        println!(
            "tack: port {} up, mac {}",
            p.name,
            tack_dataplane::wire::EthernetAddress(p.mac)
        );
    }
    println!(
        "tack: running {} worker(s); SIGINT or SIGTERM stops",
        profile.workers.len()
    );
    app.control_loop(&quit);
    println!("tack: stopping");
    let report = app.shutdown();
    print!("{}", report.render());
    ExitCode::SUCCESS
}
