//! `tack-proxy`: Tack's L7 load-balancing server (requirement R5).
//!
//! An HTTP/1.1 and HTTP/2 (h2c, or h2 over TLS) reverse proxy on tokio that keeps
//! client connections alive and schedules every request on its own (round robin,
//! least connections, random with two choices, source, URI, URL parameter, header,
//! and ketama-compatible consistent hashing), pins clients with HAProxy-compatible
//! cookies, application session IDs (for every request, or only secure ones) or
//! hash groups, answers redirect persistence, health-checks its servers, and
//! queues requests per server by priority class.
//! HTTP/1.1 is served by a fast path of its own ([`h1`] heads parsed in place,
//! bodies copied with their framing); HTTP/2 and what the fast path leaves (upgrades,
//! HTTP/1.0, absolute-form targets) by hyper, behind the same framing rules
//! ([`h1::check_request`], applied to hyper's input by an internal guard).
//!
//! TLS ([`tls`], rustls on ring): frontends terminate it (SNI certificates, ALPN,
//! shared ticket keys, reload); servers are reached through SSL contexts with
//! connections kept established ([`upstream`]); [`passthrough`] frontends route
//! TLS they do not terminate by SNI and TLS 1.2 session ID. Listeners hand
//! accepted streams, plain or decrypted, to [`serve_stream`], which is generic
//! over the stream.
//!
//! Embedding: deserialize a [`config::ProxyConfig`] (for example from a Tack
//! profile's `proxy:` section), call [`config::ProxyConfig::validate`], then
//! [`run`] it until a shutdown future resolves, or [`Proxy::start`] it to get the
//! bound addresses and stop it later.
#![forbid(unsafe_code)]

pub mod admin;
pub mod backend;
pub mod balance;
pub mod cache;
pub mod cdn;
pub mod config;
pub mod cookie;
mod fast;
mod guard;
pub mod h1;
pub mod health;
pub mod metrics;
pub mod pages;
pub mod passthrough;
pub mod persist;
pub mod proxy;
pub mod qos;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::config::{BackendConfig, FrontendConfig, ProxyConfig};
use crate::proxy::Frontend;
use crate::upstream::Upstream;

/// Errors of starting the proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A frontend's TLS files or settings cannot be used.
    #[error("frontend {frontend}: TLS: {source}")]
    Tls {
        /// The frontend.
        frontend: String,
        /// Why.
        source: tls::TlsError,
    },
    /// A backend's SSL contexts to its servers cannot be set up.
    #[error("backend {backend}: server TLS: {source}")]
    ServerTls {
        /// The backend.
        backend: String,
        /// Why.
        source: tls::TlsError,
    },
    /// A listener could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// How long running requests may take to finish after shutdown is asked.
const GRACE: Duration = Duration::from_secs(5);

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    registry: Arc<metrics::Registry>,
    addrs: Vec<(String, SocketAddr)>,
    metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// A stream that first yields bytes already read from it (handing a connection
