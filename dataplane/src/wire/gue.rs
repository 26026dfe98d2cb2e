//! The encapsulation between cluster nodes: Generic UDP Encapsulation
//! (draft-ietf-intarea-gue, variant 0), as GLB forwards between its
//! directors. After the outer IP header:
//!
//! ```text
//! UDP   source port (the flow's hash: receivers spread flows by RSS),
//!       destination port (the cluster's), length, checksum 0 (IPv4)
//! GUE   ver 0 | C 0 | hlen 1 | proto (4: IPv4, 41: IPv6) | flags 0
//!       private data: hop (0: sent to the flow's primary, 1: its
//!       backup, GLB's second chance) | 3 bytes 0
//! inner IP packet, as the client sent it
//! ```

use super::{Error, Result, rd8};

/// Bytes of UDP, GUE and private data before the inner packet.
pub const HEADER_LEN: usize = UDP_LEN + GUE_LEN;
const UDP_LEN: usize = 8;
const GUE_LEN: usize = 8;

/// Which node of the flow's ranking an encapsulated packet is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// The flow's primary.
    Primary,
    /// Its backup: the primary did not know the flow (second chance).
    Backup,
}

/// The UDP, GUE and private-data headers of a packet between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GueRepr {
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port (the cluster's).
    pub dst_port: u16,
    /// The inner packet's IP version (4 or 6).
    pub inner_v6: bool,
    /// Which node it is for.
    pub hop: Hop,
}

impl GueRepr {
    /// Writes the headers for an inner packet of `inner_len` bytes into
    /// `out` ([`HEADER_LEN`] bytes).
    pub fn emit(&self, out: &mut [u8], inner_len: usize) -> Result<()> {
        let out = out.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        let udp_len = u16::try_from(HEADER_LEN + inner_len).map_err(|_| Error::InvalidArgument)?;
        out[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        out[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        out[4..6].copy_from_slice(&udp_len.to_be_bytes());
        out[6..8].copy_from_slice(&[0, 0]);
        // ver 0, C 0, hlen 1 (one word of private data).
        out[8] = 1;
        out[9] = if self.inner_v6 { 41 } else { 4 };
        out[10..12].copy_from_slice(&[0, 0]);
        out[12] = match self.hop {
            Hop::Primary => 0,
            Hop::Backup => 1,
        };
        out[13..16].copy_from_slice(&[0, 0, 0]);
        Ok(())
    }

    /// Parses the headers at the start of `udp` (the UDP header and what
    /// follows); the inner packet starts at [`HEADER_LEN`].
    pub fn parse(udp: &[u8]) -> Result<GueRepr> {
        if udp.len() < HEADER_LEN + 20 {
            return Err(Error::BadGue);
        }
        let be16 = |i: usize| u16::from_be_bytes([rd8(udp, i), rd8(udp, i + 1)]);
        let first = rd8(udp, 8);
        // Version 0, a header (not a control message), one word of extension.
        if first != 1 {
            return Err(Error::BadGue);
        }
        let inner_v6 = match (rd8(udp, 9), rd8(udp, HEADER_LEN) >> 4) {
            (4, 4) => false,
            (41, 6) => true,
            _ => return Err(Error::BadGue),
        };
        let hop = match rd8(udp, 12) {
            0 => Hop::Primary,
            1 => Hop::Backup,
            _ => return Err(Error::BadGue),
        };
        Ok(GueRepr {
            src_port: be16(0),
            dst_port: be16(2),
            inner_v6,
            hop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_junk_is_refused() {
        let r = GueRepr {
            src_port: 0xc123,
            dst_port: 6080,
            inner_v6: false,
            hop: Hop::Backup,
        };
        let mut b = vec![0u8; HEADER_LEN + 40];
        b[HEADER_LEN] = 0x45;
        r.emit(&mut b, 40).unwrap();
        assert_eq!(&b[4..6], &(HEADER_LEN as u16 + 40).to_be_bytes());
        assert_eq!(GueRepr::parse(&b), Ok(r));
        // An IPv6 inner packet announced as IPv4, a control message, a
        // truncated packet, an unknown hop.
        let mut wrong = b.clone();
        wrong[HEADER_LEN] = 0x60;
        assert!(GueRepr::parse(&wrong).is_err());
        let mut ctl = b.clone();
        ctl[8] = 0x21;
        assert!(GueRepr::parse(&ctl).is_err());
        assert!(GueRepr::parse(&b[..HEADER_LEN + 10]).is_err());
        let mut hop = b.clone();
        hop[12] = 7;
        assert!(GueRepr::parse(&hop).is_err());
    }
}
