//! Login throttling, so that guessing is slow and nobody can lock an owner
//! out of their account.
//!
//! Failures are counted in three buckets, each in a fixed window
//! (15 minutes by default):
//! - **account and address**: one address guessing one account is refused
//!   after [`ThrottleSettings::per_pair`] failures. Only that pair: the
//!   owner, from an address that has not been failing, still logs in.
//! - **address**: one address guessing many accounts (spraying) is refused
//!   after [`ThrottleSettings::per_address`] failures, whatever the names.
//! - **account, from everywhere**: never refuses by itself. Once an account
//!   has [`ThrottleSettings::under_attack`] failures from all addresses
//!   together, each address gets only [`ThrottleSettings::per_pair_under_attack`]
//!   failures at it: a botnet needs ever new addresses, while the owner's
//!   clean address is untouched.
//!
//! Only a *wrong* password counts, after it was checked: a correct login,
//! or one whose client gave up while its hash ran, costs nothing. So that a
//! burst of parallel guesses cannot overshoot a limit, attempts still being
//! checked count against it while they run (an [`Attempt`] holds its place
//! and gives it back when dropped).
//!
//! Counting happens in memory first; only failures are written to the
//! database (one upsert per bucket), whose totals are how several instances
//! count together: an instance takes the shared total in when it writes a
//! failure, and reads it (a read, no write) for a bucket it does not hold
//! or has not read within the second. So a guesser alternating between
//! instances gains at most one try per instance per second, and a restart
//! forgets nothing. A good login writes nothing unless its pair had
//! failures to clear. An address is an IPv4 address, or an IPv6 /64 (what
//! one host owns).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::clock::UnixTime;
use crate::domain::UserKey;
use crate::store::{SharedStore, StoreResult};

/// Limits, per window.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failures of one address at one account before that pair is refused.
    pub per_pair: i64,
    /// Failures of one address, at any accounts, before it is refused.
    pub per_address: i64,
    /// Failures at one account, from all addresses, that mark it as under
    /// attack.
    pub under_attack: i64,
    /// Failures of one address at an account under attack before that pair
    /// is refused.
    pub per_pair_under_attack: i64,
    /// Registrations (`POST /users`) one address may attempt per window.
    pub registrations_per_address: i64,
    /// Window length in seconds.
    pub window_secs: i64,
}

impl Default for ThrottleSettings {
    /// 10 failures per account and address, 30 per address, 3 per address
    /// once an account has 100 in all, 10 registrations per address, in 15
    /// minutes: far above what a person mistyping needs, far below what
    /// guessing needs.
    fn default() -> Self {
        ThrottleSettings {
            per_pair: 10,
            per_address: 30,
            under_attack: 100,
            per_pair_under_attack: 3,
            registrations_per_address: 10,
            window_secs: 15 * 60,
        }
    }
}

/// Where a request comes from, as far as throttling cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A readable address.
    Ip(IpAddr),
    /// A forwarded hop that could not be read: a client of its own.
    Unreadable(String),
}

impl Origin {
    /// The address's bucket name: IPv4-mapped IPv6 is IPv4, IPv6 counts by
    /// /64, an unreadable hop by a hash of its text (short, plain, whatever
    /// was written).
    fn bucket(&self) -> String {
        match self {
            Origin::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => format!("ip:{v4}"),
                IpAddr::V6(v6) => {
                    let net = Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1));
                    format!("ip:{net}/64")
                }
            },
            Origin::Unreadable(text) => format!("hop:{}", short_hash(text)),
        }
    }
}

fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// A counter for one bucket in this process.
#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    failures: i64,
    window_start: UnixTime,
    in_flight: i64,
    /// When the database's count was last taken in.
    synced_at: UnixTime,
}

impl Counter {
    /// Takes in the count every instance wrote, when it is higher.
    fn take_shared(&mut self, failures: i64, window_start: UnixTime, now: UnixTime) {
        if failures > self.failures {
            self.failures = failures;
            self.window_start = window_start;
        }
        self.synced_at = now;
    }

