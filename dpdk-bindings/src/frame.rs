//! `tack_dataplane::Frame` for mbufs: the pipeline rewrites mbufs in place.

use tack_dataplane::{Frame, FrameAlloc, RxChecksum};

use crate::mbuf::{Mbuf, RX_IP_CKSUM_BAD, RX_IP_CKSUM_GOOD, RX_IP_CKSUM_MASK};
use crate::mempool::Mempool;

impl Frame for Mbuf {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        self.data()
    }

    #[inline(always)]
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        u16::try_from(n).is_ok_and(|n| Mbuf::prepend(self, n).is_some())
    }

    #[inline]
    fn strip_front(&mut self, n: usize) -> bool {
        u16::try_from(n).is_ok_and(|n| self.adj(n))
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        Mbuf::set_len(self, len)
    }

    #[inline(always)]
    fn rss_hash(&self) -> Option<u32> {
        Mbuf::rss_hash(self)
    }

    #[inline(always)]
    fn rx_ipv4_checksum(&self) -> RxChecksum {
        rx_ipv4_checksum(self.ol_flags())
    }
}

/// The IPv4 header checksum verdict in an mbuf's offload flags. `_NONE`
/// (the checksum in the data is wrong but the header is intact, from some
/// virtual devices) is `Unknown`: the data is what the pipeline rewrites.
#[inline(always)]
fn rx_ipv4_checksum(ol_flags: u64) -> RxChecksum {
    match ol_flags & RX_IP_CKSUM_MASK {
        RX_IP_CKSUM_GOOD => RxChecksum::Good,
        RX_IP_CKSUM_BAD => RxChecksum::Bad,
        _ => RxChecksum::Unknown,
    }
}

impl FrameAlloc for Mempool {
    type Frame = Mbuf;

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        Mempool::alloc(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::RX_RSS_HASH;
    use crate::sys;

    #[test]
    fn ipv4_checksum_verdicts() {
        let none = sys::RTE_MBUF_F_RX_IP_CKSUM_NONE as u64;
        let unknown = sys::RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN as u64;
        for (flags, want) in [
            (unknown, RxChecksum::Unknown),
            (RX_IP_CKSUM_GOOD, RxChecksum::Good),
            (RX_IP_CKSUM_BAD, RxChecksum::Bad),
            (none, RxChecksum::Unknown),
            (RX_IP_CKSUM_GOOD | RX_RSS_HASH, RxChecksum::Good),
            (RX_IP_CKSUM_BAD | RX_RSS_HASH, RxChecksum::Bad),
        ] {
            assert_eq!(rx_ipv4_checksum(flags), want, "flags {flags:#x}");
        }
    }
}
