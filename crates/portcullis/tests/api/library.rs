//! `portcullis-verify`, the resource-server library, against tokens from a
//! real portcullis server process: shared secret and JWKS, rotation, a flood
//! of unknown `kid`s, the server going down, and every rejection answering
//! exactly as the server's own protected routes do.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_verify::{Authenticated, KeySet, Verifier, VerifyKey};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{ADMIN_PASSWORD, Process, SECRET, client, command, jwt_part, now, serve_prepared};

const ISSUER: &str = "http://portcullis.library.test";

fn server(dir: &std::path::Path, algorithm: &str) -> Process {
    let mut cmd = command(dir);
    cmd.env("PORTCULLIS_SECRET_KEY", SECRET)
        .env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("PORTCULLIS_ISSUER", ISSUER)
        .args(["serve", "--bind", "127.0.0.1:0", "--algorithm", algorithm]);
    serve_prepared(cmd, dir)
}

async fn token(url: &str, scope: Option<&str>) -> String {
    let mut form = vec![("username", "admin"), ("password", ADMIN_PASSWORD)];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let body: Value = client().post(format!("{url}/token")).form(&form).send().await.unwrap().json().await.unwrap();
    body["access_token"].as_str().expect("login works").to_owned()
}

/// A resource server as its README shows it.
fn resource_server(verifier: Verifier) -> Router {
    async fn items(user: Authenticated) -> String {
        format!("items of {}", user.subject())
    }
    Router::new()
        .route("/items", get(items))
        .route("/admin", get(|| async { "admins only" }).layer(verifier.require_scopes(["admin"])))
        .with_state(verifier)
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

async fn call(app: &Router, path: &str, authorization: Option<&str>) -> Answer {
    let mut request = Request::get(path);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    Answer { status, challenge, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

async fn call_server(url: &str, path: &str, authorization: Option<&str>) -> Answer {
    let mut request = client().get(format!("{url}{path}"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    Answer { status, challenge, body: response.text().await.unwrap() }
}

fn shared_secret_verifier() -> Verifier {
    Verifier::builder(KeySet::new([VerifyKey::shared_secret(SECRET.as_bytes())])).issuer(ISSUER).build()
}

fn forge(claims: Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(portcullis_verify::shared_secret_kid(SECRET.as_bytes()));
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_secret_verifier_accepts_server_tokens_and_enforces_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "HS256");
    let app = resource_server(shared_secret_verifier());

    let admin = token(&server.url, None).await;
    let ok = call(&app, "/items", Some(&format!("Bearer {admin}"))).await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "items of admin"));
    assert_eq!(call(&app, "/admin", Some(&format!("Bearer {admin}"))).await.status, StatusCode::OK);

    let narrow = token(&server.url, Some("items")).await;
    let forbidden = call(&app, "/admin", Some(&format!("Bearer {narrow}"))).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(forbidden.challenge.as_deref(), Some("Bearer error=\"insufficient_scope\", scope=\"admin\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_answers_exactly_as_the_server_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "HS256");
    let app = resource_server(shared_secret_verifier());
    let good = token(&server.url, None).await;
    let claims = |exp: i64, iss: &str| json!({"iss": iss, "sub": "admin", "iat": now() - 3600, "nbf": now() - 3600, "exp": exp, "jti": "x", "scope": "admin"});
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let mut not_access = Header::new(Algorithm::HS256);
    not_access.kid = Some(portcullis_verify::shared_secret_kid(SECRET.as_bytes()));
    let id_token =
        jsonwebtoken::encode(&not_access, &claims(now() + 600, ISSUER), &EncodingKey::from_secret(SECRET.as_bytes()))
            .unwrap();

    let cases: Vec<Option<String>> = vec![
        None,
        Some("Basic YWRtaW46eA==".into()),
        Some("Bearer".into()),
        Some("Bearer not.a.token".into()),
        Some(format!("Bearer {tampered}")),
        Some(format!("Bearer {}", forge(claims(now() - 10, ISSUER)))),
        Some(format!("Bearer {}", forge(claims(now() + 600, "http://elsewhere")))),
        Some(format!("Bearer {id_token}")),
    ];
    for authorization in cases {
        let ours = call(&app, "/items", authorization.as_deref()).await;
        let theirs = call_server(&server.url, "/users/me", authorization.as_deref()).await;
        assert_eq!(ours.status, theirs.status, "{authorization:?}");
        assert_eq!(ours.challenge, theirs.challenge, "{authorization:?}");
        assert_eq!(ours.body, theirs.body, "{authorization:?}");
        assert_eq!(ours.status, StatusCode::UNAUTHORIZED);
    }

    // A valid token without the scope: 403 from both, same challenge and body.
    let no_scopes = token(&server.url, Some("nothing-held")).await;
    let ours = call(&app, "/admin", Some(&format!("Bearer {no_scopes}"))).await;
    let theirs = call_server(&server.url, "/admin/users", Some(&format!("Bearer {no_scopes}"))).await;
    assert_eq!(ours.status, StatusCode::FORBIDDEN);
    assert_eq!((ours.status, ours.challenge, ours.body), (theirs.status, theirs.challenge, theirs.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leeway_tolerates_a_little_clock_skew() {
    let expired_a_bit = forge(json!({
        "iss": ISSUER, "sub": "admin", "iat": now() - 900, "nbf": now() - 900, "exp": now() - 5, "jti": "x", "scope": ""
    }));
    let strict = resource_server(
        Verifier::builder(KeySet::new([VerifyKey::shared_secret(SECRET.as_bytes())])).issuer(ISSUER).leeway(0).build(),
    );
    let lenient = resource_server(
        Verifier::builder(KeySet::new([VerifyKey::shared_secret(SECRET.as_bytes())])).issuer(ISSUER).leeway(30).build(),
    );

    assert_eq!(
        call(&strict, "/items", Some(&format!("Bearer {expired_a_bit}"))).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(call(&lenient, "/items", Some(&format!("Bearer {expired_a_bit}"))).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_claims_read_into_the_callers_own_type() {
    #[derive(serde::Deserialize)]
    struct Extra {
        sid: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "HS256");
    let access = token(&server.url, None).await;

    let claims = shared_secret_verifier().verify(&access, now()).unwrap();

    let extra: Extra = claims.extra_as().unwrap();
    assert_eq!(extra.sid, jwt_part(&access, 1)["sid"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_verifier_follows_rotation_and_survives_the_server_going_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server(dir.path(), "EdDSA");
    let verifier = Verifier::from_jwks(format!("{}/.well-known/jwks.json", server.url))
        .issuer(ISSUER)
        .refetch_interval(Duration::from_millis(500))
        .connect()
        .await
        .expect("JWKS fetched");
    let app = resource_server(verifier.clone());
    assert_eq!(verifier.key_fetches(), 1);

    let before = token(&server.url, None).await;
    assert_eq!(call(&app, "/items", Some(&format!("Bearer {before}"))).await.status, StatusCode::OK);
    assert_eq!(verifier.key_fetches(), 1, "a known kid needs no fetch");

    // Rotation on the server: the new kid is unknown here, so one refetch.
    let db = format!("sqlite://{}", dir.path().join("portcullis.db").display());
    let out = command(dir.path())
        .env("PORTCULLIS_SECRET_KEY", SECRET)
        .env("PORTCULLIS_DATABASE_URL", &db)
        .args(["keys", "rotate", "--algorithm", "EdDSA"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut after = before.clone();
    for _ in 0..80 {
        after = token(&server.url, None).await;
        if jwt_part(&after, 0)["kid"] != jwt_part(&before, 0)["kid"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(jwt_part(&after, 0)["kid"], jwt_part(&before, 0)["kid"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(call(&app, "/items", Some(&format!("Bearer {after}"))).await.status, StatusCode::OK);
    assert_eq!(call(&app, "/items", Some(&format!("Bearer {before}"))).await.status, StatusCode::OK);
    let fetches = verifier.key_fetches();
    assert!((2..=3).contains(&fetches), "{fetches}");

    // The server goes away: cached keys keep working, unknown kids fail cleanly.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert_eq!(call(&app, "/items", Some(&format!("Bearer {after}"))).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut header: Value = jwt_part(&after, 0);
    header["kid"] = json!("eddsa-unknown");
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = after.split('.').collect();
    let unknown = format!("{}.{}.{}", engine.encode(header.to_string()), parts[1], parts[2]);
    assert_eq!(call(&app, "/items", Some(&format!("Bearer {unknown}"))).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "/items", Some(&format!("Bearer {after}"))).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_causes_at_most_one_fetch_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "EdDSA");
    let verifier = Verifier::from_jwks(format!("{}/.well-known/jwks.json", server.url))
        .issuer(ISSUER)
        .refetch_interval(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let app = resource_server(verifier.clone());
    let good = token(&server.url, None).await;
    let parts: Vec<&str> = good.split('.').collect();
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let floods: Vec<_> = (0..200)
        .map(|i| {
            let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": format!("garbage-{i}")});
            let forged = format!("{}.{}.{}", engine.encode(header.to_string()), parts[1], parts[2]);
            let app = app.clone();
            tokio::spawn(async move { call(&app, "/items", Some(&format!("Bearer {forged}"))).await.status })
        })
        .collect();
    for flood in floods {
        assert_eq!(flood.await.unwrap(), StatusCode::UNAUTHORIZED);
    }

    assert!(verifier.key_fetches() <= 2, "{} fetches", verifier.key_fetches());
    assert_eq!(call(&app, "/items", Some(&format!("Bearer {good}"))).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_optional_caller_is_none_without_a_token_but_a_bad_token_is_still_refused() {
    async fn greet(user: Option<Authenticated>) -> String {
        match user {
            Some(user) => format!("hello {}", user.subject()),
            None => "hello stranger".to_owned(),
        }
    }
    let app = Router::new().route("/", get(greet)).with_state(shared_secret_verifier());
    let good = forge(
        json!({"iss": ISSUER, "sub": "ann", "iat": now(), "nbf": now(), "exp": now() + 60, "jti": "j", "scope": ""}),
    );

    assert_eq!(call(&app, "/", None).await.body, "hello stranger");
    assert_eq!(call(&app, "/", Some(&format!("Bearer {good}"))).await.body, "hello ann");
    assert_eq!(call(&app, "/", Some("Bearer forged.or.garbage")).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn connecting_to_an_unreachable_jwks_url_is_an_error_not_a_panic() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    let result = Verifier::from_jwks(format!("http://127.0.0.1:{port}/.well-known/jwks.json")).connect().await;

    let err = result.unwrap_err().to_string();
    assert!(err.contains("jwks.json"), "{err}");
}

/// A JWKS endpoint that redirects, or answers a body over the cap, or sits
/// on another host over plain http, is refused: the key set every token is
/// checked against must come from where it was configured, whole and small.
#[tokio::test]
async fn a_jwks_url_that_redirects_is_too_large_or_plain_http_elsewhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = server(dir.path(), "EdDSA");
    let real_jwks = format!("{}/.well-known/jwks.json", real.url);
    let target = real_jwks.clone();
    let app = Router::new()
        .route(
            "/redirect",
            get(move || {
                let target = target.clone();
                async move { axum::response::Redirect::temporary(&target) }
            }),
        )
        .route("/huge", get(|| async { format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(100 * 1024)) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let decoy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert!(Verifier::from_jwks(&real_jwks).connect().await.is_ok(), "the real one works");
    for (url, why) in [
        (format!("{decoy}/redirect"), "redirects are not followed"),
        (format!("{decoy}/huge"), "larger than"),
        ("http://portcullis.invalid/.well-known/jwks.json".to_owned(), "https unless it is on loopback"),
    ] {
        let err = Verifier::from_jwks(&url).connect().await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(why), "{url}: {err}");
    }
}

/// A caller verified by one verifier (a lenient layer in front) is not
/// taken on trust by a handler that uses another: each verifier reuses only
/// its own result.
#[tokio::test]
async fn a_caller_verified_by_another_verifier_is_verified_again() {
    async fn items(user: Authenticated) -> String {
        format!("items of {}", user.subject())
    }
    let lenient =
        Verifier::builder(KeySet::new([VerifyKey::hs256("k", b"a-key-the-handler-does-not-trust-at-all")])).build();
    let strict = Verifier::builder(KeySet::new([VerifyKey::hs256("k", SECRET.as_bytes())])).build();
    let app: Router = Router::new()
        .route("/items", get(items))
        .layer(lenient.require_scopes(Vec::<String>::new()))
        .with_state(strict.clone());
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k".into());
    let claims =
        json!({"iss": "x", "sub": "mallory", "iat": now(), "nbf": now(), "exp": now() + 600, "jti": "j", "scope": ""});
    let forged =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(b"a-key-the-handler-does-not-trust-at-all"))
            .unwrap();

    let answer = call(&app, "/items", Some(&format!("Bearer {forged}"))).await;

    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    // The same verifier as layer and handler verifies once and agrees.
    let same: Router =
        Router::new().route("/items", get(items)).layer(strict.require_scopes(Vec::<String>::new())).with_state(strict);
    let good = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
    assert_eq!(call(&same, "/items", Some(&format!("Bearer {good}"))).await.status, StatusCode::OK);
}
