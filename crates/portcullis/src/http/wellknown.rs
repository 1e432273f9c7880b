//! Discovery: the public keys (`/.well-known/jwks.json`) and RFC 8414
//! authorization-server metadata.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The discovery routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks)).routes(routes!(metadata))
}

/// The public keys that verify current tokens, with `kid`, `alg` and `use`.
/// Empty under HS256: a shared secret is never published.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "JSON Web Key Set")))]
pub async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "keys": state.keyring.current().jwks }))
}

/// RFC 8414 metadata, built from the configured issuer URL.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "Authorization server metadata")))]
pub async fn metadata(State(state): State<AppState>) -> Json<Value> {
    let issuer = &state.keyring.settings().issuer;
    let keys = state.keyring.current();
    let mut algorithms: Vec<&str> = keys.algorithms.iter().map(|a| a.as_str()).collect();
    algorithms.sort_unstable();
    Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "revocation_endpoint": format!("{issuer}/token/revoke"),
        "introspection_endpoint": format!("{issuer}/token/introspect"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": [],
        "scopes_supported": ["admin"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "access_token_signing_alg_values_supported": algorithms,
        "service_documentation": format!("{issuer}/docs"),
    }))
}
