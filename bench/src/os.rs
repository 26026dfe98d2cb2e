//! The only `unsafe` code of the benchmarks: the calls into libc (the
//! thread's CPU clock, `mlockall`) and `tack`'s global allocator, whose source
//! is the control crate's `hugepages.rs` (the control crate itself links
//! DPDK, which the benchmarks do not need). Each `unsafe` block says why it
//! is sound.

use std::time::Duration;

/// `tack`'s allocator, `control/src/hugepages.rs`, compiled into this crate.
#[path = "../../control/src/hugepages.rs"]
pub(crate) mod hugepages;

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`). The machine
/// the benchmarks run on is shared: wall time would also count the time the
/// thread waits for a CPU.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Locks the process's memory, present and future (`mlockall(MCL_CURRENT |
/// MCL_FUTURE)`).
pub(crate) fn mlockall() -> std::io::Result<()> {
    // SAFETY: mlockall has no memory-safety preconditions.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
