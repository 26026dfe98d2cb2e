//! Keep-alive connection pools to servers (one per server): hyper HTTP/1.1 client
//! connections for the hyper path, plain TCP streams for the fast path
//! (module `fast`), and the response body that returns its connection to the
//! pool and its QoS slot when it ends.
//!
//! A connection goes back to its pool only once the response body has been read
//! to the end, so a pooled connection is always idle. Connections have no task
//! of their own: the request handler and then the response body drive them, so
//! an exchange costs no task switches. A request that a reused connection could
//! not even start sending (the server closed it while idle) is sent again on a
//! fresh connection. To add TLS to servers, `connect` wraps the `TcpStream`
//! before the handshake.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::proxy::{BoxError, ProxyBody};
use crate::qos::Permit;

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

type Conn = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, ProxyBody>;

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

/// The idle connections of one server.
#[derive(Debug)]
pub struct ServerPool {
    addr: SocketAddr,
    idle: Mutex<Vec<Link>>,
    raw: Mutex<Vec<(TcpStream, Instant)>>,
}

/// Whether an idle stream is still open with nothing unread: no readiness event
/// since its last read costs nothing to check; otherwise one non-blocking read
/// tells end of stream or unsolicited bytes (either: drop it) from a stale event.
fn idle_stream_ok(s: &TcpStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match s.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut b = [0u8; 1];
            matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

impl ServerPool {
    fn lock_raw(&self) -> std::sync::MutexGuard<'_, Vec<(TcpStream, Instant)>> {
        self.raw.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle plain connection (fast path), most recently used first.
    fn take_raw(&self, max_idle_time: Duration) -> Option<TcpStream> {
        let mut idle = self.lock_raw();
        while let Some((s, since)) = idle.pop() {
            if since.elapsed() < max_idle_time && idle_stream_ok(&s) {
                return Some(s);
            }
        }
        None
    }

    /// Give back a plain connection whose last response was read to its end.
    pub(crate) fn put_raw(&self, s: TcpStream) {
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
        if !l.reusable() {
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
        self.lock_raw().retain(|(s, since)| {
            // A read, not just the readiness flag: nobody polls an idle stream, so
            // the flag may not have been updated since it went idle.
            let mut b = [0u8; 1];
            since.elapsed() < max_idle_time
                && matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
    }

    /// Idle connections held now (hyper and plain).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len() + self.lock_raw().len()
    }
}

/// A connection lent out for one exchange; give it back with [`PooledConn::release`].
#[derive(Debug)]
pub struct PooledConn {
    pool: Arc<ServerPool>,
    link: Link,
}

impl PooledConn {
    /// Return the (idle) connection to its pool.
    pub fn release(self) {
        self.pool.put(self.link);
    }
}

/// The pools of a backend's servers.
#[derive(Debug)]
pub struct Upstream {
    pools: Vec<Arc<ServerPool>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl Upstream {
    /// Pools for servers at these addresses.
    pub fn new(
        addrs: &[SocketAddr],
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Upstream {
        Upstream {
            pools: addrs
                .iter()
                .map(|&addr| {
                    Arc::new(ServerPool {
                        addr,
                        idle: Mutex::new(Vec::new()),
                        raw: Mutex::new(Vec::new()),
                    })
                })
                .collect(),
            connect_timeout,
            idle_timeout,
        }
    }

    /// Close idle connections that servers closed or that idled too long; the
    /// proxy calls this periodically.
    pub fn reap(&self) {
        for p in &self.pools {
            p.reap(self.idle_timeout);
        }
    }

    /// How often [`Upstream::reap`] should run.
    pub fn reap_interval(&self) -> Duration {
        (self.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The pool of server `i`.
    pub fn pool(&self, i: usize) -> &Arc<ServerPool> {
        &self.pools[i]
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

    /// An idle plain connection to server `i` (fast path), if one is pooled.
    pub(crate) fn take_raw(&self, i: usize) -> Option<TcpStream> {
        self.pools[i].take_raw(self.idle_timeout)
    }

    /// A new plain connection to server `i` (fast path).
    pub(crate) async fn connect_raw(&self, i: usize) -> Result<TcpStream, UpstreamError> {
        self.connect_tcp(self.pools[i].addr).await
    }

    async fn connect(&self, pool: &Arc<ServerPool>) -> Result<Link, UpstreamError> {
        let stream = self.connect_tcp(pool.addr).await?;
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
    /// connection or a new one.
    pub async fn request(
        &self,
        i: usize,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, PooledConn), UpstreamError> {
        let pool = &self.pools[i];
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
                            link,
                        },
                    ));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(UpstreamError::Reused(e.into_error())),
                },
            }
        }
        let mut link = self.connect(pool).await?;
        let fut = link.sender.send_request(req);
        let resp = link.exchange(fut).await.map_err(UpstreamError::Http)?;
        Ok((
            resp,
            PooledConn {
                pool: pool.clone(),
                link,
            },
        ))
    }
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
        if let Some(c) = &mut this.conn {
            c.link.drive(cx);
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
