//! Arbitrary bytes as a bearer token: `Verifier::verify` (header, key
//! choice, signature, claims) with HS256, EdDSA and ES256 keys, and the
//! `Authorization` header parsing before it. Nothing may panic.

#![no_main]

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

#[path = "verifiers.rs"]
mod verifiers;
use verifiers::{EDGE_TIMES, NOW, Verifiers, check};

static VERIFIERS: LazyLock<Verifiers> = LazyLock::new(Verifiers::new);

fn verify_everywhere(token: &str) {
    for verifier in VERIFIERS.each() {
        check(verifier, token, NOW);
    }
    for now in EDGE_TIMES {
        check(&VERIFIERS.hs256, token, now);
    }
}

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(token) => verify_everywhere(token),
        Err(_) => verify_everywhere(&String::from_utf8_lossy(data)),
    }
    // The same bytes as an `Authorization` header value.
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        match portcullis_verify::bearer_token(&headers) {
            Ok(token) => {
                check(&VERIFIERS.hs256, token, NOW);
            }
            Err(e) => verifiers::render(&e),
        }
    }
});
