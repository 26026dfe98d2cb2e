//! The HTTP/1.1 fast path: a client connection served without a typed HTTP stack.
//!
//! Request heads are parsed with `httparse` into offsets over the connection's read
//! buffer ([`crate::h1`]); the routing steps are the same as on the hyper path
//! ([`Frontend::decide`], [`Frontend::slot`], [`Frontend::after_failure`]); the
//! head for the server is written once into an output buffer with the few edits
//! the proxy makes (hop-by-hop fields, persistence cookie, `X-Forwarded-For`,
//! `Expect`), followed by whatever body bytes already arrived, and sent with one
//! write on a pooled plain TCP connection. The response head is parsed and
//! rewritten the same way (hop-by-hop fields, session-ID learning, `Set-Cookie`
//! insertion or rewriting, `Cache-control: private`) and sent with the first body
//! bytes in one write. Bodies are copied with their framing (Content-Length,
//! chunked with extensions and trailers, or until close), never re-chunked; a
//! request body is streamed to the server while the response is awaited, so a
//! server may answer early.
//!
//! Every request head first goes through the framing rules shared with the hyper
//! path ([`h1::check_request`]); a request they refuse is answered here (`400`,
//! `417`, `501`) and the connection closed. What the fast path does not handle
//! goes to hyper with the bytes already read (the connection is then served by
//! hyper to its end, through [`crate::guard`]): HTTP/2 prior knowledge,
//! HTTP/1.0, `CONNECT`, protocol upgrades, and targets that are not in origin
//! form or not UTF-8.

use std::future::Future;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::balance::{HeaderLookup, visible_str};
use crate::config::CookieMode;
use crate::cookie;
use crate::h1::{self, BodyScan, Field, Framing, HeadError, Kind, RequestHead, ResponseHead, Span};
use crate::proxy::{
    CacheInfo, Early, Frontend, ReqInfo, Routed, cacheable, error_page, status_idx,
};
use crate::qos::Permit;
use crate::upstream::{ClientAddrs, ServerStream, UpstreamError};

/// Initial size of a client connection's read buffer.
const CLIENT_BUF: usize = 4 * 1024;
/// Initial size of the buffer server responses are read into.
const SERVER_BUF: usize = 16 * 1024;
/// Buffer size for long bodies.
const BODY_BUF: usize = 64 * 1024;
/// Body bytes up to this many are copied behind the head into a single write.
const COALESCE: usize = 16 * 1024;
/// Most bytes read and dropped while closing a connection whose request was not
/// read to its end (so the client sees the response instead of a reset).
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_millis(500);

/// How a fast-path connection ended.
pub(crate) enum Served<S> {
    /// Closed.
    Done,
    /// Hand the connection to hyper: the stream and the bytes read but not served.
    Fallback(S, Vec<u8>),
}

/// A read buffer: bytes read and not yet consumed, with room to read more.
struct IoBuf {
    buf: BytesMut,
    initial: usize,
}

impl IoBuf {
    fn new(initial: usize) -> IoBuf {
        IoBuf {
            buf: BytesMut::new(),
            initial,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
    }

    fn clear(&mut self) {
        self.buf.clear();
    }

    /// Give the memory back when nothing is buffered (idle connections hold none).
    fn release(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Make room for at least `want` more bytes.
    fn make_room(&mut self, want: usize) {
        if self.buf.capacity() - self.buf.len() < want {
            self.buf.reserve(want.max(self.initial));
        }
    }

    fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut R,
    ) -> Poll<io::Result<usize>> {
        if self.buf.capacity() == self.buf.len() {
            self.make_room(self.initial);
        }
        tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.buf)
    }
}

/// A deadline timer that is cheap to move forward: the sleep is only reset when it
/// fires early (or a nearer deadline is asked), not on every request.
struct Timer {
    sleep: Pin<Box<Sleep>>,
    at: Instant,
}

impl Timer {
    fn new() -> Timer {
        let at = Instant::now() + Duration::from_secs(86400);
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            at,
        }
    }

    /// Whether `deadline` has passed; when not, the task is woken by then.
    fn poll_expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        if self.at > deadline {
            self.sleep.as_mut().reset(deadline);
            self.at = deadline;
        }
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if Instant::now() >= deadline {
                return true;
            }
            self.sleep.as_mut().reset(deadline);
            self.at = deadline;
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timeout")
}

/// A deadline `timeout` from the first time an operation has to wait (reading the
/// clock only then: most reads and writes complete at once).
struct Lazy {
    timeout: Duration,
    at: Option<Instant>,
}

impl Lazy {
    fn new(timeout: Duration) -> Lazy {
        Lazy { timeout, at: None }
    }

    fn expired(&mut self, timer: &mut Timer, cx: &mut Context<'_>) -> bool {
        let t = self.timeout;
        let at = *self.at.get_or_insert_with(|| Instant::now() + t);
        timer.poll_expired(cx, at)
    }
}

/// Read more bytes into `buf`: the count, 0 at end of stream, `TimedOut` after
/// `timeout` of waiting.
async fn fill<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut IoBuf,
    timer: &mut Timer,
    dl: &mut Lazy,
) -> io::Result<usize> {
    std::future::poll_fn(|cx| match buf.poll_fill(cx, io) {
        Poll::Ready(r) => Poll::Ready(r),
        Poll::Pending if dl.expired(timer, cx) => Poll::Ready(Err(timed_out())),
        Poll::Pending => Poll::Pending,
    })
    .await
}

