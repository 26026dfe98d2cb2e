//! The PROXY protocol (HAProxy's, versions 1 and 2) with the `ppp` crate:
//! headers read at the start of a frontend's connections (`accept_proxy`: the
//! client address is the one the header carries, from Tack's L4 tier or another
//! proxy) and written at the start of connections to servers (`send_proxy`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::ProxyProtocol;

/// The longest header: a v2 header with its payload (16 + 65535 bytes) is
/// allowed by the protocol, but addresses and a few TLVs fit in this.
const MAX_HEADER: usize = 1024;

/// Why a connection's PROXY protocol header was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Not a PROXY protocol header (or a malformed one).
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
    /// The header did not arrive in time.
    #[error("no complete PROXY protocol header in time")]
    Timeout,
    /// The connection failed or closed first.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// An IPv4-mapped IPv6 address as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// Both addresses in one family (IPv4 when both can be, else IPv6).
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (s, d) = (canonical(src), canonical(dst));
    if s.is_ipv4() == d.is_ipv4() {
        return (s, d);
    }
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    (v6(s), v6(d))
}

/// The header announcing a connection from `src` to `dst`.
pub fn encode(version: ProxyProtocol, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    match version {
        ProxyProtocol::V1 => v1::Addresses::from((src, dst)).to_string().into_bytes(),
        ProxyProtocol::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        .unwrap_or_default(),
    }
}

/// The addresses of a complete header: `Ok(None)` for a header that carries
/// none (`UNKNOWN`, v2 `LOCAL`: the connection's own addresses stand), and the
/// header's length.
type Parsed = (Option<(SocketAddr, SocketAddr)>, usize);

fn parse(buf: &[u8]) -> Result<Option<Parsed>, HeaderError> {
    let r = HeaderResult::parse(buf);
    if r.is_incomplete() {
        return Ok(None);
    }
    match r {
        HeaderResult::V1(Ok(h)) => {
            let addrs = match h.addresses {
                v1::Addresses::Tcp4(a) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                v1::Addresses::Tcp6(a) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                v1::Addresses::Unknown => None,
            };
            Ok(Some((addrs, h.header.len())))
        }
        HeaderResult::V2(Ok(h)) => {
            let addrs = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                _ => None,
            };
            Ok(Some((addrs, h.len())))
        }
        HeaderResult::V1(Err(e)) => Err(HeaderError::Invalid(format!("{e:?}"))),
        HeaderResult::V2(Err(e)) => Err(HeaderError::Invalid(format!("{e:?}"))),
    }
}

/// Read the PROXY protocol header at the start of `tcp` (nothing after it is
/// consumed, so TLS or HTTP follows on the same stream) within `timeout`: the
/// client's and the original destination's addresses, or `None` when the header
/// carries none.
pub async fn accept(
    tcp: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<(SocketAddr, SocketAddr)>, HeaderError> {
    let read = async {
        let mut buf = [0u8; MAX_HEADER];
        let mut seen = 0;
        loop {
            let n = tcp.peek(&mut buf).await?;
            if n == 0 {
                return Err(HeaderError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some((addrs, len)) = parse(&buf[..n])? {
                let mut header = vec![0u8; len];
                tcp.read_exact(&mut header).await?;
                return Ok(addrs);
            }
            if n == MAX_HEADER {
                return Err(HeaderError::Invalid("longer than 1024 bytes".into()));
            }
            if n == seen {
                // Part of a header: the rest is on its way (peek would return
                // the same bytes at once).
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen = n;
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(HeaderError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
        let h1 = encode(ProxyProtocol::V1, src, dst);
        assert_eq!(h1, b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n");
        let mut with_rest = h1.clone();
        with_rest.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&with_rest).unwrap(),
            Some((Some((src, dst)), h1.len()))
        );
        let h2 = encode(ProxyProtocol::V2, src, dst);
        assert_eq!(parse(&h2).unwrap(), Some((Some((src, dst)), 28)));
        // Mapped addresses are written as IPv4; mixed families as IPv6.
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:40000".parse().unwrap();
        assert_eq!(encode(ProxyProtocol::V1, mapped, dst), h1);
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        assert!(
            String::from_utf8(encode(ProxyProtocol::V1, src, v6))
                .unwrap()
                .starts_with("PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 ")
        );
        // Incomplete, unknown and invalid headers.
        assert_eq!(parse(&h1[..10]).unwrap(), None);
        assert_eq!(parse(&h2[..20]).unwrap(), None);
        assert_eq!(parse(b"PROXY UNKNOWN\r\nGET").unwrap(), Some((None, 15)));
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_err());
    }
}
