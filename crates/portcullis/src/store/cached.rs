//! Token checks from memory: a [`Store`] in front of the database that
//! answers `token_standing` and `profile` (what every protected request
//! asks) from what it holds, kept current by the change feed ([`super::feed`]).
//!
//! What is held, and its bounds:
//! - users (profile, scopes, disabled, or "no such user"), at most
//!   `capacity.users`, evicted least-recently-and-frequently used first
//!   (`quick_cache`'s S3-FIFO);
//! - sessions (live or not, their scopes), at most `capacity.sessions`,
//!   evicted the same way;
//! - clients (or "no such client"), at most [`MAX_CLIENTS_HELD`]: client
//!   authentication and client-token checks read them;
//! - every denied `jti` until its token expires: the deny list is small by
//!   nature (revocations within one access-token lifetime) and a miss there
//!   could not be told from "not denied", so it is held whole.
//!
//! Why it is never stale for long:
//! - a change made through this process applies here before the call that
//!   made it returns;
//! - a change made elsewhere arrives by the feed (PostgreSQL: at commit;
//!   SQLite: within a 200 ms poll);
//! - an entry read from the database while a change arrived is not kept
//!   (a generation counter), so a slow read cannot put back what a change
//!   removed;
//! - when the feed has shown no sign of life for [`STALE_AFTER`], or may
//!   have missed changes and the deny list is not yet reloaded, nothing
//!   held is trusted: every check reads the database (and answers `503`
//!   with `Retry-After` when that fails too);
//! - every [`RECONCILE`], all of it is dropped and the deny list reread,
//!   the safety net for a change the feed lost without noticing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use quick_cache::sync::Cache;

use super::feed::{Change, ChangeSink};
use super::{
    Client, ClientPatch, KeyRow, NewUser, PersonalToken, PoolUse, RefreshTokenInfo, Rotation, Session, SharedStore,
    Store, StoreResult, TokenStanding, User, UserPatch,
};
use crate::clock::{Clock, UnixTime};
use crate::domain::{Scopes, StoredHash, UserKey, Username};
use crate::profile::Profile;

/// How long past the feed's last sign of life what is held is trusted.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// How often everything held is dropped and reread on demand.
pub const RECONCILE: Duration = Duration::from_secs(60);

/// Most clients (or unknown ids) held: deployments have few clients, and
/// the cache's table is sized up front.
pub const MAX_CLIENTS_HELD: usize = 4096;

/// How many entries are held at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Users. Full caches (the defaults) take about 120 MiB of heap,
    /// about 0.4 KiB an entry (measured: `benches/cache_memory.rs`).
    pub users: usize,
    /// Sessions.
    pub sessions: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity { users: 50_000, sessions: 250_000 }
    }
}

/// A user as held; `epoch` is new each time it is read, and sessions read
/// under another epoch are read again (so "all sessions of this user
/// ended" is one removal, not one per session).
struct HeldUser {
    /// What `/users/me` returns; `None`: no such user. (Not the password
    /// hash: nothing answered from here needs it.)
    profile: Option<Arc<Profile>>,
    disabled: bool,
    /// The user's scopes, shared with every standing answered and with
    /// sessions granted the same.
    scopes: Arc<Scopes>,
    epoch: u64,
}

/// A session as held: of which user (and that user's epoch), and its
/// scopes while live.
struct HeldSession {
    user_key: UserKey,
    epoch: u64,
    scope: Option<Arc<Scopes>>,
}

/// What the cache and the feed task share.
struct Held {
    users: Cache<UserKey, Arc<HeldUser>>,
    sessions: Cache<String, Arc<HeldSession>>,
    clients: Cache<UserKey, Arc<Option<Client>>>,
    denied: RwLock<HashMap<String, UnixTime>>,
    /// Bumped by every change and loss: a read that saw it move is not kept.
    generation: AtomicU64,
    epochs: AtomicU64,
    /// Milliseconds from `started` to the feed's last sign of life.
    alive_ms: AtomicU64,
    /// Losses so far (see `lost`); starts at 1, so nothing is trusted
    /// before the deny list is first read.
    losses: AtomicU64,
    /// The value of `losses` when the last complete deny-list read began:
    /// the list holds every denial committed before that loss only while
    /// the two are equal (a loss during a read makes it read again).
    denied_read_at: AtomicU64,
    /// Woken when a loss needs the deny list reread.
    reload: tokio::sync::Notify,
    started: Instant,
}

