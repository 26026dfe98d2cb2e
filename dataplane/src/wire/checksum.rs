//! The Internet checksum: full computation (RFC 1071) with the IPv4 and IPv6
//! pseudo-headers, and incremental update (RFC 1624).
//!
//! Conventions: a *sum* is the folded 16-bit one's complement sum of some
//! data, not yet complemented; a *checksum* is the complement of a sum, as
//! carried in a header. Sums of separate pieces can be combined with
//! [`combine`] as long as every piece but the last has an even length.
//!
//! Incremental updates never "fix" a checksum: if the checksum in the packet
//! was wrong before a rewrite, it is exactly as wrong afterwards, so the end
//! host still drops the corrupted packet (end-to-end principle).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Error, Result};

/// Fold a wide accumulator into a 16-bit one's complement sum (end-around
/// carry, RFC 1071 §4.1 "while (sum>>16) sum = (sum & 0xffff) + (sum >> 16)").
///
/// The result is zero only if the accumulator is zero.
#[inline(always)]
pub const fn fold(acc: u64) -> u16 {
    // The two halves added with the carry out added back in (an add and an
    // add-with-carry): 64 bits to 32, then 32 to 16. Adding the carry back
    // cannot carry again: when the add carried, its sum is at most 2^n - 2.
    let (s, c) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let s = s + c as u32;
    let (t, c) = (s as u16).overflowing_add((s >> 16) as u16);
    t + c as u16
}

/// One's complement sum of `data` read as big-endian 16-bit words, an odd
/// final byte padded with zero on the right (RFC 1071 §1 step (1)).
///
/// RFC 1071 §2 (B) "byte order independence" and (C) "parallel summation":
/// summing 32-bit words in a wide accumulator and folding at the end gives
/// the same 16-bit sum, which is what this does.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    fold(sum_wide(data))
}

#[inline]
fn sum_wide(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Add the two 32-bit halves separately so the accumulator cannot
        // overflow for any buffer shorter than 2^32 bytes.
        acc += w >> 32;
        acc += w & 0xffff_ffff;
    }
    let rem = chunks.remainder();
    let mut pairs = rem.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Whether a 20-byte IPv4 header (no options) carries a valid checksum:
/// the one's complement sum of the whole header, checksum included, must be
/// all ones. Sums the five 32-bit words in native byte order: by RFC 1071
/// §2 (B) that gives the byte-swapped sum, and all ones is its own swap.
#[inline(always)]
pub fn ipv4_header20_ok(h: &[u8; 20]) -> bool {
    let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    fold(w(0) + w(4) + w(8) + w(12) + w(16)) == 0xffff
}

/// One's complement addition of two sums.
#[inline(always)]
pub const fn combine(a: u16, b: u16) -> u16 {
    fold(a as u64 + b as u64)
}

/// The checksum of `data` alone (complement of [`sum`]), e.g. the IPv4 header
/// checksum or the ICMPv4 checksum computed with the checksum field zeroed.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source address,
/// destination address, zero, protocol, upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    let acc = u64::from(s >> 16)
        + u64::from(s & 0xffff)
        + u64::from(d >> 16)
        + u64::from(d & 0xffff)
        + u64::from(protocol)
        + u64::from(length);
    fold(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source address,
/// destination address, 32-bit upper-layer packet length, three zero bytes and
/// the next header value.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let acc = sum_wide(&src.octets())
        + sum_wide(&dst.octets())
        + u64::from(length >> 16)
        + u64::from(length & 0xffff)
        + u64::from(next_header);
    fold(acc)
}

/// Sum of the pseudo-header for either family.
///
/// Fails with [`Error::InvalidArgument`] if the families differ or an IPv4
/// length does not fit 16 bits.
#[inline]
pub fn pseudo_header(src: &IpAddr, dst: &IpAddr, protocol: u8, length: u32) -> Result<u16> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = u16::try_from(length).map_err(|_| Error::InvalidArgument)?;
            Ok(pseudo_header_v4(*s, *d, protocol, len))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => Ok(pseudo_header_v6(s, d, protocol, length)),
        _ => Err(Error::InvalidArgument),
    }
}

