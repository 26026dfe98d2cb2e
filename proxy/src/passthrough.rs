//! TCP frontends that pass TLS through without terminating it.
//!
//! Each connection's ClientHello is read (not consumed: it is forwarded as it
//! arrived) for its server name, which picks the backend, and its legacy
//! session ID. A TLS 1.2 client resuming a session sends the ID the server gave
//! it; the table learnt from the servers' ServerHellos (session ID → server,
//! bounded, with idle expiry) sends it back to that server. TLS 1.3 clients (and
//! TLS 1.2 clients resuming by ticket) send a random ID, so the table cannot
//! place them: client-address affinity (whole address, prefix, or natural
//! class) keeps them on one server instead. Then bytes are copied both ways.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::Backend;
use crate::balance::{HeaderLookup, RequestView};
use crate::config::tls::{Affinity, AffinityKey, PassthroughConfig};
use crate::persist::SessionTable;
use crate::tls::hello::{self, Parse};

/// Counters of a pass-through frontend.
#[derive(Debug, Default)]
pub struct PassthroughStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed because the ClientHello was malformed, not TLS, or did
    /// not arrive within `hello_timeout`.
    pub bad_hello: AtomicU64,
    /// Connections closed because no route matched their server name.
    pub no_route: AtomicU64,
    /// Connections closed because no server could be reached.
    pub no_server: AtomicU64,
    /// Connections sent to a server by the session-ID table.
    pub session_routed: AtomicU64,
    /// Connections sent to a server by client-address affinity.
    pub affinity_routed: AtomicU64,
    /// Connections load balanced.
    pub balanced: AtomicU64,
    /// New TLS 1.2 session IDs learnt from ServerHellos.
    pub sessions_learnt: AtomicU64,
    /// Connections whose server chose TLS 1.3.
    pub tls13: AtomicU64,
    /// Connections closed after `idle_timeout` without traffic.
    pub idle_closed: AtomicU64,
}

/// A stream that notes when it last read something (milliseconds since
/// `start`), for the idle timeout of [`relay`].
struct Watched<'a> {
    inner: &'a mut TcpStream,
    start: tokio::time::Instant,
    last: &'a AtomicU64,
}

impl tokio::io::AsyncRead for Watched<'_> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut *this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = this.start.elapsed().as_millis() as u64;
            this.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl tokio::io::AsyncWrite for Watched<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Copy bytes both ways until both sides closed, or until neither sent
/// anything for `idle` (`TimedOut`).
async fn relay(a: &mut TcpStream, b: &mut TcpStream, idle: Duration) -> std::io::Result<()> {
    let start = tokio::time::Instant::now();
    let last = AtomicU64::new(0);
    let mut wa = Watched {
        inner: a,
        start,
        last: &last,
    };
    let mut wb = Watched {
        inner: b,
        start,
        last: &last,
    };
    let copy = tokio::io::copy_bidirectional(&mut wa, &mut wb);
    tokio::pin!(copy);
    loop {
        let due = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            r = &mut copy => return r.map(|_| ()),
            _ = tokio::time::sleep_until(due) => {
                let now_due = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
                if now_due <= tokio::time::Instant::now() {
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle timeout"));
                }
            }
        }
    }
}

/// No headers: the request view of a TCP connection.
struct NoHeaders;

