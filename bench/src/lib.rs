//! Benchmarks of netcon: criterion micro-benchmarks of hot functions live in `benches/`.
