//! The SQL both back ends share, as one ordinary Rust file. SQLite and
//! PostgreSQL accept the same statements here (`$n` placeholders,
//! `returning`, `on conflict`), so they are written once; `sqlite.rs` and
//! `postgres.rs` each compile this file against their own sqlx types
//! (`Db`, `DbRow`), which keeps every query concrete: no bounds to satisfy,
//! and compile errors point at the line that is wrong.
//!
//! Concurrency-sensitive operations are single conditional statements, or
//! transactions that start with a write, so both databases serialize them.

use async_trait::async_trait;
use sqlx::Row;

use super::{Db, DbRow, PRUNE_CHANGES, RECORD_CHANGE, SERIALIZE_ADMIN_CHANGES, SERIALIZE_NAMES};
use crate::clock::UnixTime;
use crate::domain::{Scopes, StoredHash, UserKey, Username};
use crate::store::feed::{Change, ChangeSink};
use crate::store::{
    Client, ClientPatch, KeyRow, NewUser, PersonalToken, PoolUse, RefreshTokenInfo, Rotation, Session, SqlStore, Store,
    StoreError, StoreResult, TokenStanding, User, UserPatch,
};

/// Refuses ([`StoreError::LastAdmin`]) a change to the user `key` (`None`:
/// deleting them) that would leave no enabled holder of scope `admin`.
/// Serialized with every other such change first, so two racing changes
/// cannot each count on the other's admin.
async fn keep_an_admin(
    tx: &mut sqlx::Transaction<'_, Db>,
    key: &UserKey,
    patch: Option<&UserPatch>,
) -> StoreResult<()> {
    sqlx::query(SERIALIZE_ADMIN_CHANGES).bind(key.as_str()).execute(&mut **tx).await?;
    let row = sqlx::query("select disabled, scopes from users where username_key = $1")
        .bind(key.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(()) };
    let disabled: bool = row.try_get("disabled")?;
    let scopes = Scopes::parse(&row.try_get::<String, _>("scopes")?).unwrap_or_default();
    let is_admin = |disabled: bool, scopes: &Scopes| !disabled && scopes.contains("admin");
    let stays_admin =
        patch.is_some_and(|p| is_admin(p.disabled.unwrap_or(disabled), p.scopes.as_ref().unwrap_or(&scopes)));
    if !is_admin(disabled, &scopes) || stays_admin {
        return Ok(());
    }
    let (others,): (i64,) = sqlx::query_as(
        "select count(*) from users
         where username_key <> $1 and disabled = false and (' ' || scopes || ' ') like '% admin %'",
    )
    .bind(key.as_str())
    .fetch_one(&mut **tx)
    .await?;
    if others == 0 { Err(StoreError::LastAdmin) } else { Ok(()) }
}

/// Records `change` in the feed, inside the transaction that makes it, so
/// other processes hear of it exactly when it commits.
async fn record(tx: &mut sqlx::Transaction<'_, Db>, change: Change, now: UnixTime) -> StoreResult<()> {
    sqlx::query(RECORD_CHANGE).bind(change.subject()).bind(now).execute(&mut **tx).await?;
    Ok(())
}

fn user_from_row(row: &DbRow) -> StoreResult<User> {
    let scopes: String = row.try_get("scopes")?;
    Ok(User {
        // Stored names were parsed before they were stored.
        username: Username::from_stored(row.try_get("username")?, UserKey::from_stored(row.try_get("username_key")?)),
        email: row.try_get("email")?,
        full_name: row.try_get("full_name")?,
        disabled: row.try_get("disabled")?,
        // Only valid scopes are ever written; an unreadable one is dropped.
        scopes: Scopes::parse(&scopes).unwrap_or_default(),
        password_hash: StoredHash::new(row.try_get("password_hash")?),
    })
}

/// The two kinds of account that share one namespace: users and clients.
/// Each keeps its names' skeletons in a table of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Account {
    User,
    Client,
}

impl Account {
    fn insert_skeleton(self) -> &'static str {
        match self {
            Account::User => "insert into username_skeletons (skeleton, user_key) values ($1, $2)",
            Account::Client => "insert into client_skeletons (skeleton, client_key) values ($1, $2)",
        }
    }

    /// Who of the *other* kind holds a skeleton.
    fn other_holder(self) -> &'static str {
        match self {
            Account::User => "select client_key from client_skeletons where skeleton = $1",
            Account::Client => "select user_key from username_skeletons where skeleton = $1",
        }
    }
}

