//! One-pass frame classification for the forwarding pipeline.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ethernet::{EtherType, VlanTag};
use super::ip::IpProtocol;
use super::tcp::TcpFlags;
use super::{Error, Result, checksum, ipv4, ipv6, rd_array, rd8, rd16};

/// What the frame carries at layer 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L3Kind {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// ARP (Ethernet/IPv4).
    Arp,
}

/// Fragment status of an IP packet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FragStatus {
    /// Not a fragment (an IPv6 atomic fragment, offset 0 without M, counts
    /// as not fragmented: RFC 6946).
    #[default]
    NotFragment,
    /// First fragment: the L4 header is present, but the L4 payload (and
    /// the UDP length) extends into later fragments.
    First,
    /// A later fragment: no L4 header; ports are zero and `l4_offset` points
    /// at fragment data.
    NonFirst,
}

/// Options for [`classify_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassifyOptions {
    /// Verify the IPv4 header checksum ([`Error::BadIpv4Checksum`]). Turn off
    /// when the NIC already verified it (DPDK `RTE_MBUF_F_RX_IP_CKSUM_GOOD`).
    pub verify_ipv4_checksum: bool,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            verify_ipv4_checksum: true,
        }
    }
}

/// Everything the pipeline needs to know about a frame, from one pass.
///
/// Offsets are from the start of the frame. L4 checksums are not verified
/// (the pipeline forwards them, end hosts verify; rewrites keep them exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classified {
    /// The VLAN tag, if the frame had one.
    pub vlan: Option<VlanTag>,
    /// Layer-3 kind.
    pub l3: L3Kind,
    /// Offset of the IP header or ARP packet.
    pub l3_offset: usize,
    /// Offset of the L4 header (after IPv4 options / IPv6 extension
    /// headers), or of the fragment data of a non-first fragment; for ARP,
    /// the end of the ARP packet.
    pub l4_offset: usize,
    /// End of the IP packet (`l3_offset` + total length); frame bytes past
    /// it are Ethernet padding. For ARP, the end of the ARP packet.
    pub l3_end: usize,
    /// Upper-layer protocol (0 for ARP).
    pub protocol: IpProtocol,
    /// Source address (ARP: sender protocol address).
    pub src_addr: IpAddr,
    /// Destination address (ARP: target protocol address).
    pub dst_addr: IpAddr,
    /// TCP/UDP source port, ICMP/ICMPv6 echo identifier, otherwise 0.
    pub src_port: u16,
    /// TCP/UDP destination port, ICMP/ICMPv6 echo identifier, otherwise 0.
    pub dst_port: u16,
    /// TCP flags (empty for other protocols).
    pub tcp_flags: TcpFlags,
    /// ICMP/ICMPv6 type (ARP: low byte of the operation), otherwise 0.
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code, otherwise 0.
    pub icmp_code: u8,
    /// Fragment status.
    pub frag: FragStatus,
    /// IPv4 TTL / IPv6 hop limit (0 for ARP).
    pub ttl: u8,
}

impl Classified {
    /// Length of the L4 part (from `l4_offset` to the end of the IP packet).
    pub fn l4_len(&self) -> usize {
        self.l3_end.saturating_sub(self.l4_offset)
    }

    /// Whether an L4 header was parsed (not ARP, not a non-first fragment,
    /// and a protocol this layer understands: TCP, UDP, ICMP, ICMPv6).
    pub fn has_l4_header(&self) -> bool {
        self.frag != FragStatus::NonFirst
            && match (self.l3, self.protocol) {
                (L3Kind::Arp, _) => false,
                (_, IpProtocol::TCP | IpProtocol::UDP) => true,
                (L3Kind::Ipv4, IpProtocol::ICMP) | (L3Kind::Ipv6, IpProtocol::ICMPV6) => true,
                _ => false,
            }
    }

    /// Whether this is an ICMP or ICMPv6 error message (quoting a datagram).
    pub fn is_icmp_error(&self) -> bool {
        self.frag != FragStatus::NonFirst
            && match (self.l3, self.protocol) {
                (L3Kind::Ipv4, IpProtocol::ICMP) => matches!(self.icmp_type, 3 | 4 | 5 | 11 | 12),
                (L3Kind::Ipv6, IpProtocol::ICMPV6) => self.icmp_type < 128,
                _ => false,
            }
    }
}

/// Classify a frame with default options (IPv4 header checksum verified).
#[inline]
pub fn classify(frame: &[u8]) -> Result<Classified> {
    classify_with(frame, ClassifyOptions::default())
}

