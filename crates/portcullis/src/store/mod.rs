//! Storage: one interface ([`Store`]) for everything portcullis keeps, so the
//! HTTP and CLI layers never see which database is behind it.
//!
//! SQLite is the default, PostgreSQL serves several instances. Both run the
//! same SQL: `sql.rs` is one ordinary Rust file, compiled once against each
//! back end's concrete sqlx types (see `sqlite.rs` and `postgres.rs`); only
//! connection set-up and migrations differ. Times are Unix seconds.

pub mod cached;
pub mod feed;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::domain::{Scopes, StoredHash, UserKey, Username};

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    /// The name as registered (the token's `sub`), with its key.
    pub username: Username,
    /// Contact address, if given.
    pub email: Option<String>,
    /// Display name, if given.
    pub full_name: Option<String>,
    /// A disabled user cannot log in and its tokens stop working.
    pub disabled: bool,
    /// The scopes the user may be granted.
    pub scopes: Scopes,
    /// The password hash.
    pub password_hash: StoredHash,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Parsed username.
    pub username: Username,
    /// Contact address.
    pub email: Option<String>,
    /// Display name.
    pub full_name: Option<String>,
    /// Allowed scopes.
    pub scopes: Scopes,
    /// Created disabled?
    pub disabled: bool,
    /// The password hash (argon2id, or bcrypt from an import).
    pub password_hash: StoredHash,
}

/// A user's stored fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// New email (`Some(None)` clears it).
    pub email: Option<Option<String>>,
    /// New full name (`Some(None)` clears it).
    pub full_name: Option<Option<String>>,
    /// New allowed scopes.
    pub scopes: Option<Scopes>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// New password hash.
    pub password_hash: Option<StoredHash>,
}

/// What a protected route needs to know about a token's user and session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStanding {
    /// The user is disabled.
    pub user_disabled: bool,
    /// The scopes the user holds now.
    pub user_scopes: Arc<Scopes>,
    /// The scopes of the token's session, when it names a live session of
    /// this user; `None` when it names none, or one revoked, gone or another's.
    pub session_scope: Option<Arc<Scopes>>,
    /// The token's `jti` is on the deny list.
    pub denied: bool,
}

/// A registered OAuth client (a machine caller). `Debug` leaves out the
/// secret's hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    /// The `client_id`, as registered, with its key (a username's: the two
    /// share one namespace).
    pub client_id: Username,
    /// SHA-256 of the secret, hex ([`crate::auth::clients`]).
    pub secret_hash: String,
    /// The scopes the client may be granted.
    pub scopes: Scopes,
    /// What the client is, for people.
    pub description: Option<String>,
    /// A disabled client cannot authenticate and its tokens stop working.
    pub disabled: bool,
    /// The `sid` of its tokens: replaced when a secret rotation revokes them.
    pub generation: String,
    /// When it was registered.
    pub created_at: UnixTime,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A client's stored fields to change; `None` leaves a field as it is.
#[derive(Clone, Default)]
pub struct ClientPatch {
    /// New scopes (replaces them all).
    pub scopes: Option<Scopes>,
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// New secret hash.
    pub secret_hash: Option<String>,
    /// New token generation: ends every token issued before.
    pub generation: Option<String>,
}

/// A personal access token as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalToken {
    /// Its id (also the `sid` of the access tokens it is exchanged for).
    pub id: String,
    /// Its owner.
    pub user_key: UserKey,
    /// What its owner called it.
    pub name: String,
    /// The most it can be exchanged for.
    pub scopes: Scopes,
    /// When it was made.
    pub created_at: UnixTime,
    /// When it stops working.
    pub expires_at: UnixTime,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The `sid`.
    pub id: String,
    /// The user's key.
    pub user_key: UserKey,
    /// Scopes granted at login.
    pub scope: String,
    /// The client the login was made through, if any.
    pub client_id: Option<String>,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Retired the old token, stored the new one.
    Rotated(Session),
    /// The token was already used: its whole family (its session, named
    /// here) is now revoked.
    Reused(String),
    /// Unknown, expired, or its session was ended.
    Invalid,
}

/// A refresh token as introspection sees it.
#[derive(Debug, Clone)]
pub struct RefreshTokenInfo {
    /// Its session.
    pub session: Session,
    /// Issued at.
    pub created_at: UnixTime,
    /// Expires at.
    pub expires_at: UnixTime,
    /// Still usable: not used, not expired, session not ended.
    pub active: bool,
}

/// A signing key row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Key id.
    pub kid: String,
    /// JOSE algorithm name.
    pub algorithm: String,
    /// Sealed private key; `None` for the secret's own HS256 key.
    pub sealed_private: Option<Vec<u8>>,
    /// Public JWK as JSON text.
    pub public_jwk: Option<String>,
    /// When it starts signing (in the future while pending).
    pub created_at: UnixTime,
    /// When a newer key took over signing.
    pub superseded_at: Option<UnixTime>,
}

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (e.g. the username) is taken.
    #[error("already exists")]
    Conflict,
    /// The new user's name is confusable with a stored user's: they share a
    /// UTS #39 skeleton ([`Username::skeletons`]).
    #[error("looks like an existing user's or client's name")]
    Confusable,
    /// The change would leave no enabled holder of scope `admin`.
    #[error("the last enabled admin")]
    LastAdmin,
    /// The database failed or could not be reached.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("applying migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything portcullis keeps. Implementations must be safe to share
