//! ARP (RFC 826) for Ethernet and IPv4.

use core::net::Ipv4Addr;

use super::ethernet::EthernetAddress;
use super::{Error, Result, rd_array, rd8, rd16, wr_bytes, wr8, wr16};

/// Length of an Ethernet/IPv4 ARP packet.
pub const ETH_IPV4_LEN: usize = 28;

/// ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpOperation(pub u16);

impl ArpOperation {
    /// Request.
    pub const REQUEST: ArpOperation = ArpOperation(1);
    /// Reply.
    pub const REPLY: ArpOperation = ArpOperation(2);
}

/// A checked view of an ARP packet of any hardware/protocol type.
///
/// `new_checked` guarantees the fixed part and both address pairs (as sized
/// by the hardware and protocol length fields) are present.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wrap a buffer starting with an ARP packet, validating lengths.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < 8 {
            return Err(Error::TruncatedArp);
        }
        let need = 8 + 2 * (usize::from(rd8(b, 4)) + usize::from(rd8(b, 5)));
        if b.len() < need {
            return Err(Error::TruncatedArp);
        }
        Ok(ArpPacket { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 = Ethernet).
    pub fn hardware_type(&self) -> u16 {
        rd16(self.buffer.as_ref(), 0)
    }

    /// Protocol type (0x0800 = IPv4).
    pub fn protocol_type(&self) -> u16 {
        rd16(self.buffer.as_ref(), 2)
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        rd8(self.buffer.as_ref(), 4)
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        rd8(self.buffer.as_ref(), 5)
    }

    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation(rd16(self.buffer.as_ref(), 6))
    }

    fn field(&self, index: usize) -> &[u8] {
        let h = usize::from(self.hardware_len());
        let p = usize::from(self.protocol_len());
        let (start, len) = match index {
            0 => (8, h),
            1 => (8 + h, p),
            2 => (8 + h + p, h),
            _ => (8 + 2 * h + p, p),
        };
        self.buffer.as_ref().get(start..start + len).unwrap_or(&[])
    }

    /// Sender hardware address bytes.
    pub fn source_hardware_addr(&self) -> &[u8] {
        self.field(0)
    }

    /// Sender protocol address bytes.
    pub fn source_protocol_addr(&self) -> &[u8] {
        self.field(1)
    }

    /// Target hardware address bytes.
    pub fn target_hardware_addr(&self) -> &[u8] {
        self.field(2)
    }

    /// Target protocol address bytes.
    pub fn target_protocol_addr(&self) -> &[u8] {
        self.field(3)
    }
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Operation.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub source_hardware_addr: EthernetAddress,
    /// Sender protocol address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target hardware address.
    pub target_hardware_addr: EthernetAddress,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parse a checked packet; anything but Ethernet (1) / IPv4 (0x0800) with
    /// 6/4-byte addresses is [`Error::UnsupportedArp`].
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<Self> {
        if p.hardware_type() != 1
            || p.protocol_type() != 0x0800
            || p.hardware_len() != 6
            || p.protocol_len() != 4
        {
            return Err(Error::UnsupportedArp);
        }
        let b = p.buffer.as_ref();
        Ok(ArpRepr {
            operation: p.operation(),
            source_hardware_addr: EthernetAddress(rd_array(b, 8)),
            source_protocol_addr: Ipv4Addr::from(rd_array::<4>(b, 14)),
            target_hardware_addr: EthernetAddress(rd_array(b, 18)),
            target_protocol_addr: Ipv4Addr::from(rd_array::<4>(b, 24)),
        })
    }

    /// Whether this is a gratuitous ARP (sender and target protocol
    /// addresses equal).
    pub fn is_gratuitous(&self) -> bool {
        self.source_protocol_addr == self.target_protocol_addr
    }

    /// The reply to this request, sent by `our_hw` which owns the target
    /// address (RFC 826 "swap hardware and protocol fields ... put the local
    /// hardware and protocol addresses in the sender fields").
    pub fn reply(&self, our_hw: EthernetAddress) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::REPLY,
            source_hardware_addr: our_hw,
            source_protocol_addr: self.target_protocol_addr,
            target_hardware_addr: self.source_hardware_addr,
            target_protocol_addr: self.source_protocol_addr,
        }
    }

    /// Length this repr emits (28).
    pub const fn len(&self) -> usize {
        ETH_IPV4_LEN
    }

    /// Always false; present for symmetry with [`ArpRepr::len`].
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Write the packet at the start of `buf`; returns 28.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.len() < ETH_IPV4_LEN {
            return Err(Error::BufferTooSmall);
        }
        wr16(buf, 0, 1);
        wr16(buf, 2, 0x0800);
        wr8(buf, 4, 6);
        wr8(buf, 5, 4);
        wr16(buf, 6, self.operation.0);
        wr_bytes(buf, 8, &self.source_hardware_addr.0);
        wr_bytes(buf, 14, &self.source_protocol_addr.octets());
        wr_bytes(buf, 18, &self.target_hardware_addr.0);
        wr_bytes(buf, 24, &self.target_protocol_addr.octets());
        Ok(ETH_IPV4_LEN)
    }
}
