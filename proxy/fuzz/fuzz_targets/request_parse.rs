//! The HTTP/1.1 request parser, framing checks and chunked-body scanner on
//! arbitrary bytes. The body lives in the crate (`tack_proxy::h1::fuzz_request`)
//! so that `cargo test` replays the corpus on stable without libFuzzer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tack_proxy::h1::fuzz_request(data);
});
