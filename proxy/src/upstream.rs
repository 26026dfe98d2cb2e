//! Keep-alive connection pools to servers: hyper HTTP/1.1 client connections for
//! the hyper path, streams for the fast path (module `fast`), and the response
//! body that returns its connection to the pool and its QoS slot when it ends.
//!
//! A server has a plain pool, or a pool behind its SSL context (seed 003's
//! tunnel: TLS connections kept established, [`crate::tls::client`]), or both
//! when it speaks plain HTTP on `address` and TLS on `tls_address`: secure
//! requests take the TLS pool, the others the plain one.
//!
//! A connection goes back to its pool only once the response body has been read
//! to the end, so a pooled connection is always idle. Connections have no task
//! of their own: the request handler and then the response body drive them, so
//! an exchange costs no task switches. A request that a reused connection could
//! not even start sending (the server closed it while idle) is sent again on a
//! fresh connection.

pub mod stream;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::client::conn::http2 as h2;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::{BackendConfig, ProxyProtocol};
use crate::proxy::{BoxError, ProxyBody};
use crate::qos::Permit;
use crate::tls::TlsError;
use crate::tls::client::{ServerContext, client_config};
pub use stream::ServerStream;

/// A client connection's addresses, for the PROXY protocol header of a
/// server connection (a request extension on the hyper path).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddrs {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address it connected to.
    pub local: SocketAddr,
}

/// Most idle connections kept per server.
const MAX_IDLE: usize = 1024;

/// Why a request could not be exchanged with a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The TCP connection failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The TCP connection did not complete within the connect timeout.
    #[error("connect timeout")]
    ConnectTimeout,
    /// The HTTP exchange failed on a fresh connection.
    #[error("http: {0}")]
    Http(hyper::Error),
    /// A reused keep-alive connection failed before any response (the server may
    /// have closed it as the request was sent).
    #[error("reused connection failed: {0}")]
    Reused(hyper::Error),
    /// The exchange failed on a fresh connection (fast path).
    #[error("i/o: {0}")]
    Io(std::io::Error),
    /// A reused keep-alive connection failed before any response (fast path).
    #[error("reused connection failed: {0}")]
    ReusedIo(std::io::Error),
    /// The server's response was not valid HTTP/1.1 (fast path).
    #[error("invalid response: {0}")]
    Protocol(&'static str),
}

impl UpstreamError {
    /// Whether nothing reached the server: the request may be retried elsewhere.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout
        )
    }

    /// Whether a bodiless request may safely be sent again.
    pub fn is_retryable(&self) -> bool {
        self.is_connect() || matches!(self, UpstreamError::Reused(_) | UpstreamError::ReusedIo(_))
    }
}

type Conn = hyper::client::conn::http1::Connection<TokioIo<ServerStream>, ProxyBody>;

/// One keep-alive connection to a server: the request handle and the connection
/// state machine. No task of its own drives it: whoever holds it polls `conn`
/// (the request handler while waiting for the response head, then the response
/// body while it streams), so a whole exchange runs in the client connection's
/// task without hops between tasks.
pub struct Link {
    sender: SendRequest<ProxyBody>,
    conn: Conn,
    since: Instant,
    ended: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("since", &self.since)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Link {
    /// Drive the connection once; notes when it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.ended
            && let Poll::Ready(r) = Pin::new(&mut self.conn).poll(cx)
        {
            self.ended = true;
            if let Err(e) = r {
                log::debug!("upstream connection: {e}");
            }
        }
    }

    /// Whether it can carry another request after this one.
    fn reusable(&self) -> bool {
        !self.ended && !self.sender.is_closed()
    }

    /// Wait until the connection can take a request; false if it is gone.
    async fn ready(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            self.drive(cx);
            if self.ended {
                return Poll::Ready(false);
            }
            match self.sender.poll_ready(cx) {
                Poll::Ready(r) => Poll::Ready(r.is_ok()),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Run an exchange future while driving the connection.
    async fn exchange<F: std::future::Future>(&mut self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            self.drive(cx);
            fut.as_mut().poll(cx)
        })
        .await
    }
}

