//! In-place NAT rewrites of classified frames, keeping every checksum
//! correct by incremental update (RFC 1624), never by recomputation.
//!
//! * [`rewrite_flow`] changes the addresses and ports of a TCP/UDP flow (or
//!   the identifier of an ICMP echo flow): IPv4 header checksum, TCP/UDP
//!   pseudo-header and port words, ICMPv6 pseudo-header. A whole TCP/UDP
//!   header is rewritten at fixed offsets ([`rewrite_ipv4_l4`], which can
//!   also decrement the TTL in the same pass, and its IPv6 counterpart);
//!   the pipeline's cached plans for established flows run the same
//!   [`rewrite_ipv4_l4`]. UDP's zero checksum
//!   ("none computed") is left at zero and a computed zero is sent as 0xffff
//!   (RFC 768). On a first fragment the L4 checksum covers the whole
//!   datagram and the incremental update keeps it exact; on a non-first
//!   fragment only the IP header is rewritten.
//! * [`rewrite_icmp_error`] rewrites the datagram quoted inside an ICMP or
//!   ICMPv6 error of a NAT'd flow (RFC 5508 §4.2 for ICMP NAT behaviour),
//!   updating the quoted IPv4 header checksum, the quoted L4 checksum when it
//!   is quoted, and the outer ICMP checksum.
//! * [`rewrite_tcp_seq`] shifts a TCP segment's sequence number,
//!   acknowledgement number and SACK edges (a SYN proxy's connection).

use core::net::{IpAddr, Ipv6Addr};

use super::checksum;
use super::classify::{Classified, FragStatus, L3Kind};
use super::embedded::EmbeddedFlow;
use super::ip::IpProtocol;
use super::{Error, Result, rd16};

/// Which addresses and ports to replace; `None` keeps the field.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowRewrite {
    /// New source address (same family as the packet).
    pub src_addr: Option<IpAddr>,
    /// New destination address (same family as the packet).
    pub dst_addr: Option<IpAddr>,
    /// New source port. For ICMP/ICMPv6 echo, the new identifier.
    pub src_port: Option<u16>,
    /// New destination port. For ICMP/ICMPv6 echo, the new identifier if
    /// `src_port` is `None`.
    pub dst_port: Option<u16>,
}

impl FlowRewrite {
    fn wants_ports(&self) -> bool {
        self.src_port.is_some() || self.dst_port.is_some()
    }

    fn families_match(&self, v4: bool) -> bool {
        [self.src_addr, self.dst_addr]
            .iter()
            .flatten()
            .all(|a| a.is_ipv4() == v4)
    }
}

/// Where the L4 checksum is and what it covers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum L4Sum {
    /// Checksum at this offset in the L4 header, covering the pseudo-header.
    Pseudo { off: usize, udp: bool },
    /// ICMPv4: checksum at 2, no pseudo-header.
    NoPseudo,
    /// No L4 header to update.
    Absent,
}

fn l4_sum(c: &Classified) -> L4Sum {
    if c.frag == FragStatus::NonFirst {
        return L4Sum::Absent;
    }
    match (c.l3, c.protocol) {
        (_, IpProtocol::TCP) => L4Sum::Pseudo {
            off: 16,
            udp: false,
        },
        (_, IpProtocol::UDP) => L4Sum::Pseudo { off: 6, udp: true },
        (L3Kind::Ipv4, IpProtocol::ICMP) => L4Sum::NoPseudo,
        (L3Kind::Ipv6, IpProtocol::ICMPV6) => L4Sum::Pseudo { off: 2, udp: false },
        _ => L4Sum::Absent,
    }
}

/// Minimum L4 bytes the rewrite touches for this protocol.
fn l4_min(c: &Classified) -> usize {
    match c.protocol {
        IpProtocol::TCP => 20,
        _ => 8,
    }
}

#[inline(always)]
fn get16(b: &[u8], off: usize) -> Result<u16> {
    if off.checked_add(2).is_some_and(|e| e <= b.len()) {
        Ok(rd16(b, off))
    } else {
        Err(Error::InvalidArgument)
    }
}

