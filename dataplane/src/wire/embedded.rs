//! The datagram quoted inside an ICMP or ICMPv6 error (RFC 792, RFC 4443):
//! its flow, parsed from possibly truncated data.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ip::IpProtocol;
use super::{Error, Result, ipv6, rd_array, rd8, rd16};

/// The flow of the original datagram quoted in an ICMP or ICMPv6 error
/// (RFC 792: "Internet Header + 64 bits of Original Data Datagram"; RFC 4443
/// §3: "As much of invoking packet as possible").
///
/// Offsets are relative to the start of the quoted datagram, which the
/// pipeline needs to rewrite the embedded addresses and ports of a NAT'd
/// flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EmbeddedFlow {
    /// Source address of the original datagram.
    pub src_addr: IpAddr,
    /// Destination address of the original datagram.
    pub dst_addr: IpAddr,
    /// Upper-layer protocol of the original datagram.
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header (IPv4 header length, or IPv6 header
    /// plus extension headers).
    pub l4_offset: usize,
    /// Source port (TCP/UDP/SCTP) or ICMP echo identifier, if quoted.
    pub src_port: Option<u16>,
    /// Destination port (TCP/UDP/SCTP), or the ICMP echo identifier again, if quoted.
    pub dst_port: Option<u16>,
    /// Whether the original datagram was a non-first fragment (no L4 header).
    pub non_first_fragment: bool,
}

impl EmbeddedFlow {
    /// Parse the IPv4 datagram quoted in an ICMPv4 error. The quoted datagram
    /// is usually truncated, so its total length is not checked against the
    /// data; the header itself must be complete and well formed.
    pub fn parse_v4(data: &[u8]) -> Result<Self> {
        if data.len() < 20 {
            return Err(Error::BadEmbedded);
        }
        let vihl = rd8(data, 0);
        if vihl >> 4 != 4 {
            return Err(Error::BadEmbedded);
        }
        let ihl = usize::from(vihl & 0x0f) * 4;
        if ihl < 20 || data.len() < ihl {
            return Err(Error::BadEmbedded);
        }
        let protocol = IpProtocol(rd8(data, 9));
        let frag_off = rd16(data, 6) & 0x1fff;
        let src = Ipv4Addr::from(rd_array::<4>(data, 12));
        let dst = Ipv4Addr::from(rd_array::<4>(data, 16));
        let non_first = frag_off != 0;
        let (sp, dp) = if non_first {
            (None, None)
        } else {
            quoted_ports(protocol, data, ihl, false)
        };
        Ok(EmbeddedFlow {
            src_addr: IpAddr::V4(src),
            dst_addr: IpAddr::V4(dst),
            protocol,
            l4_offset: ihl,
            src_port: sp,
            dst_port: dp,
            non_first_fragment: non_first,
        })
    }

    /// Parse the IPv6 packet quoted in an ICMPv6 error, walking its extension
    /// headers as far as the quote goes.
    pub fn parse_v6(data: &[u8]) -> Result<Self> {
        if data.len() < ipv6::HEADER_LEN || rd8(data, 0) >> 4 != 6 {
            return Err(Error::BadEmbedded);
        }
        let src = Ipv6Addr::from(rd_array::<16>(data, 8));
        let dst = Ipv6Addr::from(rd_array::<16>(data, 24));
        let upper = ipv6::walk_ext_headers(rd8(data, 6), data, ipv6::HEADER_LEN)
            .map_err(|_| Error::BadEmbedded)?;
        let non_first = upper.fragment.is_some_and(|f| f.offset != 0);
        let (sp, dp) = if non_first {
            (None, None)
        } else {
            quoted_ports(upper.protocol, data, upper.offset, true)
        };
        Ok(EmbeddedFlow {
            src_addr: IpAddr::V6(src),
            dst_addr: IpAddr::V6(dst),
            protocol: upper.protocol,
            l4_offset: upper.offset,
            src_port: sp,
            dst_port: dp,
            non_first_fragment: non_first,
        })
    }
}

fn quoted_ports(p: IpProtocol, data: &[u8], off: usize, v6: bool) -> (Option<u16>, Option<u16>) {
    let have = |n: usize| off.checked_add(n).is_some_and(|end| end <= data.len());
    if p.has_ports() && have(4) {
        return (Some(rd16(data, off)), Some(rd16(data, off + 2)));
    }
    let is_echo = if v6 {
        p == IpProtocol::ICMPV6 && matches!(rd8(data, off), 128 | 129)
    } else {
        p == IpProtocol::ICMP && matches!(rd8(data, off), 0 | 8)
    };
    if is_echo && have(6) {
        let id = rd16(data, off + 4);
        return (Some(id), Some(id));
    }
    (None, None)
}
