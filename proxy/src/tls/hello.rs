//! Reading the first handshake messages of a TLS connection without terminating
//! it (pass-through): the ClientHello's server name (SNI), legacy session ID and
//! offered versions, and the ServerHello's session ID and chosen version.
//!
//! Only what routing needs is read; everything else is skipped by its length.
//! Malformed input is refused (`Invalid`), never trusted past its bounds.

/// Largest handshake message read (a ClientHello with large key shares is a
/// few KiB; RFC 8446 allows up to 2^24 but no real hello comes close).
pub const MAX_HELLO: usize = 64 * 1024;

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const EXT_SERVER_NAME: u16 = 0;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const TLS13: u16 = 0x0304;

/// The outcome of parsing what has arrived so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// Parsed.
    Done(T),
    /// More bytes are needed.
    Incomplete,
    /// Not a TLS hello (or a malformed one).
    Invalid(&'static str),
}

/// What routing reads of a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// The server name asked for (lowercase), if any.
    pub sni: Option<String>,
    /// The legacy session ID (TLS 1.2 resumption; random in TLS 1.3 clients).
    pub session_id: Vec<u8>,
    /// Whether the client offers TLS 1.3 (`supported_versions`).
    pub offers_tls13: bool,
}

/// What routing reads of a ServerHello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerHello {
    /// The session ID the server chose (or echoed).
    pub session_id: Vec<u8>,
    /// Whether TLS 1.3 was chosen (then the session ID means nothing).
    pub tls13: bool,
}

/// A cursor over a byte slice that refuses to read past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

/// The first handshake message of type `want`, reassembled from the handshake
/// records at the start of `buf`.
fn handshake_message(buf: &[u8], want: u8) -> Parse<Vec<u8>> {
    let mut msg = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Parse::Incomplete;
        }
        if rest[0] != HANDSHAKE {
            return Parse::Invalid("not a TLS handshake record");
        }
        if rest[1] != 3 {
            return Parse::Invalid("not a TLS record version");
        }
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if len == 0 || len > 16384 + 256 {
            return Parse::Invalid("bad TLS record length");
        }
        if rest.len() < 5 + len {
            return Parse::Incomplete;
        }
        msg.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if msg.len() >= 4 {
            if msg[0] != want {
                return Parse::Invalid("unexpected handshake message");
            }
            let body = u32::from_be_bytes([0, msg[1], msg[2], msg[3]]) as usize;
            if body > MAX_HELLO {
                return Parse::Invalid("hello too large");
            }
            if msg.len() >= 4 + body {
                msg.truncate(4 + body);
                msg.drain(..4);
                return Parse::Done(msg);
            }
        }
    }
}

fn parse_client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    let session_id = r.vec8()?.to_vec();
    if session_id.len() > 32 {
        return None;
    }
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut hello = ClientHello {
        session_id,
        ..ClientHello::default()
    };
    if r.0.is_empty() {
        return Some(hello); // no extensions
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let mut data = Reader(exts.vec16()?);
        match kind {
            EXT_SERVER_NAME => {
                let mut list = Reader(data.vec16()?);
                while !list.0.is_empty() {
                    let name_type = list.u8()?;
                    let name = list.vec16()?;
                    if name_type == 0 && hello.sni.is_none() {
                        let name = std::str::from_utf8(name).ok()?;
                        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                            return None;
                        }
                        hello.sni = Some(name.to_ascii_lowercase());
                    }
                }
            }
            EXT_SUPPORTED_VERSIONS => {
                let mut list = Reader(data.vec8()?);
                while !list.0.is_empty() {
                    if list.u16()? == TLS13 {
                        hello.offers_tls13 = true;
                    }
                }
            }
            _ => {}
        }
    }
    Some(hello)
}

fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader(body);
    r.take(2 + 32)?;
    let session_id = r.vec8()?.to_vec();
    if session_id.len() > 32 {
        return None;
    }
    r.take(2 + 1)?; // cipher suite, compression
    let mut hello = ServerHello {
        session_id,
        tls13: false,
    };
    if r.0.is_empty() {
        return Some(hello);
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let mut data = Reader(exts.vec16()?);
        if kind == EXT_SUPPORTED_VERSIONS && data.u16()? == TLS13 {
            hello.tls13 = true;
        }
    }
    Some(hello)
}

/// The handshake message of type `want` at the start of `buf`, read by `read`.
fn parse<T>(buf: &[u8], want: u8, read: fn(&[u8]) -> Option<T>, bad: &'static str) -> Parse<T> {
    match handshake_message(buf, want) {
        Parse::Done(body) => read(&body).map_or(Parse::Invalid(bad), Parse::Done),
        Parse::Incomplete => Parse::Incomplete,
        Parse::Invalid(m) => Parse::Invalid(m),
    }
}

