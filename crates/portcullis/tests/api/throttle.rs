//! Login throttling: 429 with Retry-After per account and per client
//! address, the address taken through trusted proxies only.

use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, TestApp, spawn_with};

async fn login_from(app: &TestApp, username: &str, password: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request =
        app.client.post(format!("{}/token", app.url)).form(&[("username", username), ("password", password)]);
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn too_many_failures_for_an_account_get_429_with_retry_after() {
    let app = spawn_with(|c| {
        c.throttle.per_account = 3;
        c.throttle.per_address = 100;
    })
    .await;
    app.add_user("bob", "bobs-password-1", "").await;

    for _ in 0..3 {
        assert_eq!(app.login("admin", "wrong-password-1").await.status(), 401);
    }
    let throttled = app.login("admin", "wrong-password-1").await;

    assert_eq!(throttled.status(), 429);
    let wait: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait > 0 && wait <= 15 * 60, "{wait}");
    let body: Value = throttled.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("try again"), "{body}");
    assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 429, "even the right password waits");
    assert_eq!(app.login("bob", "bobs-password-1").await.status(), 200, "other accounts are not affected");
}

#[tokio::test]
async fn unknown_usernames_are_throttled_like_known_ones() {
    let app = spawn_with(|c| c.throttle.per_account = 2).await;

    for _ in 0..2 {
        assert_eq!(app.login("ghost", "wrong-password-1").await.status(), 401);
    }

    assert_eq!(app.login("ghost", "wrong-password-1").await.status(), 429);
}

#[tokio::test]
async fn a_good_login_resets_the_account_count() {
    let app = spawn_with(|c| c.throttle.per_account = 3).await;

    for _ in 0..2 {
        app.login("admin", "wrong-password-1").await;
    }
    assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 200);
    for _ in 0..2 {
        assert_eq!(app.login("admin", "wrong-password-1").await.status(), 401);
    }
}

#[tokio::test]
async fn one_address_trying_many_accounts_is_throttled() {
    let app = spawn_with(|c| {
        c.throttle.per_account = 100;
        c.throttle.per_address = 4;
    })
    .await;

    for i in 0..4 {
        assert_eq!(app.login(&format!("user{i}"), "wrong-password-1").await.status(), 401);
    }

    assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 429);
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let untrusted = spawn_with(|c| {
        c.throttle.per_account = 100;
        c.throttle.per_address = 2;
    })
    .await;
    // Not behind a trusted proxy: a client cannot dodge the limit by
    // inventing X-Forwarded-For values.
    for i in 0..2 {
        login_from(&untrusted, &format!("u{i}"), "wrong-password-1", Some(&format!("198.51.100.{i}"))).await;
    }
    let dodged = login_from(&untrusted, "admin", ADMIN_PASSWORD, Some("198.51.100.99")).await;
    assert_eq!(dodged.status(), 429);

    let proxied = spawn_with(|c| {
        c.throttle.per_account = 100;
        c.throttle.per_address = 2;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for i in 0..2 {
        login_from(&proxied, &format!("u{i}"), "wrong-password-1", Some("203.0.113.5")).await;
    }
    assert_eq!(login_from(&proxied, "admin", ADMIN_PASSWORD, Some("203.0.113.5")).await.status(), 429);
    assert_eq!(
        login_from(&proxied, "admin", ADMIN_PASSWORD, Some("203.0.113.6")).await.status(),
        200,
        "another client behind the same proxy is not throttled"
    );
}

#[tokio::test]
async fn guessing_the_current_password_with_a_token_is_throttled() {
    let app = spawn_with(|c| c.throttle.per_account = 2).await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;
    let attempt = || {
        app.client
            .post(format!("{}/users/me/password", app.url))
            .bearer_auth(&token)
            .json(&serde_json::json!({"current_password": "guess-number-1", "new_password": "new-password-abc"}))
            .send()
    };

    assert_eq!(attempt().await.unwrap().status(), 400);
    assert_eq!(attempt().await.unwrap().status(), 400);
    assert_eq!(attempt().await.unwrap().status(), 429);
}
