//! How much memory the standing cache (`store/cached.rs`) takes with many
//! users and sessions, and that it stays bounded: a real SQLite file with
//! 100,000 users and 1,000,000 live sessions, every session's token checked
//! once (so the cache sees 1M distinct sessions), then all of them again.
//! Prints the heap this process holds (counted by its allocator) and its
//! resident memory before and after, and what the cache holds. Results:
//! `bench/RESULTS.md`.
//!
//!     cargo bench -p portcullis --bench cache_memory
//!     CACHE_BENCH_USERS=10000 CACHE_BENCH_SESSIONS=100000 cargo bench …  (smaller)

#![allow(unsafe_code)] // the counting allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use portcullis::clock::Clock;
use portcullis::domain::UserKey;
use portcullis::store::cached::{CachedStore, Capacity};
use portcullis::store::{self, SharedStore};

/// The system allocator, counting the bytes it has handed out and not yet
/// been given back: the heap in use, whatever the allocator keeps besides.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is
// updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

fn count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument (a filter) that is
    // not this bench's name skips it, as criterion benches do.
    if std::env::args().skip(1).any(|a| !a.starts_with("--") && a != "cache_memory") {
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // too, without it: then a small run, as a smoke test.
    let benching = std::env::args().any(|a| a == "--bench");
    let users = count("CACHE_BENCH_USERS", if benching { 100_000 } else { 100 });
    let sessions = count("CACHE_BENCH_SESSIONS", if benching { 1_000_000 } else { 1_000 });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(users, sessions));
}

async fn run(users: usize, sessions: usize) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cache.db").display());
    let inner = store::open(&url, &Default::default()).await.unwrap();
    let started = Instant::now();
    fill(&url, users, sessions).await;
    println!("filled {users} users and {sessions} sessions in {:.1?}", started.elapsed());

    let capacity = Capacity::default();
    let cache = std::sync::Arc::new(CachedStore::new(inner, capacity));
    tokio::spawn(cache.follow(Clock::system()));
    while !cache.trusted() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let store: SharedStore = cache.clone();
    let (before, heap_before) = (rss_mib(), heap_mib());
    for round in 1..=2 {
        let started = Instant::now();
        for i in 0..sessions {
            let user = UserKey::from_stored(format!("user{:06}", i % users));
            let standing = store.token_standing(&user, Some(&format!("session-{i:07}")), "jti").await.unwrap();
            assert!(standing.is_some_and(|s| s.session_scope.is_some()), "session {i} stands");
        }
        let (held_users, held_sessions) = cache.len();
        let heap = heap_mib() - heap_before;
        println!(
            "round {round}: {sessions} checks in {:.1?}; held {held_users} users (cap {}), {held_sessions} sessions (cap {}); \
             heap +{heap:.1} MiB ({:.0} bytes an entry); RSS {:.1} MiB (+{:.1} MiB)",
            started.elapsed(),
            capacity.users,
            capacity.sessions,
            heap * 1024.0 * 1024.0 / (held_users + held_sessions) as f64,
            rss_mib(),
            rss_mib() - before,
        );
    }
}

/// Bulk rows through SQL (hashing 100k passwords would take minutes and
/// prove nothing here): every user has the same made-up hash.
async fn fill(url: &str, users: usize, sessions: usize) {
    use sqlx::ConnectOptions;
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
    let mut conn = options.connect().await.unwrap();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$FSxheEllhUERw+KWvdJIdQ$eiPS6t+CnD86YACPuHoDx8nZmqHN20Dylc/rsmbwQBk";
    sqlx::query(
        "with recursive n(i) as (select 0 union all select i + 1 from n where i + 1 < $1)
         insert into users (username, username_key, email, full_name, password_hash, scopes, disabled, created_at, updated_at)
         select printf('user%06d', i), printf('user%06d', i), printf('user%06d@example.com', i), printf('User %d', i),
                $2, 'items me', false, 0, 0 from n",
    )
    .bind(users as i64)
    .bind(hash)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "with recursive n(i) as (select 0 union all select i + 1 from n where i + 1 < $1)
         insert into sessions (id, user_key, scope, created_at, expires_at)
         select printf('session-%07d', i), printf('user%06d', i % $2), 'items me', 0, 4102444800 from n",
    )
    .bind(sessions as i64)
    .bind(users as i64)
    .execute(&mut conn)
    .await
    .unwrap();
}
