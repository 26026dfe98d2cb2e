//! `tack`: run the Tack load-balancing appliance from a YAML profile.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};
use tack_control::api::serve::ApiServer;
use tack_control::mgmt::MgmtServer;
use tack_control::profile::Profile;
use tack_control::runtime::{Appliance, EalRuntimeDir};
use tack_control::{say, say_raw};

/// The system allocator, advising transparent huge pages for the tables
/// when the profile asks (`runtime.huge_pages`, see `hugepages`).
#[global_allocator]
static ALLOC: tack_control::hugepages::HugePageAlloc = tack_control::hugepages::HugePageAlloc;

/// Tack: a DPDK load-balancing appliance.
#[derive(Parser, Debug)]
#[command(name = "tack", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the appliance on a profile until SIGINT or SIGTERM; SIGHUP reloads the profile.
    ///
    /// The profile is checked first as `tack check` does: exit code 2 with its
    /// line FILE:LINE: FIELD: PROBLEM. Exit code 1 when the appliance cannot
    /// start on this machine (CPUs, EAL, ports, mempool, management socket,
    /// management.http's address or token file).
    Run {
        /// The YAML profile.
        #[arg(short, long, value_name = "PROFILE.yaml")]
        config: PathBuf,
        /// Management socket for tackctl (overrides the profile's management.socket).
        ///
        /// Its directory must exist (only /run/tack is created). A stale socket
        /// there is replaced; a live one or anything that is not a socket is
        /// refused and left alone.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Print the management API's OpenAPI document (JSON), as served at /openapi.json.
    Openapi,
    /// Check a profile as `tack run` does, without running; print the EAL arguments it gives.
    ///
    /// The fields, the lcore map, the services and routes, the ports, and one
    /// worker's pipeline with its tables (built and freed). A profile that does
    /// not check: one line FILE:LINE: FIELD: PROBLEM and exit code 2.
    Check {
        /// The YAML profile.
        #[arg(short, long, value_name = "PROFILE.yaml")]
        config: PathBuf,
    },
    /// Compile the steering program of a port without RSS, and attach it.
    ///
    /// The eBPF program that, run where the frames are sent to the port (the
    /// other end of a multi-queue veth, its tcx egress), puts each frame on
    /// the receive queue of the worker that owns it, by the same rules and
    /// data as the workers steer by (docs/benchmarking-lab.md, "Two workers
    /// in the lab"). Without --attach or --detach: prints its size (and its
    /// instructions with --dump).
    SteeringProgram {
        /// The YAML profile (not needed with --detach).
        #[arg(
            short,
            long,
            value_name = "PROFILE.yaml",
            required_unless_present = "detach"
        )]
        config: Option<PathBuf>,
        /// The profile's port (default: the first).
        #[arg(long, value_name = "NAME")]
        port: Option<String>,
        /// Attach it to this interface (tcx egress, in the current network
        /// namespace), replacing the programs there.
        #[arg(long, value_name = "IFACE")]
        attach: Option<String>,
        /// Remove the tcx egress programs of this interface (no profile read).
        #[arg(long, value_name = "IFACE", conflicts_with = "attach")]
        detach: Option<String>,
        /// Print the instructions (opcode, dst, src, offset, immediate).
        #[arg(long)]
        dump: bool,
    },
}

