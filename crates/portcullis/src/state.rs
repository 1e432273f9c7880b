//! The state every handler shares, and the pieces extractors take from it.

use std::sync::Arc;

use axum::extract::FromRef;
use portcullis_verify::{BoxFuture, Claims, KeySet, TokenCheck, TokenError, Verifier};

use crate::auth::keyring::Keyring;
use crate::auth::pool::HashPool;
use crate::auth::throttle::Throttle;
use crate::auth::tokens::{TokenIssuer, session_of};
use crate::domain::Username;
use crate::store::SharedStore;

/// Settings handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `POST /users` is open.
    pub allow_registration: bool,
    /// Refresh-token lifetime in seconds.
    pub refresh_token_ttl: u64,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
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
    /// The signing keys, reloaded on rotation.
    pub keyring: Keyring,
    /// Password hashing threads.
    pub hasher: HashPool,
    /// Failed-login counters.
    pub throttle: Throttle,
    /// Behaviour switches.
    pub settings: Arc<Settings>,
}

/// A verifier for tokens of `issuer`, refusing those whose user, session or
/// `jti` has since been disabled, ended or denied. Its keys are set by the
/// keyring.
pub fn server_verifier(store: &SharedStore, issuer: &TokenIssuer) -> Verifier {
    let mut builder = Verifier::builder(KeySet::default()).issuer(issuer.issuer());
    // A token must name one of our audiences when we issue with one.
    for aud in issuer.audience() {
        builder = builder.audience(aud.clone());
    }
    builder.check(StillStanding { store: store.clone() }).build()
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// Refuses a token whose user was disabled or deleted, whose session ended
/// (logout, password change) or whose `jti` was denied (revocation).
struct StillStanding {
    store: SharedStore,
}

impl TokenCheck for StillStanding {
    fn check<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), TokenError>> {
        Box::pin(async move {
            let key = Username::key_of(&claims.sub);
            match self.store.token_standing(&key, session_of(claims), &claims.jti).await {
                Ok(Some(s)) if s.denied => Err(TokenError::invalid("token has been revoked")),
                Ok(Some(s)) if s.session_ended => Err(TokenError::invalid("session has ended")),
                Ok(Some(s)) if s.user_disabled => Err(TokenError::invalid("user is disabled")),
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(TokenError::invalid("user no longer exists")),
                Err(e) => {
                    tracing::error!(error = %e, "database failure while checking a token");
                    Err(TokenError::Unavailable("database unavailable".into()))
                }
            }
        })
    }
}
