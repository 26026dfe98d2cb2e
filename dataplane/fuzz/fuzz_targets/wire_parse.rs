//! Every wire parser, the classifier and the in-place rewriters on arbitrary
//! bytes. The body lives in the crate (`tack_dataplane::wire::fuzz_parse`) so
//! that `cargo test` replays the corpus on stable without libFuzzer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tack_dataplane::wire::fuzz_parse(data);
});
