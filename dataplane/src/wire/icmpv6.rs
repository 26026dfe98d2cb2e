//! ICMP for IPv6 (RFC 4443): echo, destination unreachable, packet too big,
//! time exceeded, parameter problem, and neighbour discovery (see
//! [`super::ndisc`]).

use core::net::{IpAddr, Ipv6Addr};

use super::checksum;
use super::embedded::EmbeddedFlow;
use super::ip::IpProtocol;
use super::ndisc::NdiscRepr;
use super::{Error, Result, rd8, rd16, rd32, wr_bytes, wr8, wr16, wr32};

/// Length of the ICMPv6 header plus the 4-byte message-specific word.
pub const HEADER_LEN: usize = 8;

/// Most bytes of the invoking packet to quote in an error so the reply does
/// not exceed the minimum IPv6 MTU (RFC 4443 §2.4 (c)).
pub const MAX_QUOTE: usize = 1280 - 40 - HEADER_LEN;

/// ICMPv6 message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmpv6Message(pub u8);

impl Icmpv6Message {
    /// Destination unreachable.
    pub const DST_UNREACHABLE: Icmpv6Message = Icmpv6Message(1);
    /// Packet too big.
    pub const PKT_TOO_BIG: Icmpv6Message = Icmpv6Message(2);
    /// Time exceeded.
    pub const TIME_EXCEEDED: Icmpv6Message = Icmpv6Message(3);
    /// Parameter problem.
    pub const PARAM_PROBLEM: Icmpv6Message = Icmpv6Message(4);
    /// Echo request.
    pub const ECHO_REQUEST: Icmpv6Message = Icmpv6Message(128);
    /// Echo reply.
    pub const ECHO_REPLY: Icmpv6Message = Icmpv6Message(129);
    /// Router solicitation.
    pub const ROUTER_SOLICIT: Icmpv6Message = Icmpv6Message(133);
    /// Router advertisement.
    pub const ROUTER_ADVERT: Icmpv6Message = Icmpv6Message(134);
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: Icmpv6Message = Icmpv6Message(135);
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: Icmpv6Message = Icmpv6Message(136);
    /// Redirect.
    pub const REDIRECT: Icmpv6Message = Icmpv6Message(137);

    /// Whether this is an error message (type < 128, RFC 4443 §2.1) quoting
    /// the invoking packet.
    pub const fn is_error(self) -> bool {
        self.0 < 128
    }

    /// Whether this is one of the neighbour discovery messages 133..=137.
    pub const fn is_ndisc(self) -> bool {
        matches!(self.0, 133..=137)
    }
}

/// A checked view of an ICMPv6 message (the upper-layer payload).
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wrap a message, checking the 8-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::TruncatedIcmpv6);
        }
        Ok(Icmpv6Packet { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> Icmpv6Message {
        Icmpv6Message(rd8(self.buffer.as_ref(), 0))
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        rd8(self.buffer.as_ref(), 1)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), 2)
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        rd16(self.buffer.as_ref(), 4)
    }

    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        rd16(self.buffer.as_ref(), 6)
    }

    /// MTU of a packet-too-big message.
    pub fn pkt_too_big_mtu(&self) -> u32 {
        rd32(self.buffer.as_ref(), 4)
    }

    /// Pointer of a parameter-problem message.
    pub fn param_problem_ptr(&self) -> u32 {
        rd32(self.buffer.as_ref(), 4)
    }

    /// Body after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The whole message.
    pub fn message(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The flow of the packet quoted by an error message.
    pub fn embedded(&self) -> Result<EmbeddedFlow> {
        if !self.msg_type().is_error() {
            return Err(Error::BadEmbedded);
        }
        EmbeddedFlow::parse_v6(self.data())
    }

    /// Whether the checksum verifies with the IPv6 pseudo-header.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let Ok(len) = u32::try_from(self.message().len()) else {
            return false;
        };
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, len);
        checksum::l4_verify(ph, self.message())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Set the type (checksum not updated).
    pub fn set_msg_type(&mut self, t: Icmpv6Message) {
        wr8(self.buffer.as_mut(), 0, t.0);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 2, v);
    }

    /// Set the echo identifier (checksum not updated).
    pub fn set_echo_ident(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 4, v);
    }

    /// Replace the echo identifier, updating the checksum. Returns the old value.
    pub fn rewrite_echo_ident(&mut self, v: u16) -> u16 {
        let old = self.echo_ident();
        let c = checksum::update16(self.checksum(), old, v);
        self.set_echo_ident(v);
        self.set_checksum(c);
        old
    }

    /// Adjust the checksum for an address change in the pseudo-header.
    pub fn update_checksum_for_addr(&mut self, old: &IpAddr, new: &IpAddr) -> Result<()> {
        let c = checksum::update_addr(self.checksum(), old, new)?;
        self.set_checksum(c);
        Ok(())
    }

    /// Recompute the checksum from scratch.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<()> {
        let len = u32::try_from(self.message().len()).map_err(|_| Error::InvalidArgument)?;
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, len);
        self.set_checksum(0);
        let c = checksum::l4_checksum(ph, self.message());
        self.set_checksum(c);
        Ok(())
    }

    /// The body, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// High-level description of an ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// Code (0 no route, 1 prohibited, 3 address unreachable, 4 port unreachable...).
        code: u8,
        /// The quoted invoking packet.
        original: &'a [u8],
    },
    /// Packet too big.
    PacketTooBig {
        /// MTU of the next hop.
        mtu: u32,
        /// The quoted invoking packet.
        original: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// Code (0 hop limit, 1 reassembly).
        code: u8,
        /// The quoted invoking packet.
        original: &'a [u8],
    },
    /// Parameter problem.
    ParamProblem {
        /// Code.
        code: u8,
        /// Offset of the problem in the invoking packet.
        pointer: u32,
        /// The quoted invoking packet.
        original: &'a [u8],
    },
    /// Neighbour discovery.
    Ndisc(NdiscRepr),
}

