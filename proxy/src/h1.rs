//! HTTP/1.1 message heads as offsets into a read buffer, and message framing, for
//! the fast path (module `fast`).
//!
//! Heads are parsed with `httparse` (hyper's own parser) into [`Span`]s over the
//! buffer, each header tagged with the [`Kind`] the proxy cares about, so a head can
//! be re-emitted with a few edits without building a `HeaderMap`. Bodies are not
//! decoded: [`BodyScan`] only finds where a message ends (Content-Length, chunked
//! with extensions and trailers, or end of connection) so the bytes can be copied
//! through as they are, without re-chunking. The chunked rules and limits are
//! hyper's (`proto/h1/decode.rs`): hex size, optional whitespace and extensions
//! (no bare LF, at most 16 KiB of them), CRLF after every line, at most 16 KiB
//! and 100 lines of trailers.

use std::mem::MaybeUninit;

/// Most bytes a request or response head may have (larger request heads get `431`).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields a head may have (more: `431` for requests).
pub const MAX_HEADERS: usize = 100;
/// Longest request target (longer: `414`, as hyper).
pub const MAX_TARGET: usize = 65534;
const EXTENSIONS_LIMIT: u64 = 16 * 1024;
const TRAILER_LIMIT: usize = 16 * 1024;

/// A byte range of a head, relative to the head's first byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The bytes of this span in `buf` (the buffer the head was parsed from).
    #[inline]
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    fn within(base: &[u8], s: &[u8]) -> Span {
        let start = s.as_ptr() as usize - base.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + s.len()) as u32,
        }
    }
}

/// The header fields the proxy looks at or edits; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Kind {
    Other,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    TransferEncoding,
    Upgrade,
    ContentLength,
    Host,
    Cookie,
    Expect,
    XForwardedFor,
    SetCookie,
    Location,
    CacheControl,
    Pragma,
    Expires,
    ETag,
    LastModified,
}

impl Kind {
    /// Classify a header name (case-insensitive).
    pub fn of(name: &[u8]) -> Kind {
        let Some(&first) = name.first() else {
            return Kind::Other;
        };
        let is = |k: &[u8]| name.eq_ignore_ascii_case(k);
        match (name.len(), first | 0x20) {
            (2, b't') if is(b"te") => Kind::Te,
            (4, b'h') if is(b"host") => Kind::Host,
            (4, b'e') if is(b"etag") => Kind::ETag,
            (6, b'c') if is(b"cookie") => Kind::Cookie,
            (6, b'e') if is(b"expect") => Kind::Expect,
            (6, b'p') if is(b"pragma") => Kind::Pragma,
            (7, b'u') if is(b"upgrade") => Kind::Upgrade,
            (7, b'e') if is(b"expires") => Kind::Expires,
            (8, b'l') if is(b"location") => Kind::Location,
            (10, b'c') if is(b"connection") => Kind::Connection,
            (10, b'k') if is(b"keep-alive") => Kind::KeepAlive,
            (10, b's') if is(b"set-cookie") => Kind::SetCookie,
            (13, b'c') if is(b"cache-control") => Kind::CacheControl,
            (13, b'l') if is(b"last-modified") => Kind::LastModified,
            (14, b'c') if is(b"content-length") => Kind::ContentLength,
            (15, b'x') if is(b"x-forwarded-for") => Kind::XForwardedFor,
            (16, b'p') if is(b"proxy-connection") => Kind::ProxyConnection,
            (17, b't') if is(b"transfer-encoding") => Kind::TransferEncoding,
            _ => Kind::Other,
        }
    }

    /// Hop-by-hop fields the proxy never forwards (RFC 9110 7.6.1). Transfer-Encoding
    /// is kept: bodies are forwarded with their framing unchanged.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Kind::Connection | Kind::KeepAlive | Kind::ProxyConnection | Kind::Te | Kind::Upgrade
        )
    }
}

/// One header field of a parsed head.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Name.
    pub name: Span,
    /// Value (without surrounding whitespace).
    pub value: Span,
    /// What it is.
    pub kind: Kind,
}

/// Why a head could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed (`400` for requests, `502` for responses).
    Invalid,
    /// Too many fields or too many bytes (`431` for requests).
    TooLarge,
    /// Request target too long (`414`).
    UriTooLong,
}

/// A parsed request head.
#[derive(Debug, Default)]
pub struct RequestHead {
    /// Bytes of the head, final empty line included.
    pub len: usize,
    /// Method.
    pub method: Span,
    /// Request target.
    pub target: Span,
    /// HTTP minor version (0 or 1).
    pub minor: u8,
    /// Header fields in order.
    pub fields: Vec<Field>,
}

/// A parsed response head.
#[derive(Debug, Default)]
pub struct ResponseHead {
    /// Bytes of the head, final empty line included.
    pub len: usize,
    /// HTTP minor version (0 or 1).
    pub minor: u8,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: Span,
    /// Header fields in order.
    pub fields: Vec<Field>,
}

