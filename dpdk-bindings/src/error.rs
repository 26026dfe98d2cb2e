//! The one error type of `tack-dpdk`.

use std::ffi::CStr;
use std::fmt;

use crate::sys;

/// An error from DPDK or from a wrapper's own argument checks.
///
/// Carries the operation that failed, the `rte_errno` (or negative return) value
/// and DPDK's text for it (`rte_strerror`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Error {
    /// What was being done, e.g. `"rte_eth_dev_configure(port 0)"`.
    pub op: String,
    /// The errno value (positive), 0 when the failure carries none.
    pub errno: i32,
    /// DPDK's description of `errno`, or the wrapper's own explanation.
    pub message: String,
}

impl Error {
    /// An error for `op` from the errno value `errno` (sign ignored).
    pub fn from_errno(op: impl Into<String>, errno: i32) -> Error {
        let errno = errno.unsigned_abs() as i32;
        Error {
            op: op.into(),
            errno,
            message: strerror(errno),
        }
    }

    /// An error for `op` from the current `rte_errno`.
    pub fn last(op: impl Into<String>) -> Error {
        // SAFETY: reads a per-thread integer.
        let errno = unsafe { sys::tack_rte_errno() };
        Error::from_errno(op, errno)
    }

    /// An error raised by a wrapper's own argument check.
    pub fn invalid(op: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            op: op.into(),
            errno: libc::EINVAL,
            message: message.into(),
        }
    }
}

/// DPDK's text for an errno value (covers DPDK's own `E_RTE_*` codes too).
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe {
        let p = sys::rte_strerror(errno);
        if p.is_null() {
            format!("errno {errno}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.message)
    }
}

impl std::error::Error for Error {}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
