//! The table of raw requests of the framing differential test
//! (`framing_differential.rs`), also the seeds of the request-parser fuzz corpus
//! (`fuzz_corpus.rs` checks that every case is in `proxy/fuzz/corpus/request`).
//!
//! Each case says what the client meant: either a request the server must frame
//! exactly so (method, target, the fields that matter, body), or nothing (the
//! bytes have no single meaning and must be refused).
#![allow(dead_code)]

/// A check on one field of the request the server received.
#[derive(Debug, Clone)]
pub enum Field {
    /// The field has exactly this value (first occurrence, case-insensitive name).
    Is(&'static str, Vec<u8>),
    /// The field is absent.
    Absent(&'static str),
    /// Some value of the field contains this text (case-insensitive).
    Contains(&'static str, &'static str),
}

/// The request a client meant.
#[derive(Debug, Clone)]
pub struct Meant {
    /// Method.
    pub method: &'static str,
    /// Host the request is for (`None`: any).
    pub host: Option<&'static str>,
    /// Path and query.
    pub path: &'static str,
    /// Body as the server must de-frame it.
    pub body: Vec<u8>,
    /// Fields that matter.
    pub fields: Vec<Field>,
    /// The proxy must close the client connection after the response.
    pub close: bool,
}

/// One raw request and its meaning.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short unique name (used in the docs' table of differences).
    pub name: &'static str,
    /// Bytes the client sends, all at once.
    pub raw: Vec<u8>,
    /// `None`: no single meaning, must be refused.
    pub meant: Option<Meant>,
    /// Status tack-proxy must answer when it refuses (RFC 9112/9110), if one is
    /// required.
    pub status: Option<u16>,
}

fn m(method: &'static str, path: &'static str, body: &[u8]) -> Meant {
    Meant {
        method,
        host: Some("x"),
        path,
        body: body.to_vec(),
        fields: Vec::new(),
        close: false,
    }
}

impl Meant {
    fn field(mut self, f: Field) -> Meant {
        self.fields.push(f);
        self
    }
    fn host(mut self, h: Option<&'static str>) -> Meant {
        self.host = h;
        self
    }
    fn close(mut self) -> Meant {
        self.close = true;
        self
    }
}

fn ok(name: &'static str, raw: impl AsRef<[u8]>, meant: Meant) -> Case {
    Case {
        name,
        raw: raw.as_ref().to_vec(),
        meant: Some(meant),
        status: None,
    }
}

fn bad(name: &'static str, raw: impl AsRef<[u8]>, status: Option<u16>) -> Case {
    Case {
        name,
        raw: raw.as_ref().to_vec(),
        meant: None,
        status,
    }
}

/// A POST with `headers` (each ending in CRLF) and `body`.
fn post(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("POST /p HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes();
    v.extend_from_slice(body);
    v
}

const HELLO_CHUNKED: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";
/// "hello" gzip-compressed, then chunked.
fn gzip_chunked_body() -> (Vec<u8>, Vec<u8>) {
    let gz: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcbH\xcd\xc9\xc9\x07\x00\x86\xa6\x106\x05\x00\x00\x00";
    let mut c = format!("{:x}\r\n", gz.len()).into_bytes();
    c.extend_from_slice(gz);
    c.extend_from_slice(b"\r\n0\r\n\r\n");
    (gz.to_vec(), c)
}

/// Every case.
pub fn cases() -> Vec<Case> {
    use Field::*;
    let (gz, gz_chunked) = gzip_chunked_body();
    let big_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let big_field = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    let many: String = (0..150).map(|i| format!("X-F{i}: v\r\n")).collect();
    let many_fields = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let hello = b"hello";
    vec![
        // Plain requests.
        ok(
            "get",
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
            m("GET", "/a", b""),
        ),
        ok(
            "get-query",
            "GET /a?b=c&d=%20 HTTP/1.1\r\nHost: x\r\n\r\n",
            m("GET", "/a?b=c&d=%20", b""),
        ),
        ok(
            "get-fields-kept",
            "GET /f HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nUser-Agent: t/1\r\n\r\n",
            m("GET", "/f", b"")
                .field(Is("x-a", b"1".to_vec()))
                .field(Is("user-agent", b"t/1".to_vec())),
        ),
        ok(
            "get-with-length",
            "GET /g HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            m("GET", "/g", hello),
        ),
        ok(
            "method-lowercase",
            "get /l HTTP/1.1\r\nHost: x\r\n\r\n",
            m("get", "/l", b""),
        ),
        ok(
            "leading-empty-line",
            "\r\nGET /lc HTTP/1.1\r\nHost: x\r\n\r\n",
            m("GET", "/lc", b""),
        ),
        // Content-Length.
        ok(
            "cl",
            post("Content-Length: 5\r\n", hello),
            m("POST", "/p", hello),
        ),
        ok(
            "cl-zero",
            post("Content-Length: 0\r\n", b""),
            m("POST", "/p", b""),
        ),
        ok(
            "cl-leading-zeros",
            post("Content-Length: 005\r\n", hello),
            m("POST", "/p", hello),
        ),
        ok(
            "cl-ows",
            post("Content-Length:   5  \r\n", hello),
            m("POST", "/p", hello),
        ),
        ok(
            "cl-duplicate-same",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", hello),
            m("POST", "/p", hello),
        )
        .status(400),
        ok(
            "cl-list-same",
            post("Content-Length: 5, 5\r\n", hello),
            m("POST", "/p", hello),
        )
        .status(400),
        bad(
            "cl-duplicate-differ",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
            Some(400),
        ),
        bad(
            "cl-list-differ",
            post("Content-Length: 5, 6\r\n", b"hello!"),
            Some(400),
        ),
        bad("cl-plus", post("Content-Length: +5\r\n", hello), Some(400)),
        bad(
            "cl-negative",
            post("Content-Length: -5\r\n", hello),
            Some(400),
        ),
        bad("cl-hex", post("Content-Length: 0x5\r\n", hello), Some(400)),
        bad(
            "cl-inner-space",
            post("Content-Length: 5 5\r\n", hello),
            Some(400),
        ),
        bad("cl-empty", post("Content-Length: \r\n", hello), Some(400)),
        bad(
            "cl-list-empty-member",
            post("Content-Length: 5,\r\n", hello),
            Some(400),
        ),
        bad(
            "cl-overflow",
            post("Content-Length: 99999999999999999999999\r\n", hello),
            Some(400),
        ),
        // Chunked.
        ok(
            "chunked",
            post("Transfer-Encoding: chunked\r\n", HELLO_CHUNKED),
            m("POST", "/p", hello),
        ),
        ok(
            "chunked-several",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"2\r\nhe\r\n3\r\nllo\r\n1\r\n!\r\n0\r\n\r\n",
            ),
            m("POST", "/p", b"hello!"),
        ),
        ok(
            "chunked-uppercase-hex",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"A\r\n0123456789\r\n0\r\n\r\n",
            ),
            m("POST", "/p", b"0123456789"),
        ),
        ok(
            "chunked-size-leading-zeros",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"0005\r\nhello\r\n000\r\n\r\n",
            ),
            m("POST", "/p", hello),
        ),
        ok(
            "chunked-extension",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5;name=value\r\nhello\r\n0;last\r\n\r\n",
            ),
            m("POST", "/p", hello),
        ),
        ok(
            "chunked-extension-quoted",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5;a=\"x;y z\"\r\nhello\r\n0\r\n\r\n",
            ),
            m("POST", "/p", hello),
        ),
        ok(
            "chunked-extension-bws",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
            ),
            m("POST", "/p", hello),
        ),
        ok(
            "chunked-trailer",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
            ),
            m("POST", "/p", hello),
        ),
        ok(
            "chunked-trailer-content-length",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n",
            ),
            m("POST", "/p", hello),
        ),
        ok(
            "te-chunked-capitalised",
            post("Transfer-Encoding: Chunked\r\n", HELLO_CHUNKED),
            m("POST", "/p", hello),
        ),
        ok(
            "te-chunked-ows",
            post("Transfer-Encoding:\t chunked \r\n", HELLO_CHUNKED),
            m("POST", "/p", hello),
        ),
        ok(
            "te-empty-list-member",
            post("Transfer-Encoding: ,chunked\r\n", HELLO_CHUNKED),
            m("POST", "/p", hello),
        )
        .status(400),
        ok(
            "te-trailing-empty-member",
            post("Transfer-Encoding: chunked ,\r\n", HELLO_CHUNKED),
            m("POST", "/p", hello),
        )
        .status(400),
        ok(
            "trailer-invalid-name",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\nContent-L;ngth: 0\r\n\r\n",
            ),
            m("POST", "/p", hello),
        )
        .status(400),
        bad(
            "chunk-size-overflow",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"fffffffffffffffff5\r\nhello\r\n0\r\n\r\n",
            ),
            Some(400),
        ),
        bad(
            "chunk-size-negative",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"-5\r\nhello\r\n0\r\n\r\n",
            ),
            Some(400),
        ),
        bad(
            "chunk-size-0x",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"0x5\r\nhello\r\n0\r\n\r\n",
            ),
            Some(400),
        ),
        bad(
            "chunk-size-inner-space",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5 5\r\nhello\r\n0\r\n\r\n",
            ),
            Some(400),
        ),
        bad(
            "chunk-size-bare-lf",
            post("Transfer-Encoding: chunked\r\n", b"5\nhello\r\n0\r\n\r\n"),
            Some(400),
        ),
        bad(
            "chunk-data-too-long",
            post("Transfer-Encoding: chunked\r\n", b"3\r\nhello\r\n0\r\n\r\n"),
            Some(400),
        ),
        bad(
            "chunk-extension-bare-lf",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            ),
            Some(400),
        ),
        bad(
            "chunk-extension-nul",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            ),
            Some(400),
        ),
        bad(
            "trailer-bare-lf-smuggle",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\nX: 1\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
            Some(400),
        ),
        ok(
            "trailer-obs-fold",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\nX: 1\r\n folded\r\n\r\n",
            ),
            m("POST", "/p", hello),
        )
        .status(400),
        // Transfer codings.
        ok(
            "te-gzip-chunked-with-cl",
            post(
                &format!(
                    "Transfer-Encoding: gzip, chunked\r\nContent-Length: {}\r\n",
                    gz_chunked.len()
                ),
                &gz_chunked,
            ),
            m("POST", "/p", &gz)
                .field(Contains("transfer-encoding", "gzip"))
                .close(),
        )
        .status(501),
        ok(
            "te-gzip-chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", &gz_chunked),
            m("POST", "/p", &gz).field(Contains("transfer-encoding", "gzip")),
        )
        .status(501),
        ok(
            "te-gzip-then-chunked-fields",
            post(
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                &gz_chunked,
            ),
            m("POST", "/p", &gz).field(Contains("transfer-encoding", "gzip")),
        )
        .status(501),
        bad(
            "te-chunked-gzip",
            post("Transfer-Encoding: chunked, gzip\r\n", HELLO_CHUNKED),
            Some(400),
        ),
        bad(
            "te-gzip-only",
            post("Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", hello),
            Some(400),
        ),
        bad(
            "te-identity",
            post(
                "Transfer-Encoding: identity\r\nContent-Length: 5\r\n",
                hello,
            ),
            Some(400),
        ),
        bad(
            "te-chunked-twice",
            post("Transfer-Encoding: chunked, chunked\r\n", HELLO_CHUNKED),
            Some(400),
        ),
        bad(
            "te-chunked-two-fields",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                HELLO_CHUNKED,
            ),
            Some(400),
        ),
        bad(
            "te-empty",
            post("Transfer-Encoding: \r\nContent-Length: 5\r\n", hello),
            Some(400),
        ),
        bad(
            "te-xchunked",
            post("Transfer-Encoding: xchunked\r\n", HELLO_CHUNKED),
            Some(400),
        ),
        bad(
            "te-chunked-parameter",
            post("Transfer-Encoding: chunked;q=1\r\n", HELLO_CHUNKED),
            Some(400),
        ),
        bad(
            "te-vertical-tab",
            post("Transfer-Encoding: \x0bchunked\r\n", HELLO_CHUNKED),
            Some(400),
        ),
        // Content-Length with Transfer-Encoding (RFC 9112 6.3: chunked wins, close).
        ok(
            "cl-te",
            post(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\nX",
            ),
            m("POST", "/p", b"").field(Absent("content-length")).close(),
        ),
        ok(
            "te-cl",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                HELLO_CHUNKED,
            ),
            m("POST", "/p", hello)
                .field(Absent("content-length"))
                .close(),
        ),
        ok(
            "cl-invalid-te",
            post(
                "Content-Length: abc\r\nTransfer-Encoding: chunked\r\n",
                HELLO_CHUNKED,
            ),
            m("POST", "/p", hello).close(),
        )
        .status(400),
        // Field syntax.
        ok(
            "obs-fold",
            "GET /o HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
            m("GET", "/o", b"").field(Contains("x-a", "folded")),
        )
        .status(400),
        bad(
            "space-before-colon",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            Some(400),
        ),
        bad(
            "space-before-colon-cl",
            post("Content-Length : 5\r\n", hello),
            Some(400),
        ),
        bad(
            "tab-before-colon-te",
            post("Transfer-Encoding\t: chunked\r\n", HELLO_CHUNKED),
            Some(400),
        ),
        bad(
            "nul-in-value",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
            Some(400),
        ),
        bad(
            "nul-in-name",
            "GET / HTTP/1.1\r\nHost: x\r\nX\x00A: b\r\n\r\n",
            Some(400),
        ),
        bad(
            "ctl-in-value",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
            Some(400),
        ),
        bad(
            "del-in-value",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n",
            Some(400),
        ),
        bad(
            "bare-cr-in-value",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
            Some(400),
        ),
        bad(
            "bare-cr-line-end",
            "GET / HTTP/1.1\rHost: x\r\n\r\n",
            Some(400),
        ),
        bad(
            "space-in-name",
            "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n",
            Some(400),
        ),
        bad(
            "empty-name",
            "GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n",
            Some(400),
        ),
        ok(
            "bare-lf-lines",
            "GET /lf HTTP/1.1\nHost: x\nX-A: 1\n\n",
            m("GET", "/lf", b"").field(Is("x-a", b"1".to_vec())),
        ),
        ok(
            "bare-lf-cl",
            "POST /lf HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello",
            m("POST", "/lf", hello),
        ),
        ok(
            "obs-text-value",
            b"GET /t HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9\r\n\r\n",
            m("GET", "/t", b"").field(Is("x-a", b"caf\xe9".to_vec())),
        ),
        // Request line.
        bad(
            "method-invalid",
            "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
            Some(400),
        ),
        bad(
            "target-space",
            "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
            Some(400),
        ),
        bad("version-2", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", None),
        bad("version-missing", "GET /\r\nHost: x\r\n\r\n", None),
        ok(
            "double-space-request-line",
            "GET  /ds HTTP/1.1\r\nHost: x\r\n\r\n",
            m("GET", "/ds", b""),
        )
        .status(400),
        // Host.
        bad(
            "host-duplicate",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            Some(400),
        ),
        bad(
            "host-duplicate-same",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n",
            Some(400),
        ),
        bad(
            "host-space",
            "GET / HTTP/1.1\r\nHost: x y\r\n\r\n",
            Some(400),
        ),
        bad(
            "host-userinfo",
            "GET / HTTP/1.1\r\nHost: u@x\r\n\r\n",
            Some(400),
        ),
        ok(
            "host-missing",
            "GET /nh HTTP/1.1\r\n\r\n",
            m("GET", "/nh", b"").host(None),
        ),
        ok(
            "absolute-form",
            "GET http://x/af HTTP/1.1\r\nHost: x\r\n\r\n",
            m("GET", "/af", b""),
        ),
        ok(
            "absolute-form-no-host",
            "GET http://x/afn HTTP/1.1\r\n\r\n",
            m("GET", "/afn", b""),
        ),
        bad(
            "absolute-form-userinfo",
            "GET http://u@x/afu HTTP/1.1\r\n\r\n",
            Some(400),
        ),
        ok(
            "absolute-form-host-differs",
            "GET http://x/afd HTTP/1.1\r\nHost: other\r\n\r\n",
            m("GET", "/afd", b""),
        )
        .status(400),
        // HTTP/1.0.
        ok(
            "http10",
            "GET /h10 HTTP/1.0\r\n\r\n",
            m("GET", "/h10", b"").host(None),
        ),
        ok(
            "http10-keep-alive",
            "GET /h10k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            m("GET", "/h10k", b"").host(None),
        ),
        ok(
            "http10-cl",
            "POST /h10p HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
            m("POST", "/h10p", hello).host(None),
        ),
        bad(
            "http10-te",
            "POST /h10c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Some(400),
        ),
        // Expect.
        ok(
            "expect-100",
            post("Expect: 100-continue\r\nContent-Length: 5\r\n", hello),
            m("POST", "/p", hello),
        ),
        ok(
            "expect-other",
            "GET /ex HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n",
            m("GET", "/ex", b""),
        )
        .status(417),
        // Connection and hop-by-hop fields.
        ok(
            "connection-close",
            "GET /cc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            m("GET", "/cc", b"").close(),
        ),
        ok(
            "connection-names-field",
            "GET /cn HTTP/1.1\r\nHost: x\r\nConnection: x-secret\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n",
            m("GET", "/cn", b"")
                .field(Absent("x-secret"))
                .field(Is("x-kept", b"2".to_vec())),
        ),
        ok(
            "connection-names-content-length",
            post("Connection: content-length\r\nContent-Length: 5\r\n", hello),
            m("POST", "/p", hello),
        ),
        ok(
            "connection-names-transfer-encoding",
            post(
                "Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n",
                HELLO_CHUNKED,
            ),
            m("POST", "/p", hello),
        ),
        ok(
            "connection-names-host",
            "GET /ch HTTP/1.1\r\nHost: x\r\nConnection: host\r\n\r\n",
            m("GET", "/ch", b""),
        ),
        ok(
            "hop-by-hop-removed",
            "GET /hh HTTP/1.1\r\nHost: x\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\n\r\n",
            m("GET", "/hh", b"")
                .field(Absent("keep-alive"))
                .field(Absent("proxy-connection"))
                .field(Absent("te")),
        ),
        // Size limits.
        bad("target-too-long", big_target, Some(414)),
        bad("field-too-long", big_field, Some(431)),
        bad("too-many-fields", many_fields, Some(431)),
    ]
}

impl Case {
    fn status(mut self, s: u16) -> Case {
        self.status = Some(s);
        self
    }
}
