//! Prometheus metrics: every name and label in one place, the recorder that
//! `GET /metrics` renders, and the layer that times requests.
//!
//! Each server holds its own recorder ([`Metrics`]) rather than installing
//! the `metrics` facade's process-global one: every emission goes through a
//! method here, which hands the facade this server's recorder for that
//! one synchronous call (`metrics::with_local_recorder`). One server per
//! process (the binary) sees no difference; a process running several
//! servers (the test suite) keeps each server's numbers apart, so a test
//! can read exact deltas of its own server.
//!
//! No label carries a username, client id, token or address: every label
//! value comes from a fixed set (the enums below, an HTTP status, a route
//! *template* such as `/admin/users/{username}`, never a raw path).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::metrics::{
    Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
    with_local_recorder,
};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::store::PoolUse;

/// Password logins, by [`LoginOutcome`].
pub const LOGINS: &str = "portcullis_logins_total";
/// Token responses sent, by [`Grant`].
pub const TOKENS_ISSUED: &str = "portcullis_tokens_issued_total";
/// Bearer tokens refused on protected routes, by [`Refusal`].
pub const TOKEN_CHECKS_REFUSED: &str = "portcullis_token_checks_refused_total";
/// Retired refresh tokens presented again (their session was revoked).
pub const REFRESH_REUSE: &str = "portcullis_refresh_reuse_detected_total";
/// Hashing jobs accepted and not yet started.
pub const HASH_QUEUE_DEPTH: &str = "portcullis_hash_queue_depth";
/// Time from a hashing job's submission to its start.
pub const HASH_WAIT: &str = "portcullis_hash_wait_seconds";
/// Histogram: how long each hashing job ran on its thread.
pub const HASH_DURATION: &str = "portcullis_hash_duration_seconds";
/// Request latency by route template, method and status.
pub const HTTP_DURATION: &str = "portcullis_http_request_duration_seconds";
/// Database connections open, by state (`idle`, `used`).
pub const DB_POOL: &str = "portcullis_db_pool_connections";
/// Most database connections the pool opens.
pub const DB_POOL_MAX: &str = "portcullis_db_pool_max_connections";

