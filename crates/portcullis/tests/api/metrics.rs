//! `GET /metrics`: each counter the contract lists moves with what happens
//! over HTTP, latency is kept by route template, the scrape names no user,
//! token or address, and only `--metrics-allow` addresses may read it.
//!
//! Each server has its own registry, so the deltas read here are this
//! test's server's alone, whatever other tests run at the same time.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, TestApp, spawn_with};

/// One series: its name and labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// Reads a scrape: every sample line, by series.
fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels end with }")),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|l| !l.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("a label: {pair}"));
                (key.to_owned(), value.trim_end_matches('"').to_owned())
            })
            .collect();
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number: {line}")),
        };
        samples.insert((name.to_owned(), labels), value);
    }
    samples
}

struct Scrape {
    text: String,
    samples: BTreeMap<Series, f64>,
}

impl Scrape {
    /// The value of a series, or `None` when the scrape lacks it.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }

    /// The sum over every series of a name.
    fn total(&self, name: &str) -> f64 {
        self.samples.iter().filter(|((n, _), _)| n == name).map(|(_, v)| v).sum()
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    Scrape { samples: parse(&text), text }
}

async fn tokens(response: reqwest::Response) -> (String, String) {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
}

const CAROL: &str = "metrics-carol";
const CAROL_PASSWORD: &str = "carols-long-passphrase";
const ERIN: &str = "metrics-erin";
const ERIN_PASSWORD: &str = "erins-long-passphrase";

#[tokio::test]
async fn each_counter_moves_and_no_label_names_a_user_token_or_address() {
    let app = spawn_with(|c| c.throttle.per_pair = 2).await;
    app.add_user(CAROL, CAROL_PASSWORD, "items").await;
    app.add_user(ERIN, ERIN_PASSWORD, "items").await;
    app.disable(ERIN).await;
    let before = scrape(&app).await;

    // A good login, and a refusal for a scope the token lacks.
    let (carol_access, first_refresh) = tokens(app.login(CAROL, CAROL_PASSWORD).await).await;
    let bearer = format!("Bearer {carol_access}");
    assert_eq!(app.get("/admin/users", Some(&bearer)).await.status(), 403);
    // An admin reading a user: a route with a path parameter.
    let (admin_access, _) = tokens(app.login("admin", ADMIN_PASSWORD).await).await;
    let admin = format!("Bearer {admin_access}");
    assert_eq!(app.get(&format!("/admin/users/{CAROL}"), Some(&admin)).await.status(), 200);
    // A refresh, then the retired refresh token again: reuse, the session
    // is revoked, and its access token refused.
    let refresh = |token: String| {
        let app = &app;
        async move { app.post_form("/token", &format!("grant_type=refresh_token&refresh_token={token}")).await }
    };
    let (_, second_refresh) = tokens(refresh(first_refresh.clone()).await).await;
    assert_eq!(refresh(first_refresh.clone()).await.status(), 400);
    assert_eq!(app.get("/users/me", Some(&bearer)).await.status(), 401);
    // A malformed token, and no token at all (not a token check).
    assert_eq!(app.get("/users/me", Some("Bearer not-a-jwt-at-all")).await.status(), 401);
    assert_eq!(app.get("/users/me", None).await.status(), 401);
    // Wrong passwords until throttled; a disabled user's right password.
    assert_eq!(app.login(CAROL, "wrong-passphrase-1").await.status(), 401);
    assert_eq!(app.login(CAROL, "wrong-passphrase-2").await.status(), 401);
    assert_eq!(app.login(CAROL, CAROL_PASSWORD).await.status(), 429);
    assert_eq!(app.login(ERIN, ERIN_PASSWORD).await.status(), 400);
    // A path no route has.
    assert_eq!(app.get(&format!("/nowhere/{CAROL}"), None).await.status(), 404);
    let after = scrape(&app).await;

    let delta = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);
    let logins = "portcullis_logins_total";
    assert_eq!(delta(logins, &[("outcome", "success")]), 2.0);
    assert_eq!(delta(logins, &[("outcome", "bad_credentials")]), 2.0);
    assert_eq!(delta(logins, &[("outcome", "throttled")]), 1.0);
    assert_eq!(delta(logins, &[("outcome", "inactive")]), 1.0);
    assert_eq!(delta(logins, &[("outcome", "shed")]), 0.0);
    let issued = "portcullis_tokens_issued_total";
    assert_eq!(delta(issued, &[("grant", "password")]), 2.0);
    assert_eq!(delta(issued, &[("grant", "refresh_token")]), 1.0);
    let refused = "portcullis_token_checks_refused_total";
    assert_eq!(delta(refused, &[("reason", "insufficient_scope")]), 1.0);
    assert_eq!(delta(refused, &[("reason", "session_ended")]), 1.0);
    assert_eq!(delta(refused, &[("reason", "malformed")]), 1.0);
    assert_eq!(after.total(refused) - before.total(refused), 3.0, "a request without a token is no token check");
    assert_eq!(after.value(refused, &[("reason", "other")]), 0.0);
    assert_eq!(delta("portcullis_refresh_reuse_detected_total", &[]), 1.0);

