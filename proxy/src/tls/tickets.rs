//! Session-ticket keys shared by the proxies of an array.
//!
//! The key file has HAProxy's `tls-ticket-keys` format: one base64 key a line
//! (48 or 80 bytes: `openssl rand 80 | openssl base64 -A`), blank lines and `#`
//! comments ignored. The last three keys are in use: every one of them decrypts,
//! the next-to-last encrypts (the only key, when there is one). To rotate,
//! append a new key to the file on every proxy: each one can decrypt tickets
//! under it at once, and encrypts under it only at the next rotation, so the
//! proxies need not reload at the same moment. A ticket is the key's name (its
//! first 16 bytes), a random 96-bit nonce and the session state sealed with
//! AES-256-GCM under a key derived (HKDF-SHA256) from the rest of the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use crate::tls::TlsError;
use crate::tls::files::Stamp;

/// Keys of the file taken into use (the last ones).
const KEYS_IN_USE: usize = 3;
const NAME_LEN: usize = 16;
const HKDF_INFO: &[u8] = b"tack-proxy session ticket key";

struct TicketKey {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKey").finish_non_exhaustive()
    }
}

/// The keys in use: `enc` indexes the one that encrypts.
#[derive(Debug)]
struct KeySet {
    keys: Vec<TicketKey>,
    enc: usize,
}

fn parse_keys(path: &Path, text: &str) -> Result<KeySet, TlsError> {
    let mut raw = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line)
            .map_err(|e| TlsError::file(path, format!("line {}: not base64: {e}", n + 1)))?;
        if bytes.len() != 48 && bytes.len() != 80 {
            return Err(TlsError::file(
                path,
                format!(
                    "line {}: a key is 48 or 80 bytes, this one {}",
                    n + 1,
                    bytes.len()
                ),
            ));
        }
        raw.push(bytes);
    }
    if raw.is_empty() {
        return Err(TlsError::file(path, "no ticket key in the file"));
    }
    let used = &raw[raw.len().saturating_sub(KEYS_IN_USE)..];
    let keys = used
        .iter()
        .map(|k| {
            let mut name = [0u8; NAME_LEN];
            name.copy_from_slice(&k[..NAME_LEN]);
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &name).extract(&k[NAME_LEN..]);
            let okm = prk
                .expand(&[HKDF_INFO], &AES_256_GCM)
                .map_err(|_| TlsError::file(path, "key derivation failed"))?;
            Ok(TicketKey {
                name,
                aead: LessSafeKey::new(UnboundKey::from(okm)),
            })
        })
        .collect::<Result<Vec<_>, TlsError>>()?;
    let enc = keys.len().saturating_sub(2);
    Ok(KeySet { keys, enc })
}

/// Session tickets sealed with keys from a file, reloaded when it changes.
#[derive(Debug)]
pub struct SharedTicketer {
    path: PathBuf,
    lifetime: u32,
    keys: ArcSwap<KeySet>,
    stamp: std::sync::Mutex<Stamp>,
    rng: SystemRandom,
}

impl SharedTicketer {
    /// Load the key file; tickets announce `lifetime` seconds.
    pub fn new(path: &Path, lifetime: u32) -> Result<SharedTicketer, TlsError> {
        let stamp = Stamp::of([&path.to_path_buf()]);
        let keys = Self::read(path)?;
        Ok(SharedTicketer {
            path: path.to_path_buf(),
            lifetime,
            keys: ArcSwap::from_pointee(keys),
            stamp: std::sync::Mutex::new(stamp),
            rng: SystemRandom::new(),
        })
    }

    fn read(path: &Path) -> Result<KeySet, TlsError> {
        let text = std::fs::read_to_string(path).map_err(|e| TlsError::file(path, e))?;
        parse_keys(path, &text)
    }

    /// Reload when the file changed; an error keeps the keys in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = Stamp::of([&self.path]);
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == now {
            return Ok(false);
        }
        *last = now;
        let keys = Self::read(&self.path)?;
        self.keys.store(Arc::new(keys));
        Ok(true)
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let set = self.keys.load();
        let key = &set.keys[set.enc];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.name),
                &mut sealed,
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < NAME_LEN + NONCE_LEN + 16 {
            return None;
        }
        let (name, rest) = cipher.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let set = self.keys.load();
        let key = set.keys.iter().find(|k| k.name == name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(&key.name), &mut buf)
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(seed: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([seed; 80])
    }

    fn ticketer(lines: &[String]) -> (tempfile::TempDir, SharedTicketer) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys");
        std::fs::write(&p, lines.join("\n")).unwrap();
        let t = SharedTicketer::new(&p, 300).unwrap();
        (dir, t)
    }

    #[test]
    fn tickets_open_on_another_proxy_with_the_same_file_and_survive_rotation() {
        let (_d1, a) = ticketer(&[key_line(1)]);
        let (_d2, b) = ticketer(&[key_line(1)]);
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
        // Tampering is refused.
        let mut bad = t.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(b.decrypt(&bad).is_none());
        assert!(b.decrypt(&t[..20]).is_none());
        // After appending a key, b still encrypts with key 1 (the next-to-last)
        // and a, not yet rotated, opens it; b opens what a made before.
        let (_d3, b2) = ticketer(&[key_line(1), key_line(2)]);
        assert_eq!(a.decrypt(&b2.encrypt(b"x").unwrap()).unwrap(), b"x");
        assert_eq!(b2.decrypt(&t).unwrap(), b"session state");
        // Three rotations later key 1 is out of use.
        let (_d4, c) = ticketer(&[key_line(1), key_line(2), key_line(3), key_line(4)]);
        assert!(c.decrypt(&t).is_none());
        // A different file: nothing opens.
        let (_d5, other) = ticketer(&[key_line(9)]);
        assert!(other.decrypt(&t).is_none());
    }

    #[test]
    fn bad_key_files_are_refused_with_the_line() {
        let p = Path::new("k");
        let e = parse_keys(p, "# c\n\nnot base64!\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        let short = base64::engine::general_purpose::STANDARD.encode([0u8; 20]);
        let e = parse_keys(p, &short).unwrap_err().to_string();
        assert!(e.contains("48 or 80"), "{e}");
        assert!(parse_keys(p, "").is_err());
    }

    #[test]
    fn reload_takes_a_changed_file_and_keeps_keys_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys");
        std::fs::write(&p, key_line(1)).unwrap();
        let t = SharedTicketer::new(&p, 300).unwrap();
        let old = t.encrypt(b"s").unwrap();
        assert!(!t.reload_if_changed().unwrap());
        std::fs::write(&p, "garbage garbage").unwrap();
        assert!(t.reload_if_changed().is_err());
        assert_eq!(t.decrypt(&old).unwrap(), b"s");
        std::fs::write(
            &p,
            format!("{}\n{}\n{}\n", key_line(2), key_line(3), key_line(4)),
        )
        .unwrap();
        assert!(t.reload_if_changed().unwrap());
        assert!(t.decrypt(&old).is_none());
    }
}