/// Claims `name` for an account of `kind`, inside the transaction that
/// stores the account (after its insert): stores its skeletons, unique
/// among its kind ([`StoreError::Confusable`]), then refuses a key or
/// skeleton the other kind holds ([`StoreError::Conflict`] for the same
/// key). On SQLite the insert before holds the write lock; on PostgreSQL
/// [`serialize_names`] ran first, so of a user and a client claiming one
/// name at once, one sees the other.
async fn claim_name(tx: &mut sqlx::Transaction<'_, Db>, name: &Username, kind: Account) -> StoreResult<()> {
    for skeleton in name.skeletons() {
        sqlx::query(kind.insert_skeleton())
            .bind(&skeleton)
            .bind(name.key().as_str())
            .execute(&mut **tx)
            .await
            .map_err(|e| match conflict_or(e) {
                StoreError::Conflict => StoreError::Confusable,
                e => e,
            })?;
        let holder: Option<String> =
            sqlx::query_scalar(kind.other_holder()).bind(&skeleton).fetch_optional(&mut **tx).await?;
        if let Some(holder) = holder {
            return Err(if holder == name.key().as_str() { StoreError::Conflict } else { StoreError::Confusable });
        }
    }
    Ok(())
}

async fn serialize_names(tx: &mut sqlx::Transaction<'_, Db>) -> StoreResult<()> {
    if let Some(sql) = SERIALIZE_NAMES {
        sqlx::query(sql).execute(&mut **tx).await?;
    }
    Ok(())
}

fn client_from_row(row: &DbRow) -> StoreResult<Client> {
    let scopes: String = row.try_get("scopes")?;
    Ok(Client {
        client_id: Username::from_stored(row.try_get("client_id")?, UserKey::from_stored(row.try_get("client_key")?)),
        secret_hash: row.try_get("secret_hash")?,
        scopes: Scopes::parse(&scopes).unwrap_or_default(),
        description: row.try_get("description")?,
        disabled: row.try_get("disabled")?,
        generation: row.try_get("generation")?,
        created_at: row.try_get("created_at")?,
    })
}

fn personal_token_from_row(row: &DbRow) -> StoreResult<PersonalToken> {
    let scope: String = row.try_get("scope")?;
    Ok(PersonalToken {
        id: row.try_get("id")?,
        user_key: UserKey::from_stored(row.try_get("user_key")?),
        name: row.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
        scopes: Scopes::parse(&scope).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn conflict_or(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(e),
    }
}

impl SqlStore<Db> {
    /// Gives users stored before skeletons were kept (migration
    /// `username_skeletons`) theirs, oldest first; SQL cannot compute them.
    /// A user with a skeleton another user has already gets none, and is
    /// counted in a warning: both go on working, and the older name keeps
    /// new lookalikes out. Runs at every open, so such a user gets its
    /// skeletons once the other is gone. Returns how many users have none.
    pub(super) async fn backfill_skeletons(&self) -> StoreResult<i64> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "select username, username_key from users u
             where not exists (select 1 from username_skeletons s where s.user_key = u.username_key)
             order by created_at, username_key",
        )
        .fetch_all(&self.pool)
        .await?;
        for (display, key) in rows {
            let username = Username::from_stored(display, UserKey::from_stored(key));
            let mut tx = self.pool.begin().await?;
            let mut all_ours = true;
            for skeleton in username.skeletons() {
                sqlx::query(
                    "insert into username_skeletons (skeleton, user_key) values ($1, $2) on conflict (skeleton) do nothing",
                )
                .bind(&skeleton)
                .bind(username.key().as_str())
                .execute(&mut *tx)
                .await?;
                // Another instance starting at the same time may have
                // written this user's own: that is fine.
                let owner: String = sqlx::query_scalar("select user_key from username_skeletons where skeleton = $1")
                    .bind(&skeleton)
                    .fetch_one(&mut *tx)
                    .await?;
                all_ours &= owner == username.key().as_str();
            }
            if all_ours { tx.commit().await? } else { tx.rollback().await? }
        }
        let left: i64 = sqlx::query_scalar(
            "select count(*) from users u
             where not exists (select 1 from username_skeletons s where s.user_key = u.username_key)",
        )
        .fetch_one(&self.pool)
        .await?;
        if left > 0 {
            tracing::warn!(
                users = left,
                "users stored before confusable names were refused have names that look like another user's \
                 (same UTS #39 skeleton); they keep working: review them with `portcullis user list`"
            );
        }
        Ok(left)
    }
}

