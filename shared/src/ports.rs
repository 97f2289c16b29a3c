//! The traits the domain needs from the outside world. Store methods are
//! domain operations, so that each backend makes them atomic its own way.

use async_trait::async_trait;

use crate::domain::{
    AuthCode, Client, Consent, DeviceCode, DeviceDecision, Grant, Interaction, RefreshToken,
    RefreshView, Session, User,
};

/// A dependency failed (the store or the signer). Maps to 503
/// `temporarily_unavailable`, never to a token being lost.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("already exists: {0}")]
    Conflict(String),
}

/// The outcome of redeeming an authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The code was unused; it is now consumed and the grant (with its first
    /// refresh token, if any) exists.
    Issued,
    /// The code had been redeemed already: the grant it created must die
    /// (DESIGN invariant 6).
    Replayed { grant_id: String },
    /// No such code, or it expired.
    Invalid,
}

/// Recent failed attempts under one throttling key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    /// When the last one happened (0 when there is none).
    pub last_at: i64,
}

/// The outcome of rotating a refresh token (DESIGN invariant 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotated {
    /// The old token is consumed and the successor stored.
    Rotated,
    /// The old token had been consumed already (outside the leeway): the
    /// caller must revoke the grant (DESIGN invariant 3).
    Reused { grant_id: String },
    /// No such token, expired, or its grant is not active.
    Invalid,
}

