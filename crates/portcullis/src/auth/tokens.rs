//! Issuing access tokens: RFC 9068 JWTs (`typ: at+jwt`) whose `sub` is the
//! username, so resource servers written from the FastAPI tutorial accept
//! them; and the opaque refresh tokens beside them.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use portcullis_verify::{Audience, Claims};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use super::keys::SigningKey;
use crate::domain::Scopes;

/// A freshly issued access token (no `Debug`: it is a credential).
#[derive(Clone)]
pub struct AccessToken {
    /// The compact JWT.
    pub jwt: String,
    /// Its unique id.
    pub jti: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Issues access tokens for one issuer, with whichever key currently signs.
#[derive(Clone)]
pub struct TokenIssuer {
    inner: Arc<Inner>,
}

struct Inner {
    key: RwLock<Arc<SigningKey>>,
    issuer: String,
    audience: Vec<String>,
    ttl_secs: u64,
}

impl TokenIssuer {
    /// An issuer signing with `key`; `audience` may be empty (then no `aud`).
    pub fn new(key: Arc<SigningKey>, issuer: String, audience: Vec<String>, ttl_secs: u64) -> Self {
        TokenIssuer { inner: Arc::new(Inner { key: RwLock::new(key), issuer, audience, ttl_secs }) }
    }

    /// The `iss` value.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The `aud` values put in tokens (empty: none).
    pub fn audience(&self) -> &[String] {
        &self.inner.audience
    }

    /// Access-token lifetime in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.inner.ttl_secs
    }

    /// The key new tokens are signed with.
    pub fn key(&self) -> Arc<SigningKey> {
        self.inner.key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Switches to a new signing key (after a rotation).
    pub fn set_key(&self, key: Arc<SigningKey>) {
        *self.inner.key.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// Issues a token for `username` with `scope` at `now` (Unix seconds),
    /// tied to session `sid` when there is one.
    pub fn issue(&self, username: &str, scope: &Scopes, sid: Option<&str>, now: u64) -> AccessToken {
        let inner = &self.inner;
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let aud = match inner.audience.as_slice() {
            [] => None,
            [one] => Some(Audience::One(one.clone())),
            many => Some(Audience::Many(many.to_vec())),
        };
        let mut extra = serde_json::Map::new();
        if let Some(sid) = sid {
            extra.insert("sid".into(), sid.into());
        }
        let claims = Claims {
            iss: inner.issuer.clone(),
            sub: username.to_owned(),
            aud,
            exp: now + inner.ttl_secs,
            iat: now,
            nbf: now,
            jti: jti.clone(),
            scope: scope.to_string(),
            extra,
        };
        AccessToken { jwt: self.key().sign(&claims), jti, expires_in: inner.ttl_secs }
    }
}

/// A new opaque refresh token: 256 random bits, base64url.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("the system random number generator works");
    B64.encode(bytes)
}

/// How a refresh token is stored: SHA-256, hex. The token has 256 bits of
/// entropy, so a fast hash is enough to make a stolen table useless.
pub fn refresh_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The session id of an access token's claims.
pub fn session_of(claims: &Claims) -> Option<&str> {
    claims.extra.get("sid").and_then(|v| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_carry_256_bits_and_differ() {
        let (a, b) = (new_refresh_token(), new_refresh_token());
        assert_eq!(B64.decode(&a).unwrap().len(), 32);
        assert_ne!(a, b);
        assert_ne!(refresh_token_hash(&a), a);
    }

    #[test]
    fn an_access_token_names_its_session() {
        let issuer = TokenIssuer::new(
            Arc::new(SigningKey::from_secret("0123456789abcdef0123456789abcdef")),
            "http://i".into(),
            vec![],
            60,
        );
        let token = issuer.issue("alice", &Scopes::default(), Some("s1"), 100);
        let verifier =
            portcullis_verify::Verifier::builder(portcullis_verify::KeySet::new([issuer.key().verify_key()])).build();
        let claims = verifier.verify(&token.jwt, 120).unwrap();
        assert_eq!(session_of(&claims), Some("s1"));
        assert_eq!(claims.jti, token.jti);
    }
}
