//! `spawn_app()`: the real server on port 0 with a fresh SQLite file, and a
//! client that talks HTTP to it. Also helpers to run the real binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use portcullis::auth::password;
use portcullis::cli::LogFormat;
use portcullis::config::{Deployment, ServeConfig};
use portcullis::domain::{Scopes, UserKey, Username};
use portcullis::server::Server;
use portcullis::state::AppState;
use portcullis::store::NewUser;
use serde_json::Value;
use tempfile::TempDir;

pub const SECRET: &str = "test-secret-857792094e6520636b5c006881d58affc9496ed797e63d28b830";
pub const ADMIN_PASSWORD: &str = "admin-test-password-42";

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// What token checks are answered from.
    pub cache: std::sync::Arc<portcullis::store::cached::CachedStore>,
    pub config: ServeConfig,
    /// Kept so the database outlives the test.
    pub _dir: TempDir,
}

/// The PostgreSQL server tests use: `PORTCULLIS_TEST_POSTGRES`. Tests that
/// need it fail (never skip) without it.
pub fn postgres_admin_url() -> String {
    std::env::var("PORTCULLIS_TEST_POSTGRES").expect(
        "PORTCULLIS_TEST_POSTGRES is not set: point it at a PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432/postgres)",
    )
}

/// A fresh, empty PostgreSQL database for one test; returns its URL.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    crate::capture::init();
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("PORTCULLIS_TEST_POSTGRES is reachable");
    let name = format!("portcullis_t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}"))).execute(&mut conn).await.unwrap();
    let mut url = url_without_path(&admin);
    url.push('/');
    url.push_str(&name);
    url
}

fn url_without_path(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
    url[..path_start].to_owned()
}

/// Whether the HTTP suite runs on PostgreSQL (`PORTCULLIS_TEST_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("PORTCULLIS_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The database for one in-process test server.
pub async fn test_database_url(dir: &Path) -> String {
    if on_postgres() {
        fresh_postgres_database().await
    } else {
        format!("sqlite://{}", dir.join("portcullis.db").display())
    }
}

