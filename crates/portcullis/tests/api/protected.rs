//! Protected routes (RFC 6750): every way a bearer token can be wrong.

use jsonwebtoken::{Algorithm, Header};
use portcullis::domain::UserKey;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, SECRET, TestApp, jwt_part, now, spawn_app, spawn_with};

fn at_header() -> Header {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header
}

fn claims(app: &TestApp, sub: &str, now: i64) -> Value {
    json!({
        "iss": app.issuer(), "sub": sub, "iat": now, "nbf": now, "exp": now + 900,
        "jti": "0123456789abcdef0123456789abcdef", "scope": "admin",
    })
}

async fn assert_invalid_token(app: &TestApp, token: &str) {
    let response = app.me(token).await;
    assert_eq!(response.status(), 401, "token {token}");
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{challenge}");
    let body: Value = response.json().await.unwrap();
    // Exactly the tutorials' text (their clients compare it); the reason apart.
    assert_eq!(body["detail"], "Could not validate credentials", "{body}");
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert!(!body["error_description"].as_str().unwrap().is_empty(), "{body}");
}

#[tokio::test]
async fn users_me_and_user_current_show_the_callers_profile() {
    let app = spawn_app().await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;

    for path in ["/users/me", "/users/me/", "/user/current/"] {
        let response = app.get(path, Some(&format!("Bearer {token}"))).await;
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"username": "admin", "email": null, "full_name": "Administrator", "disabled": false, "scopes": ["admin"]})
        );
    }
}

#[tokio::test]
async fn a_lower_case_bearer_scheme_is_accepted() {
    let app = spawn_app().await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;

    let response = app.get("/users/me", Some(&format!("bearer {token}"))).await;

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn no_token_gets_a_bare_bearer_challenge() {
    let app = spawn_app().await;

    let response = app.get("/users/me", None).await;

    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "Not authenticated");
}

