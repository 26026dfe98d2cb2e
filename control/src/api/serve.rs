//! The management thread: a single-threaded tokio runtime serving the API
//! on the Unix socket and the optional TCP listener, bounded in clients
//! ([`MAX_CLIENTS`] per listener; more are closed at once), in time (a
//! request head within [`HEAD_TIMEOUT`], a whole connection within
//! [`CONNECTION_TIMEOUT`]) and in bytes ([`super::http::MAX_BODY`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Receiver};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, oneshot};

use super::counters::ApiCounters;
use super::http::{self, Token};
use super::op::{Origin, Request};
use crate::mgmt::MgmtServer;
use crate::profile::HttpSection;

/// Connections served at once per listener; more are closed on accept.
pub const MAX_CLIENTS: usize = 64;
/// Time a client has to send a request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may last, whatever it does.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Operations waiting for the control thread; more are answered 503.
pub const QUEUE: usize = 64;

/// Why the management API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TCP address is not loopback and no token file is given.
    #[error(
        "management.http.listen {0} is not a loopback address: give management.http.token_file"
    )]
    NoToken(SocketAddr),
    /// The token file cannot be read or holds no token.
    #[error("management.http.token_file {}: {why}", path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Binding the TCP address failed.
    #[error("management.http.listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime or the thread could not be made.
    #[error("management thread: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the bearer token: the file's first line, trimmed, not empty.
fn read_token(path: &Path) -> Result<Token, ServeError> {
    let err = |why: String| ServeError::Token {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > 4096 {
        return Err(err("longer than 4096 bytes".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(err("empty".into()));
    }
    Ok(Token::new(token))
}

/// The running management thread. Dropping it stops the thread (open
/// connections are cut) and removes the socket.
pub struct ApiServer {
    requests: Receiver<Request>,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<()>>,
    /// Removes the socket file when dropped (after the thread ended).
    _socket: MgmtServer,
    http: Option<SocketAddr>,
}

impl ApiServer {
    /// Starts serving `socket` and, if given, `http` on a management thread
    /// (`tack-mgmt`, with the calling thread's CPU affinity). The TCP
    /// address is bound here, so a refusal is reported before the start.
    pub fn start(
        socket: MgmtServer,
        http_cfg: Option<&HttpSection>,
    ) -> Result<ApiServer, ServeError> {
        let unix = socket.listener().try_clone()?;
        unix.set_nonblocking(true)?;
        let tcp = match http_cfg {
            None => None,
            Some(h) => {
                let token = match &h.token_file {
                    Some(p) => Some(read_token(p)?),
                    None if h.needs_token() => return Err(ServeError::NoToken(h.listen)),
                    None => None,
                };
                let l =
                    std::net::TcpListener::bind(h.listen).map_err(|source| ServeError::Bind {
                        addr: h.listen,
                        source,
                    })?;
                l.set_nonblocking(true)?;
                Some((l, token))
            }
        };
        let http_addr = tcp.as_ref().and_then(|(l, _)| l.local_addr().ok());
        let (tx, rx) = channel::bounded(QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let join = std::thread::Builder::new()
            .name("tack-mgmt".into())
            .spawn(move || {
                rt.block_on(async move {
                    let unix = match tokio::net::UnixListener::from_std(unix) {
                        Ok(l) => l,
                        Err(e) => {
                            log::error!("management socket: {e}");
                            return;
                        }
                    };
                    let counters = Arc::new(ApiCounters::default());
                    let app = http::router(tx.clone(), Origin::Socket, None, counters.clone());
                    tokio::spawn(accept_loop(UnixAccept(unix), app, counters.clone()));
                    if let Some((l, token)) = tcp {
                        match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => {
                                let app = http::router(tx, Origin::Http, token, counters.clone());
                                tokio::spawn(accept_loop(TcpAccept(l), app, counters));
                            }
                            Err(e) => log::error!("management.http: {e}"),
                        }
                    }
                    let _ = stop_rx.await;
                });
                // Dropping the runtime cancels every connection task.
                drop(rt);
            })?;
        Ok(ApiServer {
            requests: rx,
            stop: Some(stop_tx),
            join: Some(join),
            _socket: socket,
            http: http_addr,
        })
    }

    /// The TCP address the API listens on, if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The operations waiting for the control thread now (never blocks).
    pub fn pending(&self) -> impl Iterator<Item = Request> + '_ {
        self.requests.try_iter()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(j) = self.join.take()
            && j.join().is_err()
        {
            log::error!("the management thread panicked");
        }
    }
}

/// A listener the accept loop takes connections from.
trait Accept {
    /// The connection type.
    type Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection.
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Conn>> + Send;
}

struct UnixAccept(tokio::net::UnixListener);
struct TcpAccept(tokio::net::TcpListener);

impl Accept for UnixAccept {
    type Conn = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<Self::Conn> {
        self.0.accept().await.map(|(s, _)| s)
    }
}

impl Accept for TcpAccept {
    type Conn = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<Self::Conn> {
        self.0.accept().await.map(|(s, _)| s)
    }
}

/// Accepts connections and serves each on a task of its own, at most
/// [`MAX_CLIENTS`] at once.
async fn accept_loop<L: Accept>(listener: L, app: axum::Router, counters: Arc<ApiCounters>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let conn = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was taken.
                log::warn!("management accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Counted, not logged: a flood of connections must not flood the log.
            ApiCounters::add(&counters.connections_refused);
            drop(conn);
            continue;
        };
        let counters = counters.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let serving = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(conn), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, serving).await {
                // Too slow with its request head (`HEAD_TIMEOUT`), or too long.
                Ok(Err(e)) if e.is_timeout() => {
                    ApiCounters::add(&counters.connections_timed_out);
                }
                Err(_) => ApiCounters::add(&counters.connections_timed_out),
                Ok(_) => {}
            }
            drop(slot);
        });
    }
}