    /// Forgets failures whose window has ended.
    fn roll(&mut self, now: UnixTime, window: i64) {
        if self.failures > 0 && self.window_start + window <= now {
            self.failures = 0;
        }
    }

    fn is_empty(&self) -> bool {
        self.failures == 0 && self.in_flight == 0
    }
}

type Counters = HashMap<String, Counter>;

/// Counts failures and says when to refuse.
#[derive(Clone)]
pub struct Throttle {
    store: SharedStore,
    settings: ThrottleSettings,
    counters: Arc<Mutex<Counters>>,
}

/// The buckets one login touches.
struct LoginBuckets {
    pair: String,
    address: String,
    account: String,
}

impl LoginBuckets {
    fn new(account: &UserKey, origin: Option<&Origin>) -> Self {
        // A hash of the typed name's key: any input, however long or odd,
        // makes a short, plain bucket name.
        let account = short_hash(account.as_str());
        let address = origin.map_or_else(|| "ip:unknown".to_owned(), Origin::bucket);
        LoginBuckets { pair: format!("pair:{account}:{address}"), address, account: format!("user:{account}") }
    }
}

impl Throttle {
    /// A throttle on `store`.
    pub fn new(store: SharedStore, settings: ThrottleSettings) -> Self {
        Throttle { store, settings, counters: Arc::default() }
    }

