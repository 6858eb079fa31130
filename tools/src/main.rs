//! netcon-ctl entry point.
fn main() {}
