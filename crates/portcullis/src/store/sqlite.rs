//! The SQLite back end: one file, WAL mode so the CLI and the server can use
//! it at the same time.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use super::feed::{Change, ChangeSink};
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

/// Serializes the creation of users and clients (one namespace): nothing to
/// do on SQLite, whose first write in a transaction takes the database's
/// write lock, and both inserts write before they check the other table.
const SERIALIZE_NAMES: Option<&str> = None;

/// Records a change for the feed: a row other processes on the file poll.
const RECORD_CHANGE: &str = "insert into standing_changes (subject, at) values ($1, $2)";

/// Feed rows are read within a poll of being written; an hour is kept so a
/// server stalled that long still notices the gap ([`watch`]).
const PRUNE_CHANGES: Option<&str> = Some("delete from standing_changes where at < $1 - 3600");

/// How often a server reads the feed: well inside the second in which a
/// change made by another process (the CLI, say) must hold here.
pub const POLL: Duration = Duration::from_millis(200);

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

/// Follows `standing_changes` on a connection of its own (so a busy pool
/// never delays it): every [`POLL`], the rows after the last one read.
/// SQLite serializes writers, so row numbers follow commit order and
/// "everything after the last row read" misses nothing, unless pruning
/// took rows this server never read; that gap is reported as lost.
pub(super) async fn watch(pool: SqlitePool, sink: Arc<dyn ChangeSink>) {
    // A writer holds the file only briefly; a poll that waits longer fails
    // and is retried (and the sink stops trusting its cache meanwhile).
    let options = (*pool.connect_options()).clone().busy_timeout(Duration::from_millis(100));
    drop(pool);
    let mut connection: Option<SqliteConnection> = None;
    let mut last: Option<i64> = None;
    let mut failing = false;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match poll(&mut connection, &options, &mut last, sink.as_ref()).await {
            Ok(()) => {
                if failing {
                    tracing::info!("the change feed is readable again");
                }
                failing = false;
                sink.alive();
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the change feed; token checks read the database meanwhile");
                }
                failing = true;
                if let Some(c) = connection.take() {
                    drop(c.close().await);
                }
            }
        }
    }
}

async fn poll(
    connection: &mut Option<SqliteConnection>,
    options: &SqliteConnectOptions,
    last: &mut Option<i64>,
    sink: &dyn ChangeSink,
) -> Result<(), sqlx::Error> {
    let conn = match connection {
        Some(c) => c,
        None => connection.insert(options.connect().await?),
    };
    let Some(seen) = *last else {
        // First read: whatever the sink held may predate this point.
        let top: i64 =
            sqlx::query_scalar("select coalesce(max(seq), 0) from standing_changes").fetch_one(&mut *conn).await?;
        *last = Some(top);
        sink.lost();
        return Ok(());
    };
    let rows: Vec<(i64, String)> =
        sqlx::query_as("select seq, subject from standing_changes where seq > $1 order by seq")
            .bind(seen)
            .fetch_all(&mut *conn)
            .await?;
    if rows.first().is_some_and(|(seq, _)| *seq > seen + 1) {
        tracing::warn!("change-feed rows were pruned before this server read them; its cache starts over");
        sink.lost();
    }
    for (seq, subject) in rows {
        if let Some(change) = Change::parse(&subject) {
            sink.changed(change);
        }
        *last = Some(seq);
    }
    Ok(())
}
