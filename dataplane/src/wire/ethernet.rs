//! Ethernet II frames with an optional 802.1Q (or 802.1ad) VLAN tag.

use core::fmt;
use core::net::Ipv6Addr;

use super::{Error, Result, rd_array, rd16, wr_bytes, wr16};

/// A 48-bit Ethernet (MAC) address.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);
    /// 00:00:00:00:00:00 (ARP's "unknown" target hardware address).
    pub const UNSPECIFIED: EthernetAddress = EthernetAddress([0; 6]);

    /// The address from its six octets.
    pub const fn from_bytes(b: [u8; 6]) -> Self {
        EthernetAddress(b)
    }

    /// The six octets.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is the broadcast address.
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// Whether the group bit (I/G, least significant bit of the first octet) is set.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is a unicast address (group bit clear).
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// The Ethernet multicast address an IPv6 multicast group maps to
    /// (RFC 2464 §7: 33:33 followed by the last four octets).
    pub const fn from_ipv6_multicast(group: &Ipv6Addr) -> Self {
        let o = group.octets();
        EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// An EtherType value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// 802.1Q customer VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: EtherType = EtherType(0x88a8);

    /// Whether this value announces a VLAN tag.
    pub const fn is_vlan(self) -> bool {
        self.0 == Self::VLAN.0 || self.0 == Self::QINQ.0
    }
}

/// An 802.1Q tag control information: priority, drop eligible, VLAN id.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (12 bits).
    pub vid: u16,
}

impl VlanTag {
    /// Decode a tag control information word.
    pub const fn from_tci(tci: u16) -> Self {
        VlanTag {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    /// Encode as a tag control information word (extra bits are masked off).
    pub const fn tci(&self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | if self.dei { 0x1000 } else { 0 } | (self.vid & 0x0fff)
    }
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of a single-tagged Ethernet header.
pub const VLAN_HEADER_LEN: usize = 18;

/// A checked view of an Ethernet II frame, optionally with one VLAN tag.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
    header_len: usize,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap a frame, checking that the Ethernet header (and the VLAN tag, if
    /// the EtherType announces one) fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::TruncatedEthernet);
        }
        let header_len = if EtherType(rd16(b, 12)).is_vlan() {
            if b.len() < VLAN_HEADER_LEN {
                return Err(Error::TruncatedVlan);
            }
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        };
        Ok(EthernetFrame { buffer, header_len })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Header length: 14, or 18 with a VLAN tag.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress(rd_array(self.buffer.as_ref(), 0))
    }

    /// Source address.
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress(rd_array(self.buffer.as_ref(), 6))
    }

    /// The outer EtherType (0x8100 / 0x88a8 when tagged).
    pub fn outer_ethertype(&self) -> EtherType {
        EtherType(rd16(self.buffer.as_ref(), 12))
    }

    /// The VLAN tag, if any.
    pub fn vlan(&self) -> Option<VlanTag> {
        (self.header_len == VLAN_HEADER_LEN)
            .then(|| VlanTag::from_tci(rd16(self.buffer.as_ref(), 14)))
    }

    /// The EtherType of the payload (after the VLAN tag, if any).
    pub fn ethertype(&self) -> EtherType {
        EtherType(rd16(self.buffer.as_ref(), self.header_len - 2))
    }

    /// The payload (everything after the header, including any padding).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Set the destination address.
    pub fn set_dst_addr(&mut self, a: EthernetAddress) {
        wr_bytes(self.buffer.as_mut(), 0, &a.0);
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, a: EthernetAddress) {
        wr_bytes(self.buffer.as_mut(), 6, &a.0);
    }

    /// Swap source and destination addresses (for replies built in place).
    pub fn swap_addrs(&mut self) {
        let (s, d) = (self.src_addr(), self.dst_addr());
        self.set_src_addr(d);
        self.set_dst_addr(s);
    }

    /// Set the payload EtherType (after the VLAN tag, if any).
    pub fn set_ethertype(&mut self, t: EtherType) {
        let off = self.header_len - 2;
        wr16(self.buffer.as_mut(), off, t.0);
    }

    /// Rewrite the VLAN tag in place. Fails with [`Error::InvalidArgument`]
    /// on an untagged frame (adding a tag changes the frame length, which the
    /// caller does by prepending with [`EthernetRepr::emit`]).
    pub fn set_vlan(&mut self, tag: VlanTag) -> Result<()> {
        if self.header_len != VLAN_HEADER_LEN {
            return Err(Error::InvalidArgument);
        }
        wr16(self.buffer.as_mut(), 14, tag.tci());
        Ok(())
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len;
        self.buffer.as_mut().get_mut(h..).unwrap_or(&mut [])
    }
}

/// High-level description of an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// 802.1Q tag (emitted with TPID 0x8100), if any.
    pub vlan: Option<VlanTag>,
    /// Payload EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Parse a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan: frame.vlan(),
            ethertype: frame.ethertype(),
        })
    }

    /// Length of the header this repr emits.
    pub const fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Write the header at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.header_len();
        if buf.len() < len {
            return Err(Error::BufferTooSmall);
        }
        wr_bytes(buf, 0, &self.dst_addr.0);
        wr_bytes(buf, 6, &self.src_addr.0);
        match self.vlan {
            Some(tag) => {
                wr16(buf, 12, EtherType::VLAN.0);
                wr16(buf, 14, tag.tci());
                wr16(buf, 16, self.ethertype.0);
            }
            None => wr16(buf, 12, self.ethertype.0),
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_frame() {
        let f: [u8; 20] = [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x81, 0x00, 0xa0, 0x64, 0x08, 0x00, 0x45, 0x00,
        ];
        let frame = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(frame.header_len(), 18);
        assert_eq!(
            frame.vlan(),
            Some(VlanTag {
                pcp: 5,
                dei: false,
                vid: 100
            })
        );
        assert_eq!(frame.ethertype(), EtherType::IPV4);
        assert_eq!(frame.payload(), &[0x45, 0x00]);
        let repr = EthernetRepr::parse(&frame).unwrap();
        let mut out = [0u8; 18];
        assert_eq!(repr.emit(&mut out).unwrap(), 18);
        assert_eq!(&out[..], &f[..18]);
        assert_eq!(
            EthernetFrame::new_checked(&f[..17]).unwrap_err(),
            Error::TruncatedVlan
        );
        assert_eq!(
            EthernetFrame::new_checked(&f[..13]).unwrap_err(),
            Error::TruncatedEthernet
        );
    }

    #[test]
    fn address_kinds() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        let m = EthernetAddress::from_ipv6_multicast(&"ff02::1:ff00:1234".parse().unwrap());
        assert_eq!(m.to_string(), "33:33:ff:00:12:34");
        assert!(EthernetAddress([2, 0, 0, 0, 0, 1]).is_unicast());
    }
}