fn fill_fields(base: &[u8], headers: &[httparse::Header<'_>], out: &mut Vec<Field>) {
    out.clear();
    for h in headers {
        let name = h.name.as_bytes();
        out.push(Field {
            name: Span::within(base, name),
            value: Span::within(base, h.value),
            kind: Kind::of(name),
        });
    }
}

fn map_err(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        _ => HeadError::Invalid,
    }
}

/// Parse a request head at the start of `buf`. `Ok(false)`: incomplete.
pub fn parse_request(buf: &[u8], head: &mut RequestHead) -> Result<bool, HeadError> {
    let mut hdrs = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut hdrs)
    {
        Ok(httparse::Status::Complete(len)) => {
            let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version)
            else {
                return Err(HeadError::Invalid);
            };
            if target.len() > MAX_TARGET {
                return Err(HeadError::UriTooLong);
            }
            if len > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            head.len = len;
            head.method = Span::within(buf, method.as_bytes());
            head.target = Span::within(buf, target.as_bytes());
            head.minor = minor;
            fill_fields(buf, req.headers, &mut head.fields);
            Ok(true)
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                // No end to the request line in all that: its target is too long.
                Err(match memchr::memchr(b'\n', buf) {
                    None => HeadError::UriTooLong,
                    Some(_) => HeadError::TooLarge,
                })
            } else {
                Ok(false)
            }
        }
        Err(e) => Err(map_err(e)),
    }
}

/// Parse a response head at the start of `buf`. `Ok(false)`: incomplete.
pub fn parse_response(buf: &[u8], head: &mut ResponseHead) -> Result<bool, HeadError> {
    let mut hdrs = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut hdrs)
    {
        Ok(httparse::Status::Complete(len)) => {
            if len > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let (Some(minor), Some(code), Some(reason)) = (resp.version, resp.code, resp.reason)
            else {
                return Err(HeadError::Invalid);
            };
            if !(100..=999).contains(&code) {
                return Err(HeadError::Invalid);
            }
            head.len = len;
            head.minor = minor;
            head.status = code;
            head.reason = Span::within(buf, reason.as_bytes());
            fill_fields(buf, resp.headers, &mut head.fields);
            Ok(true)
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                Err(HeadError::TooLarge)
            } else {
                Ok(false)
            }
        }
        Err(e) => Err(map_err(e)),
    }
}

/// Whether `buf[from..]` (looking back up to 3 bytes before `from`) holds the empty
/// line that ends a head; used to avoid re-parsing a head that arrives in pieces.
pub fn has_head_end(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(3);
    let mut i = start;
    while let Some(p) = memchr::memchr(b'\n', &buf[i..]) {
        let at = i + p;
        let rest = &buf[at + 1..];
        if rest.first() == Some(&b'\n') || rest.starts_with(b"\r\n") {
            return true;
        }
        i = at + 1;
    }
    false
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// Parse a Content-Length value: digits only, no sign, no overflow.
pub fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// The protocol a request arrived with, for [`check_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2 (h2c), translated to HTTP/1.1 for the server.
    Http2,
}

/// Why a request is refused before it reaches a server (RFC 9112 and RFC 9110);
/// [`RequestError::status`] is the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A `Content-Length` that is not digits, or more than one (even equal).
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    /// `Transfer-Encoding` in an HTTP/1.0 request (RFC 9112 6.1: faulty framing).
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    /// `chunked` is not the final coding, appears twice, or the list is empty
    /// (RFC 9112 6.3: the length cannot be determined).
    #[error("chunked is not the final transfer coding once")]
    BadTransferEncoding,
    /// A transfer coding other than `chunked` (gzip, deflate...): not decoded,
    /// and never altered, so refused (RFC 9112 6.1).
    #[error("transfer coding other than chunked")]
    UnsupportedCoding,
    /// Several `Host` fields.
    #[error("several Host fields")]
    DuplicateHost,
    /// A `Host` value that is not `host[:port]`, or a target authority that is
    /// not (empty, or with userinfo).
    #[error("invalid Host or authority")]
    BadHost,
    /// `Host` names another authority than the absolute-form target (or HTTP/2
    /// `:authority`).
    #[error("Host disagrees with the request target")]
    HostMismatch,
    /// An `Expect` other than `100-continue` (RFC 9110 10.1.1).
    #[error("unsupported expectation")]
    Expectation,
    /// A connection-specific field (or `TE` other than `trailers`) in an HTTP/2
    /// request (RFC 9113 8.2.2).
    #[error("connection-specific field in an HTTP/2 request")]
    ConnectionSpecific,
}