    /// The window length, to prune old counters.
    pub fn window_secs(&self) -> i64 {
        self.settings.window_secs
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        // A panic elsewhere while holding the lock leaves plain counters.
        self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Brings in the database's counts of the buckets this process does not
    /// hold, or has not read in this second: what other instances (or this
    /// one before a restart) counted. A read, never a write.
    ///
    /// With `hold_clean`, a bucket with no failures anywhere is held too
    /// (empty, until the next prune), so it is read once a second, not at
    /// every attempt: for client checks, many a second per client.
    async fn load(&self, buckets: &[&str], now: UnixTime, hold_clean: bool) -> StoreResult<()> {
        let stale: Vec<&str> = {
            let counters = self.lock();
            buckets.iter().copied().filter(|b| counters.get(*b).is_none_or(|c| c.synced_at < now)).collect()
        };
        let window = self.settings.window_secs;
        for bucket in stale {
            let shared = self.store.failures(bucket, now, window).await?;
            let mut counters = self.lock();
            match shared {
                Some((failures, window_start)) => {
                    let counter = counters.entry(bucket.to_owned()).or_default();
                    counter.roll(now, window);
                    counter.take_shared(failures, window_start, now);
                }
                // Nothing counted anywhere: nothing new to hold.
                None if hold_clean => counters.entry(bucket.to_owned()).or_default().synced_at = now,
                None => {
                    if let Some(counter) = counters.get_mut(bucket) {
                        counter.synced_at = now;
                    }
                }
            }
        }
        Ok(())
    }

    /// Asks to check a password for `account` from `origin`: `Ok(attempt)`
    /// to go on (report its outcome on it), `Err(seconds to wait)` to
    /// refuse without checking.
    ///
    /// # Errors
    /// A database error.
    pub async fn login(
        &self,
        account: &UserKey,
        origin: Option<&Origin>,
        now: UnixTime,
    ) -> StoreResult<Result<Attempt, u64>> {
        self.attempt(account, origin, now, true).await
    }

    /// Asks to check a client secret for client `account` from `origin`, as
    /// [`Throttle::login`] (the same buckets: a client id is a name in the
    /// users' namespace) but without holding a place while it runs. A
    /// secret is checked in microseconds, so a burst of guesses overshoots a
    /// limit by at most the requests in flight, which is nothing against
    /// 256 bits; while a busy client's many concurrent right secrets must
    /// never be refused for being concurrent.
    ///
    /// # Errors
    /// A database error.
    pub async fn client(
        &self,
        account: &UserKey,
        origin: Option<&Origin>,
        now: UnixTime,
    ) -> StoreResult<Result<Attempt, u64>> {
        self.attempt(account, origin, now, false).await
    }

    async fn attempt(
        &self,
        account: &UserKey,
        origin: Option<&Origin>,
        now: UnixTime,
        hold_a_place: bool,
    ) -> StoreResult<Result<Attempt, u64>> {
        let buckets = LoginBuckets::new(account, origin);
        // Client checks (no place held) are many a second per client.
        self.load(&[&buckets.pair, &buckets.address, &buckets.account], now, !hold_a_place).await?;
        let window = self.settings.window_secs;
        let mut counters = self.lock();
        let under_attack = counters.get_mut(&buckets.account).is_some_and(|c| {
            c.roll(now, window);
            c.failures >= self.settings.under_attack
        });
        let pair_limit = if under_attack { self.settings.per_pair_under_attack } else { self.settings.per_pair };
        let mut wait = None;
        for (bucket, limit) in [(&buckets.pair, pair_limit), (&buckets.address, self.settings.per_address)] {
            let Some(counter) = counters.get_mut(bucket) else { continue };
            counter.roll(now, window);
            let refused_for = if counter.failures >= limit {
                Some((counter.window_start + window - now).max(1) as u64)
            } else if hold_a_place && counter.failures + counter.in_flight >= limit {
                // Full of attempts still being checked: soon decided.
                Some(1)
            } else {
                None
            };
            wait = wait.max(refused_for);
        }
        if let Some(wait) = wait {
            return Ok(Err(wait));
        }
        if hold_a_place {
            for bucket in [&buckets.pair, &buckets.address] {
                counters.entry(bucket.clone()).or_default().in_flight += 1;
            }
        }
        drop(counters);
        Ok(Ok(Attempt { throttle: self.clone(), buckets, pending: hold_a_place }))
    }

    /// Counts a registration attempt from `origin`: `Err(seconds to wait)`
    /// once the address has made too many in this window. Counted before
    /// the name is checked or the password hashed, whatever the outcome:
    /// every attempt costs the server, and accounts are cheap to ask for.
    ///
    /// # Errors
    /// A database error.
    pub async fn registration(&self, origin: Option<&Origin>, now: UnixTime) -> StoreResult<Result<(), u64>> {
        let bucket = format!("register:{}", origin.map_or_else(|| "ip:unknown".to_owned(), Origin::bucket));
        self.load(&[&bucket], now, false).await?;
        let window = self.settings.window_secs;
        {
            let mut counters = self.lock();
            let counter = counters.entry(bucket.clone()).or_default();
            counter.roll(now, window);
            if counter.failures >= self.settings.registrations_per_address {
                return Ok(Err((counter.window_start + window - now).max(1) as u64));
            }
            count_failure(counter, now);
        }
        self.share(&bucket, now).await?;
        Ok(Ok(()))
    }

    /// Writes one failure of `bucket` to the database and takes the total
    /// that every instance counted back into memory.
    async fn share(&self, bucket: &str, now: UnixTime) -> StoreResult<()> {
        let (failures, window_start) = self.store.record_failure(bucket, now, self.settings.window_secs).await?;
        self.lock().entry(bucket.to_owned()).or_default().take_shared(failures, window_start, now);
        Ok(())
    }

    /// Drops counters with nothing left to say: no running attempt and no
    /// failure in a live window. Memory then holds only what is being
    /// throttled, bounded by how fast passwords can be checked.
    pub fn prune(&self, now: UnixTime) {
        let window = self.settings.window_secs;
        self.lock().retain(|_, c| {
            c.roll(now, window);
            !c.is_empty()
        });
    }

    /// How many buckets this process holds (for tests and metrics).
    pub fn buckets_held(&self) -> usize {
        self.lock().len()
    }
}

fn count_failure(counter: &mut Counter, now: UnixTime) {
    if counter.failures == 0 {
        counter.window_start = now;
    }
    counter.failures += 1;
}

/// A password check the throttle let through. Report its outcome with
/// [`Attempt::failed`] or [`Attempt::succeeded`]; dropped without either
/// (the client went away), it counts as nothing.
#[must_use = "report the outcome, or the attempt counts as nothing"]
pub struct Attempt {
    throttle: Throttle,
    buckets: LoginBuckets,
    pending: bool,
}

/// Gives back an attempt's place among those being checked, once.
fn finish(pending: &mut bool, buckets: &LoginBuckets, counters: &mut Counters) {
    if !std::mem::take(pending) {
        return;
    }
    for bucket in [&buckets.pair, &buckets.address] {
        if let Some(counter) = counters.get_mut(bucket) {
            counter.in_flight -= 1;
            if counter.is_empty() {
                counters.remove(bucket);
            }
        }
    }
}

impl Attempt {
    /// The password was wrong (or the account unknown): counts a failure in
    /// the three buckets, in memory at once, then in the database.
    ///
    /// # Errors
    /// A database error (the failure stays counted in memory).
    pub async fn failed(mut self, now: UnixTime) -> StoreResult<()> {
        let window = self.throttle.settings.window_secs;
        let buckets = [&self.buckets.pair, &self.buckets.address, &self.buckets.account];
        {
            let mut counters = self.throttle.lock();
            for bucket in buckets {
                let counter = counters.entry(bucket.clone()).or_default();
                counter.roll(now, window);
                count_failure(counter, now);
            }
            finish(&mut self.pending, &self.buckets, &mut counters);
        }
        for bucket in buckets {
            self.throttle.share(bucket, now).await?;
        }
        Ok(())
    }

