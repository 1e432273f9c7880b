//! The real binary: first start, secrets, configuration precedence.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, client, command, serve, serve_prepared};

async fn login_status(url: &str, username: &str, password: &str) -> (u16, Value) {
    let response = crate::helpers::post_login(url, username, password).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_first_start_creates_the_database_the_secret_and_an_admin_with_a_printed_password() {
    let dir = tempfile::tempdir().unwrap();

    let server = serve(command(dir.path()), dir.path());

    assert!(dir.path().join("portcullis.db").exists());
    // It holds password hashes: its owner's alone, and so are SQLite's
    // companion files.
    for file in ["portcullis.db", "portcullis.db-wal", "portcullis.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let secret = dir.path().join("portcullis.secret");
    assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&secret).unwrap().trim().len() >= 64);
    let line = server.stdout_first_lines.iter().find(|l| l.contains("admin")).expect("password printed");
    let password = line.rsplit(": ").next().unwrap().trim();
    let (status, _) = login_status(&server.url, "admin", password).await;
    assert_eq!(status, 200);
    assert!(server.stderr().contains("generated"), "the log says a secret was generated");
    assert!(!server.stderr().contains(password), "the password never reaches the log");
}

#[tokio::test]
async fn a_second_start_prints_no_password_and_keeps_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let first = serve(command(dir.path()), dir.path());
    let line = first.stdout_first_lines.iter().find(|l| l.contains("password")).unwrap().clone();
    let password = line.rsplit(": ").next().unwrap().trim().to_owned();
    let (_, body) = login_status(&first.url, "admin", &password).await;
    drop(first);

    let second = serve(command(dir.path()), dir.path());

    assert!(second.stdout_first_lines.iter().all(|l| !l.contains("password")), "{:?}", second.stdout_first_lines);
    let me = client()
        .get(format!("{}/users/me", second.url))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    // Issuer differs with the port, so check the secret file was reused by logging in again.
    assert!(me.status() == 200 || me.status() == 401);
    let (status, _) = login_status(&second.url, "admin", &password).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_bootstrap_password_from_the_environment_is_used_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD);

    let server = serve(cmd, dir.path());

    assert!(server.stdout_first_lines.iter().all(|l| !l.contains(ADMIN_PASSWORD)));
    assert!(!server.stderr().contains(ADMIN_PASSWORD));
    assert_eq!(login_status(&server.url, "admin", ADMIN_PASSWORD).await.0, 200);
}

fn start_fails_with(secret: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("PORTCULLIS_SECRET_KEY", secret).args(["serve", "--bind", "127.0.0.1:0"]);
    refused_start(cmd, &format!("secret {secret:?}"))
}

/// Runs `serve`, which must stop by itself with an error, and returns its
/// standard error. A server that starts anyway fails the test within 30 s
/// instead of hanging it.
fn refused_start(mut cmd: std::process::Command, what: &str) -> String {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server started with {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success(), "start with {what} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_short_or_published_secret_stops_the_server_saying_how_to_make_one() {
    for secret in [
        "your_secret_key",
        "secret",
        "changeme",
        "short-but-not-published",
        "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7",
    ] {
        let stderr = start_fails_with(secret);
        assert!(stderr.contains("openssl rand -hex 32"), "{secret}: {stderr}");
        assert!(!stderr.contains(secret) || secret.len() < 8, "the secret is not echoed: {stderr}");
    }
}

#[test]
fn a_long_secret_from_the_public_jwt_wordlist_or_of_repeats_and_words_stops_the_server() {
    for (secret, why) in [
        ("my_very_long_and_safe_secret_key", "public wordlist of JWT secrets"),
        ("12345678901234567890123456789012", "public wordlist of JWT secrets"),
        ("thisismysupersecretkeyforjwttokens", "far weaker than its length"),
    ] {
        let stderr = start_fails_with(secret);
        assert!(stderr.contains(why), "{secret}: {stderr}");
        assert!(stderr.contains("openssl rand -hex 32"), "{secret}: {stderr}");
        assert!(!stderr.contains(secret), "the secret is not echoed: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "12345678901234567890123456789012\n").unwrap();
    let mut cmd = command(dir.path());
    cmd.arg("--secret-key-file").arg(&file).args(["serve", "--bind", "127.0.0.1:0"]);
    let stderr = refused_start(cmd, "a listed secret in a file");
    assert!(stderr.contains("public wordlist of JWT secrets") && stderr.contains("openssl rand -hex 32"), "{stderr}");
    assert!(!dir.path().join("portcullis.db").exists(), "refused before the database is touched");
}

#[tokio::test]
async fn config_precedence_is_flag_then_env_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    std::fs::write(&file, "access_token_ttl = \"30m\"\nissuer = \"http://from-file\"\n").unwrap();
    let start = |env_ttl: Option<&str>, flag_ttl: Option<&str>| {
        let mut cmd = command(dir.path());
        cmd.env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD).env("PORTCULLIS_CONFIG", &file);
        if let Some(ttl) = env_ttl {
            cmd.env("PORTCULLIS_ACCESS_TOKEN_TTL", ttl);
        }
        cmd.args(["serve", "--bind", "127.0.0.1:0"]);
        if let Some(ttl) = flag_ttl {
            cmd.args(["--access-token-ttl", ttl]);
        }
        serve_prepared(cmd, dir.path())
    };

    let from_file = start(None, None);
    assert_eq!(ttl_and_issuer(&from_file.url).await, (1800, "http://from-file".into()));
    drop(from_file);

    let from_env = start(Some("20m"), None);
    assert_eq!(ttl_and_issuer(&from_env.url).await, (1200, "http://from-file".into()));
    drop(from_env);

    let from_flag = start(Some("20m"), Some("10m"));
    assert_eq!(ttl_and_issuer(&from_flag.url).await, (600, "http://from-file".into()));
}

async fn ttl_and_issuer(url: &str) -> (u64, String) {
    let (status, body) = login_status(url, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let claims = crate::helpers::jwt_part(body["access_token"].as_str().unwrap(), 1);
    (body["expires_in"].as_u64().unwrap(), claims["iss"].as_str().unwrap().to_owned())
}

#[test]
fn a_bad_config_file_is_reported_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "bnid = \"127.0.0.1:1\"\n").unwrap();

    let output = command(dir.path()).args(["serve", "--config"]).arg(&file).output().unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml") && stderr.contains("bnid"), "{stderr}");
}

