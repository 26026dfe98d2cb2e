//! HTTP/2 (h2c, prior knowledge) requests translated to HTTP/1.1 for the server
//! hold to the same framing rules (RFC 9113 8.1-8.3): connection-specific
//! fields, `TE` other than `trailers`, a body that does not match
//! `content-length`, missing or bad pseudo-headers, uppercase names and a `Host`
//! that disagrees with `:authority` never reach the server; valid requests reach
//! it with the method, target, `Host` and body the client meant.
//!
//! The client is written here byte by byte (frames and HPACK literals), because
//! HTTP/2 client libraries refuse to send malformed requests. The server side
//! records the raw bytes it receives and frames them with `httparse`.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::start_proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut v = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, ty, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An HPACK integer with a 7-bit prefix (no flag bits).
fn int7(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header block of literal fields without indexing, new names, no Huffman.
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        out.push(0);
        int7(&mut out, n.len());
        out.extend_from_slice(n.as_bytes());
        int7(&mut out, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Huffman codes (RFC 7541 Appendix B) of the digits: (code, bits).
const DIGITS: [(u32, u32); 10] = [
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
];

fn huffman_digits(b: &[u8]) -> Option<String> {
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &byte in b {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        'next: loop {
            for (d, (code, len)) in DIGITS.iter().enumerate() {
                if bits >= *len && (acc >> (bits - len)) & ((1 << len) - 1) == *code {
                    out.push(char::from(b'0' + d as u8));
                    bits -= len;
                    acc &= (1 << bits) - 1;
                    continue 'next;
                }
            }
            break;
        }
    }
    // What is left is padding (all ones, fewer than 8 bits).
    (bits < 8 && acc == (1 << bits) - 1).then_some(out)
}

/// The `:status` of a response header block (the first field, as servers send it).
fn status_of(block: &[u8]) -> Option<u16> {
    const STATIC: [(u8, u16); 7] = [
        (8, 200),
        (9, 204),
        (10, 206),
        (11, 304),
        (12, 400),
        (13, 404),
        (14, 500),
    ];
    let b = *block.first()?;
    if b & 0x80 != 0 {
        return STATIC.iter().find(|(i, _)| *i == b & 0x7f).map(|(_, s)| *s);
    }
    // A literal with an indexed `:status` name (8..=14), then its value.
    let idx = if b & 0x40 != 0 { b & 0x3f } else { b & 0x0f };
    if !(8..=14).contains(&idx) {
        return None;
    }
    let v = *block.get(1)?;
    let len = usize::from(v & 0x7f);
    let raw = block.get(2..2 + len)?;
    let text = if v & 0x80 != 0 {
        huffman_digits(raw)?
    } else {
        String::from_utf8(raw.to_vec()).ok()?
    };
    text.parse().ok()
}

/// What the client got for stream 1.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Status(u16),
    Reset(u32),
    GoAway(u32),
    Nothing,
}

/// Send `headers` (and `data`, if any, ending the stream) on stream 1 of a new
/// h2c connection and see how the proxy answers.
async fn h2_exchange(addr: SocketAddr, headers: &[(&str, &str)], data: Option<&[u8]>) -> Got {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(4, 0, 0, &[]));
    let end_stream = if data.is_none() { 0x1 } else { 0 };
    out.extend(frame(1, 0x4 | end_stream, 1, &hpack(headers)));
    if let Some(d) = data {
        out.extend(frame(0, 0x1, 1, d));
    }
    s.write_all(&out).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (ty, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            let code = |p: &[u8], at: usize| {
                p.get(at..at + 4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .unwrap_or(0)
            };
            match ty {
                4 if flags & 1 == 0 => {
                    let _ = s.write_all(&frame(4, 1, 0, &[])).await;
                }
                1 if stream == 1 => {
                    let mut block = payload.as_slice();
                    if flags & 0x8 != 0 {
                        let pad = usize::from(block[0]);
                        block = &block[1..block.len() - pad];
                    }
                    if flags & 0x20 != 0 {
                        block = &block[5..];
                    }
                    return status_of(block).map_or(Got::Nothing, Got::Status);
                }
                3 if stream == 1 => return Got::Reset(code(&payload, 0)),
                7 => return Got::GoAway(code(&payload, 4)),
                _ => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
            _ => return Got::Nothing,
        }
    }
}

/// A server recording the raw bytes of each connection, answering any complete
/// request head `200` (and closing).
struct Recorder {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A complete request framed from `b`: method, target, fields, body.
type Framed = (String, String, Vec<(String, String)>, Vec<u8>);

fn frame_request(b: &[u8]) -> Option<Framed> {
    let mut h = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Request::new(&mut h);
    let httparse::Status::Complete(n) = r.parse(b).ok()? else {
        return None;
    };
    let fields: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).to_string(),
            )
        })
        .collect();
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let rest = &b[n..];
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut i = 0;
        loop {
            let e = i + rest[i..].windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&rest[i..e]).ok()?, 16).ok()?;
            i = e + 2;
            if size == 0 {
                rest.get(i..i + 2).filter(|t| *t == b"\r\n")?;
                break body;
            }
            body.extend_from_slice(rest.get(i..i + size)?);
            i += size + 2;
        }
    } else {
        let len: usize = get("content-length").map_or(Some(0), |v| v.parse().ok())?;
        rest.get(..len)?.to_vec()
    };
    Some((r.method?.to_string(), r.path?.to_string(), fields, body))
}

