//! The request path: classify, find the pinned server (cookie, session ID, hash
//! group) or schedule one, wait for a slot, forward over a pooled keep-alive
//! connection, then learn session IDs and set persistence cookies on the response.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use tokio::sync::watch;

use crate::backend::{Backend, Server};
use crate::balance::{HeaderLookup, RequestView};
use crate::config::{
    CookieConfig, CookieMode, FrontendConfig, GroupKey, SessionIdConfig, SessionPin,
};
use crate::cookie::{self, CookieVerdict};
use crate::h1;
use crate::persist::key_hash;
use crate::qos::{Permit, QueueError};
use crate::route::{RouteRequest, Switch};
use crate::tls::server::TlsTerminator;
use crate::upstream::{ProxiedBody, Upstream, UpstreamError};

/// Error type of proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body of responses the proxy sends.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Counters of a frontend.
#[derive(Debug, Default)]
pub struct FrontendStats {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Client connections open now.
    pub open_connections: AtomicU64,
    /// Requests received.
    pub requests: AtomicU64,
    /// Responses by class: 1xx..5xx at index 0..4.
    pub responses: [AtomicU64; 5],
    /// Requests answered by the proxy itself with an error.
    pub errors: AtomicU64,
    /// Client connections that ended in a protocol or I/O error (malformed
    /// requests are answered `400` by the HTTP layer and counted here).
    pub conn_errors: AtomicU64,
}

/// How the server of a request was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Load balanced.
    Balance,
    /// Persistence cookie.
    Cookie,
    /// Application session-ID table.
    Session,
    /// Hash-group persistence.
    Group,
    /// Redispatched away from its pinned or first server.
    Redispatch,
}

impl Via {
    fn tag(self) -> &'static str {
        match self {
            Via::Balance => "LB",
            Via::Cookie => "COOKIE",
            Via::Session => "SESSION",
            Via::Group => "GROUP",
            Via::Redispatch => "REDISPATCH",
        }
    }
}

#[derive(Debug)]
struct Rule {
    class: i32,
    path_prefix: Option<String>,
    header: Option<(HeaderName, Option<String>)>,
    source: Option<ipnet::IpNet>,
}

/// A listener's request handler: frontend settings, its backend and the pool.
#[derive(Debug)]
pub struct Frontend {
    /// Name.
    pub name: String,
    /// The backend.
    pub backend: Arc<Backend>,
    rules: Vec<Rule>,
    default_class: i32,
    access_log: bool,
    upstream: Arc<Upstream>,
    /// Idle time allowed between requests (and to receive a request head).
    pub(crate) keepalive_timeout: Duration,
    /// Client inactivity allowed while a request or response body is transferred.
    pub(crate) client_timeout: Duration,
    /// Whether HTTP/1.1 clients are served by the fast path ([`crate::fast`]).
    pub(crate) fast_path: bool,
    stop: watch::Sender<bool>,
    /// TLS termination, when the frontend has it (every request is then secure).
    pub tls: Option<Arc<TlsTerminator>>,
    secure_paths: Vec<String>,
    /// CDN rewriting and the page cache, when configured (served by hyper).
    pub pages: Option<crate::pages::Pages>,
    /// Counters (shared by the handlers of its content-switching rules and
    /// kept across reloads).
    pub stats: Arc<FrontendStats>,
    /// Content switching: the handler of each `use_backend` rule's backend.
    routes: Option<Switch<Arc<Frontend>>>,
    /// A reload replaced this configuration: its connections close after their
    /// current request.
    retired: Arc<AtomicBool>,
}

pub(crate) fn status_idx(s: u16) -> usize {
    (s / 100).clamp(1, 5) as usize - 1
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A response the proxy writes itself (HAProxy's error pages).
pub fn local_response(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut r = Response::new(full(error_page(status, text)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A body from bytes.
pub fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry none: one pass over the names is cheaper than hashing
    // each hop-by-hop name for a removal.
    if !h
        .keys()
        .any(|k| HOP_BY_HOP.contains(k) || k == header::TRAILER)
    {
        return;
    }
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| h1::connection_may_remove(n.as_bytes()))
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for n in listed.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
    h.remove(header::TRAILER);
}

/// Response framing on the hyper path (RFC 9112 6.3, as `h1::response_framing`
/// on the fast path): a transfer coding wins over a length, which is dropped
/// (hyper would otherwise send the decoded body under the server's length);
/// returns the codings other than `chunked` (`gzip`...), which must reach the
/// client (hyper frames the body itself and adds `chunked` after them).
fn response_codings(h: &mut HeaderMap) -> Option<HeaderValue> {
    if !h.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    h.remove(header::CONTENT_LENGTH);
    let codings: Vec<&[u8]> = h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| h1::tokens(v.as_bytes()))
        .filter(|t| !t.eq_ignore_ascii_case(b"chunked"))
        .collect();
    if codings.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&codings.join(&b", "[..])).ok()
}

/// All `Cookie` headers joined (HTTP/2 clients send one per cookie).
fn joined_cookies(h: &HeaderMap) -> Option<String> {
    let mut out: Option<String> = None;
    for v in h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        match &mut out {
            None => out = Some(v.to_string()),
            Some(o) => {
                o.push_str("; ");
                o.push_str(v);
            }
        }
    }
    out
}