#[tokio::test]
async fn a_garbled_authorization_header_is_refused_with_401() {
    let app = spawn_app().await;

    for value in
        ["Basic YWRtaW46cGFzc3dvcmQ=", "Bearer", "Bearer ", "Token abc", "garbage", "Bearer a.b", "Bearer ....."]
    {
        let response = app.get("/users/me", Some(value)).await;
        assert_eq!(response.status(), 401, "{value:?}");
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{value:?}");
    }
    let raw = app
        .client
        .get(format!("{}/users/me", app.url))
        .header("authorization", reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let app = spawn_app().await;
    let past = now() - 3600;
    let token = app.state.keyring.issue("admin", &Default::default(), None, past);

    assert_invalid_token(&app, &token.jwt).await;
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let app = spawn_app().await;
    let token = app.state.keyring.issue("admin", &Default::default(), None, now() + 600);

    assert_invalid_token(&app, &token.jwt).await;
}

#[tokio::test]
async fn a_token_issued_with_the_servers_own_issuer_now_is_accepted() {
    // The control for the two tests above: the same path with `now`.
    let app = spawn_app().await;
    let sid = app.live_session("admin", ADMIN_PASSWORD).await;
    let token = app.state.keyring.issue("admin", &Default::default(), Some(&sid), now());

    assert_eq!(app.me(&token.jwt).await.status(), 200);
}

#[tokio::test]
async fn a_tampered_signature_or_payload_is_refused() {
    let app = spawn_app().await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;
    let parts: Vec<&str> = token.split('.').collect();

    let mut signature = parts[2].to_owned();
    let last = signature.pop().unwrap();
    signature.push(if last == 'A' { 'B' } else { 'A' });
    let bad_signature = format!("{}.{}.{}", parts[0], parts[1], signature);
    assert_invalid_token(&app, &bad_signature).await;

    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("someone-else");
    let swapped = format!("{}.{}.{}", parts[0], engine.encode(claims.to_string()), parts[2]);
    assert_invalid_token(&app, &swapped).await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let app = spawn_app().await;
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
    let payload = engine.encode(claims(&app, "admin", now()).to_string());

    assert_invalid_token(&app, &format!("{header}.{payload}.")).await;
    assert_invalid_token(&app, &format!("{header}.{payload}")).await;
}

#[tokio::test]
async fn an_hs256_token_signed_with_another_secret_is_refused() {
    let app = spawn_app().await;
    let token = app.forge(&at_header(), &claims(&app, "admin", now()), b"another-secret-0123456789abcdef0123456789");

    assert_invalid_token(&app, &token).await;
}

#[tokio::test]
async fn a_token_with_the_right_secret_but_another_algorithm_is_refused() {
    let app = spawn_app().await;
    let mut header = at_header();
    header.alg = Algorithm::HS512;

    let token = app.forge(&header, &claims(&app, "admin", now()), SECRET.as_bytes());

    assert_invalid_token(&app, &token).await;
}

#[tokio::test]
async fn a_jwt_that_is_not_an_access_token_is_refused() {
    // Same key, same claims, but `typ: JWT` (e.g. an ID token): RFC 9068 §4.
    let app = spawn_app().await;
    let token = app.forge(&Header::new(Algorithm::HS256), &claims(&app, "admin", now()), SECRET.as_bytes());

    assert_invalid_token(&app, &token).await;
}

#[tokio::test]
async fn a_forged_token_with_the_right_secret_is_the_control() {
    // Proves the forging helper makes tokens the server accepts, so the
    // refusals above are about what they change and nothing else.
    let app = spawn_app().await;
    let mut c = claims(&app, "admin", now());
    c["sid"] = json!(app.live_session("admin", ADMIN_PASSWORD).await);
    let token = app.forge(&at_header(), &c, SECRET.as_bytes());

    assert_eq!(app.me(&token).await.status(), 200);
}

#[tokio::test]
async fn a_token_signed_with_the_shared_secret_but_naming_no_session_is_refused() {
    let app = spawn_app().await;

    let token = app.forge(&at_header(), &claims(&app, "admin", now()), SECRET.as_bytes());

    assert_invalid_token(&app, &token).await;
    let response = app.get("/admin/users", Some(&format!("Bearer {token}"))).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_user_resigning_their_token_with_more_scopes_gets_nothing_more() {
    // Under HS256 the secret is shared with resource servers: whoever holds
    // it must not mint themselves admin at portcullis.
    let app = spawn_app().await;
    app.add_user("rita", "ritas-password-1", "read").await;
    let own = app.access_token("rita", "ritas-password-1").await;
    let mut c = jwt_part(&own, 1);

    for claimed in ["admin", "read admin", "read write"] {
        c["scope"] = json!(claimed);
        let forged = app.forge(&at_header(), &c, SECRET.as_bytes());
        let response = app.get("/admin/users", Some(&format!("Bearer {forged}"))).await;
        assert_eq!(response.status(), 401, "{claimed}");
        assert_invalid_token(&app, &forged).await;
    }
    // Another user's live session does not lend its grant either.
    c["scope"] = json!("admin");
    c["sid"] = json!(app.live_session("admin", ADMIN_PASSWORD).await);
    let borrowed = app.forge(&at_header(), &c, SECRET.as_bytes());
    assert_eq!(app.get("/admin/users", Some(&format!("Bearer {borrowed}"))).await.status(), 401);
    // The control: re-signed as it was, it still works.
    c["scope"] = json!("read");
    c["sid"] = jwt_part(&own, 1)["sid"].clone();
    assert_eq!(app.me(&app.forge(&at_header(), &c, SECRET.as_bytes())).await.status(), 200);
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let app = spawn_app().await;
    let mut c = claims(&app, "admin", now());
    c["iss"] = json!("http://evil.test");

    assert_invalid_token(&app, &app.forge(&at_header(), &c, SECRET.as_bytes())).await;
}

#[tokio::test]
async fn with_an_audience_configured_a_token_for_another_audience_is_refused() {
    let app = spawn_with(|c| c.audience = vec!["my-api".into()]).await;
    let mut c = claims(&app, "admin", now());
    c["sid"] = json!(app.live_session("admin", ADMIN_PASSWORD).await);

    assert_invalid_token(&app, &app.forge(&at_header(), &c, SECRET.as_bytes())).await;
    c["aud"] = json!("other-api");
    assert_invalid_token(&app, &app.forge(&at_header(), &c, SECRET.as_bytes())).await;
    c["aud"] = json!(["other-api", "my-api"]);
    assert_eq!(app.me(&app.forge(&at_header(), &c, SECRET.as_bytes())).await.status(), 200);
}

#[tokio::test]
async fn a_token_missing_a_claim_is_refused() {
    let app = spawn_app().await;
    for missing in ["exp", "sub", "iss", "jti"] {
        let mut c = claims(&app, "admin", now());
        c.as_object_mut().unwrap().remove(missing);
        assert_invalid_token(&app, &app.forge(&at_header(), &c, SECRET.as_bytes())).await;
    }
}

#[tokio::test]
async fn the_token_of_a_user_disabled_or_deleted_since_is_refused() {
    let app = spawn_app().await;
    app.add_user("erin", "erins-password-1", "").await;
    app.add_user("frank", "franks-password-1", "").await;
    let erin = app.access_token("erin", "erins-password-1").await;
    let frank = app.access_token("frank", "franks-password-1").await;
    assert_eq!(app.me(&erin).await.status(), 200);

    app.disable("erin").await;
    app.state.store.delete_user(&UserKey::of("frank"), app.state.clock.now()).await.unwrap();

    assert_invalid_token(&app, &erin).await;
    assert_invalid_token(&app, &frank).await;
}
