//! `tackctl`: the admin CLI of a running `tack`, over its local management socket.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tack_control::mgmt::request;
use tack_control::profile::DEFAULT_SOCKET;
use tack_control::say_raw;

/// Administer a running Tack appliance.
///
/// Commands:
///   status                                   ports, workers, services
///   counters                                 every worker counter
///   services                                 services, servers, weights, states, open connections
///   redirects                                redirect services' servers (URLs, directed, backup), SYN-proxied services, their counters
///   connections [N | flush]                  list (first N) or flush connections
///   sticky [show]                            sticky bindings
///   sticky flush [SERVICE]                   flush sticky bindings
///   sticky SERVICE MINUTES [NETWORK]         natural-class persistence (LocalDirector `sticky`)
///   neighbours                               ARP/NDP table
///   server SERVICE SERVER state up|drain|maint|down
///   server SERVICE SERVER weight N
///   server SERVICE add ADDR[:PORT] [weight N]
///   server SERVICE remove SERVER
///   reload                                   re-read the profile file
///   cluster                                  cluster nodes, membership, sync counters
#[derive(Parser, Debug)]
#[command(name = "tackctl", version, about, verbatim_doc_comment)]
struct Cli {
    /// The appliance's management socket.
    #[arg(short, long, default_value = DEFAULT_SOCKET, value_name = "PATH")]
    socket: PathBuf,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match request(&cli.socket, &cli.command.join(" ")) {
        Ok(text) => {
            say_raw!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tackctl: {e}");
            ExitCode::FAILURE
        }
    }
}
