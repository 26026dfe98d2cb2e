//! Lock-free rings (`rte_ring`) carrying owned values between threads.
//!
//! [`spsc`] builds a single-producer single-consumer ring and hands out one
//! [`Producer`] and one [`Consumer`]; ownership of each item moves through the
//! ring, and items still inside when both ends are gone are dropped.

use std::ffi::{CString, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::eal::Eal;
use crate::error::{Error, Result};
use crate::mbuf::Mbuf;
use crate::sys;

/// A value that can travel through a ring as one pointer.
///
/// # Safety
/// `from_ptr(into_ptr(x))` must give back `x`, and the pointer must never be null.
pub unsafe trait RingItem: Send + Sized {
    /// Gives up ownership as a non-null pointer.
    fn into_ptr(self) -> *mut c_void;
    /// Takes ownership back.
    ///
    /// # Safety
    /// `p` must come from `into_ptr` and be used once.
    unsafe fn from_ptr(p: *mut c_void) -> Self;
}

// SAFETY: Mbuf round-trips through its raw pointer.
unsafe impl RingItem for Mbuf {
    fn into_ptr(self) -> *mut c_void {
        self.into_raw().cast()
    }
    unsafe fn from_ptr(p: *mut c_void) -> Self {
        // SAFETY: p came from into_ptr.
        unsafe { Mbuf::from_raw(p.cast()) }
    }
}

// SAFETY: Box round-trips through Box::into_raw / from_raw, never null.
unsafe impl<T: Send> RingItem for Box<T> {
    fn into_ptr(self) -> *mut c_void {
        Box::into_raw(self).cast()
    }
    unsafe fn from_ptr(p: *mut c_void) -> Self {
        // SAFETY: p came from into_ptr.
        unsafe { Box::from_raw(p.cast()) }
    }
}

/// `RTE_RING_NAMESIZE`: ring names are shorter than this.
const RING_NAMESIZE: u32 = 29;
const RING_F_SP_ENQ: u32 = 0x0001;
const RING_F_SC_DEQ: u32 = 0x0002;

struct Inner<T: RingItem> {
    ring: NonNull<sys::rte_ring>,
    _t: PhantomData<T>,
}

// SAFETY: the ring is a lock-free structure meant for use across threads; the
// SP/SC discipline is enforced by Producer/Consumer not being Clone.
unsafe impl<T: RingItem> Send for Inner<T> {}
// SAFETY: as above.
unsafe impl<T: RingItem> Sync for Inner<T> {}

impl<T: RingItem> Inner<T> {
    fn count(&self) -> usize {
        // SAFETY: reads the ring's indexes.
        unsafe { sys::tack_rte_ring_count(self.ring.as_ptr()) as usize }
    }
}

impl<T: RingItem> Drop for Inner<T> {
    fn drop(&mut self) {
        // Both ends are gone: drop what is left, then free the ring.
        let mut buf = [std::ptr::null_mut::<c_void>(); 32];
        loop {
            // SAFETY: the ring is valid and nobody else uses it any more.
            let n = unsafe {
                sys::tack_rte_ring_dequeue_burst(
                    self.ring.as_ptr(),
                    buf.as_mut_ptr(),
                    buf.len() as u32,
                    std::ptr::null_mut(),
                )
            };
            if n == 0 {
                break;
            }
            for p in &buf[..n as usize] {
                // SAFETY: every pointer in the ring came from into_ptr.
                drop(unsafe { T::from_ptr(*p) });
            }
        }
        // SAFETY: the ring is empty and unused.
        unsafe { sys::rte_ring_free(self.ring.as_ptr()) }
    }
}

/// The sending end of a single-producer ring.
pub struct Producer<T: RingItem> {
    inner: Arc<Inner<T>>,
}

/// The receiving end of a single-consumer ring.
pub struct Consumer<T: RingItem> {
    inner: Arc<Inner<T>>,
}

/// Creates a single-producer single-consumer ring that holds at least
/// `capacity` items (rounded up to a power of two, minus one).
pub fn spsc<T: RingItem>(
    _eal: Eal,
    name: &str,
    capacity: u32,
) -> Result<(Producer<T>, Consumer<T>)> {
    let op = format!("rte_ring_create({name})");
    if name.is_empty() || name.len() >= RING_NAMESIZE as usize {
        return Err(Error::invalid(op, "ring names are 1..28 bytes long"));
    }
    if capacity == 0 || capacity > (1 << 30) {
        return Err(Error::invalid(op, "capacity must be 1..2^30"));
    }
    let count = (capacity + 1).next_power_of_two();
    let c =
        CString::new(name).map_err(|_| Error::invalid(op.clone(), "name contains a NUL byte"))?;
    let flags = RING_F_SP_ENQ | RING_F_SC_DEQ;
    // SAFETY: valid name; EAL initialised.
    let r = unsafe { sys::rte_ring_create(c.as_ptr(), count, sys::SOCKET_ID_ANY, flags) };
    let ring = NonNull::new(r).ok_or_else(|| Error::last(op))?;
    let inner = Arc::new(Inner {
        ring,
        _t: PhantomData,
    });
    Ok((
        Producer {
            inner: inner.clone(),
        },
        Consumer { inner },
    ))
}

impl<T: RingItem> Producer<T> {
    /// Enqueues one item, giving it back if the ring is full.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), T> {
        let p = item.into_ptr();
        // SAFETY: one pointer from into_ptr; single producer (we are not Clone).
        let n = unsafe {
            sys::tack_rte_ring_enqueue_burst(self.inner.ring.as_ptr(), &p, 1, std::ptr::null_mut())
        };
        if n == 1 {
            Ok(())
        } else {
            // SAFETY: not enqueued, so we still own it.
            Err(unsafe { T::from_ptr(p) })
        }
    }

    /// Enqueues as many items from the front of `items` as fit; they are
    /// removed from `items`. Returns how many were enqueued.
    #[inline]
    pub fn push_burst(&mut self, items: &mut Vec<T>) -> usize {
        let mut buf = [std::ptr::null_mut::<c_void>(); 64];
        let mut total = 0;
        while !items.is_empty() {
            let k = items.len().min(buf.len());
            // Convert a chunk to pointers, enqueue, and take back what did not fit.
            for (slot, item) in buf.iter_mut().zip(items.drain(..k)) {
                *slot = item.into_ptr();
            }
            // SAFETY: k pointers from into_ptr; single producer.
            let n = unsafe {
                sys::tack_rte_ring_enqueue_burst(
                    self.inner.ring.as_ptr(),
                    buf.as_ptr(),
                    k as u32,
                    std::ptr::null_mut(),
                )
            } as usize;
            total += n;
            if n < k {
                // SAFETY: these were not enqueued, so we still own them; put them back in order.
                let back: Vec<T> = buf[n..k]
                    .iter()
                    .map(|p| unsafe { T::from_ptr(*p) })
                    .collect();
                items.splice(0..0, back);
                break;
            }
        }
        total
    }

    /// Items currently in the ring.
    pub fn len(&self) -> usize {
        self.inner.count()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: RingItem> Consumer<T> {
    /// Dequeues one item.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let mut p = std::ptr::null_mut::<c_void>();
        // SAFETY: single consumer; at most one pointer written.
        let n = unsafe {
            sys::tack_rte_ring_dequeue_burst(
                self.inner.ring.as_ptr(),
                &mut p,
                1,
                std::ptr::null_mut(),
            )
        };
        // SAFETY: a dequeued pointer came from into_ptr.
        (n == 1).then(|| unsafe { T::from_ptr(p) })
    }

    /// Dequeues up to `max` items into `out`; returns how many.
    #[inline]
    pub fn pop_burst(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        // Not zeroed: a worker polls its rings every iteration, and clearing
        // 512 bytes each time cost more than an empty dequeue.
        let mut buf = [std::mem::MaybeUninit::<*mut c_void>::uninit(); 64];
        let mut total = 0;
        while total < max {
            let k = (max - total).min(buf.len());
            // SAFETY: single consumer; at most k pointers written.
            let n = unsafe {
                sys::tack_rte_ring_dequeue_burst(
                    self.inner.ring.as_ptr(),
                    buf.as_mut_ptr().cast::<*mut c_void>(),
                    k as u32,
                    std::ptr::null_mut(),
                )
            } as usize;
            // SAFETY: the first n slots were written by the dequeue, each a
            // pointer that came from into_ptr.
            out.extend(
                buf[..n]
                    .iter()
                    .map(|p| unsafe { T::from_ptr(p.assume_init()) }),
            );
            total += n;
            if n < k {
                break;
            }
        }
        total
    }

    /// Items currently in the ring.
    pub fn len(&self) -> usize {
        self.inner.count()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// DPDK's software Toeplitz hash (`rte_softrss`) over `tuple`, 32-bit words in
/// host order as DPDK's `rte_ipv4_tuple` / `rte_ipv6_tuple` lay them out.
/// `key` must hold at least `4 * tuple.len() + 4` bytes.
pub fn softrss(tuple: &[u32], key: &[u8]) -> Result<u32> {
    if key.len() < tuple.len() * 4 + 4 {
        return Err(Error::invalid(
            "rte_softrss",
            format!(
                "a {}-word tuple needs a key of at least {} bytes",
                tuple.len(),
                tuple.len() * 4 + 4
            ),
        ));
    }
    let mut t = tuple.to_vec();
    // SAFETY: t has tuple.len() words and the key is long enough (checked above).
    Ok(unsafe { sys::tack_rte_softrss(t.as_mut_ptr(), t.len() as u32, key.as_ptr()) })
}
