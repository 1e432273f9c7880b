//! Login throttling: too many failed logins for one account, or from one
//! client address, in a window, and `/token` answers `429` with
//! `Retry-After` until the window ends. Counters live in the database so
//! that several instances count together.

use std::net::IpAddr;

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

/// Counts failures and says when to refuse.
#[derive(Clone)]
pub struct Throttle {
    store: SharedStore,
    settings: ThrottleSettings,
}

fn account_bucket(user_key: &str) -> String {
    format!("user:{user_key}")
}

fn address_bucket(addr: IpAddr) -> String {
    format!("addr:{addr}")
}

impl Throttle {
    /// A throttle on `store`.
    pub fn new(store: SharedStore, settings: ThrottleSettings) -> Self {
        Throttle { store, settings }
    }

    /// `Some(seconds to wait)` when the account or the address is throttled.
    ///
    /// # Errors
    /// A database error.
    pub async fn retry_after(&self, user_key: &str, addr: Option<IpAddr>, now: i64) -> StoreResult<Option<u64>> {
        let mut buckets = vec![account_bucket(user_key)];
        buckets.extend(addr.map(address_bucket));
        let mut wait = None;
        for (bucket, failures, start) in self.store.failures(&buckets).await? {
            let limit = if bucket.starts_with("user:") { self.settings.per_account } else { self.settings.per_address };
            let ends = start + self.settings.window_secs;
            if failures >= limit && ends > now {
                let secs = (ends - now) as u64;
                wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
            }
        }
        Ok(wait)
    }

    /// Counts a failed login for the account and the address.
    ///
    /// # Errors
    /// A database error.
    pub async fn failed(&self, user_key: &str, addr: Option<IpAddr>, now: i64) -> StoreResult<()> {
        let window = self.settings.window_secs;
        self.store.record_failure(&account_bucket(user_key), now, window).await?;
        if let Some(addr) = addr {
            self.store.record_failure(&address_bucket(addr), now, window).await?;
        }
        Ok(())
    }

    /// Forgets the account's failures after a good login (the address keeps
    /// its count: one address trying many accounts stays throttled).
    ///
    /// # Errors
    /// A database error.
    pub async fn succeeded(&self, user_key: &str) -> StoreResult<()> {
        self.store.clear_failures(&account_bucket(user_key)).await
    }
}
