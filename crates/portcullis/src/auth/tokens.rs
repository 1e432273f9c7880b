//! Issuing access tokens: RFC 9068 JWTs (`typ: at+jwt`) whose `sub` is the
//! username, so resource servers written from the FastAPI tutorial accept them.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_verify::{Audience, Claims, VerifyKey};
use sha2::{Digest, Sha256};

use crate::domain::Scopes;

/// The key new tokens are signed with.
pub struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
    verify: VerifyKey,
}

impl SigningKey {
    /// An HS256 key over the secret's UTF-8 bytes as written (the tutorials'
    /// hex string is not hex-decoded). Its `kid` is derived from the secret
    /// by a one-way hash, so all instances sharing the secret agree on it.
    pub fn hs256(secret: &str) -> Self {
        let digest = Sha256::digest(format!("portcullis kid\0{secret}").as_bytes());
        let kid = format!("hs256-{}", &hex::encode(digest)[..16]);
        SigningKey {
            verify: VerifyKey::hs256(kid.clone(), secret.as_bytes()),
            kid,
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// The key id, sent in the token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The matching verification key.
    pub fn verify_key(&self) -> VerifyKey {
        self.verify.clone()
    }
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The compact JWT.
    pub jwt: String,
    /// Its unique id.
    pub jti: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Issues access tokens for one issuer.
#[derive(Clone)]
pub struct TokenIssuer {
    inner: Arc<Inner>,
}

struct Inner {
    key: SigningKey,
    issuer: String,
    audience: Vec<String>,
    ttl_secs: u64,
}

impl TokenIssuer {
    /// An issuer signing with `key`; `audience` may be empty (then no `aud`).
    pub fn new(key: SigningKey, issuer: String, audience: Vec<String>, ttl_secs: u64) -> Self {
        TokenIssuer {
            inner: Arc::new(Inner {
                key,
                issuer,
                audience,
                ttl_secs,
            }),
        }
    }

    /// The `iss` value.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The `aud` values put in tokens (empty: none).
    pub fn audience(&self) -> &[String] {
        &self.inner.audience
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.inner.key
    }

    /// Issues a token for `username` with `scope` at `now` (Unix seconds).
    pub fn issue(&self, username: &str, scope: &Scopes, now: u64) -> AccessToken {
        let inner = &self.inner;
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let aud = match inner.audience.as_slice() {
            [] => None,
            [one] => Some(Audience::One(one.clone())),
            many => Some(Audience::Many(many.to_vec())),
        };
        let claims = Claims {
            iss: inner.issuer.clone(),
            sub: username.to_owned(),
            aud,
            exp: now + inner.ttl_secs,
            iat: now,
            nbf: now,
            jti: jti.clone(),
            scope: scope.to_string(),
            extra: Default::default(),
        };
        let mut header = Header::new(inner.key.algorithm);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(inner.key.kid.clone());
        let jwt = jsonwebtoken::encode(&header, &claims, &inner.key.key)
            .expect("signing with a key of its own algorithm cannot fail");
        AccessToken {
            jwt,
            jti,
            expires_in: inner.ttl_secs,
        }
    }
}
