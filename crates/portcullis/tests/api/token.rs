//! The token endpoint: the password grant as the tutorials' clients use it.

use portcullis::domain::UserKey;
use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, jwt_part, spawn_app, spawn_with};

#[tokio::test]
async fn the_password_grant_returns_a_bearer_token_that_must_not_be_cached() {
    let app = spawn_app().await;

    let response = app.login("admin", ADMIN_PASSWORD).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "admin");
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
}

#[tokio::test]
async fn login_is_the_same_endpoint_as_token() {
    let app = spawn_app().await;

    let response = app.post_form("/login", &format!("username=admin&password={ADMIN_PASSWORD}")).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(app.me(body["access_token"].as_str().unwrap()).await.status(), 200);
}

#[tokio::test]
async fn swagger_uis_empty_basic_credentials_do_not_fail_the_request() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(format!("{}/token", app.url))
        .header("authorization", "Basic Og==")
        .form(&[("grant_type", "password"), ("username", "admin"), ("password", ADMIN_PASSWORD), ("scope", "")])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_multipart_form_is_accepted_like_a_urlencoded_one() {
    let app = spawn_app().await;
    let boundary = "XyZboundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nadmin\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{ADMIN_PASSWORD}\r\n--{boundary}--\r\n"
    );

    let response = app
        .client
        .post(format!("{}/token", app.url))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_401() {
    let app = spawn_app().await;

    let wrong = app.login("admin", "not-the-password").await;
    let unknown = app.login("nobody", "not-the-password").await;

    for response in [wrong, unknown] {
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["detail"], "Incorrect username or password");
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(body["error_description"], "Incorrect username or password");
    }
}

#[tokio::test]
async fn a_disabled_user_with_the_right_password_is_told_it_is_inactive() {
    let app = spawn_app().await;
    app.add_user("carol", "carols-password-1", "").await;
    app.disable("carol").await;

    let right = app.login("carol", "carols-password-1").await;
    let wrong = app.login("carol", "not-carols-password").await;

    assert_eq!(right.status(), 400);
    let body: Value = right.json().await.unwrap();
    assert_eq!(body["detail"], "Inactive user");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn a_username_matches_whatever_its_case_or_width() {
    let app = spawn_app().await;
    app.add_user("Alice", "alices-password-1", "").await;

    for name in ["Alice", "alice", "ALICE", "ａｌｉｃｅ"] {
        let token = app.access_token(name, "alices-password-1").await;
        assert_eq!(jwt_part(&token, 1)["sub"], "Alice", "{name}");
    }
}

#[tokio::test]
async fn granted_scopes_are_the_requested_ones_the_user_holds() {
    let app = spawn_app().await;
    app.add_user("dave", "daves-password-1", "items me").await;

    let asked = app.post_form("/token", "username=dave&password=daves-password-1&scope=items+admin").await;
    let all = app.post_form("/token", "username=dave&password=daves-password-1").await;

    let asked: Value = asked.json().await.unwrap();
    assert_eq!(asked["scope"], "items");
    assert_eq!(jwt_part(asked["access_token"].as_str().unwrap(), 1)["scope"], "items");
    let all: Value = all.json().await.unwrap();
    assert_eq!(all["scope"], "items me");
}

#[tokio::test]
async fn an_access_token_carries_the_contract_claims_and_header() {
    let app = spawn_app().await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;

    let header = jwt_part(&token, 0);
    let claims = jwt_part(&token, 1);

    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "HS256");
    assert!(header["kid"].as_str().unwrap().starts_with("hs256-"));
    assert_eq!(claims["iss"], "http://portcullis.test");
    assert_eq!(claims["sub"], "admin");
    assert_eq!(claims["scope"], "admin");
    let (iat, nbf, exp) =
        (claims["iat"].as_u64().unwrap(), claims["nbf"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, 900);
    assert_eq!(nbf, iat);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    assert!(claims.get("aud").is_none(), "aud is opt-in");
}

#[tokio::test]
async fn two_tokens_never_share_a_jti() {
    let app = spawn_app().await;

    let a = app.access_token("admin", ADMIN_PASSWORD).await;
    let b = app.access_token("admin", ADMIN_PASSWORD).await;

    assert_ne!(jwt_part(&a, 1)["jti"], jwt_part(&b, 1)["jti"]);
}

#[tokio::test]
async fn a_configured_audience_and_lifetime_show_in_the_token() {
    let app = spawn_with(|c| {
        c.audience = vec!["api-one".into(), "api-two".into()];
        c.deployment.access_token_ttl = std::time::Duration::from_secs(1800);
    })
    .await;

    let token = app.access_token("admin", ADMIN_PASSWORD).await;

    let claims = jwt_part(&token, 1);
    assert_eq!(claims["aud"], serde_json::json!(["api-one", "api-two"]));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 1800);
}

