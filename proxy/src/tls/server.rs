//! TLS termination on a frontend: the rustls server context (certificates by
//! SNI, ALPN `h2`/`http/1.1`, TLS 1.2 and 1.3, session IDs and tickets, client
//! certificates), the handshake of each accepted connection, and the reload of
//! changed files.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{HandshakeKind, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::tls::{FrontendTls, TlsVersion};
use crate::tls::certs::{CertStore, load_roots};
use crate::tls::tickets::SharedTicketer;
use crate::tls::{TlsError, provider};

/// Counters of a TLS frontend.
#[derive(Debug, Default)]
pub struct TlsStats {
    /// Handshakes completed.
    pub handshakes: AtomicU64,
    /// Of which resumed a session (ticket or session ID).
    pub resumed: AtomicU64,
    /// Of which negotiated TLS 1.3 (the others TLS 1.2).
    pub tls13: AtomicU64,
    /// Of which negotiated `h2` by ALPN.
    pub alpn_h2: AtomicU64,
    /// Handshakes that failed (bad client hello, no common cipher, refused client
    /// certificate, connection closed...).
    pub failures: AtomicU64,
    /// Handshakes that did not complete within `handshake_timeout`.
    pub timeouts: AtomicU64,
    /// Times changed certificate or ticket-key files were loaded.
    pub reloads: AtomicU64,
    /// Times changed files could not be loaded (the previous ones stay in use).
    pub reload_errors: AtomicU64,
}

/// A completed client handshake.
#[derive(Debug)]
pub struct Accepted {
    /// The decrypted stream.
    pub stream: TlsStream<TcpStream>,
    /// Whether ALPN chose `h2`.
    pub h2: bool,
}

/// The TLS side of a frontend.
pub struct TlsTerminator {
    acceptor: TlsAcceptor,
    certs: Arc<CertStore>,
    tickets: Option<Arc<SharedTicketer>>,
    handshake_timeout: Duration,
    /// How often files are checked for changes ([`TlsTerminator::reload`]).
    pub reload_interval: Duration,
    /// Counters.
    pub stats: TlsStats,
}

static TLS12_UP: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];
static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match min {
        TlsVersion::Tls12 => &TLS12_UP,
        TlsVersion::Tls13 => &TLS13_ONLY,
    }
}

impl std::fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTerminator")
            .field("certs", &self.certs)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl TlsTerminator {
    /// Load the files and build the server context; `http2`: offer `h2` by ALPN.
    pub fn new(cfg: &FrontendTls, http2: bool) -> Result<TlsTerminator, TlsError> {
        let provider = provider();
        let certs = Arc::new(CertStore::new(&cfg.certificates, provider.clone())?);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions(cfg.min_version))
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match &cfg.client_auth {
            Some(ca) => {
                let roots = Arc::new(load_roots(&ca.ca)?);
                let v = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let v = if ca.required {
                    v
                } else {
                    v.allow_unauthenticated()
                };
                let v = v.build().map_err(|e| TlsError::file(&ca.ca, e))?;
                builder.with_client_cert_verifier(v)
            }
            None => builder.with_no_client_auth(),
        };
        let mut sc = builder.with_cert_resolver(certs.clone());
        sc.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        sc.session_storage = if cfg.session_cache == 0 {
            Arc::new(NoServerSessionStorage {})
        } else {
            ServerSessionMemoryCache::new(cfg.session_cache)
        };
        let mut tickets = None;
        if !cfg.tickets.disabled {
            sc.ticketer = match &cfg.tickets.key_file {
                Some(path) => {
                    let lifetime =
                        u32::try_from(cfg.tickets.lifetime.0.as_secs()).unwrap_or(u32::MAX);
                    let t = Arc::new(SharedTicketer::new(path, lifetime)?);
                    tickets = Some(t.clone());
                    t
                }
                None => rustls::crypto::ring::Ticketer::new()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?,
            };
        }
        Ok(TlsTerminator {
            acceptor: TlsAcceptor::from(Arc::new(sc)),
            certs,
            tickets,
            handshake_timeout: cfg.handshake_timeout.0,
            reload_interval: cfg.reload_interval.0,
            stats: TlsStats::default(),
        })
    }

    /// The certificates in use.
    pub fn certs(&self) -> &Arc<CertStore> {
        &self.certs
    }

    /// Run the server side of the handshake on an accepted connection.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Accepted> {
        let stream =
            match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
                Err(_) => {
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timeout",
                    ));
                }
            };
        let (_, conn) = stream.get_ref();
        let h2 = conn.alpn_protocol() == Some(b"h2");
        let s = &self.stats;
        s.handshakes.fetch_add(1, Ordering::Relaxed);
        if conn.handshake_kind() == Some(HandshakeKind::Resumed) {
            s.resumed.fetch_add(1, Ordering::Relaxed);
        }
        if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
            s.tls13.fetch_add(1, Ordering::Relaxed);
        }
        if h2 {
            s.alpn_h2.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Accepted { stream, h2 })
    }

    /// Load certificates, keys and ticket keys whose files changed; new
    /// connections get them, established ones keep what they have.
    pub fn reload(&self, frontend: &str) {
        let mut results = vec![("certificates", self.certs.reload_if_changed())];
        if let Some(t) = &self.tickets {
            results.push(("ticket keys", t.reload_if_changed()));
        }
        for (what, r) in results {
            match r {
                Ok(false) => {}
                Ok(true) => {
                    self.stats.reloads.fetch_add(1, Ordering::Relaxed);
                    log::info!("frontend {frontend}: {what} reloaded");
                }
                Err(e) => {
                    self.stats.reload_errors.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "frontend {frontend}: {what} not reloaded (the previous ones stay in use): {e}"
                    );
                }
            }
        }
    }
}