#[tokio::test]
async fn credentials_in_a_query_string_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD).env("RUST_LOG", "trace");
    let server = serve(cmd, dir.path());

    let response = client()
        .post(format!("{}/token?username=admin&password=query-secret-12345", server.url))
        .form(&[("username", "admin"), ("password", "body-secret-67890")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (status, body) = login_status(&server.url, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let me = client().get(format!("{}/users/me", server.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let log = server.stderr();
    assert!(log.contains("/token"), "the request was logged at all");
    for secret in ["query-secret-12345", "body-secret-67890", ADMIN_PASSWORD, token.as_str()] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
    assert!(!log.contains("$argon2id$"), "a hash leaked into the log");
}

#[tokio::test]
async fn an_instance_with_another_secret_is_refused_until_the_switch_is_deliberate() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        "first-secret-3726b4573a920c5e612d67bfb11203ffb7e0a1b6685eb06519",
        "second-secret-2f8b749b8b007d2fe24e4b017cca07f3bfd8eaefd49fe6ea02",
    );
    let start = |secret: &str| {
        let mut cmd = command(dir.path());
        cmd.env("PORTCULLIS_SECRET_KEY", secret).env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD);
        cmd
    };
    drop(serve(start(first), dir.path()));

    let refused = start(second).args(["serve", "--bind", "127.0.0.1:0"]).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("different secret") && stderr.contains("--use-secret"), "{stderr}");
    assert!(!stderr.contains(first) && !stderr.contains(second), "no secret in the message");

    let switched = start(second).args(["keys", "rotate", "--use-secret"]).output().unwrap();
    assert!(switched.status.success(), "{}", String::from_utf8_lossy(&switched.stderr));
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let server = serve(start(second), dir.path());
    let (status, body) = login_status(&server.url, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200);
    let kid = crate::helpers::jwt_part(body["access_token"].as_str().unwrap(), 0)["kid"].clone();
    assert_eq!(kid, serde_json::json!(portcullis_verify::shared_secret_kid(second.as_bytes())));
}

#[tokio::test]
async fn with_json_logs_every_line_the_process_writes_is_a_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"]);

    let server = serve_prepared(cmd, dir.path());
    let (status, _) = login_status(&server.url, "nobody", "wrong-password-1").await;

    assert_eq!(status, 401);
    assert!(!server.stdout_first_lines.is_empty(), "the bootstrap password line");
    for line in &server.stdout_first_lines {
        let json: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("stdout: {line}"));
        assert!(json["message"].as_str().unwrap().contains("created user"), "{json}");
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let stderr = server.stderr();
    assert!(stderr.lines().count() > 0);
    for line in stderr.lines() {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "stderr: {line}");
    }
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// With no `--issuer`, the issuer is fixed when the database is created:
/// a restart on another port, or a second instance on the same database,
/// issues and accepts the same `iss`.
#[tokio::test]
async fn without_an_issuer_the_databases_first_one_holds_across_ports_and_instances() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::test_database_url(dir.path()).await;
    let start = |port: u16| {
        let mut config = crate::helpers::test_config(db.clone());
        config.issuer = None;
        config.bind = format!("127.0.0.1:{port}").parse().unwrap();
        async move {
            let server = portcullis::server::Server::build(&config).await.expect("starts");
            let url = format!("http://{}", server.local_addr().unwrap());
            tokio::spawn(server.run());
            url
        }
    };
    let first_port = free_port();
    let first = start(first_port).await;
    let token = crate::helpers::post_login(&first, "admin", crate::helpers::ADMIN_PASSWORD).await;
    let token = token.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(crate::helpers::jwt_part(&token, 1)["iss"], format!("http://127.0.0.1:{first_port}"));

    // A second instance on another port, same database.
    let second = start(free_port()).await;
    let me = |url: String, token: String| async move {
        crate::helpers::client().get(format!("{url}/users/me")).bearer_auth(token).send().await.unwrap().status()
    };
    assert_eq!(me(second.clone(), token.clone()).await, 200, "the other instance accepts it");
    let theirs = crate::helpers::post_login(&second, "admin", crate::helpers::ADMIN_PASSWORD).await;
    let theirs = theirs.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(crate::helpers::jwt_part(&theirs, 1)["iss"], format!("http://127.0.0.1:{first_port}"));
    assert_eq!(me(first.clone(), theirs).await, 200);
    let meta: Value = crate::helpers::client()
        .get(format!("{second}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], format!("http://127.0.0.1:{first_port}"));

    // A configured issuer still wins.
    let mut config = crate::helpers::test_config(db.clone());
    config.issuer = Some("https://auth.example".into());
    let configured = portcullis::server::Server::build(&config).await.unwrap();
    assert_eq!(configured.state().keyring.settings().issuer, "https://auth.example");
}
