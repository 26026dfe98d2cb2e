//! Certificates of a TLS frontend: PEM files loaded into rustls keys, chosen per
//! connection by the server name the client asks for (SNI), and replaced when
//! their files change on disk without touching established connections.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::tls::CertificateFiles;
use crate::tls::TlsError;
use crate::tls::files::Stamp;

/// Read a PEM certificate chain (leaf first).
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::file(path, e))?;
    if chain.is_empty() {
        return Err(TlsError::file(path, "no certificate in the file"));
    }
    Ok(chain)
}

/// Read a PEM file of CA certificates into a root store.
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_chain(path)? {
        roots
            .add(c)
            .map_err(|e| TlsError::file(path, format!("bad CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Read a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::file(path, e))
}

fn load_pair(
    files: &CertificateFiles,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_chain(&files.cert)?;
    let key = load_key(&files.key)?;
    let ck = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        TlsError::file(
            &files.key,
            format!("does not fit {}: {e}", files.cert.display()),
        )
    })?;
    Ok(Arc::new(ck))
}

/// The DNS names in a certificate's subject alternative names.
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(ee) => ee
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A loaded set of certificates and where each server name goes.
#[derive(Debug)]
pub struct CertSet {
    keys: Vec<Arc<CertifiedKey>>,
    /// Exact names, and wildcard names under `*.` as their parent domain.
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl CertSet {
    /// Load every certificate and key; the first is the default.
    pub fn load(
        files: &[CertificateFiles],
        provider: &CryptoProvider,
    ) -> Result<CertSet, TlsError> {
        let mut set = CertSet {
            keys: Vec::with_capacity(files.len()),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (i, f) in files.iter().enumerate() {
            let ck = load_pair(f, provider)?;
            for name in dns_names(&ck.cert[0]) {
                // The first certificate that names a server wins.
                match name.strip_prefix("*.") {
                    Some(parent) => set.wildcard.entry(parent.to_string()).or_insert(i),
                    None => set.exact.entry(name).or_insert(i),
                };
            }
            set.keys.push(ck);
        }
        Ok(set)
    }

    /// The certificate for a server name (`None`: the default).
    pub fn select(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let i = sni
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|n| {
                self.exact.get(&n).copied().or_else(|| {
                    let parent = n.split_once('.')?.1;
                    self.wildcard.get(parent).copied()
                })
            })
            .unwrap_or(0);
        &self.keys[i]
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty (never once loaded).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The frontend's certificates as rustls sees them: the current set, swapped
/// whole when files change.
#[derive(Debug)]
pub struct CertStore {
    files: Vec<CertificateFiles>,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertSet>,
    stamp: std::sync::Mutex<Stamp>,
}

impl CertStore {
    /// Load the files.
    pub fn new(
        files: &[CertificateFiles],
        provider: Arc<CryptoProvider>,
    ) -> Result<CertStore, TlsError> {
        let stamp = Stamp::of(files.iter().flat_map(|f| [&f.cert, &f.key]));
        let set = CertSet::load(files, &provider)?;
        Ok(CertStore {
            files: files.to_vec(),
            provider,
            current: ArcSwap::from_pointee(set),
            stamp: std::sync::Mutex::new(stamp),
        })
    }

    /// Reload when a file changed since the last load. `Ok(true)`: a new set is
    /// in use; an error leaves the current set in place (and is retried at the
    /// next call, as the files may still be being written).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = Stamp::of(self.files.iter().flat_map(|f| [&f.cert, &f.key]));
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == now {
            return Ok(false);
        }
        // A file that does not load is retried when it changes again (it may
        // still be being written).
        *last = now;
        let set = CertSet::load(&self.files, &self.provider)?;
        self.current.store(Arc::new(set));
        Ok(true)
    }

    /// The set in use.
    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().select(hello.server_name()).clone())
    }
}
