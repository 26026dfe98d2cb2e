//! Packet buffer pools (`rte_pktmbuf_pool_create`).

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use crate::eal::Eal;
use crate::error::{Error, Result};
use crate::mbuf::Mbuf;
use crate::sys;

/// `RTE_MEMPOOL_NAMESIZE`: pool names are shorter than this (a macro bindgen cannot evaluate).
pub const MEMPOOL_NAMESIZE: u32 = 26;

/// A pool of packet buffers.
///
/// A `Mempool` is a copyable handle to a pool that lives until the process
/// ends (or [`Eal::cleanup`]): pools are created at start-up, and mbufs from a
/// pool may be anywhere (rings, queues, other cores), so freeing a pool while
/// the process runs could never be made safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mempool {
    ptr: NonNull<sys::rte_mempool>,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

/// Parameters of a packet pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Number of mbufs (a power of two minus one uses memory best).
    pub size: u32,
    /// Per-lcore cache size (0 disables; at most 512 and at most size / 1.5).
    pub cache_size: u32,
    /// Data room per mbuf, headroom included (`RTE_MBUF_DEFAULT_BUF_SIZE` = 2176).
    pub data_room: u16,
    /// NUMA socket, `None` for any.
    pub socket: Option<u32>,
    /// Lay the objects out back to back, without the padding that spreads
    /// them over memory channels (`RTE_MEMPOOL_F_NO_SPREAD`): with an
    /// object size that divides the page size (a data room of 3904 bytes
    /// makes 4096-byte objects), the objects tile the pool's memory
    /// exactly, which DPDK 22.11's `net_af_xdp` assumes (it registers
    /// objects × object size bytes from the first object as its UMEM).
    pub no_spread: bool,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            size: 8191,
            cache_size: 256,
            data_room: sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
            socket: None,
            no_spread: false,
        }
    }
}

impl Mempool {
    /// Creates a packet pool named `name` (at most 25 bytes, unique in the process).
    pub fn create(_eal: Eal, name: &str, cfg: &MempoolConfig) -> Result<Mempool> {
        let op = format!("rte_pktmbuf_pool_create({name})");
        if name.is_empty() || name.len() >= MEMPOOL_NAMESIZE as usize {
            return Err(Error::invalid(
                op,
                format!("name must be 1..{} bytes", MEMPOOL_NAMESIZE - 1),
            ));
        }
        if cfg.size == 0 {
            return Err(Error::invalid(op, "size must be at least 1"));
        }
        if (sys::RTE_PKTMBUF_HEADROOM as u16) >= cfg.data_room {
            return Err(Error::invalid(
                op,
                format!(
                    "data room must exceed the {} byte headroom",
                    sys::RTE_PKTMBUF_HEADROOM
                ),
            ));
        }
        let c = CString::new(name)
            .map_err(|_| Error::invalid(op.clone(), "name contains a NUL byte"))?;
        let socket = cfg.socket.map_or(sys::SOCKET_ID_ANY, |s| s as i32);
        // SAFETY: valid name; EAL is initialised (the Eal token proves it).
        let p = unsafe {
            if cfg.no_spread {
                sys::tack_pktmbuf_pool_create_no_spread(
                    c.as_ptr(),
                    cfg.size,
                    cfg.cache_size,
                    cfg.data_room,
                    socket,
                )
            } else {
                sys::rte_pktmbuf_pool_create(
                    c.as_ptr(),
                    cfg.size,
                    cfg.cache_size,
                    0,
                    cfg.data_room,
                    socket,
                )
            }
        };
        NonNull::new(p)
            .map(|ptr| Mempool { ptr })
            .ok_or_else(|| Error::last(op))
    }

    /// The size of one object in the pool's memory (header, mbuf, data
    /// room, padding).
    pub fn object_size(&self) -> u32 {
        // SAFETY: the pool is alive.
        unsafe { sys::tack_rte_mempool_obj_size(self.ptr.as_ptr()) }
    }

    /// The pool's name.
    pub fn name(&self) -> String {
        // SAFETY: the pool is alive; name is a NUL-terminated array inside it.
        unsafe {
            CStr::from_ptr((*self.ptr.as_ptr()).name.as_ptr())
                .to_string_lossy()
                .into_owned()
        }
    }

    /// Total number of mbufs in the pool.
    pub fn size(&self) -> u32 {
        // SAFETY: the pool is alive.
        unsafe { (*self.ptr.as_ptr()).size }
    }

    /// Mbufs currently free (in the ring and the per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs currently handed out (held by queues, rings or the program).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is alive.
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// Allocates one mbuf, `None` when the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is alive; a non-null result is an mbuf we now own.
        let m = unsafe { sys::tack_rte_pktmbuf_alloc(self.ptr.as_ptr()) };
        // SAFETY: fresh mbuf, owned.
        NonNull::new(m).map(|p| unsafe { Mbuf::from_raw(p.as_ptr()) })
    }

    /// Allocates an mbuf holding a copy of `bytes`, `None` when the pool is
    /// empty or `bytes` does not fit in one mbuf.
    pub fn alloc_from(&self, bytes: &[u8]) -> Option<Mbuf> {
        let mut m = self.alloc()?;
        let len = u16::try_from(bytes.len()).ok()?;
        m.append(len)?.copy_from_slice(bytes);
        Some(m)
    }

    /// The raw pool pointer, for calls this crate does not wrap.
    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }
}