pub fn test_config(database_url: String) -> ServeConfig {
    ServeConfig {
        deployment: Deployment {
            database_url,
            secret_key: Some(SECRET.into()),
            secret_key_file: None,
            master_key: None,
            access_token_ttl: Duration::from_secs(900),
        },
        bind: "127.0.0.1:0".parse().unwrap(),
        allow_registration: false,
        log_format: LogFormat::Text,
        issuer: Some("http://portcullis.test".into()),
        audience: vec![],
        refresh_token_ttl: Duration::from_secs(14 * 86400),
        session_max_age: Duration::from_secs(30 * 86400),
        algorithm: portcullis::auth::signing::KeyAlgorithm::Hs256,
        bootstrap_admin_password: Some(ADMIN_PASSWORD.into()),
        pool: Default::default(),
        trusted_proxies: vec![],
        metrics_allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        throttle: Default::default(),
        hash_threads: 2,
        hash_queue: 64,
        connections: Default::default(),
        cache: Default::default(),
        tls: None,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(change: impl FnOnce(&mut ServeConfig)) -> TestApp {
    crate::capture::init();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(test_database_url(dir.path()).await);
    change(&mut config);
    record_config_secrets(&config);
    let server = Server::build(&config).await.expect("server starts");
    let addr: SocketAddr = server.local_addr().unwrap();
    let state = server.state().clone();
    let cache = server.cache().clone();
    tokio::spawn(server.run());
    TestApp { url: format!("http://{addr}"), client: client(), state, cache, config, _dir: dir }
}

/// How soon a change made by another process (the CLI, another instance)
/// holds on a server: the change feed's promise.
pub const PROPAGATION: Duration = Duration::from_secs(1);

/// Runs `probe` until it gives `want`, for at most [`PROPAGATION`] after the
/// first try; returns what it gave last.
pub async fn within_propagation<T, F, Fut>(mut probe: F, want: T) -> T
where
    T: PartialEq,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = std::time::Instant::now() + PROPAGATION;
    loop {
        let got = probe().await;
        if got == want || std::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `POST {url}/token` with a username and password, as the tutorials' clients do.
pub async fn post_login(url: &str, username: &str, password: &str) -> reqwest::Response {
    crate::capture::record("password", password);
    let response = client()
        .post(format!("{url}/token"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    crate::capture::tap_tokens(response).await
}

/// With `PORTCULLIS_TEST_LOG_DIR`: the secrets an in-process server is given.
fn record_config_secrets(config: &ServeConfig) {
    use secrecy::ExposeSecret;
    for key in [&config.deployment.secret_key, &config.deployment.master_key].into_iter().flatten() {
        crate::capture::record("key", key.expose_secret());
    }
    if let Some(password) = &config.bootstrap_admin_password {
        crate::capture::record("password", password.expose_secret());
    }
    if let Some(key) = config.tls.as_ref().and_then(|tls| std::fs::read_to_string(&tls.key).ok()) {
        crate::capture::record("key", &key);
    }
}

pub fn client() -> reqwest::Client {
    crate::capture::init();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

impl TestApp {
    /// The `iss` the server issues.
    pub fn issuer(&self) -> String {
        self.state.keyring.settings().issuer.clone()
    }

    pub async fn post_form(&self, path: &str, body: &str) -> reqwest::Response {
        crate::capture::record_form(body);
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        if path == "/token" { crate::capture::tap_tokens(response).await } else { response }
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        crate::capture::record("password", password);
        let response = self
            .client
            .post(format!("{}/token", self.url))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .unwrap();
        crate::capture::tap_tokens(response).await
    }

    pub async fn access_token(&self, username: &str, password: &str) -> String {
        let response = self.login(username, password).await;
        assert_eq!(response.status(), 200, "login of {username} failed");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Logs in and returns the session id its access token names.
    pub async fn live_session(&self, username: &str, password: &str) -> String {
        let token = self.access_token(username, password).await;
        jwt_part(&token, 1)["sid"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.url));
        if let Some(value) = authorization {
            crate::capture::record_authorization(value);
            request = request.header("authorization", value);
        }
        request.send().await.unwrap()
    }

    pub async fn me(&self, token: &str) -> reqwest::Response {
        self.get("/users/me", Some(&format!("Bearer {token}"))).await
    }

    pub async fn add_user(&self, name: &str, password: &str, scopes: &str) {
        let user = NewUser {
            username: Username::parse(name).unwrap(),
            email: Some(format!("{name}@example.com")),
            full_name: None,
            scopes: Scopes::parse(scopes).unwrap(),
            disabled: false,
            password_hash: password::hash(password),
        };
        crate::capture::record("password", password);
        crate::capture::record("hash", user.password_hash.expose());
        self.state.store.insert_user(&user, 0).await.unwrap();
    }

    pub async fn disable(&self, name: &str) {
        let patch = portcullis::store::UserPatch { disabled: Some(true), ..Default::default() };
        self.state.store.update_user(&UserKey::of(name), &patch, 0).await.unwrap().expect("user exists");
    }

    /// Waits until the server answers token checks from memory (its change
    /// feed is up).
    pub async fn until_trusted(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !self.cache.trusted() {
            assert!(std::time::Instant::now() < deadline, "the change feed never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After the database or the feed was taken away at `since`: asks
    /// `/users/me` with `token` until it fails closed (`503` with
    /// `Retry-After` and a `detail`), each earlier answer a `200` from
    /// memory and none later than `STALE_AFTER` plus 2 s. Returns how many
    /// were answered from memory, and when it closed.
    pub async fn checks_from_memory_until_closed(&self, token: &str, since: std::time::Instant) -> (u32, Duration) {
        use portcullis::store::cached::STALE_AFTER;
        let mut from_memory = 0;
        loop {
            let response = self.me(token).await;
            if response.status() == 503 {
                assert!(response.headers().contains_key("retry-after"));
                let body: Value = response.json().await.unwrap();
                assert!(body["detail"].is_string());
                return (from_memory, since.elapsed());
            }
            assert_eq!(response.status(), 200);
            from_memory += 1;
            assert!(since.elapsed() < STALE_AFTER + Duration::from_secs(2), "an old answer is not served for long");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs arbitrary claims with `key`, as an attacker (or a test) would.
    pub fn forge(&self, header: &Header, claims: &Value, key: &[u8]) -> String {
        let token = jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(key)).unwrap();
        crate::capture::record("key", &String::from_utf8_lossy(key));
        crate::capture::record("access_token", &token);
        token
    }
}

/// Decodes a JWT part without verifying it.
pub fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(index).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn now() -> i64 {
    portcullis::clock::Clock::system().now()
}

/// The `portcullis` binary built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// A `portcullis` command in `dir`, with no PORTCULLIS_* from the outside.
/// Runs the CLI in `dir` with `args`, `stdin` written to its standard input.
pub fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child =
        command(dir).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

pub fn command(dir: &Path) -> Command {
    let mut cmd = crate::capture::binary_command(&binary());
    cmd.current_dir(dir).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") {
            cmd.env_remove(key);
        }
    }
    crate::capture::trace_everything(&mut cmd);
    cmd
}

/// A server process; killed on drop.
pub struct Process {
    pub child: Child,
    pub url: String,
    pub stdout_first_lines: Vec<String>,
    pub stderr_path: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::capture::keep_file(&self.stderr_path);
    }
}

impl Process {
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

/// Starts `portcullis serve --bind 127.0.0.1:0` and waits for its address.
pub fn serve(mut cmd: Command, log_dir: &Path) -> Process {
    cmd.args(["serve", "--bind", "127.0.0.1:0"]);
    serve_prepared(cmd, log_dir)
}

/// Starts a command whose arguments already say `serve …`.
pub fn serve_prepared(mut cmd: Command, log_dir: &Path) -> Process {
    use std::io::{BufRead, BufReader};
    let stderr_path = log_dir.join(format!("stderr-{}.log", rand_suffix()));
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut first = Vec::new();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("portcullis listening on ") {
                    break url.to_owned();
                }
                // `--log-format json`: the same line as a JSON object.
                if let Ok(json) = serde_json::from_str::<Value>(&line) {
                    if let Some(url) = json["url"].as_str() {
                        break url.to_owned();
                    }
                }
                first.push(line);
            }
            _ => {
                let _ = child.wait();
                panic!("server exited before listening: {}", std::fs::read_to_string(&stderr_path).unwrap_or_default());
            }
        }
    };
    crate::capture::record_process(&cmd, &first);
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Process { child, url, stdout_first_lines: first, stderr_path }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
