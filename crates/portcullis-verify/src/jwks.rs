//! Keys from a JWKS URL (`/.well-known/jwks.json`), for resource servers that
//! verify without sharing a secret.
//!
//! The set is cached. A token with an unknown `kid` (the server rotated)
//! triggers one refetch, at most once per `refetch_interval`, so a flood of
//! garbage `kid`s cannot make us hammer the server. A background task
//! refreshes the set every `refresh_interval`. When a fetch fails, the keys
//! already cached keep working.
//!
//! The URL must be `https`, unless it is on loopback (a key set fetched in
//! the clear from another host could be swapped on the way). Redirects are
//! not followed, the body is capped at [`MAX_JWKS_BYTES`], and RSA keys
//! must be 2048 to 4096 bits with a small exponent: a key set is what every
//! token is checked against, so it must not be a way in or a way to burn CPU.

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

/// The largest JWKS body read: a few dozen keys fit many times over.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// Why `url` may not be fetched: not `https` and not on loopback.
fn refusal(url: &str) -> Option<String> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Some("not a URL".into());
    };
    let host = parsed.host_str().unwrap_or_default();
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
    let loopback = host.eq_ignore_ascii_case("localhost") || ip.is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => None,
        "http" if loopback => None,
        "http" => Some("a JWKS URL must be https unless it is on loopback".into()),
        other => Some(format!("unsupported scheme {other:?}: use https")),
    }
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
                // A redirect could lead anywhere, plain http included.
                .redirect(reqwest::redirect::Policy::none())
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
        if let Some(reason) = refusal(&self.url) {
            return Err(fail(reason));
        }
        let mut response = self.client.get(&self.url).send().await.map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {} (redirects are not followed)", response.status())));
        }
        let too_big = || fail(format!("the key set is larger than {MAX_JWKS_BYTES} bytes"));
        if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
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
            // 2048 to 4096 bits: weaker keys can be factored, larger ones
            // (and large exponents) make every verification slow.
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let n = b64.decode(text("n")?).ok()?;
            let e = b64.decode(text("e")?).ok()?;
            let n = n.strip_prefix(&[0]).unwrap_or(&n);
            if !(256..=512).contains(&n.len()) || e.is_empty() || e.len() > 4 {
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
    fn only_https_or_loopback_urls_are_fetched() {
        for ok in [
            "https://auth.example/.well-known/jwks.json",
            "http://127.0.0.1:8000/.well-known/jwks.json",
            "http://[::1]:8000/jwks",
            "http://localhost/jwks",
        ] {
            assert_eq!(refusal(ok), None, "{ok}");
        }
        for bad in
            ["http://auth.example/jwks", "http://10.0.0.1/jwks", "ftp://127.0.0.1/jwks", "file:///etc/jwks", "nope"]
        {
            assert!(refusal(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn rsa_keys_outside_2048_to_4096_bits_or_with_a_large_exponent_are_skipped() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let modulus = |bytes: usize| {
            b64.encode(std::iter::once(0xc5u8).chain(std::iter::repeat_n(0x3b, bytes - 1)).collect::<Vec<_>>())
        };
        let jwk = |kid: &str, n: String, e: &str| json!({"kty": "RSA", "kid": kid, "n": n, "e": e});
        let jwks = json!({"keys": [
            jwk("1024", modulus(128), "AQAB"),
            jwk("2048", modulus(256), "AQAB"),
            jwk("4096", modulus(512), "AQAB"),
            jwk("8192", modulus(1024), "AQAB"),
            jwk("big-e", modulus(256), &b64.encode([1u8; 64])),
        ]});
        let set = key_set_from_jwks(&jwks).unwrap();
        assert!(set.contains("2048") && set.contains("4096"));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn a_body_without_keys_is_malformed() {
        assert!(key_set_from_jwks(&json!({"nope": []})).is_err());
    }
}
