//! The request path: classify, find the pinned server (cookie, session ID, hash
//! group) or schedule one, wait for a slot, forward over a pooled keep-alive
//! connection, then learn session IDs and set persistence cookies on the response.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};

use crate::backend::{Backend, Server};
use crate::balance::RequestView;
use crate::config::{CookieConfig, CookieMode, FrontendConfig, GroupKey, SessionIdConfig};
use crate::cookie::{self, CookieVerdict};
use crate::persist::key_hash;
use crate::qos::{Permit, QueueError};
use crate::upstream::{ProxiedBody, Upstream};

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
    /// Counters.
    pub stats: FrontendStats,
}

fn status_idx(s: StatusCode) -> usize {
    (s.as_u16() / 100).clamp(1, 5) as usize - 1
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A response the proxy writes itself (HAProxy's error pages).
pub fn local_response(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let body = format!(
        "<html><body><h1>{} {}</h1>\n{}\n</body></html>\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        text
    );
    let mut r = Response::new(full(body));
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
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
    h.remove(header::TRAILER);
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

fn find_cookie<'a>(cookies: Option<&'a str>, name: &str) -> Option<&'a str> {
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

/// Whether HAProxy 2.6 would consider the response cacheable, so that `nocache`
/// marks it `Cache-control: private`: a safe method, a cacheable status, nothing
/// in `Pragma`/`Cache-Control` forbidding it, and freshness information
/// (`max-age`, `s-maxage`, `Expires`) or a validator (`ETag`, `Last-Modified`).
fn cacheable(method: &Method, status: StatusCode, h: &HeaderMap) -> bool {
    if !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return false;
    }
    if !matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 404 | 405 | 410 | 414 | 501
    ) {
        return false;
    }
    if h.get_all(header::PRAGMA)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"))
    {
        return false;
    }
    let mut fresh = false;
    for v in h
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for d in v.split(',').map(str::trim) {
            let is = |w: &str| d.eq_ignore_ascii_case(w);
            if is("private")
                || is("no-cache")
                || is("no-store")
                || is("max-age=0")
                || is("s-maxage=0")
            {
                return false;
            }
            let starts = |w: &str| d.len() >= w.len() && d[..w.len()].eq_ignore_ascii_case(w);
            if starts("max-age") || starts("s-maxage") {
                fresh = true;
            }
        }
    }
    fresh
        || h.contains_key(header::EXPIRES)
        || h.contains_key(header::ETAG)
        || h.contains_key(header::LAST_MODIFIED)
}

struct Decision {
    server: usize,
    via: Via,
    direct: bool,
}

