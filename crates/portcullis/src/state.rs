//! The state every handler shares, and the pieces extractors take from it.

use std::sync::Arc;

use axum::extract::FromRef;
use portcullis_verify::{BoxFuture, Claims, KeySet, TokenCheck, TokenError, Verifier};

use crate::auth::pool::HashPool;
use crate::auth::tokens::TokenIssuer;
use crate::domain::Username;
use crate::store::SharedStore;

/// Settings handlers read.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `POST /users` is open.
    pub allow_registration: bool,
}

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Users, sessions, keys.
    pub store: SharedStore,
    /// Verifies bearer tokens on protected routes.
    pub verifier: Verifier,
    /// Signs access tokens.
    pub issuer: TokenIssuer,
    /// Password hashing threads.
    pub hasher: HashPool,
    /// Behaviour switches.
    pub settings: Arc<Settings>,
}

impl AppState {
    /// State for a store and issuer; the verifier trusts the issuer's key
    /// and refuses tokens of users since disabled or deleted.
    pub fn new(
        store: SharedStore,
        issuer: TokenIssuer,
        hasher: HashPool,
        settings: Settings,
    ) -> Self {
        let mut builder =
            Verifier::builder(KeySet::new([issuer.key().verify_key()])).issuer(issuer.issuer());
        // A token must name one of our audiences when we issue with one.
        for aud in issuer.audience() {
            builder = builder.audience(aud.clone());
        }
        let verifier = builder
            .check(UserStillActive {
                store: store.clone(),
            })
            .build();
        AppState {
            store,
            verifier,
            issuer,
            hasher,
            settings: Arc::new(settings),
        }
    }
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// Refuses a token whose user was disabled or deleted after it was issued.
struct UserStillActive {
    store: SharedStore,
}

impl TokenCheck for UserStillActive {
    fn check<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), TokenError>> {
        Box::pin(async move {
            match self.store.user_by_key(&Username::key_of(&claims.sub)).await {
                Ok(Some(user)) if !user.disabled => Ok(()),
                Ok(_) => Err(TokenError::invalid("user is disabled or no longer exists")),
                Err(e) => {
                    tracing::error!(error = %e, "database failure while checking a token");
                    Err(TokenError::Unavailable("database unavailable".into()))
                }
            }
        })
    }
}
