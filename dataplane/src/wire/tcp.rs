//! TCP (RFC 9293) headers, options and the MSS clamp.

use core::fmt;
use core::net::IpAddr;
use core::ops::{BitAnd, BitOr, BitOrAssign};

use super::checksum;
use super::ip::IpProtocol;
use super::{Error, Result, rd8, rd16, rd32, wr_bytes, wr8, wr16, wr32};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// The eight TCP control bits (RFC 9293 §3.1, RFC 3168 for ECE/CWR).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECE.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// CWR.
    pub const CWR: TcpFlags = TcpFlags(0x80);
    /// No flag set.
    pub const NONE: TcpFlags = TcpFlags(0);

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether this is a connection request: SYN without ACK (nor RST).
    pub const fn is_syn_only(self) -> bool {
        self.0 & (0x02 | 0x10 | 0x04) == 0x02
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u8, char); 8] = [
            (0x02, 'S'),
            (0x10, 'A'),
            (0x01, 'F'),
            (0x04, 'R'),
            (0x08, 'P'),
            (0x20, 'U'),
            (0x40, 'E'),
            (0x80, 'C'),
        ];
        for (bit, c) in NAMES {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list (kind 0).
    EndOfList,
    /// No-operation (kind 1).
    NoOperation,
    /// Maximum segment size (kind 2, RFC 9293 §3.2).
    MaxSegmentSize(u16),
    /// Window scale shift count (kind 3, RFC 7323 §2).
    WindowScale(u8),
    /// SACK permitted (kind 4, RFC 2018).
    SackPermitted,
    /// SACK blocks, raw (kind 5, RFC 2018).
    SackRange(&'a [u8]),
    /// Timestamps (kind 8, RFC 7323 §3).
    Timestamps {
        /// TSval.
        tsval: u32,
        /// TSecr.
        tsecr: u32,
    },
    /// Any other option: kind and data (without kind and length).
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data.
        data: &'a [u8],
    },
}

/// Iterator over TCP options. Stops after End of List; yields one
/// [`Error::BadTcpOptions`] and stops on a malformed option (length below 2,
/// running past the header, or a wrong length for a known kind).
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> TcpOptionIter<'a> {
    /// Iterate over an options area.
    pub fn new(data: &'a [u8]) -> Self {
        TcpOptionIter { data, pos: 0 }
    }

    /// Next option together with its offset inside the options area.
    pub fn next_with_offset(&mut self) -> Option<Result<(usize, TcpOption<'a>)>> {
        let start = self.pos;
        let rest = self.data.get(start..)?;
        let (&kind, _) = rest.split_first()?;
        match kind {
            0 => {
                self.pos = self.data.len();
                Some(Ok((start, TcpOption::EndOfList)))
            }
            1 => {
                self.pos += 1;
                Some(Ok((start, TcpOption::NoOperation)))
            }
            _ => {
                let len = match rest.get(1) {
                    Some(&l) if l >= 2 && usize::from(l) <= rest.len() => usize::from(l),
                    _ => return self.fail(),
                };
                let data = &rest[2..len];
                let opt = match (kind, len) {
                    (2, 4) => TcpOption::MaxSegmentSize(rd16(data, 0)),
                    (3, 3) => TcpOption::WindowScale(data[0]),
                    (4, 2) => TcpOption::SackPermitted,
                    (5, _) if len >= 10 && (len - 2) % 8 == 0 => TcpOption::SackRange(data),
                    (8, 10) => TcpOption::Timestamps {
                        tsval: rd32(data, 0),
                        tsecr: rd32(data, 4),
                    },
                    (2..=5 | 8, _) => return self.fail(),
                    _ => TcpOption::Unknown { kind, data },
                };
                self.pos += len;
                Some(Ok((start, opt)))
            }
        }
    }

    fn fail(&mut self) -> Option<Result<(usize, TcpOption<'a>)>> {
        self.pos = self.data.len();
        Some(Err(Error::BadTcpOptions))
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_offset().map(|r| r.map(|(_, o)| o))
    }
}