/// between tasks and, for a server database, between processes.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// The connection pool's use now (for metrics); never waits.
    fn pool_use(&self) -> PoolUse;

    /// How many users exist (to know if this is a first start).
    async fn count_users(&self) -> StoreResult<i64>;

    /// Creates a user and returns it as stored, with its name's skeletons
    /// (kept unique, so of two confusable names registered at once one fails).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the username key is taken,
    /// [`StoreError::Confusable`] when another user's name has its skeleton.
    async fn insert_user(&self, user: &NewUser, now: UnixTime) -> StoreResult<User>;

    /// Whether a stored user's name shares a skeleton with `username` (the
    /// same key included): a cheap check before hashing a password.
    async fn skeleton_taken(&self, username: &Username) -> StoreResult<bool>;

    /// The user with this key, as the database holds it now.
    async fn user_by_key(&self, key: &UserKey) -> StoreResult<Option<User>>;

    /// The user with this key for a request already authenticated (the
    /// profile `/users/me` returns): from memory when the store holds it
    /// ([`cached`]), as current as a token check.
    async fn profile(&self, key: &UserKey) -> StoreResult<Option<Arc<crate::profile::Profile>>> {
        Ok(self.user_by_key(key).await?.map(|u| Arc::new(crate::profile::Profile::from(&u))))
    }

    /// Up to `limit` users whose key sorts after `after`, in key order.
    async fn list_users(&self, after: Option<&UserKey>, limit: u32) -> StoreResult<Vec<User>>;

    /// The highest bcrypt cost among stored hashes, 0 when none is left.
    async fn max_bcrypt_cost(&self) -> StoreResult<u32>;

    /// Replaces `old` by `new` only if the stored hash is still `old`, so an
    /// upgrade after login never undoes a password change made meanwhile.
    async fn upgrade_password_hash(
        &self,
        key: &UserKey,
        old: &StoredHash,
        new: &StoredHash,
        now: UnixTime,
    ) -> StoreResult<bool>;

    /// Deletes a user (and, by cascade, their sessions); `false` when there
    /// is no such user.
    async fn delete_user(&self, key: &UserKey, now: UnixTime) -> StoreResult<bool>;

    /// Applies a patch; ends all the user's sessions when it disables the
    /// user (personal access tokens too) or sets a password (login sessions
    /// only: a PAT outlives a password change). `None` when there is no such user.
    async fn update_user(&self, key: &UserKey, patch: &UserPatch, now: UnixTime) -> StoreResult<Option<User>>;

    /// Where a token's user, session and `jti` stand; `None` when the user
    /// no longer exists.
    async fn token_standing(
        &self,
        user_key: &UserKey,
        sid: Option<&str>,
        jti: &str,
    ) -> StoreResult<Option<TokenStanding>>;

    /// Starts a session with its first refresh token, only if the user is
    /// still enabled, their hash is still `verified` and their scopes are
    /// still `scopes` (a password change, disable or scope removal racing
    /// the login wins). `false` when it was not started.
    async fn create_session(
        &self,
        session: &Session,
        verified: &StoredHash,
        scopes: &Scopes,
        refresh_hash: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool>;

    /// Retires `old_hash` and stores `new_hash` in its place, atomically: of
    /// two concurrent calls with one token, at most one rotates. A token
    /// already used revokes its whole session. A session older than
    /// `session_max_age` seconds rotates no more, and the new token expires
    /// by then at the latest.
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: UnixTime,
        session_max_age: i64,
        now: UnixTime,
    ) -> StoreResult<Rotation>;

    /// Looks a refresh token up without using it.
    async fn refresh_token_info(&self, hash: &str, now: UnixTime) -> StoreResult<Option<RefreshTokenInfo>>;

    /// Registers a client with its id's skeletons.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a client or user has this id's key,
    /// [`StoreError::Confusable`] when a client's or user's name has its skeleton.
    async fn insert_client(&self, client: &Client, now: UnixTime) -> StoreResult<()>;

    /// The client with this key, as the database holds it now.
    async fn client_by_key(&self, key: &UserKey) -> StoreResult<Option<Client>>;

    /// Every client, in key order.
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;

    /// Applies a patch; `None` when there is no such client.
    async fn update_client(&self, key: &UserKey, patch: &ClientPatch, now: UnixTime) -> StoreResult<Option<Client>>;

    /// Deletes a client; `false` when there is none.
    async fn delete_client(&self, key: &UserKey, now: UnixTime) -> StoreResult<bool>;

    /// Stores a personal access token (its SHA-256 `hash`), only if its
    /// user exists and is enabled; `false` otherwise.
    async fn insert_personal_token(&self, token: &PersonalToken, hash: &str, now: UnixTime) -> StoreResult<bool>;

    /// The user's personal access tokens not revoked, newest first.
    async fn personal_tokens(&self, user_key: &UserKey) -> StoreResult<Vec<PersonalToken>>;

    /// The live (not revoked, not expired) personal access token with this hash.
    async fn personal_token_by_hash(&self, hash: &str, now: UnixTime) -> StoreResult<Option<PersonalToken>>;

    /// Revokes the user's personal access token `id` (and the access tokens
    /// exchanged for it); `false` when the user has no such live token.
    async fn revoke_personal_token(&self, user_key: &UserKey, id: &str, now: UnixTime) -> StoreResult<bool>;

    /// The scopes of session `sid` when it is a live session of `user_key`.
    async fn session_scope(&self, sid: &str, user_key: &UserKey) -> StoreResult<Option<Scopes>>;

    /// Whether `jti` is on the deny list (client tokens: no user to ask
    /// [`Store::token_standing`] about).
    async fn token_denied(&self, jti: &str) -> StoreResult<bool>;

    /// Every denied `jti` that has not expired by `now`, with its expiry.
    async fn denied_tokens(&self, now: UnixTime) -> StoreResult<Vec<(String, UnixTime)>>;

    /// Ends one login session (never a PAT); `false` when there was none.
    async fn end_session(&self, sid: &str, now: UnixTime) -> StoreResult<bool>;

    /// Ends every login session of a user (not their personal access tokens).
    async fn end_user_sessions(&self, user_key: &UserKey, now: UnixTime) -> StoreResult<()>;

    /// Denies an access token until `expires_at`.
    async fn deny_token(&self, jti: &str, expires_at: UnixTime, now: UnixTime) -> StoreResult<()>;

    /// Follows the change feed ([`feed`]) for as long as it is polled,
    /// reporting to `sink`: changes made by any process, heartbeats, gaps.
    fn watch(&self, sink: Arc<dyn feed::ChangeSink>) -> portcullis_verify::BoxFuture<'static, ()>;

    /// Drops deny-list entries, refresh tokens and sessions expired before
    /// `before`, and login counters whose window started before
    /// `attempts_before`. Returns how many rows went.
    async fn prune(&self, before: UnixTime, attempts_before: UnixTime) -> StoreResult<u64>;

    /// How many users still have a bcrypt hash (imported, not yet upgraded).
    async fn count_bcrypt_hashes(&self) -> StoreResult<i64>;

    /// The setting `name`, if set.
    async fn setting(&self, name: &str) -> StoreResult<Option<String>>;

    /// The setting `name`, storing `proposed` first when it has none: the
    /// first writer's value is kept, whoever asks later.
    async fn setting_or_init(&self, name: &str, proposed: &str) -> StoreResult<String>;

    /// Counts a failure in `bucket`; a window older than `window` seconds
    /// starts over. Returns the failures in the current window and when it
    /// started, as every instance counted them.
    async fn record_failure(&self, bucket: &str, now: UnixTime, window: i64) -> StoreResult<(i64, UnixTime)>;

    /// The failures in `bucket`'s current window and when it started, if any.
    async fn failures(&self, bucket: &str, now: UnixTime, window: i64) -> StoreResult<Option<(i64, UnixTime)>>;

    /// Forgets a bucket's attempts.
    async fn clear_attempts(&self, bucket: &str) -> StoreResult<()>;

    /// All signing keys, oldest first.
    async fn list_keys(&self) -> StoreResult<Vec<KeyRow>>;

    /// Makes `key` the signing key from its `created_at` on: the current one
    /// is superseded at that time, in one transaction. With `only_if_none`, does nothing when any key exists
    /// (two instances starting on a new database create one key, not two).
    async fn add_signing_key(&self, key: &KeyRow, only_if_none: bool) -> StoreResult<bool>;
}

