//! Tokens besides their signing: the settings access tokens carry (RFC
//! 9068 JWTs whose `sub` is the username, signed by [`super::keyring`]), and
//! the opaque refresh tokens beside them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use portcullis_verify::Claims;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::clock::UnixTime;
use crate::domain::Scopes;

/// A freshly issued access token (no `Debug`: it is a credential).
#[derive(Clone)]
pub struct AccessToken {
    /// The compact JWT.
    pub jwt: String,
    /// Its unique id.
    pub jti: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// What one access token is issued for, beyond the server's settings.
#[derive(Debug, Clone)]
pub struct Issue<'a> {
    /// `sub`: a username, or a client's id for a client's own token.
    pub subject: &'a str,
    /// The granted scopes.
    pub scope: &'a Scopes,
    /// `sid`: the session (a login, a personal access token), or the
    /// client's token generation.
    pub sid: Option<&'a str>,
    /// `client_id` (RFC 9068): the client the token was issued to.
    pub client_id: Option<&'a str>,
    /// `aud` instead of the configured audiences (token exchange).
    pub audience: Option<portcullis_verify::Audience>,
    /// Expires no later than this (the token or PAT it was exchanged from).
    pub not_after: Option<UnixTime>,
    /// Made by token exchange: carries the `exchanged` claim, and may not
    /// make personal access tokens nor end the session it came from.
    pub exchanged: bool,
}

/// What every access token of this server carries: plain settings.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The `iss` value.
    pub issuer: String,
    /// The `aud` values (empty: tokens carry no `aud`).
    pub audience: Vec<String>,
    /// Access-token lifetime in seconds.
    pub access_ttl: i64,
}

/// A new opaque refresh token: 256 random bits, base64url.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("the system random number generator works");
    B64.encode(bytes)
}

/// How an opaque secret is stored (a refresh token, a client secret, a
/// personal access token): SHA-256, hex. Each carries 256 random bits, so a
/// fast hash is enough to make a stolen table useless.
pub fn secret_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The session id of an access token's claims.
pub fn session_of(claims: &Claims) -> Option<&str> {
    claims.extra.get("sid").and_then(|v| v.as_str())
}

/// The `client_id` of an access token's claims.
pub fn client_of(claims: &Claims) -> Option<&str> {
    claims.extra.get("client_id").and_then(|v| v.as_str())
}

/// Whether the token was made by token exchange (a PAT's, or a narrowed
/// one): a credential handed on, which must not mint a lasting one.
pub fn is_exchanged(claims: &Claims) -> bool {
    claims.extra.get("exchanged").and_then(serde_json::Value::as_bool) == Some(true)
}

/// Whether the claims are a client's own token (`client_credentials`):
/// `sub` is the client's id. No user can have that name (one namespace),
/// so such a token never names a user.
pub fn is_client_token(claims: &Claims) -> bool {
    client_of(claims) == Some(claims.sub.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_carry_256_bits_and_differ() {
        let (a, b) = (new_refresh_token(), new_refresh_token());
        assert_eq!(B64.decode(&a).unwrap().len(), 32);
        assert_ne!(a, b);
        assert_ne!(secret_hash(&a), a);
    }
}
