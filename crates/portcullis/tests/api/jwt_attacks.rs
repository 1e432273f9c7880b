//! Every known JWT attack, as tables: each row is a forged or broken bearer
//! token that `GET /users/me` and `GET /admin/users` must refuse with `401`,
//! `WWW-Authenticate: Bearer error="invalid_token", …` and
//! `{"detail": "Could not validate credentials", "error": "invalid_token", …}`.
//! Control rows in the same tables (the live token, a complete forgery with
//! the real key) must get `200`, so no table is vacuous. Tokens are built by
//! hand (raw JSON text, base64url, HMAC/Ed25519/ECDSA/RSA via ring), so rows
//! can carry what no JWT library would write: duplicate keys, `alg: nOnE`,
//! non-canonical base64, numbers no integer type holds.
//!
//! A forgery that is not about the key is signed with the key the server
//! really uses and otherwise complete (live `sid`, right `iss`, `typ`,
//! `exp`), so each row is refused for its attack and nothing incidental.
//! Every row's status and `error_description` is printed; a failure names
//! the row.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis::auth::signing::KeyAlgorithm;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, SECRET, TestApp, jwt_part, spawn_app, spawn_with};

const RITA_PASSWORD: &str = "ritas-password-1";

// ---------------------------------------------------------------------------
// Building tokens by hand.

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).unwrap()
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, message).as_ref().to_vec()
}

/// `b64(header).b64(payload).b64(sign(signing input))`, from JSON *text*.
fn jws(header: &str, payload: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(signature))
}

/// Signs with HMAC-SHA256 under `key`.
fn hs(key: &[u8]) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
    move |message| hmac(key, message)
}

/// `base` with the members of `changes` set, or removed where `null`.
fn edit(base: &Value, changes: Value) -> Value {
    let mut out = base.clone();
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            out.as_object_mut().unwrap().remove(key);
        } else {
            out[key] = value.clone();
        }
    }
    out
}

/// JSON text of `base` without `drop`, with `members` (raw JSON text, e.g.
/// `"sub":"a","sub":"b"`) written first: what serde would never produce.
fn raw(base: &Value, drop: &[&str], members: &str) -> String {
    let mut object = base.clone();
    for key in drop {
        object.as_object_mut().unwrap().remove(*key);
    }
    let text = object.to_string();
    assert!(text.len() > 2, "the base object is never empty");
    format!("{{{members},{}", &text[1..])
}

fn fresh_jti() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A token the server issued at `/token`, and its parts.
struct Live {
    token: String,
    header: Value,
    claims: Value,
}

impl Live {
    async fn login(app: &TestApp, username: &str, password: &str) -> Live {
        let token = app.access_token(username, password).await;
        Live { header: jwt_part(&token, 0), claims: jwt_part(&token, 1), token }
    }

    fn kid(&self) -> String {
        self.header["kid"].as_str().unwrap().to_owned()
    }

    fn alg(&self) -> String {
        self.header["alg"].as_str().unwrap().to_owned()
    }

    /// Its claims (live `sid`, right `iss`, `exp`…) under a new `jti`.
    fn claims(&self) -> Value {
        edit(&self.claims, json!({"jti": fresh_jti()}))
    }

    fn part(&self, index: usize) -> &str {
        self.token.split('.').nth(index).unwrap()
    }

    /// `header.payload`, what the signature covers.
    fn input(&self) -> String {
        format!("{}.{}", self.part(0), self.part(1))
    }

    fn signature(&self) -> Vec<u8> {
        unb64(self.part(2))
    }
}

// ---------------------------------------------------------------------------
// The attacker's own keys: throwaway keys made with openssl for this test
// (PKCS#8 DER and self-signed X.509 DER, base64). They are the keys a `jwk`,
// `jku`, `x5u` or `x5c` header offers, and sign the tokens that offer them.

enum Attacker {
    Hmac(&'static [u8]),
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

const ATTACKER_HMAC_KEY: &[u8] = b"attacker-key-0123456789abcdef0123456789";

impl Attacker {
    /// The attacker key for tokens of this `alg`.
    fn of(alg: &str) -> Attacker {
        let der = |text: &str| STANDARD.decode(text).unwrap();
        match alg {
            "HS256" => Attacker::Hmac(ATTACKER_HMAC_KEY),
            "EdDSA" => Attacker::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der(ED25519_PKCS8)).unwrap()),
            "ES256" => Attacker::P256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der(P256_PKCS8), &SystemRandom::new())
                    .unwrap(),
            ),
            "RS256" => Attacker::Rsa(RsaKeyPair::from_pkcs8(&der(RSA_PKCS8)).unwrap()),
            other => panic!("no attacker key for {other}"),
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Attacker::Hmac(_) => "HS256",
            Attacker::Ed25519(_) => "EdDSA",
            Attacker::P256(_) => "ES256",
            Attacker::Rsa(_) => "RS256",
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Attacker::Hmac(key) => hmac(key, message),
            Attacker::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Attacker::P256(pair) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
            Attacker::Rsa(pair) => {
                let mut signature = vec![0u8; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature).unwrap();
                signature
            }
        }
    }

    fn signer(&self) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
        move |message| self.sign(message)
    }

    /// Its public JWK (the secret itself for HMAC: an `oct` key).
    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = match self {
            Attacker::Hmac(key) => json!({"kty": "oct", "k": b64(key)}),
            Attacker::Ed25519(pair) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key())}),
            Attacker::P256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Attacker::Rsa(pair) => {
                let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({"kty": "RSA", "n": b64(&parts.n), "e": b64(&parts.e)})
            }
        };
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(self.alg());
        jwk["use"] = json!("sig");
        jwk
    }

    /// Its self-signed certificate, base64 DER (as `x5c` carries it).
    fn cert(&self) -> Option<&'static str> {
        match self {
            Attacker::Hmac(_) => None,
            Attacker::Ed25519(_) => Some(ED25519_CERT),
            Attacker::P256(_) => Some(P256_CERT),
            Attacker::Rsa(_) => Some(RSA_CERT),
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The attacker's web site, where `jku` and `x5u` point: it serves a JWKS
/// of the attacker's keys (and their certificates as PEM), and counts the
/// requests it gets. The server under test must never call it.
struct AttackerSite {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl AttackerSite {
    fn start(keys: &[(&Attacker, &str)]) -> AttackerSite {
        let jwks = json!({"keys": keys.iter().map(|(k, kid)| k.jwk(kid)).collect::<Vec<_>>()}).to_string();
        let certs: String = keys
            .iter()
            .filter_map(|(k, _)| k.cert())
            .map(|c| pem("CERTIFICATE", &STANDARD.decode(c).unwrap()))
            .collect();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let n = stream.read(&mut request).unwrap_or(0);
                let body = if String::from_utf8_lossy(&request[..n]).contains("cert") { &certs } else { &jwks };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        AttackerSite { url, hits }
    }
}

// ---------------------------------------------------------------------------
// The table.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    /// `401 invalid_token` on both routes.
    Refused,
    /// As `Refused`, or `431` (the token does not fit in the request head).
    RefusedOr431,
    /// `200` on both routes (controls: an admin's good token).
    Accepted,
    /// Not asserted: the outcome is printed, for the record.
    Probe,
}

#[derive(Default)]
struct Table {
    rows: Vec<(String, String, Want)>,
}

impl Table {
    fn refuse(&mut self, name: impl Into<String>, token: impl Into<String>) {
        self.rows.push((name.into(), token.into(), Want::Refused));
    }

    fn accept(&mut self, name: impl Into<String>, token: impl Into<String>) {
        self.rows.push((name.into(), token.into(), Want::Accepted));
    }

    fn push(&mut self, name: impl Into<String>, token: impl Into<String>, want: Want) {
        self.rows.push((name.into(), token.into(), want));
    }

    /// Sends every row to both routes; panics naming each row that failed.
    async fn run(self, app: &TestApp, title: &str, site: Option<&AttackerSite>) {
        let mut lines = Vec::new();
        let mut failures = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, token, want) in &self.rows {
            assert!(seen.insert(name.clone()), "two rows named {name:?}");
            for path in ["/users/me", "/admin/users"] {
                let outcome = call(app, path, token).await;
                let shown = match &outcome {
                    Ok((status, _, body)) => {
                        format!("{status} {}", body["error_description"].as_str().unwrap_or_default())
                    }
                    Err(e) => format!("transport error: {e}"),
                };
                lines.push(format!("{:<12} {name:<78} {path:<12} {shown}", format!("{want:?}")));
                if let Err(why) = judge(*want, &outcome) {
                    failures.push(format!("row {name:?} on {path}: {why} (token length {})", token.len()));
                }
            }
        }
        // Each refusal has a metrics reason of its own: a new refusal text
        // must be added to `portcullis::metrics::Refusal`.
        let scrape = app.state.metrics.render(0, None);
        if !scrape.contains("portcullis_token_checks_refused_total{reason=\"other\"} 0\n") {
            failures.push("a refusal was counted under reason=\"other\" in /metrics".to_owned());
        }
        if let Some(site) = site {
            let hits = site.hits.load(Ordering::SeqCst);
            if hits > 0 {
                failures.push(format!("the server called the attacker's jku/x5u URL {hits} time(s)"));
            }
            // The site was there to be called: its JWKS names the attacker's keys.
            let jwks: Value =
                app.client.get(format!("{}/jwks.json", site.url)).send().await.unwrap().json().await.unwrap();
            assert!(jwks["keys"].as_array().is_some_and(|k| !k.is_empty()), "{jwks}");
        }
        println!("== {title}: {} rows\n{}", self.rows.len(), lines.join("\n"));
        assert!(failures.is_empty(), "{title}: {} failure(s):\n{}", failures.len(), failures.join("\n"));
    }
}