/// The checksum to place in a TCP/UDP/ICMPv6 header: complement of the
/// pseudo-header sum plus the sum of `segment` (whose checksum field must be
/// zero). UDP callers must still map a result of 0 to 0xffff (RFC 768); see
/// [`udp_nonzero`].
#[inline]
pub fn l4_checksum(pseudo: u16, segment: &[u8]) -> u16 {
    !combine(pseudo, sum(segment))
}

/// Whether `segment` (checksum field included) verifies against the
/// pseudo-header sum: the total one's complement sum must be all ones.
#[inline]
pub fn l4_verify(pseudo: u16, segment: &[u8]) -> bool {
    combine(pseudo, sum(segment)) == 0xffff
}

/// RFC 768: "If the computed checksum is zero, it is transmitted as all ones
/// (the equivalent in one's complement arithmetic). An all zero transmitted
/// checksum value means that the transmitter generated no checksum".
#[inline(always)]
pub const fn udp_nonzero(csum: u16) -> u16 {
    if csum == 0 { 0xffff } else { csum }
}

/// Incremental update for one 16-bit word changing from `old` to `new`.
///
/// RFC 1624 §3, eqn. 3: `HC' = ~(~HC + ~m + m')`. Unlike eqn. 2
/// (`HC' = HC - ~m - m'`, RFC 1141), eqn. 3 never produces the -0 (0xffff)
/// that RFC 1624 §3 shows to be wrong when the true checksum is +0: the
/// inner one's complement sum is zero only if every term is zero.
#[inline(always)]
pub const fn update16(hc: u16, old: u16, new: u16) -> u16 {
    !fold((!hc) as u64 + delta16(old, new))
}

/// The terms of eqn. 3 for a word changing from `old` to `new` (`~m + m'`).
/// Several changes to one checksum can be summed into `~HC` and folded once,
/// `HC' = !fold(!HC + delta + delta...)`: the result is the same as updating
/// change by change.
#[inline(always)]
pub const fn delta16(old: u16, new: u16) -> u64 {
    (!old) as u64 + new as u64
}

/// [`delta16`] for a 32-bit field (two words).
#[inline(always)]
pub const fn delta32(old: u32, new: u32) -> u64 {
    delta16((old >> 16) as u16, (new >> 16) as u16) + delta16(old as u16, new as u16)
}

/// Incremental update for one 32-bit field (two words) changing, e.g. a TCP
/// sequence number. RFC 1624 eqn. 3 applied to both words at once.
#[inline(always)]
pub const fn update32(hc: u16, old: u32, new: u32) -> u16 {
    !fold((!hc) as u64 + delta32(old, new))
}

/// Incremental update for an IPv4 address change (source or destination, in
/// the IPv4 header checksum or in a TCP/UDP pseudo-header).
#[inline(always)]
pub fn update_v4addr(hc: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update32(hc, u32::from(old), u32::from(new))
}

/// Incremental update for an IPv6 address change (in a TCP/UDP/ICMPv6
/// pseudo-header): RFC 1624 eqn. 3 over the eight 16-bit words.
#[inline]
pub fn update_v6addr(hc: u16, old: &Ipv6Addr, new: &Ipv6Addr) -> u16 {
    let o = u128::from(*old);
    let n = u128::from(*new);
    let mut acc = (!hc) as u64;
    let mut i = 0;
    while i < 8 {
        let shift = i * 16;
        acc += (!(o >> shift) as u64) & 0xffff;
        acc += ((n >> shift) as u64) & 0xffff;
        i += 1;
    }
    !fold(acc)
}

/// Incremental update for an address of either family (the two must be of the
/// same family; otherwise the checksum is returned unchanged and
/// [`Error::InvalidArgument`] is reported).
#[inline]
pub fn update_addr(hc: u16, old: &IpAddr, new: &IpAddr) -> Result<u16> {
    match (old, new) {
        (IpAddr::V4(o), IpAddr::V4(n)) => Ok(update_v4addr(hc, *o, *n)),
        (IpAddr::V6(o), IpAddr::V6(n)) => Ok(update_v6addr(hc, o, n)),
        _ => Err(Error::InvalidArgument),
    }
}