/// Parse the ClientHello at the start of what a client sent.
pub fn client_hello(buf: &[u8]) -> Parse<ClientHello> {
    parse(
        buf,
        CLIENT_HELLO,
        parse_client_hello,
        "malformed ClientHello",
    )
}

/// Parse the ServerHello at the start of what a server sent.
pub fn server_hello(buf: &[u8]) -> Parse<ServerHello> {
    parse(
        buf,
        SERVER_HELLO,
        parse_server_hello,
        "malformed ServerHello",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A real ClientHello, as rustls writes it.
    fn rustls_hello(sni: &str, tls12_only: bool) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut c =
            rustls::ClientConnection::new(Arc::new(cfg), sni.to_string().try_into().unwrap())
                .unwrap();
        let mut out = Vec::new();
        c.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_sni_and_versions_of_a_real_hello_at_any_cut() {
        let h = rustls_hello("Shop.Example", false);
        for cut in 0..h.len() {
            assert_eq!(client_hello(&h[..cut]), Parse::Incomplete, "cut {cut}");
        }
        let Parse::Done(ch) = client_hello(&h) else {
            panic!("not parsed")
        };
        assert_eq!(ch.sni.as_deref(), Some("shop.example"));
        assert!(ch.offers_tls13);
        // rustls sends a random 32-byte legacy session ID in TLS 1.3 mode.
        assert_eq!(ch.session_id.len(), 32);
        let Parse::Done(ch) = client_hello(&rustls_hello("a.test", true)) else {
            panic!("not parsed")
        };
        assert!(!ch.offers_tls13);
        // An IP address is not sent as SNI.
        let Parse::Done(ch) = client_hello(&rustls_hello("127.0.0.1", false)) else {
            panic!("not parsed")
        };
        assert_eq!(ch.sni, None);
    }

    #[test]
    fn a_hello_split_over_two_records_is_reassembled() {
        let h = rustls_hello("two.records", false);
        let body = &h[5..];
        let (a, b) = body.split_at(40);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[0x16, 3, 1]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        let Parse::Done(ch) = client_hello(&two) else {
            panic!("not parsed")
        };
        assert_eq!(ch.sni.as_deref(), Some("two.records"));
    }

    #[test]
    fn garbage_and_truncated_fields_are_refused_not_trusted() {
        assert!(matches!(
            client_hello(b"GET / HTTP/1.1\r\n"),
            Parse::Invalid(_)
        ));
        assert!(matches!(
            client_hello(&[0x16, 3, 1, 0, 0]),
            Parse::Invalid(_)
        ));
        // A ServerHello where a ClientHello is expected.
        assert!(matches!(
            client_hello(&[0x16, 3, 3, 0, 4, 2, 0, 0, 0]),
            Parse::Invalid(_)
        ));
        // Lengths that point past the message: refused.
        let mut h = rustls_hello("x.test", false);
        let sid_len_at = 5 + 4 + 2 + 32;
        h[sid_len_at] = 200;
        assert!(matches!(client_hello(&h), Parse::Invalid(_)));
        // Every single-byte change parses or is refused, never panics.
        let h = rustls_hello("fuzz.test", false);
        for i in 0..h.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut m = h.clone();
                m[i] = v;
                let _ = client_hello(&m);
                let _ = server_hello(&m);
            }
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes, and arbitrary hello bodies behind valid record and
        /// handshake headers (so the field parsers see them): parsed or
        /// refused, never a panic.
        #[test]
        fn arbitrary_input_never_panics(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
            kind in 1u8..=2,
        ) {
            let _ = client_hello(&raw);
            let _ = server_hello(&raw);
            let n = raw.len();
            let mut framed = vec![0x16, 3, 1];
            framed.extend_from_slice(&((n + 4) as u16).to_be_bytes());
            framed.extend_from_slice(&[kind, 0, (n >> 8) as u8, n as u8]);
            framed.extend_from_slice(&raw);
            let _ = client_hello(&framed);
            let _ = server_hello(&framed);
        }
    }

    #[test]
    fn reads_a_server_hello() {
        // TLS 1.2 ServerHello with a 32-byte session ID and no extensions.
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(32);
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0xc0, 0x2f, 0]);
        let mut msg = vec![SERVER_HELLO, 0, 0, body.len() as u8];
        msg.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 3, 0, msg.len() as u8];
        rec.extend_from_slice(&msg);
        assert_eq!(
            server_hello(&rec),
            Parse::Done(ServerHello {
                session_id: vec![9; 32],
                tls13: false
            })
        );
        // With supported_versions = TLS 1.3.
        let mut body13 = body.clone();
        body13.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
        let mut msg = vec![SERVER_HELLO, 0, 0, body13.len() as u8];
        msg.extend_from_slice(&body13);
        let mut rec = vec![0x16, 3, 3, 0, msg.len() as u8];
        rec.extend_from_slice(&msg);
        let Parse::Done(sh) = server_hello(&rec) else {
            panic!()
        };
        assert!(sh.tls13);
    }
}