type Outcome = Result<(u16, String, Value), String>;

async fn call(app: &TestApp, path: &str, token: &str) -> Outcome {
    let response = app
        .client
        .get(format!("{}{path}", app.url))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or("<not ASCII>").to_owned())
        .unwrap_or_default();
    let text = response.text().await.map_err(|e| format!("{e:?}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, challenge, body))
}

fn judge(want: Want, outcome: &Outcome) -> Result<(), String> {
    let (status, challenge, body) = match (want, outcome) {
        (Want::Probe, _) => return Ok(()),
        (_, Err(e)) => return Err(format!("no answer: {e}")),
        (_, Ok(o)) => o,
    };
    match want {
        Want::Probe => Ok(()),
        Want::Accepted if *status == 200 => Ok(()),
        Want::Accepted => Err(format!("control refused: {status} {body}")),
        Want::RefusedOr431 if *status == 431 => Ok(()),
        Want::Refused | Want::RefusedOr431 => {
            if *status == 200 {
                let body: String = body.to_string().chars().take(100).collect();
                return Err(format!("ACCEPTED (200): {body}"));
            }
            if *status != 401 {
                return Err(format!("status {status}, not 401: {body}"));
            }
            if !challenge.starts_with("Bearer error=\"invalid_token\"") {
                return Err(format!("WWW-Authenticate {challenge:?}"));
            }
            let described = body["error_description"].as_str().is_some_and(|d| !d.is_empty());
            if body["detail"] != "Could not validate credentials" || body["error"] != "invalid_token" || !described {
                return Err(format!("body {body}"));
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Rows every server gets, whatever its algorithm.

/// `alg: none` in every casing, with and without a signature.
/// Signs a JWS signing input.
type Sign = dyn Fn(&[u8]) -> Vec<u8>;

fn alg_none_rows(t: &mut Table, live: &Live, key_signer: Option<&Sign>) {
    let claims = live.claims().to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": live.kid()}).to_string();
        let input = format!("{}.{}", b64(&header), b64(&claims));
        t.refuse(format!("alg {alg}: empty signature (header.payload.)"), format!("{input}."));
        t.refuse(format!("alg {alg}: no signature part (header.payload)"), input.clone());
        t.refuse(format!("alg {alg}: trailing signature of the live token"), format!("{input}.{}", live.part(2)));
        t.refuse(format!("alg {alg}: trailing junk signature"), format!("{input}.AAAA"));
        if let Some(sign) = key_signer {
            t.refuse(
                format!("alg {alg}: signed with the server's real key"),
                format!("{input}.{}", b64(sign(input.as_bytes()))),
            );
        }
    }
    let bare = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&claims));
    t.refuse("alg none: bare header {\"alg\":\"none\"}, no typ or kid", bare);
    let no_typ = format!("{}.{}.", b64(r#"{"typ":"at+jwt"}"#), b64(&claims));
    t.refuse("alg missing from the header", no_typ);
}

/// Flips the lowest bit of the last base64url character: the unused bits of
/// the last sextet, so a lax decoder yields the very same bytes.
fn with_noncanonical_tail(part: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let unused = part.len() * 6 - unb64(part).len() * 8;
    assert!(unused > 0, "{part} has no unused bits");
    let last = *part.as_bytes().last().unwrap();
    let index = ALPHABET.iter().position(|&c| c == last).unwrap();
    let mut out = part[..part.len() - 1].to_owned();
    out.push(ALPHABET[index ^ 1] as char);
    assert_eq!(URL_SAFE_NO_PAD.decode(&out).ok(), None, "the engine rejects trailing bits");
    out
}

/// The signature of a real token stripped, cut, flipped or grafted.
fn signature_rows(t: &mut Table, live: &Live, same_user: &Live, other_user: &Live) {
    let input = live.input();
    let sig = live.part(2);
    t.refuse("signature stripped (header.payload.)", format!("{input}."));
    t.refuse("signature part missing (header.payload)", input.clone());
    t.refuse("signature without its last 4 characters", format!("{input}.{}", &sig[..sig.len() - 4]));
    t.refuse("signature truncated to its first 8 characters", format!("{input}.{}", &sig[..8]));
    t.refuse("signature of another token of the same user", format!("{input}.{}", same_user.part(2)));
    t.refuse("signature of another user's token", format!("{input}.{}", other_user.part(2)));
    let mut flipped = live.signature();
    flipped[0] ^= 0x01;
    t.refuse("signature with its first bit flipped", format!("{input}.{}", b64(&flipped)));
    let mut flipped = live.signature();
    *flipped.last_mut().unwrap() ^= 0x80;
    t.refuse("signature with a bit of its last byte flipped", format!("{input}.{}", b64(&flipped)));
    let zeros = vec![0u8; live.signature().len()];
    t.refuse("signature all zeros, of the right length", format!("{input}.{}", b64(&zeros)));
    t.refuse(
        "signature doubled (twice the bytes)",
        format!("{input}.{}", b64([live.signature(), live.signature()].concat())),
    );
    t.refuse("signature with non-canonical trailing base64 bits", format!("{input}.{}", with_noncanonical_tail(sig)));
    let padding = "=".repeat((4 - sig.len() % 4) % 4);
    t.refuse("signature base64 padded with '='", format!("{input}.{sig}{padding}"));
    let widened = edit(&live.claims, json!({"sub": other_user.claims["sub"].clone()}));
    t.refuse(
        "payload changed (sub swapped), signature kept",
        format!("{}.{}.{sig}", live.part(0), b64(widened.to_string())),
    );
    let header = edit(&live.header, json!({"kid": null}));
    t.refuse(
        "header changed (kid dropped), signature kept",
        format!("{}.{}.{sig}", b64(header.to_string()), live.part(1)),
    );
    t.refuse("header and payload of another token, signature kept", format!("{}.{sig}", same_user.input()));
    t.refuse("a valid token with a fourth part appended", format!("{}.extra", live.token));
    t.refuse("a valid token behind two junk parts (5 parts)", format!("eyJ9.e30.{}", live.token));
    t.refuse("a valid token twice, joined by a dot", format!("{}.{}", live.token, live.token));
}

/// `jwk`, `jku`, `x5u` and `x5c` headers offering the attacker's key, with
/// the token signed by that key.
fn key_header_rows(t: &mut Table, live: &Live, attacker: &Attacker, attacker_kid: &str, site: &AttackerSite) {
    let claims = live.claims().to_string();
    let alg = attacker.alg();
    let server_kid = live.kid();
    let base = json!({"alg": alg, "typ": "at+jwt"});
    let kids: [(&str, Value); 3] = [
        ("no kid", Value::Null),
        ("kid of the server's key", json!(server_kid)),
        ("kid of the offered key", json!(attacker_kid)),
    ];
    for (which, kid) in &kids {
        let jwk = edit(&base, json!({"jwk": attacker.jwk(attacker_kid), "kid": kid}));
        t.refuse(
            format!("jwk: embedded {alg} attacker key, signed with it ({which})"),
            jws(&jwk.to_string(), &claims, attacker.signer()),
        );
        let jku = edit(&base, json!({"jku": format!("{}/jwks.json", site.url), "kid": kid}));
        t.refuse(
            format!("jku: attacker's JWKS URL, {alg} key, signed with it ({which})"),
            jws(&jku.to_string(), &claims, attacker.signer()),
        );
        if let Some(cert) = attacker.cert() {
            let x5u = edit(&base, json!({"x5u": format!("{}/cert.pem", site.url), "kid": kid}));
            t.refuse(
                format!("x5u: attacker's certificate URL, {alg} key, signed with it ({which})"),
                jws(&x5u.to_string(), &claims, attacker.signer()),
            );
            let x5c = edit(&base, json!({"x5c": [cert], "kid": kid}));
            t.refuse(
                format!("x5c: attacker's self-signed {alg} certificate, signed with it ({which})"),
                jws(&x5c.to_string(), &claims, attacker.signer()),
            );
        }
    }
    let both = edit(
        &base,
        json!({"jwk": attacker.jwk(attacker_kid), "jku": format!("{}/jwks.json", site.url),
        "x5u": format!("{}/cert.pem", site.url), "x5c": attacker.cert().map(|c| vec![c]), "kid": attacker_kid}),
    );
    t.refuse(
        format!("jwk, jku, x5u (and x5c) at once, all offering the {alg} attacker key"),
        jws(&both.to_string(), &claims, attacker.signer()),
    );
}

// ---------------------------------------------------------------------------
// Algorithm confusion and broken-ECDSA rows (asymmetric servers).

/// Every form of the published public key an attacker may use as an HMAC
/// secret (CVE-2016-10555, CVE-2022-29217, CVE-2024-33663…).
fn public_key_encodings(jwk: &Value, jwks_text: &str) -> Vec<(String, Vec<u8>)> {
    let member = |name: &str| unb64(jwk[name].as_str().unwrap());
    let start = jwks_text.find("[{").unwrap() + 1;
    let end = jwks_text.rfind("}]").unwrap() + 1;
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("the JWKS document as served".into(), jwks_text.as_bytes().to_vec()),
        ("the JWK exactly as in the JWKS document".into(), jwks_text.as_bytes()[start..end].to_vec()),
        ("the JWK re-serialized (compact JSON)".into(), jwk.to_string().into_bytes()),
        ("the JWK pretty-printed".into(), serde_json::to_string_pretty(jwk).unwrap().into_bytes()),
        ("base64url of the JWK".into(), b64(jwk.to_string()).into_bytes()),
        ("base64 of the JWK".into(), STANDARD.encode(jwk.to_string()).into_bytes()),
    ];
    let (raw, spki): (Vec<u8>, Vec<u8>) = match jwk["kty"].as_str().unwrap() {
        "OKP" => {
            let x = member("x");
            let thumbprint = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(&x));
            out.push(("the JWK's RFC 7638 thumbprint input".into(), thumbprint.into_bytes()));
            out.push(("the x member's text".into(), b64(&x).into_bytes()));
            let spki = [&hex::decode("302a300506032b6570032100").unwrap()[..], &x].concat();
            (x, spki)
        }
        "EC" => {
            let (x, y) = (member("x"), member("y"));
            let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, b64(&x), b64(&y));
            out.push(("the JWK's RFC 7638 thumbprint input".into(), thumbprint.into_bytes()));
            out.push(("the x member's text".into(), b64(&x).into_bytes()));
            out.push(("raw x || y (no 04 prefix)".into(), [&x[..], &y].concat()));
            let parity = if y[31] % 2 == 0 { 2u8 } else { 3u8 };
            out.push(("the compressed point".into(), [&[parity][..], &x].concat()));
            let point = [&[4u8][..], &x, &y].concat();
            let prefix = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
            let spki = [&prefix[..], &point].concat();
            (point, spki)
        }
        "RSA" => {
            use rsa::pkcs1::EncodeRsaPublicKey;
            use rsa::pkcs8::{EncodePublicKey, LineEnding};
            let (n, e) = (member("n"), member("e"));
            let thumbprint = format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(&e), b64(&n));
            out.push(("the JWK's RFC 7638 thumbprint input".into(), thumbprint.into_bytes()));
            out.push(("the n member's text".into(), b64(&n).into_bytes()));
            let key = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&n), rsa::BigUint::from_bytes_be(&e)).unwrap();
            let pkcs1_der = key.to_pkcs1_der().unwrap().as_bytes().to_vec();
            let pkcs1_pem = key.to_pkcs1_pem(LineEnding::LF).unwrap();
            assert_eq!(pkcs1_pem, pem("RSA PUBLIC KEY", &pkcs1_der));
            out.push(("PEM PKCS#1 (BEGIN RSA PUBLIC KEY)".into(), pkcs1_pem.clone().into_bytes()));
            out.push(("PEM PKCS#1 without its final newline".into(), pkcs1_pem.trim_end().as_bytes().to_vec()));
            out.push(("PEM PKCS#1 with CRLF line ends".into(), pkcs1_pem.replace('\n', "\r\n").into_bytes()));
            out.push(("DER PKCS#1".into(), pkcs1_der.clone()));
            out.push(("base64 of DER PKCS#1".into(), STANDARD.encode(&pkcs1_der).into_bytes()));
            let spki = key.to_public_key_der().unwrap().as_bytes().to_vec();
            assert_eq!(key.to_public_key_pem(LineEnding::LF).unwrap(), pem("PUBLIC KEY", &spki));
            (n, spki)
        }
        other => panic!("unexpected key type {other}"),
    };
    let spki_pem = pem("PUBLIC KEY", &spki);
    out.extend([
        ("the raw public key bytes".to_owned(), raw.clone()),
        ("hex of the raw public key".to_owned(), hex::encode(&raw).into_bytes()),
        ("base64 of the raw public key".to_owned(), STANDARD.encode(&raw).into_bytes()),
        ("PEM SPKI (BEGIN PUBLIC KEY)".to_owned(), spki_pem.clone().into_bytes()),
        ("PEM SPKI without its final newline".to_owned(), spki_pem.trim_end().as_bytes().to_vec()),
        ("PEM SPKI with CRLF line ends".to_owned(), spki_pem.replace('\n', "\r\n").into_bytes()),
        ("DER SPKI".to_owned(), spki.clone()),
        ("base64 of DER SPKI (the PEM body)".to_owned(), STANDARD.encode(&spki).into_bytes()),
        ("base64url of DER SPKI".to_owned(), b64(&spki).into_bytes()),
    ]);
    out
}