pub(crate) fn find_cookie<'a>(cookies: Option<&'a str>, name: &str) -> Option<&'a str> {
    cookie::request_cookies(cookies?)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A session ID carried by a request: cookie first, then URL parameter (query
/// `?name=` or path parameter `;name=`).
fn request_session_id<'a>(
    cfg: &SessionIdConfig,
    cookies: Option<&'a str>,
    uri: &'a str,
) -> Option<&'a str> {
    if let Some(c) = &cfg.cookie
        && let Some(v) = find_cookie(cookies, c)
        && !v.is_empty()
    {
        return Some(v);
    }
    let p = cfg.url_param.as_deref()?;
    url_session_param(uri, p)
}

fn url_session_param<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    for sep in [';', '?', '&'] {
        let pat = format!("{sep}{name}=");
        if let Some(i) = uri.find(&pat) {
            let v = &uri[i + pat.len()..];
            let end = v.find(['?', ';', '&', '/', '#']).unwrap_or(v.len());
            if end > 0 {
                return Some(&v[..end]);
            }
        }
    }
    None
}

/// What a response's headers say about its cacheability, gathered header by header
/// so both the hyper path and the fast path can feed it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CacheInfo {
    /// `Pragma: no-cache` or a `Cache-Control` directive forbidding caching.
    forbidden: bool,
    /// `max-age` / `s-maxage` / `Expires`.
    fresh: bool,
    /// `ETag` / `Last-Modified`.
    validator: bool,
}

impl CacheInfo {
    /// Account for one `Pragma` value.
    pub(crate) fn pragma(&mut self, v: &[u8]) {
        if v.eq_ignore_ascii_case(b"no-cache") {
            self.forbidden = true;
        }
    }

    /// Account for one `Cache-Control` value.
    pub(crate) fn cache_control(&mut self, v: &[u8]) {
        let Some(v) = crate::balance::visible_str(v) else {
            return;
        };
        for d in v.split(',').map(str::trim) {
            let is = |w: &str| d.eq_ignore_ascii_case(w);
            if is("private")
                || is("no-cache")
                || is("no-store")
                || is("max-age=0")
                || is("s-maxage=0")
            {
                self.forbidden = true;
            }
            let starts = |w: &str| d.len() >= w.len() && d[..w.len()].eq_ignore_ascii_case(w);
            if starts("max-age") || starts("s-maxage") {
                self.fresh = true;
            }
        }
    }

    /// Account for an `Expires` header.
    pub(crate) fn expires(&mut self) {
        self.fresh = true;
    }

    /// Account for an `ETag` or `Last-Modified` header.
    pub(crate) fn validator(&mut self) {
        self.validator = true;
    }

    fn of_headers(h: &HeaderMap) -> CacheInfo {
        let mut c = CacheInfo::default();
        for v in h.get_all(header::PRAGMA) {
            c.pragma(v.as_bytes());
        }
        for v in h.get_all(header::CACHE_CONTROL) {
            c.cache_control(v.as_bytes());
        }
        if h.contains_key(header::EXPIRES) {
            c.expires();
        }
        if h.contains_key(header::ETAG) || h.contains_key(header::LAST_MODIFIED) {
            c.validator();
        }
        c
    }
}

/// Whether HAProxy 2.6 would consider the response cacheable, so that `nocache`
/// marks it `Cache-control: private`: a safe method, a cacheable status, nothing
/// in `Pragma`/`Cache-Control` forbidding it, and freshness information
/// (`max-age`, `s-maxage`, `Expires`) or a validator (`ETag`, `Last-Modified`).
pub(crate) fn cacheable(method: &Method, status: u16, c: &CacheInfo) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) && matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 404 | 405 | 410 | 414 | 501
    ) && !c.forbidden
        && (c.fresh || c.validator)
}

/// Where a request goes and why.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decision {
    /// Server index.
    pub(crate) server: usize,
    /// How it was chosen.
    pub(crate) via: Via,
    /// Whether the client's persistence cookie chose it.
    pub(crate) direct: bool,
}

/// What the routing steps read of a request, whichever path (hyper or fast) it
/// arrived by.
pub(crate) struct ReqInfo<'a> {
    pub(crate) method: &'a Method,
    /// Origin-form target (path and query).
    pub(crate) path_q: &'a str,
    /// Path without the query.
    pub(crate) path: &'a str,
    /// All `Cookie` headers joined.
    pub(crate) cookies: Option<&'a str>,
    pub(crate) headers: &'a (dyn HeaderLookup + Sync),
    pub(crate) peer: SocketAddr,
    /// Arrived over TLS or on a secure path ([`Frontend::is_secure`]).
    pub(crate) secure: bool,
}

impl<'a> ReqInfo<'a> {
    fn view(&self) -> RequestView<'a> {
        RequestView {
            source: self.peer.ip(),
            uri: self.path_q,
            headers: self.headers,
        }
    }
}

/// A routed request: the decision and what the response side needs to know.
pub(crate) struct Routed {
    pub(crate) decision: Decision,
    pub(crate) class: i32,
    pub(crate) client_cookie: Option<cookie::ClientCookie>,
    pub(crate) session_id: Option<String>,
    pub(crate) now_unix: u64,
    pub(crate) now: Instant,
    /// Secure: forwarded through the server's SSL context when it has one.
    pub(crate) secure: bool,
    /// The request's session ID is bound in the table and this request, not
    /// pinned by it (non-secure with `pin: secure`), must not move it.
    pub(crate) keep_binding: bool,
    /// Servers tried so far (filled on the first redispatch).
    tried: Vec<usize>,
}

