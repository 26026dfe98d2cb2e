//! The admin API's client (`tack-proxy ctl`): one request, the answer's status
//! and body.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Why a call failed before an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The API could not be reached.
    #[error("cannot reach the admin API at {addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("admin API: {0}")]
    Http(#[from] hyper::Error),
    /// No answer in time.
    #[error("admin API: no answer within 30 s")]
    Timeout,
    /// The request could not be built (a bad path).
    #[error("admin API: {0}")]
    Request(#[from] http::Error),
}

/// Send `method path` with a JSON `body` (and the bearer `token`) to the API
/// at `addr`: the status and the body of the answer.
pub async fn call(
    addr: SocketAddr,
    token: Option<&str>,
    method: http::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, String), CallError> {
    let run = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| CallError::Connect { addr, source })?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, addr.to_string());
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let resp = send.send_request(req.body(Full::new(body))?).await?;
        let status = resp.status().as_u16();
        let text = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&text).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or(Err(CallError::Timeout))
}