/// The `Content-Type` of a scrape (Prometheus text exposition format).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets in seconds, up to the 30-second request timeout.
const HTTP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Hashing-queue wait buckets in seconds: a hash takes ~20 ms.
const HASH_WAIT_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How a password login ended (`outcome` label of [`LOGINS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Tokens issued.
    Success,
    /// Unknown user or wrong password (`401`).
    BadCredentials,
    /// Refused by login throttling (`429`).
    Throttled,
    /// Shed because the hashing queue was full (`503`).
    Shed,
    /// Right password, disabled user (`400`).
    Inactive,
    /// The database failed (`503`).
    Error,
}

impl LoginOutcome {
    /// Every outcome, so each series exists (at 0) from the start.
    pub const ALL: [LoginOutcome; 6] = [
        LoginOutcome::Success,
        LoginOutcome::BadCredentials,
        LoginOutcome::Throttled,
        LoginOutcome::Shed,
        LoginOutcome::Inactive,
        LoginOutcome::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::BadCredentials => "bad_credentials",
            LoginOutcome::Throttled => "throttled",
            LoginOutcome::Shed => "shed",
            LoginOutcome::Inactive => "inactive",
            LoginOutcome::Error => "error",
        }
    }
}

/// The grant a token response answered (`grant` label of [`TOKENS_ISSUED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=password`.
    Password,
    /// `grant_type=refresh_token`.
    RefreshToken,
    /// `grant_type=client_credentials`.
    ClientCredentials,
    /// RFC 8693 token exchange.
    TokenExchange,
}

impl Grant {
    /// Every grant.
    pub const ALL: [Grant; 4] = [Grant::Password, Grant::RefreshToken, Grant::ClientCredentials, Grant::TokenExchange];

    /// The label value (the `grant_type` itself).
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Password => "password",
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
            Grant::TokenExchange => "token_exchange",
        }
    }
}

/// Why a bearer token was refused (`reason` label of
/// [`TOKEN_CHECKS_REFUSED`]): the refusal's text mapped onto a fixed set,
/// never the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a JWT, not an access token, unreadable claims, `crit` headers.
    Malformed,
    /// No key with the token's `kid`.
    UnknownKey,
    /// The header's `alg` is not its key's.
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` or `iat` in the future.
    NotYetValid,
    /// Another `iss`.
    WrongIssuer,
    /// Another `aud`.
    WrongAudience,
    /// Lives longer than any token this server issues.
    TooLongLived,
    /// Its `jti` is denied (revoked, logged out).
    Revoked,
    /// Names no session (`sid`).
    NoSession,
    /// Its session has ended.
    SessionEnded,
    /// Its user was deleted.
    UserGone,
    /// Its user is disabled.
    UserDisabled,
    /// Claims scopes beyond its session's grant or the user's scopes.
    ScopeBeyondSession,
    /// A client's own token on a route that acts for a user.
    ClientToken,
    /// Valid, but lacks the scope the route needs (`403`).
    InsufficientScope,
    /// A refusal this list does not know (a new text in `portcullis-verify`).
    Other,
}

impl Refusal {
    /// Every reason.
    pub const ALL: [Refusal; 18] = [
        Refusal::Malformed,
        Refusal::UnknownKey,
        Refusal::AlgorithmMismatch,
        Refusal::BadSignature,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::WrongIssuer,
        Refusal::WrongAudience,
        Refusal::TooLongLived,
        Refusal::Revoked,
        Refusal::NoSession,
        Refusal::SessionEnded,
        Refusal::UserGone,
        Refusal::UserDisabled,
        Refusal::ScopeBeyondSession,
        Refusal::ClientToken,
        Refusal::InsufficientScope,
        Refusal::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::UnknownKey => "unknown_key",
            Refusal::AlgorithmMismatch => "algorithm_mismatch",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::TooLongLived => "too_long_lived",
            Refusal::Revoked => "revoked",
            Refusal::NoSession => "no_session",
            Refusal::SessionEnded => "session_ended",
            Refusal::UserGone => "user_gone",
            Refusal::UserDisabled => "user_disabled",
            Refusal::ScopeBeyondSession => "scope_beyond_session",
            Refusal::ClientToken => "client_token",
            Refusal::InsufficientScope => "insufficient_scope",
            Refusal::Other => "other",
        }
    }

    /// The reason of an `invalid_token` refusal's `error_description` (the
    /// texts of `portcullis-verify` and of `auth::standing::refusal`).
    pub fn of_description(description: &str) -> Refusal {
        match description {
            "malformed token"
            | "empty bearer token"
            | "token claims are missing or malformed"
            | "not an access token (typ must be at+jwt)"
            | "token names critical header extensions" => Refusal::Malformed,
            "token is signed with an unknown key" => Refusal::UnknownKey,
            "token algorithm does not match its key" => Refusal::AlgorithmMismatch,
            "bad signature" => Refusal::BadSignature,
            "token has expired" => Refusal::Expired,
            "token is not valid yet" | "token was issued in the future" => Refusal::NotYetValid,
            "token was issued by another issuer" => Refusal::WrongIssuer,
            "token is meant for another audience" => Refusal::WrongAudience,
            "token lives longer than any token this issuer makes" => Refusal::TooLongLived,
            "token has been revoked" => Refusal::Revoked,
            "token names no session" => Refusal::NoSession,
            "session has ended" => Refusal::SessionEnded,
            "user no longer exists" => Refusal::UserGone,
            "user is disabled" => Refusal::UserDisabled,
            "token claims scopes its session was not granted" => Refusal::ScopeBeyondSession,
            "a client's token names no user" => Refusal::ClientToken,
            _ => Refusal::Other,
        }
    }

    /// The refusal a response carries, read from its `WWW-Authenticate`
    /// challenge (RFC 6750 §3): `invalid_token` or `insufficient_scope`.
    /// `None` for any other response, a `401` to a request without a token
    /// included (no token, no check).
    pub fn of_response(response: &Response) -> Option<Refusal> {
        let challenge = response.headers().get(header::WWW_AUTHENTICATE)?.to_str().ok()?;
        let param = |name: &str| {
            let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
            let rest = &challenge[start..];
            // Quotes inside a value are replaced by the library: the next
            // quote ends it.
            Some(&rest[..rest.find('"')?])
        };
        match param("error")? {
            "invalid_token" => Some(param("error_description").map_or(Refusal::Other, Refusal::of_description)),
            "insufficient_scope" => Some(Refusal::InsufficientScope),
            _ => None,
        }
    }
}

