//! The packet buffers the pipeline works on.
//!
//! The runtime implements [`Frame`] for DPDK mbufs (in `tack-dpdk`, feature
//! `dataplane`); tests use [`VecFrame`]. The pipeline reads and rewrites a
//! frame in place, grows it at the front for encapsulation and resizes it to
//! turn a request into a reply.

/// A packet buffer: contiguous bytes with room to grow in front and behind.
pub trait Frame {
    /// The packet bytes.
    fn bytes(&self) -> &[u8];
    /// The packet bytes, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Grows the packet by `n` bytes at the front (their content is
    /// unspecified). False, and nothing changed, if there is not enough headroom.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front. False, and nothing changed, if the
    /// packet is shorter.
    fn strip_front(&mut self, n: usize) -> bool;
    /// Sets the length, growing (content of new bytes unspecified) or
    /// shrinking at the end. False, and nothing changed, if it cannot.
    fn set_len(&mut self, len: usize) -> bool;
    /// The RSS hash the NIC computed on receive, if any.
    fn rss_hash(&self) -> Option<u32> {
        None
    }
    /// What the NIC found when it checked the IPv4 header checksum on
    /// receive (DPDK's `RTE_MBUF_F_RX_IP_CKSUM_*`).
    fn rx_ipv4_checksum(&self) -> RxChecksum {
        RxChecksum::Unknown
    }
}

/// A NIC's verdict on a received frame's IPv4 header checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RxChecksum {
    /// Not checked (not IPv4, no offload, or the NIC could not tell): the
    /// pipeline checks it if configured to.
    #[default]
    Unknown,
    /// The NIC verified it: the pipeline does not check it again.
    Good,
    /// The NIC found it wrong: the frame is dropped as if the pipeline had
    /// checked it (unless checking is turned off).
    Bad,
}

/// Something that hands out empty frames for packets the pipeline originates
/// (ARP/NDP requests and the like).
pub trait FrameAlloc {
    /// The frame type.
    type Frame: Frame;
    /// An empty frame, `None` when the pool is exhausted.
    fn alloc(&mut self) -> Option<Self::Frame>;
}

/// A heap-backed frame with headroom, for tests, fuzzing and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecFrame {
    buf: Vec<u8>,
    start: usize,
    rx_csum: RxChecksum,
}

impl VecFrame {
    /// Headroom given to new frames (as DPDK's `RTE_PKTMBUF_HEADROOM`).
    pub const HEADROOM: usize = 128;
    /// Largest frame (as a 2176-byte mbuf data room minus headroom).
    pub const CAPACITY: usize = 2048;

    /// A frame holding a copy of `bytes` behind [`VecFrame::HEADROOM`] bytes of headroom.
    pub fn new(bytes: &[u8]) -> VecFrame {
        let mut buf = vec![0u8; Self::HEADROOM];
        buf.extend_from_slice(bytes);
        VecFrame {
            buf,
            start: Self::HEADROOM,
            rx_csum: RxChecksum::Unknown,
        }
    }

    /// The frame as a NIC that checked its IPv4 header checksum hands it over.
    pub fn with_rx_ipv4_checksum(self, rx_csum: RxChecksum) -> VecFrame {
        VecFrame { rx_csum, ..self }
    }

    /// The bytes, consuming the frame.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf[self.start..].to_vec()
    }
}

impl Frame for VecFrame {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn strip_front(&mut self, n: usize) -> bool {
        if n > self.buf.len() - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn set_len(&mut self, len: usize) -> bool {
        if len > Self::CAPACITY {
            return false;
        }
        self.buf.resize(self.start + len, 0);
        true
    }
    fn rx_ipv4_checksum(&self) -> RxChecksum {
        self.rx_csum
    }
}

/// Allocates [`VecFrame`]s, optionally only a limited number (to test pool exhaustion).
#[derive(Debug, Clone, Default)]
pub struct VecAlloc {
    /// Frames still allowed; `None` for unlimited.
    pub remaining: Option<usize>,
}

impl FrameAlloc for VecAlloc {
    type Frame = VecFrame;
    fn alloc(&mut self) -> Option<VecFrame> {
        match &mut self.remaining {
            Some(0) => None,
            Some(n) => {
                *n -= 1;
                Some(VecFrame::new(&[]))
            }
            None => Some(VecFrame::new(&[])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_frame_grows_and_shrinks() {
        let mut f = VecFrame::new(&[1, 2, 3]);
        assert!(f.prepend(2));
        f.bytes_mut()[..2].copy_from_slice(&[9, 9]);
        assert_eq!(f.bytes(), &[9, 9, 1, 2, 3]);
        assert!(f.strip_front(2));
        assert!(f.set_len(5));
        assert_eq!(f.bytes(), &[1, 2, 3, 0, 0]);
        assert!(f.set_len(1));
        assert_eq!(f.bytes(), &[1]);
        assert!(!f.prepend(VecFrame::HEADROOM + 1));
        assert!(!f.strip_front(2));
        assert!(!f.set_len(VecFrame::CAPACITY + 1));
        let mut a = VecAlloc { remaining: Some(1) };
        assert!(a.alloc().is_some());
        assert!(a.alloc().is_none());
    }
}
