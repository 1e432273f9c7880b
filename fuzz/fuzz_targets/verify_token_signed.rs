//! Tokens whose signature is right: arbitrary header and claims JSON,
//! base64url-encoded and HMAC-signed with the verifiers' shared secret, so
//! every input gets past the signature to the header and claims checks.
//!
//! Input: a flags byte, then, when `flags & 1`, a header JSON line ending in
//! `\n` (otherwise the header a portcullis server writes), then the claims
//! JSON. An accepted token must survive a round trip: its claims,
//! serialized and signed again, verify to the same claims.

#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use libfuzzer_sys::fuzz_target;
use portcullis_verify::Claims;

#[path = "verifiers.rs"]
mod verifiers;
use verifiers::{EDGE_TIMES, NOW, SECRET, Verifiers, check, shared_kid};

static VERIFIERS: LazyLock<Verifiers> = LazyLock::new(Verifiers::new);
static KEY: LazyLock<ring::hmac::Key> = LazyLock::new(|| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET));
static SERVER_HEADER: LazyLock<String> =
    LazyLock::new(|| format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{}"}}"#, shared_kid()));

fn sign(header: &[u8], claims: &[u8]) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let tag = ring::hmac::sign(&KEY, input.as_bytes());
    format!("{input}.{}", B64.encode(tag.as_ref()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let (header, claims) = if flags & 1 == 1 {
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        }
    } else {
        (SERVER_HEADER.as_bytes(), rest)
    };
    let token = sign(header, claims);
    let mut accepted = None;
    for verifier in VERIFIERS.each() {
        if let Some(claims) = check(verifier, &token, NOW) {
            accepted = Some(claims);
        }
    }
    for now in EDGE_TIMES {
        check(&VERIFIERS.hs256, &token, now);
    }
    if let Some(claims) = accepted {
        let again = serde_json::to_vec(&claims).expect("accepted claims serialize");
        let token = sign(SERVER_HEADER.as_bytes(), &again);
        let back = VERIFIERS.hs256.verify(&token, NOW).expect("re-signed accepted claims verify");
        // The extra claims by name only: serde_json (without its
        // `float_roundtrip` feature) may read a float back 1 ULP off.
        let names = |c: &Claims| {
            let mut c = c.clone();
            c.extra.values_mut().for_each(|v| *v = serde_json::Value::Null);
            c
        };
        assert_eq!(names(&back), names(&claims), "claims survive a round trip");
    }
});
