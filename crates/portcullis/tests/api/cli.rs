//! `portcullis user …` on the same database as a running server.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, cli, client, command, post_login, serve, within_propagation};

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn login(url: &str, username: &str, password: &str) -> u16 {
    post_login(url, username, password).await.status().as_u16()
}

fn server(dir: &Path) -> crate::helpers::Process {
    let mut cmd = command(dir);
    cmd.env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD);
    serve(cmd, dir)
}

#[tokio::test]
async fn a_user_added_by_the_cli_logs_in_over_http_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());

    let out = cli(
        dir.path(),
        &["user", "add", "grace", "--email", "grace@example.com", "--scopes", "items me", "--password-stdin"],
        Some("graces-password-1\n"),
    );

    ok(&out);
    assert_eq!(login(&server.url, "grace", "graces-password-1").await, 200);
    assert_eq!(login(&server.url, "grace", "graces-password-2").await, 401);
}

#[tokio::test]
async fn disable_enable_passwd_and_delete_take_effect_on_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    ok(&cli(dir.path(), &["user", "add", "heidi", "--password-stdin"], Some("heidis-password-1\n")));

    ok(&cli(dir.path(), &["user", "disable", "heidi"], None));
    assert_eq!(login(&server.url, "heidi", "heidis-password-1").await, 400);

    ok(&cli(dir.path(), &["user", "enable", "HEIDI"], None));
    assert_eq!(login(&server.url, "heidi", "heidis-password-1").await, 200);

    let token: Value = post_login(&server.url, "heidi", "heidis-password-1").await.json().await.unwrap();
    let me = |token: String| {
        let url = server.url.clone();
        async move { client().get(format!("{url}/users/me")).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    let access = token["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(access.clone()).await, 200);
    ok(&cli(dir.path(), &["user", "passwd", "heidi", "--password-stdin"], Some("heidis-new-password\n")));
    assert_eq!(
        within_propagation(|| me(access.clone()), 401).await,
        401,
        "a CLI password change ends the user's sessions on the running server within a second"
    );
    assert_eq!(login(&server.url, "heidi", "heidis-password-1").await, 401);
    assert_eq!(login(&server.url, "heidi", "heidis-new-password").await, 200);

    ok(&cli(dir.path(), &["user", "delete", "heidi"], None));
    assert_eq!(login(&server.url, "heidi", "heidis-new-password").await, 401);
}

#[test]
fn user_list_json_prints_profiles_without_hashes() {
    let dir = tempfile::tempdir().unwrap();
    ok(&cli(
        dir.path(),
        &["user", "add", "ivan", "--admin", "--full-name", "Ivan I", "--password-stdin"],
        Some("ivans-password-1\n"),
    ));

    let out = ok(&cli(dir.path(), &["user", "list", "--json"], None));

    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        list,
        serde_json::json!([{"username": "ivan", "email": null, "full_name": "Ivan I", "disabled": false, "scopes": ["admin"]}])
    );
    assert!(!out.contains("argon2"));
    let table = ok(&cli(dir.path(), &["user", "list"], None));
    assert!(table.contains("ivan") && table.contains("USERNAME"));
}

#[test]
fn bad_passwords_names_and_duplicates_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    ok(&cli(dir.path(), &["user", "add", "Judy", "--password-stdin"], Some("judys-password-1\n")));

    let cases = [
        (vec!["user", "add", "judy", "--password-stdin"], "judys-password-2\n", "already exists"),
        (vec!["user", "add", "ｊｕｄｙ", "--password-stdin"], "judys-password-2\n", "already exists"),
        (vec!["user", "add", "kim", "--password-stdin"], "short\n", "at least 8"),
        (vec!["user", "add", "kim", "--password-stdin"], "password123\n", "too common"),
        (vec!["user", "add", "kim lee", "--password-stdin"], "kims-password-1\n", "spaces"),
        (vec!["user", "passwd", "nobody", "--password-stdin"], "nobodys-password\n", "no user"),
    ];
    for (args, stdin, reason) in cases {
        let out = cli(dir.path(), &args, Some(stdin));
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        assert!(!stderr.contains(stdin.trim()) || stdin.trim().len() < 8, "the password is not echoed: {stderr}");
    }
}

#[test]
fn without_a_terminal_the_cli_asks_for_password_stdin() {
    let dir = tempfile::tempdir().unwrap();

    let out = cli(dir.path(), &["user", "add", "leo"], None);

    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-stdin"));
}

