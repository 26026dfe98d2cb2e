//! IPv6 (RFC 8200) headers and the extension-header walk.

use core::net::Ipv6Addr;

use super::ip::IpProtocol;
use super::{Error, Result, rd_array, rd8, rd16, rd32, wr_bytes, wr8, wr16, wr32};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Most extension headers the walk accepts before giving up with
/// [`Error::BadExtHeader`] (a bound on per-packet work against crafted chains).
pub const MAX_EXT_HEADERS: usize = 8;

mod field {
    pub const VER_TC_FL: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// A checked view of an IPv6 packet.
///
/// `new_checked` guarantees: version 6 and the fixed header plus
/// `payload_len` bytes present. Jumbograms (payload length 0 with a
/// hop-by-hop jumbo option) are not supported: their payload reads as empty.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Fragment header information (RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Fragment {
    /// Fragment offset in bytes.
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
    /// Offset of the fragment header from the start of the IPv6 header.
    pub header_offset: usize,
}

/// Result of walking the extension-header chain: where the upper-layer
/// header starts and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Upper {
    /// Upper-layer protocol (the first next-header value that is not an
    /// extension header walked here: TCP, UDP, ICMPv6, ESP, no-next-header...).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    /// For a non-first fragment it is the offset of the fragment data, which
    /// is not a header.
    pub offset: usize,
    /// The fragment header, if one was present.
    pub fragment: Option<Ipv6Fragment>,
    /// Number of extension headers walked.
    pub ext_headers: u8,
}

impl Ipv6Upper {
    /// Whether this packet is a fragment other than the first one (no
    /// upper-layer header present).
    pub fn is_non_first_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| f.offset != 0)
    }
}

/// Walk the extension headers of an IPv6 packet.
///
/// `packet` starts with the IPv6 header (and should end at the end of its
/// payload), `first` is the next-header value of the fixed header and `start`
/// the offset where the chain begins (40). Walks hop-by-hop (0, only first,
/// RFC 8200 §4.1), routing (43), destination options (60), authentication
/// header (51, length in 4-octet units, RFC 4302 §2.2) and fragment (44)
/// headers. The walk stops at a non-first fragment: what follows is fragment
/// data.
pub fn walk_ext_headers(first: u8, packet: &[u8], start: usize) -> Result<Ipv6Upper> {
    let mut nh = first;
    let mut off = start;
    let mut count: usize = 0;
    let mut fragment = None;
    loop {
        match nh {
            0 | 43 | 60 | 51 => {
                if nh == 0 && count != 0 {
                    // RFC 8200 §4.1: hop-by-hop options only immediately after the IPv6 header.
                    return Err(Error::BadExtHeader);
                }
                if count >= MAX_EXT_HEADERS {
                    return Err(Error::BadExtHeader);
                }
                let hdr = packet
                    .get(off..off.saturating_add(2))
                    .ok_or(Error::TruncatedExtHeader)?;
                let len = if nh == 51 {
                    (usize::from(hdr[1]) + 2) * 4
                } else {
                    (usize::from(hdr[1]) + 1) * 8
                };
                let end = off.checked_add(len).ok_or(Error::TruncatedExtHeader)?;
                if end > packet.len() {
                    return Err(Error::TruncatedExtHeader);
                }
                nh = hdr[0];
                off = end;
                count += 1;
            }
            44 => {
                if count >= MAX_EXT_HEADERS || fragment.is_some() {
                    return Err(Error::BadExtHeader);
                }
                let end = off.checked_add(8).ok_or(Error::TruncatedExtHeader)?;
                if end > packet.len() {
                    return Err(Error::TruncatedExtHeader);
                }
                let off_m = rd16(packet, off + 2);
                let frag = Ipv6Fragment {
                    offset: off_m & 0xfff8,
                    more: off_m & 1 != 0,
                    ident: rd32(packet, off + 4),
                    header_offset: off,
                };
                fragment = Some(frag);
                nh = rd8(packet, off);
                off = end;
                count += 1;
                if frag.offset != 0 {
                    break;
                }
            }
            _ => break,
        }
    }
    Ok(Ipv6Upper {
        protocol: IpProtocol(nh),
        offset: off,
        fragment,
        ext_headers: count as u8,
    })
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wrap a buffer that starts with an IPv6 header, validating lengths.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::TruncatedIpv6);
        }
        if rd8(b, 0) >> 4 != 6 {
            return Err(Error::BadIpVersion);
        }
        if b.len() < HEADER_LEN + usize::from(rd16(b, field::LENGTH)) {
            return Err(Error::TruncatedIpv6);
        }
        Ok(Ipv6Packet { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (6).
    pub fn version(&self) -> u8 {
        rd8(self.buffer.as_ref(), 0) >> 4
    }

    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        (rd16(self.buffer.as_ref(), field::VER_TC_FL) >> 4) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        rd32(self.buffer.as_ref(), field::VER_TC_FL) & 0x000f_ffff
    }

    /// Payload length (extension headers included).
    pub fn payload_len(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Next header of the fixed header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(rd8(self.buffer.as_ref(), field::NXT_HDR))
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        rd8(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(rd_array::<16>(self.buffer.as_ref(), field::SRC))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(rd_array::<16>(self.buffer.as_ref(), field::DST))
    }

    /// The packet up to the end of its payload (header included).
    pub fn packet(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buffer.as_ref().get(..end).unwrap_or(&[])
    }

    /// The payload (extension headers included).
    pub fn payload(&self) -> &[u8] {
        self.packet().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Walk the extension headers; see [`walk_ext_headers`].
    pub fn upper(&self) -> Result<Ipv6Upper> {
        walk_ext_headers(self.next_header().0, self.packet(), HEADER_LEN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Set the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = rd16(self.buffer.as_ref(), 0);
        wr16(self.buffer.as_mut(), 0, (w & 0xf00f) | (u16::from(tc) << 4));
    }

    /// Set the flow label (low 20 bits used).
    pub fn set_flow_label(&mut self, fl: u32) {
        let w = rd32(self.buffer.as_ref(), 0);
        wr32(
            self.buffer.as_mut(),
            0,
            (w & 0xfff0_0000) | (fl & 0x000f_ffff),
        );
    }

    /// Set the next header.
    pub fn set_next_header(&mut self, p: IpProtocol) {
        wr8(self.buffer.as_mut(), field::NXT_HDR, p.0);
    }

    /// Set the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        wr8(self.buffer.as_mut(), field::HOP_LIMIT, v);
    }

    /// Set the source address. IPv6 has no header checksum: the caller
    /// adjusts the L4 checksum (see [`super::rewrite`]).
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        wr_bytes(self.buffer.as_mut(), field::SRC, &a.octets());
    }

    /// Set the destination address (L4 checksum not updated).
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        wr_bytes(self.buffer.as_mut(), field::DST, &a.octets());
    }

    /// Decrement the hop limit; `None` (packet untouched) if it is 0 or 1
    /// and the packet must not be forwarded (RFC 8200 §3).
    pub fn decrement_hop_limit(&mut self) -> Option<u8> {
        let h = self.hop_limit();
        if h <= 1 {
            return None;
        }
        self.set_hop_limit(h - 1);
        Some(h - 1)
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }
}

