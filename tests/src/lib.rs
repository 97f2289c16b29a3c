//! Support for the black-box tests and the benchmarks: a local Lambda
//! Runtime API to run the function binaries under, exactly as Lambda does.

pub mod runtime_api;