/// HS256 (and HS384/HS512) tokens keyed with the server's public key.
fn confusion_rows(t: &mut Table, live: &Live, jwk: &Value, jwks_text: &str) {
    let claims = live.claims().to_string();
    let alg = live.alg();
    let encodings = public_key_encodings(jwk, jwks_text);
    for (encoding, secret) in &encodings {
        for (which, kid) in [("kid of the key", json!(live.kid())), ("no kid", Value::Null)] {
            let header = edit(&json!({"alg": "HS256", "typ": "at+jwt"}), json!({"kid": kid}));
            t.refuse(
                format!("{alg} confusion: HS256 keyed with {encoding} ({which})"),
                jws(&header.to_string(), &claims, hs(secret)),
            );
        }
    }
    let spki_pem = &encodings.iter().find(|(name, _)| name.starts_with("PEM SPKI (")).unwrap().1;
    for (name, algorithm) in [("HS384", ring::hmac::HMAC_SHA384), ("HS512", ring::hmac::HMAC_SHA512)] {
        let header = json!({"alg": name, "typ": "at+jwt", "kid": live.kid()}).to_string();
        let key = ring::hmac::Key::new(algorithm, spki_pem);
        t.refuse(
            format!("{alg} confusion: {name} keyed with PEM SPKI (kid of the key)"),
            jws(&header, &claims, |m| ring::hmac::sign(&key, m).as_ref().to_vec()),
        );
    }
}

