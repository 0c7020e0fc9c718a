//! Load generator and benchmarks (see `src/main.rs`).