/// A checked view of a TCP segment (the IP payload: header, options, data).
///
/// `new_checked` guarantees: data offset ≥ 5 and the whole header with
/// options present.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wrap a segment, validating the header length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::TruncatedTcp);
        }
        let hl = usize::from(rd8(b, field::OFF) >> 4) * 4;
        if hl < HEADER_LEN {
            return Err(Error::BadTcpDataOffset);
        }
        if b.len() < hl {
            return Err(Error::TruncatedTcp);
        }
        Ok(TcpPacket { buffer })
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

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        rd32(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        rd32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(rd8(self.buffer.as_ref(), field::OFF) >> 4) * 4
    }

    /// Control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(rd8(self.buffer.as_ref(), field::FLAGS))
    }

    /// Window.
    pub fn window_len(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options area.
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// Iterate over the options.
    pub fn option_iter(&self) -> TcpOptionIter<'_> {
        TcpOptionIter::new(self.options())
    }

    /// The MSS option value, if present. A malformed option list gives an error.
    pub fn mss(&self) -> Result<Option<u16>> {
        Ok(find_mss(self.options())?.map(|(_, v)| v))
    }

    /// Segment data after the header.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// The whole segment.
    pub fn segment(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Whether the checksum verifies with the pseudo-header of `src`/`dst`.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let Ok(len) = u32::try_from(self.segment().len()) else {
            return false;
        };
        match checksum::pseudo_header(src, dst, IpProtocol::TCP.0, len) {
            Ok(ph) => checksum::l4_verify(ph, self.segment()),
            Err(_) => false,
        }
    }
}

/// Offset (in the options area) and value of the first MSS option.
fn find_mss(options: &[u8]) -> Result<Option<(usize, u16)>> {
    let mut it = TcpOptionIter::new(options);
    while let Some(r) = it.next_with_offset() {
        match r? {
            (off, TcpOption::MaxSegmentSize(v)) => return Ok(Some((off, v))),
            (_, TcpOption::EndOfList) => break,
            _ => {}
        }
    }
    Ok(None)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Set the source port (checksum not updated).
    pub fn set_src_port(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Set the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Set the sequence number (checksum not updated).
    pub fn set_seq_number(&mut self, v: u32) {
        wr32(self.buffer.as_mut(), field::SEQ, v);
    }

    /// Set the acknowledgment number (checksum not updated).
    pub fn set_ack_number(&mut self, v: u32) {
        wr32(self.buffer.as_mut(), field::ACK, v);
    }

    /// Set the control bits (checksum not updated).
    pub fn set_flags(&mut self, f: TcpFlags) {
        wr8(self.buffer.as_mut(), field::FLAGS, f.0);
    }

    /// Set the window (checksum not updated).
    pub fn set_window_len(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), field::WINDOW, v);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Set the urgent pointer (checksum not updated).
    pub fn set_urgent_at(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), field::URGENT, v);
    }

    /// Replace the source port, updating the checksum (RFC 1624 eqn. 3).
    /// Returns the old port.
    pub fn rewrite_src_port(&mut self, v: u16) -> u16 {
        let old = self.src_port();
        let c = checksum::update16(self.checksum(), old, v);
        self.set_src_port(v);
        self.set_checksum(c);
        old
    }

    /// Replace the destination port, updating the checksum. Returns the old port.
    pub fn rewrite_dst_port(&mut self, v: u16) -> u16 {
        let old = self.dst_port();
        let c = checksum::update16(self.checksum(), old, v);
        self.set_dst_port(v);
        self.set_checksum(c);
        old
    }

    /// Adjust the checksum for an address change in the pseudo-header (the
    /// IP header has been rewritten by the caller).
    pub fn update_checksum_for_addr(&mut self, old: &IpAddr, new: &IpAddr) -> Result<()> {
        let c = checksum::update_addr(self.checksum(), old, new)?;
        self.set_checksum(c);
        Ok(())
    }

    /// Recompute the checksum from scratch with the pseudo-header of `src`/`dst`.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) -> Result<()> {
        let len = u32::try_from(self.segment().len()).map_err(|_| Error::InvalidArgument)?;
        let ph = checksum::pseudo_header(src, dst, IpProtocol::TCP.0, len)?;
        self.set_checksum(0);
        let c = checksum::l4_checksum(ph, self.segment());
        self.set_checksum(c);
        Ok(())
    }

    /// Clamp the MSS option to `max`, updating the checksum incrementally.
    ///
    /// The pipeline calls this on SYNs (and SYN-ACKs) of flows it
    /// encapsulates (IP-in-IP), so that segments still fit the path MTU after
    /// the outer header is added. Returns the old MSS if it was lowered,
    /// `None` if there was no MSS option or it was already ≤ `max`. A
    /// malformed option list is an error and leaves the segment untouched.
    /// The option may sit at an odd offset (after a single NOP): the
    /// checksum update handles the misaligned words.
    pub fn clamp_mss(&mut self, max: u16) -> Result<Option<u16>> {
        let Some((off, mss)) = find_mss(self.options())? else {
            return Ok(None);
        };
        if mss <= max {
            return Ok(None);
        }
        let value_off = HEADER_LEN + off + 2;
        let hc = self.checksum();
        let c = checksum::rewrite_bytes(self.buffer.as_mut(), value_off, &max.to_be_bytes(), hc)?;
        self.set_checksum(c);
        Ok(Some(mss))
    }

    /// The segment data, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        self.buffer.as_mut().get_mut(h..).unwrap_or(&mut [])
    }
}

