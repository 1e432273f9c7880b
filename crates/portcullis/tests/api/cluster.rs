//! Several instances on one PostgreSQL database behave as one server; a
//! database that goes away makes requests answer 503 until it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portcullis::store::cached::STALE_AFTER;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{
    ADMIN_PASSWORD, Process, SECRET, client, command, fresh_postgres_database, jwt_part, serve_prepared, spawn_with,
    within_propagation,
};

const ISSUER: &str = "http://portcullis.cluster.test";

fn instance(dir: &std::path::Path, database_url: &str) -> Process {
    let mut cmd = command(dir);
    cmd.env("PORTCULLIS_DATABASE_URL", database_url)
        .env("PORTCULLIS_SECRET_KEY", SECRET)
        .env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("PORTCULLIS_ISSUER", ISSUER)
        .args(["serve", "--bind", "127.0.0.1:0", "--algorithm", "EdDSA"]);
    serve_prepared(cmd, dir)
}

struct Tokens {
    access: String,
    refresh: String,
}

async fn login(url: &str, username: &str, password: &str) -> Result<Tokens, u16> {
    let response = crate::helpers::post_login(url, username, password).await;
    if response.status() != 200 {
        return Err(response.status().as_u16());
    }
    let body: Value = response.json().await.unwrap();
    Ok(Tokens {
        access: body["access_token"].as_str().unwrap().into(),
        refresh: body["refresh_token"].as_str().unwrap().into(),
    })
}

