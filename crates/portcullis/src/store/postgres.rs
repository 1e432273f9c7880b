//! The PostgreSQL back end, for several instances sharing one database.
//!
//! Same schema and SQL as SQLite (see `sql.rs`); here only the connection.
//! The pool reconnects by itself: a database that goes away makes requests
//! fail fast with `503` (the acquire timeout) until it is back.

use std::str::FromStr;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};

/// Users, sessions and keys in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies migrations (concurrent starts are safe: sqlx
    /// takes an advisory lock while migrating).
    ///
    /// # Errors
    /// The database error, e.g. an unreachable server.
    pub async fn open(url: &str, pool: &super::PoolSettings) -> super::StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("portcullis");
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }
}

super::sql::sql_store!(PgStore, PgRow);
