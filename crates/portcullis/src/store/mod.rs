//! Storage: one interface ([`Store`]) for everything portcullis keeps, so the
//! HTTP and CLI layers never see which database is behind it.
//!
//! SQLite is the default; a PostgreSQL implementation fits beside
//! [`sqlite`] behind the same trait. SQL stays in the module of its back end.

pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::auth::password::StoredHash;
use crate::domain::{Scopes, Username};

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    /// The name as registered (the token's `sub`).
    pub username: String,
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

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (e.g. the username) is taken.
    #[error("already exists")]
    Conflict,
    /// The database failed or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migrations: {0}")]
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

    /// How many users exist (to know if this is a first start).
    async fn count_users(&self) -> StoreResult<i64>;

    /// Creates a user.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the username key is taken.
    async fn insert_user(&self, user: &NewUser, now: i64) -> StoreResult<()>;

    /// The user with this username key.
    async fn user_by_key(&self, key: &str) -> StoreResult<Option<User>>;

    /// Up to `limit` users whose key sorts after `after`, in key order.
    async fn list_users(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<User>>;

    /// Sets a new password hash; `false` when there is no such user.
    async fn set_password_hash(&self, key: &str, hash: &StoredHash, now: i64) -> StoreResult<bool>;

    /// Replaces `old` by `new` only if the stored hash is still `old`, so an
    /// upgrade after login never undoes a password change made meanwhile.
    async fn upgrade_password_hash(
        &self,
        key: &str,
        old: &StoredHash,
        new: &StoredHash,
        now: i64,
    ) -> StoreResult<bool>;

    /// Disables or enables a user; `false` when there is no such user.
    async fn set_disabled(&self, key: &str, disabled: bool, now: i64) -> StoreResult<bool>;

    /// Deletes a user; `false` when there is no such user.
    async fn delete_user(&self, key: &str) -> StoreResult<bool>;
}

/// The store as the rest of the program holds it.
pub type SharedStore = Arc<dyn Store>;

/// Opens the database a URL names, creating and migrating it as needed.
///
/// # Errors
/// A message for an unsupported URL, or the database error.
pub async fn open(url: &str) -> anyhow::Result<SharedStore> {
    if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::open(url).await?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        anyhow::bail!("PostgreSQL is not supported by this build yet: use a sqlite:// URL")
    } else {
        anyhow::bail!("unsupported database URL scheme: use sqlite://FILE (or postgres://…)")
    }
}