async fn refresh(url: &str, token: &str) -> u16 {
    client()
        .post(format!("{url}/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn me(url: &str, token: &str) -> u16 {
    client().get(format!("{url}/users/me")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

async fn post(url: &str, path: &str, bearer: Option<&str>, form: &[(&str, &str)]) -> u16 {
    let mut request = client().post(format!("{url}{path}")).form(form);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_behave_as_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database().await;
    let a = instance(dir.path(), &db);
    let b = instance(dir.path(), &db);
    let (a, b) = (a.url.clone(), b.url.clone());

    // A token issued by one verifies on the other.
    let admin = login(&a, "admin", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(me(&b, &admin.access).await, 200);

    // A refresh rotated on A is retired on B; reuse on B kills the family everywhere.
    let user = login(&a, "admin", ADMIN_PASSWORD).await.unwrap();
    let rotated: Value = client()
        .post(format!("{a}/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", user.refresh.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_refresh = rotated["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&b, &user.refresh).await, 400, "retired on B");
    assert_eq!(refresh(&a, new_refresh).await, 400, "the family is revoked on A too");

    // Logout on A holds on B; revocation on B holds on A.
    // Each token is checked on the other instance first, so that instance
    // holds its standing in memory: the change must reach it.
    let one = login(&a, "admin", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(me(&b, &one.access).await, 200);
    assert_eq!(post(&a, "/logout", Some(&one.access), &[]).await, 204);
    assert_eq!(within_propagation(|| me(&b, &one.access), 401).await, 401);
    let two = login(&b, "admin", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(me(&a, &two.access).await, 200);
    assert_eq!(post(&b, "/token/revoke", None, &[("token", &two.access)]).await, 200);
    assert_eq!(within_propagation(|| me(&a, &two.access), 401).await, 401);

    // Disable on A, password change on B.
    let created = client()
        .post(format!("{a}/admin/users"))
        .bearer_auth(&admin.access)
        .json(&serde_json::json!({"username": "carl", "password": "carls-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let carl = login(&b, "carl", "carls-password-1").await.unwrap();
    assert_eq!(me(&a, &carl.access).await, 200);
    let changed = client()
        .post(format!("{b}/users/me/password"))
        .bearer_auth(&carl.access)
        .json(&serde_json::json!({"current_password": "carls-password-1", "new_password": "carls-password-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    assert_eq!(within_propagation(|| me(&a, &carl.access), 401).await, 401);
    let carl = login(&a, "carl", "carls-password-2").await.unwrap();
    assert_eq!(me(&b, &carl.access).await, 200);
    let disabled = client()
        .patch(format!("{a}/admin/users/carl"))
        .bearer_auth(&admin.access)
        .json(&serde_json::json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    assert_eq!(within_propagation(|| me(&b, &carl.access), 401).await, 401);
    assert_eq!(login(&b, "carl", "carls-password-2").await.err(), Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_on_one_instance_is_picked_up_by_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database().await;
    let (a, b) = (instance(dir.path(), &db), instance(dir.path(), &db));
    let before = login(&a.url, "admin", ADMIN_PASSWORD).await.unwrap();
    let old_kid = jwt_part(&before.access, 0)["kid"].clone();

    let out = command(dir.path())
        .env("PORTCULLIS_DATABASE_URL", &db)
        .env("PORTCULLIS_SECRET_KEY", SECRET)
        .args(["keys", "rotate", "--algorithm", "ES256"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for server in [&a, &b] {
        let mut switched = None;
        for _ in 0..80 {
            let tokens = login(&server.url, "admin", ADMIN_PASSWORD).await.unwrap();
            if jwt_part(&tokens.access, 0)["kid"] != old_kid {
                switched = Some(tokens);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let fresh = switched.expect("the new key signs within seconds, without a restart");
        assert_eq!(me(&a.url, &fresh.access).await, 200);
        assert_eq!(me(&b.url, &fresh.access).await, 200);
    }
    assert_eq!(me(&b.url, &before.access).await, 200, "old tokens still verify everywhere");
}

/// A client's standing is held in memory on every instance that checked
/// one of its tokens: a disable on one must reach the other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disabled_on_one_instance_is_refused_on_the_other_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database().await;
    let (a, b) = (instance(dir.path(), &db), instance(dir.path(), &db));
    let admin = login(&a.url, "admin", ADMIN_PASSWORD).await.unwrap().access;
    let created: Value = client()
        .post(format!("{}/admin/clients", a.url))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "client_id": "worker", "scopes": ["jobs"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    crate::capture::record("client_secret", &secret);
    let client_token = |url: String| {
        let secret = secret.clone();
        async move {
            let response = client()
                .post(format!("{url}/token"))
                .basic_auth("worker", Some(&secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["access_token"].as_str().map(str::to_owned))
        }
    };
    let active_on = |url: String, token: String| {
        let admin = admin.clone();
        async move {
            let body: Value = client()
                .post(format!("{url}/token/introspect"))
                .bearer_auth(admin)
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["active"].as_bool().unwrap()
        }
    };
    let (status, token) = client_token(b.url.clone()).await;
    assert_eq!(status, 200, "a client registered on A authenticates on B");
    let token = token.unwrap();
    crate::capture::record("access_token", &token);
    assert!(active_on(b.url.clone(), token.clone()).await, "B holds the client now");

    let disabled = client()
        .patch(format!("{}/admin/clients/worker", a.url))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "disabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);

    assert!(!within_propagation(|| active_on(b.url.clone(), token.clone()), false).await, "its token on B");
    assert_eq!(within_propagation(|| async { client_token(b.url.clone()).await.0 }, 401).await, 401, "on B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_are_counted_across_instances() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database().await;
    let (a, b) = (instance(dir.path(), &db), instance(dir.path(), &db));

    // The default limit is 10 failures per account and address: 5 on each
    // instance.
    for _ in 0..5 {
        assert_eq!(login(&a.url, "admin", "wrong-password-1").await.err(), Some(401));
        assert_eq!(login(&b.url, "admin", "wrong-password-1").await.err(), Some(401));
    }
    // An instance reads the shared count again at most once a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    assert_eq!(login(&a.url, "admin", ADMIN_PASSWORD).await.err(), Some(429));
    assert_eq!(login(&b.url, "admin", ADMIN_PASSWORD).await.err(), Some(429));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_refreshes_on_two_instances_yield_at_most_one_success() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database().await;
    let (a, b) = (instance(dir.path(), &db), instance(dir.path(), &db));

    for _ in 0..5 {
        let tokens = login(&a.url, "admin", ADMIN_PASSWORD).await.unwrap();
        let racers: Vec<_> = (0..6)
            .map(|i| {
                let url = if i % 2 == 0 { a.url.clone() } else { b.url.clone() };
                let token = tokens.refresh.clone();
                tokio::spawn(async move { refresh(&url, &token).await })
            })
            .collect();
        let mut statuses = Vec::new();
        for racer in racers {
            statuses.push(racer.await.unwrap());
        }
        assert!(statuses.iter().filter(|s| **s == 200).count() <= 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
    }
}

#[test]
fn an_unreachable_database_at_start_exits_69_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    let out = command(dir.path())
        .env("PORTCULLIS_SECRET_KEY", SECRET)
        .args(["serve", "--bind", "127.0.0.1:0", "--database-timeout", "1s"])
        .args(["--database-url", &format!("postgres://postgres@127.0.0.1:{port}/nowhere")])
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database unavailable"), "{stderr}");
}

#[test]
fn postgres_without_a_secret_refuses_to_start_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::postgres_admin_url();

    let out = command(dir.path()).args(["serve", "--bind", "127.0.0.1:0", "--database-url", &db]).output().unwrap();

    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORTCULLIS_SECRET_KEY"));
}

/// A TCP proxy to PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().unwrap().push(task);
            }
        });
        Proxy { port, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    let host = rest.split('/').next().unwrap();
    if host.contains(':') { host.to_owned() } else { format!("{host}:5432") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_database_goes_away_requests_get_503_and_recover_without_restart() {
    let db = fresh_postgres_database().await;
    let proxy = Proxy::start(host_port(&db)).await;
    let through_proxy = db.replacen(&host_port(&db), &format!("127.0.0.1:{}", proxy.port), 1);
    let app = spawn_with(|c| {
        c.deployment.database_url = through_proxy;
        c.pool.acquire_timeout = Duration::from_secs(1);
    })
    .await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;
    assert_eq!(app.get("/readyz", None).await.status(), 200);

    // The change feed is up (so checks are answered from memory), and this
    // token's standing is held.
    app.until_trusted().await;
    assert_eq!(app.me(&token).await.status(), 200);

    proxy.cut();
    let cut = std::time::Instant::now();

    // Token checks are answered from memory, with no database round trip,
    // until the feed has been silent for STALE_AFTER; then they fail
    // closed. Everything else that needs the database fails at once.
    let (served_from_memory, closed_after) = app.checks_from_memory_until_closed(&token, cut).await;
    assert!(served_from_memory > 0, "the cached standing answered while the database was away");
    assert!(closed_after >= STALE_AFTER - Duration::from_millis(1500), "closed after {closed_after:?}");
    for _ in 0..3 {
        assert_eq!(app.me(&token).await.status(), 503);
        assert_eq!(app.get("/readyz", None).await.status(), 503);
        assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 503);
        assert_eq!(app.get("/healthz", None).await.status(), 200, "the process itself is alive");
    }

    proxy.restore();

    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz", None).await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "the instance recovers by itself");
    assert_eq!(app.me(&token).await.status(), 200);
    assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 200);
}