/// P-256 group order n.
const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

/// CVE-2022-21449 ("psychic signatures"): r = s = 0 passes a verifier that
/// forgets to check 0 < r, s < n.
fn psychic_rows(t: &mut Table, live: &Live) {
    let input = format!("{}.{}", b64(live.header.to_string()), b64(live.claims().to_string()));
    let n = hex::decode(P256_N).unwrap();
    let der_n = [&hex::decode("3046022100").unwrap()[..], &n, &hex::decode("022100").unwrap(), &n].concat();
    let signatures: [(&str, Vec<u8>); 6] = [
        ("r = s = 0, raw 64 zero bytes", vec![0u8; 64]),
        ("r = s = 0, DER-encoded (30 06 02 01 00 02 01 00)", hex::decode("3006020100020100").unwrap()),
        ("r = s = 0, DER with two-byte zero integers", hex::decode("30080202000002020000").unwrap()),
        ("r = s = n (the group order), raw", [&n[..], &n].concat()),
        ("r = s = n (the group order), DER", der_n),
        ("r = 0, s = 1, raw", [vec![0u8; 63], vec![1u8]].concat()),
    ];
    for (name, signature) in signatures {
        t.refuse(format!("psychic signature CVE-2022-21449: {name}"), format!("{input}.{}", b64(signature)));
    }
}

/// `a - b`, both big-endian of the same length, `a >= b`.
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

/// `a + b`, little-endian, 32 bytes (no carry out: S < 2^253 here).
fn add_le(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut carry = 0u16;
    for i in 0..a.len() {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = (s & 0xff) as u8;
        carry = s >> 8;
    }
    out
}