#[inline(always)]
fn put16(b: &mut [u8], off: usize, v: u16) -> Result<()> {
    b.get_mut(off..off.wrapping_add(2))
        .ok_or(Error::InvalidArgument)?
        .copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// Update an L4 checksum at `off` with `f`, honouring UDP's zero checksum.
#[inline(always)]
fn update_l4(b: &mut [u8], off: usize, udp: bool, f: impl FnOnce(u16) -> u16) -> Result<()> {
    let c = get16(b, off)?;
    if udp && c == 0 {
        return Ok(());
    }
    let n = f(c);
    put16(b, off, if udp { checksum::udp_nonzero(n) } else { n })
}

/// New addresses and ports for [`rewrite_ipv4_l4`] (`None` keeps a field),
/// and whether to decrement the TTL in the same pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4L4Rewrite {
    /// Decrement the TTL (refused if it is below 2).
    pub dec_ttl: bool,
    /// New source address.
    pub src_addr: Option<u32>,
    /// New source port.
    pub src_port: Option<u16>,
    /// New destination address.
    pub dst_addr: Option<u32>,
    /// New destination port.
    pub dst_port: Option<u16>,
}

/// Rewrites an IPv4 TCP (or UDP, `udp`) packet per `rw` at fixed offsets:
/// TTL, then source and destination address and port, every checksum
/// updated incrementally (RFC 1624 eqn. 3: the changes to each checksum are
/// summed and folded once). The IPv4 header (at `l3`; its first 20 bytes are
/// touched) and the L4 header up to its checksum (at `l4`) must lie within
/// the IP packet, which ends at `l3_end`. False, and nothing written, if
/// they do not, or if the TTL is below 2 while `rw.dec_ttl`.
#[inline(always)]
pub fn rewrite_ipv4_l4(
    b: &mut [u8],
    l3: usize,
    l4: usize,
    l3_end: usize,
    udp: bool,
    rw: &Ipv4L4Rewrite,
) -> bool {
    let Some(b) = b.get_mut(..l3_end) else {
        return false;
    };
    let Some((head, tail)) = b.split_at_mut_checked(l4) else {
        return false;
    };
    let Some(ip) = head.get_mut(l3..l3.wrapping_add(20)) else {
        return false;
    };
    if udp {
        ipv4_l4_fixed::<6, 8>(ip, tail, true, rw)
    } else {
        ipv4_l4_fixed::<16, 18>(ip, tail, false, rw)
    }
}

/// [`rewrite_ipv4_l4`] on the 20-byte IPv4 header and the first `N` bytes of
/// the L4 header, whose checksum is at `COFF` (`N = COFF + 2`). Fixed-size
/// arrays and unrolled fields: no bounds checks, no loops.
#[inline(always)]
fn ipv4_l4_fixed<const COFF: usize, const N: usize>(
    ip: &mut [u8],
    seg: &mut [u8],
    udp: bool,
    rw: &Ipv4L4Rewrite,
) -> bool {
    let (Ok(ip), Some(Ok(seg))) = (
        <&mut [u8; 20]>::try_from(ip),
        seg.get_mut(..N).map(<&mut [u8; N]>::try_from),
    ) else {
        return false;
    };
    if rw.dec_ttl && ip[8] <= 1 {
        return false;
    }
    let hsum = u16::from_be_bytes([ip[10], ip[11]]);
    let mut hacc = u64::from(!hsum);
    if rw.dec_ttl {
        // The TTL/protocol word, as Ipv4Packet::decrement_ttl.
        let old = u16::from_be_bytes([ip[8], ip[9]]);
        hacc += checksum::delta16(old, old - 0x0100);
        ip[8] -= 1;
    }
    let l4sum = u16::from_be_bytes([seg[COFF], seg[COFF + 1]]);
    // RFC 768: a zero UDP checksum means none was computed; it stays zero.
    let keep_l4 = !(udp && l4sum == 0);
    let mut lacc = u64::from(!l4sum);
    if let Some(new) = rw.src_addr {
        let old = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        if old != new {
            let d = checksum::delta32(old, new);
            hacc += d;
            lacc += d;
            ip[12..16].copy_from_slice(&new.to_be_bytes());
        }
    }
    if let Some(new) = rw.dst_addr {
        let old = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        if old != new {
            let d = checksum::delta32(old, new);
            hacc += d;
            lacc += d;
            ip[16..20].copy_from_slice(&new.to_be_bytes());
        }
    }
    ip[10..12].copy_from_slice(&(!checksum::fold(hacc)).to_be_bytes());
    if let Some(new) = rw.src_port {
        let old = u16::from_be_bytes([seg[0], seg[1]]);
        if old != new {
            lacc += checksum::delta16(old, new);
            seg[0..2].copy_from_slice(&new.to_be_bytes());
        }
    }
    if let Some(new) = rw.dst_port {
        let old = u16::from_be_bytes([seg[2], seg[3]]);
        if old != new {
            lacc += checksum::delta16(old, new);
            seg[2..4].copy_from_slice(&new.to_be_bytes());
        }
    }
    let l4sum = !checksum::fold(lacc);
    if keep_l4 {
        let v = if udp {
            checksum::udp_nonzero(l4sum)
        } else {
            l4sum
        };
        seg[COFF..COFF + 2].copy_from_slice(&v.to_be_bytes());
    }
    true
}