/// One server's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A new registry with every metric described and every fixed series
    /// at zero (a rate over a series that appears late misses its start).
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(HASH_WAIT.into()), HASH_WAIT_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(HASH_DURATION.into()), HASH_WAIT_BUCKETS))
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics { inner: Arc::new(Inner { recorder, handle }) };
        metrics.scoped(|| {
            describe_counter!(LOGINS, "Password logins by outcome.");
            describe_counter!(TOKENS_ISSUED, "Token responses sent, by grant type.");
            describe_counter!(TOKEN_CHECKS_REFUSED, "Bearer tokens refused on protected routes, by reason.");
            describe_counter!(REFRESH_REUSE, "Retired refresh tokens presented again; each revoked its session.");
            describe_gauge!(HASH_QUEUE_DEPTH, "Password-hashing jobs waiting for a hashing thread.");
            describe_histogram!(HASH_WAIT, Unit::Seconds, "Time from a hashing job's submission to its start.");
            describe_histogram!(HASH_DURATION, Unit::Seconds, "Time a hashing job ran on its thread (one hash).");
            describe_histogram!(HTTP_DURATION, Unit::Seconds, "Request latency by route template, method and status.");
            describe_gauge!(DB_POOL, "Database connections open, by state.");
            describe_gauge!(DB_POOL_MAX, "Most database connections the pool opens.");
            for outcome in LoginOutcome::ALL {
                counter!(LOGINS, "outcome" => outcome.as_str()).absolute(0);
            }
            for grant in Grant::ALL {
                counter!(TOKENS_ISSUED, "grant" => grant.as_str()).absolute(0);
            }
            for reason in Refusal::ALL {
                counter!(TOKEN_CHECKS_REFUSED, "reason" => reason.as_str()).absolute(0);
            }
            counter!(REFRESH_REUSE).absolute(0);
        });
        metrics
    }

    /// Runs `f` with this server's recorder behind the `metrics` macros.
    fn scoped<T>(&self, f: impl FnOnce() -> T) -> T {
        with_local_recorder(&self.inner.recorder, f)
    }

    /// Counts a password login.
    pub fn login(&self, outcome: LoginOutcome) {
        self.scoped(|| counter!(LOGINS, "outcome" => outcome.as_str()).increment(1));
    }

    /// Counts a token response.
    pub fn token_issued(&self, grant: Grant) {
        self.scoped(|| counter!(TOKENS_ISSUED, "grant" => grant.as_str()).increment(1));
    }

    /// Counts a refused bearer token.
    pub fn token_refused(&self, reason: Refusal) {
        self.scoped(|| counter!(TOKEN_CHECKS_REFUSED, "reason" => reason.as_str()).increment(1));
    }

    /// Counts a refresh token presented again.
    pub fn refresh_reuse_detected(&self) {
        self.scoped(|| counter!(REFRESH_REUSE).increment(1));
    }

    /// The histogram the hashing pool records its queue waits in.
    pub fn hash_wait(&self) -> Histogram {
        self.scoped(|| histogram!(HASH_WAIT))
    }

    /// The histogram the hashing pool records each job's run time in.
    pub fn hash_duration(&self) -> Histogram {
        self.scoped(|| histogram!(HASH_DURATION))
    }

    /// Records one request's latency.
    pub fn request(&self, route: &str, method: &Method, status: StatusCode, elapsed: Duration) {
        let (route, method, status) = (route.to_owned(), method_label(method), status.as_u16().to_string());
        self.scoped(|| {
            histogram!(HTTP_DURATION, "route" => route, "method" => method, "status" => status)
                .record(elapsed.as_secs_f64());
        });
    }

    /// The scrape: samples the gauges read at scrape time, then renders
    /// everything in the Prometheus text format.
    pub fn render(&self, hash_queue_depth: usize, pool: Option<PoolUse>) -> String {
        self.scoped(|| {
            gauge!(HASH_QUEUE_DEPTH).set(hash_queue_depth as f64);
            if let Some(pool) = pool {
                gauge!(DB_POOL, "state" => "idle").set(f64::from(pool.idle));
                gauge!(DB_POOL, "state" => "used").set(f64::from(pool.open.saturating_sub(pool.idle)));
                gauge!(DB_POOL_MAX).set(f64::from(pool.max));
            }
        });
        self.inner.handle.render()
    }

    /// Folds recorded histogram samples into their buckets, so memory stays
    /// bounded between scrapes; run every few seconds.
    pub fn upkeep(&self) {
        self.inner.handle.run_upkeep();
    }
}

