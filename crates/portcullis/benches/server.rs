//! The server's own costs, one operation at a time on one core: issuing an
//! access token (HS256, EdDSA, ES256), a full token check from memory (the
//! verifier with its standing check, as a protected route runs it), one
//! argon2id hash, and a refresh-token rotation against a real SQLite file.
//! Results: `bench/RESULTS.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::auth::password;
use portcullis::auth::signing::KeyAlgorithm;
use portcullis::cli::LogFormat;
use portcullis::config::{Deployment, ServeConfig};
use portcullis::domain::{Scopes, UserKey};
use portcullis::server::Server;
use portcullis::store::Session;

const SECRET: &str = "bench-secret-4d1f0c9a7e3b5d2f8a6c4e0b9d7f1a3c5e7b9d1f3a5c7e9b";

fn config(dir: &std::path::Path, algorithm: KeyAlgorithm) -> ServeConfig {
    ServeConfig {
        deployment: Deployment {
            database_url: format!("sqlite://{}", dir.join("bench.db").display()),
            secret_key: Some(SECRET.into()),
            secret_key_file: None,
            master_key: None,
            access_token_ttl: Duration::from_secs(900),
        },
        bind: "127.0.0.1:0".parse().unwrap(),
        allow_registration: false,
        log_format: LogFormat::Text,
        issuer: Some("http://portcullis.bench".into()),
        audience: vec![],
        refresh_token_ttl: Duration::from_secs(14 * 86400),
        session_max_age: Duration::from_secs(30 * 86400),
        algorithm,
        bootstrap_admin_password: Some("bench-admin-password-1".into()),
        pool: Default::default(),
        trusted_proxies: vec![],
        metrics_allow: vec![],
        throttle: Default::default(),
        hash_threads: 1,
        hash_queue: 4,
        connections: Default::default(),
        cache: Default::default(),
        tls: None,
    }
}

fn tokens(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let scope = Scopes::parse("admin").unwrap();
    let mut issue = c.benchmark_group("issue");
    issue.throughput(Throughput::Elements(1));
    let mut servers = Vec::new();
    for (name, algorithm) in
        [("HS256", KeyAlgorithm::Hs256), ("EdDSA", KeyAlgorithm::EdDsa), ("ES256", KeyAlgorithm::Es256)]
    {
        let dir = tempfile::tempdir().unwrap();
        let server = rt.block_on(Server::build(&config(dir.path(), algorithm))).unwrap();
        let state = server.state().clone();
        issue.bench_function(name, |b| {
            b.iter(|| state.keyring.issue(black_box("admin"), &scope, Some("sid"), 1_800_000_000))
        });
        servers.push((name, dir, server));
    }
    issue.finish();

    // The whole check a protected route makes: signature, claims, and the
    // standing of user, session and jti, answered from memory once the
    // change feed runs.
    let mut check = c.benchmark_group("check");
    check.throughput(Throughput::Elements(1));
    for (name, _dir, server) in servers {
        let state = server.state().clone();
        let cache = server.cache().clone();
        rt.spawn(server.run());
        let now = state.clock.now();
        let sid = "bench-session";
        let session =
            Session { id: sid.into(), user_key: UserKey::of("admin"), scope: "admin".into(), client_id: None };
        rt.block_on(async {
            let admin = state.store.user_by_key(&UserKey::of("admin")).await.unwrap().unwrap();
            let scopes = Scopes::parse("admin").unwrap();
            assert!(
                state
                    .store
                    .create_session(&session, &admin.password_hash, &scopes, "r0", now + 3600, now)
                    .await
                    .unwrap()
            );
            while !cache.trusted() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let token = state.keyring.issue("admin", &Scopes::parse("admin").unwrap(), Some(sid), now).jwt;
        let verifier = state.verifier().clone();
        rt.block_on(verifier.authenticate(&token, now)).expect("the token stands");
        check.bench_function(name, |b| b.iter(|| rt.block_on(verifier.authenticate(black_box(&token), now)).unwrap()));
    }
    check.finish();
}

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("argon2id");
    group.throughput(Throughput::Elements(1)).sample_size(20);
    group.bench_function("hash", |b| b.iter(|| password::hash(black_box("correct horse battery staple"))));
    group.finish();
}

fn rotation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = rt.block_on(Server::build(&config(dir.path(), KeyAlgorithm::Hs256))).unwrap();
    let store = server.state().store.clone();
    let now = server.state().clock.now();
    let session =
        Session { id: "rotating".into(), user_key: UserKey::of("admin"), scope: "admin".into(), client_id: None };
    rt.block_on(async {
        let admin = store.user_by_key(&UserKey::of("admin")).await.unwrap().unwrap();
        let scopes = Scopes::parse("admin").unwrap();
        assert!(store.create_session(&session, &admin.password_hash, &scopes, "r-0", now + 86400, now).await.unwrap());
    });
    let mut group = c.benchmark_group("refresh");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("rotate on SQLite", |b| {
        b.iter(|| {
            let (old, new) = (format!("r-{n}"), format!("r-{}", n + 1));
            n += 1;
            let rotated = rt.block_on(store.rotate_refresh_token(&old, &new, now + 86400, 30 * 86400, now)).unwrap();
            assert!(matches!(rotated, portcullis::store::Rotation::Rotated(_)));
        })
    });
    group.finish();
}

criterion_group!(benches, tokens, hashing, rotation);
criterion_main!(benches);