/// Rewrites the addresses and ports of an IPv6 TCP or UDP packet whose L4
/// header is whole, at fixed offsets (the L4 checksum updated once per
/// changed field).
#[inline(always)]
fn rewrite_ipv6_l4(b: &mut [u8], l3: usize, l4: usize, coff: usize, udp: bool, rw: &FlowRewrite) {
    let rd16 = |b: &[u8], o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    let mut l4sum = rd16(b, l4 + coff);
    // RFC 768: a zero UDP checksum means none was computed; it stays zero.
    let keep_l4 = !(udp && l4sum == 0);
    for (off, new) in [(l3 + 8, rw.src_addr), (l3 + 24, rw.dst_addr)] {
        let Some(IpAddr::V6(new)) = new else {
            continue;
        };
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[off..off + 16]);
        let old = Ipv6Addr::from(o);
        if old != new {
            l4sum = checksum::update_v6addr(l4sum, &old, &new);
            b[off..off + 16].copy_from_slice(&new.octets());
        }
    }
    for (off, new) in [(l4, rw.src_port), (l4 + 2, rw.dst_port)] {
        let Some(new) = new else {
            continue;
        };
        let old = rd16(b, off);
        if old != new {
            l4sum = checksum::update16(l4sum, old, new);
            b[off..off + 2].copy_from_slice(&new.to_be_bytes());
        }
    }
    if keep_l4 {
        let v = if udp {
            checksum::udp_nonzero(l4sum)
        } else {
            l4sum
        };
        b[l4 + coff..l4 + coff + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// [`rewrite_flow`] for a TCP/UDP packet whose L4 header (up to its
/// checksum) is whole in the frame: at fixed offsets. `None` if the packet
/// is not one (then the general rewrite takes it).
#[inline(always)]
fn rewrite_l4_fixed(b: &mut [u8], c: &Classified, rw: &FlowRewrite) -> Option<Result<()>> {
    let (coff, udp) = match c.protocol {
        IpProtocol::TCP => (16, false),
        IpProtocol::UDP => (6, true),
        _ => return None,
    };
    let (l3, l4) = (c.l3_offset, c.l4_offset);
    let fits = c.frag != FragStatus::NonFirst
        && c.l3_end <= b.len()
        && l4 + coff + 2 <= c.l3_end
        && l4 + 4 <= c.l3_end;
    let v4 = c.l3 == L3Kind::Ipv4;
    if !fits || c.l3 == L3Kind::Arp || !rw.families_match(v4) {
        return None;
    }
    if v4 {
        let a = |x: Option<IpAddr>| match x {
            Some(IpAddr::V4(a)) => Some(u32::from(a)),
            _ => None,
        };
        let r = Ipv4L4Rewrite {
            dec_ttl: false,
            src_addr: a(rw.src_addr),
            src_port: rw.src_port,
            dst_addr: a(rw.dst_addr),
            dst_port: rw.dst_port,
        };
        let ok = rewrite_ipv4_l4(b, l3, l4, c.l3_end, udp, &r);
        return Some(if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument)
        });
    }
    if l3 + 40 > l4 {
        return None;
    }
    rewrite_ipv6_l4(b, l3, l4, coff, udp, rw);
    Some(Ok(()))
}

/// Rewrite the addresses and/or ports of the classified frame in place.
///
/// Fails with [`Error::InvalidArgument`], leaving the frame untouched, if the
/// frame is ARP, an address is of the other family, ports are asked for on a
/// packet without ports (a non-first fragment, or a protocol other than
/// TCP, UDP and ICMP echo), or `c` does not describe `frame`.
#[inline]
pub fn rewrite_flow(frame: &mut [u8], c: &Classified, rw: &FlowRewrite) -> Result<()> {
    match rewrite_l4_fixed(frame, c, rw) {
        Some(done) => done,
        None => rewrite_flow_general(frame, c, rw),
    }
}

