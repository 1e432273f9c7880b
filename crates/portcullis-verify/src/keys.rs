//! The keys a verifier accepts: each [`VerifyKey`] pinned to one algorithm,
//! gathered by `kid` in a [`KeySet`]. Below both the verifier and the JWKS
//! fetcher, which only hand key sets to each other.

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey};

/// One public (or shared) key and the only algorithm it may verify.
///
/// Pinning the algorithm to the key is what defeats algorithm confusion: a
/// token whose header names another `alg` is refused before any crypto runs.
#[derive(Clone)]
pub struct VerifyKey {
    kid: String,
    algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key itself may be a shared secret: never print it.
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// A key with its id and pinned algorithm.
    pub fn new(kid: impl Into<String>, algorithm: Algorithm, key: DecodingKey) -> Self {
        VerifyKey { kid: kid.into(), algorithm, key }
    }

    /// An HS256 key: the secret's bytes as written, as in the FastAPI
    /// tutorials (a hex string is not hex-decoded).
    pub fn hs256(kid: impl Into<String>, secret: &[u8]) -> Self {
        VerifyKey::new(kid, Algorithm::HS256, DecodingKey::from_secret(secret))
    }

    /// The HS256 key a portcullis server makes of its secret, with the `kid`
    /// the server gives it: a resource server holding the same secret (the
    /// FastAPI tutorials' set-up) verifies portcullis tokens with this.
    ///
    /// # Example
    /// ```
    /// use portcullis_verify::{KeySet, Verifier, VerifyKey};
    ///
    /// let secret = std::env::var("PORTCULLIS_SECRET_KEY").unwrap_or_else(|_| "0".repeat(64));
    /// let verifier = Verifier::builder(KeySet::new([VerifyKey::shared_secret(secret.as_bytes())])).build();
    /// ```
    pub fn shared_secret(secret: &[u8]) -> Self {
        VerifyKey::hs256(shared_secret_kid(secret), secret)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// The `kid` of the HS256 key that is a server's secret: a one-way hash of
/// it, so every instance (and resource server) sharing the secret agrees.
pub fn shared_secret_kid(secret: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"portcullis kid\0");
    hasher.update(secret);
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("hs256-{hex}")
}

/// The keys a verifier accepts, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyKey>,
}

impl KeySet {
    /// A set of these keys.
    pub fn new(keys: impl IntoIterator<Item = VerifyKey>) -> Self {
        KeySet { keys: keys.into_iter().map(|k| (k.kid.clone(), k)).collect() }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key has this id.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The key for a token's `kid`; a token without `kid` may use the only key.
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<&VerifyKey> {
        match kid {
            Some(kid) => self.keys.get(kid),
            None if self.keys.len() == 1 => self.keys.values().next(),
            None => None,
        }
    }
}