/// The idle connections to one server endpoint, plain or through its SSL context.
#[derive(Debug)]
pub struct ServerPool {
    addr: SocketAddr,
    /// The SSL context, for a TLS endpoint.
    tls: Option<Arc<ServerContext>>,
    /// Connections kept established (TLS endpoints; 0: none).
    tunnels: usize,
    /// Connections start with a PROXY protocol header for their client: they
    /// are private to one request, never pooled (as HAProxy marks them).
    send_proxy: Option<ProxyProtocol>,
    idle: Mutex<Vec<Link>>,
    raw: Mutex<Vec<(ServerStream, Instant)>>,
    /// HTTP/2 to the server: its one multiplexed connection, when open.
    h2: Option<Mutex<Option<h2::SendRequest<ProxyBody>>>>,
    /// The TLS server chose HTTP/1.1 by ALPN: HTTP/1.1 connections from then on.
    h1_only: std::sync::atomic::AtomicBool,
}

impl ServerPool {
    fn new(addr: SocketAddr, tls: Option<Arc<ServerContext>>, tunnels: usize) -> Arc<ServerPool> {
        Arc::new(ServerPool {
            addr,
            tls,
            tunnels,
            send_proxy: None,
            h2: None,
            h1_only: std::sync::atomic::AtomicBool::new(false),
            idle: Mutex::new(Vec::new()),
            raw: Mutex::new(Vec::new()),
        })
    }

    /// The SSL context of a TLS endpoint.
    pub fn context(&self) -> Option<&Arc<ServerContext>> {
        self.tls.as_ref()
    }

    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock_raw(&self) -> std::sync::MutexGuard<'_, Vec<(ServerStream, Instant)>> {
        self.raw.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle stream (fast path), most recently used first.
    fn take_raw(&self, max_idle_time: Duration) -> Option<ServerStream> {
        let mut idle = self.lock_raw();
        while let Some((mut s, since)) = idle.pop() {
            if since.elapsed() < max_idle_time && s.idle_ok() {
                return Some(s);
            }
        }
        None
    }

    /// Give back a stream whose last response was read to its end.
    pub(crate) fn put_raw(&self, s: ServerStream) {
        if self.send_proxy.is_some() {
            return;
        }
        let mut idle = self.lock_raw();
        if idle.len() < MAX_IDLE {
            idle.push((s, Instant::now()));
        }
    }

    fn take(&self, max_idle_time: Duration) -> Option<Link> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(l) = idle.pop() {
            if l.reusable() && l.since.elapsed() < max_idle_time {
                return Some(l);
            }
        }
        None
    }

    fn put(&self, mut l: Link) {
        if !l.reusable() || self.send_proxy.is_some() {
            return;
        }
        l.since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(l);
        }
    }

    /// Drop idle connections the server closed or that idled past `max_idle_time`.
    fn reap(&self, max_idle_time: Duration) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain_mut(|l| {
            // Nobody waits on an idle connection: a no-op waker lets it notice EOF.
            l.drive(&mut cx);
            l.reusable() && l.since.elapsed() < max_idle_time
        });
        drop(idle);
        self.lock_raw()
            .retain_mut(|(s, since)| since.elapsed() < max_idle_time && !s.idle_closed());
    }

    /// Idle connections held now (hyper and streams).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len() + self.lock_raw().len()
    }

    /// Idle streams held now (the established tunnels of a TLS endpoint).
    pub fn idle_streams(&self) -> usize {
        self.lock_raw().len()
    }
}

/// A connection lent out for one exchange; give it back with [`PooledConn::release`].
#[derive(Debug)]
pub struct PooledConn {
    pool: Arc<ServerPool>,
    /// HTTP/1.1; none for an HTTP/2 stream (its connection has a task of its own).
    link: Option<Link>,
}

impl PooledConn {
    /// Return the (idle) connection to its pool.
    pub fn release(self) {
        if let Some(l) = self.link {
            self.pool.put(l);
        }
    }
}

/// The pools of one server: plain, through its SSL context, or both.
#[derive(Debug)]
struct Endpoints {
    plain: Option<Arc<ServerPool>>,
    secure: Option<Arc<ServerPool>>,
    /// With `http2`, the SSL context that offers only HTTP/1.1 (health checks
    /// speak HTTP/1.1 whatever the server would choose).
    check: Option<Arc<ServerContext>>,
}

impl Endpoints {
    fn all(&self) -> impl Iterator<Item = &Arc<ServerPool>> {
        self.plain.iter().chain(self.secure.iter())
    }
}

/// The pools of a backend's servers.
#[derive(Debug)]
pub struct Upstream {
    servers: Vec<Endpoints>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// The servers are spoken to in HTTP/2.
    http2: bool,
}