/// How a SYN proxy's connection moves a TCP segment's sequence spaces: the
/// amounts added (modulo 2^32) to its sequence number and to its
/// acknowledgement number and SACK block edges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqShift {
    /// Added to the sequence number.
    pub seq: u32,
    /// Added to the acknowledgement number and to every SACK block edge
    /// (RFC 2018: they acknowledge the same sequence space).
    pub ack: u32,
}

/// Shifts the sequence number, the acknowledgement number and the SACK
/// block edges of the TCP segment of `frame` (classified as `c`) by `shift`,
/// updating its checksum incrementally. Timestamps are left alone (a SYN
/// proxy that keeps no state negotiates none). Fails without changing
/// anything on a frame that is not an unfragmented TCP segment with valid
/// options.
pub fn rewrite_tcp_seq(frame: &mut [u8], c: &Classified, shift: SeqShift) -> Result<()> {
    if c.protocol != IpProtocol::TCP || c.frag != FragStatus::NotFragment {
        return Err(Error::InvalidArgument);
    }
    let seg = frame
        .get_mut(c.l4_offset..c.l3_end)
        .ok_or(Error::InvalidArgument)?;
    if seg.len() < 20 {
        return Err(Error::BufferTooSmall);
    }
    let hlen = usize::from(seg[12] >> 4) * 4;
    if hlen < 20 || hlen > seg.len() {
        return Err(Error::BadTcpOptions);
    }
    // The SACK edges' offsets, found (and the options checked) first.
    let mut edges = [0usize; 4 * 2];
    let mut n = 0;
    let mut it = super::tcp::TcpOptionIter::new(&seg[20..hlen]);
    while let Some(o) = it.next_with_offset() {
        if let (off, super::tcp::TcpOption::SackRange(blocks)) = o? {
            for k in 0..blocks.len() / 4 {
                *edges.get_mut(n).ok_or(Error::BadTcpOptions)? = 20 + off + 2 + 4 * k;
                n += 1;
            }
        }
    }
    let mut delta = 0u64;
    let mut shift32 = |seg: &mut [u8], at: usize, by: u32| {
        let old = u32::from_be_bytes([seg[at], seg[at + 1], seg[at + 2], seg[at + 3]]);
        let new = old.wrapping_add(by);
        seg[at..at + 4].copy_from_slice(&new.to_be_bytes());
        delta += checksum::delta32(old, new);
    };
    shift32(seg, 4, shift.seq);
    shift32(seg, 8, shift.ack);
    for &at in &edges[..n] {
        shift32(seg, at, shift.ack);
    }
    let hc = rd16(seg, 16);
    put16(seg, 16, !checksum::fold((!hc) as u64 + delta))
}

