//! Support for the black-box tests and the benchmarks: a local Lambda
//! Runtime API to run the function binaries under, exactly as Lambda does,
//! and a proxy in front of the AWS emulator that records and breaks calls.

pub mod aws_proxy;
pub mod runtime_api;

/// An error and its causes on one line (`outer: cause: root cause`), for
/// messages that must say why a request never got an answer.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
