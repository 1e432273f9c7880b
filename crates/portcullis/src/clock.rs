//! The one place the server reads the wall clock; logic takes `now` as a
//! parameter so expiry is tested without sleeping.

/// Seconds since the Unix epoch.
#[allow(clippy::disallowed_methods)]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
