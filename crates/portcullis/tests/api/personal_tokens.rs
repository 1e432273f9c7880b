//! Personal access tokens and token exchange (RFC 8693): a PAT is traded
//! for a short-lived access token, an access token for a narrower one.

use serde_json::{Value, json};

use crate::clients::{add_client, client_token, post};
use crate::helpers::{ADMIN_PASSWORD, TestApp, jwt_part, now, spawn_app, spawn_with};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const PAT: &str = "urn:portcullis:token-type:personal_access_token";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

async fn token_of(app: &TestApp, user: &str, password: &str, scope: &str) -> String {
    let response = post(app, "/token", None, &[("username", user), ("password", password), ("scope", scope)]).await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

async fn make_pat(app: &TestApp, bearer: &str, body: Value) -> (u16, Value) {
    let response =
        app.client.post(format!("{}/users/me/tokens", app.url)).bearer_auth(bearer).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    if let Some(token) = body["token"].as_str() {
        crate::capture::record("refresh_token", token);
    }
    (status, body)
}

async fn exchange(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let mut all = vec![("grant_type", EXCHANGE)];
    all.extend_from_slice(form);
    let response = post(app, "/token", None, &all).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn exchange_pat(app: &TestApp, pat: &str, scope: &str) -> (u16, Value) {
    exchange(app, &[("subject_token", pat), ("subject_token_type", PAT), ("scope", scope)]).await
}

/// A user `pat` with scopes `items orders`, their token, and a PAT for `items`.
async fn setup(app: &TestApp) -> (String, String, String) {
    app.add_user("pat", "pats-password-1", "items orders").await;
    let bearer = token_of(app, "pat", "pats-password-1", "").await;
    let (status, body) =
        make_pat(app, &bearer, json!({ "name": "ci job", "scopes": ["items"], "expires_in": 3600 })).await;
    assert_eq!(status, 201, "{body}");
    (bearer, body["token"].as_str().unwrap().to_owned(), body["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_pat_is_shown_once_and_exchanged_for_a_short_lived_access_token() {
    let app = spawn_app().await;
    let (bearer, pat, id) = setup(&app).await;

    assert!(pat.starts_with("pcat_") && pat.len() >= 5 + 43, "{pat}");
    let listed: Value = app.get("/users/me/tokens", Some(&format!("Bearer {bearer}"))).await.json().await.unwrap();
    assert_eq!(listed["tokens"][0]["id"], id.as_str());
    assert_eq!(listed["tokens"][0]["name"], "ci job");
    assert!(!listed.to_string().contains(&pat) && listed["tokens"][0].get("token").is_none());

    let (status, body) = exchange_pat(&app, &pat, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["scope"], "items");
    assert!(body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().unwrap();
    let claims = jwt_part(token, 1);
    assert_eq!((claims["sub"].as_str(), claims["sid"].as_str()), (Some("pat"), Some(id.as_str())));
    assert!(claims["exp"].as_i64().unwrap() <= now() + 15 * 60 + 5);
    assert_eq!(app.me(token).await.status(), 200, "an ordinary user token");

    // The PAT itself is never a bearer token.
    assert_eq!(app.me(&pat).await.status(), 401);
}

#[tokio::test]
async fn an_exchange_never_widens_a_pat() {
    let app = spawn_app().await;
    let (_, pat, _) = setup(&app).await;

    let (status, body) = exchange_pat(&app, &pat, "items orders").await;
    let (narrow, _) = exchange_pat(&app, &pat, "items").await;

    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("orders"));
    assert_eq!(narrow, 200);
}

#[tokio::test]
async fn a_pat_gets_at_most_the_scopes_of_the_token_making_it() {
    let app = spawn_app().await;
    app.add_user("pat", "pats-password-1", "items orders").await;
    let narrow = token_of(&app, "pat", "pats-password-1", "items").await;

    let (wider, body) = make_pat(&app, &narrow, json!({ "name": "x", "scopes": ["orders"] })).await;
    let (held, made) = make_pat(&app, &narrow, json!({ "name": "x", "scopes": ["items"] })).await;

    assert_eq!(wider, 403, "{body}");
    assert_eq!(held, 201);
    // Nor can a token narrowed by exchange (handed to a service): it would
    // outlive its session, its audience and its lifetime.
    let form = [("subject_token", narrow.as_str()), ("subject_token_type", ACCESS), ("audience", "svc")];
    let (_, narrowed) = exchange(&app, &form).await;
    let narrowed = narrowed["access_token"].as_str().unwrap();
    let (status, body) = make_pat(&app, narrowed, json!({ "name": "y", "scopes": [] })).await;
    assert_eq!(status, 403, "{body}");
    // A token from a PAT cannot mint more PATs (a PAT must not renew itself).
    let (_, exchanged) = exchange_pat(&app, made["token"].as_str().unwrap(), "").await;
    let from_pat = exchanged["access_token"].as_str().unwrap();
    let (status, body) = make_pat(&app, from_pat, json!({ "name": "y", "scopes": [] })).await;
    assert_eq!(status, 403, "{body}");
    for bad in [
        json!({ "name": "", "scopes": [] }),
        json!({ "name": "x", "scopes": [], "expires_in": 10 }),
        json!({ "name": "x", "scopes": [], "expires_in": 400 * 24 * 3600 }),
        json!({ "name": "x\u{7}", "scopes": [] }),
        json!({ "name": "x", "scopes": ["bad scope"] }),
    ] {
        let (status, body) = make_pat(&app, &narrow, bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
}

#[tokio::test]
async fn revoking_a_pat_ends_it_and_every_token_exchanged_for_it() {
    let app = spawn_app().await;
    let (bearer, pat, id) = setup(&app).await;
    let (_, body) = exchange_pat(&app, &pat, "").await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&token).await.status(), 200);

    let deleted = app.client.delete(format!("{}/users/me/tokens/{id}", app.url)).bearer_auth(&bearer).send().await;

    assert_eq!(deleted.unwrap().status(), 204);
    assert_eq!(app.me(&token).await.status(), 401, "exchanged before");
    let (status, body) = exchange_pat(&app, &pat, "").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let again = app.client.delete(format!("{}/users/me/tokens/{id}", app.url)).bearer_auth(&bearer).send().await;
    assert_eq!(again.unwrap().status(), 404);
    for odd in ["%00", "a%00b", "x", "0123456789abcdef0123456789ABCDEF"] {
        let response = app.client.delete(format!("{}/users/me/tokens/{odd}", app.url)).bearer_auth(&bearer).send();
        assert_eq!(response.await.unwrap().status(), 404, "{odd}");
    }

    // RFC 7009 takes a PAT too (a secret scanner that found one).
    let (_, made) = make_pat(&app, &bearer, json!({ "name": "leaked", "scopes": [] })).await;
    let leaked = made["token"].as_str().unwrap();
    assert_eq!(post(&app, "/token/revoke", None, &[("token", leaked)]).await.status(), 200);
    assert_eq!(exchange_pat(&app, leaked, "").await.0, 400);
}

#[tokio::test]
async fn disabling_the_user_ends_pats_and_a_password_change_does_not() {
    let app = spawn_app().await;
    let (bearer, pat, _) = setup(&app).await;
    let (_, body) = exchange_pat(&app, &pat, "").await;
    let token = body["access_token"].as_str().unwrap().to_owned();

    let changed = app
        .client
        .post(format!("{}/users/me/password", app.url))
        .bearer_auth(&bearer)
        .json(&json!({ "current_password": "pats-password-1", "new_password": "pats-password-2" }))
        .send()
        .await
        .unwrap();
    crate::capture::record("password", "pats-password-2");
    assert!(changed.status().is_success(), "{}", changed.status());
    assert_eq!(app.me(&bearer).await.status(), 401, "the login session ended");
    assert_eq!(app.me(&token).await.status(), 200, "a PAT outlives a password change");
    assert_eq!(exchange_pat(&app, &pat, "").await.0, 200);

    app.disable("pat").await;
    assert_eq!(app.me(&token).await.status(), 401);
    let (status, body) = exchange_pat(&app, &pat, "").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;
    let enable = app
        .client
        .patch(format!("{}/admin/users/pat", app.url))
        .bearer_auth(&admin)
        .json(&json!({ "disabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(enable.status(), 200);
    assert_eq!(exchange_pat(&app, &pat, "").await.0, 400, "enabling does not bring PATs back");
}

#[tokio::test]
async fn logging_out_with_an_exchanged_token_ends_that_token_not_the_pat() {
    let app = spawn_app().await;
    let (_, pat, _) = setup(&app).await;
    let (_, body) = exchange_pat(&app, &pat, "").await;
    let token = body["access_token"].as_str().unwrap().to_owned();

    let logout = app.client.post(format!("{}/logout", app.url)).bearer_auth(&token).send().await.unwrap();

    assert_eq!(logout.status(), 204);
    assert_eq!(app.me(&token).await.status(), 401, "that token is denied");
    let (status, body) = exchange_pat(&app, &pat, "").await;
    assert_eq!(status, 200, "the PAT goes on: {body}");
}

#[tokio::test]
async fn an_expired_pat_is_refused() {
    let app = spawn_app().await;
    app.add_user("pat", "pats-password-1", "items").await;
    let bearer = token_of(&app, "pat", "pats-password-1", "").await;
    let (_, made) = make_pat(&app, &bearer, json!({ "name": "short", "scopes": [], "expires_in": 60 })).await;
    let pat = made["token"].as_str().unwrap();
    let (_, body) = exchange_pat(&app, pat, "").await;
    let exp = jwt_part(body["access_token"].as_str().unwrap(), 1)["exp"].as_i64().unwrap();
    assert!(exp <= made["expires_at"].as_i64().unwrap(), "never outlives its PAT");

    app.state.clock.advance(61);

    let (status, body) = exchange_pat(&app, pat, "").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}

#[tokio::test]
async fn an_admin_lists_and_revokes_a_users_pats() {
    let app = spawn_app().await;
    let (_, pat, id) = setup(&app).await;
    let admin = format!("Bearer {}", app.access_token("admin", ADMIN_PASSWORD).await);

    let listed: Value = app.get("/admin/users/PAT/tokens", Some(&admin)).await.json().await.unwrap();
    let nobody = app.get("/admin/users/nobody/tokens", Some(&admin)).await;
    let revoked = app
        .client
        .delete(format!("{}/admin/users/pat/tokens/{id}", app.url))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();

    assert_eq!(listed["tokens"][0]["id"], id.as_str());
    assert_eq!(nobody.status(), 404);
    assert_eq!(revoked.status(), 204);
    assert_eq!(exchange_pat(&app, &pat, "").await.0, 400);
}

#[tokio::test]
async fn an_access_token_is_down_scoped_never_widened() {
    let app = spawn_with(|c| c.audience = vec!["api".into(), "billing".into()]).await;
    app.add_user("pat", "pats-password-1", "items orders").await;
    let token = token_of(&app, "pat", "pats-password-1", "items orders").await;
    let subject = jwt_part(&token, 1);
    let down = |scope: &'static str, audience: &'static str| {
        let token = token.clone();
        let app = &app;
        async move {
            let mut form = vec![("subject_token", token.as_str()), ("subject_token_type", ACCESS), ("scope", scope)];
            if !audience.is_empty() {
                form.push(("audience", audience));
            }
            exchange(app, &form).await
        }
    };

    let (status, body) = down("items", "billing").await;
    assert_eq!(status, 200, "{body}");
    let narrow = body["access_token"].as_str().unwrap();
    let claims = jwt_part(narrow, 1);
    assert_eq!(claims["scope"], "items");
    assert_eq!(claims["aud"], "billing");
    assert_eq!(claims["sid"], subject["sid"]);
    assert!(claims["exp"].as_i64() <= subject["exp"].as_i64());
    assert_eq!(app.me(narrow).await.status(), 200);

    let (status, body) = down("items admin", "").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    let (status, body) = down("", "elsewhere").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{body}");
    // Narrowed to one audience, it cannot be widened back to another.
    let form = [("subject_token", narrow), ("subject_token_type", ACCESS), ("audience", "api")];
    let (status, body) = exchange(&app, &form).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{body}");
    // Logging out with the narrowed token ends it alone, not the login.
    let logout = app.client.post(format!("{}/logout", app.url)).bearer_auth(narrow).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(app.me(narrow).await.status(), 401);
    assert_eq!(app.me(&token).await.status(), 200, "the login it came from goes on");
    let (status, body) = down("items", "").await;
    assert_eq!(status, 200, "{body}");
    let narrow = body["access_token"].as_str().unwrap().to_owned();
    let narrow = narrow.as_str();
    // Ending the session ends what was exchanged from it.
    let logout = app.client.post(format!("{}/logout", app.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(app.me(narrow).await.status(), 401);
    let (status, body) = down("items", "").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "a revoked subject");
}

#[tokio::test]
async fn a_client_token_down_scopes_to_a_client_token() {
    let app = spawn_app().await;
    let secret = add_client(&app, "svc", &["read", "write"]).await;
    let token = client_token(&app, "svc", &secret, "").await;

    let (status, body) =
        exchange(&app, &[("subject_token", &token), ("subject_token_type", ACCESS), ("scope", "read")]).await;

    assert_eq!(status, 200, "{body}");
    let narrow = body["access_token"].as_str().unwrap();
    assert_eq!(jwt_part(narrow, 1)["client_id"], "svc");
    assert!(crate::clients::active(&app, narrow).await);
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;
    app.client
        .patch(format!("{}/admin/clients/svc", app.url))
        .bearer_auth(admin)
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .unwrap();
    assert!(!crate::clients::active(&app, narrow).await, "it ends with its client");
}

#[tokio::test]
async fn every_bad_exchange_is_a_4xx_with_the_rfcs_error() {
    let app = spawn_app().await;
    let (_, pat, _) = setup(&app).await;
    let login = post(&app, "/token", None, &[("username", "pat"), ("password", "pats-password-1")]).await;
    let login: Value = login.json().await.unwrap();
    let refresh = login["refresh_token"].as_str().unwrap();
    let access = login["access_token"].as_str().unwrap();

    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("subject_token", "garbage"), ("subject_token_type", PAT)], "invalid_grant"),
        (vec![("subject_token", "pcat_garbage"), ("subject_token_type", PAT)], "invalid_grant"),
        (vec![("subject_token", "garbage"), ("subject_token_type", ACCESS)], "invalid_grant"),
        (vec![("subject_token", refresh), ("subject_token_type", ACCESS)], "invalid_grant"),
        (vec![("subject_token", refresh), ("subject_token_type", PAT)], "invalid_grant"),
        (vec![("subject_token", access), ("subject_token_type", PAT)], "invalid_grant"),
        (vec![("subject_token", &pat), ("subject_token_type", ACCESS)], "invalid_grant"),
        (
            vec![("subject_token", refresh), ("subject_token_type", "urn:ietf:params:oauth:token-type:refresh_token")],
            "invalid_request",
        ),
        (vec![("subject_token", &pat), ("subject_token_type", "urn:example:unknown")], "invalid_request"),
        (vec![("subject_token", &pat)], "invalid_request"),
        (vec![("subject_token_type", PAT)], "invalid_request"),
        (vec![("subject_token", &pat), ("subject_token_type", PAT), ("actor_token", access)], "invalid_request"),
        (
            vec![("subject_token", &pat), ("subject_token_type", PAT), ("requested_token_type", "urn:x:id_token")],
            "invalid_request",
        ),
        (vec![("subject_token", &pat), ("subject_token_type", PAT), ("resource", "https://x")], "invalid_target"),
        (vec![("subject_token", &pat), ("subject_token_type", PAT), ("audience", "a b")], "invalid_target"),
        (vec![("subject_token", &pat), ("subject_token_type", PAT), ("scope", "orders")], "invalid_scope"),
        (vec![("subject_token", &pat), ("subject_token_type", PAT), ("scope", "bad\"scope")], "invalid_scope"),
    ];
    for (form, error) in cases {
        let (status, body) = exchange(&app, &form).await;
        assert_eq!(status, 400, "{form:?}: {body}");
        assert_eq!(body["error"], error, "{form:?}: {body}");
        assert!(!body["detail"].as_str().unwrap().is_empty());
        let text = body.to_string();
        assert!(!text.contains(&pat) && !text.contains(refresh) && !text.contains(access), "no secret echoed: {body}");
    }
}
