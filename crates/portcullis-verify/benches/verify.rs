//! How many access tokens per second one core verifies: HS256 (shared
//! secret), EdDSA and ES256 (public keys); each from scratch (no verified-
//! token cache) and as a token presented again (remembered). Signature, header and claims checks;
//! no I/O. Results: `bench/RESULTS.md`.

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use portcullis_verify::{KeySet, Verifier, VerifyKey};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::json;

const NOW: i64 = 1_800_000_000;

fn claims() -> serde_json::Value {
    json!({
        "iss": "http://127.0.0.1:8000", "sub": "johndoe", "iat": NOW, "nbf": NOW, "exp": NOW + 900,
        "jti": "0123456789abcdef0123456789abcdef", "scope": "items me", "sid": "fedcba9876543210",
    })
}

fn hs256() -> (Verifier, String) {
    let secret = b"09f26e402586e2faa8da4c98a35f1b20d6b033c6097befa8be3486a829587fe2";
    let key = VerifyKey::shared_secret(secret);
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid().to_owned());
    let token = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(secret)).unwrap();
    let verifier = Verifier::builder(KeySet::new([key])).issuer("http://127.0.0.1:8000").verified_cache(0).build();
    (verifier, token)
}

fn eddsa() -> (Verifier, String) {
    let rng = ring::rand::SystemRandom::new();
    let pair = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "eddsa-bench"});
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims().to_string()));
    let token = format!("{input}.{}", B64.encode(pair.sign(input.as_bytes())));
    let public = DecodingKey::from_ed_components(&B64.encode(pair.public_key().as_ref())).unwrap();
    let key = VerifyKey::new("eddsa-bench", Algorithm::EdDSA, public);
    (Verifier::builder(KeySet::new([key])).issuer("http://127.0.0.1:8000").verified_cache(0).build(), token)
}

fn es256() -> (Verifier, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "es256-bench"});
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims().to_string()));
    let token = format!("{input}.{}", B64.encode(pair.sign(&rng, input.as_bytes()).unwrap()));
    // The public key is the uncompressed point 0x04 || x || y.
    let point = pair.public_key().as_ref();
    let public = DecodingKey::from_ec_components(&B64.encode(&point[1..33]), &B64.encode(&point[33..])).unwrap();
    let key = VerifyKey::new("es256-bench", Algorithm::ES256, public);
    (Verifier::builder(KeySet::new([key])).issuer("http://127.0.0.1:8000").verified_cache(0).build(), token)
}

fn verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    for (name, (verifier, token)) in [("HS256", hs256()), ("EdDSA", eddsa()), ("ES256", es256())] {
        assert!(verifier.verify(&token, NOW + 1).is_ok(), "{name} token verifies");
        group.bench_function(name, |b| b.iter(|| verifier.verify(black_box(&token), NOW + 1).unwrap()));
        let remembered = Verifier::builder(verifier.keys().as_ref().clone()).issuer("http://127.0.0.1:8000").build();
        group.bench_function(format!("{name} remembered"), |b| {
            b.iter(|| remembered.verify(black_box(&token), NOW + 1).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
