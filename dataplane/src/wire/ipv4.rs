//! IPv4 (RFC 791) headers, options and fragments.

use core::net::Ipv4Addr;

use super::checksum;
use super::ip::IpProtocol;
use super::{Error, Result, rd_array, rd8, rd16, wr_bytes, wr8, wr16};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// A checked view of an IPv4 packet.
///
/// `new_checked` guarantees: version 4, IHL ≥ 5, header and `total_len`
/// bytes present in the buffer, `total_len` ≥ header length. The buffer may
/// be longer than `total_len` (Ethernet padding); [`Ipv4Packet::payload`]
/// stops at `total_len`.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap a buffer that starts with an IPv4 header, validating lengths.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check(buffer.as_ref())?;
        Ok(Ipv4Packet { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole buffer, including bytes past `total_len`.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Version field (always 4 for a checked packet).
    pub fn version(&self) -> u8 {
        rd8(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(rd8(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// The type-of-service byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        rd8(self.buffer.as_ref(), field::TOS)
    }

    /// Differentiated services code point.
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// Explicit congestion notification bits.
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x3
    }

    /// Total length (header and payload).
    pub fn total_len(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & 0x4000 != 0
    }

    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (rd16(self.buffer.as_ref(), field::FLG_OFF) & 0x1fff) << 3
    }

    /// Whether this packet is a fragment (first or not).
    pub fn is_fragment(&self) -> bool {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & 0x3fff != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        rd8(self.buffer.as_ref(), field::TTL)
    }

    /// Upper-layer protocol.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(rd8(self.buffer.as_ref(), field::PROTOCOL))
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(rd_array::<4>(self.buffer.as_ref(), field::SRC))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(rd_array::<4>(self.buffer.as_ref(), field::DST))
    }

    /// The header (with options).
    pub fn header(&self) -> &[u8] {
        self.buffer.as_ref().get(..self.header_len()).unwrap_or(&[])
    }

    /// The options bytes (empty if IHL = 5).
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// Iterate over the options (RFC 791 §3.1 option format).
    pub fn option_iter(&self) -> Ipv4OptionIter<'_> {
        Ipv4OptionIter {
            data: self.options(),
        }
    }

    /// The payload, from the end of the header to `total_len`.
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.total_len());
        self.buffer
            .as_ref()
            .get(self.header_len()..end)
            .unwrap_or(&[])
    }

    /// Whether the header checksum verifies (RFC 791 §3.1, RFC 1071).
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.header()) == 0xffff
    }
}

#[inline]
fn check(b: &[u8]) -> Result<()> {
    if b.len() < HEADER_LEN {
        return Err(Error::TruncatedIpv4);
    }
    let vihl = rd8(b, field::VER_IHL);
    if vihl >> 4 != 4 {
        return Err(Error::BadIpVersion);
    }
    let hl = usize::from(vihl & 0x0f) * 4;
    if hl < HEADER_LEN {
        return Err(Error::BadIhl);
    }
    if b.len() < hl {
        return Err(Error::TruncatedIpv4);
    }
    let total = usize::from(rd16(b, field::LENGTH));
    if total < hl {
        return Err(Error::BadTotalLength);
    }
    if b.len() < total {
        return Err(Error::TruncatedIpv4);
    }
    Ok(())
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Set the TOS byte (checksum not updated).
    pub fn set_tos(&mut self, v: u8) {
        wr8(self.buffer.as_mut(), field::TOS, v);
    }

    /// Set the identification (checksum not updated).
    pub fn set_ident(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Set the TTL (checksum not updated).
    pub fn set_ttl(&mut self, v: u8) {
        wr8(self.buffer.as_mut(), field::TTL, v);
    }

    /// Set the protocol (checksum not updated).
    pub fn set_protocol(&mut self, p: IpProtocol) {
        wr8(self.buffer.as_mut(), field::PROTOCOL, p.0);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Set the source address (checksum not updated).
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        wr_bytes(self.buffer.as_mut(), field::SRC, &a.octets());
    }

    /// Set the destination address (checksum not updated).
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        wr_bytes(self.buffer.as_mut(), field::DST, &a.octets());
    }

    /// Recompute the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Replace the source address and update the header checksum
    /// incrementally (RFC 1624 eqn. 3). Returns the old address, which the
    /// caller needs to adjust the L4 pseudo-header checksum.
    pub fn rewrite_src_addr(&mut self, a: Ipv4Addr) -> Ipv4Addr {
        let old = self.src_addr();
        let c = checksum::update_v4addr(self.checksum(), old, a);
        self.set_src_addr(a);
        self.set_checksum(c);
        old
    }

    /// Replace the destination address and update the header checksum
    /// incrementally. Returns the old address.
    pub fn rewrite_dst_addr(&mut self, a: Ipv4Addr) -> Ipv4Addr {
        let old = self.dst_addr();
        let c = checksum::update_v4addr(self.checksum(), old, a);
        self.set_dst_addr(a);
        self.set_checksum(c);
        old
    }

    /// Decrement the TTL and update the checksum incrementally (RFC 1624 §4
    /// worked example; RFC 1812 §5.3.1). Returns the new TTL, or `None`
    /// without touching the packet if the TTL is already 0 or 1 and the
    /// packet must not be forwarded.
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return None;
        }
        let old_word = rd16(self.buffer.as_ref(), field::TTL);
        let new_word = old_word - 0x0100;
        let c = checksum::update16(self.checksum(), old_word, new_word);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        Some(ttl - 1)
    }

    /// The payload, mutable (up to `total_len`).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let end = usize::from(self.total_len());
        self.buffer.as_mut().get_mut(start..end).unwrap_or(&mut [])
    }
}

