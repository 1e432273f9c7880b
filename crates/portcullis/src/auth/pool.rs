//! A bounded pool of threads for password hashing, beside the async runtime.
//!
//! Hashing costs ~20 ms of CPU (bcrypt imports ~240 ms); on an async worker
//! it would stall every other request on that worker. Here a fixed number of
//! threads take jobs from a bounded queue; when the queue is full the caller
//! is told at once ([`Busy`]) and `/token` answers `503` with `Retry-After`,
//! instead of queueing without end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use metrics::Histogram;
use tokio::sync::oneshot;

use super::password::{self, StoredHash, Verdict};

type Job = Box<dyn FnOnce() + Send>;

/// The queue was full: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is saturated")]
pub struct Busy;

/// Handle to the hashing threads; cheap to clone.
#[derive(Clone)]
pub struct HashPool {
    jobs: flume::Sender<Job>,
    /// Verified when the user does not exist, so an unknown username costs
    /// the same as a wrong password.
    dummy: Arc<StoredHash>,
    /// The highest bcrypt cost among stored hashes (0: none left). While
    /// imported bcrypt hashes remain, every verification also runs the kind
    /// of hash it did not run, so a bcrypt user, an argon2 user and an
    /// unknown name all take the same time.
    legacy_cost: Arc<AtomicU32>,
    /// Dummy bcrypt hashes by cost, made on first need.
    bcrypt_dummies: Arc<Mutex<HashMap<u32, StoredHash>>>,
    /// Jobs accepted so far (for metrics, and tests that a path hashes not).
    accepted: Arc<AtomicU64>,
    /// Jobs accepted and not yet started (the queue's depth).
    waiting: Arc<AtomicUsize>,
    /// Where each job's wait, from submission to start, is recorded.
    wait: Histogram,
    /// Where each job's run time on its thread is recorded.
    busy: Histogram,
}

/// The extra, throw-away work a verification does so that its time does not
/// tell what kind of hash (if any) the user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Padding {
    /// Also verify against the argon2id dummy.
    pub argon2: bool,
    /// Also verify against a bcrypt dummy of this cost.
    pub bcrypt_cost: Option<u32>,
}

/// Which padding a verification of `stored` needs while bcrypt hashes of up
/// to `legacy_cost` remain.
pub fn padding(stored: Option<&StoredHash>, legacy_cost: u32) -> Padding {
    let bcrypt_cost = (legacy_cost > 0).then_some(legacy_cost);
    match stored.map(password::kind) {
        Some(password::Kind::Bcrypt) => Padding { argon2: true, bcrypt_cost: None },
        Some(password::Kind::Argon2) => Padding { argon2: false, bcrypt_cost },
        // No user, or a hash we cannot read: the dummy stands in for it.
        None | Some(password::Kind::Unknown) => Padding { argon2: true, bcrypt_cost },
    }
}

/// What an unknown user's login is verified against, so it takes as long
/// as a known user's: an argon2id hash of today's parameters (a test keeps
/// them in step). A constant rather than hashed at start: starting costs no
/// hash, and no 19 MiB of working memory on the starting thread.
const DUMMY_ARGON2: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$FSxheEllhUERw+KWvdJIdQ$eiPS6t+CnD86YACPuHoDx8nZmqHN20Dylc/rsmbwQBk";

/// How long a hashing thread waits for work before it gives its working
/// memory back: short enough that an idle server is small, long enough that
/// a steady trickle of logins does not pay for a fresh 19 MiB each time.
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(1);

impl HashPool {
    /// Starts `threads` hashing threads with room for `queue` waiting jobs.
    pub fn start(threads: usize, queue: usize) -> Self {
        let (jobs, rx) = flume::bounded::<Job>(queue);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("hash-{i}"))
                .spawn(move || {
                    loop {
                        match rx.recv_timeout(IDLE) {
                            Ok(job) => job(),
                            // Idle: argon2's working memory (19 MiB a
                            // thread) goes back to the allocator.
                            Err(flume::RecvTimeoutError::Timeout) => password::release_memory(),
                            Err(flume::RecvTimeoutError::Disconnected) => return, // every sender dropped
                        }
                    }
                })
                .expect("spawning a hashing thread");
        }
        let dummy = Arc::new(StoredHash::new(DUMMY_ARGON2.to_owned()));
        HashPool {
            jobs,
            dummy,
            legacy_cost: Arc::new(AtomicU32::new(0)),
            bcrypt_dummies: Arc::new(Mutex::new(HashMap::new())),
            accepted: Arc::default(),
            waiting: Arc::default(),
            wait: Histogram::noop(),
            busy: Histogram::noop(),
        }
    }

    /// Records each job's wait in the queue (submission to start) in
    /// `histogram`.
    #[must_use]
    pub fn with_wait_histogram(mut self, histogram: Histogram) -> Self {
        self.wait = histogram;
        self
    }

    /// Records how long each job runs on its thread in `histogram` (what
    /// one hash costs here: the ceiling of logins a second is threads
    /// divided by it).
    #[must_use]
    pub fn with_duration_histogram(mut self, histogram: Histogram) -> Self {
        self.busy = histogram;
        self
    }

    /// Jobs accepted and waiting for a thread now.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Runs `f` on a hashing thread.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full.
    pub async fn run<T, F>(&self, f: F) -> Result<T, Busy>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let (waiting, wait, submitted) = (Arc::clone(&self.waiting), self.wait.clone(), Instant::now());
        let busy = self.busy.clone();
        let job: Job = Box::new(move || {
            waiting.fetch_sub(1, Ordering::Relaxed);
            let started = Instant::now();
            wait.record(started.duration_since(submitted));
            let done = f();
            busy.record(started.elapsed());
            let _ = tx.send(done);
        });
        // Counted before it can start, so the count never goes below zero.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(job) {
            Ok(()) => self.accepted.fetch_add(1, Ordering::Relaxed),
            Err(flume::TrySendError::Full(_) | flume::TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(Busy);
            }
        };
        rx.await.map_err(|_| Busy)
    }

    /// How many jobs the pool has accepted since it started.
    pub fn jobs_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Hashes a new password.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full.
    pub async fn hash(&self, password: String) -> Result<StoredHash, Busy> {
        self.run(move || password::hash(&password)).await
    }

    /// Tells the pool the highest bcrypt cost still stored (0: none).
    pub fn set_legacy_bcrypt_cost(&self, cost: u32) {
        self.legacy_cost.store(cost, Ordering::Relaxed);
    }

    /// Verifies `password` against `stored`, or against the dummy hash when
    /// there is no user, so both cases take the same time (see [`padding`]).
    ///
    /// # Errors
    /// [`Busy`] when the queue is full.
    pub async fn verify(&self, password: String, stored: Option<StoredHash>) -> Result<Verdict, Busy> {
        let pad = padding(stored.as_ref(), self.legacy_cost.load(Ordering::Relaxed));
        let dummy = Arc::clone(&self.dummy);
        let dummies = Arc::clone(&self.bcrypt_dummies);
        self.run(move || {
            let verdict = match &stored {
                Some(hash) if password::kind(hash) != password::Kind::Unknown => password::verify(&password, hash),
                _ => Verdict::Wrong,
            };
            if pad.argon2 {
                let _ = password::verify(&password, &dummy);
            }
            if let Some(cost) = pad.bcrypt_cost {
                let _ = password::verify(&password, &bcrypt_dummy(&dummies, cost));
            }
            verdict
        })
        .await
    }
}

