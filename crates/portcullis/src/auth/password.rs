//! Password hashes: argon2id (OWASP parameters) for every new hash, bcrypt
//! (`$2a$`, `$2b$`, `$2y$`, as passlib writes them) verified for imports and
//! replaced on the next good login.
//!
//! These functions are slow on purpose; call them through [`super::pool`].

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use subtle::ConstantTimeEq;

pub use crate::domain::StoredHash;

/// Whether this is a hash portcullis can verify within its cost caps (an
/// import refuses others).
pub fn is_supported(stored: &StoredHash) -> bool {
    refusal(stored).is_none()
}

/// Why a stored hash would not be verified, in words for an import's
/// error (never the hash itself): an unknown format, or a cost above the
/// caps, which would let one login hold a hashing thread for long.
pub fn refusal(stored: &StoredHash) -> Option<String> {
    let hash = stored.expose();
    if is_bcrypt(hash) {
        return match bcrypt_cost(hash) {
            Some(cost) if cost > MAX_BCRYPT_COST => {
                Some(format!("bcrypt cost {cost} is above the cap of {MAX_BCRYPT_COST}"))
            }
            Some(_) => None,
            None => Some("not a well-formed bcrypt hash".into()),
        };
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return Some("not a bcrypt ($2a$/$2b$/$2y$) or argon2 hash".into());
    };
    if !["argon2id", "argon2i", "argon2d"].contains(&parsed.algorithm.as_str()) {
        return Some("not a bcrypt ($2a$/$2b$/$2y$) or argon2 hash".into());
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Some("an argon2 hash without salt or output".into());
    }
    match Params::try_from(&parsed) {
        Ok(params) => argon2_cost_refusal(&params),
        Err(_) => Some("argon2 parameters out of range".into()),
    }
}

/// Caps on a stored argon2 hash's cost: memory, passes, lanes, and memory
/// times passes (what the time of one verify grows with). The defaults
/// (19 MiB, 2 passes, 1 lane) are far below; so are the other OWASP
/// variants (e.g. 46 MiB × 1, 9 MiB × 4).
pub const MAX_ARGON2_KIB: u32 = 64 * 1024;
/// See [`MAX_ARGON2_KIB`].
pub const MAX_ARGON2_PASSES: u32 = 8;
/// See [`MAX_ARGON2_KIB`].
pub const MAX_ARGON2_LANES: u32 = 8;
/// See [`MAX_ARGON2_KIB`]: 8 times the default's work.
pub const MAX_ARGON2_KIB_PASSES: u64 = 8 * 19 * 1024 * 2;

fn argon2_cost_refusal(params: &Params) -> Option<String> {
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m > MAX_ARGON2_KIB {
        Some(format!("argon2 memory {m} KiB is above the cap of {MAX_ARGON2_KIB} KiB"))
    } else if t > MAX_ARGON2_PASSES {
        Some(format!("argon2 time cost {t} is above the cap of {MAX_ARGON2_PASSES}"))
    } else if p > MAX_ARGON2_LANES {
        Some(format!("argon2 parallelism {p} is above the cap of {MAX_ARGON2_LANES}"))
    } else if u64::from(m) * u64::from(t) > MAX_ARGON2_KIB_PASSES {
        Some(format!("argon2 memory × time ({m} KiB × {t}) is above the cap of {MAX_ARGON2_KIB_PASSES} KiB-passes"))
    } else {
        None
    }
}

/// The kind of a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// argon2 (any variant), PHC string.
    Argon2,
    /// bcrypt, modular-crypt string.
    Bcrypt,
    /// Neither: never verifies.
    Unknown,
}

/// What kind of hash this is.
pub fn kind(stored: &StoredHash) -> Kind {
    let hash = stored.expose();
    if is_bcrypt(hash) {
        Kind::Bcrypt
    } else if hash.starts_with("$argon2") {
        Kind::Argon2
    } else {
        Kind::Unknown
    }
}

/// What checking a password against a hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Wrong password (or an unreadable hash).
    Wrong,
    /// Right password; `rehash` when the hash is bcrypt or weaker argon2
    /// than today's parameters.
    Right { rehash: bool },
}

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

thread_local! {
    /// Argon2's working memory, kept by each hashing thread. Allocating 19 MiB
    /// a hash made the allocator hold on to hundreds of MiB under a login
    /// flood (measured: 57 → 234 MiB RSS); reused, it stays at one block set
    /// per thread.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn compute(hasher: &Argon2<'_>, params: &Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let blocks = params.block_count();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let done = hasher.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks]).is_ok();
        // One hash with more memory than today's default (an imported one)
        // must not leave every thread holding that much for good.
        let usual = Params::default().block_count();
        if memory.len() > usual {
            memory.truncate(usual);
            memory.shrink_to_fit();
        }
        done
    })
}

