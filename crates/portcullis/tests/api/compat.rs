//! The promise to teams leaving the FastAPI tutorial: their resource servers
//! (PyJWT, `jwt.decode(token, SECRET_KEY, algorithms=["HS256"])`, then
//! `payload["sub"]`) accept portcullis tokens unchanged.

use std::path::PathBuf;

use crate::helpers::{ADMIN_PASSWORD, SECRET, spawn_app, spawn_with};

fn tutorial_resource_server(secret: &str, token: &str) -> Result<String, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/tutorial_resource_server.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .env("SECRET_KEY", secret)
        .env("TOKEN", token)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("ModuleNotFoundError"), "PyJWT is not installed: pip install pyjwt ({stderr})");
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()) } else { Err(stderr) }
}

#[tokio::test]
async fn a_tutorial_resource_server_accepts_a_portcullis_token_and_reads_sub() {
    let app = spawn_app().await;
    app.add_user("johndoe", "johns-password-1", "").await;
    let token = app.access_token("johndoe", "johns-password-1").await;

    assert_eq!(tutorial_resource_server(SECRET, &token), Ok("johndoe".into()));
}

#[tokio::test]
async fn a_tutorial_resource_server_with_another_secret_refuses_it() {
    let app = spawn_app().await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;

    let refused = tutorial_resource_server("not-the-secret-0123456789abcdef0123", &token);

    assert!(refused.unwrap_err().contains("InvalidSignatureError"));
}

#[tokio::test]
async fn with_an_audience_configured_the_tutorial_server_refuses_as_the_contract_warns() {
    // Why `aud` is opt-in: PyJWT refuses a token with `aud` when the caller
    // names no audience.
    let app = spawn_with(|c| c.audience = vec!["my-api".into()]).await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;

    let refused = tutorial_resource_server(SECRET, &token);

    assert!(refused.unwrap_err().contains("InvalidAudienceError"));
}