/// A request the proxy answers itself.
pub(crate) enum Early {
    /// An error page (counted in the frontend's `errors`).
    Fail {
        status: StatusCode,
        text: &'static str,
        server: Option<usize>,
        via: Option<Via>,
        waited: Option<Duration>,
    },
    /// Redirect persistence: `302` to the server's prefix plus the target.
    Redirect {
        location: String,
        server: usize,
        via: Via,
    },
}

impl Early {
    fn no_server(server: Option<usize>, via: Option<Via>, waited: Option<Duration>) -> Early {
        Early::Fail {
            status: StatusCode::SERVICE_UNAVAILABLE,
            text: "No server is available to handle this request.",
            server,
            via,
            waited,
        }
    }

    /// Status, server, how it was chosen and the time waited for a slot.
    pub(crate) fn log_parts(&self) -> (StatusCode, Option<usize>, Option<Via>, Option<Duration>) {
        match self {
            Early::Fail {
                status,
                server,
                via,
                waited,
                ..
            } => (*status, *server, *via, *waited),
            Early::Redirect { server, via, .. } => {
                (StatusCode::FOUND, Some(*server), Some(*via), None)
            }
        }
    }
}

/// The text of an error page (HAProxy-like).
pub(crate) fn error_page(status: StatusCode, text: &str) -> String {
    format!(
        "<html><body><h1>{} {}</h1>\n{}\n</body></html>\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        text
    )
}

impl Frontend {
    /// Build a frontend handler.
    pub fn new(
        cfg: &FrontendConfig,
        backend: Arc<Backend>,
        upstream: Arc<Upstream>,
        tls: Option<Arc<TlsTerminator>>,
    ) -> Frontend {
        let rules = cfg
            .priority_rules
            .iter()
            .map(|r| Rule {
                class: r.class,
                path_prefix: r.path_prefix.clone(),
                header: r.header.as_ref().and_then(|h| {
                    HeaderName::from_bytes(h.name.as_bytes())
                        .ok()
                        .map(|n| (n, h.value.clone()))
                }),
                source: r.source,
            })
            .collect();
        Frontend {
            name: cfg.name.clone(),
            backend,
            rules,
            default_class: cfg.default_class,
            access_log: cfg.access_log,
            upstream,
            keepalive_timeout: cfg.keepalive_timeout.0,
            client_timeout: cfg.client_timeout.0,
            // Pages are rewritten and cached on the hyper path only.
            fast_path: cfg.fast_path && cfg.cdn.is_none() && cfg.cache.is_none(),
            stop: watch::channel(false).0,
            tls,
            secure_paths: cfg.secure_paths.clone(),
            pages: crate::pages::Pages::new(cfg),
            stats: Arc::default(),
            routes: None,
            retired: Arc::default(),
        }
    }

    /// Share the counters and the stop signal of `other` (the handler of the
    /// same frontend in the configuration before a reload, or the frontend
    /// whose content-switching rule this handler serves).
    pub(crate) fn share_with(&mut self, other: &Frontend) {
        self.stats = other.stats.clone();
        self.stop = other.stop.clone();
    }

    /// Serve content-switching rules: `routes` leads to handlers made with
    /// [`Frontend::share_with`] this one.
    pub(crate) fn set_routes(&mut self, routes: Switch<Arc<Frontend>>) {
        for (_, t) in routes.targets() {
            debug_assert!(Arc::ptr_eq(&t.stats, &self.stats));
        }
        self.routes = Some(routes);
    }

    /// Whether the frontend has content-switching rules.
    pub(crate) fn switches(&self) -> bool {
        self.routes.is_some()
    }

    /// The handler of the first matching content-switching rule; `None`: this
    /// one (the frontend's default backend).
    pub(crate) fn pick(&self, r: &RouteRequest<'_>) -> Option<&Arc<Frontend>> {
        self.routes.as_ref()?.choose(r)
    }

