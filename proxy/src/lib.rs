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
//! A frontend's [`route`] rules (content switching) choose each request's
//! backend; [`reload`] replaces the configuration without dropping
//! connections (`SIGHUP`, the [`api`] admin API and its CLI `tack-proxy ctl`);
//! servers can be backups, get [`proxy_protocol`] headers, HTTP/2 (h2c), and
//! WebSocket upgrades are passed through.
//!
//! Embedding: deserialize a [`config::ProxyConfig`] (for example from a Tack
//! profile's `proxy:` section), call [`config::ProxyConfig::validate`], then
//! [`run`] it until a shutdown future resolves, or [`Proxy::start`] it to get the
//! bound addresses and stop it later.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
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
pub mod proxy_protocol;
pub mod qos;
pub mod reload;
pub mod route;
pub mod tls;
mod tunnel;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::config::{BackendConfig, ProxyConfig};
use crate::proxy::Frontend;
use crate::reload::{BuildError, Initial, Listening, Live};
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

impl From<BuildError> for Error {
    fn from(e: BuildError) -> Error {
        match e {
            BuildError::Config(e) => Error::Config(e),
            BuildError::Tls { frontend, source } => Error::Tls { frontend, source },
            BuildError::ServerTls { backend, source } => Error::ServerTls { backend, source },
        }
    }
}

/// How long running requests may take to finish after shutdown is asked.
const GRACE: Duration = Duration::from_secs(5);

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    live: Arc<Live>,
    addrs: Vec<(String, SocketAddr)>,
    metrics_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
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

/// Serve one accepted client stream (plain TCP, or TLS once the handshake is
/// done) on a frontend until it closes or shutdown drains it. `peer` is the
/// client, `local` the address it connected to (both from the PROXY protocol
/// header when the frontend accepts one). `h2`: ALPN chose HTTP/2, which goes
/// straight to hyper.
#[allow(clippy::too_many_arguments)]
pub async fn serve_stream<S>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    fe: Arc<Frontend>,
    watcher: Watcher,
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    h2: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fe.stats.open_connections.fetch_add(1, Ordering::Relaxed);
    // HTTP/1.1 goes to the fast path; what it does not handle (HTTP/2, upgrades,
    // HTTP/1.0...) comes back with the bytes already read, for hyper.
    let stream = if fe.fast_path && !h2 {
        match fast::serve(&fe, stream, peer, local).await {
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
    let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut()
            .insert(upstream::ClientAddrs { peer, local });
        f2.clone().handle(peer, req)
    });
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = watcher.watch(conn).await {
        fe.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
        log::debug!("connection from {peer} on {}: {e}", fe.name);
    }
    fe.stats.open_connections.fetch_sub(1, Ordering::Relaxed);
}

