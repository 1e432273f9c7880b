//! The HTTP API: route modules merged into one router, with the layers every
//! request passes through (body limit, timeouts, tracing without secrets,
//! panics turned into JSON 500s).

pub mod admin;
pub mod client;
pub mod client_auth;
pub mod clients;
pub mod docs;
pub mod document;
pub mod exchange;
pub mod health;
pub mod input;
pub mod metrics;
pub mod personal_tokens;
pub mod sessions;
pub mod shared;
pub mod token;
pub mod users;
pub mod wellknown;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application.
pub fn app(state: AppState) -> Router {
    let request_timeout = state.settings.request_timeout;
    let hsts = state.settings.hsts;
    let recorder = state.metrics.clone();
    let (api, doc) = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        // Everything these answer, errors included, names or carries a
        // credential, a token or a profile: none of it may be cached.
        .merge(token::router().layer(map_response(uncacheable)))
        .merge(sessions::router().layer(map_response(uncacheable)))
        .merge(users::router().layer(map_response(uncacheable)))
        .merge(admin::router(&state).layer(map_response(uncacheable)))
        .merge(clients::router(&state).layer(map_response(uncacheable)))
        .merge(personal_tokens::router(&state).layer(map_response(uncacheable)))
        .merge(wellknown::router())
        .merge(health::router())
        .merge(metrics::router())
        .split_for_parts();
    let mut doc = doc;
    token::document_login(&mut doc);
    document::document_generic_answers(&mut doc);
    let router = api
        .merge(docs::router(doc))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(input::BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        // Outside the timeout, so its bare 408 gets a JSON `detail` too.
        .layer(map_response(json_error_body))
        .layer(CatchPanicLayer::custom(|_| {
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "detail": "internal error" }))).into_response()
        }))
        // Outside the timeout and the panic handler: their 408 and 500 are
        // timed and counted too.
        .layer(from_fn_with_state(recorder, crate::metrics::track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            // The span names the path only: a query string may hold what a
            // client should never have put there (e.g. a password).
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), id = %id)
                })
                // One access-log line per request: status and latency, never headers.
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        // Outermost, so the timeout's 408 and the panic 500 carry it too.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    if hsts {
        // Served over TLS: browsers keep to HTTPS for a year.
        router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
    } else {
        router
    }
}

/// `Cache-Control: no-store` on a whole route group (the layer form of
/// [`shared::no_store`]).
async fn uncacheable(response: Response) -> Response {
    shared::no_store(response)
}

/// Gives a JSON `detail` to error responses made without a body (by a
/// layer or an extractor of axum's), so every 4xx and 5xx reads the same.
async fn json_error_body(response: Response) -> Response {
    let status = response.status();
    let bare = !response.headers().contains_key(header::CONTENT_TYPE);
    if !(status.is_client_error() || status.is_server_error()) || !bare {
        return response;
    }
    let detail = status.canonical_reason().unwrap_or("error");
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let json = axum::Json(json!({ "detail": detail })).into_response();
    let (json_parts, body) = json.into_parts();
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, body)
}

// The router's own answers to an unknown path or method: never cached. Both
// statuses are cacheable by default (RFC 9111 §4.2.2), and the 405 replaces
// the route groups' own (so `GET /token` would escape `uncacheable`).
async fn not_found() -> Response {
    shared::no_store((StatusCode::NOT_FOUND, axum::Json(json!({ "detail": "Not Found" }))))
}

async fn method_not_allowed() -> Response {
    shared::no_store((StatusCode::METHOD_NOT_ALLOWED, axum::Json(json!({ "detail": "Method Not Allowed" }))))
}