impl Upstream {
    /// Plain pools for servers at these addresses.
    pub fn new(
        addrs: &[SocketAddr],
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Upstream {
        Upstream {
            servers: addrs
                .iter()
                .map(|&addr| Endpoints {
                    plain: Some(ServerPool::new(addr, None, 0)),
                    secure: None,
                    check: None,
                })
                .collect(),
            connect_timeout,
            idle_timeout,
            http2: false,
        }
    }

    /// The pools of a backend: with `server_tls`, each server gets its SSL
    /// context (reading the CA file).
    pub fn for_backend(cfg: &BackendConfig) -> Result<Upstream, TlsError> {
        let (connect, idle) = (cfg.timeouts.connect.0, cfg.timeouts.pool_idle.0);
        let Some(st) = &cfg.server_tls else {
            let addrs: Vec<SocketAddr> = cfg.servers.iter().map(|s| s.address).collect();
            return Ok(Upstream::new(&addrs, connect, idle).with_send_proxy(cfg));
        };
        let cc = client_config(st)?;
        // HTTP/2: offered by ALPN, spoken where the server chooses it.
        let offer = if cfg.http2 {
            let mut c = (*cc).clone();
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(c)
        } else {
            cc.clone()
        };
        let mut servers = Vec::with_capacity(cfg.servers.len());
        for s in &cfg.servers {
            let tls_addr = s.tls_address.unwrap_or(s.address);
            let sni = s.tls_sni.as_deref().or(st.sni.as_deref());
            let ctx = Arc::new(ServerContext::new(offer.clone(), tls_addr, sni)?);
            let check = match cfg.http2 {
                true => Some(Arc::new(ServerContext::new(cc.clone(), tls_addr, sni)?)),
                false => None,
            };
            // No tunnels kept established for HTTP/2: one connection per server.
            let tunnels = if cfg.http2 { 0 } else { st.pool };
            servers.push(Endpoints {
                plain: s.tls_address.map(|_| ServerPool::new(s.address, None, 0)),
                secure: Some(ServerPool::new(tls_addr, Some(ctx), tunnels)),
                check,
            });
        }
        Ok(Upstream {
            servers,
            connect_timeout: connect,
            idle_timeout: idle,
            http2: false,
        }
        .with_send_proxy(cfg))
    }

    /// Whether the servers are spoken to in HTTP/2.
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// The PROXY protocol version each server's connections start with, and
    /// HTTP/2.
    fn with_send_proxy(mut self, cfg: &BackendConfig) -> Upstream {
        self.http2 = cfg.http2;
        for e in &mut self.servers {
            for p in [&mut e.plain, &mut e.secure].into_iter().flatten() {
                if let Some(p) = Arc::get_mut(p)
                    && cfg.http2
                {
                    p.h2 = Some(Mutex::new(None));
                }
            }
        }
        for (e, s) in self.servers.iter_mut().zip(&cfg.servers) {
            let Some(v) = s.send_proxy.or(cfg.send_proxy) else {
                continue;
            };
            for p in [&mut e.plain, &mut e.secure].into_iter().flatten() {
                if let Some(p) = Arc::get_mut(p) {
                    p.send_proxy = Some(v);
                }
            }
        }
        self
    }

    /// Close idle connections that servers closed or that idled too long; the
    /// proxy calls this periodically.
    pub fn reap(&self) {
        for p in self.servers.iter().flat_map(Endpoints::all) {
            p.reap(self.idle_timeout);
        }
    }

    /// Open connections through the SSL contexts of the servers `usable` says
    /// are up until each holds its `pool` of established tunnels; the proxy
    /// calls this at start and periodically.
    pub async fn fill_tunnels(&self, usable: impl Fn(usize) -> bool) {
        for (i, e) in self.servers.iter().enumerate() {
            let Some(p) = e.secure.as_ref().filter(|p| p.send_proxy.is_none()) else {
                continue;
            };
            while usable(i) && p.idle_streams() < p.tunnels {
                match self.connect_stream(p, None).await {
                    Ok(s) => p.put_raw(s),
                    Err(err) => {
                        log::debug!("tunnel to {}: {err}", p.addr);
                        break;
                    }
                }
            }
        }
    }

    /// How often [`Upstream::reap`] should run.
    pub fn reap_interval(&self) -> Duration {
        (self.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The pool a request to server `i` takes: through its SSL context when
    /// `secure` (or when the server speaks only TLS), else plain (or, for a
    /// server without an SSL context, plain whatever `secure`).
    pub fn pool(&self, i: usize, secure: bool) -> &Arc<ServerPool> {
        let e = &self.servers[i];
        let (first, second) = if secure {
            (&e.secure, &e.plain)
        } else {
            (&e.plain, &e.secure)
        };
        match first.as_ref().or(second.as_ref()) {
            Some(p) => p,
            None => unreachable!("a server has at least one pool"),
        }
    }

    /// The SSL context of server `i` when it speaks only TLS (no plain address).
    pub fn tls_only_context(&self, i: usize) -> Option<&Arc<ServerContext>> {
        let e = &self.servers[i];
        if e.plain.is_some() {
            return None;
        }
        e.check
            .as_ref()
            .or_else(|| e.secure.as_ref().and_then(|p| p.context()))
    }

    /// The SSL context of server `i`, if it has one.
    pub fn context(&self, i: usize) -> Option<&Arc<ServerContext>> {
        self.servers[i].secure.as_ref().and_then(|p| p.context())
    }

    async fn connect_tcp(&self, addr: SocketAddr) -> Result<TcpStream, UpstreamError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
                Err(_) => return Err(UpstreamError::ConnectTimeout),
            };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// An idle stream of `pool` (fast path), if one is pooled.
    pub(crate) fn take_raw(&self, pool: &ServerPool) -> Option<ServerStream> {
        pool.take_raw(self.idle_timeout)
    }

    /// A new connection to `pool`'s endpoint, through its SSL context if it has
    /// one (the handshake within the connect timeout), starting with a PROXY
    /// protocol header for `client` (its address and the one it connected to)
    /// when the server has `send_proxy`.
    pub(crate) async fn connect_stream(
        &self,
        pool: &ServerPool,
        client: Option<ClientAddrs>,
    ) -> Result<ServerStream, UpstreamError> {
        let mut tcp = self.connect_tcp(pool.addr).await?;
        if let (Some(v), Some(c)) = (pool.send_proxy, client) {
            use tokio::io::AsyncWriteExt;
            let header = crate::proxy_protocol::encode(v, c.peer, c.local);
            tcp.write_all(&header)
                .await
                .map_err(UpstreamError::Connect)?;
        }
        let Some(ctx) = &pool.tls else {
            return Ok(ServerStream::Plain(tcp));
        };
        match tokio::time::timeout(self.connect_timeout, ctx.handshake(tcp)).await {
            Ok(Ok(s)) => Ok(ServerStream::Tls(Box::new(s))),
            Ok(Err(e)) => Err(UpstreamError::Connect(e)),
            Err(_) => {
                ctx.stats
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(UpstreamError::ConnectTimeout)
            }
        }
    }

    async fn connect(
        &self,
        pool: &Arc<ServerPool>,
        client: Option<ClientAddrs>,
    ) -> Result<Link, UpstreamError> {
        // An established tunnel first (no handshake), else a new connection.
        let stream = match pool.take_raw(self.idle_timeout) {
            Some(s) => s,
            None => self.connect_stream(pool, client).await?,
        };
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http)?;
        Ok(Link {
            sender,
            conn,
            since: Instant::now(),
            ended: false,
        })
    }

    /// Send `req` (origin-form URI, `Host` set) to server `i` on an idle pooled
    /// connection or a new one, through its SSL context when `secure` (see
    /// [`Upstream::pool`]).
    pub async fn request(
        &self,
        i: usize,
        secure: bool,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, PooledConn), UpstreamError> {
        let pool = self.pool(i, secure);
        if pool.h2.is_some() && !pool.h1_only.load(std::sync::atomic::Ordering::Relaxed) {
            match self.request_h2(pool, req).await? {
                H2Outcome::Done(r) => return Ok(r),
                H2Outcome::Http11(r, link) => {
                    // The server chose HTTP/1.1 by ALPN: spoken from now on.
                    pool.h1_only
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    let mut link = link;
                    let fut = link.sender.send_request(r);
                    let resp = link.exchange(fut).await.map_err(UpstreamError::Http)?;
                    let conn = PooledConn {
                        pool: pool.clone(),
                        link: Some(link),
                    };
                    return Ok((resp, conn));
                }
            }
        }
        while let Some(mut link) = pool.take(self.idle_timeout) {
            if !link.ready().await {
                continue;
            }
            let fut = link.sender.try_send_request(req);
            match link.exchange(fut).await {
                Ok(resp) => {
                    return Ok((
                        resp,
                        PooledConn {
                            pool: pool.clone(),
                            link: Some(link),
                        },
                    ));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(UpstreamError::Reused(e.into_error())),
                },
            }
        }
        let client = req.extensions().get::<ClientAddrs>().copied();
        let mut link = self.connect(pool, client).await?;
        let fut = link.sender.send_request(req);
        let resp = link.exchange(fut).await.map_err(UpstreamError::Http)?;
        Ok((
            resp,
            PooledConn {
                pool: pool.clone(),
                link: Some(link),
            },
        ))
    }

    /// Send `req` as a stream of the server's HTTP/2 connection (opened when
    /// there is none or it closed: with prior knowledge to a plain server, by
    /// ALPN through an SSL context; a TLS server that chooses HTTP/1.1 gets the
    /// request back with the connection, as [`H2Outcome::Http11`]).
    async fn request_h2(
        &self,
        pool: &Arc<ServerPool>,
        req: Request<ProxyBody>,
    ) -> Result<H2Outcome, UpstreamError> {
        let Some(slot) = &pool.h2 else {
            unreachable!("an HTTP/2 pool")
        };
        let (mut parts, body) = req.into_parts();
        // HTTP/2 carries the authority in the target, not in `Host`.
        let host = parts.headers.remove(http::header::HOST);
        let authority = host
            .as_ref()
            .and_then(|h| h.to_str().ok().map(str::to_string))
            .unwrap_or_else(|| pool.addr.to_string());
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let scheme = if pool.tls.is_some() { "https" } else { "http" };
        parts.uri = http::Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(pq)
            .build()
            .map_err(|_| UpstreamError::Protocol("invalid authority for HTTP/2"))?;
        parts.version = http::Version::HTTP_2;
        let req = Request::from_parts(parts, body);
        let cached = slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match cached {
            Some(s) => s,
            None => {
                let client = req.extensions().get::<ClientAddrs>().copied();
                let stream = self.connect_stream(pool, client).await?;
                if let ServerStream::Tls(t) = &stream
                    && t.get_ref().1.alpn_protocol() != Some(b"h2")
                {
                    let (mut parts, body) = req.into_parts();
                    parts.version = http::Version::HTTP_11;
                    if let Some(h) = host {
                        parts.headers.insert(http::header::HOST, h);
                    }
                    if let Some(pq) = parts.uri.path_and_query() {
                        parts.uri = http::Uri::from(pq.clone());
                    }
                    let (sender, conn) = hyper::client::conn::http1::Builder::new()
                        .handshake(TokioIo::new(stream))
                        .await
                        .map_err(UpstreamError::Http)?;
                    let link = Link {
                        sender,
                        conn,
                        since: Instant::now(),
                        ended: false,
                    };
                    return Ok(H2Outcome::Http11(Request::from_parts(parts, body), link));
                }
                let (s, conn) = h2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .timer(hyper_util::rt::TokioTimer::new())
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(UpstreamError::Http)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        log::debug!("upstream HTTP/2 connection: {e}");
                    }
                });
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
                s
            }
        };
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Http)?;
        Ok(H2Outcome::Done((
            resp,
            PooledConn {
                pool: pool.clone(),
                link: None,
            },
        )))
    }
}

