//! A small API protected by portcullis tokens: the resource server of the
//! FastAPI tutorials, in Rust.
//!
//! ```sh
//! cargo run -p portcullis-verify --example resource_server [-- http://127.0.0.1:8000]
//! ```
//! It verifies with the server's public keys (JWKS), or, when
//! `PORTCULLIS_SECRET_KEY` is set, with that shared secret (HS256), and
//! listens on 127.0.0.1:9000 (`EXAMPLE_BIND` to change).

use axum::routing::get;
use axum::{Json, Router};
use portcullis_verify::{Authenticated, KeySet, Verifier, VerifyKey};
use serde_json::{Value, json};

/// Any valid token: `Depends(get_current_user)`.
async fn items(user: Authenticated) -> Json<Value> {
    Json(json!({ "owner": user.subject(), "items": ["portcullis", "drawbridge"] }))
}

/// Behind `require_scopes(["admin"])`; the claims are still at hand.
async fn admin(user: Authenticated) -> Json<Value> {
    Json(json!({ "admin": user.subject(), "scope": user.claims().scope }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:8000".to_owned());
    let verifier = match std::env::var("PORTCULLIS_SECRET_KEY") {
        Ok(secret) => {
            Verifier::builder(KeySet::new([VerifyKey::shared_secret(secret.as_bytes())])).issuer(&issuer).build()
        }
        Err(_) => Verifier::from_jwks(format!("{issuer}/.well-known/jwks.json")).issuer(&issuer).connect().await?,
    };
    let app = Router::new()
        .route("/items", get(items))
        .route("/admin", get(admin).layer(verifier.require_scopes(["admin"])))
        .with_state(verifier);
    let bind = std::env::var("EXAMPLE_BIND").unwrap_or_else(|_| "127.0.0.1:9000".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("resource server on http://{bind} (tokens from {issuer})");
    axum::serve(listener, app).await?;
    Ok(())
}
