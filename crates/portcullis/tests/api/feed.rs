//! Token checks are answered from memory (`store/cached.rs`) and the change
//! feed keeps them current: a change through this instance holds at once,
//! one made by another process within a second, and a server that can no
//! longer hear the feed stops trusting what it holds.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use portcullis::store::cached::STALE_AFTER;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, PROPAGATION, SECRET, TestApp, client, command, fresh_postgres_database, serve_prepared, spawn_app,
    spawn_with, within_propagation,
};

async fn token_with(app: &TestApp, user: &str, password: &str, scope: &str) -> String {
    let response = app.post_form("/token", &format!("username={user}&password={password}&scope={scope}")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn me(url: &str, token: &str) -> u16 {
    client().get(format!("{url}/users/me")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// No waiting anywhere here: each change must hold on the very next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_this_instance_hold_at_once() {
    let app = spawn_app().await;
    app.until_trusted().await;
    app.add_user("uma", "umas-password-1", "items me").await;
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;
    let url = app.url.clone();
    let admin_patch = |body: Value| {
        let (client, url, admin) = (app.client.clone(), url.clone(), admin.clone());
        async move {
            let response = client.patch(format!("{url}/admin/users/uma")).bearer_auth(admin).json(&body).send().await;
            assert_eq!(response.unwrap().status(), 200);
        }
    };

    // Held in memory once checked.
    let token = token_with(&app, "uma", "umas-password-1", "items").await;
    assert_eq!(me(&url, &token).await, 200);
    let (users, sessions) = app.cache.len();
    assert!(users >= 1 && sessions >= 1, "held: {users} users, {sessions} sessions");

    // Logout.
    let logout = app.client.post(format!("{url}/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(me(&url, &token).await, 401, "logout");

    // Revocation of the access token.
    let token = token_with(&app, "uma", "umas-password-1", "items").await;
    assert_eq!(me(&url, &token).await, 200);
    assert_eq!(app.post_form("/token/revoke", &format!("token={token}")).await.status(), 200);
    assert_eq!(me(&url, &token).await, 401, "revocation");

    // Disable, then enable (the old token stays dead: its session ended).
    let token = token_with(&app, "uma", "umas-password-1", "items").await;
    assert_eq!(me(&url, &token).await, 200);
    admin_patch(json!({"disabled": true})).await;
    assert_eq!(me(&url, &token).await, 401, "disable");
    admin_patch(json!({"disabled": false})).await;
    assert_eq!(me(&url, &token).await, 401, "a disable ends sessions for good");

    // A scope taken away.
    let token = token_with(&app, "uma", "umas-password-1", "items").await;
    assert_eq!(me(&url, &token).await, 200);
    admin_patch(json!({"scopes": ["me"]})).await;
    assert_eq!(me(&url, &token).await, 401, "scope removal");

    // The profile /users/me returns follows a change at once too.
    let token = token_with(&app, "uma", "umas-password-1", "me").await;
    admin_patch(json!({"full_name": "Uma U"})).await;
    let profile: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(profile["full_name"], "Uma U");

    // Password change: every session ends.
    let other = token_with(&app, "uma", "umas-password-1", "me").await;
    assert_eq!(me(&url, &other).await, 200);
    let changed = app
        .client
        .post(format!("{url}/users/me/password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": "umas-password-1", "new_password": "umas-password-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    assert_eq!(me(&url, &other).await, 401, "password change");

    // Delete.
    let token = token_with(&app, "uma", "umas-password-2", "me").await;
    assert_eq!(me(&url, &token).await, 200);
    let deleted = app.client.delete(format!("{url}/admin/users/uma")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(me(&url, &token).await, 401, "delete");
}

fn ok(output: &Output) {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
}

/// Another process (the CLI) changes the database under a running server,
/// SQLite and PostgreSQL: the server must follow within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_changes_reach_a_running_server_within_a_second() {
    for postgres in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let database = if postgres {
            fresh_postgres_database().await
        } else {
            format!("sqlite://{}", dir.path().join("portcullis.db").display())
        };
        let run = |args: &[&str], stdin: Option<&str>| cli_on(dir.path(), &database, args, stdin);
        let mut cmd = command(dir.path());
        cmd.env("PORTCULLIS_DATABASE_URL", &database)
            .env("PORTCULLIS_SECRET_KEY", SECRET)
            .env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .args(["serve", "--bind", "127.0.0.1:0"]);
        let server = serve_prepared(cmd, dir.path());
        ok(&run(&["user", "add", "vic", "--scopes", "me", "--password-stdin"], Some("vics-password-1\n")));

        let mut slowest = Duration::ZERO;
        for (change, args) in [("disable", ["user", "disable", "vic"]), ("delete", ["user", "delete", "vic"])] {
            if change == "delete" {
                ok(&run(&["user", "enable", "vic"], None));
            }
            let token = login(&server.url, "vic", "vics-password-1").await;
            assert_eq!(me(&server.url, &token).await, 200);
            assert_eq!(me(&server.url, &token).await, 200, "now held in memory");
            ok(&run(&args, None));
            let changed = Instant::now();
            let status = within_propagation(|| me(&server.url, &token), 401).await;
            assert_eq!(
                status, 401,
                "postgres={postgres}: the CLI's {change} did not reach the server within {PROPAGATION:?}"
            );
            slowest = slowest.max(changed.elapsed());
        }
        eprintln!("postgres={postgres}: CLI changes held on the server after at most {slowest:?}");
    }
}

fn cli_on(dir: &Path, database: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command(dir)
        .env("PORTCULLIS_DATABASE_URL", database)
        .env("PORTCULLIS_SECRET_KEY", SECRET)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

async fn login(url: &str, user: &str, password: &str) -> String {
    let response = crate::helpers::post_login(url, user, password).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// SQLite: another process takes away the tables the feed and the checks
/// read (renamed, so they can come back). Checks go on from memory (no
/// database round trip) until the feed has been silent for `STALE_AFTER`,
/// then fail closed with `503` and `Retry-After`, and recover once the
/// tables are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_server_that_cannot_read_its_feed_fails_closed() {
    use sqlx::{ConnectOptions, Connection};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.db");
    let database = format!("sqlite://{}", file.display());
    let app = spawn_with(|c| {
        c.deployment.database_url = database.clone();
        c.pool.acquire_timeout = Duration::from_secs(1);
    })
    .await;
    app.until_trusted().await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;
    assert_eq!(me(&app.url, &token).await, 200);

    let mut other = sqlx::sqlite::SqliteConnectOptions::new().filename(&file).connect().await.unwrap();
    sqlx::raw_sql("alter table standing_changes rename to standing_changes_x; alter table users rename to users_x;")
        .execute(&mut other)
        .await
        .unwrap();
    let broken = Instant::now();

    let (from_memory, closed_after) = app.checks_from_memory_until_closed(&token, broken).await;
    assert!(from_memory > 0, "answered from memory while the tables were gone");
    assert!(closed_after >= STALE_AFTER - Duration::from_millis(500), "closed after {closed_after:?}");
    assert!(!app.cache.trusted());
    assert_eq!(app.me(&token).await.status(), 503);

    sqlx::raw_sql("alter table standing_changes_x rename to standing_changes; alter table users_x rename to users;")
        .execute(&mut other)
        .await
        .unwrap();
    other.close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while me(&app.url, &token).await != 200 {
        assert!(Instant::now() < deadline, "recovers once the tables are back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.until_trusted().await;
}

/// Caches far smaller than the working set: entries are evicted all the
/// time, and every answer is still right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_cache_evicts_and_still_answers_right() {
    let app = spawn_with(|c| c.cache = portcullis::store::cached::Capacity { users: 1, sessions: 1 }).await;
    app.until_trusted().await;
    app.add_user("wes", "wess-password-1", "me").await;
    app.add_user("xia", "xias-password-1", "me").await;
    let wes = token_with(&app, "wes", "wess-password-1", "me").await;
    let xia = token_with(&app, "xia", "xias-password-1", "me").await;
    let xia2 = token_with(&app, "xia", "xias-password-1", "me").await;
    for _ in 0..3 {
        for token in [&wes, &xia, &xia2] {
            assert_eq!(me(&app.url, token).await, 200);
        }
    }
    let profile: Value = app.me(&xia).await.json().await.unwrap();
    assert_eq!(profile["username"], "xia");
    assert_eq!(app.post_form("/token/revoke", &format!("token={xia}")).await.status(), 200);
    for _ in 0..3 {
        assert_eq!(me(&app.url, &wes).await, 200);
        assert_eq!(me(&app.url, &xia).await, 401);
        assert_eq!(me(&app.url, &xia2).await, 200);
    }
    let (users, sessions) = app.cache.len();
    assert!(users <= 1 && sessions <= 1, "held {users} users and {sessions} sessions");
}
