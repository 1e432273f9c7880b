//! The PostgreSQL back end, for several instances sharing one database.
//!
//! The pool reconnects by itself: a database that goes away makes requests
//! fail fast with `503` (the acquire timeout) until it is back.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{PoolSettings, SqlStore, StoreResult};

/// The types `sql.rs` is compiled against here.
type Db = sqlx::Postgres;
type DbRow = sqlx::postgres::PgRow;

// On purpose: the one SQL body, compiled against this back end's types.
#[allow(clippy::duplicate_mod)]
#[path = "sql.rs"]
mod sql;

/// Users, sessions and keys in PostgreSQL.
pub type PgStore = SqlStore<Db>;

/// Connects and applies migrations (concurrent starts are safe: sqlx takes
/// an advisory lock while migrating).
///
/// # Errors
/// The database error, e.g. an unreachable server.
pub async fn open(url: &str, pool: &PoolSettings) -> StoreResult<PgStore> {
    let options = PgConnectOptions::from_str(url)?.application_name("portcullis");
    let pool = PgPoolOptions::new()
        .max_connections(pool.max_connections)
        .acquire_timeout(pool.acquire_timeout)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(SqlStore { pool })
}