impl HeaderLookup for NoHeaders {
    fn header(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

/// A route: an exact name or a `*.suffix`.
#[derive(Debug)]
enum RouteName {
    Exact(String),
    Under(String),
}

impl RouteName {
    fn matches(&self, name: &str) -> bool {
        match self {
            RouteName::Exact(n) => n == name,
            RouteName::Under(parent) => name
                .strip_suffix(parent.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

/// The affinity key of a client address.
pub fn affinity_key(a: &Affinity, ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let bits = match (a.key, ip) {
        (AffinityKey::Source, IpAddr::V4(_)) => 32,
        (AffinityKey::Source, IpAddr::V6(_)) => 128,
        (AffinityKey::Prefix, IpAddr::V4(_)) => a.ipv4_prefix,
        (AffinityKey::Natural, IpAddr::V4(v4)) => match v4.octets()[0] {
            0..=127 => 8,
            128..=191 => 16,
            192..=223 => 24,
            _ => 32,
        },
        (AffinityKey::Prefix | AffinityKey::Natural, IpAddr::V6(_)) => a.ipv6_prefix,
    };
    match ipnet::IpNet::new(ip, bits) {
        Ok(net) => net.trunc().to_string(),
        Err(_) => ip.to_string(),
    }
}

/// A running pass-through frontend.
#[derive(Debug)]
pub struct Passthrough {
    /// Name.
    pub name: String,
    routes: Vec<(RouteName, usize)>,
    default: Option<usize>,
    /// The backends it routes to.
    pub backends: Vec<Arc<Backend>>,
    /// TLS 1.2 session ID (`<backend>/<hex>`) → server.
    pub sessions: SessionTable,
    affinity: Option<(Affinity, SessionTable)>,
    hello_timeout: Duration,
    idle_timeout: Duration,
    /// Counters.
    pub stats: PassthroughStats,
}

/// Why a connection could not be set up (it is closed and counted).
#[derive(Debug)]
enum Refused {
    BadHello,
    NoRoute,
    NoServer,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Passthrough {
    /// Build from its configuration; `all` are the proxy's backends (the names
    /// were validated).
    pub fn new(cfg: &PassthroughConfig, all: &[Arc<Backend>]) -> Passthrough {
        let mut backends: Vec<Arc<Backend>> = Vec::new();
        let mut index = |name: &str| -> usize {
            if let Some(i) = backends.iter().position(|b| b.name == name) {
                return i;
            }
            let b = all.iter().find(|b| b.name == name).cloned();
            backends.push(b.unwrap_or_else(|| unreachable!("validated backend name")));
            backends.len() - 1
        };
        let routes = cfg
            .routes
            .iter()
            .map(|r| {
                let sni = r.sni.to_ascii_lowercase();
                let name = match sni.strip_prefix("*.") {
                    Some(p) => RouteName::Under(p.to_string()),
                    None => RouteName::Exact(sni.clone()),
                };
                (name, index(&r.backend))
            })
            .collect();
        let default = cfg.default_backend.as_deref().map(&mut index);
        Passthrough {
            name: cfg.name.clone(),
            routes,
            default,
            backends,
            sessions: SessionTable::new(cfg.session_table.size, cfg.session_table.expire.0),
            affinity: cfg
                .affinity
                .as_ref()
                .map(|a| (a.clone(), SessionTable::new(a.table.size, a.table.expire.0))),
            hello_timeout: cfg.hello_timeout.0,
            idle_timeout: cfg.idle_timeout.0,
            stats: PassthroughStats::default(),
        }
    }

    /// The affinity table, when affinity is configured.
    pub fn affinity_table(&self) -> Option<&SessionTable> {
        self.affinity.as_ref().map(|(_, t)| t)
    }

    /// The backend (index) for a server name.
    fn route(&self, sni: Option<&str>) -> Option<usize> {
        sni.and_then(|n| {
            self.routes
                .iter()
                .find(|(r, _)| r.matches(n))
                .map(|(_, b)| *b)
        })
        .or(self.default)
    }

    /// Serve one accepted connection to its end.
    pub async fn serve(&self, mut client: TcpStream, peer: SocketAddr) {
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        match self.connect(&mut client, peer).await {
            Ok(mut server) => {
                if let Err(e) = relay(&mut client, &mut server, self.idle_timeout).await {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    }
                    log::debug!("passthrough {} from {peer}: {e}", self.name);
                }
            }
            Err(r) => {
                let c = match r {
                    Refused::BadHello => &self.stats.bad_hello,
                    Refused::NoRoute => &self.stats.no_route,
                    Refused::NoServer => &self.stats.no_server,
                };
                c.fetch_add(1, Ordering::Relaxed);
                log::debug!("passthrough {} from {peer}: {r:?}", self.name);
            }
        }
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Read the ClientHello, pick and connect the server, relay the hellos
    /// (learning the session ID); the connected server stream.
    async fn connect(
        &self,
        client: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<TcpStream, Refused> {
        let deadline = tokio::time::Instant::now() + self.hello_timeout;
        let mut buf = Vec::with_capacity(2048);
        let ch = loop {
            match hello::client_hello(&buf) {
                Parse::Done(h) => break h,
                Parse::Invalid(_) => return Err(Refused::BadHello),
                Parse::Incomplete if buf.len() > hello::MAX_HELLO + 1024 => {
                    return Err(Refused::BadHello);
                }
                Parse::Incomplete => {}
            }
            match tokio::time::timeout_at(deadline, client.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err(Refused::BadHello),
            }
        };
        let bi = self.route(ch.sni.as_deref()).ok_or(Refused::NoRoute)?;
        let be = &self.backends[bi];
        let now = Instant::now();
        let sid_key = (!ch.session_id.is_empty()).then(|| format!("{bi}/{}", hex(&ch.session_id)));
        let aff_key = self
            .affinity
            .as_ref()
            .filter(|(a, _)| a.all_clients || ch.offers_tls13)
            .map(|(a, _)| format!("{bi}/{}", affinity_key(a, peer.ip())));
        let pinned = |table: &SessionTable, key: &Option<String>| {
            key.as_deref()
                .and_then(|k| table.lookup(k, now))
                .filter(|&s| be.servers[s].usable_for_pinned())
        };
        let mut choice = pinned(&self.sessions, &sid_key).map(|s| (s, &self.stats.session_routed));
        if choice.is_none()
            && let Some((_, t)) = &self.affinity
        {
            choice = pinned(t, &aff_key).map(|s| (s, &self.stats.affinity_routed));
        }
        let mut tried = Vec::new();
        let (mut server, srv) = loop {
            let (srv, counter) = match choice.take() {
                Some(c) => c,
                None => {
                    let view = RequestView {
                        source: peer.ip(),
                        uri: "",
                        headers: &NoHeaders,
                    };
                    let s = be
                        .balancer
                        .pick(
                            &be.servers,
                            &view,
                            |i| be.servers[i].usable_for_new() && !tried.contains(&i),
                            |_| true,
                        )
                        .ok_or(Refused::NoServer)?;
                    (s, &self.stats.balanced)
                }
            };
            let addr = be.cfg.servers[srv].address;
            match tokio::time::timeout(be.cfg.timeouts.connect.0, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = s.set_nodelay(true);
                    break (s, srv);
                }
                _ => {
                    be.servers[srv]
                        .stats
                        .connect_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tried.push(srv);
                    if tried.len() > be.cfg.retries as usize {
                        return Err(Refused::NoServer);
                    }
                }
            }
        };
        be.servers[srv]
            .stats
            .requests
            .fetch_add(1, Ordering::Relaxed);
        if server.write_all(&buf).await.is_err() {
            return Err(Refused::NoServer);
        }
        // The ServerHello: relayed as it arrives, read for its session ID.
        buf.clear();
        let deadline = tokio::time::Instant::now() + self.hello_timeout;
        loop {
            let before = buf.len();
            match tokio::time::timeout_at(deadline, server.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err(Refused::NoServer),
            }
            if client.write_all(&buf[before..]).await.is_err() {
                return Err(Refused::NoServer);
            }
            match hello::server_hello(&buf) {
                Parse::Incomplete if buf.len() <= hello::MAX_HELLO => continue,
                Parse::Done(sh) => {
                    if sh.tls13 {
                        self.stats.tls13.fetch_add(1, Ordering::Relaxed);
                    } else if !sh.session_id.is_empty() {
                        let key = format!("{bi}/{}", hex(&sh.session_id));
                        self.sessions.learn(&key, srv, now);
                        // A resumed session echoes the client's ID (refreshed
                        // above); a new one gets a new ID.
                        if sh.session_id != ch.session_id {
                            self.stats.sessions_learnt.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                _ => {}
            }
            break;
        }
        if let (Some((_, t)), Some(k)) = (&self.affinity, &aff_key) {
            t.learn(k, srv, now);
        }
        Ok(server)
    }
}

/// How long open pass-through connections may go on after shutdown is asked.
const GRACE: Duration = Duration::from_secs(5);

/// Accept connections for a pass-through frontend until `stop`; then wait up
/// to a grace period for open connections and close the rest.
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    pt: Arc<Passthrough>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    log::warn!("accept on {}: {e}", pt.name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let pt = pt.clone();
        conns.spawn(async move { pt.serve(stream, peer).await });
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, async { while conns.join_next().await.is_some() {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aff(key: AffinityKey) -> Affinity {
        Affinity {
            key,
            ipv4_prefix: 20,
            ipv6_prefix: 48,
            all_clients: false,
            table: Default::default(),
        }
    }

    #[test]
    fn affinity_keys() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            affinity_key(&aff(AffinityKey::Source), ip("10.1.2.3")),
            "10.1.2.3/32"
        );
        assert_eq!(
            affinity_key(&aff(AffinityKey::Prefix), ip("10.1.18.3")),
            "10.1.16.0/20"
        );
        let n = aff(AffinityKey::Natural);
        assert_eq!(affinity_key(&n, ip("10.1.2.3")), "10.0.0.0/8");
        assert_eq!(affinity_key(&n, ip("172.16.5.4")), "172.16.0.0/16");
        assert_eq!(affinity_key(&n, ip("192.0.2.77")), "192.0.2.0/24");
        assert_eq!(affinity_key(&n, ip("224.1.1.1")), "224.1.1.1/32");
        // IPv4-mapped IPv6 counts as IPv4; IPv6 uses its prefix.
        assert_eq!(affinity_key(&n, ip("::ffff:10.9.9.9")), "10.0.0.0/8");
        assert_eq!(affinity_key(&n, ip("2001:db8:1:2::5")), "2001:db8:1::/48");
    }

    #[test]
    fn route_names() {
        assert!(RouteName::Exact("a.test".into()).matches("a.test"));
        let under = RouteName::Under("b.test".into());
        assert!(under.matches("x.b.test"));
        assert!(under.matches("y.x.b.test"));
        assert!(!under.matches("b.test"));
        assert!(!under.matches("xb.test"));
    }
}
