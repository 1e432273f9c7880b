//! One signing key: generating it, sealing its private part at rest, and
//! signing tokens with it. The set of keys in use is [`super::keyring`]'s.
//!
//! HS256 signs with jsonwebtoken. The asymmetric algorithms sign with ring,
//! which does RSA in constant time: the `rsa` crate that jsonwebtoken would
//! use carries RUSTSEC-2023-0071 (Marvin timing side channel), so it is used
//! here only to *generate* RSA keys, never to sign. Verification, which
//! handles no private key, goes through jsonwebtoken in `portcullis-verify`.
//!
//! Private keys are stored sealed with ChaCha20-Poly1305 under a key derived
//! (HKDF-SHA256) from the configured secret, with the `kid` as associated
//! data: the database file alone gives away no signing key.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use portcullis_verify::VerifyKey;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde::Serialize;
use serde_json::{Value, json};

/// The algorithms a signing key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// HMAC-SHA256 with a shared secret (the tutorials' choice).
    #[value(name = "HS256")]
    Hs256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
    /// ECDSA P-256 with SHA-256.
    #[value(name = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    #[value(name = "RS256")]
    Rs256,
}

impl KeyAlgorithm {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Hs256 => "HS256",
            KeyAlgorithm::EdDsa => "EdDSA",
            KeyAlgorithm::Es256 => "ES256",
            KeyAlgorithm::Rs256 => "RS256",
        }
    }

    /// Parses a JOSE name.
    pub fn parse(name: &str) -> Option<Self> {
        [KeyAlgorithm::Hs256, KeyAlgorithm::EdDsa, KeyAlgorithm::Es256, KeyAlgorithm::Rs256]
            .into_iter()
            .find(|a| a.as_str() == name)
    }

    /// The algorithm as jsonwebtoken names it.
    pub fn jose(self) -> Algorithm {
        match self {
            KeyAlgorithm::Hs256 => Algorithm::HS256,
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
            KeyAlgorithm::Es256 => Algorithm::ES256,
            KeyAlgorithm::Rs256 => Algorithm::RS256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why key material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Sealed with another secret, or tampered with.
    #[error("signing key {0} cannot be unsealed: it was sealed with a different secret key, or altered")]
    Unseal(String),
    /// Stored material that does not parse.
    #[error("signing key {0} is malformed")]
    Malformed(String),
    /// The system random source failed.
    #[error("the system random number generator failed")]
    Random,
}

/// A new key as it goes to storage.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub algorithm: KeyAlgorithm,
    /// Sealed private key, or `None` for the HS256 key that *is* the secret.
    pub sealed_private: Option<Vec<u8>>,
    /// Public JWK (asymmetric keys only).
    pub public_jwk: Option<Value>,
}

/// Seals and unseals private keys with a key derived from the secret.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl Sealer {
    /// Derives the sealing key from a secret (see [`super::secret_key::Secrets::sealer`]).
    pub fn new(secret: &str) -> Self {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"portcullis");
        let prk = salt.extract(secret.as_bytes());
        let okm =
            prk.expand(&[b"signing-key sealing v1"], &CHACHA20_POLY1305).expect("HKDF output of the AEAD's key length");
        Sealer { key: LessSafeKey::new(UnboundKey::from(okm)), rng: SystemRandom::new() }
    }

    fn seal(&self, kid: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; 12];
        self.rng.fill(&mut nonce).map_err(|_| KeyError::Random)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| KeyError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < 12 + 16 {
            return Err(KeyError::Malformed(kid.to_owned()));
        }
        let (nonce, body) = sealed.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Malformed(kid.to_owned()))?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| KeyError::Unseal(kid.to_owned()))?;
        Ok(plain.to_vec())
    }
}

/// The `kid` of the HS256 key that is the configured secret: a one-way hash
/// of it, so every instance sharing the secret agrees on it.
pub fn secret_kid(secret: &str) -> String {
    portcullis_verify::shared_secret_kid(secret.as_bytes())
}

fn random_kid(algorithm: KeyAlgorithm, rng: &SystemRandom) -> Result<String, KeyError> {
    let mut bytes = [0u8; 8];
    rng.fill(&mut bytes).map_err(|_| KeyError::Random)?;
    Ok(format!("{}-{}", algorithm.as_str().to_ascii_lowercase(), hex::encode(bytes)))
}

