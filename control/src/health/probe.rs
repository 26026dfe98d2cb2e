//! One check of one server: a TCP connection, or an HTTP/1.0 request
//! (over TLS for `https`) whose answer must have an expected status and,
//! if configured, contain a string.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Target;
use crate::profile::{CheckKind, HealthSection};

/// Most bytes of an HTTP answer read (the status line, headers and the
/// start of the body).
const MAX_ANSWER: usize = 64 * 1024;

/// How a check connects: over TCP, or TLS with this client configuration.
#[derive(Clone)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS.
    Tls(tokio_rustls::TlsConnector),
}

impl Transport {
    /// The transport of `check`: its TLS configuration (CA file read now),
    /// for `https`.
    pub fn of(check: &HealthSection) -> Result<Transport, String> {
        if check.check != CheckKind::Https {
            return Ok(Transport::Tcp);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let cfg = match &check.ca {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let certs = rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
                    .collect::<Result<Vec<CertificateDer<'static>>, _>>()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("{}: no CA certificate", path.display()));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth(),
        };
        Ok(Transport::Tls(tokio_rustls::TlsConnector::from(Arc::new(
            cfg,
        ))))
    }
}

/// A check without `ca` verifies the handshake's signatures but not who
/// signed the certificate.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Runs one check of `t` over `transport` within its timeout: `Ok`, or
/// why it failed.
pub async fn probe(t: &Target, transport: &Transport) -> Result<(), String> {
    match tokio::time::timeout(t.check.timeout(), check(t, transport)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", t.check.timeout_ms)),
    }
}

async fn check(t: &Target, transport: &Transport) -> Result<(), String> {
    let s = TcpStream::connect(SocketAddr::new(t.addr, t.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if t.check.check == CheckKind::Tcp {
        return Ok(());
    }
    let host = match (&t.check.host, t.addr) {
        (Some(h), _) => h.clone(),
        (None, IpAddr::V6(a)) => format!("[{a}]"),
        (None, IpAddr::V4(a)) => a.to_string(),
    };
    match transport {
        Transport::Tcp => http(t, s, &host).await,
        Transport::Tls(connector) => {
            let name = match (&t.check.sni, &t.check.host) {
                (Some(n), _) | (None, Some(n)) => ServerName::try_from(n.clone())
                    .map_err(|e| format!("server name `{n}`: {e}"))?,
                (None, None) => ServerName::IpAddress(t.addr.into()),
            };
            let tls = connector
                .connect(name, s)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            http(t, tls, &host).await
        }
    }
}

/// The HTTP request and the judgement of its answer, over `s`.
async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    t: &Target,
    mut s: S,
    host: &str,
) -> Result<(), String> {
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: tack-health-check\r\nConnection: close\r\n\r\n",
        t.check.path
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::with_capacity(4096);
    let mut limited = (&mut s).take(MAX_ANSWER as u64);
    limited
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    judge(&t.check, &answer)
}

/// Whether HTTP answer `a` passes `check`.
fn judge(check: &HealthSection, a: &[u8]) -> Result<(), String> {
    let line_end = a
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("no HTTP status line")?;
    let line = std::str::from_utf8(&a[..line_end]).map_err(|_| "no HTTP status line")?;
    let mut parts = line.split(' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("bad status line `{line}`"));
    };
    let status: u16 = match (version.starts_with("HTTP/1."), code.parse()) {
        (true, Ok(s)) => s,
        _ => return Err(format!("bad status line `{line}`")),
    };
    if !check.status_passes(status) {
        return Err(format!("status {status}"));
    }
    if let Some(want) = &check.body {
        let body = a
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(&[][..], |i| &a[i + 4..]);
        if !body
            .windows(want.len().max(1))
            .any(|w| w == want.as_bytes())
        {
            return Err(format!("the body does not contain `{want}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(expect: Vec<u16>, body: Option<&str>) -> HealthSection {
        HealthSection {
            check: CheckKind::Http,
            port: None,
            path: "/".into(),
            host: None,
            expect,
            body: body.map(str::to_string),
            ca: None,
            sni: None,
            passive: None,
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 3,
        }
    }

    #[test]
    fn answers_are_judged_by_status_and_body() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nall ok";
        assert_eq!(judge(&http(vec![], None), ok), Ok(()));
        assert_eq!(judge(&http(vec![], Some("ok")), ok), Ok(()));
        assert_eq!(
            judge(&http(vec![], Some("ready")), ok),
            Err("the body does not contain `ready`".into())
        );
        assert_eq!(judge(&http(vec![204], None), ok), Err("status 200".into()));
        let unavailable = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert_eq!(
            judge(&http(vec![], None), unavailable),
            Err("status 503".into())
        );
        // 3xx passes by default.
        assert_eq!(
            judge(&http(vec![], None), b"HTTP/1.0 302 Found\r\n\r\n"),
            Ok(())
        );
        for junk in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 abc\r\n",
            b"\xff\xfe\r\n",
        ] {
            assert!(judge(&http(vec![], None), junk).is_err());
        }
    }
}