impl Held {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn trusted(&self) -> bool {
        self.denied_read_at.load(Ordering::Acquire) == self.losses.load(Ordering::Acquire)
            && self.now_ms().saturating_sub(self.alive_ms.load(Ordering::Acquire))
                <= u64::try_from(STALE_AFTER.as_millis()).unwrap_or(u64::MAX)
    }

    /// A user read from the database, as held (with a new epoch).
    fn hold(&self, user: Option<&User>) -> HeldUser {
        HeldUser {
            profile: user.map(|u| Arc::new(Profile::from(u))),
            disabled: user.is_some_and(|u| u.disabled),
            scopes: Arc::new(user.map(|u| u.scopes.clone()).unwrap_or_default()),
            epoch: self.epochs.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Keeps a user read under `generation`, unless a change came in since.
    /// Changes bump the generation before they remove: so either the check
    /// after the insert sees the bump, or their removal comes after it.
    fn keep_user(&self, key: &UserKey, held: Arc<HeldUser>, generation: u64) {
        self.keep(&self.users, key, held, generation);
    }

    /// Keeps an entry read under `generation` in `cache`, as [`Held::keep_user`].
    fn keep<V: Clone>(&self, cache: &Cache<UserKey, V>, key: &UserKey, value: V, generation: u64) {
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        cache.insert(key.clone(), value);
        if self.generation.load(Ordering::Acquire) != generation {
            cache.remove(key);
        }
    }

    fn drop_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.users.clear();
        self.sessions.clear();
        self.clients.clear();
    }
}

impl ChangeSink for Held {
    fn changed(&self, change: Change) {
        match change {
            Change::User(key) => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.users.remove(&key);
            }
            Change::Client(key) => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.clients.remove(&key);
            }
            Change::Session(sid) => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.sessions.remove(sid.as_str());
            }
            Change::Denied { jti, expires_at } => {
                self.denied.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(jti, expires_at);
            }
        }
    }

    fn lost(&self) {
        self.losses.fetch_add(1, Ordering::AcqRel);
        self.drop_all();
        self.reload.notify_one();
    }

    fn alive(&self) {
        self.alive_ms.store(self.now_ms(), Ordering::Release);
    }
}

/// The store the server uses: [`Store`] with token checks from memory.
pub struct CachedStore {
    inner: SharedStore,
    held: Arc<Held>,
}

impl CachedStore {
    /// Holds nothing and trusts nothing until [`CachedStore::follow`] runs.
    pub fn new(inner: SharedStore, capacity: Capacity) -> Self {
        let held = Held {
            users: Cache::new(capacity.users.max(1)),
            sessions: Cache::new(capacity.sessions.max(1)),
            clients: Cache::new(capacity.users.clamp(1, MAX_CLIENTS_HELD)),
            denied: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            epochs: AtomicU64::new(0),
            alive_ms: AtomicU64::new(0),
            losses: AtomicU64::new(1),
            denied_read_at: AtomicU64::new(0),
            reload: tokio::sync::Notify::new(),
            started: Instant::now(),
        };
        CachedStore { inner, held: Arc::new(held) }
    }

