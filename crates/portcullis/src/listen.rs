//! Accepting and serving connections, with the limits that keep slow or
//! idle clients from exhausting the server.
//!
//! `axum::serve` builds hyper without a timer, so hyper's header-read
//! timeout silently does not apply there: a client that never finishes its
//! headers holds its connection forever. Here each connection is served by
//! hyper-util with a timer, and watched:
//! - the request headers must be complete within
//!   [`ConnectionLimits::header_read_timeout`] (hyper checks every HTTP/1.1
//!   request, the idle wait for the next one on a kept-alive connection
//!   included; the watch checks the first one, before hyper even knows the
//!   protocol);
//! - a connection with no request running and nothing read for
//!   [`ConnectionLimits::idle_timeout`] is closed (HTTP/2 idlers, clients
//!   that stop reading their response);
//! - at most [`ConnectionLimits::max_connections`] are open: past that, a
//!   new connection is closed at once rather than queued, so the server
//!   keeps serving those it has.
//!
//! A slow request body is bounded by the router's request timeout
//! ([`ConnectionLimits::request_timeout`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How long and how many connections may stay open.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time a client has to send complete request headers.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request running and
    /// nothing read.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Time requests in flight get to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Time one request may take, its body's upload included (then `408`):
    /// a slow body is bounded here, by the router.
    pub request_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets
/// requests in flight finish within the grace period.
///
/// # Errors
/// None yet: accept errors (e.g. out of file descriptors) are logged and
/// retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: wait for some to close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            tracing::debug!("connection limit reached: closing a new connection");
            drop(stream);
            continue;
        };
        let connection = Connection { app: app.clone(), builder: builder.clone(), limits: Arc::clone(&limits) };
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                // The handshake counts against the header deadline.
                Some(tls) => {
                    match tokio::time::timeout(connection.limits.header_read_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => connection.serve(stream, peer, watcher).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
                None => connection.serve(stream, peer, watcher).await,
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still running after the shutdown grace period were cut off");
    }
    Ok(())
}

struct Connection {
    app: Router,
    builder: Builder<TokioExecutor>,
    limits: Arc<ConnectionLimits>,
}

impl Connection {
    async fn serve<S>(self, stream: S, peer: SocketAddr, watcher: hyper_util::server::graceful::Watcher)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched { inner: stream, activity: Arc::clone(&activity) });
        let app = self.app;
        let seen = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let running = seen.request_started();
            let response = app.clone().oneshot(request);
            async move {
                let response = response.await;
                drop(running);
                response
            }
        });
        let connection = watcher.watch(self.builder.serve_connection(io, service).into_owned());
        tokio::pin!(connection);
        let limits = &self.limits;
        let check = (limits.header_read_timeout.min(limits.idle_timeout) / 4).max(Duration::from_millis(20));
        loop {
            tokio::select! {
                _ = &mut connection => return,
                () = tokio::time::sleep(check) => {
                    if let Some(reason) = activity.overdue(limits) {
                        tracing::debug!(%reason, "closing a connection");
                        return;
                    }
                }
            }
        }
    }
}

/// What a connection has done, updated by its I/O and its requests.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` of the last read that returned bytes.
    last_read_ms: AtomicU64,
    requests: AtomicU64,
    running: AtomicU64,
}

/// Marks a request as running while it lives.
struct Running(Arc<Activity>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            last_read_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            running: AtomicU64::new(0),
        }
    }

    fn request_started(self: &Arc<Self>) -> Running {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.running.fetch_add(1, Ordering::Relaxed);
        Running(Arc::clone(self))
    }

    fn read_some(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// Why the connection should close now, if it should.
    fn overdue(&self, limits: &ConnectionLimits) -> Option<&'static str> {
        if self.running.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let open_for = self.opened.elapsed();
        if self.requests.load(Ordering::Relaxed) == 0 && open_for >= limits.header_read_timeout {
            return Some("no complete request headers in time");
        }
        let last_read = Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed));
        (open_for.saturating_sub(last_read) >= limits.idle_timeout).then_some("idle")
    }
}

/// A stream that tells its [`Activity`] when it reads.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
