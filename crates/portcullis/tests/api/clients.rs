//! Registered clients: client authentication at `/token`, `/token/revoke`
//! and `/token/introspect`, `client_credentials`, one namespace with users,
//! and the end of a client's tokens (disable, delete, rotation).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, TestApp, cli, client, command, jwt_part, serve_prepared, spawn_app, spawn_with, within_propagation,
};

/// Registers a client through the admin API; returns its secret.
pub async fn add_client(app: &TestApp, id: &str, scopes: &[&str]) -> String {
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;
    let response = app
        .client
        .post(format!("{}/admin/clients", app.url))
        .bearer_auth(admin)
        .json(&json!({ "client_id": id, "scopes": scopes, "description": "test client" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "creating client {id}");
    let body: Value = response.json().await.unwrap();
    let secret = body["client_secret"].as_str().unwrap().to_owned();
    crate::capture::record("client_secret", &secret);
    secret
}

/// `Basic` with RFC 6749 §2.3.1's form-encoding of id and secret.
pub fn basic(id: &str, secret: &str) -> String {
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let value = format!("Basic {}", B64.encode(format!("{}:{}", encode(id), encode(secret))));
    crate::capture::record_authorization(&value);
    value
}

/// `POST path` with a form and an optional `Authorization`.
pub async fn post(app: &TestApp, path: &str, authorization: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    for (name, value) in form {
        if matches!(*name, "client_secret" | "subject_token" | "token") {
            crate::capture::record("client_secret", value);
        }
    }
    let mut request = app.client.post(format!("{}{path}", app.url)).form(form);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    if path == "/token" { crate::capture::tap_tokens(response).await } else { response }
}

/// A `client_credentials` token by Basic.
pub async fn client_token(app: &TestApp, id: &str, secret: &str, scope: &str) -> String {
    let response =
        post(app, "/token", Some(&basic(id, secret)), &[("grant_type", "client_credentials"), ("scope", scope)]).await;
    assert_eq!(response.status(), 200, "client_credentials for {id}");
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Whether introspection (by an admin bearer) calls the token active.
pub async fn active(app: &TestApp, token: &str) -> bool {
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;
    let response = post(app, "/token/introspect", Some(&format!("Bearer {admin}")), &[("token", token)]).await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["active"].as_bool().unwrap()
}

async fn json_of(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let www = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (status, www, response.json().await.unwrap())
}

#[tokio::test]
async fn client_credentials_by_basic_and_by_post_issue_a_client_token() {
    let app = spawn_app().await;
    let secret = add_client(&app, "billing", &["invoices:read", "invoices:write"]).await;

    let by_basic =
        post(&app, "/token", Some(&basic("billing", &secret)), &[("grant_type", "client_credentials")]).await;
    let by_post = post(
        &app,
        "/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "billing"),
            ("client_secret", &secret),
            ("scope", "invoices:read"),
        ],
    )
    .await;

    assert_eq!(by_basic.headers()["cache-control"], "no-store");
    let (status, _, body) = json_of(by_basic).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "invoices:read invoices:write", "none asked: all the client holds");
    assert_eq!(body["token_type"], "bearer");
    assert!(body.get("refresh_token").is_none(), "no refresh token for a client: {body}");
    let (status, _, body) = json_of(by_post).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "invoices:read");
    let token = body["access_token"].as_str().unwrap();
    let claims = jwt_part(token, 1);
    assert_eq!((claims["sub"].as_str(), claims["client_id"].as_str()), (Some("billing"), Some("billing")));
    assert_eq!(jwt_part(token, 0)["typ"], "at+jwt");
    assert!(active(&app, token).await);
}

#[tokio::test]
async fn a_client_gets_only_scopes_it_holds() {
    let app = spawn_app().await;
    let secret = add_client(&app, "reader", &["read"]).await;

    let response = post(
        &app,
        "/token",
        Some(&basic("reader", &secret)),
        &[("grant_type", "client_credentials"), ("scope", "read admin")],
    )
    .await;

    let (status, _, body) = json_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_scope");
    assert!(body["detail"].as_str().unwrap().contains("admin"), "{body}");
}

