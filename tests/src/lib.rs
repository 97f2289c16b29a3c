//! Support for the black-box tests and the benchmarks: a local Lambda
//! Runtime API to run the function binaries under, exactly as Lambda does,
//! and a proxy in front of the AWS emulator that records and breaks calls.

pub mod aws_proxy;
pub mod runtime_api;
