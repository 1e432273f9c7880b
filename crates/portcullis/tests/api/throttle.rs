//! Login throttling over HTTP: per account and address, per address, and an
//! account attacked from many addresses; the owner is never locked out from
//! a clean address, a correct password never counts, and the address is
//! read through trusted proxies only, in every form a hop can take.
//!
//! Addresses are told apart with `X-Forwarded-For` behind a trusted
//! loopback proxy: the test client plays many clients.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, TestApp, spawn_with};

/// A server behind a trusted proxy on loopback, with `change` applied to
/// its throttle settings.
async fn behind_proxy(change: impl FnOnce(&mut portcullis::auth::throttle::ThrottleSettings)) -> TestApp {
    spawn_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        change(&mut c.throttle);
    })
    .await
}

async fn login_from(app: &TestApp, username: &str, password: &str, forwarded_for: Option<&[u8]>) -> u16 {
    let mut request =
        app.client.post(format!("{}/token", app.url)).form(&[("username", username), ("password", password)]);
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", reqwest::header::HeaderValue::from_bytes(xff).unwrap());
    }
    request.send().await.unwrap().status().as_u16()
}

async fn from(app: &TestApp, address: &str, username: &str, password: &str) -> u16 {
    login_from(app, username, password, Some(address.as_bytes())).await
}

#[tokio::test]
async fn one_address_guessing_one_account_is_refused_with_retry_after() {
    let app = behind_proxy(|t| t.per_pair = 3).await;

    for _ in 0..3 {
        assert_eq!(from(&app, "203.0.113.5", "admin", "wrong-password-1").await, 401);
    }
    let throttled = app
        .client
        .post(format!("{}/token", app.url))
        .header("x-forwarded-for", "203.0.113.5")
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();

    assert_eq!(throttled.status(), 429, "even the right password waits, from that address");
    let wait: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait > 0 && wait <= 15 * 60, "{wait}");
    let body: Value = throttled.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("try again"), "{body}");
}

#[tokio::test]
async fn someone_elses_failures_never_lock_the_owner_out() {
    let app = behind_proxy(|t| t.per_pair = 3).await;

    for _ in 0..5 {
        from(&app, "203.0.113.5", "admin", "wrong-password-1").await;
    }

    assert_eq!(from(&app, "198.51.100.20", "admin", ADMIN_PASSWORD).await, 200, "the owner, from a clean address");
    assert_eq!(from(&app, "203.0.113.5", "admin", ADMIN_PASSWORD).await, 429);
}

#[tokio::test]
async fn an_account_attacked_from_many_addresses_gives_each_fewer_tries_but_the_owner_gets_in() {
    let app = behind_proxy(|t| {
        t.per_pair = 100;
        t.per_address = 100;
        t.under_attack = 6;
        t.per_pair_under_attack = 2;
    })
    .await;

    // Six addresses, one failure each: the account is now under attack.
    for i in 0..6 {
        assert_eq!(from(&app, &format!("203.0.113.{i}"), "admin", "wrong-password-1").await, 401);
    }
    // An address gets two failures at it now, not a hundred.
    assert_eq!(from(&app, "203.0.113.0", "admin", "wrong-password-1").await, 401);
    assert_eq!(from(&app, "203.0.113.0", "admin", "wrong-password-1").await, 429);
    assert_eq!(from(&app, "203.0.113.1", "admin", "wrong-password-1").await, 401);
    assert_eq!(from(&app, "203.0.113.1", "admin", ADMIN_PASSWORD).await, 429);

    assert_eq!(from(&app, "198.51.100.20", "admin", ADMIN_PASSWORD).await, 200, "the owner, from a clean address");
    assert_eq!(from(&app, "203.0.113.2", "bob", "wrong-password-1").await, 401, "other accounts keep their limits");
}

#[tokio::test]
async fn unknown_usernames_are_throttled_like_known_ones() {
    let app = spawn_with(|c| c.throttle.per_pair = 2).await;

    for _ in 0..2 {
        assert_eq!(app.login("ghost", "wrong-password-1").await.status(), 401);
    }

    assert_eq!(app.login("ghost", "wrong-password-1").await.status(), 429);
}

