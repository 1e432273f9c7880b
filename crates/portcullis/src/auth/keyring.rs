//! The set of signing keys a server uses, loaded from the database and
//! reloaded when another process rotates them.
//!
//! Every instance polls the (tiny) key table every 2 seconds: simpler than
//! LISTEN/NOTIFY, works the same on SQLite and PostgreSQL, and keeps the
//! promise that a rotation is picked up within 5 seconds.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use portcullis_verify::{KeySet, Verifier, VerifyKey};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::keys::{self, KeyAlgorithm, NewKey, Sealer, SigningKey};
use super::tokens::TokenIssuer;
use crate::store::{KeyRow, SharedStore};

/// How often a server looks for rotated keys.
pub const POLL: Duration = Duration::from_secs(2);

/// Grace beyond the access-token lifetime before a superseded key retires,
/// covering clock skew between instances.
const RETIRE_GRACE_SECS: i64 = 60;

/// A rotated-in key is published and verifies at once, but signs only this
/// many seconds later: by then every instance (polling every 2 s) knows it,
/// so no instance sees a token signed by a key it does not have yet.
pub const ACTIVATION_DELAY_SECS: i64 = 3;

/// What a key row's state is, seen at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Verifies and is published; signs from its `created_at` on.
    Pending,
    /// Signs new tokens.
    Active,
    /// Superseded; verifies (and is published) until its tokens expire.
    Verifying,
    /// No token it signed can still be valid.
    Retired,
}

impl KeyState {
    /// Lower-case name for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Verifying => "verifying",
            KeyState::Retired => "retired",
        }
    }
}

/// The state of a stored key at `now`, with access tokens living `ttl` seconds.
pub fn state_of(row: &KeyRow, now: i64, ttl: i64) -> KeyState {
    if row.created_at > now {
        return KeyState::Pending;
    }
    match row.superseded_at {
        None => KeyState::Active,
        Some(at) if at > now => KeyState::Active,
        Some(at) if at + ttl + RETIRE_GRACE_SECS > now => KeyState::Verifying,
        Some(_) => KeyState::Retired,
    }
}

/// Keys loaded from the database at one moment.
#[derive(Debug)]
pub struct LoadedKeys {
    /// The key that signs.
    pub signer: Arc<SigningKey>,
    /// Every key that verifies (the signer included).
    pub verify: Vec<VerifyKey>,
    /// Public JWKs to publish (asymmetric keys that verify).
    pub jwks: Vec<Value>,
    /// Each key's state when loaded, to notice changes cheaply.
    fingerprint: Vec<(String, KeyState)>,
}

/// Loads and unseals the keys; superseded keys that cannot be unsealed are
/// skipped with a warning, the signer must load.
///
/// # Errors
/// No active key, or one that cannot be unsealed with this secret.
pub fn load(rows: &[KeyRow], secret: &str, sealer: &Sealer, now: i64, ttl: i64) -> anyhow::Result<LoadedKeys> {
    let mut signer = None;
    let mut verify = Vec::new();
    let mut jwks = Vec::new();
    for row in rows {
        let state = state_of(row, now, ttl);
        if state == KeyState::Retired {
            continue;
        }
        if state == KeyState::Active && signer.is_some() {
            // Only if clocks or rows are odd: the newest active key signs.
            tracing::warn!(kid = %row.kid, "two active signing keys; using the newer");
        }
        let algorithm = KeyAlgorithm::parse(&row.algorithm)
            .with_context(|| format!("signing key {} has unknown algorithm {:?}", row.kid, row.algorithm))?;
        let jwk: Option<Value> = row.public_jwk.as_deref().map(serde_json::from_str).transpose()?;
        let loaded = SigningKey::load(&row.kid, algorithm, row.sealed_private.as_deref(), jwk, secret, sealer);
        let key = match (loaded, state) {
            (Ok(key), _) => key,
            (Err(e), KeyState::Active) => return Err(e).context("loading the active signing key"),
            (Err(e), _) => {
                tracing::warn!(kid = %row.kid, error = %e, "skipping a superseded signing key");
                continue;
            }
        };
        verify.push(key.verify_key());
        jwks.extend(key.public_jwk().cloned());
        if state == KeyState::Active {
            signer = Some(Arc::new(key));
        }
    }
    let signer = signer.context("the database has no active signing key")?;
    let fingerprint = rows.iter().map(|r| (r.kid.clone(), state_of(r, now, ttl))).collect();
    Ok(LoadedKeys { signer, verify, jwks, fingerprint })
}

