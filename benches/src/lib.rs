//! Shared fixtures of the benchmarks live in the bench files; this library is empty.