#[tokio::test]
async fn a_good_login_forgets_the_pairs_failures() {
    let app = spawn_with(|c| c.throttle.per_pair = 3).await;

    for _ in 0..2 {
        app.login("admin", "wrong-password-1").await;
    }
    assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 200);
    for _ in 0..2 {
        assert_eq!(app.login("admin", "wrong-password-1").await.status(), 401);
    }
}

#[tokio::test]
async fn correct_logins_never_count_as_failures_sequential_or_concurrent() {
    let app = spawn_with(|c| {
        c.throttle.per_pair = 3;
        c.throttle.per_address = 3;
    })
    .await;

    for _ in 0..6 {
        assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 200);
    }
    // Rounds of two at once (under the limit of three being checked): every
    // round succeeds, the fourth as the first.
    for round in 0..4 {
        let (a, b) = tokio::join!(app.login("admin", ADMIN_PASSWORD), app.login("admin", ADMIN_PASSWORD));
        assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200), "round {round}");
    }
    assert_eq!(app.state.throttle.buckets_held(), 0, "nothing is held for logins that succeeded");
}

#[tokio::test]
async fn correct_logins_abandoned_mid_check_never_count() {
    let app = spawn_with(|c| c.throttle.per_pair = 3).await;
    // Clients that give up while the hash runs (a timeout, a retrying load
    // balancer, a load generator stopping).
    let impatient = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(2)).build().unwrap();
    for _ in 0..8 {
        let _ = impatient
            .post(format!("{}/token", app.url))
            .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
            .send()
            .await;
    }
    // Let the abandoned checks finish or be dropped.
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 200);
    for _ in 0..3 {
        assert_eq!(app.login("admin", "wrong-password-1").await.status(), 401, "all three failures still allowed");
    }
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_cannot_overshoot_the_limit() {
    let app = spawn_with(|c| c.throttle.per_pair = 3).await;

    let guesses = (0..24).map(|i| {
        let app = &app;
        async move { app.login("admin", &format!("wrong-password-{i}")).await.status().as_u16() }
    });
    let statuses = futures_util_join_all(guesses).await;

    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 3, "only three passwords may be checked: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
}

/// `join_all` without another dependency: spawn-free, polled together.
async fn futures_util_join_all<F: std::future::Future<Output = u16>>(futures: impl Iterator<Item = F>) -> Vec<u16> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out = vec![0; set.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i] == 0 {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = v,
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out
}

#[tokio::test]
async fn one_address_trying_many_accounts_is_throttled_and_only_it() {
    let app = behind_proxy(|t| {
        t.per_pair = 100;
        t.per_address = 4;
    })
    .await;

    for i in 0..4 {
        assert_eq!(from(&app, "203.0.113.5", &format!("user{i}"), "wrong-password-1").await, 401);
    }

    assert_eq!(from(&app, "203.0.113.5", "admin", ADMIN_PASSWORD).await, 429);
    assert_eq!(from(&app, "203.0.113.6", "admin", ADMIN_PASSWORD).await, 200);
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let untrusted = spawn_with(|c| {
        c.throttle.per_pair = 100;
        c.throttle.per_address = 2;
    })
    .await;
    // Not behind a trusted proxy: a client cannot dodge the limit by
    // inventing X-Forwarded-For values.
    for i in 0..2 {
        from(&untrusted, &format!("198.51.100.{i}"), &format!("u{i}"), "wrong-password-1").await;
    }
    assert_eq!(from(&untrusted, "198.51.100.99", "admin", ADMIN_PASSWORD).await, 429);
}