/// Makes a new key. HS256 here means a random 256-bit HMAC key, not the
/// secret (that one is made by [`NewKey::from_secret`]).
///
/// # Errors
/// Only if the system random source fails.
pub fn generate(algorithm: KeyAlgorithm, sealer: &Sealer) -> Result<NewKey, KeyError> {
    let rng = SystemRandom::new();
    let kid = random_kid(algorithm, &rng)?;
    let private = match algorithm {
        KeyAlgorithm::Hs256 => {
            let mut key = [0u8; 32];
            rng.fill(&mut key).map_err(|_| KeyError::Random)?;
            key.to_vec()
        }
        KeyAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?.as_ref().to_vec(),
        KeyAlgorithm::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Random)?
            .as_ref()
            .to_vec(),
        KeyAlgorithm::Rs256 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand_core06::OsRng, 2048).map_err(|_| KeyError::Random)?;
            key.to_pkcs8_der().map_err(|_| KeyError::Random)?.as_bytes().to_vec()
        }
    };
    let public_jwk = parse_private(&kid, algorithm, &private)?.1;
    let sealed_private = Some(sealer.seal(&kid, &private)?);
    Ok(NewKey { kid, algorithm, sealed_private, public_jwk })
}

impl NewKey {
    /// The HS256 key that is the configured secret itself (never stored).
    pub fn from_secret(secret: &str) -> Self {
        NewKey { kid: secret_kid(secret), algorithm: KeyAlgorithm::Hs256, sealed_private: None, public_jwk: None }
    }
}

/// Parses a private key: its signer, its public JWK (asymmetric keys) and
/// the matching verification key.
fn parse_private(
    kid: &str,
    algorithm: KeyAlgorithm,
    private: &[u8],
) -> Result<(Signer, Option<Value>, DecodingKey), KeyError> {
    let bad = || KeyError::Malformed(kid.to_owned());
    let (signer, jwk, decoding) = match algorithm {
        KeyAlgorithm::Hs256 => {
            return Ok((Signer::Hmac(EncodingKey::from_secret(private)), None, DecodingKey::from_secret(private)));
        }
        KeyAlgorithm::EdDsa => {
            let pair = Ed25519KeyPair::from_pkcs8(private).map_err(|_| bad())?;
            let x = B64.encode(pair.public_key().as_ref());
            let decoding = DecodingKey::from_ed_components(&x).map_err(|_| bad())?;
            (Signer::Ed25519(pair), json!({"kty": "OKP", "crv": "Ed25519", "x": x}), decoding)
        }
        KeyAlgorithm::Es256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, private, &SystemRandom::new())
                .map_err(|_| bad())?;
            let point = pair.public_key().as_ref();
            let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..65]));
            let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|_| bad())?;
            (Signer::Ecdsa(pair), json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}), decoding)
        }
        KeyAlgorithm::Rs256 => {
            let pair = RsaKeyPair::from_pkcs8(private).map_err(|_| bad())?;
            let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
            let (n, e) = (B64.encode(&parts.n), B64.encode(&parts.e));
            let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|_| bad())?;
            (Signer::Rsa(pair), json!({"kty": "RSA", "n": n, "e": e}), decoding)
        }
    };
    let mut jwk = jwk;
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(algorithm.as_str());
    jwk["use"] = json!("sig");
    Ok((signer, Some(jwk), decoding))
}

enum Signer {
    Hmac(EncodingKey),
    Ed25519(Ed25519KeyPair),
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A key that can sign tokens.
pub struct SigningKey {
    kid: String,
    algorithm: KeyAlgorithm,
    signer: Signer,
    verify: VerifyKey,
    public_jwk: Option<Value>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An HS256 key over the secret's UTF-8 bytes as written (the tutorials'
    /// hex string is not hex-decoded).
    pub fn from_secret(secret: &str) -> Self {
        let kid = secret_kid(secret);
        SigningKey {
            verify: VerifyKey::hs256(kid.clone(), secret.as_bytes()),
            signer: Signer::Hmac(EncodingKey::from_secret(secret.as_bytes())),
            kid,
            algorithm: KeyAlgorithm::Hs256,
            public_jwk: None,
        }
    }

    /// Unseals a stored key: `sealed` is `None` for the secret's own HS256 key.
    ///
    /// # Errors
    /// [`KeyError`] when the key cannot be unsealed or parsed.
    pub fn unseal(
        kid: &str,
        algorithm: KeyAlgorithm,
        sealed: Option<&[u8]>,
        public_jwk: Option<Value>,
        secret: &str,
        sealer: &Sealer,
    ) -> Result<Self, KeyError> {
        let Some(sealed) = sealed else {
            if algorithm != KeyAlgorithm::Hs256 || kid != secret_kid(secret) {
                return Err(KeyError::Unseal(kid.to_owned()));
            }
            return Ok(SigningKey::from_secret(secret));
        };
        let private = sealer.open(kid, sealed)?;
        let (signer, derived_jwk, decoding) = parse_private(kid, algorithm, &private)?;
        // The public key is derived from the sealed private key, never read
        // from the database: a tampered `public_jwk` column must not become
        // a key we trust or publish.
        if public_jwk.is_some() && public_jwk != derived_jwk {
            return Err(KeyError::Malformed(kid.to_owned()));
        }
        let public_jwk = derived_jwk;
        Ok(SigningKey {
            kid: kid.to_owned(),
            algorithm,
            signer,
            verify: VerifyKey::new(kid, algorithm.jose(), decoding),
            public_jwk,
        })
    }

