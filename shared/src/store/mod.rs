//! Store implementations: SQLite (the embedded default).

pub mod sqlite;

pub use sqlite::SqliteStore;