/// Classify a frame: Ethernet (one optional VLAN tag), then ARP, IPv4 or
/// IPv6 (extension headers walked), then the TCP/UDP/ICMP/ICMPv6 header.
/// Other upper-layer protocols (GRE, ESP, SCTP...) are returned with zero
/// ports; the pipeline decides what to do with them.
#[inline]
pub fn classify_with(frame: &[u8], opts: ClassifyOptions) -> Result<Classified> {
    if frame.len() < 14 {
        return Err(Error::TruncatedEthernet);
    }
    let mut ethertype = EtherType(rd16(frame, 12));
    let mut l3_offset = 14;
    let mut vlan = None;
    if ethertype.is_vlan() {
        if frame.len() < 18 {
            return Err(Error::TruncatedVlan);
        }
        vlan = Some(VlanTag::from_tci(rd16(frame, 14)));
        ethertype = EtherType(rd16(frame, 16));
        l3_offset = 18;
        if ethertype.is_vlan() {
            return Err(Error::StackedVlan);
        }
    }
    let l3 = &frame[l3_offset..];
    match ethertype {
        EtherType::IPV4 => classify_v4(l3, l3_offset, vlan, opts),
        EtherType::IPV6 => classify_v6(l3, l3_offset, vlan),
        EtherType::ARP => classify_arp(l3, l3_offset, vlan),
        _ => Err(Error::UnsupportedEthertype),
    }
}

/// An unfragmented IPv4 TCP or UDP packet without IP options, untagged or
/// with one 802.1Q tag: the common case of a load balancer's traffic, as
/// [`classify_ipv4_l4`] reads it for the established-flow fast path.
///
/// It holds what [`classify`] would return for the same frame
/// ([`Ipv4L4::classified`]) in a third of the space, with the addresses as
/// plain IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4L4 {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// TCP/UDP source port.
    pub src_port: u16,
    /// TCP/UDP destination port.
    pub dst_port: u16,
    /// Offset of the IPv4 header.
    pub l3_offset: u16,
    /// Offset of the TCP/UDP header.
    pub l4_offset: u16,
    /// End of the IP packet (`l3_offset` + total length).
    pub l3_end: u16,
    /// TTL.
    pub ttl: u8,
    /// TCP flags (empty for UDP).
    pub tcp_flags: TcpFlags,
    /// UDP (else TCP).
    pub udp: bool,
    /// The VLAN tag, if the frame had one.
    pub vlan: Option<VlanTag>,
}

impl Ipv4L4 {
    /// The same facts from a full classification, if it is of an
    /// unfragmented IPv4 TCP or UDP packet (IP options allowed here).
    #[inline]
    pub fn of(c: &Classified) -> Option<Ipv4L4> {
        if c.l3 != L3Kind::Ipv4 || c.frag != FragStatus::NotFragment {
            return None;
        }
        let udp = match c.protocol {
            IpProtocol::TCP => false,
            IpProtocol::UDP => true,
            _ => return None,
        };
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (c.src_addr, c.dst_addr) else {
            return None;
        };
        Some(Ipv4L4 {
            src,
            dst,
            src_port: c.src_port,
            dst_port: c.dst_port,
            l3_offset: u16::try_from(c.l3_offset).ok()?,
            l4_offset: u16::try_from(c.l4_offset).ok()?,
            l3_end: u16::try_from(c.l3_end).ok()?,
            ttl: c.ttl,
            tcp_flags: c.tcp_flags,
            udp,
            vlan: c.vlan,
        })
    }

    /// The IP protocol: TCP or UDP.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        if self.udp {
            IpProtocol::UDP
        } else {
            IpProtocol::TCP
        }
    }

    /// What [`classify_with`] returns for the frame this was read from.
    pub fn classified(&self) -> Classified {
        Classified {
            vlan: self.vlan,
            l3: L3Kind::Ipv4,
            l3_offset: usize::from(self.l3_offset),
            l4_offset: usize::from(self.l4_offset),
            l3_end: usize::from(self.l3_end),
            protocol: self.protocol(),
            src_addr: IpAddr::V4(self.src),
            dst_addr: IpAddr::V4(self.dst),
            src_port: self.src_port,
            dst_port: self.dst_port,
            tcp_flags: self.tcp_flags,
            icmp_type: 0,
            icmp_code: 0,
            frag: FragStatus::NotFragment,
            ttl: self.ttl,
        }
    }
}