    // Five verifications went through the hashing pool (the throttled
    // login costs none), and none is waiting now.
    assert_eq!(delta("portcullis_hash_wait_seconds_count", &[]), 5.0);
    assert_eq!(delta("portcullis_hash_duration_seconds_count", &[]), 5.0, "each hash is timed");
    assert_eq!(after.value("portcullis_hash_queue_depth", &[]), 0.0);
    assert_eq!(after.value("portcullis_db_pool_max_connections", &[]), 10.0);
    assert!(after.value("portcullis_db_pool_connections", &[("state", "idle")]) >= 0.0);
    assert!(after.value("portcullis_db_pool_connections", &[("state", "used")]) >= 0.0);

    // Latency by route template, method and status.
    let duration = "portcullis_http_request_duration_seconds_count";
    let requests = |route: &str, method: &str, status: &str| {
        after.get(duration, &[("route", route), ("method", method), ("status", status)]).unwrap_or(0.0)
    };
    assert_eq!(requests("/admin/users/{username}", "GET", "200"), 1.0);
    assert_eq!(requests("/admin/users", "GET", "403"), 1.0);
    assert_eq!(requests("/token", "POST", "200"), 3.0);
    assert_eq!(requests("/token", "POST", "429"), 1.0);
    assert_eq!(requests("/users/me", "GET", "401"), 3.0);
    assert_eq!(requests("unmatched", "GET", "404"), 1.0);
    let last_bucket = [("route", "/token"), ("method", "POST"), ("status", "200"), ("le", "+Inf")];
    assert_eq!(after.get("portcullis_http_request_duration_seconds_bucket", &last_bucket), Some(3.0));

    // No label value is a username, password, token or address.
    let secrets = [
        CAROL,
        ERIN,
        "admin\"",
        CAROL_PASSWORD,
        ERIN_PASSWORD,
        ADMIN_PASSWORD,
        &carol_access,
        &admin_access,
        &first_refresh,
        &second_refresh,
        "not-a-jwt-at-all",
        "/nowhere",
        "127.0.0.1",
        "::1",
    ];
    for secret in secrets {
        assert!(!after.text.contains(secret), "the scrape holds {secret:?}:\n{}", after.text);
    }
    for (_, labels) in after.samples.keys() {
        for value in labels.values() {
            assert!(!value.contains("metrics-"), "label value {value:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_shed_by_a_full_hashing_queue_are_counted_as_shed() {
    let app = spawn_with(|c| {
        c.hash_threads = 1;
        c.hash_queue = 2;
        c.throttle.per_pair = 1000;
        c.throttle.per_address = 1000;
    })
    .await;
    let before = scrape(&app).await;

    let logins: Vec<_> = (0..24)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url.clone());
            tokio::spawn(async move {
                let form = [("username", "admin"), ("password", "wrong-password-x")];
                client.post(format!("{url}/token")).form(&form).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for login in logins {
        statuses.push(login.await.unwrap());
    }
    let after = scrape(&app).await;

    let count = |status: u16| statuses.iter().filter(|s| **s == status).count() as f64;
    assert!(count(503) > 0.0, "{statuses:?}");
    let delta = |outcome: &str| {
        let labels = [("outcome", outcome)];
        after.value("portcullis_logins_total", &labels) - before.value("portcullis_logins_total", &labels)
    };
    assert_eq!(delta("shed"), count(503), "{statuses:?}");
    assert_eq!(delta("bad_credentials"), count(401), "{statuses:?}");
    let waits = after.value("portcullis_hash_wait_seconds_count", &[])
        - before.value("portcullis_hash_wait_seconds_count", &[]);
    assert_eq!(waits, count(401), "every login not shed waited for a hashing thread once");
}

#[tokio::test]
async fn metrics_are_served_only_to_allowed_client_addresses() {
    // Allowed ranges that leave out this loopback client.
    let app = spawn_with(|c| c.metrics_allow = vec!["10.0.0.0/8".parse().unwrap()]).await;
    let refused = app.get("/metrics", None).await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("--metrics-allow"), "{body}");

    // Behind a trusted proxy on loopback, the allowed address is the
    // client's, not the proxy's: a public client is refused.
    let app = spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let forwarded =
        app.client.get(format!("{}/metrics", app.url)).header("x-forwarded-for", "203.0.113.9").send().await.unwrap();
    assert_eq!(forwarded.status(), 403);
    assert_eq!(app.get("/metrics", None).await.status(), 200, "the proxy's own host may read it");
}

#[tokio::test]
async fn the_openapi_document_lists_metrics_under_health() {
    let app = spawn_with(|_| {}).await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let operation = &doc["paths"]["/metrics"]["get"];
    assert_eq!(operation["tags"][0], "health", "{operation}");
    assert!(operation["responses"]["200"]["content"]["text/plain; version=0.0.4; charset=utf-8"].is_object());
    assert!(operation["responses"]["403"].is_object(), "{operation}");
}
