//! IP-in-IP encapsulation headers (RFC 2003 IPv4-in-IPv4, RFC 4213 §3.5
//! IPv6-in-IPv4, RFC 2473 in IPv6), as Tack's tunnel forwarding mode uses:
//! the original packet is kept intact and an outer header addressed to the
//! real server is prepended.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::ip::IpProtocol;
use super::ipv4::Ipv4Repr;
use super::ipv6::Ipv6Repr;
use super::{Error, Result, rd8};

/// Extra bytes an IPv4 outer header adds (the MSS clamp must allow for it).
pub const IPV4_OVERHEAD: usize = 20;
/// Extra bytes an IPv6 outer header adds.
pub const IPV6_OVERHEAD: usize = 40;

/// Protocol number for the inner packet, from its version nibble.
fn inner_protocol(inner: &[u8]) -> Result<IpProtocol> {
    match inner.first().map(|b| b >> 4) {
        Some(4) => Ok(IpProtocol::IPIP),
        Some(6) => Ok(IpProtocol::IPV6),
        _ => Err(Error::BadIpVersion),
    }
}

/// Write an IPv4 outer header for `inner` (a whole IPv4 or IPv6 packet) into
/// `out` (20 bytes, usually the mbuf headroom just before `inner`).
///
/// RFC 2003 §3.1: the outer TOS is copied from the inner header, and "if the
/// Don't Fragment bit is set in the inner header, it MUST be set in the
/// outer header"; an inner IPv6 packet cannot be fragmented on the way, so DF
/// is set for it (RFC 4213 §3.2 static MTU). Returns 20.
pub fn emit_ipv4_outer(
    out: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    inner: &[u8],
    ttl: u8,
    ident: u16,
) -> Result<usize> {
    let protocol = inner_protocol(inner)?;
    let (tos, df) = if protocol == IpProtocol::IPIP {
        (rd8(inner, 1), inner.len() > 6 && rd8(inner, 6) & 0x40 != 0)
    } else {
        let tc = ((u16::from(rd8(inner, 0)) << 4) | (u16::from(rd8(inner, 1)) >> 4)) as u8;
        (tc, true)
    };
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: inner.len(),
        ttl,
        tos,
        ident,
        dont_frag: df,
    }
    .emit(out)
}

/// Write an IPv6 outer header for `inner` (a whole IPv4 or IPv6 packet) into
/// `out` (40 bytes). The traffic class is copied from the inner header
/// (RFC 2473 §5.1 leaves it to configuration; copying keeps DSCP). Returns 40.
pub fn emit_ipv6_outer(
    out: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    inner: &[u8],
    hop_limit: u8,
    flow_label: u32,
) -> Result<usize> {
    let protocol = inner_protocol(inner)?;
    let tc = if protocol == IpProtocol::IPIP {
        rd8(inner, 1)
    } else {
        ((u16::from(rd8(inner, 0)) << 4) | (u16::from(rd8(inner, 1)) >> 4)) as u8
    };
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len: inner.len(),
        hop_limit,
        traffic_class: tc,
        flow_label: flow_label & 0x000f_ffff,
    }
    .emit(out)
}

/// Write an IPv4 outer header carrying UDP (`udp_len` bytes: a UDP
/// encapsulation such as [`super::gue`] and `inner`) into `out` (20
/// bytes), with `inner`'s TOS (or traffic class) and DF set: an
/// encapsulation between nodes is never fragmented on the way. Only an
/// IPv4 outer header: an IPv6 one would need the UDP checksum (RFC 6935)
/// over the whole packet. Returns 20.
pub fn emit_udp_outer(
    out: &mut [u8],
    src: core::net::IpAddr,
    dst: core::net::IpAddr,
    udp_len: usize,
    inner: &[u8],
    ttl: u8,
    ident: u16,
) -> Result<usize> {
    let (core::net::IpAddr::V4(src), core::net::IpAddr::V4(dst)) = (src, dst) else {
        return Err(Error::InvalidArgument);
    };
    let tos = match inner_protocol(inner)? {
        IpProtocol::IPIP => rd8(inner, 1),
        _ => ((u16::from(rd8(inner, 0)) << 4) | (u16::from(rd8(inner, 1)) >> 4)) as u8,
    };
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::UDP,
        payload_len: udp_len,
        ttl,
        tos,
        ident,
        dont_frag: true,
    }
    .emit(out)
}
