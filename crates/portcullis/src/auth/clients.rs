//! Client secrets and personal access tokens: made, stored and compared.
//!
//! Both carry 256 random bits, so each is stored as a plain SHA-256: a slow
//! password hash (argon2, bcrypt) exists to make guessing a *low-entropy*
//! secret from its hash expensive, and nobody can enumerate 2^256 values
//! whatever the hash costs. A fast hash also keeps client authentication
//! off the hashing pool, so a `client_credentials` grant costs microseconds.

use subtle::ConstantTimeEq;

use super::tokens::{new_refresh_token, secret_hash};
use crate::clock::UnixTime;
use crate::domain::{Scopes, UserKey, Username};
use crate::store::{Client, ClientPatch, SharedStore, StoreResult};

/// What every personal access token starts with, so secret scanners can
/// find one that leaked (GitHub's `ghp_`, GitLab's `glpat-`).
pub const PAT_PREFIX: &str = "pcat_";

/// A new client secret: 256 random bits, base64url (43 characters).
pub fn new_client_secret() -> String {
    new_refresh_token()
}

/// A new personal access token: [`PAT_PREFIX`], then 256 random bits.
pub fn new_personal_token() -> String {
    format!("{PAT_PREFIX}{}", new_refresh_token())
}

/// The hash an unknown client's presented secret is compared with, so an
/// unknown id costs what a wrong secret costs. No secret hashes to it.
const NO_CLIENT: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Whether `presented` is the secret stored as `stored` (`None`: no such
/// client, compared all the same). Constant time in the secret's content:
/// both sides are hashed first, so only the fixed-length hashes are compared.
pub fn secret_matches(presented: &str, stored: Option<&str>) -> bool {
    let matches: bool = secret_hash(presented).as_bytes().ct_eq(stored.unwrap_or(NO_CLIENT).as_bytes()).into();
    matches && stored.is_some()
}

/// A new token generation for a client (the `sid` of its tokens).
pub fn new_generation() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Registers a client with a new secret; returns it and the secret (the
/// one time it exists outside the caller's hands).
///
/// # Errors
/// [`crate::store::StoreError::Conflict`] or [`crate::store::StoreError::Confusable`] when a user or
/// client has the name or a lookalike; a database error.
pub async fn register(
    store: &SharedStore,
    client_id: Username,
    scopes: Scopes,
    description: Option<String>,
    now: UnixTime,
) -> StoreResult<(Client, String)> {
    let secret = new_client_secret();
    let client = Client {
        client_id,
        secret_hash: secret_hash(&secret),
        scopes,
        description,
        disabled: false,
        generation: new_generation(),
        created_at: now,
    };
    store.insert_client(&client, now).await?;
    Ok((client, secret))
}

/// Gives a client a new secret (the old one stops working), and when
/// `revoke`, a new token generation (every token issued so far stops
/// working). `None` when there is no such client.
///
/// # Errors
/// A database error.
pub async fn rotate(
    store: &SharedStore,
    key: &UserKey,
    revoke: bool,
    now: UnixTime,
) -> StoreResult<Option<(Client, String)>> {
    let secret = new_client_secret();
    let patch = ClientPatch {
        secret_hash: Some(secret_hash(&secret)),
        generation: revoke.then(new_generation),
        ..ClientPatch::default()
    };
    Ok(store.update_client(key, &patch, now).await?.map(|c| (c, secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_carry_256_bits_and_only_their_hash_matches() {
        let secret = new_client_secret();
        assert_eq!(secret.len(), 43);
        let stored = secret_hash(&secret);
        assert!(secret_matches(&secret, Some(&stored)));
        assert!(!secret_matches(&new_client_secret(), Some(&stored)));
        assert!(!secret_matches(&secret, None));
        assert!(!secret_matches("", Some(&stored)));
        let pat = new_personal_token();
        assert!(pat.starts_with(PAT_PREFIX) && pat.len() == PAT_PREFIX.len() + 43);
    }
}
