//! Transparent huge pages for the workers' tables.
//!
//! Every packet touches the connection table at a random place; at a million
//! flows the table is hundreds of MiB, so with 4 KiB pages nearly every
//! lookup is also a TLB miss and a page walk. The benchmarks in `bench/`
//! measure about 205 ns per packet at 1 M flows with 4 KiB pages against
//! about 125 ns with 2 MiB pages on the development VM.
//!
//! The tables are ordinary heap allocations, made before any packet is
//! handled. [`HugePageAlloc`], the global allocator of `tack` and of the
//! benchmarks, is the system allocator plus one thing: once [`enable`] has
//! been called, it advises transparent huge pages
//! (`madvise(MADV_HUGEPAGE)`) for every allocation of [`MIN_ADVISED`] bytes
//! or more, as soon as it is made and before its memory is first touched, so
//! that the page faults that populate the table get 2 MiB pages. The kernel
//! must allow it: `/sys/kernel/mm/transparent_hugepage/enabled` set to
//! `madvise` or `always` ([`thp_mode`]).
//!
//! Earlier versions re-executed `tack` with glibc's own
//! `glibc.malloc.hugetlb=1` tunable instead. With glibc 2.36 (Debian 12)
//! about one process start in two made no `madvise` call at all (seen with
//! `strace`), and its tables got 4 KiB pages; the advice is now ours.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Smallest allocation advised: one 2 MiB huge page.
pub const MIN_ADVISED: usize = 2 << 20;

/// Whether large allocations are advised (see [`enable`]).
static ADVISE: AtomicBool = AtomicBool::new(false);

/// The system allocator, advising transparent huge pages for allocations of
/// [`MIN_ADVISED`] bytes or more once [`enable`] has been called.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePageAlloc;

// SAFETY: every call is forwarded to `System` with the caller's arguments;
// `advise` only gives the kernel advice about memory the call just returned.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System.alloc_zeroed`'s.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System.dealloc`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is `System.realloc`'s.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        advise(p, new_size);
        p
    }
}

/// Advises transparent huge pages for the whole pages of the `size` bytes
/// at `p`, if enabled and large enough. Advice that fails changes nothing.
fn advise(p: *mut u8, size: usize) {
    if size < MIN_ADVISED || p.is_null() || !ADVISE.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = (p as usize).next_multiple_of(page);
    let end = (p as usize).saturating_add(size) / page * page;
    if end > start {
        // SAFETY: `start..end` is page-aligned and within the allocation just
        // made; MADV_HUGEPAGE changes no contents and no mapping.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

/// Advises transparent huge pages for the large allocations made from now
/// on (the process's global allocator must be [`HugePageAlloc`]). Returns
/// [`advised`].
pub fn enable() -> bool {
    ADVISE.store(true, Ordering::Relaxed);
    advised()
}

/// Whether large allocations get transparent huge pages: [`enable`] was
/// called and the kernel's mode is `madvise` or `always`.
pub fn advised() -> bool {
    ADVISE.load(Ordering::Relaxed) && matches!(thp_mode().as_deref(), Some("madvise" | "always"))
}

/// The kernel's transparent-huge-page mode (`always`, `madvise` or `never`),
/// if it can be read.
pub fn thp_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = s.find('[')? + 1;
    let end = start + s[start..].find(']')?;
    Some(s[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `THPeligible` of the mapping that holds address `a` in this process.
    fn thp_eligible(a: usize) -> Option<bool> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&a);
            } else if inside && let Some(v) = line.strip_prefix("THPeligible:") {
                return Some(v.trim() == "1");
            }
        }
        None
    }

    /// A large allocation made after `enable` is advised (its mapping is
    /// eligible for transparent huge pages), whichever way it is made; a
    /// small one is left alone. The kernel's mode decides the outcome.
    #[test]
    fn large_allocations_are_advised() {
        let a = HugePageAlloc;
        enable();
        let eligible = matches!(thp_mode().as_deref(), Some("madvise" | "always"));
        let big = Layout::from_size_align(32 << 20, 64).unwrap();
        // SAFETY: non-zero sizes; each block is freed with its own layout.
        unsafe {
            let p = a.alloc(big);
            assert!(!p.is_null());
            assert_eq!(thp_eligible(p as usize + (16 << 20)), Some(eligible));
            let z = a.alloc_zeroed(big);
            assert!(!z.is_null());
            assert_eq!(thp_eligible(z as usize + (16 << 20)), Some(eligible));
            assert_eq!(*z.add(12345), 0);
            let small = Layout::from_size_align(4096, 8).unwrap();
            let s = a.alloc(small);
            let grown = a.realloc(s, small, 48 << 20);
            assert!(!grown.is_null());
            assert_eq!(thp_eligible(grown as usize + (40 << 20)), Some(eligible));
            a.dealloc(grown, Layout::from_size_align(48 << 20, 8).unwrap());
            a.dealloc(z, big);
            a.dealloc(p, big);
        }
        assert_eq!(advised(), eligible);
    }
}
