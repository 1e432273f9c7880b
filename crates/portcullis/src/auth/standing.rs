//! A token's standing: whether its user, session and `jti` still allow it,
//! beyond what its signature and claims say. The server's verifier runs this
//! check on every protected request; `portcullis token decode` words its
//! refusals the same way.

use portcullis_verify::{BoxFuture, Claims, TokenCheck, TokenError};

use super::tokens::session_of;
use crate::domain::UserKey;
use crate::store::{SharedStore, StoreResult, TokenStanding};

/// Why a token that verifies is refused all the same, or `None` when it
/// stands. `standing` is `None` when the user no longer exists.
pub fn refusal(standing: Option<TokenStanding>) -> Option<&'static str> {
    match standing {
        None => Some("user no longer exists"),
        Some(s) if s.denied => Some("token has been revoked"),
        Some(s) if s.session_ended => Some("session has ended"),
        Some(s) if s.user_disabled => Some("user is disabled"),
        Some(_) => None,
    }
}

/// Looks up where the token of `claims` stands.
///
/// # Errors
/// A database error.
pub async fn standing_of(store: &SharedStore, claims: &Claims) -> StoreResult<Option<TokenStanding>> {
    store.token_standing(&UserKey::of(&claims.sub), session_of(claims), &claims.jti).await
}

/// The [`TokenCheck`] of the server's verifier: refuses a token whose user
/// was disabled or deleted, whose session ended (logout, password change)
/// or whose `jti` was denied (revocation).
pub struct StillStanding {
    store: SharedStore,
}

impl StillStanding {
    /// The check, reading standing from `store`.
    pub fn new(store: SharedStore) -> Self {
        StillStanding { store }
    }
}

impl TokenCheck for StillStanding {
    fn check<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), TokenError>> {
        Box::pin(async move {
            match standing_of(&self.store, claims).await {
                Ok(standing) => refusal(standing).map_or(Ok(()), |why| Err(TokenError::invalid(why))),
                Err(e) => {
                    tracing::error!(error = %e, "database failure while checking a token");
                    Err(TokenError::Unavailable("database unavailable".into()))
                }
            }
        })
    }
}