/// Classifies the common case in a few checks: an unfragmented IPv4 TCP or
/// UDP packet without IP options, untagged or with one 802.1Q tag, that
/// [`classify_with`] accepts. `None` for anything else (which
/// [`classify_with`] then classifies, or rejects with its error): when this
/// returns a value, [`Ipv4L4::classified`] is exactly what [`classify_with`]
/// returns for the frame.
#[inline]
pub fn classify_ipv4_l4(frame: &[u8], opts: ClassifyOptions) -> Option<Ipv4L4> {
    let eth = frame.first_chunk::<18>()?;
    let (l3_offset, vlan) = match [eth[12], eth[13]] {
        [0x08, 0x00] => (14, None),
        [0x81, 0x00] if [eth[16], eth[17]] == [0x08, 0x00] => (
            18,
            Some(VlanTag::from_tci(u16::from_be_bytes([eth[14], eth[15]]))),
        ),
        _ => return None,
    };
    let b = frame.get(l3_offset..)?;
    let h = b.first_chunk::<20>()?;
    // Version 4, no options.
    if h[0] != 0x45 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    // Neither MF nor an offset (DF may be set).
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return None;
    }
    let seg = b.get(20..total)?;
    if opts.verify_ipv4_checksum && !checksum::ipv4_header20_ok(h) {
        return None;
    }
    let (udp, tcp_flags) = match h[9] {
        6 => {
            let t = seg.first_chunk::<20>()?;
            let hl = usize::from(t[12] >> 4) * 4;
            if hl < 20 || seg.len() < hl {
                return None;
            }
            (false, TcpFlags(t[13]))
        }
        17 => {
            let u = seg.first_chunk::<8>()?;
            let len = usize::from(u16::from_be_bytes([u[4], u[5]]));
            if len < 8 || seg.len() < len {
                return None;
            }
            (true, TcpFlags::NONE)
        }
        _ => return None,
    };
    let p = seg.first_chunk::<4>()?;
    Some(Ipv4L4 {
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        src_port: u16::from_be_bytes([p[0], p[1]]),
        dst_port: u16::from_be_bytes([p[2], p[3]]),
        l3_offset: l3_offset as u16,
        l4_offset: l3_offset as u16 + 20,
        l3_end: u16::try_from(l3_offset + total).ok()?,
        ttl: h[8],
        tcp_flags,
        udp,
        vlan,
    })
}

fn classify_arp(b: &[u8], l3_offset: usize, vlan: Option<VlanTag>) -> Result<Classified> {
    if b.len() < 8 {
        return Err(Error::TruncatedArp);
    }
    if rd16(b, 0) != 1 || rd16(b, 2) != 0x0800 || rd8(b, 4) != 6 || rd8(b, 5) != 4 {
        return Err(Error::UnsupportedArp);
    }
    if b.len() < 28 {
        return Err(Error::TruncatedArp);
    }
    let end = l3_offset + 28;
    Ok(Classified {
        vlan,
        l3: L3Kind::Arp,
        l3_offset,
        l4_offset: end,
        l3_end: end,
        protocol: IpProtocol(0),
        src_addr: IpAddr::V4(Ipv4Addr::from(rd_array::<4>(b, 14))),
        dst_addr: IpAddr::V4(Ipv4Addr::from(rd_array::<4>(b, 24))),
        src_port: 0,
        dst_port: 0,
        tcp_flags: TcpFlags::NONE,
        icmp_type: rd16(b, 6) as u8,
        icmp_code: 0,
        frag: FragStatus::NotFragment,
        ttl: 0,
    })
}

fn classify_v4(
    b: &[u8],
    l3_offset: usize,
    vlan: Option<VlanTag>,
    opts: ClassifyOptions,
) -> Result<Classified> {
    if b.len() < ipv4::HEADER_LEN {
        return Err(Error::TruncatedIpv4);
    }
    let vihl = b[0];
    if vihl >> 4 != 4 {
        return Err(Error::BadIpVersion);
    }
    let hl = usize::from(vihl & 0x0f) * 4;
    if hl < ipv4::HEADER_LEN {
        return Err(Error::BadIhl);
    }
    if b.len() < hl {
        return Err(Error::TruncatedIpv4);
    }
    let total = usize::from(rd16(b, 2));
    if total < hl {
        return Err(Error::BadTotalLength);
    }
    if b.len() < total {
        return Err(Error::TruncatedIpv4);
    }
    if opts.verify_ipv4_checksum {
        let ok = match b.first_chunk::<20>() {
            Some(h) if hl == 20 => checksum::ipv4_header20_ok(h),
            _ => checksum::sum(&b[..hl]) == 0xffff,
        };
        if !ok {
            return Err(Error::BadIpv4Checksum);
        }
    }
    let flg_off = rd16(b, 6);
    let frag = if flg_off & 0x1fff != 0 {
        FragStatus::NonFirst
    } else if flg_off & 0x2000 != 0 {
        FragStatus::First
    } else {
        FragStatus::NotFragment
    };
    let protocol = IpProtocol(b[9]);
    let mut c = Classified {
        vlan,
        l3: L3Kind::Ipv4,
        l3_offset,
        l4_offset: l3_offset + hl,
        l3_end: l3_offset + total,
        protocol,
        src_addr: IpAddr::V4(Ipv4Addr::from(rd_array::<4>(b, 12))),
        dst_addr: IpAddr::V4(Ipv4Addr::from(rd_array::<4>(b, 16))),
        src_port: 0,
        dst_port: 0,
        tcp_flags: TcpFlags::NONE,
        icmp_type: 0,
        icmp_code: 0,
        frag,
        ttl: b[8],
    };
    if frag != FragStatus::NonFirst {
        l4(&mut c, &b[hl..total], false)?;
    }
    Ok(c)
}

