//! Transparent huge pages for the workers' tables.
//!
//! Every packet touches the connection table at a random place; at a million
//! flows the table is hundreds of MiB, so with 4 KiB pages nearly every
//! lookup is also a TLB miss and a page walk. The benchmarks in `bench/`
//! measure about 205 ns per packet at 1 M flows with 4 KiB pages against
//! about 125 ns with 2 MiB pages on the development VM.
//!
//! The tables are ordinary heap allocations, so huge pages come from glibc:
//! with the tunable `glibc.malloc.hugetlb=1` malloc advises transparent huge
//! pages (`madvise(MADV_HUGEPAGE)`) for its large mappings. Tunables are read
//! when the process starts, so [`reexec_with_huge_pages`] executes `tack`
//! again with the tunable set (same PID, arguments and descriptors) before
//! anything is allocated. The kernel must allow it:
//! `/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise` or
//! `always` ([`thp_mode`]).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// The tunable that asks glibc's malloc for transparent huge pages.
pub const TUNABLE: &str = "glibc.malloc.hugetlb=1";

/// Whether the tunables string `tunables` (the value of `GLIBC_TUNABLES`)
/// already decides `glibc.malloc.hugetlb`, and if so, whether it turns it on.
pub fn decided(tunables: &str) -> Option<bool> {
    tunables
        .split(':')
        .filter_map(|t| t.strip_prefix("glibc.malloc.hugetlb="))
        .next_back()
        .map(|v| v != "0")
}

/// `tunables` with [`TUNABLE`] appended.
pub fn with_tunable(tunables: &str) -> String {
    if tunables.is_empty() {
        TUNABLE.to_string()
    } else {
        format!("{tunables}:{TUNABLE}")
    }
}

/// The kernel's transparent-huge-page mode (`always`, `madvise` or `never`),
/// if it can be read.
pub fn thp_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = s.find('[')? + 1;
    let end = start + s[start..].find(']')?;
    Some(s[start..end].to_string())
}

/// Whether this process's malloc was started with huge pages requested.
pub fn requested() -> bool {
    std::env::var("GLIBC_TUNABLES").is_ok_and(|t| decided(&t) == Some(true))
}

/// Executes the running program again with [`TUNABLE`] added to
/// `GLIBC_TUNABLES`, unless the variable already decides it or the kernel
/// never gives transparent huge pages. Returns only if it does not
/// re-execute: `Ok(())` when nothing needed doing, `Err` with the reason
/// when the `exec` failed (the caller goes on with 4 KiB pages).
pub fn reexec_with_huge_pages() -> Result<(), String> {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if decided(&tunables).is_some() || thp_mode().as_deref() == Some("never") {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the executable: {e}"))?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let err = std::process::Command::new(exe)
        .args(args)
        .env("GLIBC_TUNABLES", with_tunable(&tunables))
        .exec();
    Err(format!("cannot re-execute with huge pages: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunable_parsing() {
        assert_eq!(decided(""), None);
        assert_eq!(decided("glibc.malloc.arena_max=2"), None);
        assert_eq!(decided("glibc.malloc.hugetlb=1"), Some(true));
        assert_eq!(decided("glibc.malloc.hugetlb=2"), Some(true));
        assert_eq!(
            decided("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"),
            Some(false)
        );
        assert_eq!(with_tunable(""), TUNABLE);
        assert_eq!(
            with_tunable("glibc.malloc.arena_max=2"),
            "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
        );
    }
}
