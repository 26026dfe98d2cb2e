//! A cache of the pages a frontend serves (seed 001 claims 15 and 30: HTML
//! pages with modified URLs are cached): the responses as sent to clients,
//! rewritten by [`crate::cdn`] when it applies, keyed by URL and the request
//! headers named by `Vary`, kept as long as `Cache-Control` (`s-maxage`,
//! `max-age`) or `Expires` allow and never when `no-store`, `private` or
//! `no-cache` forbid; hits, including conditional requests answered `304`, are
//! served without contacting a server. Bounded in bytes ([`store`]).

pub mod control;
pub mod store;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use serde::Deserialize;

use crate::config::Dur;
use crate::proxy::{BoxError, ProxyBody, full};
use store::{Entry, Store};

/// A frontend's page cache (`cache:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Bytes the cache may hold (bodies and headers), e.g. `64MiB`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: Size,
    /// Largest response stored, e.g. `1MiB`.
    #[serde(default = "default_max_object")]
    pub max_object: Size,
    /// Lifetime of responses that give none (no `s-maxage`, `max-age` or
    /// `Expires`, like nginx's `proxy_cache_valid`); absent, they are not stored.
    #[serde(default)]
    pub default_ttl: Option<Dur>,
}

fn default_max_bytes() -> Size {
    Size(64 << 20)
}
fn default_max_object() -> Size {
    Size(1 << 20)
}

/// A size in bytes, written as a number or with a unit (`512KiB`, `64MiB`,
/// `1GiB`; `k`, `m`, `g` and `KB`... are read as the binary units too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => {
                let t = s.trim();
                let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                let (num, unit) = t.split_at(split);
                let mult = match unit.trim().to_ascii_lowercase().as_str() {
                    "" | "b" => 1,
                    "k" | "kb" | "kib" => 1 << 10,
                    "m" | "mb" | "mib" => 1 << 20,
                    "g" | "gb" | "gib" => 1 << 30,
                    _ => return Err(serde::de::Error::custom(format!("bad size {s:?}"))),
                };
                num.parse::<u64>()
                    .ok()
                    .and_then(|n| n.checked_mul(mult))
                    .map(Size)
                    .ok_or_else(|| serde::de::Error::custom(format!("bad size {s:?}")))
            }
        }
    }
}

impl CacheConfig {
    /// Check the bounds; `Err((field, message))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.max_bytes.0 == 0 {
            return Err(("max_bytes".into(), "must be greater than zero".into()));
        }
        if self.max_object.0 == 0 || self.max_object.0 > self.max_bytes.0 {
            return Err((
                "max_object".into(),
                "must be greater than zero and at most max_bytes".into(),
            ));
        }
        Ok(())
    }
}

/// Counters of a page cache.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Requests answered from the cache (200 or 304).
    pub hits: AtomicU64,
    /// Cacheable requests sent to a server.
    pub misses: AtomicU64,
    /// Requests not looked up (not GET/HEAD, `Authorization`, or `no-cache` /
    /// `no-store` / `max-age=0` from the client).
    pub bypass: AtomicU64,
    /// Hits answered `304 Not Modified`.
    pub not_modified: AtomicU64,
    /// Responses stored.
    pub stores: AtomicU64,
    /// Responses not stored: not 200, `Set-Cookie`, `Vary: *`, forbidden by
    /// `Cache-Control`, without a lifetime, stale, or larger than `max_object`.
    pub uncacheable: AtomicU64,
}

/// A frontend's page cache.
#[derive(Debug)]
pub struct PageCache {
    store: Mutex<Store>,
    max_bytes: usize,
    max_object: usize,
    default_ttl: Option<Duration>,
    /// Counters.
    pub stats: CacheStats,
}

/// A request that went to a server, and what storing its response needs.
#[derive(Debug)]
pub struct Pending {
    key: String,
    headers: HeaderMap,
}

/// What [`PageCache::before`] decided.
#[derive(Debug)]
pub enum Before {
    /// Answered from the cache.
    Hit(Response<ProxyBody>),
    /// Go to a server; the response may be stored.
    Miss(Pending),
    /// Go to a server; do not store.
    Bypass,
}