/// The store as the rest of the program holds it.
pub type SharedStore = Arc<dyn Store>;

/// A store on one sqlx back end; `sql.rs` implements [`Store`] for
/// `SqlStore<Sqlite>` and `SqlStore<Postgres>`.
#[derive(Debug, Clone)]
pub struct SqlStore<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
}

/// How many database connections are open, idle and allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open, idle or in use.
    pub open: u32,
    /// Open connections no request holds.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

/// Connection-pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_connections: u32,
    /// How long a request waits for a connection before failing with `503`.
    pub acquire_timeout: std::time::Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings { max_connections: 10, acquire_timeout: std::time::Duration::from_secs(5) }
    }
}

/// The database could not be reached or opened at start.
#[derive(Debug, thiserror::Error)]
#[error("database unavailable")]
pub struct Unavailable(#[source] pub StoreError);

/// Opens the database a URL names (`sqlite://FILE` or `postgres://…`),
/// creating and migrating it as needed.
///
/// # Errors
/// [`Unavailable`] when it cannot be reached; a message for an unsupported URL.
pub async fn open(url: &str, pool: &PoolSettings) -> anyhow::Result<SharedStore> {
    if url.starts_with("sqlite:") {
        let store = sqlite::open(url, pool).await.map_err(Unavailable)?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::open(url, pool).await.map_err(Unavailable)?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!("unsupported database URL: use sqlite://FILE or postgres://USER@HOST/DB")
    }
}
