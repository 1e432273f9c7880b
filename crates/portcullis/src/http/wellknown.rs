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

/// A JSON Web Key Set (RFC 7517 §5), for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Jwks {
    /// The public keys; empty under HS256.
    keys: Vec<Jwk>,
}

/// A public key (RFC 7517 §4): `crv`, `x` for OKP; `crv`, `x`, `y` for EC;
/// `n`, `e` for RSA.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Jwk {
    /// `OKP`, `EC` or `RSA`.
    kty: String,
    /// The key id tokens name in their header.
    kid: String,
    /// `EdDSA`, `ES256` or `RS256`.
    alg: String,
    /// Always `sig`.
    #[schema(rename = "use")]
    use_: String,
    /// `Ed25519` or `P-256`.
    crv: Option<String>,
    /// OKP and EC.
    x: Option<String>,
    /// EC.
    y: Option<String>,
    /// RSA modulus.
    n: Option<String>,
    /// RSA exponent.
    e: Option<String>,
}

/// The public keys that verify current tokens, with `kid`, `alg` and `use`.
/// Empty under HS256: a shared secret is never published.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "JSON Web Key Set", body = Jwks)))]
pub async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "keys": state.keyring.current().jwks }))
}

/// RFC 8414 authorization server metadata, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Metadata {
    issuer: String,
    token_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    jwks_uri: String,
    grant_types_supported: Vec<String>,
    response_types_supported: Vec<String>,
    scopes_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Vec<String>,
    revocation_endpoint_auth_methods_supported: Vec<String>,
    introspection_endpoint_auth_methods_supported: Vec<String>,
    /// The algorithms of the keys that verify now.
    access_token_signing_alg_values_supported: Vec<String>,
    service_documentation: String,
}

/// RFC 8414 metadata, built from the configured issuer URL.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "Authorization server metadata", body = Metadata)))]
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
        "grant_types_supported": [
            "password",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ],
        "response_types_supported": [],
        "scopes_supported": ["admin", "introspect"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "bearer"],
        "access_token_signing_alg_values_supported": algorithms,
        "service_documentation": format!("{issuer}/docs"),
    }))
}