    /// Mark this configuration replaced (reload): its connections close after
    /// the request they are serving (or their next one).
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        if let Some(s) = &self.routes {
            for (_, t) in s.targets() {
                t.retired.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Idle time allowed between requests (and to receive a request head, or a
    /// PROXY protocol header).
    pub fn keepalive_timeout(&self) -> Duration {
        self.keepalive_timeout
    }

    /// Whether a reload replaced this configuration.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// The connection pools of this frontend's backend.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Whether a request for `path` is secure (seed 003): it arrived over TLS,
    /// or its path is one of the frontend's `secure_paths`.
    pub fn is_secure(&self, path: &str) -> bool {
        self.tls.is_some()
            || self
                .secure_paths
                .iter()
                .any(|p| path.starts_with(p.as_str()))
    }

    /// Ask the connections served by the fast path to close once idle (shutdown).
    pub fn stop_connections(&self) {
        self.stop.send_replace(true);
    }

    /// A receiver that turns true when [`Frontend::stop_connections`] is called.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Whether the access log is written for this frontend now.
    pub(crate) fn logging(&self) -> bool {
        self.access_log && log::log_enabled!(target: "tack_proxy::access", log::Level::Info)
    }

    /// The priority class of a request (first matching rule, else the default).
    pub fn classify(&self, path: &str, headers: &dyn HeaderLookup, src: IpAddr) -> i32 {
        for r in &self.rules {
            if let Some(p) = &r.path_prefix
                && !path.starts_with(p.as_str())
            {
                continue;
            }
            if let Some((n, want)) = &r.header {
                match (headers.header(n.as_str()), want) {
                    (None, _) => continue,
                    (Some(v), Some(w)) if v != w.as_bytes() => continue,
                    _ => {}
                }
            }
            if let Some(net) = &r.source {
                let src = match src {
                    IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(src),
                    v4 => v4,
                };
                if !net.contains(&src) {
                    continue;
                }
            }
            return r.class;
        }
        self.default_class
    }

    /// Write the access log line of a request (HAProxy's `option logasap`: when
    /// the response headers are sent).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log_access(
        &self,
        peer: SocketAddr,
        server: Option<usize>,
        waited: Option<Duration>,
        t0: Instant,
        status: u16,
        via: Option<Via>,
        method: &str,
        uri: &str,
        version: &str,
    ) {
        log::info!(
            target: "tack_proxy::access",
            "{} {} {}/{} {}/{} {} {} \"{} {} {}\"",
            peer,
            self.name,
            self.backend.name,
            server.map(|i| self.backend.servers[i].name.as_str()).unwrap_or("<NOSRV>"),
            waited.map(|d| d.as_millis() as i64).unwrap_or(-1),
            t0.elapsed().as_millis(),
            status,
            via.map(|v| v.tag()).unwrap_or("-"),
            method,
            uri,
            version
        );
    }

    /// Handle one request from `peer` (the hyper path: HTTP/2, and HTTP/1.1 that the
    /// fast path hands over), with the handler its content-switching rules choose.
    pub async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let fe = match &self.routes {
            None => self,
            Some(_) => {
                let host = req
                    .headers()
                    .get(header::HOST)
                    .map(HeaderValue::as_bytes)
                    .or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes()));
                self.pick(&RouteRequest {
                    method: req.method(),
                    path: req.uri().path(),
                    host,
                    headers: req.headers(),
                    source: peer.ip(),
                })
                .cloned()
                .unwrap_or(self)
            }
        };
        let retired = fe.is_retired() && req.version() < Version::HTTP_2;
        let mut resp = fe.handle_here(peer, req).await;
        if retired && let Ok(r) = &mut resp {
            // HTTP/1: the client opens a new connection, on the new configuration.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    async fn handle_here(
        self: Arc<Self>,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let t0 = Instant::now();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let line = self.logging().then(|| {
            let uri = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            (req.method().clone(), uri, req.version())
        });
        let (resp, server, via, tw) = match self.pages.as_ref().map(|p| p.before(&req)) {
            Some(crate::pages::Step::Answer(hit)) => (hit, None, None, None),
            Some(crate::pages::Step::Forward(fwd)) => {
                let (resp, server, via, tw) = self.route(peer, req, t0).await;
                let pages = self.pages.as_ref().expect("pages");
                (pages.after(fwd, resp), server, via, tw)
            }
            None => self.route(peer, req, t0).await,
        };
        let status = resp.status();
        self.stats.responses[status_idx(status.as_u16())].fetch_add(1, Ordering::Relaxed);
        if let Some((method, uri_text, version)) = line {
            self.log_access(
                peer,
                server,
                tw,
                t0,
                status.as_u16(),
                via,
                method.as_str(),
                &uri_text,
                &format!("{version:?}"),
            );
        }
        Ok(resp)
    }

    fn fail(&self, status: StatusCode, text: &str) -> Response<ProxyBody> {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        local_response(status, text)
    }

    fn early_response(&self, e: Early) -> Response<ProxyBody> {
        match e {
            Early::Fail { status, text, .. } => self.fail(status, text),
            Early::Redirect { location, .. } => {
                let mut r = Response::new(full(Bytes::new()));
                *r.status_mut() = StatusCode::FOUND;
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                r
            }
        }
    }

    /// Choose a server for a load-balanced request, avoiding `exclude`.
    fn schedule(&self, view: &RequestView<'_>, exclude: &[usize]) -> Option<usize> {
        let be = &self.backend;
        let backups = be.use_backups();
        be.balancer.pick(
            &be.servers,
            view,
            |i| {
                be.servers[i].usable_for_new()
                    && be.servers[i].backup == backups
                    && !exclude.contains(&i)
                    && !be.servers[i].slots.queue_full()
            },
            |i| be.servers[i].slots.has_free_slot(),
        )
    }

