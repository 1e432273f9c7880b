//! Slow and idle clients cannot exhaust the server: connections that never
//! finish their headers, that drip them byte by byte, that sit idle after a
//! response, are closed; past the connection bound new ones are closed at
//! once while the open ones are served. Timeouts are shortened for the test.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_with};

async fn spawn_limited(max_connections: usize) -> TestApp {
    spawn_with(|c| {
        c.connections.header_read_timeout = Duration::from_secs(1);
        c.connections.idle_timeout = Duration::from_secs(2);
        c.connections.max_connections = max_connections;
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.url.trim_start_matches("http://")).await.unwrap()
}

/// Whether the server closed `stream` within `within` (reads until EOF or
/// a reset; what the server sent before closing, e.g. a 408, is skipped).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_unfinished_requests_are_closed_and_a_fresh_client_is_answered() {
    let app = spawn_limited(1024).await;
    let mut partial = Vec::new();
    for i in 0..300 {
        let mut stream = connect(&app).await;
        // Some send half a request, some nothing at all.
        if i % 3 != 0 {
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        }
        partial.push(stream);
    }

    let fresh = app.client.get(format!("{}/healthz", app.url)).send().await.unwrap();
    assert_eq!(fresh.status(), 200, "a fresh client is answered while 300 partial requests are open");

    let mut still_open = 0;
    for stream in &mut partial {
        if !closed_within(stream, Duration::from_secs(5)).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "every unfinished request is closed after the header timeout");
}

#[tokio::test]
async fn headers_dripped_byte_by_byte_are_cut_off_at_the_header_timeout() {
    let app = spawn_limited(1024).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for byte in request {
        if stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each byte is activity; the header deadline holds anyway.
    assert!(cut || closed_within(&mut stream, Duration::from_secs(3)).await, "a drip-fed header is cut off");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn a_kept_alive_connection_left_idle_is_closed() {
    let app = spawn_limited(1024).await;
    let mut stream = connect(&app).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "the first request is answered");

    assert!(closed_within(&mut stream, Duration::from_secs(5)).await, "then the idle connection is closed");
}

#[tokio::test]
async fn past_the_connection_bound_new_connections_are_closed_and_service_resumes() {
    let app = spawn_limited(20).await;
    let mut squatters = Vec::new();
    for _ in 0..20 {
        squatters.push(connect(&app).await);
    }
    // Let the server accept them all.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut extra = connect(&app).await;
    assert!(closed_within(&mut extra, Duration::from_millis(500)).await, "the 21st connection is closed at once");

    // The squatters time out; then the server answers again.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let fresh = app.client.get(format!("{}/healthz", app.url)).send().await.unwrap();
    assert_eq!(fresh.status(), 200);
}

#[tokio::test]
async fn a_request_slower_than_the_idle_timeout_is_not_cut_off() {
    // A login waiting for the hash is no idle connection: with the only
    // hashing thread busy, the request runs longer than the idle timeout.
    let app = spawn_with(|c| {
        c.connections.header_read_timeout = Duration::from_millis(300);
        c.connections.idle_timeout = Duration::from_millis(300);
        c.hash_threads = 1;
    })
    .await;
    let busy = app.state.hasher.run(|| std::thread::sleep(Duration::from_millis(900)));
    let (_, login) = tokio::join!(busy, app.login("admin", crate::helpers::ADMIN_PASSWORD));
    assert_eq!(login.status(), 200);
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_a_json_408_and_the_connection_ends() {
    let app = spawn_with(|c| c.connections.request_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=ad")
        .await
        .unwrap();

    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;

    assert!(read.is_ok(), "the server answered and closed within the request timeout");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"detail\""), "the 408 carries a JSON detail: {text}");
}
