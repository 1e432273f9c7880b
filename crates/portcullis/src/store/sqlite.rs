//! The SQLite back end: one file, WAL mode so the CLI and the server can use
//! it at the same time.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};

/// Users, sessions and keys in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and applies migrations.
    ///
    /// # Errors
    /// The database error, e.g. a directory that does not exist.
    pub async fn open(url: &str, pool: &super::PoolSettings) -> super::StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // The CLI may write while the server runs: wait for its lock.
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// The file this store lives in, if any (not for in-memory databases).
    pub fn file_of(url: &str) -> Option<std::path::PathBuf> {
        if !url.starts_with("sqlite:") {
            return None;
        }
        let options = SqliteConnectOptions::from_str(url).ok()?;
        let name = options.get_filename();
        let text = name.to_string_lossy();
        if text.is_empty() || text == ":memory:" || text.starts_with("file:") {
            return None;
        }
        Some(name.to_path_buf())
    }
}

super::sql::sql_store!(SqliteStore, SqliteRow);