/// [`rewrite_flow`] for any packet, word by word: what the fixed-offset
/// forms do not take (ICMP echo, truncated or fragmented packets), and
/// their oracle in the property tests.
pub(crate) fn rewrite_flow_general(
    frame: &mut [u8],
    c: &Classified,
    rw: &FlowRewrite,
) -> Result<()> {
    let v4 = match c.l3 {
        L3Kind::Ipv4 => true,
        L3Kind::Ipv6 => false,
        L3Kind::Arp => return Err(Error::InvalidArgument),
    };
    if !rw.families_match(v4) {
        return Err(Error::InvalidArgument);
    }
    let sum = l4_sum(c);
    let is_echo = matches!(
        (c.l3, c.protocol, c.icmp_type),
        (L3Kind::Ipv4, IpProtocol::ICMP, 0 | 8) | (L3Kind::Ipv6, IpProtocol::ICMPV6, 128 | 129)
    );
    let has_ports =
        sum != L4Sum::Absent && (c.protocol == IpProtocol::TCP || c.protocol == IpProtocol::UDP);
    if rw.wants_ports() && !(has_ports || (is_echo && sum != L4Sum::Absent)) {
        return Err(Error::InvalidArgument);
    }
    // Bounds: the whole IP packet and the L4 header we touch must be in the frame.
    if c.l3_offset > c.l4_offset || c.l4_offset > c.l3_end || c.l3_end > frame.len() {
        return Err(Error::InvalidArgument);
    }
    let pkt = &mut frame[..c.l3_end];
    let ip = c.l3_offset;
    let l4 = c.l4_offset;
    let l4_present = sum != L4Sum::Absent;
    if l4_present && l4 + l4_min(c) > pkt.len() {
        return Err(Error::InvalidArgument);
    }
    let (src_off, dst_off, alen) = if v4 {
        (ip + 12, ip + 16, 4)
    } else {
        (ip + 8, ip + 24, 16)
    };
    if v4 && ip + 20 > l4 || !v4 && ip + 40 > l4 {
        return Err(Error::InvalidArgument);
    }

    // RFC 1624 eqn. 3 generalised to several changed words,
    // HC' = ~(~HC + Σ~m + Σm'): accumulate Σ~m + Σm' for every changed word
    // and update each checksum once.
    let mut addr_delta: u64 = 0;
    let mut port_delta: u64 = 0;
    let mut addr_changed = false;
    let mut port_changed = false;
    for (off, new) in [(src_off, rw.src_addr), (dst_off, rw.dst_addr)] {
        let Some(new) = new else { continue };
        let mut nb = [0u8; 16];
        match new {
            IpAddr::V4(a) => nb[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => nb.copy_from_slice(&a.octets()),
        }
        let new = &nb[..alen];
        let old = pkt.get_mut(off..off + alen).ok_or(Error::InvalidArgument)?;
        if old == new {
            continue;
        }
        addr_delta += word_delta(old, new);
        old.copy_from_slice(new);
        addr_changed = true;
    }

    let port_fields: [(usize, Option<u16>); 2] = if has_ports {
        [(l4, rw.src_port), (l4 + 2, rw.dst_port)]
    } else if is_echo && l4_present {
        [(l4 + 4, rw.src_port.or(rw.dst_port)), (0, None)]
    } else {
        [(0, None), (0, None)]
    };
    for (off, new) in port_fields {
        let Some(new) = new else { continue };
        let old = get16(pkt, off)?;
        if old != new {
            port_delta += u64::from(!old) + u64::from(new);
            put16(pkt, off, new)?;
            port_changed = true;
        }
    }

    if v4 && addr_changed {
        let hc = get16(pkt, ip + 10)?;
        put16(pkt, ip + 10, apply_delta(hc, addr_delta))?;
    }
    match sum {
        L4Sum::Pseudo { off, udp } if addr_changed || port_changed => {
            update_l4(pkt, l4 + off, udp, |c| {
                apply_delta(c, addr_delta + port_delta)
            })?;
        }
        L4Sum::NoPseudo if port_changed => {
            update_l4(pkt, l4 + 2, false, |c| apply_delta(c, port_delta))?;
        }
        _ => {}
    }
    Ok(())
}

/// Σ~m + Σm' over the 16-bit words of two equal-length, even-length slices.
#[inline(always)]
fn word_delta(old: &[u8], new: &[u8]) -> u64 {
    old.chunks_exact(2)
        .zip(new.chunks_exact(2))
        .map(|(o, n)| {
            u64::from(!u16::from_be_bytes([o[0], o[1]]))
                + u64::from(u16::from_be_bytes([n[0], n[1]]))
        })
        .sum()
}

/// `~(~HC + delta)` with end-around carry.
#[inline(always)]
fn apply_delta(hc: u16, delta: u64) -> u16 {
    !checksum::fold(u64::from(!hc) + delta)
}

/// Writes into an ICMP message while keeping its checksum (at offset 2)
/// updated incrementally.
struct Patch<'a> {
    msg: &'a mut [u8],
    csum: u16,
}

impl Patch<'_> {
    fn write(&mut self, off: usize, bytes: &[u8]) -> Result<()> {
        self.csum = checksum::rewrite_bytes(self.msg, off, bytes, self.csum)?;
        Ok(())
    }

    fn quoted(&self, off: usize, len: usize) -> bool {
        off.checked_add(len).is_some_and(|e| e <= self.msg.len())
    }

    /// Update a quoted checksum at `off` if it is inside the quote.
    fn update_inner(&mut self, off: usize, udp: bool, f: impl FnOnce(u16) -> u16) -> Result<()> {
        if !self.quoted(off, 2) {
            return Ok(());
        }
        let c = rd16(self.msg, off);
        if udp && c == 0 {
            return Ok(());
        }
        let n = f(c);
        let n = if udp { checksum::udp_nonzero(n) } else { n };
        self.write(off, &n.to_be_bytes())
    }
}