#[async_trait]
impl Store for SqlStore<Db> {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_use(&self) -> PoolUse {
        PoolUse {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn count_users(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from users").fetch_one(&self.pool).await?)
    }

    async fn insert_user(&self, user: &NewUser, now: UnixTime) -> StoreResult<User> {
        let key = user.username.key();
        let mut tx = self.pool.begin().await?;
        serialize_names(&mut tx).await?;
        sqlx::query(
            "insert into users (username, username_key, email, full_name, password_hash, scopes, disabled, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(user.username.as_str())
        .bind(key.as_str())
        .bind(&user.email)
        .bind(&user.full_name)
        .bind(user.password_hash.expose())
        .bind(user.scopes.to_string())
        .bind(user.disabled)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        claim_name(&mut tx, &user.username, Account::User).await?;
        // A server may hold "no such user" for this name.
        record(&mut tx, Change::User(key.clone()), now).await?;
        tx.commit().await?;
        let stored = self.user_by_key(user.username.key()).await?;
        // Only a delete racing this insert could take it away again.
        stored.ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    async fn skeleton_taken(&self, username: &Username) -> StoreResult<bool> {
        for skeleton in username.skeletons() {
            let found: Option<i32> = sqlx::query_scalar(
                "select 1 from username_skeletons where skeleton = $1
                 union all select 1 from client_skeletons where skeleton = $1",
            )
            .bind(skeleton)
            .fetch_optional(&self.pool)
            .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn user_by_key(&self, key: &UserKey) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "select username, username_key, email, full_name, disabled, scopes, password_hash
             from users where username_key = $1",
        )
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, after: Option<&UserKey>, limit: u32) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(
            "select username, username_key, email, full_name, disabled, scopes, password_hash
             from users where username_key > $1 order by username_key limit $2",
        )
        .bind(after.map_or("", UserKey::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn max_bcrypt_cost(&self) -> StoreResult<u32> {
        // `$2b$12$…`: the cost is characters 5 and 6.
        let cost: Option<String> = sqlx::query_scalar(
            "select max(substr(password_hash, 5, 2)) from users
                 where password_hash like '$2_$%' and substr(password_hash, 5, 2) <= '14'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(cost.and_then(|c| c.parse().ok()).unwrap_or(0))
    }

    async fn upgrade_password_hash(
        &self,
        key: &UserKey,
        old: &StoredHash,
        new: &StoredHash,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "update users set password_hash = $1, updated_at = $2 where username_key = $3 and password_hash = $4",
        )
        .bind(new.expose())
        .bind(now)
        .bind(key.as_str())
        .bind(old.expose())
        .execute(&mut *tx)
        .await?;
        let upgraded = done.rows_affected() == 1;
        if upgraded {
            record(&mut tx, Change::User(key.clone()), now).await?;
        }
        tx.commit().await?;
        Ok(upgraded)
    }

    async fn delete_user(&self, key: &UserKey, now: UnixTime) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        keep_an_admin(&mut tx, key, None).await?;
        let done =
            sqlx::query("delete from users where username_key = $1").bind(key.as_str()).execute(&mut *tx).await?;
        record(&mut tx, Change::User(key.clone()), now).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_user(&self, key: &UserKey, patch: &UserPatch, now: UnixTime) -> StoreResult<Option<User>> {
        let mut tx = self.pool.begin().await?;
        if patch.scopes.is_some() || patch.disabled == Some(true) {
            keep_an_admin(&mut tx, key, Some(patch)).await?;
        }
        // Each field is set only when the patch carries it: `$n_set` flags
        // keep this one statement instead of one per combination.
        let done = sqlx::query(
            "update users set
                email = case when $1 then $2 else email end,
                full_name = case when $3 then $4 else full_name end,
                scopes = coalesce($5, scopes),
                disabled = coalesce($6, disabled),
                password_hash = coalesce($7, password_hash),
                updated_at = $8
             where username_key = $9",
        )
        .bind(patch.email.is_some())
        .bind(patch.email.clone().flatten())
        .bind(patch.full_name.is_some())
        .bind(patch.full_name.clone().flatten())
        .bind(patch.scopes.as_ref().map(ToString::to_string))
        .bind(patch.disabled)
        .bind(patch.password_hash.as_ref().map(|h| h.expose().to_owned()))
        .bind(now)
        .bind(key.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        if patch.disabled == Some(true) || patch.password_hash.is_some() {
            // Disabling ends personal access tokens too; a new password not.
            sqlx::query(
                "update sessions set revoked_at = $1
                 where user_key = $2 and revoked_at is null and (kind = 'login' or $3)",
            )
            .bind(now)
            .bind(key.as_str())
            .bind(patch.disabled == Some(true))
            .execute(&mut *tx)
            .await?;
        }
        let row = sqlx::query(
            "select username, username_key, email, full_name, disabled, scopes, password_hash
             from users where username_key = $1",
        )
        .bind(key.as_str())
        .fetch_one(&mut *tx)
        .await?;
        record(&mut tx, Change::User(key.clone()), now).await?;
        tx.commit().await?;
        user_from_row(&row).map(Some)
    }

    async fn token_standing(
        &self,
        user_key: &UserKey,
        sid: Option<&str>,
        jti: &str,
    ) -> StoreResult<Option<TokenStanding>> {
        let row = sqlx::query(
            "select u.disabled, u.scopes,
                    (select s.scope from sessions s
                     where s.id = $2 and s.user_key = u.username_key and s.revoked_at is null) as session_scope,
                    (select count(*) from denied_tokens d where d.jti = $3) as denials
             from users u where u.username_key = $1",
        )
        .bind(user_key.as_str())
        .bind(sid.unwrap_or_default())
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let denials: i64 = row.try_get("denials")?;
        let scopes: String = row.try_get("scopes")?;
        let session_scope: Option<String> = row.try_get("session_scope")?;
        Ok(Some(TokenStanding {
            user_disabled: row.try_get("disabled")?,
            user_scopes: std::sync::Arc::new(Scopes::parse(&scopes).unwrap_or_default()),
            // Only valid scopes are ever written; an unreadable one grants nothing.
            session_scope: session_scope.map(|s| std::sync::Arc::new(Scopes::parse(&s).unwrap_or_default())),
            denied: denials > 0,
        }))
    }

    async fn create_session(
        &self,
        session: &Session,
        verified: &StoredHash,
        scopes: &Scopes,
        refresh_hash: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // A write first: it takes the user's row lock (PostgreSQL) or the
        // database's write lock (SQLite), so a password change, disable or
        // scope removal either commits before it, and this sees it, or waits
        // for this session and then ends it. A plain read would let both pass
        // under READ COMMITTED.
        let unchanged = sqlx::query(
            "update users set updated_at = updated_at
             where username_key = $1 and password_hash = $2 and scopes = $3 and disabled = false",
        )
        .bind(session.user_key.as_str())
        .bind(verified.expose())
        .bind(scopes.to_string())
        .execute(&mut *tx)
        .await?;
        if unchanged.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "insert into sessions (id, user_key, scope, created_at, expires_at, client_id) values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.id)
        .bind(session.user_key.as_str())
        .bind(&session.scope)
        .bind(now)
        .bind(expires_at)
        .bind(&session.client_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "insert into refresh_tokens (token_hash, session_id, created_at, expires_at) values ($1, $2, $3, $4)",
        )
        .bind(refresh_hash)
        .bind(&session.id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: UnixTime,
        session_max_age: i64,
        now: UnixTime,
    ) -> StoreResult<Rotation> {
        // The conditional update takes SQLite's write lock first, so two
        // racing rotations serialize here and only one sees `used_at` null.
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "update refresh_tokens set used_at = $1
             where token_hash = $2 and used_at is null and expires_at > $1
             returning session_id",
        )
        .bind(now)
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(claimed) = claimed else {
            let used: Option<(String, Option<i64>)> =
                sqlx::query_as("select session_id, used_at from refresh_tokens where token_hash = $1")
                    .bind(old_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            let outcome = match used {
                Some((session_id, Some(_))) => {
                    sqlx::query("update sessions set revoked_at = $1 where id = $2 and revoked_at is null")
                        .bind(now)
                        .bind(&session_id)
                        .execute(&mut *tx)
                        .await?;
                    record(&mut tx, Change::Session(session_id.clone()), now).await?;
                    Rotation::Reused(session_id)
                }
                _ => Rotation::Invalid,
            };
            tx.commit().await?;
            return Ok(outcome);
        };
        let session_id: String = claimed.try_get("session_id")?;
        let session = sqlx::query(
            "select s.id, s.user_key, s.scope, s.created_at, s.client_id from sessions s
             join users u on u.username_key = s.user_key
             where s.id = $1 and s.revoked_at is null and u.disabled = false and s.created_at > $2 - $3",
        )
        .bind(&session_id)
        .bind(now)
        .bind(session_max_age)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(session) = session else {
            tx.commit().await?;
            return Ok(Rotation::Invalid);
        };
        // However often it is refreshed, a session ends at its maximum age.
        let started: i64 = session.try_get("created_at")?;
        let expires_at = expires_at.min(started.saturating_add(session_max_age));
        sqlx::query(
            "insert into refresh_tokens (token_hash, session_id, created_at, expires_at) values ($1, $2, $3, $4)",
        )
        .bind(new_hash)
        .bind(&session_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("update sessions set expires_at = $1 where id = $2")
            .bind(expires_at)
            .bind(&session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Rotation::Rotated(Session {
            id: session.try_get("id")?,
            user_key: UserKey::from_stored(session.try_get("user_key")?),
            scope: session.try_get("scope")?,
            client_id: session.try_get("client_id")?,
        }))
    }

    async fn refresh_token_info(&self, hash: &str, now: UnixTime) -> StoreResult<Option<RefreshTokenInfo>> {
        let row = sqlx::query(
            "select s.id, s.user_key, s.scope, s.client_id, s.revoked_at, r.created_at, r.expires_at, r.used_at, u.disabled
             from refresh_tokens r join sessions s on s.id = r.session_id join users u on u.username_key = s.user_key
             where r.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = row.try_get("expires_at")?;
        let revoked: Option<i64> = row.try_get("revoked_at")?;
        let used: Option<i64> = row.try_get("used_at")?;
        let disabled: bool = row.try_get("disabled")?;
        Ok(Some(RefreshTokenInfo {
            session: Session {
                id: row.try_get("id")?,
                user_key: UserKey::from_stored(row.try_get("user_key")?),
                scope: row.try_get("scope")?,
                client_id: row.try_get("client_id")?,
            },
            created_at: row.try_get("created_at")?,
            expires_at,
            active: revoked.is_none() && used.is_none() && !disabled && expires_at > now,
        }))
    }

    async fn insert_client(&self, client: &Client, now: UnixTime) -> StoreResult<()> {
        let key = client.client_id.key();
        let mut tx = self.pool.begin().await?;
        serialize_names(&mut tx).await?;
        sqlx::query(
            "insert into clients (client_key, client_id, secret_hash, scopes, description, disabled, generation, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(key.as_str())
        .bind(client.client_id.as_str())
        .bind(&client.secret_hash)
        .bind(client.scopes.to_string())
        .bind(&client.description)
        .bind(client.disabled)
        .bind(&client.generation)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        claim_name(&mut tx, &client.client_id, Account::Client).await?;
        record(&mut tx, Change::Client(key.clone()), now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn client_by_key(&self, key: &UserKey) -> StoreResult<Option<Client>> {
        let row = sqlx::query("select client_id, client_key, secret_hash, scopes, description, disabled, generation, created_at from clients where client_key = $1")
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        let rows = sqlx::query("select client_id, client_key, secret_hash, scopes, description, disabled, generation, created_at from clients order by client_key")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(client_from_row).collect()
    }

    async fn update_client(&self, key: &UserKey, patch: &ClientPatch, now: UnixTime) -> StoreResult<Option<Client>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "update clients set
                scopes = coalesce($1, scopes),
                description = case when $2 then $3 else description end,
                disabled = coalesce($4, disabled),
                secret_hash = coalesce($5, secret_hash),
                generation = coalesce($6, generation),
                updated_at = $7
             where client_key = $8
             returning client_id, client_key, secret_hash, scopes, description, disabled, generation, created_at",
        )
        .bind(patch.scopes.as_ref().map(ToString::to_string))
        .bind(patch.description.is_some())
        .bind(patch.description.clone().flatten())
        .bind(patch.disabled)
        .bind(&patch.secret_hash)
        .bind(&patch.generation)
        .bind(now)
        .bind(key.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        record(&mut tx, Change::Client(key.clone()), now).await?;
        tx.commit().await?;
        client_from_row(&row).map(Some)
    }

    async fn delete_client(&self, key: &UserKey, now: UnixTime) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("delete from clients where client_key = $1").bind(key.as_str()).execute(&mut *tx).await?;
        record(&mut tx, Change::Client(key.clone()), now).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_personal_token(&self, token: &PersonalToken, hash: &str, now: UnixTime) -> StoreResult<bool> {
        // One statement: a disable racing it either commits first (and this
        // inserts nothing) or ends the new token with the user's sessions.
        let done = sqlx::query(
            "insert into sessions (id, user_key, scope, created_at, expires_at, kind, name, token_hash)
             select $1, username_key, $3, $4, $5, 'pat', $6, $7 from users where username_key = $2 and disabled = false",
        )
        .bind(&token.id)
        .bind(token.user_key.as_str())
        .bind(token.scopes.to_string())
        .bind(now)
        .bind(token.expires_at)
        .bind(&token.name)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn personal_tokens(&self, user_key: &UserKey) -> StoreResult<Vec<PersonalToken>> {
        let rows = sqlx::query(
            "select id, user_key, name, scope, created_at, expires_at from sessions
             where user_key = $1 and kind = 'pat' and revoked_at is null order by created_at desc, id",
        )
        .bind(user_key.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(personal_token_from_row).collect()
    }

    async fn personal_token_by_hash(&self, hash: &str, now: UnixTime) -> StoreResult<Option<PersonalToken>> {
        let row = sqlx::query(
            "select id, user_key, name, scope, created_at, expires_at from sessions
             where token_hash = $1 and kind = 'pat' and revoked_at is null and expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(personal_token_from_row).transpose()
    }

    async fn revoke_personal_token(&self, user_key: &UserKey, id: &str, now: UnixTime) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "update sessions set revoked_at = $1
             where id = $2 and user_key = $3 and kind = 'pat' and revoked_at is null",
        )
        .bind(now)
        .bind(id)
        .bind(user_key.as_str())
        .execute(&mut *tx)
        .await?;
        let revoked = done.rows_affected() == 1;
        if revoked {
            record(&mut tx, Change::Session(id.to_owned()), now).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    async fn session_scope(&self, sid: &str, user_key: &UserKey) -> StoreResult<Option<Scopes>> {
        let scope: Option<String> =
            sqlx::query_scalar("select scope from sessions where id = $1 and user_key = $2 and revoked_at is null")
                .bind(sid)
                .bind(user_key.as_str())
                .fetch_optional(&self.pool)
                .await?;
        // Only valid scopes are ever written; an unreadable one grants nothing.
        Ok(scope.map(|s| Scopes::parse(&s).unwrap_or_default()))
    }

    async fn token_denied(&self, jti: &str) -> StoreResult<bool> {
        let found: Option<i32> = sqlx::query_scalar("select 1 from denied_tokens where jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn denied_tokens(&self, now: UnixTime) -> StoreResult<Vec<(String, UnixTime)>> {
        Ok(sqlx::query_as("select jti, expires_at from denied_tokens where expires_at >= $1")
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn end_session(&self, sid: &str, now: UnixTime) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // A login session: a PAT ends only when revoked as one.
        let done =
            sqlx::query("update sessions set revoked_at = $1 where id = $2 and revoked_at is null and kind = 'login'")
                .bind(now)
                .bind(sid)
                .execute(&mut *tx)
                .await?;
        let ended = done.rows_affected() == 1;
        if ended {
            record(&mut tx, Change::Session(sid.to_owned()), now).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn end_user_sessions(&self, user_key: &UserKey, now: UnixTime) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "update sessions set revoked_at = $1 where user_key = $2 and revoked_at is null and kind = 'login'",
        )
        .bind(now)
        .bind(user_key.as_str())
        .execute(&mut *tx)
        .await?;
        record(&mut tx, Change::User(user_key.clone()), now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deny_token(&self, jti: &str, expires_at: UnixTime, now: UnixTime) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("insert into denied_tokens (jti, expires_at) values ($1, $2) on conflict (jti) do nothing")
            .bind(jti)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        record(&mut tx, Change::Denied { jti: jti.to_owned(), expires_at }, now).await?;
        tx.commit().await?;
        Ok(())
    }

    fn watch(&self, sink: std::sync::Arc<dyn ChangeSink>) -> portcullis_verify::BoxFuture<'static, ()> {
        Box::pin(super::watch(self.pool.clone(), sink))
    }

    async fn prune(&self, before: UnixTime, attempts_before: UnixTime) -> StoreResult<u64> {
        let mut gone = 0;
        for sql in [
            "delete from denied_tokens where expires_at < $1",
            "delete from refresh_tokens where expires_at < $1",
            "delete from sessions where expires_at < $1",
        ] {
            gone += sqlx::query(sql).bind(before).execute(&self.pool).await?.rows_affected();
        }
        if let Some(sql) = PRUNE_CHANGES {
            gone += sqlx::query(sql).bind(before).execute(&self.pool).await?.rows_affected();
        }
        gone += sqlx::query("delete from login_failures where window_start < $1")
            .bind(attempts_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(gone)
    }

    async fn count_bcrypt_hashes(&self) -> StoreResult<i64> {
        let (n,): (i64,) =
            sqlx::query_as("select count(*) from users where password_hash like '$2_$%'").fetch_one(&self.pool).await?;
        Ok(n)
    }

    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("select value from settings where name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn setting_or_init(&self, name: &str, proposed: &str) -> StoreResult<String> {
        sqlx::query("insert into settings (name, value) values ($1, $2) on conflict (name) do nothing")
            .bind(name)
            .bind(proposed)
            .execute(&self.pool)
            .await?;
        let (value,): (String,) =
            sqlx::query_as("select value from settings where name = $1").bind(name).fetch_one(&self.pool).await?;
        Ok(value)
    }

    async fn record_failure(&self, bucket: &str, now: UnixTime, window: i64) -> StoreResult<(i64, UnixTime)> {
        let counted: (i64, i64) = sqlx::query_as(
            "insert into login_failures (bucket, failures, window_start) values ($1, 1, $2)
             on conflict (bucket) do update set
                failures = case when login_failures.window_start <= $2 - $3 then 1 else login_failures.failures + 1 end,
                window_start = case when login_failures.window_start <= $2 - $3 then $2 else login_failures.window_start end
             returning failures, window_start",
        )
        .bind(bucket)
        .bind(now)
        .bind(window)
        .fetch_one(&self.pool)
        .await?;
        Ok(counted)
    }

    async fn failures(&self, bucket: &str, now: UnixTime, window: i64) -> StoreResult<Option<(i64, UnixTime)>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "select failures, window_start from login_failures where bucket = $1 and window_start > $2 - $3",
        )
        .bind(bucket)
        .bind(now)
        .bind(window)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn clear_attempts(&self, bucket: &str) -> StoreResult<()> {
        sqlx::query("delete from login_failures where bucket = $1").bind(bucket).execute(&self.pool).await?;
        Ok(())
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRow>> {
        let rows = sqlx::query(
            "select kid, algorithm, sealed_private, public_jwk, created_at, superseded_at
             from signing_keys order by created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyRow {
                    kid: row.try_get("kid")?,
                    algorithm: row.try_get("algorithm")?,
                    sealed_private: row.try_get("sealed_private")?,
                    public_jwk: row.try_get("public_jwk")?,
                    created_at: row.try_get("created_at")?,
                    superseded_at: row.try_get("superseded_at")?,
                })
            })
            .collect()
    }

    async fn add_signing_key(&self, key: &KeyRow, only_if_none: bool) -> StoreResult<bool> {
        // A unique index allows one active key: of two instances creating
        // the first key, or two rotations racing, one wins, the other gets
        // a conflict.
        let mut tx = self.pool.begin().await?;
        if !only_if_none {
            sqlx::query("update signing_keys set superseded_at = $1 where superseded_at is null")
                .bind(key.created_at)
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(
            "insert into signing_keys (kid, algorithm, sealed_private, public_jwk, created_at) values ($1, $2, $3, $4, $5)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.sealed_private)
        .bind(&key.public_jwk)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or);
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                Ok(true)
            }
            Err(StoreError::Conflict) if only_if_none => Ok(false),
            Err(e) => Err(e),
        }
    }
}
