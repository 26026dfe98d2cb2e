//! `tack_dataplane::Frame` for mbufs: the pipeline rewrites mbufs in place.

use tack_dataplane::{Frame, FrameAlloc};

use crate::mbuf::Mbuf;
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
}

impl FrameAlloc for Mempool {
    type Frame = Mbuf;

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        Mempool::alloc(self)
    }
}