/// A passlib-style hash made by Python's `bcrypt` (what passlib calls).
fn python_bcrypt_hash(password: &str) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=12)).decode())",
            password,
        ])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "python bcrypt: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn imported_tutorial_users_log_in_with_their_old_passwords_and_get_argon2id() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let fresh = python_bcrypt_hash("migrated-password-1");
    assert!(fresh.starts_with("$2b$12$"));
    let db = serde_json::json!({
        "johndoe": {
            "username": "johndoe", "full_name": "John Doe", "email": "johndoe@example.com",
            // The FastAPI tutorial's own fake_users_db entry: password "secret".
            "hashed_password": "$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW", "disabled": false
        },
        "mallory": { "username": "mallory", "hashed_password": fresh },
        "olivia": { "username": "olivia", "hashed_password": python_bcrypt_hash("olivias-password"), "disabled": true },
    });
    let file = dir.path().join("fake_users_db.json");
    std::fs::write(&file, db.to_string()).unwrap();

    let out = ok(&cli(dir.path(), &["user", "import", file.to_str().unwrap()], None));

    assert!(out.contains("imported 3"), "{out}");
    assert_eq!(login(&server.url, "johndoe", "secret").await, 200);
    assert_eq!(login(&server.url, "mallory", "migrated-password-1").await, 200);
    assert_eq!(login(&server.url, "olivia", "olivias-password").await, 400, "imported as disabled");
    let hash_of = |name: &str| {
        let db = dir.path().join("portcullis.db");
        let out = std::process::Command::new("python3")
            .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select password_hash from users where username=?', (sys.argv[2],)).fetchone()[0])"])
            .arg(&db)
            .arg(name)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let mut upgraded = false;
    for _ in 0..100 {
        if hash_of("mallory").starts_with("$argon2id$") && hash_of("johndoe").starts_with("$argon2id$") {
            upgraded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(upgraded, "hashes were not upgraded to argon2id");
    assert!(hash_of("olivia").starts_with("$2b$"), "a failed (inactive) login upgrades nothing");
    assert_eq!(login(&server.url, "mallory", "migrated-password-1").await, 200);

    let again = ok(&cli(dir.path(), &["user", "import", file.to_str().unwrap()], None));
    assert!(again.contains("imported 0") && again.contains("skipped 3"), "{again}");
}

#[test]
fn an_import_with_a_bad_entry_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.json");
    std::fs::write(
        &file,
        r#"{"a": {"username": "anna", "hashed_password": "$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW"},
            "b": {"username": "bob", "hashed_password": "plaintext-oops"}}"#,
    )
    .unwrap();

    let out = cli(dir.path(), &["user", "import", file.to_str().unwrap()], None);

    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"b\"") && !stderr.contains("plaintext-oops"), "{stderr}");
    let list = ok(&cli(dir.path(), &["user", "list", "--json"], None));
    assert_eq!(list.trim(), "[]");
}

