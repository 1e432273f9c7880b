//! Stored password hashes from a database row or an import file:
//! `password::kind`, `is_supported`, the timing padding, and `verify`; and
//! the same bytes as a `user import` file (`commands::user::parse_import`)
//! and as a username.
//!
//! `verify` of a well-formed hash is slow by design (argon2 with the cost
//! the hash names, bcrypt up to cost 16), which a fuzzer would mistake for
//! a hang: it runs on every input whose hash it refuses or does not get to
//! hashing with, and on well-formed hashes only when their cost is small
//! (bcrypt cost ≤ 6; argon2 m ≤ 1 MiB, t ≤ 4, p ≤ 4). The cost caps
//! themselves are checked by `is_supported` (and the import), run on all.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::auth::password::{self, Kind, StoredHash, Verdict};
use portcullis::auth::pool::padding;
use portcullis::domain::{UserKey, Username};

/// Whether `verify` of this hash finishes in milliseconds.
fn cheap_to_verify(hash: &str) -> bool {
    let bcrypt = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
    if bcrypt {
        return hash.get(4..6).and_then(|c| c.parse::<u32>().ok()).is_none_or(|cost| cost <= 6);
    }
    let Ok(parsed) = argon2::PasswordHash::new(hash) else { return true };
    let Ok(params) = argon2::Params::try_from(&parsed) else { return true };
    !parsed.algorithm.as_str().starts_with("argon2")
        || (params.m_cost() <= 1024 && params.t_cost() <= 4 && params.p_cost() <= 4)
}

fn check_hash(text: &str) {
    let stored = StoredHash::new(text.to_owned());
    let kind = password::kind(&stored);
    let supported = password::is_supported(&stored);
    if supported {
        assert_ne!(kind, Kind::Unknown, "a supported hash has a kind");
    }
    for legacy_cost in [0, 4, 12, 31] {
        let _ = padding(Some(&stored), legacy_cost);
    }
    if cheap_to_verify(text) {
        for typed in ["secret", ""] {
            let verdict = password::verify(typed, &stored);
            if verdict != Verdict::Wrong {
                assert!(supported, "only a supported hash verifies a password");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_hash(&text);
    if let Ok(users) = portcullis::commands::user::parse_import(&text) {
        for user in users {
            assert!(password::is_supported(&user.password_hash), "an import takes supported hashes only");
            assert_eq!(Username::lookup_key(user.username.as_str()).as_ref(), Some(user.username.key()));
        }
    }
    if let Ok(name) = Username::parse(&text) {
        assert_eq!(&UserKey::of(name.as_str()), name.key());
    }
});