/// Write all of `data`, `TimedOut` after `timeout` of waiting.
async fn write_all<W: AsyncWrite + Unpin>(
    io: &mut W,
    mut data: &[u8],
    timer: &mut Timer,
    dl: &mut Lazy,
) -> io::Result<()> {
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| match Pin::new(&mut *io).poll_write(cx, data) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending if dl.expired(timer, cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// Write `head` then `body` (one `writev` when the stream supports it).
async fn write_two<W: AsyncWrite + Unpin>(
    io: &mut W,
    head: &[u8],
    body: &[u8],
    timer: &mut Timer,
    dl: &mut Lazy,
) -> io::Result<()> {
    if body.is_empty() || !io.is_write_vectored() {
        write_all(io, head, timer, dl).await?;
        return write_all(io, body, timer, dl).await;
    }
    let mut done = 0;
    let total = head.len() + body.len();
    while done < head.len() {
        let n = std::future::poll_fn(|cx| {
            let bufs = [io::IoSlice::new(&head[done..]), io::IoSlice::new(body)];
            match Pin::new(&mut *io).poll_write_vectored(cx, &bufs) {
                Poll::Ready(r) => Poll::Ready(r),
                Poll::Pending if dl.expired(timer, cx) => Poll::Ready(Err(timed_out())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    if done < total {
        write_all(io, &body[done - head.len()..], timer, dl).await?;
    }
    Ok(())
}

/// Header lookup over a head parsed in place.
struct Fields<'a> {
    buf: &'a [u8],
    fields: &'a [Field],
}

impl HeaderLookup for Fields<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.name.of(self.buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| f.value.of(self.buf))
    }
}

/// What a `Connection` header says: `close`, and the other fields it lists.
fn connection_tokens(buf: &[u8], fields: &[Field], listed: &mut Vec<Span>) -> bool {
    listed.clear();
    let mut close = false;
    for f in fields.iter().filter(|f| f.kind == Kind::Connection) {
        let v = f.value.of(buf);
        for t in h1::tokens(v) {
            if t.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if !t.eq_ignore_ascii_case(b"keep-alive") && h1::connection_may_remove(t) {
                let start = f.value.start as usize + (t.as_ptr() as usize - v.as_ptr() as usize);
                listed.push(Span {
                    start: start as u32,
                    end: (start + t.len()) as u32,
                });
            }
        }
    }
    close
}

fn is_listed(buf: &[u8], listed: &[Span], name: &[u8]) -> bool {
    listed.iter().any(|s| s.of(buf).eq_ignore_ascii_case(name))
}

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A response the proxy writes itself.
pub(crate) fn local_reply(out: &mut Vec<u8>, status: StatusCode, text: &str, close: bool) {
    let body = error_page(status, text);
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: text/html\r\ncache-control: no-cache\r\ncontent-length: {}\r\n{}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    );
    out.extend_from_slice(body.as_bytes());
}

/// The text of the error page for a request that could not be read or is
/// refused.
pub(crate) fn refusal_text(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "Your browser sent an invalid request.",
        StatusCode::REQUEST_TIMEOUT => "Your browser didn't send a complete request in time.",
        StatusCode::URI_TOO_LONG => "The request target is too long.",
        StatusCode::NOT_IMPLEMENTED => "The request's transfer coding is not supported.",
        StatusCode::EXPECTATION_FAILED => "The request's expectation is not supported.",
        _ => "The request head is too large.",
    }
}

/// Why a response head could not be read.
enum HeadWait {
    /// Nothing at all arrived (end of stream or error): on a reused connection,
    /// the server had closed it.
    Nothing(io::Error),
    /// The stream failed after part of a head.
    Io(io::Error),
    /// Past the deadline.
    Timeout,
    /// Not a valid response head.
    Invalid(&'static str),
}

/// Read one response head (possibly an interim 1xx) to the start of `sbuf`.
async fn read_head_once<R: AsyncRead + Unpin>(
    up: &mut R,
    sbuf: &mut IoBuf,
    rs: &mut ResponseHead,
    timer: &mut Timer,
    dl: &mut Lazy,
) -> Result<(), HeadWait> {
    let mut scanned = 0;
    loop {
        let b = sbuf.bytes();
        if !b.is_empty() && (scanned == 0 || h1::has_head_end(b, scanned)) {
            match h1::parse_response(b, rs) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(_) => return Err(HeadWait::Invalid("malformed response head")),
            }
        }
        if b.len() > h1::MAX_HEAD {
            return Err(HeadWait::Invalid("response head too large"));
        }
        scanned = b.len();
        let had = !sbuf.is_empty();
        sbuf.make_room(4096);
        match fill(up, sbuf, timer, dl).await {
            Ok(0) => {
                let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                return Err(if had {
                    HeadWait::Io(e)
                } else {
                    HeadWait::Nothing(e)
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(HeadWait::Timeout),
            Err(e) => {
                return Err(if had {
                    HeadWait::Io(e)
                } else {
                    HeadWait::Nothing(e)
                });
            }
        }
    }
}

/// Why copying a body failed.
#[derive(Debug)]
enum PumpError {
    /// Reading the source failed or timed out.
    Read(#[allow(dead_code)] io::Error),
    /// The source ended before the body did.
    Eof,
    /// Writing the destination failed or timed out.
    Write(#[allow(dead_code)] io::Error),
    /// Malformed chunked framing.
    Malformed,
}

/// Copy the rest of a body from `src` (after what `buf` holds) to `dst`, with its
/// framing; stops at its end (bytes after it stay in `buf`).
#[allow(clippy::too_many_arguments)]
async fn pump<R, W>(
    src: &mut R,
    buf: &mut IoBuf,
    dst: &mut W,
    scan: &mut BodyScan,
    timer: &mut Timer,
    read_timeout: Duration,
    write_timeout: Duration,
) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if scan
        .remaining_hint()
        .is_none_or(|n| n > buf.capacity() as u64)
    {
        buf.make_room(BODY_BUF);
    }
    loop {
        if !buf.is_empty() {
            let n = scan.scan(buf.bytes()).map_err(|_| PumpError::Malformed)?;
            if n > 0 {
                write_all(dst, &buf.bytes()[..n], timer, &mut Lazy::new(write_timeout))
                    .await
                    .map_err(PumpError::Write)?;
                buf.consume(n);
            }
        }
        if scan.is_done() {
            return Ok(());
        }
        buf.make_room(4096);
        match fill(src, buf, timer, &mut Lazy::new(read_timeout)).await {
            Ok(0) if scan.until_close() => return Ok(()),
            Ok(0) => return Err(PumpError::Eof),
            Ok(_) => {}
            Err(e) => return Err(PumpError::Read(e)),
        }
    }
}

/// Why an exchange with the server failed.
enum ExchError {
    /// Before the request was committed (the client buffer still holds it): the
    /// routing's retry rules apply.
    Upstream(UpstreamError),
    /// The server failed after the request body started streaming: `502`.
    Broken(UpstreamError),
    /// No response head within `timeouts.server`.
    Timeout,
    /// The client went away or timed out; nothing more can be sent to it.
    Client,
    /// The request body is malformed: `400`.
    BadRequest,
}

/// A request sent and its final response head received (at the start of `sbuf`).
struct Sent {
    up: ServerStream,
    /// Client bytes of the request still to consume (0 when its body was streamed).
    req_bytes: usize,
    /// Whether the whole request body reached the server.
    body_done: bool,
    framing: Framing,
    drop_length: bool,
}

/// What to do with the client connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
    /// Close after reading (and dropping) what the client may still send.
    Linger,
    /// Hand the connection to hyper.
    Fallback,
}

/// Per-request facts taken from the request head.
struct ReqFacts {
    framing: Framing,
    /// Replace the framing fields (see [`h1::RequestFraming::rewrite_framing`]).
    rewrite_framing: bool,
    close: bool,
    expect_continue: bool,
    has_host: bool,
    is_head: bool,
    /// A WebSocket upgrade (GET without a body, `Upgrade: websocket`).
    websocket: bool,
}

/// One client connection on the fast path.
struct Conn<'f, S> {
    /// The handler of the current request (content switching chooses it).
    fe: &'f Frontend,
    /// The frontend's handler.
    root: &'f Frontend,
    peer: SocketAddr,
    /// The address the client connected to.
    local: SocketAddr,
    client: S,
    cbuf: IoBuf,
    sbuf: IoBuf,
    out: Vec<u8>,
    rq: RequestHead,
    rs: ResponseHead,
    listed: Vec<Span>,
    timer: Timer,
    stop_rx: watch::Receiver<bool>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

enum HeadStatus {
    Ready,
    Closed,
    Fallback,
    Reject(StatusCode),
}

/// Serve a client connection until it closes, or until a request the fast path
/// does not handle (then the caller hands it to hyper with the returned bytes).
pub(crate) async fn serve<S>(
    fe: &Frontend,
    client: S,
    peer: SocketAddr,
    local: SocketAddr,
) -> Served<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let stop_rx = fe.stop_signal();
    let mut rx = stop_rx.clone();
    let mut c = Conn {
        fe,
        root: fe,
        peer,
        local,
        client,
        cbuf: IoBuf::new(CLIENT_BUF),
        sbuf: IoBuf::new(SERVER_BUF),
        out: Vec::with_capacity(1024),
        rq: RequestHead::default(),
        rs: ResponseHead::default(),
        listed: Vec::new(),
        timer: Timer::new(),
        stop_rx,
        stop: Box::pin(async move {
            let _ = rx.wait_for(|v| *v).await;
        }),
    };
    loop {
        let next = match c.read_head().await {
            HeadStatus::Ready => c.request().await,
            HeadStatus::Closed => Next::Close,
            HeadStatus::Fallback => Next::Fallback,
            HeadStatus::Reject(status) => {
                fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                c.reply_bad(status).await
            }
        };
        match next {
            Next::KeepAlive => {
                // Idle connections keep no server buffer, nor a grown client one.
                c.sbuf.release();
                if c.cbuf.capacity() > 4 * CLIENT_BUF {
                    c.cbuf.release();
                }
                continue;
            }
            // Unread pipelined requests would make the close a reset, which can
            // destroy the response on its way: drain them first.
            Next::Close if c.cbuf.is_empty() => {
                let _ = c.client.shutdown().await;
                return Served::Done;
            }
            Next::Close | Next::Linger => {
                c.linger().await;
                return Served::Done;
            }
            Next::Fallback => {
                let rest = c.cbuf.bytes().to_vec();
                return Served::Fallback(c.client, rest);
            }
        }
    }
}

/// The request target (validated UTF-8 before routing).
fn target_str<'a>(buf: &'a [u8], rq: &RequestHead) -> &'a str {
    std::str::from_utf8(rq.target.of(buf)).unwrap_or("/")
}

/// The routing view of the request whose head is at the start of `buf`.
fn req_info<'a>(
    method: &'a Method,
    buf: &'a [u8],
    rq: &'a RequestHead,
    joined: Option<&'a str>,
    lookup: &'a Fields<'a>,
    peer: SocketAddr,
    fe: &Frontend,
) -> ReqInfo<'a> {
    let path_q = target_str(buf, rq);
    let path = match memchr::memchr(b'?', path_q.as_bytes()) {
        Some(i) => &path_q[..i],
        None => path_q,
    };
    let cookies = joined.or_else(|| {
        rq.fields
            .iter()
            .filter(|f| f.kind == Kind::Cookie)
            .find_map(|f| visible_str(f.value.of(buf)))
    });
    ReqInfo {
        method,
        path_q,
        path,
        cookies,
        headers: lookup,
        peer,
        secure: fe.is_secure(path),
    }
}

