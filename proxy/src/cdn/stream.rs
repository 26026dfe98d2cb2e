//! Rewriting a response body as it streams: the body is decoded (gzip, br or
//! none), fed to `lol_html` chunk by chunk, and the output re-encoded with the
//! same coding. Nothing waits for the whole page; the rewritten response is
//! sent chunked (its length is unknown until the end).

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use lol_html::send::{ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, OutputSink};

use super::Cdn;
use crate::proxy::{BoxError, ProxyBody};

/// The header a rewritten response carries, so that a second Tack proxy on the
/// way leaves it alone.
pub const MARKER: &str = "x-tack-cdn";

/// A content coding the rewriter can undo and redo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
    Br,
}

/// Rewrite `resp` if it is an HTML page the rules apply to (status 200, HTML,
/// identity/gzip/br coding, ASCII-compatible charset, not rewritten already);
/// return it unchanged otherwise. `page_host` is the request's host.
pub fn apply(
    cdn: &Arc<Cdn>,
    page_host: &str,
    mut resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let h = resp.headers();
    let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return resp;
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !(mime.eq_ignore_ascii_case("text/html")
        || mime.eq_ignore_ascii_case("application/xhtml+xml"))
    {
        return resp;
    }
    if h.contains_key(MARKER) {
        cdn.stats.already.fetch_add(1, Ordering::Relaxed);
        return resp;
    }
    let codings: Vec<String> = h
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    let coding = match codings.as_slice() {
        [] => Coding::Identity,
        [c] if c == "gzip" || c == "x-gzip" => Coding::Gzip,
        [c] if c == "br" => Coding::Br,
        _ => {
            cdn.stats.skipped_encoding.fetch_add(1, Ordering::Relaxed);
            return resp;
        }
    };
    let charset = ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    let encoding = match charset {
        None => Some(AsciiCompatibleEncoding::utf_8()),
        Some(c) => {
            encoding_rs::Encoding::for_label(c.as_bytes()).and_then(AsciiCompatibleEncoding::new)
        }
    };
    let Some(encoding) = encoding else {
        cdn.stats.skipped_charset.fetch_add(1, Ordering::Relaxed);
        return resp;
    };
    cdn.stats.rewritten.fetch_add(1, Ordering::Relaxed);
    let h = resp.headers_mut();
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    h.insert(MARKER, HeaderValue::from_static("rewritten"));
    // The representation changed: a strong validator becomes a weak one.
    if let Some(e) = h.get(header::ETAG).cloned()
        && !e.as_bytes().starts_with(b"W/")
    {
        let mut w = b"W/".to_vec();
        w.extend_from_slice(e.as_bytes());
        match HeaderValue::from_bytes(&w) {
            Ok(v) => h.insert(header::ETAG, v),
            Err(_) => h.remove(header::ETAG),
        };
    }
    let pipe = Pipe::new(cdn.clone(), page_host.to_string(), coding, encoding);
    resp.map(|inner| {
        Rewritten {
            inner,
            pipe: Mutex::new(Some(pipe)),
            trailers: None,
            cdn: cdn.clone(),
        }
        .boxed()
    })
}

/// The re-encoder, writing into a buffer drained after each chunk.
enum Encoder {
    Identity(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Identity(v) => {
                v.extend_from_slice(b);
                Ok(())
            }
            Encoder::Gzip(e) => e.write_all(b),
            Encoder::Br(e) => e.write_all(b),
        }
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(match self {
            Encoder::Identity(v) => v,
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
        })
    }

    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Identity(v) => Ok(v),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Br(e) => Ok(e.into_inner()),
        }
    }
}

/// Output gathered by the sink before it goes to the encoder (`lol_html`
/// writes token by token: a few bytes at a time).
const SINK_BATCH: usize = 4096;

/// Where `lol_html` writes: batches for the encoder, shared with the pipe that
/// drains it. A batch goes on when full, on `lol_html`'s last (empty) chunk,
/// and when the rewriter is dropped.
struct Sink {
    out: Arc<Mutex<Option<Encoder>>>,
    err: Arc<Mutex<Option<io::Error>>>,
    batch: Vec<u8>,
}

