//! Usernames that would display as someone else: invisible, format,
//! bidi-control and default-ignorable code points are refused (`422`), and
//! so is a name confusable with a user's (same UTS #39 skeleton, `409`),
//! through the API, the CLI and the store, even when two lookalikes are
//! registered at once. On the back end `PORTCULLIS_TEST_BACKEND` names.

use std::process::Output;

use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, cli, spawn_app, spawn_with, test_database_url};

/// The issue's names, then more of the same kinds, with the code point the
/// refusal must name.
const INVISIBLE: &[(&str, &str)] = &[
    ("admin\u{200b}", "U+200B"),   // zero width space
    ("ad\u{ad}min", "U+00AD"),     // soft hyphen
    ("\u{202e}nimda", "U+202E"),   // right-to-left override: shows as "admin"
    ("admin\u{feff}", "U+FEFF"),   // zero width no-break space (BOM)
    ("ad\u{2066}min", "U+2066"),   // left-to-right isolate
    ("ad\u{2067}min", "U+2067"),   // right-to-left isolate
    ("ad\u{2068}min", "U+2068"),   // first strong isolate
    ("ad\u{2069}min", "U+2069"),   // pop directional isolate
    ("admin\u{61c}", "U+061C"),    // Arabic letter mark
    ("admin\u{180e}", "U+180E"),   // Mongolian vowel separator
    ("ad\u{34f}min", "U+034F"),    // combining grapheme joiner
    ("\u{115f}admin", "U+115F"),   // Hangul choseong filler
    ("admin\u{e0041}", "U+E0041"), // tag Latin capital letter A
];

async fn admin_create(app: &TestApp, token: &str, username: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/admin/users", app.url))
        .bearer_auth(token)
        .json(&json!({"username": username, "password": "a-fine-password-1"}))
        .send()
        .await
        .unwrap()
}

async fn register(app: &TestApp, username: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/users", app.url))
        .json(&json!({"username": username, "password": "a-fine-password-1"}))
        .send()
        .await
        .unwrap()
}

async fn detail(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["detail"].as_str().unwrap_or_default().to_owned()
}

/// Registration on, and not throttled: these tests register many names.
async fn open_registration() -> TestApp {
    spawn_with(|c| {
        c.allow_registration = true;
        c.throttle.registrations_per_address = 1_000;
    })
    .await
}

#[tokio::test]
async fn invisible_and_direction_changing_names_are_refused_naming_the_code_point() {
    let app = open_registration().await;
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;

    for &(name, code_point) in INVISIBLE {
        for response in [admin_create(&app, &admin, name).await, register(&app, name).await] {
            assert_eq!(response.status(), 422, "{name:?}");
            let detail = detail(response).await;
            assert!(detail.starts_with("username: "), "{name:?}: {detail}");
            assert!(detail.contains("invisible or direction-changing"), "{name:?}: {detail}");
            assert!(detail.contains(code_point), "{name:?}: {detail}");
        }
    }
    assert_eq!(app.state.store.count_users().await.unwrap(), 1, "only the admin exists");
}

#[tokio::test]
async fn a_name_confusable_with_a_users_is_refused_and_a_different_one_is_not() {
    let app = open_registration().await;
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;

    // Cyrillic а (U+0430), and rn for m (UTS #39 confusables): both display
    // as "admin".
    for name in ["\u{430}dmin", "\u{410}DMIN", "adrnin"] {
        for response in [admin_create(&app, &admin, name).await, register(&app, name).await] {
            assert_eq!(response.status(), 409, "{name:?}");
            assert_eq!(detail(response).await, "username looks like an existing user's or client's name", "{name:?}");
        }
    }
    // The same user by NFKC and case folding: taken, as before.
    for name in ["Admin", "ａｄｍｉｎ"] {
        let response = register(&app, name).await;
        assert_eq!(response.status(), 409, "{name:?}");
        assert_eq!(detail(response).await, "username is already taken", "{name:?}");
    }
    assert_eq!(register(&app, "admin1").await.status(), 201);
    // Lookalikes of a user created through the API are refused as well.
    assert_eq!(admin_create(&app, &admin, "paypal").await.status(), 201);
    assert_eq!(register(&app, "paypa1").await.status(), 409, "1 for l");
    assert_eq!(register(&app, "p\u{430}yp\u{430}l").await.status(), 409, "Cyrillic а");
    assert_eq!(register(&app, "paypaI").await.status(), 409, "capital I for l");
    // As written: Greek capitals look like Latin ones, which case folding hides.
    assert_eq!(register(&app, "BOB").await.status(), 201);
    assert_eq!(register(&app, "\u{392}\u{39f}\u{392}").await.status(), 409, "Greek ΒΟΒ");
    assert_eq!(app.state.store.count_users().await.unwrap(), 4);
}

