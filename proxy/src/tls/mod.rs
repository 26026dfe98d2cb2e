//! TLS with rustls (ring provider): termination on frontends ([`server`]), with
//! SNI certificate selection ([`certs`]) and shared session-ticket keys
//! ([`tickets`]).

pub mod certs;
pub mod client;
pub mod files;
pub mod hello;
pub mod server;
pub mod tickets;

use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// A TLS setup error: a file that cannot be used, or a setting rustls refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key, CA or ticket-key file.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("{0}")]
    Rustls(String),
}

impl TlsError {
    /// An error about a file.
    pub fn file(path: &Path, message: impl Display) -> TlsError {
        TlsError::File {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
}

/// The crypto provider every TLS context uses: ring (see docs/proxy.md, "TLS").
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