#[tokio::test]
async fn a_bcrypt_hash_is_replaced_by_argon2id_after_a_good_login() {
    let app = spawn_app().await;
    let user = portcullis::store::NewUser {
        username: portcullis::domain::Username::parse("legacy").unwrap(),
        email: None,
        full_name: None,
        scopes: Default::default(),
        disabled: false,
        password_hash: portcullis::auth::password::StoredHash::new(bcrypt::hash("legacy-password", 4).unwrap()),
    };
    app.state.store.insert_user(&user, 0).await.unwrap();

    assert_eq!(app.login("legacy", "legacy-password").await.status(), 200);

    let mut upgraded = false;
    for _ in 0..100 {
        let stored = app.state.store.user_by_key(&UserKey::of("legacy")).await.unwrap().unwrap();
        if stored.password_hash.expose().starts_with("$argon2id$") {
            upgraded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(upgraded, "hash was not upgraded");
    assert_eq!(app.login("legacy", "legacy-password").await.status(), 200);
}

/// The FastAPI tutorial's user: `johndoe`, password `secret`, its bcrypt hash.
async fn add_tutorial_user(app: &crate::helpers::TestApp) {
    let user = portcullis::store::NewUser {
        username: portcullis::domain::Username::parse("johndoe").unwrap(),
        email: None,
        full_name: None,
        scopes: Default::default(),
        disabled: false,
        password_hash: portcullis::auth::password::StoredHash::new(
            "$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW".into(),
        ),
    };
    app.state.store.insert_user(&user, 0).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_upgrade_never_costs_a_login_in_a_row() {
    let app = spawn_app().await;
    add_tutorial_user(&app).await;

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.login("johndoe", "secret").await.status().as_u16());
    }

    assert_eq!(statuses, [200, 200, 200, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_upgrade_never_costs_a_login_running_at_the_same_time() {
    let app = spawn_with(|c| c.hash_threads = 4).await;
    add_tutorial_user(&app).await;

    let logins: Vec<_> = (0..4)
        .map(|_| {
            let url = app.url.clone();
            tokio::spawn(async move { crate::helpers::post_login(&url, "johndoe", "secret").await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for login in logins {
        statuses.push(login.await.unwrap());
    }

    assert_eq!(statuses, [200, 200, 200, 200]);
    assert_eq!(app.login("johndoe", "wrong-secret").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_logins_gets_503s_but_token_checks_keep_answering() {
    // One hashing thread, room for two waiting logins.
    let app = spawn_with(|c| {
        c.hash_threads = 1;
        c.hash_queue = 2;
        c.throttle.per_pair = 1000;
        c.throttle.per_address = 1000;
    })
    .await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;

    let logins: Vec<_> = (0..24)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url.clone());
            tokio::spawn(async move {
                client
                    .post(format!("{url}/token"))
                    .form(&[("username", "admin"), ("password", "wrong-password-x")])
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut checks = Vec::new();
    for _ in 0..10 {
        checks.push(app.me(&token).await.status());
    }
    let mut statuses = Vec::new();
    for login in logins {
        let response = login.await.unwrap();
        if response.status() == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        statuses.push(response.status().as_u16());
    }

    assert!(checks.iter().all(|s| *s == 200), "{checks:?}");
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 503), "{statuses:?}");
}
