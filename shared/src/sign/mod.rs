//! Signer implementations: a local key file (the embedded default), KMS,
//! and none for functions that do not sign.

pub mod jwk;
pub mod kms;
pub mod local;
pub mod none;
pub mod verify;

pub use kms::KmsSigner;
pub use local::LocalSigner;
pub use none::NoKey;