/// `tack steering-program`.
fn steering_program(
    config: Option<&std::path::Path>,
    port: Option<&str>,
    attach: Option<&str>,
    detach: Option<&str>,
    dump: bool,
) -> ExitCode {
    use tack_control::steering;
    if let Some(iface) = detach {
        return match steering::detach(iface) {
            Ok(n) => {
                say!("{iface}: {n} tcx egress program(s) removed");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tack: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(config) = config else {
        eprintln!("tack: --config is needed");
        return ExitCode::from(2);
    };
    let profile = match Profile::load(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tack: {e}");
            return ExitCode::from(2);
        }
    };
    let (prog, name) = match steering::program_for(&profile, port) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tack: {e}");
            return ExitCode::from(2);
        }
    };
    if dump {
        for i in prog.insns() {
            say!("{:#04x} {} {} {} {}", i.code, i.dst, i.src, i.off, i.imm);
        }
    }
    match attach {
        Some(iface) => match steering::attach(iface, &prog) {
            Ok(removed) => {
                say!(
                    "port `{name}`: steering program ({} instructions) attached to {iface} (tcx egress){}",
                    prog.insns().len(),
                    if removed > 0 {
                        format!(", {removed} program(s) replaced")
                    } else {
                        String::new()
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tack: {e}");
                ExitCode::FAILURE
            }
        },
        None => {
            say!(
                "port `{name}`: steering program of {} instructions",
                prog.insns().len()
            );
            ExitCode::SUCCESS
        }
    }
}

fn main() -> ExitCode {
    // DPDK's own log lines go to the `dpdk` target; show them with RUST_LOG=dpdk=info.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,dpdk=off"))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => match tack_control::api::http::openapi().to_pretty_json() {
            Ok(doc) => {
                say!("{doc}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tack: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check { config } => match Profile::load(&config) {
            Ok(p) => {
                say!("{}: ok", config.display());
                say!("EAL arguments: {}", p.eal_args().join(" "));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tack: {e}");
                ExitCode::from(2)
            }
        },
        Command::SteeringProgram {
            config,
            port,
            attach,
            detach,
            dump,
        } => steering_program(
            config.as_deref(),
            port.as_deref(),
            attach.as_deref(),
            detach.as_deref(),
            dump,
        ),
        Command::Run { config, socket } => {
            let mut profile = match Profile::load(&config) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("tack: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(s) = socket {
                profile.management.socket = s;
            }
            if let Err(e) = profile.check_machine() {
                eprintln!("tack: {}: {e}", config.display());
                return ExitCode::FAILURE;
            }
            if profile.runtime.huge_pages {
                // Before the tables are allocated.
                tack_control::hugepages::enable();
            }
            run(&profile, config)
        }
    }
}

fn run(profile: &Profile, path: PathBuf) -> ExitCode {
    let quit = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    let mut signals = vec![
        (signal_hook::consts::SIGINT, quit.clone()),
        (signal_hook::consts::SIGTERM, quit.clone()),
        (signal_hook::consts::SIGHUP, reload.clone()),
    ];
    for (sig, flag) in signals.drain(..) {
        if let Err(e) = signal_hook::flag::register(sig, flag) {
            eprintln!("tack: cannot handle signal {sig}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mgmt = match MgmtServer::bind(&profile.management.socket) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "tack: management socket {}: {e}",
                profile.management.socket.display()
            );
            return ExitCode::FAILURE;
        }
    };
    // Dropped last, when this function returns: removes EAL's empty runtime directory.
    let _eal_dir = EalRuntimeDir::new(profile);
    let mut app = match Appliance::start(profile) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tack: {e}");
            return ExitCode::FAILURE;
        }
    };
    for p in app.ports() {
        say!(
            "tack: port {} up, mac {}",
            p.name,
            tack_dataplane::wire::EthernetAddress(p.mac)
        );
    }
    say!(
        "tack: tables on {} (transparent huge pages: kernel mode {})",
        if tack_control::hugepages::advised() {
            "huge pages"
        } else {
            "4 KiB pages"
        },
        tack_control::hugepages::thp_mode().unwrap_or_else(|| "unknown".into())
    );
    let (n, period) = app.quarantined();
    if n > 0 {
        say!(
            "tack: {n} full-NAT tuples of the previous instance kept out of the port choice for {} s ({})",
            period.as_secs(),
            profile.fnat_quarantine_path().display()
        );
    }
    if let Some(r) = app.resumed() {
        say!(
            "tack: full-NAT port choice resumed ahead of where the previous instance's stood {} s ago ({}){}",
            r.age.as_secs(),
            profile.fnat_walk_path().display(),
            if r.lapped {
                "; it went round the whole port range within tcp_time_wait, so servers may still hold some of the ports ahead"
            } else {
                ""
            }
        );
    }
    say!(
        "tack: running {} worker(s), {} service(s); management socket {}; SIGHUP reloads, SIGINT or SIGTERM stops",
        profile.workers.len(),
        profile.services.len(),
        profile.management.socket.display()
    );
    // Spawned by this thread now that EAL has pinned it to the main lcore:
    // the management thread inherits that affinity.
    let mgmt = match ApiServer::start(mgmt, profile.management.http.as_ref()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("tack: {e}");
            let _ = app.shutdown();
            return ExitCode::FAILURE;
        }
    };
    if let Some(a) = mgmt.http_addr() {
        say!("tack: management API on http://{a}/ (metrics at /metrics)");
    }
    app.control.set_profile_path(path);
    app.control.run(&quit, &reload, Some(&mgmt));
    drop(mgmt);
    say!("tack: stopping");
    let report = app.shutdown();
    say_raw!("{}", report.render());
    ExitCode::SUCCESS
}
