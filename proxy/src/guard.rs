//! The framing rules of the fast path in front of hyper's HTTP/1 server.
//!
//! Hyper parses HTTP/1 heads and de-frames bodies with rules of its own (it
//! accepts some chunked bodies the fast path refuses, refuses others with a
//! different status, and starts forwarding a request before its body has been
//! checked). So that a client connection gets the same answers whichever path
//! serves it, [`Guard`] reads the client's bytes before hyper does and follows
//! them with the fast path's code: [`h1::parse_request`], [`h1::check_request`]
//! and [`h1::BodyScan`]. A request head is handed to hyper only once it is
//! complete and passed the checks, with the body bytes that came with it once
//! they scanned cleanly. When a request breaks a rule before any of it was
//! handed over, hyper sees the connection end just before it and the guard
//! writes the refusal (`400`, `414`, `417`, `431`, `501`) after hyper's last
//! response; when the body breaks them later, hyper sees the connection end in
//! the middle of the body (it aborts the request; the client gets `502`).
//! The refusal comes after the responses to the requests before it: the guard
//! follows hyper's responses too (the same parser and scanner), and hyper sees
//! the end of the stream only once it has answered every request it was handed
//! (hyper stops serving pipelined requests it has read when the stream ends).
//! HTTP/2 (the connection preface) passes untouched: the `h2` crate enforces
//! RFC 9113 framing and [`h1::check_request`] runs on the request in
//! [`crate::proxy::Frontend`].

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::h1::{self, BodyScan, HeadError, RequestHead, ResponseHead};
use crate::proxy::Frontend;

const PREFACE: &[u8] = b"PRI * HTTP/2";
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug)]
enum State {
    /// Expecting a request head.
    Head,
    /// Inside a request body.
    Body(BodyScan),
    /// HTTP/2: bytes pass untouched.
    Off,
    /// A rule was broken: hyper gets end of stream.
    Failed,
}

/// Follows the responses hyper writes, to know when every request it was handed
/// has its answer.
#[derive(Default)]
struct Answers {
    /// For each request handed to hyper and not fully answered: whether it is
    /// `HEAD`.
    pending: VecDeque<bool>,
    /// The response head being written.
    head: Vec<u8>,
    rs: ResponseHead,
    body: Option<BodyScan>,
    /// Lost track (a response not understood): stop waiting for answers.
    lost: bool,
    /// A response delimited by the end of the connection was started: nothing
    /// may follow it.
    until_close: bool,
}

impl Answers {
    /// Whether hyper has answered everything it was handed (or the count is lost).
    fn all_answered(&self) -> bool {
        self.pending.is_empty() || self.lost
    }

    /// Account for bytes hyper wrote.
    fn written(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.lost {
            if let Some(scan) = &mut self.body {
                match scan.scan(data) {
                    Ok(n) => {
                        data = &data[n..];
                        if !scan.is_done() {
                            return;
                        }
                        self.body = None;
                        self.pending.pop_front();
                    }
                    Err(_) => self.lost = true,
                }
                continue;
            }
            let before = self.head.len();
            self.head.extend_from_slice(data);
            match h1::parse_response(&self.head, &mut self.rs) {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) => {
                    self.lost = true;
                    return;
                }
            }
            data = &data[self.rs.len - before..];
            let interim = (100..200).contains(&self.rs.status) && self.rs.status != 101;
            if !interim {
                let is_head = self.pending.front().copied().unwrap_or(false);
                match h1::response_framing(&self.head, &self.rs, is_head) {
                    Ok((framing, _)) => {
                        self.until_close |= framing == h1::Framing::UntilClose;
                        let scan = BodyScan::new(framing);
                        if scan.is_done() {
                            self.pending.pop_front();
                        } else {
                            self.body = Some(scan);
                        }
                    }
                    Err(_) => self.lost = true,
                }
            }
            self.head.clear();
        }
    }
}

/// A client stream as hyper reads it, cut before the first request that breaks
/// the framing rules (see the module documentation).
pub(crate) struct Guard<S> {
    inner: S,
    fe: Arc<Frontend>,
    state: State,
    /// Bytes read from the client and not yet handed to hyper; the first
    /// `ready` have been checked.
    buf: Vec<u8>,
    ready: usize,
    eof: bool,
    first: bool,
    rq: RequestHead,
    /// The refusal to write once hyper is done (at its shutdown).
    reply: Option<Vec<u8>>,
    written: usize,
    answers: Answers,
    /// Hyper waiting for the end of the stream until its answers are written.
    reader: Option<Waker>,
}

impl<S> Guard<S> {
    /// Follow the client stream `inner` (positioned at a request head).
    pub(crate) fn new(inner: S, fe: Arc<Frontend>) -> Guard<S> {
        Guard {
            inner,
            fe,
            state: State::Head,
            buf: Vec::new(),
            ready: 0,
            eof: false,
            first: true,
            rq: RequestHead::default(),
            reply: None,
            written: 0,
            answers: Answers::default(),
            reader: None,
        }
    }