    /// The password was right: the pair's failures are forgotten (the
    /// owner's own typos), the address's and the account's are not.
    ///
    /// # Errors
    /// A database error.
    pub async fn succeeded(mut self) -> StoreResult<()> {
        let had_failures = {
            let mut counters = self.throttle.lock();
            let had = counters.get_mut(&self.buckets.pair).is_some_and(|c| std::mem::take(&mut c.failures) > 0);
            finish(&mut self.pending, &self.buckets, &mut counters);
            had
        };
        if had_failures {
            self.throttle.store.clear_attempts(&self.buckets.pair).await?;
        }
        Ok(())
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.pending {
            let mut counters = self.throttle.lock();
            finish(&mut self.pending, &self.buckets, &mut counters);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Origin {
        Origin::Ip(s.parse().unwrap())
    }

    #[test]
    fn any_name_makes_a_short_plain_bucket() {
        let odd = LoginBuckets::new(&UserKey::of(&format!("a\0{}", "x".repeat(100_000))), None);
        assert!(odd.account.len() < 40 && odd.account.is_ascii() && !odd.account.contains('\0'));
        let alice = LoginBuckets::new(&UserKey::of("alice"), None);
        let bob = LoginBuckets::new(&UserKey::of("bob"), None);
        assert_ne!(alice.account, bob.account);
        assert_ne!(alice.pair, bob.pair);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_its_ipv4_address() {
        assert_eq!(ip("::ffff:198.51.100.7").bucket(), ip("198.51.100.7").bucket());
    }

    #[test]
    fn one_ipv6_host_is_one_bucket_per_64() {
        assert_eq!(ip("2001:db8:1:2::1").bucket(), ip("2001:db8:1:2:ffff:ffff:ffff:ffff").bucket());
        assert_ne!(ip("2001:db8:1:2::1").bucket(), ip("2001:db8:1:3::1").bucket());
    }

    #[test]
    fn an_unreadable_hop_is_a_client_of_its_own() {
        let odd = Origin::Unreadable("wéird".into());
        assert_ne!(odd.bucket(), Origin::Unreadable("other".into()).bucket());
        assert!(odd.bucket().is_ascii());
    }
}
