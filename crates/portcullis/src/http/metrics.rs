//! `GET /metrics`: the Prometheus scrape, served only to the client
//! addresses in `--metrics-allow` (this machine by default).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client::ClientAddr;
use super::shared::no_store;
use crate::auth::throttle::Origin;
use crate::error::ApiError;
use crate::state::AppState;

/// The scrape route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics, in the text exposition format (0.0.4): logins by
/// outcome, tokens issued by grant, refused token checks by reason,
/// refresh-token reuse, the hashing queue, request latency by route and
/// status, the database pool. No label holds a username, token or address.
///
/// Answered only to client addresses in `--metrics-allow` (default
/// `127.0.0.0/8,::1/128`), the address read as for throttling (the peer,
/// or behind `--trusted-proxies` the forwarded client).
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "The metrics", body = String,
         content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 403, description = "The client address is not in `--metrics-allow`"),
    )
)]
pub async fn metrics(State(state): State<AppState>, ClientAddr(addr): ClientAddr) -> Response {
    let allowed = state.settings.metrics_allow.as_slice();
    if !matches!(&addr, Some(Origin::Ip(ip)) if allowed.iter().any(|net| net.contains(ip))) {
        return ApiError::Forbidden("metrics are served only to the addresses in --metrics-allow".into())
            .into_response();
    }
    let body = state.metrics.render(state.hasher.queue_depth(), Some(state.store.pool_use()));
    no_store(([(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE))], body))
}
