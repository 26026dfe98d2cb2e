//! ICMP for IPv4 (RFC 792): echo, destination unreachable (including
//! fragmentation needed, RFC 1191), time exceeded.

use super::checksum;
use super::embedded::EmbeddedFlow;
use super::{Error, Result, rd8, rd16, wr_bytes, wr8, wr16};

/// Length of the ICMP header (type, code, checksum, 4 bytes of rest-of-header).
pub const HEADER_LEN: usize = 8;

/// Most bytes of the original datagram to quote in an error so the reply
/// stays within 576 bytes (RFC 1812 §4.3.2.3).
pub const MAX_QUOTE: usize = 576 - 20 - HEADER_LEN;

/// ICMP message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmpv4Message(pub u8);

impl Icmpv4Message {
    /// Echo reply.
    pub const ECHO_REPLY: Icmpv4Message = Icmpv4Message(0);
    /// Destination unreachable.
    pub const DST_UNREACHABLE: Icmpv4Message = Icmpv4Message(3);
    /// Redirect.
    pub const REDIRECT: Icmpv4Message = Icmpv4Message(5);
    /// Echo request.
    pub const ECHO_REQUEST: Icmpv4Message = Icmpv4Message(8);
    /// Time exceeded.
    pub const TIME_EXCEEDED: Icmpv4Message = Icmpv4Message(11);
    /// Parameter problem.
    pub const PARAM_PROBLEM: Icmpv4Message = Icmpv4Message(12);

    /// Whether this type is an error that quotes the original datagram.
    pub const fn is_error(self) -> bool {
        matches!(self.0, 3 | 4 | 5 | 11 | 12)
    }
}