/// How an exchange meant for HTTP/2 went.
enum H2Outcome {
    /// The response, on an HTTP/2 stream.
    Done((Response<Incoming>, PooledConn)),
    /// The TLS server chose HTTP/1.1: the request (for HTTP/1.1) and the new
    /// connection.
    Http11(Request<ProxyBody>, Link),
}

/// A server's response body on its way to the client. It drives the server
/// connection while it streams; when it ends, the connection goes back to the
/// pool; when it is dropped, its QoS slot is released.
#[derive(Debug)]
pub struct ProxiedBody {
    inner: Incoming,
    conn: Option<PooledConn>,
    permit: Option<Permit>,
    done: bool,
}

impl ProxiedBody {
    /// Wrap a response body with its connection and slot.
    pub fn new(inner: Incoming, conn: PooledConn, permit: Permit) -> ProxiedBody {
        ProxiedBody {
            inner,
            conn: Some(conn),
            permit: Some(permit),
            done: false,
        }
    }

    fn finish(&mut self) {
        self.done = true;
        if let Some(c) = self.conn.take() {
            c.release();
        }
        self.permit.take();
    }
}

impl Body for ProxiedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(l) = this.conn.as_mut().and_then(|c| c.link.as_mut()) {
            l.drive(cx);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // The connection is in an unknown state: do not reuse it.
                this.conn.take();
                this.permit.take();
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(f))) => {
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ProxiedBody {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, 304, Content-Length: 0) may never be polled.
        if !self.done && self.inner.is_end_stream() {
            self.finish();
        }
    }
}
