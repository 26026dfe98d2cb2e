//! `tack-proxy ctl`: the command-line client of the admin API
//! ([`tack_proxy::api`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::json;

/// Talk to a running tack-proxy's admin API.
#[derive(Args, Debug)]
pub struct Ctl {
    /// The admin API's address (`admin.listen`).
    #[arg(long, default_value = "127.0.0.1:9181")]
    api: SocketAddr,
    /// File holding the bearer token (`admin.token_file`).
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

/// What to do.
#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Every backend's servers: address, weight, state, health, load.
    Servers,
    /// Set a server's administrative state.
    State {
        /// Backend.
        backend: String,
        /// Server.
        server: String,
        /// ready, drain or maint.
        state: String,
    },
    /// Set a server's weight (0..=256; applied as a reload).
    Weight {
        /// Backend.
        backend: String,
        /// Server.
        server: String,
        /// New weight.
        weight: u32,
    },
    /// Add a server to a backend (applied as a reload).
    Add {
        /// Backend.
        backend: String,
        /// The new server's name.
        name: String,
        /// Its address (ip:port).
        address: SocketAddr,
        /// Weight.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// A backup server.
        #[arg(long)]
        backup: bool,
    },
    /// Remove a server from a backend (applied as a reload).
    Remove {
        /// Backend.
        backend: String,
        /// Server.
        server: String,
    },
    /// Re-read the configuration file (as SIGHUP does).
    Reload,
    /// The session tables.
    Sessions,
    /// Reload and API counters.
    Status,
    /// The page caches: use and entries.
    Cache,
    /// Remove a URL, or every URL under a prefix, from the page caches.
    Purge {
        /// A URL (`host/path?query`, a path for any host, or `http(s)://...`).
        #[arg(long, conflicts_with = "prefix", required_unless_present = "prefix")]
        url: Option<String>,
        /// Every URL under this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Only this frontend's cache.
        #[arg(long)]
        frontend: Option<String>,
    },
}

/// Run the command: exit 0 when the API accepted it, 1 when it refused it
/// (its error is printed), 2 when it could not be reached.
pub fn run(c: Ctl) -> ExitCode {
    let token = match &c.token_file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(t) => Some(t.lines().next().unwrap_or("").trim().to_string()),
            Err(e) => {
                eprintln!("tack-proxy ctl: cannot read {}: {e}", f.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let seg = |s: &str| s.replace('/', "%2F");
    let (method, path, body) = match &c.command {
        CtlCommand::Servers => (Method::GET, "/api/servers".to_string(), None),
        CtlCommand::State {
            backend,
            server,
            state,
        } => (
            Method::PUT,
            format!(
                "/api/backends/{}/servers/{}/state",
                seg(backend),
                seg(server)
            ),
            Some(json!({ "state": state })),
        ),
        CtlCommand::Weight {
            backend,
            server,
            weight,
        } => (
            Method::PUT,
            format!(
                "/api/backends/{}/servers/{}/weight",
                seg(backend),
                seg(server)
            ),
            Some(json!({ "weight": weight })),
        ),
        CtlCommand::Add {
            backend,
            name,
            address,
            weight,
            backup,
        } => (
            Method::POST,
            format!("/api/backends/{}/servers", seg(backend)),
            Some(
                json!({ "name": name, "address": address.to_string(), "weight": weight, "backup": backup }),
            ),
        ),
        CtlCommand::Remove { backend, server } => (
            Method::DELETE,
            format!("/api/backends/{}/servers/{}", seg(backend), seg(server)),
            None,
        ),
        CtlCommand::Reload => (Method::POST, "/api/reload".into(), None),
        CtlCommand::Sessions => (Method::GET, "/api/sessions".into(), None),
        CtlCommand::Status => (Method::GET, "/api/status".into(), None),
        CtlCommand::Cache => (Method::GET, "/api/cache".into(), None),
        CtlCommand::Purge {
            url,
            prefix,
            frontend,
        } => (
            Method::POST,
            "/api/cache/purge".into(),
            Some(json!({ "url": url, "prefix": prefix, "frontend": frontend })),
        ),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tack-proxy ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let res = rt.block_on(tack_proxy::api::client::call(
        c.api,
        token.as_deref(),
        method,
        &path,
        body,
    ));
    match res {
        Ok((status, text)) => {
            let v: Option<serde_json::Value> = serde_json::from_str(&text).ok();
            let shown = match &v {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => serde_json::to_string_pretty(v).unwrap_or(text),
                None => text,
            };
            if (200..300).contains(&status) {
                println!("{}", shown.trim_end());
                ExitCode::SUCCESS
            } else {
                eprintln!("tack-proxy ctl: {status}: {}", shown.trim_end());
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("tack-proxy ctl: {e}");
            ExitCode::from(2)
        }
    }
}
