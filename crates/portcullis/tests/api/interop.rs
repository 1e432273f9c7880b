//! Third-party OAuth clients against the real server: Authlib (requests and
//! httpx) fetches `client_credentials` tokens by `client_secret_basic` and
//! `client_secret_post`, PyJWT verifies them, introspection answers, a wrong
//! secret gets `invalid_client` (tests/python/client_interop.py).

use std::path::PathBuf;

use portcullis::auth::signing::KeyAlgorithm;

use crate::clients::add_client;
use crate::helpers::{SECRET, TestApp, spawn_app, spawn_with};

/// A client id that RFC 6749 §2.3.1 form-encodes inside Basic: `+`, `%`
/// and a non-ASCII letter.
const ODD_CLIENT_ID: &str = "odd+é%41";

/// Runs the script off the async runtime: it calls back into the server
/// under test, which must keep serving meanwhile. Returns its stdout.
async fn client_interop(app: &TestApp, algorithm: &str, secret_key: &str) -> String {
    let secret = add_client(app, "svc", &["read", "introspect"]).await;
    let odd_secret = add_client(app, ODD_CLIENT_ID, &["read"]).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/client_interop.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .env("BASE_URL", &app.url)
        .env("CLIENT_ID", "svc")
        .env("CLIENT_SECRET", secret)
        .env("ODD_CLIENT_ID", ODD_CLIENT_ID)
        .env("ODD_CLIENT_SECRET", odd_secret)
        .env("ALGORITHM", algorithm)
        .env("SECRET_KEY", secret_key)
        .env("NO_PROXY", "*");
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("ModuleNotFoundError"), "pip install authlib httpx requests 'pyjwt[crypto]': {stderr}");
    assert!(out.status.success(), "client_interop.py failed:\n{stdout}\n{stderr}");
    stdout
}

#[tokio::test]
async fn authlib_clients_get_hs256_tokens_that_pyjwt_verifies() {
    let app = spawn_app().await;

    let stdout = client_interop(&app, "HS256", SECRET).await;

    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[tokio::test]
async fn authlib_clients_get_eddsa_tokens_that_pyjwt_verifies_through_the_jwks() {
    let app = spawn_with(|c| c.algorithm = KeyAlgorithm::EdDsa).await;

    let stdout = client_interop(&app, "EdDSA", "").await;

    assert!(stdout.contains("all checks passed"), "{stdout}");
}
