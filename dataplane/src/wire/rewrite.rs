//! In-place NAT rewrites of classified frames, keeping every checksum
//! correct by incremental update (RFC 1624), never by recomputation.
//!
//! * [`rewrite_flow`] changes the addresses and ports of a TCP/UDP flow (or
//!   the identifier of an ICMP echo flow): IPv4 header checksum, TCP/UDP
//!   pseudo-header and port words, ICMPv6 pseudo-header. UDP's zero checksum
//!   ("none computed") is left at zero and a computed zero is sent as 0xffff
//!   (RFC 768). On a first fragment the L4 checksum covers the whole
//!   datagram and the incremental update keeps it exact; on a non-first
//!   fragment only the IP header is rewritten.
//! * [`rewrite_icmp_error`] rewrites the datagram quoted inside an ICMP or
//!   ICMPv6 error of a NAT'd flow (RFC 5508 §4.2 for ICMP NAT behaviour),
//!   updating the quoted IPv4 header checksum, the quoted L4 checksum when it
//!   is quoted, and the outer ICMP checksum.

use core::net::IpAddr;

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

/// Rewrite the addresses and/or ports of the classified frame in place.
///
/// Fails with [`Error::InvalidArgument`], leaving the frame untouched, if the
/// frame is ARP, an address is of the other family, ports are asked for on a
/// packet without ports (a non-first fragment, or a protocol other than
/// TCP, UDP and ICMP echo), or `c` does not describe `frame`.
pub fn rewrite_flow(frame: &mut [u8], c: &Classified, rw: &FlowRewrite) -> Result<()> {
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
