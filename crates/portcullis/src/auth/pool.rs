//! A bounded pool of threads for password hashing, beside the async runtime.
//!
//! Hashing costs ~20 ms of CPU (bcrypt imports ~240 ms); on an async worker
//! it would stall every other request on that worker. Here a fixed number of
//! threads take jobs from a bounded queue; when the queue is full the caller
//! is told at once ([`Busy`]) and `/token` answers `503` with `Retry-After`,
//! instead of queueing without end.

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

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
    jobs: SyncSender<Job>,
    /// Verified when the user does not exist, so an unknown username costs
    /// the same as a wrong password.
    dummy: Arc<StoredHash>,
}

impl HashPool {
    /// Starts `threads` hashing threads with room for `queue` waiting jobs.
    pub fn start(threads: usize, queue: usize) -> Self {
        let (jobs, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for one job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // every sender dropped: shut down
                        }
                    }
                })
                .expect("spawning a hashing thread");
        }
        let dummy = Arc::new(password::hash("portcullis dummy password for unknown users"));
        HashPool { jobs, dummy }
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
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return Err(Busy),
        }
        rx.await.map_err(|_| Busy)
    }

    /// Hashes a new password.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full.
    pub async fn hash(&self, password: String) -> Result<StoredHash, Busy> {
        self.run(move || password::hash(&password)).await
    }

    /// Verifies `password` against `stored`, or against the dummy hash when
    /// there is no user, so both cases take the same time.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full.
    pub async fn verify(&self, password: String, stored: Option<StoredHash>) -> Result<Verdict, Busy> {
        let dummy = Arc::clone(&self.dummy);
        self.run(move || match stored {
            Some(hash) => password::verify(&password, &hash),
            None => {
                let _ = password::verify(&password, &dummy);
                Verdict::Wrong
            }
        })
        .await
    }
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

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let pool = HashPool::start(1, 4);
        assert_eq!(pool.verify("portcullis dummy password for unknown users".into(), None).await, Ok(Verdict::Wrong));
    }
}