/// Signature malleability: the same claims under a second valid signature.
/// Not a forgery (the key holder signed these claims, and revocation goes by
/// `jti`), so these rows only record what the server does.
fn malleability_probes(t: &mut Table, live: &Live) {
    let input = live.input();
    let sig = live.signature();
    match live.alg().as_str() {
        "ES256" => {
            let high_s = sub_be(&hex::decode(P256_N).unwrap(), &sig[32..]);
            let malleated = [&sig[..32], &high_s].concat();
            t.push("probe: ES256 malleated signature (r, n - s)", format!("{input}.{}", b64(malleated)), Want::Probe);
        }
        "EdDSA" => {
            // L, the order of the Ed25519 base point, little-endian.
            let l = hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010").unwrap();
            let malleated = [&sig[..32], &add_le(&sig[32..], &l)].concat();
            t.push(
                "Ed25519 malleated signature (R, S + L), non-canonical S",
                format!("{input}.{}", b64(malleated)),
                Want::Refused,
            );
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// The HS256 server: the default, and where the secret lets the test forge
// complete tokens whose only fault is the attack.

#[tokio::test]
async fn every_jwt_attack_on_an_hs256_server_is_refused() {
    let app = spawn_app().await;
    app.add_user("rita", RITA_PASSWORD, "read").await;
    let admin = Live::login(&app, "admin", ADMIN_PASSWORD).await;
    let admin_again = Live::login(&app, "admin", ADMIN_PASSWORD).await;
    let rita = Live::login(&app, "rita", RITA_PASSWORD).await;
    assert_eq!(admin.alg(), "HS256");
    let hmac_attacker = Attacker::of("HS256");
    let rsa_attacker = Attacker::of("RS256");
    let site = AttackerSite::start(&[(&hmac_attacker, "attacker-1"), (&rsa_attacker, "attacker-rsa")]);
    let secret = SECRET.as_bytes();
    let kid = admin.kid();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
    let h = header.to_string();
    let forge = |header: &str, payload: &str| jws(header, payload, hs(secret));
    let claims = admin.claims();
    let c = claims.to_string();
    let mut t = Table::default();

    // Controls: without them every refusal below could be vacuous.
    t.accept("control: the live token", &admin.token);
    t.accept("control: forged with the secret, complete (live sid)", forge(&h, &admin.claims().to_string()));
    t.accept(
        "control: forged with the secret, no kid (the only key)",
        forge(&edit(&header, json!({"kid": null})).to_string(), &c),
    );

    alg_none_rows(&mut t, &admin, Some(&|m: &[u8]| hmac(secret, m)));
    signature_rows(&mut t, &admin, &admin_again, &rita);

    // Another algorithm or another key than the server's.
    for (name, algorithm) in [("HS384", ring::hmac::HMAC_SHA384), ("HS512", ring::hmac::HMAC_SHA512)] {
        let key = ring::hmac::Key::new(algorithm, secret);
        let header = edit(&header, json!({"alg": name})).to_string();
        t.refuse(
            format!("alg {name} with the secret"),
            jws(&header, &c, |m| ring::hmac::sign(&key, m).as_ref().to_vec()),
        );
    }
    for alg in ["hs256", "Hs256", "HS256 ", "HS256\u{0}"] {
        let header = edit(&header, json!({"alg": alg})).to_string();
        t.refuse(format!("alg {alg:?} (not the exact name) with the secret"), forge(&header, &c));
    }
    t.refuse("alg RS256 over an HMAC with the secret", forge(&edit(&header, json!({"alg": "RS256"})).to_string(), &c));
    t.refuse("HS256 with another secret", jws(&h, &c, hs(b"another-secret-0123456789abcdef0123456789")));
    t.refuse("HS256 with an empty key", jws(&h, &c, hs(b"")));
    t.refuse("HS256 with the secret plus a newline", jws(&h, &c, hs(format!("{SECRET}\n").as_bytes())));
    t.refuse("HS256 with the secret hex-encoded", jws(&h, &c, hs(hex::encode(secret).as_bytes())));

    // kid injection.
    let with_kid = |kid: Value| edit(&header, json!({"kid": kid})).to_string();
    t.refuse("kid ../../dev/null, HMAC with an empty key", jws(&with_kid(json!("../../dev/null")), &c, hs(b"")));
    t.refuse("kid ../../dev/null, HMAC with the secret", forge(&with_kid(json!("../../dev/null")), &c));
    t.refuse("kid /dev/null, HMAC with an empty key", jws(&with_kid(json!("/dev/null")), &c, hs(b"")));
    t.refuse("kid ' or 1=1 --, HMAC with the secret", forge(&with_kid(json!("' or 1=1 --")), &c));
    t.refuse(
        "kid x' UNION SELECT 'attacker-key' --, HMAC with attacker-key",
        jws(&with_kid(json!("x' UNION SELECT 'attacker-key' --")), &c, hs(b"attacker-key")),
    );
    t.refuse("kid of an unknown key, HMAC with the secret", forge(&with_kid(json!("hs256-0000000000000000")), &c));
    t.refuse(
        "kid of the real key in upper case, HMAC with the secret",
        forge(&with_kid(json!(kid.to_uppercase())), &c),
    );
    t.refuse("kid of the real key + NUL, HMAC with the secret", forge(&with_kid(json!(format!("{kid}\u{0}"))), &c));
    t.refuse(
        "kid of the real key + NUL + ../../etc/passwd, HMAC with the secret",
        forge(&with_kid(json!(format!("{kid}\u{0}../../etc/passwd"))), &c),
    );
    t.refuse("kid NUL + the real key, HMAC with the secret", forge(&with_kid(json!(format!("\u{0}{kid}"))), &c));
    t.refuse(
        "kid of the real key + 10 000 characters, HMAC with the secret",
        forge(&with_kid(json!(format!("{kid}{}", "A".repeat(10_000)))), &c),
    );
    t.refuse("kid empty string, HMAC with the secret", forge(&with_kid(json!("")), &c));
    t.refuse("kid an array holding the real kid, HMAC with the secret", forge(&with_kid(json!([kid])), &c));
    t.refuse("kid a number, HMAC with the secret", forge(&with_kid(json!(0)), &c));

    // Keys offered by the token itself.
    key_header_rows(&mut t, &admin, &hmac_attacker, "attacker-1", &site);
    key_header_rows(&mut t, &admin, &rsa_attacker, "attacker-rsa", &site);

    // crit (RFC 7515 §4.1.11: an extension not understood makes the JWS invalid).
    let crit = |changes: Value| forge(&edit(&header, changes).to_string(), &c);
    t.refuse(
        "crit naming an unknown extension (present), HMAC with the secret",
        crit(json!({"crit": ["urn:example:must-understand"], "urn:example:must-understand": true})),
    );
    t.refuse("crit naming an unknown extension (absent), HMAC with the secret", crit(json!({"crit": ["x-missing"]})));
    t.refuse(
        "crit [\"b64\"] with b64 false (RFC 7797), HMAC with the secret",
        crit(json!({"crit": ["b64"], "b64": false})),
    );
    // RFC 7515 lets a recipient accept `crit: []` (producers must not send it).
    t.push("probe: crit empty list, HMAC with the secret", crit(json!({"crit": []})), Want::Probe);

    // Nested JWT and JWE.
    let cty = edit(&header, json!({"cty": "JWT"})).to_string();
    let inner_none = format!("{}.{}.", b64(json!({"alg": "none", "typ": "at+jwt"}).to_string()), b64(&c));
    t.refuse("nested JWT (cty JWT): alg-none inner token, outer HMAC with the secret", forge(&cty, &inner_none));
    t.refuse(
        "nested JWT (cty JWT): the live token inside, outer HMAC with an attacker key",
        jws(&cty, &admin.token, hs(b"attacker-key")),
    );
    t.refuse(
        "nested JWT (cty JWT): the live token inside, outer alg none",
        format!("{}.{}.", b64(json!({"alg": "none", "typ": "at+jwt", "cty": "JWT"}).to_string()), b64(&admin.token)),
    );
    t.refuse(
        "nested JWT (cty JWT): the live token as a JSON string, outer HMAC with the secret",
        forge(&cty, &json!(admin.token).to_string()),
    );
    let jwe_header =
        |alg: &str| b64(json!({"alg": alg, "enc": "A256GCM", "typ": "at+jwt", "cty": "JWT", "kid": kid}).to_string());
    let (iv, tag) = (b64([7u8; 12]), b64([9u8; 16]));
    t.refuse(
        "JWE compact (5 parts), alg dir / A256GCM",
        format!("{}..{iv}.{}.{tag}", jwe_header("dir"), b64(&admin.token)),
    );
    t.refuse(
        "JWE compact (5 parts), alg RSA-OAEP-256 / A256GCM",
        format!("{}.{}.{iv}.{}.{tag}", jwe_header("RSA-OAEP-256"), b64([1u8; 256]), b64(&admin.token)),
    );
    t.refuse(
        "JWE header and empty key in front of the live token (5 parts)",
        format!("{}..{}", jwe_header("dir"), admin.token),
    );
    t.push(
        "probe: cty JWT over an ordinary claims payload, HMAC with the secret",
        forge(&cty, &admin.claims().to_string()),
        Want::Probe,
    );

    // Duplicate JSON members: whichever copy a parser keeps, one order of
    // each pair would pass if duplicates were not refused outright.
    t.refuse(
        "header alg twice: none, then HS256 (HMAC with the secret)",
        forge(&raw(&header, &["alg"], r#""alg":"none","alg":"HS256""#), &c),
    );
    t.refuse(
        "header alg twice: HS256, then none (HMAC with the secret)",
        forge(&raw(&header, &["alg"], r#""alg":"HS256","alg":"none""#), &c),
    );
    let kids = |a: &str, b: &str| raw(&header, &["kid"], &format!(r#""kid":"{a}","kid":"{b}""#));
    t.refuse("header kid twice: unknown, then the real one", forge(&kids("hs256-0000000000000000", &kid), &c));
    t.refuse("header kid twice: the real one, then unknown", forge(&kids(&kid, "hs256-0000000000000000"), &c));
    t.refuse("header typ twice: JWT, then at+jwt", forge(&raw(&header, &["typ"], r#""typ":"JWT","typ":"at+jwt""#), &c));
    t.refuse("header typ twice: at+jwt, then JWT", forge(&raw(&header, &["typ"], r#""typ":"at+jwt","typ":"JWT""#), &c));
    t.refuse(
        "payload sub twice: rita, then admin (admin's sid)",
        forge(&h, &raw(&admin.claims(), &["sub"], r#""sub":"rita","sub":"admin""#)),
    );
    t.refuse(
        "payload sub twice: admin, then rita (admin's sid)",
        forge(&h, &raw(&admin.claims(), &["sub"], r#""sub":"admin","sub":"rita""#)),
    );
    t.refuse(
        "payload scope twice: read, then admin (rita's session, granted read)",
        forge(&h, &raw(&rita.claims(), &["scope"], r#""scope":"read","scope":"admin""#)),
    );
    t.refuse(
        "payload scope twice: admin, then read (rita's session, granted read)",
        forge(&h, &raw(&rita.claims(), &["scope"], r#""scope":"admin","scope":"read""#)),
    );
    let exp = claims["exp"].as_i64().unwrap();
    let exps = |a: i64, b: i64| raw(&claims, &["exp"], &format!(r#""exp":{a},"exp":{b}"#));
    t.refuse("payload exp twice: an hour ago, then the real exp", forge(&h, &exps(exp - 4500, exp)));
    t.refuse("payload exp twice: the real exp, then an hour ago", forge(&h, &exps(exp, exp - 4500)));
    let sids = |a: &str, b: &str| raw(&claims, &["sid"], &format!(r#""sid":"{a}","sid":"{b}""#));
    let sid = claims["sid"].as_str().unwrap();
    let rita_sid = rita.claims["sid"].as_str().unwrap();
    // RFC 7515 §4 / RFC 7519 §4: refuse duplicates, or keep the lexically
    // last one (as PyJWT does); never the first.
    t.refuse(
        "payload sid twice: admin's, then rita's (a first-wins parser passes it)",
        forge(&h, &sids(sid, rita_sid)),
    );
    t.push("probe: payload sid twice: rita's, then admin's (last wins)", forge(&h, &sids(rita_sid, sid)), Want::Probe);

    // exp that no integer type holds, of the wrong type, or absent.
    let with_exp = |text: &str| forge(&h, &raw(&claims, &["exp"], &format!(r#""exp":{text}"#)));
    t.refuse("exp i64::MAX (9223372036854775807)", with_exp("9223372036854775807"));
    t.refuse("exp u64::MAX (18446744073709551615)", with_exp("18446744073709551615"));
    t.refuse("exp u64::MAX + 1 (18446744073709551616)", with_exp("18446744073709551616"));
    t.refuse("exp 1e300", with_exp("1e300"));
    t.refuse("exp as a string of the real exp", with_exp(&format!("\"{exp}\"")));
    t.refuse("exp negative (-1)", with_exp("-1"));
    t.refuse("exp zero", with_exp("0"));
    t.refuse("exp float (real exp + 0.5)", with_exp(&format!("{exp}.5")));
    t.refuse("exp float with .0 (real exp)", with_exp(&format!("{exp}.0")));
    t.refuse("exp null", with_exp("null"));
    t.refuse("exp true", with_exp("true"));
    t.refuse("exp missing", forge(&h, &edit(&claims, json!({"exp": null})).to_string()));
    t.refuse("exp an hour ago", with_exp(&(exp - 4500).to_string()));

    // typ (RFC 9068 §4). docs/tokens.md: `at+jwt` or `application/at+jwt`, any case.
    let with_typ = |typ: Value| forge(&edit(&header, json!({"typ": typ})).to_string(), &c);
    t.refuse("typ missing", with_typ(Value::Null));
    t.refuse("typ null (JSON null)", forge(&raw(&header, &["typ"], r#""typ":null"#), &c));
    for typ in [
        "JWT",
        "jwt",
        "",
        "JOSE",
        "application/jwt",
        "at+jwt ",
        " at+jwt",
        "at+jwt\u{0}",
        "application/at+jwt; charset=utf-8",
        "at-jwt",
        "dpop+jwt",
        "application/at+jwt+jwt",
    ] {
        t.refuse(format!("typ {typ:?}"), with_typ(json!(typ)));
    }
    t.refuse("typ an array [\"at+jwt\"]", with_typ(json!(["at+jwt"])));
    for typ in ["AT+JWT", "at+JWT", "At+Jwt", "application/at+jwt", "APPLICATION/AT+JWT", "Application/At+Jwt"] {
        t.accept(format!("control: typ {typ:?} (media types compare case-insensitively)"), with_typ(json!(typ)));
    }

    // Oversized tokens: complete claims padded out, signed with an attacker key.
    let padded = |bytes: usize| edit(&claims, json!({"pad": "A".repeat(bytes * 3 / 4)})).to_string();
    let eight_kib = jws(&h, &padded(8 * 1024), hs(b"attacker-key"));
    assert!((8 * 1024..9 * 1024).contains(&eight_kib.len()), "{}", eight_kib.len());
    t.refuse("8 KiB token, HMAC with an attacker key", eight_kib);
    t.refuse("64 KiB token, HMAC with an attacker key", jws(&h, &padded(64 * 1024), hs(b"attacker-key")));
    t.push(
        "1 MiB token, HMAC with an attacker key (401 or 431)",
        jws(&h, &padded(1024 * 1024), hs(b"attacker-key")),
        Want::RefusedOr431,
    );
    t.push("probe: 8 KiB token, complete, HMAC with the secret", forge(&h, &padded(8 * 1024)), Want::Probe);
    t.push("probe: 1 MiB token, complete, HMAC with the secret", forge(&h, &padded(1024 * 1024)), Want::Probe);

    // Garbage.
    let sig_of = |input: &str| b64(hmac(secret, input.as_bytes()));
    t.refuse("garbage: empty token", "");
    t.refuse("garbage: one part (a base64url header)", b64(&h));
    t.refuse("garbage: one word", "garbage");
    t.refuse("garbage: two parts a.b", "a.b");
    t.refuse("garbage: three empty parts (..)", "..");
    t.refuse("garbage: five empty parts (....)", "....");
    t.refuse("garbage: not base64 (!!!.@@@.###)", "!!!.@@@.###");
    t.refuse("garbage: JSON in clear, not base64", format!("{h}.{c}.{}", sig_of(&format!("{h}.{c}"))));
    let std_input = format!("{}.{}", STANDARD.encode(&h), STANDARD.encode(&c));
    t.refuse("garbage: standard padded base64, HMAC with the secret", format!("{std_input}.{}", sig_of(&std_input)));
    t.refuse("garbage: base64 of a non-JSON header", forge("hello, world", &c));
    t.refuse("garbage: empty header, HMAC with the secret", forge("", &c));
    t.refuse("garbage: JSON array header, HMAC with the secret", forge(&format!("[{h}]"), &c));
    t.refuse("garbage: base64 of a non-JSON payload, HMAC with the secret", forge(&h, "not json at all"));
    t.refuse("garbage: empty payload, HMAC with the secret", forge(&h, ""));
    let array = json!([
        claims["iss"],
        claims["sub"],
        null,
        exp,
        claims["iat"],
        claims["nbf"],
        claims["jti"],
        claims["scope"],
        claims["sid"]
    ]);
    t.refuse("garbage: JSON array payload, claims in field order, HMAC with the secret", forge(&h, &array.to_string()));
    t.refuse("garbage: JSON array payload holding the claims, HMAC with the secret", forge(&h, &format!("[{c}]")));
    for payload in ["null", "42", "true", "\"admin\"", "{}"] {
        t.refuse(format!("garbage: payload {payload}, HMAC with the secret"), forge(&h, payload));
    }
    t.refuse("garbage: claims then trailing text, HMAC with the secret", forge(&h, &format!("{c}xyz")));
    t.refuse("garbage: claims object twice, HMAC with the secret", forge(&h, &format!("{c}{c}")));
    t.refuse("garbage: claims behind a UTF-8 BOM, HMAC with the secret", forge(&h, &format!("\u{feff}{c}")));
    let bad_utf8 = format!("{}.{}", b64(&h), b64([&c.as_bytes()[..c.len() - 2], b"\xff\"}"].concat()));
    t.refuse("garbage: invalid UTF-8 in the claims, HMAC with the secret", format!("{bad_utf8}.{}", sig_of(&bad_utf8)));
    t.refuse("garbage: a space inside the token", format!("{} .{}.{}", admin.part(0), admin.part(1), admin.part(2)));

    t.accept("control: the live token, again after every row", &admin.token);
    t.run(&app, "HS256 server", Some(&site)).await;
}

// ---------------------------------------------------------------------------
// Asymmetric servers: algorithm confusion with the published key, the
// attacker's own key of the same algorithm, psychic signatures.

async fn every_jwt_attack_is_refused_with(algorithm: KeyAlgorithm) {
    let app = spawn_with(|c| c.algorithm = algorithm).await;
    app.add_user("rita", RITA_PASSWORD, "read").await;
    let admin = Live::login(&app, "admin", ADMIN_PASSWORD).await;
    let admin_again = Live::login(&app, "admin", ADMIN_PASSWORD).await;
    let rita = Live::login(&app, "rita", RITA_PASSWORD).await;
    let alg = admin.alg();
    assert_eq!(alg, algorithm.as_str());
    let jwks_text = app.get("/.well-known/jwks.json", None).await.text().await.unwrap();
    let jwks: Value = serde_json::from_str(&jwks_text).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks_text}");
    assert_eq!(keys[0]["kid"].as_str(), Some(admin.kid().as_str()));
    let attacker = Attacker::of(&alg);
    let site = AttackerSite::start(&[(&attacker, "attacker-1")]);
    let claims = admin.claims().to_string();
    let mut t = Table::default();

    t.accept("control: the live token", &admin.token);
    let signer = app.state.keyring.current().signer.clone();
    t.accept("control: complete claims signed by the server's own key", signer.sign(&admin.claims()));

    alg_none_rows(&mut t, &admin, None);
    signature_rows(&mut t, &admin, &admin_again, &rita);
    confusion_rows(&mut t, &admin, &keys[0], &jwks_text);
    let header = json!({"alg": alg, "typ": "at+jwt", "kid": admin.kid()});
    t.refuse(
        format!("{alg} signed with an attacker's {alg} key (kid of the server's key)"),
        jws(&header.to_string(), &claims, attacker.signer()),
    );
    let no_kid = edit(&header, json!({"kid": null}));
    t.refuse(
        format!("{alg} signed with an attacker's {alg} key (no kid)"),
        jws(&no_kid.to_string(), &claims, attacker.signer()),
    );
    key_header_rows(&mut t, &admin, &attacker, "attacker-1", &site);
    if alg == "ES256" {
        psychic_rows(&mut t, &admin);
    }
    malleability_probes(&mut t, &admin);

    t.accept("control: the live token, again after every row", &admin.token);
    t.run(&app, &format!("{alg} server"), Some(&site)).await;
}

#[tokio::test]
async fn every_jwt_attack_on_an_rs256_server_is_refused() {
    every_jwt_attack_is_refused_with(KeyAlgorithm::Rs256).await;
}

#[tokio::test]
async fn every_jwt_attack_on_an_es256_server_is_refused() {
    every_jwt_attack_is_refused_with(KeyAlgorithm::Es256).await;
}

#[tokio::test]
async fn every_jwt_attack_on_an_eddsa_server_is_refused() {
    every_jwt_attack_is_refused_with(KeyAlgorithm::EdDsa).await;
}

// ---------------------------------------------------------------------------
// Throwaway attacker keys (see `Attacker`): made with
// `openssl genpkey` + `openssl pkcs8 -topk8` and `openssl req -x509`,
// CN=attacker.example. Never trusted by anything.

const ED25519_PKCS8: &str = "MC4CAQAwBQYDK2VwBCIEIDit6sO3qeAo+LdrDjbV2M/obfODkDC+QceBZHyH9rCZ";
const P256_PKCS8: &str = concat!(
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOsOUM0jwtaWmvhDX1MOCxjOuSxspvwAWLfzaGYneH1WhRANCAASU",
    "exh38vGc3B9NuZuhoCyekTta1807eLvhxdDGedmPyaIHfA68GQv8L3sgFMXHmesiJlaaXokHm8VtWvPBf+sC",
);
const RSA_PKCS8: &str = concat!(
    "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCny8NUbftFRfM618S8/VsAch/c/mHo1LSrpKlSaF01i7GUzRks",
    "oj3ZjPxmc0LYbNmz9hHmcwIBxWMKuGe7zUWsGJ9ubY0QuZhRfJ0RJnhFZqN9o6wz+G3BHRkd93etOwTQ7Nii9694XY7Nku4Vz2dl",
    "3hr8/+j/8rKUnOT0Lh8Yw6Zm+RKFYRVMdFNPQo9SkDYtcGGKhAP5wRqlcqeaVpqqF++j7xZ15DUN2Qh58z7SFoo1P3e7WceC7Gim",
    "BVuZ67rQ1bukSIP4MIUc+n+FlzHrJ6it4zxP1VJLw6+GDnXdyMNLIrluiDw+YemG8Rov/fF3Vetqv0TdKEwPYd0EeyCfAgMBAAEC",
    "ggEAOWyaBgB3oC7+vTIPkfAQ3zevYOWr4088H4vEKMAvuf37QaXpSiWiDhxaWsNyanfiD10Upi3Qz4NaUFZopdRr1ig9E8EpKEKj",
    "9qszY6WrPnEQXZSQf96yzQakzGUfD2llzgxoXWlvoz09fGwez9cBl1KqINCB0GoiJIsHLevE16e7Vh114DA882t1aHgz02t+Gq37",
    "gxxlW5Z0vriwh09EAGpY7MmCzeIs5SWxL5dDZn+Q6l7lN21e02RccZxJBGrqeMytxQ9+g+296/QEp6hZfTkMtt56NW47qdAoQTG+",
    "1HUcE6MxWPsLA6rFek7rNNHmhyzMJZu4QopJGXRILYX25QKBgQDdTkE+M+btj7UtvgLwVfRmu90DsC4IWeUj+bLNiHUXUtcrMUro",
    "BCfYpUvsF0u2T8WITbCrV4QKpoh7xfquwoOH61dpM0aQXEHG0O9XTv6VjahPF1tswWTbpl/Q27o9gDpEOkAd2J5bASMf8G3p2xmk",
    "rvyenU7j/bpAUEQ1BF/GJQKBgQDCGftNulHSdJaMh1QVQ3DKXj62ThNL83U14rV03Iop2kVYooea9Xcu1YmKSbuAkU2v2vhjhoKC",
    "YjwsCnQlLWyPbAd0kRP9ml2tnm/D1gttwsYcsHSQ18xON4sZXpdPylya60uvh5iOB0bAt+NouFF/99JkyNRICGfhdeEDC/tGcwKB",
    "gDm+TW+5gyvBL3j79zBWfSrBIe3wblJngk5cvLa8QDERwGrYtb7MNslkd+bmPS8YqWXjP5G1iBJvWXVSNxKaVk+ErI4afvLz34XM",
    "xmZ1ih/jkmLwqT47R+G4C5AnhPS/HHTo7gnbl5YPOeb/iO5X6Nz7e5a3XPpIHeziBKoAtiyxAoGAe4ASkPNDCnhaLhIRIvJlOq3a",
    "kx58UrAWXPHh6PhGBLk3tFy9kZArhCYkPFQLtJM/bewSbSjxs0oT5SXFnr4XO+5NlBKXOJ5Wipirnlx7qxvp9+kiUeKswPvASqUP",
    "+5nTcFLUNlw9aekhUI/wZvoYCSdCvBO4VhjbF+5r/AdMmxcCgYBgqxJfzD5c4B7Ibnemo+vDWKLhYeQ4cneTu9NrBcGmKjqkg9I1",
    "sEAQ3Fo9VQa2fRaehtSG4kK2huvx8YSwXO4oCV/3EEAYaphhTY3VgqvScSjS+PMz/vkO98PyPukeI23p5gh7Hw5EjTlqdsRI53z1",
    "ax6fziVpqO+hCvmbmqPXKQ==",
);
const ED25519_CERT: &str = concat!(
    "MIIBTDCB/6ADAgECAhR0+Paa2pNSWIloTmM1BSgnNQaDazAFBgMrZXAwGzEZMBcGA1UEAwwQYXR0YWNrZXIuZXhhbXBsZTAgFw0y",
    "NjEyMDQxNDI1NTNaGA8yMTI2MTExMDE0MjU1M1owGzEZMBcGA1UEAwwQYXR0YWNrZXIuZXhhbXBsZTAqMAUGAytlcAMhADAdGuZB",
    "HW976FGdKJfHUO+CpkCSX6c/DtDDZwfe3dkoo1MwUTAdBgNVHQ4EFgQUcEI3s8QsFbZAwwpVQPDy6kmTTFIwHwYDVR0jBBgwFoAU",
    "cEI3s8QsFbZAwwpVQPDy6kmTTFIwDwYDVR0TAQH/BAUwAwEB/zAFBgMrZXADQQDPpSqwIGWNhvO4dflQzVIaHwmiS3ZHroqHJGBV",
    "05aDBoVq5PQ4oEkM+ex6AEmdFlKMijfuvjci0ZS9ZYSrdNYH",
);
const P256_CERT: &str = concat!(
    "MIIBjTCCATOgAwIBAgIUYVwI+G5zNlOVIZzx70Pb+YW9vZAwCgYIKoZIzj0EAwIwGzEZMBcGA1UEAwwQYXR0YWNrZXIuZXhhbXBs",
    "ZTAgFw0yNjEyMDQxNDI1NTNaGA8yMTI2MTExMDE0MjU1M1owGzEZMBcGA1UEAwwQYXR0YWNrZXIuZXhhbXBsZTBZMBMGByqGSM49",
    "AgEGCCqGSM49AwEHA0IABJR7GHfy8ZzcH025m6GgLJ6RO1rXzTt4u+HF0MZ52Y/Jogd8DrwZC/wveyAUxceZ6yImVppeiQebxW1a",
    "88F/6wKjUzBRMB0GA1UdDgQWBBSPOKjDInA2UXEggE6JprwLbuh4eTAfBgNVHSMEGDAWgBSPOKjDInA2UXEggE6JprwLbuh4eTAP",
    "BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIEPi9khYP73xw3W8bzUF8tSfSb/M3Ul8mvG6h1tIoH9iAiEAo59fY2GZ",
    "461Px3D47zRohdaMzPD0gWtJ8sNE0d2ilXQ=",
);
const RSA_CERT: &str = concat!(
    "MIIDGTCCAgGgAwIBAgIUMxdJzj9Y/H/wM2Sm7UW3VX6TFNkwDQYJKoZIhvcNAQELBQAwGzEZMBcGA1UEAwwQYXR0YWNrZXIuZXhh",
    "bXBsZTAgFw0yNjEyMDQxNDI1NTNaGA8yMTI2MTExMDE0MjU1M1owGzEZMBcGA1UEAwwQYXR0YWNrZXIuZXhhbXBsZTCCASIwDQYJ",
    "KoZIhvcNAQEBBQADggEPADCCAQoCggEBAKfLw1Rt+0VF8zrXxLz9WwByH9z+YejUtKukqVJoXTWLsZTNGSyiPdmM/GZzQths2bP2",
    "EeZzAgHFYwq4Z7vNRawYn25tjRC5mFF8nREmeEVmo32jrDP4bcEdGR33d607BNDs2KL3r3hdjs2S7hXPZ2XeGvz/6P/yspSc5PQu",
    "HxjDpmb5EoVhFUx0U09Cj1KQNi1wYYqEA/nBGqVyp5pWmqoX76PvFnXkNQ3ZCHnzPtIWijU/d7tZx4LsaKYFW5nrutDVu6RIg/gw",
    "hRz6f4WXMesnqK3jPE/VUkvDr4YOdd3Iw0siuW6IPD5h6YbxGi/98XdV62q/RN0oTA9h3QR7IJ8CAwEAAaNTMFEwHQYDVR0OBBYE",
    "FAs71N24vRjq0HY8sOQpUDTBshvXMB8GA1UdIwQYMBaAFAs71N24vRjq0HY8sOQpUDTBshvXMA8GA1UdEwEB/wQFMAMBAf8wDQYJ",
    "KoZIhvcNAQELBQADggEBAKDAMkEdjdYVKdeFFMM/Jjv5kJ09/uVFOmAbefq2eHDXhhR1lhKFHNCeoJ8txD4NTMeddEUlq2J3SCG9",
    "+YzNZw0GWcN6CciFnKkzJeKwHXiVPfAm9bOGvDRt9NdehcxVlktpuB0NFw0L6e3OR3PQtk0a3HUaqvo5ld9rwXA8m99dfC2RJ7y4",
    "DqqeHgxPMMVwagrKDozMNBzBnPhk0JMZRX+wFq86E+3ELLDgMHLye1VyxoDFCC0mikTkTnch6PHfUDlbP5GXOPCRwQmjvJ4ou+A9",
    "UTa0vTzfkwhbVDAISpthMu7gpqhQ4AjIn6LVLLvLK4pd8oMYXTovuuHDEujUurE=",
);

#[test]
fn the_attackers_keys_are_what_their_jwk_and_certificate_say() {
    // So a server that trusted a `jwk`, `jku`, `x5u` or `x5c` header would
    // verify the attacker's tokens: the rows above test the server, not a
    // broken attacker.
    for alg in ["HS256", "EdDSA", "ES256", "RS256"] {
        let attacker = Attacker::of(alg);
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(attacker.jwk("k")).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let token =
            jws(r#"{"alg":"ALG","typ":"at+jwt"}"#.replace("ALG", alg).as_str(), r#"{"sub":"x"}"#, attacker.signer());
        let mut validation = jsonwebtoken::Validation::new(alg.parse().unwrap());
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        assert!(jsonwebtoken::decode::<Value>(&token, &key, &validation).is_ok(), "{alg}");
        if let Some(cert) = attacker.cert() {
            let cert = STANDARD.decode(cert).unwrap();
            let public = match &attacker {
                Attacker::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
                Attacker::P256(pair) => pair.public_key().as_ref().to_vec(),
                Attacker::Rsa(pair) => ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public()).n,
                Attacker::Hmac(_) => unreachable!(),
            };
            assert!(cert.windows(public.len()).any(|w| w == public), "{alg} certificate holds the key");
        }
    }
}
