//! The whole pipeline (classification, connection and sticky tables,
//! forwarding, ICMP, ARP/NDP, neighbour table, timers, control messages) on
//! scripts of frames and events. The body lives in the crate
//! (`tack_dataplane::pipeline::fuzz_pipeline`) so that `cargo test` replays
//! the corpus on stable without libFuzzer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tack_dataplane::pipeline::fuzz_pipeline(data);
});
