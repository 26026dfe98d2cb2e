//! `tackctl`'s side of the management socket: one HTTP/1.1 request over
//! the Unix socket, answered with its status and body.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// How long `tackctl` waits for an answer.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (no `tack` running there, or no permission).
    #[error("cannot reach tack at {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime could not be made.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The exchange failed.
    #[error("management socket: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Request(#[from] axum::http::Error),
    /// No answer in time.
    #[error("no answer within {TIMEOUT:?}")]
    Timeout,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: Bytes,
}

/// Sends `method uri` (path and query) with an optional JSON `body` to the
/// appliance listening on `socket`.
pub fn call(
    socket: &Path,
    method: Method,
    uri: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer, ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(TIMEOUT, exchange(socket, method, uri, body))
            .await
            .map_err(|_| ClientError::Timeout)?
    })
}

async fn exchange(
    socket: &Path,
    method: Method,
    uri: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer, ClientError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "tack");
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok(Answer { status, body })
}
