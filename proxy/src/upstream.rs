//! Keep-alive connection pools to servers (one per server) on hyper's HTTP/1.1
//! client connections, and the response body that returns its connection to the
//! pool and its QoS slot when it ends.
//!
//! A connection goes back to its pool only once the response body has been read
//! to the end, so a pooled connection is always idle and ready. A request that a
//! reused connection could not even start sending (the server closed it while
//! idle) is sent again on a fresh connection. To add TLS to servers, `connect`
//! wraps the `TcpStream` before the handshake.

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
        self.is_connect() || matches!(self, UpstreamError::Reused(_))
    }
}

/// The idle connections of one server.
#[derive(Debug)]
pub struct ServerPool {
    addr: SocketAddr,
    idle: Mutex<Vec<(SendRequest<ProxyBody>, Instant)>>,
}

impl ServerPool {
    fn take(&self, max_idle_time: Duration) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((s, since)) = idle.pop() {
            if !s.is_closed() && since.elapsed() < max_idle_time {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, s: SendRequest<ProxyBody>) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((s, Instant::now()));
        }
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A connection lent out for one exchange; give it back with [`PooledConn::release`].
#[derive(Debug)]
pub struct PooledConn {
    pool: Arc<ServerPool>,
    sender: SendRequest<ProxyBody>,
}

impl PooledConn {
    /// Return the (idle) connection to its pool.
    pub fn release(self) {
        self.pool.put(self.sender);
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
                    })
                })
                .collect(),
            connect_timeout,
            idle_timeout,
        }
    }

    /// The pool of server `i`.
    pub fn pool(&self, i: usize) -> &Arc<ServerPool> {
        &self.pools[i]
    }

    async fn connect(
        &self,
        pool: &Arc<ServerPool>,
    ) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(pool.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
                Err(_) => return Err(UpstreamError::ConnectTimeout),
            };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("upstream connection: {e}");
            }
        });
        Ok(sender)
    }

    /// Send `req` (origin-form URI, `Host` set) to server `i` on an idle pooled
    /// connection or a new one.
    pub async fn request(
        &self,
        i: usize,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, PooledConn), UpstreamError> {
        let pool = &self.pools[i];
        while let Some(mut s) = pool.take(self.idle_timeout) {
            if s.ready().await.is_err() {
                continue;
            }
            match s.try_send_request(req).await {
                Ok(resp) => {
                    return Ok((
                        resp,
                        PooledConn {
                            pool: pool.clone(),
                            sender: s,
                        },
                    ));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(UpstreamError::Reused(e.into_error())),
                },
            }
        }
        let mut s = self.connect(pool).await?;
        let resp = s.send_request(req).await.map_err(UpstreamError::Http)?;
        Ok((
            resp,
            PooledConn {
                pool: pool.clone(),
                sender: s,
            },
        ))
    }
}

/// A server's response body on its way to the client. When it ends, its connection
/// goes back to the pool; when it is dropped, its QoS slot is released.
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