/// Stores a new key row for `key`, made now.
fn row_of(key: NewKey, now: i64) -> KeyRow {
    KeyRow {
        kid: key.kid,
        algorithm: key.algorithm.as_str().to_owned(),
        sealed_private: key.sealed_private,
        public_jwk: key.public_jwk.map(|j| j.to_string()),
        created_at: now,
        superseded_at: None,
    }
}

/// Makes sure the database has a signing key: on a new database, the first
/// one of `algorithm` (HS256: the secret itself); when the secret changed and
/// the active key was the old secret, the new secret takes over.
///
/// # Errors
/// A database error, or keys sealed with a different secret.
pub async fn ensure_signing_key(
    store: &SharedStore,
    secret: &str,
    sealer: &Sealer,
    algorithm: KeyAlgorithm,
    now: i64,
) -> anyhow::Result<()> {
    let first = match algorithm {
        KeyAlgorithm::Hs256 => NewKey::from_secret(secret),
        other => keys::generate(other, sealer)?,
    };
    if store.add_signing_key(&row_of(first, now), true).await? {
        tracing::info!(algorithm = %algorithm, "created the first signing key");
        return Ok(());
    }
    let rows = store.list_keys().await?;
    let signing = rows.iter().rfind(|r| state_of(r, now, 0) == KeyState::Active);
    if let Some(active) = signing {
        // An instance given another secret must not take over signing for
        // the instances sharing this database: refuse, and say how to
        // switch secrets on purpose.
        if active.sealed_private.is_none() && active.kid != keys::secret_kid(secret) {
            anyhow::bail!(
                "the database's signing key was made from a different secret key: give this instance the same \
                 PORTCULLIS_SECRET_KEY as the others, or, to switch to this secret on purpose, run \
                 `portcullis keys rotate --use-secret` with it"
            );
        }
    }
    Ok(())
}

/// Makes the configured secret itself the HS256 signing key (the tutorials'
/// set-up, or a deliberate change of secret), active
/// [`ACTIVATION_DELAY_SECS`] from `now`.
///
/// # Errors
/// A database error, or this secret's key is already there.
pub async fn rotate_to_secret(store: &SharedStore, secret: &str, now: i64) -> anyhow::Result<String> {
    let key = NewKey::from_secret(secret);
    let kid = key.kid.clone();
    store
        .add_signing_key(&row_of(key, now + ACTIVATION_DELAY_SECS), false)
        .await
        .context("this secret's key is already in the database (see `portcullis keys list`)")?;
    Ok(kid)
}

