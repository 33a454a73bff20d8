//! The tailgate binary.
fn main() {}
