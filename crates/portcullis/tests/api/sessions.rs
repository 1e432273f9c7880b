//! Sessions: refresh rotation with reuse detection, logout, password change,
//! revocation (RFC 7009) and introspection (RFC 7662).

use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, TestApp, spawn_app};

struct Tokens {
    access: String,
    refresh: String,
}

async fn login(app: &TestApp, user: &str, password: &str) -> Tokens {
    let response = app.login(user, password).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    Tokens {
        access: body["access_token"].as_str().unwrap().into(),
        refresh: body["refresh_token"].as_str().unwrap().into(),
    }
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/token", app.url))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
        .send()
        .await
        .unwrap()
}

async fn refreshed(app: &TestApp, refresh_token: &str) -> Tokens {
    let response = refresh(app, refresh_token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    Tokens {
        access: body["access_token"].as_str().unwrap().into(),
        refresh: body["refresh_token"].as_str().unwrap().into(),
    }
}

async fn assert_invalid_grant(response: reqwest::Response) {
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

async fn post_bearer(app: &TestApp, path: &str, token: &str, form: &[(&str, &str)]) -> reqwest::Response {
    app.client.post(format!("{}{path}", app.url)).bearer_auth(token).form(form).send().await.unwrap()
}

#[tokio::test]
async fn a_login_returns_an_opaque_refresh_token_of_256_bits() {
    let app = spawn_app().await;

    let tokens = login(&app, "admin", ADMIN_PASSWORD).await;

    assert!(!tokens.refresh.contains('.'), "opaque, not a JWT");
    use base64::Engine;
    assert!(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&tokens.refresh).unwrap().len() >= 32);
}

#[tokio::test]
async fn a_refresh_returns_new_tokens_and_retires_the_old_refresh_token() {
    let app = spawn_app().await;
    let first = login(&app, "admin", ADMIN_PASSWORD).await;

    let second = refreshed(&app, &first.refresh).await;

    assert_ne!(second.refresh, first.refresh);
    assert_eq!(app.me(&second.access).await.status(), 200);
    let third = refreshed(&app, &second.refresh).await;
    assert_eq!(app.me(&third.access).await.status(), 200);
}

#[tokio::test]
async fn reusing_a_retired_refresh_token_revokes_the_whole_family() {
    let app = spawn_app().await;
    let first = login(&app, "admin", ADMIN_PASSWORD).await;
    let second = refreshed(&app, &first.refresh).await;

    assert_invalid_grant(refresh(&app, &first.refresh).await).await;

    // The thief and the victim are both logged out.
    assert_invalid_grant(refresh(&app, &second.refresh).await).await;
    assert_eq!(app.me(&second.access).await.status(), 401);
    assert_eq!(app.me(&first.access).await.status(), 401);
}

#[tokio::test]
async fn reuse_of_one_session_leaves_other_sessions_alone() {
    let app = spawn_app().await;
    let victim = login(&app, "admin", ADMIN_PASSWORD).await;
    let other = login(&app, "admin", ADMIN_PASSWORD).await;
    refreshed(&app, &victim.refresh).await;

    assert_invalid_grant(refresh(&app, &victim.refresh).await).await;

    assert_eq!(app.me(&other.access).await.status(), 200);
    refreshed(&app, &other.refresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_refreshes_with_one_token_yield_at_most_one_success() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let tokens = login(&app, "admin", ADMIN_PASSWORD).await;
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (client, url, token) = (app.client.clone(), app.url.clone(), tokens.refresh.clone());
                tokio::spawn(async move {
                    client
                        .post(format!("{url}/token"))
                        .form(&[("grant_type", "refresh_token"), ("refresh_token", token.as_str())])
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for racer in racers {
            statuses.push(racer.await.unwrap());
        }
        let successes = statuses.iter().filter(|s| **s == 200).count();
        assert!(successes <= 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
    }
}

#[tokio::test]
async fn an_unknown_or_garbage_refresh_token_is_invalid_grant() {
    let app = spawn_app().await;

    assert_invalid_grant(refresh(&app, "not-a-refresh-token").await).await;
    assert_invalid_grant(refresh(&app, &"A".repeat(43)).await).await;
    let missing = app.post_form("/token", "grant_type=refresh_token").await;
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn a_refresh_never_grants_more_than_the_login_did() {
    let app = spawn_app().await;
    app.add_user("sam", "sams-password-1", "items me").await;
    let body: Value =
        app.post_form("/token", "username=sam&password=sams-password-1&scope=items").await.json().await.unwrap();
    let refresh_token = body["refresh_token"].as_str().unwrap();

    let widened = app
        .client
        .post(format!("{}/token", app.url))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("scope", "items me")])
        .send()
        .await
        .unwrap();

    assert_eq!(widened.status(), 400);
    let body: Value = widened.json().await.unwrap();
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn a_session_granted_no_scope_stays_without_one_when_refreshed() {
    let app = spawn_app().await;
    app.add_user("una", "unas-password-1", "items me").await;
    // Asks only for a scope she lacks: granted nothing.
    let body: Value =
        app.post_form("/token", "username=una&password=unas-password-1&scope=admin").await.json().await.unwrap();
    assert_eq!(body["scope"], "");

    let again = refreshed(&app, body["refresh_token"].as_str().unwrap()).await;
    let response = refresh(&app, &again.refresh).await;

    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "", "{body}");
    assert_eq!(crate::helpers::jwt_part(body["access_token"].as_str().unwrap(), 1)["scope"], "");
    assert_eq!(crate::helpers::jwt_part(&again.access, 1)["scope"], "");
}

#[tokio::test]
async fn a_refused_wider_scope_does_not_use_up_the_refresh_token() {
    let app = spawn_app().await;
    app.add_user("sal", "sals-password-1", "items me").await;
    let body: Value =
        app.post_form("/token", "username=sal&password=sals-password-1&scope=items").await.json().await.unwrap();
    let token = body["refresh_token"].as_str().unwrap();

    let widened = app
        .client
        .post(format!("{}/token", app.url))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token), ("scope", "me")])
        .send()
        .await
        .unwrap();
    assert_eq!(widened.status(), 400);

    let retried = refreshed(&app, token).await;
    assert_eq!(app.me(&retried.access).await.status(), 200);
}

