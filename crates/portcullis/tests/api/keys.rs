//! Signing keys: asymmetric algorithms, JWKS, rotation picked up by a running
//! server, the algorithm-confusion attack, discovery metadata, and the CLI.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, Header};
use portcullis::auth::keyring::ACTIVATION_DELAY_SECS;
use portcullis::auth::signing::KeyAlgorithm;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, SECRET, TestApp, command, jwt_part, now, spawn_app, spawn_with};

async fn jwks(app: &TestApp) -> Vec<Value> {
    let body: Value = app.get("/.well-known/jwks.json", None).await.json().await.unwrap();
    body["keys"].as_array().unwrap().clone()
}

/// Runs the Python verifier off the async runtime: it calls back into the
/// server under test, which must keep serving meanwhile.
async fn pyjwt_verifies(app: &TestApp, token: &str, alg: &str) -> Result<String, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/jwks_verify.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .env("JWKS_URL", format!("{}/.well-known/jwks.json", app.url))
        .env("TOKEN", token)
        .env("ALG", alg)
        .env("ISSUER", app.issuer())
        .env("NO_PROXY", "*");
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("ModuleNotFoundError"), "install pyjwt[crypto]: {stderr}");
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).trim().into()) } else { Err(stderr) }
}

/// Runs the CLI against the test server's database.
fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    command(std::env::temp_dir().as_path())
        .env("PORTCULLIS_SECRET_KEY", SECRET)
        .env("PORTCULLIS_DATABASE_URL", &app.config.deployment.database_url)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn under_hs256_the_jwks_is_empty() {
    let app = spawn_app().await;

    assert!(jwks(&app).await.is_empty());
}

#[tokio::test]
async fn asymmetric_tokens_verify_through_the_jwks_with_pyjwt() {
    for (algorithm, name) in
        [(KeyAlgorithm::EdDsa, "EdDSA"), (KeyAlgorithm::Es256, "ES256"), (KeyAlgorithm::Rs256, "RS256")]
    {
        let app = spawn_with(|c| c.algorithm = algorithm).await;
        let token = app.access_token("admin", ADMIN_PASSWORD).await;

        let keys = jwks(&app).await;
        assert_eq!(keys.len(), 1, "{name}");
        let header = jwt_part(&token, 0);
        assert_eq!(header["alg"], name);
        assert_eq!(keys[0]["kid"], header["kid"]);
        assert_eq!(keys[0]["alg"], name);
        assert_eq!(keys[0]["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(keys[0].get(private).is_none(), "{name} publishes private member {private}");
        }
        assert_eq!(app.me(&token).await.status(), 200, "{name}");
        assert_eq!(pyjwt_verifies(&app, &token, name).await, Ok("admin".into()), "{name}");
    }
}

#[tokio::test]
async fn pyjwt_refuses_a_tampered_asymmetric_token() {
    let app = spawn_with(|c| c.algorithm = KeyAlgorithm::EdDsa).await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("mallory");
    parts[1] = engine.encode(claims.to_string());

    assert!(pyjwt_verifies(&app, &parts.join("."), "EdDSA").await.is_err());
    assert_eq!(app.me(&parts.join(".")).await.status(), 401);
}

#[tokio::test]
async fn the_algorithm_confusion_attack_is_refused() {
    // CVE-2024-33663 / CVE-2022-29217: an HS256 token whose HMAC key is the
    // server's *public* key, in every form an attacker might try.
    for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256, KeyAlgorithm::Rs256] {
        let app = spawn_with(|c| c.algorithm = algorithm).await;
        let key = jwks(&app).await.remove(0);
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(key["kid"].as_str().unwrap().into());
        let claims = json!({
            "iss": app.issuer(), "sub": "admin", "iat": now(), "nbf": now(), "exp": now() + 600,
            "jti": "c0ffee", "scope": "admin",
        });
        let candidates = [
            key.to_string(),
            key["x"].as_str().unwrap_or_default().into(),
            key["n"].as_str().unwrap_or_default().into(),
        ];
        for secret in candidates.iter().filter(|s| !s.is_empty()) {
            let forged = app.forge(&header, &claims, secret.as_bytes());
            let response = app.me(&forged).await;
            assert_eq!(response.status(), 401, "{algorithm}");
            let challenge = response.headers()["www-authenticate"].to_str().unwrap();
            assert!(challenge.contains("invalid_token"), "{challenge}");
        }
    }
}

