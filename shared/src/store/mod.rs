//! Store implementations: SQLite (the embedded default, feature `sqlite`)
//! and DynamoDB.

pub mod dynamodb;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use dynamodb::DynamoStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