#[tokio::test]
async fn a_disabled_user_cannot_refresh() {
    let app = spawn_app().await;
    app.add_user("tina", "tinas-password-1", "").await;
    let tokens = login(&app, "tina", "tinas-password-1").await;

    app.disable("tina").await;

    assert_invalid_grant(refresh(&app, &tokens.refresh).await).await;
}

#[tokio::test]
async fn logout_ends_the_session_and_denies_the_access_token() {
    let app = spawn_app().await;
    let tokens = login(&app, "admin", ADMIN_PASSWORD).await;
    let other = login(&app, "admin", ADMIN_PASSWORD).await;

    let response = post_bearer(&app, "/logout", &tokens.access, &[]).await;

    assert_eq!(response.status(), 204);
    assert_eq!(app.me(&tokens.access).await.status(), 401);
    assert_invalid_grant(refresh(&app, &tokens.refresh).await).await;
    assert_eq!(app.me(&other.access).await.status(), 200, "another session survives");
    assert_eq!(post_bearer(&app, "/logout", &tokens.access, &[]).await.status(), 401);
}

#[tokio::test]
async fn a_password_change_ends_every_session_of_the_user() {
    let app = spawn_app().await;
    app.add_user("uma", "umas-password-1", "").await;
    let one = login(&app, "uma", "umas-password-1").await;
    let two = login(&app, "uma", "umas-password-1").await;
    let bystander = login(&app, "admin", ADMIN_PASSWORD).await;

    let wrong = app
        .client
        .post(format!("{}/users/me/password", app.url))
        .bearer_auth(&one.access)
        .json(&serde_json::json!({"current_password": "not-it-at-all", "new_password": "umas-password-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    assert_eq!(app.me(&one.access).await.status(), 200, "a wrong current password changes nothing");

    let changed = app
        .client
        .post(format!("{}/users/me/password", app.url))
        .bearer_auth(&one.access)
        .json(&serde_json::json!({"current_password": "umas-password-1", "new_password": "umas-password-2"}))
        .send()
        .await
        .unwrap();

    assert_eq!(changed.status(), 204);
    for tokens in [&one, &two] {
        assert_eq!(app.me(&tokens.access).await.status(), 401);
        assert_invalid_grant(refresh(&app, &tokens.refresh).await).await;
    }
    assert_eq!(app.me(&bystander.access).await.status(), 200);
    assert_eq!(app.login("uma", "umas-password-1").await.status(), 401);
    assert_eq!(app.login("uma", "umas-password-2").await.status(), 200);
}

#[tokio::test]
async fn a_weak_new_password_is_refused_with_422() {
    let app = spawn_app().await;
    let tokens = login(&app, "admin", ADMIN_PASSWORD).await;

    let response = app
        .client
        .post(format!("{}/users/me/password", app.url))
        .bearer_auth(&tokens.access)
        .json(&serde_json::json!({"current_password": ADMIN_PASSWORD, "new_password": "password1"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("common"), "{body}");
    assert_eq!(app.me(&tokens.access).await.status(), 200);
}

#[tokio::test]
async fn revoking_an_access_token_denies_it_and_only_it() {
    let app = spawn_app().await;
    let tokens = login(&app, "admin", ADMIN_PASSWORD).await;

    let response =
        app.post_form("/token/revoke", &format!("token={}&token_type_hint=access_token", tokens.access)).await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.me(&tokens.access).await.status(), 401);
    let renewed = refreshed(&app, &tokens.refresh).await;
    assert_eq!(app.me(&renewed.access).await.status(), 200, "the session lives on");
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_session() {
    let app = spawn_app().await;
    let tokens = login(&app, "admin", ADMIN_PASSWORD).await;

    let response = app.post_form("/token/revoke", &format!("token={}", tokens.refresh)).await;

    assert_eq!(response.status(), 200);
    assert_invalid_grant(refresh(&app, &tokens.refresh).await).await;
    assert_eq!(app.me(&tokens.access).await.status(), 401);
}

#[tokio::test]
async fn revoking_an_unknown_token_answers_200_and_a_missing_one_400() {
    let app = spawn_app().await;

    assert_eq!(app.post_form("/token/revoke", "token=whatever").await.status(), 200);
    assert_eq!(app.post_form("/token/revoke", "token=a.b.c").await.status(), 200);
    let missing = app.post_form("/token/revoke", "").await;
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn introspection_round_trip() {
    let app = spawn_app().await;
    app.add_user("vic", "vics-password-1", "items").await;
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let vic = login(&app, "vic", "vics-password-1").await;
    let introspect = |token: String| {
        let (client, url, admin) = (app.client.clone(), app.url.clone(), admin.access.clone());
        async move {
            let response = client
                .post(format!("{url}/token/introspect"))
                .bearer_auth(admin)
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };

    let access = introspect(vic.access.clone()).await;
    assert_eq!(access["active"], true);
    assert_eq!(access["sub"], "vic");
    assert_eq!(access["scope"], "items");
    assert_eq!(access["token_type"], "bearer");
    for claim in ["exp", "iat", "jti"] {
        assert!(access[claim].is_number() || access[claim].is_string(), "{claim}: {access}");
    }
    let refresh_info = introspect(vic.refresh.clone()).await;
    assert_eq!(refresh_info["active"], true);
    assert_eq!(refresh_info["token_type"], "refresh_token");
    assert_eq!(refresh_info["sub"], "vic");

    app.post_form("/token/revoke", &format!("token={}", vic.access)).await;
    assert_eq!(introspect(vic.access.clone()).await, serde_json::json!({"active": false}));
    app.post_form("/token/revoke", &format!("token={}", vic.refresh)).await;
    assert_eq!(introspect(vic.refresh.clone()).await, serde_json::json!({"active": false}));
    assert_eq!(introspect("garbage".into()).await, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn introspection_needs_the_admin_scope() {
    let app = spawn_app().await;
    app.add_user("wes", "wess-password-1", "items").await;
    let wes = login(&app, "wes", "wess-password-1").await;

    let forbidden = post_bearer(&app, "/token/introspect", &wes.access, &[("token", &wes.access)]).await;
    assert_eq!(forbidden.status(), 403);
    assert_eq!(forbidden.headers()["www-authenticate"], "Bearer error=\"insufficient_scope\", scope=\"admin\"");

    let anonymous = app.post_form("/token/introspect", &format!("token={}", wes.access)).await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn an_admin_token_requested_without_the_admin_scope_cannot_introspect() {
    let app = spawn_app().await;
    app.add_user("xena", "xenas-password-1", "admin items").await;
    let body: Value =
        app.post_form("/token", "username=xena&password=xenas-password-1&scope=items").await.json().await.unwrap();

    let response =
        post_bearer(&app, "/token/introspect", body["access_token"].as_str().unwrap(), &[("token", "x")]).await;

    assert_eq!(response.status(), 403);
}

/// `--session-max-age`: however often it is refreshed, a session ends that
/// long after its login; the refresh tokens it hands out never outlive it.
#[tokio::test]
async fn a_session_ends_at_its_maximum_age_however_often_refreshed() {
    let app = crate::helpers::spawn_with(|c| {
        c.session_max_age = std::time::Duration::from_secs(3600);
        c.refresh_token_ttl = std::time::Duration::from_secs(14 * 86400);
    })
    .await;
    let mut tokens = login(&app, "admin", ADMIN_PASSWORD).await;
    for _ in 0..3 {
        app.state.clock.advance(1000);
        tokens = refreshed(&app, &tokens.refresh).await;
    }
    let info: Value = post_bearer(&app, "/token/introspect", &tokens.access, &[("token", &tokens.refresh)])
        .await
        .json()
        .await
        .unwrap();
    let iat = info["iat"].as_i64().unwrap();
    assert!(info["exp"].as_i64().unwrap() <= iat - 3000 + 3600, "the refresh token expires with its session: {info}");

    app.state.clock.advance(601);

    assert_invalid_grant(refresh(&app, &tokens.refresh).await).await;
    assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 200, "a new login starts a new session");
}