impl RequestError {
    /// The status the proxy answers with.
    pub fn status(self) -> http::StatusCode {
        match self {
            RequestError::UnsupportedCoding => http::StatusCode::NOT_IMPLEMENTED,
            RequestError::Expectation => http::StatusCode::EXPECTATION_FAILED,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// How a request accepted by [`check_request`] is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFraming {
    /// How its body is delimited.
    pub framing: Framing,
    /// The received `Content-Length` and `Transfer-Encoding` fields are not
    /// forwarded as they are but replaced by one canonical field for
    /// [`RequestFraming::framing`] (`transfer-encoding: chunked`): a length came
    /// with the coding, or the coding was not written as a single `chunked`, so
    /// that no server can read them otherwise.
    pub rewrite_framing: bool,
    /// Close the client connection after the response: the request had both
    /// `Content-Length` and `Transfer-Encoding` (RFC 9112 6.3, item 3).
    pub close: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// The fields a `Connection` header may not remove: the ones that frame or
/// address the message (a client listing them could otherwise make the server
/// read the body as the next request).
pub fn connection_may_remove(name: &[u8]) -> bool {
    !matches!(
        Kind::of(name),
        Kind::ContentLength | Kind::TransferEncoding | Kind::Host
    )
}

/// Whether `v` is a valid `Host` value: `uri-host [":" port]` (RFC 9110 7.2),
/// possibly empty.
fn valid_host(v: &[u8]) -> bool {
    v.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b))
}

/// The authority of an absolute-form target (`scheme://authority/...`).
pub fn target_authority(target: &[u8]) -> Option<&[u8]> {
    let i = memchr::memmem::find(target, b"://")?;
    let rest = &target[i + 3..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The framing rules of a request, shared by the fast path and the hyper path
/// (RFC 9112 6, RFC 9110 7.2 and 10.1.1, RFC 9113 8.2.2 for HTTP/2):
///
/// - `Content-Length`: digits only, once (a repeated one, even with the same
///   value, is refused: RFC 9110 8.6 allows it, and it is what hyper does with
///   a comma list);
/// - `Transfer-Encoding`: refused in HTTP/1.0; `chunked` must be the final coding
///   and appear once, with no empty list element (else `400`); other codings are refused with `501` rather
///   than forwarded re-framed or decoded; with `Content-Length` the length is
///   dropped and the client connection closed after the response;
/// - `Host`: at most one, `host[:port]`, and equal to the authority of an
///   absolute-form target (`authority`) when both are present;
/// - `Expect`: only `100-continue`;
/// - HTTP/2: no connection-specific fields, `TE` only `trailers`.
///
/// `fields` are the (name, value) pairs as received, values without surrounding
/// whitespace.
pub fn check_request<'a>(
    proto: Proto,
    authority: Option<&[u8]>,
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<RequestFraming, RequestError> {
    let mut len: Option<u64> = None;
    let mut lengths = 0usize;
    let mut te = 0usize;
    let mut te_plain = false;
    let mut chunked_last = false;
    let mut chunked_count = 0usize;
    let mut other_coding = false;
    let mut host: Option<&[u8]> = None;
    let mut expect_continue = false;
    for (name, value) in fields {
        match Kind::of(name) {
            Kind::ContentLength => {
                for part in value.split(|&b| b == b',') {
                    let n =
                        parse_length(part.trim_ascii()).ok_or(RequestError::BadContentLength)?;
                    if len.is_some_and(|l| l != n) {
                        return Err(RequestError::BadContentLength);
                    }
                    len = Some(n);
                    lengths += 1;
                }
            }
            Kind::TransferEncoding => {
                match proto {
                    Proto::Http10 => return Err(RequestError::TransferEncodingInHttp10),
                    Proto::Http2 => return Err(RequestError::ConnectionSpecific),
                    Proto::Http11 => {}
                }
                te += 1;
                te_plain = value == b"chunked";
                // Empty elements are refused: hyper misreads a trailing one, and
                // a framing field has one form.
                if value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().is_empty())
                {
                    return Err(RequestError::BadTransferEncoding);
                }
                for t in tokens(value) {
                    if t.eq_ignore_ascii_case(b"chunked") {
                        chunked_count += 1;
                        chunked_last = true;
                    } else {
                        other_coding = true;
                        chunked_last = false;
                    }
                }
            }
            Kind::Host => {
                if host.is_some() {
                    return Err(RequestError::DuplicateHost);
                }
                if !valid_host(value) {
                    return Err(RequestError::BadHost);
                }
                host = Some(value);
            }
            Kind::Expect => {
                for t in tokens(value) {
                    if t.eq_ignore_ascii_case(b"100-continue") {
                        expect_continue = true;
                    } else {
                        return Err(RequestError::Expectation);
                    }
                }
            }
            Kind::Connection | Kind::KeepAlive | Kind::ProxyConnection | Kind::Upgrade
                if proto == Proto::Http2 =>
            {
                return Err(RequestError::ConnectionSpecific);
            }
            Kind::Te if proto == Proto::Http2 && !value.eq_ignore_ascii_case(b"trailers") => {
                return Err(RequestError::ConnectionSpecific);
            }
            _ => {}
        }
    }
    if let Some(a) = authority {
        // No userinfo (RFC 9110 4.2.4, RFC 9113 8.3.1): it would become the Host.
        if a.is_empty() || a.contains(&b'@') || !valid_host(a) {
            return Err(RequestError::BadHost);
        }
        if host.is_some_and(|h| !h.eq_ignore_ascii_case(a)) {
            return Err(RequestError::HostMismatch);
        }
    }
    if te > 0 {
        if !chunked_last || chunked_count != 1 {
            return Err(RequestError::BadTransferEncoding);
        }
        if other_coding {
            return Err(RequestError::UnsupportedCoding);
        }
        return Ok(RequestFraming {
            framing: Framing::Chunked,
            rewrite_framing: len.is_some() || te > 1 || !te_plain,
            close: len.is_some(),
            expect_continue,
        });
    }
    if lengths > 1 {
        // Allowed by RFC 9110 8.6 (and hyper refuses a comma list): one length.
        return Err(RequestError::BadContentLength);
    }
    Ok(RequestFraming {
        framing: match len {
            None | Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
        },
        rewrite_framing: false,
        close: false,
        expect_continue,
    })
}

/// Framing of a response (RFC 9112 6.3): none for HEAD, 1xx, 204 and 304
/// (their fields are not looked at);
/// chunked when the last coding is chunked; until close for other codings or when
/// there is no length. `Err` for conflicting or invalid lengths. The `bool` is
/// true when `Content-Length` must be dropped (it came with a transfer coding).
pub fn response_framing(
    buf: &[u8],
    head: &ResponseHead,
    head_request: bool,
) -> Result<(Framing, bool), HeadError> {
    // No body whatever the fields say (their lengths frame nothing, as for hyper).
    let s = head.status;
    if head_request || (100..200).contains(&s) || s == 204 || s == 304 {
        return Ok((Framing::None, false));
    }
    let mut len: Option<u64> = None;
    let mut te: Option<bool> = None; // Some(last coding is chunked)
    for f in &head.fields {
        match f.kind {
            Kind::ContentLength => {
                for part in f.value.of(buf).split(|&b| b == b',') {
                    let n = parse_length(part.trim_ascii()).ok_or(HeadError::Invalid)?;
                    if len.is_some_and(|l| l != n) {
                        return Err(HeadError::Invalid);
                    }
                    len = Some(n);
                }
            }
            Kind::TransferEncoding => {
                let v = f.value.of(buf);
                let last = v.rsplit(|&b| b == b',').next().unwrap_or(v).trim_ascii();
                te = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
            _ => {}
        }
    }
    Ok(match (te, len) {
        (Some(true), l) => (Framing::Chunked, l.is_some()),
        (Some(false), l) => (Framing::UntilClose, l.is_some()),
        (None, Some(0)) => (Framing::None, false),
        (None, Some(n)) => (Framing::Length(n), false),
        (None, None) => (Framing::UntilClose, false),
    })
}

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body: {0}")]
pub struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Start,
    Size,
    SizeLws,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    EndCr,
    TrailerName,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Finds the end of a message body without decoding it.
#[derive(Debug, Clone)]
pub struct BodyScan {
    kind: Framing,
    remaining: u64,
    st: St,
    ext: u64,
    trailer_bytes: usize,
    trailer_lines: usize,
}

impl BodyScan {
    /// A scanner for a body with this framing.
    pub fn new(f: Framing) -> BodyScan {
        BodyScan {
            kind: f,
            remaining: match f {
                Framing::Length(n) => n,
                _ => 0,
            },
            st: if f == Framing::None {
                St::Done
            } else {
                St::Start
            },
            ext: 0,
            trailer_bytes: 0,
            trailer_lines: 0,
        }
    }

    /// Whether the whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.st == St::Done
    }

    /// Whether the body ends only when the connection does.
    pub fn until_close(&self) -> bool {
        self.kind == Framing::UntilClose
    }

    /// Bytes still expected, when known (Content-Length framing).
    pub fn remaining_hint(&self) -> Option<u64> {
        match self.kind {
            Framing::Length(_) => Some(self.remaining),
            _ => None,
        }
    }

    /// Take as many bytes of `data` as belong to the body; returns how many. Once
    /// [`BodyScan::is_done`], the rest of `data` belongs to the next message.
    pub fn scan(&mut self, data: &[u8]) -> Result<usize, ChunkError> {
        match self.kind {
            Framing::None => Ok(0),
            Framing::UntilClose => Ok(data.len()),
            Framing::Length(_) => {
                let n = (data.len() as u64).min(self.remaining);
                self.remaining -= n;
                if self.remaining == 0 {
                    self.st = St::Done;
                }
                Ok(n as usize)
            }
            Framing::Chunked => self.scan_chunked(data),
        }
    }

    fn scan_chunked(&mut self, data: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < data.len() && self.st != St::Done {
            if self.st == St::Data {
                let n = ((data.len() - i) as u64).min(self.remaining);
                self.remaining -= n;
                i += n as usize;
                if self.remaining == 0 {
                    self.st = St::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.st = match self.st {
                St::Start => {
                    self.remaining = u64::from(hex(b).ok_or(ChunkError("missing size digit"))?);
                    St::Size
                }
                St::Size => match b {
                    b'\t' | b' ' => St::SizeLws,
                    b';' => St::Ext,
                    b'\r' => St::SizeLf,
                    _ => {
                        let d = hex(b).ok_or(ChunkError("invalid size"))?;
                        self.remaining = self
                            .remaining
                            .checked_mul(16)
                            .and_then(|v| v.checked_add(u64::from(d)))
                            .ok_or(ChunkError("size overflow"))?;
                        St::Size
                    }
                },
                St::SizeLws => match b {
                    b'\t' | b' ' => St::SizeLws,
                    b';' => St::Ext,
                    b'\r' => St::SizeLf,
                    _ => return Err(ChunkError("invalid whitespace after size")),
                },
                St::Ext => match b {
                    b'\r' => St::SizeLf,
                    b'\n' => return Err(ChunkError("extension contains newline")),
                    _ if is_ctl(b) => return Err(ChunkError("control character in extension")),
                    _ => {
                        self.ext += 1;
                        if self.ext >= EXTENSIONS_LIMIT {
                            return Err(ChunkError("extensions over limit"));
                        }
                        St::Ext
                    }
                },
                St::SizeLf => match b {
                    b'\n' if self.remaining == 0 => St::EndCr,
                    b'\n' => St::Data,
                    _ => return Err(ChunkError("invalid size line end")),
                },
                St::DataCr => match b {
                    b'\r' => St::DataLf,
                    _ => return Err(ChunkError("invalid data end")),
                },
                St::DataLf => match b {
                    b'\n' => St::Start,
                    _ => return Err(ChunkError("invalid data end")),
                },
                // Trailer fields as RFC 9110 5.1 and 5.5 write them (a token, a
                // colon, a value without control characters): no obs-fold, no bare
                // LF, nothing a server could read as the end of the trailers or
                // as another field than the proxy did (they pass verbatim).
                St::EndCr => match b {
                    b'\r' => St::EndLf,
                    _ if is_tchar(b) => {
                        self.trailer_byte()?;
                        St::TrailerName
                    }
                    _ => return Err(ChunkError("invalid trailer line")),
                },
                St::TrailerName => {
                    self.trailer_byte()?;
                    match b {
                        b':' => St::Trailer,
                        _ if is_tchar(b) => St::TrailerName,
                        _ => return Err(ChunkError("invalid trailer name")),
                    }
                }
                St::Trailer => {
                    self.trailer_byte()?;
                    match b {
                        b'\r' => St::TrailerLf,
                        _ if is_ctl(b) => {
                            return Err(ChunkError("control character in trailer"));
                        }
                        _ => St::Trailer,
                    }
                }
                St::TrailerLf => match b {
                    b'\n' => {
                        self.trailer_lines += 1;
                        if self.trailer_lines > MAX_HEADERS {
                            return Err(ChunkError("too many trailers"));
                        }
                        St::EndCr
                    }
                    _ => return Err(ChunkError("invalid trailer line end")),
                },
                St::EndLf => match b {
                    b'\n' => St::Done,
                    _ => return Err(ChunkError("invalid end")),
                },
                St::Data | St::Done => unreachable!("handled above"),
            };
        }
        Ok(i)
    }

    fn trailer_byte(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > TRAILER_LIMIT {
            return Err(ChunkError("trailers over limit"));
        }
        Ok(())
    }
}

/// A token character (RFC 9110 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A control character other than HTAB (not allowed in field values, RFC 9110 5.5).
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Iterate the comma-separated tokens of a header value (trimmed, empty ones skipped).
pub fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The body of the `request_parse` fuzz target (`proxy/fuzz`), replayed on its
/// corpus by `proxy/tests/fuzz_corpus.rs`: parse a request head, check its
/// framing, and scan its body, asserting that nothing panics, spans stay inside
/// the head, refusals are client errors or `501`, and a body scans to the same
/// end (or the same error) whether it arrives at once or in pieces.
pub fn fuzz_request(data: &[u8]) {
    let mut head = RequestHead::default();
    match parse_request(data, &mut head) {
        Ok(true) => {}
        Ok(false) => {
            assert!(data.len() <= MAX_HEAD, "an over-long head must be refused");
            return;
        }
        Err(_) => return,
    }
    assert!(head.len <= data.len() && head.len <= MAX_HEAD);
    let within = |s: Span| s.start <= s.end && (s.end as usize) <= head.len;
    assert!(within(head.method) && within(head.target));
    assert!(head.fields.len() <= MAX_HEADERS);
    for f in &head.fields {
        assert!(within(f.name) && within(f.value));
        assert_eq!(f.kind, Kind::of(f.name.of(data)));
    }
    let proto = if head.minor == 1 {
        Proto::Http11
    } else {
        Proto::Http10
    };
    let fields = head
        .fields
        .iter()
        .map(|f| (f.name.of(data), f.value.of(data)));
    let checked = match check_request(proto, target_authority(head.target.of(data)), fields) {
        Ok(c) => c,
        Err(e) => {
            let s = e.status();
            assert!(s.is_client_error() || s == http::StatusCode::NOT_IMPLEMENTED);
            return;
        }
    };
    assert_ne!(
        checked.framing,
        Framing::UntilClose,
        "requests have a length"
    );
    if checked.close {
        assert!(checked.rewrite_framing && checked.framing == Framing::Chunked);
    }
    let body = &data[head.len..];
    let mut whole = BodyScan::new(checked.framing);
    let at_once = whole.scan(body).map(|n| (n, whole.is_done()));
    let mut parts = BodyScan::new(checked.framing);
    let mut taken = 0;
    let mut step = 1;
    let in_parts = loop {
        if taken == body.len() || parts.is_done() {
            break Ok((taken, parts.is_done()));
        }
        let end = (taken + step).min(body.len());
        let offered = end - taken;
        match parts.scan(&body[taken..end]) {
            Ok(n) => {
                assert!(n == offered || (n < offered && parts.is_done()));
                taken += n;
            }
            Err(e) => break Err(e),
        }
        step = step % 5 + 1;
    };
    assert_eq!(
        at_once.is_ok(),
        in_parts.is_ok(),
        "{at_once:?} {in_parts:?}"
    );
    if let (Ok(a), Ok(b)) = (at_once, in_parts) {
        assert_eq!(a, b);
        assert!(a.0 <= body.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan_all(f: Framing, data: &[u8]) -> Result<(usize, bool), ChunkError> {
        let mut s = BodyScan::new(f);
        let n = s.scan(data)?;
        Ok((n, s.is_done()))
    }

    #[test]
    fn request_heads_parse_into_spans() {
        let raw = b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nContent-Length: 5\r\nX-Other:  v \r\n\r\nhello";
        let mut h = RequestHead::default();
        assert!(parse_request(raw, &mut h).unwrap());
        assert_eq!(h.method.of(raw), b"POST");
        assert_eq!(h.target.of(raw), b"/a?b=1");
        assert_eq!(h.minor, 1);
        assert_eq!(h.len, raw.len() - 5);
        let kinds: Vec<Kind> = h.fields.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [Kind::Host, Kind::Cookie, Kind::ContentLength, Kind::Other]
        );
        assert_eq!(h.fields[3].value.of(raw), b"v");
        let fields = h.fields.iter().map(|f| (f.name.of(raw), f.value.of(raw)));
        assert_eq!(
            check_request(Proto::Http11, None, fields).map(|r| r.framing),
            Ok(Framing::Length(5))
        );
        assert!(!parse_request(&raw[..20], &mut h).unwrap());
        assert_eq!(
            parse_request(b"G(T / HTTP/1.1\r\n\r\n", &mut h),
            Err(HeadError::Invalid)
        );
    }

    #[test]
    fn too_many_or_too_big() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            raw.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let mut h = RequestHead::default();
        assert_eq!(parse_request(&raw, &mut h), Err(HeadError::TooLarge));
        let big = vec![b'a'; MAX_HEAD + 10];
        let mut raw = b"GET / HTTP/1.1\r\nx: ".to_vec();
        raw.extend_from_slice(&big);
        assert_eq!(parse_request(&raw, &mut h), Err(HeadError::TooLarge));
        let mut raw = b"GET /".to_vec();
        raw.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(parse_request(&raw, &mut h), Err(HeadError::UriTooLong));
        raw.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(parse_request(&raw, &mut h), Err(HeadError::UriTooLong));
    }

    fn check(proto: Proto, target: &str, hs: &str) -> Result<RequestFraming, RequestError> {
        let raw = format!("POST {target} HTTP/1.1\r\n{hs}\r\n");
        let mut h = RequestHead::default();
        assert!(parse_request(raw.as_bytes(), &mut h).unwrap());
        let b = raw.as_bytes();
        let fields = h.fields.iter().map(|f| (f.name.of(b), f.value.of(b)));
        check_request(proto, target_authority(h.target.of(b)), fields)
    }

    #[test]
    fn request_framing_rules() {
        use RequestError as E;
        let f = |hs: &str| check(Proto::Http11, "/", hs);
        let ok = |framing, rewrite_framing, close| {
            Ok(RequestFraming {
                framing,
                rewrite_framing,
                close,
                expect_continue: false,
            })
        };
        assert_eq!(f(""), ok(Framing::None, false, false));
        assert_eq!(f("content-length: 0\r\n"), ok(Framing::None, false, false));
        assert_eq!(
            f("content-length: 7\r\n"),
            ok(Framing::Length(7), false, false)
        );
        assert_eq!(
            f("Transfer-Encoding: chunked\r\n"),
            ok(Framing::Chunked, false, false)
        );
        assert_eq!(
            f("Transfer-Encoding: Chunked\r\n"),
            ok(Framing::Chunked, true, false)
        );
        assert_eq!(
            f("Transfer-Encoding: CHUNKED\r\n"),
            ok(Framing::Chunked, true, false)
        );

        assert_eq!(
            f("transfer-encoding: chunked\r\ncontent-length: 3\r\n"),
            ok(Framing::Chunked, true, true)
        );
        for (hs, e) in [
            ("content-length: +1\r\n", E::BadContentLength),
            (
                "content-length: 1\r\ncontent-length: 1\r\n",
                E::BadContentLength,
            ),
            ("content-length: 3, 3\r\n", E::BadContentLength),
            (
                "content-length: 1\r\ncontent-length: 2\r\n",
                E::BadContentLength,
            ),
            ("content-length: 1, 2\r\n", E::BadContentLength),
            ("content-length: 1,\r\n", E::BadContentLength),
            ("content-length: 0x10\r\n", E::BadContentLength),
            ("content-length: \r\n", E::BadContentLength),
            ("transfer-encoding: gzip, chunked\r\n", E::UnsupportedCoding),
            (
                "transfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n",
                E::UnsupportedCoding,
            ),
            (
                "transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n",
                E::UnsupportedCoding,
            ),
            (
                "transfer-encoding: chunked, gzip\r\n",
                E::BadTransferEncoding,
            ),
            ("transfer-encoding: gzip\r\n", E::BadTransferEncoding),
            (
                "transfer-encoding: chunked, chunked\r\n",
                E::BadTransferEncoding,
            ),
            ("transfer-encoding: \r\n", E::BadTransferEncoding),
            ("transfer-encoding: ,chunked\r\n", E::BadTransferEncoding),
            ("transfer-encoding: chunked ,\r\n", E::BadTransferEncoding),
            ("transfer-encoding: xchunked\r\n", E::BadTransferEncoding),
            ("host: a\r\nhost: a\r\n", E::DuplicateHost),
            ("host: a b\r\n", E::BadHost),
            ("host: a/b\r\n", E::BadHost),
            ("expect: 100-continue, x\r\n", E::Expectation),
        ] {
            assert_eq!(f(hs), Err(e), "{hs:?}");
        }
        assert!(f("expect: 100-Continue\r\n").unwrap().expect_continue);
        assert_eq!(
            check(Proto::Http10, "/", "transfer-encoding: chunked\r\n"),
            Err(E::TransferEncodingInHttp10)
        );
        assert_eq!(
            check(Proto::Http11, "http://a.example/x", "host: b.example\r\n"),
            Err(E::HostMismatch)
        );
        assert!(
            check(
                Proto::Http11,
                "http://a.example:80/x",
                "host: A.example:80\r\n"
            )
            .is_ok()
        );
        assert_eq!(
            check(Proto::Http11, "http://u@a.example/x", ""),
            Err(E::BadHost)
        );
        assert_eq!(check(Proto::Http11, "http:///x", ""), Err(E::BadHost));
        for hs in [
            "connection: close\r\n",
            "te: gzip\r\n",
            "transfer-encoding: chunked\r\n",
        ] {
            assert_eq!(
                check(Proto::Http2, "/", hs),
                Err(E::ConnectionSpecific),
                "{hs}"
            );
        }
        assert!(check(Proto::Http2, "/", "te: trailers\r\n").is_ok());
        assert_eq!(E::UnsupportedCoding.status().as_u16(), 501);
        assert_eq!(E::Expectation.status().as_u16(), 417);
        assert_eq!(E::DuplicateHost.status().as_u16(), 400);
        assert!(!connection_may_remove(b"Content-Length"));
        assert!(connection_may_remove(b"x-secret"));
    }

    #[test]
    fn response_framing_rules() {
        let f = |status: &str, hs: &str, head_req: bool| {
            let raw = format!("HTTP/1.1 {status}\r\n{hs}\r\n");
            let mut h = ResponseHead::default();
            assert!(parse_response(raw.as_bytes(), &mut h).unwrap());
            response_framing(raw.as_bytes(), &h, head_req)
        };
        assert_eq!(
            f("200 OK", "content-length: 3\r\n", false),
            Ok((Framing::Length(3), false))
        );
        assert_eq!(
            f("200 OK", "content-length: 3\r\n", true),
            Ok((Framing::None, false))
        );
        assert_eq!(f("204 No Content", "", false), Ok((Framing::None, false)));
        assert_eq!(
            f("304 Not Modified", "content-length: 9\r\n", false),
            Ok((Framing::None, false))
        );
        assert_eq!(
            f("204 No Content", "content-length: x\r\n", false),
            Ok((Framing::None, false))
        );
        assert_eq!(f("200 OK", "", false), Ok((Framing::UntilClose, false)));
        assert_eq!(
            f(
                "200 OK",
                "transfer-encoding: chunked\r\ncontent-length: 3\r\n",
                false
            ),
            Ok((Framing::Chunked, true))
        );
        assert_eq!(
            f("200 OK", "transfer-encoding: gzip\r\n", false),
            Ok((Framing::UntilClose, false))
        );
        assert_eq!(
            f("200 OK", "content-length: 3, 3\r\n", false),
            Ok((Framing::Length(3), false))
        );
        assert_eq!(
            f(
                "200 OK",
                "content-length: 3\r\ncontent-length: 4\r\n",
                false
            ),
            Err(HeadError::Invalid)
        );
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let body =
            b"5;name=val\r\nhello\r\n6 ; x\r\n world\r\n0\r\nExpires: never\r\nX-T: 1\r\n\r\nNEXT";
        assert_eq!(scan_all(Framing::Chunked, body), Ok((body.len() - 4, true)));
        let plain = b"0\r\n\r\n";
        assert_eq!(scan_all(Framing::Chunked, plain), Ok((5, true)));
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5;a\nb\r\n",
            b"ffffffffffffffffff\r\n",
            b"0\r\nX: 1\rY",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n folded\r\n\r\n",
            b"0\r\nContent-L;ngth: 0\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\nX: \x001\r\n\r\n",
            b"1;a\x00b\r\nx\r\n",
        ] {
            assert!(scan_all(Framing::Chunked, bad).is_err(), "{bad:?}");
        }
        let mut many = b"1;".to_vec();
        many.extend(std::iter::repeat_n(b'a', EXTENSIONS_LIMIT as usize));
        assert!(scan_all(Framing::Chunked, &many).is_err());
    }

    #[test]
    fn lengths_and_head_end() {
        assert_eq!(scan_all(Framing::Length(3), b"abcdef"), Ok((3, true)));
        assert_eq!(scan_all(Framing::Length(10), b"abc"), Ok((3, false)));
        assert_eq!(scan_all(Framing::None, b"abc"), Ok((0, true)));
        assert_eq!(parse_length(b"0012"), Some(12));
        assert_eq!(parse_length(b"99999999999999999999"), None);
        assert!(has_head_end(b"GET / HTTP/1.1\r\n\r\n", 0));
        assert!(has_head_end(b"GET / HTTP/1.1\r\n\r\n", 17));
        assert!(has_head_end(b"GET / HTTP/1.1\n\n", 15));
        assert!(!has_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The fuzz target's invariants hold on mutated requests (a cheap stand-in
        /// for libFuzzer in `cargo test`).
        #[test]
        fn fuzz_request_holds_on_mutations(
            base in 0usize..4,
            edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 0..8),
        ) {
            let bases: [&[u8]; 4] = [
                b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX: 1\r\n\r\n",
                b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                b"GET http://x/a HTTP/1.0\r\nHost: x\r\nExpect: 100-continue\r\nConnection: host\r\n\r\n",
                b"POST /p HTTP/1.1\r\nContent-Length: 5, 5\r\nTransfer-Encoding: ,Chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
            ];
            let mut data = bases[base].to_vec();
            for (at, byte, op) in edits {
                let i = usize::from(at) % (data.len() + 1);
                match op {
                    0 if i < data.len() => data[i] = byte,
                    1 => data.insert(i, byte),
                    _ => data.truncate(i.max(1)),
                }
            }
            fuzz_request(&data);
        }

        /// A chunked body split at arbitrary points scans to the same end.
        #[test]
        fn chunked_scan_is_split_independent(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6),
            ext in proptest::bool::ANY,
            trailer in proptest::bool::ANY,
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let mut body = Vec::new();
            for c in &chunks {
                body.extend_from_slice(format!("{:x}", c.len()).as_bytes());
                if ext { body.extend_from_slice(b";e=\"1\""); }
                body.extend_from_slice(b"\r\n");
                body.extend_from_slice(c);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n");
            if trailer { body.extend_from_slice(b"X-Sum: 1\r\n"); }
            body.extend_from_slice(b"\r\n");
            let total = body.len();
            body.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % body.len()).collect();
            cuts.sort_unstable();
            let mut s = BodyScan::new(Framing::Chunked);
            let mut taken = 0;
            let mut prev = 0;
            for c in cuts.into_iter().chain([body.len()]) {
                if c < prev || s.is_done() { continue; }
                taken += s.scan(&body[prev..c]).unwrap();
                prev = c;
            }
            prop_assert!(s.is_done());
            prop_assert_eq!(taken, total);
        }
    }
}