/// from the fast path to hyper).
#[derive(Debug)]
pub struct Rewind<S> {
    pre: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, after `pre`.
    pub fn new(pre: Vec<u8>, inner: S) -> Rewind<S> {
        Rewind { pre, pos: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pos < self.pre.len() {
            let n = (self.pre.len() - self.pos).min(buf.remaining());
            let from = self.pos;
            buf.put_slice(&self.pre[from..from + n]);
            self.pos += n;
            if self.pos == self.pre.len() {
                self.pre = Vec::new();
                self.pos = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bind a listening socket, optionally with `IP_FREEBIND` / `IP_TRANSPARENT` (a VIP
/// held on the loopback for direct server return need not exist on an interface).
pub fn bind_listener(
    addr: SocketAddr,
    freebind: bool,
    transparent: bool,
) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(false).ok();
        if freebind {
            sock.set_freebind_v6(true)?;
        }
        if transparent {
            sock.set_ip_transparent_v6(true)?;
        }
    } else {
        if freebind {
            sock.set_freebind_v4(true)?;
        }
        if transparent {
            sock.set_ip_transparent_v4(true)?;
        }
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(4096)?;
    TcpListener::from_std(sock.into())
}

/// The keep-alive connection pools used to reach a backend's servers, with the
/// servers' SSL contexts when it has `server_tls`.
pub fn upstream_pools(cfg: &BackendConfig) -> Result<Upstream, Error> {
    Upstream::for_backend(cfg).map_err(|source| Error::ServerTls {
        backend: cfg.name.clone(),
        source,
    })
}

fn conn_builder(fe: &FrontendConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(fe.keepalive_timeout.0)
        .keep_alive(true);
    b.http2().timer(TokioTimer::new()).keep_alive_interval(None);
    if !fe.http2 {
        b = b.http1_only();
    }
    b
}

/// Serve one accepted client stream (plain TCP, or TLS once the handshake is
/// done) on a frontend until it closes or shutdown drains it. `h2`: ALPN chose
/// HTTP/2, which goes straight to hyper.
pub async fn serve_stream<S>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    fe: Arc<Frontend>,
    watcher: Watcher,
    stream: S,
    peer: SocketAddr,
    h2: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fe.stats.open_connections.fetch_add(1, Ordering::Relaxed);
    // HTTP/1.1 goes to the fast path; what it does not handle (HTTP/2, upgrades,
    // HTTP/1.0...) comes back with the bytes already read, for hyper.
    let stream = if fe.fast_path && !h2 {
        match fast::serve(&fe, stream, peer).await {
            fast::Served::Done => {
                fe.stats.open_connections.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            fast::Served::Fallback(s, read) => Rewind::new(read, s),
        }
    } else {
        Rewind::new(Vec::new(), stream)
    };
    // Hyper reads HTTP/1 through the fast path's framing rules.
    let stream = guard::Guard::new(stream, fe.clone());
    let f2 = fe.clone();
    let svc = service_fn(move |req| f2.clone().handle(peer, req));
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = watcher.watch(conn).await {
        fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
        log::debug!("connection from {peer} on {}: {e}", fe.name);
    }
    fe.stats.open_connections.fetch_sub(1, Ordering::Relaxed);
}

async fn accept_loop(
    listener: TcpListener,
    cfg: FrontendConfig,
    fe: Arc<Frontend>,
    mut stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(conn_builder(&cfg));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("accept on {}: {e}", fe.name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        fe.stats.connections.fetch_add(1, Ordering::Relaxed);
        let (builder, fe2, watcher) = (builder.clone(), fe.clone(), graceful.watcher());
        match &fe.tls {
            None => {
                tokio::spawn(serve_stream(builder, fe2, watcher, stream, peer, false));
            }
            Some(tls) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls.accept(stream).await {
                        Ok(a) => serve_stream(builder, fe2, watcher, a.stream, peer, a.h2).await,
                        Err(e) => log::debug!("TLS handshake from {peer} on {}: {e}", fe2.name),
                    }
                });
            }
        }
    }
    drop(listener);
    // Fast-path connections close when idle; hyper's drain gracefully.
    fe.stop_connections();
    let drained = async {
        graceful.shutdown().await;
        while fe.stats.open_connections.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(GRACE, drained).await.is_err() {
        log::warn!(
            "frontend {}: connections still open after {GRACE:?}, closing them",
            fe.name
        );
    }
}

async fn metrics_loop(
    listener: TcpListener,
    state: Arc<metrics::Registry>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; } },
            _ = stop.changed() => break,
        };
        let st = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let st = st.clone();
                async move {
                    if req.uri().path() == "/cache/purge" {
                        let (status, text) =
                            pages::admin::purge(&st, req.method(), req.uri().query(), peer.ip());
                        let mut resp = http::Response::new(proxy::full(text));
                        *resp.status_mut() = status;
                        return Ok(resp);
                    }
                    let (text, kind) = match req.uri().path() {
                        "/metrics" => (metrics::render(&st), "text/plain; version=0.0.4"),
                        "/sessions" => (admin::sessions(&st), "text/plain; charset=utf-8"),
                        "/cache" => (pages::admin::list(&st), "text/plain; charset=utf-8"),
                        _ => {
                            return Ok(proxy::local_response(
                                http::StatusCode::NOT_FOUND,
                                "Try /metrics or /sessions.",
                            ));
                        }
                    };
                    let mut resp = http::Response::new(proxy::full(text));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(kind),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

impl Proxy {
    /// Validate the configuration, bind every listener, start health checks, and
    /// serve in the background on the current tokio runtime.
    pub async fn start(cfg: ProxyConfig) -> Result<Proxy, Error> {
        cfg.validate()?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let backends: Vec<Arc<Backend>> = cfg
            .backends
            .iter()
            .map(|b| Arc::new(Backend::new(b)))
            .collect();
        let pools: Vec<Arc<Upstream>> = cfg
            .backends
            .iter()
            .map(|b| upstream_pools(b).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let mut frontends = Vec::new();
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for fc in &cfg.frontends {
            let bi = cfg
                .backends
                .iter()
                .position(|b| b.name == fc.backend)
                .ok_or_else(|| {
                    Error::Config(config::ConfigError::Invalid {
                        field: format!("frontend {}.backend", fc.name),
                        message: "no such backend".into(),
                        line: None,
                    })
                })?;
            let tls = match &fc.tls {
                Some(t) => Some(Arc::new(
                    tls::server::TlsTerminator::new(t, fc.http2).map_err(|source| Error::Tls {
                        frontend: fc.name.clone(),
                        source,
                    })?,
                )),
                None => None,
            };
            if let Some(t) = &tls {
                let (t, name, mut stop) = (t.clone(), fc.name.clone(), stop_rx.clone());
                tasks.spawn(async move {
                    let mut tick = tokio::time::interval(t.reload_interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => t.reload(&name),
                            _ = stop.changed() => break,
                        }
                    }
                });
            }
            let fe = Arc::new(Frontend::new(
                fc,
                backends[bi].clone(),
                pools[bi].clone(),
                tls,
            ));
            for &addr in &fc.bind {
                let l = bind_listener(addr, fc.freebind, fc.transparent)
                    .map_err(|source| Error::Bind { addr, source })?;
                let local = l
                    .local_addr()
                    .map_err(|source| Error::Bind { addr, source })?;
                addrs.push((fc.name.clone(), local));
                listeners.push((l, fc.clone(), fe.clone()));
            }
            frontends.push(fe);
        }
        let mut passthrough = Vec::new();
        for pc in &cfg.passthrough {
            let pt = Arc::new(passthrough::Passthrough::new(pc, &backends));
            for &addr in &pc.bind {
                let l = bind_listener(addr, false, false)
                    .map_err(|source| Error::Bind { addr, source })?;
                let local = l
                    .local_addr()
                    .map_err(|source| Error::Bind { addr, source })?;
                addrs.push((pc.name.clone(), local));
                log::info!("passthrough {} listening on {local}", pc.name);
                tasks.spawn(passthrough::accept_loop(l, pt.clone(), stop_rx.clone()));
            }
            passthrough.push(pt);
        }
        let registry = Arc::new(metrics::Registry {
            frontends,
            backends,
            pools,
            passthrough,
        });
        let metrics_addr = match &cfg.metrics {
            Some(m) => {
                let l = bind_listener(m.listen, false, false).map_err(|source| Error::Bind {
                    addr: m.listen,
                    source,
                })?;
                let a = l.local_addr().map_err(|source| Error::Bind {
                    addr: m.listen,
                    source,
                })?;
                tasks.spawn(metrics_loop(l, registry.clone(), stop_rx.clone()));
                Some(a)
            }
            None => None,
        };
        for (l, fc, fe) in listeners {
            log::info!(
                "frontend {} listening on {}",
                fc.name,
                l.local_addr().map(|a| a.to_string()).unwrap_or_default()
            );
            tasks.spawn(accept_loop(l, fc, fe, stop_rx.clone()));
        }
        for (up, be) in registry.pools.iter().zip(&registry.backends) {
            let (up, be, mut stop) = (up.clone(), be.clone(), stop_rx.clone());
            tasks.spawn(async move {
                // Idle connections reaped, and the tunnels of the servers' SSL
                // contexts (re)established, from the start on.
                let mut tick = tokio::time::interval(up.reap_interval());
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = async {
                            tick.tick().await;
                            up.reap();
                            up.fill_tunnels(|i| be.servers[i].usable_for_pinned()).await;
                        } => {}
                        _ = stop.changed() => break,
                    }
                }
            });
        }
        for ((b, bc), up) in registry
            .backends
            .iter()
            .zip(&cfg.backends)
            .zip(&registry.pools)
        {
            if let Some(hc) = &bc.health_check {
                for s in b.servers.iter().filter(|s| s.check) {
                    let tls = up.tls_only_context(s.idx).cloned();
                    tasks.spawn(health::run_checks(
                        hc.clone(),
                        s.clone(),
                        tls,
                        stop_rx.clone(),
                    ));
                }
            }
        }
        Ok(Proxy {
            registry,
            addrs,
            metrics_addr,
            stop,
            tasks,
        })
    }

