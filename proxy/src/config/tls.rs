//! The TLS parts of the configuration: termination on a frontend
//! ([`FrontendTls`]) and SSL contexts to a backend's servers ([`ServerTls`]).
//!
//! Files (certificates, keys, CA bundles, ticket keys) are named here and read
//! when the proxy starts (and again when they change on disk); `--check` reads
//! them too.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Dur;

/// TLS termination on a frontend: every connection accepted on its addresses is
/// a TLS connection; requests arriving over it are secure (seed 003).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendTls {
    /// Certificates with their keys. The server name a client asks for (SNI)
    /// selects the first certificate valid for it; the first certificate is the
    /// default (clients without SNI, or names no certificate covers).
    pub certificates: Vec<CertificateFiles>,
    /// Lowest protocol version accepted.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Session tickets (stateless resumption).
    #[serde(default)]
    pub tickets: TicketSettings,
    /// Sessions kept for TLS 1.2 clients resuming by session ID (0: none).
    #[serde(default = "default_session_cache")]
    pub session_cache: usize,
    /// Verify client certificates against a CA.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// How often certificate, key and ticket-key files are checked for changes;
    /// changed files are loaded for new connections (established ones go on).
    #[serde(default = "default_reload_interval")]
    pub reload_interval: Dur,
    /// Time allowed for a client's handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: Dur,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// The certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "1.3")]
    Tls13,
}

/// Session tickets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketSettings {
    /// A file of ticket keys shared by the proxies of an array (HAProxy's
    /// `tls-ticket-keys` format: one base64 key of 48 or 80 bytes a line; the
    /// next-to-last key encrypts, every key decrypts; append a key to rotate).
    /// Without it each process makes its own keys and rotates them itself.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Lifetime announced to clients.
    #[serde(default = "default_ticket_lifetime")]
    pub lifetime: Dur,
    /// Turn tickets off (resumption then only by TLS 1.2 session ID).
    #[serde(default)]
    pub disabled: bool,
}

impl Default for TicketSettings {
    fn default() -> Self {
        TicketSettings {
            key_file: None,
            lifetime: default_ticket_lifetime(),
            disabled: false,
        }
    }
}

/// Client-certificate verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// CA certificates (PEM) client certificates must chain to.
    pub ca: PathBuf,
    /// Refuse clients without a certificate (false: a certificate is verified
    /// when presented, and clients without one are served).
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}
fn default_session_cache() -> usize {
    20_000
}
fn default_reload_interval() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_handshake_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_ticket_lifetime() -> Dur {
    Dur(Duration::from_secs(7200))
}

impl FrontendTls {
    /// Cross-field rules; `Err((field, message))` names the field under `tls`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.certificates.is_empty() {
            return Err((
                "certificates",
                "at least one certificate is required".into(),
            ));
        }
        for (field, d) in [
            ("reload_interval", self.reload_interval),
            ("handshake_timeout", self.handshake_timeout),
            ("tickets.lifetime", self.tickets.lifetime),
        ] {
            if d.0.is_zero() {
                return Err((field, "must be greater than zero".into()));
            }
        }
        if self.tickets.lifetime.0.as_secs() > u64::from(u32::MAX) {
            return Err(("tickets.lifetime", "too long".into()));
        }
        Ok(())
    }
}

/// SSL contexts to a backend's servers (seed 003's "tunnels"): each server gets
/// a TLS client context and a pool of connections kept established through it.
/// Secure requests go through it; so do all requests to a server without
/// `tls_address` (it speaks TLS on its `address`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// CA certificates (PEM) server certificates must chain to.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Verify server certificates (false: accept any certificate; the
    /// connection is encrypted but the server not authenticated).
    #[serde(default = "yes")]
    pub verify: bool,
    /// Server name sent (SNI) and verified, for servers without their own
    /// `tls_sni`; absent: the server's address (no SNI is sent for an address,
    /// and the certificate must name the address).
    #[serde(default)]
    pub sni: Option<String>,
    /// Connections kept established to each server through its context.
    #[serde(default = "default_tunnels")]
    pub pool: usize,
}

fn default_tunnels() -> usize {
    4
}

impl ServerTls {
    /// Cross-field rules; `Err((field, message))` names the field under `server_tls`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.verify && self.ca.is_none() {
            return Err((
                "ca",
                "a CA file is needed to verify servers (or verify: false)".into(),
            ));
        }
        if let Some(n) = &self.sni {
            check_server_name(n).map_err(|m| ("sni", m))?;
        }
        Ok(())
    }
}

/// Whether `name` can be sent as SNI (a DNS name or an IP address).
pub fn check_server_name(name: &str) -> Result<(), String> {
    rustls::pki_types::ServerName::try_from(name)
        .map(|_| ())
        .map_err(|_| format!("{name:?} is not a DNS name or an IP address"))
}
