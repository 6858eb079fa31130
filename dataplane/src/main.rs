//! netcon-dp entry point.
fn main() {}