    /// The first bound address of a frontend (useful with port 0).
    pub fn local_addr(&self, frontend: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == frontend)
            .map(|(_, a)| *a)
    }

    /// Every bound address, with its frontend's name.
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// The Prometheus endpoint's address, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A backend's runtime state (servers, tables, counters).
    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.registry.backends.iter().find(|b| b.name == name)
    }

    /// A backend's connection pools and SSL contexts.
    pub fn upstream(&self, backend: &str) -> Option<&Arc<Upstream>> {
        let i = self
            .registry
            .backends
            .iter()
            .position(|b| b.name == backend)?;
        self.registry.pools.get(i)
    }

    /// A pass-through frontend (tables, counters).
    pub fn passthrough(&self, name: &str) -> Option<&Arc<passthrough::Passthrough>> {
        self.registry.passthrough.iter().find(|p| p.name == name)
    }

    /// The admin view of the session tables, as served on `/sessions`.
    pub fn render_sessions(&self) -> String {
        admin::sessions(&self.registry)
    }

    /// A frontend's handler and counters.
    pub fn frontend(&self, name: &str) -> Option<&Arc<Frontend>> {
        self.registry.frontends.iter().find(|f| f.name == name)
    }

    /// The metrics text, as served on the Prometheus endpoint.
    pub fn render_metrics(&self) -> String {
        metrics::render(&self.registry)
    }

    /// Stop accepting, let running requests finish (up to a grace period), stop
    /// health checks, and wait for everything to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Read every file the configuration names (TLS certificates, keys, CAs, ticket
/// keys) and build the TLS contexts, as starting would; `--check` calls this.
pub fn check_files(cfg: &ProxyConfig) -> Result<(), Error> {
    for fc in &cfg.frontends {
        if let Some(t) = &fc.tls {
            tls::server::TlsTerminator::new(t, fc.http2).map_err(|source| Error::Tls {
                frontend: fc.name.clone(),
                source,
            })?;
        }
    }
    for b in &cfg.backends {
        upstream_pools(b)?;
    }
    Ok(())
}

/// Run the proxy until `shutdown` resolves, then drain and stop. This is the entry
/// point the appliance calls with its profile's `proxy:` section.
pub async fn run(cfg: ProxyConfig, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let p = Proxy::start(cfg).await?;
    shutdown.await;
    log::info!("shutting down");
    p.shutdown().await;
    Ok(())
}