/// The `method` label: the methods the API answers, anything else `other`
/// (a client may send any token as a method; the label set stays fixed).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The layer that times every request and counts refused tokens: the route
/// is the matched template (`/admin/users/{username}`), `unmatched` when
/// no route matched, never the path a client sent. The time runs until the
/// response's head is ready (bodies here are small and in memory).
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.request(route.as_deref().unwrap_or("unmatched"), &method, response.status(), start.elapsed());
    if let Some(reason) = Refusal::of_response(&response) {
        metrics.token_refused(reason);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use portcullis_verify::TokenError;

    use super::*;

    fn refusal(error: TokenError) -> Option<Refusal> {
        Refusal::of_response(&error.into_response())
    }

    #[test]
    fn every_refusal_text_has_its_reason() {
        for (text, reason) in [
            ("malformed token", Refusal::Malformed),
            ("not an access token (typ must be at+jwt)", Refusal::Malformed),
            ("bad signature", Refusal::BadSignature),
            ("token has expired", Refusal::Expired),
            ("token was issued in the future", Refusal::NotYetValid),
            ("token is signed with an unknown key", Refusal::UnknownKey),
            ("session has ended", Refusal::SessionEnded),
            ("token claims scopes its session was not granted", Refusal::ScopeBeyondSession),
            ("something new", Refusal::Other),
        ] {
            assert_eq!(refusal(TokenError::invalid(text)), Some(reason), "{text}");
        }
        assert_eq!(refusal(TokenError::InsufficientScope("admin".into())), Some(Refusal::InsufficientScope));
    }

    #[test]
    fn no_token_and_no_verdict_are_not_refusals() {
        assert_eq!(refusal(TokenError::Missing), None);
        assert_eq!(refusal(TokenError::Unavailable("database unavailable".into())), None);
    }

    #[test]
    fn the_standing_refusals_are_all_known() {
        // The answers of `auth::standing::refusal` and `http::users`.
        for text in [
            "user no longer exists",
            "token has been revoked",
            "token names no session",
            "session has ended",
            "user is disabled",
            "token claims scopes its session was not granted",
        ] {
            assert_ne!(Refusal::of_description(text), Refusal::Other, "{text}");
        }
    }

    #[test]
    fn a_registry_renders_its_own_counts_only() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.login(LoginOutcome::Throttled);
        a.request("/admin/users/{username}", &Method::from_bytes(b"BREW").unwrap(), StatusCode::OK, Duration::ZERO);
        let text = a.render(0, None);
        assert!(text.contains("portcullis_logins_total{outcome=\"throttled\"} 1"), "{text}");
        assert!(text.contains("route=\"/admin/users/{username}\""), "{text}");
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(b.render(0, None).contains("portcullis_logins_total{outcome=\"throttled\"} 0"));
    }
}
