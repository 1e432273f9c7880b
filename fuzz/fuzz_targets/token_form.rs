//! The token endpoint's form parsing (`OAuthForm`: urlencoded and
//! multipart) through the real router: `POST /token` (or `/login`,
//! `/token/revoke`, `/token/introspect`, which parse the same form) with a
//! fuzzed body and content type, on one server per process (SQLite in a
//! temporary directory). Never a panic, never a 5xx; always a JSON answer
//! with `Cache-Control: no-store`.
//!
//! Input: a selector byte, then for some selectors a line ending in `\n`,
//! then the body. Selector bits 0-1: the content type, `0`
//! `application/x-www-form-urlencoded`, `1` `multipart/form-data` with the
//! boundary `XfuzzX`, `2` multipart with the line as its boundary, `3` the
//! line as the whole `Content-Type`. Bits 2-3: the path, in the order above.
//! Bit 4: the next line is the query string.

#![no_main]

use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};
use clap::Parser;
use libfuzzer_sys::fuzz_target;
use portcullis::cli::{Cli, Command};
use portcullis::config::{Deployment, FileConfig, ServeConfig};
use portcullis::server::Server;
use tower::ServiceExt;

const SECRET: &str = "fuzz-secret-857792094e6520636b5c006881d58affc9496ed797e63d28b830";
const PATHS: [&str; 4] = ["/token", "/login", "/token/revoke", "/token/introspect"];

struct App {
    runtime: tokio::runtime::Runtime,
    router: Router,
    _dir: tempfile::TempDir,
}

static APP: LazyLock<App> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    // In memory where there is /dev/shm: SQLite's syncs would be the cost.
    let shm = std::path::Path::new("/dev/shm");
    let parent = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    remove_stale_dirs(&parent);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir_in(parent)
        .expect("a temporary directory");
    // Through the command line, as `portcullis serve` resolves it: settings
    // added later get their defaults here too.
    let secret_file = dir.path().join("secret-key");
    std::fs::write(&secret_file, SECRET).expect("writing the secret");
    let database_url = format!("sqlite://{}", dir.path().join("portcullis.db").display());
    let cli = Cli::try_parse_from([
        "portcullis",
        "--database-url",
        &database_url,
        "--secret-key-file",
        secret_file.to_str().expect("a UTF-8 temporary path"),
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--bootstrap-admin-password",
        "fuzz-admin-password-42",
    ])
    .expect("the command line parses");
    let Command::Serve(args) = cli.command else { unreachable!("serve") };
    let file = FileConfig::default();
    let deployment = Deployment::resolve(&cli.global, &file).expect("the deployment settings resolve");
    let config = ServeConfig::resolve(args, deployment, file).expect("the serve settings resolve");
    let router = runtime.block_on(async {
        let server = Server::build(&config).await.expect("the server starts");
        portcullis::app(server.state().clone())
    });
    App { runtime, router, _dir: dir }
});

const DIR_PREFIX: &str = "portcullis-fuzz-";

/// A static is never dropped, so each process leaves its database behind:
/// the next one removes those of processes that are gone.
fn remove_stale_dirs(parent: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)).and_then(|n| n.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Splits off the bytes up to the first `\n`.
fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else { return };
    let content_type = match selector & 3 {
        0 => HeaderValue::from_static("application/x-www-form-urlencoded"),
        1 => HeaderValue::from_static("multipart/form-data; boundary=XfuzzX"),
        mode => {
            let (first, body) = line(rest);
            rest = body;
            let value = if mode == 2 {
                let mut value = b"multipart/form-data; boundary=".to_vec();
                value.extend_from_slice(first);
                HeaderValue::from_bytes(&value)
            } else {
                HeaderValue::from_bytes(first)
            };
            let Ok(value) = value else { return };
            value
        }
    };
    let mut uri = PATHS[usize::from(selector >> 2 & 3)].to_owned();
    if selector & 16 != 0 {
        let (query, body) = line(rest);
        rest = body;
        uri.push('?');
        uri.push_str(&String::from_utf8_lossy(query));
    }
    let Ok(request) = Request::builder()
        .method(Method::POST)
        .uri(&uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(rest.to_vec()))
    else {
        return;
    };
    let app = &*APP;
    let (status, headers, body) = app.runtime.block_on(async {
        let response = app.router.clone().oneshot(request).await.expect("the router is infallible");
        let (parts, body) = response.into_parts();
        (parts.status, parts.headers, axum::body::to_bytes(body, usize::MAX).await)
    });
    let body = body.expect("the response body reads");
    let text = String::from_utf8_lossy(&body);
    assert!(!status.is_server_error(), "{status}: {text}");
    // What these routes answer names or carries a credential: never cached.
    let cache = headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(cache.contains("no-store"), "{status} without Cache-Control: no-store: {text}");
    let json = headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    assert!(json && serde_json::from_slice::<serde_json::Value>(&body).is_ok(), "{status}: not a JSON answer: {text}");
});