#[tokio::test]
async fn of_lookalikes_registered_at_once_exactly_one_is_created() {
    let app = open_registration().await;
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;

    // Each round: names no user has yet, all with one skeleton, sent at
    // once, so they pass the check before hashing together and meet at the
    // insert, where the unique skeleton index lets one through.
    let rounds = [
        ["paypal", "paypa1", "p\u{430}ypal", "pay\u{440}al", "payp\u{430}l", "paypaI"],
        ["mallory", "rnallory", "ma1lory", "m\u{430}llory", "mall\u{43e}ry", "mallor\u{443}"],
        // Fullwidth: the same key as "oscar", so the key's index may be the
        // one that refuses it ("already taken").
        ["oscar", "\u{43e}scar", "os\u{441}ar", "osc\u{430}r", "\u{3bf}scar", "\u{ff4f}scar"],
    ];
    for round in rounds {
        let mut set = tokio::task::JoinSet::new();
        for (i, name) in round.into_iter().enumerate() {
            let (client, url, admin) = (app.client.clone(), app.url.clone(), admin.clone());
            let body = json!({"username": name, "password": "a-fine-password-1"});
            set.spawn(async move {
                // Half through registration, half through the admin API.
                let request = if i % 2 == 0 {
                    client.post(format!("{url}/users"))
                } else {
                    client.post(format!("{url}/admin/users")).bearer_auth(admin)
                };
                request.json(&body).send().await.unwrap().status().as_u16()
            });
        }
        let statuses: Vec<u16> = set.join_all().await;
        assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 1, "{round:?}: {statuses:?}");
        assert_eq!(statuses.iter().filter(|&&s| s == 409).count(), round.len() - 1, "{round:?}: {statuses:?}");
    }
    assert_eq!(app.state.store.count_users().await.unwrap(), 4);
}

#[tokio::test]
async fn login_goes_by_the_key_not_the_skeleton() {
    let app = spawn_app().await;

    assert_eq!(app.login("ADMIN", ADMIN_PASSWORD).await.status(), 200);
    assert_eq!(app.login("\u{430}dmin", ADMIN_PASSWORD).await.status(), 401, "a lookalike is not the user");
    assert_eq!(app.login("adrnin", ADMIN_PASSWORD).await.status(), 401);
}

/// Users stored before the rules (no skeletons, written as the old code
/// did): at the next start each gets its skeletons, except one that looks
/// like an older user (even by one of its two skeletons), which keeps
/// working without any.
#[tokio::test]
async fn users_stored_before_the_rules_get_skeletons_at_start_and_keep_working() {
    use portcullis::domain::Username;
    use portcullis::store::StoreError;
    let dir = tempfile::tempdir().unwrap();
    let url = test_database_url(dir.path()).await;
    let store = portcullis::store::open(&url, &Default::default()).await.unwrap();
    let legacy = [("zoe", 1), ("zoe\u{200b}", 2), ("z\u{43e}e", 3), ("yann", 4), ("Ian", 5), ("Lan", 6)];
    for (name, created_at) in legacy {
        raw_insert(&url, name, created_at).await;
    }
    drop(store);

    let store = portcullis::store::open(&url, &Default::default()).await.unwrap();

    let some = |key: &str, skeleton: Option<&str>| (key.to_owned(), skeleton.map(str::to_owned));
    assert_eq!(
        raw_skeletons(&url).await,
        vec![
            some("zoe", Some("zoe")),
            some("zoe\u{200b}", None),
            some("z\u{43e}e", None),
            some("yann", Some("yann")),
            // As written, capital I looks like l.
            some("ian", Some("ian")),
            some("ian", Some("lan")),
            // Its key's skeleton is Ian's: none, not only the free one.
            some("lan", None),
        ]
    );
    // A new lookalike is refused; the stored ones are still found by key.
    let hash = portcullis::auth::password::StoredHash::new(bcrypt::hash("some password", 4).unwrap());
    let new = |name: &str| portcullis::store::NewUser {
        username: Username::parse(name).unwrap(),
        email: None,
        full_name: None,
        scopes: Default::default(),
        disabled: false,
        password_hash: hash.clone(),
    };
    assert!(matches!(store.insert_user(&new("z\u{43e}\u{435}"), 7).await, Err(StoreError::Confusable)));
    assert!(matches!(store.insert_user(&new("ZOE"), 7).await, Err(StoreError::Conflict)));
    assert!(matches!(store.insert_user(&new("IAN"), 7).await, Err(StoreError::Conflict)));
    assert!(matches!(store.insert_user(&new("lAN"), 7).await, Err(StoreError::Conflict)));
    let key = Username::lookup_key("ZOE\u{200b}").expect("a stored name has a lookup key");
    assert!(store.user_by_key(&key).await.unwrap().is_some());
    // Once the older one is gone, the next start gives the next its skeleton.
    assert!(store.delete_user(&Username::lookup_key("zoe").unwrap(), 1).await.unwrap());
    drop(store);
    let store = portcullis::store::open(&url, &Default::default()).await.unwrap();
    let skeletons = raw_skeletons(&url).await;
    assert_eq!(skeletons[0], some("zoe\u{200b}", Some("zoe")));
    assert_eq!(skeletons[1], some("z\u{43e}e", None));
    assert!(matches!(store.insert_user(&new("zoe"), 8).await, Err(StoreError::Confusable)));
}

