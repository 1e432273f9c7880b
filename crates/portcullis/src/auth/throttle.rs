//! Login throttling: too many login attempts for one account, or from one
//! client address, in a window, and `/token` answers `429` with
//! `Retry-After` until the window ends. Counters live in the database so
//! that several instances count together.
//!
//! An attempt is counted *before* the password is checked, atomically, so
//! a burst of parallel guesses cannot all slip past the limit; a good login
//! then clears the account's count and takes its own attempt back from the
//! address's, so only failures accumulate.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::clock::UnixTime;
use crate::domain::UserKey;
use crate::store::{SharedStore, StoreResult};

/// Limits, per window.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failed logins for one account before it is throttled.
    pub per_account: i64,
    /// Failed logins from one client address before it is throttled.
    pub per_address: i64,
    /// Window length in seconds.
    pub window_secs: i64,
}

impl Default for ThrottleSettings {
    /// 10 failures per account and 30 per address in 15 minutes: far above
    /// what a person mistyping needs, far below what guessing needs.
    fn default() -> Self {
        ThrottleSettings { per_account: 10, per_address: 30, window_secs: 15 * 60 }
    }
}

/// Counts attempts and says when to refuse.
#[derive(Clone)]
pub struct Throttle {
    store: SharedStore,
    settings: ThrottleSettings,
}

/// The bucket of an account: a hash of the typed name's key, so any input,
/// however long or odd, makes a short, plain bucket name.
fn account_bucket(user_key: &UserKey) -> String {
    format!("user:{}", hex::encode(&Sha256::digest(user_key.as_str().as_bytes())[..16]))
}

fn address_bucket(addr: IpAddr) -> String {
    format!("addr:{addr}")
}

impl Throttle {
    /// A throttle on `store`.
    pub fn new(store: SharedStore, settings: ThrottleSettings) -> Self {
        Throttle { store, settings }
    }

    /// The window length, to prune old counters.
    pub fn window_secs(&self) -> i64 {
        self.settings.window_secs
    }

    /// Counts a login attempt for the account and the address; `Some(seconds
    /// to wait)` when either is over its limit (the attempt must then be
    /// refused without checking the password).
    ///
    /// # Errors
    /// A database error.
    pub async fn attempt(&self, user_key: &UserKey, addr: Option<IpAddr>, now: UnixTime) -> StoreResult<Option<u64>> {
        let window = self.settings.window_secs;
        let mut counts =
            vec![(self.store.count_attempt(&account_bucket(user_key), now, window).await?, self.settings.per_account)];
        if let Some(addr) = addr {
            counts
                .push((self.store.count_attempt(&address_bucket(addr), now, window).await?, self.settings.per_address));
        }
        let wait = counts
            .into_iter()
            .filter(|((count, _), limit)| count > limit)
            .map(|((_, start), _)| (start + window - now).max(1) as u64)
            .max();
        Ok(wait)
    }

    /// After a good login: clears the account's count, and takes this
    /// attempt back from the address's (one address may log many people in).
    ///
    /// # Errors
    /// A database error.
    pub async fn succeeded(&self, user_key: &UserKey, addr: Option<IpAddr>) -> StoreResult<()> {
        self.store.clear_attempts(&account_bucket(user_key)).await?;
        if let Some(addr) = addr {
            self.store.forgive_attempt(&address_bucket(addr)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_name_makes_a_short_plain_bucket() {
        let bucket = account_bucket(&UserKey::of(&format!("a\0{}", "x".repeat(100_000))));
        assert!(bucket.len() < 40 && bucket.is_ascii() && !bucket.contains('\0'));
        assert_ne!(account_bucket(&UserKey::of("alice")), account_bucket(&UserKey::of("bob")));
    }
}
