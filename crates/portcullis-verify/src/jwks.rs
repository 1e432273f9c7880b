//! Keys from a JWKS URL (`/.well-known/jwks.json`), for resource servers that
//! verify without sharing a secret.
//!
//! The set is cached. A token with an unknown `kid` (the server rotated)
//! triggers one refetch, at most once per `refetch_interval`, so a flood of
//! garbage `kid`s cannot make us hammer the server. A background task
//! refreshes the set every `refresh_interval`. When a fetch fails, the keys
//! already cached keep working.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::keys::{KeySet, VerifyKey};

/// Why a key set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The HTTP request failed or did not answer 200.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// The JWKS URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The body is not a JWK Set.
    #[error("{url} is not a JWK Set: {reason}")]
    Malformed {
        /// The JWKS URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where keys come from, and when they may be fetched again.
pub(crate) struct JwksSource {
    url: String,
    client: reqwest::Client,
    pub(crate) refetch_interval: Duration,
    pub(crate) refresh_interval: Duration,
    /// Held while fetching, so concurrent unknown `kid`s cause one fetch.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

impl JwksSource {
    pub(crate) fn new(url: String) -> Self {
        JwksSource {
            url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client with default TLS settings builds"),
            refetch_interval: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(300),
            last_attempt: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times the key set was requested.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches now, whatever the rate limit.
    pub(crate) async fn fetch(&self) -> Result<KeySet, JwksError> {
        let mut last = self.last_attempt.lock().await;
        *last = Some(Instant::now());
        self.get().await
    }

    /// Fetches unless another fetch happened within `refetch_interval`;
    /// `None` when rate-limited (or a concurrent caller just fetched).
    pub(crate) async fn refetch(&self) -> Option<Result<KeySet, JwksError>> {
        let mut last = self.last_attempt.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.refetch_interval) {
            return None;
        }
        *last = Some(Instant::now());
        Some(self.get().await)
    }

    async fn get(&self) -> Result<KeySet, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fail = |reason: String| JwksError::Fetch { url: self.url.clone(), reason };
        let response = self.client.get(&self.url).send().await.map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
        let json: Value = serde_json::from_slice(&body)
            .map_err(|e| JwksError::Malformed { url: self.url.clone(), reason: e.to_string() })?;
        key_set_from_jwks(&json).map_err(|reason| JwksError::Malformed { url: self.url.clone(), reason })
    }
}

/// The signing keys of a JWK Set. Symmetric (`oct`) keys are never taken
/// from a URL; keys for other uses, or of unsupported types, are skipped.
///
/// # Errors
/// A body that is not `{"keys": [...]}`.
pub fn key_set_from_jwks(jwks: &Value) -> Result<KeySet, String> {
    let keys = jwks.get("keys").and_then(Value::as_array).ok_or("no \"keys\" array")?;
    let mut set = Vec::new();
    for jwk in keys {
        if jwk.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
            continue;
        }
        let Some(kid) = jwk.get("kid").and_then(Value::as_str) else { continue };
        if let Some((algorithm, key)) = decoding_key(jwk) {
            set.push(VerifyKey::new(kid, algorithm, key));
        }
    }
    Ok(KeySet::new(set))
}

/// The algorithm and key of one JWK: the `alg` must fit the key type, and a
/// key without `alg` gets the one its type allows.
fn decoding_key(jwk: &Value) -> Option<(Algorithm, DecodingKey)> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let (algorithm, key) = match (text("kty")?, text("crv")) {
        ("OKP", Some("Ed25519")) => (Algorithm::EdDSA, DecodingKey::from_ed_components(text("x")?).ok()?),
        ("EC", Some("P-256")) => (Algorithm::ES256, DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?),
        ("RSA", _) => {
            // Refuse weak RSA keys (under 2048 bits).
            let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text("n")?).ok()?;
            if n.len() < 256 {
                return None;
            }
            (Algorithm::RS256, DecodingKey::from_rsa_components(text("n")?, text("e")?).ok()?)
        }
        _ => return None,
    };
    match text("alg") {
        None => Some((algorithm, key)),
        Some(alg) if alg.parse::<Algorithm>().ok() == Some(algorithm) => Some((algorithm, key)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn symmetric_and_foreign_keys_are_never_taken_from_a_jwks() {
        let jwks = json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "e", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "wrong-alg", "alg": "HS256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "good", "alg": "EdDSA", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let set = key_set_from_jwks(&jwks).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.contains("good"));
    }

    #[test]
    fn a_body_without_keys_is_malformed() {
        assert!(key_set_from_jwks(&json!({"nope": []})).is_err());
    }
}
