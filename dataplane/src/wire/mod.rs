//! Zero-copy packet views, header representations and checksums.
//!
//! Modelled on smoltcp's `wire` module:
//!
//! * `XxxPacket<T: AsRef<[u8]>>` is a checked view over a byte buffer.
//!   `new_checked` validates every length the accessors rely on, so once a
//!   view exists no getter or setter can read or write out of bounds. Setters
//!   are available when `T: AsMut<[u8]>` and rewrite headers in place.
//! * `XxxRepr` is a high-level, owned (or borrowing) description of a header
//!   with `parse` (from a view) and `emit` (into a `&mut [u8]`, checked) used to
//!   build replies: ARP replies, NDP advertisements, ICMP echo replies and
//!   errors, IP-in-IP outer headers.
//! * [`classify()`] is the single fast entry point for the forwarding
//!   pipeline: one pass over a frame gives the VLAN, L3/L4 types and offsets,
//!   the 5-tuple, TCP flags and fragment status, or a specific [`Error`] that
//!   the pipeline turns into a drop counter.
//! * [`checksum`] implements the full Internet checksum (RFC 1071) with the
//!   IPv4/IPv6 pseudo-headers and the incremental update of RFC 1624, and
//!   [`rewrite`] uses it to rewrite addresses and ports for NAT while keeping
//!   every checksum right.
//!
//! Nothing here allocates, and no input can make it panic: every length taken
//! from a packet is checked before use (this is fuzzed, see
//! `dataplane/fuzz/`).

pub mod arp;
pub mod checksum;
pub mod classify;
pub mod embedded;
mod error;
pub mod ethernet;
#[cfg(any(test, fuzzing, feature = "fuzzing"))]
mod fuzz;
pub mod gue;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod ndisc;
pub mod rewrite;
pub mod tcp;
pub mod tunnel;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use classify::{
    Classified, ClassifyOptions, FragStatus, Ipv4L4, L3Kind, classify, classify_ipv4_l4,
    classify_with,
};
pub use embedded::EmbeddedFlow;
pub use error::{Error, Result};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, VlanTag};
#[cfg(any(test, fuzzing, feature = "fuzzing"))]
pub use fuzz::fuzz_parse;
pub use icmpv4::{Icmpv4Message, Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{Icmpv6Message, Icmpv6Packet, Icmpv6Repr};
pub use ip::IpProtocol;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr, Ipv6Upper};
pub use ndisc::{NdiscRepr, NdiscRouterFlags, NeighborFlags};
pub use rewrite::{FlowRewrite, SeqShift, rewrite_flow, rewrite_icmp_error, rewrite_tcp_seq};
pub use tcp::{TcpFlags, TcpOption, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Big-endian field helpers. Callers have checked `buf.len()`; these still
/// never panic (they return 0 / do nothing on a short buffer) so that a logic
/// slip cannot turn into a crash on the packet path.
#[inline(always)]
pub(crate) fn rd16(buf: &[u8], off: usize) -> u16 {
    match buf.get(off..off.wrapping_add(2)) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

#[inline(always)]
pub(crate) fn rd32(buf: &[u8], off: usize) -> u32 {
    match buf.get(off..off.wrapping_add(4)) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

#[inline(always)]
pub(crate) fn rd8(buf: &[u8], off: usize) -> u8 {
    buf.get(off).copied().unwrap_or(0)
}

#[inline(always)]
pub(crate) fn rd_array<const N: usize>(buf: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(off..off.wrapping_add(N)) {
        out.copy_from_slice(src);
    }
    out
}

#[inline(always)]
pub(crate) fn wr16(buf: &mut [u8], off: usize, v: u16) {
    if let Some(dst) = buf.get_mut(off..off.wrapping_add(2)) {
        dst.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline(always)]
pub(crate) fn wr32(buf: &mut [u8], off: usize, v: u32) {
    if let Some(dst) = buf.get_mut(off..off.wrapping_add(4)) {
        dst.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline(always)]
pub(crate) fn wr8(buf: &mut [u8], off: usize, v: u8) {
    if let Some(dst) = buf.get_mut(off) {
        *dst = v;
    }
}

#[inline(always)]
pub(crate) fn wr_bytes(buf: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = buf.get_mut(off..off.wrapping_add(v.len())) {
        dst.copy_from_slice(v);
    }
}
