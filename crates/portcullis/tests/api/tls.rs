//! HTTPS: a generated certificate, real clients (reqwest over rustls, curl
//! for HTTP/2), HSTS, and a renewed certificate served without a restart.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::{ADMIN_PASSWORD, spawn_with};

/// A self-signed P-256 certificate for 127.0.0.1 and localhost, by openssl.
fn make_certificate(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={name}"), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // A leaf, not a CA: rustls refuses a CA certificate as a server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

fn client_trusting(cert: &Path) -> reqwest::Client {
    let pem = std::fs::read(cert).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

async fn spawn_tls(cert: &Path, key: &Path) -> String {
    let files = portcullis::tls::TlsFiles { cert: cert.to_owned(), key: key.to_owned() };
    let app = spawn_with(|c| c.tls = Some(files)).await;
    let url = app.url.replace("http://", "https://");
    std::mem::forget(app); // keep its temp dir and server alive for the test
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http1_and_http2_with_hsts_and_logins_work() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_certificate(dir.path(), "first");
    let url = spawn_tls(&cert, &key).await;
    let client = client_trusting(&cert);

    let health = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["strict-transport-security"], "max-age=31536000");
    let login = client.post(format!("{url}/token")).form(&[("username", "admin"), ("password", ADMIN_PASSWORD)]);
    assert_eq!(login.send().await.unwrap().status(), 200);

    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", flag, "--cacert"])
            .arg(&cert)
            .arg(format!("{url}/healthz"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("200 {version}"), "{flag}");
    }
    // Plain HTTP to the TLS port gets no answer.
    let plain = crate::helpers::client().get(format!("{}/healthz", url.replace("https://", "http://"))).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_certificate(dir.path(), "served");
    let url = spawn_tls(&cert, &key).await;
    assert_eq!(client_trusting(&cert).get(format!("{url}/healthz")).send().await.unwrap().status(), 200);

    let (new_cert, new_key) = make_certificate(dir.path(), "renewed");
    let renewed = client_trusting(&new_cert);
    assert!(renewed.get(format!("{url}/healthz")).send().await.is_err(), "the new certificate is not served yet");
    // As a renewal tool does: new files moved into place.
    std::fs::copy(&new_key, dir.path().join("tmp.key")).unwrap();
    std::fs::copy(&new_cert, dir.path().join("tmp.crt")).unwrap();
    std::fs::rename(dir.path().join("tmp.key"), &key).unwrap();
    std::fs::rename(dir.path().join("tmp.crt"), &cert).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A fresh client each time: a fresh handshake.
        if let Ok(response) = client_trusting(&new_cert).get(format!("{url}/healthz")).send().await {
            assert_eq!(response.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "the renewed certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_key_that_does_not_fit_its_certificate_stops_the_start_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = make_certificate(dir.path(), "one");
    let (_, other_key) = make_certificate(dir.path(), "two");
    let db = crate::helpers::test_database_url(dir.path()).await;
    let mut config = crate::helpers::test_config(db);
    config.tls = Some(portcullis::tls::TlsFiles { cert, key: other_key });

    let err = portcullis::server::Server::build(&config).await.err().expect("refused").to_string();

    assert!(err.contains("does not fit"), "{err}");
}

/// A body that sends `first`, then waits for `go` before sending `rest`.
fn held_body(first: &'static [u8], rest: &'static [u8], go: tokio::sync::oneshot::Receiver<()>) -> reqwest::Body {
    struct Held {
        first: Option<&'static [u8]>,
        rest: Option<&'static [u8]>,
        go: tokio::sync::oneshot::Receiver<()>,
    }
    impl futures_core::Stream for Held {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            use std::task::Poll;
            if let Some(first) = self.first.take() {
                return Poll::Ready(Some(Ok(first.to_vec())));
            }
            if self.rest.is_none() {
                return Poll::Ready(None);
            }
            match std::pin::Pin::new(&mut self.go).poll(cx) {
                Poll::Ready(_) => Poll::Ready(self.rest.take().map(|r| Ok(r.to_vec()))),
                Poll::Pending => Poll::Pending,
            }
        }
    }
    reqwest::Body::wrap_stream(Held { first: Some(first), rest: Some(rest), go })
}

/// SIGTERM with a request in flight: the request completes, new connections
/// are refused, and the process exits 0 — over TLS and over plain HTTP, on
/// SQLite and on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_flight_finish_and_exits_zero() {
    // The last round on PostgreSQL: its change feed holds a connection
    // open (LISTEN) that must not keep the process alive.
    for (tls, postgres) in [(true, false), (false, false), (false, true)] {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make_certificate(dir.path(), "shutdown");
        let mut cmd = crate::helpers::command(dir.path());
        cmd.env("PORTCULLIS_SECRET_KEY", crate::helpers::SECRET)
            .env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .args(["serve", "--bind", "127.0.0.1:0"]);
        if postgres {
            cmd.env("PORTCULLIS_DATABASE_URL", crate::helpers::fresh_postgres_database().await);
        }
        if tls {
            cmd.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
        }
        let mut server = crate::helpers::serve_prepared(cmd, dir.path());
        assert!(server.url.starts_with(if tls { "https://" } else { "http://" }), "{}", server.url);
        let client = client_trusting(&cert);

        let (go, wait) = tokio::sync::oneshot::channel();
        let body = held_body(b"username=admin&pass", b"word=admin-test-password-42", wait);
        let in_flight = tokio::spawn(
            client
                .post(format!("{}/token", server.url))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pid = server.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = go.send(());

        let response = in_flight.await.unwrap().expect("the request in flight is answered");
        assert_eq!(response.status(), 200, "tls={tls}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "tls={tls}: still running 10 s after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(status.code(), Some(0), "tls={tls}");
    }
}