    /// Refuse the request starting at `ready` (nothing of it was handed over).
    fn refuse(&mut self, status: StatusCode) {
        self.fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        crate::fast::local_reply(&mut out, status, crate::fast::refusal_text(status), true);
        self.reply = Some(out);
        self.buf.truncate(self.ready);
        self.state = State::Failed;
    }

    /// Check what was read past `ready`, moving `ready` over what may go to hyper.
    fn advance(&mut self) {
        loop {
            match &mut self.state {
                State::Off => {
                    self.ready = self.buf.len();
                    return;
                }
                State::Failed => return,
                State::Body(scan) => match scan.scan(&self.buf[self.ready..]) {
                    Ok(n) => {
                        self.ready += n;
                        if !scan.is_done() {
                            return;
                        }
                        self.state = State::Head;
                    }
                    Err(e) => {
                        // Part of the request was handed over: end it there.
                        log::debug!("request body: {e}");
                        self.fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                        self.buf.truncate(self.ready);
                        self.state = State::Failed;
                        return;
                    }
                },
                State::Head => {
                    let b = &self.buf[self.ready..];
                    if b.is_empty() {
                        return;
                    }
                    if self.first {
                        if b.len() < PREFACE.len() && PREFACE.starts_with(b) {
                            return;
                        }
                        self.first = false;
                        if b.starts_with(PREFACE) {
                            self.state = State::Off;
                            continue;
                        }
                    }
                    match h1::parse_request(b, &mut self.rq) {
                        Ok(false) => return,
                        Ok(true) => {}
                        Err(e) => {
                            self.refuse(match e {
                                HeadError::Invalid => StatusCode::BAD_REQUEST,
                                HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                                HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
                            });
                            return;
                        }
                    }
                    let proto = if self.rq.minor == 1 {
                        h1::Proto::Http11
                    } else {
                        h1::Proto::Http10
                    };
                    let rq = &self.rq;
                    let checked = h1::check_request(
                        proto,
                        h1::target_authority(rq.target.of(b)),
                        rq.fields.iter().map(|f| (f.name.of(b), f.value.of(b))),
                    );
                    let framing = match checked {
                        Ok(c) => c.framing,
                        Err(e) => {
                            log::debug!("request: {e}");
                            self.refuse(e.status());
                            return;
                        }
                    };
                    // The head goes over with the body bytes that came with it,
                    // once they scanned cleanly.
                    let head_len = rq.len;
                    let is_head = rq.method.of(b) == b"HEAD";
                    let mut scan = BodyScan::new(framing);
                    match scan.scan(&b[head_len..]) {
                        Ok(n) => {
                            self.ready += head_len + n;
                            self.answers.pending.push_back(is_head);
                            self.state = if scan.is_done() {
                                State::Head
                            } else {
                                State::Body(scan)
                            };
                        }
                        Err(e) => {
                            log::debug!("request body: {e}");
                            self.refuse(StatusCode::BAD_REQUEST);
                            return;
                        }
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.drain(..n);
                this.ready -= n;
                return Poll::Ready(Ok(()));
            }
            if matches!(this.state, State::Failed) {
                if this.reply.is_some() && !this.answers.all_answered() {
                    // Hyper would drop the requests it still holds: end the
                    // stream once they are answered.
                    this.reader = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // An incomplete request at the end: hyper sees it end too.
                this.ready = this.buf.len();
                this.state = State::Failed;
                continue;
            }
            let len = this.buf.len();
            this.buf.resize(len + READ_CHUNK, 0);
            let mut rb = ReadBuf::new(&mut this.buf[len..]);
            let r = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
            let got = rb.filled().len();
            this.buf.truncate(len + got);
            match r {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if got == 0 => this.eof = true,
                Poll::Ready(Ok(())) => this.advance(),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && !matches!(this.state, State::Off)
        {
            this.answers.written(&buf[..n]);
            if this.answers.all_answered()
                && let Some(w) = this.reader.take()
            {
                w.wake();
            }
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.state, State::Off) {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        // HTTP/1 answers are followed byte by byte: one slice at a time.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        matches!(self.state, State::Off) && self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.answers.until_close {
            // The last response ends with the connection: no room for a refusal.
            this.reply = None;
        }
        if let Some(reply) = &this.reply {
            while this.written < reply.len() {
                match Pin::new(&mut this.inner).poll_write(cx, &reply[this.written..]) {
                    Poll::Ready(Ok(0)) => break,
                    Poll::Ready(Ok(n)) => this.written += n,
                    Poll::Ready(Err(_)) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            this.reply = None;
            if Pin::new(&mut this.inner).poll_flush(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