impl Sink {
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if let Some(e) = lock(&self.out).as_mut()
            && let Err(err) = e.write_all(&self.batch)
        {
            *lock(&self.err) = Some(err);
        }
        self.batch.clear();
    }
}

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.batch.extend_from_slice(chunk);
        if chunk.is_empty() || self.batch.len() >= SINK_BATCH {
            self.flush();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Most memory `lol_html` may use for one response (its buffer for a token
/// split across chunks): past it, the rest of the page passes as it is.
pub const MEMORY_LIMIT: usize = 1 << 20;

/// `lol_html` as a [`Write`] (the decoders write into it); once the rewriter
/// hit [`MEMORY_LIMIT`] (`None`), bytes go straight to the encoder.
struct Html {
    rw: Option<HtmlRewriter<'static, Sink>>,
    out: Arc<Mutex<Option<Encoder>>>,
    cdn: Arc<Cdn>,
}

impl Write for Html {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match &mut self.rw {
            Some(rw) => match rw.write(b) {
                Ok(()) => {}
                Err(lol_html::errors::RewritingError::MemoryLimitExceeded(_)) => {
                    // The rewriter flushed what it held, unmodified, to its
                    // sink, which passes it on when dropped: before what follows.
                    self.cdn.stats.bailed.fetch_add(1, Ordering::Relaxed);
                    self.rw = None;
                }
                Err(e) => return Err(io::Error::other(e)),
            },
            None => {
                if let Some(e) = lock(&self.out).as_mut() {
                    e.write_all(b)?;
                }
            }
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Decoder {
    Identity(Box<Html>),
    Gzip(Box<flate2::write::GzDecoder<Html>>),
    Br(Box<brotli::DecompressorWriter<Html>>),
}

/// The decode → rewrite → encode chain of one response.
struct Pipe {
    decoder: Decoder,
    out: Arc<Mutex<Option<Encoder>>>,
    err: Arc<Mutex<Option<io::Error>>>,
    /// Whether any body byte came (an empty body stays empty, whatever its coding).
    fed: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pipe {
    fn new(cdn: Arc<Cdn>, host: String, coding: Coding, encoding: AsciiCompatibleEncoding) -> Pipe {
        let host: Arc<str> = host.into();
        let mut settings = Settings::new_send()
            .with_encoding(encoding)
            // Real pages have markup whose parse is ambiguous without a tree;
            // rewriting goes on rather than failing the response.
            .with_strict(false)
            .with_memory_settings(
                lol_html::MemorySettings::new()
                    .with_max_allowed_memory_usage(MEMORY_LIMIT)
                    .with_graceful_bail_out_on_memory_limit_exceeded(true),
            );
        for (selector, attr) in &cdn.selectors {
            let (c, host, attr) = (cdn.clone(), host.clone(), attr.clone());
            let handler = ElementContentHandlers::default().element(
                move |el: &mut lol_html::send::Element<'_, '_>| {
                    let Some(v) = el.get_attribute(&attr) else {
                        return Ok(());
                    };
                    let mapped = match attr.as_str() {
                        "srcset" => c.map_srcset(&v, &host),
                        "style" => c.map_style(&v, &host),
                        _ => c.map(&v, &host),
                    };
                    if let Some(m) = mapped {
                        c.stats.urls.fetch_add(1, Ordering::Relaxed);
                        el.set_attribute(&attr, &m)?;
                    }
                    Ok(())
                },
            );
            settings = settings
                .append_element_content_handler((std::borrow::Cow::Borrowed(selector), handler));
        }
        let encoder = match coding {
            Coding::Identity => Encoder::Identity(Vec::new()),
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(cdn.gzip_level),
            )),
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                cdn.brotli_quality,
                22,
            ))),
        };
        let out = Arc::new(Mutex::new(Some(encoder)));
        let err = Arc::new(Mutex::new(None));
        let html = Html {
            rw: Some(HtmlRewriter::new(
                settings,
                Sink {
                    out: out.clone(),
                    err: err.clone(),
                    batch: Vec::with_capacity(SINK_BATCH * 2),
                },
            )),
            out: out.clone(),
            cdn: cdn.clone(),
        };
        let decoder = match coding {
            Coding::Identity => Decoder::Identity(Box::new(html)),
            Coding::Gzip => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(html))),
            Coding::Br => Decoder::Br(Box::new(brotli::DecompressorWriter::new(html, 4096))),
        };
        Pipe {
            decoder,
            out,
            err,
            fed: false,
        }
    }

    fn check(&self) -> io::Result<()> {
        match lock(&self.err).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Feed one chunk of the origin's body; the output ready so far.
    fn feed(&mut self, b: &[u8]) -> io::Result<Vec<u8>> {
        self.fed |= !b.is_empty();
        match &mut self.decoder {
            Decoder::Identity(h) => h.write_all(b)?,
            Decoder::Gzip(d) => d.write_all(b)?,
            Decoder::Br(d) => d.write_all(b)?,
        }
        self.check()?;
        Ok(lock(&self.out)
            .as_mut()
            .map(Encoder::take)
            .unwrap_or_default())
    }

    /// The origin's body ended: flush everything.
    fn finish(self) -> io::Result<Vec<u8>> {
        if !self.fed {
            return Ok(Vec::new());
        }
        let html = match self.decoder {
            Decoder::Identity(h) => *h,
            Decoder::Gzip(d) => d.finish()?,
            Decoder::Br(mut d) => {
                d.close()?;
                d.into_inner()
                    .map_err(|_| io::Error::other("truncated brotli stream"))?
            }
        };
        if let Some(rw) = html.rw {
            rw.end().map_err(io::Error::other)?;
        }
        if let Some(e) = lock(&self.err).take() {
            return Err(e);
        }
        let enc = lock(&self.out).take();
        enc.map(Encoder::finish).unwrap_or(Ok(Vec::new()))
    }
}