/// Each group of `X-Forwarded-For` values names one client, however it is
/// written; two failures from the group's spellings exhaust its limit.
#[tokio::test]
async fn every_spelling_of_one_client_is_one_bucket() {
    let groups: [&[&[u8]]; 5] = [
        // A hop with a port (what some gateways append), and the client's
        // own invented leading hops.
        &[b"203.0.113.5:4711", b"6.6.6.6, 203.0.113.5:5000"],
        // IPv4-mapped IPv6 is IPv4.
        &[b"::ffff:203.0.113.6", b"[::ffff:203.0.113.6]:80"],
        // One IPv6 host owns a /64.
        &[b"[2001:db8:5:6::1]:443", b"2001:db8:5:6:ffff::2"],
        // A line with a non-ASCII byte is still read: the leading junk is the
        // client's own, the hop the proxy wrote decides.
        &[b"1.1.1.1, 203.0.113.7", b"\xc3\xa9vil, 203.0.113.7"],
        // A trusted proxy seen as IPv4-mapped IPv6 is still the proxy.
        &[b"203.0.113.8, ::ffff:127.0.0.1", b"203.0.113.8, 127.0.0.1:8080"],
    ];
    for group in groups {
        let app = behind_proxy(|t| {
            t.per_pair = 100;
            t.per_address = 2;
        })
        .await;
        for (i, xff) in group.iter().enumerate() {
            assert_eq!(login_from(&app, &format!("u{i}"), "wrong-password-1", Some(xff)).await, 401);
        }
        let last = group[0];
        assert_eq!(
            login_from(&app, "admin", ADMIN_PASSWORD, Some(last)).await,
            429,
            "{:?} are one client",
            group.iter().map(|g| String::from_utf8_lossy(g)).collect::<Vec<_>>()
        );
        assert_eq!(login_from(&app, "admin", ADMIN_PASSWORD, Some(b"198.51.100.20")).await, 200);
    }
}

#[tokio::test]
async fn an_unreadable_hop_is_a_client_of_its_own_never_the_proxy() {
    let app = behind_proxy(|t| {
        t.per_pair = 100;
        t.per_address = 2;
    })
    .await;
    for i in 0..2 {
        login_from(&app, &format!("u{i}"), "wrong-password-1", Some(b"unknown")).await;
    }

    assert_eq!(login_from(&app, "admin", ADMIN_PASSWORD, Some(b"unknown")).await, 429);
    assert_eq!(login_from(&app, "admin", ADMIN_PASSWORD, None).await, 200, "the proxy itself is not throttled");
}

#[tokio::test]
async fn failures_survive_a_restart_on_the_same_database() {
    let first = spawn_with(|c| c.throttle.per_pair = 2).await;
    for _ in 0..2 {
        assert_eq!(first.login("admin", "wrong-password-1").await.status(), 401);
    }

    let mut config = first.config.clone();
    config.bootstrap_admin_password = None;
    let second = portcullis::server::Server::build(&config).await.expect("a second server starts");
    let url = format!("http://{}", second.local_addr().unwrap());
    tokio::spawn(second.run());

    assert_eq!(crate::helpers::post_login(&url, "admin", ADMIN_PASSWORD).await.status(), 429);
}

#[tokio::test]
async fn guessing_the_current_password_with_a_token_is_throttled() {
    let app = spawn_with(|c| c.throttle.per_pair = 2).await;
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

#[tokio::test]
async fn registration_is_throttled_per_address_and_a_taken_name_costs_no_hash() {
    let app = spawn_with(|c| {
        c.allow_registration = true;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.throttle.registrations_per_address = 3;
    })
    .await;
    let register = |name: &str, xff: &'static str| {
        app.client
            .post(format!("{}/users", app.url))
            .header("x-forwarded-for", xff)
            .json(&serde_json::json!({"username": name, "password": "a-fine-password-1"}))
            .send()
    };

    let hashed = app.state.hasher.jobs_accepted();
    assert_eq!(register("ADMIN", "203.0.113.5").await.unwrap().status(), 409);
    assert_eq!(app.state.hasher.jobs_accepted(), hashed, "a taken name is refused before hashing");
    assert_eq!(register("carol", "203.0.113.5").await.unwrap().status(), 201);
    assert_eq!(register("dave", "203.0.113.5").await.unwrap().status(), 201);

    let refused = register("erin", "203.0.113.5").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(register("erin", "198.51.100.20").await.unwrap().status(), 201, "another address may");
}
