//! Tack's L4 packet pipeline.
//!
//! Pure Rust over byte buffers: no DPDK, no clock (time is an argument), no
//! threads. The runtime in `tack-control` feeds bursts of packets and the
//! current [`Time`] into a pipeline per worker core.
#![forbid(unsafe_code)]

pub mod addr;
pub mod balance;
pub mod cluster;
pub mod conn;
pub mod frame;
pub mod hash;
pub mod ids;
pub mod model;
pub mod pipeline;
pub mod ratelimit;
pub mod redirect;
pub mod rss;
pub mod sched;
pub mod sticky;
pub mod syncookie;
pub mod time;
pub mod timer;
pub mod wire;

pub use frame::{Frame, FrameAlloc, RxChecksum, VecAlloc, VecFrame};
pub use time::Time;