#[tokio::test]
async fn header_parameters_pointing_at_other_keys_are_never_followed() {
    let app = spawn_with(|c| c.algorithm = KeyAlgorithm::EdDsa).await;
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = json!({"iss": app.issuer(), "sub": "admin", "iat": now(), "nbf": now(), "exp": now() + 600, "jti": "j", "scope": ""});
    // An attacker's own HS256 key, offered inline (jwk) and by URL (jku/x5u).
    let header = json!({"alg": "HS256", "typ": "at+jwt", "jku": "http://127.0.0.1:1/jwks.json",
        "x5u": "http://127.0.0.1:1/cert.pem", "jwk": {"kty": "oct", "k": engine.encode("attacker-key")}});
    let input = format!("{}.{}", engine.encode(header.to_string()), engine.encode(claims.to_string()));
    let signature = {
        use hmac_sig::sign;
        sign(b"attacker-key", input.as_bytes())
    };
    let forged = format!("{input}.{}", engine.encode(signature));

    assert_eq!(app.me(&forged).await.status(), 401);
}

mod hmac_sig {
    pub fn sign(key: &[u8], message: &[u8]) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        ring::hmac::sign(&key, message).as_ref().to_vec()
    }
}

#[tokio::test]
async fn a_rotation_is_picked_up_without_a_restart_and_old_tokens_keep_verifying() {
    let app = spawn_with(|c| c.algorithm = KeyAlgorithm::EdDsa).await;
    let before = app.access_token("admin", ADMIN_PASSWORD).await;
    let old_kid = jwt_part(&before, 0)["kid"].as_str().unwrap().to_owned();

    let out = cli(&app, &["keys", "rotate", "--algorithm", "ES256"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The new key is published at once and signs after its activation
    // delay, by the wall clock here: PyJWT and the CLI below read it too.
    app.state.keyring.refresh().await.unwrap();
    assert_eq!(jwt_part(&app.access_token("admin", ADMIN_PASSWORD).await, 0)["kid"], json!(old_kid), "not yet");
    let mut after = String::new();
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        app.state.keyring.refresh().await.unwrap();
        after = app.access_token("admin", ADMIN_PASSWORD).await;
        if jwt_part(&after, 0)["kid"] != old_kid {
            break;
        }
    }
    let header = jwt_part(&after, 0);
    assert_ne!(header["kid"], old_kid, "the new key signs after its activation delay");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(app.me(&before).await.status(), 200, "tokens of the previous key still verify");
    assert_eq!(app.me(&after).await.status(), 200);
    let kids: Vec<Value> = jwks(&app).await.iter().map(|k| k["kid"].clone()).collect();
    assert!(kids.contains(&json!(old_kid)) && kids.contains(&header["kid"]), "{kids:?}");
    assert_eq!(pyjwt_verifies(&app, &before, "EdDSA").await, Ok("admin".into()));
    assert_eq!(pyjwt_verifies(&app, &after, "ES256").await, Ok("admin".into()));

    let list = String::from_utf8(cli(&app, &["keys", "list"]).stdout).unwrap();
    assert!(list.contains("active") && list.contains("verifying"), "{list}");
}

#[tokio::test]
async fn an_hs256_rotation_moves_off_the_shared_secret() {
    let app = spawn_app().await;
    let before = app.access_token("admin", ADMIN_PASSWORD).await;

    let out = cli(&app, &["keys", "rotate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no longer the secret"));
    app.state.clock.advance(ACTIVATION_DELAY_SECS);
    app.state.keyring.refresh().await.unwrap();
    let after = app.access_token("admin", ADMIN_PASSWORD).await;

    assert_ne!(jwt_part(&after, 0)["kid"], jwt_part(&before, 0)["kid"]);
    assert_eq!(app.me(&before).await.status(), 200);
    assert_eq!(app.me(&after).await.status(), 200);
    assert!(jwks(&app).await.is_empty(), "an HMAC key is never published");
}

#[tokio::test]
async fn the_database_alone_does_not_give_away_a_signing_key() {
    let app = spawn_with(|c| c.algorithm = KeyAlgorithm::EdDsa).await;
    let rows = app.state.store.list_keys().await.unwrap();
    let sealed = rows[0].sealed_private.clone().unwrap();

    // Unsealing with another secret fails; the blob is not a PKCS#8 key.
    let other = portcullis::auth::signing::Sealer::new("some-other-secret-0123456789abcdef0123");
    let attempt = portcullis::auth::signing::SigningKey::unseal(
        &rows[0].kid,
        KeyAlgorithm::EdDsa,
        Some(&sealed),
        None,
        "some-other-secret-0123456789abcdef0123",
        &other,
    );
    assert!(attempt.is_err());
    assert!(ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&sealed).is_err());

    let wrong_secret = command(std::env::temp_dir().as_path())
        .env("PORTCULLIS_SECRET_KEY", "some-other-secret-3e4dadcfc9216d9b8bcb9e09cb4bc422df73e2ccd90a81")
        .env("PORTCULLIS_DATABASE_URL", &app.config.deployment.database_url)
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(!wrong_secret.status.success());
    assert!(String::from_utf8_lossy(&wrong_secret.stderr).contains("secret"));
}