/// Writes a user row as the code before skeletons did.
async fn raw_insert(url: &str, name: &str, created_at: i64) {
    use sqlx::Connection;
    let key = portcullis::domain::UserKey::of(name);
    let sql = "insert into users (username, username_key, password_hash, scopes, disabled, created_at, updated_at)
               values ($1, $2, 'x', '', false, $3, $3)";
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql).bind(name).bind(key.as_str()).bind(created_at).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql).bind(name).bind(key.as_str()).bind(created_at).execute(&mut conn).await.unwrap();
    }
}

/// `(username_key, skeleton)` of every user and skeleton (`None` for a
/// user without), by creation, then skeleton.
async fn raw_skeletons(url: &str) -> Vec<(String, Option<String>)> {
    use sqlx::Connection;
    let sql = "select u.username_key, s.skeleton from users u
               left join username_skeletons s on s.user_key = u.username_key
               order by u.created_at, s.skeleton";
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
    }
}

fn refused(output: &Output, reason: &str) {
    assert!(!output.status.success(), "stdout: {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(reason), "{reason:?} not in: {stderr}");
}

#[test]
fn the_cli_refuses_invisible_and_confusable_names() {
    let dir = tempfile::tempdir().unwrap();
    let add = |name: &str| cli(dir.path(), &["user", "add", name, "--password-stdin"], Some("a-fine-password-1\n"));
    assert!(add("grace").status.success());

    for &(name, code_point) in INVISIBLE {
        let out = add(name);
        refused(&out, "invisible or direction-changing");
        refused(&out, code_point);
    }
    refused(&add("gr\u{430}ce"), "looks like an existing user's or client's name");
    refused(&add("Grace"), "already exists");
    assert!(add("grace2").status.success());

    let list = cli(dir.path(), &["user", "list", "--json"], None);
    let users: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2, "{users}");
}

#[test]
fn a_cli_import_with_an_invisible_or_confusable_name_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let add = cli(dir.path(), &["user", "add", "grace", "--password-stdin"], Some("a-fine-password-1\n"));
    assert!(add.status.success());
    let hash = bcrypt::hash("imported-password", 4).unwrap();
    let import = |entries: &[&str]| {
        let db: serde_json::Map<String, Value> =
            entries.iter().map(|name| (name.to_string(), json!({"username": name, "hashed_password": hash}))).collect();
        let file = dir.path().join("users.json");
        std::fs::write(&file, serde_json::to_string(&db).unwrap()).unwrap();
        cli(dir.path(), &["user", "import", file.to_str().unwrap()], None)
    };

    refused(&import(&["heidi", "admin\u{200b}"]), "U+200B");
    refused(&import(&["heidi", "\u{202e}nimda"]), "U+202E");
    refused(&import(&["heidi", "gr\u{430}ce"]), "looks like an existing user's or client's name");
    refused(&import(&["heidi", "he\u{456}di"]), "look alike");

    let list = cli(dir.path(), &["user", "list", "--json"], None);
    let users: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1, "nothing was imported: {users}");
    // The same user again (any case) is skipped as before, not refused.
    let again = import(&["heidi", "GRACE"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stdout).contains("imported 1"));
}
