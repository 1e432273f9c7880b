//! Verify portcullis access tokens in an axum service: the Rust answer to
//! FastAPI's `Depends(get_current_user)`.
//!
//! A [`Verifier`] holds the keys and the expected issuer and audience; the
//! [`Authenticated`] extractor verifies the `Authorization: Bearer` header
//! and hands the claims to the handler; [`Verifier::require_scopes`] guards
//! routes by scope. Rejections answer as RFC 6750 says, exactly as the portcullis
//! server's own routes do (it uses this crate for them).
//!
//! ```
//! use axum::{Router, routing::get};
//! use portcullis_verify::{Authenticated, KeySet, Verifier, VerifyKey};
//!
//! async fn items(user: Authenticated) -> String {
//!     format!("items of {}", user.subject())
//! }
//!
//! let secret = b"the same PORTCULLIS_SECRET_KEY as the server";
//! let verifier = Verifier::builder(KeySet::new([VerifyKey::shared_secret(secret)]))
//!     .issuer("http://127.0.0.1:8000")
//!     .build();
//! let app: Router = Router::new()
//!     .route("/items", get(items))
//!     .route(
//!         "/admin",
//!         get(|| async { "admins only" }).layer(verifier.require_scopes(["admin"])),
//!     )
//!     .with_state(verifier);
//! ```
//!
//! A token must carry `typ: at+jwt` (RFC 9068), a `kid` the key set knows
//! (or none, when the set has one key), and the `alg` of that key.

#![warn(missing_docs)]

mod claims;
mod error;
mod extract;
#[cfg(feature = "jwks")]
mod jwks;
mod keys;
mod verifier;

pub use claims::{Audience, Claims};
pub use error::TokenError;
pub use extract::{Authenticated, RequireScopes, RequireScopesService, bearer_token};
pub use jsonwebtoken::{Algorithm, DecodingKey};
#[cfg(feature = "jwks")]
pub use jwks::{JwksError, key_set_from_jwks};
pub use keys::{KeySet, VerifyKey, shared_secret_kid};
pub use verifier::{BoxFuture, TokenCheck, Verifier, VerifierBuilder};
