//! Signer implementations: a local key file (the embedded default).

pub mod jwk;
pub mod local;

pub use local::LocalSigner;
