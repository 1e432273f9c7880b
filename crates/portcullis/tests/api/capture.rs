//! With `PORTCULLIS_TEST_LOG_DIR` set, this suite keeps everything its
//! servers write, at every level, and every secret the tests send or
//! receive, so that `scripts/check-logs` can show that no secret reaches a
//! log. Without it, nothing here does anything.
//!
//! In that directory:
//! - `in-process-<pid>.log` and `.json`: the in-process servers (and the
//!   library, the store, sqlx…): one global subscriber, every target at
//!   TRACE, text with span fields and JSON;
//! - `bin-<pid>-<n>.stdout.log` and `.stderr.log`: each run of the
//!   `portcullis` binary, with `RUST_LOG=trace`;
//! - `secrets-<pid>.jsonl`: `{"class": …, "value": …}` per secret.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use serde_json::{Value, json};

/// The directory, when logs are kept.
pub fn dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("PORTCULLIS_TEST_LOG_DIR").filter(|d| !d.is_empty())?;
        Some(std::path::absolute(dir).expect("PORTCULLIS_TEST_LOG_DIR is a path"))
    })
    .as_deref()
}

fn file_name(stem: &str) -> PathBuf {
    dir().expect("logs are kept").join(format!("{stem}-{}", std::process::id()))
}

/// Installs the in-process log, once per test binary.
pub fn init() {
    static ONCE: Once = Once::new();
    if dir().is_none() {
        return;
    }
    ONCE.call_once(|| {
        use tracing_subscriber::filter::LevelFilter;
        use tracing_subscriber::fmt::format::FmtSpan;
        use tracing_subscriber::prelude::*;
        let create = |extension: &str| {
            let path = file_name("in-process").with_extension(extension);
            Mutex::new(File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        };
        // Span fields are printed when a span opens and closes too, so a
        // span no event happens inside is seen as well.
        let spans = FmtSpan::NEW | FmtSpan::CLOSE;
        let text = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_thread_names(true)
            .with_file(true)
            .with_line_number(true)
            .with_span_events(spans.clone())
            .with_writer(create("log"));
        let json = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_span_events(spans)
            .with_writer(create("json"));
        tracing_subscriber::registry()
            .with(LevelFilter::TRACE)
            .with(text)
            .with(json)
            .try_init()
            .expect("no other global tracing subscriber in the test binary");
        record("key", crate::helpers::SECRET);
        record("password", crate::helpers::ADMIN_PASSWORD);
    });
}

/// Keeps `value` as a secret of `class` (password, access_token,
/// refresh_token, hash, client_secret, key).
pub fn record(class: &str, value: &str) {
    /// The file, and the (class, value) pairs already in it.
    type Secrets = (File, HashSet<(String, String)>);
    static SECRETS: OnceLock<Mutex<Secrets>> = OnceLock::new();
    if dir().is_none() || value.is_empty() {
        return;
    }
    let secrets = SECRETS.get_or_init(|| {
        let path = file_name("secrets").with_extension("jsonl");
        Mutex::new((File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())), HashSet::new()))
    });
    let mut secrets = secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (file, seen) = &mut *secrets;
    if seen.insert((class.to_owned(), value.to_owned())) {
        let line = format!("{}\n", json!({ "class": class, "value": value }));
        file.write_all(line.as_bytes()).expect("writing the secrets file");
    }
}

/// Keeps the credentials an `application/x-www-form-urlencoded` body carries.
pub fn record_form(body: &str) {
    if dir().is_none() {
        return;
    }
    for pair in body.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = value.replace('+', " ");
        let value = percent_encoding::percent_decode_str(&value).decode_utf8_lossy();
        if let Some(class) = form_class(name) {
            record(class, &value);
        }
    }
}

fn form_class(name: &str) -> Option<&'static str> {
    match name {
        "password" | "current_password" | "new_password" => Some("password"),
        "client_secret" => Some("client_secret"),
        "refresh_token" => Some("refresh_token"),
        "access_token" | "token" => Some("access_token"),
        _ => None,
    }
}

