//! `tackctl`: admin CLI.
fn main() {}