    /// Classify, apply persistence (cookie, session ID, hash group), schedule, and
    /// answer redirect persistence: everything before waiting for a slot.
    /// `now` is when the request arrived.
    pub(crate) fn decide(&self, r: &ReqInfo<'_>, now: Instant) -> Result<Routed, Early> {
        let be = &self.backend;
        be.stats.requests.fetch_add(1, Ordering::Relaxed);
        let class = self.classify(r.path, r.headers, r.peer.ip());
        // Cookie dates are the only use of the wall clock.
        let now_unix = if be.cfg.cookie.is_some() {
            unix_now()
        } else {
            0
        };
        let view = r.view();

        // 1. Persistence: cookie, then session ID, then hash group.
        let mut decision: Option<Decision> = None;
        let mut client_cookie = None;
        if let Some(ck) = &be.cfg.cookie
            && let Some(v) = find_cookie(r.cookies, &ck.name)
        {
            let cc = cookie::parse_client_value(ck, v);
            match cookie::check_dates(ck, &cc, now_unix) {
                CookieVerdict::Expired => {
                    be.stats.cookie_expired.fetch_add(1, Ordering::Relaxed);
                }
                CookieVerdict::Old => {
                    be.stats.cookie_old.fetch_add(1, Ordering::Relaxed);
                }
                CookieVerdict::Valid => {
                    match be.server_by_cookie(&cc.server) {
                        Some(s) if s.usable_for_pinned() => {
                            be.stats.cookie_valid.fetch_add(1, Ordering::Relaxed);
                            decision = Some(Decision {
                                server: s.idx,
                                via: Via::Cookie,
                                direct: true,
                            });
                        }
                        Some(_) => {
                            // HAProxy without `option persist`: a cookie for a down
                            // server is ignored and the request load balanced.
                            be.stats.cookie_down.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            be.stats.cookie_invalid.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    client_cookie = Some(cc);
                }
            }
        }
        let session_id = be
            .cfg
            .session_id
            .as_ref()
            .and_then(|sc| request_session_id(sc, r.cookies, r.path_q))
            .map(str::to_string);
        let pins = r.secure
            || be
                .cfg
                .session_id
                .as_ref()
                .is_none_or(|sc| sc.pin == SessionPin::Always);
        let mut keep_binding = false;
        if decision.is_none()
            && let (Some(table), Some(id)) = (&be.sessions, &session_id)
            && let Some(idx) = table.lookup(id, now)
            && (pins || {
                keep_binding = true;
                false
            })
            && be.servers[idx].usable_for_pinned()
        {
            be.stats.session_routed.fetch_add(1, Ordering::Relaxed);
            decision = Some(Decision {
                server: idx,
                via: Via::Session,
                direct: false,
            });
        }
        if decision.is_none()
            && let (Some(groups), Some(hg)) = (&be.groups, &be.cfg.hash_groups)
            && let Some(key) = group_key(&hg.key, r.peer.ip(), r.headers, r.cookies, r.path_q)
        {
            let g = groups.group_of(key_hash(&key));
            let seen = groups.get(g);
            let idx = match seen {
                Some(s) if be.servers[s].usable_for_pinned() => Some(s),
                _ => {
                    // Pin the group to a server chosen by weight among live servers.
                    let gkey = (g as u64).to_be_bytes();
                    let backups = be.use_backups();
                    be.balancer
                        .pick_by_hash(&be.servers, &gkey, |i| {
                            be.servers[i].usable_for_new() && be.servers[i].backup == backups
                        })
                        .or_else(|| self.schedule(&view, &[]))
                        .map(|choice| groups.assign(g, seen, choice))
                }
            };
            if let Some(idx) = idx {
                be.stats.group_routed.fetch_add(1, Ordering::Relaxed);
                decision = Some(Decision {
                    server: idx,
                    via: Via::Group,
                    direct: false,
                });
            }
        }
        let decision = match decision {
            Some(d) => d,
            None => match self.schedule(&view, &[]) {
                Some(i) => Decision {
                    server: i,
                    via: Via::Balance,
                    direct: false,
                },
                None => {
                    be.stats.no_server.fetch_add(1, Ordering::Relaxed);
                    return Err(Early::no_server(None, None, None));
                }
            },
        };

        // 2. Redirect persistence.
        let srv = &be.servers[decision.server];
        if let Some(prefix) = &srv.redir
            && (*r.method == Method::GET || *r.method == Method::HEAD)
        {
            srv.stats.redirects.fetch_add(1, Ordering::Relaxed);
            return Err(Early::Redirect {
                location: format!("{prefix}{}", r.path_q),
                server: srv.idx,
                via: decision.via,
            });
        }
        Ok(Routed {
            decision,
            class,
            client_cookie,
            session_id,
            now_unix,
            now,
            secure: r.secure,
            keep_binding,
            tried: Vec::new(),
        })
    }

    /// QoS: a slot on the chosen server, by class; a full queue redispatches where
    /// persistence allows.
    pub(crate) async fn slot(
        &self,
        r: &ReqInfo<'_>,
        routed: &mut Routed,
        t0: Instant,
    ) -> Result<Permit, Early> {
        let be = &self.backend;
        loop {
            let d = routed.decision;
            let s = &be.servers[d.server];
            match s.slots.acquire(routed.class, be.queue_timeout()).await {
                Ok(p) => return Ok(p),
                Err(QueueError::Full) if d.via == Via::Balance || be.cfg.redispatch => {
                    if routed.tried.is_empty() {
                        routed.tried.push(d.server);
                    }
                    match self.schedule(&r.view(), &routed.tried) {
                        Some(i) => {
                            be.stats.redispatches.fetch_add(1, Ordering::Relaxed);
                            routed.tried.push(i);
                            routed.decision = Decision {
                                server: i,
                                via: Via::Redispatch,
                                direct: false,
                            };
                        }
                        None => {
                            be.stats.no_server.fetch_add(1, Ordering::Relaxed);
                            return Err(Early::no_server(Some(s.idx), Some(d.via), None));
                        }
                    }
                }
                Err(e) => {
                    be.stats.no_server.fetch_add(1, Ordering::Relaxed);
                    let text = if e == QueueError::Timeout {
                        "Timed out waiting in the server queue."
                    } else {
                        "Server queue is full."
                    };
                    return Err(Early::Fail {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        text,
                        server: Some(s.idx),
                        via: Some(d.via),
                        waited: Some(t0.elapsed()),
                    });
                }
            }
        }
    }

    /// After an attempt to reach the server failed: `Ok` to try again (after a
    /// redispatch to another server on the last retry, when allowed), `Err` with
    /// the answer otherwise. Failed connects of bodiless requests (and failures
    /// of a reused connection before any response) are retried `retries` times.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn after_failure(
        &self,
        r: &ReqInfo<'_>,
        routed: &mut Routed,
        permit: &mut Permit,
        attempts: &mut u32,
        e: &UpstreamError,
        bodyless: bool,
        tw: Duration,
    ) -> Result<(), Early> {
        let be = &self.backend;
        let srv = &be.servers[routed.decision.server];
        srv.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
        log::debug!("upstream {} failed: {e}", srv.name);
        if e.is_retryable() && bodyless && *attempts < be.cfg.retries {
            *attempts += 1;
            be.stats.retries.fetch_add(1, Ordering::Relaxed);
            if *attempts == be.cfg.retries && be.cfg.redispatch {
                if routed.tried.is_empty() {
                    routed.tried.push(routed.decision.server);
                }
                if let Some(i) = self.schedule(&r.view(), &routed.tried) {
                    match be.servers[i]
                        .slots
                        .acquire(routed.class, be.queue_timeout())
                        .await
                    {
                        Ok(p) => {
                            be.stats.redispatches.fetch_add(1, Ordering::Relaxed);
                            routed.tried.push(i);
                            *permit = p;
                            routed.decision = Decision {
                                server: i,
                                via: Via::Redispatch,
                                direct: false,
                            };
                        }
                        Err(_) => {
                            return Err(Early::no_server(
                                Some(srv.idx),
                                Some(routed.decision.via),
                                Some(tw),
                            ));
                        }
                    }
                }
            }
            return Ok(());
        }
        let status = if e.is_connect() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_GATEWAY
        };
        Err(Early::Fail {
            status,
            text: "The server failed to answer.",
            server: Some(srv.idx),
            via: Some(routed.decision.via),
            waited: Some(tw),
        })
    }

