//! A user's own account: profile changes and self-registration.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, spawn_app, spawn_with};

#[tokio::test]
async fn a_user_changes_their_own_email_and_name() {
    let app = spawn_app().await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;

    let response = app
        .client
        .patch(format!("{}/users/me", app.url))
        .bearer_auth(&token)
        .json(&json!({"email": "root@example.com", "full_name": "Root"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], "root@example.com");
    assert_eq!(body["full_name"], "Root");
    let again: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(again["email"], "root@example.com");
}

#[tokio::test]
async fn a_user_cannot_grant_themselves_scopes_through_patch() {
    let app = spawn_app().await;
    app.add_user("bea", "beas-password-1", "").await;
    let token = app.access_token("bea", "beas-password-1").await;

    let response = app
        .client
        .patch(format!("{}/users/me", app.url))
        .bearer_auth(&token)
        .json(&json!({"scopes": ["admin"]}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 422);
    let me: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(me["scopes"], json!([]));
}

#[tokio::test]
async fn registration_is_off_by_default() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(format!("{}/users", app.url))
        .json(&json!({"username": "cal", "password": "cals-password-1"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("--allow-registration"));
}

#[tokio::test]
async fn with_registration_on_anyone_can_sign_up_without_scopes() {
    let app = spawn_with(|c| c.allow_registration = true).await;
    let register = |body: Value| app.client.post(format!("{}/users", app.url)).json(&body).send();

    let created =
        register(json!({"username": "Cal", "password": "cals-password-1", "email": "cal@example.com"})).await.unwrap();
    assert_eq!(created.status(), 201);
    let profile: Value = created.json().await.unwrap();
    assert_eq!(profile["scopes"], json!([]));
    assert_eq!(app.login("cal", "cals-password-1").await.status(), 200);

    let taken = register(json!({"username": "CAL", "password": "cals-password-2"})).await.unwrap();
    assert_eq!(taken.status(), 409);
    let common = register(json!({"username": "dee", "password": "iloveyou"})).await.unwrap();
    assert_eq!(common.status(), 422);
    let sneaky =
        register(json!({"username": "eve", "password": "eves-password-1", "scopes": ["admin"]})).await.unwrap();
    assert_eq!(sneaky.status(), 422, "registration cannot pick scopes");
}
