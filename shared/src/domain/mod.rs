//! The rules of OAuth 2.0 and OpenID Connect as tokenfn applies them.
//!
//! Pure: no I/O, no clock of its own, no HTTP. Everything here is a value or
//! a decision over values, so every rule is a cheap unit test.

pub mod client;
pub mod device;
pub mod error;
pub mod grant;
pub mod pkce;
pub mod request;
pub mod scope;
pub mod secret;
pub mod throttle;
pub mod token;
pub mod totp;
pub mod user;

pub(crate) use client::scopes_as_string as client_scopes;
pub use client::{Client, ClientAuth, ClientKind, GrantType};
pub use device::{DeviceCode, DeviceDecision};
pub use error::{ErrorCode, OAuthError};
pub use grant::{
    AuthCode, Consent, Flow, Grant, Interaction, Purpose, RefreshToken, RefreshView, Session,
};
pub use request::{AuthorizationRequest, Prompt};
pub use scope::Scopes;
pub use user::User;
