//! The Tack appliance: YAML profiles, the lcore runtime on `tack-dpdk`, the
//! control thread, and the management tools.
//!
//! The crate's only `unsafe` code is the global allocator in [`hugepages`]
//! (it forwards to the system allocator and calls `madvise`) and the `bpf`
//! system calls that attach a steering program in [`steering`]; the rest of
//! the crate denies it. DPDK is reached through `tack-dpdk`'s safe API.

#![deny(unsafe_code)]

pub mod api;
pub mod clock;
pub mod cluster;
pub mod ctl;
pub mod exception;
pub mod health;
#[allow(unsafe_code)]
pub mod hugepages;
pub mod metrics;
pub mod mgmt;
pub mod msg;
pub mod profile;
pub mod quarantine;
pub mod report;
pub mod runtime;
pub mod steering;
pub mod tackctl;
pub mod worker;
pub mod yamlpos;

/// `println!` that ignores a closed stdout (`tack check | head -1`) instead of panicking.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout.
#[macro_export]
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
