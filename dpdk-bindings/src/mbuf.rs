//! Owned packet buffers (`struct rte_mbuf`).

use std::ptr::NonNull;

use crate::sys;

/// An owned packet buffer. Dropping it returns it to its pool.
///
/// `Mbuf` has the layout of a `struct rte_mbuf *`, so a `[Mbuf]` can be handed
/// to burst functions directly. The data accessors see the first segment;
/// packets the runtime receives are single-segment (the pool's data room
/// exceeds the port MTU), and [`Mbuf::linearize`] merges a chain otherwise.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf is owned by one thread at a time; ownership moves with the value.
unsafe impl Send for Mbuf {}

/// Mbuf offload flag: the NIC computed an RSS hash (`RTE_MBUF_F_RX_RSS_HASH`).
pub const RX_RSS_HASH: u64 = sys::RTE_MBUF_F_RX_RSS_HASH as u64;
/// Mbuf offload flags: the NIC's IPv4 header checksum verdict
/// (`RTE_MBUF_F_RX_IP_CKSUM_MASK`; `_GOOD`, `_BAD`, `_NONE` or `_UNKNOWN`).
pub const RX_IP_CKSUM_MASK: u64 = sys::RTE_MBUF_F_RX_IP_CKSUM_MASK as u64;
/// The NIC verified the IPv4 header checksum (`RTE_MBUF_F_RX_IP_CKSUM_GOOD`).
pub const RX_IP_CKSUM_GOOD: u64 = sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD as u64;
/// The NIC found the IPv4 header checksum wrong (`RTE_MBUF_F_RX_IP_CKSUM_BAD`).
pub const RX_IP_CKSUM_BAD: u64 = sys::RTE_MBUF_F_RX_IP_CKSUM_BAD as u64;
/// Mbuf offload flag: ask the NIC for the IPv4 header checksum.
pub const TX_IP_CKSUM: u64 = sys::RTE_MBUF_F_TX_IP_CKSUM;
/// Mbuf offload flag: the packet is IPv4 (needed with checksum offloads).
pub const TX_IPV4: u64 = sys::RTE_MBUF_F_TX_IPV4;
/// Mbuf offload flag: the packet is IPv6 (needed with checksum offloads).
pub const TX_IPV6: u64 = sys::RTE_MBUF_F_TX_IPV6;
/// Mbuf offload flag: ask the NIC for the TCP checksum.
pub const TX_TCP_CKSUM: u64 = sys::RTE_MBUF_F_TX_TCP_CKSUM;
/// Mbuf offload flag: ask the NIC for the UDP checksum.
pub const TX_UDP_CKSUM: u64 = sys::RTE_MBUF_F_TX_UDP_CKSUM;

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `m` must be a valid mbuf that nothing else owns or will free.
    #[inline(always)]
    pub unsafe fn from_raw(m: *mut sys::rte_mbuf) -> Mbuf {
        // SAFETY: the caller promises m is valid (hence non-null).
        Mbuf(unsafe { NonNull::new_unchecked(m) })
    }

    /// Gives up ownership; the caller must free or transmit the mbuf.
    #[inline(always)]
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The raw pointer, still owned by `self`.
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline(always)]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a valid mbuf.
        unsafe { self.0.as_ref() }
    }

    #[inline(always)]
    fn raw_mut(&mut self) -> &mut sys::rte_mbuf {
        // SAFETY: we own a valid mbuf exclusively.
        unsafe { self.0.as_mut() }
    }

    /// The first segment's bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off points at data_len initialised bytes of this segment.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// The first segment's bytes, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw_mut();
        // SAFETY: as in data(), and we own the mbuf exclusively. (Cloned/indirect
        // mbufs are never created by this crate.)
        unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// Length of the whole packet (all segments).
    #[inline(always)]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Number of segments.
    #[inline(always)]
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// Free bytes in front of the data.
    #[inline(always)]
    pub fn headroom(&self) -> usize {
        self.raw().data_off as usize
    }

    /// Free bytes after the data in the last segment.
    #[inline(always)]
    pub fn tailroom(&self) -> usize {
        // SAFETY: valid mbuf.
        unsafe { sys::tack_rte_pktmbuf_tailroom(self.0.as_ptr()) as usize }
    }

    /// Extends the packet by `len` bytes at the end and returns them, `None`
    /// when there is not enough tailroom.
    #[inline]
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: valid mbuf owned by us; a non-null result points at len bytes we own.
        unsafe {
            let p = sys::tack_rte_pktmbuf_append(self.0.as_ptr(), len);
            (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p.cast::<u8>(), len as usize))
        }
    }

    /// Extends the packet by `len` bytes at the front (for encapsulation) and
    /// returns the whole first segment, `None` when there is not enough headroom.
    #[inline]
    pub fn prepend(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: valid mbuf owned by us.
        let p = unsafe { sys::tack_rte_pktmbuf_prepend(self.0.as_ptr(), len) };
        (!p.is_null()).then(|| self.data_mut())
    }

    /// Removes `len` bytes from the front (decapsulation). False if the first
    /// segment is shorter.
    #[inline]
    pub fn adj(&mut self, len: u16) -> bool {
        // SAFETY: valid mbuf owned by us.
        unsafe { !sys::tack_rte_pktmbuf_adj(self.0.as_ptr(), len).is_null() }
    }

    /// Removes `len` bytes from the end. False if the last segment is shorter.
    #[inline]
    pub fn trim(&mut self, len: u16) -> bool {
        // SAFETY: valid mbuf owned by us.
        unsafe { sys::tack_rte_pktmbuf_trim(self.0.as_ptr(), len) == 0 }
    }

    /// Sets the data length of a single-segment packet to `len` (growing or
    /// shrinking at the end). False if it is chained or `len` does not fit.
    pub fn set_len(&mut self, len: usize) -> bool {
        if self.segments() != 1 {
            return false;
        }
        let cur = self.pkt_len();
        match len.cmp(&cur) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Greater => {
                u16::try_from(len - cur).is_ok_and(|d| self.append(d).is_some())
            }
            std::cmp::Ordering::Less => u16::try_from(cur - len).is_ok_and(|d| self.trim(d)),
        }
    }

    /// Merges a chained packet into its first segment. False if it does not fit.
    pub fn linearize(&mut self) -> bool {
        // SAFETY: valid mbuf owned by us.
        unsafe {
            sys::tack_rte_pktmbuf_is_contiguous(self.0.as_ptr()) != 0
                || sys::tack_rte_pktmbuf_linearize(self.0.as_ptr()) == 0
        }
    }

    /// The port the packet arrived on.
    #[inline(always)]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Sets the port the packet is for (a frame handed between threads
    /// carries its port this way).
    #[inline(always)]
    pub fn set_port(&mut self, port: u16) {
        self.raw_mut().port = port;
    }

    /// The offload flags (`RTE_MBUF_F_*`).
    #[inline(always)]
    pub fn ol_flags(&self) -> u64 {
        self.raw().ol_flags
    }

    /// The NIC's RSS hash, if it computed one.
    #[inline(always)]
    pub fn rss_hash(&self) -> Option<u32> {
        let m = self.raw();
        // SAFETY: the union is plain data; it holds the RSS hash when RX_RSS_HASH is set.
        (m.ol_flags & RX_RSS_HASH != 0).then_some(unsafe { m.__bindgen_anon_2.hash.rss })
    }

    /// Requests transmit offloads: sets `ol_flags` (`TX_*` constants) and the
    /// header lengths the NIC needs for them.
    #[inline]
    pub fn set_tx_offload(&mut self, flags: u64, l2_len: u8, l3_len: u16, l4_len: u8) {
        let m = self.raw_mut();
        m.ol_flags |= flags;
        // tx_offload bit layout: l2_len:7, l3_len:9, l4_len:8 (rte_mbuf_core.h).
        m.__bindgen_anon_3.tx_offload =
            (l2_len as u64 & 0x7f) | ((l3_len as u64 & 0x1ff) << 7) | ((l4_len as u64) << 16);
    }

    /// Prefetches the packet data into the cache.
    #[inline(always)]
    pub fn prefetch_data(&self) {
        let m = self.raw();
        // SAFETY: a prefetch of a valid address has no effect on memory.
        unsafe { sys::tack_rte_prefetch0(m.buf_addr.cast::<u8>().add(m.data_off as usize).cast()) }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it goes back to its pool.
        unsafe { sys::tack_rte_pktmbuf_free(self.0.as_ptr()) }
    }
}