/// Makes a new signing key, active [`ACTIVATION_DELAY_SECS`] from `now`.
///
/// # Errors
/// A database error, or a rotation racing this one.
pub async fn rotate(store: &SharedStore, sealer: &Sealer, algorithm: KeyAlgorithm, now: i64) -> anyhow::Result<String> {
    // HS256 rotation makes a random HMAC key: the secret-derived one would
    // keep its kid and change nothing.
    let key = keys::generate(algorithm, sealer)?;
    let kid = key.kid.clone();
    store
        .add_signing_key(&row_of(key, now + ACTIVATION_DELAY_SECS), false)
        .await
        .context("another rotation happened at the same time; list the keys and try again")?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kid: &str, created_at: i64, superseded_at: Option<i64>) -> KeyRow {
        let sealer = Sealer::new("0123456789abcdef0123456789abcdef-tests");
        let key = keys::generate(KeyAlgorithm::EdDsa, &sealer).unwrap();
        KeyRow { kid: kid.into(), created_at, superseded_at, ..row_of(key, created_at) }
    }

    #[test]
    fn a_key_goes_pending_active_verifying_retired() {
        let ttl = 900;
        let old = row("old", 0, Some(1000));
        let new = row("new", 1000, None);
        assert_eq!(state_of(&new, 998, ttl), KeyState::Pending);
        assert_eq!(state_of(&old, 998, ttl), KeyState::Active);
        assert_eq!(state_of(&new, 1000, ttl), KeyState::Active);
        assert_eq!(state_of(&old, 1000, ttl), KeyState::Verifying);
        assert_eq!(state_of(&old, 1000 + ttl + RETIRE_GRACE_SECS - 1, ttl), KeyState::Verifying);
        assert_eq!(state_of(&old, 1000 + ttl + RETIRE_GRACE_SECS, ttl), KeyState::Retired);
    }

    #[test]
    fn a_retired_key_is_neither_published_nor_accepted() {
        let sealer = Sealer::new("0123456789abcdef0123456789abcdef-tests");
        let make = |kid_created: i64, superseded: Option<i64>| {
            let key = keys::generate(KeyAlgorithm::EdDsa, &sealer).unwrap();
            KeyRow { superseded_at: superseded, ..row_of(key, kid_created) }
        };
        let rows = vec![make(0, Some(1000)), make(1000, None)];
        let secret = "0123456789abcdef0123456789abcdef-tests";

        let during = load(&rows, secret, &sealer, 1500, 900).unwrap();
        let after = load(&rows, secret, &sealer, 1000 + 900 + RETIRE_GRACE_SECS, 900).unwrap();

        assert_eq!((during.verify.len(), during.jwks.len()), (2, 2));
        assert_eq!((after.verify.len(), after.jwks.len()), (1, 1));
        assert_eq!(after.signer.kid(), rows[1].kid);
    }
}

/// A server's live keys: the issuer signs with the active one, the verifier
/// accepts all that verify, `/.well-known/jwks.json` shows the public ones.
#[derive(Clone)]
pub struct Keyring {
    current: Arc<RwLock<Arc<LoadedKeys>>>,
    issuer: TokenIssuer,
    verifier: Verifier,
    store: SharedStore,
    secret: Arc<SecretString>,
    sealer: Arc<Sealer>,
}

impl Keyring {
    /// Loads the keys from the database and applies them to `issuer` and
    /// `verifier`.
    ///
    /// # Errors
    /// A database error, or an active key this secret cannot unseal.
    pub async fn open(
        store: SharedStore,
        secret: SecretString,
        sealer: Sealer,
        issuer: TokenIssuer,
        verifier: Verifier,
        now: i64,
    ) -> anyhow::Result<Self> {
        let rows = store.list_keys().await?;
        let keys = load(&rows, secret.expose_secret(), &sealer, now, issuer.ttl_secs() as i64)?;
        let keyring = Keyring {
            current: Arc::new(RwLock::new(Arc::new(keys))),
            issuer,
            verifier,
            store,
            secret: Arc::new(secret),
            sealer: Arc::new(sealer),
        };
        keyring.apply();
        Ok(keyring)
    }

    /// The keys now in use.
    pub fn current(&self) -> Arc<LoadedKeys> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn apply(&self) {
        let keys = self.current();
        self.issuer.set_key(keys.signer.clone());
        self.verifier.set_keys(KeySet::new(keys.verify.iter().cloned()));
    }

    /// Reloads from the database if the key rows changed (or keys retired).
    ///
    /// # Errors
    /// A database error, or an active key this secret cannot unseal.
    pub async fn refresh(&self, now: i64) -> anyhow::Result<bool> {
        let rows = self.store.list_keys().await?;
        let ttl = self.issuer.ttl_secs() as i64;
        let fresh = load(&rows, self.secret.expose_secret(), &self.sealer, now, ttl)?;
        let old = self.current();
        if fresh.fingerprint == old.fingerprint {
            return Ok(false);
        }
        tracing::info!(kid = %fresh.signer.kid(), "signing keys reloaded");
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        self.apply();
        Ok(true)
    }
}
