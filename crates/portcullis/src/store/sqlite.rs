//! The SQLite back end: one file, WAL mode so the CLI and the server can use
//! it at the same time.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

use super::{NewUser, Store, StoreError, StoreResult, User};
use crate::auth::password::StoredHash;
use crate::domain::Scopes;

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
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // The CLI may write while the server runs: wait for its lock.
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// The file this store lives in, if any (not for in-memory databases).
    pub fn file_of(url: &str) -> Option<std::path::PathBuf> {
        let options = SqliteConnectOptions::from_str(url).ok()?;
        let name = options.get_filename();
        let text = name.to_string_lossy();
        if text.is_empty() || text == ":memory:" || text.starts_with("file:") {
            return None;
        }
        Some(name.to_path_buf())
    }
}

fn user_from_row(row: &SqliteRow) -> StoreResult<User> {
    let scopes: String = row.try_get("scopes")?;
    Ok(User {
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        full_name: row.try_get("full_name")?,
        disabled: row.try_get("disabled")?,
        // Only valid scopes are ever written; an unreadable one is dropped.
        scopes: Scopes::parse(&scopes).unwrap_or_default(),
        password_hash: StoredHash::new(row.try_get("password_hash")?),
    })
}

fn conflict_or(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(e),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn count_users(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from users")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn insert_user(&self, user: &NewUser, now: i64) -> StoreResult<()> {
        sqlx::query(
            "insert into users (username, username_key, email, full_name, password_hash, scopes, disabled, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(user.username.as_str())
        .bind(user.username.key())
        .bind(&user.email)
        .bind(&user.full_name)
        .bind(user.password_hash.expose())
        .bind(user.scopes.to_string())
        .bind(user.disabled)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    async fn user_by_key(&self, key: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "select username, email, full_name, disabled, scopes, password_hash from users where username_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(
            "select username, email, full_name, disabled, scopes, password_hash from users
             where username_key > $1 order by username_key limit $2",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_password_hash(&self, key: &str, hash: &StoredHash, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "update users set password_hash = $1, updated_at = $2 where username_key = $3",
        )
        .bind(hash.expose())
        .bind(now)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn upgrade_password_hash(
        &self,
        key: &str,
        old: &StoredHash,
        new: &StoredHash,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "update users set password_hash = $1, updated_at = $2 where username_key = $3 and password_hash = $4",
        )
        .bind(new.expose())
        .bind(now)
        .bind(key)
        .bind(old.expose())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_disabled(&self, key: &str, disabled: bool, now: i64) -> StoreResult<bool> {
        let done =
            sqlx::query("update users set disabled = $1, updated_at = $2 where username_key = $3")
                .bind(disabled)
                .bind(now)
                .bind(key)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, key: &str) -> StoreResult<bool> {
        let done = sqlx::query("delete from users where username_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