/// Destination-unreachable codes (RFC 792, RFC 1812 §5.2.7.1).
pub mod unreachable {
    /// Net unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set (RFC 1191: next-hop MTU in bytes 6..8).
    pub const FRAG_NEEDED: u8 = 4;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// Time-exceeded codes.
pub mod time_exceeded {
    /// TTL exceeded in transit.
    pub const TTL: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

/// A checked view of an ICMP message (the IPv4 payload).
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wrap a message, checking the 8-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::TruncatedIcmp);
        }
        Ok(Icmpv4Packet { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message(rd8(self.buffer.as_ref(), 0))
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        rd8(self.buffer.as_ref(), 1)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), 2)
    }

    /// Echo identifier (bytes 4..6).
    pub fn echo_ident(&self) -> u16 {
        rd16(self.buffer.as_ref(), 4)
    }

    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq_no(&self) -> u16 {
        rd16(self.buffer.as_ref(), 6)
    }

    /// Next-hop MTU of a fragmentation-needed message (bytes 6..8, RFC 1191 §4).
    pub fn next_hop_mtu(&self) -> u16 {
        rd16(self.buffer.as_ref(), 6)
    }

    /// The message body after the 8-byte header (echo data, or the quoted
    /// original datagram of an error).
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The flow of the datagram quoted by an error message.
    pub fn embedded(&self) -> Result<EmbeddedFlow> {
        if !self.msg_type().is_error() {
            return Err(Error::BadEmbedded);
        }
        EmbeddedFlow::parse_v4(self.data())
    }

    /// Whether the checksum (over the whole message, no pseudo-header) verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Set the type (checksum not updated).
    pub fn set_msg_type(&mut self, t: Icmpv4Message) {
        wr8(self.buffer.as_mut(), 0, t.0);
    }

    /// Set the code (checksum not updated).
    pub fn set_msg_code(&mut self, c: u8) {
        wr8(self.buffer.as_mut(), 1, c);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 2, v);
    }

    /// Set the echo identifier (checksum not updated).
    pub fn set_echo_ident(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 4, v);
    }

    /// Set the echo sequence number (checksum not updated).
    pub fn set_echo_seq_no(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 6, v);
    }

    /// Replace the echo identifier (the "port" of an ICMP echo flow under
    /// NAT), updating the checksum incrementally. Returns the old value.
    pub fn rewrite_echo_ident(&mut self, v: u16) -> u16 {
        let old = self.echo_ident();
        let c = checksum::update16(self.checksum(), old, v);
        self.set_echo_ident(v);
        self.set_checksum(c);
        old
    }

    /// Turn an echo request into an echo reply in place (type 8 → 0), with an
    /// incremental checksum update; the caller swaps the IP addresses.
    /// Fails with [`Error::InvalidArgument`] if this is not an echo request.
    pub fn make_echo_reply(&mut self) -> Result<()> {
        if self.msg_type() != Icmpv4Message::ECHO_REQUEST {
            return Err(Error::InvalidArgument);
        }
        let old = rd16(self.buffer.as_ref(), 0);
        let new = old & 0x00ff;
        let c = checksum::update16(self.checksum(), old, new);
        self.set_msg_type(Icmpv4Message::ECHO_REPLY);
        self.set_checksum(c);
        Ok(())
    }

    /// Recompute the checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// The message body, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// High-level description of the ICMP messages Tack builds and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
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
        /// Code (see [`unreachable`]).
        code: u8,
        /// Next-hop MTU for [`unreachable::FRAG_NEEDED`], 0 otherwise.
        next_hop_mtu: u16,
        /// The quoted original datagram (IP header and at least 8 bytes).
        original: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// Code (see [`time_exceeded`]).
        code: u8,
        /// The quoted original datagram.
        original: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parse a checked message, verifying its checksum. Other types are
    /// [`Error::UnsupportedIcmpType`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Icmpv4Packet<&'a T>) -> Result<Self> {
        if !p.verify_checksum() {
            return Err(Error::BadL4Checksum);
        }
        let buf: &'a [u8] = <T as AsRef<[u8]>>::as_ref(p.buffer);
        let data = buf.get(HEADER_LEN..).unwrap_or(&[]);
        Ok(match (p.msg_type(), p.msg_code()) {
            (Icmpv4Message::ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            },
            (Icmpv4Message::ECHO_REPLY, 0) => Icmpv4Repr::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            },
            (Icmpv4Message::DST_UNREACHABLE, code) if code <= 15 => Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu: if code == unreachable::FRAG_NEEDED {
                    p.next_hop_mtu()
                } else {
                    0
                },
                original: data,
            },
            (Icmpv4Message::TIME_EXCEEDED, code) if code <= 1 => Icmpv4Repr::TimeExceeded {
                code,
                original: data,
            },
            _ => return Err(Error::UnsupportedIcmpType),
        })
    }

    /// The echo reply answering this echo request.
    pub fn echo_reply(&self) -> Option<Icmpv4Repr<'a>> {
        match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => Some(Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            }),
            _ => None,
        }
    }

    /// Message length.
    pub fn len(&self) -> usize {
        HEADER_LEN
            + match self {
                Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                    data.len()
                }
                Icmpv4Repr::DstUnreachable { original, .. }
                | Icmpv4Repr::TimeExceeded { original, .. } => original.len(),
            }
    }

    /// Always false (an ICMP message has an 8-byte header).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Write the message at the start of `buf` with its checksum; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.len();
        let out = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        let (ty, code, w1, w2, body) = match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (8, 0, ident, seq_no, data),
            Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (0, 0, ident, seq_no, data),
            Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu,
                original,
            } => (3, code, 0, next_hop_mtu, original),
            Icmpv4Repr::TimeExceeded { code, original } => (11, code, 0, 0, original),
        };
        wr8(out, 0, ty);
        wr8(out, 1, code);
        wr16(out, 2, 0);
        wr16(out, 4, w1);
        wr16(out, 6, w2);
        wr_bytes(out, HEADER_LEN, body);
        let c = checksum::checksum(out);
        wr16(out, 2, c);
        Ok(len)
    }
}