#[tokio::test]
async fn unknown_client_and_wrong_secret_answer_alike() {
    let app = spawn_app().await;
    let secret = add_client(&app, "svc", &["read"]).await;
    let mut wrong = secret.clone();
    wrong.replace_range(0..1, if secret.starts_with('A') { "B" } else { "A" });

    let cc = [("grant_type", "client_credentials")];
    let mut answers = Vec::new();
    for auth in [basic("svc", &wrong), basic("nobody", &secret), basic("svc", " "), basic("svc", &format!("{secret}x"))]
    {
        answers.push(json_of(post(&app, "/token", Some(&auth), &cc).await).await);
    }
    for (id, s) in [("svc", wrong.as_str()), ("nobody", secret.as_str())] {
        let form = [("grant_type", "client_credentials"), ("client_id", id), ("client_secret", s)];
        answers.push(json_of(post(&app, "/token", None, &form).await).await);
    }

    for (status, www, body) in &answers {
        assert_eq!(*status, 401, "{body}");
        assert_eq!(www.as_deref(), Some("Basic"));
        assert_eq!(body, &answers[0].2, "every failure reads the same");
        assert_eq!(body["error"], "invalid_client");
    }
}

#[tokio::test]
async fn basic_credentials_are_form_encoded_inside_base64() {
    let app = spawn_app().await;
    // A `+` and a `%` and a non-ASCII letter: each must be form-encoded.
    let id = "svc+é%1";
    let secret = add_client(&app, id, &["read"]).await;

    let encoded = post(&app, "/token", Some(&basic(id, &secret)), &[("grant_type", "client_credentials")]).await;
    let raw = format!("Basic {}", B64.encode(format!("{id}:{secret}")));
    crate::capture::record_authorization(&raw);
    let unencoded = post(&app, "/token", Some(&raw), &[("grant_type", "client_credentials")]).await;

    assert_eq!(encoded.status(), 200);
    let token: Value = encoded.json().await.unwrap();
    assert_eq!(jwt_part(token["access_token"].as_str().unwrap(), 1)["sub"], id);
    assert_eq!(unencoded.status(), 401, "a raw + reads as a space: another id");
}