    /// The key id, sent in the token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The matching verification key.
    pub fn verify_key(&self) -> VerifyKey {
        self.verify.clone()
    }

    /// The public JWK, for asymmetric keys.
    pub fn public_jwk(&self) -> Option<&Value> {
        self.public_jwk.as_ref()
    }

    /// Signs claims as a JWT with header `typ: at+jwt` and this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let mut header = Header::new(self.algorithm.jose());
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(self.kid.clone());
        if let Signer::Hmac(key) = &self.signer {
            return jsonwebtoken::encode(&header, claims, key).expect("HMAC signing cannot fail");
        }
        let header = serde_json::to_vec(&header).expect("a header serializes");
        let claims = serde_json::to_vec(claims).expect("claims serialize");
        let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let rng = SystemRandom::new();
        let signature = match &self.signer {
            Signer::Hmac(_) => unreachable!("handled above"),
            Signer::Ed25519(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
            Signer::Ecdsa(pair) => pair.sign(&rng, input.as_bytes()).expect("ECDSA signing").as_ref().to_vec(),
            Signer::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig).expect("RSA signing");
                sig
            }
        };
        format!("{input}.{}", B64.encode(signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_verify::{KeySet, Verifier};

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn claims() -> Value {
        json!({"iss": "i", "sub": "alice", "exp": 2000, "iat": 1000, "nbf": 1000, "jti": "j", "scope": ""})
    }

    #[test]
    fn every_algorithm_signs_tokens_its_verify_key_accepts() {
        let sealer = Sealer::new(SECRET);
        for alg in [KeyAlgorithm::Hs256, KeyAlgorithm::EdDsa, KeyAlgorithm::Es256, KeyAlgorithm::Rs256] {
            let new = generate(alg, &sealer).unwrap();
            let key = SigningKey::unseal(
                &new.kid,
                alg,
                new.sealed_private.as_deref(),
                new.public_jwk.clone(),
                SECRET,
                &sealer,
            )
            .unwrap();
            let verifier = Verifier::builder(KeySet::new([key.verify_key()])).build();
            let token = key.sign(&claims());
            assert_eq!(verifier.verify(&token, 1500).unwrap().sub, "alice", "{alg}");
            assert_eq!(new.public_jwk.is_some(), alg != KeyAlgorithm::Hs256);
        }
    }

    #[test]
    fn a_sealed_key_does_not_open_with_another_secret_or_kid() {
        let new = generate(KeyAlgorithm::EdDsa, &Sealer::new(SECRET)).unwrap();
        let other = Sealer::new("another-secret-0123456789abcdef0123456789");
        let err =
            SigningKey::unseal(&new.kid, KeyAlgorithm::EdDsa, new.sealed_private.as_deref(), None, SECRET, &other);
        assert!(matches!(err, Err(KeyError::Unseal(_))));
        let sealer = Sealer::new(SECRET);
        assert!(sealer.open("another-kid", new.sealed_private.as_deref().unwrap()).is_err());
    }

    #[test]
    fn the_sealed_blob_does_not_contain_the_private_key() {
        let sealer = Sealer::new(SECRET);
        let sealed = sealer.seal("k", b"private key bytes here").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"private"));
    }

    #[test]
    fn a_resource_server_with_only_the_secret_verifies_server_tokens() {
        let server = SigningKey::from_secret(SECRET);
        let token = server.sign(&claims());
        let resource =
            Verifier::builder(KeySet::new([portcullis_verify::VerifyKey::shared_secret(SECRET.as_bytes())])).build();
        assert_eq!(resource.verify(&token, 1500).unwrap().sub, "alice");
    }

    #[test]
    fn a_tampered_public_key_column_is_refused() {
        let sealer = Sealer::new(SECRET);
        let new = generate(KeyAlgorithm::Rs256, &sealer).unwrap();
        let mut forged = new.public_jwk.clone().unwrap();
        forged["n"] = json!("AQAB");
        let loaded = SigningKey::unseal(
            &new.kid,
            KeyAlgorithm::Rs256,
            new.sealed_private.as_deref(),
            Some(forged),
            SECRET,
            &sealer,
        );
        assert!(matches!(loaded, Err(KeyError::Malformed(_))));
    }

    #[test]
    fn the_secret_hs256_key_has_the_same_kid_everywhere() {
        assert_eq!(SigningKey::from_secret(SECRET).kid(), secret_kid(SECRET));
        assert_ne!(secret_kid(SECRET), secret_kid("another-secret-0123456789abcdef0123456789"));
    }
}
