//! SSL contexts to servers: the rustls client side of re-encryption. One
//! [`ServerContext`] per server: its client configuration (CA or no
//! verification, ALPN `http/1.1`, session resumption), the name it sends and
//! verifies, and counters of its handshakes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::tls::ServerTls;
use crate::tls::certs::load_roots;
use crate::tls::{TlsError, provider};

/// Accepts any server certificate (`verify: false`), still checking that the
/// handshake is signed by the key of the certificate presented.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Counters of one SSL context.
#[derive(Debug, Default)]
pub struct ContextStats {
    /// Handshakes completed with the server.
    pub handshakes: AtomicU64,
    /// Of which resumed an earlier session.
    pub resumed: AtomicU64,
    /// Handshakes that failed (refused certificate, protocol error, timeout).
    pub failures: AtomicU64,
}

/// The client configuration shared by a backend's contexts.
pub fn client_config(cfg: &ServerTls) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let mut cc = if cfg.verify {
        let roots = match &cfg.ca {
            Some(ca) => load_roots(ca)?,
            None => RootCertStore::empty(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    };
    cc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cc))
}

/// One server's SSL context: where its TLS endpoint is, the name it is reached
/// by, and its handshakes.
pub struct ServerContext {
    connector: TlsConnector,
    name: ServerName<'static>,
    /// The server's TLS endpoint.
    pub addr: SocketAddr,
    /// Counters.
    pub stats: ContextStats,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ServerContext {
    /// The context of a server at `addr` reached as `sni` (its address when none).
    pub fn new(
        config: Arc<ClientConfig>,
        addr: SocketAddr,
        sni: Option<&str>,
    ) -> Result<ServerContext, TlsError> {
        let name = match sni {
            Some(n) => ServerName::try_from(n.to_string())
                .map_err(|_| TlsError::Rustls(format!("{n:?} is not a valid server name")))?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        Ok(ServerContext {
            connector: TlsConnector::from(config),
            name,
            addr,
            stats: ContextStats::default(),
        })
    }

    /// The name sent and verified.
    pub fn server_name(&self) -> String {
        self.name.to_str().into_owned()
    }

    /// Run the client handshake over a connected stream.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        match self.connector.connect(self.name.clone(), tcp).await {
            Ok(s) => {
                self.stats.handshakes.fetch_add(1, Ordering::Relaxed);
                if s.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
                    self.stats.resumed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(s)
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}