/// High-level description of the fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Parse a checked packet's fixed header.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Self> {
        Ok(Ipv6Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    /// Length of the header this repr emits.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the 40-byte header at the start of `buf`; returns 40.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall);
        }
        let plen = u16::try_from(self.payload_len).map_err(|_| Error::InvalidArgument)?;
        if self.flow_label > 0x000f_ffff {
            return Err(Error::InvalidArgument);
        }
        let w = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | self.flow_label;
        wr32(buf, field::VER_TC_FL, w);
        wr16(buf, field::LENGTH, plen);
        wr8(buf, field::NXT_HDR, self.next_header.0);
        wr8(buf, field::HOP_LIMIT, self.hop_limit);
        wr_bytes(buf, field::SRC, &self.src_addr.octets());
        wr_bytes(buf, field::DST, &self.dst_addr.octets());
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(nh: u8, plen: u16) -> Vec<u8> {
        let r = Ipv6Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8::2".parse().unwrap(),
            next_header: IpProtocol(nh),
            payload_len: usize::from(plen),
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        };
        let mut b = vec![0u8; 40];
        r.emit(&mut b).unwrap();
        b
    }

    #[test]
    fn walk_chain() {
        // HBH(8) -> DstOpts(16) -> Frag(first, M=1) -> AH(12) -> TCP
        let mut b = hdr(0, 8 + 16 + 8 + 12 + 20);
        b.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        b.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[51, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
        b.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
        b.extend_from_slice(&[0u8; 20]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let u = p.upper().unwrap();
        assert_eq!(u.protocol, IpProtocol::TCP);
        assert_eq!(u.offset, 40 + 8 + 16 + 8 + 12);
        assert_eq!(u.ext_headers, 4);
        let f = u.fragment.unwrap();
        assert_eq!((f.offset, f.more, f.ident), (0, true, 0xdeadbeef));
        assert!(!u.is_non_first_fragment());
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
    }

    #[test]
    fn walk_errors() {
        // Hop-by-hop not first.
        let mut b = hdr(60, 16);
        b.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]);
        b.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..])
                .unwrap()
                .upper()
                .unwrap_err(),
            Error::BadExtHeader
        );
        // Ext header longer than the payload.
        let mut b = hdr(60, 8);
        b.extend_from_slice(&[6, 1, 1, 4, 0, 0, 0, 0]);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..])
                .unwrap()
                .upper()
                .unwrap_err(),
            Error::TruncatedExtHeader
        );
        // Non-first fragment stops the walk.
        let mut b = hdr(44, 16);
        b.extend_from_slice(&[6, 0, 0x05, 0x00, 0, 0, 0, 7]);
        b.extend_from_slice(&[0xff; 8]);
        let u = Ipv6Packet::new_checked(&b[..]).unwrap().upper().unwrap();
        assert!(u.is_non_first_fragment());
        assert_eq!(u.fragment.unwrap().offset, 0x500);
        assert_eq!(u.offset, 48);
        // Too many headers.
        let mut b = hdr(60, 8 * 10);
        for _ in 0..10 {
            b.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            Ipv6Packet::new_checked(&b[..])
                .unwrap()
                .upper()
                .unwrap_err(),
            Error::BadExtHeader
        );
        assert_eq!(
            Ipv6Packet::new_checked(&b[..39]).unwrap_err(),
            Error::TruncatedIpv6
        );
        assert_eq!(
            Ipv6Packet::new_checked(&b[..100]).unwrap_err(),
            Error::TruncatedIpv6
        );
    }
}
