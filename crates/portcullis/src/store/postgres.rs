//! The PostgreSQL back end, for several instances sharing one database.
//!
//! The pool reconnects by itself: a database that goes away makes requests
//! fail fast with `503` (the acquire timeout) until it is back.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::feed::{CHANNEL, Change, ChangeSink};
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

/// Serializes the creation of users and clients (one namespace), so a user
/// and a client with lookalike names created at once cannot both check the
/// other table before either commits.
const SERIALIZE_NAMES: Option<&str> = Some("select pg_advisory_xact_lock(7016)");

/// Announces a change for the feed: delivered to every listener when the
/// transaction commits, not before (`$2`, the time, is unused here).
const RECORD_CHANGE: &str = "select pg_notify('portcullis_standing', $1) from (select $2::bigint) as t";

/// Notifications are not stored: nothing to prune.
const PRUNE_CHANGES: Option<&str> = None;

/// How often a server sends itself a heartbeat through the feed.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

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

/// Follows the feed: `LISTEN` on a connection of its own, plus a heartbeat
/// this server sends itself every [`HEARTBEAT`] through the pool. Hearing
/// it proves the feed works end to end: PostgreSQL delivers notifications
/// in commit order, so every change committed before the heartbeat was
/// sent has arrived. When it stops arriving the listener is replaced; every
/// (re)connection reports `lost`, since notifications sent while nobody
/// listened are gone.
pub(super) async fn watch(pool: PgPool, sink: Arc<dyn ChangeSink>) {
    // Connections of the feed's own (one listens, one pings), so a pool
    // busy with logins never delays a heartbeat into a false alarm, nor
    // takes the listener's connection back.
    let options = (*pool.connect_options()).clone();
    drop(pool);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(HEARTBEAT)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options);
    let ping = format!("ping:{:016x}", rand::random::<u64>());
    let pinger = tokio::spawn({
        let (pool, ping) = (pool.clone(), ping.clone());
        async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let sent = sqlx::query("select pg_notify($1, $2)").bind(CHANNEL).bind(&ping).execute(&pool);
                // A failure shows as a missing heartbeat, logged below.
                drop(tokio::time::timeout(HEARTBEAT, sent).await);
            }
        }
    });
    let _stop_pinger = AbortOnDrop(pinger);
    loop {
        let mut listener = match listen(&pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for changes; token checks read the database meanwhile");
                tokio::time::sleep(HEARTBEAT).await;
                continue;
            }
        };
        sink.lost();
        loop {
            match tokio::time::timeout(HEARTBEAT * 3, listener.try_recv()).await {
                Ok(Ok(Some(note))) if note.payload() == ping => sink.alive(),
                Ok(Ok(Some(note))) => {
                    if let Some(change) = Change::parse(note.payload()) {
                        sink.changed(change);
                    }
                }
                // Reconnected (and listening again): what was sent between is lost.
                Ok(Ok(None)) => sink.lost(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the change feed failed; reconnecting");
                    break;
                }
                Err(_) => {
                    tracing::warn!("no heartbeat through the change feed for 3 s; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Stops a task when the future that started it is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
