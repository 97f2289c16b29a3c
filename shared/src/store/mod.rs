//! Store implementations: SQLite (the embedded default) and DynamoDB.

pub mod dynamodb;
pub mod sqlite;

pub use dynamodb::DynamoStore;
pub use sqlite::SqliteStore;