/// High-level description of a TCP segment, for building replies (RST,
/// SYN-ACK with SYN cookies, redirect responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number (emitted as is, even without the ACK flag).
    pub ack_number: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Window.
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window scale option.
    pub window_scale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// Timestamps option (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// Segment data.
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Parse a checked segment, verifying its checksum against `src`/`dst`.
    /// SACK blocks and unknown options are not represented.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &TcpPacket<&'a T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<Self> {
        if !p.verify_checksum(src, dst) {
            return Err(Error::BadL4Checksum);
        }
        let mut r = TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            urgent_at: p.urgent_at(),
            mss: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            payload: &[],
        };
        let buf: &'a [u8] = <T as AsRef<[u8]>>::as_ref(p.buffer);
        let hl = p.header_len();
        for opt in TcpOptionIter::new(buf.get(HEADER_LEN..hl).unwrap_or(&[])) {
            match opt? {
                TcpOption::MaxSegmentSize(v) => r.mss = Some(v),
                TcpOption::WindowScale(v) => r.window_scale = Some(v),
                TcpOption::SackPermitted => r.sack_permitted = true,
                TcpOption::Timestamps { tsval, tsecr } => r.timestamps = Some((tsval, tsecr)),
                _ => {}
            }
        }
        r.payload = buf.get(hl..).unwrap_or(&[]);
        Ok(r)
    }

    /// Length of the options this repr emits (a multiple of 4).
    pub fn options_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.sack_permitted || self.timestamps.is_some() {
            // SACK-permitted + timestamps share 12 bytes; either alone is
            // padded with NOPs to 4 or 12.
            n += if self.timestamps.is_some() { 12 } else { 4 };
        }
        if self.window_scale.is_some() {
            n += 4;
        }
        n
    }

    /// Header length this repr emits.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Total segment length (header and payload).
    pub fn segment_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Write the segment (header, options, payload) at the start of `buf`
    /// with its checksum for the pseudo-header of `src`/`dst`; returns the
    /// segment length.
    pub fn emit(&self, buf: &mut [u8], src: &IpAddr, dst: &IpAddr) -> Result<usize> {
        let hl = self.header_len();
        let total = self.segment_len();
        let len32 = u32::try_from(total).map_err(|_| Error::InvalidArgument)?;
        let ph = checksum::pseudo_header(src, dst, IpProtocol::TCP.0, len32)?;
        let out = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        wr16(out, field::SRC_PORT, self.src_port);
        wr16(out, field::DST_PORT, self.dst_port);
        wr32(out, field::SEQ, self.seq_number);
        wr32(out, field::ACK, self.ack_number);
        wr8(out, field::OFF, ((hl / 4) as u8) << 4);
        wr8(out, field::FLAGS, self.flags.0);
        wr16(out, field::WINDOW, self.window_len);
        wr16(out, field::CHECKSUM, 0);
        wr16(out, field::URGENT, self.urgent_at);
        let mut o = HEADER_LEN;
        if let Some(mss) = self.mss {
            wr_bytes(out, o, &[2, 4]);
            wr16(out, o + 2, mss);
            o += 4;
        }
        match (self.sack_permitted, self.timestamps) {
            (sp, Some((tsval, tsecr))) => {
                if sp {
                    wr_bytes(out, o, &[4, 2, 8, 10]);
                } else {
                    wr_bytes(out, o, &[1, 1, 8, 10]);
                }
                wr32(out, o + 4, tsval);
                wr32(out, o + 8, tsecr);
                o += 12;
            }
            (true, None) => {
                wr_bytes(out, o, &[1, 1, 4, 2]);
                o += 4;
            }
            (false, None) => {}
        }
        if let Some(ws) = self.window_scale {
            wr_bytes(out, o, &[1, 3, 3, ws]);
        }
        wr_bytes(out, hl, self.payload);
        let c = checksum::l4_checksum(ph, out);
        wr16(out, field::CHECKSUM, c);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_walk_and_errors() {
        let opts = [
            2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0,
        ];
        let v: Vec<_> = TcpOptionIter::new(&opts).collect::<Result<_>>().unwrap();
        assert_eq!(
            v,
            vec![
                TcpOption::MaxSegmentSize(1460),
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
                TcpOption::SackPermitted,
                TcpOption::Timestamps { tsval: 1, tsecr: 2 },
                TcpOption::EndOfList
            ]
        );
        for bad in [&[2u8, 3, 0][..], &[2, 4, 5], &[3, 1], &[8, 10, 0], &[99]] {
            assert!(TcpOptionIter::new(bad).any(|o| o.is_err()), "{bad:?}");
        }
    }
}