/// A body rewritten on the fly.
struct Rewritten {
    inner: ProxyBody,
    /// `None` once the origin's body ended.
    pipe: Mutex<Option<Pipe>>,
    /// Trailers held back until the rewritten data is out.
    trailers: Option<Frame<Bytes>>,
    cdn: Arc<Cdn>,
}

impl Rewritten {
    fn fail(&self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.cdn.stats.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.pipe) = None;
        Poll::Ready(Some(Err(format!("CDN rewriting: {e}").into())))
    }
}

impl Body for Rewritten {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if lock(&this.pipe).is_none() {
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            let end = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(f)) => match f.into_data() {
                    Ok(data) => {
                        let r = lock(&this.pipe).as_mut().map(|p| p.feed(&data));
                        match r {
                            Some(Ok(out)) if !out.is_empty() => {
                                return Poll::Ready(Some(Ok(Frame::data(out.into()))));
                            }
                            Some(Err(e)) => return this.fail(e),
                            _ => continue,
                        }
                    }
                    Err(trailers) => {
                        this.trailers = Some(trailers);
                        true
                    }
                },
                Some(Err(e)) => {
                    *lock(&this.pipe) = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => true,
            };
            if end {
                let pipe = lock(&this.pipe).take();
                match pipe.map(Pipe::finish) {
                    Some(Ok(out)) if !out.is_empty() => {
                        return Poll::Ready(Some(Ok(Frame::data(out.into()))));
                    }
                    Some(Err(e)) => return this.fail(e),
                    _ => continue,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.pipe).is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdn::CdnConfig;
    use std::io::Read;

    fn cdn() -> Arc<Cdn> {
        let c: CdnConfig = serde_yaml_ng::from_str(
            "{rules: [{ prefix: '/static/', to: 'http://cdn.test/s/' }], inline_style: true}",
        )
        .unwrap();
        Arc::new(Cdn::new(&c))
    }

    const PAGE: &str = r#"<html><head><link rel="stylesheet" href="/static/a.css"><script src="/static/a.js"></script></head><body><img src="/static/i.png" srcset="/static/i2.png 2x"><img src="/other.png"><div style="background:url('/static/bg.png')">x</div></body></html>"#;
    const WANT: &str = r#"<html><head><link rel="stylesheet" href="http://cdn.test/s/a.css"><script src="http://cdn.test/s/a.js"></script></head><body><img src="http://cdn.test/s/i.png" srcset="http://cdn.test/s/i2.png 2x"><img src="/other.png"><div style="background:url('http://cdn.test/s/bg.png')">x</div></body></html>"#;

    /// A body that yields its chunks one by one.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    /// Run `body` through `apply` in chunks of `n` bytes.
    async fn run(body: Vec<u8>, coding: Option<&str>, n: usize) -> (Response<()>, Vec<u8>) {
        let chunks = Chunks(body.chunks(n).map(Bytes::copy_from_slice).collect());
        let mut r = Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .header("content-length", body.len())
            .header("etag", "\"abc\"");
        if let Some(c) = coding {
            r = r.header("content-encoding", c);
        }
        let resp = apply(&cdn(), "h", r.body(chunks.boxed()).unwrap());
        let (parts, b) = resp.into_parts();
        let out = b.collect().await.unwrap().to_bytes().to_vec();
        (Response::from_parts(parts, ()), out)
    }

    #[tokio::test]
    async fn identity_gzip_and_br_pages_are_rewritten_in_any_chunking() {
        for n in [1, 7, 64, 100_000] {
            let (r, out) = run(PAGE.as_bytes().to_vec(), None, n).await;
            assert_eq!(String::from_utf8(out).unwrap(), WANT, "chunks of {n}");
            assert!(r.headers().get("content-length").is_none());
            assert_eq!(r.headers()["etag"], "W/\"abc\"");
            assert_eq!(r.headers()[MARKER], "rewritten");

            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(PAGE.as_bytes()).unwrap();
            let (r, out) = run(gz.finish().unwrap(), Some("gzip"), n).await;
            assert_eq!(r.headers()["content-encoding"], "gzip");
            let mut s = String::new();
            flate2::read::GzDecoder::new(&out[..])
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, WANT, "gzip, chunks of {n}");

            let mut br = Vec::new();
            brotli::BrotliCompress(&mut PAGE.as_bytes(), &mut br, &Default::default()).unwrap();
            let (_, out) = run(br, Some("br"), n).await;
            let mut s = Vec::new();
            brotli::BrotliDecompress(&mut &out[..], &mut s).unwrap();
            assert_eq!(String::from_utf8(s).unwrap(), WANT, "br, chunks of {n}");
        }
    }

