//! Tack's L4 packet pipeline.
//!
//! Pure Rust over byte buffers: no DPDK, no clock (time is an argument), no threads.
#![forbid(unsafe_code)]
