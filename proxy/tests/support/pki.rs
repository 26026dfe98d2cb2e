//! A test PKI: a CA and certificates it issues (rcgen), written as PEM files in a
//! temporary directory, and runners for `openssl s_client` and `curl` over TLS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

/// A CA in a temporary directory.
pub struct Pki {
    /// Where the files are.
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM file).
    pub ca: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Chain (PEM).
    pub cert: PathBuf,
    /// Key (PEM).
    pub key: PathBuf,
}

/// Write `data` to `path` through a rename, as an operator replacing a file would.
pub fn replace_file(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, issuer.pem()).unwrap();
        Pki { dir, ca, issuer }
    }

    fn params(names: &[&str], cn: &str, org: &str) -> CertificateParams {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, org);
        p
    }

    fn write(&self, stem: &str, p: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let out = Issued {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}.key")),
        };
        replace_file(&out.key, key.serialize_pem().as_bytes());
        replace_file(&out.cert, cert.pem().as_bytes());
        out
    }

    /// A server certificate for `names` (the first is the common name), with
    /// organisation `org` (tests tell certificates apart by it), written as
    /// `<stem>.pem` and `<stem>.key` (replacing earlier files of that name).
    pub fn server(&self, stem: &str, names: &[&str], org: &str) -> Issued {
        let mut p = Self::params(names, names[0], org);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.write(stem, p)
    }

    /// A client certificate.
    pub fn client(&self, stem: &str, cn: &str) -> Issued {
        let mut p = Self::params(&[], cn, "clients");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.write(stem, p)
    }

    /// A path in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Run a program with `input` on its standard input; stdout and stderr joined,
/// and whether it succeeded.
pub fn run_with_input(program: &str, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `openssl s_client` to `addr` with `args`, sending one HTTP/1.1 request for
/// `/` that closes the connection; its whole output.
pub fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let connect = addr.to_string();
    let mut all = vec!["s_client", "-connect", &connect, "-ign_eof"];
    all.extend_from_slice(args);
    run_with_input(
        "openssl",
        &all,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .1
}

/// The DER of the first certificate in a PEM file.
pub fn cert_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// An HTTPS/1.1 keep-alive connection made with rustls, verifying against a CA.
pub struct TlsClient {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connect and handshake for `name`.
    pub async fn connect(addr: std::net::SocketAddr, name: &str, ca: &Path) -> TlsClient {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(name.to_string().try_into().unwrap(), tcp)
            .await
            .expect("TLS handshake");
        TlsClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// The server's leaf certificate (DER).
    pub fn peer_cert(&self) -> Vec<u8> {
        self.stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    /// Whether the other side closed the connection within `limit`.
    pub async fn closed_within(&mut self, limit: std::time::Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 256];
        matches!(
            tokio::time::timeout(limit, self.stream.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// GET `path` on the connection; the body of a `200`.
    pub async fn get(&mut self, path: &str) -> String {
        use tokio::io::AsyncWriteExt;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await.unwrap();
        let r = super::read_response(&mut self.stream, &mut self.buf, false)
            .await
            .expect("a response");
        assert_eq!(r.status, 200, "{}", r.head);
        String::from_utf8(r.body).unwrap()
    }
}
