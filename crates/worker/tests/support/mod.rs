//! Shared by the worker's integration tests (and the fuzzer).
pub mod stream_check;
