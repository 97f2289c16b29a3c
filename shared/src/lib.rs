//! tokenfn-core: all of tokenfn's token logic.
//!
//! `domain` holds the rules (pure), `ports` the traits they need, `store` and
//! `sign` the adapters, `service` the operations of each endpoint, and `http`
//! one router per Lambda function. The Lambda binaries and `tokenfn serve`
//! are thin shells around these routers.

pub mod aws;
pub mod config;
pub mod domain;
pub mod http;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod paths;
pub mod ports;
pub mod process;
pub mod seal;
pub mod service;
pub mod sign;
pub mod store;