    #[tokio::test]
    async fn other_codings_and_bad_data_are_counted() {
        let c = cdn();
        let (_, out) = run(PAGE.as_bytes().to_vec(), Some("deflate"), 10).await;
        assert_eq!(out, PAGE.as_bytes(), "deflate passes untouched");
        // A corrupt gzip body ends in an error, not a panic.
        let resp = Response::builder()
            .header("content-type", "text/html")
            .header("content-encoding", "gzip")
            .body(crate::proxy::full("not gzip at all"))
            .unwrap();
        let r = apply(&c, "h", resp);
        assert!(r.into_body().collect().await.is_err());
        assert_eq!(c.stats.errors.load(Ordering::Relaxed), 1);
        // Already rewritten, or not HTML: untouched.
        for (ct, marker) in [("text/html", Some("rewritten")), ("text/css", None)] {
            let mut b = Response::builder().header("content-type", ct);
            if let Some(m) = marker {
                b = b.header(MARKER, m);
            }
            let resp = b.body(crate::proxy::full(PAGE)).unwrap();
            let b = apply(&c, "h", resp).into_body().collect().await.unwrap();
            assert_eq!(b.to_bytes(), PAGE.as_bytes());
        }
        assert_eq!(c.stats.already.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_token_over_the_memory_bound_passes_the_rest_unrewritten() {
        let c = cdn();
        let huge = "x".repeat(MEMORY_LIMIT * 2);
        let page = format!(
            r#"<img src="/static/a.png"><div title="{huge}"></div><img src="/static/b.png">"#
        );
        let chunks = Chunks(
            page.as_bytes()
                .chunks(8192)
                .map(Bytes::copy_from_slice)
                .collect(),
        );
        let resp = Response::builder()
            .header("content-type", "text/html")
            .body(chunks.boxed())
            .unwrap();
        let out = apply(&c, "h", resp)
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let want = page.replacen("/static/a.png", "http://cdn.test/s/a.png", 1);
        assert_eq!(out.len(), want.len());
        assert!(
            out == want.as_bytes(),
            "the page after the bound is not passed as it is"
        );
        assert_eq!(c.stats.bailed.load(Ordering::Relaxed), 1);
        assert_eq!(c.stats.errors.load(Ordering::Relaxed), 0);
        // An empty gzip body stays empty.
        let resp = Response::builder()
            .header("content-type", "text/html")
            .header("content-encoding", "gzip")
            .body(crate::proxy::full(""))
            .unwrap();
        let out = apply(&c, "h", resp)
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert!(out.is_empty());
        assert_eq!(c.stats.errors.load(Ordering::Relaxed), 0);
    }

    proptest::proptest! {
        /// However the server's body is cut into chunks, identity, gzip and br
        /// pages come out rewritten alike.
        #[test]
        fn any_chunking_gives_the_same_page(cuts in proptest::collection::vec(1usize..400, 1..40), coding in 0u8..3) {
            let raw = PAGE.as_bytes();
            let (body, name) = match coding {
                0 => (raw.to_vec(), None),
                1 => {
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                    gz.write_all(raw).unwrap();
                    (gz.finish().unwrap(), Some("gzip"))
                }
                _ => {
                    let mut br = Vec::new();
                    brotli::BrotliCompress(&mut &raw[..], &mut br, &Default::default()).unwrap();
                    (br, Some("br"))
                }
            };
            let mut chunks = std::collections::VecDeque::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= body.len() {
                    break;
                }
                let end = (at + c).min(body.len());
                chunks.push_back(Bytes::copy_from_slice(&body[at..end]));
                at = end;
            }
            let mut r = Response::builder().header("content-type", "text/html");
            if let Some(n) = name {
                r = r.header("content-encoding", n);
            }
            let resp = apply(&cdn(), "h", r.body(Chunks(chunks).boxed()).unwrap());
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let out = rt.block_on(resp.into_body().collect()).unwrap().to_bytes().to_vec();
            let page = match coding {
                0 => out,
                1 => {
                    let mut s = Vec::new();
                    flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut s).unwrap();
                    s
                }
                _ => {
                    let mut s = Vec::new();
                    brotli::BrotliDecompress(&mut &out[..], &mut s).unwrap();
                    s
                }
            };
            proptest::prop_assert_eq!(String::from_utf8(page).unwrap(), WANT);
        }
    }
}
