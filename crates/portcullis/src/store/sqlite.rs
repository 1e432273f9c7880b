//! The SQLite back end: one file, WAL mode so the CLI and the server can use
//! it at the same time.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{PoolSettings, SqlStore, StoreResult};

/// The types `sql.rs` is compiled against here.
type Db = sqlx::Sqlite;
type DbRow = sqlx::sqlite::SqliteRow;

// On purpose: the one SQL body, compiled against this back end's types.
/// Taken first by a change that may remove an enabled admin, with the
/// target's key as `$1`: a write, so the transaction holds SQLite's single
/// write lock before it reads (a read first would fail, not wait, when
/// another writer commits in between).
const SERIALIZE_ADMIN_CHANGES: &str = "update users set updated_at = updated_at where username_key = $1";

#[allow(clippy::duplicate_mod)]
#[path = "sql.rs"]
mod sql;

/// Users, sessions and keys in a SQLite file.
pub type SqliteStore = SqlStore<Db>;

/// Opens (creating if needed) the database at `url` and applies migrations.
///
/// # Errors
/// The database error, e.g. a directory that does not exist.
pub async fn open(url: &str, pool: &PoolSettings) -> StoreResult<SqliteStore> {
    if let Some(file) = file_of(url) {
        create_private(&file);
    }
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
    let store = SqlStore { pool };
    store.backfill_skeletons().await?;
    Ok(store)
}

/// The file a `sqlite:` URL names, if any (not for in-memory databases).
/// Creates the database file readable by its owner only (it holds password
/// hashes), unless it exists; SQLite gives its `-wal` and `-shm` files the
/// same mode. An existing file readable by others is left as it is, with a
/// warning: someone chose that mode, or must fix it.
fn create_private(file: &std::path::Path) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                tracing::warn!(
                    file = %file.display(),
                    "the database file is readable by other users and holds password hashes: chmod 600 it"
                );
            }
        }
        // A directory that does not exist yet, say: sqlx reports it better.
        Err(_) => {}
    }
}

pub fn file_of(url: &str) -> Option<PathBuf> {
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