    /// The answer when the server did not respond within `timeouts.server`.
    pub(crate) fn server_timeout(&self, routed: &Routed, tw: Duration) -> Early {
        Early::Fail {
            status: StatusCode::GATEWAY_TIMEOUT,
            text: "The server didn't respond in time.",
            server: Some(routed.decision.server),
            via: Some(routed.decision.via),
            waited: Some(tw),
        }
    }

    /// Learn session IDs from a response: a `Set-Cookie` of the configured cookie,
    /// the URL parameter in `Location`, or else the ID the request carried (seed 003
    /// claim 1: "assigning the unique I.D. to the selected server").
    pub(crate) fn learn_sessions<'v>(
        &self,
        routed: &Routed,
        server: usize,
        set_cookies: impl Iterator<Item = &'v [u8]>,
        location: Option<&[u8]>,
    ) {
        let be = &self.backend;
        let (Some(table), Some(sc)) = (&be.sessions, &be.cfg.session_id) else {
            return;
        };
        let mut learnt = false;
        if let Some(name) = &sc.cookie {
            for v in set_cookies.filter_map(crate::balance::visible_str) {
                if cookie::set_cookie_name(v) == Some(name.as_str())
                    && let Some(id) = cookie::set_cookie_value(v)
                    && !id.is_empty()
                {
                    table.learn(id, server, routed.now);
                    learnt = true;
                }
            }
        }
        if let (Some(p), Some(loc)) = (
            &sc.url_param,
            location.and_then(crate::balance::visible_str),
        ) && let Some(id) = url_session_param(loc, p)
        {
            table.learn(id, server, routed.now);
            learnt = true;
        }
        if !learnt
            && routed.decision.via != Via::Session
            && !routed.keep_binding
            && let Some(id) = &routed.session_id
        {
            table.learn(id, server, routed.now);
        }
    }

    async fn route(
        &self,
        peer: SocketAddr,
        req: Request<Incoming>,
        t0: Instant,
    ) -> (
        Response<ProxyBody>,
        Option<usize>,
        Option<Via>,
        Option<Duration>,
    ) {
        if req.method() == Method::CONNECT {
            self.backend.stats.requests.fetch_add(1, Ordering::Relaxed);
            // A reverse proxy does not open tunnels.
            return (
                self.fail(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported."),
                None,
                None,
                None,
            );
        }
        // The framing rules of the fast path (one function for both).
        let proto = match req.version() {
            Version::HTTP_09 | Version::HTTP_10 => h1::Proto::Http10,
            Version::HTTP_11 => h1::Proto::Http11,
            _ => h1::Proto::Http2,
        };
        let checked = match h1::check_request(
            proto,
            req.uri().authority().map(|a| a.as_str().as_bytes()),
            req.headers()
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        ) {
            Ok(c) => c,
            Err(e) => {
                self.backend.stats.requests.fetch_add(1, Ordering::Relaxed);
                log::debug!("client {peer}: {e}");
                self.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                // Counted as a client error, like the fast path's refusals.
                let mut r = local_response(e.status(), &e.to_string());
                if proto != h1::Proto::Http2 {
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                return (r, None, None, None);
            }
        };
        let (parts, body) = req.into_parts();
        let path_q = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let cookies = joined_cookies(&parts.headers);
        let info = ReqInfo {
            method: &parts.method,
            path_q,
            path: parts.uri.path(),
            cookies: cookies.as_deref(),
            headers: &parts.headers,
            peer,
            secure: self.is_secure(parts.uri.path()),
        };
        let mut routed = match self.decide(&info, t0) {
            Ok(r) => r,
            Err(e) => {
                let (_, server, via, tw) = e.log_parts();
                return (self.early_response(e), server, via, tw);
            }
        };
        let mut permit = match self.slot(&info, &mut routed, t0).await {
            Ok(p) => p,
            Err(e) => {
                let (_, server, via, tw) = e.log_parts();
                return (self.early_response(e), server, via, tw);
            }
        };
        let tw = t0.elapsed();
        let be = &self.backend;

        // 4. Forward, retrying failed connects (bodiless requests only), and on the
        //    last retry redispatching to another server when allowed.
        let bodyless = body.is_end_stream();
        let mut body = Some(body);
        let mut attempts = 0u32;
        let (resp, conn) = loop {
            let srv = be.servers[routed.decision.server].clone();
            let b: ProxyBody = if bodyless {
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed()
            } else {
                match body.take() {
                    Some(b) => b.map_err(|e| -> BoxError { Box::new(e) }).boxed(),
                    None => Empty::<Bytes>::new()
                        .map_err(|never| match never {})
                        .boxed(),
                }
            };
            let up = self.upstream_request(&parts, &checked, &srv, peer, cookies.as_deref(), b);
            srv.stats.requests.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(
                be.cfg.timeouts.server.0,
                self.upstream.request(srv.idx, routed.secure, up),
            )
            .await
            {
                Ok(Ok(r)) => break r,
                Ok(Err(e)) => {
                    if let Err(early) = self
                        .after_failure(
                            &info,
                            &mut routed,
                            &mut permit,
                            &mut attempts,
                            &e,
                            bodyless,
                            tw,
                        )
                        .await
                    {
                        let (_, server, via, tw) = early.log_parts();
                        return (self.early_response(early), server, via, tw);
                    }
                }
                Err(_) => {
                    let early = self.server_timeout(&routed, tw);
                    let (_, server, via, tw) = early.log_parts();
                    return (self.early_response(early), server, via, tw);
                }
            }
        };
        let srv = be.servers[routed.decision.server].clone();
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The proxy never asks for an upgrade (it removes `Upgrade`): a bad
            // response, as on the fast path.
            srv.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
            let r = self.fail(StatusCode::BAD_GATEWAY, "The server failed to answer.");
            return (r, Some(srv.idx), Some(routed.decision.via), Some(tw));
        }

        // 5. Response: learn session IDs, persistence cookies, hop-by-hop headers.
        let (mut rparts, rbody) = resp.into_parts();
        srv.stats.responses[status_idx(rparts.status.as_u16())].fetch_add(1, Ordering::Relaxed);
        let codings = response_codings(&mut rparts.headers);
        strip_hop_by_hop(&mut rparts.headers);
        if let Some(te) = codings {
            rparts.headers.insert(header::TRANSFER_ENCODING, te);
        }
        self.learn_sessions(
            &routed,
            srv.idx,
            rparts
                .headers
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| v.as_bytes()),
            rparts.headers.get(header::LOCATION).map(|v| v.as_bytes()),
        );
        if let Some(ck) = &be.cfg.cookie {
            self.apply_cookie(
                ck,
                &parts.method,
                &mut rparts,
                &srv,
                routed.decision.direct && routed.decision.server == srv.idx,
                routed.client_cookie.as_ref(),
                routed.now_unix,
            );
        }
        if checked.close {
            // Length and coding together: this connection is not trusted further.
            rparts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let body = ProxiedBody::new(rbody, conn, permit).boxed();
        (
            Response::from_parts(rparts, body),
            Some(srv.idx),
            Some(routed.decision.via),
            Some(tw),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_cookie(
        &self,
        ck: &CookieConfig,
        method: &Method,
        rparts: &mut http::response::Parts,
        srv: &Server,
        direct: bool,
        cc: Option<&cookie::ClientCookie>,
        now: u64,
    ) {
        let be = &self.backend;
        match ck.mode {
            CookieMode::Insert => {
                // The server's own cookie of that name is removed (HAProxy deletes it
                // unless `preserve`), then ours is inserted when needed.
                let ours = |v: &HeaderValue| {
                    v.to_str().ok().and_then(cookie::set_cookie_name) == Some(ck.name.as_str())
                };
                if rparts.headers.get_all(header::SET_COOKIE).iter().any(ours) {
                    let kept: Vec<HeaderValue> = rparts
                        .headers
                        .get_all(header::SET_COOKIE)
                        .iter()
                        .filter(|v| !ours(v))
                        .cloned()
                        .collect();
                    rparts.headers.remove(header::SET_COOKIE);
                    for v in kept {
                        rparts.headers.append(header::SET_COOKIE, v);
                    }
                }
                if rparts.status.is_informational() {
                    return;
                }
                let needed = !direct || cc.is_some_and(|c| cookie::needs_refresh(ck, c, now));
                if !needed || (ck.postonly && method != Method::POST) {
                    return;
                }
                let first = if direct {
                    cc.and_then(|c| c.first_date)
                } else {
                    None
                };
                let value = cookie::insert_value(ck, &srv.cookie, now, first);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    rparts.headers.append(header::SET_COOKIE, v);
                    be.stats.cookie_set.fetch_add(1, Ordering::Relaxed);
                }
                if ck.nocache
                    && cacheable(
                        method,
                        rparts.status.as_u16(),
                        &CacheInfo::of_headers(&rparts.headers),
                    )
                {
                    rparts
                        .headers
                        .append(header::CACHE_CONTROL, HeaderValue::from_static("private"));
                }
            }
            CookieMode::Rewrite | CookieMode::Prefix => {
                let all: Vec<HeaderValue> = rparts
                    .headers
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .cloned()
                    .collect();
                if all.is_empty() {
                    return;
                }
                rparts.headers.remove(header::SET_COOKIE);
                for v in all {
                    let new = v
                        .to_str()
                        .ok()
                        .and_then(|s| cookie::rewrite_set_cookie(ck, s, &srv.cookie))
                        .and_then(|s| HeaderValue::from_str(&s).ok());
                    if new.is_some() {
                        be.stats.cookie_set.fetch_add(1, Ordering::Relaxed);
                    }
                    rparts.headers.append(header::SET_COOKIE, new.unwrap_or(v));
                }
            }
        }
    }

    fn upstream_request(
        &self,
        parts: &http::request::Parts,
        checked: &h1::RequestFraming,
        srv: &Server,
        peer: SocketAddr,
        cookies: Option<&str>,
        body: ProxyBody,
    ) -> Request<ProxyBody> {
        let be = &self.backend;
        let uri = match parts.uri.path_and_query() {
            Some(pq) => http::Uri::from(pq.clone()),
            None => http::Uri::from_static("/"),
        };
        let mut headers = parts.headers.clone();
        strip_hop_by_hop(&mut headers);
        // One canonical length (hyper frames the body itself, chunked when it has
        // no length).
        if checked.rewrite_framing || headers.contains_key(header::CONTENT_LENGTH) {
            match checked.framing {
                h1::Framing::Length(n) => {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                }
                _ => {
                    headers.remove(header::CONTENT_LENGTH);
                }
            }
        }
        if !headers.contains_key(header::HOST) {
            let host = parts
                .uri
                .authority()
                .map(|a| a.as_str().to_string())
                .unwrap_or_else(|| srv.addr.to_string());
            if let Ok(v) = HeaderValue::from_str(&host) {
                headers.insert(header::HOST, v);
            }
        }
        headers.remove(header::COOKIE);
        let cookie_out = match (&be.cfg.cookie, cookies) {
            (Some(ck), Some(c)) => cookie::rewrite_request_cookie(ck, c),
            (None, Some(c)) => Some(c.to_string()),
            (_, None) => None,
        };
        if let Some(c) = cookie_out
            && let Ok(v) = HeaderValue::from_str(&c)
        {
            headers.insert(header::COOKIE, v);
        }
        if be.cfg.forwardfor {
            let ip = peer.ip().to_string();
            let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip,
            };
            if let Ok(v) = HeaderValue::from_str(&xff) {
                headers.insert(HeaderName::from_static("x-forwarded-for"), v);
            }
        }
        let mut req = Request::new(body);
        if let Some(a) = parts.extensions.get::<crate::upstream::ClientAddrs>() {
            req.extensions_mut().insert(*a);
        }
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        req
    }
}