#[tokio::test]
async fn malformed_or_mixed_client_authentication_is_refused_clearly() {
    let app = spawn_app().await;
    let secret = add_client(&app, "svc", &["read"]).await;
    let cc = ("grant_type", "client_credentials");

    let both =
        post(&app, "/token", Some(&basic("svc", &secret)), &[cc, ("client_id", "svc"), ("client_secret", &secret)])
            .await;
    let id_only = post(&app, "/token", None, &[cc, ("client_id", "svc")]).await;
    let id_only_basic = post(&app, "/token", Some(&basic("svc", "")), &[cc]).await;
    let secret_only = post(&app, "/token", None, &[cc, ("client_secret", &secret)]).await;
    let none = post(&app, "/token", None, &[cc]).await;
    let swagger = post(&app, "/token", Some("Basic Og=="), &[cc]).await;
    let garbage = post(&app, "/token", Some("Basic !!!not-base64"), &[cc]).await;

    let (status, _, body) = json_of(both).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    for response in [id_only, id_only_basic, secret_only, none, swagger, garbage] {
        let (status, www, body) = json_of(response).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
        assert_eq!(www.as_deref(), Some("Basic"));
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn swagger_uis_empty_basic_does_not_fail_a_password_login() {
    let app = spawn_app().await;

    let response =
        post(&app, "/token", Some("Basic Og=="), &[("username", "admin"), ("password", ADMIN_PASSWORD)]).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(jwt_part(body["access_token"].as_str().unwrap(), 1).get("client_id").is_none());
}

/// What requests-oauthlib and Authlib send with the password grant when
/// they know a client id but no secret: a public client naming itself,
/// which is no client authentication (and no `client_id` claim).
#[tokio::test]
async fn a_bare_client_id_with_the_password_grant_is_no_client() {
    let app = spawn_app().await;
    let login = [("username", "admin"), ("password", ADMIN_PASSWORD)];
    let form_id = [("username", "admin"), ("password", ADMIN_PASSWORD), ("client_id", "tutorial-app")];

    for (auth, form) in [(Some(basic("tutorial-app", "")), &login[..]), (None, &form_id[..])] {
        let response = post(&app, "/token", auth.as_deref(), form).await;
        assert_eq!(response.status(), 200, "{auth:?} {form:?}");
        let body: Value = response.json().await.unwrap();
        assert!(jwt_part(body["access_token"].as_str().unwrap(), 1).get("client_id").is_none());
    }
    let cc = post(&app, "/token", Some(&basic("tutorial-app", "")), &[("grant_type", "client_credentials")]).await;
    assert_eq!(cc.status(), 401, "where a client must authenticate, a bare id is refused");
}

/// Many concurrent requests of one client with its right secret, its entry
/// not yet in memory: none is refused (the throttle holds no place for a
/// secret check in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_client_is_never_throttled_for_being_busy() {
    let app = spawn_app().await;
    let secret = add_client(&app, "busy", &["read"]).await;
    let auth = basic("busy", &secret);

    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let request = app.client.post(format!("{}/token", app.url)).header("authorization", &auth);
            tokio::spawn(async move {
                request.form(&[("grant_type", "client_credentials")]).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn a_password_grant_with_client_authentication_carries_client_id() {
    let app = spawn_app().await;
    let secret = add_client(&app, "webapp", &[]).await;
    let login = [("username", "admin"), ("password", ADMIN_PASSWORD)];

    let good = post(&app, "/token", Some(&basic("webapp", &secret)), &login).await;
    let bad = post(&app, "/token", Some(&basic("webapp", "wrong")), &login).await;

    assert_eq!(good.status(), 200);
    let body: Value = good.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(jwt_part(token, 1)["client_id"], "webapp");
    assert_eq!(jwt_part(token, 1)["sub"], "admin");
    assert_eq!(app.me(token).await.status(), 200, "still the user's token");
    let (status, www, body) = json_of(bad).await;
    assert_eq!((status, www.as_deref(), body["error"].as_str()), (401, Some("Basic"), Some("invalid_client")));
}

/// RFC 6749 §6: a refresh token issued through a client works for that
/// client only, and its tokens keep carrying `client_id`.
#[tokio::test]
async fn a_refresh_token_is_bound_to_the_client_that_logged_in() {
    let app = spawn_app().await;
    let webapp = add_client(&app, "webapp", &[]).await;
    let other = add_client(&app, "other", &[]).await;
    let auth = basic("webapp", &webapp);
    let login = post(&app, "/token", Some(&auth), &[("username", "admin"), ("password", ADMIN_PASSWORD)]).await;
    let login: Value = login.json().await.unwrap();
    let refresh = login["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];

    for auth in [None, Some(basic("other", &other)), Some(basic("WEBAPP", "wrong"))] {
        let (status, _, body) = json_of(post(&app, "/token", auth.as_deref(), &form).await).await;
        assert!(status == 400 || status == 401, "{auth:?}: {body}");
    }
    let (status, _, body) = json_of(post(&app, "/token", Some(&basic("webapp", &webapp)), &form).await).await;

    assert_eq!(status, 200, "the right client, after the wrong ones: {body}");
    assert_eq!(jwt_part(body["access_token"].as_str().unwrap(), 1)["client_id"], "webapp");
}

#[tokio::test]
async fn a_client_token_names_no_user() {
    let app = spawn_app().await;
    let secret = add_client(&app, "robot", &["admin"]).await;
    let token = client_token(&app, "robot", &secret, "admin").await;
    let bearer = format!("Bearer {token}");

    for path in ["/users/me", "/users/me/", "/user/current/", "/admin/users", "/admin/clients", "/users/me/tokens"] {
        let response = app.get(path, Some(&bearer)).await;
        let (status, _, body) = json_of(response).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error_description"], "a client's token names no user", "{path}");
    }
    let logout = app.client.post(format!("{}/logout", app.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(logout.status(), 401);
    assert!(active(&app, &token).await, "it is still a live client token");
}

#[tokio::test]
async fn client_ids_and_usernames_share_one_namespace() {
    let app = spawn_app().await;
    app.add_user("alice", "alices-password-1", "").await;
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;
    let create_client = |id: &'static str| {
        let (client, url, admin) = (app.client.clone(), app.url.clone(), admin.clone());
        async move {
            let body = json!({ "client_id": id, "scopes": [] });
            client.post(format!("{url}/admin/clients")).bearer_auth(admin).json(&body).send().await.unwrap()
        }
    };
    let create_user = |name: &'static str| {
        let (client, url, admin) = (app.client.clone(), app.url.clone(), admin.clone());
        async move {
            let body = json!({ "username": name, "password": "a-good-password-9" });
            client.post(format!("{url}/admin/users")).bearer_auth(admin).json(&body).send().await.unwrap()
        }
    };

    for taken in ["alice", "ALICE", "ＡＬＩＣＥ", "\u{430}lice"] {
        let (status, _, body) = json_of(create_client(taken).await).await;
        assert_eq!(status, 409, "client {taken:?}: {body}");
    }
    assert_eq!(create_client("svc-bot").await.status(), 201);
    for taken in ["svc-bot", "SVC-BOT", "svc-b\u{43e}t"] {
        let (status, _, body) = json_of(create_user(taken).await).await;
        assert_eq!(status, 409, "user {taken:?}: {body}");
    }
    let (status, _, _) = json_of(create_client("svc-bot").await).await;
    assert_eq!(status, 409, "a client twice");
}

/// A user and a client with one name, created at the same moment: at most
/// one of them is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_and_a_client_racing_for_one_name_cannot_both_win() {
    let app = spawn_app().await;
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;
    for round in 0..8 {
        let name = format!("race{round}");
        let client_body = json!({ "client_id": name, "scopes": [] });
        let user_body = json!({ "username": name.to_uppercase(), "password": "a-good-password-9" });
        let (c, u) = tokio::join!(
            app.client.post(format!("{}/admin/clients", app.url)).bearer_auth(&admin).json(&client_body).send(),
            app.client.post(format!("{}/admin/users", app.url)).bearer_auth(&admin).json(&user_body).send(),
        );
        let (c, u) = (c.unwrap().status().as_u16(), u.unwrap().status().as_u16());
        assert!(matches!((c, u), (201, 409) | (409, 201)), "round {round}: client {c}, user {u}");
    }
}

#[tokio::test]
async fn introspection_by_a_client_needs_scope_introspect() {
    let app = spawn_app().await;
    let rs = add_client(&app, "resource-server", &["introspect"]).await;
    let plain = add_client(&app, "plain", &["read"]).await;
    let user_token = app.access_token("admin", ADMIN_PASSWORD).await;
    let token = [("token", user_token.as_str())];

    let allowed = post(&app, "/token/introspect", Some(&basic("resource-server", &rs)), &token).await;
    let by_post = post(
        &app,
        "/token/introspect",
        None,
        &[("token", &user_token), ("client_id", "resource-server"), ("client_secret", &rs)],
    )
    .await;
    let lacking = post(&app, "/token/introspect", Some(&basic("plain", &plain)), &token).await;
    let wrong = post(&app, "/token/introspect", Some(&basic("resource-server", "nope")), &token).await;
    let nobody = post(&app, "/token/introspect", None, &token).await;

    let (status, _, body) = json_of(allowed).await;
    assert_eq!((status, &body["active"], &body["sub"]), (200, &json!(true), &json!("admin")), "{body}");
    assert_eq!(by_post.status(), 200);
    let (status, _, body) = json_of(lacking).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("unauthorized_client")), "{body}");
    let (status, www, _) = json_of(wrong).await;
    assert_eq!((status, www.as_deref()), (401, Some("Basic")));
    let (status, www, _) = json_of(nobody).await;
    assert_eq!((status, www.as_deref()), (401, Some("Bearer")));
}

#[tokio::test]
async fn revocation_checks_client_authentication_when_it_is_sent() {
    let app = spawn_app().await;
    let secret = add_client(&app, "svc", &["read"]).await;
    let token = client_token(&app, "svc", &secret, "read").await;

    let wrong = post(&app, "/token/revoke", Some(&basic("svc", "wrong")), &[("token", &token)]).await;
    assert_eq!(wrong.status(), 401);
    assert!(active(&app, &token).await, "a failed client authentication revokes nothing");
    let right = post(&app, "/token/revoke", Some(&basic("svc", &secret)), &[("token", &token)]).await;
    assert_eq!(right.status(), 200);
    assert!(!active(&app, &token).await);
}

#[tokio::test]
async fn disabling_deleting_or_revoking_rotation_ends_a_clients_tokens() {
    let app = spawn_app().await;
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;
    let secret = add_client(&app, "svc", &["read", "write"]).await;
    let path = format!("{}/admin/clients/svc", app.url);
    let patch = |body: Value| app.client.patch(&path).bearer_auth(&admin).json(&body).send();

    // Disable, then enable: the old token stays dead, a new one works.
    let token = client_token(&app, "svc", &secret, "read").await;
    assert_eq!(patch(json!({ "disabled": true })).await.unwrap().status(), 200);
    assert!(!active(&app, &token).await, "disabled");
    let refused = post(&app, "/token", Some(&basic("svc", &secret)), &[("grant_type", "client_credentials")]).await;
    let (status, _, body) = json_of(refused).await;
    assert_eq!((status, body["detail"].as_str()), (401, Some("Client is disabled")));
    assert_eq!(patch(json!({ "disabled": false })).await.unwrap().status(), 200);
    assert!(!active(&app, &token).await, "enabling does not bring old tokens back");

    // A scope taken away: tokens claiming it stop, the others go on.
    let reads = client_token(&app, "svc", &secret, "read").await;
    let writes = client_token(&app, "svc", &secret, "write").await;
    assert_eq!(patch(json!({ "scopes": ["read"] })).await.unwrap().status(), 200);
    assert!(active(&app, &reads).await);
    assert!(!active(&app, &writes).await, "scope removed");

    // A plain rotation keeps live tokens; the old secret stops at once.
    let rotate = |revoke: bool| {
        app.client.post(format!("{path}/secret")).bearer_auth(&admin).json(&json!({ "revoke_tokens": revoke })).send()
    };
    let rotated: Value = rotate(false).await.unwrap().json().await.unwrap();
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    crate::capture::record("client_secret", &new_secret);
    assert!(active(&app, &reads).await, "a plain rotation keeps tokens");
    let old = post(&app, "/token", Some(&basic("svc", &secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(old.status(), 401, "the old secret");
    let latest = client_token(&app, "svc", &new_secret, "read").await;
    let rotated: Value = rotate(true).await.unwrap().json().await.unwrap();
    crate::capture::record("client_secret", rotated["client_secret"].as_str().unwrap());
    assert!(!active(&app, &latest).await, "a revoking rotation ends them");

    // Deleted, then re-created under the same name: old tokens stay dead.
    let newest = client_token(&app, "svc", rotated["client_secret"].as_str().unwrap(), "read").await;
    assert_eq!(app.client.delete(&path).bearer_auth(&admin).send().await.unwrap().status(), 204);
    assert!(!active(&app, &newest).await, "deleted");
    add_client(&app, "svc", &["read"]).await;
    assert!(!active(&app, &newest).await, "a new client of the same name");
}

#[tokio::test]
async fn the_admin_api_never_shows_a_secret_again() {
    let app = spawn_app().await;
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;
    let secret = add_client(&app, "Svc", &["read"]).await;

    let list: Value = app
        .client
        .get(format!("{}/admin/clients", app.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let one = app.client.get(format!("{}/admin/clients/SVC", app.url)).bearer_auth(&admin).send().await.unwrap();
    let missing = app.client.get(format!("{}/admin/clients/nope", app.url)).bearer_auth(&admin).send().await.unwrap();

    assert_eq!(list["clients"][0]["client_id"], "Svc");
    assert_eq!(one.status(), 200, "ids ignore case");
    let text = format!("{list}{}", one.text().await.unwrap());
    assert!(!text.contains(&secret) && !text.contains("client_secret"), "{text}");
    assert_eq!(missing.status(), 404);
    let bad = json!({ "client_id": "has space", "scopes": [] });
    let refused = app.client.post(format!("{}/admin/clients", app.url)).bearer_auth(&admin).json(&bad).send().await;
    assert_eq!(refused.unwrap().status(), 422);
}

#[tokio::test]
async fn failed_client_authentication_is_throttled() {
    let app = spawn_with(|c| c.throttle.per_pair = 3).await;
    let secret = add_client(&app, "svc", &["read"]).await;
    let cc = [("grant_type", "client_credentials")];

    for _ in 0..3 {
        assert_eq!(post(&app, "/token", Some(&basic("svc", "wrong")), &cc).await.status(), 401);
    }
    let throttled = post(&app, "/token", Some(&basic("svc", &secret)), &cc).await;

    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
}

/// The CLI changes the database under a running server: the server hears
/// of it through the change feed within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disabled_from_the_cli_is_refused_by_a_running_server_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let database = crate::helpers::test_database_url(dir.path()).await;
    let run = |args: &[&str]| {
        let mut all = vec!["--database-url", database.as_str()];
        all.extend_from_slice(args);
        cli(dir.path(), &all, None)
    };
    let env = |cmd: &mut std::process::Command| {
        cmd.env("PORTCULLIS_DATABASE_URL", &database)
            .env("PORTCULLIS_SECRET_KEY", crate::helpers::SECRET)
            .env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD);
    };
    let mut cmd = command(dir.path());
    env(&mut cmd);
    cmd.args(["serve", "--bind", "127.0.0.1:0"]);
    let server = serve_prepared(cmd, dir.path());
    // `client add` prints the secret once, on a line of its own.
    let add = |id: &str, scopes: &str| {
        let added = run(&["client", "add", id, "--scopes", scopes]);
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
        let out = String::from_utf8_lossy(&added.stdout).into_owned();
        let secret = out.lines().find_map(|l| l.strip_prefix("client_secret: ")).unwrap().to_owned();
        crate::capture::record("client_secret", &secret);
        secret
    };
    let secret = add("cron", "jobs");
    let listed = run(&["client", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["client_id"], "cron");
    assert!(!String::from_utf8_lossy(&run(&["client", "list", "--json"]).stdout).contains(&secret));

    let url = server.url.clone();
    let get_token = || {
        let (url, auth) = (url.clone(), basic("cron", &secret));
        async move {
            let response = client()
                .post(format!("{url}/token"))
                .header("authorization", auth)
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["access_token"].as_str().map(str::to_owned))
        }
    };
    let (status, token) = get_token().await;
    assert_eq!(status, 200);
    let token = token.unwrap();
    crate::capture::record("access_token", &token);
    let rs_secret = add("rs", "introspect");
    let introspect = || {
        let (url, auth, token) = (url.clone(), basic("rs", &rs_secret), token.clone());
        async move {
            let response = client()
                .post(format!("{url}/token/introspect"))
                .header("authorization", auth)
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()["active"].as_bool().unwrap()
        }
    };
    assert!(introspect().await, "held in memory now");

    assert!(run(&["client", "disable", "cron"]).status.success());

    assert!(!within_propagation(introspect, false).await, "its token, within a second");
    assert_eq!(within_propagation(|| async { get_token().await.0 }, 401).await, 401, "a new token");
    assert!(run(&["client", "delete", "cron"]).status.success());
    assert!(!run(&["client", "delete", "cron"]).status.success(), "gone");
}