#[async_trait]
pub trait Store: Send + Sync {
    // Clients and users: administered, read on every request.
    async fn put_client(&self, client: &Client) -> Result<(), StoreError>;
    async fn get_client(&self, id: &str) -> Result<Option<Client>, StoreError>;
    /// Fails with `Conflict` when the username is taken.
    async fn add_user(&self, user: &User) -> Result<(), StoreError>;
    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError>;
    async fn find_user(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// Sets (`Some`) or removes (`None`) the user's TOTP secret. Returns
    /// whether the user exists.
    async fn set_totp(&self, user_id: &str, secret: Option<&str>) -> Result<bool, StoreError>;
    /// Records that the TOTP code of `step` was used, atomically and only if
    /// no code of that step or a later one was (RFC 6238 §5.2: a code works
    /// once). Returns whether it was recorded.
    async fn claim_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError>;

    // The browser side of the authorization endpoint.
    async fn put_interaction(&self, interaction: &Interaction) -> Result<(), StoreError>;
    async fn get_interaction(&self, id: &str, now: i64) -> Result<Option<Interaction>, StoreError>;
    async fn delete_interaction(&self, id: &str) -> Result<(), StoreError>;
    async fn put_session(&self, session: &Session) -> Result<(), StoreError>;
    async fn get_session(&self, hash: &str, now: i64) -> Result<Option<Session>, StoreError>;
    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError>;
    async fn put_consent(&self, consent: &Consent) -> Result<(), StoreError>;

    // Codes.
    async fn put_code(&self, code: &AuthCode) -> Result<(), StoreError>;
    /// The code, unexpired, whether or not it was consumed.
    async fn find_code(&self, hash: &str, now: i64) -> Result<Option<AuthCode>, StoreError>;
    /// `get_client` and `find_code` in one read, the first step of a code
    /// exchange (as `client_and_refresh`).
    async fn client_and_code(
        &self,
        client_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<(Option<Client>, Option<AuthCode>), StoreError>;
    /// Atomically: consume the code if unused and unexpired, create `grant`
    /// and store `refresh` (if any) as its first refresh token.
    async fn redeem_code(
        &self,
        hash: &str,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
        now: i64,
    ) -> Result<Redeemed, StoreError>;

    /// Atomically: create `grant` and store `refresh` (if any) as its first
    /// refresh token (grants made without a code: the password grant).
    async fn create_grant(
        &self,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
    ) -> Result<(), StoreError>;
    /// Keeps the `keep` newest active grants of the user for the client and
    /// revokes the older ones (the per-user cap). Returns how many it revoked.
    async fn revoke_oldest_grants(
        &self,
        user_id: &str,
        client_id: &str,
        keep: usize,
        now: i64,
    ) -> Result<u64, StoreError>;

    // Failed attempts, for throttling. A counter lives `ttl` seconds after
    // its last failure; an expired counter reads as none.
    async fn get_failures(&self, key: &str, now: i64) -> Result<Failures, StoreError>;
    /// Adds one failure at `now`; returns the counter after it.
    async fn add_failure(&self, key: &str, now: i64, ttl: i64) -> Result<Failures, StoreError>;
    async fn clear_failures(&self, key: &str) -> Result<(), StoreError>;

    // Refresh tokens.
    /// The token and its grant, unexpired (consumed tokens included, so that
    /// reuse is seen).
    async fn find_refresh(&self, hash: &str, now: i64) -> Result<Option<RefreshView>, StoreError>;
    /// `get_client` and `find_refresh` in one read, the first step of a
    /// refresh grant: one read transaction on SQLite, one BatchGetItem on
    /// DynamoDB.
    async fn client_and_refresh(
        &self,
        client_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<(Option<Client>, Option<RefreshView>), StoreError>;
    /// Atomically: if `old_hash` is unconsumed, within its idle lifetime and
    /// its grant is active, consume it and store `successor`. If it was
    /// consumed no more than `leeway` seconds ago and its own successor is
    /// still unconsumed, rotate from that successor instead.
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        successor: &RefreshToken,
        leeway: i64,
        now: i64,
    ) -> Result<Rotated, StoreError>;

    /// Takes back a redemption whose response could not be built (a
    /// signature failed after the commit), so that the client's retry with
    /// the same code is not taken for a replay (DESIGN invariant 7).
    /// Atomically, and only if the grant's first refresh token (when there
    /// is one) is still unconsumed: delete that token and the grant, and make
    /// the code unconsumed again. Returns whether it undid anything.
    async fn undo_redemption(
        &self,
        code_hash: &str,
        grant_id: &str,
        refresh_hash: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Takes back a rotation whose response could not be built, so that the
    /// presented token works again (DESIGN invariant 7). `presented_hash` is
    /// the token the client sent and `successor_hash` the one stored for it:
    /// its direct successor, or (after a rotation within the leeway) the
    /// successor of its successor. Atomically, and only if the successor is
    /// still unconsumed: delete it and make the token it replaced unconsumed
    /// again. Returns whether it undid anything.
    async fn undo_rotation(
        &self,
        presented_hash: &str,
        successor_hash: &str,
    ) -> Result<bool, StoreError>;

    // Grants and revocation. Each returns how many active grants it revoked.
    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;
    /// The user's grants that are neither revoked nor expired.
    async fn list_grants(&self, user_id: &str, now: i64) -> Result<Vec<Grant>, StoreError>;
    async fn revoke_grant(&self, id: &str, now: i64) -> Result<u64, StoreError>;
    async fn revoke_user(&self, user_id: &str, now: i64) -> Result<u64, StoreError>;
    async fn revoke_client(&self, client_id: &str, now: i64) -> Result<u64, StoreError>;
    /// Forgets the user's consent for the client and revokes their grants.
    async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<u64, StoreError>;

    // Device authorization (RFC 8628).
    /// Stores a new device code. Fails with `Conflict` when a record that is
    /// still kept has the same device code or user code (the caller draws
    /// another user code).
    async fn put_device_code(&self, device: &DeviceCode) -> Result<(), StoreError>;
    /// The device code by its hash, until `kept_until` (expired, decided
    /// and consumed ones included, so that polls get the right error).
    async fn find_device_code(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<DeviceCode>, StoreError>;
    /// The device code whose user code has this hash, until `kept_until`.
    async fn find_user_code(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> Result<Option<DeviceCode>, StoreError>;
    /// Atomically records the user's decision, only if the code is
    /// undecided and unexpired. Returns whether it was recorded.
    async fn decide_device_code(
        &self,
        hash: &str,
        decision: &DeviceDecision,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Records a poll at `now` with the (possibly grown) `interval`, only if
    /// the last poll is still `last_polled_at` as read: of two concurrent
    /// polls one is recorded. Returns whether it was.
    async fn record_device_poll(
        &self,
        hash: &str,
        last_polled_at: Option<i64>,
        interval: i64,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Atomically: if the code is approved (for `grant.user_id`), unconsumed
    /// and unexpired, consume it, create `grant` and store `refresh` (if any)
    /// as its first refresh token. Returns whether it did.
    async fn redeem_device_code(
        &self,
        hash: &str,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Takes back a device redemption whose response could not be built
    /// (DESIGN invariant 7), like `undo_redemption`: atomically, and only if
    /// the code was consumed for `grant_id`, the grant is unrevoked and its
    /// first refresh token (if any) unconsumed, delete them and make the
    /// code unconsumed again. Returns whether it undid anything.
    async fn undo_device_redemption(
        &self,
        hash: &str,
        grant_id: &str,
        refresh_hash: Option<&str>,
    ) -> Result<bool, StoreError>;
}

/// What the signer publishes: the JOSE header of its signatures and the
/// JWK Set of every configured key.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeys {
    /// JOSE `alg` of the signing key (ES256, RS256).
    pub alg: &'static str,
    /// RFC 7638 thumbprint of the signing key.
    pub kid: String,
    /// The JWK Set of every configured key.
    pub jwks: serde_json::Value,
}

/// Makes JWS signatures. The first configured key signs; all are published.
#[async_trait]
pub trait Signer: Send + Sync {
    /// The signing key's `alg`, if it is known without reading the keys.
    fn alg(&self) -> Option<&'static str> {
        None
    }
    /// The keys, read once: the first call may wait for a KMS signer's
    /// read of its public keys.
    async fn keys(&self) -> Result<&SigningKeys, StoreError>;
    /// A signature is likely soon: begin, without waiting, what it will
    /// wait for (a KMS signer reads its keys if it has not yet).
    fn prepare(&self) {}
    /// The JOSE signature over `signing_input` (for ECDSA, the 64-byte r||s).
    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// Seconds since the Unix epoch. Fixed in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}
