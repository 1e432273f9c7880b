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
/// Taken first by a change that may remove an enabled admin, with the
/// target's key as `$1`: one such change at a time, so two admins disabling
/// each other cannot both pass the last-admin check (READ COMMITTED would
/// let each see the other still enabled).
const SERIALIZE_ADMIN_CHANGES: &str = "select pg_advisory_xact_lock(7015) from (select $1::text) as target";

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
    let store = SqlStore { pool };
    store.backfill_skeletons().await?;
    Ok(store)
}