    /// Follows the change feed and reloads the deny list when it must, for
    /// as long as it is polled (the server spawns it).
    pub fn follow(&self, clock: Clock) -> impl Future<Output = ()> + Send + 'static {
        let (inner, held) = (self.inner.clone(), self.held.clone());
        async move {
            let feed = inner.watch(held.clone());
            let upkeep = async {
                let mut reconcile = tokio::time::interval(RECONCILE);
                reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                reconcile.tick().await;
                loop {
                    tokio::select! {
                        () = held.reload.notified() => {}
                        _ = reconcile.tick() => held.lost(),
                    }
                    // Denials are final until expiry: adding what the
                    // database holds to what arrived meanwhile loses none.
                    // A loss while reading makes the read start over.
                    loop {
                        let loss = held.losses.load(Ordering::Acquire);
                        if held.denied_read_at.load(Ordering::Acquire) == loss {
                            break;
                        }
                        match inner.denied_tokens(clock.now()).await {
                            Ok(rows) => {
                                held.denied.write().unwrap_or_else(std::sync::PoisonError::into_inner).extend(rows);
                                held.denied_read_at.fetch_max(loss, Ordering::AcqRel);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read the deny list; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
            };
            tokio::join!(feed, upkeep);
        }
    }

    /// Whether checks are answered from memory now.
    pub fn trusted(&self) -> bool {
        self.held.trusted()
    }

    /// How many users and sessions are held.
    pub fn len(&self) -> (usize, usize) {
        (self.held.users.len(), self.held.sessions.len())
    }

    /// The user `key`, held or read (and held, unless a change came in
    /// while reading).
    async fn user(&self, key: &UserKey) -> StoreResult<Arc<HeldUser>> {
        if let Some(held) = self.held.users.get(key) {
            return Ok(held);
        }
        let generation = self.held.generation.load(Ordering::Acquire);
        let user = self.inner.user_by_key(key).await?;
        let held = Arc::new(self.held.hold(user.as_ref()));
        self.held.keep_user(key, held.clone(), generation);
        Ok(held)
    }

    /// The scopes of `sid` while it is a live session of `user`.
    async fn session(&self, sid: &str, key: &UserKey, user: &HeldUser) -> StoreResult<Option<Arc<Scopes>>> {
        if let Some(held) = self.held.sessions.get(sid) {
            if held.epoch == user.epoch && held.user_key == *key {
                return Ok(held.scope.clone());
            }
        }
        let generation = self.held.generation.load(Ordering::Acquire);
        // Most sessions are granted all their user's scopes: share that set.
        let scope = self
            .inner
            .session_scope(sid, key)
            .await?
            .map(|s| if s == *user.scopes { Arc::clone(&user.scopes) } else { Arc::new(s) });
        if self.held.generation.load(Ordering::Acquire) == generation {
            let held = HeldSession { user_key: key.clone(), epoch: user.epoch, scope: scope.clone() };
            self.held.sessions.insert(sid.to_owned(), Arc::new(held));
            // A change that bumped the generation after the check above
            // removes after this insert, or is seen here.
            if self.held.generation.load(Ordering::Acquire) != generation {
                self.held.sessions.remove(sid);
            }
        }
        Ok(scope)
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn token_standing(
        &self,
        user_key: &UserKey,
        sid: Option<&str>,
        jti: &str,
    ) -> StoreResult<Option<TokenStanding>> {
        if !self.held.trusted() {
            return self.inner.token_standing(user_key, sid, jti).await;
        }
        let held = self.user(user_key).await?;
        if held.profile.is_none() {
            return Ok(None);
        }
        let session_scope = match sid {
            Some(sid) => self.session(sid, user_key, &held).await?,
            None => None,
        };
        let denied = self.held.denied.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(jti);
        Ok(Some(TokenStanding {
            user_disabled: held.disabled,
            user_scopes: held.scopes.clone(),
            session_scope,
            denied,
        }))
    }

    async fn profile(&self, key: &UserKey) -> StoreResult<Option<Arc<Profile>>> {
        if !self.held.trusted() {
            return self.inner.profile(key).await;
        }
        Ok(self.user(key).await?.profile.clone())
    }

    /// Logins, admin reads and writes: from the database, and what is read
    /// replaces what is held (a user enabled by another process and logging
    /// in here is not refused by an entry the feed has yet to drop).
    async fn user_by_key(&self, key: &UserKey) -> StoreResult<Option<User>> {
        let generation = self.held.generation.load(Ordering::Acquire);
        let user = self.inner.user_by_key(key).await?;
        if self.held.trusted() {
            self.held.keep_user(key, Arc::new(self.held.hold(user.as_ref())), generation);
        }
        Ok(user)
    }

    async fn session_scope(&self, sid: &str, user_key: &UserKey) -> StoreResult<Option<Scopes>> {
        self.inner.session_scope(sid, user_key).await
    }

    /// Client authentication and client-token checks: from memory, both
    /// "found" and "no such client", so an unknown id and a known one with
    /// a wrong secret take the same path.
    async fn client_by_key(&self, key: &UserKey) -> StoreResult<Option<Client>> {
        if !self.held.trusted() {
            return self.inner.client_by_key(key).await;
        }
        if let Some(held) = self.held.clients.get(key) {
            return Ok(Option::clone(&held));
        }
        let generation = self.held.generation.load(Ordering::Acquire);
        let client = self.inner.client_by_key(key).await?;
        self.held.keep(&self.held.clients, key, Arc::new(client.clone()), generation);
        Ok(client)
    }

    async fn token_denied(&self, jti: &str) -> StoreResult<bool> {
        if !self.held.trusted() {
            return self.inner.token_denied(jti).await;
        }
        Ok(self.held.denied.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(jti))
    }

    async fn insert_client(&self, client: &Client, now: UnixTime) -> StoreResult<()> {
        let done = self.inner.insert_client(client, now).await;
        self.held.changed(Change::Client(client.client_id.key().clone()));
        done
    }

    async fn update_client(&self, key: &UserKey, patch: &ClientPatch, now: UnixTime) -> StoreResult<Option<Client>> {
        let done = self.inner.update_client(key, patch, now).await;
        self.held.changed(Change::Client(key.clone()));
        done
    }

    async fn delete_client(&self, key: &UserKey, now: UnixTime) -> StoreResult<bool> {
        let done = self.inner.delete_client(key, now).await;
        self.held.changed(Change::Client(key.clone()));
        done
    }

    async fn revoke_personal_token(&self, user_key: &UserKey, id: &str, now: UnixTime) -> StoreResult<bool> {
        let done = self.inner.revoke_personal_token(user_key, id, now).await;
        self.held.changed(Change::Session(id.to_owned()));
        done
    }

    // Writes: through to the database, then applied here at once (the feed
    // brings the same change again later; applying it twice is harmless).

    async fn insert_user(&self, user: &NewUser, now: UnixTime) -> StoreResult<User> {
        let done = self.inner.insert_user(user, now).await;
        self.held.changed(Change::User(user.username.key().clone()));
        done
    }

    async fn upgrade_password_hash(
        &self,
        key: &UserKey,
        old: &StoredHash,
        new: &StoredHash,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let done = self.inner.upgrade_password_hash(key, old, new, now).await;
        self.held.changed(Change::User(key.clone()));
        done
    }

    async fn delete_user(&self, key: &UserKey, now: UnixTime) -> StoreResult<bool> {
        let done = self.inner.delete_user(key, now).await;
        self.held.changed(Change::User(key.clone()));
        done
    }

    async fn update_user(&self, key: &UserKey, patch: &UserPatch, now: UnixTime) -> StoreResult<Option<User>> {
        let done = self.inner.update_user(key, patch, now).await;
        self.held.changed(Change::User(key.clone()));
        done
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: UnixTime,
        session_max_age: i64,
        now: UnixTime,
    ) -> StoreResult<Rotation> {
        let done = self.inner.rotate_refresh_token(old_hash, new_hash, expires_at, session_max_age, now).await;
        if let Ok(Rotation::Reused(sid)) = &done {
            self.held.changed(Change::Session(sid.clone()));
        }
        done
    }

    async fn end_session(&self, sid: &str, now: UnixTime) -> StoreResult<bool> {
        let done = self.inner.end_session(sid, now).await;
        self.held.changed(Change::Session(sid.to_owned()));
        done
    }

    async fn end_user_sessions(&self, user_key: &UserKey, now: UnixTime) -> StoreResult<()> {
        let done = self.inner.end_user_sessions(user_key, now).await;
        self.held.changed(Change::User(user_key.clone()));
        done
    }

    async fn deny_token(&self, jti: &str, expires_at: UnixTime, now: UnixTime) -> StoreResult<()> {
        self.inner.deny_token(jti, expires_at, now).await?;
        self.held.changed(Change::Denied { jti: jti.to_owned(), expires_at });
        Ok(())
    }

    async fn prune(&self, before: UnixTime, attempts_before: UnixTime) -> StoreResult<u64> {
        self.held.denied.write().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|_, exp| *exp >= before);
        self.inner.prune(before, attempts_before).await
    }

    // The rest: straight to the database.

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        self.inner.list_clients().await
    }

    async fn insert_personal_token(&self, token: &PersonalToken, hash: &str, now: UnixTime) -> StoreResult<bool> {
        self.inner.insert_personal_token(token, hash, now).await
    }

    async fn personal_tokens(&self, user_key: &UserKey) -> StoreResult<Vec<PersonalToken>> {
        self.inner.personal_tokens(user_key).await
    }

    async fn personal_token_by_hash(&self, hash: &str, now: UnixTime) -> StoreResult<Option<PersonalToken>> {
        self.inner.personal_token_by_hash(hash, now).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    fn pool_use(&self) -> PoolUse {
        self.inner.pool_use()
    }

    async fn count_users(&self) -> StoreResult<i64> {
        self.inner.count_users().await
    }

    async fn skeleton_taken(&self, username: &Username) -> StoreResult<bool> {
        self.inner.skeleton_taken(username).await
    }

    async fn list_users(&self, after: Option<&UserKey>, limit: u32) -> StoreResult<Vec<User>> {
        self.inner.list_users(after, limit).await
    }

    async fn max_bcrypt_cost(&self) -> StoreResult<u32> {
        self.inner.max_bcrypt_cost().await
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
        self.inner.create_session(session, verified, scopes, refresh_hash, expires_at, now).await
    }

    async fn refresh_token_info(&self, hash: &str, now: UnixTime) -> StoreResult<Option<RefreshTokenInfo>> {
        self.inner.refresh_token_info(hash, now).await
    }

    async fn denied_tokens(&self, now: UnixTime) -> StoreResult<Vec<(String, UnixTime)>> {
        self.inner.denied_tokens(now).await
    }

    fn watch(&self, sink: Arc<dyn ChangeSink>) -> portcullis_verify::BoxFuture<'static, ()> {
        self.inner.watch(sink)
    }

    async fn count_bcrypt_hashes(&self) -> StoreResult<i64> {
        self.inner.count_bcrypt_hashes().await
    }

    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        self.inner.setting(name).await
    }

    async fn setting_or_init(&self, name: &str, proposed: &str) -> StoreResult<String> {
        self.inner.setting_or_init(name, proposed).await
    }

    async fn record_failure(&self, bucket: &str, now: UnixTime, window: i64) -> StoreResult<(i64, UnixTime)> {
        self.inner.record_failure(bucket, now, window).await
    }

    async fn failures(&self, bucket: &str, now: UnixTime, window: i64) -> StoreResult<Option<(i64, UnixTime)>> {
        self.inner.failures(bucket, now, window).await
    }

    async fn clear_attempts(&self, bucket: &str) -> StoreResult<()> {
        self.inner.clear_attempts(bucket).await
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRow>> {
        self.inner.list_keys().await
    }

    async fn add_signing_key(&self, key: &KeyRow, only_if_none: bool) -> StoreResult<bool> {
        self.inner.add_signing_key(key, only_if_none).await
    }
}
