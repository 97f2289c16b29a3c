//! The paths tokenfn serves, each function's and `tokenfn serve`'s alike.
//! The routers answer at them and the services build URLs to them
//! (redirects, the device verification URI), so they sit below both.

pub const AUTHORIZE: &str = "/authorize";
pub const LOGIN: &str = "/login";
pub const CONSENT: &str = "/consent";
pub const TOKEN: &str = "/oauth/token";
pub const REFRESH: &str = "/oauth/refresh";
pub const REVOKE: &str = "/oauth/revoke";
pub const INTROSPECT: &str = "/oauth/introspect";
pub const USERINFO: &str = "/userinfo";
pub const DISCOVERY: &str = "/.well-known/openid-configuration";
pub const JWKS: &str = "/.well-known/jwks.json";
/// RFC 8628 §3.1 (token function).
pub const DEVICE_AUTHORIZATION: &str = "/oauth/device_authorization";
/// RFC 8628 §3.3 verification page (authorize function).
pub const DEVICE: &str = "/device";
/// The connected apps page and its revoke form (authorize function).
pub const ACCOUNT_APPS: &str = "/account/apps";
pub const ACCOUNT_APPS_REVOKE: &str = "/account/apps/revoke";
/// The playground page, and the introspection it uses for its own tokens
/// (authorize function; answered only when the playground is on).
pub const PLAYGROUND: &str = "/playground";
pub const PLAYGROUND_INTROSPECT: &str = "/playground/introspect";