impl Recorder {
    async fn start() -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let c2 = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let conns = c2.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 16384];
                    loop {
                        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut tmp)).await {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                            _ => break,
                        }
                        if frame_request(&buf).is_some() {
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                                .await;
                            break;
                        }
                    }
                    conns.lock().unwrap().push(buf);
                });
            }
        });
        Recorder { addr, conns, task }
    }

    /// The complete requests received since the last call (after a short wait
    /// for connections still being read).
    async fn take(&self) -> Vec<Framed> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::mem::take(&mut *self.conns.lock().unwrap())
            .iter()
            .filter_map(|b| frame_request(b))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_requests_are_translated_or_refused() {
    let rec = Recorder::start().await;
    let proxy = start_proxy(&format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\nbackends:\n  - name: app\n    retries: 0\n    servers:\n      - {{ name: s1, address: \"{}\" }}\n",
        rec.addr
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    let base = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "x.example"),
        (":path", "/h2?q=1"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };

    // Valid: translated with the meant method, target, Host and body.
    let got = h2_exchange(addr, &with(&[("content-length", "5")]), Some(b"hello")).await;
    assert_eq!(got, Got::Status(200));
    let reqs = rec.take().await;
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let (m, t, f, b) = &reqs[0];
    assert_eq!(
        (m.as_str(), t.as_str(), b.as_slice()),
        ("POST", "/h2?q=1", &b"hello"[..])
    );
    let host: Vec<&str> = f
        .iter()
        .filter(|(n, _)| n == "host")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(host, ["x.example"]);

    // `TE: trailers` is allowed and not forwarded; cookies are joined.
    let got = h2_exchange(
        addr,
        &with(&[("te", "trailers"), ("cookie", "a=1"), ("cookie", "b=2")]),
        Some(b"x"),
    )
    .await;
    assert_eq!(got, Got::Status(200));
    let reqs = rec.take().await;
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let f = &reqs[0].2;
    assert!(!f.iter().any(|(n, _)| n == "te"), "{f:?}");
    let cookies: Vec<&str> = f
        .iter()
        .filter(|(n, _)| n == "cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1; b=2"]);
    assert_eq!(reqs[0].3, b"x");

    // Malformed: refused (a reset stream or connection, or a 4xx), and nothing
    // reaches the server.
    type Bad = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        Option<&'static [u8]>,
    );
    let bad: Vec<Bad> = vec![
        (
            "connection",
            with(&[("connection", "keep-alive")]),
            Some(b"x"),
        ),
        ("keep-alive", with(&[("keep-alive", "5")]), Some(b"x")),
        (
            "proxy-connection",
            with(&[("proxy-connection", "x")]),
            Some(b"x"),
        ),
        ("upgrade", with(&[("upgrade", "h2c")]), Some(b"x")),
        (
            "transfer-encoding",
            with(&[("transfer-encoding", "chunked")]),
            Some(b"x"),
        ),
        ("te-gzip", with(&[("te", "gzip")]), Some(b"x")),
        (
            "content-length-short",
            with(&[("content-length", "10")]),
            Some(b"hello"),
        ),
        (
            "content-length-long",
            with(&[("content-length", "3")]),
            Some(b"hello"),
        ),
        (
            "content-length-invalid",
            with(&[("content-length", "5x")]),
            Some(b"hello"),
        ),
        ("host-differs", with(&[("host", "other.example")]), None),
        ("uppercase-name", with(&[("X-Upper", "1")]), None),
        (
            "missing-path",
            vec![(":method", "GET"), (":scheme", "http"), (":authority", "x")],
            None,
        ),
        (
            "pseudo-after-regular",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                ("x-a", "1"),
                (":path", "/"),
                (":authority", "x"),
            ],
            None,
        ),
        ("unknown-pseudo", with(&[(":foo", "1")]), None),
    ];
    for (name, headers, data) in bad {
        let got = h2_exchange(addr, &headers, data).await;
        let refused = match got {
            Got::Reset(_) | Got::GoAway(_) => true,
            Got::Status(s) => (400..500).contains(&s),
            Got::Nothing => false,
        };
        eprintln!("{name}: {got:?}");
        assert!(refused, "{name}: {got:?}");
        let reqs = rec.take().await;
        assert!(reqs.is_empty(), "{name}: the server got {reqs:?}");
    }
    proxy.shutdown().await;
}