/// The dummy bcrypt hash of a cost, made once (it takes as long as a login).
fn bcrypt_dummy(dummies: &Mutex<HashMap<u32, StoredHash>>, cost: u32) -> StoredHash {
    let cost = cost.clamp(4, password::MAX_BCRYPT_COST);
    if let Some(hash) = dummies.lock().unwrap_or_else(|e| e.into_inner()).get(&cost) {
        return hash.clone();
    }
    // Made outside the lock: the other hashing threads keep going meanwhile.
    let made = StoredHash::new(
        bcrypt::hash("portcullis dummy password for unknown users", cost).expect("bcrypt accepts costs 4 to 31"),
    );
    dummies.lock().unwrap_or_else(|e| e.into_inner()).entry(cost).or_insert(made).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let pool = HashPool::start(1, 1);
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || release_rx.recv().ok()).await }
        });
        // Wait until the one thread holds the blocker, then fill the queue.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 1).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(pool.run(|| 2).await, Err(Busy));
        release_tx.send(()).unwrap();
        assert!(blocker.await.unwrap().is_ok());
        assert_eq!(queued.await.unwrap(), Ok(1));
    }

    #[test]
    fn the_dummy_hash_has_todays_parameters_and_verifies() {
        let dummy = StoredHash::new(DUMMY_ARGON2.to_owned());
        let today = password::hash("anything");
        let params = |h: &str| h.split('$').nth(3).unwrap().to_owned();
        assert_eq!(params(DUMMY_ARGON2), params(today.expose()));
        assert_eq!(
            password::verify("portcullis dummy password for unknown users", &dummy),
            Verdict::Right { rehash: false }
        );
    }

    #[test]
    fn without_legacy_hashes_only_unknown_users_get_the_argon2_dummy() {
        let argon = password::hash("some password");
        assert_eq!(padding(None, 0), Padding { argon2: true, bcrypt_cost: None });
        assert_eq!(padding(Some(&argon), 0), Padding { argon2: false, bcrypt_cost: None });
    }

    #[test]
    fn while_bcrypt_hashes_remain_every_path_runs_both_kinds() {
        let argon = password::hash("some password");
        let bcrypt = StoredHash::new(bcrypt::hash("some password", 4).unwrap());
        let junk = StoredHash::new("junk".into());
        assert_eq!(padding(None, 12), Padding { argon2: true, bcrypt_cost: Some(12) });
        assert_eq!(padding(Some(&argon), 12), Padding { argon2: false, bcrypt_cost: Some(12) });
        assert_eq!(padding(Some(&bcrypt), 12), Padding { argon2: true, bcrypt_cost: None });
        assert_eq!(padding(Some(&junk), 12), Padding { argon2: true, bcrypt_cost: Some(12) });
    }

    #[tokio::test]
    async fn a_padded_verification_still_gives_the_right_verdict() {
        let pool = HashPool::start(1, 4);
        pool.set_legacy_bcrypt_cost(4);
        let argon = password::hash("some password");
        let bcrypt = StoredHash::new(bcrypt::hash("legacy password", 4).unwrap());
        assert_eq!(
            pool.verify("some password".into(), Some(argon.clone())).await,
            Ok(Verdict::Right { rehash: false })
        );
        assert_eq!(pool.verify("wrong".into(), Some(argon)).await, Ok(Verdict::Wrong));
        assert_eq!(pool.verify("legacy password".into(), Some(bcrypt)).await, Ok(Verdict::Right { rehash: true }));
        assert_eq!(pool.verify("legacy password".into(), None).await, Ok(Verdict::Wrong));
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let pool = HashPool::start(1, 4);
        assert_eq!(pool.verify("portcullis dummy password for unknown users".into(), None).await, Ok(Verdict::Wrong));
    }
}
