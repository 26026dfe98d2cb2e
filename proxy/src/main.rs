//! `tack-proxy` binary.
fn main() {}