fn lock(m: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Headers a `304` repeats from the stored response (RFC 9110 15.4.5).
const NOT_MODIFIED_HEADERS: [HeaderName; 6] = [
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::VARY,
    header::CONTENT_LOCATION,
];

impl PageCache {
    /// An empty cache with a checked configuration.
    pub fn new(cfg: &CacheConfig) -> PageCache {
        let max_bytes = usize::try_from(cfg.max_bytes.0).unwrap_or(usize::MAX);
        PageCache {
            store: Mutex::new(Store::new(max_bytes)),
            max_bytes,
            max_object: usize::try_from(cfg.max_object.0).unwrap_or(usize::MAX),
            default_ttl: cfg.default_ttl.map(|d| d.0),
            stats: CacheStats::default(),
        }
    }

    /// The cache key of a request: `host/path?query` (host lowercased).
    pub fn key<B>(req: &Request<B>, host: &str) -> String {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        format!("{}{pq}", host.to_ascii_lowercase())
    }

    /// Look a request up; `host` is its host.
    pub fn before<B>(&self, req: &Request<B>, host: &str) -> Before {
        let h = req.headers();
        let head = req.method() == Method::HEAD;
        let d = control::parse(
            h.get_all(header::CACHE_CONTROL)
                .iter()
                .map(|v| v.as_bytes()),
        );
        let pragma = h
            .get_all(header::PRAGMA)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
        if !(req.method() == Method::GET || head)
            || h.contains_key(header::AUTHORIZATION)
            || !control::request_accepts_stored(&d, pragma)
        {
            self.stats.bypass.fetch_add(1, Ordering::Relaxed);
            // A client's no-cache still refreshes the stored copy.
            return if req.method() == Method::GET
                && !d.no_store
                && !h.contains_key(header::AUTHORIZATION)
            {
                Before::Miss(Pending {
                    key: Self::key(req, host),
                    headers: h.clone(),
                })
            } else {
                Before::Bypass
            };
        }
        let key = Self::key(req, host);
        let found = lock(&self.store).lookup(&key, h, Instant::now());
        let e = match found {
            Some(e) => e,
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                return if head {
                    Before::Bypass
                } else {
                    Before::Miss(Pending {
                        key,
                        headers: h.clone(),
                    })
                };
            }
        };
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        let age = (e.age + e.stored.elapsed()).as_secs();
        let etag = e.headers.get(header::ETAG).map(|v| v.as_bytes());
        let unmodified = match h.get(header::IF_NONE_MATCH) {
            Some(inm) => control::none_match(inm.as_bytes(), etag),
            None => h.get(header::IF_MODIFIED_SINCE).is_some_and(|ims| {
                control::not_modified_since(
                    ims.as_bytes(),
                    e.headers.get(header::LAST_MODIFIED).map(|v| v.as_bytes()),
                )
            }),
        };
        let mut resp = if unmodified {
            self.stats.not_modified.fetch_add(1, Ordering::Relaxed);
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            for n in NOT_MODIFIED_HEADERS {
                for v in e.headers.get_all(&n) {
                    r.headers_mut().append(n.clone(), v.clone());
                }
            }
            r
        } else {
            let len = e.body.len();
            let mut r = Response::new(full(if head { Bytes::new() } else { e.body }));
            *r.status_mut() = e.status;
            *r.headers_mut() = e.headers;
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        };
        resp.headers_mut()
            .insert(header::AGE, HeaderValue::from(age));
        resp.headers_mut()
            .insert("x-cache", HeaderValue::from_static("HIT"));
        Before::Hit(resp)
    }

    /// Pass a server's response for `p` to the client, storing it on the way
    /// when it may be (it is stored once its whole body went through).
    pub fn after(
        self: &Arc<Self>,
        p: Pending,
        mut resp: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        resp.headers_mut()
            .insert("x-cache", HeaderValue::from_static("MISS"));
        let Some((vary, ttl, age)) = self.storable(&p, &resp) else {
            self.stats.uncacheable.fetch_add(1, Ordering::Relaxed);
            return resp;
        };
        let mut headers = resp.headers().clone();
        for n in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::AGE,
        ] {
            headers.remove(n);
        }
        headers.remove("x-cache");
        let entry = Entry {
            status: resp.status(),
            headers,
            body: Bytes::new(),
            vary,
            stored: Instant::now(),
            age,
            ttl,
        };
        let cache = self.clone();
        resp.map(move |inner| {
            Tee {
                inner,
                buf: Some(BytesMut::new()),
                done: Some((cache, p.key, entry)),
            }
            .boxed()
        })
    }

    /// `(vary, ttl, age)` when the response may be stored.
    #[allow(clippy::type_complexity)]
    fn storable(
        &self,
        p: &Pending,
        resp: &Response<ProxyBody>,
    ) -> Option<(Vec<(HeaderName, Option<HeaderValue>)>, Duration, Duration)> {
        let h = resp.headers();
        if resp.status() != StatusCode::OK || h.contains_key(header::SET_COOKIE) {
            return None;
        }
        if let Some(n) = resp.body().size_hint().exact()
            && n as usize > self.max_object
        {
            return None;
        }
        let mut vary = Vec::new();
        for v in h.get_all(header::VARY) {
            for name in v
                .to_str()
                .ok()?
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
            {
                if name == "*" {
                    return None;
                }
                let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
                let val = p.headers.get(&name).cloned();
                vary.push((name, val));
            }
        }
        let d = control::parse(
            h.get_all(header::CACHE_CONTROL)
                .iter()
                .map(|v| v.as_bytes()),
        );
        let t = control::ResponseTimes {
            expires: h.get(header::EXPIRES).map(|v| v.as_bytes()),
            date: h.get(header::DATE).map(|v| v.as_bytes()),
            age: h.get(header::AGE).map(|v| v.as_bytes()),
            pragma_no_cache: h
                .get_all(header::PRAGMA)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache")),
        };
        let (ttl, age) = control::lifetime(&d, &t, SystemTime::now(), self.default_ttl).ok()?;
        Some((vary, ttl, age))
    }

    fn store(&self, key: &str, e: Entry) {
        if lock(&self.store).insert(key, e) {
            self.stats.stores.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.uncacheable.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Remove `url` (or every URL under it, with `prefix`); see [`Store::purge`].
    pub fn purge(&self, url: &str, prefix: bool) -> u64 {
        lock(&self.store).purge(url, prefix)
    }

    /// `(urls, bytes, max bytes)` held now.
    pub fn usage(&self) -> (usize, usize, usize) {
        let s = lock(&self.store);
        (s.len(), s.bytes(), self.max_bytes)
    }

    /// The store's eviction, purge and expiry counters.
    pub fn counts(&self) -> store::Counts {
        lock(&self.store).counts
    }

    /// The most recently used `max` URLs.
    pub fn list(&self, max: usize) -> Vec<store::Listed> {
        lock(&self.store).list(Instant::now(), max)
    }
}

/// A response body copied into the cache as it goes to the client.
struct Tee {
    inner: ProxyBody,
    /// `None` once it grew past `max_object` (or failed).
    buf: Option<BytesMut>,
    done: Option<(Arc<PageCache>, String, Entry)>,
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let r = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &r {
            Some(Ok(f)) => {
                if let (Some(d), Some(buf)) = (f.data_ref(), this.buf.as_mut()) {
                    let max = this.done.as_ref().map(|(c, ..)| c.max_object).unwrap_or(0);
                    if buf.len() + d.len() > max {
                        this.buf = None;
                        if let Some((c, ..)) = this.done.take() {
                            c.stats.uncacheable.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        buf.extend_from_slice(d);
                    }
                }
            }
            Some(Err(_)) => {
                this.buf = None;
                this.done = None;
            }
            None => {
                if let (Some(buf), Some((cache, key, mut e))) = (this.buf.take(), this.done.take())
                {
                    e.body = buf.freeze();
                    cache.store(&key, e);
                }
            }
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        // Reported as not ended until `None` was seen, so the body is stored.
        self.done.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