/// Incremental update for a change of the sum of some data: subtract
/// `old_sum`, add `new_sum` (RFC 1624 eqn. 3 with `m`, `m'` being sums).
#[inline(always)]
pub const fn update_sum(hc: u16, old_sum: u16, new_sum: u16) -> u16 {
    update16(hc, old_sum, new_sum)
}

/// Write `new` at `offset` inside `region` (the bytes covered by a checksum,
/// starting at the checksum's word alignment, e.g. the TCP segment) and return
/// the incrementally updated checksum `hc`.
///
/// Handles rewrites at odd offsets (e.g. a TCP MSS option after a single NOP)
/// by updating the enclosing aligned 16-bit words. Fails without changing
/// anything if the range does not fit in `region`.
pub fn rewrite_bytes(region: &mut [u8], offset: usize, new: &[u8], hc: u16) -> Result<u16> {
    let end = offset
        .checked_add(new.len())
        .ok_or(Error::InvalidArgument)?;
    if end > region.len() {
        return Err(Error::BufferTooSmall);
    }
    let start = offset & !1;
    // Round the end up to a word boundary; an odd region's last byte is a
    // word padded with zero, exactly as `sum` treats it.
    let aligned_end = if end % 2 == 1 {
        (end + 1).min(region.len())
    } else {
        end
    };
    let old_sum = sum(&region[start..aligned_end]);
    region[offset..end].copy_from_slice(new);
    let new_sum = sum(&region[start..aligned_end]);
    Ok(update_sum(hc, old_sum, new_sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            acc += u32::from(w);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn wide_sum_matches_naive() {
        let mut data = [0u8; 257];
        let mut x: u32 = 12345;
        for b in data.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        for len in 0..data.len() {
            assert_eq!(sum(&data[..len]), naive_sum(&data[..len]), "len {len}");
        }
        assert_eq!(sum(&[0xff; 1000]), 0xffff);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn header20_matches_sum() {
        let mut x: u32 = 99;
        for round in 0..20_000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            if round % 2 == 0 {
                // Make half of them valid.
                h[10] = 0;
                h[11] = 0;
                let c = checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(ipv4_header20_ok(&h), sum(&h) == 0xffff, "{h:?}");
        }
        // Zero checksum field variants: all-zero words are valid only if
        // the rest sums to all ones.
        let mut h = [0u8; 20];
        assert_eq!(ipv4_header20_ok(&h), sum(&h) == 0xffff);
        h[10] = 0xff;
        h[11] = 0xff;
        assert_eq!(ipv4_header20_ok(&h), sum(&h) == 0xffff);
    }

    #[test]
    fn rfc1624_corner_case() {
        // RFC 1624 §3: a header whose checksum is 0xdd2f, a word 0x5555
        // changes to 0x3285; the correct new checksum is 0x0000, and eqn. 2
        // would give 0xffff.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn rewrite_bytes_odd_offset_matches_full() {
        let mut seg = [0u8; 31];
        for (i, b) in seg.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        for off in 0..seg.len() {
            for len in 0..=(seg.len() - off).min(5) {
                let mut s = seg;
                let hc = checksum(&s);
                let new: Vec<u8> = (0..len)
                    .map(|i| 0xa5u8 ^ (i as u8 * 3 + off as u8))
                    .collect();
                let hc2 = rewrite_bytes(&mut s, off, &new, hc).unwrap();
                let full = checksum(&s);
                assert_eq!(hc2, full, "off {off} len {len}");
                assert_eq!(combine(sum(&s), hc2), 0xffff);
            }
        }
        assert_eq!(
            rewrite_bytes(&mut [0u8; 4], 3, &[1, 2], 0),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            rewrite_bytes(&mut [0u8; 4], usize::MAX, &[1, 2], 0),
            Err(Error::InvalidArgument)
        );
    }
}
