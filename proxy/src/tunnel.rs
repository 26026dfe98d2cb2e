//! WebSocket pass-through (HTTP/1.1 `Upgrade`, RFC 6455 section 4): the
//! upgrade request goes to the server on a connection of its own; the server's
//! answer goes back to the client, and after a `101 Switching Protocols` the
//! two connections are joined and bytes copied both ways until either side
//! closes. The proxy does not look into WebSocket frames.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::h1::{self, BodyScan, Framing, ResponseHead};
use crate::upstream::ServerStream;

/// Whether a request's `Upgrade` value asks for WebSocket.
pub(crate) fn is_websocket(upgrade: &[u8]) -> bool {
    h1::tokens(upgrade).any(|t| t.eq_ignore_ascii_case(b"websocket"))
}

/// How an upgrade ended.
#[derive(Debug)]
pub(crate) struct Tunnelled {
    /// The server's status (101 when the tunnel was established).
    pub(crate) status: u16,
    /// Bytes copied client to server and server to client after the upgrade.
    pub(crate) bytes: (u64, u64),
    /// A refusal that leaves the client connection usable (its body had a
    /// length and the server did not ask to close).
    pub(crate) keep_alive: bool,
}

/// Send `head` (the upgrade request, with its `Connection: upgrade` and
/// `Upgrade` fields) on `up`, pass the server's answer to `client`, and on
/// `101` send `early` (bytes the client sent after its request) and copy both
/// ways until either side closes. A refusal (any other status) is passed on
/// with its body, and the client's next request is served as usual when
/// [`Tunnelled::keep_alive`].
pub(crate) async fn websocket<C>(
    client: &mut C,
    head: &[u8],
    early: &[u8],
    mut up: ServerStream,
    server_timeout: Duration,
) -> io::Result<Tunnelled>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    up.write_all(head).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut rs = ResponseHead::default();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(server_timeout, up.read(&mut chunk))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match h1::parse_response(&buf, &mut rs) {
            Ok(true) if (100..200).contains(&rs.status) && rs.status != 101 => {
                // An interim answer (e.g. 100): passed on, the final one follows.
                client.write_all(&buf[..rs.len]).await?;
                buf.drain(..rs.len);
            }
            Ok(true) => break,
            Ok(false) if buf.len() <= h1::MAX_HEAD => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad response head",
                ));
            }
        }
    }
    if rs.status != 101 {
        // A refusal: passed on to the end of its body (as framed by the server).
        let framing = h1::response_framing(&buf, &rs, false)
            .map(|(f, _)| f)
            .unwrap_or(Framing::UntilClose);
        let close = rs.fields.iter().any(|f| {
            f.kind == h1::Kind::Connection
                && h1::tokens(f.value.of(&buf)).any(|t| t.eq_ignore_ascii_case(b"close"))
        });
        let mut scan = BodyScan::new(framing);
        let mut done = rs.len;
        loop {
            let used = scan
                .scan(&buf[done..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.0))?;
            client.write_all(&buf[..done + used]).await?;
            if scan.is_done() {
                break;
            }
            buf.clear();
            done = 0;
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(server_timeout, up.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        return Ok(Tunnelled {
            status: rs.status,
            bytes: (0, 0),
            keep_alive: scan.is_done() && !scan.until_close() && !close,
        });
    }
    client.write_all(&buf).await?;
    up.write_all(early).await?;
    let bytes = tokio::io::copy_bidirectional(client, &mut up).await?;
    Ok(Tunnelled {
        status: 101,
        bytes,
        keep_alive: false,
    })
}