/// Keeps the token an `Authorization` header value carries.
pub fn record_authorization(value: &str) {
    if let Some(token) = value.strip_prefix("Bearer ") {
        record("access_token", token.trim());
    } else if let Some(basic) = value.strip_prefix("Basic ") {
        use base64::Engine;
        record("client_secret", basic.trim());
        if let Some(pair) = base64::engine::general_purpose::STANDARD.decode(basic.trim()).ok()
            && let Ok(pair) = String::from_utf8(pair)
            && let Some((_, secret)) = pair.split_once(':')
        {
            record("client_secret", secret);
        }
    }
}

/// Keeps the tokens of a token response, and hands back an equivalent
/// response (same status, version, headers and body; its `url()` is lost).
pub async fn tap_tokens(response: reqwest::Response) -> reqwest::Response {
    if dir().is_none() {
        return response;
    }
    let (status, version, headers) = (response.status(), response.version(), response.headers().clone());
    let body = response.bytes().await.expect("reading a token response");
    if let Ok(json) = serde_json::from_slice::<Value>(&body) {
        for field in ["access_token", "refresh_token"] {
            if let Some(token) = json[field].as_str() {
                record(field, token);
            }
        }
    }
    let mut rebuilt = axum::http::Response::builder().status(status).version(version);
    if let Some(map) = rebuilt.headers_mut() {
        *map = headers;
    }
    reqwest::Response::from(rebuilt.body(body).expect("the same response again"))
}

/// The `portcullis` binary, or — when logs are kept — `bash` running it so
/// that what it writes on pipes (or `/dev/null`) is also appended to log
/// files. A standard stream that is a regular file is left alone:
/// [`keep_file`] copies it when the server stops.
pub fn binary_command(binary: &Path) -> Command {
    let Some(dir) = dir() else {
        return Command::new(binary);
    };
    // `tee -p`: if the reader goes away the log still gets everything.
    const TEE: &str = r#"out=$1 err=$2; shift 2
if [ ! -f /dev/stdout ]; then exec > >(exec tee -p -a -- "$out"); fi
if [ ! -f /dev/stderr ]; then exec 2> >(exec tee -p -a -- "$err" >&2); fi
exec "$@""#;
    let stem = format!("bin-{}-{}", std::process::id(), next());
    let mut cmd = Command::new("bash");
    cmd.args(["-c", TEE, "portcullis-log-tee"])
        .arg(dir.join(format!("{stem}.stdout.log")))
        .arg(dir.join(format!("{stem}.stderr.log")))
        .arg(binary);
    cmd
}

/// `RUST_LOG=trace` for a binary run, when logs are kept.
pub fn trace_everything(cmd: &mut Command) {
    if dir().is_some() {
        cmd.env("RUST_LOG", "trace");
    }
}

/// Keeps what a server process was started with and what it wrote first:
/// secrets in its environment, the secret it generated in its directory,
/// the bootstrap password it printed.
pub fn record_process(cmd: &Command, first_lines: &[String]) {
    if dir().is_none() {
        return;
    }
    for (key, value) in cmd.get_envs() {
        let (key, Some(value)) = (key.to_string_lossy(), value) else { continue };
        if ["SECRET", "PASSWORD", "MASTER", "KEY"].iter().any(|s| key.contains(s)) {
            record(if key.contains("PASSWORD") { "password" } else { "key" }, &value.to_string_lossy());
        }
    }
    if let Some(generated) =
        cmd.get_current_dir().and_then(|d| std::fs::read_to_string(d.join("portcullis.secret")).ok())
    {
        record("key", generated.trim());
    }
    for line in first_lines {
        let message = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|json| json["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| line.clone());
        if let Some((_, rest)) = message.split_once("with password: ") {
            record("password", rest.split_whitespace().next().unwrap_or_default());
        }
    }
}

/// Copies a server's log file into the directory (a stopped server's
/// standard error, which went to a file of its test's own).
pub fn keep_file(path: &Path) {
    if let Some(dir) = dir() {
        let copy = dir.join(format!("bin-{}-{}.stderr-file.log", std::process::id(), next()));
        let _ = std::fs::copy(path, copy);
    }
}

fn next() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