/// Gives back this thread's argon2 working memory (an idle hashing thread
/// holds none).
pub fn release_memory() {
    MEMORY.with(|memory| *memory.borrow_mut() = Vec::new());
}

/// The argon2 working memory this thread holds, in bytes.
pub fn memory_held() -> usize {
    MEMORY.with(|memory| memory.borrow().capacity() * std::mem::size_of::<Block>())
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// The highest bcrypt cost accepted: cost 12 (passlib's default) takes
/// ~240 ms a verify here, 14 about a second; anything above would let one
/// imported hash hold a hashing thread for seconds a login.
pub const MAX_BCRYPT_COST: u32 = 14;

/// The cost of `$2b$12$` then 53 characters of bcrypt's base64 (salt and
/// digest), when the hash has that shape and a cost of at least 4.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let b = hash.as_bytes();
    let well_formed = is_bcrypt(hash)
        && b.len() == 60
        && b[4..6].iter().all(u8::is_ascii_digit)
        && b[6] == b'$'
        && b[7..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/');
    well_formed.then(|| hash[4..6].parse::<u32>().ok()).flatten().filter(|cost| *cost >= 4)
}

/// A bcrypt hash portcullis verifies: well formed, cost 4 to [`MAX_BCRYPT_COST`].
fn is_well_formed_bcrypt(hash: &str) -> bool {
    bcrypt_cost(hash).is_some_and(|cost| cost <= MAX_BCRYPT_COST)
}

/// Hashes a new password with argon2id and a random salt.
pub fn hash(password: &str) -> StoredHash {
    let params = Params::default();
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    assert!(compute(&argon2(), &params, password.as_bytes(), &salt, &mut out), "argon2 with default parameters");
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).expect("default parameters encode"),
        salt: Some(Salt::new(&salt).expect("a 16-byte salt")),
        hash: Some(Output::new(&out).expect("a 32-byte output")),
    };
    StoredHash::new(phc.to_string())
}

