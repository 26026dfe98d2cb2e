//! The runtime admin API's configuration (`admin:`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The admin API (`tack-proxy ctl`): server state, weight, servers added and
/// removed, reload, session tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to serve the API on; a loopback address by default.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// File holding the bearer token clients must send
    /// (`Authorization: Bearer <token>`); required when `listen` is not a
    /// loopback address.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9181))
}

impl AdminConfig {
    /// Check the settings: an address reachable from elsewhere needs a token.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.listen.ip().is_loopback() && self.token_file.is_none() {
            return Err((
                "token_file",
                format!(
                    "the admin API on {} is reachable from other hosts: give a token_file",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}
