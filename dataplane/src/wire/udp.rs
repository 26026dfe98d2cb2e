//! UDP (RFC 768) datagrams.

use core::net::IpAddr;

use super::checksum;
use super::ip::IpProtocol;
use super::{Error, Result, rd16, wr_bytes, wr16};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A checked view of a UDP datagram.
///
/// `new_checked` guarantees: length field ≥ 8 and that many bytes present
/// (the buffer may be longer; [`UdpPacket::datagram`] stops at the length field).
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wrap a datagram, validating the length field.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::TruncatedUdp);
        }
        let len = usize::from(rd16(b, field::LENGTH));
        if len < HEADER_LEN {
            return Err(Error::BadUdpLength);
        }
        if b.len() < len {
            return Err(Error::TruncatedUdp);
        }
        Ok(UdpPacket { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header and payload).
    pub fn len(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() as usize == HEADER_LEN
    }

    /// Checksum field (0: none computed, IPv4 only).
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram up to its length field.
    pub fn datagram(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(..usize::from(self.len()))
            .unwrap_or(&[])
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        self.datagram().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Whether the checksum verifies with the pseudo-header of `src`/`dst`.
    ///
    /// A zero checksum means "not computed" over IPv4 and verifies (RFC 768);
    /// over IPv6 it is invalid (RFC 8200 §8.1: "IPv6 receivers must discard
    /// UDP packets containing a zero checksum").
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        match checksum::pseudo_header(src, dst, IpProtocol::UDP.0, u32::from(self.len())) {
            Ok(ph) => checksum::l4_verify(ph, self.datagram()),
            Err(_) => false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Set the source port (checksum not updated).
    pub fn set_src_port(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Set the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Apply an incremental change to a checksum that is present: a zero
    /// checksum ("none computed") stays zero, and a computed zero is sent as
    /// 0xffff (RFC 768).
    fn apply(&mut self, f: impl FnOnce(u16) -> u16) {
        let c = self.checksum();
        if c != 0 {
            self.set_checksum(checksum::udp_nonzero(f(c)));
        }
    }

    /// Replace the source port, updating the checksum if present. Returns the old port.
    pub fn rewrite_src_port(&mut self, v: u16) -> u16 {
        let old = self.src_port();
        self.apply(|c| checksum::update16(c, old, v));
        self.set_src_port(v);
        old
    }

    /// Replace the destination port, updating the checksum if present. Returns the old port.
    pub fn rewrite_dst_port(&mut self, v: u16) -> u16 {
        let old = self.dst_port();
        self.apply(|c| checksum::update16(c, old, v));
        self.set_dst_port(v);
        old
    }

    /// Adjust the checksum (if present) for an address change in the
    /// pseudo-header.
    pub fn update_checksum_for_addr(&mut self, old: &IpAddr, new: &IpAddr) -> Result<()> {
        let c = self.checksum();
        if c != 0 {
            let n = checksum::update_addr(c, old, new)?;
            self.set_checksum(checksum::udp_nonzero(n));
        }
        Ok(())
    }

    /// Recompute the checksum from scratch (a computed 0 is sent as 0xffff).
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) -> Result<()> {
        let ph = checksum::pseudo_header(src, dst, IpProtocol::UDP.0, u32::from(self.len()))?;
        self.set_checksum(0);
        let c = checksum::udp_nonzero(checksum::l4_checksum(ph, self.datagram()));
        self.set_checksum(c);
        Ok(())
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }
}

/// High-level description of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> UdpRepr<'a> {
    /// Parse a checked datagram, verifying its checksum against `src`/`dst`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &UdpPacket<&'a T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<Self> {
        if !p.verify_checksum(src, dst) {
            return Err(Error::BadL4Checksum);
        }
        let buf: &'a [u8] = <T as AsRef<[u8]>>::as_ref(p.buffer);
        let end = usize::from(p.len());
        Ok(UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload: buf.get(HEADER_LEN..end).unwrap_or(&[]),
        })
    }

    /// Datagram length.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// Write the datagram at the start of `buf` with its checksum; returns its length.
    pub fn emit(&self, buf: &mut [u8], src: &IpAddr, dst: &IpAddr) -> Result<usize> {
        let len = u16::try_from(self.len()).map_err(|_| Error::InvalidArgument)?;
        let ph = checksum::pseudo_header(src, dst, IpProtocol::UDP.0, u32::from(len))?;
        let out = buf
            .get_mut(..usize::from(len))
            .ok_or(Error::BufferTooSmall)?;
        wr16(out, field::SRC_PORT, self.src_port);
        wr16(out, field::DST_PORT, self.dst_port);
        wr16(out, field::LENGTH, len);
        wr16(out, field::CHECKSUM, 0);
        wr_bytes(out, HEADER_LEN, self.payload);
        let c = checksum::udp_nonzero(checksum::l4_checksum(ph, out));
        wr16(out, field::CHECKSUM, c);
        Ok(usize::from(len))
    }
}
