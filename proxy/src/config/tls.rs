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

/// A TCP frontend that passes TLS through without terminating it: it reads the
/// ClientHello, routes on its server name (SNI) and keeps clients that resume a
/// TLS 1.2 session on the server that issued it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughConfig {
    /// Name (logs, metrics).
    pub name: String,
    /// Addresses to listen on.
    pub bind: Vec<std::net::SocketAddr>,
    /// Server name → backend, first match; a name is exact or `*.suffix`.
    #[serde(default)]
    pub routes: Vec<SniRoute>,
    /// Backend of connections without SNI or whose name no route matches
    /// (absent: such connections are closed).
    #[serde(default)]
    pub default_backend: Option<String>,
    /// The TLS 1.2 session-ID table.
    #[serde(default)]
    pub session_table: SessionTableSize,
    /// Client-address affinity for clients the session ID cannot place.
    #[serde(default)]
    pub affinity: Option<Affinity>,
    /// Time allowed for the ClientHello to arrive, and for the server's
    /// ServerHello.
    #[serde(default = "default_hello_timeout")]
    pub hello_timeout: Dur,
    /// A connection on which neither side sent anything for this long is closed.
    #[serde(default = "default_pt_idle")]
    pub idle_timeout: Dur,
}

/// A route of a pass-through frontend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniRoute {
    /// `name.example` (exact, case-insensitive) or `*.example` (any name under it).
    pub sni: String,
    /// The backend.
    pub backend: String,
}

/// Size and expiry of a pass-through table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionTableSize {
    /// Most entries (least recently used evicted).
    #[serde(default = "default_pt_table")]
    pub size: usize,
    /// Entries unused this long expire (keep it at least the servers' session
    /// cache lifetime).
    #[serde(default = "default_pt_expire")]
    pub expire: Dur,
}

impl Default for SessionTableSize {
    fn default() -> Self {
        SessionTableSize {
            size: default_pt_table(),
            expire: default_pt_expire(),
        }
    }
}

/// Which part of the client's address keeps it on a server.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AffinityKey {
    /// The whole address.
    Source,
    /// The first `ipv4_prefix` / `ipv6_prefix` bits.
    Prefix,
    /// IPv4: the address's natural class network (A: /8, B: /16, C: /24; the
    /// others whole); IPv6: `ipv6_prefix`.
    Natural,
}

/// Client-address affinity (for TLS 1.3 clients, whose legacy session ID is
/// random, or for every client).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    /// What identifies a client.
    pub key: AffinityKey,
    /// IPv4 prefix length for `prefix`.
    #[serde(default = "default_v4_prefix")]
    pub ipv4_prefix: u8,
    /// IPv6 prefix length for `prefix` and `natural`.
    #[serde(default = "default_v6_prefix")]
    pub ipv6_prefix: u8,
    /// Apply to every client, not only those offering TLS 1.3.
    #[serde(default)]
    pub all_clients: bool,
    /// The affinity table.
    #[serde(default)]
    pub table: SessionTableSize,
}

fn default_hello_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_pt_idle() -> Dur {
    Dur(Duration::from_secs(300))
}
fn default_pt_table() -> usize {
    100_000
}
fn default_pt_expire() -> Dur {
    Dur(Duration::from_secs(600))
}
fn default_v4_prefix() -> u8 {
    24
}
fn default_v6_prefix() -> u8 {
    64
}

impl PassthroughConfig {
    /// Cross-field rules (backend names are checked by the caller);
    /// `Err((field, message))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.bind.is_empty() {
            return Err(("bind".into(), "at least one address is required".into()));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let name = r.sni.strip_prefix("*.").unwrap_or(&r.sni);
            let ok = !name.is_empty()
                && !name.contains('*')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err((
                    format!("routes[{i}].sni"),
                    format!("{:?} is not a server name or *.suffix", r.sni),
                ));
            }
        }
        if self.routes.is_empty() && self.default_backend.is_none() {
            return Err((
                "routes".into(),
                "at least one route or a default_backend is required".into(),
            ));
        }
        if let Some(a) = &self.affinity
            && (a.ipv4_prefix > 32 || a.ipv6_prefix > 128)
        {
            return Err((
                "affinity".into(),
                "ipv4_prefix is at most 32, ipv6_prefix at most 128".into(),
            ));
        }
        for (field, d) in [
            ("hello_timeout", self.hello_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d.0.is_zero() {
                return Err((field.into(), "must be greater than zero".into()));
            }
        }
        Ok(())
    }

    /// The backends the frontend names (routes, then the default).
    pub fn backends(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .map(|r| r.backend.as_str())
            .chain(self.default_backend.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ProxyConfig;

    const BACKEND: &str =
        "backends:\n  - name: app\n    servers:\n      - { name: s1, address: \"127.0.0.1:1\" }\n";

    fn err(yaml: &str) -> String {
        ProxyConfig::from_yaml_str(yaml).unwrap_err().to_string()
    }

    #[test]
    fn passthrough_only_configuration_and_its_errors() {
        let ok = format!(
            "passthrough:\n  - {{ name: t, bind: [\"127.0.0.1:0\"], default_backend: app }}\n{BACKEND}"
        );
        ProxyConfig::from_yaml_str(&ok).unwrap();
        let e = err(&ok.replace("default_backend: app", "default_backend: nope"));
        assert!(
            e.starts_with("passthrough[0].routes: no backend named \"nope\""),
            "{e}"
        );
        let e = err(&ok.replace(
            "default_backend: app",
            "routes: [{ sni: \"a*.test\", backend: app }]",
        ));
        assert!(e.starts_with("passthrough[0].routes[0].sni"), "{e}");
        let e = err(&ok.replace("default_backend: app", "routes: []"));
        assert!(e.contains("a default_backend"), "{e}");
        let e = err(&ok.replace(
            "default_backend: app",
            "default_backend: app, affinity: { key: prefix, ipv4_prefix: 33 }",
        ));
        assert!(e.starts_with("passthrough[0].affinity"), "{e}");
        let e = err(BACKEND);
        assert!(e.contains("at least one frontend"), "{e}");
    }

    #[test]
    fn tls_settings_are_checked() {
        let fe = "frontends:\n  - { name: w, bind: [\"127.0.0.1:0\"], backend: app, tls: { certificates: [] } }\n";
        let e = err(&format!("{fe}{BACKEND}"));
        assert!(e.starts_with("frontends[0].tls.certificates"), "{e}");
        let fe = "frontends:\n  - { name: w, bind: [\"127.0.0.1:0\"], backend: app }\n";
        let with = |st: &str| {
            format!(
                "{fe}{}",
                BACKEND.replace("servers:", &format!("server_tls: {st}\n    servers:"))
            )
        };
        assert!(err(&with("{ sni: a.test }")).starts_with("backends[0].server_tls.ca"));
        assert!(
            err(&with("{ verify: false, sni: \"not a name\" }"))
                .starts_with("backends[0].server_tls.sni")
        );
        ProxyConfig::from_yaml_str(&with("{ verify: false }")).unwrap();
        let e = err(&format!(
            "{fe}{}",
            BACKEND.replace(
                "address: \"127.0.0.1:1\"",
                "address: \"127.0.0.1:1\", tls_sni: x.test"
            )
        ));
        assert!(e.contains("need the backend's server_tls"), "{e}");
    }
}