/// Rewrite the flow quoted inside an ICMP/ICMPv6 error in place: its
/// addresses (and the quoted IPv4 header checksum) and its ports or echo
/// identifier, with the quoted L4 checksum updated when the quote includes
/// it, and the outer ICMP checksum updated incrementally.
///
/// For a reply-direction error of a NAT'd flow, the quoted datagram is the
/// one the appliance sent, so `inner` typically restores the client-side
/// addresses and ports. The outer header is rewritten separately with
/// [`rewrite_flow`] (for ICMPv6 that also adjusts the pseudo-header part of
/// the ICMPv6 checksum).
pub fn rewrite_icmp_error(
    frame: &mut [u8],
    c: &Classified,
    inner: &FlowRewrite,
) -> Result<EmbeddedFlow> {
    if !c.is_icmp_error() || c.l4_offset > c.l3_end || c.l3_end > frame.len() {
        return Err(Error::InvalidArgument);
    }
    let v4 = c.l3 == L3Kind::Ipv4;
    if !inner.families_match(v4) {
        return Err(Error::InvalidArgument);
    }
    let msg = &mut frame[c.l4_offset..c.l3_end];
    if msg.len() < 8 {
        return Err(Error::InvalidArgument);
    }
    let quoted = &msg[8..];
    let flow = if v4 {
        EmbeddedFlow::parse_v4(quoted)?
    } else {
        EmbeddedFlow::parse_v6(quoted)?
    };
    if inner.wants_ports() && flow.src_port.is_none() {
        return Err(Error::InvalidArgument);
    }
    let csum = rd16(msg, 2);
    let mut p = Patch { msg, csum };
    let e = 8;
    let l4 = e + flow.l4_offset;
    // Quoted L4 checksum position and kind.
    let inner_sum = if flow.non_first_fragment {
        None
    } else {
        match flow.protocol {
            IpProtocol::TCP => Some((l4 + 16, false, true)),
            IpProtocol::UDP => Some((l4 + 6, true, true)),
            IpProtocol::ICMP if v4 => Some((l4 + 2, false, false)),
            IpProtocol::ICMPV6 if !v4 => Some((l4 + 2, false, true)),
            _ => None,
        }
    };
    let (src_off, dst_off) = if v4 {
        (e + 12, e + 16)
    } else {
        (e + 8, e + 24)
    };
    for (off, old, new) in [
        (src_off, flow.src_addr, inner.src_addr),
        (dst_off, flow.dst_addr, inner.dst_addr),
    ] {
        let Some(new) = new else { continue };
        if old == new {
            continue;
        }
        if v4 {
            p.update_inner(e + 10, false, |c| {
                checksum::update_addr(c, &old, &new).unwrap_or(c)
            })?;
        }
        if let Some((coff, udp, true)) = inner_sum {
            p.update_inner(coff, udp, |c| {
                checksum::update_addr(c, &old, &new).unwrap_or(c)
            })?;
        }
        match new {
            IpAddr::V4(a) => p.write(off, &a.octets())?,
            IpAddr::V6(a) => p.write(off, &a.octets())?,
        }
    }
    let is_echo = flow.protocol == IpProtocol::ICMP || flow.protocol == IpProtocol::ICMPV6;
    let port_fields: [(usize, Option<u16>, Option<u16>); 2] = if is_echo {
        [
            (l4 + 4, flow.src_port, inner.src_port.or(inner.dst_port)),
            (0, None, None),
        ]
    } else {
        [
            (l4, flow.src_port, inner.src_port),
            (l4 + 2, flow.dst_port, inner.dst_port),
        ]
    };
    for (off, old, new) in port_fields {
        let (Some(old), Some(new)) = (old, new) else {
            continue;
        };
        if old == new || !p.quoted(off, 2) {
            continue;
        }
        if let Some((coff, udp, _)) = inner_sum {
            p.update_inner(coff, udp, |c| checksum::update16(c, old, new))?;
        }
        p.write(off, &new.to_be_bytes())?;
    }
    let csum = p.csum;
    put16(p.msg, 2, csum)?;
    Ok(flow)
}
