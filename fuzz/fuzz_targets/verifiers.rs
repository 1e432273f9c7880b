//! The verifiers both token targets run, and the keys the seed tokens in
//! `corpus/` were made with (`fuzz/make_seeds.py` signs with the private
//! halves: RFC 8037 A.1's Ed25519 key and a fixed P-256 test key).

#![allow(dead_code)] // each target uses part of it

use portcullis_verify::{Algorithm, Claims, DecodingKey, KeySet, TokenError, Verifier, VerifyKey};

/// The shared secret of the HS256 verifiers (and of the signed target).
pub const SECRET: &[u8] = b"portcullis fuzz secret: 32 bytes or more, not a real one";
pub const ISSUER: &str = "http://127.0.0.1:8000";
/// The time seed tokens are valid at.
pub const NOW: i64 = 1_800_000_000;
/// Times that stress the lifetime arithmetic.
pub const EDGE_TIMES: [i64; 3] = [i64::MIN, 0, i64::MAX];
pub const MAX_LIFETIME: i64 = 3600;

const ED25519_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const P256_X: &str = "d5Bj03j1XTGxVdwfsWZmezDSEP8LMxZGEPxhLOutnyk";
const P256_Y: &str = "CM2yKNwvmsoJO8my0tTRRjNm3sJ_c0j4gIEZ97OYyJs";

pub struct Verifiers {
    /// A server's secret, as a resource server holds it (issuer checked).
    pub hs256: Verifier,
    /// Audience, leeway and lifetime set: the other branches of `validate`.
    pub hs256_audience: Verifier,
    pub eddsa: Verifier,
    pub es256: Verifier,
    /// All three keys: a `kid` picks one, no `kid` picks none.
    pub all: Verifier,
}

fn eddsa_key() -> VerifyKey {
    VerifyKey::new("ed-1", Algorithm::EdDSA, DecodingKey::from_ed_components(ED25519_X).expect("Ed25519 x"))
}

fn es256_key() -> VerifyKey {
    VerifyKey::new("es-1", Algorithm::ES256, DecodingKey::from_ec_components(P256_X, P256_Y).expect("P-256 x, y"))
}

impl Verifiers {
    pub fn new() -> Self {
        let shared = || VerifyKey::shared_secret(SECRET);
        let build = |keys: Vec<VerifyKey>| Verifier::builder(KeySet::new(keys)).issuer(ISSUER).build();
        Verifiers {
            hs256: build(vec![shared()]),
            hs256_audience: Verifier::builder(KeySet::new([shared()]))
                .issuer(ISSUER)
                .audience("api")
                .audience("other-api")
                .leeway(0)
                .max_lifetime(MAX_LIFETIME)
                .build(),
            eddsa: build(vec![eddsa_key()]),
            es256: build(vec![es256_key()]),
            all: build(vec![shared(), eddsa_key(), es256_key()]),
        }
    }

    pub fn each(&self) -> [&Verifier; 5] {
        [&self.hs256, &self.hs256_audience, &self.eddsa, &self.es256, &self.all]
    }
}

/// The kid a portcullis server gives its shared-secret key.
pub fn shared_kid() -> String {
    portcullis_verify::shared_secret_kid(SECRET)
}

/// Verifies, and checks what an accepted token must be; the error's
/// RFC 6750 rendering must not panic either.
pub fn check(verifier: &Verifier, token: &str, now: i64) -> Option<Claims> {
    match verifier.verify(token, now) {
        Ok(claims) => {
            assert_eq!(claims.iss, ISSUER, "an accepted token names the issuer");
            assert!(now < claims.exp.saturating_add(5), "an accepted token has not expired");
            assert!(claims.exp.saturating_sub(claims.iat) <= 24 * 3600, "an accepted token lives at most a day");
            let _ = claims.require_scopes(&["me", "admin"]);
            let _ = claims.extra_as::<serde_json::Value>();
            Some(claims)
        }
        Err(e) => {
            render(&e);
            None
        }
    }
}

pub fn render(e: &TokenError) {
    let _ = (e.status_code(), e.www_authenticate(), e.detail());
    let _ = axum::response::IntoResponse::into_response(e.clone());
}
