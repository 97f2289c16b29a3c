//! Store implementations: SQLite (the embedded default, feature `sqlite`)
//! and DynamoDB.

pub mod dynamodb;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use dynamodb::DynamoStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// What both stores' own tests build their grants and codes from.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::domain::secret::hash;
    use crate::domain::{AuthCode, Grant, Scopes};

    pub const T: i64 = 1_800_000_000;

    pub fn grant(id: &str) -> Grant {
        Grant {
            id: id.into(),
            user_id: "u1".into(),
            client_id: "app".into(),
            scopes: Scopes::parse("openid offline_access").unwrap(),
            auth_time: T,
            amr: vec!["pwd".into()],
            created_at: T,
            expires_at: T + 86_400,
            revoked_at: None,
            last_used_at: T,
        }
    }

    pub fn code(secret: &str, grant_id: &str) -> AuthCode {
        AuthCode {
            hash: hash(secret),
            client_id: "app".into(),
            redirect_uri: "https://app.example/cb".into(),
            user_id: "u1".into(),
            scopes: Scopes::parse("openid offline_access").unwrap(),
            nonce: None,
            code_challenge: None,
            auth_time: T,
            amr: vec!["pwd".into()],
            grant_id: grant_id.into(),
            expires_at: T + 60,
            consumed_at: None,
        }
    }
}