fn classify_v6(b: &[u8], l3_offset: usize, vlan: Option<VlanTag>) -> Result<Classified> {
    if b.len() < ipv6::HEADER_LEN {
        return Err(Error::TruncatedIpv6);
    }
    if b[0] >> 4 != 6 {
        return Err(Error::BadIpVersion);
    }
    let total = ipv6::HEADER_LEN + usize::from(rd16(b, 4));
    if b.len() < total {
        return Err(Error::TruncatedIpv6);
    }
    let pkt = &b[..total];
    let upper = ipv6::walk_ext_headers(b[6], pkt, ipv6::HEADER_LEN)?;
    let frag = match upper.fragment {
        Some(f) if f.offset != 0 => FragStatus::NonFirst,
        Some(f) if f.more => FragStatus::First,
        _ => FragStatus::NotFragment,
    };
    let mut c = Classified {
        vlan,
        l3: L3Kind::Ipv6,
        l3_offset,
        l4_offset: l3_offset + upper.offset,
        l3_end: l3_offset + total,
        protocol: upper.protocol,
        src_addr: IpAddr::V6(Ipv6Addr::from(rd_array::<16>(b, 8))),
        dst_addr: IpAddr::V6(Ipv6Addr::from(rd_array::<16>(b, 24))),
        src_port: 0,
        dst_port: 0,
        tcp_flags: TcpFlags::NONE,
        icmp_type: 0,
        icmp_code: 0,
        frag,
        ttl: b[7],
    };
    if frag != FragStatus::NonFirst {
        l4(&mut c, pkt.get(upper.offset..).unwrap_or(&[]), true)?;
    }
    Ok(c)
}

#[inline(always)]
fn l4(c: &mut Classified, seg: &[u8], v6: bool) -> Result<()> {
    match c.protocol {
        IpProtocol::TCP => {
            if seg.len() < 20 {
                return Err(Error::TruncatedTcp);
            }
            let hl = usize::from(seg[12] >> 4) * 4;
            if hl < 20 {
                return Err(Error::BadTcpDataOffset);
            }
            if seg.len() < hl {
                return Err(Error::TruncatedTcp);
            }
            c.src_port = rd16(seg, 0);
            c.dst_port = rd16(seg, 2);
            c.tcp_flags = TcpFlags(seg[13]);
        }
        IpProtocol::UDP => {
            if seg.len() < 8 {
                return Err(Error::TruncatedUdp);
            }
            let len = usize::from(rd16(seg, 4));
            if len < 8 {
                return Err(Error::BadUdpLength);
            }
            // A first fragment carries only part of the datagram the UDP
            // length describes.
            if c.frag == FragStatus::NotFragment && seg.len() < len {
                return Err(Error::TruncatedUdp);
            }
            c.src_port = rd16(seg, 0);
            c.dst_port = rd16(seg, 2);
        }
        IpProtocol::ICMP if !v6 => {
            if seg.len() < 8 {
                return Err(Error::TruncatedIcmp);
            }
            c.icmp_type = seg[0];
            c.icmp_code = seg[1];
            if matches!(seg[0], 0 | 8) {
                let id = rd16(seg, 4);
                c.src_port = id;
                c.dst_port = id;
            }
        }
        IpProtocol::ICMPV6 if v6 => {
            if seg.len() < 8 {
                return Err(Error::TruncatedIcmpv6);
            }
            c.icmp_type = seg[0];
            c.icmp_code = seg[1];
            if matches!(seg[0], 128 | 129) {
                let id = rd16(seg, 4);
                c.src_port = id;
                c.dst_port = id;
            }
        }
        _ => {}
    }
    Ok(())
}
