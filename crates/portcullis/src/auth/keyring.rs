//! The keyring: the one owner of the keys a server signs and verifies
//! with. Opened once from the store and the deployment's secrets, it issues
//! access tokens with the active key and keeps the one [`Verifier`] that
//! checks them current. Read this file before touching either path.
//!
//! Keys live in the database so that every instance shares them. Each
//! instance polls the (tiny) key table every [`POLL`]: simpler than
//! LISTEN/NOTIFY, the same on SQLite and PostgreSQL, and within the promise
//! that a rotation is picked up in 5 seconds. A poll compares the rows and
//! the keys' states first; keys are unsealed only when something changed.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use portcullis_verify::{Audience, Claims, KeySet, Verifier};
use serde_json::Value;

use super::secret_key::Secrets;
use super::signing::{self, KeyAlgorithm, NewKey, SigningKey};
use super::standing::StillStanding;
use super::tokens::{AccessToken, Issue, TokenSettings};
use crate::clock::{Clock, UnixTime};
use crate::domain::Scopes;
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
pub fn state_of(row: &KeyRow, now: UnixTime, ttl: i64) -> KeyState {
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

/// What the key table looked like at one moment: each row with its state.
/// Equal snapshots need no unsealing.
type Snapshot = Vec<(KeyRow, KeyState)>;

fn snapshot(rows: Vec<KeyRow>, now: UnixTime, ttl: i64) -> Snapshot {
    rows.into_iter()
        .map(|row| {
            let state = state_of(&row, now, ttl);
            (row, state)
        })
        .collect()
}

/// The keys unsealed from one snapshot.
#[derive(Debug)]
pub struct UnsealedKeys {
    /// The key that signs.
    pub signer: Arc<SigningKey>,
    /// Every key that verifies (the signer included).
    pub verify: KeySet,
    /// Public JWKs to publish (asymmetric keys that verify).
    pub jwks: Vec<Value>,
    /// Algorithms of the keys that verify, for discovery metadata.
    pub algorithms: Vec<KeyAlgorithm>,
    snapshot: Snapshot,
}

/// Unseals the keys that still verify; superseded keys that cannot be
/// unsealed are skipped with a warning, the signer must unseal.
///
/// # Errors
/// No active key, or one these secrets cannot unseal.
pub fn unseal_keys(rows: Vec<KeyRow>, secrets: &Secrets, now: UnixTime, ttl: i64) -> anyhow::Result<UnsealedKeys> {
    let snapshot = snapshot(rows, now, ttl);
    let sealer = secrets.sealer();
    let (mut signer, mut verify, mut jwks, mut algorithms) = (None, Vec::new(), Vec::new(), Vec::new());
    for (row, state) in &snapshot {
        if *state == KeyState::Retired {
            continue;
        }
        if *state == KeyState::Active && signer.is_some() {
            // Only if clocks or rows are odd: the newest active key signs.
            tracing::warn!(kid = %row.kid, "two active signing keys; using the newer");
        }
        let algorithm = KeyAlgorithm::parse(&row.algorithm)
            .with_context(|| format!("signing key {} has unknown algorithm {:?}", row.kid, row.algorithm))?;
        let jwk: Option<Value> = row.public_jwk.as_deref().map(serde_json::from_str).transpose()?;
        let unsealed =
            SigningKey::unseal(&row.kid, algorithm, row.sealed_private.as_deref(), jwk, secrets.secret(), &sealer);
        let key = match (unsealed, state) {
            (Ok(key), _) => key,
            (Err(e), KeyState::Active) => return Err(e).context("unsealing the active signing key"),
            (Err(e), _) => {
                tracing::warn!(kid = %row.kid, error = %e, "skipping a superseded signing key");
                continue;
            }
        };
        verify.push(key.verify_key());
        jwks.extend(key.public_jwk().cloned());
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
        if *state == KeyState::Active {
            signer = Some(Arc::new(key));
        }
    }
    let signer = signer.context("the database has no active signing key")?;
    Ok(UnsealedKeys { signer, verify: KeySet::new(verify), jwks, algorithms, snapshot })
}

/// Stores a new key row for `key`, made at `at`.
fn row_of(key: NewKey, at: UnixTime) -> KeyRow {
    KeyRow {
        kid: key.kid,
        algorithm: key.algorithm.as_str().to_owned(),
        sealed_private: key.sealed_private,
        public_jwk: key.public_jwk.map(|j| j.to_string()),
        created_at: at,
        superseded_at: None,
    }
}

/// Makes the first signing key when the database has none (HS256: the
/// secret itself), and refuses an instance whose secret is not the one the
/// active secret-key was made from.
///
/// # Errors
/// A database error, or a different secret.
pub async fn ensure_signing_key(
    store: &SharedStore,
    secrets: &Secrets,
    algorithm: KeyAlgorithm,
    now: UnixTime,
) -> anyhow::Result<()> {
    let mut rows = store.list_keys().await?;
    if rows.is_empty() {
        let first = match algorithm {
            KeyAlgorithm::Hs256 => NewKey::from_secret(secrets.secret()),
            other => signing::generate(other, &secrets.sealer())?,
        };
        // Two instances starting on a new database: one key wins.
        if store.add_signing_key(&row_of(first, now), true).await? {
            tracing::info!(algorithm = %algorithm, "created the first signing key");
            return Ok(());
        }
        rows = store.list_keys().await?;
    }
    let active = rows.iter().rfind(|r| state_of(r, now, 0) == KeyState::Active);
    // An instance given another secret must not take over signing for the
    // instances sharing this database: refuse, and say how to switch
    // secrets on purpose.
    if let Some(active) = active {
        if active.sealed_private.is_none() && active.kid != signing::secret_kid(secrets.secret()) {
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
pub async fn rotate_to_secret(store: &SharedStore, secrets: &Secrets, now: UnixTime) -> anyhow::Result<String> {
    let key = NewKey::from_secret(secrets.secret());
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
pub async fn rotate(
    store: &SharedStore,
    secrets: &Secrets,
    algorithm: KeyAlgorithm,
    now: UnixTime,
) -> anyhow::Result<String> {
    // HS256 rotation makes a random HMAC key: the secret-derived one would
    // keep its kid and change nothing.
    let key = signing::generate(algorithm, &secrets.sealer())?;
    let kid = key.kid.clone();
    store
        .add_signing_key(&row_of(key, now + ACTIVATION_DELAY_SECS), false)
        .await
        .context("another rotation happened at the same time; list the keys and try again")?;
    Ok(kid)
}

/// A server's live keys: it signs with the active one, its verifier accepts
/// all that verify, `/.well-known/jwks.json` shows the public ones. Cheap
/// to clone.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

struct Inner {
    /// The one lock: replaced whole on a rotation.
    current: RwLock<Arc<UnsealedKeys>>,
    /// Handed out, never rebuilt: its key set is written only by `install`.
    verifier: Verifier,
    settings: TokenSettings,
    store: SharedStore,
    secrets: Secrets,
    clock: Clock,
}

impl Keyring {
    /// Unseals the database's keys and builds the verifier for this server's
    /// tokens: its issuer and audience, refusing tokens whose user, session
    /// or `jti` no longer stands.
    ///
    /// # Errors
    /// A database error, or an active key these secrets cannot unseal.
    pub async fn open(
        store: SharedStore,
        secrets: Secrets,
        settings: TokenSettings,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let keys = unseal_keys(store.list_keys().await?, &secrets, clock.now(), settings.access_ttl)?;
        let mut builder =
            Verifier::builder(keys.verify.clone()).issuer(settings.issuer.clone()).max_lifetime(settings.access_ttl);
        // A token must name one of our audiences when we issue with one.
        for aud in &settings.audience {
            builder = builder.audience(aud.clone());
        }
        let time = clock.clone();
        let verifier = builder.clock(move || time.now()).check(StillStanding::new(store.clone())).build();
        let inner = Inner { current: RwLock::new(Arc::new(keys)), verifier, settings, store, secrets, clock };
        Ok(Keyring { inner: Arc::new(inner) })
    }

    /// The verifier of this server's access tokens (signature, claims and
    /// standing).
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// Issuer, audience and lifetime of the tokens this keyring issues.
    pub fn settings(&self) -> &TokenSettings {
        &self.inner.settings
    }

    /// The keys now in use.
    pub fn current(&self) -> Arc<UnsealedKeys> {
        self.inner.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Issues an access token for `subject` with `scope` at `now`, tied to
    /// session `sid` when there is one, signed by the active key.
    pub fn issue(&self, subject: &str, scope: &Scopes, sid: Option<&str>, now: UnixTime) -> AccessToken {
        let issue = Issue { subject, scope, sid, client_id: None, audience: None, not_after: None, exchanged: false };
        self.issue_for(&issue, now)
    }

    /// Issues an access token as `issue` describes it, at `now`.
    pub fn issue_for(&self, issue: &Issue<'_>, now: UnixTime) -> AccessToken {
        let settings = &self.inner.settings;
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let aud = match (&issue.audience, settings.audience.as_slice()) {
            (Some(aud), _) => Some(aud.clone()),
            (None, []) => None,
            (None, [one]) => Some(Audience::One(one.clone())),
            (None, many) => Some(Audience::Many(many.to_vec())),
        };
        let mut extra = serde_json::Map::new();
        if let Some(sid) = issue.sid {
            extra.insert("sid".into(), sid.into());
        }
        if let Some(client_id) = issue.client_id {
            extra.insert("client_id".into(), client_id.into());
        }
        if issue.exchanged {
            extra.insert("exchanged".into(), true.into());
        }
        let exp = issue.not_after.map_or(now + settings.access_ttl, |at| at.min(now + settings.access_ttl));
        let claims = Claims {
            iss: settings.issuer.clone(),
            sub: issue.subject.to_owned(),
            aud,
            exp,
            iat: now,
            nbf: now,
            jti: jti.clone(),
            scope: issue.scope.to_string(),
            extra,
        };
        AccessToken { jwt: self.current().signer.sign(&claims), jti, expires_in: (exp - now).max(0) }
    }

    /// Reloads from the database when the key rows or their states changed
    /// (a rotation, a pending key turning active, a key retiring); `true`
    /// when the keys in use changed.
    ///
    /// # Errors
    /// A database error, or an active key these secrets cannot unseal.
    pub async fn refresh(&self) -> anyhow::Result<bool> {
        let (now, ttl) = (self.inner.clock.now(), self.inner.settings.access_ttl);
        let rows = self.inner.store.list_keys().await?;
        if snapshot(rows.clone(), now, ttl) == self.current().snapshot {
            return Ok(false);
        }
        let fresh = unseal_keys(rows, &self.inner.secrets, now, ttl)?;
        tracing::info!(kid = %fresh.signer.kid(), "signing keys reloaded");
        // The verifier first: a token signed by the new key must never meet
        // a verifier that does not know it yet.
        self.inner.verifier.set_keys(fresh.verify.clone());
        *self.inner.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-tests";

    fn secrets() -> Secrets {
        Secrets::new(SECRET.into(), None)
    }

    fn row(created_at: i64, superseded_at: Option<i64>) -> KeyRow {
        let key = signing::generate(KeyAlgorithm::EdDsa, &secrets().sealer()).unwrap();
        KeyRow { superseded_at, ..row_of(key, created_at) }
    }

    #[test]
    fn a_key_goes_pending_active_verifying_retired() {
        let ttl = 900;
        let old = row(0, Some(1000));
        let new = row(1000, None);
        assert_eq!(state_of(&new, 998, ttl), KeyState::Pending);
        assert_eq!(state_of(&old, 998, ttl), KeyState::Active);
        assert_eq!(state_of(&new, 1000, ttl), KeyState::Active);
        assert_eq!(state_of(&old, 1000, ttl), KeyState::Verifying);
        assert_eq!(state_of(&old, 1000 + ttl + RETIRE_GRACE_SECS - 1, ttl), KeyState::Verifying);
        assert_eq!(state_of(&old, 1000 + ttl + RETIRE_GRACE_SECS, ttl), KeyState::Retired);
    }

    #[test]
    fn a_retired_key_is_neither_published_nor_accepted() {
        let rows = vec![row(0, Some(1000)), row(1000, None)];

        let during = unseal_keys(rows.clone(), &secrets(), 1500, 900).unwrap();
        let after = unseal_keys(rows.clone(), &secrets(), 1000 + 900 + RETIRE_GRACE_SECS, 900).unwrap();

        assert_eq!((during.verify.len(), during.jwks.len()), (2, 2));
        assert_eq!((after.verify.len(), after.jwks.len()), (1, 1));
        assert_eq!(after.signer.kid(), rows[1].kid);
    }

    #[test]
    fn a_snapshot_changes_when_a_pending_key_turns_active_though_no_row_changed() {
        let rows = vec![row(0, Some(1000)), row(1000, None)];
        assert_ne!(snapshot(rows.clone(), 999, 900), snapshot(rows.clone(), 1000, 900));
        assert_eq!(snapshot(rows.clone(), 1000, 900), snapshot(rows, 1001, 900));
    }
}