/// The hash-group persistence key of a request.
fn group_key(
    k: &GroupKey,
    src: IpAddr,
    h: &dyn HeaderLookup,
    cookies: Option<&str>,
    uri: &str,
) -> Option<Vec<u8>> {
    match k {
        GroupKey::Source => Some(match src {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a
                .to_ipv4_mapped()
                .map(|v| v.octets().to_vec())
                .unwrap_or_else(|| a.octets().to_vec()),
        }),
        GroupKey::Header(n) => h.header(n.as_str()).map(<[u8]>::to_vec),
        GroupKey::Cookie(n) => find_cookie(cookies, n).map(|v| v.as_bytes().to_vec()),
        GroupKey::UrlParam(n) => crate::balance::url_param(uri, n).map(|v| v.as_bytes().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_params() {
        assert_eq!(
            url_session_param("/app;jsessionid=ABC123?x=1", "jsessionid"),
            Some("ABC123")
        );
        assert_eq!(
            url_session_param("/app?a=1&jsessionid=Z9", "jsessionid"),
            Some("Z9")
        );
        assert_eq!(url_session_param("/app?a=1", "jsessionid"), None);
    }

    #[test]
    fn cacheability_like_haproxy() {
        let c = |m: &Method, s: StatusCode, h: &HeaderMap| {
            cacheable(m, s.as_u16(), &CacheInfo::of_headers(h))
        };
        let mut h = HeaderMap::new();
        assert!(
            !c(&Method::GET, StatusCode::OK, &h),
            "no freshness info nor validator"
        );
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Sat, 21 Nov 2026 23:01:38 GMT"),
        );
        assert!(c(&Method::GET, StatusCode::OK, &h));
        assert!(!c(&Method::POST, StatusCode::OK, &h));
        assert!(!c(&Method::GET, StatusCode::FOUND, &h));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=10, private"),
        );
        assert!(!c(&Method::GET, StatusCode::OK, &h));
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