impl<'f, S> Conn<'f, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Close after reading what the client still sends, for a little while, so
    /// that it gets the response rather than a connection reset.
    async fn linger(&mut self) {
        let _ = self.client.shutdown().await;
        let mut dl = Lazy::new(LINGER_TIME);
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            self.cbuf.clear();
            match fill(&mut self.client, &mut self.cbuf, &mut self.timer, &mut dl).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    }

    /// Answer a request that could not be read or is refused (400, 408, 414, 417,
    /// 431, 501), then close.
    async fn reply_bad(&mut self, status: StatusCode) -> Next {
        local_reply(&mut self.out, status, refusal_text(status), true);
        let mut dl = Lazy::new(self.fe.client_timeout);
        let _ = write_all(&mut self.client, &self.out, &mut self.timer, &mut dl).await;
        Next::Linger
    }

    /// Get a complete request head at the start of the client buffer.
    async fn read_head(&mut self) -> HeadStatus {
        const H2: &[u8] = b"PRI * HTTP/2";
        let mut scanned = 0usize;
        let mut dl = Lazy::new(self.fe.keepalive_timeout);
        loop {
            let b = self.cbuf.bytes();
            if !b.is_empty() {
                if b.starts_with(H2) {
                    return HeadStatus::Fallback;
                }
                if !(b.len() < H2.len() && H2.starts_with(b))
                    && (scanned == 0 || h1::has_head_end(b, scanned))
                {
                    match h1::parse_request(b, &mut self.rq) {
                        Ok(true) => return HeadStatus::Ready,
                        Ok(false) => {}
                        Err(HeadError::Invalid) => {
                            return HeadStatus::Reject(StatusCode::BAD_REQUEST);
                        }
                        Err(HeadError::TooLarge) => {
                            return HeadStatus::Reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                        }
                        Err(HeadError::UriTooLong) => {
                            return HeadStatus::Reject(StatusCode::URI_TOO_LONG);
                        }
                    }
                }
                scanned = b.len();
                if scanned > h1::MAX_HEAD {
                    return HeadStatus::Reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                }
            }
            self.cbuf.make_room(2048);
            let idle = self.cbuf.is_empty();
            let Conn {
                client,
                cbuf,
                timer,
                stop,
                ..
            } = self;
            let r = std::future::poll_fn(|cx| match cbuf.poll_fill(cx, client) {
                Poll::Ready(r) => Poll::Ready(r),
                Poll::Pending => {
                    if idle && stop.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(0));
                    }
                    if dl.expired(timer, cx) {
                        return Poll::Ready(Err(timed_out()));
                    }
                    Poll::Pending
                }
            })
            .await;
            match r {
                Ok(0) => {
                    if !idle {
                        // The client closed in the middle of a request head.
                        self.fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    return HeadStatus::Closed;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return if idle {
                        HeadStatus::Closed
                    } else {
                        HeadStatus::Reject(StatusCode::REQUEST_TIMEOUT)
                    };
                }
                Err(e) => {
                    log::debug!("client {}: {e}", self.peer);
                    self.fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                    return HeadStatus::Closed;
                }
            }
        }
    }

    /// The facts of the request head at the start of the client buffer, `None`
    /// when the request is for hyper, or why it is refused. The framing rules
    /// ([`h1::check_request`]) apply before any hand-over, so both paths refuse
    /// alike.
    fn facts(&mut self) -> Result<Option<(Method, ReqFacts, Option<String>)>, h1::RequestError> {
        let buf = self.cbuf.bytes();
        let rq = &self.rq;
        let method_b = rq.method.of(buf);
        let target_b = rq.target.of(buf);
        let proto = if rq.minor == 1 {
            h1::Proto::Http11
        } else {
            h1::Proto::Http10
        };
        let checked = h1::check_request(
            proto,
            h1::target_authority(target_b),
            rq.fields.iter().map(|f| (f.name.of(buf), f.value.of(buf))),
        )?;
        // WebSocket upgrades are tunnelled here (crate::tunnel); other
        // upgrades go to hyper.
        let websocket = method_b == b"GET"
            && checked.framing == Framing::None
            && rq
                .fields
                .iter()
                .any(|f| f.kind == Kind::Upgrade && crate::tunnel::is_websocket(f.value.of(buf)));
        if rq.minor != 1
            || method_b == b"CONNECT"
            || target_b.first() != Some(&b'/')
            || std::str::from_utf8(target_b).is_err()
            || (!websocket && rq.fields.iter().any(|f| f.kind == Kind::Upgrade))
        {
            return Ok(None);
        }
        let Ok(method) = Method::from_bytes(method_b) else {
            return Ok(None);
        };
        // HTTP/1.1 allows one Cookie header; several are joined as on HTTP/2.
        let mut values = rq
            .fields
            .iter()
            .filter(|f| f.kind == Kind::Cookie)
            .filter_map(|f| visible_str(f.value.of(buf)));
        let joined = match (values.next(), values.next()) {
            (Some(a), Some(b)) => {
                let mut j = format!("{a}; {b}");
                for v in values {
                    j.push_str("; ");
                    j.push_str(v);
                }
                Some(j)
            }
            _ => None,
        };
        let close = connection_tokens(buf, &rq.fields, &mut self.listed);
        let facts = ReqFacts {
            framing: checked.framing,
            rewrite_framing: checked.rewrite_framing,
            close: close || checked.close,
            expect_continue: checked.expect_continue,
            has_host: rq.fields.iter().any(|f| f.kind == Kind::Host),
            is_head: method == Method::HEAD,
            websocket,
        };
        Ok(Some((method, facts, joined)))
    }

    /// Serve the request whose head is at the start of the client buffer.
    async fn request(&mut self) -> Next {
        let t0 = std::time::Instant::now();
        let (method, facts, joined) = match self.facts() {
            Ok(Some(x)) => x,
            Ok(None) => return Next::Fallback,
            Err(e) => {
                log::debug!("client {}: {e}", self.peer);
                self.fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                return self.reply_bad(e.status()).await;
            }
        };
        self.fe = self.route(&method);
        let fe = self.fe;
        if fe.upstream().http2() {
            // HTTP/2 to the servers is hyper's: it serves the connection from here on.
            return Next::Fallback;
        }
        fe.stats.requests.fetch_add(1, Ordering::Relaxed);
        let log = fe
            .logging()
            .then(|| target_str(self.cbuf.bytes(), &self.rq).to_string());

        // Route and wait for a slot.
        let routed = {
            let buf = self.cbuf.bytes();
            let lookup = Fields {
                buf,
                fields: &self.rq.fields,
            };
            let info = req_info(
                &method,
                buf,
                &self.rq,
                joined.as_deref(),
                &lookup,
                self.peer,
                fe,
            );
            match fe.decide(&info, t0) {
                Ok(mut routed) => match fe.slot(&info, &mut routed, t0).await {
                    Ok(permit) => Ok((routed, permit)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        };
        let (mut routed, mut permit) = match routed {
            Ok(x) => x,
            Err(e) => return self.early(e, &facts, &method, t0, log).await,
        };
        // Time to get a slot: only the access log shows it.
        let tw = if log.is_some() {
            t0.elapsed()
        } else {
            Duration::ZERO
        };
        if facts.websocket {
            return self
                .tunnel(&facts, &method, routed, permit, (t0, tw), log)
                .await;
        }

        // Forward, retrying as the routing rules say.
        let bodyless = facts.framing == Framing::None;
        let mut attempts = 0u32;
        loop {
            let srv = routed.decision.server;
            fe.backend.servers[srv]
                .stats
                .requests
                .fetch_add(1, Ordering::Relaxed);
            let err = match self.exchange(&facts, srv, routed.secure).await {
                Ok(sent) => {
                    return self
                        .respond(sent, &facts, &method, routed, permit, t0, tw, log)
                        .await;
                }
                Err(e) => e,
            };
            let e = match err {
                ExchError::Upstream(e) => e,
                ExchError::Broken(e) => {
                    fe.backend.servers[srv]
                        .stats
                        .connect_errors
                        .fetch_add(1, Ordering::Relaxed);
                    log::debug!("upstream {} failed: {e}", fe.backend.servers[srv].name);
                    drop(permit);
                    let early = Early::Fail {
                        status: StatusCode::BAD_GATEWAY,
                        text: "The server failed to answer.",
                        server: Some(srv),
                        via: Some(routed.decision.via),
                        waited: Some(tw),
                    };
                    return self.early(early, &facts, &method, t0, log).await;
                }
                ExchError::Timeout => {
                    drop(permit);
                    let early = fe.server_timeout(&routed, tw);
                    return self.early(early, &facts, &method, t0, log).await;
                }
                ExchError::Client => {
                    fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                    return Next::Close;
                }
                ExchError::BadRequest => {
                    drop(permit);
                    fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                    return self.reply_bad(StatusCode::BAD_REQUEST).await;
                }
            };
            // The client buffer still holds the request: the view is rebuilt.
            let verdict = {
                let buf = self.cbuf.bytes();
                let lookup = Fields {
                    buf,
                    fields: &self.rq.fields,
                };
                let info = req_info(
                    &method,
                    buf,
                    &self.rq,
                    joined.as_deref(),
                    &lookup,
                    self.peer,
                    fe,
                );
                fe.after_failure(
                    &info,
                    &mut routed,
                    &mut permit,
                    &mut attempts,
                    &e,
                    bodyless,
                    tw,
                )
                .await
            };
            if let Err(early) = verdict {
                drop(permit);
                return self.early(early, &facts, &method, t0, log).await;
            }
        }
    }

    /// Answer a request the proxy handles itself (error pages, redirects).
    async fn early(
        &mut self,
        e: Early,
        facts: &ReqFacts,
        method: &Method,
        t0: std::time::Instant,
        log: Option<String>,
    ) -> Next {
        let fe = self.fe;
        let (status, server, via, waited) = e.log_parts();
        // The request body (if any) was not read: close after answering.
        let close = facts.framing != Framing::None || facts.close || self.stopping();
        match e {
            Early::Fail { status, text, .. } => {
                fe.stats.errors.fetch_add(1, Ordering::Relaxed);
                local_reply(&mut self.out, status, text, close);
            }
            Early::Redirect { location, .. } => {
                self.out.clear();
                self.out
                    .extend_from_slice(b"HTTP/1.1 302 Found\r\nlocation: ");
                self.out.extend_from_slice(location.as_bytes());
                self.out
                    .extend_from_slice(b"\r\ncache-control: no-cache\r\ncontent-length: 0\r\n");
                if close {
                    self.out.extend_from_slice(b"connection: close\r\n");
                }
                self.out.extend_from_slice(b"\r\n");
            }
        }
        fe.stats.responses[status_idx(status.as_u16())].fetch_add(1, Ordering::Relaxed);
        if let Some(uri) = log {
            fe.log_access(
                self.peer,
                server,
                waited,
                t0,
                status.as_u16(),
                via,
                method.as_str(),
                &uri,
                "HTTP/1.1",
            );
        }
        let mut dl = Lazy::new(fe.client_timeout);
        if write_all(&mut self.client, &self.out, &mut self.timer, &mut dl)
            .await
            .is_err()
        {
            fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
            return Next::Close;
        }
        if facts.framing != Framing::None {
            Next::Linger
        } else if close {
            Next::Close
        } else {
            self.cbuf.consume(self.rq.len);
            Next::KeepAlive
        }
    }

    /// Pass a WebSocket upgrade to its server on a connection of its own and,
    /// once the server switches protocols, copy both ways until either side
    /// closes ([`crate::tunnel`]); the QoS slot is held meanwhile.
    async fn tunnel(
        &mut self,
        facts: &ReqFacts,
        method: &Method,
        routed: Routed,
        permit: Permit,
        (t0, tw): (std::time::Instant, Duration),
        log: Option<String>,
    ) -> Next {
        let fe = self.fe;
        let srv = routed.decision.server;
        let server = &fe.backend.servers[srv];
        server.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.build_request_head(facts, srv);
        let buf = self.cbuf.bytes();
        let upgrade = self.rq.fields.iter().find(|f| f.kind == Kind::Upgrade);
        self.out.truncate(self.out.len() - 2);
        self.out
            .extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        self.out
            .extend_from_slice(upgrade.map(|f| f.value.of(buf)).unwrap_or(b"websocket"));
        self.out.extend_from_slice(b"\r\n\r\n");
        let early = buf[self.rq.len..].to_vec();
        let upstream = fe.upstream();
        let pool = upstream.pool(srv, routed.secure);
        let addrs = ClientAddrs {
            peer: self.peer,
            local: self.local,
        };
        let up = match upstream.connect_stream(pool, Some(addrs)).await {
            Ok(up) => up,
            Err(e) => {
                server.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                log::debug!("upstream {} failed: {e}", server.name);
                drop(permit);
                let early = Early::Fail {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    text: "The server failed to answer.",
                    server: Some(srv),
                    via: Some(routed.decision.via),
                    waited: Some(tw),
                };
                return self.early(early, facts, method, t0, log).await;
            }
        };
        let timeout = fe.backend.cfg.timeouts.server.0;
        let mut keep_alive = false;
        let status = match crate::tunnel::websocket(
            &mut self.client,
            &self.out,
            &early,
            up,
            timeout,
        )
        .await
        {
            Ok(t) => {
                let (up, down) = t.bytes;
                log::debug!(
                    "websocket from {}: status {}, {up} bytes up, {down} down",
                    self.peer,
                    t.status
                );
                keep_alive = t.keep_alive && !facts.close && !self.stopping();
                t.status
            }
            Err(e) => {
                log::debug!("websocket from {}: {e}", self.peer);
                server.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                502
            }
        };
        drop(permit);
        server.stats.responses[status_idx(status)].fetch_add(1, Ordering::Relaxed);
        fe.stats.responses[status_idx(status)].fetch_add(1, Ordering::Relaxed);
        if let Some(uri) = log {
            let via = Some(routed.decision.via);
            fe.log_access(
                self.peer,
                Some(srv),
                Some(tw),
                t0,
                status,
                via,
                "GET",
                &uri,
                "HTTP/1.1",
            );
        }
        if keep_alive {
            // A refused upgrade: the connection goes on with the next request.
            self.cbuf.consume(self.rq.len);
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Whether shutdown was asked, or a reload replaced the configuration
    /// (finish this request, then close).
    fn stopping(&self) -> bool {
        self.stop_rx.has_changed().unwrap_or(true) || self.fe.is_retired()
    }

    /// The handler the frontend's content-switching rules choose for the request
    /// whose head is at the start of the client buffer.
    fn route(&self, method: &Method) -> &'f Frontend {
        if !self.root.switches() {
            return self.root;
        }
        let buf = self.cbuf.bytes();
        let lookup = Fields {
            buf,
            fields: &self.rq.fields,
        };
        let path_q = target_str(buf, &self.rq);
        let path = path_q.split('?').next().unwrap_or(path_q);
        let r = crate::route::RouteRequest {
            method,
            path,
            host: lookup.header("host"),
            headers: &lookup,
            source: self.peer.ip(),
        };
        self.root.pick(&r).map(|a| &**a).unwrap_or(self.root)
    }

    /// Write the request head for server `srv` into `out`.
    fn build_request_head(&mut self, facts: &ReqFacts, srv: usize) {
        let fe = self.fe;
        let be = &fe.backend;
        let buf = self.cbuf.bytes();
        let rq = &self.rq;
        let out = &mut self.out;
        let listed = &self.listed;
        out.clear();
        out.extend_from_slice(rq.method.of(buf));
        out.push(b' ');
        out.extend_from_slice(rq.target.of(buf));
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let ck = be.cfg.cookie.as_ref().filter(|c| {
            (c.mode == CookieMode::Insert && c.indirect) || c.mode == CookieMode::Prefix
        });
        for f in &rq.fields {
            let name = f.name.of(buf);
            let value = f.value.of(buf);
            if f.kind.is_hop_by_hop() || (!listed.is_empty() && is_listed(buf, listed, name)) {
                continue;
            }
            match f.kind {
                Kind::ContentLength | Kind::TransferEncoding if facts.rewrite_framing => continue,
                Kind::Expect if facts.expect_continue => continue,
                Kind::XForwardedFor if be.cfg.forwardfor => continue,
                Kind::Cookie => {
                    // Rewritten only when it carries the persistence cookie (a cheap
                    // substring test first).
                    if let Some(ck) = ck
                        && memchr::memmem::find(value, ck.name.as_bytes()).is_some()
                        && let Some(v) = visible_str(value)
                    {
                        let mark = out.len();
                        out.extend_from_slice(name);
                        out.extend_from_slice(b": ");
                        let at = out.len();
                        cookie::rewrite_request_cookie_into(ck, v, out);
                        if out.len() == at {
                            out.truncate(mark);
                        } else {
                            out.extend_from_slice(b"\r\n");
                        }
                        continue;
                    }
                }
                _ => {}
            }
            put_field(out, name, value);
        }
        if !facts.has_host {
            let _ = write!(out, "host: {}\r\n", be.servers[srv].addr);
        }
        if facts.rewrite_framing {
            match facts.framing {
                Framing::Length(n) => {
                    let _ = write!(out, "content-length: {n}\r\n");
                }
                Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
                Framing::None | Framing::UntilClose => {}
            }
        }
        if be.cfg.forwardfor {
            out.extend_from_slice(b"x-forwarded-for: ");
            for f in rq.fields.iter().filter(|f| f.kind == Kind::XForwardedFor) {
                out.extend_from_slice(f.value.of(buf));
                out.extend_from_slice(b", ");
            }
            let _ = write!(out, "{}\r\n", self.peer.ip());
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Send the request to server `srv` on a pooled or new connection and read the
    /// final response head. Until the request body starts streaming, failures
    /// leave the client buffer as it was (the request may be retried).
    async fn exchange(
        &mut self,
        facts: &ReqFacts,
        srv: usize,
        secure: bool,
    ) -> Result<Sent, ExchError> {
        let fe = self.fe;
        let upstream = fe.upstream();
        let pool = upstream.pool(srv, secure);
        let server_timeout = fe.backend.cfg.timeouts.server.0;
        let bodyless = facts.framing == Framing::None;
        self.build_request_head(facts, srv);
        let head_len = self.rq.len;
        let mut scan = BodyScan::new(facts.framing);
        let initial = scan
            .scan(&self.cbuf.bytes()[head_len..])
            .map_err(|_| ExchError::BadRequest)?;
        let req_bytes = head_len + initial;
        let coalesce = initial <= COALESCE;
        if coalesce {
            self.out
                .extend_from_slice(&self.cbuf.bytes()[head_len..req_bytes]);
        }
        loop {
            let (mut up, reused) = match upstream.take_raw(pool) {
                Some(s) => (s, true),
                None => (
                    upstream
                        .connect_stream(
                            pool,
                            Some(ClientAddrs {
                                peer: self.peer,
                                local: self.local,
                            }),
                        )
                        .await
                        .map_err(ExchError::Upstream)?,
                    false,
                ),
            };
            let stale = |e: io::Error| {
                ExchError::Upstream(if reused {
                    UpstreamError::ReusedIo(e)
                } else {
                    UpstreamError::Io(e)
                })
            };
            let body: &[u8] = if coalesce {
                &[]
            } else {
                &self.cbuf.bytes()[head_len..req_bytes]
            };
            let mut dl = Lazy::new(server_timeout);
            if let Err(e) = write_two(&mut up, &self.out, body, &mut self.timer, &mut dl).await {
                if reused && bodyless {
                    continue; // the server closed it while idle
                }
                return Err(stale(e));
            }
            self.sbuf.clear();
            if !scan.is_done() {
                self.cbuf.consume(req_bytes);
                if facts.expect_continue && initial == 0 {
                    write_all(
                        &mut self.client,
                        b"HTTP/1.1 100 Continue\r\n\r\n",
                        &mut self.timer,
                        &mut Lazy::new(fe.client_timeout),
                    )
                    .await
                    .map_err(|_| ExchError::Client)?;
                }
                return self.upload(up, scan, facts).await;
            }
            let mut interim = false;
            let mut dl = Lazy::new(server_timeout);
            loop {
                match read_head_once(
                    &mut up,
                    &mut self.sbuf,
                    &mut self.rs,
                    &mut self.timer,
                    &mut dl,
                )
                .await
                {
                    Ok(()) => {}
                    Err(HeadWait::Nothing(e)) if !interim => {
                        if reused && bodyless {
                            break; // the server closed it while idle: next connection
                        }
                        return Err(stale(e));
                    }
                    Err(HeadWait::Nothing(e) | HeadWait::Io(e)) => {
                        return Err(ExchError::Upstream(UpstreamError::Io(e)));
                    }
                    Err(HeadWait::Timeout) => return Err(ExchError::Timeout),
                    Err(HeadWait::Invalid(m)) => {
                        return Err(ExchError::Upstream(UpstreamError::Protocol(m)));
                    }
                }
                let st = self.rs.status;
                if (100..200).contains(&st) && st != 101 {
                    // Interim responses go to the client (100 Continue is the
                    // proxy's own business: it answers `Expect` itself).
                    if st != 100 {
                        write_all(
                            &mut self.client,
                            &self.sbuf.bytes()[..self.rs.len],
                            &mut self.timer,
                            &mut Lazy::new(fe.client_timeout),
                        )
                        .await
                        .map_err(|_| ExchError::Client)?;
                    }
                    self.sbuf.consume(self.rs.len);
                    interim = true;
                    continue;
                }
                let (framing, drop_length) = self
                    .final_framing(facts)
                    .map_err(|m| ExchError::Upstream(UpstreamError::Protocol(m)))?;
                return Ok(Sent {
                    up,
                    req_bytes,
                    body_done: true,
                    framing,
                    drop_length,
                });
            }
        }
    }

    /// Framing of the final response head at the start of `sbuf`.
    fn final_framing(&self, facts: &ReqFacts) -> Result<(Framing, bool), &'static str> {
        if self.rs.status == 101 {
            return Err("unexpected 101 Switching Protocols");
        }
        h1::response_framing(self.sbuf.bytes(), &self.rs, facts.is_head)
            .map_err(|_| "invalid Content-Length")
    }

    /// Stream the rest of the request body to the server while waiting for its
    /// response head (a server may answer before reading the whole body).
    async fn upload(
        &mut self,
        mut up: ServerStream,
        mut scan: BodyScan,
        facts: &ReqFacts,
    ) -> Result<Sent, ExchError> {
        let fe = self.fe;
        let server_timeout = fe.backend.cfg.timeouts.server.0;
        let client_timeout = fe.client_timeout;
        let (head, uploaded) = {
            let Conn {
                client,
                cbuf,
                sbuf,
                rs,
                ..
            } = self;
            let (mut rd, mut wr) = tokio::io::split(&mut up);
            let mut t_up = Timer::new();
            let mut t_head = Timer::new();
            // The server timeout runs once the body is sent (below).
            let mut never = Lazy::new(Duration::from_secs(365 * 86400));
            let upload = pump(
                client,
                cbuf,
                &mut wr,
                &mut scan,
                &mut t_up,
                client_timeout,
                server_timeout,
            );
            let head = async {
                loop {
                    read_head_once(&mut rd, sbuf, rs, &mut t_head, &mut never).await?;
                    if (100..200).contains(&rs.status) && rs.status != 101 {
                        sbuf.consume(rs.len);
                        continue;
                    }
                    return Ok(());
                }
            };
            tokio::pin!(upload, head);
            let mut uploaded: Option<Result<(), PumpError>> = None;
            let head = loop {
                tokio::select! {
                    // The body's end first: a response that comes with it is not early.
                    biased;
                    r = &mut upload, if uploaded.is_none() => {
                        if let Err(e) = &r {
                            log::debug!("request body: {e:?}");
                        }
                        let stop = matches!(r, Err(PumpError::Read(_) | PumpError::Eof | PumpError::Malformed));
                        uploaded = Some(r);
                        if stop {
                            break Err(HeadWait::Timeout);
                        }
                    }
                    r = &mut head => break r,
                    _ = tokio::time::sleep(server_timeout), if uploaded.is_some() => {
                        break Err(HeadWait::Timeout);
                    }
                }
            };
            (head, uploaded)
        };
        match (&uploaded, head) {
            (Some(Err(PumpError::Malformed)), _) => Err(ExchError::BadRequest),
            (Some(Err(PumpError::Read(_) | PumpError::Eof)), _) => Err(ExchError::Client),
            (_, Ok(())) => {
                let (framing, drop_length) = self
                    .final_framing(facts)
                    .map_err(|m| ExchError::Broken(UpstreamError::Protocol(m)))?;
                Ok(Sent {
                    up,
                    req_bytes: 0,
                    body_done: matches!(uploaded, Some(Ok(()))),
                    framing,
                    drop_length,
                })
            }
            (_, Err(HeadWait::Timeout)) => Err(ExchError::Timeout),
            (_, Err(HeadWait::Invalid(m))) => Err(ExchError::Broken(UpstreamError::Protocol(m))),
            (_, Err(HeadWait::Nothing(e) | HeadWait::Io(e))) => {
                Err(ExchError::Broken(UpstreamError::Io(e)))
            }
        }
    }

    /// Rewrite the response head, send it with the first body bytes, stream the
    /// rest of the body, and pool the server connection when it can be reused.
    #[allow(clippy::too_many_arguments)]
    async fn respond(
        &mut self,
        sent: Sent,
        facts: &ReqFacts,
        method: &Method,
        routed: Routed,
        permit: Permit,
        t0: std::time::Instant,
        tw: Duration,
        log: Option<String>,
    ) -> Next {
        let fe = self.fe;
        let be = &fe.backend;
        let srv = &be.servers[routed.decision.server];
        let Sent {
            mut up,
            req_bytes,
            body_done,
            framing,
            drop_length,
        } = sent;
        self.cbuf.consume(req_bytes);
        let status = self.rs.status;
        srv.stats.responses[status_idx(status)].fetch_add(1, Ordering::Relaxed);
        let sb = self.sbuf.bytes();
        let rs = &self.rs;
        fe.learn_sessions(
            &routed,
            srv.idx,
            rs.fields
                .iter()
                .filter(|f| f.kind == Kind::SetCookie)
                .map(|f| f.value.of(sb)),
            rs.fields
                .iter()
                .find(|f| f.kind == Kind::Location)
                .map(|f| f.value.of(sb)),
        );
        let server_close = connection_tokens(sb, &rs.fields, &mut self.listed)
            || rs.minor == 0
            || framing == Framing::UntilClose;
        let client_close =
            facts.close || !body_done || framing == Framing::UntilClose || self.stopping();

        // The head, rewritten.
        let out = &mut self.out;
        let listed = &self.listed;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        let _ = write!(out, "{status}");
        out.push(b' ');
        out.extend_from_slice(rs.reason.of(sb));
        out.extend_from_slice(b"\r\n");
        let ck = be.cfg.cookie.as_ref();
        let mut cache = CacheInfo::default();
        let mut cookies_set = 0u64;
        for f in &rs.fields {
            let name = f.name.of(sb);
            let value = f.value.of(sb);
            if f.kind.is_hop_by_hop() || (!listed.is_empty() && is_listed(sb, listed, name)) {
                continue;
            }
            match f.kind {
                Kind::ContentLength if drop_length => continue,
                Kind::SetCookie => {
                    if let Some(ck) = ck {
                        let v = visible_str(value);
                        if ck.mode == CookieMode::Insert {
                            // The server's own cookie of that name is removed.
                            if v.and_then(cookie::set_cookie_name) == Some(ck.name.as_str()) {
                                continue;
                            }
                        } else if let Some(new) =
                            v.and_then(|v| cookie::rewrite_set_cookie(ck, v, &srv.cookie))
                        {
                            put_field(out, name, new.as_bytes());
                            cookies_set += 1;
                            continue;
                        }
                    }
                }
                Kind::Pragma => cache.pragma(value),
                Kind::CacheControl => cache.cache_control(value),
                Kind::Expires => cache.expires(),
                Kind::ETag | Kind::LastModified => cache.validator(),
                _ => {}
            }
            put_field(out, name, value);
        }
        if let Some(ck) = ck
            && ck.mode == CookieMode::Insert
            && !(100..200).contains(&status)
        {
            let direct = routed.decision.direct;
            let cc = routed.client_cookie.as_ref();
            let needed =
                !direct || cc.is_some_and(|c| cookie::needs_refresh(ck, c, routed.now_unix));
            if needed && !(ck.postonly && *method != Method::POST) {
                let first = if direct {
                    cc.and_then(|c| c.first_date)
                } else {
                    None
                };
                let v = cookie::insert_value(ck, &srv.cookie, routed.now_unix, first);
                put_field(out, b"set-cookie", v.as_bytes());
                cookies_set += 1;
                if ck.nocache && cacheable(method, status, &cache) {
                    put_field(out, b"cache-control", b"private");
                }
            }
        }
        if cookies_set > 0 {
            be.stats
                .cookie_set
                .fetch_add(cookies_set, Ordering::Relaxed);
        }
        if client_close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");

        // The head and the body bytes already read, in one write.
        let head_len = rs.len;
        let mut scan = BodyScan::new(framing);
        let Ok(n) = scan.scan(&sb[head_len..]) else {
            srv.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
            fe.stats.errors.fetch_add(1, Ordering::Relaxed);
            fe.stats.responses[4].fetch_add(1, Ordering::Relaxed);
            local_reply(
                &mut self.out,
                StatusCode::BAD_GATEWAY,
                "The server failed to answer.",
                true,
            );
            let mut dl = Lazy::new(fe.client_timeout);
            let _ = write_all(&mut self.client, &self.out, &mut self.timer, &mut dl).await;
            return if body_done { Next::Close } else { Next::Linger };
        };
        let body = &sb[head_len..head_len + n];
        let mut dl = Lazy::new(fe.client_timeout);
        let written = if body.len() <= COALESCE {
            out.extend_from_slice(body);
            write_all(&mut self.client, out, &mut self.timer, &mut dl).await
        } else {
            write_two(&mut self.client, out, body, &mut self.timer, &mut dl).await
        };
        fe.stats.responses[status_idx(status)].fetch_add(1, Ordering::Relaxed);
        if let Some(uri) = log {
            fe.log_access(
                self.peer,
                Some(srv.idx),
                Some(tw),
                t0,
                status,
                Some(routed.decision.via),
                method.as_str(),
                &uri,
                "HTTP/1.1",
            );
        }
        if written.is_err() {
            fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
            return Next::Close;
        }
        self.sbuf.consume(head_len + n);

        // The rest of the body.
        if !scan.is_done() {
            let r = pump(
                &mut up,
                &mut self.sbuf,
                &mut self.client,
                &mut scan,
                &mut self.timer,
                be.cfg.timeouts.server.0,
                fe.client_timeout,
            )
            .await;
            if let Err(e) = r {
                log::debug!("response body from {} to {}: {e:?}", srv.name, self.peer);
                // The response is cut short: the client sees the connection close.
                if matches!(
                    e,
                    PumpError::Read(_) | PumpError::Eof | PumpError::Malformed
                ) {
                    srv.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                }
                fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                return Next::Close;
            }
        }
        let reusable = !server_close && scan.is_done() && self.sbuf.is_empty() && body_done;
        self.sbuf.clear();
        if reusable {
            fe.upstream().pool(srv.idx, routed.secure).put_raw(up);
        }
        drop(permit);
        if !body_done {
            Next::Linger
        } else if client_close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }
}
