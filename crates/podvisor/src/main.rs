//! The podvisor binary.
fn main() {}