async fn accept_loop(
    listener: TcpListener,
    slot: Arc<ArcSwap<Listening>>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("accept on {}: {e}", slot.load().fe.name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        // The configuration of the moment (a reload replaces it for new connections).
        let cur = slot.load_full();
        let fe = &cur.fe;
        fe.stats.connections.fetch_add(1, Ordering::Relaxed);
        let (builder, fe2, watcher) = (cur.builder.clone(), fe.clone(), graceful.watcher());
        let accept_proxy = cur.accept_proxy;
        tokio::spawn(async move {
            let mut stream = stream;
            let (mut peer, mut local) = (peer, stream.local_addr().unwrap_or(peer));
            if accept_proxy {
                match proxy_protocol::accept(&mut stream, fe2.keepalive_timeout()).await {
                    Ok(Some((src, dst))) => (peer, local) = (src, dst),
                    Ok(None) => {}
                    Err(e) => {
                        fe2.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                        log::debug!("connection from {peer} on {}: {e}", fe2.name);
                        return;
                    }
                }
            }
            match fe2.tls.clone() {
                None => serve_stream(builder, fe2, watcher, stream, peer, local, false).await,
                Some(tls) => match tls.accept(stream).await {
                    Ok(a) => serve_stream(builder, fe2, watcher, a.stream, peer, local, a.h2).await,
                    Err(e) => log::debug!("TLS handshake from {peer} on {}: {e}", fe2.name),
                },
            }
        });
    }
    drop(listener);
    // Fast-path connections close when idle (whichever configuration they
    // started with: the stop signal is shared); hyper's drain gracefully.
    let fe = slot.load_full().fe.clone();
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

async fn metrics_loop(listener: TcpListener, live: Arc<Live>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; } },
            _ = stop.changed() => break,
        };
        let live = live.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let st = live.registry.load_full();
                let live = live.clone();
                async move {
                    let (text, kind) = match req.uri().path() {
                        "/metrics" => {
                            let mut text = metrics::render(&st);
                            live.render_metrics(&mut text);
                            (text, "text/plain; version=0.0.4")
                        }
                        "/sessions" => (admin::sessions(&st), "text/plain; charset=utf-8"),
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
        Proxy::start_with(cfg, None).await
    }

    /// Read, validate and start the configuration in `path`, which
    /// [`Proxy::reload`] (`SIGHUP`) and the admin API's reload re-read.
    pub async fn start_file(path: impl Into<std::path::PathBuf>) -> Result<Proxy, Error> {
        let path = path.into();
        let cfg = ProxyConfig::from_file(&path)?;
        Proxy::start_with(cfg, Some(path)).await
    }

    async fn start_with(
        cfg: ProxyConfig,
        path: Option<std::path::PathBuf>,
    ) -> Result<Proxy, Error> {
        cfg.validate()?;
        let (stop, stop_rx) = watch::channel(false);
        let init = Initial::build(&cfg)?;
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for (i, fc) in cfg.frontends.iter().enumerate() {
            for &addr in &fc.bind {
                let l = bind_listener(addr, fc.freebind, fc.transparent)
                    .map_err(|source| Error::Bind { addr, source })?;
                let local = l
                    .local_addr()
                    .map_err(|source| Error::Bind { addr, source })?;
                addrs.push((fc.name.clone(), local));
                listeners.push((l, (fc.name.clone(), i)));
            }
        }
        let backends = init.backends();
        let mut tasks = JoinSet::new();
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
        let metrics = match &cfg.metrics {
            Some(m) => {
                let l = bind_listener(m.listen, false, false).map_err(|source| Error::Bind {
                    addr: m.listen,
                    source,
                })?;
                let a = l.local_addr().map_err(|source| Error::Bind {
                    addr: m.listen,
                    source,
                })?;
                Some((l, a))
            }
            None => None,
        };
        let admin = match &cfg.admin {
            Some(a) => {
                let token = match &a.token_file {
                    Some(f) => Some(read_token(f)?),
                    None => None,
                };
                let l = bind_listener(a.listen, false, false).map_err(|source| Error::Bind {
                    addr: a.listen,
                    source,
                })?;
                let addr = l.local_addr().map_err(|source| Error::Bind {
                    addr: a.listen,
                    source,
                })?;
                Some((l, addr, token))
            }
            None => None,
        };
        let names: Vec<(String, usize)> = listeners.iter().map(|(_, n)| n.clone()).collect();
        let live = Arc::new(Live::start(
            cfg,
            init,
            &names,
            passthrough,
            path,
            tasks,
            &stop_rx,
        ));
        let metrics_addr = metrics.map(|(l, a)| {
            live.spawn(metrics_loop(l, live.clone(), stop_rx.clone()));
            a
        });
        let admin_addr = admin.map(|(l, a, token)| {
            let api = Arc::new(api::Api::new(live.clone(), token, stop_rx.clone()));
            log::info!("admin API listening on {a}");
            live.spawn(api::serve(l, api, stop_rx.clone()));
            a
        });
        for ((l, (name, _)), (_, slot)) in listeners.into_iter().zip(&live.listeners) {
            log::info!(
                "frontend {name} listening on {}",
                l.local_addr().map(|a| a.to_string()).unwrap_or_default()
            );
            live.spawn(accept_loop(l, slot.clone(), stop_rx.clone()));
        }
        Ok(Proxy {
            live,
            addrs,
            metrics_addr,
            admin_addr,
            stop,
        })
    }

    /// Re-read the configuration file and apply it: new connections get the
    /// new configuration, open ones finish on theirs; on error the running
    /// configuration stays ([`reload`]).
    pub async fn reload(&self) -> Result<(), BuildError> {
        self.live.reload_file(&self.stop.subscribe()).await
    }

    /// Apply a configuration as a reload.
    pub async fn apply(&self, cfg: ProxyConfig) -> Result<(), BuildError> {
        cfg.validate()?;
        self.live.apply(cfg, None, &self.stop.subscribe()).await
    }

    /// The running configuration's replaceable parts (reload counters...).
    pub fn live(&self) -> &Arc<Live> {
        &self.live
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

    /// The admin API's address, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The Prometheus endpoint's address, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A backend's runtime state (servers, tables, counters) in the running
    /// configuration.
    pub fn backend(&self, name: &str) -> Option<Arc<Backend>> {
        let r = self.live.registry.load();
        r.backends.iter().find(|b| b.name == name).cloned()
    }

    /// A backend's connection pools and SSL contexts.
    pub fn upstream(&self, backend: &str) -> Option<Arc<Upstream>> {
        let r = self.live.registry.load();
        let i = r.backends.iter().position(|b| b.name == backend)?;
        r.pools.get(i).cloned()
    }

    /// A pass-through frontend (tables, counters).
    pub fn passthrough(&self, name: &str) -> Option<Arc<passthrough::Passthrough>> {
        let r = self.live.registry.load();
        r.passthrough.iter().find(|p| p.name == name).cloned()
    }

    /// The admin view of the session tables, as served on `/sessions`.
    pub fn render_sessions(&self) -> String {
        admin::sessions(&self.live.registry.load())
    }

    /// A frontend's handler and counters.
    pub fn frontend(&self, name: &str) -> Option<Arc<Frontend>> {
        let r = self.live.registry.load();
        r.frontends.iter().find(|f| f.name == name).cloned()
    }

    /// The metrics text, as served on the Prometheus endpoint.
    pub fn render_metrics(&self) -> String {
        let mut text = metrics::render(&self.live.registry.load());
        self.live.render_metrics(&mut text);
        text
    }

    /// Stop accepting, let running requests finish (up to a grace period), stop
    /// health checks, and wait for everything to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.live.stop_tasks().await;
    }
}

/// The admin API's token: the first line of its file, which must not be empty.
fn read_token(path: &std::path::Path) -> Result<String, Error> {
    let bad = |message: String| {
        Error::Config(config::ConfigError::Invalid {
            field: "admin.token_file".into(),
            message,
            line: None,
        })
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(bad(format!("{} holds no token", path.display())));
    }
    Ok(token)
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
    if let Some(f) = cfg.admin.as_ref().and_then(|a| a.token_file.as_ref()) {
        read_token(f)?;
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