impl<'a> Icmpv6Repr<'a> {
    /// Parse a checked message, verifying its checksum with the pseudo-header
    /// of `src`/`dst`. Unknown types are [`Error::UnsupportedIcmpType`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Icmpv6Packet<&'a T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> Result<Self> {
        if !p.verify_checksum(src, dst) {
            return Err(Error::BadL4Checksum);
        }
        let buf: &'a [u8] = <T as AsRef<[u8]>>::as_ref(p.buffer);
        let data = buf.get(HEADER_LEN..).unwrap_or(&[]);
        let code = p.msg_code();
        Ok(match p.msg_type() {
            Icmpv6Message::ECHO_REQUEST if code == 0 => Icmpv6Repr::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            },
            Icmpv6Message::ECHO_REPLY if code == 0 => Icmpv6Repr::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            },
            Icmpv6Message::DST_UNREACHABLE => Icmpv6Repr::DstUnreachable {
                code,
                original: data,
            },
            Icmpv6Message::PKT_TOO_BIG => Icmpv6Repr::PacketTooBig {
                mtu: p.pkt_too_big_mtu(),
                original: data,
            },
            Icmpv6Message::TIME_EXCEEDED => Icmpv6Repr::TimeExceeded {
                code,
                original: data,
            },
            Icmpv6Message::PARAM_PROBLEM => Icmpv6Repr::ParamProblem {
                code,
                pointer: p.param_problem_ptr(),
                original: data,
            },
            t if t.is_ndisc() => Icmpv6Repr::Ndisc(NdiscRepr::parse(buf)?),
            _ => return Err(Error::UnsupportedIcmpType),
        })
    }

    /// The echo reply answering this echo request.
    pub fn echo_reply(&self) -> Option<Icmpv6Repr<'a>> {
        match *self {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => Some(Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            }),
            _ => None,
        }
    }

    /// Message length.
    pub fn len(&self) -> usize {
        match self {
            Icmpv6Repr::EchoRequest { data, .. } | Icmpv6Repr::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
            Icmpv6Repr::DstUnreachable { original, .. }
            | Icmpv6Repr::PacketTooBig { original, .. }
            | Icmpv6Repr::TimeExceeded { original, .. }
            | Icmpv6Repr::ParamProblem { original, .. } => HEADER_LEN + original.len(),
            Icmpv6Repr::Ndisc(n) => n.len(),
        }
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Write the message at the start of `buf` with its checksum for the
    /// pseudo-header of `src`/`dst`; returns its length.
    pub fn emit(&self, buf: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<usize> {
        let len = self.len();
        let len32 = u32::try_from(len).map_err(|_| Error::InvalidArgument)?;
        let out = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        let mut simple = |ty: u8, code: u8, word: u32, body: &[u8]| {
            wr8(out, 0, ty);
            wr8(out, 1, code);
            wr16(out, 2, 0);
            wr32(out, 4, word);
            wr_bytes(out, HEADER_LEN, body);
        };
        match *self {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => simple(128, 0, (u32::from(ident) << 16) | u32::from(seq_no), data),
            Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => simple(129, 0, (u32::from(ident) << 16) | u32::from(seq_no), data),
            Icmpv6Repr::DstUnreachable { code, original } => simple(1, code, 0, original),
            Icmpv6Repr::PacketTooBig { mtu, original } => simple(2, 0, mtu, original),
            Icmpv6Repr::TimeExceeded { code, original } => simple(3, code, 0, original),
            Icmpv6Repr::ParamProblem {
                code,
                pointer,
                original,
            } => simple(4, code, pointer, original),
            Icmpv6Repr::Ndisc(n) => {
                n.emit_body(out)?;
            }
        }
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, len32);
        let c = checksum::l4_checksum(ph, out);
        wr16(out, 2, c);
        Ok(len)
    }
}