/// Checks a password against a stored hash, in constant time for a given hash.
pub fn verify(password: &str, stored: &StoredHash) -> Verdict {
    let hash = stored.expose();
    if is_bcrypt(hash) {
        if !is_well_formed_bcrypt(hash) {
            return Verdict::Wrong;
        }
        // bcrypt compares in constant time and, like passlib, reads at most 72 bytes.
        return match bcrypt::verify(password, hash) {
            Ok(true) => Verdict::Right { rehash: true },
            _ => Verdict::Wrong,
        };
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return Verdict::Wrong;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return Verdict::Wrong;
    };
    let algorithm = match parsed.algorithm.as_str() {
        "argon2id" => Algorithm::Argon2id,
        "argon2i" => Algorithm::Argon2i,
        "argon2d" => Algorithm::Argon2d,
        _ => return Verdict::Wrong,
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Verdict::Wrong;
    };
    if argon2_cost_refusal(&params).is_some() {
        return Verdict::Wrong;
    }
    let version = match parsed.version {
        Some(0x10) => Version::V0x10,
        _ => Version::V0x13,
    };
    let hasher = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    if !compute(&hasher, &params, password.as_bytes(), salt.as_ref(), &mut out)
        || !bool::from(out.as_slice().ct_eq(expected.as_bytes()))
    {
        return Verdict::Wrong;
    }
    let current = Params::default();
    let weaker = algorithm != Algorithm::Argon2id
        || version != Version::V0x13
        || params.m_cost() < current.m_cost()
        || params.t_cost() < current.t_cost()
        || params.p_cost() < current.p_cost();
    Verdict::Right { rehash: weaker }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_hash_is_argon2id_with_owasp_parameters() {
        let h = hash("correct horse battery");
        assert!(h.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(verify("correct horse battery", &h), Verdict::Right { rehash: false });
        assert_eq!(verify("wrong horse battery", &h), Verdict::Wrong);
    }

    #[test]
    fn the_fastapi_tutorial_bcrypt_hash_verifies_and_asks_for_a_rehash() {
        // From the FastAPI "OAuth2 with Password (and hashing), Bearer with JWT" tutorial.
        let h = StoredHash::new("$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW".into());
        assert_eq!(verify("secret", &h), Verdict::Right { rehash: true });
        assert_eq!(verify("secret2", &h), Verdict::Wrong);
    }

    #[test]
    fn a_2y_and_2a_prefix_verify_too() {
        let b = bcrypt::hash("legacy-pass", 4).unwrap();
        for prefix in ["$2a$", "$2y$"] {
            let h = StoredHash::new(format!("{prefix}{}", &b[4..]));
            assert!(is_supported(&h));
            assert_eq!(verify("legacy-pass", &h), Verdict::Right { rehash: true });
        }
    }

    #[test]
    fn our_hashes_verify_with_the_argon2_crate_itself_and_back() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let ours = hash("interop password");
        let parsed = PasswordHash::new(ours.expose()).unwrap();
        assert!(argon2().verify_password(b"interop password", &parsed).is_ok());
        let theirs = argon2().hash_password(b"interop password").unwrap().to_string();
        assert_eq!(verify("interop password", &StoredHash::new(theirs)), Verdict::Right { rehash: false });
    }

    #[test]
    fn a_hash_asking_for_absurd_memory_is_refused_not_run() {
        let greedy = StoredHash::new(
            "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
                .into(),
        );
        assert_eq!(verify("anything", &greedy), Verdict::Wrong);
    }

    #[test]
    fn a_weaker_argon2_hash_asks_for_a_rehash() {
        use argon2::PasswordHasher;
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(4096, 1, 1, None).unwrap())
            .hash_password(b"some password")
            .unwrap()
            .to_string();
        assert_eq!(verify("some password", &StoredHash::new(weak)), Verdict::Right { rehash: true });
    }

    #[test]
    fn argon2_hashes_beyond_any_cap_are_refused_at_import_and_never_run() {
        let salted = "c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        for (params, named) in [
            ("m=65537,t=1,p=1", "memory"),
            ("m=19456,t=4294967295,p=1", "time cost"),
            ("m=19456,t=9,p=1", "time cost"),
            ("m=19456,t=2,p=9", "parallelism"),
            ("m=65536,t=8,p=1", "memory × time"),
        ] {
            let h = StoredHash::new(format!("$argon2id$v=19${params}${salted}"));
            let why = refusal(&h).unwrap_or_default();
            assert!(why.contains(named), "{params}: {why}");
            assert!(!is_supported(&h));
            let started = std::time::Instant::now();
            assert_eq!(verify("anything", &h), Verdict::Wrong, "{params}");
            assert!(started.elapsed() < std::time::Duration::from_secs(2), "{params} was run");
        }
        let usual = StoredHash::new(format!("$argon2id$v=19$m=47104,t=1,p=1${salted}"));
        assert_eq!(refusal(&usual), None, "OWASP's other variants pass");
    }

    #[test]
    fn a_large_hash_does_not_leave_its_memory_with_the_thread() {
        use argon2::PasswordHasher;
        let big = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(60 * 1024, 1, 1, None).unwrap())
            .hash_password(b"big password")
            .unwrap()
            .to_string();
        std::thread::spawn(move || {
            assert!(matches!(verify("big password", &StoredHash::new(big)), Verdict::Right { .. }));
            assert!(memory_held() <= 20 * 1024 * 1024, "held {} bytes", memory_held());
            release_memory();
            assert_eq!(memory_held(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_bcrypt_hash_of_absurd_cost_is_refused_not_run() {
        let b = bcrypt::hash("x-password", 4).unwrap();
        let absurd = StoredHash::new(format!("$2b$31{}", &b[6..]));
        assert!(!is_supported(&absurd));
        assert!(refusal(&absurd).unwrap().contains("bcrypt cost 31 is above the cap of 14"));
        assert!(is_supported(&StoredHash::new(format!("$2b$14{}", &b[6..]))));
        assert!(!is_supported(&StoredHash::new(format!("$2b$15{}", &b[6..]))));
        assert_eq!(verify("x-password", &absurd), Verdict::Wrong);
    }

    #[test]
    fn garbage_hashes_never_verify() {
        for junk in ["", "plain", "$2b$12$short", "$argon2id$v=19$m=1$x$y", "$1$md5$crypt"] {
            let h = StoredHash::new(junk.into());
            assert_eq!(verify("anything", &h), Verdict::Wrong, "{junk}");
            assert!(!is_supported(&h) || junk.starts_with("$argon2"), "{junk}");
        }
    }

    #[test]
    fn a_hash_never_shows_in_debug_output() {
        assert_eq!(format!("{:?}", hash("some password")), "StoredHash(..)");
    }
}
