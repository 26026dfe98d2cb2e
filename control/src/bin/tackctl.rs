//! `tackctl`: the admin CLI of a running `tack`, over the management API on
//! its local socket.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tack_control::api::client::call;
use tack_control::api::types::{ApiError, Service};
use tack_control::profile::DEFAULT_SOCKET;
use tack_control::say_raw;
use tack_control::tackctl::tables::{render, render_top};
use tack_control::tackctl::words::{Call, Shape, USAGE, parse};

/// Administer a running Tack appliance.
#[derive(Parser, Debug)]
#[command(
    name = "tackctl",
    version,
    about = "Administer a running Tack appliance over its management API (local socket).",
    after_help = USAGE
)]
struct Cli {
    /// The appliance's management socket.
    #[arg(short, long, default_value = DEFAULT_SOCKET, value_name = "PATH")]
    socket: PathBuf,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
    /// `top`: seconds between refreshes.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    interval: f64,
    /// `top`: refreshes before it ends (default: until interrupted).
    #[arg(long, value_name = "N")]
    iterations: Option<u64>,
    /// The command and its arguments (see below).
    #[arg(trailing_var_arg = true)]
    command: Vec<String>,
}

/// Sends `c`; the answer's body, or the appliance's refusal.
fn send(socket: &std::path::Path, c: &Call) -> Result<bytes::Bytes, String> {
    let body = c.body.as_ref().map(|b| b.to_string().into_bytes());
    let answer = call(socket, c.method.clone(), &c.uri, body).map_err(|e| e.to_string())?;
    if answer.status.is_success() {
        return Ok(answer.body);
    }
    match serde_json::from_slice::<ApiError>(&answer.body) {
        Ok(e) => Err(e.error),
        Err(_) => Err(format!(
            "{}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )),
    }
}

/// `tackctl top`: the per-server view, refreshed every `interval` seconds.
fn top(cli: &Cli) -> Result<(), String> {
    let interval = Duration::from_secs_f64(cli.interval.clamp(0.1, 3600.0));
    let services = parse(&["services"]).map_err(|e| e.0)?;
    let mut before: Option<(Instant, Vec<Service>)> = None;
    let mut n = 0u64;
    loop {
        let body = send(&cli.socket, &services)?;
        let now: Vec<Service> = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let (old, secs) = match &before {
            Some((t0, b)) => (Some(b.as_slice()), t.duration_since(*t0).as_secs_f64()),
            None => (None, 0.0),
        };
        if cli.json {
            say_raw!("{}\n", String::from_utf8_lossy(&body));
        } else {
            // Clear the screen and go home, as top(1) does.
            say_raw!("\x1b[2J\x1b[H{}", render_top(&now, old, secs));
        }
        before = Some((t, now));
        n += 1;
        if cli.iterations.is_some_and(|max| n >= max) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let words: Vec<&str> = cli.command.iter().map(String::as_str).collect();
    let result = if words == ["top"] {
        top(&cli)
    } else {
        match parse(&words) {
            Err(e) => {
                eprintln!("tackctl: {e}");
                return ExitCode::from(2);
            }
            Ok(c) => send(&cli.socket, &c).and_then(|body| {
                if cli.json && c.shape != Shape::Metrics {
                    say_raw!("{}\n", String::from_utf8_lossy(&body));
                    Ok(())
                } else {
                    render(c.shape, &body)
                        .map(|t| say_raw!("{t}"))
                        .map_err(|e| e.to_string())
                }
            }),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tackctl: {e}");
            ExitCode::FAILURE
        }
    }
}