/// One IPv4 option: its type octet and its data (without type and length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Option<'a> {
    /// Option type octet (copied flag, class, number).
    pub kind: u8,
    /// Option data after the type and length octets (empty for NOP).
    pub data: &'a [u8],
}

/// Iterator over IPv4 options; stops at End of Option List, yields an error
/// (once) on a malformed option.
#[derive(Debug, Clone)]
pub struct Ipv4OptionIter<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for Ipv4OptionIter<'a> {
    type Item = Result<Ipv4Option<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, rest) = self.data.split_first()?;
        match kind {
            0 => {
                // End of Option List.
                self.data = &[];
                None
            }
            1 => {
                self.data = rest;
                Some(Ok(Ipv4Option { kind, data: &[] }))
            }
            _ => {
                let len = rest.first().copied().map(usize::from);
                match len {
                    Some(len) if len >= 2 && len <= self.data.len() => {
                        let opt = Ipv4Option {
                            kind,
                            data: &self.data[2..len],
                        };
                        self.data = &self.data[len..];
                        Some(Ok(opt))
                    }
                    _ => {
                        self.data = &[];
                        Some(Err(Error::BadIpv4Options))
                    }
                }
            }
        }
    }
}

/// High-level description of an IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Upper-layer protocol.
    pub protocol: IpProtocol,
    /// Payload length (total length minus header).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// TOS byte (DSCP and ECN).
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Parse a checked packet, verifying its header checksum. Options are
    /// skipped; fragment fields other than DF are not represented.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self> {
        if !p.verify_checksum() {
            return Err(Error::BadIpv4Checksum);
        }
        Ok(Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: p.payload().len(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }

    /// Length of the header this repr emits.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write a 20-byte header with its checksum at the start of `buf`
    /// (the payload is the caller's); returns 20.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall);
        }
        let total = self
            .payload_len
            .checked_add(HEADER_LEN)
            .and_then(|t| u16::try_from(t).ok())
            .ok_or(Error::InvalidArgument)?;
        wr8(buf, field::VER_IHL, 0x45);
        wr8(buf, field::TOS, self.tos);
        wr16(buf, field::LENGTH, total);
        wr16(buf, field::IDENT, self.ident);
        wr16(buf, field::FLG_OFF, if self.dont_frag { 0x4000 } else { 0 });
        wr8(buf, field::TTL, self.ttl);
        wr8(buf, field::PROTOCOL, self.protocol.0);
        wr16(buf, field::CHECKSUM, 0);
        wr_bytes(buf, field::SRC, &self.src_addr.octets());
        wr_bytes(buf, field::DST, &self.dst_addr.octets());
        let c = checksum::checksum(&buf[..HEADER_LEN]);
        wr16(buf, field::CHECKSUM, c);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // scapy: bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=1, ttl=64, flags="DF")/UDP(sport=1,dport=2))
    const UDP_PKT: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x26, 0xce, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x02, 0x00, 0x08, 0xeb, 0xd8,
    ];

    #[test]
    fn parse_and_checksum() {
        let p = Ipv4Packet::new_checked(&UDP_PKT[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 8);
        let mut out = [0u8; 20];
        r.emit(&mut out).unwrap();
        assert_eq!(out, UDP_PKT[..20]);
    }

    #[test]
    fn errors() {
        let mut b = UDP_PKT;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..19]).unwrap_err(),
            Error::TruncatedIpv4
        );
        assert_eq!(
            Ipv4Packet::new_checked(&b[..27]).unwrap_err(),
            Error::TruncatedIpv4
        );
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), Error::BadIhl);
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::BadIpVersion
        );
        b[0] = 0x45;
        b[3] = 19;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::BadTotalLength
        );
        b[3] = 28;
        b[10] ^= 1;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), Error::BadIpv4Checksum);
    }

    #[test]
    fn ttl_and_addr_rewrite_keep_checksum() {
        let mut b = UDP_PKT;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.decrement_ttl(), Some(63));
        assert!(p.verify_checksum());
        p.rewrite_src_addr(Ipv4Addr::new(192, 168, 255, 254));
        p.rewrite_dst_addr(Ipv4Addr::new(0, 0, 0, 0));
        assert!(p.verify_checksum());
        p.set_ttl(1);
        p.fill_checksum();
        assert_eq!(p.decrement_ttl(), None);
    }

    #[test]
    fn options() {
        // IHL 7: NOP, router alert (4 bytes), EOL, pad.
        let mut b = [0u8; 28];
        b[0] = 0x47;
        b[3] = 28;
        b[20..28].copy_from_slice(&[1, 148, 4, 0, 0, 0, 0, 0]);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        let opts: Vec<_> = p.option_iter().collect();
        assert_eq!(opts.len(), 2);
        assert_eq!(opts[1].unwrap().kind, 148);
        assert_eq!(opts[1].unwrap().data, &[0, 0]);
        b[22] = 9;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.option_iter().any(|o| o == Err(Error::BadIpv4Options)));
    }
}