#[tokio::test]
async fn with_a_master_key_the_hs256_secret_alone_cannot_unseal_signing_keys() {
    const MASTER: &str = "master-key-45f146aa040625e57881dc2a3495a34f4a300729101d7151594e";
    let app = spawn_with(|c| {
        c.algorithm = KeyAlgorithm::EdDsa;
        c.deployment.master_key = Some(MASTER.into());
    })
    .await;
    let row = app.state.store.list_keys().await.unwrap().remove(0);
    let open_with = |key: &str| {
        let sealer = portcullis::auth::signing::Sealer::new(key);
        portcullis::auth::signing::SigningKey::unseal(
            &row.kid,
            KeyAlgorithm::EdDsa,
            row.sealed_private.as_deref(),
            None,
            SECRET,
            &sealer,
        )
    };

    assert!(open_with(SECRET).is_err(), "the secret given to resource servers opens nothing");
    assert!(open_with(MASTER).is_ok());
    let without = cli(&app, &["keys", "rotate"]);
    assert!(!without.status.success(), "the CLI needs the master key too");
    let with = command(std::env::temp_dir().as_path())
        .env("PORTCULLIS_SECRET_KEY", SECRET)
        .env("PORTCULLIS_MASTER_KEY", MASTER)
        .env("PORTCULLIS_DATABASE_URL", &app.config.deployment.database_url)
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stderr));
}

#[tokio::test]
async fn token_decode_verifies_with_the_servers_keys() {
    let app = spawn_with(|c| c.algorithm = KeyAlgorithm::Rs256).await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;

    let good = cli(&app, &["token", "decode", &token]);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(stdout.contains("\"sub\": \"admin\"") && stdout.contains("valid"), "{stdout}");

    app.post_form("/token/revoke", &format!("token={token}")).await;
    let revoked = cli(&app, &["token", "decode", &token]);
    assert!(!revoked.status.success());
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("revoked"));

    let garbage = cli(&app, &["token", "decode", "not.a.jwt"]);
    assert!(!garbage.status.success());
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("token refused"));
}

#[tokio::test]
async fn the_metadata_names_routes_that_exist() {
    let app = spawn_with(|c| c.algorithm = KeyAlgorithm::EdDsa).await;

    let meta: Value = app.get("/.well-known/oauth-authorization-server", None).await.json().await.unwrap();

    assert_eq!(meta["issuer"], app.issuer());
    assert_eq!(
        meta["grant_types_supported"],
        json!(["password", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"])
    );
    assert!(meta["scopes_supported"].as_array().unwrap().contains(&json!("admin")));
    assert_eq!(meta["access_token_signing_alg_values_supported"], json!(["EdDSA"]));
    for (field, method) in [
        ("token_endpoint", reqwest::Method::POST),
        ("revocation_endpoint", reqwest::Method::POST),
        ("introspection_endpoint", reqwest::Method::POST),
        ("jwks_uri", reqwest::Method::GET),
    ] {
        let url = meta[field].as_str().unwrap();
        let path = url.strip_prefix(app.issuer().as_str()).unwrap_or_else(|| panic!("{field} {url} under the issuer"));
        let response = app.client.request(method, format!("{}{path}", app.url)).send().await.unwrap();
        assert!(![404, 405].contains(&response.status().as_u16()), "{field} {path}: {}", response.status());
    }
}