impl Frontend {
    /// Build a frontend handler.
    pub fn new(cfg: &FrontendConfig, backend: Arc<Backend>, upstream: Arc<Upstream>) -> Frontend {
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
            stats: FrontendStats::default(),
        }
    }

    /// The connection pools of this frontend's backend.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// The priority class of a request (first matching rule, else the default).
    pub fn classify(&self, path: &str, headers: &HeaderMap, src: IpAddr) -> i32 {
        for r in &self.rules {
            if let Some(p) = &r.path_prefix
                && !path.starts_with(p.as_str())
            {
                continue;
            }
            if let Some((n, want)) = &r.header {
                match (headers.get(n), want) {
                    (None, _) => continue,
                    (Some(v), Some(w)) if v.as_bytes() != w.as_bytes() => continue,
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

    /// Handle one request from `peer`.
    pub async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let t0 = Instant::now();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let line = (self.access_log
            && log::log_enabled!(target: "tack_proxy::access", log::Level::Info))
        .then(|| {
            let uri = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            (req.method().clone(), uri, req.version())
        });
        let (resp, server, via, tw) = self.route(peer, req, t0).await;
        let status = resp.status();
        self.stats.responses[status_idx(status)].fetch_add(1, Ordering::Relaxed);
        if let Some((method, uri_text, version)) = line {
            log::info!(
                target: "tack_proxy::access",
                "{} {} {}/{} {}/{} {} {} \"{} {} {:?}\"",
                peer,
                self.name,
                self.backend.name,
                server.map(|i| self.backend.servers[i].name.as_str()).unwrap_or("<NOSRV>"),
                tw.map(|d| d.as_millis() as i64).unwrap_or(-1),
                t0.elapsed().as_millis(),
                status.as_u16(),
                via.map(|v| v.tag()).unwrap_or("-"),
                method,
                uri_text,
                version
            );
        }
        Ok(resp)
    }

    fn fail(&self, status: StatusCode, text: &str) -> Response<ProxyBody> {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        local_response(status, text)
    }

    /// Choose a server for a load-balanced request, avoiding `exclude`.
    fn schedule(&self, view: &RequestView<'_>, exclude: &[usize]) -> Option<usize> {
        let be = &self.backend;
        be.balancer.pick(
            &be.servers,
            view,
            |i| {
                be.servers[i].usable_for_new()
                    && !exclude.contains(&i)
                    && !be.servers[i].slots.queue_full()
            },
            |i| be.servers[i].slots.has_free_slot(),
        )
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
        Option<std::time::Duration>,
    ) {
        let be = self.backend.clone();
        be.stats.requests.fetch_add(1, Ordering::Relaxed);
        if req.method() == Method::CONNECT {
            // A reverse proxy does not open tunnels.
            return (
                self.fail(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported."),
                None,
                None,
                None,
            );
        }
        let (parts, body) = req.into_parts();
        let path_q = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let class = self.classify(parts.uri.path(), &parts.headers, peer.ip());
        let now_unix = unix_now();
        let now = Instant::now();
        let cookies = joined_cookies(&parts.headers);
        let view = RequestView {
            source: peer.ip(),
            uri: path_q,
            headers: &parts.headers,
        };

        // 1. Persistence: cookie, then session ID, then hash group.
        let mut decision: Option<Decision> = None;
        let mut client_cookie = None;
        if let Some(ck) = &be.cfg.cookie
            && let Some(v) = find_cookie(cookies.as_deref(), &ck.name)
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
            .and_then(|sc| request_session_id(sc, cookies.as_deref(), path_q))
            .map(str::to_string);
        if decision.is_none()
            && let (Some(table), Some(id)) = (&be.sessions, &session_id)
            && let Some(idx) = table.lookup(id, now)
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
            && let Some(key) = group_key(
                &hg.key,
                peer.ip(),
                &parts.headers,
                cookies.as_deref(),
                path_q,
            )
        {
            let g = groups.group_of(key_hash(&key));
            let seen = groups.get(g);
            let idx = match seen {
                Some(s) if be.servers[s].usable_for_pinned() => Some(s),
                _ => {
                    // Pin the group to a server chosen by weight among live servers.
                    let gkey = (g as u64).to_be_bytes();
                    be.balancer
                        .pick_by_hash(&be.servers, &gkey, |i| be.servers[i].usable_for_new())
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
        let mut decision = match decision {
            Some(d) => d,
            None => match self.schedule(&view, &[]) {
                Some(i) => Decision {
                    server: i,
                    via: Via::Balance,
                    direct: false,
                },
                None => {
                    be.stats.no_server.fetch_add(1, Ordering::Relaxed);
                    return (
                        self.fail(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "No server is available to handle this request.",
                        ),
                        None,
                        None,
                        None,
                    );
                }
            },
        };

        // 2. Redirect persistence.
        let srv = be.servers[decision.server].clone();
        if let Some(prefix) = &srv.redir
            && (parts.method == Method::GET || parts.method == Method::HEAD)
        {
            srv.stats.redirects.fetch_add(1, Ordering::Relaxed);
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::FOUND;
            if let Ok(v) = HeaderValue::from_str(&format!("{prefix}{path_q}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return (r, Some(srv.idx), Some(decision.via), None);
        }

        // 3. QoS: a slot on the server, by class.
        let mut tried = vec![decision.server];
        let permit: Permit = loop {
            let s = &be.servers[decision.server];
            match s.slots.acquire(class, be.queue_timeout()).await {
                Ok(p) => break p,
                Err(QueueError::Full) if decision.via == Via::Balance || be.cfg.redispatch => {
                    match self.schedule(&view, &tried) {
                        Some(i) => {
                            be.stats.redispatches.fetch_add(1, Ordering::Relaxed);
                            tried.push(i);
                            decision = Decision {
                                server: i,
                                via: Via::Redispatch,
                                direct: false,
                            };
                        }
                        None => {
                            be.stats.no_server.fetch_add(1, Ordering::Relaxed);
                            return (
                                self.fail(
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    "No server is available to handle this request.",
                                ),
                                Some(s.idx),
                                Some(decision.via),
                                None,
                            );
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
                    return (
                        self.fail(StatusCode::SERVICE_UNAVAILABLE, text),
                        Some(s.idx),
                        Some(decision.via),
                        Some(t0.elapsed()),
                    );
                }
            }
        };
        let tw = t0.elapsed();

        // 4. Forward, retrying failed connects (bodiless requests only), and on the
        //    last retry redispatching to another server when allowed.
        let bodyless = body.is_end_stream();
        let mut body = Some(body);
        let mut permit = permit;
        let mut attempts = 0u32;
        let (resp, conn) = loop {
            let srv = be.servers[decision.server].clone();
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
            let up = self.upstream_request(&parts, &srv, peer, cookies.as_deref(), b);
            srv.stats.requests.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(be.cfg.timeouts.server.0, self.upstream.request(srv.idx, up))
                .await
            {
                Ok(Ok(r)) => break r,
                Ok(Err(e)) => {
                    srv.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                    log::debug!("upstream {} failed: {e}", srv.name);
                    if e.is_retryable() && bodyless && attempts < be.cfg.retries {
                        attempts += 1;
                        be.stats.retries.fetch_add(1, Ordering::Relaxed);
                        if attempts == be.cfg.retries
                            && be.cfg.redispatch
                            && let Some(i) = self.schedule(&view, &tried)
                        {
                            match be.servers[i].slots.acquire(class, be.queue_timeout()).await {
                                Ok(p) => {
                                    be.stats.redispatches.fetch_add(1, Ordering::Relaxed);
                                    tried.push(i);
                                    permit = p;
                                    decision = Decision {
                                        server: i,
                                        via: Via::Redispatch,
                                        direct: false,
                                    };
                                }
                                Err(_) => {
                                    return (
                                        self.fail(
                                            StatusCode::SERVICE_UNAVAILABLE,
                                            "No server is available to handle this request.",
                                        ),
                                        Some(srv.idx),
                                        Some(decision.via),
                                        Some(tw),
                                    );
                                }
                            }
                        }
                        continue;
                    }
                    let st = if e.is_connect() {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::BAD_GATEWAY
                    };
                    return (
                        self.fail(st, "The server failed to answer."),
                        Some(srv.idx),
                        Some(decision.via),
                        Some(tw),
                    );
                }
                Err(_) => {
                    return (
                        self.fail(
                            StatusCode::GATEWAY_TIMEOUT,
                            "The server didn't respond in time.",
                        ),
                        Some(srv.idx),
                        Some(decision.via),
                        Some(tw),
                    );
                }
            }
        };
        let srv = be.servers[decision.server].clone();

        // 5. Response: learn session IDs, persistence cookies, hop-by-hop headers.
        let (mut rparts, rbody) = resp.into_parts();
        srv.stats.responses[status_idx(rparts.status)].fetch_add(1, Ordering::Relaxed);
        strip_hop_by_hop(&mut rparts.headers);
        if let (Some(table), Some(sc)) = (&be.sessions, &be.cfg.session_id) {
            let mut learnt = false;
            if let Some(name) = &sc.cookie {
                for v in rparts
                    .headers
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                {
                    if cookie::set_cookie_name(v) == Some(name.as_str())
                        && let Some(id) = cookie::set_cookie_value(v)
                        && !id.is_empty()
                    {
                        table.learn(id, srv.idx, now);
                        learnt = true;
                    }
                }
            }
            if let (Some(p), Some(loc)) = (
                &sc.url_param,
                rparts
                    .headers
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok()),
            ) && let Some(id) = url_session_param(loc, p)
            {
                table.learn(id, srv.idx, now);
                learnt = true;
            }
            // A request carrying an ID the table did not know binds it to the server
            // that served it (seed 003 claim 1).
            if !learnt
                && decision.via != Via::Session
                && let Some(id) = &session_id
            {
                table.learn(id, srv.idx, now);
            }
        }
        if let Some(ck) = &be.cfg.cookie {
            self.apply_cookie(
                ck,
                &parts.method,
                &mut rparts,
                &srv,
                decision.direct && decision.server == srv.idx,
                client_cookie.as_ref(),
                now_unix,
            );
        }
        let body = ProxiedBody::new(rbody, conn, permit).boxed();
        (
            Response::from_parts(rparts, body),
            Some(srv.idx),
            Some(decision.via),
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
                if ck.nocache && cacheable(method, rparts.status, &rparts.headers) {
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
    h: &HeaderMap,
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
        GroupKey::Header(n) => h.get(n.as_str()).map(|v| v.as_bytes().to_vec()),
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
        let mut h = HeaderMap::new();
        assert!(
            !cacheable(&Method::GET, StatusCode::OK, &h),
            "no freshness info nor validator"
        );
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Sat, 21 Nov 2026 23:01:38 GMT"),
        );
        assert!(cacheable(&Method::GET, StatusCode::OK, &h));
        assert!(!cacheable(&Method::POST, StatusCode::OK, &h));
        assert!(!cacheable(&Method::GET, StatusCode::FOUND, &h));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=10, private"),
        );
        assert!(!cacheable(&Method::GET, StatusCode::OK, &h));
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
