//! `tack`: run the appliance.
fn main() {}