#[test]
fn an_import_of_a_hash_that_would_pin_a_hashing_thread_is_refused_naming_user_and_line() {
    let salted = "c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let tutorial = "$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW";
    for (hash, named) in [
        (format!("$argon2id$v=19$m=19456,t=4294967295,p=1${salted}"), "time cost 4294967295"),
        (format!("$argon2id$v=19$m=4194304,t=1,p=1${salted}"), "memory 4194304 KiB"),
        (format!("$argon2id$v=19$m=19456,t=2,p=255${salted}"), "parallelism 255"),
        (format!("$2b$20{}", &tutorial[6..]), "bcrypt cost 20"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.json");
        let json = format!(
            "{{\n  \"a\": {{\"username\": \"anna\", \"hashed_password\": \"{tutorial}\"}},\n  \"m\": {{\"username\": \"mallory\",\n        \"hashed_password\": \"{hash}\"}}\n}}"
        );
        std::fs::write(&file, json).unwrap();

        let out = cli(dir.path(), &["user", "import", file.to_str().unwrap()], None);

        assert!(!out.status.success(), "{named}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("mallory") && stderr.contains("line 4") && stderr.contains(named), "{stderr}");
        assert!(!stderr.contains(salted), "the hash is never printed: {stderr}");
        let list = ok(&cli(dir.path(), &["user", "list", "--json"], None));
        assert_eq!(list.trim(), "[]", "nothing imported");
    }
}

#[tokio::test]
async fn migrate_creates_and_upgrades_both_back_ends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let postgres = crate::helpers::fresh_postgres_database().await;

    for url in [&sqlite, &postgres] {
        let out = command(dir.path()).args(["migrate", "--database-url", url]).output().unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("up to date"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let again = command(dir.path()).args(["migrate", "--database-url", url]).output().unwrap();
        assert!(again.status.success(), "migrating twice is harmless");
    }
    assert!(dir.path().join("fresh.db").exists());
}

#[tokio::test]
async fn user_commands_work_against_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::fresh_postgres_database().await;
    let with_db = |args: &[&str], stdin: Option<&str>| {
        let mut full = vec!["--database-url", db.as_str()];
        full.extend_from_slice(args);
        cli(dir.path(), &full, stdin)
    };

    ok(&with_db(&["user", "add", "pia", "--scopes", "items", "--password-stdin"], Some("pias-password-1\n")));
    ok(&with_db(&["user", "disable", "PIA"], None));
    let list: Value = serde_json::from_str(&ok(&with_db(&["user", "list", "--json"], None))).unwrap();

    assert_eq!(
        list,
        serde_json::json!([{"username": "pia", "email": null, "full_name": null, "disabled": true, "scopes": ["items"]}])
    );
    let dup = with_db(&["user", "add", "Pia", "--password-stdin"], Some("pias-password-2\n"));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
}

#[tokio::test]
async fn the_cli_finds_a_non_ascii_user_by_any_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    ok(&cli(dir.path(), &["user", "add", "Ångström", "--password-stdin"], Some("angstroms-password-1\n")));

    let clash = cli(dir.path(), &["user", "add", "ÅNGSTRÖM", "--password-stdin"], Some("another-password-2\n"));
    assert!(!clash.status.success(), "one user whatever the case");
    ok(&cli(dir.path(), &["user", "disable", "ångström"], None));
    assert_eq!(login(&server.url, "Ångström", "angstroms-password-1").await, 400);
    ok(&cli(dir.path(), &["user", "enable", "A\u{30a}NGSTRO\u{308}M"], None));
    assert_eq!(login(&server.url, "ångström", "angstroms-password-1").await, 200);

    let list: Value = serde_json::from_str(&ok(&cli(dir.path(), &["user", "list", "--json"], None))).unwrap();
    assert!(list.as_array().unwrap().iter().any(|u| u["username"] == "Ångström"));
    ok(&cli(dir.path(), &["user", "delete", "ÅNGSTRÖM"], None));
    assert_eq!(login(&server.url, "Ångström", "angstroms-password-1").await, 401);
}

/// `portcullis check`: each finding on its own line, `fail` exits 1, and the
/// database-backed checks see what the deployment holds.
#[tokio::test]
async fn check_reports_the_common_mistakes_and_fails_on_a_published_secret() {
    let dir = tempfile::tempdir().unwrap();
    let published = "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7";
    let out = command(dir.path()).env("PORTCULLIS_SECRET_KEY", published).args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a published secret fails the check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("fail") && l.contains("secret")), "{text}");
    assert!(text.contains("does not exist yet"), "{text}");
    assert!(!text.contains(published) && !dir.path().join("portcullis.db").exists(), "{text}");

    // A real deployment: started once, then audited with its settings.
    {
        let server = server(dir.path());
        assert_eq!(login(&server.url, "admin", ADMIN_PASSWORD).await, 200);
    }
    let tutorial = r#"{"johndoe": {"username": "johndoe", "hashed_password": "$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW"}}"#;
    std::fs::write(dir.path().join("users.json"), tutorial).unwrap();
    ok(&cli(dir.path(), &["user", "import", "users.json"], None));

    let out =
        cli(dir.path(), &["check", "--access-token-ttl", "2h", "--bind", "0.0.0.0:8000", "--allow-registration"], None);
    let text = ok(&out);
    let status = |check: &str| {
        text.lines().find(|l| l.split_whitespace().nth(1) == Some(check)).map(|l| l[..4].to_owned()).unwrap_or_default()
    };
    assert_eq!(status("secret"), "pass", "{text}");
    for warned in ["access-token-ttl", "bind", "registration", "issuer", "audience", "bootstrap-password", "algorithm"]
    {
        assert_eq!(status(warned), "warn", "{warned}: {text}");
    }
    assert!(text.contains("1 user(s) still have an imported bcrypt hash"), "{text}");

    // Fixed, the warnings go.
    ok(&cli(dir.path(), &["user", "passwd", "admin", "--password-stdin"], Some("a-brand-new-password-9\n")));
    let json =
        ok(&cli(dir.path(), &["check", "--json", "--issuer", "https://auth.example", "--audience", "api"], None));
    let findings: Value = serde_json::from_str(&json).unwrap();
    for check in ["bootstrap-password", "issuer", "audience", "access-token-ttl", "bind", "registration"] {
        let f = findings.as_array().unwrap().iter().find(|f| f["check"] == check).unwrap();
        assert_eq!(f["status"], "pass", "{f}");
    }
}
